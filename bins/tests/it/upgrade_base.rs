//! `lkg-upgrade-base` as a CI step runs it, over repositories built here with
//! the git CLI (an independent peer of lkg's git2 reader): the plan in JSON
//! and words for each rule of the order, base overlays, last-green read
//! from a canonical record, and the exit codes of bad input (2) and an
//! unreadable repository or state dir (5).

use std::cell::Cell;
use std::process::{Command, Output, Stdio};

use crate::common::{code, json, text};

const UPGRADE_BASE: &str = env!("CARGO_BIN_EXE_lkg-upgrade-base");

fn upgrade_base_command(args: &[&str]) -> Command {
    let mut command = Command::new(UPGRADE_BASE);
    command.args(args).stdin(Stdio::null());
    command
}

fn upgrade_base(args: &[&str]) -> Output {
    upgrade_base_command(args).output().expect("run lkg-upgrade-base")
}

/// A repository built with the git CLI. A fixed author and a clock that
/// moves a minute per command make commit ids, and the snapshots that show
/// them, the same on every run.
struct Repo {
    dir: tempfile::TempDir,
    clock: Cell<i64>,
}

impl Repo {
    fn new() -> Repo {
        let repo = Repo { dir: tempfile::tempdir().unwrap(), clock: Cell::new(1_750_000_000) };
        repo.git(&["init", "-q", "-b", "main"]);
        repo
    }

    fn path(&self) -> &str {
        self.dir.path().to_str().unwrap()
    }

    fn git(&self, args: &[&str]) -> String {
        let now = self.clock.get();
        self.clock.set(now + 60);
        let date = format!("{now} +0000");
        let out = Command::new("git")
            .arg("-C")
            .arg(self.dir.path())
            .args(args)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "lkg test")
            .env("GIT_AUTHOR_EMAIL", "test@lkg.invalid")
            .env("GIT_COMMITTER_NAME", "lkg test")
            .env("GIT_COMMITTER_EMAIL", "test@lkg.invalid")
            .env("GIT_AUTHOR_DATE", &date)
            .env("GIT_COMMITTER_DATE", &date)
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .env_remove("GIT_INDEX_FILE")
            .stdin(Stdio::null())
            .output()
            .expect("git is installed");
        assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
        text(&out.stdout).trim().to_owned()
    }

    /// An empty commit on the current branch; returns its id.
    fn commit(&self, message: &str) -> String {
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }

    fn release(&self, message: &str) -> String {
        let id = self.commit(message);
        self.git(&["tag", "-a", "-m", &format!("release {message}"), message]);
        id
    }
}

/// Discourse's history: tags up to 0.7.0+3.3.1 on main, then main moved on
/// (0.8.1+3.5.0, untagged, also on origin/main) and a PR branched from its
/// tip. Two tags are not versions. Returns the repository and main's ids.
fn discourse() -> (Repo, Vec<String>) {
    let repo = Repo::new();
    let main = vec![
        repo.release("0.6.3+3.2.0"),
        repo.release("0.7.0+3.3.1"),
        repo.commit("chore: bitnamilegacy 3.4"),
        repo.commit("chore: upgrade to 0.8.1+3.5.0"),
    ];
    repo.git(&["tag", "1.14.1-rootless_1", &main[0]]);
    repo.git(&["tag", "latest", &main[3]]);
    repo.git(&["update-ref", "refs/remotes/origin/main", &main[3]]);
    repo.git(&["checkout", "-q", "-b", "discourse-official-image"]);
    repo.commit("feat: official image 3.5.3");
    repo.git(&["checkout", "-q", "main"]);
    (repo, main)
}

fn steps(plan: &serde_json::Value) -> Vec<(String, String)> {
    plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["source"].as_str().unwrap().to_owned(), s["outcome"].as_str().unwrap().to_owned()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect()
}

