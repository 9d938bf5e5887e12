//! How a version names a deployment: checked text, an image-tag-safe form
//! for compose interpolation, the major-bump rule the safety gate uses, and
//! the one version that is not a version: an image pinned by digest
//! ([`DigestVersion`], a floating tag such as `latest` rebuilt and pushed
//! again).

use lkg_canonical::{MajorBump, RecipeVersion, major_bump};

use crate::error::ReconcileError;

/// Checks that `version` can name a deployment and a release-notes file:
/// 1 to 128 characters of letters, digits, `.`, `_`, `-` and `+`, not
/// starting with `.` or `-` (so `releaseNotes/<version>.md` stays in its
/// directory and the version never reads as an option); or a
/// [`DigestVersion`], `<tag>@sha256:<64 hex>`.
pub fn check_version(version: &str) -> Result<(), ReconcileError> {
    if let Some((tag, _)) = version.split_once('@') {
        if DigestVersion::parse(version).is_some() {
            return Ok(());
        }
        let rule = if is_image_tag(tag) {
            "a version pinned by digest is <tag>@sha256:<64 lowercase hex digits>"
        } else {
            "the tag before '@' must be an image tag: letters, digits, '.', '_' or '-', not starting with '.' or '-'"
        };
        return Err(ReconcileError::Version { version: version.to_owned(), rule });
    }
    lkg_canonical::check_version(version).map_err(|e| ReconcileError::Version { version: e.version, rule: e.rule })
}

/// A version that names an image by its digest, `<tag>@sha256:<hex>`: what
/// a floating tag (`latest`, rebuilt and pushed again) pointed to when it
/// was read. It is deployed pinned (`${LKG_DIGEST}`), never by the moving
/// tag, and it has no order: two digests of one tag are a rebuild, neither
/// newer nor a major (see [`Gate::decide`](crate::Gate::decide)).
///
/// ```
/// let hex = "0123456789abcdef".repeat(4);
/// let v = lkg_reconcile::DigestVersion::parse(&format!("latest@sha256:{hex}")).unwrap();
/// assert_eq!((v.tag(), v.digest()), ("latest", format!("sha256:{hex}").as_str()));
/// assert_eq!(v.short(), "latest@sha256:0123456789ab");
/// assert!(lkg_reconcile::DigestVersion::parse("1.2.3").is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestVersion {
    tag: String,
    digest: String,
}

impl DigestVersion {
    /// Parses `<tag>@sha256:<64 lowercase hex>`; `None` for anything else.
    pub fn parse(text: &str) -> Option<DigestVersion> {
        let (tag, digest) = text.split_once('@')?;
        let hex = digest.strip_prefix("sha256:")?;
        let hex_ok = hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        (is_image_tag(tag) && hex_ok).then(|| DigestVersion { tag: tag.to_owned(), digest: digest.to_owned() })
    }

    /// The version of `tag` pointing at `digest` (`sha256:<hex>`), checked.
    pub fn new(tag: &str, digest: &str) -> Option<DigestVersion> {
        DigestVersion::parse(&format!("{tag}@{digest}"))
    }

    /// The floating tag (`latest`).
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The image's digest, `sha256:<hex>`: what `${LKG_DIGEST}` holds.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// For people: the tag and the first 12 hex digits (`latest@sha256:0123456789ab`).
    pub fn short(&self) -> String {
        format!("{}@{}", self.tag, short_digest(self))
    }
}

impl std::fmt::Display for DigestVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.tag, self.digest)
    }
}

/// A version's characters minus `+`, which a Docker tag cannot hold.
fn is_image_tag(tag: &str) -> bool {
    lkg_canonical::check_version(tag).is_ok() && !tag.contains('+')
}

/// `version` for people: a [`DigestVersion`] shortened to its tag and 12
/// hex digits, any other version as it is.
pub fn short_version(version: &str) -> String {
    DigestVersion::parse(version).map_or_else(|| version.to_owned(), |v| v.short())
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
    /// Another digest of the same floating tag: a rebuild, which carries no
    /// version to compare (described).
    Rebuild(String),
    /// The two cannot be compared; the gate holds (it cannot prove the
    /// update is safe).
    Unknown(String),
}

/// Compares `from` (last-good) with `to` (target) with the major rule that upgrade-base also uses:
/// the major of a version is its leftmost non-zero component, on each side
/// of the `+`.
pub(crate) fn bump(from: &str, to: &str) -> Bump {
    if let (Some(f), Some(t)) = (DigestVersion::parse(from), DigestVersion::parse(to))
        && f.tag == t.tag
    {
        return Bump::Rebuild(format!("tag {} rebuilt: {} -> {}", t.tag, short_digest(&f), short_digest(&t)));
    }
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

/// `sha256:` and the first 12 hex digits.
fn short_digest(v: &DigestVersion) -> &str {
    &v.digest[.."sha256:".len() + 12]
}

/// How far an update goes: what a fleet policy's `allow` compares with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UpdateLevel {
    /// The same major and minor on both sides of the `+`.
    Patch,
    /// A new minor on either side, no major change.
    Minor,
    /// A major change on either side (the safety gate holds it), or a
    /// downgrade, or versions that cannot be compared.
    Major,
}

