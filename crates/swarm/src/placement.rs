//! Where a stack's data lives on a multi-node swarm, and whether its services
//! are held to that node.
//!
//! A `local` volume exists on one node only: the node whose engine created it
//! for a container. swarm's scheduler knows nothing of volumes: a service
//! that is not constrained to the node holding its volume may start on any
//! other eligible node, where the engine creates a new, empty volume of the
//! same name (the swarmkit scheduler filters nodes by resources, platform,
//! constraints and ports only; `manager/scheduler/filter.go`).
//!
//! What the manager's API tells (and what lkg reads, [`Swarm::placement`]):
//!
//! - `GET /nodes`: every node's id, hostname, role, labels, engine labels,
//!   platform, `Status.State` (`ready`, `down`, `unknown`, `disconnected`)
//!   and `Spec.Availability` (`active`, `pause`, `drain`);
//! - `GET /services`: each service's mounts (`TaskTemplate.ContainerSpec.Mounts`,
//!   type `volume` with the volume's name) and placement constraints;
//! - `GET /tasks`: each task's node (`NodeID`), its spec's mounts, and
//!   whether the node created its container (`Status.ContainerStatus.ContainerID`):
//!   a node that created a container mounting volume V holds a volume V.
//!   swarmkit keeps a task's node for its whole life ("once it is dispatched
//!   to a node, it will not be dispatched to another node", swarmkit
//!   `design/task_model.md`), but keeps only `TaskHistoryRetentionLimit`
//!   tasks per slot (5 by default, `docker swarm update --task-history-limit`)
//!   and removes a service's tasks with the service;
//! - `GET /volumes` lists the volumes of the engine asked, only: on a manager,
//!   the manager's own. (Cluster volumes, `Spec.AccessMode`, exist from API
//!   1.42 and only for CSI plugins, not for `local` volumes.)
//!
//! So lkg sees a volume on a node when a task that is still in the
//! history created a container there, or when the node is the one lkg talks
//! to. A volume made by hand (`docker volume create`) on another node, or
//! one whose tasks were all reaped (a removed stack, more than five updates
//! ago), is invisible to it.
//!
//! The decisions ([`StackPlacement::check`], [`StackPlacement::misplaced`],
//! [`eligible_nodes`]) are pure functions over what was read.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use bollard::Docker;
use bollard::models::{
    MountType, Node, NodeSpecAvailabilityEnum, NodeSpecRoleEnum, NodeState, Service, Task, TaskState,
};
use bollard::query_parameters::{ListNodesOptions, ListTasksOptionsBuilder};
use serde::Serialize;

use crate::Swarm;
use crate::docker::{QueryError, stack_services, stack_volumes};

/// A swarm node, as the manager describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SwarmNode {
    /// The node id (`node.id`).
    pub id: String,
    /// Its hostname (`node.hostname`; several nodes may share one).
    pub hostname: String,
    /// `manager` or `worker` (`node.role`).
    pub role: String,
    /// `ready`, `down`, `unknown` or `disconnected`.
    pub state: String,
    /// `active`, `pause` or `drain`.
    pub availability: String,
    /// `node.labels.*`.
    pub labels: BTreeMap<String, String>,
    /// `engine.labels.*`.
    pub engine_labels: BTreeMap<String, String>,
    /// `node.platform.os`.
    pub os: String,
    /// `node.platform.arch`.
    pub arch: String,
}

impl SwarmNode {
    /// `hostname (id)`, how messages name a node.
    pub fn describe(&self) -> String {
        if self.hostname.is_empty() { self.id.clone() } else { format!("{} ({})", self.id, self.hostname) }
    }

