//! Sigstore bundles against an independent implementation: sigstore-js
//! (`@sigstore/sign`, `@sigstore/verify`, `@sigstore/bundle`, pinned by
//! `tests/interop/package-lock.json`), run with Node.js.
//!
//! - lkg's bundles verify in sigstore-js with the public key alone (its
//!   `Verifier` with an empty trusted root, the key found by cosign's hint, no
//!   transparency log or timestamp required), and the statement's subject is
//!   the image digest; sigstore-js refuses them with another key or changed.
//! - Bundles sigstore-js's own builders write (a DSSE envelope whose PAE it
//!   computes; a v0.2 message signature over a manifest) verify in lkg, and
//!   are refused for another image or changed.
//!
//! The packages are installed by `tests/interop/install` into
//! `<target>/interop-node` (never into the source tree). Outside CI a test
//! installs them itself; under `CI=true` the environment must have (scripts/
//! testenv), and a missing install fails with the command to run.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine as _;
use lkg_registry::Digest;
use lkg_registry::bundle::{self, BundleError, ContentKind, Version};
use lkg_registry::sign::{PublicKey, SigningKey};

use crate::promote::fixture;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// sigstore-js, installed; its scripts.
pub struct SigstoreJs {
    node_modules: PathBuf,
    scripts: PathBuf,
}

