//! One stack's lifecycle on a swarm: deploy with a verdict, status,
//! identity, prune, volumes, undeploy.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use lkg_core::{Classify, FailureKind, NoProgress, Progress};

use bollard::Docker;
use bollard::models::Volume;
use bollard::query_parameters::{
    InspectContainerOptions, ListConfigsOptionsBuilder, ListContainersOptionsBuilder, ListNetworksOptionsBuilder,
    ListSecretsOptionsBuilder, ListServicesOptionsBuilder, ListTasksOptions,
};
use jiff::Timestamp;
use serde::Serialize;

use crate::DeployId;
use crate::compose::{ComposeError, ComposeFiles};
use crate::deployer::{DeployInvocation, Deployer, DeployerError};
use crate::docker::{ConnectError, QueryError, STACK_NAMESPACE_LABEL, stack_services, stack_volumes};
use crate::identity::Identity;
use crate::observe::{ServiceMode, UpdateStatus};
use crate::prune::{PruneOutcome, PrunePlan};
use crate::verdict::{Ownership, Prior, ServiceWatch, StackVerdict, task_errors};
use crate::watch::{ProgressEvent, WatchOptions, observe_stack, watch};

/// A deploy to run: which stack, from which compose files, how long to wait.
#[derive(Debug, Clone)]
pub struct DeployRequest {
    /// The stack name.
    pub stack: String,
    /// Compose files in `-c` order.
    pub compose: Vec<PathBuf>,
    /// Extra environment for the deployer (compose variable interpolation).
    pub env: Vec<(String, String)>,
    /// The deadline for a verdict, from the moment the deployer returns.
    pub timeout: Duration,
    /// Remove services the compose files no longer declare, once the deploy converged.
    pub prune: bool,
    /// How the watch polls.
    pub watch: WatchOptions,
    /// Failed tasks of this deploy after which a service not all running is
    /// `task_failed` (0: wait for the deadline); default 3.
    pub task_failure_limit: usize,
}

impl DeployRequest {
    /// A request with a 5 minute deadline, no prune.
    pub fn new(stack: impl Into<String>, compose: impl IntoIterator<Item = impl Into<PathBuf>>) -> DeployRequest {
        DeployRequest {
            stack: stack.into(),
            compose: compose.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            timeout: Duration::from_secs(300),
            prune: false,
            watch: WatchOptions::default(),
            task_failure_limit: crate::verdict::DEFAULT_TASK_FAILURE_LIMIT,
        }
    }

    /// Sets the deadline.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> DeployRequest {
        self.timeout = timeout;
        self
    }

    /// Sets how many failed tasks of this deploy make a service that is not
    /// all running `task_failed` (0: wait for the deadline).
    #[must_use]
    pub fn task_failure_limit(mut self, limit: usize) -> DeployRequest {
        self.task_failure_limit = limit;
        self
    }

    /// Prunes orphans after a successful deploy.
    #[must_use]
    pub fn prune(mut self, prune: bool) -> DeployRequest {
        self.prune = prune;
        self
    }

    /// Adds an environment variable for the deployer.
    #[must_use]
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> DeployRequest {
        self.env.push((key.into(), value.into()));
        self
    }
}

/// What a deploy did and how it ended.
#[derive(Debug, Clone, Serialize)]
pub struct DeployReport {
    /// The stack.
    pub stack: String,
    /// This deploy's id, stamped on every service it declares.
    pub deploy_id: DeployId,
    /// The deployer that applied it.
    pub deployer: String,
    /// The engine's clock when the deploy began.
    #[serde(serialize_with = "display")]
    pub started_at: Timestamp,
    /// The verdict, per service and for the stack.
    #[serde(flatten)]
    pub verdict: StackVerdict,
    /// The prune, when one was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prune: Option<PruneOutcome>,
}

