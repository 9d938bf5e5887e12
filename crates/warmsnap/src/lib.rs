//! Last-known-good volume snapshots that survive crashes and refuse unsafe
//! archives.
//!
//! A snapshot is one tar per volume of an app's swarm stack plus a
//! `meta.json` ([`Meta`]), taken only while the stack is undeployed. Each app
//! has one last-known-good, kept by a [`Store`] ([`LocalStore`]:
//! `<state-dir>/apps/<app>/snapshot/{meta.json, volumes/<volume>.tar}`).
//!
//! - [`take`] streams each volume through the Docker archive endpoint of a
//!   never-started helper container (or reads the mount point directly when
//!   that is safe, see [`Access`]), hashing while writing, into a staging
//!   snapshot; makes it durable, reads it back and checks it, and only then
//!   swaps it in atomically. The previous snapshot is intact until that instant.
//! - [`verify`] re-reads every archive and checks size, SHA-256 and entries.
//! - [`restore`] checks every archive and refuses unsafe entries *before*
//!   touching any live volume ([`archive`] lists the rules). With direct
//!   access ([`Access`]) it does so in one pass, extracting each archive
//!   beside the volume's data while checking it, and then swaps the extracted
//!   tree in with one atomic rename; through the engine's archive endpoint it
//!   checks first, then recreates each volume (same name, driver, options,
//!   labels) and uploads the archive into it. The content, owners and modes
//!   come back exactly.
//! - [`show`] and [`list`] read what is stored.
//!
//! Everything is async, reports progress through a [`Progress`] and never
//! prints. Errors are [`SnapError`]s that say what to do next.
//!
//! ```no_run
//! use lkg_warmsnap::{AppName, LocalStore, NoProgress, RestoreRequest, TakeRequest};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let docker = lkg_warmsnap::connect().await?;
//! let store = LocalStore::new("/var/lib/lkg");
//! let app = AppName::new("gitea")?;
//!
//! // While the stack is undeployed: keep its data as the last-known-good.
//! let taken = lkg_warmsnap::take(&docker, &store, &TakeRequest::new(app.clone(), "gitea")?.version("1.2.0"), &NoProgress).await?;
//! println!("{} volumes, {} bytes", taken.meta.volumes.len(), taken.meta.total_bytes());
//!
//! // ... an upgrade fails; the stack is undeployed again:
//! let restored = lkg_warmsnap::restore(&docker, &store, &RestoreRequest::new(app), &NoProgress).await?;
//! println!("restored {} volumes of stack {}", restored.volumes.len(), restored.stack);
//! # Ok(())
//! # }
//! ```
//!
//! # Limitations
//!
//! - Only the volumes labelled with the stack's namespace are snapshotted
//!   (those `docker stack deploy` creates); `external` volumes are not.
//! - Volumes hold files, directories, symbolic and hard links. A volume with
//!   a device file or a FIFO cannot be snapshotted; sockets are skipped.
//!   Extended attributes other than `security.capability` are not kept (the
//!   engine's archive endpoint drops them; the direct path keeps none).
//! - The engine's archive endpoint skips a file it fails to read and only
//!   logs it (moby `pkg/archive`); run as root the daemon reads everything.
//! - lkg cannot stop someone from deploying the stack while a snapshot is
//!   taken; it checks before and after. Callers serialise runs per app (the
//!   canonical lock).
//! - A restore interrupted half-way leaves a volume restored through the
//!   archive endpoint missing or partly restored, and a volume restored
//!   directly with its old or its new content; with several volumes, some
//!   may be restored and others not. The snapshot is intact; running restore
//!   again completes it.
//! - A direct restore needs free space for the new content of every volume
//!   it swaps while the old content still exists; a full disk stops it
//!   before anything live is touched.
//! - Checking hard-link targets costs 8 bytes of memory per file in a volume,
//!   and sorting a directory holds its names: a directory of millions of
//!   files needs memory in proportion.
#![cfg_attr(test, allow(clippy::disallowed_methods, reason = "unit tests write and read their fixtures"))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod access;
#[cfg(feature = "oci")]
pub mod agent;
#[cfg(feature = "oci")]
mod any;
pub mod archive;
mod direct;
mod engine;
mod error;
mod meta;
mod name;
#[cfg(feature = "oci")]
pub mod oci;
mod progress;
#[cfg(feature = "oci")]
pub mod remote;
mod restore;
mod store;
mod swap;
mod take;
mod transfer;
mod verify;

pub use access::Access;
#[cfg(all(feature = "oci", feature = "cli"))]
pub use any::StoreArgs;
#[cfg(feature = "oci")]
pub use any::{AnyReader, AnyStaging, AnyStore};
pub use archive::{ArchiveError, ArchiveSummary, Refusal};
pub use bollard::Docker;
pub use engine::{HELPER_IMAGE, HELPER_LABEL, HELPER_PID_LABEL};
pub use error::SnapError;
pub use lkg_core::{NoProgress, Progress};
pub use lkg_swarm::docker::{ConnectError, connect, connect_to};
pub use meta::{FORMAT, Meta, MetaError, VolumeRecord};
pub use name::{AppName, AppNameError, NameError};
#[cfg(feature = "oci")]
pub use oci::{OciReader, OciStaging, OciStore, StoreUrlError};
pub use progress::{Event, Phase};
pub use restore::{RestoreReport, RestoreRequest, RestoredVolume, restore};
pub use store::{
    LocalReader, LocalStaging, LocalStore, LockMode, SnapshotReader, Staging, Store, StoreError, VolumeSink,
};
pub use take::{TakeReport, TakeRequest, TakenVolume, take};
pub use verify::{Snapshot, Verdict, VerifyReport, VolumeCheck, list, show, verify};

// The README's examples are compiled (and the first one run) with the doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExample;
