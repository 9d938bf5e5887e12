//! Canonical domains: derived from a base domain through an explicit
//! namespace, and checked against the names other services already use.
//!
//! The swarm CI harness derived a canonical's domain as `warm-<app>.<base>`,
//! the same scheme its live shared services used: the canonical of `keycloak`
//! was `warm-keycloak.<base>`, exactly the domain of the live identity
//! provider every app logged in through, so enrolling it would have
//! overwritten production SSO. Here the namespace is explicit (default
//! `warm-canon`) and every derived domain is checked against declared
//! reserved names, so such a clash is an error before anything is deployed.

use std::fmt;

use serde::Serialize;

use lkg_core::{AppName, AppNameError, check_label};

/// The namespace canonicals live in unless told otherwise: `warm-canon-<app>.<base>`.
pub const DEFAULT_NAMESPACE: &str = "warm-canon";

/// The longest domain name (RFC 1035 §2.3.4, without the trailing dot).
const MAX_DOMAIN_LEN: usize = 253;

/// A namespace: the label prefix of every canonical domain, e.g. `warm-canon`
/// in `warm-canon-gitea.ci.example.net`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Namespace(String);

impl Namespace {
    /// Validates a namespace (the same rules as a DNS label).
    pub fn new(namespace: &str) -> Result<Namespace, DomainError> {
        check_label(namespace)
            .map_err(|source| DomainError::BadNamespace { namespace: namespace.to_owned(), source })?;
        Ok(Namespace(namespace.to_owned()))
    }

    /// The namespace as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Namespace {
    fn default() -> Namespace {
        Namespace(DEFAULT_NAMESPACE.to_owned())
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A domain that something other than a canonical uses, and who uses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reserved {
    /// The domain, normalised (lowercase, no trailing dot).
    pub domain: String,
    /// Who uses it, in words an operator recognises ("live keycloak SSO").
    pub user: String,
}

impl Reserved {
    /// Parses `DOMAIN=USER`, the command-line form.
    pub fn parse(spec: &str) -> Result<Reserved, DomainError> {
        let (domain, user) = spec
            .split_once('=')
            .filter(|(d, u)| !d.trim().is_empty() && !u.trim().is_empty())
            .ok_or_else(|| DomainError::BadReserved { spec: spec.to_owned() })?;
        Ok(Reserved { domain: normalise(domain), user: user.trim().to_owned() })
    }
}

/// Derives canonical domains and refuses those that collide with a reserved name.
///
/// ```
/// use lkg_canonical::{AppName, DomainScheme, Namespace, Reserved};
///
/// let keycloak = AppName::new("keycloak")?;
/// let live_sso = Reserved::parse("warm-keycloak.ci.example.net=live keycloak (shared SSO)")?;
///
/// // The harness's old scheme: the canonical lands on the live provider.
/// let old = DomainScheme::new("ci.example.net")?.namespace(Namespace::new("warm")?).reserve(live_sso.clone());
/// assert!(old.domain_for(&keycloak).is_err());
///
/// // The default namespace keeps canonicals apart.
/// let scheme = DomainScheme::new("ci.example.net")?.reserve(live_sso);
/// assert_eq!(scheme.domain_for(&keycloak)?, "warm-canon-keycloak.ci.example.net");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DomainScheme {
    base: String,
    namespace: Namespace,
    reserved: Vec<Reserved>,
}

/// Why a domain cannot be derived or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DomainError {
    /// The base domain is not a domain name.
    #[error("base domain {base:?} is not a domain name: {reason}")]
    BadBase {
        /// The base given.
        base: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The namespace is not a DNS label.
    #[error("namespace {namespace:?} is not usable as a label prefix")]
    BadNamespace {
        /// The namespace given.
        namespace: String,
        /// Which label rule it breaks.
        #[source]
        source: AppNameError,
    },
    /// A reserved-name spec is not `DOMAIN=USER`.
    #[error("reserved name {spec:?} is not DOMAIN=USER (e.g. warm-keycloak.ci.example.net=live keycloak SSO)")]
    BadReserved {
        /// The spec given.
        spec: String,
    },
    /// `<namespace>-<app>` is longer than a DNS label.
    #[error(
        "the canonical domain label {label:?} of app {app} is {len} characters, more than a DNS label's 63: \
         use a shorter namespace"
    )]
    LabelTooLong {
        /// The app.
        app: AppName,
        /// The derived label.
        label: String,
        /// Its length.
        len: usize,
    },
    /// The whole domain is longer than DNS allows.
    #[error("the canonical domain {domain:?} of app {app} is longer than 253 characters")]
    DomainTooLong {
        /// The app.
        app: AppName,
        /// The derived domain.
        domain: String,
    },
    /// The domain is already used by something else.
    #[error(
        "domain {domain} would have two users: the canonical of app {app} and {reserved_by}; enrolling the \
         canonical would overwrite {reserved_by}. Pick a namespace no live service uses (--namespace), \
         or do not enrol {app}"
    )]
    Collision {
        /// The contested domain.
        domain: String,
        /// The app whose canonical wants it.
        app: AppName,
        /// Who already uses it, as declared.
        reserved_by: String,
    },
}

