//! Take, mutate, restore: the exact content comes back.

use std::sync::Mutex;

use lkg_warmsnap::{
    Access, Event, NoProgress, Phase, RestoreRequest, SnapError, Store, TakeRequest, Verdict, restore, take, verify,
};

use crate::support::{MUTATE, RICH, Volumes, beside_data, docker, env, helpers, listing, listings, sh, store};

async fn round_trip(access: Access) {
    let docker = docker().await;
    let mut volumes = Volumes::new("snaprt");
    let data = volumes.create("data");
    let empty = volumes.create("empty");
    let gone = volumes.create("gone");
    sh(&data, RICH);
    sh(&gone, "echo 'only copy' > /data/precious; chown 1000:1000 /data/precious");
    let before = listings(&[&data, &empty, &gone]);

    let state = tempfile::tempdir().unwrap();
    let store = store(&state);
    let request = TakeRequest::new(volumes.app.clone(), &volumes.stack).unwrap().version("1.0.0").access(access);
    let events = Mutex::new(Vec::new());
    let record = |e: &Event<'_>| {
        if e.done {
            events.lock().unwrap().push((e.phase, e.volume.to_owned(), e.index, e.count, e.bytes));
        }
    };
    let taken = take(&docker, &store, &request, &record).await.expect("take");
    assert_eq!(taken.meta.volumes.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), [&data, &empty, &gone]);
    assert!(taken.volumes.iter().all(|v| v.access == access), "{:?}", taken.volumes);
    let rich = &taken.volumes[0].summary;
    assert_eq!((rich.files, rich.hard_links), (1500 + 6, 1), "{rich:?}");
    assert!(rich.content_bytes > 8 << 20, "{rich:?}");
    let dir = store.snapshot_dir(&volumes.app);
    assert!(dir.join("meta.json").is_file());
    assert!(dir.join(format!("volumes/{data}.tar")).is_file());
    assert!(helpers(&volumes.app).is_empty(), "take removes its helper containers");
    // Progress: each volume copied, then each read back, with its final size.
    let expected: Vec<_> = [Phase::Take, Phase::Verify]
        .into_iter()
        .flat_map(|phase| {
            taken.meta.volumes.iter().enumerate().map(move |(i, v)| (phase, v.name.clone(), i + 1, 3, v.bytes))
        })
        .collect();
    assert_eq!(events.lock().unwrap().split_off(0), expected);

    sh(&data, MUTATE);
    sh(&empty, "echo stray > /data/stray");
    env().docker(&["volume", "rm", &gone]);
    assert_ne!(listing(&data), before[0]);

    let request = RestoreRequest::new(volumes.app.clone()).access(access);
    let report = restore(&docker, &store, &request, &record).await.expect("restore");
    let phases: Vec<Phase> = events.lock().unwrap().iter().map(|e| e.0).collect();
    if access == Access::Archive {
        assert_eq!(phases, [[Phase::Verify; 3], [Phase::Restore; 3]].concat(), "verify everything, then restore");
    } else {
        // The two live volumes are restored in one pass, checked on the way;
        // the removed one is checked first, then created and filled.
        use Phase::{Restore, Verify};
        assert_eq!(phases, [Restore, Restore, Verify, Restore], "stage and check, then swap and recreate");
    }
    assert_eq!(
        report.volumes.iter().map(|v| (v.name.as_str(), v.existed, v.access)).collect::<Vec<_>>(),
        [(data.as_str(), true, access), (empty.as_str(), true, access), (gone.as_str(), false, access)]
    );
    assert_eq!(listings(&[&data, &empty, &gone]), before);
    let labels = env().docker(&["volume", "inspect", &gone, "--format", "{{json .Labels}}"]);
    assert_eq!(labels, format!(r#"{{"com.docker.stack.namespace":"{}"}}"#, volumes.stack));
    assert!(helpers(&volumes.app).is_empty(), "restore removes its helper containers");
    for volume in [&data, &empty, &gone] {
        assert_eq!(beside_data(volume), ["_data"], "the restore of {volume} leaves nothing beside its data");
    }

    let verified = verify(&store, &volumes.app, &NoProgress).await.unwrap();
    assert!(verified.ok && verified.volumes.iter().all(|v| matches!(v.verdict, Verdict::Ok { .. })));
}

#[tokio::test]
async fn round_trip_through_the_archive_endpoint() {
    round_trip(Access::Archive).await;
}

#[tokio::test]
async fn round_trip_through_the_mount_point() {
    // The test environment's engine runs here and the tests run as root:
    // take reads the mount point, restore extracts into it.
    round_trip(Access::Direct).await;
}

#[tokio::test]
async fn both_accesses_archive_the_same_entries() {
    let docker = docker().await;
    let mut volumes = Volumes::new("snapeq");
    let data = volumes.create("data");
    sh(&data, RICH);
    let mut summaries = Vec::new();
    for access in [Access::Archive, Access::Direct] {
        let state = tempfile::tempdir().unwrap();
        let request = TakeRequest::new(volumes.app.clone(), &volumes.stack).unwrap().access(access);
        let taken = take(&docker, &store(&state), &request, &NoProgress).await.unwrap();
        let s = taken.volumes[0].summary.clone();
        summaries.push((s.entries, s.files, s.directories, s.symlinks, s.hard_links, s.content_bytes));
    }
    assert_eq!(summaries[0], summaries[1]);
}

#[tokio::test]
async fn a_volume_with_a_fifo_is_refused_and_the_previous_snapshot_stays() {
    let docker = docker().await;
    let mut volumes = Volumes::new("snapfifo");
    let data = volumes.create("data");
    sh(&data, "echo v1 > /data/file");
    let state = tempfile::tempdir().unwrap();
    let store = store(&state);
    let request = TakeRequest::new(volumes.app.clone(), &volumes.stack).unwrap();
    let first = take(&docker, &store, &request, &NoProgress).await.unwrap();

    sh(&data, "echo v2 > /data/file; mkfifo /data/pipe");
    for access in [Access::Archive, Access::Direct] {
        let err = take(&docker, &store, &request.clone().access(access), &NoProgress).await.unwrap_err();
        let SnapError::Refused { volume, .. } = &err else { panic!("{access:?}: {err}") };
        assert_eq!(volume, &data);
        assert!(err.to_string().contains("\"data/pipe\" is refused: it is a FIFO"), "{err}");
    }
    let current = store.open(&volumes.app, lkg_warmsnap::LockMode::Shared).unwrap().unwrap();
    assert_eq!(lkg_warmsnap::SnapshotReader::meta(&current), &first.meta);
    let generations: Vec<_> = fs_err::read_dir(state.path().join(format!("apps/{}/snapshots", volumes.app)))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != ".lock")
        .collect();
    assert_eq!(generations.len(), 1, "a refused take leaves no staging behind: {generations:?}");
}
