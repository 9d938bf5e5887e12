//! Restoring a local volume in one pass: the archive is extracted into a
//! staging directory beside the volume's data directory while it is checked,
//! and only once every entry, its size and its SHA-256 have passed does one
//! `renameat2(RENAME_EXCHANGE)` swap the staged tree with the live one.
//!
//! The local driver keeps a volume's data in `<root>/volumes/<name>/_data`
//! (the mount point); the staging directory is `<root>/volumes/<name>/.lkg-restore-<id>`,
//! on the same file system but outside the data, so:
//! - a refused or tampered archive, a full disk or a kill before the swap
//!   leave the live data exactly as it was, not even its root's ctime changes;
//! - the swap is atomic: the volume holds the old tree or the new one, never
//!   a mix, and after it the staging name holds the old tree;
//! - a leftover (`.lkg-restore-*`, holding an unfinished staging or a replaced
//!   tree) is never inside the volume, so neither the app nor a take sees it;
//!   the next restore or direct take of the volume removes it, and removing
//!   the volume removes it too.

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use rustix::fs::{CWD, RenameFlags, renameat_with};
use rustix::io::Errno;

/// Names of staging directories (and of the trees they replaced) beside a
/// volume's data directory.
pub(crate) const STAGING_PREFIX: &str = ".lkg-restore-";

/// A local volume's data directory and the directory that holds it, where
/// its restores are staged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Place {
    dir: PathBuf,
    data: PathBuf,
}

impl Place {
    /// The place of the volume mounted at `mountpoint`: `None` unless the
    /// mount point is a directory (not a link) whose parent directory is on
    /// the same file system, so that a rename can swap trees between them.
    pub(crate) fn of(mountpoint: &Path) -> io::Result<Option<Place>> {
        let Some(dir) = mountpoint.parent().filter(|d| !d.as_os_str().is_empty()) else { return Ok(None) };
        let data = fs_err::symlink_metadata(mountpoint)?;
        let parent = fs_err::symlink_metadata(dir)?;
        if !data.is_dir() || !parent.is_dir() || data.dev() != parent.dev() {
            return Ok(None);
        }
        Ok(Some(Place { dir: dir.to_owned(), data: mountpoint.to_owned() }))
    }

    /// Removes what interrupted restores left beside the data: unfinished
    /// stagings and replaced trees. Returns what it removed.
    pub(crate) fn remove_leftovers(&self) -> io::Result<Vec<PathBuf>> {
        let mut removed = Vec::new();
        for entry in fs_err::read_dir(&self.dir)? {
            let entry = entry?;
            if entry.file_name().as_encoded_bytes().starts_with(STAGING_PREFIX.as_bytes()) {
                // Never follows a link, and is safe against a tree that changes meanwhile.
                let path = entry.path();
                if entry.file_type()?.is_dir() {
                    fs_err::remove_dir_all(&path)?;
                } else {
                    fs_err::remove_file(&path)?;
                }
                removed.push(path);
            }
        }
        Ok(removed)
    }

    /// Creates an empty staging directory (owner-only until the volume root's
    /// entry sets its owner and mode). `None` if the file system cannot swap
    /// two directories atomically (checked on two empty ones).
    pub(crate) fn stage(&self) -> io::Result<Option<Staged>> {
        let id = staging_id();
        let path = self.dir.join(format!("{STAGING_PREFIX}{id}"));
        let probe = self.dir.join(format!("{STAGING_PREFIX}{id}.probe"));
        for dir in [&path, &probe] {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(dir)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot create {}: {e}", dir.display())))?;
        }
        let exchanged = exchange(&path, &probe);
        fs_err::remove_dir(&probe)?;
        match exchanged {
            Ok(()) => Ok(Some(Staged { place: self.clone(), path })),
            Err(e) if unsupported(&e) => {
                fs_err::remove_dir(&path)?;
                Ok(None)
            }
            Err(e) => {
                let _ = fs_err::remove_dir(&path);
                Err(e)
            }
        }
    }
}

/// A staging directory: the volume root of the restored tree.
#[derive(Debug)]
pub(crate) struct Staged {
    place: Place,
    path: PathBuf,
}

