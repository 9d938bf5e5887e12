//! How an app is deployed and checked: [`AppSpec`], from command-line flags
//! or a per-app config file ([`AppConfig`], YAML).
//!
//! ```yaml
//! # keycloak.yml: lkg-reconcile update --config keycloak.yml --target 10.7.9+26.6.2
//! app: keycloak
//! stack: warm-keycloak_ci_example_net
//! compose: [compose.yml]            # relative to this file; the version reaches
//!                                   # it as ${LKG_VERSION} / ${LKG_VERSION_TAG}
//! stateful: true
//! health:
//!   http:
//!     - url: https://warm-keycloak.ci.example.net/realms/master
//!       status: 200
//!   passes: 3
//!   interval: 2
//!   deadline: 180
//! deploy:
//!   timeout: 300
//! release_notes: releaseNotes       # default: releaseNotes/ beside the first compose file
//! notify:                           # alert channels (docs/notifications.md)
//!   - ntfys://ntfy.example.net/lkg-alerts
//!   - smtp://lkg:secret@mail.example.net:587/?from=lkg@example.net&to=ops@example.net
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lkg_canonical::AppName;
use serde::{Deserialize, Serialize};

use crate::error::ReconcileError;
use crate::health::{HealthSpec, secs};

/// Everything a run needs to deploy and check an app, validated. It is
/// stored in the journal, so `recover` needs no flags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AppSpec {
    /// The app (its state lives under `<state-dir>/apps/<app>/`).
    pub app: AppName,
    /// Its swarm stack.
    pub stack: String,
    /// The compose files, absolute, in `-c` order.
    pub compose: Vec<PathBuf>,
    /// Extra variables for compose interpolation.
    pub env: BTreeMap<String, String>,
    /// Snapshot before the update, restore on failure.
    pub stateful: bool,
    /// The health gate.
    pub health: HealthSpec,
    /// How to deploy.
    pub deploy: DeploySpec,
    /// Where `releaseNotes/<target>.md` is looked for.
    pub release_notes: PathBuf,
    /// Manual-migration markers (the defaults unless configured).
    pub markers: Vec<String>,
    /// Where alerts are also sent: notification channel URLs, each checked
    /// by [`lkg_notify::Channel::parse`]. Journals of older versions have one
    /// `webhook` URL instead: read as a list of one.
    #[serde(default, alias = "webhook", deserialize_with = "crate::alert::one_or_many")]
    pub notify: Vec<String>,
    /// A recipe repository: each version's compose files (and release notes)
    /// are read from its tag, and `compose` and `release_notes` point into
    /// that version's files once a run resolved them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipe: Option<RecipeSource>,
    /// On a multi-node swarm, the node that holds a stateful app's volumes,
    /// found by `update` before it touched anything ([`crate::placement`]);
    /// every deploy of the run is checked against it (and pinned to it with
    /// `deploy.pin_to_data_node`). Never read from a config file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_node: Option<crate::placement::DataNode>,
}

/// A recipe repository whose tags are versions (`1.2.3+4.5.6`, annotated or
/// lightweight): version V's files are read from tag V.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipeSource {
    /// A local repository (an absolute path) or a URL the `git` CLI fetches.
    pub location: String,
    /// The compose files inside the recipe, in `-c` order (default `compose.yml`).
    pub compose: Vec<String>,
}

/// How to deploy and undeploy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploySpec {
    /// Deadline for swarm's verdict on a deploy (and for an undeploy).
    #[serde(default = "default_timeout", with = "secs")]
    pub timeout: Duration,
    /// A command in place of `docker stack deploy` (see `lkg-swarm deploy
    /// --deploy-command`): placeholders `{stack}`, `{compose}`, `{overlay}`,
    /// `{deploy_id}`; it must apply every compose file it is given.
    #[serde(default)]
    pub command: Option<String>,
    /// The docker CLI to run `docker stack deploy` with.
    #[serde(default)]
    pub docker: Option<PathBuf>,
    /// `--resolve-image`: `always` (docker's default), `changed` or `never`.
    #[serde(default)]
    pub resolve_image: ResolveImage,
    /// `--with-registry-auth`.
    #[serde(default)]
    pub registry_auth: bool,
    /// How snapshots read and write volumes: `auto`, `archive` or `direct`.
    #[serde(default)]
    pub snapshot_access: SnapshotAccess,
    /// Failed tasks of a deploy after which a service that is not all
    /// running is `task_failed` (a crash loop), without waiting for
    /// `timeout`; 0 waits for the timeout.
    #[serde(default = "default_task_failures")]
    pub max_task_failures: usize,
    /// On a multi-node swarm, add `node.id == <the data's node>` to every
    /// service that mounts a volume, through lkg's overlay compose file,
    /// instead of refusing a stateful update whose services are not held
    /// there (`--pin-to-data-node`).
    #[serde(default)]
    pub pin_to_data_node: bool,
}

