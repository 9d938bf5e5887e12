//! Image references, digests and commit ids, validated the way registries and
//! git read them.

use std::fmt;
use std::str::FromStr;

use lkg_core::hex;
use serde::{Deserialize, Deserializer, Serialize};
use sha2::Digest as _;

/// A content digest `algorithm:hex`: `sha256:` with 64 lowercase hex
/// characters, or `sha512:` with 128 (the algorithms the OCI image spec
/// registers), as lock files pin images and registries name every manifest
/// and blob.
///
/// Parsing (and deserializing) validates the algorithm and the hex;
/// [`Digest::of_same_kind`] and [`DigestWriter`] hash content to compare
/// with it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Digest(String);

/// The hash functions a [`Digest`] can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// SHA-256, the default everywhere.
    Sha256,
    /// SHA-512, allowed by the OCI image spec.
    Sha512,
}

impl Algorithm {
    /// `sha256` or `sha512`, as digests and OCI layouts (`blobs/sha256/`)
    /// write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a string is not a [`Digest`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DigestError {
    /// No `algorithm:` prefix.
    #[error("`{value}` is not a digest: expected `sha256:` followed by 64 lowercase hex characters")]
    NoAlgorithm {
        /// The text.
        value: String,
    },
    /// An algorithm other than sha256 or sha512.
    #[error("digest `{value}` uses algorithm `{algorithm}`: expected sha256 (or sha512)")]
    UnknownAlgorithm {
        /// The text.
        value: String,
        /// The algorithm found.
        algorithm: String,
    },
    /// The hex part has the wrong length (a short or truncated digest).
    #[error("digest `{value}` has {found} hex characters after `{algorithm}:`, expected {expected}")]
    WrongLength {
        /// The text.
        value: String,
        /// The algorithm.
        algorithm: String,
        /// Hex characters the algorithm needs.
        expected: usize,
        /// Hex characters found.
        found: usize,
    },
    /// A character that is not lowercase hex.
    #[error("digest `{value}` contains {bad:?}: expected lowercase hex after `{algorithm}:`")]
    NotHex {
        /// The text.
        value: String,
        /// The algorithm.
        algorithm: String,
        /// The first offending character.
        bad: char,
    },
}

impl DigestError {
    /// The text that is not a digest.
    pub fn value(&self) -> &str {
        match self {
            DigestError::NoAlgorithm { value }
            | DigestError::UnknownAlgorithm { value, .. }
            | DigestError::WrongLength { value, .. }
            | DigestError::NotHex { value, .. } => value,
        }
    }
}

impl Digest {
    /// Parses and validates `algorithm:hex`.
    pub fn parse(value: &str) -> Result<Digest, DigestError> {
        let Some((algorithm, hex)) = value.split_once(':') else {
            return Err(DigestError::NoAlgorithm { value: value.to_owned() });
        };
        let expected = match algorithm {
            "sha256" => Algorithm::Sha256.hex_len(),
            "sha512" => Algorithm::Sha512.hex_len(),
            _ => {
                return Err(DigestError::UnknownAlgorithm { value: value.to_owned(), algorithm: algorithm.to_owned() });
            }
        };
        if let Some(bad) = hex.chars().find(|c| !matches!(c, '0'..='9' | 'a'..='f')) {
            return Err(DigestError::NotHex { value: value.to_owned(), algorithm: algorithm.to_owned(), bad });
        }
        if hex.len() != expected {
            return Err(DigestError::WrongLength {
                value: value.to_owned(),
                algorithm: algorithm.to_owned(),
                expected,
                found: hex.len(),
            });
        }
        Ok(Digest(value.to_owned()))
    }

    /// The sha256 digest of `bytes`.
    pub fn sha256(bytes: &[u8]) -> Digest {
        let mut w = DigestWriter::new(Algorithm::Sha256);
        w.update(bytes);
        w.finish()
    }

