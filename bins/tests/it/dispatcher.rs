use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

/// Runs a copy of `lkg` from its own temp dir, so the real `lkg-*` binaries
/// built next to it in `target/` do not count as installed jobs.
fn lkg(path_dir: &Path, args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    let exe = home.path().join("lkg");
    std::fs::copy(env!("CARGO_BIN_EXE_lkg"), &exe).unwrap();
    Command::new(&exe).args(args).env("PATH", format!("{}:/usr/bin:/bin", path_dir.display())).output().unwrap()
}

fn fake_job(dir: &Path, name: &str, script: &str) {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn runs_the_job_with_its_arguments_and_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    fake_job(dir.path(), "lkg-hello", r#"echo "args:$*"; echo "to stderr" >&2; exit 7"#);
    let out = lkg(dir.path(), &["hello", "a b", "--json"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "args:a b --json\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "to stderr\n");
    assert_eq!(out.status.code(), Some(7));
}

#[test]
fn help_lists_the_jobs_it_finds() {
    let dir = tempfile::tempdir().unwrap();
    fake_job(dir.path(), "lkg-registry", "exit 0");
    fake_job(dir.path(), "lkg-custom", "exit 0");
    std::fs::write(dir.path().join("lkg-notexec"), "").unwrap();
    let out = lkg(dir.path(), &["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("  registry       inspect, copy, promote and sign images"), "{text}");
    assert!(text.contains("  custom         (external: lkg-custom)"), "{text}");
    assert!(!text.contains("notexec"), "a non-executable file is not a job:\n{text}");
    assert!(text.contains("Not installed: inputs, swarm"), "{text}");
    assert!(text.contains("Exit codes: 0 ok, 1 verdict failed, 2 usage, 3 held, 4 partial, 5 environment"));
}

#[test]
fn help_job_runs_the_jobs_own_help() {
    let dir = tempfile::tempdir().unwrap();
    fake_job(dir.path(), "lkg-hello", r#"echo "hello help: $*""#);
    let out = lkg(dir.path(), &["help", "hello"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello help: --help\n");
}

#[test]
fn unknown_job_is_a_usage_error_naming_what_is_installed() {
    let dir = tempfile::tempdir().unwrap();
    fake_job(dir.path(), "lkg-hello", "exit 0");
    let out = lkg(dir.path(), &["nosuch"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no job named \"nosuch\"") && err.contains("installed jobs: hello"), "{err}");
}

#[test]
fn finds_jobs_next_to_itself_before_path() {
    let home = tempfile::tempdir().unwrap();
    let exe = home.path().join("lkg");
    std::fs::copy(env!("CARGO_BIN_EXE_lkg"), &exe).unwrap();
    fake_job(home.path(), "lkg-hello", "echo beside");
    let path_dir = tempfile::tempdir().unwrap();
    fake_job(path_dir.path(), "lkg-hello", "echo on-path");
    let out = Command::new(&exe).arg("hello").env("PATH", path_dir.path()).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "beside\n");
}

#[test]
fn version_and_bare_invocation() {
    let dir = tempfile::tempdir().unwrap();
    let out = lkg(dir.path(), &["--version"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("lkg {}\n", env!("CARGO_PKG_VERSION")));
    let bare = lkg(dir.path(), &[]);
    assert_eq!(bare.status.code(), Some(2), "bare `lkg` prints help and exits 2");
    assert!(String::from_utf8_lossy(&bare.stdout).contains("usage: lkg <job>"));
}
