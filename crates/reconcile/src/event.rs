//! Progress: the library never prints; it tells an [`Observe`] what it does.

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

/// Receives progress. Any `Fn(&Event<'_>) + Send + Sync` closure is one.
pub trait Observe: Send + Sync {
    /// Called for each event, in order.
    fn event(&self, event: &Event<'_>);
}

impl<F: Fn(&Event<'_>) + Send + Sync> Observe for F {
    fn event(&self, event: &Event<'_>) {
        self(event);
    }
}

/// Progress that goes nowhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl Observe for Quiet {
    fn event(&self, _: &Event<'_>) {}
}
