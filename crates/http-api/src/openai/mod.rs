//! The OpenAI-compatible front door: `/v1/chat/completions` and `/v1/models`, so any OpenAI
//! SDK (base URL `http://host:8000/v1`, API key = a commander key or token) can talk to a
//! specialist by using its id as the model.

pub(crate) mod completions;
pub(crate) mod models;
mod request;
pub(crate) mod wire;

pub(crate) use completions::completions;
pub(crate) use models::{get_model, list_models};

use core_domain::ErrorCode;

use crate::{ApiCode, ApiError};
use wire::{OpenAiError, OpenAiErrorBody};

/// The path prefix whose errors are written in OpenAI's shape.
pub(crate) const PREFIX: &str = "/v1/";

/// An error in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`, with the
/// status the rest of the API would use.
pub(crate) fn error_body(error: &ApiError) -> OpenAiError {
    let kind = match error.code() {
        // What OpenAI itself answers to a bad key (with code invalid_api_key), so SDK code
        // that inspects the type behaves as it would against OpenAI.
        ApiCode::Unauthorized => "invalid_request_error",
        ApiCode::Forbidden => "permission_error",
        ApiCode::RateLimited | ApiCode::Call(ErrorCode::UpstreamRateLimited) => "rate_limit_error",
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
