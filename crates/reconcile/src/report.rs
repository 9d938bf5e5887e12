//! What a run reports: its outcome, why, the alert it raised, and a timeline
//! that separates lkg's own time from time spent waiting on Docker, on data
//! copies and on health checks.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use lkg_notify::Delivery;

use crate::alert::AlertKind;
use crate::flow::{Outcome, Reason, Step};
use crate::gate::GateDecision;
use crate::health::ProbeRound;

/// Which command produced a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Command {
    /// `lkg-reconcile update`.
    Update,
    /// `lkg-reconcile quick`.
    Quick,
    /// `lkg-reconcile recover` (or an update finishing a killed run first).
    Recover,
}

impl Command {
    /// The command's name: `update`, `quick`, `recover`.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Update => "update",
            Command::Quick => "quick",
            Command::Recover => "recover",
        }
    }
}

/// The alert a run raised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertRecord {
    /// Its id.
    pub id: String,
    /// Its kind.
    pub kind: AlertKind,
    /// Its file.
    pub path: String,
    /// How each notification channel took it (none configured: empty;
    /// reports of older versions have one `delivery`, read as a list).
    #[serde(default, alias = "delivery", deserialize_with = "crate::alert::one_or_many")]
    pub deliveries: Vec<Delivery>,
}

/// A killed run this report finished or undid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resumed {
    /// The killed run's id.
    pub run: String,
    /// The step it was killed at.
    pub step: Step,
    /// Its process id.
    pub pid: u32,
}

/// The time of one step, and how much of it was spent waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepTiming {
    /// The step.
    pub step: Step,
    /// Whether it passed.
    pub ok: bool,
    /// When it began, from the start of the run (ms).
    pub at_ms: u64,
    /// How long it took (ms).
    pub ms: u64,
    /// Waiting on the Docker engine and swarm: deploy verdicts, undeploys.
    pub docker_ms: u64,
    /// Copying volume data: snapshot and restore.
    pub data_ms: u64,
    /// Probing health and waiting between rounds.
    pub health_ms: u64,
}

/// The end-to-end timeline of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Timeline {
    /// Each step.
    pub steps: Vec<StepTiming>,
    /// The whole run (ms), lock and gate included.
    pub total_ms: u64,
    /// Waiting on Docker and swarm (ms).
    pub docker_ms: u64,
    /// Copying volume data (ms).
    pub data_ms: u64,
    /// Health checks (ms).
    pub health_ms: u64,
    /// The rest: lkg's own work (ms).
    pub overhead_ms: u64,
    /// `overhead_ms` as a share of `total_ms`, in percent.
    pub overhead_pct: f64,
    /// How long the app was down (ms), for a run that undeployed it: from
    /// the start of the undeploy to the end of the health gate that the
    /// version deployed after it passed (the target's, or last-good's on a
    /// rollback). `None` when nothing was undeployed, or nothing passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downtime_ms: Option<u64>,
    /// How long it took to tell the target was bad (ms): from the start of
    /// its deploy to the end of the step that failed (its deploy's verdict,
    /// or its health gate). `None` when nothing failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detect_ms: Option<u64>,
}

impl Timeline {
    /// Sums the steps' waits against the run's total.
    pub fn close(steps: Vec<StepTiming>, total: Duration, waits: Waits) -> Timeline {
        let total_ms = millis(total);
        let (docker_ms, data_ms, health_ms) = (millis(waits.docker), millis(waits.data), millis(waits.health));
        let overhead_ms = total_ms.saturating_sub(docker_ms + data_ms + health_ms);
        #[allow(clippy::cast_precision_loss)] // milliseconds of one run fit an f64 exactly
        let overhead_pct =
            if total_ms == 0 { 0.0 } else { (overhead_ms as f64 * 10_000.0 / total_ms as f64).round() / 100.0 };
        let (downtime_ms, detect_ms) = (downtime(&steps), detection(&steps));
        Timeline { steps, total_ms, docker_ms, data_ms, health_ms, overhead_ms, overhead_pct, downtime_ms, detect_ms }
    }
}

fn end(step: &StepTiming) -> u64 {
    step.at_ms + step.ms
}

/// From the undeploy's start to the end of the last health gate that passed after it.
fn downtime(steps: &[StepTiming]) -> Option<u64> {
    let down = steps.iter().find(|s| s.step == Step::Undeploy)?;
    let up = steps
        .iter()
        .rev()
        .find(|s| s.ok && s.at_ms >= down.at_ms && matches!(s.step, Step::CheckHealth | Step::VerifyLastGood))?;
    Some(end(up).saturating_sub(down.at_ms))
}

