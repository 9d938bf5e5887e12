//! Kernel releases installed in an image, found by reading its layers' tar
//! headers, never the file contents.
//!
//! A kernel release is a directory `usr/lib/modules/<release>/` (or
//! `lib/modules/<release>/`) in the image's merged filesystem: what the
//! OS-image pipeline found with `find /lib/modules -mindepth 1 -maxdepth 1
//! -type d` inside a running container. Here each layer is read as a stream
//! ([`LayerScan`] is a [`std::io::Write`] sink: feed it the blob as it
//! arrives) into a small [`LayerKernels`] summary, and the summaries are
//! merged in layer order honouring OCI whiteouts ([`merge_layers`]):
//!
//! - `.wh.<name>` deletes `<name>` from the layers below
//!   (OCI image spec, layer.md, "Whiteouts");
//! - `.wh..wh..opq` in a directory hides everything the layers below had in it
//!   ("Opaque Whiteout");
//! - a non-directory entry at a path replaces whatever directory the layers
//!   below had there ("Changesets": a modified path is the new entry).
//!
//! Whiteouts apply only to lower layers: an entry in the same layer as its
//! whiteout survives (spec: "Files that are present in the same layer as a
//! whiteout file can only be hidden by whiteout files in subsequent layers").

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::io::{self, Read, Write};

use flate2::write::MultiGzDecoder;

const BLOCK: usize = 512;
/// A GNU long name or PAX header larger than this is not a path: refuse it
/// rather than hold it (`PATH_MAX` is 4096).
const MAX_EXTENSION: u64 = 1 << 20;
/// The directories whose `modules/<release>` children are kernel releases.
const MODULE_ROOTS: [&str; 2] = ["usr/lib/modules", "lib/modules"];
/// Directories above the module roots: deleting or hiding one deletes the
/// releases below it.
const ANCESTORS: [&str; 5] = ["usr", "usr/lib", "usr/lib/modules", "lib", "lib/modules"];

/// What one layer does to the set of kernel release directories.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerKernels {
    /// Release directories the layer has (`usr/lib/modules/6.18.9-200.fc43.x86_64`),
    /// from a directory entry or from any entry below one.
    pub added: BTreeSet<String>,
    /// Paths the layer deletes from the layers below: whiteout targets, and
    /// non-directories that replace a directory. Only paths that can hold a
    /// release are kept.
    pub deleted: BTreeSet<String>,
    /// Directories whose lower-layer contents the layer hides (`""` is the root).
    pub opaque: BTreeSet<String>,
    /// Tar entries read.
    pub entries: u64,
    /// Uncompressed tar bytes read.
    pub tar_bytes: u64,
}

impl LayerKernels {
    /// Applies this layer on top of `present` (release directory paths).
    pub fn apply(&self, present: &mut BTreeSet<String>) {
        let below =
            |p: &str, dir: &str| dir.is_empty() || (p.starts_with(dir) && p.as_bytes().get(dir.len()) == Some(&b'/'));
        for path in &self.deleted {
            present.retain(|p| p != path && !below(p, path));
        }
        for dir in &self.opaque {
            present.retain(|p| !below(p, dir));
        }
        present.extend(self.added.iter().cloned());
    }
}

/// The kernel releases of an image whose layers (lowest first) are `layers`:
/// naturally sorted, oldest first, without duplicates (a release under both
/// `usr/lib/modules` and `lib/modules` is one release).
pub fn merge_layers<'a>(layers: impl IntoIterator<Item = &'a LayerKernels>) -> Vec<String> {
    let mut present = BTreeSet::new();
    for layer in layers {
        layer.apply(&mut present);
    }
    sort_kernel_releases(present.iter().filter_map(|p| p.rsplit('/').next()).map(str::to_owned))
}

