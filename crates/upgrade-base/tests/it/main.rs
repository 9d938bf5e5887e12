//! lkg-upgrade-base against real git repositories, built with git2 in each test.

mod builder;
mod overlays;
mod plans;
mod shallow;
