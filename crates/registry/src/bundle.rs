//! Sigstore bundles: the signature format of cosign 3.
//!
//! Since cosign 3.0, `cosign sign --key cosign.key IMAGE@DIGEST` no longer
//! writes the legacy `sha256-<hex>.sig` tag ([`crate::sign`]). It writes a
//! Sigstore bundle (`application/vnd.dev.sigstore.bundle.v0.3+json`, the
//! JSON form of `sigstore/protobuf-specs`' `Bundle`) and attaches it to the
//! image as an OCI 1.1 referrer. What it signs, and what [`build`] writes the
//! same way:
//!
//! - a **DSSE envelope** (`dsseEnvelope`) with payload type
//!   `application/vnd.in-toto+json`, whose payload is an in-toto Statement v1
//!   with one subject, `{"digest":{"sha256":"<image manifest digest hex>"}}`,
//!   predicate type [`COSIGN_SIGN_PREDICATE_TYPE`] and an empty predicate;
//!   the ECDSA signature is over DSSE's pre-authentication encoding (PAE) of
//!   payload type and payload;
//! - `verificationMaterial.publicKey.hint`: base64 of the SHA-256 of the
//!   key's SPKI DER ([`key_hint`]), no certificate; cosign adds a Rekor entry
//!   unless told `--tlog-upload=false`, lkg adds none.
//!
//! Other writers sign a **message signature** (`messageSignature`): an
//! ECDSA signature over the artifact, with the artifact's SHA-256 in
//! `messageDigest`. For an image the artifact is its manifest, so the digest
//! is the manifest digest and [`verify`] checks the signature against it
//! without needing the manifest bytes.
//!
//! The referrer ([`referrer_annotations`]) is an OCI image manifest with
//! `artifactType` the bundle media type, the empty config
//! (`application/vnd.oci.empty.v1+json`, `{}`), one layer (the bundle),
//! `subject` the image, and cosign's annotations
//! (`dev.sigstore.bundle.content`, `dev.sigstore.bundle.predicateType`,
//! `org.opencontainers.image.created`).
//!
//! This module is pure: bytes and digests in, bytes and verdicts out. Finding
//! and pushing referrers is [`crate::cosign`]'s job.
//!
//! # Limitations
//!
//! - Key-based only (ECDSA P-256, as [`crate::sign`]). A bundle that carries
//!   a certificate instead of a key (keyless, Fulcio) is reported as
//!   [`BundleError::Keyless`], never checked.
//! - Transparency-log entries and RFC 3161 timestamps are kept and ignored:
//!   nothing here proves *when* a bundle was signed.
//! - A signature that does not verify is told apart from a wrong key by the
//!   bundle's key hint (`publicKey.hint`, or the DSSE signature's `keyid`);
//!   for a DSSE envelope a changed payload and a changed (but well-formed)
//!   signature cannot be told apart and are both reported as a changed payload.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::Digest;
use crate::sign::{B64, PublicKey, SignatureCheck, SigningKey};

/// The bundle media type cosign 3 writes, and [`build`] too.
pub const BUNDLE_V03_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// The DSSE payload type of an in-toto statement.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// The `_type` of an in-toto Statement v1.
pub const IN_TOTO_STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";
/// The predicate type of the statement `cosign sign` signs for an image.
pub const COSIGN_SIGN_PREDICATE_TYPE: &str = "https://sigstore.dev/cosign/sign/v1";
/// Referrer annotation: `dsse-envelope` or `message-signature`.
pub const CONTENT_ANNOTATION: &str = "dev.sigstore.bundle.content";
/// Referrer annotation: the in-toto statement's predicate type.
pub const PREDICATE_TYPE_ANNOTATION: &str = "dev.sigstore.bundle.predicateType";
/// Referrer annotation: when the bundle was attached (RFC 3339).
pub const CREATED_ANNOTATION: &str = "org.opencontainers.image.created";

/// Statement v0.1 is what cosign 2's attestations carry; the subject is read alike.
const IN_TOTO_STATEMENT_V01: &str = "https://in-toto.io/Statement/v0.1";

/// A bundle format version (its media type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub enum Version {
    /// `application/vnd.dev.sigstore.bundle+json;version=0.1`.
    #[serde(rename = "0.1")]
    V0_1,
    /// `application/vnd.dev.sigstore.bundle+json;version=0.2`.
    #[serde(rename = "0.2")]
    V0_2,
    /// `application/vnd.dev.sigstore.bundle.v0.3+json` (or its early
    /// spelling `application/vnd.dev.sigstore.bundle+json;version=0.3`).
    #[serde(rename = "0.3")]
    V0_3,
}

impl Version {
    /// The canonical media type of this version.
    pub fn media_type(self) -> &'static str {
        match self {
            Version::V0_1 => "application/vnd.dev.sigstore.bundle+json;version=0.1",
            Version::V0_2 => "application/vnd.dev.sigstore.bundle+json;version=0.2",
            Version::V0_3 => BUNDLE_V03_MEDIA_TYPE,
        }
    }

    /// The version a media type names: [`BundleError::UnknownVersion`] for a
    /// Sigstore bundle of another version, [`BundleError::NotABundle`] for
    /// anything else.
    pub fn from_media_type(media_type: &str) -> Result<Version, BundleError> {
        let unknown = |version: &str| BundleError::UnknownVersion {
            media_type: media_type.to_owned(),
            version: version.to_owned(),
        };
        if let Some(rest) = media_type.strip_prefix("application/vnd.dev.sigstore.bundle+json;version=") {
            return match rest {
                "0.1" => Ok(Version::V0_1),
                "0.2" => Ok(Version::V0_2),
                "0.3" => Ok(Version::V0_3),
                other => Err(unknown(other)),
            };
        }
        if let Some(version) =
            media_type.strip_prefix("application/vnd.dev.sigstore.bundle.v").and_then(|r| r.strip_suffix("+json"))
        {
            return if version == "0.3" { Ok(Version::V0_3) } else { Err(unknown(version)) };
        }
        Err(BundleError::NotABundle { media_type: media_type.to_owned() })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Version::V0_1 => "0.1",
            Version::V0_2 => "0.2",
            Version::V0_3 => "0.3",
        })
    }
}

