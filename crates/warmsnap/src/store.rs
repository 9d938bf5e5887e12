//! Where snapshots are kept: the [`Store`] trait and [`LocalStore`], a
//! directory under the state dir.
//!
//! The local layout, under `<state-dir>/apps/<app>/`:
//!
//! ```text
//! snapshot -> snapshots/<gen>       the last-known-good (a symlink, swapped atomically)
//! snapshots/<gen>/meta.json         a complete, verified snapshot
//! snapshots/<gen>/volumes/<volume>.tar
//! snapshots/.staging-<gen>/         a take in progress (or one that was killed)
//! snapshots/.lock                   flock: shared for readers, exclusive for take and restore
//! .snapshot-<gen>.link              the new symlink, for an instant before it is renamed
//! ```
//!
//! `rename(2)` cannot replace a non-empty directory, but it replaces a
//! symlink atomically: readers always resolve `snapshot` to one complete
//! generation, the old one until the rename and the new one after it. A
//! crash leaves at most a staging directory, an unreferenced generation or a
//! temporary link, which the next [`Store::stage`] removes under the lock.

use std::fs::TryLockError;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::meta::{Meta, MetaError};
use lkg_core::state_file::{self, StateFileError};

use crate::name::{AppName, NameError, check_object_name};

/// Snapshot storage, one last-known-good per app. [`LocalStore`] is the
/// default; `OciStore` (feature `oci`) keeps snapshots as OCI artifacts in a
/// registry.
///
/// Methods block (file or network I/O); the async entry points of this crate
/// call them on tokio's blocking pool, which is why a store is `Clone + 'static`.
pub trait Store: Clone + Send + Sync + 'static {
    /// A snapshot opened for reading.
    type Reader: SnapshotReader;
    /// A replacement being written.
    type Staging: Staging;

    /// Opens the last-known-good of `app`, holding `lock` until the reader is
    /// dropped; `None` when the app has none. The meta is parsed and checked.
    fn open(&self, app: &AppName, lock: LockMode) -> Result<Option<Self::Reader>, StoreError>;

    /// Starts replacing the last-known-good of `app`, holding the app's
    /// exclusive lock until the staging is committed or dropped. Cleans what
    /// interrupted runs left.
    fn stage(&self, app: &AppName) -> Result<Self::Staging, StoreError>;

    /// The apps that have a last-known-good, sorted.
    fn apps(&self) -> Result<Vec<AppName>, StoreError>;

    /// Where `app`'s last-known-good is (or would be), for messages.
    fn location(&self, app: &AppName) -> String;

    /// Bytes of volume archives this store has sent elsewhere since it was
    /// made (a registry store counts its uploads; an archive the registry
    /// had is not sent). `None`: the store keeps archives where they are
    /// written.
    fn uploaded_bytes(&self) -> Option<u64> {
        None
    }
}

/// How a reader holds the app's snapshot lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Others may read too (show, verify).
    Shared,
    /// Nobody else may read or replace the snapshot (restore).
    Exclusive,
}

/// One snapshot, opened for reading.
pub trait SnapshotReader: Send + 'static {
    /// Its `meta.json`, parsed and checked.
    fn meta(&self) -> &Meta;
    /// Where it is, for messages (a path, or a registry reference).
    fn location(&self) -> String;
    /// Reads the archive of volume `name`.
    fn open_volume(&self, name: &str) -> Result<Box<dyn Read + Send>, StoreError>;
}

