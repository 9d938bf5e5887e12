//! The transport claims, each shown against a server that breaks it: every
//! manifest and blob is checked against its digest (by digest, by tag, and
//! streamed across registries), and plain HTTP is never used towards a host
//! that is neither loopback nor listed, whatever a registry asks for.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use lkg_registry::copy::{CopyOptions, copy};
use lkg_registry::{Digest, ManifestKind, Reference, RegistryError};

use crate::auth::basic;
use crate::common::{amd64, client, client_with, env, reference};
use crate::random::push_random_image;
use crate::servers::{Fault, FaultProxy, response, serve};

/// `r`'s repository, reached through `proxy`.
fn via(proxy: &FaultProxy, r: &Reference) -> Reference {
    format!("{}/{}:{}", proxy.addr, r.repository(), r.tag().unwrap()).parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_altered_manifest_is_a_digest_mismatch_by_digest_and_by_tag() {
    let env = env();
    let client = client();
    let r = reference(&env.registry_a, "integrity", "manifest", "1");
    let m = push_random_image(&client, &r, 5, &[1000], &[], &amd64()).await.unwrap();
    let proxy = FaultProxy::start(&env.registry_a);
    proxy.set(Fault::TamperBody("/manifests/".into()));
    let proxied = via(&proxy, &r);

    // By digest: checked against the digest asked for.
    let err = client.get_manifest(&proxied.at_digest(&m.digest)).await.unwrap_err();
    assert!(matches!(&err, RegistryError::DigestMismatch { expected, .. } if *expected == m.digest), "{err}");
    // By tag: checked against the registry's Docker-Content-Digest.
    let err = client.get_manifest(&proxied).await.unwrap_err();
    assert!(matches!(&err, RegistryError::DigestMismatch { expected, .. } if *expected == m.digest), "{err}");
    assert!(!err.is_environment() && !err.is_input(), "a wrong answer is neither 'could not ask' nor bad input");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_registry_copy_of_an_altered_layer_stops_and_leaves_nothing() {
    let env = env();
    let client = client();
    let src = reference(&env.registry_a, "integrity", "src", "1");
    let m = push_random_image(&client, &src, 6, &[256 << 10], &[], &amd64()).await.unwrap();
    let ManifestKind::Image(image) = m.parse().unwrap() else { unreachable!() };
    let layer = &image.layers[0].digest;
    let proxy = FaultProxy::start(&env.registry_a);
    proxy.set(Fault::TamperBody(layer.to_string()));
    let dst = reference(&env.registry_b, "integrity", "dst", "1");

    let err = copy(&client, &via(&proxy, &src), &dst, &CopyOptions::default()).await.unwrap_err();
    assert!(matches!(&err, RegistryError::DigestMismatch { expected, .. } if expected == layer), "{err}");
    // The streamed upload was cut off: the destination has neither the layer nor the image.
    assert_eq!(client.blob_exists(&dst, layer).await.unwrap(), None);
    assert!(client.head_manifest(&dst).await.unwrap().is_none());
    assert!(client.head_manifest(&dst.at_digest(&m.digest)).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_http_token_realm_off_loopback_is_refused_before_credentials_go_out() {
    // A loopback registry (plain HTTP is fine to it) naming a remote http:// realm:
    // the credentials would cross the network in clear.
    let registry = serve(|_| {
        response(401, &[("WWW-Authenticate", r#"Bearer realm="http://lkg-realm.invalid/token",service="x""#)], b"")
    });
    let client = client_with(basic(&registry, "ci-bot", "secret-password"));
    let r: Reference = format!("{registry}/r/x:1").parse().unwrap();
    let err = client.resolve(&r).await.unwrap_err();
    assert!(matches!(&err, RegistryError::InsecureRefused { registry } if registry == "lkg-realm.invalid"), "{err:?}");
    assert!(err.to_string().contains("--insecure-registry lkg-realm.invalid"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_plain_http_off_loopback_is_refused_not_retried() {
    let calls = Arc::new(AtomicU32::new(0));
    let registry = {
        let calls = Arc::clone(&calls);
        serve(move |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            response(307, &[("Location", "http://lkg-storage.invalid/blob")], b"")
        })
    };
    let r: Reference = format!("{registry}/r/blob:1").parse().unwrap();
    let err = client().get_blob(&r, &Digest::sha256(b"x")).await.unwrap_err();
    assert!(
        matches!(&err, RegistryError::InsecureRefused { registry } if registry == "lkg-storage.invalid"),
        "{err:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1, "a refusal is not a transient failure");
}
