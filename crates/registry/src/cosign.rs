//! Signing and verifying an image in both formats cosign writes.
//!
//! - **legacy** (cosign 1 and 2): a signature manifest tagged
//!   `sha256-<hex>.sig` beside the image ([`crate::sign`]);
//! - **bundle** (cosign 3, the default since 3.0): a Sigstore bundle attached
//!   to the image as an OCI 1.1 referrer ([`crate::bundle`] for the bundle,
//!   [`crate::referrers`] for the attaching).
//!
//! [`sign()`] writes the formats asked for ([`SignFormat`], both by default, so
//! cosign 2 and cosign 3 verifiers each find theirs); [`verify`] accepts what
//! it is told to ([`Accept`], either by default) and reports each format it
//! looked at, and each bundle referrer with its own verdict.
//!
//! Both are idempotent: a format this key has already signed the image in is
//! left as it is (`added: false`).
//!
//! ```no_run
//! # async fn run(client: lkg_registry::Client) -> Result<(), Box<dyn std::error::Error>> {
//! use lkg_registry::cosign::{self, Accept, SignFormat};
//! use lkg_registry::sign::SigningKey;
//! let image: lkg_registry::Reference = "ghcr.io/o/img:latest".parse()?;
//! let key = SigningKey::from_file("cosign.key".as_ref(), Some(b"password"))?;
//! cosign::sign(&client, &image, &key, SignFormat::Both).await?;
//! let verdict = cosign::verify(&client, &image, &key.public_key(), Accept::Any).await?;
//! assert!(verdict.verified);
//! # Ok(()) }
//! ```

use bytes::Bytes;
use futures_util::StreamExt as _;
use serde::Serialize;

use crate::bundle::{self, BundleError, VerifiedBundle};
use crate::sign::{self, PublicKey, SignReport, SigningKey, VerifyError, VerifyReport};
use crate::{Client, Descriptor, Digest, ManifestKind, Reference, ReferrersVia, RegistryError, referrers};

/// The largest bundle lkg reads. cosign's are a few KiB (with a
/// transparency-log entry and a certificate chain, tens of KiB).
pub const MAX_BUNDLE: u64 = 1 << 20;
/// Bundle referrers of one image looked at, at most (the newest are not
/// preferred: the list's order is the registry's).
pub const MAX_CANDIDATES: usize = 64;

/// Which formats [`sign()`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum SignFormat {
    /// A Sigstore bundle referrer (cosign 3).
    Bundle,
    /// The `sha256-<hex>.sig` tag (cosign 1 and 2).
    Legacy,
    /// Both: every cosign version finds a signature.
    #[default]
    Both,
}

impl SignFormat {
    fn bundle(self) -> bool {
        matches!(self, SignFormat::Bundle | SignFormat::Both)
    }

    fn legacy(self) -> bool {
        matches!(self, SignFormat::Legacy | SignFormat::Both)
    }
}

/// Which formats [`verify`] accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Accept {
    /// Either: a bundle referrer or the legacy tag, whichever verifies.
    #[default]
    Any,
    /// Only a Sigstore bundle referrer.
    Bundle,
    /// Only the legacy `.sig` tag.
    Legacy,
}

/// What [`sign()`] wrote as a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BundleSigned {
    /// The referrer manifest holding this key's bundle.
    pub referrer: Digest,
    /// Whether it was added now (false: this key's bundle was there).
    pub added: bool,
    /// How the registry lists it (when added now).
    pub via: Option<ReferrersVia>,
}

/// What [`sign()`] did, per format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Signed {
    /// The image signed, by digest.
    pub reference: String,
    /// Its digest.
    pub digest: Digest,
    /// The formats asked for.
    pub format: SignFormat,
    /// Whether anything was added (false: this key had signed the image in
    /// every format asked for).
    pub added: bool,
    /// The legacy signature, when asked for.
    pub legacy: Option<SignReport>,
    /// The bundle, when asked for.
    pub bundle: Option<BundleSigned>,
}

/// Signs the image `r` names (a tag is resolved to its digest first) with
/// `key` in `format`, keeping every signature already there.
pub async fn sign(
    client: &Client,
    r: &Reference,
    key: &SigningKey,
    format: SignFormat,
) -> Result<Signed, RegistryError> {
    let digest = match r.digest() {
        Some(d) => d.clone(),
        None => client.resolve(r).await?,
    };
    let at = r.at_digest(&digest);
    let legacy = if format.legacy() { Some(sign::sign(client, &at, key).await?) } else { None };
    let bundle = if format.bundle() { Some(sign_bundle(client, &at, &digest, key).await?) } else { None };
    let added = legacy.as_ref().is_some_and(|l| l.added) || bundle.as_ref().is_some_and(|b| b.added);
    Ok(Signed { reference: at.to_string(), digest, format, added, legacy, bundle })
}

