//! The base decision: a pure function over facts read from the repository.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use lkg_canonical::RecipeVersion;

/// Where a base can come from, in the order steps are tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// `--override`: an operator's explicit choice. Always first.
    Override,
    /// The canonical's version, the last version a full cold run proved.
    LastGreen,
    /// The tip of the branch a change merges onto (`main`, else `master`).
    TargetBranch,
    /// The newest release tag older than head.
    OlderTag,
}

impl Source {
    /// The name used in `--order` and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Override => "override",
            Source::LastGreen => "last-green",
            Source::TargetBranch => "target-branch",
            Source::OlderTag => "older-tag",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The middle steps, between the override and skip, in the order they are
/// tried. The default is the swarm CI harness's settled order:
/// last-green, target-branch, older-tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Order(Vec<Source>);

/// Why an `--order` is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OrderError {
    /// A name that is not a middle step.
    #[error("--order: {name:?} is not a step; use a comma-separated list of last-green, target-branch, older-tag")]
    Unknown {
        /// The name given.
        name: String,
    },
    /// A step named twice.
    #[error("--order: {name} is listed twice")]
    Repeated {
        /// The step.
        name: String,
    },
    /// No steps at all.
    #[error(
        "--order is empty; list at least one of last-green, target-branch, older-tag (the override and skip always apply)"
    )]
    Empty,
}

impl Order {
    /// The steps, in order.
    pub fn steps(&self) -> &[Source] {
        &self.0
    }
}

impl Default for Order {
    fn default() -> Order {
        Order(vec![Source::LastGreen, Source::TargetBranch, Source::OlderTag])
    }
}

impl FromStr for Order {
    type Err = OrderError;

    /// `last-green,older-tag`: a subset of the middle steps, reordered as
    /// wished; the ones left out are not tried.
    fn from_str(text: &str) -> Result<Order, OrderError> {
        let mut steps = Vec::new();
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let step = match name {
                "last-green" => Source::LastGreen,
                "target-branch" => Source::TargetBranch,
                "older-tag" => Source::OlderTag,
                _ => return Err(OrderError::Unknown { name: name.to_owned() }),
            };
            if steps.contains(&step) {
                return Err(OrderError::Repeated { name: name.to_owned() });
            }
            steps.push(step);
        }
        if steps.is_empty() { Err(OrderError::Empty) } else { Ok(Order(steps)) }
    }
}

/// What kind of base the plan chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BaseKind {
    /// A released version (a tag): deploy that version.
    Version,
    /// A git ref that is not a release (a branch tip): deploy that commit.
    Ref,
    /// Nothing to upgrade from: skip the upgrade test.
    Skip,
}

/// Whether a step gave the base.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// This step gave the base.
    Taken,
    /// This step had no usable base; the reason says why.
    Passed,
}

/// One step of the resolution and why it was taken or passed over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// The source tried.
    pub source: Source,
    /// Taken or passed.
    pub outcome: Outcome,
    /// Why.
    pub reason: String,
}

/// The head under test, as the plan saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeadInfo {
    /// The revision asked for (`--head`).
    pub rev: String,
    /// Its commit.
    pub commit: String,
    /// Its version, if known.
    pub version: Option<String>,
    /// Where the version came from: `tag` (a version tag at head) or `--head-version`.
    pub version_from: Option<&'static str>,
}

/// The version to test an upgrade from, and how it was chosen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BasePlan {
    /// Version, ref or skip.
    pub kind: BaseKind,
    /// The version (tag name) or ref name; none for skip.
    pub value: Option<String>,
    /// The base's commit; none for skip.
    pub commit: Option<String>,
    /// Why this base (the taken step's reason, or why nothing was).
    pub reason: String,
    /// The head under test.
    pub head: HeadInfo,
    /// Every step tried, in order.
    pub steps: Vec<Step>,
    /// Tags skipped as not versions, missing history, and similar.
    pub warnings: Vec<String>,
}

