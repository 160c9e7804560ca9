use std::time::Duration;

use actix_web::web;
use actix_web_lab::sse;
use core_domain::{ErrorCode, FinishReason, TokenUsage, ToolCallDelta};
use pricing::CostEstimate;
use serde::Serialize;
use utoipa::ToSchema;

use crate::openapi::responses::ChatCall;
use serde_json::json;

use crate::chat::relay::StreamFormat;
use crate::chat::send::{millis, served_by_header};
use crate::chat::{ChatRequestBody, prepare};
use crate::{ApiError, AppState, RequestContext};

/// One `event: message` of `POST /chat/stream`: the original service's chunk shape. Token
/// counts, cost and latency are filled on the final chunk only.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StreamChunk<'a> {
    content: &'a str,
    is_final: bool,
    input_tokens: Option<u32>,
    output_tokens: Option<u32>,
    model: &'a str,
    latency_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    estimated_cost_usd: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    finish_reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
}

/// `POST /chat/stream`: the answer as server-sent events, forwarded as the upstream sends it.
#[utoipa::path(
    post, path = "/chat/stream", tag = "chat",
    request_body = ChatRequestBody,
    responses(
        (status = 200, description = "text/event-stream of `event: message` chunks (the last has is_final, tokens, cost and latency); a failure after the start ends it with `event: error` data {code, message}", content_type = "text/event-stream", body = StreamChunk),
        ChatCall
    ),
    security((), ("bearer" = []))
)]
pub(crate) async fn stream(
    state: web::Data<AppState>,
    context: RequestContext,
    body: web::Json<ChatRequestBody>,
) -> Result<impl actix_web::Responder, ApiError> {
    let call = prepare(&state, &context, body.into_inner())?;
    let format = ChatFormat {
        model: call.specialist().model().to_owned(),
        request_id: context.request_id.to_string(),
    };
    let (events, served_by) = call.stream(&state, format).await?;
    Ok(actix_web::Responder::customize(events).insert_header(served_by_header(&served_by)))
}

/// The original service's stream: `event: message` chunks, `event: error` on failure.
struct ChatFormat {
    model: String,
    request_id: String,
}

impl StreamFormat for ChatFormat {
    fn served_by(&mut self, destination: &providers::Destination) {
        if self.model != destination.model {
            self.model.clone_from(&destination.model);
        }
    }

    fn opening(&mut self) -> Vec<sse::Event> {
        Vec::new()
    }

    fn delta(&mut self, text: &str) -> sse::Event {
        chunk_event(&StreamChunk {
            content: text,
            is_final: false,
            input_tokens: None,
            output_tokens: None,
            model: &self.model,
            latency_ms: None,
            estimated_cost_usd: None,
            finish_reason: None,
            request_id: None,
        })
    }

    /// `/chat/*` offers no tools, so no model calls one here.
    fn tool_call(&mut self, _delta: &ToolCallDelta) -> Vec<sse::Event> {
        Vec::new()
    }

    fn finished(
        &mut self,
        usage: &TokenUsage,
        finish_reason: &FinishReason,
        cost: &CostEstimate,
        latency: Duration,
    ) -> Vec<sse::Event> {
        vec![chunk_event(&StreamChunk {
            content: "",
            is_final: true,
            input_tokens: Some(usage.input_tokens),
            output_tokens: Some(usage.output_tokens),
            model: &self.model,
            latency_ms: Some(millis(latency)),
            estimated_cost_usd: Some(cost.cost.as_dollars()),
            finish_reason: Some(finish_reason.as_str()),
            request_id: Some(&self.request_id),
        })]
    }

    fn failed(&mut self, code: ErrorCode, message: &str) -> Vec<sse::Event> {
        vec![error_event(code, message)]
    }
}

fn chunk_event(chunk: &StreamChunk<'_>) -> sse::Event {
    match sse::Data::new_json(chunk) {
        Ok(data) => data.event("message").into(),
        Err(e) => error_event(ErrorCode::Internal, &format!("cannot encode a chunk: {e}")),
    }
}

fn error_event(code: ErrorCode, message: &str) -> sse::Event {
    sse::Data::new(json!({"code": code, "message": message}).to_string())
        .event("error")
        .into()
}