impl UpdateLevel {
    /// `patch`, `minor` or `major`.
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateLevel::Patch => "patch",
            UpdateLevel::Minor => "minor",
            UpdateLevel::Major => "major",
        }
    }
}

/// A version as lkg orders versions: `<recipe-semver>+<app-version>`, or a
/// plain semantic version (`1.4.2`, `v1.4.2`). Two versions of different
/// forms do not compare.
#[derive(Debug, Clone)]
pub struct OrderedVersion {
    text: String,
    version: Comparable,
}

impl OrderedVersion {
    /// Parses `text`; `None` when it is neither form (a tag such as `latest`).
    pub fn parse(text: &str) -> Option<OrderedVersion> {
        comparable(text).ok().map(|version| OrderedVersion { text: text.to_owned(), version })
    }

    /// The version as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    fn inner(&self) -> &RecipeVersion {
        match &self.version {
            Comparable::Recipe(v) | Comparable::Plain(v) => v,
        }
    }

    /// Whether `self` and `other` are of the same form, so that they compare.
    pub fn same_form(&self, other: &OrderedVersion) -> bool {
        matches!(
            (&self.version, &other.version),
            (Comparable::Recipe(_), Comparable::Recipe(_)) | (Comparable::Plain(_), Comparable::Plain(_))
        )
    }

    /// `self` compared with `other`; `None` when their forms differ.
    pub fn compare(&self, other: &OrderedVersion) -> Option<std::cmp::Ordering> {
        self.same_form(other).then(|| self.inner().cmp(other.inner()))
    }

    /// How far an update from `self` to `to` goes, by the safety gate's
    /// major rule; a downgrade or an incomparable pair is `Major`.
    pub fn level_to(&self, to: &OrderedVersion) -> UpdateLevel {
        if self.compare(to) != Some(std::cmp::Ordering::Less) {
            return UpdateLevel::Major;
        }
        let (from, to) = (self.inner(), to.inner());
        if major_bump(from, to).is_some() {
            return UpdateLevel::Major;
        }
        let recipe_minor = (from.recipe().major, from.recipe().minor) != (to.recipe().major, to.recipe().minor);
        let app_minor = numeric_prefix(from.app(), 2) != numeric_prefix(to.app(), 2);
        if recipe_minor || app_minor { UpdateLevel::Minor } else { UpdateLevel::Patch }
    }
}

/// The first `n` numeric components of an app version (`26.6.2-rootless` → `[26, 6]`).
fn numeric_prefix(app: &str, n: usize) -> Vec<u64> {
    app.split(['.', '-', '_']).take(n).map_while(|part| part.parse().ok()).collect()
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
    fn a_digest_version_is_a_tag_and_a_full_sha256() {
        let hex = "0123456789abcdef".repeat(4);
        let pinned = format!("latest@sha256:{hex}");
        check_version(&pinned).unwrap();
        assert_eq!(DigestVersion::parse(&pinned).unwrap().to_string(), pinned);
        assert_eq!(short_version(&pinned), "latest@sha256:0123456789ab");
        assert_eq!(short_version("1.2.3"), "1.2.3");
        assert!(OrderedVersion::parse(&pinned).is_none(), "a digest has no order");
        for bad in [
            format!("latest@sha256:{}", &hex[1..]),
            format!("latest@sha256:{}", hex.to_uppercase()),
            format!("latest@sha512:{hex}"),
            format!("1+2@sha256:{hex}"),
            format!("../x@sha256:{hex}"),
            format!("@sha256:{hex}"),
            format!("latest@sha256:{hex}@sha256:{hex}"),
        ] {
            assert!(DigestVersion::parse(&bad).is_none(), "{bad}");
            assert!(check_version(&bad).is_err(), "{bad}");
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

    #[test]
    fn update_levels_follow_the_major_rule() {
        let level = |a: &str, b: &str| OrderedVersion::parse(a).unwrap().level_to(&OrderedVersion::parse(b).unwrap());
        assert_eq!(level("1.1.0", "1.1.1"), UpdateLevel::Patch);
        assert_eq!(level("1.1.0", "1.2.0"), UpdateLevel::Minor);
        assert_eq!(level("1.1.0", "2.0.0"), UpdateLevel::Major);
        assert_eq!(level("1.1.0", "1.0.9"), UpdateLevel::Major, "a downgrade is never automatic");
        assert_eq!(level("0.7.0", "0.7.3"), UpdateLevel::Patch);
        assert_eq!(level("0.7.0", "0.8.0"), UpdateLevel::Major);
        assert_eq!(level("10.7.1+26.6.2", "10.7.2+26.6.2"), UpdateLevel::Patch);
        assert_eq!(level("10.7.1+26.6.2", "10.7.2+26.7.0"), UpdateLevel::Minor);
        assert_eq!(level("10.7.1+26.6.2", "10.7.2+27.0.0"), UpdateLevel::Major);
        assert_eq!(level("1.0.0", "1.0.0+2.0.0"), UpdateLevel::Major, "different forms do not compare");
        assert_eq!(OrderedVersion::parse("v1.2.3").unwrap().as_str(), "v1.2.3");
        assert!(OrderedVersion::parse("latest").is_none());
    }
}
