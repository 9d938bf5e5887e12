use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// A plain HTTP/1.1 response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The body, lossily decoded.
    pub body: String,
}

/// `GET http://host:port/path` with a short timeout; `Err` on connection
/// failure. Enough to probe the fixture app without an HTTP dependency.
pub fn http_get(url: &str) -> std::io::Result<HttpResponse> {
    http_request("GET", url, None)
}

/// One plain-HTTP request (`http://` only), `Connection: close`.
pub fn http_request(method: &str, url: &str, body: Option<&[u8]>) -> std::io::Result<HttpResponse> {
    let invalid = |msg: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{msg}: {url}"));
    let rest = url.strip_prefix("http://").ok_or_else(|| invalid("only http:// URLs"))?;
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
    let addr = authority.to_socket_addrs()?.next().ok_or_else(|| invalid("no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let body = body.unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "no HTTP status line"))?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Ok(HttpResponse { status, body })
}

/// One request an [`HttpReceiver`] read, and the status it answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedRequest {
    /// `POST`, `GET`, ...
    pub method: String,
    /// The request target: path and query.
    pub path: String,
    /// The headers, names lowercased, in order.
    pub headers: Vec<(String, String)>,
    /// The body (`Content-Length` bytes).
    pub body: Vec<u8>,
    /// The status it was answered with.
    pub status: u16,
}

impl ReceivedRequest {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    /// The body, lossily decoded.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }
}

/// A loopback HTTP/1.1 server that records every request and answers each
/// with the next of a scripted list of statuses (the last one repeats), one
/// request per connection. For webhooks and notification channels: tests
/// check what was sent and how a sender reacts to failures.
///
/// ```
/// let receiver = lkg_testkit::HttpReceiver::start(&[500, 200]);
/// let url = receiver.url("/hook");
/// assert_eq!(lkg_testkit::http_request("POST", &url, Some(b"one")).unwrap().status, 500);
/// assert_eq!(lkg_testkit::http_request("POST", &url, Some(b"two")).unwrap().status, 200);
/// assert_eq!(receiver.accepted().len(), 1);
/// assert_eq!(receiver.requests()[1].text(), "two");
/// ```
#[derive(Debug)]
pub struct HttpReceiver {
    addr: std::net::SocketAddr,
    requests: std::sync::Arc<std::sync::Mutex<Vec<ReceivedRequest>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl HttpReceiver {
    /// Listens on a free loopback port; `statuses` empty answers 200 always.
    pub fn start(statuses: &[u16]) -> HttpReceiver {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let statuses = if statuses.is_empty() { vec![200] } else { statuses.to_vec() };
        let (seen, stopped) = (Arc::clone(&requests), Arc::clone(&stop));
        std::thread::spawn(move || {
            let answered = Arc::new(Mutex::new(0usize));
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let (seen, answered, statuses) = (Arc::clone(&seen), Arc::clone(&answered), statuses.clone());
                std::thread::spawn(move || serve(stream, &seen, &answered, &statuses));
            }
        });
        HttpReceiver { addr, requests, stop }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Every request so far, in the order they were answered.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.requests.lock().expect("requests lock").clone()
    }

    /// The requests answered with a 2xx.
    pub fn accepted(&self) -> Vec<ReceivedRequest> {
        self.requests().into_iter().filter(|r| (200..300).contains(&r.status)).collect()
    }
}

impl Drop for HttpReceiver {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

fn serve(
    mut stream: TcpStream,
    seen: &std::sync::Mutex<Vec<ReceivedRequest>>,
    answered: &std::sync::Mutex<usize>,
    statuses: &[u16],
) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let (head_end, length) = loop {
        let Ok(n) = stream.read(&mut buf) else { return };
        if n == 0 {
            return;
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..at]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0)))
                .unwrap_or(0);
            break (at + 4, length);
        }
    };
    while raw.len() < head_end + length {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&raw[..head_end - 4]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split_whitespace();
    let method = request_line.next().unwrap_or_default().to_owned();
    let path = request_line.next().unwrap_or_default().to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let body = raw[head_end..(head_end + length).min(raw.len())].to_vec();
    // Take the status and record the request together, so the order of
    // `requests()` is the order of the statuses.
    let status = {
        let mut seen = seen.lock().expect("requests lock");
        let mut answered = answered.lock().expect("count lock");
        let status = statuses[(*answered).min(statuses.len() - 1)];
        *answered += 1;
        seen.push(ReceivedRequest { method, path, headers, body, status });
        status
    };
    let _ = write!(stream, "HTTP/1.1 {status} Scripted\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    let _ = stream.flush();
}
