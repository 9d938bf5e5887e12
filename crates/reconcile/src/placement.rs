//! Stateful updates on a multi-node swarm: the data's node, found before a
//! run touches anything, and kept in the journalled spec so that every
//! deploy of the run (target, rollback, a resumed run's) is held to it.
//!
//! The rule: on a swarm of one node there is nothing to decide (the data is
//! on that node and no constraint is needed), so nothing changes there. On
//! more nodes, a stateful `update` (not a first install, which has no data
//! yet) asks [`lkg_swarm::Swarm::placement`] where the stack's volumes are and
//! refuses (exit 2, nothing touched) unless they are all on one node that is
//! `ready` and `active`, and every service mounting a volume is held on it by
//! its constraints, as deployed and in the target's files; `deploy.pin_to_data_node` (`--pin-to-data-node`) adds the
//! constraint `node.id == <node>` through lkg's overlay compose file instead.
//! When that node is not the one lkg talks to, the snapshot and a rollback's
//! restore run there as swarm jobs of lkg's agent, which needs a registry
//! store every node reaches (`--store oci://...`); with the local store the
//! update is refused.
//! After a deploy, a stateful service with a running task on another node
//! is a failed verdict (`wrong_node`), and the health gate fails the same way.
//! See docs/multi-node.md.

use std::collections::{BTreeMap, BTreeSet};

use lkg_swarm::{DataLocation, StackPlacement};
use serde::{Deserialize, Serialize};

use crate::health::CheckResult;

/// The node that holds a stateful app's volumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataNode {
    /// Its swarm node id.
    pub id: String,
    /// Its hostname (for messages; several nodes may share one).
    pub hostname: String,
    /// Services (short names) whose deploys get `node.id == <id>` added.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub pin: BTreeSet<String>,
    /// The stack's volumes there.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub volumes: BTreeSet<String>,
    /// The node is not the one of the engine lkg talks to: snapshots and
    /// restores run there as jobs of lkg's agent, through a registry store.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub remote: bool,
}

impl DataNode {
    /// What a [`StackPlacement::check`] found, as the spec records it.
    pub fn from_location(location: DataLocation) -> Option<DataNode> {
        match location {
            DataLocation::Node { node, pin, volumes, local } => {
                Some(DataNode { id: node.id, hostname: node.hostname, pin, volumes, remote: !local })
            }
            _ => None,
        }
    }

    /// The constraints lkg's overlay adds: service short name -> `node.id == <id>`.
    pub fn overlay_constraints(&self) -> BTreeMap<String, String> {
        let constraint = lkg_swarm::placement::node_constraint(&self.id);
        self.pin.iter().map(|s| (s.clone(), constraint.clone())).collect()
    }

    /// The health gate's check: no stateful service runs a task elsewhere.
    pub fn check(&self, placement: &StackPlacement) -> CheckResult {
        let misplaced = placement.misplaced(&self.id);
        CheckResult {
            check: "placement".to_owned(),
            pass: misplaced.is_empty(),
            detail: if misplaced.is_empty() {
                format!("stateful tasks run on the data's node {}", self.id)
            } else {
                describe_misplaced(&self.id, &misplaced)
            },
        }
    }
}

/// `service X runs a task on node N, but its data is on node D`, for each.
pub(crate) fn describe_misplaced(data_node: &str, misplaced: &[(String, String)]) -> String {
    let lines: Vec<String> = misplaced
        .iter()
        .map(|(service, node)| {
            format!(
                "service {service} runs a task on node {node}, but its data is on node {data_node}: that task has an \
                 empty volume"
            )
        })
        .collect();
    lines.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use lkg_swarm::{StackPlacement, SwarmNode};

    #[test]
    fn a_task_on_another_node_fails_the_check() {
        let node = |id: &str| SwarmNode {
            id: id.to_owned(),
            hostname: "vm".to_owned(),
            role: "worker".to_owned(),
            state: "ready".to_owned(),
            availability: "active".to_owned(),
            labels: BTreeMap::new(),
            engine_labels: BTreeMap::new(),
            os: "linux".to_owned(),
            arch: "x86_64".to_owned(),
        };
        let placement = StackPlacement {
            stack: "s".to_owned(),
            local_node: "n1".to_owned(),
            nodes: vec![node("n1"), node("n2")],
            services: vec![lkg_swarm::placement::StatefulService {
                service: "s_app".to_owned(),
                volumes: BTreeSet::from(["s_data".to_owned()]),
                constraints: Vec::new(),
                running_on: BTreeSet::from(["n2".to_owned()]),
            }],
            volumes: BTreeMap::new(),
        };
        let data = DataNode {
            id: "n1".to_owned(),
            hostname: "vm".to_owned(),
            pin: BTreeSet::new(),
            volumes: BTreeSet::new(),
            remote: false,
        };
        let check = data.check(&placement);
        assert!(!check.pass);
        assert_eq!(
            check.detail,
            "service s_app runs a task on node n2 (vm), but its data is on node n1: that task has an empty volume"
        );
        assert_eq!(
            DataNode { pin: BTreeSet::from(["app".to_owned()]), ..data }.overlay_constraints(),
            BTreeMap::from([("app".to_owned(), "node.id == n1".to_owned())])
        );
    }
}
