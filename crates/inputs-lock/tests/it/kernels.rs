//! Kernel releases from layer tar headers: whiteouts, opaque directories,
//! replaced directories, long names, chunked streams, broken layers.

use std::io::Write;
use std::process::Command;

use lkg_inputs_lock::{KernelError, LayerKernels, LayerScan, merge_layers, scan_layer};

use crate::layers::{Entry, gzip, layer, tar};

const K9: &str = "6.18.9-200.fc43.x86_64";
const K10: &str = "6.18.10-200.fc43.x86_64";
const K12: &str = "6.18.12-200.fc43.x86_64";

fn scan(bytes: &[u8], chunk: usize) -> Result<LayerKernels, KernelError> {
    let mut scan = LayerScan::new();
    for piece in bytes.chunks(chunk) {
        if scan.write_all(piece).is_err() {
            break;
        }
    }
    scan.finish()
}

fn kernels(layers: &[Vec<u8>]) -> Vec<String> {
    let scanned: Vec<LayerKernels> = layers.iter().map(|l| scan(l, 4096).expect("layer scans")).collect();
    merge_layers(&scanned)
}

fn modules(release: &str) -> String {
    format!("usr/lib/modules/{release}")
}

#[test]
fn a_whiteout_in_a_later_layer_deletes_an_older_kernel() {
    let (m9, m10, m12) = (modules(K9), modules(K10), modules(K12));
    let base = layer(&[
        Entry::Dir("usr"),
        Entry::Dir("usr/lib"),
        Entry::Dir("usr/lib/modules"),
        Entry::Dir(&m9),
        Entry::File(&format!("{m9}/vmlinuz"), b"old kernel"),
        Entry::Dir(&m10),
        Entry::File(&format!("{m10}/vmlinuz"), b"kernel"),
    ]);
    let update = layer(&[Entry::Whiteout(&m9), Entry::Dir(&m12), Entry::File(&format!("{m12}/vmlinuz"), b"new")]);
    let unrelated = layer(&[Entry::File("etc/os-release", b"NAME=Fedora")]);
    assert_eq!(kernels(&[base.clone(), update.clone(), unrelated.clone()]), [K10, K12]);
    // Without the update the old kernel is there: the whiteout did it.
    assert_eq!(kernels(&[base, unrelated]), [K9, K10]);
}

#[test]
fn natural_order_and_one_entry_per_release() {
    // Tar order is not release order, and a release under both roots is one.
    let layer = layer(&[
        Entry::Dir(&modules(K12)),
        Entry::Dir(&modules(K9)),
        Entry::File(&format!("lib/modules/{K10}/modules.dep"), b""),
        Entry::Dir(&modules(K10)),
        Entry::Dir(&format!("./usr/lib/modules/{K9}/kernel")),
    ]);
    assert_eq!(kernels(&[layer]), [K9, K10, K12]);
}

#[test]
fn an_opaque_directory_hides_lower_kernels_but_keeps_its_own() {
    let lower = layer(&[Entry::Dir(&modules(K9)), Entry::Dir(&modules(K10)), Entry::Dir(&format!("lib/modules/{K9}"))]);
    let upper = layer(&[Entry::Opaque("usr/lib/modules"), Entry::Dir(&modules(K12))]);
    // `lib/modules` is another directory: the opaque `usr/lib/modules` does not hide it.
    assert_eq!(kernels(&[lower, upper]), [K9, K12]);
}

#[test]
fn deleting_or_replacing_an_ancestor_deletes_the_kernels_below() {
    let lower = layer(&[Entry::Dir(&modules(K9)), Entry::Dir(&format!("lib/modules/{K10}"))]);
    let gone = layer(&[Entry::Whiteout("usr/lib")]);
    assert_eq!(kernels(&[lower.clone(), gone]), [K10]);
    // Fedora's `lib -> usr/lib` symlink replaces a real `lib/` directory.
    let symlinked = layer(&[Entry::Symlink("lib", "usr/lib")]);
    assert_eq!(kernels(&[lower.clone(), symlinked]), [K9]);
    let root_opaque = layer(&[Entry::Opaque(""), Entry::Dir(&modules(K12))]);
    assert_eq!(kernels(&[lower.clone(), root_opaque]), [K12]);
    // A regular file where a release directory was replaces it too.
    let file = layer(&[Entry::File(&modules(K9), b"not a directory")]);
    assert_eq!(kernels(&[lower, file]), [K10]);
}

