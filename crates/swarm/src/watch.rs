//! The watch loop: observe, assess, wait for the next event or timer.
//!
//! The Docker events API drives it: swarm emits a `service update` event for
//! every spec and `UpdateStatus` change (with `updatestate.new`), and the node
//! emits container events (`start`, `die`, `health_status`) labelled with the
//! stack. swarm emits no task events (moby daemon/events.go
//! `generateClusterEvent` handles nodes, services, networks, secrets and
//! configs only), and container events come only from the node lkg talks to,
//! so the loop also re-inspects every `poll_interval` in case an event was
//! missed. If the event stream fails (an engine restart, a proxy that cuts
//! long requests), the loop polls alone and subscribes again after
//! [`RESUBSCRIBE_AFTER`], then re-inspects at once, since whatever happened
//! in between came with no event.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use bollard::Docker;
use bollard::models::{EventMessage, EventMessageTypeEnum};
use bollard::query_parameters::{EventsOptions, ListServicesOptionsBuilder, ListTasksOptionsBuilder};
use futures_util::{FutureExt, StreamExt};
use jiff::Timestamp;
use lkg_core::Progress;
use tokio::time::Instant;

use crate::docker::{QueryError, STACK_NAMESPACE_LABEL};
use crate::observe::ServiceObservation;
use crate::verdict::{Assessment, Phase, ServiceVerdict, ServiceWatch, StackVerdict};

/// What a deploy reports while it runs, to an
/// [`lkg_core::Progress<ProgressEvent>`](lkg_core::Progress). Libraries never
/// print: the binary turns these into progress lines.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum ProgressEvent<'a> {
    /// The deployer is about to run.
    Deploying {
        /// This deploy's id.
        deploy_id: &'a crate::DeployId,
        /// The deployer ("docker stack deploy").
        deployer: &'a str,
    },
    /// The deployer returned; the watch begins.
    Applied,
    /// An orphan service was removed.
    Removed {
        /// The service.
        service: &'a str,
    },
    /// A service's phase changed.
    Phase {
        /// `<stack>_<service>`.
        service: &'a str,
        /// What it waits for now.
        phase: &'a Phase,
    },
    /// A service reached its verdict.
    Decided(&'a ServiceVerdict),
    /// The events API failed; the watch goes on by polling and subscribes
    /// again after [`RESUBSCRIBE_AFTER`].
    EventsUnavailable {
        /// The error.
        reason: &'a str,
    },
    /// The watch subscribed to events again after they failed.
    EventsResumed,
}

/// Observes the services of `stack` now. Services of `names` that do not
/// exist are absent from the map.
/// `names: None` observes every service of the stack.
pub async fn observe_stack(
    docker: &Docker,
    stack: &str,
    names: Option<&[String]>,
) -> Result<BTreeMap<String, ServiceObservation>, QueryError> {
    let filters = HashMap::from([("label", vec![format!("{STACK_NAMESPACE_LABEL}={stack}")])]);
    let options = ListServicesOptionsBuilder::default().filters(&filters).status(true).build();
    let services = docker
        .list_services(Some(options))
        .await
        .map_err(|source| QueryError::Engine { what: format!("list the services of stack {stack}"), source })?;
    let services: Vec<_> = services
        .into_iter()
        .filter(|s| {
            let name = s.spec.as_ref().and_then(|s| s.name.as_ref());
            names.is_none_or(|names| name.is_some_and(|n| names.contains(n)))
        })
        .collect();
    if services.is_empty() {
        return Ok(BTreeMap::new());
    }
    let ids: Vec<String> = services.iter().filter_map(|s| s.id.clone()).collect();
    let all = HashMap::from([("service", ids.clone())]);
    let tasks = docker
        .list_tasks(Some(ListTasksOptionsBuilder::default().filters(&all).build()))
        .await
        .map_err(|source| QueryError::Engine { what: format!("list the tasks of stack {stack}"), source })?;
    // The engine's own "is this task running the current spec" (swarmkit
    // orchestrator.IsTaskDirty), the filter docker/cli's progress uses.
    let current = HashMap::from([("service", ids), ("_up-to-date", vec!["true".to_owned()])]);
    let up_to_date: HashSet<String> = docker
        .list_tasks(Some(ListTasksOptionsBuilder::default().filters(&current).build()))
        .await
        .map_err(|source| QueryError::Engine { what: format!("list the up-to-date tasks of stack {stack}"), source })?
        .into_iter()
        .filter_map(|t| t.id)
        .collect();
    Ok(services
        .iter()
        .map(|s| {
            let observation = ServiceObservation::from_engine(s, &tasks, &up_to_date);
            (observation.name.clone(), observation)
        })
        .collect())
}

/// How the loop waits.
#[derive(Debug, Clone, Copy)]
pub struct WatchOptions {
    /// Re-inspect at least this often, events or not.
    pub poll_interval: Duration,
}