    fn from_engine(node: &Node) -> SwarmNode {
        let spec = node.spec.as_ref();
        let description = node.description.as_ref();
        let platform = description.and_then(|d| d.platform.as_ref());
        SwarmNode {
            id: node.id.clone().unwrap_or_default(),
            hostname: description.and_then(|d| d.hostname.clone()).unwrap_or_default(),
            role: match spec.and_then(|s| s.role) {
                Some(NodeSpecRoleEnum::MANAGER) => "manager",
                Some(NodeSpecRoleEnum::WORKER) => "worker",
                _ => "",
            }
            .to_owned(),
            state: match node.status.as_ref().and_then(|s| s.state) {
                Some(NodeState::READY) => "ready",
                Some(NodeState::DOWN) => "down",
                Some(NodeState::DISCONNECTED) => "disconnected",
                _ => "unknown",
            }
            .to_owned(),
            availability: match spec.and_then(|s| s.availability) {
                Some(NodeSpecAvailabilityEnum::ACTIVE) => "active",
                Some(NodeSpecAvailabilityEnum::PAUSE) => "pause",
                Some(NodeSpecAvailabilityEnum::DRAIN) => "drain",
                _ => "",
            }
            .to_owned(),
            labels: spec.and_then(|s| s.labels.clone()).unwrap_or_default().into_iter().collect(),
            engine_labels: description
                .and_then(|d| d.engine.as_ref())
                .and_then(|e| e.labels.clone())
                .unwrap_or_default()
                .into_iter()
                .collect(),
            os: platform.and_then(|p| p.os.clone()).unwrap_or_default(),
            arch: platform.and_then(|p| p.architecture.clone()).unwrap_or_default(),
        }
    }
}

/// Why lkg believes a node holds a volume.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Evidence {
    /// A task of the service created a container mounting it there.
    Task {
        /// The task id.
        task: String,
        /// Its service.
        service: String,
        /// Its state now.
        state: String,
    },
    /// The engine lkg talks to lists it (`GET /volumes`).
    LocalEngine,
}

/// A service of the stack that mounts named volumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatefulService {
    /// `<stack>_<name>`.
    pub service: String,
    /// The volumes it mounts (full names, `<stack>_data`).
    pub volumes: BTreeSet<String>,
    /// Its placement constraints as deployed.
    pub constraints: Vec<String>,
    /// The nodes its running tasks run on.
    pub running_on: BTreeSet<String>,
}

/// What the manager tells about where a stack's data and tasks are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StackPlacement {
    /// The stack.
    pub stack: String,
    /// The node of the engine lkg talks to.
    pub local_node: String,
    /// Every node of the swarm.
    pub nodes: Vec<SwarmNode>,
    /// The stack's services that mount named volumes.
    pub services: Vec<StatefulService>,
    /// Volume name -> node id -> why.
    pub volumes: BTreeMap<String, BTreeMap<String, BTreeSet<Evidence>>>,
}

/// Where the stack's data is, once [`StackPlacement::check`] found it safe to
/// touch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DataLocation {
    /// The swarm has one node: the data is on it, and no constraint is needed.
    SingleNode,
    /// No node is known to hold a volume of the stack (not deployed, or it
    /// mounts none).
    Unknown,
    /// Every volume of the stack is on `node`.
    Node {
        /// The node.
        node: Box<SwarmNode>,
        /// The stateful services (short names, as in the compose files) that
        /// need `node.id == <node>` added: all of them with `pin`, none
        /// otherwise (they are already held there).
        pin: BTreeSet<String>,
        /// The stack's volumes on it.
        volumes: BTreeSet<String>,
        /// Whether it is the node of the engine lkg talks to: otherwise only
        /// a job on the node (lkg's agent) reaches the volumes.
        local: bool,
    },
}