/// Whether `media_type` is a Sigstore bundle's, of any version: what to
/// look for in a referrer's `artifactType` or layer media type.
pub fn is_bundle_media_type(media_type: &str) -> bool {
    !matches!(Version::from_media_type(media_type), Err(BundleError::NotABundle { .. }))
}

/// A Sigstore bundle, as JSON (protobuf JSON names). Binary fields are kept
/// as their base64 text; fields lkg does not read are tolerated and dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bundle {
    /// The media type, which carries the version.
    pub media_type: String,
    /// The key or certificate, and transparency evidence.
    pub verification_material: VerificationMaterial,
    /// A signature over an artifact's digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_signature: Option<MessageSignature>,
    /// A signed DSSE envelope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dsse_envelope: Option<Envelope>,
}

/// What verifies the signature: a key (named by a hint), or a certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationMaterial {
    /// A public key, known to the verifier, named by a hint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<PublicKeyIdentifier>,
    /// A certificate chain, leaf first (v0.1, v0.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x509_certificate_chain: Option<CertificateChain>,
    /// A leaf certificate (v0.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<Certificate>,
    /// Transparency-log entries, kept as they are (lkg does not check them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tlog_entries: Vec<serde_json::Value>,
    /// RFC 3161 timestamps, kept as they are (lkg does not check them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_verification_data: Option<serde_json::Value>,
}

/// The name of a public key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeyIdentifier {
    /// Free-form; cosign's is [`key_hint`].
    #[serde(default)]
    pub hint: String,
}

/// A certificate chain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateChain {
    /// The certificates, leaf first.
    #[serde(default)]
    pub certificates: Vec<Certificate>,
}

/// One X.509 certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Certificate {
    /// Base64 of its DER.
    #[serde(default)]
    pub raw_bytes: String,
}

/// A signature over an artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageSignature {
    /// The artifact's digest (for an image: the manifest digest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_digest: Option<HashOutput>,
    /// Base64 of the ASN.1 DER ECDSA signature over the artifact.
    #[serde(default)]
    pub signature: String,
}

/// A digest and its algorithm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HashOutput {
    /// `SHA2_256` (protobuf JSON also allows the enum's number, 1).
    #[serde(deserialize_with = "hash_algorithm")]
    pub algorithm: String,
    /// Base64 of the raw digest.
    #[serde(default)]
    pub digest: String,
}

fn hash_algorithm<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    // protobuf JSON writes enums by name but parsers accept the number too.
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => s,
        serde_json::Value::Number(n) if n.as_u64() == Some(1) => "SHA2_256".to_owned(),
        other => other.to_string(),
    })
}

/// A DSSE envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// Base64 of the payload.
    #[serde(default)]
    pub payload: String,
    /// The payload's type: [`IN_TOTO_PAYLOAD_TYPE`] for cosign.
    #[serde(default)]
    pub payload_type: String,
    /// The signatures (a bundle holds exactly one).
    #[serde(default)]
    pub signatures: Vec<DsseSignature>,
}

/// One DSSE signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DsseSignature {
    /// Base64 of the ASN.1 DER ECDSA signature over the PAE.
    #[serde(default)]
    pub sig: String,
    /// Optional name of the key.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub keyid: String,
}

/// What a bundle signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ContentKind {
    /// `messageSignature`.
    MessageSignature,
    /// `dsseEnvelope`.
    DsseEnvelope,
}

impl ContentKind {
    /// The value of the referrer's [`CONTENT_ANNOTATION`].
    pub fn annotation(self) -> &'static str {
        match self {
            ContentKind::MessageSignature => "message-signature",
            ContentKind::DsseEnvelope => "dsse-envelope",
        }
    }
}

/// A bundle that verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifiedBundle {
    /// Its format version.
    pub version: Version,
    /// What it signs.
    pub content: ContentKind,
    /// The in-toto predicate type (DSSE only).
    pub predicate_type: Option<String>,
    /// The key hint it carries, if any.
    pub key_hint: Option<String>,
}

/// Why a bundle was not accepted. Each case has its own message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// Not JSON, or not shaped like a Sigstore bundle.
    #[error("malformed Sigstore bundle: {reason}")]
    Malformed {
        /// What is wrong.
        reason: String,
    },
    /// The media type is not a Sigstore bundle's at all.
    #[error("not a Sigstore bundle: media type {media_type:?}")]
    NotABundle {
        /// The media type found.
        media_type: String,
    },
    /// A Sigstore bundle of a version lkg does not know.
    #[error(
        "unknown Sigstore bundle version {version} ({media_type}): lkg reads versions 0.1, 0.2 and 0.3; a newer lkg may read it"
    )]
    UnknownVersion {
        /// The media type found.
        media_type: String,
        /// The version it names.
        version: String,
    },
    /// The bundle carries a certificate, not a key: keyless (Fulcio) signing.
    #[error(
        "keyless, not verifiable with a key: the bundle carries {material} instead of a public key hint (verify keyless signatures with cosign and a Sigstore trust root)"
    )]
    Keyless {
        /// `a certificate` or `a certificate chain`.
        material: &'static str,
    },
    /// The signature does not verify with the key, and the bundle names
    /// another key or none.
    #[error("{}", wrong_key_message(.expected_hint, .bundle_hint.as_deref()))]
    WrongKey {
        /// The hint of the key verified with.
        expected_hint: String,
        /// The hint the bundle carries.
        bundle_hint: Option<String>,
    },
    /// A valid signature by the key, over another image.
    #[error("bundle is for another image: it signs {signed}, the image is {expected}")]
    DigestMismatch {
        /// The image's digest.
        expected: Digest,
        /// What the bundle signs.
        signed: String,
    },
    /// The DSSE payload does not match its signature, though the bundle
    /// names this key.
    #[error("tampered DSSE payload: {reason}")]
    TamperedPayload {
        /// What shows it.
        reason: String,
    },
    /// The signature is not an ECDSA signature, or does not verify over
    /// content that is otherwise right.
    #[error("tampered signature: {reason}")]
    TamperedSignature {
        /// What shows it.
        reason: String,
    },
    /// Validly signed by the key, but not a cosign image signature (another
    /// payload type, or an attestation's predicate).
    #[error("signed by this key but not a cosign image signature: {reason}")]
    NotASignature {
        /// What it is instead.
        reason: String,
    },
    /// A digest algorithm lkg cannot check a signature with.
    #[error("unsupported digest algorithm {algorithm}: only SHA-256 message signatures are checked")]
    UnsupportedAlgorithm {
        /// The algorithm.
        algorithm: String,
    },
}