fn display<S: serde::Serializer>(value: &impl std::fmt::Display, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

/// A deploy could not run or could not be watched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeployError {
    /// The stack name is not usable.
    #[error("invalid stack name {stack:?}: use letters, digits, `_`, `-` and `.` only")]
    InvalidStack {
        /// The name given.
        stack: String,
    },
    /// The compose files cannot be read.
    #[error(transparent)]
    Compose(#[from] ComposeError),
    /// The deploy-id overlay could not be written.
    #[error("cannot write the deploy-id overlay {path}")]
    Overlay {
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The engine could not be queried.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// The deployer failed. Services in `applied` already carry this deploy's
    /// id: the stack is partly updated.
    #[error("{source}{}", applied_note(applied))]
    Deployer {
        /// The deployer's error.
        #[source]
        source: DeployerError,
        /// Services whose spec this deploy already changed.
        applied: Vec<String>,
    },
}

fn applied_note(applied: &[String]) -> String {
    if applied.is_empty() {
        "\n  no service was changed".to_owned()
    } else {
        format!("\n  these services were already updated by this deploy: {}; re-run the deploy", applied.join(", "))
    }
}

/// The current state of one service, without waiting.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceState {
    /// `<stack>_<service>`.
    pub service: String,
    /// The deploy id its spec carries.
    pub deploy_id: Option<String>,
    /// The image of its spec.
    pub image: Option<String>,
    /// Its mode.
    #[serde(flatten)]
    pub mode: ServiceMode,
    /// swarm's update status.
    pub update: Option<UpdateStatus>,
    /// Tasks of the current spec that run.
    pub running: u64,
    /// Tasks the current spec wants.
    pub desired: u64,
    /// Recent task errors of the current spec.
    pub task_errors: Vec<String>,
}

/// The current state of a stack's services.
#[derive(Debug, Clone, Serialize)]
pub struct StackStatus {
    /// The stack.
    pub stack: String,
    /// Its services, by name.
    pub services: Vec<ServiceState>,
}

/// A running container of a stack whose healthcheck does not report it
/// healthy: `starting` (not passed yet) or `unhealthy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerHealth {
    /// The container's name.
    pub container: String,
    /// Its health status, as the engine reports it.
    pub health: String,
}

/// The identity labels could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The engine could not be queried.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// The stack has no service (by that name).
    #[error("stack {stack} has no service {service}: see `lkg-swarm status --stack {stack}`")]
    NoService {
        /// The stack.
        stack: String,
        /// The service asked for (or "at all").
        service: String,
    },
    /// No service carries `coop-cloud.<stack>.*` labels.
    #[error("no service of stack {stack} carries coop-cloud.{stack}.* labels: was it deployed with abra?")]
    Unlabelled {
        /// The stack.
        stack: String,
    },
}

/// What an undeploy removed and kept.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UndeployReport {
    /// The stack.
    pub stack: String,
    /// Removed services.
    pub services: Vec<String>,
    /// Removed networks.
    pub networks: Vec<String>,
    /// Removed secrets and configs.
    pub secrets_and_configs: Vec<String>,
    /// Volumes of the stack, kept.
    pub kept_volumes: Vec<String>,
    /// Whether lkg waited until every task, container and network was gone.
    pub waited: bool,
    /// Objects not removed yet (without `--wait`: networks still in use).
    pub left: Vec<String>,
}

/// An undeploy failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UndeployError {
    /// The engine could not be queried.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// The stack was not gone within the wait.
    #[error("stack {stack} was not gone after {}s: still there: {}", waited.as_secs(), remaining.join(", "))]
    Timeout {
        /// The stack.
        stack: String,
        /// How long lkg waited.
        waited: Duration,
        /// What remained.
        remaining: Vec<String>,
    },
}

/// A Docker swarm, reached through one engine connection.
#[derive(Debug, Clone)]
pub struct Swarm {
    docker: Docker,
}

impl Swarm {
    /// Uses an existing connection (from [`crate::docker::connect`]).
    pub fn new(docker: Docker) -> Swarm {
        Swarm { docker }
    }

    /// Connects to `DOCKER_HOST` and negotiates the API version.
    pub async fn connect() -> Result<Swarm, ConnectError> {
        Ok(Swarm::new(crate::docker::connect().await?))
    }

