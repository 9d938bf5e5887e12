//! The Docker engine side: the helper image and containers, volume archives,
//! volumes, and the facts that say whether a stack is quiet enough to touch
//! its volumes (the verdict itself is [`crate::access`]'s).
//!
//! Volume data moves through the archive endpoints of a *helper container*:
//! one created (never started) from an empty image with the volume mounted at
//! `/data`. The engine mounts a stopped container's volumes for archive
//! requests, so this works on any node, for any volume driver, without a
//! shell or a pull, and the helper cannot run anything.
//!
//! Archive facts this module relies on (moby 20.10, `daemon/archive.go` and
//! `pkg/archive`, checked against the engine of the test environment):
//! - `GET /containers/{id}/archive?path=/data` names every entry after the
//!   last element of the path: `data/`, `data/a/b`. Owners, modes, mtimes,
//!   symlinks and hard links are kept; sockets are skipped.
//! - `PUT /containers/{id}/archive?path=/` extracts relative to the container
//!   root, so the `data/` entry lands on the mount point and restores the
//!   volume root's owner and mode (extracting *at* `/data`, an entry `./`
//!   would be skipped). Without `copyUIDGID` the daemon keeps the uid/gid of
//!   each tar header (with `copyUIDGID=1` it would chown everything to the
//!   container's user); it refuses symlinks that climb out of the root.
//! - `HEAD` on the same path returns `X-Docker-Container-Path-Stat`, with the
//!   mount point's mode and mtime in nanoseconds, which is how lkg checks
//!   that a local mount point is really this engine's volume.

use std::collections::HashMap;
use std::io;

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, HostConfig, Mount, MountType, MountVolumeOptions, Volume, VolumeCreateRequest,
};
use bollard::query_parameters::{
    ContainerArchiveInfoOptionsBuilder, CreateContainerOptionsBuilder, CreateImageOptions,
    DownloadFromContainerOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
    UploadToContainerOptionsBuilder,
};
use futures_util::{Stream, StreamExt};
use lkg_swarm::docker::stack_services;

use crate::access::{Locality, Purpose, VolumeSpec, VolumeUser, quiet_verdict};
use crate::error::SnapError;
use crate::name::AppName;

/// The helper image: an empty root file system, imported once per engine.
pub const HELPER_IMAGE: &str = "lkg-warmsnap/helper:1";
/// Label on helper containers; its value is the app.
pub const HELPER_LABEL: &str = "org.lkg.warmsnap.helper";
/// Label on helper containers; its value is the process id of the lkg run
/// that asked for it, so a leftover says which run left it.
pub const HELPER_PID_LABEL: &str = "org.lkg.warmsnap.pid";
/// Where helpers mount the volume; also the name of every archive's root.
const MOUNT: &str = "/data";
/// The engine imports an empty tar (two zero blocks) as an image with no files.
const EMPTY_TAR: [u8; 1024] = [0; 1024];

/// Local facts: host name (`/proc/sys/kernel/hostname`, which is what the
/// engine reports as `Name`) and effective uid (`/proc/self/status`).
pub(crate) async fn locality(docker: &Docker) -> Locality {
    let engine = docker.info().await.ok().and_then(|info| info.name);
    let local = fs_err::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_owned());
    let root = fs_err::read_to_string("/proc/self/status").ok().is_some_and(|status| {
        status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|ids| ids.split_whitespace().nth(1)) == Some("0")
    });
    Locality { same_host: engine.is_some() && engine == local, root }
}

/// The engine calls of this crate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Engine<'d> {
    pub(crate) docker: &'d Docker,
}

fn engine_error(what: impl Into<String>) -> impl FnOnce(bollard::errors::Error) -> SnapError {
    let what = what.into();
    move |source| SnapError::Engine { what, source }
}

fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(e, bollard::errors::Error::DockerResponseServerError { status_code: 404, .. })
}

