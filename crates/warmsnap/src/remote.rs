//! Taking and restoring volumes that live on another node of the swarm,
//! with the manager's API alone (feature `oci`).
//!
//! lkg runs its agent ([`crate::agent`]) there as a swarm job: a
//! `replicated-job` service of one task, held on the node by the constraint
//! `node.id == <node>`, mounting the volumes, never restarted. Its image is
//! built from the static `lkg-agent` binary ([`AgentSource`]) and pushed to
//! the store's repository (tag `lkg-agent-<digest>`), so every node that
//! reaches the store can pull it. lkg watches the job to its end (the node
//! going down or the deadline ends the watch), reads the agent's last line
//! from the job's log through the manager, and always removes the job.
//!
//! The store must be a registry ([`OciStore`]) that the node reaches: the
//! agent uploads and downloads the archives itself. lkg keeps the
//! bookkeeping: the take's `meta.json`, manifest, tags and signature, the
//! restore's signature and manifest checks happen on lkg's side, before the
//! job starts (restore) or after it ended (take).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use bollard::Docker;
use bollard::models::{
    Mount, MountType, MountVolumeOptions, MountVolumeOptionsDriverConfig, SecretSpec, ServiceSpec, ServiceSpecMode,
    ServiceSpecModeReplicatedJob, TaskSpec, TaskSpecContainerSpec, TaskSpecContainerSpecFile,
    TaskSpecContainerSpecSecrets, TaskSpecPlacement, TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum,
    TaskState,
};
use bollard::query_parameters::{ListTasksOptionsBuilder, LogsOptionsBuilder};
use futures_util::StreamExt;
use lkg_core::Progress;
use lkg_registry::{Bytes, Descriptor, ImageManifest, Manifest, media};
use lkg_swarm::docker::{STACK_NAMESPACE_LABEL, stack_services};
use lkg_swarm::placement::find_node;
use lkg_swarm::{Swarm, SwarmNode};

use crate::access::Access;
use crate::agent::{
    AgentFailure, AgentJob, AgentReport, AgentRequest, FAILURE_PREFIX, MountedVolume, REPORT_PREFIX, REQUEST_ENV,
    RestoreVolume,
};
use crate::any::AnyStore;
use crate::engine::{HELPER_LABEL, HELPER_PID_LABEL};
use crate::error::SnapError;
use crate::meta::VolumeRecord;
use crate::name::{AppName, check_object_name};
use crate::oci::OciStore;
use crate::progress::{Event, Phase};
use crate::restore::{RestoreReport, RestoreRequest, RestoredVolume, plan, target_name};
use crate::store::{LockMode, SnapshotReader, Store, StoreError};
use crate::take::{TakeReport, TakeRequest, TakenVolume};
use crate::transfer::{Reporter, blocking};
use crate::verify::open_snapshot;

/// Where a job's container mounts the volumes.
const MOUNT_ROOT: &str = "/volumes";
/// Where a job's container finds the age identities, a swarm secret.
const IDENTITY_PATH: &str = "/run/secrets/lkg-identity";
/// How long a job may take, unless told otherwise.
pub const DEFAULT_JOB_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Where lkg's agent comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentSource {
    /// A static `lkg-agent` binary, packed into a one-layer image and pushed
    /// to the store's repository when first needed.
    Binary(PathBuf),
    /// An image every node can pull that runs `lkg-agent` as its entry point.
    Image(String),
}

impl AgentSource {
    /// `LKG_AGENT_IMAGE` when set, else `LKG_AGENT`, else `lkg-agent` beside
    /// the running program.
    pub fn from_env() -> AgentSource {
        if let Some(image) = std::env::var("LKG_AGENT_IMAGE").ok().filter(|i| !i.is_empty()) {
            return AgentSource::Image(image);
        }
        if let Some(path) = std::env::var_os("LKG_AGENT").filter(|p| !p.is_empty()) {
            return AgentSource::Binary(PathBuf::from(path));
        }
        let beside = std::env::current_exe().ok().and_then(|exe| exe.parent().map(|dir| dir.join("lkg-agent")));
        AgentSource::Binary(beside.unwrap_or_else(|| PathBuf::from("lkg-agent")))
    }
}

/// The agent and how long its jobs may take.
#[derive(Debug, Clone)]
pub struct Agent {
    source: AgentSource,
    timeout: Duration,
}

