//! The three wire formats, as the real services write them.

use serde_json::{Value, json};

use crate::reply::{Answer, FakeThinking, split};
use crate::{Finish, Wire};

/// The frames of one streamed answer: sent before the text, one per text chunk, and after it.
pub(crate) struct Frames {
    pub head: Vec<String>,
    pub deltas: Vec<String>,
    pub tail: Vec<String>,
}

fn finish_word(wire: Wire, finish: Finish) -> &'static str {
    match (wire, finish) {
        (Wire::OpenAi, Finish::Stop) => "stop",
        (Wire::OpenAi, Finish::Length) => "length",
        (Wire::Anthropic, Finish::Stop) => "end_turn",
        (Wire::Anthropic, Finish::Length) => "max_tokens",
        (Wire::Google, Finish::Stop) => "STOP",
        (Wire::Google, Finish::Length) => "MAX_TOKENS",
        (Wire::OpenAi, Finish::ToolCalls) => "tool_calls",
        (Wire::Anthropic, Finish::ToolCalls) => "tool_use",
        (Wire::Google, Finish::ToolCalls) => "STOP",
    }
}

fn data(value: &Value) -> String {
    format!("data: {value}\n\n")
}

fn event(name: &str, value: &Value) -> String {
    format!("event: {name}\ndata: {value}\n\n")
}

/// The non-streamed response body.
pub(crate) fn whole(wire: Wire, model: &str, a: &Answer) -> Value {
    match wire {
        Wire::OpenAi => {
            let mut body = json!({
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": 1_700_000_000,
                "model": model,
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": a.text},
                    "logprobs": null,
                    "finish_reason": finish_word(wire, a.finish),
                }],
            });
            if !a.tool_calls.is_empty() {
                // An answer that only calls tools has null content.
                let message = &mut body["choices"][0]["message"];
                if a.text.is_empty() {
                    message["content"] = Value::Null;
                }
                message["tool_calls"] = a
                    .tool_calls
                    .iter()
                    .map(|c| {
                        json!({"id": c.id, "type": "function",
                               "function": {"name": c.name, "arguments": c.arguments}})
                    })
                    .collect();
            }
            if a.with_usage {
                body["usage"] = openai_usage(a);
            }
            body
        }
        Wire::Anthropic => {
            let mut body = json!({
                "id": "msg_fake",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": anthropic_content(a),
                "stop_reason": finish_word(wire, a.finish),
                "stop_sequence": null,
            });
            if a.with_usage {
                body["usage"] = anthropic_usage(a, a.output_tokens);
            }
            body
        }
        Wire::Google => {
            // The text (when there is any, or nothing else), then each call as a functionCall.
            let mut parts = Vec::new();
            if !a.text.is_empty() || a.tool_calls.is_empty() {
                parts.push(json!({"text": a.text}));
            }
            parts.extend(google_function_calls(a));
            let mut body = json!({
                "candidates": [{
                    "content": {"parts": parts, "role": "model"},
                    "finishReason": finish_word(wire, a.finish),
                    "index": 0,
                }],
                "modelVersion": model,
            });
            if a.with_usage {
                body["usageMetadata"] = google_usage(a);
            }
            body
        }
    }
}

