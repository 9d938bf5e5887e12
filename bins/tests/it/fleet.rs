//! `lkg-fleet` as an operator runs it: rounds over a real swarm with a
//! stateful app from a recipe repository, a stateless app from an image
//! repository and an app that waits for the first; alerts to real loopback
//! receivers; metrics checked by promtool; bad fleet files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lkg_testkit::{App, Behaviour, Env, HttpReceiver, env, free_port, unique_name};

use crate::common::{json, text};

const SECRET_TOKEN: &str = "SECRETTOKENfleet41";
const SECRET_PASSWORD: &str = "PASSWORDfleet73";

fn git(dir: &Path, args: &[&str], date: Option<i64>) {
    let mut command = Command::new("git");
    command
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=lkg", "-c", "user.email=lkg@example.net", "-c", "commit.gpgsign=false"])
        .args(args)
        .stdin(Stdio::null());
    if let Some(date) = date {
        command.env("GIT_COMMITTER_DATE", format!("{date} +0000")).env("GIT_AUTHOR_DATE", format!("{date} +0000"));
    }
    let out = command.output().expect("run git");
    assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
}

fn now() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap()
}

/// A recipe repository whose every tag deploys the fixture app at that version.
fn recipe(dir: &Path, port: u16, stateful: bool) {
    std::fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "-q"], None);
    let volumes = if stateful { "    volumes: [data:/data]\n" } else { "" };
    let top = if stateful { "volumes:\n  data:\n" } else { "" };
    std::fs::write(
        dir.join("compose.yml"),
        format!(
            "version: \"3.8\"\nservices:\n  app:\n    image: lkg-fixture/app:${{LKG_VERSION_TAG}}\n    stop_grace_period: 1s\n    \
             ports: [{{target: 8080, published: {port}, protocol: tcp, mode: host}}]\n{volumes}{top}"
        ),
    )
    .unwrap();
}

fn tag(dir: &Path, version: &str, date: i64) {
    std::fs::write(dir.join("VERSION"), version).unwrap();
    git(dir, &["add", "-A"], None);
    git(dir, &["commit", "-q", "-m", version], Some(date));
    git(dir, &["tag", version], Some(date));
}

struct Fleet {
    env: &'static Env,
    dir: tempfile::TempDir,
    apps: [String; 3],
    registry_repo: String,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for app in &self.apps {
            self.env.remove_stack(app);
        }
    }
}

impl Fleet {
    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn file(&self) -> PathBuf {
        self.dir.path().join("fleet.yml")
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_lkg-fleet"))
            .arg("--state-dir")
            .arg(self.state())
            .args(args)
            .envs(self.env.vars())
            .stdin(Stdio::null())
            .output()
            .expect("run lkg-fleet")
    }

    fn round(&self, extra: &[&str]) -> (Option<i32>, serde_json::Value, Output) {
        let file = self.file().display().to_string();
        let mut args = vec!["run", "-f", &file, "--json"];
        args.extend(extra);
        let out = self.run(&args);
        let doc = json(&out);
        (out.status.code(), doc, out)
    }

    /// Pushes the fixture image of `version` (with `behaviour`) as `registry_repo:version`.
    fn push(&self, version: &str, behaviour: Behaviour) {
        self.push_as(version, behaviour, version);
    }

    /// Pushes the fixture image of `version` (with `behaviour`) as
    /// `registry_repo:tag`; returns its digest in the repository.
    fn push_as(&self, version: &str, behaviour: Behaviour, tag: &str) -> String {
        let local = App::new(version).behaviour(behaviour).import(self.env);
        let remote = format!("{}:{tag}", self.registry_repo);
        self.env.docker(&["tag", &local, &remote]);
        self.env.docker(&["push", "-q", &remote]);
        let digests =
            self.env.docker(&["image", "inspect", "--format", "{{range .RepoDigests}}{{println .}}{{end}}", &local]);
        let prefix = format!("{}@", self.registry_repo);
        digests
            .lines()
            .find_map(|d| d.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no digest of {remote} in {digests}"))
            .to_owned()
    }
}

fn state_of<'a>(doc: &'a serde_json::Value, app: &str) -> &'a serde_json::Value {
    doc["apps"].as_array().unwrap().iter().find(|a| a["app"] == app).unwrap_or_else(|| panic!("{app} in {doc:#}"))
}

fn states(doc: &serde_json::Value) -> Vec<String> {
    doc["apps"].as_array().unwrap().iter().map(|a| format!("{}={}", a["app"], a["state"])).collect()
}

