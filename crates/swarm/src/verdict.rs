//! The convergence verdict: a pure function of what lkg observed, fed one
//! observation at a time.
//!
//! [`ServiceWatch::observe`] takes an observation and the time elapsed since
//! the watch began, and answers "still waiting, because ..." or a
//! [`ServiceVerdict`]. It does no I/O and reads no clock, so the rules below are
//! unit-tested over observations recorded from a real engine
//! (`fixtures/swarm/`). The rules and the swarm behaviour behind each one are
//! in `docs/swarm.md`.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;

use crate::DeployId;
use crate::observe::{FailureAction, RestartCondition, ServiceObservation, TaskObservation, TaskState, UpdateState};

/// The outcome for one service, or for a whole stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Verdict {
    /// The deploy changed nothing but its own deploy id: no task was replaced.
    NoChange,
    /// This deploy's spec runs on every desired task and stayed up for one
    /// `monitor` period after swarm declared the update complete.
    Converged,
    /// Nothing decisive happened before the deadline: swarm itself would wait
    /// forever (a task that never schedules or never stays up).
    DeadlineExceeded,
    /// Another client changed or removed the service during the watch, so
    /// this deploy's outcome cannot be told.
    Superseded,
    /// A task of this deploy ended and swarm will not replace it
    /// (`restart_policy: none`).
    Failed,
    /// This deploy's tasks keep failing: as many as the watch's task failure
    /// limit failed (3 by default) while not all desired tasks run. swarm
    /// restarts them for ever and, for a service the deploy created or an
    /// update whose `failure_action` is not `rollback`, puts nothing back,
    /// so waiting for the deadline would only prolong the outage.
    TaskFailed,
    /// swarm paused this deploy's update on a task failure (`failure_action: pause`).
    Paused,
    /// swarm's rollback of this deploy itself failed and paused.
    RollbackPaused,
    /// swarm rolled this deploy back: the previous spec runs again.
    RolledBack,
}

impl Verdict {
    /// `converged` or `no_change`.
    pub fn is_success(self) -> bool {
        matches!(self, Verdict::Converged | Verdict::NoChange)
    }

    /// The name used in output.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::NoChange => "no_change",
            Verdict::Converged => "converged",
            Verdict::DeadlineExceeded => "deadline_exceeded",
            Verdict::Superseded => "superseded",
            Verdict::Failed => "failed",
            Verdict::TaskFailed => "task_failed",
            Verdict::Paused => "paused",
            Verdict::RollbackPaused => "rollback_paused",
            Verdict::RolledBack => "rolled_back",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The verdict for one service, with the facts behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceVerdict {
    /// `<stack>_<service>`.
    pub service: String,
    /// The outcome.
    pub verdict: Verdict,
    /// Why, in one sentence.
    pub reason: String,
    /// swarm's update state when the verdict was reached.
    pub update_state: Option<UpdateState>,
    /// swarm's update message, e.g. which task triggered a rollback.
    pub update_message: Option<String>,
    /// Tasks of the current spec that run (or finished as intended).
    pub running: u64,
    /// Tasks the current spec wants.
    pub desired: u64,
    /// The last errors of this deploy's tasks, newest first (at most three).
    pub task_errors: Vec<String>,
    /// When lkg reached the verdict (set by the watch loop; the pure
    /// assessment knows no clock).
    #[serde(with = "crate::observe::timestamp", skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<Timestamp>,
}

/// What a service is waiting for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "phase")]
#[non_exhaustive]
pub enum Phase {
    /// The service does not exist (yet).
    Missing,
    /// The service's spec does not carry this deploy's id: the deploy has not
    /// reached it. Its update status, if any, belongs to an earlier update.
    NotReached {
        /// The deploy id the spec carries.
        deploy_id: Option<String>,
        /// The earlier update's state, ignored.
        stale_state: Option<UpdateState>,
    },
    /// The spec is this deploy's, tasks still run the old one, and swarm's
    /// updater has not set `UpdateStatus` yet.
    UpdaterNotStarted,
    /// swarm is replacing tasks.
    Updating {
        /// Current-spec tasks running.
        running: u64,
        /// Current-spec tasks wanted.
        desired: u64,
    },
    /// swarm is rolling this deploy back.
    RollingBack,
    /// Tasks of the current spec are being created (new service, scale, or no
    /// task change) and are not all running yet.
    Starting {
        /// Current-spec tasks running.
        running: u64,
        /// Current-spec tasks wanted.
        desired: u64,
    },
    /// All tasks run; watching one `monitor` period for a failure.
    Verifying {
        /// Time left in the period.
        #[serde(with = "millis")]
        remaining: Duration,
    },
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Phase::Missing => f.write_str("the service does not exist"),
            Phase::NotReached { deploy_id, stale_state } => {
                match deploy_id {
                    Some(id) => write!(f, "the deploy has not reached this service (its spec carries {id})")?,
                    None => f.write_str("the deploy has not reached this service (its spec carries no deploy id)")?,
                }
                if let Some(state) = stale_state {
                    write!(f, "; its update status `{state}` belongs to an earlier update and is ignored")?;
                }
                Ok(())
            }
            Phase::UpdaterNotStarted => f.write_str("waiting for swarm's updater to start (UpdateStatus not set yet)"),
            Phase::Updating { running, desired } => {
                write!(f, "updating: {running}/{desired} tasks of the new spec running")
            }
            Phase::RollingBack => f.write_str("swarm is rolling this deploy back"),
            Phase::Starting { running, desired } => write!(f, "starting: {running}/{desired} tasks running"),
            Phase::Verifying { remaining } => {
                write!(f, "all tasks running; verifying they stay up for {:.1}s more", remaining.as_secs_f64())
            }
        }
    }
}

