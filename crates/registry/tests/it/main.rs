//! Integration tests of lkg-registry against real registries (the test
//! environment's `docker-registry` instances), with skopeo and openssl as
//! independent peers.
#![allow(clippy::disallowed_methods, reason = "tests write and read their fixtures; a failure panics at the line")]
#![allow(unreachable_pub)] // helpers shared between the test modules

mod auth;
mod bundle_interop;
mod common;
mod copy;
mod cosign;
mod fault;
mod hostile;
mod inspect;
mod integrity;
mod promote;
mod random;
mod referrers;
mod resolver;
mod servers;
mod sign;
