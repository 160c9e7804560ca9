//! The codes the API answers with, and the HTTP status of each.

use std::fmt;

use actix_web::http::StatusCode;
use core_domain::ErrorCode;
use serde::{Serialize, Serializer};

/// The machine-readable code of an API error (`error.code`): how a chat call failed (a
/// [`ErrorCode`], which its usage row stores too), or a refusal the HTTP layer makes around or
/// before a call, which no usage row ever carries.
///
/// The spellings (snake_case, [`as_str`](Self::as_str)) are a public contract: add codes, never
/// rename them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiCode {
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
    /// The server is not ready to serve (e.g. the database is unreachable).
    ServiceUnavailable,
    /// The request asks for something the specialist's provider cannot honour (a tool, an
    /// image, a sampling parameter...); `param` names it. Refused, never silently dropped.
    UnsupportedParameter,
    /// The named budget does not exist (or does not cover the caller).
    BudgetNotFound,
    /// A budget with this id exists already.
    BudgetExists,
    /// The budget is defined in the config file: it changes there, not over the API.
    BudgetReadOnly,
    /// How a chat call failed, as its usage row records it.
    Call(ErrorCode),
}

impl ApiCode {
    /// The codes of the HTTP layer's own refusals, in declaration order; [`all`](Self::all)
    /// adds every call code.
    pub const REFUSALS: &'static [Self] = &[
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
        Self::ServiceUnavailable,
        Self::UnsupportedParameter,
        Self::BudgetNotFound,
        Self::BudgetExists,
        Self::BudgetReadOnly,
    ];

    /// Every code the API can answer with: for tests and docs that must cover the whole set.
    pub fn all() -> impl Iterator<Item = Self> {
        Self::REFUSALS
            .iter()
            .copied()
            .chain(ErrorCode::ALL.iter().copied().map(Self::Call))
    }

    /// The snake_case spelling used on the wire.
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
            Self::ServiceUnavailable => "service_unavailable",
            Self::UnsupportedParameter => "unsupported_parameter",
            Self::BudgetNotFound => "budget_not_found",
            Self::BudgetExists => "budget_exists",
            Self::BudgetReadOnly => "budget_read_only",
            Self::Call(code) => code.as_str(),
        }
    }

    /// True when a client retrying the same request cannot succeed: the upstream failed after
    /// commander's own retries were spent (or refused our key), or the request itself is at
    /// fault. Such responses say `x-should-retry: false`.
    pub fn retry_cannot_help(self) -> bool {
        matches!(
            self,
            Self::InvalidRequest
                | Self::ValidationFailed
                | Self::UnsupportedParameter
                | Self::Call(
                    ErrorCode::BudgetExceeded
                        | ErrorCode::UpstreamError
                        | ErrorCode::UpstreamTimeout
                        | ErrorCode::UpstreamRateLimited
                        | ErrorCode::UpstreamAuthFailed
                        | ErrorCode::UpstreamInvalidRequest
                )
        )
    }

    /// The HTTP status the API answers this code with.
    pub fn status(self) -> StatusCode {
        match self {
            Self::InvalidRequest
            | Self::UnsupportedParameter
            | Self::Call(ErrorCode::UpstreamInvalidRequest) => StatusCode::BAD_REQUEST,
            Self::ValidationFailed => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden | Self::OriginNotAllowed => StatusCode::FORBIDDEN,
            Self::HostNotAllowed => StatusCode::MISDIRECTED_REQUEST,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::NotFound | Self::SpecialistNotFound | Self::BudgetNotFound => {
                StatusCode::NOT_FOUND
            }
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::SpecialistExists
            | Self::VersionConflict
            | Self::CatalogueFileInvalid
            | Self::BudgetExists
            | Self::BudgetReadOnly => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RateLimited
            | Self::TooManyConnections
            | Self::Call(ErrorCode::UpstreamRateLimited) => StatusCode::TOO_MANY_REQUESTS,
            Self::ServiceUnavailable
            | Self::Call(
                ErrorCode::ProviderNotConfigured
                | ErrorCode::ServerShutdown
                | ErrorCode::UpstreamUnavailable
                | ErrorCode::BudgetUnavailable,
            ) => StatusCode::SERVICE_UNAVAILABLE,
            // What the error means: the money is spent (the OpenAI door answers 429
            // `insufficient_quota` instead, as OpenAI does).
            Self::Call(ErrorCode::BudgetExceeded) => StatusCode::PAYMENT_REQUIRED,
            Self::Call(
                ErrorCode::UpstreamError
                | ErrorCode::UpstreamAuthFailed
                | ErrorCode::UpstreamBadResponse,
            ) => StatusCode::BAD_GATEWAY,
            Self::Call(ErrorCode::UpstreamTimeout) => StatusCode::GATEWAY_TIMEOUT,
            // Never sent (the client is gone); nginx's code for it, should a proxy log it.
            Self::Call(ErrorCode::ClientDisconnected) => {
                StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST)
            }
            // Only ever on a row written by recovery, never answered: the process that
            // would have answered is gone.
            Self::Call(ErrorCode::Internal | ErrorCode::Interrupted) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}

