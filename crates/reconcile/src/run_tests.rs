//! The executor over a hand-written fake platform: which calls each path
//! makes, in which order, and what a run cut short leaves for the next one.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::time::Duration;

use crate::health::{CheckResult, ProbeRound};
use crate::platform::{DeployOutcome, Platform};
use crate::state::{AppState, SnapshotRef};
use crate::{AppConfig, AppSpec, NoProgress, Outcome, Reason, ReconcileError, Reconciler, Step, UpdateRequest};

/// A swarm in memory: which version runs, which versions are healthy, and
/// what to get wrong.
#[derive(Default)]
struct Fake {
    calls: RefCell<Vec<String>>,
    running: RefCell<Option<String>>,
    healthy: BTreeSet<&'static str>,
    snapshot: RefCell<Option<SnapshotRef>>,
    /// Deploys of this version fail with an engine error, this many times.
    engine_error: RefCell<Option<(&'static str, u32)>>,
    /// A deploy of this version never returns (the process is "killed" there).
    hang: Option<&'static str>,
    /// The store holds another snapshot than the one taken.
    foreign_snapshot: bool,
}

impl Fake {
    fn new(running: &str, healthy: &[&'static str]) -> Fake {
        Fake {
            running: RefCell::new(Some(running.to_owned())),
            healthy: healthy.iter().copied().collect(),
            ..Fake::default()
        }
    }

    fn call(&self, what: String) {
        self.calls.borrow_mut().push(what);
    }

    fn calls(&self) -> Vec<String> {
        let mut calls = self.calls.borrow().clone();
        // Health rounds repeat; one entry per run of them is enough to read.
        calls.dedup();
        calls
    }
}

impl Platform for Fake {
    async fn deployed_version(&self, _: &AppSpec) -> Result<Option<String>, ReconcileError> {
        self.call("deployed_version".into());
        Ok(self.running.borrow().clone())
    }

    async fn is_deployed(&self, _: &AppSpec) -> Result<bool, ReconcileError> {
        Ok(self.running.borrow().is_some())
    }

    async fn has_volumes(&self, _: &AppSpec) -> Result<bool, ReconcileError> {
        Ok(true)
    }

    async fn existing_volumes(&self, names: &[String]) -> Result<BTreeSet<String>, ReconcileError> {
        Ok(names.iter().cloned().collect())
    }

    async fn deploy(
        &self,
        _: &AppSpec,
        version: &str,
        _: &dyn for<'e> crate::Progress<crate::Event<'e>>,
    ) -> Result<DeployOutcome, ReconcileError> {
        self.call(format!("deploy {version}"));
        if self.hang == Some(version) {
            std::future::pending::<()>().await;
        }
        let mut error = self.engine_error.borrow_mut();
        if let Some((failing, times)) = error.as_mut()
            && *failing == version
            && *times > 0
        {
            *times -= 1;
            return Err(ReconcileError::Http("the engine went away".into()));
        }
        *self.running.borrow_mut() = Some(version.to_owned());
        Ok(DeployOutcome::Converged { detail: String::new() })
    }

    async fn undeploy(&self, _: &AppSpec) -> Result<(), ReconcileError> {
        self.call("undeploy".into());
        *self.running.borrow_mut() = None;
        Ok(())
    }

    async fn snapshot(&self, _: &AppSpec, version: &str) -> Result<SnapshotRef, ReconcileError> {
        self.call(format!("snapshot {version}"));
        let taken = SnapshotRef {
            version: Some(version.to_owned()),
            ts: lkg_core::Clock::now_seconds(&lkg_core::SystemClock),
            location: "memory".to_owned(),
        };
        *self.snapshot.borrow_mut() = Some(taken.clone());
        Ok(taken)
    }

    async fn current_snapshot(&self, _: &AppSpec) -> Result<Option<SnapshotRef>, ReconcileError> {
        let current = self.snapshot.borrow().clone();
        Ok(if self.foreign_snapshot {
            current.map(|s| SnapshotRef { version: Some("someone else's".into()), ..s })
        } else {
            current
        })
    }

    async fn restore(&self, _: &AppSpec) -> Result<(), ReconcileError> {
        self.call("restore".into());
        Ok(())
    }