    /// The digest of `bytes` under this digest's algorithm: what to compare
    /// with `self` to check content.
    #[must_use]
    pub fn of_same_kind(&self, bytes: &[u8]) -> Digest {
        let mut w = DigestWriter::new(self.algorithm());
        w.update(bytes);
        w.finish()
    }

    /// `sha256:...` as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The algorithm part.
    pub fn algorithm(&self) -> Algorithm {
        if self.0.starts_with("sha512:") { Algorithm::Sha512 } else { Algorithm::Sha256 }
    }

    /// The hex part.
    pub fn hex(&self) -> &str {
        self.0.split_once(':').map_or("", |(_, h)| h)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Digest, DigestError> {
        Digest::parse(s)
    }
}

/// A digest read from JSON (a manifest, a journal) is validated like one
/// parsed from text.
impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let text = String::deserialize(d)?;
        Digest::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Incremental hashing of streamed content (a blob read chunk by chunk).
#[derive(Debug, Clone)]
pub struct DigestWriter(Hasher);

#[derive(Debug, Clone)]
enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl DigestWriter {
    /// A fresh hasher for `algorithm`.
    pub fn new(algorithm: Algorithm) -> DigestWriter {
        DigestWriter(match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        })
    }

    /// Feeds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        match &mut self.0 {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    /// The digest of everything fed.
    pub fn finish(self) -> Digest {
        match self.0 {
            Hasher::Sha256(h) => Digest(format!("sha256:{}", hex(&h.finalize()))),
            Hasher::Sha512(h) => Digest(format!("sha512:{}", hex(&h.finalize()))),
        }
    }
}

/// Whether `value` is a full git commit id: 40 lowercase hex characters
/// (SHA-1), or 64 (a SHA-256 repository). Abbreviated ids are ambiguous as a
/// repository grows, and branch or tag names move: neither pins anything.
pub fn is_full_commit(value: &str) -> bool {
    matches!(value.len(), 40 | 64) && value.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// An image reference `[domain/]path[:tag][@digest]`, with the name
/// normalised as docker and skopeo do (`busybox` is
/// `docker.io/library/busybox`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// Why a string is not an [`ImageRef`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReferenceError {
    /// The repository name is malformed.
    #[error("`{}` is not an image reference: {reason}", lkg_core::clip(value))]
    Name {
        /// The text.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// The tag is malformed.
    #[error(
        "`{}` has an invalid tag `{}`: tags are up to 128 of [A-Za-z0-9_.-], not starting with `.` or `-`",
        lkg_core::clip(value),
        lkg_core::clip(tag)
    )]
    Tag {
        /// The text.
        value: String,
        /// The tag.
        tag: String,
    },
    /// The digest after `@` is malformed.
    #[error("`{}` has a malformed digest", lkg_core::clip(value))]
    Digest {
        /// The text.
        value: String,
        /// Why the digest is malformed.
        source: DigestError,
    },
}

