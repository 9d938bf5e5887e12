//! Choose the version to test an upgrade from.
//!
//! Testing an upgrade means deploying a *base* version and upgrading it to
//! the candidate (the *head*). "The second-newest tag" is the wrong base
//! whenever the branch has moved past the newest tag: discourse's `main` was
//! at `0.8.1+3.5.0` while its newest tag was `0.7.0+3.3.1`, so that rule
//! tested an upgrade from `0.6.3+3.2.0`, two versions behind the one the
//! change would be merged onto.
//! `lkg-upgrade-base` resolves the base over a local git repository, in a
//! documented order, and records why each step was taken or passed over:
//!
//! 1. **override**: an explicit version or ref (`--override`);
//! 2. **last-green**: the canonical's version ([`lkg_canonical`]), unless it
//!    is the head's own version (or newer);
//! 3. **target-branch**: the tip of `main` (else `master`; `origin/` first),
//!    the predecessor a change merges onto, unless head *is* the tip or is
//!    behind it;
//! 4. **older-tag**: the newest release tag strictly older than head;
//! 5. **skip**: nothing to upgrade from.
//!
//! Steps 2–4 can be reordered or dropped ([`Order`]). The result is a
//! [`BasePlan`]. Versions are `<recipe-semver>+<app-version>` tags with a
//! total order ([`RecipeVersion`]); other tags are skipped with a warning.
//! Base-only overlays (`previous/<version>/`) apply only to the version they
//! declare ([`overlay`]).
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let repo = git2::Repository::init(dir.path())?;
//! # let sig = git2::Signature::now("t", "t@example.net")?;
//! # let tree = repo.find_tree(repo.index()?.write_tree()?)?;
//! # let mut parent: Option<git2::Oid> = None;
//! # for tag in ["0.6.3+3.2.0", "0.7.0+3.3.1", ""] {
//! #     let parents: Vec<git2::Commit<'_>> = parent.map(|p| repo.find_commit(p)).transpose()?.into_iter().collect();
//! #     let refs: Vec<&git2::Commit<'_>> = parents.iter().collect();
//! #     let id = repo.commit(Some("refs/heads/main"), &sig, &sig, "c", &tree, &refs)?;
//! #     if !tag.is_empty() { repo.tag_lightweight(tag, &repo.find_object(id, None)?, false)?; }
//! #     parent = Some(id);
//! # }
//! # let path = dir.path();
//! use lkg_upgrade_base::{BaseKind, Inputs, resolve};
//!
//! // A repository whose `main` is one commit past its newest tag 0.7.0+3.3.1,
//! // and a run on main's tip, version 0.8.1+3.5.0.
//! let plan = resolve(path, &Inputs {
//!     head_version: Some("0.8.1+3.5.0".parse()?),
//!     ..Inputs::new("main")
//! })?;
//! // Head is the tip of main itself, so the newest older tag is the base,
//! // never a same-version no-op.
//! assert_eq!((plan.kind, plan.value.as_deref()), (BaseKind::Version, Some("0.7.0+3.3.1")));
//! # Ok(()) }
//! ```
//!
//! # Limitations
//!
//! - Local repositories only (git2 without network transports): fetch first.
//! - In a shallow clone (or behind grafts), history behind the cut is
//!   unknown: tags there are missing and ancestry questions that reach the
//!   cut are answered "cannot tell" (the step says so) rather than guessed.
//!   An object missing anywhere else means the repository is damaged:
//!   [`resolve`] fails with [`RepoError::Damaged`] naming it.
//! - Only tags named exactly `<recipe-semver>+<app-version>` are versions;
//!   a prefix such as `v` or `release/` makes a tag a non-version.
//! - The target branch is looked up under the remote `origin` only.
#![cfg_attr(test, allow(clippy::disallowed_methods, reason = "unit tests write and read their fixtures"))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod overlay;
mod plan;
mod repo;
mod report;

use std::path::Path;

use lkg_canonical::{AppName, Canonicals, StoreError};

pub use plan::{
    Ancestry, BaseKind, BasePlan, BranchTip, Facts, Graph, HeadInfo, LastGreen, Order, OrderError, Outcome, Override,
    Request, Source, Step, Tag, Unreadable, plan,
};
pub use repo::{GitRepo, RepoError};
pub use report::overlays_report;
// The version grammar lives in lkg-canonical (whose records hold versions),
// so that crates which order versions need not build git2; re-exported here.
pub use lkg_canonical::{MajorBump, MajorChange, RecipeVersion, VersionError, major_bump};

/// What to resolve: the head under test and the caller's choices.
///
/// Build it with [`Inputs::new`] and struct update syntax
/// (`Inputs { head_version: Some(v), ..Inputs::new("HEAD") }`).
#[derive(Debug, Clone)]
pub struct Inputs {
    /// The head revision: a branch, tag, commit or `HEAD`.
    pub head: String,
    /// The branch a change merges onto (`main` falls back to `master`).
    pub target_branch: String,
    /// An explicit base: a version tag, or any revision.
    pub override_base: Option<String>,
    /// The last-green version, e.g. from [`last_green_from_canonical`].
    pub last_green: Option<LastGreen>,
    /// The head's version when no version tag is at head.
    pub head_version: Option<RecipeVersion>,
    /// The middle steps and their order.
    pub order: Order,
}

impl Inputs {
    /// Defaults for a run on `head`: target branch `main`, default order, no
    /// override, no last-green.
    pub fn new(head: &str) -> Inputs {
        Inputs {
            head: head.to_owned(),
            target_branch: "main".to_owned(),
            override_base: None,
            last_green: None,
            head_version: None,
            order: Order::default(),
        }
    }
}

/// Opens the repository at `repo`, reads its facts and plans the base.
///
/// A repository missing an object that its history should hold is an error
/// ([`RepoError::Damaged`]), never a plan: only a shallow clone's or a
/// graft's cut makes a step "cannot tell".
pub fn resolve(repo: &Path, inputs: &Inputs) -> Result<BasePlan, RepoError> {
    let git = GitRepo::open(repo)?;
    let facts = git.facts(&inputs.head, &inputs.target_branch)?;
    let override_base = inputs.override_base.as_deref().map(|v| git.resolve_override(v)).transpose()?;
    let request = Request {
        override_base,
        last_green: inputs.last_green.clone(),
        head_version: inputs.head_version.clone(),
        order: inputs.order.clone(),
    };
    plan(&facts, &git, &request).map_err(|e| RepoError::Damaged {
        path: repo.to_owned(),
        object: e.object,
        detail: e.detail,
    })
}

/// The last-green version of `app`: the version of its canonical record
/// under `state_dir` (`None` if it has no canonical).
pub fn last_green_from_canonical(state_dir: &Path, app: &AppName) -> Result<Option<LastGreen>, StoreError> {
    let canonicals = Canonicals::new(state_dir);
    Ok(canonicals.get(app)?.map(|record| LastGreen {
        version: record.version,
        commit: Some(record.commit),
        from: format!("the canonical of {app}"),
    }))
}

// The README's example is compiled and run with the doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExample;