#[test]
#[allow(clippy::too_many_lines, reason = "five rounds of one fleet, read top to bottom")]
fn rounds_install_upgrade_roll_back_hold_and_skip() {
    let env = env();
    for version in ["1.0.0", "1.1.0", "1.1.1", "2.0.0"] {
        App::new(version).import(env);
    }
    let dir = tempfile::tempdir().unwrap();
    let apps = [unique_name("fleet-data"), unique_name("fleet-image"), unique_name("fleet-after")];
    let ports = [free_port(), free_port(), free_port()];
    let fleet = Fleet { env, registry_repo: format!("{}/{}", env.registry_a, apps[1]), dir, apps: apps.clone() };
    let generic = HttpReceiver::start(&[]);
    let ntfy = HttpReceiver::start(&[]);
    let (recipe1, recipe3) = (fleet.dir.path().join("recipe1"), fleet.dir.path().join("recipe3"));
    let old = now() - 7200;
    recipe(&recipe1, ports[0], true);
    tag(&recipe1, "1.0.0", old - 60);
    recipe(&recipe3, ports[2], false);
    tag(&recipe3, "1.0.0", old);
    fleet.push("1.0.0", Behaviour::Healthy);
    std::fs::write(
        fleet.dir.path().join("image.yml"),
        format!(
            "version: \"3.8\"\nservices:\n  app:\n    image: {}:${{LKG_VERSION_TAG}}\n    stop_grace_period: 1s\n    \
             ports: [{{target: 8080, published: {}, protocol: tcp, mode: host}}]\n",
            fleet.registry_repo, ports[1]
        ),
    )
    .unwrap();
    let health = |port: u16| {
        format!(
            "    health: {{http: [{{url: 'http://127.0.0.1:{port}/health'}}], passes: 2, interval: 0.3, deadline: 5}}\n    \
             deploy: {{timeout: 40, resolve_image: never}}\n"
        )
    };
    let write_fleet = |app2_policy: &str| {
        std::fs::write(
            fleet.file(),
            format!(
                "version: 1\nnotify:\n  - 'generic+{}?token={SECRET_TOKEN}'\n  - 'ntfy://fleet:{SECRET_PASSWORD}@127.0.0.1:{}/alerts?scheme=http'\n\
                 apps:\n  - app: {}\n    recipe: recipe1\n    source: recipe\n    stateful: true\n{}    policy: {{allow: minor, cooldown: 1h}}\n\
                 \x20 - app: {}\n    compose: [image.yml]\n    source: {{registry: '{}'}}\n    stateful: false\n{}    policy: {app2_policy}\n\
                 \x20 - app: {}\n    recipe: recipe3\n    source: recipe\n    stateful: false\n{}    policy: {{allow: minor, after: [{}]}}\n",
                generic.url("/hook"),
                ntfy.port(),
                apps[0],
                health(ports[0]),
                apps[1],
                fleet.registry_repo,
                health(ports[1]),
                apps[2],
                health(ports[2]),
                apps[0],
            ),
        )
        .unwrap();
    };
    write_fleet("{allow: patch}");
    let mut outputs: Vec<Output> = Vec::new();

    // Plan touches nothing and says what round 1 will do.
    let file = fleet.file().display().to_string();
    let plan = fleet.run(&["plan", "-f", &file, "--json"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan.stderr));
    let doc = json(&plan);
    assert_eq!(state_of(&doc, &apps[0])["decision"]["action"], "install", "{doc:#}");
    assert!(env.try_docker(&["stack", "ps", &apps[0]]).stdout.is_empty(), "plan deployed something");
    outputs.push(plan);

    // Round 1: everything installs.
    let (code, doc, out) = fleet.round(&[]);
    assert_eq!(code, Some(0), "{:?}\n{}", states(&doc), text(&out.stderr));
    for app in &apps {
        assert_eq!(state_of(&doc, app)["state"], "installed", "{:?}", states(&doc));
    }
    outputs.push(out);

    // New versions: a minor for app 1, a broken patch for app 2, a major for app 3.
    tag(&recipe1, "1.1.0", old);
    fleet.push("1.0.1", Behaviour::Unhealthy);
    tag(&recipe3, "2.0.0", old);
    // The stateful app's snapshot goes to a registry this round.
    let store = format!("oci://{}/lkg/{}", env.registry_a, apps[0]);
    let (code, doc, out) = fleet.round(&["--store", &store]);
    assert_eq!(code, Some(1), "{:?}\n{}", states(&doc), text(&out.stderr));
    assert_eq!(state_of(&doc, &apps[0])["state"], "upgraded", "{:?}", states(&doc));
    assert_eq!(state_of(&doc, &apps[0])["running"], "1.1.0");
    let tags = lkg_testkit::http_get(&format!("http://{}/v2/lkg/{}/tags/list", env.registry_a, apps[0])).unwrap();
    assert!(tags.body.contains(&format!("\"{}-last-good\"", apps[0])), "{}", tags.body);
    assert!(!fleet.state().join("apps").join(&apps[0]).join("snapshot").exists(), "the snapshot is not local");
    assert_eq!(state_of(&doc, &apps[1])["state"], "rolled_back", "{:?}", states(&doc));
    assert_eq!(state_of(&doc, &apps[1])["running"], "1.0.0");
    assert_eq!(state_of(&doc, &apps[2])["state"], "held", "{:?}", states(&doc));
    assert_eq!(state_of(&doc, &apps[2])["running"], "1.0.0");
    outputs.push(out);
    // The rollback and the hold reached both channels.
    let alerts: Vec<serde_json::Value> = generic.accepted().iter().map(lkg_testkit::ReceivedRequest::json).collect();
    assert!(alerts.iter().any(|a| a["kind"] == "rollback" && a["app"] == apps[1].as_str()), "{alerts:#?}");
    assert!(alerts.iter().any(|a| a["kind"] == "held-major" && a["app"] == apps[2].as_str()), "{alerts:#?}");
    assert!(alerts.iter().any(|a| a["outcome"] == "failed" && a["apps"].is_array()), "no round summary: {alerts:#?}");
    let pushed: Vec<String> =
        ntfy.accepted().iter().map(|r| format!("{} {}", r.header("title").unwrap_or_default(), r.text())).collect();
    assert!(pushed.iter().any(|m| m.contains(apps[1].as_str()) && m.contains("1.0.1")), "{pushed:#?}");
    assert!(pushed.iter().any(|m| m.contains(apps[2].as_str()) && m.contains("2.0.0")), "{pushed:#?}");

    // Round 3: the broken version is not retried, the major stays held, a
    // new version inside its cooldown waits.
    tag(&recipe1, "1.1.1", now());
    let alerts_before = generic.accepted().len();
    let (code, doc, out) = fleet.round(&[]);
    assert_eq!(code, Some(3), "{:?}\n{}", states(&doc), text(&out.stderr));
    assert_eq!(state_of(&doc, &apps[0])["state"], "waiting", "{:?}", states(&doc));
    assert!(state_of(&doc, &apps[0])["reason"].as_str().unwrap().contains("cooldown"), "{doc:#}");
    assert_eq!(state_of(&doc, &apps[1])["state"], "rolled_back");
    assert!(state_of(&doc, &apps[1]).get("report").is_none(), "the broken version ran again: {doc:#}");
    assert_eq!(state_of(&doc, &apps[2])["state"], "held");
    assert!(state_of(&doc, &apps[2]).get("report").is_none(), "the held major was sent again: {doc:#}");
    assert_eq!(generic.accepted().len(), alerts_before, "nothing changed, yet something was sent");
    outputs.push(out);

    // Round 4: a newer patch of app 2 appears and is taken.
    fleet.push("1.0.2", Behaviour::Healthy);
    let (code, doc, out) = fleet.round(&[]);
    assert_eq!(code, Some(3), "{:?}\n{}", states(&doc), text(&out.stderr));
    assert_eq!(state_of(&doc, &apps[1])["state"], "upgraded", "{:?}", states(&doc));
    assert_eq!(state_of(&doc, &apps[1])["running"], "1.0.2");
    outputs.push(out);

    // Round 5: app 1 locked by another process (its dependent is skipped),
    // app 2 outside its maintenance window; metrics for promtool.
    fleet.push("1.0.3", Behaviour::Healthy);
    let hour = (now().rem_euclid(86_400) / 3600 + 3) % 24;
    write_fleet(&format!("{{allow: patch, window: 'Mon-Sun {hour:02}:00-{hour:02}:30 UTC'}}"));
    let mut holder = Command::new(env!("CARGO_BIN_EXE_lkg-canonical"))
        .arg("--state-dir")
        .arg(fleet.state())
        .args(["lock", &apps[0], "--", "sleep", "20"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    lkg_testkit::wait_until("the lock to be held", Duration::from_secs(10), Duration::from_millis(50), || {
        let status = fleet.run(&["status", "-f", &file, "--json"]);
        let doc: serde_json::Value = serde_json::from_slice(&status.stdout).ok()?;
        state_of(&doc, &apps[0])["state"].as_str()?.starts_with("locked").then_some(())
    });
    let metrics = fleet.dir.path().join("metrics.prom");
    let metrics_arg = metrics.display().to_string();
    let (code, doc, out) = fleet.round(&["--metrics-file", &metrics_arg]);
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(code, Some(4), "{:?}\n{}", states(&doc), text(&out.stderr));
    assert_eq!(state_of(&doc, &apps[0])["state"], "locked", "{:?}", states(&doc));
    assert_eq!(state_of(&doc, &apps[2])["state"], "skipped", "{:?}", states(&doc));
    assert!(state_of(&doc, &apps[2])["reason"].as_str().unwrap().contains(apps[0].as_str()), "{doc:#}");
    assert_eq!(state_of(&doc, &apps[1])["state"], "waiting", "{:?}", states(&doc));
    assert!(state_of(&doc, &apps[1])["reason"].as_str().unwrap().contains("maintenance window"), "{doc:#}");
    outputs.push(out);

    let exposition = std::fs::read_to_string(&metrics).unwrap();
    let checked = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&metrics).unwrap())
        .output()
        .expect("promtool (Debian package prometheus; scripts/testenv installs it)");
    assert!(checked.status.success(), "promtool: {}{}\n{exposition}", text(&checked.stdout), text(&checked.stderr));
    let info = format!("lkg_fleet_app_info{{app=\"{}\",running=\"1.0.2\",newest=\"1.0.3\"}} 1", apps[1]);
    assert!(exposition.contains(&info), "{exposition}");
    assert!(exposition.contains(&format!("lkg_fleet_app_rollbacks_total{{app=\"{}\"}} 1", apps[1])), "{exposition}");
    assert!(exposition.contains(&format!("lkg_fleet_app_holds_total{{app=\"{}\"}} 1", apps[2])), "{exposition}");

    // status: the fleet at a glance.
    let status = fleet.run(&["status", "-f", &file, "--json"]);
    let doc = json(&status);
    assert_eq!(state_of(&doc, &apps[2])["state"], "skipped");
    assert_eq!(state_of(&doc, &apps[2])["held"], serde_json::json!(["2.0.0"]));
    assert_eq!(state_of(&doc, &apps[1])["rolled_back"], serde_json::json!(["1.0.1"]));
    outputs.push(status);
    let retry = fleet.run(&["retry", "-f", &file, &apps[1], "--json"]);
    assert_eq!(json(&retry)["forgot_rolled_back"], serde_json::json!(["1.0.1"]));
    outputs.push(retry);

    // No secret from any channel URL anywhere.
    let mut seen = String::new();
    for out in &outputs {
        seen.push_str(&text(&out.stdout));
        seen.push_str(&text(&out.stderr));
    }
    seen.push_str(&exposition);
    for entry in walk(&fleet.state()) {
        seen.push_str(&String::from_utf8_lossy(&std::fs::read(entry).unwrap()));
    }
    for received in generic.accepted().iter().chain(ntfy.accepted().iter()) {
        seen.push_str(&received.text());
    }
    assert!(!seen.contains(SECRET_TOKEN) && !seen.contains(SECRET_PASSWORD), "a secret leaked");
}

