//! lkg-reconcile against the real swarm of the test environment, with the
//! fixture app: every path of an update, the safety gate, quick mode,
//! alerts and the lock.
#![allow(clippy::disallowed_methods, reason = "tests write and read their fixtures; a failure panics at the line")]
#![allow(clippy::missing_panics_doc)] // a test helper panics by design: that is how a test fails

mod held;
mod quick;
mod recipes;
mod update;

use std::path::{Path, PathBuf};
use std::time::Duration;

use lkg_reconcile::{
    AppConfig, AppSpec, Event, HttpCheck, NoProgress, Progress, Reconciler, Report, ResolveImage, SwarmPlatform,
    UpdateRequest,
};
use lkg_testkit::{APP_HEALTHCHECK, App, Behaviour, Env, HttpResponse, env, http_get, http_request, wait_until};

/// One app on the swarm, its own stack, state directory and host port;
/// the stack and its volumes are removed when it is dropped.
#[derive(Debug)]
pub struct TestApp {
    pub env: &'static Env,
    /// The app and its stack (one name).
    pub name: String,
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub platform: SwarmPlatform,
}

/// How the test service is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// No container health check: swarm converges and lkg's own health gate
    /// judges (an unhealthy image answers 503).
    Plain,
    /// A container health check and `failure_action: rollback`: swarm rolls
    /// a failing update back by itself. Its update monitor is 5 s (swarm's
    /// default): swarm counts a task failure against the update only within
    /// the monitor period after the manager saw the task run, and on a busy
    /// engine a failure report can arrive later than 1 s; the update would
    /// then "complete" and the service crash-loop (a deadline, not a rollback).
    SwarmChecked,
}