mod millis {
    pub(super) fn serialize<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u128(d.as_millis())
    }
}

/// What one observation means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assessment {
    /// Keep watching. `wake` is when the answer may change without any new
    /// event (the end of a verification period).
    Pending {
        /// What the service waits for.
        phase: Phase,
        /// Time since the watch began at which to look again regardless.
        wake: Option<Duration>,
    },
    /// The verdict.
    Decided(ServiceVerdict),
}

/// What lkg knows about a service from before its deploy.
#[derive(Debug, Clone, PartialEq)]
pub struct Prior {
    /// The deploy id its spec carried (`None` if unlabelled).
    pub deploy_id: Option<String>,
    /// Its spec, without the deploy id label.
    pub spec: serde_json::Value,
}

/// Which statuses belong to a deploy: its id, and when it began on the
/// engine's clock (an update this deploy caused starts after that).
#[derive(Debug, Clone, PartialEq)]
pub struct Ownership {
    /// This deploy's id.
    pub deploy_id: DeployId,
    /// The engine's clock just before the deploy ran.
    pub since: Timestamp,
    /// The service before the deploy; `None` if the deploy creates it.
    pub prior: Option<Prior>,
}

/// The verdict state machine of one service during one watch.
#[derive(Debug, Clone)]
pub struct ServiceWatch {
    name: String,
    ownership: Ownership,
    deadline: Duration,
    saw_ours: bool,
    our_spec: Option<serde_json::Value>,
    stable_since: Option<Duration>,
    completed_seen: Option<Duration>,
    seen_failures: BTreeSet<String>,
    deploy_failures: BTreeSet<String>,
    last: Option<(UpdateState, Option<String>)>,
    rollback_reason: Option<String>,
    failure_limit: usize,
}

/// Failed tasks of one deploy after which a service that is not all running
/// is [`Verdict::TaskFailed`], unless the watch says otherwise.
pub const DEFAULT_TASK_FAILURE_LIMIT: usize = 3;

impl ServiceWatch {
    /// Starts watching `name` for the deploy described by `ownership`; the
    /// verdict is `deadline_exceeded` if nothing decides it within `deadline`.
    pub fn new(name: &str, ownership: Ownership, deadline: Duration) -> ServiceWatch {
        ServiceWatch {
            name: name.to_owned(),
            ownership,
            deadline,
            saw_ours: false,
            our_spec: None,
            stable_since: None,
            completed_seen: None,
            seen_failures: BTreeSet::new(),
            deploy_failures: BTreeSet::new(),
            last: None,
            rollback_reason: None,
            failure_limit: DEFAULT_TASK_FAILURE_LIMIT,
        }
    }

