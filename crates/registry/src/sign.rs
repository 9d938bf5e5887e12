//! cosign-compatible key-based signatures.
//!
//! The format is cosign's ("simple signing" in an OCI artifact):
//! - the signature manifest of image `repo@sha256:<hex>` is the tag
//!   `repo:sha256-<hex>.sig`, an OCI image manifest;
//! - each of its layers is one signature: media type
//!   `application/vnd.dev.cosign.simplesigning.v1+json`, the blob is the
//!   payload `{"critical":{"identity":{"docker-reference":"<repo>"},"image":{"docker-manifest-digest":"sha256:<hex>"},"type":"cosign container image signature"},"optional":null}`,
//!   and the annotation `dev.cosignproject.cosign/signature` holds the base64
//!   of the ASN.1 DER ECDSA P-256 signature over the payload's SHA-256;
//! - signing again adds a layer (existing signatures are kept); signing with
//!   the same key twice changes nothing (ECDSA here is deterministic, RFC 6979).
//!
//! Keys: public keys are SPKI PEM (`cosign.pub`); private keys are PKCS#8
//! PEM, SEC1 `EC PRIVATE KEY` PEM, or cosign's own encrypted format
//! (`ENCRYPTED COSIGN PRIVATE KEY` / `ENCRYPTED SIGSTORE PRIVATE KEY`: a
//! JSON document, scrypt for the key and `NaCl` secretbox for the `PKCS#8` DER).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use bytes::Bytes;
use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _};
use serde::{Deserialize, Serialize};

use crate::manifest::{ManifestKind, media};
use crate::{Client, Digest, Manifest, Reference, RegistryError};

/// The annotation that carries a signature on a payload layer.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The `critical.type` of a cosign payload.
pub const PAYLOAD_TYPE: &str = "cosign container image signature";

pub(crate) const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Why a key could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key file could not be read.
    #[error("cannot read key {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// No PEM block, or an unsupported one.
    #[error("{what}: {reason}")]
    Format {
        /// The key (path or description).
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An encrypted key needs a password and none was given.
    #[error("{what} is an encrypted cosign key: set COSIGN_PASSWORD to its password")]
    PasswordRequired {
        /// The key.
        what: String,
    },
    /// The password does not open the encrypted key.
    #[error("{what}: wrong password (COSIGN_PASSWORD) or corrupted key")]
    WrongPassword {
        /// The key.
        what: String,
    },
}

/// A key that cannot be read, decrypted or parsed: the input.
impl lkg_core::Classify for KeyError {
    fn kind(&self) -> lkg_core::FailureKind {
        lkg_core::FailureKind::Input
    }
}

/// A public key that verifies signatures (ECDSA P-256).
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PublicKey(p256:")?;
        for b in &self.0.to_encoded_point(true).as_bytes()[..8] {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

fn pem_blocks(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start + 11..];
        let Some(label_end) = after.find("-----") else { break };
        let label = after[..label_end].to_owned();
        let body_start = &after[label_end + 5..];
        let end_marker = format!("-----END {label}-----");
        let Some(end) = body_start.find(&end_marker) else { break };
        out.push((label, body_start[..end].to_owned()));
        rest = &body_start[end + end_marker.len()..];
    }
    out
}

fn pem_body(body: &str) -> Option<Vec<u8>> {
    // Encapsulated headers (`Proc-Type: ...`) are not used by any key we read.
    let b64: String = body.lines().filter(|l| !l.contains(':')).flat_map(|l| l.trim().chars()).collect();
    B64.decode(b64).ok()
}

impl PublicKey {
    /// Reads an SPKI PEM public key (`-----BEGIN PUBLIC KEY-----`).
    pub fn from_pem(text: &str, what: &str) -> Result<PublicKey, KeyError> {
        let format = |reason: String| KeyError::Format { what: what.to_owned(), reason };
        let blocks = pem_blocks(text);
        let Some((label, _)) = blocks.first() else {
            return Err(format("no PEM block (expected -----BEGIN PUBLIC KEY-----)".into()));
        };
        if label != "PUBLIC KEY" {
            return Err(format(format!(
                "a {label} PEM block, expected PUBLIC KEY (an SPKI public key such as cosign.pub)"
            )));
        }
        let key = p256::PublicKey::from_public_key_pem(text.trim())
            .map_err(|e| format(format!("not an ECDSA P-256 public key: {e}")))?;
        Ok(PublicKey(VerifyingKey::from(key)))
    }

