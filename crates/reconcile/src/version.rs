//! How a version names a deployment: checked text, an image-tag-safe form
//! for compose interpolation, and the major-bump rule the safety gate uses.

use lkg_canonical::{MajorBump, RecipeVersion, major_bump};

use crate::error::ReconcileError;

/// Checks that `version` can name a deployment and a release-notes file:
/// 1 to 128 characters of letters, digits, `.`, `_`, `-` and `+`, not
/// starting with `.` or `-` (so `releaseNotes/<version>.md` stays in its
/// directory and the version never reads as an option).
pub fn check_version(version: &str) -> Result<(), ReconcileError> {
    lkg_canonical::check_version(version).map_err(|e| ReconcileError::Version { version: e.version, rule: e.rule })
}

/// The version as a Docker image tag: every character a tag cannot hold
/// (`+` in `1.0.0+2.0.0`) becomes `_`. Compose files see it as
/// `${LKG_VERSION_TAG}`, e.g. `image: example/app:${LKG_VERSION_TAG}`.
///
/// ```
/// assert_eq!(lkg_reconcile::version_tag("3.5.3+1.24.2-rootless"), "3.5.3_1.24.2-rootless");
/// ```
pub fn version_tag(version: &str) -> String {
    version.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' }).collect()
}

/// A version as the gate compares it.
#[derive(Debug, Clone)]
enum Comparable {
    /// `<recipe-semver>+<app-version>`: both sides count.
    Recipe(RecipeVersion),
    /// A plain semantic version (`1.4.2`, `v1.4.2`): read as a recipe
    /// version whose app side never changes, so the major rule of lkg-canonical's version grammar (also upgrade-base's)
    /// applies to it unchanged.
    Plain(RecipeVersion),
}

/// The app side given to a plain version: constant, so it never counts as a change.
const PLAIN_APP_SIDE: &str = "0";

fn comparable(text: &str) -> Result<Comparable, String> {
    if text.contains('+') {
        return RecipeVersion::parse(text).map(Comparable::Recipe).map_err(|e| e.to_string());
    }
    let bare = text.strip_prefix(['v', 'V']).unwrap_or(text);
    RecipeVersion::parse(&format!("{bare}+{PLAIN_APP_SIDE}"))
        .map(Comparable::Plain)
        .map_err(|_| format!("{text:?} is neither a semantic version nor <recipe-semver>+<app-version>"))
}

/// How a target compares with the last-good version, for the gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Bump {
    /// No major change on either side.
    Minor,
    /// A major change (or a major downgrade), described.
    Major(String),
    /// The two cannot be compared; the gate holds (it cannot prove the
    /// update is safe).
    Unknown(String),
}

/// Compares `from` (last-good) with `to` (target) with the major rule that upgrade-base also uses:
/// the major of a version is its leftmost non-zero component, on each side
/// of the `+`.
pub(crate) fn bump(from: &str, to: &str) -> Bump {
    let (from_v, to_v) = match (comparable(from), comparable(to)) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) | (_, Err(e)) => return Bump::Unknown(format!("cannot compare the versions: {e}")),
    };
    match (&from_v, &to_v) {
        (Comparable::Recipe(f), Comparable::Recipe(t)) => match major_bump(f, t) {
            None => Bump::Minor,
            Some(bump) => Bump::Major(bump.to_string()),
        },
        (Comparable::Plain(f), Comparable::Plain(t)) => match major_bump(f, t) {
            None => Bump::Minor,
            Some(MajorBump { recipe: Some(change), .. }) => {
                Bump::Major(format!("major {} -> {}", change.from, change.to))
            }
            Some(bump) => Bump::Major(bump.to_string()),
        },
        _ => Bump::Unknown(format!(
            "cannot compare {from} with {to}: one is <recipe-semver>+<app-version>, the other a plain version"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_that_can_name_a_deployment() {
        for ok in ["1.0.0", "3.5.3+1.24.2-rootless", "1.0.0+v1.6.870-0", "v2", "latest"] {
            check_version(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in ["", "../etc", "-rf", ".hidden", "1.0/2", "a b", &"9".repeat(129)] {
            assert!(check_version(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tags_replace_what_a_docker_tag_cannot_hold() {
        assert_eq!(version_tag("1.0.0+2.0.0"), "1.0.0_2.0.0");
        assert_eq!(version_tag("1.2.0"), "1.2.0");
    }

    #[test]
    fn major_is_the_leftmost_nonzero_component_on_either_side() {
        assert_eq!(bump("1.1.0", "1.2.0"), Bump::Minor);
        assert_eq!(bump("v1.1.0", "1.9.3"), Bump::Minor);
        assert_eq!(bump("1.1.0", "4.0.0"), Bump::Major("major 1 -> 4".into()));
        assert_eq!(bump("0.7.0", "0.8.1"), Bump::Major("major 0.7 -> 0.8".into()));
        assert_eq!(bump("10.7.1+26.6.2", "10.7.9+26.6.2"), Bump::Minor);
        assert_eq!(
            bump("10.7.1+26.6.2", "11.0.0+27.0.0"),
            Bump::Major("recipe major 10 -> 11, app major 26 -> 27".into())
        );
        // keycloak 25 -> 26: a database migration behind a minor recipe bump.
        assert_eq!(bump("10.6.0+25.0.6", "10.7.0+26.0.1"), Bump::Major("app major 25 -> 26".into()));
        assert_eq!(bump("2.0.0", "1.9.0"), Bump::Major("major 2 -> 1".into()));
    }

    #[test]
    fn what_cannot_be_compared_is_unknown() {
        assert!(matches!(bump("1.0.0", "1.0.0+2.0"), Bump::Unknown(_)));
        assert!(matches!(bump("latest", "1.0.0"), Bump::Unknown(_)));
        assert!(matches!(bump("1.0.0", "nightly"), Bump::Unknown(_)));
    }
}
