//! The real health probes: HTTP requests, shell commands and the swarm's own
//! view of a stack's tasks and container health checks.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use bollard::query_parameters::{InspectContainerOptions, ListContainersOptionsBuilder};
use lkg_swarm::Swarm;
use lkg_swarm::docker::STACK_NAMESPACE_LABEL;

use crate::error::ReconcileError;
use crate::health::{CheckResult, HttpCheck};

/// The HTTP client for health checks and webhooks.
pub(crate) fn http_client() -> Result<reqwest::Client, ReconcileError> {
    // reqwest is built without a default crypto provider (`rustls-no-provider`,
    // as in lkg-registry): install ring's, once per process. An error means
    // one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .user_agent(concat!("lkg-reconcile/", env!("CARGO_PKG_VERSION")))
        // A health check judges the URL it was given, not where it redirects.
        .redirect(reqwest::redirect::Policy::none())
        .tcp_nodelay(true)
        // Every probe opens a fresh connection: a pooled one could outlive the
        // task that served it and make a replaced app look alive.
        .pool_max_idle_per_host(0)
        .build()
        .map_err(|e| ReconcileError::Http(e.to_string()))
}

/// `{version}` in a check's text stands for the version being checked.
pub(crate) fn fill(text: &str, version: &str) -> String {
    text.replace("{version}", version)
}

/// One HTTP check.
pub(crate) async fn http(client: &reqwest::Client, check: &HttpCheck, version: &str, timeout: Duration) -> CheckResult {
    let url = fill(&check.url, version);
    let name = format!("GET {url}");
    let response = match client.get(&url).timeout(timeout).send().await {
        Ok(response) => response,
        Err(e) => return CheckResult { check: name, pass: false, detail: lkg_core::render_chain(&e) },
    };
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    let excerpt: String = body.trim().chars().take(200).collect();
    if status != check.status {
        return CheckResult {
            check: name,
            pass: false,
            detail: format!("HTTP {status} (expected {}): {excerpt}", check.status),
        };
    }
    if let Some(expected) = &check.body {
        let expected = fill(expected, version);
        if !body.contains(&expected) {
            return CheckResult {
                check: name,
                pass: false,
                detail: format!("HTTP {status}, body {excerpt:?} lacks {expected:?}"),
            };
        }
    }
    CheckResult { check: name, pass: true, detail: format!("HTTP {status}") }
}

/// One shell command: passes on exit 0 within `timeout`.
pub(crate) async fn command(script: &str, vars: &[(String, String)], version: &str, timeout: Duration) -> CheckResult {
    let script = fill(script, version);
    let name = format!("sh -c {script:?}");
    let mut command = tokio::process::Command::new("sh");
    command
        .arg("-c")
        .arg(&script)
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = match tokio::time::timeout(timeout, command.output()).await {
        Err(_) => {
            return CheckResult {
                check: name,
                pass: false,
                detail: format!("no answer within {}s", timeout.as_secs_f64()),
            };
        }
        Ok(Err(e)) => return CheckResult { check: name, pass: false, detail: format!("cannot run sh: {e}") },
        Ok(Ok(output)) => output,
    };
    let said = [&output.stderr, &output.stdout]
        .into_iter()
        .map(|b| String::from_utf8_lossy(b).trim().to_owned())
        .find(|s| !s.is_empty())
        .map(|s| s.lines().last().unwrap_or_default().chars().take(200).collect::<String>())
        .unwrap_or_default();
    let pass = output.status.success();
    let detail = if said.is_empty() { output.status.to_string() } else { format!("{}: {said}", output.status) };
    CheckResult { check: name, pass, detail }
}

