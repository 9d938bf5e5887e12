//! A hand-written OCI distribution client and the jobs built on it.
//!
//! `lkg-registry` inspects, copies, promotes and signs images in any OCI
//! registry: manifests are kept as raw bytes with their digest (never
//! re-serialised), every body fetched is verified, a same-registry copy mounts
//! blobs instead of uploading them, and a multi-artifact promotion is
//! journalled so that a failure between tag moves can never leave the caller
//! believing stable is consistent. Signatures follow cosign's key-based format.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use lkg_registry::{Client, ClientOptions, Reference, inspect};
//! let client = Client::new(ClientOptions::default())?;
//! let stable: Reference = "ghcr.io/danathar/kinoite-zfs:latest".parse()?;
//! let info = inspect::inspect(&client, &stable).await?;
//! println!("{} {:?}", info.digest, info.labels.as_ref().and_then(|l| l.get("ostree.linux")));
//! # Ok(()) }
//! ```
//!
//! The pieces:
//! - [`Client`]: resolve (`HEAD`), manifests, configs, blobs (streamed and
//!   verified), tags (paged), mounts and uploads, with Basic and Bearer auth,
//!   retries and redirects handled;
//! - [`inspect`], [`copy`]: the read and copy jobs (a copy can carry the
//!   image's referrers);
//! - [`referrers`]: OCI 1.1 referrers ([`Client::referrers`],
//!   [`Client::push_referrer`], [`referrers::attach`]), through the
//!   registry's API or the referrers tag schema;
//! - [`promote`]: journalled multi-artifact promotion, resumable and revertible;
//! - [`sign`]: cosign-compatible key-based signatures;
//! - [`Digest`]: `lkg-inputs-lock`'s digest, re-exported, checked against
//!   content by [`VerifyDigest`];
//! - [`RegistryResolver`]: `lkg-inputs-lock`'s resolver (tag → digest,
//!   labels, tags, layers streamed for kernel detection), behind
//!   `lkg-inputs resolve`.
//!
//! # Limitations
//!
//! - HTTP/1.1 only; registries speak it everywhere.
//! - Plain HTTP is used for loopback hosts and hosts listed in
//!   [`ClientOptions::insecure_registries`], never as a fallback from HTTPS.
//! - Signatures: ECDSA P-256 keys only (cosign's default); no keyless
//!   (Fulcio/Rekor) signing or verification.
//! - Referrers on registries without the referrers API live in a tag-schema
//!   index that clients update by read-modify-write; a registry that ignores
//!   `If-Match` (Distribution 2.x) leaves a small window in which two
//!   concurrent writers can lose an entry (see [`referrers`]).
//! - Reverting a promotion cannot delete a tag on registries that do not
//!   support tag deletion (Distribution 2.x): a stable tag that did not exist
//!   before is reported, not removed.
#![cfg_attr(test, allow(clippy::disallowed_methods, reason = "unit tests write and read their fixtures"))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod auth;
pub mod bundle;
mod client;
pub mod copy;
pub mod cosign;
mod digest;
mod error;
pub mod inspect;
mod manifest;
pub mod promote;
mod reference;
pub mod referrers;
mod resolver;
mod retry;
pub mod sign;

pub use auth::{Anonymous, Credential, CredentialSource, DockerConfig, StaticCredentials};
/// The byte buffer of blobs and artifacts in this crate's API.
pub use bytes::Bytes;
pub use client::{
    BlobReader, BlobStream, Client, ClientOptions, MAX_SMALL_BLOB, ManifestHead, Mount, RetryPolicy, Scope,
    UnfinishedUpload,
};
pub use digest::VerifyDigest;
pub use error::RegistryError;
pub use lkg_inputs_lock::{Algorithm, Digest, DigestError, DigestWriter};
pub use manifest::{
    Descriptor, ImageConfig, ImageIndex, ImageManifest, Manifest, ManifestKind, Platform, RuntimeConfig, media,
};
pub use reference::{Reference, is_loopback};
pub use referrers::{ReferrerPush, Referrers, ReferrersVia};
pub use resolver::{RegistryResolver, ResolverError};

/// A tokio runtime for callers that are not async themselves (the
/// `lkg-registry` binary, a resolver called from synchronous code).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()
}
