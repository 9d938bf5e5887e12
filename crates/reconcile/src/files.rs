//! State files: written atomically (temp file, fsync, rename, fsync of the
//! directory), read as JSON with errors that name the path.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ReconcileError;

/// Writes `bytes` to `path` so that a crash at any moment leaves either the
/// old file or the new one: a temp file in the same directory is written and
/// synced, renamed over `path`, then the directory is synced.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ReconcileError> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    fs_err::create_dir_all(dir).map_err(|source| state_io("create", dir, source))?;
    let name = path.file_name().map_or_else(|| "state".into(), |n| n.to_string_lossy().into_owned());
    let nanos = jiff::Timestamp::now().as_nanosecond();
    let temp = dir.join(format!(".{name}.{}.{nanos}.tmp", std::process::id()));
    let result = (|| {
        let mut file = fs_err::File::create_new(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs_err::rename(&temp, path)?;
        fs_err::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result.map_err(|source| state_io("write", path, source))
}

/// Serialises `value` as pretty JSON (with a final newline) and writes it atomically.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), ReconcileError> {
    let mut text = serde_json::to_vec_pretty(value)
        .map_err(|e| ReconcileError::StateFormat { path: path.to_owned(), reason: format!("cannot serialise: {e}") })?;
    text.push(b'\n');
    write_atomic(path, &text)
}

/// Reads a JSON state file; `None` when it does not exist.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, ReconcileError> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(state_io("read", path, source)),
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| ReconcileError::StateFormat { path: path.to_owned(), reason: e.to_string() })
}

/// Removes a state file (and syncs its directory); absent is fine.
pub(crate) fn remove(path: &Path) -> Result<(), ReconcileError> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            if let Some(dir) = path.parent() {
                fs_err::File::open(dir).and_then(|d| d.sync_all()).map_err(|source| state_io("sync", dir, source))?;
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(state_io("remove", path, source)),
    }
}

pub(crate) fn state_io(action: &'static str, path: &Path, source: std::io::Error) -> ReconcileError {
    ReconcileError::State { action, path: PathBuf::from(path), source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_replace_and_leave_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/last-good.json");
        write_json(&path, &serde_json::json!({"version": "1.0.0"})).unwrap();
        write_json(&path, &serde_json::json!({"version": "1.1.0"})).unwrap();
        let read: serde_json::Value = read_json(&path).unwrap().unwrap();
        assert_eq!(read["version"], "1.1.0");
        let names: Vec<String> = std::fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["last-good.json"]);
        remove(&path).unwrap();
        remove(&path).unwrap();
        assert!(read_json::<serde_json::Value>(&path).unwrap().is_none());
    }

    #[test]
    fn a_damaged_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.json");
        std::fs::write(&path, "{not json").unwrap();
        let err = read_json::<serde_json::Value>(&path).unwrap_err();
        assert!(err.to_string().contains("journal.json"), "{err}");
    }
}
