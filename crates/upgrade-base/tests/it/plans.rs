//! One repository per rule of the resolution order.

use lkg_canonical::{AppName, Canonicals, Record, Status};
use lkg_upgrade_base::{BaseKind, Inputs, LastGreen, Outcome, Source, resolve};

use crate::builder::TestRepo;

fn given(version: &str) -> LastGreen {
    LastGreen { version: version.to_owned(), commit: None, from: "--last-green".to_owned() }
}

fn outcomes(plan: &lkg_upgrade_base::BasePlan) -> Vec<(Source, Outcome)> {
    plan.steps.iter().map(|s| (s.source, s.outcome)).collect()
}

/// Discourse's history: tags up to 0.7.0+3.3.1 on main, then main moved on
/// (0.8.1+3.5.0, untagged) and a PR branched from main's tip. The old rule,
/// "the second-newest tag", would have skipped two releases.
fn discourse() -> (TestRepo, Vec<git2::Oid>, git2::Oid) {
    let t = TestRepo::new();
    let main = t.chain(
        "refs/heads/main",
        None,
        &["0.6.3+3.2.0", "0.7.0+3.3.1", "chore: bitnamilegacy 3.4", "chore: upgrade to 0.8.1+3.5.0"],
    );
    t.annotated("0.6.3+3.2.0", main[0]);
    t.annotated("0.7.0+3.3.1", main[1]);
    t.set_ref("refs/remotes/origin/main", main[3]);
    let pr = t.commit(Some("refs/heads/discourse-official-image"), "feat: official image 3.5.3", &[main[3]]);
    t.head_at("main");
    (t, main, pr)
}

