//! One round: discover every app's versions (concurrently, bounded), decide
//! ([`plan::decide`](crate::plan::decide)), then for each app in `after`
//! order run lkg-reconcile's update through its library, under the app's
//! lock, and record what happened.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use jiff::Timestamp;
use lkg_core::{Classify, Clock, FailureKind, Progress, SystemClock};
use lkg_reconcile::{Outcome, Platform, ReconcileError, Reconciler, Report, UpdateRequest};
use serde::Serialize;

use crate::error::FleetError;
use crate::file::{Fleet, FleetApp};
use crate::plan::{Candidate, Decision, Facts, decide, newest};
use crate::state::{FleetState, RoundRecord};

/// The state a round leaves an app in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AppState {
    /// It runs the newest version its policy allows.
    UpToDate,
    /// Installed this round.
    Installed,
    /// Upgraded this round.
    Upgraded,
    /// A newer version waits for its cooldown or the maintenance window.
    Waiting,
    /// A newer version is held (safety gate or policy): an operator acts.
    Held,
    /// The update rolled back this round, or the newest version rolled back
    /// before and is not retried.
    RolledBack,
    /// The update failed and so did its rollback: see `lkg-reconcile status`.
    RollbackFailed,
    /// A first install failed; its stack was undeployed.
    InstallFailed,
    /// lkg could not do its job for the app (discovery, engine, state).
    Failed,
    /// Another process holds the app's lock: a test run, a person's update.
    Locked,
    /// Not attempted this round: a dependency did not settle, or the round stopped.
    Skipped,
}

impl AppState {
    /// The name used in output and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            AppState::UpToDate => "up_to_date",
            AppState::Installed => "installed",
            AppState::Upgraded => "upgraded",
            AppState::Waiting => "waiting",
            AppState::Held => "held",
            AppState::RolledBack => "rolled_back",
            AppState::RollbackFailed => "rollback_failed",
            AppState::InstallFailed => "install_failed",
            AppState::Failed => "failed",
            AppState::Locked => "locked",
            AppState::Skipped => "skipped",
        }
    }

    /// Whether apps that come `after` this one may go on this round.
    fn settled(self) -> bool {
        matches!(self, AppState::UpToDate | AppState::Installed | AppState::Upgraded | AppState::Waiting)
    }
}

impl std::fmt::Display for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a round did for one app.
#[derive(Debug, Clone, Serialize)]
pub struct AppRound {
    /// The app.
    pub app: String,
    /// Where it ended.
    pub state: AppState,
    /// Its last-good version after the round.
    pub running: Option<String>,
    /// The newest version its source offers.
    pub newest: Option<String>,
    /// When the newest version was published (tag or commit time, image
    /// `created`), when discovery read it (for a cooldown).
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "crate::state::opt_ts::serialize")]
    pub published: Option<Timestamp>,
    /// What the policy decided (absent when the app was not looked at).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// Why it is in this state, for states that have a reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For `failed`: the kind of failure (`environment`, `input`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<&'static str>,
    /// lkg-reconcile's report of the update, when one ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<Box<Report>>,
    /// lkg-reconcile's report of finishing a run that was killed before
    /// (through its journal), when there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovered: Option<Box<Report>>,
}

/// The outcome of a round, and its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RoundOutcome {
    /// Every app is up to date, updated, or waiting for its time.
    Ok,
    /// An update rolled back or failed (exit 1).
    Failed,
    /// Only holds: an operator must act (exit 3).
    Held,
    /// Some apps were skipped or locked: the round is not complete (exit 4).
    Partial,
    /// lkg could not do its job for some app: engine, registry, state (exit 5).
    Environment,
}

