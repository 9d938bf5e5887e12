//! The `lkg` dispatcher: `lkg <job> args` runs `lkg-<job> args` from PATH or
//! next to itself, passing arguments, output and the exit code through.
#![allow(clippy::disallowed_methods, reason = "tests write and read their fixtures; a failure panics at the line")]

mod bad_input;
mod common;
mod dispatcher;
// Restarts the engine: run alone (scripts/test's engine-restart step).
#[cfg(all(feature = "reconcile", feature = "snap"))]
mod engine_restart;
mod hostile_yaml;
// Each fault case is compiled with the feature of the binary it runs.
mod faults;
// `lkg-inputs` exists only with the `inputs` feature.
#[cfg(feature = "inputs")]
mod inputs;
// `lkg-snap` exists only with the `snap` feature (its [[bin]] requires it).
#[cfg(feature = "snap")]
mod snap;
// Each `lkg-<job>` below exists only with its job's feature, too.
#[cfg(feature = "canonical")]
mod canonical;
#[cfg(feature = "fleet")]
mod fleet;
// Stateful reconciles on the three-node swarm (scripts/testenv up --nodes 3).
#[cfg(feature = "reconcile")]
mod multi_node;
#[cfg(feature = "reconcile")]
mod reconcile;
#[cfg(feature = "registry")]
mod registry;
// Planted secrets go through lkg-registry and lkg-inputs.
#[cfg(all(feature = "registry", feature = "inputs"))]
mod secrets;
#[cfg(feature = "swarm")]
mod swarm;
#[cfg(feature = "upgrade-base")]
mod upgrade_base;
