//! Deploys and their verdicts on the real swarm.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use lkg_swarm::verdict::Phase;
use lkg_swarm::{CommandDeployer, DEPLOY_ID_LABEL, DeployRequest, ProgressEvent, UpdateState, Verdict};
use lkg_testkit::Behaviour;

use crate::{PAUSE, ROLLBACK_START_FIRST, ROLLBACK_STOP_FIRST, TestStack, Update, app_compose, image};

const TIMEOUT: Duration = Duration::from_secs(90);

#[tokio::test]
async fn healthy_update_converges_and_every_service_carries_the_deploy_id() {
    let stack = TestStack::new("conv");
    let v1 = stack.file("v1.yml", &app_compose(&image("1.0.0", Behaviour::Healthy), ROLLBACK_STOP_FIRST, ""));
    let created = stack.deploy(&[v1], TIMEOUT).await;
    assert_eq!(created.verdict.verdict, Verdict::Converged, "{:#?}", created.verdict);
    assert!(created.verdict.services[0].reason.contains("created"), "{}", created.verdict.services[0].reason);
    assert_eq!(stack.label("app", DEPLOY_ID_LABEL), created.deploy_id.as_str());

    let v2 = stack.file("v2.yml", &app_compose(&image("2.0.0", Behaviour::Healthy), ROLLBACK_STOP_FIRST, ""));
    let updated = stack.deploy(&[v2], TIMEOUT).await;
    let app = &updated.verdict.services[0];
    assert_eq!(app.verdict, Verdict::Converged, "{app:#?}");
    assert_eq!(app.update_state, Some(UpdateState::Completed));
    assert_eq!((app.running, app.desired), (1, 1));
    assert_ne!(updated.deploy_id, created.deploy_id);
    assert_eq!(stack.label("app", DEPLOY_ID_LABEL), updated.deploy_id.as_str());
    // The engine runs the new image, as an independent peer reports it.
    let running = stack.env.docker(&[
        "service",
        "ps",
        "--filter",
        "desired-state=running",
        "--format",
        "{{.Image}}",
        &stack.service("app"),
    ]);
    assert_eq!(running, "lkg-fixture/app:2.0.0");
}

async fn unhealthy_update_rolls_back(update: Update) {
    let stack = TestStack::new("rb");
    let v1 = stack.file("v1.yml", &app_compose(&image("1.0.0", Behaviour::Healthy), update, ""));
    assert_eq!(stack.deploy(&[v1], TIMEOUT).await.verdict.verdict, Verdict::Converged);
    let bad = stack.file("bad.yml", &app_compose(&image("2.0.0", Behaviour::Unhealthy), update, ""));
    let report = stack.deploy(&[bad], TIMEOUT).await;
    let app = &report.verdict.services[0];
    assert_eq!(report.verdict.verdict, Verdict::RolledBack, "{app:#?}");
    assert!(!report.verdict.is_success());
    assert!(app.reason.starts_with("swarm rolled the update back"), "{}", app.reason);
    // swarm restored the previous spec: its deploy id and image, not ours.
    assert_ne!(stack.label("app", DEPLOY_ID_LABEL), report.deploy_id.as_str());
    let image = stack.env.docker(&[
        "service",
        "inspect",
        "--format",
        "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
        &stack.service("app"),
    ]);
    assert_eq!(image, "lkg-fixture/app:1.0.0");
}

#[tokio::test]
async fn unhealthy_update_rolls_back_with_stop_first() {
    unhealthy_update_rolls_back(ROLLBACK_STOP_FIRST).await;
}

#[tokio::test]
async fn unhealthy_update_rolls_back_with_start_first() {
    // start-first runs old and new side by side: no fixed host port here.
    unhealthy_update_rolls_back(ROLLBACK_START_FIRST).await;
}

#[tokio::test]
async fn default_failure_action_pauses_and_that_is_a_failure() {
    let stack = TestStack::new("pause");
    let v1 = stack.file("v1.yml", &app_compose(&image("1.0.0", Behaviour::Healthy), PAUSE, ""));
    assert_eq!(stack.deploy(&[v1], TIMEOUT).await.verdict.verdict, Verdict::Converged);
    let bad = stack.file("bad.yml", &app_compose(&image("2.0.0", Behaviour::Unhealthy), PAUSE, ""));
    let report = stack.deploy(&[bad], TIMEOUT).await;
    assert_eq!(report.verdict.verdict, Verdict::Paused, "{:#?}", report.verdict);
    let state = stack.env.docker(&["service", "inspect", "--format", "{{.UpdateStatus.State}}", &stack.service("app")]);
    assert_eq!(state, "paused");
}

