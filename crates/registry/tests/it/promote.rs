use lkg_registry::promote::{
    Artifact, Outcome, PromoteError, PromoteOptions, PromotionPlan, PromotionState, promote, revert,
};
use lkg_registry::sign::{SigningKey, verify};
use lkg_registry::{Client, Digest, Reference};

use crate::common::{client, env, reference, small_image};
use crate::referrers::{ATTESTATION, SBOM, SIGNATURE, attach_one};

/// Two artifacts like the OS pipeline's: the image (with an audit tag) and
/// its companion akmods image, each with a candidate and a previous stable.
pub struct Scenario {
    pub plan: PromotionPlan,
    pub candidates: [Digest; 2],
    pub previous: [Digest; 2],
    pub stables: [Reference; 2],
    pub audit_tag: String,
    /// Attached to the first candidate: an SBOM, and a signature of that SBOM.
    pub sbom: Digest,
    pub sbom_signature: Digest,
    /// The first candidate's repository, where they were attached.
    pub candidate_repo: Reference,
}

pub async fn scenario(client: &Client, registry: &str, seed: u64) -> Scenario {
    scenario_via(client, registry, registry, seed).await
}

/// Builds the images in `registry`, and a plan that names them through
/// `plan_registry` (the same registry behind a proxy).
pub async fn scenario_via(client: &Client, registry: &str, plan_registry: &str, seed: u64) -> Scenario {
    let image_cand = reference(registry, "promo", "kinoite-zfs-candidate", "43");
    let akmods_cand = reference(registry, "promo", "akmods-zfs-candidate", "main-43");
    let image_stable = reference(registry, "promo", "kinoite-zfs", "latest");
    let akmods_stable = reference(registry, "promo", "akmods-zfs", "main-43");
    let c1 = small_image(client, &image_cand, seed, &[("ostree.linux", "6.14.5")]).await.digest;
    let c2 = small_image(client, &akmods_cand, seed + 1, &[]).await.digest;
    let p1 = small_image(client, &image_stable, seed + 2, &[("ostree.linux", "6.13.9")]).await.digest;
    let p2 = small_image(client, &akmods_stable, seed + 3, &[]).await.digest;
    let sbom = attach_one(client, &image_cand, &c1, SBOM, &format!("{seed}-sbom")).await.digest;
    let sbom_signature = attach_one(client, &image_cand, &sbom, SIGNATURE, &format!("{seed}-sbom-sig")).await.digest;
    let candidate_repo = image_cand.clone();
    let via = |r: Reference| -> Reference {
        format!("{plan_registry}/{}:{}", r.repository(), r.tag().unwrap()).parse().unwrap()
    };
    let (image_cand, akmods_cand, image_stable, akmods_stable) =
        (via(image_cand), via(akmods_cand), via(image_stable), via(akmods_stable));
    let audit_tag = "stable-20260522".to_owned();
    let plan = PromotionPlan {
        artifacts: vec![
            format!("{image_cand}={image_stable},{audit_tag}").parse::<Artifact>().unwrap(),
            format!("{akmods_cand}={akmods_stable}").parse::<Artifact>().unwrap(),
        ],
    };
    Scenario {
        plan,
        candidates: [c1, c2],
        previous: [p1, p2],
        stables: [image_stable, akmods_stable],
        audit_tag,
        sbom,
        sbom_signature,
        candidate_repo,
    }
}

impl Scenario {
    /// Every stable tag (and the audit tag) with the digest it names now.
    pub async fn tags(&self, client: &Client) -> Vec<Option<Digest>> {
        let mut out = Vec::new();
        for r in [&self.stables[0], &self.stables[0].at_tag(&self.audit_tag), &self.stables[1]] {
            out.push(client.resolve(r).await.ok());
        }
        out
    }

