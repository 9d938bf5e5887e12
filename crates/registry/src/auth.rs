//! Registry authentication: `WWW-Authenticate` challenges, credentials from
//! the Docker and containers config files (and their helpers), and tokens.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use crate::RegistryError;

/// A credential for one registry. Its `Debug` form never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// User name and password (or a personal access token used as one).
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: String,
    },
    /// An `OAuth2` refresh token (`identitytoken` in `config.json`).
    IdentityToken(String),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Basic { username, .. } => write!(f, "Basic({username}:<redacted>)"),
            Credential::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
        }
    }
}

impl Credential {
    /// The `Authorization: Basic ...` value.
    pub(crate) fn basic_header(&self) -> Option<String> {
        match self {
            Credential::Basic { username, password } => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            )),
            Credential::IdentityToken(_) => None,
        }
    }
}

/// Where credentials come from.
pub trait CredentialSource: Send + Sync + fmt::Debug {
    /// The credential for `registry` (as written in references, e.g.
    /// `ghcr.io` or `127.0.0.1:5000`), or `None` for anonymous access.
    fn credential(&self, registry: &str) -> Result<Option<Credential>, RegistryError>;
}

/// No credentials: anonymous access only.
#[derive(Debug, Clone, Copy, Default)]
pub struct Anonymous;

impl CredentialSource for Anonymous {
    fn credential(&self, _registry: &str) -> Result<Option<Credential>, RegistryError> {
        Ok(None)
    }
}

/// Fixed credentials per registry (tests, `--creds`).
#[derive(Clone, Default)]
pub struct StaticCredentials(pub BTreeMap<String, Credential>);

impl fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.iter()).finish()
    }
}

impl CredentialSource for StaticCredentials {
    fn credential(&self, registry: &str) -> Result<Option<Credential>, RegistryError> {
        Ok(self.0.get(registry).cloned())
    }
}

/// Credentials the way `docker` and `skopeo` find them.
///
/// Files, first match wins: `$REGISTRY_AUTH_FILE` (the containers
/// `auth.json`), `$XDG_RUNTIME_DIR/containers/auth.json`, then
/// `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`). In each
/// file, a `credHelpers` entry for the registry wins, then an `auths` entry,
/// then the `credsStore` helper. Helpers run as `docker-credential-<name>
/// get` with the registry on stdin.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    files: Vec<PathBuf>,
}

impl DockerConfig {
    /// The files from the environment, in lookup order.
    pub fn from_env() -> DockerConfig {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        let mut files = Vec::new();
        if let Some(f) = var("REGISTRY_AUTH_FILE") {
            files.push(f);
        }
        if let Some(dir) = var("XDG_RUNTIME_DIR") {
            files.push(dir.join("containers/auth.json"));
        }
        if let Some(dir) = var("DOCKER_CONFIG") {
            files.push(dir.join("config.json"));
        } else if let Some(home) = var("HOME") {
            files.push(home.join(".docker/config.json"));
        }
        DockerConfig { files }
    }

    /// Exactly these files, in order.
    pub fn from_files(files: Vec<PathBuf>) -> DockerConfig {
        DockerConfig { files }
    }

    #[allow(clippy::disallowed_methods, reason = "its errors carry the path as a field")]
    fn lookup_file(path: &Path, registry: &str) -> Result<Option<Credential>, RegistryError> {
        let bad_file = |reason: String| RegistryError::AuthFile { path: path.to_owned(), reason };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(bad_file("is not UTF-8 text (a JSON credentials file is)".into()));
            }
            Err(source) => return Err(RegistryError::Io { path: path.to_owned(), source }),
        };
        // Where, not what: serde_json's message can quote a value, and this file holds secrets.
        let file: ConfigFile = serde_json::from_str(&text).map_err(|e| {
            let what = match e.classify() {
                serde_json::error::Category::Data => "not a credentials file (a field has the wrong type)",
                _ => "not valid JSON",
            };
            bad_file(format!("{what}, at line {} column {}", e.line(), e.column()))
        })?;
        let keys = registry_keys(registry);
        if let Some(helper) = keys.iter().find_map(|k| file.cred_helpers.get(k)) {
            return run_helper(helper, registry);
        }
        for (key, entry) in &file.auths {
            if keys.contains(&normalize_key(key)) {
                if let Some(token) = entry.identitytoken.as_ref().filter(|t| !t.is_empty()) {
                    return Ok(Some(Credential::IdentityToken(token.clone())));
                }
                if let Some(auth) = entry.auth.as_ref().filter(|a| !a.is_empty()) {
                    let bad = |reason: &str| bad_file(format!("the `auth` entry for {registry} {reason}"));
                    let decoded = base64::engine::general_purpose::STANDARD
                        .decode(auth.trim())
                        .map_err(|_| bad("is not base64"))?;
                    let decoded = String::from_utf8(decoded).map_err(|_| bad("is not UTF-8"))?;
                    let (username, password) = decoded.split_once(':').ok_or_else(|| bad("is not user:password"))?;
                    return Ok(Some(Credential::Basic {
                        username: username.to_owned(),
                        password: password.to_owned(),
                    }));
                }
                if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
                    return Ok(Some(Credential::Basic { username: u.clone(), password: p.clone() }));
                }
            }
        }
        if let Some(store) = file.creds_store.as_ref().filter(|s| !s.is_empty()) {
            return run_helper(store, registry);
        }
        Ok(None)
    }
}

