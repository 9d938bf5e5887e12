//! What the fleet remembers between rounds, in `<state-dir>/fleet/state.json`
//! (written atomically, mode 0600): per app the versions that rolled back
//! or were held, the newest version seen, the last outcome and counters; and
//! the last round. Each app's own truth (last-good, journal, lock, alerts)
//! stays lkg-reconcile's.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::error::FleetError;

/// The state file's format.
pub const STATE_FORMAT: u32 = 1;

/// The fleet's memory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FleetState {
    /// [`STATE_FORMAT`].
    pub format: u32,
    /// Per app.
    #[serde(default)]
    pub apps: BTreeMap<String, AppRecord>,
    /// The last round that finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_round: Option<RoundRecord>,
}

/// What the fleet remembers of one app.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRecord {
    /// Versions that rolled back (or failed to install): not retried until
    /// a newer one appears, or `lkg-fleet retry`.
    #[serde(default)]
    pub rolled_back: BTreeSet<String>,
    /// Versions the safety gate held, with its reason: not sent again.
    #[serde(default)]
    pub held: BTreeMap<String, String>,
    /// The newest version its source offered in the last round.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest: Option<String>,
    /// The state the last round left it in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_state: Option<String>,
    /// Why, for states that have a reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reason: Option<String>,
    /// When a round last upgraded or installed it.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_ts")]
    pub last_success: Option<Timestamp>,
    /// Updates and installs that succeeded.
    #[serde(default)]
    pub updates: u64,
    /// Updates that rolled back (or failed).
    #[serde(default)]
    pub rollbacks: u64,
    /// Versions the safety gate held.
    #[serde(default)]
    pub holds: u64,
}

/// The last round, as `status` and the metrics show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoundRecord {
    /// When it started.
    #[serde(with = "lkg_core::rfc3339")]
    pub started: Timestamp,
    /// How long it took.
    pub duration_ms: u64,
    /// Its outcome (`ok`, `failed`, `held`, `partial`, `environment`).
    pub outcome: String,
}

pub(crate) mod opt_ts {
    use jiff::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    #[allow(clippy::ref_option, reason = "serde's `with` passes a reference")]
    pub(crate) fn serialize<S: Serializer>(ts: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
        match ts {
            Some(ts) => s.collect_str(&ts.strftime("%Y-%m-%dT%H:%M:%SZ")),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
        Option::<String>::deserialize(d)?.map(|s| s.parse().map_err(serde::de::Error::custom)).transpose()
    }
}

/// The fleet state file under `state_dir`.
pub fn state_path(state_dir: &Path) -> PathBuf {
    state_dir.join("fleet").join("state.json")
}

impl FleetState {
    /// Reads the fleet's state; empty when there is none yet.
    pub fn load(state_dir: &Path) -> Result<FleetState, FleetError> {
        let path = state_path(state_dir);
        let state: Option<FleetState> = lkg_core::state_file::read_json(&path)?;
        match state {
            None => Ok(FleetState { format: STATE_FORMAT, ..FleetState::default() }),
            Some(state) if state.format == STATE_FORMAT => Ok(state),
            Some(state) => Err(FleetError::State(lkg_core::StateFileError::Format {
                path,
                reason: format!("format {} is not {STATE_FORMAT}: written by another lkg version", state.format),
            })),
        }
    }

    /// Writes it atomically.
    pub fn save(&self, state_dir: &Path) -> Result<(), FleetError> {
        let path = state_path(state_dir);
        lkg_core::state_file::create_dir(&path)?;
        let bytes = lkg_core::state_file::to_json(&path, self)?;
        lkg_core::state_file::write_with(&path, &bytes, lkg_core::state_file::Mode::Private)?;
        Ok(())
    }

    /// The record of `app`, created empty.
    pub fn app(&mut self, app: &str) -> &mut AppRecord {
        self.apps.entry(app.to_owned()).or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_round_trips_privately() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mut state = FleetState::load(dir.path()).unwrap();
        state.app("shop").rolled_back.insert("1.0.1".into());
        state.app("shop").last_success = Some("2026-12-04T10:00:00Z".parse().unwrap());
        state.save(dir.path()).unwrap();
        assert_eq!(FleetState::load(dir.path()).unwrap(), state);
        let mode = std::fs::metadata(state_path(dir.path())).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
