//! The direct path: archiving a volume by reading its mount point, and
//! restoring one by writing into the mount point of the recreated (empty)
//! volume, when the engine runs on this machine and lkg runs as root.
//!
//! The archive is the one the engine's archive endpoint would give: entries
//! under `data/`, the volume root first, depth first with names sorted
//! bytewise (Go's `filepath.Walk` order), owners, modes and mtimes (whole
//! seconds) kept, hard links as links to the first path of the inode,
//! symlinks as links, sockets skipped. Devices and FIFOs are written as they
//! are, and then refused by the same check every snapshot passes before it
//! is kept. Extended attributes are not copied (the archive endpoint copies
//! `security.capability` only).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{FileTimes, Metadata, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use fs_err::os::unix::fs::OpenOptionsExt;
use tar::{EntryType, Header};

use lkg_core::hex;
use sha2::{Digest, Sha256};

use crate::archive::{Admitted, ArchiveSummary, Kind, ROOT, Visitor};

/// Writes the volume archive of the directory `root` to `out`; returns `out`
/// and the [`Print`] of what was archived.
pub(crate) fn archive_directory<W: Write>(root: &Path, out: W) -> io::Result<(W, Print)> {
    let mut walk = Walk::new(tar::Builder::new(out), true, racy_from_now());
    walk.root(root)?;
    Ok((walk.builder.into_inner()?, walk.print.finish()))
}

/// The [`Print`] an archive of the directory `root` would have now: the same
/// walk, reading no file's content.
pub(crate) fn print_directory(root: &Path) -> io::Result<Print> {
    print_with(root, racy_from_now())
}

/// [`print_directory`] for which an entry is racy from `racy_from`
/// (nanoseconds since the Unix epoch).
fn print_with(root: &Path, racy_from: i128) -> io::Result<Print> {
    let mut walk = Walk::new(tar::Builder::new(io::sink()), false, racy_from);
    walk.root(root)?;
    Ok(walk.print.finish())
}

/// The ctime (nanoseconds since the Unix epoch) from which an entry is
/// racy for a walk starting now.
fn racy_from_now() -> i128 {
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    i128::try_from(now).unwrap_or(i128::MAX) - RACY.as_nanos().cast_signed()
}

/// What a walk of a volume saw of each entry it archives (path, type, mode,
/// owners, size, mtime and ctime to the nanosecond, inode, device, links),
/// hashed in walk order, and the counts its archive has.
///
/// Every change to what an archive holds changes an entry's ctime (which no
/// caller can set) or the list of paths, so an equal print on the same
/// machine means an equal archive; a take adopts the last-known-good's
/// archive of a volume whose print did not change, without reading it.
/// An entry whose ctime is within [`RACY`] of the walk's start could still
/// change within the same clock tick unnoticed: such a walk has no print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Print {
    /// `v1:` and 64 hex digits, or `None` (racy).
    pub(crate) value: Option<String>,
    /// The counts of the archive (`bytes` and `sha256` left empty).
    pub(crate) summary: ArchiveSummary,
}

/// How recent a ctime makes a print unusable (coarse kernel clocks tick
/// every few milliseconds; a second more covers file systems that keep
/// whole seconds).
const RACY: Duration = Duration::from_secs(2);

struct Printer {
    hasher: Sha256,
    racy_from: i128,
    racy: bool,
    summary: ArchiveSummary,
}

impl Printer {
    fn new(racy_from: i128) -> Printer {
        Printer {
            hasher: Sha256::new_with_prefix(b"lkg volume print v1\0"),
            racy_from,
            racy: false,
            summary: ArchiveSummary::default(),
        }
    }

    fn entry(&mut self, rel: &[u8], metadata: &Metadata, typ: EntryType) {
        self.hasher.update(rel);
        self.hasher.update([0]);
        for value in [
            u64::from(metadata.mode()),
            u64::from(metadata.uid()),
            u64::from(metadata.gid()),
            metadata.size(),
            metadata.mtime().cast_unsigned(),
            metadata.mtime_nsec().cast_unsigned(),
            metadata.ctime().cast_unsigned(),
            metadata.ctime_nsec().cast_unsigned(),
            metadata.ino(),
            metadata.dev(),
            metadata.nlink(),
            metadata.rdev(),
        ] {
            self.hasher.update(value.to_le_bytes());
        }
        let ctime = i128::from(metadata.ctime()) * 1_000_000_000 + i128::from(metadata.ctime_nsec());
        self.racy |= ctime >= self.racy_from;
        let summary = &mut self.summary;
        summary.entries += 1;
        match typ {
            EntryType::Directory => summary.directories += 1,
            EntryType::Regular => {
                summary.files += 1;
                summary.content_bytes += metadata.size();
            }
            EntryType::Link => summary.hard_links += 1,
            EntryType::Symlink => summary.symlinks += 1,
            _ => {}
        }
    }

