use std::fmt;
use std::str::FromStr;

use lkg_inputs_lock::ImageRef;

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

    /// One grammar for image names in lkg: `lkg_inputs_lock::ImageRef`'s
    /// (docker's reference grammar, Docker Hub names normalised). On top of
    /// it, what an operator types on a command line: a `docker://` transport
    /// prefix (skopeo's habit; a lock file never holds one, so `ImageRef`
    /// refuses it) and no tag meaning `latest`.
    fn from_str(input: &str) -> Result<Reference, RegistryError> {
        let bad = |reason: String| RegistryError::InvalidReference { input: input.to_owned(), reason };
        let s = input.trim();
        let s = s.strip_prefix("docker://").unwrap_or(s);
        if s.is_empty() {
            return Err(bad("empty reference".to_owned()));
        }
        if s.contains("://") {
            return Err(bad("only docker:// references are supported".to_owned()));
        }
        let image = ImageRef::parse(s).map_err(|e| bad(lkg_core::render_chain(&e)))?;
        let mut reference = Reference::from(&image);
        if reference.tag.is_none() && reference.digest.is_none() {
            reference.tag = Some("latest".to_owned());
        }
        Ok(reference)
    }
}

impl From<&ImageRef> for Reference {
    /// The same image, as the registry client names it (no default tag is
    /// added: an `ImageRef` without tag or digest stays so).
    fn from(image: &ImageRef) -> Reference {
        Reference {
            registry: image.domain().to_owned(),
            repository: image.path().to_owned(),
            tag: image.tag().map(str::to_owned),
            digest: image.digest().cloned(),
        }
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

    /// `lkg-inputs` pins what `lkg-registry` resolves: the two must read
    /// every name the same way (Docker Hub short names, `index.docker.io`,
    /// ports, digests), and refuse the same malformed ones.
    #[test]
    fn agrees_with_the_inputs_lock_image_ref() {
        let d = Digest::sha256(b"x");
        let cases = [
            ("busybox", "docker.io", "library/busybox", None),
            ("docker://busybox", "docker.io", "library/busybox", None),
            ("index.docker.io/busybox:1.36", "docker.io", "library/busybox", Some("1.36")),
            ("docker.io/ublue-os/kinoite-main:43", "docker.io", "ublue-os/kinoite-main", Some("43")),
            ("ublue-os/kinoite-main:43", "docker.io", "ublue-os/kinoite-main", Some("43")),
            ("localhost/x", "localhost", "x", None),
            ("localhost:5000/a/b:c", "localhost:5000", "a/b", Some("c")),
            ("[::1]:5000/a/b:c", "[::1]:5000", "a/b", Some("c")),
            ("docker://ghcr.io/danathar/kinoite-zfs:latest", "ghcr.io", "danathar/kinoite-zfs", Some("latest")),
        ];
        for (input, domain, path, tag) in cases {
            for digest in [None, Some(&d)] {
                let text = digest.map_or_else(|| input.to_owned(), |d| format!("{input}@{d}"));
                let ours = parse(&text);
                let theirs = ImageRef::parse(text.strip_prefix("docker://").unwrap_or(&text))
                    .unwrap_or_else(|e| panic!("{text}: {e}"));
                assert_eq!((ours.registry(), ours.repository()), (domain, path), "{text}");
                assert_eq!((theirs.domain(), theirs.path()), (domain, path), "{text}");
                assert_eq!(
                    ours.digest().map(Digest::as_str),
                    theirs.digest().map(lkg_inputs_lock::Digest::as_str),
                    "{text}"
                );
                assert_eq!(theirs.tag(), tag, "{text}");
                // The registry's only addition: no tag and no digest means `latest`.
                let default = if digest.is_none() { Some("latest") } else { None };
                assert_eq!(ours.tag(), tag.or(default), "{text}");
                let tagged = Reference::from(&theirs);
                assert_eq!((tagged.registry(), tagged.repository(), tagged.digest()), (domain, path, ours.digest()));
            }
        }
        let sha = format!("sha256:{}", "a".repeat(64));
        for bad in [
            "UPPER/case".to_owned(),
            "a//b".to_owned(),
            "r:-bad".to_owned(),
            "ghcr.io/".to_owned(),
            "ghcr.io/trailing-/x".to_owned(),
            "x@sha256:zz".to_owned(),
            "x@sha256:5cba".to_owned(),
            format!("x@{}", sha.to_uppercase()),
            format!("x:{}", "t".repeat(129)),
        ] {
            assert!(bad.parse::<Reference>().is_err(), "lkg-registry accepts {bad:?}");
            assert!(ImageRef::parse(&bad).is_err(), "lkg-inputs-lock accepts {bad:?}");
        }
        // A lock names images as build files do; the transport prefix is command-line sugar.
        assert!(ImageRef::parse("docker://busybox").is_err());
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
