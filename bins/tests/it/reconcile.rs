//! `lkg-reconcile` as a user runs it: exit codes and JSON output, and
//! SIGKILL at every journal step followed by `recover`. These run the real
//! binary, which is why they live in the bins package.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use lkg_testkit::{App, Behaviour, Env, env, free_port, http_get, http_request, unique_name, wait_until};

use crate::common::{json, text};

/// One app on the swarm run through the CLI, removed (stack and volumes) on drop.
pub(crate) struct CliApp {
    env: &'static Env,
    pub(crate) name: String,
    port: u16,
    dir: tempfile::TempDir,
}

impl CliApp {
    pub(crate) fn new(prefix: &str) -> CliApp {
        let env = env();
        for (version, behaviour) in
            [("1.0.0", Behaviour::Healthy), ("1.1.0", Behaviour::Healthy), ("1.1.0", Behaviour::Unhealthy)]
        {
            App::new(version).behaviour(behaviour).import(env);
        }
        let app = CliApp { env, name: unique_name(prefix), port: free_port(), dir: tempfile::tempdir().unwrap() };
        std::fs::write(
            app.compose(),
            format!(
                r#"version: "3.8"
services:
  app:
    image: lkg-fixture/app:${{LKG_VERSION_TAG}}
    stop_grace_period: 1s
    ports: [{{target: 8080, published: {port}, protocol: tcp, mode: host}}]
    volumes: [data:/data]
    deploy:
      update_config: {{order: stop-first, failure_action: rollback, monitor: 1s}}
volumes:
  data:
"#,
                port = app.port
            ),
        )
        .unwrap();
        app
    }