/// One reason a stateful operation would be unsafe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum PlacementProblem {
    /// A volume exists on several nodes: which copy is the data is not known.
    VolumeOnManyNodes {
        /// The volume.
        volume: String,
        /// The nodes (described).
        nodes: Vec<String>,
    },
    /// The stack's volumes are spread over several nodes.
    DataOnManyNodes {
        /// Node (described) -> its volumes.
        nodes: BTreeMap<String, Vec<String>>,
    },
    /// The data's node is not `ready`.
    NodeDown {
        /// The node (described).
        node: String,
        /// Its state.
        state: String,
    },
    /// The data's node takes no new tasks (`drain` or `pause`).
    NodeUnavailable {
        /// The node (described).
        node: String,
        /// Its availability.
        availability: String,
    },
    /// The data's node is no longer in the swarm.
    NodeGone {
        /// The node id.
        node: String,
    },
    /// A stateful service could run on other nodes than its data's.
    NotConstrained {
        /// The service.
        service: String,
        /// Whose constraints: "the deployed service" or "the target's compose files".
        source: String,
        /// The data's node (described).
        node: String,
        /// The constraint that would hold it there.
        constraint: String,
        /// The nodes its constraints allow (described).
        eligible: Vec<String>,
    },
    /// A stateful service's constraints exclude its data's node: pinning it
    /// there would leave it unschedulable.
    ConstraintExcludesDataNode {
        /// The service.
        service: String,
        /// Whose constraints.
        source: String,
        /// The data's node (described).
        node: String,
        /// The constraints.
        constraints: Vec<String>,
    },
    /// The data is on another node than the engine lkg talks to, and the
    /// snapshot store is local to lkg's machine, which that node cannot
    /// reach. [`StackPlacement::check`] does not report it: whether it is a
    /// problem depends on the store, which the caller knows.
    NotLocal {
        /// The data's node (described).
        node: String,
        /// The node lkg talks to (described).
        local: String,
    },
}

impl fmt::Display for PlacementProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlacementProblem::VolumeOnManyNodes { volume, nodes } => write!(
                f,
                "volume {volume} exists on {} nodes ({}): lkg cannot tell which one holds the data; remove the \
                 copies that are not the data (`docker volume rm` on those nodes)",
                nodes.len(),
                nodes.join(", ")
            ),
            PlacementProblem::DataOnManyNodes { nodes } => {
                let list: Vec<String> = nodes.iter().map(|(n, v)| format!("{n}: {}", v.join(", "))).collect();
                write!(
                    f,
                    "the stack's volumes are on several nodes ({}); lkg snapshots a stack's volumes on one node",
                    list.join("; ")
                )
            }
            PlacementProblem::NodeDown { node, state } => write!(
                f,
                "the data's node {node} is {state}: its volumes cannot be reached, and swarm would start the app on \
                 an empty volume elsewhere; bring the node back first"
            ),
            PlacementProblem::NodeUnavailable { node, availability } => write!(
                f,
                "the data's node {node} is {availability}: swarm places no new task there, so the target would \
                 start elsewhere on an empty volume or wait forever; `docker node update --availability active` it \
                 first"
            ),
            PlacementProblem::NodeGone { node } => write!(f, "the data's node {node} is no longer in the swarm"),
            PlacementProblem::NotConstrained { service, source, node, constraint, eligible } => write!(
                f,
                "service {service} is not constrained to its data's node {node} ({source} allow {}): the target \
                 or the rollback could start on an empty volume elsewhere; add the placement constraint \
                 `{constraint}` to its compose file (deploy.placement.constraints), or pass --pin-to-data-node",
                eligible.join(", ")
            ),
            PlacementProblem::ConstraintExcludesDataNode { service, source, node, constraints } => write!(
                f,
                "service {service}'s constraints in {source} ({}) exclude its data's node {node}: pinned there it \
                 could never start; fix the constraints",
                constraints.join(", ")
            ),
            PlacementProblem::NotLocal { node, local } => write!(
                f,
                "the data is on node {node}, but lkg talks to the engine of node {local} and keeps snapshots on this \
                 machine, which node {node} cannot reach; pass --store oci://HOST/REPOSITORY (a registry every \
                 node reaches) so that lkg's agent snapshots and restores the data on its node"
            ),
        }
    }
}

/// A stateful operation refused before it touched anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[error("refusing to touch stack {stack}'s data: {}", render(.problems))]
pub struct PlacementRefusal {
    /// The stack.
    pub stack: String,
    /// Every reason, in the order found.
    pub problems: Vec<PlacementProblem>,
}

fn render(problems: &[PlacementProblem]) -> String {
    problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

impl lkg_core::Classify for PlacementRefusal {
    fn kind(&self) -> lkg_core::FailureKind {
        lkg_core::FailureKind::Input
    }
}

/// The constraint that holds a service on `node`.
pub fn node_constraint(node: &str) -> String {
    format!("node.id == {node}")
}

/// A parsed placement constraint (swarmkit `manager/constraint`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Constraint {
    key: String,
    equal: bool,
    value: String,
}