/// Natural order of kernel releases: digit runs compare as numbers, so
/// `6.18.9` < `6.18.10` < `6.18.12`; at the same position a number sorts
/// before text (the OS-image pipeline's `kernel_release_sort_key`). Ties in
/// value (`01` and `1`) fall back to the text, so the order is total.
pub fn natural_cmp(left: &str, right: &str) -> Ordering {
    let (mut left_runs, mut right_runs) = (Segments(left), Segments(right));
    loop {
        match (left_runs.next(), right_runs.next()) {
            (None, None) => return left.cmp(right),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(left_run), Some(right_run)) => {
                let order = match (is_digits(left_run), is_digits(right_run)) {
                    (true, true) => {
                        let left_run = left_run.trim_start_matches('0');
                        let right_run = right_run.trim_start_matches('0');
                        left_run.len().cmp(&right_run.len()).then_with(|| left_run.cmp(right_run))
                    }
                    (true, false) => Ordering::Less,
                    (false, true) => Ordering::Greater,
                    (false, false) => left_run.cmp(right_run),
                };
                if order != Ordering::Equal {
                    return order;
                }
            }
        }
    }
}

fn is_digits(s: &str) -> bool {
    s.as_bytes().first().is_some_and(u8::is_ascii_digit)
}

/// Splits text into alternating runs of digits and non-digits.
struct Segments<'a>(&'a str);

impl<'a> Iterator for Segments<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        let first = self.0.as_bytes().first()?;
        let digit = first.is_ascii_digit();
        let end = self.0.bytes().position(|b| b.is_ascii_digit() != digit).unwrap_or(self.0.len());
        let (run, rest) = self.0.split_at(end);
        self.0 = rest;
        Some(run)
    }
}

/// `releases` in natural order, duplicates removed.
pub fn sort_kernel_releases(releases: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut releases: Vec<String> = releases.into_iter().collect();
    releases.sort_by(|a, b| natural_cmp(a, b));
    releases.dedup();
    releases
}

/// The Fedora release of a kernel (`6.18.12-200.fc43.x86_64` -> `43`): the
/// digits after the last `fc`, as the pipeline's `.*fc([0-9]+).*` takes them.
pub fn fedora_release(kernel: &str) -> Option<&str> {
    kernel.rmatch_indices("fc").find_map(|(i, _)| {
        let rest = &kernel[i + 2..];
        let end = rest.bytes().position(|b| !b.is_ascii_digit()).unwrap_or(rest.len());
        (end > 0).then(|| &rest[..end])
    })
}

/// Why a layer could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KernelError {
    /// A compression lkg does not read.
    #[error("the layer is {format}-compressed; lkg reads gzip and uncompressed layers")]
    UnsupportedCompression {
        /// `zstd`.
        format: &'static str,
    },
    /// The gzip stream is corrupt or truncated.
    #[error("the layer's gzip stream is corrupt or truncated: {reason}")]
    Gzip {
        /// What flate2 said.
        reason: String,
    },
    /// A tar header is malformed.
    #[error("the layer is not a valid tar at byte {offset}: {reason}")]
    Tar {
        /// Offset in the uncompressed tar.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The tar ends inside an entry.
    #[error("the layer's tar ends inside an entry at byte {offset}: it is truncated")]
    Truncated {
        /// Offset in the uncompressed tar.
        offset: u64,
    },
}

/// A layer blob, fed as it arrives, read for kernel release directories.
///
/// Gzip and uncompressed tar are recognised by their first bytes, whatever
/// the media type says; memory stays bounded (a 32 KiB inflate window, one
/// tar block, at most one long name) however large the layer.
///
/// ```
/// use std::io::Write;
/// let mut tar = tar::Builder::new(Vec::new());
/// let mut header = tar::Header::new_ustar();
/// header.set_entry_type(tar::EntryType::Directory);
/// header.set_size(0);
/// tar.append_data(&mut header, "usr/lib/modules/6.18.9-200.fc43.x86_64/", std::io::empty()).unwrap();
/// let layer = tar.into_inner().unwrap();
///
/// let mut scan = lkg_inputs_lock::LayerScan::new();
/// scan.write_all(&layer).unwrap();
/// let kernels = scan.finish().unwrap();
/// assert_eq!(lkg_inputs_lock::merge_layers([&kernels]), ["6.18.9-200.fc43.x86_64"]);
/// ```
#[derive(Debug)]
pub struct LayerScan {
    decoder: Decoder,
    error: Option<KernelError>,
}