fn wrong_key_message(expected: &str, bundle: Option<&str>) -> String {
    match bundle {
        Some(hint) => format!(
            "bundle is not signed by this key: its signature does not verify and it names key {hint}, this key is {expected}"
        ),
        None => format!(
            "bundle is not signed by this key ({expected}): its signature does not verify and it names no key (signed with another key, or changed after signing)"
        ),
    }
}

/// A bundle that does not verify is the answer "no".
impl lkg_core::Classify for BundleError {
    fn kind(&self) -> lkg_core::FailureKind {
        lkg_core::FailureKind::Verdict
    }
}

/// cosign's key hint: base64 of the SHA-256 of the key's SPKI DER.
pub fn key_hint(key: &PublicKey) -> String {
    B64.encode(sha256_bytes(&key.to_der()))
}

fn sha256_bytes(bytes: &[u8]) -> [u8; 32] {
    hex32(Digest::sha256(bytes).hex()).expect("a SHA-256 digest is 64 hex digits")
}

fn hex32(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let nibble = |c: u8| char::from(c).to_digit(16).and_then(|d| u8::try_from(d).ok());
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// DSSE's pre-authentication encoding: what a DSSE signature signs.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!("DSSEv1 {} {payload_type} {} ", payload_type.len(), payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out
}

/// protobuf JSON writes bytes as standard base64 but parsers accept the
/// URL-safe alphabet and missing padding too.
fn decode_b64(text: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let trimmed = text.trim().trim_end_matches('=');
    STANDARD_NO_PAD.decode(trimmed).or_else(|_| URL_SAFE_NO_PAD.decode(trimmed)).ok()
}

/// The statement fields verification reads.
#[derive(Deserialize)]
struct Statement {
    #[serde(rename = "_type")]
    kind: String,
    #[serde(default)]
    subject: Vec<StatementSubject>,
    #[serde(rename = "predicateType", default)]
    predicate_type: String,
}

#[derive(Deserialize)]
struct StatementSubject {
    #[serde(default)]
    digest: BTreeMap<String, String>,
}

impl Bundle {
    /// Parses a bundle's JSON. The media type is read first, so an unknown
    /// version is reported as such whatever else changed with it.
    pub fn from_json(bytes: &[u8]) -> Result<Bundle, BundleError> {
        #[derive(Deserialize)]
        struct Head {
            #[serde(rename = "mediaType")]
            media_type: Option<String>,
        }
        let head: Head = serde_json::from_slice(bytes)
            .map_err(|e| BundleError::Malformed { reason: format!("not a JSON object: {e}") })?;
        let media_type = head.media_type.ok_or_else(|| BundleError::Malformed { reason: "no mediaType".into() })?;
        Version::from_media_type(&media_type)?;
        serde_json::from_slice(bytes).map_err(|e| BundleError::Malformed { reason: e.to_string() })
    }

    /// The JSON form (compact, fields in protobuf order).
    ///
    /// # Panics
    ///
    /// Never: the types always serialise.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a bundle serialises")
    }

    /// Its format version.
    pub fn version(&self) -> Result<Version, BundleError> {
        Version::from_media_type(&self.media_type)
    }

    /// What it signs.
    pub fn content(&self) -> Result<ContentKind, BundleError> {
        match (&self.message_signature, &self.dsse_envelope) {
            (Some(_), None) => Ok(ContentKind::MessageSignature),
            (None, Some(_)) => Ok(ContentKind::DsseEnvelope),
            (Some(_), Some(_)) => {
                Err(BundleError::Malformed { reason: "both messageSignature and dsseEnvelope".into() })
            }
            (None, None) => Err(BundleError::Malformed { reason: "neither messageSignature nor dsseEnvelope".into() }),
        }
    }

    /// The predicate type of its in-toto statement, when it is a DSSE
    /// envelope of one (not verified: for annotations and reports).
    pub fn predicate_type(&self) -> Option<String> {
        let envelope = self.dsse_envelope.as_ref().filter(|e| e.payload_type == IN_TOTO_PAYLOAD_TYPE)?;
        let statement: Statement = serde_json::from_slice(&decode_b64(&envelope.payload)?).ok()?;
        Some(statement.predicate_type).filter(|p| !p.is_empty())
    }

    /// Verifies that this bundle is a signature by `key` of the image whose
    /// manifest digest is `image`.
    pub fn verify(&self, key: &PublicKey, image: &Digest) -> Result<VerifiedBundle, BundleError> {
        let version = self.version()?;
        let material = &self.verification_material;
        let hint = match (&material.public_key, &material.certificate, &material.x509_certificate_chain) {
            (Some(pk), _, _) => Some(pk.hint.as_str()).filter(|h| !h.is_empty()),
            (None, Some(_), _) => return Err(BundleError::Keyless { material: "a certificate" }),
            (None, None, Some(_)) => return Err(BundleError::Keyless { material: "a certificate chain" }),
            (None, None, None) => {
                return Err(BundleError::Malformed {
                    reason: "verificationMaterial has neither a publicKey nor a certificate".into(),
                });
            }
        };
        let check = Check { key, expected_hint: key_hint(key), bundle_hint: hint.map(str::to_owned) };
        let content = self.content()?;
        // content() has checked that exactly one of the two is there.
        let predicate_type = if let Some(e) = &self.dsse_envelope {
            Some(check.dsse(e, image)?)
        } else if let Some(m) = &self.message_signature {
            check.message_signature(m, image)?;
            None
        } else {
            None
        };
        Ok(VerifiedBundle { version, content, predicate_type, key_hint: check.bundle_hint })
    }
}

