//! ntfy, Slack, Discord and generic payloads, as each service documents
//! them, checked by loopback receivers; retries, refusals and dead receivers.

use std::time::Duration;

use base64::Engine as _;
use lkg_core::SystemClock;
use lkg_notify::{Channel, Delivery, Notifier, Severity};
use lkg_testkit::HttpReceiver;

use crate::message;

fn notifier(urls: &[String]) -> Notifier {
    let channels = urls.iter().map(|u| Channel::parse(u).unwrap()).collect();
    Notifier::new(channels).unwrap().retries(4, Duration::from_millis(10)).timeout(Duration::from_secs(5))
}

fn assert_no_secret(texts: &[String], secrets: &[&str]) {
    for secret in secrets {
        for text in texts {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
    }
}

#[tokio::test]
async fn ntfy_gets_the_text_with_title_priority_tags_and_credentials() {
    let receiver = HttpReceiver::start(&[]);
    let url = format!("ntfy://ops:NTFYPASS@127.0.0.1:{}/TOPICSECRET?scheme=http&tags=lkg,prod", receiver.port());
    let mut message = message();
    message.severity = Severity::Critical;
    let deliveries = notifier(&[url]).send(&message, &SystemClock).await;
    assert!(deliveries[0].delivered, "{deliveries:?}");
    let [request] = receiver.accepted().try_into().unwrap();
    assert_eq!((request.method.as_str(), request.path.as_str()), ("POST", "/TOPICSECRET"));
    assert_eq!(request.text(), message.text);
    assert!(request.header("content-type").unwrap().starts_with("text/plain"));
    assert_eq!(request.header("priority"), Some("5"));
    assert_eq!(request.header("tags"), Some("rotating_light,lkg,prod"));
    // Not ASCII: RFC 2047, which ntfy decodes.
    let title = request.header("title").unwrap();
    let encoded = title.strip_prefix("=?UTF-8?B?").and_then(|t| t.strip_suffix("?=")).unwrap();
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded).unwrap();
    assert_eq!(String::from_utf8(decoded).unwrap(), message.title);
    let basic = base64::engine::general_purpose::STANDARD.encode("ops:NTFYPASS");
    assert_eq!(request.header("authorization"), Some(format!("Basic {basic}").as_str()));
    assert_eq!(deliveries[0].channel, format!("ntfy://***@127.0.0.1:{}/***?scheme=***&tags=***", receiver.port()));
}

#[tokio::test]
async fn ntfy_access_tokens_are_bearer() {
    let receiver = HttpReceiver::start(&[]);
    let url = format!("ntfy://:tk_ACCESSTOKEN@127.0.0.1:{}/alerts?scheme=http", receiver.port());
    assert!(notifier(&[url]).send(&message(), &SystemClock).await[0].delivered);
    assert_eq!(receiver.accepted()[0].header("authorization"), Some("Bearer tk_ACCESSTOKEN"));
}

#[tokio::test]
async fn slack_compatible_webhooks_get_an_incoming_webhook_payload() {
    let receiver = HttpReceiver::start(&[]);
    let url = format!("slack+http://127.0.0.1:{}/services/T0/B0/SLACKKEY?username=lkg&icon=:fire:", receiver.port());
    let deliveries = notifier(&[url]).send(&message(), &SystemClock).await;
    assert!(deliveries[0].delivered, "{deliveries:?}");
    let [request] = receiver.accepted().try_into().unwrap();
    assert_eq!(request.path, "/services/T0/B0/SLACKKEY");
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(
        request.json(),
        serde_json::json!({
            "text": ":warning: *lkg: shop rolled back 1.1.0 → 1.0.0*\nGET /health answered 503 &lt;b&gt; &amp; \"quoted\"\nreason: unhealthy",
            "username": "lkg",
            "icon_emoji": ":fire:",
        })
    );
    assert_eq!(
        deliveries[0].channel,
        format!("slack+http://127.0.0.1:{}/services/T0/B0/***?username=***&icon=***", receiver.port())
    );
}

#[tokio::test]
async fn discord_webhooks_get_content_that_pings_nobody() {
    let receiver = HttpReceiver::start(&[204]);
    let url = format!("discord+http://127.0.0.1:{}/api/webhooks/123/DISCORDTOKEN?username=lkg", receiver.port());
    let mut message = message();
    message.text = "x".repeat(5000);
    let deliveries = notifier(&[url]).send(&message, &SystemClock).await;
    assert!(deliveries[0].delivered, "{deliveries:?}");
    let [request] = receiver.accepted().try_into().unwrap();
    assert_eq!(request.path, "/api/webhooks/123/DISCORDTOKEN");
    let body = request.json();
    let content = body["content"].as_str().unwrap();
    assert!(content.starts_with(":warning: **lkg: shop rolled back 1.1.0 → 1.0.0**\nxxx"), "{content}");
    assert_eq!(content.chars().count(), 2000, "Discord's limit");
    assert_eq!(body["allowed_mentions"], serde_json::json!({"parse": []}));
    assert_eq!(body["username"], "lkg");
}

#[tokio::test]
async fn generic_channels_get_the_json_as_it_is() {
    let receiver = HttpReceiver::start(&[]);
    let url = format!("generic+http://127.0.0.1:{}/hook?token=GENERICTOKEN&@X-Api-Key=HEADERSECRET", receiver.port());
    let message = message();
    let deliveries = notifier(&[url]).send(&message, &SystemClock).await;
    assert!(deliveries[0].delivered, "{deliveries:?}");
    let [request] = receiver.accepted().try_into().unwrap();
    assert_eq!(request.path, "/hook?token=GENERICTOKEN");
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("x-api-key"), Some("HEADERSECRET"));
    assert_eq!(request.json(), message.json);
    // A plain URL is the generic channel too (lkg-reconcile's --webhook).
    let plain = format!("http://u:PLAINPASS@127.0.0.1:{}/plain", receiver.port());
    assert!(notifier(&[plain]).send(&message, &SystemClock).await[0].delivered);
    let basic = base64::engine::general_purpose::STANDARD.encode("u:PLAINPASS");
    assert_eq!(receiver.accepted()[1].header("authorization"), Some(format!("Basic {basic}").as_str()));
}

