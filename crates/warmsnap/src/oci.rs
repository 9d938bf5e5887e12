//! Snapshots in an OCI registry: [`OciStore`], the [`Store`] that keeps an
//! app's last-known-good off the machine that took it (feature `oci`).
//!
//! A snapshot is one OCI artifact in the store's repository:
//!
//! ```text
//! manifest  artifactType application/vnd.lkg.snapshot.v1
//!   config  application/vnd.lkg.snapshot.meta.v1+json   meta.json, byte for byte
//!   layers  application/vnd.lkg.snapshot.volume.v1.tar  one per volume, titled <volume>.tar
//! tags      <app>-<generation>   every snapshot (retention keeps the newest N)
//!           <app>-last-good      the last-known-good, moved last
//! ```
//!
//! A layer's digest is `sha256:` and the archive checksum that `meta.json`
//! records, so a volume whose content did not change since any snapshot in
//! the repository is not uploaded again. A commit uploads the volumes, then
//! `meta.json`, then the manifest by digest, then the generation tag, and
//! moves `<app>-last-good` last: a commit that stops anywhere before leaves
//! the previous last-known-good as it was. Readers check the manifest
//! against `meta.json` (every volume, digest and size) before they return,
//! and every byte they stream against its digest.
//!
//! Locks are local, as with [`LocalStore`]: one take or restore of an app at
//! a time on this machine (`<state-dir>/apps/<app>/snapshots/.lock`).

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use lkg_registry::cosign::{self, Accept, SignFormat};
use lkg_registry::sign::{PublicKey, SigningKey};
use lkg_registry::{
    BlobReader, BlobStream, Bytes, Client, Descriptor, Digest, ImageManifest, Manifest, ManifestKind, Reference,
    RegistryError, UnfinishedUpload, media,
};

use crate::meta::Meta;
use crate::name::{AppName, check_object_name};
use crate::store::{
    LocalSink, LocalStore, LockMode, SnapshotReader, Staging, Store, StoreError, VolumeSink, is_generation,
    new_generation,
};

/// The `artifactType` of a snapshot manifest.
pub const ARTIFACT_TYPE: &str = "application/vnd.lkg.snapshot.v1";
/// The media type of a snapshot's config blob, its `meta.json`.
pub const META_MEDIA_TYPE: &str = "application/vnd.lkg.snapshot.meta.v1+json";
/// The media type of a volume archive layer.
pub const VOLUME_MEDIA_TYPE: &str = "application/vnd.lkg.snapshot.volume.v1.tar";
/// The media type of a volume archive layer encrypted with age.
pub const ENCRYPTED_VOLUME_MEDIA_TYPE: &str = "application/vnd.lkg.snapshot.volume.v1.tar+age";
/// An encrypted layer's annotation: the SHA-256 of the archive inside.
const PLAIN_SHA256: &str = "dev.lkg.plain.sha256";
/// An encrypted layer's annotation: which recipients it is encrypted to.
const RECIPIENTS: &str = "dev.lkg.recipients";
/// A layer's annotation: the print of the volume when its archive was
/// taken (see [`Staging::adopt_unchanged`]).
const PRINT: &str = "dev.lkg.print";

const TITLE: &str = "org.opencontainers.image.title";
const CREATED: &str = "org.opencontainers.image.created";
const LAST_GOOD: &str = "last-good";
/// The largest `meta.json` a reader fetches.
const MAX_META: u64 = 1 << 20;
/// Snapshots kept per app unless told otherwise.
pub const DEFAULT_KEEP: usize = 5;

/// Snapshots as OCI artifacts in a registry repository (`oci://HOST/REPO`).
///
/// Auth, retries, timeouts and the plain-HTTP rules are the [`Client`]'s.
/// Methods block: call them off the async runtime's own threads (the
/// crate's entry points do), inside a tokio runtime context.
///
/// ```no_run
/// # fn run(state_dir: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
/// use lkg_warmsnap::{OciStore, Store};
/// let client = lkg_registry::Client::new(lkg_registry::ClientOptions::default())?;
/// let store = OciStore::new(client, &OciStore::parse_url("oci://127.0.0.1:5000/lkg/snapshots")?, state_dir).keep(3);
/// println!("{}", store.location(&lkg_warmsnap::AppName::new("gitea")?));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct OciStore {
    client: Client,
    repo: Reference,
    local: LocalStore,
    keep: usize,
    uploaded: Arc<AtomicU64>,
    sign: Option<SigningKey>,
    verify: Option<PublicKey>,
    keys: AgeKeys,
}

/// age recipients to encrypt to, identities to decrypt with; `Debug`
/// shows recipients only.
#[derive(Clone, Default)]
struct AgeKeys {
    recipients: Arc<Vec<age::x25519::Recipient>>,
    identities: Arc<Vec<age::x25519::Identity>>,
}

impl std::fmt::Debug for AgeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgeKeys")
            .field("recipients", &self.recipients.iter().map(ToString::to_string).collect::<Vec<_>>())
            .field("identities", &self.identities.len())
            .finish()
    }
}

impl AgeKeys {
    /// Names the recipient set, so that a layer encrypted to the same
    /// recipients can be reused: the first 16 hex of the SHA-256 of the
    /// sorted recipients.
    fn fingerprint(&self) -> String {
        use sha2::Digest as _;
        let mut recipients: Vec<String> = self.recipients.iter().map(ToString::to_string).collect();
        recipients.sort();
        let hash = sha2::Sha256::digest(recipients.join("\n").as_bytes());
        lkg_core::hex(&hash[..8])
    }
}

/// Why an `oci://` store URL is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("store {url:?} is not a registry repository: {problem} (expected oci://HOST[:PORT]/REPOSITORY)")]
pub struct StoreUrlError {
    /// The URL given.
    pub url: String,
    /// What is wrong with it.
    pub problem: String,
}

