//! `copy`: an image (every platform by default) from one repository to
//! another, by digest, mounting instead of uploading where the registry
//! allows it; with [`CopyOptions::referrers`], its referrers (signatures,
//! SBOMs, attestations) and theirs, [`REFERRER_DEPTH`] levels deep.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::{StreamExt as _, TryStreamExt as _};
use serde::{Deserialize, Serialize};

use crate::client::Mount;
use crate::manifest::{Descriptor, ManifestKind, Platform};
use crate::referrers::ReferrersVia;
use crate::{Client, Digest, Manifest, Reference, RegistryError};

/// How many levels of referrers a copy carries: the image's referrers are
/// level 1, a signature of an SBOM level 2, and so on.
pub const REFERRER_DEPTH: usize = 4;

/// What to copy.
#[derive(Debug, Clone, Default)]
pub struct CopyOptions {
    /// Only these platforms of an index. One platform copies that image's
    /// manifest alone (its digest is the platform's); several build a new,
    /// smaller index (with a new digest). Empty: every platform, digest kept.
    pub platforms: Vec<Platform>,
    /// Copy the referrers of what is copied too (and theirs, up to
    /// [`REFERRER_DEPTH`] levels).
    pub referrers: bool,
}

/// A referrer a copy carried to the destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopiedReferrer {
    /// The referrer manifest.
    pub digest: Digest,
    /// What it refers to (the image, or another referrer).
    pub subject: Digest,
    /// Its artifact type (or its config's media type).
    pub artifact_type: Option<String>,
    /// How the destination lists it.
    pub via: ReferrersVia,
}

/// What a copy did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CopyReport {
    /// The digest of what the destination now holds.
    pub digest: Option<Digest>,
    /// Its media type.
    pub media_type: String,
    /// Manifests written (children and index).
    pub manifests_pushed: u64,
    /// Manifests the destination already had (nothing under them was sent).
    pub manifests_existing: u64,
    /// Blobs linked by a cross-repository mount: no bytes sent.
    pub blobs_mounted: u64,
    /// Blobs the destination already had.
    pub blobs_existing: u64,
    /// Blobs uploaded.
    pub blobs_uploaded: u64,
    /// Bytes of blob content uploaded.
    pub bytes_uploaded: u64,
    /// Referrers carried along (with [`CopyOptions::referrers`]).
    pub referrers: Vec<CopiedReferrer>,
}

#[derive(Default)]
struct Counters {
    manifests_pushed: AtomicU64,
    manifests_existing: AtomicU64,
    blobs_mounted: AtomicU64,
    blobs_existing: AtomicU64,
    blobs_uploaded: AtomicU64,
    bytes_uploaded: AtomicU64,
}

impl Counters {
    fn report(&self, manifest: &Manifest) -> CopyReport {
        let mut report = self.report_without(manifest.digest.clone());
        report.media_type.clone_from(&manifest.media_type);
        report
    }

    fn report_without(&self, digest: Digest) -> CopyReport {
        CopyReport {
            digest: Some(digest),
            media_type: String::new(),
            referrers: Vec::new(),
            manifests_pushed: self.manifests_pushed.load(Ordering::Relaxed),
            manifests_existing: self.manifests_existing.load(Ordering::Relaxed),
            blobs_mounted: self.blobs_mounted.load(Ordering::Relaxed),
            blobs_existing: self.blobs_existing.load(Ordering::Relaxed),
            blobs_uploaded: self.blobs_uploaded.load(Ordering::Relaxed),
            bytes_uploaded: self.bytes_uploaded.load(Ordering::Relaxed),
        }
    }
}

/// Copies `src` to `dst` by digest. Children are written before the index,
/// and a tag on `dst` is written last, so a reader of the tag never sees a
/// manifest whose parts are missing.
pub async fn copy(
    client: &Client,
    src: &Reference,
    dst: &Reference,
    options: &CopyOptions,
) -> Result<CopyReport, RegistryError> {
    let manifest = client.get_manifest(src).await?;
    let manifest = select_platforms(client, src, manifest, &options.platforms).await?;
    if let Some(wanted) = dst.digest()
        && *wanted != manifest.digest
    {
        return Err(RegistryError::DigestMismatch {
            what: format!("copy of {src} to {dst}"),
            expected: wanted.clone(),
            actual: manifest.digest.clone(),
        });
    }
    let counters = Counters::default();
    copy_manifest(client, src, dst, &manifest, &counters).await?;
    // Referrers before the tag: whoever reads the tag finds its signatures.
    let referrers = if options.referrers {
        carry_referrers(client, src, dst, &manifest.digest, REFERRER_DEPTH, &counters).await?
    } else {
        Vec::new()
    };
    if let Some(tag) = dst.tag() {
        client.put_manifest(dst, tag, &manifest).await?;
    }
    let mut report = counters.report(&manifest);
    report.referrers = referrers;
    Ok(report)
}

