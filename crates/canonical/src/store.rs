//! The records on disk: `<state-dir>/apps/<app>/canonical.json`, written
//! atomically, changed only under the app's lock.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;
use serde_json::Value;

use lkg_core::AppName;
use lkg_core::state_file::{self, StateFileError};
use lkg_core::{Classify, FailureKind};

use crate::domain::{DomainError, DomainScheme};
use crate::lock::{AppLock, Holder, LOCKS_VAR, LockError, inherited_lock, read_holder};
use crate::promotion::{PromotionVerdict, Refusal, Run, decide_promotion};
use crate::record::{Record, SCHEMA_VERSION, Status};

const RECORD_FILE: &str = "canonical.json";
const LOCK_FILE: &str = "lock";

/// The canonical records under a state directory.
///
/// Reads need nothing; every change takes an [`AppLock`] for its app, so that
/// two runs never interleave their read-modify-write of one record.
///
/// ```
/// use lkg_canonical::{AppName, Canonicals};
/// use std::time::Duration;
///
/// let state = tempfile::tempdir()?;
/// let canonicals = Canonicals::new(state.path());
/// let gitea = AppName::new("gitea")?;
/// assert!(canonicals.get(&gitea)?.is_none());
/// let lock = canonicals.lock(&gitea, "example", Duration::ZERO, |_| {})?;
/// assert_eq!(canonicals.forget(&lock)?, None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Canonicals {
    apps: PathBuf,
}

/// Why a record could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file-system operation failed.
    #[error("cannot {action} {path}")]
    Io {
        /// What lkg was doing.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The record is not valid JSON or lacks a required field.
    #[error(
        "canonical record {path} is malformed: {source}; repair it by hand, or drop it with \
         `lkg-canonical forget {app}` (its volumes are left alone)"
    )]
    Malformed {
        /// The app whose directory holds it.
        app: AppName,
        /// The record file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The record was written by a newer lkg.
    #[error(
        "canonical record {path} has schema_version {found}, newer than the {supported} this lkg understands; \
         upgrade lkg rather than let an older one rewrite it"
    )]
    NewerSchema {
        /// The record file.
        path: PathBuf,
        /// Its schema version.
        found: u64,
        /// The newest this crate reads.
        supported: u32,
    },
    /// The record names another app than the directory it is in.
    #[error("canonical record {path} is for app {found}, but it is in the directory of app {expected}")]
    WrongApp {
        /// The record file.
        path: PathBuf,
        /// The directory's app.
        expected: AppName,
        /// The record's app.
        found: AppName,
    },
    /// A change was attempted under another app's lock.
    #[error("a change to the canonical of {app} needs the lock of {app}, not of {locked}")]
    WrongLock {
        /// The app being changed.
        app: AppName,
        /// The app whose lock was given.
        locked: AppName,
    },
    /// The app has no canonical record.
    #[error("app {app} has no canonical (no {path})")]
    NoRecord {
        /// The app.
        app: AppName,
        /// Where the record would be.
        path: PathBuf,
    },
}

/// Why a promotion could not be carried out (a refusal by the rules is not
/// an error: it is [`PromotionOutcome::Refused`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PromoteError {
    /// Reading or writing the record failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The domain collides with a reserved name, or cannot be derived.
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// Seeding a canonical needs a domain scheme.
    #[error("app {app} has no canonical yet, so its domain must be derived: give a base domain (--base-domain)")]
    NoScheme {
        /// The app.
        app: AppName,
    },
    /// A canonical needs its volumes: seeding without them, or advancing a
    /// record that lists none (the harness's records did not).
    #[error(
        "the canonical of {app} would list no volumes: name the volumes that hold its data (--volume), since \
         has_canonical checks that they still exist"
    )]
    NoVolumes {
        /// The app.
        app: AppName,
    },
    /// The version cannot name a deployment.
    #[error(transparent)]
    Version(#[from] crate::version::InvalidVersion),
    /// The commit is not a commit id.
    #[error("invalid commit {commit:?}: give the commit id (1 to 64 letters and digits, as git prints it)")]
    Commit {
        /// The text given, at most 80 characters of it.
        commit: String,
    },
    /// A volume name the Docker engine would refuse.
    #[error("invalid volume name {volume:?}: {}", lkg_core::DOCKER_NAME_RULE)]
    Volume {
        /// The name given, at most 80 characters of it.
        volume: String,
    },
    /// The scheme derives another domain than the canonical lives at.
    #[error(
        "the canonical of {app} lives at {recorded}, but the domain scheme now derives {derived}; a promotion \
         does not move a canonical: use the namespace it was created with, or forget it (and remove its \
         stack) to seed it anew at {derived}"
    )]
    DomainMoved {
        /// The app.
        app: AppName,
        /// The record's domain.
        recorded: String,
        /// What the scheme derives.
        derived: String,
    },
}

