//! `lkg <job> [args...]` runs `lkg-<job> [args...]`, git-style.
//!
//! The job binary is looked up next to this executable first (an install
//! puts them side by side), then on `PATH`. Arguments, stdin/stdout/stderr and
//! the exit code pass through unchanged: the job replaces this process.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a binary: stdout/stderr are its interface

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use lkg_cli::Exit;

/// The jobs lkg ships, with the line `lkg --help` shows for each.
const KNOWN_JOBS: &[(&str, &str)] = &[
    ("inputs", "pin build inputs in a lock file, check a replay, diff two runs"),
    ("registry", "inspect, copy, promote and sign images in an OCI registry"),
    ("swarm", "deploy a stack and wait for an honest convergence verdict"),
    ("snap", "take, verify and restore last-known-good volume snapshots"),
    ("canonical", "keep the record of each app's canonical deployment"),
    ("upgrade-base", "choose the version to test an upgrade from"),
    ("reconcile", "update an app behind a safety gate and a health gate"),
    ("fleet", "keep every app of a fleet on its newest safe version, by itself"),
];

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let Some(first) = args.next() else {
        print!("{}", help(&find_jobs()));
        return Exit::Usage.into();
    };
    match first.to_str() {
        Some("-h" | "--help") => {
            print!("{}", help(&find_jobs()));
            Exit::Ok.into()
        }
        Some("-V" | "--version") => {
            println!("lkg {}", env!("CARGO_PKG_VERSION"));
            Exit::Ok.into()
        }
        Some("help") => match args.next() {
            None => {
                print!("{}", help(&find_jobs()));
                Exit::Ok.into()
            }
            Some(job) => dispatch(&job, vec![OsString::from("--help")]),
        },
        Some(s) if s.starts_with('-') => {
            eprintln!("lkg: unknown option {s:?}\n\n{}", usage());
            Exit::Usage.into()
        }
        _ => dispatch(&first, args.collect()),
    }
}

fn usage() -> &'static str {
    "usage: lkg <job> [args...]   (lkg --help lists the jobs)"
}

fn dispatch(job: &std::ffi::OsStr, args: Vec<OsString>) -> ExitCode {
    let jobs = find_jobs();
    let name = job.to_string_lossy();
    let Some(path) = jobs.get(name.as_ref()) else {
        let installed: Vec<&str> = jobs.keys().map(String::as_str).collect();
        eprintln!(
            "lkg: no job named {name:?}: no executable `lkg-{name}` next to lkg or on PATH\n  installed jobs: {}",
            if installed.is_empty() { "none".to_owned() } else { installed.join(", ") }
        );
        return Exit::Usage.into();
    };
    // `exec` only returns on failure.
    let error = Command::new(path).args(args).exec();
    eprintln!("lkg: cannot run {}: {error}", path.display());
    Exit::Environment.into()
}

/// Every `lkg-<job>` executable next to this binary or on PATH, first found wins.
#[allow(clippy::disallowed_methods, reason = "a directory that cannot be listed has no jobs; no error is reported")]
fn find_jobs() -> BTreeMap<String, PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(dir) =
        std::env::current_exe().ok().and_then(|p| p.canonicalize().ok()).and_then(|p| p.parent().map(Path::to_path_buf))
    {
        dirs.push(dir);
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    let mut jobs = BTreeMap::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let Some(job) = file_name.to_str().and_then(|n| n.strip_prefix("lkg-")) else { continue };
            // Build artefacts such as `lkg-registry.d` or `lkg-swarm-1a2b3c` are not jobs.
            if job.is_empty() || job.contains('.') || !is_executable(&entry.path()) {
                continue;
            }
            jobs.entry(job.to_owned()).or_insert_with(|| entry.path());
        }
    }
    jobs
}

#[allow(clippy::disallowed_methods, reason = "a file that cannot be read is not a job; no error is reported")]
fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn help(found: &BTreeMap<String, PathBuf>) -> String {
    let mut text = format!(
        "lkg {} - ship container software without breaking what already works\n\n{}\n\nJobs:\n",
        env!("CARGO_PKG_VERSION"),
        usage()
    );
    let mut listed = 0;
    for (job, about) in KNOWN_JOBS {
        if found.contains_key(*job) {
            let _ = writeln!(text, "  {job:<14} {about}");
            listed += 1;
        }
    }
    for job in found.keys().filter(|j| !KNOWN_JOBS.iter().any(|(k, _)| k == *j)) {
        let _ = writeln!(text, "  {job:<14} (external: lkg-{job})");
        listed += 1;
    }
    if listed == 0 {
        text.push_str("  (none installed: put the lkg-<job> binaries next to lkg or on PATH)\n");
    }
    let missing: Vec<&str> = KNOWN_JOBS.iter().map(|(j, _)| *j).filter(|j| !found.contains_key(*j)).collect();
    if !missing.is_empty() {
        let _ = writeln!(text, "\nNot installed: {}", missing.join(", "));
    }
    text.push_str(
        "\nCommon job flags: --json (machine output), --state-dir DIR.\n\
         Exit codes: 0 ok, 1 verdict failed, 2 usage, 3 held, 4 partial, 5 environment.\n\
         Run `lkg help <job>` for a job's own help.\n",
    );
    text
}
