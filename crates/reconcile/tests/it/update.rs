//! Health-gated updates on the real swarm: upgraded, and every way a target
//! fails, each ending with last-good running healthy on its own data.

use std::sync::atomic::{AtomicBool, Ordering};

use lkg_reconcile::{AlertKind, Event, Outcome, Reason, Step, version_label};
use lkg_testkit::{App, Behaviour, http_request};

use crate::{Service, TestApp, bad, images, read_json};

#[tokio::test]
async fn a_healthy_target_is_upgraded_with_its_data_and_becomes_last_good() {
    images(&[("1.0.0", Behaviour::Healthy), ("1.1.0", Behaviour::Healthy)]);
    let app = TestApp::new("rcup").await;
    let spec = app.spec(Service::Plain, true);

    let installed = app.update(&spec, "1.0.0").await;
    assert_eq!(installed.outcome, Outcome::Installed, "{installed:#?}");
    assert_eq!(installed.last_good.as_deref(), Some("1.0.0"));
    app.put_marker("known-good");

    let report = app.update(&spec, "1.1.0").await;
    assert_eq!(report.outcome, Outcome::Upgraded, "{report:#?}");
    assert_eq!((report.previous_last_good.as_deref(), report.last_good.as_deref()), (Some("1.0.0"), Some("1.1.0")));
    let steps: Vec<Step> = report.timeline.steps.iter().map(|s| s.step).collect();
    assert_eq!(
        steps,
        [Step::RecordLastGood, Step::Undeploy, Step::Snapshot, Step::DeployTarget, Step::CheckHealth, Step::Commit]
    );
    assert_eq!(app.serving(), "1.1.0");
    assert_eq!(app.get("/marker").body, "known-good");
    // What is deployed has one answer: the identity label lkg stamped.
    assert_eq!(app.label(&version_label(&app.name)), "1.1.0");
    let last_good = read_json(&app.state().join("apps").join(&app.name).join("reconcile/last-good.json"));
    assert_eq!((last_good["version"].as_str(), last_good["source"].as_str()), (Some("1.1.0"), Some("health-gate")));
    // The snapshot holds last-good's data, taken while undeployed.
    let meta = read_json(&app.state().join("apps").join(&app.name).join("snapshot/meta.json"));
    assert_eq!(meta["version"], "1.0.0");
    assert!(app.alerts().is_empty());
    assert!(!app.journal_exists());
    let t = &report.timeline;
    assert!(t.docker_ms + t.data_ms + t.health_ms <= t.total_ms, "{t:?}");

    let again = app.update(&spec, "1.1.0").await;
    assert_eq!(again.outcome, Outcome::Current, "{again:#?}");
    assert!(again.timeline.steps.is_empty(), "nothing was done: {:?}", again.timeline);
}

/// A failed update costs no data: a broken latest is rolled back, the
/// pre-upgrade data is intact although the broken version changed it,
/// last-good does not advance, and an alert lands in the alerts directory.
#[tokio::test]
async fn an_unhealthy_target_is_rolled_back_and_the_data_it_changed_restored() {
    images(&[("1.0.0", Behaviour::Healthy), ("1.1.0", Behaviour::Unhealthy)]);
    let app = TestApp::new("rcbad").await;
    let spec = app.spec(Service::Plain, true);
    assert_eq!(app.update(&spec, "1.0.0").await.outcome, Outcome::Installed);
    app.put_marker("known-good");

    // The broken version "migrates" the data while it runs: the health gate
    // fails afterwards, so only the snapshot can bring the old data back.
    let target = bad("1.1.0", Behaviour::Unhealthy);
    let mutated = AtomicBool::new(false);
    let url = app.url("/marker");
    let observer = |event: &Event<'_>| {
        if let Event::Step { step: Step::CheckHealth, .. } = event {
            let put =
                http_request("PUT", &url, Some(b"written-by-the-broken-version")).expect("the target serves /marker");
            mutated.store(put.status == 200, Ordering::SeqCst);
        }
    };
    let report = app.update_observed(&spec, &target, &observer).await;
    assert!(mutated.load(Ordering::SeqCst), "the broken version changed the data");
    assert_eq!(report.outcome, Outcome::RolledBack, "{report:#?}");
    assert_eq!(report.reason, Some(Reason::Unhealthy));
    assert_eq!((report.recovered, report.data_restored), (Some(true), true));
    assert_eq!(report.last_good.as_deref(), Some("1.0.0"), "last-good never advances on failure");
    assert!(report.detail.as_deref().unwrap_or_default().contains("HTTP 503"), "{:?}", report.detail);
    assert_eq!(app.serving(), "1.0.0");
    assert_eq!(app.get("/marker").body, "known-good");
    assert_eq!(app.label(&version_label(&app.name)), "1.0.0");

    let alerts = app.alerts();
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let alert = &alerts[0];
    for field in ["kind", "app", "attempted", "last_good", "recovered", "reason", "notes", "ts"] {
        assert!(alert.get(field).is_some(), "the alert has {field}: {alert:#}");
    }
    assert_eq!(alert["kind"], AlertKind::Rollback.as_str());
    assert_eq!((alert["attempted"].as_str(), alert["last_good"].as_str()), (Some(target.as_str()), Some("1.0.0")));
    assert_eq!((alert["recovered"].as_bool(), alert["reason"].as_str()), (Some(true), Some("unhealthy")));
    assert_eq!(report.alert.as_ref().map(|a| a.id.as_str()), alert["id"].as_str());
    assert!(!app.journal_exists(), "a finished rollback leaves no journal");
}

