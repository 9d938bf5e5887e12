//! Sending: every channel at once, each retried with backoff, each outcome
//! recorded; nothing here fails.

use std::time::Duration;

use jiff::Timestamp;
use lettre::AsyncTransport as _;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, Tokio1Executor};
use lkg_core::Clock;
use serde::{Deserialize, Serialize};

use crate::channel::{Auth, Channel, Post, Security, Smtp, Target};
use crate::error::NotifyError;
use crate::message::{self, Message};

/// How one message went to one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The channel, redacted (older alert files call it `url`).
    #[serde(alias = "url")]
    pub channel: String,
    /// Whether the channel took the message.
    pub delivered: bool,
    /// Attempts made.
    pub attempts: u32,
    /// The last error when not delivered, redacted.
    pub error: Option<String>,
    /// When the last attempt ended (RFC 3339, whole seconds).
    #[serde(with = "lkg_core::rfc3339")]
    pub at: Timestamp,
}

/// Sends messages to channels.
///
/// ```no_run
/// use lkg_notify::{Channel, Message, Notifier, Severity};
///
/// # async fn demo() -> Result<(), lkg_notify::NotifyError> {
/// let notifier = Notifier::new(vec![Channel::parse("ntfy://ntfy.example/lkg-alerts")?])?;
/// let message = Message {
///     title: "lkg: shop rolled back 1.1.0 → 1.0.0".into(),
///     text: "GET /health answered 503".into(),
///     severity: Severity::Warning,
///     json: serde_json::json!({"app": "shop"}),
/// };
/// for delivery in notifier.send(&message, &lkg_core::SystemClock).await {
///     println!("{}: delivered {}", delivery.channel, delivery.delivered);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Notifier {
    channels: Vec<Channel>,
    client: reqwest::Client,
    attempts: u32,
    backoff: Duration,
    timeout: Duration,
}

/// Why one attempt failed, and whether another may do better.
struct Failure {
    text: String,
    retry: bool,
}

