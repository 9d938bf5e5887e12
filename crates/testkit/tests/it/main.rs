//! Smoke tests: the test environment is real. A deployed fixture app becomes
//! healthy on the swarm and serves its data; an image pushed to the registry
//! is read back by skopeo; the htpasswd registry refuses anonymous pushes.
//! If any of these fail, every other integration test would be meaningless.
#![allow(clippy::disallowed_methods, reason = "tests write and read their fixtures; a failure panics at the line")]

mod registry;
mod swarm;