    /// Reads a public key file.
    #[allow(clippy::disallowed_methods, reason = "its errors carry the path as a field")]
    pub fn from_file(path: &Path) -> Result<PublicKey, KeyError> {
        let text = lkg_core::input::read_to_string(path, lkg_core::input::MAX_KEY)
            .map_err(|source| KeyError::Io { path: path.to_owned(), source })?;
        PublicKey::from_pem(&text, &path.display().to_string())
    }

    /// The SPKI PEM form.
    ///
    /// # Panics
    ///
    /// Never: a valid P-256 key always encodes.
    pub fn to_pem(&self) -> String {
        use p256::pkcs8::EncodePublicKey as _;
        p256::PublicKey::from(&self.0)
            .to_public_key_pem(p256::pkcs8::LineEnding::LF)
            .expect("a valid P-256 key encodes")
    }

    /// The SPKI DER form (what `cosign.pub` holds, base64 inside PEM).
    ///
    /// # Panics
    ///
    /// Never: a valid P-256 key always encodes.
    pub fn to_der(&self) -> Vec<u8> {
        use p256::pkcs8::EncodePublicKey as _;
        p256::PublicKey::from(&self.0).to_public_key_der().expect("a valid P-256 key encodes").into_vec()
    }

    /// Whether `signature` (ASN.1 DER) signs `payload`.
    pub fn verifies(&self, payload: &[u8], signature_der: &[u8]) -> bool {
        self.check(payload, signature_der) == SignatureCheck::Valid
    }

    /// Checks `signature` (ASN.1 DER) over `payload` (ECDSA P-256, SHA-256).
    pub(crate) fn check(&self, payload: &[u8], signature_der: &[u8]) -> SignatureCheck {
        match Signature::from_der(signature_der) {
            Err(_) => SignatureCheck::Malformed,
            Ok(sig) if self.0.verify(payload, &sig).is_ok() => SignatureCheck::Valid,
            Ok(_) => SignatureCheck::Invalid,
        }
    }

    /// Checks `signature` (ASN.1 DER) over a message whose SHA-256 is
    /// `sha256`, without the message: how a signature over an image manifest
    /// is checked against the manifest's digest.
    pub(crate) fn check_prehash(&self, sha256: &[u8; 32], signature_der: &[u8]) -> SignatureCheck {
        match Signature::from_der(signature_der) {
            Err(_) => SignatureCheck::Malformed,
            Ok(sig) if self.0.verify_prehash(sha256, &sig).is_ok() => SignatureCheck::Valid,
            Ok(_) => SignatureCheck::Invalid,
        }
    }
}

/// How a signature check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SignatureCheck {
    /// It verifies with the key.
    Valid,
    /// A well-formed ECDSA signature that does not verify with the key.
    Invalid,
    /// Not an ASN.1 DER ECDSA P-256 signature at all.
    Malformed,
}

/// A private key that signs (ECDSA P-256). Its `Debug` form shows only the
/// public half.
#[derive(Clone)]
pub struct SigningKey(p256::ecdsa::SigningKey);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({:?})", self.public_key())
    }
}

#[derive(Deserialize)]
struct EncryptedKey {
    kdf: Kdf,
    cipher: CipherSpec,
    ciphertext: String,
}

#[derive(Deserialize)]
struct Kdf {
    name: String,
    params: KdfParams,
    salt: String,
}

#[derive(Deserialize)]
struct KdfParams {
    #[serde(rename = "N")]
    n: u64,
    r: u32,
    p: u32,
}

#[derive(Deserialize)]
struct CipherSpec {
    name: String,
    nonce: String,
}

