//! lkg's test environment and fixtures, shared by every crate's tests.
//!
//! Integration tests run against the real things: a private Docker engine in
//! swarm mode and real registries (Debian's `docker-registry`), started on
//! this machine by `scripts/testenv up`. [`env()`] finds that environment
//! (starting it if it is not running) and panics with the reason when it
//! cannot: a test that needs the environment never passes by skipping.
//!
//! ```no_run
//! let env = lkg_testkit::env();
//! let stack = lkg_testkit::unique_name("smoke");
//! let out = env.docker(&["service", "ls", "--format", "{{.Name}}"]);
//! assert!(!out.contains(&stack));
//! ```
//!
//! The launcher is a shell script rather than Rust so that it needs no build
//! to run and so that CI and a developer's shell start the same thing.
//!
//! What lives here:
//! - [`Env`]: where the engine and the registries are, a `docker` runner
//!   bound to the private engine, and clean-up of what a test leaves there;
//! - [`multi_node()`] / [`MultiNode`]: the three-node swarm of
//!   `scripts/testenv up --nodes 3` (each [`Node`]'s engine, swarm id and
//!   address), for tests of where data lives;
//! - [`App`] / [`Behaviour`]: fixture app images per version, healthy or broken;
//! - [`Stack`]: a compose stack that is removed when the test ends, and
//!   [`APP_HEALTHCHECK`], the fixture app's health check for compose files;
//! - [`http_get`], [`wait_until`], [`unique_name`], [`free_port`];
//! - [`HttpReceiver`]: a loopback HTTP server that records requests and
//!   answers scripted statuses (webhooks, notification channels);
//! - [`redact`]: the one insta helper that redacts timestamps, temp paths,
//!   ports and random ids.
//!
//! # Limitations
//!
//! Linux only, and root only (dockerd needs it). The default swarm has one
//! node; [`multi_node()`] has three, in network namespaces on one machine.
//! The ingress routing mesh and service VIPs are not usable on machines
//! without `ip_vs`: publish ports with `mode: host`, and on the multi-node
//! swarm use `endpoint_mode: dnsrr`.
#![allow(
    clippy::disallowed_methods,
    reason = "test set-up panics with the path in its message; no user sees these errors"
)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![allow(clippy::missing_panics_doc)] // a test helper panics by design: that is how a test fails

mod env;
mod http;
mod images;
mod nodes;
pub mod proxy;
mod redact;
mod stack;
mod util;

pub use env::{Env, EnvError, env};
pub use http::{HttpReceiver, HttpResponse, ReceivedRequest, http_get, http_request};
pub use images::{App, Behaviour};
pub use nodes::{MultiNode, NODES, Node, multi_node};
pub use redact::{redact, settings};
pub use stack::{APP_HEALTHCHECK, Stack};
pub use util::{free_port, unique_name, wait_until};