    /// Decides [`Verdict::TaskFailed`] once `limit` tasks of this deploy
    /// failed while not all desired tasks run (0: never; wait for the
    /// deadline as swarm would).
    #[must_use]
    pub fn task_failure_limit(mut self, limit: usize) -> ServiceWatch {
        self.failure_limit = limit;
        self
    }

    /// The service watched.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Feeds one observation (`None`: the service does not exist), made
    /// `elapsed` after the watch began.
    pub fn observe(&mut self, observation: Option<&ServiceObservation>, elapsed: Duration) -> Assessment {
        let assessment = match observation {
            None if self.saw_ours => Assessment::Decided(self.verdict(
                None,
                Verdict::Superseded,
                "the service was removed by another client during the watch".to_owned(),
            )),
            None => Assessment::Pending { phase: Phase::Missing, wake: None },
            Some(obs) => self.assess(obs, elapsed),
        };
        match assessment {
            Assessment::Pending { phase, .. } if elapsed >= self.deadline => {
                let mut reason = format!("no verdict within {}s: {phase}", self.deadline.as_secs());
                if let Some(error) = observation.and_then(|obs| task_errors(obs).into_iter().next()) {
                    reason.push_str("; last task error: ");
                    reason.push_str(&error);
                }
                Assessment::Decided(self.verdict(observation, Verdict::DeadlineExceeded, reason))
            }
            Assessment::Pending { phase, wake } => {
                Assessment::Pending { phase, wake: Some(wake.map_or(self.deadline, |w| w.min(self.deadline))) }
            }
            decided @ Assessment::Decided(_) => decided,
        }
    }

    fn assess(&mut self, obs: &ServiceObservation, elapsed: Duration) -> Assessment {
        if let Some(update) = &obs.update {
            self.last = Some((update.state, update.message.clone()));
            // `rollback_started` carries swarm's reason ("update rolled back
            // due to failure or early termination of task X");
            // `rollback_completed` overwrites it with "rollback completed"
            // (updater.go `completeUpdate`), so keep the first.
            if update.state == UpdateState::RollbackStarted && self.rollback_reason.is_none() {
                self.rollback_reason.clone_from(&update.message);
            }
        }
        let new_failure = self.note_failures(obs);
        let ours = obs.deploy_id.as_deref() == Some(self.ownership.deploy_id.as_str());
        if ours {
            self.saw_ours = true;
            match &self.our_spec {
                None => self.our_spec = Some(obs.spec.clone()),
                // `docker service update` copies the labels it does not
                // change, so a foreign update can keep this deploy's id.
                Some(spec) if *spec != obs.spec => {
                    return Assessment::Decided(self.verdict(
                        Some(obs),
                        Verdict::Superseded,
                        format!(
                            "another client changed the service after deploy {} set its spec (the spec still carries the id but differs)",
                            self.ownership.deploy_id
                        ),
                    ));
                }
                Some(_) => {}
            }
            return self.assess_ours(obs, elapsed, new_failure);
        }
        self.assess_not_ours(obs)
    }

