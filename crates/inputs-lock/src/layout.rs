//! A [`Resolver`] over OCI image layouts on disk (`skopeo copy docker://...
//! oci:DIR:TAG`): resolution without a network, for air-gapped replays,
//! image exports, and tests.
//!
//! Layout format: OCI image spec, image-layout.md: `index.json` lists
//! manifests, a tag is the descriptor annotation
//! `org.opencontainers.image.ref.name`, blobs live in `blobs/<alg>/<hex>`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::reference::{Digest, DigestWriter, ImageRef};
use crate::resolve::{Image, Layer, Resolver};

const REF_NAME: &str = "org.opencontainers.image.ref.name";
const INDEX_TYPES: [&str; 2] =
    ["application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"];

/// OCI image layouts, one per repository name.
#[derive(Debug, Clone)]
pub struct OciLayouts {
    layouts: Vec<(String, PathBuf)>,
    os: String,
    architecture: String,
}

/// Why a layout could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutError {
    /// No layout was given for the repository.
    #[error("no OCI layout for repository {repository}: pass --layout {repository}=DIR")]
    NoLayout {
        /// The repository name.
        repository: String,
    },
    /// A file of the layout could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A JSON file of the layout is malformed.
    #[error("{} is not a valid {what}: {reason}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What it should be.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A blob's content does not match its digest.
    #[error("{} does not match its digest: expected {expected}, found {actual}; the layout is corrupt, copy the image again", path.display())]
    DigestMismatch {
        /// The blob file.
        path: PathBuf,
        /// Its name.
        expected: Digest,
        /// Its content's digest.
        actual: String,
    },
    /// An index has no manifest for the platform.
    #[error("{reference} has no manifest for {platform}")]
    NoPlatform {
        /// The image.
        reference: String,
        /// The platform wanted.
        platform: String,
    },
    /// The sink refused bytes (the scan stopped).
    #[error("the layer reader stopped")]
    Sink(#[source] std::io::Error),
}

#[derive(Deserialize)]
struct Index {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct Platform {
    os: String,
    architecture: String,
}

#[derive(Deserialize)]
struct Manifest {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    #[serde(default)]
    manifests: Vec<Descriptor>,
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Config {
    #[serde(default)]
    config: Option<ConfigBody>,
}

#[derive(Deserialize)]
struct ConfigBody {
    #[serde(rename = "Labels", default)]
    labels: Option<BTreeMap<String, String>>,
}

impl Default for OciLayouts {
    fn default() -> OciLayouts {
        OciLayouts::new()
    }
}

impl OciLayouts {
    /// No layouts yet; the platform of multi-platform images is linux/amd64.
    pub fn new() -> OciLayouts {
        OciLayouts { layouts: Vec::new(), os: "linux".into(), architecture: "amd64".into() }
    }

    /// Serves repository `repository` (`ghcr.io/ublue-os/kinoite-main`) from
    /// the layout in `dir`.
    pub fn add(&mut self, repository: &ImageRef, dir: impl Into<PathBuf>) {
        self.layouts.push((repository.name(), dir.into()));
    }

    /// Picks `os`/`architecture` from multi-platform images.
    #[must_use]
    pub fn with_platform(mut self, os: &str, architecture: &str) -> OciLayouts {
        os.clone_into(&mut self.os);
        architecture.clone_into(&mut self.architecture);
        self
    }

    fn dir(&self, image: &ImageRef) -> Result<&Path, LayoutError> {
        let name = image.name();
        self.layouts
            .iter()
            .find(|(repo, _)| *repo == name)
            .map(|(_, dir)| dir.as_path())
            .ok_or(LayoutError::NoLayout { repository: name })
    }

    fn index(dir: &Path) -> Result<Index, LayoutError> {
        let path = dir.join("index.json");
        let bytes = fs_err::read(&path).map_err(|source| LayoutError::Read { path: path.clone(), source })?;
        serde_json::from_slice(&bytes).map_err(|e| LayoutError::Malformed {
            path,
            what: "OCI index",
            reason: e.to_string(),
        })
    }

    /// The top-level descriptor digest for `image`: its digest, or the
    /// descriptor whose ref name is its tag (bare or as `name:tag`).
    fn top_digest(dir: &Path, image: &ImageRef) -> Result<Option<Digest>, LayoutError> {
        if let Some(digest) = image.digest() {
            return Ok(blob_path(dir, digest).is_file().then(|| digest.clone()));
        }
        let tag = image.tag().unwrap_or("latest");
        let full = format!("{}:{tag}", image.name());
        let index = OciLayouts::index(dir)?;
        let found =
            index.manifests.iter().find(|d| d.annotations.get(REF_NAME).is_some_and(|n| n == tag || *n == full));
        found
            .map(|d| {
                Digest::parse(&d.digest).map_err(|e| LayoutError::Malformed {
                    path: dir.join("index.json"),
                    what: "OCI index",
                    reason: e.to_string(),
                })
            })
            .transpose()
    }

