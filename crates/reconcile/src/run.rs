//! The executor: takes the app's lock, finishes a killed run, applies the
//! safety gate, then walks the steps of [`crate::flow`], journalling each one
//! before it starts.

use lkg_core::{Clock, SystemClock};
use std::path::{Path, PathBuf};
use std::time::Duration;

use lkg_canonical::{AppLock, AppName, Canonicals, Presence, Status};
use lkg_core::Progress;
use tokio::time::Instant;

use crate::alert::{Alert, AlertFacts, AlertKind, Alerts};
use crate::error::ReconcileError;
use crate::event::Event;
use crate::flow::{self, FailureNote, Flow, Outcome, Reason, Step, Transition};
use crate::gate::{Gate, GateDecision, ReleaseNotes};
use crate::health::{HealthGate, HealthState, ProbeRound};
use crate::platform::{DeployOutcome, Platform};
use crate::report::{AlertRecord, Command, Report, Resumed, StepTiming, Timeline, Waits, millis};
use crate::spec::AppSpec;
use crate::state::{AppState, JOURNAL_FORMAT, Journal, LastGood};
use crate::version::check_version;

/// What `update` is asked to do.
#[derive(Debug, Clone, Default)]
pub struct UpdateRequest {
    /// The version to update to.
    pub target: String,
    /// Release notes to use instead of `releaseNotes/<target>.md`.
    pub notes: Option<ReleaseNotes>,
    /// The version running now, when lkg cannot know it (an unlabelled stack
    /// and no last-good record).
    pub last_good: Option<String>,
}

/// What `quick` is asked to do.
#[derive(Debug, Clone, Default)]
pub struct QuickRequest {
    /// The version to test on the canonical.
    pub candidate: String,
    /// A command run once after the health gate passed (`sh -c`); the
    /// candidate passes only if it exits 0.
    pub check: Option<String>,
}

/// Runs reconciles for apps on one platform, with state under one directory.
///
/// ```no_run
/// use lkg_reconcile::{AppConfig, NoProgress, Reconciler, SwarmPlatform, UpdateRequest};
///
/// # async fn demo() -> Result<(), lkg_reconcile::ReconcileError> {
/// let state = std::path::Path::new("/var/lib/lkg");
/// let spec = AppConfig::load("keycloak.yml".as_ref())?.into_spec()?;
/// let platform = SwarmPlatform::connect(state).await?;
/// let report = Reconciler::new(&platform, state, &NoProgress)
///     .update(&spec, &UpdateRequest { target: "10.7.9+26.6.2".into(), ..UpdateRequest::default() })
///     .await?;
/// println!("{}: {}", report.app, report.outcome);
/// # Ok(()) }
/// ```
pub struct Reconciler<'a, P> {
    platform: &'a P,
    state_dir: PathBuf,
    observer: &'a dyn for<'e> Progress<Event<'e>>,
    lock_wait: Duration,
    clock: &'a dyn Clock,
    /// Attempts per notification channel and the first pause between them.
    notify_retries: (u32, Duration),
    /// How long a step that failed while the engine did not answer waits
    /// for it to answer again before the failure counts.
    engine_wait: Duration,
}

/// Times one step is run again after the engine came back.
const ENGINE_RETRIES: u32 = 2;

impl<P> std::fmt::Debug for Reconciler<'_, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconciler")
            .field("state_dir", &self.state_dir)
            .field("lock_wait", &self.lock_wait)
            .finish_non_exhaustive()
    }
}

/// One run in progress: its clock, its waits and its lock.
struct Run<'r> {
    state: AppState,
    alerts: Alerts,
    lock: &'r AppLock,
    started: Instant,
    waits: Waits,
    data_restored: bool,
    last_probe: Option<ProbeRound>,
    alert: Option<AlertRecord>,
}

