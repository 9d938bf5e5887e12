//! Names that become paths: an app name is a directory under the state dir,
//! a volume name is a file name in a snapshot. Both are checked before any
//! path is built from them, so `../x` or `a/b` can never reach the file system.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest DNS label (RFC 1035 §2.3.4).
const MAX_APP_LEN: usize = 63;
/// Docker refuses longer object names; it is also far below `NAME_MAX`.
const MAX_OBJECT_LEN: usize = 200;

/// Why a string is not a valid name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[error("{kind} name {name:?} is invalid: {rule}")]
pub struct NameError {
    /// What the name was for: `app`, `stack` or `volume`.
    pub kind: &'static str,
    /// The name given.
    pub name: String,
    /// The rule it breaks.
    pub rule: &'static str,
}

/// A validated app name: a DNS label (lowercase letters, digits and `-`, 1 to
/// 63 characters, not starting or ending with `-`), the same rule as
/// `lkg-canonical`'s, since both keep their state under `<state-dir>/apps/<app>/`.
///
/// ```
/// use lkg_warmsnap::AppName;
/// assert!(AppName::new("gitea").is_ok());
/// assert!(AppName::new("../etc").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AppName(String);

const APP_RULE: &str = "an app name is a DNS label: lowercase letters a-z, digits and '-', \
                        1 to 63 characters, not starting or ending with '-'";

impl AppName {
    /// Validates `name`.
    pub fn new(name: &str) -> Result<AppName, NameError> {
        let ok = !name.is_empty()
            && name.len() <= MAX_APP_LEN
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.starts_with('-')
            && !name.ends_with('-');
        if ok {
            Ok(AppName(name.to_owned()))
        } else {
            Err(NameError { kind: "app", name: name.to_owned(), rule: APP_RULE })
        }
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AppName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for AppName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<AppName, NameError> {
        AppName::new(s)
    }
}

impl Serialize for AppName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for AppName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<AppName, D::Error> {
        let s = String::deserialize(deserializer)?;
        AppName::new(&s).map_err(serde::de::Error::custom)
    }
}

const OBJECT_RULE: &str = "Docker object names start with a letter or digit, continue with letters, digits, \
                           '_', '.' or '-', and are at most 200 characters";

/// Checks a Docker volume or stack name with the engine's own rule
/// (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`, moby `daemon/names`), which also makes it a
/// safe file name: no `/`, and never `.` or `..`.
pub(crate) fn check_object_name(kind: &'static str, name: &str) -> Result<(), NameError> {
    let mut bytes = name.bytes();
    let ok = name.len() <= MAX_OBJECT_LEN
        && bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok { Ok(()) } else { Err(NameError { kind, name: name.to_owned(), rule: OBJECT_RULE }) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_names_are_dns_labels() {
        for good in ["a", "gitea", "mattermost-lts", "a1", &"x".repeat(63)] {
            assert!(AppName::new(good).is_ok(), "{good}");
        }
        for bad in ["", "-a", "a-", "Gitea", "a_b", "a.b", "..", "a/b", &"x".repeat(64)] {
            let err = AppName::new(bad).unwrap_err();
            assert_eq!(err.kind, "app", "{bad}");
        }
    }

    #[test]
    fn object_names_cannot_be_paths() {
        for good in ["app_data", "a", "x.y-z_1"] {
            assert!(check_object_name("volume", good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "../x", "a/b", "_a", ".hidden", "a b", "a\0"] {
            assert!(check_object_name("volume", bad).is_err(), "{bad:?}");
        }
    }
}
