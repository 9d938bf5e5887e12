//! The distribution client: one HTTP connection pool, authentication,
//! retries, and the registry operations lkg needs.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;

use crate::auth::{Challenge, Credential, CredentialSource, DockerConfig};
use crate::manifest::{ImageConfig, ImageManifest, ManifestKind, Platform, media};
use crate::reference::is_loopback;
use crate::retry::{Failed, Unsent, send_with_retries};
use crate::{Digest, DigestWriter, Manifest, Reference, RegistryError, VerifyDigest};

/// A blob's content as a stream of chunks. The stream checks the digest as
/// it goes and ends with [`RegistryError::DigestMismatch`] instead of its
/// last chunk when the content is not what was asked for.
pub type BlobStream = BoxStream<'static, Result<Bytes, RegistryError>>;

/// A [`BlobStream`] as a blocking [`std::io::Read`], for synchronous parsers
/// (`tar`, `flate2`) that read a layer without holding it in memory.
///
/// It drives the stream on `handle`, so it must be used outside the
/// runtime's own threads: in `tokio::task::spawn_blocking`, or in plain
/// synchronous code next to a runtime from [`crate::runtime`].
///
/// ```no_run
/// # fn run(client: lkg_registry::Client, layer: lkg_registry::Reference, digest: lkg_registry::Digest) -> std::io::Result<()> {
/// let rt = lkg_registry::runtime()?;
/// let stream = rt.block_on(client.blob_stream(&layer, &digest)).map_err(std::io::Error::other)?;
/// let mut reader = lkg_registry::BlobReader::new(stream, rt.handle().clone());
/// let mut first = [0u8; 512];
/// std::io::Read::read_exact(&mut reader, &mut first)?; // e.g. the first tar header
/// # Ok(()) }
/// ```
pub struct BlobReader {
    stream: BlobStream,
    handle: tokio::runtime::Handle,
    chunk: Bytes,
    done: bool,
}

impl fmt::Debug for BlobReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobReader")
            .field("buffered", &self.chunk.len())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl BlobReader {
    /// Reads `stream`, polling it on `handle`.
    pub fn new(stream: BlobStream, handle: tokio::runtime::Handle) -> BlobReader {
        BlobReader { stream, handle, chunk: Bytes::new(), done: false }
    }
}

impl std::io::Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            if self.done {
                return Ok(0);
            }
            match self.handle.block_on(self.stream.next()) {
                Some(Ok(chunk)) => self.chunk = chunk,
                // A digest mismatch arrives instead of the end: the reader sees an error, never a clean EOF.
                Some(Err(e)) => {
                    self.done = true;
                    return Err(std::io::Error::other(e));
                }
                None => self.done = true,
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

/// How often and how patiently a request is retried.
///
/// Connection errors and `408`, `429`, `500`, `502`, `503`, `504` answers are retried with exponential
/// backoff, or after the registry's `Retry-After` when it sends one (capped
/// at a minute). Token requests are retried the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total (1 = no retry).
    pub attempts: u32,
    /// The first backoff; each next one doubles.
    pub initial_backoff: Duration,
    /// The longest backoff.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy { attempts: 4, initial_backoff: Duration::from_millis(250), max_backoff: Duration::from_secs(8) }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` when the server names none.
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.min(16).saturating_sub(1);
        (self.initial_backoff * factor).min(self.max_backoff)
    }
}

/// How a [`Client`] connects and authenticates.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Registries (`host[:port]`) that may be spoken to over plain HTTP.
    /// Loopback hosts always may.
    pub insecure_registries: Vec<String>,
    /// Retries for transient failures.
    pub retry: RetryPolicy,
    /// Where credentials come from.
    pub credentials: Arc<dyn CredentialSource>,
    /// Connect timeout per attempt.
    pub connect_timeout: Duration,
    /// The longest wait for the next bytes of any answer (headers or body,
    /// a blob's too): a server that stops sending is given up on after this.
    pub read_timeout: Duration,
    /// The whole time one small document may take (a manifest, an index, a
    /// tag list page, a token), from connecting to its last byte: a server
    /// that drips one byte at a time is given up on after this.
    pub document_timeout: Duration,
    /// How many blobs a copy moves at once.
    pub concurrency: usize,
    /// On a registry without the referrers API, how long after adding to a
    /// referrers index (tag `sha256-<hex>`) lkg reads it once more to catch
    /// a concurrent writer that overwrote the entry (see
    /// [`Client::push_referrer`]).
    pub referrers_settle: Duration,
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            insecure_registries: Vec::new(),
            retry: RetryPolicy::default(),
            credentials: Arc::new(DockerConfig::from_env()),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            document_timeout: Duration::from_secs(60),
            concurrency: 4,
            referrers_settle: Duration::from_millis(200),
        }
    }
}

/// An authorization scope, `repository:<name>:<actions>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope(String);

impl Scope {
    /// Read access to `repository`.
    pub fn pull(repository: &str) -> Scope {
        Scope(format!("repository:{repository}:pull"))
    }

    /// Read and write access to `repository`.
    pub fn push(repository: &str) -> Scope {
        Scope(format!("repository:{repository}:pull,push"))
    }

    /// Read, write and delete access to `repository`.
    pub fn delete(repository: &str) -> Scope {
        Scope(format!("repository:{repository}:pull,push,delete"))
    }

    /// The scope string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a `HEAD` on a manifest says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestHead {
    /// The digest (`Docker-Content-Digest`).
    pub digest: Digest,
    /// The media type.
    pub media_type: String,
    /// The size in bytes.
    pub size: Option<u64>,
}

/// The outcome of a cross-repository mount request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mount {
    /// The registry linked the blob: nothing was uploaded.
    Mounted,
    /// The registry refused (202 with an upload session, or an error); the
    /// blob must be uploaded. The session's URL, when one was opened.
    Refused(Option<String>),
}