#[test]
fn main_ahead_of_the_newest_tag_gives_the_branch_tip() {
    let _guard = lkg_testkit::settings().bind_to_scope();
    let (t, main, pr) = discourse();
    let plan = resolve(t.path(), &Inputs::new(&pr.to_string())).unwrap();
    assert_eq!(plan.kind, BaseKind::Ref);
    assert_eq!(plan.value.as_deref(), Some("origin/main"), "the remote-tracking branch is preferred");
    assert_eq!(plan.commit, Some(main[3].to_string()));
    insta::assert_json_snapshot!(plan, @r#"
        {
          "kind": "ref",
          "value": "origin/main",
          "commit": "ed9b6528600d21c5936c15bb2449f8f6a69e5d1a",
          "reason": "the tip of origin/main (ed9b6528600d), the predecessor head merges onto",
          "head": {
            "rev": "132648944f7a69064b83da4983465a89dbdcd5c1",
            "commit": "132648944f7a69064b83da4983465a89dbdcd5c1",
            "version": null,
            "version_from": null
          },
          "steps": [
            {
              "source": "override",
              "outcome": "passed",
              "reason": "no override given"
            },
            {
              "source": "last-green",
              "outcome": "passed",
              "reason": "no last-green version (neither --last-green nor a canonical record)"
            },
            {
              "source": "target-branch",
              "outcome": "taken",
              "reason": "the tip of origin/main (ed9b6528600d), the predecessor head merges onto"
            }
          ],
          "warnings": []
        }
    "#);
}

#[test]
fn a_run_on_the_branch_tip_itself_takes_the_newest_older_tag() {
    let _guard = lkg_testkit::settings().bind_to_scope();
    let (t, main, _) = discourse();
    // The canon sweep: head is main's tip, tagged as the release it is.
    t.annotated("0.8.1+3.5.0", main[3]);
    let plan = resolve(t.path(), &Inputs::new("main")).unwrap();
    assert_eq!((plan.kind, plan.value.as_deref()), (BaseKind::Version, Some("0.7.0+3.3.1")));
    assert_eq!(plan.commit, Some(main[1].to_string()));
    assert_eq!(plan.head.version.as_deref(), Some("0.8.1+3.5.0"));
    assert_eq!(
        outcomes(&plan),
        [
            (Source::Override, Outcome::Passed),
            (Source::LastGreen, Outcome::Passed),
            (Source::TargetBranch, Outcome::Passed),
            (Source::OlderTag, Outcome::Taken)
        ]
    );
    insta::assert_snapshot!(plan.to_string(), @r#"
        base: version 0.7.0+3.3.1 (110359214bc4)
          0.7.0+3.3.1: the newest release tag older than the head's version 0.8.1+3.5.0, at 110359214bc4
        head: main (ed9b6528600d), version 0.8.1+3.5.0 (tag)
        steps:
          override       passed  no override given
          last-green     passed  no last-green version (neither --last-green nor a canonical record)
          target-branch  passed  head is the tip of origin/main itself; upgrading from it would be a no-op (the older-tag step covers this)
          older-tag      taken   0.7.0+3.3.1: the newest release tag older than the head's version 0.8.1+3.5.0, at 110359214bc4
    "#);
}

#[test]
fn head_behind_the_tip_never_upgrades_from_the_tip() {
    let (t, main, _) = discourse();
    // A run on the release 0.7.0+3.3.1 while main is two commits past it:
    // upgrading from main's tip to it would be a downgrade.
    let plan = resolve(t.path(), &Inputs::new("0.7.0+3.3.1")).unwrap();
    assert_eq!((plan.kind, plan.value.as_deref()), (BaseKind::Version, Some("0.6.3+3.2.0")));
    assert_eq!(plan.commit, Some(main[0].to_string()));
    let target = &plan.steps[2];
    assert_eq!((target.source, target.outcome), (Source::TargetBranch, Outcome::Passed));
    assert!(target.reason.contains("would be a downgrade"), "{}", target.reason);
}

#[test]
fn the_override_wins_over_everything() {
    let (t, main, pr) = discourse();
    let inputs = Inputs {
        override_base: Some("0.6.3+3.2.0".to_owned()),
        last_green: Some(given("0.7.0+3.3.1")),
        ..Inputs::new(&pr.to_string())
    };
    let plan = resolve(t.path(), &inputs).unwrap();
    assert_eq!((plan.kind, plan.value.as_deref()), (BaseKind::Version, Some("0.6.3+3.2.0")));
    assert_eq!(plan.commit, Some(main[0].to_string()));
    assert_eq!(outcomes(&plan), [(Source::Override, Outcome::Taken)]);

    // A branch or commit overrides too, as a ref.
    let inputs = Inputs { override_base: Some(main[2].to_string()), ..Inputs::new(&pr.to_string()) };
    let plan = resolve(t.path(), &inputs).unwrap();
    assert_eq!((plan.kind, plan.commit), (BaseKind::Ref, Some(main[2].to_string())));

    // A version without its tag is bad input, not a silent fallthrough.
    let inputs = Inputs { override_base: Some("0.7.5+3.4.0".to_owned()), ..Inputs::new(&pr.to_string()) };
    let err = resolve(t.path(), &inputs).unwrap_err();
    assert!(err.to_string().contains("--override \"0.7.5+3.4.0\" is neither a tag nor a revision"), "{err}");
}

#[test]
fn last_green_is_used_before_the_branch_tip() {
    let _guard = lkg_testkit::settings().bind_to_scope();
    let (t, main, pr) = discourse();
    let inputs = Inputs { last_green: Some(given("0.7.0+3.3.1")), ..Inputs::new(&pr.to_string()) };
    let plan = resolve(t.path(), &inputs).unwrap();
    assert_eq!((plan.kind, plan.value.as_deref()), (BaseKind::Version, Some("0.7.0+3.3.1")));
    assert_eq!(plan.commit, Some(main[1].to_string()));
    insta::assert_json_snapshot!(plan.steps, @r#"
        [
          {
            "source": "override",
            "outcome": "passed",
            "reason": "no override given"
          },
          {
            "source": "last-green",
            "outcome": "taken",
            "reason": "last-green 0.7.0+3.3.1 from --last-green, at 110359214bc4 via its tag"
          }
        ]
    "#);
}

#[test]
fn last_green_is_read_from_the_canonical_record() {
    let (t, main, _) = discourse();
    t.annotated("0.8.1+3.5.0", main[3]);
    let state = tempfile::tempdir().unwrap();
    let canonicals = Canonicals::new(state.path());
    let app = AppName::new("discourse").unwrap();
    let lock = canonicals.lock(&app, "test", std::time::Duration::ZERO, |_| {}).unwrap();
    let record = Record::new(
        app.clone(),
        "warm-canon-discourse.ci.example.net".to_owned(),
        "0.6.3+3.2.0".to_owned(),
        main[0].to_string(),
        Status::Idle,
        "2026-06-17T00:00:00Z".parse().unwrap(),
        vec!["warm-canon-discourse_data".to_owned()],
    );
    canonicals.put(&lock, &record).unwrap();

    let last_green = lkg_upgrade_base::last_green_from_canonical(state.path(), &app).unwrap();
    let plan = resolve(t.path(), &Inputs { last_green, ..Inputs::new("main") }).unwrap();
    assert_eq!((plan.kind, plan.value.as_deref()), (BaseKind::Version, Some("0.6.3+3.2.0")));
    assert!(plan.reason.contains("the canonical of discourse"), "{}", plan.reason);
    assert!(
        lkg_upgrade_base::last_green_from_canonical(state.path(), &AppName::new("none").unwrap()).unwrap().is_none()
    );
}

#[test]
fn last_green_equal_to_the_heads_version_is_passed_over() {
    let (t, main, _) = discourse();
    t.annotated("0.8.1+3.5.0", main[3]);
    let inputs = Inputs { last_green: Some(given("0.8.1+3.5.0")), ..Inputs::new("main") };
    let plan = resolve(t.path(), &inputs).unwrap();
    // Not a same-version no-op: the older tag is chosen instead.
    assert_eq!(plan.value.as_deref(), Some("0.7.0+3.3.1"));
    let step = &plan.steps[1];
    assert_eq!((step.source, step.outcome), (Source::LastGreen, Outcome::Passed));
    assert!(step.reason.contains("is the head's own version"), "{}", step.reason);

    // Newer than head is a downgrade, passed over too.
    let inputs = Inputs { last_green: Some(given("0.9.0+3.5.0")), ..Inputs::new("0.7.0+3.3.1") };
    let plan = resolve(t.path(), &inputs).unwrap();
    assert!(plan.steps[1].reason.contains("would be a downgrade"), "{}", plan.steps[1].reason);
    assert_eq!(plan.value.as_deref(), Some("0.6.3+3.2.0"));
}

#[test]
fn only_master_in_a_bare_mirror() {
    let t = TestRepo::bare();
    let master = t.chain("refs/heads/master", None, &["1.0.0+10.0.0", "2.0.0+11.0.0", "wip"]);
    t.lightweight("10.7.1+26.6.2", master[1]);
    let pr = t.commit(Some("refs/heads/pr-3"), "a keycloak change", &[master[2]]);
    let plan = resolve(t.path(), &Inputs::new(&pr.to_string())).unwrap();
    assert_eq!((plan.kind, plan.value.as_deref()), (BaseKind::Ref, Some("master")));
    assert_eq!(plan.commit, Some(master[2].to_string()));
    assert!(plan.reason.contains("there is no main branch"), "{}", plan.reason);
}

#[test]
fn origin_master_remote_tracking_is_found() {
    let t = TestRepo::new();
    let master = t.chain("refs/remotes/origin/master", None, &["a", "b"]);
    let pr = t.commit(Some("refs/heads/pr"), "change", &[master[0]]);
    let plan = resolve(t.path(), &Inputs::new(&pr.to_string())).unwrap();
    assert_eq!((plan.kind, plan.value.as_deref()), (BaseKind::Ref, Some("origin/master")));
    assert_eq!(plan.commit, Some(master[1].to_string()));
}

#[test]
fn no_tags_and_head_at_the_tip_is_a_skip() {
    let t = TestRepo::new();
    t.chain("refs/heads/main", None, &["a", "b"]);
    let plan = resolve(t.path(), &Inputs::new("main")).unwrap();
    assert_eq!((plan.kind, plan.value, plan.commit), (BaseKind::Skip, None, None));
    assert!(plan.steps.iter().all(|s| s.outcome == Outcome::Passed));
    assert!(plan.steps[3].reason.contains("no release tag in head's history"), "{}", plan.steps[3].reason);
}

#[test]
fn head_as_the_only_version_is_a_skip() {
    let t = TestRepo::new();
    let main = t.chain("refs/heads/main", None, &["first release"]);
    t.lightweight("1.0.0+1.0.0", main[0]);
    let plan = resolve(t.path(), &Inputs::new("main")).unwrap();
    assert_eq!(plan.kind, BaseKind::Skip);
    assert_eq!(plan.head.version.as_deref(), Some("1.0.0+1.0.0"));
    assert!(plan.steps[3].reason.contains("no release tag is older than the head's version 1.0.0+1.0.0"));
}

#[test]
fn malformed_tags_are_skipped_with_a_warning() {
    let _guard = lkg_testkit::settings().bind_to_scope();
    let t = TestRepo::new();
    let main = t.chain("refs/heads/main", None, &["1", "2", "3", "4"]);
    t.lightweight("1.14.1-rootless_1", main[0]);
    t.lightweight("latest", main[1]);
    t.annotated("3.5.3+1.24.2-rootless", main[1]);
    t.lightweight("garbage", main[2]);
    t.annotated("3.6.0+1.24.2-rootless", main[3]);
    let plan = resolve(t.path(), &Inputs::new("main")).unwrap();
    assert_eq!(plan.value.as_deref(), Some("3.5.3+1.24.2-rootless"));
    insta::assert_json_snapshot!(plan.warnings, @r#"
        [
          "tag 1.14.1-rootless_1 skipped: \"1.14.1-rootless_1\" is not <recipe-semver>+<app-version>: it has no '+'",
          "tag garbage skipped: \"garbage\" is not <recipe-semver>+<app-version>: it has no '+'",
          "tag latest skipped: \"latest\" is not <recipe-semver>+<app-version>: it has no '+'"
        ]
    "#);
}

#[test]
fn annotated_and_lightweight_tags_peel_to_their_commits() {
    let t = TestRepo::new();
    let main = t.chain("refs/heads/main", None, &["a", "b", "c"]);
    t.lightweight("1.0.0+1.0", main[0]);
    t.annotated("1.1.0+1.1", main[1]);
    t.annotated("1.2.0+1.2", main[2]);
    let plan = resolve(t.path(), &Inputs::new("1.2.0+1.2")).unwrap();
    assert_eq!(plan.head.commit, main[2].to_string(), "an annotated --head peels to its commit");
    assert_eq!((plan.head.version.as_deref(), plan.head.version_from), (Some("1.2.0+1.2"), Some("tag")));
    assert_eq!(plan.commit, Some(main[1].to_string()), "the annotated tag object is not the commit");
    let plan = resolve(t.path(), &Inputs::new(&main[1].to_string())).unwrap();
    assert_eq!((plan.value.as_deref(), plan.commit), (Some("1.0.0+1.0"), Some(main[0].to_string())));
}

#[test]
fn the_order_can_drop_and_reorder_steps() {
    let (t, _, pr) = discourse();
    let inputs = Inputs {
        last_green: Some(given("0.6.3+3.2.0")),
        order: "older-tag,last-green".parse().unwrap(),
        ..Inputs::new(&pr.to_string())
    };
    let plan = resolve(t.path(), &inputs).unwrap();
    assert_eq!(plan.value.as_deref(), Some("0.7.0+3.3.1"));
    assert_eq!(outcomes(&plan), [(Source::Override, Outcome::Passed), (Source::OlderTag, Outcome::Taken)]);
}

#[test]
fn bad_inputs_name_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let err = resolve(dir.path(), &Inputs::new("HEAD")).unwrap_err();
    assert!(err.to_string().contains("is not a git repository"), "{err}");
    let (t, _, _) = discourse();
    let err = resolve(t.path(), &Inputs::new("no-such-branch")).unwrap_err();
    assert!(err.to_string().starts_with("--head \"no-such-branch\" does not name a commit"), "{err}");
}

/// As after `git pack-refs` (every clone): tags live in `packed-refs`, and an
/// annotated tag's commit is recorded on a `^` line, read without opening the tag.
#[test]
fn packed_annotated_tags_use_the_recorded_peel() {
    let t = TestRepo::new();
    let main = t.chain("refs/heads/main", None, &["a", "b", "c"]);
    t.annotated("1.0.0+1.0", main[0]);
    t.lightweight("1.1.0+1.1", main[1]);
    let tag_object = t.repo.refname_to_id("refs/tags/1.0.0+1.0").unwrap();
    assert_ne!(tag_object, main[0], "an annotated tag ref names the tag object");
    let gitdir = t.path().join(".git");
    std::fs::remove_file(gitdir.join("refs/tags/1.0.0+1.0")).unwrap();
    std::fs::remove_file(gitdir.join("refs/tags/1.1.0+1.1")).unwrap();
    let missing = "0123456789abcdef0123456789abcdef01234567";
    std::fs::write(
        gitdir.join("packed-refs"),
        format!(
            "# pack-refs with: peeled fully-peeled sorted \n{tag_object} refs/tags/1.0.0+1.0\n^{}\n\
             {} refs/tags/1.1.0+1.1\n{tag_object} refs/tags/1.2.0+gone\n^{missing}\n",
            main[0], main[1]
        ),
    )
    .unwrap();
    // The tag object of 1.2.0+gone peels to a commit that is here; the peel
    // line names one that is not, and that is what lkg read. Not a shallow
    // clone, so the repository is damaged.
    let err = resolve(t.path(), &Inputs::new("main")).unwrap_err();
    assert!(err.to_string().contains(&format!("tag 1.2.0+gone points to {missing}, which is missing")), "{err}");
    std::fs::write(gitdir.join("shallow"), format!("{}\n", main[0])).unwrap();
    let plan = resolve(t.path(), &Inputs::new("main")).unwrap();
    assert_eq!((plan.value.as_deref(), plan.commit), (Some("1.1.0+1.1"), Some(main[1].to_string())));
    let plan = resolve(t.path(), &Inputs::new(&main[1].to_string())).unwrap();
    assert_eq!((plan.value.as_deref(), plan.commit), (Some("1.0.0+1.0"), Some(main[0].to_string())));
    assert_eq!(
        plan.warnings[1],
        format!(
            "tag 1.2.0+gone skipped: it points to {missing}, which is not in this repository (history stops at a shallow cut or a graft)"
        )
    );
}
