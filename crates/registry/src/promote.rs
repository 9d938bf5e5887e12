//! Journalled, multi-artifact promotion: candidate -> stable, all or
//! nothing visible, resumable and revertible.
//!
//! A promotion runs in steps, each recorded in a journal under the state
//! directory (`<state>/registry/promotions/<plan-key>.json`) before the next
//! starts:
//!
//! 1. **plan**: every candidate is resolved to a digest, and every stable and
//!    extra tag's current digest is recorded (the revert target). A missing
//!    candidate stops everything here, before anything is touched ("fail
//!    closed").
//! 2. **copy**: each candidate is copied into its stable repository by digest
//!    (mounts within a registry), with its referrers (signatures, SBOMs,
//!    attestations, and theirs, [`REFERRER_DEPTH`] levels) unless
//!    [`PromoteOptions::referrers`] is off. Stable tags do not move yet.
//! 3. **move tags**: the stable tag, then the extra tags, of each artifact.
//! 4. **verify**: every tag is read back and must name its candidate digest.
//! 5. **sign** (optional): each stable digest is signed in its stable repository,
//!    in the formats of [`PromoteOptions::sign_format`] ([`crate::cosign`]).
//!
//! A run that stops anywhere leaves the journal open: running the same plan
//! again finishes it with the digests the journal pinned (even if a candidate
//! tag moved since), and [`revert`] puts back the digests recorded in step 1.
//! The result never says `complete` unless step 4 saw every tag right.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use lkg_core::state_file;
use serde::{Deserialize, Serialize};

use crate::copy::{CopiedReferrer, REFERRER_DEPTH, copy_by_digest, copy_referrers};
use crate::cosign::{self, SignFormat};
use crate::sign::SigningKey;
use crate::{Client, Digest, Reference, RegistryError};

/// One artifact of a plan: `CANDIDATE=STABLE[,EXTRA_TAG...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// What to promote (a tag or a digest).
    pub candidate: Reference,
    /// Where: the stable repository and tag.
    pub stable: Reference,
    /// More tags in the stable repository to point at the same digest (an
    /// audit tag such as `stable-20260522`).
    pub extra_tags: Vec<String>,
}

impl Artifact {
    /// Every tag this artifact moves, stable first.
    pub fn tags(&self) -> Vec<String> {
        let mut tags = vec![self.stable.tag().unwrap_or("latest").to_owned()];
        for t in &self.extra_tags {
            if !tags.contains(t) {
                tags.push(t.clone());
            }
        }
        tags
    }

    fn spec(&self) -> String {
        format!(
            "{}={}",
            self.candidate,
            std::iter::once(self.stable.to_string())
                .chain(self.extra_tags.iter().cloned())
                .collect::<Vec<_>>()
                .join(",")
        )
    }
}

impl FromStr for Artifact {
    type Err = RegistryError;

    fn from_str(s: &str) -> Result<Artifact, RegistryError> {
        let bad = |reason: &str| RegistryError::InvalidReference { input: s.to_owned(), reason: reason.to_owned() };
        let (candidate, rest) = s.split_once('=').ok_or_else(|| bad("expected CANDIDATE=STABLE[,EXTRA_TAG...]"))?;
        let mut parts = rest.split(',');
        let stable: Reference = parts.next().unwrap_or_default().parse()?;
        if stable.digest().is_some() {
            return Err(bad("the stable side is a tag, not a digest"));
        }
        let mut extra_tags = Vec::new();
        for t in parts.map(str::trim).filter(|t| !t.is_empty()) {
            // Validate with the reference grammar.
            let tagged: Reference = format!("{}/{}:{t}", stable.registry(), stable.repository()).parse()?;
            extra_tags.push(tagged.tag().unwrap_or(t).to_owned());
        }
        Ok(Artifact { candidate: candidate.parse()?, stable, extra_tags })
    }
}

/// The artifacts to promote together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromotionPlan {
    /// The artifacts, in order.
    pub artifacts: Vec<Artifact>,
}

impl PromotionPlan {
    /// A short stable id of the plan: the journal's file name.
    pub fn key(&self) -> String {
        let text: Vec<String> = self.artifacts.iter().map(Artifact::spec).collect();
        Digest::sha256(text.join("\n").as_bytes()).hex()[..16].to_owned()
    }

