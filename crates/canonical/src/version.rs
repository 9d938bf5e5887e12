//! `<recipe-semver>+<app-version>` tags and their order.
//!
//! A recipe tag such as `3.5.3+1.24.2-rootless` carries two versions: the
//! recipe's own semver before the `+`, the packaged app's version after it.
//! Semver puts the app version in *build metadata*, which §10 of the spec
//! says to ignore for precedence, so `1.0.0+2.0` and `1.0.0+3.0` would be
//! equal. lkg needs a total order (to pick "the newest tag older than head"
//! deterministically), so it defines one:
//!
//! 1. the recipe semver, by semver precedence (major, minor, patch, then
//!    pre-release: `1.0.0-rc.1 < 1.0.0`);
//! 2. on a tie, the app version in *natural order*: a leading `v` is
//!    ignored, runs of digits compare as numbers (`1.10 > 1.9`), other runs
//!    compare as text, a run of digits sorts before text, and a version that
//!    is a prefix of another sorts first (`1.24.2 < 1.24.2-rootless`);
//! 3. on a tie still, the tag text byte by byte (`v1.0` vs `1.0`, `01` vs `1`),
//!    so that two different tags are never equal.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// A recipe version, `<recipe-semver>+<app-version>`.
///
/// ```
/// use lkg_canonical::RecipeVersion;
/// let a: RecipeVersion = "0.7.0+3.3.1".parse()?;
/// let b: RecipeVersion = "0.8.1+3.5.0".parse()?;
/// assert!(a < b);
/// assert!("1.14.1-rootless_1".parse::<RecipeVersion>().is_err());
/// # Ok::<(), lkg_canonical::VersionError>(())
/// ```
#[derive(Debug, Clone)]
pub struct RecipeVersion {
    text: String,
    recipe: semver::Version,
    app: String,
}

/// Why a tag is not a recipe version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VersionError {
    /// No `+` separates the recipe version from the app version.
    #[error("{tag:?} is not <recipe-semver>+<app-version>: it has no '+'")]
    NoAppVersion {
        /// The text.
        tag: String,
    },
    /// The part before `+` is not semver.
    #[error("{tag:?} is not <recipe-semver>+<app-version>: {recipe:?} is not a semantic version ({reason})")]
    BadRecipeVersion {
        /// The text.
        tag: String,
        /// The part before `+`.
        recipe: String,
        /// semver's reason.
        reason: String,
    },
    /// The part after `+` is empty or holds characters a tag version cannot.
    #[error(
        "{tag:?} is not <recipe-semver>+<app-version>: the app version {app:?} must be non-empty letters, \
         digits, '.', '-' or '_'"
    )]
    BadAppVersion {
        /// The text.
        tag: String,
        /// The part after `+`.
        app: String,
    },
}

impl RecipeVersion {
    /// Parses `<recipe-semver>+<app-version>`.
    pub fn parse(text: &str) -> Result<RecipeVersion, VersionError> {
        let (recipe, app) = text.split_once('+').ok_or_else(|| VersionError::NoAppVersion { tag: text.to_owned() })?;
        let recipe_version = semver::Version::parse(recipe).map_err(|e| VersionError::BadRecipeVersion {
            tag: text.to_owned(),
            recipe: recipe.to_owned(),
            reason: e.to_string(),
        })?;
        if app.is_empty() || !app.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')) {
            return Err(VersionError::BadAppVersion { tag: text.to_owned(), app: app.to_owned() });
        }
        Ok(RecipeVersion { text: text.to_owned(), recipe: recipe_version, app: app.to_owned() })
    }

    /// The version as written (the tag name).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The recipe's semver (before `+`).
    pub fn recipe(&self) -> &semver::Version {
        &self.recipe
    }

    /// The app's version (after `+`), e.g. `1.24.2-rootless`.
    pub fn app(&self) -> &str {
        &self.app
    }
}

impl PartialEq for RecipeVersion {
    fn eq(&self, other: &RecipeVersion) -> bool {
        self.text == other.text
    }
}

impl Eq for RecipeVersion {}

impl Ord for RecipeVersion {
    fn cmp(&self, other: &RecipeVersion) -> Ordering {
        self.recipe
            .cmp_precedence(&other.recipe)
            .then_with(|| natural_cmp(&self.app, &other.app))
            .then_with(|| self.text.cmp(&other.text))
    }
}

