//! Signing and verifying in both cosign formats on the real `docker-registry`
//! (no referrers API: bundles are found through the referrers tag schema, as
//! cosign 3 writes them there), with bundles built by sigstore-js as the
//! independent writer.

use std::collections::BTreeMap;

use bytes::Bytes;
use lkg_registry::bundle::{self, ContentKind};
use lkg_registry::cosign::{self, Accept, SignFormat};
use lkg_registry::referrers::attach;
use lkg_registry::sign::{PublicKey, SigningKey};
use lkg_registry::{Client, Digest, Reference, ReferrersVia};

use crate::bundle_interop::sigstore_js;
use crate::common::{client, env, reference, small_image};
use crate::promote::{fixture, test_key};

fn public() -> PublicKey {
    PublicKey::from_file(&fixture("registry/signing-key.pub")).unwrap()
}

fn other() -> SigningKey {
    SigningKey::from_file(&fixture("registry/other-key.pem"), None).unwrap()
}

/// Attaches `content` as a bundle referrer of `digest`, as cosign 3 does:
/// artifact type and annotations from the bundle, or `media_type` when the
/// content is not a bundle at all.
async fn attach_bundle(client: &Client, image: &Reference, digest: &Digest, content: Vec<u8>) -> Digest {
    let (artifact_type, annotations) = bundle::referrer_annotations(&content, jiff::Timestamp::now())
        .unwrap_or_else(|_| (bundle::BUNDLE_V03_MEDIA_TYPE.to_owned(), BTreeMap::new()));
    let layers = [(artifact_type.clone(), Bytes::from(content))];
    attach(client, image, digest, &artifact_type, &layers, Some(annotations)).await.unwrap().digest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_formats_are_written_once_and_each_verifies_alone() {
    let env = env();
    let client = client();
    let image = reference(&env.registry_a, "cosign", "app", "1");
    let digest = small_image(&client, &image, 7300, &[]).await.digest;

    let signed = cosign::sign(&client, &image, &test_key(), SignFormat::Both).await.unwrap();
    assert!(signed.added);
    assert_eq!(signed.digest, digest);
    let legacy = signed.legacy.as_ref().unwrap();
    assert_eq!((legacy.added, legacy.signatures), (true, 1));
    let written = signed.bundle.as_ref().unwrap();
    assert_eq!((written.added, written.via), (true, Some(ReferrersVia::TagSchema)), "docker-registry 2.8 has no API");

    // The referrer is cosign 3's: its artifact type, annotations and one bundle layer.
    let listed = client.referrers(&image, &digest, Some(bundle::BUNDLE_V03_MEDIA_TYPE)).await.unwrap();
    assert_eq!(listed.manifests.len(), 1);
    assert_eq!(listed.manifests[0].digest, written.referrer);
    let notes = listed.manifests[0].annotations.clone().unwrap();
    assert_eq!(notes["dev.sigstore.bundle.content"], "dsse-envelope");
    assert_eq!(notes["dev.sigstore.bundle.predicateType"], bundle::COSIGN_SIGN_PREDICATE_TYPE);

    for accept in [Accept::Any, Accept::Bundle, Accept::Legacy] {
        let v = cosign::verify(&client, &image, &public(), accept).await.unwrap();
        assert!(v.verified, "{accept:?}: {v:#?}");
        assert_eq!(v.bundle.is_some(), accept != Accept::Legacy, "{accept:?}");
        assert_eq!(v.legacy.is_some(), accept != Accept::Bundle, "{accept:?}");
    }
    let v = cosign::verify(&client, &image, &public(), Accept::Bundle).await.unwrap();
    let candidates = &v.bundle.as_ref().unwrap().candidates;
    assert_eq!(candidates.len(), 1);
    assert_eq!(candidates[0].verified.as_ref().unwrap().content, ContentKind::DsseEnvelope);

    // Signing again adds nothing in either format.
    let again = cosign::sign(&client, &image, &test_key(), SignFormat::Both).await.unwrap();
    assert!(!again.added, "{again:#?}");
    assert_eq!(again.bundle.as_ref().unwrap().referrer, written.referrer);
    assert_eq!(client.referrers(&image, &digest, None).await.unwrap().manifests.len(), 1);

    // Another key: not verified, and both formats say so.
    let v = cosign::verify(&client, &image, &other().public_key(), Accept::Any).await.unwrap();
    assert!(!v.verified);
    assert_eq!(v.reason, Some("wrong_key"), "{v:#?}");
    assert_eq!(v.bundle.as_ref().unwrap().candidates[0].reason, Some("wrong_key"));
    assert_eq!(v.legacy.as_ref().unwrap().reason, Some("wrong_key"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cosign_3_image_has_no_legacy_tag_and_verifies_only_where_bundles_count() {
    let env = env();
    let client = client();
    let image = reference(&env.registry_a, "cosign3", "app", "1");
    let digest = small_image(&client, &image, 7301, &[]).await.digest;

    let none = cosign::verify(&client, &image, &public(), Accept::Any).await.unwrap();
    assert_eq!((none.verified, none.reason), (false, Some("no_signature")), "{none:#?}");

    let signed = cosign::sign(&client, &image, &test_key(), SignFormat::Bundle).await.unwrap();
    assert!(signed.legacy.is_none() && signed.bundle.is_some());
    let legacy_tag = image.at_tag(&lkg_registry::sign::signature_tag(&digest));
    assert!(client.get_manifest_opt(&legacy_tag).await.unwrap().is_none(), "no .sig tag was written");

    assert!(cosign::verify(&client, &image, &public(), Accept::Any).await.unwrap().verified);
    assert!(cosign::verify(&client, &image, &public(), Accept::Bundle).await.unwrap().verified);
    let legacy_only = cosign::verify(&client, &image, &public(), Accept::Legacy).await.unwrap();
    assert_eq!((legacy_only.verified, legacy_only.reason), (false, Some("no_signature")), "{legacy_only:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_written_by_sigstore_js_verify_and_a_wrong_one_beside_them_is_named() {
    let env = env();
    let client = client();
    let js = sigstore_js();
    let image = reference(&env.registry_a, "cosignjs", "app", "1");
    let digest = small_image(&client, &image, 7302, &[]).await.digest;
    let subject = std::path::PathBuf::from(digest.as_str());

    // First a bundle by another key, then the right one: both are looked at.
    let wrong = js.sign("dsse", &fixture("registry/other-key.pem"), &subject);
    let wrong_referrer = attach_bundle(&client, &image, &digest, wrong).await;
    let v = cosign::verify(&client, &image, &public(), Accept::Bundle).await.unwrap();
    assert_eq!((v.verified, v.reason), (false, Some("wrong_key")), "{v:#?}");
    assert!(v.error.as_deref().unwrap().contains(wrong_referrer.as_str()), "the referrer is named: {v:#?}");

    let good = js.sign("dsse", &fixture("registry/signing-key.pem"), &subject);
    let good_referrer = attach_bundle(&client, &image, &digest, good).await;
    let v = cosign::verify(&client, &image, &public(), Accept::Bundle).await.unwrap();
    assert!(v.verified, "{v:#?}");
    let candidates = &v.bundle.as_ref().unwrap().candidates;
    assert_eq!(candidates.len(), 2);
    let verdict = |d: &Digest| candidates.iter().find(|c| &c.referrer == d).unwrap();
    assert!(verdict(&good_referrer).verified.is_some());
    assert_eq!(verdict(&wrong_referrer).reason, Some("wrong_key"));

    // lkg's own signing finds sigstore-js's bundle by this key and adds none.
    let signed = cosign::sign(&client, &image, &test_key(), SignFormat::Bundle).await.unwrap();
    assert_eq!((signed.added, &signed.bundle.unwrap().referrer), (false, &good_referrer));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bundle_referrers_are_failed_candidates_never_errors_or_passes() {
    let env = env();
    let client = client();
    let image = reference(&env.registry_a, "cosignbad", "app", "1");
    let digest = small_image(&client, &image, 7303, &[]).await.digest;
    let another = small_image(&client, &image.at_tag("2"), 7304, &[]).await.digest;

    let garbage = attach_bundle(&client, &image, &digest, b"not a bundle".to_vec()).await;
    let mut huge = b"{\"mediaType\":\"application/vnd.dev.sigstore.bundle.v0.3+json\",\"pad\":\"".to_vec();
    huge.resize(usize::try_from(cosign::MAX_BUNDLE).unwrap() + 4096, b'x');
    let oversize = attach_bundle(&client, &image, &digest, huge).await;
    // Right key, another image: a signature moved from one image to another.
    let moved = attach_bundle(&client, &image, &digest, bundle::build(&test_key(), &another)).await;
    let mut keyless: serde_json::Value = serde_json::from_slice(&bundle::build(&test_key(), &digest)).unwrap();
    keyless["verificationMaterial"] = serde_json::json!({ "certificate": { "rawBytes": "MIIB" } });
    let keyless = attach_bundle(&client, &image, &digest, serde_json::to_vec(&keyless).unwrap()).await;

    let v = cosign::verify(&client, &image, &public(), Accept::Any).await.unwrap();
    assert!(!v.verified, "{v:#?}");
    assert_eq!(v.reason, Some("digest_mismatch"), "the most telling failure: {v:#?}");
    let candidates = &v.bundle.as_ref().unwrap().candidates;
    assert_eq!(candidates.len(), 4, "{candidates:#?}");
    let reason = |d: &Digest| candidates.iter().find(|c| &c.referrer == d).unwrap().reason;
    assert_eq!(reason(&garbage), Some("invalid"));
    assert_eq!(reason(&oversize), Some("invalid"));
    let oversize_error = candidates.iter().find(|c| c.referrer == oversize).unwrap().error.clone().unwrap();
    assert!(oversize_error.contains("more than the 1048576"), "{oversize_error}");
    assert_eq!(reason(&moved), Some("digest_mismatch"));
    assert_eq!(reason(&keyless), Some("keyless"));
}
