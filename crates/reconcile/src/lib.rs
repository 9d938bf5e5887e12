//! Health-gated updates of long-lived apps.
//!
//! `lkg-reconcile` updates an app behind two gates: a safety gate that holds
//! major bumps and manual migrations before anything is touched, and a health
//! gate after the deploy. A stateful app is snapshotted while undeployed; when
//! the new version is bad, the snapshot is restored and the last-good version
//! redeployed, with an alert. Every step is journalled so a killed reconcile
//! resumes or recovers.
//!
//! # Status
//!
//! This crate is a placeholder in the workspace: it has no public API yet.
//! Its work is tracked in issue 9; nothing here pretends to work before
//! that lands.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