#[derive(Deserialize)]
struct TokenAnswer {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

struct Token {
    value: String,
    expires: Instant,
}

#[derive(Default)]
struct AuthState {
    credentials: HashMap<String, Option<Credential>>,
    challenges: HashMap<String, Challenge>,
    tokens: HashMap<(String, String), Token>,
}

struct Inner {
    http: reqwest::Client,
    options: ClientOptions,
    auth: Mutex<AuthState>,
    token_fetch: tokio::sync::Mutex<()>,
    requests: AtomicU64,
}

/// An OCI distribution client. Cheap to clone: clones share connections,
/// credentials and tokens.
///
/// ```no_run
/// # async fn run() -> Result<(), lkg_registry::RegistryError> {
/// use lkg_registry::{Client, ClientOptions, Reference};
/// let client = Client::new(ClientOptions::default())?;
/// let image: Reference = "ghcr.io/ublue-os/kinoite-main:latest".parse()?;
/// let digest = client.resolve(&image).await?;          // HEAD: tag -> digest
/// let config = client.image_config(&image.at_digest(&digest), None).await?;
/// println!("{digest} {:?}", config.labels().get("ostree.linux"));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").field("options", &self.inner.options).finish_non_exhaustive()
    }
}

struct Request {
    method: Method,
    url: String,
    headers: HeaderMap,
    body: Option<Bytes>,
    /// The whole-request deadline of a small document (not of a blob).
    timeout: Option<Duration>,
}

impl Request {
    fn new(method: Method, url: String) -> Request {
        Request { method, url, headers: HeaderMap::new(), body: None, timeout: None }
    }

    /// A request for a small document: bounded in total time.
    fn document(mut self, timeout: Duration) -> Request {
        self.timeout = Some(timeout);
        self
    }

    fn header(mut self, name: header::HeaderName, value: &str) -> Request {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.insert(name, v);
        }
        self
    }
}

/// The largest manifest or index lkg reads: 4 MiB, the most the distribution
/// spec asks a registry to accept.
const MAX_MANIFEST: usize = 4 << 20;
/// The largest blob [`Client::get_blob`] reads into memory.
pub const MAX_SMALL_BLOB: usize = 16 << 20;
/// The largest token-server answer lkg reads.
const MAX_TOKEN_ANSWER: usize = 1 << 20;
/// The largest page of a tag list lkg reads.
const MAX_TAG_PAGE: usize = 16 << 20;

/// Why a small document's body could not be read.
enum DocumentRead {
    /// The connection failed or timed out.
    Transport(reqwest::Error),
    /// The body is larger than the limit (nothing past it is read).
    TooLarge,
}

