use lkg_swarm::docker::{ConnectError, connect_to, stack_services, stack_volumes};
use lkg_testkit::{Stack, env, unique_name};

#[tokio::test]
async fn connects_to_the_20_10_engine_by_negotiating_the_api_version() {
    let env = env();
    let docker = connect_to(&env.docker_host).await.expect("connect");
    // Without negotiation bollard would speak its newest API, which 20.10 refuses.
    let version = docker.version().await.expect("a versioned call succeeds after negotiation");
    assert_eq!(version.version.as_deref(), Some(env.engine_version.as_str()));
}

#[tokio::test]
async fn an_unreachable_engine_names_the_host() {
    let err = connect_to("unix:///nonexistent/docker.sock").await.unwrap_err();
    assert!(matches!(err, ConnectError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains("unix:///nonexistent/docker.sock"), "{err}");
}

#[tokio::test]
async fn lists_a_stacks_services_and_volumes_and_nothing_else() {
    let env = env();
    let name = unique_name("dock");
    let other = unique_name("dock");
    let compose = format!(
        "version: \"3.8\"\nservices:\n  app:\n    image: {}\n    volumes: [data:/data]\n  web:\n    image: {}\n    command: [\"sleep\", \"600\"]\nvolumes:\n  data:\n",
        env.app_image, env.busybox_image
    );
    let stack = Stack::deploy(env, &name, &compose);
    let _other = Stack::deploy(env, &other, &compose);
    let docker = connect_to(&env.docker_host).await.unwrap();

    let mut services: Vec<String> = stack_services(&docker, &name)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|s| s.spec.and_then(|spec| spec.name))
        .collect();
    services.sort();
    assert_eq!(services, [format!("{name}_app"), format!("{name}_web")]);

    // docker stack deploy creates named volumes lazily, when a task starts.
    let volume = format!("{name}_data");
    lkg_testkit::wait_until(
        "the stack volume",
        std::time::Duration::from_secs(30),
        std::time::Duration::from_millis(200),
        || env.try_docker(&["volume", "inspect", &volume]).status.success().then_some(()),
    );
    let volumes: Vec<String> = stack_volumes(&docker, &name).await.unwrap().into_iter().map(|v| v.name).collect();
    assert_eq!(volumes, [volume]);
    stack.remove();
}