impl lkg_core::Classify for StoreUrlError {
    fn kind(&self) -> lkg_core::FailureKind {
        lkg_core::FailureKind::Input
    }
}

impl OciStore {
    /// A store in `repo` (its repository; a tag or digest in it is
    /// ignored), with locks and staging under `state_dir`.
    pub fn new(client: Client, repo: &Reference, state_dir: impl AsRef<Path>) -> OciStore {
        let repo = Reference::new(repo.registry(), repo.repository(), None, None);
        OciStore {
            client,
            repo,
            local: LocalStore::new(state_dir),
            keep: DEFAULT_KEEP,
            uploaded: Arc::default(),
            sign: None,
            verify: None,
            keys: AgeKeys::default(),
        }
    }

    /// Keeps the newest `keep` snapshots of each app (at least 1, the
    /// last-known-good); older ones are deleted after each commit. A registry
    /// that refuses deletes keeps them all.
    #[must_use]
    pub fn keep(mut self, keep: usize) -> OciStore {
        self.keep = keep.max(1);
        self
    }

    /// Signs every snapshot manifest with `key` before it becomes the
    /// last-known-good, as cosign 3 does (a Sigstore bundle referrer):
    /// `cosign verify --key` checks it too.
    #[must_use]
    pub fn sign_with(mut self, key: SigningKey) -> OciStore {
        self.sign = Some(key);
        self
    }

    /// Opens only snapshots whose manifest carries a signature by `key`
    /// (a bundle or a legacy `.sig`); any other is refused before a byte of
    /// it is read.
    #[must_use]
    pub fn verify_with(mut self, key: PublicKey) -> OciStore {
        self.verify = Some(key);
        self
    }

    /// Encrypts each volume archive to `recipients` (age, X25519) before it
    /// leaves this machine: the registry sees only ciphertext (`meta.json`,
    /// with volume names, sizes and checksums, stays readable). A volume
    /// whose archive did not change since the last-known-good, encrypted
    /// to the same recipients, reuses that layer and is not uploaded again.
    #[must_use]
    pub fn encrypt_to(mut self, recipients: Vec<age::x25519::Recipient>) -> OciStore {
        self.keys.recipients = Arc::new(recipients);
        self
    }

    /// Decrypts encrypted snapshots with `identities`; without one, an
    /// encrypted snapshot can be shown but not read.
    #[must_use]
    pub fn decrypt_with(mut self, identities: Vec<age::x25519::Identity>) -> OciStore {
        self.keys.identities = Arc::new(identities);
        self
    }

    /// Parses `oci://HOST[:PORT]/REPOSITORY`.
    ///
    /// ```
    /// let repo = lkg_warmsnap::OciStore::parse_url("oci://10.99.0.1:5099/lkg/snapshots")?;
    /// assert_eq!((repo.registry(), repo.repository()), ("10.99.0.1:5099", "lkg/snapshots"));
    /// assert!(lkg_warmsnap::OciStore::parse_url("oci://snapshots").is_err());
    /// # Ok::<(), lkg_warmsnap::StoreUrlError>(())
    /// ```
    pub fn parse_url(url: &str) -> Result<Reference, StoreUrlError> {
        let bad = |problem: &str| StoreUrlError { url: url.to_owned(), problem: problem.to_owned() };
        let rest = url.strip_prefix("oci://").ok_or_else(|| bad("it does not start with oci://"))?;
        let (host, repository) = rest.split_once('/').ok_or_else(|| bad("it names no repository"))?;
        if host.is_empty() || repository.is_empty() {
            return Err(bad("it names no registry host or no repository"));
        }
        if repository.contains(['@', ':']) {
            return Err(bad("a store is a repository: leave out the tag or digest"));
        }
        let reference: Reference =
            format!("{host}/{repository}").parse().map_err(|e: RegistryError| bad(&e.to_string()))?;
        if reference.registry() != host || reference.repository() != repository {
            return Err(bad(
                "the part before the first / must be the registry host (with a dot, a port, or localhost)",
            ));
        }
        Ok(reference)
    }

    /// The repository snapshots go to.
    pub fn repository(&self) -> &Reference {
        &self.repo
    }

    /// The client it speaks to the registry with.
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// The registries its client may speak plain HTTP to.
    pub(crate) fn insecure_registries(&self) -> Vec<String> {
        self.client.options().insecure_registries.clone()
    }

    /// The age recipients it encrypts to, `age1...`.
    pub(crate) fn recipients(&self) -> Vec<String> {
        self.keys.recipients.iter().map(ToString::to_string).collect()
    }

    /// Its age identities as an identity file (secret: only for the swarm
    /// secret that hands them to lkg's agent).
    pub(crate) fn identity_lines(&self) -> String {
        use age::secrecy::ExposeSecret as _;
        let mut lines = String::new();
        for identity in self.keys.identities.iter() {
            lines.push_str(identity.to_string().expose_secret());
            lines.push('\n');
        }
        lines
    }

    /// Bytes of volume archives this store has uploaded since it was made
    /// (archives already in the repository are not uploaded again).
    pub fn uploaded_bytes(&self) -> u64 {
        self.uploaded.load(Ordering::Relaxed)
    }

    /// The tags of `app`'s snapshots, newest first (`<app>-<generation>`).
    pub async fn history(&self, app: &AppName) -> Result<Vec<String>, StoreError> {
        Ok(generation_tags(app, self.client.list_tags(&self.repo).await?))
    }

    fn last_good(&self, app: &AppName) -> Reference {
        self.repo.at_tag(&format!("{app}-{LAST_GOOD}"))
    }

