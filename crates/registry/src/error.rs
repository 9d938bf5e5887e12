use std::path::PathBuf;

use crate::{Digest, DigestError};

/// What went wrong talking to a registry or handling its content.
///
/// Messages never contain a credential or a token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The reference does not parse.
    #[error("invalid image reference {:?}: {reason}", lkg_core::clip(input))]
    InvalidReference {
        /// What was given.
        input: String,
        /// Why it is invalid.
        reason: String,
    },
    /// The digest does not parse.
    #[error("invalid digest {input:?}: {reason}")]
    InvalidDigest {
        /// What was given.
        input: String,
        /// Why it is invalid.
        reason: String,
    },
    /// The platform does not parse.
    #[error("invalid platform {input:?}: expected os/arch[/variant], e.g. linux/amd64")]
    InvalidPlatform {
        /// What was given.
        input: String,
    },
    /// The registry could not be reached, or kept failing after every retry.
    #[error("cannot reach the registry {registry}: {reason}")]
    Unreachable {
        /// The registry host.
        registry: String,
        /// The last failure.
        reason: String,
    },
    /// The registry refused the credentials (or has none for us).
    #[error(
        "{registry} refused access ({scope}): {reason}\n  check the credentials in REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json, $DOCKER_CONFIG/config.json or ~/.docker/config.json"
    )]
    Unauthorized {
        /// The registry host.
        registry: String,
        /// What was asked for (`repository:x:pull,push`).
        scope: String,
        /// The registry's answer.
        reason: String,
    },
    /// A manifest or blob does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for (`manifest 127.0.0.1:5000/app:candidate`).
        what: String,
    },
    /// Content does not hash to the digest it was fetched or declared by.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was checked.
        what: String,
        /// The digest it should have.
        expected: Digest,
        /// The digest it has.
        actual: Digest,
    },
    /// The registry answered with an unexpected status.
    #[error("{method} {url} answered HTTP {status}: {body}")]
    Status {
        /// The request method.
        method: String,
        /// The URL, without query.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The start of the body (registry error JSON).
        body: String,
    },
    /// A document from the registry (or a file) is malformed.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was parsed.
        what: String,
        /// The parser's complaint.
        reason: String,
    },
    /// A registry would need plain HTTP but is not allowed to use it.
    #[error("refusing plain HTTP to {registry}: pass --insecure-registry {registry} if that is intended")]
    InsecureRefused {
        /// The registry host.
        registry: String,
    },
    /// A credentials file (docker's `config.json`, podman's `auth.json`)
    /// that is not what it should be: not UTF-8, not JSON, or an `auth`
    /// entry that is not base64 of `user:password`. Bad input (exit 2): the
    /// file needs fixing, nothing was asked of the registry.
    #[error("credentials file {}: {reason}", path.display())]
    AuthFile {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it (never the secret).
        reason: String,
    },
    /// A credential store or helper failed.
    #[error("cannot read credentials for {registry}: {reason}")]
    Credentials {
        /// The registry host.
        registry: String,
        /// What failed (never the secret).
        reason: String,
    },
    /// A manifest pushed as a referrer has no `subject`.
    #[error("manifest {digest} has no `subject`: only a manifest that names its subject is a referrer")]
    NotAReferrer {
        /// The manifest's digest.
        digest: Digest,
    },
    /// The referrers tag schema's tag holds something other than an image
    /// index, so lkg cannot add to it without destroying it.
    #[error(
        "{tag} holds a {media_type}, not the image index of the referrers tag schema: lkg will not overwrite it; move or delete that tag, then retry"
    )]
    NotAReferrersIndex {
        /// `registry/repo:sha256-<hex>`.
        tag: String,
        /// What it holds.
        media_type: String,
    },
    /// Other writers kept changing a referrers index while lkg was adding
    /// to it.
    #[error(
        "the referrers index {tag} changed under lkg in each of {rounds} rounds (another writer is updating it): retry when that writer is done"
    )]
    ReferrersContended {
        /// `registry/repo:sha256-<hex>`.
        tag: String,
        /// Read-modify-write rounds tried.
        rounds: u32,
    },
    /// The HTTP client could not be built.
    #[error("cannot set up the HTTP client: {0}")]
    Setup(String),
    /// A local file could not be read or written.
    #[error("{}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// A malformed digest is bad input, named as the registry names it.
impl From<DigestError> for RegistryError {
    fn from(e: DigestError) -> RegistryError {
        RegistryError::InvalidDigest { input: e.value().to_owned(), reason: e.to_string() }
    }
}

/// "Could not ask" is the environment, bad input is the input, and a wrong
/// answer (a digest mismatch, a malformed manifest) is a verdict on what the
/// registry served.
impl lkg_core::Classify for RegistryError {
    fn kind(&self) -> lkg_core::FailureKind {
        kind_of(self.is_environment(), self.is_input())
    }
}

/// The kind of a registry failure: "could not ask", bad input, else a
/// verdict on what the registry served.
pub(crate) fn kind_of(environment: bool, input: bool) -> lkg_core::FailureKind {
    if environment {
        lkg_core::FailureKind::Environment
    } else if input {
        lkg_core::FailureKind::Input
    } else {
        lkg_core::FailureKind::Verdict
    }
}

impl RegistryError {
    /// Whether this error means "lkg could not ask" (exit code 5) rather
    /// than a bad answer: unreachable registries and refused credentials.
    pub fn is_environment(&self) -> bool {
        matches!(
            self,
            RegistryError::Unreachable { .. }
                | RegistryError::Unauthorized { .. }
                | RegistryError::Credentials { .. }
                | RegistryError::Setup(_)
                | RegistryError::Io { .. }
                | RegistryError::ReferrersContended { .. }
        )
    }

    /// Whether this error is bad input (exit code 2): a malformed reference,
    /// digest or platform, or something that does not exist.
    pub fn is_input(&self) -> bool {
        matches!(
            self,
            RegistryError::InvalidReference { .. }
                | RegistryError::InvalidDigest { .. }
                | RegistryError::InvalidPlatform { .. }
                | RegistryError::NotFound { .. }
                | RegistryError::InsecureRefused { .. }
                | RegistryError::NotAReferrer { .. }
                | RegistryError::AuthFile { .. }
        )
    }
}
