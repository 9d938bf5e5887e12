//! Files an operator points lkg at (keys, release notes, config, compose and
//! lock files), read with a size limit: `--key /dev/zero` or a 3 GB
//! `--notes-file` is an error after a few bytes too many, not memory
//! exhausted. Pipes (`/dev/stdin`, `<(...)`) still work.

// The one place that opens operator files; errors carry no path (the
// caller's error names it), as std's do.
#![allow(clippy::disallowed_methods)]

use std::io::Read as _;
use std::path::Path;

/// The most lkg reads of a key file.
pub const MAX_KEY: u64 = 64 << 10;
/// The most lkg reads of a text an operator writes (release notes, a config file).
pub const MAX_TEXT: u64 = 1 << 20;
/// The most lkg reads of a recipe or data file (compose, lock and manifest files).
pub const MAX_DOCUMENT: u64 = 16 << 20;

/// Reads `path` as UTF-8 text, at most `limit` bytes: a larger file is an
/// `InvalidData` error that says the limit, and is not read past it.
pub fn read_to_string(path: &Path, limit: u64) -> std::io::Result<String> {
    let bytes = read(path, limit)?;
    String::from_utf8(bytes)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not UTF-8 text: {e}")))
}

/// Reads `path`, at most `limit` bytes (see [`read_to_string`]).
pub fn read(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {}, the most lkg reads of such a file", size(limit)),
        ));
    }
    Ok(bytes)
}

fn size(bytes: u64) -> String {
    if bytes >= 1 << 20 { format!("{} MiB", bytes >> 20) } else { format!("{} KiB", bytes >> 10) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endless_file_is_refused_after_the_limit() {
        let err = read_to_string(Path::new("/dev/zero"), MAX_KEY).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        assert_eq!(err.to_string(), "larger than 64 KiB, the most lkg reads of such a file");
    }

    #[test]
    fn a_file_within_the_limit_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.md");
        std::fs::write(&path, "x".repeat(1024)).unwrap();
        assert_eq!(read_to_string(&path, 1024).unwrap().len(), 1024);
        assert!(read_to_string(&path, 1023).is_err());
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        assert!(read_to_string(&path, 1024).unwrap_err().to_string().starts_with("not UTF-8 text"));
    }
}