pub fn sigstore_js() -> SigstoreJs {
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"), PathBuf::from);
    let dir = std::path::absolute(target.canonicalize().unwrap_or(target)).unwrap().join("interop-node");
    let install = scripts.join("install");
    let installed = std::fs::read(dir.join("package-lock.json")).ok()
        == Some(std::fs::read(scripts.join("package-lock.json")).unwrap())
        && dir.join("node_modules/@sigstore/verify").is_dir();
    if !installed {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "sigstore-js (the bundle interop peer) is not installed in {}, and under CI=true tests do not install it: \
             scripts/testenv up should run `crates/registry/tests/interop/install`; run it by hand now",
            dir.display(),
        );
        let out = Command::new(&install).arg(&dir).output().expect("bash runs tests/interop/install");
        assert!(
            out.status.success(),
            "{} failed (needs npm and the npm registry): {}",
            install.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    SigstoreJs { node_modules: dir.join("node_modules"), scripts }
}

impl SigstoreJs {
    fn node(&self, script: &str, args: &[&Path]) -> Output {
        Command::new("node")
            .arg(self.scripts.join(script))
            .args(args)
            .env("NODE_PATH", &self.node_modules)
            .output()
            .expect("node is installed (Debian's nodejs)")
    }

    /// Verifies `bundle` with `key` for `image` (and `artifact`, for a
    /// message signature): stdout on success, stderr on refusal.
    pub fn verify(&self, bundle: &[u8], key: &Path, image: &Digest, artifact: Option<&[u8]>) -> Result<String, String> {
        let dir = tempfile::tempdir().unwrap();
        let bundle_path = dir.path().join("bundle.json");
        std::fs::write(&bundle_path, bundle).unwrap();
        let image = PathBuf::from(image.as_str());
        let mut args = vec![bundle_path.as_path(), key, image.as_path()];
        let artifact_path = dir.path().join("manifest.json");
        if let Some(a) = artifact {
            std::fs::write(&artifact_path, a).unwrap();
            args.push(&artifact_path);
        }
        let out = self.node("verify.cjs", &args);
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!stderr.contains("Cannot find module"), "{stderr}");
        if out.status.success() { Ok(stdout.into_owned()) } else { Err(stderr.into_owned()) }
    }

    /// A bundle sigstore-js builds: `kind` `dsse` (subject `arg`, a digest)
    /// or `message` (over the file `arg`).
    pub fn sign(&self, kind: &str, key: &Path, arg: &Path) -> Vec<u8> {
        let out = self.node("sign.cjs", &[Path::new(kind), key, arg]);
        assert!(out.status.success(), "sign.cjs {kind}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    }
}

fn key() -> SigningKey {
    SigningKey::from_file(&fixture("registry/signing-key.pem"), None).unwrap()
}

fn public() -> PublicKey {
    PublicKey::from_file(&fixture("registry/signing-key.pub")).unwrap()
}

/// An image manifest's bytes and digest.
fn manifest(seed: &str) -> (Vec<u8>, Digest) {
    let bytes = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","annotations":{{"seed":"{seed}"}}}}"#
    )
    .into_bytes();
    let digest = Digest::sha256(&bytes);
    (bytes, digest)
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap()
}

#[test]
fn lkg_bundles_verify_in_sigstore_js() {
    let js = sigstore_js();
    let (_, image) = manifest("lkg-to-js");
    let signed = bundle::build(&key(), &image);
    let out = js.verify(&signed, &fixture("registry/signing-key.pub"), &image, None).unwrap();
    let report = json(out.as_bytes());
    assert_eq!(report["mediaType"], bundle::BUNDLE_V03_MEDIA_TYPE);
    assert_eq!(report["content"], "dsseEnvelope");
    assert_eq!(report["predicateType"], bundle::COSIGN_SIGN_PREDICATE_TYPE);
    // sigstore-js computed cosign's hint on its own and found the key by it.
    assert_eq!(report["hint"], bundle::key_hint(&public()));

    // The peer can say no: another key, another image, a changed payload.
    let e = js.verify(&signed, &fixture("registry/other-key.pub"), &image, None).unwrap_err();
    assert!(e.contains("key not found"), "{e}");
    let (_, another) = manifest("another");
    let e = js.verify(&signed, &fixture("registry/signing-key.pub"), &another, None).unwrap_err();
    assert!(e.contains("no statement subject has digest"), "{e}");
    let mut doc = json(&bundle::build(&key(), &another));
    doc["dsseEnvelope"]["payload"] = B64.encode(bundle::statement(&image)).into();
    let e =
        js.verify(&serde_json::to_vec(&doc).unwrap(), &fixture("registry/signing-key.pub"), &image, None).unwrap_err();
    assert!(e.contains("SIGNATURE_ERROR"), "{e}");
}

#[test]
fn sigstore_js_dsse_bundles_verify_in_lkg() {
    let js = sigstore_js();
    let (_, image) = manifest("js-dsse");
    let signed = js.sign("dsse", &fixture("registry/signing-key.pem"), Path::new(image.as_str()));
    let verified = bundle::verify(&signed, &public(), &image).unwrap();
    assert_eq!(verified.version, Version::V0_3);
    assert_eq!(verified.content, ContentKind::DsseEnvelope);
    assert_eq!(verified.predicate_type.as_deref(), Some(bundle::COSIGN_SIGN_PREDICATE_TYPE));
    assert_eq!(verified.key_hint, Some(bundle::key_hint(&public())));

    let other = PublicKey::from_file(&fixture("registry/other-key.pub")).unwrap();
    assert!(matches!(bundle::verify(&signed, &other, &image), Err(BundleError::WrongKey { .. })));
    let (_, another) = manifest("another");
    assert!(matches!(bundle::verify(&signed, &public(), &another), Err(BundleError::DigestMismatch { .. })));
    let mut doc = json(&signed);
    doc["dsseEnvelope"]["payload"] = B64.encode(bundle::statement(&another)).into();
    let tampered = serde_json::to_vec(&doc).unwrap();
    assert!(matches!(bundle::verify(&tampered, &public(), &another), Err(BundleError::TamperedPayload { .. })));

    // And lkg attaches it as cosign would (tests/it/cosign.rs pushes it).
    let (artifact_type, annotations) = bundle::referrer_annotations(&signed, jiff::Timestamp::UNIX_EPOCH).unwrap();
    assert_eq!(artifact_type, bundle::BUNDLE_V03_MEDIA_TYPE);
    assert_eq!(annotations[bundle::CONTENT_ANNOTATION], "dsse-envelope");
    assert_eq!(annotations[bundle::PREDICATE_TYPE_ANNOTATION], bundle::COSIGN_SIGN_PREDICATE_TYPE);
}

#[test]
fn sigstore_js_message_signatures_verify_in_lkg_and_back() {
    let js = sigstore_js();
    let (bytes, image) = manifest("js-message");
    let dir = tempfile::tempdir().unwrap();
    let artifact = dir.path().join("manifest.json");
    std::fs::write(&artifact, &bytes).unwrap();
    let signed = js.sign("message", &fixture("registry/signing-key.pem"), &artifact);
    assert_eq!(json(&signed)["mediaType"], Version::V0_2.media_type(), "sigstore-js writes v0.2 for these");
    let verified = bundle::verify(&signed, &public(), &image).unwrap();
    assert_eq!(verified.content, ContentKind::MessageSignature);
    assert_eq!(verified.version, Version::V0_2);
    let (_, another) = manifest("another");
    assert!(matches!(bundle::verify(&signed, &public(), &another), Err(BundleError::DigestMismatch { .. })));
    // The same bundle through sigstore-js, over the manifest bytes.
    js.verify(&signed, &fixture("registry/signing-key.pub"), &image, Some(&bytes)).unwrap();
}