/// A version tag and the commit it points to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    /// The tag's name, which is its version.
    pub version: RecipeVersion,
    /// The commit it points to (peeled through annotated tags).
    pub commit: String,
}

/// The target branch as found in the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BranchTip {
    /// The ref found, as a short name: `origin/main`, `main`, `origin/master`.
    pub name: String,
    /// Its commit.
    pub commit: String,
    /// The branch asked for, when it was not found and this is the fallback
    /// (`main` when `master` was used).
    pub fallback_from: Option<String>,
}

/// What the plan needs to know about the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// The head revision asked for.
    pub head_rev: String,
    /// The head's commit.
    pub head_commit: String,
    /// Every version tag with a commit in the repository.
    pub tags: Vec<Tag>,
    /// The branch names tried for the target branch, in order.
    pub branches_tried: Vec<String>,
    /// The first of them found, if any.
    pub branch: Option<BranchTip>,
    /// The repository is a shallow clone.
    pub shallow: bool,
    /// Tags skipped and other things the reader should know.
    pub warnings: Vec<String>,
}

/// Whether one commit is in another's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ancestry {
    /// Yes.
    Yes,
    /// No.
    No,
    /// Cannot tell: the history stops (a shallow clone, grafts) before the
    /// answer; the text says why.
    Unknown(String),
}

/// The commit graph could not be read: an object that history should hold
/// is missing or unreadable. The repository is damaged, not shallow (a
/// shallow clone's cut is [`Ancestry::Unknown`]), and no plan from it can be
/// trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct Unreadable {
    /// The missing or unreadable object, when the error names it.
    pub object: Option<String>,
    /// What could not be read, and why.
    pub detail: String,
}

/// Queries on the commit graph that the plan needs.
pub trait Graph {
    /// Whether `ancestor` is in the history of `descendant` (a commit is not
    /// its own ancestor). `Err` when history that should answer it cannot be read.
    fn is_ancestor(&self, ancestor: &str, descendant: &str) -> Result<Ancestry, Unreadable>;

    /// The full id of commit `id` (full or abbreviated), if the repository has it.
    fn find_commit(&self, id: &str) -> Option<String>;
}

/// The last-green version: the canonical's, or given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastGreen {
    /// The version.
    pub version: String,
    /// The commit the canonical recorded, used when the version has no tag.
    pub commit: Option<String>,
    /// Where it came from, for the step's reason (`--last-green`, `the canonical of gitea`).
    pub from: String,
}

/// An override, resolved against the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    /// A version tag or a ref.
    pub kind: BaseKind,
    /// The tag or ref name.
    pub value: String,
    /// Its commit.
    pub commit: String,
}

/// What the caller asks.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// An explicit base.
    pub override_base: Option<Override>,
    /// The last-green version.
    pub last_green: Option<LastGreen>,
    /// The head's version when no tag at head says it.
    pub head_version: Option<RecipeVersion>,
    /// The middle steps.
    pub order: Order,
}

