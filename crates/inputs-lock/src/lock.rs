//! A lock file from a run's manifest: "replay last known-good locked inputs".

use crate::check::{Issue, Problem, check};
use crate::document::{Document, Kind, OS_IMAGE_LOCK_DESCRIPTION, Profile};
use crate::model::Inputs;

/// The inputs an OS-image lock pins, in the pipeline's order. Everything
/// else in its manifest (kernel releases, the Fedora version, the base tag)
/// is derived from these again on replay.
pub const OS_IMAGE_LOCKED: [&str; 4] = ["base_image", "build_container", "zfs_minor_version", "akmods_upstream_ref"];

/// The description of a generic lock unless one is given.
pub const GENERIC_LOCK_DESCRIPTION: &str =
    "Pinned inputs for replay. Regenerate from a good run with `lkg-inputs lock-from build-inputs.json --out FILE`.";

/// Why no lock can be written from a file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// The file is a lock already.
    #[error("the file is already a lock: lock-from reads a run's build-inputs.json manifest")]
    NotAManifest,
    /// The manifest lacks an input the lock must pin.
    #[error("the manifest has no {}: a lock pins {}", missing.join(", "), OS_IMAGE_LOCKED.join(", "))]
    MissingInputs {
        /// The inputs absent from the manifest.
        missing: Vec<String>,
    },
    /// The lock would not pass `check`: the manifest holds unpinned or
    /// placeholder values, and writing them would only fail the replay later.
    #[error("the lock made from this manifest is not fit for replay ({}):\n{}", crate::plural(problems.len(), "problem"), problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// Every problem of the would-be lock.
        problems: Vec<Problem>,
    },
    /// The manifest has fields of the wrong type, or fields of one input that
    /// disagree (a pinned reference naming another repository): a lock made
    /// from it would pin something the run did not use, as `diff` and
    /// `check-lock` say of the same file.
    #[error("the manifest cannot be trusted to say what the run used ({}):\n{}", crate::plural(problems.len(), "problem"), problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Inconsistent {
        /// Every such problem of the manifest.
        problems: Vec<Problem>,
    },
}

/// The lock that replays the run `manifest` records, in the manifest's
/// profile, with `description` (default: the pipeline's own text). The lock
/// is checked before it is returned: a lock that cannot replay is an error.
pub fn lock_from(manifest: &Document, description: Option<&str>) -> Result<Document, LockError> {
    if manifest.kind() != Kind::Manifest {
        return Err(LockError::NotAManifest);
    }
    let contradictions: Vec<Problem> = check(manifest, &[])
        .into_iter()
        .filter(|p| matches!(p.issue, Issue::WrongType { .. } | Issue::Inconsistent { .. }))
        .collect();
    if !contradictions.is_empty() {
        return Err(LockError::Inconsistent { problems: contradictions });
    }
    let inputs = manifest.inputs();
    let locked = match manifest.profile() {
        Profile::OsImage => {
            let missing: Vec<String> =
                OS_IMAGE_LOCKED.iter().filter(|n| inputs.get(n).is_none()).map(|n| (*n).to_owned()).collect();
            if !missing.is_empty() {
                return Err(LockError::MissingInputs { missing });
            }
            let mut locked = Inputs::new();
            for name in OS_IMAGE_LOCKED {
                if let Some(input) = inputs.get(name) {
                    locked.insert(name, input.clone());
                }
            }
            locked
        }
        Profile::Generic => inputs,
    };
    let default = match manifest.profile() {
        Profile::OsImage => OS_IMAGE_LOCK_DESCRIPTION,
        Profile::Generic => GENERIC_LOCK_DESCRIPTION,
    };
    let lock = Document::new_lock(manifest.profile(), description.unwrap_or(default), &locked);
    let problems = check(&lock, &[]);
    if problems.is_empty() { Ok(lock) } else { Err(LockError::Invalid { problems }) }
}

/// A manifest that cannot become a lock: the input.
impl lkg_core::Classify for LockError {
    fn kind(&self) -> lkg_core::FailureKind {
        lkg_core::FailureKind::Input
    }
}