    /// Reads and checks the snapshot `manifest` of `app`.
    async fn read(&self, app: &AppName, manifest: &Manifest, location: &str) -> Result<Opened, StoreError> {
        let layout = |problem: String| StoreError::Layout { path: PathBuf::from(location), problem };
        if let Some(key) = &self.verify {
            let at = self.repo.at_digest(&manifest.digest);
            let verdict = cosign::verify(&self.client, &at, key, Accept::Any).await?;
            if !verdict.verified {
                return Err(StoreError::Unsigned {
                    location: format!("{location}@{}", manifest.digest),
                    reason: verdict.error.unwrap_or_else(|| "no signature by the key".to_owned()),
                });
            }
        }
        let ManifestKind::Image(image) = manifest.parse()? else {
            return Err(layout("is an index, not an lkg snapshot manifest".to_owned()));
        };
        if image.config.media_type != META_MEDIA_TYPE {
            return Err(layout(format!(
                "is not an lkg snapshot (its config is {:?}, not {META_MEDIA_TYPE})",
                lkg_core::clip(&image.config.media_type)
            )));
        }
        if image.config.size > MAX_META {
            return Err(layout(format!("has a meta.json of {} bytes, more than lkg writes", image.config.size)));
        }
        let text = self.client.get_blob(&self.repo, &image.config.digest).await?;
        let meta = Meta::parse(&text, app).map_err(|source| StoreError::Meta { path: location.into(), source })?;
        let mut layers = BTreeMap::new();
        for layer in &image.layers {
            let title = layer.annotations.as_ref().and_then(|a| a.get(TITLE)).map(String::as_str).unwrap_or_default();
            let Some(record) = title.strip_suffix(".tar").and_then(|name| meta.volume(name)) else {
                return Err(layout(format!("has a layer {:?} that meta.json does not list", lkg_core::clip(title))));
            };
            let encrypted = layer.media_type == ENCRYPTED_VOLUME_MEDIA_TYPE;
            let agrees = if encrypted {
                layer.annotations.as_ref().and_then(|a| a.get(PLAIN_SHA256)) == Some(&record.sha256)
            } else {
                layer.digest.to_string() == format!("sha256:{}", record.sha256) && layer.size == record.bytes
            };
            if !agrees {
                return Err(layout(format!(
                    "has layer {title} as {} ({} bytes) but meta.json records sha256:{} ({} bytes)",
                    layer.digest, layer.size, record.sha256, record.bytes
                )));
            }
            layers.insert(record.name.clone(), (layer.digest.clone(), encrypted));
        }
        if let Some(missing) = meta.volumes.iter().find(|v| !layers.contains_key(&v.name)) {
            return Err(StoreError::MissingVolume {
                app: app.to_string(),
                volume: missing.name.clone(),
                path: PathBuf::from(location),
            });
        }
        Ok(Opened { meta, layers })
    }

