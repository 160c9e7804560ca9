//! Anthropic's streaming format: `message_start`, then each content block started, filled with
//! deltas and stopped before the next starts (indices in order from 0), a `ping` after the
//! first block starts, `message_delta` with the stop reason and usage, and `message_stop`; a
//! failure after the stream began is an `error` event with Anthropic's error body.

use std::collections::HashMap;
use std::time::Duration;

use actix_web_lab::sse;
use core_domain::{ErrorCode, FinishReason, StreamEvent, TokenUsage, ToolCallDelta};
use pricing::CostEstimate;
use serde_json::json;

use super::messages::stop_reason;
use super::wire::Usage;
use crate::ApiError;
use crate::chat::relay::StreamFormat;

/// The kind of the content block open now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Text,
    Thinking,
    ToolUse,
}

/// The stream's state: the message's id and model, the prompt estimate for `message_start`
/// (the upstream's count comes with `message_delta`), and which block is open.
pub(crate) struct AnthropicEvents {
    id: String,
    model: String,
    prompt_estimate: u32,
    /// The open block's index and kind.
    open: Option<(u32, Block)>,
    /// The index the next block gets.
    next_index: u32,
    /// The block index of each tool call, by the call's number in the answer.
    tool_blocks: HashMap<u32, u32>,
    pinged: bool,
}

impl AnthropicEvents {
    /// The stream of the message `id`, asked of `model`, whose prompt is estimated at
    /// `prompt_estimate` tokens.
    pub(crate) fn new(id: String, model: String, prompt_estimate: u32) -> Self {
        Self {
            id,
            model,
            prompt_estimate,
            open: None,
            next_index: 0,
            tool_blocks: HashMap::new(),
            pinged: false,
        }
    }

    /// Stops the open block, if one is.
    fn close(&mut self, events: &mut Vec<sse::Event>) {
        if let Some((index, _)) = self.open.take() {
            events.push(event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            ));
        }
    }

    /// Stops the open block and starts `block` as `kind` (left open unless `kind` is `None`:
    /// a block whole in its start), giving its index; a `ping` follows the first start.
    fn start(
        &mut self,
        kind: Option<Block>,
        block: serde_json::Value,
        events: &mut Vec<sse::Event>,
    ) -> u32 {
        self.close(events);
        let index = self.next_index;
        self.next_index += 1;
        events.push(event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": block}),
        ));
        if !self.pinged {
            self.pinged = true;
            events.push(event("ping", &json!({"type": "ping"})));
        }
        match kind {
            Some(kind) => self.open = Some((index, kind)),
            None => events.push(event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            )),
        }
        index
    }

    /// The index of the open block of `kind`, starting one with `block` if another is open.
    fn ensure(
        &mut self,
        kind: Block,
        block: impl FnOnce() -> serde_json::Value,
        events: &mut Vec<sse::Event>,
    ) -> u32 {
        match self.open {
            Some((index, open)) if open == kind => index,
            _ => self.start(Some(kind), block(), events),
        }
    }
}

/// A named event whose data is `body`.
fn event(name: &'static str, body: &serde_json::Value) -> sse::Event {
    sse::Data::new(body.to_string()).event(name).into()
}

fn delta_event(index: u32, delta: serde_json::Value) -> sse::Event {
    event(
        "content_block_delta",
        &json!({"type": "content_block_delta", "index": index, "delta": delta}),
    )
}

impl StreamFormat for AnthropicEvents {
    fn served_by(&mut self, destination: &providers::Destination) {
        if self.model != destination.model {
            self.model.clone_from(&destination.model);
        }
    }