/// A broken tag can fail before it runs (abra's lint rejects it), so the
/// deploy itself fails; the rollback must still restore and redeploy.
#[tokio::test]
async fn a_target_that_fails_to_deploy_is_rolled_back() {
    images(&[("1.0.0", Behaviour::Healthy)]);
    let app = TestApp::new("rcdeploy").await;
    // A deploy command standing in for `abra app deploy`: it refuses 1.1.0.
    let script = app.dir.path().join("deploy.sh");
    std::fs::write(
        &script,
        r#"set -eu
if [ "$LKG_VERSION" = 1.1.0 ]; then echo "lint error R009: env value is not a string" >&2; exit 1; fi
args=""
for file in $(echo "$LKG_COMPOSE_FILES" | tr ':' ' '); do args="$args -c $file"; done
exec docker stack deploy --detach=true --resolve-image never $args "$LKG_STACK"
"#,
    )
    .unwrap();
    let mut spec = app.spec(Service::Plain, true);
    spec.deploy.command = Some(format!("sh {}", script.display()));
    assert_eq!(app.update(&spec, "1.0.0").await.outcome, Outcome::Installed);
    app.put_marker("known-good");

    let report = app.update(&spec, "1.1.0").await;
    assert_eq!(report.outcome, Outcome::RolledBack, "{report:#?}");
    assert_eq!(report.reason, Some(Reason::DeployError));
    assert!(report.detail.as_deref().unwrap_or_default().contains("lint error R009"), "{:?}", report.detail);
    assert_eq!((report.recovered, report.last_good.as_deref()), (Some(true), Some("1.0.0")));
    assert_eq!(app.serving(), "1.0.0");
    assert_eq!(app.get("/marker").body, "known-good");
    assert_eq!(app.alerts()[0]["reason"], "deploy_error");
}

/// swarm rolls a crashing update back by itself (and may say so before the
/// old task runs again): lkg still redeploys last-good and checks it.
#[tokio::test]
async fn a_target_swarm_rolled_back_is_redeployed_and_checked() {
    images(&[("1.0.0", Behaviour::Healthy), ("1.1.0", Behaviour::Crash)]);
    let app = TestApp::new("rcswarm").await;
    let mut spec = app.spec(Service::SwarmChecked, false);
    // swarm's own rollback waits out the crashing task's restart delay and a
    // monitor period: on an overloaded engine (5 of these at once beside 3
    // busy loops on 2 cores) it once took more than the usual 40 s.
    spec.deploy.timeout = std::time::Duration::from_secs(90);
    assert_eq!(app.update(&spec, "1.0.0").await.outcome, Outcome::Installed);

    let target = bad("1.1.0", Behaviour::Crash);
    let report = app.update(&spec, &target).await;
    assert_eq!(report.outcome, Outcome::RolledBack, "{report:#?}");
    assert_eq!(report.reason, Some(Reason::RolledBack), "{report:#?}");
    assert!(!report.data_restored, "a stateless app has no snapshot");
    let steps: Vec<Step> = report.timeline.steps.iter().map(|s| s.step).collect();
    assert_eq!(
        steps,
        [Step::RecordLastGood, Step::DeployTarget, Step::DeployLastGood, Step::VerifyLastGood, Step::Alert]
    );
    assert_eq!(app.serving(), "1.0.0");
    assert_eq!(report.last_good.as_deref(), Some("1.0.0"));
}

