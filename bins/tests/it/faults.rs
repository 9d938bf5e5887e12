//! Faults in the middle of real work (issue 16): the state directory's
//! filesystem full — a small tmpfs mounted for the test — while a snapshot
//! is written, while a canonical record is written, before a promotion
//! journals its plan and when a reconcile's rollback writes its journal. Each case ends with a clear error, nothing reported
//! as success, and what was good before still valid.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use lkg_testkit::{env, unique_name};

use crate::common::{code, text};

/// A tmpfs of `size` mounted on a fresh directory (or a given one), unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
    at: Option<PathBuf>,
}

fn mount_tmpfs(path: &Path, size: &str) {
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755"), "tmpfs"])
        .arg(path)
        .output()
        .expect("run mount");
    assert!(out.status.success(), "mount a tmpfs (the tests run as root): {}", text(&out.stderr));
}

impl SmallDisk {
    fn new(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        mount_tmpfs(dir.path(), size);
        SmallDisk { dir, at: None }
    }

    /// Mounted on `path` (an existing, empty directory), unmounted on drop.
    #[cfg(feature = "reconcile")]
    fn at(path: &Path, size: &str) -> SmallDisk {
        mount_tmpfs(path, size);
        SmallDisk { dir: tempfile::tempdir().unwrap(), at: Some(path.to_owned()) }
    }

    fn path(&self) -> &Path {
        self.at.as_deref().unwrap_or(self.dir.path())
    }

    /// Fills what is left of the filesystem with one file (removed by `free`).
    fn fill(&self) {
        let out = Command::new("dd")
            .arg("if=/dev/zero")
            .arg(format!("of={}", self.filler().display()))
            .args(["bs=64k"])
            .output()
            .unwrap();
        assert!(!out.status.success(), "dd stops when the disk is full");
    }

    fn free(&self) {
        std::fs::remove_file(self.filler()).unwrap();
    }

    fn filler(&self) -> PathBuf {
        self.path().join("filler")
    }

    /// Every file under the mount, with its content, except the filler.
    fn files(&self) -> Vec<(PathBuf, Vec<u8>)> {
        fn walk(dir: &Path, found: &mut Vec<(PathBuf, Vec<u8>)>) {
            let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().map(|e| e.path()).collect();
            entries.sort();
            for path in entries {
                if path.is_dir() {
                    walk(&path, found);
                } else {
                    let content = std::fs::read(&path).unwrap_or_default();
                    found.push((path, content));
                }
            }
        }
        let mut found = Vec::new();
        walk(self.path(), &mut found);
        found.retain(|(p, _)| p != &self.filler());
        found
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.path()).status();
    }
}

fn run(binary: &str, state: &Path, args: &[&str]) -> Output {
    Command::new(binary)
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .envs(env().vars())
        .stdin(Stdio::null())
        .output()
        .expect("run an lkg binary")
}

/// What every full-disk error must say: where, and that the disk is full.
fn says_full(out: &Output) -> bool {
    let said = text(&out.stderr).to_lowercase();
    said.contains("no space left") || said.contains("disk is full")
}

#[cfg(feature = "snap")]
#[test]
fn a_snapshot_that_does_not_fit_fails_and_the_previous_one_stays_valid() {
    let env = env();
    let snap = env!("CARGO_BIN_EXE_lkg-snap");
    let disk = SmallDisk::new("6m");
    let state = disk.path().join("state");
    let stack = unique_name("full");
    let volume = format!("{stack}_data");
    env.docker(&["volume", "create", "--label", &format!("com.docker.stack.namespace={stack}"), &volume]);
    let cleanup = scopeguard(|| {
        env.remove_warmsnap_helpers(&stack);
        let _ = env.try_docker(&["volume", "rm", "-f", &volume]);
    });
    env.on_volume(&volume, &["sh", "-euc", "head -c 1048576 /dev/urandom > /data/one"]);
    let out = run(snap, &state, &["take", "--app", &stack, "--stack", &stack, "--version", "1.0.0", "--json"]);
    assert_eq!(code(&out), (Some(0), String::new()));
    let good = disk.files();

    // Ten more MiB: the second snapshot cannot fit in what is left.
    env.on_volume(&volume, &["sh", "-euc", "head -c 10485760 /dev/urandom > /data/two"]);
    let out = run(snap, &state, &["take", "--app", &stack, "--stack", &stack, "--version", "1.1.0"]);
    assert_eq!(out.status.code(), Some(5), "a full disk is an environment failure: {}", text(&out.stderr));
    assert!(says_full(&out), "the error does not say the disk is full: {}", text(&out.stderr));
    assert_eq!(disk.files(), good, "the failed take changed or left files in the state directory");
    let out = run(snap, &state, &["verify", "--app", &stack]);
    assert_eq!(code(&out), (Some(0), String::new()), "the previous snapshot no longer verifies");
    let out = run(snap, &state, &["show", "--app", &stack, "--json"]);
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["snapshot"]["meta"]["version"], "1.0.0", "{shown:#}");
    drop(cleanup);
}