impl PartialOrd for RecipeVersion {
    fn partial_cmp(&self, other: &RecipeVersion) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl std::hash::Hash for RecipeVersion {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.text.hash(state);
    }
}

impl fmt::Display for RecipeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for RecipeVersion {
    type Err = VersionError;
    fn from_str(s: &str) -> Result<RecipeVersion, VersionError> {
        RecipeVersion::parse(s)
    }
}

impl Serialize for RecipeVersion {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Chunk<'a> {
    Number(&'a str),
    Text(&'a str),
}

fn chunks(text: &str) -> Vec<Chunk<'_>> {
    let text = text.strip_prefix(['v', 'V']).unwrap_or(text);
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(first) = rest.chars().next() {
        let digit = first.is_ascii_digit();
        let end = rest.find(|c: char| c.is_ascii_digit() != digit).unwrap_or(rest.len());
        let (run, tail) = rest.split_at(end);
        out.push(if digit { Chunk::Number(run) } else { Chunk::Text(run) });
        rest = tail;
    }
    out
}

/// Natural order of app versions (see the module docs).
fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (chunks(a), chunks(b));
    for (x, y) in a.iter().zip(&b) {
        let order = match (x, y) {
            (Chunk::Number(x), Chunk::Number(y)) => {
                // Compare as numbers of any length: without leading zeros, the
                // longer digit string is the larger number.
                let (x, y) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
                x.len().cmp(&y.len()).then_with(|| x.cmp(y))
            }
            (Chunk::Number(_), Chunk::Text(_)) => Ordering::Less,
            (Chunk::Text(_), Chunk::Number(_)) => Ordering::Greater,
            (Chunk::Text(x), Chunk::Text(y)) => x.cmp(y),
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    a.len().cmp(&b.len())
}

/// Which side of the `+` changed its major version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MajorBump {
    /// The recipe's major change, if any (`10` → `11`, or `0.7` → `0.8`).
    pub recipe: Option<MajorChange>,
    /// The app's major change, if any (`25` → `26`).
    pub app: Option<MajorChange>,
}

/// A major version before and after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MajorChange {
    /// The major version before.
    pub from: String,
    /// The major version after.
    pub to: String,
}

impl fmt::Display for MajorBump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sides: Vec<String> = [("recipe", &self.recipe), ("app", &self.app)]
            .into_iter()
            .filter_map(|(side, change)| change.as_ref().map(|c| format!("{side} major {} -> {}", c.from, c.to)))
            .collect();
        f.write_str(&sides.join(", "))
    }
}

/// Whether going from `from` to `to` changes the major version of either
/// side of the `+` (the safety gate holds such upgrades for an operator).
///
/// The *major* of a version is its leftmost non-zero numeric component, as
/// semver's rules for `0.y.z` and Cargo have it: `10.7.1 → 11.0.0` and
/// `0.7.0 → 0.8.1` are major changes, `10.7.1 → 10.7.10` is not. For the app
/// side, the numeric components are read from the start of the app version
/// (a leading `v` ignored: `v1.6.870-0` is `1.6.870`); an app version that
/// does not start with a number (`latest`) has no known major, so any change
/// of it counts as major. A major *downgrade* is reported too.
///
/// ```
/// use lkg_canonical::{RecipeVersion, major_bump};
/// let v = |s: &str| s.parse::<RecipeVersion>().unwrap();
/// assert!(major_bump(&v("10.7.1+26.6.2"), &v("10.7.9+26.6.2")).is_none());
/// // keycloak 25 -> 26 is a database migration, though the recipe moved a minor only
/// let bump = major_bump(&v("10.6.0+25.0.6"), &v("10.7.0+26.0.1")).unwrap();
/// assert_eq!(bump.to_string(), "app major 25 -> 26");
/// ```
pub fn major_bump(from: &RecipeVersion, to: &RecipeVersion) -> Option<MajorBump> {
    let recipe_major = |v: &semver::Version| leftmost_nonzero(&[v.major, v.minor, v.patch]);
    let recipe = change(recipe_major(&from.recipe), recipe_major(&to.recipe));
    let app = change(app_major(&from.app), app_major(&to.app));
    (recipe.is_some() || app.is_some()).then_some(MajorBump { recipe, app })
}

