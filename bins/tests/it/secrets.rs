//! Secrets never leave lkg (issue 16, "one redaction rule"): registry
//! passwords from auth files and credential helpers (and their Basic
//! encoding), `COSIGN_PASSWORD`, and private key material, planted in the
//! succeeding and failing paths of `lkg-registry` and `lkg-inputs` against
//! the real password-protected registry. Every byte those runs print
//! (stdout, stderr, `--json`) and every file they leave in their state
//! directory is searched for each secret. URL secrets (health checks,
//! webhooks, channels) are planted the same way in `reconcile.rs` and
//! `fleet.rs`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use base64::Engine as _;
use lkg_testkit::{env, unique_name};

use crate::common::text;

/// A wrong password, in an auth file.
const WRONG_PASSWORD: &str = "WRONGpw4secrets71";
/// A wrong password, from a credential helper.
const HELPER_SECRET: &str = "HELPERpw4secrets93";
/// A wrong cosign key password.
const WRONG_COSIGN: &str = "COSIGNpw4secrets55";

/// Runs lkg binaries with one credential setup and keeps everything they print.
struct Runs {
    dir: tempfile::TempDir,
    printed: Vec<(String, String)>,
}

impl Runs {
    fn new() -> Runs {
        Runs { dir: tempfile::tempdir().unwrap(), printed: Vec::new() }
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// A docker config directory named `name` holding `config`.
    fn docker_config(&self, name: &str, config: &serde_json::Value) -> PathBuf {
        let dir = self.dir.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        dir
    }

    /// `binary args` with `DOCKER_CONFIG=docker_config` and `extra` env;
    /// what it printed is kept for [`Runs::assert_never_shown`].
    fn run(&mut self, binary: &str, docker_config: &Path, extra: &[(&str, &str)], args: &[&str]) -> Output {
        let out = Command::new(binary)
            .arg("--state-dir")
            .arg(self.state())
            .args(args)
            .env("DOCKER_CONFIG", docker_config)
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("COSIGN_PASSWORD")
            .envs(env().vars())
            .envs(extra.iter().copied())
            .stdin(Stdio::null())
            .output()
            .expect("run an lkg binary");
        let label = format!("{} {}", Path::new(binary).file_name().unwrap().to_string_lossy(), args.join(" "));
        self.printed.push((label, format!("{}\n{}", text(&out.stdout), text(&out.stderr))));
        out
    }

    /// No run printed any of `secrets`, and no file under the state
    /// directory holds one.
    fn assert_never_shown(&self, secrets: &[String]) {
        let mut places: Vec<(String, String)> = self.printed.clone();
        for file in files(&self.state()) {
            let content = String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned();
            places.push((file.display().to_string(), content));
        }
        assert!(places.len() > self.printed.len(), "the runs wrote no state: the test checks nothing there");
        for secret in secrets {
            for (place, content) in &places {
                assert!(!content.contains(secret.as_str()), "{place} shows the secret {secret:?}:\n{content}");
            }
        }
    }
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return found };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files(&path));
        } else if path.is_file() {
            found.push(path);
        }
    }
    found
}

/// A secret and the forms it travels in: itself and, for a password, the
/// Basic `Authorization` value.
fn basic(user: &str, password: &str) -> Vec<String> {
    vec![password.to_owned(), base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))]
}

/// The base64 lines of a PEM file: its key material.
fn pem_body(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 16)
        .map(str::to_owned)
        .collect()
}

