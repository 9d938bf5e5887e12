//! `check`: the real lock passes; every kind of bad lock fails with every
//! problem named by its field; replay mismatches name both values.

use lkg_inputs_lock::{CheckReport, Document, Expectation, Issue, check, check_file};

use crate::{BASE_DIGEST, BUILDER_DIGEST, fixture, fixture_text};

fn report(path: &str, expect: &[&str]) -> CheckReport {
    let expectations: Vec<Expectation> = expect.iter().map(|e| e.parse().unwrap()).collect();
    let mut report = check_file(&fixture(path), &expectations).unwrap();
    path.clone_into(&mut report.file);
    report
}

fn human(path: &str, expect: &[&str]) -> String {
    report(path, expect).to_string()
}

#[test]
fn the_real_lock_passes() {
    let report = report(
        "kinoite-zfs/inputs.lock.json",
        &[&format!("build_container=ghcr.io/ublue-os/devcontainer@{BUILDER_DIGEST}")],
    );
    assert!(report.is_ok(), "{report}");
    insta::assert_snapshot!(report.to_string(), @"kinoite-zfs/inputs.lock.json: ok (os-image lock, 4 inputs): every input is pinned");
}

#[test]
fn the_real_manifest_passes() {
    let report = report("kinoite-zfs/build-inputs.json", &[]);
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.inputs, 9);
}

