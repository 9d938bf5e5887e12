//! What is sent, and how each service is given it: pure functions from a
//! [`Message`] to a request body, tested without a network.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// How urgent a message is: ntfy's priority and tag, the mark before a
/// Slack or Discord title.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Someone should look (a rollback, a hold).
    Warning,
    /// Act now (a rollback that failed).
    Critical,
}

impl Severity {
    /// `info`, `warning` or `critical`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    /// ntfy's priority: 5 (urgent), 4 (high), 3 (default).
    pub(crate) fn ntfy_priority(self) -> u8 {
        match self {
            Severity::Critical => 5,
            Severity::Warning => 4,
            Severity::Info => 3,
        }
    }

    /// An emoji short code, as ntfy's tags and Slack and Discord text take them.
    pub(crate) fn emoji(self) -> &'static str {
        match self {
            Severity::Critical => "rotating_light",
            Severity::Warning => "warning",
            Severity::Info => "information_source",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One notification. ntfy, Slack, Discord and mail render `title` and
/// `text`; the generic channel posts `json` as it is (or, when it is
/// `null`, `{"title", "text", "severity"}`).
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// One line: what happened.
    pub title: String,
    /// The details, plain text, lines separated by `\n`.
    pub text: String,
    /// How urgent.
    pub severity: Severity,
    /// The structured payload of the generic channel.
    pub json: Value,
}

/// ntfy turns a longer message into an attachment (or refuses it).
const NTFY_MAX_BYTES: usize = 4096;
/// Discord's limit on `content`.
const DISCORD_MAX_CHARS: usize = 2000;
/// Slack cuts `text` at 40,000 characters; Mattermost's default post limit
/// is 16,383: stay under both.
const SLACK_MAX_CHARS: usize = 16_000;

/// The body of an ntfy publish: the text (ntfy needs one; the title when
/// there is none), at most 4096 bytes.
pub(crate) fn ntfy_body(message: &Message) -> String {
    let text = if message.text.trim().is_empty() { &message.title } else { &message.text };
    clip_bytes(text, NTFY_MAX_BYTES)
}

/// A header value for ntfy's `Title`: one line; RFC 2047 encoded (which ntfy
/// decodes) when it is not plain ASCII, since HTTP headers carry ASCII only.
pub(crate) fn ntfy_title(title: &str) -> String {
    let line = one_line(title);
    if line.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        line
    } else {
        format!("=?UTF-8?B?{}?=", base64::engine::general_purpose::STANDARD.encode(line.as_bytes()))
    }
}

/// ntfy's `Tags`: the severity's emoji, then the channel's own.
pub(crate) fn ntfy_tags(message: &Message, extra: &[String]) -> String {
    let mut tags = vec![message.severity.emoji().to_owned()];
    tags.extend(extra.iter().cloned());
    tags.join(",")
}

/// A Slack incoming-webhook payload: `text` in Slack's mrkdwn, the title in
/// bold, `&`, `<` and `>` escaped as Slack asks.
pub(crate) fn slack_payload(message: &Message, username: Option<&str>, icon: Option<&str>) -> Value {
    let text = format!(
        ":{}: *{}*\n{}",
        message.severity.emoji(),
        slack_escape(&one_line(&message.title)),
        slack_escape(&message.text)
    );
    let mut payload = json!({ "text": clip_chars(text.trim_end(), SLACK_MAX_CHARS) });
    if let Some(username) = username {
        payload["username"] = json!(username);
    }
    match icon {
        Some(url) if url.starts_with("http://") || url.starts_with("https://") => payload["icon_url"] = json!(url),
        Some(emoji) => payload["icon_emoji"] = json!(emoji),
        None => {}
    }
    payload
}

/// A Discord execute-webhook payload: `content` of at most 2000 characters,
/// and no mention in it pings anyone.
pub(crate) fn discord_payload(message: &Message, username: Option<&str>, avatar: Option<&str>) -> Value {
    let content = format!(":{}: **{}**\n{}", message.severity.emoji(), one_line(&message.title), message.text);
    let mut payload = json!({
        "content": clip_chars(content.trim_end(), DISCORD_MAX_CHARS),
        "allowed_mentions": { "parse": [] },
    });
    if let Some(username) = username {
        payload["username"] = json!(username);
    }
    if let Some(avatar) = avatar {
        payload["avatar_url"] = json!(avatar);
    }
    payload
}