    fn finish(self) -> Print {
        let value = (!self.racy).then(|| format!("v1:{}", hex(&self.hasher.finalize())));
        Print { value, summary: self.summary }
    }
}

struct Walk<W: Write> {
    builder: tar::Builder<W>,
    /// Whether to write the archive (else only the print).
    archive: bool,
    /// First archive path of each multiply-linked inode, by (device, inode).
    links: HashMap<(u64, u64), Vec<u8>>,
    print: Printer,
}

impl<W: Write> Walk<W> {
    fn new(builder: tar::Builder<W>, archive: bool, racy_from: i128) -> Walk<W> {
        Walk { builder, archive, links: HashMap::new(), print: Printer::new(racy_from) }
    }

    fn root(&mut self, root: &Path) -> io::Result<()> {
        let metadata = fs_err::symlink_metadata(root)?;
        if !metadata.is_dir() {
            return Err(io::Error::new(io::ErrorKind::NotADirectory, format!("{} is not a directory", root.display())));
        }
        let mut rel = ROOT.as_bytes().to_vec();
        self.append(&metadata, EntryType::Directory, &rel, io::empty())?;
        self.directory(root, &mut rel)
    }

    fn directory(&mut self, dir: &Path, rel: &mut Vec<u8>) -> io::Result<()> {
        // Sorted like Go's filepath.Walk (os.ReadDir sorts by name, bytewise).
        let mut names = fs_err::read_dir(dir)?.map(|e| e.map(|e| e.file_name())).collect::<io::Result<Vec<_>>>()?;
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let metadata = fs_err::symlink_metadata(&path)?;
            let parent_len = rel.len();
            rel.push(b'/');
            rel.extend_from_slice(name.as_bytes());
            let kind = metadata.file_type();
            if kind.is_dir() {
                self.append(&metadata, EntryType::Directory, rel, io::empty())?;
                self.directory(&path, rel)?;
            } else if kind.is_file() {
                self.file(&path, &metadata, rel)?;
            } else if kind.is_symlink() {
                self.print.entry(rel, &metadata, EntryType::Symlink);
                if self.archive {
                    let target = fs_err::read_link(&path)?;
                    let mut header = header(&metadata, EntryType::Symlink, 0);
                    self.builder.append_link(&mut header, as_path(rel), target)?;
                }
            } else if kind.is_fifo() || kind.is_char_device() || kind.is_block_device() {
                // Kept so that the check refuses the volume by name, as it does
                // for the archive path: lkg keeps no snapshot it cannot restore.
                let typ = if kind.is_fifo() {
                    EntryType::Fifo
                } else if kind.is_char_device() {
                    EntryType::Char
                } else {
                    EntryType::Block
                };
                self.append(&metadata, typ, rel, io::empty())?;
            }
            // Sockets: skipped, as the engine's archive endpoint does.
            rel.truncate(parent_len);
        }
        Ok(())
    }

    fn file(&mut self, path: &Path, metadata: &Metadata, rel: &[u8]) -> io::Result<()> {
        if metadata.nlink() > 1 {
            let key = (metadata.dev(), metadata.ino());
            if let Some(first) = self.links.get(&key) {
                self.print.entry(rel, metadata, EntryType::Link);
                if !self.archive {
                    return Ok(());
                }
                let mut header = header(metadata, EntryType::Link, 0);
                let first = first.clone();
                return self.builder.append_link(&mut header, as_path(rel), as_path(&first));
            }
            self.links.insert(key, rel.to_vec());
        }
        if !self.archive {
            self.print.entry(rel, metadata, EntryType::Regular);
            return Ok(());
        }
        let file = fs_err::File::open(path)?;
        let size = metadata.len();
        self.append(metadata, EntryType::Regular, rel, Exact { file, remaining: size, path })?;
        Ok(())
    }

    fn append(&mut self, metadata: &Metadata, typ: EntryType, rel: &[u8], data: impl Read) -> io::Result<()> {
        self.print.entry(rel, metadata, typ);
        if !self.archive {
            return Ok(());
        }
        let size = if typ == EntryType::Regular { metadata.len() } else { 0 };
        let mut header = header(metadata, typ, size);
        self.builder.append_data(&mut header, as_path(rel), data)
    }
}

fn as_path(bytes: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(bytes))
}