#[derive(Debug)]
enum Decoder {
    Sniff(Vec<u8>),
    Gzip(Box<MultiGzDecoder<TarScan>>),
    Plain(Box<TarScan>),
    Failed,
}

impl Default for LayerScan {
    fn default() -> LayerScan {
        LayerScan::new()
    }
}

impl LayerScan {
    /// A scan waiting for the layer's first bytes.
    pub fn new() -> LayerScan {
        LayerScan { decoder: Decoder::Sniff(Vec::with_capacity(4)), error: None }
    }

    /// The error that stopped the scan, if any (a [`Write`] caller sees only
    /// an `io::Error`).
    pub fn error(&self) -> Option<&KernelError> {
        self.error.as_ref()
    }

    /// Ends the stream: checks that the gzip trailer and the tar are
    /// complete, and returns what the layer does to kernel releases.
    pub fn finish(mut self) -> Result<LayerKernels, KernelError> {
        if let Some(error) = self.error.take() {
            return Err(error);
        }
        if let Decoder::Sniff(head) = &self.decoder {
            let head = head.clone();
            self.choose(&head)?;
        }
        match self.decoder {
            Decoder::Plain(tar) => tar.finish(),
            Decoder::Gzip(mut gz) => {
                if let Err(e) = gz.try_finish() {
                    return Err(gz.get_ref().error.clone().unwrap_or(KernelError::Gzip { reason: e.to_string() }));
                }
                let tar = gz.finish().map_err(|e| KernelError::Gzip { reason: e.to_string() })?;
                tar.finish()
            }
            Decoder::Sniff(_) | Decoder::Failed => Err(KernelError::Gzip { reason: "the scan was not started".into() }),
        }
    }

    /// Picks the decoder from the first bytes and feeds them to it.
    fn choose(&mut self, head: &[u8]) -> Result<(), KernelError> {
        self.decoder = if head.starts_with(&[0x1f, 0x8b]) {
            Decoder::Gzip(Box::new(MultiGzDecoder::new(TarScan::default())))
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            self.decoder = Decoder::Failed;
            return Err(KernelError::UnsupportedCompression { format: "zstd" });
        } else {
            Decoder::Plain(Box::default())
        };
        self.feed(head)
    }

    fn feed(&mut self, bytes: &[u8]) -> Result<(), KernelError> {
        let result = match &mut self.decoder {
            Decoder::Plain(tar) => tar.write_all(bytes).map_err(|_| tar.error.clone()),
            Decoder::Gzip(gz) => gz
                .write_all(bytes)
                .map_err(|e| Some(gz.get_ref().error.clone().unwrap_or(KernelError::Gzip { reason: e.to_string() }))),
            Decoder::Sniff(_) | Decoder::Failed => Ok(()),
        };
        result.map_err(|e| e.unwrap_or(KernelError::Gzip { reason: "write failed".into() }))
    }
}