/// The generic channel's body.
pub(crate) fn generic_payload(message: &Message) -> Value {
    if message.json.is_null() {
        json!({ "title": message.title, "text": message.text, "severity": message.severity })
    } else {
        message.json.clone()
    }
}

/// A mail's subject: the channel's prefix, then the title, on one line.
pub(crate) fn mail_subject(prefix: Option<&str>, title: &str) -> String {
    match prefix {
        Some(prefix) => format!("{}: {}", one_line(prefix), one_line(title)),
        None => one_line(title),
    }
}

fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Control characters (a newline in a header would start another) become spaces.
fn one_line(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect::<String>().trim().to_owned()
}

fn clip_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max.saturating_sub(1)) {
        Some((at, _)) if text[at..].chars().nth(1).is_some() => format!("{}…", &text[..at]),
        _ => text.to_owned(),
    }
}

fn clip_bytes(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    // Room for the ellipsis (3 bytes), on a character boundary.
    let mut end = max - 3;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(severity: Severity) -> Message {
        Message {
            title: "lkg: shop rolled back 1.1.0 → 1.0.0".to_owned(),
            text: "GET /health answered 503 <@everyone> & more".to_owned(),
            severity,
            json: json!({"id": "a1"}),
        }
    }

    #[test]
    fn ntfy_gets_a_priority_tags_and_an_encoded_title() {
        let m = message(Severity::Critical);
        assert_eq!(m.severity.ntfy_priority(), 5);
        assert_eq!(Severity::Warning.ntfy_priority(), 4);
        assert_eq!(Severity::Info.ntfy_priority(), 3);
        assert_eq!(ntfy_tags(&m, &["lkg".to_owned()]), "rotating_light,lkg");
        assert_eq!(ntfy_title("plain\ntitle"), "plain title");
        let encoded = ntfy_title(&m.title);
        let b64 = encoded.strip_prefix("=?UTF-8?B?").and_then(|e| e.strip_suffix("?=")).unwrap();
        let decoded = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
        assert_eq!(String::from_utf8(decoded).unwrap(), m.title);
        assert_eq!(ntfy_body(&m), m.text);
        let long = Message { text: "é".repeat(5000), ..m };
        let body = ntfy_body(&long);
        assert!(body.len() <= NTFY_MAX_BYTES && body.ends_with('…'));
    }

    #[test]
    fn slack_text_is_escaped_mrkdwn() {
        let payload = slack_payload(&message(Severity::Warning), Some("lkg"), Some(":fire:"));
        assert_eq!(
            payload,
            json!({
                "text": ":warning: *lkg: shop rolled back 1.1.0 → 1.0.0*\nGET /health answered 503 &lt;@everyone&gt; &amp; more",
                "username": "lkg",
                "icon_emoji": ":fire:",
            })
        );
        let payload = slack_payload(&message(Severity::Info), None, Some("https://x/i.png"));
        assert_eq!(payload["icon_url"], "https://x/i.png");
    }

    #[test]
    fn discord_content_fits_and_pings_nobody() {
        let long = Message { text: "x".repeat(3000), ..message(Severity::Critical) };
        let payload = discord_payload(&long, None, None);
        assert_eq!(payload["content"].as_str().unwrap().chars().count(), DISCORD_MAX_CHARS);
        assert_eq!(payload["allowed_mentions"], json!({"parse": []}));
        let short = discord_payload(&message(Severity::Critical), Some("lkg"), Some("https://x/a.png"));
        assert_eq!(
            short,
            json!({
                "content": ":rotating_light: **lkg: shop rolled back 1.1.0 → 1.0.0**\nGET /health answered 503 <@everyone> & more",
                "allowed_mentions": {"parse": []},
                "username": "lkg",
                "avatar_url": "https://x/a.png",
            })
        );
    }

    #[test]
    fn generic_posts_the_json_or_the_words() {
        let m = message(Severity::Warning);
        assert_eq!(generic_payload(&m), json!({"id": "a1"}));
        let bare = Message { json: Value::Null, ..m };
        assert_eq!(generic_payload(&bare)["severity"], "warning");
        assert_eq!(mail_subject(Some("[prod]"), "a\r\nb"), "[prod]: a  b");
    }
}
