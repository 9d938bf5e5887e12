//! `inspect`: what an image is, from its manifest and config.

use std::collections::BTreeMap;

use futures_util::{StreamExt as _, TryStreamExt as _};
use serde::Serialize;

use crate::manifest::{ImageManifest, ManifestKind};
use crate::{Client, Digest, Reference, RegistryError};

/// What `inspect` reports. For a single image the top-level `labels`,
/// `created` and `layers` are its own; for an index they are absent and
/// each entry of `platforms` carries its own (the index digest is not the
/// digest of any platform's image).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Inspection {
    /// The reference inspected.
    pub reference: String,
    /// The manifest digest (of the index, for a multi-platform image).
    pub digest: Digest,
    /// The manifest media type.
    pub media_type: String,
    /// Config labels (single image only).
    pub labels: Option<BTreeMap<String, String>>,
    /// Creation time (single image only).
    pub created: Option<String>,
    /// Per platform: its manifest digest, labels, created, layers.
    pub platforms: Vec<PlatformImage>,
    /// Layers (single image only).
    pub layers: Option<Vec<Layer>>,
}

/// One platform's image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlatformImage {
    /// `os/arch[/variant]`.
    pub platform: String,
    /// The platform's manifest digest.
    pub digest: Digest,
    /// The config digest.
    pub config_digest: Digest,
    /// Config labels.
    pub labels: BTreeMap<String, String>,
    /// Creation time.
    pub created: Option<String>,
    /// Layers.
    pub layers: Vec<Layer>,
}

/// A layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Layer {
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// Its media type.
    pub media_type: String,
}

async fn platform_image(
    client: &Client,
    r: &Reference,
    digest: Digest,
    image: &ImageManifest,
    declared: Option<String>,
) -> Result<PlatformImage, RegistryError> {
    let config = client.config_of(r, image).await?;
    Ok(PlatformImage {
        platform: declared.unwrap_or_else(|| config.platform().to_string()),
        digest,
        config_digest: image.config.digest.clone(),
        labels: config.labels(),
        created: config.created.clone(),
        layers: image
            .layers
            .iter()
            .map(|l| Layer { digest: l.digest.clone(), size: l.size, media_type: l.media_type.clone() })
            .collect(),
    })
}

/// Inspects `r`.
pub async fn inspect(client: &Client, r: &Reference) -> Result<Inspection, RegistryError> {
    let manifest = client.get_manifest(r).await?;
    match manifest.parse()? {
        ManifestKind::Image(image) => {
            let p = platform_image(client, r, manifest.digest.clone(), &image, None).await?;
            Ok(Inspection {
                reference: r.to_string(),
                digest: manifest.digest,
                media_type: manifest.media_type,
                labels: Some(p.labels.clone()),
                created: p.created.clone(),
                layers: Some(p.layers.clone()),
                platforms: vec![p],
            })
        }
        ManifestKind::Index(index) => {
            let platforms = futures_util::stream::iter(index.manifests.iter().map(|entry| async move {
                let child = client.get_manifest(&r.at_digest(&entry.digest)).await?;
                match child.parse()? {
                    ManifestKind::Image(image) => platform_image(
                        client,
                        r,
                        child.digest.clone(),
                        &image,
                        entry.platform.as_ref().map(ToString::to_string),
                    )
                    .await
                    .map(Some),
                    // Nested indexes are legal and rare; list them without a config.
                    ManifestKind::Index(_) => Ok(None),
                }
            }))
            .buffered(4)
            .try_collect::<Vec<_>>()
            .await?;
            Ok(Inspection {
                reference: r.to_string(),
                digest: manifest.digest,
                media_type: manifest.media_type,
                labels: None,
                created: None,
                layers: None,
                platforms: platforms.into_iter().flatten().collect(),
            })
        }
    }
}
