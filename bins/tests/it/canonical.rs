//! `lkg-canonical` as the CI harness runs it: the lifecycle of a canonical
//! in JSON and words, refusals with every reason (exit 1), bad input (2),
//! the per-app lock held by another process (5), `lock APP -- CMD`, and
//! `check` against the real Docker engine of the test environment.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use lkg_testkit::{env, unique_name};

use crate::common::{code, json, text};

const CANONICAL: &str = env!("CARGO_BIN_EXE_lkg-canonical");

fn canonical_command(state: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(CANONICAL);
    command
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .env("DOCKER_HOST", &env().docker_host)
        // Not inside someone's `lkg-canonical lock`, and no scheme from the caller's environment.
        .env_remove("LKG_CANONICAL_LOCKS")
        .env_remove("LKG_CANONICAL_BASE_DOMAIN")
        .env_remove("LKG_CANONICAL_NAMESPACE")
        .env_remove("LKG_CANONICAL_RESERVED")
        .stdin(Stdio::null());
    command
}

fn canonical(state: &Path, args: &[&str]) -> Output {
    canonical_command(state, args).output().expect("run lkg-canonical")
}

/// The arguments of `promote` for a run of `app` at `version`: cold, full,
/// latest and green unless `run` overrides some of them.
fn promote_args<'a>(app: &'a str, version: &'a str, commit: &'a str, run: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["promote", "--app", app, "--version", version, "--commit", commit];
    let given = |flag: &str| run.iter().any(|a| a.starts_with(flag));
    if !given("--run") {
        args.extend(["--run", "cold"]);
    }
    if !given("--stages") {
        args.extend(["--stages", "full"]);
    }
    if !given("--latest") && !given("--not-latest") {
        args.push("--latest");
    }
    if !given("--result") {
        args.extend(["--result", "green"]);
    }
    args.extend(run);
    args
}

