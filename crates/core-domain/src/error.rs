use std::fmt;

use serde::{Deserialize, Serialize};

/// Errors raised while parsing domain values at the edge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// A specialist id that is empty, too long or uses characters outside `[A-Za-z0-9_-]`.
    #[error("invalid specialist id: must be 1-64 characters of letters, digits, '_' or '-'")]
    InvalidSpecialistId,
    /// A request id that is empty, too long or uses characters outside `[A-Za-z0-9._:-]`.
    #[error(
        "invalid request id: must be 1-128 characters of letters, digits, '.', '_', ':' or '-'"
    )]
    InvalidRequestId,
    /// An email hash that is not 64 lower-case hex digits.
    #[error("invalid email hash: must be 64 lower-case hexadecimal digits")]
    InvalidEmailHash,
    /// A budget id that is empty, too long or uses characters outside `[A-Za-z0-9_-]`.
    #[error("invalid budget id: must be 1-64 characters of letters, digits, '_' or '-'")]
    InvalidBudgetId,
    /// A provider name outside the closed set.
    #[error("unknown provider '{0}': expected one of openai, anthropic, google, mock")]
    UnknownProvider(String),
}

/// How a chat call failed: the closed set of codes a usage row's `error_code` carries.
///
/// The API reports them too (`error.code`), beside refusals only the HTTP layer makes (no route,
/// bad credentials, a rate limit...), which it keeps in a code type of its own: none of those
/// ever ends a call that has a usage row. Their spelling is a public contract, in API bodies
/// and stored rows alike: add codes, never rename them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The specialist's provider has no credentials configured.
    ProviderNotConfigured,
    /// The upstream provider failed or answered with something we could not use.
    UpstreamError,
    /// The upstream provider did not answer in time.
    UpstreamTimeout,
    /// The upstream provider kept refusing us with 429 after our retries.
    UpstreamRateLimited,
    /// The upstream provider rejected our credentials.
    UpstreamAuthFailed,
    /// The upstream provider rejected the request as invalid.
    UpstreamInvalidRequest,
    /// The caller went away before the answer was complete.
    ClientDisconnected,
    /// The server shut down, and its grace period ran out before the answer was complete.
    ServerShutdown,
    /// A bug or an unexpected failure inside commander.
    #[serde(rename = "internal_error")]
    Internal,
    /// The upstream answered 200 with a body we could not read as an answer (malformed, or no
    /// choice at all): the upstream did the work, so the row bills the prompt estimate.
    UpstreamBadResponse,
    /// The process ended (killed, crashed, lost power) while the call was in flight; found by
    /// the journal's recovery at the next start and billed for the prompt estimate plus what
    /// had been delivered.
    Interrupted,
    /// Every key of the upstream endpoint was resting (after 429s or refused credentials) or
    /// its circuit breaker was open: nothing was sent.
    UpstreamUnavailable,
    /// A budget that covers the call had too little left for its worst-case cost: nothing was
    /// sent, and the row costs nothing.
    BudgetExceeded,
    /// A budget covers the call, but the store that counts budgets (Redis) could not be asked,
    /// and `budgets.on_store_error = "deny"`: nothing was sent, and the row costs nothing.
    BudgetUnavailable,
}

impl ErrorCode {
    /// Every code, in declaration order: for tests and docs that must cover the whole set.
    pub const ALL: &'static [Self] = &[
        Self::ProviderNotConfigured,
        Self::UpstreamError,
        Self::UpstreamTimeout,
        Self::UpstreamRateLimited,
        Self::UpstreamAuthFailed,
        Self::UpstreamInvalidRequest,
        Self::ClientDisconnected,
        Self::ServerShutdown,
        Self::Internal,
        Self::UpstreamBadResponse,
        Self::Interrupted,
        Self::UpstreamUnavailable,
        Self::BudgetExceeded,
        Self::BudgetUnavailable,
    ];

    /// The snake_case spelling used on the wire and in the database.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ProviderNotConfigured => "provider_not_configured",
            Self::UpstreamError => "upstream_error",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::UpstreamRateLimited => "upstream_rate_limited",
            Self::UpstreamAuthFailed => "upstream_auth_failed",
            Self::UpstreamInvalidRequest => "upstream_invalid_request",
            Self::ClientDisconnected => "client_disconnected",
            Self::ServerShutdown => "server_shutdown",
            Self::Internal => "internal_error",
            Self::UpstreamBadResponse => "upstream_bad_response",
            Self::Interrupted => "interrupted",
            Self::UpstreamUnavailable => "upstream_unavailable",
            Self::BudgetExceeded => "budget_exceeded",
            Self::BudgetUnavailable => "budget_unavailable",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_spelling_matches_as_str_for_every_code() {
        for &code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            let back: ErrorCode = serde_json::from_str(&json).unwrap();
            assert_eq!(back, code);
            assert!(
                code.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{code:?} is spelled {:?}, not snake_case",
                code.as_str()
            );
        }
    }

    #[test]
    fn all_lists_every_code_once_in_declaration_order() {
        for (position, &code) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(code as usize, position, "{code:?} is out of place in ALL");
        }
        // serde's derive knows every variant independently of ALL: a string it does not know
        // makes it list them all, so a variant missing from ALL shows here.
        let unknown = serde_json::from_str::<ErrorCode>("\"no_such_code\"")
            .unwrap_err()
            .to_string();
        let known_to_serde: Vec<&str> = unknown.split('`').skip(3).step_by(2).collect();
        let listed: Vec<&str> = ErrorCode::ALL.iter().map(|code| code.as_str()).collect();
        assert_eq!(known_to_serde, listed, "serde said: {unknown}");
    }
}
