//! What a volume archive may contain, checked before any byte of it reaches a
//! live volume.
//!
//! A volume archive is the tar that `GET /containers/{id}/archive?path=/data`
//! returns for a helper container with the volume mounted at `/data`: every
//! entry lives under `data/`, the first entry is the directory `data/` (the
//! volume root, whose owner and mode are restored too), and entries come
//! depth first with names sorted bytewise within a directory (Go's
//! `filepath.Walk` order, which moby's `archive.TarWithOptions` uses; lkg's
//! direct-path writer uses the same order). Restore uploads the archive with
//! `PUT /containers/{id}/archive?path=/`, so the daemon extracts it relative
//! to the helper container's root.
//!
//! [`inspect`] reads an archive once, computing its SHA-256 and size, and
//! refuses it at the first entry that could write outside the volume, write
//! through a link, create a device or FIFO, or that the daemon's Go tar reader
//! could parse differently from the Rust one (the classic way to smuggle an
//! entry past a checker). Because the order is fixed, the checks need memory
//! for one directory path per level, plus 8 bytes per regular file (to check
//! hard-link targets), and a few MiB of read-ahead, never the archive itself.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use lkg_core::hex;
use sha2::{Digest, Sha256};

/// The top directory of every entry: the volume as the helper container sees it.
pub const ROOT: &str = "data";

const BLOCK: u64 = 512;
const READ_BUFFER: usize = 256 * 1024;
/// The read-ahead: chunks of 1 MiB, four in flight.
const READ_CHUNK: usize = 1024 * 1024;
const READ_AHEAD: usize = 4;

/// What [`inspect`] found in an archive it accepts.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct ArchiveSummary {
    /// Size of the archive in bytes.
    pub bytes: u64,
    /// SHA-256 of the archive, lowercase hex.
    pub sha256: String,
    /// Number of entries (the volume root included).
    pub entries: u64,
    /// Regular files.
    pub files: u64,
    /// Directories (the volume root included).
    pub directories: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// Hard links (entries that link to an earlier file).
    pub hard_links: u64,
    /// Total size of the regular files' contents.
    pub content_bytes: u64,
}

/// Why [`inspect`] did not accept an archive.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// An entry (or the end of the archive) breaks a rule.
    #[error("archive entry #{index} {path:?} is refused: {refusal}")]
    Refused {
        /// Position of the entry, from 1; for an end-of-archive problem, the
        /// number of entries plus one.
        index: u64,
        /// The entry's path as the archive spells it (lossy UTF-8), or
        /// `(end of archive)`.
        path: String,
        /// The rule it breaks.
        refusal: Refusal,
    },
    /// The archive could not be read (the store's file, not its content).
    #[error("cannot read the archive")]
    Read(#[source] io::Error),
}

