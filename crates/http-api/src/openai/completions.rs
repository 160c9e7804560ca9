use std::time::Duration;

use actix_web::{Either, HttpResponse, Responder, web};
use actix_web_lab::sse;
use core_domain::{Door, ErrorCode, FinishReason, TokenUsage, ToolCallDelta};
use pricing::CostEstimate;

use super::request::CompletionRequest;
use super::wire::{
    AssistantMessage, CalledFunction, ChatCompletion, ChatCompletionChunk, Choice, ChunkChoice,
    CompletionTokensDetails, CompletionUsage, Delta, FunctionChunk, MessageToolCall,
    PromptTokensDetails, ToolCallChunk,
};
use crate::chat::prepare_with;
use crate::chat::relay::StreamFormat;
use crate::chat::send::served_by_header;
use crate::openapi::responses::OpenAiChatCall;
use crate::{ApiError, AppState, RequestContext};

/// `POST /v1/chat/completions`: a `chat.completion`, or with `stream: true` a stream of
/// `chat.completion.chunk`s ending in `data: [DONE]`.
#[utoipa::path(post, path = "/v1/chat/completions", tag = "openai", request_body = CompletionRequest,
    responses(
        (status = 200, description = "A chat.completion; with stream: true, text/event-stream of chat.completion.chunk then [DONE]",
            content((ChatCompletion = "application/json"), (ChatCompletionChunk = "text/event-stream"))),
        OpenAiChatCall),
    security((), ("bearer" = [])))]
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
    let specialist = crate::chat::resolve_model(&state, &model)?;
    let call = prepare_with(
        &state,
        &context,
        Door::ChatCompletions,
        specialist,
        |specialist| completion.into_request(specialist),
    )?;
    let id = format!("chatcmpl-{}", context.request_id);
    let created = chrono::Utc::now().timestamp();

    if streamed {
        let format = OpenAiChunks {
            id,
            created,
            model,
            include_usage,
        };
        let (events, served_by) = call.stream(&state, format).await?;
        return Ok(Either::Right(
            actix_web::Responder::customize(events).insert_header(served_by_header(&served_by)),
        ));
    }

    let answer = call.complete().await?;
    let served_by = answer.served_by;
    let answer = answer.completion;
    Ok(Either::Left(
        HttpResponse::Ok()
            .insert_header(served_by_header(&served_by))
            .json(ChatCompletion {
                id,
                object: "chat.completion",
                created,
                // What answered, as OpenAI names the model (snapshot) that served a request.
                model: served_by.model.clone(),
                choices: vec![Choice {
                    index: 0,
                    message: AssistantMessage {
                        role: "assistant",
                        // OpenAI's answer that only calls tools has no text: null, not "".
                        content: (!answer.content.is_empty() || answer.tool_calls.is_empty())
                            .then_some(answer.content),
                        refusal: None,
                        tool_calls: answer
                            .tool_calls
                            .into_iter()
                            .map(|call| MessageToolCall {
                                id: call.id,
                                kind: "function",
                                function: CalledFunction {
                                    name: call.name,
                                    arguments: call.arguments,
                                },
                            })
                            .collect(),
                    },
                    logprobs: answer.logprobs,
                    finish_reason: openai_finish_reason(&answer.finish_reason).to_owned(),
                }],
                usage: usage(&answer.usage),
                system_fingerprint: None,
            }),
    ))
}

