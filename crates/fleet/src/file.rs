//! The fleet file (`fleet.yml`, `version: 1`): the apps lkg keeps up to
//! date, where their new versions come from, and the policy that decides
//! which of them run by themselves.
//!
//! ```yaml
//! version: 1
//! notify: ["ntfys://ntfy.example.net/ops"]      # every app's alerts + a round summary
//! apps:
//!   - app: traefik
//!     recipe: https://git.example.net/recipes/traefik.git
//!     stateful: false
//!     health: {http: [{url: "http://127.0.0.1:8080/ping"}]}
//!     source: recipe
//!     policy: {allow: minor, cooldown: 1d, window: "Sat,Sun 02:00-05:00 UTC"}
//!   - app: shop
//!     compose: [shop/compose.yml]                # image: registry.example.net/shop:${LKG_VERSION_TAG}
//!     source: {registry: registry.example.net/shop}
//!     policy: {allow: patch, after: [traefik]}
//!   - app: tools
//!     compose: [tools/compose.yml]               # image: registry.example.net/tools@${LKG_DIGEST}
//!     source: {registry: registry.example.net/tools, floating: latest}
//! ```
//!
//! Unknown keys are errors naming the key and its line; so are duplicate
//! apps, an `after` that names no app or forms a cycle, and a notification
//! URL of an unknown scheme. Nothing is touched before the whole file is
//! valid.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use lkg_reconcile::{AppConfig, AppName, DeploySpec, HealthSpec};
use serde::{Deserialize, Deserializer};

use crate::error::FleetError;
use crate::window::Window;

/// The only fleet file format version there is.
pub const FORMAT: u32 = 1;

/// A fleet file, read and checked.
#[derive(Debug, Clone)]
pub struct Fleet {
    /// Where it was read from.
    pub path: PathBuf,
    /// Channels every app's alerts and the round summary go to.
    pub notify: Vec<String>,
    /// How many apps may update at once (never two runs on one app).
    pub max_parallel: usize,
    /// How many apps discover their versions at once.
    pub discovery_parallel: usize,
    /// Registries (`host[:port]`) that may be spoken to over plain HTTP
    /// (loopback always may).
    pub insecure_registries: Vec<String>,
    /// The apps, in the file's order.
    pub apps: Vec<FleetApp>,
}

/// One app of the fleet.
#[derive(Debug, Clone)]
pub struct FleetApp {
    /// The app.
    pub name: AppName,
    /// Everything `lkg-reconcile update` needs, paths made absolute.
    pub config: AppConfig,
    /// Where new versions come from.
    pub source: Source,
    /// What runs by itself.
    pub policy: Policy,
    /// The line of the file where the app starts.
    pub line: usize,
}

/// Where an app's new versions come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The tags of the app's recipe repository.
    Recipe {
        /// A path (absolute) or a URL.
        location: String,
    },
    /// The tags of an image repository (`registry.example.net/shop`), read
    /// as versions (`1.2.3`, or `1.2.3_4.5.6` for `1.2.3+4.5.6`); or, with
    /// `floating`, the digest that one tag (`latest`) points to, offered as
    /// the version `latest@sha256:<hex>` ([`lkg_reconcile::DigestVersion`])
    /// and deployed pinned through `${LKG_DIGEST}`.
    Registry {
        /// `host[:port]/path`, without a tag.
        repository: String,
        /// The floating tag whose digest moves (`latest`): each new digest
        /// is an update the user opted into by naming the tag.
        floating: Option<String>,
    },
}

/// What runs by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The largest update that runs by itself: patch or minor. A major is
    /// always given to the safety gate, which holds it.
    pub allow: Allow,
    /// A version must have been published at least this long ago.
    pub cooldown: Duration,
    /// A version that rolled back is not retried until a newer one appears
    /// (or `lkg-fleet retry`).
    pub skip_rolled_back: bool,
    /// When updates may start; empty: any time.
    pub windows: Vec<Window>,
    /// Apps that must be settled first in a round.
    pub after: Vec<AppName>,
}

/// `policy.allow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Allow {
    /// Same major and minor.
    Patch,
    /// Same major.
    Minor,
}