#[tokio::test]
async fn unmet_placement_is_deadline_exceeded_within_the_deadline() {
    let stack = TestStack::new("place");
    let extra = "      placement:\n        constraints: [node.labels.nonexistent == x]\n";
    let compose = app_compose(&image("1.0.0", Behaviour::Healthy), ROLLBACK_STOP_FIRST, "")
        .replace("    deploy:\n", &format!("    deploy:\n{extra}"));
    let file = stack.file("c.yml", &compose);
    let started = Instant::now();
    let report = stack.deploy(&[file], Duration::from_secs(4)).await;
    let took = started.elapsed();
    let app = &report.verdict.services[0];
    assert_eq!(app.verdict, Verdict::DeadlineExceeded, "{app:#?}");
    assert!(app.reason.contains("0/1 tasks running"), "{}", app.reason);
    assert!(app.task_errors.iter().any(|e| e.contains("pending")), "{:?}", app.task_errors);
    // The deadline counts from the end of `docker stack deploy`; allow for it.
    assert!(took < Duration::from_secs(15), "took {took:?}");
}

/// With the crash-loop limit off (0), a crashing image waits for the
/// deadline, as swarm would, and the verdict names the exit.
#[tokio::test]
async fn an_image_that_cannot_start_is_deadline_exceeded_and_names_the_exit() {
    let stack = TestStack::new("crash");
    let file = stack.file("c.yml", &app_compose(&image("1.0.0", Behaviour::Crash), ROLLBACK_STOP_FIRST, ""));
    let request = DeployRequest::new(&stack.name, [file]).timeout(Duration::from_secs(8)).task_failure_limit(0);
    let report = stack.deploy_with(&stack.deployer(), request).await;
    let app = &report.verdict.services[0];
    assert_eq!(app.verdict, Verdict::DeadlineExceeded, "{app:#?}");
    assert!(app.task_errors.iter().any(|e| e.contains("non-zero exit")), "{:?}", app.task_errors);
}

/// A service the deploy creates has no update for swarm to roll back: its
/// crashing tasks are restarted for ever. lkg calls it at the third failure
/// (restart delay 5 s: about 10 s after the first), not at the deadline.
#[tokio::test]
async fn a_created_service_that_keeps_crashing_is_task_failed_at_the_third_failure() {
    let stack = TestStack::new("crashloop");
    let file = stack.file("c.yml", &app_compose(&image("1.0.0", Behaviour::Crash), ROLLBACK_STOP_FIRST, ""));
    let started = Instant::now();
    let report = stack.deploy(&[file], Duration::from_secs(150)).await;
    let took = started.elapsed();
    let app = &report.verdict.services[0];
    assert_eq!(app.verdict, Verdict::TaskFailed, "{app:#?}");
    assert_eq!(report.verdict.verdict, Verdict::TaskFailed);
    assert!(app.reason.starts_with("3 tasks of this deploy failed (the limit is 3) and 0/1 run"), "{}", app.reason);
    assert!(app.reason.contains("ended with exit code 3: task: non-zero exit (3)"), "{}", app.reason);
    assert!(took < Duration::from_secs(75), "a crash loop is called long before the deadline: took {took:?}");
}

/// An update whose `failure_action` is `continue` goes on while its new
/// tasks crash: swarm's updater stays `updating` for its monitor period
/// (120 s here) and the restart supervisor restarts the tasks for ever. lkg
/// calls the loop at the third failed task of this deploy, mid-update, as
/// for a service the deploy created.
#[tokio::test]
async fn an_update_that_goes_on_through_a_crash_loop_is_task_failed_before_swarm_completes_it() {
    let stack = TestStack::new("contloop");
    let go_on = Update { failure_action: "continue", order: "stop-first" };
    let v1 = stack.file("v1.yml", &app_compose(&image("1.0.0", Behaviour::Healthy), go_on, ""));
    assert_eq!(stack.deploy(&[v1], TIMEOUT).await.verdict.verdict, Verdict::Converged);
    // Only the update's own monitor is long: the first `monitor: 1s` is update_config's.
    let crashing =
        app_compose(&image("2.0.0", Behaviour::Crash), go_on, "").replacen("monitor: 1s", "monitor: 120s", 1);
    let bad = stack.file("bad.yml", &crashing);
    let started = Instant::now();
    let report = stack.deploy(&[bad], Duration::from_secs(240)).await;
    let took = started.elapsed();
    let app = &report.verdict.services[0];
    assert_eq!(app.verdict, Verdict::TaskFailed, "{app:#?}");
    assert_eq!(app.update_state, Some(UpdateState::Updating), "decided while swarm's update was in flight: {app:#?}");
    assert!(app.reason.starts_with("3 tasks of this deploy failed (the limit is 3) and 0/1 run"), "{}", app.reason);
    assert!(app.reason.contains("(its update goes on: failure_action continue)"), "{}", app.reason);
    assert!(app.reason.contains("ended with exit code 3: task: non-zero exit (3)"), "{}", app.reason);
    assert!(took < Duration::from_secs(90), "called long before the deadline and swarm's 120 s monitor: {took:?}");
    let state = stack.env.docker(&["service", "inspect", "--format", "{{.UpdateStatus.State}}", &stack.service("app")]);
    assert_eq!(state, "updating", "swarm itself had not given up");
}

