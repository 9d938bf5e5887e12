//! The local store: atomic replacement, what a crash leaves, and locking.
//! No engine needed: these drive the store directly.

use std::fmt::Write as _;
use std::io::{Read, Write};

use lkg_warmsnap::{AppName, LocalStore, LockMode, Meta, SnapshotReader, Staging, Store, StoreError, VolumeRecord};
use sha2::{Digest, Sha256};

fn app() -> AppName {
    AppName::new("gitea").unwrap()
}

fn record(name: &str, archive: &[u8]) -> VolumeRecord {
    let sha256 = Sha256::digest(archive).iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    });
    let json = serde_json::json!({"name": name, "bytes": archive.len(), "sha256": sha256, "driver": "local"});
    serde_json::from_value(json).unwrap()
}

/// Stages one volume `gitea_data` holding `archive`; returns the staging and its meta.
fn stage(store: &LocalStore, archive: &[u8]) -> (impl Staging, Meta) {
    let mut staging = store.stage(&app()).unwrap();
    let mut sink = staging.create_volume("gitea_data").unwrap();
    sink.write_all(archive).unwrap();
    sink.finish(&record("gitea_data", archive).sha256).unwrap();
    let meta =
        Meta::new(app(), "gitea", None, None, None, jiff::Timestamp::UNIX_EPOCH, vec![record("gitea_data", archive)]);
    (staging, meta)
}

fn current(store: &LocalStore) -> Vec<u8> {
    let reader = store.open(&app(), LockMode::Shared).unwrap().expect("a snapshot");
    let mut bytes = Vec::new();
    reader.open_volume("gitea_data").unwrap().read_to_end(&mut bytes).unwrap();
    bytes
}

fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs_err::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

#[test]
fn a_commit_replaces_the_snapshot_and_leaves_one_generation() {
    let state = tempfile::tempdir().unwrap();
    let store = LocalStore::new(state.path());
    let (staging, meta) = stage(&store, b"first");
    staging.commit(&meta).unwrap();
    assert_eq!(current(&store), b"first");
    let (staging, meta) = stage(&store, b"second");
    let location = staging.commit(&meta).unwrap();
    assert_eq!(location, store.snapshot_dir(&app()).display().to_string());
    assert_eq!(current(&store), b"second");
    let generations = entries(&state.path().join("apps/gitea/snapshots"));
    assert_eq!(generations.len(), 2, "the lock and one generation: {generations:?}");
    assert_eq!(entries(&store.snapshot_dir(&app())), ["meta.json", "volumes"]);
    assert_eq!(store.apps().unwrap(), [app()]);
}

#[test]
fn an_abandoned_staging_leaves_the_snapshot_as_it_was() {
    let state = tempfile::tempdir().unwrap();
    let store = LocalStore::new(state.path());
    let (staging, meta) = stage(&store, b"good");
    staging.commit(&meta).unwrap();
    let (staging, _) = stage(&store, b"never committed");
    drop(staging);
    assert_eq!(current(&store), b"good");
    assert_eq!(entries(&state.path().join("apps/gitea/snapshots")).len(), 2);
}

#[test]
fn what_a_crash_leaves_is_cleaned_by_the_next_stage_and_never_read() {
    let state = tempfile::tempdir().unwrap();
    let store = LocalStore::new(state.path());
    let (staging, meta) = stage(&store, b"good");
    staging.commit(&meta).unwrap();
    let app_dir = state.path().join("apps/gitea");
    // What a take killed at each step leaves: a half-written staging, a
    // renamed but never linked generation, a link never renamed.
    fs_err::create_dir_all(app_dir.join("snapshots/.staging-20260101T000000Z-0000000a/volumes")).unwrap();
    fs_err::write(app_dir.join("snapshots/.staging-20260101T000000Z-0000000a/volumes/gitea_data.tar"), b"half")
        .unwrap();
    fs_err::create_dir_all(app_dir.join("snapshots/20260101T000000Z-0000000b/volumes")).unwrap();
    std::os::unix::fs::symlink(
        "snapshots/20260101T000000Z-0000000b",
        app_dir.join(".snapshot-20260101T000000Z-0000000b.link"),
    )
    .unwrap();
    // Files that are not lkg's are left alone.
    fs_err::write(app_dir.join("canonical.json"), b"{}").unwrap();
    fs_err::write(app_dir.join("snapshots/notes.txt"), b"mine").unwrap();
    assert_eq!(current(&store), b"good");

    let (staging, _) = stage(&store, b"next");
    let mut left = entries(&app_dir.join("snapshots"));
    left.retain(|n| !n.starts_with(".staging-"));
    assert_eq!(left.len(), 3, "the lock, notes.txt and the current generation: {left:?}");
    assert!(left.contains(&"notes.txt".to_owned()));
    assert_eq!(entries(&app_dir), ["canonical.json", "snapshot", "snapshots"]);
    drop(staging);
    assert_eq!(current(&store), b"good");
}