impl SigningKey {
    /// Reads a private key: PKCS#8 (`PRIVATE KEY`), SEC1 (`EC PRIVATE KEY`),
    /// or cosign's encrypted format, opened with `password`.
    pub fn from_pem(text: &str, password: Option<&[u8]>, what: &str) -> Result<SigningKey, KeyError> {
        let format = |reason: String| KeyError::Format { what: what.to_owned(), reason };
        let blocks = pem_blocks(text);
        let Some((label, body)) = blocks.first() else {
            return Err(format("no PEM block (expected a cosign or PKCS#8 private key)".into()));
        };
        let secret = match label.as_str() {
            "PRIVATE KEY" => p256::SecretKey::from_pkcs8_pem(text.trim())
                .map_err(|e| format(format!("not a PKCS#8 ECDSA P-256 private key: {e}")))?,
            "EC PRIVATE KEY" => p256::SecretKey::from_sec1_pem(text.trim())
                .map_err(|e| format(format!("not a SEC1 ECDSA P-256 private key: {e}")))?,
            "ENCRYPTED COSIGN PRIVATE KEY" | "ENCRYPTED SIGSTORE PRIVATE KEY" => {
                let password = password.ok_or_else(|| KeyError::PasswordRequired { what: what.to_owned() })?;
                let der = decrypt_cosign_key(body, password, what)?;
                p256::SecretKey::from_pkcs8_der(&der)
                    .map_err(|e| format(format!("the decrypted key is not a PKCS#8 ECDSA P-256 key: {e}")))?
            }
            other => return Err(format(format!("unsupported PEM block {other:?}"))),
        };
        Ok(SigningKey(p256::ecdsa::SigningKey::from(secret)))
    }

    /// Reads a private key file; `password` opens an encrypted one.
    #[allow(clippy::disallowed_methods, reason = "its errors carry the path as a field")]
    pub fn from_file(path: &Path, password: Option<&[u8]>) -> Result<SigningKey, KeyError> {
        let text = lkg_core::input::read_to_string(path, lkg_core::input::MAX_KEY)
            .map_err(|source| KeyError::Io { path: path.to_owned(), source })?;
        SigningKey::from_pem(&text, password, &path.display().to_string())
    }

    /// The public half.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(*self.0.verifying_key())
    }

    /// The ASN.1 DER signature of `payload` (SHA-256, deterministic).
    pub fn sign_der(&self, payload: &[u8]) -> Vec<u8> {
        let sig: Signature = self.0.sign(payload);
        sig.to_der().as_bytes().to_vec()
    }

    /// The ASN.1 DER signature of the message whose SHA-256 is `sha256`
    /// (deterministic; the same as [`SigningKey::sign_der`] of the message).
    #[cfg(test)]
    pub(crate) fn sign_prehash_der(&self, sha256: &[u8; 32]) -> Vec<u8> {
        use p256::ecdsa::signature::hazmat::PrehashSigner as _;
        let sig: Signature = self.0.sign_prehash(sha256).expect("a 32-byte prehash signs");
        sig.to_der().as_bytes().to_vec()
    }
}

fn decrypt_cosign_key(body: &str, password: &[u8], what: &str) -> Result<Vec<u8>, KeyError> {
    use crypto_secretbox::aead::{Aead as _, KeyInit as _};
    let format = |reason: &str| KeyError::Format { what: what.to_owned(), reason: reason.to_owned() };
    let json = pem_body(body).ok_or_else(|| format("the PEM body is not base64"))?;
    let key: EncryptedKey = serde_json::from_slice(&json)
        .map_err(|_| format("the encrypted key is not cosign's JSON (kdf, cipher, ciphertext)"))?;
    if key.kdf.name != "scrypt" || key.cipher.name != "nacl/secretbox" {
        return Err(format("only scrypt + nacl/secretbox encrypted keys are supported"));
    }
    let KdfParams { n, r, p } = key.kdf.params;
    if !n.is_power_of_two() || !(2..=1 << 22).contains(&n) || r == 0 || r > 64 || p == 0 || p > 16 {
        return Err(format("implausible scrypt parameters"));
    }
    let log_n = u8::try_from(n.trailing_zeros()).map_err(|_| format("implausible scrypt N"))?;
    let salt = B64.decode(&key.kdf.salt).map_err(|_| format("salt is not base64"))?;
    let nonce = B64.decode(&key.cipher.nonce).map_err(|_| format("nonce is not base64"))?;
    let ciphertext = B64.decode(&key.ciphertext).map_err(|_| format("ciphertext is not base64"))?;
    if nonce.len() != 24 {
        return Err(format("the secretbox nonce must be 24 bytes"));
    }
    let params = scrypt::Params::new(log_n, r, p, 32).map_err(|_| format("invalid scrypt parameters"))?;
    let mut secret = [0u8; 32];
    scrypt::scrypt(password, &salt, &params, &mut secret).map_err(|_| format("scrypt failed"))?;
    let cipher = crypto_secretbox::XSalsa20Poly1305::new(&secret.into());
    cipher
        .decrypt(crypto_secretbox::Nonce::from_slice(&nonce), ciphertext.as_slice())
        .map_err(|_| KeyError::WrongPassword { what: what.to_owned() })
}

