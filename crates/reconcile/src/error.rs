//! Why a reconcile could not run. A verdict (rolled back, held, unhealthy) is
//! not an error: it is an [`Outcome`](crate::Outcome) in the report.

use std::path::PathBuf;

/// Why a reconcile could not run, or stopped. Each message says what
/// happened and what to do next.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReconcileError {
    /// An app name that is not a DNS label.
    #[error(transparent)]
    App(#[from] lkg_canonical::AppNameError),
    /// A stack name swarm would refuse.
    #[error("invalid stack name {stack:?}: use letters, digits, `_`, `-` and `.` only")]
    Stack {
        /// The name given.
        stack: String,
    },
    /// A version that cannot name a deployment.
    #[error("invalid version {:?}: {rule}", lkg_core::clip(version))]
    Version {
        /// The text given.
        version: String,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// The compose files cannot be used.
    #[error(transparent)]
    Compose(#[from] lkg_swarm::ComposeError),
    /// A per-app config file is unreadable or malformed.
    #[error("config file {path}: {reason}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An option is missing or contradicts another.
    #[error("{0}")]
    Invalid(String),
    /// A stateful app's stack has no volumes to snapshot.
    #[error(
        "stack {stack} has no volumes (none labelled com.docker.stack.namespace={stack}), so there is no data to \
         snapshot before the update: deploy it first, or pass --stateless if the app keeps no data"
    )]
    NoVolumes {
        /// The stack.
        stack: String,
    },
    /// The stack runs but lkg does not know which version it is.
    #[error(
        "stack {stack} is deployed but carries no coop-cloud.{stack}.version label and app {app} has no recorded \
         last-good version, so lkg cannot tell what to roll back to: pass --last-good VERSION (the version running now)"
    )]
    UnknownLastGood {
        /// The app.
        app: String,
        /// The stack.
        stack: String,
    },
    /// Quick mode needs a canonical (record and volumes).
    #[error("app {app} has no usable canonical ({why}): quick mode needs one; run a cold test instead")]
    NoCanonical {
        /// The app.
        app: String,
        /// Why not.
        why: String,
    },
    /// Quick mode needs the canonical's known-good snapshot.
    #[error(
        "app {app} has no last-known-good snapshot to restore if the candidate fails: quick mode needs one; take it \
         with `lkg-snap take --app {app} --stack STACK` while the canonical is idle, or run a cold test"
    )]
    NoSnapshot {
        /// The app.
        app: String,
    },
    /// The snapshot in the store is not the one this run took.
    #[error(
        "the last-known-good snapshot of app {app} is not the one this run took (expected version {expected} taken \
         at {expected_ts}, found {found}); lkg will not restore data it cannot vouch for: check it with \
         `lkg-snap show --app {app}` and restore by hand"
    )]
    SnapshotMismatch {
        /// The app.
        app: String,
        /// The version this run recorded.
        expected: String,
        /// When this run's snapshot was taken.
        expected_ts: String,
        /// What the store holds instead.
        found: String,
    },
    /// Another run holds the app's lock.
    #[error(transparent)]
    Lock(#[from] lkg_canonical::LockError),
    /// The canonical record cannot be read or written.
    #[error(transparent)]
    Canonical(#[from] lkg_canonical::StoreError),
    /// The canonical's volumes could not be looked up.
    #[error(transparent)]
    Presence(#[from] lkg_canonical::PresenceError),
    /// lkg could not reach the Docker engine.
    #[error(transparent)]
    Connect(#[from] lkg_swarm::docker::ConnectError),
    /// An engine request failed.
    #[error(transparent)]
    Query(#[from] lkg_swarm::docker::QueryError),
    /// The deployed identity could not be read.
    #[error(transparent)]
    Identity(#[from] lkg_swarm::IdentityError),
    /// A deploy could not run or be watched (not a verdict).
    #[error(transparent)]
    Deploy(#[from] lkg_swarm::DeployError),
    /// An undeploy failed.
    #[error(transparent)]
    Undeploy(#[from] lkg_swarm::UndeployError),
    /// A snapshot could not be taken, read or restored.
    #[error(transparent)]
    Snapshot(#[from] lkg_warmsnap::SnapError),
    /// A state file (journal, last-good, alert) could not be read or written.
    #[error("cannot {action} {path}")]
    State {
        /// What lkg was doing.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A state file is not what lkg writes.
    #[error(
        "state file {path} is damaged ({reason}); move it away and run `lkg-reconcile status` to see what lkg \
         knows about the app"
    )]
    StateFormat {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A recipe repository could not be fetched or read (git failed or timed out).
    #[error("cannot read the recipe: {0}")]
    Recipe(String),
    /// The HTTP client could not be set up.
    #[error("cannot set up the HTTP client for health checks: {0}")]
    Http(String),
    /// On a multi-node swarm, a stateful update could start the app on an
    /// empty volume, or cannot reach its data: refused before anything changed.
    #[error(transparent)]
    Placement(#[from] lkg_swarm::PlacementRefusal),
    /// A notification channel URL is invalid (its message shows it redacted).
    #[error(transparent)]
    Notify(#[from] lkg_notify::NotifyError),
}

impl ReconcileError {
    /// What kind of failure this is ([`lkg_core::Classify`], callable
    /// without importing the trait): bad input or the environment.
    pub fn kind(&self) -> lkg_core::FailureKind {
        lkg_core::Classify::kind(self)
    }
}

/// Bad input changes nothing and needs a fixed command; anything else (the
/// engine, the file system, a lock in the way) needs the environment fixed
/// and the run repeated. A verdict (rolled back, held) is not an error.
impl lkg_core::Classify for ReconcileError {
    fn kind(&self) -> lkg_core::FailureKind {
        match self {
            ReconcileError::App(_)
            | ReconcileError::Stack { .. }
            | ReconcileError::Version { .. }
            | ReconcileError::Compose(_)
            | ReconcileError::Config { .. }
            | ReconcileError::Invalid(_)
            | ReconcileError::NoVolumes { .. }
            | ReconcileError::UnknownLastGood { .. }
            | ReconcileError::NoCanonical { .. }
            | ReconcileError::NoSnapshot { .. }
            | ReconcileError::Placement(_)
            | ReconcileError::Deploy(
                lkg_swarm::DeployError::InvalidStack { .. } | lkg_swarm::DeployError::Compose(_),
            ) => lkg_core::FailureKind::Input,
            ReconcileError::Notify(e) => lkg_core::Classify::kind(e),
            _ => lkg_core::FailureKind::Environment,
        }
    }
}
