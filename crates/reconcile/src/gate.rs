//! The safety gate: decides, before anything is touched, whether an update
//! may be applied automatically.
//!
//! A passing health check does not prove that a required manual migration
//! ran: an automatic update could leave an app answering its probes on data
//! that was never migrated. So two kinds of update are held for an operator:
//! a major bump of either side of `<recipe-semver>+<app-version>` relative to
//! last-good (checking both sides covers keycloak's app-major 25 -> 26 behind
//! a minor recipe bump), and a target whose release notes mention a manual
//! migration. A hold does nothing but raise an alert that carries the notes.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::alert::AlertKind;
use crate::error::ReconcileError;
use crate::version::{Bump, bump};

/// The phrases that mark a manual migration when none are configured.
/// Matching ignores case and treats runs of spaces, `-` and `_` alike.
pub const DEFAULT_MARKERS: &[&str] =
    &["manual migration", "migration required", "breaking change", "manual intervention", "manual upgrade"];

/// Words that, right before a marker, negate it ("no breaking changes",
/// "without manual intervention"): a release note saying there is nothing to
/// do must not hold the update.
const NEGATIONS: &[&str] = &["no", "not", "without", "non"];

/// Release notes for a target version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseNotes {
    /// Where they came from: a file path, or `given` for notes passed in.
    pub source: String,
    /// Their text.
    pub text: String,
}

impl ReleaseNotes {
    /// Notes passed in by the caller.
    pub fn given(text: impl Into<String>) -> ReleaseNotes {
        ReleaseNotes { source: "given".to_owned(), text: text.into() }
    }

