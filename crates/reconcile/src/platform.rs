//! The I/O a reconcile needs, behind one small trait: deploy a version,
//! undeploy, snapshot, restore, probe. [`SwarmPlatform`] is the real one
//! (lkg-swarm and lkg-warmsnap over the Docker engine); tests of the flow
//! use a hand-written fake.
//!
//! How a version reaches the stack: the compose files are the app's recipe,
//! and the version is passed to `docker stack deploy` through compose
//! variable interpolation: `LKG_VERSION` (as given, `1.0.0+2.0.0`) and
//! `LKG_VERSION_TAG` (usable as an image tag, `1.0.0_2.0.0`), plus `LKG_APP`
//! and `LKG_STACK`; a version pinned by digest (`latest@sha256:<hex>`, a
//! [`DigestVersion`](crate::DigestVersion)) also sets `LKG_DIGEST`
//! (`sha256:<hex>`), for `image: example/app@${LKG_DIGEST}`: the stack runs
//! that image, never whatever the tag points to at deploy time. lkg also stamps every service with the coop-cloud
//! identity label `coop-cloud.<stack>.version` (as abra does), so "which
//! version is deployed" has one answer, read back by `lkg-swarm identity`.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use lkg_core::{NoProgress, Progress};
use lkg_swarm::{
    CommandDeployer, ComposeFiles, DeployError, DeployInvocation, DeployRequest, Deployer, DeployerError,
    IdentityError, StackDeployer, Swarm, Verdict,
};
use lkg_warmsnap::remote::{Agent, restore_at, take_at};
use lkg_warmsnap::{AnyStore, LocalStore, RestoreRequest, TakeRequest};

use crate::error::ReconcileError;
use crate::event::Event;
use crate::flow::Reason;
use crate::health::{CheckResult, ProbeRound};
use crate::placement::DataNode;
use crate::spec::{AppSpec, DeploySpec};
use crate::state::SnapshotRef;
use lkg_core::render_chain as chain;

/// How a deploy ended, as reconcile sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeployOutcome {
    /// swarm converged (or nothing changed).
    Converged {
        /// swarm's words.
        detail: String,
    },
    /// The deploy did not converge.
    Failed {
        /// Why, as a code.
        reason: Reason,
        /// What happened.
        detail: String,
    },
}

/// What a reconcile does to the world. Every method is idempotent: a run
/// killed in the middle of one runs it again.
pub trait Platform {
    /// The version the stack is stamped with (`coop-cloud.<stack>.version`),
    /// `None` when the stack is not deployed or carries no label.
    fn deployed_version(&self, spec: &AppSpec) -> impl Future<Output = Result<Option<String>, ReconcileError>>;

    /// Whether the stack has any service.
    fn is_deployed(&self, spec: &AppSpec) -> impl Future<Output = Result<bool, ReconcileError>>;

    /// Whether the stack has volumes.
    fn has_volumes(&self, spec: &AppSpec) -> impl Future<Output = Result<bool, ReconcileError>>;

    /// Which of `names` exist as volumes.
    fn existing_volumes(&self, names: &[String]) -> impl Future<Output = Result<BTreeSet<String>, ReconcileError>>;

    /// Deploys `version` and waits for swarm's verdict.
    fn deploy(
        &self,
        spec: &AppSpec,
        version: &str,
        observer: &dyn for<'e> Progress<Event<'e>>,
    ) -> impl Future<Output = Result<DeployOutcome, ReconcileError>>;

    /// Undeploys the stack, keeping its volumes, and waits until it is gone.
    fn undeploy(&self, spec: &AppSpec) -> impl Future<Output = Result<(), ReconcileError>>;

    /// Snapshots the (undeployed) stack's volumes as the app's last-known-good.
    fn snapshot(&self, spec: &AppSpec, version: &str) -> impl Future<Output = Result<SnapshotRef, ReconcileError>>;

    /// The app's last-known-good snapshot, if any.
    fn current_snapshot(&self, spec: &AppSpec) -> impl Future<Output = Result<Option<SnapshotRef>, ReconcileError>>;

    /// Restores the last-known-good snapshot into the (undeployed) stack's volumes.
    fn restore(&self, spec: &AppSpec) -> impl Future<Output = Result<(), ReconcileError>>;

    /// One round of the spec's health checks against `version`.
    fn probe(&self, spec: &AppSpec, version: &str) -> impl Future<Output = ProbeRound>;