/// Decides the base. Pure: everything it knows is in `facts`, `graph` and `request`.
///
/// Order: override → the middle steps of `request.order` (default
/// last-green → target-branch → older-tag) → skip. Apart from an explicit
/// override, a candidate whose commit *is* head's is always passed over:
/// upgrading from it is a no-op.
///
/// A commit graph that cannot be read is an error, never a step passed over:
/// a damaged repository would otherwise plan from another base, or skip the
/// upgrade test, and look like a success.
pub fn plan(facts: &Facts, graph: &impl Graph, request: &Request) -> Result<BasePlan, Unreadable> {
    let (head_version, version_from) = head_version(facts, request);
    let head = HeadInfo {
        rev: facts.head_rev.clone(),
        commit: facts.head_commit.clone(),
        version: head_version.as_ref().map(ToString::to_string),
        version_from,
    };
    let mut warnings = facts.warnings.clone();
    if let (Some(given), Some(tagged)) = (&request.head_version, highest_tag_at(facts, &facts.head_commit))
        && given != &tagged.version
    {
        warnings.push(format!(
            "--head-version {given} differs from the version tag at head, {}; using {given}",
            tagged.version
        ));
    }
    let ctx = Context { facts, graph, head_version: head_version.as_ref() };
    let mut steps = Vec::new();

    // The override always comes first; each step runs only if all before it passed.
    for source in std::iter::once(Source::Override).chain(request.order.steps().iter().copied()) {
        let attempt = match source {
            Source::Override => {
                request.override_base.as_ref().map(overridden).ok_or_else(|| Pass::from("no override given"))
            }
            Source::LastGreen => ctx.last_green(request.last_green.as_ref()),
            Source::TargetBranch => ctx.target_branch(),
            Source::OlderTag => ctx.older_tag(),
        };
        match attempt {
            Ok(base) => {
                steps.push(Step { source, outcome: Outcome::Taken, reason: base.reason.clone() });
                return Ok(BasePlan {
                    kind: base.kind,
                    value: Some(base.value),
                    commit: Some(base.commit),
                    reason: base.reason,
                    head,
                    steps,
                    warnings,
                });
            }
            Err(Pass::Over(reason)) => steps.push(Step { source, outcome: Outcome::Passed, reason }),
            Err(Pass::Unreadable(e)) => return Err(e),
        }
    }
    let tried: Vec<&str> = steps.iter().map(|s| s.source.as_str()).collect();
    Ok(BasePlan {
        kind: BaseKind::Skip,
        value: None,
        commit: None,
        reason: format!("nothing to upgrade from: every step ({}) was passed over", tried.join(", ")),
        head,
        steps,
        warnings,
    })
}

/// Why a step gave no base: passed over for a reason, or stopped by an
/// unreadable graph (which ends the plan).
enum Pass {
    Over(String),
    Unreadable(Unreadable),
}

impl From<String> for Pass {
    fn from(reason: String) -> Pass {
        Pass::Over(reason)
    }
}

impl From<&str> for Pass {
    fn from(reason: &str) -> Pass {
        Pass::Over(reason.to_owned())
    }
}

impl From<Unreadable> for Pass {
    fn from(e: Unreadable) -> Pass {
        Pass::Unreadable(e)
    }
}

struct Base {
    kind: BaseKind,
    value: String,
    commit: String,
    reason: String,
}

struct Context<'a, G> {
    facts: &'a Facts,
    graph: &'a G,
    head_version: Option<&'a RecipeVersion>,
}

fn highest_tag_at<'a>(facts: &'a Facts, commit: &str) -> Option<&'a Tag> {
    facts.tags.iter().filter(|t| t.commit == commit).max_by(|a, b| a.version.cmp(&b.version))
}

fn head_version(facts: &Facts, request: &Request) -> (Option<RecipeVersion>, Option<&'static str>) {
    if let Some(v) = &request.head_version {
        return (Some(v.clone()), Some("--head-version"));
    }
    match highest_tag_at(facts, &facts.head_commit) {
        Some(tag) => (Some(tag.version.clone()), Some("tag")),
        None => (None, None),
    }
}