#[test]
fn a_whiteout_does_not_hide_its_own_layer() {
    let lower = layer(&[Entry::Dir(&modules(K9))]);
    let same = layer(&[
        Entry::Whiteout(&modules(K9)),
        Entry::Dir(&modules(K9)),
        Entry::File(&format!("{}/new", modules(K9)), b""),
    ]);
    assert_eq!(kernels(&[lower, same]), [K9]);
    // A whiteout of a file inside a release deletes the file, not the release.
    let lower = layer(&[Entry::Dir(&modules(K9)), Entry::File(&format!("{}/vmlinuz", modules(K9)), b"")]);
    let file_gone = layer(&[Entry::Whiteout(&format!("{}/vmlinuz", modules(K9)))]);
    assert_eq!(kernels(&[lower, file_gone]), [K9]);
}

#[test]
fn chunk_boundaries_do_not_matter() {
    let long = format!("usr/lib/modules/{K12}/{}", "kernel/drivers/very-long-directory-name/".repeat(8));
    let big = vec![7u8; 70_000];
    let entries = [
        Entry::Dir(&long),
        Entry::File("big.bin", &big),
        Entry::Whiteout("usr/lib/modules/6.18.1-100.fc43.x86_64"),
        Entry::PaxFile("usr/lib/modules/6.18.13-200.fc43.x86_64/vmlinuz"),
    ];
    let compressed = layer(&entries);
    let plain = tar(&entries);
    let expected = scan(&compressed, 1 << 20).unwrap();
    assert_eq!(
        expected.added.iter().map(String::as_str).collect::<Vec<_>>(),
        [format!("usr/lib/modules/{K12}").as_str(), "usr/lib/modules/6.18.13-200.fc43.x86_64"]
    );
    assert_eq!(expected.deleted.len(), 1);
    for chunk in [1, 3, 511, 512, 513, 4096] {
        assert_eq!(scan(&compressed, chunk).unwrap(), expected, "gzip in {chunk}-byte chunks");
        assert_eq!(scan(&plain, chunk).unwrap(), expected, "tar in {chunk}-byte chunks");
    }
}

#[test]
fn gnu_tar_archives_in_every_format_are_read() {
    // GNU tar is an independent writer: a path over 100 bytes goes into the
    // ustar prefix field, a GNU `L` long-name record or a PAX `path` record
    // depending on the format; whiteouts are plain files to it.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let long_release = format!("6.18.12-200.fc43.x86_64{}", "+debug".repeat(11));
    for path in [format!("usr/lib/modules/{K10}/kernel"), format!("usr/lib/modules/{long_release}/kernel/fs/zfs")] {
        std::fs::create_dir_all(root.join(path)).unwrap();
    }
    std::fs::write(root.join(format!("usr/lib/modules/.wh.{K9}")), b"").unwrap();
    let lower = scan(&layer(&[Entry::Dir(&modules(K9))]), 4096).unwrap();
    for format in ["ustar", "gnu", "pax"] {
        let archive = dir.path().join(format!("{format}.tar.gz"));
        let out = Command::new("tar")
            .arg(format!("--format={format}"))
            .arg("-czf")
            .arg(&archive)
            .arg("-C")
            .arg(&root)
            .arg(".")
            .output()
            .unwrap();
        assert!(out.status.success(), "tar --format={format}: {out:?}");
        let scanned = scan_layer(std::fs::File::open(&archive).unwrap()).unwrap();
        assert_eq!(merge_layers([&lower, &scanned]), [K10.to_owned(), long_release.clone()], "{format}");
    }
}

#[test]
fn broken_layers_are_refused_with_the_reason() {
    let good = layer(&[Entry::Dir(&modules(K9)), Entry::File("x", &[1u8; 5000])]);
    let truncated = &good[..good.len() - 20];
    assert!(matches!(scan(truncated, 4096), Err(KernelError::Gzip { .. })), "{:?}", scan(truncated, 4096));

    let plain = tar(&[Entry::Dir(&modules(K9)), Entry::File("x", &[1u8; 5000])]);
    assert_eq!(scan(&plain[..2048], 512), Err(KernelError::Truncated { offset: 2048 }));

    let mut corrupt = plain.clone();
    corrupt[512 + 100] ^= 0x55; // the mode field of the second header
    let err = scan(&gzip(&corrupt), 4096).unwrap_err();
    assert!(matches!(&err, KernelError::Tar { offset: 1024, reason } if reason.contains("checksum")), "{err:?}");

    let zstd = [0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0];
    assert_eq!(scan(&zstd, 3), Err(KernelError::UnsupportedCompression { format: "zstd" }));
    assert_eq!(
        KernelError::UnsupportedCompression { format: "zstd" }.to_string(),
        "the layer is zstd-compressed; lkg reads gzip and uncompressed layers"
    );
}

#[test]
fn an_empty_layer_has_no_kernels() {
    assert_eq!(scan(&[], 1).unwrap(), LayerKernels::default());
    let empty_tar = tar(&[]);
    assert!(scan(&gzip(&empty_tar), 7).unwrap().added.is_empty());
}