async fn sign_bundle(
    client: &Client,
    r: &Reference,
    digest: &Digest,
    key: &SigningKey,
) -> Result<BundleSigned, RegistryError> {
    let found = bundles(client, r, digest, &key.public_key()).await?;
    if let Some(c) = found.candidates.iter().find(|c| c.verified.is_some()) {
        return Ok(BundleSigned { referrer: c.referrer.clone(), added: false, via: None });
    }
    let content = bundle::build(key, digest);
    let (artifact_type, annotations) = bundle::referrer_annotations(&content, jiff::Timestamp::now())
        .map_err(|e| RegistryError::Malformed { what: "the bundle lkg built".into(), reason: e.to_string() })?;
    let layers = [(artifact_type.clone(), Bytes::from(content))];
    let pushed = referrers::attach(client, r, digest, &artifact_type, &layers, Some(annotations)).await?;
    Ok(BundleSigned { referrer: pushed.digest, added: true, via: Some(pushed.via) })
}

/// One bundle referrer of the image and its verdict.
#[derive(Debug, Serialize)]
pub struct Candidate {
    /// The referrer manifest.
    pub referrer: Digest,
    /// Its `artifactType` (a bundle media type).
    pub artifact_type: Option<String>,
    /// What verified, when it did.
    pub verified: Option<VerifiedBundle>,
    /// Why it did not, as a machine name (`wrong_key`, ...).
    pub reason: Option<&'static str>,
    /// Why it did not, in words.
    pub error: Option<String>,
}

/// The bundle referrers of an image, each checked.
#[derive(Debug, Serialize)]
pub struct Bundles {
    /// Where the list came from.
    pub via: ReferrersVia,
    /// Every bundle referrer looked at (at most [`MAX_CANDIDATES`]).
    pub candidates: Vec<Candidate>,
    /// Bundle referrers beyond [`MAX_CANDIDATES`], not looked at.
    pub skipped: usize,
}

/// What the legacy `.sig` tag held.
#[derive(Debug, Serialize)]
pub struct Legacy {
    /// Whether a signature by the key verified.
    pub verified: bool,
    /// The report, when it did.
    pub report: Option<VerifyReport>,
    /// Why it did not (`no_signature`, `wrong_key`, ...).
    pub reason: Option<&'static str>,
    /// Why it did not, in words.
    pub error: Option<String>,
}

/// [`verify`]'s verdict over every format it looked at.
#[derive(Debug, Serialize)]
pub struct Verification {
    /// The image, by digest.
    pub reference: String,
    /// Its digest.
    pub digest: Digest,
    /// The formats accepted.
    pub accept: Accept,
    /// Whether a signature by the key, in an accepted format, verified.
    pub verified: bool,
    /// When not verified: the most telling reason over all formats
    /// (`no_signature` only when no format holds any signature).
    pub reason: Option<&'static str>,
    /// That reason in words.
    pub error: Option<String>,
    /// The bundle referrers (unless only legacy is accepted).
    pub bundle: Option<Bundles>,
    /// The legacy tag (unless only bundles are accepted).
    pub legacy: Option<Legacy>,
}

/// Verifies that the image `r` names carries a signature by `key` in a
/// format `accept` allows. A verdict (verified or not) is `Ok`; only a
/// registry that cannot be asked is an error. A bundle referrer that is
/// missing, malformed or too large is a failed candidate, not an error.
pub async fn verify(
    client: &Client,
    r: &Reference,
    key: &PublicKey,
    accept: Accept,
) -> Result<Verification, RegistryError> {
    let digest = match r.digest() {
        Some(d) => d.clone(),
        None => client.resolve(r).await?,
    };
    let at = r.at_digest(&digest);
    let bundle = match accept {
        Accept::Any | Accept::Bundle => Some(bundles(client, &at, &digest, key).await?),
        Accept::Legacy => None,
    };
    let legacy = match accept {
        Accept::Any | Accept::Legacy => Some(match sign::verify(client, &at, key).await {
            Ok(report) => Legacy { verified: true, report: Some(report), reason: None, error: None },
            Err(VerifyError::Registry(e)) => return Err(e),
            Err(e) => {
                Legacy { verified: false, report: None, reason: Some(legacy_reason(&e)), error: Some(e.to_string()) }
            }
        }),
        Accept::Bundle => None,
    };
    let verified = legacy.as_ref().is_some_and(|l| l.verified)
        || bundle.as_ref().is_some_and(|b| b.candidates.iter().any(|c| c.verified.is_some()));
    let (reason, error) = if verified { (None, None) } else { telling(&at, bundle.as_ref(), legacy.as_ref()) };
    Ok(Verification { reference: at.to_string(), digest, accept, verified, reason, error, bundle, legacy })
}