/// A replacement snapshot being written. Dropping it without
/// [`Staging::commit`] abandons it and leaves the last-known-good as it was.
pub trait Staging: Send + 'static {
    /// Creates the archive of volume `name`.
    fn create_volume(&mut self, name: &str) -> Result<Box<dyn VolumeSink>, StoreError>;
    /// Reads back a volume archive written (and finished) in this staging.
    fn open_volume(&self, name: &str) -> Result<Box<dyn Read + Send>, StoreError>;
    /// Writes `meta`, makes everything durable, checks it, and makes it the
    /// last-known-good in one atomic step. Returns its location.
    fn commit(self, meta: &Meta) -> Result<String, StoreError>;
    /// Whether a take reads each archive back from this staging and checks
    /// it there (the default). A store whose durable copy is elsewhere (a
    /// registry, which checks every digest it receives) answers `false`, and
    /// the take checks each archive as it is written instead.
    fn reads_back(&self) -> bool {
        true
    }
    /// Whether [`Staging::adopt_unchanged`] could adopt an archive for
    /// volume `name` (the last-known-good has one with a print): a take
    /// walks the volume for its print only then. The default: never.
    fn may_adopt(&self, name: &str) -> bool {
        let _ = name;
        false
    }
    /// Adopts the last-known-good's archive of volume `name` if it was taken
    /// when the volume had the print `print` (what a walk of the volume's
    /// metadata hashes to; equal prints mean equal archives). Returns its size
    /// and SHA-256 if it did: the volume then needs no archive of its own.
    /// The default adopts nothing.
    fn adopt_unchanged(&mut self, name: &str, print: &str) -> Result<Option<(u64, String)>, StoreError> {
        let _ = (name, print);
        Ok(None)
    }
    /// Notes the print of volume `name`'s archive, for the next take's
    /// [`Staging::adopt_unchanged`]. The default forgets it.
    fn note_print(&mut self, name: &str, print: &str) {
        let _ = (name, print);
    }
}

