//! lkg's agent: the half of a snapshot or restore that runs on the node that
//! holds the volumes (feature `oci`).
//!
//! A `local` volume lives on one node, and only that node's engine reaches
//! it. lkg talks to a manager; for a volume on another node it runs a swarm
//! job there ([`crate::remote`]) whose container mounts the volumes and runs
//! `lkg-agent`, a static binary in a one-layer image. The agent is given an
//! [`AgentRequest`] in the environment variable [`REQUEST_ENV`] and moves
//! bytes between the mounted volumes and the registry store; lkg keeps the
//! bookkeeping (`meta.json`, the manifest, the tags, signatures) on its side.
//!
//! - A take ([`AgentJob::Take`]) archives each volume as a direct take does
//!   (same walk, same archive), reads the archive back through the rules a
//!   restore applies, and uploads it as a layer, encrypted when the request
//!   names recipients; a layer the repository has is not uploaded again.
//! - A restore ([`AgentJob::Restore`]) streams each layer from the registry,
//!   checks it against its digest, decrypts it, and extracts it into a
//!   staging directory inside the volume while checking every entry, its
//!   size and its SHA-256; only when every volume is staged does it replace
//!   each volume's content with the staged tree.
//!
//! The agent prints one last line: [`REPORT_PREFIX`] and an [`AgentReport`],
//! or [`FAILURE_PREFIX`] and an [`AgentFailure`]; lkg reads it from the job's
//! log through the manager.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;

use lkg_core::{Classify, FailureKind};
use lkg_registry::{Client, ClientOptions, Descriptor, Digest, Reference};
use serde::{Deserialize, Serialize};

use crate::archive::{ArchiveSummary, inspect};
use crate::error::SnapError;
use crate::meta::VolumeRecord;
use crate::name::AppName;
use crate::oci::OciStore;
use crate::store::{LocalSink, StoreError};

/// The environment variable that carries the [`AgentRequest`], as JSON.
pub const REQUEST_ENV: &str = "LKG_AGENT_REQUEST";
/// How the agent's report line starts; an [`AgentReport`] in JSON follows.
pub const REPORT_PREFIX: &str = "lkg-agent-report: ";
/// How the agent's failure line starts; an [`AgentFailure`] in JSON follows.
pub const FAILURE_PREFIX: &str = "lkg-agent-failure: ";
/// Names of restore stagings (and of the trees they replace) inside a volume
/// restored by the agent.
pub const AGENT_STAGING_PREFIX: &str = ".lkg-restore-";

/// What lkg asks its agent to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AgentRequest {
    /// The store's registry, `HOST[:PORT]`.
    pub registry: String,
    /// The store's repository.
    pub repository: String,
    /// Registries that may be spoken to over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// The app whose snapshot this is.
    pub app: AppName,
    /// The work.
    pub job: AgentJob,
}

/// A take or a restore.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AgentJob {
    /// Archive and upload these volumes.
    Take {
        /// The volumes, where the job mounts them.
        volumes: Vec<MountedVolume>,
        /// age recipients (`age1...`) to encrypt to; none: plain layers.
        recipients: Vec<String>,
    },
    /// Replace these volumes' content with these layers.
    Restore {
        /// The volumes, where the job mounts them, and what goes into each.
        volumes: Vec<RestoreVolume>,
        /// The age identity file, for encrypted layers.
        identity_file: Option<PathBuf>,
    },
}

/// A volume as the job mounts it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountedVolume {
    /// The volume's name.
    pub name: String,
    /// Where it is mounted in the agent's container.
    pub path: PathBuf,
}

/// A volume to restore, and what into.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreVolume {
    /// The live volume and its mount.
    pub volume: MountedVolume,
    /// The snapshot's record of the archive.
    pub record: VolumeRecord,
    /// Its layer in the repository.
    pub digest: String,
    /// Whether the layer is encrypted with age.
    pub encrypted: bool,
}

/// What the agent did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AgentReport {
    /// One entry per volume, in the request's order.
    pub volumes: Vec<AgentVolume>,
    /// Bytes of layers uploaded (a layer the repository had is not).
    pub uploaded: u64,
}

/// One volume the agent took or restored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentVolume {
    /// The volume.
    pub name: String,
    /// What its archive holds.
    pub summary: ArchiveSummary,
    /// A take: the layer the archive is in.
    pub layer: Option<Descriptor>,
    /// A restore: whether the volume existed on the node before the job.
    pub existed: bool,
}

/// Why the agent failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentFailure {
    /// `input`, `verdict`, `partial` or `environment`, as lkg's exit codes.
    pub kind: String,
    /// The error and its causes.
    pub message: String,
}

impl AgentFailure {
    /// The failure of `error`.
    pub fn of(error: &SnapError) -> AgentFailure {
        AgentFailure { kind: error.kind().name().to_owned(), message: lkg_core::render_chain(error) }
    }

    /// Its kind, as lkg classifies failures.
    pub fn failure_kind(&self) -> FailureKind {
        match self.kind.as_str() {
            "input" => FailureKind::Input,
            "verdict" => FailureKind::Verdict,
            "partial" => FailureKind::Partial,
            _ => FailureKind::Environment,
        }
    }
}