impl Allow {
    /// `patch` or `minor`.
    pub fn as_str(self) -> &'static str {
        match self {
            Allow::Patch => "patch",
            Allow::Minor => "minor",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFleet {
    version: u32,
    #[serde(default)]
    notify: Vec<String>,
    #[serde(default = "one")]
    max_parallel: usize,
    #[serde(default = "eight")]
    discovery_parallel: usize,
    #[serde(default)]
    insecure_registries: Vec<String>,
    apps: Vec<RawApp>,
}

fn one() -> usize {
    1
}
fn eight() -> usize {
    8
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApp {
    app: String,
    stack: Option<String>,
    #[serde(default)]
    compose: Vec<PathBuf>,
    recipe: Option<String>,
    #[serde(default)]
    compose_file: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    stateful: Option<bool>,
    #[serde(default)]
    health: HealthSpec,
    #[serde(default)]
    deploy: DeploySpec,
    release_notes: Option<PathBuf>,
    markers: Option<Vec<String>>,
    #[serde(default)]
    notify: Vec<String>,
    source: Option<RawSource>,
    #[serde(default)]
    policy: RawPolicy,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawSource {
    Named(String),
    Registry(RawRegistry),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistry {
    registry: String,
    floating: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default = "patch")]
    allow: Allow,
    #[serde(default, deserialize_with = "duration")]
    cooldown: Duration,
    #[serde(default = "yes")]
    skip_rolled_back: bool,
    #[serde(default, deserialize_with = "one_or_many")]
    window: Vec<String>,
    #[serde(default)]
    after: Vec<String>,
}

impl Default for RawPolicy {
    fn default() -> RawPolicy {
        RawPolicy {
            allow: Allow::Patch,
            cooldown: Duration::ZERO,
            skip_rolled_back: true,
            window: Vec::new(),
            after: Vec::new(),
        }
    }
}

fn patch() -> Allow {
    Allow::Patch
}
fn yes() -> bool {
    true
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(one) => vec![one],
        OneOrMany::Many(many) => many,
    })
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Seconds(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Seconds(s) => Ok(Duration::from_secs(s)),
        Raw::Text(text) => parse_duration(&text).map_err(serde::de::Error::custom),
    }
}

/// `90s`, `30m`, `12h`, `7d`, `1w` or a number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let bad = || format!("{text:?} is not a duration: use a number with s, m, h, d or w (e.g. 36h)");
    let number: u64 = number.parse().map_err(|_| bad())?;
    let unit = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(bad()),
    };
    number.checked_mul(unit).map(Duration::from_secs).ok_or_else(bad)
}

impl Fleet {
    /// Reads and checks the fleet file at `path`; relative paths in it are
    /// relative to its directory.
    pub fn load(path: &Path) -> Result<Fleet, FleetError> {
        let text = lkg_core::input::read_to_string(path, lkg_core::input::MAX_TEXT).map_err(|e| FleetError::File {
            path: path.to_owned(),
            line: None,
            reason: format!("cannot read it: {e}"),
        })?;
        Fleet::parse(path, &text)
    }

    /// Checks fleet file `text` as if read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Fleet, FleetError> {
        let error = |line: Option<usize>, reason: String| FleetError::File { path: path.to_owned(), line, reason };
        let raw: RawFleet = lkg_swarm::yaml::from_str(text).map_err(|e| {
            let line = e.line();
            let reason = match e {
                lkg_swarm::yaml::YamlError::Syntax(e) => e.to_string(),
                refused => refused.to_string(),
            };
            // serde_yaml_ng appends " at line L column C": the line is a field of its own.
            let reason = match reason.rfind(" at line ") {
                Some(at) if line.is_some() => reason[..at].to_owned(),
                _ => reason,
            };
            error(line, reason)
        })?;
        if raw.version != FORMAT {
            return Err(error(
                line_of(text, "version", None, 0),
                format!("version {} is not supported: this lkg-fleet reads version: {FORMAT}", raw.version),
            ));
        }
        if raw.max_parallel == 0 || raw.discovery_parallel == 0 {
            return Err(error(None, "max_parallel and discovery_parallel must be at least 1".into()));
        }
        for url in &raw.notify {
            lkg_notify::Channel::parse(url).map_err(|e| error(line_of(text, "notify", None, 0), e.to_string()))?;
        }
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        let base = std::path::absolute(base).unwrap_or_else(|_| base.to_owned());
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let mut apps = Vec::new();
        for raw_app in raw.apps {
            let occurrence = seen.get(&raw_app.app).copied().unwrap_or(0);
            let line = line_of(text, "app", Some(&raw_app.app), occurrence);
            seen.insert(raw_app.app.clone(), occurrence + 1);
            if occurrence > 0 {
                return Err(error(line, format!("app {:?} is listed twice: each app appears once", raw_app.app)));
            }
            apps.push(app(raw_app, &base, text, line).map_err(|reason| error(line, reason))?);
        }
        let names: BTreeSet<&str> = apps.iter().map(|a| a.name.as_str()).collect();
        for app in &apps {
            for dep in &app.policy.after {
                if !names.contains(dep.as_str()) {
                    return Err(error(
                        Some(app.line),
                        format!("app {}: policy.after names {dep}, which is not an app of this fleet", app.name),
                    ));
                }
            }
        }
        if let Some(cycle) = crate::plan::cycle(&apps) {
            return Err(error(
                None,
                format!("policy.after forms a cycle: {} (an app cannot wait for itself)", cycle.join(" -> ")),
            ));
        }
        Ok(Fleet {
            path: path.to_owned(),
            notify: raw.notify,
            max_parallel: raw.max_parallel,
            discovery_parallel: raw.discovery_parallel,
            insecure_registries: raw.insecure_registries,
            apps,
        })
    }

    /// The app named `name`.
    pub fn app(&self, name: &str) -> Option<&FleetApp> {
        self.apps.iter().find(|a| a.name.as_str() == name)
    }
}