/// From the target's deploy to the end of the first step that failed after it.
fn detection(steps: &[StepTiming]) -> Option<u64> {
    let deploy = steps.iter().find(|s| matches!(s.step, Step::DeployTarget | Step::DeployCandidate))?;
    let failed = steps.iter().find(|s| !s.ok && s.at_ms >= deploy.at_ms)?;
    Some(end(failed).saturating_sub(deploy.at_ms))
}

/// Time spent waiting, by what was waited on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Waits {
    /// Docker and swarm.
    pub docker: Duration,
    /// Volume data copies.
    pub data: Duration,
    /// Health checks.
    pub health: Duration,
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The report of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Report {
    /// The command.
    pub command: Command,
    /// The app.
    pub app: String,
    /// Its stack.
    pub stack: String,
    /// How the run ended.
    pub outcome: Outcome,
    /// The version attempted (target, or quick candidate).
    pub target: String,
    /// last-good after the run.
    pub last_good: Option<String>,
    /// last-good before the run.
    pub previous_last_good: Option<String>,
    /// Why it failed, if it did.
    pub reason: Option<Reason>,
    /// What happened, in words.
    pub detail: Option<String>,
    /// After a failure: whether last-good runs healthy again.
    pub recovered: Option<bool>,
    /// Whether volume data was restored from the snapshot.
    pub data_restored: bool,
    /// The safety gate's decision (update only).
    pub gate: Option<GateDecision>,
    /// The alert raised, if any.
    pub alert: Option<AlertRecord>,
    /// The killed run this one finished or undid (recover, or the start of an update).
    pub resumed: Option<Resumed>,
    /// An update first finishes a killed run: that run's report.
    pub interrupted_run: Option<Box<Report>>,
    /// The last health round of the version checked last, when one ran.
    pub last_probe: Option<ProbeRound>,
    /// Things worth knowing ("adopted the running version ...").
    pub notes: Vec<String>,
    /// Where the time went.
    pub timeline: Timeline,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overhead_is_what_is_not_waiting() {
        let waits = Waits {
            docker: Duration::from_secs(6),
            data: Duration::from_secs(1),
            health: Duration::from_millis(2_900),
        };
        let timeline = Timeline::close(Vec::new(), Duration::from_secs(10), waits);
        assert_eq!((timeline.overhead_ms, timeline.overhead_pct.to_string()), (100, "1".to_owned()));
        let none = Timeline::close(Vec::new(), Duration::ZERO, Waits::default());
        assert_eq!(none.overhead_pct.to_string(), "0");
    }

    fn step(step: Step, ok: bool, at_ms: u64, ms: u64) -> StepTiming {
        StepTiming { step, ok, at_ms, ms, docker_ms: 0, data_ms: 0, health_ms: 0 }
    }

    #[test]
    fn downtime_runs_from_the_undeploy_to_the_health_gate_that_passed_after_it() {
        use Step::*;
        // A stateful update that rolled back: the target crash-looped.
        let rolled_back = vec![
            step(RecordLastGood, true, 0, 5),
            step(Undeploy, true, 5, 4_000),
            step(Snapshot, true, 4_005, 1_000),
            step(DeployTarget, false, 5_005, 12_000),
            step(UndeployFailed, true, 17_005, 3_000),
            step(RestoreSnapshot, true, 20_005, 1_000),
            step(DeployLastGood, true, 21_005, 3_000),
            step(VerifyLastGood, true, 24_005, 2_000),
            step(Alert, true, 26_005, 10),
        ];
        let t = Timeline::close(rolled_back, Duration::from_secs(27), Waits::default());
        assert_eq!((t.downtime_ms, t.detect_ms), (Some(26_000), Some(12_000)));
        // An upgrade: down until the target passed its gate; nothing failed.
        let upgraded = vec![
            step(Undeploy, true, 0, 4_000),
            step(Snapshot, true, 4_000, 1_000),
            step(DeployTarget, true, 5_000, 3_000),
            step(CheckHealth, true, 8_000, 1_500),
            step(Commit, true, 9_500, 5),
        ];
        let t = Timeline::close(upgraded, Duration::from_secs(10), Waits::default());
        assert_eq!((t.downtime_ms, t.detect_ms), (Some(9_500), None));
        // A stateless update is not undeployed: its downtime is swarm's rolling update's.
        let stateless = vec![step(DeployTarget, true, 0, 3_000), step(CheckHealth, false, 3_000, 6_000)];
        let t = Timeline::close(stateless, Duration::from_secs(9), Waits::default());
        assert_eq!((t.downtime_ms, t.detect_ms), (None, Some(9_000)));
    }
}
