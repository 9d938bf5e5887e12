//! What is deployed: the coop-cloud identity labels abra stamps on a stack.
//!
//! abra labels an app's services `coop-cloud.<stack>.version` (the recipe
//! version, e.g. `1.0.0+3.5.3`) and, for a `--chaos` deploy of a checkout,
//! `coop-cloud.<stack>.chaos-version`: the commit's first 8 hex digits, with
//! `+U` appended when the checkout had uncommitted or untracked files
//! (abra `pkg/recipe/git.go` `ChaosVersion`).

use std::collections::BTreeMap;

use serde::Serialize;

/// The deployed identity of one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    /// The service the labels were read from.
    pub service: String,
    /// `coop-cloud.<stack>.recipe`.
    pub recipe: Option<String>,
    /// `coop-cloud.<stack>.version`.
    pub version: Option<String>,
    /// `coop-cloud.<stack>.chaos-version`, as written.
    pub chaos_version: Option<String>,
    /// The commit of a chaos deploy, without the `+U` marker.
    pub commit: Option<String>,
    /// The chaos deploy came from a checkout with local changes (`+U`).
    pub dirty: bool,
}

/// How a deployed commit compares with the one expected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "result")]
#[non_exhaustive]
pub enum CommitCheck {
    /// One is a prefix of the other (a short and a full commit id).
    Match {
        /// The deployed commit.
        deployed: String,
        /// The expected one.
        expected: String,
    },
    /// They differ.
    Mismatch {
        /// The deployed commit.
        deployed: String,
        /// The expected one.
        expected: String,
    },
    /// Nothing to compare: the deploy was not a chaos deploy of a commit.
    NoCommit {
        /// The version label instead, if any.
        version: Option<String>,
    },
}

/// An expected commit that is not a commit id.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{value:?} is not a commit id: give 4 to 40 hex digits")]
pub struct InvalidCommit {
    /// The rejected value.
    pub value: String,
}

/// The `+U` suffix abra adds for a dirty checkout.
const DIRTY_MARKER: &str = "+U";

impl Identity {
    /// Reads the `coop-cloud.<stack>.*` labels of `service`.
    pub fn from_labels(stack: &str, service: &str, labels: &BTreeMap<String, String>) -> Identity {
        let label = |name: &str| labels.get(&format!("coop-cloud.{stack}.{name}")).filter(|v| !v.is_empty()).cloned();
        let chaos_version = label("chaos-version");
        let (commit, dirty) = match chaos_version.as_deref() {
            Some(v) => match v.strip_suffix(DIRTY_MARKER) {
                Some(commit) => (Some(commit.to_owned()), true),
                None => (Some(v.to_owned()), false),
            },
            None => (None, false),
        };
        Identity {
            service: service.to_owned(),
            recipe: label("recipe"),
            version: label("version"),
            chaos_version,
            commit,
            dirty,
        }
    }

    /// Whether any identity label is present.
    pub fn is_labelled(&self) -> bool {
        self.recipe.is_some() || self.version.is_some() || self.chaos_version.is_some()
    }

    /// Compares the deployed commit with `expected`, a short or full commit
    /// id: they match when one is a prefix of the other (case-insensitive).
    pub fn check_commit(&self, expected: &str) -> Result<CommitCheck, InvalidCommit> {
        let expected_lower = expected.to_ascii_lowercase();
        if !(4..=40).contains(&expected_lower.len()) || !expected_lower.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(InvalidCommit { value: expected.to_owned() });
        }
        let Some(deployed) = &self.commit else {
            return Ok(CommitCheck::NoCommit { version: self.version.clone() });
        };
        let deployed_lower = deployed.to_ascii_lowercase();
        let matches = !deployed_lower.is_empty()
            && (deployed_lower.starts_with(&expected_lower) || expected_lower.starts_with(&deployed_lower));
        let (deployed, expected) = (deployed.clone(), expected.to_owned());
        Ok(if matches {
            CommitCheck::Match { deployed, expected }
        } else {
            CommitCheck::Mismatch { deployed, expected }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn reads_the_stack_labels_and_strips_the_dirty_marker() {
        let id = Identity::from_labels(
            "disc_example_org",
            "disc_example_org_app",
            &labels(&[
                ("coop-cloud.disc_example_org.version", "1.0.0+3.5.3"),
                ("coop-cloud.disc_example_org.chaos-version", "eb96de94+U"),
                ("coop-cloud.other_stack.version", "9.9.9"),
            ]),
        );
        assert_eq!(id.version.as_deref(), Some("1.0.0+3.5.3"), "a version's own `+` is not a dirty marker");
        assert_eq!(id.commit.as_deref(), Some("eb96de94"));
        assert!(id.dirty);
        assert_eq!(id.recipe, None);
    }

    #[test]
    fn short_and_full_commits_match_by_prefix() {
        let id = Identity::from_labels("s", "s_app", &labels(&[("coop-cloud.s.chaos-version", "7ae7b0f7")]));
        assert!(!id.dirty);
        let full = "7ae7b0f76efb1c9d2a3b4c5d6e7f8091a2b3c4d5";
        assert!(matches!(id.check_commit(full).unwrap(), CommitCheck::Match { .. }));
        assert!(matches!(id.check_commit("7AE7B0F").unwrap(), CommitCheck::Match { .. }));
        assert_eq!(
            id.check_commit("eb96de94").unwrap(),
            CommitCheck::Mismatch { deployed: "7ae7b0f7".into(), expected: "eb96de94".into() }
        );
        assert!(id.check_commit("xyz").is_err());
        assert!(id.check_commit("abc").is_err(), "too short to mean anything");
    }

    #[test]
    fn a_release_deploy_has_no_commit_to_compare() {
        let id = Identity::from_labels("s", "s_app", &labels(&[("coop-cloud.s.version", "2.1.0+1.4")]));
        assert_eq!(id.check_commit("abcdef12").unwrap(), CommitCheck::NoCommit { version: Some("2.1.0+1.4".into()) });
        assert!(!Identity::from_labels("s", "s_app", &BTreeMap::new()).is_labelled());
    }
}