    /// Uploads `path` as blob `digest` unless the repository has it.
    async fn upload(&self, path: &Path, digest: &Digest, size: u64) -> Result<(), StoreError> {
        if self.client.blob_exists(&self.repo, digest).await? == Some(size) {
            return Ok(());
        }
        let attempts = self.client.options().retry.attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let stream = file_stream(path).await?;
            match self.client.push_blob_stream(&self.repo, digest, size, stream, None).await {
                Ok(()) => break,
                Err(e) if attempt < attempts && e.is_environment() => {
                    tokio::time::sleep(self.client.options().retry.initial_backoff * attempt).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.uploaded.fetch_add(size, Ordering::Relaxed);
        Ok(())
    }

    /// The layer of `record`'s archive, staged in `dir` as `<volume>.tar`:
    /// uploaded unless the repository has it, or (encrypting) one of
    /// `reusable` (see [`OciStore::reusable_layers`]), else encrypted and
    /// uploaded.
    pub(crate) async fn volume_layer(
        &self,
        dir: &Path,
        record: &crate::meta::VolumeRecord,
        reusable: &BTreeMap<String, Descriptor>,
    ) -> Result<Descriptor, StoreError> {
        if !self.keys.recipients.is_empty() {
            return match reusable.get(&record.sha256) {
                Some(layer) => Ok(layer.clone()),
                None => self.encrypt_and_upload(dir, record).await,
            };
        }
        let layer = plain_layer(&record.name, &record.sha256, record.bytes)?;
        self.upload(&dir.join(format!("{}.tar", record.name)), &layer.digest, record.bytes).await?;
        Ok(layer)
    }

    /// The layers of `app`'s last-known-good that a new snapshot may reuse:
    /// none unless encrypting (a plain layer is found by its digest).
    pub(crate) async fn reusable_layers(&self, app: &AppName) -> BTreeMap<String, Descriptor> {
        if self.keys.recipients.is_empty() { BTreeMap::new() } else { self.encrypted_layers(app).await }
    }

    /// Pushes the snapshot of `meta` and moves the tags; returns the
    /// manifest's digest. Each volume's layer is `staged` (already in the
    /// repository), or its archive is in `dir`. Each layer carries its
    /// volume's print, if it has one.
    async fn push(
        &self,
        app: &AppName,
        generation: &str,
        dir: &Path,
        meta: &Meta,
        mut staged: BTreeMap<String, Descriptor>,
        prints: &BTreeMap<String, String>,
    ) -> Result<Digest, StoreError> {
        let mut layers = Vec::new();
        let reusable = self.reusable_layers(app).await;
        for record in &meta.volumes {
            let mut layer = match staged.remove(&record.name) {
                Some(layer) => layer,
                None => self.volume_layer(dir, record, &reusable).await?,
            };
            let annotations = layer.annotations.get_or_insert_default();
            match prints.get(&record.name) {
                Some(print) => annotations.insert(PRINT.to_owned(), print.clone()),
                None => annotations.remove(PRINT),
            };
            layers.push(layer);
        }
        self.publish(app, generation, meta, layers).await
    }

    /// Pushes `meta` and the manifest of `layers` (one per volume, in
    /// `meta.json` order, already in the repository) and moves the tags;
    /// returns the manifest's digest.
    async fn publish(
        &self,
        app: &AppName,
        generation: &str,
        meta: &Meta,
        layers: Vec<Descriptor>,
    ) -> Result<Digest, StoreError> {
        let text = meta.to_json();
        let config = Descriptor::of(META_MEDIA_TYPE, &text);
        if self.client.blob_exists(&self.repo, &config.digest).await?.is_none() {
            self.client.push_blob(&self.repo, &config.digest, Bytes::from(text)).await?;
        }
        let annotations = BTreeMap::from([
            (CREATED.to_owned(), meta.ts.to_string()),
            ("dev.lkg.app".to_owned(), app.to_string()),
            ("dev.lkg.generation".to_owned(), generation.to_owned()),
        ]);
        let image = ImageManifest {
            schema_version: 2,
            media_type: Some(media::OCI_MANIFEST.to_owned()),
            artifact_type: Some(ARTIFACT_TYPE.to_owned()),
            config,
            layers,
            subject: None,
            annotations: Some(annotations),
        };
        let bytes = serde_json::to_vec(&image).map_err(io::Error::other)?;
        let manifest = Manifest::from_bytes(bytes, Some(media::OCI_MANIFEST))?;
        // By digest first, then the generation's tag, then last-good: a stop
        // anywhere before the last write leaves last-good where it was.
        self.client.put_manifest(&self.repo, &manifest.digest.to_string(), &manifest).await?;
        self.client.put_manifest(&self.repo, &format!("{app}-{generation}"), &manifest).await?;
        if let Some(key) = &self.sign {
            cosign::sign(&self.client, &self.repo.at_digest(&manifest.digest), key, SignFormat::Bundle).await?;
        }
        // Read back as the next reader will read it (signature included).
        let location = self.location(app);
        self.read(app, &manifest, &location).await?;
        self.client.put_manifest(&self.repo, &format!("{app}-{LAST_GOOD}"), &manifest).await?;
        Ok(manifest.digest)
    }

    /// The encrypted layers of `app`'s last-known-good that were encrypted
    /// to this store's recipients, by the checksum of the archive inside.
    /// Best effort: none when it cannot be read.
    async fn encrypted_layers(&self, app: &AppName) -> BTreeMap<String, Descriptor> {
        let Ok(Some(manifest)) = self.client.get_manifest_opt(&self.last_good(app)).await else {
            return BTreeMap::new();
        };
        let Ok(ManifestKind::Image(image)) = manifest.parse() else { return BTreeMap::new() };
        let fingerprint = self.keys.fingerprint();
        image
            .layers
            .into_iter()
            .filter(|l| l.media_type == ENCRYPTED_VOLUME_MEDIA_TYPE)
            .filter_map(|l| {
                let annotations = l.annotations.as_ref()?;
                (annotations.get(RECIPIENTS) == Some(&fingerprint))
                    .then(|| Some((annotations.get(PLAIN_SHA256)?.clone(), l.clone())))?
            })
            .collect()
    }

    /// Encrypts the staged archive of `record` to the recipients (beside it,
    /// hashing the ciphertext as it is written) and uploads it.
    async fn encrypt_and_upload(
        &self,
        dir: &Path,
        record: &crate::meta::VolumeRecord,
    ) -> Result<Descriptor, StoreError> {
        let plain = dir.join(format!("{}.tar", record.name));
        let sealed = dir.join(format!("{}.tar.age", record.name));
        let recipients = Arc::clone(&self.keys.recipients);
        let (path, out) = (sealed.clone(), sealed.display().to_string());
        let (hex, size) = tokio::task::spawn_blocking(move || -> io::Result<(String, u64)> {
            let encryptor = age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
                .map_err(|e| io::Error::other(format!("cannot encrypt {out}: {e}")))?;
            let file = fs_err::File::create_new(&path)?;
            let mut hashing = crate::transfer::HashingWriter::new(io::BufWriter::with_capacity(1 << 20, file), None);
            let mut writer = encryptor.wrap_output(&mut hashing)?;
            io::copy(&mut fs_err::File::open(&plain)?, &mut writer)?;
            writer.finish()?;
            let (inner, size, hex) = hashing.finish();
            // A staging copy, like the archive: the registry keeps the durable one.
            inner.into_inner().map_err(io::IntoInnerError::into_error)?;
            Ok((hex, size))
        })
        .await
        .map_err(io::Error::other)??;
        let layer = self.sealed_layer(&record.name, &hex, size, &record.sha256)?;
        self.upload(&sealed, &layer.digest, size).await?;
        Ok(layer)
    }

    /// The layer of volume `name`'s archive (SHA-256 `plain`) encrypted to
    /// this store's recipients: `hex` and `size` are the ciphertext's.
    fn sealed_layer(&self, name: &str, hex: &str, size: u64, plain: &str) -> Result<Descriptor, StoreError> {
        let digest: Digest = format!("sha256:{hex}").parse().map_err(RegistryError::from)?;
        let mut layer = Descriptor::new(ENCRYPTED_VOLUME_MEDIA_TYPE, digest, size);
        layer.annotations = Some(BTreeMap::from([
            (TITLE.to_owned(), format!("{name}.tar")),
            (PLAIN_SHA256.to_owned(), plain.to_owned()),
            (RECIPIENTS.to_owned(), self.keys.fingerprint()),
        ]));
        Ok(layer)
    }

    /// The volumes of `app`'s last-known-good, each with its layer if a new
    /// snapshot may adopt it unchanged: it has a print, is of this store's
    /// kind (plain, or encrypted to the same recipients) and its blob is in
    /// the repository. Best effort: nothing when it cannot be read (or, with
    /// a verify key, is not signed by it).
    async fn previous_layers(&self, app: &AppName) -> BTreeMap<String, Option<Adoptable>> {
        let mut previous = BTreeMap::new();
        let Ok(Some(manifest)) = self.client.get_manifest_opt(&self.last_good(app)).await else { return previous };
        let Ok(opened) = self.read(app, &manifest, &self.location(app)).await else { return previous };
        let Ok(ManifestKind::Image(image)) = manifest.parse() else { return previous };
        let fingerprint = self.keys.fingerprint();
        for layer in image.layers {
            let annotations = layer.annotations.clone().unwrap_or_default();
            let Some(record) =
                annotations.get(TITLE).and_then(|t| t.strip_suffix(".tar")).and_then(|n| opened.meta.volume(n))
            else {
                continue;
            };
            let fits = if self.keys.recipients.is_empty() {
                layer.media_type == VOLUME_MEDIA_TYPE
            } else {
                layer.media_type == ENCRYPTED_VOLUME_MEDIA_TYPE && annotations.get(RECIPIENTS) == Some(&fingerprint)
            };
            let adoptable = match annotations.get(PRINT) {
                Some(print)
                    if fits
                        && self.client.blob_exists(&self.repo, &layer.digest).await.ok().flatten()
                            == Some(layer.size) =>
                {
                    Some(Adoptable { print: print.clone(), bytes: record.bytes, sha256: record.sha256.clone(), layer })
                }
                _ => None,
            };
            previous.insert(record.name.clone(), adoptable);
        }
        previous
    }

    /// Deletes `app`'s snapshots beyond the newest `keep` (never `current`).
    /// Best effort: a registry that refuses deletes keeps them.
    async fn prune(&self, app: &AppName, current: &Digest) -> Result<(), StoreError> {
        let tags = generation_tags(app, self.client.list_tags(&self.repo).await?);
        for tag in tags.iter().skip(self.keep) {
            let Some(head) = self.client.head_manifest(&self.repo.at_tag(tag)).await? else { continue };
            if head.digest != *current {
                // Its signatures first (referrers, and the tag-schema index
                // of a registry without the referrers API), then itself.
                for referrer in self.client.referrers(&self.repo, &head.digest, None).await?.manifests {
                    self.client.delete_manifest(&self.repo, &referrer.digest.to_string()).await?;
                }
                let index = self.repo.at_tag(&format!("{}-{}", head.digest.algorithm(), head.digest.hex()));
                if let Some(index) = self.client.head_manifest(&index).await? {
                    self.client.delete_manifest(&self.repo, &index.digest.to_string()).await?;
                }
                self.client.delete_manifest(&self.repo, &head.digest.to_string()).await?;
            }
        }
        Ok(())
    }
}

/// What a reader found: the meta, and each volume's layer digest.
struct Opened {
    meta: Meta,
    /// Each volume's layer, and whether it is encrypted.
    layers: BTreeMap<String, (Digest, bool)>,
}

/// `app`'s generation tags among `tags`, newest first.
fn generation_tags(app: &AppName, tags: Vec<String>) -> Vec<String> {
    let prefix = format!("{app}-");
    let mut tags: Vec<String> =
        tags.into_iter().filter(|t| t.strip_prefix(&prefix).is_some_and(is_generation)).collect();
    tags.sort_unstable_by(|a, b| b.cmp(a));
    tags
}

/// The runtime whose blocking pool is running this.
fn handle() -> Result<tokio::runtime::Handle, StoreError> {
    tokio::runtime::Handle::try_current()
        .map_err(|_| StoreError::Io(io::Error::other("the OCI store is used outside a tokio runtime (an lkg bug)")))
}

/// `path` as a blob stream, a MiB at a time.
async fn file_stream(path: &Path) -> Result<BlobStream, StoreError> {
    use futures_util::StreamExt;
    use tokio::io::AsyncReadExt;
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("cannot open {}: {e}", path.display())))?;
    let path = path.to_owned();
    let stream = futures_util::stream::unfold(Some(file), move |file| {
        let path = path.clone();
        async move {
            let mut file = file?;
            let mut buffer = Vec::with_capacity(1 << 20);
            match (&mut file).take(1 << 20).read_to_end(&mut buffer).await {
                Ok(0) => None,
                Ok(_) => Some((Ok(Bytes::from(buffer)), Some(file))),
                Err(source) => Some((Err(RegistryError::Io { path: path.clone(), source }), None)),
            }
        }
    });
    Ok(stream.boxed())
}