#[test]
fn watch_rounds_stop_cleanly_and_a_killed_round_is_finished_by_the_next() {
    let env = env();
    for version in ["1.0.0", "1.0.1", "1.0.2"] {
        App::new(version).import(env);
    }
    let dir = tempfile::tempdir().unwrap();
    let app = unique_name("fleet-watch");
    let port = free_port();
    let fleet = Fleet {
        env,
        registry_repo: String::new(),
        dir,
        apps: [app.clone(), unique_name("unused"), unique_name("unused")],
    };
    let repo = fleet.dir.path().join("recipe");
    recipe(&repo, port, false);
    tag(&repo, "1.0.0", now() - 60);
    std::fs::write(
        fleet.file(),
        format!(
            "version: 1\napps:\n  - app: {app}\n    recipe: recipe\n    source: recipe\n    stateful: false\n    \
             health: {{http: [{{url: 'http://127.0.0.1:{port}/health'}}], passes: 3, interval: 1, deadline: 20}}\n    \
             deploy: {{timeout: 40, resolve_image: never}}\n"
        ),
    )
    .unwrap();
    let file = fleet.file().display().to_string();
    let journal = fleet.state().join("apps").join(&app).join("reconcile/journal.json");
    let start = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_lkg-fleet"))
            .arg("--state-dir")
            .arg(fleet.state())
            .args(args)
            .envs(env.vars())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let running = || {
        let doc = json(&fleet.run(&["status", "-f", &file, "--json"]));
        (state_of(&doc, &app)["last_good"].as_str().map(str::to_owned), journal.exists())
    };

    // Three rounds a second apart: the first installs, the others find nothing to do.
    let out = start(&["watch", "-f", &file, "--interval", "1s", "--rounds", "3"]).wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).matches("round: ok").count(), 3, "{}", text(&out.stdout));
    assert_eq!(running(), (Some("1.0.0".to_owned()), false));

    // SIGTERM while an update runs: it finishes, then watch exits 0.
    tag(&repo, "1.0.1", now() - 60);
    let listen = format!("127.0.0.1:{}", free_port());
    let child = start(&["watch", "-f", &file, "--interval", "1h", "--listen", &listen]);
    lkg_testkit::wait_until("the update to start", Duration::from_secs(30), Duration::from_millis(20), || {
        journal.exists().then_some(())
    });
    let healthz = lkg_testkit::http_get(&format!("http://{listen}/healthz")).expect("GET /healthz");
    assert_eq!((healthz.status, healthz.body.as_str()), (200, "ok\n"));
    let metrics = lkg_testkit::http_get(&format!("http://{listen}/metrics")).expect("GET /metrics");
    let info = format!("lkg_fleet_app_info{{app=\"{app}\",running=\"1.0.0\",newest=\"1.0.0\"}} 1");
    assert!(metrics.status == 200 && metrics.body.contains(&info), "{}", metrics.body);
    // A request head that arrives in pieces is read whole before the answer
    // (answering after the first piece reset the client: "broken pipe").
    {
        use std::io::{Read as _, Write as _};
        let mut stream = std::net::TcpStream::connect(&listen).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        for piece in [&b"GET /healthz HTTP/1.1\r\n"[..], b"Host: lkg\r\n", b"User-Agent: test\r\n\r\n"] {
            stream.write_all(piece).expect("the server still reads the head");
            std::thread::sleep(Duration::from_millis(300));
        }
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok\n"), "{answer}");
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("stopping"), "{}", text(&out.stderr));
    assert_eq!(running(), (Some("1.0.1".to_owned()), false), "SIGTERM left the update unfinished");

    // kill -9 in the middle of an update: the next round finishes it through the journal.
    tag(&repo, "1.0.2", now() - 60);
    let mut child = start(&["run", "-f", &file]);
    lkg_testkit::wait_until("the update to start", Duration::from_secs(30), Duration::from_millis(20), || {
        journal.exists().then_some(())
    });
    std::thread::sleep(Duration::from_millis(1500));
    child.kill().unwrap();
    let _ = child.wait();
    assert!(journal.exists(), "the killed run left no journal");
    let (code, doc, out) = fleet.round(&[]);
    assert_eq!(code, Some(0), "{:?}\n{}", states(&doc), text(&out.stderr));
    assert!(state_of(&doc, &app)["recovered"].is_object(), "{doc:#}");
    assert_eq!(state_of(&doc, &app)["running"], "1.0.2", "{doc:#}");
    assert_eq!(running(), (Some("1.0.2".to_owned()), false));
}

