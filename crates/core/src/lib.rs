//! The concepts every lkg crate shares, so that each has one owner.
//!
//! - [`AppName`]: the name of an app lkg manages, one DNS label, valid as a
//!   domain label, a stack name and a directory under the state dir
//!   (`<state-dir>/apps/<app>/`, where every crate keeps its per-app state);
//! - [`state_file`]: state files written atomically (temp file in the same
//!   directory, fsync, rename, fsync of the directory), read back with errors
//!   that name the path, with documented permissions;
//! - [`FailureKind`] and [`Classify`]: what kind of failure an error is (bad
//!   input, environment, verdict, held, partial), which the binaries map to
//!   their exit codes in one table; [`render_chain`] renders an error with
//!   its causes;
//! - [`Clock`]: the wall clock behind a trait ([`SystemClock`], [`FixedClock`]);
//! - [`redact`]: the one rule that masks secrets in URLs before lkg shows them;
//! - [`rfc3339`]: how state files and reports write a time (RFC 3339, UTC,
//!   whole seconds), as a serde `with` module.
//!
//! ```
//! use lkg_core::{AppName, state_file};
//!
//! let state = tempfile::tempdir()?;
//! let app = AppName::new("gitea")?;
//! let path = state.path().join("apps").join(app.as_str()).join("last-good.json");
//! state_file::create_dir(&path)?; // <state-dir>/apps/gitea/
//! state_file::write_json(&path, &serde_json::json!({"version": "1.2.0+3.1.0"}))?;
//! let read: serde_json::Value = state_file::read_json(&path)?.expect("just written");
//! assert_eq!(read["version"], "1.2.0+3.1.0");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Limitations
//!
//! - Atomic replacement relies on `rename(2)` within one directory and on
//!   `fsync` of files and directories, as POSIX local file systems provide;
//!   on a network file system the guarantees are the server's.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod app;
mod clock;
mod failure;
pub mod input;
mod progress;
pub mod redact;
pub mod state_file;

pub use app::{AppName, AppNameError, DOCKER_NAME_RULE, MAX_LABEL_LEN, check_label, is_docker_name};
pub use clock::{Clock, FixedClock, SystemClock};
pub use failure::{Classify, FailureKind, render_chain};
pub use progress::{NoProgress, Progress};
pub use state_file::StateFileError;

/// At most 80 characters of `text`, then `…`: how an error message quotes
/// input it refuses, so a 100,000-character value is not printed back.
///
/// ```
/// assert_eq!(lkg_core::clip("short"), "short");
/// assert_eq!(lkg_core::clip(&"a".repeat(100)).chars().count(), 81);
/// ```
pub fn clip(text: &str) -> String {
    clip_at(text, 80)
}

/// At most `chars` characters of `text`, then `…`: [`clip`] for values that
/// are long when valid (a pinned image reference is up to about 400).
///
/// ```
/// assert_eq!(lkg_core::clip_at(&"a".repeat(600), 512).chars().count(), 513);
/// ```
pub fn clip_at(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// RFC 3339 in UTC, whole seconds (`2026-05-29T00:55:10Z`): how lkg writes a
/// time into a state file, an alert or a report. Use it as
/// `#[serde(with = "lkg_core::rfc3339")]`; reading accepts any RFC 3339 time.
///
/// ```
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Seen {
///     #[serde(with = "lkg_core::rfc3339")]
///     at: jiff::Timestamp,
/// }
/// let seen = Seen { at: "2026-05-29T00:55:10.75Z".parse()? };
/// assert_eq!(serde_json::to_string(&seen)?, r#"{"at":"2026-05-29T00:55:10Z"}"#);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub mod rfc3339 {
    use jiff::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `ts` as `%Y-%m-%dT%H:%M:%SZ`.
    pub fn serialize<S: Serializer>(ts: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&ts.strftime("%Y-%m-%dT%H:%M:%SZ"))
    }

    /// Reads an RFC 3339 time.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// Lowercase hex of `bytes`: how lkg writes every digest and checksum.
///
/// ```
/// assert_eq!(lkg_core::hex(&[0x00, 0xab, 0x10]), "00ab10");
/// ```
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

// The README's example is compiled with the doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExample;