/// The rules of a volume archive. Each says why the entry is dangerous.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// A `..` component would climb out of the volume.
    #[error("its path has a `..` component, which could write outside the volume")]
    DotDot,
    /// An absolute path ignores the extraction directory.
    #[error("its path is absolute, which could write outside the volume")]
    Absolute,
    /// Everything of a volume lives under `data/`.
    #[error("it is not under data/, where every entry of a volume archive lives")]
    OutsideRoot,
    /// `a//b` or `a/./b`: two spellings of one path hide duplicates.
    #[error("its path has empty or `.` components")]
    NonCanonical,
    /// C code stops at a NUL; Rust does not.
    #[error("its path or link target contains a NUL byte")]
    Nul,
    /// The volume root must come first, as a directory.
    #[error("the archive must start with the volume root data/ as a directory")]
    MissingRoot,
    /// Extracting it would follow a link the archive just created.
    #[error(
        "its path passes through the symbolic link {link:?}, so extracting it would write wherever the link points"
    )]
    ThroughSymlink {
        /// The symbolic link.
        link: String,
    },
    /// A path below a file.
    #[error("its parent {parent:?} is not a directory")]
    ParentNotDirectory {
        /// The parent entry.
        parent: String,
    },
    /// Its parent directory is not in the archive before it.
    #[error(
        "its parent directory {parent:?} is not in the archive before it (archives are read depth first, names sorted)"
    )]
    MissingParent {
        /// The missing parent.
        parent: String,
    },
    /// A second entry for one path would overwrite the first.
    #[error("the same path appears twice")]
    Duplicate,
    /// Not the order docker and lkg write.
    #[error("it is out of order after {previous:?}: volume archives are depth first with names sorted")]
    OutOfOrder {
        /// The entry before it in the same directory.
        previous: String,
    },
    /// A hard link can only share a file of this archive.
    #[error("it is a hard link to {target:?}, which is not a file earlier in the archive")]
    HardLinkOutside {
        /// The link target.
        target: String,
    },
    /// A symbolic link that the daemon refuses to extract.
    #[error(
        "it is a symbolic link to {target:?}, which climbs above the helper container's root; \
         the daemon refuses to extract it, which would leave the volume half restored"
    )]
    SymlinkEscapes {
        /// The link target.
        target: String,
    },
    /// `symlink("")` fails: the restore would stop half-way.
    #[error("it is a symbolic link with an empty target")]
    EmptySymlink,
    /// Devices and FIFOs are not data.
    #[error("it is a {kind}; lkg snapshots hold only files, directories and links")]
    Special {
        /// `character device`, `block device` or `FIFO`.
        kind: &'static str,
    },
    /// A type the daemon does not extract, or parses differently.
    #[error("it has the unsupported tar type {typeflag:?}")]
    UnsupportedType {
        /// The type flag.
        typeflag: char,
    },
    /// A PAX record lkg does not understand (e.g. `GNU.sparse.*`, which
    /// changes how Go reads the data).
    #[error("it carries the PAX record {key:?}, which lkg does not accept")]
    Pax {
        /// The record key.
        key: String,
    },
    /// Rust's tar reader prefers a GNU long name, Go's the PAX record.
    #[error("its PAX {key} record and its GNU long name disagree")]
    Ambiguous {
        /// `path` or `linkpath`.
        key: &'static str,
    },
    /// Go ignores the size of header-only entries; Rust would skip that many
    /// bytes, hiding entries from one of the two readers.
    #[error("its header declares {size} bytes of data for an entry type that has none")]
    DataOnHeaderOnly {
        /// The declared size.
        size: u64,
    },
    /// Go reads `name/` with type `\0` as a directory, Rust as a file.
    #[error("it is not a directory but its path ends in '/'")]
    SlashOnNonDirectory,
    /// The archive ends inside an entry's data.
    #[error("its data is truncated: the header declares {expected} bytes, the archive holds {found}")]
    Truncated {
        /// The declared size.
        expected: u64,
        /// The bytes present.
        found: u64,
    },
    /// No end-of-archive marker: the archive was cut.
    #[error("the archive ends without its end-of-archive marker: it is truncated")]
    MissingEnd,
    /// Data after the end marker, which some tools would extract.
    #[error("data follows the end-of-archive marker")]
    TrailingData,
    /// The tar reader could not parse a header.
    #[error("malformed tar header: {detail}")]
    Malformed {
        /// The tar reader's message.
        detail: String,
    },
}

/// Reads `archive` to its end and checks every entry against the rules of a
/// volume archive; returns its SHA-256, size and counts when it passes.
///
/// `progress` is set to the number of bytes read so far (a caller on another
/// thread can show it).
pub fn inspect(archive: impl Read + Send, progress: &AtomicU64) -> Result<ArchiveSummary, ArchiveError> {
    read_archive(archive, progress, &mut Drain(vec![0u8; READ_BUFFER])).map_err(|e| match e {
        WalkError::Archive(e) => e,
        // Draining only reads, and read failures are `Archive(Read)`.
        WalkError::Visit(source) => ArchiveError::Read(source),
    })
}

/// An entry that passed the rules: what an extractor needs of it.
#[derive(Debug)]
pub(crate) struct Admitted<'a> {
    /// The path without a trailing slash: `data` or `data/...`.
    pub(crate) path: &'a [u8],
    pub(crate) kind: Kind,
    /// A symlink's target, or a hard link's target path in the archive.
    pub(crate) link: &'a [u8],
    pub(crate) mode: u32,
    pub(crate) uid: u64,
    pub(crate) gid: u64,
    pub(crate) mtime: u64,
}

