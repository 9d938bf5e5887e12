//! Loopback HTTP helpers for tests: a tiny server, a token server, and a
//! registry with `silly` auth; the fault-injecting proxy is testkit's.

use std::io::{BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

pub use lkg_testkit::proxy::{Fault, FaultProxy, HttpRequest, read_request, response};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    dir: tempfile::TempDir,
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
        let mut registry = OwnRegistry { addr, config, child: None, dir };
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

    /// Its storage: distribution's `docker/registry/v2` directory.
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("data/docker/registry/v2")
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
