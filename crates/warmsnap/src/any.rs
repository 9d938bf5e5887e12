//! [`AnyStore`]: the store a user names (`--store local` or
//! `--store oci://HOST/REPO`), one type for the programs that take either.

use std::io::Read;
use std::path::Path;

use lkg_registry::{Client, ClientOptions};

use crate::meta::Meta;
use crate::name::AppName;
use crate::oci::{OciReader, OciStaging, OciStore};
use crate::store::{
    LocalReader, LocalStaging, LocalStore, LockMode, SnapshotReader, Staging, Store, StoreError, VolumeSink,
};

/// The local store or a registry store, chosen at run time.
///
/// ```
/// use lkg_warmsnap::{AnyStore, AppName, Store};
/// let state = tempfile::tempdir()?;
/// let options = lkg_registry::ClientOptions::default();
/// let local = AnyStore::new("local", state.path(), options.clone())?;
/// assert!(local.location(&AppName::new("gitea")?).ends_with("apps/gitea/snapshot"));
/// let oci = AnyStore::new("oci://127.0.0.1:5000/lkg/snapshots", state.path(), options)?;
/// assert_eq!(oci.location(&AppName::new("gitea")?), "oci://127.0.0.1:5000/lkg/snapshots:gitea-last-good");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub enum AnyStore {
    /// Under the state dir ([`LocalStore`]).
    Local(LocalStore),
    /// In a registry repository ([`OciStore`]).
    Oci(Box<OciStore>),
}

impl AnyStore {
    /// `local` (under `state_dir`) or `oci://HOST[:PORT]/REPOSITORY` (a
    /// registry store with `options`, locks and staging under `state_dir`).
    pub fn new(spec: &str, state_dir: &Path, options: ClientOptions) -> Result<AnyStore, StoreError> {
        if spec == "local" {
            return Ok(AnyStore::Local(LocalStore::new(state_dir)));
        }
        let repo = OciStore::parse_url(spec)?;
        Ok(AnyStore::Oci(Box::new(OciStore::new(Client::new(options)?, &repo, state_dir))))
    }

    /// Keeps the newest `keep` snapshots per app in a registry store (the
    /// local store keeps one).
    #[must_use]
    pub fn keep(self, keep: usize) -> AnyStore {
        match self {
            AnyStore::Oci(store) => AnyStore::Oci(Box::new(store.keep(keep))),
            local @ AnyStore::Local(_) => local,
        }
    }
}

impl Store for AnyStore {
    type Reader = AnyReader;
    type Staging = AnyStaging;

    fn open(&self, app: &AppName, lock: LockMode) -> Result<Option<AnyReader>, StoreError> {
        Ok(match self {
            AnyStore::Local(store) => store.open(app, lock)?.map(AnyReader::Local),
            AnyStore::Oci(store) => store.open(app, lock)?.map(AnyReader::Oci),
        })
    }

    fn stage(&self, app: &AppName) -> Result<AnyStaging, StoreError> {
        Ok(match self {
            AnyStore::Local(store) => AnyStaging::Local(store.stage(app)?),
            AnyStore::Oci(store) => AnyStaging::Oci(Box::new(store.stage(app)?)),
        })
    }

    fn apps(&self) -> Result<Vec<AppName>, StoreError> {
        match self {
            AnyStore::Local(store) => store.apps(),
            AnyStore::Oci(store) => store.apps(),
        }
    }

    fn location(&self, app: &AppName) -> String {
        match self {
            AnyStore::Local(store) => store.location(app),
            AnyStore::Oci(store) => store.location(app),
        }
    }

    fn uploaded_bytes(&self) -> Option<u64> {
        match self {
            AnyStore::Local(store) => store.uploaded_bytes(),
            AnyStore::Oci(store) => Store::uploaded_bytes(&**store),
        }
    }
}

/// A snapshot of an [`AnyStore`], opened for reading.
#[derive(Debug)]
pub enum AnyReader {
    /// From the local store.
    Local(LocalReader),
    /// From a registry store.
    Oci(OciReader),
}

impl SnapshotReader for AnyReader {
    fn meta(&self) -> &Meta {
        match self {
            AnyReader::Local(r) => r.meta(),
            AnyReader::Oci(r) => r.meta(),
        }
    }

    fn location(&self) -> String {
        match self {
            AnyReader::Local(r) => r.location(),
            AnyReader::Oci(r) => r.location(),
        }
    }