/// Acts on each admitted entry, in archive order.
pub(crate) trait Visitor {
    /// For a file, reads `data` to its end and returns how many bytes it read.
    fn visit(&mut self, entry: &Admitted<'_>, data: &mut dyn Read) -> io::Result<u64>;
}

struct Drain(Vec<u8>);

impl Visitor for Drain {
    fn visit(&mut self, _: &Admitted<'_>, data: &mut dyn Read) -> io::Result<u64> {
        drain(data, &mut self.0)
    }
}

/// Why [`read_archive`] stopped.
#[derive(Debug)]
pub(crate) enum WalkError {
    /// The archive is refused or unreadable.
    Archive(ArchiveError),
    /// The visitor failed (e.g. writing a file; the error names it).
    Visit(io::Error),
}

/// [`inspect`] with a visitor that sees every entry once it passed the rules
/// (and before the next one is read).
pub(crate) fn read_archive(
    archive: impl Read + Send,
    progress: &AtomicU64,
    visitor: &mut dyn Visitor,
) -> Result<ArchiveSummary, WalkError> {
    // Reading and hashing run on their own thread, a few chunks ahead of the
    // checks (and of the extraction): on two cores the SHA-256 is then
    // almost free.
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::sync_channel(READ_AHEAD);
        let reading = scope.spawn(move || read_ahead(archive, &tx, progress));
        let mut top = Counting { inner: Chunks { rx, chunk: Vec::new(), pos: 0 }, bytes: 0, eof: false };
        let checked = check_archive(&mut top, visitor);
        drop(top); // a walk that stopped early stops the reader too
        let read = reading.join().expect("the read-ahead thread does not panic");
        if let Some(failure) = read.failure {
            return Err(WalkError::Archive(ArchiveError::Read(failure)));
        }
        let mut summary = checked?;
        summary.bytes = read.bytes;
        summary.sha256 = hex(&read.hasher.finalize());
        Ok(summary)
    })
}

/// [`inspect`] of an archive whose chunks arrive on `rx` as another thread
/// writes them (and hashes them: the summary's `bytes` and `sha256` are
/// left for the writer to fill in).
pub(crate) fn check_chunks(rx: mpsc::Receiver<Vec<u8>>) -> Result<ArchiveSummary, ArchiveError> {
    let mut top = Counting { inner: Chunks { rx, chunk: Vec::new(), pos: 0 }, bytes: 0, eof: false };
    check_archive(&mut top, &mut Drain(vec![0u8; READ_BUFFER])).map_err(|e| match e {
        WalkError::Archive(e) => e,
        WalkError::Visit(source) => ArchiveError::Read(source),
    })
}

fn check_archive(top: &mut Counting<Chunks>, visitor: &mut dyn Visitor) -> Result<ArchiveSummary, WalkError> {
    let mut rules = Rules::new();
    let mut summary = ArchiveSummary::default();
    let walked = walk(top, &mut rules, &mut summary, visitor);
    let index = summary.entries + 1;
    let end =
        |refusal| WalkError::Archive(ArchiveError::Refused { index, path: "(end of archive)".to_owned(), refusal });
    match walked {
        Ok(()) => {}
        Err(Stop::Refused { index, path, refusal }) => {
            return Err(WalkError::Archive(ArchiveError::Refused { index, path, refusal }));
        }
        Err(Stop::Visit(source)) => return Err(WalkError::Visit(source)),
        // The tar reader's own errors: a cut header, a bad checksum.
        Err(Stop::Io(e)) => {
            return Err(end(if top.eof { Refusal::MissingEnd } else { Refusal::Malformed { detail: e.to_string() } }));
        }
    }
    if top.eof {
        return Err(end(Refusal::MissingEnd));
    }
    // The tar reader stopped at one zero block; Go and tar-rs write two.
    let mut rest = Vec::new();
    top.read_to_end(&mut rest).map_err(|e| WalkError::Archive(ArchiveError::Read(e)))?;
    if rest.iter().any(|&b| b != 0) {
        return Err(end(Refusal::TrailingData));
    }
    if (rest.len() as u64) < BLOCK {
        return Err(end(Refusal::MissingEnd));
    }
    Ok(summary)
}

enum Stop {
    Refused { index: u64, path: String, refusal: Refusal },
    Visit(io::Error),
    Io(io::Error),
}

impl From<io::Error> for Stop {
    fn from(e: io::Error) -> Stop {
        Stop::Io(e)
    }
}

