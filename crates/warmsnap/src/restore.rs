//! Restoring a snapshot into a stack's volumes.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bollard::Docker;
use lkg_core::Progress;
use lkg_swarm::docker::{STACK_NAMESPACE_LABEL, stack_volumes};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::access::{Access, Locality, Purpose, VolumeSpec, choose_access};
use crate::archive::{ArchiveError, WalkError, read_archive};
use crate::direct::Extractor;
use crate::engine::{Engine, locality};
use crate::error::SnapError;
use crate::meta::{Meta, VolumeRecord};
use crate::name::{AppName, NameError, check_object_name};
use crate::progress::{Event, Phase};
use crate::store::{LockMode, SnapshotReader, Store};
use crate::swap::{Place, Staged};
use crate::transfer::{Reporter, blocking, blocking_with_progress};
use crate::verify::{check_volume, open_snapshot};
use lkg_core::hex;

/// Chunks of an upload in flight: 8 × 256 KiB.
const UPLOAD_CHUNK: usize = 256 * 1024;
const UPLOAD_QUEUE: usize = 8;

/// Which snapshot to restore, and where.
///
/// ```
/// use lkg_warmsnap::{AppName, RestoreRequest};
/// let request = RestoreRequest::new(AppName::new("gitea")?).stack("gitea-staging")?;
/// assert_eq!(request.stack.as_deref(), Some("gitea-staging"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RestoreRequest {
    /// Whose last-known-good to restore.
    pub app: AppName,
    /// The stack to restore into; `None`: the one recorded in `meta.json`.
    pub stack: Option<String>,
    /// How to write the volumes: [`Access::Direct`] extracts into the mount
    /// point of the recreated volume; [`Access::Archive`] uploads through the
    /// engine's archive endpoint. `Auto` picks direct where it is safe.
    pub access: Access,
}

impl RestoreRequest {
    /// Restores `app`'s last-known-good into the stack it was taken from.
    pub fn new(app: AppName) -> RestoreRequest {
        RestoreRequest { app, stack: None, access: Access::Auto }
    }

    /// Sets how volumes are written.
    #[must_use]
    pub fn access(mut self, access: Access) -> RestoreRequest {
        self.access = access;
        self
    }

    /// Restores into `stack` instead: volume `<old>_<name>` becomes `<stack>_<name>`.
    pub fn stack(mut self, stack: &str) -> Result<RestoreRequest, NameError> {
        check_object_name("stack", stack)?;
        self.stack = Some(stack.to_owned());
        Ok(self)
    }
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct RestoreReport {
    /// The app.
    pub app: AppName,
    /// The stack restored into.
    pub stack: String,
    /// Where the snapshot is.
    pub location: String,
    /// The snapshot's `meta.json`.
    pub snapshot: Meta,
    /// The volumes replaced (or recreated), in `meta.json` order.
    pub volumes: Vec<RestoredVolume>,
    /// Volumes of the stack that the snapshot does not hold: left as they are.
    pub untouched: Vec<String>,
}

/// One restored volume.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct RestoredVolume {
    /// The live volume.
    pub name: String,
    /// The snapshot's volume it was restored from.
    pub from: String,
    /// Archive bytes uploaded.
    pub bytes: u64,
    /// `true`: the volume existed and was replaced; `false`: it was missing
    /// and was created.
    pub existed: bool,
    /// [`Access::Archive`] or [`Access::Direct`]: how it was written.
    pub access: Access,
}

/// One volume to restore: from which record, into which volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Planned {
    pub(crate) from: String,
    pub(crate) spec: VolumeSpec,
    pub(crate) existed: bool,
}

/// The live volume a snapshot volume goes to: the same name in the same
/// stack; `<stack>_<name>` → `<target>_<name>` in another stack.
pub(crate) fn target_name(meta: &Meta, record: &VolumeRecord, target: &str) -> Result<String, SnapError> {
    if meta.stack == target {
        return Ok(record.name.clone());
    }
    record
        .name
        .strip_prefix(&meta.stack)
        .and_then(|rest| rest.strip_prefix('_'))
        .filter(|rest| !rest.is_empty())
        .map(|rest| format!("{target}_{rest}"))
        .ok_or_else(|| SnapError::Unmappable {
            volume: record.name.clone(),
            stack: meta.stack.clone(),
            target: target.to_owned(),
        })
}

