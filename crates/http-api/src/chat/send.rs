use actix_web::{HttpResponse, web};
use core_domain::ProviderKind;
use serde::Serialize;
use utoipa::ToSchema;

use crate::openapi::responses::ChatCall;

use crate::chat::{ChatRequestBody, prepare};
use crate::{ApiError, AppState, RequestContext};

/// The answer of `POST /chat/send`: the original service's fields, plus `request_id` and
/// `finish_reason`. `provider` and `model` are those that answered: the specialist's own, or
/// the fallback that served the call.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ChatResponse<'a> {
    content: String,
    specialist_id: &'a str,
    specialist_name: &'a str,
    #[schema(value_type = String)]
    provider: ProviderKind,
    model: &'a str,
    input_tokens: u32,
    output_tokens: u32,
    estimated_cost_usd: f64,
    latency_ms: f64,
    request_id: &'a str,
    finish_reason: &'a str,
}

/// `POST /chat/send`: ask a specialist and get the whole answer.
#[utoipa::path(
    post, path = "/chat/send", tag = "chat",
    request_body = ChatRequestBody,
    responses(
        (status = 200, description = "The answer, its tokens, cost and latency", body = ChatResponse),
        ChatCall
    ),
    security((), ("bearer" = []))
)]
pub(crate) async fn send(
    state: web::Data<AppState>,
    context: RequestContext,
    body: web::Json<ChatRequestBody>,
) -> Result<HttpResponse, ApiError> {
    let answer = prepare(&state, &context, body.into_inner())?
        .complete()
        .await?;
    let (specialist, completion) = (answer.specialist, answer.completion);
    let served_by = answer.served_by;
    Ok(HttpResponse::Ok()
        .insert_header(served_by_header(&served_by))
        .json(ChatResponse {
            specialist_id: specialist.id().as_str(),
            specialist_name: specialist.name(),
            provider: served_by.provider,
            model: &served_by.model,
            input_tokens: completion.usage.input_tokens,
            output_tokens: completion.usage.output_tokens,
            estimated_cost_usd: answer.cost.cost.as_dollars(),
            latency_ms: millis(answer.latency),
            request_id: context.request_id.as_str(),
            finish_reason: completion.finish_reason.as_str(),
            content: completion.content,
        }))
}

/// The `X-Commander-Served-By` header: the provider and model that answered, as
/// `provider/model`.
pub(crate) fn served_by_header(
    destination: &providers::Destination,
) -> (&'static str, actix_web::http::header::HeaderValue) {
    let value = actix_web::http::header::HeaderValue::from_str(&destination.to_string())
        // A model name that is no header value (validated names always are) is left out.
        .unwrap_or_else(|_| actix_web::http::header::HeaderValue::from_static(""));
    (SERVED_BY, value)
}

/// The name of the header that says which provider and model answered.
pub(crate) const SERVED_BY: &str = "x-commander-served-by";

/// Milliseconds with microsecond precision, as the original service reported latency.
pub(crate) fn millis(duration: std::time::Duration) -> f64 {
    (duration.as_secs_f64() * 1e6).round() / 1e3
}
