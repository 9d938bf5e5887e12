//! What lkg sees of a service at one moment: its spec, swarm's `UpdateStatus`
//! and its tasks, reduced to the facts the verdict needs.
//!
//! Observations are plain data built from the engine's JSON (bollard's
//! models), so the verdict can be tested over JSON recorded from a real engine.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::time::Duration;

use bollard::models::{
    Service, ServiceSpecUpdateConfig, ServiceSpecUpdateConfigFailureActionEnum, ServiceUpdateStatusStateEnum, Task,
    TaskSpecRestartPolicyConditionEnum,
};
use jiff::Timestamp;
use serde::Serialize;

use crate::deploy_id::DEPLOY_ID_LABEL;

/// swarmkit's default `UpdateConfig.Monitor` (api/defaults: 5 s), used when a
/// service sets none.
pub const DEFAULT_MONITOR: Duration = Duration::from_secs(5);

/// swarm's `UpdateStatus.State`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum UpdateState {
    /// The updater is replacing tasks.
    Updating,
    /// The updater stopped on a task failure (`failure_action: pause`).
    Paused,
    /// Every slot runs the new spec and the updater's own monitor period passed.
    Completed,
    /// The updater reverted the spec to the previous one and is replacing tasks.
    RollbackStarted,
    /// A task failed during the rollback; swarm never rolls back a rollback.
    RollbackPaused,
    /// The previous spec runs again.
    RollbackCompleted,
}

impl UpdateState {
    /// The engine's name for the state.
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateState::Updating => "updating",
            UpdateState::Paused => "paused",
            UpdateState::Completed => "completed",
            UpdateState::RollbackStarted => "rollback_started",
            UpdateState::RollbackPaused => "rollback_paused",
            UpdateState::RollbackCompleted => "rollback_completed",
        }
    }

    /// `rollback_started`, `rollback_paused` or `rollback_completed`.
    pub fn is_rollback(self) -> bool {
        matches!(self, UpdateState::RollbackStarted | UpdateState::RollbackPaused | UpdateState::RollbackCompleted)
    }
}

impl fmt::Display for UpdateState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// swarm's `UpdateStatus` of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpdateStatus {
    /// The state.
    pub state: UpdateState,
    /// When the update (or a manual rollback) started, on the manager's clock.
    #[serde(with = "timestamp")]
    pub started_at: Option<Timestamp>,
    /// When it reached `completed` or `rollback_completed`.
    #[serde(with = "timestamp")]
    pub completed_at: Option<Timestamp>,
    /// swarm's message, e.g. "update rolled back due to failure or early termination of task ...".
    pub message: Option<String>,
}

/// How swarm schedules a service's tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
#[non_exhaustive]
pub enum ServiceMode {
    /// `replicas` tasks, one per slot.
    Replicated {
        /// The desired number of tasks.
        replicas: u64,
    },
    /// One task per eligible node.
    Global,
    /// A job that runs until `completions` tasks completed.
    ReplicatedJob {
        /// Total completions wanted.
        completions: u64,
    },
    /// A job that runs once per eligible node.
    GlobalJob,
}

/// The restart policy's condition: whether swarm replaces a task that ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartCondition {
    /// Always (swarm's default).
    Any,
    /// Only after a non-zero exit.
    OnFailure,
    /// Never: a one-shot service.
    None,
}

/// What swarm's updater does when a task it started fails
/// (`update_config.failure_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureAction {
    /// Stop the update and wait for an operator (swarm's default).
    Pause,
    /// Go on updating the other tasks; the failed ones are restarted for ever.
    Continue,
    /// Put the previous spec back.
    Rollback,
}

impl FailureAction {
    /// The compose / engine name.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureAction::Pause => "pause",
            FailureAction::Continue => "continue",
            FailureAction::Rollback => "rollback",
        }
    }
}

impl fmt::Display for FailureAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A task's state, in swarm's order (docker/cli `numberedStates`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)] // swarm's task states; their names are the documentation
pub enum TaskState {
    New,
    Allocated,
    Pending,
    Assigned,
    Accepted,
    Preparing,
    Ready,
    Starting,
    Running,
    Complete,
    Shutdown,
    Failed,
    Rejected,
    Remove,
    Orphaned,
}

impl TaskState {
    /// Past `running`: the task will not run (again).
    pub fn is_terminal(self) -> bool {
        self > TaskState::Running
    }