impl<'a, P: Platform> Reconciler<'a, P> {
    /// A reconciler over `platform`, keeping state under `state_dir` and
    /// reporting progress to `observer`.
    pub fn new(platform: &'a P, state_dir: &Path, observer: &'a dyn for<'e> Progress<Event<'e>>) -> Reconciler<'a, P> {
        Reconciler {
            platform,
            state_dir: state_dir.to_owned(),
            observer,
            lock_wait: Duration::ZERO,
            clock: &SystemClock,
            notify_retries: (4, Duration::from_secs(1)),
            engine_wait: Duration::from_secs(60),
        }
    }

    /// When a step fails while the engine does not answer (restarted,
    /// crashed, its host rebooting), waits up to `wait` for it to answer
    /// again and runs the step again (each step is idempotent), at most
    /// twice per step, instead of taking an engine outage for the verdict
    /// on the app (default: 60 s). After `wait` the failure counts as usual:
    /// a rollback, or a journal for `recover`.
    #[must_use]
    pub fn engine_wait(mut self, wait: Duration) -> Reconciler<'a, P> {
        self.engine_wait = wait;
        self
    }

    /// After a failed step: `true` when the engine did not answer and
    /// answers again within `engine_wait` (the step should run again).
    async fn engine_came_back(&self, step: Step) -> bool {
        if self.platform.engine_answers().await {
            return false;
        }
        self.observer.report(&Event::Note(&format!(
            "the engine stopped answering during {step}: waiting up to {} s for it",
            self.engine_wait.as_secs()
        )));
        let started = Instant::now();
        while started.elapsed() < self.engine_wait {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if self.platform.engine_answers().await {
                return true;
            }
        }
        false
    }

    /// Tries each notification channel `attempts` times, `backoff` apart
    /// and doubling (default: 4 attempts, 1 s apart).
    #[must_use]
    pub fn notify_retries(mut self, attempts: u32, backoff: Duration) -> Reconciler<'a, P> {
        self.notify_retries = (attempts, backoff);
        self
    }

    /// Takes the time of records, journals and alerts from `clock` (default:
    /// the system's).
    #[must_use]
    pub fn clock(mut self, clock: &'a dyn Clock) -> Reconciler<'a, P> {
        self.clock = clock;
        self
    }

    /// Now, in whole seconds, as state files record it.
    fn now(&self) -> jiff::Timestamp {
        self.clock.now_seconds()
    }

    /// Waits up to `wait` for another run on the same app (default: fail at once).
    #[must_use]
    pub fn lock_wait(mut self, wait: Duration) -> Reconciler<'a, P> {
        self.lock_wait = wait;
        self
    }

    fn note(&self, text: &str) {
        self.observer.report(&Event::Note(text));
    }

    /// Takes the app's lock, or joins it when an enclosing
    /// `lkg-canonical lock APP -- ...` holds it for this process; the second
    /// value says whose lock was taken over, when its holder ended without
    /// releasing it (killed).
    fn lock(&self, app: &AppName, purpose: &str) -> Result<(AppLock, Option<String>), ReconcileError> {
        let canonicals = Canonicals::new(&self.state_dir);
        let lock = canonicals.lock_or_join(app, purpose, self.lock_wait, |holder| {
            self.note(&format!("waiting for the lock of app {app}: held by {holder}"));
        })?;
        let took_over = lock.took_over_from().map(|previous| {
            format!(
                "took over the lock of app {app} from pid {} ({}), which ended without releasing it",
                previous.pid, previous.purpose
            )
        });
        if let Some(note) = &took_over {
            self.note(note);
        }
        Ok((lock, took_over))
    }

    /// Updates `spec.app` to `request.target`: finishes a killed run first,
    /// applies the safety gate, then deploys behind the health gate and
    /// rolls back on failure. See the crate docs for the steps.
    pub async fn update(&self, spec: &AppSpec, request: &UpdateRequest) -> Result<Report, ReconcileError> {
        let started = Instant::now();
        let target = request.target.as_str();
        check_version(target)?;
        if let Some(declared) = &request.last_good {
            check_version(declared)?;
        }
        let (lock, took_over) = self.lock(&spec.app, &format!("lkg-reconcile update to {target}"))?;
        // A recipe's files for the target, read from its tag.
        let resolved = crate::recipe::resolve(&self.state_dir, spec, target).await?;
        let spec = &resolved;
        let mut run = Run::new(&self.state_dir, spec.app.as_str(), &lock, started);
        let mut notes: Vec<String> = took_over.into_iter().collect();

        let interrupted = match run.state.journal()? {
            Some(journal) => Some(Box::new(self.resume(journal, &lock).await?)),
            None => None,
        };
        if let Some(previous) = interrupted.as_ref().filter(|r| r.outcome.keeps_journal()) {
            let mut report = bare_report(Command::Update, spec, target, previous.outcome);
            report.detail = Some(format!(
                "a killed run could not be rolled back ({}); the update to {target} was not attempted",
                previous.detail.as_deref().unwrap_or("see interrupted_run")
            ));
            report.recovered = Some(false);
            report.interrupted_run = interrupted;
            return finish(&run, report, Vec::new());
        }
        if interrupted.is_some() {
            // The finished run reports its own time; this run's starts now.
            run.started = Instant::now();
        }

        let recorded = run.state.last_good()?;
        let deployed = run.docker(self.platform.deployed_version(spec)).await?;
        let (last_good, source) =
            self.choose_last_good(spec, request, recorded.as_ref(), deployed.as_deref(), &mut run, &mut notes).await?;

        let notes_text = match &request.notes {
            Some(given) => Some(given.clone()),
            None => ReleaseNotes::read(&spec.release_notes, target).map_err(|source| {
                crate::files::state_io("read", &spec.release_notes.join(format!("{target}.md")), source)
            })?,
        };
        let gate = Gate::new(&spec.markers).decide(last_good.as_deref(), target, notes_text.as_ref());
        let mut report = bare_report(Command::Update, spec, target, Outcome::Held);
        report.previous_last_good.clone_from(&last_good);
        report.last_good.clone_from(&last_good);
        report.interrupted_run = interrupted;
        report.notes = notes;
        if let GateDecision::Hold { kind, reason, notes, .. } = &gate {
            let facts = hold_facts(spec, target, last_good.as_deref(), *kind, reason, notes.as_ref());
            run.alert = Some(self.raise(&run.alerts, Alert::new(facts, self.now()), spec).await?);
            report.detail = Some(reason.clone());
            report.gate = Some(gate);
            return finish(&run, report, Vec::new());
        }
        report.gate = Some(gate);

        if last_good.as_deref() == Some(target) && deployed.as_deref() == Some(target) {
            report.outcome = Outcome::Current;
            report.detail = Some(format!("{} already runs {target}", spec.stack));
            return finish(&run, report, Vec::new());
        }
        let install = last_good.is_none();
        // Multi-node: where the data is, and whether touching it is safe,
        // decided before the journal exists (a refusal changes nothing).
        let located;
        let spec = if spec.stateful && !install {
            located = self.locate_data(spec, target, &mut run, &mut report).await?;
            &located
        } else {
            spec
        };
        if spec.stateful && !install && !run.docker(self.platform.has_volumes(spec)).await? {
            return Err(ReconcileError::NoVolumes { stack: spec.stack.clone() });
        }

        let flow = Flow::Update { stateful: spec.stateful, install };
        let mut journal = Journal {
            format: JOURNAL_FORMAT,
            run: new_run_id(self.now()),
            flow,
            spec: spec.clone(),
            target: target.to_owned(),
            last_good: last_good.clone(),
            notes: notes_text.map(|n| n.text),
            started: self.now(),
            pid: std::process::id(),
            step: flow::first(flow),
            step_started: self.now(),
            failure: None,
            rollback_failure: None,
            snapshot: None,
            check: None,
            alert: None,
            timeline: Vec::new(),
            last_good_files: None,
            target_files: None,
        };
        let outcome = self.drive(&mut run, &mut journal, source).await?;
        complete(&run, report, &journal, outcome)
    }

    /// Picks last-good: the version the stack runs when it matches the
    /// record (or there is no record), the record otherwise unless the
    /// running version is healthy (an operator upgraded by hand after a
    /// hold: adopt it), or the version given.
    async fn choose_last_good(
        &self,
        spec: &AppSpec,
        request: &UpdateRequest,
        recorded: Option<&LastGood>,
        deployed: Option<&str>,
        run: &mut Run<'_>,
        notes: &mut Vec<String>,
    ) -> Result<(Option<String>, &'static str), ReconcileError> {
        let recorded_version = recorded.map(|r| r.version.as_str());
        Ok(match (request.last_good.as_deref(), recorded_version, deployed) {
            (Some(given), _, _) => (Some(given.to_owned()), "given"),
            (None, Some(r), Some(d)) if r == d => (Some(r.to_owned()), "recorded"),
            (None, Some(r), Some(d)) => {
                let (healthy, _) = self.health(run, spec, d).await;
                if healthy.is_ok() {
                    notes.push(format!(
                        "adopted {d} as last-good: the stack runs it and it is healthy, though the record said {r} \
                         (upgraded by hand?)"
                    ));
                    (Some(d.to_owned()), "adopted")
                } else {
                    notes.push(format!("the stack runs {d}, which is not healthy; last-good stays the recorded {r}"));
                    (Some(r.to_owned()), "recorded")
                }
            }
            (None, Some(r), None) => (Some(r.to_owned()), "recorded"),
            (None, None, Some(d)) => (Some(d.to_owned()), "deployed"),
            (None, None, None) => {
                if run.docker(self.platform.is_deployed(spec)).await? {
                    return Err(ReconcileError::UnknownLastGood {
                        app: spec.app.to_string(),
                        stack: spec.stack.clone(),
                    });
                }
                (None, "none")
            }
        })
    }

    /// `spec` with the node that holds its data on a multi-node swarm
    /// ([`crate::placement`]), or a refusal. The node goes into the
    /// journalled spec, so every deploy of this run, a resumed one's too, is
    /// checked against it (and pinned to it).
    async fn locate_data(
        &self,
        spec: &AppSpec,
        target: &str,
        run: &mut Run<'_>,
        report: &mut Report,
    ) -> Result<AppSpec, ReconcileError> {
        let data_node = run.docker(self.platform.locate_data(spec, target)).await?;
        if let Some(node) = &data_node {
            let pinning = if node.pin.is_empty() {
                String::new()
            } else {
                format!("; pinning {} there", node.pin.iter().cloned().collect::<Vec<_>>().join(", "))
            };
            report
                .notes
                .push(format!("the data of stack {} is on node {} ({}){pinning}", spec.stack, node.id, node.hostname));
        }
        Ok(AppSpec { data_node, ..spec.clone() })
    }

    /// Finishes or undoes the killed run of `app`, if there is one. With
    /// `abandon`, drops its journal instead and touches nothing (after an
    /// operator repaired the app by hand).
    pub async fn recover(&self, app: &AppName, abandon: bool) -> Result<Option<Report>, ReconcileError> {
        let (lock, took_over) = self.lock(app, "lkg-reconcile recover")?;
        let state = AppState::new(&self.state_dir, app.as_str());
        let Some(journal) = state.journal()? else {
            lock.release()?;
            return Ok(None);
        };
        if abandon {
            let run = Run::new(&self.state_dir, app.as_str(), &lock, Instant::now());
            let mut report = bare_report(Command::Recover, &journal.spec, &journal.target, Outcome::Abandoned);
            report.last_good = run.state.last_good()?.map(|l| l.version);
            report.previous_last_good.clone_from(&journal.last_good);
            report.resumed = Some(Resumed { run: journal.run.clone(), step: journal.step, pid: journal.pid });
            report.detail = Some(format!(
                "dropped the journal of run {} (at step {}) without touching the app",
                journal.run, journal.step
            ));
            state.clear_journal()?;
            return finish(&run, report, Vec::new()).map(Some);
        }
        let mut report = self.resume(journal, &lock).await?;
        lock.release()?;
        report.notes.extend(took_over);
        Ok(Some(report))
    }

    /// Resumes a killed run from its journal, under `lock`.
    async fn resume(&self, mut journal: Journal, lock: &AppLock) -> Result<Report, ReconcileError> {
        let started = Instant::now();
        let mut run = Run::new(&self.state_dir, journal.spec.app.as_str(), lock, started);
        let killed = Resumed { run: journal.run.clone(), step: journal.step, pid: journal.pid };
        let rollback_failed = journal.rollback_failure.is_some();
        let resume = flow::resume(journal.flow, journal.step, journal.failure.as_ref(), rollback_failed);
        self.note(&format!(
            "run {} of app {} was interrupted at step {}{}; {}",
            journal.run,
            journal.spec.app,
            journal.step,
            if rollback_failed { " (its rollback had failed)" } else { "" },
            if resume.abandon { "it had changed nothing".to_owned() } else { format!("resuming at {}", resume.step) }
        ));
        let spec = journal.spec.clone();
        let mut report = bare_report(Command::Recover, &spec, &journal.target, Outcome::Abandoned);
        report.previous_last_good.clone_from(&journal.last_good);
        report.resumed = Some(killed);
        if resume.abandon {
            report.last_good = run.state.last_good()?.map(|l| l.version);
            report.detail = Some(format!("run {} was killed before it changed anything; dropped it", journal.run));
            run.state.clear_journal()?;
            return finish(&run, report, Vec::new());
        }
        if let Some(failure) = resume.failure {
            journal.failure = Some(failure);
        }
        if rollback_failed {
            // The rollback-failed alert stays; a new attempt raises its own.
            journal.alert = None;
        }
        journal.rollback_failure = None;
        journal.step = resume.step;
        // The killed run's timings are relative to its own start.
        journal.timeline.clear();
        let outcome = self.drive(&mut run, &mut journal, "recorded").await?;
        complete(&run, report, &journal, outcome)
    }

    /// Tests `request.candidate` on the app's canonical: reattach it, upgrade
    /// it to the candidate, check; pass: undeploy keeping the volumes; fail:
    /// restore the known-good snapshot, undeploy. Never promotes.
    pub async fn quick(&self, spec: &AppSpec, request: &QuickRequest) -> Result<Report, ReconcileError> {
        let started = Instant::now();
        let candidate = request.candidate.as_str();
        check_version(candidate)?;
        let (lock, took_over) = self.lock(&spec.app, &format!("lkg-reconcile quick {candidate}"))?;
        let resolved = crate::recipe::resolve(&self.state_dir, spec, candidate).await?;
        let spec = &resolved;
        let mut run = Run::new(&self.state_dir, spec.app.as_str(), &lock, started);

        let interrupted = match run.state.journal()? {
            Some(journal) => Some(Box::new(self.resume(journal, &lock).await?)),
            None => None,
        };
        if let Some(previous) = interrupted.as_ref().filter(|r| r.outcome.keeps_journal()) {
            let mut report = bare_report(Command::Quick, spec, candidate, previous.outcome);
            report.detail = Some(format!("a killed run could not be undone; {candidate} was not tested"));
            report.interrupted_run = interrupted;
            return finish(&run, report, Vec::new());
        }
        if interrupted.is_some() {
            run.started = Instant::now();
        }

        let canonicals = Canonicals::new(&self.state_dir);
        let record = canonicals.get(&spec.app)?;
        let listed = record.as_ref().map(|r| r.volumes.clone()).unwrap_or_default();
        let existing = run.docker(self.platform.existing_volumes(&listed)).await?;
        let presence = Presence::of(record.as_ref(), |v| existing.contains(v));
        let Some(record) = record.filter(|_| presence.is_present()) else {
            return Err(ReconcileError::NoCanonical { app: spec.app.to_string(), why: presence.describe() });
        };
        let Some(snapshot) = run.docker(self.platform.current_snapshot(spec)).await? else {
            return Err(ReconcileError::NoSnapshot { app: spec.app.to_string() });
        };

        let mut report = bare_report(Command::Quick, spec, candidate, Outcome::Failed);
        report.previous_last_good = Some(record.version.clone());
        report.last_good = Some(record.version.clone());
        report.interrupted_run = interrupted;
        report.notes.extend(took_over);
        let mut journal = Journal {
            format: JOURNAL_FORMAT,
            run: new_run_id(self.now()),
            flow: Flow::Quick,
            spec: spec.clone(),
            target: candidate.to_owned(),
            last_good: Some(record.version.clone()),
            notes: None,
            started: self.now(),
            pid: std::process::id(),
            step: flow::first(Flow::Quick),
            step_started: self.now(),
            failure: None,
            rollback_failure: None,
            snapshot: Some(snapshot),
            check: request.check.clone(),
            alert: None,
            timeline: Vec::new(),
            last_good_files: None,
            target_files: None,
        };
        let outcome = self.drive(&mut run, &mut journal, "canonical").await?;
        complete(&run, report, &journal, outcome)
    }

    /// Walks the steps from `journal.step` until the run finishes.
    async fn drive(
        &self,
        run: &mut Run<'_>,
        journal: &mut Journal,
        source: &'static str,
    ) -> Result<Outcome, ReconcileError> {
        // (step, times run again after the engine came back)
        let mut retried = (journal.step, 0);
        loop {
            let step = journal.step;
            if retried.0 != step {
                retried = (step, 0);
            }
            journal.step_started = self.now();
            if step == Step::Alert && journal.alert.is_none() {
                journal.alert = Some(Alert::new(alert_facts(journal), self.now()).id);
            }
            run.state.write_journal(journal)?;
            let version = step_version(journal, step).to_owned();
            self.observer.report(&Event::Step { step, version: &version });
            let at = run.started.elapsed();
            let before = run.waits;
            let began = Instant::now();
            let result = self.execute(run, journal, step, source).await?;
            journal.timeline.push(StepTiming {
                step,
                ok: result.is_ok(),
                at_ms: millis(at),
                ms: millis(began.elapsed()),
                docker_ms: millis(run.waits.docker.saturating_sub(before.docker)),
                data_ms: millis(run.waits.data.saturating_sub(before.data)),
                health_ms: millis(run.waits.health.saturating_sub(before.health)),
            });
            if let Err(note) = &result
                && note.reason == Reason::Error
                && retried.1 < ENGINE_RETRIES
                && self.engine_came_back(step).await
            {
                retried.1 += 1;
                self.note(&format!(
                    "step {step} failed while the engine did not answer ({}); it answers again: {step} runs again",
                    note.detail
                ));
                continue;
            }
            let ok = match result {
                Ok(()) => true,
                Err(note) => {
                    self.note(&format!("step {step} failed ({}): {}", note.reason, note.detail));
                    if flow::undoes(journal.flow, step) {
                        journal.rollback_failure = Some(note);
                    } else if journal.failure.is_none() {
                        journal.failure = Some(note);
                    }
                    false
                }
            };
            let progress = flow::Progress {
                failure: journal.failure.as_ref(),
                rollback_failed: journal.rollback_failure.is_some(),
            };
            match flow::next(journal.flow, step, ok, progress) {
                Transition::Next(next) => journal.step = next,
                Transition::Finish(outcome) => {
                    if outcome.keeps_journal() {
                        run.state.write_journal(journal)?;
                    } else {
                        run.state.clear_journal()?;
                    }
                    return Ok(outcome);
                }
            }
        }
    }

    /// Runs one step. `Ok(Err(note))` is a failed step (the flow decides
    /// what follows); `Err` means the state directory failed, and the run
    /// stops with its journal in place.
    async fn execute(
        &self,
        run: &mut Run<'_>,
        journal: &mut Journal,
        step: Step,
        source: &'static str,
    ) -> Result<Result<(), FailureNote>, ReconcileError> {
        let spec = journal.spec.clone();
        let target = journal.target.clone();
        let last_good = journal.last_good.clone().unwrap_or_default();
        let fail = |reason: Reason, detail: String| Ok(Err(FailureNote { step, reason, detail }));
        let error = |e: &ReconcileError| {
            Ok(Err(FailureNote { step, reason: Reason::Error, detail: lkg_core::render_chain(e) }))
        };
        match step {
            Step::RecordLastGood => {
                self.record_last_good(run, journal, source)?;
                Ok(Ok(()))
            }
            Step::Undeploy | Step::UndeployFailed | Step::UndeployPassed => {
                let undeployed = run.docker(self.platform.undeploy(&spec)).await;
                if let Err(e) = undeployed {
                    return error(&e);
                }
                if journal.flow == Flow::Quick && step == Step::UndeployPassed {
                    Canonicals::new(&self.state_dir).set_status(run.lock, Status::Idle, self.now())?;
                }
                Ok(Ok(()))
            }
            Step::Snapshot => match run.data(self.platform.snapshot(&spec, &last_good)).await {
                Ok(taken) => {
                    journal.snapshot = Some(taken);
                    Ok(Ok(()))
                }
                Err(e) => error(&e),
            },
            Step::RestoreSnapshot => self.restore(run, journal).await,
            Step::DeployTarget | Step::DeployLastGood | Step::DeployCandidate | Step::Reattach => {
                let version = if matches!(step, Step::DeployLastGood | Step::Reattach) { &last_good } else { &target };
                if step == Step::Reattach {
                    Canonicals::new(&self.state_dir).set_status(run.lock, Status::Warm, self.now())?;
                }
                let mut spec = spec;
                match self.files_for(journal, step) {
                    Ok(Some(files)) => spec.compose = files,
                    Ok(None) => {}
                    Err(e) => return error(&e),
                }
                match run.docker(self.platform.deploy(&spec, version, self.observer)).await {
                    Ok(DeployOutcome::Converged { .. }) if step == Step::Reattach => {
                        // The canonical must be healthy before it can tell
                        // anything about the candidate.
                        match self.health(run, &spec, version).await {
                            (Ok(()), _) => Ok(Ok(())),
                            (Err(reason), _) => fail(Reason::Unhealthy, format!("the canonical {version}: {reason}")),
                        }
                    }
                    Ok(DeployOutcome::Converged { .. }) => Ok(Ok(())),
                    Ok(DeployOutcome::Failed { reason, detail }) => fail(reason, detail),
                    Err(e) => error(&e),
                }
            }
            Step::CheckHealth | Step::VerifyLastGood | Step::CheckCandidate => {
                let version = if step == Step::VerifyLastGood { &last_good } else { &target };
                if let (Err(reason), _) = self.health(run, &spec, version).await {
                    return fail(Reason::Unhealthy, reason);
                }
                if step == Step::CheckCandidate
                    && let Some(check) = &journal.check
                {
                    let started = Instant::now();
                    let result = self.platform.check(&spec, check, version).await;
                    run.waits.health += started.elapsed();
                    if !result.pass {
                        return fail(Reason::CheckFailed, format!("{}: {}", result.check, result.detail));
                    }
                }
                Ok(Ok(()))
            }
            Step::Commit => {
                run.state.set_last_good(
                    &LastGood::new(spec.app.as_str(), &spec.stack, &target, "health-gate", self.now())
                        .with_files(journal.target_files.clone()),
                )?;
                Ok(Ok(()))
            }
            Step::Alert => {
                let mut alert = Alert::new(alert_facts(journal), self.now());
                if let Some(id) = &journal.alert {
                    alert.id.clone_from(id);
                }
                run.alert = Some(self.raise(&run.alerts, alert, &spec).await?);
                Ok(Ok(()))
            }
        }
    }

    /// Records last-good as this run begins (if the record says otherwise)
    /// and takes the files it was deployed from into the journal: every
    /// rollback step deploys these, never this run's files.
    fn record_last_good(&self, run: &Run<'_>, journal: &mut Journal, source: &str) -> Result<(), ReconcileError> {
        let last_good = journal.last_good.clone().unwrap_or_default();
        let spec = &journal.spec;
        let current = run.state.last_good()?;
        journal.last_good_files = current.as_ref().filter(|c| c.version == last_good).and_then(|c| c.files.clone());
        if journal.last_good_files.is_none() && !last_good.is_empty() {
            self.note(&format!(
                "last-good {last_good} has no kept files (recorded before lkg kept them, or adopted): a rollback \
                 would deploy the files given for this run"
            ));
        }
        if current.as_ref().is_none_or(|c| c.version != last_good) {
            run.state.set_last_good(&LastGood::new(spec.app.as_str(), &spec.stack, &last_good, source, self.now()))?;
        }
        Ok(())
    }

    /// The compose files a deploy step uses, when not the spec's: the
    /// target's are kept first and deployed from the copy, so that what a
    /// later rollback redeploys is exactly what ran; last-good's come from
    /// their copy, checked against their checksums.
    fn files_for(&self, journal: &mut Journal, step: Step) -> Result<Option<Vec<PathBuf>>, ReconcileError> {
        let kept = match step {
            Step::DeployTarget => {
                let spec = &journal.spec;
                let kept = crate::kept::keep(&self.state_dir, &spec.app, &journal.target, &spec.compose)?;
                journal.target_files = Some(kept.clone());
                kept
            }
            Step::DeployLastGood | Step::Reattach => match &journal.last_good_files {
                Some(kept) => kept.clone(),
                None => return Ok(None),
            },
            _ => return Ok(None),
        };
        kept.verified().map(Some)
    }

    /// Restores the snapshot this run relies on, after checking the store
    /// still holds that one (and not a newer take of other data).
    async fn restore(&self, run: &mut Run<'_>, journal: &Journal) -> Result<Result<(), FailureNote>, ReconcileError> {
        let spec = &journal.spec;
        let error =
            |detail: String| Ok(Err(FailureNote { step: Step::RestoreSnapshot, reason: Reason::Error, detail }));
        let Some(expected) = journal.snapshot.clone() else {
            return error("this run took no snapshot, so there is nothing to restore".into());
        };
        let current = match run.docker(self.platform.current_snapshot(spec)).await {
            Ok(current) => current,
            Err(e) => return error(lkg_core::render_chain(&e)),
        };
        if current.as_ref().is_none_or(|c| c.ts != expected.ts || c.version != expected.version) {
            let found = current.map_or_else(
                || "no snapshot".to_owned(),
                |c| format!("version {} taken at {}", c.version.as_deref().unwrap_or("-"), c.ts),
            );
            let mismatch = ReconcileError::SnapshotMismatch {
                app: spec.app.to_string(),
                expected: expected.version.clone().unwrap_or_else(|| "-".into()),
                expected_ts: expected.ts.to_string(),
                found,
            };
            return error(mismatch.to_string());
        }
        if let Err(e) = run.data(self.platform.restore(spec)).await {
            return error(lkg_core::render_chain(&e));
        }
        run.data_restored = true;
        if journal.flow == Flow::Quick {
            Canonicals::new(&self.state_dir).set_status(run.lock, Status::Idle, self.now())?;
        }
        Ok(Ok(()))
    }

    /// Probes `version` until the health gate decides: `Ok` healthy, `Err` why not.
    async fn health(&self, run: &mut Run<'_>, spec: &AppSpec, version: &str) -> (Result<(), String>, ProbeRound) {
        let started = Instant::now();
        let mut gate = HealthGate::new(spec.health.passes, spec.health.deadline);
        let mut round = 0;
        let result = loop {
            round += 1;
            let probe = self.platform.probe(spec, version).await;
            let state = gate.observe(&probe, started.elapsed());
            let streak = match state {
                HealthState::Pending { streak } => streak,
                HealthState::Healthy { .. } => spec.health.passes,
                HealthState::Unhealthy { .. } => 0,
            };
            self.observer.report(&Event::Health { version, round, streak, probe: &probe });
            run.last_probe = Some(probe);
            match state {
                HealthState::Healthy { .. } => break Ok(()),
                HealthState::Unhealthy { reason } => break Err(reason),
                HealthState::Pending { .. } => tokio::time::sleep(spec.health.interval).await,
            }
        };
        run.waits.health += started.elapsed();
        (result, run.last_probe.clone().unwrap_or_default())
    }

    /// Writes the alert file, then sends it to every notification channel
    /// and rewrites it with how each took it. A channel that fails is a
    /// note, never an error of the run.
    async fn raise(&self, alerts: &Alerts, mut alert: Alert, spec: &AppSpec) -> Result<AlertRecord, ReconcileError> {
        let path = alerts.write(&alert)?;
        self.note(&format!("alert {} written to {}", alert.id, path.display()));
        if !spec.notify.is_empty() {
            alert.deliveries = self.notify(&alert, &spec.notify).await;
            for failed in alert.deliveries.iter().filter(|d| !d.delivered) {
                self.note(&format!(
                    "the channel {} did not take alert {} ({}); the alert file stays in {}",
                    failed.channel,
                    alert.id,
                    failed.error.as_deref().unwrap_or("no answer"),
                    alerts.dir().display()
                ));
            }
            alerts.write(&alert)?;
        }
        Ok(AlertRecord {
            id: alert.id.clone(),
            kind: alert.kind,
            path: path.display().to_string(),
            deliveries: alert.deliveries,
        })
    }

    /// One delivery per channel URL, in order. The spec checked every URL,
    /// but a journal written by another version may hold one this version
    /// refuses: its delivery says so instead of failing the run.
    async fn notify(&self, alert: &Alert, urls: &[String]) -> Vec<lkg_notify::Delivery> {
        let undelivered = |channel: String, error: String| lkg_notify::Delivery {
            channel,
            delivered: false,
            attempts: 0,
            error: Some(error),
            at: self.now(),
        };
        let mut channels = Vec::new();
        let mut refused = Vec::new();
        for (i, url) in urls.iter().enumerate() {
            match lkg_notify::Channel::parse(url) {
                Ok(channel) => channels.push((i, channel)),
                Err(e) => {
                    // The error names the URL as it may be shown; nothing else of it is.
                    let shown = match &e {
                        lkg_notify::NotifyError::InvalidUrl { url, .. }
                        | lkg_notify::NotifyError::UnknownScheme { url, .. } => url.clone(),
                        _ => "(invalid channel)".to_owned(),
                    };
                    refused.push((i, undelivered(shown, e.to_string())));
                }
            }
        }
        let order: Vec<(usize, String)> = channels.iter().map(|(i, c)| (*i, c.redacted())).collect();
        let (attempts, backoff) = self.notify_retries;
        let sent = match lkg_notify::Notifier::new(channels.into_iter().map(|(_, c)| c).collect()) {
            Ok(notifier) => notifier.retries(attempts, backoff).send(&alert.message(), self.clock).await,
            Err(e) => {
                let error = e.to_string();
                order.iter().map(|(_, shown)| undelivered(shown.clone(), error.clone())).collect()
            }
        };
        let mut deliveries: Vec<(usize, lkg_notify::Delivery)> =
            order.into_iter().map(|(i, _)| i).zip(sent).chain(refused).collect();
        deliveries.sort_by_key(|(i, _)| *i);
        deliveries.into_iter().map(|(_, d)| d).collect()
    }
}

