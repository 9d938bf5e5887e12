//! The errors of take, verify, restore and show.

use std::io;

use crate::archive::ArchiveError;
use crate::name::NameError;
use crate::store::StoreError;

/// Why a snapshot operation failed. Each message says what happened and
/// what to do next.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapError {
    /// An app, stack or volume name that cannot be used.
    #[error(transparent)]
    Name(#[from] NameError),
    /// lkg could not reach the Docker engine.
    #[error(transparent)]
    Connect(#[from] lkg_swarm::docker::ConnectError),
    /// A stack query failed.
    #[error(transparent)]
    Query(#[from] lkg_swarm::docker::QueryError),
    /// Another engine request failed.
    #[error("Docker engine request failed: cannot {what}")]
    Engine {
        /// What lkg asked for.
        what: String,
        /// bollard's error.
        #[source]
        source: bollard::errors::Error,
    },
    /// The stack has services: its volumes may change while lkg reads or
    /// replaces them.
    #[error(
        "stack {stack} is deployed (services: {}): undeploy it first (`docker stack rm {stack}`) \
         and wait until its containers have stopped",
        services.join(", ")
    )]
    Deployed {
        /// The stack.
        stack: String,
        /// Its services.
        services: Vec<String>,
    },
    /// A container uses a volume lkg must read or replace.
    #[error(
        "volume {volume} is in use by {}: stop{} {} first",
        describe(containers), if *running { "" } else { " and remove" }, if containers.len() == 1 { "it" } else { "them" }
    )]
    VolumeInUse {
        /// The volume.
        volume: String,
        /// The containers (`name (state)`).
        containers: Vec<String>,
        /// Whether any of them runs (take refuses only running ones; restore
        /// must remove the volume, which any container blocks).
        running: bool,
    },
    /// The stack has no volumes to snapshot.
    #[error(
        "stack {stack} has no volumes (none labelled com.docker.stack.namespace={stack}): \
         nothing to snapshot; check the stack name"
    )]
    NoVolumes {
        /// The stack.
        stack: String,
    },
    /// The app has no snapshot to verify, restore or show.
    #[error("app {app} has no last-known-good snapshot (looked in {location}): take one first with `lkg-snap take`")]
    NoSnapshot {
        /// The app.
        app: String,
        /// Where the store looked.
        location: String,
    },
    /// The snapshot store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading a volume, or writing its archive or its restored content, failed.
    #[error("cannot {action} volume {volume}")]
    Io {
        /// What lkg was doing: `archive`, `download the archive of`, `write
        /// the archive of`, `read the archive of`, `write into`.
        action: &'static str,
        /// The volume.
        volume: String,
        /// The cause (names the file when there is one).
        #[source]
        source: io::Error,
    },
    /// An archive breaks the rules of a volume archive (or cannot be read).
    /// At take time: lkg keeps no snapshot it could not restore.
    #[error("the archive of volume {volume} ({location}) is refused: {source}")]
    Refused {
        /// The volume.
        volume: String,
        /// Where the archive is.
        location: String,
        /// What is wrong.
        #[source]
        source: ArchiveError,
    },
    /// An archive's size or checksum differs from its record.
    #[error(
        "the archive of volume {volume} ({location}) does not match its record: expected {expected_bytes} bytes \
         with sha256 {expected_sha256}, found {actual_bytes} bytes with sha256 {actual_sha256}; \
         the snapshot is damaged or was tampered with: do not restore it, take a new one"
    )]
    Mismatch {
        /// The volume.
        volume: String,
        /// Where the archive is.
        location: String,
        /// Size recorded.
        expected_bytes: u64,
        /// Checksum recorded.
        expected_sha256: String,
        /// Size found.
        actual_bytes: u64,
        /// Checksum found.
        actual_sha256: String,
    },
    /// `Access::Direct` was asked for a volume that cannot be read directly.
    #[error("cannot read volume {volume} directly: {reason}; use the archive access instead")]
    DirectUnavailable {
        /// The volume.
        volume: String,
        /// Why.
        reason: String,
    },
    /// Restoring into another stack needs volume names derived from the stack.
    #[error(
        "volume {volume} of the snapshot is not named {stack}_<name>, so lkg cannot tell which volume of stack \
         {target} it becomes; restore into stack {stack} instead"
    )]
    Unmappable {
        /// The volume in the snapshot.
        volume: String,
        /// The stack it was taken from.
        stack: String,
        /// The stack asked for.
        target: String,
    },
    /// The engine answered a volume create with a volume that is not the one
    /// asked for (other driver, options or labels): another request created
    /// the name between lkg's removal and creation, typically a late request
    /// of a killed lkg run.
    #[error(
        "volume {volume} was created by another request while lkg recreated it, without the recorded driver, \
         options or labels; run the restore again"
    )]
    Recreated {
        /// The volume.
        volume: String,
    },
    /// A restore failed after it had started replacing volumes.
    // The cause goes before the advice, so the message holds its whole chain
    // (`render_chain` then finds each cause said and adds none).
    #[error(
        "restore of app {app} stopped while restoring volume {failed}{}: {}; the snapshot is intact: \
         fix the cause and run the restore again",
        if restored.is_empty() { String::new() } else { format!(" (already restored: {})", restored.join(", ")) },
        lkg_core::render_chain(&**source)
    )]
    Incomplete {
        /// The app.
        app: String,
        /// Volumes restored before the failure.
        restored: Vec<String>,
        /// The volume being restored.
        failed: String,
        /// Why.
        #[source]
        source: Box<SnapError>,
    },
    /// A volume lkg's agent was to take does not exist on its node: the
    /// job's mount created it, empty.
    #[error(
        "volume {volume} does not exist on {node} (the agent's mount found a volume created just now, empty): \
         check the node and the volume's name, and remove the empty volume there (`docker volume rm {volume}` on \
         that node)"
    )]
    NoSuchVolume {
        /// The volume.
        volume: String,
        /// `node <described>`, or `this node` inside the agent.
        node: String,
    },
    /// lkg's agent failed on the volumes' node.
    #[error("lkg's agent on node {node} failed: {message}")]
    Agent {
        /// The node (described).
        node: String,
        /// The agent's error and its causes.
        message: String,
        /// The agent's classification of it.
        kind: lkg_core::FailureKind,
    },
    /// The agent's swarm job could not be run or watched to its end.
    #[error("lkg's agent job on node {node} {problem}")]
    Job {
        /// The node (described).
        node: String,
        /// What went wrong, and what to do.
        problem: String,
    },
    /// The agent (a static `lkg-agent` binary, or its image) is not usable.
    #[error("lkg's agent {problem}")]
    AgentUnavailable {
        /// What is wrong, and what to do.
        problem: String,
    },
    /// A blocking task panicked or was cancelled (a bug).
    #[error("internal error: a background task failed")]
    Task(#[from] tokio::task::JoinError),
}

