use actix_web::{Either, HttpRequest, HttpResponse, Responder, web};
use core_domain::{Completion, Door, FinishReason};
use serde_json::value::RawValue;

use super::request::{self, MessagesRequest, Purpose};
use super::stream::AnthropicEvents;
use super::wire::{Content, ContentBlock, Message, Usage};
use crate::chat::prepare_with;
use crate::chat::send::served_by_header;
use crate::openapi::responses::AnthropicCall;
use crate::{ApiError, AppState, RequestContext};

/// `POST /v1/messages`: a `message`, or with `stream: true` Anthropic's stream of events.
///
/// The body is read as bytes, not through a JSON extractor: an Anthropic upstream receives the
/// caller's fields as the exact text it sent.
#[utoipa::path(post, path = "/v1/messages", tag = "anthropic", request_body = MessagesRequest,
    responses(
        (status = 200, description = "A message; with stream: true, text/event-stream of message_start, content_block_start / _delta / _stop, ping, message_delta and message_stop",
            content((Message = "application/json"), (String = "text/event-stream"))),
        AnthropicCall),
    security((), ("bearer" = []), ("x-api-key" = [])))]
pub(crate) async fn messages(
    state: web::Data<AppState>,
    context: RequestContext,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<Either<HttpResponse, impl Responder>, ApiError> {
    let parsed = request::parse(&body, beta(&req), Purpose::Message, &state.chat_limits)?;
    let model = parsed.model.clone();
    let streamed = parsed.stream;
    let specialist = crate::chat::resolve_model(&state, &model)?;
    parsed.check_for(&specialist)?;
    let call = prepare_with(&state, &context, Door::Messages, specialist, |specialist| {
        parsed.into_request(specialist)
    })?;
    let id = format!("msg_{}", context.request_id);

    if streamed {
        let format = AnthropicEvents::new(
            id,
            call.specialist().model().to_owned(),
            call.prompt_estimate(),
        );
        let (events, served_by) = call.stream(&state, format).await?;
        return Ok(Either::Right(
            actix_web::Responder::customize(events).insert_header(served_by_header(&served_by)),
        ));
    }

    let answer = call.complete().await?;
    let served_by = answer.served_by;
    let completion = answer.completion;
    let model = if completion.model.is_empty() {
        served_by.model.clone()
    } else {
        completion.model.clone()
    };
    Ok(Either::Left(
        HttpResponse::Ok()
            .insert_header(served_by_header(&served_by))
            .json(Message {
                id,
                kind: "message",
                role: "assistant",
                model,
                stop_reason: Some(stop_reason(&completion.finish_reason).to_owned()),
                stop_sequence: None,
                usage: Usage::from(&completion.usage),
                content: content(completion),
            }),
    ))
}

/// The caller's `anthropic-beta` header, forwarded to an Anthropic upstream.
pub(super) fn beta(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get("anthropic-beta")
        .and_then(|v| v.to_str().ok())
}

/// The answer's content: an Anthropic upstream's own blocks as it sent them (thinking and
/// signatures included), or blocks written from the answer — its text, then its tool calls.
fn content(completion: Completion) -> Content {
    if let Some(raw) = completion
        .wire_content
        .and_then(|text| RawValue::from_string(text).ok())
        .filter(|raw| raw.get().trim_start().starts_with('['))
    {
        return Content::Raw(raw);
    }
    let mut blocks = Vec::with_capacity(1 + completion.tool_calls.len());
    if !completion.content.is_empty() || completion.tool_calls.is_empty() {
        blocks.push(ContentBlock::Text {
            text: completion.content,
        });
    }
    blocks.extend(completion.tool_calls.into_iter().map(|call| {
        ContentBlock::ToolUse {
            // A tool_use input is an object; arguments a model wrote that are not one (models
            // err) are kept as the one field of an object rather than lost.
            input: match serde_json::from_str::<serde_json::Value>(&call.arguments) {
                Ok(input @ serde_json::Value::Object(_)) => input,
                _ => serde_json::json!({"arguments": call.arguments}),
            },
            id: call.id,
            name: call.name,
        }
    }));
    Content::Blocks(blocks)
}

/// Anthropic's stop reason for `reason`. An upstream's own word Anthropic also uses
/// (`stop_sequence`, `pause_turn`, ...) is kept; any other ends the turn, as typed clients
/// refuse a value outside Anthropic's set.
pub(super) fn stop_reason(reason: &FinishReason) -> &str {
    match reason {
        FinishReason::Stop => "end_turn",
        FinishReason::Length => "max_tokens",
        FinishReason::ToolCalls => "tool_use",
        FinishReason::ContentFilter => "refusal",
        FinishReason::Other(other)
            if matches!(
                other.as_str(),
                "stop_sequence" | "pause_turn" | "refusal" | "model_context_window_exceeded"
            ) =>
        {
            other
        }
        FinishReason::Other(_) => "end_turn",
    }
}

#[cfg(test)]
mod tests {
    use core_domain::{TokenUsage, ToolCall};

    use super::*;

    fn completion(content: &str, tool_calls: Vec<ToolCall>, wire: Option<&str>) -> Completion {
        Completion {
            content: content.into(),
            tool_calls,
            logprobs: None,
            usage: TokenUsage::reported(1, 1),
            finish_reason: FinishReason::Stop,
            model: "m".into(),
            wire_content: wire.map(str::to_owned),
        }
    }

    #[test]
    fn the_upstream_s_own_content_is_given_back_byte_for_byte() {
        let wire =
            r#"[{"type":"thinking","thinking":"a","signature":"s=="}, {"type":"text","text":"b"}]"#;
        let text =
            serde_json::to_string(&content(completion("b", Vec::new(), Some(wire)))).unwrap();
        assert_eq!(text, wire);
        // Not an array (a hostile upstream): the blocks are written from the answer instead.
        let text = serde_json::to_string(&content(completion("b", Vec::new(), Some("{\"a\":1}"))))
            .unwrap();
        assert_eq!(text, r#"[{"type":"text","text":"b"}]"#);
    }

    #[test]
    fn tool_calls_become_tool_use_blocks_and_bad_arguments_are_kept() {
        let calls = vec![
            ToolCall {
                id: "t1".into(),
                name: "f".into(),
                arguments: r#"{"q":1}"#.into(),
            },
            ToolCall {
                id: "t2".into(),
                name: "g".into(),
                arguments: "not json".into(),
            },
        ];
        let value = serde_json::to_value(content(completion("", calls, None))).unwrap();
        assert_eq!(
            value,
            serde_json::json!([
                {"type": "tool_use", "id": "t1", "name": "f", "input": {"q": 1}},
                {"type": "tool_use", "id": "t2", "name": "g", "input": {"arguments": "not json"}}
            ])
        );
    }

    #[test]
    fn stop_reasons_stay_inside_anthropic_s_set() {
        let cases = [
            (FinishReason::Stop, "end_turn"),
            (FinishReason::Length, "max_tokens"),
            (FinishReason::ToolCalls, "tool_use"),
            (FinishReason::ContentFilter, "refusal"),
            (FinishReason::Other("pause_turn".into()), "pause_turn"),
            (FinishReason::Other("RECITATION".into()), "end_turn"),
        ];
        for (reason, expected) in cases {
            assert_eq!(stop_reason(&reason), expected, "{reason:?}");
        }
    }
}
