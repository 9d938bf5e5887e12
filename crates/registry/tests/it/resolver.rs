//! `RegistryResolver`: `lkg-inputs-lock`'s `resolve` straight from the real
//! registry. Docker is the reference for what an image holds (its own layer
//! tars and whiteouts, its merged view in a running container), skopeo for
//! digests and labels.

use std::io::Write as _;

use bytes::Bytes;
use lkg_inputs_lock::{
    Document, Event, ImageRef, Layer as InputLayer, Resolution, ResolveError, Resolver, RunContext, Spec, diff,
    lock_from, resolve,
};
use lkg_registry::{Client, Digest, Manifest, Platform, Reference, RegistryResolver, ResolverError, media};
use lkg_testkit::unique_name;

use crate::common::{amd64, client, docker_ref, env, reference, skopeo_json};
use crate::random::push_index;
use crate::servers::{Fault, FaultProxy};

const AKMODS: &str = "906e565f712f43a598dcd272dc8ca053fcc99116";
const K9: &str = "6.18.9-200.fc43.x86_64";
const K10: &str = "6.18.10-200.fc43.x86_64";
const K12: &str = "6.18.12-200.fc43.x86_64";
const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

fn context() -> RunContext {
    RunContext { generated_at: "2026-02-27T14:03:12Z".into(), ..RunContext::default() }
}

fn os_image_spec(base: &str, builder: &str) -> Spec {
    let spec = serde_json::json!({
        "profile": "os-image",
        "base_image": base,
        "build_container": builder,
        "zfs_minor_version": "2.4",
        "akmods_upstream_ref": AKMODS,
    });
    Spec::parse(&spec.to_string(), "spec").unwrap()
}

fn generic_spec(inputs: &serde_json::Value) -> Spec {
    Spec::parse(&serde_json::json!({ "inputs": inputs }).to_string(), "spec").unwrap()
}

async fn resolve_quietly(
    resolver: &RegistryResolver,
    spec: &Spec,
    lock: Option<&Document>,
) -> Result<Resolution, ResolveError> {
    resolve(resolver, spec, lock, &context(), &mut |_| {}).await
}

/// The error a failed resolution's registry resolver gave.
fn resolver_error(e: &ResolveError) -> &ResolverError {
    match e {
        ResolveError::Resolver { source, .. } => {
            source.downcast_ref::<ResolverError>().unwrap_or_else(|| panic!("not the registry resolver's: {e}"))
        }
        other => panic!("expected a resolver error, got: {other}"),
    }
}

/// `skopeo inspect` of `r` (`docker://...`), picking linux/amd64 from an index.
fn skopeo_inspect(r: &str) -> serde_json::Value {
    skopeo_json(&["inspect", "--tls-verify=false", "--override-os", "linux", "--override-arch", "amd64", r])
}

/// `docker build` of `dockerfile` (the legacy builder: buildx is not
/// installed here), pushed to registry a as `name` under each of `tags`.
/// Returns the repository (`registry/name`) and the image id.
fn docker_build_push(name: &str, dockerfile: &str, tags: &[&str]) -> (String, String) {
    let env = env();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), dockerfile).unwrap();
    let out = env.docker_command().env("DOCKER_BUILDKIT", "0").args(["build", "-q"]).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "docker build: {}", String::from_utf8_lossy(&out.stderr));
    let id = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let repository = format!("{}/{name}", env.registry_a);
    for tag in tags {
        let remote = format!("{repository}:{tag}");
        env.docker(&["tag", &id, &remote]);
        env.docker(&["push", "-q", &remote]);
    }
    (repository, id)
}

/// Removes images (by id, with every tag) from the private engine.
fn docker_rmi(ids: &[&str]) {
    let mut args = vec!["rmi", "-f"];
    args.extend(ids);
    let _ = env().try_docker(&args);
}

