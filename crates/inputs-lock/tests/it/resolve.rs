//! Resolution logic over the fake resolver: immutable tags as the pipeline
//! chooses them, kernels from streamed layers, lock mode, failures.

use lkg_inputs_lock::{
    Digest, Document, Event, Input, Profile, Resolution, ResolveError, RunContext, RunMetadata, Spec, lock_from,
    resolve,
};

use crate::fake::FakeRegistry;
use crate::layers::{Entry, layer};

const BASE: &str = "ghcr.io/ublue-os/kinoite-main";
const BUILDER: &str = "ghcr.io/ublue-os/devcontainer";
const COMMIT: &str = "906e565f712f43a598dcd272dc8ca053fcc99116";

fn os_image_spec() -> Spec {
    Spec::parse(
        &serde_json::json!({
            "profile": "os-image",
            "base_image": format!("{BASE}:latest"),
            "build_container": format!("{BUILDER}:latest"),
            "zfs_minor_version": "2.4",
            "akmods_upstream_ref": COMMIT,
        })
        .to_string(),
        "spec.json",
    )
    .unwrap()
}

fn kinoite_layers(newest: &str) -> Vec<Vec<u8>> {
    vec![
        layer(&[
            Entry::Dir("usr/lib/modules/6.18.9-200.fc43.x86_64"),
            Entry::File("usr/lib/modules/6.18.9-200.fc43.x86_64/vmlinuz", b"old"),
            Entry::Dir("usr/lib/modules/6.18.10-200.fc43.x86_64"),
        ]),
        layer(&[
            Entry::Whiteout("usr/lib/modules/6.18.9-200.fc43.x86_64"),
            Entry::Dir(&format!("usr/lib/modules/{newest}")),
        ]),
        layer(&[Entry::File("etc/motd", b"hello")]),
    ]
}

/// A registry as the pipeline sees it on 2026-02-27: `latest` and its
/// immutable twin, and a build container.
fn registry() -> (FakeRegistry, Digest, Digest) {
    let mut registry = FakeRegistry::new();
    let base = registry.push(
        BASE,
        &["latest", "latest-20260227.1", "43-20260227.1"],
        &[("org.opencontainers.image.version", "43.20260227.1"), ("ostree.linux", "6.18.12-200.fc43.x86_64")],
        kinoite_layers("6.18.12-200.fc43.x86_64"),
    );
    let builder = registry.push(BUILDER, &["latest"], &[], vec![layer(&[Entry::File("bin/sh", b"")])]);
    (registry, base, builder)
}

fn context() -> RunContext {
    let vars = [
        ("GITHUB_REPOSITORY", "danathar/kinoite-zfs"),
        ("GITHUB_RUN_ID", "22489145612"),
        ("GITHUB_SHA", "3f0c2a7d9b1e4f6a8c5d2e0b7a9f1c3e5d7b9a2c"),
    ];
    RunContext {
        generated_at: "2026-02-27T14:03:12Z".into(),
        run: RunMetadata::from_github_env(|n| vars.iter().find(|(k, _)| *k == n).map(|(_, v)| (*v).to_owned())),
        lock_file_path: None,
    }
}

