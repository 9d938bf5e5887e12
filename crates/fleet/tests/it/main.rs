//! lkg-fleet's round logic against a hand-written platform (no engine): how
//! many apps a round updates at once. The rounds against a real swarm are
//! in `bins/tests/it/fleet.rs`.
#![allow(clippy::disallowed_methods, reason = "tests write their fixtures; a failure panics at the line")]

mod parallel;