fn default_task_failures() -> usize {
    lkg_swarm::DEFAULT_TASK_FAILURE_LIMIT
}

fn default_timeout() -> Duration {
    Duration::from_secs(300)
}

impl Default for DeploySpec {
    fn default() -> DeploySpec {
        DeploySpec {
            timeout: default_timeout(),
            command: None,
            docker: None,
            resolve_image: ResolveImage::default(),
            registry_auth: false,
            snapshot_access: SnapshotAccess::default(),
            max_task_failures: default_task_failures(),
            pin_to_data_node: false,
        }
    }
}

/// `docker stack deploy --resolve-image`: lkg-swarm's.
pub use lkg_swarm::ResolveImage;
/// How snapshots reach volume data: lkg-warmsnap's `Access`.
pub use lkg_warmsnap::Access as SnapshotAccess;

/// A per-app config file, or the flags given instead; every field optional
/// until [`AppConfig::into_spec`] checks the whole.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// The app.
    pub app: Option<String>,
    /// Its stack.
    pub stack: Option<String>,
    /// Compose files (relative to the config file).
    #[serde(default)]
    pub compose: Vec<PathBuf>,
    /// Extra interpolation variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Stateful (default) or not.
    pub stateful: Option<bool>,
    /// The health gate.
    #[serde(default)]
    pub health: HealthSpec,
    /// How to deploy.
    #[serde(default)]
    pub deploy: DeploySpec,
    /// The release notes directory (relative to the config file).
    pub release_notes: Option<PathBuf>,
    /// Manual-migration markers, replacing the defaults.
    pub markers: Option<Vec<String>>,
    /// Notification channel URLs: every alert reaches each (docs/notifications.md).
    #[serde(default)]
    pub notify: Vec<String>,
    /// A plain `http(s)://` URL that receives every alert as JSON: the same
    /// as listing it under `notify`.
    pub webhook: Option<String>,
    /// A recipe repository (a path, relative to the config file, or a URL)
    /// instead of `compose`: version V's files come from its tag V.
    #[serde(default)]
    pub recipe: Option<String>,
    /// With `recipe`: the compose files inside it (default `compose.yml`).
    #[serde(default)]
    pub compose_file: Vec<String>,
}

impl AppConfig {
    /// Reads a YAML config file; relative paths in it are relative to its directory.
    pub fn load(path: &Path) -> Result<AppConfig, ReconcileError> {
        let config_error = |reason: String| ReconcileError::Config { path: path.to_owned(), reason };
        let text = lkg_core::input::read_to_string(path, lkg_core::input::MAX_TEXT)
            .map_err(|e| config_error(format!("cannot read it: {e}")))?;
        let mut config: AppConfig = lkg_swarm::yaml::from_str(&text).map_err(|e| match e {
            // The parser's message alone, as before: "unknown field `x`, expected ...".
            lkg_swarm::yaml::YamlError::Syntax(e) => config_error(e.to_string()),
            refused => config_error(refused.to_string()),
        })?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        for file in &mut config.compose {
            *file = base.join(&*file);
        }
        if let Some(dir) = &mut config.release_notes {
            *dir = base.join(&*dir);
        }
        if let Some(recipe) = &mut config.recipe
            && !crate::recipe::is_remote(recipe)
        {
            *recipe = base.join(&*recipe).to_string_lossy().into_owned();
        }
        Ok(config)
    }

    /// The spec for quick mode: without a stack, the stack of the app's
    /// canonical, from its recorded domain (abra's naming,
    /// [`stack_for_domain`](crate::stack_for_domain)), read from `state_dir`.
    pub fn into_quick_spec(mut self, state_dir: &Path) -> Result<AppSpec, ReconcileError> {
        if self.stack.is_none()
            && let Some(app) = &self.app
        {
            self.stack = crate::canonical_stack(state_dir, &AppName::new(app)?)?;
        }
        self.into_spec()
    }