/// Decides how each volume is recreated: like the live volume when it
/// exists (same driver, options, labels), else as recorded in the snapshot,
/// with the stack label naming the target stack.
pub(crate) fn plan(meta: &Meta, target: &str, live: &BTreeMap<String, VolumeSpec>) -> Result<Vec<Planned>, SnapError> {
    meta.volumes
        .iter()
        .map(|record| {
            let name = target_name(meta, record, target)?;
            let (spec, existed) = if let Some(spec) = live.get(&name) {
                (spec.clone(), true)
            } else {
                let mut labels = record.labels.clone();
                if let Some(stack) = labels.get_mut(STACK_NAMESPACE_LABEL) {
                    target.clone_into(stack);
                }
                (VolumeSpec { name, driver: record.driver.clone(), options: record.options.clone(), labels }, false)
            };
            Ok(Planned { from: record.name.clone(), spec, existed })
        })
        .collect()
}

/// Restores `request.app`'s last-known-good into its stack's volumes.
///
/// Nothing live is touched until every archive has passed its checks (size,
/// SHA-256, every entry against the archive rules) and the stack is quiet
/// (no services, no container using a target volume). A volume this machine
/// can write directly ([`Access`]) is restored in one pass: the archive is
/// extracted beside the live data while it is checked, and once every archive
/// has passed, the extracted tree is swapped in with one atomic rename, and
/// the replaced one removed. Any other volume's archive is checked first, and
/// once every archive has passed, the volume is removed and recreated empty
/// with the same name, driver, options and labels (the archive endpoint can
/// add files but not delete them, so this is how files absent from the
/// snapshot disappear), and the archive is uploaded into it (or extracted
/// into its mount point). Owners, modes, links and mtimes come back as
/// archived. A volume that was removed is created.
///
/// If a failure stops the restore after it started replacing volumes, the
/// error is [`SnapError::Incomplete`]: the snapshot is intact and running the
/// restore again completes it.
pub async fn restore<S: Store>(
    docker: &Docker,
    store: &S,
    request: &RestoreRequest,
    progress: &dyn for<'e> Progress<Event<'e>>,
) -> Result<RestoreReport, SnapError> {
    let engine = Engine::new(docker);
    let reader = open_snapshot(store, &request.app, LockMode::Exclusive).await?;
    let meta = reader.meta().clone();
    let location = reader.location();
    let stack = request.stack.clone().unwrap_or_else(|| meta.stack.clone());
    let targets = meta.volumes.iter().map(|r| target_name(&meta, r, &stack)).collect::<Result<Vec<_>, _>>()?;
    // Cheap refusals first, before reading every archive.
    engine.check_quiet(&request.app, &stack, &targets, Purpose::Take).await?;

    engine.remove_leftover_helpers(&request.app).await?;
    let mut live = BTreeMap::new();
    let mut mountpoints = BTreeMap::new();
    for target in &targets {
        if let Some(volume) = engine.volume(target).await? {
            mountpoints.insert(target.clone(), volume.mountpoint.clone());
            live.insert(target.clone(), VolumeSpec::from(&volume));
        }
    }
    let planned = plan(&meta, &stack, &live)?;
    // Refused here, before anything is touched, if direct access was asked
    // for and is impossible.
    let locality = match request.access {
        Access::Archive => Locality { same_host: false, root: false },
        Access::Auto | Access::Direct => locality(docker).await,
    };
    let accesses =
        planned.iter().map(|p| choose_access(request.access, &p.spec, &locality)).collect::<Result<Vec<_>, _>>()?;
    engine.check_quiet(&request.app, &stack, &targets, Purpose::Restore).await?;
    engine.ensure_helper_image().await?;
    let mut untouched: Vec<String> =
        stack_volumes(docker, &stack).await?.into_iter().map(|v| v.name).filter(|n| !targets.contains(n)).collect();
    untouched.sort();
    let mut methods = Vec::with_capacity(planned.len());
    for (planned, access) in planned.iter().zip(accesses) {
        let mountpoint = mountpoints.get(&planned.spec.name).map(String::as_str);
        methods.push(choose_method(&engine, request, planned, access, mountpoint).await?);
    }

    let mut staged = Vec::with_capacity(planned.len());
    let prepared = prepare(reader, &meta, &planned, &mut methods, &mut staged, progress).await;
    let reader = match prepared {
        Ok(reader) => reader,
        Err(e) => {
            discard(staged.into_iter().flatten().collect()).await;
            return Err(e);
        }
    };
    let volumes = replace(&engine, request, &reader, &meta, &planned, &methods, staged, progress).await?;
    drop(reader);
    engine.sweep_late_helpers(&request.app).await;
    Ok(RestoreReport { app: request.app.clone(), stack, location, snapshot: meta, volumes, untouched })
}