    pub(crate) fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub(crate) fn compose(&self) -> PathBuf {
        self.dir.path().join("compose.yml")
    }

    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_lkg-reconcile"));
        command.arg("--state-dir").arg(self.state()).args(args).envs(self.env.vars()).stdin(Stdio::null());
        command
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run lkg-reconcile")
    }

    /// `update` with this app's flags and short timings.
    pub(crate) fn update_args(&self, target: &str) -> Vec<String> {
        let health = format!("http://127.0.0.1:{}/health", self.port);
        [
            "update",
            "--app",
            &self.name,
            "-c",
            &self.compose().display().to_string(),
            "--target",
            target,
            "--health",
            &health,
            "--health-passes",
            "2",
            "--health-interval",
            "0.3",
            "--health-deadline",
            "5",
            "--deploy-timeout",
            "40",
            "--resolve-image",
            "never",
            "--json",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    pub(crate) fn update(&self, target: &str) -> Output {
        self.run(&self.update_args(target).iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// Starts `update` to `target` in the background (output piped) and
    /// returns once its journal names `step`.
    pub(crate) fn update_until(&self, target: &str, step: &str) -> std::process::Child {
        let args = self.update_args(target);
        let child = self
            .command(&args.iter().map(String::as_str).collect::<Vec<_>>())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_until(&format!("the update to reach {step}"), Duration::from_secs(60), Duration::from_millis(10), || {
            self.journal().filter(|j| j["step"] == step)
        });
        child
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub(crate) fn serving(&self) -> String {
        wait_until("the app to answer", Duration::from_secs(30), Duration::from_millis(200), || {
            http_get(&self.url("/version")).ok().filter(|r| r.status == 200).map(|r| r.body.trim().to_owned())
        })
    }

    pub(crate) fn marker(&self) -> String {
        http_get(&self.url("/marker")).expect("GET /marker").body
    }

    pub(crate) fn journal(&self) -> Option<serde_json::Value> {
        let path = self.state().join("apps").join(&self.name).join("reconcile/journal.json");
        std::fs::read(path).ok().map(|bytes| serde_json::from_slice(&bytes).unwrap())
    }
}

impl Drop for CliApp {
    fn drop(&mut self) {
        self.env.remove_stack(&self.name);
    }
}

#[test]
fn exit_codes_and_json_follow_the_documented_table() {
    let app = CliApp::new("rccli");
    // 2: bad input, nothing touched.
    let out = app.run(&["update", "--app", "Not_An_App", "-c", "x.yml", "--target", "1.0.0"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let out = app.run(&["update", "--app", &app.name, "--target", "1.0.0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no compose file: pass -c FILE"), "{}", text(&out.stderr));
    let out = app.run(&["gate", "--last-good", "1.0.0", "--target", "../x"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    // A notification channel lkg does not know: bad input, shown without its secret.
    let mut args = app.update_args("1.0.0");
    args.extend(["--notify".to_owned(), "gotify://gotify.example/SECRETAPPTOKEN".to_owned()]);
    let out = app.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(said.contains("unknown scheme") && !said.contains("SECRETAPPTOKEN"), "{said}");
    // 5: the engine is unreachable.
    let mut args = app.update_args("1.0.0");
    args.retain(|a| a != "--json");
    let out = app
        .command(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("cannot reach the Docker engine"), "{}", text(&out.stderr));

    // 0: a first install; JSON on stdout, nothing on stderr (not a terminal).
    let out = app.update("1.0.0");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stderr.is_empty(), "no progress when stderr is not a terminal: {}", text(&out.stderr));
    let report = json(&out);
    assert_eq!((report["outcome"].as_str(), report["last_good"].as_str()), (Some("installed"), Some("1.0.0")));

    // 3: held by the gate.
    let out = app.update("2.0.0");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let report = json(&out);
    assert_eq!((report["outcome"].as_str(), report["gate"]["decision"].as_str()), (Some("held"), Some("hold")));
    assert_eq!(report["alert"]["kind"], "held-major");

    let out = app.run(&["alerts", "--json"]);
    assert_eq!(json(&out)["alerts"].as_array().unwrap().len(), 1);
    let listed = lkg_testkit::redact(&text(&app.run(&["alerts"]).stdout));
    insta::assert_snapshot!(listed, @r"
    [TS] held-major             lkgt-rccli-[ID] 1.0.0 -> 2.0.0
        held by the safety gate: 1.0.0 -> 2.0.0 is a major update (major 1 -> 2). Nothing was changed: lkgt-rccli-[ID] still runs 1.0.0. Upgrade by hand (see the release notes), then run `lkg-reconcile status --app lkgt-rccli-[ID]`
    ");
    // A damaged alert file is named; it hides no other alert.
    let damaged = app.state().join("alerts/0-damaged.json");
    std::fs::write(&damaged, "{not json").unwrap();
    let out = app.run(&["alerts", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(json(&out)["alerts"].as_array().unwrap().len(), 1);
    assert_eq!(json(&out)["unreadable"][0]["path"], damaged.display().to_string());
    assert!(text(&out.stderr).contains("cannot read the alert"), "{}", text(&out.stderr));
    std::fs::remove_file(&damaged).unwrap();
    let out = app.run(&["alerts", "--ack"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("acknowledged 1 alert(s)"), "{}", text(&out.stdout));
    assert_eq!(json(&app.run(&["alerts", "--json"]))["alerts"], serde_json::json!([]));
    assert_eq!(json(&app.run(&["alerts", "--all", "--json"]))["alerts"][0]["acked"], true);

    let status = json(&app.run(&["status", "--app", &app.name, "--json"]));
    let status = &status["apps"][0];
    assert_eq!((status["last_good"]["version"].as_str(), status["deployed"].as_str()), (Some("1.0.0"), Some("1.0.0")));
    assert_eq!((status["journal"].is_null(), status["lock"].is_null()), (true, true));
    assert_eq!(status["last_run"]["outcome"], "held");

    let out = app.run(&["gate", "--last-good", "10.6.0+25.0.6", "--target", "10.7.0+26.0.1"]);
    // keycloak 25 -> 26 behind a minor recipe bump: held, the app's major changed.
    assert_eq!(out.status.code(), Some(3));
    insta::assert_snapshot!(text(&out.stdout), @"HOLD (held-major): 10.6.0+25.0.6 -> 10.7.0+26.0.1 is a major update (app major 25 -> 26)");
    let gate = |args: &[&str]| app.run(&[&["gate", "--last-good", "1.0.0"], args].concat()).status.code();
    assert_eq!(gate(&["--target", "1.1.0"]), Some(0));
    assert_eq!(gate(&["--target", "2.0.0"]), Some(3));
    assert_eq!(gate(&["--target", "1.0.1", "--notes", "Manual migration required."]), Some(3));
    assert_eq!(gate(&["--target", "1.0.1", "--notes", "No breaking changes."]), Some(0));
    // A marker that can match nothing would turn the hold off: refused, not passed.
    let migration = ["--target", "1.1.0", "--notes", "manual migration required"];
    for empty in ["", " ", "--"] {
        assert_eq!(gate(&[&migration[..], &["--marker", empty]].concat()), Some(2), "--marker {empty:?}");
    }
    assert_eq!(gate(&[&migration[..], &["--marker", "manual migration"]].concat()), Some(3));
    // A release-notes directory that does not exist is a typo, not "no notes".
    let out = app.run(&["gate", "--last-good", "1.0.0", "--target", "1.0.1", "--release-notes", "/nonexistent/notes"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--release-notes /nonexistent/notes: no such directory"),
        "{}",
        text(&out.stderr)
    );
    // `alerts --app` takes app names as every other command does.
    let out = app.run(&["alerts", "--app", "../../etc"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    // Release notes that never end are refused after 1 MiB, not read into memory.
    let out = app.run(&["gate", "--last-good", "1.0.0", "--target", "1.0.1", "--notes-file", "/dev/zero"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("larger than 1 MiB"), "{}", text(&out.stderr));

    let out = app.run(&["recover", "--app", &app.name]);
    assert_eq!(
        (out.status.code(), text(&out.stdout)),
        (Some(0), format!("app {}: no interrupted run; nothing to recover\n", app.name))
    );
    // Quick mode without a canonical says so (2) and changes nothing.
    let out =
        app.run(&["quick", "--app", &app.name, "-c", &app.compose().display().to_string(), "--candidate", "1.1.0"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("has no usable canonical"), "{}", text(&out.stderr));
    assert_eq!(app.serving(), "1.0.0");
}

/// What a run killed at a step must end as after `recover`.
struct Kill {
    /// `LKG_RECONCILE_KILL_AT`: a step, or `<step>+<secs>` to land in its middle.
    at: &'static str,
    /// Update to the unhealthy 1.1.0 (to reach the rollback steps).
    broken: bool,
    /// The version served after recover.
    serving: &'static str,
}

/// Installs 1.0.0 with a data marker, kills an update with SIGKILL at a
/// journal step, then recovers: the app serves last-good (or the target, if
/// it had passed its health gate) with the marker intact, the journal is
/// gone and the lock is free.
fn killed_then_recovered(kill: &Kill) {
    let app = CliApp::new("rckill");
    let out = app.update("1.0.0");
    assert_eq!(out.status.code(), Some(0), "install: {}", text(&out.stderr));
    let put = http_request("PUT", &app.url("/marker"), Some(b"known-good")).unwrap();
    assert_eq!(put.status, 200);

    let target = if kill.broken { "1.1.0-unhealthy" } else { "1.1.0" };
    let args = app.update_args(target);
    let out = app
        .command(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .env("LKG_RECONCILE_KILL_AT", kill.at)
        .output()
        .unwrap();
    assert_eq!(out.status.signal(), Some(9), "killed at {}: {:?} {}", kill.at, out.status, text(&out.stderr));
    let journal = app.journal().expect("a killed run leaves its journal");
    // A kill `+secs` into a step lands in it: the steps timed here take
    // seconds (an undeploy about 6, a deploy with its monitor period 3 or more).
    let step = kill.at.split('+').next().unwrap();
    assert_eq!(journal["step"], step, "the journal names the step the run was killed in");
    let killed_at = journal["step"].as_str().unwrap().to_owned();
    let status = json(&app.run(&["status", "--app", &app.name, "--json"]));
    assert_eq!(status["apps"][0]["journal"]["step"], killed_at.as_str());
    assert!(status["apps"][0]["lock"].is_null(), "the kernel released the killed run's lock");

    let out = app.run(&["recover", "--app", &app.name, "--json"]);
    assert_eq!(out.status.code(), Some(0), "recover after a kill at {}: {}", kill.at, text(&out.stderr));
    let report = json(&out);
    assert_eq!(report["resumed"]["step"], killed_at.as_str(), "{report:#}");
    let notes = report["notes"].to_string();
    assert!(notes.contains("took over the lock") && notes.contains("ended without releasing it"), "{notes}");
    let expected = match (killed_at.as_str(), kill.serving) {
        ("record-last-good", _) => "abandoned",
        (_, "1.1.0") => "upgraded",
        _ => "rolled_back",
    };
    assert_eq!(report["outcome"], expected, "killed at {killed_at}: {report:#}");
    assert_eq!(app.serving(), kill.serving, "killed at {killed_at}");
    assert_eq!(app.marker(), "known-good", "killed at {killed_at}: the data is intact");
    assert!(app.journal().is_none(), "killed at {killed_at}: recover finished the run");
    let last_good = json(&app.run(&["status", "--app", &app.name, "--json"]));
    let last_good = &last_good["apps"][0];
    assert_eq!(last_good["last_good"]["version"], kill.serving);
    assert!(last_good["lock"].is_null() && last_good["journal"].is_null(), "{last_good:#}");
    // The next update starts from a clean state.
    let out = app.update(if kill.serving == "1.1.0" { "1.1.0" } else { "1.0.0" });
    assert_eq!(json(&out)["outcome"], "current", "{}", text(&out.stderr));
}

macro_rules! sweep {
    ($($name:ident: $at:literal, $broken:literal, $serving:literal;)*) => {$(
        #[test]
        fn $name() {
            killed_then_recovered(&Kill { at: $at, broken: $broken, serving: $serving });
        }
    )*};
}

// Every step of a stateful update, killed as it begins; the long steps also
// in their middle.
sweep! {
    sigkill_at_record_last_good: "record-last-good", false, "1.0.0";
    sigkill_at_undeploy: "undeploy", false, "1.0.0";
    sigkill_during_undeploy: "undeploy+1", false, "1.0.0";
    sigkill_at_snapshot: "snapshot", false, "1.0.0";
    sigkill_at_deploy_target: "deploy-target", false, "1.0.0";
    sigkill_during_deploy_target: "deploy-target+1.5", false, "1.0.0";
    sigkill_at_check_health: "check-health", false, "1.0.0";
    sigkill_at_commit: "commit", false, "1.1.0";
    sigkill_at_undeploy_failed: "undeploy-failed", true, "1.0.0";
    sigkill_during_undeploy_failed: "undeploy-failed+1", true, "1.0.0";
    sigkill_at_restore_snapshot: "restore-snapshot", true, "1.0.0";
    sigkill_at_deploy_last_good: "deploy-last-good", true, "1.0.0";
    sigkill_during_deploy_last_good: "deploy-last-good+1.5", true, "1.0.0";
    sigkill_at_verify_last_good: "verify-last-good", true, "1.0.0";
    sigkill_at_alert: "alert", true, "1.0.0";
}

#[test]
fn the_killed_run_is_finished_by_the_next_update_too() {
    let app = CliApp::new("rcnext");
    assert_eq!(app.update("1.0.0").status.code(), Some(0));
    let put = http_request("PUT", &app.url("/marker"), Some(b"known-good")).unwrap();
    assert_eq!(put.status, 200);
    let args = app.update_args("1.1.0-unhealthy");
    let out = app
        .command(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .env("LKG_RECONCILE_KILL_AT", "check-health")
        .output()
        .unwrap();
    assert_eq!(out.status.signal(), Some(9));
    // The next update (nightly) undoes the killed run first, then updates.
    let out = app.update("1.1.0");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report = json(&out);
    assert_eq!(report["interrupted_run"]["outcome"], "rolled_back", "{report:#}");
    assert_eq!(report["interrupted_run"]["reason"], "interrupted");
    assert_eq!(report["outcome"], "upgraded");
    assert_eq!(app.serving(), "1.1.0");
    assert_eq!(app.marker(), "known-good");
    let alerts = json(&app.run(&["alerts", "--json"]));
    assert_eq!(alerts["alerts"][0]["reason"], "interrupted", "the interrupted run is reported");
}

/// Quick mode's steps under SIGKILL. The canonical's snapshot is taken with
/// `lkg-snap`, which exists with the `snap` feature (on by default).
#[cfg(feature = "snap")]
mod quick_sweep {
    use super::*;

    /// A canonical of the app: 1.0.0 with known-good data, idle, snapshotted, recorded.
    fn canonical(app: &CliApp) {
        let out = app.update("1.0.0");
        assert_eq!(out.status.code(), Some(0), "install: {}", text(&out.stderr));
        let put = http_request("PUT", &app.url("/marker"), Some(b"known-good")).unwrap();
        assert_eq!(put.status, 200);
        app.env.docker(&["stack", "rm", &app.name]);
        let label = format!("label=com.docker.stack.namespace={}", app.name);
        wait_until("the stack to be gone", Duration::from_secs(60), Duration::from_millis(200), || {
            app.env.docker(&["ps", "-aq", "--filter", &label]).is_empty().then_some(())
        });
        let out = Command::new(env!("CARGO_BIN_EXE_lkg-snap"))
            .arg("--state-dir")
            .arg(app.state())
            .args(["take", "--app", &app.name, "--stack", &app.name, "--version", "1.0.0"])
            .envs(app.env.vars())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "snapshot: {}", text(&out.stderr));
        // The record as lkg-canonical writes it (docs/canonical.md).
        let record = serde_json::json!({
            "schema_version": 1, "app": app.name, "domain": format!("warm-canon-{}.example.test", app.name),
            "version": "1.0.0", "commit": "0a1b2c3", "status": "idle", "ts": "2026-05-29T00:00:00Z",
            "volumes": [format!("{}_data", app.name)],
        });
        std::fs::write(app.record(), serde_json::to_vec_pretty(&record).unwrap()).unwrap();
    }

    impl CliApp {
        fn record(&self) -> PathBuf {
            self.state().join("apps").join(&self.name).join("canonical.json")
        }

        fn quick_args(&self, candidate: &str) -> Vec<String> {
            let mut args = self.update_args(candidate);
            "quick".clone_into(&mut args[0]);
            let target = args.iter().position(|a| a == "--target").unwrap();
            "--candidate".clone_into(&mut args[target]);
            args.extend(["--stack".to_owned(), self.name.clone()]);
            args
        }

        fn volume_marker(&self) -> String {
            self.env.on_volume(&format!("{}_data", self.name), &["cat", "/data/marker"])
        }
    }

    fn killed_then_recovered(at: &str, candidate: &str, expected: &str) {
        let app = CliApp::new("rcqkill");
        canonical(&app);
        let record = std::fs::read_to_string(app.record()).unwrap();
        let args = app.quick_args(candidate);
        let out = app
            .command(&args.iter().map(String::as_str).collect::<Vec<_>>())
            .env("LKG_RECONCILE_KILL_AT", at)
            .output()
            .unwrap();
        assert_eq!(out.status.signal(), Some(9), "killed at {at}: {:?} {}", out.status, text(&out.stderr));
        let killed_at = app.journal().expect("a killed run leaves its journal")["step"].as_str().unwrap().to_owned();

        let out = app.run(&["recover", "--app", &app.name, "--json"]);
        assert_eq!(out.status.code(), Some(0), "recover after a kill at {at}: {}", text(&out.stderr));
        let report = json(&out);
        assert_eq!(
            (report["outcome"].as_str(), report["resumed"]["step"].as_str()),
            (Some(expected), Some(killed_at.as_str())),
            "{report:#}"
        );
        let service = app.env.try_docker(&["service", "inspect", &format!("{}_app", app.name)]);
        assert!(!service.status.success(), "killed at {killed_at}: the canonical is left undeployed");
        assert_eq!(app.volume_marker(), "known-good", "killed at {killed_at}: the known-good data is there");
        let after: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(app.record()).unwrap()).unwrap();
        let before: serde_json::Value = serde_json::from_str(&record).unwrap();
        for field in ["version", "commit", "ts", "domain", "volumes"] {
            assert_eq!(after[field], before[field], "killed at {killed_at}: quick never promotes ({field})");
        }
        assert_eq!(after["status"], "idle");
        let status = json(&app.run(&["status", "--app", &app.name, "--json"]));
        assert!(status["apps"][0]["journal"].is_null() && status["apps"][0]["lock"].is_null(), "{status:#}");
    }

    #[test]
    fn sigkill_at_reattach() {
        killed_then_recovered("reattach", "1.1.0", "interrupted");
    }

    #[test]
    fn sigkill_during_deploy_candidate() {
        killed_then_recovered("deploy-candidate+1", "1.1.0", "interrupted");
    }

    #[test]
    fn sigkill_at_check_candidate() {
        killed_then_recovered("check-candidate", "1.1.0", "interrupted");
    }

    #[test]
    fn sigkill_at_undeploy_passed() {
        killed_then_recovered("undeploy-passed", "1.1.0", "passed");
    }

    #[test]
    fn sigkill_at_restore_snapshot_of_a_failed_candidate() {
        killed_then_recovered("restore-snapshot", "1.1.0-unhealthy", "failed");
    }
}

/// Secrets in notification channel URLs (userinfo, query tokens, an ntfy
/// topic) and in health URLs (userinfo) reach no output, report, alert or
/// state file, even when the health check fails and no channel can be
/// reached; and reconcile's state files are the owner's alone.
#[test]
fn secrets_in_urls_never_leave_lkg() {
    let app = CliApp::new("rcsecret");
    assert_eq!(app.update("1.0.0").status.code(), Some(0));
    // A webhook on a port nothing listens on: its delivery fails, and the
    // client's error quotes the URL.
    let hook = format!("http://hookuser:HOOKPASS@127.0.0.1:{}/hook?token=SECRETTOKEN&apikey=APIKEYVALUE", free_port());
    // (The fixture app routes on the exact path, so this URL carries no query.)
    let health = format!("http://user:PASSWORD@127.0.0.1:{}/health", app.port);
    let mut args = app.update_args("1.1.0-unhealthy");
    let at = args.iter().position(|a| a == "--health").unwrap();
    args[at + 1] = health;
    let ntfy = format!("ntfy://ops:NTFYPASS@127.0.0.1:{}/TOPICSECRET?scheme=http", free_port());
    args.extend(["--webhook".to_owned(), hook, "--notify".to_owned(), ntfy, "--stateless".to_owned()]);
    let out = app.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let report = json(&out);
    assert_eq!(report["outcome"], "rolled_back");
    let deliveries = report["alert"]["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 2, "{report:#}");
    assert!(deliveries.iter().all(|d| d["delivered"] == false), "{report:#}");
    assert!(deliveries.iter().any(|d| d["channel"].as_str().unwrap().contains("token=***")), "{report:#}");
    let human = app.run(&["status", "--app", &app.name]);
    let status_json = app.run(&["status", "--app", &app.name, "--json"]);
    let alerts = app.run(&["alerts", "--json"]);
    let mut seen = vec![text(&out.stdout), text(&out.stderr), text(&human.stdout), text(&status_json.stdout)];
    seen.push(text(&alerts.stdout));
    for entry in walk(&app.state()) {
        seen.push(String::from_utf8_lossy(&std::fs::read(&entry).unwrap()).into_owned());
        if entry.to_string_lossy().contains("/reconcile/") || entry.to_string_lossy().contains("/alerts/") {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&entry).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{} is the owner's alone", entry.display());
        }
    }
    for secret in ["HOOKPASS", "SECRETTOKEN", "PASSWORD", "APIKEYVALUE", "NTFYPASS", "TOPICSECRET"] {
        for text in &seen {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
    }
}

/// Every file below `dir`.
fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() && !path.is_symlink() {
            files.extend(walk(&path));
        } else if path.is_file() {
            files.push(path);
        }
    }
    files
}

/// SIGKILL at every step of a recipe-based update, then `recover`: the
/// rollback deploys last-good's own files, kept when 1.0.0 was installed
/// from its tag, never the broken target's. The recipe is a git repository
/// built here: tag 1.0.0 runs `app` (image 1.0.0) and `worker`; the broken
/// tag 1.1.0 runs `app` from image 1.1.0 told to fail its health endpoint,
/// drops `worker` and adds `scribbler`, which overwrites the data marker, so
/// a recover that does not restore the data is seen.
mod recipe_sweep {
    use super::*;

    fn git(repo: &std::path::Path, args: &[&str]) {
        let out = Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(args)
            .env("GIT_AUTHOR_NAME", "lkg test")
            .env("GIT_AUTHOR_EMAIL", "test@lkg.invalid")
            .env("GIT_COMMITTER_NAME", "lkg test")
            .env("GIT_COMMITTER_EMAIL", "test@lkg.invalid")
            .output()
            .expect("run git");
        assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
    }

    fn compose(port: u16, app: &str, services: &str) -> String {
        format!(
            r#"version: "3.8"
services:
  app:
{app}    stop_grace_period: 1s
    ports: [{{target: 8080, published: {port}, protocol: tcp, mode: host}}]
    volumes: [data:/data]
    deploy:
      update_config: {{order: stop-first, failure_action: rollback, monitor: 1s}}
{services}volumes:
  data:
"#
        )
    }

    impl CliApp {
        fn repo(&self) -> PathBuf {
            self.dir.path().join("recipe")
        }

        /// The recipe repository: tags 1.0.0 and the broken 1.1.0; the work
        /// tree moves on to something undeployable.
        fn make_recipe(&self) {
            let busybox = &self.env.busybox_image;
            let repo = self.repo();
            std::fs::create_dir_all(&repo).unwrap();
            git(&repo, &["init", "--quiet"]);
            let v1 = compose(
                self.port,
                "    image: lkg-fixture/app:1.0.0\n",
                &format!(
                    "  worker:\n    image: {busybox}\n    command: [\"sleep\", \"3600\"]\n    stop_grace_period: 1s\n"
                ),
            );
            let v2 = compose(
                self.port,
                "    image: lkg-fixture/app:1.1.0\n    environment: {LKG_APP_HEALTH: fail}\n",
                &format!(
                    "  scribbler:\n    image: {busybox}\n    command: [\"sh\", \"-c\", \"printf scribbled > /data/marker; \
                     exec sleep 3601\"]\n    volumes: [data:/data]\n    stop_grace_period: 1s\n"
                ),
            );
            for (version, text) in [("1.0.0", v1), ("1.1.0", v2)] {
                std::fs::write(repo.join("compose.yml"), text).unwrap();
                git(&repo, &["add", "-A"]);
                git(&repo, &["commit", "--quiet", "-m", version]);
                git(&repo, &["tag", "-a", version, "-m", version]);
            }
            std::fs::write(repo.join("compose.yml"), "services: {broken: {image: nothing}}\n").unwrap();
        }

        fn recipe_args(&self, target: &str) -> Vec<String> {
            let mut args = self.update_args(target);
            let at = args.iter().position(|a| a == "-c").unwrap();
            "--recipe".clone_into(&mut args[at]);
            args[at + 1] = self.repo().display().to_string();
            args
        }

        /// The stack's services (short names), and each one's image and command as swarm runs them.
        fn deployed(&self) -> Vec<String> {
            let names = self.env.docker(&[
                "service",
                "ls",
                "--filter",
                &format!("label=com.docker.stack.namespace={}", self.name),
                "--format",
                "{{.Name}}",
            ]);
            let mut services: Vec<String> = names
                .lines()
                .map(|name| {
                    let spec = self.env.docker(&[
                        "service",
                        "inspect",
                        "--format",
                        "{{.Spec.TaskTemplate.ContainerSpec.Image}} {{json .Spec.TaskTemplate.ContainerSpec.Args}} \
                         {{json .Spec.TaskTemplate.ContainerSpec.Env}}",
                        name,
                    ]);
                    format!("{} {spec}", name.trim_start_matches(&format!("{}_", self.name)))
                })
                .collect();
            services.sort();
            services
        }
    }

    /// Installs 1.0.0 from the recipe with a data marker, kills the update
    /// to the broken 1.1.0 at `at`, then recovers. With `tamper`, a kept file
    /// of last-good is changed first: recover refuses to deploy it, names
    /// it, and deploys nothing; once it is put back, recover finishes.
    fn killed_then_recovered(at: &str, tamper: bool) {
        let app = CliApp::new("rcrkill");
        app.make_recipe();
        let args = app.recipe_args("1.0.0");
        let out = app.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(out.status.code(), Some(0), "install: {}", text(&out.stderr));
        let installed = app.deployed();
        assert_eq!(installed.len(), 2, "{installed:?}");
        assert!(installed[0].starts_with("app lkg-fixture/app:1.0.0 "), "{installed:?}");
        assert!(installed[1].contains(r#"["sleep","3600"]"#), "{installed:?}");
        let put = http_request("PUT", &app.url("/marker"), Some(b"known-good")).unwrap();
        assert_eq!(put.status, 200);

        let args = app.recipe_args("1.1.0");
        let out = app
            .command(&args.iter().map(String::as_str).collect::<Vec<_>>())
            .env("LKG_RECONCILE_KILL_AT", at)
            .output()
            .unwrap();
        assert_eq!(out.status.signal(), Some(9), "killed at {at}: {:?} {}", out.status, text(&out.stderr));
        let journal = app.journal().expect("a killed run leaves its journal");
        let step = at.split('+').next().unwrap();
        assert_eq!(journal["step"], step, "the journal names the step the run was killed in");
        // last-good's record names its kept files, and from `record-last-good` on so does the
        // journal: recover needs neither the tag nor the user's files.
        let status = json(&app.run(&["status", "--app", &app.name, "--json"]));
        let files = status["apps"][0]["last_good"]["files"].clone();
        let kept = PathBuf::from(files["dir"].as_str().expect("last-good's kept files"));
        assert!(kept.starts_with(app.state().join("apps").join(&app.name).join("deployed")), "{}", kept.display());
        if step != "record-last-good" {
            assert_eq!(journal["last_good_files"], files, "killed at {at}");
        }
        git(&app.repo(), &["tag", "-d", "1.0.0"]);
        if matches!(step, "undeploy-failed" | "restore-snapshot") {
            // The broken target ran long enough to change the data: the restore is what brings it back.
            let marker = app.env.on_volume(&format!("{}_data", app.name), &["cat", "/data/marker"]);
            assert_eq!(marker, "scribbled", "killed at {at}");
        }

        if tamper {
            use std::os::unix::fs::PermissionsExt as _;
            let file = kept.join(files["compose"][0].as_str().unwrap());
            let original = std::fs::read(&file).unwrap();
            std::fs::set_permissions(&kept, std::fs::Permissions::from_mode(0o755)).unwrap();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
            std::fs::write(&file, String::from_utf8_lossy(&original).replace("sleep", "false")).unwrap();
            let out = app.run(&["recover", "--app", &app.name, "--json"]);
            assert_eq!(out.status.code(), Some(1), "a tampered kept file fails the rollback: {}", text(&out.stderr));
            let report = json(&out);
            assert_eq!(report["outcome"], "rollback_failed", "{report:#}");
            let detail = report.to_string();
            assert!(detail.contains("has changed") && detail.contains(&file.display().to_string()), "{report:#}");
            assert!(app.deployed().iter().all(|s| !s.contains("false")), "the tampered file was never deployed");
            std::fs::write(&file, &original).unwrap();
        }

        let out = app.run(&["recover", "--app", &app.name, "--json"]);
        assert_eq!(out.status.code(), Some(0), "recover after a kill at {at}: {}", text(&out.stderr));
        let report = json(&out);
        let expected = if step == "record-last-good" { "abandoned" } else { "rolled_back" };
        assert_eq!(report["outcome"], expected, "killed at {at}: {report:#}");
        assert_eq!(app.serving(), "1.0.0", "killed at {at}");
        assert_eq!(app.deployed(), installed, "killed at {at}: 1.0.0's own services, images and commands");
        assert_eq!(app.marker(), "known-good", "killed at {at}: the data is 1.0.0's");
        assert!(app.journal().is_none(), "killed at {at}: recover finished the run");
        let status = json(&app.run(&["status", "--app", &app.name, "--json"]));
        let status = &status["apps"][0];
        assert_eq!(status["last_good"]["version"], "1.0.0");
        assert!(status["lock"].is_null() && status["journal"].is_null(), "{status:#}");
    }

    macro_rules! recipe_sweep {
        ($($name:ident: $at:literal, $tamper:literal;)*) => {$(
            #[test]
            fn $name() {
                killed_then_recovered($at, $tamper);
            }
        )*};
    }

    // Every step of a stateful update to a broken recipe version, killed as it begins.
    recipe_sweep! {
        recipe_sigkill_at_record_last_good: "record-last-good", false;
        recipe_sigkill_at_undeploy: "undeploy", false;
        recipe_sigkill_at_snapshot: "snapshot", false;
        recipe_sigkill_at_deploy_target: "deploy-target", false;
        recipe_sigkill_during_deploy_target: "deploy-target+1.5", false;
        recipe_sigkill_at_check_health: "check-health", false;
        recipe_sigkill_at_undeploy_failed: "undeploy-failed", false;
        recipe_sigkill_at_restore_snapshot: "restore-snapshot", false;
        recipe_sigkill_at_deploy_last_good: "deploy-last-good", true;
        recipe_sigkill_at_verify_last_good: "verify-last-good", false;
        recipe_sigkill_at_alert: "alert", false;
    }
}
