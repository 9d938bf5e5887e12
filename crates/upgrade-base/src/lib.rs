//! Choose the version to test an upgrade from.
//!
//! Testing an upgrade means deploying a *base* version and upgrading it to the
//! candidate. `lkg-upgrade-base` resolves that base over a local git
//! repository, in a documented order (override, last-green, target-branch
//! tip, newest older release tag, skip) and records why each step was taken
//! or passed over. It orders `<recipe-semver>+<app-version>` tags and applies
//! base-only overlay files only to the version they were written for.
//!
//! # Status
//!
//! This crate is a placeholder in the workspace: it has no public API yet.
//! Its work is tracked in issue 7; nothing here pretends to work before
//! that lands.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
