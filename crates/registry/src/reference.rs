use std::fmt;
use std::str::FromStr;

use crate::{Digest, RegistryError};

/// Docker Hub's registry name in references, and the host its API lives on.
pub(crate) const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// An image reference: `registry[:port]/repository[:tag][@digest]`.
///
/// Parsing accepts the forms operators type: `docker://` prefixes, Docker
/// Hub short names (`busybox` is `docker.io/library/busybox:latest`), a tag,
/// a digest, or both (the digest wins when fetching; the tag is kept for
/// display and for pushes).
///
/// ```
/// use lkg_registry::Reference;
/// let r: Reference = "docker://ghcr.io/danathar/kinoite-zfs:latest".parse().unwrap();
/// assert_eq!((r.registry(), r.repository(), r.tag()), ("ghcr.io", "danathar/kinoite-zfs", Some("latest")));
/// let hub: Reference = "busybox".parse().unwrap();
/// assert_eq!(hub.to_string(), "docker.io/library/busybox:latest");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// A reference from parts; `repository` must already be normalised.
    pub fn new(registry: &str, repository: &str, tag: Option<&str>, digest: Option<Digest>) -> Reference {
        Reference {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            tag: tag.map(str::to_owned),
            digest,
        }
    }

    /// The registry as written in the reference (`docker.io`, `127.0.0.1:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The host (and port) the registry API answers on (`registry-1.docker.io` for Docker Hub).
    pub fn api_host(&self) -> &str {
        api_host(&self.registry)
    }

    /// The repository path (`library/busybox`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// What to ask the registry for: the digest when there is one, else the tag.
    pub fn target(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_owned(),
        }
    }

    /// `registry/repository`, the name cosign puts in `docker-reference`.
    pub fn name(&self) -> String {
        let registry = if self.registry == DOCKER_HUB { "index.docker.io" } else { &self.registry };
        format!("{registry}/{}", self.repository)
    }

    /// The same repository at `digest` (the tag is dropped).
    #[must_use]
    pub fn at_digest(&self, digest: &Digest) -> Reference {
        Reference { digest: Some(digest.clone()), tag: None, ..self.clone() }
    }

    /// The same repository at `tag` (the digest is dropped).
    #[must_use]
    pub fn at_tag(&self, tag: &str) -> Reference {
        Reference { tag: Some(tag.to_owned()), digest: None, ..self.clone() }
    }

    /// Whether both name the same repository on the same registry.
    pub fn same_repository(&self, other: &Reference) -> bool {
        self.api_host() == other.api_host() && self.repository == other.repository
    }

    /// Whether both live on the same registry (cross-repository mounts work).
    pub fn same_registry(&self, other: &Reference) -> bool {
        self.api_host() == other.api_host()
    }
}

/// The host the registry API of `registry` answers on.
pub(crate) fn api_host(registry: &str) -> &str {
    if registry == DOCKER_HUB || registry == "index.docker.io" { DOCKER_HUB_API } else { registry }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = RegistryError;

    fn from_str(input: &str) -> Result<Reference, RegistryError> {
        let bad = |reason: &str| RegistryError::InvalidReference { input: input.to_owned(), reason: reason.to_owned() };
        let s = input.trim();
        let s = s.strip_prefix("docker://").unwrap_or(s);
        if s.is_empty() {
            return Err(bad("empty reference"));
        }
        if s.contains("://") {
            return Err(bad("only docker:// references are supported"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((rest, d)) => (rest, Some(d.parse::<Digest>().map_err(|e| bad(&e.to_string()))?)),
            None => (s, None),
        };
        // A tag is a ':' after the last '/' (a ':' before it is a port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].find(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        let (registry, repository) = match name.split_once('/') {
            Some((first, path)) if first.contains('.') || first.contains(':') || first == "localhost" => {
                (first.to_owned(), path.to_owned())
            }
            _ => (DOCKER_HUB.to_owned(), name.to_owned()),
        };
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        if repository.is_empty()
            || repository.split('/').any(|c| {
                c.is_empty()
                    || !c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                    || !c.as_bytes()[0].is_ascii_alphanumeric()
            })
        {
            return Err(bad("the repository must be lowercase letters, digits and separators (._-/)"));
        }
        if registry.is_empty() || registry.contains(|c: char| c.is_whitespace() || c == '/') {
            return Err(bad("invalid registry host"));
        }
        if let Some(tag) = tag {
            let ok = !tag.is_empty()
                && tag.len() <= 128
                && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
                && (tag.as_bytes()[0].is_ascii_alphanumeric() || tag.as_bytes()[0] == b'_');
            if !ok {
                return Err(bad("a tag is 1-128 of [A-Za-z0-9_.-], not starting with '.' or '-'"));
            }
        }
        let tag = match (tag, &digest) {
            (None, None) => Some("latest".to_owned()),
            (t, _) => t.map(str::to_owned),
        };
        Ok(Reference { registry, repository, tag, digest })
    }
}

/// Whether `host` (with or without a port) is a loopback address, where
/// plain HTTP is used without asking.
pub fn is_loopback(host: &str) -> bool {
    let bare = host_without_port(host);
    bare == "localhost"
        || bare.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
        || bare
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::Ipv6Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split(']').next().map_or(host, |h| &host[..=h.len()]);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !h.contains(':') => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Reference {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn normalises_docker_hub_and_prefixes() {
        assert_eq!(parse("busybox").to_string(), "docker.io/library/busybox:latest");
        assert_eq!(parse("docker://ublue-os/kinoite-main:43").to_string(), "docker.io/ublue-os/kinoite-main:43");
        assert_eq!(parse("busybox").api_host(), "registry-1.docker.io");
        assert_eq!(parse("busybox").name(), "index.docker.io/library/busybox");
        let r = parse("127.0.0.1:5000/a/b:c");
        assert_eq!((r.registry(), r.repository(), r.tag()), ("127.0.0.1:5000", "a/b", Some("c")));
        let r = parse("localhost/x");
        assert_eq!((r.registry(), r.repository(), r.tag()), ("localhost", "x", Some("latest")));
    }

    #[test]
    fn digest_and_tag() {
        let d = Digest::sha256(b"x");
        let r = parse(&format!("ghcr.io/ublue-os/kinoite-main@{d}"));
        assert_eq!((r.tag(), r.digest()), (None, Some(&d)));
        assert_eq!(r.target(), d.to_string());
        let r = parse(&format!("ghcr.io/o/r:43@{d}"));
        assert_eq!((r.tag(), r.target()), (Some("43"), d.to_string()));
    }

    #[test]
    fn rejects_bad_input() {
        for bad in ["", "UPPER/case", "a//b", "r:-bad", "http://x/y", "x@sha256:zz", "ghcr.io/"] {
            assert!(bad.parse::<Reference>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn loopback_hosts() {
        for h in ["127.0.0.1:5000", "localhost", "localhost:80", "[::1]:5000", "127.1.2.3"] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["ghcr.io", "10.0.0.1:5000", "example.com:443"] {
            assert!(!is_loopback(h), "{h}");
        }
    }
}