    /// The referrers of the first candidate digest in the first stable
    /// repository, and those of its SBOM there; the signature bundles a
    /// signed promotion adds to the image aside (`check_stable` verifies those).
    pub async fn stable_referrers(&self, client: &Client) -> (Vec<Digest>, Vec<Digest>) {
        let list = |d: Digest| async move {
            let image = d == self.candidates[0];
            let mut v: Vec<Digest> = client
                .referrers(&self.stables[0], &d, None)
                .await
                .unwrap()
                .manifests
                .into_iter()
                .filter(|m| {
                    !(image
                        && m.artifact_type.as_deref().is_some_and(lkg_registry::bundle::is_bundle_media_type)
                        && m.annotations.as_ref().is_some_and(|a| a.contains_key("dev.sigstore.bundle.content")))
                })
                .map(|m| m.digest)
                .collect();
            v.sort();
            v
        };
        (list(self.candidates[0].clone()).await, list(self.sbom.clone()).await)
    }

    pub fn promoted(&self) -> Vec<Option<Digest>> {
        vec![Some(self.candidates[0].clone()), Some(self.candidates[0].clone()), Some(self.candidates[1].clone())]
    }
}

pub fn test_key() -> SigningKey {
    SigningKey::from_file(&fixture("registry/signing-key.pem"), None).unwrap()
}