impl Constraint {
    fn parse(text: &str) -> Option<Constraint> {
        let (at, equal) = match (text.find("=="), text.find("!=")) {
            (Some(e), Some(n)) => (e.min(n), e < n),
            (Some(e), None) => (e, true),
            (None, Some(n)) => (n, false),
            (None, None) => return None,
        };
        let key = text[..at].trim();
        let value = text[at + 2..].trim();
        let valid_key = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !valid_key || value.is_empty() || value.contains("==") || value.contains("!=") || value.contains('$') {
            return None;
        }
        Some(Constraint { key: key.to_ascii_lowercase(), equal, value: value.to_owned() })
    }

    /// swarmkit `NodeMatches`: values compare case-insensitively; a missing
    /// label reads as "". `None`: a key lkg does not know.
    fn matches(&self, node: &SwarmNode) -> Option<bool> {
        let label = |labels: &BTreeMap<String, String>, prefix: &str| {
            self.key.strip_prefix(prefix).map(|name| {
                labels.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map_or("", |(_, v)| v.as_str()).to_owned()
            })
        };
        let actual = match self.key.as_str() {
            "node.id" => node.id.clone(),
            "node.hostname" => node.hostname.clone(),
            "node.role" => node.role.clone(),
            "node.platform.os" => node.os.clone(),
            "node.platform.arch" => node.arch.clone(),
            _ => label(&node.labels, "node.labels.").or_else(|| label(&node.engine_labels, "engine.labels."))?,
        };
        Some(actual.eq_ignore_ascii_case(&self.value) == self.equal)
    }
}

/// The nodes whose every constraint matches. A constraint lkg cannot read
/// (an unknown key, an unresolved `${VARIABLE}`) restricts nothing here: lkg
/// then assumes the service may run anywhere, the safe assumption for a
/// refusal.
pub fn eligible_nodes<'n>(nodes: &'n [SwarmNode], constraints: &[String]) -> Vec<&'n SwarmNode> {
    let parsed: Vec<Constraint> = constraints.iter().filter_map(|c| Constraint::parse(c)).collect();
    nodes.iter().filter(|node| parsed.iter().all(|c| c.matches(node).unwrap_or(true))).collect()
}

impl StackPlacement {
    /// More than one node: placement matters.
    pub fn is_multi_node(&self) -> bool {
        self.nodes.len() > 1
    }

    fn node(&self, id: &str) -> Option<&SwarmNode> {
        self.nodes.iter().find(|n| n.id == id)
    }

    fn describe(&self, id: &str) -> String {
        self.node(id).map_or_else(|| id.to_owned(), SwarmNode::describe)
    }

    /// The nodes known to hold a volume of the stack.
    pub fn data_nodes(&self) -> BTreeSet<&str> {
        self.volumes.values().flat_map(|nodes| nodes.keys().map(String::as_str)).collect()
    }