/// The most telling failure: a signature that is there but wrong says more
/// than one that is missing; a bundle's verdict more than the legacy tag's
/// absence.
fn telling(
    at: &Reference,
    bundle: Option<&Bundles>,
    legacy: Option<&Legacy>,
) -> (Option<&'static str>, Option<String>) {
    let rank = |reason: &str| match reason {
        "digest_mismatch" => 0,
        "tampered_payload" | "tampered_signature" | "layer_digest_mismatch" => 1,
        "wrong_key" => 2,
        "no_signature" => 9,
        _ => 3,
    };
    let mut failures: Vec<(&'static str, String)> = Vec::new();
    for c in bundle.into_iter().flat_map(|b| &b.candidates) {
        if let (Some(reason), Some(error)) = (c.reason, &c.error) {
            failures.push((reason, format!("bundle {}: {error}", c.referrer)));
        }
    }
    if let Some(Legacy { reason: Some(reason), error: Some(error), .. }) = legacy {
        failures.push((reason, error.clone()));
    }
    failures.sort_by_key(|(reason, _)| rank(reason));
    match failures.into_iter().next() {
        Some((reason, error)) if reason != "no_signature" || legacy.is_some() => (Some(reason), Some(error)),
        _ => (Some("no_signature"), Some(format!("no signature for {at}: no Sigstore bundle refers to it"))),
    }
}

/// The bundle referrers of `digest` in `r`'s repository, each verified with `key`.
async fn bundles(client: &Client, r: &Reference, digest: &Digest, key: &PublicKey) -> Result<Bundles, RegistryError> {
    let list = client.referrers(r, digest, None).await?;
    let all: Vec<&Descriptor> = list
        .manifests
        .iter()
        .filter(|d| d.artifact_type.as_deref().is_some_and(bundle::is_bundle_media_type))
        .collect();
    let skipped = all.len().saturating_sub(MAX_CANDIDATES);
    let mut candidates = Vec::new();
    for d in all.into_iter().take(MAX_CANDIDATES) {
        let (verified, failure) = match check(client, r, digest, d, key).await {
            Ok(v) => (Some(v), None),
            Err(Check::Bundle(e)) => (None, Some((bundle_reason(&e), e.to_string()))),
            Err(Check::Referrer(reason)) => (None, Some(("invalid", reason))),
            Err(Check::Registry(e)) => return Err(e),
        };
        candidates.push(Candidate {
            referrer: d.digest.clone(),
            artifact_type: d.artifact_type.clone(),
            verified,
            reason: failure.as_ref().map(|f| f.0),
            error: failure.map(|f| f.1),
        });
    }
    Ok(Bundles { via: list.via, candidates, skipped })
}

enum Check {
    /// The bundle was read and does not verify.
    Bundle(BundleError),
    /// The referrer is not a bundle referrer of this image, or cannot be read.
    Referrer(String),
    /// The registry could not be asked.
    Registry(RegistryError),
}

impl From<RegistryError> for Check {
    fn from(e: RegistryError) -> Check {
        match e {
            // What one referrer holds, not whether the registry answers.
            RegistryError::NotFound { .. } | RegistryError::Malformed { .. } | RegistryError::DigestMismatch { .. } => {
                Check::Referrer(e.to_string())
            }
            e => Check::Registry(e),
        }
    }
}

async fn check(
    client: &Client,
    r: &Reference,
    digest: &Digest,
    referrer: &Descriptor,
    key: &PublicKey,
) -> Result<VerifiedBundle, Check> {
    let manifest = client.get_manifest(&r.at_digest(&referrer.digest)).await?;
    let ManifestKind::Image(image) = manifest.parse()? else {
        return Err(Check::Referrer("an index, not a bundle referrer manifest".into()));
    };
    if image.subject.as_ref().map(|s| &s.digest) != Some(digest) {
        return Err(Check::Referrer(format!("its subject is not {digest}: the referrers list is wrong")));
    }
    let Some(layer) = image.layers.iter().find(|l| bundle::is_bundle_media_type(&l.media_type)) else {
        return Err(Check::Referrer("no layer holds a Sigstore bundle".into()));
    };
    if layer.size > MAX_BUNDLE {
        return Err(Check::Referrer(format!(
            "its bundle layer is {} bytes, more than the {MAX_BUNDLE} lkg reads",
            layer.size
        )));
    }
    let bytes = read_bounded(client, r, &layer.digest).await?;
    bundle::verify(&bytes, key, digest).map_err(Check::Bundle)
}

/// A blob of at most [`MAX_BUNDLE`] bytes, whatever its server sends.
async fn read_bounded(client: &Client, r: &Reference, digest: &Digest) -> Result<Vec<u8>, Check> {
    let mut stream = client.blob_stream(r, digest).await?;
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
        if out.len() as u64 > MAX_BUNDLE {
            return Err(Check::Referrer(format!("its bundle blob is larger than the {MAX_BUNDLE} bytes lkg reads")));
        }
    }
    Ok(out)
}

