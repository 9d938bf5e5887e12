//! Health-gated updates of long-lived apps on Docker Swarm, behind a safety
//! gate, with data-safe rollback, crash recovery and a quick mode.
//!
//! Watchtower never added rollback; Flux and Argo remediate on Kubernetes
//! only. `lkg-reconcile` updates a swarm stack so that an update which needs
//! an operator is held before anything is touched, and one that fails is
//! rolled back together with the data it changed:
//!
//! 1. **Safety gate** ([`Gate`], a pure function): a major bump of either side
//!    of `<recipe-semver>+<app-version>` relative to last-good, or release
//!    notes (`releaseNotes/<target>.md`) that mark a manual migration, hold
//!    the update. A hold touches nothing and raises a `held-major` or
//!    `held-manual-migration` [`Alert`] carrying the notes.
//! 2. **Health-gated update** ([`Reconciler::update`]): record last-good →
//!    (stateful) undeploy, snapshot → deploy the target, wait for swarm's
//!    verdict → probe it ([`HealthSpec`]: HTTP, commands, swarm task health;
//!    N consecutive passes within a deadline) → last-good := target. On any
//!    failure (deploy error, `rolled_back`, `paused`, deadline, unhealthy):
//!    (stateful) undeploy and restore the snapshot → redeploy last-good →
//!    probe it → `rollback` alert. A rollback that fails raises
//!    `rollback-failed`. last-good never advances on failure.
//! 3. **Quick mode** ([`Reconciler::quick`]): reattach the app's canonical,
//!    upgrade it to a candidate, check; pass → undeploy keeping volumes;
//!    fail → restore the known-good snapshot, undeploy. Never promotes.
//! 4. **Journal**: every step ([`Step`]) is written to
//!    `<state-dir>/apps/<app>/reconcile/journal.json` before it starts. A run
//!    killed at any step is finished or rolled back by the next `update`,
//!    `quick` or [`Reconciler::recover`] ([`flow::resume`]). One run per app:
//!    lkg-canonical's [`AppLock`](lkg_canonical::AppLock).
//!
//! The steps and their order are pure functions ([`flow`]); the Docker
//! engine, the snapshot store and the probes sit behind [`Platform`], whose
//! real implementation is [`SwarmPlatform`].
//!
//! ```no_run
//! use lkg_reconcile::{AppConfig, HttpCheck, NoProgress, Outcome, Reconciler, SwarmPlatform, UpdateRequest};
//!
//! # async fn demo() -> Result<(), lkg_reconcile::ReconcileError> {
//! let state = std::path::Path::new("/var/lib/lkg");
//! let mut config = AppConfig {
//!     app: Some("shop".into()),
//!     compose: vec!["/srv/shop/compose.yml".into()], // image: shop/app:${LKG_VERSION_TAG}
//!     ..AppConfig::default()
//! };
//! config.health.http.push(HttpCheck::new("http://127.0.0.1:8080/health"));
//! let spec = config.into_spec()?;
//! let platform = SwarmPlatform::connect(state).await?;
//! let request = UpdateRequest { target: "1.4.0".into(), ..UpdateRequest::default() };
//! let report = Reconciler::new(&platform, state, &NoProgress).update(&spec, &request).await?;
//! match report.outcome {
//!     Outcome::Upgraded => println!("now on {}", report.target),
//!     Outcome::Held => println!("held: {}", report.detail.unwrap_or_default()),
//!     Outcome::RolledBack => println!("rolled back to {:?}", report.last_good),
//!     other => println!("{other}"),
//! }
//! # Ok(()) }
//! ```
//!
//! # Limitations
//!
//! - A stateful update has downtime: the stack is undeployed while its
//!   volumes are snapshotted (a consistent copy needs a quiet app).
//! - Plain compose files (`-c`) are one recipe for every version, reached
//!   through interpolation (`${LKG_VERSION}`, `${LKG_VERSION_TAG}`); files
//!   that differ per version come from a recipe repository (`--recipe`), one
//!   tag per version. Either way a rollback deploys the files kept when
//!   last-good was deployed, never the files as they are now.
//! - Quick mode leaves the canonical's volumes as the candidate left them
//!   after a pass (as the harness did); its known-good snapshot is untouched
//!   and is what a failed run restores.
//! - A first install (no last-good) has nothing to roll back to: a failed
//!   install undeploys the stack and keeps whatever its volumes hold.
//! - Health checks run where lkg runs: URLs must be reachable from there.
//! - The manual-migration markers are phrases, not a parser of release
//!   notes: a negation right before a marker ("no breaking changes") cancels
//!   it, any other wording counts (a false hold is the safe mistake).
//! - One engine: the stack, its volumes and the snapshot helpers are reached
//!   through the same `DOCKER_HOST`, so a stateful app's volumes must live on
//!   the node lkg talks to.
#![cfg_attr(test, allow(clippy::disallowed_methods, reason = "unit tests write and read their fixtures"))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod alert;
mod error;
mod event;
mod files;
pub mod flow;
mod gate;
mod health;
mod kept;
pub mod placement;
mod platform;
mod probe;
mod recipe;
mod report;
mod run;
#[cfg(test)]
mod run_tests;
mod spec;
mod state;
mod version;

