//! [`VolumeLookup`] over the Docker engine (feature `docker`).

use bollard::Docker;

use crate::presence::VolumeLookup;

/// Looks volumes up in a Docker engine with `GET /volumes/{name}`.
///
/// Connect with [`lkg_swarm::docker::connect`], which negotiates the API
/// version (the engine may be older than bollard's default API).
#[derive(Debug, Clone)]
pub struct EngineVolumes {
    docker: Docker,
}

/// The engine did not answer a volume lookup.
#[derive(Debug, thiserror::Error)]
#[error("the Docker engine could not look up volume {volume}")]
pub struct EngineLookupError {
    volume: String,
    #[source]
    source: bollard::errors::Error,
}

impl EngineVolumes {
    /// Looks volumes up through `docker`.
    pub fn new(docker: Docker) -> EngineVolumes {
        EngineVolumes { docker }
    }
}

impl VolumeLookup for EngineVolumes {
    type Error = EngineLookupError;

    async fn volume_exists(&self, name: &str) -> Result<bool, EngineLookupError> {
        match self.docker.inspect_volume(name).await {
            Ok(_) => Ok(true),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(false),
            Err(source) => Err(EngineLookupError { volume: name.to_owned(), source }),
        }
    }
}
