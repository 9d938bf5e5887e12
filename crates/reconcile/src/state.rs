//! What reconcile keeps per app under `<state-dir>/apps/<app>/reconcile/`:
//!
//! ```text
//! journal.json     the run in progress: its plan and the step it is at (absent when none)
//! last-good.json   the version known to run healthy, and where that knowledge came from
//! last-run.json    the report of the last run that finished
//! ```
//!
//! The journal is written before each step starts, so after a kill it names
//! the step that may be half done. Every file is written atomically.

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::error::ReconcileError;
use crate::files::{read_json, remove, write_json};
use crate::flow::{FailureNote, Flow, Step};
use crate::kept::DeployedFiles;
use crate::report::{Report, StepTiming};
use crate::spec::AppSpec;

/// The journal format this crate writes; a journal of another format is refused.
pub const JOURNAL_FORMAT: u32 = 1;

/// The journal of a run: enough to finish or undo it without the command
/// line that started it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Journal {
    /// [`JOURNAL_FORMAT`].
    pub format: u32,
    /// This run's id.
    pub run: String,
    /// The sequence of steps.
    pub flow: Flow,
    /// How to deploy and check the app.
    pub spec: AppSpec,
    /// The version being deployed (the target, or the quick candidate).
    pub target: String,
    /// The version to go back to (the canonical's, in quick mode).
    pub last_good: Option<String>,
    /// The release notes of the target, for the alert.
    pub notes: Option<String>,
    /// When the run began.
    #[serde(with = "crate::alert::ts")]
    pub started: Timestamp,
    /// The process running it.
    pub pid: u32,
    /// The step in progress.
    pub step: Step,
    /// When that step began.
    #[serde(with = "crate::alert::ts")]
    pub step_started: Timestamp,
    /// The failure that started the rollback.
    pub failure: Option<FailureNote>,
    /// A rollback step that failed.
    pub rollback_failure: Option<FailureNote>,
    /// The snapshot this run took (stateful updates), or restores (quick).
    pub snapshot: Option<SnapshotRef>,
    /// Quick mode: the user's check command.
    pub check: Option<String>,
    /// The alert written, once written.
    pub alert: Option<String>,
    /// The steps finished so far, with their timings.
    pub timeline: Vec<StepTiming>,
    /// The files last-good runs from, as kept when it was deployed: what
    /// every rollback step (and `recover`) deploys. `None` when last-good was
    /// recorded without them (by an older lkg, or adopted from the stack's
    /// label): then the files given for this run are deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_good_files: Option<DeployedFiles>,
    /// The target's files, kept before it was deployed from them; last-good's
    /// once the target is committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_files: Option<DeployedFiles>,
}

/// Which snapshot a run relies on: it restores only that one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRef {
    /// The version recorded in its meta.json.
    pub version: Option<String>,
    /// When it was taken (its meta.json `ts`).
    #[serde(with = "crate::alert::ts")]
    pub ts: Timestamp,
    /// Where it is.
    pub location: String,
}

/// The last-good version of an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LastGood {
    /// The app.
    pub app: String,
    /// Its stack.
    pub stack: String,
    /// The version.
    pub version: String,
    /// When it became last-good.
    #[serde(with = "crate::alert::ts")]
    pub since: Timestamp,
    /// How lkg knows: `health-gate` (an update passed it), `recorded` (the
    /// record an update began with), `deployed` (the stack's identity label,
    /// with no record), `adopted` (a healthy version an operator deployed by
    /// hand over the record), `given` (--last-good).
    pub source: String,
    /// The files it was deployed from, kept under the state dir; a rollback
    /// deploys exactly these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<DeployedFiles>,
}

impl LastGood {
    /// A record made at `since`.
    pub fn new(app: &str, stack: &str, version: &str, source: &str, since: jiff::Timestamp) -> LastGood {
        LastGood {
            app: app.to_owned(),
            stack: stack.to_owned(),
            version: version.to_owned(),
            since,
            source: source.to_owned(),
            files: None,
        }
    }

    /// The same record, with the files it was deployed from.
    #[must_use]
    pub fn with_files(mut self, files: Option<DeployedFiles>) -> LastGood {
        self.files = files;
        self
    }
}

/// The reconcile state of one app.
#[derive(Debug, Clone)]
pub struct AppState {
    dir: PathBuf,
}

impl AppState {
    /// The state of `app` under `state_dir`.
    pub fn new(state_dir: &Path, app: &str) -> AppState {
        AppState { dir: state_dir.join("apps").join(app).join("reconcile") }
    }

    /// `<state-dir>/apps/<app>/reconcile`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The journal file.
    pub fn journal_path(&self) -> PathBuf {
        self.dir.join("journal.json")
    }

    /// The run in progress (or interrupted), if any.
    pub fn journal(&self) -> Result<Option<Journal>, ReconcileError> {
        let path = self.journal_path();
        let journal: Option<Journal> = read_json(&path)?;
        match journal {
            Some(j) if j.format != JOURNAL_FORMAT => Err(ReconcileError::StateFormat {
                path,
                reason: format!("journal format {} (this lkg reads {JOURNAL_FORMAT})", j.format),
            }),
            other => Ok(other),
        }
    }