    /// The engine connection.
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// Deploys `request.stack` with `deployer`, stamped with a new deploy id,
    /// and watches until every declared service has a verdict.
    ///
    /// `Ok` carries any verdict, good or bad; `Err` means lkg could not
    /// deploy or could not watch.
    pub async fn deploy<D: Deployer + Sync>(
        &self,
        deployer: &D,
        request: &DeployRequest,
        progress: &dyn for<'e> Progress<ProgressEvent<'e>>,
    ) -> Result<DeployReport, DeployError> {
        validate_stack(&request.stack)?;
        let compose = ComposeFiles::load(&request.compose)?;
        let names: Vec<String> = compose.services().iter().map(|s| format!("{}_{s}", request.stack)).collect();
        let deploy_id = DeployId::generate();

        let since = self.engine_time().await?;
        let before = observe_stack(&self.docker, &request.stack, Some(&names)).await?;

        let dir = tempfile::Builder::new()
            .prefix("lkg-deploy-")
            .tempdir()
            .map_err(|source| DeployError::Overlay { path: std::env::temp_dir(), source })?;
        let overlay = dir.path().join(format!("{deploy_id}.yml"));
        fs_err::write(&overlay, compose.deploy_overlay(&deploy_id))
            .map_err(|source| DeployError::Overlay { path: overlay.clone(), source })?;
        let mut files = compose.paths().to_vec();
        files.push(overlay.clone());

        let describe = deployer.describe();
        progress.report(&ProgressEvent::Deploying { deploy_id: &deploy_id, deployer: &describe });
        let invocation = DeployInvocation {
            stack: &request.stack,
            files: &files,
            overlay: &overlay,
            deploy_id: &deploy_id,
            env: &request.env,
        };
        if let Err(source) = deployer.deploy(&invocation).await {
            let after = observe_stack(&self.docker, &request.stack, Some(&names)).await.unwrap_or_default();
            let applied = after
                .values()
                .filter(|o| o.deploy_id.as_deref() == Some(deploy_id.as_str()))
                .map(|o| o.name.clone())
                .collect();
            return Err(DeployError::Deployer { source, applied });
        }
        drop(dir);
        progress.report(&ProgressEvent::Applied);

        let watches = names
            .iter()
            .map(|name| {
                let prior = before.get(name).map(|o| Prior { deploy_id: o.deploy_id.clone(), spec: o.spec.clone() });
                ServiceWatch::new(name, Ownership { deploy_id: deploy_id.clone(), since, prior }, request.timeout)
                    .task_failure_limit(request.task_failure_limit)
            })
            .collect();
        let verdict = watch(&self.docker, &request.stack, watches, since, request.watch, progress).await?;

        let prune = if !request.prune {
            None
        } else if verdict.is_success() {
            Some(self.prune_with(&request.stack, &compose, progress).await?)
        } else {
            Some(PruneOutcome::Skipped {
                reason: format!("the deploy did not converge ({}); orphans are kept until one does", verdict.verdict),
            })
        };
        Ok(DeployReport {
            stack: request.stack.clone(),
            deploy_id,
            deployer: describe,
            started_at: since,
            verdict,
            prune,
        })
    }

    /// The engine's clock: update statuses are stamped by the manager, so
    /// "after this deploy began" is judged on the engine's time, not ours.
    async fn engine_time(&self) -> Result<Timestamp, QueryError> {
        let info = self
            .docker
            .info()
            .await
            .map_err(|source| QueryError::Engine { what: "read the engine's clock (/info)".to_owned(), source })?;
        Ok(info.system_time.as_deref().and_then(crate::observe::parse_time).unwrap_or_else(Timestamp::now))
    }

    /// Each service of the stack as it is now.
    pub async fn status(&self, stack: &str) -> Result<StackStatus, QueryError> {
        let observed = observe_stack(&self.docker, stack, None).await?;
        let services = observed
            .into_values()
            .map(|o| ServiceState {
                service: o.name.clone(),
                deploy_id: o.deploy_id.clone(),
                image: o.image.clone(),
                mode: o.mode,
                update: o.update.clone(),
                running: o.satisfied(),
                desired: o.desired(),
                task_errors: task_errors(&o),
            })
            .collect();
        Ok(StackStatus { stack: stack.to_owned(), services })
    }

