//! The malicious-archive corpus (`fixtures/warmsnap/malicious`), a tampered
//! meta.json and damaged archives: every restore is refused before anything
//! is written, and the live volume stays byte-identical.

use std::fmt::Write as _;
use std::path::Path;

use lkg_warmsnap::{
    Access, ArchiveError, NoProgress, RestoreRequest, SnapError, StoreError, TakeRequest, restore, take, verify,
};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::support::{Volumes, beside_data, docker, helpers, plant_snapshot, sh, store, strict_listing};

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/warmsnap/malicious");
    let mut files: Vec<(String, Vec<u8>)> = fs_err::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            (name, fs_err::read(&path).unwrap())
        })
        .collect();
    files.sort();
    files
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn meta(volumes: &Volumes, volume: &str, archive: &[u8]) -> serde_json::Value {
    json!({
        "format": 1, "app": volumes.app, "stack": volumes.stack, "domain": null, "version": "6.6.6", "commit": null,
        "ts": "2026-01-01T00:00:00Z",
        "volumes": [{"name": volume, "bytes": archive.len(), "sha256": sha256_hex(archive), "driver": "local",
                     "options": {}, "labels": {"com.docker.stack.namespace": volumes.stack}}]
    })
}

#[tokio::test]
async fn every_malicious_archive_is_refused_and_the_volume_is_untouched() {
    let docker = docker().await;
    let mut volumes = Volumes::new("snapevil");
    let data = volumes.create("data");
    sh(&data, "echo live > /data/marker; mkdir /data/dir; ln -s /etc /data/link; chown 1000:1000 /data/marker");
    let before = strict_listing(&data);

    // Direct: refused while it is extracted beside the live data; archive:
    // refused before the volume is recreated.
    let mut by_access = Vec::new();
    for access in [Access::Direct, Access::Archive] {
        let mut refusals = String::new();
        for (name, archive) in corpus() {
            let state = tempfile::tempdir().unwrap();
            plant_snapshot(state.path(), &volumes.app, &meta(&volumes, &data, &archive), &[(&data, &archive)]);
            let store = store(&state);
            let request = RestoreRequest::new(volumes.app.clone()).access(access);
            let err = restore(&docker, &store, &request, &NoProgress)
                .await
                .expect_err(&format!("{name} must be refused ({access:?})"));
            let SnapError::Refused { source: ArchiveError::Refused { refusal, .. }, .. } = &err else {
                panic!("{name} ({access:?}): refused for another reason: {err}")
            };
            writeln!(refusals, "{name}: {refusal}").unwrap();
            // verify says the same, as a verdict.
            let report = verify(&store, &volumes.app, &NoProgress).await.unwrap();
            assert!(!report.ok, "{name}");
        }
        by_access.push(refusals);
    }
    assert_eq!(by_access[0], by_access[1], "both accesses refuse each archive for the same reason");
    let refusals = &by_access[0];
    insta::assert_snapshot!(refusals, @r#"
    absolute: its path is absolute, which could write outside the volume
    blockdev: it is a block device; lkg snapshots hold only files, directories and links
    chardev: it is a character device; lkg snapshots hold only files, directories and links
    dir-with-data: its header declares 512 bytes of data for an entry type that has none
    dotdot: its path has a `..` component, which could write outside the volume
    duplicate: the same path appears twice
    fifo: it is a FIFO; lkg snapshots hold only files, directories and links
    hardlink-absolute: it is a hard link to "/etc/shadow", which is not a file earlier in the archive
    hardlink-dotdot: it is a hard link to "data/../../etc/passwd", which is not a file earlier in the archive
    hardlink-missing: it is a hard link to "data/not-in-archive", which is not a file earlier in the archive
    missing-root: the archive must start with the volume root data/ as a directory
    outside-root: it is not under data/, where every entry of a volume archive lives
    pax-sparse: it carries the PAX record "GNU.sparse.size", which lkg does not accept
    pax-vs-gnu-name: its PAX path record and its GNU long name disagree
    size-larger-than-data: its data is truncated: the header declares 5000 bytes, the archive holds 1536
    symlink-escapes-root: it is a symbolic link to "../../../etc/passwd", which climbs above the helper container's root; the daemon refuses to extract it, which would leave the volume half restored
    symlink-replaces-dir: the same path appears twice
    through-symlink: its path passes through the symbolic link "data/link", so extracting it would write wherever the link points
    through-symlink-up: its path passes through the symbolic link "data/up", so extracting it would write wherever the link points
    trailing-garbage: data follows the end-of-archive marker
    truncated-data: its data is truncated: the header declares 4000 bytes, the archive holds 612
    truncated-no-end: the archive ends without its end-of-archive marker: it is truncated
    "#);
    assert_eq!(strict_listing(&data), before, "the live volume was touched");
    assert_eq!(beside_data(&data), ["_data"], "a refused restore leaves no staging behind");
    assert!(helpers(&volumes.app).is_empty());
}

#[tokio::test]
async fn damaged_and_tampered_snapshots_are_refused_and_the_volume_is_untouched() {
    let docker = docker().await;
    let mut volumes = Volumes::new("snaptamp");
    let data = volumes.create("data");
    let other = volumes.create("other");
    sh(&data, "echo known-good > /data/marker; dd if=/dev/urandom of=/data/blob bs=1k count=64 2>/dev/null");
    sh(&other, "echo second > /data/marker");
    let state = tempfile::tempdir().unwrap();
    let request = TakeRequest::new(volumes.app.clone(), &volumes.stack).unwrap();
    take(&docker, &store(&state), &request, &NoProgress).await.unwrap();
    let current = store(&state).snapshot_dir(&volumes.app);
    let good_meta: serde_json::Value =
        serde_json::from_slice(&fs_err::read(current.join("meta.json")).unwrap()).unwrap();
    let good = |volume: &str| fs_err::read(current.join(format!("volumes/{volume}.tar"))).unwrap();
    let (good_data, good_other) = (good(&data), good(&other));

    sh(&data, "echo live-now > /data/marker");
    sh(&other, "echo live-now > /data/marker");
    let before = (strict_listing(&data), strict_listing(&other));

    // Each restore is tried through both accesses, and both are refused.
    let restore_planted = async |meta: &serde_json::Value, archives: &[(&str, &[u8])]| {
        let state = tempfile::tempdir().unwrap();
        plant_snapshot(state.path(), &volumes.app, meta, archives);
        let request = RestoreRequest::new(volumes.app.clone());
        let archive =
            restore(&docker, &store(&state), &request.clone().access(Access::Archive), &NoProgress).await.unwrap_err();
        let direct = restore(&docker, &store(&state), &request.access(Access::Direct), &NoProgress).await.unwrap_err();
        assert_eq!(lkg_core::render_chain(&archive), lkg_core::render_chain(&direct));
        direct
    };

    // A flipped byte in the second volume's archive: nothing is restored,
    // not even the first volume, which verifies.
    // (The archive is `data/`, then `data/marker`'s header, then its content.)
    let mut flipped = good_other.clone();
    flipped[1024] ^= 0x20;
    let err = restore_planted(&good_meta, &[(&data, &good_data), (&other, &flipped)]).await;
    assert!(matches!(&err, SnapError::Mismatch { volume, .. } if volume == &other), "{err}");
    // A flipped byte in a header is caught by the header checksum first.
    let mut flipped = good_other.clone();
    flipped[600] ^= 0x20;
    let err = restore_planted(&good_meta, &[(&data, &good_data), (&other, &flipped)]).await;
    assert!(err.to_string().contains("checksum mismatch"), "{err}");

    // meta.json edited to match a changed archive's size, not its checksum.
    let mut appended = good_data.clone();
    appended.extend([0u8; 512]);
    let mut meta = good_meta.clone();
    meta["volumes"][0]["bytes"] = json!(appended.len());
    let err = restore_planted(&meta, &[(&data, &appended), (&other, &good_other)]).await;
    assert!(matches!(err, SnapError::Mismatch { .. }), "{err}");

    // meta.json naming a path instead of a volume.
    let mut meta = good_meta.clone();
    meta["volumes"][0]["name"] = json!("../../../../etc");
    let err = restore_planted(&meta, &[(&data, &good_data), (&other, &good_other)]).await;
    assert!(matches!(err, SnapError::Store(StoreError::Meta { .. })), "{err}");

    // meta.json of another app, not JSON, or listing an archive that is absent.
    let mut meta = good_meta.clone();
    meta["app"] = json!("someone-else");
    let err = restore_planted(&meta, &[(&data, &good_data), (&other, &good_other)]).await;
    assert!(matches!(err, SnapError::Store(StoreError::Meta { .. })), "{err}");
    let err = restore_planted(&json!("{ not meta"), &[(&data, &good_data)]).await;
    assert!(matches!(err, SnapError::Store(StoreError::Meta { .. })), "{err}");
    let err = restore_planted(&good_meta, &[(&data, &good_data)]).await;
    assert!(matches!(err, SnapError::Store(StoreError::MissingVolume { .. })), "{err}");

    assert_eq!((strict_listing(&data), strict_listing(&other)), before, "a live volume was touched");
    assert_eq!((beside_data(&data), beside_data(&other)), (vec!["_data".to_owned()], vec!["_data".to_owned()]));
    assert!(helpers(&volumes.app).is_empty());
}
