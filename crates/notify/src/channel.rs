//! Channel URLs in the shoutrrr convention (Watchtower's and
//! docker-volume-backup's), parsed and checked once, before anything is sent.

use std::net::IpAddr;

use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Mechanism;
use lkg_core::redact;
use reqwest::Url;

use crate::error::{NotifyError, SUPPORTED};

/// One place alerts go: a parsed, validated channel URL.
///
/// `Debug` and `Display` show the [redacted](Channel::redacted) URL: no
/// password, token, webhook key, ntfy topic or query value.
///
/// ```
/// use lkg_notify::Channel;
///
/// let channel = Channel::parse("ntfy://ops:s3cret@ntfy.example/lkg-alerts")?;
/// assert_eq!(channel.scheme(), "ntfy");
/// assert_eq!(channel.redacted(), "ntfy://***@ntfy.example/***");
/// assert_eq!(format!("{channel:?}"), r#"Channel("ntfy://***@ntfy.example/***")"#);
/// assert!(Channel::parse("telegram://token@telegram?chats=1").is_err());
/// # Ok::<(), lkg_notify::NotifyError>(())
/// ```
#[derive(Clone)]
pub struct Channel {
    target: Target,
    redacted: String,
    /// The secrets of the URL, longest first: masked in any text a
    /// delivery reports, on top of [`redact::text`].
    secrets: Vec<String>,
}

/// Where and how a channel sends.
#[derive(Clone)]
pub(crate) enum Target {
    /// ntfy: the text as the body, title, priority and tags as headers.
    Ntfy { post: Post, tags: Vec<String> },
    /// A Slack (or Slack-compatible) incoming webhook.
    Slack { post: Post, username: Option<String>, icon: Option<String> },
    /// A Discord webhook.
    Discord { post: Post, username: Option<String>, avatar: Option<String> },
    /// The message's JSON, posted as it is.
    Generic { post: Post },
    /// Mail.
    Smtp(Smtp),
}

/// An HTTP POST target.
#[derive(Clone)]
pub(crate) struct Post {
    /// Without userinfo: credentials travel in `auth`.
    pub(crate) url: Url,
    pub(crate) auth: Option<Auth>,
    /// Extra headers (generic's `?@Name=value`).
    pub(crate) headers: Vec<(String, String)>,
}

/// HTTP credentials.
#[derive(Clone)]
pub(crate) enum Auth {
    Basic { user: String, password: String },
    Bearer(String),
}

/// A mail server and the envelope.
#[derive(Clone)]
pub(crate) struct Smtp {
    /// Without IPv6 brackets, as lettre connects to it.
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) credentials: Option<(String, String)>,
    /// `None`: lettre's default (PLAIN, then LOGIN).
    pub(crate) mechanisms: Option<Vec<Mechanism>>,
    pub(crate) security: Security,
    pub(crate) from: Mailbox,
    pub(crate) to: Vec<Mailbox>,
    /// Put before each message's title in the Subject.
    pub(crate) subject: Option<String>,
    pub(crate) hello: Option<String>,
}

/// How an SMTP connection is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Security {
    /// No TLS: loopback, or `encryption=None`.
    Plain,
    /// STARTTLS, required: a server that does not offer it fails the delivery.
    StartTls,
    /// TLS from the first byte (`smtps://`, port 465, `encryption=ImplicitTLS`).
    Implicit,
}

impl Channel {
    /// Parses and checks `url` (see docs/notifications.md for every form).
    /// The error names the redacted URL and what is wrong; an unknown
    /// scheme lists the supported ones.
    pub fn parse(url: &str) -> Result<Channel, NotifyError> {
        let raw = url.trim();
        let Some((scheme, rest)) = raw.split_once("://") else {
            // Not a URL: nothing in it can be told apart from a secret, so
            // none of it is shown.
            return Err(NotifyError::InvalidUrl {
                url: "(text without ://)".to_owned(),
                reason: format!("a channel is a URL: use {SUPPORTED}"),
            });
        };
        let mut input = Input { raw, redacted: redact::url(raw), secrets: Vec::new() };
        let target = match scheme.to_ascii_lowercase().as_str() {
            "ntfy" => input.ntfy(false)?,
            "ntfys" => input.ntfy(true)?,
            "slack" => input.slack_token()?,
            "slack+https" | "slack+http" => input.slack_exact(&format!("{}://{rest}", &scheme[6..]))?,
            "discord" => input.discord_token()?,
            "discord+https" | "discord+http" => input.discord_exact(&format!("{}://{rest}", &scheme[8..]))?,
            "generic" => input.generic(None, rest)?,
            "generic+https" | "generic+http" => input.generic(Some(&scheme[8..]), rest)?,
            "http" | "https" => input.web()?,
            "smtp" => input.smtp(false)?,
            "smtps" => input.smtp(true)?,
            // Which part of an unknown kind of URL is its secret cannot be
            // told: none of it is shown.
            _ => return Err(NotifyError::UnknownScheme { url: format!("{scheme}://***"), scheme: scheme.to_owned() }),
        };
        let mut secrets = input.secrets;
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Ok(Channel { target, redacted: input.redacted, secrets })
    }

