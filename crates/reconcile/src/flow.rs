//! The steps of a reconcile and the order they run in, as pure functions:
//! which step follows a step that passed or failed ([`next`]), and where a
//! run killed at any step picks up again ([`resume`]).
//!
//! Every step is idempotent (undeploy, restore, deploy and the health check
//! can all be repeated), so resuming a step that was cut short means running
//! it again. What must never happen is decided here, not in the I/O code:
//! last-good advances only in `commit`, after the health gate passed; data
//! the target may have touched is restored before last-good runs on it; a
//! failure while rolling back is never reported as a recovery.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One step of a reconcile. The journal names the step in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Step {
    /// Write the version running now as last-good.
    RecordLastGood,
    /// Stateful: undeploy the stack (volumes kept) so its data can be snapshotted.
    Undeploy,
    /// Stateful: snapshot the volumes as last-good's data.
    Snapshot,
    /// Deploy the target and wait for swarm's verdict.
    DeployTarget,
    /// Probe the target until the health gate decides.
    CheckHealth,
    /// last-good := target.
    Commit,
    /// Rollback: undeploy the failed target (volumes kept).
    UndeployFailed,
    /// Rollback: restore the snapshot into the volumes.
    RestoreSnapshot,
    /// Rollback: deploy last-good again.
    DeployLastGood,
    /// Rollback: probe last-good until the health gate decides.
    VerifyLastGood,
    /// Write the alert (and post it to the webhook).
    Alert,
    /// Quick: deploy the canonical's version on its volumes and check it.
    Reattach,
    /// Quick: upgrade the canonical to the candidate.
    DeployCandidate,
    /// Quick: health gate and the user's check on the candidate.
    CheckCandidate,
    /// Quick, passed: undeploy, keeping the volumes.
    UndeployPassed,
}

impl Step {
    /// The step's name, as in the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::RecordLastGood => "record-last-good",
            Step::Undeploy => "undeploy",
            Step::Snapshot => "snapshot",
            Step::DeployTarget => "deploy-target",
            Step::CheckHealth => "check-health",
            Step::Commit => "commit",
            Step::UndeployFailed => "undeploy-failed",
            Step::RestoreSnapshot => "restore-snapshot",
            Step::DeployLastGood => "deploy-last-good",
            Step::VerifyLastGood => "verify-last-good",
            Step::Alert => "alert",
            Step::Reattach => "reattach",
            Step::DeployCandidate => "deploy-candidate",
            Step::CheckCandidate => "check-candidate",
            Step::UndeployPassed => "undeploy-passed",
        }
    }

    /// Every step, in the order of the journal format.
    pub const ALL: [Step; 15] = [
        Step::RecordLastGood,
        Step::Undeploy,
        Step::Snapshot,
        Step::DeployTarget,
        Step::CheckHealth,
        Step::Commit,
        Step::UndeployFailed,
        Step::RestoreSnapshot,
        Step::DeployLastGood,
        Step::VerifyLastGood,
        Step::Alert,
        Step::Reattach,
        Step::DeployCandidate,
        Step::CheckCandidate,
        Step::UndeployPassed,
    ];

    /// Whether the step is part of undoing a failure.
    pub fn is_rollback(self) -> bool {
        matches!(
            self,
            Step::UndeployFailed | Step::RestoreSnapshot | Step::DeployLastGood | Step::VerifyLastGood | Step::Alert
        )
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Step {
    type Err = String;
    fn from_str(s: &str) -> Result<Step, String> {
        Step::ALL.into_iter().find(|step| step.as_str() == s).ok_or_else(|| format!("no step named {s:?}"))
    }
}

/// Why a step failed, as a code (alerts and reports carry it as `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Reason {
    /// The deployer (`docker stack deploy`, an abra command) failed.
    DeployError,
    /// swarm rolled the update back.
    RolledBack,
    /// swarm paused the update.
    Paused,
    /// swarm's own rollback paused.
    RollbackPaused,
    /// No swarm verdict before the deploy timeout.
    DeadlineExceeded,
    /// A task failed and swarm will not replace it.
    TaskFailed,
    /// Someone else changed the service during the deploy.
    Superseded,
    /// On a multi-node swarm, a stateful service's task runs on another node
    /// than its data's (on an empty volume), whatever swarm's verdict says.
    WrongNode,
    /// The health gate was not passed before its deadline.
    Unhealthy,
    /// The user's check command failed (quick mode).
    CheckFailed,
    /// A previous run was killed at this step; its work was undone.
    Interrupted,
    /// lkg could not do the step (engine unreachable, I/O error).
    Error,
}

