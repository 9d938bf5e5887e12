//! Direct restores stage beside a volume's data (in the local driver's
//! directory of the volume, next to `_data`): what an interrupted one leaves
//! there is never in a snapshot, and the next take or restore removes it.

use lkg_warmsnap::{Access, NoProgress, RestoreRequest, TakeRequest, restore, take};

use crate::support::{Volumes, beside_data, docker, mountpoint, sh, store};

#[tokio::test]
async fn leftovers_of_an_interrupted_restore_are_never_snapshotted_and_are_removed() {
    let docker = docker().await;
    let mut volumes = Volumes::new("snapleft");
    let data = volumes.create("data");
    sh(&data, "echo known-good > /data/marker");
    let dir = mountpoint(&data).parent().unwrap().to_owned();
    // What a restore killed before its swap leaves (an unfinished staging),
    // and one killed after it (the replaced tree).
    let plant = || {
        fs_err::create_dir_all(dir.join(".lkg-restore-0000000000000001/sub")).unwrap();
        fs_err::write(dir.join(".lkg-restore-0000000000000001/sub/secret"), b"half").unwrap();
        fs_err::create_dir_all(dir.join(".lkg-restore-0000000000000002")).unwrap();
        fs_err::write(dir.join(".lkg-restore-0000000000000002/marker"), b"old").unwrap();
    };
    plant();
    let state = tempfile::tempdir().unwrap();
    let store = store(&state);
    let request = TakeRequest::new(volumes.app.clone(), &volumes.stack).unwrap();

    // The engine's archive of the volume does not reach them...
    let taken = take(&docker, &store, &request.clone().access(Access::Archive), &NoProgress).await.unwrap();
    assert_eq!(taken.volumes[0].summary.entries, 2, "data/ and data/marker only");
    assert_eq!(beside_data(&data).len(), 3, "an archive take cannot remove them");
    // ...nor does a direct take, which removes them.
    let taken = take(&docker, &store, &request.access(Access::Direct), &NoProgress).await.unwrap();
    assert_eq!(taken.volumes[0].summary.entries, 2, "data/ and data/marker only");
    assert_eq!(beside_data(&data), ["_data"], "a direct take removes them");

    plant();
    sh(&data, "echo changed > /data/marker");
    let request = RestoreRequest::new(volumes.app.clone()).access(Access::Direct);
    restore(&docker, &store, &request, &NoProgress).await.unwrap();
    assert_eq!(sh(&data, "cat /data/marker"), "known-good");
    assert_eq!(beside_data(&data), ["_data"], "a restore removes them");
}