async fn run(registry: &FakeRegistry, spec: &Spec, lock: Option<&Document>) -> Result<Resolution, ResolveError> {
    resolve(registry, spec, lock, &context(), &mut |_: Event<'_>| {}).await
}

#[tokio::test]
async fn the_os_image_spec_resolves_like_the_pipeline() {
    let (registry, base, builder) = registry();
    let resolution = run(&registry, &os_image_spec(), None).await.unwrap();
    let manifest = &resolution.manifest;
    assert_eq!(manifest.profile(), Profile::OsImage);
    // The first candidate derived from the version label matched: one probe.
    assert_eq!(registry.probes(), ["latest-20260227.1"]);
    let inputs = &manifest.body()["inputs"];
    assert_eq!(inputs["base_image_digest"], base.to_string());
    assert_eq!(inputs["build_container_digest"], builder.to_string());
    assert_eq!(inputs["kernel_releases"], serde_json::json!(["6.18.10-200.fc43.x86_64", "6.18.12-200.fc43.x86_64"]));
    let _guard = lkg_testkit::settings().bind_to_scope();
    let text = manifest.to_json().replace(base.as_str(), "[BASE_DIGEST]").replace(builder.as_str(), "[BUILDER_DIGEST]");
    insta::assert_snapshot!(text, @r#"
        {
          "schema_version": 1,
          "generated_at": "[TS]",
          "repository": "danathar/kinoite-zfs",
          "run": {
            "id": 22489145612,
            "sha": "3f0c2a7d9b1e4f6a8c5d2e0b7a9f1c3e5d7b9a2c"
          },
          "inputs": {
            "use_input_lock": false,
            "lock_file_path": "ci/inputs.lock.json",
            "fedora_version": "43",
            "kernel_release": "6.18.12-200.fc43.x86_64",
            "kernel_releases": [
              "6.18.10-200.fc43.x86_64",
              "6.18.12-200.fc43.x86_64"
            ],
            "base_image_ref": "ghcr.io/ublue-os/kinoite-main:latest",
            "base_image_name": "ghcr.io/ublue-os/kinoite-main",
            "base_image_tag": "latest-20260227.1",
            "base_image_pinned": "ghcr.io/ublue-os/kinoite-main@[BASE_DIGEST]",
            "base_image_digest": "[BASE_DIGEST]",
            "build_container_ref": "ghcr.io/ublue-os/devcontainer:latest",
            "build_container_pinned": "ghcr.io/ublue-os/devcontainer@[BUILDER_DIGEST]",
            "build_container_digest": "[BUILDER_DIGEST]",
            "zfs_minor_version": "2.4",
            "akmods_upstream_ref": "906e565f712f43a598dcd272dc8ca053fcc99116"
          }
        }
    "#);
    insta::assert_debug_snapshot!(resolution.notes, @r#"
        [
            "base_image: immutable tag latest-20260227.1 (candidates tried: latest-20260227.1)",
        ]
    "#);
    // What resolve writes is a manifest lkg's own check accepts, and its lock replays.
    assert_eq!(lkg_inputs_lock::check(manifest, &[]), []);
    assert!(lock_from(manifest, None).is_ok());
}

#[tokio::test]
async fn an_immutable_tag_is_found_in_the_tag_list_when_no_derived_name_matches() {
    let mut registry = FakeRegistry::new();
    let base = registry.push(
        BASE,
        &["latest", "stable-20260227.1"],
        &[("org.opencontainers.image.version", "43.20260227.1")],
        kinoite_layers("6.18.12-200.fc43.x86_64"),
    );
    let decoy = registry.push(BASE, &["old-20260227.1"], &[], kinoite_layers("6.18.11-200.fc43.x86_64"));
    assert_ne!(base, decoy);
    registry.push(BUILDER, &["latest"], &[], vec![layer(&[])]);
    let resolution = run(&registry, &os_image_spec(), None).await.unwrap();
    assert_eq!(resolution.manifest.body()["inputs"]["base_image_tag"], "stable-20260227.1");
    assert_eq!(registry.probes(), ["latest-20260227.1", "43-20260227.1", "stable-20260227.1"]);
}

#[tokio::test]
async fn no_immutable_tag_and_no_version_label_are_errors_that_say_what_was_tried() {
    let mut registry = FakeRegistry::new();
    registry.push(
        BASE,
        &["latest"],
        &[("org.opencontainers.image.version", "43.20260227.1")],
        kinoite_layers("6.18.12-200.fc43.x86_64"),
    );
    registry.push(BUILDER, &["latest"], &[], vec![layer(&[])]);
    let err = run(&registry, &os_image_spec(), None).await.unwrap_err();
    assert!(matches!(&err, ResolveError::NoImmutableTag { tried, .. } if tried.len() == 2), "{err}");
    insta::assert_snapshot!(err.to_string().replace(&digest_of(&err), "[DIGEST]"), @"input `base_image`: no immutable tag of ghcr.io/ublue-os/kinoite-main points at [DIGEST]; tried latest-20260227.1, 43-20260227.1");

    let mut registry = FakeRegistry::new();
    registry.push(BASE, &["latest"], &[], kinoite_layers("6.18.12-200.fc43.x86_64"));
    registry.push(BUILDER, &["latest"], &[], vec![layer(&[])]);
    let err = run(&registry, &os_image_spec(), None).await.unwrap_err();
    insta::assert_snapshot!(err.to_string(), @"input `base_image`: cannot derive an immutable tag for `ghcr.io/ublue-os/kinoite-main:latest`: label org.opencontainers.image.version is absent, expected MAJOR.YYYYMMDD[.N] (e.g. 43.20260227.1)");
}

fn digest_of(err: &ResolveError) -> String {
    match err {
        ResolveError::NoImmutableTag { digest, .. } => digest.to_string(),
        _ => String::new(),
    }
}

#[tokio::test]
async fn lock_mode_uses_the_locks_pins_even_after_latest_moved() {
    let (mut registry, base, builder) = registry();
    let first = run(&registry, &os_image_spec(), None).await.unwrap();
    let lock = lock_from(&first.manifest, None).unwrap();
    // The next day `latest` moves to a new image with a newer kernel.
    let moved = registry.push(
        BASE,
        &["latest", "latest-20260301"],
        &[("org.opencontainers.image.version", "43.20260301")],
        kinoite_layers("6.18.13-200.fc43.x86_64"),
    );
    registry.push(BUILDER, &["latest"], &[], vec![layer(&[Entry::File("bin/bash", b"")])]);
    assert_ne!(moved, base);
    let floating = run(&registry, &os_image_spec(), None).await.unwrap();
    assert_eq!(floating.manifest.body()["inputs"]["kernel_release"], "6.18.13-200.fc43.x86_64");

    let replay = run(&registry, &os_image_spec(), Some(&lock)).await.unwrap();
    let inputs = &replay.manifest.body()["inputs"];
    assert_eq!(inputs["use_input_lock"], true);
    assert_eq!(inputs["base_image_digest"], base.to_string());
    assert_eq!(inputs["base_image_ref"], format!("{BASE}@{base}"));
    assert_eq!(inputs["base_image_tag"], "latest-20260227.1");
    assert_eq!(inputs["build_container_ref"], format!("{BUILDER}@{builder}"));
    assert_eq!(inputs["kernel_release"], "6.18.12-200.fc43.x86_64");
    // The replay's inputs are the first run's: diff says so.
    assert!(
        lkg_inputs_lock::diff(&first.manifest, &replay.manifest).inputs.iter().all(|d| [
            "use_input_lock",
            "base_image.ref",
            "build_container.ref"
        ]
        .contains(&d.field.as_str()))
    );
}

#[tokio::test]
async fn lock_mode_refuses_a_lock_that_floats_is_invalid_or_names_a_missing_image() {
    let (registry, _, _) = registry();
    let spec = os_image_spec();
    let lock_text = std::fs::read_to_string(crate::fixture("kinoite-zfs/inputs.lock.json")).unwrap();
    // The real lock's digests are not in this registry: verified to exist, they fail.
    let real = Document::parse(&lock_text, "inputs.lock.json").unwrap();
    let err = run(&registry, &spec, Some(&real)).await.unwrap_err();
    assert!(matches!(&err, ResolveError::NotFound { input, .. } if input == "base_image"), "{err}");
    insta::assert_snapshot!(err.to_string(), @"input `base_image`: `ghcr.io/ublue-os/kinoite-main@sha256:5cbac4096e2a05ff4f51778a9276064064e548183de98f5130086d4d01c4e021` does not exist (check the name and tag, and that the registry still has it)");

    let placeholder =
        Document::parse(&lock_text.replace("906e565f712f43a598dcd272dc8ca053fcc99116", "REPLACE_ME"), "lock").unwrap();
    let err = run(&registry, &spec, Some(&placeholder)).await.unwrap_err();
    insta::assert_snapshot!(err.to_string(), @r#"
        the lock is not fit for replay (1 problem):
          akmods_upstream_ref: `REPLACE_ME` is a placeholder (REPLACE_ME): put the real value from a run's build-inputs.json
    "#);

    let generic_spec =
        Spec::parse(r#"{"inputs": {"app": {"image": "ghcr.io/ublue-os/kinoite-main:latest"}}}"#, "spec").unwrap();
    let generic_lock =
        Document::parse(r#"{"version": 1, "description": "pins", "inputs": {"other": {"value": "1"}}}"#, "lock")
            .unwrap();
    let err = run(&registry, &generic_spec, Some(&generic_lock)).await.unwrap_err();
    assert!(matches!(&err, ResolveError::UnusedLockInput { input } if input == "other"), "{err}");
    let generic_spec = Spec::parse(
        r#"{"inputs": {"app": {"image": "ghcr.io/ublue-os/kinoite-main:latest"}, "other": {"value": "0"}}}"#,
        "spec",
    )
    .unwrap();
    let err = run(&registry, &generic_spec, Some(&generic_lock)).await.unwrap_err();
    assert!(matches!(&err, ResolveError::Floats { input } if input == "app"), "{err}");
}

#[tokio::test]
async fn layer_problems_name_the_layer_and_the_cause() {
    let mut registry = FakeRegistry::new();
    let mut broken = layer(&[Entry::Dir("usr/lib/modules/6.18.9-200.fc43.x86_64"), Entry::File("x", &[9u8; 9000])]);
    let n = broken.len();
    broken.truncate(n - 30);
    registry.push(
        BASE,
        &["latest", "latest-20260227.1"],
        &[("org.opencontainers.image.version", "43.20260227.1")],
        vec![broken],
    );
    registry.push(BUILDER, &["latest"], &[], vec![layer(&[])]);
    let err = run(&registry, &os_image_spec(), None).await.unwrap_err();
    assert!(matches!(&err, ResolveError::Layer { input, .. } if input == "base_image"), "{err}");
    assert!(err.to_string().contains("gzip stream is corrupt or truncated"), "{err}");

    let mut registry = FakeRegistry::new();
    registry.push(
        BASE,
        &["latest", "latest-20260227.1"],
        &[("org.opencontainers.image.version", "43.20260227.1")],
        vec![layer(&[Entry::Dir("etc")])],
    );
    registry.push(BUILDER, &["latest"], &[], vec![layer(&[])]);
    let err = run(&registry, &os_image_spec(), None).await.unwrap_err();
    assert!(matches!(err, ResolveError::NoKernel { layers: 1, .. }), "{err}");
}

#[tokio::test]
async fn a_generic_spec_resolves_labels_and_records_what_it_is_asked() {
    let (registry, base, _) = registry();
    let spec = Spec::parse(
        &serde_json::json!({"inputs": {
            "os": {"image": format!("{BASE}:latest"), "record": ["ref", "pinned"]},
            "os_version": {"label": {"image": "os", "key": "org.opencontainers.image.version"}},
            "kernel": {"kernel_release": "os"},
            "zfs": {"value": "2.4"},
            "akmods": {"git": {"url": "https://github.com/ublue-os/akmods", "ref": "main", "commit": COMMIT}}
        }})
        .to_string(),
        "spec",
    )
    .unwrap();
    let resolution = run(&registry, &spec, None).await.unwrap();
    let inputs = resolution.manifest.inputs();
    let Some(Input::Image(os)) = inputs.get("os") else { panic!("os is an image") };
    assert_eq!(os.pinned.as_deref(), Some(format!("{BASE}@{base}").as_str()));
    assert_eq!((os.digest.as_ref(), os.tag.as_ref()), (None, None));
    assert_eq!(inputs.get("os_version"), Some(&Input::Value("43.20260227.1".into())));
    assert_eq!(inputs.get("kernel"), Some(&Input::Value("6.18.12-200.fc43.x86_64".into())));
    // No immutable tag was asked for: no probes.
    assert!(registry.probes().is_empty());
    let missing = Spec::parse(r#"{"inputs": {"v": {"label": {"image": "os", "key": "k"}}}}"#, "spec").unwrap_err();
    insta::assert_snapshot!(missing.to_string(), @"spec field `inputs.v`: names `os`, which is not an image input of this spec");
    let branch = Spec::parse(r#"{"inputs": {"g": {"git": {"url": "u", "ref": "main"}}}}"#, "spec").unwrap_err();
    insta::assert_snapshot!(branch.to_string(), @"spec field `inputs.g`: a git input needs `commit`, a full 40-hex commit id (lkg does not resolve branch names)");
}