/// The alert of a hold: what was held, why, and the release notes.
fn hold_facts(
    spec: &AppSpec,
    target: &str,
    last_good: Option<&str>,
    kind: crate::gate::HoldKind,
    reason: &str,
    notes: Option<&ReleaseNotes>,
) -> AlertFacts {
    AlertFacts {
        kind: kind.alert_kind(),
        app: spec.app.to_string(),
        stack: spec.stack.clone(),
        attempted: target.to_owned(),
        last_good: last_good.map(str::to_owned),
        recovered: None,
        reason: match kind {
            crate::gate::HoldKind::ManualMigration => "manual_migration".to_owned(),
            _ => "major".to_owned(),
        },
        detail: format!(
            "held by the safety gate: {reason}. Nothing was changed: {} still runs {}. Upgrade by hand (see the \
             release notes), then run `lkg-reconcile status --app {}`",
            spec.stack,
            last_good.unwrap_or("what it ran"),
            spec.app
        ),
        notes: notes.map(|n| n.text.clone()),
    }
}

fn alert_facts(journal: &Journal) -> AlertFacts {
    let spec = &journal.spec;
    let install = matches!(journal.flow, Flow::Update { install: true, .. });
    let rollback_failed = journal.rollback_failure.is_some();
    let kind = if rollback_failed {
        AlertKind::RollbackFailed
    } else if install {
        AlertKind::InstallFailed
    } else {
        AlertKind::Rollback
    };
    let failure = journal.failure.as_ref();
    let reason = failure.map_or(Reason::Error, |f| f.reason);
    let why =
        failure.map_or_else(|| "unknown".to_owned(), |f| format!("{} at step {}: {}", f.reason, f.step, f.detail));
    let last_good = journal.last_good.as_deref().unwrap_or("-");
    let detail = match kind {
        AlertKind::RollbackFailed => format!(
            "ROLLBACK FAILED: {} tried {} ({why}), then could not get {last_good} running healthy again: {}. \
             The app may be down. See `lkg-reconcile status --app {}`; after fixing the cause run \
             `lkg-reconcile recover --app {}` (or repair by hand and drop the run with `--abandon`)",
            spec.app,
            journal.target,
            journal
                .rollback_failure
                .as_ref()
                .map_or_else(String::new, |f| format!("{} at step {}: {}", f.reason, f.step, f.detail)),
            spec.app,
            spec.app
        ),
        AlertKind::InstallFailed => format!(
            "the first install of {} {} failed ({why}); its stack was undeployed, volumes kept",
            spec.app, journal.target
        ),
        _ if journal.flow == Flow::Quick => format!("quick run of {} failed ({why})", journal.target),
        _ => format!(
            "{} {} failed ({why}); rolled back to {last_good}{}, which passed its health checks. last-good stays {last_good}",
            spec.app,
            journal.target,
            if spec.stateful { " with the data snapshotted before the update" } else { "" }
        ),
    };
    AlertFacts {
        kind,
        app: spec.app.to_string(),
        stack: spec.stack.clone(),
        attempted: journal.target.clone(),
        last_good: journal.last_good.clone(),
        recovered: if install { None } else { Some(!rollback_failed) },
        reason: reason.as_str().to_owned(),
        detail,
        notes: journal.notes.clone(),
    }
}

