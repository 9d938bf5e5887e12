//! [`RegistryResolver`]: `lkg-inputs-lock`'s [`Resolver`] over OCI
//! registries, so `lkg-inputs resolve` pins a build's floating inputs
//! straight from the registries that serve them.
//!
//! # Why a layer is downloaded on its own task
//!
//! The sink is `lkg-inputs-lock`'s kernel scan: gzip inflate and tar
//! header parsing, synchronous and CPU-bound. Fed inline, the download
//! (receive and SHA-256) and the scan would take turns on one core. So the
//! blob is pulled by a spawned task into a small bounded channel while the
//! caller's task feeds the sink: on a multi-thread runtime
//! ([`crate::runtime`]) the two run side by side, and memory stays bounded
//! by the channel (a few chunks), whatever the layer's size. On a
//! current-thread runtime it still works, taking turns. The scan is nearly
//! all of the CPU time, so the gain is modest; see
//! [`LAYER_CHUNKS_IN_FLIGHT`].

use std::io::Write;

use futures_util::StreamExt as _;
use lkg_inputs_lock::{Image, ImageRef, Layer, Resolver};

use crate::manifest::{ImageManifest, ManifestKind};
use crate::{Client, Digest, Platform, Reference, RegistryError};

/// Chunks of a layer in flight between the download task and the sink.
/// Measured on the 0.68 GiB bench image (`scripts/bench inputs-kernels`):
/// 4 is 6% faster than feeding the sink inline for +4 MiB of peak RSS; 16
/// costs +10 MiB for no further gain (the scan is the bottleneck).
const LAYER_CHUNKS_IN_FLIGHT: usize = 4;

/// Resolves build inputs against OCI registries through a [`Client`]: its
/// credentials (Docker config files and helpers), insecure-registry list and
/// retries apply.
///
/// What each question costs:
///
/// - tag → digest ([`Resolver::digest`]): one `HEAD` of the manifest; a
///   `404` is `None`;
/// - an image ([`Resolver::inspect`]): the manifest (one `GET`, verified
///   against the pinned digest or the registry's digest header), for an
///   index the entry for the resolver's platform, and the config blob. The
///   digest is the top-level one (an index's own digest, as `skopeo
///   inspect` reports it and as a pin must name it); labels and layers are
///   the platform image's;
/// - tags ([`Resolver::tags`]): the paged tag list (none for a repository
///   that does not exist);
/// - a layer ([`Resolver::read_layer`]): the blob, streamed into the sink
///   and verified against its digest as it flows; a mismatch is an error
///   even when the sink took every byte.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use lkg_inputs_lock::{RunContext, Spec, resolve};
/// use lkg_registry::{Client, ClientOptions, RegistryResolver};
///
/// let client = Client::new(ClientOptions::default())?;
/// let resolver = RegistryResolver::new(client, "linux/amd64".parse()?);
/// let spec = Spec::read("ci/inputs.spec.json".as_ref())?;
/// let resolution = resolve(&resolver, &spec, None, &RunContext::from_environment(), &mut |_| {}).await?;
/// resolution.manifest.write("build-inputs.json".as_ref())?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RegistryResolver {
    client: Client,
    platform: Platform,
}

/// Why the registry resolver could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResolverError {
    /// The registry failed or refused (unreachable, auth, a digest mismatch,
    /// a malformed manifest).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A multi-platform image has no manifest for the platform asked for.
    #[error(
        "{reference} is an index without a {platform} image (it has: {}); pick one with --platform",
        if available.is_empty() { "no platform entries".to_owned() } else { available.join(", ") }
    )]
    NoPlatform {
        /// The image.
        reference: String,
        /// The platform asked for.
        platform: Platform,
        /// The platforms the index has.
        available: Vec<String>,
    },
    /// The sink refused bytes (the kernel scan found a malformed layer):
    /// reading stopped there.
    #[error("reading layer {layer} stopped after {written} bytes: the reader refused more: {source}")]
    Sink {
        /// The layer.
        layer: Digest,
        /// Bytes the sink had accepted.
        written: u64,
        /// The sink's error.
        source: std::io::Error,
    },
}

impl lkg_core::Classify for ResolverError {
    fn kind(&self) -> lkg_core::FailureKind {
        crate::error::kind_of(self.is_environment(), self.is_input())
    }
}

impl ResolverError {
    /// Whether the error means "lkg could not ask" (exit code 5): the
    /// registry is unreachable or refused the credentials.
    pub fn is_environment(&self) -> bool {
        match self {
            ResolverError::Registry(e) => e.is_environment(),
            ResolverError::NoPlatform { .. } | ResolverError::Sink { .. } => false,
        }
    }

