//! Errors in OpenAI's shape, for the OpenAI-compatible door.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use core_domain::ErrorCode;

use super::wire::{OpenAiError, OpenAiErrorBody};
use crate::error::{ApiCode, ApiError};

/// An error in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.
pub(crate) fn error_body(error: &ApiError) -> OpenAiError {
    let kind = match error.code() {
        // What OpenAI itself answers to a bad key (with code invalid_api_key), so SDK code
        // that inspects the type behaves as it would against OpenAI.
        ApiCode::Unauthorized => "invalid_request_error",
        ApiCode::Forbidden => "permission_error",
        ApiCode::RateLimited | ApiCode::Call(ErrorCode::UpstreamRateLimited) => "rate_limit_error",
        // What OpenAI answers when an account's quota is spent; its SDKs raise RateLimitError
        // and, told `x-should-retry: false`, do not retry.
        ApiCode::Call(ErrorCode::BudgetExceeded) => "insufficient_quota",
        code if code.status().is_server_error() => "api_error",
        _ => "invalid_request_error",
    };
    let code = match error.code() {
        ApiCode::SpecialistNotFound => "model_not_found",
        ApiCode::Unauthorized => "invalid_api_key",
        ApiCode::RateLimited => "rate_limit_exceeded",
        other => other.as_str(),
    };
    let param = error.first_field().map(|field| match field {
        "specialist_id" => "model",
        other => other,
    });
    OpenAiError {
        error: OpenAiErrorBody {
            message: error.message_with_details(),
            kind,
            param: param.map(str::to_owned),
            code: Some(code.to_owned()),
        },
    }
}

/// The status OpenAI's door answers `error` with: the API's, except that a validation failure
/// is 400 as OpenAI answers it (its SDKs map 400 to `BadRequestError`; 422 would be an
/// `UnprocessableEntityError` no OpenAI client expects).
pub(crate) fn status(error: &ApiError) -> StatusCode {
    match error.code() {
        ApiCode::ValidationFailed => StatusCode::BAD_REQUEST,
        ApiCode::Call(ErrorCode::BudgetExceeded) => StatusCode::TOO_MANY_REQUESTS,
        _ => error.status(),
    }
}

/// The response for `error` in OpenAI's shape.
pub(crate) fn error_response(error: &ApiError) -> HttpResponse {
    error.respond_with_status(
        status(error),
        serde_json::to_value(error_body(error)).unwrap_or_default(),
    )
}