    fn open_volume(&self, name: &str) -> Result<Box<dyn Read + Send>, StoreError> {
        match self {
            AnyReader::Local(r) => r.open_volume(name),
            AnyReader::Oci(r) => r.open_volume(name),
        }
    }
}

/// A replacement being written to an [`AnyStore`].
#[derive(Debug)]
pub enum AnyStaging {
    /// Into the local store.
    Local(LocalStaging),
    /// Into a registry store.
    Oci(Box<OciStaging>),
}

impl Staging for AnyStaging {
    fn create_volume(&mut self, name: &str) -> Result<Box<dyn VolumeSink>, StoreError> {
        match self {
            AnyStaging::Local(s) => s.create_volume(name),
            AnyStaging::Oci(s) => s.create_volume(name),
        }
    }

    fn open_volume(&self, name: &str) -> Result<Box<dyn Read + Send>, StoreError> {
        match self {
            AnyStaging::Local(s) => s.open_volume(name),
            AnyStaging::Oci(s) => s.open_volume(name),
        }
    }

    fn commit(self, meta: &Meta) -> Result<String, StoreError> {
        match self {
            AnyStaging::Local(s) => s.commit(meta),
            AnyStaging::Oci(s) => (*s).commit(meta),
        }
    }

    fn reads_back(&self) -> bool {
        match self {
            AnyStaging::Local(s) => s.reads_back(),
            AnyStaging::Oci(s) => s.reads_back(),
        }
    }

    fn may_adopt(&self, name: &str) -> bool {
        match self {
            AnyStaging::Local(s) => s.may_adopt(name),
            AnyStaging::Oci(s) => s.may_adopt(name),
        }
    }

    fn adopt_unchanged(&mut self, name: &str, print: &str) -> Result<Option<(u64, String)>, StoreError> {
        match self {
            AnyStaging::Local(s) => s.adopt_unchanged(name, print),
            AnyStaging::Oci(s) => s.adopt_unchanged(name, print),
        }
    }

    fn note_print(&mut self, name: &str, print: &str) {
        match self {
            AnyStaging::Local(s) => s.note_print(name, print),
            AnyStaging::Oci(s) => s.note_print(name, print),
        }
    }
}

/// The command-line options that choose a store (lkg's binaries flatten
/// them), feature `cli`.
#[cfg(feature = "cli")]
#[derive(Debug, Clone, clap::Args)]
#[allow(clippy::doc_markdown, reason = "the field docs are --help text, where backticks would show")]
pub struct StoreArgs {
    /// Where snapshots are kept: local (under the state dir) or a registry
    /// repository, oci://HOST/REPOSITORY (HOST may carry a :PORT).
    /// Credentials come from the Docker config (REGISTRY_AUTH_FILE,
    /// DOCKER_CONFIG); loopback hosts may use plain HTTP.
    #[arg(long, global = true, env = "LKG_SNAP_STORE", default_value = "local", value_name = "STORE")]
    pub store: String,
    /// With an oci:// store: how many snapshots of each app to keep (the
    /// last-known-good included); older ones are deleted after a take.
    #[arg(long, global = true, default_value_t = 5, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub keep: u16,
    /// A registry HOST or HOST:PORT that may be spoken to over plain HTTP (repeatable).
    #[arg(long = "insecure-registry", global = true, value_name = "HOST")]
    pub insecure_registries: Vec<String>,
    /// With an oci:// store: sign each snapshot with this cosign key (PKCS#8
    /// PEM or cosign's encrypted format, password in COSIGN_PASSWORD) before
    /// it becomes the last-known-good, as a Sigstore bundle referrer.
    #[arg(long, global = true, value_name = "KEY")]
    pub sign_key: Option<std::path::PathBuf>,
    /// With an oci:// store: read only snapshots signed by this public key
    /// (cosign.pub); any other is refused (exit 1) before a byte of it is read.
    #[arg(long, global = true, value_name = "PUB")]
    pub verify_key: Option<std::path::PathBuf>,
    /// With an oci:// store: encrypt each volume archive to this age
    /// recipient (age1..., repeatable) before it leaves this machine.
    #[arg(long, global = true, value_name = "RECIPIENT")]
    pub encrypt_to: Vec<String>,
    /// With an oci:// store: an age identity file (AGE-SECRET-KEY-1... lines,
    /// as age-keygen writes) to read encrypted snapshots (repeatable).
    #[arg(long, global = true, value_name = "FILE")]
    pub identity: Vec<std::path::PathBuf>,
    /// With an oci:// store: lkg's static agent binary. For volumes on
    /// another node than the engine's, lkg packs it into an image, pushes
    /// that to the store and runs it there as a swarm job (default:
    /// lkg-agent beside this program; scripts/build-agent builds it).
    #[arg(long, global = true, env = "LKG_AGENT", value_name = "PATH")]
    pub agent: Option<std::path::PathBuf>,
    /// Instead of --agent: an image every node can pull whose entry point is
    /// lkg-agent.
    #[arg(long, global = true, env = "LKG_AGENT_IMAGE", value_name = "IMAGE")]
    pub agent_image: Option<String>,
}

