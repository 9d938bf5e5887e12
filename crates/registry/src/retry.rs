//! When a request is tried again, and how long lkg waits first.
//!
//! [`next_step`] decides, from data only (the attempt, what it got, the
//! time); [`send_with_retries`] is the one loop that acts on the decision,
//! for registry requests and token requests alike, so both honour
//! `Retry-After` the same way and under the same cap.

use std::future::Future;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};

use crate::RegistryError;
use crate::client::RetryPolicy;

/// The longest `Retry-After` honoured; a registry asking for more gets this.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Why a request got no answer.
#[derive(Debug)]
pub(crate) enum Unsent {
    /// The connection failed (retried).
    Transport(String),
    /// The request cannot succeed: lkg refused to send it, or the registry
    /// refused the credentials (never retried).
    Refused(RegistryError),
}

/// What one attempt got, as [`next_step`] needs to see it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Attempt<'a> {
    /// The server answered.
    Answered { status: StatusCode, headers: &'a HeaderMap },
    /// No answer: the connection failed or timed out, or a redirect could not
    /// be followed.
    Unreachable,
}

/// What to do after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// The answer is final, whatever its status: hand it to the caller.
    Done,
    /// A transient failure: try again after this long.
    RetryAfter(Duration),
    /// A transient failure, and every attempt is spent.
    GiveUp,
}

/// Why [`send_with_retries`] returned no answer to use.
#[derive(Debug)]
pub(crate) enum Failed {
    /// See [`Unsent::Refused`].
    Refused(RegistryError),
    /// The connection failed on the last attempt (and on every one before).
    Transport(String),
    /// The server answered a transient status to every attempt: the last answer.
    Transient { response: reqwest::Response, attempts: u32 },
}

/// Statuses worth asking again for: timeouts, throttling, and a server or
/// gateway that is down for now.
pub(crate) fn is_transient(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
}

/// The wait a `Retry-After` header asks for, in delta-seconds or as an
/// HTTP-date (a date already past means now). Uncapped: see [`next_step`].
pub(crate) fn retry_after(headers: &HeaderMap, now: jiff::Timestamp) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    let secs = when.as_second() - now.as_second();
    Some(Duration::from_secs(u64::try_from(secs).unwrap_or(0)))
}

/// What to do after attempt number `attempt` (1 for the first) got
/// `outcome` at `now`.
///
/// Connection failures and [transient](is_transient) statuses are retried
/// while attempts remain, after the server's `Retry-After` (at most
/// [`MAX_RETRY_AFTER`]) or else the policy's backoff. Anything else is
/// final: a 404 or a 401 is for the caller to read, not to ask again.
pub(crate) fn next_step(policy: &RetryPolicy, attempt: u32, outcome: Attempt<'_>, now: jiff::Timestamp) -> Next {
    match outcome {
        Attempt::Answered { status, .. } if !is_transient(status) => Next::Done,
        _ if attempt >= policy.attempts => Next::GiveUp,
        Attempt::Answered { headers, .. } => Next::RetryAfter(
            retry_after(headers, now).map_or_else(|| policy.backoff(attempt), |wait| wait.min(MAX_RETRY_AFTER)),
        ),
        Attempt::Unreachable => Next::RetryAfter(policy.backoff(attempt)),
    }
}

