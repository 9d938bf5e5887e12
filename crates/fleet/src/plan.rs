//! What a round does for each app, as pure functions of what it knows: the
//! version running, the versions available, the app's policy and record,
//! and the time. [`decide`] never touches anything; a round acts on its
//! [`Decision`].

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use lkg_reconcile::{AppName, DigestVersion, OrderedVersion, UpdateLevel};
use serde::Serialize;

use crate::file::{Allow, FleetApp, Policy, Source};

/// A version an app's source offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Candidate {
    /// The version, as `lkg-reconcile update --target` takes it.
    pub version: String,
    /// When it was published (tag or commit time, image `created`), if known.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "crate::state::opt_ts::serialize")]
    pub published: Option<Timestamp>,
}

/// What a round knows about one app before it decides.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Its last-good version (what runs when nothing is in flight).
    pub current: Option<String>,
    /// Versions its source offers.
    pub available: Vec<Candidate>,
    /// Versions that rolled back and are not retried.
    pub rolled_back: BTreeSet<String>,
    /// Versions the safety gate held, with why.
    pub held: BTreeMap<String, String>,
}

/// What a round does for an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Decision {
    /// Nothing newer than what runs.
    UpToDate,
    /// Nothing runs yet: install `target`.
    Install {
        /// The version.
        target: String,
    },
    /// Update to `target`, through the safety and health gates.
    Update {
        /// The version.
        target: String,
        /// How far it goes: `patch`, `minor` or `major`; `digest` for a
        /// floating tag that moved.
        level: &'static str,
    },
    /// A newer version waits: its cooldown, or the maintenance window.
    Wait {
        /// The version waited for.
        target: String,
        /// Why, and until when if known.
        reason: String,
    },
    /// A newer version is held: by the safety gate in an earlier round, or
    /// because the policy does not allow an update that large.
    Held {
        /// The version held.
        target: String,
        /// Why.
        reason: String,
    },
    /// The newest version rolled back before and is not retried.
    SkipRolledBack {
        /// The version.
        target: String,
    },
}

impl Decision {
    /// The version this decision is about, if any.
    pub fn target(&self) -> Option<&str> {
        match self {
            Decision::UpToDate => None,
            Decision::Install { target }
            | Decision::Update { target, .. }
            | Decision::Wait { target, .. }
            | Decision::Held { target, .. }
            | Decision::SkipRolledBack { target } => Some(target),
        }
    }

    /// Whether the round runs lkg-reconcile for it.
    pub fn acts(&self) -> bool {
        matches!(self, Decision::Install { .. } | Decision::Update { .. })
    }
}

/// The newest version of `available` in the form of `like` (or of the
/// newest parseable one); versions that do not parse are left out.
pub fn newest<'a>(available: &'a [Candidate], like: Option<&str>) -> Option<&'a Candidate> {
    // A floating source offers one version, pinned by digest: the newest there is.
    if let [only] = available
        && DigestVersion::parse(&only.version).is_some()
    {
        return Some(only);
    }
    let like = like.and_then(OrderedVersion::parse);
    available
        .iter()
        .filter_map(|c| OrderedVersion::parse(&c.version).map(|v| (c, v)))
        .filter(|(_, v)| like.as_ref().is_none_or(|l| l.same_form(v)))
        .max_by(|(_, a), (_, b)| a.compare(b).unwrap_or(Ordering::Equal))
        .map(|(c, _)| c)
}

