use lkg_registry::copy::{CopyOptions, copy};
use lkg_registry::{Mount, Platform};

use crate::common::{amd64, client, docker_ref, env, push_fixture, reference, skopeo, skopeo_json, small_image};
use crate::random::{push_index, push_random_image};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_registry_copy_mounts_every_blob_config_included() {
    let env = env();
    let client = client();
    let src = reference(&env.registry_a, "copy", "src", "1");
    let m = small_image(&client, &src, 21, &[("k", "v")]).await;
    let dst = reference(&env.registry_a, "copy", "dst", "stable");
    let report = copy(&client, &src, &dst, &CopyOptions::default()).await.unwrap();
    assert_eq!(report.digest.as_ref(), Some(&m.digest));
    assert_eq!((report.blobs_mounted, report.blobs_uploaded, report.bytes_uploaded), (3, 0, 0), "{report:?}");
    assert_eq!(report.manifests_pushed, 1);
    // skopeo reads what lkg wrote.
    let theirs = skopeo_json(&["inspect", "--tls-verify=false", &docker_ref(&dst)]);
    assert_eq!(theirs["Digest"].as_str(), Some(m.digest.as_str()));
    // A second copy finds everything there.
    let again = copy(&client, &src, &dst.at_tag("again"), &CopyOptions::default()).await.unwrap();
    assert_eq!((again.manifests_existing, again.manifests_pushed, again.bytes_uploaded), (1, 0, 0), "{again:?}");
    assert_eq!(client.resolve(&dst.at_tag("again")).await.unwrap(), m.digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_registry_copy_streams_and_does_not_resend_existing_blobs() {
    let env = env();
    let client = client();
    let src = reference(&env.registry_a, "xcopy", "src", "1");
    let m = push_random_image(&client, &src, 31, &[3 << 20, 1 << 20, 5000], &[], &amd64()).await.unwrap();
    let dst = reference(&env.registry_b, "xcopy", "dst", "1");
    let report = copy(&client, &src, &dst, &CopyOptions::default()).await.unwrap();
    assert_eq!(report.blobs_uploaded, 4, "{report:?}");
    let config_len = client
        .blob_exists(
            &src,
            &client
                .get_manifest(&src)
                .await
                .unwrap()
                .parse()
                .map(|k| match k {
                    lkg_registry::ManifestKind::Image(i) => i.config.digest,
                    lkg_registry::ManifestKind::Index(_) => unreachable!(),
                })
                .unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.bytes_uploaded, (3 << 20) + (1 << 20) + 5000 + config_len);
    assert_eq!(client.resolve(&dst).await.unwrap(), m.digest);
    // The same image to another repository of b: the blobs exist in b but
    // not in that repository, so they are sent; to the same repository
    // under another tag, nothing is.
    let same_repo = copy(&client, &src, &dst.at_tag("2"), &CopyOptions::default()).await.unwrap();
    assert_eq!((same_repo.bytes_uploaded, same_repo.manifests_existing), (0, 1), "{same_repo:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_mount_falls_back_to_upload() {
    let env = env();
    let client = client();
    let src = reference(&env.registry_a, "mount", "src", "1");
    let m = small_image(&client, &src, 41, &[]).await;
    let lkg_registry::ManifestKind::Image(image) = m.parse().unwrap() else { unreachable!() };
    let dst = reference(&env.registry_a, "mount", "dst", "1");
    let nowhere = reference(&env.registry_a, "mount", "nowhere", "1");
    // The registry answers 202 (an upload session) to a mount from a repository without the blob.
    let blob = &image.layers[0];
    let Mount::Refused(Some(session)) = client.mount_blob(&dst, &blob.digest, &nowhere).await.unwrap() else {
        panic!("a mount from a repository without the blob was not refused");
    };
    let stream = client.blob_stream(&src, &blob.digest).await.unwrap();
    client.push_blob_stream(&dst, &blob.digest, blob.size, stream, Some(session)).await.unwrap();
    assert_eq!(client.blob_exists(&dst, &blob.digest).await.unwrap(), Some(blob.size));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_platform_index_copies_children_first_and_platforms_can_be_picked() {
    let env = env();
    let client = client();
    let src = reference(&env.registry_a, "index", "src", "latest");
    let app = push_fixture("3.0.0", &src.at_tag("amd64"));
    let app = client.get_manifest(&src.at_digest(&app)).await.unwrap();
    let arm: Platform = "linux/arm64".parse().unwrap();
    let arm_image = push_random_image(&client, &src.at_tag("arm64"), 51, &[2048], &[], &arm).await.unwrap();
    let index = push_index(&client, &src, &[(&app, amd64()), (&arm_image, arm.clone())]).await.unwrap();

    // Across registries, all platforms, digest kept.
    let dst = reference(&env.registry_b, "index", "dst", "latest");
    let report = copy(&client, &src, &dst, &CopyOptions::default()).await.unwrap();
    assert_eq!(report.digest.as_ref(), Some(&index.digest));
    assert_eq!(report.manifests_pushed, 3);
    for child in [&app.digest, &arm_image.digest] {
        assert!(client.head_manifest(&dst.at_digest(child)).await.unwrap().is_some());
    }
    // skopeo copies the whole index back to a, byte for byte.
    let back = reference(&env.registry_a, "index", "back", "latest");
    let out = skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &docker_ref(&dst),
        &docker_ref(&back),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(client.resolve(&back).await.unwrap(), index.digest);

    // One platform: that image alone, with its own digest.
    let one = reference(&env.registry_a, "index", "one", "latest");
    let report =
        copy(&client, &src, &one, &CopyOptions { platforms: vec![arm], ..CopyOptions::default() }).await.unwrap();
    assert_eq!(report.digest.as_ref(), Some(&arm_image.digest));
    assert_eq!(client.resolve(&one).await.unwrap(), arm_image.digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interop_with_skopeo_both_ways() {
    let env = env();
    let client = client();
    // lkg writes, skopeo reads and copies on.
    let src = reference(&env.registry_a, "interop", "lkg", "1");
    let m = small_image(&client, &src, 61, &[("made-by", "lkg")]).await;
    let via_skopeo = reference(&env.registry_b, "interop", "skopeo", "1");
    let out = skopeo(&[
        "copy",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &docker_ref(&src),
        &docker_ref(&via_skopeo),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // skopeo wrote, lkg reads and copies back.
    assert_eq!(client.resolve(&via_skopeo).await.unwrap(), m.digest);
    let back = reference(&env.registry_a, "interop", "back", "1");
    let report = copy(&client, &via_skopeo, &back, &CopyOptions::default()).await.unwrap();
    assert_eq!(report.digest.as_ref(), Some(&m.digest));
    let theirs = skopeo_json(&["inspect", "--tls-verify=false", &docker_ref(&back)]);
    assert_eq!(theirs["Labels"]["made-by"], "lkg");
    assert_eq!(theirs["Digest"].as_str(), Some(m.digest.as_str()));
}

/// `--platform` on a single-platform image: the image is copied only if it
/// is that platform; an amd64 image is never handed to who asked for arm64.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_a_single_image_is_not_is_not_found_and_nothing_is_copied() {
    let env = env();
    let client = client();
    let src = reference(&env.registry_a, "single", "src", "1");
    let image = push_random_image(&client, &src, 61, &[1024], &[], &amd64()).await.unwrap();
    let dst = reference(&env.registry_a, "single", "dst", "stable");
    let arm: Platform = "linux/arm64".parse().unwrap();
    let err =
        copy(&client, &src, &dst, &CopyOptions { platforms: vec![arm], ..CopyOptions::default() }).await.unwrap_err();
    assert!(err.is_input(), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("platform linux/arm64 in ") && text.contains("a single-platform image for linux/amd64"),
        "{text}"
    );
    assert!(client.head_manifest(&dst).await.unwrap().is_none(), "nothing was copied");
    // Asked for its own platform, it is copied as it is.
    let report =
        copy(&client, &src, &dst, &CopyOptions { platforms: vec![amd64()], ..CopyOptions::default() }).await.unwrap();
    assert_eq!(report.digest.as_ref(), Some(&image.digest));
}