    /// The engine's name for the state.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::New => "new",
            TaskState::Allocated => "allocated",
            TaskState::Pending => "pending",
            TaskState::Assigned => "assigned",
            TaskState::Accepted => "accepted",
            TaskState::Preparing => "preparing",
            TaskState::Ready => "ready",
            TaskState::Starting => "starting",
            TaskState::Running => "running",
            TaskState::Complete => "complete",
            TaskState::Shutdown => "shutdown",
            TaskState::Failed => "failed",
            TaskState::Rejected => "rejected",
            TaskState::Remove => "remove",
            TaskState::Orphaned => "orphaned",
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One task of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskObservation {
    /// Task id.
    pub id: String,
    /// Slot (replicated services).
    pub slot: Option<i64>,
    /// Node the task was scheduled on.
    pub node_id: Option<String>,
    /// What swarm wants the task to be.
    pub desired: TaskState,
    /// What the task is.
    pub state: TaskState,
    /// When it entered `state`.
    #[serde(with = "timestamp")]
    pub since: Option<Timestamp>,
    /// swarm's error ("task: non-zero exit (3)", "no suitable node ...").
    pub error: Option<String>,
    /// swarm's message ("started", "pending task scheduling").
    pub message: Option<String>,
    /// The container's exit code, once it exited.
    pub exit_code: Option<i64>,
    /// When swarm created the task, on the manager's clock: a task created
    /// before a deploy began belongs to an earlier one, even when its spec is
    /// the current one again.
    #[serde(with = "timestamp")]
    pub created_at: Option<Timestamp>,
    /// The task runs the service's *current* spec (the engine's `_up-to-date`
    /// filter, swarmkit's `orchestrator.IsTaskDirty`, which docker/cli's
    /// `--detach=false` progress uses too).
    pub up_to_date: bool,
}

/// A service as lkg sees it at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceObservation {
    /// Service id.
    pub id: String,
    /// Service name, `<stack>_<service>`.
    pub name: String,
    /// The deploy id in the spec's labels ([`DEPLOY_ID_LABEL`]).
    pub deploy_id: Option<String>,
    /// The spec's labels (service labels, compose `deploy.labels`).
    pub labels: BTreeMap<String, String>,
    /// The whole spec as JSON without the deploy id label, to tell whether a
    /// deploy changed anything else.
    #[serde(skip)]
    pub spec: serde_json::Value,
    /// swarm's update status; `None` right after any spec change and until
    /// swarm's updater starts, and for good when no task needs replacing.
    pub update: Option<UpdateStatus>,
    /// Scheduling mode.
    pub mode: ServiceMode,
    /// `UpdateConfig.Monitor`, or swarm's default.
    pub monitor: Duration,
    /// `UpdateConfig.FailureAction`, or swarm's default (`pause`).
    pub failure_action: FailureAction,
    /// Restart condition of the task template.
    pub restart: RestartCondition,
    /// The image of the task template.
    pub image: Option<String>,
    /// `ServiceStatus.DesiredTasks` (API 1.41 `?status=true`): for a global
    /// service, the number of eligible nodes.
    pub desired_tasks: Option<u64>,
    /// The tasks swarm still lists for the service (recent history included).
    pub tasks: Vec<TaskObservation>,
}