fn overridden(o: &Override) -> Base {
    Base {
        kind: o.kind,
        value: o.value.clone(),
        commit: o.commit.clone(),
        reason: format!("explicit override {} ({})", o.value, short(&o.commit)),
    }
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

impl<G: Graph> Context<'_, G> {
    fn is_head(&self, commit: &str) -> bool {
        commit == self.facts.head_commit
    }

    fn last_green(&self, last_green: Option<&LastGreen>) -> Result<Base, Pass> {
        let lg = last_green.ok_or("no last-green version (neither --last-green nor a canonical record)")?;
        let version = RecipeVersion::parse(&lg.version)
            .map_err(|e| format!("last-green {} from {} is not usable: {e}", lg.version, lg.from))?;
        if let Some(head) = self.head_version {
            if &version == head {
                return Err(Pass::Over(format!(
                    "last-green {version} (from {}) is the head's own version; upgrading from it would be a no-op",
                    lg.from
                )));
            }
            if &version > head {
                return Err(Pass::Over(format!(
                    "last-green {version} (from {}) is newer than the head's version {head}; that would be a downgrade",
                    lg.from
                )));
            }
        }
        let (commit, how) = if let Some(tag) = self.facts.tags.iter().find(|t| t.version == version) {
            (tag.commit.clone(), "its tag")
        } else if let Some(commit) = &lg.commit {
            // The canonical recorded a commit; trust it only if the repository has it.
            let full = self.graph.find_commit(commit).ok_or_else(|| {
                format!(
                    "last-green {version} (from {}) has no tag here and its commit {} is not in this repository; \
                     fetch the tags",
                    lg.from,
                    short(commit)
                )
            })?;
            (full, "the commit the canonical recorded (no tag in this repository)")
        } else {
            return Err(Pass::Over(format!(
                "last-green {version} (from {}) has no tag in this repository; fetch the tags",
                lg.from
            )));
        };
        if self.is_head(&commit) {
            return Err(Pass::Over(format!(
                "last-green {version} is at head's own commit; upgrading from it would be a no-op"
            )));
        }
        // Without a head version, history tells a downgrade: head behind last-green.
        if self.head_version.is_none() && self.graph.is_ancestor(&self.facts.head_commit, &commit)? == Ancestry::Yes {
            return Err(Pass::Over(format!(
                "last-green {version} (from {}) already contains head ({} is behind it); that would be a downgrade",
                lg.from,
                short(&self.facts.head_commit)
            )));
        }
        Ok(Base {
            kind: BaseKind::Version,
            value: version.to_string(),
            reason: format!("last-green {version} from {}, at {} via {how}", lg.from, short(&commit)),
            commit,
        })
    }

    fn target_branch(&self) -> Result<Base, Pass> {
        let tried = self.facts.branches_tried.join(", ");
        let tip = self.facts.branch.as_ref().ok_or_else(|| format!("no target branch found (tried {tried})"))?;
        let name = &tip.name;
        if self.is_head(&tip.commit) {
            return Err(Pass::Over(format!(
                "head is the tip of {name} itself; upgrading from it would be a no-op (the older-tag step covers this)"
            )));
        }
        match self.graph.is_ancestor(&self.facts.head_commit, &tip.commit)? {
            Ancestry::Yes => {
                return Err(Pass::Over(format!(
                    "head is behind the tip of {name} ({} already contains it); upgrading from the tip to head would \
                     be a downgrade",
                    short(&tip.commit)
                )));
            }
            Ancestry::No => {}
            Ancestry::Unknown(why) => {
                return Err(Pass::Over(format!("cannot tell whether head is behind the tip of {name}: {why}")));
            }
        }
        if let (Some(head), Some(tip_tag)) = (self.head_version, highest_tag_at(self.facts, &tip.commit))
            && &tip_tag.version >= head
        {
            return Err(Pass::Over(format!(
                "the tip of {name} is version {}, not older than the head's {head}",
                tip_tag.version
            )));
        }
        Ok(Base {
            kind: BaseKind::Ref,
            value: name.clone(),
            commit: tip.commit.clone(),
            reason: match &tip.fallback_from {
                None => format!("the tip of {name} ({}), the predecessor head merges onto", short(&tip.commit)),
                Some(wanted) => format!(
                    "the tip of {name} ({}), the predecessor head merges onto (there is no {wanted} branch)",
                    short(&tip.commit)
                ),
            },
        })
    }

    fn older_tag(&self) -> Result<Base, Pass> {
        let shallow_note = if self.facts.shallow { "; the clone is shallow, so older tags may be missing" } else { "" };
        let mut candidates: Vec<&Tag> = self.facts.tags.iter().filter(|t| !self.is_head(&t.commit)).collect();
        candidates.sort_by(|a, b| b.version.cmp(&a.version));
        let (tag, why) = if let Some(head) = self.head_version {
            let tag = candidates
                .into_iter()
                .find(|t| &t.version < head)
                .ok_or_else(|| format!("no release tag is older than the head's version {head}{shallow_note}"))?;
            (tag, format!("the newest release tag older than the head's version {head}"))
        } else {
            // Without a head version, "older" means "in head's history".
            let mut unknown = None;
            let mut found = None;
            for candidate in candidates {
                match self.graph.is_ancestor(&candidate.commit, &self.facts.head_commit)? {
                    Ancestry::Yes => {
                        found = Some(candidate);
                        break;
                    }
                    Ancestry::No => {}
                    Ancestry::Unknown(why) => {
                        unknown.get_or_insert(why);
                    }
                }
            }
            let tag = found.ok_or_else(|| match unknown {
                Some(why) => format!("no release tag found in head's history ({why}){shallow_note}"),
                None => format!("no release tag in head's history, and head has no version to compare{shallow_note}"),
            })?;
            (tag, "the newest release tag in head's history (head has no version tag)".to_owned())
        };
        Ok(Base {
            kind: BaseKind::Version,
            value: tag.version.to_string(),
            commit: tag.commit.clone(),
            reason: format!("{}: {why}, at {}", tag.version, short(&tag.commit)),
        })
    }
}