impl Agent {
    /// An agent from `source`, its jobs given [`DEFAULT_JOB_TIMEOUT`].
    pub fn new(source: AgentSource) -> Agent {
        Agent { source, timeout: DEFAULT_JOB_TIMEOUT }
    }

    /// Gives each job at most `timeout`.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Agent {
        self.timeout = timeout;
        self
    }
}

impl Default for Agent {
    fn default() -> Agent {
        Agent::new(AgentSource::from_env())
    }
}

/// Takes `request.stack`'s `volumes` on `node` (an id, or a unique
/// hostname) into `store`, through lkg's agent, and makes the snapshot the
/// app's last-known-good. Refuses while the stack has services.
pub async fn take_on_node(
    docker: &Docker,
    store: &OciStore,
    agent: &Agent,
    request: &TakeRequest,
    node: &str,
    volumes: &[String],
    progress: &dyn for<'e> Progress<Event<'e>>,
) -> Result<TakeReport, SnapError> {
    let node = ready_node(docker, node).await?;
    if volumes.is_empty() {
        return Err(SnapError::NoVolumes { stack: request.stack.clone() });
    }
    let mut volumes = volumes.to_vec();
    volumes.sort();
    volumes.dedup();
    for volume in &volumes {
        check_object_name("volume", volume)?;
    }
    check_undeployed(docker, &request.stack).await?;
    let staging = {
        let (store, app) = (store.clone(), request.app.clone());
        blocking(move || store.stage(&app)).await??
    };
    let image = agent_image(store, &agent.source).await?;
    let labels = BTreeMap::from([(STACK_NAMESPACE_LABEL.to_owned(), request.stack.clone())]);
    let mounts: Vec<Mount> = volumes.iter().map(|v| mount(v, "local", &BTreeMap::new(), &labels, true)).collect();
    let job = AgentJob::Take { volumes: volumes.iter().map(|v| mounted(v)).collect(), recipients: store.recipients() };
    let count = volumes.len();
    for (index, volume) in volumes.iter().enumerate() {
        Reporter::new(progress, Phase::Take, volume, (index, count), None).bytes(0);
    }
    let report = run_job(docker, store, agent, &image, &node, &request.app, mounts, job, None).await?;
    let report = check_report(&node, report, &volumes)?;
    let uploaded = report.uploaded;
    // Someone may have deployed while the agent read the volumes.
    check_undeployed(docker, &request.stack).await?;

    let mut records = Vec::with_capacity(count);
    let mut layers = Vec::with_capacity(count);
    let mut taken = Vec::with_capacity(count);
    for (index, volume) in report.volumes.into_iter().enumerate() {
        let Some(layer) = volume.layer else {
            return Err(job_error(&node, "reported a volume without its layer (an lkg bug)"));
        };
        Reporter::new(progress, Phase::Take, &volume.name, (index, count), None).done(volume.summary.bytes);
        records.push(VolumeRecord {
            name: volume.name.clone(),
            bytes: volume.summary.bytes,
            sha256: volume.summary.sha256.clone(),
            driver: "local".to_owned(),
            options: BTreeMap::new(),
            labels: labels.clone(),
        });
        layers.push(layer);
        taken.push(TakenVolume {
            name: volume.name,
            access: Access::Direct,
            summary: volume.summary,
            unchanged: false,
        });
    }
    let meta = request.meta(records);
    let committed = meta.clone();
    let location = blocking(move || staging.commit_layers(&committed, Some(layers))).await??;
    Ok(TakeReport { location, meta, volumes: taken, uploaded_bytes: Some(uploaded) })
}