    fn opening(&mut self) -> Vec<sse::Event> {
        vec![event(
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": self.id, "type": "message", "role": "assistant", "model": self.model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": self.prompt_estimate, "output_tokens": 0,
                          "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
            }}),
        )]
    }

    /// Never called by the relay (which calls [`StreamFormat::text`]); a text delta into the
    /// open block, for completeness.
    fn delta(&mut self, text: &str) -> sse::Event {
        let index = self.open.map_or(0, |(index, _)| index);
        delta_event(index, json!({"type": "text_delta", "text": text}))
    }

    fn text(&mut self, text: &str) -> Vec<sse::Event> {
        let mut events = Vec::with_capacity(3);
        let index = self.ensure(
            Block::Text,
            || json!({"type": "text", "text": ""}),
            &mut events,
        );
        events.push(delta_event(
            index,
            json!({"type": "text_delta", "text": text}),
        ));
        events
    }

    fn tool_call(&mut self, delta: &ToolCallDelta) -> Vec<sse::Event> {
        let mut events = Vec::with_capacity(3);
        let index = match (self.tool_blocks.get(&delta.index), &delta.id) {
            (Some(index), _) => *index,
            (None, id) => {
                let index = self.start(
                    Some(Block::ToolUse),
                    json!({"type": "tool_use", "id": id.as_deref().unwrap_or_default(),
                           "name": delta.name.as_deref().unwrap_or_default(), "input": {}}),
                    &mut events,
                );
                self.tool_blocks.insert(delta.index, index);
                index
            }
        };
        if !delta.arguments.is_empty() {
            events.push(delta_event(
                index,
                json!({"type": "input_json_delta", "partial_json": delta.arguments}),
            ));
        }
        events
    }

    fn reasoning(&mut self, reasoning: &StreamEvent) -> Vec<sse::Event> {
        let mut events = Vec::with_capacity(3);
        let thinking = || json!({"type": "thinking", "thinking": ""});
        match reasoning {
            StreamEvent::ReasoningDelta(text) => {
                let index = self.ensure(Block::Thinking, thinking, &mut events);
                events.push(delta_event(
                    index,
                    json!({"type": "thinking_delta", "thinking": text}),
                ));
            }
            StreamEvent::ReasoningSignature(signature) => {
                let index = self.ensure(Block::Thinking, thinking, &mut events);
                events.push(delta_event(
                    index,
                    json!({"type": "signature_delta", "signature": signature}),
                ));
            }
            StreamEvent::RedactedReasoning(data) => {
                self.start(
                    None,
                    json!({"type": "redacted_thinking", "data": data}),
                    &mut events,
                );
            }
            _ => {}
        }
        events
    }

    fn finished(
        &mut self,
        tokens: &TokenUsage,
        finish_reason: &FinishReason,
        _cost: &CostEstimate,
        _latency: Duration,
    ) -> Vec<sse::Event> {
        let mut events = Vec::with_capacity(3);
        self.close(&mut events);
        let usage = Usage::from(tokens);
        events.push(event(
            "message_delta",
            &json!({"type": "message_delta",
                "delta": {"stop_reason": stop_reason(finish_reason), "stop_sequence": null},
                "usage": usage}),
        ));
        events.push(event("message_stop", &json!({"type": "message_stop"})));
        events
    }

    fn failed(&mut self, code: ErrorCode, message: &str) -> Vec<sse::Event> {
        let body = super::error::error_body(&ApiError::new(code, message));
        vec![event(
            "error",
            &serde_json::to_value(body).unwrap_or_default(),
        )]
    }
}

#[cfg(test)]
mod tests {
    use pricing::{CostEstimate, PriceSource};

    use super::*;

    /// Each event's name (the e2e tests read the data with a real SSE parser).
    fn names(events: &[sse::Event]) -> Vec<String> {
        events
            .iter()
            .map(|e| {
                let debug = format!("{e:?}");
                let start = debug.find("event: Some(\"").map_or(0, |i| i + 13);
                debug[start..]
                    .split('"')
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    }

    #[test]
    fn blocks_open_in_order_and_close_before_the_next() {
        let mut format = AnthropicEvents::new("msg_1".into(), "m".into(), 10);
        let mut events = format.opening();
        events.extend(format.reasoning(&StreamEvent::ReasoningDelta("think".into())));
        events.extend(format.reasoning(&StreamEvent::ReasoningSignature("sig".into())));
        events.extend(format.reasoning(&StreamEvent::RedactedReasoning("opaque".into())));
        events.extend(format.text("Hello"));
        events.extend(format.text(" there"));
        events.extend(format.tool_call(&ToolCallDelta {
            index: 0,
            id: Some("toolu_1".into()),
            name: Some("lookup".into()),
            arguments: String::new(),
        }));
        events.extend(format.tool_call(&ToolCallDelta {
            index: 0,
            id: None,
            name: None,
            arguments: "{\"q\":1}".into(),
        }));
        events.extend(format.finished(
            &TokenUsage::reported(10, 5),
            &FinishReason::ToolCalls,
            &CostEstimate {
                cost: core_domain::Usd::ZERO,
                pricing_known: false,
                source: PriceSource::Unknown,
            },
            Duration::ZERO,
        ));
        assert_eq!(
            names(&events),
            [
                "message_start",
                "content_block_start",
                "ping",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop",
            ]
        );
    }
}