fn header(metadata: &Metadata, typ: EntryType, size: u64) -> Header {
    let mut header = Header::new_gnu();
    header.set_entry_type(typ);
    header.set_mode(metadata.mode() & 0o7777);
    header.set_uid(metadata.uid().into());
    header.set_gid(metadata.gid().into());
    header.set_mtime(u64::try_from(metadata.mtime()).unwrap_or(0));
    header.set_size(size);
    if matches!(typ, EntryType::Char | EntryType::Block) {
        let (major, minor) = device_numbers(metadata.rdev());
        let _ = header.set_device_major(major);
        let _ = header.set_device_minor(minor);
    }
    header
}

/// Linux `major()`/`minor()` of a `dev_t`.
fn device_numbers(rdev: u64) -> (u32, u32) {
    let major = ((rdev >> 32) & 0xffff_f000) | ((rdev >> 8) & 0x0000_0fff);
    let minor = ((rdev >> 12) & 0xffff_ff00) | (rdev & 0x0000_00ff);
    (u32::try_from(major).unwrap_or(u32::MAX), u32::try_from(minor).unwrap_or(u32::MAX))
}

/// Writes admitted entries into `root`, the mount point of a volume that was
/// just created empty. Runs as a [`Visitor`] of the archive check, so every
/// entry has passed the rules (no `..`, no path through a link, hard links
/// only to earlier files) before anything is written for it.
///
/// Directories are created owner-only and get their owner, mode and mtime
/// when the walk leaves them (creating children changes a directory's
/// mtime); files are created exclusively, then chowned before they are
/// chmodded (chown clears set-id bits).
pub(crate) struct Extractor {
    root: PathBuf,
    /// Directories entered and not yet finished, with their metadata.
    open: Vec<(Vec<u8>, Finish)>,
    buffer: Vec<u8>,
}

#[derive(Debug, Clone, Copy)]
struct Finish {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
}

impl Extractor {
    pub(crate) fn new(root: &Path) -> Extractor {
        Extractor { root: root.to_owned(), open: Vec::new(), buffer: vec![0; 256 * 1024] }
    }

    fn target(&self, path: &[u8]) -> PathBuf {
        match path.strip_prefix(ROOT.as_bytes()).and_then(|p| p.strip_prefix(b"/")) {
            Some(rel) => self.root.join(as_path(rel)),
            None => self.root.clone(),
        }
    }

    /// Finishes the directories that `path` is not inside of.
    fn leave_until(&mut self, path: &[u8]) -> io::Result<()> {
        while let Some((dir, _)) = self.open.last() {
            if path.strip_prefix(dir.as_slice()).is_some_and(|rest| rest.starts_with(b"/")) {
                break;
            }
            self.close_last()?;
        }
        Ok(())
    }

    fn close_last(&mut self) -> io::Result<()> {
        let Some((dir, finish)) = self.open.pop() else { return Ok(()) };
        let target = self.target(&dir);
        own(&target, finish)?;
        fs_err::set_permissions(&target, Permissions::from_mode(finish.mode & 0o7777))?;
        fs_err::File::open(&target)?.set_times(times(finish.mtime))?;
        Ok(())
    }

    /// Finishes every directory, the volume root last.
    pub(crate) fn finish(mut self) -> io::Result<()> {
        while !self.open.is_empty() {
            self.close_last()?;
        }
        Ok(())
    }
}

impl Visitor for Extractor {
    fn visit(&mut self, entry: &Admitted<'_>, data: &mut dyn Read) -> io::Result<u64> {
        self.leave_until(entry.path)?;
        let target = self.target(entry.path);
        let finish = Finish { mode: entry.mode, uid: entry.uid, gid: entry.gid, mtime: entry.mtime };
        match entry.kind {
            Kind::Dir => {
                if entry.path != ROOT.as_bytes() {
                    std::fs::DirBuilder::new()
                        .mode(0o700)
                        .create(&target)
                        .map_err(|e| io::Error::new(e.kind(), format!("cannot create {}: {e}", target.display())))?;
                }
                self.open.push((entry.path.to_vec(), finish));
                Ok(0)
            }
            Kind::File => {
                let mut file = fs_err::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&target)?;
                let mut written = 0u64;
                loop {
                    let n = match data.read(&mut self.buffer) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    };
                    file.write_all(&self.buffer[..n])?;
                    written += n as u64;
                }
                own(&target, finish)?;
                file.set_permissions(Permissions::from_mode(finish.mode & 0o7777))?;
                file.set_times(times(finish.mtime))?;
                Ok(written)
            }
            Kind::Symlink => {
                fs_err::os::unix::fs::symlink(as_path(entry.link), &target)?;
                own(&target, finish)?;
                let mtime = filetime::FileTime::from_unix_time(i64::try_from(finish.mtime).unwrap_or(0), 0);
                filetime::set_symlink_file_times(&target, mtime, mtime).map_err(|e| {
                    io::Error::new(e.kind(), format!("cannot set the times of {}: {e}", target.display()))
                })?;
                Ok(0)
            }
            Kind::HardLink => {
                fs_err::hard_link(self.target(entry.link), &target)?;
                Ok(0)
            }
        }
    }
}

