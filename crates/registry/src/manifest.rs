use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Digest, RegistryError};

/// Media types lkg reads and writes.
pub mod media {
    /// OCI image manifest.
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// OCI image index (multi-platform).
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// Docker image manifest, schema 2.
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// Docker manifest list (multi-platform).
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    /// OCI image config.
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// cosign's simple-signing payload layer.
    pub const COSIGN_SIMPLESIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
    /// The empty descriptor's media type: the config of an artifact that has
    /// none (its blob is [`EMPTY_JSON`]).
    pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
    /// The content of the empty descriptor: `{}`.
    pub const EMPTY_JSON: &[u8] = b"{}";
    /// Every manifest type, for `Accept`: a registry answers with the stored
    /// bytes only when their type is accepted (otherwise it may convert them,
    /// and the digest changes).
    pub const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, \
        application/vnd.docker.distribution.manifest.list.v2+json, \
        application/vnd.oci.image.manifest.v1+json, \
        application/vnd.docker.distribution.manifest.v2+json";

    /// Whether `media_type` is an index or a Docker manifest list.
    pub fn is_index(media_type: &str) -> bool {
        media_type == OCI_INDEX || media_type == DOCKER_LIST
    }
}

/// A manifest exactly as the registry stores it: raw bytes, their digest and
/// media type. lkg never re-serialises a manifest it copies, so digests are
/// preserved.
#[derive(Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The raw bytes.
    pub bytes: Vec<u8>,
    /// The digest of `bytes`.
    pub digest: Digest,
    /// The media type (from `Content-Type`, else the document's `mediaType`).
    pub media_type: String,
}

impl fmt::Debug for Manifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manifest")
            .field("digest", &self.digest)
            .field("media_type", &self.media_type)
            .field("len", &self.bytes.len())
            .finish()
    }
}

impl Manifest {
    /// A manifest from bytes; the digest is computed and the media type is
    /// taken from `media_type`, else from the document.
    pub fn from_bytes(bytes: Vec<u8>, media_type: Option<&str>) -> Result<Manifest, RegistryError> {
        let digest = Digest::sha256(&bytes);
        let declared: Probe = serde_json::from_slice(&bytes)
            .map_err(|e| RegistryError::Malformed { what: format!("manifest {digest}"), reason: e.to_string() })?;
        let media_type = media_type
            .filter(|m| !m.is_empty() && *m != "application/json" && *m != "text/plain")
            .map(str::to_owned)
            .or(declared.media_type)
            .unwrap_or_else(|| {
                if declared.manifests.is_some() { media::OCI_INDEX.to_owned() } else { media::OCI_MANIFEST.to_owned() }
            });
        Ok(Manifest { bytes, digest, media_type })
    }

    /// Whether this is an index (or Docker manifest list).
    pub fn is_index(&self) -> bool {
        media::is_index(&self.media_type)
    }

    /// Parses the document.
    pub fn parse(&self) -> Result<ManifestKind, RegistryError> {
        let malformed = |e: serde_json::Error| RegistryError::Malformed {
            what: format!("manifest {} ({})", self.digest, self.media_type),
            reason: e.to_string(),
        };
        if self.is_index() {
            serde_json::from_slice(&self.bytes).map(ManifestKind::Index).map_err(malformed)
        } else {
            serde_json::from_slice(&self.bytes).map(ManifestKind::Image).map_err(malformed)
        }
    }
}

#[derive(Deserialize)]
struct Probe {
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    manifests: Option<serde_json::Value>,
}

/// A parsed manifest.
#[derive(Debug, Clone)]
#[allow(
    clippy::large_enum_variant,
    reason = "parsed once per fetch and short-lived; a Box would change every match on it"
)]
pub enum ManifestKind {
    /// One image: a config and layers.
    Image(ImageManifest),
    /// An index of per-platform manifests.
    Index(ImageIndex),
}

/// An image manifest (OCI or Docker schema 2), every field of OCI image-spec
/// 1.1 included: an artifact's `artifactType` and `subject` are read, not
/// dropped.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    /// Always 2.
    pub schema_version: u32,
    /// The declared media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// What kind of artifact this is (OCI 1.1), e.g. a Sigstore bundle or an SBOM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// The layer blobs, in order.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    /// The manifest this one refers to (OCI 1.1): it is then one of that
    /// manifest's referrers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Manifest annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// An image index or Docker manifest list (every field of OCI image-spec 1.1).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    /// Always 2.
    pub schema_version: u32,
    /// The declared media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// What kind of artifact this index is (OCI 1.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The per-platform manifests (or, in a referrers list, the referrers).
    pub manifests: Vec<Descriptor>,
    /// The manifest this index refers to (OCI 1.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Index annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// A content descriptor: what a manifest says about a blob or child manifest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// The media type of the content.
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// Where else the content may be fetched from (non-distributable layers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    /// Annotations (cosign puts its signature here; a referrers list copies
    /// each referrer's manifest annotations here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// The content itself, base64, for small blobs embedded in the descriptor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// The platform, for an index entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// The artifact type of the content (OCI 1.1): set on the entries of a
    /// referrers list, and on an index entry that is an artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

