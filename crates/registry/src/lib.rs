//! A hand-written OCI distribution client and the jobs built on it.
//!
//! `lkg-registry` inspects, copies, promotes and signs images in any OCI
//! registry: manifests are kept as raw bytes with their digest (never
//! re-serialised), every body fetched is verified, a same-registry copy mounts
//! blobs instead of uploading them, and a multi-artifact promotion is
//! journalled so that a failure between tag moves can never leave the caller
//! believing stable is consistent. Signatures follow cosign's key-based format.
//!
//! # Status
//!
//! This crate is a placeholder in the workspace: it has no public API yet.
//! Its work is tracked in issue 3; nothing here pretends to work before
//! that lands.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