/// One verification: the key, and the hint that tells a wrong key from a
/// changed bundle.
struct Check<'a> {
    key: &'a PublicKey,
    expected_hint: String,
    bundle_hint: Option<String>,
}

impl Check<'_> {
    /// The error for a well-formed signature that does not verify: a wrong
    /// key, unless the bundle names this very key, in which case `changed`.
    fn failed(&self, hint: Option<&str>, changed: BundleError) -> BundleError {
        if hint == Some(self.expected_hint.as_str()) {
            changed
        } else {
            BundleError::WrongKey { expected_hint: self.expected_hint.clone(), bundle_hint: hint.map(str::to_owned) }
        }
    }

    fn message_signature(&self, m: &MessageSignature, image: &Digest) -> Result<(), BundleError> {
        let Some(md) = &m.message_digest else {
            return Err(BundleError::Malformed {
                reason: "messageSignature has no messageDigest: it does not say which image it signs".into(),
            });
        };
        if md.algorithm != "SHA2_256" {
            return Err(BundleError::UnsupportedAlgorithm { algorithm: md.algorithm.clone() });
        }
        let signed: [u8; 32] = decode_b64(&md.digest)
            .and_then(|d| d.try_into().ok())
            .ok_or_else(|| BundleError::Malformed { reason: "messageDigest.digest is not 32 base64 bytes".into() })?;
        let signature = decode_b64(&m.signature)
            .ok_or_else(|| BundleError::TamperedSignature { reason: "the signature is not base64".into() })?;
        match self.key.check_prehash(&signed, &signature) {
            SignatureCheck::Valid => {}
            SignatureCheck::Malformed => {
                return Err(BundleError::TamperedSignature {
                    reason: "messageSignature.signature is not an ASN.1 DER ECDSA P-256 signature".into(),
                });
            }
            SignatureCheck::Invalid => {
                return Err(self.failed(
                    self.bundle_hint.as_deref(),
                    BundleError::TamperedSignature {
                        reason: format!(
                            "the bundle names this key but its signature does not verify over the digest it records (sha256:{}): the signature or the digest was changed after signing",
                            hex(&signed)
                        ),
                    },
                ));
            }
        }
        let signed = format!("sha256:{}", hex(&signed));
        if signed != image.as_str() {
            return Err(BundleError::DigestMismatch { expected: image.clone(), signed });
        }
        Ok(())
    }

    fn dsse(&self, e: &Envelope, image: &Digest) -> Result<String, BundleError> {
        let signature = match e.signatures.as_slice() {
            [one] => one,
            [] => return Err(BundleError::TamperedSignature { reason: "the DSSE envelope has no signature".into() }),
            more => {
                return Err(BundleError::Malformed {
                    reason: format!("a bundle's DSSE envelope holds one signature, this one holds {}", more.len()),
                });
            }
        };
        // sigstore-js writes the key hint as the DSSE keyid too.
        let hint = self.bundle_hint.as_deref().or(Some(signature.keyid.as_str()).filter(|k| !k.is_empty()));
        let payload = decode_b64(&e.payload)
            .ok_or_else(|| BundleError::TamperedPayload { reason: "the payload is not base64".into() })?;
        let sig = decode_b64(&signature.sig)
            .ok_or_else(|| BundleError::TamperedSignature { reason: "the DSSE signature is not base64".into() })?;
        match self.key.check(&pae(&e.payload_type, &payload), &sig) {
            SignatureCheck::Valid => {}
            SignatureCheck::Malformed => {
                return Err(BundleError::TamperedSignature {
                    reason: "the DSSE signature is not an ASN.1 DER ECDSA P-256 signature".into(),
                });
            }
            SignatureCheck::Invalid => {
                return Err(self.failed(
                    hint,
                    BundleError::TamperedPayload {
                        reason: "the bundle names this key but the signature does not verify over the payload (DSSE PAE): the payload was changed after signing (or the signature was)".into(),
                    },
                ));
            }
        }
        if e.payload_type != IN_TOTO_PAYLOAD_TYPE {
            return Err(BundleError::NotASignature {
                reason: format!("DSSE payload type {:?}, not {IN_TOTO_PAYLOAD_TYPE}", e.payload_type),
            });
        }
        let statement: Statement = serde_json::from_slice(&payload).map_err(|err| BundleError::NotASignature {
            reason: format!("the payload is not an in-toto statement: {err}"),
        })?;
        if statement.kind != IN_TOTO_STATEMENT_V1 && statement.kind != IN_TOTO_STATEMENT_V01 {
            return Err(BundleError::NotASignature { reason: format!("unknown statement _type {:?}", statement.kind) });
        }
        if statement.predicate_type != COSIGN_SIGN_PREDICATE_TYPE {
            return Err(BundleError::NotASignature {
                reason: format!(
                    "an attestation with predicate type {:?}, not a signature ({COSIGN_SIGN_PREDICATE_TYPE})",
                    statement.predicate_type
                ),
            });
        }
        let algorithm = image.algorithm().to_string();
        let matches = statement
            .subject
            .iter()
            .any(|s| s.digest.get(&algorithm).is_some_and(|h| h.eq_ignore_ascii_case(image.hex())));
        if !matches {
            let signed: Vec<String> =
                statement.subject.iter().flat_map(|s| s.digest.iter().map(|(alg, h)| format!("{alg}:{h}"))).collect();
            let signed = if signed.is_empty() { "no digest".to_owned() } else { signed.join(", ") };
            return Err(BundleError::DigestMismatch { expected: image.clone(), signed });
        }
        Ok(statement.predicate_type)
    }
}