    /// Checks the whole and makes paths absolute.
    pub fn into_spec(self) -> Result<AppSpec, ReconcileError> {
        let missing = |what: &str, flag: &str| {
            ReconcileError::Invalid(format!("no {what}: pass {flag}, or set it in the config file (--config)"))
        };
        let app = AppName::new(&self.app.ok_or_else(|| missing("app", "--app"))?)?;
        let stack = self.stack.unwrap_or_else(|| app.as_str().to_owned());
        check_stack(&stack)?;
        let recipe = match self.recipe {
            Some(_) if !self.compose.is_empty() => {
                return Err(ReconcileError::Invalid(
                    "give either compose files (-c) or a recipe (--recipe), not both".to_owned(),
                ));
            }
            Some(location) => Some(recipe_source(location, self.compose_file)?),
            None if !self.compose_file.is_empty() => {
                return Err(ReconcileError::Invalid("--compose-file names files inside a --recipe".to_owned()));
            }
            None => None,
        };
        if self.compose.is_empty() && recipe.is_none() {
            return Err(missing("compose file", "-c FILE"));
        }
        let compose: Vec<PathBuf> = self.compose.iter().map(|p| absolute(p)).collect::<Result<_, _>>()?;
        if recipe.is_none() {
            lkg_swarm::ComposeFiles::load(&compose)?;
        }
        for key in self.env.keys() {
            let valid = !key.is_empty()
                && !key.starts_with(|c: char| c.is_ascii_digit())
                && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(ReconcileError::Invalid(format!("{key:?} is not an environment variable name")));
            }
        }
        for check in &self.health.http {
            if !(check.url.starts_with("http://") || check.url.starts_with("https://")) {
                return Err(ReconcileError::Invalid(format!(
                    "health check URL {:?} is not http:// or https://",
                    check.url
                )));
            }
        }
        if self.health.deadline.is_zero() || self.deploy.timeout.is_zero() {
            return Err(ReconcileError::Invalid(
                "the health deadline and the deploy timeout must be more than 0".into(),
            ));
        }
        let mut notify = self.notify;
        if let Some(url) = self.webhook {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ReconcileError::Invalid(format!(
                    "webhook {} is not an http:// or https:// URL: give other channels with --notify (notify:)",
                    lkg_core::redact::url(&url)
                )));
            }
            notify.push(url);
        }
        for url in &notify {
            lkg_notify::Channel::parse(url)?;
        }
        let release_notes = match (self.release_notes, compose.first()) {
            (Some(dir), _) => absolute(&dir)?,
            (None, Some(first)) => first.parent().unwrap_or_else(|| Path::new("/")).join("releaseNotes"),
            // A recipe's release notes come from the version's tag.
            (None, None) => PathBuf::new(),
        };
        let markers = match self.markers {
            Some(markers) => {
                crate::gate::check_markers(&markers)?;
                markers
            }
            None => crate::gate::DEFAULT_MARKERS.iter().map(|m| (*m).to_owned()).collect(),
        };
        Ok(AppSpec {
            app,
            stack,
            compose,
            env: self.env,
            stateful: self.stateful.unwrap_or(true),
            health: self.health,
            deploy: self.deploy,
            release_notes,
            markers,
            notify,
            recipe,
            data_node: None,
        })
    }
}

/// A recipe's location made absolute (a path) and its compose file names
/// checked: plain relative paths inside the recipe.
fn recipe_source(location: String, compose: Vec<String>) -> Result<RecipeSource, ReconcileError> {
    let location = if crate::recipe::is_remote(&location) {
        location
    } else {
        absolute(Path::new(&location))?.to_string_lossy().into_owned()
    };
    let compose = if compose.is_empty() { vec!["compose.yml".to_owned()] } else { compose };
    for name in &compose {
        let inside = Path::new(name).components().all(|c| matches!(c, std::path::Component::Normal(_)));
        if name.is_empty() || !inside {
            return Err(ReconcileError::Invalid(format!(
                "--compose-file {name:?} must name a file inside the recipe (no '..', not absolute)"
            )));
        }
    }
    Ok(RecipeSource { location, compose })
}

/// A stack name swarm accepts.
pub(crate) fn check_stack(stack: &str) -> Result<(), ReconcileError> {
    let valid = !stack.is_empty() && stack.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    if valid { Ok(()) } else { Err(ReconcileError::Stack { stack: stack.to_owned() }) }
}

