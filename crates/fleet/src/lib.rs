//! Keep every app of a fleet on its newest safe version, by itself.
//!
//! lkg-reconcile updates one app behind a safety gate and a health gate and
//! rolls back with its data. `lkg-fleet` runs it for a whole fleet, the way
//! Watchtower and shepherd run unattended, without their blind spots:
//!
//! 1. **Fleet file** ([`Fleet`], `fleet.yml`): each app with what
//!    `lkg-reconcile update` needs, where its versions come from
//!    ([`Source`]: recipe tags, image tags, or a floating tag's digest) and
//!    its [`Policy`] (`allow` patch or minor, `cooldown`, `skip_rolled_back`,
//!    maintenance `window`s, `after` for order).
//! 2. **Discovery** ([`discover()`]): tags read as versions, or a floating
//!    tag resolved to a version pinned by digest
//!    ([`lkg_reconcile::DigestVersion`]), concurrently across apps.
//! 3. **Decision** ([`decide`], pure): what runs by itself, what waits
//!    (cooldown, window), what is held (a major always goes to the safety
//!    gate, never twice), what is not retried (a version that rolled back).
//! 4. **Round** ([`Fleeter::round`]): apps in `after` order, each through
//!    [`lkg_reconcile::Reconciler::update`] under its lock; an app locked by
//!    another process is left alone; a killed run is finished through its
//!    journal first; dependents of an app that failed or is held are skipped.
//! 5. **Record and metrics** ([`FleetState`], [`metrics::render`]): rolled
//!    back and held versions, counters, the last round; Prometheus text.
//!
//! Alerts of each app go to its channels and the fleet's ([`lkg_notify`]);
//! a round in which something changed also sends a summary.
#![cfg_attr(test, allow(clippy::disallowed_methods, reason = "unit tests write and read their fixtures"))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod discover;
mod error;
mod file;
pub mod metrics;
mod plan;
mod round;
mod state;
mod window;

pub use discover::{discover, sort_newest_first, version_of_tag};
pub use error::FleetError;
pub use file::{Allow, FORMAT, Fleet, FleetApp, Policy, Source, parse_duration};
pub use plan::{Candidate, Decision, Facts, decide, newest, order};
pub use round::{AppRound, AppState, FleetEvent, Fleeter, RoundOutcome, RoundReport, retry};
pub use state::{AppRecord, FleetState, RoundRecord, STATE_FORMAT, state_path};
pub use window::Window;