fn change(from: String, to: String) -> Option<MajorChange> {
    (from != to).then_some(MajorChange { from, to })
}

/// `[0, 7, 0]` → `0.7`; `[10, 7, 1]` → `10`; `[0, 0, 3]` → `0.0.3`.
fn leftmost_nonzero(parts: &[u64]) -> String {
    let end = parts.iter().position(|p| *p != 0).map_or(parts.len(), |i| i + 1);
    parts[..end].iter().map(u64::to_string).collect::<Vec<_>>().join(".")
}

fn app_major(app: &str) -> String {
    let text = app.strip_prefix(['v', 'V']).unwrap_or(app);
    let mut parts = Vec::new();
    for piece in text.split('.') {
        let digits = piece.find(|c: char| !c.is_ascii_digit()).unwrap_or(piece.len());
        match piece[..digits].parse::<u64>() {
            Ok(n) => parts.push(n),
            Err(_) => break,
        }
        if digits < piece.len() {
            break;
        }
    }
    if parts.is_empty() { app.to_owned() } else { leftmost_nonzero(&parts) }
}

/// The rule of a version that names a deployment: it becomes a label value,
/// an image tag (with `+` made `_`) and a file name (`releaseNotes/<version>.md`).
pub const VERSION_RULE: &str = "use 1 to 128 letters, digits, '.', '_', '-' or '+', not starting with '.' or '-'";

/// A version that cannot name a deployment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid version {:?}: {rule}", lkg_core::clip(version))]
pub struct InvalidVersion {
    /// The text given.
    pub version: String,
    /// The rule it breaks ([`VERSION_RULE`]).
    pub rule: &'static str,
}

