//! OCI 1.1 referrers: the manifests (signatures, SBOMs, attestations) whose
//! `subject` names another manifest.
//!
//! Listing ([`Client::referrers`]) asks the registry's referrers API
//! (`GET /v2/<name>/referrers/<digest>`, paged by `Link`, filtered by
//! `artifactType`) and, where the registry has none (it answers `404`, or
//! something that is not an image index, as Distribution 2.x does), reads the
//! **referrers tag schema**: the image index tagged `sha256-<hex>` that
//! clients maintain next to the subject.
//!
//! Pushing ([`Client::push_referrer`]) writes the manifest by digest; a
//! registry with the API answers `OCI-Subject` and indexes it itself.
//! Without that header lkg adds the manifest to the tag-schema index by
//! read-modify-write:
//!
//! 1. read the tag and its `ETag` (`404`: start from an empty index; a tag
//!    holding anything but an index is an error, never overwritten);
//! 2. if every entry to add is there (same digest), stop: nothing is written;
//! 3. append the missing entries; every entry already there is kept as it
//!    was, unknown fields included (another writer's entry is never dropped
//!    or rewritten);
//! 4. write the tag with `If-Match: <etag>` (`If-None-Match: *` when it did not
//!    exist); a `412` means another writer got there first: back to 1;
//! 5. read the tag again at once, and once more after
//!    [`ClientOptions::referrers_settle`](crate::ClientOptions::referrers_settle):
//!    if an entry of ours is missing, a concurrent writer overwrote it with
//!    an index read before our write: back to 1.
//!
//! At most [`MAX_ROUNDS`] rounds, then [`RegistryError::ReferrersContended`].
//!
//! # Limitations
//!
//! The tag schema has no atomic update; the distribution spec leaves races to
//! clients. On a registry that honours `If-Match` the rule above loses no
//! entry. On one that ignores it (Distribution 2.8 does), a writer that read
//! the index before our write and writes it back more than `referrers_settle`
//! after our last check drops our entry without either side noticing; lkg
//! only narrows that window. Entries of the tag-schema index are what
//! clients wrote there: lkg does not check each entry's `subject` when
//! listing.

use std::collections::{BTreeMap, HashSet};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::client::{Condition, PutAnswer, ReferrersPage};
use crate::manifest::{Descriptor, ImageIndex, ManifestKind, media};
use crate::{Client, Digest, Manifest, Reference, RegistryError};

/// Read-modify-write rounds on a tag-schema index before giving up.
pub const MAX_ROUNDS: u32 = 8;
/// Pages of a referrers API answer read at most.
const MAX_PAGES: usize = 1000;

/// How a registry's referrers were found (or recorded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReferrersVia {
    /// The registry's referrers API.
    Api,
    /// The referrers tag schema (the index tagged `sha256-<hex>`).
    TagSchema,
}

/// The referrers of one manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Referrers {
    /// The manifest they refer to.
    pub subject: Digest,
    /// Where the list came from.
    pub via: ReferrersVia,
    /// One descriptor per referrer, with its `artifact_type` and
    /// `annotations` (the referrer manifest's own).
    pub manifests: Vec<Descriptor>,
}

/// What [`Client::push_referrer`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReferrerPush {
    /// The referrer manifest's digest.
    pub digest: Digest,
    /// Its subject.
    pub subject: Digest,
    /// How the registry knows of it now.
    pub via: ReferrersVia,
    /// Whether lkg wrote the tag-schema index (false: the API indexed it,
    /// or the index already listed it).
    pub index_written: bool,
}

/// The referrers tag of `subject` (`sha256:<hex>` → `sha256-<hex>`): the
/// algorithm truncated to 32 characters, `-`, the encoded part truncated to
/// 64, characters a tag cannot hold replaced by `-`.
pub fn referrers_tag(subject: &Digest) -> String {
    let (algorithm, encoded) = subject.as_str().split_once(':').unwrap_or(("sha256", subject.as_str()));
    let clean = |s: &str, n: usize| -> String {
        s.chars().take(n).map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '.' { c } else { '-' }).collect()
    };
    format!("{}-{}", clean(algorithm, 32), clean(encoded, 64))
}