/// What [`Canonicals::all_checked`] could read, and what it could not.
#[derive(Debug)]
pub struct Readable {
    /// The records that read, by app name.
    pub records: Vec<Record>,
    /// Each app whose record could not be read, with why.
    pub unreadable: Vec<(AppName, StoreError)>,
}

/// What a run that asks to promote brings.
#[derive(Debug, Clone)]
pub struct PromotionRequest<'a> {
    /// The version the run tested.
    pub version: String,
    /// Its commit.
    pub commit: String,
    /// The facts the rules decide on.
    pub run: Run,
    /// How to derive and check the domain; required to seed a canonical.
    pub scheme: Option<&'a DomainScheme>,
    /// The canonical's volumes; empty keeps those of the current record.
    pub volumes: Vec<String>,
    /// The status to record (`warm` when the run leaves the canonical deployed).
    pub status: Status,
    /// Now.
    pub now: Timestamp,
}

impl PromotionRequest<'_> {
    /// Checks what the request would record: a version that can name a
    /// deployment, a commit id, Docker volume names. A record is read back
    /// by later runs (upgrade-base, reconcile), so nothing else is written.
    pub fn check(&self) -> Result<(), PromoteError> {
        crate::version::check_version(&self.version)?;
        let commit = &self.commit;
        if commit.is_empty() || commit.len() > 64 || !commit.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(PromoteError::Commit { commit: lkg_core::clip(commit) });
        }
        if let Some(volume) = self.volumes.iter().find(|v| !lkg_core::is_docker_name(v)) {
            return Err(PromoteError::Volume { volume: lkg_core::clip(volume) });
        }
        Ok(())
    }
}

/// What a promotion did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "lowercase")]
#[allow(clippy::large_enum_variant)] // made once per promotion: boxing would only make matching clumsier
pub enum PromotionOutcome {
    /// The app had no canonical; this run's version is now its canonical.
    Seeded {
        /// The new record.
        record: Record,
    },
    /// The canonical moved to this run's version.
    Advanced {
        /// The record before.
        previous: Record,
        /// The record now.
        record: Record,
    },
    /// The rules refused; nothing was written.
    Refused {
        /// The version the run asked to promote.
        version: String,
        /// Its commit.
        commit: String,
        /// Every condition that failed.
        refusals: Vec<Refusal>,
        /// The canonical, unchanged (if any).
        current: Option<Record>,
    },
}

impl Canonicals {
    /// The records under `state_dir` (in `state_dir/apps/`). Does no I/O.
    pub fn new(state_dir: &Path) -> Canonicals {
        Canonicals { apps: state_dir.join("apps") }
    }

    /// `<state-dir>/apps/<app>`.
    pub fn app_dir(&self, app: &AppName) -> PathBuf {
        self.apps.join(app.as_str())
    }

    /// `<state-dir>/apps/<app>/canonical.json`.
    pub fn record_path(&self, app: &AppName) -> PathBuf {
        self.app_dir(app).join(RECORD_FILE)
    }

    /// `<state-dir>/apps/<app>/lock`.
    pub fn lock_path(&self, app: &AppName) -> PathBuf {
        self.app_dir(app).join(LOCK_FILE)
    }