impl<'d> Engine<'d> {
    pub(crate) fn new(docker: &'d Docker) -> Engine<'d> {
        Engine { docker }
    }

    /// Refuses unless `stack` has no services and no container uses `volumes`
    /// (running ones for take, any for restore).
    ///
    /// `app`'s own helpers do not count: they never run, and each step that
    /// needs a volume free removes them. One can appear at any time after a
    /// run of `app` was killed, since the engine still finishes a request
    /// whose client died (a create the killed run had sent lands later).
    pub(crate) async fn check_quiet(
        &self,
        app: &AppName,
        stack: &str,
        volumes: &[String],
        purpose: Purpose,
    ) -> Result<(), SnapError> {
        let services = stack_services(self.docker, stack)
            .await?
            .into_iter()
            .map(|s| s.spec.and_then(|spec| spec.name).or(s.id).unwrap_or_default())
            .collect();
        let users = self.volume_users(app, volumes).await?;
        quiet_verdict(stack, services, &users, purpose)
    }

    /// The containers that mount `volumes`, except `app`'s helpers.
    async fn volume_users(&self, app: &AppName, volumes: &[String]) -> Result<Vec<VolumeUser>, SnapError> {
        if volumes.is_empty() {
            return Ok(Vec::new());
        }
        let filters = HashMap::from([("volume".to_owned(), volumes.to_vec())]);
        let options = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
        let containers = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(engine_error("list the containers using the volumes"))?;
        let mut users = Vec::new();
        for container in containers {
            let ours = container.labels.as_ref().and_then(|l| l.get(HELPER_LABEL)).is_some_and(|a| a == app.as_str());
            if ours {
                continue;
            }
            let name = container
                .names
                .as_ref()
                .and_then(|n| n.first())
                .map(|n| n.trim_start_matches('/').to_owned())
                .or(container.id.clone())
                .unwrap_or_default();
            let state = container.state.map(|s| s.to_string()).unwrap_or_default();
            for mount in container.mounts.unwrap_or_default() {
                if let Some(volume) = mount.name.filter(|v| volumes.contains(v)) {
                    users.push(VolumeUser { volume, container: name.clone(), state: state.clone() });
                }
            }
        }
        Ok(users)
    }

    /// Imports the empty helper image unless the engine has it.
    pub(crate) async fn ensure_helper_image(&self) -> Result<(), SnapError> {
        match self.docker.inspect_image(HELPER_IMAGE).await {
            Ok(_) => return Ok(()),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(engine_error(format!("inspect image {HELPER_IMAGE}"))(e)),
        }
        let (repo, tag) = HELPER_IMAGE.split_once(':').expect("the helper image has a tag");
        let options = CreateImageOptions {
            from_src: Some("-".to_owned()),
            repo: Some(repo.to_owned()),
            tag: Some(tag.to_owned()),
            changes: vec![format!("LABEL {HELPER_LABEL}=image")],
            ..CreateImageOptions::default()
        };
        let mut progress =
            self.docker.create_image(Some(options), Some(bollard::body_full(EMPTY_TAR.to_vec().into())), None);
        while let Some(step) = progress.next().await {
            let step = step.map_err(engine_error(format!("import the helper image {HELPER_IMAGE}")))?;
            if let Some(detail) = step.error_detail {
                return Err(SnapError::Engine {
                    what: format!("import the helper image {HELPER_IMAGE}"),
                    source: bollard::errors::Error::DockerStreamError {
                        error: detail.message.unwrap_or_else(|| "unknown error".to_owned()),
                    },
                });
            }
        }
        Ok(())
    }

    /// Creates (never starts) a helper with `volume` at `/data`. The volume
    /// must exist: a volume mount of a missing volume would create an empty one.
    pub(crate) async fn create_helper(&self, app: &AppName, volume: &str, writable: bool) -> Result<String, SnapError> {
        self.ensure_helper_image().await?;
        let mount = Mount {
            target: Some(MOUNT.to_owned()),
            source: Some(volume.to_owned()),
            typ: Some(MountType::VOLUME),
            read_only: Some(!writable),
            // Never copy image content into the volume (the image is empty anyway).
            volume_options: Some(MountVolumeOptions { no_copy: Some(true), ..MountVolumeOptions::default() }),
            ..Mount::default()
        };
        let body = ContainerCreateBody {
            image: Some(HELPER_IMAGE.to_owned()),
            // Never run: the image has no files, so there is nothing to run.
            cmd: Some(vec!["/lkg-warmsnap-helper-never-starts".to_owned()]),
            network_disabled: Some(true),
            labels: Some(HashMap::from([
                (HELPER_LABEL.to_owned(), app.to_string()),
                (HELPER_PID_LABEL.to_owned(), std::process::id().to_string()),
            ])),
            host_config: Some(HostConfig {
                mounts: Some(vec![mount]),
                network_mode: Some("none".to_owned()),
                ..HostConfig::default()
            }),
            ..ContainerCreateBody::default()
        };
        let options = CreateContainerOptionsBuilder::default().name(&helper_name(app)).build();
        let created = self
            .docker
            .create_container(Some(options), body)
            .await
            .map_err(engine_error(format!("create a helper container for volume {volume}")))?;
        Ok(created.id)
    }

    /// Removes a container (a helper), not its volumes.
    pub(crate) async fn remove_container(&self, id: &str) -> Result<(), SnapError> {
        let options = RemoveContainerOptionsBuilder::default().force(true).v(false).build();
        match self.docker.remove_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(engine_error(format!("remove helper container {id}"))(e)),
        }
    }