/// Restores `request.app`'s last-known-good into its stack's volumes on
/// `node` (an id, or a unique hostname), through lkg's agent: the snapshot's
/// signature (when the store verifies) and manifest are checked here, the
/// agent checks every byte against its digest and every entry before it
/// replaces a volume's content, and creates the volumes the node lacks.
/// Refuses while the stack has services.
pub async fn restore_on_node(
    docker: &Docker,
    store: &OciStore,
    agent: &Agent,
    request: &RestoreRequest,
    node: &str,
    progress: &dyn for<'e> Progress<Event<'e>>,
) -> Result<RestoreReport, SnapError> {
    let node = ready_node(docker, node).await?;
    let reader = open_snapshot(store, &request.app, LockMode::Exclusive).await?;
    let meta = reader.meta().clone();
    let location = reader.location();
    let stack = request.stack.clone().unwrap_or_else(|| meta.stack.clone());
    check_undeployed(docker, &stack).await?;
    // The node's volumes are not visible from here: each is created (or
    // used as it is) as the snapshot recorded it.
    let planned = plan(&meta, &stack, &BTreeMap::new())?;
    let mut volumes = Vec::with_capacity(planned.len());
    let mut mounts = Vec::with_capacity(planned.len());
    let mut encrypted_any = false;
    for (record, planned) in meta.volumes.iter().zip(&planned) {
        debug_assert_eq!(target_name(&meta, record, &stack)?, planned.spec.name);
        let Some((digest, encrypted)) = reader.layer(&record.name) else {
            return Err(StoreError::MissingVolume {
                app: request.app.to_string(),
                volume: record.name.clone(),
                path: PathBuf::from(&location),
            }
            .into());
        };
        encrypted_any |= encrypted;
        let spec = &planned.spec;
        mounts.push(mount(&spec.name, &spec.driver, &spec.options, &spec.labels, false));
        volumes.push(RestoreVolume {
            volume: mounted(&spec.name),
            record: record.clone(),
            digest: digest.to_string(),
            encrypted,
        });
    }
    let identities = if encrypted_any {
        let identities = store.identity_lines();
        if identities.is_empty() {
            return Err(StoreError::Encrypted { location }.into());
        }
        Some(identities)
    } else {
        None
    };
    let count = volumes.len();
    for (index, volume) in volumes.iter().enumerate() {
        Reporter::new(progress, Phase::Restore, &volume.volume.name, (index, count), Some(volume.record.bytes))
            .bytes(0);
    }
    let image = agent_image(store, &agent.source).await?;
    let job = AgentJob::Restore {
        volumes: volumes.clone(),
        identity_file: identities.as_ref().map(|_| PathBuf::from(IDENTITY_PATH)),
    };
    let report = run_job(docker, store, agent, &image, &node, &request.app, mounts, job, identities.as_deref()).await;
    drop(reader);
    let names: Vec<String> = volumes.iter().map(|v| v.volume.name.clone()).collect();
    let report = check_report(&node, report?, &names)?;
    let mut restored = Vec::with_capacity(count);
    for (index, (volume, done)) in volumes.iter().zip(report.volumes).enumerate() {
        Reporter::new(progress, Phase::Restore, &volume.volume.name, (index, count), Some(volume.record.bytes))
            .done(volume.record.bytes);
        restored.push(RestoredVolume {
            name: volume.volume.name.clone(),
            from: volume.record.name.clone(),
            bytes: volume.record.bytes,
            existed: done.existed,
            access: Access::Direct,
        });
    }
    Ok(RestoreReport {
        app: request.app.clone(),
        stack,
        location,
        snapshot: meta,
        volumes: restored,
        untouched: vec![],
    })
}

/// Takes a snapshot where the volumes are: through the engine lkg talks to
/// ([`crate::take`]) when `node` is `None` or that engine's node, else on
/// `node` through lkg's agent ([`take_on_node`]), which needs a registry
/// store. There `volumes` names the volumes to take; none: those of the
/// app's last-known-good, renamed into `request.stack`.
#[allow(clippy::too_many_arguments, reason = "the arguments of take and of take_on_node")]
pub async fn take_at(
    docker: &Docker,
    store: &AnyStore,
    agent: &Agent,
    request: &TakeRequest,
    node: Option<&str>,
    volumes: &[String],
    progress: &dyn for<'e> Progress<Event<'e>>,
) -> Result<TakeReport, SnapError> {
    let Some((node, oci)) = remote_node(docker, store, node, "take").await? else {
        if !volumes.is_empty() {
            return Err(SnapError::AgentUnavailable {
                problem: "takes the volumes it is told to only on another node (--node): on the engine lkg talks \
                          to, a take takes every volume of the stack"
                    .to_owned(),
            });
        }
        return crate::take::take(docker, store, request, progress).await;
    };
    let mut names = volumes.to_vec();
    if names.is_empty() {
        let last = crate::verify::show(oci, &request.app).await?.ok_or_else(|| SnapError::AgentUnavailable {
            problem: format!(
                "cannot tell which volumes of stack {} to take on node {}: the app has no last-known-good to \
                 take their names from; name them with --volume",
                request.stack,
                node.describe()
            ),
        })?;
        for record in &last.meta.volumes {
            names.push(target_name(&last.meta, record, &request.stack)?);
        }
    }
    take_on_node(docker, oci, agent, request, &node.id, &names, progress).await
}