/// Copies the referrers of `subject` (a manifest already in `dst`) from `src`
/// to `dst`, and theirs, `depth` levels deep, by digest, and makes the
/// destination list them (its referrers API, or its tag-schema index, to
/// which they are added without dropping what is there). Within one
/// repository there is nothing to do. The report's counters are the
/// referrers' manifests and blobs; its `digest` is `subject`.
pub async fn copy_referrers(
    client: &Client,
    src: &Reference,
    dst: &Reference,
    subject: &Digest,
    depth: usize,
) -> Result<CopyReport, RegistryError> {
    let counters = Counters::default();
    let referrers = carry_referrers(client, src, dst, subject, depth, &counters).await?;
    let mut report = counters.report_without(subject.clone());
    report.referrers = referrers;
    Ok(report)
}

async fn carry_referrers(
    client: &Client,
    src: &Reference,
    dst: &Reference,
    subject: &Digest,
    depth: usize,
    counters: &Counters,
) -> Result<Vec<CopiedReferrer>, RegistryError> {
    if src.same_repository(dst) {
        return Ok(Vec::new());
    }
    let mut carried = Vec::new();
    let mut seen: HashSet<Digest> = HashSet::from([subject.clone()]);
    let mut level = vec![subject.clone()];
    // Whether the destination has the referrers API, asked once.
    let mut dst_api: Option<bool> = None;
    for _ in 0..depth {
        let mut next = Vec::new();
        for s in &level {
            let listed = client.referrers(src, s, None).await?;
            let mut entries = Vec::new();
            for d in listed.manifests {
                if !seen.insert(d.digest.clone()) {
                    continue;
                }
                let manifest = client.get_manifest(&src.at_digest(&d.digest)).await?;
                // A tag-schema index is written by clients: carry only what
                // really names this subject.
                let names_subject = match manifest.parse()? {
                    ManifestKind::Image(m) => m.subject.is_some_and(|x| x.digest == *s),
                    ManifestKind::Index(i) => i.subject.is_some_and(|x| x.digest == *s),
                };
                if !names_subject {
                    continue;
                }
                copy_manifest(client, src, dst, &manifest, counters).await?;
                entries.push(Descriptor::referrer_of(&manifest)?);
                next.push(d.digest);
            }
            if entries.is_empty() {
                continue;
            }
            let api = match dst_api {
                Some(known) => known,
                None => *dst_api.insert(client.referrers(dst, s, None).await?.via == ReferrersVia::Api),
            };
            if !api {
                client.add_to_referrers_index(dst, s, &entries).await?;
            }
            let via = if api { ReferrersVia::Api } else { ReferrersVia::TagSchema };
            carried.extend(entries.into_iter().map(|e| CopiedReferrer {
                digest: e.digest,
                subject: s.clone(),
                artifact_type: e.artifact_type,
                via,
            }));
        }
        if next.is_empty() {
            break;
        }
        level = next;
    }
    Ok(carried)
}

/// Copies a manifest (and everything under it) to `dst` by digest, without
/// touching tags. Returns the blob bytes uploaded.
pub async fn copy_by_digest(
    client: &Client,
    src: &Reference,
    dst: &Reference,
    manifest: &Manifest,
) -> Result<CopyReport, RegistryError> {
    let counters = Counters::default();
    copy_manifest(client, src, dst, manifest, &counters).await?;
    Ok(counters.report(manifest))
}

async fn select_platforms(
    client: &Client,
    src: &Reference,
    manifest: Manifest,
    platforms: &[Platform],
) -> Result<Manifest, RegistryError> {
    if platforms.is_empty() {
        return Ok(manifest);
    }
    let wanted = || platforms.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    let index = match manifest.parse()? {
        ManifestKind::Index(index) => index,
        // One image: it is copied only if its own platform is one asked for;
        // copying it anyway would hand an amd64 image to whoever asked for arm64.
        ManifestKind::Image(image) => {
            let own = client.config_of(src, &image).await?.platform();
            if platforms.iter().any(|w| own.matches(w)) {
                return Ok(manifest);
            }
            return Err(RegistryError::NotFound {
                what: format!("platform {} in {src}, a single-platform image for {own}", wanted()),
            });
        }
    };
    let chosen: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| d.platform.as_ref().is_some_and(|p| platforms.iter().any(|w| p.matches(w))))
        .collect();
    match chosen.as_slice() {
        [] => Err(RegistryError::NotFound { what: format!("platform {} in {src}", wanted()) }),
        [one] => client.get_manifest(&src.at_digest(&one.digest)).await,
        _ => {
            // A new index with the chosen entries; everything else in the
            // document is kept as it was.
            let mut doc: serde_json::Value = serde_json::from_slice(&manifest.bytes)
                .map_err(|e| RegistryError::Malformed { what: format!("index {src}"), reason: e.to_string() })?;
            let keep: HashSet<&str> = chosen.iter().map(|d| d.digest.as_str()).collect();
            if let Some(list) = doc.get_mut("manifests").and_then(|m| m.as_array_mut()) {
                list.retain(|d| d.get("digest").and_then(|x| x.as_str()).is_some_and(|x| keep.contains(x)));
            }
            let bytes = serde_json::to_vec(&doc).expect("a JSON value serialises");
            Manifest::from_bytes(bytes, Some(&manifest.media_type))
        }
    }
}