/// Verifies that `bundle` (JSON) is a signature by `key` of the image whose
/// manifest digest is `image`.
///
/// ```
/// use lkg_registry::Digest;
/// use lkg_registry::bundle;
/// use lkg_registry::sign::SigningKey;
/// # let pem = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgOl/bNz6+MF9e8j8t\nwhe4O/Xcp1mnP76+p2UZ2GdMu3+hRANCAASahJXTtc3lsUeN+aAtsNNKpbdh9pU1\nzLbzcL4bYFN83rMTV+VQaLoSMWuROFaXudv1D+8FKN5A2vMROLMZeATp\n-----END PRIVATE KEY-----\n";
/// let key = SigningKey::from_pem(pem, None, "key")?;
/// let image = Digest::sha256(b"an image manifest");
/// let signed = bundle::build(&key, &image);
/// let verified = bundle::verify(&signed, &key.public_key(), &image)?;
/// assert_eq!(verified.predicate_type.as_deref(), Some(bundle::COSIGN_SIGN_PREDICATE_TYPE));
/// assert!(bundle::verify(&signed, &key.public_key(), &Digest::sha256(b"another")).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn verify(bundle: &[u8], key: &PublicKey, image: &Digest) -> Result<VerifiedBundle, BundleError> {
    Bundle::from_json(bundle)?.verify(key, image)
}

/// The in-toto statement `cosign sign` signs for `image`.
///
/// # Panics
///
/// Never: strings always serialise.
pub fn statement(image: &Digest) -> Vec<u8> {
    let s = |v: &str| serde_json::to_string(v).expect("a string serialises");
    format!(
        r#"{{"_type":{},"subject":[{{"digest":{{{}:{}}}}}],"predicateType":{},"predicate":{{}}}}"#,
        s(IN_TOTO_STATEMENT_V1),
        s(&image.algorithm().to_string()),
        s(image.hex()),
        s(COSIGN_SIGN_PREDICATE_TYPE)
    )
    .into_bytes()
}

/// The bundle `cosign sign --key` writes for `image` (v0.3, a DSSE envelope
/// of [`statement`], the key's hint, no transparency-log entry), as JSON.
/// Deterministic: ECDSA here is RFC 6979.
pub fn build(key: &SigningKey, image: &Digest) -> Vec<u8> {
    let payload = statement(image);
    let sig = key.sign_der(&pae(IN_TOTO_PAYLOAD_TYPE, &payload));
    Bundle {
        media_type: BUNDLE_V03_MEDIA_TYPE.to_owned(),
        verification_material: VerificationMaterial {
            public_key: Some(PublicKeyIdentifier { hint: key_hint(&key.public_key()) }),
            ..VerificationMaterial::default()
        },
        message_signature: None,
        dsse_envelope: Some(Envelope {
            payload: B64.encode(&payload),
            payload_type: IN_TOTO_PAYLOAD_TYPE.to_owned(),
            signatures: vec![DsseSignature { sig: B64.encode(sig), keyid: String::new() }],
        }),
    }
    .to_json()
}