    /// Removes helpers of `app` that a killed run left. Called under the
    /// app's exclusive snapshot lock, so none of them is in use.
    pub(crate) async fn remove_leftover_helpers(&self, app: &AppName) -> Result<(), SnapError> {
        let filters = HashMap::from([("label".to_owned(), vec![format!("{HELPER_LABEL}={app}")])]);
        let options = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
        let leftovers = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(engine_error(format!("list leftover helper containers of app {app}")))?;
        for id in leftovers.into_iter().filter_map(|c| c.id) {
            self.remove_container(&id).await?;
        }
        Ok(())
    }

    /// Removes helpers of `app` that appeared during a run that is done: the
    /// engine finishes requests whose client died, so a helper a killed
    /// earlier run had asked for can be created late. Best effort: the work
    /// is done, a leftover helper blocks nothing lkg does, and the next run
    /// removes it, so an error here is not the run's failure.
    pub(crate) async fn sweep_late_helpers(&self, app: &AppName) {
        let _ = self.remove_leftover_helpers(app).await;
    }

    /// Mode (Go `FileMode` bits) and mtime of the helper's `/data`.
    pub(crate) async fn root_stat(&self, id: &str) -> Result<(u32, Option<String>), SnapError> {
        let options = ContainerArchiveInfoOptionsBuilder::default().path(MOUNT).build();
        let stat = self
            .docker
            .get_container_archive_info(id, Some(options))
            .await
            .map_err(engine_error(format!("stat {MOUNT} of helper container {id}")))?;
        Ok((stat.file_mode, stat.modification_time))
    }

    /// Whether the local `mountpoint` is the directory the engine mounts in
    /// `helper`: same mode and the same mtime to the nanosecond. A directory
    /// of the same path on another machine (a forwarded socket, a host name
    /// shared by two hosts) fails this. `Ok(Err(reason))` when it is not.
    pub(crate) async fn is_local_mount(&self, helper: &str, mountpoint: &str) -> Result<Result<(), String>, SnapError> {
        use std::os::unix::fs::MetadataExt;
        let (mode, mtime) = self.root_stat(helper).await?;
        if mountpoint.is_empty() {
            return Ok(Err("the engine reports no mount point".to_owned()));
        }
        let local = match fs_err::metadata(mountpoint) {
            Ok(local) => local,
            Err(e) => return Ok(Err(format!("its mount point is not accessible here: {e}"))),
        };
        let engine_mtime = mtime.and_then(|t| t.parse::<jiff::Timestamp>().ok());
        let nanos = i32::try_from(local.mtime_nsec()).unwrap_or_default();
        let local_mtime = jiff::Timestamp::new(local.mtime(), nanos).ok();
        if !local.is_dir()
            || engine_mtime.is_none()
            || engine_mtime != local_mtime
            || mode & 0o777 != local.mode() & 0o777
        {
            return Ok(Err(format!("{mountpoint} here is not the directory the engine mounts (mode or mtime differ)")));
        }
        Ok(Ok(()))
    }