    /// The running containers of `stack` on this engine whose healthcheck
    /// reports them `starting` or `unhealthy` (swarm's task state says
    /// "running" for both). A container gone between list and inspect was
    /// replaced, which a later call sees, and is passed over.
    pub async fn unhealthy_containers(&self, stack: &str) -> Result<Vec<ContainerHealth>, QueryError> {
        let filters = HashMap::from([
            ("label", vec![format!("{STACK_NAMESPACE_LABEL}={stack}")]),
            ("status", vec!["running".to_owned()]),
        ]);
        let containers = self
            .docker
            .list_containers(Some(ListContainersOptionsBuilder::default().filters(&filters).build()))
            .await
            .map_err(|source| QueryError::Engine { what: format!("list the containers of stack {stack}"), source })?;
        let mut unhealthy = Vec::new();
        for container in containers {
            let Some(id) = container.id else { continue };
            let inspected = match self.docker.inspect_container(&id, None::<InspectContainerOptions>).await {
                Ok(inspected) => inspected,
                Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => continue,
                Err(source) => return Err(QueryError::Engine { what: format!("inspect container {id}"), source }),
            };
            let health = inspected.state.and_then(|s| s.health).and_then(|h| h.status).map(|s| s.to_string());
            if let Some(health) = health.filter(|h| h == "unhealthy" || h == "starting") {
                let container = inspected.name.unwrap_or(id).trim_start_matches('/').to_owned();
                unhealthy.push(ContainerHealth { container, health });
            }
        }
        Ok(unhealthy)
    }

    /// Which of the volumes `names` exist on this engine.
    pub async fn existing_volumes(&self, names: &[String]) -> Result<BTreeSet<String>, QueryError> {
        let mut found = BTreeSet::new();
        for name in names {
            match self.docker.inspect_volume(name).await {
                Ok(_) => {
                    found.insert(name.clone());
                }
                Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {}
                Err(source) => return Err(QueryError::Engine { what: format!("inspect volume {name}"), source }),
            }
        }
        Ok(found)
    }

    /// The deployed identity: of `service` (short or full name), else of the
    /// first labelled service (`<stack>_app` first).
    pub async fn identity(&self, stack: &str, service: Option<&str>) -> Result<Identity, IdentityError> {
        let mut services: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for s in stack_services(&self.docker, stack).await? {
            if let Some(spec) = s.spec {
                services.insert(spec.name.unwrap_or_default(), spec.labels.unwrap_or_default().into_iter().collect());
            }
        }
        if let Some(wanted) = service {
            let full =
                if wanted.starts_with(&format!("{stack}_")) { wanted.to_owned() } else { format!("{stack}_{wanted}") };
            let labels = services
                .get(&full)
                .ok_or_else(|| IdentityError::NoService { stack: stack.to_owned(), service: wanted.to_owned() })?;
            return Ok(Identity::from_labels(stack, &full, labels));
        }
        if services.is_empty() {
            return Err(IdentityError::NoService { stack: stack.to_owned(), service: "at all".to_owned() });
        }
        let app = format!("{stack}_app");
        let mut candidates: Vec<Identity> = services
            .iter()
            .map(|(name, labels)| Identity::from_labels(stack, name, labels))
            .filter(Identity::is_labelled)
            .collect();
        candidates.sort_by_key(|i| i.service != app);
        candidates.into_iter().next().ok_or_else(|| IdentityError::Unlabelled { stack: stack.to_owned() })
    }

    /// Removes services of `stack` that `compose` does not declare.
    pub async fn prune(&self, stack: &str, compose: &ComposeFiles) -> Result<PruneOutcome, QueryError> {
        self.prune_with(stack, compose, &NoProgress).await
    }