    /// Runs a one-off check command (quick mode's `--check`).
    fn check(&self, spec: &AppSpec, command: &str, version: &str) -> impl Future<Output = CheckResult>;

    /// On a multi-node swarm, the node holding the (deployed) stack's data,
    /// once it is safe to snapshot there and to deploy `target` (whose files
    /// `spec.compose` names); a refusal ([`ReconcileError::Placement`]) when
    /// it is not. `None`: one node, or no known data (see [`crate::placement`]).
    /// Platforms without nodes (tests' fakes) have nothing to find.
    fn locate_data(
        &self,
        spec: &AppSpec,
        target: &str,
    ) -> impl Future<Output = Result<Option<DataNode>, ReconcileError>> {
        let _ = (spec, target);
        std::future::ready(Ok(None))
    }

    /// Whether the engine answers now. A step that failed while it did not
    /// is run again once it answers ([`crate::Reconciler::engine_wait`]).
    /// Platforms without an engine (tests' fakes) always answer.
    fn engine_answers(&self) -> impl Future<Output = bool> {
        std::future::ready(true)
    }
}

/// The real platform: a swarm reached through one engine connection, and
/// the snapshot store: the local one under the state directory unless
/// [`SwarmPlatform::with_store`] names another (a registry).
#[derive(Debug)]
pub struct SwarmPlatform {
    swarm: Swarm,
    host: Option<String>,
    store: AnyStore,
    agent: Agent,
    http: reqwest::Client,
    deployer: Mutex<Option<(DeploySpec, Arc<AppDeployer>)>>,
}

impl SwarmPlatform {
    /// Uses `swarm` and the snapshot store under `state_dir`. The docker CLI
    /// (and a deploy command) talk to the inherited `DOCKER_HOST`: connect
    /// with [`SwarmPlatform::connect_to`] to name the engine for both.
    pub fn new(swarm: Swarm, state_dir: &std::path::Path) -> Result<SwarmPlatform, ReconcileError> {
        Ok(SwarmPlatform {
            swarm,
            host: None,
            store: AnyStore::Local(LocalStore::new(state_dir)),
            agent: Agent::default(),
            http: crate::probe::http_client()?,
            deployer: Mutex::new(None),
        })
    }

    /// Keeps snapshots in `store` instead of the local store (e.g. a
    /// registry every node reaches, `AnyStore::new("oci://...", ...)`).
    #[must_use]
    pub fn with_store(mut self, store: AnyStore) -> SwarmPlatform {
        self.store = store;
        self
    }

    /// Runs snapshots and restores of data on another node with `agent`
    /// (default: [`Agent::default`], from `LKG_AGENT_IMAGE` or `LKG_AGENT`).
    #[must_use]
    pub fn with_agent(mut self, agent: Agent) -> SwarmPlatform {
        self.agent = agent;
        self
    }

    /// The node snapshots and restores of `spec` run on through lkg's
    /// agent: its data's, when that is not the engine's node.
    fn remote_node(spec: &AppSpec) -> Option<&DataNode> {
        spec.data_node.as_ref().filter(|node| node.remote)
    }

    /// Connects to `DOCKER_HOST` (API version negotiated).
    pub async fn connect(state_dir: &std::path::Path) -> Result<SwarmPlatform, ReconcileError> {
        SwarmPlatform::new(Swarm::connect().await?, state_dir)
    }

    /// Connects to the engine at `host` (`unix:///...` or `tcp://...`); the
    /// docker CLI, deploy commands and health commands get `DOCKER_HOST=host`.
    pub async fn connect_to(host: &str, state_dir: &std::path::Path) -> Result<SwarmPlatform, ReconcileError> {
        let docker = lkg_swarm::docker::connect_to(host).await?;
        Ok(SwarmPlatform { host: Some(host.to_owned()), ..SwarmPlatform::new(Swarm::new(docker), state_dir)? })
    }

    /// The variables for compose, deploy commands and checks, with the
    /// engine's `DOCKER_HOST` when one was named.
    fn variables(&self, spec: &AppSpec, version: &str) -> Vec<(String, String)> {
        let mut vars = variables(spec, version);
        if let Some(host) = &self.host {
            vars.push(("DOCKER_HOST".to_owned(), host.clone()));
        }
        vars
    }

    /// The swarm.
    pub fn swarm(&self) -> &Swarm {
        &self.swarm
    }

