use serde::{Deserialize, Serialize};

use crate::{ChatMessage, ContentPart, ToolCall};

/// Tokens consumed by one call.
///
/// One rule for every provider: `input_tokens` is the WHOLE prompt, cached and cache-written
/// tokens included (OpenAI's `prompt_tokens` already counts this way; Anthropic reports cache
/// reads and writes apart from `input_tokens`, so its parser adds them in). `cached_input_tokens`
/// and `cache_write_tokens` are subsets of it, priced differently; the uncached remainder is
/// [`TokenUsage::uncached_input_tokens`]. Likewise `output_tokens` is everything billed as output,
/// reasoning ("thinking") tokens included, and `reasoning_tokens` is the subset spent thinking.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    /// Tokens in the prompt (system prompt, history and the new message), cached ones included.
    pub input_tokens: u32,
    /// Tokens in the answer, reasoning tokens included.
    pub output_tokens: u32,
    /// Of `input_tokens`, those read from the upstream's prompt cache (billed cheaper).
    #[serde(default)]
    pub cached_input_tokens: u32,
    /// Of `input_tokens`, those written to the upstream's prompt cache (Anthropic bills them
    /// above the input price).
    #[serde(default)]
    pub cache_write_tokens: u32,
    /// Of `output_tokens`, those the model spent reasoning before answering.
    #[serde(default)]
    pub reasoning_tokens: u32,
    /// True when the counts are our estimate rather than the upstream's own report (a stream
    /// that ended without usage, a call cut short).
    pub is_estimated: bool,
}

impl TokenUsage {
    /// Counts reported by the upstream itself (no cache or reasoning detail).
    pub const fn reported(input_tokens: u32, output_tokens: u32) -> Self {
        Self {
            input_tokens,
            output_tokens,
            cached_input_tokens: 0,
            cache_write_tokens: 0,
            reasoning_tokens: 0,
            is_estimated: false,
        }
    }

    /// Counts we estimated because the upstream did not report them.
    pub const fn estimated(input_tokens: u32, output_tokens: u32) -> Self {
        Self {
            input_tokens,
            output_tokens,
            cached_input_tokens: 0,
            cache_write_tokens: 0,
            reasoning_tokens: 0,
            is_estimated: true,
        }
    }

    /// The same counts with the prompt-cache detail (cache reads and writes, both already
    /// counted in `input_tokens`).
    pub const fn with_cache(mut self, cached_input_tokens: u32, cache_write_tokens: u32) -> Self {
        self.cached_input_tokens = cached_input_tokens;
        self.cache_write_tokens = cache_write_tokens;
        self
    }

    /// The same counts with the reasoning detail (already counted in `output_tokens`).
    pub const fn with_reasoning(mut self, reasoning_tokens: u32) -> Self {
        self.reasoning_tokens = reasoning_tokens;
        self
    }

    /// Prompt tokens billed at the plain input price: the prompt minus cache reads and writes
    /// (never below zero, should an upstream report inconsistent counts).
    pub const fn uncached_input_tokens(&self) -> u32 {
        self.input_tokens
            .saturating_sub(self.cached_input_tokens)
            .saturating_sub(self.cache_write_tokens)
    }
}

/// Why the model stopped producing text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// A natural end of the answer (or a stop sequence).
    Stop,
    /// The `max_tokens` limit was reached.
    Length,
    /// The upstream withheld content by policy.
    ContentFilter,
    /// The model asked to call a tool.
    ToolCalls,
    /// Anything else, kept verbatim as the upstream spelled it.
    Other(String),
}

impl FinishReason {
    /// The OpenAI spelling (`stop`, `length`, `content_filter`, `tool_calls`), or the upstream's
    /// own word for anything else.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
            Self::ContentFilter => "content_filter",
            Self::ToolCalls => "tool_calls",
            Self::Other(other) => other,
        }
    }
}

/// A whole answer from a provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The answer's text (empty when the model only called tools).
    pub content: String,
    /// The tools the model called, in order.
    pub tool_calls: Vec<ToolCall>,
    /// The answer's token log probabilities, in OpenAI's `choices[].logprobs` shape, when they
    /// were asked for and the upstream gave them.
    pub logprobs: Option<serde_json::Value>,
    /// Tokens consumed.
    pub usage: TokenUsage,
    /// Why the answer ended.
    pub finish_reason: FinishReason,
    /// The model that answered, as the upstream named it (may be a dated snapshot of the
    /// specialist's model).
    pub model: String,
    /// The upstream's own content blocks, as the JSON text it sent, when the call came in by a
    /// door of the upstream's own wire format and asked for them (Anthropic's Messages door
    /// calling Anthropic): that door gives them back unchanged — thinking blocks and their
    /// signatures included. `None` otherwise.
    pub wire_content: Option<String>,
}