/// The streamed frames. `include_usage` is what an OpenAI request asked for in
/// `stream_options`; the other formats always report usage unless the reply says not to.
pub(crate) fn stream(wire: Wire, model: &str, a: &Answer, include_usage: bool) -> Frames {
    let pieces = split(&a.text, a.chunks);
    match wire {
        Wire::OpenAi => {
            let chunk = |delta: Value, finish: Value| {
                data(&json!({
                    "id": "chatcmpl-fake",
                    "object": "chat.completion.chunk",
                    "created": 1_700_000_000,
                    "model": model,
                    "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
                }))
            };
            let head = vec![chunk(
                json!({"role": "assistant", "content": ""}),
                Value::Null,
            )];
            let mut deltas: Vec<String> = pieces
                .iter()
                // An answer that only calls tools sends no empty text chunk.
                .filter(|p| !p.is_empty() || a.tool_calls.is_empty())
                .map(|p| chunk(json!({"content": p}), Value::Null))
                .collect();
            // OpenAI's pieces of a call: the first has its id, type, name and "" arguments,
            // each next one a fragment of the arguments (two here).
            for (index, call) in a.tool_calls.iter().enumerate() {
                deltas.push(chunk(
                    json!({"tool_calls": [{"index": index, "id": call.id, "type": "function",
                            "function": {"name": call.name, "arguments": ""}}]}),
                    Value::Null,
                ));
                for fragment in split(&call.arguments, 2) {
                    deltas.push(chunk(
                        json!({"tool_calls": [{"index": index,
                                "function": {"arguments": fragment}}]}),
                        Value::Null,
                    ));
                }
            }
            let mut tail = vec![chunk(json!({}), json!(finish_word(wire, a.finish)))];
            if include_usage && a.with_usage {
                tail.push(data(&json!({
                    "id": "chatcmpl-fake",
                    "object": "chat.completion.chunk",
                    "created": 1_700_000_000,
                    "model": model,
                    "choices": [],
                    "usage": openai_usage(a),
                })));
            }
            tail.push("data: [DONE]\n\n".to_owned());
            Frames { head, deltas, tail }
        }
        Wire::Anthropic => {
            let mut start_message = json!({
                "id": "msg_fake", "type": "message", "role": "assistant", "content": [],
                "model": model, "stop_reason": null, "stop_sequence": null,
            });
            if a.with_usage {
                start_message["usage"] = anthropic_usage(a, 1);
            }
            let mut head = vec![event(
                "message_start",
                &json!({"type": "message_start", "message": start_message}),
            )];
            // Reasoning blocks first, each whole: a thinking block's text in two deltas and
            // then its signature; a redacted block's data on its start.
            for (index, block) in a.thinking.iter().enumerate() {
                match block {
                    FakeThinking::Thinking { text, signature } => {
                        head.push(event(
                            "content_block_start",
                            &json!({"type": "content_block_start", "index": index,
                                    "content_block": {"type": "thinking", "thinking": ""}}),
                        ));
                        for piece in split(text, 2) {
                            head.push(event(
                                "content_block_delta",
                                &json!({"type": "content_block_delta", "index": index,
                                        "delta": {"type": "thinking_delta", "thinking": piece}}),
                            ));
                        }
                        head.push(event(
                            "content_block_delta",
                            &json!({"type": "content_block_delta", "index": index,
                                    "delta": {"type": "signature_delta", "signature": signature}}),
                        ));
                    }
                    FakeThinking::Redacted(data) => head.push(event(
                        "content_block_start",
                        &json!({"type": "content_block_start", "index": index,
                                "content_block": {"type": "redacted_thinking", "data": data}}),
                    )),
                }
                head.push(event(
                    "content_block_stop",
                    &json!({"type": "content_block_stop", "index": index}),
                ));
            }
            // A text block only when there is text, or nothing else: a message that only calls
            // tools has none.
            let with_text = anthropic_has_text_block(a);
            let text_index = a.thinking.len();
            if with_text {
                head.push(event(
                    "content_block_start",
                    &json!({"type": "content_block_start", "index": text_index,
                            "content_block": {"type": "text", "text": ""}}),
                ));
            }
            // Anthropic pings right after the first block starts.
            head.insert(2.min(head.len()), event("ping", &json!({"type": "ping"})));
            let deltas = pieces
                .iter()
                .filter(|_| with_text)
                .map(|p| {
                    event(
                        "content_block_delta",
                        &json!({"type": "content_block_delta", "index": text_index,
                                "delta": {"type": "text_delta", "text": p}}),
                    )
                })
                .collect();
            let mut message_delta = json!({
                "type": "message_delta",
                "delta": {"stop_reason": finish_word(wire, a.finish), "stop_sequence": null},
            });
            if a.with_usage {
                message_delta["usage"] = json!({"output_tokens": a.output_tokens});
            }
            let mut tail = Vec::new();
            if with_text {
                tail.push(event(
                    "content_block_stop",
                    &json!({"type": "content_block_stop", "index": text_index}),
                ));
            }
            // Each tool call is a tool_use block: its input streamed as an empty fragment (as
            // Anthropic starts) and then in two pieces.
            for (i, call) in a.tool_calls.iter().enumerate() {
                let index = text_index + i + usize::from(with_text);
                tail.push(event(
                    "content_block_start",
                    &json!({"type": "content_block_start", "index": index,
                            "content_block": {"type": "tool_use", "id": call.id,
                                              "name": call.name, "input": {}}}),
                ));
                let middle = call.arguments.len() / 2;
                let middle = (middle..=call.arguments.len())
                    .find(|&m| call.arguments.is_char_boundary(m))
                    .unwrap_or(call.arguments.len());
                let (first, second) = call.arguments.split_at(middle);
                for fragment in ["", first, second] {
                    tail.push(event(
                        "content_block_delta",
                        &json!({"type": "content_block_delta", "index": index,
                                "delta": {"type": "input_json_delta", "partial_json": fragment}}),
                    ));
                }
                tail.push(event(
                    "content_block_stop",
                    &json!({"type": "content_block_stop", "index": index}),
                ));
            }
            tail.push(event("message_delta", &message_delta));
            tail.push(event("message_stop", &json!({"type": "message_stop"})));
            Frames { head, deltas, tail }
        }
        Wire::Google => {
            // Gemini separates events with CRLF pairs.
            let frame = |value: Value| format!("data: {value}\r\n\r\n");
            // The text's chunks, then one chunk with every call whole, as Gemini sends them.
            let mut chunk_parts: Vec<Vec<Value>> = Vec::new();
            if !a.text.is_empty() || a.tool_calls.is_empty() {
                chunk_parts.extend(pieces.iter().map(|p| vec![json!({"text": p})]));
            }
            if !a.tool_calls.is_empty() {
                chunk_parts.push(google_function_calls(a));
            }
            let last = chunk_parts.len().saturating_sub(1);
            let deltas = chunk_parts
                .into_iter()
                .enumerate()
                .map(|(i, parts)| {
                    let mut candidate = json!({
                        "content": {"parts": parts, "role": "model"},
                        "index": 0,
                    });
                    let mut body = json!({"modelVersion": model});
                    if i == last {
                        candidate["finishReason"] = json!(finish_word(wire, a.finish));
                    }
                    if a.with_usage {
                        body["usageMetadata"] = if i == last {
                            google_usage(a)
                        } else {
                            json!({"promptTokenCount": a.input_tokens,
                                   "totalTokenCount": a.input_tokens})
                        };
                    }
                    body["candidates"] = json!([candidate]);
                    frame(body)
                })
                .collect();
            Frames {
                head: Vec::new(),
                deltas,
                tail: Vec::new(),
            }
        }
    }
}

