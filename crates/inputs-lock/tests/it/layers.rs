//! Tar layers built in tests, as image builders write them.

use std::io::Write;

/// One entry of a test layer.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Entry<'a> {
    /// A directory.
    Dir(&'a str),
    /// A regular file with content.
    File(&'a str, &'a [u8]),
    /// A symbolic link to a target.
    Symlink(&'a str, &'a str),
    /// A whiteout deleting `path` from lower layers (`dir/.wh.name`).
    Whiteout(&'a str),
    /// An opaque whiteout of a directory (`dir/.wh..wh..opq`).
    Opaque(&'a str),
    /// A file whose path is carried by a PAX `path` record (the ustar name
    /// field holds a truncated stand-in, as Go's archive/tar writes it).
    PaxFile(&'a str),
}

/// An uncompressed tar of `entries`, GNU headers (long names as `L` records).
pub(crate) fn tar(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o755);
        header.set_mtime(1_700_000_000);
        match *entry {
            Entry::Dir(path) => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                builder.append_data(&mut header, format!("{path}/"), std::io::empty()).unwrap();
            }
            Entry::File(path, content) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(content.len() as u64);
                builder.append_data(&mut header, path, content).unwrap();
            }
            Entry::Symlink(path, target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                builder.append_link(&mut header, path, target).unwrap();
            }
            Entry::Whiteout(path) => {
                let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
                let wh = if parent.is_empty() { format!(".wh.{name}") } else { format!("{parent}/.wh.{name}") };
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(0);
                builder.append_data(&mut header, wh, std::io::empty()).unwrap();
            }
            Entry::Opaque(dir) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(0);
                let path = if dir.is_empty() { ".wh..wh..opq".to_owned() } else { format!("{dir}/.wh..wh..opq") };
                builder.append_data(&mut header, path, std::io::empty()).unwrap();
            }
            Entry::PaxFile(path) => {
                let record = pax_record("path", path);
                let mut pax = tar::Header::new_ustar();
                pax.set_path("PaxHeaders.0/file").unwrap();
                pax.set_entry_type(tar::EntryType::XHeader);
                pax.set_size(record.len() as u64);
                pax.set_mode(0o644);
                pax.set_cksum();
                builder.append(&pax, record.as_slice()).unwrap();
                let mut file = tar::Header::new_ustar();
                file.set_path("truncated-stand-in").unwrap();
                file.set_entry_type(tar::EntryType::Regular);
                file.set_size(3);
                file.set_mode(0o644);
                file.set_cksum();
                builder.append(&file, &b"abc"[..]).unwrap();
            }
        }
    }
    builder.into_inner().unwrap()
}

/// A PAX record `"<len> key=value\n"`, whose length counts itself.
fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while format!("{len}").len() + body.len() != len {
        len += 1;
    }
    format!("{len}{body}").into_bytes()
}

/// `bytes`, gzip-compressed.
pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// A gzip-compressed layer of `entries`.
pub(crate) fn layer(entries: &[Entry<'_>]) -> Vec<u8> {
    gzip(&tar(entries))
}
