//! Turning an upstream's error response into a classified [`ProviderError`] that keeps the
//! upstream's own words but never a credential.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::ProviderError;

/// The longest upstream message kept; the rest is cut (bodies can be whole HTML pages).
const MAX_MESSAGE_CHARS: usize = 500;

/// Classifies a non-success response: 401/403 auth, 429 rate limited, other 4xx invalid
/// request, everything else an upstream failure.
pub(crate) fn classify(
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
        redact(
            &format!(
                "upstream redirected to {location}; redirects are not followed, \
                 so set the base URL to the final address"
            ),
            secrets,
        )
    } else {
        redact(&upstream_message(status, body), secrets)
    };
    let code = status.as_u16();
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ProviderError::AuthFailed {
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
/// `error.message` (under `type: error`), a bare `message`, or the body text itself.
pub(crate) fn upstream_message(status: StatusCode, body: &[u8]) -> String {
    let from_json = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
        [&v["error"]["message"], &v["message"], &v["error"]]
            .into_iter()
            .find_map(|m| m.as_str().map(str::to_owned))
    });
    let text = from_json.unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned());
    let text = if text.is_empty() {
        status.canonical_reason().unwrap_or("no message").to_owned()
    } else {
        text
    };
    truncate(&text)
}

fn truncate(text: &str) -> String {
    match text.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// `message` with every secret removed, and with any word that looks like a key or a masked
/// key (`sk-...`, `sk-ab***xyz`) replaced: some upstreams quote part of a rejected key back.
pub(crate) fn redact(message: &str, secrets: &[&str]) -> String {
    let mut clean = message.to_owned();
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        clean = clean.replace(secret, "[redacted]");
    }
    clean
        .split(' ')
        .map(|word| {
            let bare = word.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '*');
            let looks_like_key = bare.starts_with("sk-")
                || bare.starts_with("xai-")
                || bare.starts_with("AIza")
                || bare.contains("***");
            if looks_like_key { "[redacted]" } else { word }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// How long the upstream asked us to wait: `retry-after-ms` (OpenAI), else `Retry-After` as
/// seconds or an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = header("retry-after-ms").and_then(|v| v.parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let value = header("retry-after")?;
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
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
            upstream_message(s, "x".repeat(2000).as_bytes())
                .chars()
                .count(),
            501
        );
    }

    #[test]
    fn statuses_are_classified() {
        let h = HeaderMap::new();
        let of = |code: u16| classify(StatusCode::from_u16(code).unwrap(), &h, b"{}", &[]);
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
}