fn walk<R: Read>(
    reader: &mut R,
    rules: &mut Rules,
    summary: &mut ArchiveSummary,
    visitor: &mut dyn Visitor,
) -> Result<(), Stop> {
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries()? {
        let mut entry = entry?;
        summary.entries += 1;
        let path = entry.path_bytes().into_owned();
        let lossy = || String::from_utf8_lossy(&path).into_owned();
        let refuse = |refusal| Stop::Refused { index: summary.entries, path: lossy(), refusal };
        let kind = classify(&mut entry).map_err(|r| match r {
            Classified::Refused(refusal) => refuse(refusal),
            Classified::Io(e) => Stop::Io(e),
        })?;
        let link = entry.link_name_bytes().map(std::borrow::Cow::into_owned).unwrap_or_default();
        let admitted_path = rules.admit(&path, kind, &link).map_err(refuse)?.to_vec();
        let header = entry.header();
        let malformed = |e: io::Error| refuse(Refusal::Malformed { detail: e.to_string() });
        let admitted = Admitted {
            path: &admitted_path,
            kind,
            link: &link,
            mode: header.mode().map_err(malformed)?,
            uid: header.uid().map_err(malformed)?,
            gid: header.gid().map_err(malformed)?,
            mtime: header.mtime().map_err(malformed)?,
        };
        let visit = Stop::Visit;
        if kind == Kind::File {
            let expected = entry.size();
            let found = visitor.visit(&admitted, &mut entry).map_err(visit)?;
            if found != expected {
                return Err(refuse(Refusal::Truncated { expected, found }));
            }
            summary.files += 1;
            summary.content_bytes += found;
            continue;
        }
        visitor.visit(&admitted, &mut io::empty()).map_err(visit)?;
        match kind {
            Kind::Dir => summary.directories += 1,
            Kind::Symlink => summary.symlinks += 1,
            Kind::File | Kind::HardLink => summary.hard_links += 1,
        }
    }
    Ok(())
}

