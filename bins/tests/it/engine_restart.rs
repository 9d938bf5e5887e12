//! The Docker engine killed and started again in the middle of real work
//! (`scripts/testenv restart-engine`: dockerd, its containerd and shims are
//! killed with SIGKILL, so the containers die too, as in a host crash; then the engine
//! starts on the same data and swarm starts the tasks again): a stateful
//! update, a snapshot and a restore. Whatever the interrupted run reports
//! must be true, the last-known-good data must survive, and `recover` or the
//! next run finishes the job.
//!
//! Restarting the engine breaks every other test that uses it meanwhile, so
//! these run alone: nextest's default filter leaves them out, and
//! scripts/test runs them in a step of their own (`--profile
//! engine-restart`, one at a time).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use lkg_testkit::{Env, env, http_request, unique_name};

use crate::common::{json, text};
use crate::multi_node::NodeApp;
use crate::reconcile::CliApp;

/// Restarts the test environment's engine; returns how long it was away.
fn restart_engine() -> Duration {
    let started = Instant::now();
    let out = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/testenv"))
        .arg("restart-engine")
        .stdin(Stdio::null())
        .output()
        .expect("run scripts/testenv restart-engine");
    assert!(out.status.success(), "scripts/testenv restart-engine: {}", text(&out.stderr));
    started.elapsed()
}

/// Installs 1.0.0 with a data marker, starts an update to 1.1.0, restarts
/// the engine once the update's journal reaches `step`, and checks what the
/// interrupted run said against what runs; then `recover` (when the run left
/// its journal) ends with the app serving last-good or the target, the data
/// intact, and status agreeing.
fn update_interrupted_at(step: &str) {
    let app = CliApp::new("rcengine");
    let out = app.update("1.0.0");
    assert_eq!(out.status.code(), Some(0), "install: {}", text(&out.stderr));
    let put = http_request("PUT", &app.url("/marker"), Some(b"known-good")).unwrap();
    assert_eq!(put.status, 200);

    let child = app.update_until("1.1.0", step);
    let away = restart_engine();
    let out: Output = child.wait_with_output().unwrap();
    let what =
        format!("engine restarted at {step} (away {away:.1?}): exit {:?}: {}", out.status.code(), text(&out.stderr));

    // What the interrupted run said must be true.
    let report: Option<serde_json::Value> = serde_json::from_slice(&out.stdout).ok();
    match out.status.code() {
        Some(0) => {
            let report = report.expect("exit 0 prints a report");
            assert_eq!(report["outcome"], "upgraded", "{what}: {report:#}");
            assert_eq!(app.serving(), "1.1.0", "{what}: reported upgraded");
            assert!(app.journal().is_none(), "{what}: a finished run leaves no journal");
        }
        Some(1) => {
            // An engine away for seconds is waited for (Reconciler::engine_wait),
            // never taken for a failed rollback.
            let report = report.expect("exit 1 prints a report");
            assert_eq!(report["outcome"], "rolled_back", "{what}: {report:#}");
            assert_eq!(app.serving(), "1.0.0", "{what}: reported rolled back");
        }
        _ => assert!(app.journal().is_some(), "{what}: an unfinished run must leave its journal for recover"),
    }
    if app.journal().is_some() {
        let out = app.run(&["recover", "--app", &app.name, "--json"]);
        assert_eq!(out.status.code(), Some(0), "{what}: recover: {}", text(&out.stderr));
    }
    let serving = app.serving();
    assert!(serving == "1.0.0" || serving == "1.1.0", "{what}: serving {serving}");
    assert_eq!(app.marker(), "known-good", "{what}: the data is intact");
    assert!(app.journal().is_none(), "{what}: the run is finished");
    let status = json(&app.run(&["status", "--app", &app.name, "--json"]));
    let status = &status["apps"][0];
    assert_eq!(status["last_good"]["version"], serving.as_str(), "{what}: {status:#}");
    assert!(status["lock"].is_null() && status["journal"].is_null(), "{what}: {status:#}");
}

#[test]
fn engine_restart_during_the_undeploy_of_a_stateful_update() {
    update_interrupted_at("undeploy");
}

#[test]
fn engine_restart_during_the_deploy_of_the_target() {
    update_interrupted_at("deploy-target");
}

fn snap(state: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lkg-snap"));
    command.arg("--state-dir").arg(state).args(args).envs(env().vars()).stdin(Stdio::null());
    command
}