/// Runs `request` where the volumes are mounted (inside the agent's
/// container), with staging files under `scratch`.
pub async fn run(request: &AgentRequest, scratch: &Path) -> Result<AgentReport, SnapError> {
    let options =
        ClientOptions { insecure_registries: request.insecure_registries.clone(), ..ClientOptions::default() };
    let client = Client::new(options).map_err(StoreError::from)?;
    let repo = Reference::new(&request.registry, &request.repository, None, None);
    let mut store = OciStore::new(client, &repo, scratch);
    match &request.job {
        AgentJob::Take { volumes, recipients } => {
            if !recipients.is_empty() {
                let recipients = recipients.iter().map(|r| crate::any::recipient(r)).collect::<Result<_, _>>()?;
                store = store.encrypt_to(recipients);
            }
            take(&store, &request.app, volumes, scratch).await
        }
        AgentJob::Restore { volumes, identity_file } => {
            if let Some(path) = identity_file {
                store = store.decrypt_with(crate::any::identity_file(path)?);
            }
            restore(&store, &request.app, volumes).await
        }
    }
}

async fn take(
    store: &OciStore,
    app: &AppName,
    volumes: &[MountedVolume],
    scratch: &Path,
) -> Result<AgentReport, SnapError> {
    let dir = scratch.join("take");
    fs_err::create_dir_all(&dir).map_err(StoreError::from)?;
    let reusable = store.reusable_layers(app).await;
    let before = store.uploaded_bytes();
    // The engine created the job's volumes just before it started this
    // process, on this node's clock: anything created within that window
    // may be the job's own doing.
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let mut report = AgentReport::default();
    for volume in volumes {
        let (name, path) = (volume.name.clone(), volume.path.clone());
        let tar = dir.join(format!("{name}.tar"));
        let summary = tokio::task::spawn_blocking({
            let tar = tar.clone();
            move || -> Result<ArchiveSummary, SnapError> {
                check_takeable(&name, &path, started)?;
                let sink = Box::new(LocalSink::create_scratch(&tar)?);
                let counter = AtomicU64::new(0);
                let (bytes, sha256, _) = crate::take::archive_mount_point(&name, &path, sink, &counter)?;
                let archive = fs_err::File::open(&tar).map_err(StoreError::from)?;
                let summary = inspect(archive, &counter).map_err(|source| SnapError::Refused {
                    volume: name.clone(),
                    location: format!("new snapshot on the node, {}", tar.display()),
                    source,
                })?;
                if summary.bytes != bytes || summary.sha256 != sha256 {
                    return Err(SnapError::Io {
                        action: "read back the archive of",
                        volume: name,
                        source: io::Error::other("the archive changed on disk while it was checked"),
                    });
                }
                Ok(summary)
            }
        })
        .await??;
        let record = VolumeRecord {
            name: volume.name.clone(),
            bytes: summary.bytes,
            sha256: summary.sha256.clone(),
            driver: "local".to_owned(),
            options: BTreeMap::new(),
            labels: BTreeMap::new(),
        };
        let layer = store.volume_layer(&dir, &record, &reusable).await;
        let _ = fs_err::remove_file(&tar);
        let _ = fs_err::remove_file(dir.join(format!("{}.tar.age", volume.name)));
        report.volumes.push(AgentVolume { name: volume.name.clone(), summary, layer: Some(layer?), existed: true });
    }
    report.uploaded = store.uploaded_bytes() - before;
    Ok(report)
}

/// How long before the agent started a volume may have been created by its
/// job's mount (the container is created, then started).
const CREATED_BY_THE_JOB: i64 = 30;

/// A take refuses a volume that the job's own mount created (it did not
/// exist on the node: lkg would keep an empty snapshot as the last-known-good):
/// empty, and created within [`CREATED_BY_THE_JOB`] seconds before the agent
/// `started` (Unix seconds, the node's clock). It also refuses one that an
/// interrupted restore left a staging in.
fn check_takeable(name: &str, path: &Path, started: i64) -> Result<(), SnapError> {
    let io = |source| SnapError::Io { action: "read", volume: name.to_owned(), source };
    let metadata = fs_err::metadata(path).map_err(io)?;
    let mut entries = fs_err::read_dir(path).map_err(io)?;
    let empty = entries.next().is_none();
    // The engine creates a volume's data directory when it creates the volume.
    if empty && metadata.ctime() >= started - CREATED_BY_THE_JOB {
        return Err(SnapError::NoSuchVolume { volume: name.to_owned(), node: "this node".to_owned() });
    }
    for entry in fs_err::read_dir(path).map_err(io)? {
        let entry = entry.map_err(io)?;
        if entry.file_name().as_encoded_bytes().starts_with(AGENT_STAGING_PREFIX.as_bytes()) {
            return Err(SnapError::Io {
                action: "take",
                volume: name.to_owned(),
                source: io::Error::other(format!(
                    "it holds {}, left by an interrupted restore: run the restore again to finish it",
                    entry.file_name().to_string_lossy()
                )),
            });
        }
    }
    Ok(())
}

