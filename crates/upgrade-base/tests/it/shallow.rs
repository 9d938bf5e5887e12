//! A shallow clone or grafts: history stops at a cut, and lkg says so. A
//! damaged repository (an object missing where history should be complete)
//! is an error naming the object, never a plan.

use lkg_upgrade_base::{BaseKind, Inputs, Outcome, RepoError, Source, resolve};

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
          "tag 0.1.0+1 skipped: it points to bf6290c30f73e8a56cbfac7544748953d2b0774e, which is not in this repository (history stops at a shallow cut or a graft)"
        ]
    "#);
}

/// Removes a loose object, as damage (or an interrupted copy) would.
fn remove_object(t: &TestRepo, id: git2::Oid) {
    let hex = id.to_string();
    std::fs::remove_file(t.path().join(".git/objects").join(&hex[..2]).join(&hex[2..])).unwrap();
}

/// `c0 (0.1.0+1) <- c1 (0.2.0+1) <- c2 = origin/main`, and a PR on c1.
fn pr_off_main(t: &TestRepo) -> (Vec<git2::Oid>, git2::Oid) {
    let main = t.chain("refs/remotes/origin/main", None, &["c0", "c1", "c2"]);
    t.lightweight("0.1.0+1", main[0]);
    t.lightweight("0.2.0+1", main[1]);
    let pr = t.commit(Some("refs/heads/pr"), "pr", &[main[1]]);
    (main, pr)
}

fn damaged(err: RepoError) -> (Option<String>, String) {
    let text = err.to_string();
    let RepoError::Damaged { object, .. } = err else { panic!("not reported as damage: {text}") };
    (object, text)
}

/// The same cut as above, but no `shallow` file says so: the repository is
/// damaged. Planning on would skip the upgrade test (or pick another base)
/// and exit 0.
#[test]
fn a_missing_commit_in_a_full_clone_is_an_error_naming_it() {
    let t = TestRepo::new();
    let (main, pr) = pr_off_main(&t);
    t.repo.tag_delete("0.1.0+1").unwrap();
    remove_object(&t, main[0]);

    let (object, text) = damaged(resolve(t.path(), &Inputs::new(&pr.to_string())).unwrap_err());
    assert_eq!(object, Some(main[0].to_string()));
    assert!(text.contains(&format!("needs object {}, which cannot be read", main[0])), "{text}");
    assert!(text.contains("run `git -C ") && text.contains("fsck`"), "{text}");
}

#[test]
fn a_tag_or_branch_on_a_missing_commit_in_a_full_clone_is_an_error() {
    let t = TestRepo::new();
    let (main, pr) = pr_off_main(&t);
    remove_object(&t, main[0]);
    let (object, text) = damaged(resolve(t.path(), &Inputs::new(&pr.to_string())).unwrap_err());
    assert_eq!(object, Some(main[0].to_string()));
    assert!(text.contains(&format!("tag 0.1.0+1 points to {}, which is missing", main[0])), "{text}");

    let t = TestRepo::new();
    let (_, pr) = pr_off_main(&t);
    let gone = t.commit(Some("refs/remotes/origin/main"), "gone", &[]);
    remove_object(&t, gone);
    let (object, text) = damaged(resolve(t.path(), &Inputs::new(&pr.to_string())).unwrap_err());
    assert_eq!(object, Some(gone.to_string()));
    assert!(text.contains(&format!("branch origin/main at {gone} cannot be read")), "{text}");
}

/// Grafts (`info/grafts`) cut history like a shallow clone: what is behind
/// them is unknown, not missing by accident.
#[test]
fn history_behind_a_graft_is_unknown_not_damaged() {
    let t = TestRepo::new();
    let (main, pr) = pr_off_main(&t);
    t.repo.tag_delete("0.1.0+1").unwrap();
    // c1 grafted onto no parent: c0 is no longer in anyone's history.
    std::fs::create_dir_all(t.path().join(".git/info")).unwrap();
    std::fs::write(t.path().join(".git/info/grafts"), format!("{}\n", main[1])).unwrap();
    remove_object(&t, main[0]);

    let plan = resolve(t.path(), &Inputs::new(&pr.to_string())).unwrap();
    let target = &plan.steps[2];
    assert_eq!((target.source, target.outcome), (Source::TargetBranch, Outcome::Passed));
    assert!(target.reason.contains("shallow or grafted"), "{}", target.reason);
    assert_eq!((plan.kind, plan.value.as_deref()), (BaseKind::Version, Some("0.2.0+1")));
    assert!(
        plan.warnings[0].ends_with(
            "has grafts (info/grafts): the history of 1 commit(s) is replaced, so what lies behind them is unknown here"
        ),
        "{:?}",
        plan.warnings
    );
}
