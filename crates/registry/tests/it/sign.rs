use std::process::Command;

use base64::Engine as _;
use bytes::Bytes;
use lkg_registry::sign::{
    KeyError, PublicKey, SIGNATURE_ANNOTATION, SigningKey, VerifyError, payload, sign, signature_tag, verify,
};
use lkg_registry::{Client, ClientOptions, Digest, Manifest, ManifestKind, Reference, media};

use crate::common::{client, env, fast_retry, reference, small_image};
use crate::promote::{fixture, test_key};
use crate::servers::{Fault, FaultProxy};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn public(name: &str) -> PublicKey {
    PublicKey::from_file(&fixture(&format!("registry/{name}.pub"))).unwrap()
}

fn openssl(args: &[&str]) -> std::process::Output {
    Command::new("openssl").args(args).output().expect("openssl is installed")
}

/// The signature manifest of `digest` in `r`'s repository.
async fn signature_manifest(
    client: &Client,
    r: &Reference,
    digest: &Digest,
) -> (Manifest, lkg_registry::ImageManifest) {
    let m = client.get_manifest(&r.at_tag(&signature_tag(digest))).await.unwrap();
    let ManifestKind::Image(image) = m.parse().unwrap() else { panic!("signature manifest is an index") };
    (m, image)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lkg_signatures_verify_with_openssl() {
    let env = env();
    let client = client();
    let r = reference(&env.registry_a, "sign", "img", "1");
    let m = small_image(&client, &r, 401, &[]).await;
    let report = sign(&client, &r, &test_key()).await.unwrap();
    assert!(report.added);
    assert_eq!(report.digest, m.digest);

    let (sig_manifest, image) = signature_manifest(&client, &r, &m.digest).await;
    assert_eq!(sig_manifest.media_type, media::OCI_MANIFEST);
    let layer = &image.layers[0];
    assert_eq!(layer.media_type, "application/vnd.dev.cosign.simplesigning.v1+json");
    // The payload is fetched over plain HTTP, not through lkg.
    let url = format!("http://{}/v2/{}/blobs/{}", env.registry_a, r.repository(), layer.digest);
    let body = lkg_testkit::http_get(&url).unwrap().body;
    assert_eq!(body.as_bytes(), payload(&r.name(), &m.digest).as_slice());
    assert!(body.contains(&format!(r#""docker-manifest-digest":"{}""#, m.digest)), "{body}");

    let dir = tempfile::tempdir().unwrap();
    let (payload_path, sig_path) = (dir.path().join("payload.json"), dir.path().join("sig.der"));
    std::fs::write(&payload_path, body.as_bytes()).unwrap();
    let sig = B64.decode(&layer.annotations.as_ref().unwrap()[SIGNATURE_ANNOTATION]).unwrap();
    std::fs::write(&sig_path, sig).unwrap();
    let pubkey = fixture("registry/signing-key.pub");
    let out = openssl(&[
        "dgst",
        "-sha256",
        "-verify",
        pubkey.to_str().unwrap(),
        "-signature",
        sig_path.to_str().unwrap(),
        payload_path.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "openssl rejects lkg's signature: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds a cosign signature by hand: payload text written here, signature by
/// `openssl dgst -sha256 -sign`, pushed as cosign lays it out.
async fn push_openssl_signature(client: &Client, r: &Reference, digest: &Digest, key_pem: &std::path::Path) {
    let payload = format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"{}"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"cosign container image signature"}},"optional":null}}"#,
        r.name()
    );
    let dir = tempfile::tempdir().unwrap();
    let (payload_path, sig_path) = (dir.path().join("payload.json"), dir.path().join("sig.der"));
    std::fs::write(&payload_path, &payload).unwrap();
    let out = openssl(&[
        "dgst",
        "-sha256",
        "-sign",
        key_pem.to_str().unwrap(),
        "-out",
        sig_path.to_str().unwrap(),
        payload_path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let sig = B64.encode(std::fs::read(&sig_path).unwrap());
    let payload_digest = Digest::sha256(payload.as_bytes());
    client.push_blob(r, &payload_digest, Bytes::from(payload.clone())).await.unwrap();
    let config = format!(
        r#"{{"architecture":"","config":{{}},"created":"0001-01-01T00:00:00Z","os":"","rootfs":{{"type":"layers","diff_ids":["{payload_digest}"]}}}}"#
    );
    let config_digest = Digest::sha256(config.as_bytes());
    client.push_blob(r, &config_digest, Bytes::from(config.clone())).await.unwrap();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","size":{},"digest":"{config_digest}"}},"layers":[{{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","size":{},"digest":"{payload_digest}","annotations":{{"dev.cosignproject.cosign/signature":"{sig}"}}}}]}}"#,
        config.len(),
        payload.len()
    );
    let manifest = Manifest::from_bytes(manifest.into_bytes(), Some(media::OCI_MANIFEST)).unwrap();
    client.put_manifest(r, &signature_tag(digest), &manifest).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_signatures_verify_with_lkg() {
    let env = env();
    let client = client();
    let r = reference(&env.registry_a, "sign", "img", "1");
    let m = small_image(&client, &r, 402, &[]).await;
    push_openssl_signature(&client, &r, &m.digest, &fixture("registry/signing-key.pem")).await;
    let report = verify(&client, &r, &public("signing-key")).await.unwrap();
    assert_eq!(report.verified.len(), 1);
    assert_eq!(report.verified[0].docker_reference, r.name());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cosign_encrypted_keys_sign_with_their_password() {
    let env = env();
    let client = client();
    let password = std::fs::read_to_string(fixture("registry/cosign-encrypted.password")).unwrap();
    let r = reference(&env.registry_a, "sign", "img", "1");
    let m = small_image(&client, &r, 403, &[]).await;
    for file in ["cosign-encrypted.key", "sigstore-encrypted.key"] {
        let path = fixture(&format!("registry/{file}"));
        let key = SigningKey::from_file(&path, Some(password.trim().as_bytes())).unwrap();
        assert_eq!(key.public_key(), public("cosign-encrypted"), "{file} decrypts to another key");
        let wrong = SigningKey::from_file(&path, Some(b"not the password")).unwrap_err();
        assert!(matches!(wrong, KeyError::WrongPassword { .. }), "{wrong}");
        let missing = SigningKey::from_file(&path, None).unwrap_err();
        assert!(missing.to_string().contains("COSIGN_PASSWORD"), "{missing}");
        sign(&client, &r, &key).await.unwrap();
    }
    verify(&client, &r.at_digest(&m.digest), &public("cosign-encrypted")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signature_keeps_the_first_and_signing_twice_changes_nothing() {
    let env = env();
    let client = client();
    let r = reference(&env.registry_a, "sign", "img", "1");
    let m = small_image(&client, &r, 404, &[]).await;
    push_openssl_signature(&client, &r, &m.digest, &fixture("registry/other-key.pem")).await;
    let first = sign(&client, &r, &test_key()).await.unwrap();
    assert_eq!((first.added, first.signatures), (true, 2));
    let again = sign(&client, &r, &test_key()).await.unwrap();
    assert_eq!((again.added, again.signatures), (false, 2));
    assert_eq!(verify(&client, &r, &public("signing-key")).await.unwrap().verified.len(), 1);
    assert_eq!(verify(&client, &r, &public("other-key")).await.unwrap().verified.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::many_single_char_names)] // images a, b, c and their repository r
async fn verification_rejects_each_failure_with_its_own_message() {
    let env = env();
    let client = client();
    let key = public("signing-key");

    // No signature at all.
    let unsigned = reference(&env.registry_a, "verify", "unsigned", "1");
    small_image(&client, &unsigned, 501, &[]).await;
    let e = verify(&client, &unsigned, &key).await.unwrap_err();
    assert!(matches!(e, VerifyError::NoSignature { .. }), "{e}");
    assert!(e.to_string().contains("no signature"), "{e}");

    // Signed, but with another key.
    let r = reference(&env.registry_a, "verify", "img", "a");
    let a = small_image(&client, &r, 502, &[]).await;
    sign(&client, &r, &test_key()).await.unwrap();
    let e = verify(&client, &r, &public("other-key")).await.unwrap_err();
    assert!(matches!(e, VerifyError::WrongKey { .. }), "{e}");
    assert!(e.to_string().contains("not signed by this key"), "{e}");

    // A valid signature of image a, copied onto image b: payload digest != image digest.
    let b = small_image(&client, &r.at_tag("b"), 503, &[]).await;
    let (sig_a, sig_a_image) = signature_manifest(&client, &r, &a.digest).await;
    client.put_manifest(&r, &signature_tag(&b.digest), &sig_a).await.unwrap();
    let e = verify(&client, &r.at_tag("b"), &key).await.unwrap_err();
    assert!(matches!(e, VerifyError::DigestMismatch { .. }), "{e}");
    assert!(e.to_string().contains("for another image"), "{e}");

    // The payload of image c's signature edited after signing (descriptor
    // rewritten to match, signature kept).
    let c = small_image(&client, &r.at_tag("c"), 504, &[]).await;
    sign(&client, &r.at_tag("c"), &test_key()).await.unwrap();
    let (_, sig_c) = signature_manifest(&client, &r, &c.digest).await;
    let original = String::from_utf8(client.get_blob(&r, &sig_c.layers[0].digest).await.unwrap()).unwrap();
    let forged = original.replace(&r.name(), "evil.example/kinoite-zfs");
    let forged_digest = Digest::sha256(forged.as_bytes());
    client.push_blob(&r, &forged_digest, Bytes::from(forged.clone())).await.unwrap();
    let mut doc: serde_json::Value =
        serde_json::from_slice(&client.get_manifest(&r.at_tag(&signature_tag(&c.digest))).await.unwrap().bytes)
            .unwrap();
    doc["layers"][0]["digest"] = serde_json::Value::from(forged_digest.to_string());
    doc["layers"][0]["size"] = serde_json::Value::from(forged.len());
    let doc = Manifest::from_bytes(serde_json::to_vec(&doc).unwrap(), Some(media::OCI_MANIFEST)).unwrap();
    client.put_manifest(&r, &signature_tag(&c.digest), &doc).await.unwrap();
    let e = verify(&client, &r.at_tag("c"), &key).await.unwrap_err();
    assert!(matches!(e, VerifyError::TamperedPayload { .. }), "{e}");
    assert!(e.to_string().contains("tampered"), "{e}");

    // The payload altered in transit (storage or a proxy): its bytes no longer hash to the layer digest.
    let proxy = FaultProxy::start(&env.registry_a);
    proxy.set(Fault::TamperBody(sig_a_image.layers[0].digest.to_string()));
    let via_proxy = Client::new(ClientOptions {
        retry: fast_retry(),
        credentials: std::sync::Arc::new(lkg_registry::Anonymous),
        ..ClientOptions::default()
    })
    .unwrap();
    let proxied: Reference = format!("{}/{}:a", proxy.addr, r.repository()).parse().unwrap();
    let e = verify(&via_proxy, &proxied, &key).await.unwrap_err();
    assert!(matches!(e, VerifyError::LayerDigestMismatch { .. }), "{e}");
    assert!(e.to_string().contains("does not match its digest"), "{e}");

    // And the untampered signature still verifies.
    verify(&client, &r.at_digest(&a.digest), &key).await.unwrap();
}