#[test]
#[allow(clippy::too_many_lines, reason = "one credential setup after another, read top to bottom")]
fn registry_credentials_cosign_passwords_and_keys_are_never_shown() {
    let env = env();
    let registry = env!("CARGO_BIN_EXE_lkg-registry");
    let inputs = env!("CARGO_BIN_EXE_lkg-inputs");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/registry");
    let mut runs = Runs::new();
    let (auth_host, user, password) = (&env.registry_auth, &env.registry_auth_user, &env.registry_auth_password);
    let good = runs.docker_config(
        "good",
        &serde_json::json!({"auths": {auth_host.as_str(): {
            "auth": base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        }}}),
    );
    let wrong = runs.docker_config(
        "wrong",
        &serde_json::json!({"auths": {auth_host.as_str(): {
            "auth": base64::engine::general_purpose::STANDARD.encode(format!("{user}:{WRONG_PASSWORD}"))
        }}}),
    );
    // A credential helper answering with a wrong secret, found on PATH as docker finds it.
    let bin = runs.dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-lkgsecrets");
    std::fs::write(&helper, format!("#!/bin/sh\necho '{{\"Username\":\"{user}\",\"Secret\":\"{HELPER_SECRET}\"}}'\n"))
        .unwrap();
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let helped = runs.docker_config("helped", &serde_json::json!({"credHelpers": {auth_host.as_str(): "lkgsecrets"}}));
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());

    // An image in the password-protected registry, copied there with the right credentials.
    let source = format!("{}/{}/box:latest", env.registry_a, unique_name("secrets"));
    env.docker(&["tag", &env.busybox_image, &source]);
    env.docker(&["push", "-q", &source]);
    let repo = format!("{auth_host}/{}", unique_name("secrets"));
    let image = format!("{repo}:1.0.0");
    let out = runs.run(registry, &good, &[], &["copy", &source, &image, "--json"]);
    assert_eq!(out.status.code(), Some(0), "copy into the auth registry: {}", text(&out.stderr));
    let out = runs.run(registry, &good, &[], &["inspect", &image, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // Refused credentials, from the file and from the helper: exit 5 (auth refused), said without them.
    for (config, what) in [(&wrong, "auth file"), (&helped, "credential helper")] {
        let out = runs.run(registry, config, &[("PATH", &path)], &["inspect", &image]);
        assert_eq!(out.status.code(), Some(5), "{what}: {}", text(&out.stderr));
        let out = runs.run(registry, config, &[("PATH", &path)], &["inspect", &image, "--json"]);
        assert_eq!(out.status.code(), Some(5), "{what}: {}", text(&out.stderr));
    }
    let spec = runs.dir.path().join("spec.json");
    std::fs::write(&spec, serde_json::json!({"inputs": {"box": {"image": image}}}).to_string()).unwrap();
    let manifest = runs.dir.path().join("build-inputs.json").display().to_string();
    let spec = spec.display().to_string();
    let out = runs.run(inputs, &wrong, &[], &["resolve", "--spec", &spec, "--out", &manifest, "--json"]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    let out = runs.run(inputs, &good, &[], &["resolve", "--spec", &spec, "--out", &manifest, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // Signing with cosign's encrypted key: a wrong password is refused
    // without being shown; the right one signs, and a promotion signs
    // stable, journalled in the state directory, without showing it either.
    let key = fixtures.join("cosign-encrypted.key").display().to_string();
    let cosign_password = std::fs::read_to_string(fixtures.join("cosign-encrypted.password")).unwrap();
    let cosign_password = cosign_password.trim();
    let out = runs.run(registry, &good, &[("COSIGN_PASSWORD", WRONG_COSIGN)], &["sign", "--key", &key, &image]);
    assert_eq!(out.status.code(), Some(2), "a wrong key password is bad input: {}", text(&out.stderr));
    let out =
        runs.run(registry, &good, &[("COSIGN_PASSWORD", cosign_password)], &["sign", "--key", &key, &image, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stable = format!("{repo}:stable");
    let artifact = format!("{image}={stable}");
    let out = runs.run(
        registry,
        &good,
        &[("COSIGN_PASSWORD", cosign_password)],
        &["promote", "--artifact", &artifact, "--sign-key", &key, "--json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let public = fixtures.join("cosign-encrypted.pub").display().to_string();
    let out = runs.run(registry, &good, &[], &["verify", &stable, "--key", &public, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // A private key given where a public key belongs: refused, its material not echoed.
    let private = fixtures.join("signing-key.pem");
    let out = runs.run(registry, &good, &[], &["verify", &stable, "--key", &private.display().to_string()]);
    assert!(matches!(out.status.code(), Some(1 | 2)), "{}", text(&out.stderr));

    let mut secrets = basic(user, password);
    secrets.extend(basic(user, WRONG_PASSWORD));
    secrets.extend(basic(user, HELPER_SECRET));
    secrets.extend([WRONG_COSIGN.to_owned(), cosign_password.to_owned()]);
    secrets.extend(pem_body(&private));
    secrets.extend(pem_body(&fixtures.join("cosign-encrypted.key")));
    runs.assert_never_shown(&secrets);
}