    fn assess_ours(&mut self, obs: &ServiceObservation, elapsed: Duration, new_failure: bool) -> Assessment {
        let running = obs.satisfied();
        let desired = obs.desired();
        let Some(update) = &obs.update else {
            // Any spec change resets UpdateStatus to nil (swarmkit
            // controlapi UpdateService); the updater sets `updating` only if a
            // task must be replaced (updater.go: "Abort immediately if all
            // tasks are clean").
            if let Some(failed) = self.permanent_failure(obs) {
                return Assessment::Decided(failed);
            }
            let unchanged = self.ownership.prior.as_ref().is_some_and(|p| p.spec == obs.spec);
            if unchanged && running >= desired && obs.outdated_running() == 0 {
                return Assessment::Decided(self.verdict(
                    Some(obs),
                    Verdict::NoChange,
                    format!(
                        "the deploy changed nothing but its deploy id; {running}/{desired} tasks running, none replaced"
                    ),
                ));
            }
            if !unchanged && obs.outdated_running() > 0 && running < desired {
                return Assessment::Pending { phase: Phase::UpdaterNotStarted, wake: None };
            }
            return self.stabilize(obs, elapsed, Duration::ZERO, new_failure, Phase::Starting { running, desired });
        };
        match update.state {
            UpdateState::Updating => {
                self.stable_since = None;
                // With `rollback`, swarm's updater puts the previous spec back
                // on a failure within its monitor window: its verdict is the
                // rule. With `continue` it goes on and the restart supervisor
                // restarts the failed tasks for ever; with `pause` it pauses
                // only on failures of tasks it started itself within
                // `monitor`, beyond `max_failure_ratio` (swarmkit updater.go
                // `failureTriggersAction`), so a loop can go on under
                // `updating` for as long as the monitor period lasts.
                if obs.failure_action != FailureAction::Rollback
                    && let Some(failed) = self.crash_loop(obs)
                {
                    return Assessment::Decided(failed);
                }
                Assessment::Pending { phase: Phase::Updating { running, desired }, wake: None }
            }
            UpdateState::Completed => {
                // docker/cli keeps watching after `completed` until the tasks
                // stayed up for one monitor period (progress.go `convergedAt`);
                // swarm's updater only counts failures of tasks it started
                // within its own monitor window, so a task that dies just
                // after it would otherwise go unnoticed.
                let completed = *self.completed_seen.get_or_insert(elapsed);
                if let Some(failed) = self.permanent_failure(obs) {
                    return Assessment::Decided(failed);
                }
                self.stabilize(obs, elapsed, completed, new_failure, Phase::Updating { running, desired })
            }
            UpdateState::Paused => Assessment::Decided(self.verdict(
                Some(obs),
                Verdict::Paused,
                format!("swarm paused the update: {}", update.message.as_deref().unwrap_or("no message")),
            )),
            UpdateState::RollbackStarted | UpdateState::RollbackPaused | UpdateState::RollbackCompleted => {
                // A rollback restores the previous spec; seeing this deploy's
                // id with a rollback status means a later update by someone
                // else was rolled back onto this deploy's spec.
                Assessment::Decided(self.verdict(
                    Some(obs),
                    Verdict::Superseded,
                    format!(
                        "another client updated the service after this deploy and that update was rolled back ({})",
                        update.state
                    ),
                ))
            }
        }
    }

    fn assess_not_ours(&mut self, obs: &ServiceObservation) -> Assessment {
        let prior_id = self.ownership.prior.as_ref().map(|p| p.deploy_id.clone());
        let fresh = obs.update.as_ref().filter(|u| u.started_at.is_some_and(|t| t >= self.ownership.since));
        if let Some(update) = fresh.filter(|u| u.state.is_rollback()) {
            // An automatic rollback puts the previous spec back and clears
            // PreviousSpec (swarmkit updater.go `rollbackUpdate`); a manual
            // `docker service rollback` swaps the two. Either way the spec is
            // the prior one again and the status started after this deploy.
            if prior_id.as_ref() == Some(&obs.deploy_id) {
                let message = self.rollback_reason.as_deref().or(update.message.as_deref()).unwrap_or("no message");
                return match update.state {
                    UpdateState::RollbackCompleted => Assessment::Decided(self.verdict(
                        Some(obs),
                        Verdict::RolledBack,
                        format!("swarm rolled the update back: {message}"),
                    )),
                    UpdateState::RollbackPaused => Assessment::Decided(self.verdict(
                        Some(obs),
                        Verdict::RollbackPaused,
                        format!("swarm's rollback of this deploy paused: {message}"),
                    )),
                    _ => Assessment::Pending { phase: Phase::RollingBack, wake: None },
                };
            }
        }
        if self.saw_ours {
            let by = obs.deploy_id.as_deref().unwrap_or("no deploy id");
            return Assessment::Decided(self.verdict(
                Some(obs),
                Verdict::Superseded,
                format!("another deploy replaced this one during the watch (the spec now carries {by})"),
            ));
        }
        if fresh.is_some() && prior_id.as_ref() != Some(&obs.deploy_id) {
            let by = obs.deploy_id.as_deref().unwrap_or("no deploy id");
            return Assessment::Decided(self.verdict(
                Some(obs),
                Verdict::Superseded,
                format!("another client updated the service since this deploy began (the spec carries {by})"),
            ));
        }
        Assessment::Pending {
            phase: Phase::NotReached {
                deploy_id: obs.deploy_id.clone(),
                stale_state: obs.update.as_ref().map(|u| u.state),
            },
            wake: None,
        }
    }