impl ImageRef {
    /// Parses `[domain/]path[:tag][@digest]`.
    pub fn parse(value: &str) -> Result<ImageRef, ReferenceError> {
        let name_err = |reason: &str| ReferenceError::Name { value: value.to_owned(), reason: reason.to_owned() };
        let (rest, digest) = match value.rsplit_once('@') {
            Some((rest, digest)) => (
                rest,
                Some(
                    Digest::parse(digest)
                        .map_err(|source| ReferenceError::Digest { value: value.to_owned(), source })?,
                ),
            ),
            None => (value, None),
        };
        // A colon after the last slash starts the tag; one before it is a port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].find(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag
            && !is_valid_tag(tag)
        {
            return Err(ReferenceError::Tag { value: value.to_owned(), tag: tag.to_owned() });
        }
        if name.is_empty() {
            return Err(name_err("the repository name is empty"));
        }
        let (domain, path) = match name.split_once('/') {
            Some((first, path)) if first.contains(['.', ':']) || first == "localhost" => (first, path.to_owned()),
            _ => ("docker.io", name.to_owned()),
        };
        let domain = if domain == "index.docker.io" { "docker.io" } else { domain };
        if domain.is_empty() || domain.chars().any(|c| c.is_whitespace() || c == '/') {
            return Err(name_err("the registry host is malformed"));
        }
        // A port is 1 to 65535 (an IPv6 host is bracketed: its colons are not the port's).
        let port = if domain.starts_with('[') {
            domain.rsplit_once("]:").map(|(_, port)| port)
        } else {
            domain.rsplit_once(':').map(|(_, port)| port)
        };
        if let Some(port) = port
            && !port.parse::<u16>().is_ok_and(|p| p > 0)
        {
            return Err(name_err(&format!("the registry port `{port}` is not a port (1 to 65535)")));
        }
        let path = if domain == "docker.io" && !path.contains('/') { format!("library/{path}") } else { path };
        // The distribution spec's limit, which registries enforce.
        if domain.len() + 1 + path.len() > 255 {
            return Err(name_err(&format!(
                "the repository name is {} characters long; registries accept at most 255",
                domain.len() + 1 + path.len()
            )));
        }
        for component in path.split('/') {
            if !is_valid_component(component) {
                return Err(name_err(&format!(
                    "path component `{component}` must be lowercase letters, digits and separators (`.`, `_`, `-`), \
                     starting and ending with a letter or digit"
                )));
            }
        }
        Ok(ImageRef { domain: domain.to_owned(), path, tag: tag.map(str::to_owned), digest })
    }

    /// The registry host (and port), e.g. `ghcr.io` or `127.0.0.1:5000`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path within the registry, e.g. `ublue-os/kinoite-main`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The full repository name, `domain/path` (skopeo's `Name`).
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The tag, if the reference has one.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if the reference is pinned.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The same repository at `tag` (no digest).
    #[must_use]
    pub fn with_tag(&self, tag: &str) -> ImageRef {
        ImageRef { domain: self.domain.clone(), path: self.path.clone(), tag: Some(tag.to_owned()), digest: None }
    }

    /// The same repository pinned at `digest` (no tag): `name@digest`.
    #[must_use]
    pub fn with_digest(&self, digest: &Digest) -> ImageRef {
        ImageRef { domain: self.domain.clone(), path: self.path.clone(), tag: None, digest: Some(digest.clone()) }
    }

    /// The repository alone (no tag, no digest).
    #[must_use]
    pub fn repository(&self) -> ImageRef {
        ImageRef { domain: self.domain.clone(), path: self.path.clone(), tag: None, digest: None }
    }
}