    async fn probe(&self, _: &AppSpec, version: &str) -> ProbeRound {
        self.call(format!("probe {version}"));
        let pass = self.running.borrow().as_deref() == Some(version) && self.healthy.contains(version);
        ProbeRound { checks: vec![CheckResult { check: "fake".into(), pass, detail: String::new() }] }
    }

    async fn check(&self, _: &AppSpec, command: &str, _: &str) -> CheckResult {
        CheckResult { check: command.to_owned(), pass: true, detail: String::new() }
    }
}

fn spec(dir: &std::path::Path, stateful: bool) -> AppSpec {
    let compose = dir.join("compose.yml");
    std::fs::write(&compose, "services:\n  app:\n    image: example/app:${LKG_VERSION_TAG}\n").unwrap();
    let mut config = AppConfig {
        app: Some("shop".into()),
        compose: vec![compose],
        stateful: Some(stateful),
        ..AppConfig::default()
    };
    config.health.passes = 2;
    config.health.interval = Duration::from_millis(1);
    config.health.deadline = Duration::from_millis(30);
    config.into_spec().unwrap()
}

async fn update(
    fake: &Fake,
    state: &std::path::Path,
    spec: &AppSpec,
    target: &str,
) -> Result<crate::Report, ReconcileError> {
    let request = UpdateRequest { target: target.to_owned(), ..UpdateRequest::default() };
    Box::pin(Reconciler::new(fake, state, &NoProgress).update(spec, &request)).await
}

#[tokio::test]
async fn a_hold_only_looks() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::new("1.0.0", &["1.0.0"]);
    let report = update(&fake, dir.path(), &spec(dir.path(), true), "2.0.0").await.unwrap();
    assert_eq!(report.outcome, Outcome::Held);
    assert_eq!(fake.calls(), ["deployed_version"]);
}

#[tokio::test]
async fn a_failing_target_is_undone_data_first() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::new("1.0.0", &["1.0.0"]);
    let report = update(&fake, dir.path(), &spec(dir.path(), true), "1.1.0").await.unwrap();
    assert_eq!((report.outcome, report.reason), (Outcome::RolledBack, Some(Reason::Unhealthy)));
    assert_eq!(
        fake.calls(),
        [
            "deployed_version",
            "undeploy",
            "snapshot 1.0.0",
            "deploy 1.1.0",
            "probe 1.1.0",
            "undeploy",
            "restore",
            "deploy 1.0.0",
            "probe 1.0.0"
        ]
    );
    let state = AppState::new(dir.path(), "shop");
    assert_eq!(state.last_good().unwrap().unwrap().version, "1.0.0");
    assert!(state.journal().unwrap().is_none());
}

#[tokio::test]
async fn an_engine_error_while_rolling_back_keeps_the_journal_until_recover() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake { engine_error: RefCell::new(Some(("1.0.0", 1))), ..Fake::new("1.0.0", &["1.0.0"]) };
    let spec = spec(dir.path(), true);
    let report = update(&fake, dir.path(), &spec, "1.1.0").await.unwrap();
    assert_eq!(report.outcome, Outcome::RollbackFailed);
    let state = AppState::new(dir.path(), "shop");
    let journal = state.journal().unwrap().expect("the journal stays");
    assert_eq!(
        journal.rollback_failure.as_ref().map(|f| (f.step, f.reason)),
        Some((Step::DeployLastGood, Reason::Error))
    );

    // The engine is back: recover runs the rollback again, restore first.
    fake.calls.borrow_mut().clear();
    let app = spec.app.clone();
    let recovered =
        Box::pin(Reconciler::new(&fake, dir.path(), &NoProgress).recover(&app, false)).await.unwrap().unwrap();
    assert_eq!((recovered.outcome, recovered.recovered), (Outcome::RolledBack, Some(true)));
    assert_eq!(fake.calls(), ["undeploy", "restore", "deploy 1.0.0", "probe 1.0.0"]);
    assert!(state.journal().unwrap().is_none());
    let kinds: Vec<String> =
        crate::Alerts::new(dir.path()).list(None, false).unwrap().iter().map(|l| l.alert.kind.to_string()).collect();
    assert_eq!(kinds.len(), 2);
    assert!(kinds.contains(&"rollback-failed".to_owned()) && kinds.contains(&"rollback".to_owned()), "{kinds:?}");
}

