//! The one redaction rule for what lkg prints, logs, journals or sends: URLs
//! carry secrets (a password in userinfo, `?token=`, a Slack or Discord
//! webhook's key in its path, an ntfy topic), and lkg shows URLs in reports,
//! alerts, check details, notification deliveries and error chains. Every URL
//! lkg shows goes through [`url`], and every text that may quote one (an HTTP
//! client's error) through [`text`].
//!
//! The rule: userinfo becomes `***` (everything before the last `@` ahead of
//! the query, so a password holding a `/` is masked whole); every query value
//! and the fragment become `***`; a path segment that looks like a key (16 or
//! more characters of letters, digits, `-` and `_`, with both letters and
//! digits) becomes `***`. Where the kind of URL says which part is the key,
//! that part is masked whatever it looks like: the last path segment of a
//! Slack or Discord webhook (`slack://`, `slack+https://`, `discord+https://`,
//! `https://hooks.slack.com/services/...`, `https://discord.com/api/webhooks/...`),
//! the host of a `discord://` URL without userinfo (its token, the `@` left
//! out), and every path segment of an ntfy URL (`ntfy://`, `ntfys://`: the
//! topic is its password). Scheme, host, port and the rest of the path stay, so the
//! reader still sees where lkg went.

const MASK: &str = "***";

/// Which path segments of a URL are its secret, whatever they look like.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SecretPath {
    /// Only key-like segments.
    KeyLike,
    /// The last non-empty segment (a webhook's key).
    Last,
    /// Every segment (an ntfy topic).
    All,
}

fn secret_path(scheme: &str, host: &str, path: &str) -> SecretPath {
    let scheme = scheme.to_ascii_lowercase();
    let kind = scheme.split('+').next().unwrap_or_default();
    let host = host.rsplit_once(':').map_or(
        host,
        |(name, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) { name } else { host }
        },
    );
    let host = host.to_ascii_lowercase();
    match kind {
        "ntfy" | "ntfys" => SecretPath::All,
        "slack" | "discord" => SecretPath::Last,
        _ if host == "hooks.slack.com" => SecretPath::Last,
        _ if matches!(host.as_str(), "discord.com" | "discordapp.com") && path.starts_with("/api/webhooks/") => {
            SecretPath::Last
        }
        _ => SecretPath::KeyLike,
    }
}

/// `url` with its secrets masked (see the module docs). Text that is not a
/// URL with a scheme is returned as it is.
///
/// ```
/// use lkg_core::redact;
/// assert_eq!(redact::url("https://hook.example/h?token=s3cret&x"), "https://hook.example/h?token=***&x");
/// assert_eq!(redact::url("http://ops:pa55@127.0.0.1:8080/health"), "http://***@127.0.0.1:8080/health");
/// assert_eq!(redact::url("ntfy://ops:pa55@ntfy.example/alerts"), "ntfy://***@ntfy.example/***");
/// ```
pub fn url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let (before_fragment, fragment) = match rest.split_once('#') {
        Some((b, _)) => (b, Some(MASK)),
        None => (rest, None),
    };
    let (before_query, query) = match before_fragment.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (before_fragment, None),
    };
    // Userinfo ends at the last `@`: an unencoded `/` in a password must not
    // push the rest of it into the path, where it would be shown.
    let (userinfo, after_userinfo) = match before_query.rsplit_once('@') {
        Some((_, after)) => (true, after),
        None => (false, before_query),
    };
    let (host, path) = match after_userinfo.find('/') {
        Some(at) => after_userinfo.split_at(at),
        None => (after_userinfo, ""),
    };
    let secret = secret_path(scheme, host, path);
    let segments: Vec<&str> = path.split('/').collect();
    let last = segments.iter().rposition(|segment| !segment.is_empty());
    let path: Vec<&str> = segments
        .iter()
        .copied()
        .enumerate()
        .map(|(i, segment)| {
            let masked = !segment.is_empty()
                && (looks_like_key(segment)
                    || secret == SecretPath::All
                    || (secret == SecretPath::Last && Some(i) == last));
            if masked { MASK } else { segment }
        })
        .collect();
    let mut out = format!("{scheme}://");
    if userinfo {
        out.push_str(MASK);
        out.push('@');
        out.push_str(host);
    } else if scheme.eq_ignore_ascii_case("discord") {
        // `discord://TOKEN@ID` written without its `@`: the host may be the token.
        out.push_str(MASK);
    } else {
        out.push_str(host);
    }
    out.push_str(&path.join("/"));
    if let Some(query) = query {
        let masked: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) => format!("{key}={MASK}"),
                None => pair.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&masked.join("&"));
    }
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