/// Reads a small document's body, refusing more than `limit` bytes, so a
/// hostile server cannot make lkg hold an unbounded answer in memory.
async fn read_document(mut response: reqwest::Response, limit: usize) -> Result<Bytes, DocumentRead> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(DocumentRead::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(DocumentRead::Transport)? {
        if body.len() + chunk.len() > limit {
            return Err(DocumentRead::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(body))
}

/// `https://host/path?query` -> `https://host/path`, for messages (upload
/// URLs carry long state in their query).
fn display_url(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_owned()
}

async fn body_text(response: reqwest::Response) -> String {
    let text = response.text().await.unwrap_or_default();
    let text = text.trim();
    let mut end = text.len().min(400);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

impl Client {
    /// A client with `options`.
    pub fn new(options: ClientOptions) -> Result<Client, RegistryError> {
        // reqwest is built without a default crypto provider (`rustls-no-provider`):
        // install ring's, once per process. An error means one is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .user_agent(concat!("lkg-registry/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            // Without it a request with a body waits for a delayed ACK between
            // its header and body writes (Nagle): ~20 ms per PUT.
            .tcp_nodelay(true)
            .connect_timeout(options.connect_timeout)
            .read_timeout(options.read_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| RegistryError::Setup(lkg_core::render_chain(&e)))?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                options,
                auth: Mutex::default(),
                token_fetch: tokio::sync::Mutex::new(()),
                requests: AtomicU64::new(0),
            }),
        })
    }

    /// The options this client was built with.
    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    /// How many HTTP requests this client has sent (token requests included).
    pub fn request_count(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    fn plain_http_allowed(&self, host: &str) -> bool {
        is_loopback(host) || self.inner.options.insecure_registries.iter().any(|h| h == host)
    }

    fn base_url(&self, host: &str) -> String {
        if self.plain_http_allowed(host) { format!("http://{host}") } else { format!("https://{host}") }
    }

    fn repo_url(&self, r: &Reference, rest: &str) -> String {
        format!("{}/v2/{}/{rest}", self.base_url(r.api_host()), r.repository())
    }

    fn credential(&self, registry: &str) -> Result<Option<Credential>, RegistryError> {
        if let Some(c) = self.inner.auth.lock().expect("auth state").credentials.get(registry) {
            return Ok(c.clone());
        }
        let c = self.inner.options.credentials.credential(registry)?;
        self.inner.auth.lock().expect("auth state").credentials.insert(registry.to_owned(), c.clone());
        Ok(c)
    }

    fn scope_key(scopes: &[Scope]) -> String {
        let mut s: Vec<&str> = scopes.iter().map(Scope::as_str).collect();
        s.sort_unstable();
        s.dedup();
        s.join(" ")
    }

    /// The Authorization header for a request to `host` needing `scopes`,
    /// when the registry's scheme is known (a token is fetched if needed).
    async fn authorization(
        &self,
        registry: &str,
        host: &str,
        scopes: &[Scope],
    ) -> Result<Option<String>, RegistryError> {
        let challenge = self.inner.auth.lock().expect("auth state").challenges.get(host).cloned();
        match challenge {
            None => Ok(None),
            Some(Challenge::Basic) => Ok(self.credential(registry)?.and_then(|c| c.basic_header())),
            Some(Challenge::Bearer { realm, service }) => {
                let key = (host.to_owned(), Client::scope_key(scopes));
                let cached = || {
                    self.inner
                        .auth
                        .lock()
                        .expect("auth state")
                        .tokens
                        .get(&key)
                        .filter(|t| t.expires > Instant::now())
                        .map(|t| format!("Bearer {}", t.value))
                };
                if let Some(value) = cached() {
                    return Ok(Some(value));
                }
                // One fetch at a time: concurrent blob copies needing the same
                // scopes wait for the first one's token instead of each asking.
                let _single_flight = self.inner.token_fetch.lock().await;
                if let Some(value) = cached() {
                    return Ok(Some(value));
                }
                let token = self.fetch_token(registry, &realm, service.as_deref(), scopes).await?;
                let value = format!("Bearer {}", token.value);
                self.inner.auth.lock().expect("auth state").tokens.insert(key, token);
                Ok(Some(value))
            }
        }
    }

    async fn fetch_token(
        &self,
        registry: &str,
        realm: &str,
        service: Option<&str>,
        scopes: &[Scope],
    ) -> Result<Token, RegistryError> {
        let unauthorized = |reason: String| RegistryError::Unauthorized {
            registry: registry.to_owned(),
            scope: Client::scope_key(scopes),
            reason,
        };
        let url = Url::parse(realm).map_err(|e| unauthorized(format!("token realm {realm:?} is not a URL: {e}")))?;
        let realm_host = url.host_str().unwrap_or_default().to_owned();
        let realm_authority = match url.port() {
            Some(p) => format!("{realm_host}:{p}"),
            None => realm_host.clone(),
        };
        // The realm gets the credentials: plain HTTP to it only on the same
        // terms as to a registry (loopback, or listed), whatever the
        // registry's own host is. A loopback registry naming a remote
        // `http://` realm would otherwise send them in clear over the network.
        if url.scheme() == "http" && !self.plain_http_allowed(&realm_authority) {
            return Err(RegistryError::InsecureRefused { registry: realm_authority });
        }
        let credential = self.credential(registry)?;
        let request = || match &credential {
            Some(Credential::IdentityToken(refresh)) => {
                let mut form = Url::parse("http://x/").expect("static URL");
                {
                    let mut q = form.query_pairs_mut();
                    q.append_pair("grant_type", "refresh_token");
                    q.append_pair("refresh_token", refresh);
                    q.append_pair("client_id", "lkg");
                    if let Some(s) = service {
                        q.append_pair("service", s);
                    }
                    q.append_pair("scope", &Client::scope_key(scopes));
                }
                self.inner
                    .http
                    .post(url.clone())
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(form.query().unwrap_or_default().to_owned())
            }
            other => {
                let mut url = url.clone();
                {
                    let mut q = url.query_pairs_mut();
                    q.clear();
                    if let Some(s) = service {
                        q.append_pair("service", s);
                    }
                    for s in scopes {
                        q.append_pair("scope", s.as_str());
                    }
                }
                let mut rb = self.inner.http.get(url);
                if let Some(h) = other.as_ref().and_then(Credential::basic_header) {
                    rb = rb.header(header::AUTHORIZATION, h);
                }
                rb
            }
        };
        let timeout = self.inner.options.document_timeout;
        let request = || request().timeout(timeout);
        let sent = send_with_retries(self.inner.options.retry, || {
            self.inner.requests.fetch_add(1, Ordering::Relaxed);
            let request = request();
            async move { request.send().await.map_err(|e| Unsent::Transport(without_url(&e))) }
        })
        .await;
        let response = match sent {
            Ok(response) => response,
            Err(Failed::Transient { response, .. }) => {
                return Err(RegistryError::Unreachable {
                    registry: realm_authority,
                    reason: format!("token server answered {}", response.status()),
                });
            }
            Err(Failed::Transport(reason)) => {
                return Err(RegistryError::Unreachable {
                    registry: realm_authority,
                    reason: format!("token server: {reason}"),
                });
            }
            Err(Failed::Refused(e)) => return Err(e),
        };
        let status = response.status();
        if !status.is_success() {
            return Err(unauthorized(format!("the token server answered {status}: {}", body_text(response).await)));
        }
        let body = read_document(response, MAX_TOKEN_ANSWER).await.map_err(|e| RegistryError::Unreachable {
            registry: realm_authority.clone(),
            reason: match e {
                DocumentRead::Transport(e) => format!("token server: {}", without_url(&e)),
                DocumentRead::TooLarge => format!("token server: an answer larger than {MAX_TOKEN_ANSWER} bytes"),
            },
        })?;
        let answer: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|e| unauthorized(format!("the token server answered malformed JSON: {e}")))?;
        let value = answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| unauthorized("the token server answered without a token".to_owned()))?;
        // Tokens live at least 60 s by spec; keep a margin for clock and latency.
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(60).max(60));
        Ok(Token { value, expires: Instant::now() + lifetime.saturating_sub(Duration::from_secs(15)) })
    }

    /// Sends `make()` with authentication, retries and redirects.
    async fn execute(
        &self,
        r: &Reference,
        scopes: &[Scope],
        make: &(dyn Fn() -> Request + Sync),
    ) -> Result<reqwest::Response, RegistryError> {
        let host = r.api_host().to_owned();
        // `make` builds the same request every time: its method and URL name it in errors.
        let Request { method, url, .. } = make();
        let reauthenticated = AtomicBool::new(false);
        let sent = send_with_retries(self.inner.options.retry, || {
            self.send_authenticated(r, &host, scopes, make, &reauthenticated)
        })
        .await;
        match sent {
            Ok(response) => Ok(response),
            Err(Failed::Refused(e)) => Err(e),
            Err(Failed::Transport(reason)) => Err(RegistryError::Unreachable { registry: host, reason }),
            Err(Failed::Transient { response, attempts }) => {
                let status = response.status();
                Err(RegistryError::Unreachable {
                    registry: host,
                    reason: format!(
                        "{method} {} answered {status} {attempts} times: {}",
                        display_url(&url),
                        body_text(response).await
                    ),
                })
            }
        }
    }

    /// One attempt at `make()`: authorised, and sent again at once after a
    /// 401 that teaches a new challenge or calls for a fresh token. That
    /// happens once per request (`reauthenticated`), not once per attempt:
    /// a registry that keeps answering 401 is refused, not retried.
    async fn send_authenticated(
        &self,
        r: &Reference,
        host: &str,
        scopes: &[Scope],
        make: &(dyn Fn() -> Request + Sync),
        reauthenticated: &AtomicBool,
    ) -> Result<reqwest::Response, Unsent> {
        loop {
            let auth = self.authorization(r.registry(), host, scopes).await.map_err(Unsent::Refused)?;
            let request = make();
            let method = request.method.clone();
            let url = request.url.clone();
            let response = self.send_following(request, auth).await?;
            if response.status() != StatusCode::UNAUTHORIZED {
                return Ok(response);
            }
            let challenge = response
                .headers()
                .get(header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .and_then(Challenge::parse);
            let known = self.inner.auth.lock().expect("auth state").challenges.get(host).cloned();
            let has_credential = self.credential(r.registry()).map_err(Unsent::Refused)?.is_some();
            let again = !reauthenticated.load(Ordering::Relaxed);
            let retry_auth = match (&challenge, &known) {
                (None, _) => false,
                (Some(Challenge::Basic), _) => again && has_credential,
                (Some(c), _) => again && (known.as_ref() != Some(c) || has_credential),
            };
            if retry_auth {
                let mut state = self.inner.auth.lock().expect("auth state");
                if let Some(c) = challenge {
                    state.challenges.insert(host.to_owned(), c);
                }
                state.tokens.remove(&(host.to_owned(), Client::scope_key(scopes)));
                drop(state);
                reauthenticated.store(true, Ordering::Relaxed);
                continue;
            }
            let reason = if has_credential {
                format!("{method} {} answered 401: {}", display_url(&url), body_text(response).await)
            } else {
                format!(
                    "{method} {} needs credentials and none were found: {}",
                    display_url(&url),
                    body_text(response).await
                )
            };
            return Err(Unsent::Refused(RegistryError::Unauthorized {
                registry: r.registry().to_owned(),
                scope: Client::scope_key(scopes),
                reason,
            }));
        }
    }

    /// One attempt, following redirects for GET and HEAD. Authorization is
    /// dropped as soon as a redirect leaves the registry's host (blob
    /// storage on another host must never see the registry's token).
    async fn send_following(&self, request: Request, auth: Option<String>) -> Result<reqwest::Response, Unsent> {
        let Request { method, url, headers, body, timeout } = request;
        let mut url = Url::parse(&url).map_err(|e| Unsent::Transport(format!("bad URL {}: {e}", display_url(&url))))?;
        let origin = (url.scheme().to_owned(), url.host_str().map(str::to_owned), url.port_or_known_default());
        let mut auth = auth;
        for _ in 0..=5 {
            let mut rb = self.inner.http.request(method.clone(), url.clone()).headers(headers.clone());
            if let Some(a) = &auth {
                rb = rb.header(header::AUTHORIZATION, a);
            }
            if let Some(b) = &body {
                rb = rb.body(b.clone());
            }
            if let Some(t) = timeout {
                rb = rb.timeout(t);
            }
            self.inner.requests.fetch_add(1, Ordering::Relaxed);
            let response = rb.send().await.map_err(|e| Unsent::Transport(without_url(&e)))?;
            let follow = response.status().is_redirection() && (method == Method::GET || method == Method::HEAD);
            if !follow {
                return Ok(response);
            }
            let Some(location) = response.headers().get(header::LOCATION).and_then(|l| l.to_str().ok()) else {
                return Ok(response);
            };
            let next = url.join(location).map_err(|e| Unsent::Transport(format!("bad redirect {location:?}: {e}")))?;
            let next_origin =
                (next.scheme().to_owned(), next.host_str().map(str::to_owned), next.port_or_known_default());
            if next_origin != origin {
                auth = None;
            }
            if next.scheme() == "http" {
                let authority = match next.port() {
                    Some(p) => format!("{}:{p}", next.host_str().unwrap_or_default()),
                    None => next.host_str().unwrap_or_default().to_owned(),
                };
                if !self.plain_http_allowed(&authority) {
                    return Err(Unsent::Refused(RegistryError::InsecureRefused { registry: authority }));
                }
            }
            url = next;
        }
        Err(Unsent::Transport(format!("too many redirects from {}", display_url(url.as_str()))))
    }

    async fn unexpected(response: reqwest::Response, method: &Method, url: &str) -> RegistryError {
        let status = response.status().as_u16();
        RegistryError::Status {
            method: method.to_string(),
            url: display_url(url),
            status,
            body: body_text(response).await,
        }
    }

    /// `HEAD` a manifest: its digest without its body. `None` when absent.
    pub async fn head_manifest(&self, r: &Reference) -> Result<Option<ManifestHead>, RegistryError> {
        let url = self.repo_url(r, &format!("manifests/{}", r.target()));
        let timeout = self.inner.options.document_timeout;
        let make = || {
            Request::new(Method::HEAD, url.clone()).header(header::ACCEPT, media::ACCEPT_MANIFESTS).document(timeout)
        };
        let response = self.execute(r, &[Scope::pull(r.repository())], &make).await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => {
                let h = response.headers();
                let digest = h.get("docker-content-digest").and_then(|v| v.to_str().ok()).map(str::parse::<Digest>);
                let media_type = h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                let size = h.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
                if let Some(Ok(digest)) = digest {
                    return Ok(Some(ManifestHead { digest, media_type, size }));
                }
                // No digest header (some registries): fetch the body and hash it.
                let m = self.get_manifest(r).await?;
                Ok(Some(ManifestHead { size: Some(m.bytes.len() as u64), digest: m.digest, media_type: m.media_type }))
            }
            _ => Err(Client::unexpected(response, &Method::HEAD, &url).await),
        }
    }

    /// Resolves a reference to its manifest digest (`HEAD`); a reference with
    /// a digest is checked to exist.
    pub async fn resolve(&self, r: &Reference) -> Result<Digest, RegistryError> {
        match self.head_manifest(r).await? {
            Some(head) => Ok(head.digest),
            None => Err(RegistryError::NotFound { what: format!("manifest {r}") }),
        }
    }

    /// Fetches a manifest as raw bytes, verified against the digest in the
    /// reference (or the registry's `Docker-Content-Digest`).
    pub async fn get_manifest(&self, r: &Reference) -> Result<Manifest, RegistryError> {
        self.get_manifest_opt(r).await?.ok_or_else(|| RegistryError::NotFound { what: format!("manifest {r}") })
    }

    /// Like [`Client::get_manifest`], but `None` when it does not exist.
    pub async fn get_manifest_opt(&self, r: &Reference) -> Result<Option<Manifest>, RegistryError> {
        Ok(self.get_manifest_with_etag(r).await?.map(|(m, _)| m))
    }

    /// Like [`Client::get_manifest_opt`], with the answer's `ETag` (for a
    /// conditional write of the same tag).
    pub(crate) async fn get_manifest_with_etag(
        &self,
        r: &Reference,
    ) -> Result<Option<(Manifest, Option<String>)>, RegistryError> {
        let url = self.repo_url(r, &format!("manifests/{}", r.target()));
        let timeout = self.inner.options.document_timeout;
        let make =
            || Request::new(Method::GET, url.clone()).header(header::ACCEPT, media::ACCEPT_MANIFESTS).document(timeout);
        let response = self.execute(r, &[Scope::pull(r.repository())], &make).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(Client::unexpected(response, &Method::GET, &url).await);
        }
        let header_digest =
            response.headers().get("docker-content-digest").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let content_type =
            response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let etag = response.headers().get(header::ETAG).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let bytes = read_document(response, MAX_MANIFEST).await.map_err(|e| match e {
            DocumentRead::Transport(e) => RegistryError::Unreachable {
                registry: r.api_host().to_owned(),
                reason: format!("reading manifest {r}: {}", without_url(&e)),
            },
            DocumentRead::TooLarge => RegistryError::Malformed {
                what: format!("manifest {r}"),
                reason: format!("it is larger than {} MiB, the most a registry needs to accept", MAX_MANIFEST >> 20),
            },
        })?;
        // Verified before it is parsed: altered bytes are a digest mismatch,
        // whether or not they still parse.
        let what = format!("manifest {r}");
        if let Some(expected) = r.digest() {
            expected.verify(&bytes, &what)?;
        } else if let Some(Ok(expected)) = header_digest.as_deref().map(str::parse::<Digest>) {
            expected.verify(&bytes, &what)?;
        }
        Ok(Some((Manifest::from_bytes(bytes.to_vec(), content_type.as_deref())?, etag)))
    }

    /// Stores `manifest` in `repo` under `target` (a tag, or its digest).
    pub async fn put_manifest(&self, repo: &Reference, target: &str, manifest: &Manifest) -> Result<(), RegistryError> {
        match self.put_manifest_if(repo, target, manifest, None).await? {
            PutAnswer::Stored { .. } => Ok(()),
            PutAnswer::PreconditionFailed => Err(RegistryError::Status {
                method: "PUT".into(),
                url: display_url(&self.repo_url(repo, &format!("manifests/{target}"))),
                status: 412,
                body: "precondition failed without a condition".into(),
            }),
        }
    }

    /// Stores `manifest` under `target`, with an optional HTTP condition
    /// (`If-Match: <etag>`, or `If-None-Match: *`). Registries that do not
    /// support conditions ignore them: the caller must check afterwards.
    pub(crate) async fn put_manifest_if(
        &self,
        repo: &Reference,
        target: &str,
        manifest: &Manifest,
        condition: Option<&Condition>,
    ) -> Result<PutAnswer, RegistryError> {
        let url = self.repo_url(repo, &format!("manifests/{target}"));
        let body = Bytes::from(manifest.bytes.clone());
        let make = || {
            let mut r = Request::new(Method::PUT, url.clone()).header(header::CONTENT_TYPE, &manifest.media_type);
            r = match condition {
                Some(Condition::Matches(etag)) => r.header(header::IF_MATCH, etag),
                Some(Condition::Absent) => r.header(header::IF_NONE_MATCH, "*"),
                None => r,
            };
            r.body = Some(body.clone());
            r
        };
        let response = self.execute(repo, &[Scope::push(repo.repository())], &make).await?;
        if condition.is_some() && response.status() == StatusCode::PRECONDITION_FAILED {
            return Ok(PutAnswer::PreconditionFailed);
        }
        if !response.status().is_success() {
            return Err(Client::unexpected(response, &Method::PUT, &url).await);
        }
        if let Some(Ok(stored)) =
            response.headers().get("docker-content-digest").and_then(|v| v.to_str().ok()).map(str::parse::<Digest>)
            && stored != manifest.digest
        {
            return Err(RegistryError::DigestMismatch {
                what: format!("manifest stored as {}/{}:{target}", repo.registry(), repo.repository()),
                expected: manifest.digest.clone(),
                actual: stored,
            });
        }
        let oci_subject =
            response.headers().get("oci-subject").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<Digest>().ok());
        Ok(PutAnswer::Stored { oci_subject })
    }

    /// One page of `GET /v2/<name>/referrers/<digest>` at `url`. A `404`
    /// (the registry has no referrers API) is [`ReferrersPage::Unsupported`].
    pub(crate) async fn referrers_page(&self, repo: &Reference, url: &str) -> Result<ReferrersPage, RegistryError> {
        let timeout = self.inner.options.document_timeout;
        let make =
            || Request::new(Method::GET, url.to_owned()).header(header::ACCEPT, media::OCI_INDEX).document(timeout);
        let response = self.execute(repo, &[Scope::pull(repo.repository())], &make).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(ReferrersPage::Unsupported);
        }
        if !response.status().is_success() {
            return Err(Client::unexpected(response, &Method::GET, url).await);
        }
        let headers = response.headers();
        let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let filters_applied = headers
            .get_all("oci-filters-applied")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|f| f.trim() == "artifactType");
        let next = next_link(headers, url)?;
        let body = read_document(response, MAX_MANIFEST).await.map_err(|e| match e {
            DocumentRead::Transport(e) => RegistryError::Unreachable {
                registry: repo.api_host().to_owned(),
                reason: format!("reading the referrers list: {}", without_url(&e)),
            },
            DocumentRead::TooLarge => RegistryError::Malformed {
                what: format!("referrers list of {}", repo.repository()),
                reason: format!("a page is larger than {} MiB", MAX_MANIFEST >> 20),
            },
        })?;
        Ok(ReferrersPage::Page { body, content_type, filters_applied, next })
    }

    /// `https://host/v2/<repo>/referrers/<digest>[?artifactType=...]`.
    pub(crate) fn referrers_url(&self, repo: &Reference, subject: &Digest, artifact_type: Option<&str>) -> String {
        let mut url = self.repo_url(repo, &format!("referrers/{subject}"));
        if let Some(t) = artifact_type {
            let mut q = Url::parse("http://x/").expect("static URL");
            q.query_pairs_mut().append_pair("artifactType", t);
            url.push('?');
            url.push_str(q.query().unwrap_or_default());
        }
        url
    }

    /// Deletes a manifest reference (a digest, or a tag where the registry
    /// supports deleting tags).
    pub async fn delete_manifest(&self, repo: &Reference, target: &str) -> Result<(), RegistryError> {
        let url = self.repo_url(repo, &format!("manifests/{target}"));
        let make = || Request::new(Method::DELETE, url.clone());
        let response = self.execute(repo, &[Scope::delete(repo.repository())], &make).await?;
        if response.status().is_success() || response.status() == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(Client::unexpected(response, &Method::DELETE, &url).await)
        }
    }

    /// The size of a blob in `repo`, or `None` when it is not there.
    pub async fn blob_exists(&self, repo: &Reference, digest: &Digest) -> Result<Option<u64>, RegistryError> {
        let url = self.repo_url(repo, &format!("blobs/{digest}"));
        let timeout = self.inner.options.document_timeout;
        let make = || Request::new(Method::HEAD, url.clone()).document(timeout);
        let response = self.execute(repo, &[Scope::pull(repo.repository())], &make).await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => Ok(Some(
                response
                    .headers()
                    .get(header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            )),
            _ => Err(Client::unexpected(response, &Method::HEAD, &url).await),
        }
    }

    /// A blob's content, whole and verified. For small blobs (configs,
    /// signature payloads): one larger than [`MAX_SMALL_BLOB`] is refused
    /// as it arrives, so a hostile registry cannot make lkg hold an
    /// unbounded answer in memory; stream layers with [`Client::blob_stream`].
    pub async fn get_blob(&self, repo: &Reference, digest: &Digest) -> Result<Vec<u8>, RegistryError> {
        let mut stream = self.blob_stream(repo, digest).await?;
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk?);
            if out.len() > MAX_SMALL_BLOB {
                return Err(RegistryError::Malformed {
                    what: format!("blob {digest} in {}/{}", repo.registry(), repo.repository()),
                    reason: format!(
                        "it is larger than {} MiB, more than a config or a signature holds",
                        MAX_SMALL_BLOB >> 20
                    ),
                });
            }
        }
        Ok(out)
    }

    /// A blob's content as a stream, verified against `digest` as it flows:
    /// memory stays bounded whatever the blob's size.
    pub async fn blob_stream(&self, repo: &Reference, digest: &Digest) -> Result<BlobStream, RegistryError> {
        let url = self.repo_url(repo, &format!("blobs/{digest}"));
        let make = || Request::new(Method::GET, url.clone());
        let response = self.execute(repo, &[Scope::pull(repo.repository())], &make).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Err(RegistryError::NotFound {
                what: format!("blob {digest} in {}/{}", repo.registry(), repo.repository()),
            });
        }
        if !response.status().is_success() {
            return Err(Client::unexpected(response, &Method::GET, &url).await);
        }
        let registry = repo.api_host().to_owned();
        let what = format!("blob {digest} from {}/{}", repo.registry(), repo.repository());
        let expected = digest.clone();
        // The last chunk is held back until the whole blob is hashed: a
        // consumer never receives every byte of content that is not the
        // blob. That matters for an upload with a Content-Length, which stops
        // reading the stream after its last byte and would never see an
        // error that came after it.
        let state = (response.bytes_stream(), DigestWriter::new(digest.algorithm()), None::<Bytes>, false);
        let stream = futures_util::stream::unfold(state, move |(mut inner, mut hasher, mut held, done)| {
            let registry = registry.clone();
            let what = what.clone();
            let expected = expected.clone();
            async move {
                if done {
                    return None;
                }
                loop {
                    match inner.next().await {
                        Some(Ok(chunk)) => {
                            hasher.update(&chunk);
                            if let Some(previous) = held.replace(chunk) {
                                return Some((Ok(previous), (inner, hasher, held, false)));
                            }
                        }
                        Some(Err(e)) => {
                            let reason = format!("reading {what}: {}", without_url(&e));
                            return Some((
                                Err(RegistryError::Unreachable { registry, reason }),
                                (inner, hasher, None, true),
                            ));
                        }
                        None => {
                            let actual = hasher.clone().finish();
                            return if actual == expected {
                                held.map(|last| (Ok(last), (inner, hasher, None, true)))
                            } else {
                                let mismatch = RegistryError::DigestMismatch { what, expected, actual };
                                Some((Err(mismatch), (inner, hasher, None, true)))
                            };
                        }
                    }
                }
            }
        });
        Ok(stream.boxed())
    }

    /// The config of the image `r` names. For an index, the entry for
    /// `platform` (default: the host's platform) is used.
    pub async fn image_config(&self, r: &Reference, platform: Option<&Platform>) -> Result<ImageConfig, RegistryError> {
        let manifest = self.get_manifest(r).await?;
        let image = match manifest.parse()? {
            ManifestKind::Image(image) => image,
            ManifestKind::Index(index) => {
                let wanted = platform.cloned().unwrap_or_else(Platform::host);
                let entry = index
                    .manifests
                    .iter()
                    .find(|d| d.platform.as_ref().is_some_and(|p| p.matches(&wanted)))
                    .ok_or_else(|| RegistryError::NotFound { what: format!("platform {wanted} in index {r}") })?;
                match self.get_manifest(&r.at_digest(&entry.digest)).await?.parse()? {
                    ManifestKind::Image(image) => image,
                    ManifestKind::Index(_) => {
                        return Err(RegistryError::Malformed {
                            what: format!("index {r}"),
                            reason: "a platform entry is itself an index".to_owned(),
                        });
                    }
                }
            }
        };
        self.config_of(r, &image).await
    }

    /// The config blob of `image`, which lives in `repo`.
    pub async fn config_of(&self, repo: &Reference, image: &ImageManifest) -> Result<ImageConfig, RegistryError> {
        let bytes = self.get_blob(repo, &image.config.digest).await?;
        serde_json::from_slice(&bytes).map_err(|e| RegistryError::Malformed {
            what: format!("image config {}", image.config.digest),
            reason: e.to_string(),
        })
    }

    /// Every tag of `repo`, following `Link` pagination.
    pub async fn list_tags(&self, repo: &Reference) -> Result<Vec<String>, RegistryError> {
        self.list_tags_paged(repo, 1000).await
    }

    /// Every tag of `repo`, asking for `page_size` tags per request.
    pub async fn list_tags_paged(&self, repo: &Reference, page_size: usize) -> Result<Vec<String>, RegistryError> {
        #[derive(Deserialize)]
        struct TagList {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let mut tags = Vec::new();
        let mut url = self.repo_url(repo, &format!("tags/list?n={}", page_size.max(1)));
        for _ in 0..10_000 {
            let current = url.clone();
            let timeout = self.inner.options.document_timeout;
            let make = || Request::new(Method::GET, current.clone()).document(timeout);
            let response = self.execute(repo, &[Scope::pull(repo.repository())], &make).await?;
            if response.status() == StatusCode::NOT_FOUND {
                return Err(RegistryError::NotFound {
                    what: format!("repository {}/{}", repo.registry(), repo.repository()),
                });
            }
            if !response.status().is_success() {
                return Err(Client::unexpected(response, &Method::GET, &current).await);
            }
            let next = next_link(response.headers(), &current)?;
            let body = read_document(response, MAX_TAG_PAGE).await.map_err(|e| match e {
                DocumentRead::Transport(e) => RegistryError::Unreachable {
                    registry: repo.api_host().to_owned(),
                    reason: format!("reading the tag list: {}", without_url(&e)),
                },
                DocumentRead::TooLarge => RegistryError::Malformed {
                    what: format!("tag list of {}", repo.repository()),
                    reason: format!("a page is larger than {} MiB", MAX_TAG_PAGE >> 20),
                },
            })?;
            let page: TagList = serde_json::from_slice(&body).map_err(|e| RegistryError::Malformed {
                what: format!("tag list of {}", repo.repository()),
                reason: e.to_string(),
            })?;
            tags.extend(page.tags.unwrap_or_default());
            match next {
                Some(n) => url = n,
                None => return Ok(tags),
            }
        }
        Ok(tags)
    }

    /// Asks the registry to link `digest` from `from` into `repo` (same
    /// registry). A refusal is not an error: the caller uploads instead.
    pub async fn mount_blob(
        &self,
        repo: &Reference,
        digest: &Digest,
        from: &Reference,
    ) -> Result<Mount, RegistryError> {
        let url = self.repo_url(repo, &format!("blobs/uploads/?mount={digest}&from={}", from.repository()));
        let make = || Request::new(Method::POST, url.clone()).header(header::CONTENT_LENGTH, "0");
        // One token for both repositories: the mount needs push on the
        // target and pull on the source.
        let scopes = [Scope::push(repo.repository()), Scope::pull(from.repository())];
        let response = match self.execute(repo, &scopes, &make).await {
            Ok(r) => r,
            Err(e @ RegistryError::Unreachable { .. }) => return Err(e),
            Err(_) => return Ok(Mount::Refused(None)),
        };
        match response.status() {
            StatusCode::CREATED => Ok(Mount::Mounted),
            StatusCode::ACCEPTED => Ok(Mount::Refused(self.location(repo, &response))),
            _ => Ok(Mount::Refused(None)),
        }
    }

    fn location(&self, repo: &Reference, response: &reqwest::Response) -> Option<String> {
        let location = response.headers().get(header::LOCATION)?.to_str().ok()?;
        let base = Url::parse(&self.base_url(repo.api_host())).ok()?;
        base.join(location).ok().map(|u| u.to_string())
    }

    async fn start_upload(&self, repo: &Reference) -> Result<String, RegistryError> {
        let url = self.repo_url(repo, "blobs/uploads/");
        let make = || Request::new(Method::POST, url.clone()).header(header::CONTENT_LENGTH, "0");
        let response = self.execute(repo, &[Scope::push(repo.repository())], &make).await?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(Client::unexpected(response, &Method::POST, &url).await);
        }
        self.location(repo, &response).ok_or_else(|| RegistryError::Malformed {
            what: format!("upload session for {}", repo.repository()),
            reason: "202 without a Location".to_owned(),
        })
    }

    fn finish_url(session: &str, digest: &Digest) -> String {
        let sep = if session.contains('?') { '&' } else { '?' };
        format!("{session}{sep}digest={digest}")
    }

    /// Uploads a small blob in one request (configs, signature payloads).
    pub async fn push_blob(&self, repo: &Reference, digest: &Digest, bytes: Bytes) -> Result<(), RegistryError> {
        digest.verify(&bytes, "blob to upload")?;
        let session = self.start_upload(repo).await?;
        let url = Client::finish_url(&session, digest);
        let make = || {
            let mut r = Request::new(Method::PUT, url.clone()).header(header::CONTENT_TYPE, "application/octet-stream");
            r.body = Some(bytes.clone());
            r
        };
        let response = self.execute(repo, &[Scope::push(repo.repository())], &make).await?;
        if response.status() != StatusCode::CREATED {
            // A retried PUT whose first attempt landed (and whose answer was
            // lost) finds its session gone: the blob is there all the same.
            if response.status() == StatusCode::NOT_FOUND && self.blob_exists(repo, digest).await?.is_some() {
                return Ok(());
            }
            return Err(Client::unexpected(response, &Method::PUT, &url).await);
        }
        Ok(())
    }

    /// Uploads a blob from a stream in one `PUT`, without holding it in
    /// memory. `session` is an upload URL from a refused mount, if any.
    /// Not retried here (a stream cannot be replayed): callers restart the
    /// blob.
    pub async fn push_blob_stream(
        &self,
        repo: &Reference,
        digest: &Digest,
        size: u64,
        content: BlobStream,
        session: Option<String>,
    ) -> Result<(), RegistryError> {
        let session = match session {
            Some(s) => s,
            None => self.start_upload(repo).await?,
        };
        let url = Client::finish_url(&session, digest);
        let request = self
            .inner
            .http
            .put(&url)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::CONTENT_LENGTH, size)
            .body(reqwest::Body::wrap_stream(content));
        let response = self.send_stream(repo, request, &format!("uploading blob {digest}")).await?;
        if response.status() != StatusCode::CREATED {
            return Err(Client::unexpected_stream(repo, response, &Method::PUT, &url).await);
        }
        Ok(())
    }

    /// Sends `request`, whose body is a stream, authorised to push to
    /// `repo`; once (a stream cannot be replayed). `what` names it in errors.
    async fn send_stream(
        &self,
        repo: &Reference,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<reqwest::Response, RegistryError> {
        let auth = self.authorization(repo.registry(), repo.api_host(), &[Scope::push(repo.repository())]).await?;
        let request = match auth {
            Some(a) => request.header(header::AUTHORIZATION, a),
            None => request,
        };
        self.inner.requests.fetch_add(1, Ordering::Relaxed);
        request.send().await.map_err(|e| RegistryError::Unreachable {
            registry: repo.api_host().to_owned(),
            reason: format!("{what}: {}", without_url(&e)),
        })
    }

    /// What a streamed request's failure answer means: a transient status
    /// (the registry overloaded or restarting) is "could not ask", as it is
    /// for a request that was retried; anything else is
    /// [`Client::unexpected`].
    async fn unexpected_stream(
        repo: &Reference,
        response: reqwest::Response,
        method: &Method,
        url: &str,
    ) -> RegistryError {
        let status = response.status();
        if crate::retry::is_transient(status) {
            return RegistryError::Unreachable {
                registry: repo.api_host().to_owned(),
                reason: format!(
                    "{method} {} answered {status} (a streamed upload is not retried): {}",
                    display_url(url),
                    body_text(response).await
                ),
            };
        }
        Client::unexpected(response, method, url).await
    }
}

