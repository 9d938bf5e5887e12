//! The real health probes: HTTP requests, shell commands and the swarm's own
//! view of a stack's tasks and container health checks.

use std::process::Stdio;
use std::time::Duration;

use lkg_swarm::{ContainerHealth, StackStatus, Swarm};

use crate::error::ReconcileError;
use crate::health::{CheckResult, HttpCheck};

/// The HTTP client for health checks: lkg's (rustls with ring, no
/// redirects: a health check judges the URL it was given), unpooled.
pub(crate) fn http_client() -> Result<reqwest::Client, ReconcileError> {
    lkg_notify::http::client_builder(concat!("lkg-reconcile/", env!("CARGO_PKG_VERSION")))
        // Every probe opens a fresh connection: a pooled one could outlive the
        // task that served it and make a replaced app look alive.
        .pool_max_idle_per_host(0)
        .build()
        .map_err(|e| ReconcileError::Http(lkg_core::render_chain(&e)))
}

/// `{version}` in a check's text stands for the version being checked.
pub(crate) fn fill(text: &str, version: &str) -> String {
    text.replace("{version}", version)
}

/// One HTTP check.
pub(crate) async fn http(client: &reqwest::Client, check: &HttpCheck, version: &str, timeout: Duration) -> CheckResult {
    let url = fill(&check.url, version);
    // Shown in reports, alerts and notifications: never with its secrets.
    let name = format!("GET {}", lkg_core::redact::url(&url));
    let response = match client.get(&url).timeout(timeout).send().await {
        Ok(response) => response,
        Err(e) => {
            let detail = lkg_core::redact::text(&lkg_core::render_chain(&e));
            return CheckResult { check: name, pass: false, detail };
        }
    };
    let status = response.status().as_u16();
    let body = lkg_notify::http::body_prefix(response, MAX_HEALTH_BODY).await;
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

/// The most of a health check's body that is read: an `http.body` check
/// looks for its text in the first MiB. A server answering more (or
/// forever) costs no more memory than this; the request's timeout bounds
/// the time.
const MAX_HEALTH_BODY: usize = 1 << 20;

/// How much of the end of a check command's stdout and stderr is kept (its
/// last line is shown); the rest is read and dropped, so a command printing
/// without end costs no more memory than this.
const COMMAND_OUTPUT_TAIL: usize = 64 << 10;

/// Runs `command` to its end, keeping the last [`COMMAND_OUTPUT_TAIL`]
/// bytes of each of its stdout and stderr.
async fn bounded_output(command: &mut tokio::process::Command) -> std::io::Result<std::process::Output> {
    let mut child = command.spawn()?;
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let (stdout, stderr, status) = tokio::join!(tail(stdout), tail(stderr), child.wait());
    Ok(std::process::Output { status: status?, stdout, stderr })
}

/// Reads `pipe` to its end, keeping its last [`COMMAND_OUTPUT_TAIL`] bytes.
async fn tail(pipe: Option<impl tokio::io::AsyncRead + Unpin>) -> Vec<u8> {
    use tokio::io::AsyncReadExt as _;
    let Some(mut pipe) = pipe else { return Vec::new() };
    let mut kept = Vec::new();
    let mut buf = vec![0u8; 16 << 10];
    while let Ok(n) = pipe.read(&mut buf).await {
        if n == 0 {
            break;
        }
        kept.extend_from_slice(&buf[..n]);
        if kept.len() > 2 * COMMAND_OUTPUT_TAIL {
            kept.drain(..kept.len() - COMMAND_OUTPUT_TAIL);
        }
    }
    if kept.len() > COMMAND_OUTPUT_TAIL {
        kept.drain(..kept.len() - COMMAND_OUTPUT_TAIL);
    }
    kept
}

/// One shell command: passes on exit 0 within `timeout`.
pub(crate) async fn command(script: &str, vars: &[(String, String)], version: &str, timeout: Duration) -> CheckResult {
    let script = fill(script, version);
    // URLs in the command (credentials, tokens) are masked where it is shown.
    let name = format!("sh -c {:?}", lkg_core::redact::text(&script));
    let mut command = tokio::process::Command::new("sh");
    command
        .arg("-c")
        .arg(&script)
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = match tokio::time::timeout(timeout, bounded_output(&mut command)).await {
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
    let said = lkg_core::redact::text(&said);
    let detail = if said.is_empty() { output.status.to_string() } else { format!("{}: {said}", output.status) };
    CheckResult { check: name, pass, detail }
}

/// Every service of the stack runs all its desired tasks, and no running
/// container of the stack reports `unhealthy` or `starting`: swarm's view,
/// asked of lkg-swarm, then judged by [`tasks_verdict`].
pub(crate) async fn tasks(swarm: &Swarm, stack: &str) -> CheckResult {
    let fail = |detail: String| CheckResult { check: "tasks".to_owned(), pass: false, detail };
    let status = match swarm.status(stack).await {
        Ok(status) => status,
        Err(e) => return fail(lkg_core::render_chain(&e)),
    };
    // Container health is asked only once every task runs: until then the
    // verdict is known, and the containers are still changing.
    let unhealthy = if tasks_missing(&status).is_empty() && !status.services.is_empty() {
        match swarm.unhealthy_containers(stack).await {
            Ok(unhealthy) => unhealthy,
            Err(e) => return fail(lkg_core::render_chain(&e)),
        }
    } else {
        Vec::new()
    };
    tasks_verdict(&status, &unhealthy)
}

fn tasks_missing(status: &StackStatus) -> Vec<String> {
    status
        .services
        .iter()
        .filter(|s| s.desired == 0 || s.running < s.desired)
        .map(|s| format!("{} {}/{} running", short(&status.stack, &s.service), s.running, s.desired))
        .collect()
}

fn short(stack: &str, service: &str) -> String {
    service.strip_prefix(&format!("{stack}_")).unwrap_or(service).to_owned()
}

/// The `tasks` check over swarm's view of a stack: every service runs all
/// its desired tasks (a service scaled to 0 fails too: the app is not
/// serving), and no running container is `unhealthy` or `starting`.
pub(crate) fn tasks_verdict(status: &StackStatus, unhealthy: &[ContainerHealth]) -> CheckResult {
    let result = |pass: bool, detail: String| CheckResult { check: "tasks".to_owned(), pass, detail };
    if status.services.is_empty() {
        return result(false, format!("stack {} has no services", status.stack));
    }
    let missing = tasks_missing(status);
    if !missing.is_empty() {
        return result(false, missing.join(", "));
    }
    if !unhealthy.is_empty() {
        let bad: Vec<String> = unhealthy.iter().map(|c| format!("container {} is {}", c.container, c.health)).collect();
        return result(false, bad.join(", "));
    }
    let counts: Vec<String> = status
        .services
        .iter()
        .map(|s| format!("{} {}/{}", short(&status.stack, &s.service), s.running, s.desired))
        .collect();
    result(true, counts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(name: &str, running: u64, desired: u64) -> lkg_swarm::ServiceState {
        lkg_swarm::ServiceState {
            service: format!("shop_{name}"),
            deploy_id: None,
            image: None,
            mode: lkg_swarm::observe::ServiceMode::Replicated { replicas: desired },
            update: None,
            running,
            desired,
            task_errors: Vec::new(),
        }
    }

    fn stack(services: Vec<lkg_swarm::ServiceState>) -> StackStatus {
        StackStatus { stack: "shop".to_owned(), services }
    }

    #[test]
    fn tasks_pass_when_every_task_runs_and_no_container_is_unhealthy() {
        let ok = tasks_verdict(&stack(vec![service("app", 1, 1), service("db", 2, 2)]), &[]);
        assert_eq!((ok.pass, ok.detail.as_str()), (true, "app 1/1, db 2/2"));
    }

    #[test]
    fn tasks_fail_on_missing_tasks_an_empty_stack_or_unhealthy_containers() {
        let empty = tasks_verdict(&stack(vec![]), &[]);
        assert_eq!((empty.pass, empty.detail.as_str()), (false, "stack shop has no services"));
        let short = tasks_verdict(&stack(vec![service("app", 0, 1), service("worker", 0, 0)]), &[]);
        assert_eq!((short.pass, short.detail.as_str()), (false, "app 0/1 running, worker 0/0 running"));
        let sick = [
            ContainerHealth { container: "shop_app.1.x".to_owned(), health: "unhealthy".to_owned() },
            ContainerHealth { container: "shop_db.1.y".to_owned(), health: "starting".to_owned() },
        ];
        let unhealthy = tasks_verdict(&stack(vec![service("app", 1, 1)]), &sick);
        assert_eq!(
            (unhealthy.pass, unhealthy.detail.as_str()),
            (false, "container shop_app.1.x is unhealthy, container shop_db.1.y is starting")
        );
    }

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

    /// This process's peak resident memory (each test runs in its own
    /// process under nextest).
    fn peak_rss_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    #[tokio::test]
    async fn a_command_printing_hundreds_of_megabytes_costs_only_its_tail() {
        let before = peak_rss_kib();
        let vars = Vec::new();
        // About 260 MB of output, then exit 0.
        let loud = command("seq 1 30000000", &vars, "1", Duration::from_secs(60)).await;
        assert!(loud.pass, "{loud:?}");
        assert_eq!(loud.detail, "exit status: 0: 30000000");
        let grown = peak_rss_kib().saturating_sub(before);
        assert!(grown < 32 * 1024, "the check kept {grown} KiB of output");
    }

    #[tokio::test]
    async fn an_endless_health_body_is_read_only_up_to_its_bound() {
        // A server answering 200 and a body that never ends.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = socket.read(&mut buf).await;
            let _ = socket.write_all(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nstatus: ok\n").await;
            let chunk = vec![b'x'; 64 << 10];
            while socket.write_all(&chunk).await.is_ok() {}
        });
        let before = peak_rss_kib();
        let client = http_client().unwrap();
        let check = HttpCheck { url: format!("http://127.0.0.1:{port}/health"), status: 200, body: Some("ok".into()) };
        let started = std::time::Instant::now();
        let result = http(&client, &check, "1", Duration::from_secs(30)).await;
        assert!(result.pass, "{result:?}");
        assert!(started.elapsed() < Duration::from_secs(20), "the check read the endless body until its timeout");
        let grown = peak_rss_kib().saturating_sub(before);
        assert!(grown < 32 * 1024, "the check kept {grown} KiB of body");
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
