//! App names: one DNS label, because an app's name becomes part of its
//! canonical domain, of its stack's objects and of a directory under the
//! state dir (`<state-dir>/apps/<app>/`), which every crate keeps its
//! per-app state in. One type, so no crate can accept a name another refuses.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest DNS label (RFC 1035 §2.3.4).
pub const MAX_LABEL_LEN: usize = 63;

/// A validated app name: a DNS label of lowercase letters, digits and `-`,
/// 1 to 63 characters, neither starting nor ending with `-`.
///
/// Lowercase only: DNS compares names case-insensitively, so `Gitea` and
/// `gitea` would share a domain while owning two state directories.
///
/// ```
/// use lkg_core::AppName;
/// assert!(AppName::new("mattermost-lts").is_ok());
/// assert!(AppName::new("Mattermost").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AppName(String);

/// Why a string is not an app name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AppNameError {
    /// The name is empty.
    #[error("an app name cannot be empty; {RULES}")]
    Empty,
    /// The name is longer than a DNS label.
    #[error("app name {:?} is {len} characters long; {RULES}", crate::clip(name))]
    TooLong {
        /// The name given.
        name: String,
        /// Its length in bytes.
        len: usize,
    },
    /// The name holds a character a DNS label cannot.
    #[error("app name {:?} has {ch:?} at position {position}; {RULES}", crate::clip(name))]
    BadChar {
        /// The name given.
        name: String,
        /// The first offending character.
        ch: char,
        /// Its character position, from 0.
        position: usize,
    },
    /// The name starts or ends with `-`.
    #[error("app name {:?} starts or ends with '-'; {RULES}", crate::clip(name))]
    EdgeHyphen {
        /// The name given.
        name: String,
    },
}

const RULES: &str = "an app name is a DNS label: lowercase letters a-z, digits and '-', \
                     1 to 63 characters, not starting or ending with '-'";

impl AppName {
    /// Validates `name`.
    pub fn new(name: &str) -> Result<AppName, AppNameError> {
        check_label(name)?;
        Ok(AppName(name.to_owned()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks the DNS label rule of app names, for other labels that must follow
/// it (a canonical domain's namespace).
pub fn check_label(name: &str) -> Result<(), AppNameError> {
    if name.is_empty() {
        return Err(AppNameError::Empty);
    }
    if let Some((position, ch)) =
        name.chars().enumerate().find(|(_, c)| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(AppNameError::BadChar { name: name.to_owned(), ch, position });
    }
    if name.len() > MAX_LABEL_LEN {
        return Err(AppNameError::TooLong { name: name.to_owned(), len: name.len() });
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(AppNameError::EdgeHyphen { name: name.to_owned() });
    }
    Ok(())
}

/// The rule of a Docker object name (volume, stack, network), moby's
/// `daemon/names` (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`) capped at 200 characters,
/// as [`is_docker_name`] checks it.
pub const DOCKER_NAME_RULE: &str = "Docker object names start with a letter or digit, continue with letters, digits, \
                                    '_', '.' or '-', and are at most 200 characters";

/// Whether `name` is a Docker object name the engine accepts, which also
/// makes it a safe file name: no `/`, never `.` or `..`, no spaces or
/// control characters.
pub fn is_docker_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= 200
        && bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

impl fmt::Display for AppName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for AppName {
    type Err = AppNameError;
    fn from_str(s: &str) -> Result<AppName, AppNameError> {
        AppName::new(s)
    }
}

impl AsRef<str> for AppName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for AppName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for AppName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<AppName, D::Error> {
        let name = String::deserialize(deserializer)?;
        AppName::new(&name).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_seed_apps() {
        for name in ["discourse", "mattermost-lts", "mumble", "bluesky-pds", "gitea", "keycloak", "a", "0ad"] {
            assert_eq!(AppName::new(name).unwrap().as_str(), name);
        }
        assert!(AppName::new(&"a".repeat(63)).is_ok());
    }

    #[test]
    fn rejects_what_dns_or_a_path_cannot_hold() {
        assert_eq!(AppName::new(""), Err(AppNameError::Empty));
        assert!(matches!(AppName::new(&"a".repeat(64)), Err(AppNameError::TooLong { len: 64, .. })));
        assert!(matches!(AppName::new("-gitea"), Err(AppNameError::EdgeHyphen { .. })));
        assert!(matches!(AppName::new("gitea-"), Err(AppNameError::EdgeHyphen { .. })));
        for (name, ch, position) in
            [("Gitea", 'G', 0), ("my_app", '_', 2), ("../etc", '.', 0), ("a/b", '/', 1), ("café", 'é', 3)]
        {
            assert_eq!(
                AppName::new(name),
                Err(AppNameError::BadChar { name: name.to_owned(), ch, position }),
                "{name}"
            );
        }
    }

    #[test]
    fn the_error_says_what_a_name_may_be() {
        let text = AppName::new("my_app").unwrap_err().to_string();
        assert_eq!(
            text,
            "app name \"my_app\" has '_' at position 2; an app name is a DNS label: lowercase letters a-z, \
             digits and '-', 1 to 63 characters, not starting or ending with '-'"
        );
    }
}