    /// The volume archive of a helper's `/data`, as a stream of chunks.
    pub(crate) fn download(
        &self,
        id: &str,
    ) -> impl Stream<Item = Result<impl AsRef<[u8]> + Send + 'static, io::Error>> + Send {
        let options = DownloadFromContainerOptionsBuilder::default().path(MOUNT).build();
        let id = id.to_owned();
        self.docker.download_from_container(&id, Some(options)).map(|chunk| chunk.map_err(io::Error::other))
    }

    /// Uploads a volume archive, extracting it at the helper's root.
    pub(crate) async fn upload(
        &self,
        id: &str,
        archive: impl Stream<Item = Result<Vec<u8>, io::Error>> + Send + 'static,
    ) -> Result<(), bollard::errors::Error> {
        let options = UploadToContainerOptionsBuilder::default().path("/").build();
        let body = bollard::body_try_stream(archive.map(|chunk| chunk.map(Into::into)));
        self.docker.upload_to_container(id, Some(options), body).await
    }

    /// The volume, if it exists.
    pub(crate) async fn volume(&self, name: &str) -> Result<Option<Volume>, SnapError> {
        match self.docker.inspect_volume(name).await {
            Ok(volume) => Ok(Some(volume)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(engine_error(format!("inspect volume {name}"))(e)),
        }
    }

    /// Removes volume `name`, which must be free but for `app`'s helpers: a
    /// helper a killed run of `app` had asked for may be created meanwhile,
    /// so on "in use" those are removed and the removal is tried again, a few
    /// times. A volume that is already gone is fine.
    pub(crate) async fn remove_volume(&self, app: &AppName, name: &str) -> Result<(), SnapError> {
        const ATTEMPTS: u32 = 5;
        let mut attempt = 1;
        loop {
            match self.docker.remove_volume(name, None::<bollard::query_parameters::RemoveVolumeOptions>).await {
                Ok(()) => return Ok(()),
                Err(e) if is_not_found(&e) => return Ok(()),
                Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, .. })
                    if attempt < ATTEMPTS =>
                {
                    self.remove_leftover_helpers(app).await?;
                    tokio::time::sleep(std::time::Duration::from_millis(100 * u64::from(attempt))).await;
                    attempt += 1;
                }
                Err(e) => return Err(engine_error(format!("remove volume {name} (to recreate it empty)"))(e)),
            }
        }
    }

    /// Creates the volume of `spec`, and checks that the engine's volume is
    /// the one asked for: the engine answers a create of an existing name with
    /// the existing volume, which a late request of a killed run (a helper
    /// mounting the name) may have created bare, without driver options or
    /// labels.
    pub(crate) async fn create_volume(&self, spec: &VolumeSpec) -> Result<Volume, SnapError> {
        let request = VolumeCreateRequest {
            name: Some(spec.name.clone()),
            driver: Some(spec.driver.clone()),
            driver_opts: Some(spec.options.clone().into_iter().collect()),
            labels: Some(spec.labels.clone().into_iter().collect()),
            ..VolumeCreateRequest::default()
        };
        let volume = self
            .docker
            .create_volume(request)
            .await
            .map_err(engine_error(format!("create volume {} (driver {})", spec.name, spec.driver)))?;
        let created = VolumeSpec::from(&volume);
        if created != *spec {
            return Err(SnapError::Recreated { volume: spec.name.clone() });
        }
        Ok(volume)
    }
}

/// `lkg-snap-<app>-<8 hex>`: names say whose helper it is.
fn helper_name(app: &AppName) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::hash::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    format!("lkg-snap-{app}-{:08x}", hasher.finish() & 0xffff_ffff)
}
