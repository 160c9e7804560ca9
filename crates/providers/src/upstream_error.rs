//! Turning an upstream's error response into a classified [`ProviderError`] that keeps the
//! upstream's own words but never a credential.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;

use core_domain::ProviderKind;

use crate::ProviderError;

/// The longest upstream message kept; the rest is cut (bodies can be whole HTML pages).
const MAX_MESSAGE_CHARS: usize = 500;

/// How much of an upstream message is searched for keys before it is cut to
/// [`MAX_MESSAGE_CHARS`]: enough that a key starting inside the kept part is found whole, even
/// escaped (`\uXXXX` is six characters for one).
const SCANNED_CHARS: usize = MAX_MESSAGE_CHARS * 8;

/// Classifies a non-success response from `provider`: 401/403 auth, 429 rate limited, other
/// 4xx invalid request, everything else an upstream failure.
pub(crate) fn classify(
    provider: ProviderKind,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[&str],
) -> ProviderError {
    let message = if status.is_redirection() {
        // The body of a redirect is rarely useful; where it points is.
        let location = headers
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("nowhere");
        scrub(
            &format!(
                "upstream redirected to {location}; redirects are not followed, \
                 so set the base URL to the final address"
            ),
            secrets,
        )
    } else {
        scrub(&upstream_message(status, body), secrets)
    };
    let code = status.as_u16();
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ProviderError::AuthFailed {
            provider,
            status: code,
            message,
        },
        StatusCode::TOO_MANY_REQUESTS => ProviderError::RateLimited {
            retry_after: retry_after(headers),
            message,
        },
        s if s.is_client_error() => ProviderError::InvalidRequest {
            status: code,
            message,
        },
        _ => ProviderError::Upstream {
            status: Some(code),
            message,
        },
    }
}

/// The message in an error body: OpenAI's and Gemini's `error.message`, Anthropic's
/// `error.message` (under `type: error`), a bare `message`, or the body text itself. Not yet
/// scrubbed: see [`scrub`].
pub(crate) fn upstream_message(status: StatusCode, body: &[u8]) -> String {
    let from_json = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
        [&v["error"]["message"], &v["message"], &v["error"]]
            .into_iter()
            .find_map(|m| m.as_str().map(str::to_owned))
    });
    let text = from_json.unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned());
    if text.is_empty() {
        status.canonical_reason().unwrap_or("no message").to_owned()
    } else {
        text
    }
}

/// An upstream's message made fit to keep: keys redacted, then cut to [`MAX_MESSAGE_CHARS`]
/// (redacting first, so that a cut cannot leave half a key behind).
pub(crate) fn scrub(message: &str, secrets: &[&str]) -> String {
    let scanned = match message.char_indices().nth(SCANNED_CHARS) {
        Some((cut, _)) => &message[..cut],
        None => message,
    };
    truncate(&redact(scanned, secrets))
}

