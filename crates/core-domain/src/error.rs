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
    /// A provider name outside the closed set.
    #[error("unknown provider '{0}': expected one of openai, anthropic, google, mock")]
    UnknownProvider(String),
}

/// The closed set of machine-readable error codes.
///
/// They appear in API error bodies (`error.code`) and in the `error_code` column of usage rows,
/// so their spelling is a public contract: add codes, never rename them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Malformed JSON, wrong types or missing fields.
    InvalidRequest,
    /// The request parsed but broke a rule; details list every field at fault.
    ValidationFailed,
    /// Missing or invalid credentials.
    Unauthorized,
    /// Authenticated, but not allowed to do this.
    Forbidden,
    /// The request names a host this server does not answer for without credentials (a
    /// defence against DNS rebinding while auth is disabled).
    HostNotAllowed,
    /// A state-changing request sent by a web page of an origin that is not allowed.
    OriginNotAllowed,
    /// No route matches the path.
    NotFound,
    /// The route exists but not for this method.
    MethodNotAllowed,
    /// The named specialist does not exist.
    SpecialistNotFound,
    /// A specialist with this id exists already.
    SpecialistExists,
    /// The change was based on an older version (`If-Match`).
    VersionConflict,
    /// The catalogue file was edited on disk and no longer parses; changes wait until it is
    /// fixed, so the edit is not overwritten.
    CatalogueFileInvalid,
    /// The request body exceeds the configured limit.
    PayloadTooLarge,
    /// The body is not `application/json`.
    UnsupportedMediaType,
    /// The client took longer than allowed to send its request body.
    RequestTimeout,
    /// The caller exceeded its rate limit.
    RateLimited,
    /// The client address holds more open connections than allowed.
    TooManyConnections,
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
    /// The server is not ready to serve (e.g. the database is unreachable).
    ServiceUnavailable,
    /// A bug or an unexpected failure inside commander.
    #[serde(rename = "internal_error")]
    Internal,
}

impl ErrorCode {
    /// Every code, in declaration order: for tests and docs that must cover the whole set.
    pub const ALL: &'static [Self] = &[
        Self::InvalidRequest,
        Self::ValidationFailed,
        Self::Unauthorized,
        Self::Forbidden,
        Self::HostNotAllowed,
        Self::OriginNotAllowed,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::SpecialistNotFound,
        Self::SpecialistExists,
        Self::VersionConflict,
        Self::CatalogueFileInvalid,
        Self::PayloadTooLarge,
        Self::UnsupportedMediaType,
        Self::RequestTimeout,
        Self::RateLimited,
        Self::TooManyConnections,
        Self::ProviderNotConfigured,
        Self::UpstreamError,
        Self::UpstreamTimeout,
        Self::UpstreamRateLimited,
        Self::UpstreamAuthFailed,
        Self::UpstreamInvalidRequest,
        Self::ClientDisconnected,
        Self::ServerShutdown,
        Self::ServiceUnavailable,
        Self::Internal,
    ];

    /// The snake_case spelling used on the wire and in the database.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::ValidationFailed => "validation_failed",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::HostNotAllowed => "host_not_allowed",
            Self::OriginNotAllowed => "origin_not_allowed",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::SpecialistNotFound => "specialist_not_found",
            Self::SpecialistExists => "specialist_exists",
            Self::VersionConflict => "version_conflict",
            Self::CatalogueFileInvalid => "catalogue_file_invalid",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::RequestTimeout => "request_timeout",
            Self::RateLimited => "rate_limited",
            Self::TooManyConnections => "too_many_connections",
            Self::ProviderNotConfigured => "provider_not_configured",
            Self::UpstreamError => "upstream_error",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::UpstreamRateLimited => "upstream_rate_limited",
            Self::UpstreamAuthFailed => "upstream_auth_failed",
            Self::UpstreamInvalidRequest => "upstream_invalid_request",
            Self::ClientDisconnected => "client_disconnected",
            Self::ServerShutdown => "server_shutdown",
            Self::ServiceUnavailable => "service_unavailable",
            Self::Internal => "internal_error",
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