/// An OCI artifact manifest that refers to `subject`: the empty config
/// ([`Descriptor::empty`], whose blob is [`media::EMPTY_JSON`]), `layers`,
/// `artifact_type` and `annotations`. Its blobs (the empty config and every
/// layer) must be in the repository before it is pushed; [`attach`] does all
/// of it.
///
/// # Panics
///
/// Never: a manifest of strings and descriptors always serialises and parses.
pub fn artifact_manifest(
    artifact_type: &str,
    subject: &Descriptor,
    layers: Vec<Descriptor>,
    annotations: Option<BTreeMap<String, String>>,
) -> Manifest {
    let manifest = crate::ImageManifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.to_owned()),
        artifact_type: Some(artifact_type.to_owned()),
        config: Descriptor::empty(),
        layers,
        subject: Some(Descriptor::new(subject.media_type.clone(), subject.digest.clone(), subject.size)),
        annotations: annotations.filter(|a| !a.is_empty()),
    };
    let bytes = serde_json::to_vec(&manifest).expect("a manifest serialises");
    Manifest::from_bytes(bytes, Some(media::OCI_MANIFEST)).expect("a manifest lkg built parses")
}

/// Attaches an artifact to `subject` (a manifest in `repo`): uploads the
/// empty config and each `(media type, content)` layer, builds the manifest
/// ([`artifact_manifest`]) and pushes it with [`Client::push_referrer`].
///
/// ```no_run
/// # async fn run(client: lkg_registry::Client, image: lkg_registry::Reference, digest: lkg_registry::Digest) -> Result<(), lkg_registry::RegistryError> {
/// use lkg_registry::referrers::attach;
/// let sbom = bytes::Bytes::from_static(br#"{"spdxVersion":"SPDX-2.3"}"#);
/// let pushed = attach(&client, &image, &digest, "application/spdx+json",
///     &[("application/spdx+json".to_owned(), sbom)], None).await?;
/// println!("{} refers to {} ({:?})", pushed.digest, pushed.subject, pushed.via);
/// # Ok(()) }
/// ```
pub async fn attach(
    client: &Client,
    repo: &Reference,
    subject: &Digest,
    artifact_type: &str,
    layers: &[(String, Bytes)],
    annotations: Option<BTreeMap<String, String>>,
) -> Result<ReferrerPush, RegistryError> {
    let subject = subject_descriptor(client, repo, subject).await?;
    let empty = Descriptor::empty();
    if client.blob_exists(repo, &empty.digest).await?.is_none() {
        client.push_blob(repo, &empty.digest, Bytes::from_static(media::EMPTY_JSON)).await?;
    }
    let mut descriptors = Vec::new();
    for (media_type, content) in layers {
        let d = Descriptor::of(media_type.clone(), content);
        if client.blob_exists(repo, &d.digest).await?.is_none() {
            client.push_blob(repo, &d.digest, content.clone()).await?;
        }
        descriptors.push(d);
    }
    let manifest = artifact_manifest(artifact_type, &subject, descriptors, annotations);
    client.push_referrer(repo, &manifest).await
}

/// The descriptor (media type, digest, size) of the manifest `digest` in `repo`.
async fn subject_descriptor(client: &Client, repo: &Reference, digest: &Digest) -> Result<Descriptor, RegistryError> {
    let at = repo.at_digest(digest);
    match client.head_manifest(&at).await? {
        Some(head) if head.size.is_some() && !head.media_type.is_empty() => {
            Ok(Descriptor::new(head.media_type, head.digest, head.size.unwrap_or_default()))
        }
        Some(_) => {
            let m = client.get_manifest(&at).await?;
            Ok(Descriptor::new(m.media_type.clone(), m.digest.clone(), m.bytes.len() as u64))
        }
        None => Err(RegistryError::NotFound { what: format!("subject manifest {at}") }),
    }
}

