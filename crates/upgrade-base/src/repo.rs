//! Reading the facts the plan needs from a local repository, with git2.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use git2::{ObjectType, Oid, Repository};

use crate::plan::{Ancestry, BaseKind, BranchTip, Facts, Graph, Override, Tag, Unreadable};
use lkg_canonical::RecipeVersion;

/// Why the repository could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepoError {
    /// The path is not a git repository.
    #[error("{path} is not a git repository (bare or with a work tree)")]
    NotARepository {
        /// The path given.
        path: PathBuf,
        /// git2's reason.
        #[source]
        source: git2::Error,
    },
    /// The head revision does not resolve to a commit.
    #[error("--head {rev:?} does not name a commit in {path}")]
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
    /// An object that history should hold is missing or unreadable: the
    /// repository is damaged (a shallow clone's or a graft's cut is not this).
    #[error(
        "the repository {path} is damaged: {detail}; run `git -C {path} fsck` to see what is missing, then fetch \
         again or clone it anew"
    )]
    Damaged {
        /// The repository.
        path: PathBuf,
        /// The missing or unreadable object, when known.
        object: Option<String>,
        /// What could not be read.
        detail: String,
    },
    /// Reading refs or objects failed.
    #[error("cannot {what} in {path}")]
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
    /// Where history stops: the cut-off commits of a shallow clone and the
    /// commits whose parents a graft replaces. libgit2 walks no further (it
    /// reads `shallow` and `info/grafts` itself), so an ancestor may hide
    /// behind them; anything missing elsewhere is damage.
    cut: HashSet<Oid>,
    shallow: usize,
    grafts: usize,
}

impl std::fmt::Debug for GitRepo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitRepo")
            .field("path", &self.path)
            .field("shallow", &self.shallow)
            .field("grafts", &self.grafts)
            .finish_non_exhaustive()
    }
}

/// The commits listed first on each line of `<gitdir>/<file>`: `shallow`
/// lists one commit a line, `info/grafts` a commit and its new parents.
#[allow(
    clippy::disallowed_methods,
    reason = "a missing or unreadable file lists no commits; the error is not reported"
)]
fn listed_commits(gitdir: &Path, file: &str) -> Vec<Oid> {
    std::fs::read_to_string(gitdir.join(file))
        .map(|text| text.lines().filter_map(|l| Oid::from_str(l.split_whitespace().next()?).ok()).collect())
        .unwrap_or_default()
}

/// The object a libgit2 error says it could not find, if it names one
/// ("object not found - no match for id (<hex>)").
fn named_object(e: &git2::Error) -> Option<String> {
    e.message().split(|c: char| !c.is_ascii_hexdigit()).find(|w| w.len() == 40).map(str::to_owned)
}

impl GitRepo {
    /// Opens the repository at `path` exactly (no search of parent
    /// directories): a bare repository or the top of a work tree.
    pub fn open(path: &Path) -> Result<GitRepo, RepoError> {
        let repo = Repository::open_ext(path, git2::RepositoryOpenFlags::NO_SEARCH, std::iter::empty::<&str>())
            .map_err(|source| RepoError::NotARepository { path: path.to_owned(), source })?;
        // A shallow clone lists its cut-off commits in `<gitdir>/shallow`:
        // their parents are missing, so history behind them is unknown. A
        // graft hides a commit's real parents the same way.
        let shallow = listed_commits(repo.path(), "shallow");
        let grafts = listed_commits(repo.path(), "info/grafts");
        let (s, g) = (shallow.len(), grafts.len());
        Ok(GitRepo {
            repo,
            path: path.to_owned(),
            cut: shallow.into_iter().chain(grafts).collect(),
            shallow: s,
            grafts: g,
        })
    }

    /// Whether history stops somewhere (a shallow clone, grafts): objects
    /// behind the cut may be missing without the repository being damaged.
    fn history_is_cut(&self) -> bool {
        !self.cut.is_empty()
    }