/// A volume of stack `stack` holding a marker and `mib` MiB of data written
/// straight into its mount point (the tests run beside the engine, as root).
fn volume(env: &Env, stack: &str, marker: &str, mib: usize) -> String {
    let name = format!("{stack}_data");
    env.docker(&["volume", "create", "--label", &format!("com.docker.stack.namespace={stack}"), &name]);
    let mountpoint = env.docker(&["volume", "inspect", "-f", "{{.Mountpoint}}", &name]).trim().to_owned();
    fs_err::write(Path::new(&mountpoint).join("marker"), marker).unwrap();
    let block: Vec<u8> = (0..1 << 20).map(|i: u32| i.wrapping_mul(2_654_435_761).to_le_bytes()[1]).collect();
    let mut big = Vec::with_capacity(mib << 20);
    for _ in 0..mib {
        big.extend_from_slice(&block);
    }
    fs_err::write(Path::new(&mountpoint).join("big.bin"), big).unwrap();
    name
}

fn verified_version(state: &Path, app: &str) -> Option<String> {
    let out = snap(state, &["verify", "--app", app, "--json"]).output().unwrap();
    (out.status.code() == Some(0)).then(|| json(&out)["snapshot"]["meta"]["version"].as_str().unwrap().to_owned())
}

#[test]
fn engine_restart_during_a_take_keeps_the_previous_snapshot() {
    let env = env();
    let state = tempfile::tempdir().unwrap();
    let stack = unique_name("snengine");
    let vol = volume(env, &stack, "first", 1);
    let take = |version: &str| {
        snap(state.path(), &["take", "--app", &stack, "--stack", &stack, "--access", "archive", "--version", version])
    };
    let out = take("1").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    env.docker(&["volume", "rm", &vol]);
    let vol = volume(env, &stack, "second", 512);

    let child = take("2").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(400));
    restart_engine();
    let out = child.wait_with_output().unwrap();
    let what = format!("take interrupted by an engine restart: exit {:?}: {}", out.status.code(), text(&out.stderr));
    match out.status.code() {
        Some(0) => assert_eq!(verified_version(state.path(), &stack).as_deref(), Some("2"), "{what}"),
        Some(5) => assert_eq!(
            verified_version(state.path(), &stack).as_deref(),
            Some("1"),
            "{what}: the previous snapshot stays, and verifies"
        ),
        _ => panic!("{what}: neither done nor the environment"),
    }
    let out = take("2").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "the next take: {}", text(&out.stderr));
    assert_eq!(verified_version(state.path(), &stack).as_deref(), Some("2"));
    env.docker(&["volume", "rm", &vol]);
}