/// The simple-signing payload cosign signs for `digest` of `docker_reference`
/// (`registry/repository`), byte for byte as cosign writes it.
///
/// # Panics
///
/// Never: strings always serialise.
pub fn payload(docker_reference: &str, digest: &Digest) -> Vec<u8> {
    let s = |v: &str| serde_json::to_string(v).expect("a string serialises");
    format!(
        r#"{{"critical":{{"identity":{{"docker-reference":{}}},"image":{{"docker-manifest-digest":{}}},"type":{}}},"optional":null}}"#,
        s(docker_reference),
        s(digest.as_str()),
        s(PAYLOAD_TYPE)
    )
    .into_bytes()
}

/// The tag of the signature manifest of `digest`: `sha256-<hex>.sig`.
pub fn signature_tag(digest: &Digest) -> String {
    format!("{}.sig", digest.as_str().replace(':', "-"))
}

/// The parsed payload, as far as verification needs it.
#[derive(Debug, Clone, Deserialize)]
struct Payload {
    critical: Critical,
}

#[derive(Debug, Clone, Deserialize)]
struct Critical {
    identity: Identity,
    image: PayloadImage,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Debug, Clone, Deserialize)]
struct Identity {
    #[serde(rename = "docker-reference")]
    docker_reference: String,
}

#[derive(Debug, Clone, Deserialize)]
struct PayloadImage {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

/// What `sign` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignReport {
    /// The image signed, by digest.
    pub reference: String,
    /// Its digest.
    pub digest: Digest,
    /// The signature manifest's tag.
    pub signature_tag: String,
    /// Whether a signature was added (false: this key's signature was there).
    pub added: bool,
    /// Signatures on the image now.
    pub signatures: usize,
}

