//! How the console writes numbers and times, the same on every page: money in dollars with six
//! decimals (a cheap call costs fractions of a cent), tokens as integers, durations in whole
//! milliseconds, instants in UTC, and email hashes by a prefix long enough to tell people
//! apart.

use chrono::{DateTime, Utc};

/// `$1.234567`.
pub(crate) fn usd(dollars: f64) -> String {
    format!("${dollars:.6}")
}

/// `1235 ms`.
pub(crate) fn millis(ms: f64) -> String {
    format!("{ms:.0} ms")
}

/// `2026-12-01 07:32:26 UTC`.
pub(crate) fn utc(instant: DateTime<Utc>) -> String {
    instant.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// The first characters of an email hash, then an ellipsis: enough to tell callers apart
/// on a page without spelling out a value that identifies a person across systems.
pub(crate) fn hash_prefix(hash: &str) -> String {
    let prefix: String = hash.chars().take(12).collect();
    format!("{prefix}…")
}

/// `text` percent-encoded for a URL's query value (unreserved characters and `/` kept).
pub(crate) fn query_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn numbers_are_written_the_same_everywhere() {
        assert_eq!(usd(1.2345674), "$1.234567");
        assert_eq!(usd(0.0), "$0.000000");
        assert_eq!(millis(1234.4), "1234 ms");
        let instant = Utc
            .with_ymd_and_hms(2026, 12, 1, 7, 32, 26)
            .single()
            .unwrap_or_else(|| panic!("a valid time"));
        assert_eq!(utc(instant), "2026-12-01 07:32:26 UTC");
        assert_eq!(hash_prefix(&"ab".repeat(32)), "abababababab…");
        assert_eq!(hash_prefix("anonymous"), "anonymous…");
    }

    #[test]
    fn a_query_value_keeps_only_unreserved_characters_and_slashes() {
        assert_eq!(
            query_value("/console/requests?door=a&b=c"),
            "/console/requests%3Fdoor%3Da%26b%3Dc"
        );
        assert_eq!(
            query_value("2026-12-01T08:00:00Z~r é"),
            "2026-12-01T08%3A00%3A00Z~r%20%C3%A9"
        );
    }
}