/// `lchown`: never follows a symlink.
fn own(path: &Path, finish: Finish) -> io::Result<()> {
    let id = |v: u64| u32::try_from(v).map_err(|_| io::Error::other(format!("uid/gid {v} is out of range")));
    std::os::unix::fs::lchown(path, Some(id(finish.uid)?), Some(id(finish.gid)?))
        .map_err(|e| io::Error::new(e.kind(), format!("cannot change the owner of {}: {e}", path.display())))
}

fn times(mtime: u64) -> FileTimes {
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(mtime);
    FileTimes::new().set_modified(at).set_accessed(at)
}

/// A file read for exactly the size its header declares: a file that shrinks
/// while being read is an error, not a corrupt archive.
struct Exact<'p> {
    file: fs_err::File,
    remaining: u64,
    path: &'p Path,
}

impl Read for Exact<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = usize::try_from(self.remaining).unwrap_or(usize::MAX).min(buf.len());
        let n = self.file.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{} shrank while it was being read: is something still writing to the volume?",
                    self.path.display()
                ),
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt, symlink};
    use std::sync::atomic::AtomicU64;

    use super::*;
    use crate::archive::inspect;

    /// A tree with every kind of entry a print counts.
    fn tree(root: &Path) {
        fs_err::create_dir_all(root.join("a/b")).unwrap();
        fs_err::write(root.join("a/b/f"), b"hi\n").unwrap();
        fs_err::write(root.join("a.txt"), b"x").unwrap();
        fs_err::hard_link(root.join("a/b/f"), root.join("hard")).unwrap();
        symlink("a/b/f", root.join("link")).unwrap();
    }

    #[test]
    fn a_print_counts_what_the_archive_holds_and_follows_every_change() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        tree(root);
        let (archive, archived) = archive_directory(root, Vec::new()).unwrap();
        let summary = inspect(archive.as_slice(), &AtomicU64::new(0)).unwrap();
        let print = print_with(root, i128::MAX).unwrap();
        assert_eq!(print.summary, ArchiveSummary { bytes: 0, sha256: String::new(), ..summary });
        assert_eq!(archived.summary, print.summary, "the archive's walk prints the same");
        let value = print.value.clone().expect("nothing is racy");
        assert!(value.starts_with("v1:") && value.len() == 67, "{value}");
        assert_eq!(print_with(root, i128::MAX).unwrap(), print, "an unchanged tree prints the same");

        // Each change an archive would show changes the print.
        let mut seen = vec![value];
        let mut changed = |what: &str, change: &dyn Fn()| {
            change();
            let value = print_with(root, i128::MAX).unwrap().value.unwrap();
            assert!(!seen.contains(&value), "{what} left the print as it was");
            seen.push(value);
        };
        changed("a mode", &|| fs_err::set_permissions(root.join("a.txt"), Permissions::from_mode(0o600)).unwrap());
        changed("a size", &|| fs_err::write(root.join("a.txt"), b"xy").unwrap());
        changed("a rename", &|| fs_err::rename(root.join("a.txt"), root.join("c.txt")).unwrap());
        changed("a new file", &|| fs_err::write(root.join("a/new"), b"").unwrap());
        changed("a removed link", &|| fs_err::remove_file(root.join("hard")).unwrap());
        changed("an mtime", &|| {
            let file = fs_err::File::options().write(true).open(root.join("c.txt")).unwrap();
            file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000)).unwrap();
        });
    }

    #[test]
    fn an_entry_changed_within_the_racy_window_leaves_no_print() {
        let dir = tempfile::tempdir().unwrap();
        tree(dir.path());
        // Just written: a change within the same clock tick would not show.
        let print = print_directory(dir.path()).unwrap();
        assert_eq!(print.value, None);
        assert_eq!(print.summary.files, 2, "the counts are there all the same");
        let (_, archived) = archive_directory(dir.path(), Vec::new()).unwrap();
        assert_eq!(archived.value, None, "nor does the archive's walk record one");
    }

    #[test]
    fn writes_an_archive_the_check_accepts_in_walk_order() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs_err::create_dir_all(root.join("a/b")).unwrap();
        fs_err::write(root.join("a/b/f"), b"hi\n").unwrap();
        fs_err::write(root.join("a.txt"), b"x").unwrap();
        fs_err::write(root.join("B"), b"").unwrap();
        fs_err::hard_link(root.join("a/b/f"), root.join("hard")).unwrap();
        symlink("a/b/f", root.join("link")).unwrap();
        let long = "d".repeat(120);
        fs_err::create_dir_all(root.join(&long).join("e".repeat(120))).unwrap();
        fs_err::set_permissions(root.join("a"), std::fs::Permissions::from_mode(0o750)).unwrap();

        let (archive, _) = archive_directory(root, Vec::new()).unwrap();
        let summary = inspect(archive.as_slice(), &AtomicU64::new(0)).unwrap();
        assert_eq!((summary.files, summary.hard_links, summary.symlinks, summary.directories), (3, 1, 1, 5));

        let mut reader = tar::Archive::new(archive.as_slice());
        let entries: Vec<(String, EntryType, u32)> = reader
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let path = String::from_utf8_lossy(&e.path_bytes()).into_owned();
                (path, e.header().entry_type(), e.header().mode().unwrap())
            })
            .collect();
        let names: Vec<&str> = entries.iter().map(|(p, _, _)| p.as_str()).collect();
        let long_dir = format!("data/{long}");
        let long_sub = format!("data/{long}/{}", "e".repeat(120));
        assert_eq!(
            names,
            [
                "data",
                "data/B",
                "data/a",
                "data/a/b",
                "data/a/b/f",
                "data/a.txt",
                &long_dir,
                &long_sub,
                "data/hard",
                "data/link"
            ]
        );
        assert_eq!(entries[2].2, 0o750);
        assert_eq!(entries[8].1, EntryType::Link);
    }

    #[test]
    fn extracting_an_archive_recreates_the_tree_exactly() {
        use crate::archive::read_archive;
        let source = tempfile::tempdir().unwrap();
        let root = source.path();
        fs_err::create_dir_all(root.join("a/b")).unwrap();
        fs_err::write(root.join("a/b/f"), b"content").unwrap();
        fs_err::hard_link(root.join("a/b/f"), root.join("hard")).unwrap();
        symlink("a/b/f", root.join("link")).unwrap();
        fs_err::write(root.join("setuid"), b"").unwrap();
        fs_err::set_permissions(root.join("setuid"), std::fs::Permissions::from_mode(0o4750)).unwrap();
        fs_err::set_permissions(root.join("a"), std::fs::Permissions::from_mode(0o710)).unwrap();
        let old = filetime::FileTime::from_unix_time(1_000_000_000, 0);
        filetime::set_symlink_file_times(root.join("link"), old, old).unwrap();
        filetime::set_file_mtime(root.join("a/b"), old).unwrap();
        fs_err::set_permissions(root, std::fs::Permissions::from_mode(0o701)).unwrap();
        filetime::set_file_mtime(root, old).unwrap();
        let (archive, _) = archive_directory(root, Vec::new()).unwrap();

        let target = tempfile::tempdir().unwrap();
        let mut extractor = Extractor::new(target.path());
        let summary = read_archive(archive.as_slice(), &AtomicU64::new(0), &mut extractor).unwrap();
        extractor.finish().unwrap();
        assert_eq!((summary.files, summary.hard_links, summary.symlinks), (2, 1, 1));

        let describe = |base: &Path| -> Vec<String> {
            ["", "a", "a/b", "a/b/f", "hard", "link", "setuid"]
                .iter()
                .map(|rel| {
                    let path = if rel.is_empty() { base.to_owned() } else { base.join(rel) };
                    let m = fs_err::symlink_metadata(&path).unwrap();
                    let link = fs_err::read_link(&path).map(|l| l.display().to_string()).unwrap_or_default();
                    let size = if m.is_dir() { 0 } else { m.len() };
                    format!("{rel} {:o} {} {} {} {size} {link}", m.mode(), m.uid(), m.nlink(), m.mtime())
                })
                .collect()
        };
        assert_eq!(describe(target.path()), describe(root));
    }

    #[test]
    fn device_numbers_match_linux_encoding() {
        // makedev(1, 3) for /dev/null; makedev(259, 65537), whose minor needs the high bits.
        assert_eq!(device_numbers(0x0103), (1, 3));
        assert_eq!(device_numbers(0x1001_0301), (259, 65537));
    }
}