/// Decides what a round does for `app` at `now`.
pub fn decide(app: &FleetApp, facts: &Facts, now: Timestamp) -> Decision {
    if let Source::Registry { floating: Some(tag), .. } = &app.source {
        return decide_floating(app, tag, facts, now);
    }
    let policy = &app.policy;
    let current = facts.current.as_deref().and_then(OrderedVersion::parse);
    // Newer than what runs, and of its form; every version when nothing runs.
    let mut newer: Vec<(&Candidate, OrderedVersion, UpdateLevel)> = facts
        .available
        .iter()
        .filter_map(|c| OrderedVersion::parse(&c.version).map(|v| (c, v)))
        .filter_map(|(c, v)| match &current {
            None if facts.current.is_none() => Some((c, v, UpdateLevel::Patch)),
            Some(cur) if cur.compare(&v) == Some(Ordering::Less) => {
                let level = cur.level_to(&v);
                Some((c, v, level))
            }
            _ => None,
        })
        .collect();
    if facts.current.is_none() {
        // A first install: the newest version of the most common form.
        let Some(first) = newest(&facts.available, None) else { return Decision::UpToDate };
        let first = OrderedVersion::parse(&first.version);
        newer.retain(|(_, v, _)| first.as_ref().is_some_and(|f| f.same_form(v)));
    }
    newer.sort_by(|a, b| b.1.compare(&a.1).unwrap_or(Ordering::Equal));
    let Some(newest) = newer.first() else { return Decision::UpToDate };

    let allowed_level = match policy.allow {
        Allow::Patch => UpdateLevel::Patch,
        Allow::Minor => UpdateLevel::Minor,
    };
    // A major (or anything the policy allows) goes to lkg-reconcile, whose
    // safety gate holds a major with an alert; the fleet never decides a
    // major is safe, and never sends it twice.
    let eligible: Vec<&(&Candidate, OrderedVersion, UpdateLevel)> = newer
        .iter()
        .filter(|(c, _, level)| {
            (*level <= allowed_level || *level == UpdateLevel::Major)
                && !facts.held.contains_key(&c.version)
                && !(policy.skip_rolled_back && facts.rolled_back.contains(&c.version))
        })
        .collect();
    // Prefer what the policy allows over a major; of those, the newest past its cooldown.
    let allowed: Vec<_> = eligible.iter().filter(|(_, _, level)| *level != UpdateLevel::Major).copied().collect();
    let pool = if allowed.is_empty() { eligible } else { allowed };
    if pool.is_empty() {
        // Nothing eligible: say why, about the newest version.
        let (c, _, level) = newest;
        if let Some(reason) = facts.held.get(&c.version) {
            return Decision::Held { target: c.version.clone(), reason: reason.clone() };
        }
        if policy.skip_rolled_back && facts.rolled_back.contains(&c.version) {
            return Decision::SkipRolledBack { target: c.version.clone() };
        }
        return Decision::Held {
            target: c.version.clone(),
            reason: format!("a {} update; the policy allows {} updates", level.as_str(), policy.allow.as_str()),
        };
    }
    let pool: Vec<(&Candidate, &'static str)> = pool.iter().map(|(c, _, level)| (*c, level.as_str())).collect();
    ready(policy, facts.current.is_none(), &pool, now)
}

/// A floating source: its one candidate is the digest its tag points to
/// now. A new digest is an update (level `digest`) whatever `allow` says:
/// naming the tag in `floating:` opted into its rebuilds, and a digest has
/// no version for `allow` or the gate's major rule to read. Cooldown
/// (the image's `created`), windows, `skip_rolled_back` and the gate's
/// memory apply as to any version. An app that runs something else (a
/// version, another tag) is not moved onto the tag by itself.
fn decide_floating(app: &FleetApp, tag: &str, facts: &Facts, now: Timestamp) -> Decision {
    let Some(candidate) = facts.available.first() else { return Decision::UpToDate };
    let target = || candidate.version.clone();
    if let Some(current) = facts.current.as_deref() {
        if current == candidate.version {
            return Decision::UpToDate;
        }
        if DigestVersion::parse(current).is_none_or(|c| c.tag() != tag) {
            return Decision::Held {
                target: target(),
                reason: format!(
                    "it runs {current}, not a digest of tag {tag}: move it onto the tag by hand \
                     (lkg-reconcile update --target {})",
                    candidate.version
                ),
            };
        }
    }
    if let Some(reason) = facts.held.get(&candidate.version) {
        return Decision::Held { target: target(), reason: reason.clone() };
    }
    if app.policy.skip_rolled_back && facts.rolled_back.contains(&candidate.version) {
        return Decision::SkipRolledBack { target: target() };
    }
    ready(&app.policy, facts.current.is_none(), &[(candidate, "digest")], now)
}

/// What happens to `pool` (eligible candidates, newest first): the newest
/// past its cooldown runs, inside a maintenance window.
fn ready(policy: &Policy, install: bool, pool: &[(&Candidate, &'static str)], now: Timestamp) -> Decision {
    let Some((newest_eligible, _)) = pool.first() else { return Decision::UpToDate };
    let cooldown_ok = |c: &Candidate| match c.published {
        _ if policy.cooldown.is_zero() => true,
        Some(published) => published.as_second().saturating_add(secs(policy.cooldown)) <= now.as_second(),
        None => false,
    };
    let Some((candidate, level)) = pool.iter().find(|(c, _)| cooldown_ok(c)).copied() else {
        let reason = match newest_eligible.published {
            Some(published) => {
                let ready_at = published.as_second().saturating_add(secs(policy.cooldown));
                format!(
                    "published {}; cooldown {}: ready at {}",
                    ts(published.as_second()),
                    human(secs(policy.cooldown)),
                    ts(ready_at)
                )
            }
            None => format!(
                "its publication time is unknown, so its cooldown of {} cannot pass",
                human(secs(policy.cooldown))
            ),
        };
        return Decision::Wait { target: newest_eligible.version.clone(), reason };
    };
    if !policy.windows.is_empty() && !policy.windows.iter().any(|w| w.contains(now)) {
        let windows: Vec<String> = policy.windows.iter().map(ToString::to_string).collect();
        return Decision::Wait {
            target: candidate.version.clone(),
            reason: format!("outside the maintenance window ({})", windows.join("; ")),
        };
    }
    if install {
        Decision::Install { target: candidate.version.clone() }
    } else {
        Decision::Update { target: candidate.version.clone(), level }
    }
}

fn secs(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

fn ts(seconds: i64) -> String {
    Timestamp::from_second(seconds).map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()).unwrap_or_default()
}

/// `90 s`, `15 min`, `36 h`, `2 d`.
pub(crate) fn human(seconds: i64) -> String {
    match seconds {
        s if s % 86_400 == 0 && s > 0 => format!("{} d", s / 86_400),
        s if s % 3600 == 0 && s > 0 => format!("{} h", s / 3600),
        s if s % 60 == 0 && s > 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// The apps in an order where each comes after those in its `after`,
/// otherwise in file order.
pub fn order(apps: &[FleetApp]) -> Vec<&FleetApp> {
    let mut done: BTreeSet<&str> = BTreeSet::new();
    let mut ordered = Vec::with_capacity(apps.len());
    while ordered.len() < apps.len() {
        let before = ordered.len();
        for app in apps {
            if !done.contains(app.name.as_str()) && app.policy.after.iter().all(|d| done.contains(d.as_str())) {
                done.insert(app.name.as_str());
                ordered.push(app);
            }
        }
        if ordered.len() == before {
            // A cycle (Fleet::parse refuses them) or an unknown name: the rest in file order.
            ordered.extend(apps.iter().filter(|a| !done.contains(a.name.as_str())));
            break;
        }
    }
    ordered
}

/// A cycle of `after`, as app names from one back to itself.
#[allow(clippy::items_after_statements, reason = "the walk is this function's own")]
pub(crate) fn cycle(apps: &[FleetApp]) -> Option<Vec<String>> {
    let after: BTreeMap<&str, Vec<&str>> =
        apps.iter().map(|a| (a.name.as_str(), a.policy.after.iter().map(AppName::as_str).collect())).collect();
    fn visit<'a>(
        node: &'a str,
        after: &BTreeMap<&'a str, Vec<&'a str>>,
        path: &mut Vec<&'a str>,
        finished: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| *n == node) {
            let mut cycle: Vec<String> = path[at..].iter().map(|n| (*n).to_owned()).collect();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if finished.contains(node) {
            return None;
        }
        path.push(node);
        for next in after.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, after, path, finished) {
                return Some(cycle);
            }
        }
        path.pop();
        finished.insert(node);
        None
    }
    let mut finished = BTreeSet::new();
    for app in apps {
        if let Some(cycle) = visit(app.name.as_str(), &after, &mut Vec::new(), &mut finished) {
            return Some(cycle);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file::Fleet;
    use std::path::Path;

    fn app(policy: &str) -> FleetApp {
        let text =
            format!("version: 1\napps:\n  - app: shop\n    recipe: /r\n    source: recipe\n    policy: {policy}\n");
        Fleet::parse(Path::new("/f/fleet.yml"), &text).unwrap().apps.remove(0)
    }

    fn facts(current: Option<&str>, available: &[(&str, i64)]) -> Facts {
        Facts {
            current: current.map(str::to_owned),
            available: available
                .iter()
                .map(|(v, t)| Candidate { version: (*v).to_owned(), published: Timestamp::from_second(*t).ok() })
                .collect(),
            ..Facts::default()
        }
    }

    const NOW: i64 = 1_796_000_000;

    fn now() -> Timestamp {
        Timestamp::from_second(NOW).unwrap()
    }

    #[test]
    fn the_largest_allowed_update_is_chosen() {
        let f = facts(Some("1.1.0"), &[("1.0.0", 0), ("1.1.0", 0), ("1.1.1", 0), ("1.2.0", 0), ("latest", 0)]);
        assert_eq!(
            decide(&app("{allow: patch}"), &f, now()),
            Decision::Update { target: "1.1.1".into(), level: "patch" }
        );
        assert_eq!(
            decide(&app("{allow: minor}"), &f, now()),
            Decision::Update { target: "1.2.0".into(), level: "minor" }
        );
        let f = facts(Some("1.2.0"), &[("1.2.0", 0), ("1.3.0", 0)]);
        assert!(
            matches!(decide(&app("{allow: patch}"), &f, now()), Decision::Held { ref reason, .. } if reason.contains("minor update"))
        );
        assert_eq!(decide(&app("{}"), &facts(Some("1.2.0"), &[("1.2.0", 0)]), now()), Decision::UpToDate);
        assert_eq!(
            decide(&app("{}"), &facts(None, &[("1.0.0", 0), ("1.2.0", 0)]), now()),
            Decision::Install { target: "1.2.0".into() }
        );
    }

    #[test]
    fn a_major_goes_to_the_safety_gate_once() {
        let mut f = facts(Some("1.2.0"), &[("1.2.0", 0), ("2.0.0", 0)]);
        assert_eq!(
            decide(&app("{allow: minor}"), &f, now()),
            Decision::Update { target: "2.0.0".into(), level: "major" }
        );
        f.held.insert("2.0.0".into(), "major 1 -> 2".into());
        assert_eq!(
            decide(&app("{allow: minor}"), &f, now()),
            Decision::Held { target: "2.0.0".into(), reason: "major 1 -> 2".into() }
        );
        // A minor beside a held major still runs.
        f.available.push(Candidate { version: "1.3.0".into(), published: None });
        assert_eq!(
            decide(&app("{allow: minor}"), &f, now()),
            Decision::Update { target: "1.3.0".into(), level: "minor" }
        );
    }

    #[test]
    fn a_rolled_back_version_waits_for_a_newer_one() {
        let mut f = facts(Some("1.0.0"), &[("1.0.0", 0), ("1.0.1", 0)]);
        f.rolled_back.insert("1.0.1".into());
        assert_eq!(decide(&app("{}"), &f, now()), Decision::SkipRolledBack { target: "1.0.1".into() });
        assert_eq!(
            decide(&app("{skip_rolled_back: false}"), &f, now()),
            Decision::Update { target: "1.0.1".into(), level: "patch" }
        );
        f.available.push(Candidate { version: "1.0.2".into(), published: None });
        assert_eq!(decide(&app("{}"), &f, now()), Decision::Update { target: "1.0.2".into(), level: "patch" });
    }

    #[test]
    fn cooldown_and_windows_wait() {
        let f = facts(Some("1.0.0"), &[("1.0.0", 0), ("1.0.1", NOW - 600)]);
        let wait = decide(&app("{cooldown: 1h}"), &f, now());
        assert!(
            matches!(&wait, Decision::Wait { target, reason } if target == "1.0.1" && reason.contains("ready at")),
            "{wait:?}"
        );
        assert!(decide(&app("{cooldown: 5m}"), &f, now()).acts());
        // An older version past its cooldown goes first.
        let f = facts(Some("1.0.0"), &[("1.0.0", 0), ("1.0.1", NOW - 7200), ("1.0.2", NOW - 60)]);
        assert_eq!(
            decide(&app("{cooldown: 1h}"), &f, now()),
            Decision::Update { target: "1.0.1".into(), level: "patch" }
        );
        // A window two hours from now.
        let hour = (NOW.rem_euclid(86_400) / 3600 + 2) % 24;
        let closed = app(&format!("{{window: '{hour:02}:00-{hour:02}:30'}}"));
        assert!(
            matches!(decide(&closed, &f, now()), Decision::Wait { ref reason, .. } if reason.contains("maintenance window"))
        );
    }

    fn floating(policy: &str) -> FleetApp {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("compose.yml"), "services:\n  app:\n    image: t@${LKG_DIGEST}\n").unwrap();
        let text = format!(
            "version: 1\napps:\n  - app: tools\n    compose: [compose.yml]\n    \
             source: {{registry: 'registry.example.net/tools', floating: latest}}\n    policy: {policy}\n"
        );
        Fleet::parse(&dir.path().join("fleet.yml"), &text).unwrap().apps.remove(0)
    }

    fn pinned(tag: &str, hex: char) -> String {
        format!("{tag}@sha256:{}", hex.to_string().repeat(64))
    }

    #[test]
    fn a_floating_tag_that_moved_is_a_digest_update_allowed_by_naming_it() {
        let (old, new) = (pinned("latest", 'a'), pinned("latest", 'b'));
        let f = |current: Option<&str>, published: i64| Facts {
            current: current.map(str::to_owned),
            available: vec![Candidate { version: new.clone(), published: Timestamp::from_second(published).ok() }],
            ..Facts::default()
        };
        assert_eq!(decide(&floating("{}"), &f(None, 0), now()), Decision::Install { target: new.clone() });
        // `allow: patch` does not hold a rebuild: the tag was opted into.
        assert_eq!(
            decide(&floating("{allow: patch}"), &f(Some(&old), 0), now()),
            Decision::Update { target: new.clone(), level: "digest" }
        );
        assert_eq!(decide(&floating("{}"), &f(Some(&new), 0), now()), Decision::UpToDate);
        assert_eq!(newest(&f(None, 0).available, Some(&old)).map(|c| c.version.as_str()), Some(new.as_str()));
        // The image's `created` against the cooldown.
        let wait = decide(&floating("{cooldown: 1h}"), &f(Some(&old), NOW - 600), now());
        assert!(matches!(&wait, Decision::Wait { reason, .. } if reason.contains("ready at")), "{wait:?}");
        // A rolled-back digest waits for the tag to move again.
        let mut rolled = f(Some(&old), 0);
        rolled.rolled_back.insert(new.clone());
        assert_eq!(decide(&floating("{}"), &rolled, now()), Decision::SkipRolledBack { target: new.clone() });
        rolled.available[0].version = pinned("latest", 'c');
        assert!(decide(&floating("{}"), &rolled, now()).acts());
        // Running a version or another tag's digest: not moved onto the tag by itself.
        for other in ["1.2.0".to_owned(), pinned("stable", 'a')] {
            let held = decide(&floating("{}"), &f(Some(&other), 0), now());
            assert!(matches!(&held, Decision::Held { reason, .. } if reason.contains("by hand")), "{held:?}");
        }
    }

    #[test]
    fn order_follows_after() {
        let text = "version: 1\napps:\n\
            - {app: shop, recipe: /r, source: recipe, policy: {after: [auth]}}\n\
            - {app: auth, recipe: /r, source: recipe, policy: {after: [proxy]}}\n\
            - {app: proxy, recipe: /r, source: recipe}\n";
        let fleet = Fleet::parse(Path::new("/f/fleet.yml"), text).unwrap();
        let names: Vec<&str> = order(&fleet.apps).iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["proxy", "auth", "shop"]);
    }
}