#[test]
fn placeholders_are_named() {
    insta::assert_snapshot!(human("inputs-lock/locks/placeholder.json", &[]), @r#"
        inputs-lock/locks/placeholder.json: 2 problems (os-image lock, 4 inputs)
          base_image: `ghcr.io/ublue-os/kinoite-main@sha256:REPLACE_ME` is a placeholder (REPLACE_ME): put the real value from a run's build-inputs.json
          akmods_upstream_ref: `TODO` is a placeholder (TODO): put the real value from a run's build-inputs.json
    "#);
}

#[test]
fn empty_fields_are_named() {
    insta::assert_snapshot!(human("inputs-lock/locks/empty.json", &[]), @r#"
        inputs-lock/locks/empty.json: 2 problems (os-image lock, 4 inputs)
          build_container: is empty
          zfs_minor_version: is empty
    "#);
}

#[test]
fn a_tag_is_not_a_pin() {
    insta::assert_snapshot!(human("inputs-lock/locks/tag-only.json", &[]), @r#"
        inputs-lock/locks/tag-only.json: 1 problem (os-image lock, 4 inputs)
          base_image: `ghcr.io/ublue-os/kinoite-main:latest` is not pinned by digest (a tag can move): pin it as NAME@sha256:<64 hex>
    "#);
}

#[test]
fn a_short_digest_is_malformed() {
    insta::assert_snapshot!(human("inputs-lock/locks/short-digest.json", &[]), @r#"
        inputs-lock/locks/short-digest.json: 1 problem (os-image lock, 4 inputs)
          base_image: digest `sha256:5cbac4096e2a` has 12 hex characters after `sha256:`, expected 64
    "#);
}

#[test]
fn a_short_commit_is_not_a_pin() {
    insta::assert_snapshot!(human("inputs-lock/locks/short-commit.json", &[]), @r#"
        inputs-lock/locks/short-commit.json: 1 problem (os-image lock, 4 inputs)
          akmods_upstream_ref: `906e565` is not a full commit id (40 lowercase hex characters): branch names and short ids do not pin
    "#);
}

#[test]
fn wrong_types_are_named() {
    insta::assert_snapshot!(human("inputs-lock/locks/wrong-type.json", &[]), @r#"
        inputs-lock/locks/wrong-type.json: 3 problems (os-image lock, 4 inputs)
          version: must be the number 1, found string
          base_image: must be a string, found array
          zfs_minor_version: must be a string, found number
    "#);
}

#[test]
fn malformed_json_and_missing_files_are_problems_not_crashes() {
    let fixtures = crate::fixture("").display().to_string();
    insta::assert_snapshot!(human("inputs-lock/locks/malformed.json", &[]).replace(&fixtures, "[FIXTURES]/"), @r#"
        inputs-lock/locks/malformed.json: 1 problem (unreadable)
          (file): [FIXTURES]/inputs-lock/locks/malformed.json is not valid JSON (line 8, column 1): trailing comma
    "#);
    let missing = report("inputs-lock/locks/does-not-exist.json", &[]);
    assert!(!missing.is_ok());
    assert_eq!(missing.problems[0].field, "(file)");
    assert!(missing.problems[0].message.contains("does not exist"), "{missing}");
}

#[test]
fn replay_mismatch_names_input_lock_value_and_given_value() {
    let given = "ghcr.io/ublue-os/devcontainer:latest";
    let report = report("kinoite-zfs/inputs.lock.json", &[&format!("build_container={given}")]);
    assert_eq!(report.problems.len(), 1);
    match &report.problems[0].issue {
        Issue::ReplayMismatch { input, lock, given: g } => {
            assert_eq!(input, "build_container");
            assert_eq!(lock, &format!("ghcr.io/ublue-os/devcontainer@{BUILDER_DIGEST}"));
            assert_eq!(g, given);
        }
        other => panic!("expected a replay mismatch, got {other:?}"),
    }
    insta::assert_snapshot!(report.to_string(), @r#"
        kinoite-zfs/inputs.lock.json: 1 problem (os-image lock, 4 inputs)
          build_container: replay mismatch: the lock has `ghcr.io/ublue-os/devcontainer@sha256:6fe782777ea0b6b9058a8bf43dadc505687ce63f52a0f084d5bba1c1230fe09e` but `ghcr.io/ublue-os/devcontainer:latest` was given for `build_container`; dispatch the replay with the lock's value, or update the lock
    "#);
    insta::assert_json_snapshot!(report.problems[0], @r#"
        {
          "field": "build_container",
          "kind": "replay_mismatch",
          "input": "build_container",
          "lock": "ghcr.io/ublue-os/devcontainer@sha256:6fe782777ea0b6b9058a8bf43dadc505687ce63f52a0f084d5bba1c1230fe09e",
          "given": "ghcr.io/ublue-os/devcontainer:latest",
          "message": "replay mismatch: the lock has `ghcr.io/ublue-os/devcontainer@sha256:6fe782777ea0b6b9058a8bf43dadc505687ce63f52a0f084d5bba1c1230fe09e` but `ghcr.io/ublue-os/devcontainer:latest` was given for `build_container`; dispatch the replay with the lock's value, or update the lock"
        }
    "#);
}

#[test]
fn expectations_name_inputs_parts_or_fields() {
    let ok = |name: &str, value: &str| report("kinoite-zfs/build-inputs.json", &[&format!("{name}={value}")]).is_ok();
    assert!(ok("base_image", &format!("ghcr.io/ublue-os/kinoite-main@{BASE_DIGEST}")));
    assert!(ok("base_image.digest", BASE_DIGEST));
    assert!(ok("base_image_digest", BASE_DIGEST));
    assert!(ok("inputs.base_image_tag", "latest-20260227.1"));
    assert!(ok("kernel_releases", "6.18.9-200.fc43.x86_64 6.18.12-200.fc43.x86_64"));
    assert!(ok("use_input_lock", "false"));
    assert!(!ok("base_image.digest", BUILDER_DIGEST));
    // The same image written differently is the same pin.
    let lock = Document::parse(
        &fixture_text("kinoite-zfs/inputs.lock.json")
            .replace("ghcr.io/ublue-os/devcontainer@", "docker.io/library/devcontainer@"),
        "lock",
    )
    .unwrap();
    let short: Expectation = format!("build_container=devcontainer@{BUILDER_DIGEST}").parse().unwrap();
    assert_eq!(check(&lock, &[short]), []);
    let unknown = report("kinoite-zfs/inputs.lock.json", &["builder=x"]);
    insta::assert_snapshot!(unknown.to_string(), @r#"
        kinoite-zfs/inputs.lock.json: 1 problem (os-image lock, 4 inputs)
          --expect builder: names no input of this file; its inputs are: base_image, build_container, zfs_minor_version, akmods_upstream_ref
    "#);
}

#[test]
fn every_problem_is_listed_not_just_the_first() {
    let report = report(
        "inputs-lock/locks/placeholder.json",
        &["build_container=ghcr.io/ublue-os/devcontainer:latest", "zfs_minor_version=2.3"],
    );
    let fields: Vec<&str> = report.problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(fields, ["base_image", "akmods_upstream_ref", "build_container", "zfs_minor_version"]);
}

#[test]
fn manifest_fields_that_disagree_are_named() {
    let text = fixture_text("kinoite-zfs/build-inputs.json").replace(
        &format!("\"base_image_digest\": \"{BASE_DIGEST}\""),
        &format!("\"base_image_digest\": \"{BUILDER_DIGEST}\""),
    );
    let doc = Document::parse(&text, "build-inputs.json").unwrap();
    let problems: Vec<String> = check(&doc, &[]).iter().map(ToString::to_string).collect();
    insta::assert_debug_snapshot!(problems, @r#"
        [
            "inputs.base_image_pinned: `ghcr.io/ublue-os/kinoite-main@sha256:5cbac4096e2a05ff4f51778a9276064064e548183de98f5130086d4d01c4e021` disagrees with inputs.base_image_digest `sha256:6fe782777ea0b6b9058a8bf43dadc505687ce63f52a0f084d5bba1c1230fe09e`",
        ]
    "#);
}