impl Reason {
    /// The code.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::DeployError => "deploy_error",
            Reason::RolledBack => "rolled_back",
            Reason::Paused => "paused",
            Reason::RollbackPaused => "rollback_paused",
            Reason::DeadlineExceeded => "deadline_exceeded",
            Reason::TaskFailed => "task_failed",
            Reason::Superseded => "superseded",
            Reason::WrongNode => "wrong_node",
            Reason::Unhealthy => "unhealthy",
            Reason::CheckFailed => "check_failed",
            Reason::Interrupted => "interrupted",
            Reason::Error => "error",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed step: which, why, and what was seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureNote {
    /// The step that failed.
    pub step: Step,
    /// The reason code.
    pub reason: Reason,
    /// What happened, in words.
    pub detail: String,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outcome {
    /// The target is deployed, healthy, and the new last-good.
    Upgraded,
    /// A first install succeeded: the target is the first last-good.
    Installed,
    /// The app already runs the target: nothing to do.
    Current,
    /// The safety gate held the update: nothing was touched.
    Held,
    /// The target failed; last-good runs again, healthy, on its data.
    RolledBack,
    /// The target failed and so did the rollback: the app is not known to
    /// run its last-good. The journal stays so `recover` can try again.
    RollbackFailed,
    /// A first install failed; its stack was undeployed.
    InstallFailed,
    /// A run was killed before it changed anything; it was dropped.
    Abandoned,
    /// Quick: the candidate passed; the canonical is idle and unchanged.
    Passed,
    /// Quick: the candidate failed; the known-good data was restored.
    Failed,
    /// Quick: the canonical's own version did not come up healthy; its
    /// known-good data was restored and nothing was tested.
    CanonicalUnhealthy,
    /// Quick: a run was killed; its canonical was restored and left idle.
    Interrupted,
    /// Quick: restoring the known-good data failed. The journal stays.
    RestoreFailed,
}

impl Outcome {
    /// The name used in output.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Upgraded => "upgraded",
            Outcome::Installed => "installed",
            Outcome::Current => "current",
            Outcome::Held => "held",
            Outcome::RolledBack => "rolled_back",
            Outcome::RollbackFailed => "rollback_failed",
            Outcome::InstallFailed => "install_failed",
            Outcome::Abandoned => "abandoned",
            Outcome::Passed => "passed",
            Outcome::Failed => "failed",
            Outcome::CanonicalUnhealthy => "canonical_unhealthy",
            Outcome::Interrupted => "interrupted",
            Outcome::RestoreFailed => "restore_failed",
        }
    }

    /// Whether the journal must stay after this outcome, for `recover` to try again.
    pub fn keeps_journal(self) -> bool {
        matches!(self, Outcome::RollbackFailed | Outcome::RestoreFailed)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which sequence of steps a run follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "kebab-case")]
pub enum Flow {
    /// `update`: health-gated, with rollback.
    Update {
        /// Undeploy and snapshot before the deploy; restore on failure.
        stateful: bool,
        /// There is no last-good: a first install, with nothing to roll back to.
        install: bool,
    },
    /// `quick`: a candidate on the canonical; never promotes.
    Quick,
}

/// What comes after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Run this step next.
    Next(Step),
    /// The run is over.
    Finish(Outcome),
}

/// What the run knows when choosing the next step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress<'a> {
    /// The failure that started the rollback, if any.
    pub failure: Option<&'a FailureNote>,
    /// Whether a rollback step failed.
    pub rollback_failed: bool,
}

/// The first step of a run.
pub fn first(flow: Flow) -> Step {
    match flow {
        Flow::Update { install: true, .. } => Step::DeployTarget,
        Flow::Update { .. } => Step::RecordLastGood,
        Flow::Quick => Step::Reattach,
    }
}

/// Whether a failure of `step` is a failure to undo (the rollback, or
/// putting a quick run's canonical back), rather than the failure that
/// starts the undoing.
pub fn undoes(flow: Flow, step: Step) -> bool {
    step.is_rollback() || (flow == Flow::Quick && step == Step::UndeployPassed)
}

/// Where a rollback begins after `failure`.
fn rollback_entry(flow: Flow, failure: &FailureNote) -> Transition {
    match flow {
        // Killed or failed before the target was deployed: the data is
        // last-good's own, so there is nothing to restore.
        Flow::Update { stateful: true, .. } if matches!(failure.step, Step::Undeploy | Step::Snapshot) => {
            Transition::Next(Step::DeployLastGood)
        }
        Flow::Update { stateful: true, .. } | Flow::Update { install: true, .. } | Flow::Quick => {
            Transition::Next(Step::UndeployFailed)
        }
        Flow::Update { .. } => Transition::Next(Step::DeployLastGood),
    }
}