fn drain(reader: &mut (impl Read + ?Sized), buffer: &mut [u8]) -> io::Result<u64> {
    let mut total = 0;
    loop {
        match reader.read(buffer) {
            Ok(0) => return Ok(total),
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Dir,
    File,
    Symlink,
    HardLink,
}

enum Classified {
    Refused(Refusal),
    Io(io::Error),
}

/// PAX keys that Go and tar-rs read alike, or that do not change where or
/// what is extracted.
fn pax_key_allowed(key: &[u8]) -> bool {
    matches!(
        key,
        b"path"
            | b"linkpath"
            | b"size"
            | b"uid"
            | b"gid"
            | b"uname"
            | b"gname"
            | b"mtime"
            | b"atime"
            | b"ctime"
            | b"comment"
            | b"charset"
            | b"hdrcharset"
    ) || key.starts_with(b"SCHILY.xattr.")
}

fn classify<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Kind, Classified> {
    use tar::EntryType as T;
    let refused = |r| Err(Classified::Refused(r));
    let header = entry.header();
    let typeflag = header.entry_type();
    let kind = match typeflag {
        T::Regular => Kind::File,
        T::Directory => Kind::Dir,
        T::Symlink => Kind::Symlink,
        T::Link => Kind::HardLink,
        T::Char => return refused(Refusal::Special { kind: "character device" }),
        T::Block => return refused(Refusal::Special { kind: "block device" }),
        T::Fifo => return refused(Refusal::Special { kind: "FIFO" }),
        other => return refused(Refusal::UnsupportedType { typeflag: char::from(other.as_byte()) }),
    };
    let size = entry.size();
    let path = entry.path_bytes().into_owned();
    let link = entry.link_name_bytes().map(std::borrow::Cow::into_owned);
    if let Some(extensions) = entry.pax_extensions().map_err(Classified::Io)? {
        for extension in extensions {
            let extension = extension.map_err(Classified::Io)?;
            let key = extension.key_bytes();
            if !pax_key_allowed(key) {
                return refused(Refusal::Pax { key: String::from_utf8_lossy(key).into_owned() });
            }
            if key == b"path" && path != extension.value_bytes() {
                return refused(Refusal::Ambiguous { key: "path" });
            }
            if key == b"linkpath" && link.as_deref() != Some(extension.value_bytes()) {
                return refused(Refusal::Ambiguous { key: "linkpath" });
            }
        }
    }
    if kind != Kind::File && size != 0 {
        return refused(Refusal::DataOnHeaderOnly { size });
    }
    Ok(kind)
}

/// The structural rules, applied entry by entry in archive order.
struct Rules {
    /// The directories from the root down to the current one.
    levels: Vec<Level>,
    /// Keyed hashes of regular files (and hard links) seen so far: targets a
    /// hard link may name. The key is random per archive, so nobody can craft
    /// a collision in advance.
    files: HashSet<u64>,
    hasher: RandomState,
}

struct Level {
    path: Vec<u8>,
    last: Option<(Vec<u8>, Kind)>,
}

impl Rules {
    fn new() -> Rules {
        Rules { levels: Vec::new(), files: HashSet::new(), hasher: RandomState::new() }
    }

    /// Checks one entry; returns its path without a trailing slash.
    fn admit<'p>(&mut self, raw: &'p [u8], kind: Kind, link: &[u8]) -> Result<&'p [u8], Refusal> {
        let path = match raw.strip_suffix(b"/") {
            Some(_) if kind != Kind::Dir => return Err(Refusal::SlashOnNonDirectory),
            Some(stripped) => stripped,
            None => raw,
        };
        check_path(path)?;
        self.place(path, kind)?;
        match kind {
            Kind::File => {
                self.files.insert(self.hasher.hash_one(path));
            }
            Kind::HardLink => {
                let target = link;
                let outside = || Refusal::HardLinkOutside { target: String::from_utf8_lossy(target).into_owned() };
                check_path(target).map_err(|_| outside())?;
                if target == path || !self.files.contains(&self.hasher.hash_one(target)) {
                    return Err(outside());
                }
                self.files.insert(self.hasher.hash_one(path));
            }
            Kind::Symlink => check_symlink(path, link)?,
            Kind::Dir => {}
        }
        Ok(path)
    }

    /// Checks that `path` comes where a depth-first, sorted walk puts it:
    /// right below a directory of the archive, after its previous sibling.
    fn place(&mut self, path: &[u8], kind: Kind) -> Result<(), Refusal> {
        if self.levels.is_empty() {
            if path != ROOT.as_bytes() || kind != Kind::Dir {
                return Err(Refusal::MissingRoot);
            }
            self.levels.push(Level { path: path.to_vec(), last: None });
            return Ok(());
        }
        let Some(slash) = path.iter().rposition(|&b| b == b'/') else {
            return Err(Refusal::Duplicate); // the root again: `check_path` allows no other single component
        };
        let (parent, name) = (&path[..slash], &path[slash + 1..]);
        loop {
            let top = self.levels.last().expect("the root level is never popped: it is every path's ancestor");
            if top.path == parent {
                break;
            }
            if let Some(rest) = parent.strip_prefix(top.path.as_slice()).and_then(|r| r.strip_prefix(b"/")) {
                let first = rest.split(|&b| b == b'/').next().unwrap_or_default();
                let below = lossy_join(&top.path, first);
                return Err(match &top.last {
                    Some((last, Kind::Symlink)) if last == first => Refusal::ThroughSymlink { link: below },
                    Some((last, Kind::File | Kind::HardLink)) if last == first => {
                        Refusal::ParentNotDirectory { parent: below }
                    }
                    _ => Refusal::MissingParent { parent: String::from_utf8_lossy(parent).into_owned() },
                });
            }
            self.levels.pop();
        }
        let top = self.levels.last_mut().expect("found above");
        if let Some((last, _)) = &top.last {
            match name.cmp(last) {
                std::cmp::Ordering::Equal => return Err(Refusal::Duplicate),
                std::cmp::Ordering::Less => {
                    return Err(Refusal::OutOfOrder { previous: lossy_join(&top.path, last) });
                }
                std::cmp::Ordering::Greater => {}
            }
        }
        top.last = Some((name.to_vec(), kind));
        if kind == Kind::Dir {
            self.levels.push(Level { path: path.to_vec(), last: None });
        }
        Ok(())
    }
}

fn lossy_join(dir: &[u8], name: &[u8]) -> String {
    format!("{}/{}", String::from_utf8_lossy(dir), String::from_utf8_lossy(name))
}

