//! The registry store (`oci://`) against the test environment's real
//! registry, through a proxy that counts (and, when told, breaks) requests.

use lkg_core::{Classify, FailureKind};
use lkg_registry::{Client, ClientOptions, Reference, RetryPolicy};
use lkg_testkit::proxy::{Fault, FaultProxy};
use lkg_warmsnap::{Access, NoProgress, OciStore, RestoreRequest, SnapError, TakeRequest, restore, show, take, verify};

use crate::support::{MUTATE, RICH, Volumes, docker, env, listings, sh, strict_listing};

/// A store in a repository of its own on registry `a`, reached through a
/// proxy, and its local state dir.
fn store(prefix: &str, keep: usize) -> (OciStore, FaultProxy, tempfile::TempDir) {
    let proxy = FaultProxy::start(&env().registry_a);
    let retry = RetryPolicy { attempts: 1, ..RetryPolicy::default() };
    let client = Client::new(ClientOptions { retry, ..ClientOptions::default() }).unwrap();
    let url = format!("oci://{}/lkg/{}", proxy.addr, lkg_testkit::unique_name(prefix));
    let state = tempfile::tempdir().unwrap();
    let store = OciStore::new(client, &OciStore::parse_url(&url).unwrap(), state.path()).keep(keep);
    (store, proxy, state)
}

/// Blob uploads started in the proxy's log (`POST .../blobs/uploads/`).
fn uploads(proxy: &FaultProxy) -> usize {
    proxy.log().iter().filter(|l| l.contains(" POST ") && l.ends_with("/blobs/uploads/")).count()
}

/// Streamed uploads in the proxy's log (`PATCH .../blobs/uploads/<id>`).
fn patches(proxy: &FaultProxy) -> usize {
    proxy.log().iter().filter(|l| l.contains(" PATCH ") && l.contains("/blobs/uploads/")).count()
}

/// The repository's tags, straight from the registry.
fn tags(store: &OciStore) -> Vec<String> {
    let url = format!("http://{}/v2/{}/tags/list", env().registry_a, store.repository().repository());
    let answer = serde_json::from_str::<serde_json::Value>(&lkg_testkit::http_get(&url).unwrap().body).unwrap();
    let mut tags: Vec<String> =
        answer["tags"].as_array().into_iter().flatten().map(|t| t.as_str().unwrap().to_owned()).collect();
    tags.sort();
    tags
}

#[tokio::test]
async fn a_registry_store_round_trips_and_uploads_only_what_changed() {
    let docker = docker().await;
    let mut volumes = Volumes::new("ocirt");
    let data = volumes.create("data");
    let empty = volumes.create("empty");
    sh(&data, RICH);
    let before = listings(&[&data, &empty]);
    let (store, proxy, _state) = store("ocirt", 5);
    let request = TakeRequest::new(volumes.app.clone(), &volumes.stack).unwrap().version("1.0.0");

    proxy.set(Fault::None);
    let first = take(&docker, &store, &request, &NoProgress).await.expect("take into the registry");
    assert!(first.location.starts_with(&format!("oci://{}/lkg/", proxy.addr)), "{}", first.location);
    assert_eq!(uploads(&proxy), 3, "two volumes and meta.json: {:#?}", proxy.log());
    // Volumes new to the repository go up while they are archived: one
    // streamed PATCH each, finished by digest.
    assert_eq!(patches(&proxy), 2, "{:#?}", proxy.log());
    assert_eq!(store.uploaded_bytes(), first.meta.total_bytes());
    let app = volumes.app.as_str();
    let tagged = tags(&store);
    assert_eq!(tagged.len(), 2, "{tagged:?}");
    assert!(tagged.contains(&format!("{app}-last-good")), "{tagged:?}");

    // Unchanged: only the new meta.json (a new time) goes up, no volume byte.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    proxy.set(Fault::None);
    take(&docker, &store, &request, &NoProgress).await.expect("second take");
    assert_eq!(uploads(&proxy), 1, "only meta.json: {:#?}", proxy.log());
    assert_eq!(store.uploaded_bytes(), first.meta.total_bytes(), "no volume uploaded again");

    // One volume changed: that one goes up.
    proxy.set(Fault::None);
    sh(&data, "echo one more > /data/added");
    let third = take(&docker, &store, &request, &NoProgress).await.expect("third take");
    assert_eq!(uploads(&proxy), 2, "the changed volume and meta.json: {:#?}", proxy.log());
    assert_eq!(store.uploaded_bytes(), first.meta.total_bytes() + third.meta.volumes[0].bytes);
    let taken = listings(&[&data, &empty]);
    assert_ne!(taken[0], before[0]);

    // A restore brings back exactly the last take, read from the registry.
    sh(&data, MUTATE);
    sh(&empty, "echo stray > /data/stray");
    let report = restore(&docker, &store, &RestoreRequest::new(volumes.app.clone()), &NoProgress).await.unwrap();
    assert_eq!(report.volumes.len(), 2);
    assert_eq!(listings(&[&data, &empty]), taken);
    let checked = verify(&store, &volumes.app, &NoProgress).await.unwrap();
    assert!(checked.ok, "{:?}", checked.volumes);
    assert_eq!(lkg_warmsnap::list(&store).await.unwrap(), [volumes.app.clone()]);
}