impl Store for OciStore {
    type Reader = OciReader;
    type Staging = OciStaging;

    fn open(&self, app: &AppName, lock: LockMode) -> Result<Option<OciReader>, StoreError> {
        let lock = self.local.lock(app, lock)?;
        let handle = handle()?;
        let location = self.location(app);
        let Some(manifest) = handle.block_on(self.client.get_manifest_opt(&self.last_good(app)))? else {
            return Ok(None);
        };
        let opened = handle.block_on(self.read(app, &manifest, &location))?;
        Ok(Some(OciReader {
            client: self.client.clone(),
            repo: self.repo.clone(),
            location: format!("{location}@{}", manifest.digest),
            opened,
            keys: self.keys.clone(),
            _lock: lock,
        }))
    }

    fn stage(&self, app: &AppName) -> Result<OciStaging, StoreError> {
        let lock = self.local.lock(app, LockMode::Exclusive)?;
        let generation = new_generation();
        let dir = self.local.new_staging(app, &generation)?;
        let handle = handle()?;
        let previous = handle.block_on(self.previous_layers(app));
        Ok(OciStaging {
            store: self.clone(),
            app: app.clone(),
            generation,
            dir,
            previous,
            staged: Arc::default(),
            prints: BTreeMap::new(),
            handle,
            _lock: lock,
        })
    }

    fn apps(&self) -> Result<Vec<AppName>, StoreError> {
        let handle = handle()?;
        let tags = handle.block_on(self.client.list_tags(&self.repo))?;
        let suffix = format!("-{LAST_GOOD}");
        let mut apps: Vec<AppName> = tags.iter().filter_map(|t| AppName::new(t.strip_suffix(&suffix)?).ok()).collect();
        apps.sort();
        apps.dedup();
        Ok(apps)
    }

