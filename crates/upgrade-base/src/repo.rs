//! Reading the facts the plan needs from a local repository, with git2.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use git2::{ObjectType, Oid, Repository};

use crate::plan::{Ancestry, BaseKind, BranchTip, Facts, Graph, Override, Tag};
use crate::version::RecipeVersion;

/// Why the repository could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepoError {
    /// The path is not a git repository.
    #[error("{path} is not a git repository (bare or with a work tree): {source}")]
    NotARepository {
        /// The path given.
        path: PathBuf,
        /// git2's reason.
        #[source]
        source: git2::Error,
    },
    /// The head revision does not resolve to a commit.
    #[error("--head {rev:?} does not name a commit in {path}: {source}")]
    BadHead {
        /// The revision given.
        rev: String,
        /// The repository.
        path: PathBuf,
        /// git2's reason.
        #[source]
        source: git2::Error,
    },
    /// The override names neither a tag nor a revision.
    #[error(
        "--override {value:?} is neither a tag nor a revision in {path}; give an existing version tag, branch or commit"
    )]
    OverrideNotFound {
        /// The override given.
        value: String,
        /// The repository.
        path: PathBuf,
    },
    /// Reading refs or objects failed.
    #[error("cannot {what} in {path}: {source}")]
    Git {
        /// What lkg was doing.
        what: &'static str,
        /// The repository.
        path: PathBuf,
        /// git2's error.
        #[source]
        source: git2::Error,
    },
}

/// A local repository, opened with git2 (bare or not).
pub struct GitRepo {
    repo: Repository,
    path: PathBuf,
    shallow: HashSet<Oid>,
}

impl std::fmt::Debug for GitRepo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitRepo")
            .field("path", &self.path)
            .field("shallow", &self.shallow.len())
            .finish_non_exhaustive()
    }
}

impl GitRepo {
    /// Opens the repository at `path` exactly (no search of parent
    /// directories): a bare repository or the top of a work tree.
    pub fn open(path: &Path) -> Result<GitRepo, RepoError> {
        let repo = Repository::open_ext(path, git2::RepositoryOpenFlags::NO_SEARCH, std::iter::empty::<&str>())
            .map_err(|source| RepoError::NotARepository { path: path.to_owned(), source })?;
        // A shallow clone lists its cut-off commits in `<gitdir>/shallow`:
        // their parents are missing, so history behind them is unknown.
        let shallow = std::fs::read_to_string(repo.path().join("shallow"))
            .map(|text| text.lines().filter_map(|l| Oid::from_str(l.trim()).ok()).collect())
            .unwrap_or_default();
        Ok(GitRepo { repo, path: path.to_owned(), shallow })
    }

    fn git(&self, what: &'static str) -> impl FnOnce(git2::Error) -> RepoError + '_ {
        move |source| RepoError::Git { what, path: self.path.clone(), source }
    }

    /// Reads head, the version tags and the target branch.
    ///
    /// Tags that are not `<recipe-semver>+<app-version>` and tags whose
    /// commit is missing are skipped, each with a warning. The target branch
    /// is looked up as `origin/<name>` (what the server has), then `<name>`;
    /// `main` falls back to `master` the same way.
    pub fn facts(&self, head_rev: &str, target_branch: &str) -> Result<Facts, RepoError> {
        let head = self
            .repo
            .revparse_single(head_rev)
            .and_then(|o| o.peel_to_commit())
            .map_err(|source| RepoError::BadHead { rev: head_rev.to_owned(), path: self.path.clone(), source })?;
        let mut warnings = Vec::new();
        if !self.shallow.is_empty() {
            warnings.push(format!(
                "{} is a shallow clone: history stops at {} commit(s), so older commits and their tags are missing; \
                 fetch with --unshallow for a complete answer",
                self.path.display(),
                self.shallow.len()
            ));
        }
        let odb = self.repo.odb().map_err(self.git("open the object database"))?;
        let mut tags = Vec::new();
        for reference in self.repo.references_glob("refs/tags/*").map_err(self.git("list the tags"))? {
            let reference = reference.map_err(self.git("read a tag"))?;
            let Some(name) = reference.name().and_then(|n| n.strip_prefix("refs/tags/")) else {
                warnings.push("a tag whose name is not UTF-8 was skipped".to_owned());
                continue;
            };
            let version = match RecipeVersion::parse(name) {
                Ok(version) => version,
                Err(e) => {
                    warnings.push(format!("tag {name} skipped: {e}"));
                    continue;
                }
            };
            match Self::tag_commit(&reference, &odb) {
                Ok(commit) => tags.push(Tag { version, commit: commit.to_string() }),
                Err(why) => warnings.push(format!("tag {name} skipped: {why}")),
            }
        }
        tags.sort_by(|a, b| a.version.cmp(&b.version));

        let mut names = vec![target_branch.to_owned()];
        if target_branch == "main" {
            names.push("master".to_owned());
        }
        let mut branches_tried = Vec::new();
        let mut branch = None;
        'names: for name in &names {
            for (short, full) in branch_refs(name) {
                branches_tried.push(short.clone());
                if let Ok(commit) = self.repo.find_reference(&full).and_then(|r| r.peel_to_commit()) {
                    let fallback_from = (name != target_branch).then(|| target_branch.to_owned());
                    branch = Some(BranchTip { name: short, commit: commit.id().to_string(), fallback_from });
                    break 'names;
                }
            }
        }
        Ok(Facts {
            head_rev: head_rev.to_owned(),
            head_commit: head.id().to_string(),
            tags,
            branches_tried,
            branch,
            shallow: !self.shallow.is_empty(),
            warnings,
        })
    }