fn describe(containers: &[String]) -> String {
    match containers {
        [one] => format!("container {one}"),
        many => format!("containers {}", many.join(", ")),
    }
}

use lkg_core::Classify;

impl Classify for SnapError {
    fn kind(&self) -> lkg_core::FailureKind {
        use lkg_core::FailureKind;
        match self {
            SnapError::Name(_)
            | SnapError::NoVolumes { .. }
            | SnapError::NoSnapshot { .. }
            | SnapError::DirectUnavailable { .. }
            | SnapError::Unmappable { .. }
            | SnapError::NoSuchVolume { .. }
            | SnapError::AgentUnavailable { .. } => FailureKind::Input,
            SnapError::Agent { kind, .. } => *kind,
            // The snapshot does not check: lkg answered "no".
            SnapError::Refused { .. } | SnapError::Mismatch { .. } => FailureKind::Verdict,
            SnapError::Store(e) => e.kind(),
            SnapError::Incomplete { .. } => FailureKind::Partial,
            // A store's reader says what its failure is (a registry's digest
            // mismatch is a verdict); any other read error is the environment.
            SnapError::Io { source, .. } => store_error_in(source).map_or(FailureKind::Environment, Classify::kind),
            // The stack deployed or a volume in use, the engine unreachable,
            // a lock held, an I/O error: fix the environment and run again.
            _ => FailureKind::Environment,
        }
    }
}

/// The [`StoreError`] a store's reader carried in a read error, if any.
fn store_error_in(error: &io::Error) -> Option<&StoreError> {
    error.get_ref().and_then(|e| e.downcast_ref::<StoreError>())
}

/// Whether a read error is the store saying the archive is not what it
/// stored (a digest mismatch): a verdict on the snapshot, not an I/O failure.
pub(crate) fn is_store_verdict(error: &io::Error) -> bool {
    store_error_in(error).is_some_and(|e| e.kind() == lkg_core::FailureKind::Verdict)
}