impl RoundOutcome {
    /// The name used in output.
    pub fn as_str(self) -> &'static str {
        match self {
            RoundOutcome::Ok => "ok",
            RoundOutcome::Failed => "failed",
            RoundOutcome::Held => "held",
            RoundOutcome::Partial => "partial",
            RoundOutcome::Environment => "environment",
        }
    }

    /// The outcome of a round whose apps ended in `states`.
    pub fn of(apps: &[AppRound]) -> RoundOutcome {
        let any = |f: &dyn Fn(&AppRound) -> bool| apps.iter().any(f);
        if any(&|a| {
            matches!(a.state, AppState::RolledBack | AppState::RollbackFailed | AppState::InstallFailed)
                && a.report.is_some()
                || a.state == AppState::Failed && a.failure != Some(FailureKind::Environment.name())
        }) {
            RoundOutcome::Failed
        } else if any(&|a| a.state == AppState::Failed) {
            RoundOutcome::Environment
        } else if any(&|a| matches!(a.state, AppState::Skipped | AppState::Locked)) {
            RoundOutcome::Partial
        } else if any(&|a| a.state == AppState::Held) {
            RoundOutcome::Held
        } else {
            RoundOutcome::Ok
        }
    }
}

/// What a round did.
#[derive(Debug, Clone, Serialize)]
pub struct RoundReport {
    /// When it started.
    #[serde(with = "lkg_core::rfc3339")]
    pub started: Timestamp,
    /// How long it took.
    pub duration_ms: u64,
    /// Its outcome.
    pub outcome: RoundOutcome,
    /// Each app, in the order the round took them.
    pub apps: Vec<AppRound>,
    /// Where the round's summary was sent (only when something changed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notified: Vec<lkg_notify::Delivery>,
}

impl RoundReport {
    /// Whether any app changed state this round (what a summary is sent for).
    pub fn changed(&self) -> bool {
        self.apps.iter().any(|a| {
            a.report.is_some()
                || a.recovered.is_some()
                || matches!(a.state, AppState::Failed | AppState::RollbackFailed)
        })
    }
}

/// What a round reports as it goes.
#[derive(Debug)]
#[non_exhaustive]
pub enum FleetEvent<'a> {
    /// Discovery of every app is done.
    Discovered {
        /// How many apps.
        apps: usize,
    },
    /// An app's update starts.
    Start {
        /// The app.
        app: &'a str,
        /// What the policy decided.
        decision: &'a Decision,
    },
    /// An app is done for this round.
    Done(&'a AppRound),
    /// lkg-reconcile's progress on an app.
    Reconcile {
        /// The app.
        app: &'a str,
        /// Its event.
        event: &'a lkg_reconcile::Event<'a>,
    },
    /// Something worth a line.
    Note(&'a str),
}

/// Runs fleet rounds with state under one directory.
pub struct Fleeter<'a> {
    state_dir: PathBuf,
    observer: &'a dyn for<'e> Progress<FleetEvent<'e>>,
    clock: &'a dyn Clock,
    stop: Option<&'a AtomicBool>,
}

impl std::fmt::Debug for Fleeter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleeter").field("state_dir", &self.state_dir).finish_non_exhaustive()
    }
}