impl CredentialSource for DockerConfig {
    fn credential(&self, registry: &str) -> Result<Option<Credential>, RegistryError> {
        for file in &self.files {
            if let Some(c) = DockerConfig::lookup_file(file, registry)? {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default)]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default)]
    creds_store: Option<String>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    auth: Option<String>,
    identitytoken: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

/// The keys a registry may be filed under (Docker Hub has several).
fn registry_keys(registry: &str) -> Vec<String> {
    if matches!(registry, "docker.io" | "index.docker.io" | "registry-1.docker.io") {
        vec!["docker.io".into(), "index.docker.io".into(), "registry-1.docker.io".into()]
    } else {
        vec![registry.to_owned()]
    }
}

/// `https://index.docker.io/v1/` -> `index.docker.io`.
fn normalize_key(key: &str) -> String {
    let k = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")).unwrap_or(key);
    k.split('/').next().unwrap_or(k).to_owned()
}

#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

fn run_helper(helper: &str, registry: &str) -> Result<Option<Credential>, RegistryError> {
    run_helper_program(std::ffi::OsStr::new(&format!("docker-credential-{helper}")), registry)
}

fn run_helper_program(program: &std::ffi::OsStr, registry: &str) -> Result<Option<Credential>, RegistryError> {
    use std::io::Write as _;
    let program_path = program;
    let program = program.to_string_lossy().into_owned();
    let fail = |reason: String| RegistryError::Credentials { registry: registry.to_owned(), reason };
    let server = if registry_keys(registry).len() > 1 { "https://index.docker.io/v1/" } else { registry };
    let mut child = std::process::Command::new(program_path)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run {program}: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(server.as_bytes()).map_err(|e| fail(format!("{program}: {e}")))?;
    }
    let out = child.wait_with_output().map_err(|e| fail(format!("{program}: {e}")))?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        // The protocol's "not found" answer is anonymous access, not an error.
        if said.to_lowercase().contains("credentials not found") {
            return Ok(None);
        }
        return Err(fail(format!("{program} get exited with {}: {}", out.status, said.trim())));
    }
    let answer: HelperAnswer =
        serde_json::from_slice(&out.stdout).map_err(|e| fail(format!("{program} answered malformed JSON: {e}")))?;
    if answer.username == "<token>" {
        Ok(Some(Credential::IdentityToken(answer.secret)))
    } else {
        Ok(Some(Credential::Basic { username: answer.username, password: answer.secret }))
    }
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `Basic realm="..."`.
    Basic,
    /// `Bearer realm="...",service="...",scope="..."`.
    Bearer {
        /// The token endpoint.
        realm: String,
        /// The service name to ask the token for.
        service: Option<String>,
    },
}

impl Challenge {
    /// Parses a `WWW-Authenticate` value; `None` for unknown schemes.
    pub fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, rest) = header.split_once(char::is_whitespace).unwrap_or((header, ""));
        let params = auth_params(rest);
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => Some(Challenge::Basic),
            "bearer" => {
                Some(Challenge::Bearer { realm: params.get("realm")?.clone(), service: params.get("service").cloned() })
            }
            _ => None,
        }
    }
}

