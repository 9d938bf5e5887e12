//! `lkg-inputs resolve` as a user runs it against the real registries:
//! pins, lock replay, credentials from the Docker config, plain HTTP only
//! where allowed, and the documented exit codes. The library's resolution
//! logic is tested in `lkg-registry` (tests/it/resolver.rs).

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use lkg_testkit::{env, unique_name};

use crate::common::text;

/// `lkg-inputs ARGS` with no credentials but those of `docker_config` (a
/// directory holding `config.json`, or an empty one).
fn inputs(docker_config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lkg-inputs"))
        .args(args)
        .env("DOCKER_CONFIG", docker_config)
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("XDG_RUNTIME_DIR")
        .envs(env().vars())
        .stdin(Stdio::null())
        .output()
        .expect("run lkg-inputs")
}

/// Pushes the busybox fixture to `registry` as `<unique>/box:latest` with the
/// docker CLI; returns the reference and its digest as skopeo reads it.
fn push_busybox(registry: &str) -> (String, String) {
    let env = env();
    let reference = format!("{registry}/{}/box:latest", unique_name("inputs"));
    env.docker(&["tag", &env.busybox_image, &reference]);
    env.docker(&["push", "-q", &reference]);
    let _ = env.try_docker(&["rmi", &reference]);
    (reference.clone(), skopeo_digest(&reference, &[]))
}

fn skopeo_digest(reference: &str, extra: &[&str]) -> String {
    let out = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--format", "{{.Digest}}"])
        .args(extra)
        .arg(format!("docker://{reference}"))
        .output()
        .expect("skopeo is installed");
    assert!(out.status.success(), "skopeo inspect {reference}: {}", text(&out.stderr));
    text(&out.stdout).trim().to_owned()
}

/// Writes a generic spec of one image input `box` and returns its path.
fn spec(dir: &Path, name: &str, image: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::json!({ "inputs": { "box": { "image": image } } }).to_string()).unwrap();
    path.display().to_string()
}

