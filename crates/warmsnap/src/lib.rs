//! Last-known-good volume snapshots.
//!
//! A snapshot is one tar per volume plus a `meta.json`, taken only while the
//! app is undeployed, through the Docker archive endpoints of a never-started
//! helper container. Replacing the last-known-good is atomic (stage, verify,
//! rename); restore verifies every checksum and refuses unsafe archive entries
//! *before* touching a live volume, then replaces its content exactly.
//!
//! # Status
//!
//! This crate is a placeholder in the workspace: it has no public API yet.
//! Its work is tracked in issue 5; nothing here pretends to work before
//! that lands.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