/// The step after `step`, which passed (`ok`) or failed.
///
/// When `ok` is false, `progress.failure` (forward steps) or
/// `progress.rollback_failed` (rollback steps) must already record it.
pub fn next(flow: Flow, step: Step, ok: bool, progress: Progress<'_>) -> Transition {
    use Step as S;
    use Transition::{Finish, Next};
    match flow {
        Flow::Update { stateful, install } => match (step, ok) {
            (S::RecordLastGood, _) => Next(if stateful { S::Undeploy } else { S::DeployTarget }),
            (S::Undeploy, true) => Next(S::Snapshot),
            (S::Snapshot, true) => Next(S::DeployTarget),
            (S::DeployTarget, true) => Next(S::CheckHealth),
            (S::CheckHealth, true) => Next(S::Commit),
            (S::Commit, _) => Finish(if install { Outcome::Installed } else { Outcome::Upgraded }),
            (S::Undeploy | S::Snapshot | S::DeployTarget | S::CheckHealth, false) => match progress.failure {
                Some(failure) => rollback_entry(flow, failure),
                None => Next(S::Alert),
            },
            (S::UndeployFailed, true) if install => Next(S::Alert),
            (S::UndeployFailed, true) => Next(S::RestoreSnapshot),
            (S::RestoreSnapshot, true) => Next(S::DeployLastGood),
            (S::DeployLastGood, true) => Next(S::VerifyLastGood),
            // After last-good's health gate, passed or failed, comes the alert.
            (S::VerifyLastGood, _) | (S::UndeployFailed | S::RestoreSnapshot | S::DeployLastGood, false) => {
                Next(S::Alert)
            }
            (S::Alert, _) if progress.rollback_failed => Finish(Outcome::RollbackFailed),
            (S::Alert, _) if install => Finish(Outcome::InstallFailed),
            (S::Alert, _) => Finish(Outcome::RolledBack),
            (S::Reattach | S::DeployCandidate | S::CheckCandidate | S::UndeployPassed, _) => {
                unreachable!("quick steps are not part of an update")
            }
        },
        Flow::Quick => match (step, ok) {
            (S::Reattach, true) => Next(S::DeployCandidate),
            (S::DeployCandidate, true) => Next(S::CheckCandidate),
            (S::CheckCandidate, true) => Next(S::UndeployPassed),
            (S::UndeployPassed, true) => Finish(Outcome::Passed),
            (S::Reattach | S::DeployCandidate | S::CheckCandidate, false) => Next(S::UndeployFailed),
            (S::UndeployFailed, true) => Next(S::RestoreSnapshot),
            (S::RestoreSnapshot, true) => Finish(match progress.failure {
                Some(FailureNote { reason: Reason::Interrupted, .. }) => Outcome::Interrupted,
                Some(FailureNote { step: S::Reattach, .. }) => Outcome::CanonicalUnhealthy,
                _ => Outcome::Failed,
            }),
            (S::UndeployPassed | S::UndeployFailed | S::RestoreSnapshot, false) => Next(S::Alert),
            (S::Alert, _) => Finish(Outcome::RestoreFailed),
            (step, _) => unreachable!("{step} is not part of a quick run"),
        },
    }
}

/// Where a run whose journal says it was at `step` picks up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    /// The step to run now.
    pub step: Step,
    /// The failure to record, when resuming means undoing the run.
    pub failure: Option<FailureNote>,
    /// The interrupted run had changed nothing: drop it (outcome `abandoned`).
    pub abandon: bool,
}