/// The archive of one volume being written. I/O errors name the file.
pub trait VolumeSink: Write + Send {
    /// Flushes and makes the archive durable; `sha256` is the archive's
    /// checksum (lowercase hex), which the writer computed.
    fn finish(self: Box<Self>, sha256: &str) -> Result<(), StoreError>;
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file-system operation failed (the message names the path).
    #[error(transparent)]
    Io(#[from] io::Error),
    /// Another process holds the app's snapshot lock.
    #[error(
        "the snapshot of app {app} is in use by another lkg process (lock {}): \
         wait for that take or restore to finish, then retry",
        lock.display()
    )]
    Busy {
        /// The app.
        app: String,
        /// The lock file.
        lock: PathBuf,
    },
    /// `meta.json` is unreadable or does not check.
    #[error("{}", path.display())]
    Meta {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: MetaError,
    },
    /// The meta lists a volume whose archive is missing.
    #[error("the snapshot of app {app} lists volume {volume} but {} is missing", path.display())]
    MissingVolume {
        /// The app.
        app: String,
        /// The volume.
        volume: String,
        /// Where its archive should be.
        path: PathBuf,
    },
    /// Something in the store is not what lkg writes.
    #[error("{}: {problem}", path.display())]
    Layout {
        /// The path.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A volume name that is not a safe file name.
    #[error(transparent)]
    Name(#[from] NameError),
    /// A state file (`meta.json`) or a directory could not be written or synced.
    #[error(transparent)]
    State(#[from] StateFileError),
    /// The registry of an [`OciStore`](crate::OciStore) failed or served
    /// something that does not check (a digest mismatch).
    #[cfg(feature = "oci")]
    #[error(transparent)]
    Registry(#[from] lkg_registry::RegistryError),
    /// A registry snapshot without a signature by the key it must carry.
    #[cfg(feature = "oci")]
    #[error("the snapshot {location} is not signed by the verify key: {reason}")]
    Unsigned {
        /// The snapshot (by digest).
        location: String,
        /// Why no signature verified.
        reason: String,
    },
    /// An encrypted registry snapshot, read without an identity.
    #[cfg(feature = "oci")]
    #[error("the snapshot {location} is encrypted: give the age identity it was encrypted to (--identity FILE)")]
    Encrypted {
        /// The snapshot.
        location: String,
    },
    /// No identity given decrypts the snapshot.
    #[cfg(feature = "oci")]
    #[error("cannot decrypt the snapshot with the identities given: {reason}")]
    Undecryptable {
        /// What age said.
        reason: String,
    },
    /// An age recipient or identity that cannot be used (its text is never shown).
    #[cfg(feature = "oci")]
    #[error("{what}: {problem}")]
    AgeKey {
        /// Which argument or file.
        what: String,
        /// What is wrong.
        problem: String,
    },
    /// A signing or verify key that cannot be read.
    #[cfg(feature = "oci")]
    #[error(transparent)]
    Key(#[from] lkg_registry::sign::KeyError),
    /// A store named by a URL that is not one.
    #[cfg(feature = "oci")]
    #[error(transparent)]
    Url(#[from] crate::oci::StoreUrlError),
}

impl lkg_core::Classify for StoreError {
    fn kind(&self) -> lkg_core::FailureKind {
        use lkg_core::FailureKind;
        match self {
            StoreError::Name(_) => FailureKind::Input,
            #[cfg(feature = "oci")]
            StoreError::Url(_)
            | StoreError::Key(_)
            | StoreError::AgeKey { .. }
            | StoreError::Encrypted { .. }
            | StoreError::Undecryptable { .. } => FailureKind::Input,
            // A damaged snapshot: the store's answer is "no".
            StoreError::Meta { .. } | StoreError::MissingVolume { .. } | StoreError::Layout { .. } => {
                FailureKind::Verdict
            }
            #[cfg(feature = "oci")]
            StoreError::Unsigned { .. } => FailureKind::Verdict,
            #[cfg(feature = "oci")]
            StoreError::Registry(e) => e.kind(),
            _ => FailureKind::Environment,
        }
    }
}

const CURRENT: &str = "snapshot";
const GENERATIONS: &str = "snapshots";
const LOCK: &str = ".lock";
const STAGING_PREFIX: &str = ".staging-";
const LINK_PREFIX: &str = ".snapshot-";
const LINK_SUFFIX: &str = ".link";
const META: &str = "meta.json";
const VOLUMES: &str = "volumes";

/// Snapshots in a local directory, `<state-dir>/apps/<app>/snapshot/`.
///
/// ```
/// use lkg_warmsnap::{AppName, LocalStore, LockMode, Store};
///
/// let state = tempfile::tempdir()?;
/// let store = LocalStore::new(state.path());
/// let app = AppName::new("gitea")?;
/// assert!(store.open(&app, LockMode::Shared)?.is_none());
/// assert_eq!(store.snapshot_dir(&app), state.path().join("apps/gitea/snapshot"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct LocalStore {
    apps: PathBuf,
}

impl LocalStore {
    /// A store under `state_dir` (snapshots go to `state_dir/apps/<app>/`).
    pub fn new(state_dir: impl AsRef<Path>) -> LocalStore {
        LocalStore { apps: state_dir.as_ref().join("apps") }
    }

    /// `<state-dir>/apps/<app>`.
    pub fn app_dir(&self, app: &AppName) -> PathBuf {
        self.apps.join(app.as_str())
    }

    /// `<state-dir>/apps/<app>/snapshot`: the last-known-good, a symlink to
    /// its generation directory.
    pub fn snapshot_dir(&self, app: &AppName) -> PathBuf {
        self.app_dir(app).join(CURRENT)
    }

    /// Takes the app's snapshot lock (`snapshots/.lock`), whichever store
    /// keeps the snapshot: one lock per app on this machine.
    pub(crate) fn lock(&self, app: &AppName, mode: LockMode) -> Result<std::fs::File, StoreError> {
        let dir = self.app_dir(app).join(GENERATIONS);
        fs_err::create_dir_all(&dir)?;
        let path = dir.join(LOCK);
        let file = fs_err::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path)?;
        let (file, _) = file.into_parts();
        let locked = match mode {
            LockMode::Shared => file.try_lock_shared(),
            LockMode::Exclusive => file.try_lock(),
        };
        match locked {
            Ok(()) => Ok(file),
            Err(TryLockError::WouldBlock) => Err(StoreError::Busy { app: app.to_string(), lock: path }),
            Err(TryLockError::Error(e)) => {
                Err(StoreError::Io(io::Error::new(e.kind(), format!("cannot lock {}: {e}", path.display()))))
            }
        }
    }

    /// The generation `snapshot` points to, `None` if there is no snapshot.
    #[allow(clippy::disallowed_methods, reason = "its error carries the path as a field")]
    fn current_generation(&self, app: &AppName) -> Result<Option<String>, StoreError> {
        let link = self.snapshot_dir(app);
        let target = match std::fs::read_link(&link) {
            Ok(target) => target,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                return Err(StoreError::Layout {
                    path: link,
                    problem: "is not the symlink lkg maintains (a directory?): move it away, then take a new snapshot"
                        .to_owned(),
                });
            }
            Err(e) => return Err(io::Error::new(e.kind(), format!("cannot read link {}: {e}", link.display())).into()),
        };
        let generation = target
            .to_str()
            .and_then(|t| t.strip_prefix(GENERATIONS)?.strip_prefix('/'))
            .filter(|g| is_generation(g))
            .ok_or_else(|| StoreError::Layout {
                path: link.clone(),
                problem: format!("points to {}, not to a generation under {GENERATIONS}/", target.display()),
            })?;
        Ok(Some(generation.to_owned()))
    }

    /// A new staging directory for generation `generation` of `app`, after
    /// removing the staging directories interrupted takes left (of either
    /// store). Called with the exclusive lock held.
    pub(crate) fn new_staging(&self, app: &AppName, generation: &str) -> Result<PathBuf, StoreError> {
        let generations = self.app_dir(app).join(GENERATIONS);
        for entry in fs_err::read_dir(&generations)? {
            let entry = entry?;
            let name = entry.file_name();
            if name.to_str().and_then(|n| n.strip_prefix(STAGING_PREFIX)).is_some_and(is_generation) {
                fs_err::remove_dir_all(entry.path())?;
            }
        }
        let dir = generations.join(format!("{STAGING_PREFIX}{generation}"));
        fs_err::create_dir(&dir)?;
        Ok(dir)
    }

    /// Removes what interrupted runs left. Called with the exclusive lock held.
    fn collect_garbage(&self, app: &AppName, current: Option<&str>) -> Result<(), StoreError> {
        let app_dir = self.app_dir(app);
        for entry in fs_err::read_dir(app_dir.join(GENERATIONS))? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if is_generation(name) && Some(name) != current {
                fs_err::remove_dir_all(entry.path())?;
            }
        }
        for entry in fs_err::read_dir(&app_dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.strip_prefix(LINK_PREFIX).and_then(|n| n.strip_suffix(LINK_SUFFIX)).is_some_and(is_generation) {
                fs_err::remove_file(entry.path())?;
            }
        }
        Ok(())
    }
}

impl Store for LocalStore {
    type Reader = LocalReader;
    type Staging = LocalStaging;

    fn open(&self, app: &AppName, lock: LockMode) -> Result<Option<LocalReader>, StoreError> {
        // Nothing to lock (and nothing to create) for an app without a snapshot.
        if self.current_generation(app)?.is_none() {
            return Ok(None);
        }
        let lock = self.lock(app, lock)?;
        // Resolved again under the lock: a take may have swapped it meanwhile.
        let Some(generation) = self.current_generation(app)? else { return Ok(None) };
        let dir = self.app_dir(app).join(GENERATIONS).join(generation);
        let meta_path = dir.join(META);
        let text = fs_err::read(&meta_path)?;
        let meta = Meta::parse(&text, app).map_err(|source| StoreError::Meta { path: meta_path, source })?;
        Ok(Some(LocalReader { app: app.clone(), link: self.snapshot_dir(app), dir, meta, _lock: lock }))
    }

    fn stage(&self, app: &AppName) -> Result<LocalStaging, StoreError> {
        let lock = self.lock(app, LockMode::Exclusive)?;
        let previous = self.current_generation(app)?;
        self.collect_garbage(app, previous.as_deref())?;
        let generation = new_generation();
        let dir = self.new_staging(app, &generation)?;
        fs_err::create_dir(dir.join(VOLUMES))?;
        Ok(LocalStaging {
            app: app.clone(),
            app_dir: self.app_dir(app),
            generation,
            dir,
            previous,
            committed: false,
            _lock: lock,
        })
    }

    fn apps(&self) -> Result<Vec<AppName>, StoreError> {
        let entries = match fs_err::read_dir(&self.apps) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut apps = Vec::new();
        for entry in entries {
            let entry = entry?;
            let Some(app) = entry.file_name().to_str().and_then(|n| AppName::new(n).ok()) else { continue };
            if self.current_generation(&app).is_ok_and(|g| g.is_some()) {
                apps.push(app);
            }
        }
        apps.sort();
        Ok(apps)
    }

    fn location(&self, app: &AppName) -> String {
        self.snapshot_dir(app).display().to_string()
    }
}

/// A local snapshot opened for reading; holds the snapshot lock.
#[derive(Debug)]
pub struct LocalReader {
    app: AppName,
    link: PathBuf,
    dir: PathBuf,
    meta: Meta,
    _lock: std::fs::File,
}

impl LocalReader {
    /// The generation directory this reader reads.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl SnapshotReader for LocalReader {
    fn meta(&self) -> &Meta {
        &self.meta
    }

    fn location(&self) -> String {
        self.link.display().to_string()
    }

    fn open_volume(&self, name: &str) -> Result<Box<dyn Read + Send>, StoreError> {
        check_object_name("volume", name)?;
        let path = self.dir.join(VOLUMES).join(format!("{name}.tar"));
        // Looked at before it is opened: opening a FIFO waits for a writer,
        // and a link may lead to /dev/zero. lkg writes plain files here.
        match fs_err::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_file() => {}
            Ok(_) => {
                return Err(StoreError::Layout {
                    path,
                    problem: "is not a plain file (a link, FIFO or device): lkg writes only plain archives here; \
                              take a new snapshot"
                        .to_owned(),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::MissingVolume { app: self.app.to_string(), volume: name.to_owned(), path });
            }
            Err(e) => return Err(e.into()),
        }
        let file = fs_err::File::open(&path)?;
        // Never more than the recorded size (and one byte to tell it grew):
        // the checksum then fails, instead of a read that does not end.
        let recorded = self.meta.volume(name).map_or(u64::MAX - 1, |v| v.bytes);
        Ok(Box::new(file.take(recorded.saturating_add(1))))
    }
}

/// A local replacement being written in `snapshots/.staging-<gen>/`.
#[derive(Debug)]
pub struct LocalStaging {
    app: AppName,
    app_dir: PathBuf,
    generation: String,
    dir: PathBuf,
    previous: Option<String>,
    committed: bool,
    _lock: std::fs::File,
}

impl LocalStaging {
    /// The staging directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Staging for LocalStaging {
    fn create_volume(&mut self, name: &str) -> Result<Box<dyn VolumeSink>, StoreError> {
        check_object_name("volume", name)?;
        Ok(Box::new(LocalSink::create(&self.dir.join(VOLUMES).join(format!("{name}.tar")))?))
    }

    fn open_volume(&self, name: &str) -> Result<Box<dyn Read + Send>, StoreError> {
        check_object_name("volume", name)?;
        Ok(Box::new(fs_err::File::open(self.dir.join(VOLUMES).join(format!("{name}.tar")))?))
    }

    fn commit(mut self, meta: &Meta) -> Result<String, StoreError> {
        meta.check(&self.app).map_err(|source| StoreError::Meta { path: self.dir.join(META), source })?;
        let meta_path = self.dir.join(META);
        state_file::write(&meta_path, &meta.to_json())?;
        // Read back what the next reader will read.
        let written = fs_err::read(&meta_path)?;
        match Meta::parse(&written, &self.app) {
            Ok(read) if read == *meta => {}
            Ok(_) => {
                return Err(StoreError::Layout {
                    path: meta_path,
                    problem: "reads back different from what was written".to_owned(),
                });
            }
            Err(source) => return Err(StoreError::Meta { path: meta_path, source }),
        }
        for name in fs_err::read_dir(self.dir.join(VOLUMES))? {
            let name = name?.file_name();
            let listed = name.to_str().and_then(|n| n.strip_suffix(".tar")).is_some_and(|n| meta.volume(n).is_some());
            if !listed {
                return Err(StoreError::Layout {
                    path: self.dir.join(VOLUMES).join(name),
                    problem: "is not listed in meta.json".to_owned(),
                });
            }
        }
        sync_dir(&self.dir.join(VOLUMES))?;
        sync_dir(&self.dir)?;

        let generations = self.app_dir.join(GENERATIONS);
        let complete = generations.join(&self.generation);
        fs_err::rename(&self.dir, &complete)?;
        self.committed = true;
        sync_dir(&generations)?;

        // The commit point: one rename of a symlink.
        let link = self.app_dir.join(format!("{LINK_PREFIX}{}{LINK_SUFFIX}", self.generation));
        fs_err::os::unix::fs::symlink(format!("{GENERATIONS}/{}", self.generation), &link)?;
        let current = self.app_dir.join(CURRENT);
        if let Err(e) = fs_err::rename(&link, &current) {
            let _ = fs_err::remove_file(&link);
            return Err(if current.is_dir() && !current.is_symlink() {
                StoreError::Layout {
                    path: current,
                    problem: "is a directory, not the symlink lkg maintains: move it away and take the snapshot again"
                        .to_owned(),
                }
            } else {
                e.into()
            });
        }
        sync_dir(&self.app_dir)?;

        // The old generation is garbage now; if removing it fails, the next take does.
        if let Some(previous) = self.previous.take() {
            let _ = fs_err::remove_dir_all(generations.join(previous));
        }
        Ok(current.display().to_string())
    }
}

impl Drop for LocalStaging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs_err::remove_dir_all(&self.dir);
        }
    }
}

