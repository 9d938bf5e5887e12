//! Alert channels in the URL convention users know from Watchtower and
//! docker-volume-backup (shoutrrr's): one [`Channel`] per URL, one
//! [`Notifier`] that sends a [`Message`] to all of them and reports a
//! [`Delivery`] per channel.
//!
//! | URL | sends |
//! |---|---|
//! | `ntfy://[user:password@]host[:port]/topic`, `ntfys://...` | the text, with `Title`, `Priority` and `Tags` headers |
//! | `slack://hook:A-B-C@webhook`, `slack://A/B/C`, `https://hooks.slack.com/services/A/B/C`, `slack+https://host/path` | a Slack incoming-webhook `{"text": ...}` |
//! | `discord://token@webhookid`, `discord+https://host/path` | a Discord execute-webhook `{"content": ...}` |
//! | `smtp://[user:password@]host[:port]/?from=a@x&to=b@y,c@z`, `smtps://...` | a plain-text mail |
//! | `generic+https://host/path`, any other `https://` URL | the message's JSON as it is |
//!
//! docs/notifications.md describes every form and option. Secrets in URLs
//! (passwords, tokens, webhook keys, ntfy topics, query values) are never
//! shown: a channel's `Debug` and `Display`, every delivery and every error
//! carry the URL as [`lkg_core::redact`] masks it.
//!
//! Every channel is tried concurrently; one that fails is retried with
//! backoff (4 attempts, 1 s apart and doubling, by default), and its failure
//! is recorded in its delivery, never raised: a channel that is down never
//! stops the caller.
//!
//! ```no_run
//! use lkg_notify::{Channel, Message, Notifier, Severity};
//!
//! # async fn demo() -> Result<(), lkg_notify::NotifyError> {
//! let channels = ["ntfy://ntfy.example/lkg-alerts", "smtp://mail.example:587/?from=lkg@example.org&to=ops@example.org"]
//!     .iter()
//!     .map(|url| Channel::parse(url))
//!     .collect::<Result<Vec<_>, _>>()?;
//! let message = Message {
//!     title: "lkg: shop rolled back 1.1.0 → 1.0.0".into(),
//!     text: "GET /health answered 503".into(),
//!     severity: Severity::Warning,
//!     json: serde_json::json!({"app": "shop"}),
//! };
//! let deliveries = Notifier::new(channels)?.send(&message, &lkg_core::SystemClock).await;
//! assert_eq!(deliveries.len(), 2);
//! # Ok(()) }
//! ```
//!
//! # Limitations
//!
//! - Slack and Discord are reached through their webhooks only: no bot
//!   tokens, no threads, plain text (Slack mrkdwn, Discord markdown) only.
//! - Mail is plain text; CRAM-MD5 is not offered. TLS certificates are
//!   checked against the system's roots, with no way to trust another.
//! - Plain HTTP and SMTP carry credentials to a loopback host only.
//! - A secret in a generic URL's path that does not look like a key (16 or
//!   more letters and digits, with both) is shown: put secrets in the query,
//!   the userinfo or a `?@Header=` instead.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod channel;
mod error;
pub mod http;
mod message;
mod send;

pub use channel::Channel;
pub use error::NotifyError;
pub use message::{Message, Severity};
pub use send::{Delivery, Notifier};

// The README's example is compiled with the doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExample;