impl Client {
    /// The referrers of `subject` in `repo` (its repository; a tag or
    /// digest in it is ignored), only those of `artifact_type` if given.
    ///
    /// The referrers API first; on `404` or an answer that is not an image
    /// index, the referrers tag schema. The registry's `artifactType` filter
    /// is used when it says it applied it (`OCI-Filters-Applied`), otherwise
    /// lkg filters. Pages (`Link: <...>; rel="next"`) are followed, each
    /// bounded like a manifest (4 MiB). No referrers is an empty list, not an
    /// error.
    ///
    /// ```no_run
    /// # async fn run(client: lkg_registry::Client) -> Result<(), lkg_registry::RegistryError> {
    /// let image: lkg_registry::Reference = "ghcr.io/o/img:latest".parse()?;
    /// let digest = client.resolve(&image).await?;
    /// let bundles = client.referrers(&image, &digest, Some("application/vnd.dev.sigstore.bundle.v0.3+json")).await?;
    /// for r in &bundles.manifests {
    ///     println!("{} {:?} {:?}", r.digest, r.artifact_type, r.annotations);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn referrers(
        &self,
        repo: &Reference,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Referrers, RegistryError> {
        if let Some(manifests) = self.referrers_api(repo, subject, artifact_type).await? {
            return Ok(Referrers { subject: subject.clone(), via: ReferrersVia::Api, manifests });
        }
        let tag = repo.at_tag(&referrers_tag(subject));
        let manifests = match self.get_manifest_opt(&tag).await? {
            // Not an index: by the spec, no referrers.
            Some(m) => parse_index(&m.bytes).unwrap_or_default(),
            None => Vec::new(),
        };
        Ok(Referrers {
            subject: subject.clone(),
            via: ReferrersVia::TagSchema,
            manifests: filter(manifests, artifact_type),
        })
    }

