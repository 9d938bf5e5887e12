//! The human form of a plan, as `lkg-upgrade-base` prints it.

use std::fmt::{self, Write as _};

use crate::overlay::{OverlayDecision, OverlayUse};
use crate::plan::{BaseKind, BasePlan, Outcome};

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

impl fmt::Display for BasePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.kind, &self.value, &self.commit) {
            (BaseKind::Skip, _, _) | (_, None, _) | (_, _, None) => writeln!(f, "base: skip")?,
            (kind, Some(value), Some(commit)) => {
                let kind = if kind == BaseKind::Version { "version" } else { "ref" };
                writeln!(f, "base: {kind} {value} ({})", short(commit))?;
            }
        }
        writeln!(f, "  {}", self.reason)?;
        let version = match (&self.head.version, self.head.version_from) {
            (Some(v), Some(from)) => format!(", version {v} ({from})"),
            _ => ", version unknown".to_owned(),
        };
        writeln!(f, "head: {} ({}){version}", self.head.rev, short(&self.head.commit))?;
        writeln!(f, "steps:")?;
        for step in &self.steps {
            let outcome = match step.outcome {
                Outcome::Taken => "taken",
                Outcome::Passed => "passed",
            };
            writeln!(f, "  {:<13}  {outcome:<6}  {}", step.source.as_str(), step.reason)?;
        }
        if !self.warnings.is_empty() {
            writeln!(f, "warnings:")?;
            for warning in &self.warnings {
                writeln!(f, "  - {warning}")?;
            }
        }
        Ok(())
    }
}

/// The overlay decisions, one line each (after a `overlays:` heading).
pub fn overlays_report(decisions: &[OverlayDecision]) -> String {
    let mut text = String::from("overlays:\n");
    if decisions.is_empty() {
        text.push_str("  (none)\n");
    }
    for d in decisions {
        let outcome = match d.outcome {
            OverlayUse::Apply => "apply",
            OverlayUse::Stale => "stale",
            OverlayUse::Invalid => "invalid",
        };
        let name =
            d.path.file_name().map_or_else(|| d.path.display().to_string(), |n| n.to_string_lossy().into_owned());
        let _ = writeln!(text, "  {outcome:<7}  {name}  ({}): {}", d.files.join(", "), d.reason);
    }
    text
}