/// The `artifactType` and annotations of the referrer cosign 3 writes to
/// attach `bundle` (JSON, as [`build`] returns): the bundle's media type,
/// and [`CONTENT_ANNOTATION`], [`PREDICATE_TYPE_ANNOTATION`] (DSSE only) and
/// [`CREATED_ANNOTATION`] (`created`, seconds, UTC, as cosign). The manifest
/// itself is [`crate::referrers::artifact_manifest`] of these, with the
/// bundle as its one layer; [`crate::cosign::sign`] pushes it.
pub fn referrer_annotations(
    bundle: &[u8],
    created: jiff::Timestamp,
) -> Result<(String, BTreeMap<String, String>), BundleError> {
    let parsed = Bundle::from_json(bundle)?;
    let content = parsed.content()?;
    let mut annotations = BTreeMap::from([
        (CONTENT_ANNOTATION.to_owned(), content.annotation().to_owned()),
        (CREATED_ANNOTATION.to_owned(), created.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
    ]);
    if let Some(p) = parsed.predicate_type() {
        annotations.insert(PREDICATE_TYPE_ANNOTATION.to_owned(), p);
    }
    Ok((parsed.media_type, annotations))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIGNING_KEY: &str = include_str!("../../../fixtures/registry/signing-key.pem");
    const OTHER_KEY: &str = include_str!("../../../fixtures/registry/other-key.pem");
    /// `openssl pkey -pubin -in signing-key.pub -outform DER | openssl dgst -sha256 -binary | base64`
    const SIGNING_KEY_HINT: &str = "kQM1qyEF/qHdueddR/vYmLQ7owFQ2V2v51oII+km/+8=";

    fn key() -> SigningKey {
        SigningKey::from_pem(SIGNING_KEY, None, "signing-key.pem").unwrap()
    }

    fn other() -> SigningKey {
        SigningKey::from_pem(OTHER_KEY, None, "other-key.pem").unwrap()
    }

    fn image() -> Digest {
        Digest::sha256(br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#)
    }

    fn json(bundle: &[u8]) -> serde_json::Value {
        serde_json::from_slice(bundle).unwrap()
    }

    fn bytes(v: &serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(v).unwrap()
    }

    /// A message-signature bundle of `signed` (a manifest digest) by `by`.
    fn message_bundle(by: &SigningKey, signed: &Digest, media_type: &str, hint: Option<&str>) -> Vec<u8> {
        let digest = hex32(signed.hex()).unwrap();
        let material = match hint {
            Some(hint) => serde_json::json!({ "publicKey": { "hint": hint } }),
            None => serde_json::json!({ "publicKey": {} }),
        };
        bytes(&serde_json::json!({
            "mediaType": media_type,
            "verificationMaterial": material,
            "messageSignature": {
                "messageDigest": { "algorithm": "SHA2_256", "digest": B64.encode(digest) },
                "signature": B64.encode(by.sign_prehash_der(&digest)),
            },
        }))
    }

    /// A DSSE bundle of `payload` signed by `by`, with the signing key's hint.
    fn dsse_bundle(by: &SigningKey, payload_type: &str, payload: &[u8]) -> Vec<u8> {
        bytes(&serde_json::json!({
            "mediaType": BUNDLE_V03_MEDIA_TYPE,
            "verificationMaterial": { "publicKey": { "hint": key_hint(&by.public_key()) } },
            "dsseEnvelope": {
                "payload": B64.encode(payload),
                "payloadType": payload_type,
                "signatures": [{ "sig": B64.encode(by.sign_der(&pae(payload_type, payload))) }],
            },
        }))
    }

    fn err(bundle: &[u8]) -> BundleError {
        verify(bundle, &key().public_key(), &image()).unwrap_err()
    }

    #[test]
    fn the_key_hint_is_cosigns() {
        assert_eq!(key_hint(&key().public_key()), SIGNING_KEY_HINT);
    }

    #[test]
    fn pae_is_dsse_v1() {
        assert_eq!(pae("t/x", b"hello"), b"DSSEv1 3 t/x 5 hello");
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ");
    }

    #[test]
    fn built_bundles_are_what_cosign_sign_writes_and_verify() {
        let bundle = build(&key(), &image());
        assert_eq!(bundle, build(&key(), &image()), "RFC 6979: the same bundle every time");
        let doc = json(&bundle);
        assert_eq!(doc["mediaType"], BUNDLE_V03_MEDIA_TYPE);
        assert_eq!(doc["verificationMaterial"], serde_json::json!({ "publicKey": { "hint": SIGNING_KEY_HINT } }));
        assert_eq!(doc["dsseEnvelope"]["payloadType"], IN_TOTO_PAYLOAD_TYPE);
        assert!(doc.get("messageSignature").is_none());
        let payload = B64.decode(doc["dsseEnvelope"]["payload"].as_str().unwrap()).unwrap();
        assert_eq!(
            json(&payload),
            serde_json::json!({
                "_type": "https://in-toto.io/Statement/v1",
                "subject": [{ "digest": { "sha256": image().hex() } }],
                "predicateType": "https://sigstore.dev/cosign/sign/v1",
                "predicate": {},
            })
        );
        let verified = verify(&bundle, &key().public_key(), &image()).unwrap();
        assert_eq!(
            verified,
            VerifiedBundle {
                version: Version::V0_3,
                content: ContentKind::DsseEnvelope,
                predicate_type: Some(COSIGN_SIGN_PREDICATE_TYPE.into()),
                key_hint: Some(SIGNING_KEY_HINT.into()),
            }
        );
    }

    #[test]
    fn message_signatures_of_every_version_verify() {
        for media_type in [
            "application/vnd.dev.sigstore.bundle+json;version=0.1",
            "application/vnd.dev.sigstore.bundle+json;version=0.2",
            "application/vnd.dev.sigstore.bundle+json;version=0.3",
            BUNDLE_V03_MEDIA_TYPE,
        ] {
            let bundle = message_bundle(&key(), &image(), media_type, Some(SIGNING_KEY_HINT));
            let v = verify(&bundle, &key().public_key(), &image()).unwrap_or_else(|e| panic!("{media_type}: {e}"));
            assert_eq!(v.content, ContentKind::MessageSignature);
            assert_eq!(v.predicate_type, None);
            assert_eq!(v.version.to_string(), media_type.rsplit(['=', 'v']).next().unwrap().trim_end_matches("+json"));
        }
        // No hint at all, and the enum written as its number: still verifies.
        let mut doc = json(&message_bundle(&key(), &image(), BUNDLE_V03_MEDIA_TYPE, None));
        doc["messageSignature"]["messageDigest"]["algorithm"] = serde_json::json!(1);
        verify(&bytes(&doc), &key().public_key(), &image()).unwrap();
    }

    #[test]
    fn unknown_fields_and_transparency_material_are_tolerated() {
        let mut doc = json(&build(&key(), &image()));
        doc["futureField"] = serde_json::json!({ "x": 1 });
        doc["verificationMaterial"]["tlogEntries"] = serde_json::json!([{ "logIndex": "1", "kindVersion": {} }]);
        doc["verificationMaterial"]["timestampVerificationData"] = serde_json::json!({ "rfc3161Timestamps": [] });
        doc["verificationMaterial"]["publicKey"]["extra"] = serde_json::json!(true);
        doc["dsseEnvelope"]["signatures"][0]["keyid"] = serde_json::json!("");
        doc["dsseEnvelope"]["extra"] = serde_json::json!([]);
        verify(&bytes(&doc), &key().public_key(), &image()).unwrap();
        let parsed = Bundle::from_json(&bytes(&doc)).unwrap();
        assert_eq!(parsed.verification_material.tlog_entries.len(), 1);
    }

    #[test]
    fn url_safe_and_unpadded_base64_is_read() {
        let mut doc = json(&build(&key(), &image()));
        let sig = doc["dsseEnvelope"]["signatures"][0]["sig"].as_str().unwrap().to_owned();
        let raw = B64.decode(&sig).unwrap();
        doc["dsseEnvelope"]["signatures"][0]["sig"] =
            serde_json::json!(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw));
        verify(&bytes(&doc), &key().public_key(), &image()).unwrap();
    }

    #[test]
    fn a_wrong_key_is_named() {
        let bundle = build(&other(), &image());
        let e = err(&bundle);
        assert!(
            matches!(&e, BundleError::WrongKey { bundle_hint: Some(h), .. } if *h == key_hint(&other().public_key())),
            "{e:?}"
        );
        assert!(e.to_string().contains("not signed by this key") && e.to_string().contains(SIGNING_KEY_HINT), "{e}");
        // Without a hint: still a wrong key, saying it cannot be sure.
        let e = err(&message_bundle(&other(), &image(), BUNDLE_V03_MEDIA_TYPE, None));
        assert!(matches!(&e, BundleError::WrongKey { bundle_hint: None, .. }), "{e:?}");
        assert!(e.to_string().contains("names no key"), "{e}");
        // A hint that is not cosign's and a signature that verifies: accepted.
        let mut doc = json(&build(&key(), &image()));
        doc["verificationMaterial"]["publicKey"]["hint"] = serde_json::json!("my-key-id");
        verify(&bytes(&doc), &key().public_key(), &image()).unwrap();
    }

    #[test]
    fn a_bundle_for_another_image_is_refused() {
        let another = Digest::sha256(b"another manifest");
        let e = err(&build(&key(), &another));
        assert!(matches!(&e, BundleError::DigestMismatch { signed, .. } if signed.contains(another.hex())), "{e:?}");
        assert!(e.to_string().starts_with("bundle is for another image"), "{e}");
        let e = err(&message_bundle(&key(), &another, BUNDLE_V03_MEDIA_TYPE, Some(SIGNING_KEY_HINT)));
        assert!(matches!(&e, BundleError::DigestMismatch { signed, .. } if *signed == another.as_str()), "{e:?}");
    }

    #[test]
    fn a_tampered_dsse_payload_is_refused() {
        // The subject rewritten to the image this bundle is checked against.
        let other_image = Digest::sha256(b"another manifest");
        let mut doc = json(&build(&key(), &other_image));
        let tampered = String::from_utf8(statement(&image())).unwrap();
        doc["dsseEnvelope"]["payload"] = serde_json::json!(B64.encode(tampered));
        let e = err(&bytes(&doc));
        assert!(matches!(e, BundleError::TamperedPayload { .. }), "{e:?}");
        assert!(e.to_string().starts_with("tampered DSSE payload"), "{e}");
        // The payload type is signed too.
        let mut doc = json(&build(&key(), &image()));
        doc["dsseEnvelope"]["payloadType"] = serde_json::json!("application/json");
        assert!(matches!(err(&bytes(&doc)), BundleError::TamperedPayload { .. }));
        doc["dsseEnvelope"]["payload"] = serde_json::json!("%%%");
        assert!(matches!(err(&bytes(&doc)), BundleError::TamperedPayload { .. }));
    }

    #[test]
    fn a_tampered_signature_is_refused() {
        // DSSE: the signature is no longer an ECDSA signature.
        let mut doc = json(&build(&key(), &image()));
        let mut sig = B64.decode(doc["dsseEnvelope"]["signatures"][0]["sig"].as_str().unwrap()).unwrap();
        sig[0] ^= 0xff;
        doc["dsseEnvelope"]["signatures"][0]["sig"] = serde_json::json!(B64.encode(&sig));
        let e = err(&bytes(&doc));
        assert!(matches!(e, BundleError::TamperedSignature { .. }), "{e:?}");
        assert!(e.to_string().starts_with("tampered signature"), "{e}");
        // Message signature: one bit of s flipped, digest and hint intact.
        let mut doc = json(&message_bundle(&key(), &image(), BUNDLE_V03_MEDIA_TYPE, Some(SIGNING_KEY_HINT)));
        let mut sig = B64.decode(doc["messageSignature"]["signature"].as_str().unwrap()).unwrap();
        let last = sig.len() - 1;
        sig[last] ^= 0x01;
        doc["messageSignature"]["signature"] = serde_json::json!(B64.encode(&sig));
        let e = err(&bytes(&doc));
        assert!(
            matches!(&e, BundleError::TamperedSignature { reason } if reason.contains("changed after signing")),
            "{e:?}"
        );
        // No signature, a signature that is not base64.
        let mut doc = json(&build(&key(), &image()));
        doc["dsseEnvelope"]["signatures"] = serde_json::json!([]);
        assert!(matches!(err(&bytes(&doc)), BundleError::TamperedSignature { .. }));
        doc["dsseEnvelope"]["signatures"] = serde_json::json!([{ "sig": "%%%" }]);
        assert!(matches!(err(&bytes(&doc)), BundleError::TamperedSignature { .. }));
    }

    #[test]
    fn unknown_versions_and_other_media_types_are_refused() {
        let mut doc = json(&build(&key(), &image()));
        for (media_type, version) in [
            ("application/vnd.dev.sigstore.bundle.v0.4+json", "0.4"),
            ("application/vnd.dev.sigstore.bundle+json;version=0.4", "0.4"),
            ("application/vnd.dev.sigstore.bundle.v1.0+json", "1.0"),
        ] {
            doc["mediaType"] = serde_json::json!(media_type);
            // Even a bundle whose body changed shape with the version.
            doc["dsseEnvelope"] = serde_json::json!("v0.4 has other content");
            let e = err(&bytes(&doc));
            assert!(matches!(&e, BundleError::UnknownVersion { version: v, .. } if v == version), "{e:?}");
            assert!(e.to_string().starts_with(&format!("unknown Sigstore bundle version {version}")), "{e}");
        }
        doc["mediaType"] = serde_json::json!("application/vnd.dev.cosign.simplesigning.v1+json");
        assert!(matches!(err(&bytes(&doc)), BundleError::NotABundle { .. }));
        assert!(is_bundle_media_type(BUNDLE_V03_MEDIA_TYPE));
        assert!(is_bundle_media_type("application/vnd.dev.sigstore.bundle.v0.4+json"));
        assert!(!is_bundle_media_type("application/vnd.oci.empty.v1+json"));
    }

    #[test]
    fn keyless_bundles_are_reported_not_checked() {
        let mut doc = json(&build(&key(), &image()));
        doc["verificationMaterial"] = serde_json::json!({ "certificate": { "rawBytes": "MIIBkTCCATegAwIBAgIU" } });
        let e = err(&bytes(&doc));
        assert!(matches!(e, BundleError::Keyless { material: "a certificate" }), "{e:?}");
        assert!(e.to_string().starts_with("keyless, not verifiable with a key"), "{e}");
        doc["mediaType"] = serde_json::json!(Version::V0_2.media_type());
        doc["verificationMaterial"] =
            serde_json::json!({ "x509CertificateChain": { "certificates": [{ "rawBytes": "MIIB" }] } });
        assert!(matches!(err(&bytes(&doc)), BundleError::Keyless { material: "a certificate chain" }));
    }

    #[test]
    fn signed_content_that_is_not_an_image_signature_is_refused() {
        let attestation = br#"{"_type":"https://in-toto.io/Statement/v1","subject":[{"digest":{"sha256":"00"}}],"predicateType":"https://slsa.dev/provenance/v1","predicate":{}}"#;
        let e = err(&dsse_bundle(&key(), IN_TOTO_PAYLOAD_TYPE, attestation));
        assert!(matches!(&e, BundleError::NotASignature { reason } if reason.contains("slsa.dev")), "{e:?}");
        let e = err(&dsse_bundle(&key(), "text/plain", b"hello"));
        assert!(matches!(&e, BundleError::NotASignature { reason } if reason.contains("text/plain")), "{e:?}");
        let e = err(&dsse_bundle(&key(), IN_TOTO_PAYLOAD_TYPE, b"[]"));
        assert!(matches!(e, BundleError::NotASignature { .. }), "{e:?}");
        // A signature statement with extra subjects: the image's one counts.
        let with_two = format!(
            r#"{{"_type":"https://in-toto.io/Statement/v1","subject":[{{"name":"x","digest":{{"sha512":"ab"}}}},{{"digest":{{"sha256":"{}"}}}}],"predicateType":"{COSIGN_SIGN_PREDICATE_TYPE}","predicate":{{}}}}"#,
            image().hex()
        );
        verify(&dsse_bundle(&key(), IN_TOTO_PAYLOAD_TYPE, with_two.as_bytes()), &key().public_key(), &image()).unwrap();
    }

    #[test]
    fn malformed_bundles_say_what_is_wrong() {
        assert!(matches!(err(b"not json"), BundleError::Malformed { .. }));
        assert!(matches!(err(b"{}"), BundleError::Malformed { reason } if reason == "no mediaType"));
        let mut doc = json(&build(&key(), &image()));
        doc["messageSignature"] =
            json(&message_bundle(&key(), &image(), BUNDLE_V03_MEDIA_TYPE, None))["messageSignature"].clone();
        assert!(matches!(err(&bytes(&doc)), BundleError::Malformed { reason } if reason.contains("both")));
        doc.as_object_mut().unwrap().remove("messageSignature");
        doc.as_object_mut().unwrap().remove("dsseEnvelope");
        assert!(matches!(err(&bytes(&doc)), BundleError::Malformed { reason } if reason.contains("neither")));
        let mut doc = json(&message_bundle(&key(), &image(), BUNDLE_V03_MEDIA_TYPE, None));
        doc["messageSignature"]["messageDigest"]["algorithm"] = serde_json::json!("SHA2_384");
        assert!(matches!(err(&bytes(&doc)), BundleError::UnsupportedAlgorithm { .. }));
        doc["messageSignature"].as_object_mut().unwrap().remove("messageDigest");
        assert!(matches!(err(&bytes(&doc)), BundleError::Malformed { reason } if reason.contains("messageDigest")));
        let mut doc = json(&build(&key(), &image()));
        doc["verificationMaterial"] = serde_json::json!({});
        assert!(
            matches!(err(&bytes(&doc)), BundleError::Malformed { reason } if reason.contains("verificationMaterial"))
        );
    }

    #[test]
    fn every_rejection_has_its_own_message() {
        let another = Digest::sha256(b"another manifest");
        let mut tampered_payload = json(&build(&key(), &another));
        tampered_payload["dsseEnvelope"]["payload"] = serde_json::json!(B64.encode(statement(&image())));
        let mut tampered_sig = json(&build(&key(), &image()));
        tampered_sig["dsseEnvelope"]["signatures"][0]["sig"] = serde_json::json!(B64.encode(b"0000"));
        let mut v04 = json(&build(&key(), &image()));
        v04["mediaType"] = serde_json::json!("application/vnd.dev.sigstore.bundle.v0.4+json");
        let mut keyless = json(&build(&key(), &image()));
        keyless["verificationMaterial"] = serde_json::json!({ "certificate": { "rawBytes": "MIIB" } });
        let cases = [
            ("wrong key", build(&other(), &image())),
            ("another digest", build(&key(), &another)),
            ("tampered payload", bytes(&tampered_payload)),
            ("tampered signature", bytes(&tampered_sig)),
            ("unknown version", bytes(&v04)),
            ("certificate only", bytes(&keyless)),
        ];
        let messages: Vec<String> = cases.iter().map(|(_, b)| err(b).to_string()).collect();
        let prefixes: Vec<&str> = messages.iter().map(|m| m.split(':').next().unwrap()).collect();
        for (i, (name, _)) in cases.iter().enumerate() {
            for j in 0..i {
                assert_ne!(prefixes[i], prefixes[j], "{name} and {} read alike: {messages:#?}", cases[j].0);
            }
        }
    }

    #[test]
    fn the_referrer_manifest_is_cosigns() {
        use crate::Descriptor;
        use crate::referrers::artifact_manifest;
        let bundle = build(&key(), &image());
        let subject = Descriptor::new("application/vnd.oci.image.index.v1+json", image(), 1234);
        let created: jiff::Timestamp = "2026-05-22T10:11:12.345Z".parse().unwrap();
        let (artifact_type, annotations) = referrer_annotations(&bundle, created).unwrap();
        assert_eq!(artifact_type, BUNDLE_V03_MEDIA_TYPE);
        let layer = Descriptor::of(artifact_type.clone(), &bundle);
        let m = artifact_manifest(&artifact_type, &subject, vec![layer], Some(annotations.clone()));
        assert_eq!(m.digest, Digest::sha256(&m.bytes));
        assert_eq!(m.media_type, "application/vnd.oci.image.manifest.v1+json");
        assert_eq!(
            json(&m.bytes),
            serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "artifactType": BUNDLE_V03_MEDIA_TYPE,
                "config": {
                    "mediaType": "application/vnd.oci.empty.v1+json",
                    "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
                    "size": 2
                },
                "layers": [{ "mediaType": BUNDLE_V03_MEDIA_TYPE, "digest": Digest::sha256(&bundle).as_str(), "size": bundle.len() }],
                "subject": { "mediaType": "application/vnd.oci.image.index.v1+json", "digest": image().as_str(), "size": 1234 },
                "annotations": {
                    "dev.sigstore.bundle.content": "dsse-envelope",
                    "dev.sigstore.bundle.predicateType": "https://sigstore.dev/cosign/sign/v1",
                    "org.opencontainers.image.created": "2026-05-22T10:11:12Z",
                },
            })
        );
        assert_eq!(annotations.len(), 3);
        // A message-signature bundle: its own media type, no predicate type.
        let message = message_bundle(&key(), &image(), Version::V0_2.media_type(), Some(SIGNING_KEY_HINT));
        let (artifact_type, annotations) = referrer_annotations(&message, created).unwrap();
        assert_eq!(artifact_type, Version::V0_2.media_type());
        assert_eq!(annotations[CONTENT_ANNOTATION], "message-signature");
        assert!(!annotations.contains_key(PREDICATE_TYPE_ANNOTATION));
        assert!(matches!(referrer_annotations(b"{}", created), Err(BundleError::Malformed { .. })));
    }
}
