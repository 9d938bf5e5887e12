use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde::Deserialize;

/// Where the test environment lives, as `scripts/testenv up` wrote it to
/// `env.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct Env {
    /// The environment's directory (`$LKG_TESTENV_DIR`, default `/var/tmp/lkg-testenv`).
    pub dir: PathBuf,
    /// `DOCKER_HOST` of the private engine, `unix://.../docker.sock`.
    pub docker_host: String,
    /// The engine's version (Debian's docker.io, 20.10 on bookworm).
    pub engine_version: String,
    /// The swarm node id of the single manager.
    pub swarm_node_id: String,
    /// Plain-HTTP registry `a`, as `127.0.0.1:PORT`.
    pub registry_a: String,
    /// Plain-HTTP registry `b`, for cross-registry tests.
    pub registry_b: String,
    /// Registry with htpasswd auth; see [`Env::registry_auth_user`].
    pub registry_auth: String,
    /// User name accepted by [`Env::registry_auth`].
    pub registry_auth_user: String,
    /// Password of [`Env::registry_auth_user`] (a test-only credential).
    pub registry_auth_password: String,
    /// The fixture app image, `lkg-fixture/app:latest` (version `0.0.0`, healthy).
    pub app_image: String,
    /// The app's root filesystem tar, from which versioned images are imported.
    pub app_rootfs: PathBuf,
    /// A busybox image from Debian's `busybox-static`.
    pub busybox_image: String,
    /// The busybox root filesystem tar.
    pub busybox_rootfs: PathBuf,
}

/// Why the environment could not be found or started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvError {
    /// `env.json` is missing or unreadable and starting was not allowed.
    #[error(
        "no test environment at {dir}: {reason}\n  start it with `scripts/testenv up` (as root), or unset LKG_TESTENV_AUTOSTART=0 to let tests start it"
    )]
    Missing {
        /// The environment directory.
        dir: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// `scripts/testenv up` failed.
    #[error("`{script} up` failed (exit {status}):\n{stderr}")]
    StartFailed {
        /// The script that was run.
        script: PathBuf,
        /// Its exit status.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// The environment is described but a component does not answer.
    #[error("the test environment at {dir} is not healthy: {reason}\n  restart it with `scripts/testenv up`")]
    Unhealthy {
        /// The environment directory.
        dir: PathBuf,
        /// Which component failed its liveness check.
        reason: String,
    },
}

/// The test environment, started if needed. Panics (failing the test) with
/// the reason when it is missing and cannot be started: tests never skip.
///
/// Set `LKG_TESTENV_AUTOSTART=0` to forbid starting it (the test then fails
/// if it is not already running).
pub fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let autostart = std::env::var("LKG_TESTENV_AUTOSTART").map_or(true, |v| v != "0");
        match Env::find(&env_dir(), autostart) {
            Ok(env) => env,
            Err(e) => panic!("lkg test environment unavailable (CI={}): {e}", std::env::var("CI").unwrap_or_default()),
        }
    })
}

pub(crate) fn env_dir() -> PathBuf {
    std::env::var_os("LKG_TESTENV_DIR").map_or_else(|| PathBuf::from("/var/tmp/lkg-testenv"), PathBuf::from)
}

/// `scripts/testenv` of this checkout.
fn testenv_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/testenv")
}

impl Env {
    /// Reads the environment in `dir` and checks that it answers; when it does
    /// not and `autostart` is set, runs `scripts/testenv up` once and retries.
    pub fn find(dir: &Path, autostart: bool) -> Result<Env, EnvError> {
        match Env::load(dir).and_then(|env| env.check().map(|()| env)) {
            Ok(env) => Ok(env),
            Err(e) if !autostart => Err(e),
            Err(_) => {
                run_testenv(dir, &["up"])?;
                let env = Env::load(dir)?;
                env.check()?;
                Ok(env)
            }
        }
    }

