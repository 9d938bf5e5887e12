//! lkg-swarm against the real engine of the test environment.

mod docker;