/// Calls `send` until [`next_step`] says the answer is final or gives up,
/// sleeping between attempts. Each call of `send` is one attempt, built
/// anew.
// A closure returning a future, not an `AsyncFnMut`: the compiler cannot
// prove an async closure's future `Send` for every lifetime
// (rust-lang/rust#138207), and the client's futures are spawned.
pub(crate) async fn send_with_retries<F, Fut>(policy: RetryPolicy, mut send: F) -> Result<reqwest::Response, Failed>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<reqwest::Response, Unsent>>,
{
    let mut attempt = 0;
    loop {
        let sent = match send().await {
            Ok(response) => Ok(response),
            Err(Unsent::Transport(reason)) => Err(reason),
            Err(Unsent::Refused(e)) => return Err(Failed::Refused(e)),
        };
        attempt += 1;
        let outcome = match &sent {
            Ok(response) => Attempt::Answered { status: response.status(), headers: response.headers() },
            Err(_) => Attempt::Unreachable,
        };
        let next = next_step(&policy, attempt, outcome, jiff::Timestamp::now());
        match (next, sent) {
            (Next::RetryAfter(wait), _) => tokio::time::sleep(wait).await,
            (Next::Done, Ok(response)) => return Ok(response),
            (Next::GiveUp, Ok(response)) => return Err(Failed::Transient { response, attempts: attempt }),
            // `next_step` never calls a failed connection done; it is given up either way.
            (Next::Done | Next::GiveUp, Err(reason)) => return Err(Failed::Transport(reason)),
        }
    }
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    const POLICY: RetryPolicy =
        RetryPolicy { attempts: 4, initial_backoff: Duration::from_millis(100), max_backoff: Duration::from_secs(8) };

    fn now() -> jiff::Timestamp {
        "2015-10-21T07:27:53Z".parse().unwrap()
    }

    fn with_retry_after(value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::RETRY_AFTER, HeaderValue::from_static(value));
        h
    }

    fn answered(status: u16, headers: &HeaderMap, attempt: u32) -> Next {
        let status = StatusCode::from_u16(status).unwrap();
        next_step(&POLICY, attempt, Attempt::Answered { status, headers }, now())
    }

    #[test]
    fn throttling_waits_the_seconds_asked_for() {
        assert_eq!(answered(429, &with_retry_after("3"), 1), Next::RetryAfter(Duration::from_secs(3)));
        assert_eq!(answered(503, &with_retry_after(" 0 "), 2), Next::RetryAfter(Duration::ZERO));
    }

    #[test]
    fn throttling_waits_until_the_date_asked_for() {
        // `now()` is 7 s before that date.
        let h = with_retry_after("Wed, 21 Oct 2015 07:28:00 GMT");
        assert_eq!(answered(429, &h, 1), Next::RetryAfter(Duration::from_secs(7)));
        let past = with_retry_after("Wed, 21 Oct 2015 07:00:00 GMT");
        assert_eq!(answered(429, &past, 1), Next::RetryAfter(Duration::ZERO), "a date in the past means now");
    }

    #[test]
    fn an_absurd_retry_after_is_capped() {
        assert_eq!(answered(429, &with_retry_after("999999"), 1), Next::RetryAfter(MAX_RETRY_AFTER));
        let next_year = with_retry_after("Fri, 21 Oct 2016 07:28:00 GMT");
        assert_eq!(answered(503, &next_year, 1), Next::RetryAfter(MAX_RETRY_AFTER));
    }

    #[test]
    fn an_unreadable_retry_after_means_the_backoff() {
        assert_eq!(answered(429, &with_retry_after("soon"), 2), Next::RetryAfter(POLICY.backoff(2)));
    }

    #[test]
    fn server_errors_back_off_until_the_attempts_are_spent() {
        let none = HeaderMap::new();
        for status in [500, 502, 503, 504, 408] {
            assert_eq!(answered(status, &none, 1), Next::RetryAfter(Duration::from_millis(100)));
            assert_eq!(answered(status, &none, 2), Next::RetryAfter(Duration::from_millis(200)));
            assert_eq!(answered(status, &none, 3), Next::RetryAfter(Duration::from_millis(400)));
            assert_eq!(answered(status, &none, 4), Next::GiveUp, "{status} after the 4th attempt");
        }
        // Spent is spent, even when the server names a time.
        assert_eq!(answered(429, &with_retry_after("1"), 4), Next::GiveUp);
    }

    #[test]
    fn other_answers_are_final() {
        let none = HeaderMap::new();
        for status in [200, 201, 202, 307, 400, 401, 403, 404, 405, 409, 501, 505] {
            assert_eq!(answered(status, &none, 1), Next::Done, "{status}");
        }
        // Even with a Retry-After: only transient statuses are asked again.
        assert_eq!(answered(404, &with_retry_after("5"), 1), Next::Done);
    }

    #[test]
    fn transport_errors_back_off_until_the_attempts_are_spent() {
        assert_eq!(next_step(&POLICY, 1, Attempt::Unreachable, now()), Next::RetryAfter(Duration::from_millis(100)));
        assert_eq!(next_step(&POLICY, 3, Attempt::Unreachable, now()), Next::RetryAfter(Duration::from_millis(400)));
        assert_eq!(next_step(&POLICY, 4, Attempt::Unreachable, now()), Next::GiveUp);
    }

    #[test]
    fn a_single_attempt_policy_never_retries() {
        let once = RetryPolicy { attempts: 1, ..POLICY };
        let status = StatusCode::SERVICE_UNAVAILABLE;
        let h = with_retry_after("1");
        assert_eq!(next_step(&once, 1, Attempt::Answered { status, headers: &h }, now()), Next::GiveUp);
        assert_eq!(next_step(&once, 1, Attempt::Unreachable, now()), Next::GiveUp);
    }

    #[tokio::test]
    async fn the_loop_stops_at_the_policy_s_attempts() {
        let policy = RetryPolicy { attempts: 3, initial_backoff: Duration::from_millis(1), ..POLICY };
        let mut calls = 0;
        let failed = send_with_retries(policy, || {
            calls += 1;
            let reason = format!("refused #{calls}");
            async move { Err(Unsent::Transport(reason)) }
        })
        .await;
        assert!(matches!(failed, Err(Failed::Transport(ref reason)) if reason == "refused #3"), "{failed:?}");
        assert_eq!(calls, 3);
    }

    #[tokio::test]
    async fn a_refusal_is_never_retried() {
        let mut calls = 0;
        let failed = send_with_retries(POLICY, || {
            calls += 1;
            async { Err(Unsent::Refused(RegistryError::InsecureRefused { registry: "example.org".into() })) }
        })
        .await;
        assert!(matches!(failed, Err(Failed::Refused(RegistryError::InsecureRefused { .. }))), "{failed:?}");
        assert_eq!(calls, 1);
    }
}