impl Notifier {
    /// A notifier for `channels`: 4 attempts per channel, 1 s apart and
    /// doubling, 10 s each.
    pub fn new(channels: Vec<Channel>) -> Result<Notifier, NotifyError> {
        let client = crate::http::client_builder(concat!("lkg-notify/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| NotifyError::Client { reason: lkg_core::redact::text(&lkg_core::render_chain(&e)) })?;
        Ok(Notifier {
            channels,
            client,
            attempts: 4,
            backoff: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
        })
    }

    /// Sets the attempts per channel (at least 1) and the first pause
    /// between them, doubled after each.
    #[must_use]
    pub fn retries(mut self, attempts: u32, backoff: Duration) -> Notifier {
        self.attempts = attempts.max(1);
        self.backoff = backoff;
        self
    }

    /// Sets how long one attempt may take.
    #[must_use]
    pub fn timeout(mut self, per_attempt: Duration) -> Notifier {
        self.timeout = per_attempt;
        self
    }

    /// The channels, in the order deliveries are reported.
    pub fn channels(&self) -> &[Channel] {
        &self.channels
    }

    /// Sends `message` to every channel concurrently; one delivery per
    /// channel, in channel order, stamped by `clock`. Never fails: a channel
    /// that does not take the message says so in its delivery.
    pub async fn send(&self, message: &Message, clock: &dyn Clock) -> Vec<Delivery> {
        futures_util::future::join_all(self.channels.iter().map(|channel| self.deliver(channel, message, clock))).await
    }

    async fn deliver(&self, channel: &Channel, message: &Message, clock: &dyn Clock) -> Delivery {
        let mut pause = self.backoff;
        let mut error = None;
        let mut attempts = 0;
        while attempts < self.attempts {
            attempts += 1;
            let failure = match tokio::time::timeout(self.timeout, self.attempt(channel, message)).await {
                Ok(Ok(())) => {
                    return Delivery {
                        channel: channel.redacted(),
                        delivered: true,
                        attempts,
                        error: None,
                        at: clock.now_seconds(),
                    };
                }
                Ok(Err(failure)) => failure,
                Err(_) => Failure { text: format!("no answer within {}s", self.timeout.as_secs_f64()), retry: true },
            };
            error = Some(channel.scrub(&failure.text));
            if !failure.retry {
                break;
            }
            if attempts < self.attempts {
                tokio::time::sleep(pause).await;
                pause = pause.saturating_mul(2);
            }
        }
        Delivery { channel: channel.redacted(), delivered: false, attempts, error, at: clock.now_seconds() }
    }

    async fn attempt(&self, channel: &Channel, message: &Message) -> Result<(), Failure> {
        match channel.target() {
            Target::Ntfy { post, tags } => {
                let headers = [
                    ("Title", message::ntfy_title(&message.title)),
                    ("Priority", message.severity.ntfy_priority().to_string()),
                    ("Tags", message::ntfy_tags(message, tags)),
                ];
                let body = message::ntfy_body(message).into_bytes();
                self.post(post, "text/plain; charset=utf-8", &headers, body).await
            }
            Target::Slack { post, username, icon } => {
                let payload = message::slack_payload(message, username.as_deref(), icon.as_deref());
                self.post(post, "application/json", &[], payload.to_string().into_bytes()).await
            }
            Target::Discord { post, username, avatar } => {
                let payload = message::discord_payload(message, username.as_deref(), avatar.as_deref());
                self.post(post, "application/json", &[], payload.to_string().into_bytes()).await
            }
            Target::Generic { post } => {
                let payload = message::generic_payload(message);
                self.post(post, "application/json", &[], payload.to_string().into_bytes()).await
            }
            Target::Smtp(smtp) => self.mail(smtp, message).await,
        }
    }

    /// One POST: a 2xx delivers; 5xx, 408, 429 and connection errors may be
    /// retried; any other answer is final.
    async fn post(
        &self,
        post: &Post,
        content_type: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<(), Failure> {
        let mut request = self
            .client
            .post(post.url.clone())
            .timeout(self.timeout)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, value.as_str());
        }
        for (name, value) in &post.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        request = match &post.auth {
            Some(Auth::Basic { user, password }) => request.basic_auth(user, Some(password)),
            Some(Auth::Bearer(token)) => request.bearer_auth(token),
            None => request,
        };
        let response = request.send().await.map_err(|e| Failure {
            // The URL carries the channel's secrets: never in the text.
            text: lkg_core::render_chain(&e.without_url()),
            retry: true,
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        // Only an excerpt is shown: a few KiB are plenty.
        let body = crate::http::body_prefix(response, 4096).await;
        let excerpt: String = body.trim().chars().take(200).collect();
        let code = status.as_u16();
        Err(Failure {
            text: if excerpt.is_empty() { format!("HTTP {status}") } else { format!("HTTP {status}: {excerpt}") },
            retry: status.is_server_error() || code == 408 || code == 429,
        })
    }

    /// One mail. A permanent SMTP refusal (5xx: a bad address, a refused
    /// login) is final; anything else may be retried.
    async fn mail(&self, smtp: &Smtp, message: &Message) -> Result<(), Failure> {
        let fail = |text: String, retry: bool| Failure { text, retry };
        let mut email = lettre::Message::builder()
            .from(smtp.from.clone())
            .subject(message::mail_subject(smtp.subject.as_deref(), &message.title))
            .header(lettre::message::header::ContentType::TEXT_PLAIN);
        for to in &smtp.to {
            email = email.to(to.clone());
        }
        let email = email.body(message.text.clone()).map_err(|e| fail(format!("cannot build the mail: {e}"), false))?;

        let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(smtp.host.as_str())
            .port(smtp.port)
            .timeout(Some(self.timeout));
        let tls = || TlsParameters::new(smtp.host.clone()).map_err(|e| fail(format!("cannot set up TLS: {e}"), false));
        transport = transport.tls(match smtp.security {
            Security::Plain => Tls::None,
            Security::StartTls => Tls::Required(tls()?),
            Security::Implicit => Tls::Wrapper(tls()?),
        });
        if let Some((user, password)) = &smtp.credentials {
            transport = transport
                .credentials(lettre::transport::smtp::authentication::Credentials::new(user.clone(), password.clone()));
        }
        if let Some(mechanisms) = &smtp.mechanisms {
            transport = transport.authentication(mechanisms.clone());
        }
        if let Some(hello) = &smtp.hello {
            transport = transport.hello_name(ClientId::Domain(hello.clone()));
        }
        let transport = transport.build();
        match transport.send(email).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let retry = !e.is_permanent();
                Err(fail(format!("SMTP {}:{}: {}", smtp.host, smtp.port, lkg_core::render_chain(&e)), retry))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sending_can_be_spawned() {
        fn is_send<T: Send>(_: &T) {}
        let notifier = Notifier::new(Vec::new()).unwrap();
        let message = Message {
            title: String::new(),
            text: String::new(),
            severity: crate::Severity::Info,
            json: serde_json::Value::Null,
        };
        let sending = notifier.send(&message, &lkg_core::SystemClock);
        is_send(&sending);
        is_send(&notifier);
    }

    #[test]
    fn deliveries_read_the_old_url_field_and_write_whole_seconds() {
        let old = r#"{"url": "http://127.0.0.1:9/hook", "delivered": false, "attempts": 3,
                      "error": "HTTP 500", "at": "2026-05-29T00:55:10Z"}"#;
        let delivery: Delivery = serde_json::from_str(old).unwrap();
        assert_eq!(delivery.channel, "http://127.0.0.1:9/hook");
        let written = serde_json::to_value(&delivery).unwrap();
        assert_eq!(written["channel"], "http://127.0.0.1:9/hook");
        assert_eq!(written["at"], "2026-05-29T00:55:10Z");
    }
}