    /// `<dir>/<target>.md` (abra's `releaseNotes/<version>.md`), if it
    /// exists. The target must have passed [`check_version`](crate::check_version).
    pub fn read(dir: &Path, target: &str) -> std::io::Result<Option<ReleaseNotes>> {
        let path: PathBuf = dir.join(format!("{target}.md"));
        match lkg_core::input::read_to_string(&path, lkg_core::input::MAX_TEXT) {
            Ok(text) => Ok(Some(ReleaseNotes { source: path.display().to_string(), text })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Why the gate holds an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum HoldKind {
    /// A major bump of either side of the `+` (or versions the gate cannot compare).
    Major,
    /// The release notes mark a manual migration.
    ManualMigration,
}

impl HoldKind {
    /// The alert a hold raises.
    pub fn alert_kind(self) -> AlertKind {
        match self {
            HoldKind::Major => AlertKind::HeldMajor,
            HoldKind::ManualMigration => AlertKind::HeldManualMigration,
        }
    }
}

/// The gate's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "kebab-case")]
pub enum GateDecision {
    /// The update may proceed.
    Pass {
        /// Why, in one sentence.
        reason: String,
    },
    /// Nothing may be touched; an operator upgrades by hand.
    Hold {
        /// Which rule holds it.
        kind: HoldKind,
        /// Why, naming the versions and the markers found.
        reason: String,
        /// The markers found in the release notes.
        markers: Vec<String>,
        /// The release notes of the target, when there are any.
        notes: Option<ReleaseNotes>,
    },
}

impl GateDecision {
    /// Whether the update may proceed.
    pub fn passes(&self) -> bool {
        matches!(self, GateDecision::Pass { .. })
    }
}

/// The safety gate with its manual-migration markers.
///
/// ```
/// use lkg_reconcile::{Gate, GateDecision, HoldKind, ReleaseNotes};
///
/// let gate = Gate::default();
/// assert!(gate.decide(Some("10.7.1+26.6.2"), "10.7.9+26.6.2", None).passes());
/// let held = gate.decide(Some("10.7.1+26.6.2"), "11.0.0+27.0.0", None);
/// assert!(matches!(held, GateDecision::Hold { kind: HoldKind::Major, .. }));
/// let notes = ReleaseNotes::given("Manual migration: run `kc.sh migrate` before starting.");
/// let held = gate.decide(Some("10.7.1+26.6.2"), "10.7.2+26.6.3", Some(&notes));
/// assert!(matches!(held, GateDecision::Hold { kind: HoldKind::ManualMigration, .. }));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gate {
    markers: Vec<String>,
}

impl Default for Gate {
    fn default() -> Gate {
        Gate::new(DEFAULT_MARKERS.iter().copied())
    }
}

impl Gate {
    /// A gate that holds on `markers` (replacing the defaults); empty markers are dropped.
    pub fn new(markers: impl IntoIterator<Item = impl AsRef<str>>) -> Gate {
        Gate { markers: markers.into_iter().map(|m| normalize(m.as_ref())).filter(|m| !m.is_empty()).collect() }
    }

    /// A gate that holds on `markers` (replacing the defaults), refusing a
    /// marker that can match nothing (empty, or only spaces and
    /// punctuation): an empty `--marker ''` would otherwise turn the
    /// manual-migration hold off without a word.
    pub fn with_markers(markers: impl IntoIterator<Item = impl AsRef<str>>) -> Result<Gate, ReconcileError> {
        let markers: Vec<String> = markers.into_iter().map(|m| m.as_ref().to_owned()).collect();
        check_markers(&markers)?;
        Ok(Gate::new(&markers))
    }

    /// The markers, normalised (lowercase, single spaces).
    pub fn markers(&self) -> &[String] {
        &self.markers
    }

    /// Decides whether going from `last_good` to `target` may proceed.
    ///
    /// `last_good: None` is a first install: there is nothing to migrate
    /// from, so only a known last-good can make a major bump, and the notes
    /// are not scanned. Versions the gate cannot compare are held as major:
    /// it passes only what it can show to be a minor or patch update, or a
    /// rebuild: another digest of the same floating tag
    /// ([`DigestVersion`](crate::DigestVersion)), which has no version for
    /// the major rule to read (release notes written for that exact digest,
    /// `<tag>@sha256:<hex>.md`, are still scanned).
    pub fn decide(&self, last_good: Option<&str>, target: &str, notes: Option<&ReleaseNotes>) -> GateDecision {
        let Some(last_good) = last_good else {
            return GateDecision::Pass {
                reason: format!("first install of {target}: there is no last-good version to migrate from"),
            };
        };
        let matched = notes.map(|n| self.matches(&n.text)).unwrap_or_default();
        let notes_reason = || {
            let source = notes.map_or("", |n| n.source.as_str());
            format!("the release notes ({source}) mention {}", quoted(&matched))
        };
        let mut rebuild = None;
        let major = match bump(last_good, target) {
            Bump::Minor => None,
            Bump::Rebuild(what) => {
                rebuild = Some(what);
                None
            }
            Bump::Major(what) => Some(format!("{last_good} -> {target} is a major update ({what})")),
            Bump::Unknown(why) => Some(format!("{last_good} -> {target} may be a major update: {why}")),
        };
        let hold = |kind, reason| GateDecision::Hold { kind, reason, markers: matched.clone(), notes: notes.cloned() };
        match major {
            Some(reason) if matched.is_empty() => hold(HoldKind::Major, reason),
            Some(reason) => hold(HoldKind::Major, format!("{reason}; {}", notes_reason())),
            None if !matched.is_empty() => hold(HoldKind::ManualMigration, notes_reason()),
            None => GateDecision::Pass {
                reason: match rebuild {
                    // A digest carries no version: the major rule cannot apply. Whoever
                    // names a floating tag (fleet.yml's `floating:`, or --target) takes
                    // its rebuilds.
                    Some(what) => format!("{what}: a rebuild has no version, so no major rule applies"),
                    None => format!("{last_good} -> {target} is a minor or patch update"),
                } + if notes.is_some() { " and its release notes mark no manual migration" } else { "" },
            },
        }
    }

    /// The markers `text` mentions without a negation right before them.
    pub fn matches(&self, text: &str) -> Vec<String> {
        let text = normalize(text);
        let words: Vec<&str> = text.split(' ').collect();
        self.markers
            .iter()
            .filter(|marker| {
                let needle: Vec<&str> = marker.split(' ').collect();
                (0..words.len().saturating_sub(needle.len() - 1))
                    .any(|i| words[i..i + needle.len()] == needle[..] && !(i > 0 && NEGATIONS.contains(&words[i - 1])))
            })
            .cloned()
            .collect()
    }
}

/// Lowercase, with every run of characters other than letters and digits
/// turned into one space.
/// Refuses a marker list that can hold nothing: no marker at all, or one that
/// normalises to nothing.
pub(crate) fn check_markers(markers: &[String]) -> Result<(), ReconcileError> {
    if markers.is_empty() {
        return Err(ReconcileError::Invalid(
            "no manual-migration markers: give at least one, or leave them out for the defaults".to_owned(),
        ));
    }
    if let Some(empty) = markers.iter().find(|m| normalize(m).is_empty()) {
        return Err(ReconcileError::Invalid(format!(
            "manual-migration marker {empty:?} has no letters or digits, so it can match nothing and the gate would \
             never hold: give a phrase such as \"manual migration\""
        )));
    }
    Ok(())
}

fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
        } else if !out.ends_with(' ') {
            out.push(' ');
        }
    }
    out.trim().to_owned()
}

