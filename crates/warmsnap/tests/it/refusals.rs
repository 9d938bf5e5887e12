//! Take and restore refuse while the stack runs or a container uses a volume,
//! and change nothing when they refuse.

use std::time::Duration;

use lkg_testkit::{Stack, wait_until};
use lkg_warmsnap::{NoProgress, RestoreRequest, SnapError, TakeRequest, restore, take, verify};

use crate::support::{Volumes, docker, env, listing, sh, store};

#[tokio::test]
async fn refuses_while_the_stack_is_deployed() {
    let docker = docker().await;
    let mut volumes = Volumes::new("snapdep");
    let data = volumes.create("data");
    sh(&data, "echo known-good > /data/marker");
    let state = tempfile::tempdir().unwrap();
    let store = store(&state);
    let request = TakeRequest::new(volumes.app.clone(), &volumes.stack).unwrap();
    let first = take(&docker, &store, &request, &NoProgress).await.unwrap();

    // The stack uses the volume created above (same name, same label).
    let compose = format!(
        "version: \"3.8\"\nservices:\n  app:\n    image: {}\n    volumes: [data:/data]\n    stop_grace_period: 1s\nvolumes:\n  data:\n",
        env().app_image
    );
    let stack = Stack::deploy(env(), &volumes.stack, &compose);
    let before = listing(&data);

    let err = take(&docker, &store, &request, &NoProgress).await.unwrap_err();
    assert!(matches!(&err, SnapError::Deployed { services, .. } if services == &[stack.service("app")]), "{err}");
    let err = restore(&docker, &store, &RestoreRequest::new(volumes.app.clone()), &NoProgress).await.unwrap_err();
    assert!(matches!(err, SnapError::Deployed { .. }), "{err}");
    let _guard = lkg_testkit::settings().bind_to_scope();
    insta::assert_snapshot!(err, @"stack lkgt-snapdep-[ID] is deployed (services: lkgt-snapdep-[ID]_app): undeploy it first (`docker stack rm lkgt-snapdep-[ID]`) and wait until its containers have stopped");

    // Nothing changed: the snapshot, and the volume.
    let verified = verify(&store, &volumes.app, &NoProgress).await.unwrap();
    assert!(verified.ok);
    assert_eq!(verified.snapshot.meta, first.meta);
    assert_eq!(listing(&data), before);

    // `docker stack rm` returns at once; the task's container stops later and
    // holds the volume until then: still refused, for the container.
    env().docker(&["stack", "rm", &volumes.stack]);
    let label = format!("label=com.docker.stack.namespace={}", volumes.stack);
    wait_until("the stack's services to go", Duration::from_secs(30), Duration::from_millis(100), || {
        env().docker(&["service", "ls", "-q", "--filter", &label]).is_empty().then_some(())
    });
    wait_until("the stack's containers to go", Duration::from_secs(60), Duration::from_millis(250), || {
        env().docker(&["ps", "-aq", "--filter", &label]).is_empty().then_some(())
    });
    drop(stack);
    take(&docker, &store, &request, &NoProgress).await.expect("take once undeployed");
}

#[tokio::test]
async fn refuses_a_volume_in_use_by_a_container() {
    let docker = docker().await;
    let mut volumes = Volumes::new("snapuse");
    let data = volumes.create("data");
    sh(&data, "echo known-good > /data/marker");
    let state = tempfile::tempdir().unwrap();
    let store = store(&state);
    let request = TakeRequest::new(volumes.app.clone(), &volumes.stack).unwrap();
    take(&docker, &store, &request, &NoProgress).await.unwrap();

    let container = lkg_testkit::unique_name("snapuser");
    env().hold_volume(&data, &container);
    let err = take(&docker, &store, &request, &NoProgress).await.unwrap_err();
    assert!(
        matches!(&err, SnapError::VolumeInUse { volume, running: true, containers } if volume == &data && containers[0].starts_with(&container)),
        "{err}"
    );

    // A stopped container cannot write: take goes on. It still holds the
    // volume, which restore must remove: restore refuses, touching nothing.
    env().docker(&["stop", "-t", "0", &container]);
    take(&docker, &store, &request, &NoProgress).await.expect("take with a stopped user");
    sh(&data, "echo changed > /data/marker");
    let before = listing(&data);
    let err = restore(&docker, &store, &RestoreRequest::new(volumes.app.clone()), &NoProgress).await.unwrap_err();
    assert!(matches!(&err, SnapError::VolumeInUse { running: false, .. }), "{err}");
    assert!(err.to_string().ends_with("stop and remove it first"), "{err}");
    assert_eq!(listing(&data), before);

    env().docker(&["rm", &container]);
    restore(&docker, &store, &RestoreRequest::new(volumes.app.clone()), &NoProgress).await.unwrap();
    assert_eq!(sh(&data, "cat /data/marker"), "known-good");
}

#[tokio::test]
async fn a_stack_without_volumes_and_an_app_without_snapshot_are_refused() {
    let docker = docker().await;
    let volumes = Volumes::new("snapnone");
    let state = tempfile::tempdir().unwrap();
    let store = store(&state);
    let request = TakeRequest::new(volumes.app.clone(), &volumes.stack).unwrap();
    let err = take(&docker, &store, &request, &NoProgress).await.unwrap_err();
    assert!(matches!(err, SnapError::NoVolumes { .. }), "{err}");
    let err = restore(&docker, &store, &RestoreRequest::new(volumes.app.clone()), &NoProgress).await.unwrap_err();
    assert!(matches!(err, SnapError::NoSnapshot { .. }), "{err}");
    assert!(err.to_string().contains("take one first"), "{err}");
}