/// The OS-image pipeline against a docker-built image: three layers (the
/// middle one deletes a kernel, so docker writes a `.wh.` whiteout), the
/// version and kernel labels, a floating and an immutable tag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_os_image_resolves_from_the_registry_as_docker_and_skopeo_see_it() {
    let env = env();
    let base_name = unique_name("resolver-base");
    let builder_name = unique_name("resolver-builder");
    let dockerfile = format!(
        "FROM {busybox}\n\
         RUN mkdir -p /usr/lib/modules/{K9}/kernel /usr/lib/modules/{K10} && echo old > /usr/lib/modules/{K9}/vmlinuz\n\
         RUN rm -rf /usr/lib/modules/{K9} && mkdir -p /usr/lib/modules/{K12} && echo new > /usr/lib/modules/{K12}/vmlinuz\n\
         LABEL org.opencontainers.image.version=43.20260227.1 ostree.linux={K12}\n",
        busybox = env.busybox_image
    );
    let (base, base_id) = docker_build_push(&base_name, &dockerfile, &["latest", "latest-20260227.1"]);
    let (builder, builder_id) =
        docker_build_push(&builder_name, &format!("FROM {}\nLABEL role=builder\n", env.busybox_image), &["latest"]);
    // Docker's own merged view: the pipeline's original method.
    let listed = env.docker(&["run", "--rm", "--entrypoint", "/bin/ls", &base_id, "/usr/lib/modules"]);
    let docker_view: Vec<&str> = listed.split_whitespace().collect();
    assert_eq!(docker_view, [K10, K12], "the fixture itself");

    let resolver = RegistryResolver::new(client(), amd64());
    let spec = os_image_spec(&format!("{base}:latest"), &format!("{builder}:latest"));
    let mut layers_read = 0;
    let resolution = resolve(&resolver, &spec, None, &context(), &mut |e: Event<'_>| {
        if matches!(e, Event::ScanningLayer { .. }) {
            layers_read += 1;
        }
    })
    .await
    .unwrap();
    let inputs = resolution.manifest.body()["inputs"].clone();

    // Tag -> digest, as skopeo reads it from the same registry.
    let theirs = skopeo_inspect(&format!("docker://{base}:latest"));
    assert_eq!(inputs["base_image_digest"], theirs["Digest"]);
    assert_eq!(inputs["base_image_pinned"], format!("{base}@{}", theirs["Digest"].as_str().unwrap()));
    assert_eq!(inputs["build_container_digest"], skopeo_inspect(&format!("docker://{builder}:latest"))["Digest"]);
    // The immutable tag whose digest is the base image's, from its version label.
    assert_eq!(inputs["base_image_tag"], "latest-20260227.1");
    // Kernels from the layers, whiteout honoured: what docker shows in a container.
    assert_eq!(inputs["kernel_releases"], serde_json::json!(docker_view));
    assert_eq!(inputs["kernel_release"], K12);
    assert_eq!(inputs["fedora_version"], "43");
    assert_eq!(layers_read, 3, "busybox and two RUN layers, each read once");

    // Label -> value, against skopeo's labels.
    let labelled = generic_spec(&serde_json::json!({
        "base": {"image": format!("{base}:latest")},
        "version": {"label": {"image": "base", "key": "org.opencontainers.image.version"}},
        "kernel": {"label": {"image": "base", "key": "ostree.linux"}},
    }));
    let values = resolve_quietly(&resolver, &labelled, None).await.unwrap();
    let values = &values.manifest.body()["inputs"];
    assert_eq!(values["version"]["value"], theirs["Labels"]["org.opencontainers.image.version"]);
    assert_eq!(values["kernel"]["value"], theirs["Labels"]["ostree.linux"]);

    // Lock mode: nothing floats. Move the builder's `latest` to a new image:
    // a floating run follows it, the replay of the lock does not, and diff
    // names exactly the input that moved.
    let lock = lock_from(&resolution.manifest, None).unwrap();
    let (_, moved_id) =
        docker_build_push(&builder_name, &format!("FROM {}\nLABEL role=builder-v2\n", env.busybox_image), &["latest"]);
    let floating = resolve_quietly(&resolver, &spec, None).await.unwrap();
    let replay = resolve_quietly(&resolver, &spec, Some(&lock)).await.unwrap();
    let replayed = &replay.manifest.body()["inputs"];
    assert_eq!(replayed["build_container_digest"], inputs["build_container_digest"]);
    assert_eq!(replayed["base_image_digest"], inputs["base_image_digest"]);
    assert_eq!(replayed["kernel_releases"], inputs["kernel_releases"]);
    assert_eq!(replayed["use_input_lock"], true);
    assert_ne!(floating.manifest.body()["inputs"]["build_container_digest"], inputs["build_container_digest"]);
    let moved = diff(&replay.manifest, &floating.manifest);
    let fields: Vec<&str> = moved.inputs.iter().map(|d| d.field.as_str()).collect();
    assert!(fields.contains(&"build_container.digest"), "{moved}");
    assert!(!fields.iter().any(|f| f.starts_with("base_image.digest") || f.starts_with("kernel")), "{moved}");

    // A pin the registry does not have fails the replay, naming the input.
    let gone =
        lock.to_json().replace(inputs["base_image_digest"].as_str().unwrap(), &format!("sha256:{}", "0".repeat(64)));
    let gone = Document::parse(&gone, "lock").unwrap();
    let err = resolve_quietly(&resolver, &spec, Some(&gone)).await.unwrap_err();
    assert!(matches!(err, ResolveError::NotFound { ref input, .. } if input == "base_image"), "{err}");
    assert!(err.to_string().contains(&format!("{base}@sha256:000")), "{err}");

    docker_rmi(&[&base_id, &builder_id, &moved_id]);
}

