//! The multi-node swarm of `scripts/testenv up --nodes 3`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde::Deserialize;

use crate::env::EnvError;

/// How many nodes the tests' multi-node swarm has.
pub const NODES: usize = 3;

/// One node of the multi-node swarm: its own dockerd in network namespace
/// `lkg-node<i>`.
#[derive(Debug, Clone, Deserialize)]
pub struct Node {
    /// `node1`, `node2`, ...: also its label `lkg-test.node` (every node has
    /// the machine's hostname, so constraints name nodes by id or label).
    pub name: String,
    /// `DOCKER_HOST` of its engine, `unix://.../docker.sock`.
    pub docker_host: String,
    /// Its swarm node id.
    pub node_id: String,
    /// Its address on the bridge (`10.99.0.1<i>`): where its `mode: host`
    /// ports are reached from the tests.
    pub addr: String,
    /// Whether it is the manager (node 1).
    pub manager: bool,
}

impl Node {
    /// A `docker` command bound to this node's engine.
    pub fn docker_command(&self) -> Command {
        crate::env::docker_command(&self.docker_host)
    }

    /// Runs `docker ARGS` on this node; panics unless it succeeds; stdout, trimmed.
    pub fn docker(&self, args: &[&str]) -> String {
        crate::env::checked(&self.try_docker(args), args, &self.name)
    }

    /// Runs `docker ARGS` on this node and returns its output, whatever the status.
    pub fn try_docker(&self, args: &[&str]) -> Output {
        self.docker_command().args(args).output().expect("the docker CLI is installed")
    }

    /// The constraint that holds a service on this node (by its id).
    pub fn constraint(&self) -> String {
        format!("node.id == {}", self.node_id)
    }
}

/// The multi-node swarm, as `scripts/testenv up --nodes 3` wrote it to
/// `nodes/env.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct MultiNode {
    /// Its directory (`$LKG_TESTENV_DIR/nodes`).
    pub dir: PathBuf,
    /// `DOCKER_HOST` of the manager (node 1).
    pub manager_host: String,
    /// A plain-HTTP registry every node reaches (`10.99.0.1:5099`) and trusts.
    pub registry: String,
    /// The fixture app image on every node.
    pub app_image: String,
    /// The app's root filesystem tar.
    pub app_rootfs: PathBuf,
    /// The busybox image on every node.
    pub busybox_image: String,
    /// lkg's static agent (scripts/build-agent), which lkg runs as a job
    /// on a volume's node.
    pub agent: PathBuf,
    /// The nodes, manager first.
    pub nodes: Vec<Node>,
}

/// The multi-node swarm, started if needed (`scripts/testenv up --nodes 3`).
/// Panics (failing the test) with the reason when it is missing and cannot be
/// started, under `CI=true` or not: tests never skip. `LKG_TESTENV_AUTOSTART=0`
/// forbids starting it.
pub fn multi_node() -> &'static MultiNode {
    static NODES_ENV: OnceLock<MultiNode> = OnceLock::new();
    NODES_ENV.get_or_init(|| {
        let autostart = std::env::var("LKG_TESTENV_AUTOSTART").map_or(true, |v| v != "0");
        match MultiNode::find(&crate::env::env_dir(), autostart) {
            Ok(env) => env,
            Err(e) => panic!(
                "lkg multi-node test environment unavailable (CI={}): {e}",
                std::env::var("CI").unwrap_or_default()
            ),
        }
    })
}

impl MultiNode {
    /// Reads the swarm under `dir/nodes` and checks every node answers; when
    /// not and `autostart` is set, runs `scripts/testenv up --nodes 3` once.
    pub fn find(dir: &Path, autostart: bool) -> Result<MultiNode, EnvError> {
        match MultiNode::load(dir).and_then(|env| env.check().map(|()| env)) {
            Ok(env) => Ok(env),
            Err(e) if !autostart => Err(e),
            Err(_) => {
                crate::env::run_testenv(dir, &["up", "--nodes", &NODES.to_string()])?;
                let env = MultiNode::load(dir)?;
                env.check()?;
                Ok(env)
            }
        }
    }

