//! Taking a snapshot of a stack's volumes while the stack is undeployed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use bollard::Docker;
use bollard::models::Volume;
use futures_util::StreamExt;
use jiff::Timestamp;
use lkg_core::Progress;
use lkg_swarm::docker::stack_volumes;
use serde::Serialize;

use crate::access::{Access, Locality, Purpose, VolumeSpec, choose_access};
use crate::archive::{ArchiveError, ArchiveSummary, check_chunks, inspect};
use crate::direct::{Print, print_directory};
use crate::engine::{Engine, locality};
use crate::error::SnapError;
use crate::meta::{Meta, VolumeRecord};
use crate::name::{AppName, NameError, check_object_name};
use crate::progress::{Event, Phase};
use crate::store::{Staging, Store, StoreError, VolumeSink};
use crate::swap::Place;
use crate::transfer::{ChunkWriter, HashingWriter, Reporter, blocking, blocking_with_progress};

/// What to snapshot and what to record about it.
///
/// ```
/// use lkg_warmsnap::{Access, AppName, TakeRequest};
/// let request = TakeRequest::new(AppName::new("gitea")?, "gitea")?
///     .version("1.2.0+1.21.4")
///     .commit("0a1b2c3")
///     .access(Access::Archive);
/// assert_eq!(request.stack, "gitea");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TakeRequest {
    /// Whose last-known-good this becomes.
    pub app: AppName,
    /// The stack whose volumes are taken (by the `com.docker.stack.namespace` label).
    pub stack: String,
    /// Recorded in `meta.json`.
    pub domain: Option<String>,
    /// Recorded in `meta.json`: the version deployed on this data.
    pub version: Option<String>,
    /// Recorded in `meta.json`: its commit.
    pub commit: Option<String>,
    /// How to read the volumes.
    pub access: Access,
}

impl TakeRequest {
    /// A request for `app`'s volumes in `stack`.
    pub fn new(app: AppName, stack: &str) -> Result<TakeRequest, NameError> {
        check_object_name("stack", stack)?;
        Ok(TakeRequest {
            app,
            stack: stack.to_owned(),
            domain: None,
            version: None,
            commit: None,
            access: Access::Auto,
        })
    }

    /// Sets the domain to record.
    #[must_use]
    pub fn domain(mut self, domain: impl Into<String>) -> TakeRequest {
        self.domain = Some(domain.into());
        self
    }

    /// Sets the version to record.
    #[must_use]
    pub fn version(mut self, version: impl Into<String>) -> TakeRequest {
        self.version = Some(version.into());
        self
    }

    /// Sets the commit to record.
    #[must_use]
    pub fn commit(mut self, commit: impl Into<String>) -> TakeRequest {
        self.commit = Some(commit.into());
        self
    }

    /// The `meta.json` of a snapshot of `records` taken now for this request.
    pub(crate) fn meta(&self, records: Vec<VolumeRecord>) -> Meta {
        let now = Timestamp::now();
        Meta::new(
            self.app.clone(),
            &self.stack,
            self.domain.clone(),
            self.version.clone(),
            self.commit.clone(),
            now.round(jiff::Unit::Second).unwrap_or(now),
            records,
        )
    }

    /// Sets how volumes are read.
    #[must_use]
    pub fn access(mut self, access: Access) -> TakeRequest {
        self.access = access;
        self
    }
}

/// A snapshot taken and made the last-known-good.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct TakeReport {
    /// Where it is.
    pub location: String,
    /// Its `meta.json`.
    pub meta: Meta,
    /// How each volume was read and what its archive holds.
    pub volumes: Vec<TakenVolume>,
    /// With a registry store: bytes of archives uploaded (0 when the
    /// registry had every one); `None` with the local store.
    pub uploaded_bytes: Option<u64>,
}

/// One volume of a [`TakeReport`].
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct TakenVolume {
    /// The volume.
    pub name: String,
    /// [`Access::Archive`] or [`Access::Direct`]: how it was read.
    pub access: Access,
    /// What the archive holds.
    pub summary: ArchiveSummary,
    /// The volume had not changed since the last-known-good (the same
    /// print: every entry's path, metadata, inode and ctime), so the store
    /// kept that snapshot's archive and the volume's content was not read.
    pub unchanged: bool,
}