    /// Decides whether a stateful operation may touch the stack's data.
    ///
    /// On a single-node swarm, always (the data is on the one node, and no
    /// constraint is needed). Otherwise every volume must be on one node, the
    /// same for all, `ready` and `active`; and each
    /// service that mounts a volume must be held there by its constraints,
    /// both as deployed (what a rollback redeploys) and in `target`
    /// (service short name -> the constraints the target's files give it),
    /// unless `pin` adds `node.id == <node>` to every such service.
    pub fn check(
        &self,
        target: Option<&BTreeMap<String, Vec<String>>>,
        pin: bool,
    ) -> Result<DataLocation, PlacementRefusal> {
        if !self.is_multi_node() {
            return Ok(DataLocation::SingleNode);
        }
        let mut problems = Vec::new();
        for (volume, nodes) in &self.volumes {
            if nodes.len() > 1 {
                problems.push(PlacementProblem::VolumeOnManyNodes {
                    volume: volume.clone(),
                    nodes: nodes.keys().map(|n| self.describe(n)).collect(),
                });
            }
        }
        let data_nodes = self.data_nodes();
        let Some(&data_node) = data_nodes.first() else {
            return Ok(DataLocation::Unknown);
        };
        if data_nodes.len() > 1 {
            if problems.is_empty() {
                let mut by_node: BTreeMap<String, Vec<String>> = BTreeMap::new();
                for (volume, nodes) in &self.volumes {
                    for node in nodes.keys() {
                        by_node.entry(self.describe(node)).or_default().push(volume.clone());
                    }
                }
                problems.push(PlacementProblem::DataOnManyNodes { nodes: by_node });
            }
            return Err(PlacementRefusal { stack: self.stack.clone(), problems });
        }
        let Some(node) = self.node(data_node) else {
            problems.push(PlacementProblem::NodeGone { node: data_node.to_owned() });
            return Err(PlacementRefusal { stack: self.stack.clone(), problems });
        };
        if node.state != "ready" {
            problems.push(PlacementProblem::NodeDown { node: node.describe(), state: node.state.clone() });
        }
        if node.availability != "active" {
            problems.push(PlacementProblem::NodeUnavailable {
                node: node.describe(),
                availability: node.availability.clone(),
            });
        }
        let prefix = format!("{}_", self.stack);
        let mut pinned = BTreeSet::new();
        for service in &self.services {
            let short = service.service.strip_prefix(&prefix).unwrap_or(&service.service).to_owned();
            let mut sources = vec![("the deployed service", service.constraints.clone())];
            if let Some(constraints) = target.and_then(|t| t.get(&short)) {
                sources.push(("the target's compose files", constraints.clone()));
            } else if target.is_some() {
                sources.push(("the target's compose files", Vec::new()));
            }
            for (source, constraints) in sources {
                let eligible = eligible_nodes(&self.nodes, &constraints);
                let held = eligible.len() == 1 && eligible[0].id == node.id;
                if held {
                    continue;
                }
                if !eligible.iter().any(|n| n.id == node.id) {
                    problems.push(PlacementProblem::ConstraintExcludesDataNode {
                        service: service.service.clone(),
                        source: source.to_owned(),
                        node: node.describe(),
                        constraints,
                    });
                } else if !pin {
                    problems.push(PlacementProblem::NotConstrained {
                        service: service.service.clone(),
                        source: source.to_owned(),
                        node: node.describe(),
                        constraint: node_constraint(&node.id),
                        eligible: eligible.iter().map(|n| n.describe()).collect(),
                    });
                }
            }
            if pin {
                pinned.insert(short);
            }
        }
        if problems.is_empty() {
            Ok(DataLocation::Node {
                node: Box::new(node.clone()),
                pin: pinned,
                volumes: self.volumes.keys().cloned().collect(),
                local: node.id == self.local_node,
            })
        } else {
            Err(PlacementRefusal { stack: self.stack.clone(), problems })
        }
    }

    /// Stateful services with a running task on another node than
    /// `data_node`: `(service, node described)`. Such a task runs on an empty
    /// volume (or another copy), whatever swarm's verdict says.
    pub fn misplaced(&self, data_node: &str) -> Vec<(String, String)> {
        let mut misplaced = Vec::new();
        for service in &self.services {
            for node in &service.running_on {
                if node != data_node {
                    misplaced.push((service.service.clone(), self.describe(node)));
                }
            }
        }
        misplaced
    }
}

/// Named-volume mounts of a service's task template.
fn service_volumes(service: &Service) -> BTreeSet<String> {
    service
        .spec
        .as_ref()
        .and_then(|s| s.task_template.as_ref())
        .and_then(|t| t.container_spec.as_ref())
        .and_then(|c| c.mounts.as_ref())
        .map(|mounts| {
            mounts
                .iter()
                .filter(|m| m.typ == Some(MountType::VOLUME))
                .filter_map(|m| m.source.clone().filter(|s| !s.is_empty()))
                .collect()
        })
        .unwrap_or_default()
}

fn task_volumes(task: &Task) -> BTreeSet<String> {
    task.spec
        .as_ref()
        .and_then(|s| s.container_spec.as_ref())
        .and_then(|c| c.mounts.as_ref())
        .map(|mounts| {
            mounts
                .iter()
                .filter(|m| m.typ == Some(MountType::VOLUME))
                .filter_map(|m| m.source.clone().filter(|s| !s.is_empty()))
                .collect()
        })
        .unwrap_or_default()
}

