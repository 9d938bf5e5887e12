//! Recipe repositories: each version's files come from its git tag, and a
//! rollback deploys last-good's own files even after its tag is gone.

use lkg_reconcile::{AppConfig, AppSpec, Outcome, Reason};
use lkg_testkit::Behaviour;
use std::path::Path;
use std::process::Command;

use crate::{TestApp, images};

fn git(repo: &Path, args: &[&str]) {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .env("GIT_AUTHOR_NAME", "lkg test")
        .env("GIT_AUTHOR_EMAIL", "test@lkg.invalid")
        .env("GIT_COMMITTER_NAME", "lkg test")
        .env("GIT_COMMITTER_EMAIL", "test@lkg.invalid")
        .output()
        .expect("run git");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The app's compose file at one version: `extra` services beside `app`,
/// `app_env` lines under the app's `environment:`.
fn compose(port: u16, extra: &str, app_env: &str) -> String {
    format!(
        r#"version: "3.8"
services:
  app:
    image: lkg-fixture/app:${{LKG_VERSION_TAG}}
    stop_grace_period: 1s
    environment:
      LKG_RECIPE: "yes"
{app_env}    ports: [{{target: 8080, published: {port}, protocol: tcp, mode: host}}]
    volumes: [data:/data]
    deploy:
      update_config: {{order: stop-first, failure_action: rollback, monitor: 1s}}
{extra}volumes:
  data:
"#
    )
}

fn sidecar(name: &str, image: &str) -> String {
    format!("  {name}:\n    image: {image}\n    command: [\"sleep\", \"3600\"]\n    stop_grace_period: 1s\n")
}

/// Commits `compose.yml` (and release notes) and tags it `version`.
fn release(repo: &Path, version: &str, text: &str) {
    std::fs::write(repo.join("compose.yml"), text).unwrap();
    std::fs::create_dir_all(repo.join("releaseNotes")).unwrap();
    std::fs::write(repo.join(format!("releaseNotes/{version}.md")), format!("Release {version}.\n")).unwrap();
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "--quiet", "-m", version]);
    git(repo, &["tag", "-a", version, "-m", version]);
}

fn spec(app: &TestApp, recipe: &Path) -> AppSpec {
    let config = AppConfig {
        app: Some(app.name.clone()),
        recipe: Some(recipe.display().to_string()),
        stateful: Some(true),
        ..AppConfig::default()
    };
    app.checked(config).into_spec().expect("a valid spec")
}

fn services(app: &TestApp) -> Vec<String> {
    let out = app.env.docker(&[
        "service",
        "ls",
        "--filter",
        &format!("label=com.docker.stack.namespace={}", app.name),
        "--format",
        "{{.Name}}",
    ]);
    let mut names: Vec<String> =
        out.lines().map(|l| l.trim_start_matches(&format!("{}_", app.name)).to_owned()).collect();
    names.sort();
    names
}

#[tokio::test]
async fn each_version_deploys_its_tags_files_and_a_rollback_needs_no_tag() {
    images(&[("1.0.0", Behaviour::Healthy), ("1.1.0", Behaviour::Healthy), ("1.1.1", Behaviour::Healthy)]);
    let app = TestApp::new("rcrecipe").await;
    let busybox = &app.env.busybox_image;
    let repo = app.recipe().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "--quiet"]);
    // 1.0.0: app and `old`; 1.1.0: `old` dropped, `worker` added; 1.1.1: the
    // app told to fail its health endpoint (a broken release).
    release(&repo, "1.0.0", &compose(app.port, &sidecar("old", busybox), ""));
    release(&repo, "1.1.0", &compose(app.port, &sidecar("worker", busybox), ""));
    release(&repo, "1.1.1", &compose(app.port, &sidecar("worker", busybox), "      LKG_APP_HEALTH: fail\n"));
    // The work tree moves on: what is deployed comes from the tags alone.
    std::fs::write(repo.join("compose.yml"), "services: {broken: {image: nothing}}\n").unwrap();
    let spec = spec(&app, &repo);

    assert_eq!(app.update(&spec, "1.0.0").await.outcome, Outcome::Installed);
    assert_eq!(services(&app), ["app", "old"]);
    app.put_marker("known-good");

    let upgraded = app.update(&spec, "1.1.0").await;
    assert_eq!(upgraded.outcome, Outcome::Upgraded, "{upgraded:#?}");
    assert_eq!(services(&app), ["app", "worker"], "1.1.0's service set, `old` gone");
    assert_eq!(app.serving(), "1.1.0");

    // 1.1.0's tag is deleted before the broken 1.1.1 rolls back to it.
    git(&repo, &["tag", "-d", "1.1.0"]);
    let failed = app.update(&spec, "1.1.1").await;
    assert_eq!(failed.outcome, Outcome::RolledBack, "{failed:#?}");
    assert_eq!(failed.reason, Some(Reason::Unhealthy));
    assert_eq!((failed.recovered, failed.data_restored), (Some(true), true));
    assert_eq!(app.serving(), "1.1.0");
    assert_eq!(app.get("/health").status, 200);
    assert_eq!(app.get("/marker").body, "known-good");
    assert_eq!(services(&app), ["app", "worker"]);

    // A version the recipe has no tag for is refused before anything changes.
    let err = Box::pin(
        app.reconciler(&lkg_reconcile::NoProgress)
            .update(&spec, &lkg_reconcile::UpdateRequest { target: "9.9.9".into(), ..Default::default() }),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("has no tag 9.9.9"), "{err}");
    assert_eq!(app.serving(), "1.1.0");
}
