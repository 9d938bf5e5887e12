//! Loopback HTTP helpers for tests: a tiny server, a fault-injecting proxy
//! in front of a registry, a token server, and a registry with `silly` auth.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A request as the helpers see it.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The request line and headers, as received.
    pub head: Vec<u8>,
}

impl HttpRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Reads one request; `None` at EOF.
pub fn read_request(reader: &mut BufReader<TcpStream>) -> Option<HttpRequest> {
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = reader.read_until(b'\n', &mut line).ok()?;
        if n == 0 {
            return None;
        }
        head.extend_from_slice(&line);
        if line == b"\r\n" || line == b"\n" {
            break;
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.lines();
    let mut first = lines.next()?.split_whitespace();
    let method = first.next()?.to_owned();
    let target = first.next()?.to_owned();
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))).collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(HttpRequest { method, target, headers, body, head })
}

pub fn response(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    for (k, v) in headers {
        let _ = write!(out, "{k}: {v}\r\n");
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// Serves `handler` on a loopback port, one request per connection; returns `127.0.0.1:PORT`.
pub fn serve(handler: impl Fn(&HttpRequest) -> Vec<u8> + Send + Sync + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let handler = Arc::new(handler);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let handler = Arc::clone(&handler);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                if let Some(req) = read_request(&mut reader) {
                    let mut stream = stream;
                    let _ = stream.write_all(&handler(&req));
                }
            });
        }
    });
    addr
}

/// What the proxy does to the request sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Pass everything through.
    None,
    /// Answer 503 to request `k` and every later one (an outage, or the
    /// runner dying at that point).
    FailFrom(u64),
    /// Forward request `k` to the registry, then drop the connection
    /// without the answer (the request took effect; the client cannot know).
    DropAfterForward(u64),
    /// Flip one byte in the body of responses to GETs whose path contains this.
    TamperBody(String),
}

#[derive(Debug)]
struct ProxyState {
    fault: Fault,
    count: u64,
    log: Vec<String>,
}

/// A loopback HTTP proxy in front of a registry that injects [`Fault`]s.
/// Every request gets its own connection (`Connection: close`), so the
/// request count is exact.
#[derive(Debug, Clone)]
pub struct FaultProxy {
    pub addr: String,
    state: Arc<Mutex<ProxyState>>,
}

impl FaultProxy {
    pub fn start(upstream: &str) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let state = Arc::new(Mutex::new(ProxyState { fault: Fault::None, count: 0, log: Vec::new() }));
        let upstream = upstream.to_owned();
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = Arc::clone(&shared);
                let upstream = upstream.clone();
                std::thread::spawn(move || proxy_connection(stream, &upstream, &state));
            }
        });
        FaultProxy { addr, state }
    }

    /// Sets the fault and resets the count and log.
    pub fn set(&self, fault: Fault) {
        let mut s = self.state.lock().unwrap();
        s.fault = fault;
        s.count = 0;
        s.log.clear();
    }

    pub fn count(&self) -> u64 {
        self.state.lock().unwrap().count
    }

    pub fn log(&self) -> Vec<String> {
        self.state.lock().unwrap().log.clone()
    }
}

fn proxy_connection(client: TcpStream, upstream: &str, state: &Mutex<ProxyState>) {
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let Some(req) = read_request(&mut reader) else { return };
    let mut client = client;
    let (n, fault) = {
        let mut s = state.lock().unwrap();
        s.count += 1;
        let n = s.count;
        s.log.push(format!("{n} {} {}", req.method, req.target.split('?').next().unwrap_or("")));
        (n, s.fault.clone())
    };
    if let Fault::FailFrom(k) = fault
        && n >= k
    {
        let _ = client.write_all(&response(
            503,
            &[],
            b"{\"errors\":[{\"code\":\"UNAVAILABLE\",\"message\":\"injected fault\"}]}",
        ));
        return;
    }
    // Forward with Connection: close so the upstream ends its answer with EOF.
    let head = String::from_utf8_lossy(&req.head);
    let mut forwarded = String::new();
    for (i, line) in head.split("\r\n").enumerate() {
        if i > 0 && line.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        if line.is_empty() {
            continue;
        }
        forwarded.push_str(line);
        forwarded.push_str("\r\n");
    }
    forwarded.push_str("Connection: close\r\n\r\n");
    let Ok(mut up) = TcpStream::connect(upstream) else {
        let _ = client.write_all(&response(502, &[], b"upstream down"));
        return;
    };
    up.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    if up.write_all(forwarded.as_bytes()).and_then(|()| up.write_all(&req.body)).is_err() {
        return;
    }
    let mut answer = Vec::new();
    let _ = up.read_to_end(&mut answer);
    if fault == Fault::DropAfterForward(n) {
        let _ = client.shutdown(std::net::Shutdown::Both);
        return;
    }
    if let Fault::TamperBody(path) = &fault
        && req.method == "GET"
        && req.target.contains(path.as_str())
        && let Some(pos) = answer.windows(4).position(|w| w == b"\r\n\r\n")
        && answer.len() > pos + 4
    {
        let i = pos + 4 + (answer.len() - pos - 4) / 2;
        answer[i] ^= 0x01;
    }
    let _ = client.write_all(&answer);
}

