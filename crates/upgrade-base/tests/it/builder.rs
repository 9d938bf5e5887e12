//! Repositories built with git2 for one test each. Commits use a fixed
//! author and clock, so their ids (and the snapshots that show them) are the
//! same on every run.

use std::path::Path;

use git2::{ObjectType, Oid, Repository, Signature, Time};

pub(crate) struct TestRepo {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) repo: Repository,
    clock: std::cell::Cell<i64>,
}

impl TestRepo {
    /// A repository with a work tree (`.git` inside).
    pub(crate) fn new() -> TestRepo {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        TestRepo { dir, repo, clock: std::cell::Cell::new(1_750_000_000) }
    }

    /// A bare repository, like a mirror on a CI host.
    pub(crate) fn bare() -> TestRepo {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        TestRepo { dir, repo, clock: std::cell::Cell::new(1_750_000_000) }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    fn signature(&self) -> Signature<'static> {
        let now = self.clock.get();
        self.clock.set(now + 60);
        Signature::new("lkg test", "test@lkg.invalid", &Time::new(now, 0)).unwrap()
    }

    /// A commit on `refname` (e.g. `refs/heads/main`) with the given parents.
    /// Each commit writes `file.txt` = `message`, so commits differ.
    pub(crate) fn commit(&self, refname: Option<&str>, message: &str, parents: &[Oid]) -> Oid {
        let blob = self.repo.blob(message.as_bytes()).unwrap();
        let mut tree = self.repo.treebuilder(None).unwrap();
        tree.insert("file.txt", blob, 0o100_644).unwrap();
        let tree = self.repo.find_tree(tree.write().unwrap()).unwrap();
        let parents: Vec<git2::Commit<'_>> = parents.iter().map(|p| self.repo.find_commit(*p).unwrap()).collect();
        let parents: Vec<&git2::Commit<'_>> = parents.iter().collect();
        let sig = self.signature();
        let id = self.repo.commit(None, &sig, &sig, message, &tree, &parents).unwrap();
        if let Some(refname) = refname {
            self.set_ref(refname, id);
        }
        id
    }

    /// A chain of commits on `refname`, the first on `parent`; returns their ids.
    pub(crate) fn chain(&self, refname: &str, parent: Option<Oid>, messages: &[&str]) -> Vec<Oid> {
        let mut ids = Vec::new();
        let mut parent = parent;
        for message in messages {
            let id = self.commit(Some(refname), message, parent.as_slice());
            ids.push(id);
            parent = Some(id);
        }
        ids
    }

    pub(crate) fn set_ref(&self, refname: &str, id: Oid) {
        self.repo.reference(refname, id, true, "test").unwrap();
    }

    pub(crate) fn lightweight(&self, name: &str, id: Oid) {
        self.repo.tag_lightweight(name, &self.repo.find_object(id, Some(ObjectType::Commit)).unwrap(), false).unwrap();
    }

    pub(crate) fn annotated(&self, name: &str, id: Oid) {
        let sig = self.signature();
        let target = self.repo.find_object(id, Some(ObjectType::Commit)).unwrap();
        self.repo.tag(name, &target, &sig, &format!("release {name}"), false).unwrap();
    }

    pub(crate) fn head_at(&self, branch: &str) {
        self.repo.set_head(&format!("refs/heads/{branch}")).unwrap();
    }
}