/// Signs the image `r` names (resolving a tag to its digest first) and
/// stores the signature in the same repository, keeping existing ones.
///
/// # Panics
///
/// Never: the documents it builds always serialise.
pub async fn sign(client: &Client, r: &Reference, key: &SigningKey) -> Result<SignReport, RegistryError> {
    let digest = match r.digest() {
        Some(d) => d.clone(),
        None => client.resolve(r).await?,
    };
    let payload = payload(&r.name(), &digest);
    let payload_digest = Digest::sha256(&payload);
    let signature = B64.encode(key.sign_der(&payload));
    let tag = signature_tag(&digest);
    let sig_ref = r.at_tag(&tag);
    let mut layers: Vec<serde_json::Value> = match client.get_manifest_opt(&sig_ref).await? {
        Some(existing) if !existing.is_index() => {
            let doc: serde_json::Value = serde_json::from_slice(&existing.bytes).map_err(|e| {
                RegistryError::Malformed { what: format!("signature manifest {sig_ref}"), reason: e.to_string() }
            })?;
            doc.get("layers").and_then(|l| l.as_array()).cloned().unwrap_or_default()
        }
        _ => Vec::new(),
    };
    let already = layers.iter().any(|l| {
        l.get("digest").and_then(|d| d.as_str()) == Some(payload_digest.as_str())
            && l.pointer("/annotations/dev.cosignproject.cosign~1signature").and_then(|s| s.as_str())
                == Some(signature.as_str())
    });
    if already {
        return Ok(SignReport {
            reference: r.at_digest(&digest).to_string(),
            digest,
            signature_tag: tag,
            added: false,
            signatures: layers.len(),
        });
    }
    if client.blob_exists(r, &payload_digest).await?.is_none() {
        client.push_blob(r, &payload_digest, Bytes::from(payload.clone())).await?;
    }
    layers.push(serde_json::json!({
        "mediaType": media::COSIGN_SIMPLESIGNING,
        "size": payload.len(),
        "digest": payload_digest,
        "annotations": { SIGNATURE_ANNOTATION: signature },
    }));
    // The config records each layer's digest as its diff_id (payloads are
    // not compressed), as cosign's does.
    let diff_ids: Vec<&str> = layers.iter().filter_map(|l| l.get("digest").and_then(|d| d.as_str())).collect();
    let history: Vec<serde_json::Value> =
        diff_ids.iter().map(|_| serde_json::json!({"created": "0001-01-01T00:00:00Z"})).collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "",
        "created": "0001-01-01T00:00:00Z",
        "history": history,
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "config": {},
    }))
    .expect("JSON serialises");
    let config_digest = Digest::sha256(&config);
    if client.blob_exists(r, &config_digest).await?.is_none() {
        client.push_blob(r, &config_digest, Bytes::from(config.clone())).await?;
    }
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": media::OCI_CONFIG, "size": config.len(), "digest": config_digest},
        "layers": layers,
    }))
    .expect("JSON serialises");
    let manifest = Manifest::from_bytes(manifest, Some(media::OCI_MANIFEST))?;
    client.put_manifest(r, &tag, &manifest).await?;
    Ok(SignReport {
        reference: r.at_digest(&digest).to_string(),
        digest,
        signature_tag: tag,
        added: true,
        signatures: layers.len(),
    })
}

/// Why verification failed. Each case has its own message; all map to exit 1
/// except [`VerifyError::Registry`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// There is no signature manifest, or it holds no cosign signature.
    #[error("no signature for {reference}: {tag} {reason}")]
    NoSignature {
        /// The image, by digest.
        reference: String,
        /// The signature tag looked at.
        tag: String,
        /// `does not exist` or what it holds instead.
        reason: String,
    },
    /// No signature verifies with the key, and nothing shows the payload was
    /// altered: it was signed with another key.
    #[error(
        "{reference} is not signed by this key: {count} signature(s) found, none verifies with it (signed with another key, or payload and signature were both replaced)"
    )]
    WrongKey {
        /// The image, by digest.
        reference: String,
        /// Signatures looked at.
        count: usize,
    },
    /// The payload was changed after signing: the signature does not verify
    /// and the payload is not the one the signature manifest recorded, or it
    /// is not a cosign payload at all.
    #[error("tampered signature payload on {reference} (layer {layer}): {reason}")]
    TamperedPayload {
        /// The image, by digest.
        reference: String,
        /// The payload layer.
        layer: Digest,
        /// What shows it.
        reason: String,
    },
    /// A valid signature by this key, but for another image.
    #[error(
        "signature on {reference} is for another image: its payload names docker-manifest-digest {signed}, the image is {expected}"
    )]
    DigestMismatch {
        /// The image, by digest.
        reference: String,
        /// The image's digest.
        expected: Digest,
        /// The digest in the payload.
        signed: String,
    },
    /// The payload served does not hash to the digest its layer declares.
    #[error(
        "signature layer of {reference} does not match its digest: declared {declared}, content hashes to {actual}"
    )]
    LayerDigestMismatch {
        /// The image, by digest.
        reference: String,
        /// The digest the layer declares.
        declared: Digest,
        /// What the content hashes to.
        actual: Digest,
    },
    /// The registry could not be asked.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// One signature that verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifiedSignature {
    /// The payload layer digest.
    pub layer: Digest,
    /// The payload's `docker-reference`.
    pub docker_reference: String,
}

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// The image, by digest.
    pub reference: String,
    /// Its digest.
    pub digest: Digest,
    /// The signature manifest's tag.
    pub signature_tag: String,
    /// Signatures by the key that verified.
    pub verified: Vec<VerifiedSignature>,
    /// Signature layers looked at in total.
    pub signatures: usize,
}