/// One layer's blob, as pushed.
struct LayerBlob {
    bytes: Vec<u8>,
    media_type: &'static str,
    /// The digest of the uncompressed tar (the config's `rootfs.diff_ids`).
    diff_id: Digest,
}

/// One entry of a layer tar.
enum Entry<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8]),
    /// `dir/.wh.name`: deletes `dir/name` from the layers below.
    Whiteout(&'a str),
}

fn tar(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o755);
        header.set_mtime(1_700_000_000);
        let (path, kind, content): (String, _, &[u8]) = match *entry {
            Entry::Dir(path) => (format!("{path}/"), tar::EntryType::Directory, b""),
            Entry::File(path, content) => (path.to_owned(), tar::EntryType::Regular, content),
            Entry::Whiteout(path) => {
                let (dir, name) = path.rsplit_once('/').unwrap();
                (format!("{dir}/.wh.{name}"), tar::EntryType::Regular, b"")
            }
        };
        header.set_entry_type(kind);
        header.set_size(content.len() as u64);
        builder.append_data(&mut header, path, content).unwrap();
    }
    builder.into_inner().unwrap()
}

fn gzip_layer(entries: &[Entry<'_>]) -> LayerBlob {
    let plain = tar(entries);
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(&plain).unwrap();
    LayerBlob { bytes: encoder.finish().unwrap(), media_type: LAYER_GZIP, diff_id: Digest::sha256(&plain) }
}

fn plain_layer(entries: &[Entry<'_>]) -> LayerBlob {
    let bytes = tar(entries);
    LayerBlob { diff_id: Digest::sha256(&bytes), bytes, media_type: LAYER_TAR }
}

/// Pushes an OCI image of `layers` with `labels` for `platform`, tagged with `r`'s tag.
async fn push_image(
    client: &Client,
    r: &Reference,
    layers: &[LayerBlob],
    labels: &[(&str, &str)],
    platform: &Platform,
) -> Manifest {
    let mut descriptors = Vec::new();
    for layer in layers {
        let digest = Digest::sha256(&layer.bytes);
        client.push_blob(r, &digest, Bytes::from(layer.bytes.clone())).await.unwrap();
        descriptors
            .push(serde_json::json!({"mediaType": layer.media_type, "digest": digest, "size": layer.bytes.len()}));
    }
    let labels: serde_json::Map<String, serde_json::Value> =
        labels.iter().map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v))).collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "created": "2026-02-27T10:00:00Z",
        "architecture": platform.architecture,
        "os": platform.os,
        "config": {"Labels": labels},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| &l.diff_id).collect::<Vec<_>>()},
    }))
    .unwrap();
    let config_digest = Digest::sha256(&config);
    client.push_blob(r, &config_digest, Bytes::from(config.clone())).await.unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": media::OCI_CONFIG, "digest": config_digest, "size": config.len()},
        "layers": descriptors,
    }))
    .unwrap();
    let manifest = Manifest::from_bytes(manifest, Some(media::OCI_MANIFEST)).unwrap();
    client.put_manifest(r, &r.target(), &manifest).await.unwrap();
    manifest
}

/// The amd64 kinoite layers: two kernels, then a whiteout of the older one
/// and a newer kernel.
fn kinoite_layers() -> Vec<LayerBlob> {
    vec![
        gzip_layer(&[
            Entry::Dir(&format!("usr/lib/modules/{K9}")),
            Entry::File(&format!("usr/lib/modules/{K9}/vmlinuz"), b"old kernel"),
            Entry::Dir(&format!("usr/lib/modules/{K10}")),
            Entry::File(&format!("usr/lib/modules/{K10}/vmlinuz"), b"kernel"),
        ]),
        gzip_layer(&[
            Entry::Whiteout(&format!("usr/lib/modules/{K9}")),
            Entry::Dir(&format!("usr/lib/modules/{K12}")),
            Entry::File(&format!("usr/lib/modules/{K12}/vmlinuz"), b"new kernel"),
        ]),
    ]
}