impl<'a> Fleeter<'a> {
    /// A fleet runner with state under `state_dir`, reporting to `observer`.
    pub fn new(state_dir: &Path, observer: &'a dyn for<'e> Progress<FleetEvent<'e>>) -> Fleeter<'a> {
        Fleeter { state_dir: state_dir.to_owned(), observer, clock: &SystemClock, stop: None }
    }

    /// Takes the time (policy, records) from `clock`.
    #[must_use]
    pub fn clock(mut self, clock: &'a dyn Clock) -> Fleeter<'a> {
        self.clock = clock;
        self
    }

    /// When `stop` becomes true, the round finishes the app it is updating
    /// and starts no other (SIGTERM in `watch`).
    #[must_use]
    pub fn stop_flag(mut self, stop: &'a AtomicBool) -> Fleeter<'a> {
        self.stop = Some(stop);
        self
    }

    fn stopped(&self) -> bool {
        self.stop.is_some_and(|s| s.load(Ordering::SeqCst))
    }

    fn note(&self, text: &str) {
        self.observer.report(&FleetEvent::Note(text));
    }

    /// Discovers what every app runs and what its source offers, and
    /// decides; touches nothing.
    pub async fn plan(&self, fleet: &Fleet) -> Result<Vec<AppRound>, FleetError> {
        let state = FleetState::load(&self.state_dir)?;
        let registry = registry_client(fleet)?;
        let found = self.discover_all(fleet, &registry).await?;
        let now = self.clock.now_seconds();
        let mut rounds = Vec::new();
        for app in crate::plan::order(&fleet.apps) {
            let (current, discovered) = &found[app.name.as_str()];
            let newest = discovered.as_ref().ok().and_then(|c| newest(c, current.as_deref()));
            let mut round = AppRound {
                app: app.name.to_string(),
                state: AppState::UpToDate,
                running: current.clone(),
                newest: newest.map(|c| c.version.clone()),
                published: newest.and_then(|c| c.published),
                decision: None,
                reason: None,
                failure: None,
                report: None,
                recovered: None,
            };
            match discovered {
                Err((kind, reason)) => {
                    round.state = AppState::Failed;
                    round.failure = Some(kind.name());
                    round.reason = Some(reason.clone());
                }
                Ok(available) => {
                    let decision = decide(app, &facts(&state, app, current.clone(), available.clone()), now);
                    let (s, reason) = resting_state(&decision);
                    round.state = if decision.acts() { AppState::UpToDate } else { s };
                    round.reason = reason;
                    round.decision = Some(decision);
                }
            }
            rounds.push(round);
        }
        Ok(rounds)
    }

    async fn discover_all(
        &self,
        fleet: &Fleet,
        registry: &lkg_registry::Client,
    ) -> Result<BTreeMap<String, Discovered>, FleetError> {
        let mut found = BTreeMap::new();
        let mut currents = BTreeMap::new();
        for app in &fleet.apps {
            // Only last-good: app_status would also read every alert file, per app.
            let last_good = lkg_reconcile::AppState::new(&self.state_dir, app.name.as_str()).last_good()?;
            currents.insert(app.name.to_string(), last_good.map(|l| l.version));
        }
        let state_dir = &self.state_dir;
        let currents_ref = &currents;
        let mut results = futures_util::stream::iter(fleet.apps.iter())
            .map(|app| async move {
                let current = currents_ref[app.name.as_str()].clone();
                let discovered = crate::discover::discover(state_dir, app, current.as_deref(), registry)
                    .await
                    .map_err(|e| (e.kind(), format!("cannot discover its versions: {}", lkg_core::render_chain(&e))));
                (app.name.to_string(), (current, discovered))
            })
            .buffer_unordered(fleet.discovery_parallel);
        while let Some((name, result)) = results.next().await {
            found.insert(name, result);
        }
        self.observer.report(&FleetEvent::Discovered { apps: found.len() });
        Ok(found)
    }

    /// One round on `platform`: discover, decide, update in order, record.
    pub async fn round<P: Platform>(&self, fleet: &Fleet, platform: &P) -> Result<RoundReport, FleetError> {
        let started_at = self.clock.now_seconds();
        let started = Instant::now();
        let registry = registry_client(fleet)?;
        let found = self.discover_all(fleet, &registry).await?;
        let mut state = FleetState::load(&self.state_dir)?;
        let mut done: BTreeMap<String, AppState> = BTreeMap::new();
        let mut rounds: Vec<AppRound> = Vec::new();
        for wave in waves(fleet) {
            let ready: Vec<(&FleetApp, Option<String>)> = wave
                .iter()
                .map(|app| {
                    let blocker = app.policy.after.iter().find_map(|dep| {
                        let s = done.get(dep.as_str()).copied().unwrap_or(AppState::Skipped);
                        (!s.settled()).then(|| format!("its dependency {dep} is {s} this round"))
                    });
                    (*app, blocker)
                })
                .collect();
            let state_ref = &state;
            let found_ref = &found;
            let mut wave_rounds: Vec<(AppRound, Option<Outcome>)> = futures_util::stream::iter(ready)
                .map(|(app, blocker)| async move {
                    self.one_app(fleet, app, blocker, state_ref, &found_ref[app.name.as_str()], platform).await
                })
                .buffer_unordered(fleet.max_parallel)
                .collect()
                .await;
            wave_rounds.sort_by_key(|(r, _)| fleet.apps.iter().position(|a| a.name.as_str() == r.app));
            for (round, outcome) in wave_rounds {
                record(&mut state, &round, outcome, self.clock.now_seconds());
                done.insert(round.app.clone(), round.state);
                self.observer.report(&FleetEvent::Done(&round));
                rounds.push(round);
            }
            state.save(&self.state_dir)?;
        }
        let outcome = RoundOutcome::of(&rounds);
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        state.last_round = Some(RoundRecord { started: started_at, duration_ms, outcome: outcome.as_str().to_owned() });
        state.save(&self.state_dir)?;
        let mut report = RoundReport { started: started_at, duration_ms, outcome, apps: rounds, notified: Vec::new() };
        if report.changed() && !fleet.notify.is_empty() {
            report.notified = self.summarize(fleet, &report).await;
        }
        Ok(report)
    }

    #[allow(clippy::too_many_lines, reason = "one app's path through a round, read top to bottom")]
    async fn one_app<P: Platform>(
        &self,
        fleet: &Fleet,
        app: &FleetApp,
        blocker: Option<String>,
        state: &FleetState,
        found: &Discovered,
        platform: &P,
    ) -> (AppRound, Option<Outcome>) {
        let (current, discovered) = found;
        let newest = discovered.as_ref().ok().and_then(|c| newest(c, current.as_deref()));
        let mut round = AppRound {
            app: app.name.to_string(),
            state: AppState::Skipped,
            running: current.clone(),
            newest: newest.map(|c| c.version.clone()),
            published: newest.and_then(|c| c.published),
            decision: None,
            reason: None,
            failure: None,
            report: None,
            recovered: None,
        };
        if self.stopped() {
            round.reason = Some("the round was stopped (SIGTERM/SIGINT) before this app".into());
            return (round, None);
        }
        if let Some(blocker) = blocker {
            round.reason = Some(blocker);
            return (round, None);
        }
        let available = match discovered {
            Ok(available) => available.clone(),
            Err((kind, reason)) => {
                round.state = AppState::Failed;
                round.failure = Some(kind.name());
                round.reason = Some(reason.clone());
                return (round, None);
            }
        };
        let status = match lkg_reconcile::app_status(&self.state_dir, &app.name) {
            Ok(status) => status,
            Err(e) => return (failed(round, &e), None),
        };
        if let Some(holder) = &status.lock {
            round.state = AppState::Locked;
            round.reason = Some(format!("its lock is held by {holder}; left alone this round"));
            return (round, None);
        }
        let observer = |event: &lkg_reconcile::Event<'_>| {
            self.observer.report(&FleetEvent::Reconcile { app: app.name.as_str(), event });
        };
        let reconciler =
            Reconciler::new(platform, &self.state_dir, &observer).lock_wait(Duration::ZERO).clock(self.clock);
        let mut current = current.clone();
        if status.journal.is_some() {
            // A run that was killed (or a rollback that failed): finish it first.
            self.note(&format!("{}: finishing an interrupted run through its journal", app.name));
            match reconciler.recover(&app.name, false).await {
                Ok(report) => round.recovered = report.map(Box::new),
                Err(e) => return (locked_or_failed(round, &e), None),
            }
            current = match lkg_reconcile::app_status(&self.state_dir, &app.name) {
                Ok(status) => status.last_good.map(|l| l.version),
                Err(e) => return (failed(round, &e), None),
            };
            round.running.clone_from(&current);
            if round.recovered.as_ref().is_some_and(|r| r.outcome.keeps_journal()) {
                round.state = AppState::RollbackFailed;
                round.reason = Some("an interrupted run could not be finished: see lkg-reconcile status".into());
                return (round, None);
            }
        }
        let decision = decide(app, &facts(state, app, current, available), self.clock.now_seconds());
        round.decision = Some(decision.clone());
        if !decision.acts() {
            let (s, reason) = resting_state(&decision);
            round.state = s;
            round.reason = reason;
            return (round, None);
        }
        let target = decision.target().unwrap_or_default().to_owned();
        let mut config = app.config.clone();
        config.notify.extend(fleet.notify.iter().cloned());
        let spec = match config.into_spec() {
            Ok(spec) => spec,
            Err(e) => return (failed(round, &e), None),
        };
        self.observer.report(&FleetEvent::Start { app: app.name.as_str(), decision: &decision });
        let request = UpdateRequest { target: target.clone(), ..UpdateRequest::default() };
        match reconciler.update(&spec, &request).await {
            Ok(report) => {
                let outcome = report.outcome;
                round.running.clone_from(&report.last_good);
                round.state = match outcome {
                    Outcome::Upgraded => AppState::Upgraded,
                    Outcome::Installed => AppState::Installed,
                    Outcome::Current => AppState::UpToDate,
                    Outcome::Held => AppState::Held,
                    Outcome::RolledBack => AppState::RolledBack,
                    Outcome::RollbackFailed => AppState::RollbackFailed,
                    Outcome::InstallFailed => AppState::InstallFailed,
                    _ => AppState::Failed,
                };
                if round.state == AppState::Failed {
                    round.failure = Some(FailureKind::Verdict.name());
                }
                round.reason.clone_from(&report.detail);
                round.report = Some(Box::new(report));
                (round, Some(outcome))
            }
            Err(e) => (locked_or_failed(round, &e), None),
        }
    }

    /// Sends the round's summary to the fleet's channels.
    async fn summarize(&self, fleet: &Fleet, report: &RoundReport) -> Vec<lkg_notify::Delivery> {
        let channels: Vec<lkg_notify::Channel> =
            fleet.notify.iter().filter_map(|url| lkg_notify::Channel::parse(url).ok()).collect();
        let notifier = match lkg_notify::Notifier::new(channels) {
            Ok(notifier) => notifier,
            Err(e) => {
                self.note(&format!("cannot send the round summary: {}", lkg_core::render_chain(&e)));
                return Vec::new();
            }
        };
        let lines: Vec<String> = report
            .apps
            .iter()
            .filter(|a| a.state != AppState::UpToDate)
            .map(|a| {
                let target =
                    a.decision.as_ref().and_then(Decision::target).map(|t| format!(" ({t})")).unwrap_or_default();
                let reason = a.reason.as_deref().map(|r| format!(": {}", lkg_core::clip(r))).unwrap_or_default();
                format!("{}: {}{target}{reason}", a.app, a.state)
            })
            .collect();
        let severity = match report.outcome {
            RoundOutcome::Ok => lkg_notify::Severity::Info,
            RoundOutcome::Failed | RoundOutcome::Environment => lkg_notify::Severity::Critical,
            _ => lkg_notify::Severity::Warning,
        };
        let message = lkg_notify::Message {
            title: format!("lkg fleet round: {}", report.outcome.as_str()),
            text: lines.join("\n"),
            severity,
            json: serde_json::to_value(report).unwrap_or_default(),
        };
        let deliveries = notifier.send(&message, self.clock).await;
        for d in deliveries.iter().filter(|d| !d.delivered) {
            self.note(&format!(
                "the round summary did not reach {} ({})",
                d.channel,
                d.error.as_deref().unwrap_or("no answer")
            ));
        }
        deliveries
    }
}

/// Per app: its last-good, and what discovery found (or why it could not).
type Discovered = (Option<String>, Result<Vec<Candidate>, (FailureKind, String)>);

fn facts(state: &FleetState, app: &FleetApp, current: Option<String>, available: Vec<Candidate>) -> Facts {
    let record = state.apps.get(app.name.as_str()).cloned().unwrap_or_default();
    Facts { current, available, rolled_back: record.rolled_back, held: record.held }
}

/// The state of an app the round does not update, and why.
fn resting_state(decision: &Decision) -> (AppState, Option<String>) {
    match decision {
        Decision::UpToDate | Decision::Install { .. } | Decision::Update { .. } => (AppState::UpToDate, None),
        Decision::Wait { reason, .. } => (AppState::Waiting, Some(reason.clone())),
        Decision::Held { reason, .. } => (AppState::Held, Some(reason.clone())),
        Decision::SkipRolledBack { target } => (
            AppState::RolledBack,
            Some(format!("{target} rolled back before; waiting for a newer version (or lkg-fleet retry)")),
        ),
    }
}

fn failed<E: Classify + 'static>(mut round: AppRound, e: &E) -> AppRound {
    round.state = AppState::Failed;
    round.failure = Some(e.kind().name());
    round.reason = Some(lkg_core::render_chain(e));
    round
}

fn locked_or_failed(mut round: AppRound, e: &ReconcileError) -> AppRound {
    if matches!(e, ReconcileError::Lock(_)) {
        round.state = AppState::Locked;
        round.reason = Some(format!("{}; left alone this round", lkg_core::render_chain(e)));
        return round;
    }
    failed(round, e)
}

/// Records a round's result for `app` in the fleet's state.
fn record(state: &mut FleetState, round: &AppRound, outcome: Option<Outcome>, now: Timestamp) {
    let record = state.app(&round.app);
    if round.newest.is_some() {
        record.newest.clone_from(&round.newest);
    }
    record.last_state = Some(round.state.as_str().to_owned());
    record.last_reason.clone_from(&round.reason);
    let target = round.report.as_ref().map(|r| r.target.clone());
    match (outcome, target) {
        (Some(Outcome::Upgraded | Outcome::Installed), _) => {
            record.updates += 1;
            record.last_success = Some(now);
        }
        (Some(Outcome::Held), Some(target)) => {
            record.holds += 1;
            record.held.insert(target, round.reason.clone().unwrap_or_else(|| "held by the safety gate".into()));
        }
        (Some(Outcome::RolledBack | Outcome::RollbackFailed | Outcome::InstallFailed), Some(target)) => {
            record.rollbacks += 1;
            record.rolled_back.insert(target);
        }
        _ => {}
    }
}

/// The apps in waves: each wave only after the waves holding its `after`.
fn waves(fleet: &Fleet) -> Vec<Vec<&FleetApp>> {
    let mut level: BTreeMap<&str, usize> = BTreeMap::new();
    for app in crate::plan::order(&fleet.apps) {
        let l = app.policy.after.iter().filter_map(|d| level.get(d.as_str())).map(|l| l + 1).max().unwrap_or(0);
        level.insert(app.name.as_str(), l);
    }
    let depth = level.values().max().map_or(0, |m| m + 1);
    let mut waves = vec![Vec::new(); depth];
    for app in &fleet.apps {
        waves[level[app.name.as_str()]].push(app);
    }
    waves
}

/// The registry client of a round: the fleet's insecure registries, the
/// usual credential sources.
fn registry_client(fleet: &Fleet) -> Result<lkg_registry::Client, FleetError> {
    let options = lkg_registry::ClientOptions {
        insecure_registries: fleet.insecure_registries.clone(),
        ..lkg_registry::ClientOptions::default()
    };
    Ok(lkg_registry::Client::new(options)?)
}

/// Forgets the versions of `app` that rolled back or were held, so the
/// next round tries the newest again.
pub fn retry(state_dir: &Path, app: &str) -> Result<(Vec<String>, Vec<String>), FleetError> {
    let mut state = FleetState::load(state_dir)?;
    let record = state.app(app);
    let rolled_back: Vec<String> = std::mem::take(&mut record.rolled_back).into_iter().collect();
    let held: Vec<String> = std::mem::take(&mut record.held).into_keys().collect();
    state.save(state_dir)?;
    Ok((rolled_back, held))
}
