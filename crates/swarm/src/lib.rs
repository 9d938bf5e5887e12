//! Docker Swarm deploys that tell the truth.
//!
//! `docker stack deploy` returns before the update converges, and even with
//! `--detach=false` exits 0 after swarm rolled the update back.
//! `lkg-swarm` deploys a stack, labels it with a unique deploy id, and watches
//! until each service reaches a verdict that belongs to *this* deploy:
//! converged, rolled back, paused, or past its deadline. It also reads the
//! deployed identity labels, prunes services the compose file dropped, and
//! lists or keeps a stack's volumes across an undeploy.
//!
//! # Status
//!
//! Only [`docker`] exists so far: the engine connection (with API version
//! negotiation) and stack queries that other crates share. Deploys, verdicts,
//! identity and pruning are issue 4.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod docker;
