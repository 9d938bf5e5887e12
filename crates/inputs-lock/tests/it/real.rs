//! Against the real engine, registry and skopeo: images built by docker
//! (its own layer tars and whiteouts), pushed to the test registry, copied
//! by skopeo into an OCI layout, resolved by lkg from that layout. Docker's
//! own view of the merged filesystem (`ls` in a container) is the reference.

use std::path::Path;
use std::process::Command;

use lkg_inputs_lock::{Document, Event, ImageRef, OciLayouts, ResolveError, RunContext, Spec, lock_from, resolve};
use lkg_testkit::Env;

struct Built {
    registry_ref: String,
    local: String,
}

/// `docker build` of `dockerfile` (legacy builder: buildx is not installed
/// here) tagged for registry `a`, pushed under every tag.
fn build_and_push(env: &Env, repo: &str, dockerfile: &str, tags: &[&str]) -> Built {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), dockerfile).unwrap();
    let local = format!("{repo}:{}", tags[0]);
    let out = env
        .docker_command()
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "-q", "-t", &local])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "docker build: {}", String::from_utf8_lossy(&out.stderr));
    for tag in tags {
        let remote = format!("{}/{repo}:{tag}", env.registry_a);
        env.docker(&["tag", &local, &remote]);
        env.docker(&["push", "-q", &remote]);
    }
    Built { registry_ref: format!("{}/{repo}", env.registry_a), local }
}

/// `skopeo copy` of every tag into one OCI layout at `dir`.
fn copy_to_layout(registry_ref: &str, tags: &[&str], dir: &Path) {
    for tag in tags {
        let out = Command::new("skopeo")
            .args(["copy", "-q", "--src-tls-verify=false"])
            .arg(format!("docker://{registry_ref}:{tag}"))
            .arg(format!("oci:{}:{tag}", dir.display()))
            .output()
            .unwrap();
        assert!(out.status.success(), "skopeo copy: {}", String::from_utf8_lossy(&out.stderr));
    }
}

fn skopeo_digest(dir: &Path, tag: &str) -> String {
    let out = Command::new("skopeo")
        .args(["inspect", "--format", "{{.Digest}}"])
        .arg(format!("oci:{}:{tag}", dir.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo inspect: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn cleanup(env: &Env, built: &Built, tags: &[&str]) {
    let mut args = vec!["rmi".to_owned(), "-f".to_owned(), built.local.clone()];
    args.extend(tags.iter().map(|t| format!("{}:{t}", built.registry_ref)));
    let _ = env.docker_command().args(&args).output();
}

#[tokio::test(flavor = "current_thread")]
async fn kernels_from_docker_built_layers_match_dockers_own_view() {
    let env = lkg_testkit::env();
    let repo = lkg_testkit::unique_name("kinoite");
    let builder_repo = lkg_testkit::unique_name("builder");
    // Three layers of kernels: 6.18.9 is installed, then removed by a later
    // RUN (docker writes a `.wh.` whiteout), 6.18.12 arrives last.
    let dockerfile = format!(
        "FROM {busybox}\n\
         RUN mkdir -p /usr/lib/modules/6.18.9-200.fc43.x86_64/kernel /usr/lib/modules/6.18.10-200.fc43.x86_64 \
             && echo old > /usr/lib/modules/6.18.9-200.fc43.x86_64/vmlinuz\n\
         RUN rm -rf /usr/lib/modules/6.18.9-200.fc43.x86_64 && mkdir -p /usr/lib/modules/6.18.12-200.fc43.x86_64 \
             && echo new > /usr/lib/modules/6.18.12-200.fc43.x86_64/vmlinuz\n\
         LABEL org.opencontainers.image.version=43.20260227.1 ostree.linux=6.18.12-200.fc43.x86_64\n",
        busybox = env.busybox_image
    );
    let tags = ["latest", "latest-20260227.1"];
    let base = build_and_push(env, &repo, &dockerfile, &tags);
    let builder =
        build_and_push(env, &builder_repo, &format!("FROM {}\nLABEL role=builder\n", env.busybox_image), &["latest"]);

    // Docker's own merged view, the pipeline's original method.
    let listed = env.docker(&["run", "--rm", "--entrypoint", "/bin/ls", &base.local, "/usr/lib/modules"]);
    let docker_view: Vec<&str> = listed.split_whitespace().collect();

    let layouts_dir = tempfile::tempdir().unwrap();
    let (base_dir, builder_dir) = (layouts_dir.path().join("base"), layouts_dir.path().join("builder"));
    copy_to_layout(&base.registry_ref, &tags, &base_dir);
    copy_to_layout(&builder.registry_ref, &["latest"], &builder_dir);
    let mut layouts = OciLayouts::new();
    layouts.add(&ImageRef::parse(&base.registry_ref).unwrap(), &base_dir);
    layouts.add(&ImageRef::parse(&builder.registry_ref).unwrap(), &builder_dir);

    let spec = Spec::parse(
        &serde_json::json!({
            "profile": "os-image",
            "base_image": format!("{}:latest", base.registry_ref),
            "build_container": format!("{}:latest", builder.registry_ref),
            "zfs_minor_version": "2.4",
            "akmods_upstream_ref": "906e565f712f43a598dcd272dc8ca053fcc99116",
        })
        .to_string(),
        "spec",
    )
    .unwrap();
    let context = RunContext { generated_at: "2026-02-27T14:03:12Z".into(), ..RunContext::default() };
    let mut layers_read = 0;
    let resolution = resolve(&layouts, &spec, None, &context, &mut |e: Event<'_>| {
        if matches!(e, Event::ScanningLayer { .. }) {
            layers_read += 1;
        }
    })
    .await
    .unwrap();
    let inputs = &resolution.manifest.body()["inputs"];
    assert_eq!(docker_view, ["6.18.10-200.fc43.x86_64", "6.18.12-200.fc43.x86_64"]);
    assert_eq!(inputs["kernel_releases"], serde_json::json!(docker_view));
    assert_eq!(inputs["kernel_release"], "6.18.12-200.fc43.x86_64");
    assert_eq!(inputs["fedora_version"], "43");
    assert_eq!(inputs["base_image_tag"], "latest-20260227.1");
    // skopeo, an independent reader of the same layout, agrees on the digest.
    assert_eq!(inputs["base_image_digest"], skopeo_digest(&base_dir, "latest"));
    assert_eq!(inputs["build_container_digest"], skopeo_digest(&builder_dir, "latest"));
    assert!(layers_read >= 3, "busybox plus two RUN layers: {layers_read}");

    // Replay: the lock from this run resolves to the same pins; a pin the
    // layout does not hold is refused.
    let lock = lock_from(&resolution.manifest, None).unwrap();
    let replay = resolve(&layouts, &spec, Some(&lock), &context, &mut |_| {}).await.unwrap();
    assert_eq!(replay.manifest.body()["inputs"]["base_image_digest"], inputs["base_image_digest"]);
    assert_eq!(replay.manifest.body()["inputs"]["kernel_releases"], inputs["kernel_releases"]);
    let gone =
        lock.to_json().replace(inputs["base_image_digest"].as_str().unwrap(), &format!("sha256:{}", "0".repeat(64)));
    let gone = Document::parse(&gone, "lock").unwrap();
    let err = resolve(&layouts, &spec, Some(&gone), &context, &mut |_| {}).await.unwrap_err();
    assert!(matches!(err, ResolveError::NotFound { ref input, .. } if input == "base_image"), "{err}");

    cleanup(env, &base, &tags);
    cleanup(env, &builder, &["latest"]);
}