#[cfg(feature = "cli")]
impl StoreArgs {
    /// The agent these options name (see [`crate::remote`]).
    pub fn agent(&self) -> crate::remote::Agent {
        let source = match (&self.agent_image, &self.agent) {
            (Some(image), _) if !image.is_empty() => crate::remote::AgentSource::Image(image.clone()),
            (_, Some(path)) if !path.as_os_str().is_empty() => crate::remote::AgentSource::Binary(path.clone()),
            _ => crate::remote::AgentSource::from_env(),
        };
        crate::remote::Agent::new(source)
    }

    /// The store these options name, with locks (and a registry store's
    /// staging) under `state_dir`.
    pub fn open(&self, state_dir: &Path) -> Result<AnyStore, StoreError> {
        let options =
            ClientOptions { insecure_registries: self.insecure_registries.clone(), ..ClientOptions::default() };
        let store = AnyStore::new(&self.store, state_dir, options)?.keep(usize::from(self.keep));
        let AnyStore::Oci(mut oci) = store else {
            if self.sign_key.is_some()
                || self.verify_key.is_some()
                || !self.encrypt_to.is_empty()
                || !self.identity.is_empty()
            {
                return Err(crate::oci::StoreUrlError {
                    url: self.store.clone(),
                    problem: "--sign-key, --verify-key, --encrypt-to and --identity sign, check, encrypt and \
                              decrypt snapshots in a registry"
                        .to_owned(),
                }
                .into());
            }
            return Ok(store);
        };
        if let Some(path) = &self.sign_key {
            let password = std::env::var_os("COSIGN_PASSWORD").map(std::ffi::OsString::into_encoded_bytes);
            oci = Box::new(oci.sign_with(lkg_registry::sign::SigningKey::from_file(path, password.as_deref())?));
        }
        if let Some(path) = &self.verify_key {
            oci = Box::new(oci.verify_with(lkg_registry::sign::PublicKey::from_file(path)?));
        }
        if !self.encrypt_to.is_empty() {
            let recipients = self.encrypt_to.iter().map(|r| recipient(r)).collect::<Result<_, _>>()?;
            oci = Box::new(oci.encrypt_to(recipients));
        }
        if !self.identity.is_empty() {
            let mut identities = Vec::new();
            for path in &self.identity {
                identities.extend(identity_file(path)?);
            }
            oci = Box::new(oci.decrypt_with(identities));
        }
        Ok(AnyStore::Oci(oci))
    }
}

/// An age X25519 recipient, `age1...`.
pub(crate) fn recipient(text: &str) -> Result<age::x25519::Recipient, StoreError> {
    text.trim().parse().map_err(|_| StoreError::AgeKey {
        what: format!("--encrypt-to {:?}", lkg_core::clip(text)),
        problem: "is not an age X25519 recipient (age1..., what age-keygen prints as its public key)".to_owned(),
    })
}

/// The X25519 identities of an age identity file. A line that is not one
/// is named by its number only: the file holds secrets.
pub(crate) fn identity_file(path: &Path) -> Result<Vec<age::x25519::Identity>, StoreError> {
    let what = format!("identity file {}", path.display());
    let text = lkg_core::input::read_to_string(path, lkg_core::input::MAX_TEXT)
        .map_err(|e| StoreError::AgeKey { what: what.clone(), problem: format!("cannot be read: {e}") })?;
    let mut identities = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        identities.push(line.parse().map_err(|_| StoreError::AgeKey {
            what: what.clone(),
            problem: format!("line {} is not an age X25519 identity (AGE-SECRET-KEY-1...)", number + 1),
        })?);
    }
    if identities.is_empty() {
        return Err(StoreError::AgeKey { what, problem: "holds no identity".to_owned() });
    }
    Ok(identities)
}
