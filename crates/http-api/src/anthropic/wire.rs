//! Anthropic's response objects, field for field as its Messages API reference defines them.

use serde::Serialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;

/// A `message`: the whole answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Message {
    /// `msg_` and the request id.
    pub id: String,
    /// Always `message`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Always `assistant`.
    pub role: &'static str,
    /// The model that answered, as the upstream named it.
    pub model: String,
    /// The answer's content blocks: `text`, `tool_use`, `thinking`, `redacted_thinking`, and
    /// from an Anthropic upstream any block it sent, as it sent it.
    #[schema(value_type = Vec<Object>)]
    pub content: Content,
    /// `end_turn`, `max_tokens`, `stop_sequence`, `tool_use`, `pause_turn` or `refusal`; null
    /// only in `message_start`.
    pub stop_reason: Option<String>,
    /// Always null: which stop sequence matched is not carried through the gateway.
    pub stop_sequence: Option<String>,
    pub usage: Usage,
}

/// A message's content: blocks the gateway wrote, or the upstream's own JSON text.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum Content {
    /// Blocks translated from the answer.
    Blocks(Vec<ContentBlock>),
    /// An Anthropic upstream's `content` array, exactly as it sent it.
    Raw(Box<RawValue>),
}

/// One content block of an answer, as the gateway writes it (thinking blocks only come from an
/// Anthropic upstream, whose own blocks are given back as they came).
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ContentBlock {
    /// Text.
    Text { text: String },
    /// A tool call: its input is a JSON object.
    ToolUse {
        id: String,
        name: String,
        #[schema(value_type = Object)]
        input: serde_json::Value,
    },
}

/// Tokens used, as Anthropic counts them: `input_tokens` excludes the cache's reads and writes.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub(crate) struct Usage {
    pub input_tokens: u32,
    pub output_tokens: u32,
    pub cache_creation_input_tokens: u32,
    pub cache_read_input_tokens: u32,
}

impl From<&core_domain::TokenUsage> for Usage {
    fn from(usage: &core_domain::TokenUsage) -> Self {
        Self {
            // Ours counts the cache's reads and writes in the input; Anthropic's does not.
            input_tokens: usage
                .input_tokens
                .saturating_sub(usage.cached_input_tokens)
                .saturating_sub(usage.cache_write_tokens),
            output_tokens: usage.output_tokens,
            cache_creation_input_tokens: usage.cache_write_tokens,
            cache_read_input_tokens: usage.cached_input_tokens,
        }
    }
}

/// `POST /v1/messages/count_tokens`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TokenCount {
    /// The prompt's tokens: the upstream's own count for a specialist on Anthropic, commander's
    /// estimate otherwise.
    pub input_tokens: u32,
}

/// An error in Anthropic's shape.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AnthropicError {
    /// Always `error`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub error: AnthropicErrorBody,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AnthropicErrorBody {
    /// `invalid_request_error`, `authentication_error`, `permission_error`, `not_found_error`,
    /// `request_too_large`, `rate_limit_error`, `billing_error`, `api_error` or
    /// `overloaded_error`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Commander's own code, then what went wrong and every field at fault.
    pub message: String,
}