fn truncate(text: &str) -> String {
    match text.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// `message` with every secret removed, and with any word that looks like a key or a masked
/// key (`sk-...`, `sk-ab***xyz`) replaced: some upstreams quote part of a rejected key back.
///
/// A secret is found in any letter case (one upstream echoed a rejected key upper-cased) and
/// with any of its characters escaped as JSON or URLs escape them (`\/`, `\u0041`, `%2F`), as
/// a body that was not parsed, or that quotes JSON inside its message, carries them.
pub(crate) fn redact(message: &str, secrets: &[&str]) -> String {
    let mut clean = message.to_owned();
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        clean = remove_secret(&clean, secret.as_bytes());
    }
    clean
        .split(' ')
        .map(|word| {
            let bare = word.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '*');
            let lower = bare.to_ascii_lowercase();
            let looks_like_key = ["sk-", "xai-", "aiza"].iter().any(|p| lower.starts_with(p))
                || bare.contains("***");
            if looks_like_key { "[redacted]" } else { word }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `text` with every spelling of `secret` [`spelled_at`] a position replaced.
fn remove_secret(text: &str, secret: &[u8]) -> String {
    let bytes = text.as_bytes();
    let mut clean = String::with_capacity(text.len());
    let mut kept_from = 0;
    let mut at = 0;
    while at < bytes.len() {
        // A spelling starts with an ASCII byte (the secret's first character, `\` or `%`), so
        // `at` is on a character boundary whenever one matches.
        match spelled_at(bytes, at, secret) {
            Some(end) => {
                clean.push_str(&text[kept_from..at]);
                clean.push_str("[redacted]");
                kept_from = end;
                at = end;
            }
            None => at += 1,
        }
    }
    clean.push_str(&text[kept_from..]);
    clean
}

/// Where a spelling of `secret` that starts at `at` ends: each character in either case,
/// plain, backslash-escaped, `\uXXXX` or `%XX`.
fn spelled_at(text: &[u8], mut at: usize, secret: &[u8]) -> Option<usize> {
    let escaped = |digits: &[u8], wanted: u8| {
        std::str::from_utf8(digits)
            .ok()
            .and_then(|d| u32::from_str_radix(d, 16).ok())
            .and_then(|code| u8::try_from(code).ok())
            .is_some_and(|b| b.eq_ignore_ascii_case(&wanted))
    };
    for &wanted in secret {
        let rest = text.get(at..)?;
        at += match rest {
            [b, ..] if b.eq_ignore_ascii_case(&wanted) => 1,
            [b'\\', b, ..] if b.eq_ignore_ascii_case(&wanted) => 2,
            [b'\\', b'u' | b'U', digits @ ..]
                if digits.len() >= 4 && escaped(&digits[..4], wanted) =>
            {
                6
            }
            [b'%', digits @ ..] if digits.len() >= 2 && escaped(&digits[..2], wanted) => 3,
            _ => return None,
        };
    }
    Some(at)
}

/// The longest wait an upstream's `Retry-After` is believed for. Anything longer (`1e20`, a
/// date in the next century) is an upstream bug or a hostile answer; a day is far beyond any
/// retry we would make, and small enough for every `Instant` and header arithmetic after it.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// How long the upstream asked us to wait: `retry-after-ms` (OpenAI), else `Retry-After` as
/// seconds or an HTTP date, capped at [`MAX_RETRY_AFTER`]. Negative, infinite or NaN values
/// and unreadable dates count as not said.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(wait) = header("retry-after-ms")
        .and_then(|v| v.parse::<f64>().ok())
        .and_then(|ms| capped_seconds(ms / 1000.0))
    {
        return Some(wait);
    }
    let value = header("retry-after")?;
    if let Ok(seconds) = value.parse::<f64>() {
        return capped_seconds(seconds);
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    // Both dates are within chrono's range, so their difference cannot overflow; a date in
    // the past means "now".
    let wait = when
        .with_timezone(&chrono::Utc)
        .signed_duration_since(chrono::Utc::now());
    Some(wait.to_std().unwrap_or(Duration::ZERO).min(MAX_RETRY_AFTER))
}

/// `seconds` as a wait of at most [`MAX_RETRY_AFTER`]; `None` unless it is a finite,
/// non-negative number. Clamped before converting: `Duration::from_secs_f64` panics on
/// anything above `u64::MAX` seconds.
fn capped_seconds(seconds: f64) -> Option<Duration> {
    if !seconds.is_finite() || seconds < 0.0 {
        return None;
    }
    Duration::try_from_secs_f64(seconds.min(MAX_RETRY_AFTER.as_secs_f64())).ok()
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    #[test]
    fn each_format_s_message_is_found() {
        let openai = br#"{"error": {"message": "Invalid model", "type": "invalid_request_error"}}"#;
        let anthropic =
            br#"{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}"#;
        let gemini = br#"{"error": {"code": 400, "message": "API key not valid", "status": "INVALID_ARGUMENT"}}"#;
        let plain = b"<html>502 Bad Gateway</html>";
        let s = StatusCode::BAD_REQUEST;
        assert_eq!(upstream_message(s, openai), "Invalid model");
        assert_eq!(upstream_message(s, anthropic), "Overloaded");
        assert_eq!(upstream_message(s, gemini), "API key not valid");
        assert_eq!(upstream_message(s, plain), "<html>502 Bad Gateway</html>");
        assert_eq!(
            upstream_message(StatusCode::BAD_GATEWAY, b""),
            "Bad Gateway"
        );
        assert_eq!(
            scrub(&upstream_message(s, "x".repeat(2000).as_bytes()), &[])
                .chars()
                .count(),
            501
        );
    }

    #[test]
    fn statuses_are_classified() {
        let h = HeaderMap::new();
        let of = |code: u16| {
            classify(
                ProviderKind::OpenAi,
                StatusCode::from_u16(code).unwrap(),
                &h,
                b"{}",
                &[],
            )
        };
        assert!(matches!(
            of(401),
            ProviderError::AuthFailed { status: 401, .. }
        ));
        assert!(matches!(of(403), ProviderError::AuthFailed { .. }));
        assert!(matches!(of(429), ProviderError::RateLimited { .. }));
        assert!(matches!(
            of(400),
            ProviderError::InvalidRequest { status: 400, .. }
        ));
        assert!(matches!(of(404), ProviderError::InvalidRequest { .. }));
        assert!(matches!(
            of(500),
            ProviderError::Upstream {
                status: Some(500),
                ..
            }
        ));
        assert!(matches!(
            of(529),
            ProviderError::Upstream {
                status: Some(529),
                ..
            }
        ));
    }

    #[test]
    fn keys_and_masked_keys_are_redacted() {
        let secret = "sk-proj-abcdefghijklmnop";
        let message =
            format!("Incorrect API key provided: sk-proj-***mnop. You sent {secret} to us.");
        let clean = redact(&message, &[secret]);
        assert!(!clean.contains("mnop"), "{clean}");
        assert!(!clean.contains(secret), "{clean}");
        assert!(
            clean.starts_with("Incorrect API key provided: [redacted]"),
            "{clean}"
        );
    }

    #[test]
    fn keys_are_redacted_in_any_case_and_any_escaping() {
        let secret = "sk-Proj/abc_DEF-123";
        for spelling in [
            "SK-PROJ/ABC_DEF-123".to_owned(),
            "sk-proj/abc_def-123".to_owned(),
            r"sk-Proj\/abc_DEF-123".to_owned(),
            r"\u0073k-Proj\u002Fabc\u005FDEF-123".to_owned(),
            "sk-Proj%2fabc_DEF-123".to_owned(),
            r"S\u004B-pROJ\/ABC%5fdef-123".to_owned(),
        ] {
            let message = format!("bad key «{spelling}» given");
            let clean = redact(&message, &[secret]);
            assert_eq!(clean, "bad key «[redacted]» given", "{spelling}");
        }
        // Near misses stay: only the whole key is a secret.
        assert_eq!(redact("abc_DEF-12", &[secret]), "abc_DEF-12");
    }

    #[test]
    fn a_cut_message_never_keeps_half_a_key() {
        let secret = "key0123456789abcdefghij";
        let message = format!(
            "{}{}",
            "x".repeat(MAX_MESSAGE_CHARS - 5),
            secret.to_uppercase()
        );
        let clean = scrub(&message, &[secret]);
        assert!(!clean.to_lowercase().contains("key01"), "{clean}");
    }

    #[test]
    fn an_auth_failure_keeps_the_upstream_s_words_out_of_its_text() {
        let secret = "sk-live-0123456789";
        let body = br#"{"error": {"message": "Incorrect API key provided: SK-LIVE-0123456789"}}"#;
        let error = classify(
            ProviderKind::Anthropic,
            StatusCode::UNAUTHORIZED,
            &HeaderMap::new(),
            body,
            &[secret],
        );
        let ProviderError::AuthFailed { message, .. } = &error else {
            panic!("{error:?}");
        };
        assert_eq!(message, "Incorrect API key provided: [redacted]");
        assert_eq!(
            error.to_string(),
            "the upstream refused the configured credentials for anthropic (HTTP 401); \
             the server log has the upstream's message"
        );
    }

    #[test]
    fn retry_after_forms_are_read() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", HeaderValue::from_static("1500"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(1500)));
        let mut h = HeaderMap::new();
        h.insert(
            "retry-after",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(
            retry_after(&h),
            Some(Duration::ZERO),
            "a past date means now"
        );
        h.insert("retry-after", HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn absurd_retry_after_values_are_capped_or_ignored_never_a_panic() {
        let of = |name: &'static str, value: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_static(value));
            retry_after(&h)
        };
        for value in [
            "1e20",
            "1e308",
            "99999999999999999999999999",
            "18446744073709551616",
        ] {
            assert_eq!(of("retry-after", value), Some(MAX_RETRY_AFTER), "{value}");
            assert_eq!(
                of("retry-after-ms", value),
                Some(MAX_RETRY_AFTER),
                "{value}"
            );
        }
        for value in [
            "inf", "-inf", "infinity", "nan", "NaN", "-1", "-1e20", "1e999",
        ] {
            assert_eq!(of("retry-after", value), None, "{value}");
        }
        // An unreadable `retry-after-ms` falls back to `Retry-After`.
        let mut h = HeaderMap::new();
        h.insert("retry-after-ms", HeaderValue::from_static("nan"));
        h.insert("retry-after", HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        assert_eq!(
            of("retry-after", "Fri, 31 Dec 9999 23:59:59 GMT"),
            Some(MAX_RETRY_AFTER),
            "a date centuries ahead"
        );
        assert_eq!(
            of("retry-after", "Mon, 01 Jan 0001 00:00:00 GMT"),
            Some(Duration::ZERO),
            "a date centuries ago"
        );
        assert_eq!(of("retry-after", "0.25"), Some(Duration::from_millis(250)));
    }
}