/// Every service of the stack runs all its desired tasks, and no running
/// container of the stack reports `unhealthy` or `starting`.
pub(crate) async fn tasks(swarm: &Swarm, stack: &str) -> CheckResult {
    let name = "tasks".to_owned();
    let fail = |detail: String| CheckResult { check: "tasks".to_owned(), pass: false, detail };
    let status = match swarm.status(stack).await {
        Ok(status) => status,
        Err(e) => return fail(lkg_core::render_chain(&e)),
    };
    if status.services.is_empty() {
        return fail(format!("stack {stack} has no services"));
    }
    let short = |service: &str| service.strip_prefix(&format!("{stack}_")).unwrap_or(service).to_owned();
    let missing: Vec<String> = status
        .services
        .iter()
        .filter(|s| s.desired == 0 || s.running < s.desired)
        .map(|s| format!("{} {}/{} running", short(&s.service), s.running, s.desired))
        .collect();
    if !missing.is_empty() {
        return fail(missing.join(", "));
    }
    let docker = swarm.docker();
    let filters = HashMap::from([
        ("label", vec![format!("{STACK_NAMESPACE_LABEL}={stack}")]),
        ("status", vec!["running".to_owned()]),
    ]);
    let containers =
        match docker.list_containers(Some(ListContainersOptionsBuilder::default().filters(&filters).build())).await {
            Ok(containers) => containers,
            Err(e) => return fail(format!("cannot list the containers of stack {stack}: {e}")),
        };
    let mut bad = Vec::new();
    for container in containers {
        let Some(id) = container.id else { continue };
        let inspected = match docker.inspect_container(&id, None::<InspectContainerOptions>).await {
            Ok(inspected) => inspected,
            // Gone between list and inspect: replaced, which the next round sees.
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => continue,
            Err(e) => return fail(format!("cannot inspect container {id}: {e}")),
        };
        let health = inspected.state.and_then(|s| s.health).and_then(|h| h.status).map(|s| s.to_string());
        if let Some(health) = health.filter(|h| h == "unhealthy" || h == "starting") {
            let who = inspected.name.unwrap_or(id).trim_start_matches('/').to_owned();
            bad.push(format!("container {who} is {health}"));
        }
    }
    if bad.is_empty() {
        let counts: Vec<String> =
            status.services.iter().map(|s| format!("{} {}/{}", short(&s.service), s.running, s.desired)).collect();
        CheckResult { check: name, pass: true, detail: counts.join(", ") }
    } else {
        fail(bad.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn commands_pass_on_exit_zero_and_see_the_version() {
        let vars = vec![("LKG_VERSION".to_owned(), "1.2.0".to_owned())];
        let ok = command("test \"$LKG_VERSION\" = {version}", &vars, "1.2.0", Duration::from_secs(5)).await;
        assert!(ok.pass, "{ok:?}");
        let bad = command("echo nope >&2; exit 3", &vars, "1.2.0", Duration::from_secs(5)).await;
        assert!(!bad.pass);
        assert_eq!(bad.detail, "exit status: 3: nope");
        let slow = command("sleep 5", &vars, "1.2.0", Duration::from_millis(100)).await;
        assert!(!slow.pass && slow.detail.starts_with("no answer within"), "{slow:?}");
    }

    #[tokio::test]
    async fn http_checks_need_the_status_and_the_body() {
        // A loopback server answering a fixed body, once per connection.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let _ = socket.read(&mut buf).await;
                let _ =
                    socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\n1.2.0").await;
            }
        });
        let client = http_client().unwrap();
        let url = format!("http://127.0.0.1:{port}/version");
        let check = HttpCheck { url: url.clone(), status: 200, body: Some("{version}".into()) };
        assert!(http(&client, &check, "1.2.0", Duration::from_secs(5)).await.pass);
        let wrong = http(&client, &check, "1.3.0", Duration::from_secs(5)).await;
        assert_eq!(wrong.detail, "HTTP 200, body \"1.2.0\" lacks \"1.3.0\"");
        let status = http(&client, &HttpCheck { url, status: 204, body: None }, "1.2.0", Duration::from_secs(5)).await;
        assert!(!status.pass && status.detail.starts_with("HTTP 200 (expected 204)"), "{status:?}");
        let closed = HttpCheck::new(format!("http://127.0.0.1:{}/", lkg_testkit::free_port()));
        assert!(!http(&client, &closed, "1", Duration::from_secs(5)).await.pass);
    }
}