    /// Reads `nodes/env.json` without checking liveness.
    pub fn load(dir: &Path) -> Result<MultiNode, EnvError> {
        let path = dir.join("nodes/env.json");
        let missing = |reason: String| EnvError::Missing { dir: dir.to_owned(), reason };
        let text = std::fs::read_to_string(&path).map_err(|e| {
            missing(format!("{}: {e} (the multi-node swarm: scripts/testenv up --nodes {NODES})", path.display()))
        })?;
        let env: MultiNode =
            serde_json::from_str(&text).map_err(|e| missing(format!("{} is malformed: {e}", path.display())))?;
        if env.nodes.len() < NODES {
            return Err(missing(format!("{} lists {} nodes, the tests need {NODES}", path.display(), env.nodes.len())));
        }
        Ok(env)
    }

    /// Liveness: every node's engine answers `/_ping`.
    pub fn check(&self) -> Result<(), EnvError> {
        for node in &self.nodes {
            crate::env::ping(&self.dir, &node.docker_host)?;
        }
        Ok(())
    }

    /// The manager (node 1).
    pub fn manager(&self) -> &Node {
        &self.nodes[0]
    }

    /// Node `i` (1-based, as in `node<i>`).
    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i - 1]
    }

    /// The node with swarm id `id`.
    pub fn by_id(&self, id: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.node_id == id)
    }

    /// Environment variables that point lkg's binaries at the manager.
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        vec![("DOCKER_HOST", self.manager_host.clone()), ("LKG_AGENT", self.agent.display().to_string())]
    }

    /// `docker ARGS` against the manager (panics unless it succeeds).
    pub fn docker(&self, args: &[&str]) -> String {
        self.manager().docker(args)
    }

    /// Imports the fixture app `app` into every node (a swarm node runs only
    /// images it has; none can be pulled here), returning its reference.
    pub fn import(&self, app: &crate::App) -> String {
        let mut reference = String::new();
        for node in &self.nodes {
            reference =
                app.import_into(&self.app_rootfs, &self.dir, |args| node.docker(args), |args| node.try_docker(args));
        }
        reference
    }

    /// The node ids running tasks of `service` (desired state running).
    pub fn task_nodes(&self, service: &str) -> Vec<String> {
        let out = self.docker(&["service", "ps", service, "--filter", "desired-state=running", "--format", "{{.ID}}"]);
        let mut nodes: Vec<String> = out
            .lines()
            .filter(|l| !l.is_empty())
            .map(|task| self.docker(&["inspect", task, "--format", "{{.NodeID}}"]))
            .collect();
        nodes.sort();
        nodes.dedup();
        nodes
    }

    /// Kills worker `i`'s engine with SIGKILL, its containers with it (a
    /// lost node): `scripts/testenv kill-node i`. [`MultiNode::revive`]
    /// starts it again.
    pub fn kill_node(&self, i: usize) {
        crate::env::run_testenv(&crate::env::env_dir(), &["kill-node", &i.to_string()])
            .unwrap_or_else(|e| panic!("scripts/testenv kill-node {i}: {e}"));
    }

    /// Starts the engines that are not running (`scripts/testenv up --nodes
    /// 3`) and waits until the manager lists every node `Ready` again.
    pub fn revive(&self) {
        crate::env::run_testenv(&crate::env::env_dir(), &["up", "--nodes", &NODES.to_string()])
            .unwrap_or_else(|e| panic!("scripts/testenv up --nodes {NODES}: {e}"));
        crate::wait_until(
            "every node to be Ready",
            std::time::Duration::from_secs(120),
            std::time::Duration::from_millis(500),
            || {
                let listed = self.docker(&["node", "ls", "--format", "{{.Status}}"]);
                (listed.lines().count() == self.nodes.len() && listed.lines().all(|l| l == "Ready")).then_some(())
            },
        );
    }

    /// Removes stack `stack` and its volumes on every node. Best effort,
    /// never panics, for `Drop`; waits at most 20 s per node for its containers.
    pub fn remove_stack(&self, stack: &str) {
        let _ = self.manager().try_docker(&["stack", "rm", stack]);
        let label = format!("label=com.docker.stack.namespace={stack}");
        for node in &self.nodes {
            for _ in 0..100 {
                if node.try_docker(&["ps", "-aq", "--filter", &label]).stdout.is_empty() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            let helpers =
                node.try_docker(&["ps", "-aq", "--filter", &format!("label=org.lkg.warmsnap.helper={stack}")]);
            for id in String::from_utf8_lossy(&helpers.stdout).split_whitespace() {
                let _ = node.try_docker(&["rm", "-f", id]);
            }
            let out = node.try_docker(&["volume", "ls", "-q", "--filter", &label]);
            for volume in String::from_utf8_lossy(&out.stdout).lines() {
                let _ = node.try_docker(&["volume", "rm", "-f", volume]);
            }
        }
    }
}