/// The node named `name` (its id, or a hostname no other node has).
pub fn find_node<'n>(nodes: &'n [SwarmNode], name: &str) -> Option<&'n SwarmNode> {
    nodes.iter().find(|n| n.id == name).or_else(|| {
        let mut named = nodes.iter().filter(|n| n.hostname == name);
        named.next().filter(|_| named.next().is_none())
    })
}

impl Swarm {
    /// The node of the engine lkg talks to (empty outside a swarm), and
    /// every node of the swarm.
    pub async fn nodes(&self) -> Result<(String, Vec<SwarmNode>), QueryError> {
        let docker: &Docker = self.docker();
        let info = docker.info().await.map_err(|source| QueryError::Engine {
            what: "read the engine's swarm state (/info)".to_owned(),
            source,
        })?;
        let local_node = info.swarm.as_ref().and_then(|s| s.node_id.clone()).unwrap_or_default();
        let nodes: Vec<SwarmNode> = docker
            .list_nodes(None::<ListNodesOptions>)
            .await
            .map_err(|source| QueryError::Engine { what: "list the swarm's nodes".to_owned(), source })?
            .iter()
            .map(SwarmNode::from_engine)
            .collect();
        Ok((local_node, nodes))
    }

    /// Reads where `stack`'s data and tasks are, through the manager's API
    /// (see the [module docs](crate::placement) for what it can and cannot
    /// see). The engine lkg talks to must be a manager.
    pub async fn placement(&self, stack: &str) -> Result<StackPlacement, QueryError> {
        let docker: &Docker = self.docker();
        let (local_node, nodes) = self.nodes().await?;
        let services = stack_services(docker, stack).await?;
        let mut stateful = Vec::new();
        let mut volumes: BTreeMap<String, BTreeMap<String, BTreeSet<Evidence>>> = BTreeMap::new();
        let names: HashMap<String, String> = services
            .iter()
            .filter_map(|s| Some((s.id.clone()?, s.spec.as_ref().and_then(|s| s.name.clone()).unwrap_or_default())))
            .collect();
        let ids: Vec<String> = names.keys().cloned().collect();
        let tasks = if ids.is_empty() {
            Vec::new()
        } else {
            let filters = HashMap::from([("service", ids)]);
            docker
                .list_tasks(Some(ListTasksOptionsBuilder::default().filters(&filters).build()))
                .await
                .map_err(|source| QueryError::Engine { what: format!("list the tasks of stack {stack}"), source })?
        };
        for service in &services {
            let mounted = service_volumes(service);
            let id = service.id.clone().unwrap_or_default();
            let name = names.get(&id).cloned().unwrap_or_default();
            let mut running_on = BTreeSet::new();
            for task in tasks.iter().filter(|t| t.service_id.as_deref() == Some(id.as_str())) {
                let Some(node) = task.node_id.clone().filter(|n| !n.is_empty()) else { continue };
                let status = task.status.as_ref();
                let state = status.and_then(|s| s.state);
                if state == Some(TaskState::RUNNING) && task.desired_state == Some(TaskState::RUNNING) {
                    running_on.insert(node.clone());
                }
                // A container was created on the node: its engine created the
                // task's volumes there too (at container create).
                let created = status
                    .and_then(|s| s.container_status.as_ref())
                    .and_then(|c| c.container_id.as_ref())
                    .is_some_and(|c| !c.is_empty());
                if !created {
                    continue;
                }
                for volume in task_volumes(task) {
                    volumes.entry(volume).or_default().entry(node.clone()).or_default().insert(Evidence::Task {
                        task: task.id.clone().unwrap_or_default(),
                        service: name.clone(),
                        state: state.map(|s| s.to_string()).unwrap_or_default(),
                    });
                }
            }
            if !mounted.is_empty() {
                let constraints = service
                    .spec
                    .as_ref()
                    .and_then(|s| s.task_template.as_ref())
                    .and_then(|t| t.placement.as_ref())
                    .and_then(|p| p.constraints.clone())
                    .unwrap_or_default();
                stateful.push(StatefulService { service: name, volumes: mounted, constraints, running_on });
            }
        }
        if !local_node.is_empty() {
            for volume in stack_volumes(docker, stack).await? {
                volumes
                    .entry(volume.name)
                    .or_default()
                    .entry(local_node.clone())
                    .or_default()
                    .insert(Evidence::LocalEngine);
            }
        }
        stateful.sort_by(|a, b| a.service.cmp(&b.service));
        Ok(StackPlacement { stack: stack.to_owned(), local_node, nodes, services: stateful, volumes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, label: &str) -> SwarmNode {
        SwarmNode {
            id: id.to_owned(),
            hostname: "vm".to_owned(),
            role: if id == "n1" { "manager" } else { "worker" }.to_owned(),
            state: "ready".to_owned(),
            availability: "active".to_owned(),
            labels: BTreeMap::from([("lkg-test.node".to_owned(), label.to_owned())]),
            engine_labels: BTreeMap::new(),
            os: "linux".to_owned(),
            arch: "x86_64".to_owned(),
        }
    }

    fn task(id: &str) -> BTreeSet<Evidence> {
        BTreeSet::from([Evidence::Task {
            task: id.to_owned(),
            service: "s_app".to_owned(),
            state: "running".to_owned(),
        }])
    }

    /// Stack `s`: service `s_app` mounting `s_data`, which is on `data` (and
    /// lkg talks to `local`).
    fn placement(local: &str, data: &[&str], constraints: &[&str]) -> StackPlacement {
        StackPlacement {
            stack: "s".to_owned(),
            local_node: local.to_owned(),
            nodes: vec![node("n1", "node1"), node("n2", "node2"), node("n3", "node3")],
            services: vec![StatefulService {
                service: "s_app".to_owned(),
                volumes: BTreeSet::from(["s_data".to_owned()]),
                constraints: constraints.iter().map(|c| (*c).to_owned()).collect(),
                running_on: data.iter().map(|n| (*n).to_owned()).collect(),
            }],
            volumes: BTreeMap::from([(
                "s_data".to_owned(),
                data.iter().map(|n| ((*n).to_owned(), task(&format!("t-{n}")))).collect(),
            )]),
        }
    }

    fn target(constraints: &[&str]) -> BTreeMap<String, Vec<String>> {
        BTreeMap::from([("app".to_owned(), constraints.iter().map(|c| (*c).to_owned()).collect())])
    }

    #[test]
    fn a_single_node_swarm_needs_no_constraint() {
        let mut p = placement("n1", &["n1"], &[]);
        p.nodes.truncate(1);
        assert_eq!(p.check(Some(&target(&[])), false), Ok(DataLocation::SingleNode));
    }

    #[test]
    fn a_service_held_on_its_data_node_passes() {
        let p = placement("n1", &["n1"], &["node.labels.lkg-test.node == node1"]);
        let Ok(DataLocation::Node { node, pin, local, .. }) = p.check(Some(&target(&["node.id==n1"])), false) else {
            panic!("refused")
        };
        assert_eq!((node.id.as_str(), pin.len(), local), ("n1", 0, true));
        // `node.role == manager` holds it too on a swarm with one manager.
        assert!(p.check(Some(&target(&["node.role == manager"])), false).is_ok());
        // On a worker: found, with the volumes, and said not to be local.
        let p = placement("n1", &["n2"], &["node.id == n2"]);
        let Ok(DataLocation::Node { node, volumes, local, .. }) = p.check(Some(&target(&["node.id==n2"])), false)
        else {
            panic!("refused")
        };
        assert_eq!((node.id.as_str(), local), ("n2", false));
        assert_eq!(volumes, BTreeSet::from(["s_data".to_owned()]));
    }

    #[test]
    fn an_unconstrained_service_is_refused_naming_the_node_and_the_constraint() {
        let p = placement("n1", &["n1"], &[]);
        let refusal = p.check(Some(&target(&[])), false).unwrap_err();
        let text = refusal.to_string();
        assert!(text.contains("service s_app is not constrained to its data's node n1 (vm)"), "{text}");
        assert!(text.contains("`node.id == n1`"), "{text}");
        assert!(text.contains("--pin-to-data-node"), "{text}");
        // Both sides: the deployed service (a rollback) and the target.
        assert_eq!(refusal.problems.len(), 2, "{text}");
    }

    #[test]
    fn a_target_that_drops_the_constraint_is_refused() {
        let p = placement("n1", &["n1"], &["node.id == n1"]);
        let refusal = p.check(Some(&target(&["node.hostname == VM"])), false).unwrap_err();
        assert!(
            matches!(&refusal.problems[..], [PlacementProblem::NotConstrained { source, .. }] if source == "the target's compose files"),
            "{refusal}"
        );
    }

    #[test]
    fn pinning_adds_the_constraint_unless_it_would_exclude_the_data_node() {
        let p = placement("n1", &["n1"], &[]);
        let Ok(DataLocation::Node { pin, .. }) = p.check(Some(&target(&[])), true) else { panic!("refused") };
        assert_eq!(pin, BTreeSet::from(["app".to_owned()]));
        let refusal = p.check(Some(&target(&["node.labels.lkg-test.node == node3"])), true).unwrap_err();
        assert!(matches!(refusal.problems[..], [PlacementProblem::ConstraintExcludesDataNode { .. }]), "{refusal}");
    }

    #[test]
    fn data_on_two_nodes_down_drained_or_elsewhere_is_refused() {
        let p = placement("n1", &["n1", "n2"], &[]);
        let refusal = p.check(None, true).unwrap_err();
        assert!(refusal.to_string().contains("volume s_data exists on 2 nodes (n1 (vm), n2 (vm))"), "{refusal}");

        let mut p = placement("n1", &["n2"], &["node.id == n2"]);
        p.nodes[1].state = "down".to_owned();
        p.nodes[1].availability = "drain".to_owned();
        let refusal = p.check(None, false).unwrap_err();
        assert!(
            matches!(
                refusal.problems[..],
                [PlacementProblem::NodeDown { .. }, PlacementProblem::NodeUnavailable { .. }]
            ),
            "{refusal}"
        );

        let mut p = placement("n1", &["n2"], &[]);
        p.volumes.insert("s_other".to_owned(), BTreeMap::from([("n3".to_owned(), task("t"))]));
        let refusal = p.check(None, false).unwrap_err();
        assert!(matches!(refusal.problems[..], [PlacementProblem::DataOnManyNodes { .. }]), "{refusal}");
    }

    #[test]
    fn no_known_data_is_unknown_not_a_refusal() {
        let mut p = placement("n1", &[], &[]);
        p.volumes.clear();
        assert_eq!(p.check(None, false), Ok(DataLocation::Unknown));
    }

    #[test]
    fn constraints_follow_swarmkit() {
        let nodes = vec![node("n1", "node1"), node("n2", "node2")];
        let ids = |c: &[&str]| -> Vec<String> {
            let c: Vec<String> = c.iter().map(|s| (*s).to_owned()).collect();
            eligible_nodes(&nodes, &c).iter().map(|n| n.id.clone()).collect()
        };
        assert_eq!(ids(&["node.labels.lkg-test.node==NODE2"]), ["n2"]);
        assert_eq!(ids(&["node.labels.missing != x"]), ["n1", "n2"]);
        assert_eq!(ids(&["node.labels.missing == x"]), Vec::<String>::new());
        assert_eq!(ids(&["node.role==manager", "node.platform.os == linux"]), ["n1"]);
        // Unreadable: restricts nothing (lkg then refuses rather than trusts it).
        assert_eq!(ids(&["node.labels.x == ${WHERE}"]), ["n1", "n2"]);
        assert_eq!(ids(&["bogus"]), ["n1", "n2"]);
    }

    #[test]
    fn misplaced_tasks_are_named() {
        let mut p = placement("n1", &["n1"], &[]);
        p.services[0].running_on = BTreeSet::from(["n3".to_owned()]);
        assert_eq!(p.misplaced("n1"), vec![("s_app".to_owned(), "n3 (vm)".to_owned())]);
        assert!(placement("n1", &["n1"], &[]).misplaced("n1").is_empty());
    }
}