    /// The app's record, if it has one.
    pub fn get(&self, app: &AppName) -> Result<Option<Record>, StoreError> {
        let path = self.record_path(app);
        let Some(text) = state_file::read(&path)? else { return Ok(None) };
        let malformed = |source| StoreError::Malformed { app: app.clone(), path: path.clone(), source };
        let value: Value = serde_json::from_slice(&text).map_err(malformed)?;
        if let Some(found) = value.get("schema_version").and_then(Value::as_u64).filter(|v| *v > SCHEMA_VERSION.into())
        {
            return Err(StoreError::NewerSchema { path, found, supported: SCHEMA_VERSION });
        }
        let record: Record = serde_json::from_value(value).map_err(malformed)?;
        if &record.app != app {
            return Err(StoreError::WrongApp { path, expected: app.clone(), found: record.app });
        }
        Ok(Some(record))
    }

    /// Every app's record, by app name. Directories that are not app names or
    /// hold no record (an app whose canonical was forgotten) are passed over.
    pub fn all(&self) -> Result<Vec<Record>, StoreError> {
        let mut records = Vec::new();
        for app in self.app_names()? {
            if let Some(record) = self.get(&app)? {
                records.push(record);
            }
        }
        Ok(records)
    }

    /// Every record that can be read, and the error of each app whose record
    /// cannot (damaged, foreign, newer): one bad record never hides the rest.
    pub fn all_checked(&self) -> Result<Readable, StoreError> {
        let mut records = Vec::new();
        let mut unreadable = Vec::new();
        for app in self.app_names()? {
            match self.get(&app) {
                Ok(Some(record)) => records.push(record),
                Ok(None) => {}
                Err(e @ StoreError::Io { .. }) => return Err(e),
                Err(e) => unreadable.push((app, e)),
            }
        }
        Ok(Readable { records, unreadable })
    }