    /// The deployer for `spec`, built once per deploy settings (the stack
    /// deployer remembers whether its CLI knows `--detach`).
    fn deployer(&self, spec: &DeploySpec) -> Arc<AppDeployer> {
        let mut cached = self.deployer.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((settings, deployer)) = cached.as_ref()
            && settings == spec
        {
            return Arc::clone(deployer);
        }
        let deployer = Arc::new(AppDeployer::for_spec(spec, self.host.as_deref()));
        *cached = Some((spec.clone(), Arc::clone(&deployer)));
        deployer
    }
}

/// The variables every compose file and check command sees.
pub(crate) fn variables(spec: &AppSpec, version: &str) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = spec.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    vars.extend([
        ("LKG_APP".to_owned(), spec.app.as_str().to_owned()),
        ("LKG_STACK".to_owned(), spec.stack.clone()),
        ("LKG_VERSION".to_owned(), version.to_owned()),
        ("LKG_VERSION_TAG".to_owned(), crate::version_tag(version)),
    ]);
    if let Some(pinned) = crate::DigestVersion::parse(version) {
        vars.push(("LKG_DIGEST".to_owned(), pinned.digest().to_owned()));
    }
    vars
}

/// The identity label lkg stamps, the one `lkg-swarm identity` and abra read.
pub fn version_label(stack: &str) -> String {
    format!("coop-cloud.{stack}.version")
}