#[test]
fn take_and_restore_exclude_each_other_readers_share() {
    let state = tempfile::tempdir().unwrap();
    let store = LocalStore::new(state.path());
    let (staging, meta) = stage(&store, b"good");
    staging.commit(&meta).unwrap();
    let reader = store.open(&app(), LockMode::Shared).unwrap().unwrap();
    let second = store.open(&app(), LockMode::Shared).unwrap();
    assert!(second.is_some(), "two readers at once");
    let busy = store.stage(&app()).unwrap_err();
    assert!(matches!(busy, StoreError::Busy { .. }), "{busy}");
    assert!(busy.to_string().contains("in use by another lkg process"), "{busy}");
    drop((reader, second));
    let (staging, _) = stage(&store, b"x");
    assert!(matches!(store.open(&app(), LockMode::Exclusive), Err(StoreError::Busy { .. })));
    drop(staging);
}

#[test]
fn a_snapshot_directory_lkg_did_not_write_is_reported_not_replaced() {
    let state = tempfile::tempdir().unwrap();
    let store = LocalStore::new(state.path());
    fs_err::create_dir_all(store.snapshot_dir(&app())).unwrap();
    let err = store.open(&app(), LockMode::Shared).unwrap_err();
    assert!(matches!(err, StoreError::Layout { .. }), "{err}");
    assert!(err.to_string().contains("move it away"), "{err}");
    // The commit refuses too; the directory stays.
    let err = store.stage(&app()).unwrap_err();
    assert!(matches!(err, StoreError::Layout { .. }), "{err}");
    assert!(store.snapshot_dir(&app()).is_dir());
}

#[test]
fn commit_refuses_a_meta_that_does_not_list_every_archive() {
    let state = tempfile::tempdir().unwrap();
    let store = LocalStore::new(state.path());
    let (mut staging, meta) = stage(&store, b"good");
    let mut extra = staging.create_volume("gitea_extra").unwrap();
    extra.write_all(b"x").unwrap();
    extra.finish(&record("gitea_extra", b"x").sha256).unwrap();
    let err = staging.commit(&meta).unwrap_err();
    assert!(matches!(err, StoreError::Layout { .. }), "{err}");
    assert!(store.open(&app(), LockMode::Shared).unwrap().is_none(), "nothing was committed");
}

/// A volume archive replaced by a link to /dev/zero or by a FIFO is refused
/// at once, not read for ever (or waited on); an archive that grew is read
/// only to its recorded size and one byte more.
#[test]
fn an_archive_that_is_not_a_plain_file_is_refused_and_reads_stop_at_the_recorded_size() {
    let state = tempfile::tempdir().unwrap();
    let store = LocalStore::new(state.path());
    let (staging, meta) = stage(&store, b"known-good");
    staging.commit(&meta).unwrap();
    let archive = store.snapshot_dir(&app()).join("volumes/gitea_data.tar");

    fs_err::remove_file(&archive).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &archive).unwrap();
    let reader = store.open(&app(), LockMode::Shared).unwrap().unwrap();
    let err = reader.open_volume("gitea_data").err().expect("a link is refused");
    assert!(matches!(err, StoreError::Layout { .. }), "{err:?}");
    assert!(err.to_string().contains("is not a plain file"), "{err}");
    drop(reader);

    fs_err::remove_file(&archive).unwrap();
    let made = std::process::Command::new("mkfifo").arg(&archive).status().unwrap();
    assert!(made.success());
    let reader = store.open(&app(), LockMode::Shared).unwrap().unwrap();
    assert!(matches!(reader.open_volume("gitea_data"), Err(StoreError::Layout { .. })), "a FIFO is refused unopened");
    drop(reader);

    fs_err::remove_file(&archive).unwrap();
    fs_err::write(&archive, vec![b'x'; 1 << 20]).unwrap();
    let reader = store.open(&app(), LockMode::Shared).unwrap().unwrap();
    let mut bytes = Vec::new();
    reader.open_volume("gitea_data").unwrap().read_to_end(&mut bytes).unwrap();
    assert_eq!(bytes.len(), b"known-good".len() + 1);
}