    /// The commit a tag points to, reading as little as possible: thousands
    /// of tags are common, and parsing every commit they name would cost more
    /// than the rest of the resolution. `Err` says why there is none.
    fn tag_commit(reference: &git2::Reference<'_>, odb: &git2::Odb<'_>) -> Result<Oid, String> {
        let missing = |oid: Oid| {
            format!("it points to {oid}, which is not in this repository (a shallow clone, or objects not fetched)")
        };
        // `packed-refs` records the commit an annotated tag peels to (the
        // `^<oid>` lines `git pack-refs` writes): an index lookup confirms it
        // is here, and no object is read.
        if let Some(peeled) = reference.target_peel() {
            return if odb.exists(peeled) { Ok(peeled) } else { Err(missing(peeled)) };
        }
        let peel = || reference.peel_to_commit().map(|c| c.id()).map_err(|e| e.message().to_owned());
        let Some(target) = reference.target() else { return peel() };
        // A lightweight tag names its commit directly: the object header
        // confirms the type without inflating the commit.
        match odb.read_header(target) {
            Ok((_, ObjectType::Commit)) => Ok(target),
            Ok((_, ObjectType::Tag)) => peel(),
            Ok((_, other)) => Err(format!("it points to a {other}, not a commit")),
            Err(_) => Err(missing(target)),
        }
    }

    /// Resolves an override: a version tag (kind version), else any tag or
    /// revision (kind ref).
    pub fn resolve_override(&self, value: &str) -> Result<Override, RepoError> {
        if let Ok(commit) = self.repo.find_reference(&format!("refs/tags/{value}")).and_then(|r| r.peel_to_commit()) {
            let kind = if RecipeVersion::parse(value).is_ok() { BaseKind::Version } else { BaseKind::Ref };
            return Ok(Override { kind, value: value.to_owned(), commit: commit.id().to_string() });
        }
        match self.repo.revparse_single(value).and_then(|o| o.peel_to_commit()) {
            Ok(commit) if RecipeVersion::parse(value).is_err() => {
                Ok(Override { kind: BaseKind::Ref, value: value.to_owned(), commit: commit.id().to_string() })
            }
            _ => Err(RepoError::OverrideNotFound { value: value.to_owned(), path: self.path.clone() }),
        }
    }
}

/// `name` as a remote-tracking branch of `origin` first, then a local branch;
/// a name that already says `origin/...` or `refs/...` is taken as it is.
fn branch_refs(name: &str) -> Vec<(String, String)> {
    if name.starts_with("refs/") {
        return vec![(name.to_owned(), name.to_owned())];
    }
    if name.starts_with("origin/") {
        return vec![(name.to_owned(), format!("refs/remotes/{name}"))];
    }
    vec![
        (format!("origin/{name}"), format!("refs/remotes/origin/{name}")),
        (name.to_owned(), format!("refs/heads/{name}")),
    ]
}

impl Graph for GitRepo {
    fn is_ancestor(&self, ancestor: &str, descendant: &str) -> Ancestry {
        let (Ok(a), Ok(d)) = (Oid::from_str(ancestor), Oid::from_str(descendant)) else {
            return Ancestry::Unknown(format!("{ancestor} or {descendant} is not a commit id"));
        };
        if a == d {
            return Ancestry::No;
        }
        if self.shallow.is_empty() {
            return match self.repo.graph_descendant_of(d, a) {
                Ok(true) => Ancestry::Yes,
                Ok(false) => Ancestry::No,
                Err(e) => Ancestry::Unknown(e.message().to_owned()),
            };
        }
        // In a shallow clone "not found" is only a "no" if the walk never
        // reached the cut: beyond it, the ancestor may well be.
        match self.walk_shallow(a, d) {
            Ok(true) => Ancestry::Yes,
            Ok(false) => Ancestry::No,
            Err(why) => Ancestry::Unknown(why),
        }
    }

    fn find_commit(&self, id: &str) -> Option<String> {
        self.repo.revparse_single(id).and_then(|o| o.peel_to_commit()).ok().map(|c| c.id().to_string())
    }
}

impl GitRepo {
    fn walk_shallow(&self, ancestor: Oid, descendant: Oid) -> Result<bool, String> {
        let cut = || {
            format!(
                "the clone is shallow and its history stops before the answer (at {} commit(s)); fetch with --unshallow",
                self.shallow.len()
            )
        };
        let mut walk = self.repo.revwalk().map_err(|e| e.message().to_owned())?;
        walk.push(descendant).map_err(|e| e.message().to_owned())?;
        let mut reached_cut = false;
        for oid in walk {
            let oid = oid.map_err(|_| cut())?;
            if oid == ancestor {
                return Ok(true);
            }
            reached_cut |= self.shallow.contains(&oid);
        }
        if reached_cut { Err(cut()) } else { Ok(false) }
    }
}