#[test]
fn a_change_off_main_upgrades_from_the_branch_tip_in_json_and_words() {
    let _guard = lkg_testkit::settings().bind_to_scope();
    let (repo, main) = discourse();
    let out = upgrade_base(&["--repo", repo.path(), "--head", "discourse-official-image", "--json"]);
    assert_eq!(code(&out), (Some(0), String::new()));
    let plan = json(&out);
    assert_eq!(plan["commit"], main[3].as_str(), "the git CLI's id of main's tip");
    insta::assert_json_snapshot!(plan, @r#"
    {
      "kind": "ref",
      "value": "origin/main",
      "commit": "e32dbb2863e2a9ec7ad2f11ff4dfeb31cb9cb2d2",
      "reason": "the tip of origin/main (e32dbb2863e2), the predecessor head merges onto",
      "head": {
        "rev": "discourse-official-image",
        "commit": "ee5349c85abcff8c1495f98e5b151a2944bd5e69",
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
          "reason": "the tip of origin/main (e32dbb2863e2), the predecessor head merges onto"
        }
      ],
      "warnings": [
        "tag 1.14.1-rootless_1 skipped: \"1.14.1-rootless_1\" is not <recipe-semver>+<app-version>: it has no '+'",
        "tag latest skipped: \"latest\" is not <recipe-semver>+<app-version>: it has no '+'"
      ]
    }
    "#);
    let out = upgrade_base(&["--repo", repo.path(), "--head", "discourse-official-image"]);
    assert_eq!(code(&out), (Some(0), String::new()));
    insta::assert_snapshot!(text(&out.stdout), @r#"
    base: ref origin/main (e32dbb2863e2)
      the tip of origin/main (e32dbb2863e2), the predecessor head merges onto
    head: discourse-official-image (ee5349c85abc), version unknown
    steps:
      override       passed  no override given
      last-green     passed  no last-green version (neither --last-green nor a canonical record)
      target-branch  taken   the tip of origin/main (e32dbb2863e2), the predecessor head merges onto
    warnings:
      - tag 1.14.1-rootless_1 skipped: "1.14.1-rootless_1" is not <recipe-semver>+<app-version>: it has no '+'
      - tag latest skipped: "latest" is not <recipe-semver>+<app-version>: it has no '+'
    "#);

    // A reader that closed the pipe is not an error.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = upgrade_base_command(&["--repo", repo.path(), "--json"]).stdout(writer).output().unwrap();
    assert_eq!(code(&out), (Some(0), String::new()), "a closed stdout is not an error");
}

#[test]
fn each_rule_of_the_order_from_the_command_line() {
    let (repo, main) = discourse();
    let plan = |args: &[&str]| {
        let mut all = vec!["--repo", repo.path(), "--json"];
        all.extend(args);
        let out = upgrade_base(&all);
        assert_eq!(code(&out), (Some(0), String::new()), "{args:?}");
        json(&out)
    };

    // A run on main's tip itself: never a same-version no-op; the newest older tag.
    let tip = plan(&["--head", "main"]);
    assert_eq!((tip["kind"].as_str(), tip["value"].as_str()), (Some("version"), Some("0.7.0+3.3.1")), "{tip}");
    assert_eq!(tip["commit"], main[1].as_str());
    assert_eq!(
        steps(&tip),
        pairs(&[("override", "passed"), ("last-green", "passed"), ("target-branch", "passed"), ("older-tag", "taken")])
    );

    // The override wins: a version tag gives a version, anything else a ref.
    let pinned = plan(&["--head", "discourse-official-image", "--override", "0.6.3+3.2.0"]);
    assert_eq!((pinned["kind"].as_str(), pinned["value"].as_str()), (Some("version"), Some("0.6.3+3.2.0")));
    assert_eq!(steps(&pinned), pairs(&[("override", "taken")]));
    let branch = plan(&["--head", "discourse-official-image", "--override", "main"]);
    assert_eq!((branch["kind"].as_str(), branch["commit"].as_str()), (Some("ref"), Some(main[3].as_str())));

    // Last-green comes before the branch tip.
    let green = plan(&["--head", "discourse-official-image", "--last-green", "0.6.3+3.2.0"]);
    assert_eq!((green["kind"].as_str(), green["value"].as_str()), (Some("version"), Some("0.6.3+3.2.0")));
    assert_eq!(steps(&green), pairs(&[("override", "passed"), ("last-green", "taken")]));

    // --order drops the branch tip: the newest tag in head's history.
    let ordered = plan(&["--head", "discourse-official-image", "--order", "older-tag"]);
    assert_eq!(ordered["value"], "0.7.0+3.3.1");
    assert_eq!(steps(&ordered), pairs(&[("override", "passed"), ("older-tag", "taken")]));

    // Tags that are not versions are skipped with a warning, never a crash.
    let warnings = tip["warnings"].as_array().unwrap();
    for tag in ["1.14.1-rootless_1", "latest"] {
        assert!(warnings.iter().any(|w| w.as_str().unwrap().starts_with(&format!("tag {tag} skipped"))), "{tip}");
    }

    // Base overlays apply only to the version they were written for.
    let previous = repo.dir.path().join("previous");
    for dir in ["0.7.0+3.3.1", "0.6.3+3.2.0"] {
        fs_err::create_dir_all(previous.join(dir)).unwrap();
        fs_err::write(previous.join(dir).join("compose.ccci.yml"), "services: {}\n").unwrap();
    }
    let with_overlays = plan(&["--head", "main", "--overlays", previous.to_str().unwrap()]);
    let decided: Vec<(String, String)> = with_overlays["overlays"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["declared"].as_str().unwrap().to_owned(), o["outcome"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(decided, pairs(&[("0.6.3+3.2.0", "stale"), ("0.7.0+3.3.1", "apply")]));
    let out = upgrade_base(&["--repo", repo.path(), "--head", "main", "--overlays", previous.to_str().unwrap()]);
    let human = text(&out.stdout);
    assert!(human.contains("overlays:\n  stale    0.6.3+3.2.0  (compose.ccci.yml): written for 0.6.3+3.2.0, but the base is 0.7.0+3.3.1\n  apply    0.7.0+3.3.1  (compose.ccci.yml): written for 0.7.0+3.3.1, the plan's base\n"), "{human}");
}

#[test]
fn nothing_to_upgrade_from_is_a_skip_plan_not_an_error() {
    let repo = Repo::new();
    repo.release("1.0.0+1.0");
    let out = upgrade_base(&["--repo", repo.path(), "--json"]);
    assert_eq!(code(&out), (Some(0), String::new()));
    let plan = json(&out);
    assert_eq!((plan["kind"].as_str(), plan["value"].as_str()), (Some("skip"), None), "{plan}");
    assert_eq!(plan["head"]["version"], "1.0.0+1.0");
    let out = upgrade_base(&["--repo", repo.path()]);
    assert_eq!(code(&out), (Some(0), String::new()));
    assert!(text(&out.stdout).starts_with("base: skip\n  nothing to upgrade from: "), "{}", text(&out.stdout));
}

#[test]
fn last_green_is_read_from_the_apps_canonical_record() {
    let (repo, main) = discourse();
    let state = tempfile::tempdir().unwrap();
    let record = state.path().join("apps/discourse/canonical.json");
    fs_err::create_dir_all(record.parent().unwrap()).unwrap();
    // The record as docs/canonical.md describes it (and lkg-canonical writes it).
    let written = serde_json::json!({
        "schema_version": 1, "app": "discourse", "domain": "warm-canon-discourse.ci.example.net",
        "version": "0.6.3+3.2.0", "commit": main[0], "status": "idle", "ts": "2026-06-18T01:00:00Z",
        "volumes": ["warm-canon-discourse_data"]
    });
    fs_err::write(&record, written.to_string()).unwrap();
    let state_dir = state.path().to_str().unwrap();
    let args = ["--repo", repo.path(), "--head", "discourse-official-image", "--state-dir", state_dir];

    let mut with_app = args.to_vec();
    with_app.extend(["--app", "discourse", "--json"]);
    let out = upgrade_base(&with_app);
    assert_eq!(code(&out), (Some(0), String::new()));
    let plan = json(&out);
    assert_eq!((plan["kind"].as_str(), plan["value"].as_str()), (Some("version"), Some("0.6.3+3.2.0")), "{plan}");
    assert_eq!(plan["commit"], main[0].as_str());
    assert!(plan["reason"].as_str().unwrap().contains("from the canonical of discourse"), "{plan}");

    // An app without a record: the step passes, the plan goes on.
    let mut other = args.to_vec();
    other.extend(["--app", "gitea", "--json"]);
    let out = upgrade_base(&other);
    assert_eq!(code(&out), (Some(0), String::new()));
    assert_eq!(json(&out)["value"], "origin/main");

    // A record that cannot be parsed is bad input, naming the file.
    fs_err::write(&record, "{\"app\":").unwrap();
    let out = upgrade_base(&with_app);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("apps/discourse/canonical.json is malformed"), "{}", text(&out.stderr));
}

#[test]
fn bad_input_exits_2_and_an_unreadable_repository_exits_5() {
    let (repo, _) = discourse();
    let plain = tempfile::tempdir().unwrap();
    let plain = plain.path().to_str().unwrap();
    let r = repo.path();
    let cases: &[(&[&str], &str)] = &[
        (&["--repo", "/nonexistent/recipe"], "/nonexistent/recipe is not a git repository"),
        (&["--repo", plain], "is not a git repository (bare or with a work tree)"),
        (&["--repo", r, "--head", "no-such-branch"], "--head \"no-such-branch\" does not name a commit"),
        (&["--repo", r, "--override", "9.9.9+1"], "--override \"9.9.9+1\" is neither a tag nor a revision"),
        (&["--repo", r, "--order", "newest"], "--order: \"newest\" is not a step"),
        (&["--repo", r, "--head-version", "latest"], "--head-version \"latest\" is not <recipe-semver>+<app-version>"),
        (&["--repo", r, "--last-green", "0.6.3"], "--last-green \"0.6.3\" is not <recipe-semver>+<app-version>"),
        (&["--repo", r, "--app", "Discourse"], "app name \"Discourse\""),
        (&["--repo", r, "--last-green", "0.6.3+3.2.0", "--app", "discourse"], "cannot be used with"),
        (&["--head", "main"], "--repo <PATH>"),
    ];
    for (args, message) in cases {
        let out = upgrade_base(args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}: {}", text(&out.stdout));
    }

    // 5: a damaged repository (a commit missing, and no shallow file or
    // grafts to explain it) is an error naming the object, never a plan.
    let damaged = discourse().0;
    let first = damaged.git(&["rev-list", "--max-parents=0", "main"]);
    let loose = damaged.dir.path().join(".git/objects").join(&first[..2]).join(&first[2..]);
    fs_err::remove_file(loose).unwrap();
    let out = upgrade_base(&["--repo", damaged.path(), "--head", "discourse-official-image"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains(&format!("{} is damaged", damaged.path())) && stderr.contains(&first), "{stderr}");
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));

    // 5: the state dir cannot be read; the repository's refs cannot be read.
    let out = upgrade_base(&["--repo", r, "--state-dir", "/dev/null", "--app", "discourse"]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("cannot read /dev/null/apps/discourse/canonical.json"), "{}", text(&out.stderr));
    fs_err::write(repo.dir.path().join(".git/packed-refs"), "not a packed-refs file\n").unwrap();
    let out = upgrade_base(&["--repo", r, "--head", "HEAD"]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains(&format!("cannot list the tags in {r}")), "{}", text(&out.stderr));
}

#[test]
fn help_names_the_options_order_and_exit_codes() {
    let out = upgrade_base(&["--help"]);
    assert_eq!(code(&out), (Some(0), String::new()));
    let help = text(&out.stdout);
    for word in [
        "--repo",
        "--head",
        "--target-branch",
        "--override",
        "--last-green",
        "--app",
        "--head-version",
        "--order",
        "--overlays",
        "--json",
        "--state-dir",
        "Exit codes: 0 a plan",
    ] {
        assert!(help.contains(word), "--help lacks {word}:\n{help}");
    }
}
