//! Base overlays: files under `previous/` that patch the *base* deployment
//! only, and only the version they were written for.
//!
//! An overlay written to make an old release deployable (a pinned image, a
//! removed service) is wrong for any other base: applied to a branch tip or a
//! newer release it would deploy something that never existed, or leak onto
//! the head, which would then be tested with the old release's pins instead
//! of its own. So each overlay declares its version by living in
//! `previous/<version>/`; it applies only when the plan's base is that exact
//! version, and is reported as stale otherwise.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::plan::{BaseKind, BasePlan};
use lkg_canonical::RecipeVersion;

/// An overlay directory found under `previous/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlay {
    /// `previous/<name>` (or a file directly under `previous/`).
    pub path: PathBuf,
    /// The version its directory name declares, or why it declares none.
    pub declared: Result<RecipeVersion, String>,
    /// Its files, relative to `path`, sorted.
    pub files: Vec<String>,
}

/// What happens to an overlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OverlayUse {
    /// The base is the declared version: apply it to the base deployment.
    Apply,
    /// Written for another base: skip it.
    Stale,
    /// Declares no version: skip it.
    Invalid,
}

/// The decision for one overlay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OverlayDecision {
    /// The overlay's path.
    pub path: PathBuf,
    /// The version it declares.
    pub declared: Option<String>,
    /// Apply, stale or invalid.
    pub outcome: OverlayUse,
    /// Why.
    pub reason: String,
    /// Its files, relative to `path`.
    pub files: Vec<String>,
}

/// The overlay directory could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the overlay directory {path}")]
pub struct OverlayError {
    /// The directory.
    pub path: PathBuf,
    /// The cause.
    #[source]
    pub source: std::io::Error,
}

/// The overlays under `dir` (a `previous/` directory), by name.
#[allow(clippy::disallowed_methods, reason = "its error carries the path as a field")]
pub fn scan(dir: &Path) -> Result<Vec<Overlay>, OverlayError> {
    fn err(path: &Path) -> impl FnOnce(std::io::Error) -> OverlayError + '_ {
        move |source| OverlayError { path: path.to_owned(), source }
    }
    let mut overlays = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(err(dir))? {
        let entry = entry.map_err(err(dir))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().map_err(err(&path))?.is_dir() {
            let declared = RecipeVersion::parse(&name).map_err(|e| format!("the directory name is not a version: {e}"));
            let mut files = Vec::new();
            list_files(&path, &path, &mut files)?;
            files.sort();
            overlays.push(Overlay { path, declared, files });
        } else {
            overlays.push(Overlay {
                path,
                declared: Err(format!("{name} is not in a previous/<version>/ directory, so it declares no version")),
                files: vec![name],
            });
        }
    }
    overlays.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(overlays)
}

#[allow(clippy::disallowed_methods, reason = "its error carries the path as a field")]
fn list_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<(), OverlayError> {
    let err = |source| OverlayError { path: dir.to_owned(), source };
    for entry in std::fs::read_dir(dir).map_err(err)? {
        let entry = entry.map_err(err)?;
        let path = entry.path();
        if entry.file_type().map_err(err)?.is_dir() {
            list_files(root, &path, out)?;
        } else {
            out.push(path.strip_prefix(root).unwrap_or(&path).to_string_lossy().into_owned());
        }
    }
    Ok(())
}

/// Which overlays apply to `plan`'s base. Pure.
pub fn decide(overlays: &[Overlay], plan: &BasePlan) -> Vec<OverlayDecision> {
    overlays
        .iter()
        .map(|overlay| {
            let (outcome, reason) = match (&overlay.declared, plan.kind, plan.value.as_deref()) {
                (Err(why), _, _) => (OverlayUse::Invalid, why.clone()),
                (Ok(declared), BaseKind::Version, Some(base)) if declared.as_str() == base => {
                    (OverlayUse::Apply, format!("written for {declared}, the plan's base"))
                }
                (Ok(declared), BaseKind::Version, Some(base)) => {
                    (OverlayUse::Stale, format!("written for {declared}, but the base is {base}"))
                }
                (Ok(declared), BaseKind::Ref, base) => (
                    OverlayUse::Stale,
                    format!(
                        "written for {declared}, but the base is the ref {}, not a released version",
                        base.unwrap_or("?")
                    ),
                ),
                (Ok(declared), _, _) => {
                    (OverlayUse::Stale, format!("written for {declared}, but the plan has no base (skip)"))
                }
            };
            OverlayDecision {
                path: overlay.path.clone(),
                declared: overlay.declared.as_ref().ok().map(ToString::to_string),
                outcome,
                reason,
                files: overlay.files.clone(),
            }
        })
        .collect()
}

impl lkg_core::Classify for OverlayError {
    fn kind(&self) -> lkg_core::FailureKind {
        lkg_core::FailureKind::Input
    }
}
