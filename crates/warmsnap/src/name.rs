//! Names that become paths: an app name is a directory under the state dir,
//! a volume name is a file name in a snapshot. Both are checked before any
//! path is built from them, so `../x` or `a/b` can never reach the file system.

pub use lkg_core::{AppName, AppNameError};

/// Why a string is not a valid name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[error("{kind} name {:?} is invalid: {rule}", lkg_core::clip(name))]
pub struct NameError {
    /// What the name was for: `app`, `stack` or `volume`.
    pub kind: &'static str,
    /// The name given.
    pub name: String,
    /// The rule it breaks.
    pub rule: &'static str,
}

/// An app name failed [`AppName`]'s rule: said as every other invalid name
/// is (`app name "X" is invalid: ...`), the rule being the DNS label's.
impl From<AppNameError> for NameError {
    fn from(error: AppNameError) -> NameError {
        let name = match &error {
            AppNameError::TooLong { name, .. }
            | AppNameError::BadChar { name, .. }
            | AppNameError::EdgeHyphen { name } => name.clone(),
            _ => String::new(),
        };
        NameError { kind: "app", name, rule: APP_RULE }
    }
}

impl lkg_core::Classify for NameError {
    fn kind(&self) -> lkg_core::FailureKind {
        lkg_core::FailureKind::Input
    }
}

const APP_RULE: &str = "an app name is a DNS label: lowercase letters a-z, digits and '-', \
                        1 to 63 characters, not starting or ending with '-'";

/// Checks a Docker volume or stack name with the engine's own rule
/// (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`, moby `daemon/names`), which also makes it a
/// safe file name: no `/`, and never `.` or `..`.
pub(crate) fn check_object_name(kind: &'static str, name: &str) -> Result<(), NameError> {
    if lkg_core::is_docker_name(name) {
        Ok(())
    } else {
        Err(NameError { kind, name: name.to_owned(), rule: lkg_core::DOCKER_NAME_RULE })
    }
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
            let err = NameError::from(AppName::new(bad).unwrap_err());
            assert_eq!((err.kind, err.name.as_str()), ("app", bad), "{bad}");
            assert!(err.to_string().starts_with(&format!("app name {bad:?} is invalid: an app name is a DNS label")));
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