    /// Reads `env.json` without checking liveness.
    pub fn load(dir: &Path) -> Result<Env, EnvError> {
        let path = dir.join("env.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| EnvError::Missing { dir: dir.to_owned(), reason: format!("{}: {e}", path.display()) })?;
        serde_json::from_str(&text).map_err(|e| EnvError::Missing {
            dir: dir.to_owned(),
            reason: format!("{} is malformed: {e}", path.display()),
        })
    }

    /// Liveness: the engine answers `/_ping` and every registry accepts TCP.
    pub fn check(&self) -> Result<(), EnvError> {
        let unhealthy = |reason: String| EnvError::Unhealthy { dir: self.dir.clone(), reason };
        ping(&self.dir, &self.docker_host)?;
        for (name, addr) in [("a", &self.registry_a), ("b", &self.registry_b), ("auth", &self.registry_auth)] {
            let parsed =
                addr.parse().map_err(|_| unhealthy(format!("registry {name} address {addr:?} is not host:port")))?;
            TcpStream::connect_timeout(&parsed, Duration::from_secs(2))
                .map_err(|e| unhealthy(format!("registry {name} at {addr}: {e}")))?;
        }
        Ok(())
    }

    /// The engine's unix socket.
    pub fn socket_path(&self) -> Option<PathBuf> {
        self.docker_host.strip_prefix("unix://").map(PathBuf::from)
    }

    /// A `docker` command bound to the private engine (never the system's).
    pub fn docker_command(&self) -> Command {
        docker_command(&self.docker_host)
    }

    /// Runs `docker ARGS` against the private engine; panics with its stderr
    /// unless it succeeds; returns stdout, trimmed.
    pub fn docker(&self, args: &[&str]) -> String {
        checked(&self.try_docker(args), args, "the private engine")
    }

    /// Runs `docker ARGS` and returns its raw output, whatever the status.
    pub fn try_docker(&self, args: &[&str]) -> Output {
        self.docker_command().args(args).output().expect("the docker CLI is installed (scripts/testenv up installs it)")
    }

    /// Environment variables that point lkg's own binaries at this environment.
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        vec![("DOCKER_HOST", self.docker_host.clone())]
    }

    /// Runs `command` in a throwaway busybox container with `volume` at
    /// `/data` and no network: how a test reads or writes a volume without the
    /// app or lkg. Panics unless it succeeds; returns stdout, trimmed.
    pub fn on_volume(&self, volume: &str, command: &[&str]) -> String {
        let mount = format!("{volume}:/data");
        let mut args = vec!["run", "--rm", "--network", "none", "-v", &mount, &self.busybox_image];
        args.extend_from_slice(command);
        self.docker(&args)
    }

    /// Starts busybox container `container` with `volume` at `/data`, no
    /// network, sleeping for ten minutes: a volume in use by a running
    /// container. The test removes it (`docker rm -f`).
    pub fn hold_volume(&self, volume: &str, container: &str) {
        let mount = format!("{volume}:/data");
        self.docker(&[
            "run",
            "-d",
            "--name",
            container,
            "--network",
            "none",
            "-v",
            &mount,
            &self.busybox_image,
            "sleep",
            "600",
        ]);
    }

    /// The never-started helper containers that lkg-warmsnap keeps for `app`
    /// (label `org.lkg.warmsnap.helper=<app>`).
    pub fn warmsnap_helpers(&self, app: &str) -> Vec<String> {
        let label = format!("label={WARMSNAP_HELPER_LABEL}={app}");
        self.docker(&["ps", "-aq", "--filter", &label]).split_whitespace().map(str::to_owned).collect()
    }

    /// Removes `app`'s warmsnap helper containers: each holds the app's volumes,
    /// which cannot be removed while it exists. Best effort, for `Drop`.
    pub fn remove_warmsnap_helpers(&self, app: &str) {
        let label = format!("label={WARMSNAP_HELPER_LABEL}={app}");
        let out = self.try_docker(&["ps", "-aq", "--filter", &label]);
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = self.try_docker(&["rm", "-f", id]);
        }
    }

    /// Removes stack `stack` and all a test leaves of it: its services, the
    /// warmsnap helpers of the app of the same name, and its volumes. Volumes
    /// are freed only once the stack's containers are gone, so this waits for
    /// them, for at most 20 s. Best effort and never panics, for `Drop`;
    /// `scripts/testenv reset` clears whatever is still left.
    pub fn remove_stack(&self, stack: &str) {
        let _ = self.try_docker(&["stack", "rm", stack]);
        let label = format!("label=com.docker.stack.namespace={stack}");
        for _ in 0..100 {
            if self.try_docker(&["ps", "-aq", "--filter", &label]).stdout.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        self.remove_warmsnap_helpers(stack);
        let out = self.try_docker(&["volume", "ls", "-q", "--filter", &label]);
        for volume in String::from_utf8_lossy(&out.stdout).lines() {
            let _ = self.try_docker(&["volume", "rm", "-f", volume]);
        }
    }
}