fn bare_report(command: Command, spec: &AppSpec, target: &str, outcome: Outcome) -> Report {
    Report {
        command,
        app: spec.app.to_string(),
        stack: spec.stack.clone(),
        outcome,
        target: target.to_owned(),
        last_good: None,
        previous_last_good: None,
        reason: None,
        detail: None,
        recovered: None,
        data_restored: false,
        gate: None,
        alert: None,
        resumed: None,
        interrupted_run: None,
        last_probe: None,
        notes: Vec::new(),
        timeline: Timeline::default(),
    }
}

/// Fills the report of a run that walked its steps.
fn complete(run: &Run<'_>, mut report: Report, journal: &Journal, outcome: Outcome) -> Result<Report, ReconcileError> {
    report.outcome = outcome;
    report.last_good = match journal.flow {
        Flow::Quick => journal.last_good.clone(),
        Flow::Update { .. } => run.state.last_good()?.map(|l| l.version),
    };
    if report.previous_last_good.is_none() {
        report.previous_last_good.clone_from(&journal.last_good);
    }
    if let Some(failure) = &journal.failure {
        report.reason = Some(failure.reason);
        report.detail = Some(format!("{} at step {}: {}", failure.reason, failure.step, failure.detail));
    }
    if let Some(rollback) = &journal.rollback_failure {
        let text =
            format!("then the rollback failed: {} at step {}: {}", rollback.reason, rollback.step, rollback.detail);
        report.detail = Some(match report.detail.take() {
            Some(first) => format!("{first}; {text}"),
            None => text,
        });
    }
    report.recovered = match outcome {
        Outcome::RolledBack => Some(true),
        Outcome::RollbackFailed | Outcome::RestoreFailed => Some(false),
        _ => None,
    };
    if outcome == Outcome::Upgraded || outcome == Outcome::Installed {
        report.detail = Some(format!("{} runs {} and passed its health gate", report.stack, journal.target));
    }
    finish(run, report, journal.timeline.clone())
}