/// A path of a volume archive: relative, canonical, under `data`.
fn check_path(path: &[u8]) -> Result<(), Refusal> {
    if path.contains(&0) {
        return Err(Refusal::Nul);
    }
    if path.starts_with(b"/") {
        return Err(Refusal::Absolute);
    }
    let components = || path.split(|&b| b == b'/');
    if components().any(|c| c == b"..") {
        return Err(Refusal::DotDot);
    }
    if components().any(|c| c.is_empty() || c == b".") {
        return Err(Refusal::NonCanonical);
    }
    if components().next() != Some(ROOT.as_bytes()) {
        return Err(Refusal::OutsideRoot);
    }
    Ok(())
}

/// The daemon refuses a symbolic link whose target, joined to the link's
/// directory, leaves the extraction root (moby `pkg/archive` `createTarFile`,
/// "invalid symlink"); since restore extracts at the helper container's `/`,
/// that root is the parent of `data/`. Such an entry would stop a restore
/// half-way, so it is refused before anything is touched.
fn check_symlink(path: &[u8], target: &[u8]) -> Result<(), Refusal> {
    if target.is_empty() {
        return Err(Refusal::EmptySymlink);
    }
    if target.contains(&0) {
        return Err(Refusal::Nul);
    }
    // Depth below the extraction root of the link's directory.
    let mut depth = path.split(|&b| b == b'/').count() - 1;
    for component in target.split(|&b| b == b'/') {
        match component {
            b"" | b"." => {}
            b".." if depth == 0 => {
                return Err(Refusal::SymlinkEscapes { target: String::from_utf8_lossy(target).into_owned() });
            }
            b".." => depth -= 1,
            _ => depth += 1,
        }
    }
    Ok(())
}

/// What the read-ahead thread read: every byte of the archive file, hashed,
/// or the read failure that stopped it (reported as such, not as a
/// malformed archive).
struct ReadAhead {
    bytes: u64,
    hasher: Sha256,
    failure: Option<io::Error>,
}

fn read_ahead(mut archive: impl Read, tx: &mpsc::SyncSender<Vec<u8>>, progress: &AtomicU64) -> ReadAhead {
    let mut read = ReadAhead { bytes: 0, hasher: Sha256::new(), failure: None };
    loop {
        let mut chunk = vec![0u8; READ_CHUNK];
        let n = match archive.read(&mut chunk) {
            Ok(0) => return read,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                read.failure = Some(e);
                return read;
            }
        };
        chunk.truncate(n);
        read.hasher.update(&chunk);
        read.bytes += n as u64;
        progress.store(read.bytes, Ordering::Relaxed);
        if tx.send(chunk).is_err() {
            return read; // the checks stopped early
        }
    }
}