/// The annotations of the layers of `store`'s last-good for `app`.
async fn layer_annotations(store: &OciStore, app: &str) -> Vec<std::collections::BTreeMap<String, String>> {
    let direct = Reference::new(&env().registry_a, store.repository().repository(), None, None);
    let manifest = Client::new(ClientOptions::default())
        .unwrap()
        .get_manifest(&direct.at_tag(&format!("{app}-last-good")))
        .await
        .unwrap();
    let lkg_registry::ManifestKind::Image(image) = manifest.parse().unwrap() else { panic!("an image manifest") };
    image.layers.into_iter().map(|l| l.annotations.unwrap_or_default()).collect()
}

#[tokio::test]
async fn an_unchanged_volume_keeps_its_layer_unread_and_any_change_is_taken() {
    let docker = docker().await;
    let mut volumes = Volumes::new("ociprint");
    let data = volumes.create("data");
    sh(&data, RICH);
    // A print is recorded only once every entry's ctime is over 2 s old.
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    let (store, proxy, _state) = store("ociprint", 5);
    let request = TakeRequest::new(volumes.app.clone(), &volumes.stack).unwrap().access(Access::Direct);
    let app = volumes.app.as_str().to_owned();

    proxy.set(Fault::None);
    let first = take(&docker, &store, &request, &NoProgress).await.expect("first take");
    assert!(!first.volumes[0].unchanged);
    let print = layer_annotations(&store, &app).await[0].get("dev.lkg.print").cloned().expect("a print");
    assert!(print.starts_with("v1:"), "{print}");

    // Unchanged: the last-good's layer is kept, nothing of the volume goes up.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    proxy.set(Fault::None);
    let second = take(&docker, &store, &request, &NoProgress).await.expect("second take");
    assert!(second.volumes[0].unchanged, "{:?}", second.volumes);
    assert_eq!(second.meta.volumes[0].sha256, first.meta.volumes[0].sha256);
    assert_eq!(second.volumes[0].summary, first.volumes[0].summary, "the walk counts what the archive held");
    assert_eq!(uploads(&proxy), 1, "only meta.json: {:#?}", proxy.log());
    assert_eq!(second.uploaded_bytes, Some(0));
    assert_eq!(layer_annotations(&store, &app).await[0].get("dev.lkg.print"), Some(&print));

    // The same size, other bytes: the volume is read and its new archive taken.
    sh(&data, "printf 'X' | dd of=/data/many/f1 bs=1 count=1 conv=notrunc 2>/dev/null");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    proxy.set(Fault::None);
    let third = take(&docker, &store, &request, &NoProgress).await.expect("third take");
    assert!(!third.volumes[0].unchanged);
    assert_ne!(third.meta.volumes[0].sha256, first.meta.volumes[0].sha256);
    assert_eq!(third.uploaded_bytes, Some(third.meta.volumes[0].bytes));
    let taken = listings(&[&data]);

    // Encrypting, the plain layer is not adopted; encrypted, it is, later.
    let identity = age::x25519::Identity::generate();
    let sealed = store.clone().encrypt_to(vec![identity.to_public()]).decrypt_with(vec![identity]);
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    let fourth = take(&docker, &sealed, &request, &NoProgress).await.expect("an encrypted take");
    assert!(!fourth.volumes[0].unchanged);
    assert!(fourth.uploaded_bytes.unwrap() > 0);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let fifth = take(&docker, &sealed, &request, &NoProgress).await.expect("an unchanged encrypted take");
    assert!(fifth.volumes[0].unchanged, "{:?}", fifth.volumes);
    assert_eq!(fifth.uploaded_bytes, Some(0));

    // What was kept without reading restores exactly.
    sh(&data, MUTATE);
    restore(&docker, &sealed, &RestoreRequest::new(volumes.app.clone()), &NoProgress).await.expect("restore");
    assert_eq!(listings(&[&data]), taken);
}