#[test]
#[allow(clippy::too_many_lines, reason = "six rounds of one floating tag, read top to bottom")]
fn a_floating_tag_is_deployed_pinned_by_digest_and_followed_when_it_moves() {
    let env = env();
    let dir = tempfile::tempdir().unwrap();
    let app = unique_name("fleet-float");
    let port = free_port();
    let fleet = Fleet {
        env,
        registry_repo: format!("{}/{app}", env.registry_a),
        dir,
        apps: [app.clone(), unique_name("unused"), unique_name("unused")],
    };
    let repo = fleet.registry_repo.clone();
    let d1 = fleet.push_as("1.0.0", Behaviour::Healthy, "latest");
    std::fs::write(
        fleet.dir.path().join("compose.yml"),
        format!(
            "version: \"3.8\"\nservices:\n  app:\n    image: {repo}@${{LKG_DIGEST}}\n    stop_grace_period: 1s\n    \
             ports: [{{target: 8080, published: {port}, protocol: tcp, mode: host}}]\n"
        ),
    )
    .unwrap();
    let write_fleet = |policy: &str| {
        std::fs::write(
            fleet.file(),
            format!(
                "version: 1\napps:\n  - app: {app}\n    compose: [compose.yml]\n    stateful: false\n    \
                 source: {{registry: '{repo}', floating: latest}}\n    \
                 health: {{http: [{{url: 'http://127.0.0.1:{port}/health'}}], passes: 2, interval: 0.3, deadline: 5}}\n    \
                 deploy: {{timeout: 40, resolve_image: never}}\n    policy: {policy}\n"
            ),
        )
        .unwrap();
    };
    let file = fleet.file().display().to_string();
    let pinned = |digest: &str| format!("latest@{digest}");
    let service_image = || {
        env.docker(&[
            "service",
            "inspect",
            "--format",
            "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
            &format!("{app}_app"),
        ])
    };
    let round = |expect: Option<i32>, state: &str| {
        let (code, doc, out) = fleet.round(&[]);
        assert_eq!(code, expect, "{:?}\n{}", states(&doc), text(&out.stderr));
        let app_doc = state_of(&doc, &app).clone();
        assert_eq!(app_doc["state"], state, "{app_doc:#}");
        app_doc
    };

    // A cooldown reads the image's `created`: the image was just pushed, so it waits.
    write_fleet("{allow: patch, cooldown: 1d}");
    let plan = fleet.run(&["plan", "-f", &file, "--json"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan.stderr));
    let doc = state_of(&json(&plan), &app).clone();
    assert_eq!(
        (doc["decision"]["action"].as_str(), doc["newest"].as_str()),
        (Some("wait"), Some(pinned(&d1).as_str()))
    );
    assert!(doc["published"].is_string() && doc["reason"].as_str().unwrap().contains("cooldown"), "{doc:#}");
    write_fleet("{allow: patch}");
    let human = text(&fleet.run(&["plan", "-f", &file]).stdout);
    assert!(human.contains(&format!("would install latest@{}", &d1[..19])) && !human.contains(&d1), "{human}");

    // Round 1 installs the digest the tag points to, pinned.
    let doc = round(Some(0), "installed");
    assert_eq!(doc["running"], pinned(&d1), "{doc:#}");
    assert_eq!(service_image(), format!("{repo}@{d1}"));

    // The tag is rebuilt and pushed again: round 2 upgrades to the new digest.
    let d2 = fleet.push_as("1.0.1", Behaviour::Healthy, "latest");
    assert_ne!(d1, d2);
    let doc = round(Some(0), "upgraded");
    assert_eq!(doc["decision"]["level"], "digest", "{doc:#}");
    assert_eq!(doc["running"], pinned(&d2), "{doc:#}");
    assert_eq!(service_image(), format!("{repo}@{d2}"));

    // Nothing moved: nothing runs.
    let doc = round(Some(0), "up_to_date");
    assert!(doc.get("report").is_none(), "an unchanged tag ran an update: {doc:#}");

    // A broken rebuild rolls back to the previous digest (last-good)...
    let d3 = fleet.push_as("1.0.2", Behaviour::Unhealthy, "latest");
    let doc = round(Some(1), "rolled_back");
    assert_eq!(doc["running"], pinned(&d2), "{doc:#}");
    assert_eq!(service_image(), format!("{repo}@{d2}"));
    // ... and is not retried while the tag still points to it.
    let doc = round(Some(0), "rolled_back");
    assert!(doc.get("report").is_none(), "the broken digest ran again: {doc:#}");
    assert_eq!(service_image(), format!("{repo}@{d2}"));

    // The tag moves again: the new digest is taken.
    let d4 = fleet.push_as("1.0.3", Behaviour::Healthy, "latest");
    let doc = round(Some(0), "upgraded");
    assert_eq!(doc["running"], pinned(&d4), "{doc:#}");
    assert_eq!(service_image(), format!("{repo}@{d4}"));

    let status = json(&fleet.run(&["status", "-f", &file, "--json"]));
    let doc = state_of(&status, &app);
    assert_eq!(
        (&doc["last_good"], &doc["rolled_back"]),
        (&serde_json::json!(pinned(&d4)), &serde_json::json!([pinned(&d3)]))
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            files.extend(walk(&path));
        } else if kind.is_file() {
            files.push(path);
        }
    }
    files
}

