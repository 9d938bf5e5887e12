//! Docker Swarm deploys that tell the truth.
//!
//! `docker stack deploy` returns before an update converges, and even with
//! `--detach=false` exits 0 after swarm rolled the update back
//! (docker/cli#6752). lkg-swarm deploys a stack through a [`Deployer`]
//! (`docker stack deploy`, or an `abra app deploy`-style command), stamps
//! every service with a unique [`DeployId`], and watches until each service
//! reaches a [`Verdict`] that belongs to *this* deploy: `converged`,
//! `no_change`, `rolled_back`, `paused`, `rollback_paused`, `failed`,
//! `superseded` or `deadline_exceeded`. A stale `completed` from the previous
//! update, the moment before swarm's updater starts, and another client's
//! update are each recognised and named.
//!
//! It also reads the deployed identity labels ([`Identity`]), prunes services
//! the compose files dropped ([`PrunePlan`]), lists a stack's volumes,
//! undeploys a stack while keeping them, and finds on which node of a
//! multi-node swarm a stack's volumes live and whether its services are held
//! there ([`StackPlacement`], [`placement`]).
//!
//! ```no_run
//! use std::time::Duration;
//! use lkg_swarm::{DeployRequest, StackDeployer, Swarm, NoProgress};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let swarm = Swarm::connect().await?;
//! let request = DeployRequest::new("shop", ["compose.yml"]).timeout(Duration::from_secs(120)).prune(true);
//! let report = swarm.deploy(&StackDeployer::new(), &request, &NoProgress).await?;
//! for service in &report.verdict.services {
//!     println!("{}: {} ({})", service.service, service.verdict, service.reason);
//! }
//! assert!(report.verdict.is_success(), "rolled back or stuck: {:?}", report.verdict.verdict);
//! # Ok(()) }
//! ```
//!
//! The verdict rules are a pure state machine ([`ServiceWatch`]) over
//! [`ServiceObservation`]s; the watch loop feeds it from the Docker events API
//! with periodic re-inspection. `docs/swarm.md` holds the verdict table and
//! the swarm behaviour behind each row.
//!
//! # Limitations
//!
//! - The deploy id travels in a generated compose overlay; a custom deployer
//!   that does not apply it leaves lkg unable to attribute the update, and
//!   the verdict is `deadline_exceeded` ("the deploy has not reached this
//!   service").
//! - "After this deploy began" compares swarm's `UpdateStatus.StartedAt`
//!   (the manager's clock) with the clock of the engine lkg talks to: on a
//!   multi-manager swarm their clocks must agree to within the time a deploy
//!   takes.
//! - Container events come only from the node lkg talks to; on other nodes
//!   the watch relies on service events and polling (every 500 ms by default).
//! - Volumes are node-local and the manager's API does not list other
//!   nodes' volumes: [`Swarm::placement`] sees a volume on a node through the
//!   tasks that created containers there (the task history swarm keeps) and
//!   through the engine lkg talks to; see [`placement`].
//! - Prune reads service names from the compose files; compose-spec `!reset`
//!   tags are refused (docker/cli does not support them either).
#![cfg_attr(test, allow(clippy::disallowed_methods, reason = "unit tests write and read their fixtures"))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod compose;
mod deploy_id;
pub mod deployer;
pub mod docker;
pub mod identity;
pub mod observe;
pub mod placement;
pub mod prune;
mod stack;
pub mod verdict;
pub mod watch;
pub mod yaml;

#[cfg(test)]
mod replay_tests;

pub use compose::{ComposeError, ComposeFiles};
pub use deploy_id::{DEPLOY_ID_LABEL, DeployId, InvalidDeployId};
pub use deployer::{CommandDeployer, DeployInvocation, Deployer, DeployerError, ResolveImage, StackDeployer};
pub use identity::{CommitCheck, Identity, InvalidCommit};
pub use lkg_core::{NoProgress, Progress};
pub use observe::{ServiceObservation, UpdateState};
pub use placement::{DataLocation, PlacementProblem, PlacementRefusal, StackPlacement, SwarmNode};
pub use prune::{PruneOutcome, PrunePlan};
pub use stack::{
    ContainerHealth, DeployError, DeployReport, DeployRequest, IdentityError, ServiceState, StackStatus, Swarm,
    UndeployError, UndeployReport,
};
pub use verdict::{DEFAULT_TASK_FAILURE_LIMIT, ServiceVerdict, ServiceWatch, StackVerdict, Verdict};
pub use watch::{ProgressEvent, RESUBSCRIBE_AFTER, WatchOptions};
