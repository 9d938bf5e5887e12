//! The verdict over service and task JSON recorded from the real 20.10 engine
//! (`fixtures/swarm/record` wrote `fixtures/swarm/*.json`).

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use bollard::models::{Service, Task};
use jiff::Timestamp;

use crate::DeployId;
use crate::observe::{ServiceObservation, UpdateState};
use crate::verdict::{Assessment, Ownership, Phase, Prior, ServiceWatch, Verdict};

struct Recording {
    ours: DeployId,
    since: Timestamp,
    prior: Option<ServiceObservation>,
    /// (time since `since`, observation)
    snapshots: Vec<(Duration, ServiceObservation)>,
}

fn observation(
    service: &serde_json::Value,
    tasks: &serde_json::Value,
    up_to_date: &serde_json::Value,
) -> ServiceObservation {
    let service: Service = serde_json::from_value(service.clone()).expect("the engine's service JSON");
    let tasks: Vec<Task> = serde_json::from_value(tasks.clone()).expect("the engine's task JSON");
    let up_to_date: HashSet<String> = serde_json::from_value(up_to_date.clone()).unwrap();
    ServiceObservation::from_engine(&service, &tasks, &up_to_date)
}

fn load(name: &str) -> Recording {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/swarm").join(format!("{name}.json"));
    let json: serde_json::Value = serde_json::from_str(&fs_err::read_to_string(&path).unwrap()).unwrap();
    let since: Timestamp = json["since"].as_str().unwrap().parse().unwrap();
    let prior =
        (!json["prior"].is_null()).then(|| observation(&json["prior"], &serde_json::json!([]), &serde_json::json!([])));
    let snapshots = json["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let at: Timestamp = s["at"].as_str().unwrap().parse().unwrap();
            let elapsed = Duration::try_from(at.duration_since(since)).unwrap_or_default();
            (elapsed, observation(&s["service"], &s["tasks"], &s["up_to_date"]))
        })
        .collect();
    Recording { ours: DeployId::parse(json["ours"].as_str().unwrap()).unwrap(), since, prior, snapshots }
}

impl Recording {
    fn watch(&self, deadline: Duration) -> ServiceWatch {
        let prior = self.prior.as_ref().map(|p| Prior { deploy_id: p.deploy_id.clone(), spec: p.spec.clone() });
        let name = &self.snapshots[0].1.name;
        ServiceWatch::new(name, Ownership { deploy_id: self.ours.clone(), since: self.since, prior }, deadline)
    }

    /// Feeds every snapshot; returns the assessments.
    fn replay(&self, watch: &mut ServiceWatch) -> Vec<Assessment> {
        self.snapshots.iter().map(|(elapsed, obs)| watch.observe(Some(obs), *elapsed)).collect()
    }

    fn last(&self) -> &(Duration, ServiceObservation) {
        self.snapshots.last().unwrap()
    }
}

fn decided(assessment: &Assessment) -> Option<Verdict> {
    match assessment {
        Assessment::Decided(v) => Some(v.verdict),
        Assessment::Pending { .. } => None,
    }
}

const DEADLINE: Duration = Duration::from_secs(120);

#[test]
fn completed_converges_only_after_one_more_monitor_period() {
    let rec = load("converge");
    let mut watch = rec.watch(DEADLINE);
    let steps = rec.replay(&mut watch);
    assert!(steps.iter().all(|s| decided(s).is_none()), "no verdict before the monitor period: {steps:?}");
    let Assessment::Pending { phase: Phase::Verifying { remaining }, wake: Some(wake) } = steps.last().unwrap() else {
        panic!("`completed` starts the verification period: {:?}", steps.last());
    };
    let (at, obs) = rec.last();
    assert_eq!(*remaining, obs.monitor, "the period starts when `completed` is first seen");
    assert!(decided(&watch.observe(Some(obs), *at + obs.monitor / 2)).is_none());
    let Assessment::Decided(verdict) = watch.observe(Some(obs), *wake) else { panic!("converged at the wake time") };
    assert_eq!(verdict.verdict, Verdict::Converged);
    assert_eq!((verdict.running, verdict.desired), (1, 1));
    assert_eq!(verdict.update_state, Some(UpdateState::Completed));
}

