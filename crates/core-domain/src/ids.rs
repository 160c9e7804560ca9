use serde::{Deserialize, Serialize};

use crate::DomainError;

/// The shared surface of a validated string newtype: `as_str`, `Display`, and conversions from
/// and to `String` that go through its parser (so serde can only build valid values).
macro_rules! string_newtype {
    ($name:ident, $parser:ident) => {
        impl $name {
            /// The value as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = $crate::DomainError;
            fn try_from(raw: String) -> Result<Self, Self::Error> {
                Self::$parser(raw)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}
pub(crate) use string_newtype;

/// True for a slug: 1 to `max_len` ASCII letters, digits, `_` and `-`, safe in a URL path, a
/// file name, a metric label and a log line without escaping.
pub(crate) fn is_slug(raw: &str, max_len: usize) -> bool {
    !raw.is_empty()
        && raw.len() <= max_len
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The id of a specialist: a slug such as `financial_analyst` or a UUID.
///
/// 1 to 64 characters of ASCII letters, digits, `_` and `-`, so it is safe in a URL path, a file
/// and a log line without escaping.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SpecialistId(String);

impl SpecialistId {
    /// The longest id accepted.
    pub const MAX_LEN: usize = 64;

    /// Parses an id, refusing anything outside the allowed alphabet or length.
    pub fn parse(raw: impl Into<String>) -> Result<Self, DomainError> {
        let raw = raw.into();
        if is_slug(&raw, Self::MAX_LEN) {
            Ok(Self(raw))
        } else {
            Err(DomainError::InvalidSpecialistId)
        }
    }
}

impl SpecialistId {
    /// True when the two ids differ at most in letter case. Ids are ASCII, so ASCII case
    /// folding is full case folding here; the catalogue refuses such look-alikes (`DEMO` beside
    /// `demo`), which would otherwise be two specialists a person cannot tell apart.
    pub fn matches_ignoring_case(&self, other: &SpecialistId) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}

string_newtype!(SpecialistId, parse);

/// The id of one request: the gateway's own in `X-Request-Id`, error bodies and the usage log,
/// where it is the unique key that makes replays idempotent; also the type of a caller's own id
/// for its tracing (`X-Client-Request-Id`), kept beside ours.
///
/// 1 to 128 characters of ASCII letters, digits, `.`, `_`, `:` and `-`: a caller's id that
/// does not fit is dropped rather than let into headers, logs and the database.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RequestId(String);

impl RequestId {
    /// The longest id accepted.
    pub const MAX_LEN: usize = 128;

    /// Parses an id, refusing anything outside the allowed alphabet or length.
    pub fn parse(raw: impl Into<String>) -> Result<Self, DomainError> {
        let raw = raw.into();
        let valid = !raw.is_empty()
            && raw.len() <= Self::MAX_LEN
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
        if valid {
            Ok(Self(raw))
        } else {
            Err(DomainError::InvalidRequestId)
        }
    }
}

string_newtype!(RequestId, parse);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specialist_id_accepts_slugs_and_uuids() {
        for ok in [
            "demo",
            "financial_analyst",
            "grok-2",
            "6f1c3b1e-2a7d-4a53-9b7e-0d2f1c9e8a11",
        ] {
            assert!(SpecialistId::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn specialist_id_refuses_paths_spaces_and_overlong() {
        for bad in ["", "../etc", "a b", "é", "x/y", &"a".repeat(65)] {
            assert_eq!(
                SpecialistId::parse(bad),
                Err(DomainError::InvalidSpecialistId),
                "{bad}"
            );
        }
        assert!(SpecialistId::parse("a".repeat(64)).is_ok());
    }

    #[test]
    fn specialist_ids_that_differ_only_in_case_match() {
        let demo = SpecialistId::parse("demo").unwrap();
        assert!(demo.matches_ignoring_case(&SpecialistId::parse("DEMO").unwrap()));
        assert!(demo.matches_ignoring_case(&demo));
        assert!(!demo.matches_ignoring_case(&SpecialistId::parse("demo2").unwrap()));
    }

    #[test]
    fn request_id_refuses_header_injection_and_overlong() {
        assert!(RequestId::parse("req_01:abc.def-9").is_ok());
        for bad in ["", "a\r\nb", "with space", "<script>", &"r".repeat(129)] {
            assert_eq!(
                RequestId::parse(bad),
                Err(DomainError::InvalidRequestId),
                "{bad}"
            );
        }
    }

    #[test]
    fn ids_deserialise_through_their_parsers() {
        let bad: Result<SpecialistId, _> = serde_json::from_str("\"no spaces\"");
        assert!(bad.is_err());
        let good: SpecialistId = serde_json::from_str("\"general\"").unwrap();
        assert_eq!(good.as_str(), "general");
    }
}
