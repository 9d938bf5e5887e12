//! Smoke tests: the test environment is real. A deployed fixture app becomes
//! healthy on the swarm and serves its data; an image pushed to the registry
//! is read back by skopeo; the htpasswd registry refuses anonymous pushes.
//! If any of these fail, every other integration test would be meaningless.

mod registry;
mod swarm;
