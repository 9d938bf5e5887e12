//! `diff`: inputs apart from run metadata, human and JSON.

use lkg_inputs_lock::{Change, Document, diff};

use crate::fixture;

fn read(path: &str) -> Document {
    Document::read(&fixture(path)).unwrap()
}

#[test]
fn base_digest_and_kernel_moved_between_two_runs_of_one_commit() {
    let d = diff(&read("kinoite-zfs/build-inputs.json"), &read("kinoite-zfs/build-inputs.moved.json"));
    assert!(!d.same_inputs);
    assert_eq!(d.same_commit.as_deref(), Some("3f0c2a7d9b1e4f6a8c5d2e0b7a9f1c3e5d7b9a2c"));
    insta::assert_snapshot!(d.to_string(), @r#"
        inputs differ: 4 changed, 0 added, 0 removed
          kernel_release: 6.18.12-200.fc43.x86_64 -> 6.18.13-200.fc43.x86_64
          kernel_releases: ["6.18.9-200.fc43.x86_64","6.18.12-200.fc43.x86_64"] -> ["6.18.12-200.fc43.x86_64","6.18.13-200.fc43.x86_64"]
          base_image.tag: latest-20260227.1 -> latest-20260301
          base_image.digest: sha256:5cbac4096e2a05ff4f51778a9276064064e548183de98f5130086d4d01c4e021 -> sha256:9d41e0f3c27a6b58e1f4d2c093b7a8e6f5d1c4b2a09e8f7d6c5b4a3928170f6e
          note: both runs built commit 3f0c2a7d9b1e4f6a8c5d2e0b7a9f1c3e5d7b9a2c: a floating input moved; replay the good run with `lkg-inputs lock-from` to confirm
        run metadata: 3 differences (not inputs)
          generated_at: 2026-02-27T14:03:12Z -> 2026-03-02T06:11:47Z
          run.id: 22489145612 -> 22571933408
          run.number: 318 -> 324
    "#);
    insta::assert_json_snapshot!(d, @r#"
        {
          "same_inputs": false,
          "common_inputs": 9,
          "inputs": [
            {
              "field": "kernel_release",
              "change": "changed",
              "old": "6.18.12-200.fc43.x86_64",
              "new": "6.18.13-200.fc43.x86_64"
            },
            {
              "field": "kernel_releases",
              "change": "changed",
              "old": [
                "6.18.9-200.fc43.x86_64",
                "6.18.12-200.fc43.x86_64"
              ],
              "new": [
                "6.18.12-200.fc43.x86_64",
                "6.18.13-200.fc43.x86_64"
              ]
            },
            {
              "field": "base_image.tag",
              "change": "changed",
              "old": "latest-20260227.1",
              "new": "latest-20260301"
            },
            {
              "field": "base_image.digest",
              "change": "changed",
              "old": "sha256:5cbac4096e2a05ff4f51778a9276064064e548183de98f5130086d4d01c4e021",
              "new": "sha256:9d41e0f3c27a6b58e1f4d2c093b7a8e6f5d1c4b2a09e8f7d6c5b4a3928170f6e"
            }
          ],
          "run": [
            {
              "field": "generated_at",
              "change": "changed",
              "old": "2026-02-27T14:03:12Z",
              "new": "2026-03-02T06:11:47Z"
            },
            {
              "field": "run.id",
              "change": "changed",
              "old": 22489145612,
              "new": 22571933408
            },
            {
              "field": "run.number",
              "change": "changed",
              "old": 318,
              "new": 324
            }
          ],
          "same_commit": "3f0c2a7d9b1e4f6a8c5d2e0b7a9f1c3e5d7b9a2c"
        }
    "#);
}

#[test]
fn the_same_inputs_differ_only_in_run_metadata() {
    let text = std::fs::read_to_string(fixture("kinoite-zfs/build-inputs.json")).unwrap();
    let rerun = Document::parse(&text.replace("\"attempt\": 1", "\"attempt\": 2"), "rerun").unwrap();
    let d = diff(&read("kinoite-zfs/build-inputs.json"), &rerun);
    assert!(d.same_inputs);
    insta::assert_snapshot!(d.to_string(), @r#"
        inputs are the same (9 inputs)
        run metadata: 1 difference (not inputs)
          run.attempt: 1 -> 2
    "#);
}

#[test]
fn a_manifest_compares_with_a_lock_on_what_both_have() {
    let d = diff(&read("kinoite-zfs/inputs.lock.json"), &read("kinoite-zfs/build-inputs.json"));
    // The lock pins four inputs; the manifest has five more, derived ones.
    assert!(d.inputs.iter().filter(|x| x.change != Change::Added).count() == 0, "{d}");
    assert_eq!(d.common_inputs, 4);
    let moved = diff(&read("kinoite-zfs/inputs.lock.json"), &read("kinoite-zfs/build-inputs.moved.json"));
    let changed: Vec<String> =
        moved.inputs.iter().filter(|x| x.change == Change::Changed).map(ToString::to_string).collect();
    insta::assert_debug_snapshot!(changed, @r#"
        [
            "base_image.pinned: ghcr.io/ublue-os/kinoite-main@sha256:5cbac4096e2a05ff4f51778a9276064064e548183de98f5130086d4d01c4e021 -> ghcr.io/ublue-os/kinoite-main@sha256:9d41e0f3c27a6b58e1f4d2c093b7a8e6f5d1c4b2a09e8f7d6c5b4a3928170f6e",
        ]
    "#);
}
