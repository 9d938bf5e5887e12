//! The part of compose files lkg needs: which services a stack declares.
//!
//! lkg does not interpret compose files beyond that. It reads them with a YAML
//! parser (not a typed compose model: `docker-compose-types` rejects
//! `update_config.order`, and every schema lags behind the fields recipes
//! use), so `rollback_config`, `x-*` extension fields and anything newer are
//! carried through untouched: `docker stack deploy` is the one that reads them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_yaml_ng::{Mapping, Value};

use crate::DeployId;
use crate::deploy_id::DEPLOY_ID_LABEL;

/// A compose file could not be read, or does not declare services lkg can name.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ComposeError {
    /// No `-c` file was given.
    #[error("no compose file given: pass at least one -c FILE")]
    NoFiles,
    /// A file could not be read.
    #[error("cannot read compose file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error (fs-err names the path too).
        #[source]
        source: std::io::Error,
    },
    /// A file is not valid YAML, or YAML lkg refuses (an alias bomb, nesting too deep).
    #[error("compose file {path}: {source}")]
    Yaml {
        /// The file.
        path: PathBuf,
        /// What is wrong: the parser's error with line and column, or the limit it breaks.
        #[source]
        source: crate::yaml::YamlError,
    },
    /// A file parses but is not shaped like a compose file.
    #[error("compose file {path} is not a compose file: {reason}")]
    Shape {
        /// The file.
        path: PathBuf,
        /// What is wrong, in compose terms.
        reason: String,
    },
    /// Two files declare different `version:` values; `docker stack deploy`
    /// refuses to merge them ("version mismatched between two composefiles").
    #[error(
        "compose files disagree on `version`: {first_path} says {first:?}, {path} says {version:?}; make them equal"
    )]
    VersionMismatch {
        /// The first file that set a version.
        first_path: PathBuf,
        /// Its version.
        first: String,
        /// The file that disagrees.
        path: PathBuf,
        /// Its version.
        version: String,
    },
    /// The files together declare no service.
    #[error("the compose files declare no service under `services:`")]
    NoServices,
}

/// The compose files of one deploy (`-c a.yml -c b.yml`), merged the way
/// `docker stack deploy` merges them for the set of services: a later file
/// adds services or overrides fields of existing ones, never removes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposeFiles {
    paths: Vec<PathBuf>,
    version: Option<String>,
    services: BTreeSet<String>,
    /// `deploy.placement.constraints` per service, appended across files as
    /// docker/cli's loader merges lists, not yet interpolated.
    constraints: BTreeMap<String, Vec<String>>,
}

impl ComposeFiles {
    /// Reads and checks the files, in order.
    pub fn load(paths: &[PathBuf]) -> Result<ComposeFiles, ComposeError> {
        let mut sources = Vec::with_capacity(paths.len());
        for path in paths {
            let text = lkg_core::input::read_to_string(path, lkg_core::input::MAX_DOCUMENT)
                .map_err(|source| ComposeError::Read { path: path.clone(), source })?;
            sources.push((path.clone(), text));
        }
        ComposeFiles::parse(&sources)
    }

    /// Checks already-read files: `(path, text)` in `-c` order.
    pub fn parse(sources: &[(PathBuf, String)]) -> Result<ComposeFiles, ComposeError> {
        if sources.is_empty() {
            return Err(ComposeError::NoFiles);
        }
        let mut services = BTreeSet::new();
        let mut constraints: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut version: Option<(PathBuf, String)> = None;
        for (path, text) in sources {
            let file = parse_file(path, text)?;
            if let Some(v) = file.version {
                match &version {
                    Some((first_path, first)) if normalize_version(first) != normalize_version(&v) => {
                        return Err(ComposeError::VersionMismatch {
                            first_path: first_path.clone(),
                            first: first.clone(),
                            path: path.clone(),
                            version: v,
                        });
                    }
                    Some(_) => {}
                    None => version = Some((path.clone(), v)),
                }
            }
            services.extend(file.services);
            for (service, list) in file.constraints {
                constraints.entry(service).or_default().extend(list);
            }
        }
        if services.is_empty() {
            return Err(ComposeError::NoServices);
        }
        Ok(ComposeFiles {
            paths: sources.iter().map(|(p, _)| p.clone()).collect(),
            version: version.map(|(_, v)| v),
            services,
            constraints,
        })
    }

