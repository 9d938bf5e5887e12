//! Reading and writing the real files: exact round trips, unknown fields
//! kept in place, profiles recognised, lock-from reproducing the real lock.

use lkg_inputs_lock::{
    Document, DocumentError, GitInput, ImageInput, Input, Inputs, Kind, LockError, Profile, RunMetadata, check,
    lock_from,
};

use crate::{BASE_DIGEST, fixture, fixture_text};

#[test]
fn the_real_files_round_trip_byte_for_byte() {
    for path in ["kinoite-zfs/inputs.lock.json", "kinoite-zfs/build-inputs.json", "kinoite-zfs/build-inputs.moved.json"]
    {
        let text = fixture_text(path);
        let doc = Document::read(&fixture(path)).unwrap();
        assert_eq!(doc.profile(), Profile::OsImage, "{path}");
        assert_eq!(doc.to_json(), text, "{path} must be written back exactly as read");
    }
}

#[test]
fn unknown_fields_are_kept_in_their_place() {
    let text = fixture_text("kinoite-zfs/build-inputs.json")
        .replace("  \"inputs\": {\n", "  \"run_url\": \"https://github.com/danathar/kinoite-zfs/actions/runs/1\",\n  \"inputs\": {\n")
        .replace("    \"zfs_minor_version\": \"2.4\",\n", "    \"zfs_minor_version\": \"2.4\",\n    \"zfs_version\": \"2.4.0\",\n    \"brew_image_ref\": \"ghcr.io/ublue-os/brew:latest\",\n    \"brew_image_pinned\": \"ghcr.io/ublue-os/brew@sha256:1111111111111111111111111111111111111111111111111111111111111111\",\n");
    let doc = Document::parse(&text, "build-inputs.json").unwrap();
    assert_eq!(doc.to_json(), text);
    let inputs = doc.inputs();
    assert_eq!(
        inputs.names(),
        [
            "use_input_lock",
            "lock_file_path",
            "fedora_version",
            "kernel_release",
            "kernel_releases",
            "base_image",
            "build_container",
            "zfs_minor_version",
            "zfs_version",
            "brew_image",
            "akmods_upstream_ref"
        ]
    );
    // A new `X_pinned` field makes X an image input: it is checked as one.
    assert!(matches!(inputs.get("brew_image"), Some(Input::Image(ImageInput { pinned: Some(_), .. }))));
    assert_eq!(inputs.get("zfs_version"), Some(&Input::Value("2.4.0".into())));
    assert_eq!(check(&doc, &[]), []);
}