/// Checks that `version` can name a deployment: 1 to 128 characters of
/// letters, digits, `.`, `_`, `-` and `+`, not starting with `.` or `-` (so
/// `releaseNotes/<version>.md` stays in its directory and the version never
/// reads as an option). Looser than [`RecipeVersion`]: any tag a recipe uses.
///
/// ```
/// assert!(lkg_canonical::check_version("3.5.3+1.24.2-rootless").is_ok());
/// assert!(lkg_canonical::check_version("../../etc").is_err());
/// ```
pub fn check_version(version: &str) -> Result<(), InvalidVersion> {
    let ok = !version.is_empty()
        // Docker's limit for a tag.
        && version.len() <= 128
        && !version.starts_with(['.', '-'])
        && version.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+'));
    if ok { Ok(()) } else { Err(InvalidVersion { version: version.to_owned(), rule: VERSION_RULE }) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> RecipeVersion {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn parses_the_seed_tags() {
        for (tag, recipe, app) in [
            ("10.7.1+26.6.2", "10.7.1", "26.6.2"),
            ("3.5.3+1.24.2-rootless", "3.5.3", "1.24.2-rootless"),
            ("1.0.0+v1.6.870-0", "1.0.0", "v1.6.870-0"),
            ("5.0.2+27.0.1-fpm", "5.0.2", "27.0.1-fpm"),
            ("0.8.1+3.5.0", "0.8.1", "3.5.0"),
            ("1.0.0-rc.1+2.0", "1.0.0-rc.1", "2.0"),
        ] {
            let parsed = v(tag);
            assert_eq!((parsed.recipe().to_string().as_str(), parsed.app(), parsed.as_str()), (recipe, app, tag));
        }
    }

    #[test]
    fn rejects_what_is_not_a_version() {
        let err = |s: &str| RecipeVersion::parse(s).unwrap_err();
        assert!(matches!(err("1.14.1-rootless_1"), VersionError::NoAppVersion { .. }));
        assert!(matches!(err("latest"), VersionError::NoAppVersion { .. }));
        assert!(matches!(err("1.2+3.4"), VersionError::BadRecipeVersion { .. }));
        assert!(matches!(err("v1.2.3+3.4"), VersionError::BadRecipeVersion { .. }));
        assert!(matches!(err("1.2.3+"), VersionError::BadAppVersion { .. }));
        assert!(matches!(err("1.2.3+a+b"), VersionError::BadAppVersion { .. }));
        assert!(matches!(err("1.2.3+a b"), VersionError::BadAppVersion { .. }));
        assert_eq!(
            err("1.14.1-rootless_1").to_string(),
            "\"1.14.1-rootless_1\" is not <recipe-semver>+<app-version>: it has no '+'"
        );
    }

    #[test]
    fn orders_by_recipe_semver_first() {
        let mut tags = [
            v("0.8.1+3.5.0"),
            v("0.7.0+3.3.1"),
            v("0.10.0+3.0.0"),
            v("0.6.3+3.2.0"),
            v("1.0.0-rc.1+9.9.9"),
            v("1.0.0+1.0.0"),
        ];
        tags.sort();
        let sorted: Vec<&str> = tags.iter().map(RecipeVersion::as_str).collect();
        assert_eq!(
            sorted,
            ["0.6.3+3.2.0", "0.7.0+3.3.1", "0.8.1+3.5.0", "0.10.0+3.0.0", "1.0.0-rc.1+9.9.9", "1.0.0+1.0.0"]
        );
    }

    #[test]
    fn the_tie_rule_orders_app_versions_naturally_then_by_text() {
        let ordered = [
            "1.0.0+1.9",
            "1.0.0+1.10",
            "1.0.0+1.24.2",
            "1.0.0+1.24.2-rootless",
            "1.0.0+v1.25",
            "1.0.0+01.25-fpm",
            "1.0.0+1.25-fpm",
        ];
        for pair in ordered.windows(2) {
            assert!(v(pair[0]) < v(pair[1]), "{} < {}", pair[0], pair[1]);
        }
        // Natural order alone ties `01.25-fpm` with `1.25-fpm`; the text breaks the tie ('0' < '1').
        assert_ne!(v("1.0.0+01.25-fpm"), v("1.0.0+1.25-fpm"));
        assert_eq!(v("1.0.0+1.0").cmp(&v("1.0.0+1.0")), Ordering::Equal);
        // Numbers longer than u64 still compare.
        assert!(v("1.0.0+99999999999999999999998") < v("1.0.0+99999999999999999999999"));
    }

    #[test]
    fn the_order_is_total_and_consistent_with_equality() {
        let all: Vec<RecipeVersion> = [
            "1.0.0+1",
            "1.0.0+v1",
            "1.0.0+01",
            "1.0.0+1.0",
            "1.0.0+1-a",
            "1.0.0+1_a",
            "1.0.0+a",
            "1.0.0+A",
            "1.0.0-a+1",
            "0.9.9+9",
        ]
        .iter()
        .map(|s| v(s))
        .collect();
        for a in &all {
            for b in &all {
                assert_eq!(a.cmp(b) == Ordering::Equal, a == b, "{a} vs {b}");
                assert_eq!(a.cmp(b), b.cmp(a).reverse(), "{a} vs {b}");
                for c in &all {
                    if a < b && b < c {
                        assert!(a < c, "{a} < {b} < {c}");
                    }
                }
            }
        }
    }

    #[test]
    fn major_bumps_on_either_side() {
        let bump = |a: &str, b: &str| major_bump(&v(a), &v(b)).map(|m| m.to_string());
        assert_eq!(bump("10.7.1+26.6.2", "10.7.10+26.6.2"), None);
        assert_eq!(
            bump("10.7.1+26.6.2", "11.0.0+27.0.0").as_deref(),
            Some("recipe major 10 -> 11, app major 26 -> 27")
        );
        assert_eq!(bump("10.7.1+25.0.6", "10.7.2+26.6.2").as_deref(), Some("app major 25 -> 26"));
        assert_eq!(bump("0.7.0+3.3.1", "0.8.1+3.3.1").as_deref(), Some("recipe major 0.7 -> 0.8"));
        assert_eq!(bump("0.7.0+3.3.1", "0.7.5+3.5.0"), None);
        assert_eq!(bump("1.0.0+v1.6.870-0", "1.1.0+v1.7.0-0"), None);
        assert_eq!(bump("1.0.0+v0.4.219", "1.1.0+v0.5.0").as_deref(), Some("app major 0.4 -> 0.5"));
        assert_eq!(bump("3.5.3+1.24.2-rootless", "3.6.0+1.24.2-rootless"), None);
        assert_eq!(bump("1.0.0+latest", "1.0.1+stable").as_deref(), Some("app major latest -> stable"));
        assert_eq!(bump("2.0.0+1.0", "1.9.0+1.0").as_deref(), Some("recipe major 2 -> 1"));
    }
}
