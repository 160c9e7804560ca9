//! Errors in Anthropic's shape, for the Messages door.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use core_domain::ErrorCode;

use super::wire::{AnthropicError, AnthropicErrorBody};
use crate::error::{ApiCode, ApiError};

/// Anthropic's error `type` for `error`: the words its SDKs and Claude Code read.
fn kind(error: &ApiError) -> &'static str {
    match error.code() {
        ApiCode::Unauthorized => "authentication_error",
        ApiCode::Forbidden | ApiCode::OriginNotAllowed => "permission_error",
        ApiCode::NotFound | ApiCode::SpecialistNotFound => "not_found_error",
        ApiCode::PayloadTooLarge => "request_too_large",
        ApiCode::RateLimited
        | ApiCode::TooManyConnections
        | ApiCode::Call(ErrorCode::UpstreamRateLimited) => "rate_limit_error",
        // Anthropic's word for an account that cannot pay for the call.
        ApiCode::Call(ErrorCode::BudgetExceeded) => "billing_error",
        // Anthropic's word (with its 529) for "too busy now, retry later".
        ApiCode::ServiceUnavailable
        | ApiCode::Call(ErrorCode::UpstreamUnavailable | ErrorCode::ServerShutdown) => {
            "overloaded_error"
        }
        code if code.status().is_server_error() => "api_error",
        _ => "invalid_request_error",
    }
}

/// An error in Anthropic's shape: `{"type": "error", "error": {"type", "message"}}`. The
/// message names commander's own code and every field at fault, as the shape has no room for
/// them otherwise.
pub(crate) fn error_body(error: &ApiError) -> AnthropicError {
    AnthropicError {
        kind: "error",
        error: AnthropicErrorBody {
            kind: kind(error),
            message: format!(
                "{}: {}",
                error.code().as_str(),
                error.message_with_details()
            ),
        },
    }
}

/// The status the Messages door answers `error` with: the API's, except that a validation
/// failure is 400 as Anthropic answers it (its SDKs map 400 to `BadRequestError`).
pub(crate) fn status(error: &ApiError) -> StatusCode {
    match error.code() {
        ApiCode::ValidationFailed => StatusCode::BAD_REQUEST,
        _ => error.status(),
    }
}

/// The response for `error` in Anthropic's shape.
pub(crate) fn error_response(error: &ApiError) -> HttpResponse {
    error.respond_with_status(
        status(error),
        serde_json::to_value(error_body(error)).unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_anthropic_s_type_and_a_validation_failure_is_400() {
        let cases = [
            (ApiCode::ValidationFailed, 400, "invalid_request_error"),
            (ApiCode::InvalidRequest, 400, "invalid_request_error"),
            (ApiCode::UnsupportedParameter, 400, "invalid_request_error"),
            (ApiCode::Unauthorized, 401, "authentication_error"),
            (ApiCode::Forbidden, 403, "permission_error"),
            (ApiCode::SpecialistNotFound, 404, "not_found_error"),
            (ApiCode::PayloadTooLarge, 413, "request_too_large"),
            (ApiCode::RateLimited, 429, "rate_limit_error"),
            (
                ApiCode::Call(ErrorCode::UpstreamRateLimited),
                429,
                "rate_limit_error",
            ),
            (
                ApiCode::Call(ErrorCode::BudgetExceeded),
                402,
                "billing_error",
            ),
            (
                ApiCode::Call(ErrorCode::UpstreamUnavailable),
                503,
                "overloaded_error",
            ),
            (ApiCode::Call(ErrorCode::UpstreamError), 502, "api_error"),
            (ApiCode::Call(ErrorCode::UpstreamTimeout), 504, "api_error"),
            (
                ApiCode::Call(ErrorCode::UpstreamInvalidRequest),
                400,
                "invalid_request_error",
            ),
        ];
        for (code, expected_status, expected_kind) in cases {
            let error = ApiError::new(code, "x");
            assert_eq!(status(&error).as_u16(), expected_status, "{code:?}");
            let body = serde_json::to_value(error_body(&error)).unwrap();
            assert_eq!(body["type"], "error");
            assert_eq!(body["error"]["type"], expected_kind, "{code:?}");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .starts_with(code.as_str())
            );
        }
    }
}