fn app(raw: RawApp, base: &Path, text: &str, line: Option<usize>) -> Result<FleetApp, String> {
    let name = AppName::new(&raw.app).map_err(|e| e.to_string())?;
    let prefix = |reason: String| format!("app {name}: {reason}");
    for url in &raw.notify {
        lkg_notify::Channel::parse(url).map_err(|e| prefix(e.to_string()))?;
    }
    let recipe = raw
        .recipe
        .map(|r| if lkg_reconcile::is_remote_recipe(&r) { r } else { base.join(r).to_string_lossy().into_owned() });
    let source = match raw.source {
        None => {
            return Err(prefix(
                "no source: say where new versions come from (source: recipe, or source: {registry: host/repo})".into(),
            ));
        }
        Some(RawSource::Named(named)) if named == "recipe" => match &recipe {
            Some(location) => Source::Recipe { location: location.clone() },
            None => return Err(prefix("source: recipe needs the app's recipe (recipe: PATH_OR_URL)".into())),
        },
        Some(RawSource::Named(other)) => {
            return Err(prefix(format!("source {other:?} is not recipe or {{registry: host/repo}}")));
        }
        Some(RawSource::Registry(r)) => {
            let repository = r.registry.trim().to_owned();
            let tagged =
                repository.contains('@') || repository.rsplit('/').next().is_some_and(|last| last.contains(':'));
            if tagged {
                return Err(prefix(format!(
                    "source.registry {repository:?} must name a repository, without a tag or digest"
                )));
            }
            repository.parse::<lkg_registry::Reference>().map_err(|e| prefix(lkg_core::render_chain(&e)))?;
            if let Some(tag) = &r.floating {
                if recipe.is_some() {
                    return Err(prefix(format!(
                        "source.floating {tag:?} deploys a digest, which no recipe tag names: give compose files \
                         (compose: [FILE], image: {repository}@${{LKG_DIGEST}}) instead of a recipe"
                    )));
                }
                if lkg_reconcile::DigestVersion::new(tag, &format!("sha256:{}", "0".repeat(64))).is_none() {
                    return Err(prefix(format!(
                        "source.floating {tag:?} is not an image tag: letters, digits, '.', '_' or '-', not \
                         starting with '.' or '-'"
                    )));
                }
            }
            Source::Registry { repository, floating: r.floating }
        }
    };
    let windows =
        raw.policy.window.iter().map(|w| w.parse::<Window>()).collect::<Result<Vec<_>, _>>().map_err(prefix)?;
    let after = raw
        .policy
        .after
        .iter()
        .map(|a| AppName::new(a).map_err(|e| prefix(e.to_string())))
        .collect::<Result<_, _>>()?;
    let config = AppConfig {
        app: Some(raw.app.clone()),
        stack: raw.stack,
        compose: raw.compose.iter().map(|c| base.join(c)).collect(),
        env: raw.env,
        stateful: raw.stateful,
        health: raw.health,
        deploy: raw.deploy,
        release_notes: raw.release_notes.map(|r| base.join(r)),
        markers: raw.markers,
        recipe,
        compose_file: raw.compose_file,
        notify: raw.notify,
        ..AppConfig::default()
    };
    // Everything lkg-reconcile checks, checked now: nothing starts on a bad file.
    config.clone().into_spec().map_err(|e| prefix(lkg_core::render_chain(&e)))?;
    let _ = text;
    Ok(FleetApp {
        name,
        config,
        source,
        policy: Policy {
            allow: raw.policy.allow,
            cooldown: raw.policy.cooldown,
            skip_rolled_back: raw.policy.skip_rolled_back,
            windows,
            after,
        },
        line: line.unwrap_or(0),
    })
}

