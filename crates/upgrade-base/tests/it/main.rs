//! lkg-upgrade-base against real git repositories, built with git2 in each test.
#![allow(clippy::disallowed_methods, reason = "tests write and read their fixtures; a failure panics at the line")]

mod builder;
mod overlays;
mod plans;
mod shallow;
