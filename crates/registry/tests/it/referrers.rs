//! OCI 1.1 referrers: the tag schema on the real `docker-registry` 2.8 (which
//! has no referrers API), and the referrers API against a loopback fake that
//! answers as the distribution spec says a registry with the API must.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use lkg_registry::referrers::{ReferrerPush, artifact_manifest, attach, referrers_tag};
use lkg_registry::{Client, Descriptor, Digest, Reference, ReferrersVia, RegistryError, media};

use crate::common::{client, docker_ref, env, reference, skopeo_json, small_image};
use crate::servers::{HttpRequest, response, serve};

pub const SIGNATURE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
pub const SBOM: &str = "application/spdx+json";
pub const ATTESTATION: &str = "application/vnd.in-toto+json";

/// Attaches a small artifact of `artifact_type` to `subject` in `repo`.
pub async fn attach_one(
    client: &Client,
    repo: &Reference,
    subject: &Digest,
    artifact_type: &str,
    seed: &str,
) -> ReferrerPush {
    let content = Bytes::from(format!("{{\"kind\":\"{artifact_type}\",\"seed\":\"{seed}\"}}"));
    let mut notes = BTreeMap::new();
    notes.insert("org.opencontainers.image.created".to_owned(), "2026-05-22T10:00:00Z".to_owned());
    notes.insert("org.lkg.test.seed".to_owned(), seed.to_owned());
    attach(client, repo, subject, artifact_type, &[(artifact_type.to_owned(), content)], Some(notes)).await.unwrap()
}