/// One event of a streamed answer: the normalised chunk every provider produces.
///
/// A well-formed stream is zero or more text, tool-call and reasoning events, in the order the
/// model produced them, followed by exactly one [`StreamEvent::Finished`]; concatenating the
/// [`StreamEvent::TextDelta`]s gives the whole answer's text (reasoning is not part of it). A stream that
/// fails part way ends with its provider's error type instead of `Finished`, carrying what the
/// call had consumed by then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// The next piece of the answer's text, in order.
    TextDelta(String),
    /// The next piece of a tool call: its first piece has the id and name, every piece a
    /// fragment of the arguments' JSON text, in order.
    ToolCallDelta(ToolCallDelta),
    /// The next piece of the model's visible reasoning (Anthropic's `thinking_delta`): not
    /// part of the answer's text. Consecutive pieces form one reasoning block.
    ReasoningDelta(String),
    /// The signature that closes the reasoning block under way (Anthropic's
    /// `signature_delta`), which a caller must send back with the block.
    ReasoningSignature(String),
    /// A reasoning block the upstream redacted: its opaque data, to be sent back as it is.
    RedactedReasoning(String),
    /// The end of the answer, with usage and why it ended.
    Finished {
        /// Tokens consumed (flagged when estimated).
        usage: TokenUsage,
        /// Why the answer ended.
        finish_reason: FinishReason,
        /// The model that answered, as the upstream named it.
        model: String,
    },
}

/// A piece of a streamed tool call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCallDelta {
    /// Which call of the answer (0 for the first), the same on every piece of one call.
    pub index: u32,
    /// The call's id, on its first piece.
    pub id: Option<String>,
    /// The tool's name, on its first piece.
    pub name: Option<String>,
    /// The next fragment of the arguments' JSON text.
    pub arguments: String,
}

/// A rough token count for text: one token per four characters, rounded up.
///
/// Used only when an upstream does not report usage (a stream cut short, a server without
/// `include_usage`); such counts are always flagged [`TokenUsage::is_estimated`]. Four characters
/// per token is the rule of thumb OpenAI documents for English text.
pub fn estimate_text_tokens(text: &str) -> u32 {
    let chars = text.chars().count();
    u32::try_from(chars.div_ceil(4)).unwrap_or(u32::MAX)
}

/// A rough token count for a prompt: the text of every message plus the per-message framing
/// that chat formats add (about three tokens per message, and three to prime the reply).
pub fn estimate_prompt_tokens(system_prompt: &str, messages: &[ChatMessage]) -> u32 {
    const PER_MESSAGE: u32 = 3;
    const REPLY_PRIMING: u32 = 3;
    let system = if system_prompt.is_empty() {
        0
    } else {
        estimate_text_tokens(system_prompt).saturating_add(PER_MESSAGE)
    };
    messages
        .iter()
        .map(|m| estimate_message_tokens(m).saturating_add(PER_MESSAGE))
        .fold(system.saturating_add(REPLY_PRIMING), u32::saturating_add)
}

/// What one message adds to a prompt: its text, the tool calls it carries, and a flat
/// allowance per image (the tokens an upstream charges for one depend on its size, which we do
/// not decode; 765 is OpenAI's count for a 1024×1024 image at high detail).
fn estimate_message_tokens(message: &ChatMessage) -> u32 {
    const PER_IMAGE: u32 = 765;
    message
        .content
        .iter()
        .map(|part| match part {
            ContentPart::Text(text) => estimate_text_tokens(text),
            ContentPart::Image { .. } => PER_IMAGE,
        })
        .chain(message.tool_calls.iter().map(|call| {
            estimate_text_tokens(&call.name).saturating_add(estimate_text_tokens(&call.arguments))
        }))
        .fold(0, u32::saturating_add)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_estimate_rounds_up_per_four_chars() {
        assert_eq!(estimate_text_tokens(""), 0);
        assert_eq!(estimate_text_tokens("abc"), 1);
        assert_eq!(estimate_text_tokens("abcd"), 1);
        assert_eq!(estimate_text_tokens("abcde"), 2);
        // Characters, not bytes: four two-byte characters are one token.
        assert_eq!(estimate_text_tokens("éééé"), 1);
    }

    #[test]
    fn prompt_estimate_counts_framing_per_message() {
        let messages = [
            ChatMessage::user("abcd"),
            ChatMessage::assistant("abcdefgh"),
        ];
        // system: 1 + 3, user: 1 + 3, assistant: 2 + 3, priming: 3
        assert_eq!(estimate_prompt_tokens("abcd", &messages), 16);
        assert_eq!(estimate_prompt_tokens("", &messages[..1]), 7);
    }

    #[test]
    fn finish_reason_keeps_unknown_spelling() {
        assert_eq!(FinishReason::Other("end_turn".into()).as_str(), "end_turn");
        assert_eq!(FinishReason::Length.as_str(), "length");
    }
}
