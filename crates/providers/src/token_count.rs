//! Reading the token counts an upstream reports, which are outside input like the rest of its
//! answer.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// A token count as an upstream reported it (absent is `None` around it): a whole number that
/// fits a `u32`, or anything else (negative, fractional, `5e9`, a string), which is unusable.
/// An unusable count makes the usage estimated (and flagged) rather than failing an answer that
/// was otherwise fine, or being saturated into a bill for four billion tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reported {
    Count(u32),
    Unusable,
}

impl Reported {
    pub(crate) fn count(self) -> Option<u32> {
        match self {
            Self::Count(n) => Some(n),
            Self::Unusable => None,
        }
    }
}

impl<'de> Deserialize<'de> for Reported {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match Value::deserialize(deserializer)? {
            Value::Number(n) => n
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map_or(Self::Unusable, Self::Count),
            _ => Self::Unusable,
        })
    }
}

/// `reported`'s count, `None` when absent or unusable.
pub(crate) fn count(reported: Option<Reported>) -> Option<u32> {
    reported.and_then(Reported::count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Usage {
        tokens: Option<Reported>,
    }

    #[test]
    fn only_whole_counts_that_fit_are_believed() {
        let of = |json: &str| {
            serde_json::from_str::<Usage>(&format!(r#"{{"tokens": {json}}}"#))
                .unwrap()
                .tokens
        };
        assert_eq!(of("12"), Some(Reported::Count(12)));
        assert_eq!(of("4294967295"), Some(Reported::Count(u32::MAX)));
        assert_eq!(of("null"), None);
        for unusable in [
            "4294967296",
            "18446744073709551616",
            "1e30",
            "-1",
            "12.5",
            "\"12\"",
            "[1]",
        ] {
            assert_eq!(of(unusable), Some(Reported::Unusable), "{unusable}");
        }
        assert_eq!(serde_json::from_str::<Usage>("{}").unwrap().tokens, None);
    }
}