/// A multi-platform base image built by lkg's client: the pin is the index's
/// digest (as skopeo reports it), labels, layers and kernels are the chosen
/// platform's; a missing immutable candidate is a 404 answered as "absent".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_platform_image_pins_its_index_and_reads_the_platform_image() {
    let env = env();
    let client = client();
    let r = reference(&env.registry_a, "resolver", "kinoite", "latest");
    let amd = push_image(
        &client,
        &r.at_tag("amd64"),
        &kinoite_layers(),
        &[("org.opencontainers.image.version", "43.20260227.1"), ("ostree.linux", K12)],
        &amd64(),
    )
    .await;
    let arm: Platform = "linux/arm64/v8".parse().unwrap();
    let arm_image = push_image(
        &client,
        &r.at_tag("arm64"),
        &[gzip_layer(&[Entry::Dir("usr/lib/modules/6.18.12-200.fc43.aarch64")])],
        &[("org.opencontainers.image.version", "43.20260227.1"), ("ostree.linux", "6.18.12-200.fc43.aarch64")],
        &arm,
    )
    .await;
    let index = push_index(&client, &r, &[(&amd, amd64()), (&arm_image, arm.clone())]).await.unwrap();
    // Only the pipeline's *second* candidate exists: the first is probed
    // (HEAD, 404) and skipped.
    client.put_manifest(&r, "43-20260227.1", &index).await.unwrap();

    let resolver = RegistryResolver::new(client.clone(), amd64());
    let image = ImageRef::parse(&r.to_string()).unwrap();
    let inspected = resolver.inspect(&image).await.unwrap().unwrap();
    let theirs = skopeo_inspect(&docker_ref(&r));
    assert_eq!(inspected.digest.as_str(), index.digest.as_str());
    assert_eq!(inspected.digest.as_str(), theirs["Digest"].as_str().unwrap(), "the index digest, as skopeo reports");
    assert_eq!(serde_json::json!(inspected.labels), theirs["Labels"]);
    let layers: Vec<&str> = inspected.layers.iter().map(|l| l.digest.as_str()).collect();
    assert_eq!(serde_json::json!(layers), theirs["Layers"]);
    assert_eq!(resolver.digest(&image).await.unwrap().unwrap(), inspected.digest);
    assert_eq!(resolver.digest(&ImageRef::parse(&format!("{r}-missing")).unwrap()).await.unwrap(), None);

    let spec = os_image_spec(&r.to_string(), &r.at_tag("arm64").to_string());
    let mut probed = Vec::new();
    let resolution = resolve(&resolver, &spec, None, &context(), &mut |e: Event<'_>| {
        if let Event::ProbingTag { tag, .. } = e {
            probed.push(tag.to_owned());
        }
    })
    .await
    .unwrap();
    let inputs = &resolution.manifest.body()["inputs"];
    assert_eq!(probed, ["latest-20260227.1", "43-20260227.1"]);
    assert_eq!(inputs["base_image_tag"], "43-20260227.1");
    assert_eq!(inputs["base_image_digest"], index.digest.as_str());
    assert_eq!(inputs["kernel_releases"], serde_json::json!([K10, K12]));
    assert_eq!(inputs["build_container_digest"], arm_image.digest.as_str());

    // The arm64 resolver reads the arm64 image under the same index digest.
    let arm_resolver = RegistryResolver::new(client.clone(), arm);
    let kernels = generic_spec(&serde_json::json!({
        "base": {"image": r.to_string()},
        "kernels": {"kernel_releases": "base"},
    }));
    let arm_resolution = resolve_quietly(&arm_resolver, &kernels, None).await.unwrap();
    let arm_inputs = &arm_resolution.manifest.body()["inputs"];
    assert_eq!(arm_inputs["base"]["image"]["digest"], index.digest.as_str());
    assert_eq!(arm_inputs["kernels"]["value"], serde_json::json!(["6.18.12-200.fc43.aarch64"]));

    // A platform the index lacks is bad input that names what there is.
    let s390 = RegistryResolver::new(client, "linux/s390x".parse().unwrap());
    let err = resolve_quietly(&s390, &kernels, None).await.unwrap_err();
    let cause = resolver_error(&err);
    assert!(matches!(cause, ResolverError::NoPlatform { .. }) && cause.is_input(), "{err}");
    assert!(err.to_string().contains("linux/amd64, linux/arm64/v8"), "{err}");
}