    /// Whether the error is bad input (exit code 2): a missing platform, an
    /// image or blob that does not exist, plain HTTP not allowed.
    pub fn is_input(&self) -> bool {
        match self {
            ResolverError::Registry(e) => e.is_input(),
            ResolverError::NoPlatform { .. } => true,
            ResolverError::Sink { .. } => false,
        }
    }
}

impl RegistryResolver {
    /// A resolver asking through `client`, picking `platform` from
    /// multi-platform images.
    pub fn new(client: Client, platform: Platform) -> RegistryResolver {
        RegistryResolver { client, platform }
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The platform picked from multi-platform images.
    pub fn platform(&self) -> &Platform {
        &self.platform
    }

    /// The platform image of `manifest` (itself, or its index's entry for
    /// the resolver's platform).
    async fn platform_image(&self, reference: &Reference, kind: ManifestKind) -> Result<ImageManifest, ResolverError> {
        let index = match kind {
            ManifestKind::Image(image) => return Ok(image),
            ManifestKind::Index(index) => index,
        };
        let Some(entry) =
            index.manifests.iter().find(|d| d.platform.as_ref().is_some_and(|p| p.matches(&self.platform)))
        else {
            return Err(ResolverError::NoPlatform {
                reference: reference.to_string(),
                platform: self.platform.clone(),
                available: index
                    .manifests
                    .iter()
                    .filter_map(|d| d.platform.as_ref().map(ToString::to_string))
                    .collect(),
            });
        };
        match self.client.get_manifest(&reference.at_digest(&entry.digest)).await?.parse()? {
            ManifestKind::Image(image) => Ok(image),
            ManifestKind::Index(_) => Err(RegistryError::Malformed {
                what: format!("index {reference}"),
                reason: format!("its {} entry {} is itself an index", self.platform, entry.digest),
            }
            .into()),
        }
    }
}

impl Resolver for RegistryResolver {
    type Error = ResolverError;

    async fn digest(&self, image: &ImageRef) -> Result<Option<Digest>, ResolverError> {
        let head = self.client.head_manifest(&Reference::from(image)).await?;
        Ok(head.map(|h| h.digest))
    }

    async fn inspect(&self, image: &ImageRef) -> Result<Option<Image>, ResolverError> {
        let reference = Reference::from(image);
        // GET, not HEAD then GET: one round trip, and the body is verified
        // against the pinned digest (or the registry's digest header).
        let Some(manifest) = self.client.get_manifest_opt(&reference).await? else { return Ok(None) };
        let platform_image = self.platform_image(&reference, manifest.parse()?).await?;
        let config = self.client.config_of(&reference, &platform_image).await?;
        let layers = platform_image
            .layers
            .iter()
            .map(|l| Layer { digest: l.digest.clone(), media_type: l.media_type.clone(), size: l.size })
            .collect();
        Ok(Some(Image { digest: manifest.digest, labels: config.labels(), layers }))
    }

    async fn tags(&self, repository: &ImageRef) -> Result<Vec<String>, ResolverError> {
        match self.client.list_tags(&Reference::from(repository)).await {
            Ok(tags) => Ok(tags),
            // A repository that does not exist has no tags.
            Err(RegistryError::NotFound { .. }) => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    async fn read_layer(
        &self,
        repository: &ImageRef,
        layer: &Layer,
        sink: &mut (dyn Write + Send),
    ) -> Result<(), ResolverError> {
        let digest = &layer.digest;
        let mut stream = self.client.blob_stream(&Reference::from(repository), digest).await?;
        let (sender, mut chunks) = tokio::sync::mpsc::channel(LAYER_CHUNKS_IN_FLIGHT);
        // Ends on its own when the stream ends or fails, or when the
        // receiver is gone (the sink refused bytes, or the caller gave up).
        let download = tokio::spawn(async move {
            while let Some(chunk) = stream.next().await {
                let failed = chunk.is_err();
                if sender.send(chunk).await.is_err() || failed {
                    break;
                }
            }
        });
        let mut written = 0u64;
        while let Some(chunk) = chunks.recv().await {
            let chunk = chunk?;
            sink.write_all(&chunk).map_err(|source| ResolverError::Sink { layer: digest.clone(), written, source })?;
            written += chunk.len() as u64;
        }
        // The channel also closes when the task dies: only a task that ran to
        // the stream's end (which checked the digest) means the whole blob.
        match download.await {
            Ok(()) => Ok(()),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(RegistryError::Unreachable {
                registry: repository.domain().to_owned(),
                reason: format!("reading layer {digest}: the download was cancelled (the runtime is shutting down)"),
            }
            .into()),
        }
    }
}