/// Verifies that the image `r` names carries a valid signature by `key`.
pub async fn verify(client: &Client, r: &Reference, key: &PublicKey) -> Result<VerifyReport, VerifyError> {
    let digest = client.resolve(r).await?;
    let image = r.at_digest(&digest).to_string();
    let tag = signature_tag(&digest);
    let sig_ref = r.at_tag(&tag);
    let no_signature = |reason: &str| VerifyError::NoSignature {
        reference: image.clone(),
        tag: tag.clone(),
        reason: reason.to_owned(),
    };
    let Some(manifest) = client.get_manifest_opt(&sig_ref).await? else {
        return Err(no_signature("does not exist"));
    };
    let ManifestKind::Image(sig_manifest) = manifest.parse()? else {
        return Err(no_signature("is an index, not a signature manifest"));
    };
    let layers: Vec<_> = sig_manifest.layers.iter().filter(|l| l.media_type == media::COSIGN_SIMPLESIGNING).collect();
    if layers.is_empty() {
        return Err(no_signature("holds no simple-signing layer"));
    }
    // cosign's config lists each payload's digest; a payload swapped after
    // signing (with its descriptor rewritten) no longer matches it.
    let recorded: Option<Vec<String>> = match client.get_blob(r, &sig_manifest.config.digest).await {
        Ok(bytes) => serde_json::from_slice::<serde_json::Value>(&bytes).ok().and_then(|c| {
            c.pointer("/rootfs/diff_ids")
                .and_then(|d| d.as_array())
                .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
        }),
        Err(_) => None,
    };
    let mut verified = Vec::new();
    let mut failures: Vec<VerifyError> = Vec::new();
    for layer in &layers {
        match check_layer(client, r, &image, &digest, layer, key, recorded.as_deref()).await {
            Ok(v) => verified.push(v),
            Err(VerifyError::Registry(e)) => return Err(VerifyError::Registry(e)),
            Err(e) => failures.push(e),
        }
    }
    if !verified.is_empty() {
        return Ok(VerifyReport { reference: image, digest, signature_tag: tag, verified, signatures: layers.len() });
    }
    let rank = |e: &VerifyError| match e {
        VerifyError::DigestMismatch { .. } => 0,
        VerifyError::LayerDigestMismatch { .. } => 1,
        VerifyError::TamperedPayload { .. } => 2,
        _ => 3,
    };
    failures.sort_by_key(rank);
    match failures.into_iter().next() {
        Some(VerifyError::WrongKey { reference, .. }) => Err(VerifyError::WrongKey { reference, count: layers.len() }),
        Some(e) => Err(e),
        None => Err(no_signature("holds no signature")),
    }
}