    /// The files, in `-c` order.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// The `version:` the files declare, if any.
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// The declared service names (without the `<stack>_` prefix).
    pub fn services(&self) -> &BTreeSet<String> {
        &self.services
    }

    /// Each declared service's placement constraints
    /// (`deploy.placement.constraints`, every file's appended in `-c` order,
    /// as `docker stack deploy` merges them), with `${NAME}`, `${NAME:-default}`,
    /// `${NAME-default}` and `$NAME` replaced from `vars`. A variable that is
    /// not in `vars` stays as written, which no constraint reader accepts.
    pub fn placement_constraints(&self, vars: &[(String, String)]) -> BTreeMap<String, Vec<String>> {
        self.services
            .iter()
            .map(|service| {
                let list = self.constraints.get(service).map(Vec::as_slice).unwrap_or_default();
                (service.clone(), list.iter().map(|c| interpolate(c, vars)).collect())
            })
            .collect()
    }

    /// The overlay that stamps `id` on every declared service, as one more
    /// `-c` file: `deploy.labels` maps merge across files, so the overlay adds
    /// the label and changes nothing else. It repeats the files' `version:`
    /// because docker/cli refuses to merge files whose versions differ.
    ///
    /// # Panics
    ///
    /// Never: a mapping of strings always serialises.
    pub fn deploy_overlay(&self, id: &DeployId) -> String {
        self.label_overlay(
            DEPLOY_ID_LABEL,
            id.as_str(),
            &format!("Generated by lkg: stamps deploy {id} on every service of this deploy."),
        )
    }

    /// The overlay that sets service label `label` to `value` on every
    /// declared service (see [`deploy_overlay`](ComposeFiles::deploy_overlay)),
    /// under the comment line `header`.
    ///
    /// # Panics
    ///
    /// Never: a mapping of strings always serialises.
    pub fn label_overlay(&self, label: &str, value: &str, header: &str) -> String {
        self.label_and_constraint_overlay(label, value, header, &BTreeMap::new())
    }

    /// [`label_overlay`](ComposeFiles::label_overlay), plus one placement
    /// constraint for some services (short name -> constraint, such as
    /// `node.id == <id>`). Constraint lists are appended across files, so
    /// the overlay's constraint is one more that must hold.
    ///
    /// # Panics
    ///
    /// Never: a mapping of strings always serialises.
    pub fn label_and_constraint_overlay(
        &self,
        label: &str,
        value: &str,
        header: &str,
        constraints: &BTreeMap<String, String>,
    ) -> String {
        let mut services = Mapping::new();
        for name in &self.services {
            let mut labels = Mapping::new();
            labels.insert(label.into(), value.into());
            let mut deploy = Mapping::new();
            deploy.insert("labels".into(), Value::Mapping(labels));
            if let Some(constraint) = constraints.get(name) {
                let mut placement = Mapping::new();
                placement.insert("constraints".into(), Value::Sequence(vec![constraint.as_str().into()]));
                deploy.insert("placement".into(), Value::Mapping(placement));
            }
            let mut service = Mapping::new();
            service.insert("deploy".into(), Value::Mapping(deploy));
            services.insert(name.as_str().into(), Value::Mapping(service));
        }
        let mut root = Mapping::new();
        if let Some(version) = &self.version {
            root.insert("version".into(), version.as_str().into());
        }
        root.insert("services".into(), Value::Mapping(services));
        let yaml = serde_yaml_ng::to_string(&Value::Mapping(root)).expect("a mapping of strings serialises");
        format!("# {header}\n{yaml}")
    }
}

struct ParsedFile {
    version: Option<String>,
    services: Vec<String>,
    constraints: Vec<(String, Vec<String>)>,
}

