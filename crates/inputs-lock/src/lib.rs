//! Build-input manifests and lock files: pin every input of a build, replay
//! it exactly, and say what moved.
//!
//! A build that uses floating inputs (`kinoite-main:latest`, a builder image
//! tag, a branch) behaves differently from one day to the next without a
//! single commit changing. This crate
//!
//! - models a build's inputs generically ([`Inputs`]: name → image
//!   `{ref, name, tag, digest, pinned}` | git `{url, ref, commit}` | value),
//!   with the OS-image pipeline's real `build-inputs.json` and
//!   `ci/inputs.lock.json` as one [`Profile`] of files ([`Document`] keeps
//!   field order and unknown fields, so what it writes is what it read);
//! - checks a lock for replay, listing every problem with its field
//!   ([`check`], [`check_file`]): placeholders, empty fields, tags instead of
//!   digests, short digests, short commits, dispatch values that differ from
//!   the lock ("replay mismatch");
//! - diffs two manifests, inputs apart from run metadata ([`diff()`]);
//! - writes the lock that replays a run ([`lock_from`]);
//! - resolves floating inputs through a [`Resolver`] ([`resolve()`]): tag →
//!   digest, label → value, the immutable tag matching the version label,
//!   kernel releases read from layer tar headers with whiteouts honoured
//!   ([`LayerScan`], [`merge_layers`]). `lkg-registry` implements the
//!   resolver for registries (`lkg_registry::RegistryResolver`, what
//!   `lkg-inputs resolve` uses); [`OciLayouts`] implements it for OCI image
//!   layouts on disk.
//!
//! ```
//! use lkg_inputs_lock::{Document, Expectation, check};
//!
//! let lock = Document::parse(r#"{
//!   "version": 1,
//!   "description": "Pinned inputs for replay.",
//!   "base_image": "ghcr.io/ublue-os/kinoite-main:latest",
//!   "build_container": "ghcr.io/ublue-os/devcontainer@sha256:6fe782777ea0b6b9058a8bf43dadc505687ce63f52a0f084d5bba1c1230fe09e",
//!   "zfs_minor_version": "2.4",
//!   "akmods_upstream_ref": "REPLACE_ME"
//! }"#, "inputs.lock.json")?;
//! let expect: Expectation = "build_container=ghcr.io/ublue-os/devcontainer:latest".parse()?;
//! let problems: Vec<String> = check(&lock, &[expect]).iter().map(|p| p.field.clone()).collect();
//! assert_eq!(problems, ["akmods_upstream_ref", "base_image", "build_container"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Limitations
//!
//! - Git inputs must be given at a full commit: there is no git resolver
//!   (branch → commit).
//! - Kernel detection reads gzip and uncompressed layers; zstd layers are
//!   refused with a clear error.
//! - Unknown fields round-trip, but text is re-encoded by `serde_json`:
//!   non-ASCII is written as UTF-8, where Python's `json.dumps` writes
//!   `\u` escapes.
//! - The OS-image lock knows its image fields by name (`base_image`,
//!   `build_container`); another image field in that lock is treated as a
//!   plain value (checked for placeholders, not for a digest).
#![cfg_attr(test, allow(clippy::disallowed_methods, reason = "unit tests write and read their fixtures"))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod check;
mod diff;
mod document;
mod kernel;
mod layout;
mod lock;
mod model;
mod reference;
mod resolve;

pub use check::{
    CheckReport, Expectation, ExpectationError, Issue, Problem, check, check_file, placeholder, structure,
};
pub use diff::{Change, Diff, Difference, diff};
pub use document::{Document, DocumentError, Kind, OS_IMAGE_LOCK_DESCRIPTION, Profile};
pub use kernel::{
    KernelError, LayerKernels, LayerScan, ScanError, fedora_release, merge_layers, natural_cmp, scan_layer,
    sort_kernel_releases,
};
pub use layout::{LayoutError, OciLayouts};
pub use lock::{GENERIC_LOCK_DESCRIPTION, LockError, OS_IMAGE_LOCKED, lock_from};
pub use model::{GitInput, GitPart, ImageInput, ImagePart, Input, Inputs, Part, Run, RunMetadata, value_text};
pub use reference::{Algorithm, Digest, DigestError, DigestWriter, ImageRef, ReferenceError, is_full_commit};
pub use resolve::{
    Event, Image, KERNEL_LABEL, Layer, Resolution, ResolveError, Resolver, RunContext, Spec, SpecError, SpecInput,
    VERSION_LABEL, immutable_tag_candidates, is_date_stamped, resolve,
};

/// The README's example, run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// `n thing` or `n things`.
pub(crate) fn plural(n: usize, thing: &str) -> String {
    if n == 1 { format!("1 {thing}") } else { format!("{n} {thing}s") }
}

/// `generated_at` as the pipeline writes it: UTC, whole seconds,
/// `2026-02-27T12:00:00Z`.
pub fn timestamp(at: jiff::Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}