/// A compose overlay that stamps `version` on every service the files
/// declare. `deploy.labels` maps merge across `-c` files, so it adds the
/// label and changes nothing else; it repeats the files' `version:` because
/// docker/cli refuses to merge files whose versions differ.
///
/// With a data node to pin to, the overlay also adds `node.id == <node>` to
/// the stateful services' placement constraints (lists are appended across
/// `-c` files, so it is one more constraint that must hold).
pub(crate) fn identity_overlay(
    compose: &ComposeFiles,
    stack: &str,
    version: &str,
    data_node: Option<&DataNode>,
) -> String {
    let constraints = data_node.map(DataNode::overlay_constraints).unwrap_or_default();
    let header = if constraints.is_empty() {
        format!("Generated by lkg-reconcile: stamps version {version} on every service.")
    } else {
        format!(
            "Generated by lkg-reconcile: stamps version {version} on every service and holds {} on the data's node.",
            constraints.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    };
    compose.label_and_constraint_overlay(&version_label(stack), version, &header, &constraints)
}

fn verdict_reason(verdict: Verdict) -> Reason {
    match verdict {
        Verdict::RolledBack => Reason::RolledBack,
        Verdict::Paused => Reason::Paused,
        Verdict::RollbackPaused => Reason::RollbackPaused,
        Verdict::DeadlineExceeded => Reason::DeadlineExceeded,
        Verdict::Failed | Verdict::TaskFailed => Reason::TaskFailed,
        Verdict::Superseded => Reason::Superseded,
        _ => Reason::Error,
    }
}

impl Platform for SwarmPlatform {
    async fn deployed_version(&self, spec: &AppSpec) -> Result<Option<String>, ReconcileError> {
        match self.swarm.identity(&spec.stack, None).await {
            Ok(identity) => Ok(identity.version),
            Err(IdentityError::NoService { .. } | IdentityError::Unlabelled { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn is_deployed(&self, spec: &AppSpec) -> Result<bool, ReconcileError> {
        Ok(!lkg_swarm::docker::stack_services(self.swarm.docker(), &spec.stack).await?.is_empty())
    }

    async fn has_volumes(&self, spec: &AppSpec) -> Result<bool, ReconcileError> {
        if let Some(node) = Self::remote_node(spec) {
            // The engine lkg talks to lists its own volumes only.
            return Ok(!node.volumes.is_empty());
        }
        Ok(!self.swarm.volumes(&spec.stack).await?.is_empty())
    }

    async fn existing_volumes(&self, names: &[String]) -> Result<BTreeSet<String>, ReconcileError> {
        Ok(self.swarm.existing_volumes(names).await?)
    }

    async fn deploy(
        &self,
        spec: &AppSpec,
        version: &str,
        observer: &dyn for<'e> Progress<Event<'e>>,
    ) -> Result<DeployOutcome, ReconcileError> {
        let compose = ComposeFiles::load(&spec.compose)?;
        let dir = tempfile::Builder::new()
            .prefix("lkg-reconcile-")
            .tempdir()
            .map_err(|source| crate::files::state_io("create a temp dir in", &std::env::temp_dir(), source))?;
        let overlay = dir.path().join("identity.yml");
        fs_err::write(&overlay, identity_overlay(&compose, &spec.stack, version, spec.data_node.as_ref()))
            .map_err(|source| crate::files::state_io("write", &overlay, source))?;
        let mut files: Vec<PathBuf> = spec.compose.clone();
        files.push(overlay);
        let mut request = DeployRequest::new(&spec.stack, files)
            .timeout(spec.deploy.timeout)
            .task_failure_limit(spec.deploy.max_task_failures);
        for (key, value) in self.variables(spec, version) {
            request = request.env(key, value);
        }
        let progress = |event: &lkg_swarm::ProgressEvent<'_>| observer.report(&Event::Deploy(*event));
        let deployer = self.deployer(&spec.deploy);
        match self.swarm.deploy(&*deployer, &request, &progress).await {
            Ok(report) if report.verdict.is_success() => {
                // swarm's verdict knows nothing of volumes: a stateful task
                // that converged on another node runs on an empty volume.
                if let Some(node) = &spec.data_node {
                    let placement = self.swarm.placement(&spec.stack).await?;
                    let misplaced = placement.misplaced(&node.id);
                    if !misplaced.is_empty() {
                        return Ok(DeployOutcome::Failed {
                            reason: Reason::WrongNode,
                            detail: crate::placement::describe_misplaced(&node.id, &misplaced),
                        });
                    }
                }
                let detail: Vec<String> =
                    report.verdict.services.iter().map(|s| format!("{}: {}", s.service, s.reason)).collect();
                Ok(DeployOutcome::Converged { detail: join(&detail) })
            }
            Ok(report) => {
                let detail: Vec<String> = report
                    .verdict
                    .services
                    .iter()
                    .filter(|s| !s.verdict.is_success())
                    .map(|s| {
                        let task = s.task_errors.first().map(|e| format!(" (task: {e})")).unwrap_or_default();
                        format!("{} {}: {}{task}", s.service, s.verdict, s.reason)
                    })
                    .collect();
                Ok(DeployOutcome::Failed { reason: verdict_reason(report.verdict.verdict), detail: join(&detail) })
            }
            Err(e @ DeployError::Deployer { .. }) => {
                Ok(DeployOutcome::Failed { reason: Reason::DeployError, detail: chain(&e) })
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn undeploy(&self, spec: &AppSpec) -> Result<(), ReconcileError> {
        self.swarm.undeploy(&spec.stack, Some(spec.deploy.timeout)).await?;
        Ok(())
    }

    async fn snapshot(&self, spec: &AppSpec, version: &str) -> Result<SnapshotRef, ReconcileError> {
        let request = TakeRequest::new(spec.app.clone(), &spec.stack)
            .map_err(lkg_warmsnap::SnapError::from)?
            .version(version)
            .access(spec.deploy.snapshot_access);
        let (node, volumes) = match Self::remote_node(spec) {
            Some(node) => (Some(node.id.as_str()), node.volumes.iter().cloned().collect()),
            None => (None, Vec::new()),
        };
        let docker = self.swarm.docker();
        let taken = take_at(docker, &self.store, &self.agent, &request, node, &volumes, &NoProgress).await?;
        Ok(SnapshotRef { version: taken.meta.version.clone(), ts: taken.meta.ts, location: taken.location })
    }

    async fn current_snapshot(&self, spec: &AppSpec) -> Result<Option<SnapshotRef>, ReconcileError> {
        let shown = lkg_warmsnap::show(&self.store, &spec.app).await?;
        Ok(shown.map(|s| SnapshotRef { version: s.meta.version.clone(), ts: s.meta.ts, location: s.location }))
    }

    async fn restore(&self, spec: &AppSpec) -> Result<(), ReconcileError> {
        let request = RestoreRequest::new(spec.app.clone())
            .stack(&spec.stack)
            .map_err(lkg_warmsnap::SnapError::from)?
            .access(spec.deploy.snapshot_access);
        let node = Self::remote_node(spec).map(|node| node.id.as_str());
        restore_at(self.swarm.docker(), &self.store, &self.agent, &request, node, &NoProgress).await?;
        Ok(())
    }

    async fn probe(&self, spec: &AppSpec, version: &str) -> ProbeRound {
        let health = &spec.health;
        let mut checks = Vec::new();
        for check in &health.http {
            checks.push(crate::probe::http(&self.http, check, version, health.probe_timeout).await);
        }
        let vars = self.variables(spec, version);
        for command in &health.commands {
            checks.push(crate::probe::command(command, &vars, version, health.probe_timeout).await);
        }
        if health.tasks {
            checks.push(crate::probe::tasks(&self.swarm, &spec.stack).await);
        }
        if let Some(node) = &spec.data_node {
            checks.push(match self.swarm.placement(&spec.stack).await {
                Ok(placement) => node.check(&placement),
                Err(e) => CheckResult { check: "placement".to_owned(), pass: false, detail: chain(&e) },
            });
        }
        ProbeRound { checks }
    }

    async fn locate_data(&self, spec: &AppSpec, target: &str) -> Result<Option<DataNode>, ReconcileError> {
        let placement = self.swarm.placement(&spec.stack).await?;
        if !placement.is_multi_node() {
            return Ok(None);
        }
        let compose = ComposeFiles::load(&spec.compose)?;
        let constraints = compose.placement_constraints(&self.variables(spec, target));
        let location = placement.check(Some(&constraints), spec.deploy.pin_to_data_node)?;
        let node = DataNode::from_location(location);
        if let Some(node) = node.as_ref().filter(|n| n.remote)
            && matches!(self.store, AnyStore::Local(_))
        {
            let describe = |id: &str, hostname: &str| {
                if hostname.is_empty() { id.to_owned() } else { format!("{id} ({hostname})") }
            };
            let local = placement.nodes.iter().find(|n| n.id == placement.local_node);
            return Err(lkg_swarm::PlacementRefusal {
                stack: spec.stack.clone(),
                problems: vec![lkg_swarm::PlacementProblem::NotLocal {
                    node: describe(&node.id, &node.hostname),
                    local: local.map_or_else(|| placement.local_node.clone(), lkg_swarm::SwarmNode::describe),
                }],
            }
            .into());
        }
        Ok(node)
    }

    async fn engine_answers(&self) -> bool {
        let ping = self.swarm.docker().ping();
        matches!(tokio::time::timeout(std::time::Duration::from_secs(2), ping).await, Ok(Ok(_)))
    }

    async fn check(&self, spec: &AppSpec, command: &str, version: &str) -> CheckResult {
        // A user check may exercise the app at length: give it the deploy timeout.
        crate::probe::command(command, &self.variables(spec, version), version, spec.deploy.timeout).await
    }
}

fn join(lines: &[String]) -> String {
    lines.join("; ")
}

/// `docker stack deploy`, or a command in its place.
#[derive(Debug)]
enum AppDeployer {
    Stack(StackDeployer),
    Command(CommandDeployer),
}

impl AppDeployer {
    fn for_spec(spec: &DeploySpec, host: Option<&str>) -> AppDeployer {
        if let Some(deployer) = spec.command.as_deref().and_then(CommandDeployer::parse) {
            return AppDeployer::Command(deployer);
        }
        let mut deployer =
            StackDeployer::new().resolve_image(spec.resolve_image).with_registry_auth(spec.registry_auth);
        if let Some(docker) = &spec.docker {
            deployer = deployer.program(docker);
        }
        if let Some(host) = host {
            deployer = deployer.host(host);
        }
        AppDeployer::Stack(deployer)
    }
}

impl Deployer for AppDeployer {
    async fn deploy(&self, invocation: &DeployInvocation<'_>) -> Result<(), DeployerError> {
        match self {
            AppDeployer::Stack(d) => d.deploy(invocation).await,
            AppDeployer::Command(d) => d.deploy(invocation).await,
        }
    }

    fn describe(&self) -> String {
        match self {
            AppDeployer::Stack(d) => d.describe(),
            AppDeployer::Command(d) => d.describe(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_overlay_stamps_every_service_and_keeps_the_version() {
        let compose = ComposeFiles::parse(&[(
            PathBuf::from("c.yml"),
            "version: '3.8'\nservices:\n  app: {image: x}\n  db: {image: y}\n".to_owned(),
        )])
        .unwrap();
        insta::assert_snapshot!(identity_overlay(&compose, "shop_example_org", "1.0.0+2.0.0", None), @r"
        # Generated by lkg-reconcile: stamps version 1.0.0+2.0.0 on every service.
        version: '3.8'
        services:
          app:
            deploy:
              labels:
                coop-cloud.shop_example_org.version: 1.0.0+2.0.0
          db:
            deploy:
              labels:
                coop-cloud.shop_example_org.version: 1.0.0+2.0.0
        ");
    }
}