    /// The referrers API's list, or `None` when the registry has no API.
    async fn referrers_api(
        &self,
        repo: &Reference,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Option<Vec<Descriptor>>, RegistryError> {
        let mut url = self.referrers_url(repo, subject, artifact_type);
        let mut all = Vec::new();
        for page_number in 0..MAX_PAGES {
            let (body, content_type, filters_applied, next) = match self.referrers_page(repo, &url).await? {
                ReferrersPage::Unsupported if page_number == 0 => return Ok(None),
                ReferrersPage::Unsupported => {
                    return Err(RegistryError::NotFound {
                        what: format!("page {} of the referrers of {subject}", page_number + 1),
                    });
                }
                ReferrersPage::Page { body, content_type, filters_applied, next } => {
                    (body, content_type, filters_applied, next)
                }
            };
            let typed = content_type.is_empty()
                || content_type.starts_with(media::OCI_INDEX)
                || content_type.starts_with("application/json");
            let page = if typed { parse_index(&body) } else { None };
            let Some(page) = page else {
                // A first answer that is not an index (an HTML page, a
                // registry that routes the path elsewhere): no API here.
                if page_number == 0 {
                    return Ok(None);
                }
                return Err(RegistryError::Malformed {
                    what: format!("page {} of the referrers of {subject} in {}", page_number + 1, repo.repository()),
                    reason: format!("not an image index ({content_type})"),
                });
            };
            all.extend(if filters_applied { page } else { filter(page, artifact_type) });
            match next {
                Some(n) => url = n,
                None => return Ok(Some(all)),
            }
        }
        Ok(Some(all))
    }

    /// Pushes `manifest` (which must have a `subject`) to `repo` by digest,
    /// and makes it findable as a referrer of its subject: by the registry
    /// itself when it answers `OCI-Subject`, else by adding it to the
    /// tag-schema index (the rule and its limits are in the [module
    /// docs](crate::referrers)). Its blobs must already be in `repo`. Pushing
    /// the same referrer again writes nothing more.
    pub async fn push_referrer(&self, repo: &Reference, manifest: &Manifest) -> Result<ReferrerPush, RegistryError> {
        let subject = match manifest.parse()? {
            ManifestKind::Image(m) => m.subject,
            ManifestKind::Index(i) => i.subject,
        }
        .ok_or_else(|| RegistryError::NotAReferrer { digest: manifest.digest.clone() })?;
        let answer = self.put_manifest_if(repo, manifest.digest.as_str(), manifest, None).await?;
        let mut push = ReferrerPush {
            digest: manifest.digest.clone(),
            subject: subject.digest.clone(),
            via: ReferrersVia::Api,
            index_written: false,
        };
        if matches!(answer, PutAnswer::Stored { oci_subject: Some(_) }) {
            return Ok(push);
        }
        push.via = ReferrersVia::TagSchema;
        push.index_written =
            self.add_to_referrers_index(repo, &subject.digest, &[Descriptor::referrer_of(manifest)?]).await?;
        Ok(push)
    }

    /// Adds `entries` to the tag-schema index of `subject` in `repo`, by the
    /// read-modify-write rule of the module docs. Whether lkg wrote the index.
    pub(crate) async fn add_to_referrers_index(
        &self,
        repo: &Reference,
        subject: &Digest,
        entries: &[Descriptor],
    ) -> Result<bool, RegistryError> {
        let tag = referrers_tag(subject);
        let tag_ref = repo.at_tag(&tag);
        let (mut wrote, mut settled) = (false, false);
        for _ in 0..MAX_ROUNDS {
            let current = self.get_manifest_with_etag(&tag_ref).await?;
            let (existing, condition) = match &current {
                None => (None, Some(Condition::Absent)),
                Some((m, etag)) => {
                    if !m.is_index() || parse_index(&m.bytes).is_none() {
                        return Err(RegistryError::NotAReferrersIndex {
                            tag: tag_ref.to_string(),
                            media_type: m.media_type.clone(),
                        });
                    }
                    (Some(m.bytes.as_slice()), etag.clone().map(Condition::Matches))
                }
            };
            match merge_entries(existing, entries) {
                None if !wrote || settled => return Ok(wrote),
                None => {
                    // Present right after our write: look once more a little
                    // later, for a writer that read the index before our write.
                    settled = true;
                    tokio::time::sleep(self.options().referrers_settle).await;
                }
                Some(bytes) => {
                    let index = Manifest::from_bytes(bytes, Some(media::OCI_INDEX))?;
                    match self.put_manifest_if(repo, &tag, &index, condition.as_ref()).await? {
                        PutAnswer::PreconditionFailed => {}
                        PutAnswer::Stored { .. } => {
                            wrote = true;
                            settled = false;
                        }
                    }
                }
            }
        }
        Err(RegistryError::ReferrersContended { tag: tag_ref.to_string(), rounds: MAX_ROUNDS })
    }
}

/// The entries of an image index, or `None` when `bytes` is not one.
fn parse_index(bytes: &[u8]) -> Option<Vec<Descriptor>> {
    let index: ImageIndex = serde_json::from_slice(bytes).ok()?;
    if index.media_type.as_deref().is_some_and(|t| t != media::OCI_INDEX) {
        return None;
    }
    Some(index.manifests)
}

/// Only the descriptors of `artifact_type`, if given.
fn filter(descriptors: Vec<Descriptor>, artifact_type: Option<&str>) -> Vec<Descriptor> {
    match artifact_type {
        Some(t) => descriptors.into_iter().filter(|d| d.artifact_type.as_deref() == Some(t)).collect(),
        None => descriptors,
    }
}

/// The tag-schema index `existing` (or a new one) with every entry of
/// `entries` whose digest it lacks appended; `None` when it lists them all.
/// Everything else in the document, other writers' entries included, is
/// kept as it was (unknown fields too).
fn merge_entries(existing: Option<&[u8]>, entries: &[Descriptor]) -> Option<Vec<u8>> {
    let mut doc: serde_json::Value = existing
        .and_then(|b| serde_json::from_slice(b).ok())
        .filter(serde_json::Value::is_object)
        .unwrap_or_else(|| serde_json::json!({"schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": []}));
    let object = doc.as_object_mut()?;
    let list = object.entry("manifests").or_insert_with(|| serde_json::json!([]));
    if !list.is_array() {
        *list = serde_json::json!([]);
    }
    let list = list.as_array_mut()?;
    let mut present: HashSet<String> =
        list.iter().filter_map(|d| d.get("digest").and_then(|x| x.as_str()).map(str::to_owned)).collect();
    let mut added = false;
    for entry in entries {
        if present.insert(entry.digest.to_string()) {
            list.push(serde_json::to_value(entry).expect("a descriptor serialises"));
            added = true;
        }
    }
    added.then(|| serde_json::to_vec(&doc).expect("a JSON value serialises"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8, artifact_type: &str) -> Descriptor {
        let mut d = Descriptor::of(media::OCI_MANIFEST, &[n]);
        d.artifact_type = Some(artifact_type.to_owned());
        d
    }

    #[test]
    fn the_referrers_tag_follows_the_spec_table() {
        let d: Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
        assert_eq!(referrers_tag(&d), format!("sha256-{}", "a".repeat(64)));
        let d: Digest = format!("sha512:{}", "b".repeat(128)).parse().unwrap();
        assert_eq!(referrers_tag(&d), format!("sha512-{}", "b".repeat(64)));
    }

    #[test]
    fn merging_keeps_other_writers_entries_and_unknown_fields() {
        let theirs = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":7,"artifactType":"x","org.example.future":true}],"annotations":{"k":"v"}}"#;
        let merged = merge_entries(Some(theirs), &[entry(1, "application/spdx+json")]).unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&merged).unwrap();
        assert_eq!(doc["manifests"].as_array().unwrap().len(), 2);
        assert_eq!(doc["manifests"][0]["org.example.future"], true, "another writer's entry is kept whole");
        assert_eq!(doc["annotations"]["k"], "v");
        assert_eq!(doc["manifests"][1]["artifactType"], "application/spdx+json");
        // Adding it again changes nothing.
        assert!(merge_entries(Some(&merged), &[entry(1, "application/spdx+json")]).is_none());
        // From nothing: a fresh OCI index.
        let fresh = merge_entries(None, &[entry(2, "a"), entry(2, "a")]).unwrap();
        let parsed = parse_index(&fresh).unwrap();
        assert_eq!(parsed.len(), 1, "one entry per digest");
    }

    #[test]
    fn filtering_and_index_parsing() {
        let list = vec![entry(1, "a"), entry(2, "b"), entry(3, "a")];
        assert_eq!(filter(list.clone(), Some("a")).len(), 2);
        assert_eq!(filter(list, None).len(), 3);
        assert!(parse_index(b"<html>").is_none());
        assert!(
            parse_index(
                br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","manifests":[]}"#
            )
            .is_none()
        );
    }

    #[test]
    fn an_artifact_manifest_is_a_referrer_with_its_type() {
        let subject = Descriptor::of(media::OCI_MANIFEST, b"image");
        let layer = Descriptor::of("application/spdx+json", b"{}");
        let mut notes = BTreeMap::new();
        notes.insert("org.opencontainers.image.created".to_owned(), "2026-05-22T00:00:00Z".to_owned());
        let m = artifact_manifest("application/spdx+json", &subject, vec![layer], Some(notes.clone()));
        let d = Descriptor::referrer_of(&m).unwrap();
        assert_eq!(d.artifact_type.as_deref(), Some("application/spdx+json"));
        assert_eq!(d.annotations, Some(notes));
        assert_eq!((d.digest, d.size), (m.digest.clone(), m.bytes.len() as u64));
        let ManifestKind::Image(parsed) = m.parse().unwrap() else { panic!("an image manifest") };
        assert_eq!(parsed.subject.unwrap().digest, subject.digest);
        assert_eq!(parsed.config, Descriptor::empty());
    }
}
