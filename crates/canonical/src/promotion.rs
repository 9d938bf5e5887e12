//! Which runs may advance a canonical: a pure function over a run's facts.
//!
//! A canonical's data is the known-good state later upgrade tests start
//! from, so only a run that proves a version from scratch may replace it: a
//! canonical advanced by any other run would make the next upgrade test
//! start from a state nothing has proven good:
//!
//! | condition | why |
//! |---|---|
//! | the run is `cold` | a `quick` run reattaches the canonical itself and upgrades it in place: its data is the thing under test, not a fresh known-good |
//! | the run is `full` | a partial run skipped stages (install, upgrade, backup, restore, custom), so the version is not proven |
//! | the run is on the app's `latest` version | a canonical tracks the newest release; a run on a pinned ref (a PR head, an old tag) proves something else |
//! | the run is `green` | a red run proves nothing good |
//!
//! All four must hold. A refusal lists every condition that failed, in the
//! order of the table.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How the run deployed the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum RunKind {
    /// Deployed from scratch at a per-run domain.
    Cold,
    /// Reattached the canonical and upgraded it in place.
    Quick,
}

/// Which stages the run ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Stages {
    /// Every stage.
    Full,
    /// Some stages were skipped.
    Partial,
}

/// Which version the run tested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// The app's latest release.
    Latest,
    /// A pinned ref: a PR head, a branch, an older tag.
    Pinned,
}

/// How the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum RunResult {
    /// Every check passed.
    Green,
    /// Something failed.
    Red,
}

/// The facts about a run that decide whether it may promote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Run {
    /// Cold or quick.
    pub kind: RunKind,
    /// Full or partial.
    pub stages: Stages,
    /// Latest or pinned.
    pub target: Target,
    /// Green or red.
    pub result: RunResult,
}

/// One reason a run may not promote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Refusal {
    /// The run was quick.
    QuickRun,
    /// The run skipped stages.
    PartialStages,
    /// The run tested a pinned ref.
    PinnedRef,
    /// The run was red.
    NotGreen,
}

impl Refusal {
    /// Why this refusal exists, for the operator.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::QuickRun => {
                "a quick run upgrades the canonical itself in place; its data is what was tested, not a fresh \
                 known-good, so quick runs never promote"
            }
            Refusal::PartialStages => "the run skipped stages; only a full run proves the version",
            Refusal::PinnedRef => {
                "the run tested a pinned ref, not the app's latest version; a canonical tracks the latest release"
            }
            Refusal::NotGreen => "the run was red",
        }
    }

    /// The short name used in JSON (`quick-run`, ...).
    pub fn code(self) -> &'static str {
        match self {
            Refusal::QuickRun => "quick-run",
            Refusal::PartialStages => "partial-stages",
            Refusal::PinnedRef => "pinned-ref",
            Refusal::NotGreen => "not-green",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

/// Whether a run may advance its app's canonical.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "verdict", content = "refusals", rename_all = "lowercase")]
pub enum PromotionVerdict {
    /// Cold, full, latest and green: the run may promote.
    Promote,
    /// At least one condition failed; every failed one is listed.
    Refuse(Vec<Refusal>),
}

impl PromotionVerdict {
    /// Whether the run may promote.
    pub fn allows(&self) -> bool {
        matches!(self, PromotionVerdict::Promote)
    }
}

/// The promotion rules (see the module docs for the table and the reasons).
pub fn decide_promotion(run: &Run) -> PromotionVerdict {
    let refusals: Vec<Refusal> = [
        (run.kind == RunKind::Quick, Refusal::QuickRun),
        (run.stages == Stages::Partial, Refusal::PartialStages),
        (run.target == Target::Pinned, Refusal::PinnedRef),
        (run.result == RunResult::Red, Refusal::NotGreen),
    ]
    .into_iter()
    .filter_map(|(failed, refusal)| failed.then_some(refusal))
    .collect();
    if refusals.is_empty() { PromotionVerdict::Promote } else { PromotionVerdict::Refuse(refusals) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every combination of the four facts, with its expected verdict.
    #[test]
    fn the_full_rules_table() {
        use Refusal::*;
        use RunKind::*;
        use RunResult::*;
        use Stages::*;
        use Target::*;
        #[rustfmt::skip]
        let table: [(RunKind, Stages, Target, RunResult, &[Refusal]); 16] = [
            (Cold,  Full,    Latest, Green, &[]),
            (Cold,  Full,    Latest, Red,   &[NotGreen]),
            (Cold,  Full,    Pinned, Green, &[PinnedRef]),
            (Cold,  Full,    Pinned, Red,   &[PinnedRef, NotGreen]),
            (Cold,  Partial, Latest, Green, &[PartialStages]),
            (Cold,  Partial, Latest, Red,   &[PartialStages, NotGreen]),
            (Cold,  Partial, Pinned, Green, &[PartialStages, PinnedRef]),
            (Cold,  Partial, Pinned, Red,   &[PartialStages, PinnedRef, NotGreen]),
            (Quick, Full,    Latest, Green, &[QuickRun]),
            (Quick, Full,    Latest, Red,   &[QuickRun, NotGreen]),
            (Quick, Full,    Pinned, Green, &[QuickRun, PinnedRef]),
            (Quick, Full,    Pinned, Red,   &[QuickRun, PinnedRef, NotGreen]),
            (Quick, Partial, Latest, Green, &[QuickRun, PartialStages]),
            (Quick, Partial, Latest, Red,   &[QuickRun, PartialStages, NotGreen]),
            (Quick, Partial, Pinned, Green, &[QuickRun, PartialStages, PinnedRef]),
            (Quick, Partial, Pinned, Red,   &[QuickRun, PartialStages, PinnedRef, NotGreen]),
        ];
        for (kind, stages, target, result, refusals) in table {
            let run = Run { kind, stages, target, result };
            let expected = if refusals.is_empty() {
                PromotionVerdict::Promote
            } else {
                PromotionVerdict::Refuse(refusals.to_vec())
            };
            assert_eq!(decide_promotion(&run), expected, "{run:?}");
        }
    }

    #[test]
    fn a_quick_run_never_promotes_whatever_else_holds() {
        let run = Run { kind: RunKind::Quick, stages: Stages::Full, target: Target::Latest, result: RunResult::Green };
        let verdict = decide_promotion(&run);
        assert!(!verdict.allows());
        assert_eq!(
            serde_json::to_value(&verdict).unwrap(),
            serde_json::json!({"verdict": "refuse", "refusals": ["quick-run"]})
        );
    }
}