#[test]
fn a_task_failure_during_verification_restarts_the_period() {
    let rec = load("converge");
    let mut watch = rec.watch(DEADLINE);
    rec.replay(&mut watch);
    let (at, obs) = rec.last();
    // The same recorded state, but the running task has just failed.
    let mut failing = obs.clone();
    let task = failing.tasks.iter_mut().find(|t| t.up_to_date).unwrap();
    task.state = crate::observe::TaskState::Failed;
    let at = *at + obs.monitor / 2;
    assert!(matches!(
        watch.observe(Some(&failing), at),
        Assessment::Pending { phase: Phase::Updating { running: 0, .. }, .. }
    ));
    // Back up: a whole new period is needed.
    assert!(decided(&watch.observe(Some(obs), at + obs.monitor / 2 + Duration::from_millis(1))).is_none());
}

#[test]
fn rollback_is_a_failure_with_either_update_order() {
    for name in ["rollback-stop-first", "rollback-start-first"] {
        let rec = load(name);
        let mut watch = rec.watch(DEADLINE);
        let steps = rec.replay(&mut watch);
        for ((_, obs), step) in rec.snapshots.iter().zip(&steps) {
            if obs.update.as_ref().is_some_and(|u| u.state == UpdateState::RollbackStarted) {
                assert!(
                    matches!(step, Assessment::Pending { phase: Phase::RollingBack, .. }),
                    "{name}: rollback_started is a wait, not a verdict: {step:?}"
                );
            }
        }
        let Assessment::Decided(verdict) = steps.last().unwrap() else { panic!("{name}: {steps:?}") };
        assert_eq!(verdict.verdict, Verdict::RolledBack, "{name}");
        assert!(!verdict.verdict.is_success());
        // swarm's reason is on `rollback_started` only; without it the verdict
        // still says the update was rolled back.
        let sampled_start = rec
            .snapshots
            .iter()
            .any(|(_, o)| o.update.as_ref().is_some_and(|u| u.state == UpdateState::RollbackStarted));
        if sampled_start {
            let message = verdict.update_message.as_deref().unwrap();
            assert!(message.starts_with("update rolled back due to failure or early termination of task"), "{message}");
        }
        assert!(verdict.reason.starts_with("swarm rolled the update back"), "{}", verdict.reason);
        // swarm put the previous spec back: its deploy id, not ours.
        assert_eq!(rec.last().1.deploy_id.as_deref(), Some("deploy-00000000000000a1"));
    }
}

#[test]
fn pause_is_a_failure() {
    let rec = load("pause");
    let mut watch = rec.watch(DEADLINE);
    let steps = rec.replay(&mut watch);
    let Assessment::Decided(verdict) = steps.last().unwrap() else { panic!("{steps:?}") };
    assert_eq!(verdict.verdict, Verdict::Paused);
    assert!(verdict.reason.contains("update paused due to failure or early termination of task"), "{}", verdict.reason);
}

#[test]
fn a_deploy_that_changes_nothing_is_no_change_at_once() {
    let rec = load("no-change");
    let mut watch = rec.watch(DEADLINE);
    let steps = rec.replay(&mut watch);
    let Assessment::Decided(verdict) = &steps[0] else { panic!("{steps:?}") };
    assert_eq!(verdict.verdict, Verdict::NoChange, "{}", verdict.reason);
    assert_eq!(rec.last().1.update, None, "swarm never starts an updater when no task is dirty");
}

#[test]
fn unmet_placement_waits_until_the_deadline_and_names_the_pending_task() {
    let rec = load("placement");
    let (at, obs) = rec.last();
    let mut watch = rec.watch(*at + Duration::from_secs(5));
    assert!(matches!(
        watch.observe(Some(obs), *at),
        Assessment::Pending { phase: Phase::Starting { running: 0, desired: 1 }, .. }
    ));
    let Assessment::Decided(verdict) = watch.observe(Some(obs), *at + Duration::from_secs(5)) else { panic!() };
    assert_eq!(verdict.verdict, Verdict::DeadlineExceeded);
    assert!(verdict.reason.contains("starting: 0/1 tasks running"), "{}", verdict.reason);
    assert!(verdict.task_errors.iter().any(|e| e.contains("pending")), "{:?}", verdict.task_errors);
}

