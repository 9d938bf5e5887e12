//! Fault injection: a proxy in front of the registry fails the k-th request
//! of a promotion, for every k. Whatever happens, one re-run leaves every
//! stable tag on its candidate digest, and no run says `complete` while a
//! tag is wrong.

use futures_util::StreamExt as _;
use lkg_registry::cosign::{Accept, verify};
use lkg_registry::promote::{Outcome, PromoteOptions, PromotionState, promote};

use crate::common::{client, env};
use crate::promote::{Scenario, scenario_via, test_key};
use crate::servers::{Fault, FaultProxy, OwnRegistry};

async fn check_stable(client: &lkg_registry::Client, s: &Scenario, what: &str) {
    assert_eq!(s.tags(client).await, s.promoted(), "{what}: a stable tag is not on its candidate");
    assert_eq!(
        s.stable_referrers(client).await,
        (vec![s.sbom.clone()], vec![s.sbom_signature.clone()]),
        "{what}: stable lacks the candidate's referrers"
    );
    // Signed in both formats (the default), each verifying on its own.
    for (stable, digest) in s.stables.iter().zip(&s.candidates) {
        for accept in [Accept::Bundle, Accept::Legacy] {
            let v = verify(client, &stable.at_digest(digest), &test_key().public_key(), accept)
                .await
                .unwrap_or_else(|e| panic!("{what}: stable {stable}: {e}"));
            assert!(v.verified, "{what}: stable {stable} is not signed ({accept:?}): {v:#?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_at_every_request_of_a_promotion_is_healed_by_one_rerun() {
    let env = env();
    let proxy = FaultProxy::start(&env.registry_a);
    let client = client();
    let options =
        |dir: &tempfile::TempDir| PromoteOptions { sign_key: Some(test_key()), ..PromoteOptions::new(dir.path()) };

    // The request sequence of a clean promotion (resolve, record, mount,
    // carry the referrers, move tags, verify, sign) through the proxy.
    let s = scenario_via(&client, &env.registry_a, &proxy.addr, 9000).await;
    let dir = tempfile::tempdir().unwrap();
    proxy.set(Fault::None);
    let clean = promote(&client, &s.plan, &options(&dir)).await.unwrap();
    let sequence = proxy.log();
    let n = proxy.count();
    assert_eq!(clean.state, PromotionState::Complete, "{clean:#?}");
    eprintln!("a clean promotion is {n} requests:\n{}", sequence.join("\n"));
    assert!(n >= 20, "a promotion of two artifacts with signing took only {n} requests: {sequence:#?}");
    check_stable(&client, &s, "clean run").await;

    // Every (k, fault) pair, several at once, each through its own proxy so
    // the request count is that run's alone.
    let cases: Vec<(u64, Fault)> =
        (1..=n).flat_map(|k| [(k, Fault::FailFrom(k)), (k, Fault::DropAfterForward(k))]).collect();
    let labels: Vec<String> = futures_util::stream::iter(cases.into_iter().map(|(k, fault)| {
        let client = client.clone();
        let sequence = &sequence;
        async move {
            let proxy = FaultProxy::start(&env.registry_a);
            let seed = 10_000 + k * 10 + u64::from(matches!(fault, Fault::DropAfterForward(_))) * 5;
            let s = scenario_via(&client, &env.registry_a, &proxy.addr, seed).await;
            let dir = tempfile::tempdir().unwrap();
            proxy.set(fault.clone());
            let first = promote(&client, &s.plan, &options(&dir)).await;
            proxy.set(Fault::None);
            let what =
                format!("{fault:?} ({})", sequence.get(usize::try_from(k - 1).unwrap()).map_or("", String::as_str));
            let untouched = vec![Some(s.previous[0].clone()), None, Some(s.previous[1].clone())];
            match &first {
                Ok(r) if r.state == PromotionState::Complete => {
                    assert_eq!(r.outcome, Outcome::Ok, "{what}: {r:#?}");
                    check_stable(&client, &s, &format!("{what}, reported complete")).await;
                }
                Ok(r) => {
                    assert_ne!(r.outcome, Outcome::Ok, "{what}: an unfinished run reported ok: {r:#?}");
                    if r.state == PromotionState::Unchanged {
                        assert_eq!(s.tags(&client).await, untouched, "{what}: reported unchanged but stable moved");
                    }
                }
                // Nothing may have been touched.
                Err(e) => assert_eq!(s.tags(&client).await, untouched, "{what}: failed with {e} but stable moved"),
            }
            let second = promote(&client, &s.plan, &options(&dir))
                .await
                .unwrap_or_else(|e| panic!("{what}: the re-run failed: {e}"));
            assert_eq!(second.outcome, Outcome::Ok, "{what}: the re-run did not finish: {second:#?}");
            assert!(
                matches!(second.state, PromotionState::Complete | PromotionState::Unchanged),
                "{what}: {second:#?}"
            );
            check_stable(&client, &s, &format!("{what}, after the re-run")).await;
            match &first {
                Ok(r) => format!("{:?}/{:?}", r.state, r.outcome),
                Err(_) => "error".to_owned(),
            }
        }
    }))
    .buffer_unordered(6)
    .collect()
    .await;
    let mut outcomes = std::collections::BTreeMap::new();
    for l in labels {
        *outcomes.entry(l).or_insert(0) += 1;
    }
    eprintln!("first-run outcomes over {} faults: {outcomes:?}", 2 * n);
    // Both kinds of runs happened: some faults were absorbed by retries,
    // some left a partial promotion that the re-run finished.
    assert!(outcomes.keys().any(|k| k.starts_with("Complete")), "{outcomes:?}");
    assert!(outcomes.keys().any(|k| k.starts_with("Partial")), "{outcomes:?}");
}

/// A real registry restart (SIGKILL, then the same process started again on
/// the same storage after 300 ms) at several points of a signed promotion:
/// the run ends complete or says it did not, and one re-run finishes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_restarted_mid_promotion_is_healed_by_one_rerun() {
    let registry = std::sync::Arc::new(std::sync::Mutex::new(OwnRegistry::plain()));
    let addr = registry.lock().unwrap().addr.clone();
    let proxy = std::sync::Arc::new(FaultProxy::start(&addr));
    let client = client();
    let options =
        |dir: &tempfile::TempDir| PromoteOptions { sign_key: Some(test_key()), ..PromoteOptions::new(dir.path()) };

    // How many requests a clean promotion makes, to restart at fractions of it.
    let s = scenario_via(&client, &addr, &proxy.addr, 20_000).await;
    let dir = tempfile::tempdir().unwrap();
    let start = proxy.count();
    let clean = promote(&client, &s.plan, &options(&dir)).await.unwrap();
    assert_eq!(clean.state, PromotionState::Complete, "{clean:#?}");
    let n = proxy.count() - start;

    let mut outcomes = Vec::new();
    for (i, fraction) in [0.2, 0.4, 0.6, 0.8, 0.95].into_iter().enumerate() {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
        let at = (n as f64 * fraction) as u64;
        let s = scenario_via(&client, &addr, &proxy.addr, 20_100 + i as u64 * 10).await;
        let dir = tempfile::tempdir().unwrap();
        let start = proxy.count();
        // A watcher restarts the registry once the run has made `at` requests (bounded: 30 s).
        let watcher = {
            let (registry, proxy) = (registry.clone(), proxy.clone());
            std::thread::spawn(move || {
                for _ in 0..30_000 {
                    if proxy.count() - start >= at {
                        registry.lock().unwrap().kill();
                        std::thread::sleep(std::time::Duration::from_millis(300));
                        registry.lock().unwrap().start_again();
                        return true;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                false
            })
        };
        let first = promote(&client, &s.plan, &options(&dir)).await;
        let restarted = tokio::task::spawn_blocking(move || watcher.join().unwrap()).await.unwrap();
        assert!(restarted, "restart at request {at} of {n}: the run made fewer requests");
        let what = format!("registry restarted at request {at} of {n}");
        match &first {
            Ok(r) if r.state == PromotionState::Complete => {
                assert_eq!(r.outcome, Outcome::Ok, "{what}: {r:#?}");
                check_stable(&client, &s, &format!("{what}, reported complete")).await;
            }
            Ok(r) => assert_ne!(r.outcome, Outcome::Ok, "{what}: an unfinished run reported ok: {r:#?}"),
            Err(_) => {}
        }
        let second = promote(&client, &s.plan, &options(&dir))
            .await
            .unwrap_or_else(|e| panic!("{what}: the re-run failed: {e}"));
        assert_eq!(second.outcome, Outcome::Ok, "{what}: the re-run did not finish: {second:#?}");
        check_stable(&client, &s, &format!("{what}, after the re-run")).await;
        outcomes.push(first.map_or_else(|e| format!("error: {e}"), |r| format!("{:?}", r.state)));
    }
    eprintln!("first runs, restarts at 20/40/60/80/95 % of {n} requests: {outcomes:?}");
}

/// The destination registry of a cross-registry copy killed and restarted
/// (same storage) while 32 MiB of blobs are uploaded: the copy either
/// completes, with the tag on the digest, or fails with no tag written (the
/// tag is written last); one re-run copies it, digest unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_restarted_mid_copy_writes_no_tag_and_one_rerun_copies() {
    let env = env();
    let client = client();
    let src = crate::common::reference(&env.registry_a, "xrestart", "app", "1");
    let sizes = [8 << 20, 8 << 20, 8 << 20, 8 << 20];
    let image =
        crate::random::push_random_image(&client, &src, 20_900, &sizes, &[], &crate::common::amd64()).await.unwrap();
    let mut outcomes = Vec::new();
    for (i, after_ms) in [20_u64, 60, 120].into_iter().enumerate() {
        let registry = std::sync::Arc::new(std::sync::Mutex::new(OwnRegistry::plain()));
        let dst: lkg_registry::Reference =
            format!("{}/xrestart/app:{i}", registry.lock().unwrap().addr).parse().unwrap();
        let watcher = {
            let registry = registry.clone();
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(after_ms));
                registry.lock().unwrap().kill();
                std::thread::sleep(std::time::Duration::from_millis(300));
                registry.lock().unwrap().start_again();
            })
        };
        let first = lkg_registry::copy::copy(&client, &src, &dst, &lkg_registry::copy::CopyOptions::default()).await;
        tokio::task::spawn_blocking(move || watcher.join().unwrap()).await.unwrap();
        let what = format!("restart {after_ms} ms into the copy");
        match &first {
            Ok(_) => assert_eq!(client.resolve(&dst).await.unwrap(), image.digest, "{what}: reported copied"),
            Err(_) => assert!(
                matches!(client.resolve(&dst).await, Err(lkg_registry::RegistryError::NotFound { .. })),
                "{what}: a failed copy wrote the tag"
            ),
        }
        let second = lkg_registry::copy::copy(&client, &src, &dst, &lkg_registry::copy::CopyOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{what}: the re-run failed: {e}"));
        assert_eq!(second.digest.as_ref(), Some(&image.digest), "{what}");
        assert_eq!(client.resolve(&dst).await.unwrap(), image.digest, "{what}");
        outcomes.push(first.map_or_else(|e| format!("error: {e}"), |r| format!("copied ({} bytes)", r.bytes_uploaded)));
    }
    eprintln!("first copies: {outcomes:?}");
}

/// A registry killed while it wrote a link file leaves it empty, and
/// distribution answers 500 for that manifest or blob from then on (seen in
/// `a_registry_restarted_mid_promotion_is_healed_by_one_rerun`): a copy run
/// again pushes them anyway, which rewrites the links.
#[tokio::test]
async fn a_copy_again_heals_the_links_a_registry_crash_left_empty() {
    use lkg_registry::copy::{CopyOptions, copy};
    let registry = OwnRegistry::plain();
    let client = client();
    let src = crate::common::reference(&env().registry_a, "heal", "app", "1");
    let image =
        crate::random::push_random_image(&client, &src, 7, &[4096, 8192], &[], &crate::common::amd64()).await.unwrap();
    let dst = crate::common::reference(&registry.addr, "heal", "app", "1");
    copy(&client, &src, &dst, &CopyOptions::default()).await.expect("the first copy");
    let lkg_registry::ManifestKind::Image(parsed) = image.parse().unwrap() else { panic!("an image") };

    // Empty the manifest's revision link and one layer's link, as a crash
    // in the middle of writing them would.
    let repo = registry.storage().join("repositories").join(dst.repository());
    let revision = repo.join(format!("_manifests/revisions/sha256/{}/link", image.digest.hex()));
    let layer = repo.join(format!("_layers/sha256/{}/link", parsed.layers[0].digest.hex()));
    for link in [&revision, &layer] {
        std::fs::write(link, b"").unwrap();
    }
    let at = dst.at_digest(&image.digest);
    assert!(client.head_manifest(&at).await.is_err(), "distribution answers 500 for an empty link");
    assert!(client.blob_exists(&dst, &parsed.layers[0].digest).await.is_err());

    let report = copy(&client, &src, &dst, &CopyOptions::default()).await.expect("the copy again");
    assert_eq!(report.manifests_pushed, 1, "{report:?}");
    assert_eq!(client.head_manifest(&at).await.unwrap().map(|h| h.digest), Some(image.digest.clone()));
    assert_eq!(client.blob_exists(&dst, &parsed.layers[0].digest).await.unwrap(), Some(4096));
    assert_eq!(std::fs::read_to_string(&revision).unwrap(), image.digest.to_string(), "the link is rewritten");
}