    /// The journal file of this plan under `state_dir`.
    pub fn journal_path(&self, state_dir: &Path) -> PathBuf {
        state_dir.join("registry/promotions").join(format!("{}.json", self.key()))
    }
}

/// How to run a promotion.
#[derive(Debug, Clone)]
pub struct PromoteOptions {
    /// The state directory (the journal lives under it).
    pub state_dir: PathBuf,
    /// Sign each stable digest with this key.
    pub sign_key: Option<SigningKey>,
    /// In which formats to sign (both by default: cosign 2 and 3 verifiers
    /// each find theirs).
    pub sign_format: SignFormat,
    /// Carry each candidate's referrers to its stable repository.
    pub referrers: bool,
}

impl PromoteOptions {
    /// Journal under `state_dir`, no signing, referrers carried.
    pub fn new(state_dir: impl Into<PathBuf>) -> PromoteOptions {
        PromoteOptions { state_dir: state_dir.into(), sign_key: None, sign_format: SignFormat::Both, referrers: true }
    }
}

/// The step a journal has reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Candidates resolved, previous digests recorded.
    Planned,
    /// Every candidate is in its stable repository by digest.
    Copied,
    /// Every tag was written.
    TagsMoved,
    /// Every tag was read back right.
    Verified,
    /// Done (signed if asked).
    Complete,
    /// A revert started.
    Reverting,
    /// The previous digests are back.
    Reverted,
}

/// A tag's record in the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagRecord {
    /// The tag in the stable repository.
    pub tag: String,
    /// Its digest before the promotion (`None`: it did not exist).
    pub previous: Option<Digest>,
    /// Whether this promotion wrote it.
    pub moved: bool,
}

/// An artifact's record in the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactRecord {
    /// The candidate as given.
    pub source: String,
    /// The stable reference.
    pub stable: String,
    /// The candidate digest, pinned at planning.
    pub digest: Digest,
    /// The tags, stable first.
    pub tags: Vec<TagRecord>,
    /// Copied into the stable repository (with its referrers, when asked).
    pub copied: bool,
    /// The referrers copied with it.
    #[serde(default)]
    pub referrers: Vec<CopiedReferrer>,
    /// Signed in the stable repository.
    pub signed: bool,
}

/// The journal of one plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// Format version (1).
    pub version: u32,
    /// [`PromotionPlan::key`].
    pub plan_key: String,
    /// The step reached.
    pub phase: Phase,
    /// When the promotion was planned.
    pub started_at: String,
    /// Last write.
    pub updated_at: String,
    /// Runs so far (1 + resumptions).
    pub runs: u32,
    /// Blob bytes uploaded over all runs.
    pub bytes_uploaded: u64,
    /// The artifacts.
    pub artifacts: Vec<ArtifactRecord>,
}

impl Journal {
    /// Reads a journal; `None` when there is none.
    pub fn load(path: &Path) -> Result<Option<Journal>, PromoteError> {
        let journal_error = |e| PromoteError::Journal { path: path.to_owned(), reason: lkg_core::render_chain(&e) };
        let Some(bytes) = state_file::read(path).map_err(journal_error)? else { return Ok(None) };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| PromoteError::Journal { path: path.to_owned(), reason: format!("malformed: {e}") })
    }

    /// Writes atomically through `lkg_core::state_file`: a temp file, fsync,
    /// rename, fsync of the directory; any failure of these is an error.
    pub fn save(&mut self, path: &Path) -> Result<(), PromoteError> {
        self.updated_at = jiff::Timestamp::now().to_string();
        state_file::write_json(path, self)
            .map_err(|e| PromoteError::Journal { path: path.to_owned(), reason: lkg_core::render_chain(&e) })
    }

    fn is_open(&self) -> bool {
        !matches!(self.phase, Phase::Complete | Phase::Reverted)
    }

    fn any_moved(&self) -> bool {
        self.artifacts.iter().any(|a| a.tags.iter().any(|t| t.moved))
    }
}