#[test]
fn bad_fleet_files_name_file_line_and_key_and_touch_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let app = "  - app: shop\n    recipe: /nonexistent/recipe\n    source: recipe\n";
    for (name, body, expect) in [
        ("unknown-key", format!("version: 1\napps:\n{app}    polcy: {{}}\n"), "line 6"),
        ("missing-source", "version: 1\napps:\n  - app: shop\n    recipe: /r\n".to_owned(), "no source"),
        ("bad-scheme", format!("version: 1\nnotify: ['gopher://h/x']\napps:\n{app}"), "line 2"),
        ("duplicate", format!("version: 1\napps:\n{app}{app}"), "listed twice"),
        (
            "cycle",
            "version: 1\napps:\n  - {app: a, recipe: /r, source: recipe, policy: {after: [b]}}\n  \
             - {app: b, recipe: /r, source: recipe, policy: {after: [a]}}\n"
                .to_owned(),
            "cycle",
        ),
    ] {
        let path = dir.path().join(format!("{name}.yml"));
        std::fs::write(&path, body).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_lkg-fleet"))
            .arg("--state-dir")
            .arg(&state)
            .args(["run", "-f"])
            .arg(&path)
            .env("DOCKER_HOST", "unix:///nonexistent.sock")
            .output()
            .unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(stderr.contains(&format!("{name}.yml")) && stderr.contains(expect), "{name}: {stderr}");
        assert!(out.stdout.is_empty(), "{name}");
    }
    assert!(!state.exists(), "a rejected fleet file touched the state directory");
}