/// Whether an existence check by digest found the object. A check that
/// outlasted the retries unanswered, or answered with server errors, is
/// taken as "not there": distribution answers 500 for a manifest or blob
/// whose link file a crash left empty, and only pushing it again rewrites
/// the link. Pushing a digest the registry has is harmless, and a registry
/// that cannot be reached at all fails the push that follows.
fn known_there<T>(found: Result<Option<T>, RegistryError>) -> Result<bool, RegistryError> {
    match found {
        Ok(found) => Ok(found.is_some()),
        Err(RegistryError::Unreachable { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

fn copy_manifest<'a>(
    client: &'a Client,
    src: &'a Reference,
    dst: &'a Reference,
    manifest: &'a Manifest,
    counters: &'a Counters,
) -> futures_util::future::BoxFuture<'a, Result<(), RegistryError>> {
    Box::pin(async move {
        // A manifest the destination has implies its parts: the registry
        // checked them when it was written. Within one repository the
        // source manifest is that manifest.
        if src.same_repository(dst) || known_there(client.head_manifest(&dst.at_digest(&manifest.digest)).await)? {
            counters.manifests_existing.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        match manifest.parse()? {
            ManifestKind::Image(image) => {
                let mut blobs = vec![image.config.clone()];
                blobs.extend(image.layers.iter().cloned());
                let mut seen = HashSet::new();
                blobs.retain(|b| seen.insert(b.digest.clone()));
                let concurrency = client.options().concurrency.max(1);
                futures_util::stream::iter(blobs.into_iter().map(|blob| copy_blob(client, src, dst, blob, counters)))
                    .buffer_unordered(concurrency)
                    .try_collect::<Vec<()>>()
                    .await?;
            }
            ManifestKind::Index(index) => {
                for child in &index.manifests {
                    let child_manifest = client.get_manifest(&src.at_digest(&child.digest)).await?;
                    copy_manifest(client, src, dst, &child_manifest, counters).await?;
                }
            }
        }
        client.put_manifest(dst, manifest.digest.as_str(), manifest).await?;
        counters.manifests_pushed.fetch_add(1, Ordering::Relaxed);
        Ok(())
    })
}

async fn copy_blob(
    client: &Client,
    src: &Reference,
    dst: &Reference,
    blob: Descriptor,
    counters: &Counters,
) -> Result<(), RegistryError> {
    if src.same_repository(dst) {
        counters.blobs_existing.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    }
    let mut session = None;
    if src.same_registry(dst) {
        // One request: a mount of a blob the target already has also answers 201.
        match client.mount_blob(dst, &blob.digest, src).await? {
            Mount::Mounted => {
                counters.blobs_mounted.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            Mount::Refused(s) => session = s,
        }
    } else if known_there(client.blob_exists(dst, &blob.digest).await)? {
        counters.blobs_existing.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    }
    // A stream cannot be replayed: a failed upload is restarted whole.
    let attempts = client.options().retry.attempts.max(1);
    let mut last = None;
    for attempt in 0..attempts {
        if attempt > 0 {
            tokio::time::sleep(client.options().retry.initial_backoff * attempt).await;
        }
        let stream = match client.blob_stream(src, &blob.digest).await {
            Ok(s) => s,
            Err(e) => {
                last = Some(e);
                continue;
            }
        };
        let uploaded = Arc::new(AtomicU64::new(0));
        // The source stream ends in a digest mismatch when what it served is
        // not the blob: the upload is then cut off (the destination keeps
        // nothing), and the copy stops with that mismatch, not a retried
        // "upload failed".
        let mismatch: Arc<Mutex<Option<RegistryError>>> = Arc::default();
        let counted = {
            let (uploaded, mismatch) = (Arc::clone(&uploaded), Arc::clone(&mismatch));
            stream.map(move |chunk| {
                match &chunk {
                    Ok(bytes) => {
                        uploaded.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    }
                    Err(RegistryError::DigestMismatch { what, expected, actual }) => {
                        *mismatch.lock().expect("mismatch slot") = Some(RegistryError::DigestMismatch {
                            what: what.clone(),
                            expected: expected.clone(),
                            actual: actual.clone(),
                        });
                    }
                    Err(_) => {}
                }
                chunk
            })
        };
        let pushed = client.push_blob_stream(dst, &blob.digest, blob.size, counted.boxed(), session.take()).await;
        if let Some(e) = mismatch.lock().expect("mismatch slot").take() {
            return Err(e);
        }
        match pushed {
            Ok(()) => {
                counters.blobs_uploaded.fetch_add(1, Ordering::Relaxed);
                counters.bytes_uploaded.fetch_add(uploaded.load(Ordering::Relaxed), Ordering::Relaxed);
                return Ok(());
            }
            Err(e @ (RegistryError::DigestMismatch { .. } | RegistryError::Unauthorized { .. })) => return Err(e),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| RegistryError::Unreachable {
        registry: dst.api_host().to_owned(),
        reason: "upload failed".into(),
    }))
}
