//! YAML built to cost gigabytes or minutes (issue 16, finding 5), given to
//! every entry point that reads YAML: compose files (`lkg-reconcile update
//! -c`, `lkg-swarm deploy -c`), `lkg-reconcile --config` and fleet files.
//! Each is refused as bad input (exit 2) in well under a second, with a
//! line that names the file, under an address-space limit that the
//! unbounded reading it replaces broke (3.9 GB; a 2 GB allocation abort).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::text;

/// Address space each run may use (KiB): far above what a refusal needs,
/// far below what the expanded document would.
const ADDRESS_SPACE_KIB: u32 = 1 << 20;

/// `binary args` under [`ADDRESS_SPACE_KIB`], with how long it took.
fn run(binary: &str, args: &[&str], envs: &[(&str, &str)]) -> (Output, Duration) {
    let started = Instant::now();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {ADDRESS_SPACE_KIB} && exec \"$0\" \"$@\""))
        .arg(binary)
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run under sh");
    (out, started.elapsed())
}

/// The two shapes, as `(name, file)`: 1,000 aliases of a 1 MB string, and
/// 100,000 `[`. `head` starts each document (a key the reader accepts).
fn shapes(dir: &Path, stem: &str, head: &str, list_key: &str) -> Vec<(&'static str, PathBuf)> {
    let aliases = dir.join(format!("{stem}-aliases.yml"));
    let big = "x".repeat(1_000_000);
    let mut text = format!("{head}{list_key}:\n  - &big \"{big}\"\n");
    text.push_str(&"  - *big\n".repeat(1000));
    std::fs::write(&aliases, text).unwrap();
    let deep = dir.join(format!("{stem}-deep.yml"));
    std::fs::write(&deep, format!("{head}{list_key}: {}", "[".repeat(100_000))).unwrap();
    vec![("alias bomb", aliases), ("100k-deep", deep)]
}

fn assert_refused(what: &str, file: &Path, (out, took): (Output, Duration)) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
    assert!(stderr.contains(&*file.file_name().unwrap().to_string_lossy()), "{what}: names the file: {stderr}");
    assert!(stderr.contains("alias bomb") || stderr.contains("`[` and `{`"), "{what}: says which limit: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{what}: one line: {stderr}");
    assert!(took < Duration::from_secs(10), "{what}: took {took:?}");
}

#[cfg(feature = "reconcile")]
#[test]
fn reconcile_refuses_hostile_compose_and_config_files() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();
    let binary = env!("CARGO_BIN_EXE_lkg-reconcile");
    // No engine is asked: the files are refused first.
    let no_engine = [("DOCKER_HOST", "unix:///nonexistent/docker.sock")];
    for (shape, compose) in shapes(dir.path(), "compose", "services:\n  app:\n    image: busybox\n", "x-list") {
        let args = ["--state-dir", state, "update", "--app", "demo", "--stack", "demo", "--stateless"];
        let compose_arg = compose.to_str().unwrap();
        let mut args = args.to_vec();
        args.extend(["-c", compose_arg, "--target", "1.0.0", "--no-task-health"]);
        assert_refused(&format!("update -c, {shape}"), &compose, run(binary, &args, &no_engine));
    }
    std::fs::write(dir.path().join("compose.yml"), "services:\n  app:\n    image: busybox\n").unwrap();
    for (shape, config) in shapes(dir.path(), "config", "app: demo\nstack: demo\ncompose: [compose.yml]\n", "markers") {
        let args = ["--state-dir", state, "update", "--config", config.to_str().unwrap(), "--target", "1.0.0"];
        assert_refused(&format!("update --config, {shape}"), &config, run(binary, &args, &no_engine));
    }
}

#[cfg(feature = "fleet")]
#[test]
fn fleet_refuses_hostile_fleet_files() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let binary = env!("CARGO_BIN_EXE_lkg-fleet");
    for (shape, file) in shapes(dir.path(), "fleet", "version: 1\n", "x-list") {
        let args = ["--state-dir", state.to_str().unwrap(), "plan", "-f", file.to_str().unwrap()];
        assert_refused(&format!("plan -f, {shape}"), &file, run(binary, &args, &[]));
    }
}

#[cfg(feature = "swarm")]
#[test]
fn swarm_deploy_refuses_hostile_compose_files() {
    let dir = tempfile::tempdir().unwrap();
    let binary = env!("CARGO_BIN_EXE_lkg-swarm");
    let stack = lkg_testkit::unique_name("hostile-yaml");
    let docker_host = [("DOCKER_HOST", lkg_testkit::env().docker_host.as_str())];
    for (shape, compose) in shapes(dir.path(), "compose", "services:\n  app:\n    image: busybox\n", "x-list") {
        let args = ["deploy", "--stack", &stack, "-c", compose.to_str().unwrap()];
        assert_refused(&format!("deploy -c, {shape}"), &compose, run(binary, &args, &docker_host));
    }
}
