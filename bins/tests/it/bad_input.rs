//! Bad input to every binary (issue 16): each file a binary reads, given
//! as an empty file, truncated or mistyped JSON, YAML garbage, a directory,
//! non-UTF-8 bytes, 100 MB of garbage, or 100,000 levels of nesting; and
//! hostile app names and versions. Each run exits with its documented
//! code for bad input (2, or what the binary documents for that file) with
//! a clear `<binary>: error:` line, never 0, never a panic or an abort,
//! and the state directory is byte-identical afterwards.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use lkg_testkit::env;

use crate::common::text;

/// The shapes of bad file every binary is given.
fn shapes(dir: &Path) -> Vec<(&'static str, PathBuf)> {
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let garbage: Vec<u8> = (0..100u32 << 20).map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes()[2]).collect();
    let directory = dir.join("a-directory");
    std::fs::create_dir_all(&directory).unwrap();
    vec![
        ("empty", write("empty", b"")),
        ("truncated JSON", write("truncated.json", br#"{"version": 1, "inputs": {"base_image": {"pinned": "#)),
        ("mistyped JSON", write("mistyped.json", br#"{"version": "one", "inputs": [], "apps": 7}"#)),
        ("YAML garbage", write("garbage.yml", b": : :\n- [\n  {version: }\n\t- x")),
        ("a directory", directory),
        ("non-UTF-8", write("latin1", b"version: 1\napps:\n  - app: caf\xe9\n\xff\xfe\n")),
        ("100 MB of garbage", write("garbage.bin", &garbage)),
        ("100k-deep JSON", write("deep.json", &b"[".repeat(100_000))),
        ("100k-deep YAML", write("deep.yml", format!("a: {}", "[".repeat(100_000)).as_bytes())),
    ]
}

/// Every file and its content under `dir`.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut found = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return found };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.insert(path.clone(), Vec::new());
            found.extend(tree(&path));
        } else {
            found.insert(path.clone(), std::fs::read(&path).unwrap_or_default());
        }
    }
    found
}

/// One binary, arguments with `{}` for the bad file, and the exit codes its
/// docs promise for a bad file of this kind.
struct Target {
    binary: &'static str,
    args: Vec<String>,
    codes: &'static [i32],
}

fn target(binary: &'static str, args: &[&str], codes: &'static [i32]) -> Target {
    Target { binary, args: args.iter().map(|a| (*a).to_owned()).collect(), codes }
}

fn check(target: &Target, state: &Path, file: &Path, what: &str) {
    let before = tree(state);
    let file = file.display().to_string();
    let args: Vec<String> = target.args.iter().map(|a| a.replace("{}", &file)).collect();
    let out = Command::new(target.binary)
        .arg("--state-dir")
        .arg(state)
        .args(&args)
        .envs(env().vars())
        .stdin(Stdio::null())
        .output()
        .expect("run an lkg binary");
    let name = Path::new(target.binary).file_name().unwrap().to_string_lossy().into_owned();
    let stderr = text(&out.stderr);
    let shown = format!("{name} {} ({what}): exit {:?}\n{}", args.join(" "), out.status.code(), stderr);
    let code = out.status.code().unwrap_or_else(|| panic!("killed by a signal: {shown}"));
    assert!(target.codes.contains(&code), "expected one of {:?}: {shown}", target.codes);
    if code == 1 {
        // A verdict (check-lock's problems, no kernel found): a report says what is wrong.
        assert!(!out.stdout.is_empty() || !stderr.is_empty(), "exit 1 without a word: {shown}");
    } else {
        // lkg's own error line, or clap's for an argument it cannot take (`--app -x`).
        let clear = stderr.starts_with(&format!("{name}: error:")) || stderr.starts_with("error:");
        assert!(clear, "no clear error line: {shown}");
    }
    assert!(!stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"), "{shown}");
    assert!(stderr.len() < 2_000, "the error repeats its input: {} bytes: {:.300}", stderr.len(), shown);
    assert!(tree(state) == before, "the state directory changed: {shown}");
}

#[cfg(all(feature = "inputs", feature = "reconcile", feature = "fleet", feature = "registry"))]
#[test]
fn every_binary_refuses_every_bad_file_clearly_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(state.join("apps")).unwrap();
    std::fs::write(state.join("sentinel"), "state before").unwrap();
    let out = &dir.path().join("out.json").display().to_string();
    let inputs = env!("CARGO_BIN_EXE_lkg-inputs");
    let reconcile = env!("CARGO_BIN_EXE_lkg-reconcile");
    let registry = env!("CARGO_BIN_EXE_lkg-registry");
    let targets = [
        // check-lock documents 1 for a missing or unparsable lock, 5 for one it cannot read.
        target(inputs, &["check-lock", "{}"], &[1, 5]),
        target(inputs, &["diff", "{}", "{}"], &[2, 5]),
        target(inputs, &["lock-from", "{}", "--out", out], &[2, 5]),
        target(inputs, &["resolve", "--spec", "{}", "--out", out], &[2, 5]),
        target(inputs, &["kernels", "{}"], &[1, 2, 5]),
        target(reconcile, &["update", "--config", "{}", "--target", "1.0.0"], &[2, 5]),
        target(reconcile, &["update", "--app", "badinput", "-c", "{}", "--target", "1.0.0"], &[2, 5]),
        target(env!("CARGO_BIN_EXE_lkg-fleet"), &["plan", "-f", "{}"], &[2, 5]),
        target(registry, &["verify", "127.0.0.1:1/x:y", "--key", "{}"], &[2, 5]),
        target(registry, &["sign", "--key", "{}", "127.0.0.1:1/x:y"], &[2, 5]),
    ];
    let shapes = shapes(dir.path());
    for (what, file) in &shapes {
        for target in &targets {
            check(target, &state, file, what);
        }
    }
    // Release notes are free text: only what cannot be text is refused.
    let gate = target(reconcile, &["gate", "--last-good", "1.0.0", "--target", "1.1.0", "--notes-file", "{}"], &[2, 5]);
    for (what, file) in &shapes {
        if matches!(*what, "a directory" | "non-UTF-8" | "100 MB of garbage") {
            check(&gate, &state, file, what);
        }
    }
}