    /// Records the step about to start.
    pub fn write_journal(&self, journal: &Journal) -> Result<(), ReconcileError> {
        write_json(&self.journal_path(), journal)
    }

    /// Removes the journal of a finished run.
    pub fn clear_journal(&self) -> Result<(), ReconcileError> {
        remove(&self.journal_path())
    }

    /// The last-good record.
    pub fn last_good(&self) -> Result<Option<LastGood>, ReconcileError> {
        read_json(&self.dir.join("last-good.json"))
    }

    /// Replaces the last-good record.
    pub fn set_last_good(&self, last_good: &LastGood) -> Result<(), ReconcileError> {
        write_json(&self.dir.join("last-good.json"), last_good)
    }

    /// The report of the last finished run.
    pub fn last_run(&self) -> Result<Option<Report>, ReconcileError> {
        read_json(&self.dir.join("last-run.json"))
    }

    /// Keeps the report of a finished run.
    pub fn set_last_run(&self, report: &Report) -> Result<(), ReconcileError> {
        write_json(&self.dir.join("last-run.json"), report)
    }
}

/// What lkg knows about an app, from its state files alone.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct AppStatus {
    /// The app.
    pub app: String,
    /// Its last-good record.
    pub last_good: Option<LastGood>,
    /// A run in progress, or one that was killed (or whose rollback failed)
    /// and waits for `recover`.
    pub journal: Option<JournalSummary>,
    /// Who holds the app's lock now, if anyone.
    pub lock: Option<lkg_canonical::Holder>,
    /// The report of the last finished run.
    pub last_run: Option<Report>,
    /// Alerts not acknowledged yet.
    pub open_alerts: Vec<String>,
    /// The version the app's stack runs now, by its deploy label: filled in
    /// by [`status`] when it could ask the engine, else `None`.
    pub deployed: Option<String>,
}

/// The part of a journal an operator needs.
#[derive(Debug, Clone, Serialize)]
pub struct JournalSummary {
    /// The run.
    pub run: String,
    /// Its flow.
    pub flow: Flow,
    /// Its stack.
    pub stack: String,
    /// The version it deploys.
    pub target: String,
    /// The version it goes back to.
    pub last_good: Option<String>,
    /// The step in progress.
    pub step: Step,
    /// Since when.
    #[serde(with = "crate::alert::ts")]
    pub step_started: Timestamp,
    /// Its process.
    pub pid: u32,
    /// The failure being undone.
    pub failure: Option<FailureNote>,
    /// A failed rollback step.
    pub rollback_failure: Option<FailureNote>,
}

/// The status of `app` under `state_dir`.
pub fn app_status(state_dir: &Path, app: &lkg_canonical::AppName) -> Result<AppStatus, ReconcileError> {
    let state = AppState::new(state_dir, app.as_str());
    let journal = state.journal()?.map(|j| JournalSummary {
        run: j.run,
        flow: j.flow,
        stack: j.spec.stack,
        target: j.target,
        last_good: j.last_good,
        step: j.step,
        step_started: j.step_started,
        pid: j.pid,
        failure: j.failure,
        rollback_failure: j.rollback_failure,
    });
    let lock = lkg_canonical::Canonicals::new(state_dir).lock_holder(app)?;
    let open_alerts =
        crate::alert::Alerts::new(state_dir).list(Some(app.as_str()), false)?.into_iter().map(|l| l.alert.id).collect();
    Ok(AppStatus {
        app: app.to_string(),
        last_good: state.last_good()?,
        journal,
        lock,
        last_run: state.last_run()?,
        open_alerts,
        deployed: None,
    })
}

/// [`app_status`] plus the version the app's stack runs now, asked of the
/// engine through `platform` (`None`: the engine is not reachable, and
/// `deployed` stays unknown). The stack is the run's in progress, else
/// last-good's.
pub async fn status(
    state_dir: &Path,
    app: &lkg_canonical::AppName,
    platform: Option<&crate::SwarmPlatform>,
) -> Result<AppStatus, ReconcileError> {
    let mut status = app_status(state_dir, app)?;
    let stack =
        status.journal.as_ref().map(|j| j.stack.clone()).or_else(|| status.last_good.as_ref().map(|l| l.stack.clone()));
    if let (Some(platform), Some(stack)) = (platform, stack) {
        let deployed = platform.swarm().identity(&stack, None).await.ok().and_then(|i| i.version);
        status.deployed = Some(deployed.unwrap_or_else(|| "(not deployed, or unlabelled)".to_owned()));
    }
    Ok(status)
}

/// The apps with reconcile state under `state_dir`, sorted.
#[allow(clippy::disallowed_methods, reason = "its errors carry the path as a field")]
pub fn reconciled_apps(state_dir: &Path) -> Result<Vec<lkg_canonical::AppName>, ReconcileError> {
    let dir = state_dir.join("apps");
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(crate::files::state_io("list", &dir, source)),
    };
    let mut apps = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| crate::files::state_io("list", &dir, source))?;
        let Some(app) = entry.file_name().to_str().and_then(|n| lkg_canonical::AppName::new(n).ok()) else { continue };
        if entry.path().join("reconcile").is_dir() {
            apps.push(app);
        }
    }
    apps.sort();
    Ok(apps)
}