/// How one volume is restored, decided before anything live is touched.
#[derive(Debug)]
enum Method {
    /// Extracted beside the live data while it is checked, then swapped in.
    Swap(Place),
    /// Checked first; then removed, created again empty and filled.
    Recreate(Access),
}

/// A volume that exists and is written directly is swapped when its mount
/// point is the engine's and the file system can swap two directories.
async fn choose_method(
    engine: &Engine<'_>,
    request: &RestoreRequest,
    planned: &Planned,
    access: Access,
    mountpoint: Option<&str>,
) -> Result<Method, SnapError> {
    let Some(mountpoint) = mountpoint.filter(|_| access == Access::Direct && planned.existed) else {
        return Ok(Method::Recreate(access));
    };
    let name = &planned.spec.name;
    let helper = engine.create_helper(&request.app, name, false).await?;
    let local = engine.is_local_mount(&helper, mountpoint).await;
    let removed = engine.remove_container(&helper).await;
    match local? {
        Ok(()) => removed?,
        Err(_) if request.access == Access::Auto => return Ok(Method::Recreate(Access::Archive)),
        Err(reason) => return Err(SnapError::DirectUnavailable { volume: name.clone(), reason }),
    }
    let path = PathBuf::from(mountpoint);
    let place = blocking(move || Place::of(&path)).await?.map_err(|source| SnapError::Io {
        action: "inspect the mount point of",
        volume: name.clone(),
        source,
    })?;
    Ok(place.map_or(Method::Recreate(Access::Direct), Method::Swap))
}

/// Checks every archive, staging those of swapped volumes on the way (into
/// `staged`, one entry per volume). Touches no live data. On an error the
/// caller discards what was staged.
async fn prepare<R: SnapshotReader>(
    mut reader: R,
    meta: &Meta,
    planned: &[Planned],
    methods: &mut [Method],
    staged: &mut Vec<Option<Staged>>,
    progress: &dyn for<'e> Progress<Event<'e>>,
) -> Result<R, SnapError> {
    let count = meta.volumes.len();
    for (index, record) in meta.volumes.iter().enumerate() {
        if let Method::Swap(place) = &methods[index] {
            let target = &planned[index].spec.name;
            if let Some(one) = stage(&reader, place.clone(), record, target, (index, count), progress).await? {
                staged.push(Some(one));
                continue;
            }
            // This file system cannot swap directories atomically.
            methods[index] = Method::Recreate(Access::Direct);
        }
        let (back, checked) = check_volume(reader, record, (index, count), progress).await?;
        reader = back;
        checked?;
        staged.push(None);
    }
    Ok(reader)
}

/// Extracts one archive into a staging directory beside the live data of
/// `target`, checking every entry on the way and the size and SHA-256 at the
/// end. `None` if the file system cannot swap directories atomically.
async fn stage<R: SnapshotReader>(
    reader: &R,
    place: Place,
    record: &VolumeRecord,
    target: &str,
    position: (usize, usize),
    progress: &dyn for<'e> Progress<Event<'e>>,
) -> Result<Option<Staged>, SnapError> {
    let archive = reader.open_volume(&record.name)?;
    let location = reader.location();
    let mut reporter = Reporter::new(progress, Phase::Restore, target, position, Some(record.bytes));
    let (record, target) = (record.clone(), target.to_owned());
    let staged = blocking_with_progress(
        move |counter| -> Result<Option<(Staged, u64)>, SnapError> {
            let io = |action: &'static str| {
                let volume = target.clone();
                move |source| SnapError::Io { action, volume, source }
            };
            place.remove_leftovers().map_err(io("remove what an interrupted restore left beside"))?;
            let Some(staged) = place.stage().map_err(io("stage the restore of"))? else { return Ok(None) };
            let extracted = extract_checked(archive, staged.root(), &record, &target, &location, counter);
            match extracted {
                Ok(bytes) => Ok(Some((staged, bytes))),
                Err(e) => {
                    // Best effort: what is left is removed by the next run.
                    let _ = staged.discard();
                    Err(e)
                }
            }
        },
        &mut reporter,
    )
    .await??;
    Ok(staged.map(|(staged, bytes)| {
        reporter.done(bytes);
        staged
    }))
}

