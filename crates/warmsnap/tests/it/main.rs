//! lkg-warmsnap against the real engine of the test environment.
#![allow(clippy::disallowed_methods, reason = "tests write and read their fixtures; a failure panics at the line")]

mod leftovers;
mod malicious;
mod oci;
mod refusals;
mod roundtrip;
mod store;
mod support;