#[cfg(all(feature = "snap", feature = "reconcile", feature = "canonical", feature = "fleet"))]
#[test]
fn hostile_app_names_and_versions_are_refused_before_anything_is_touched() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("sentinel"), "state before").unwrap();
    let compose = dir.path().join("compose.yml");
    std::fs::write(&compose, "services:\n  app:\n    image: x:${LKG_VERSION_TAG}\n").unwrap();
    let compose = &compose.display().to_string();
    let fleet_file = dir.path().join("fleet.yml");
    std::fs::write(&fleet_file, "version: 1\napps:\n  - app: shop\n    recipe: /srv/shop\n    source: recipe\n")
        .unwrap();
    let fleet_file = &fleet_file.display().to_string();
    let long = &"a".repeat(5_000);
    let snap = env!("CARGO_BIN_EXE_lkg-snap");
    let reconcile = env!("CARGO_BIN_EXE_lkg-reconcile");
    let canonical = env!("CARGO_BIN_EXE_lkg-canonical");
    let fleet = env!("CARGO_BIN_EXE_lkg-fleet");
    for app in ["../../etc", "A B", "", "-x", "caf\u{e9}", "a\u{1b}[31m", long.as_str()] {
        let targets = [
            target(snap, &["take", "--app", app, "--stack", "shop"], &[2]),
            target(snap, &["restore", "--app", app], &[2]),
            target(reconcile, &["update", "--app", app, "-c", compose, "--target", "1.0.0"], &[2]),
            target(reconcile, &["status", "--app", app], &[2]),
            target(reconcile, &["recover", "--app", app], &[2]),
            target(canonical, &["set-status", app, "warm"], &[2]),
            target(canonical, &["forget", app], &[2]),
            target(fleet, &["retry", "-f", fleet_file, app], &[2]),
        ];
        for target in &targets {
            check(target, &state, Path::new("unused"), &format!("app {app:.20?}"));
        }
    }
    for version in ["../../etc", "", "1.0.0\n", "1.0.0\u{1b}[31m", long.as_str(), "latest@sha256:00"] {
        let targets = [
            target(reconcile, &["update", "--app", "shop", "-c", compose, "--target", version], &[2]),
            target(reconcile, &["gate", "--last-good", "1.0.0", "--target", version], &[2]),
            target(snap, &["take", "--app", "shop", "--stack", "shop", "--version", version], &[2]),
        ];
        for target in &targets {
            check(target, &state, Path::new("unused"), &format!("version {version:.20?}"));
        }
    }
}