/// An answer's tool calls as Gemini's `functionCall` parts (no ids: Gemini has none).
fn google_function_calls(a: &Answer) -> Vec<Value> {
    a.tool_calls
        .iter()
        .map(|call| {
            let args: Value = serde_json::from_str(&call.arguments).unwrap_or_else(|_| json!({}));
            json!({"functionCall": {"name": call.name, "args": args}})
        })
        .collect()
}

/// Whether an Anthropic answer has a text block: when it has text, or calls no tool.
fn anthropic_has_text_block(a: &Answer) -> bool {
    !a.text.is_empty() || a.tool_calls.is_empty()
}

/// An Anthropic message's content blocks: its reasoning blocks, its text, then a `tool_use` block per tool call, whose
/// `input` is the arguments as JSON (arguments that do not parse are sent as a string, as no
/// real upstream would, so that a test sees them).
fn anthropic_content(a: &Answer) -> Value {
    let mut blocks: Vec<Value> = a
        .thinking
        .iter()
        .map(|block| match block {
            FakeThinking::Thinking { text, signature } => {
                json!({"type": "thinking", "thinking": text, "signature": signature})
            }
            FakeThinking::Redacted(data) => json!({"type": "redacted_thinking", "data": data}),
        })
        .collect();
    if anthropic_has_text_block(a) {
        blocks.push(json!({"type": "text", "text": a.text}));
    }
    for call in &a.tool_calls {
        let input: Value =
            serde_json::from_str(&call.arguments).unwrap_or_else(|_| json!(call.arguments));
        blocks.push(json!({"type": "tool_use", "id": call.id, "name": call.name, "input": input}));
    }
    Value::Array(blocks)
}

/// The error event each format sends when it fails part way through a stream.
pub(crate) fn error_frame(wire: Wire, message: &str) -> String {
    match wire {
        Wire::OpenAi => data(
            &json!({"error": {"message": message, "type": "server_error",
                                               "param": null, "code": null}}),
        ),
        Wire::Anthropic => event(
            "error",
            &json!({"type": "error", "error": {"type": "overloaded_error", "message": message}}),
        ),
        Wire::Google => format!(
            "data: {}\r\n\r\n",
            json!({"error": {"code": 500, "message": message, "status": "INTERNAL"}})
        ),
    }
}

/// An error body in the format's own shape, for `Reply::status`es given a plain message.
pub(crate) fn error_body(wire: Wire, status: u16, message: &str) -> Value {
    match wire {
        Wire::OpenAi => json!({"error": {"message": message, "type": "invalid_request_error",
                                         "param": null, "code": null}}),
        Wire::Anthropic => {
            json!({"type": "error", "error": {"type": "api_error", "message": message}})
        }
        Wire::Google => json!({"error": {"code": status, "message": message, "status": "ERROR"}}),
    }
}