    async fn prune_with(
        &self,
        stack: &str,
        compose: &ComposeFiles,
        progress: &dyn for<'e> Progress<ProgressEvent<'e>>,
    ) -> Result<PruneOutcome, QueryError> {
        let existing: Vec<String> = stack_services(&self.docker, stack)
            .await?
            .into_iter()
            .filter_map(|s| s.spec.and_then(|s| s.name))
            .collect();
        let plan = PrunePlan::new(stack, compose.services(), existing.iter().map(String::as_str));
        for service in &plan.remove {
            match self.docker.delete_service(service).await {
                Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {}
                Err(source) => {
                    return Err(QueryError::Engine { what: format!("remove orphan service {service}"), source });
                }
            }
            progress.report(&ProgressEvent::Removed { service });
        }
        Ok(PruneOutcome::Pruned { removed: plan.remove, kept: plan.keep })
    }

    /// The stack's volumes (by the stack label).
    pub async fn volumes(&self, stack: &str) -> Result<Vec<Volume>, QueryError> {
        stack_volumes(&self.docker, stack).await
    }

    /// Whether any service of the stack has a running task.
    pub async fn is_running(&self, stack: &str) -> Result<bool, QueryError> {
        let filters = HashMap::from([("label", vec![format!("{STACK_NAMESPACE_LABEL}={stack}")])]);
        let services = self
            .docker
            .list_services(Some(ListServicesOptionsBuilder::default().filters(&filters).status(true).build()))
            .await
            .map_err(|source| QueryError::Engine { what: format!("list the services of stack {stack}"), source })?;
        Ok(services.iter().any(|s| s.service_status.as_ref().and_then(|st| st.running_tasks).unwrap_or(0) > 0))
    }

    /// Removes the stack's services, networks, secrets and configs, keeping
    /// its volumes. With `wait`, returns only once every task and container
    /// of the stack and its networks are gone (then its volumes are free).
    pub async fn undeploy(&self, stack: &str, wait: Option<Duration>) -> Result<UndeployReport, UndeployError> {
        let query = |what: String| move |source| QueryError::Engine { what, source };
        let label = HashMap::from([("label".to_owned(), vec![format!("{STACK_NAMESPACE_LABEL}={stack}")])]);
        let mut report =
            UndeployReport { stack: stack.to_owned(), waited: wait.is_some(), ..UndeployReport::default() };

        let services = stack_services(&self.docker, stack).await?;
        let service_ids: HashSet<String> = services.iter().filter_map(|s| s.id.clone()).collect();
        for service in &services {
            let name = service.spec.as_ref().and_then(|s| s.name.clone()).unwrap_or_default();
            match self.docker.delete_service(service.id.as_deref().unwrap_or(&name)).await {
                Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {}
                Err(source) => return Err(query(format!("remove service {name}"))(source).into()),
            }
            report.services.push(name);
        }
        report.services.sort();

        let started = tokio::time::Instant::now();
        if let Some(wait) = wait {
            self.wait_until_gone(stack, &service_ids, wait).await?;
        }

        let networks = self
            .docker
            .list_networks(Some(ListNetworksOptionsBuilder::default().filters(&label).build()))
            .await
            .map_err(query(format!("list the networks of stack {stack}")))?;
        for network in networks {
            let name = network.name.clone().unwrap_or_default();
            let id = network.id.clone().unwrap_or_else(|| name.clone());
            loop {
                match self.docker.remove_network(&id).await {
                    Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {
                        report.networks.push(name);
                        break;
                    }
                    // The node detaches a network from its last container a
                    // moment after the container is gone.
                    Err(_) if wait.is_some_and(|w| started.elapsed() < w) => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Err(e) if wait.is_some() => {
                        return Err(UndeployError::Timeout {
                            stack: stack.to_owned(),
                            waited: wait.unwrap_or_default(),
                            remaining: vec![format!("network {name}: {e}")],
                        });
                    }
                    Err(_) => {
                        report.left.push(format!("network {name}"));
                        break;
                    }
                }
            }
        }

        self.remove_secrets_and_configs(stack, &mut report).await?;
        report.networks.sort();
        report.kept_volumes = stack_volumes(&self.docker, stack).await?.into_iter().map(|v| v.name).collect();
        report.kept_volumes.sort();
        Ok(report)
    }