/// When last-good cannot be brought back, the loudest alert is raised, the
/// journal stays, and a later recover finishes the rollback.
#[tokio::test]
async fn a_failed_rollback_raises_rollback_failed_and_recover_finishes_it() {
    let app = TestApp::new("rcrbf").await;
    // Images in the test's own repository: last-good's image is removed to
    // make the rollback fail.
    let repo = format!("{}/app", app.name);
    let v1 = App::new("1.0.0").repo(&repo);
    v1.import(app.env);
    App::new("1.1.0").repo(&repo).behaviour(Behaviour::Unhealthy).import(app.env);
    let mut spec = app.spec_for(&repo, Service::Plain, false);
    spec.deploy.timeout = std::time::Duration::from_secs(25);
    assert_eq!(app.update(&spec, "1.0.0").await.outcome, Outcome::Installed);
    app.env.docker(&["image", "rm", "-f", &v1.reference()]);

    let report = app.update(&spec, &bad("1.1.0", Behaviour::Unhealthy)).await;
    assert_eq!(report.outcome, Outcome::RollbackFailed, "{report:#?}");
    assert_eq!(report.recovered, Some(false));
    assert!(report.detail.as_deref().unwrap_or_default().contains("then the rollback failed"), "{:?}", report.detail);
    assert_eq!(report.last_good.as_deref(), Some("1.0.0"), "last-good never advances on failure");
    let alert = &app.alerts()[0];
    assert_eq!((alert["kind"].as_str(), alert["recovered"].as_bool()), (Some("rollback-failed"), Some(false)));
    assert!(alert["detail"].as_str().unwrap().starts_with("ROLLBACK FAILED"), "{alert:#}");
    assert!(app.journal_exists(), "the journal stays so that recover can try again");
    let status = lkg_reconcile::app_status(&app.state(), &app.name.parse().unwrap()).unwrap();
    assert!(status.journal.as_ref().is_some_and(|j| j.rollback_failure.is_some()), "{status:#?}");

    // The cause is fixed: recover runs the rollback again.
    v1.import(app.env);
    let recovered = Box::pin(app.reconciler(&lkg_reconcile::NoProgress).recover(&app.name.parse().unwrap(), false))
        .await
        .unwrap()
        .expect("a run to recover");
    assert_eq!(recovered.outcome, Outcome::RolledBack, "{recovered:#?}");
    assert_eq!(recovered.recovered, Some(true));
    assert_eq!(app.serving(), "1.0.0");
    assert!(!app.journal_exists());
    let kinds: Vec<String> = app.alerts().iter().map(|a| a["kind"].as_str().unwrap().to_owned()).collect();
    assert!(kinds.contains(&"rollback".to_owned()) && kinds.contains(&"rollback-failed".to_owned()), "{kinds:?}");
}

#[tokio::test]
async fn a_failed_first_install_is_undeployed_and_alerted() {
    images(&[("1.0.0", Behaviour::Unhealthy)]);
    let app = TestApp::new("rcinst").await;
    let spec = app.spec(Service::Plain, true);
    let report = app.update(&spec, &bad("1.0.0", Behaviour::Unhealthy)).await;
    assert_eq!(report.outcome, Outcome::InstallFailed, "{report:#?}");
    assert_eq!((report.last_good.as_deref(), report.recovered), (None, None));
    let service = app.env.try_docker(&["service", "inspect", &format!("{}_app", app.name)]);
    assert!(!service.status.success(), "the failed install was undeployed");
    assert_eq!(app.alerts()[0]["kind"], "install-failed");
}

#[tokio::test]
async fn a_second_run_on_the_same_app_is_refused_while_one_holds_the_lock() {
    let app = TestApp::new("rclock").await;
    let spec = app.spec(Service::Plain, true);
    let canonicals = lkg_canonical::Canonicals::new(&app.state());
    let held = canonicals.lock(&spec.app, "another reconcile", std::time::Duration::ZERO, |_| {}).unwrap();
    let request = lkg_reconcile::UpdateRequest { target: "1.0.0".into(), ..Default::default() };
    let err = Box::pin(app.reconciler(&lkg_reconcile::NoProgress).update(&spec, &request)).await.unwrap_err();
    assert!(matches!(err, lkg_reconcile::ReconcileError::Lock(_)), "{err}");
    assert!(err.to_string().contains("another reconcile"), "{err}");
    assert_eq!(err.kind(), lkg_reconcile::ErrorKind::Environment);
    drop(held);
    assert!(app.alerts().is_empty() && !app.journal_exists());
}