/// Extracts `archive` into the empty directory `root` (volume `target`'s
/// new tree) while checking every entry, then its size and SHA-256 against
/// `record`; returns its size.
pub(crate) fn extract_checked(
    archive: impl Read + Send,
    root: &std::path::Path,
    record: &VolumeRecord,
    target: &str,
    location: &str,
    counter: &AtomicU64,
) -> Result<u64, SnapError> {
    let io = |action: &'static str| {
        let volume = target.to_owned();
        move |source| SnapError::Io { action, volume, source }
    };
    let mut extractor = Extractor::new(root);
    let summary = read_archive(archive, counter, &mut extractor).map_err(|e| match e {
        WalkError::Archive(ArchiveError::Read(source)) => {
            SnapError::Io { action: "read the archive of", volume: record.name.clone(), source }
        }
        WalkError::Archive(source) => {
            SnapError::Refused { volume: record.name.clone(), location: location.to_owned(), source }
        }
        WalkError::Visit(source) => io("stage the restore of")(source),
    })?;
    extractor.finish().map_err(io("stage the restore of"))?;
    if summary.bytes != record.bytes || summary.sha256 != record.sha256 {
        return Err(SnapError::Mismatch {
            volume: record.name.clone(),
            location: location.to_owned(),
            expected_bytes: record.bytes,
            expected_sha256: record.sha256.clone(),
            actual_bytes: summary.bytes,
            actual_sha256: summary.sha256,
        });
    }
    Ok(summary.bytes)
}

/// Removes stagings that will not be swapped in. Best effort: the next
/// restore or take removes what is left.
async fn discard(staged: Vec<Staged>) {
    if !staged.is_empty() {
        let _ = blocking(move || staged.into_iter().for_each(|s| drop(s.discard()))).await;
    }
}

/// Replaces the live data once every archive has passed: the staged volumes
/// first (one rename each), then the others (removed, recreated, filled).
#[allow(clippy::too_many_arguments, reason = "the state of one restore, passed once")]
async fn replace<R: SnapshotReader>(
    engine: &Engine<'_>,
    request: &RestoreRequest,
    reader: &R,
    meta: &Meta,
    planned: &[Planned],
    methods: &[Method],
    staged: Vec<Option<Staged>>,
    progress: &dyn for<'e> Progress<Event<'e>>,
) -> Result<Vec<RestoredVolume>, SnapError> {
    let count = meta.volumes.len();
    let restored_volume = |index: usize, access: Access| RestoredVolume {
        name: planned[index].spec.name.clone(),
        from: planned[index].from.clone(),
        bytes: meta.volumes[index].bytes,
        existed: planned[index].existed,
        access,
    };
    let mut restored: Vec<Option<RestoredVolume>> = vec![None; count];
    let names = |restored: &[Option<RestoredVolume>]| restored.iter().flatten().map(|v| v.name.clone()).collect();

    let mut staged: Vec<(usize, Staged)> =
        staged.into_iter().enumerate().filter_map(|(index, s)| Some((index, s?))).collect();
    staged.reverse();
    let mut replaced = Vec::with_capacity(staged.len());
    while let Some((index, one)) = staged.pop() {
        match blocking(move || one.commit()).await? {
            Ok(old) => {
                replaced.push(old);
                restored[index] = Some(restored_volume(index, Access::Direct));
            }
            Err(source) => {
                discard(staged.into_iter().map(|(_, s)| s).collect()).await;
                let name = planned[index].spec.name.clone();
                return Err(SnapError::Incomplete {
                    app: request.app.to_string(),
                    restored: names(&restored),
                    failed: name.clone(),
                    source: Box::new(SnapError::Io { action: "swap in the restored data of", volume: name, source }),
                });
            }
        }
    }
    // Best effort, and before the volumes below are filled, which may need
    // the space: what is left is removed by the next restore or take.
    if !replaced.is_empty() {
        let _ = blocking(move || replaced.into_iter().for_each(|old| drop(old.remove()))).await;
    }

    for (index, ((planned, record), method)) in planned.iter().zip(&meta.volumes).zip(methods).enumerate() {
        let Method::Recreate(access) = *method else { continue };
        let mut reporter =
            Reporter::new(progress, Phase::Restore, &planned.spec.name, (index, count), Some(record.bytes));
        match replace_volume(engine, &request.app, reader, planned, record, access, &mut reporter).await {
            Ok(access) => {
                reporter.done(record.bytes);
                restored[index] = Some(restored_volume(index, access));
            }
            Err(e) => {
                return Err(SnapError::Incomplete {
                    app: request.app.to_string(),
                    restored: names(&restored),
                    failed: planned.spec.name.clone(),
                    source: Box::new(e),
                });
            }
        }
    }
    Ok(restored.into_iter().flatten().collect())
}

