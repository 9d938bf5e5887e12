//! lkg-canonical against real processes, a real file system and the real
//! Docker engine of the test environment.
#![allow(clippy::disallowed_methods, reason = "tests write and read their fixtures; a failure panics at the line")]

mod child;
mod lock;
mod presence;
mod report;
mod store;