impl TestApp {
    pub async fn new(prefix: &str) -> TestApp {
        let env = env();
        let dir = tempfile::tempdir().expect("a temp dir");
        let state = dir.path().join("state");
        let platform = SwarmPlatform::connect_to(&env.docker_host, &state).await.expect("connect to the test engine");
        TestApp { env, name: lkg_testkit::unique_name(prefix), port: lkg_testkit::free_port(), dir, platform }
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn recipe(&self) -> PathBuf {
        self.dir.path().join("recipe")
    }

    /// Writes the compose file (the version comes in as `${LKG_VERSION_TAG}`)
    /// and returns a spec for it with short timings.
    pub fn spec(&self, service: Service, stateful: bool) -> AppSpec {
        self.spec_for("lkg-fixture/app", service, stateful)
    }

    pub fn spec_for(&self, repo: &str, service: Service, stateful: bool) -> AppSpec {
        let recipe = self.recipe();
        std::fs::create_dir_all(&recipe).unwrap();
        let compose = recipe.join("compose.yml");
        std::fs::write(&compose, compose_text(repo, self.port, service)).unwrap();
        let config = AppConfig {
            app: Some(self.name.clone()),
            compose: vec![compose],
            stateful: Some(stateful),
            ..AppConfig::default()
        };
        self.checked(config).into_spec().expect("a valid spec")
    }

    /// `config` with this app's health check and short timings.
    pub fn checked(&self, mut config: AppConfig) -> AppConfig {
        config.health.http.push(HttpCheck::new(self.url("/health")));
        config.health.passes = 2;
        config.health.interval = Duration::from_millis(300);
        config.health.deadline = Duration::from_secs(6);
        config.health.probe_timeout = Duration::from_secs(2);
        config.deploy.timeout = Duration::from_secs(40);
        config.deploy.resolve_image = ResolveImage::Never;
        config
    }

    pub fn reconciler<'a>(&'a self, observer: &'a dyn for<'e> Progress<Event<'e>>) -> Reconciler<'a, SwarmPlatform> {
        Reconciler::new(&self.platform, &self.state(), observer)
    }

    pub async fn update(&self, spec: &AppSpec, target: &str) -> Report {
        self.update_observed(spec, target, &NoProgress).await
    }

    pub async fn update_observed(
        &self,
        spec: &AppSpec,
        target: &str,
        observer: &dyn for<'e> Progress<Event<'e>>,
    ) -> Report {
        let request = UpdateRequest { target: target.to_owned(), ..UpdateRequest::default() };
        Box::pin(self.reconciler(observer).update(spec, &request)).await.expect("the update runs")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn get(&self, path: &str) -> HttpResponse {
        http_get(&self.url(path)).unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    pub fn put_marker(&self, text: &str) {
        let put = http_request("PUT", &self.url("/marker"), Some(text.as_bytes())).expect("PUT /marker");
        assert_eq!(put.status, 200, "{put:?}");
    }

    /// The version served, once the app answers (bounded wait).
    pub fn serving(&self) -> String {
        wait_until("the app to answer", Duration::from_secs(20), Duration::from_millis(200), || {
            http_get(&self.url("/version")).ok().filter(|r| r.status == 200).map(|r| r.body.trim().to_owned())
        })
    }

    /// The ids of the running tasks, as the docker CLI (an independent peer) lists them.
    pub fn tasks(&self) -> Vec<String> {
        let service = format!("{}_app", self.name);
        let out = self.env.docker(&["service", "ps", "-q", "--filter", "desired-state=running", &service]);
        out.lines().map(str::to_owned).collect()
    }

    /// A label of the app service's spec, read with the docker CLI.
    pub fn label(&self, label: &str) -> String {
        self.env.docker(&[
            "service",
            "inspect",
            "--format",
            &format!("{{{{index .Spec.Labels \"{label}\"}}}}"),
            &format!("{}_app", self.name),
        ])
    }

    /// The data volume's marker file, read by a busybox container (not the app).
    pub fn volume_marker(&self) -> String {
        self.env.on_volume(&format!("{}_data", self.name), &["cat", "/data/marker"])
    }

    pub fn alerts(&self) -> Vec<serde_json::Value> {
        let dir = self.state().join("alerts");
        let mut alerts: Vec<serde_json::Value> = std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                    .map(|e| serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap())
                    .collect()
            })
            .unwrap_or_default();
        alerts.sort_by_key(|a| a["id"].as_str().unwrap_or_default().to_owned());
        alerts
    }

    pub fn journal_exists(&self) -> bool {
        self.state().join("apps").join(&self.name).join("reconcile/journal.json").exists()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.env.remove_stack(&self.name);
    }
}

/// The fixture app as a one-service stack: a data volume, a host port, short
/// swarm timings (1 s monitor, 5 s for [`Service::SwarmChecked`]; 1 s stop
/// grace), stop-first updates that swarm rolls back on failure.
pub fn compose_text(repo: &str, port: u16, service: Service) -> String {
    let (healthcheck, monitor) = match service {
        Service::Plain => ("", "1s"),
        Service::SwarmChecked => (APP_HEALTHCHECK, "5s"),
    };
    format!(
        r#"version: "3.8"
services:
  app:
    image: {repo}:${{LKG_VERSION_TAG}}
{healthcheck}    stop_grace_period: 1s
    ports: [{{target: 8080, published: {port}, protocol: tcp, mode: host}}]
    volumes: [data:/data]
    deploy:
      update_config: {{order: stop-first, failure_action: rollback, monitor: {monitor}}}
      rollback_config: {{order: stop-first, monitor: 1s}}
volumes:
  data:
"#
    )
}

/// Imports fixture images: `("1.1.0", Behaviour::Unhealthy)` is `lkg-fixture/app:1.1.0-unhealthy`,
/// deployed as version `1.1.0-unhealthy`.
pub fn images(versions: &[(&str, Behaviour)]) {
    for (version, behaviour) in versions {
        App::new(version).behaviour(*behaviour).import(env());
    }
}

/// The version whose image has `behaviour`: `1.1.0-unhealthy`.
pub fn bad(version: &str, behaviour: Behaviour) -> String {
    App::new(version).behaviour(behaviour).reference().rsplit_once(':').map(|(_, tag)| tag.to_owned()).unwrap()
}

pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}