impl ServiceObservation {
    /// Builds the observation from the engine's service and task objects.
    /// `up_to_date` holds the ids the engine lists with `_up-to-date=true`.
    /// Missing fields are read as swarm's defaults, never a panic.
    pub fn from_engine(service: &Service, tasks: &[Task], up_to_date: &HashSet<String>) -> ServiceObservation {
        let spec = service.spec.clone().unwrap_or_default();
        let labels: BTreeMap<String, String> = spec.labels.clone().unwrap_or_default().into_iter().collect();
        let template = spec.task_template.clone().unwrap_or_default();
        let mode = spec.mode.as_ref().map_or(ServiceMode::Replicated { replicas: 1 }, |m| {
            if m.global.is_some() {
                ServiceMode::Global
            } else if let Some(job) = &m.replicated_job {
                ServiceMode::ReplicatedJob { completions: non_negative(job.total_completions.unwrap_or(1)) }
            } else if m.global_job.is_some() {
                ServiceMode::GlobalJob
            } else {
                ServiceMode::Replicated {
                    replicas: non_negative(m.replicated.as_ref().and_then(|r| r.replicas).unwrap_or(1)),
                }
            }
        });
        let monitor = monitor_of(spec.update_config.as_ref());
        let failure_action = match spec.update_config.as_ref().and_then(|c| c.failure_action) {
            Some(ServiceSpecUpdateConfigFailureActionEnum::CONTINUE) => FailureAction::Continue,
            Some(ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK) => FailureAction::Rollback,
            // swarmkit's default (api/defaults) and what `docker stack deploy` sends.
            _ => FailureAction::Pause,
        };
        let restart = match template.restart_policy.as_ref().and_then(|p| p.condition) {
            Some(TaskSpecRestartPolicyConditionEnum::NONE) => RestartCondition::None,
            Some(TaskSpecRestartPolicyConditionEnum::ON_FAILURE) => RestartCondition::OnFailure,
            _ => RestartCondition::Any,
        };
        let image = template.container_spec.as_ref().and_then(|c| c.image.clone());
        let mut spec_json = serde_json::to_value(&spec).unwrap_or_default();
        if let Some(labels) = spec_json.get_mut("Labels").and_then(serde_json::Value::as_object_mut) {
            labels.remove(DEPLOY_ID_LABEL);
        }
        let update = service.update_status.as_ref().and_then(|u| {
            let state = match u.state? {
                ServiceUpdateStatusStateEnum::UPDATING => UpdateState::Updating,
                ServiceUpdateStatusStateEnum::PAUSED => UpdateState::Paused,
                ServiceUpdateStatusStateEnum::COMPLETED => UpdateState::Completed,
                ServiceUpdateStatusStateEnum::ROLLBACK_STARTED => UpdateState::RollbackStarted,
                ServiceUpdateStatusStateEnum::ROLLBACK_PAUSED => UpdateState::RollbackPaused,
                ServiceUpdateStatusStateEnum::ROLLBACK_COMPLETED => UpdateState::RollbackCompleted,
                ServiceUpdateStatusStateEnum::EMPTY => return None,
            };
            Some(UpdateStatus {
                state,
                started_at: u.started_at.as_deref().and_then(parse_time),
                completed_at: u.completed_at.as_deref().and_then(parse_time),
                message: u.message.clone().filter(|m| !m.is_empty()),
            })
        });
        let id = service.id.clone().unwrap_or_default();
        let tasks = tasks
            .iter()
            .filter(|t| t.service_id.as_deref() == Some(id.as_str()))
            .map(|t| task_observation(t, up_to_date))
            .collect();
        ServiceObservation {
            name: spec.name.clone().unwrap_or_else(|| id.clone()),
            id,
            deploy_id: labels.get(DEPLOY_ID_LABEL).cloned(),
            labels,
            spec: spec_json,
            update,
            mode,
            monitor,
            failure_action,
            restart,
            image,
            desired_tasks: service.service_status.as_ref().and_then(|s| s.desired_tasks),
            tasks,
        }
    }

    /// The tasks that count for the current spec, one per slot (replicated)
    /// or node (global). Where a slot holds several (a restart, or a
    /// `start-first` update), the one with the lowest desired state wins,
    /// then the lowest observed state, as in docker/cli's progress
    /// (`tasksBySlot`, cli/command/service/progress/progress.go).
    pub fn current_tasks(&self) -> Vec<&TaskObservation> {
        let by_node = matches!(self.mode, ServiceMode::Global | ServiceMode::GlobalJob);
        let mut chosen: BTreeMap<String, &TaskObservation> = BTreeMap::new();
        for task in self.tasks.iter().filter(|t| t.up_to_date) {
            let key = if by_node {
                task.node_id.clone().unwrap_or_default()
            } else {
                task.slot.map_or_else(|| task.id.clone(), |s| s.to_string())
            };
            let better =
                chosen.get(&key).is_none_or(|existing| (task.desired, task.state) < (existing.desired, existing.state));
            if better {
                chosen.insert(key, task);
            }
        }
        chosen.into_values().collect()
    }

    /// How many tasks the current spec wants. For a global service: the
    /// engine's `DesiredTasks` (eligible nodes) when it reports one, else the
    /// nodes that hold an up-to-date task, as docker/cli counts them.
    pub fn desired(&self) -> u64 {
        match self.mode {
            ServiceMode::Replicated { replicas } => replicas,
            ServiceMode::ReplicatedJob { completions } => completions,
            ServiceMode::Global | ServiceMode::GlobalJob => {
                self.desired_tasks.filter(|n| *n > 0).unwrap_or_else(|| self.current_tasks().len() as u64)
            }
        }
    }