impl Write for LayerScan {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(error) = &self.error {
            return Err(io::Error::other(error.to_string()));
        }
        let result = match &mut self.decoder {
            Decoder::Sniff(head) => {
                let take = (4 - head.len()).min(buf.len());
                head.extend_from_slice(&buf[..take]);
                if head.len() < 4 {
                    Ok(())
                } else {
                    let head = std::mem::take(head);
                    self.choose(&head).and_then(|()| self.feed(&buf[take..]))
                }
            }
            _ => self.feed(buf),
        };
        match result {
            Ok(()) => Ok(buf.len()),
            Err(error) => {
                let io = io::Error::other(error.to_string());
                self.error = Some(error);
                Err(io)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Scans a whole layer from a reader (a file, a decompressed stream).
pub fn scan_layer(mut reader: impl Read) -> Result<LayerKernels, ScanError> {
    let mut scan = LayerScan::new();
    let mut buf = vec![0; 256 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ScanError::Read(e)),
        };
        if scan.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    scan.finish().map_err(ScanError::Layer)
}

/// Why [`scan_layer`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScanError {
    /// Reading the layer failed.
    #[error("cannot read the layer")]
    Read(#[source] io::Error),
    /// The layer is malformed.
    #[error(transparent)]
    Layer(#[from] KernelError),
}

/// The tar header state machine: consumes uncompressed tar bytes, looks at
/// each 512-byte header and skips entry data without copying it.
#[derive(Debug, Default)]
struct TarScan {
    block: Vec<u8>,
    state: State,
    long_name: Option<Vec<u8>>,
    pax_size: Option<u64>,
    zero_blocks: u8,
    ended: bool,
    offset: u64,
    kernels: LayerKernels,
    error: Option<KernelError>,
}

#[derive(Debug, Default)]
enum State {
    #[default]
    Header,
    /// Skipping entry data and padding.
    Skip(u64),
    /// Collecting a GNU long name (`L`) or PAX (`x`) record, then skipping `padding`.
    Extension { pax: bool, data: Vec<u8>, remaining: u64, padding: u64 },
    /// Reading old-GNU sparse extension blocks, then skipping `then`.
    SparseMap { then: u64 },
}

fn padded(size: u64) -> u64 {
    size.div_ceil(BLOCK as u64) * BLOCK as u64
}

impl TarScan {
    fn fail(&mut self, error: KernelError) -> io::Error {
        let io = io::Error::other(error.to_string());
        self.error = Some(error);
        io
    }

    fn malformed(&mut self, reason: impl Into<String>) -> io::Error {
        let offset = self.offset;
        self.fail(KernelError::Tar { offset, reason: reason.into() })
    }

    fn finish(self) -> Result<LayerKernels, KernelError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        // Archives without the two zero blocks end at a header boundary; GNU
        // tar lists them too.
        if !self.ended && (!matches!(self.state, State::Header) || !self.block.is_empty()) {
            return Err(KernelError::Truncated { offset: self.offset });
        }
        Ok(self.kernels)
    }

    fn on_block(&mut self) -> io::Result<()> {
        let block = std::mem::take(&mut self.block);
        let result = match self.state {
            State::SparseMap { then } => {
                // `isextended` is the byte after 21 sparse entries of 24 bytes.
                if block[504] == 0 {
                    self.state = if then == 0 { State::Header } else { State::Skip(then) };
                }
                Ok(())
            }
            _ => self.on_header(&block),
        };
        self.block = block;
        self.block.clear();
        result
    }

    fn on_header(&mut self, block: &[u8]) -> io::Result<()> {
        if block.iter().all(|&b| b == 0) {
            self.zero_blocks += 1;
            self.ended = self.zero_blocks >= 2;
            return Ok(());
        }
        self.zero_blocks = 0;
        let header = tar::Header::from_byte_slice(block);
        let stored = header.cksum().map_err(|e| self.malformed(format!("unreadable checksum: {e}")))?;
        let (unsigned, signed) = block.iter().enumerate().fold((0u32, 0i32), |(u, s), (i, &b)| {
            let b = if (148..156).contains(&i) { b' ' } else { b };
            #[allow(clippy::cast_possible_wrap)] // old tars summed signed chars
            (u + u32::from(b), s + i32::from(b as i8))
        });
        #[allow(clippy::cast_sign_loss)]
        if stored != unsigned && stored != signed as u32 {
            return Err(self.malformed(format!("header checksum {stored} does not match {unsigned}")));
        }
        let entry_type = header.entry_type().as_byte();
        let size = match self.pax_size.take() {
            Some(size) => size,
            None => header.entry_size().map_err(|e| self.malformed(e.to_string()))?,
        };
        match entry_type {
            b'L' | b'x' => {
                if size > MAX_EXTENSION {
                    return Err(self.malformed(format!("a {size}-byte long-name or PAX record")));
                }
                self.state = State::Extension {
                    pax: entry_type == b'x',
                    data: Vec::with_capacity(usize::try_from(size).unwrap_or(0)),
                    remaining: size,
                    padding: padded(size) - size,
                };
                if size == 0 {
                    self.end_extension();
                }
            }
            // Global PAX records, GNU long link names: nothing about paths.
            b'g' | b'K' => self.state = State::Skip(padded(size)),
            _ => {
                self.kernels.entries += 1;
                let path = match self.long_name.take() {
                    Some(name) => name,
                    None => header.path_bytes().into_owned(),
                };
                let is_dir = entry_type == b'5' || (matches!(entry_type, b'0' | 0) && path.ends_with(b"/"));
                self.on_entry(&path, is_dir);
                // Like Go's archive/tar, link, device, directory and FIFO
                // entries carry no data whatever their size field says.
                let data = if matches!(entry_type, b'1'..=b'6') { 0 } else { padded(size) };
                let extended = entry_type == b'S' && header.as_gnu().is_some_and(tar::GnuHeader::is_extended);
                self.state = if extended {
                    State::SparseMap { then: data }
                } else if data == 0 {
                    State::Header
                } else {
                    State::Skip(data)
                };
            }
        }
        Ok(())
    }

    fn end_extension(&mut self) {
        let State::Extension { pax, data, padding, .. } = std::mem::take(&mut self.state) else { return };
        if pax {
            for extension in tar::PaxExtensions::new(&data).flatten() {
                match extension.key() {
                    Ok("path") => self.long_name = Some(extension.value_bytes().to_vec()),
                    Ok("size") => {
                        self.pax_size = extension.value().ok().and_then(|v| v.parse().ok());
                    }
                    _ => {}
                }
            }
        } else {
            let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
            self.long_name = Some(data[..end].to_vec());
        }
        self.state = if padding == 0 { State::Header } else { State::Skip(padding) };
    }

    fn on_entry(&mut self, raw: &[u8], is_dir: bool) {
        let text = String::from_utf8_lossy(raw);
        let mut path: &str = &text;
        loop {
            let trimmed = path.trim_start_matches('/');
            let trimmed = trimmed.strip_prefix("./").unwrap_or(trimmed);
            if trimmed == path {
                break;
            }
            path = trimmed;
        }
        let path = path.trim_end_matches('/');
        if path.is_empty() || path == "." {
            return;
        }
        let (parent, base) = path.rsplit_once('/').unwrap_or(("", path));
        if let Some(target) = base.strip_prefix(".wh.") {
            if target == ".wh..opq" {
                if parent.is_empty() || ANCESTORS.contains(&parent) {
                    self.kernels.opaque.insert(parent.to_owned());
                }
            } else {
                let victim = if parent.is_empty() { target.to_owned() } else { format!("{parent}/{target}") };
                if ANCESTORS.contains(&victim.as_str()) || release_of(&victim).is_some_and(|(_, exact)| exact) {
                    self.kernels.deleted.insert(victim);
                }
            }
            return;
        }
        match release_of(path) {
            Some((dir, true)) if !is_dir => {
                self.kernels.deleted.insert(dir);
            }
            Some((dir, _)) => {
                self.kernels.added.insert(dir);
            }
            None if !is_dir && ANCESTORS.contains(&path) => {
                self.kernels.deleted.insert(path.to_owned());
            }
            None => {}
        }
    }
}

/// `usr/lib/modules/<r>[/...]` -> (`usr/lib/modules/<r>`, whether the path is
/// the release directory itself).
fn release_of(path: &str) -> Option<(String, bool)> {
    MODULE_ROOTS.iter().find_map(|root| {
        let rest = path.strip_prefix(root)?.strip_prefix('/')?;
        let (release, below) = rest.split_once('/').map_or((rest, false), |(r, _)| (r, true));
        is_release_name(release).then(|| (format!("{root}/{release}"), !below))
    })
}

/// Whether a directory name under `modules/` can be a kernel release
/// (`6.18.9-200.fc43.x86_64`, `5.15.0-91-generic`): 1 to 128 letters,
/// digits, `.`, `-`, `_`, `+`, `~`, and not `.` or `..`. Anything else (a
/// path that climbs out, a 5,000-character name, escape sequences) is a
/// hostile or broken layer, not a release to report.
fn is_release_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-+~".contains(&b))
}

impl Write for TarScan {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.error.is_some() {
            return Err(io::Error::other("the tar scan already failed"));
        }
        let mut input = buf;
        while !input.is_empty() && !self.ended {
            let consumed = match &mut self.state {
                State::Header | State::SparseMap { .. } => {
                    let take = (BLOCK - self.block.len()).min(input.len());
                    self.block.extend_from_slice(&input[..take]);
                    if self.block.len() == BLOCK {
                        self.offset += BLOCK as u64;
                        self.kernels.tar_bytes += BLOCK as u64;
                        self.on_block()?;
                    }
                    take
                }
                State::Skip(remaining) => {
                    let take = usize::try_from(*remaining).unwrap_or(usize::MAX).min(input.len());
                    *remaining -= take as u64;
                    if *remaining == 0 {
                        self.state = State::Header;
                    }
                    self.offset += take as u64;
                    self.kernels.tar_bytes += take as u64;
                    take
                }
                State::Extension { data, remaining, .. } => {
                    let take = usize::try_from(*remaining).unwrap_or(usize::MAX).min(input.len());
                    data.extend_from_slice(&input[..take]);
                    *remaining -= take as u64;
                    let done = *remaining == 0;
                    self.offset += take as u64;
                    self.kernels.tar_bytes += take as u64;
                    if done {
                        self.end_extension();
                    }
                    take
                }
            };
            input = &input[consumed..];
        }
        // Whatever follows the end-of-archive blocks (record padding) is ignored.
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl lkg_core::Classify for ScanError {
    fn kind(&self) -> lkg_core::FailureKind {
        match self {
            ScanError::Read(_) => lkg_core::FailureKind::Environment,
            _ => lkg_core::FailureKind::Input,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order() {
        let sorted = sort_kernel_releases(
            ["6.18.12-200.fc43.x86_64", "6.18.9-200.fc43.x86_64", "6.18.10-200.fc43.x86_64", "6.18.9-200.fc43.x86_64"]
                .map(String::from),
        );
        assert_eq!(sorted, ["6.18.9-200.fc43.x86_64", "6.18.10-200.fc43.x86_64", "6.18.12-200.fc43.x86_64"]);
        assert_eq!(natural_cmp("6.18.9", "6.18.10"), Ordering::Less);
        assert_eq!(natural_cmp("6.18.10", "6.18.12"), Ordering::Less);
        assert_eq!(natural_cmp("6.9", "6.10"), Ordering::Less);
        // Numbers before text at the same position, as the pipeline's key does.
        assert_eq!(natural_cmp("6.18.0-rc1", "6.18.0-200"), Ordering::Greater);
        assert_eq!(natural_cmp("1", "01"), Ordering::Greater);
        assert_eq!(natural_cmp("6.18.99999999999999999999999", "6.18.100000000000000000000000"), Ordering::Less);
    }

    #[test]
    fn fedora_release_from_kernel() {
        assert_eq!(fedora_release("6.18.12-200.fc43.x86_64"), Some("43"));
        assert_eq!(fedora_release("6.8.0-1.el9"), None);
        assert_eq!(fedora_release("6.18.12-200.fc43.fc44x"), Some("44"));
    }

    #[test]
    fn release_paths() {
        assert_eq!(release_of("usr/lib/modules/6.1"), Some(("usr/lib/modules/6.1".into(), true)));
        assert_eq!(release_of("lib/modules/6.1/vmlinuz"), Some(("lib/modules/6.1".into(), false)));
        assert_eq!(release_of("usr/lib/modules"), None);
        assert_eq!(release_of("usr/lib/modulesx/6.1"), None);
        // Names that are no release: climbing out, too long, control characters.
        assert_eq!(release_of("usr/lib/modules/../../../etc"), None);
        assert_eq!(release_of("usr/lib/modules/./x"), None);
        assert_eq!(release_of(&format!("usr/lib/modules/{}", "6".repeat(5000))), None);
        assert_eq!(release_of("usr/lib/modules/6.1\u{1b}[31m/"), None);
        assert_eq!(release_of("lib/modules/5.15.0-91-generic"), Some(("lib/modules/5.15.0-91-generic".into(), true)));
    }
}