#[cfg(feature = "canonical")]
#[test]
fn a_record_written_to_a_full_disk_fails_and_the_previous_record_stays() {
    let canonical = env!("CARGO_BIN_EXE_lkg-canonical");
    let disk = SmallDisk::new("1m");
    let state = disk.path().join("state");
    let promote = |version: &str| {
        run(
            canonical,
            &state,
            &[
                "promote",
                "--app",
                "gitea",
                "--version",
                version,
                "--commit",
                "0a1b2c3",
                "--run",
                "cold",
                "--stages",
                "full",
                "--latest",
                "--result",
                "green",
                "--base-domain",
                "example.org",
                "--volume",
                "gitea_data",
            ],
        )
    };
    let out = promote("1.0.0");
    assert_eq!(code(&out), (Some(0), String::new()));
    let good = disk.files();
    disk.fill();
    let out = promote("1.1.0");
    assert_eq!(out.status.code(), Some(5), "a full disk is an environment failure: {}", text(&out.stderr));
    assert!(says_full(&out), "the error does not say the disk is full: {}", text(&out.stderr));
    disk.free();
    assert_eq!(disk.files(), good, "the failed promote changed or left files in the state directory");
    let out = run(canonical, &state, &["show", "gitea", "--json"]);
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(shown.to_string().contains("1.0.0") && !shown.to_string().contains("1.1.0"), "{shown:#}");
}

#[cfg(feature = "registry")]
#[test]
fn a_promotion_that_cannot_journal_moves_no_stable_tag() {
    let env = env();
    let registry = env!("CARGO_BIN_EXE_lkg-registry");
    let disk = SmallDisk::new("1m");
    let state = disk.path().join("state");
    let repo = format!("{}/{}", env.registry_a, unique_name("full"));
    let (candidate, stable) = (format!("{repo}:candidate"), format!("{repo}:stable"));
    env.docker(&["tag", &env.busybox_image, &candidate]);
    env.docker(&["push", "-q", &candidate]);
    let _ = env.try_docker(&["rmi", &candidate]);
    std::fs::create_dir_all(&state).unwrap();
    disk.fill();
    let artifact = format!("{candidate}={stable}");
    let out = run(registry, &state, &["promote", "--artifact", &artifact]);
    assert_eq!(out.status.code(), Some(5), "a full disk is an environment failure: {}", text(&out.stderr));
    assert!(says_full(&out), "the error does not say the disk is full: {}", text(&out.stderr));
    let inspect = run(registry, &state, &["inspect", &stable]);
    assert_eq!(inspect.status.code(), Some(2), "stable moved without a journal: {}", text(&inspect.stdout));
    disk.free();
    let out = run(registry, &state, &["promote", "--artifact", &artifact]);
    assert_eq!(code(&out), (Some(0), String::new()), "with room again the promotion completes");
}

/// Runs `f` when dropped (also when the test panics).
fn scopeguard<F: FnOnce()>(f: F) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

/// Two `lkg-snap take` of one app from two shells: the second finds the
/// first's lock and refuses (exit 5, saying so); the first's snapshot is
/// whole and verifies. Nothing interleaves.
#[cfg(feature = "snap")]
#[test]
fn two_takes_of_one_app_do_not_interleave() {
    let env = env();
    let snap = env!("CARGO_BIN_EXE_lkg-snap");
    let state = tempfile::tempdir().unwrap();
    let stack = unique_name("race");
    let volume = format!("{stack}_data");
    env.docker(&["volume", "create", "--label", &format!("com.docker.stack.namespace={stack}"), &volume]);
    let cleanup = scopeguard(|| {
        env.remove_warmsnap_helpers(&stack);
        let _ = env.try_docker(&["volume", "rm", "-f", &volume]);
    });
    // Enough data that a take lasts a while (about 1 s here).
    env.on_volume(&volume, &["sh", "-euc", "head -c 100000000 /dev/urandom > /data/big"]);
    let take = |version: &str| {
        Command::new(snap)
            .arg("--state-dir")
            .arg(state.path())
            .args(["take", "--app", &stack, "--stack", &stack, "--version", version])
            .envs(env.vars())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let first = take("1.0.0");
    // Wait until the first holds the snapshot lock (flock -n fails on it).
    let lock = state.path().join("apps").join(&stack).join("snapshots/.lock");
    lkg_testkit::wait_until(
        "the first take to hold its lock",
        Duration::from_secs(30),
        Duration::from_millis(5),
        || {
            let free = lock.exists()
                && Command::new("flock").arg("-n").arg(&lock).arg("true").status().is_ok_and(|s| s.success());
            (lock.exists() && !free).then_some(())
        },
    );
    let second = take("2.0.0").wait_with_output().unwrap();
    let first = first.wait_with_output().unwrap();
    assert_eq!(code(&first), (Some(0), String::new()), "the first take");
    assert_eq!(second.status.code(), Some(5), "the second take: {}", text(&second.stderr));
    assert!(text(&second.stderr).contains("in use by another lkg process"), "{}", text(&second.stderr));
    let out = run(snap, state.path(), &["verify", "--app", &stack]);
    assert_eq!(code(&out), (Some(0), String::new()), "the snapshot no longer verifies");
    let out = run(snap, state.path(), &["show", "--app", &stack, "--json"]);
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["snapshot"]["meta"]["version"], "1.0.0", "{shown:#}");
    drop(cleanup);
}