    fn location(&self, app: &AppName) -> String {
        format!("oci://{}/{}:{app}-{LAST_GOOD}", self.repo.registry(), self.repo.repository())
    }

    fn uploaded_bytes(&self) -> Option<u64> {
        Some(OciStore::uploaded_bytes(self))
    }
}

/// A snapshot in a registry, opened for reading; holds the local lock.
#[derive(Debug)]
pub struct OciReader {
    client: Client,
    repo: Reference,
    location: String,
    opened: Opened,
    keys: AgeKeys,
    _lock: std::fs::File,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened").field("app", &self.meta.app).field("layers", &self.layers.len()).finish()
    }
}

impl SnapshotReader for OciReader {
    fn meta(&self) -> &Meta {
        &self.opened.meta
    }

    fn location(&self) -> String {
        self.location.clone()
    }

    fn open_volume(&self, name: &str) -> Result<Box<dyn Read + Send>, StoreError> {
        check_object_name("volume", name)?;
        let Some((digest, encrypted)) = self.opened.layers.get(name) else {
            return Err(StoreError::MissingVolume {
                app: self.opened.meta.app.to_string(),
                volume: name.to_owned(),
                path: PathBuf::from(&self.location),
            });
        };
        let recorded = self.opened.meta.volume(name).map_or(u64::MAX - 1, |v| v.bytes);
        if *encrypted && self.keys.identities.is_empty() {
            return Err(StoreError::Encrypted { location: self.location.clone() });
        }
        layer_reader(
            &self.client,
            &self.repo,
            digest,
            (*encrypted).then(|| Arc::clone(&self.keys.identities)),
            recorded,
        )
    }
}

impl OciReader {
    /// The layer of volume `name` in the snapshot's manifest, and whether it
    /// is encrypted.
    pub(crate) fn layer(&self, name: &str) -> Option<(&Digest, bool)> {
        self.opened.layers.get(name).map(|(digest, encrypted)| (digest, *encrypted))
    }
}

impl OciStore {
    /// Reads layer `digest` of the store's repository as the archive of a
    /// volume recorded at `recorded` bytes: checked against its digest as it
    /// flows, decrypted when encrypted (`None` otherwise), never more than
    /// `recorded` bytes and one.
    pub(crate) fn layer_reader(
        &self,
        digest: &Digest,
        encrypted: bool,
        recorded: u64,
    ) -> Result<Box<dyn Read + Send>, StoreError> {
        if encrypted && self.keys.identities.is_empty() {
            return Err(StoreError::Encrypted { location: format!("{}@{digest}", self.location_of_repo()) });
        }
        layer_reader(&self.client, &self.repo, digest, encrypted.then(|| Arc::clone(&self.keys.identities)), recorded)
    }

    fn location_of_repo(&self) -> String {
        format!("oci://{}/{}", self.repo.registry(), self.repo.repository())
    }
}

fn layer_reader(
    client: &Client,
    repo: &Reference,
    digest: &Digest,
    identities: Option<Arc<Vec<age::x25519::Identity>>>,
    recorded: u64,
) -> Result<Box<dyn Read + Send>, StoreError> {
    let blob = LazyBlob {
        client: client.clone(),
        repo: repo.clone(),
        digest: digest.clone(),
        handle: handle()?,
        identities,
        reader: None,
    };
    // Never more than recorded (and one byte to tell it grew).
    Ok(Box::new(blob.take(recorded.saturating_add(1))))
}

/// A layer that is requested at its first read, on the thread that reads
/// it (the blocking pool: opening happens on the runtime's own threads),
/// and verified against its digest as it flows: a mismatch is a read error,
/// never a clean end.
struct LazyBlob {
    client: Client,
    repo: Reference,
    digest: Digest,
    handle: tokio::runtime::Handle,
    /// Set for an encrypted layer: what decrypts it.
    identities: Option<Arc<Vec<age::x25519::Identity>>>,
    reader: Option<Box<dyn Read + Send>>,
}

impl Read for LazyBlob {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.reader.is_none() {
            let stream = self
                .handle
                .block_on(self.client.blob_stream(&self.repo, &self.digest))
                .map_err(|e| io::Error::other(StoreError::from(e)))?;
            let blob = BlobReader::new(stream, self.handle.clone());
            self.reader = Some(match &self.identities {
                None => Box::new(blob),
                Some(identities) => {
                    let decryptor = age::Decryptor::new(ErrorsAsStore(blob)).map_err(undecryptable)?;
                    Box::new(
                        decryptor.decrypt(identities.iter().map(|i| i as &dyn age::Identity)).map_err(undecryptable)?,
                    )
                }
            });
        }
        let Some(reader) = &mut self.reader else { unreachable!("set above") };
        reader.read(buf).map_err(as_store_error)
    }
}

/// Why an encrypted layer cannot be read: no identity fits (bad input), or
/// its ciphertext does not check (a verdict on the snapshot).
fn undecryptable(error: age::DecryptError) -> io::Error {
    let input = matches!(error, age::DecryptError::NoMatchingKeys);
    let error = match error {
        age::DecryptError::Io(e) => return e,
        other => other.to_string(),
    };
    io::Error::other(if input {
        StoreError::Undecryptable { reason: error }
    } else {
        StoreError::Layout { path: PathBuf::from("encrypted layer"), problem: format!("does not decrypt: {error}") }
    })
}

/// A blob reader whose registry errors are carried as [`StoreError`]s, so
/// that they survive the decryptor's reads.
struct ErrorsAsStore(BlobReader);

impl Read for ErrorsAsStore {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).map_err(as_store_error)
    }
}

/// A registry failure inside a read error, carried as the [`StoreError`]
/// that classifies it: a digest mismatch is a verdict on the snapshot, not
/// an I/O failure.
fn as_store_error(error: io::Error) -> io::Error {
    let kind = error.kind();
    match error.into_inner().map(<dyn std::error::Error + Send + Sync>::downcast::<RegistryError>) {
        Some(Ok(registry)) => io::Error::new(kind, StoreError::Registry(*registry)),
        Some(Err(other)) => io::Error::new(kind, other),
        None => io::Error::from(kind),
    }
}