#[tokio::test]
async fn a_deploy_that_changes_nothing_is_no_change_not_a_hang() {
    let stack = TestStack::new("same");
    let file = stack.file("c.yml", &app_compose(&image("1.0.0", Behaviour::Healthy), ROLLBACK_STOP_FIRST, ""));
    assert_eq!(stack.deploy(std::slice::from_ref(&file), TIMEOUT).await.verdict.verdict, Verdict::Converged);
    let task_before =
        stack.env.docker(&["service", "ps", "-q", "--filter", "desired-state=running", &stack.service("app")]);
    let started = Instant::now();
    let again = stack.deploy(&[file], TIMEOUT).await;
    assert_eq!(again.verdict.verdict, Verdict::NoChange, "{:#?}", again.verdict);
    assert!(started.elapsed() < Duration::from_secs(10), "no_change took {:?}", started.elapsed());
    let task_after =
        stack.env.docker(&["service", "ps", "-q", "--filter", "desired-state=running", &stack.service("app")]);
    assert_eq!(task_before, task_after, "stamping the deploy id restarted no task");
    assert_eq!(stack.label("app", DEPLOY_ID_LABEL), again.deploy_id.as_str());
}

#[tokio::test]
async fn a_stale_rollback_does_not_decide_the_next_deploy() {
    let stack = TestStack::new("stale");
    let v1 = stack.file("v1.yml", &app_compose(&image("1.0.0", Behaviour::Healthy), ROLLBACK_STOP_FIRST, ""));
    stack.deploy(&[v1], TIMEOUT).await;
    let bad = stack.file("bad.yml", &app_compose(&image("2.0.0", Behaviour::Unhealthy), ROLLBACK_STOP_FIRST, ""));
    assert_eq!(stack.deploy(&[bad], TIMEOUT).await.verdict.verdict, Verdict::RolledBack);
    let state = stack.env.docker(&["service", "inspect", "--format", "{{.UpdateStatus.State}}", &stack.service("app")]);
    assert_eq!(state, "rollback_completed", "the previous deploy left this status behind");

    let good = stack.file("good.yml", &app_compose(&image("3.0.0", Behaviour::Healthy), ROLLBACK_STOP_FIRST, ""));
    let report = stack.deploy(&[good], TIMEOUT).await;
    assert_eq!(report.verdict.verdict, Verdict::Converged, "{:#?}", report.verdict);
    assert_eq!(report.verdict.services[0].update_state, Some(UpdateState::Completed));
}

#[tokio::test]
async fn another_clients_update_during_the_watch_is_reported() {
    let stack = TestStack::new("foreign");
    let v1 = stack.file("v1.yml", &app_compose(&image("1.0.0", Behaviour::Healthy), ROLLBACK_STOP_FIRST, ""));
    stack.deploy(&[v1], TIMEOUT).await;
    // A slow start keeps our update in progress while someone else updates.
    let slow = app_compose(&image("2.0.0", Behaviour::Healthy), ROLLBACK_STOP_FIRST, "")
        .replace("    healthcheck:", "    environment:\n      LKG_APP_START_DELAY_MS: \"4000\"\n    healthcheck:");
    let v2 = stack.file("v2.yml", &slow);
    let env = stack.env;
    let service = stack.service("app");
    // Once lkg has seen its own update in progress, another client updates
    // the service, as `docker service update` would (it keeps the labels).
    let foreign: Mutex<Option<std::thread::JoinHandle<()>>> = Mutex::new(None);
    let progress = |event: &ProgressEvent<'_>| {
        let mut foreign = foreign.lock().unwrap();
        if let ProgressEvent::Phase { phase: Phase::Updating { .. }, .. } = *event
            && foreign.is_none()
        {
            let service = service.clone();
            *foreign = Some(std::thread::spawn(move || {
                env.docker(&["service", "update", "--detach", "--env-add", "FOREIGN=1", &service]);
            }));
        }
    };
    let request = DeployRequest::new(&stack.name, [v2]).timeout(TIMEOUT);
    let report = stack.swarm().await.deploy(&stack.deployer(), &request, &progress).await.unwrap();
    foreign.into_inner().unwrap().expect("lkg reported its update in progress").join().unwrap();
    let app = &report.verdict.services[0];
    assert_eq!(app.verdict, Verdict::Superseded, "{app:#?}");
    assert!(app.reason.contains("another client"), "{}", app.reason);
}