fn finish(run: &Run<'_>, mut report: Report, steps: Vec<StepTiming>) -> Result<Report, ReconcileError> {
    report.data_restored |= run.data_restored;
    if report.alert.is_none() {
        report.alert.clone_from(&run.alert);
    }
    if report.last_probe.is_none() {
        report.last_probe.clone_from(&run.last_probe);
    }
    report.timeline = Timeline::close(steps, run.started.elapsed(), run.waits);
    run.state.set_last_run(&report)?;
    Ok(report)
}

fn step_version(journal: &Journal, step: Step) -> &str {
    match step {
        Step::RecordLastGood
        | Step::Undeploy
        | Step::Snapshot
        | Step::DeployLastGood
        | Step::VerifyLastGood
        | Step::Reattach => journal.last_good.as_deref().unwrap_or("-"),
        _ => &journal.target,
    }
}

fn new_run_id(now: jiff::Timestamp) -> String {
    format!("run-{}-{:08x}", crate::alert::compact(now), crate::random_u64() & 0xffff_ffff)
}

impl<'r> Run<'r> {
    fn new(state_dir: &Path, app: &str, lock: &'r AppLock, started: Instant) -> Run<'r> {
        Run {
            state: AppState::new(state_dir, app),
            alerts: Alerts::new(state_dir),
            lock,
            started,
            waits: Waits::default(),
            data_restored: false,
            last_probe: None,
            alert: None,
        }
    }

    /// Awaits an engine call, counting the time as waiting on Docker.
    async fn docker<T>(&mut self, call: impl std::future::Future<Output = T>) -> T {
        let started = Instant::now();
        let out = call.await;
        self.waits.docker += started.elapsed();
        out
    }

    /// Awaits a snapshot or restore, counting the time as a data copy.
    async fn data<T>(&mut self, call: impl std::future::Future<Output = T>) -> T {
        let started = Instant::now();
        let out = call.await;
        self.waits.data += started.elapsed();
        out
    }
}
