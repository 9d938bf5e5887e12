//! The direct path: archiving a volume by reading its mount point, when the
//! engine runs on this machine and lkg may read every file.
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
use std::fs::Metadata;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use tar::{EntryType, Header};

use crate::archive::ROOT;

/// Writes the volume archive of the directory `root` to `out`.
pub(crate) fn archive_directory<W: Write>(root: &Path, out: W) -> io::Result<W> {
    let metadata = fs_err::symlink_metadata(root)?;
    if !metadata.is_dir() {
        return Err(io::Error::new(io::ErrorKind::NotADirectory, format!("{} is not a directory", root.display())));
    }
    let mut walk = Walk { builder: tar::Builder::new(out), links: HashMap::new() };
    let mut rel = ROOT.as_bytes().to_vec();
    walk.append(&metadata, EntryType::Directory, &rel, io::empty())?;
    walk.directory(root, &mut rel)?;
    walk.builder.into_inner()
}

struct Walk<W: Write> {
    builder: tar::Builder<W>,
    /// First archive path of each multiply-linked inode, by (device, inode).
    links: HashMap<(u64, u64), Vec<u8>>,
}

impl<W: Write> Walk<W> {
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
                let target = fs_err::read_link(&path)?;
                let mut header = header(&metadata, EntryType::Symlink, 0);
                self.builder.append_link(&mut header, as_path(rel), target)?;
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
                let mut header = header(metadata, EntryType::Link, 0);
                let first = first.clone();
                return self.builder.append_link(&mut header, as_path(rel), as_path(&first));
            }
            self.links.insert(key, rel.to_vec());
        }
        let file = fs_err::File::open(path)?;
        let size = metadata.len();
        self.append(metadata, EntryType::Regular, rel, Exact { file, remaining: size, path })?;
        Ok(())
    }

    fn append(&mut self, metadata: &Metadata, typ: EntryType, rel: &[u8], data: impl Read) -> io::Result<()> {
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

        let archive = archive_directory(root, Vec::new()).unwrap();
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
    fn device_numbers_match_linux_encoding() {
        // makedev(1, 3) for /dev/null; makedev(259, 65537), whose minor needs the high bits.
        assert_eq!(device_numbers(0x0103), (1, 3));
        assert_eq!(device_numbers(0x1001_0301), (259, 65537));
    }
}