    /// Waits until no task of the removed services and no container of the
    /// stack is left.
    async fn wait_until_gone(
        &self,
        stack: &str,
        service_ids: &HashSet<String>,
        wait: Duration,
    ) -> Result<(), UndeployError> {
        let query = |what: String| move |source| QueryError::Engine { what, source };
        let label = HashMap::from([("label", vec![format!("{STACK_NAMESPACE_LABEL}={stack}")])]);
        let started = tokio::time::Instant::now();
        loop {
            // Tasks of a removed service cannot be listed by service (the
            // filter resolves the service first), so list all and match ids.
            let tasks = self
                .docker
                .list_tasks(None::<ListTasksOptions>)
                .await
                .map_err(query(format!("list the tasks of stack {stack}")))?;
            let containers = self
                .docker
                .list_containers(Some(ListContainersOptionsBuilder::default().all(true).filters(&label).build()))
                .await
                .map_err(query(format!("list the containers of stack {stack}")))?;
            let mut remaining: Vec<String> = tasks
                .iter()
                .filter(|t| t.service_id.as_ref().is_some_and(|id| service_ids.contains(id)))
                .map(|t| format!("task {}", t.id.as_deref().unwrap_or("?")))
                .collect();
            remaining.extend(containers.iter().map(|c| format!("container {}", c.id.as_deref().unwrap_or("?"))));
            if remaining.is_empty() {
                return Ok(());
            }
            if started.elapsed() >= wait {
                return Err(UndeployError::Timeout { stack: stack.to_owned(), waited: wait, remaining });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn remove_secrets_and_configs(&self, stack: &str, report: &mut UndeployReport) -> Result<(), QueryError> {
        let query = |what: String| move |source| QueryError::Engine { what, source };
        let label = HashMap::from([("label".to_owned(), vec![format!("{STACK_NAMESPACE_LABEL}={stack}")])]);
        let secrets = self
            .docker
            .list_secrets(Some(ListSecretsOptionsBuilder::default().filters(&label).build()))
            .await
            .map_err(query(format!("list the secrets of stack {stack}")))?;
        for secret in secrets {
            let name = secret.spec.and_then(|s| s.name).unwrap_or_default();
            match self.docker.delete_secret(secret.id.as_deref().unwrap_or(&name)).await {
                Ok(()) => report.secrets_and_configs.push(name),
                Err(_) => report.left.push(format!("secret {name}")),
            }
        }
        let configs = self
            .docker
            .list_configs(Some(ListConfigsOptionsBuilder::default().filters(&label).build()))
            .await
            .map_err(query(format!("list the configs of stack {stack}")))?;
        for config in configs {
            let name = config.spec.and_then(|s| s.name).unwrap_or_default();
            match self.docker.delete_config(config.id.as_deref().unwrap_or(&name)).await {
                Ok(()) => report.secrets_and_configs.push(name),
                Err(_) => report.left.push(format!("config {name}")),
            }
        }
        Ok(())
    }
}

fn validate_stack(stack: &str) -> Result<(), DeployError> {
    let valid = !stack.is_empty() && stack.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    if valid { Ok(()) } else { Err(DeployError::InvalidStack { stack: stack.to_owned() }) }
}

impl Classify for DeployError {
    fn kind(&self) -> FailureKind {
        match self {
            DeployError::InvalidStack { .. } | DeployError::Compose(_) => FailureKind::Input,
            // Services already carry this deploy's id: the stack is partly updated.
            DeployError::Deployer { applied, .. } if !applied.is_empty() => FailureKind::Partial,
            DeployError::Deployer { source, .. } => source.kind(),
            _ => FailureKind::Environment,
        }
    }
}

impl Classify for IdentityError {
    fn kind(&self) -> FailureKind {
        match self {
            IdentityError::Query(_) => FailureKind::Environment,
            // The stack is there but does not say what it runs: a "no".
            _ => FailureKind::Verdict,
        }
    }
}

impl Classify for UndeployError {
    fn kind(&self) -> FailureKind {
        match self {
            UndeployError::Query(_) => FailureKind::Environment,
            // The services are removed; what is left needs a re-run to wait for.
            _ => FailureKind::Partial,
        }
    }
}