    /// Requires every desired task of the current spec to stay up, with no
    /// new task failure, for one monitor period starting no earlier than `from`.
    fn stabilize(
        &mut self,
        obs: &ServiceObservation,
        elapsed: Duration,
        from: Duration,
        new_failure: bool,
        waiting: Phase,
    ) -> Assessment {
        let running = obs.satisfied();
        let desired = obs.desired();
        if let Some(failed) = self.crash_loop(obs) {
            return Assessment::Decided(failed);
        }
        if new_failure || running < desired || desired == 0 {
            self.stable_since = None;
            return Assessment::Pending { phase: waiting, wake: None };
        }
        let start = (*self.stable_since.get_or_insert(elapsed)).max(from);
        let end = start + obs.monitor;
        if elapsed >= end {
            let how = if self.completed_seen.is_some() {
                "swarm completed the update and "
            } else if self.ownership.prior.is_none() {
                "the service was created and "
            } else {
                "no task needed replacing and "
            };
            return Assessment::Decided(self.verdict(
                Some(obs),
                Verdict::Converged,
                format!(
                    "{how}all {running}/{desired} tasks of this deploy's spec stayed up for one monitor period ({:.1}s)",
                    obs.monitor.as_secs_f64()
                ),
            ));
        }
        Assessment::Pending { phase: Phase::Verifying { remaining: end.saturating_sub(elapsed) }, wake: Some(end) }
    }

    /// A one-shot task of this deploy that failed and that swarm will not
    /// replace (`restart_policy: none`).
    fn permanent_failure(&self, obs: &ServiceObservation) -> Option<ServiceVerdict> {
        if obs.restart != RestartCondition::None {
            return None;
        }
        let failed =
            obs.current_tasks().into_iter().find(|t| matches!(t.state, TaskState::Failed | TaskState::Rejected))?;
        let why = failed.error.clone().unwrap_or_else(|| failed.state.to_string());
        Some(self.verdict(
            Some(obs),
            Verdict::Failed,
            format!("task {} failed ({why}) and restart_policy is none, so swarm will not replace it", failed.id),
        ))
    }

    /// Tasks of this deploy that failed as often as the limit, with not all
    /// desired tasks running: swarm will go on restarting them (a crash loop,
    /// or a healthcheck that never passes).
    fn crash_loop(&self, obs: &ServiceObservation) -> Option<ServiceVerdict> {
        let failures = self.deploy_failures.len();
        let (running, desired) = (obs.satisfied(), obs.desired());
        if self.failure_limit == 0 || failures < self.failure_limit || running >= desired {
            return None;
        }
        let last = obs.failed_tasks().filter(|t| self.deploy_failures.contains(&t.id)).max_by_key(|t| t.since);
        let what = match last {
            Some(task) => {
                let code = task.exit_code.map(|c| format!(" with exit code {c}")).unwrap_or_default();
                let error = task.error.as_deref().or(task.message.as_deref()).unwrap_or("no error given");
                format!("; the last, task {}, ended{code}: {error}", task.id.get(..12).unwrap_or(&task.id))
            }
            None => String::new(),
        };
        let during = match &obs.update {
            Some(update) if update.state == UpdateState::Updating => {
                format!(" (its update goes on: failure_action {})", obs.failure_action)
            }
            _ => String::new(),
        };
        Some(self.verdict(
            Some(obs),
            Verdict::TaskFailed,
            format!(
                "{failures} tasks of this deploy failed (the limit is {}) and {running}/{desired} run; swarm would \
                 restart them for ever{during}{what}",
                self.failure_limit
            ),
        ))
    }

    /// Records failed tasks of the current spec; `true` if one is new.
    fn note_failures(&mut self, obs: &ServiceObservation) -> bool {
        let mut new = false;
        for task in obs.failed_tasks() {
            new |= self.seen_failures.insert(task.id.clone());
            if self.created_by_this_deploy(task) {
                self.deploy_failures.insert(task.id.clone());
            }
        }
        new
    }

    /// A task of the current spec that this deploy created. The engine's
    /// `_up-to-date` compares task specs only, so after an update to a spec
    /// that ran before (a retry of a release that was rolled back), swarm's
    /// kept task history (5 per slot) holds failures of the earlier deploy
    /// that are "up to date" again; only tasks created since this deploy
    /// began are its own. Every task of a service the deploy created is.
    /// A task without a creation time is not counted in an update: waiting
    /// for the deadline is the safe side.
    fn created_by_this_deploy(&self, task: &TaskObservation) -> bool {
        self.ownership.prior.is_none() || task.created_at.is_some_and(|at| at >= self.ownership.since)
    }

