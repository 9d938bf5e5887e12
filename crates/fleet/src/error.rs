//! Why a fleet command could not run. An app that rolled back or was held is
//! not an error: it is a state in the round's report.

use std::path::PathBuf;

use lkg_core::{Classify, FailureKind};

/// Why a fleet command could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FleetError {
    /// The fleet file is unreadable or invalid; nothing was touched.
    #[error("fleet file {}{}: {reason}", path.display(), line.map(|l| format!(", line {l}")).unwrap_or_default())]
    File {
        /// The file.
        path: PathBuf,
        /// The line, when known.
        line: Option<usize>,
        /// What is wrong.
        reason: String,
    },
    /// A name given on the command line that is not an app of the fleet.
    #[error("{0}")]
    Invalid(String),
    /// The fleet's state could not be read or written.
    #[error(transparent)]
    State(#[from] lkg_core::StateFileError),
    /// lkg-reconcile could not run.
    #[error(transparent)]
    Reconcile(#[from] lkg_reconcile::ReconcileError),
    /// A registry could not be asked.
    #[error(transparent)]
    Registry(#[from] lkg_registry::RegistryError),
    /// The metrics listener could not be started.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
}

impl Classify for FleetError {
    fn kind(&self) -> FailureKind {
        match self {
            FleetError::File { .. } | FleetError::Invalid(_) => FailureKind::Input,
            FleetError::State(e) => e.kind(),
            FleetError::Reconcile(e) => e.kind(),
            FleetError::Registry(e) => e.kind(),
            FleetError::Listen { .. } => FailureKind::Environment,
        }
    }
}
