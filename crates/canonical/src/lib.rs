//! The registry of canonical deployments.
//!
//! A *canonical* is a long-lived deployment of an app at a stable domain
//! whose data is the known-good state that quick upgrade tests start from.
//! This crate keeps one record per app, `<state-dir>/apps/<app>/canonical.json`
//! ([`Record`], written atomically, unknown fields preserved), derives
//! canonical domains from an explicit namespace and refuses those that
//! collide with a live service ([`DomainScheme`]), decides with a pure
//! function whether a run may advance a canonical ([`decide_promotion`]),
//! says whether an app still has its canonical, record *and* volumes
//! ([`Canonicals::has_canonical`] over a [`VolumeLookup`]), and serialises
//! runs on one app with an advisory lock ([`AppLock`]).
//!
//! ```
//! use lkg_canonical::{
//!     AppName, Canonicals, DomainScheme, PromotionOutcome, PromotionRequest, Reserved, Run, RunKind, RunResult,
//!     Stages, Status, Target,
//! };
//! use std::time::Duration;
//!
//! let state = tempfile::tempdir()?;
//! let canonicals = Canonicals::new(state.path());
//! let app = AppName::new("gitea")?;
//! let scheme = DomainScheme::new("ci.example.net")?
//!     .reserve(Reserved::parse("warm-keycloak.ci.example.net=live keycloak SSO")?);
//!
//! // One run per app at a time; changes need the lock.
//! let lock = canonicals.lock(&app, "nightly cold run", Duration::from_secs(60), |_| {})?;
//! let run = Run { kind: RunKind::Cold, stages: Stages::Full, target: Target::Latest, result: RunResult::Green };
//! let outcome = canonicals.promote(&lock, &PromotionRequest {
//!     version: "3.6.0+1.24.2-rootless".into(),
//!     commit: "5e1f0c2".into(),
//!     run,
//!     scheme: Some(&scheme),
//!     volumes: vec!["warm-canon-gitea_ci_example_net_data".into()],
//!     status: Status::Warm,
//!     now: lkg_canonical::Timestamp::now(),
//! })?;
//! let PromotionOutcome::Seeded { record } = outcome else { panic!("a first green cold run seeds") };
//! assert_eq!(record.domain, "warm-canon-gitea.ci.example.net");
//!
//! // A quick run never promotes, and says why.
//! let quick = Run { kind: RunKind::Quick, ..run };
//! let outcome = canonicals.promote(&lock, &PromotionRequest {
//!     version: "3.7.0+1.25.0-rootless".into(), commit: "9a8b7c6".into(), run: quick, scheme: Some(&scheme),
//!     volumes: vec![], status: Status::Warm, now: lkg_canonical::Timestamp::now(),
//! })?;
//! assert!(matches!(outcome, PromotionOutcome::Refused { .. }));
//! assert_eq!(canonicals.get(&app)?.unwrap().version, "3.6.0+1.24.2-rootless");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! With the `docker` feature, `EngineVolumes` looks volumes up in a Docker
//! engine for `has_canonical`.
//!
//! # Limitations
//!
//! - The lock is an `flock(2)`: it serialises runs on one host, or on hosts
//!   sharing a file system that implements `flock` across hosts. A holder on
//!   another host is reported, but lkg cannot tell whether it is alive.
//! - Process liveness (for the "held by ..." report) reads `/proc`: Linux only.
//!   Elsewhere the lock still works; the report says less.
//! - A record lists the volumes the caller names; this crate does not find a
//!   stack's volumes itself (`lkg_swarm::docker::stack_volumes` does).
//! - Forgetting a canonical removes its record only: its stack and volumes
//!   are the operator's to remove.
#![cfg_attr(test, allow(clippy::disallowed_methods, reason = "unit tests write and read their fixtures"))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "docker")]
mod docker;
mod domain;
mod lock;
mod presence;
mod promotion;
mod record;
mod report;
mod store;
mod version;

#[cfg(feature = "docker")]
pub use docker::{EngineLookupError, EngineVolumes};
pub use domain::{DEFAULT_NAMESPACE, DomainError, DomainScheme, Namespace, Reserved};
/// The timestamp type of records and requests (re-exported so callers need not depend on jiff).
pub use jiff::Timestamp;
pub use lkg_core::{AppName, AppNameError};
pub use lock::{AppLock, Holder, LOCKS_VAR, Liveness, LockError, Owner, inherited_lock};
pub use presence::{Presence, PresenceError, VolumeLookup};
pub use promotion::{PromotionVerdict, Refusal, Run, RunKind, RunResult, Stages, Target, decide_promotion};
pub use record::{Record, SCHEMA_VERSION, Status};
pub use report::table;
pub use store::{Canonicals, PromoteError, PromotionOutcome, PromotionRequest, Readable, StagedRecord, StoreError};
pub use version::{
    InvalidVersion, MajorBump, MajorChange, RecipeVersion, VERSION_RULE, VersionError, check_version, major_bump,
};

// The README's example is compiled and run with the doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExample;