#[test]
fn engine_restart_during_a_restore_keeps_the_snapshot_and_the_next_restore_finishes() {
    let env = env();
    let state = tempfile::tempdir().unwrap();
    let stack = unique_name("snengine");
    let vol = volume(env, &stack, "snapshotted", 512);
    let out = snap(state.path(), &["take", "--app", &stack, "--stack", &stack, "--version", "1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mountpoint = env.docker(&["volume", "inspect", "-f", "{{.Mountpoint}}", &vol]).trim().to_owned();
    fs_err::write(Path::new(&mountpoint).join("marker"), "changed since").unwrap();

    let restore = || snap(state.path(), &["restore", "--app", &stack, "--access", "archive"]);
    let child = restore().stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(400));
    restart_engine();
    let out = child.wait_with_output().unwrap();
    let what = format!("restore interrupted by an engine restart: exit {:?}: {}", out.status.code(), text(&out.stderr));
    // 5: the engine was away before the volume was touched; 4: the volume
    // was half-written, which the error says, with what to do.
    assert!(matches!(out.status.code(), Some(0 | 4 | 5)), "{what}");
    if out.status.code() == Some(4) {
        assert!(text(&out.stderr).contains("run the restore again"), "{what}");
    }
    assert_eq!(verified_version(state.path(), &stack).as_deref(), Some("1"), "{what}: the snapshot is untouched");
    if out.status.code() == Some(0) {
        let mountpoint = env.docker(&["volume", "inspect", "-f", "{{.Mountpoint}}", &vol]).trim().to_owned();
        assert_eq!(fs_err::read_to_string(Path::new(&mountpoint).join("marker")).unwrap(), "snapshotted", "{what}");
    }
    let out = restore().output().unwrap();
    assert_eq!(out.status.code(), Some(0), "the next restore: {}", text(&out.stderr));
    let mountpoint = env.docker(&["volume", "inspect", "-f", "{{.Mountpoint}}", &vol]).trim().to_owned();
    assert_eq!(fs_err::read_to_string(Path::new(&mountpoint).join("marker")).unwrap(), "snapshotted");
    assert_eq!(fs_err::metadata(Path::new(&mountpoint).join("big.bin")).unwrap().len(), 512 << 20);
    env.docker(&["volume", "rm", &vol]);
}

/// The last-known-good's manifest digest, as `lkg-snap show` reads it from
/// the registry store.
fn last_good_location(app: &NodeApp) -> String {
    let out = app.snap(&["show", "--app", &app.name]);
    assert_eq!(out.status.code(), Some(0), "show: {}", text(&out.stderr));
    json(&out)["snapshot"]["location"].as_str().expect("show reports the location").to_owned()
}

/// Waits until lkg's agent job for `app` is on the swarm (its task on the
/// way to the node, or running there).
fn wait_for_agent_job(app: &NodeApp) {
    lkg_testkit::wait_until("lkg's agent job to start", Duration::from_secs(60), Duration::from_millis(50), || {
        (!app.agent_jobs().is_empty()).then_some(())
    });
}

/// Writes `mib` MiB of random data into the app's volume on `node` (beside
/// the app, which keeps running): the agent's job then takes seconds.
fn fill(app: &NodeApp, node: &lkg_testkit::Node, mib: u32) {
    let mount = format!("{}:/data", app.volume());
    let script = format!("dd if=/dev/urandom of=/data/fill bs=1M count={mib} 2>/dev/null");
    node.docker(&["run", "--rm", "-v", &mount, &app.nodes.busybox_image, "sh", "-c", &script]);
}

/// Worker 2 is lost (its engine and containers killed) while lkg's agent
/// snapshots its volume there, and again while a reconcile's snapshot runs
/// there: each run fails and says so, the store's last-known-good stays the
/// previous one, and once the node is back the next take, and `recover`,
/// finish the job with the data intact.
#[test]
fn engine_restart_a_worker_lost_during_an_agent_snapshot_or_a_reconcile_keeps_the_last_known_good() {
    let app = NodeApp::new("mn-lost");
    let worker = app.nodes.node(2);
    app.write_compose(Some(&worker.constraint()));
    let store = app.store_args();
    let with_store: Vec<&str> = store.iter().map(String::as_str).collect();
    app.install_with_data(worker, &with_store);
    let out = app.update(worker, "1.1.0", &with_store);
    assert_eq!(out.status.code(), Some(0), "upgrade: {}", text(&out.stderr));
    app.serving_on(worker, "1.1.0");
    let before = last_good_location(&app);
    fill(&app, worker, 300);

    // 1. During a reconcile's snapshot: the update cannot finish, and the
    // rollback cannot deploy on a lost node either; it never reports success.
    let child = app.update_command(worker, "1.1.0-unhealthy", "20", &with_store).spawn().expect("run lkg-reconcile");
    wait_for_agent_job(&app);
    app.nodes.kill_node(2);
    let out = child.wait_with_output().unwrap();
    let what = format!("exit {:?}: {}\n{}", out.status.code(), text(&out.stderr), text(&out.stdout));
    assert_ne!(out.status.code(), Some(0), "{what}");
    let report: Option<serde_json::Value> = serde_json::from_slice(&out.stdout).ok();
    if let Some(report) = &report {
        assert_ne!(report["outcome"], "upgraded", "{what}");
    }
    assert!(what.contains(&format!("node {}", worker.node_id)), "the error names the lost node: {what}");
    assert_eq!(last_good_location(&app), before, "the store's last-known-good is the previous one: {what}");
    assert!(app.agent_jobs().is_empty(), "the job is removed: {}", app.agent_jobs());

    // The node comes back: `recover` finishes the run (the data was never
    // touched: last-good goes back on it).
    app.nodes.revive();
    let recover = Command::new(env!("CARGO_BIN_EXE_lkg-reconcile"))
        .arg("--state-dir")
        .arg(app.state())
        .args(["recover", "--app", &app.name, "--json"])
        .envs(app.nodes.vars())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(recover.status.code(), Some(0), "{what}\nrecover: {}", text(&recover.stderr));
    app.serving_on(worker, "1.1.0");
    assert_eq!(app.marker(worker), "known-good", "the data is intact");

    // 2. During `lkg-snap take` on the node.
    app.undeploy();
    let child = Command::new(env!("CARGO_BIN_EXE_lkg-snap"))
        .arg("--state-dir")
        .arg(app.state())
        .args(&store)
        .args(["take", "--app", &app.name, "--stack", &app.name, "--node", &worker.node_id, "--json"])
        .envs(app.nodes.vars())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run lkg-snap");
    wait_for_agent_job(&app);
    app.nodes.kill_node(2);
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "an environment failure: {stderr}");
    assert!(stderr.contains(&format!("lkg's agent job on node {}", worker.node_id)), "{stderr}");
    assert_eq!(last_good_location(&app), before, "{stderr}");
    assert!(app.agent_jobs().is_empty(), "{}", app.agent_jobs());

    // Back again: the take is run again and replaces the last-known-good.
    app.nodes.revive();
    let out = app.snap(&["take", "--app", &app.name, "--stack", &app.name, "--node", &worker.node_id]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_ne!(last_good_location(&app), before);
}