/// The machine name of a legacy verdict (`--json`'s `reason`).
pub fn legacy_reason(e: &VerifyError) -> &'static str {
    match e {
        VerifyError::NoSignature { .. } => "no_signature",
        VerifyError::WrongKey { .. } => "wrong_key",
        VerifyError::TamperedPayload { .. } => "tampered_payload",
        VerifyError::DigestMismatch { .. } => "digest_mismatch",
        VerifyError::LayerDigestMismatch { .. } => "layer_digest_mismatch",
        _ => "invalid",
    }
}

/// The machine name of a bundle's verdict (`--json`'s `reason`).
pub fn bundle_reason(e: &BundleError) -> &'static str {
    match e {
        BundleError::WrongKey { .. } => "wrong_key",
        BundleError::DigestMismatch { .. } => "digest_mismatch",
        BundleError::TamperedPayload { .. } => "tampered_payload",
        BundleError::TamperedSignature { .. } => "tampered_signature",
        BundleError::Keyless { .. } => "keyless",
        BundleError::NotASignature { .. } => "not_a_signature",
        BundleError::UnknownVersion { .. } => "unknown_version",
        BundleError::UnsupportedAlgorithm { .. } => "unsupported_algorithm",
        _ => "invalid",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(reason: &'static str) -> Candidate {
        Candidate {
            referrer: Digest::sha256(reason.as_bytes()),
            artifact_type: None,
            verified: None,
            reason: Some(reason),
            error: Some(format!("{reason} said in words")),
        }
    }

    fn legacy(reason: &'static str) -> Legacy {
        Legacy { verified: false, report: None, reason: Some(reason), error: Some(format!("legacy {reason}")) }
    }

    #[test]
    fn the_most_telling_failure_is_reported() {
        let at: Reference =
            "127.0.0.1:5000/app@sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
                .parse()
                .unwrap();
        let none = Bundles { via: ReferrersVia::Api, candidates: Vec::new(), skipped: 0 };
        // Nothing anywhere: no signature.
        assert_eq!(telling(&at, Some(&none), Some(&legacy("no_signature"))).0, Some("no_signature"));
        assert_eq!(telling(&at, Some(&none), None).0, Some("no_signature"));
        // A bundle by another key beats a missing legacy tag.
        let wrong = Bundles { via: ReferrersVia::Api, candidates: vec![candidate("wrong_key")], skipped: 0 };
        let (reason, error) = telling(&at, Some(&wrong), Some(&legacy("no_signature")));
        assert_eq!(reason, Some("wrong_key"));
        assert!(error.unwrap().starts_with("bundle sha256:"), "the referrer is named");
        // A signature over another image beats a wrong key, in either format.
        assert_eq!(telling(&at, Some(&wrong), Some(&legacy("digest_mismatch"))).0, Some("digest_mismatch"));
        let both = Bundles {
            via: ReferrersVia::TagSchema,
            candidates: vec![candidate("wrong_key"), candidate("tampered_payload")],
            skipped: 0,
        };
        assert_eq!(telling(&at, Some(&both), None).0, Some("tampered_payload"));
    }

    #[test]
    fn formats_say_what_they_write() {
        assert!(SignFormat::default().bundle() && SignFormat::default().legacy(), "both by default");
        assert!(SignFormat::Bundle.bundle() && !SignFormat::Bundle.legacy());
        assert!(!SignFormat::Legacy.bundle() && SignFormat::Legacy.legacy());
        assert_eq!(Accept::default(), Accept::Any);
    }
}