fn absolute(path: &Path) -> Result<PathBuf, ReconcileError> {
    std::path::absolute(path).map_err(|source| crate::files::state_io("resolve", path, source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_file_resolves_paths_beside_itself() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("compose.yml"), "services:\n  app:\n    image: x:${LKG_VERSION_TAG}\n").unwrap();
        let path = dir.path().join("shop.yml");
        std::fs::write(
            &path,
            "app: shop\nstack: shop_example_org\ncompose: [compose.yml]\nstateful: false\n\
             health:\n  http: [{url: 'http://127.0.0.1:8080/health', body: ok}]\n  passes: 2\n  interval: 0.5\n\
             deploy:\n  timeout: 60\n  resolve_image: never\n  max_task_failures: 5\n",
        )
        .unwrap();
        let spec = AppConfig::load(&path).unwrap().into_spec().unwrap();
        assert_eq!(spec.app.as_str(), "shop");
        assert_eq!(spec.compose, [dir.path().join("compose.yml")]);
        assert_eq!(spec.release_notes, dir.path().join("releaseNotes"));
        assert!(!spec.stateful);
        assert_eq!((spec.health.passes, spec.health.interval), (2, Duration::from_millis(500)));
        assert_eq!((spec.deploy.timeout, spec.deploy.resolve_image), (Duration::from_secs(60), ResolveImage::Never));
        assert_eq!(spec.markers.len(), crate::gate::DEFAULT_MARKERS.len());
        assert_eq!(spec.deploy.max_task_failures, 5);
        assert_eq!(DeploySpec::default().max_task_failures, lkg_swarm::DEFAULT_TASK_FAILURE_LIMIT);
    }

    #[test]
    fn bad_configs_name_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.yml");
        std::fs::write(&path, "app: shop\nhealth:\n  pases: 2\n").unwrap();
        let err = AppConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains("bad.yml") && err.contains("pases"), "{err}");
        let err = AppConfig { app: Some("shop".into()), ..AppConfig::default() }.into_spec().unwrap_err();
        assert_eq!(err.to_string(), "no compose file: pass -c FILE, or set it in the config file (--config)");
        let err = AppConfig { app: Some("Shop".into()), ..AppConfig::default() }.into_spec().unwrap_err();
        assert_eq!(lkg_core::Classify::kind(&err), lkg_core::FailureKind::Input);
    }

    #[test]
    fn notification_channels_are_checked_and_never_shown_with_their_secrets() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("compose.yml"), "services:\n  app:\n    image: x\n").unwrap();
        let config = |notify: Vec<&str>, webhook: Option<&str>| AppConfig {
            app: Some("shop".into()),
            compose: vec![dir.path().join("compose.yml")],
            notify: notify.into_iter().map(str::to_owned).collect(),
            webhook: webhook.map(str::to_owned),
            ..AppConfig::default()
        };
        let spec = config(vec!["ntfy://ntfy.example/t"], Some("http://127.0.0.1:9/hook")).into_spec().unwrap();
        assert_eq!(spec.notify, ["ntfy://ntfy.example/t", "http://127.0.0.1:9/hook"]);
        let err = config(vec!["telegram://tok:SECRET@telegram"], None).into_spec().unwrap_err();
        assert_eq!(err.kind(), lkg_core::FailureKind::Input);
        let text = err.to_string();
        assert!(text.contains("unknown scheme") && !text.contains("SECRET"), "{text}");
        let err = config(vec![], Some("ntfy://u:SECRET@h/t")).into_spec().unwrap_err();
        assert!(err.to_string().contains("--notify") && !err.to_string().contains("SECRET"), "{err}");
        // A journal of an older version names one webhook.
        let mut journal = serde_json::to_value(&spec).unwrap();
        let object = journal.as_object_mut().unwrap();
        object.remove("notify");
        object.insert("webhook".into(), serde_json::json!("http://127.0.0.1:9/hook"));
        let old: AppSpec = serde_json::from_value(journal.clone()).unwrap();
        assert_eq!(old.notify, ["http://127.0.0.1:9/hook"]);
        journal["webhook"] = serde_json::Value::Null;
        assert!(serde_json::from_value::<AppSpec>(journal).unwrap().notify.is_empty());
    }
}
