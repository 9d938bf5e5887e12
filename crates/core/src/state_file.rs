//! State files written atomically: a crash at any moment leaves either the
//! old file or the new one, never a mix and never an empty file.
//!
//! Every write goes the same way: a temp file in the destination's directory
//! (`.<name>.<pid>.<nanos>.<n>.tmp`, created exclusively, so two writers never
//! share one), its mode set, the bytes written and synced, the temp file
//! renamed over the destination, and the directory synced, because the
//! rename is durable only once its directory entry is. Every error names the
//! path and the step that failed.
//!
//! Permissions are set explicitly, not left to the umask: [`Mode::Shared`]
//! (`0644`, the default: lock files are committed and read by everyone) or
//! [`Mode::Private`] (`0600`, for state that may hold what only its owner
//! should read).

// The one place that calls `std::fs` for state files: every error carries
// its path as a field (clippy.toml steers other code to `fs-err` and here).
#![allow(clippy::disallowed_methods)]

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a state file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateFileError {
    /// A file-system call failed.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What lkg was doing: `create`, `write`, `sync`, `rename into place`, ...
        action: &'static str,
        /// The file or directory it was doing it to.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The file exists but is not the JSON its reader expects.
    #[error("{} is not valid: {reason}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl StateFileError {
    /// The file or directory the error is about.
    pub fn path(&self) -> &Path {
        match self {
            StateFileError::Io { path, .. } | StateFileError::Format { path, .. } => path,
        }
    }

    fn io(action: &'static str, path: &Path, source: std::io::Error) -> StateFileError {
        StateFileError::Io { action, path: path.to_owned(), source }
    }
}

/// Who may read a state file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// `0644`: readable by everyone, writable by its owner.
    #[default]
    Shared,
    /// `0600`: its owner only.
    Private,
}

impl Mode {
    /// The permission bits.
    pub fn bits(self) -> u32 {
        match self {
            Mode::Shared => 0o644,
            Mode::Private => 0o600,
        }
    }
}

/// Makes temp names unique within a process even when the clock repeats.
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

const TEMP_SUFFIX: &str = ".tmp";

fn temp_prefix(target: &Path) -> String {
    let name = target.file_name().map_or_else(|| "state".into(), |n| n.to_string_lossy().into_owned());
    format!(".{name}.")
}

fn directory_of(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// A new file written to its temp file and synced, not yet in place.
/// [`commit`](Staged::commit) renames it over the destination; dropping it
/// without a commit removes the temp file and leaves the destination as it was.
#[derive(Debug)]
#[must_use = "a staged file replaces nothing until it is committed"]
pub struct Staged {
    temp: PathBuf,
    target: PathBuf,
    done: bool,
}

impl Staged {
    /// The temp file holding the new content.
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// The file this will replace.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Renames the temp file over the destination and syncs the directory.
    pub fn commit(mut self) -> Result<(), StateFileError> {
        std::fs::rename(&self.temp, &self.target)
            .map_err(|e| StateFileError::io("rename into place", &self.temp, e))?;
        self.done = true;
        sync_dir(directory_of(&self.target))
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// Writes `bytes` to a temp file beside `path` and syncs it, without
/// replacing `path` yet. The directory must exist ([`create_dir`] makes it):
/// a missing one is an error, not a directory made where a typo pointed.
pub fn stage(path: &Path, bytes: &[u8], mode: Mode) -> Result<Staged, StateFileError> {
    let dir = directory_of(path);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let temp = dir.join(format!("{}{}.{nanos}.{sequence}{TEMP_SUFFIX}", temp_prefix(path), std::process::id()));
    let mut file = std::fs::File::create_new(&temp).map_err(|e| StateFileError::io("create", &temp, e))?;
    // From here on, dropping `staged` removes the temp file.
    let staged = Staged { temp: temp.clone(), target: path.to_owned(), done: false };
    file.set_permissions(std::fs::Permissions::from_mode(mode.bits()))
        .map_err(|e| StateFileError::io("set the permissions of", &temp, e))?;
    file.write_all(bytes).map_err(|e| StateFileError::io("write", &temp, e))?;
    file.sync_all().map_err(|e| StateFileError::io("sync", &temp, e))?;
    Ok(staged)
}

/// Replaces `path` with `bytes` atomically, mode [`Mode::Shared`].
pub fn write(path: &Path, bytes: &[u8]) -> Result<(), StateFileError> {
    write_with(path, bytes, Mode::Shared)
}

/// Replaces `path` with `bytes` atomically, with the given mode.
pub fn write_with(path: &Path, bytes: &[u8], mode: Mode) -> Result<(), StateFileError> {
    stage(path, bytes, mode)?.commit()
}

/// `value` as pretty JSON with a final newline, the form of every lkg state file.
pub fn to_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<Vec<u8>, StateFileError> {
    let mut text = serde_json::to_vec_pretty(value)
        .map_err(|e| StateFileError::Format { path: path.to_owned(), reason: format!("cannot serialise: {e}") })?;
    text.push(b'\n');
    Ok(text)
}

/// Writes `value` as pretty JSON, atomically, mode [`Mode::Shared`].
pub fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<(), StateFileError> {
    write(path, &to_json(path, value)?)
}

/// Reads a state file; `None` when it does not exist.
pub fn read(path: &Path) -> Result<Option<Vec<u8>>, StateFileError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StateFileError::io("read", path, e)),
    }
}