impl lkg_core::Classify for OrderError {
    fn kind(&self) -> lkg_core::FailureKind {
        lkg_core::FailureKind::Input
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-written commit graph: `ancestors[c]` lists every ancestor of `c`;
    /// commits in `cut` have history beyond the shallow cut.
    struct FakeGraph {
        ancestors: Vec<(&'static str, Vec<&'static str>)>,
        cut: Vec<&'static str>,
    }

    impl Graph for FakeGraph {
        fn is_ancestor(&self, ancestor: &str, descendant: &str) -> Result<Ancestry, Unreadable> {
            let Some((_, list)) = self.ancestors.iter().find(|(c, _)| *c == descendant) else {
                return Err(Unreadable {
                    object: Some(descendant.to_owned()),
                    detail: format!("{descendant} is missing"),
                });
            };
            Ok(if list.contains(&ancestor) {
                Ancestry::Yes
            } else if list.iter().chain([&descendant]).any(|c| self.cut.contains(c)) {
                Ancestry::Unknown("the clone is shallow".to_owned())
            } else {
                Ancestry::No
            })
        }

        fn find_commit(&self, id: &str) -> Option<String> {
            self.ancestors.iter().find(|(c, _)| c.starts_with(id)).map(|(c, _)| (*c).to_owned())
        }
    }

    fn tag(version: &str, commit: &str) -> Tag {
        Tag { version: version.parse().unwrap(), commit: commit.to_owned() }
    }

    /// `a <- b <- tip` on main, head on `b`, and `later` on head.
    fn facts(tags: Vec<Tag>) -> (Facts, FakeGraph) {
        let facts = Facts {
            head_rev: "pr".into(),
            head_commit: "head".into(),
            tags,
            branches_tried: vec!["origin/main".into()],
            branch: Some(BranchTip { name: "origin/main".into(), commit: "tip".into(), fallback_from: None }),
            shallow: false,
            warnings: vec![],
        };
        let graph = FakeGraph {
            ancestors: vec![
                ("a", vec![]),
                ("b", vec!["a"]),
                ("tip", vec!["b", "a"]),
                ("head", vec!["b", "a"]),
                ("later", vec!["head", "b", "a"]),
            ],
            cut: vec![],
        };
        (facts, graph)
    }

    #[test]
    fn a_tip_tagged_not_older_than_head_is_passed_over() {
        let (facts, graph) = facts(vec![tag("1.0.0+1", "a"), tag("2.0.0+1", "tip")]);
        let request = Request { head_version: Some("1.5.0+1".parse().unwrap()), ..Request::default() };
        let plan = plan(&facts, &graph, &request).unwrap();
        assert_eq!(
            plan.steps[2].reason,
            "the tip of origin/main is version 2.0.0+1, not older than the head's 1.5.0+1"
        );
        assert_eq!((plan.kind, plan.value.as_deref()), (BaseKind::Version, Some("1.0.0+1")));
        assert_eq!(plan.head.version_from, Some("--head-version"));
    }

    #[test]
    fn an_unreadable_graph_ends_the_plan_instead_of_passing_a_step() {
        let (mut facts, graph) = facts(vec![tag("1.0.0+1", "a")]);
        // The tip's history cannot be read: the target-branch step may not
        // pass over it (and the older-tag step never runs).
        facts.branch = Some(BranchTip { name: "origin/main".into(), commit: "gone".into(), fallback_from: None });
        let err = plan(&facts, &graph, &Request::default()).unwrap_err();
        assert_eq!(err.object.as_deref(), Some("gone"));
    }

    #[test]
    fn ancestry_hidden_by_a_shallow_cut_is_not_guessed() {
        let (mut facts, mut graph) = facts(vec![]);
        facts.shallow = true;
        graph.cut = vec!["a"];
        let plan = plan(&facts, &graph, &Request::default()).unwrap();
        assert_eq!(plan.kind, BaseKind::Skip);
        assert_eq!(
            plan.steps[2].reason,
            "cannot tell whether head is behind the tip of origin/main: the clone is shallow"
        );
        assert!(plan.steps[3].reason.contains("the clone is shallow"), "{}", plan.steps[3].reason);
    }

    #[test]
    fn last_green_without_a_tag_uses_the_canonicals_commit_if_present() {
        let (facts, graph) = facts(vec![]);
        let lg = |commit: &str| LastGreen {
            version: "1.0.0+1".into(),
            commit: Some(commit.into()),
            from: "the canonical of gitea".into(),
        };
        let request = Request { last_green: Some(lg("b")), ..Request::default() };
        let plan = plan(&facts, &graph, &request).unwrap();
        assert_eq!((plan.kind, plan.commit.as_deref()), (BaseKind::Version, Some("b")));

        // The canonical's commit descends from head: a downgrade, passed over.
        let request = Request { last_green: Some(lg("later")), ..Request::default() };
        let behind = super::plan(&facts, &graph, &request).unwrap();
        assert!(behind.steps[1].reason.ends_with("that would be a downgrade"), "{}", behind.steps[1].reason);
        assert!(plan.reason.contains("the commit the canonical recorded"), "{}", plan.reason);

        let request = Request { last_green: Some(lg("zzz")), ..Request::default() };
        let plan = super::plan(&facts, &graph, &request).unwrap();
        assert!(plan.steps[1].reason.contains("is not in this repository; fetch the tags"), "{}", plan.steps[1].reason);
        // The branch tip is the next step.
        assert_eq!(plan.value.as_deref(), Some("origin/main"));
    }

    #[test]
    fn a_malformed_last_green_and_a_conflicting_head_version_are_reported() {
        let (facts, graph) = facts(vec![tag("1.1.0+1", "head")]);
        let request = Request {
            last_green: Some(LastGreen { version: "latest".into(), commit: None, from: "--last-green".into() }),
            head_version: Some("1.2.0+1".parse().unwrap()),
            ..Request::default()
        };
        let plan = plan(&facts, &graph, &request).unwrap();
        assert!(plan.steps[1].reason.starts_with("last-green latest from --last-green is not usable"));
        assert_eq!(
            plan.warnings,
            ["--head-version 1.2.0+1 differs from the version tag at head, 1.1.0+1; using 1.2.0+1"]
        );
    }

    #[test]
    fn order_parses_subsets_and_rejects_mistakes() {
        assert_eq!("older-tag, last-green".parse::<Order>().unwrap().steps(), [Source::OlderTag, Source::LastGreen]);
        assert!(matches!("last-green,last-green".parse::<Order>(), Err(OrderError::Repeated { .. })));
        assert!(matches!("override".parse::<Order>(), Err(OrderError::Unknown { .. })));
        assert!(matches!("".parse::<Order>(), Err(OrderError::Empty)));
        assert_eq!(Order::default().steps(), [Source::LastGreen, Source::TargetBranch, Source::OlderTag]);
    }
}