#[test]
fn resolve_pins_from_the_registry_and_replays_its_lock() {
    let env = env();
    let dir = tempfile::tempdir().unwrap();
    let no_credentials = tempfile::tempdir().unwrap();
    let (image, digest) = push_busybox(&env.registry_a);
    let manifest = dir.path().join("build-inputs.json").display().to_string();

    let floating = spec(dir.path(), "spec.json", &image);
    let out = inputs(no_credentials.path(), &["resolve", "--spec", &floating, "--out", &manifest, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["manifest"]["inputs"]["box"]["image"]["digest"], digest.as_str(), "skopeo's digest");
    let written: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    assert_eq!(written["inputs"]["box"]["image"]["pinned"], image.replace(":latest", &format!("@{digest}")));

    // Replay: the lock's pin is used and exists.
    let lock = dir.path().join("inputs.lock.json").display().to_string();
    let out = inputs(no_credentials.path(), &["lock-from", &manifest, "--out", &lock]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let replayed = dir.path().join("replayed.json").display().to_string();
    let out = inputs(no_credentials.path(), &["resolve", "--spec", &floating, "--lock", &lock, "--out", &replayed]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = inputs(no_credentials.path(), &["diff", &manifest, &replayed]);
    assert!(!text(&out.stdout).contains("box.digest"), "the replay pins the same digest:\n{}", text(&out.stdout));

    // A pin its registry does not have: exit 2, naming the input and the pin.
    let gone = std::fs::read_to_string(&lock).unwrap().replace(&digest, &format!("sha256:{}", "0".repeat(64)));
    std::fs::write(&lock, gone).unwrap();
    let out = inputs(no_credentials.path(), &["resolve", "--spec", &floating, "--lock", &lock, "--out", &replayed]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("input `box`") && stderr.contains("@sha256:0000") && stderr.contains("does not exist"));

    // A tag that does not exist: exit 2.
    let missing = spec(dir.path(), "missing.json", &image.replace(":latest", ":no-such-tag"));
    let out = inputs(no_credentials.path(), &["resolve", "--spec", &missing, "--out", &replayed]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains(":no-such-tag` does not exist"), "{}", text(&out.stderr));

    // No registry listening: exit 5, with what to do next.
    let down = spec(dir.path(), "down.json", &format!("127.0.0.1:{}/nothing/here:1", lkg_testkit::free_port()));
    let out = inputs(no_credentials.path(), &["resolve", "--spec", &down, "--out", &replayed]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("cannot reach the registry") && stderr.contains("hint:"), "{stderr}");
}

#[test]
fn plain_http_needs_insecure_registry_off_loopback() {
    let env = env();
    let dir = tempfile::tempdir().unwrap();
    let (image, digest) = push_busybox(&env.registry_a);
    // The same registry by an address lkg does not count as loopback (an
    // IPv4-mapped IPv6 address), so it stands in for a LAN registry without
    // sending traffic anywhere but loopback.
    let port = env.registry_a.rsplit_once(':').unwrap().1;
    let host = format!("[::ffff:127.0.0.1]:{port}");
    let remote = spec(dir.path(), "spec.json", &image.replace(&env.registry_a, &host));
    let out_path = dir.path().join("out.json").display().to_string();

    let out = inputs(dir.path(), &["resolve", "--spec", &remote, "--out", &out_path]);
    assert_eq!(out.status.code(), Some(5), "HTTPS to a plain-HTTP registry fails: {}", text(&out.stderr));
    assert!(text(&out.stderr).contains("--insecure-registry"), "{}", text(&out.stderr));
    let out =
        inputs(dir.path(), &["resolve", "--spec", &remote, "--out", &out_path, "--insecure-registry", &host, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["manifest"]["inputs"]["box"]["image"]["digest"], digest.as_str());
}

#[test]
fn credentials_come_from_the_docker_config() {
    let env = env();
    let dir = tempfile::tempdir().unwrap();
    // `docker login` writes the config lkg reads, and pushes with it.
    let config = tempfile::tempdir().unwrap();
    let docker = |args: &[&str]| {
        let mut command = env.docker_command();
        command.arg("--config").arg(config.path()).args(args);
        command
    };
    let mut login = docker(&["login", "-u", &env.registry_auth_user, "--password-stdin", &env.registry_auth])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    login.stdin.take().unwrap().write_all(env.registry_auth_password.as_bytes()).unwrap();
    let out = login.wait_with_output().unwrap();
    assert!(out.status.success(), "docker login: {}", text(&out.stderr));
    let image = format!("{}/{}/box:latest", env.registry_auth, unique_name("inputs"));
    env.docker(&["tag", &env.busybox_image, &image]);
    let out = docker(&["push", "-q", &image]).output().unwrap();
    assert!(out.status.success(), "docker push: {}", text(&out.stderr));
    let _ = env.try_docker(&["rmi", &image]);
    let creds = format!("{}:{}", env.registry_auth_user, env.registry_auth_password);
    let digest = skopeo_digest(&image, &["--creds", &creds]);
    let spec = spec(dir.path(), "spec.json", &image);
    let out_path = dir.path().join("out.json").display().to_string();

    let out = inputs(config.path(), &["resolve", "--spec", &spec, "--out", &out_path, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["manifest"]["inputs"]["box"]["image"]["digest"], digest.as_str());

    let empty = tempfile::tempdir().unwrap();
    let out = inputs(empty.path(), &["resolve", "--spec", &spec, "--out", &out_path]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("refused access"), "{}", text(&out.stderr));
}

/// A file that is not UTF-8 text is bad input (exit 2), not "the environment".
#[test]
fn a_file_that_is_not_text_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("build-inputs.json");
    std::fs::write(&path, [0xff, 0xfe, 0x00, 0x7b]).unwrap();
    let out = inputs(dir.path(), &["diff", &path.display().to_string(), &path.display().to_string()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("not UTF-8 text"), "{}", text(&out.stderr));
}

/// A huge field is named, clipped, not printed back whole (issue 16: a 10 MB
/// placeholder was printed twice, 20 MB of output).
#[test]
fn check_lock_clips_huge_fields() {
    let dir = tempfile::tempdir().unwrap();
    let lock = |base_image: String| {
        serde_json::json!({
            "version": 1,
            "description": "d",
            "base_image": base_image,
            "build_container": format!("r.example/a@sha256:{}", "a".repeat(64)),
            "zfs_minor_version": "2.4",
            "akmods_upstream_ref": "906e565f712f43a598dcd272dc8ca053fcc99116",
        })
    };
    for (name, base_image, says) in [
        ("placeholder", "X".repeat(10_000_000), "is a placeholder"),
        ("tag", format!("r.example/a:{}", "1".repeat(1_000_000)), "base_image"),
    ] {
        let path = dir.path().join(format!("{name}.lock.json"));
        std::fs::write(&path, serde_json::to_vec(&lock(base_image)).unwrap()).unwrap();
        let out = inputs(dir.path(), &["check-lock", &path.display().to_string()]);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", text(&out.stderr));
        let shown = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(shown.contains(says) && shown.contains('…'), "{name}: {}", lkg_core::clip(&shown));
        assert!(shown.len() < 4096, "{name}: {} bytes of output", shown.len());
    }
}