fn types(list: &lkg_registry::Referrers) -> Vec<String> {
    let mut t: Vec<String> = list.manifests.iter().map(|d| d.artifact_type.clone().unwrap_or_default()).collect();
    t.sort();
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_add_referrers_through_the_tag_schema_and_both_are_listed() {
    let env = env();
    let writer_a = client();
    let writer_b = client();
    let image = reference(&env.registry_a, "refs", "app", "1");
    let digest = small_image(&writer_a, &image, 7100, &[]).await.digest;

    let none = writer_a.referrers(&image, &digest, None).await.unwrap();
    assert_eq!((none.via, none.manifests.len()), (ReferrersVia::TagSchema, 0), "docker-registry 2.8 has no API");

    // Two writers at once, each adding two referrers: every entry survives.
    let (a, b) = tokio::join!(
        async {
            let sig = attach_one(&writer_a, &image, &digest, SIGNATURE, "a1").await;
            let att = attach_one(&writer_a, &image, &digest, ATTESTATION, "a2").await;
            (sig, att)
        },
        async {
            let sbom = attach_one(&writer_b, &image, &digest, SBOM, "b1").await;
            let sig = attach_one(&writer_b, &image, &digest, SIGNATURE, "b2").await;
            (sbom, sig)
        },
    );
    for push in [&a.0, &a.1, &b.0, &b.1] {
        assert_eq!((push.via, &push.subject), (ReferrersVia::TagSchema, &digest), "{push:?}");
        assert!(push.index_written, "{push:?}");
    }
    let all = writer_b.referrers(&image, &digest, None).await.unwrap();
    assert_eq!(all.via, ReferrersVia::TagSchema);
    let mut expected = vec![SIGNATURE, ATTESTATION, SBOM, SIGNATURE];
    expected.sort_unstable();
    assert_eq!(types(&all), expected);
    let digests: Vec<&Digest> = all.manifests.iter().map(|d| &d.digest).collect();
    for push in [&a.0, &a.1, &b.0, &b.1] {
        assert!(digests.contains(&&push.digest), "{} missing from {digests:?}", push.digest);
    }
    // Each entry carries the referrer's annotations.
    let sbom = all.manifests.iter().find(|d| d.digest == b.0.digest).unwrap();
    assert_eq!(sbom.annotations.as_ref().unwrap()["org.lkg.test.seed"], "b1");

    // The artifactType filter (applied by lkg: there is no API to apply it).
    let signatures = writer_a.referrers(&image, &digest, Some(SIGNATURE)).await.unwrap();
    assert_eq!(signatures.manifests.len(), 2);
    assert!(signatures.manifests.iter().all(|d| d.artifact_type.as_deref() == Some(SIGNATURE)));
    assert!(writer_a.referrers(&image, &digest, Some("application/x-none")).await.unwrap().manifests.is_empty());

    // skopeo, independently, reads the tag-schema index as an OCI index of four.
    let tag = image.at_tag(&referrers_tag(&digest));
    let raw = skopeo_json(&["inspect", "--raw", "--tls-verify=false", &docker_ref(&tag)]);
    assert_eq!(raw["mediaType"], media::OCI_INDEX);
    assert_eq!(raw["manifests"].as_array().unwrap().len(), 4, "{raw}");

    // Pushing a referrer again writes nothing.
    let again = attach_one(&writer_a, &image, &digest, SIGNATURE, "a1").await;
    assert_eq!(again.digest, a.0.digest);
    assert!(!again.index_written, "{again:?}");
    assert_eq!(writer_a.referrers(&image, &digest, None).await.unwrap().manifests.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_referrers_tag_that_is_not_an_index_is_never_overwritten() {
    let env = env();
    let client = client();
    let image = reference(&env.registry_a, "refs", "app", "1");
    let digest = small_image(&client, &image, 7200, &[]).await.digest;
    // Someone pushed an image under the referrers tag.
    let squatter = small_image(&client, &image.at_tag(&referrers_tag(&digest)), 7201, &[]).await;

    let listed = client.referrers(&image, &digest, None).await.unwrap();
    assert!(listed.manifests.is_empty(), "not an index: no referrers, by the spec");
    let subject = Descriptor::new(media::OCI_MANIFEST, digest.clone(), 0);
    let manifest = artifact_manifest(SBOM, &subject, Vec::new(), None);
    client.push_blob(&image, &Descriptor::empty().digest, Bytes::from_static(media::EMPTY_JSON)).await.unwrap();
    let err = client.push_referrer(&image, &manifest).await.unwrap_err();
    assert!(matches!(err, RegistryError::NotAReferrersIndex { .. }), "{err}");
    assert!(err.to_string().contains("move or delete that tag"), "{err}");
    assert_eq!(client.resolve(&image.at_tag(&referrers_tag(&digest))).await.unwrap(), squatter.digest);

    // A manifest without a subject is not a referrer: bad input.
    let err = client.push_referrer(&image, &squatter).await.unwrap_err();
    assert!(matches!(err, RegistryError::NotAReferrer { .. }) && err.is_input(), "{err}");
}

/// A loopback registry with the referrers API, answering from a fixed
/// referrers list: pages of two, the `artifactType` filter applied (and said
/// so) when `filters` is set, `OCI-Subject` on every manifest write.
struct FakeApi {
    addr: String,
    requests: Arc<Mutex<Vec<String>>>,
}

fn descriptor_json(n: u8, artifact_type: &str) -> serde_json::Value {
    let d = Digest::sha256(&[n]);
    serde_json::json!({"mediaType": media::OCI_MANIFEST, "digest": d.to_string(), "size": 500 + u64::from(n),
        "artifactType": artifact_type, "annotations": {"org.lkg.test.n": n.to_string()}})
}

fn fake_api(filters: bool) -> FakeApi {
    let requests: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = Arc::clone(&requests);
    let list = vec![descriptor_json(1, SIGNATURE), descriptor_json(2, SBOM), descriptor_json(3, ATTESTATION)];
    let addr = serve(move |req: &HttpRequest| {
        log.lock().unwrap().push(format!("{} {}", req.method, req.target));
        if req.method == "PUT" && req.target.contains("/manifests/sha256:") {
            let digest = Digest::sha256(&req.body);
            let subject: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
            let subject = subject["subject"]["digest"].as_str().unwrap_or_default().to_owned();
            return response(201, &[("Docker-Content-Digest", digest.as_str()), ("OCI-Subject", &subject)], b"");
        }
        if req.method == "GET" && req.target.contains("/referrers/") {
            let wanted = req
                .target
                .split("artifactType=")
                .nth(1)
                .map(|t| t.split('&').next().unwrap().replace("%2B", "+").replace("%2F", "/"));
            let mut entries = list.clone();
            let mut headers = vec![("Content-Type", media::OCI_INDEX)];
            if filters && let Some(w) = &wanted {
                entries.retain(|e| e["artifactType"] == w.as_str());
                headers.push(("OCI-Filters-Applied", "artifactType"));
            }
            // Pages of two: the first names the second with a relative Link.
            let second = req.target.contains("page=2");
            let page: Vec<_> = if second {
                entries.iter().skip(2).cloned().collect()
            } else {
                entries.iter().take(2).cloned().collect()
            };
            let link =
                format!("<{}{}page=2>; rel=\"next\"", req.target, if req.target.contains('?') { "&" } else { "?" });
            if !second && entries.len() > 2 {
                headers.push(("Link", &link));
                let body = serde_json::to_vec(
                    &serde_json::json!({"schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": page}),
                )
                .unwrap();
                return response(200, &headers, &body);
            }
            let body = serde_json::to_vec(
                &serde_json::json!({"schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": page}),
            )
            .unwrap();
            return response(200, &headers, &body);
        }
        response(404, &[], b"{\"errors\":[{\"code\":\"MANIFEST_UNKNOWN\"}]}")
    });
    FakeApi { addr, requests }
}

fn subject() -> Digest {
    Digest::sha256(b"the image")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_referrers_api_is_paged_and_its_filter_honoured() {
    let fake = fake_api(true);
    let client = client();
    let repo: Reference = format!("{}/o/app:1", fake.addr).parse().unwrap();
    let all = client.referrers(&repo, &subject(), None).await.unwrap();
    assert_eq!(all.via, ReferrersVia::Api);
    assert_eq!(all.manifests.len(), 3, "two pages followed: {:?}", fake.requests.lock().unwrap());
    assert_eq!(all.manifests[2].artifact_type.as_deref(), Some(ATTESTATION));
    assert_eq!(all.manifests[0].annotations.as_ref().unwrap()["org.lkg.test.n"], "1");
    let log = fake.requests.lock().unwrap().clone();
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(log[0].starts_with(&format!("GET /v2/o/app/referrers/{}", subject())), "{log:?}");
    assert!(!log.iter().any(|r| r.contains("/manifests/sha256-")), "no tag-schema read when the API answers: {log:?}");

    // The registry applies the filter and says so: lkg asks for it.
    let sboms = client.referrers(&repo, &subject(), Some(SBOM)).await.unwrap();
    assert_eq!(sboms.manifests.len(), 1);
    assert!(fake.requests.lock().unwrap().iter().any(|r| r.contains("artifactType=application%2Fspdx%2Bjson")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_the_registry_did_not_apply_is_applied_by_lkg() {
    let fake = fake_api(false);
    let client = client();
    let repo: Reference = format!("{}/o/app:1", fake.addr).parse().unwrap();
    let sboms = client.referrers(&repo, &subject(), Some(SBOM)).await.unwrap();
    assert_eq!(sboms.via, ReferrersVia::Api);
    let types: Vec<_> = sboms.manifests.iter().map(|d| d.artifact_type.clone().unwrap()).collect();
    assert_eq!(types, [SBOM], "no OCI-Filters-Applied header: lkg filters the whole list");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_answers_oci_subject_keeps_its_own_list() {
    let fake = fake_api(true);
    let client = client();
    let repo: Reference = format!("{}/o/app:1", fake.addr).parse().unwrap();
    let subject = Descriptor::new(media::OCI_MANIFEST, subject(), 1234);
    let manifest = artifact_manifest(SIGNATURE, &subject, Vec::new(), None);
    let push = client.push_referrer(&repo, &manifest).await.unwrap();
    assert_eq!((push.via, push.index_written), (ReferrersVia::Api, false));
    let log = fake.requests.lock().unwrap().clone();
    assert_eq!(log, [format!("PUT /v2/o/app/manifests/{}", manifest.digest)], "no tag-schema index written");
}

/// A registry without the API whose manifest tags honour `If-Match`; on the
/// first conditional write of the referrers tag another writer's entry lands
/// first (the `ETag` changes), so lkg's write is refused with 412.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conditional_write_refused_by_another_writer_is_redone_keeping_its_entry() {
    struct Tag {
        bytes: Vec<u8>,
        version: u32,
        raced: bool,
    }
    let other = descriptor_json(9, SBOM);
    let first = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": [descriptor_json(8, ATTESTATION)]})).unwrap();
    let tag = Arc::new(Mutex::new(Tag { bytes: first, version: 1, raced: false }));
    let requests: Arc<Mutex<Vec<String>>> = Arc::default();
    let (state, log, theirs) = (Arc::clone(&tag), Arc::clone(&requests), other.clone());
    let tag_name = referrers_tag(&subject());
    let addr = serve(move |req: &HttpRequest| {
        log.lock().unwrap().push(format!("{} {} {}", req.method, req.target, req.header("if-match").unwrap_or("-")));
        let mut t = state.lock().unwrap();
        if req.target.ends_with(&format!("/manifests/{tag_name}")) {
            if req.method == "GET" {
                let etag = format!("\"v{}\"", t.version);
                let digest = Digest::sha256(&t.bytes);
                return response(
                    200,
                    &[("Content-Type", media::OCI_INDEX), ("ETag", &etag), ("Docker-Content-Digest", digest.as_str())],
                    &t.bytes,
                );
            }
            if req.method == "PUT" {
                if !t.raced {
                    // Another writer adds its entry just before ours arrives.
                    t.raced = true;
                    let mut doc: serde_json::Value = serde_json::from_slice(&t.bytes).unwrap();
                    doc["manifests"].as_array_mut().unwrap().push(theirs.clone());
                    t.bytes = serde_json::to_vec(&doc).unwrap();
                    t.version += 1;
                }
                if req.header("if-match") != Some(&format!("\"v{}\"", t.version)) {
                    return response(412, &[], b"");
                }
                t.bytes.clone_from(&req.body);
                t.version += 1;
                let digest = Digest::sha256(&req.body);
                return response(201, &[("Docker-Content-Digest", digest.as_str())], b"");
            }
        }
        if req.method == "PUT" {
            let digest = Digest::sha256(&req.body);
            return response(201, &[("Docker-Content-Digest", digest.as_str())], b"");
        }
        response(404, &[("Content-Type", "text/plain")], b"404 page not found")
    });
    let client = Client::new(lkg_registry::ClientOptions {
        referrers_settle: std::time::Duration::from_millis(10),
        ..lkg_registry::ClientOptions::default()
    })
    .unwrap();
    let repo: Reference = format!("{addr}/o/app:1").parse().unwrap();
    let manifest =
        artifact_manifest(SIGNATURE, &Descriptor::new(media::OCI_MANIFEST, subject(), 1234), Vec::new(), None);
    let push = client.push_referrer(&repo, &manifest).await.unwrap();
    assert_eq!((push.via, push.index_written), (ReferrersVia::TagSchema, true));
    let stored: serde_json::Value = serde_json::from_slice(&tag.lock().unwrap().bytes).unwrap();
    let digests: Vec<&str> =
        stored["manifests"].as_array().unwrap().iter().map(|d| d["digest"].as_str().unwrap()).collect();
    assert_eq!(digests.len(), 3, "the first entry, the other writer's and ours: {stored}");
    assert!(digests.contains(&manifest.digest.as_str()));
    assert!(digests.contains(&other["digest"].as_str().unwrap()));
    let log = requests.lock().unwrap().clone();
    assert!(
        log.iter().filter(|r| r.starts_with("PUT") && r.contains("sha256-")).count() == 2,
        "one refused write, one good: {log:#?}"
    );
    assert!(log[0].starts_with("PUT /v2/o/app/manifests/sha256:"), "the referrer first, by digest: {log:#?}");

    // Listing falls back to the same tag, and sees all three.
    let listed = client.referrers(&repo, &subject(), None).await.unwrap();
    assert_eq!((listed.via, listed.manifests.len()), (ReferrersVia::TagSchema, 3));
}

#[test]
fn an_html_answer_on_the_referrers_path_means_no_api() {
    let addr = serve(|req: &HttpRequest| {
        if req.target.contains("/referrers/") {
            return response(200, &[("Content-Type", "text/html")], b"<html>welcome</html>");
        }
        response(404, &[], b"")
    });
    let rt = lkg_registry::runtime().unwrap();
    let repo: Reference = format!("{addr}/o/app:1").parse().unwrap();
    let listed = rt.block_on(client().referrers(&repo, &subject(), None)).unwrap();
    assert_eq!((listed.via, listed.manifests.len()), (ReferrersVia::TagSchema, 0));
}