pub fn fixture(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures").join(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_artifacts_promote_together_with_an_audit_tag_and_revert() {
    let env = env();
    let client = client();
    let s = scenario(&client, &env.registry_a, 100).await;
    let state = tempfile::tempdir().unwrap();
    let options = PromoteOptions { sign_key: Some(test_key()), ..PromoteOptions::new(state.path()) };

    let report = promote(&client, &s.plan, &options).await.unwrap();
    assert_eq!((report.state, report.outcome), (PromotionState::Complete, Outcome::Ok), "{report:#?}");
    assert_eq!(report.bytes_uploaded, 0, "a same-registry promotion uploads nothing");
    assert_eq!(report.artifacts[0].digest, s.candidates[0]);
    assert_eq!(report.artifacts[0].previous_digest.as_ref(), Some(&s.previous[0]));
    assert_eq!(report.artifacts[0].tags_moved, ["latest", s.audit_tag.as_str()]);
    assert_eq!(report.artifacts[1].tags_moved, ["main-43"]);
    assert_eq!(s.tags(&client).await, s.promoted());
    for (stable, digest) in s.stables.iter().zip(&s.candidates) {
        verify(&client, &stable.at_digest(digest), &test_key().public_key()).await.unwrap();
    }

    // Nothing left to do: unchanged.
    let again = promote(&client, &s.plan, &options).await.unwrap();
    assert_eq!((again.state, again.outcome), (PromotionState::Unchanged, Outcome::Ok), "{again:#?}");

    // The no-op run kept the journal of the promotion: revert still knows
    // the stable digests from before it.
    let r = revert(&client, &s.plan, &options).await.unwrap();
    let tags = s.tags(&client).await;
    assert_eq!((tags[0].as_ref(), tags[2].as_ref()), (Some(&s.previous[0]), Some(&s.previous[1])), "{r:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revert_restores_the_previous_stable_digests() {
    let env = env();
    let client = client();
    let s = scenario(&client, &env.registry_a, 200).await;
    let state = tempfile::tempdir().unwrap();
    let options = PromoteOptions::new(state.path());
    let report = promote(&client, &s.plan, &options).await.unwrap();
    assert_eq!(report.state, PromotionState::Complete);

    let r = revert(&client, &s.plan, &options).await.unwrap();
    assert_eq!((r.action, r.state, r.outcome), ("revert", PromotionState::Complete, Outcome::Ok), "{r:#?}");
    let tags = s.tags(&client).await;
    assert_eq!(tags[0].as_ref(), Some(&s.previous[0]));
    assert_eq!(tags[2].as_ref(), Some(&s.previous[1]));
    assert_eq!(r.artifacts[0].tags_moved.first().map(String::as_str), Some("latest"));
    // The audit tag did not exist before; Distribution cannot delete tags, and says so.
    if tags[1].is_some() {
        assert!(r.notes.iter().any(|n| n.contains(&s.audit_tag)), "{r:#?}");
    }
    // Reverting twice changes nothing.
    let twice = revert(&client, &s.plan, &options).await.unwrap();
    assert_eq!(twice.state, PromotionState::Unchanged);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_candidate_fails_closed_before_anything_moves() {
    let env = env();
    let client = client();
    let s = scenario(&client, &env.registry_a, 300).await;
    let mut plan = s.plan.clone();
    plan.artifacts[1].candidate = plan.artifacts[1].candidate.at_tag("main-44");
    let state = tempfile::tempdir().unwrap();
    let err = promote(&client, &plan, &PromoteOptions::new(state.path())).await.unwrap_err();
    assert!(matches!(err, PromoteError::CandidateMissing { .. }), "{err}");
    assert!(err.to_string().contains("main-44"), "{err}");
    assert_eq!(s.tags(&client).await, vec![Some(s.previous[0].clone()), None, Some(s.previous[1].clone())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotion_carries_signatures_sboms_and_attestations_to_stable() {
    let env = env();
    let client = client();
    let s = scenario(&client, &env.registry_a, 400).await;
    let signature = attach_one(&client, &s.candidate_repo, &s.candidates[0], SIGNATURE, "400-sig").await.digest;
    let attestation = attach_one(&client, &s.candidate_repo, &s.candidates[0], ATTESTATION, "400-att").await.digest;
    assert_eq!(s.stable_referrers(&client).await, (vec![], vec![]), "nothing on stable before");
    let state = tempfile::tempdir().unwrap();
    let options = PromoteOptions::new(state.path());

    let report = promote(&client, &s.plan, &options).await.unwrap();
    assert_eq!((report.state, report.outcome), (PromotionState::Complete, Outcome::Ok), "{report:#?}");
    assert_eq!(report.bytes_uploaded, 0, "a same-registry promotion uploads nothing, referrers included");
    let mut carried: Vec<(Digest, Option<String>)> =
        report.artifacts[0].referrers.iter().map(|r| (r.digest.clone(), r.artifact_type.clone())).collect();
    carried.sort();
    let mut expected = vec![
        (signature.clone(), Some(SIGNATURE.to_owned())),
        (attestation.clone(), Some(ATTESTATION.to_owned())),
        (s.sbom.clone(), Some(SBOM.to_owned())),
        (s.sbom_signature.clone(), Some(SIGNATURE.to_owned())),
    ];
    expected.sort();
    assert_eq!(carried, expected, "{report:#?}");
    assert!(report.artifacts[1].referrers.is_empty());

    let mut on_image = vec![signature, attestation, s.sbom.clone()];
    on_image.sort();
    assert_eq!(s.stable_referrers(&client).await, (on_image.clone(), vec![s.sbom_signature.clone()]));
    // The tag-schema index lists each with its type, as the candidate's does.
    let listed = client.referrers(&s.stables[0], &s.candidates[0], Some(ATTESTATION)).await.unwrap();
    assert_eq!(listed.manifests.len(), 1);

    // A re-run has nothing to move and duplicates nothing.
    let again = promote(&client, &s.plan, &options).await.unwrap();
    assert_eq!((again.state, again.outcome), (PromotionState::Unchanged, Outcome::Ok), "{again:#?}");
    assert_eq!(s.stable_referrers(&client).await.0, on_image);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_referrers_a_promotion_leaves_them_behind() {
    let env = env();
    let client = client();
    let s = scenario(&client, &env.registry_a, 500).await;
    let state = tempfile::tempdir().unwrap();
    let options = PromoteOptions { referrers: false, ..PromoteOptions::new(state.path()) };
    let report = promote(&client, &s.plan, &options).await.unwrap();
    assert_eq!(report.state, PromotionState::Complete, "{report:#?}");
    assert!(report.artifacts.iter().all(|a| a.referrers.is_empty()));
    assert_eq!(s.stable_referrers(&client).await, (vec![], vec![]));
    assert_eq!(client.referrers(&s.candidate_repo, &s.candidates[0], None).await.unwrap().manifests.len(), 1);
}