/// An upload whose content the registry has received and whose digest is
/// not yet given: [`Client::upload_unfinished`] starts it,
/// [`Client::finish_upload`] names the digest and makes it a blob.
#[derive(Debug, Clone)]
pub struct UnfinishedUpload {
    location: String,
}

impl Client {
    /// Streams `content` into a new upload session in one chunked `PATCH`,
    /// for a blob whose digest is known only once its last byte is written
    /// (an archive uploaded while it is produced). Nothing is a blob until
    /// [`Client::finish_upload`]; an abandoned session is the registry's to
    /// purge. Not retried (a stream cannot be replayed).
    pub async fn upload_unfinished(
        &self,
        repo: &Reference,
        content: BlobStream,
    ) -> Result<UnfinishedUpload, RegistryError> {
        let session = self.start_upload(repo).await?;
        let request = self
            .inner
            .http
            .patch(&session)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(reqwest::Body::wrap_stream(content));
        let response = self.send_stream(repo, request, "streaming an upload").await?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(Client::unexpected_stream(repo, response, &Method::PATCH, &session).await);
        }
        // The session may move with every chunk (distribution's does).
        let location = self.location(repo, &response).unwrap_or(session);
        Ok(UnfinishedUpload { location })
    }

    /// Makes `upload` the blob `digest`: the registry checks the digest
    /// against what it received and refuses a mismatch.
    pub async fn finish_upload(
        &self,
        repo: &Reference,
        upload: UnfinishedUpload,
        digest: &Digest,
    ) -> Result<(), RegistryError> {
        let url = Client::finish_url(&upload.location, digest);
        let make = || {
            Request::new(Method::PUT, url.clone())
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .header(header::CONTENT_LENGTH, "0")
        };
        let response = self.execute(repo, &[Scope::push(repo.repository())], &make).await?;
        if response.status() != StatusCode::CREATED {
            if response.status() == StatusCode::NOT_FOUND && self.blob_exists(repo, digest).await?.is_some() {
                return Ok(()); // a retried PUT whose first answer was lost
            }
            return Err(Client::unexpected(response, &Method::PUT, &url).await);
        }
        Ok(())
    }
}