#[tokio::test]
async fn a_run_cut_short_in_a_step_is_undone_by_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake { hang: Some("1.1.0"), ..Fake::new("1.0.0", &["1.0.0", "1.1.0"]) };
    let spec = spec(dir.path(), true);
    // Dropping the future mid-deploy is the in-process image of a SIGKILL:
    // nothing after the journal write runs, and the lock goes with it.
    let cut = tokio::time::timeout(Duration::from_millis(200), update(&fake, dir.path(), &spec, "1.1.0")).await;
    assert!(cut.is_err(), "the deploy never returns");
    let state = AppState::new(dir.path(), "shop");
    assert_eq!(state.journal().unwrap().unwrap().step, Step::DeployTarget);

    let fake =
        Fake { snapshot: RefCell::new(fake.snapshot.borrow().clone()), ..Fake::new("1.0.0", &["1.0.0", "1.1.0"]) };
    let report = update(&fake, dir.path(), &spec, "1.1.0").await.unwrap();
    let interrupted = report.interrupted_run.as_ref().expect("the cut run was undone first");
    assert_eq!((interrupted.outcome, interrupted.reason), (Outcome::RolledBack, Some(Reason::Interrupted)));
    assert_eq!(interrupted.resumed.as_ref().map(|r| r.step), Some(Step::DeployTarget));
    assert_eq!(report.outcome, Outcome::Upgraded);
    assert_eq!(&fake.calls()[..4], ["undeploy", "restore", "deploy 1.0.0", "probe 1.0.0"]);
}

#[tokio::test]
async fn a_restore_refuses_a_snapshot_this_run_did_not_take() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake { foreign_snapshot: true, ..Fake::new("1.0.0", &["1.0.0"]) };
    let report = update(&fake, dir.path(), &spec(dir.path(), true), "1.1.0").await.unwrap();
    assert_eq!(report.outcome, Outcome::RollbackFailed);
    assert!(!fake.calls().contains(&"restore".to_owned()), "{:?}", fake.calls());
    assert!(report.detail.unwrap().contains("not the one this run took"));
}

#[tokio::test]
async fn a_stateless_failure_redeploys_without_touching_data() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::new("1.0.0", &["1.0.0"]);
    let report = update(&fake, dir.path(), &spec(dir.path(), false), "1.1.0").await.unwrap();
    assert_eq!(report.outcome, Outcome::RolledBack);
    assert_eq!(fake.calls(), ["deployed_version", "deploy 1.1.0", "probe 1.1.0", "deploy 1.0.0", "probe 1.0.0"]);
}

#[tokio::test]
async fn a_version_upgraded_by_hand_is_adopted_only_when_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(dir.path(), false);
    let state = AppState::new(dir.path(), "shop");
    state
        .set_last_good(&crate::LastGood::new("shop", "shop", "1.0.0", "health-gate", jiff::Timestamp::UNIX_EPOCH))
        .unwrap();

    // After a hold, an operator deployed 2.0.0 by hand, and it is healthy:
    // 2.0.1 is a patch update of what runs.
    let fake = Fake::new("2.0.0", &["2.0.0", "2.0.1"]);
    let report = update(&fake, dir.path(), &spec, "2.0.1").await.unwrap();
    assert_eq!(report.outcome, Outcome::Upgraded, "{report:#?}");
    assert_eq!(report.previous_last_good.as_deref(), Some("2.0.0"));
    assert!(report.notes.iter().any(|n| n.starts_with("adopted 2.0.0 as last-good")), "{:?}", report.notes);

    // The same, but what runs is broken: last-good stays the record, and
    // against it 2.0.2 is a major update.
    state
        .set_last_good(&crate::LastGood::new("shop", "shop", "1.0.0", "health-gate", jiff::Timestamp::UNIX_EPOCH))
        .unwrap();
    let fake = Fake::new("2.0.0", &[]);
    let report = update(&fake, dir.path(), &spec, "2.0.2").await.unwrap();
    assert_eq!((report.outcome, report.last_good.as_deref()), (Outcome::Held, Some("1.0.0")), "{report:#?}");
}