async fn check_layer(
    client: &Client,
    r: &Reference,
    image: &str,
    digest: &Digest,
    layer: &crate::Descriptor,
    key: &PublicKey,
    recorded: Option<&[String]>,
) -> Result<VerifiedSignature, VerifyError> {
    let tampered = |reason: String| VerifyError::TamperedPayload {
        reference: image.to_owned(),
        layer: layer.digest.clone(),
        reason,
    };
    let payload = match client.get_blob(r, &layer.digest).await {
        Ok(p) => p,
        Err(RegistryError::DigestMismatch { actual, .. }) => {
            return Err(VerifyError::LayerDigestMismatch {
                reference: image.to_owned(),
                declared: layer.digest.clone(),
                actual,
            });
        }
        Err(e) => return Err(e.into()),
    };
    if payload.len() as u64 != layer.size {
        return Err(tampered(format!("the layer declares {} bytes, the payload has {}", layer.size, payload.len())));
    }
    let annotations: BTreeMap<String, String> = layer.annotations.clone().unwrap_or_default();
    let Some(sig_b64) = annotations.get(SIGNATURE_ANNOTATION) else {
        return Err(tampered(format!("the layer has no {SIGNATURE_ANNOTATION} annotation")));
    };
    let Ok(sig) = B64.decode(sig_b64.trim()) else {
        return Err(tampered("the signature annotation is not base64".into()));
    };
    if !key.verifies(&payload, &sig) {
        if let Some(recorded) = recorded
            && !recorded.iter().any(|d| d == layer.digest.as_str())
        {
            return Err(tampered(
                "the signature does not verify and the payload is not the one the signature manifest's config recorded (rootfs.diff_ids): it was replaced after signing".into(),
            ));
        }
        if serde_json::from_slice::<Payload>(&payload).is_err() {
            return Err(tampered(
                "the signature does not verify and the payload is not a cosign simple-signing document".into(),
            ));
        }
        return Err(VerifyError::WrongKey { reference: image.to_owned(), count: 1 });
    }
    let parsed: Payload = serde_json::from_slice(&payload)
        .map_err(|e| tampered(format!("the signed payload is not a cosign simple-signing document: {e}")))?;
    if parsed.critical.kind != PAYLOAD_TYPE {
        return Err(tampered(format!("the payload type is {:?}, not {PAYLOAD_TYPE:?}", parsed.critical.kind)));
    }
    if parsed.critical.image.docker_manifest_digest != digest.as_str() {
        return Err(VerifyError::DigestMismatch {
            reference: image.to_owned(),
            expected: digest.clone(),
            signed: parsed.critical.image.docker_manifest_digest,
        });
    }
    Ok(VerifiedSignature { layer: layer.digest.clone(), docker_reference: parsed.critical.identity.docker_reference })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PKCS8: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgOl/bNz6+MF9e8j8t
whe4O/Xcp1mnP76+p2UZ2GdMu3+hRANCAASahJXTtc3lsUeN+aAtsNNKpbdh9pU1
zLbzcL4bYFN83rMTV+VQaLoSMWuROFaXudv1D+8FKN5A2vMROLMZeATp
-----END PRIVATE KEY-----
";

    #[test]
    fn payload_is_byte_for_byte_cosign() {
        let d: Digest = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824".parse().unwrap();
        assert_eq!(
            String::from_utf8(payload("ghcr.io/danathar/kinoite-zfs", &d)).unwrap(),
            r#"{"critical":{"identity":{"docker-reference":"ghcr.io/danathar/kinoite-zfs"},"image":{"docker-manifest-digest":"sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"},"type":"cosign container image signature"},"optional":null}"#
        );
        assert_eq!(signature_tag(&d), "sha256-2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824.sig");
    }

    #[test]
    fn sign_verify_round_trip_and_determinism() {
        let key = SigningKey::from_pem(PKCS8, None, "test").unwrap();
        let public = key.public_key();
        let sig = key.sign_der(b"payload");
        assert_eq!(sig, key.sign_der(b"payload"), "RFC 6979 signatures are deterministic");
        assert!(public.verifies(b"payload", &sig));
        assert!(!public.verifies(b"payloaD", &sig));
        let again = PublicKey::from_pem(&public.to_pem(), "pem").unwrap();
        assert_eq!(again, public);
        assert!(!format!("{key:?}").contains("MIGHAgEA"));
    }

    #[test]
    fn the_real_cosign_public_key_loads() {
        let text = include_str!("../../../fixtures/kinoite-zfs/cosign.pub");
        PublicKey::from_pem(text, "cosign.pub").unwrap();
    }

    #[test]
    fn key_errors_say_what_is_wrong() {
        let e = PublicKey::from_pem(PKCS8, "k").unwrap_err().to_string();
        assert!(e.contains("expected PUBLIC KEY"), "{e}");
        let e = SigningKey::from_pem("nothing", None, "k").unwrap_err().to_string();
        assert!(e.contains("no PEM block"), "{e}");
        let enc = "-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----\ne30=\n-----END ENCRYPTED COSIGN PRIVATE KEY-----\n";
        assert!(matches!(SigningKey::from_pem(enc, None, "k"), Err(KeyError::PasswordRequired { .. })));
    }
}