/// A snapshot being written. A volume the last-known-good does not have
/// goes to the registry while it is archived (encrypted on the way when
/// encrypting), and nowhere else; any other is staged in a local directory
/// first, and
/// [`Staging::commit`] uploads it unless the repository has its digest. A
/// volume whose print did not change adopts the last-known-good's layer.
#[derive(Debug)]
pub struct OciStaging {
    store: OciStore,
    app: AppName,
    generation: String,
    dir: PathBuf,
    /// The last-known-good's volumes, with the layer each may adopt.
    previous: BTreeMap<String, Option<Adoptable>>,
    /// Layers already in the repository before the commit (uploaded while
    /// archived, or adopted), by volume.
    staged: Arc<std::sync::Mutex<BTreeMap<String, Descriptor>>>,
    /// Each volume's print, by volume.
    prints: BTreeMap<String, String>,
    handle: tokio::runtime::Handle,
    _lock: std::fs::File,
}

/// A last-known-good layer that a volume with the same print adopts.
#[derive(Debug, Clone)]
struct Adoptable {
    print: String,
    bytes: u64,
    sha256: String,
    layer: Descriptor,
}

impl Staging for OciStaging {
    fn create_volume(&mut self, name: &str) -> Result<Box<dyn VolumeSink>, StoreError> {
        check_object_name("volume", name)?;
        if self.previous.contains_key(name) {
            // Likely in the repository already: archived first, uploaded only
            // if its digest is new. The registry keeps the durable copy: no
            // fsync of the staging one.
            return Ok(Box::new(LocalSink::create_scratch(&self.dir.join(format!("{name}.tar")))?));
        }
        Ok(Box::new(StreamingSink::start(self, name)?))
    }

    fn open_volume(&self, name: &str) -> Result<Box<dyn Read + Send>, StoreError> {
        check_object_name("volume", name)?;
        Ok(Box::new(fs_err::File::open(self.dir.join(format!("{name}.tar")))?))
    }

    fn commit(self, meta: &Meta) -> Result<String, StoreError> {
        self.commit_layers(meta, None)
    }

    fn reads_back(&self) -> bool {
        false
    }

    fn may_adopt(&self, name: &str) -> bool {
        matches!(self.previous.get(name), Some(Some(_)))
    }

    fn adopt_unchanged(&mut self, name: &str, print: &str) -> Result<Option<(u64, String)>, StoreError> {
        let Some(Some(adoptable)) = self.previous.get(name) else { return Ok(None) };
        if adoptable.print != print {
            return Ok(None);
        }
        self.staged.lock().expect("staged layers").insert(name.to_owned(), adoptable.layer.clone());
        Ok(Some((adoptable.bytes, adoptable.sha256.clone())))
    }

    fn note_print(&mut self, name: &str, print: &str) {
        self.prints.insert(name.to_owned(), print.to_owned());
    }
}

/// The archive of a volume new to the store, uploaded as it is written
/// (sealed on the way when encrypting): one streamed upload, finished with
/// the digest once the archive is complete. Nothing is staged on disk, so
/// nothing can be retried: an upload that fails fails the take (the
/// last-known-good stays where it was; run it again).
struct StreamingSink {
    name: String,
    store: OciStore,
    staged: Arc<std::sync::Mutex<BTreeMap<String, Descriptor>>>,
    inlet: Option<Inlet>,
}

enum Inlet {
    Plain(Upload),
    Sealed(age::stream::StreamWriter<Upload>),
}

/// A streamed upload in progress.
struct Upload {
    tx: Option<tokio::sync::mpsc::Sender<Result<Bytes, RegistryError>>>,
    /// The request; `None` once its outcome was taken.
    task: Option<tokio::task::JoinHandle<Result<UnfinishedUpload, RegistryError>>>,
    handle: tokio::runtime::Handle,
    pending: Vec<u8>,
    /// The SHA-256 of a sealed layer (a plain one's is the archive's).
    hasher: Option<sha2::Sha256>,
    bytes: u64,
}

/// The size of the chunks a streamed upload sends.
const STREAM_CHUNK: usize = 1 << 20;

impl StreamingSink {
    fn start(staging: &OciStaging, name: &str) -> Result<StreamingSink, StoreError> {
        let store = &staging.store;
        let sealing = !store.keys.recipients.is_empty();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, RegistryError>>(4);
        let content: BlobStream =
            Box::pin(futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|chunk| (chunk, rx)) },
            ));
        let (client, repo) = (store.client.clone(), store.repo.clone());
        let task = staging.handle.spawn(async move { client.upload_unfinished(&repo, content).await });
        let upload = Upload {
            tx: Some(tx),
            task: Some(task),
            handle: staging.handle.clone(),
            pending: Vec::with_capacity(STREAM_CHUNK),
            hasher: sealing.then(sha2::Sha256::default),
            bytes: 0,
        };
        let inlet = if sealing {
            let recipients = store.keys.recipients.iter().map(|r| r as &dyn age::Recipient);
            let encryptor = age::Encryptor::with_recipients(recipients)
                .map_err(|e| io::Error::other(format!("cannot encrypt the archive of {name}: {e}")))?;
            Inlet::Sealed(encryptor.wrap_output(upload)?)
        } else {
            Inlet::Plain(upload)
        };
        Ok(StreamingSink {
            name: name.to_owned(),
            store: store.clone(),
            staged: Arc::clone(&staging.staged),
            inlet: Some(inlet),
        })
    }
}

impl io::Write for StreamingSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.inlet.as_mut().expect("an unfinished sink") {
            Inlet::Plain(upload) => upload.write(buf),
            Inlet::Sealed(writer) => writer.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(()) // chunks go as they fill; the last with `finish`
    }
}

