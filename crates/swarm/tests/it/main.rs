//! lkg-swarm against the real engine of the test environment.
#![allow(clippy::disallowed_methods, reason = "tests write and read their fixtures; a failure panics at the line")]
#![allow(clippy::missing_panics_doc)] // a test helper panics by design: that is how a test fails

mod deploy;
mod docker;
mod events;
mod lifecycle;

use std::path::PathBuf;
use std::time::Duration;

use lkg_swarm::{DeployReport, DeployRequest, Deployer, NoProgress, ResolveImage, StackDeployer, Swarm};
use lkg_testkit::{APP_HEALTHCHECK, App, Behaviour, Env, env};

/// A stack deployed by a test; removed (with its volumes) when dropped.
#[derive(Debug)]
pub struct TestStack {
    pub env: &'static Env,
    pub name: String,
    pub dir: tempfile::TempDir,
}

impl TestStack {
    pub fn new(prefix: &str) -> TestStack {
        TestStack {
            env: env(),
            name: lkg_testkit::unique_name(prefix),
            dir: tempfile::tempdir().expect("temp dir for compose files"),
        }
    }

    /// Writes `text` as `file` in the test's directory.
    pub fn file(&self, file: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(file);
        std::fs::write(&path, text).expect("write a compose file");
        path
    }

    pub fn service(&self, short: &str) -> String {
        format!("{}_{short}", self.name)
    }

    pub async fn swarm(&self) -> Swarm {
        Swarm::new(lkg_swarm::docker::connect_to(&self.env.docker_host).await.expect("connect to the test engine"))
    }

    pub fn deployer(&self) -> StackDeployer {
        // Fixture images exist only in the engine: never ask a registry.
        StackDeployer::new().host(self.env.docker_host.clone()).resolve_image(ResolveImage::Never)
    }

    /// Deploys `files` with `docker stack deploy` and waits up to `timeout`.
    pub async fn deploy(&self, files: &[PathBuf], timeout: Duration) -> DeployReport {
        self.deploy_with(&self.deployer(), DeployRequest::new(&self.name, files.to_vec()).timeout(timeout)).await
    }

    pub async fn deploy_with<D: Deployer + Sync>(&self, deployer: &D, request: DeployRequest) -> DeployReport {
        let request =
            DeployRequest { watch: lkg_swarm::WatchOptions { poll_interval: Duration::from_millis(500) }, ..request };
        self.swarm().await.deploy(deployer, &request, &NoProgress).await.expect("the deploy runs and is watched")
    }

    /// A label of a service's spec, as the engine reports it (the docker CLI is the independent peer).
    pub fn label(&self, service: &str, label: &str) -> String {
        self.env.docker(&[
            "service",
            "inspect",
            "--format",
            &format!("{{{{index .Spec.Labels \"{label}\"}}}}"),
            &self.service(service),
        ])
    }
}

impl Drop for TestStack {
    fn drop(&mut self) {
        self.env.remove_stack(&self.name);
    }
}

/// How a test service updates.
#[derive(Debug, Clone, Copy)]
pub struct Update {
    pub failure_action: &'static str,
    pub order: &'static str,
}

pub const ROLLBACK_STOP_FIRST: Update = Update { failure_action: "rollback", order: "stop-first" };
pub const ROLLBACK_START_FIRST: Update = Update { failure_action: "rollback", order: "start-first" };
pub const PAUSE: Update = Update { failure_action: "pause", order: "stop-first" };

/// One fixture app service `app`, with short swarm timings: 1 s health
/// checks, 1 s monitor, 1 s stop grace. `extra` is appended to the service.
pub fn app_compose(image: &str, update: Update, extra: &str) -> String {
    format!(
        r#"version: "3.8"
services:
  app:
    image: {image}
{APP_HEALTHCHECK}    stop_grace_period: 1s
    deploy:
      update_config:
        failure_action: {failure_action}
        monitor: 1s
        order: {order}
      rollback_config:
        monitor: 1s
        order: {order}
{extra}"#,
        failure_action = update.failure_action,
        order = update.order,
    )
}

pub fn image(version: &str, behaviour: Behaviour) -> String {
    App::new(version).behaviour(behaviour).import(env())
}