    fn verdict(&self, obs: Option<&ServiceObservation>, verdict: Verdict, reason: String) -> ServiceVerdict {
        let (update_state, mut update_message) = match obs.and_then(|o| o.update.as_ref()) {
            Some(u) => (Some(u.state), u.message.clone()),
            None => self.last.clone().map_or((None, None), |(s, m)| (Some(s), m)),
        };
        if update_state.is_some_and(UpdateState::is_rollback) && self.rollback_reason.is_some() {
            update_message.clone_from(&self.rollback_reason);
        }
        ServiceVerdict {
            service: self.name.clone(),
            verdict,
            reason,
            update_state,
            update_message,
            running: obs.map_or(0, ServiceObservation::satisfied),
            desired: obs.map_or(0, ServiceObservation::desired),
            task_errors: obs.map(task_errors).unwrap_or_default(),
            decided_at: None,
        }
    }
}

/// Errors of current-spec tasks, newest first, at most three.
pub(crate) fn task_errors(obs: &ServiceObservation) -> Vec<String> {
    let mut tasks: Vec<_> =
        obs.tasks.iter().filter(|t| t.up_to_date && (t.error.is_some() || t.state == TaskState::Pending)).collect();
    tasks.sort_by_key(|t| std::cmp::Reverse(t.since));
    tasks
        .into_iter()
        .filter_map(|t| {
            let text = t.error.clone().or_else(|| t.message.clone())?;
            Some(format!("{} {}: {text}", t.id.get(..12).unwrap_or(&t.id), t.state))
        })
        .take(3)
        .collect()
}

/// The verdict of a whole stack: the worst of its services'.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StackVerdict {
    /// The worst service verdict (`no_change` only if every service is unchanged).
    pub verdict: Verdict,
    /// One verdict per service the deploy declares, by name.
    pub services: Vec<ServiceVerdict>,
}

impl StackVerdict {
    /// Combines per-service verdicts.
    pub fn from_services(mut services: Vec<ServiceVerdict>) -> StackVerdict {
        services.sort_by(|a, b| a.service.cmp(&b.service));
        let verdict = services.iter().map(|s| s.verdict).max().unwrap_or(Verdict::NoChange);
        StackVerdict { verdict, services }
    }