/// Where a run killed at `step` picks up: forward when the target had passed
/// its health gate (re-checking it first), otherwise a rollback that
/// restores data whenever the target may have touched it.
pub fn resume(flow: Flow, step: Step, failure: Option<&FailureNote>, rollback_failed: bool) -> Resume {
    let interrupted = |step| FailureNote {
        step,
        reason: Reason::Interrupted,
        detail: format!("the previous run was killed during step {step}"),
    };
    let undo = |step: Step| {
        let note = interrupted(step);
        let Transition::Next(entry) = rollback_entry(flow, &note) else { unreachable!("a rollback entry is a step") };
        Resume { step: entry, failure: Some(note), abandon: false }
    };
    // A rollback that failed starts again from its beginning (each of its
    // steps is idempotent, and restoring twice restores the same data).
    if rollback_failed && let Some(failure) = failure {
        let Transition::Next(entry) = rollback_entry(flow, failure) else { unreachable!("a rollback entry is a step") };
        return Resume { step: entry, failure: None, abandon: false };
    }
    let again = |step| Resume { step, failure: None, abandon: false };
    match flow {
        Flow::Update { .. } => match step {
            Step::RecordLastGood => Resume { step, failure: None, abandon: true },
            Step::Undeploy | Step::Snapshot | Step::DeployTarget | Step::CheckHealth => undo(step),
            // The health gate had passed: check again, then commit.
            Step::Commit => again(Step::CheckHealth),
            rollback => again(rollback),
        },
        Flow::Quick => match step {
            Step::Reattach | Step::DeployCandidate | Step::CheckCandidate => undo(step),
            other => again(other),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATEFUL: Flow = Flow::Update { stateful: true, install: false };
    const STATELESS: Flow = Flow::Update { stateful: false, install: false };
    const INSTALL: Flow = Flow::Update { stateful: true, install: true };

    /// Runs a flow where the steps in `fail` fail (each once) and returns the
    /// steps taken and the outcome.
    fn walk(flow: Flow, fail: &[Step]) -> (Vec<Step>, Outcome) {
        walk_from(flow, first(flow), None, fail)
    }

    fn walk_from(flow: Flow, start: Step, mut failure: Option<FailureNote>, fail: &[Step]) -> (Vec<Step>, Outcome) {
        let mut rollback_failed = false;
        let mut steps = Vec::new();
        let mut step = start;
        loop {
            steps.push(step);
            assert!(steps.len() < 20, "no loop: {steps:?}");
            let ok = !fail.contains(&step);
            if !ok {
                if undoes(flow, step) {
                    rollback_failed = true;
                } else {
                    failure = Some(FailureNote { step, reason: Reason::Unhealthy, detail: String::new() });
                }
            }
            match next(flow, step, ok, Progress { failure: failure.as_ref(), rollback_failed }) {
                Transition::Next(s) => step = s,
                Transition::Finish(outcome) => return (steps, outcome),
            }
        }
    }

    use Step::*;

    #[test]
    fn healthy_updates_commit_last() {
        assert_eq!(
            walk(STATEFUL, &[]),
            (vec![RecordLastGood, Undeploy, Snapshot, DeployTarget, CheckHealth, Commit], Outcome::Upgraded)
        );
        assert_eq!(walk(STATELESS, &[]), (vec![RecordLastGood, DeployTarget, CheckHealth, Commit], Outcome::Upgraded));
        assert_eq!(walk(INSTALL, &[]), (vec![DeployTarget, CheckHealth, Commit], Outcome::Installed));
    }

    #[test]
    fn a_failed_target_restores_data_before_last_good_runs_and_never_commits() {
        for failing in [DeployTarget, CheckHealth] {
            let (steps, outcome) = walk(STATEFUL, &[failing]);
            assert_eq!(outcome, Outcome::RolledBack);
            assert!(!steps.contains(&Commit));
            let tail: Vec<Step> = steps.iter().copied().skip_while(|s| *s != UndeployFailed).collect();
            assert_eq!(tail, [UndeployFailed, RestoreSnapshot, DeployLastGood, VerifyLastGood, Alert]);
        }
        let (steps, outcome) = walk(STATELESS, &[CheckHealth]);
        assert_eq!(steps, [RecordLastGood, DeployTarget, CheckHealth, DeployLastGood, VerifyLastGood, Alert]);
        assert_eq!(outcome, Outcome::RolledBack);
    }

    #[test]
    fn a_failure_before_the_target_ran_redeploys_without_restoring() {
        let (steps, outcome) = walk(STATEFUL, &[Snapshot]);
        assert_eq!(steps, [RecordLastGood, Undeploy, Snapshot, DeployLastGood, VerifyLastGood, Alert]);
        assert_eq!(outcome, Outcome::RolledBack);
    }

    #[test]
    fn a_failing_rollback_is_never_a_recovery() {
        for failing in [UndeployFailed, RestoreSnapshot, DeployLastGood, VerifyLastGood] {
            let (steps, outcome) = walk(STATEFUL, &[CheckHealth, failing]);
            assert_eq!(outcome, Outcome::RollbackFailed, "{failing}: {steps:?}");
            assert_eq!(steps.last(), Some(&Alert));
            assert!(outcome.keeps_journal());
        }
        assert_eq!(walk(INSTALL, &[CheckHealth]).1, Outcome::InstallFailed);
        assert_eq!(walk(INSTALL, &[CheckHealth]).0, [DeployTarget, CheckHealth, UndeployFailed, Alert]);
    }

    #[test]
    fn quick_runs_never_commit_and_restore_on_failure() {
        assert_eq!(
            walk(Flow::Quick, &[]),
            (vec![Reattach, DeployCandidate, CheckCandidate, UndeployPassed], Outcome::Passed)
        );
        let (steps, outcome) = walk(Flow::Quick, &[CheckCandidate]);
        assert_eq!(steps, [Reattach, DeployCandidate, CheckCandidate, UndeployFailed, RestoreSnapshot]);
        assert_eq!(outcome, Outcome::Failed);
        assert_eq!(walk(Flow::Quick, &[Reattach]).1, Outcome::CanonicalUnhealthy);
        assert_eq!(walk(Flow::Quick, &[CheckCandidate, RestoreSnapshot]).1, Outcome::RestoreFailed);
    }

    /// Killed at any step, a run ends healthy on last-good or on the target
    /// (committed only after a fresh health gate), never half-way.
    #[test]
    fn a_run_killed_at_any_step_finishes_or_rolls_back() {
        for flow in [STATEFUL, STATELESS] {
            let (happy, _) = walk(flow, &[]);
            let (sad, _) = walk(flow, &[CheckHealth]);
            for killed in happy.iter().chain(&sad).copied() {
                let failure = sad.contains(&killed).then(|| FailureNote {
                    step: CheckHealth,
                    reason: Reason::Unhealthy,
                    detail: String::new(),
                });
                let failure = if killed.is_rollback() { failure } else { None };
                let resumed = resume(flow, killed, failure.as_ref(), false);
                if resumed.abandon {
                    assert_eq!(killed, RecordLastGood);
                    continue;
                }
                let (steps, outcome) = walk_from(flow, resumed.step, resumed.failure.clone().or(failure), &[]);
                if killed == Commit {
                    assert_eq!((steps.as_slice(), outcome), (&[CheckHealth, Commit][..], Outcome::Upgraded));
                    continue;
                }
                assert_eq!(outcome, Outcome::RolledBack, "{flow:?} killed at {killed}: {steps:?}");
                assert_eq!(steps.last(), Some(&Alert), "{steps:?}");
                // last-good is deployed and checked again, unless that was done before the kill.
                assert!(steps.contains(&VerifyLastGood) || killed == Alert, "{steps:?}");
                assert!(steps.contains(&DeployLastGood) || matches!(killed, VerifyLastGood | Alert), "{steps:?}");
                // Data the target may have touched is restored before last-good runs on it.
                let target_ran = matches!(killed, DeployTarget | CheckHealth | UndeployFailed | RestoreSnapshot);
                if flow == STATEFUL && target_ran {
                    assert!(steps.contains(&RestoreSnapshot), "{killed}: {steps:?}");
                }
            }
        }
    }

    #[test]
    fn a_failed_rollback_starts_again_from_its_beginning() {
        let failure = FailureNote { step: DeployTarget, reason: Reason::RolledBack, detail: String::new() };
        let resumed = resume(STATEFUL, VerifyLastGood, Some(&failure), true);
        assert_eq!(resumed.step, UndeployFailed);
        let early = FailureNote { step: Snapshot, reason: Reason::Error, detail: String::new() };
        assert_eq!(resume(STATEFUL, VerifyLastGood, Some(&early), true).step, DeployLastGood);
    }

    #[test]
    fn a_killed_quick_run_restores_the_known_good() {
        for killed in [Reattach, DeployCandidate, CheckCandidate] {
            let resumed = resume(Flow::Quick, killed, None, false);
            assert_eq!(resumed.step, UndeployFailed);
            let (steps, outcome) = walk_from(Flow::Quick, resumed.step, resumed.failure, &[]);
            assert_eq!((steps.as_slice(), outcome), (&[UndeployFailed, RestoreSnapshot][..], Outcome::Interrupted));
        }
        assert_eq!(resume(Flow::Quick, UndeployPassed, None, false).step, UndeployPassed);
    }

    #[test]
    fn step_names_round_trip() {
        for step in Step::ALL {
            assert_eq!(step.as_str().parse::<Step>().unwrap(), step);
            assert_eq!(serde_json::to_value(step).unwrap(), step.as_str());
        }
    }
}