    /// The URL with its secrets masked, e.g. `ntfy://***@ntfy.example/***`:
    /// what deliveries, reports and errors show.
    pub fn redacted(&self) -> String {
        self.redacted.clone()
    }

    /// The kind of channel: `ntfy`, `slack`, `discord`, `smtp` or `generic`.
    pub fn scheme(&self) -> &'static str {
        match self.target {
            Target::Ntfy { .. } => "ntfy",
            Target::Slack { .. } => "slack",
            Target::Discord { .. } => "discord",
            Target::Generic { .. } => "generic",
            Target::Smtp(_) => "smtp",
        }
    }

    pub(crate) fn target(&self) -> &Target {
        &self.target
    }

    /// `text` with every URL redacted and every secret of this channel
    /// masked: for errors that may quote what they failed on.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let mut text = redact::text(text);
        for secret in &self.secrets {
            text = text.replace(secret.as_str(), "***");
        }
        text
    }
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Channel").field(&self.redacted).finish()
    }
}

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted)
    }
}

/// A loopback host: `localhost`, `127.0.0.0/8` or `[::1]`.
pub(crate) fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// One URL being parsed: its redacted form for errors, and the secrets found so far.
struct Input<'a> {
    raw: &'a str,
    redacted: String,
    secrets: Vec<String>,
}

/// A URL's query, keys lowercased (shoutrrr's keys are case-insensitive).
struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    fn of(url: &Url) -> Query {
        Query { pairs: url.query_pairs().map(|(k, v)| (k.to_ascii_lowercase(), v.into_owned())).collect() }
    }

    /// The value of the first of `names` given, removing them all.
    fn take(&mut self, names: &[&str]) -> Option<String> {
        let mut found = None;
        self.pairs.retain(|(key, value)| {
            let hit = names.contains(&key.as_str());
            if hit && found.is_none() {
                found = Some(value.clone());
            }
            !hit
        });
        found
    }

    /// Fails on any key not taken.
    fn finish(self, input: &Input<'_>, known: &[&str]) -> Result<(), NotifyError> {
        let Some((key, _)) = self.pairs.first() else { return Ok(()) };
        let known = if known.is_empty() { "none".to_owned() } else { known.join(", ") };
        Err(input.invalid(format!("unknown option ?{key}=; this channel takes: {known}")))
    }
}

