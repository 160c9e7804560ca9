use std::time::Duration;

use actix_web::{Either, HttpResponse, Responder, web};
use actix_web_lab::sse;
use core_domain::{ErrorCode, FinishReason, TokenUsage};
use pricing::CostEstimate;
use serde_json::{Value, json};

use super::request::CompletionRequest;
use crate::chat::relay::{StreamFormat, relay};
use crate::chat::{PreparedCall, prepare_for};
use crate::{ApiError, AppState, RequestContext};

/// `POST /v1/chat/completions`: a `chat.completion`, or with `stream: true` a stream of
/// `chat.completion.chunk`s ending in `data: [DONE]`.
pub(crate) async fn completions(
    state: web::Data<AppState>,
    context: RequestContext,
    body: web::Json<CompletionRequest>,
) -> Result<Either<HttpResponse, impl Responder>, ApiError> {
    let body = body.into_inner();
    let streamed = body.stream;
    let completion = body.validate(&state.chat_limits)?;
    let include_usage = completion.include_usage;
    let model = completion.model.clone();
    let specialist_id = completion.specialist_id.clone().ok_or_else(|| {
        ApiError::new(
            ErrorCode::SpecialistNotFound,
            format!("the model '{model}' does not exist: models are specialist ids"),
        )
    })?;
    let call = prepare_for(&state, &context, &specialist_id, streamed, |specialist| {
        completion.into_request(specialist)
    })?;
    let id = format!("chatcmpl-{}", context.request_id);
    let created = chrono::Utc::now().timestamp();

    if streamed {
        let format = OpenAiChunks {
            id,
            created,
            model,
            include_usage,
        };
        let keep_alive = Duration::from_secs(state.sse_keep_alive_seconds.max(1));
        return Ok(Either::Right(relay(call, format, keep_alive).await?));
    }

    let PreparedCall {
        provider,
        request,
        recorder,
        ..
    } = call;
    let answer = match provider.complete(&request).await {
        Ok(answer) => answer,
        Err(error) => {
            let consumed = recorder.consumed_on_failure(&error);
            recorder.failed(error.code(), consumed);
            return Err(error.into());
        }
    };
    recorder.succeeded(answer.usage);
    Ok(Either::Left(HttpResponse::Ok().json(json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": answer.content, "refusal": null},
            "logprobs": null,
            "finish_reason": answer.finish_reason.as_str(),
        }],
        "usage": usage(&answer.usage),
        "system_fingerprint": null,
    }))))
}

fn usage(usage: &TokenUsage) -> Value {
    json!({
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": u64::from(usage.input_tokens) + u64::from(usage.output_tokens),
    })
}

/// OpenAI's streaming format: a role delta first, content deltas, a chunk with the finish
/// reason, then (when asked with `stream_options.include_usage`) a usage chunk with no choices
/// — every other chunk then carries `"usage": null` — and `data: [DONE]`.
struct OpenAiChunks {
    id: String,
    created: i64,
    model: String,
    include_usage: bool,
}

impl OpenAiChunks {
    fn chunk(&self, delta: Value, finish_reason: Value) -> sse::Event {
        let mut chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": null,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
        });
        if self.include_usage {
            chunk["usage"] = Value::Null;
        }
        sse::Data::new(chunk.to_string()).into()
    }
}

impl StreamFormat for OpenAiChunks {
    fn opening(&self) -> Vec<sse::Event> {
        vec![self.chunk(json!({"role": "assistant", "content": ""}), Value::Null)]
    }

    fn delta(&self, text: &str) -> sse::Event {
        self.chunk(json!({"content": text}), Value::Null)
    }

    fn finished(
        &self,
        tokens: &TokenUsage,
        finish_reason: &FinishReason,
        _cost: &CostEstimate,
        _latency: Duration,
    ) -> Vec<sse::Event> {
        let mut events = vec![self.chunk(json!({}), json!(finish_reason.as_str()))];
        if self.include_usage {
            let chunk = json!({
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "system_fingerprint": null,
                "choices": [],
                "usage": usage(tokens),
            });
            events.push(sse::Data::new(chunk.to_string()).into());
        }
        events.push(sse::Data::new("[DONE]").into());
        events
    }

    fn failed(&self, code: ErrorCode, message: &str) -> Vec<sse::Event> {
        let body = super::error_body(&ApiError::new(code, message));
        vec![sse::Data::new(body.to_string()).into()]
    }
}
