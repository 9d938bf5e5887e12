use std::path::PathBuf;
use std::time::Duration;

use crate::{Env, wait_until};

/// The fixture app's swarm health check with the short timings every test
/// uses (checked each second, unhealthy after two failures), as the lines of
/// a compose service at the usual indent: put it under `  app:`.
pub const APP_HEALTHCHECK: &str = r#"    healthcheck:
      test: ["CMD", "/app", "health"]
      interval: 1s
      timeout: 2s
      retries: 2
      start_period: 1s
"#;

/// A swarm stack deployed from a compose text with the docker CLI (an
/// independent peer of lkg's own deploy code), removed when dropped.
///
/// Volumes are kept by `docker stack rm`; [`Stack::remove`] removes them too
/// once the stack's containers are gone. `scripts/testenv reset` clears
/// anything a crashed test left behind.
#[derive(Debug)]
pub struct Stack {
    env: &'static Env,
    /// The stack name (`com.docker.stack.namespace`).
    pub name: String,
    dir: tempfile::TempDir,
    removed: bool,
}

impl Stack {
    /// Writes `compose` to a temp file and runs `docker stack deploy`.
    /// Images are used as they are in the engine (`--resolve-image never`):
    /// fixture images exist only locally.
    pub fn deploy(env: &'static Env, name: &str, compose: &str) -> Stack {
        let dir = tempfile::tempdir().expect("create a temp dir for the compose file");
        let stack = Stack { env, name: name.to_owned(), dir, removed: false };
        stack.redeploy(compose);
        stack
    }

    /// Deploys a new compose text to the same stack (an update).
    pub fn redeploy(&self, compose: &str) {
        let path = self.compose_path();
        std::fs::write(&path, compose).expect("write the compose file");
        let path = path.to_string_lossy().into_owned();
        self.env.docker(&["stack", "deploy", "--resolve-image", "never", "-c", &path, &self.name]);
    }

    /// Where the current compose file is.
    pub fn compose_path(&self) -> PathBuf {
        self.dir.path().join("compose.yml")
    }

    /// `<stack>_<service>`, the swarm service name.
    pub fn service(&self, service: &str) -> String {
        format!("{}_{service}", self.name)
    }

    /// Removes the stack, waits until its containers are gone, then removes its volumes.
    pub fn remove(mut self) {
        self.removed = true;
        let _ = self.env.try_docker(&["stack", "rm", &self.name]);
        let label = format!("label=com.docker.stack.namespace={}", self.name);
        wait_until(
            &format!("containers of stack {} to go", self.name),
            Duration::from_secs(60),
            Duration::from_millis(250),
            || self.env.docker(&["ps", "-aq", "--filter", &label]).is_empty().then_some(()),
        );
        let volumes = self.env.docker(&["volume", "ls", "-q", "--filter", &label]);
        for volume in volumes.lines() {
            let _ = self.env.try_docker(&["volume", "rm", "-f", volume]);
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if !self.removed {
            let _ = self.env.try_docker(&["stack", "rm", &self.name]);
        }
    }
}