/// Takes a snapshot of `request.stack`'s volumes and makes it `request.app`'s
/// last-known-good.
///
/// Refuses while the stack has services or a running container uses one of
/// its volumes. Each volume is streamed into a staging snapshot (SHA-256 and
/// size computed while writing, never the whole volume in memory), made
/// durable, read back and checked against the rules restore applies, and only
/// then swapped in for the previous snapshot, which stays intact until that
/// moment. If anything fails, the previous snapshot is untouched and the
/// staging is removed (or, after a crash, removed by the next take).
pub async fn take<S: Store>(
    docker: &Docker,
    store: &S,
    request: &TakeRequest,
    progress: &dyn for<'e> Progress<Event<'e>>,
) -> Result<TakeReport, SnapError> {
    let engine = Engine::new(docker);
    let mut volumes = stack_volumes(docker, &request.stack).await?;
    volumes.sort_by(|a, b| a.name.cmp(&b.name));
    if volumes.is_empty() {
        return Err(SnapError::NoVolumes { stack: request.stack.clone() });
    }
    for volume in &volumes {
        check_object_name("volume", &volume.name)?;
    }
    let names: Vec<String> = volumes.iter().map(|v| v.name.clone()).collect();
    engine.check_quiet(&request.app, &request.stack, &names, Purpose::Take).await?;

    let mut staging = {
        let (store, app) = (store.clone(), request.app.clone());
        blocking(move || store.stage(&app)).await??
    };
    engine.remove_leftover_helpers(&request.app).await?;
    let locality = match request.access {
        Access::Archive => Locality { same_host: false, root: false },
        Access::Auto | Access::Direct => locality(docker).await,
    };

    // Volumes new to a registry store are uploaded while they are copied.
    let before = store.uploaded_bytes();
    let count = volumes.len();
    let mut copied = Vec::with_capacity(count);
    for (index, volume) in volumes.iter().enumerate() {
        let access = choose_access(request.access, &VolumeSpec::from(volume), &locality)?;
        let mut reporter = Reporter::new(progress, Phase::Take, &volume.name, (index, count), None);
        let copy = copy_volume(&engine, request, volume, access, &mut staging, &mut reporter).await?;
        reporter.done(copy.bytes);
        copied.push(copy);
    }

    // Check each archive with restore's rules (a snapshot that could not be
    // restored is not worth keeping): read back from the staging, or as it
    // was written when the store keeps the durable copy elsewhere.
    let mut records = Vec::with_capacity(count);
    let mut taken = Vec::with_capacity(count);
    for (index, (volume, copy)) in volumes.iter().zip(copied).enumerate() {
        let location = format!("new snapshot of app {}", request.app);
        let (bytes, sha256) = (copy.bytes, copy.sha256.clone());
        let mut reporter = Reporter::new(progress, Phase::Verify, &volume.name, (index, count), Some(bytes));
        let refused = |source| SnapError::Refused { volume: volume.name.clone(), location: location.clone(), source };
        let summary = match copy.check {
            Check::Adopted(summary) => summary,
            Check::AsWritten(checked) => checked.result().map_err(refused)?,
            Check::ReadBack => {
                let archive = staging.open_volume(&volume.name)?;
                blocking_with_progress(move |counter| inspect(archive, counter), &mut reporter)
                    .await?
                    .map_err(refused)?
            }
        };
        if summary.bytes != bytes || summary.sha256 != sha256 {
            return Err(SnapError::Mismatch {
                volume: volume.name.clone(),
                location,
                expected_bytes: bytes,
                expected_sha256: sha256,
                actual_bytes: summary.bytes,
                actual_sha256: summary.sha256,
            });
        }
        reporter.done(bytes);
        records.push(VolumeRecord {
            name: volume.name.clone(),
            bytes,
            sha256,
            driver: volume.driver.clone(),
            options: volume.options.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            labels: volume.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        });
        taken.push(TakenVolume { name: volume.name.clone(), access: copy.access, summary, unchanged: copy.unchanged });
    }

    // Someone may have deployed while the volumes were read.
    engine.check_quiet(&request.app, &request.stack, &names, Purpose::Take).await?;
    let meta = request.meta(records);
    let committed = meta.clone();
    let location = blocking(move || staging.commit(&committed)).await??;
    let uploaded_bytes = store.uploaded_bytes().zip(before).map(|(after, before)| after - before);
    engine.sweep_late_helpers(&request.app).await;
    Ok(TakeReport { location, meta, volumes: taken, uploaded_bytes })
}

/// One volume copied into the staging.
struct Copied {
    access: Access,
    bytes: u64,
    sha256: String,
    check: Check,
    unchanged: bool,
}

/// How a copied volume's archive gets its check with restore's rules.
enum Check {
    /// Read it back from the staging.
    ReadBack,
    /// Checked as it was written.
    AsWritten(CheckedSink),
    /// The last-known-good's archive, checked when it was taken; the
    /// summary's counts are the volume walk's.
    Adopted(ArchiveSummary),
}