/// An image holding lkg's own `lkg-fleet` binary (with the shared libraries
/// it links, as `ldd` lists them) and the static `docker` CLI, imported into
/// the test engine; returns its name.
fn fleet_image(env: &Env, dir: &Path) -> String {
    let root = dir.join("image-root");
    let put = |from: &Path, to: &str| {
        let dest = root.join(to.trim_start_matches('/'));
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(from, &dest).unwrap_or_else(|e| panic!("copy {} into the image: {e}", from.display()));
    };
    let binary = Path::new(env!("CARGO_BIN_EXE_lkg-fleet"));
    put(binary, "/usr/local/bin/lkg-fleet");
    let ldd = Command::new("ldd").arg(binary).output().expect("ldd is installed");
    for line in text(&ldd.stdout).lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
        let path = line.split("=>").last().unwrap_or_default().trim().split(" (").next().unwrap_or_default();
        if path.starts_with('/') {
            put(Path::new(path), path);
        }
    }
    let docker = Command::new("sh").args(["-c", "command -v docker"]).output().unwrap();
    put(Path::new(text(&docker.stdout).trim()), "/usr/bin/docker");
    // Certificate authorities, as every image with a TLS client has them
    // (docker:cli's ca-certificates): lkg's HTTP clients load them at start.
    put(Path::new("/etc/ssl/certs/ca-certificates.crt"), "/etc/ssl/certs/ca-certificates.crt");
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    let tar = dir.join("image.tar");
    let out = Command::new("tar").arg("-C").arg(&root).arg("-cf").arg(&tar).arg(".").output().unwrap();
    assert!(out.status.success(), "tar: {}", text(&out.stderr));
    let name = format!("{}:test", unique_name("fleet-image"));
    env.docker(&[
        "import",
        "--change",
        "ENV PATH=/usr/local/bin:/usr/bin:/bin",
        "--change",
        "ENV HOME=/tmp",
        &tar.display().to_string(),
        &name,
    ]);
    name
}