#[test]
fn the_lifecycle_of_a_canonical_from_the_command_line() {
    let _guard = lkg_testkit::settings().bind_to_scope();
    let state = tempfile::tempdir().unwrap();
    let s = state.path();
    let volumes = ["--volume", "warm-canon-gitea_data", "--volume", "warm-canon-gitea_config"];

    // Seed: the first green, full, cold run on the latest version.
    let mut seed = promote_args("gitea", "3.5.3+1.24.2-rootless", "5e1f0c2a9b", &["--base-domain", "ci.example.net"]);
    seed.extend(volumes);
    seed.push("--json");
    let out = canonical(s, &seed);
    assert_eq!(code(&out), (Some(0), String::new()));
    insta::assert_json_snapshot!(json(&out), @r#"
    {
      "outcome": "seeded",
      "record": {
        "schema_version": 1,
        "app": "gitea",
        "domain": "warm-canon-gitea.ci.example.net",
        "version": "3.5.3+1.24.2-rootless",
        "commit": "5e1f0c2a9b",
        "status": "warm",
        "ts": "[TS]",
        "volumes": [
          "warm-canon-gitea_data",
          "warm-canon-gitea_config"
        ]
      }
    }
    "#);
    let on_disk: serde_json::Value =
        serde_json::from_slice(&fs_err::read(s.join("apps/gitea/canonical.json")).unwrap()).unwrap();
    assert_eq!(on_disk["version"], "3.5.3+1.24.2-rootless", "the record is where docs/canonical.md says");

    // A quick run on a pinned ref that went red: refused, with every reason, exit 1.
    let quick = ["--run", "quick", "--stages", "partial", "--not-latest", "--result", "red"];
    let out = canonical(s, &promote_args("gitea", "3.6.0+1.24.2-rootless", "77aa01", &quick));
    assert_eq!(code(&out), (Some(1), String::new()), "a refusal is a verdict, not an error");
    insta::assert_snapshot!(text(&out.stdout), @r"
    refused: 3.6.0+1.24.2-rootless (77aa01) may not become the canonical
      - quick-run: a quick run upgrades the canonical itself in place; its data is what was tested, not a fresh known-good, so quick runs never promote
      - partial-stages: the run skipped stages; only a full run proves the version
      - pinned-ref: the run tested a pinned ref, not the app's latest version; a canonical tracks the latest release
      - not-green: the run was red
    the canonical of gitea stays at 3.5.3+1.24.2-rootless (5e1f0c2a9b)
    ");
    let mut quick_json = promote_args("gitea", "3.6.0+1.24.2-rootless", "77aa01", &["--run", "quick"]);
    quick_json.push("--json");
    let out = canonical(s, &quick_json);
    assert_eq!(code(&out), (Some(1), String::new()));
    let refused = json(&out);
    assert_eq!(refused["outcome"], "refused");
    assert_eq!(refused["refusals"], serde_json::json!(["quick-run"]));
    assert_eq!(refused["current"]["version"], "3.5.3+1.24.2-rootless");

    // Idle, then advanced by a cold run on the next latest version; the volumes are kept.
    let out = canonical(s, &["set-status", "gitea", "idle", "--json"]);
    assert_eq!(code(&out), (Some(0), String::new()));
    let idle = json(&out);
    assert_eq!((idle["status"].as_str(), idle["status_since"].is_string()), (Some("idle"), true), "{idle}");
    let out = canonical(s, &promote_args("gitea", "3.6.0+1.24.2-rootless", "88bb02", &[]));
    assert_eq!(code(&out), (Some(0), String::new()));
    insta::assert_snapshot!(text(&out.stdout), @"advanced the canonical of gitea: 3.5.3+1.24.2-rootless (5e1f0c2a9b) -> 3.6.0+1.24.2-rootless (88bb02), warm");
    let out = canonical(s, &["show", "gitea"]);
    assert_eq!(code(&out), (Some(0), String::new()));
    insta::assert_snapshot!(text(&out.stdout), @r"
    gitea: warm at warm-canon-gitea.ci.example.net
      version   3.6.0+1.24.2-rootless
      commit    88bb02
      promoted  [TS]
      volumes   warm-canon-gitea_data, warm-canon-gitea_config
    ");
    let out = canonical(s, &["show", "--all"]);
    assert_eq!(code(&out), (Some(0), String::new()));
    insta::assert_snapshot!(text(&out.stdout), @r"
    APP    STATUS  VERSION                COMMIT  DOMAIN
    gitea  warm    3.6.0+1.24.2-rootless  88bb02  warm-canon-gitea.ci.example.net
    ");
    // A reader that closed the pipe is not an error.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = canonical_command(s, &["show", "--all"]).stdout(writer).output().unwrap();
    assert_eq!(code(&out), (Some(0), String::new()), "a closed stdout is not an error");

    // Forget: the record goes, the volumes are the operator's.
    let out = canonical(s, &["forget", "gitea"]);
    assert_eq!(code(&out), (Some(0), String::new()));
    assert_eq!(
        text(&out.stdout),
        "forgot the canonical of gitea (3.6.0+1.24.2-rootless); its volumes are still there: warm-canon-gitea_data, warm-canon-gitea_config\n"
    );
    let out = canonical(s, &["show", "gitea"]);
    assert_eq!((code(&out), text(&out.stdout)), ((Some(1), String::new()), "gitea has no canonical\n".to_owned()));
    let out = canonical(s, &["show", "gitea", "--json"]);
    assert_eq!((out.status.code(), json(&out)), (Some(1), serde_json::Value::Null));
    let out = canonical(s, &["show", "--all", "--json"]);
    assert_eq!((out.status.code(), json(&out)), (Some(0), serde_json::json!([])));
}

#[test]
fn check_asks_the_engine_for_every_volume_of_the_record() {
    let env = env();
    let state = tempfile::tempdir().unwrap();
    let s = state.path();
    let volume = unique_name("canon-data");
    let _cleanup = Volume(volume.clone());
    env.docker(&["volume", "create", &volume]);
    let mut seed = promote_args("gitea", "1.0.0+1.24.2", "0a1b2c3", &["--base-domain", "ci.example.net"]);
    seed.extend(["--volume", &volume]);
    assert_eq!(code(&canonical(s, &seed)), (Some(0), String::new()));

    let out = canonical(s, &["check", "gitea", "--json"]);
    assert_eq!(code(&out), (Some(0), String::new()));
    assert_eq!(
        json(&out),
        serde_json::json!({"app": "gitea", "has_canonical": true, "presence": {"presence": "present", "volumes": [volume]}})
    );

    // Someone pruned the volume behind lkg's back: no canonical, exit 1.
    env.docker(&["volume", "rm", &volume]);
    let out = canonical(s, &["check", "gitea", "--json"]);
    assert_eq!(code(&out), (Some(1), String::new()));
    let checked = json(&out);
    assert_eq!(checked["has_canonical"], false);
    assert_eq!(checked["presence"]["missing"], serde_json::json!([volume]));
    let out = canonical(s, &["check", "gitea"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).starts_with("gitea: ") && text(&out.stdout).contains(&volume), "{}", text(&out.stdout));
    let out = canonical(s, &["check", "nobody", "--json"]);
    assert_eq!((out.status.code(), json(&out)["has_canonical"].as_bool()), (Some(1), Some(false)));

    // An engine that cannot be asked is not "no canonical".
    let out = canonical_command(s, &["check", "gitea"]).env("DOCKER_HOST", "unix:///nonexistent/docker.sock").output();
    let out = out.unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("cannot reach the Docker engine at unix:///nonexistent/docker.sock"));
}

/// Removes a test's volume even when an assertion fails.
struct Volume(String);

impl Drop for Volume {
    fn drop(&mut self) {
        let _ = env().try_docker(&["volume", "rm", "-f", &self.0]);
    }
}

#[test]
fn bad_input_exits_2_and_names_the_fix() {
    let state = tempfile::tempdir().unwrap();
    let s = state.path();
    let reserved = ["--reserved", "warm-keycloak.ci.example.net=live keycloak SSO"];
    let mut collision = vec!["domain", "keycloak", "--base-domain", "ci.example.net", "--namespace", "warm"];
    collision.extend(reserved);
    let mut seed_collision =
        promote_args("keycloak", "1.0.0+26.0.1", "abc", &["--base-domain", "ci.example.net", "--namespace", "warm"]);
    seed_collision.extend(reserved);
    seed_collision.extend(["--volume", "v"]);
    let no_domain = promote_args("gitea", "1.0.0+1", "abc", &["--volume", "v"]);
    let no_volume = promote_args("gitea", "1.0.0+1", "abc", &["--base-domain", "ci.example.net"]);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["show", "Bad_App"],
            "app name \"Bad_App\" has 'B' at position 0; an app name is a DNS label: lowercase letters a-z, digits",
        ),
        (promote_args("gitea_app", "1.0.0+1", "abc", &[]), "app name \"gitea_app\""),
        (
            collision,
            "domain warm-keycloak.ci.example.net would have two users: the canonical of app keycloak and live keycloak SSO",
        ),
        (seed_collision, "enrolling the canonical would overwrite live keycloak SSO"),
        (no_domain, "give a base domain (--base-domain)"),
        (no_volume, "name the volumes that hold its data (--volume)"),
        (vec!["set-status", "gitea", "idle", "--wait", "abc"], "invalid value 'abc' for '--wait <SECS>'"),
        (vec!["promote", "--app", "gitea"], "required arguments were not provided"),
    ];
    for (args, message) in &cases {
        let out = canonical(s, args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}: {}", text(&out.stdout));
    }
    assert!(!s.join("apps/keycloak/canonical.json").exists(), "a collision enrols nothing");
    assert!(!s.join("apps/gitea/canonical.json").exists());

    // Without a collision the scheme's domain is printed.
    let mut fine = vec!["domain", "keycloak", "--base-domain", "ci.example.net"];
    fine.extend(reserved);
    let out = canonical(s, &fine);
    assert_eq!(
        (code(&out), text(&out.stdout)),
        ((Some(0), String::new()), "warm-canon-keycloak.ci.example.net\n".into())
    );

    // A malformed record: exit 2, naming the file and the way out, which works.
    fs_err::create_dir_all(s.join("apps/mumble")).unwrap();
    fs_err::write(s.join("apps/mumble/canonical.json"), "{\"app\":").unwrap();
    let out = canonical(s, &["show", "mumble"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("apps/mumble/canonical.json is malformed"), "{stderr}");
    assert!(stderr.contains("drop it with `lkg-canonical forget mumble`"), "{stderr}");
    let out = canonical(s, &["forget", "mumble", "--json"]);
    assert_eq!(code(&out), (Some(0), String::new()));
    assert_eq!(json(&out), serde_json::json!({"app": "mumble", "forgotten": null, "removed": true}));
    assert!(!s.join("apps/mumble/canonical.json").exists());
    let out = canonical(s, &["forget", "mumble"]);
    assert_eq!(text(&out.stdout), "mumble had no canonical record; nothing to forget\n");
    fs_err::write(s.join("apps/mumble/canonical.json"), "[]").unwrap();
    let out = canonical(s, &["forget", "mumble"]);
    assert_eq!(text(&out.stdout), "removed the unreadable canonical record of mumble\n");

    // A state directory that cannot be used is the environment (5).
    let out = canonical(Path::new("/dev/null/lkg"), &["set-status", "gitea", "idle"]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("/dev/null/lkg/apps/gitea"), "the error names the path: {}", text(&out.stderr));
}

/// `lkg-canonical lock APP -- sh -c 'echo locked; read line'`: holds the
/// app's lock until [`Holder::release`] writes the line it waits for.
struct Holder {
    child: Child,
}

impl Holder {
    fn start(state: &Path, app: &str) -> Holder {
        let mut child = canonical_command(state, &["lock", app, "--", "sh", "-c", "echo locked; read line"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run lkg-canonical lock");
        let mut line = String::new();
        // Bounded: if the lock is not taken the child exits and the read ends at EOF.
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line, "locked\n", "lkg-canonical lock did not run its command");
        Holder { child }
    }

    fn release(mut self) -> Option<i32> {
        self.child.stdin.take().unwrap().write_all(b"done\n").unwrap();
        self.child.wait().unwrap().code()
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_lock_held_by_another_run_exits_5_naming_it_and_lock_runs_commands_under_it() {
    let state = tempfile::tempdir().unwrap();
    let s = state.path();
    let holder = Holder::start(s, "gitea");
    let pid = holder.child.id();

    // Refused at once, naming who holds it and how to wait.
    let mut seed = promote_args("gitea", "1.0.0+1", "abc", &["--base-domain", "ci.example.net", "--volume", "v"]);
    let out = canonical(s, &seed);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains(&format!("app gitea is locked by another run: held by pid {pid} on host ")), "{stderr}");
    assert!(stderr.contains("(lkg-canonical lock -- sh -c echo locked; read line)"), "{stderr}");
    assert!(stderr.contains("it is running") && stderr.contains("wait for it with --wait SECS"), "{stderr}");
    assert!(!s.join("apps/gitea/canonical.json").exists());
    // A bounded wait is still refused.
    let started = Instant::now();
    let out = canonical(s, &["forget", "gitea", "--wait", "0.3"]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert!(started.elapsed() >= Duration::from_millis(300), "gave up after {:?}", started.elapsed());
    // Another app is not blocked.
    let out = canonical(s, &["forget", "mumble"]);
    assert_eq!(code(&out), (Some(0), String::new()));

    // A run that waits gets the lock once the holder is done.
    seed.extend(["--wait", "30"]);
    let waiter = canonical_command(s, &seed).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(holder.release(), Some(0), "lock exits with its command's code");
    let out = waiter.wait_with_output().unwrap();
    assert_eq!(code(&out), (Some(0), String::new()));
    assert!(text(&out.stdout).starts_with("seeded the canonical of gitea: 1.0.0+1"), "{}", text(&out.stdout));

    // `lock` passes its command's exit code through, and lkg-canonical
    // commands inside it join the lock instead of waiting for themselves.
    let out = canonical(s, &["lock", "gitea", "--", "sh", "-c", "exit 7"]);
    assert_eq!(code(&out), (Some(7), String::new()));
    let out = canonical(
        s,
        &["lock", "gitea", "--", CANONICAL, "--state-dir", &s.display().to_string(), "set-status", "gitea", "idle"],
    );
    assert_eq!(code(&out), (Some(0), String::new()));
    assert!(text(&out.stdout).starts_with("gitea: idle at warm-canon-gitea.ci.example.net"), "{}", text(&out.stdout));
    let out = canonical(s, &["lock", "gitea", "--", "/nonexistent/run-ci.sh"]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("cannot run /nonexistent/run-ci.sh"), "{}", text(&out.stderr));
}

const RECONCILE: &str = env!("CARGO_BIN_EXE_lkg-reconcile");

#[test]
fn lkg_reconcile_inside_lkg_canonical_lock_joins_the_lock() {
    let state = tempfile::tempdir().unwrap();
    let s = state.path();
    let dir = s.display().to_string();
    let recover = [RECONCILE, "--state-dir", &dir, "recover", "--app", "gitea"];

    // Inside `lock`, lkg-reconcile joins the lock its parent holds (it would
    // otherwise find the app locked by that very parent and exit 5).
    let mut inside = vec!["lock", "gitea", "--"];
    inside.extend(recover);
    let out = canonical(s, &inside);
    assert_eq!(code(&out), (Some(0), String::new()));
    assert_eq!(text(&out.stdout), "app gitea: no interrupted run; nothing to recover\n");

    // The same command outside, while another run holds the lock, is refused:
    // joining is what let it in, not a lock that was free.
    let holder = Holder::start(s, "gitea");
    let outside = || {
        let mut command = Command::new(RECONCILE);
        command.args(&recover[1..]).env("DOCKER_HOST", &env().docker_host).stdin(Stdio::null());
        command
    };
    let out = outside().env_remove("LKG_CANONICAL_LOCKS").output().unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("app gitea is locked by another run"), "{}", text(&out.stderr));
    // Naming a holding in the environment is not enough: it must be the
    // holding that is current, so a stale or forged id joins nothing.
    let out = outside().env("LKG_CANONICAL_LOCKS", "gitea=not-the-holder").output().unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert_eq!(holder.release(), Some(0));
}

#[test]
fn help_names_the_commands_options_and_exit_codes() {
    let state = tempfile::tempdir().unwrap();
    let out = canonical(state.path(), &["--help"]);
    assert_eq!(code(&out), (Some(0), String::new()));
    let help = text(&out.stdout);
    for word in
        ["show", "promote", "set-status", "forget", "check", "lock", "domain", "--state-dir", "--json", "5 lock held"]
    {
        assert!(help.contains(word), "--help lacks {word}:\n{help}");
    }
    let out = canonical(state.path(), &["promote", "--help"]);
    let help = text(&out.stdout);
    for word in ["--run", "--stages", "--latest", "--not-latest", "--result", "--volume", "--base-domain", "--wait"] {
        assert!(help.contains(word), "promote --help lacks {word}:\n{help}");
    }
    let out = canonical(state.path(), &["lock", "--help"]);
    assert!(text(&out.stdout).contains("Exits with the command's exit code"), "{}", text(&out.stdout));
}

/// A record is read back by later runs (upgrade-base, reconcile), so
/// `promote` refuses what could not name a deployment, before it takes the
/// lock and without writing anything.
#[test]
fn promote_refuses_versions_commits_and_volumes_that_name_nothing() {
    let state = tempfile::tempdir().unwrap();
    let s = state.path();
    let long = "1".repeat(100_000);
    let scheme = ["--base-domain", "ci.example.net"];
    let cases: Vec<(&str, &str, &str, &str)> = vec![
        ("", "abc", "v", "invalid version \"\""),
        ("../../etc", "abc", "v", "invalid version \"../../etc\""),
        (&long, "abc", "v", "invalid version \"1111"),
        ("1.0.0\u{1b}[31m", "abc", "v", "invalid version \"1.0.0\\u{1b}[31m\""),
        ("1.0.0", "abc\ndef", "v", "invalid commit \"abc\\ndef\""),
        ("1.0.0", "", "v", "invalid commit \"\""),
        ("1.0.0", "abc", "", "invalid volume name \"\""),
        ("1.0.0", "abc", "../../etc/passwd", "invalid volume name \"../../etc/passwd\""),
        ("1.0.0", "abc", "a b", "invalid volume name \"a b\""),
    ];
    for (version, commit, volume, message) in cases {
        let mut args = promote_args("gitea", version, commit, &scheme);
        args.extend(["--volume", volume]);
        let out = canonical(s, &args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{version:.20?} {commit:?} {volume:?}: {stderr}");
        assert!(stderr.contains(message), "{message}: {stderr}");
        assert!(stderr.len() < 1_000, "the message does not repeat 100,000 characters: {} bytes", stderr.len());
        assert!(!s.join("apps/gitea").exists(), "nothing written, not even a lock file: {version:.20?}");
    }
    let mut ok = promote_args("gitea", "1.0.0+1", "5e1f0c2", &scheme);
    ok.extend(["--volume", "warm-canon-gitea_data"]);
    assert_eq!(code(&canonical(s, &ok)), (Some(0), String::new()));
}

/// Commands that change an existing record, given an app without one, and
/// a promotion the rules refuse, leave the state directory as it was: not
/// even the app's lock file.
#[test]
fn refused_commands_on_an_unknown_app_leave_nothing_behind() {
    let state = tempfile::tempdir().unwrap();
    let s = state.path();
    let out = canonical(s, &["set-status", "nobody", "warm"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("has no canonical"), "{}", text(&out.stderr));
    let out = canonical(s, &["forget", "nobody"]);
    assert_eq!(code(&out), (Some(0), String::new()));
    assert!(text(&out.stdout).contains("nothing to forget"), "{}", text(&out.stdout));
    let refused = promote_args("nobody", "1.0.0", "5e1f0c2", &["--result", "red", "--base-domain", "ci.example.net"]);
    let out = canonical(s, &refused);
    assert_eq!(out.status.code(), Some(1), "a refused promotion is a failed verdict: {}", text(&out.stderr));
    assert!(text(&out.stdout).contains("not-green"), "{}", text(&out.stdout));
    assert!(!s.join("apps/nobody").exists(), "a refused command created the app's directory");
}

/// `show` of every app lists the records that read and names the one that
/// does not, instead of failing on it.
#[test]
fn one_damaged_record_does_not_hide_the_others() {
    let state = tempfile::tempdir().unwrap();
    let s = state.path();
    let mut seed = promote_args("gitea", "1.0.0+1", "5e1f0c2", &["--base-domain", "ci.example.net"]);
    seed.extend(["--volume", "gitea_data"]);
    assert_eq!(code(&canonical(s, &seed)), (Some(0), String::new()));
    fs_err::create_dir_all(s.join("apps/mumble")).unwrap();
    fs_err::write(s.join("apps/mumble/canonical.json"), "{not json").unwrap();
    let out = canonical(s, &["show", "--all", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let records = json(&out);
    let apps: Vec<&str> = records.as_array().unwrap().iter().map(|r| r["app"].as_str().unwrap()).collect();
    assert_eq!(apps, ["gitea"]);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("warning: app mumble: canonical record") && stderr.contains("is malformed"), "{stderr}");
}
