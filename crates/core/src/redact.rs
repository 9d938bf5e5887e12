//! The one redaction rule for what lkg prints, logs, journals or sends: URLs
//! carry secrets (a password in userinfo, `?token=`, a Slack or Discord
//! webhook's key in its path), and lkg shows URLs in reports, alerts, check
//! details and error chains. Every URL lkg shows goes through [`url`], and
//! every text that may quote one (an HTTP client's error) through [`text`].
//!
//! The rule: userinfo becomes `***`; every query value and the fragment
//! become `***`; a path segment that looks like a key (16 or more characters
//! of letters, digits, `-` and `_`, with both letters and digits) becomes
//! `***`. Scheme, host, port and the rest of the path stay, so the reader
//! still sees where lkg went.

const MASK: &str = "***";

/// `url` with its secrets masked (see the module docs). Text that is not a
/// URL with a scheme is returned as it is.
///
/// ```
/// use lkg_core::redact;
/// assert_eq!(redact::url("https://hook.example/h?token=s3cret&x"), "https://hook.example/h?token=***&x");
/// assert_eq!(redact::url("http://ops:pa55@127.0.0.1:8080/health"), "http://***@127.0.0.1:8080/health");
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
    let (authority, path) = match before_query.find('/') {
        Some(at) => before_query.split_at(at),
        None => (before_query, ""),
    };
    let host = match authority.rsplit_once('@') {
        Some((_, host)) => format!("{MASK}@{host}"),
        None => authority.to_owned(),
    };
    let path: Vec<&str> = path.split('/').map(|segment| if looks_like_key(segment) { MASK } else { segment }).collect();
    let mut out = format!("{scheme}://{host}{}", path.join("/"));
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

/// `text` with every `http://` or `https://` URL in it masked by [`url`]: for
/// error chains and messages that quote the URL they failed on.
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
    while let Some(at) = [rest.find("http://"), rest.find("https://")].into_iter().flatten().min() {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
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
}