/// Recreates one volume empty and fills it; returns the access used.
async fn replace_volume<R: SnapshotReader>(
    engine: &Engine<'_>,
    app: &AppName,
    reader: &R,
    planned: &Planned,
    record: &VolumeRecord,
    access: Access,
    reporter: &mut Reporter<'_>,
) -> Result<Access, SnapError> {
    let archive = reader.open_volume(&planned.from)?;
    if planned.existed {
        engine.remove_volume(app, &planned.spec.name).await?;
    }
    let volume = engine.create_volume(&planned.spec).await?;
    let helper = engine.create_helper(app, &planned.spec.name, true).await?;
    let filled: Result<Access, SnapError> = async {
        // The volume is already empty: if its mount point turns out not to be
        // the engine's, the archive endpoint is the way to go on.
        let access = match access {
            Access::Direct if engine.is_local_mount(&helper, &volume.mountpoint).await?.is_ok() => Access::Direct,
            _ => Access::Archive,
        };
        match access {
            Access::Direct => extract(PathBuf::from(&volume.mountpoint), archive, record, reporter).await?,
            _ => upload(engine, &helper, archive, record, reporter).await?,
        }
        Ok(access)
    }
    .await;
    let removed = engine.remove_container(&helper).await;
    let access = filled?;
    removed?;
    Ok(access)
}

/// Extracts the archive into the mount point, checking every entry again on
/// the way (the bytes written must be the bytes verified).
async fn extract(
    mountpoint: PathBuf,
    archive: Box<dyn Read + Send>,
    record: &VolumeRecord,
    reporter: &mut Reporter<'_>,
) -> Result<(), SnapError> {
    let volume = record.name.clone();
    let extracted = blocking_with_progress(
        move |counter| -> Result<(u64, String), SnapError> {
            let mut extractor = Extractor::new(&mountpoint);
            let summary = read_archive(archive, counter, &mut extractor).map_err(|e| match e {
                WalkError::Archive(source) => SnapError::Refused {
                    volume: volume.clone(),
                    location: "the snapshot (changed between verify and restore)".to_owned(),
                    source,
                },
                WalkError::Visit(source) => SnapError::Io { action: "write into", volume: volume.clone(), source },
            })?;
            extractor.finish().map_err(|source| SnapError::Io { action: "write into", volume, source })?;
            Ok((summary.bytes, summary.sha256))
        },
        reporter,
    )
    .await??;
    check_restored(record, extracted)
}

fn check_restored(record: &VolumeRecord, (bytes, sha256): (u64, String)) -> Result<(), SnapError> {
    if bytes != record.bytes || sha256 != record.sha256 {
        return Err(SnapError::Mismatch {
            volume: record.name.clone(),
            location: "the snapshot (changed between verify and restore)".to_owned(),
            expected_bytes: record.bytes,
            expected_sha256: record.sha256.clone(),
            actual_bytes: bytes,
            actual_sha256: sha256,
        });
    }
    Ok(())
}