/// `key="quoted, value",key2=token` -> map (keys lowercased).
fn auth_params(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ',')).collect();
        if key.is_empty() {
            break;
        }
        if chars.next() != Some('=') {
            continue;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            let raw: String = std::iter::from_fn(|| chars.next_if(|c| *c != ',')).collect();
            raw.trim().clone_into(&mut value);
        }
        out.insert(key.trim().to_ascii_lowercase(), value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into())
            })
        );
        assert_eq!(Challenge::parse(r#"Basic realm="lkg-test""#), Some(Challenge::Basic));
        assert_eq!(Challenge::parse("Negotiate abc"), None);
        assert_eq!(Challenge::parse(r#"Bearer service="x""#), None, "a bearer challenge needs a realm");
        let p = auth_params(r#"realm="a\"b", service=plain , scope="x,y""#);
        assert_eq!(p["realm"], "a\"b");
        assert_eq!(p["service"], "plain");
        assert_eq!(p["scope"], "x,y");
    }

    #[test]
    fn docker_config_auths_helpers_and_precedence() {
        let dir = tempfile::tempdir().unwrap();
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let first = dir.path().join("auth.json");
        std::fs::write(&first, format!(r#"{{"auths":{{"ghcr.io":{{"auth":"{}"}}}}}}"#, b64("bot:first"))).unwrap();
        let second = dir.path().join("config.json");
        std::fs::write(
            &second,
            format!(
                r#"{{"auths":{{"ghcr.io":{{"auth":"{}"}},"https://index.docker.io/v1/":{{"auth":"{}"}},"q.example":{{"identitytoken":"refresh"}}}},
                   "credHelpers":{{"helped.example":"lkg-test-missing-helper"}}}}"#,
                b64("bot:second"),
                b64("hub:pw")
            ),
        )
        .unwrap();
        let cfg = DockerConfig::from_files(vec![first, second]);
        let basic = |u: &str, p: &str| Some(Credential::Basic { username: u.into(), password: p.into() });
        assert_eq!(cfg.credential("ghcr.io").unwrap(), basic("bot", "first"));
        assert_eq!(cfg.credential("docker.io").unwrap(), basic("hub", "pw"));
        assert_eq!(cfg.credential("q.example").unwrap(), Some(Credential::IdentityToken("refresh".into())));
        assert_eq!(cfg.credential("other.example").unwrap(), None);
        let err = cfg.credential("helped.example").unwrap_err().to_string();
        assert!(err.contains("docker-credential-lkg-test-missing-helper"), "{err}");
    }

    #[test]
    fn a_broken_credentials_file_is_bad_input_and_never_quoted() {
        use lkg_core::{Classify as _, FailureKind};
        let dir = tempfile::tempdir().unwrap();
        let secret = "hunter2-planted";
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let cases: [(&str, Vec<u8>, &str); 5] = [
            (
                "truncated",
                format!(r#"{{"auths":{{"r.example":{{"auth":"{}""#, b64(&format!("u:{secret}"))).into_bytes(),
                "not valid JSON",
            ),
            ("wrong type", format!(r#"{{"auths":"{secret}"}}"#).into_bytes(), "wrong type"),
            ("not UTF-8", b"{\"auths\":{\"r.example\":{\"auth\":\"\xff\xfe\"}}}".to_vec(), "not UTF-8"),
            (
                "not base64",
                format!(r#"{{"auths":{{"r.example":{{"auth":"{secret}!"}}}}}}"#).into_bytes(),
                "is not base64",
            ),
            (
                "no colon",
                format!(r#"{{"auths":{{"r.example":{{"auth":"{}"}}}}}}"#, b64(secret)).into_bytes(),
                "user:password",
            ),
        ];
        for (name, content, says) in cases {
            let path = dir.path().join(format!("{name}.json"));
            std::fs::write(&path, content).unwrap();
            let err = DockerConfig::from_files(vec![path]).credential("r.example").unwrap_err();
            assert_eq!(err.kind(), FailureKind::Input, "{name}: {err}");
            let shown = err.to_string();
            assert!(shown.contains(says) && shown.contains(&format!("{name}.json")), "{name}: {shown}");
            assert!(!shown.contains(secret) && !shown.contains(&b64(secret)), "{name} quotes the secret: {shown}");
        }
    }

    #[test]
    fn credential_helper_protocol() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let helper = dir.path().join("docker-credential-lkgtest");
        std::fs::write(
            &helper,
            "#!/bin/sh\nread server\n[ \"$server\" = reg.example ] || { echo 'credentials not found in native keychain'; exit 1; }\necho '{\"ServerURL\":\"reg.example\",\"Username\":\"ci\",\"Secret\":\"s3cret\"}'\n",
        )
        .unwrap();
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let answer = run_helper_program(helper.as_os_str(), "reg.example").unwrap();
        assert_eq!(answer, Some(Credential::Basic { username: "ci".into(), password: "s3cret".into() }));
        assert_eq!(run_helper_program(helper.as_os_str(), "other.example").unwrap(), None);
        assert!(!format!("{answer:?}").contains("s3cret"), "Debug must redact the secret");
    }
}