/// The absolute URL of the `Link: <...>; rel="next"` of a paged answer
/// (tag lists, referrers lists), resolved against the URL asked.
fn next_link(headers: &HeaderMap, current: &str) -> Result<Option<String>, RegistryError> {
    let Some(target) = headers
        .get(header::LINK)
        .and_then(|v| v.to_str().ok())
        .and_then(|link| link.split(';').next())
        .map(|target| target.trim().trim_start_matches('<').trim_end_matches('>').to_owned())
    else {
        return Ok(None);
    };
    Url::parse(current)
        .and_then(|base| base.join(&target))
        .map(|u| Some(u.to_string()))
        .map_err(|e| RegistryError::Malformed { what: "Link header".into(), reason: e.to_string() })
}

/// A condition on a manifest write, for read-modify-write of a tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Condition {
    /// `If-Match`: only if the tag still has this `ETag`.
    Matches(String),
    /// `If-None-Match: *`: only if the tag does not exist.
    Absent,
}

/// What a manifest write answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PutAnswer {
    /// Stored; `oci_subject` is the registry's `OCI-Subject` header (it has
    /// the referrers API and indexed the manifest's subject).
    Stored { oci_subject: Option<Digest> },
    /// `412`: the condition did not hold (another writer changed the tag).
    PreconditionFailed,
}