#[test]
fn a_stale_rollback_from_the_previous_deploy_is_ignored() {
    // The previous deploy (b2) ended `rollback_completed`; a new deploy (c3)
    // has not reached the service yet. The first poll must not report it.
    let previous = load("rollback-stop-first");
    let (at, stale) = previous.last();
    let ours = DeployId::parse("deploy-00000000000000c3").unwrap();
    let since = stale.update.as_ref().unwrap().completed_at.unwrap() + jiff::SignedDuration::from_secs(1);
    let prior = Prior { deploy_id: stale.deploy_id.clone(), spec: stale.spec.clone() };
    let mut watch = ServiceWatch::new(&stale.name, Ownership { deploy_id: ours, since, prior: Some(prior) }, DEADLINE);
    let Assessment::Pending { phase, .. } = watch.observe(Some(stale), *at) else { panic!("a stale status decided") };
    assert_eq!(
        phase,
        Phase::NotReached {
            deploy_id: Some("deploy-00000000000000a1".into()),
            stale_state: Some(UpdateState::RollbackCompleted)
        }
    );
    assert!(phase.to_string().contains("belongs to an earlier update and is ignored"), "{phase}");
}

#[test]
fn a_stale_completed_does_not_pass_as_this_deploys() {
    // converge.json ended `completed` for deploy b2; deploy c3 has not reached it.
    let previous = load("converge");
    let (at, stale) = previous.last();
    let since = Timestamp::now();
    let prior = Prior { deploy_id: stale.deploy_id.clone(), spec: stale.spec.clone() };
    let ours = DeployId::parse("deploy-00000000000000c3").unwrap();
    let mut watch = ServiceWatch::new(&stale.name, Ownership { deploy_id: ours, since, prior: Some(prior) }, DEADLINE);
    assert!(matches!(
        watch.observe(Some(stale), *at),
        Assessment::Pending { phase: Phase::NotReached { stale_state: Some(UpdateState::Completed), .. }, .. }
    ));
}

#[test]
fn the_window_before_swarms_updater_starts_is_a_wait() {
    // The engine emits `service update` for the new spec before the one with
    // `updatestate.new: updating` (recorded in docs/swarm.md): in between,
    // UpdateStatus is nil and the tasks still run the old spec. This is
    // converge.json's first snapshot as it was in that window.
    let rec = load("converge");
    let (at, obs) = &rec.snapshots[0];
    let mut nil_window = obs.clone();
    nil_window.update = None;
    for task in &mut nil_window.tasks {
        // Only the old task existed: running, not up to date.
        if task.up_to_date {
            task.state = crate::observe::TaskState::New;
            task.desired = crate::observe::TaskState::Shutdown;
        } else {
            task.desired = crate::observe::TaskState::Running;
            task.state = crate::observe::TaskState::Running;
        }
    }
    let mut watch = rec.watch(DEADLINE);
    assert_eq!(
        watch.observe(Some(&nil_window), *at),
        Assessment::Pending { phase: Phase::UpdaterNotStarted, wake: Some(DEADLINE) }
    );
}

#[test]
fn another_clients_update_during_the_watch_is_superseded() {
    let rec = load("converge");
    let mut watch = rec.watch(DEADLINE);
    let (at, obs) = &rec.snapshots[0];
    assert!(decided(&watch.observe(Some(obs), *at)).is_none());
    // Someone runs `docker service update --env-add X=1`: the label stays, the spec changes.
    let mut foreign = obs.clone();
    foreign.spec["TaskTemplate"]["ContainerSpec"]["Env"] = serde_json::json!(["X=1"]);
    foreign.update = None;
    let Assessment::Decided(verdict) = watch.observe(Some(&foreign), *at + Duration::from_secs(1)) else { panic!() };
    assert_eq!(verdict.verdict, Verdict::Superseded);
    // Someone deploys over it with their own deploy id.
    let mut watch = rec.watch(DEADLINE);
    watch.observe(Some(obs), *at);
    let mut other = obs.clone();
    other.deploy_id = Some("deploy-00000000000000ff".into());
    let Assessment::Decided(verdict) = watch.observe(Some(&other), *at + Duration::from_secs(1)) else { panic!() };
    assert_eq!(verdict.verdict, Verdict::Superseded);
    assert!(verdict.reason.contains("deploy-00000000000000ff"), "{}", verdict.reason);
}