/// Copies one volume into `staging` through a helper container (its archive
/// endpoint, or only its view of the mount point for the direct path). On
/// the direct path, a volume whose print is the one the last-known-good's
/// archive was taken at is adopted instead of read.
async fn copy_volume<G: Staging>(
    engine: &Engine<'_>,
    request: &TakeRequest,
    volume: &Volume,
    access: Access,
    staging: &mut G,
    reporter: &mut Reporter<'_>,
) -> Result<Copied, SnapError> {
    let helper = engine.create_helper(&request.app, &volume.name, false).await?;
    let copied = async {
        let access = match access {
            Access::Direct => match engine.is_local_mount(&helper, &volume.mountpoint).await? {
                Ok(()) => Access::Direct,
                Err(_) if request.access == Access::Auto => Access::Archive,
                Err(reason) => return Err(SnapError::DirectUnavailable { volume: volume.name.clone(), reason }),
            },
            Access::Auto | Access::Archive => Access::Archive,
        };
        if access == Access::Direct {
            remove_restore_leftovers(&volume.name, PathBuf::from(&volume.mountpoint)).await?;
        }
        if access == Access::Direct && staging.may_adopt(&volume.name) {
            let mountpoint = PathBuf::from(&volume.mountpoint);
            let print = blocking(move || print_directory(&mountpoint)).await?.map_err(|source| SnapError::Io {
                action: "walk",
                volume: volume.name.clone(),
                source,
            })?;
            if let Some(value) = &print.value
                && let Some((bytes, sha256)) = staging.adopt_unchanged(&volume.name, value)?
            {
                staging.note_print(&volume.name, value);
                let summary = ArchiveSummary { bytes, sha256: sha256.clone(), ..print.summary };
                return Ok(Copied { access, bytes, sha256, check: Check::Adopted(summary), unchanged: true });
            }
        }
        let sink = staging.create_volume(&volume.name)?;
        let (sink, check) = if staging.reads_back() {
            (sink, Check::ReadBack)
        } else {
            let (sink, checked) = CheckedSink::wrap(sink);
            (sink, Check::AsWritten(checked))
        };
        let (bytes, sha256) = match access {
            Access::Direct => {
                let (bytes, sha256, print) =
                    copy_direct(&volume.name, PathBuf::from(&volume.mountpoint), sink, reporter).await?;
                if let Some(value) = &print.value {
                    staging.note_print(&volume.name, value);
                }
                (bytes, sha256)
            }
            _ => copy_archive(engine, &helper, &volume.name, sink, reporter).await?,
        };
        Ok(Copied { access, bytes, sha256, check, unchanged: false })
    }
    .await;
    let removed = engine.remove_container(&helper).await;
    let copied = copied?;
    removed?;
    Ok(copied)
}

/// A sink that also checks the archive with restore's rules as it passes,
/// on a thread of its own: for a store that reads nothing back.
struct CheckingSink {
    inner: Option<Box<dyn VolumeSink>>,
    bytes: u64,
    tx: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    checker: Option<std::thread::JoinHandle<Result<ArchiveSummary, ArchiveError>>>,
    result: CheckedSink,
}

/// The outcome of a [`CheckingSink`]'s check, once the sink is finished.
struct CheckedSink(Arc<Mutex<Option<Result<ArchiveSummary, ArchiveError>>>>);

impl CheckedSink {
    fn wrap(inner: Box<dyn VolumeSink>) -> (Box<dyn VolumeSink>, CheckedSink) {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(8);
        let checker = std::thread::spawn(move || check_chunks(rx));
        let slot = Arc::default();
        let sink = CheckingSink {
            inner: Some(inner),
            bytes: 0,
            tx: Some(tx),
            checker: Some(checker),
            result: CheckedSink(Arc::clone(&slot)),
        };
        (Box::new(sink), CheckedSink(slot))
    }

    fn result(self) -> Result<ArchiveSummary, ArchiveError> {
        self.0.lock().expect("check result").take().unwrap_or_else(|| {
            Err(ArchiveError::Read(std::io::Error::other("the archive was not finished (an lkg bug)")))
        })
    }
}

impl Write for CheckingSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.inner.as_mut().expect("an unfinished sink").write_all(buf)?;
        self.bytes += buf.len() as u64;
        // A checker that stopped has its verdict; the archive goes on.
        if let Some(tx) = &self.tx
            && tx.send(buf.to_vec()).is_err()
        {
            self.tx = None;
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.as_mut().expect("an unfinished sink").flush()
    }
}

