use lkg_registry::promote::{
    Artifact, Outcome, PromoteError, PromoteOptions, PromotionPlan, PromotionState, promote, revert,
};
use lkg_registry::sign::{SigningKey, verify};
use lkg_registry::{Client, Digest, Reference};

use crate::common::{client, env, reference, small_image};

/// Two artifacts like the OS pipeline's: the image (with an audit tag) and
/// its companion akmods image, each with a candidate and a previous stable.
pub struct Scenario {
    pub plan: PromotionPlan,
    pub candidates: [Digest; 2],
    pub previous: [Digest; 2],
    pub stables: [Reference; 2],
    pub audit_tag: String,
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
    Scenario { plan, candidates: [c1, c2], previous: [p1, p2], stables: [image_stable, akmods_stable], audit_tag }
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
    let options = PromoteOptions { state_dir: state.path().to_owned(), sign_key: Some(test_key()) };

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
    let options = PromoteOptions { state_dir: state.path().to_owned(), sign_key: None };
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
    let err = promote(&client, &plan, &PromoteOptions { state_dir: state.path().to_owned(), sign_key: None })
        .await
        .unwrap_err();
    assert!(matches!(err, PromoteError::CandidateMissing { .. }), "{err}");
    assert!(err.to_string().contains("main-44"), "{err}");
    assert_eq!(s.tags(&client).await, vec![Some(s.previous[0].clone()), None, Some(s.previous[1].clone())]);
}