/// Restores where the volumes are to be: through the engine lkg talks to
/// ([`crate::restore`]) when `node` is `None` or that engine's node, else
/// on `node` through lkg's agent ([`restore_on_node`]), which needs a
/// registry store.
pub async fn restore_at(
    docker: &Docker,
    store: &AnyStore,
    agent: &Agent,
    request: &RestoreRequest,
    node: Option<&str>,
    progress: &dyn for<'e> Progress<Event<'e>>,
) -> Result<RestoreReport, SnapError> {
    match remote_node(docker, store, node, "restore").await? {
        None => crate::restore::restore(docker, store, request, progress).await,
        Some((node, oci)) => restore_on_node(docker, oci, agent, request, &node.id, progress).await,
    }
}

/// `node`, when it is not the node of the engine lkg talks to, with the
/// registry store the agent needs there.
async fn remote_node<'s>(
    docker: &Docker,
    store: &'s AnyStore,
    node: Option<&str>,
    what: &str,
) -> Result<Option<(SwarmNode, &'s OciStore)>, SnapError> {
    let Some(name) = node else { return Ok(None) };
    let (local, _) = Swarm::new(docker.clone()).nodes().await?;
    let node = ready_node(docker, name).await?;
    if node.id == local {
        return Ok(None);
    }
    match store {
        AnyStore::Oci(oci) => Ok(Some((node, oci))),
        AnyStore::Local(_) => Err(SnapError::AgentUnavailable {
            problem: format!(
                "cannot {what} the volumes on node {}: lkg reaches another node's volumes through its agent, which \
                 moves the data through a registry store; pass --store oci://HOST/REPOSITORY (a registry that node \
                 reaches)",
                node.describe()
            ),
        }),
    }
}

/// The node named `name`, which must be `ready` to run a job.
async fn ready_node(docker: &Docker, name: &str) -> Result<SwarmNode, SnapError> {
    let (_, nodes) = Swarm::new(docker.clone()).nodes().await?;
    let Some(node) = find_node(&nodes, name) else {
        let known: Vec<String> = nodes.iter().map(SwarmNode::describe).collect();
        return Err(SnapError::AgentUnavailable {
            problem: format!(
                "cannot run on node {:?}: no node of the swarm has that id or hostname (nodes: {})",
                lkg_core::clip(name),
                known.join(", ")
            ),
        });
    };
    if node.state != "ready" {
        return Err(job_error(
            node,
            &format!("cannot start: the node is {}; its volumes cannot be reached until it is back", node.state),
        ));
    }
    Ok(node.clone())
}

async fn check_undeployed(docker: &Docker, stack: &str) -> Result<(), SnapError> {
    let mut services: Vec<String> =
        stack_services(docker, stack).await?.into_iter().filter_map(|s| s.spec.and_then(|s| s.name)).collect();
    if services.is_empty() {
        return Ok(());
    }
    services.sort();
    Err(SnapError::Deployed { stack: stack.to_owned(), services })
}

fn mounted(volume: &str) -> MountedVolume {
    MountedVolume { name: volume.to_owned(), path: Path::new(MOUNT_ROOT).join(volume) }
}