#[tokio::test]
async fn a_streamed_upload_that_fails_fails_the_take_and_publishes_nothing() {
    let docker = docker().await;
    let mut volumes = Volumes::new("ocistream");
    let data = volumes.create("data");
    sh(&data, "dd if=/dev/urandom of=/data/big bs=1M count=3 2>/dev/null");
    let (store, proxy, state) = store("ocistream", 5);
    let request = TakeRequest::new(volumes.app.clone(), &volumes.stack).unwrap();
    // Request 1 asks for the last-good (there is none); 2 opens the upload
    // session; 3 is the streamed PATCH; 4 finishes it.
    for (from, what) in [(2, "the session refused"), (3, "the stream refused"), (4, "the digest refused")] {
        proxy.set(Fault::FailFrom(from));
        let err = take(&docker, &store, &request, &NoProgress).await.expect_err(what);
        assert_eq!(err.kind(), FailureKind::Environment, "{what}: {err}");
        let message = lkg_core::render_chain(&err);
        assert!(message.contains("injected fault"), "{what}: the registry's answer is named: {message}");
        proxy.set(Fault::None);
        assert!(show(&store, &volumes.app).await.unwrap().is_none(), "{what}: nothing published");
    }
    let staged: Vec<_> = walkdir(state.path()).into_iter().filter(|p| p.contains("_data.tar")).collect();
    assert!(staged.is_empty(), "nothing of the volume on disk: {staged:?}");
    proxy.set(Fault::None);
    let taken = take(&docker, &store, &request, &NoProgress).await.expect("the registry is back");
    assert_eq!(taken.uploaded_bytes, Some(taken.meta.volumes[0].bytes));
}

/// Every file under `dir`.
fn walkdir(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in fs_err::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(walkdir(&path));
        } else {
            found.push(path.display().to_string());
        }
    }
    found
}

#[tokio::test]
async fn a_tampered_layer_or_meta_is_refused_before_the_volume_is_touched() {
    let docker = docker().await;
    let mut volumes = Volumes::new("ocitamper");
    let data = volumes.create("data");
    sh(&data, "echo precious > /data/file; dd if=/dev/urandom of=/data/big bs=64k count=16 2>/dev/null");
    let (store, proxy, _state) = store("ocitamper", 5);
    let request = TakeRequest::new(volumes.app.clone(), &volumes.stack).unwrap();
    let taken = take(&docker, &store, &request, &NoProgress).await.unwrap();
    sh(&data, "echo live > /data/file");
    let live = strict_listing(&data);
    let restore_request = RestoreRequest::new(volumes.app.clone());

    // The volume's layer altered on the way: the archive is refused, the
    // live volume not even rewritten.
    proxy.set(Fault::TamperBody(format!("/blobs/sha256:{}", taken.meta.volumes[0].sha256)));
    let err = restore(&docker, &store, &restore_request, &NoProgress).await.expect_err("a tampered layer");
    assert_eq!(err.kind(), FailureKind::Verdict, "{err}");
    assert_eq!(strict_listing(&data), live, "the volume is untouched");
    let checked = verify(&store, &volumes.app, &NoProgress).await.unwrap();
    assert!(!checked.ok, "verify finds the damage: {:?}", checked.volumes);

    // meta.json altered on the way: refused before any volume is read.
    let direct = Reference::new(&env().registry_a, store.repository().repository(), None, None);
    let manifest = Client::new(ClientOptions::default())
        .unwrap()
        .get_manifest(&direct.at_tag(&format!("{}-last-good", volumes.app)))
        .await
        .unwrap();
    let lkg_registry::ManifestKind::Image(image) = manifest.parse().unwrap() else { panic!("an image manifest") };
    let config_digest = image.config.digest.to_string();
    proxy.set(Fault::TamperBody(format!("/blobs/{config_digest}")));
    let err = restore(&docker, &store, &restore_request, &NoProgress).await.expect_err("a tampered meta.json");
    assert_eq!(err.kind(), FailureKind::Verdict, "{err}");
    assert!(err.to_string().contains("digest"), "{err}");
    assert_eq!(strict_listing(&data), live, "the volume is untouched");
    assert!(show(&store, &volumes.app).await.is_err(), "show does not trust it either");

    // Untampered, it restores.
    proxy.set(Fault::None);
    restore(&docker, &store, &restore_request, &NoProgress).await.expect("restore");
    assert_eq!(env().on_volume(&data, &["cat", "/data/file"]).trim(), "precious");
}