/// A stateful update undeploys and then *creates* the target's services, so
/// swarm has no update to roll back and restarts a crashing target for ever:
/// lkg calls it at the third failed task, long before the deploy deadline,
/// and the rollback brings last-good and its data back.
#[tokio::test]
async fn a_crash_looping_stateful_target_is_called_at_its_third_failure_and_rolled_back() {
    images(&[("1.0.0", Behaviour::Healthy), ("1.1.0", Behaviour::Crash)]);
    let app = TestApp::new("rcloop").await;
    let mut spec = app.spec(Service::Plain, true);
    // The default deadline: before crash-loop detection the outage lasted this long.
    spec.deploy.timeout = std::time::Duration::from_secs(300);
    assert_eq!(app.update(&spec, "1.0.0").await.outcome, Outcome::Installed);
    app.put_marker("known-good");

    let report = app.update(&spec, &bad("1.1.0", Behaviour::Crash)).await;
    assert_eq!(report.outcome, Outcome::RolledBack, "{report:#?}");
    assert_eq!(report.reason, Some(Reason::TaskFailed), "{report:#?}");
    let detail = report.detail.as_deref().unwrap_or_default();
    assert!(detail.contains("3 tasks of this deploy failed") && detail.contains("exit code 3"), "{detail}");
    assert_eq!((report.recovered, report.data_restored), (Some(true), true));
    assert_eq!(app.serving(), "1.0.0");
    assert_eq!(app.get("/marker").body, "known-good");
    let deploy = report.timeline.steps.iter().find(|s| s.step == Step::DeployTarget).expect("deploy-target ran");
    assert!(!deploy.ok);
    // Three attempts 5 s apart (swarm's restart delay), not the 300 s deadline.
    assert!(deploy.ms < 90_000, "the crash loop was called after {} ms", deploy.ms);
    assert_eq!(app.alerts()[0]["reason"], "task_failed");
    // The report says how long it took to tell, and how long the app was down.
    let t = &report.timeline;
    assert_eq!(t.detect_ms, Some(deploy.ms), "{t:?}");
    assert!(t.downtime_ms.is_some_and(|down| down > deploy.ms && down < t.total_ms), "{t:?}");
}

/// Versions whose files differ (`update -c v1.yml`, then `-c v2-broken.yml`):
/// the rollback deploys the files last-good was deployed from, kept when it
/// was, not the target's, and not the originals as they are now.
#[tokio::test]
async fn a_rollback_deploys_last_goods_own_files_not_the_targets() {
    images(&[("1.0.0", Behaviour::Healthy), ("1.1.0", Behaviour::Healthy)]);
    let app = TestApp::new("rcfiles").await;
    let v1 = app.spec(Service::Plain, true);
    assert_eq!(app.update(&v1, "1.0.0").await.outcome, Outcome::Installed);
    app.put_marker("known-good");

    // v2-broken.yml runs a healthy image told to fail its health endpoint.
    let text = std::fs::read_to_string(&v1.compose[0]).unwrap();
    let broken = text
        .replace("    stop_grace_period: 1s\n", "    stop_grace_period: 1s\n    environment: {LKG_APP_HEALTH: fail}\n");
    assert_ne!(broken, text);
    let v2_path = app.recipe().join("v2-broken.yml");
    std::fs::write(&v2_path, &broken).unwrap();
    // The file 1.0.0 was deployed from is edited too: what ran is what counts.
    std::fs::write(&v1.compose[0], &broken).unwrap();
    let mut v2 = v1.clone();
    v2.compose = vec![v2_path];

    let report = app.update(&v2, "1.1.0").await;
    assert_eq!(report.outcome, Outcome::RolledBack, "{report:#?}");
    assert_eq!(report.reason, Some(Reason::Unhealthy), "{report:#?}");
    assert_eq!((report.recovered, report.data_restored), (Some(true), true));
    assert_eq!(app.serving(), "1.0.0");
    assert_eq!(app.get("/health").status, 200, "last-good runs from its own files, without the broken env");
    assert_eq!(app.get("/marker").body, "known-good");

    // The record says which files last-good runs from; they still check.
    let status = lkg_reconcile::app_status(&app.state(), &app.name.parse().unwrap()).unwrap();
    let files = status.last_good.and_then(|l| l.files).expect("last-good's kept files");
    assert_eq!(files.version, "1.0.0");
    assert!(files.dir.starts_with(app.state().join("apps").join(&app.name).join("deployed")), "{files:?}");
    let kept = std::fs::read_to_string(files.dir.join(&files.compose[0])).unwrap();
    assert!(!kept.contains("LKG_APP_HEALTH"), "{kept}");
}