/// A token server for Bearer auth: accepts `user:password` Basic
/// credentials (or anonymous when `user` is empty) and records the scopes asked.
#[derive(Debug, Clone)]
pub struct TokenServer {
    pub addr: String,
    pub requests: Arc<Mutex<Vec<TokenRequest>>>,
}

#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub scopes: Vec<String>,
    pub service: Option<String>,
    pub authorized: bool,
    pub token: Option<String>,
}

fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl TokenServer {
    pub fn start(user: &str, password: &str) -> TokenServer {
        use base64::Engine as _;
        let expected =
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")));
        let requests: Arc<Mutex<Vec<TokenRequest>>> = Arc::default();
        let recorded = Arc::clone(&requests);
        let addr = serve(move |req| {
            let query = req.target.split_once('?').map_or("", |(_, q)| q);
            let mut scopes = Vec::new();
            let mut service = None;
            for pair in query.split('&') {
                match pair.split_once('=') {
                    Some(("scope", v)) => scopes.extend(url_decode(v).split(' ').map(str::to_owned)),
                    Some(("service", v)) => service = Some(url_decode(v)),
                    _ => {}
                }
            }
            let authorized = req.header("authorization") == Some(expected.as_str());
            let mut all = recorded.lock().unwrap();
            let token = authorized.then(|| format!("lkg-test-token-{}", all.len()));
            all.push(TokenRequest { scopes, service, authorized, token: token.clone() });
            match token {
                Some(t) => response(
                    200,
                    &[("Content-Type", "application/json")],
                    format!(r#"{{"token":"{t}","expires_in":300}}"#).as_bytes(),
                ),
                None => response(401, &[], b"bad credentials"),
            }
        });
        TokenServer { addr, requests }
    }
}

/// A `docker-registry` process of our own, on its own port and storage:
/// `auth: silly` pointing at a realm (every request must carry an
/// Authorization header; the token server decides who gets one), or no auth.
/// It can be killed and started again on the same port and storage (a
/// registry restart). Stopped when dropped.
#[derive(Debug)]
pub struct OwnRegistry {
    pub addr: String,
    config: PathBuf,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl OwnRegistry {
    /// With `auth: silly` pointing at `realm`.
    pub fn start(realm: &str) -> OwnRegistry {
        OwnRegistry::with_auth(&format!("auth:\n  silly:\n    realm: {realm}\n    service: lkg-silly\n"))
    }

    /// Without auth.
    pub fn plain() -> OwnRegistry {
        OwnRegistry::with_auth("")
    }

    fn with_auth(auth: &str) -> OwnRegistry {
        let dir = tempfile::tempdir().unwrap();
        let port = lkg_testkit::free_port();
        let addr = format!("127.0.0.1:{port}");
        let config: PathBuf = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{auth}",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let mut registry = OwnRegistry { addr, config, child: None, _dir: dir };
        registry.start_again();
        registry
    }

    /// Starts the process (again), same port and storage; returns when it answers.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the registry is running");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry is installed (scripts/testenv up installs it)");
        self.child = Some(child);
        let addr = self.addr.clone();
        lkg_testkit::wait_until("our own registry", Duration::from_secs(15), Duration::from_millis(20), || {
            lkg_testkit::http_get(&format!("http://{addr}/v2/")).ok().filter(|r| matches!(r.status, 200 | 401))
        });
    }

    /// SIGKILLs the process (a crash, or a host restart), leaving its storage.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRegistry {
    fn drop(&mut self) {
        self.kill();
    }
}