#[tokio::test]
async fn one_shot_and_global_services_do_not_hang_the_watch() {
    let stack = TestStack::new("shapes");
    let env = stack.env;
    let app = image("1.0.0", Behaviour::Healthy);
    let compose = format!(
        r#"version: "3.8"
services:
  migrate:
    image: {busybox}
    command: ["true"]
    deploy:
      restart_policy: {{ condition: none }}
  agent:
    image: {app}
    deploy:
      mode: global
      update_config: {{ monitor: 1s }}
"#,
        busybox = env.busybox_image
    );
    let file = stack.file("c.yml", &compose);
    let report = stack.deploy(std::slice::from_ref(&file), Duration::from_secs(60)).await;
    assert_eq!(report.verdict.verdict, Verdict::Converged, "{:#?}", report.verdict);
    let by_name = |n: &str| report.verdict.services.iter().find(|s| s.service == stack.service(n)).unwrap().clone();
    assert_eq!((by_name("agent").running, by_name("agent").desired), (1, 1), "one task per node");
    assert_eq!((by_name("migrate").running, by_name("migrate").desired), (1, 1), "a completed one-shot counts as done");
    // Redeploying the finished one-shot is no change, not a wait for a task that will never run again.
    let again = stack.deploy(&[file], Duration::from_secs(30)).await;
    assert_eq!(again.verdict.verdict, Verdict::NoChange, "{:#?}", again.verdict);
}

#[tokio::test]
async fn a_command_deployer_in_abra_style_is_watched_the_same_way() {
    let stack = TestStack::new("cmd");
    let file = stack.file("c.yml", &app_compose(&image("1.0.0", Behaviour::Healthy), ROLLBACK_STOP_FIRST, ""));
    // Like `abra app deploy`, the command reads the compose files from a
    // COMPOSE_FILE-style list (lkg's overlay last) and names the stack itself.
    let script = stack.file(
        "deploy.sh",
        "set -eu\nargs=\"\"\nIFS=:\nfor f in $1; do args=\"$args -c $f\"; done\nunset IFS\nexec docker stack deploy --resolve-image never $args \"$LKG_STACK\"\n",
    );
    let deployer = CommandDeployer::new("sh", [script.display().to_string(), "{compose}".to_owned()]);
    let request = DeployRequest::new(&stack.name, [file]).timeout(TIMEOUT).env("DOCKER_HOST", &stack.env.docker_host);
    let report = stack.deploy_with(&deployer, request).await;
    assert_eq!(report.verdict.verdict, Verdict::Converged, "{:#?}", report.verdict);
    assert!(report.deployer.starts_with("sh "), "{}", report.deployer);
    assert_eq!(stack.label("app", DEPLOY_ID_LABEL), report.deploy_id.as_str());
}

#[tokio::test]
async fn a_failing_deployer_is_an_error_naming_what_it_changed() {
    let stack = TestStack::new("fail");
    let file = stack.file("c.yml", &app_compose(&image("1.0.0", Behaviour::Healthy), ROLLBACK_STOP_FIRST, ""));
    let deployer = CommandDeployer::new("sh", ["-c", "echo 'no such recipe' >&2; exit 3"]);
    let request = DeployRequest::new(&stack.name, [file]).timeout(TIMEOUT);
    let err = stack.swarm().await.deploy(&deployer, &request, &lkg_swarm::NoProgress).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, lkg_swarm::DeployError::Deployer { ref applied, .. } if applied.is_empty()), "{text}");
    assert!(text.contains("no such recipe") && text.contains("no service was changed"), "{text}");
}