/// One answer of the referrers API.
pub(crate) enum ReferrersPage {
    /// `404`: the registry has no referrers API.
    Unsupported,
    /// A page (not yet parsed: it may not even be an index).
    Page { body: Bytes, content_type: String, filters_applied: bool, next: Option<String> },
}

/// A reqwest error without its URL (upload URLs are long), with its causes.
fn without_url(e: &reqwest::Error) -> String {
    let mut text = String::new();
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "reading the response failed"
    } else {
        "request failed"
    };
    text.push_str(kind);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Retry-After` read at the current time, as the retry loop reads it.
    fn retry_after(headers: &HeaderMap) -> Option<Duration> {
        crate::retry::retry_after(headers, jiff::Timestamp::now())
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let p = RetryPolicy {
            attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
        };
        assert_eq!(p.backoff(1), Duration::from_millis(100));
        assert_eq!(p.backoff(2), Duration::from_millis(200));
        assert_eq!(p.backoff(3), Duration::from_millis(400));
        assert_eq!(p.backoff(9), Duration::from_secs(1));
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(retry_after(&h), Some(Duration::ZERO), "a date in the past means now");
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn scope_keys_are_order_independent() {
        let a = Client::scope_key(&[Scope::push("b"), Scope::pull("a")]);
        let b = Client::scope_key(&[Scope::pull("a"), Scope::push("b"), Scope::pull("a")]);
        assert_eq!(a, b);
        assert_eq!(a, "repository:a:pull repository:b:pull,push");
    }

    #[test]
    fn plain_http_only_for_loopback_or_listed_hosts() {
        let opts = ClientOptions { insecure_registries: vec!["reg.lan:5000".into()], ..ClientOptions::default() };
        let c = Client::new(opts).unwrap();
        assert_eq!(c.base_url("127.0.0.1:5000"), "http://127.0.0.1:5000");
        assert_eq!(c.base_url("reg.lan:5000"), "http://reg.lan:5000");
        assert_eq!(c.base_url("ghcr.io"), "https://ghcr.io");
    }
}
