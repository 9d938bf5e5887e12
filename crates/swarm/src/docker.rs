//! The connection to the Docker engine, shared by every lkg crate that talks
//! to it (swarm, warmsnap, reconcile).

use std::collections::HashMap;

use bollard::Docker;
use bollard::models::{Service, Volume};
use bollard::query_parameters::{ListServicesOptionsBuilder, ListVolumesOptionsBuilder};

/// The label `docker stack deploy` puts on every object of a stack.
pub const STACK_NAMESPACE_LABEL: &str = "com.docker.stack.namespace";

/// Why lkg could not talk to the Docker engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// `DOCKER_HOST` names a scheme lkg cannot use.
    #[error("DOCKER_HOST={host:?} is not supported: use unix:///path/to/docker.sock or tcp://host:port")]
    UnsupportedHost {
        /// The value given.
        host: String,
        /// bollard's reason.
        #[source]
        source: bollard::errors::Error,
    },
    /// The engine did not answer.
    #[error("cannot reach the Docker engine at {host}: is dockerd running, and is DOCKER_HOST right?")]
    Unreachable {
        /// Where lkg looked.
        host: String,
        /// The transport error.
        #[source]
        source: bollard::errors::Error,
    },
}

/// A query to the engine failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// The engine answered with an error.
    #[error("Docker engine request failed: {what}")]
    Engine {
        /// What lkg asked for.
        what: String,
        /// bollard's error.
        #[source]
        source: bollard::errors::Error,
    },
}

/// The engine named by `DOCKER_HOST` (default `unix:///var/run/docker.sock`).
/// See [`connect_to`].
pub async fn connect() -> Result<Docker, ConnectError> {
    let host = std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".to_owned());
    connect_to(&host).await
}

/// Connects to `host` and negotiates the API version.
///
/// bollard speaks the newest API by default; an older engine (Debian's 20.10
/// speaks 1.41) rejects newer request versions, so the version is negotiated
/// down to the engine's before any other call. Negotiating is also the
/// liveness check: an unreachable engine fails here, with the host named.
pub async fn connect_to(host: &str) -> Result<Docker, ConnectError> {
    let docker = Docker::connect_with_host(host).map_err(|source| match source {
        // bollard checks that the socket file exists before connecting.
        bollard::errors::Error::SocketNotFoundError(_) => ConnectError::Unreachable { host: host.to_owned(), source },
        source => ConnectError::UnsupportedHost { host: host.to_owned(), source },
    })?;
    docker.negotiate_version().await.map_err(|source| ConnectError::Unreachable { host: host.to_owned(), source })
}

fn stack_filter(stack: &str) -> HashMap<&'static str, Vec<String>> {
    HashMap::from([("label", vec![format!("{STACK_NAMESPACE_LABEL}={stack}")])])
}

/// The services of a stack (by the `com.docker.stack.namespace` label).
pub async fn stack_services(docker: &Docker, stack: &str) -> Result<Vec<Service>, QueryError> {
    let options = ListServicesOptionsBuilder::default().filters(&stack_filter(stack)).build();
    docker
        .list_services(Some(options))
        .await
        .map_err(|source| QueryError::Engine { what: format!("list the services of stack {stack}"), source })
}

/// The volumes of a stack (by the `com.docker.stack.namespace` label).
pub async fn stack_volumes(docker: &Docker, stack: &str) -> Result<Vec<Volume>, QueryError> {
    let options = ListVolumesOptionsBuilder::default().filters(&stack_filter(stack)).build();
    let response = docker
        .list_volumes(Some(options))
        .await
        .map_err(|source| QueryError::Engine { what: format!("list the volumes of stack {stack}"), source })?;
    Ok(response.volumes.unwrap_or_default())
}

impl lkg_core::Classify for ConnectError {
    fn kind(&self) -> lkg_core::FailureKind {
        lkg_core::FailureKind::Environment
    }
}

impl lkg_core::Classify for QueryError {
    fn kind(&self) -> lkg_core::FailureKind {
        lkg_core::FailureKind::Environment
    }
}