fn is_valid_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && tag.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn is_valid_component(component: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    component.starts_with(alnum)
        && component.ends_with(alnum)
        && component.chars().all(|c| alnum(c) || matches!(c, '.' | '_' | '-'))
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl FromStr for ImageRef {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<ImageRef, ReferenceError> {
        ImageRef::parse(s)
    }
}

impl lkg_core::Classify for ReferenceError {
    fn kind(&self) -> lkg_core::FailureKind {
        lkg_core::FailureKind::Input
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:5cbac4096e2a05ff4f51778a9276064064e548183de98f5130086d4d01c4e021";

    #[test]
    fn digests_are_validated() {
        assert_eq!(Digest::parse(D).unwrap().hex().len(), 64);
        assert!(matches!(Digest::parse("sha256:5cba"), Err(DigestError::WrongLength { found: 4, .. })));
        assert!(matches!(Digest::parse(&D.to_uppercase()), Err(DigestError::UnknownAlgorithm { .. })));
        assert!(matches!(Digest::parse(&D.replace('c', "C")), Err(DigestError::NotHex { bad: 'C', .. })));
        assert!(matches!(Digest::parse("latest"), Err(DigestError::NoAlgorithm { .. })));
        assert!(matches!(Digest::parse("md5:abc"), Err(DigestError::UnknownAlgorithm { .. })));
        assert_eq!(
            Digest::sha256(b"").as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let d = Digest::sha256(b"hello");
        assert_eq!(d.as_str(), "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
        assert!("sha256:ABC".parse::<Digest>().is_err());
        assert!("md5:00".parse::<Digest>().is_err());
        assert!(format!("sha256:{}", "A".repeat(64)).parse::<Digest>().is_err());
    }

    #[test]
    fn deserializing_validates() {
        let d: Digest = serde_json::from_str(&format!("{D:?}")).unwrap();
        assert_eq!((d.as_str(), d.algorithm(), d.hex().len()), (D, Algorithm::Sha256, 64));
        let err = serde_json::from_str::<Digest>(r#""sha256:5cba""#).unwrap_err().to_string();
        assert!(err.contains("4 hex characters"), "{err}");
    }

    #[test]
    fn streaming_equals_one_shot() {
        let mut w = DigestWriter::new(Algorithm::Sha256);
        w.update(b"hel");
        w.update(b"lo");
        assert_eq!(w.finish(), Digest::sha256(b"hello"));
        let long = Digest::parse(&format!("sha512:{}", "0".repeat(128))).unwrap();
        let mut w = DigestWriter::new(Algorithm::Sha512);
        w.update(b"hello");
        assert_eq!(w.finish(), long.of_same_kind(b"hello"));
        assert_eq!(long.of_same_kind(b"hello").algorithm(), Algorithm::Sha512);
    }

    #[test]
    fn references_parse_like_docker() {
        let r = ImageRef::parse("ghcr.io/ublue-os/kinoite-main:latest").unwrap();
        assert_eq!((r.name().as_str(), r.tag(), r.digest()), ("ghcr.io/ublue-os/kinoite-main", Some("latest"), None));
        let r = ImageRef::parse(&format!("ghcr.io/ublue-os/kinoite-main@{D}")).unwrap();
        assert_eq!(r.digest().unwrap().as_str(), D);
        assert_eq!(r.to_string(), format!("ghcr.io/ublue-os/kinoite-main@{D}"));
        let r = ImageRef::parse("127.0.0.1:5000/lkg/app:1.0").unwrap();
        assert_eq!((r.domain(), r.path(), r.tag()), ("127.0.0.1:5000", "lkg/app", Some("1.0")));
        assert_eq!(ImageRef::parse("busybox").unwrap().name(), "docker.io/library/busybox");
        assert_eq!(ImageRef::parse("localhost/x").unwrap().domain(), "localhost");
        assert!(ImageRef::parse("ghcr.io/Upper/x").is_err());
        assert!(ImageRef::parse("ghcr.io/x:-bad").is_err());
        assert!(matches!(ImageRef::parse("ghcr.io/x@sha256:5cba"), Err(ReferenceError::Digest { .. })));
        assert!(ImageRef::parse("").is_err());
    }

    #[test]
    fn ports_and_names_registries_refuse_are_refused_at_once() {
        for bad in ["127.0.0.1:99999/app:1", "127.0.0.1:0/app:1", "host.example:http/app:1"] {
            let err = ImageRef::parse(bad).unwrap_err().to_string();
            assert!(err.contains("is not a port (1 to 65535)"), "{bad}: {err}");
        }
        let long = format!("ghcr.io/{}:1", "a".repeat(5000));
        let err = ImageRef::parse(&long).unwrap_err().to_string();
        assert!(err.contains("registries accept at most 255"), "{err}");
        assert!(ImageRef::parse("127.0.0.1:65535/app:1").is_ok());
        assert!(ImageRef::parse("[::1]:5000/app:1").is_ok());
    }

    #[test]
    fn commits_must_be_full() {
        assert!(is_full_commit("906e565f712f43a598dcd272dc8ca053fcc99116"));
        assert!(!is_full_commit("906e565"));
        assert!(!is_full_commit("main"));
        assert!(!is_full_commit("906E565F712F43A598DCD272DC8CA053FCC99116"));
    }
}
