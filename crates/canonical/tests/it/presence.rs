//! `has_canonical` against the real Docker engine of the test environment.

use std::time::Duration;

use lkg_canonical::{AppName, Canonicals, EngineVolumes, Presence};
use lkg_testkit::{env, unique_name};

/// Removes the test's volumes even when an assertion fails.
struct Volumes(Vec<String>);

impl Drop for Volumes {
    fn drop(&mut self) {
        for v in &self.0 {
            let _ = env().try_docker(&["volume", "rm", "-f", v]);
        }
    }
}

#[tokio::test]
async fn has_canonical_needs_the_record_and_every_volume_in_the_engine() {
    let env = env();
    let data = unique_name("canon-data");
    let config = unique_name("canon-config");
    let _cleanup = Volumes(vec![data.clone(), config.clone()]);
    for v in [&data, &config] {
        env.docker(&["volume", "create", v]);
    }
    let docker = lkg_swarm::docker::connect_to(&env.docker_host).await.unwrap();
    let engine = EngineVolumes::new(docker);

    let state = tempfile::tempdir().unwrap();
    let canonicals = Canonicals::new(state.path());
    let app = AppName::new("gitea").unwrap();
    assert_eq!(canonicals.presence(&app, &engine).await.unwrap(), Presence::NoRecord);

    let lock = canonicals.lock(&app, "test", Duration::ZERO, |_| {}).unwrap();
    canonicals.put(&lock, &crate::child::record("gitea", "3.5.3+1.24.2-rootless", &[&data, &config])).unwrap();
    assert!(canonicals.has_canonical(&app, &engine).await.unwrap());
    assert_eq!(
        canonicals.presence(&app, &engine).await.unwrap(),
        Presence::Present { volumes: vec![data.clone(), config.clone()] }
    );

    // Someone pruned one volume behind lkg's back.
    env.docker(&["volume", "rm", &config]);
    assert!(!canonicals.has_canonical(&app, &engine).await.unwrap());
    assert_eq!(
        canonicals.presence(&app, &engine).await.unwrap(),
        Presence::MissingVolumes { missing: vec![config.clone()], present: vec![data.clone()] }
    );
}

#[tokio::test]
async fn an_unreachable_engine_is_an_error_not_an_absent_canonical() {
    let state = tempfile::tempdir().unwrap();
    let canonicals = Canonicals::new(state.path());
    let app = AppName::new("gitea").unwrap();
    let lock = canonicals.lock(&app, "test", Duration::ZERO, |_| {}).unwrap();
    canonicals.put(&lock, &crate::child::record("gitea", "1.0.0+1", &["v"])).unwrap();
    // A client for a socket that stops answering: bollard connects lazily.
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("docker.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    drop(listener);
    let docker =
        bollard::Docker::connect_with_unix(&socket.to_string_lossy(), 5, bollard::API_DEFAULT_VERSION).unwrap();
    let err = canonicals.presence(&app, &EngineVolumes::new(docker)).await.unwrap_err();
    assert!(err.to_string().contains("cannot tell whether volume v exists"), "{err}");
}