    /// The app directories under the state dir whose names are app names, sorted.
    #[allow(clippy::disallowed_methods, reason = "its errors carry the path as a field")]
    fn app_names(&self) -> Result<Vec<AppName>, StoreError> {
        let entries = match std::fs::read_dir(&self.apps) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(StoreError::Io { action: "list", path: self.apps.clone(), source }),
        };
        let mut apps = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| StoreError::Io { action: "list", path: self.apps.clone(), source })?;
            if let Some(app) = entry.file_name().to_str().and_then(|n| AppName::new(n).ok()) {
                apps.push(app);
            }
        }
        apps.sort();
        Ok(apps)
    }

    /// Takes the app's lock (see [`AppLock`]), waiting up to `wait`.
    /// `purpose` tells a refused run what the holder is doing.
    #[allow(clippy::disallowed_methods, reason = "its errors carry the path as a field")]
    pub fn lock(
        &self,
        app: &AppName,
        purpose: &str,
        wait: Duration,
        on_wait: impl FnMut(&Holder),
    ) -> Result<AppLock, LockError> {
        let dir = self.app_dir(app);
        std::fs::create_dir_all(&dir).map_err(|source| LockError::Io { path: dir, source })?;
        AppLock::acquire(self.lock_path(app), app, purpose, wait, on_wait)
    }

    /// Takes the app's lock like [`lock`](Canonicals::lock), unless an
    /// enclosing process holds it for this one: when [`LOCKS_VAR`] names the
    /// app (as `lkg-canonical lock APP -- CMD` does for CMD), joins that
    /// holding instead of waiting for it. Every lkg command that changes an
    /// app takes its lock this way, so any of them can run inside
    /// `lkg-canonical lock`.
    pub fn lock_or_join(
        &self,
        app: &AppName,
        purpose: &str,
        wait: Duration,
        on_wait: impl FnMut(&Holder),
    ) -> Result<AppLock, LockError> {
        match inherited_lock(std::env::var(LOCKS_VAR).ok().as_deref(), app) {
            Some(id) => self.join_lock(app, &id),
            None => self.lock(app, purpose, wait, on_wait),
        }
    }

    /// Joins the app's lock held by an enclosing process under holding id
    /// `id` (see [`AppLock::share_with_children`]); fails unless that
    /// holding is the current one.
    pub fn join_lock(&self, app: &AppName, id: &str) -> Result<AppLock, LockError> {
        AppLock::join(self.lock_path(app), app, id)
    }

    /// Who holds the app's lock, if anyone does; does not take it.
    #[allow(clippy::disallowed_methods, reason = "the lock needs a std File; its errors carry the path as a field")]
    pub fn lock_holder(&self, app: &AppName) -> Result<Option<Holder>, LockError> {
        let path = self.lock_path(app);
        let file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(LockError::Io { path, source }),
        };
        match file.try_lock_shared() {
            Ok(()) => Ok(None),
            Err(std::fs::TryLockError::WouldBlock) => Ok(Some(read_holder(&path))),
            Err(std::fs::TryLockError::Error(source)) => Err(LockError::Io { path, source }),
        }
    }

    /// Writes `record` to a temp file next to the record and syncs it, without
    /// replacing the record yet: [`StagedRecord::commit`] does that with one
    /// rename. A crash before the commit leaves the old record in place.
    ///
    /// # Panics
    ///
    /// Never in practice: a [`Record`] always serialises to JSON.
    pub fn stage(&self, lock: &AppLock, record: &Record) -> Result<StagedRecord, StoreError> {
        check_lock(lock, &record.app)?;
        let path = self.record_path(&record.app);
        // Temp files of a writer that died between writing and renaming: we
        // hold the app's lock, so no live writer owns them.
        state_file::remove_stale_temps(&path)?;
        let mut record = record.clone();
        record.schema_version = SCHEMA_VERSION;
        let text = state_file::to_json(&path, &record).expect("a record serialises");
        Ok(StagedRecord(state_file::stage(&path, &text, state_file::Mode::Shared)?))
    }

    /// Replaces the app's record with `record`, atomically.
    pub fn put(&self, lock: &AppLock, record: &Record) -> Result<(), StoreError> {
        self.stage(lock, record)?.commit()
    }

    /// Removes the app's record; returns it. The volumes it lists are left
    /// alone (removing data is the operator's call).
    pub fn forget(&self, lock: &AppLock) -> Result<Option<Record>, StoreError> {
        let app = lock.app();
        // A record too broken to read can still be forgotten.
        let record = match self.get(app) {
            Ok(record) => record,
            Err(StoreError::Malformed { .. } | StoreError::WrongApp { .. }) => None,
            Err(e) => return Err(e),
        };
        let path = self.record_path(app);
        state_file::remove(&path)?;
        Ok(record)
    }

    /// The app's record; [`StoreError::NoRecord`] when it has none. Commands
    /// that only change an existing record ask this before taking the lock,
    /// so that refusing them leaves nothing behind (the lock would create
    /// the app's directory).
    pub fn existing(&self, app: &AppName) -> Result<Record, StoreError> {
        self.get(app)?.ok_or_else(|| StoreError::NoRecord { app: app.clone(), path: self.record_path(app) })
    }

    /// Sets the canonical's status (`warm` after a deploy, `idle` after an
    /// undeploy that kept the volumes); returns the new record.
    pub fn set_status(&self, lock: &AppLock, status: Status, now: Timestamp) -> Result<Record, StoreError> {
        let mut record = self.existing(lock.app())?;
        if record.status != status {
            record.status = status;
            record.status_since = Some(now);
        }
        self.put(lock, &record)?;
        Ok(record)
    }

    /// The outcome of `request` when it is bad input (an error) or the
    /// promotion rules refuse its run (`Some(Refused)`), decided without the
    /// lock: a refused promotion changes nothing, so it need not take the
    /// lock, which would create the app's directory. `None`: the rules
    /// allow it, and [`promote`](Canonicals::promote) decides the rest.
    pub fn refusal(
        &self,
        app: &AppName,
        request: &PromotionRequest<'_>,
    ) -> Result<Option<PromotionOutcome>, PromoteError> {
        request.check()?;
        let PromotionVerdict::Refuse(refusals) = decide_promotion(&request.run) else { return Ok(None) };
        Ok(Some(PromotionOutcome::Refused {
            version: request.version.clone(),
            commit: request.commit.clone(),
            refusals,
            current: self.get(app)?,
        }))
    }

    /// Applies the promotion rules ([`decide_promotion`]) to a run and, when
    /// they allow it, seeds or advances the canonical. Fields of the current
    /// record that this crate does not know are kept.
    pub fn promote(&self, lock: &AppLock, request: &PromotionRequest<'_>) -> Result<PromotionOutcome, PromoteError> {
        if let Some(refused) = self.refusal(lock.app(), request)? {
            return Ok(refused);
        }
        let app = lock.app();
        let current = self.get(app)?;
        let Some(previous) = current else {
            let scheme = request.scheme.ok_or_else(|| PromoteError::NoScheme { app: app.clone() })?;
            if request.volumes.is_empty() {
                return Err(PromoteError::NoVolumes { app: app.clone() });
            }
            let record = Record::new(
                app.clone(),
                scheme.domain_for(app)?,
                request.version.clone(),
                request.commit.clone(),
                request.status,
                request.now,
                request.volumes.clone(),
            );
            self.put(lock, &record)?;
            return Ok(PromotionOutcome::Seeded { record });
        };
        if let Some(scheme) = request.scheme {
            scheme.check(app, &previous.domain)?;
            let derived = scheme.domain_for(app)?;
            if derived != previous.domain.to_ascii_lowercase() {
                return Err(PromoteError::DomainMoved { app: app.clone(), recorded: previous.domain, derived });
            }
        }
        let mut record = previous.clone();
        record.version.clone_from(&request.version);
        record.commit.clone_from(&request.commit);
        record.status = request.status;
        record.ts = request.now;
        record.status_since = None;
        if !request.volumes.is_empty() {
            record.volumes.clone_from(&request.volumes);
        }
        if record.volumes.is_empty() {
            return Err(PromoteError::NoVolumes { app: app.clone() });
        }
        self.put(lock, &record)?;
        Ok(PromotionOutcome::Advanced { previous, record })
    }
}