#[tokio::test]
async fn a_receiver_that_fails_three_times_gets_the_message_once() {
    let receiver = HttpReceiver::start(&[500, 500, 500, 200]);
    let deliveries = notifier(&[receiver.url("/hook")]).send(&message(), &SystemClock).await;
    assert_eq!((deliveries[0].delivered, deliveries[0].attempts), (true, 4), "{deliveries:?}");
    assert_eq!(deliveries[0].error, None);
    assert_eq!(receiver.requests().len(), 4);
    assert_eq!(receiver.accepted().len(), 1, "delivered exactly once");
}

#[tokio::test]
async fn refusals_are_final_but_rate_limits_and_timeouts_are_retried() {
    let refused = HttpReceiver::start(&[400, 200]);
    let limited = HttpReceiver::start(&[429, 408, 200]);
    // Accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}/hook", silent.local_addr().unwrap());
    let deliveries = notifier(&[refused.url("/hook"), limited.url("/hook"), silent_url])
        .retries(3, Duration::from_millis(10))
        .timeout(Duration::from_millis(300))
        .send(&message(), &SystemClock)
        .await;
    assert_eq!((deliveries[0].delivered, deliveries[0].attempts), (false, 1), "{deliveries:?}");
    assert!(deliveries[0].error.as_deref().unwrap().starts_with("HTTP 400"), "{deliveries:?}");
    assert_eq!((deliveries[1].delivered, deliveries[1].attempts), (true, 3), "{deliveries:?}");
    assert_eq!((deliveries[2].delivered, deliveries[2].attempts), (false, 3), "{deliveries:?}");
    assert!(
        deliveries[2].error.as_deref().unwrap().contains("timed out")
            || deliveries[2].error.as_deref().unwrap().contains("no answer"),
        "{deliveries:?}"
    );
}

/// Every channel at once, one of them dead: each gets a delivery, in
/// order, and no secret of any URL shows in a channel's Debug or Display,
/// a delivery, its JSON or its error.
#[tokio::test]
async fn a_dead_channel_is_recorded_and_no_secret_shows_anywhere() {
    let receiver = HttpReceiver::start(&[]);
    let port = receiver.port();
    let dead = lkg_testkit::free_port();
    let urls = [
        format!("ntfy://ops:NTFYPASS@127.0.0.1:{port}/TOPICSECRET?scheme=http"),
        format!("slack+http://127.0.0.1:{port}/hooks/SLACKKEY"),
        format!("discord+http://127.0.0.1:{port}/api/webhooks/1/DISCORDTOKEN"),
        format!("generic+http://127.0.0.1:{port}/hook?token=GENERICTOKEN"),
        format!("generic+http://hookuser:DEADPASS@127.0.0.1:{dead}/DEADKEY0123456789abc?token=DEADTOKEN"),
        format!("smtp://127.0.0.1:{dead}/?from=lkg@example.org&to=ops@example.org&subject=SUBJECTSECRET"),
    ];
    let notifier = notifier(&urls).retries(2, Duration::from_millis(10));
    let deliveries = notifier.send(&message(), &SystemClock).await;
    assert_eq!(deliveries.len(), 6);
    assert_eq!(deliveries.iter().map(|d| d.delivered).collect::<Vec<_>>(), [true, true, true, true, false, false]);
    for dead in &deliveries[4..] {
        assert_eq!(dead.attempts, 2, "{dead:?}");
        assert!(dead.error.as_deref().is_some_and(|e| !e.is_empty()), "{dead:?}");
    }
    assert_eq!(receiver.accepted().len(), 4);
    let mut shown: Vec<String> = deliveries.iter().map(|d| format!("{d:?}")).collect();
    shown.push(serde_json::to_string(&deliveries).unwrap());
    shown.push(format!("{notifier:?}"));
    for channel in notifier.channels() {
        shown.extend([format!("{channel}"), format!("{channel:?}"), channel.redacted()]);
    }
    assert_no_secret(
        &shown,
        &[
            "NTFYPASS",
            "TOPICSECRET",
            "SLACKKEY",
            "DISCORDTOKEN",
            "GENERICTOKEN",
            "DEADPASS",
            "DEADTOKEN",
            "DEADKEY",
            "hookuser",
            "SUBJECTSECRET",
        ],
    );
    let read: Vec<Delivery> = serde_json::from_str(&serde_json::to_string(&deliveries).unwrap()).unwrap();
    assert_eq!(read, deliveries);
}

#[test]
fn invalid_urls_are_bad_input_named_redacted() {
    for (url, says) in [
        ("gotify://host/SECRETTOKEN", "unknown scheme"),
        ("ntfy://ops:SECRETPASS@ntfy.example/t?scheme=http", "in clear"),
        ("smtp://ops:SECRETPASS@mail.example/?from=a@x.org&to=b@x.org&encryption=None", "in clear"),
        ("discord://SECRETTOKEN", "discord://TOKEN@WEBHOOK_ID"),
    ] {
        let error = Channel::parse(url).unwrap_err();
        let text = error.to_string();
        assert!(text.contains(says), "{url}: {text}");
        assert!(!text.contains("SECRET"), "{text}");
        assert_eq!(lkg_core::Classify::kind(&error), lkg_core::FailureKind::Input);
    }
}
