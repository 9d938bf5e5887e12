//! Quick mode on the real swarm: a pass leaves the canonical and its
//! snapshot unchanged; a failure restores the known-good data; quick never
//! promotes; without a canonical it says so.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lkg_canonical::{
    Canonicals, DomainScheme, PromotionRequest, Record, Run, RunKind, RunResult, Stages, Status, Target,
};
use lkg_reconcile::{
    AppSpec, Event, NoProgress, Outcome, Platform, Progress, QuickRequest, Reason, ReconcileError, Report, Step,
};
use lkg_testkit::{Behaviour, http_request};

use crate::{Service, TestApp, bad, images};

async fn quick(
    app: &TestApp,
    spec: &AppSpec,
    candidate: &str,
    check: Option<&str>,
    observer: &dyn for<'e> Progress<Event<'e>>,
) -> Result<Report, ReconcileError> {
    let request = QuickRequest { candidate: candidate.to_owned(), check: check.map(str::to_owned) };
    Box::pin(app.reconciler(observer).quick(spec, &request)).await
}

type CanonicalFacts = (String, String, String, Vec<String>, Status, String);

fn essentials(record: &Record) -> CanonicalFacts {
    (
        record.version.clone(),
        record.commit.clone(),
        record.domain.clone(),
        record.volumes.clone(),
        record.status,
        record.ts.to_string(),
    )
}

/// An app with a canonical: 1.0.0 with known-good data, idle, snapshotted,
/// recorded. Returns the snapshot, the records and the canonical's essentials.
async fn canonical(app: &TestApp, spec: &AppSpec) -> (lkg_reconcile::SnapshotRef, Canonicals, CanonicalFacts) {
    images(&[("1.0.0", Behaviour::Healthy), ("1.1.0", Behaviour::Healthy), ("1.2.0", Behaviour::Unhealthy)]);
    assert_eq!(app.update(spec, "1.0.0").await.outcome, Outcome::Installed);
    app.put_marker("known-good");
    app.platform.undeploy(spec).await.unwrap();
    let snapshot = app.platform.snapshot(spec, "1.0.0").await.unwrap();
    let canonicals = Canonicals::new(&app.state());
    {
        let lock = canonicals.lock(&spec.app, "seed the canonical", Duration::ZERO, |_| {}).unwrap();
        let scheme = DomainScheme::new("example.test").unwrap();
        canonicals
            .promote(
                &lock,
                &PromotionRequest {
                    version: "1.0.0".into(),
                    commit: "0a1b2c3".into(),
                    run: Run {
                        kind: RunKind::Cold,
                        stages: Stages::Full,
                        target: Target::Latest,
                        result: RunResult::Green,
                    },
                    scheme: Some(&scheme),
                    volumes: vec![format!("{}_data", app.name)],
                    status: Status::Idle,
                    now: lkg_canonical::Timestamp::now(),
                },
            )
            .unwrap();
    }
    let before = essentials(&canonicals.get(&spec.app).unwrap().unwrap());
    (snapshot, canonicals, before)
}

fn undeployed(app: &TestApp) -> bool {
    !app.env.try_docker(&["service", "inspect", &format!("{}_app", app.name)]).status.success()
}

#[tokio::test]
async fn a_quick_pass_leaves_the_canonical_and_its_snapshot_unchanged() {
    let app = TestApp::new("rcqpass").await;
    let spec = app.spec(Service::Plain, true);
    let (snapshot, canonicals, before) = canonical(&app, &spec).await;

    // Pass: undeployed, volumes kept, the canonical and its snapshot unchanged.
    let passed = quick(&app, &spec, "1.1.0", Some("test \"$LKG_VERSION\" = 1.1.0"), &NoProgress).await.unwrap();
    assert_eq!(passed.outcome, Outcome::Passed, "{passed:#?}");
    let steps: Vec<Step> = passed.timeline.steps.iter().map(|s| s.step).collect();
    assert_eq!(steps, [Step::Reattach, Step::DeployCandidate, Step::CheckCandidate, Step::UndeployPassed]);
    assert!(undeployed(&app));
    assert_eq!(essentials(&canonicals.get(&spec.app).unwrap().unwrap()), before, "quick never promotes");
    assert_eq!(app.platform.current_snapshot(&spec).await.unwrap(), Some(snapshot));
    assert_eq!(app.volume_marker(), "known-good", "the volume was kept");

    // A failing user check fails the candidate too.
    let checked = quick(&app, &spec, "1.1.0", Some("echo 'login page broken' >&2; exit 1"), &NoProgress).await.unwrap();
    assert_eq!((checked.outcome, checked.reason), (Outcome::Failed, Some(Reason::CheckFailed)), "{checked:#?}");
    assert!(checked.detail.as_deref().unwrap_or_default().contains("login page broken"), "{:?}", checked.detail);
    assert!(!app.journal_exists());
}

#[tokio::test]
async fn a_quick_failure_restores_the_known_good_data() {
    let app = TestApp::new("rcqfail").await;
    let spec = app.spec(Service::Plain, true);
    let (snapshot, canonicals, before) = canonical(&app, &spec).await;

    // Fail: the candidate changes the data and fails its health gate; the
    // known-good data comes back, the canonical is idle and unchanged.
    let mutated = AtomicBool::new(false);
    let url = app.url("/marker");
    let observer = |event: &Event<'_>| {
        if let Event::Step { step: Step::CheckCandidate, .. } = event {
            let put =
                http_request("PUT", &url, Some(b"written-by-the-candidate")).expect("the candidate serves /marker");
            mutated.store(put.status == 200, Ordering::SeqCst);
        }
    };
    let failed = quick(&app, &spec, &bad("1.2.0", Behaviour::Unhealthy), None, &observer).await.unwrap();
    assert!(mutated.load(Ordering::SeqCst), "the candidate changed the data");
    assert_eq!(failed.outcome, Outcome::Failed, "{failed:#?}");
    assert_eq!((failed.reason, failed.data_restored), (Some(Reason::Unhealthy), true));
    assert!(undeployed(&app));
    assert_eq!(app.volume_marker(), "known-good");
    assert_eq!(essentials(&canonicals.get(&spec.app).unwrap().unwrap()), before);
    assert_eq!(app.platform.current_snapshot(&spec).await.unwrap(), Some(snapshot));
    assert!(!app.journal_exists());
}

#[tokio::test]
async fn quick_without_a_canonical_says_so_and_touches_nothing() {
    let app = TestApp::new("rcnocanon").await;
    let spec = app.spec(Service::Plain, true);
    let request = QuickRequest { candidate: "1.1.0".into(), check: None };
    let err = Box::pin(app.reconciler(&NoProgress).quick(&spec, &request)).await.unwrap_err();
    assert!(matches!(err, ReconcileError::NoCanonical { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "app {} has no usable canonical (absent: no canonical record): quick mode needs one; run a cold test instead",
            app.name
        )
    );
    assert!(!app.journal_exists());
}