fn mount(
    volume: &str,
    driver: &str,
    options: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
    read_only: bool,
) -> Mount {
    Mount {
        target: Some(format!("{MOUNT_ROOT}/{volume}")),
        source: Some(volume.to_owned()),
        typ: Some(MountType::VOLUME),
        read_only: Some(read_only),
        volume_options: Some(MountVolumeOptions {
            // An empty new volume stays empty: the image's files never go in.
            no_copy: Some(true),
            labels: Some(labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
            driver_config: Some(MountVolumeOptionsDriverConfig {
                name: Some(driver.to_owned()),
                options: Some(options.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
            }),
            ..MountVolumeOptions::default()
        }),
        ..Mount::default()
    }
}

fn job_error(node: &SwarmNode, problem: &str) -> SnapError {
    SnapError::Job { node: node.describe(), problem: problem.to_owned() }
}

/// The report must name exactly the volumes asked for, in order.
fn check_report(node: &SwarmNode, report: AgentReport, volumes: &[String]) -> Result<AgentReport, SnapError> {
    let named: Vec<&str> = report.volumes.iter().map(|v| v.name.as_str()).collect();
    if named != volumes.iter().map(String::as_str).collect::<Vec<_>>() {
        return Err(job_error(node, &format!("reported volumes {named:?}, not the ones asked for")));
    }
    Ok(report)
}

/// Runs one agent job on `node` and returns its report. The job (and the
/// secret holding `identities`) is removed whatever happens.
#[allow(clippy::too_many_arguments, reason = "one private call site per operation")]
async fn run_job(
    docker: &Docker,
    store: &OciStore,
    agent: &Agent,
    image: &str,
    node: &SwarmNode,
    app: &AppName,
    mounts: Vec<Mount>,
    job: AgentJob,
    identities: Option<&str>,
) -> Result<AgentReport, SnapError> {
    let repo = store.repository();
    let request = AgentRequest {
        registry: repo.registry().to_owned(),
        repository: repo.repository().to_owned(),
        insecure_registries: store.insecure_registries(),
        app: app.clone(),
        job,
    };
    let request = serde_json::to_string(&request).map_err(|e| job_error(node, &format!("cannot be described: {e}")))?;
    let id = crate::store::new_generation().to_ascii_lowercase().replace(['t', 'z'], "");
    let name = format!("lkg-agent-{}", &id[id.len().saturating_sub(16)..]);
    let labels: HashMap<String, String> = HashMap::from([
        (HELPER_LABEL.to_owned(), app.to_string()),
        (HELPER_PID_LABEL.to_owned(), std::process::id().to_string()),
    ]);
    let engine = |what: String| move |source| SnapError::Engine { what, source };
    remove_leftover_jobs(docker, app).await?;
    let mut secret_id = None;
    let mut secrets = Vec::new();
    if let Some(identities) = identities {
        let spec = SecretSpec {
            name: Some(format!("{name}-identity")),
            labels: Some(labels.clone()),
            data: Some(base64::engine::general_purpose::STANDARD.encode(identities)),
            ..SecretSpec::default()
        };
        let created = docker
            .create_secret(spec)
            .await
            .map_err(engine("create the secret that carries the age identity".into()))?;
        secrets.push(TaskSpecContainerSpecSecrets {
            file: Some(TaskSpecContainerSpecFile {
                name: Some("lkg-identity".to_owned()),
                uid: Some("0".to_owned()),
                gid: Some("0".to_owned()),
                mode: Some(0o400),
            }),
            secret_id: Some(created.id.clone()),
            secret_name: Some(format!("{name}-identity")),
        });
        secret_id = Some(created.id);
    }
    let spec = ServiceSpec {
        name: Some(name.clone()),
        labels: Some(labels.clone()),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(image.to_owned()),
                // On the container too: what a node keeps of the job says whose it was.
                labels: Some(labels.clone()),
                env: Some(vec![format!("{REQUEST_ENV}={request}")]),
                mounts: Some(mounts),
                secrets: (!secrets.is_empty()).then_some(secrets),
                ..TaskSpecContainerSpec::default()
            }),
            placement: Some(TaskSpecPlacement {
                constraints: Some(vec![lkg_swarm::placement::node_constraint(&node.id)]),
                ..TaskSpecPlacement::default()
            }),
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(TaskSpecRestartPolicyConditionEnum::NONE),
                ..TaskSpecRestartPolicy::default()
            }),
            ..TaskSpec::default()
        }),
        mode: Some(ServiceSpecMode {
            replicated_job: Some(ServiceSpecModeReplicatedJob { max_concurrent: Some(1), total_completions: Some(1) }),
            ..ServiceSpecMode::default()
        }),
        ..ServiceSpec::default()
    };
    let created = docker.create_service(spec, None).await.map_err(engine(format!("create the agent job {name}")));
    let result = match created {
        Ok(created) => {
            let service = created.id.unwrap_or_else(|| name.clone());
            let watched = watch_job(docker, agent, node, &service).await;
            let _ = docker.delete_service(&service).await;
            watched
        }
        Err(e) => Err(e),
    };
    if let Some(secret) = secret_id {
        // A secret in use by a task being removed cannot go at once.
        for _ in 0..20 {
            if docker.delete_secret(&secret).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    result
}

/// Removes the agent jobs (and their secrets) of `app` that a killed lkg
/// run left: runs of an app are serialised by its lock, so a job of the app
/// that exists now belongs to no run, and must not write to the volumes
/// beside the next one.
async fn remove_leftover_jobs(docker: &Docker, app: &AppName) -> Result<(), SnapError> {
    let filters = HashMap::from([("label", vec![format!("{HELPER_LABEL}={app}")])]);
    let services = docker
        .list_services(Some(bollard::query_parameters::ListServicesOptionsBuilder::default().filters(&filters).build()))
        .await
        .map_err(|source| SnapError::Engine { what: format!("list the agent jobs of app {app}"), source })?;
    for service in services {
        if let Some(id) = service.id {
            docker
                .delete_service(&id)
                .await
                .map_err(|source| SnapError::Engine { what: format!("remove the leftover agent job {id}"), source })?;
        }
    }
    let secrets = docker
        .list_secrets(Some(bollard::query_parameters::ListSecretsOptionsBuilder::default().filters(&filters).build()))
        .await
        .map_err(|source| SnapError::Engine { what: format!("list the agent secrets of app {app}"), source })?;
    for secret in secrets {
        if let Some(id) = secret.id {
            // In use by a job's task that is going: the next run removes it.
            let _ = docker.delete_secret(&id).await;
        }
    }
    Ok(())
}

/// Waits for the job's task to end, then reads the agent's last line.
async fn watch_job(docker: &Docker, agent: &Agent, node: &SwarmNode, service: &str) -> Result<AgentReport, SnapError> {
    let deadline = tokio::time::Instant::now() + agent.timeout;
    let filters = HashMap::from([("service", vec![service.to_owned()])]);
    let swarm = Swarm::new(docker.clone());
    let mut ended = None;
    while ended.is_none() {
        if tokio::time::Instant::now() >= deadline {
            return Err(job_error(node, &format!("did not end within {} s; it was removed", agent.timeout.as_secs())));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let tasks =
            docker.list_tasks(Some(ListTasksOptionsBuilder::default().filters(&filters).build())).await.map_err(
                |source| SnapError::Engine { what: format!("list the tasks of the agent job {service}"), source },
            )?;
        for task in &tasks {
            let status = task.status.as_ref();
            match status.and_then(|s| s.state) {
                Some(TaskState::COMPLETE) => ended = Some(Ok(())),
                Some(state @ (TaskState::FAILED | TaskState::REJECTED | TaskState::ORPHANED | TaskState::SHUTDOWN)) => {
                    let message = status.and_then(|s| s.err.clone().or_else(|| s.message.clone())).unwrap_or_default();
                    let exit = status.and_then(|s| s.container_status.as_ref()).and_then(|c| c.exit_code);
                    ended = Some(Err((state, message, exit)));
                }
                _ => {}
            }
        }
        if ended.is_none() {
            let (_, nodes) = swarm.nodes().await?;
            match nodes.iter().find(|n| n.id == node.id) {
                Some(now) if now.state == "ready" => {}
                Some(now) => {
                    return Err(job_error(
                        node,
                        &format!(
                            "was stopped: the node went {} while it ran; nothing was committed, bring the node back \
                             and run again",
                            now.state
                        ),
                    ));
                }
                None => return Err(job_error(node, "was stopped: the node left the swarm while it ran")),
            }
        }
    }
    let last = last_line(docker, service).await;
    match (ended, last) {
        (_, Some(Ok(report))) => Ok(report),
        (_, Some(Err(failure))) => {
            Err(SnapError::Agent { node: node.describe(), kind: failure.failure_kind(), message: failure.message })
        }
        (Some(Err((state, message, exit))), None) => Err(job_error(
            node,
            &format!(
                "ended {state}{}{}: the agent left no report; check that the node can pull the agent's image and \
                 reach the store",
                exit.map(|c| format!(" (exit {c})")).unwrap_or_default(),
                if message.is_empty() { String::new() } else { format!(", {}", lkg_core::clip(&message)) }
            ),
        )),
        (_, None) => Err(job_error(node, "ended, but its log holds no report from the agent")),
    }
}

/// The agent's report or failure, from the job's log (tried a few times:
/// the log of a task that just ended may lag).
async fn last_line(docker: &Docker, service: &str) -> Option<Result<AgentReport, AgentFailure>> {
    for _ in 0..10 {
        let options = LogsOptionsBuilder::default().stdout(true).stderr(true).build();
        let mut logs = std::pin::pin!(docker.service_logs(service, Some(options)));
        let mut text = String::new();
        while let Some(Ok(output)) = logs.next().await {
            text.push_str(&String::from_utf8_lossy(&output.into_bytes()));
            keep_tail(&mut text, MAX_LOG);
        }
        for line in text.lines().rev() {
            if let Some(json) = line.strip_prefix(REPORT_PREFIX) {
                return serde_json::from_str(json).ok().map(Ok);
            }
            if let Some(json) = line.strip_prefix(FAILURE_PREFIX) {
                return serde_json::from_str(json).ok().map(Err);
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    None
}

/// The most of a job's log lkg holds: the agent's report is its last line
/// (an image given with --agent-image may print anything before it).
const MAX_LOG: usize = 4 << 20;

/// Drops the start of `text` once it is longer than `limit`, keeping the
/// last half of `limit` (cut at a line start when there is one).
fn keep_tail(text: &mut String, limit: usize) {
    if text.len() <= limit {
        return;
    }
    let mut cut = text.len() - limit / 2;
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    let cut = text[cut..].find('\n').map_or(cut, |at| cut + at + 1);
    text.drain(..cut);
}

/// The image reference the job runs: the one given, or the binary's image,
/// pushed to the store's repository unless it is there.
async fn agent_image(store: &OciStore, source: &AgentSource) -> Result<String, SnapError> {
    let path = match source {
        AgentSource::Image(image) => return Ok(image.clone()),
        AgentSource::Binary(path) => path.clone(),
    };
    let unavailable = |problem: String| SnapError::AgentUnavailable { problem };
    let binary = tokio::fs::read(&path).await.map_err(|e| {
        unavailable(format!(
            "binary {} cannot be read ({e}): build it with scripts/build-agent, and set LKG_AGENT to its path (or \
             LKG_AGENT_IMAGE to an image every node can pull)",
            path.display()
        ))
    })?;
    if !is_static_elf(&binary) {
        return Err(unavailable(format!(
            "binary {} is not a static Linux executable: the agent's image holds nothing else; build it with \
             scripts/build-agent (RUSTFLAGS=\"-C target-feature=+crt-static\" cargo build -p lkg-agent --target \
             x86_64-unknown-linux-gnu)",
            path.display()
        )));
    }
    let certificates = CA_BUNDLES.iter().find_map(|path| fs_err::read(path).ok());
    let layer = image_layer(&binary, certificates.as_deref())
        .map_err(|e| unavailable(format!("image cannot be built: {e}")))?;
    let layer = Bytes::from(layer);
    let layer = (Descriptor::of("application/vnd.oci.image.layer.v1.tar", &layer), layer);
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": ["/lkg-agent"], "WorkingDir": "/", "Labels": {HELPER_LABEL: "agent"}},
        "rootfs": {"type": "layers", "diff_ids": [layer.0.digest.to_string()]},
    });
    let config = Bytes::from(config.to_string());
    let config = (Descriptor::of(media::OCI_CONFIG, &config), config);
    let (client, repo) = (store.client(), store.repository());
    for (descriptor, bytes) in [&layer, &config] {
        if client.blob_exists(repo, &descriptor.digest).await.map_err(StoreError::from)? != Some(descriptor.size) {
            client.push_blob(repo, &descriptor.digest, bytes.clone()).await.map_err(StoreError::from)?;
        }
    }
    let image = ImageManifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.to_owned()),
        artifact_type: None,
        config: config.0,
        layers: vec![layer.0.clone()],
        subject: None,
        annotations: None,
    };
    let bytes = serde_json::to_vec(&image).map_err(std::io::Error::other).map_err(StoreError::from)?;
    let manifest = Manifest::from_bytes(bytes, Some(media::OCI_MANIFEST)).map_err(StoreError::from)?;
    let tag = format!("lkg-agent-{}", &layer.0.digest.hex()[..16]);
    client.put_manifest(repo, &tag, &manifest).await.map_err(StoreError::from)?;
    Ok(format!("{}/{}@{}", repo.registry(), repo.repository(), manifest.digest))
}

/// Where this machine's CA certificates may be (Debian's, then Red Hat's):
/// the agent's image carries them, so that it can check a registry's TLS
/// certificate as lkg does here.
const CA_BUNDLES: [&str; 2] = ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"];

/// The image's one layer: `/lkg-agent`, a `/tmp` for its staging, and this
/// machine's CA certificates when it has them.
fn image_layer(binary: &[u8], certificates: Option<&[u8]>) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::with_capacity(binary.len() + 4096));
    let mut append = |path: &str, mode: u32, data: Option<&[u8]>| {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(if data.is_some() { tar::EntryType::Regular } else { tar::EntryType::Directory });
        header.set_mode(mode);
        header.set_size(data.map_or(0, |d| d.len() as u64));
        header.set_mtime(0);
        builder.append_data(&mut header, path, data.unwrap_or_default())
    };
    append("tmp/", 0o1777, None)?;
    if let Some(certificates) = certificates {
        for dir in ["etc/", "etc/ssl/", "etc/ssl/certs/"] {
            append(dir, 0o755, None)?;
        }
        append("etc/ssl/certs/ca-certificates.crt", 0o644, Some(certificates))?;
    }
    append("lkg-agent", 0o755, Some(binary))?;
    builder.into_inner()
}