    /// Every service converged or was unchanged.
    pub fn is_success(&self) -> bool {
        self.verdict.is_success()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::{RestartCondition, ServiceMode, TaskObservation};

    /// A service the deploy created: one replica, restarted on any exit,
    /// with `failed` failed tasks of this deploy and `running` running.
    fn crash_looping(deploy_id: &DeployId, failed: usize, running: bool) -> ServiceObservation {
        let task = |i: usize, state: TaskState| TaskObservation {
            id: format!("task{i:02}aaaaaaaaaaaaaa"),
            slot: Some(1),
            node_id: Some("node".to_owned()),
            desired: if state == TaskState::Running { TaskState::Running } else { TaskState::Shutdown },
            state,
            since: Timestamp::from_second(1_800_000_000 + i64::try_from(i).unwrap()).ok(),
            error: (state == TaskState::Failed).then(|| "task: non-zero exit (3)".to_owned()),
            message: None,
            exit_code: (state == TaskState::Failed).then_some(3),
            created_at: Timestamp::from_second(1_800_000_000 + i64::try_from(i).unwrap()).ok(),
            up_to_date: true,
        };
        let mut tasks: Vec<TaskObservation> = (0..failed).map(|i| task(i, TaskState::Failed)).collect();
        if running {
            tasks.push(task(failed, TaskState::Running));
        }
        ServiceObservation {
            id: "svc".to_owned(),
            name: "shop_app".to_owned(),
            deploy_id: Some(deploy_id.as_str().to_owned()),
            labels: std::collections::BTreeMap::default(),
            spec: serde_json::json!({"image": "app:1.1.0"}),
            update: None,
            mode: ServiceMode::Replicated { replicas: 1 },
            monitor: Duration::from_secs(5),
            failure_action: FailureAction::Pause,
            restart: RestartCondition::Any,
            image: Some("app:1.1.0".to_owned()),
            desired_tasks: Some(1),
            tasks,
        }
    }

    fn created(deploy_id: &DeployId) -> ServiceWatch {
        let ownership = Ownership {
            deploy_id: deploy_id.clone(),
            since: Timestamp::from_second(1_799_999_999).unwrap(),
            prior: None,
        };
        ServiceWatch::new("shop_app", ownership, Duration::from_secs(300))
    }

    #[test]
    fn a_created_service_whose_tasks_keep_failing_is_task_failed_at_the_limit() {
        let id = DeployId::generate();
        let mut watch = created(&id);
        let mut at = Duration::ZERO;
        for failed in 0..3 {
            at += Duration::from_secs(6);
            let assessment = watch.observe(Some(&crash_looping(&id, failed, false)), at);
            assert!(matches!(assessment, Assessment::Pending { .. }), "{failed} failures: {assessment:?}");
        }
        at += Duration::from_secs(6);
        let Assessment::Decided(verdict) = watch.observe(Some(&crash_looping(&id, 3, false)), at) else {
            panic!("three failures decide")
        };
        assert_eq!(verdict.verdict, Verdict::TaskFailed);
        assert!(!verdict.verdict.is_success());
        assert_eq!(verdict.verdict.as_str(), "task_failed");
        assert!(
            verdict.reason.starts_with("3 tasks of this deploy failed (the limit is 3) and 0/1 run"),
            "{}",
            verdict.reason
        );
        assert!(
            verdict.reason.ends_with("task task02aaaaaa, ended with exit code 3: task: non-zero exit (3)"),
            "{}",
            verdict.reason
        );
    }

    #[test]
    fn the_limit_is_configurable_and_a_running_service_is_not_a_crash_loop() {
        let id = DeployId::generate();
        // With every desired task running, earlier failures are history:
        // the monitor period decides, as before.
        let mut watch = created(&id);
        let running = crash_looping(&id, 3, true);
        let assessment = watch.observe(Some(&running), Duration::from_secs(1));
        assert!(matches!(assessment, Assessment::Pending { phase: Phase::Starting { .. }, .. }), "{assessment:?}");
        let assessment = watch.observe(Some(&running), Duration::from_secs(2));
        assert!(matches!(assessment, Assessment::Pending { phase: Phase::Verifying { .. }, .. }), "{assessment:?}");
        // Limit 0: wait for the deadline, as swarm would.
        let mut patient = created(&id).task_failure_limit(0);
        let assessment = patient.observe(Some(&crash_looping(&id, 10, false)), Duration::from_secs(60));
        assert!(matches!(assessment, Assessment::Pending { .. }), "{assessment:?}");
        let mut quick = created(&id).task_failure_limit(1);
        let Assessment::Decided(verdict) = quick.observe(Some(&crash_looping(&id, 1, false)), Duration::from_secs(2))
        else {
            panic!("one failure decides with limit 1")
        };
        assert_eq!(verdict.verdict, Verdict::TaskFailed);
    }

    /// A service updated by this deploy (its prior spec ran 1.0.0), swarm's
    /// update in flight with `action`, tasks as [`crash_looping`] makes them.
    fn updating(deploy_id: &DeployId, action: FailureAction, failed: usize) -> ServiceObservation {
        let mut obs = crash_looping(deploy_id, failed, false);
        obs.failure_action = action;
        obs.update = Some(crate::observe::UpdateStatus {
            state: UpdateState::Updating,
            started_at: Timestamp::from_second(1_800_000_000).ok(),
            completed_at: None,
            message: Some("update in progress".to_owned()),
        });
        obs
    }

    fn updated(deploy_id: &DeployId) -> ServiceWatch {
        let ownership = Ownership {
            deploy_id: deploy_id.clone(),
            since: Timestamp::from_second(1_799_999_999).unwrap(),
            prior: Some(Prior { deploy_id: None, spec: serde_json::json!({"image": "app:1.0.0"}) }),
        };
        ServiceWatch::new("shop_app", ownership, Duration::from_secs(300))
    }

    #[test]
    fn an_update_that_goes_on_while_its_tasks_keep_failing_is_task_failed_at_the_limit() {
        let id = DeployId::generate();
        for action in [FailureAction::Continue, FailureAction::Pause] {
            let mut watch = updated(&id);
            for failed in 0..3 {
                let assessment = watch.observe(Some(&updating(&id, action, failed)), Duration::from_secs(5));
                assert!(
                    matches!(assessment, Assessment::Pending { phase: Phase::Updating { running: 0, desired: 1 }, .. }),
                    "{action}, {failed} failures: {assessment:?}"
                );
            }
            let Assessment::Decided(verdict) = watch.observe(Some(&updating(&id, action, 3)), Duration::from_secs(20))
            else {
                panic!("{action}: three failures of this deploy decide while the update is in flight")
            };
            assert_eq!(verdict.verdict, Verdict::TaskFailed, "{action}");
            assert_eq!(verdict.update_state, Some(UpdateState::Updating));
            assert!(
                verdict.reason.starts_with("3 tasks of this deploy failed (the limit is 3) and 0/1 run"),
                "{}",
                verdict.reason
            );
            assert!(
                verdict.reason.contains(&format!("(its update goes on: failure_action {action})")),
                "{}",
                verdict.reason
            );
            assert!(
                verdict.reason.ends_with("task task02aaaaaa, ended with exit code 3: task: non-zero exit (3)"),
                "{}",
                verdict.reason
            );
        }
    }

    #[test]
    fn with_failure_action_rollback_swarms_rollback_stays_the_rule() {
        let id = DeployId::generate();
        let mut watch = updated(&id);
        let assessment = watch.observe(Some(&updating(&id, FailureAction::Rollback, 6)), Duration::from_secs(30));
        assert!(matches!(assessment, Assessment::Pending { phase: Phase::Updating { .. }, .. }), "{assessment:?}");
    }

    #[test]
    fn failures_of_an_earlier_deploy_of_the_same_spec_do_not_count() {
        let id = DeployId::generate();
        // Tasks 0-2: up-to-date failures created before this deploy began
        // (the same release, tried and undone earlier); task 3: no creation
        // time; from task 4 on: this deploy's own.
        let observed = |failed: usize| {
            let mut obs = updating(&id, FailureAction::Continue, failed);
            for (i, task) in obs.tasks.iter_mut().enumerate() {
                match i {
                    0..=2 => task.created_at = Timestamp::from_second(1_799_999_000 + i64::try_from(i).unwrap()).ok(),
                    3 => task.created_at = None,
                    _ => {}
                }
            }
            obs
        };
        let mut watch = updated(&id);
        let assessment = watch.observe(Some(&observed(6)), Duration::from_secs(10));
        assert!(matches!(assessment, Assessment::Pending { .. }), "two of this deploy's failures: {assessment:?}");
        let Assessment::Decided(verdict) = watch.observe(Some(&observed(7)), Duration::from_secs(15)) else {
            panic!("the third failure of this deploy decides")
        };
        assert_eq!(verdict.verdict, Verdict::TaskFailed);
        assert!(verdict.reason.starts_with("3 tasks of this deploy failed"), "{}", verdict.reason);
        assert!(verdict.reason.contains("task task06aaaaaa, ended"), "the last is this deploy's: {}", verdict.reason);
    }

    #[test]
    fn the_stack_takes_the_worst_verdict() {
        let v = |service: &str, verdict| ServiceVerdict {
            service: service.to_owned(),
            verdict,
            reason: String::new(),
            update_state: None,
            update_message: None,
            running: 0,
            desired: 0,
            task_errors: Vec::new(),
            decided_at: None,
        };
        let stack = StackVerdict::from_services(vec![v("b", Verdict::Converged), v("a", Verdict::NoChange)]);
        assert_eq!(stack.verdict, Verdict::Converged);
        assert!(stack.is_success());
        let stack = StackVerdict::from_services(vec![
            v("a", Verdict::Converged),
            v("b", Verdict::RolledBack),
            v("c", Verdict::DeadlineExceeded),
        ]);
        assert_eq!(stack.verdict, Verdict::RolledBack);
        assert!(!stack.is_success());
        assert_eq!(StackVerdict::from_services(vec![v("a", Verdict::NoChange)]).verdict, Verdict::NoChange);
    }
}