async fn restore(store: &OciStore, app: &AppName, volumes: &[RestoreVolume]) -> Result<AgentReport, SnapError> {
    // Stage every volume first: nothing live changes unless all of them check.
    let mut staged = Vec::with_capacity(volumes.len());
    for volume in volumes {
        let digest: Digest =
            volume.digest.parse().map_err(lkg_registry::RegistryError::from).map_err(StoreError::from)?;
        let archive = store.layer_reader(&digest, volume.encrypted, volume.record.bytes)?;
        let volume = volume.clone();
        let location = format!("layer {digest}");
        let result = tokio::task::spawn_blocking(move || -> Result<(PathBuf, bool, u64), SnapError> {
            let name = volume.volume.name.clone();
            let io = |action: &'static str| {
                let volume = name.clone();
                move |source| SnapError::Io { action, volume, source }
            };
            let root = &volume.volume.path;
            let existed = fs_err::read_dir(root).map_err(io("read"))?.next().is_some();
            remove_leftovers(root).map_err(io("remove what an interrupted restore left in"))?;
            let staging = root.join(format!("{AGENT_STAGING_PREFIX}{}", std::process::id()));
            std::fs::DirBuilder::new().create(&staging).map_err(io("stage the restore of"))?;
            let counter = AtomicU64::new(0);
            match crate::restore::extract_checked(archive, &staging, &volume.record, &name, &location, &counter) {
                Ok(bytes) => Ok((staging, existed, bytes)),
                Err(e) => {
                    let _ = fs_err::remove_dir_all(&staging);
                    Err(e)
                }
            }
        })
        .await?;
        match result {
            Ok(done) => staged.push(done),
            Err(e) => {
                for (staging, ..) in staged {
                    let _ = fs_err::remove_dir_all(staging);
                }
                return Err(e);
            }
        }
    }
    let mut report = AgentReport::default();
    let mut restored = Vec::new();
    for (volume, (staging, existed, _)) in volumes.iter().zip(staged) {
        let root = volume.volume.path.clone();
        let name = volume.volume.name.clone();
        let swapped = tokio::task::spawn_blocking(move || replace_content(&root, &staging))
            .await?
            .map_err(|source| SnapError::Io { action: "replace the content of", volume: name.clone(), source });
        if let Err(source) = swapped {
            return Err(SnapError::Incomplete {
                app: app.to_string(),
                restored,
                failed: volume.volume.name.clone(),
                source: Box::new(source),
            });
        }
        restored.push(volume.volume.name.clone());
        let summary = ArchiveSummary {
            bytes: volume.record.bytes,
            sha256: volume.record.sha256.clone(),
            ..ArchiveSummary::default()
        };
        report.volumes.push(AgentVolume { name: volume.volume.name.clone(), summary, layer: None, existed });
    }
    Ok(report)
}

/// Removes stagings and replaced trees that interrupted restores left at
/// the volume's root.
fn remove_leftovers(root: &Path) -> io::Result<()> {
    for entry in fs_err::read_dir(root)? {
        let entry = entry?;
        if entry.file_name().as_encoded_bytes().starts_with(AGENT_STAGING_PREFIX.as_bytes()) {
            if entry.file_type()?.is_dir() {
                fs_err::remove_dir_all(entry.path())?;
            } else {
                fs_err::remove_file(entry.path())?;
            }
        }
    }
    Ok(())
}

/// Replaces what is in `root` (a mount point, which cannot be renamed) with
/// what is in `staging` (inside it): the old entries move into a trash
/// directory, the staged ones up into the root, then the root gets the
/// staged root's owner, mode and mtime, and the trash is removed.
fn replace_content(root: &Path, staging: &Path) -> io::Result<()> {
    // Before the moves below change it: the archive's root entry.
    let metadata = fs_err::metadata(staging)?;
    let trash = PathBuf::from(format!("{}.old", staging.display()));
    std::fs::DirBuilder::new().create(&trash)?;
    let prefix = AGENT_STAGING_PREFIX.as_bytes();
    for entry in fs_err::read_dir(root)? {
        let entry = entry?;
        if !entry.file_name().as_encoded_bytes().starts_with(prefix) {
            fs_err::rename(entry.path(), trash.join(entry.file_name()))?;
        }
    }
    for entry in fs_err::read_dir(staging)? {
        let entry = entry?;
        fs_err::rename(entry.path(), root.join(entry.file_name()))?;
    }
    std::os::unix::fs::chown(root, Some(metadata.uid()), Some(metadata.gid()))?;
    fs_err::set_permissions(root, metadata.permissions())?;
    fs_err::remove_dir(staging)?;
    fs_err::remove_dir_all(&trash)?;
    let mtime = metadata.modified()?;
    fs_err::File::open(root)?.set_times(std::fs::FileTimes::new().set_modified(mtime).set_accessed(mtime))?;
    Ok(())
}