/// The 1-based line of the `occurrence`-th `key: value` (or `- key: value`)
/// in `text`, for errors serde cannot place.
fn line_of(text: &str, key: &str, value: Option<&str>, occurrence: usize) -> Option<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| {
            let line = line.trim_start().trim_start_matches("- ").trim_start();
            let Some(rest) = line.strip_prefix(key).and_then(|r| r.trim_start().strip_prefix(':')) else {
                return false;
            };
            match value {
                None => true,
                Some(v) => {
                    let rest = rest.split(" #").next().unwrap_or(rest).trim().trim_matches(['"', '\'']);
                    rest == v
                }
            }
        })
        .nth(occurrence)
        .map(|(i, _)| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Fleet, String> {
        Fleet::parse(Path::new("/srv/fleet/fleet.yml"), text).map_err(|e| e.to_string())
    }

    const COMPOSE_FREE: &str = "version: 1\napps:\n  - app: shop\n    recipe: /srv/recipes/shop\n    source: recipe\n";

    #[test]
    fn a_minimal_fleet_reads() {
        let fleet = parse(COMPOSE_FREE).unwrap();
        assert_eq!(fleet.apps.len(), 1);
        let app = &fleet.apps[0];
        assert_eq!(app.source, Source::Recipe { location: "/srv/recipes/shop".into() });
        assert_eq!(app.policy.allow, Allow::Patch);
        assert!(app.policy.skip_rolled_back);
        assert_eq!(app.line, 3);
    }

    #[test]
    fn bad_files_name_the_line_and_the_key() {
        let unknown =
            parse("version: 1\napps:\n  - app: shop\n    recipe: /r\n    source: recipe\n    polcy: {}\n").unwrap_err();
        assert!(unknown.contains("line 6") && unknown.contains("polcy"), "{unknown}");
        let missing = parse("version: 1\napps:\n  - app: shop\n    recipe: /r\n").unwrap_err();
        assert!(missing.contains("line 3") && missing.contains("no source"), "{missing}");
        let twice = parse(&format!("{COMPOSE_FREE}  - app: shop\n    recipe: /r\n    source: recipe\n")).unwrap_err();
        assert!(twice.contains("line 6") && twice.contains("listed twice"), "{twice}");
        let scheme = parse(&format!("version: 1\nnotify: ['gopher://x/y']\n{}", &COMPOSE_FREE[11..])).unwrap_err();
        assert!(scheme.contains("line 2") && scheme.contains("gopher"), "{scheme}");
        let version = parse("version: 2\napps: []\n").unwrap_err();
        assert!(version.contains("line 1") && version.contains("version 2"), "{version}");
        let allow =
            parse("version: 1\napps:\n  - app: a\n    recipe: /r\n    source: recipe\n    policy: {allow: major}\n")
                .unwrap_err();
        assert!(allow.contains("line 6") && allow.contains("major"), "{allow}");
    }

    #[test]
    fn a_floating_source_names_a_tag_and_no_recipe() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("compose.yml"), "services:\n  app:\n    image: t@${LKG_DIGEST}\n").unwrap();
        let parse = |text: &str| Fleet::parse(&dir.path().join("fleet.yml"), text).map_err(|e| e.to_string());
        let app = |source: &str| {
            format!("version: 1\napps:\n  - app: tools\n    compose: [compose.yml]\n    source: {source}\n")
        };
        let fleet = parse(&app("{registry: 'registry.example.net/tools', floating: latest}")).unwrap();
        assert_eq!(
            fleet.apps[0].source,
            Source::Registry { repository: "registry.example.net/tools".into(), floating: Some("latest".into()) }
        );
        let bad = parse(&app("{registry: 'registry.example.net/tools', floating: 'a b'}")).unwrap_err();
        assert!(bad.contains("line 3") && bad.contains("not an image tag"), "{bad}");
        let recipe = parse(
            "version: 1\napps:\n  - app: tools\n    recipe: /r\n    source: {registry: 'r.example.net/t', floating: latest}\n",
        )
        .unwrap_err();
        assert!(recipe.contains("LKG_DIGEST"), "{recipe}");
        let typo = parse(&app("{registry: 'registry.example.net/tools', flaoting: latest}")).unwrap_err();
        assert!(typo.contains("line 3"), "{typo}");
    }

    #[test]
    fn after_must_name_apps_and_not_cycle() {
        let app = |name: &str, after: &str| {
            format!("  - app: {name}\n    recipe: /r/{name}\n    source: recipe\n    policy: {{after: [{after}]}}\n")
        };
        let cycle =
            parse(&format!("version: 1\napps:\n{}{}{}", app("a", "c"), app("b", "a"), app("c", "b"))).unwrap_err();
        assert!(cycle.contains("cycle") && cycle.contains("a -> c -> b -> a"), "{cycle}");
        let unknown = parse(&format!("version: 1\napps:\n{}", app("a", "zz"))).unwrap_err();
        assert!(unknown.contains("zz") && unknown.contains("line 3"), "{unknown}");
    }

    #[test]
    fn durations_read_as_operators_write_them() {
        assert_eq!(parse_duration("36h").unwrap(), Duration::from_secs(36 * 3600));
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5y").is_err());
    }
}