fn usage(usage: &TokenUsage) -> CompletionUsage {
    CompletionUsage {
        prompt_tokens: usage.input_tokens,
        completion_tokens: usage.output_tokens,
        total_tokens: u64::from(usage.input_tokens) + u64::from(usage.output_tokens),
        prompt_tokens_details: PromptTokensDetails {
            cached_tokens: usage.cached_input_tokens,
        },
        completion_tokens_details: CompletionTokensDetails {
            reasoning_tokens: usage.reasoning_tokens,
        },
    }
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
    /// A chunk with `choices` and, when usage was asked for, `usage` (null until the end).
    fn event(&self, choices: Vec<ChunkChoice>, usage: Option<CompletionUsage>) -> sse::Event {
        json_event(&ChatCompletionChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk",
            created: self.created,
            model: self.model.clone(),
            system_fingerprint: None,
            choices,
            usage: self.include_usage.then_some(usage),
        })
    }

    fn chunk(&self, delta: Delta, finish_reason: Option<&str>) -> sse::Event {
        self.event(
            vec![ChunkChoice {
                index: 0,
                delta,
                logprobs: None,
                finish_reason: finish_reason.map(str::to_owned),
            }],
            None,
        )
    }
}

fn json_event(body: &impl serde::Serialize) -> sse::Event {
    match sse::Data::new_json(body) {
        Ok(data) => data.into(),
        Err(e) => sse::Data::new(format!("{{\"error\": \"cannot encode a chunk: {e}\"}}")).into(),
    }
}

impl StreamFormat for OpenAiChunks {
    fn served_by(&mut self, destination: &providers::Destination) {
        if self.model != destination.model {
            self.model.clone_from(&destination.model);
        }
    }

    fn opening(&mut self) -> Vec<sse::Event> {
        vec![self.chunk(
            Delta {
                role: Some("assistant"),
                content: Some(String::new()),
                ..Delta::default()
            },
            None,
        )]
    }

    fn delta(&mut self, text: &str) -> sse::Event {
        self.chunk(
            Delta {
                content: Some(text.to_owned()),
                ..Delta::default()
            },
            None,
        )
    }

    fn tool_call(&mut self, delta: &ToolCallDelta) -> Vec<sse::Event> {
        vec![self.chunk(
            Delta {
                tool_calls: vec![ToolCallChunk {
                    index: delta.index,
                    id: delta.id.clone(),
                    kind: delta.id.is_some().then_some("function"),
                    function: FunctionChunk {
                        name: delta.name.clone(),
                        arguments: delta.arguments.clone(),
                    },
                }],
                ..Delta::default()
            },
            None,
        )]
    }

    fn finished(
        &mut self,
        tokens: &TokenUsage,
        finish_reason: &FinishReason,
        _cost: &CostEstimate,
        _latency: Duration,
    ) -> Vec<sse::Event> {
        let mut events =
            vec![self.chunk(Delta::default(), Some(openai_finish_reason(finish_reason)))];
        if self.include_usage {
            events.push(self.event(Vec::new(), Some(usage(tokens))));
        }
        events.push(sse::Data::new("[DONE]").into());
        events
    }

    fn failed(&mut self, code: ErrorCode, message: &str) -> Vec<sse::Event> {
        vec![json_event(&super::error_body(&ApiError::new(
            code, message,
        )))]
    }
}

/// OpenAI's closed set of finish reasons. Typed clients (enums in Go, Rust, TypeScript SDKs)
/// refuse a value outside it, so an upstream's own word (Anthropic's `pause_turn`, Gemini's
/// `RECITATION`...) is reported as `stop` here; `/chat/*` and the usage log keep it verbatim.
fn openai_finish_reason(reason: &FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop | FinishReason::Other(_) => "stop",
        FinishReason::Length => "length",
        FinishReason::ContentFilter => "content_filter",
        FinishReason::ToolCalls => "tool_calls",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finish_reasons_stay_inside_openai_s_set() {
        let cases = [
            (FinishReason::Stop, "stop"),
            (FinishReason::Length, "length"),
            (FinishReason::ContentFilter, "content_filter"),
            (FinishReason::ToolCalls, "tool_calls"),
            (FinishReason::Other("pause_turn".into()), "stop"),
            (FinishReason::Other("RECITATION".into()), "stop"),
        ];
        for (reason, expected) in cases {
            assert_eq!(openai_finish_reason(&reason), expected, "{reason:?}");
        }
    }
}
