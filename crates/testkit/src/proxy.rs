//! A loopback HTTP proxy that counts, logs and breaks requests on their way
//! to a real server (a registry), and the bare HTTP/1.1 request reader and
//! response writer it and the tests' tiny servers share.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A request as the helpers see it.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    /// `GET`, `PUT`...
    pub method: String,
    /// The request target (path and query).
    pub target: String,
    /// The headers, in order.
    pub headers: Vec<(String, String)>,
    /// The body (`Content-Length` bytes, or a chunked body decoded).
    pub body: Vec<u8>,
    /// The request line and headers, as received.
    pub head: Vec<u8>,
}

impl HttpRequest {
    /// The first header `name` (any case).
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
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        read_chunked(reader)?
    } else {
        let mut body = vec![0; len];
        reader.read_exact(&mut body).ok()?;
        body
    };
    Some(HttpRequest { method, target, headers, body, head })
}

/// Reads a chunked body (streamed uploads), trailers skipped.
fn read_chunked(reader: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let size = usize::from_str_radix(line.trim().split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            loop {
                let mut trailer = String::new();
                if reader.read_line(&mut trailer).ok()? == 0 || trailer.trim().is_empty() {
                    return Some(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..]).ok()?;
        let mut crlf = [0; 2];
        reader.read_exact(&mut crlf).ok()?;
    }
}

/// A complete response with `Connection: close`.
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
    /// `127.0.0.1:PORT`.
    pub addr: String,
    state: Arc<Mutex<ProxyState>>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (`host:port`).
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

    /// Requests since the last [`FaultProxy::set`].
    pub fn count(&self) -> u64 {
        self.state.lock().unwrap().count
    }

    /// `N METHOD PATH` of every request since the last [`FaultProxy::set`].
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
        let lower = line.to_ascii_lowercase();
        if i > 0 && lower.starts_with("connection:") {
            continue;
        }
        // A chunked body goes on decoded, with its length.
        if i > 0 && lower.starts_with("transfer-encoding:") {
            let _ = write!(forwarded, "Content-Length: {}\r\n", req.body.len());
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