/// The overall state of stable after a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromotionState {
    /// Every tag names its target digest, verified.
    Complete,
    /// Some tags moved and some did not (or verification or signing is
    /// missing): re-run to finish, or revert.
    Partial,
    /// No stable tag changed.
    Unchanged,
}

/// How the run ended, for exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Done (complete or nothing to do): exit 0.
    Ok,
    /// Stopped half-way: exit 4.
    Partial,
    /// A tag does not name the digest it should after moving: exit 1.
    VerificationFailed,
    /// The registry could not be reached (or refused us) before any tag moved: exit 5.
    Unreachable,
    /// The registry refused the work before any tag moved: exit 1.
    Failed,
}

/// A tag that does not name what it should.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TagMismatch {
    /// `registry/repo:tag`.
    pub tag: String,
    /// The digest it should name.
    pub expected: Option<Digest>,
    /// The digest it names (`None`: missing).
    pub actual: Option<Digest>,
}

/// One artifact in a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArtifactReport {
    /// The candidate as given.
    pub source: String,
    /// The stable reference.
    pub stable: String,
    /// The candidate digest the promotion pinned.
    pub digest: Digest,
    /// The stable tag's digest before the promotion.
    pub previous_digest: Option<Digest>,
    /// Tags written by this promotion (all runs), or put back by a revert.
    pub tags_moved: Vec<String>,
    /// Every tag with its previous digest.
    pub tags: Vec<TagRecord>,
    /// The candidate's referrers now in the stable repository.
    pub referrers: Vec<CopiedReferrer>,
    /// Signed in the stable repository.
    pub signed: bool,
}

/// The result of a promotion or revert run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PromotionReport {
    /// `promote` or `revert`.
    pub action: &'static str,
    /// The state of stable.
    pub state: PromotionState,
    /// How the run ended.
    pub outcome: Outcome,
    /// Whether this run finished a journal an earlier run left open.
    pub resumed: bool,
    /// The artifacts.
    pub artifacts: Vec<ArtifactReport>,
    /// Blob bytes uploaded (all runs of this journal).
    pub bytes_uploaded: u64,
    /// Tags found wrong by verification.
    pub mismatches: Vec<TagMismatch>,
    /// What stopped the run, if anything.
    pub error: Option<String>,
    /// Things the operator should know that do not change the state (a tag
    /// a revert could not delete).
    pub notes: Vec<String>,
    /// The journal file.
    pub journal: PathBuf,
}