#[test]
#[allow(clippy::too_many_lines, reason = "one service's life, read top to bottom")]
fn watch_runs_as_a_swarm_service_and_keeps_an_app_up_to_date() {
    // docs/fleet.md, "As a swarm service on a manager": lkg-fleet watch in a
    // container of lkg's own binary, the engine's socket and a state
    // directory mounted, placed on a manager. It installs an app by itself,
    // upgrades it when a new tag appears, and stops cleanly with the service.
    let env = env();
    let dir = tempfile::tempdir().unwrap();
    let app = unique_name("fleet-svc-app");
    let service_stack = unique_name("fleet-svc");
    let fleet = Fleet {
        env,
        registry_repo: format!("{}/{app}", env.registry_a),
        dir,
        apps: [app.clone(), service_stack.clone(), unique_name("unused")],
    };
    let image = fleet_image(env, fleet.dir.path());
    fleet.push("1.0.0", Behaviour::Healthy);
    let (app_port, listen_port) = (free_port(), free_port());
    let base = fleet.dir.path().display().to_string();
    std::fs::write(
        fleet.dir.path().join("app.yml"),
        format!(
            "version: \"3.8\"\nservices:\n  app:\n    image: {}:${{LKG_VERSION_TAG}}\n    stop_grace_period: 1s\n    \
             ports: [{{target: 8080, published: {app_port}, protocol: tcp, mode: host}}]\n",
            fleet.registry_repo
        ),
    )
    .unwrap();
    std::fs::write(
        fleet.file(),
        format!(
            "version: 1\napps:\n  - app: {app}\n    compose: [app.yml]\n    source: {{registry: '{}'}}\n    stateful: false\n    \
             health: {{http: [{{url: 'http://127.0.0.1:{app_port}/health'}}], passes: 2, interval: 0.5, deadline: 20}}\n    \
             deploy: {{timeout: 60, resolve_image: never}}\n",
            fleet.registry_repo
        ),
    )
    .unwrap();
    let state = fleet.state();
    std::fs::create_dir_all(&state).unwrap();
    let socket = env.socket_path().expect("the test engine listens on a unix socket");
    // The documented service, with the test's image, paths and a short interval;
    // on the host's network so that health checks reach the app's published port.
    let service = format!(
        "version: \"3.8\"\nservices:\n  fleet:\n    image: {image}\n    \
         command: [\"lkg-fleet\", \"watch\", \"-f\", \"{base}/fleet.yml\", \"--interval\", \"2s\", \"--listen\", \"127.0.0.1:{listen_port}\"]\n    \
         environment: {{LKG_STATE_DIR: /var/lib/lkg}}\n    \
         volumes:\n      - {socket}:/var/run/docker.sock\n      - {state}:/var/lib/lkg\n      - {base}:{base}:ro\n    \
         stop_grace_period: 1m\n    networks: [hostnet]\n    \
         deploy:\n      placement: {{constraints: [node.role == manager]}}\n      restart_policy: {{condition: on-failure}}\n\
         networks:\n  hostnet: {{external: true, name: host}}\n",
        socket = socket.display(),
        state = state.display(),
    );
    let service_file = fleet.dir.path().join("lkg-fleet.yml");
    std::fs::write(&service_file, service).unwrap();
    env.docker(&[
        "stack",
        "deploy",
        "--resolve-image",
        "never",
        "--detach=true",
        "-c",
        &service_file.display().to_string(),
        &service_stack,
    ]);
    let file = fleet.file().display().to_string();
    let last_good = || {
        let out = fleet.run(&["status", "-f", &file, "--json"]);
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        doc["apps"].as_array()?.iter().find(|a| a["app"] == app.as_str())?["last_good"].as_str().map(str::to_owned)
    };
    let logs = || {
        let name = format!("{service_stack}_fleet");
        let tasks = env.try_docker(&["service", "ps", "--no-trunc", "--format", "{{.CurrentState}} {{.Error}}", &name]);
        let logs = env.try_docker(&["service", "logs", "--raw", &name]);
        format!("tasks:\n{}\n{}{}", text(&tasks.stdout), text(&logs.stdout), text(&logs.stderr))
    };

    // The service installs the app by itself.
    let installed = poll(Duration::from_secs(120), Duration::from_millis(500), || last_good().filter(|v| v == "1.0.0"));
    assert!(installed.is_some(), "the fleet service did not install the app; its logs:\n{}", logs());
    let served = lkg_testkit::http_get(&format!("http://127.0.0.1:{app_port}/health")).expect("the app answers");
    assert_eq!(served.status, 200);

    // A new patch appears in the registry: the next round upgrades the app.
    fleet.push("1.0.1", Behaviour::Healthy);
    let upgraded = poll(Duration::from_secs(120), Duration::from_millis(500), || last_good().filter(|v| v == "1.0.1"));
    assert!(upgraded.is_some(), "the fleet service did not upgrade the app; its logs:\n{}", logs());
    let label = env.docker(&[
        "service",
        "inspect",
        "-f",
        &format!("{{{{index .Spec.Labels \"coop-cloud.{app}.version\"}}}}"),
        &format!("{app}_app"),
    ]);
    assert_eq!(label.trim(), "1.0.1", "the app's stack is not stamped with the new version");
    let healthz = lkg_testkit::http_get(&format!("http://127.0.0.1:{listen_port}/healthz")).expect("GET /healthz");
    assert_eq!((healthz.status, healthz.body.as_str()), (200, "ok\n"));

    // Scaling the service to zero stops watch with SIGTERM: it exits 0 between rounds.
    // Its exit code and output are followed from before the scale: swarm removes
    // the task, and with it the container and its logs, soon after it stops.
    let name = format!("{service_stack}_fleet");
    let label = format!("label=com.docker.swarm.service.name={name}");
    let container = env.docker(&["ps", "--filter", &label, "--format", "{{.ID}}"]).trim().to_owned();
    assert!(!container.is_empty() && !container.contains('\n'), "one running fleet container: {container:?}");
    // Into files, not pipes: nothing blocks however much watch printed.
    let out_dir = tempfile::tempdir().unwrap();
    let follow = |args: &[&str], into: &str| {
        let file = std::fs::File::create(out_dir.path().join(into)).unwrap();
        env.docker_command().args(args).arg(&container).stdout(file.try_clone().unwrap()).stderr(file).spawn().unwrap()
    };
    let (mut waiter, mut follower) = (follow(&["wait"], "exit"), follow(&["logs", "--follow"], "logs"));
    env.docker(&["service", "scale", "--detach=true", &format!("{name}=0")]);
    for (child, what) in [(&mut waiter, "the fleet container did not stop"), (&mut follower, "its logs did not end")] {
        if poll(Duration::from_secs(60), Duration::from_millis(300), || child.try_wait().unwrap()).is_none() {
            let _ = child.kill();
            panic!("{what}; its logs:\n{}", logs());
        }
    }
    let read = |name: &str| std::fs::read_to_string(out_dir.path().join(name)).unwrap();
    let (exit_code, said) = (read("exit").trim().to_owned(), read("logs"));
    assert_eq!(exit_code, "0", "watch did not exit cleanly:\n{said}");
    assert!(said.contains("stopping"), "watch did not say it was stopping:\n{said}");
    env.remove_stack(&service_stack);
    let _ = env.try_docker(&["image", "rm", &image]);
}

/// Polls `probe` every `interval` for at most `timeout`: its first `Some`,
/// or `None` when time runs out (so the caller can show logs).
fn poll<T>(timeout: Duration, interval: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let start = std::time::Instant::now();
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if start.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(interval);
    }
}
