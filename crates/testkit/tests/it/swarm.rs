use std::time::Duration;

use lkg_testkit::{
    APP_HEALTHCHECK, App, Behaviour, Stack, env, free_port, http_get, http_request, unique_name, wait_until,
};

fn compose(image: &str, port: u16) -> String {
    format!(
        r#"version: "3.8"
services:
  app:
    image: {image}
{APP_HEALTHCHECK}    ports:
      - {{ target: 8080, published: {port}, protocol: tcp, mode: host }}
    volumes:
      - data:/data
volumes:
  data:
"#
    )
}

/// The health status of the stack's running container, as the engine sees it.
fn container_health(service: &str) -> Option<String> {
    let env = env();
    let ids = env.docker(&["ps", "-q", "--filter", &format!("label=com.docker.swarm.service.name={service}")]);
    let id = ids.lines().next()?;
    Some(env.docker(&["inspect", "--format", "{{.State.Health.Status}}", id]))
}

#[test]
fn fixture_app_deploys_healthy_and_keeps_data_in_its_volume() {
    let env = env();
    let image = App::new("1.0.0").import(env);
    let port = free_port();
    let stack = Stack::deploy(env, &unique_name("smoke"), &compose(&image, port));
    let service = stack.service("app");

    wait_until("the app container to be healthy", Duration::from_secs(60), Duration::from_millis(250), || {
        (container_health(&service).as_deref() == Some("healthy")).then_some(())
    });
    let base = format!("http://127.0.0.1:{port}");
    assert_eq!(http_get(&format!("{base}/version")).unwrap().body.trim(), "1.0.0");
    assert_eq!(http_get(&format!("{base}/health")).unwrap().status, 200);
    assert_eq!(http_request("PUT", &format!("{base}/marker"), Some(b"smoke-marker")).unwrap().status, 200);
    assert_eq!(http_get(&format!("{base}/marker")).unwrap().body, "smoke-marker");

    // The marker is in the stack's named volume, not in the container.
    let volume = format!("{}_data", stack.name);
    let mountpoint = env.docker(&["volume", "inspect", "--format", "{{.Mountpoint}}", &volume]);
    assert_eq!(std::fs::read_to_string(format!("{mountpoint}/marker")).unwrap(), "smoke-marker");
    stack.remove();
    assert!(env.try_docker(&["volume", "inspect", &volume]).status.code() != Some(0), "volume removed with the stack");
}

#[test]
fn unhealthy_fixture_is_reported_unhealthy_by_the_engine() {
    let env = env();
    let image = App::new("1.0.0").behaviour(Behaviour::Unhealthy).import(env);
    let port = free_port();
    let stack = Stack::deploy(env, &unique_name("smoke"), &compose(&image, port));
    let service = stack.service("app");
    // Swarm replaces unhealthy tasks, so wait for the health verdict of any container.
    wait_until("the engine to mark the app unhealthy", Duration::from_secs(60), Duration::from_millis(250), || {
        let ids = env.docker(&["ps", "-aq", "--filter", &format!("label=com.docker.swarm.service.name={service}")]);
        ids.lines()
            .any(|id| env.docker(&["inspect", "--format", "{{.State.Health.Status}}", id]) == "unhealthy")
            .then_some(())
    });
    let response = http_get(&format!("http://127.0.0.1:{port}/health"));
    // Between replacements nothing may listen; when something does, it must say 503.
    if let Ok(r) = response {
        assert_eq!(r.status, 503, "{r:?}");
    }
    stack.remove();
}
