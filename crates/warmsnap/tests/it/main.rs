//! lkg-warmsnap against the real engine of the test environment.

mod malicious;
mod refusals;
mod roundtrip;
mod store;
mod support;