/// Why a promotion could not start (nothing was touched).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PromoteError {
    /// A candidate does not exist: the plan fails closed.
    #[error("candidate {candidate} not found: nothing was promoted (fail closed)")]
    CandidateMissing {
        /// The candidate.
        candidate: String,
    },
    /// The plan is empty or repeats a stable tag.
    #[error("invalid promotion plan: {0}")]
    InvalidPlan(String),
    /// Another run holds this plan's lock.
    #[error("another promotion of this plan is running (lock {})", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// `--revert` without a journal.
    #[error("nothing to revert: no journal for this plan at {}", path.display())]
    NoJournal {
        /// Where the journal would be.
        path: PathBuf,
    },
    /// The journal could not be read or written.
    #[error("promotion journal {}: {reason}", path.display())]
    Journal {
        /// The journal.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The registry failed before anything was touched.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

impl lkg_core::Classify for PromoteError {
    fn kind(&self) -> lkg_core::FailureKind {
        use lkg_core::FailureKind;
        match self {
            // Nothing was touched: fix the plan or the candidates.
            PromoteError::CandidateMissing { .. } | PromoteError::InvalidPlan(_) | PromoteError::NoJournal { .. } => {
                FailureKind::Input
            }
            PromoteError::Locked { .. } | PromoteError::Journal { .. } => FailureKind::Environment,
            PromoteError::Registry(e) => lkg_core::Classify::kind(e),
        }
    }
}

struct PlanLock {
    _file: std::fs::File,
}

#[allow(clippy::disallowed_methods, reason = "its errors carry the path as a field")]
fn lock_plan(plan: &PromotionPlan, state_dir: &Path) -> Result<(PathBuf, PlanLock), PromoteError> {
    let journal = plan.journal_path(state_dir);
    let dir = journal.parent().expect("journal path has a parent");
    fs_err::create_dir_all(dir).map_err(|e| PromoteError::Journal { path: journal.clone(), reason: e.to_string() })?;
    let lock_path = journal.with_extension("lock");
    let file = std::fs::File::create(&lock_path)
        .map_err(|e| PromoteError::Journal { path: lock_path.clone(), reason: e.to_string() })?;
    match file.try_lock() {
        Ok(()) => Ok((journal, PlanLock { _file: file })),
        Err(std::fs::TryLockError::WouldBlock) => Err(PromoteError::Locked { path: lock_path }),
        Err(std::fs::TryLockError::Error(e)) => Err(PromoteError::Journal { path: lock_path, reason: e.to_string() }),
    }
}

fn validate(plan: &PromotionPlan) -> Result<(), PromoteError> {
    if plan.artifacts.is_empty() {
        return Err(PromoteError::InvalidPlan("no --artifact given".into()));
    }
    let mut seen = std::collections::HashSet::new();
    for a in &plan.artifacts {
        for t in a.tags() {
            let key = format!("{}/{}:{t}", a.stable.api_host(), a.stable.repository());
            if !seen.insert(key.clone()) {
                return Err(PromoteError::InvalidPlan(format!("{key} is promoted twice")));
            }
        }
    }
    Ok(())
}

async fn plan_fresh(client: &Client, plan: &PromotionPlan) -> Result<Journal, PromoteError> {
    let mut artifacts = Vec::new();
    // Every candidate first: one missing stops the plan before any write.
    let mut digests = Vec::new();
    for a in &plan.artifacts {
        match client.head_manifest(&a.candidate).await? {
            Some(head) => {
                if let Some(pinned) = a.candidate.digest()
                    && *pinned != head.digest
                {
                    return Err(RegistryError::DigestMismatch {
                        what: format!("candidate {}", a.candidate),
                        expected: pinned.clone(),
                        actual: head.digest,
                    }
                    .into());
                }
                digests.push(head.digest);
            }
            None => return Err(PromoteError::CandidateMissing { candidate: a.candidate.to_string() }),
        }
    }
    for (a, digest) in plan.artifacts.iter().zip(digests) {
        let mut tags = Vec::new();
        for tag in a.tags() {
            let previous = client.head_manifest(&a.stable.at_tag(&tag)).await?.map(|h| h.digest);
            tags.push(TagRecord { tag, previous, moved: false });
        }
        artifacts.push(ArtifactRecord {
            source: a.candidate.to_string(),
            stable: a.stable.to_string(),
            digest,
            tags,
            copied: false,
            referrers: Vec::new(),
            signed: false,
        });
    }
    let now = jiff::Timestamp::now().to_string();
    Ok(Journal {
        version: 1,
        plan_key: plan.key(),
        phase: Phase::Planned,
        started_at: now.clone(),
        updated_at: now,
        runs: 0,
        bytes_uploaded: 0,
        artifacts,
    })
}

enum StepError {
    Registry(RegistryError),
    Verification(Vec<TagMismatch>),
    Journal(PromoteError),
}

impl From<RegistryError> for StepError {
    fn from(e: RegistryError) -> StepError {
        StepError::Registry(e)
    }
}

impl From<PromoteError> for StepError {
    fn from(e: PromoteError) -> StepError {
        StepError::Journal(e)
    }
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StepError::Registry(e) => f.write_str(&lkg_core::render_chain(e)),
            StepError::Journal(e) => f.write_str(&lkg_core::render_chain(e)),
            StepError::Verification(m) => {
                write!(f, "verification failed: ")?;
                let parts: Vec<String> = m
                    .iter()
                    .map(|m| {
                        format!(
                            "{} names {} instead of {}",
                            m.tag,
                            m.actual.as_ref().map_or("nothing".to_owned(), ToString::to_string),
                            m.expected.as_ref().map_or("nothing".to_owned(), ToString::to_string)
                        )
                    })
                    .collect();
                write!(f, "{}", parts.join("; "))
            }
        }
    }
}