    fn damaged(&self, object: Option<String>, detail: String) -> RepoError {
        RepoError::Damaged { path: self.path.clone(), object, detail }
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
        if self.shallow > 0 {
            warnings.push(format!(
                "{} is a shallow clone: history stops at {} commit(s), so older commits and their tags are missing; \
                 fetch with --unshallow for a complete answer",
                self.path.display(),
                self.shallow
            ));
        }
        if self.grafts > 0 {
            warnings.push(format!(
                "{} has grafts (info/grafts): the history of {} commit(s) is replaced, so what lies behind them is \
                 unknown here",
                self.path.display(),
                self.grafts
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
            match self.tag_commit(&reference, &odb) {
                Ok(commit) => tags.push(Tag { version, commit: commit.to_string() }),
                // Behind a shallow cut, a tag's commit is expected to be missing.
                Err(TagTarget::Missing(oid)) if self.history_is_cut() => warnings.push(format!(
                    "tag {name} skipped: it points to {oid}, which is not in this repository (history stops at a \
                     shallow cut or a graft)"
                )),
                Err(TagTarget::Missing(oid)) => {
                    return Err(self.damaged(
                        Some(oid.clone()),
                        format!("tag {name} points to {oid}, which is missing (the repository is not shallow)"),
                    ));
                }
                Err(TagTarget::Other(why)) => warnings.push(format!("tag {name} skipped: {why}")),
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
                let Ok(reference) = self.repo.find_reference(&full) else { continue };
                // A branch that exists but whose commit cannot be read is
                // damage, not a missing branch to fall back from.
                let commit = reference.peel_to_commit().map_err(|e| {
                    let target = reference.target().map(|t| t.to_string());
                    let at = target.as_deref().map(|t| format!(" at {t}")).unwrap_or_default();
                    self.damaged(target, format!("branch {short}{at} cannot be read: {}", e.message()))
                })?;
                let fallback_from = (name != target_branch).then(|| target_branch.to_owned());
                branch = Some(BranchTip { name: short, commit: commit.id().to_string(), fallback_from });
                break 'names;
            }
        }
        Ok(Facts {
            head_rev: head_rev.to_owned(),
            head_commit: head.id().to_string(),
            tags,
            branches_tried,
            branch,
            shallow: self.history_is_cut(),
            warnings,
        })
    }

    /// The commit a tag points to, reading as little as possible: thousands
    /// of tags are common, and parsing every commit they name would cost more
    /// than the rest of the resolution. `Err` says why there is none.
    fn tag_commit(&self, reference: &git2::Reference<'_>, odb: &git2::Odb<'_>) -> Result<Oid, TagTarget> {
        // `packed-refs` records the commit an annotated tag peels to (the
        // `^<oid>` lines `git pack-refs` writes): an index lookup confirms it
        // is here, and no object is read.
        if let Some(peeled) = reference.target_peel() {
            return if odb.exists(peeled) { Ok(peeled) } else { Err(TagTarget::Missing(peeled.to_string())) };
        }
        let Some(mut id) = reference.target() else {
            return Err(TagTarget::Other("it is a symbolic reference, not a tag".to_owned()));
        };
        // An object header tells the type without inflating a commit; only
        // annotated tags are read, one link of the chain at a time, so that a
        // missing object is named exactly.
        loop {
            match odb.read_header(id) {
                Ok((_, ObjectType::Commit)) => return Ok(id),
                Ok((_, ObjectType::Tag)) => {
                    id = self.repo.find_tag(id).map_err(|e| TagTarget::Other(e.message().to_owned()))?.target_id();
                }
                Ok((_, other)) => return Err(TagTarget::Other(format!("it points to a {other}, not a commit"))),
                Err(_) => return Err(TagTarget::Missing(id.to_string())),
            }
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

/// Why a tag has no commit.
enum TagTarget {
    /// An object it points to (or through) is not in the repository.
    Missing(String),
    /// It points to something that is not a commit.
    Other(String),
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
    fn is_ancestor(&self, ancestor: &str, descendant: &str) -> Result<Ancestry, Unreadable> {
        let (Ok(a), Ok(d)) = (Oid::from_str(ancestor), Oid::from_str(descendant)) else {
            return Ok(Ancestry::Unknown(format!("{ancestor} or {descendant} is not a commit id")));
        };
        if a == d {
            return Ok(Ancestry::No);
        }
        // libgit2 stops at a shallow cut or a graft by itself, so a failed
        // walk is a missing object in history that should be complete.
        let unreadable = |e: git2::Error| {
            let object = named_object(&e);
            let what = object.as_deref().map_or_else(|| "an object".to_owned(), |o| format!("object {o}"));
            Unreadable {
                detail: format!("the history of commit {d} needs {what}, which cannot be read: {}", e.message()),
                object,
            }
        };
        if !self.history_is_cut() {
            return Ok(if self.repo.graph_descendant_of(d, a).map_err(unreadable)? {
                Ancestry::Yes
            } else {
                Ancestry::No
            });
        }
        // Behind a cut "not found" is only a "no" if the walk never reached
        // the cut: beyond it, the ancestor may well be.
        let mut walk = self.repo.revwalk().map_err(unreadable)?;
        walk.push(d).map_err(unreadable)?;
        let mut reached_cut = false;
        for oid in walk {
            let oid = oid.map_err(unreadable)?;
            if oid == a {
                return Ok(Ancestry::Yes);
            }
            reached_cut |= self.cut.contains(&oid);
        }
        Ok(if reached_cut {
            Ancestry::Unknown(format!(
                "the clone is shallow or grafted and its history stops before the answer (at {} commit(s)); fetch \
                 with --unshallow",
                self.cut.len()
            ))
        } else {
            Ancestry::No
        })
    }

    fn find_commit(&self, id: &str) -> Option<String> {
        self.repo.revparse_single(id).and_then(|o| o.peel_to_commit()).ok().map(|c| c.id().to_string())
    }
}

impl lkg_core::Classify for RepoError {
    fn kind(&self) -> lkg_core::FailureKind {
        match self {
            // A damaged repository is the environment: repair or re-clone it and run again.
            RepoError::Git { .. } | RepoError::Damaged { .. } => lkg_core::FailureKind::Environment,
            _ => lkg_core::FailureKind::Input,
        }
    }
}
