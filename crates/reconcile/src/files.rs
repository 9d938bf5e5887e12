//! State files through `lkg_core::state_file` (written atomically, read as
//! JSON), with its errors as this crate's.

use std::path::{Path, PathBuf};

use lkg_core::state_file::{self, StateFileError};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ReconcileError;

/// Serialises `value` as pretty JSON (with a final newline) and writes it atomically.
/// Mode 0600: a journal holds the app's spec (webhook and health URLs, which
/// may carry credentials), so reconcile's state is its owner's alone.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), ReconcileError> {
    state_file::create_dir(path)?;
    let bytes = state_file::to_json(path, value)?;
    Ok(state_file::write_with(path, &bytes, state_file::Mode::Private)?)
}

/// Reads a JSON state file; `None` when it does not exist.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, ReconcileError> {
    Ok(state_file::read_json(path)?)
}

/// Removes a state file (and syncs its directory); absent is fine.
pub(crate) fn remove(path: &Path) -> Result<(), ReconcileError> {
    state_file::remove(path)?;
    Ok(())
}

pub(crate) fn state_io(action: &'static str, path: &Path, source: std::io::Error) -> ReconcileError {
    ReconcileError::State { action, path: PathBuf::from(path), source }
}

impl From<StateFileError> for ReconcileError {
    fn from(error: StateFileError) -> ReconcileError {
        match error {
            StateFileError::Io { action, path, source } => ReconcileError::State { action, path, source },
            other => ReconcileError::StateFormat { path: other.path().to_owned(), reason: format_reason(&other) },
        }
    }
}

fn format_reason(error: &StateFileError) -> String {
    match error {
        StateFileError::Format { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.json");
        std::fs::write(&path, "{not json").unwrap();
        let err = read_json::<serde_json::Value>(&path).unwrap_err();
        assert!(matches!(&err, ReconcileError::StateFormat { path: p, .. } if *p == path), "{err:?}");
        assert!(err.to_string().contains("journal.json"), "{err}");
    }

    #[test]
    fn a_failed_write_names_the_step_and_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("apps");
        std::fs::write(&blocker, "").unwrap();
        let err = write_json(&blocker.join("last-good.json"), &1).unwrap_err();
        assert!(matches!(&err, ReconcileError::State { action: "create", path, .. } if *path == blocker), "{err:?}");
    }
}