    fn platform_manifest(&self, dir: &Path, image: &ImageRef, digest: &Digest) -> Result<Manifest, LayoutError> {
        let manifest: Manifest = read_json(dir, digest, "image manifest")?;
        if !INDEX_TYPES.contains(&manifest.media_type.as_str()) && manifest.manifests.is_empty() {
            return Ok(manifest);
        }
        let child = manifest
            .manifests
            .iter()
            .find(|d| d.platform.as_ref().is_some_and(|p| p.os == self.os && p.architecture == self.architecture))
            .ok_or_else(|| LayoutError::NoPlatform {
                reference: image.to_string(),
                platform: format!("{}/{}", self.os, self.architecture),
            })?;
        let child = parse_digest(dir, &child.digest)?;
        read_json(dir, &child, "image manifest")
    }
}

fn blob_path(dir: &Path, digest: &Digest) -> PathBuf {
    dir.join("blobs").join(digest.algorithm().as_str()).join(digest.hex())
}

fn parse_digest(dir: &Path, text: &str) -> Result<Digest, LayoutError> {
    Digest::parse(text).map_err(|e| LayoutError::Malformed {
        path: dir.to_owned(),
        what: "descriptor",
        reason: e.to_string(),
    })
}

/// Reads a small blob, verifies it, parses it.
fn read_json<T: for<'de> Deserialize<'de>>(dir: &Path, digest: &Digest, what: &'static str) -> Result<T, LayoutError> {
    let path = blob_path(dir, digest);
    let bytes = fs_err::read(&path).map_err(|source| LayoutError::Read { path: path.clone(), source })?;
    verify(&path, digest, &digest.of_same_kind(&bytes))?;
    serde_json::from_slice(&bytes).map_err(|e| LayoutError::Malformed { path, what, reason: e.to_string() })
}

fn verify(path: &Path, expected: &Digest, actual: &Digest) -> Result<(), LayoutError> {
    if actual == expected {
        Ok(())
    } else {
        Err(LayoutError::DigestMismatch {
            path: path.to_owned(),
            expected: expected.clone(),
            actual: actual.to_string(),
        })
    }
}

// The layout is local: these `async fn`s do blocking file I/O, which is
// what a command-line run wants (one resolution at a time). A server would
// wrap the resolver in `spawn_blocking`.
impl Resolver for OciLayouts {
    type Error = LayoutError;

    async fn digest(&self, image: &ImageRef) -> Result<Option<Digest>, LayoutError> {
        OciLayouts::top_digest(self.dir(image)?, image)
    }

    async fn inspect(&self, image: &ImageRef) -> Result<Option<Image>, LayoutError> {
        let dir = self.dir(image)?;
        let Some(digest) = OciLayouts::top_digest(dir, image)? else { return Ok(None) };
        let manifest = self.platform_manifest(dir, image, &digest)?;
        let labels = match &manifest.config {
            Some(config) => {
                let config: Config = read_json(dir, &parse_digest(dir, &config.digest)?, "image config")?;
                config.config.and_then(|c| c.labels).unwrap_or_default()
            }
            None => BTreeMap::new(),
        };
        let layers = manifest
            .layers
            .iter()
            .map(|d| {
                Ok(Layer { digest: parse_digest(dir, &d.digest)?, media_type: d.media_type.clone(), size: d.size })
            })
            .collect::<Result<Vec<_>, LayoutError>>()?;
        Ok(Some(Image { digest, labels, layers }))
    }

    async fn tags(&self, repository: &ImageRef) -> Result<Vec<String>, LayoutError> {
        let prefix = format!("{}:", repository.name());
        let index = OciLayouts::index(self.dir(repository)?)?;
        Ok(index
            .manifests
            .iter()
            .filter_map(|d| d.annotations.get(REF_NAME))
            .map(|n| n.strip_prefix(&prefix).unwrap_or(n).to_owned())
            .collect())
    }

    async fn read_layer(
        &self,
        repository: &ImageRef,
        layer: &Layer,
        sink: &mut (dyn Write + Send),
    ) -> Result<(), LayoutError> {
        let path = blob_path(self.dir(repository)?, &layer.digest);
        let mut file = fs_err::File::open(&path).map_err(|source| LayoutError::Read { path: path.clone(), source })?;
        let mut hasher = DigestWriter::new(layer.digest.algorithm());
        let mut buf = vec![0; 256 * 1024];
        loop {
            let n = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(LayoutError::Read { path, source }),
            };
            hasher.update(&buf[..n]);
            sink.write_all(&buf[..n]).map_err(LayoutError::Sink)?;
        }
        verify(&path, &layer.digest, &hasher.finish())
    }
}