/// The read-ahead chunks as a reader; the end of the channel is the end of
/// the archive (or a read failure, which the caller checks first).
struct Chunks {
    rx: mpsc::Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.recv() {
                Ok(chunk) => (self.chunk, self.pos) = (chunk, 0),
                Err(mpsc::RecvError) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The top of the read stack: what the tar reader consumed, and whether it
/// met the end of the file (rather than an end-of-archive block).
struct Counting<R> {
    inner: R,
    bytes: u64,
    eof: bool,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.eof = true;
        }
        self.bytes += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(archive: &[u8]) -> Result<ArchiveSummary, ArchiveError> {
        inspect(archive, &AtomicU64::new(0))
    }

    fn refusal(archive: &[u8]) -> Refusal {
        match check(archive) {
            Err(ArchiveError::Refused { refusal, .. }) => refusal,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    /// A raw ustar header block, so tests can write what tar-rs's builder
    /// would refuse to.
    fn header(path: &str, typeflag: u8, size: u64, link: &str) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        {
            let old = h.as_old_mut();
            old.name[..path.len()].copy_from_slice(path.as_bytes());
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(tar::EntryType::new(typeflag));
        h.set_size(size);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        h
    }

    struct Raw(Vec<u8>);

    impl Raw {
        fn new() -> Raw {
            Raw(Vec::new()).dir("data/")
        }
        fn entry(mut self, path: &str, typeflag: u8, data: &[u8], link: &str) -> Raw {
            self.0.extend_from_slice(header(path, typeflag, data.len() as u64, link).as_bytes());
            self.0.extend_from_slice(data);
            let pad = (512 - data.len() % 512) % 512;
            self.0.extend(std::iter::repeat_n(0, pad));
            self
        }
        fn dir(self, path: &str) -> Raw {
            self.entry(path, b'5', b"", "")
        }
        fn file(self, path: &str, data: &[u8]) -> Raw {
            self.entry(path, b'0', data, "")
        }
        fn end(mut self) -> Vec<u8> {
            self.0.extend([0; 1024]);
            self.0
        }
    }

    #[test]
    fn accepts_what_docker_writes() {
        let archive = Raw::new()
            .dir("data/a/")
            .dir("data/a/b/")
            .file("data/a/b/f", b"hi\n")
            .file("data/a.txt", b"")
            .entry("data/abs", b'2', b"", "/etc/passwd")
            .entry("data/hard", b'1', b"", "data/a/b/f")
            .entry("data/link", b'2', b"", "a/b/f")
            .entry("data/up", b'2', b"", "../elsewhere")
            .end();
        let summary = check(&archive).unwrap();
        assert_eq!(
            (summary.entries, summary.files, summary.directories, summary.symlinks, summary.hard_links),
            (9, 2, 3, 3, 1)
        );
        assert_eq!(summary.bytes, archive.len() as u64);
        assert_eq!(summary.content_bytes, 3);
        assert_eq!(summary.sha256, hex(&Sha256::digest(&archive)));
    }

    #[test]
    fn refuses_paths_that_leave_the_volume() {
        assert_eq!(refusal(&Raw::new().file("data/../x", b"").end()), Refusal::DotDot);
        assert_eq!(refusal(&Raw::new().file("/data/x", b"").end()), Refusal::Absolute);
        assert_eq!(refusal(&Raw::new().file("other/x", b"").end()), Refusal::OutsideRoot);
        assert_eq!(refusal(&Raw::new().file("data/./x", b"").end()), Refusal::NonCanonical);
        assert_eq!(refusal(&Raw::new().file("data//x", b"").end()), Refusal::NonCanonical);
        assert_eq!(refusal(&Raw(Vec::new()).file("data/x", b"").end()), Refusal::MissingRoot);
    }

    #[test]
    fn refuses_writes_through_links() {
        let archive = Raw::new().entry("data/l", b'2', b"", "/etc").file("data/l/passwd", b"x").end();
        assert_eq!(refusal(&archive), Refusal::ThroughSymlink { link: "data/l".to_owned() });
        let archive = Raw::new().file("data/f", b"").file("data/f/x", b"").end();
        assert_eq!(refusal(&archive), Refusal::ParentNotDirectory { parent: "data/f".to_owned() });
        let archive = Raw::new().file("data/a/x", b"").end();
        assert_eq!(refusal(&archive), Refusal::MissingParent { parent: "data/a".to_owned() });
    }

    #[test]
    fn refuses_duplicates_and_disorder() {
        assert_eq!(refusal(&Raw::new().file("data/a", b"").file("data/a", b"").end()), Refusal::Duplicate);
        assert_eq!(
            refusal(&Raw::new().file("data/b", b"").file("data/a", b"").end()),
            Refusal::OutOfOrder { previous: "data/b".to_owned() }
        );
        assert_eq!(refusal(&Raw::new().dir("data/").end()), Refusal::Duplicate);
    }

    #[test]
    fn refuses_hard_links_outside_the_archive() {
        let outside = |target: &str| Refusal::HardLinkOutside { target: target.to_owned() };
        assert_eq!(refusal(&Raw::new().entry("data/h", b'1', b"", "/etc/shadow").end()), outside("/etc/shadow"));
        assert_eq!(refusal(&Raw::new().entry("data/h", b'1', b"", "data/../x").end()), outside("data/../x"));
        assert_eq!(refusal(&Raw::new().entry("data/h", b'1', b"", "data/later").end()), outside("data/later"));
        let to_dir = Raw::new().dir("data/d/").entry("data/h", b'1', b"", "data/d").end();
        assert_eq!(refusal(&to_dir), outside("data/d"));
    }

    #[test]
    fn refuses_special_files_and_unknown_types() {
        assert_eq!(
            refusal(&Raw::new().entry("data/c", b'3', b"", "").end()),
            Refusal::Special { kind: "character device" }
        );
        assert_eq!(
            refusal(&Raw::new().entry("data/b", b'4', b"", "").end()),
            Refusal::Special { kind: "block device" }
        );
        assert_eq!(refusal(&Raw::new().entry("data/p", b'6', b"", "").end()), Refusal::Special { kind: "FIFO" });
        assert_eq!(
            refusal(&Raw::new().entry("data/s", b'7', b"", "").end()),
            Refusal::UnsupportedType { typeflag: '7' }
        );
        // Sparse files: Go and tar-rs lay out their data differently.
        let sparse = refusal(&Raw::new().entry("data/s", b'S', b"", "").end());
        assert!(matches!(sparse, Refusal::UnsupportedType { typeflag: 'S' } | Refusal::Malformed { .. }), "{sparse:?}");
        assert_eq!(
            refusal(&Raw::new().entry("data/g", b'g', b"", "").end()),
            Refusal::UnsupportedType { typeflag: 'g' }
        );
    }

    #[test]
    fn refuses_symlinks_the_daemon_would_not_extract() {
        let escapes = Raw::new().entry("data/l", b'2', b"", "../../etc").end();
        assert_eq!(refusal(&escapes), Refusal::SymlinkEscapes { target: "../../etc".to_owned() });
        assert_eq!(refusal(&Raw::new().entry("data/l", b'2', b"", "").end()), Refusal::EmptySymlink);
    }

    #[test]
    fn refuses_parser_differentials() {
        // A directory "with data": tar-rs would skip it, Go would read it as headers.
        let hidden = Raw::new().entry("data/d/", b'5', &[0u8; 512], "").end();
        assert_eq!(refusal(&hidden), Refusal::DataOnHeaderOnly { size: 512 });
        // Type '\0' with a trailing slash: Go makes it a directory.
        assert_eq!(refusal(&Raw::new().entry("data/x/", 0, b"", "").end()), Refusal::SlashOnNonDirectory);
    }

    #[test]
    fn refuses_truncation_and_trailing_data() {
        let full = Raw::new().file("data/f", &[7u8; 1000]).end();
        let cut_in_data = &full[..512 + 512 + 700];
        assert!(
            matches!(refusal(cut_in_data), Refusal::Truncated { expected: 1000, .. }),
            "{:?}",
            refusal(cut_in_data)
        );
        let cut_at_end = &full[..full.len() - 1024];
        assert_eq!(refusal(cut_at_end), Refusal::MissingEnd);
        let one_zero_block = &full[..full.len() - 512];
        assert_eq!(refusal(one_zero_block), Refusal::MissingEnd);
        let cut_in_header = &full[..100];
        assert_eq!(refusal(cut_in_header), Refusal::MissingEnd);
        let mut trailing = full.clone();
        trailing.extend(b"surprise");
        assert_eq!(refusal(&trailing), Refusal::TrailingData);
        let mut bad_checksum = full.clone();
        bad_checksum[512] ^= 1;
        assert!(matches!(refusal(&bad_checksum), Refusal::Malformed { .. }));
    }

    #[test]
    fn refuses_unknown_pax_records_and_ambiguous_names() {
        let pax = |records: &str| {
            let mut raw = Raw::new().entry("data/PaxHeader", b'x', records.as_bytes(), "");
            raw = raw.file("data/f", b"");
            raw.end()
        };
        // A PAX record counts its own length digits: "<len> key=value\n".
        let record = |key: &str, value: &str| {
            let body = format!(" {key}={value}\n");
            let mut len = body.len() + 1;
            while len != body.len() + len.to_string().len() {
                len = body.len() + len.to_string().len();
            }
            format!("{len}{body}")
        };
        assert_eq!(refusal(&pax(&record("GNU.sparse.size", "10"))), Refusal::Pax { key: "GNU.sparse.size".to_owned() });
        assert!(check(&pax(&record("path", "data/f"))).is_ok());
        assert!(check(&pax(&record("SCHILY.xattr.security.capability", "x"))).is_ok());
        // A GNU long name and a PAX path for one entry: which one wins depends on the reader.
        let mut archive = Raw::new().entry("data/PaxHeader", b'x', record("path", "data/a").as_bytes(), "");
        archive = archive.entry("././@LongLink", b'L', b"data/b\0", "").file("data/c", b"");
        assert_eq!(refusal(&archive.end()), Refusal::Ambiguous { key: "path" });
    }

    #[test]
    fn reports_read_failures_as_such() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk on fire"))
            }
        }
        let err = inspect(Failing, &AtomicU64::new(0)).unwrap_err();
        assert!(matches!(err, ArchiveError::Read(ref e) if e.to_string() == "disk on fire"), "{err:?}");
    }
}