/// A 64-bit little-endian ELF executable without a program interpreter
/// (`PT_INTERP`): it runs in an image that holds nothing else.
fn is_static_elf(binary: &[u8]) -> bool {
    let u16_at = |at: usize| binary.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize);
    let u32_at = |at: usize| binary.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let u64_at =
        |at: usize| binary.get(at..at + 8).and_then(|b| usize::try_from(u64::from_le_bytes(b.try_into().ok()?)).ok());
    if binary.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        return false;
    }
    let (Some(phoff), Some(size), Some(count)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38)) else { return false };
    (0..count).all(|i| u32_at(phoff + i * size).is_some_and(|typ| typ != 3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_static_elf_is_an_agent() {
        let this = std::fs::read("/proc/self/exe").unwrap();
        assert!(!is_static_elf(&this), "the test binary is dynamically linked");
        assert!(!is_static_elf(b"#!/bin/sh\n"));
        assert!(!is_static_elf(b""));
        // A header that says no program headers: nothing asks for an interpreter.
        let mut minimal = vec![0u8; 64];
        minimal[..6].copy_from_slice(b"\x7fELF\x02\x01");
        assert!(is_static_elf(&minimal));
        // One PT_INTERP program header.
        minimal[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        minimal[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        minimal[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        minimal.extend_from_slice(&[3, 0, 0, 0]);
        minimal.resize(64 + 56, 0);
        assert!(!is_static_elf(&minimal));
    }

    #[test]
    fn a_long_log_keeps_its_last_lines_only() {
        let mut text = format!("{}\nlkg-agent-report: {{}}\n", "x".repeat(100));
        keep_tail(&mut text, 1000);
        assert!(text.starts_with('x'), "short: kept whole");
        keep_tail(&mut text, 60);
        assert_eq!(text, "lkg-agent-report: {}\n");
        let mut text = "é".repeat(100);
        keep_tail(&mut text, 50);
        assert!(text.len() <= 26 && text.chars().all(|c| c == 'é'), "{text}");
    }

    #[test]
    fn the_image_layer_holds_the_binary_and_a_tmp() {
        let layer = image_layer(b"binary", Some(b"certs")).unwrap();
        let mut archive = tar::Archive::new(layer.as_slice());
        let entries: Vec<(String, u32)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.path().unwrap().display().to_string(), e.header().mode().unwrap())
            })
            .collect();
        let expected = [
            ("tmp/", 0o1777),
            ("etc/", 0o755),
            ("etc/ssl/", 0o755),
            ("etc/ssl/certs/", 0o755),
            ("etc/ssl/certs/ca-certificates.crt", 0o644),
            ("lkg-agent", 0o755),
        ];
        assert_eq!(entries, expected.map(|(p, m)| (p.to_owned(), m)));
    }
}