#[test]
fn the_generic_view_of_the_os_image_files() {
    let lock = Document::read(&fixture("kinoite-zfs/inputs.lock.json")).unwrap();
    assert_eq!((lock.profile(), lock.kind()), (Profile::OsImage, Kind::Lock));
    insta::assert_json_snapshot!(lock.inputs(), @r#"
        {
          "base_image": {
            "image": {
              "pinned": "ghcr.io/ublue-os/kinoite-main@sha256:5cbac4096e2a05ff4f51778a9276064064e548183de98f5130086d4d01c4e021"
            }
          },
          "build_container": {
            "image": {
              "pinned": "ghcr.io/ublue-os/devcontainer@sha256:6fe782777ea0b6b9058a8bf43dadc505687ce63f52a0f084d5bba1c1230fe09e"
            }
          },
          "zfs_minor_version": {
            "value": "2.4"
          },
          "akmods_upstream_ref": {
            "git": {
              "commit": "906e565f712f43a598dcd272dc8ca053fcc99116"
            }
          }
        }
    "#);
    let manifest = Document::read(&fixture("kinoite-zfs/build-inputs.json")).unwrap();
    assert_eq!(manifest.kind(), Kind::Manifest);
    let Some(Input::Image(base)) = manifest.inputs().get("base_image").cloned() else {
        panic!("base_image is an image")
    };
    assert_eq!(base.digest.as_deref(), Some(BASE_DIGEST));
    assert_eq!(base.tag.as_deref(), Some("latest-20260227.1"));
}

#[test]
fn lock_from_the_real_manifest_is_the_real_lock() {
    let manifest = Document::read(&fixture("kinoite-zfs/build-inputs.json")).unwrap();
    let lock = lock_from(&manifest, None).unwrap();
    assert_eq!(lock.to_json(), fixture_text("kinoite-zfs/inputs.lock.json"));
}

#[test]
fn lock_from_refuses_what_would_not_replay() {
    let text = fixture_text("kinoite-zfs/build-inputs.json")
        .replace(&format!("kinoite-main@{BASE_DIGEST}"), "kinoite-main:latest")
        .replace("906e565f712f43a598dcd272dc8ca053fcc99116", "main");
    let manifest = Document::parse(&text, "build-inputs.json").unwrap();
    let err = lock_from(&manifest, None).unwrap_err();
    insta::assert_snapshot!(err.to_string(), @r#"
        the lock made from this manifest is not fit for replay (2 problems):
          base_image: `ghcr.io/ublue-os/kinoite-main:latest` is not pinned by digest (a tag can move): pin it as NAME@sha256:<64 hex>
          akmods_upstream_ref: `main` is not a full commit id (40 lowercase hex characters): branch names and short ids do not pin
    "#);
    let lock = Document::read(&fixture("kinoite-zfs/inputs.lock.json")).unwrap();
    assert!(matches!(lock_from(&lock, None), Err(LockError::NotAManifest)));
    let partial = Document::parse(r#"{"schema_version": 1, "inputs": {"zfs_minor_version": "2.4"}}"#, "x").unwrap();
    assert!(matches!(lock_from(&partial, None), Err(LockError::MissingInputs { missing }) if missing.len() == 3));
}

#[test]
fn a_generic_manifest_round_trips_and_locks() {
    let mut inputs = Inputs::new();
    inputs.insert(
        "app_image",
        Input::Image(ImageInput {
            reference: Some("registry.example/app:stable".into()),
            name: Some("registry.example/app".into()),
            tag: Some("stable".into()),
            digest: Some(BASE_DIGEST.into()),
            pinned: Some(format!("registry.example/app@{BASE_DIGEST}")),
        }),
    );
    inputs.insert(
        "recipes",
        Input::Git(GitInput {
            url: Some("https://git.example/recipes".into()),
            reference: Some("main".into()),
            commit: Some("906e565f712f43a598dcd272dc8ca053fcc99116".into()),
        }),
    );
    inputs.insert("kernels", Input::Value(serde_json::json!(["6.18.9", "6.18.12"])));
    let manifest = Document::new_manifest(Profile::Generic, "2026-02-27T12:00:00Z", &RunMetadata::default(), &inputs);
    let reread = Document::parse(&manifest.to_json(), "generic").unwrap();
    assert_eq!((reread.profile(), reread.kind()), (Profile::Generic, Kind::Manifest));
    assert_eq!(reread.inputs(), inputs);
    assert_eq!(check(&reread, &[]), []);
    let lock = lock_from(&reread, Some("pins for the app pipeline")).unwrap();
    insta::assert_snapshot!(lock.to_json(), @r#"
        {
          "version": 1,
          "description": "pins for the app pipeline",
          "inputs": {
            "app_image": {
              "image": {
                "pinned": "registry.example/app@sha256:5cbac4096e2a05ff4f51778a9276064064e548183de98f5130086d4d01c4e021"
              }
            },
            "recipes": {
              "git": {
                "url": "https://git.example/recipes",
                "ref": "main",
                "commit": "906e565f712f43a598dcd272dc8ca053fcc99116"
              }
            },
            "kernels": {
              "value": [
                "6.18.9",
                "6.18.12"
              ]
            }
          }
        }
    "#);
    let relock = Document::parse(&lock.to_json(), "lock").unwrap();
    assert_eq!((relock.profile(), relock.kind()), (Profile::Generic, Kind::Lock));
}

#[test]
fn unreadable_files_say_why() {
    let err = Document::parse("{\"version\": 1,\n  \"base_image\": }", "lock.json").unwrap_err();
    assert!(matches!(err, DocumentError::Json { line: 2, .. }), "{err:?}");
    insta::assert_snapshot!(err.to_string(), @"lock.json is not valid JSON (line 2, column 17): expected value");
    insta::assert_snapshot!(Document::parse("[1, 2]", "lock.json").unwrap_err().to_string(), @"lock.json holds a JSON array, not an object: a manifest or lock file is one JSON object");
    insta::assert_snapshot!(Document::parse(r#"{"name": "x"}"#, "lock.json").unwrap_err().to_string(), @"lock.json is neither a build-input manifest (`schema_version` and `inputs`) nor a lock file (`version` with `base_image` or `inputs`); its top-level fields are: name");
}

#[test]
fn writes_are_atomic_and_readable() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inputs.lock.json");
    std::fs::write(&path, "old").unwrap();
    let lock = Document::read(&fixture("kinoite-zfs/inputs.lock.json")).unwrap();
    lock.write(&path).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), fixture_text("kinoite-zfs/inputs.lock.json"));
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o644);
    // Only the file is left behind: no temporary.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    let err = lock.write(&dir.path().join("missing-dir/lock.json")).unwrap_err();
    assert!(err.to_string().contains("missing-dir/lock.json"), "{err}");
}

/// `lock-from` refuses what `diff` and `check-lock` reject in a manifest: a
/// field of the wrong type, a pinned reference naming another repository.
#[test]
fn lock_from_refuses_a_manifest_that_contradicts_itself() {
    let text = fixture_text("kinoite-zfs/build-inputs.json");
    let mut wrong_type: serde_json::Value = serde_json::from_str(&text).unwrap();
    wrong_type["inputs"]["base_image_digest"] = serde_json::json!(12345);
    let mut other_repo: serde_json::Value = serde_json::from_str(&text).unwrap();
    let pinned = other_repo["inputs"]["base_image_pinned"].as_str().unwrap().replace("kinoite-main", "other-image");
    other_repo["inputs"]["base_image_pinned"] = serde_json::json!(pinned);
    for (manifest, says) in [(wrong_type, "must be a string, found number"), (other_repo, "disagrees with")] {
        let manifest = Document::parse(&manifest.to_string(), "build-inputs.json").unwrap();
        let err = lock_from(&manifest, None).unwrap_err();
        assert!(matches!(err, LockError::Inconsistent { .. }), "{err:?}");
        assert!(err.to_string().contains(says), "{err}");
    }
}