impl DomainScheme {
    /// A scheme over `base` (e.g. `ci.example.net`) in the default namespace,
    /// with no reserved names yet.
    pub fn new(base: &str) -> Result<DomainScheme, DomainError> {
        let base = normalise(base);
        let bad = |reason: &str| DomainError::BadBase { base: base.clone(), reason: reason.to_owned() };
        if base.is_empty() {
            return Err(bad("it is empty"));
        }
        if base.len() > MAX_DOMAIN_LEN {
            return Err(bad("it is longer than 253 characters"));
        }
        for label in base.split('.') {
            check_label(label).map_err(|e| bad(&format!("label {label:?}: {e}")))?;
        }
        Ok(DomainScheme { base, namespace: Namespace::default(), reserved: Vec::new() })
    }

    /// Uses `namespace` instead of the default.
    #[must_use]
    pub fn namespace(mut self, namespace: Namespace) -> DomainScheme {
        self.namespace = namespace;
        self
    }

    /// Declares a domain that is in use by something other than a canonical.
    #[must_use]
    pub fn reserve(mut self, reserved: Reserved) -> DomainScheme {
        self.reserved.push(reserved);
        self
    }

    /// The base domain.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The namespace.
    pub fn namespace_name(&self) -> &Namespace {
        &self.namespace
    }

    /// The reserved names declared so far.
    pub fn reserved(&self) -> &[Reserved] {
        &self.reserved
    }

    /// The canonical domain of `app`, `<namespace>-<app>.<base>`, unless it is
    /// too long or collides with a reserved name.
    pub fn domain_for(&self, app: &AppName) -> Result<String, DomainError> {
        let label = format!("{}-{}", self.namespace, app);
        if label.len() > lkg_core::MAX_LABEL_LEN {
            return Err(DomainError::LabelTooLong { app: app.clone(), len: label.len(), label });
        }
        let domain = format!("{label}.{}", self.base);
        if domain.len() > MAX_DOMAIN_LEN {
            return Err(DomainError::DomainTooLong { app: app.clone(), domain });
        }
        self.check(app, &domain)?;
        Ok(domain)
    }

    /// Checks an existing canonical domain (e.g. from a record written under
    /// an older scheme) against the reserved names.
    pub fn check(&self, app: &AppName, domain: &str) -> Result<(), DomainError> {
        let domain = normalise(domain);
        match self.reserved.iter().find(|r| r.domain == domain) {
            Some(reserved) => {
                Err(DomainError::Collision { domain, app: app.clone(), reserved_by: reserved.user.clone() })
            }
            None => Ok(()),
        }
    }
}

/// DNS names compare case-insensitively and `a.b.` is `a.b`.
fn normalise(domain: &str) -> String {
    domain.trim().trim_end_matches('.').to_ascii_lowercase()
}

