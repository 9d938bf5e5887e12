//! Base overlays apply only to the version they declare.

use std::path::Path;

use lkg_upgrade_base::overlay::{self, OverlayUse};
use lkg_upgrade_base::{Inputs, LastGreen, overlays_report, resolve};

use crate::builder::TestRepo;

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn an_overlay_applies_to_its_version_only() {
    let _guard = lkg_testkit::settings().bind_to_scope();
    let t = TestRepo::new();
    let main = t.chain("refs/heads/main", None, &["a", "b", "c"]);
    t.annotated("0.6.3+3.2.0", main[0]);
    t.annotated("0.7.0+3.3.1", main[1]);
    let previous = tempfile::tempdir().unwrap();
    write(&previous.path().join("0.7.0+3.3.1/compose.ccci.yml"), "services: {}\n");
    write(&previous.path().join("0.7.0+3.3.1/env/app.env"), "X=1\n");
    write(&previous.path().join("0.6.3+3.2.0/compose.ccci.yml"), "services: {}\n");
    write(&previous.path().join("not-a-version/compose.yml"), "x\n");
    write(&previous.path().join("loose.yml"), "x\n");
    let overlays = overlay::scan(previous.path()).unwrap();

    // Base = last-green 0.7.0+3.3.1: its overlay applies, the 0.6.3 one is stale.
    let last_green = Some(LastGreen { version: "0.7.0+3.3.1".into(), commit: None, from: "--last-green".into() });
    let plan = resolve(t.path(), &Inputs { last_green, ..Inputs::new("main") }).unwrap();
    let decisions = overlay::decide(&overlays, &plan);
    let outcomes: Vec<(Option<&str>, OverlayUse)> =
        decisions.iter().map(|d| (d.declared.as_deref(), d.outcome)).collect();
    assert_eq!(
        outcomes,
        [
            (Some("0.6.3+3.2.0"), OverlayUse::Stale),
            (Some("0.7.0+3.3.1"), OverlayUse::Apply),
            (None, OverlayUse::Invalid),
            (None, OverlayUse::Invalid),
        ]
    );
    insta::assert_snapshot!(overlays_report(&decisions), @r#"
        overlays:
          stale    0.6.3+3.2.0  (compose.ccci.yml): written for 0.6.3+3.2.0, but the base is 0.7.0+3.3.1
          apply    0.7.0+3.3.1  (compose.ccci.yml, env/app.env): written for 0.7.0+3.3.1, the plan's base
          invalid  loose.yml  (loose.yml): loose.yml is not in a previous/<version>/ directory, so it declares no version
          invalid  not-a-version  (compose.yml): the directory name is not a version: "not-a-version" is not <recipe-semver>+<app-version>: it has no '+'
    "#);

    // Base = a branch tip (a ref): every overlay is stale, none leaks onto it.
    let pr = t.commit(Some("refs/heads/pr"), "pr", &[main[2]]);
    let plan = resolve(t.path(), &Inputs::new(&pr.to_string())).unwrap();
    let decisions = overlay::decide(&overlays, &plan);
    assert!(decisions.iter().all(|d| d.outcome != OverlayUse::Apply), "{decisions:?}");
    insta::assert_json_snapshot!(decisions[1], @r#"
        {
          "path": "[TMP]",
          "declared": "0.7.0+3.3.1",
          "outcome": "stale",
          "reason": "written for 0.7.0+3.3.1, but the base is the ref main, not a released version",
          "files": [
            "compose.ccci.yml",
            "env/app.env"
          ]
        }
    "#);
}