/// The registry's answers about absent things are answers, not errors; an
/// unreachable registry is an environment error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absent_images_are_none_and_an_unreachable_registry_is_environment() {
    let env = env();
    let resolver = RegistryResolver::new(client(), amd64());
    let r = reference(&env.registry_a, "resolver", "absent", "latest");
    let absent = ImageRef::parse(&r.to_string()).unwrap();
    assert!(resolver.inspect(&absent).await.unwrap().is_none());
    assert!(resolver.digest(&absent).await.unwrap().is_none());
    assert!(resolver.tags(&absent).await.unwrap().is_empty(), "a repository that does not exist has no tags");
    let spec = generic_spec(&serde_json::json!({ "app": {"image": r.to_string()} }));
    let err = resolve_quietly(&resolver, &spec, None).await.unwrap_err();
    assert!(matches!(err, ResolveError::NotFound { ref input, .. } if input == "app"), "{err}");

    let down = format!("127.0.0.1:{}/nothing/here:1", lkg_testkit::free_port());
    let spec = generic_spec(&serde_json::json!({ "app": {"image": down} }));
    let err = resolve_quietly(&resolver, &spec, None).await.unwrap_err();
    let cause = resolver_error(&err);
    assert!(cause.is_environment() && !cause.is_input(), "{err}");
}

/// A layer reader that takes nothing.
struct Refuses;
impl std::io::Write for Refuses {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        Err(std::io::Error::other("not a tar"))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A layer whose bytes are altered on the way is refused by its digest even
/// when the scan itself saw nothing wrong (the byte flipped is file content,
/// which the scan skips); a sink that refuses bytes stops the read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_layer_fails_its_digest_and_a_refusing_sink_stops_the_read() {
    let env = env();
    let client = client();
    let r = reference(&env.registry_a, "resolver", "tampered", "latest");
    // Uncompressed, and mostly one file's content: the proxy flips the
    // middle byte of the body, inside that content.
    let content = crate::random::random_bytes(5, 256 << 10);
    let layer = plain_layer(&[
        Entry::Dir(&format!("usr/lib/modules/{K12}")),
        Entry::File(&format!("usr/lib/modules/{K12}/vmlinuz"), &content),
    ]);
    let layer_digest = Digest::sha256(&layer.bytes);
    push_image(&client, &r, &[layer], &[], &amd64()).await;
    let spec = |registry: &str| {
        generic_spec(&serde_json::json!({
            "base": {"image": format!("{registry}/{}:latest", r.repository())},
            "kernels": {"kernel_releases": "base"},
        }))
    };
    let resolver = RegistryResolver::new(client.clone(), amd64());
    let clean = resolve_quietly(&resolver, &spec(&env.registry_a), None).await.unwrap();
    assert_eq!(clean.manifest.body()["inputs"]["kernels"]["value"], serde_json::json!([K12]));

    let proxy = FaultProxy::start(&env.registry_a);
    proxy.set(Fault::TamperBody(layer_digest.to_string()));
    let err = resolve_quietly(&resolver, &spec(&proxy.addr), None).await.unwrap_err();
    let cause = resolver_error(&err);
    assert!(
        matches!(cause, ResolverError::Registry(lkg_registry::RegistryError::DigestMismatch { expected, .. }) if *expected == layer_digest),
        "{err}"
    );
    assert!(!cause.is_input(), "a registry serving the wrong bytes is not the user's input: {err}");

    // A sink that takes nothing: the read stops with the sink's error.
    let repository = ImageRef::parse(&format!("{}/{}", env.registry_a, r.repository())).unwrap();
    let input_layer = InputLayer {
        digest: lkg_inputs_lock::Digest::parse(layer_digest.as_str()).unwrap(),
        media_type: LAYER_TAR.into(),
        size: 0,
    };
    let err = resolver.read_layer(&repository, &input_layer, &mut Refuses).await.unwrap_err();
    assert!(matches!(err, ResolverError::Sink { written: 0, .. }), "{err}");
    assert!(err.to_string().contains("not a tar"), "{err}");
}
