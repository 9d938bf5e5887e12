//! The HTTP client lkg sends with: reqwest over rustls with the `ring`
//! provider (no OpenSSL, no aws-lc-rs), no redirects, `TCP_NODELAY`.

/// A client builder with lkg's TLS and conventions, for `user_agent`
/// (`lkg-<crate>/<version>`); callers add their own timeouts and pooling.
///
/// Redirects are not followed: a health check judges the URL it was given,
/// and a channel's credentials never travel to a host it was not given.
///
/// ```
/// let client = lkg_notify::http::client_builder("lkg-doc/0").build()?;
/// # drop(client);
/// # Ok::<(), reqwest::Error>(())
/// ```
pub fn client_builder(user_agent: &str) -> reqwest::ClientBuilder {
    // reqwest is built without a default crypto provider (`rustls-no-provider`,
    // as in lkg-registry): install ring's, once per process. An error means
    // one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .user_agent(user_agent)
        .redirect(reqwest::redirect::Policy::none())
        // Without it a request with a body waits for a delayed ACK between
        // its header and body writes (Nagle).
        .tcp_nodelay(true)
}

/// The first `max` bytes of `response`'s body, as text (lossy); the rest is
/// not read. A server answering more, or without end, costs no more memory
/// than `max`; the request's timeout bounds the time. A connection cut
/// mid-body ends it.
pub async fn body_prefix(mut response: reqwest::Response, max: usize) -> String {
    let mut body = Vec::new();
    while body.len() < max {
        let Ok(Some(chunk)) = response.chunk().await else { break };
        let room = max - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
    String::from_utf8_lossy(&body).into_owned()
}