    /// Current tasks that are running (desired running, state running), plus
    /// tasks that finished as intended: a one-shot service's (`restart_policy:
    /// none`/`on-failure`) or a job's task that completed.
    pub fn satisfied(&self) -> u64 {
        let finished_ok = |t: &TaskObservation| {
            t.state == TaskState::Complete
                && (self.restart != RestartCondition::Any
                    || matches!(self.mode, ServiceMode::ReplicatedJob { .. } | ServiceMode::GlobalJob))
        };
        self.current_tasks()
            .into_iter()
            .filter(|t| (t.desired == TaskState::Running && t.state == TaskState::Running) || finished_ok(t))
            .count() as u64
    }

    /// Running tasks that do not run the current spec: in the window between a
    /// spec change and swarm's updater starting, all of them.
    pub fn outdated_running(&self) -> usize {
        self.tasks
            .iter()
            .filter(|t| !t.up_to_date && t.desired <= TaskState::Running && t.state == TaskState::Running)
            .count()
    }

    /// Tasks of the current spec that ended badly: failed, rejected, or (for a
    /// long-running service) exited at all, which swarm counts as "early
    /// termination" too (updater.go `failureTriggersAction`).
    pub fn failed_tasks(&self) -> impl Iterator<Item = &TaskObservation> {
        let long_running = self.restart == RestartCondition::Any
            && matches!(self.mode, ServiceMode::Replicated { .. } | ServiceMode::Global);
        self.tasks.iter().filter(move |t| {
            t.up_to_date
                && (matches!(t.state, TaskState::Failed | TaskState::Rejected)
                    || (long_running && t.state == TaskState::Complete))
        })
    }
}

fn task_observation(task: &Task, up_to_date: &HashSet<String>) -> TaskObservation {
    let status = task.status.clone().unwrap_or_default();
    let id = task.id.clone().unwrap_or_default();
    TaskObservation {
        up_to_date: up_to_date.contains(&id),
        id,
        slot: task.slot,
        node_id: task.node_id.clone().filter(|n| !n.is_empty()),
        desired: task.desired_state.map_or(TaskState::New, task_state),
        state: status.state.map_or(TaskState::New, task_state),
        since: status.timestamp.as_deref().and_then(parse_time),
        error: status.err.filter(|e| !e.is_empty()),
        message: status.message.filter(|m| !m.is_empty()),
        exit_code: status.container_status.and_then(|c| c.exit_code),
        created_at: task.created_at.as_deref().and_then(parse_time),
    }
}

fn task_state(state: bollard::models::TaskState) -> TaskState {
    use bollard::models::TaskState as S;
    match state {
        S::NEW => TaskState::New,
        S::ALLOCATED => TaskState::Allocated,
        S::PENDING => TaskState::Pending,
        S::ASSIGNED => TaskState::Assigned,
        S::ACCEPTED => TaskState::Accepted,
        S::PREPARING => TaskState::Preparing,
        S::READY => TaskState::Ready,
        S::STARTING => TaskState::Starting,
        S::RUNNING => TaskState::Running,
        S::COMPLETE => TaskState::Complete,
        S::SHUTDOWN => TaskState::Shutdown,
        S::FAILED => TaskState::Failed,
        S::REJECTED => TaskState::Rejected,
        S::REMOVE => TaskState::Remove,
        S::ORPHANED => TaskState::Orphaned,
    }
}

fn monitor_of(config: Option<&ServiceSpecUpdateConfig>) -> Duration {
    config
        .and_then(|c| c.monitor)
        .filter(|ns| *ns > 0)
        .map_or(DEFAULT_MONITOR, |ns| Duration::from_nanos(ns.unsigned_abs()))
}

fn non_negative(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Parses an engine timestamp; Go's zero time (`0001-01-01T00:00:00Z`) is "unset".
pub(crate) fn parse_time(text: &str) -> Option<Timestamp> {
    let ts: Timestamp = text.parse().ok()?;
    (ts.as_second() > 0).then_some(ts)
}

/// RFC 3339 text for optional timestamps (jiff's serde support is not enabled
/// in the workspace).
pub(crate) mod timestamp {
    use jiff::Timestamp;

    #[allow(clippy::ref_option)] // serde's `with` hands over `&Option<T>`
    pub(crate) fn serialize<S: serde::Serializer>(ts: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
        match ts {
            Some(ts) => s.collect_str(ts),
            None => s.serialize_none(),
        }
    }
}