#[tokio::test]
async fn retention_keeps_exactly_n_and_an_interrupted_take_keeps_the_last_good() {
    let docker = docker().await;
    let mut volumes = Volumes::new("ocikeep");
    let data = volumes.create("data");
    let (store, proxy, _state) = store("ocikeep", 2);
    let key = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/registry/signing-key.pem");
    let store = store.sign_with(lkg_registry::sign::SigningKey::from_file(&key, None).unwrap());
    let request = TakeRequest::new(volumes.app.clone(), &volumes.stack).unwrap();
    let mut locations = Vec::new();
    for i in 0..4 {
        sh(&data, &format!("echo {i} > /data/generation"));
        locations.push(take(&docker, &store, &request, &NoProgress).await.unwrap().location);
        // Generations are named to the second.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    }
    let history = store.history(&volumes.app).await.unwrap();
    assert_eq!(history.len(), 2, "{history:?}");
    let app = volumes.app.as_str();
    let mut expected = history.clone();
    expected.push(format!("{app}-last-good"));
    expected.sort();
    let (signatures, snapshots): (Vec<String>, Vec<String>) =
        tags(&store).into_iter().partition(|t| t.starts_with("sha256-"));
    assert_eq!(snapshots, expected, "the older generations are deleted");
    // This registry has no referrers API: each kept snapshot's signature is
    // listed under the tag schema's sha256-<hex>, and the deleted ones' are gone.
    assert_eq!(signatures.len(), 2, "{signatures:?}");
    let last = show(&store, &volumes.app).await.unwrap().unwrap();
    assert_eq!(&last.location, locations.last().unwrap());

    // A take that loses the registry half-way fails, and changes nothing.
    sh(&data, "echo 4 > /data/generation");
    proxy.set(Fault::FailFrom(4));
    let err = take(&docker, &store, &request, &NoProgress).await.expect_err("the registry went away");
    assert!(matches!(err, SnapError::Store(_)), "{err}");
    assert_eq!(err.kind(), FailureKind::Environment, "{err}");
    proxy.set(Fault::None);
    let still = show(&store, &volumes.app).await.unwrap().unwrap();
    assert_eq!(&still.location, locations.last().unwrap(), "last-good did not move");
    sh(&data, "echo lost > /data/generation");
    restore(&docker, &store, &RestoreRequest::new(volumes.app.clone()), &NoProgress).await.unwrap();
    assert_eq!(env().on_volume(&data, &["cat", "/data/generation"]).trim(), "3");
}

#[test]
fn store_urls_name_a_registry_and_a_repository() {
    let repo: Reference = OciStore::parse_url("oci://registry.example.org/team/lkg").unwrap();
    assert_eq!((repo.registry(), repo.repository()), ("registry.example.org", "team/lkg"));
    for bad in [
        "registry.example.org/lkg",
        "oci://",
        "oci://host",
        "oci://snaps/x",
        "oci://h:5000/r:tag",
        "oci://h:5000/r@sha256:00",
    ] {
        let err = OciStore::parse_url(bad).expect_err(bad);
        assert_eq!(err.kind(), FailureKind::Input);
        assert!(err.to_string().contains("oci://HOST[:PORT]/REPOSITORY"), "{err}");
    }
}