/// OpenAI's usage: `prompt_tokens` counts cached tokens, `completion_tokens` reasoning ones.
fn openai_usage(a: &Answer) -> Value {
    let mut usage = json!({
        "prompt_tokens": a.input_tokens,
        "completion_tokens": a.output_tokens,
        "total_tokens": a.input_tokens + a.output_tokens,
    });
    let detail = a.usage_detail;
    if detail.cached_input_tokens > 0 {
        usage["prompt_tokens_details"] = json!({"cached_tokens": detail.cached_input_tokens});
    }
    if detail.reasoning_tokens > 0 {
        usage["completion_tokens_details"] = json!({"reasoning_tokens": detail.reasoning_tokens});
    }
    usage
}

/// Anthropic's usage: `input_tokens` excludes cache reads and writes, reported apart.
fn anthropic_usage(a: &Answer, output_tokens: u32) -> Value {
    let detail = a.usage_detail;
    let mut usage = json!({
        "input_tokens": a
            .input_tokens
            .saturating_sub(detail.cached_input_tokens)
            .saturating_sub(detail.cache_write_tokens),
        "output_tokens": output_tokens,
    });
    if detail.cached_input_tokens > 0 || detail.cache_write_tokens > 0 {
        usage["cache_read_input_tokens"] = json!(detail.cached_input_tokens);
        usage["cache_creation_input_tokens"] = json!(detail.cache_write_tokens);
    }
    usage
}

/// Gemini's usage: `candidatesTokenCount` excludes thinking, reported as `thoughtsTokenCount`;
/// `promptTokenCount` includes `cachedContentTokenCount`.
fn google_usage(a: &Answer) -> Value {
    let detail = a.usage_detail;
    let mut usage = json!({
        "promptTokenCount": a.input_tokens,
        "candidatesTokenCount": a.output_tokens.saturating_sub(detail.reasoning_tokens),
        "totalTokenCount": a.input_tokens + a.output_tokens,
    });
    if detail.cached_input_tokens > 0 {
        usage["cachedContentTokenCount"] = json!(detail.cached_input_tokens);
    }
    if detail.reasoning_tokens > 0 {
        usage["thoughtsTokenCount"] = json!(detail.reasoning_tokens);
    }
    usage
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Reply;
    use crate::reply::ReplyKind;

    fn answer(reply: Reply) -> Answer {
        match reply.kind {
            ReplyKind::Answer(answer) => answer,
            other => panic!("an answer: {other:?}"),
        }
    }

    /// Each frame's `event:` name and, for block events, the block's index and its start or
    /// delta type.
    fn sequence(frames: &Frames) -> Vec<String> {
        frames
            .head
            .iter()
            .chain(&frames.deltas)
            .chain(&frames.tail)
            .map(|frame| {
                let name = frame
                    .strip_prefix("event: ")
                    .and_then(|rest| rest.split('\n').next())
                    .unwrap_or_default();
                let data: Value = frame
                    .split("data: ")
                    .nth(1)
                    .and_then(|d| serde_json::from_str(d.trim()).ok())
                    .unwrap_or(Value::Null);
                assert_eq!(data["type"], name, "{frame}");
                let kind = data["content_block"]["type"]
                    .as_str()
                    .or(data["delta"]["type"].as_str())
                    .unwrap_or_default();
                match data["index"].as_u64() {
                    Some(index) => format!("{name} {index} {kind}"),
                    None => name.to_owned(),
                }
            })
            .collect()
    }

    #[test]
    fn anthropic_streams_thinking_text_and_tools_in_its_real_event_order() {
        let reply = Reply::text("Hi")
            .thinking("ab", "sig")
            .redacted_thinking("data")
            .tool_calls(&[("toolu_1", "f", "{}")])
            .chunks(1);
        let frames = stream(Wire::Anthropic, "claude", &answer(reply), false);
        assert_eq!(
            sequence(&frames),
            [
                "message_start",
                "content_block_start 0 thinking",
                "ping",
                "content_block_delta 0 thinking_delta",
                "content_block_delta 0 thinking_delta",
                "content_block_delta 0 signature_delta",
                "content_block_stop 0 ",
                "content_block_start 1 redacted_thinking",
                "content_block_stop 1 ",
                "content_block_start 2 text",
                "content_block_delta 2 text_delta",
                "content_block_stop 2 ",
                "content_block_start 3 tool_use",
                "content_block_delta 3 input_json_delta",
                "content_block_delta 3 input_json_delta",
                "content_block_delta 3 input_json_delta",
                "content_block_stop 3 ",
                "message_delta",
                "message_stop",
            ]
        );
        let whole = whole(
            Wire::Anthropic,
            "claude",
            &answer(Reply::text("Hi").thinking("ab", "sig")),
        );
        assert_eq!(
            whole["content"],
            json!([
                {"type": "thinking", "thinking": "ab", "signature": "sig"},
                {"type": "text", "text": "Hi"}
            ])
        );
    }
}