impl lkg_core::Classify for DomainError {
    fn kind(&self) -> lkg_core::FailureKind {
        lkg_core::FailureKind::Input
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(name: &str) -> AppName {
        AppName::new(name).unwrap()
    }

    /// The clash this module exists for: the live identity provider and
    /// keycloak's data canonical both derived
    /// `warm-keycloak.ci.commoninternet.net`.
    #[test]
    fn the_keycloak_collision_names_both_users() {
        let live =
            Reserved::parse("warm-keycloak.ci.commoninternet.net=live-warm keycloak (shared SSO provider)").unwrap();
        let old = DomainScheme::new("ci.commoninternet.net")
            .unwrap()
            .namespace(Namespace::new("warm").unwrap())
            .reserve(live.clone());
        let err = old.domain_for(&app("keycloak")).unwrap_err();
        assert_eq!(
            err,
            DomainError::Collision {
                domain: "warm-keycloak.ci.commoninternet.net".to_owned(),
                app: app("keycloak"),
                reserved_by: "live-warm keycloak (shared SSO provider)".to_owned(),
            }
        );
        assert_eq!(
            err.to_string(),
            "domain warm-keycloak.ci.commoninternet.net would have two users: the canonical of app keycloak and \
             live-warm keycloak (shared SSO provider); enrolling the canonical would overwrite live-warm keycloak \
             (shared SSO provider). Pick a namespace no live service uses (--namespace), or do not enrol keycloak"
        );
        // The other apps of the old scheme did not collide.
        assert_eq!(old.domain_for(&app("gitea")).unwrap(), "warm-gitea.ci.commoninternet.net");

        let new = DomainScheme::new("ci.commoninternet.net").unwrap().reserve(live);
        assert_eq!(new.domain_for(&app("keycloak")).unwrap(), "warm-canon-keycloak.ci.commoninternet.net");
    }

    #[test]
    fn collisions_ignore_case_and_trailing_dots() {
        let scheme = DomainScheme::new("CI.Example.NET.")
            .unwrap()
            .reserve(Reserved::parse("Warm-Canon-Gitea.ci.example.net.=a hand-made gitea").unwrap());
        assert_eq!(scheme.base(), "ci.example.net");
        assert!(matches!(scheme.domain_for(&app("gitea")), Err(DomainError::Collision { .. })));
        assert!(matches!(
            scheme.check(&app("gitea"), "WARM-CANON-GITEA.ci.example.net"),
            Err(DomainError::Collision { .. })
        ));
    }

    #[test]
    fn a_record_from_an_older_scheme_is_checked_too() {
        let scheme = DomainScheme::new("ci.example.net")
            .unwrap()
            .reserve(Reserved::parse("warm-keycloak.ci.example.net=live keycloak").unwrap());
        assert!(scheme.check(&app("keycloak"), "warm-keycloak.ci.example.net").is_err());
        assert!(scheme.check(&app("keycloak"), "warm-canon-keycloak.ci.example.net").is_ok());
    }

    #[test]
    fn bad_inputs_are_named() {
        assert!(matches!(DomainScheme::new(""), Err(DomainError::BadBase { .. })));
        assert!(matches!(DomainScheme::new("ci..example.net"), Err(DomainError::BadBase { .. })));
        assert!(matches!(DomainScheme::new("ci_x.net"), Err(DomainError::BadBase { .. })));
        assert!(matches!(Namespace::new("warm."), Err(DomainError::BadNamespace { .. })));
        assert!(matches!(Reserved::parse("warm-keycloak.ci.example.net"), Err(DomainError::BadReserved { .. })));
        assert!(matches!(Reserved::parse("=x"), Err(DomainError::BadReserved { .. })));
        let long = DomainScheme::new("x.net").unwrap().namespace(Namespace::new(&"n".repeat(40)).unwrap());
        assert!(matches!(long.domain_for(&app(&"a".repeat(30))), Err(DomainError::LabelTooLong { len: 71, .. })));
    }
}
