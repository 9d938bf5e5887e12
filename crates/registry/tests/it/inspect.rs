use std::collections::BTreeMap;

use lkg_registry::inspect::inspect;
use lkg_registry::{ManifestKind, Platform, media};

use crate::common::{amd64, client, docker_ref, env, push_fixture, reference, skopeo_json, small_image};
use crate::random::push_index;

fn labels_of(v: &serde_json::Value) -> BTreeMap<String, String> {
    v["Labels"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_agrees_with_skopeo_on_digest_and_labels() {
    let env = env();
    let client = client();
    // An image pushed by docker (Docker schema 2) ...
    let pushed = reference(&env.registry_a, "inspect", "app", "1.0.0");
    let digest = push_fixture("1.0.0", &pushed);
    // ... and one built by lkg (OCI), with the label the OS pipeline reads.
    let built = reference(&env.registry_a, "inspect", "kinoite", "candidate");
    let m = small_image(
        &client,
        &built,
        7,
        &[("ostree.linux", "6.14.5-300.fc42.x86_64"), ("org.opencontainers.image.version", "42.20260522")],
    )
    .await;

    for (r, expected_digest, expected_type) in
        [(&pushed, &digest, media::DOCKER_MANIFEST), (&built, &m.digest, media::OCI_MANIFEST)]
    {
        let ours = inspect(&client, r).await.unwrap();
        let theirs = skopeo_json(&["inspect", "--tls-verify=false", &docker_ref(r)]);
        assert_eq!(&ours.digest, expected_digest);
        assert_eq!(ours.digest.as_str(), theirs["Digest"].as_str().unwrap(), "digest differs from skopeo's for {r}");
        assert_eq!(ours.labels.clone().unwrap(), labels_of(&theirs), "labels differ from skopeo's for {r}");
        assert_eq!(ours.media_type, expected_type);
        assert_eq!(ours.created.as_deref(), theirs["Created"].as_str());
        let layers: Vec<&str> = ours.layers.as_ref().unwrap().iter().map(|l| l.digest.as_str()).collect();
        let their_layers: Vec<&str> =
            theirs["Layers"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
        assert_eq!(layers, their_layers);
        assert_eq!(ours.platforms.len(), 1);
    }
    let ours = inspect(&client, &built).await.unwrap();
    assert_eq!(ours.labels.unwrap()["ostree.linux"], "6.14.5-300.fc42.x86_64");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_reports_the_index_digest_and_per_platform_labels() {
    let env = env();
    let client = client();
    let r = reference(&env.registry_a, "inspect", "multi", "latest");
    // Two fixture images in one repository: the app (amd64) and an arm64 image.
    let app = push_fixture("2.0.0", &r.at_tag("amd64"));
    let app = client.get_manifest(&r.at_digest(&app)).await.unwrap();
    let arm: Platform = "linux/arm64/v8".parse().unwrap();
    let arm_image =
        crate::random::push_random_image(&client, &r.at_tag("arm64"), 11, &[1000], &[("arch", "arm64")], &arm)
            .await
            .unwrap();
    let index = push_index(&client, &r, &[(&app, amd64()), (&arm_image, arm.clone())]).await.unwrap();

    let ours = inspect(&client, &r).await.unwrap();
    assert_eq!(ours.digest, index.digest);
    assert_eq!(ours.media_type, media::OCI_INDEX);
    assert!(ours.labels.is_none(), "an index has no labels of its own");
    let platforms: Vec<&str> = ours.platforms.iter().map(|p| p.platform.as_str()).collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64/v8"]);
    assert_eq!(ours.platforms[0].digest, app.digest);
    assert_eq!(ours.platforms[1].labels["arch"], "arm64");

    // skopeo reports the index digest and the host platform's labels.
    let theirs = skopeo_json(&["inspect", "--tls-verify=false", &docker_ref(&r)]);
    assert_eq!(ours.digest.as_str(), theirs["Digest"].as_str().unwrap());
    assert_eq!(ours.platforms[0].labels, labels_of(&theirs));
    // And the resolver-facing API picks a platform's config.
    let config = client.image_config(&r, Some(&arm)).await.unwrap();
    assert_eq!(config.labels()["arch"], "arm64");
    assert!(matches!(index.parse().unwrap(), ManifestKind::Index(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_are_listed_across_pages_and_heads_resolve() {
    let env = env();
    let client = client();
    let r = reference(&env.registry_a, "tags", "app", "t0");
    let m = small_image(&client, &r, 3, &[]).await;
    for i in 1..5 {
        client.put_manifest(&r, &format!("t{i}"), &m).await.unwrap();
    }
    let mut tags = client.list_tags_paged(&r, 2).await.unwrap();
    tags.sort();
    assert_eq!(tags, ["t0", "t1", "t2", "t3", "t4"]);
    assert_eq!(client.resolve(&r.at_tag("t3")).await.unwrap(), m.digest);
    assert!(client.head_manifest(&r.at_tag("missing")).await.unwrap().is_none());
    let err = client.resolve(&r.at_tag("missing")).await.unwrap_err();
    assert!(err.is_input() && err.to_string().contains("not found"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_registry_is_an_environment_error() {
    let client = client();
    let port = lkg_testkit::free_port();
    let r: lkg_registry::Reference = format!("127.0.0.1:{port}/nothing/here:1").parse().unwrap();
    let err = client.resolve(&r).await.unwrap_err();
    assert!(err.is_environment(), "{err}");
    assert!(err.to_string().contains(&format!("127.0.0.1:{port}")), "{err}");
}

#[test]
fn a_layer_reads_as_a_blocking_stream_and_a_corrupt_one_errors() {
    use std::io::Read as _;
    let env = env();
    let rt = lkg_registry::runtime().unwrap();
    let client = client();
    let r = reference(&env.registry_a, "reader", "img", "1");
    let m = rt.block_on(crate::random::push_random_image(&client, &r, 91, &[3 << 20], &[], &amd64())).unwrap();
    let ManifestKind::Image(image) = m.parse().unwrap() else { unreachable!() };
    let layer = &image.layers[0];
    let stream = rt.block_on(client.blob_stream(&r, &layer.digest)).unwrap();
    let mut reader = lkg_registry::BlobReader::new(stream, rt.handle().clone());
    let mut all = Vec::new();
    reader.read_to_end(&mut all).unwrap();
    assert_eq!(all, crate::random::random_bytes_layer(91, 0, 3 << 20));

    // Through a proxy that flips a byte: the read ends in an error, not EOF.
    let proxy = crate::servers::FaultProxy::start(&env.registry_a);
    proxy.set(crate::servers::Fault::TamperBody(layer.digest.to_string()));
    let proxied: lkg_registry::Reference = format!("{}/{}:1", proxy.addr, r.repository()).parse().unwrap();
    let stream = rt.block_on(client.blob_stream(&proxied, &layer.digest)).unwrap();
    let mut reader = lkg_registry::BlobReader::new(stream, rt.handle().clone());
    let err = reader.read_to_end(&mut Vec::new()).unwrap_err();
    assert!(err.to_string().contains("digest mismatch"), "{err}");
}