fn check_lock(lock: &AppLock, app: &AppName) -> Result<(), StoreError> {
    if lock.app() == app { Ok(()) } else { Err(StoreError::WrongLock { app: app.clone(), locked: lock.app().clone() }) }
}

/// A record written to its temp file and not yet in place. Dropping it
/// without [`commit`](StagedRecord::commit) removes the temp file.
#[derive(Debug)]
#[must_use = "a staged record replaces nothing until it is committed"]
pub struct StagedRecord(state_file::Staged);

impl StagedRecord {
    /// The temp file holding the new record.
    pub fn temp_path(&self) -> &Path {
        self.0.temp_path()
    }

    /// Renames the temp file over the record and syncs the directory.
    pub fn commit(self) -> Result<(), StoreError> {
        Ok(self.0.commit()?)
    }
}

impl From<StateFileError> for StoreError {
    fn from(error: StateFileError) -> StoreError {
        match error {
            StateFileError::Io { action, path, source } => StoreError::Io { action, path, source },
            // The shared writer reports a format error only for JSON it
            // serialises or parses itself; the store parses its own records.
            other => StoreError::Io {
                action: "write",
                path: other.path().to_owned(),
                source: std::io::Error::other(other.to_string()),
            },
        }
    }
}

impl Classify for StoreError {
    fn kind(&self) -> FailureKind {
        match self {
            StoreError::Io { .. } => FailureKind::Environment,
            // A damaged, foreign or missing record, or the wrong lock: fix the input.
            _ => FailureKind::Input,
        }
    }
}

impl Classify for PromoteError {
    fn kind(&self) -> FailureKind {
        match self {
            PromoteError::Store(e) => e.kind(),
            PromoteError::Domain(e) => e.kind(),
            _ => FailureKind::Input,
        }
    }
}