impl From<ErrorCode> for ApiCode {
    fn from(code: ErrorCode) -> Self {
        Self::Call(code)
    }
}

impl fmt::Display for ApiCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ApiCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// The position of `code` in [`ApiCode::REFUSALS`]. The match is exhaustive, so a new
    /// variant does not compile until it is given a position here: the next one, at which it
    /// must then be listed in `REFUSALS`.
    fn declared_position(code: ApiCode) -> Option<usize> {
        let position = match code {
            ApiCode::InvalidRequest => 0,
            ApiCode::ValidationFailed => 1,
            ApiCode::Unauthorized => 2,
            ApiCode::Forbidden => 3,
            ApiCode::HostNotAllowed => 4,
            ApiCode::OriginNotAllowed => 5,
            ApiCode::NotFound => 6,
            ApiCode::MethodNotAllowed => 7,
            ApiCode::SpecialistNotFound => 8,
            ApiCode::SpecialistExists => 9,
            ApiCode::VersionConflict => 10,
            ApiCode::CatalogueFileInvalid => 11,
            ApiCode::PayloadTooLarge => 12,
            ApiCode::UnsupportedMediaType => 13,
            ApiCode::RequestTimeout => 14,
            ApiCode::RateLimited => 15,
            ApiCode::TooManyConnections => 16,
            ApiCode::ServiceUnavailable => 17,
            ApiCode::UnsupportedParameter => 18,
            ApiCode::BudgetNotFound => 19,
            ApiCode::BudgetExists => 20,
            ApiCode::BudgetReadOnly => 21,
            ApiCode::Call(_) => return None,
        };
        Some(position)
    }

    #[test]
    fn refusals_lists_every_refusal_once_in_declaration_order() {
        for (position, &code) in ApiCode::REFUSALS.iter().enumerate() {
            assert_eq!(
                declared_position(code),
                Some(position),
                "{code:?} is out of place in REFUSALS"
            );
        }
        let positions: HashSet<Option<usize>> = ApiCode::REFUSALS
            .iter()
            .map(|&code| declared_position(code))
            .collect();
        assert_eq!(
            positions.len(),
            ApiCode::REFUSALS.len(),
            "a refusal is listed twice"
        );
    }

    #[test]
    fn every_code_is_spelled_once_in_snake_case_and_serialised_so() {
        let mut spellings = HashSet::new();
        let mut count = 0;
        for code in ApiCode::all() {
            let spelling = code.as_str();
            assert!(
                spelling
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{code:?} is spelled {spelling:?}, not snake_case"
            );
            assert!(spellings.insert(spelling), "{spelling} names two codes");
            assert_eq!(
                serde_json::to_string(&code).unwrap(),
                format!("\"{spelling}\"")
            );
            assert_eq!(code.to_string(), spelling);
            count += 1;
        }
        assert_eq!(
            count,
            ApiCode::REFUSALS.len() + ErrorCode::ALL.len(),
            "all() covers every refusal and every call code"
        );
    }

    #[test]
    fn a_call_code_is_spelled_as_its_usage_row_stores_it() {
        for &code in ErrorCode::ALL {
            assert_eq!(ApiCode::from(code).as_str(), code.as_str());
            assert_eq!(
                serde_json::to_value(ApiCode::from(code)).unwrap(),
                serde_json::to_value(code).unwrap(),
                "the API body and the usage row spell {code:?} alike"
            );
        }
    }

    #[test]
    fn every_code_answers_with_an_error_status() {
        for code in ApiCode::all() {
            let status = code.status();
            assert!(
                status.is_client_error() || status.is_server_error(),
                "{code:?} answers {status}"
            );
        }
    }
}