/// Reads a JSON state file; `None` when it does not exist.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, StateFileError> {
    let Some(bytes) = read(path)? else { return Ok(None) };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| StateFileError::Format { path: path.to_owned(), reason: e.to_string() })
}

/// Removes a state file and syncs its directory; `false` when it was absent.
pub fn remove(path: &Path) -> Result<bool, StateFileError> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            sync_dir(directory_of(path))?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StateFileError::io("remove", path, e)),
    }
}

/// Creates the directory of `path` and its parents, if missing.
pub fn create_dir(path: &Path) -> Result<(), StateFileError> {
    let dir = directory_of(path);
    std::fs::create_dir_all(dir).map_err(|e| StateFileError::io("create", dir, e))
}

/// Syncs a directory, making the renames and removals in it durable.
pub fn sync_dir(dir: &Path) -> Result<(), StateFileError> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| StateFileError::io("sync", dir, e))
}

/// Removes the temp files that writers of `path` left when they died between
/// writing and renaming. Call it only while holding whatever lock serialises
/// the writers of `path`, so that no live writer owns them; returns how many
/// were removed.
pub fn remove_stale_temps(path: &Path) -> Result<usize, StateFileError> {
    let dir = directory_of(path);
    let prefix = temp_prefix(path);
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(StateFileError::io("list", dir, e)),
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(&prefix) && name.ends_with(TEMP_SUFFIX) {
            let temp = entry.path();
            std::fs::remove_file(&temp).map_err(|e| StateFileError::io("remove the stale temp file", &temp, e))?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    #[test]
    fn writes_replace_and_leave_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/last-good.json");
        create_dir(&path).unwrap();
        write_json(&path, &serde_json::json!({"version": "1.0.0"})).unwrap();
        write_json(&path, &serde_json::json!({"version": "1.1.0"})).unwrap();
        let read: serde_json::Value = read_json(&path).unwrap().unwrap();
        assert_eq!(read["version"], "1.1.0");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\n  \"version\": \"1.1.0\"\n}\n");
        assert_eq!(names(&dir.path().join("sub")), ["last-good.json"]);
        assert!(remove(&path).unwrap());
        assert!(!remove(&path).unwrap());
        assert!(read_json::<serde_json::Value>(&path).unwrap().is_none());
    }

    #[test]
    fn a_crash_between_write_and_rename_leaves_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.json");
        write(&path, b"old\n").unwrap();
        // A process that dies after writing its temp file never renames it:
        // forgetting the staged file skips both the rename and the clean-up.
        let staged = stage(&path, b"new\n", Mode::Shared).unwrap();
        let temp = staged.temp_path().to_owned();
        std::mem::forget(staged);
        assert_eq!(std::fs::read(&path).unwrap(), b"old\n");
        assert_eq!(std::fs::read(&temp).unwrap(), b"new\n");
        // The next writer, under the writers' lock, clears what the dead one left.
        assert_eq!(remove_stale_temps(&path).unwrap(), 1);
        assert_eq!(names(dir.path()), ["journal.json"]);
        assert_eq!(remove_stale_temps(&path).unwrap(), 0);
    }

    #[test]
    fn an_abandoned_stage_removes_its_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("canonical.json");
        write(&path, b"old").unwrap();
        drop(stage(&path, b"new", Mode::Shared).unwrap());
        assert_eq!(names(dir.path()), ["canonical.json"]);
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
    }

    #[test]
    fn stale_temps_of_other_files_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".journal.json.1.2.0.tmp"), "").unwrap();
        std::fs::write(dir.path().join(".canonical.json.1.2.0.tmp"), "").unwrap();
        assert_eq!(remove_stale_temps(&dir.path().join("canonical.json")).unwrap(), 1);
        assert_eq!(names(dir.path()), [".journal.json.1.2.0.tmp"]);
    }

    #[test]
    fn modes_are_set_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("inputs.lock.json");
        let private = dir.path().join("last-run.json");
        write(&shared, b"{}").unwrap();
        write_with(&private, b"{}", Mode::Private).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&shared), 0o644);
        assert_eq!(mode(&private), 0o600);
        // A rewrite takes the mode asked for, not the old file's.
        write(&private, b"{}").unwrap();
        assert_eq!(mode(&private), 0o644);
    }

    #[test]
    fn errors_name_the_path_and_the_step() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, "{not json").unwrap();
        let err = read_json::<serde_json::Value>(&path).unwrap_err();
        assert!(matches!(&err, StateFileError::Format { path: p, .. } if *p == path), "{err:?}");
        assert!(err.to_string().starts_with(&format!("{} is not valid: ", path.display())), "{err}");

        // A file where the file's directory should be.
        let blocked = dir.path().join("state.json/inner.json");
        let err = create_dir(&blocked).unwrap_err();
        let StateFileError::Io { action, path: p, source } = &err else { panic!("{err:?}") };
        assert_eq!((*action, p.as_path()), ("create", path.as_path()));
        assert!(!source.to_string().contains(&*path.to_string_lossy()), "the path is said once: {source}");
        assert_eq!(err.to_string(), format!("cannot create {}", path.display()));

        // A missing directory is an error naming the temp file it could not create.
        let err = write(&dir.path().join("missing/lock.json"), b"x").unwrap_err();
        let StateFileError::Io { action, path: p, .. } = &err else { panic!("{err:?}") };
        assert_eq!(*action, "create");
        assert!(p.starts_with(dir.path().join("missing")), "{err}");
    }
}