/// Copies one candidate (and its referrers, if asked) into its stable
/// repository by digest: the manifest, the blob bytes uploaded, the
/// referrers carried.
async fn copy_artifact(
    client: &Client,
    a: &Artifact,
    digest: &Digest,
    referrers: bool,
) -> Result<(crate::Manifest, u64, Vec<CopiedReferrer>), RegistryError> {
    let src = a.candidate.at_digest(digest);
    let dst = a.stable.at_digest(digest);
    let manifest = client.get_manifest(&src).await?;
    let mut bytes = copy_by_digest(client, &src, &dst, &manifest).await?.bytes_uploaded;
    let mut carried = Vec::new();
    if referrers {
        let report = copy_referrers(client, &src, &dst, digest, REFERRER_DEPTH).await?;
        bytes += report.bytes_uploaded;
        carried = report.referrers;
    }
    Ok((manifest, bytes, carried))
}

async fn run_steps(
    client: &Client,
    plan: &PromotionPlan,
    journal: &mut Journal,
    path: &Path,
    options: &PromoteOptions,
) -> Result<(), StepError> {
    let key = options.sign_key.as_ref();
    // Manifests fetched while copying, reused to move the tags.
    let mut manifests: Vec<Option<crate::Manifest>> = vec![None; plan.artifacts.len()];
    if journal.phase == Phase::Planned {
        // The artifacts copy concurrently; each success is journalled even
        // when another fails.
        let pending: Vec<usize> = (0..plan.artifacts.len()).filter(|&i| !journal.artifacts[i].copied).collect();
        let copies = futures_util::future::join_all(
            pending
                .iter()
                .map(|&i| copy_artifact(client, &plan.artifacts[i], &journal.artifacts[i].digest, options.referrers)),
        )
        .await;
        let mut first_error = None;
        for (i, result) in pending.into_iter().zip(copies) {
            match result {
                Ok((manifest, bytes, referrers)) => {
                    journal.bytes_uploaded += bytes;
                    journal.artifacts[i].copied = true;
                    journal.artifacts[i].referrers = referrers;
                    manifests[i] = Some(manifest);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            journal.save(path)?;
            return Err(e.into());
        }
        journal.phase = Phase::Copied;
        journal.save(path)?;
    }
    if journal.phase == Phase::Copied {
        for (i, a) in plan.artifacts.iter().enumerate() {
            let digest = journal.artifacts[i].digest.clone();
            for t in 0..journal.artifacts[i].tags.len() {
                let record = &journal.artifacts[i].tags[t];
                if record.moved || record.previous.as_ref() == Some(&digest) {
                    continue;
                }
                let tag = record.tag.clone();
                if manifests[i].is_none() {
                    manifests[i] = Some(client.get_manifest(&a.stable.at_digest(&digest)).await?);
                }
                let m = manifests[i].as_ref().expect("fetched above");
                client.put_manifest(&a.stable, &tag, m).await?;
                journal.artifacts[i].tags[t].moved = true;
                journal.save(path)?;
            }
        }
        journal.phase = Phase::TagsMoved;
        journal.save(path)?;
    }
    if journal.phase == Phase::TagsMoved {
        let checks: Vec<(Reference, Digest)> = plan
            .artifacts
            .iter()
            .zip(&journal.artifacts)
            .flat_map(|(a, record)| record.tags.iter().map(|t| (a.stable.at_tag(&t.tag), record.digest.clone())))
            .collect();
        let heads = futures_util::future::join_all(checks.iter().map(|(r, _)| client.head_manifest(r))).await;
        let mut mismatches = Vec::new();
        for ((r, expected), head) in checks.into_iter().zip(heads) {
            let actual = head?.map(|h| h.digest);
            if actual.as_ref() != Some(&expected) {
                mismatches.push(TagMismatch { tag: r.to_string(), expected: Some(expected), actual });
            }
        }
        if !mismatches.is_empty() {
            return Err(StepError::Verification(mismatches));
        }
        journal.phase = Phase::Verified;
        journal.save(path)?;
    }
    if journal.phase == Phase::Verified {
        if let Some(key) = key {
            for (i, a) in plan.artifacts.iter().enumerate() {
                if journal.artifacts[i].signed {
                    continue;
                }
                cosign::sign(client, &a.stable.at_digest(&journal.artifacts[i].digest), key, options.sign_format)
                    .await?;
                journal.artifacts[i].signed = true;
                journal.save(path)?;
            }
        }
        journal.phase = Phase::Complete;
        journal.save(path)?;
    }
    Ok(())
}

fn report(
    action: &'static str,
    journal: &Journal,
    path: &Path,
    resumed: bool,
    failure: Option<StepError>,
) -> PromotionReport {
    let any_moved = journal.any_moved();
    let state = match (journal.phase, any_moved) {
        (Phase::Complete, true) => PromotionState::Complete,
        (_, true) => PromotionState::Partial,
        (_, false) => PromotionState::Unchanged,
    };
    let outcome = match &failure {
        None => Outcome::Ok,
        Some(StepError::Verification(_)) => Outcome::VerificationFailed,
        Some(_) if any_moved => Outcome::Partial,
        Some(StepError::Journal(_)) => Outcome::Unreachable,
        Some(StepError::Registry(e)) if e.is_environment() => Outcome::Unreachable,
        Some(_) => Outcome::Failed,
    };
    // Stable untouched, but signing missing is still a promotion left to finish.
    let outcome = if outcome == Outcome::Ok && journal.phase != Phase::Complete { Outcome::Partial } else { outcome };
    PromotionReport {
        action,
        state,
        outcome,
        resumed,
        artifacts: journal
            .artifacts
            .iter()
            .map(|a| ArtifactReport {
                source: a.source.clone(),
                stable: a.stable.clone(),
                digest: a.digest.clone(),
                previous_digest: a.tags.first().and_then(|t| t.previous.clone()),
                tags_moved: a.tags.iter().filter(|t| t.moved).map(|t| t.tag.clone()).collect(),
                tags: a.tags.clone(),
                referrers: a.referrers.clone(),
                signed: a.signed,
            })
            .collect(),
        bytes_uploaded: journal.bytes_uploaded,
        mismatches: match &failure {
            Some(StepError::Verification(m)) => m.clone(),
            _ => Vec::new(),
        },
        error: failure.map(|f| f.to_string()),
        notes: Vec::new(),
        journal: path.to_owned(),
    }
}

/// Promotes `plan`, or finishes the promotion of `plan` an earlier run left
/// open. Errors mean nothing was touched; everything after the first write
/// is in the report (with its [`Outcome`]).
pub async fn promote(
    client: &Client,
    plan: &PromotionPlan,
    options: &PromoteOptions,
) -> Result<PromotionReport, PromoteError> {
    validate(plan)?;
    let (path, _lock) = lock_plan(plan, &options.state_dir)?;
    let existing = Journal::load(&path)?;
    let (mut journal, resumed) = match existing {
        Some(j)
            if j.is_open()
                && j.phase != Phase::Reverting
                && j.plan_key == plan.key()
                && j.artifacts.len() == plan.artifacts.len() =>
        {
            (j, true)
        }
        Some(j) if j.phase == Phase::Reverting => {
            return Err(PromoteError::InvalidPlan(format!(
                "a revert of this plan is unfinished ({}): run it again with --revert first",
                path.display()
            )));
        }
        Some(done) => {
            let fresh = plan_fresh(client, plan).await?;
            let same_digests = done.phase == Phase::Complete
                && fresh.artifacts.len() == done.artifacts.len()
                && fresh.artifacts.iter().zip(&done.artifacts).all(|(f, d)| f.digest == d.digest);
            let nothing_to_move =
                fresh.artifacts.iter().all(|a| a.tags.iter().all(|t| t.previous.as_ref() == Some(&a.digest)));
            if same_digests && nothing_to_move {
                // Already promoted: keep the journal of the run that moved the
                // tags, so --revert still knows the stable digests before it.
                return noop_run(client, plan, fresh, &path, options).await;
            }
            (fresh, false)
        }
        None => (plan_fresh(client, plan).await?, false),
    };
    journal.runs += 1;
    journal.save(&path)?;
    let failure = run_steps(client, plan, &mut journal, &path, options).await.err();
    if let Some(StepError::Journal(e)) = failure {
        return Err(e);
    }
    Ok(report("promote", &journal, &path, resumed, failure))
}

async fn noop_run(
    client: &Client,
    plan: &PromotionPlan,
    mut fresh: Journal,
    path: &Path,
    options: &PromoteOptions,
) -> Result<PromotionReport, PromoteError> {
    let scratch = path.with_extension("noop.json");
    fresh.runs = 1;
    let failure = run_steps(client, plan, &mut fresh, &scratch, options).await.err();
    let _ = fs_err::remove_file(&scratch);
    if let Some(StepError::Journal(e)) = failure {
        return Err(e);
    }
    Ok(report("promote", &fresh, path, false, failure))
}

/// Puts back the stable digests the journal of `plan` recorded before it
/// moved anything. Tags that did not exist before are deleted where the
/// registry allows it, and reported where it does not.
#[allow(clippy::too_many_lines)] // restore, then verify, then report: one sequence
pub async fn revert(
    client: &Client,
    plan: &PromotionPlan,
    options: &PromoteOptions,
) -> Result<PromotionReport, PromoteError> {
    validate(plan)?;
    let (path, _lock) = lock_plan(plan, &options.state_dir)?;
    let Some(mut journal) = Journal::load(&path)? else {
        return Err(PromoteError::NoJournal { path });
    };
    if journal.phase == Phase::Reverted {
        let mut r = report("revert", &journal, &path, false, None);
        r.state = PromotionState::Unchanged;
        return Ok(r);
    }
    journal.phase = Phase::Reverting;
    journal.runs += 1;
    journal.save(&path)?;
    let mut reverted: Vec<Vec<String>> = vec![Vec::new(); journal.artifacts.len()];
    let mut problems: Vec<String> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let mut mismatches = Vec::new();
    let mut unreachable = None;
    for (i, a) in plan.artifacts.iter().enumerate() {
        let tags = journal.artifacts[i].tags.clone();
        for t in &tags {
            let tag_ref = a.stable.at_tag(&t.tag);
            let step = async {
                let current = client.head_manifest(&tag_ref).await?.map(|h| h.digest);
                if current == t.previous {
                    return Ok::<Option<bool>, RegistryError>(Some(false));
                }
                match &t.previous {
                    Some(previous) => {
                        let manifest = client.get_manifest(&a.stable.at_digest(previous)).await?;
                        client.put_manifest(&a.stable, &t.tag, &manifest).await?;
                    }
                    // Never delete by digest here: that would remove the
                    // candidate's manifest for every tag naming it.
                    None => {
                        if let Err(e) = client.delete_manifest(&a.stable, &t.tag).await {
                            if e.is_environment() {
                                return Err(e);
                            }
                            return Ok(None);
                        }
                    }
                }
                Ok(Some(true))
            };
            match step.await.map(|r| r.unwrap_or(false)) {
                Ok(true) => reverted[i].push(t.tag.clone()),
                Ok(false) => {}
                Err(e) if e.is_environment() => {
                    unreachable = Some(e);
                    break;
                }
                Err(e) => problems.push(format!("{tag_ref}: {}", lkg_core::render_chain(&e))),
            }
        }
    }
    if unreachable.is_none() {
        for (i, a) in plan.artifacts.iter().enumerate() {
            for t in &journal.artifacts[i].tags {
                let tag_ref = a.stable.at_tag(&t.tag);
                match client.head_manifest(&tag_ref).await {
                    Ok(head) => {
                        let actual = head.map(|h| h.digest);
                        if t.previous.is_none() && actual.is_some() {
                            notes.push(format!(
                                "{tag_ref} did not exist before the promotion and this registry cannot delete a tag: it still names {}",
                                actual.as_ref().map_or(String::new(), ToString::to_string)
                            ));
                        } else if actual != t.previous {
                            mismatches.push(TagMismatch {
                                tag: tag_ref.to_string(),
                                expected: t.previous.clone(),
                                actual,
                            });
                        }
                    }
                    Err(e) => {
                        unreachable = Some(e);
                        break;
                    }
                }
            }
        }
    }
    let done = unreachable.is_none() && mismatches.is_empty();
    if done {
        journal.phase = Phase::Reverted;
        journal.save(&path)?;
    }
    let mut r = report("revert", &journal, &path, false, None);
    for (i, a) in r.artifacts.iter_mut().enumerate() {
        a.tags_moved.clone_from(&reverted[i]);
    }
    r.state = if done { PromotionState::Complete } else { PromotionState::Partial };
    r.outcome = match (&unreachable, done) {
        (_, true) => Outcome::Ok,
        (Some(_), _) => Outcome::Partial,
        (None, false) => Outcome::VerificationFailed,
    };
    r.mismatches = mismatches;
    r.notes = notes;
    let mut errors: Vec<String> = unreachable.map(|e| lkg_core::render_chain(&e)).into_iter().collect();
    errors.extend(problems);
    r.error = if errors.is_empty() { None } else { Some(errors.join("; ")) };
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_specs_parse() {
        let a: Artifact = "ghcr.io/o/img-candidate:43=ghcr.io/o/img:latest,stable-20260522".parse().unwrap();
        assert_eq!(a.candidate.to_string(), "ghcr.io/o/img-candidate:43");
        assert_eq!(a.tags(), ["latest", "stable-20260522"]);
        assert!("nocandidate".parse::<Artifact>().is_err());
        assert!(
            "a:1=b@sha256:0000000000000000000000000000000000000000000000000000000000000000"
                .parse::<Artifact>()
                .is_err()
        );
        assert!("a:1=b:2,-bad".parse::<Artifact>().is_err());
    }

    #[test]
    fn plan_keys_are_stable_and_distinct() {
        let p = |s: &[&str]| PromotionPlan { artifacts: s.iter().map(|a| a.parse().unwrap()).collect() };
        let a = p(&["r/a:c=r/a:latest", "r/b:c=r/b:main-43"]);
        assert_eq!(a.key(), p(&["r/a:c=r/a:latest", "r/b:c=r/b:main-43"]).key());
        assert_ne!(a.key(), p(&["r/a:c=r/a:latest"]).key());
        assert_eq!(a.key().len(), 16);
        assert!(validate(&p(&["r/a:c=r/a:latest", "r/b:c=r/a:latest"])).is_err(), "a tag promoted twice");
    }

    fn journal(phase: Phase, moved: &[bool]) -> Journal {
        let d = Digest::sha256(b"x");
        Journal {
            version: 1,
            plan_key: "k".into(),
            phase,
            started_at: String::new(),
            updated_at: String::new(),
            runs: 1,
            bytes_uploaded: 0,
            artifacts: vec![ArtifactRecord {
                source: "s".into(),
                stable: "t".into(),
                digest: d,
                tags: moved.iter().map(|m| TagRecord { tag: "t".into(), previous: None, moved: *m }).collect(),
                copied: true,
                referrers: Vec::new(),
                signed: false,
            }],
        }
    }

    #[test]
    fn a_report_is_complete_only_when_verified() {
        let p = Path::new("/j");
        let r = report("promote", &journal(Phase::Complete, &[true, true]), p, false, None);
        assert_eq!((r.state, r.outcome), (PromotionState::Complete, Outcome::Ok));
        let unreachable =
            || StepError::Registry(RegistryError::Unreachable { registry: "r".into(), reason: "down".into() });
        let r = report("promote", &journal(Phase::Copied, &[true, false]), p, false, Some(unreachable()));
        assert_eq!((r.state, r.outcome), (PromotionState::Partial, Outcome::Partial));
        let r = report("promote", &journal(Phase::Copied, &[false, false]), p, false, Some(unreachable()));
        assert_eq!((r.state, r.outcome), (PromotionState::Unchanged, Outcome::Unreachable));
        let r = report(
            "promote",
            &journal(Phase::TagsMoved, &[true, true]),
            p,
            false,
            Some(StepError::Verification(vec![])),
        );
        assert_eq!((r.state, r.outcome), (PromotionState::Partial, Outcome::VerificationFailed));
        let r = report("promote", &journal(Phase::Verified, &[true, true]), p, false, Some(unreachable()));
        assert_eq!((r.state, r.outcome), (PromotionState::Partial, Outcome::Partial), "signing missing");
        let r = report("promote", &journal(Phase::Complete, &[false]), p, false, None);
        assert_eq!((r.state, r.outcome), (PromotionState::Unchanged, Outcome::Ok));
    }
}