impl Staged {
    /// Where to extract: it becomes the volume's data directory.
    pub(crate) fn root(&self) -> &Path {
        &self.path
    }

    /// Removes the staged tree; the live data was never touched.
    pub(crate) fn discard(self) -> io::Result<()> {
        fs_err::remove_dir_all(&self.path)
    }

    /// Swaps the staged tree in, atomically; the replaced tree is then under
    /// the staging name, to be removed.
    pub(crate) fn commit(self) -> io::Result<Replaced> {
        exchange(&self.path, &self.place.data)?;
        Ok(Replaced { path: self.path })
    }
}

/// The tree a restore replaced, beside the restored one.
#[derive(Debug)]
pub(crate) struct Replaced {
    path: PathBuf,
}

impl Replaced {
    /// Removes it.
    pub(crate) fn remove(self) -> io::Result<()> {
        fs_err::remove_dir_all(&self.path)
    }
}

fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE).map_err(|e| {
        io::Error::new(io::Error::from(e).kind(), format!("cannot swap {} and {}: {e}", a.display(), b.display()))
    })
}

/// `EINVAL` (the file system does not know the flag), `ENOSYS`, `EOPNOTSUPP`.
fn unsupported(e: &io::Error) -> bool {
    [Errno::INVAL, Errno::NOSYS, Errno::OPNOTSUPP].iter().any(|errno| e.raw_os_error() == Some(errno.raw_os_error()))
}

fn staging_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::hash::RandomState::new().build_hasher();
    hasher.write_i128(jiff::Timestamp::now().as_nanosecond());
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volume_dir() -> (tempfile::TempDir, Place) {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("_data");
        fs_err::create_dir(&data).unwrap();
        fs_err::write(data.join("old"), b"old").unwrap();
        let place = Place::of(&data).unwrap().expect("a plain directory has a place");
        (dir, place)
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            fs_err::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        names
    }

    #[test]
    fn a_commit_swaps_the_trees_and_leaves_the_old_one_to_remove() {
        let (dir, place) = volume_dir();
        let staged = place.stage().unwrap().expect("the test file system can exchange");
        fs_err::write(staged.root().join("new"), b"new").unwrap();
        assert_eq!(names(&dir.path().join("_data")), ["old"], "staging leaves the data alone");
        let replaced = staged.commit().unwrap();
        assert_eq!(names(&dir.path().join("_data")), ["new"]);
        assert_eq!(names(&replaced.path), ["old"]);
        replaced.remove().unwrap();
        assert_eq!(names(dir.path()), ["_data"]);
    }

    #[test]
    fn a_discarded_staging_leaves_nothing() {
        let (dir, place) = volume_dir();
        let staged = place.stage().unwrap().unwrap();
        fs_err::create_dir_all(staged.root().join("a/b")).unwrap();
        staged.discard().unwrap();
        assert_eq!(names(dir.path()), ["_data"]);
        assert_eq!(names(&dir.path().join("_data")), ["old"]);
    }

    #[test]
    fn leftovers_are_removed_and_nothing_else() {
        let (dir, place) = volume_dir();
        fs_err::create_dir_all(dir.path().join(".lkg-restore-0123/deep/er")).unwrap();
        fs_err::write(dir.path().join(".lkg-restore-0123/deep/er/f"), b"x").unwrap();
        fs_err::write(dir.path().join(".lkg-restore-stray-file"), b"x").unwrap();
        std::os::unix::fs::symlink("_data", dir.path().join(".lkg-restore-link")).unwrap();
        fs_err::write(dir.path().join("opts.json"), b"{}").unwrap();
        let removed = place.remove_leftovers().unwrap();
        assert_eq!(removed.len(), 3, "{removed:?}");
        assert_eq!(names(dir.path()), ["_data", "opts.json"]);
        assert_eq!(names(&dir.path().join("_data")), ["old"], "a link is removed, not followed");
    }

    #[test]
    fn a_mount_point_that_is_a_link_or_missing_has_no_place() {
        let (dir, _) = volume_dir();
        std::os::unix::fs::symlink("_data", dir.path().join("link")).unwrap();
        assert_eq!(Place::of(&dir.path().join("link")).unwrap(), None);
        assert!(Place::of(&dir.path().join("missing")).is_err());
    }
}