/// Streams the archive from the store into the helper, hashing it again on
/// the way: the bytes uploaded must be the bytes verified.
async fn upload(
    engine: &Engine<'_>,
    helper: &str,
    mut archive: Box<dyn Read + Send>,
    record: &VolumeRecord,
    reporter: &mut Reporter<'_>,
) -> Result<(), SnapError> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<io::Result<Vec<u8>>>(UPLOAD_QUEUE);
    let counter = Arc::new(AtomicU64::new(0));
    let published = Arc::clone(&counter);
    let reading = tokio::task::spawn_blocking(move || -> io::Result<(u64, String)> {
        let mut hasher = Sha256::new();
        let mut total = 0u64;
        loop {
            let mut chunk = vec![0u8; UPLOAD_CHUNK];
            let n = match archive.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Abort the request body, so the engine does not take a cut archive for a whole one.
                    let _ = tx.blocking_send(Err(io::Error::new(e.kind(), e.to_string())));
                    return Err(e);
                }
            };
            chunk.truncate(n);
            hasher.update(&chunk);
            total += n as u64;
            published.store(total, Ordering::Relaxed);
            if tx.blocking_send(Ok(chunk)).is_err() {
                return Err(io::Error::other("the engine stopped reading the upload"));
            }
        }
        Ok((total, hex(&hasher.finalize())))
    });
    let chunks = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let uploading = engine.upload(helper, chunks);
    tokio::pin!(uploading);
    let mut ticks = tokio::time::interval(std::time::Duration::from_millis(200));
    let uploaded = loop {
        tokio::select! {
            result = &mut uploading => break result,
            _ = ticks.tick() => reporter.bytes(counter.load(Ordering::Relaxed)),
        }
    };
    let read = reading.await?;
    let read =
        read.map_err(|source| SnapError::Io { action: "read the archive of", volume: record.name.clone(), source })?;
    uploaded.map_err(|source| SnapError::Engine {
        what: format!("upload the archive of volume {} into its helper container", record.name),
        source,
    })?;
    check_restored(record, read)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(stack: &str, volumes: &[&str]) -> Meta {
        let records = volumes
            .iter()
            .map(|name| VolumeRecord {
                name: (*name).to_owned(),
                bytes: 1024,
                sha256: "0".repeat(64),
                driver: "local".to_owned(),
                options: BTreeMap::from([("type".to_owned(), "tmpfs".to_owned())]),
                labels: BTreeMap::from([(STACK_NAMESPACE_LABEL.to_owned(), stack.to_owned())]),
            })
            .collect();
        Meta::new(AppName::new("app").unwrap(), stack, None, None, None, jiff::Timestamp::UNIX_EPOCH, records)
    }

    #[test]
    fn same_stack_keeps_names_and_live_volumes_keep_their_spec() {
        let meta = meta("app", &["app_data", "app_db"]);
        let live_spec = VolumeSpec {
            name: "app_data".to_owned(),
            driver: "local".to_owned(),
            options: BTreeMap::new(),
            labels: BTreeMap::from([("x".to_owned(), "live".to_owned())]),
        };
        let live = BTreeMap::from([("app_data".to_owned(), live_spec.clone())]);
        let planned = plan(&meta, "app", &live).unwrap();
        assert_eq!(planned[0], Planned { from: "app_data".to_owned(), spec: live_spec, existed: true });
        // A removed volume is created as recorded.
        assert_eq!(planned[1].spec.name, "app_db");
        assert!(!planned[1].existed);
        assert_eq!(planned[1].spec.options, BTreeMap::from([("type".to_owned(), "tmpfs".to_owned())]));
    }

    #[test]
    fn another_stack_renames_volumes_and_their_stack_label() {
        let meta = meta("app", &["app_data"]);
        let planned = plan(&meta, "app-staging", &BTreeMap::new()).unwrap();
        assert_eq!(planned[0].spec.name, "app-staging_data");
        assert_eq!(planned[0].spec.labels[STACK_NAMESPACE_LABEL], "app-staging");
    }

    #[test]
    fn a_volume_not_named_after_its_stack_cannot_move_to_another_stack() {
        let meta = meta("app", &["shared"]);
        let err = plan(&meta, "other", &BTreeMap::new()).unwrap_err();
        assert!(matches!(err, SnapError::Unmappable { .. }), "{err}");
        assert!(plan(&meta, "app", &BTreeMap::new()).is_ok());
    }
}