/// Compose's variable syntax, enough for constraints: `$$`, `$NAME`,
/// `${NAME}`, `${NAME:-default}`, `${NAME-default}`.
fn interpolate(text: &str, vars: &[(String, String)]) -> String {
    let lookup = |name: &str| vars.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(braced) = after.strip_prefix('{')
            && let Some(end) = braced.find('}')
        {
            let inner = &braced[..end];
            let (name, default) = match inner.find(":-").or_else(|| inner.find('-')) {
                Some(i) if inner[i..].starts_with(":-") => (&inner[..i], Some(&inner[i + 2..])),
                Some(i) => (&inner[..i], Some(&inner[i + 1..])),
                None => (inner, None),
            };
            match (lookup(name), default) {
                (Some(v), _) => out.push_str(v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => out.push_str(&rest[at..=at + 2 + end]),
            }
            rest = &braced[end + 1..];
        } else {
            let len = after.bytes().take_while(|b| b.is_ascii_alphanumeric() || *b == b'_').count();
            match lookup(&after[..len]).filter(|_| len > 0) {
                Some(v) => out.push_str(v),
                None => out.push_str(&rest[at..at + 1 + len]),
            }
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    out
}

/// `deploy.placement.constraints` of one service of a file, if it is a list of strings.
fn service_constraints(service: &Value) -> Vec<String> {
    let list = service.get("deploy").and_then(|d| d.get("placement")).and_then(|p| p.get("constraints"));
    match list {
        Some(Value::Sequence(items)) => items.iter().filter_map(|i| i.as_str().map(str::to_owned)).collect(),
        _ => Vec::new(),
    }
}

fn parse_file(path: &Path, text: &str) -> Result<ParsedFile, ComposeError> {
    let shape = |reason: String| ComposeError::Shape { path: path.to_owned(), reason };
    let yaml = |source| ComposeError::Yaml { path: path.to_owned(), source };
    let mut root: Value = crate::yaml::from_str(text).map_err(yaml)?;
    // `<<: *anchor` merge keys are common in recipes; resolve them as docker/cli does.
    root.apply_merge().map_err(|e| yaml(e.into()))?;
    let Value::Mapping(root) = root else {
        return Err(shape("the top level is not a mapping".to_owned()));
    };
    let version = match root.get("version") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(other) => return Err(shape(format!("`version` is {}, not a string", kind(other)))),
    };
    let (services, constraints) = match root.get("services") {
        None | Some(Value::Null) => (Vec::new(), Vec::new()),
        Some(Value::Mapping(map)) => {
            let mut names = Vec::with_capacity(map.len());
            let mut constraints = Vec::new();
            for (key, value) in map {
                let Value::String(name) = key else {
                    return Err(shape(format!("a service name is {}, not a string", kind(key))));
                };
                if !valid_service_name(name) {
                    return Err(shape(format!("service name {name:?} has characters other than a-z A-Z 0-9 . _ -")));
                }
                if let Value::Tagged(tagged) = value {
                    // Compose-spec `!reset`/`!override` can drop a service
                    // in an override file; docker/cli's loader does not know
                    // them, so lkg cannot tell which services remain.
                    return Err(shape(format!(
                        "service {name:?} uses the YAML tag {}, which docker stack deploy does not support",
                        tagged.tag
                    )));
                }
                names.push(name.clone());
                constraints.push((name.clone(), service_constraints(value)));
            }
            (names, constraints)
        }
        Some(other) => return Err(shape(format!("`services` is {}, not a mapping", kind(other)))),
    };
    Ok(ParsedFile { version, services, constraints })
}

/// docker/cli treats a missing version, `""` and `"3"` as its default 3.x.
fn normalize_version(version: &str) -> &str {
    match version {
        "" | "3" => "3",
        v => v,
    }
}

/// The compose v3 schema's pattern for service names.
fn valid_service_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

impl lkg_core::Classify for ComposeError {
    fn kind(&self) -> lkg_core::FailureKind {
        lkg_core::FailureKind::Input
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(texts: &[&str]) -> Result<ComposeFiles, ComposeError> {
        let sources: Vec<(PathBuf, String)> =
            texts.iter().enumerate().map(|(i, t)| (PathBuf::from(format!("c{i}.yml")), (*t).to_owned())).collect();
        ComposeFiles::parse(&sources)
    }

    #[test]
    fn alias_bombs_and_deep_nesting_are_refused_naming_the_file() {
        let bomb = format!(
            "services: {{a: {{image: a}}}}\nx: &x \"{}\"\ny: [{}]\n",
            "x".repeat(200_000),
            ["*x"; 50].join(", ")
        );
        let err = files(&["services: {a: {image: a}}\n", &bomb]).unwrap_err();
        assert!(
            matches!(&err, ComposeError::Yaml { path, source: crate::yaml::YamlError::Expansion { .. } } if path.as_os_str() == "c1.yml"),
            "{err}"
        );
        assert!(err.to_string().starts_with("compose file c1.yml: its aliases"), "{err}");
        let deep = format!("services: {}", "[".repeat(100_000));
        let err = files(&[&deep]).unwrap_err();
        assert!(
            matches!(err, ComposeError::Yaml { source: crate::yaml::YamlError::FlowIndicators { .. }, .. }),
            "{err}"
        );
    }

    #[test]
    fn tolerates_fields_lkg_does_not_use() {
        let compose = files(&[r#"
version: "3.8"
x-common: &common
  image: app:1
services:
  app:
    <<: *common
    deploy:
      update_config: { order: start-first, failure_action: rollback, monitor: 5s }
      rollback_config: { order: stop-first }
    x-lkg-note: extension fields are fine
  worker:
    image: worker:1
    healthcheck: { test: ["CMD", "/app", "health"], interval: 1s }
volumes:
  data:
"#])
        .unwrap();
        assert_eq!(compose.services().iter().collect::<Vec<_>>(), ["app", "worker"]);
        assert_eq!(compose.version(), Some("3.8"));
    }

    #[test]
    fn override_files_add_services_and_never_remove_any() {
        let compose = files(&[
            "version: '3.8'\nservices:\n  app: {image: a}\n  db: {image: d}\n",
            "version: '3.8'\nservices:\n  app: {environment: [X=1]}\n  cache: {image: c}\n",
            "volumes: {data: {}}\n",
        ])
        .unwrap();
        assert_eq!(compose.services().iter().collect::<Vec<_>>(), ["app", "cache", "db"]);
    }

    #[test]
    fn unreadable_compose_is_an_error_that_says_why() {
        let err = files(&["services: [app, db]\n"]).unwrap_err();
        assert_eq!(err.to_string(), "compose file c0.yml is not a compose file: `services` is a list, not a mapping");
        let err = files(&["services:\n  app: {image: a\n"]).unwrap_err();
        assert!(matches!(err, ComposeError::Yaml { .. }), "{err}");
        let err = files(&["services:\n  app: !reset null\n"]).unwrap_err();
        assert!(err.to_string().contains("!reset"), "{err}");
        assert!(matches!(files(&["volumes: {}\n"]).unwrap_err(), ComposeError::NoServices));
        let err = files(&["version: '3.8'\nservices: {a: {}}\n", "version: '3.7'\nservices: {b: {}}\n"]).unwrap_err();
        assert!(matches!(err, ComposeError::VersionMismatch { .. }), "{err}");
        assert!(files(&["version: '3'\nservices: {a: {}}\n", "services: {b: {}}\n"]).is_ok());
    }

    #[test]
    fn constraints_append_across_files_and_interpolate() {
        let compose = files(&[
            "services:\n  app:\n    deploy:\n      placement:\n        constraints: [node.role == manager]\n  web: {}\n",
            "services:\n  app:\n    deploy:\n      placement:\n        constraints: ['node.id == ${NODE}', 'node.labels.x == ${X:-d}', '$$A $UNSET ${U}']\n",
        ])
        .unwrap();
        let vars = [("NODE".to_owned(), "n2".to_owned())];
        let got = compose.placement_constraints(&vars);
        assert_eq!(got["app"], ["node.role == manager", "node.id == n2", "node.labels.x == d", "$A $UNSET ${U}"]);
        assert!(got["web"].is_empty());
        let overlay = compose.label_and_constraint_overlay(
            "l",
            "v",
            "h",
            &BTreeMap::from([("app".to_owned(), "node.id == n2".to_owned())]),
        );
        insta::assert_snapshot!(overlay, @r"
        # h
        services:
          app:
            deploy:
              labels:
                l: v
              placement:
                constraints:
                - node.id == n2
          web:
            deploy:
              labels:
                l: v
        ");
    }

    #[test]
    fn overlay_stamps_every_service_and_keeps_the_version() {
        let compose = files(&["version: \"3.8\"\nservices:\n  app: {image: a}\n  db: {image: d}\n"]).unwrap();
        let id = DeployId::parse("deploy-0123456789abcdef").unwrap();
        insta::assert_snapshot!(compose.deploy_overlay(&id), @r#"
        # Generated by lkg: stamps deploy deploy-0123456789abcdef on every service of this deploy.
        version: '3.8'
        services:
          app:
            deploy:
              labels:
                lkg.deploy-id: deploy-0123456789abcdef
          db:
            deploy:
              labels:
                lkg.deploy-id: deploy-0123456789abcdef
        "#);
        // The overlay is itself a compose file declaring the same services.
        let again = files(&[&compose.deploy_overlay(&id)]).unwrap();
        assert_eq!(again.services(), compose.services());
    }
}
