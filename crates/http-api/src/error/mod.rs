//! The API's error: its code, message and status, and the native error JSON.

mod code;

use std::fmt;
use std::time::Duration;

use actix_web::error::{JsonPayloadError, PayloadError};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use core_domain::{ErrorCode, RequestId, ValidationErrors};
use providers::ProviderError;

pub use code::ApiCode;

use crate::views::{ErrorBody, ErrorEnvelope};

/// The header the OpenAI and Anthropic SDKs read before retrying on their own.
const SHOULD_RETRY: &str = "x-should-retry";

/// An error as the API reports it: a code, a message a person can act on, and for validation
/// failures every field at fault.
///
/// This is the one place that knows HTTP status codes and builds the native error JSON (the
/// OpenAI-compatible routes' shape is `openai::error_response`'s; `ErrorShape` picks).
/// Responses get the request id stamped in by the request-scope middleware.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    code: ApiCode,
    message: String,
    details: Option<ValidationErrors>,
    retry_after: Option<Duration>,
    headers: Vec<(&'static str, String)>,
    /// What went wrong inside, for the log only: clients must not learn hosts, ports, database
    /// names or a panic's text.
    internal_detail: Option<String>,
}

impl ApiError {
    /// An error with this code and message.
    pub fn new(code: impl Into<ApiCode>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            details: None,
            retry_after: None,
            headers: Vec::new(),
            internal_detail: None,
        }
    }

    /// A 500 `internal_error` telling the client only that the request id identifies it in the
    /// log; `detail` goes to the log.
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(
            ErrorCode::Internal,
            "internal error; the request id identifies it in the server logs",
        )
        .with_internal_detail(detail)
    }

    /// The same error with `detail` for the log (never sent to the client).
    pub fn with_internal_detail(mut self, detail: impl Into<String>) -> Self {
        self.internal_detail = Some(detail.into());
        self
    }

    /// What the log gets beside the message, if anything.
    pub fn internal_detail(&self) -> Option<&str> {
        self.internal_detail.as_deref()
    }

    /// A 422 listing every field at fault.
    pub fn validation(details: ValidationErrors) -> Self {
        Self {
            details: Some(details),
            ..Self::new(
                ApiCode::ValidationFailed,
                "the request is invalid; see details for every field at fault",
            )
        }
    }

    /// A 400 `invalid_request` about the one parameter `field`: a request that is well formed
    /// but cannot go where it asks (an embedding specialist at a chat door).
    pub(crate) fn invalid_parameter(field: &str, message: impl Into<String>) -> Self {
        let mut details = ValidationErrors::new();
        details.push(field, message);
        Self {
            details: Some(details),
            ..Self::new(
                ApiCode::InvalidRequest,
                "the request cannot go to this specialist",
            )
        }
    }

    /// A 400 `unsupported_parameter` listing every parameter that is valid but cannot be
    /// honoured (an audio part, log probabilities on a stream).
    pub(crate) fn unsupported(details: ValidationErrors) -> Self {
        Self {
            details: Some(details),
            ..Self::new(
                ApiCode::UnsupportedParameter,
                "the request asks for something commander cannot honour; see details",
            )
        }
    }

    /// Every field at fault, for a validation failure or a refusal.
    #[cfg(test)]
    pub(crate) fn details(&self) -> Option<&ValidationErrors> {
        self.details.as_ref()
    }

    /// The same error, telling the client how long to wait (`Retry-After`).
    pub fn with_retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }

    /// The same error with a response header (`WWW-Authenticate`, ...).
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// The machine-readable code.
    pub fn code(&self) -> ApiCode {
        self.code
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The first field at fault, for formats with room for one (`param`).
    pub fn first_field(&self) -> Option<&str> {
        self.details
            .as_ref()
            .and_then(|d| d.errors().first())
            .map(|e| e.field.as_str())
    }

    /// The message followed by every field error, for formats without a `details` list.
    pub fn message_with_details(&self) -> String {
        match &self.details {
            Some(details) if !details.is_empty() => format!("{}: {details}", self.message),
            _ => self.message.clone(),
        }
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// The response for this error, carrying `request_id` when known.
    pub fn to_response(&self, request_id: Option<&RequestId>) -> HttpResponse {
        self.respond(
            serde_json::to_value(ErrorEnvelope {
                error: ErrorBody {
                    code: self.code,
                    message: &self.message,
                    details: self.details.as_ref().map(ValidationErrors::errors),
                    request_id: request_id.map(RequestId::as_str),
                },
            })
            .unwrap_or_default(),
        )
    }

    /// The response for this error with `body`, in whichever shape: its status, `Retry-After`
    /// and the headers it carries (`WWW-Authenticate`, ...).
    pub(crate) fn respond(&self, body: serde_json::Value) -> HttpResponse {
        self.respond_with_status(self.status(), body)
    }

    /// [`respond`](Self::respond) with a door's own status for this error (OpenAI's door
    /// answers a validation failure 400, as OpenAI does). Errors a retry cannot help carry
    /// `x-should-retry: false`, which OpenAI's and Anthropic's SDKs obey instead of retrying
    /// on their own after commander has spent its retries.
    pub(crate) fn respond_with_status(
        &self,
        status: StatusCode,
        body: serde_json::Value,
    ) -> HttpResponse {
        let mut response = HttpResponse::build(status);
        if self.code.retry_cannot_help() {
            response.insert_header((SHOULD_RETRY, HeaderValue::from_static("false")));
        }
        if let Some(wait) = self.retry_after {
            // Retry-After is whole seconds; round up so a client never retries too early.
            let seconds = wait
                .as_secs()
                .saturating_add(u64::from(wait.subsec_nanos() > 0));
            response.insert_header((header::RETRY_AFTER, HeaderValue::from(seconds)));
        }
        for (name, value) in &self.headers {
            if let Ok(value) = HeaderValue::from_str(value) {
                response.insert_header((*name, value));
            }
        }
        response.json(body)
    }

    /// The error for an actix-web failure that did not come from us (an extractor we did not
    /// configure, a routing error), keeping only what is safe to show.
    pub(crate) fn from_foreign(error: &actix_web::Error) -> Self {
        let status = error.as_response_error().status_code();
        let code = match status {
            StatusCode::NOT_FOUND => ApiCode::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => ApiCode::MethodNotAllowed,
            StatusCode::PAYLOAD_TOO_LARGE => ApiCode::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiCode::UnsupportedMediaType,
            s if s.is_client_error() => ApiCode::InvalidRequest,
            _ => ApiCode::Call(ErrorCode::Internal),
        };
        if status.is_server_error() {
            Self::internal(error.to_string())
        } else {
            Self::new(code, error.to_string())
        }
    }
}

/// The shape of an error body: each door of the route table declares the one its callers
/// expect, and the request-scope middleware renders every error of that door in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorShape {
    /// `{"error": {"code", "message", "request_id", "details"?}}`.
    Native,
    /// OpenAI's `{"error": {"message", "type", "param", "code"}}`, which its SDKs parse.
    OpenAi,
    /// Anthropic's `{"type": "error", "error": {"type", "message"}}`, which its SDKs parse.
    Anthropic,
}

