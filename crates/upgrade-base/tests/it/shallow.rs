//! A shallow clone: history stops at a cut, and lkg says so.

use lkg_upgrade_base::{BaseKind, Inputs, Outcome, Source, resolve};

use crate::builder::TestRepo;

/// `c0 (0.1.0+1) <- c1 (0.2.0+1) <- c2 = origin/main`, and a PR on c1;
/// cut at c1: c0 is gone, as after `git clone --depth 2`.
#[test]
fn missing_history_is_reported_not_guessed() {
    let _guard = lkg_testkit::settings().bind_to_scope();
    let t = TestRepo::new();
    let main = t.chain("refs/remotes/origin/main", None, &["c0", "c1", "c2"]);
    t.lightweight("0.1.0+1", main[0]);
    t.lightweight("0.2.0+1", main[1]);
    let pr = t.commit(Some("refs/heads/pr"), "pr", &[main[1]]);
    // What a shallow fetch leaves: the cut listed in .git/shallow, the commit behind it absent.
    std::fs::write(t.path().join(".git/shallow"), format!("{}\n", main[1])).unwrap();
    let hex = main[0].to_string();
    std::fs::remove_file(t.path().join(".git/objects").join(&hex[..2]).join(&hex[2..])).unwrap();

    let plan = resolve(t.path(), &Inputs::new(&pr.to_string())).unwrap();
    // Whether the PR is behind main's tip cannot be known past the cut: not guessed.
    let target = &plan.steps[2];
    assert_eq!((target.source, target.outcome), (Source::TargetBranch, Outcome::Passed));
    assert!(target.reason.contains("shallow"), "{}", target.reason);
    // The tag on the visible history is still found.
    assert_eq!((plan.kind, plan.value.as_deref()), (BaseKind::Version, Some("0.2.0+1")));
    insta::assert_json_snapshot!(plan.warnings, @r#"
        [
          "[TMP] is a shallow clone: history stops at 1 commit(s), so older commits and their tags are missing; fetch with --unshallow for a complete answer",
          "tag 0.1.0+1 skipped: it points to bf6290c30f73e8a56cbfac7544748953d2b0774e, which is not in this repository (a shallow clone, or objects not fetched)"
        ]
    "#);
}