impl Default for WatchOptions {
    fn default() -> WatchOptions {
        WatchOptions { poll_interval: Duration::from_millis(500) }
    }
}

/// How long the loop polls alone after the event stream failed before it
/// subscribes again.
pub const RESUBSCRIBE_AFTER: Duration = Duration::from_secs(1);

/// Query errors in a row that end the watch: one is a blip (a service removed
/// between two calls), several mean the engine is gone.
const MAX_QUERY_ERRORS: u32 = 5;

/// Watches `services` of `stack` until each has a verdict.
///
/// `since` is the engine time from which events are replayed, so nothing
/// that happened between the deploy and the subscription is missed.
pub async fn watch(
    docker: &Docker,
    stack: &str,
    mut services: Vec<ServiceWatch>,
    since: Timestamp,
    options: WatchOptions,
    progress: &dyn for<'e> Progress<ProgressEvent<'e>>,
) -> Result<StackVerdict, QueryError> {
    let names: Vec<String> = services.iter().map(|s| s.name().to_owned()).collect();
    let filters = HashMap::from([("type".to_owned(), vec!["service".to_owned(), "container".to_owned()])]);
    let subscribe = |since: Option<Timestamp>| {
        let options = EventsOptions {
            since: since.map(|t| t.as_second().to_string()),
            until: None,
            filters: Some(filters.clone()),
        };
        Box::pin(docker.events(Some(options)))
    };
    let mut events = subscribe(Some(since));
    // `None` while the stream is alive; else when to subscribe again.
    let mut resubscribe_at: Option<Instant> = None;
    let start = Instant::now();
    let mut verdicts: Vec<ServiceVerdict> = Vec::new();
    let mut phases: HashMap<String, Phase> = HashMap::new();
    let mut errors = 0;
    loop {
        let observed = match observe_stack(docker, stack, Some(&names)).await {
            Ok(observed) => {
                errors = 0;
                observed
            }
            Err(e) if errors + 1 >= MAX_QUERY_ERRORS => return Err(e),
            Err(_) => {
                errors += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let elapsed = start.elapsed();
        let mut next_wake = elapsed + options.poll_interval;
        let mut pending = Vec::with_capacity(services.len());
        for mut service in services {
            match service.observe(observed.get(service.name()), elapsed) {
                Assessment::Decided(mut verdict) => {
                    verdict.decided_at = Some(Timestamp::now());
                    progress.report(&ProgressEvent::Decided(&verdict));
                    verdicts.push(verdict);
                }
                Assessment::Pending { phase, wake } => {
                    if phases.get(service.name()) != Some(&phase) {
                        progress.report(&ProgressEvent::Phase { service: service.name(), phase: &phase });
                        phases.insert(service.name().to_owned(), phase);
                    }
                    if let Some(wake) = wake {
                        next_wake = next_wake.min(wake);
                    }
                    pending.push(service);
                }
            }
        }
        services = pending;
        if services.is_empty() {
            return Ok(StackVerdict::from_services(verdicts));
        }
        let wake_at = start + next_wake;
        loop {
            if resubscribe_at.is_some_and(|at| at <= Instant::now()) {
                // New events only: the re-inspection that follows sees what
                // happened while there was no stream.
                events = subscribe(None);
                resubscribe_at = None;
                progress.report(&ProgressEvent::EventsResumed);
                break;
            }
            let sleep_until = resubscribe_at.map_or(wake_at, |at| at.min(wake_at));
            tokio::select! {
                biased;
                event = events.next(), if resubscribe_at.is_none() => match event {
                    Some(Ok(event)) => {
                        if is_relevant(&event, stack, &names) {
                            // Coalesce a burst (a deploy emits several events at once).
                            while let Some(Some(Ok(_))) = events.next().now_or_never() {}
                            break;
                        }
                    }
                    Some(Err(e)) => {
                        resubscribe_at = Some(Instant::now() + RESUBSCRIBE_AFTER);
                        progress.report(&ProgressEvent::EventsUnavailable { reason: &e.to_string() });
                    }
                    None => {
                        resubscribe_at = Some(Instant::now() + RESUBSCRIBE_AFTER);
                        progress.report(&ProgressEvent::EventsUnavailable { reason: "the event stream ended" });
                    }
                },
                () = tokio::time::sleep_until(sleep_until) => {
                    if Instant::now() >= wake_at {
                        break;
                    }
                }
            }
        }
    }
}

fn is_relevant(event: &EventMessage, stack: &str, names: &[String]) -> bool {
    let attributes = event.actor.as_ref().and_then(|a| a.attributes.as_ref());
    let attribute = |key: &str| attributes.and_then(|a| a.get(key)).map(String::as_str);
    match event.typ {
        Some(EventMessageTypeEnum::SERVICE) => attribute("name").is_some_and(|n| names.iter().any(|x| x == n)),
        Some(EventMessageTypeEnum::CONTAINER) => attribute(STACK_NAMESPACE_LABEL) == Some(stack),
        _ => false,
    }
}