impl ErrorShape {
    /// The response for `error` in this shape; the native one carries `request_id` (both get
    /// it in `X-Request-Id`).
    pub(crate) fn render(self, error: &ApiError, request_id: &RequestId) -> HttpResponse {
        match self {
            Self::Native => error.to_response(Some(request_id)),
            Self::OpenAi => crate::openai::error_response(error),
            Self::Anthropic => crate::anthropic::error_response(error),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        self.to_response(None)
    }
}

impl From<ValidationErrors> for ApiError {
    fn from(errors: ValidationErrors) -> Self {
        Self::validation(errors)
    }
}

impl From<specialists::CatalogueError> for ApiError {
    fn from(error: specialists::CatalogueError) -> Self {
        use specialists::CatalogueError as E;
        match error {
            E::Invalid(details) => Self::validation(details),
            E::NotFound(_) => Self::new(ApiCode::SpecialistNotFound, error.to_string()),
            E::AlreadyExists(_) => Self::new(ApiCode::SpecialistExists, error.to_string()),
            E::VersionConflict { .. } => Self::new(ApiCode::VersionConflict, error.to_string()),
            E::EditedFileInvalid { .. } => {
                Self::new(ApiCode::CatalogueFileInvalid, error.to_string())
            }
            E::Store(_) => Self::new(
                ApiCode::ServiceUnavailable,
                "the specialist catalogue's database is unavailable; the request id identifies the failure in the server logs",
            )
            .with_internal_detail(error.to_string()),
            E::Io { .. } | E::Malformed(_) => {
                tracing::error!(%error, "specialist catalogue could not be saved");
                Self::new(
                    ErrorCode::Internal,
                    "the specialist catalogue could not be saved; see the server log",
                )
            }
        }
    }
}

/// The one mapping of usage-database failures: the client learns that the database is
/// unavailable (or that something broke) and the request id; the store's own text, which names
/// hosts, ports and databases, goes only to the log.
impl From<usage_store::StoreError> for ApiError {
    fn from(error: usage_store::StoreError) -> Self {
        use usage_store::StoreError as E;
        let detail = error.to_string();
        match error {
            E::Connect(_) | E::Query(_) | E::DatabaseReplaced(_) => Self::new(
                ApiCode::ServiceUnavailable,
                "the usage database is unavailable; the request id identifies the failure in the server logs",
            )
            .with_internal_detail(detail),
            E::Migration(_) => Self::new(
                ApiCode::ServiceUnavailable,
                "the usage database schema is not up to date; the request id identifies the failure in the server logs",
            )
            .with_internal_detail(detail),
            // The budgets' table's refusals: their text names only the budget.
            E::NotFound(_) => Self::new(ApiCode::BudgetNotFound, detail),
            E::Exists(_) => Self::new(ApiCode::BudgetExists, detail),
            E::VersionMoved { .. } => Self::new(ApiCode::VersionConflict, detail),
            E::UnsupportedUrl(_)
            | E::Io(_)
            | E::Corrupt(_)
            | E::DeadLetter { .. }
            | E::JournalInUse(_) => {
                Self::internal(detail)
            }
        }
    }
}

impl From<ProviderError> for ApiError {
    fn from(error: ProviderError) -> Self {
        let retry_after = match &error {
            ProviderError::RateLimited { retry_after, .. } => *retry_after,
            ProviderError::Unavailable { retry_after, .. } => Some(*retry_after),
            _ => None,
        };
        Self {
            retry_after,
            ..Self::new(error.code(), error.to_string())
        }
    }
}

impl From<providers::Unsupported> for ApiError {
    fn from(refusal: providers::Unsupported) -> Self {
        let mut details = ValidationErrors::new();
        details.push(refusal.param, refusal.to_string());
        Self {
            details: Some(details),
            ..Self::new(ApiCode::UnsupportedParameter, refusal.to_string())
        }
    }
}

impl From<JsonPayloadError> for ApiError {
    fn from(error: JsonPayloadError) -> Self {
        match error {
            JsonPayloadError::OverflowKnownLength { length, limit } => Self::new(
                ApiCode::PayloadTooLarge,
                format!("the request body is {length} bytes; the limit is {limit} bytes"),
            ),
            JsonPayloadError::Overflow { limit } => Self::new(
                ApiCode::PayloadTooLarge,
                format!("the request body exceeds the limit of {limit} bytes"),
            ),
            JsonPayloadError::ContentType => Self::new(
                ApiCode::UnsupportedMediaType,
                "the request body must be JSON with Content-Type: application/json",
            ),
            JsonPayloadError::Deserialize(e) => {
                let what = if e.is_data() {
                    "the request body has a missing field or a wrong type"
                } else {
                    "the request body is not valid JSON"
                };
                Self::new(ApiCode::InvalidRequest, format!("{what}: {e}"))
            }
            JsonPayloadError::Payload(e) => Self::from(e),
            other => Self::new(ApiCode::InvalidRequest, other.to_string()),
        }
    }
}

impl From<PayloadError> for ApiError {
    fn from(error: PayloadError) -> Self {
        match error {
            PayloadError::Overflow => Self::new(
                ApiCode::PayloadTooLarge,
                "the request body exceeds the configured limit",
            ),
            other => Self::new(
                ApiCode::InvalidRequest,
                format!("the request body could not be read: {other}"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use actix_web::body::to_bytes;

    use super::*;

    async fn body_json(response: HttpResponse) -> serde_json::Value {
        serde_json::from_slice(&to_bytes(response.into_body()).await.unwrap()).unwrap()
    }

    #[actix_web::test]
    async fn error_json_has_code_message_and_request_id() {
        let id = RequestId::parse("req-1").unwrap();
        let response = ApiError::new(ApiCode::SpecialistNotFound, "no such specialist 'x'")
            .to_response(Some(&id));
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            body_json(response).await,
            serde_json::json!({"error": {
                "code": "specialist_not_found",
                "message": "no such specialist 'x'",
                "request_id": "req-1"
            }})
        );
    }

    #[actix_web::test]
    async fn validation_error_lists_details() {
        let mut details = ValidationErrors::new();
        details.push("message", "must not be empty");
        details.push("conversation_history[0].role", "must be user or assistant");
        let response = ApiError::validation(details).to_response(None);
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let body = body_json(response).await;
        assert_eq!(body["error"]["code"], "validation_failed");
        assert_eq!(
            body["error"]["details"],
            serde_json::json!([
                {"field": "message", "message": "must not be empty"},
                {"field": "conversation_history[0].role", "message": "must be user or assistant"}
            ])
        );
    }

    #[test]
    fn provider_errors_map_to_gateway_statuses() {
        let cases = [
            (
                ProviderError::NotConfigured {
                    provider: core_domain::ProviderKind::OpenAi,
                    env_var: "OPENAI_API_KEY",
                    config_key: "providers.openai.api_key",
                },
                503,
            ),
            (
                ProviderError::Timeout {
                    phase: providers::TimeoutPhase::FirstByte,
                },
                504,
            ),
            (
                ProviderError::Upstream {
                    status: Some(500),
                    message: "boom".into(),
                },
                502,
            ),
            (
                ProviderError::AuthFailed {
                    provider: core_domain::ProviderKind::OpenAi,
                    status: 401,
                    message: "bad key".into(),
                },
                502,
            ),
            (
                ProviderError::InvalidRequest {
                    status: 400,
                    message: "context too long".into(),
                },
                400,
            ),
            (
                ProviderError::BadResponse {
                    message: "no choices".into(),
                    usage: None,
                },
                502,
            ),
        ];
        for (error, status) in cases {
            let api = ApiError::from(error);
            assert_eq!(api.status().as_u16(), status, "{api}");
        }
    }

    #[test]
    fn errors_a_retry_cannot_help_say_so() {
        let refusals = [
            ApiError::validation(ValidationErrors::new()),
            ApiError::new(ApiCode::UnsupportedParameter, "no tools"),
            ApiError::new(ErrorCode::UpstreamError, "boom"),
            ApiError::new(ErrorCode::UpstreamTimeout, "slow"),
            ApiError::new(ErrorCode::UpstreamRateLimited, "busy"),
            ApiError::new(ErrorCode::UpstreamAuthFailed, "bad key"),
        ];
        for error in refusals {
            let response = error.to_response(None);
            assert_eq!(
                response.headers().get(SHOULD_RETRY).unwrap(),
                "false",
                "{error}"
            );
        }
        // Our own limits and outages pass: a later retry may well succeed.
        for error in [
            ApiError::new(ApiCode::RateLimited, "slow down"),
            ApiError::new(ApiCode::ServiceUnavailable, "starting"),
            ApiError::internal("bug"),
        ] {
            let response = error.to_response(None);
            assert!(response.headers().get(SHOULD_RETRY).is_none(), "{error}");
        }
    }

    #[test]
    fn the_longest_retry_after_rounds_up_without_overflowing() {
        let api = ApiError::from(ProviderError::RateLimited {
            retry_after: Some(Duration::MAX),
            message: "never".into(),
        });
        let response = api.to_response(None);
        assert_eq!(
            response.headers().get(header::RETRY_AFTER).unwrap(),
            u64::MAX.to_string().as_str()
        );
    }

    #[test]
    fn store_errors_reach_clients_without_their_text() {
        let api = ApiError::from(usage_store::StoreError::Connect(
            "connection to server at \"db.internal\", port 5432 failed: database \"usage\"".into(),
        ));
        assert_eq!(api.code(), ApiCode::ServiceUnavailable);
        assert!(!api.message().contains("db.internal"), "{api}");
        assert!(
            api.internal_detail()
                .is_some_and(|d| d.contains("db.internal"))
        );
        let api = ApiError::from(usage_store::StoreError::Corrupt("row 7: bad".into()));
        assert_eq!(api.code(), ApiCode::Call(ErrorCode::Internal));
        assert!(!api.message().contains("row 7"), "{api}");
        // A deleted database file makes /ready answer 503 without naming the file.
        let api = ApiError::from(usage_store::StoreError::DatabaseReplaced(
            "/srv/commander/data/commander.db was deleted".into(),
        ));
        assert_eq!(api.code(), ApiCode::ServiceUnavailable);
        assert!(!api.message().contains("/srv"), "{api}");
    }

    #[test]
    fn an_unavailable_upstream_is_a_503_with_retry_after() {
        let api = ApiError::from(ProviderError::Unavailable {
            provider: core_domain::ProviderKind::Anthropic,
            retry_after: Duration::from_millis(2500),
            reason: "every key of providers.anthropic is cooling down or its circuit is open"
                .into(),
        });
        assert_eq!(api.code(), ApiCode::Call(ErrorCode::UpstreamUnavailable));
        let response = api.to_response(None);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers().get(header::RETRY_AFTER).unwrap(), "3");
        assert!(response.headers().get(SHOULD_RETRY).is_none());
    }

    #[test]
    fn upstream_rate_limit_carries_retry_after_rounded_up() {
        let api = ApiError::from(ProviderError::RateLimited {
            retry_after: Some(Duration::from_millis(1500)),
            message: "slow down".into(),
        });
        let response = api.to_response(None);
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers().get(header::RETRY_AFTER).unwrap(), "2");
    }
}