impl Descriptor {
    /// A descriptor with only the three required fields.
    pub fn new(media_type: impl Into<String>, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest,
            size,
            urls: None,
            annotations: None,
            data: None,
            platform: None,
            artifact_type: None,
        }
    }

    /// The descriptor of `bytes` (digest and size computed).
    pub fn of(media_type: impl Into<String>, bytes: &[u8]) -> Descriptor {
        Descriptor::new(media_type, Digest::sha256(bytes), bytes.len() as u64)
    }

    /// The descriptor of [`media::EMPTY_JSON`], an artifact's config when it has none.
    pub fn empty() -> Descriptor {
        Descriptor::of(media::OCI_EMPTY, media::EMPTY_JSON)
    }

    /// The descriptor that names `manifest` in a referrers list, by the
    /// distribution spec's rules: its `artifactType` is the manifest's, else
    /// (for an image manifest) its config's media type; its annotations are
    /// the manifest's.
    pub fn referrer_of(manifest: &Manifest) -> Result<Descriptor, RegistryError> {
        let mut d = Descriptor::new(manifest.media_type.clone(), manifest.digest.clone(), manifest.bytes.len() as u64);
        match manifest.parse()? {
            ManifestKind::Image(image) => {
                d.artifact_type = image.artifact_type.filter(|t| !t.is_empty()).or(Some(image.config.media_type));
                d.annotations = image.annotations;
            }
            ManifestKind::Index(index) => {
                d.artifact_type = index.artifact_type.filter(|t| !t.is_empty());
                d.annotations = index.annotations;
            }
        }
        Ok(d)
    }
}

/// An OS/architecture pair (and variant), as in an index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub struct Platform {
    /// `amd64`, `arm64`, ...
    pub architecture: String,
    /// `linux`, ...
    pub os: String,
    /// `v8`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// The OS version (`10.0.17763.1040` for Windows images).
    #[serde(rename = "os.version", default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    /// Required OS features (`win32k`).
    #[serde(rename = "os.features", default, skip_serializing_if = "Option::is_none")]
    pub os_features: Option<Vec<String>>,
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Platform {
    type Err = RegistryError;

    /// `os/arch[/variant]`, e.g. `linux/arm64/v8`.
    fn from_str(s: &str) -> Result<Platform, RegistryError> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] | [os, arch, _] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
                os: (*os).to_owned(),
                architecture: (*arch).to_owned(),
                variant: parts.get(2).map(|v| (*v).to_owned()),
                os_version: None,
                os_features: None,
            }),
            _ => Err(RegistryError::InvalidPlatform { input: s.to_owned() }),
        }
    }
}

impl Platform {
    /// Whether an index entry for `self` satisfies a request for `wanted`
    /// (a request without a variant matches any variant).
    pub fn matches(&self, wanted: &Platform) -> bool {
        self.os == wanted.os
            && self.architecture == wanted.architecture
            && (wanted.variant.is_none() || self.variant == wanted.variant)
    }

    /// The platform this program runs on, in OCI words.
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            other => other,
        };
        Platform {
            architecture: architecture.to_owned(),
            os: std::env::consts::OS.to_owned(),
            variant: None,
            os_version: None,
            os_features: None,
        }
    }
}

/// The parts of an image config lkg reads: labels, creation time, platform.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ImageConfig {
    /// When the image was built (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// CPU architecture.
    #[serde(default)]
    pub architecture: String,
    /// Operating system.
    #[serde(default)]
    pub os: String,
    /// Architecture variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// The runtime config, where labels live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<RuntimeConfig>,
}

/// The `config` object of an image config.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct RuntimeConfig {
    /// Image labels (`ostree.linux`, `org.opencontainers.image.version`, ...).
    #[serde(rename = "Labels", default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
}

impl ImageConfig {
    /// The labels (empty when the image has none).
    pub fn labels(&self) -> BTreeMap<String, String> {
        self.config.as_ref().and_then(|c| c.labels.clone()).unwrap_or_default()
    }

    /// The platform this config declares.
    pub fn platform(&self) -> Platform {
        Platform {
            architecture: self.architecture.clone(),
            os: self.os.clone(),
            variant: self.variant.clone(),
            os_version: None,
            os_features: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_type_from_header_else_document() {
        let body = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"x","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":1},"layers":[]}"#;
        let m = Manifest::from_bytes(body.to_vec(), None).unwrap();
        assert_eq!(m.media_type, media::DOCKER_MANIFEST);
        assert_eq!(m.digest, Digest::sha256(body));
        assert!(matches!(m.parse().unwrap(), ManifestKind::Image(_)));
        let idx = br#"{"schemaVersion":2,"manifests":[]}"#;
        let m = Manifest::from_bytes(idx.to_vec(), Some("application/json")).unwrap();
        assert_eq!(m.media_type, media::OCI_INDEX);
    }

    #[test]
    fn platforms() {
        let p: Platform = "linux/arm64/v8".parse().unwrap();
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert!(p.matches(&"linux/arm64".parse().unwrap()));
        assert!(!p.matches(&"linux/arm64/v7".parse().unwrap()));
        assert!("linux".parse::<Platform>().is_err());
    }
}
