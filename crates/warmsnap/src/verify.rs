//! Verifying and showing a stored snapshot.

use lkg_core::Progress;
use serde::Serialize;

use crate::archive::{ArchiveSummary, inspect};
use crate::error::SnapError;
use crate::meta::{Meta, VolumeRecord};
use crate::name::AppName;
use crate::progress::{Event, Phase};
use crate::store::{LockMode, SnapshotReader, Store, StoreError};
use crate::transfer::{Reporter, blocking, blocking_with_progress};

/// A stored snapshot: where it is and its `meta.json`.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Snapshot {
    /// Where it is.
    pub location: String,
    /// Its `meta.json`.
    pub meta: Meta,
}

/// The result of [`verify`]: one verdict per volume.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct VerifyReport {
    /// The app.
    pub app: AppName,
    /// Whether every volume verified.
    pub ok: bool,
    /// The snapshot checked.
    pub snapshot: Snapshot,
    /// One check per volume of `meta.json`, in its order.
    pub volumes: Vec<VolumeCheck>,
}

impl VerifyReport {
    /// The checks that failed.
    pub fn failures(&self) -> impl Iterator<Item = &VolumeCheck> {
        self.volumes.iter().filter(|v| !v.verdict.is_ok())
    }
}

/// The check of one volume archive.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct VolumeCheck {
    /// The volume.
    pub name: String,
    /// Size recorded in `meta.json`.
    pub bytes: u64,
    /// Checksum recorded in `meta.json`.
    pub sha256: String,
    /// What was found.
    #[serde(flatten)]
    pub verdict: Verdict,
}

/// What verifying one archive found.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Verdict {
    /// Size and checksum match, and every entry passes restore's rules.
    Ok {
        /// What the archive holds.
        summary: ArchiveSummary,
    },
    /// The archive differs from its record.
    Mismatch {
        /// Size found.
        actual_bytes: u64,
        /// Checksum found.
        actual_sha256: String,
    },
    /// The archive file is missing.
    Missing,
    /// An entry breaks restore's rules.
    Refused {
        /// Which entry and why.
        reason: String,
    },
}

impl Verdict {
    /// Whether the archive verified.
    pub fn is_ok(&self) -> bool {
        matches!(self, Verdict::Ok { .. })
    }
}

/// Re-reads every archive of `app`'s last-known-good and checks its size,
/// SHA-256 and entries against `meta.json` and restore's rules. A damaged or
/// tampered snapshot is a verdict ([`VerifyReport::ok`] false), not an error;
/// errors are for what stopped the check (no snapshot, unreadable files).
pub async fn verify<S: Store>(
    store: &S,
    app: &AppName,
    progress: &dyn for<'e> Progress<Event<'e>>,
) -> Result<VerifyReport, SnapError> {
    let mut reader = open_snapshot(store, app, LockMode::Shared).await?;
    let snapshot = Snapshot { location: reader.location(), meta: reader.meta().clone() };
    let count = snapshot.meta.volumes.len();
    let mut volumes = Vec::with_capacity(count);
    for (index, record) in snapshot.meta.volumes.iter().enumerate() {
        let (back, checked) = check_volume(reader, record, (index, count), progress).await?;
        reader = back;
        let verdict = match checked {
            Ok(summary) => Verdict::Ok { summary },
            Err(SnapError::Mismatch { actual_bytes, actual_sha256, .. }) => {
                Verdict::Mismatch { actual_bytes, actual_sha256 }
            }
            Err(SnapError::Store(StoreError::MissingVolume { .. })) => Verdict::Missing,
            Err(SnapError::Refused { source, .. }) => Verdict::Refused { reason: lkg_core::render_chain(&source) },
            Err(other) => return Err(other),
        };
        volumes.push(VolumeCheck {
            name: record.name.clone(),
            bytes: record.bytes,
            sha256: record.sha256.clone(),
            verdict,
        });
    }
    let ok = volumes.iter().all(|v| v.verdict.is_ok());
    Ok(VerifyReport { app: app.clone(), ok, snapshot, volumes })
}

/// `app`'s last-known-good, if it has one.
pub async fn show<S: Store>(store: &S, app: &AppName) -> Result<Option<Snapshot>, SnapError> {
    let (store, app) = (store.clone(), app.clone());
    let reader = blocking(move || store.open(&app, LockMode::Shared)).await??;
    Ok(reader.map(|r| Snapshot { location: r.location(), meta: r.meta().clone() }))
}

/// The apps that have a last-known-good.
pub async fn list<S: Store>(store: &S) -> Result<Vec<AppName>, SnapError> {
    let store = store.clone();
    Ok(blocking(move || store.apps()).await??)
}

pub(crate) async fn open_snapshot<S: Store>(store: &S, app: &AppName, lock: LockMode) -> Result<S::Reader, SnapError> {
    let location = store.location(app);
    let (store, owned) = (store.clone(), app.clone());
    blocking(move || store.open(&owned, lock))
        .await??
        .ok_or_else(|| SnapError::NoSnapshot { app: app.to_string(), location })
}

/// Reads one archive of a snapshot and checks it against its record and the
/// archive rules. The reader moves to the blocking pool and comes back.
pub(crate) async fn check_volume<R: SnapshotReader>(
    reader: R,
    record: &VolumeRecord,
    position: (usize, usize),
    progress: &dyn for<'e> Progress<Event<'e>>,
) -> Result<(R, Result<ArchiveSummary, SnapError>), SnapError> {
    let location = reader.location();
    let mut reporter = Reporter::new(progress, Phase::Verify, &record.name, position, Some(record.bytes));
    let name = record.name.clone();
    let (reader, read) = blocking_with_progress(
        move |counter| {
            let read = reader.open_volume(&name).map(|archive| inspect(archive, counter));
            (reader, read)
        },
        &mut reporter,
    )
    .await?;
    let checked = match read {
        Err(e) => Err(SnapError::Store(e)),
        // The store found the archive is not what it stored (a registry's
        // digest mismatch): a verdict on this volume, like a refusal.
        Ok(Err(crate::archive::ArchiveError::Read(e))) if crate::error::is_store_verdict(&e) => {
            Err(SnapError::Refused {
                volume: record.name.clone(),
                location,
                source: crate::archive::ArchiveError::Read(e),
            })
        }
        Ok(Err(crate::archive::ArchiveError::Read(source))) => {
            return Err(SnapError::Io { action: "read the archive of", volume: record.name.clone(), source });
        }
        Ok(Err(source)) => Err(SnapError::Refused { volume: record.name.clone(), location, source }),
        Ok(Ok(summary)) if summary.bytes != record.bytes || summary.sha256 != record.sha256 => {
            Err(SnapError::Mismatch {
                volume: record.name.clone(),
                location,
                expected_bytes: record.bytes,
                expected_sha256: record.sha256.clone(),
                actual_bytes: summary.bytes,
                actual_sha256: summary.sha256,
            })
        }
        Ok(Ok(summary)) => {
            reporter.done(summary.bytes);
            Ok(summary)
        }
    };
    Ok((reader, checked))
}