impl io::Write for Upload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        use sha2::Digest as _;
        if let Some(hasher) = &mut self.hasher {
            hasher.update(buf);
        }
        self.bytes += buf.len() as u64;
        self.pending.extend_from_slice(buf);
        if self.pending.len() >= STREAM_CHUNK {
            self.send()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Upload {
    /// Sends what is pending. An upload that stopped says why.
    fn send(&mut self) -> io::Result<()> {
        let chunk = std::mem::replace(&mut self.pending, Vec::with_capacity(STREAM_CHUNK));
        let sent = match &self.tx {
            Some(tx) => chunk.is_empty() || tx.blocking_send(Ok(Bytes::from(chunk))).is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        self.tx = None;
        let error = match self.outcome() {
            Err(e) => e,
            Ok(_) => StoreError::Io(io::Error::other("the registry ended the upload early")),
        };
        Err(io::Error::other(error))
    }

    /// Waits for the request to end (the stream must be closed or broken).
    fn outcome(&mut self) -> Result<UnfinishedUpload, StoreError> {
        let Some(task) = self.task.take() else {
            return Err(StoreError::Io(io::Error::other("the upload failed earlier")));
        };
        match self.handle.block_on(task) {
            Ok(upload) => Ok(upload?),
            Err(e) => Err(StoreError::Io(io::Error::other(format!("the upload stopped: {e}")))),
        }
    }

    /// Ends the stream and makes it blob `digest`.
    fn finish(mut self, store: &OciStore, digest: &Digest) -> Result<(), StoreError> {
        self.send().map_err(|e| {
            match e.into_inner().map(<dyn std::error::Error + Send + Sync>::downcast::<StoreError>) {
                Some(Ok(error)) => *error,
                Some(Err(other)) => StoreError::Io(io::Error::other(other)),
                None => StoreError::Io(io::Error::other("the upload failed")),
            }
        })?;
        self.tx = None;
        let upload = self.outcome()?;
        self.handle.block_on(store.client.finish_upload(&store.repo, upload, digest))?;
        Ok(())
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        // Unfinished: stop the request, so the registry drops the session.
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl VolumeSink for StreamingSink {
    fn finish(mut self: Box<Self>, sha256: &str) -> Result<(), StoreError> {
        use sha2::Digest as _;
        let (upload, layer) = match self.inlet.take().expect("an unfinished sink") {
            Inlet::Plain(upload) => {
                let layer = plain_layer(&self.name, sha256, upload.bytes)?;
                (upload, layer)
            }
            Inlet::Sealed(writer) => {
                let mut upload = writer.finish()?;
                let hex = lkg_core::hex(&upload.hasher.take().expect("a sealed layer's hasher").finalize());
                let layer = self.store.sealed_layer(&self.name, &hex, upload.bytes, sha256)?;
                (upload, layer)
            }
        };
        upload.finish(&self.store, &layer.digest)?;
        self.store.uploaded.fetch_add(layer.size, Ordering::Relaxed);
        self.staged.lock().expect("staged layers").insert(self.name.clone(), layer);
        Ok(())
    }
}

/// The layer of volume `name`'s plain archive.
fn plain_layer(name: &str, sha256: &str, size: u64) -> Result<Descriptor, StoreError> {
    let digest: Digest = format!("sha256:{sha256}").parse().map_err(RegistryError::from)?;
    let mut layer = Descriptor::new(VOLUME_MEDIA_TYPE, digest, size);
    layer.annotations = Some(BTreeMap::from([(TITLE.to_owned(), format!("{name}.tar"))]));
    Ok(layer)
}

impl OciStaging {
    /// Commits `meta` with `layers` (one per volume, in `meta.json` order)
    /// already in the repository, uploaded by lkg's agent on the volumes'
    /// node; `None`: the volumes staged here.
    pub(crate) fn commit_layers(self, meta: &Meta, layers: Option<Vec<Descriptor>>) -> Result<String, StoreError> {
        meta.check(&self.app).map_err(|source| StoreError::Meta { path: self.dir.join("meta.json"), source })?;
        for name in fs_err::read_dir(&self.dir)? {
            let name = name?.file_name();
            let listed = name.to_str().and_then(|n| n.strip_suffix(".tar")).is_some_and(|n| meta.volume(n).is_some());
            if !listed {
                return Err(StoreError::Layout {
                    path: self.dir.join(name),
                    problem: "is not listed in meta.json".to_owned(),
                });
            }
        }
        let handle = handle()?;
        let digest = match layers {
            None => {
                let staged = std::mem::take(&mut *self.staged.lock().expect("staged layers"));
                handle.block_on(self.store.push(&self.app, &self.generation, &self.dir, meta, staged, &self.prints))?
            }
            Some(layers) => {
                let titled = |l: &Descriptor| {
                    l.annotations
                        .as_ref()
                        .and_then(|a| a.get(TITLE))
                        .and_then(|t| t.strip_suffix(".tar"))
                        .map(str::to_owned)
                };
                if layers.len() != meta.volumes.len()
                    || layers.iter().zip(&meta.volumes).any(|(l, v)| titled(l).as_deref() != Some(v.name.as_str()))
                {
                    return Err(StoreError::Layout {
                        path: self.dir.clone(),
                        problem: "the agent's layers do not match meta.json's volumes".to_owned(),
                    });
                }
                handle.block_on(self.store.publish(&self.app, &self.generation, meta, layers))?
            }
        };
        // Retention is housekeeping: the new last-known-good is in place.
        let _ = handle.block_on(self.store.prune(&self.app, &digest));
        Ok(format!("{}@{digest}", self.store.location(&self.app)))
    }
}

impl Drop for OciStaging {
    fn drop(&mut self) {
        // Committed or not, the local copies have served their purpose.
        let _ = fs_err::remove_dir_all(&self.dir);
    }
}