/// `lkg-reconcile update` of an app whose lock another run holds (here a
/// person's `lkg-canonical lock APP -- ...`) refuses at once: exit 5 naming
/// the holder, no stack deployed, no state written.
#[cfg(all(feature = "reconcile", feature = "canonical"))]
#[test]
fn an_update_of_an_app_another_run_holds_refuses_and_touches_nothing() {
    let env = env();
    let state = tempfile::tempdir().unwrap();
    let app = unique_name("held");
    let compose = state.path().join("compose.yml");
    std::fs::write(&compose, "services:\n  app:\n    image: lkg-fixture/app:${LKG_VERSION_TAG}\n").unwrap();
    let mut holder = Command::new(env!("CARGO_BIN_EXE_lkg-canonical"))
        .arg("--state-dir")
        .arg(state.path().join("state"))
        .args(["lock", &app, "--", "sleep", "30"])
        .envs(env.vars())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lock = state.path().join("state/apps").join(&app).join("lock");
    lkg_testkit::wait_until("the lock to be held", Duration::from_secs(10), Duration::from_millis(10), || {
        std::fs::metadata(&lock).ok().filter(|m| m.len() > 0).map(|_| ())
    });
    let before = std::fs::read_dir(state.path().join("state/apps").join(&app)).unwrap().count();
    let out = run(
        env!("CARGO_BIN_EXE_lkg-reconcile"),
        &state.path().join("state"),
        &["update", "--app", &app, "-c", &compose.display().to_string(), "--target", "1.0.0", "--stateless"],
    );
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("lkg-canonical lock"), "the holder is not named: {}", text(&out.stderr));
    assert_eq!(std::fs::read_dir(state.path().join("state/apps").join(&app)).unwrap().count(), before, "state written");
    assert!(env.try_docker(&["stack", "ps", &app]).stdout.is_empty(), "the refused update deployed something");
}

/// The state directory fills up while a stateful update to a broken target
/// is in its health gate: the rollback's first journal write fails. The run
/// stops there (exit 5, "no space left"), reporting nothing as done; the
/// journal it had is intact, and once there is room `recover` rolls back
/// with the data restored.
#[cfg(feature = "reconcile")]
#[test]
fn a_journal_write_to_a_full_disk_stops_the_run_and_recover_finishes_it() {
    let app = crate::reconcile::CliApp::new("rcfull");
    fs_err::create_dir_all(app.state()).unwrap();
    let disk = SmallDisk::at(&app.state(), "64m");
    let out = app.update("1.0.0");
    assert_eq!(out.status.code(), Some(0), "install: {}", text(&out.stderr));
    let put = lkg_testkit::http_request("PUT", &app.url("/marker"), Some(b"known-good")).unwrap();
    assert_eq!(put.status, 200);

    let child = app.update_until("1.1.0-unhealthy", "check-health");
    disk.fill();
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out).0, Some(5), "{}", text(&out.stderr));
    assert!(says_full(&out), "{}", text(&out.stderr));
    assert!(text(&out.stdout).is_empty(), "no report of an outcome: {}", text(&out.stdout));
    let journal = app.journal().expect("the journal it had stays");
    assert_eq!(journal["step"], "check-health", "{journal:#}");

    disk.free();
    let out = app.run(&["recover", "--app", &app.name, "--json"]);
    assert_eq!(out.status.code(), Some(0), "recover: {}", text(&out.stderr));
    assert_eq!(crate::common::json(&out)["outcome"], "rolled_back");
    assert_eq!(app.serving(), "1.0.0");
    assert_eq!(app.marker(), "known-good", "the data is restored");
    assert!(app.journal().is_none());
    drop(disk);
}