impl VolumeSink for CheckingSink {
    fn finish(mut self: Box<Self>, sha256: &str) -> Result<(), StoreError> {
        self.tx = None;
        // The bytes checked are the bytes written and hashed by the caller.
        let verdict = self.checker.take().map(|c| {
            let verdict = c.join().expect("the archive check does not panic");
            verdict.map(|summary| ArchiveSummary { bytes: self.bytes, sha256: sha256.to_owned(), ..summary })
        });
        *self.result.0.lock().expect("check result") = verdict;
        self.inner.take().expect("an unfinished sink").finish(sha256)
    }
}

impl Drop for CheckingSink {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(checker) = self.checker.take() {
            let _ = checker.join();
        }
    }
}

/// Removes what interrupted restores left beside the volume's data (never
/// inside it, so never in a snapshot): the space is the take's to use.
async fn remove_restore_leftovers(volume: &str, mountpoint: PathBuf) -> Result<(), SnapError> {
    blocking(move || Place::of(&mountpoint)?.map(|place| place.remove_leftovers()).transpose()).await?.map_err(
        |source| SnapError::Io {
            action: "remove what an interrupted restore left beside",
            volume: volume.to_owned(),
            source,
        },
    )?;
    Ok(())
}

async fn copy_direct(
    volume: &str,
    mountpoint: PathBuf,
    sink: Box<dyn VolumeSink>,
    reporter: &mut Reporter<'_>,
) -> Result<(u64, String, Print), SnapError> {
    let volume = volume.to_owned();
    blocking_with_progress(move |counter| archive_mount_point(&volume, &mountpoint, sink, counter), reporter).await?
}

/// Walks the mount point on this thread; hashes and writes the archive on
/// another, so that reading files overlaps hashing and writing them.
/// Returns the archive's size, SHA-256 and the walk's print.
pub(crate) fn archive_mount_point(
    volume: &str,
    mountpoint: &Path,
    sink: Box<dyn VolumeSink>,
    counter: &AtomicU64,
) -> Result<(u64, String, Print), SnapError> {
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
        let writer = scope.spawn(move || -> Result<(u64, String), SnapError> {
            let mut out = HashingWriter::new(sink, Some(counter));
            for chunk in rx {
                out.write_all(&chunk).map_err(|source| SnapError::Io {
                    action: "write the archive of",
                    volume: volume.to_owned(),
                    source,
                })?;
            }
            let (sink, bytes, sha256) = out.finish();
            sink.finish(&sha256)?;
            Ok((bytes, sha256))
        });
        let mut chunks = ChunkWriter::new(tx);
        let produced = crate::direct::archive_directory(mountpoint, &mut chunks)
            .and_then(|(chunks, print)| chunks.flush().map(|()| print));
        drop(chunks);
        let written = writer.join().expect("the archive writer does not panic");
        match (produced, written) {
            // A failed write explains why the walk could not send.
            (_, Err(e)) => Err(e),
            (Err(source), Ok(_)) => Err(SnapError::Io { action: "archive", volume: volume.to_owned(), source }),
            (Ok(print), Ok((bytes, sha256))) => Ok((bytes, sha256, print)),
        }
    })
}

async fn copy_archive(
    engine: &Engine<'_>,
    helper: &str,
    volume: &str,
    sink: Box<dyn VolumeSink>,
    reporter: &mut Reporter<'_>,
) -> Result<(u64, String), SnapError> {
    // A few chunks in flight: the network and the disk overlap, memory stays small.
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let name = volume.to_owned();
    let writer = tokio::task::spawn_blocking(move || -> Result<(u64, String), SnapError> {
        let mut out = HashingWriter::new(sink, None);
        while let Some(chunk) = rx.blocking_recv() {
            out.write_all(AsRef::<[u8]>::as_ref(&chunk)).map_err(|source| SnapError::Io {
                action: "write the archive of",
                volume: name.clone(),
                source,
            })?;
        }
        let (sink, bytes, sha256) = out.finish();
        sink.finish(&sha256)?;
        Ok((bytes, sha256))
    });
    let mut download = std::pin::pin!(engine.download(helper));
    let mut received = 0u64;
    let mut failure = None;
    while let Some(chunk) = download.next().await {
        match chunk {
            Ok(chunk) => {
                received += chunk.as_ref().len() as u64;
                if tx.send(chunk).await.is_err() {
                    break; // the writer failed; its error is the one to report
                }
                reporter.bytes(received);
            }
            Err(source) => {
                failure = Some(source);
                break;
            }
        }
    }
    drop(tx);
    let written = writer.await?;
    if let Some(source) = failure {
        // An incomplete download must never look like a complete archive.
        return Err(SnapError::Io { action: "download the archive of", volume: volume.to_owned(), source });
    }
    written
}