fn quoted(markers: &[String]) -> String {
    markers.iter().map(|m| format!("\"{m}\"")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notes(text: &str) -> ReleaseNotes {
        ReleaseNotes { source: "releaseNotes/x.md".into(), text: text.into() }
    }

    #[test]
    fn patch_and_minor_updates_pass() {
        let gate = Gate::default();
        for (from, to) in
            [("10.7.1+26.6.2", "10.7.9+26.6.2"), ("1.0.0", "1.1.0"), ("3.5.3+1.24.2-rootless", "3.6.0+1.24.3-rootless")]
        {
            let decision = gate.decide(Some(from), to, Some(&notes("Fixes a typo. Bumps the image.")));
            assert!(decision.passes(), "{from} -> {to}: {decision:?}");
        }
    }

    #[test]
    fn a_major_bump_of_either_side_holds_and_carries_the_notes() {
        let gate = Gate::default();
        let n = notes("Keycloak 27.");
        let GateDecision::Hold { kind, reason, notes: carried, .. } =
            gate.decide(Some("10.7.1+26.6.2"), "11.0.0+27.0.0", Some(&n))
        else {
            panic!("held")
        };
        assert_eq!(kind, HoldKind::Major);
        assert_eq!(
            reason,
            "10.7.1+26.6.2 -> 11.0.0+27.0.0 is a major update (recipe major 10 -> 11, app major 26 -> 27)"
        );
        assert_eq!(carried, Some(n));
        let held = gate.decide(Some("10.6.0+25.0.6"), "10.7.0+26.0.1", None);
        assert!(matches!(held, GateDecision::Hold { kind: HoldKind::Major, .. }), "app side alone: {held:?}");
        assert!(!gate.decide(Some("1.1.0"), "4.0.0", None).passes());
    }

    #[test]
    fn a_rebuild_of_the_same_tag_passes_another_tag_or_a_version_holds() {
        let gate = Gate::default();
        let (old, new) = (format!("latest@sha256:{}", "a".repeat(64)), format!("latest@sha256:{}", "b".repeat(64)));
        let GateDecision::Pass { reason } = gate.decide(Some(&old), &new, None) else { panic!("passes") };
        assert_eq!(
            reason,
            "tag latest rebuilt: sha256:aaaaaaaaaaaa -> sha256:bbbbbbbbbbbb: a rebuild has no version, so no major rule applies"
        );
        let other_tag = format!("stable@sha256:{}", "b".repeat(64));
        for (from, to) in [(old.as_str(), other_tag.as_str()), ("1.2.0", new.as_str()), (new.as_str(), "1.2.0")] {
            let held = gate.decide(Some(from), to, None);
            assert!(matches!(held, GateDecision::Hold { kind: HoldKind::Major, .. }), "{from} -> {to}: {held:?}");
        }
        // Notes written for that very digest are still read.
        let held = gate.decide(Some(&old), &new, Some(&notes("Manual migration: run migrate first.")));
        assert!(matches!(held, GateDecision::Hold { kind: HoldKind::ManualMigration, .. }), "{held:?}");
    }

    #[test]
    fn a_marker_that_can_match_nothing_is_refused() {
        for markers in [vec![""], vec![" "], vec!["manual migration", "--"], vec![]] {
            let err = Gate::with_markers(&markers).unwrap_err();
            assert!(matches!(err, ReconcileError::Invalid(_)), "{markers:?}: {err}");
            assert_eq!(err.kind(), lkg_core::FailureKind::Input);
        }
        let gate = Gate::with_markers(["Manual  Migration!"]).unwrap();
        assert_eq!(gate.markers(), ["manual migration"]);
    }

    #[test]
    fn manual_migration_markers_hold_a_minor_update() {
        let gate = Gate::default();
        for text in [
            "## 10.7.2\n\nMANUAL MIGRATION: run the script first.",
            "A manual-migration is needed.",
            "Breaking change: the config key moved.",
            "Database migration\nrequired before start",
        ] {
            let decision = gate.decide(Some("10.7.1+26.6.2"), "10.7.2+26.6.3", Some(&notes(text)));
            let GateDecision::Hold { kind, markers, .. } = &decision else { panic!("{text:?} must hold") };
            assert_eq!(*kind, HoldKind::ManualMigration);
            assert_eq!(markers.len(), 1, "{text:?}: {markers:?}");
        }
    }

    #[test]
    fn negated_markers_and_plain_notes_do_not_hold() {
        let gate = Gate::default();
        for text in [
            "No breaking changes.",
            "This release needs no manual migration.",
            "Upgrades without manual intervention.",
            "Migration is automatic.",
            "",
        ] {
            let decision = gate.decide(Some("1.0.0"), "1.0.1", Some(&notes(text)));
            assert!(decision.passes(), "{text:?}: {decision:?}");
        }
        // A negation only cancels the mention right after it.
        let both = "No breaking changes. Manual migration: see below.";
        assert_eq!(gate.matches(both), ["manual migration"]);
    }

    #[test]
    fn markers_are_configurable() {
        let gate = Gate::new(["Run migrate.sh"]);
        assert_eq!(gate.markers(), ["run migrate sh"]);
        assert!(!gate.decide(Some("1.0.0"), "1.0.1", Some(&notes("please run migrate.sh"))).passes());
        assert!(gate.decide(Some("1.0.0"), "1.0.1", Some(&notes("manual migration"))).passes());
    }

    #[test]
    fn what_cannot_be_compared_holds_and_a_first_install_passes() {
        let gate = Gate::default();
        let held = gate.decide(Some("latest"), "1.0.0", None);
        assert!(
            matches!(&held, GateDecision::Hold { kind: HoldKind::Major, reason, .. } if reason.contains("may be a major"))
        );
        assert!(gate.decide(None, "1.0.0", Some(&notes("manual migration"))).passes());
    }

    #[test]
    fn release_notes_are_read_from_the_recipe_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("1.2.0.md"), "Manual migration.").unwrap();
        let read = ReleaseNotes::read(dir.path(), "1.2.0").unwrap().unwrap();
        assert!(read.source.ends_with("1.2.0.md"));
        assert_eq!(read.text, "Manual migration.");
        assert!(ReleaseNotes::read(dir.path(), "1.3.0").unwrap().is_none());
    }
}
