//! Prune, identity, status, volumes and undeploy on the real swarm.

use std::time::Duration;

use lkg_swarm::{CommitCheck, ComposeFiles, DeployRequest, PruneOutcome, Verdict};
use lkg_testkit::Behaviour;

use crate::{ROLLBACK_STOP_FIRST, TestStack, app_compose, image};

const TIMEOUT: Duration = Duration::from_secs(90);

fn two_services(app: &str, busybox: &str, with_worker: bool) -> String {
    let mut compose = app_compose(app, ROLLBACK_STOP_FIRST, "");
    if with_worker {
        compose = format!(
            "{compose}  worker:\n    image: {busybox}\n    command: [\"sleep\", \"600\"]\n    stop_grace_period: 1s\n    deploy:\n      update_config: {{ monitor: 1s }}\n"
        );
    }
    compose
}

#[tokio::test]
async fn prune_removes_a_dropped_service_and_nothing_else() {
    let stack = TestStack::new("prune");
    let other = TestStack::new("prune");
    let env = stack.env;
    let app = image("1.0.0", Behaviour::Healthy);
    let both = stack.file("both.yml", &two_services(&app, &env.busybox_image, true));
    assert_eq!(stack.deploy(std::slice::from_ref(&both), TIMEOUT).await.verdict.verdict, Verdict::Converged);
    assert_eq!(other.deploy(&[both], TIMEOUT).await.verdict.verdict, Verdict::Converged);

    // The new compose drops `worker`; an unreadable compose removes nothing.
    let broken = stack.file("broken.yml", "services: [app]\n");
    let err = ComposeFiles::load(&[broken]).unwrap_err();
    assert!(err.to_string().contains("not a mapping"), "{err}");
    assert_eq!(services(&stack), [stack.service("app"), stack.service("worker")]);

    let app_only = stack.file("app.yml", &two_services(&app, &env.busybox_image, false));
    let request = DeployRequest::new(&stack.name, [app_only]).timeout(TIMEOUT).prune(true);
    let report = stack.deploy_with(&stack.deployer(), request).await;
    assert_eq!(report.verdict.verdict, Verdict::NoChange, "{:#?}", report.verdict);
    assert_eq!(
        report.prune,
        Some(PruneOutcome::Pruned { removed: vec![stack.service("worker")], kept: vec![stack.service("app")] })
    );
    assert_eq!(services(&stack), [stack.service("app")]);
    assert_eq!(services(&other), [other.service("app"), other.service("worker")], "another stack is untouched");
}

fn services(stack: &TestStack) -> Vec<String> {
    let label = format!("label=com.docker.stack.namespace={}", stack.name);
    let out = stack.env.docker(&["service", "ls", "--filter", &label, "--format", "{{.Name}}"]);
    let mut names: Vec<String> = out.lines().map(str::to_owned).collect();
    names.sort();
    names
}

#[tokio::test]
async fn identity_labels_are_read_and_commits_compared_by_prefix() {
    let stack = TestStack::new("ident");
    let labels = format!(
        "      labels:\n        coop-cloud.{s}.recipe: discourse\n        coop-cloud.{s}.version: 1.0.0+3.5.3\n        coop-cloud.{s}.chaos-version: 7ae7b0f7+U\n",
        s = stack.name
    );
    let compose = app_compose(&image("1.0.0", Behaviour::Healthy), ROLLBACK_STOP_FIRST, "")
        .replace("    deploy:\n", &format!("    deploy:\n{labels}"));
    let file = stack.file("c.yml", &compose);
    assert_eq!(stack.deploy(&[file], TIMEOUT).await.verdict.verdict, Verdict::Converged);

    let identity = stack.swarm().await.identity(&stack.name, None).await.unwrap();
    assert_eq!(identity.service, stack.service("app"));
    assert_eq!(identity.recipe.as_deref(), Some("discourse"));
    assert_eq!(identity.version.as_deref(), Some("1.0.0+3.5.3"));
    assert_eq!(identity.commit.as_deref(), Some("7ae7b0f7"));
    assert!(identity.dirty);
    let full = "7ae7b0f76efb1c9d2a3b4c5d6e7f8091a2b3c4d5";
    assert!(matches!(identity.check_commit(full).unwrap(), CommitCheck::Match { .. }));
    assert_eq!(
        identity.check_commit("eb96de94").unwrap(),
        CommitCheck::Mismatch { deployed: "7ae7b0f7".into(), expected: "eb96de94".into() }
    );
    let missing = stack.swarm().await.identity(&stack.name, Some("nope")).await.unwrap_err();
    assert!(missing.to_string().contains("has no service nope"), "{missing}");
}

#[tokio::test]
async fn status_volumes_and_undeploy_keeping_volumes() {
    let stack = TestStack::new("life");
    let compose = app_compose(&image("1.0.0", Behaviour::Healthy), ROLLBACK_STOP_FIRST, "volumes:\n  data:\n")
        .replace("    stop_grace_period: 1s\n", "    stop_grace_period: 1s\n    volumes: [data:/data]\n");
    let file = stack.file("c.yml", &compose);
    let report = stack.deploy(&[file], TIMEOUT).await;
    assert_eq!(report.verdict.verdict, Verdict::Converged, "{:#?}", report.verdict);
    let swarm = stack.swarm().await;

    let status = swarm.status(&stack.name).await.unwrap();
    assert_eq!(status.services.len(), 1);
    let app = &status.services[0];
    assert_eq!(app.deploy_id.as_deref(), Some(report.deploy_id.as_str()));
    assert_eq!((app.running, app.desired), (1, 1));
    assert!(swarm.is_running(&stack.name).await.unwrap());

    let volume = format!("{}_data", stack.name);
    let volumes: Vec<String> = swarm.volumes(&stack.name).await.unwrap().into_iter().map(|v| v.name).collect();
    assert_eq!(volumes, std::slice::from_ref(&volume));
    let mountpoint = stack.env.docker(&["volume", "inspect", "--format", "{{.Mountpoint}}", &volume]);
    std::fs::write(format!("{mountpoint}/marker"), "kept").unwrap();

    let undeployed = swarm.undeploy(&stack.name, Some(Duration::from_secs(60))).await.unwrap();
    assert_eq!(undeployed.services, [stack.service("app")]);
    assert_eq!(undeployed.networks, [format!("{}_default", stack.name)]);
    assert_eq!(undeployed.kept_volumes, std::slice::from_ref(&volume));
    assert!(undeployed.left.is_empty(), "{:?}", undeployed.left);
    // Gone, as the engine reports it: no service, container or network of the stack.
    let label = format!("label=com.docker.stack.namespace={}", stack.name);
    assert_eq!(stack.env.docker(&["service", "ls", "-q", "--filter", &label]), "");
    assert_eq!(stack.env.docker(&["ps", "-aq", "--filter", &label]), "");
    assert_eq!(stack.env.docker(&["network", "ls", "-q", "--filter", &label]), "");
    assert!(!swarm.is_running(&stack.name).await.unwrap());
    // The volume and its data survived.
    assert_eq!(std::fs::read_to_string(format!("{mountpoint}/marker")).unwrap(), "kept");
    assert_eq!(swarm.status(&stack.name).await.unwrap().services.len(), 0);
}
