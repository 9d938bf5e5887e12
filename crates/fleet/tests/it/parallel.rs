//! `max_parallel`: a round updates at most that many apps at once (one by
//! default), and never runs two updates of one app.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use lkg_fleet::{AppState, Fleet, Fleeter};
use lkg_reconcile::{
    AppSpec, CheckResult, DeployOutcome, Event, Platform, ProbeRound, Progress, ReconcileError, SnapshotRef,
};

/// A swarm that deploys in 300 ms and counts how many deploys are in flight,
/// overall and per stack.
#[derive(Default)]
struct CountingPlatform {
    running: Mutex<BTreeMap<String, String>>,
    in_flight: Mutex<Vec<String>>,
    most_at_once: Mutex<usize>,
    same_stack_twice: Mutex<bool>,
}

impl Platform for CountingPlatform {
    async fn deployed_version(&self, spec: &AppSpec) -> Result<Option<String>, ReconcileError> {
        Ok(self.running.lock().unwrap().get(&spec.stack).cloned())
    }

    async fn is_deployed(&self, spec: &AppSpec) -> Result<bool, ReconcileError> {
        Ok(self.running.lock().unwrap().contains_key(&spec.stack))
    }

    async fn has_volumes(&self, _: &AppSpec) -> Result<bool, ReconcileError> {
        Ok(false)
    }

    async fn existing_volumes(&self, _: &[String]) -> Result<BTreeSet<String>, ReconcileError> {
        Ok(BTreeSet::new())
    }

    async fn deploy(
        &self,
        spec: &AppSpec,
        version: &str,
        _: &dyn for<'e> Progress<Event<'e>>,
    ) -> Result<DeployOutcome, ReconcileError> {
        {
            let mut in_flight = self.in_flight.lock().unwrap();
            if in_flight.contains(&spec.stack) {
                *self.same_stack_twice.lock().unwrap() = true;
            }
            in_flight.push(spec.stack.clone());
            let mut most = self.most_at_once.lock().unwrap();
            *most = (*most).max(in_flight.len());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.in_flight.lock().unwrap().retain(|s| s != &spec.stack);
        self.running.lock().unwrap().insert(spec.stack.clone(), version.to_owned());
        Ok(DeployOutcome::Converged { detail: String::new() })
    }

    async fn undeploy(&self, spec: &AppSpec) -> Result<(), ReconcileError> {
        self.running.lock().unwrap().remove(&spec.stack);
        Ok(())
    }

    async fn snapshot(&self, _: &AppSpec, _: &str) -> Result<SnapshotRef, ReconcileError> {
        unreachable!("stateless apps are not snapshotted")
    }

    async fn current_snapshot(&self, _: &AppSpec) -> Result<Option<SnapshotRef>, ReconcileError> {
        Ok(None)
    }

    async fn restore(&self, _: &AppSpec) -> Result<(), ReconcileError> {
        unreachable!("stateless apps are not restored")
    }

    async fn probe(&self, spec: &AppSpec, version: &str) -> ProbeRound {
        let pass = self.running.lock().unwrap().get(&spec.stack).map(String::as_str) == Some(version);
        ProbeRound { checks: vec![CheckResult { check: "running".into(), pass, detail: String::new() }] }
    }

    async fn check(&self, _: &AppSpec, command: &str, _: &str) -> CheckResult {
        CheckResult { check: command.to_owned(), pass: true, detail: String::new() }
    }
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.net", "-c", "commit.gpgsign=false"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git is installed");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A fleet of `apps` stateless apps, each with a recipe repository whose
/// only tag is 1.0.0, and `max_parallel` as given (absent: the default).
fn fleet(dir: &Path, apps: usize, max_parallel: Option<usize>) -> Fleet {
    let mut text = String::from("version: 1\n");
    if let Some(n) = max_parallel {
        writeln!(text, "max_parallel: {n}").unwrap();
    }
    text.push_str("apps:\n");
    for i in 0..apps {
        let recipe = dir.join(format!("recipe{i}"));
        std::fs::create_dir_all(&recipe).unwrap();
        std::fs::write(recipe.join("compose.yml"), "services:\n  app:\n    image: example/app:${LKG_VERSION_TAG}\n")
            .unwrap();
        git(&recipe, &["init", "-q"]);
        git(&recipe, &["add", "."]);
        git(&recipe, &["commit", "-qm", "1.0.0"]);
        git(&recipe, &["tag", "1.0.0"]);
        write!(
            text,
            "  - app: app{i}\n    recipe: recipe{i}\n    source: recipe\n    stateful: false\n    \
             health: {{passes: 1, interval: 0.1, deadline: 5}}\n"
        )
        .unwrap();
    }
    let path = dir.join("fleet.yml");
    std::fs::write(&path, &text).unwrap();
    Fleet::load(&path).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// Runs one round of `apps` installs; returns the most deploys seen at once.
fn most_at_once(apps: usize, max_parallel: Option<usize>) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let fleet = fleet(dir.path(), apps, max_parallel);
    let platform = CountingPlatform::default();
    let state = dir.path().join("state");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let report = runtime.block_on(Fleeter::new(&state, &lkg_core::NoProgress).round(&fleet, &platform)).unwrap();
    let states: Vec<AppState> = report.apps.iter().map(|a| a.state).collect();
    assert_eq!(states, vec![AppState::Installed; apps], "{report:#?}");
    assert!(!*platform.same_stack_twice.lock().unwrap(), "two deploys of one app ran at once");
    *platform.most_at_once.lock().unwrap()
}

#[test]
fn one_app_at_a_time_by_default() {
    assert_eq!(most_at_once(3, None), 1);
}

#[test]
fn max_parallel_updates_that_many_apps_at_once_and_no_more() {
    assert_eq!(most_at_once(4, Some(2)), 2);
    assert_eq!(most_at_once(3, Some(3)), 3);
}
