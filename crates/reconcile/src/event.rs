//! Progress: the library never prints; it tells an
//! [`lkg_core::Progress<Event>`](lkg_core::Progress) what it does.

use crate::flow::Step;
use crate::health::ProbeRound;

/// What a run is doing.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A step begins. The journal already names it: a process killed from
    /// here on leaves this step for `recover` to finish or undo.
    Step {
        /// The step.
        step: Step,
        /// The version it deploys or checks.
        version: &'a str,
    },
    /// The swarm deploy reports progress.
    Deploy(lkg_swarm::ProgressEvent<'a>),
    /// One round of health checks.
    Health {
        /// The version checked.
        version: &'a str,
        /// The round, from 1.
        round: u32,
        /// Consecutive passing rounds so far.
        streak: u32,
        /// What each check saw.
        probe: &'a ProbeRound,
    },
    /// Something worth saying ("recovering the run killed at ...").
    Note(&'a str),
}
