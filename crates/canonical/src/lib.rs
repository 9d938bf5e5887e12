//! The registry of canonical deployments.
//!
//! A *canonical* is a long-lived deployment of an app at a stable domain whose
//! data is the known-good state that quick upgrade tests start from.
//! `lkg-canonical` keeps one record per app (`canonical.json`), derives
//! collision-free domains from an explicit namespace, decides with a pure
//! function whether a run may advance a canonical, and serialises runs on one
//! app with an advisory lock.
//!
//! # Status
//!
//! This crate is a placeholder in the workspace: it has no public API yet.
//! Its work is tracked in issue 6; nothing here pretends to work before
//! that lands.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