/// `text` with every URL in it (`scheme://...`: `http://`, `https://`,
/// `smtp://`, `ntfy://`, `generic+https://`, ...) masked by [`url`]: for error
/// chains and messages that quote the URL they failed on.
///
/// ```
/// use lkg_core::redact;
/// assert_eq!(
///     redact::text("error sending request for url (http://u:p@h/x?k=v): connection refused"),
///     "error sending request for url (http://***@h/x?k=***): connection refused"
/// );
/// ```
pub fn text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(found) = rest.find("://") {
        // The scheme: the letters, digits, `+`, `-` and `.` right before
        // `://`, starting with a letter.
        let scheme_start = rest[..found]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |at| at + 1);
        let scheme_start =
            rest[scheme_start..found].find(|c: char| c.is_ascii_alphabetic()).map_or(found, |at| scheme_start + at);
        if scheme_start == found {
            out.push_str(&rest[..found + 3]);
            rest = &rest[found + 3..];
            continue;
        }
        out.push_str(&rest[..scheme_start]);
        let tail = &rest[scheme_start..];
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, ')' | '"' | '\'' | '<' | '>' | ','))
            .unwrap_or(tail.len());
        // A sentence's own punctuation right after the URL is not part of it.
        let end = tail[..end].trim_end_matches(['.', ':', ';']).len();
        out.push_str(&url(&tail[..end]));
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

fn looks_like_key(segment: &str) -> bool {
    segment.len() >= 16
        && segment.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && segment.bytes().any(|b| b.is_ascii_alphabetic())
        && segment.bytes().any(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_urls_are_masked_and_the_place_is_kept() {
        let cases = [
            ("http://127.0.0.1:9/hook?token=SECRETTOKEN", "http://127.0.0.1:9/hook?token=***"),
            ("http://user:PASSWORD@host/health?apikey=K&v=1", "http://***@host/health?apikey=***&v=***"),
            (
                "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX1",
                "https://hooks.slack.com/services/T00000000/B00000000/***",
            ),
            (
                "https://discord.com/api/webhooks/123456789012345678/abcDEF123ghiJKL456mnoPQR789",
                "https://discord.com/api/webhooks/123456789012345678/***",
            ),
            ("https://ntfy.example/alerts#frag", "https://ntfy.example/alerts#***"),
            ("http://127.0.0.1:8080/health", "http://127.0.0.1:8080/health"),
            ("not a url", "not a url"),
            // Where the kind of URL says which part is the key, it is masked
            // whatever it looks like.
            (
                "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
                "https://hooks.slack.com/services/T00000000/B00000000/***",
            ),
            ("slack://T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX", "slack://T00000000/B00000000/***"),
            ("slack://hook:T00000000-B00000000-XXXXXXXX@webhook", "slack://***@webhook"),
            ("slack+http://127.0.0.1:9/hooks/plainkey", "slack+http://127.0.0.1:9/hooks/***"),
            ("discord://tokentoken@123456", "discord://***@123456"),
            ("discord://tokentoken", "discord://***"),
            ("discord+https://chat.example/api/webhooks/1/tok", "discord+https://chat.example/api/webhooks/1/***"),
            ("https://discordapp.com/api/webhooks/1/tok", "https://discordapp.com/api/webhooks/1/***"),
            ("ntfy://u:p@ntfy.example:8080/alerts?scheme=http", "ntfy://***@ntfy.example:8080/***?scheme=***"),
            ("ntfys://ntfy.sh/secret-topic", "ntfys://ntfy.sh/***"),
            ("smtp://me:pw@mail.example:587/?from=a@x&to=b@y", "smtp://***@mail.example:587/?from=***&to=***"),
            // An unencoded `/` in a password is still userinfo.
            ("smtp://me:pa/ss@mail.example/?to=b@y", "smtp://***@mail.example/?to=***"),
            (
                "generic+https://hook.example/x?@authorization=Bearer+t",
                "generic+https://hook.example/x?@authorization=***",
            ),
        ];
        for (given, shown) in cases {
            assert_eq!(url(given), shown, "{given}");
        }
    }

    #[test]
    fn urls_inside_text_are_masked() {
        let chain = "cannot POST to https://a:b@hook.example/x?sig=abc: error sending request for url \
                     (https://a:b@hook.example/x?sig=abc), then \"http://h/?t=1\"";
        let shown = text(chain);
        assert!(!shown.contains("a:b") && !shown.contains("sig=abc") && !shown.contains("t=1"), "{shown}");
        assert_eq!(
            shown,
            "cannot POST to https://***@hook.example/x?sig=***: error sending request for url \
             (https://***@hook.example/x?sig=***), then \"http://h/?t=***\""
        );
    }

    #[test]
    fn urls_of_any_scheme_inside_text_are_masked() {
        let shown = text("cannot send to smtp://me:PW@mail.example:25/?to=ops@x (ntfy://u:PW2@h/TOPIC): refused");
        assert_eq!(shown, "cannot send to smtp://***@mail.example:25/?to=*** (ntfy://***@h/***): refused");
        assert_eq!(text("a :// b and 1://x"), "a :// b and 1://x");
        assert_eq!(text("see generic+https://h/p?k=v."), "see generic+https://h/p?k=***.");
    }
}