pub(crate) struct LocalSink {
    file: BufWriter<fs_err::File>,
    durable: bool,
}

impl LocalSink {
    /// A new archive at `path` (which must not exist), made durable by
    /// [`VolumeSink::finish`].
    pub(crate) fn create(path: &Path) -> Result<LocalSink, StoreError> {
        let file = fs_err::File::create_new(path)?;
        Ok(LocalSink { file: BufWriter::with_capacity(1 << 20, file), durable: true })
    }

    /// A new archive at `path` that is only a staging copy: another store
    /// keeps the durable one (a crash loses a take in progress either way).
    pub(crate) fn create_scratch(path: &Path) -> Result<LocalSink, StoreError> {
        Ok(LocalSink { durable: false, ..LocalSink::create(path)? })
    }
}

impl Write for LocalSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl VolumeSink for LocalSink {
    fn finish(self: Box<Self>, _sha256: &str) -> Result<(), StoreError> {
        let file = self.file.into_inner().map_err(io::IntoInnerError::into_error)?;
        if self.durable {
            file.sync_all()?;
        }
        Ok(())
    }
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    Ok(state_file::sync_dir(dir)?)
}

/// `20260529T005510Z-0a1b2c3d`: sorts by time, unique per take.
pub(crate) fn new_generation() -> String {
    use std::hash::{BuildHasher, Hasher};
    let now = jiff::Timestamp::now();
    let mut hasher = std::hash::RandomState::new().build_hasher();
    hasher.write_i128(now.as_nanosecond());
    hasher.write_u32(std::process::id());
    format!("{}-{:08x}", now.strftime("%Y%m%dT%H%M%SZ"), hasher.finish() & 0xffff_ffff)
}

pub(crate) fn is_generation(name: &str) -> bool {
    let bytes = name.as_bytes();
    bytes.len() == 25
        && bytes[8] == b'T'
        && bytes[15] == b'Z'
        && bytes[16] == b'-'
        && bytes[..8].iter().chain(&bytes[9..15]).all(u8::is_ascii_digit)
        && bytes[17..].iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_are_recognised_and_nothing_else() {
        let generation = new_generation();
        assert!(is_generation(&generation), "{generation}");
        for other in
            ["", "lock", ".lock", "20260529T005510Z", "20260529T005510Z-0a1b2c3g", "../20260529T005510Z-0a1b2c3d"]
        {
            assert!(!is_generation(other), "{other}");
        }
    }
}