pub use alert::{Alert, AlertFacts, AlertKind, Alerts, ListedAlert, UnreadableAlert};
pub use error::ReconcileError;
pub use event::Event;
pub use flow::{FailureNote, Flow, Outcome, Reason, Step};
pub use gate::{DEFAULT_MARKERS, Gate, GateDecision, HoldKind, ReleaseNotes};
pub use health::{CheckResult, HealthGate, HealthSpec, HealthState, HttpCheck, ProbeRound};
pub use kept::{DeployedFiles, KeptFile};
pub use lkg_canonical::AppName;
/// The kind of a [`ReconcileError`]: lkg's one failure classification.
pub use lkg_core::FailureKind as ErrorKind;
pub use lkg_core::{NoProgress, Progress};
/// Notification channels and how an alert reached each: lkg-notify's.
pub use lkg_notify::{Channel, Delivery};
pub use platform::{DeployOutcome, Platform, SwarmPlatform, version_label};
pub use recipe::{RecipeTag, is_remote as is_remote_recipe, recipe_tags};
pub use report::{AlertRecord, Command, Report, Resumed, StepTiming, Timeline, Waits};
pub use run::{QuickRequest, Reconciler, UpdateRequest};
pub use spec::{AppConfig, AppSpec, DeploySpec, RecipeSource, ResolveImage, SnapshotAccess};
pub use state::{
    AppState, AppStatus, JOURNAL_FORMAT, Journal, JournalSummary, LastGood, SnapshotRef, app_status, reconciled_apps,
    status,
};
pub use version::{DigestVersion, OrderedVersion, UpdateLevel, check_version, short_version, version_tag};

/// The progress of a swarm deploy, as lkg-swarm reports it.
pub use lkg_swarm::ProgressEvent as DeployProgress;

/// The stack of `app`'s canonical, from its recorded domain (abra's naming,
/// [`stack_for_domain`]); `None` when the app has no canonical record.
pub fn canonical_stack(state_dir: &std::path::Path, app: &AppName) -> Result<Option<String>, ReconcileError> {
    Ok(lkg_canonical::Canonicals::new(state_dir).get(app)?.map(|record| stack_for_domain(&record.domain)))
}

/// abra's stack name for a domain: its dots become `_`
/// (`warm-canon-gitea.ci.example.net` → `warm-canon-gitea_ci_example_net`).
pub fn stack_for_domain(domain: &str) -> String {
    domain.replace('.', "_")
}

/// 64 random bits for ids: `RandomState` is seeded from the OS per instance.
pub(crate) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_i128(jiff::Timestamp::now().as_nanosecond());
    hasher.write_u32(std::process::id());
    hasher.finish()
}

// The README's example is compiled with the doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExample;
