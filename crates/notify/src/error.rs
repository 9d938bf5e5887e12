//! Why a channel cannot be used.

/// The schemes [`Channel::parse`](crate::Channel::parse) knows, as error
/// messages list them.
pub(crate) const SUPPORTED: &str = "ntfy://, ntfys://, slack://, slack+https://, discord://, discord+https://, \
                                    smtp://, smtps://, generic+https://, or an https:// webhook URL";

/// Why a channel URL or the client that sends to it cannot be used. URLs in
/// messages are redacted: no password, token, webhook key or query value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// The URL is malformed or contradicts itself.
    #[error("notification channel {url}: {reason}")]
    InvalidUrl {
        /// The URL, redacted.
        url: String,
        /// What is wrong, and what to write instead.
        reason: String,
    },
    /// The scheme names no channel lkg knows.
    #[error("notification channel {url}: unknown scheme {scheme:?}; use {SUPPORTED} (see docs/notifications.md)")]
    UnknownScheme {
        /// The URL, redacted.
        url: String,
        /// The scheme given.
        scheme: String,
    },
    /// The HTTP client could not be set up.
    #[error("cannot set up the HTTP client for notifications: {reason}")]
    Client {
        /// Why.
        reason: String,
    },
}

/// A malformed URL is bad input; a client that cannot be built is the
/// environment's.
impl lkg_core::Classify for NotifyError {
    fn kind(&self) -> lkg_core::FailureKind {
        match self {
            NotifyError::InvalidUrl { .. } | NotifyError::UnknownScheme { .. } => lkg_core::FailureKind::Input,
            NotifyError::Client { .. } => lkg_core::FailureKind::Environment,
        }
    }
}
