//! Build-input manifests and lock files.
//!
//! A build that uses floating inputs (`kinoite-main:latest`, a builder image
//! tag, a git branch) behaves differently from one day to the next without a
//! single commit changing. `lkg-inputs-lock` records every input a build used,
//! resolved to immutable values (`name@sha256:...`, full commit ids), in a
//! *build-input manifest*; writes and checks *lock files* that replay those
//! inputs exactly; and diffs two manifests to say which floating input moved.
//!
//! It knows nothing of registries: floating inputs are resolved through a
//! resolver trait that `lkg-registry` implements.
//!
//! # Status
//!
//! This crate is a placeholder in the workspace: it has no public API yet.
//! Its work is tracked in issue 8; nothing here pretends to work before
//! that lands.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