impl Input<'_> {
    fn invalid(&self, reason: impl Into<String>) -> NotifyError {
        NotifyError::InvalidUrl { url: self.redacted.clone(), reason: reason.into() }
    }

    /// Remembers `secret` (and its percent-decoded form) for [`Channel::scrub`].
    fn secret(&mut self, secret: &str) {
        for form in [secret.to_owned(), decode(secret)] {
            if form.len() >= 3 && !self.secrets.contains(&form) {
                self.secrets.push(form);
            }
        }
    }

    fn parse_url(&self, text: &str) -> Result<Url, NotifyError> {
        Url::parse(text).map_err(|e| self.invalid(format!("not a valid URL ({e})")))
    }

    /// The userinfo, percent-decoded, remembered as secrets.
    fn userinfo(&mut self, url: &Url) -> (String, Option<String>) {
        let user = url.username().to_owned();
        let password = url.password().map(str::to_owned);
        self.secret(&user);
        if let Some(password) = &password {
            self.secret(password);
        }
        (decode(&user), password.map(|p| decode(&p)))
    }

    /// Credentials must not travel in clear, except to this machine.
    fn check_clear(&self, url: &Url, credentials: bool) -> Result<(), NotifyError> {
        let host = url.host_str().unwrap_or_default();
        if credentials && url.scheme() == "http" && !is_loopback(host) {
            return Err(self.invalid(format!(
                "credentials would travel in clear over http to {host}: use https (plain http carries \
                 credentials to a loopback host only)"
            )));
        }
        Ok(())
    }

    /// `ntfy://[user:password@]host[:port]/topic[?scheme=http&tags=a,b]`;
    /// `ntfys://` is https only.
    fn ntfy(&mut self, tls_only: bool) -> Result<Target, NotifyError> {
        let url = self.parse_url(self.raw)?;
        let host = host_and_port(&url).ok_or_else(|| self.invalid("name the server: ntfy://host/topic"))?;
        let topic = url.path().trim_start_matches('/').to_owned();
        if topic.is_empty() || topic.contains('/') {
            return Err(self.invalid("name one topic: ntfy://[user:password@]host[:port]/topic"));
        }
        // The topic is the password of a server without access control.
        self.secret(&topic);
        let mut query = Query::of(&url);
        let scheme = match query.take(&["scheme"]).map(|s| s.to_ascii_lowercase()).as_deref() {
            None | Some("https") => "https",
            Some("http") if tls_only => {
                return Err(self.invalid("ntfys:// is https only: drop ?scheme=http, or write ntfy://"));
            }
            Some("http") => "http",
            Some(other) => return Err(self.invalid(format!("?scheme={other}: use http or https"))),
        };
        let tags = query
            .take(&["tags"])
            .map(|t| t.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default();
        query.finish(self, &["scheme", "tags"])?;
        let (user, password) = self.userinfo(&url);
        let auth = match (user.is_empty(), password) {
            (true, None) => None,
            (true, Some(token)) => Some(Auth::Bearer(token)),
            (false, Some(password)) => Some(Auth::Basic { user, password }),
            (false, None) if user.starts_with("tk_") => Some(Auth::Bearer(user)),
            (false, None) => {
                return Err(self.invalid(
                    "a user without a password: write user:password@ for a login, or :token@ for an access token",
                ));
            }
        };
        let api = self.parse_url(&format!("{scheme}://{host}/{topic}"))?;
        self.check_clear(&api, auth.is_some())?;
        Ok(Target::Ntfy { post: Post { url: api, auth, headers: Vec::new() }, tags })
    }

    /// shoutrrr's `slack://hook:A-B-C@webhook` or its older
    /// `slack://[botname@]A/B/C`: `https://hooks.slack.com/services/A/B/C`.
    fn slack_token(&mut self) -> Result<Target, NotifyError> {
        let url = self.parse_url(self.raw)?;
        let (user, password) = self.userinfo(&url);
        let host = url.host_str().unwrap_or_default().to_owned();
        let path: Vec<String> =
            url.path_segments().into_iter().flatten().filter(|s| !s.is_empty()).map(str::to_owned).collect();
        let (parts, botname) = if path.is_empty() {
            match user.as_str() {
                "hook" => {
                    let token = password.unwrap_or_default();
                    let parts: Vec<String> = token.split(['-', ',', '/']).map(str::to_owned).collect();
                    (parts, None)
                }
                "xoxb" | "xoxp" => {
                    return Err(self.invalid(
                        "Slack's bot API (xoxb/xoxp tokens) is not supported: use an incoming webhook, \
                         slack://hook:A-B-C@webhook or https://hooks.slack.com/services/A/B/C",
                    ));
                }
                _ => {
                    return Err(self.invalid(
                        "write a Slack webhook as slack://hook:A-B-C@webhook or slack://A/B/C \
                         (from https://hooks.slack.com/services/A/B/C)",
                    ));
                }
            }
        } else {
            let mut parts = vec![host];
            parts.extend(path);
            (parts, Some(user).filter(|u| !u.is_empty()))
        };
        let valid =
            parts.len() == 3 && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric()));
        if !valid {
            return Err(self.invalid(
                "a Slack webhook token has three parts of letters and digits: slack://hook:A-B-C@webhook or slack://A/B/C",
            ));
        }
        self.secret(&parts[2]);
        let webhook =
            self.parse_url(&format!("https://hooks.slack.com/services/{}/{}/{}", parts[0], parts[1], parts[2]))?;
        let mut query = Query::of(&url);
        let username = query.take(&["username", "botname"]).or(botname);
        let icon = query.take(&["icon", "icon_emoji", "icon_url"]);
        query.finish(self, &["username", "icon"])?;
        Ok(Target::Slack { post: Post { url: webhook, auth: None, headers: Vec::new() }, username, icon })
    }

    /// `slack+https://host/path`: a Slack-compatible incoming webhook
    /// (Mattermost, Rocket.Chat) at exactly that URL.
    fn slack_exact(&mut self, url: &str) -> Result<Target, NotifyError> {
        let (post, mut query) = self.webhook(url)?;
        let username = query.take(&["username", "botname"]);
        let icon = query.take(&["icon", "icon_emoji", "icon_url"]);
        query.finish(self, &["username", "icon"])?;
        Ok(Target::Slack { post, username, icon })
    }

    /// shoutrrr's `discord://token@webhookid`:
    /// `https://discord.com/api/webhooks/<webhookid>/<token>`.
    fn discord_token(&mut self) -> Result<Target, NotifyError> {
        let url = self.parse_url(self.raw)?;
        let (token, password) = self.userinfo(&url);
        let id = url.host_str().unwrap_or_default().to_owned();
        // The token is the user part; an empty password (`token:@`) is tolerated.
        if password.is_some_and(|p| !p.is_empty()) {
            return Err(self.invalid("write discord://TOKEN@WEBHOOK_ID: one token, no password"));
        }
        if token.is_empty() || id.is_empty() || !matches!(url.path(), "" | "/") {
            return Err(self.invalid(
                "write a Discord webhook as discord://TOKEN@WEBHOOK_ID (from https://discord.com/api/webhooks/WEBHOOK_ID/TOKEN)",
            ));
        }
        let webhook = self.parse_url(&format!("https://discord.com/api/webhooks/{id}/{token}"))?;
        let mut query = Query::of(&url);
        let username = query.take(&["username"]);
        let avatar = query.take(&["avatar", "avatarurl"]);
        query.finish(self, &["username", "avatar"])?;
        Ok(Target::Discord { post: Post { url: webhook, auth: None, headers: Vec::new() }, username, avatar })
    }

    /// `discord+https://host/path`: a Discord-compatible webhook at exactly that URL.
    fn discord_exact(&mut self, url: &str) -> Result<Target, NotifyError> {
        let (post, mut query) = self.webhook(url)?;
        let username = query.take(&["username"]);
        let avatar = query.take(&["avatar", "avatarurl"]);
        query.finish(self, &["username", "avatar"])?;
        Ok(Target::Discord { post, username, avatar })
    }

    /// An exact webhook URL whose query holds this channel's options: the
    /// URL without userinfo and query, its key (last path segment) a secret.
    fn webhook(&mut self, url: &str) -> Result<(Post, Query), NotifyError> {
        let mut url = self.parse_url(url)?;
        if url.host_str().unwrap_or_default().is_empty() {
            return Err(self.invalid("name the webhook's host"));
        }
        let query = Query::of(&url);
        url.set_query(None);
        url.set_fragment(None);
        if let Some(key) = url.path_segments().and_then(|mut s| s.rfind(|s| !s.is_empty())) {
            let key = key.to_owned();
            self.secret(&key);
        }
        let auth = self.basic_auth(&mut url)?;
        Ok((Post { url, auth, headers: Vec::new() }, query))
    }

    /// Moves userinfo out of `url` into Basic credentials.
    fn basic_auth(&mut self, url: &mut Url) -> Result<Option<Auth>, NotifyError> {
        let (user, password) = self.userinfo(url);
        let auth = (!user.is_empty() || password.is_some())
            .then(|| Auth::Basic { user, password: password.unwrap_or_default() });
        self.check_clear(url, auth.is_some())?;
        // Cannot fail: the URL has a host.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        Ok(auth)
    }

    /// `generic+https://...`, `generic+http://...` and shoutrrr's
    /// `generic://host/path` (https; `?disabletls=yes` for http): the JSON
    /// payload, posted. `?@Name=value` adds a header, `?_key=value` sends
    /// `key=value` (a key shoutrrr reserves); other query pairs go to the URL.
    fn generic(&mut self, transport: Option<&str>, rest: &str) -> Result<Target, NotifyError> {
        let parsed = self.parse_url(&format!("https://{rest}"))?;
        let mut headers = Vec::new();
        let mut forward = Vec::new();
        let mut scheme = transport.unwrap_or("https");
        for (key, value) in parsed.query_pairs() {
            let lower = key.to_ascii_lowercase();
            if let Some(name) = key.strip_prefix('@') {
                check_header(name, &value).map_err(|reason| self.invalid(reason))?;
                self.secret(&value);
                headers.push((name.to_owned(), value.into_owned()));
            } else if let Some(key) = key.strip_prefix('_') {
                self.secret(&value);
                forward.push((key.to_owned(), value.into_owned()));
            } else if lower == "disabletls" && transport.is_none() {
                if parse_bool(&value).ok_or_else(|| self.invalid("?disabletls= takes yes or no"))? {
                    scheme = "http";
                }
            } else if matches!(
                lower.as_str(),
                "contenttype"
                    | "method"
                    | "requestmethod"
                    | "template"
                    | "title"
                    | "titlekey"
                    | "messagekey"
                    | "disabletls"
            ) {
                return Err(self.invalid(format!(
                    "?{key}= is a shoutrrr option lkg does not take: lkg posts its JSON as application/json \
                     (write ?_{key}= to send it to the server)"
                )));
            } else {
                self.secret(&value);
                forward.push((key.into_owned(), value.into_owned()));
            }
        }
        let mut url = parsed;
        let _ = url.set_scheme(scheme);
        url.set_query(None);
        if !forward.is_empty() {
            url.query_pairs_mut().extend_pairs(&forward);
        }
        if url.host_str().unwrap_or_default().is_empty() {
            return Err(self.invalid("name the webhook's host"));
        }
        let auth = self.basic_auth(&mut url)?;
        Ok(Target::Generic { post: Post { url, auth, headers } })
    }

    /// A plain `http(s)://` URL: Slack's and Discord's webhook URLs are
    /// those channels; any other is the generic channel, its query sent as it is.
    fn web(&mut self) -> Result<Target, NotifyError> {
        let mut url = self.parse_url(self.raw)?;
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        if host.is_empty() {
            return Err(self.invalid("name the webhook's host"));
        }
        let slack = host == "hooks.slack.com" && url.path().starts_with("/services/");
        let discord =
            matches!(host.as_str(), "discord.com" | "discordapp.com") && url.path().starts_with("/api/webhooks/");
        if slack || discord {
            let (post, query) = self.webhook(self.raw)?;
            query.finish(self, &[])?;
            return Ok(if slack {
                Target::Slack { post, username: None, icon: None }
            } else {
                Target::Discord { post, username: None, avatar: None }
            });
        }
        for (_, value) in url.query_pairs() {
            let value = value.into_owned();
            self.secret(&value);
        }
        url.set_fragment(None);
        let auth = self.basic_auth(&mut url)?;
        Ok(Target::Generic { post: Post { url, auth, headers: Vec::new() } })
    }

    /// `smtp://[user:password@]host[:port]/?from=a@x&to=b@y,c@z` (shoutrrr's
    /// `fromaddress`, `toaddresses`, `fromname`, `subject`, `encryption`,
    /// `usestarttls`, `auth`, `clienthost`); `smtps://` is implicit TLS.
    fn smtp(&mut self, implicit: bool) -> Result<Target, NotifyError> {
        let url = self.parse_url(self.raw)?;
        let host = url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_owned();
        if host.is_empty() {
            return Err(self.invalid("name the mail server: smtp://[user:password@]host[:port]/?from=...&to=..."));
        }
        if !matches!(url.path(), "" | "/") {
            return Err(self.invalid("no path after the server: smtp://host:port/?from=...&to=..."));
        }
        let loopback = is_loopback(&host);
        let mut query = Query::of(&url);
        let from = query.take(&["from", "fromaddress"]).ok_or_else(|| self.invalid("add ?from=ADDRESS"))?;
        let to = query.take(&["to", "toaddresses"]).ok_or_else(|| self.invalid("add &to=ADDRESS[,ADDRESS...]"))?;
        let from_name = query.take(&["fromname"]);
        let subject = query.take(&["subject", "title"]);
        let encryption = query.take(&["encryption"]).map(|e| e.to_ascii_lowercase());
        let starttls = match query.take(&["usestarttls"]) {
            Some(v) => Some(parse_bool(&v).ok_or_else(|| self.invalid("?usestarttls= takes yes or no"))?),
            None => None,
        };
        let auth = query.take(&["auth"]).map(|a| a.to_ascii_lowercase());
        let hello = query.take(&["clienthost"]);
        if let Some(html) = query.take(&["usehtml"])
            && parse_bool(&html) != Some(false)
        {
            return Err(self.invalid("?usehtml=yes is not supported: lkg sends plain text"));
        }
        query.finish(
            self,
            &["from", "to", "fromname", "subject", "encryption", "usestarttls", "auth", "clienthost", "usehtml"],
        )?;

        let address = |text: &str| {
            text.trim()
                .parse::<lettre::Address>()
                .map_err(|e| self.invalid(format!("{:?} is not a mail address ({e})", text.trim())))
        };
        let from = Mailbox::new(from_name, address(&from)?);
        let to: Vec<Mailbox> = to
            .split(',')
            .filter(|t| !t.trim().is_empty())
            .map(|t| address(t).map(|a| Mailbox::new(None, a)))
            .collect::<Result<_, _>>()?;
        if to.is_empty() {
            return Err(self.invalid("add &to=ADDRESS[,ADDRESS...]"));
        }

        let security = match (implicit, encryption.as_deref()) {
            (true, None | Some("auto" | "implicittls")) | (false, Some("implicittls")) => Security::Implicit,
            (true, Some(other)) => {
                return Err(self.invalid(format!("smtps:// is implicit TLS; ?encryption={other} contradicts it")));
            }
            (false, Some("explicittls")) => Security::StartTls,
            (false, Some("none")) => Security::Plain,
            (false, None | Some("auto")) => {
                if starttls == Some(false) || (loopback && url.port() != Some(465)) {
                    Security::Plain
                } else if url.port() == Some(465) {
                    Security::Implicit
                } else {
                    Security::StartTls
                }
            }
            (false, Some(other)) => {
                return Err(self.invalid(format!("?encryption={other}: use None, ExplicitTLS, ImplicitTLS or Auto")));
            }
        };
        let port = url.port().unwrap_or(if security == Security::Implicit { 465 } else { 25 });

        let (user, password) = self.userinfo(&url);
        let mut credentials = (!user.is_empty() || password.is_some()).then(|| (user, password.unwrap_or_default()));
        let mechanisms = match auth.as_deref() {
            None | Some("unknown") => None,
            Some("none") => {
                credentials = None;
                None
            }
            Some("plain") => Some(vec![Mechanism::Plain]),
            Some("login") => Some(vec![Mechanism::Login]),
            Some("oauth2") => Some(vec![Mechanism::Xoauth2]),
            Some(other) => {
                return Err(self.invalid(format!("?auth={other} is not supported: use Plain, Login, OAuth2 or None")));
            }
        };
        if credentials.is_some() && security == Security::Plain && !loopback {
            return Err(self.invalid(format!(
                "the password would travel in clear to {host}: use encryption=ExplicitTLS (STARTTLS) or \
                 ImplicitTLS, or send without credentials"
            )));
        }
        Ok(Target::Smtp(Smtp { host, port, credentials, mechanisms, security, from, to, subject, hello }))
    }
}

fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text).decode_utf8_lossy().into_owned()
}

/// `host[:port]` of a URL, `None` without a host.
fn host_and_port(url: &Url) -> Option<String> {
    let host = url.host_str().filter(|h| !h.is_empty())?;
    Some(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    })
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "yes" | "true" | "1" | "on" => Some(true),
        "no" | "false" | "0" | "off" => Some(false),
        _ => None,
    }
}

fn check_header(name: &str, value: &str) -> Result<(), String> {
    reqwest::header::HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("?@{name}= does not name an HTTP header"))?;
    reqwest::header::HeaderValue::from_str(value)
        .map_err(|_| format!("the value of ?@{name}= is not a header value"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(channel: &Channel) -> &Post {
        match channel.target() {
            Target::Ntfy { post, .. }
            | Target::Slack { post, .. }
            | Target::Discord { post, .. }
            | Target::Generic { post } => post,
            Target::Smtp(_) => panic!("not HTTP"),
        }
    }

    fn smtp(channel: &Channel) -> &Smtp {
        match channel.target() {
            Target::Smtp(smtp) => smtp,
            _ => panic!("not SMTP"),
        }
    }

    fn error(url: &str) -> String {
        Channel::parse(url).unwrap_err().to_string()
    }

    #[test]
    fn ntfy_is_https_unless_the_url_says_http() {
        let c = Channel::parse("ntfy://ntfy.example/alerts").unwrap();
        assert_eq!((c.scheme(), post(&c).url.as_str()), ("ntfy", "https://ntfy.example/alerts"));
        assert!(post(&c).auth.is_none());
        let c = Channel::parse("ntfy://127.0.0.1:8080/alerts?scheme=http&tags=a,b").unwrap();
        assert_eq!(post(&c).url.as_str(), "http://127.0.0.1:8080/alerts");
        let Target::Ntfy { tags, .. } = c.target() else { panic!() };
        assert_eq!(tags, &["a", "b"]);
        assert_eq!(post(&Channel::parse("ntfys://ntfy.sh/t").unwrap()).url.as_str(), "https://ntfy.sh/t");
        assert!(error("ntfys://ntfy.sh/t?scheme=http").contains("https only"));
        assert!(error("ntfy://ntfy.sh/").contains("name one topic"));
        assert!(error("ntfy://ntfy.sh/t?priority=5").contains("unknown option ?priority="));
    }

    #[test]
    fn ntfy_credentials_are_basic_or_an_access_token_and_never_in_clear() {
        let c = Channel::parse("ntfy://ops:pa%2Fss@ntfy.example/t").unwrap();
        assert!(matches!(&post(&c).auth, Some(Auth::Basic { user, password }) if user == "ops" && password == "pa/ss"));
        let c = Channel::parse("ntfy://:tk_abc@ntfy.example/t").unwrap();
        assert!(matches!(&post(&c).auth, Some(Auth::Bearer(t)) if t == "tk_abc"));
        let c = Channel::parse("ntfy://tk_abc@ntfy.example/t").unwrap();
        assert!(matches!(&post(&c).auth, Some(Auth::Bearer(t)) if t == "tk_abc"));
        assert!(error("ntfy://ops@ntfy.example/t").contains("without a password"));
        let clear = error("ntfy://ops:SECRET@ntfy.example/t?scheme=http");
        assert!(clear.contains("in clear") && !clear.contains("SECRET"), "{clear}");
        assert!(Channel::parse("ntfy://ops:pw@localhost:8080/t?scheme=http").is_ok());
    }

    #[test]
    fn slack_takes_shoutrrr_forms_hook_urls_and_compatible_webhooks() {
        let hook = "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX";
        for url in [
            "slack://T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
            "slack://hook:T00000000-B00000000-XXXXXXXXXXXXXXXXXXXXXXXX@webhook",
            hook,
        ] {
            let c = Channel::parse(url).unwrap();
            assert_eq!((c.scheme(), post(&c).url.as_str()), ("slack", hook), "{url}");
            assert!(!c.redacted().contains("XXXX"), "{}", c.redacted());
        }
        let c = Channel::parse("slack://lkg@T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX?icon=:fire:").unwrap();
        let Target::Slack { username, icon, .. } = c.target() else { panic!() };
        assert_eq!((username.as_deref(), icon.as_deref()), (Some("lkg"), Some(":fire:")));
        let c = Channel::parse("slack+http://127.0.0.1:9/hooks/abc?username=lkg").unwrap();
        assert_eq!((c.scheme(), post(&c).url.as_str()), ("slack", "http://127.0.0.1:9/hooks/abc"));
        assert_eq!(c.redacted(), "slack+http://127.0.0.1:9/hooks/***?username=***");
        assert!(error("slack://xoxb:123456789-123456789-abcdefghijklmnopqrstuvwx@C0123").contains("bot API"));
        assert!(error("slack://T0/B0").contains("three parts"));
    }

    #[test]
    fn discord_is_token_at_webhook_id() {
        let c = Channel::parse("discord://W3dE2OZz4C13_4z@693853386302554172?username=lkg").unwrap();
        assert_eq!(post(&c).url.as_str(), "https://discord.com/api/webhooks/693853386302554172/W3dE2OZz4C13_4z");
        assert_eq!((c.scheme(), c.redacted().as_str()), ("discord", "discord://***@693853386302554172?username=***"));
        let c = Channel::parse("discord+http://127.0.0.1:9/api/webhooks/1/tok").unwrap();
        assert_eq!(post(&c).url.as_str(), "http://127.0.0.1:9/api/webhooks/1/tok");
        let c = Channel::parse("https://discord.com/api/webhooks/1/tok").unwrap();
        assert_eq!(c.scheme(), "discord");
        assert!(error("discord://693853386302554172").contains("discord://TOKEN@WEBHOOK_ID"));
    }

    #[test]
    fn generic_posts_to_the_url_after_the_prefix() {
        let c = Channel::parse("generic+https://hook.example/x?token=abc&@X-Key=k1&_title=t").unwrap();
        let p = post(&c);
        assert_eq!((c.scheme(), p.url.as_str()), ("generic", "https://hook.example/x?token=abc&title=t"));
        assert_eq!(p.headers, [("X-Key".to_owned(), "k1".to_owned())]);
        let c = Channel::parse("generic://hook.example/x?disabletls=yes").unwrap();
        assert_eq!(post(&c).url.as_str(), "http://hook.example/x");
        let c = Channel::parse("http://u:p@127.0.0.1:9/hook?token=t").unwrap();
        assert_eq!((c.scheme(), post(&c).url.as_str()), ("generic", "http://127.0.0.1:9/hook?token=t"));
        assert!(matches!(&post(&c).auth, Some(Auth::Basic { user, password }) if user == "u" && password == "p"));
        assert!(error("generic+https://h/x?template=json").contains("shoutrrr option"));
        assert!(error("http://u:SECRET@hook.example/x").contains("in clear"));
    }

    #[test]
    fn smtp_requires_starttls_off_loopback_and_never_sends_a_password_in_clear() {
        let c = Channel::parse("smtp://me:pw@mail.example:587/?from=lkg@example.org&to=a@example.org,b@example.org")
            .unwrap();
        let s = smtp(&c);
        assert_eq!(
            (c.scheme(), s.host.as_str(), s.port, s.security),
            ("smtp", "mail.example", 587, Security::StartTls)
        );
        assert_eq!(s.to.len(), 2);
        assert_eq!(s.credentials, Some(("me".to_owned(), "pw".to_owned())));
        let s =
            smtp(&Channel::parse("smtp://127.0.0.1:2525/?fromaddress=a@x.org&toaddresses=b@x.org").unwrap()).clone();
        assert_eq!((s.port, s.security), (2525, Security::Plain));
        let s = smtp(&Channel::parse("smtps://mail.example/?from=a@x.org&to=b@x.org").unwrap()).clone();
        assert_eq!((s.port, s.security), (465, Security::Implicit));
        let s = smtp(&Channel::parse("smtp://mail.example:465/?from=a@x.org&to=b@x.org").unwrap()).clone();
        assert_eq!(s.security, Security::Implicit);
        let s = smtp(&Channel::parse("smtp://mail.example/?from=a@x.org&to=b@x.org&encryption=None").unwrap()).clone();
        assert_eq!((s.port, s.security), (25, Security::Plain));
        let clear = error("smtp://me:SECRET@mail.example/?from=a@x.org&to=b@x.org&usestarttls=no");
        assert!(clear.contains("in clear") && !clear.contains("SECRET"), "{clear}");
        assert!(error("smtp://mail.example/?to=b@x.org").contains("?from="));
        assert!(error("smtp://mail.example/?from=a@x.org&to=nope").contains("not a mail address"));
        assert!(error("smtp://mail.example/?from=a@x.org&to=b@x.org&auth=CRAMMD5").contains("not supported"));
    }

    #[test]
    fn errors_name_the_redacted_url_and_list_the_schemes() {
        let e = Channel::parse("telegram://123:SECRET@telegram?chats=SECRET2").unwrap_err();
        let text = e.to_string();
        assert!(text.contains("telegram://***: unknown scheme") && text.contains("ntfy://"), "{text}");
        assert!(!text.contains("SECRET"), "{text}");
        assert_eq!(lkg_core::Classify::kind(&e), lkg_core::FailureKind::Input);
        let e = error("user:SECRET@host");
        assert!(!e.contains("SECRET"), "{e}");
    }

    #[test]
    fn scrub_masks_every_secret_of_the_url() {
        let c = Channel::parse("slack+http://bob:PASSWORD@127.0.0.1:9/hooks/WEBHOOKKEY").unwrap();
        assert_eq!(c.scrub("PASSWORD and WEBHOOKKEY at http://x/WEBHOOKKEY"), "*** and *** at http://x/***");
    }
}