/// Runs `scripts/testenv ARGS` for the environment in `dir`.
pub(crate) fn run_testenv(dir: &Path, args: &[&str]) -> Result<(), EnvError> {
    let script = testenv_script();
    let out = Command::new(&script)
        .args(args)
        .env("LKG_TESTENV_DIR", dir)
        .env("LKG_TESTENV_QUIET", "1")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| EnvError::StartFailed {
            script: script.clone(),
            status: "not run".to_owned(),
            stderr: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(EnvError::StartFailed {
            script,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(())
}

/// Liveness of the engine at `docker_host` (`unix://` only): `/_ping` answers `OK`.
pub(crate) fn ping(dir: &Path, docker_host: &str) -> Result<(), EnvError> {
    let unhealthy = |reason: String| EnvError::Unhealthy { dir: dir.to_owned(), reason };
    let socket = docker_host
        .strip_prefix("unix://")
        .map(PathBuf::from)
        .ok_or_else(|| unhealthy(format!("DOCKER_HOST {docker_host} is not unix://")))?;
    let ping = (|| -> std::io::Result<String> {
        let mut stream = UnixStream::connect(&socket)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        Ok(response)
    })();
    match ping {
        Ok(r) if r.ends_with("OK") => Ok(()),
        Ok(r) => Err(unhealthy(format!("engine at {} answered /_ping with {r:?}", socket.display()))),
        Err(e) => Err(unhealthy(format!("engine at {}: {e}", socket.display()))),
    }
}

/// The label lkg-warmsnap puts on its helper containers, valued with the app
/// (testkit does not depend on lkg's crates, so it is spelled out here).
const WARMSNAP_HELPER_LABEL: &str = "org.lkg.warmsnap.helper";

/// A `docker` command bound to the engine at `host` (a `DOCKER_HOST` value).
pub(crate) fn docker_command(host: &str) -> Command {
    let mut cmd = Command::new("docker");
    cmd.env("DOCKER_HOST", host).stdin(Stdio::null());
    cmd
}

/// The stdout of a `docker ARGS` run on `engine`, trimmed; panics with its
/// stderr unless it succeeded.
pub(crate) fn checked(out: &Output, args: &[&str], engine: &str) -> String {
    assert!(
        out.status.success(),
        "docker {} on {engine} failed ({}):\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_environment_is_an_error_naming_the_fix_not_a_skip() {
        let dir = tempfile::tempdir().unwrap();
        let err = Env::find(dir.path(), false).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, EnvError::Missing { .. }), "{text}");
        assert!(text.contains("scripts/testenv up"), "{text}");
    }

    #[test]
    fn dead_environment_is_unhealthy() {
        let dir = tempfile::tempdir().unwrap();
        let json = serde_json::json!({
            "dir": dir.path(), "docker_host": format!("unix://{}/docker.sock", dir.path().display()),
            "engine_version": "x", "swarm_node_id": "x", "registry_a": "127.0.0.1:1", "registry_b": "127.0.0.1:1",
            "registry_auth": "127.0.0.1:1", "registry_auth_user": "u", "registry_auth_password": "p",
            "app_image": "a", "app_rootfs": "/nonexistent", "busybox_image": "b", "busybox_rootfs": "/nonexistent"
        });
        std::fs::write(dir.path().join("env.json"), json.to_string()).unwrap();
        let err = Env::find(dir.path(), false).unwrap_err();
        assert!(matches!(err, EnvError::Unhealthy { .. }), "{err}");
    }
}
