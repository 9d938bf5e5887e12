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
//! This crate is a placeholder in the workspace: it has no public API yet.
//! Its work is tracked in issue 4; nothing here pretends to work before
//! that lands.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
