//! OpenAI's response objects, field for field as its API reference defines them.

use serde::Serialize;
use utoipa::ToSchema;

/// A `chat.completion` object.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ChatCompletion {
    /// `chatcmpl-` and the request id.
    pub id: String,
    /// Always `chat.completion`.
    pub object: &'static str,
    /// Unix time in seconds.
    pub created: i64,
    /// The specialist id asked for.
    pub model: String,
    pub choices: Vec<Choice>,
    pub usage: CompletionUsage,
    /// Always null: commander has no fingerprint to give.
    pub system_fingerprint: Option<String>,
}

/// The one choice of a completion.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Choice {
    pub index: u32,
    pub message: AssistantMessage,
    /// The answer's token log probabilities (`{"content": [...]}`) when asked for with
    /// `logprobs` and the upstream gave them; otherwise null.
    #[schema(value_type = Option<Object>)]
    pub logprobs: Option<serde_json::Value>,
    /// `stop`, `length`, `content_filter`, ...
    pub finish_reason: String,
}

/// The answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AssistantMessage {
    /// Always `assistant`.
    pub role: &'static str,
    /// The text; null when the model only called tools.
    pub content: Option<String>,
    /// Always null.
    pub refusal: Option<String>,
    /// The tools the model called, in order; absent when it called none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<MessageToolCall>,
}

/// A tool call of the answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MessageToolCall {
    /// The call's id, which the tool message answering it names.
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: CalledFunction,
}

/// The function a tool call calls.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CalledFunction {
    pub name: String,
    /// The arguments as JSON text, as the model wrote them (they may not parse).
    pub arguments: String,
}

/// Tokens used.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub(crate) struct CompletionUsage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u64,
    /// The part of the prompt read from the upstream's prompt cache.
    pub prompt_tokens_details: PromptTokensDetails,
    /// The part of the completion spent reasoning.
    pub completion_tokens_details: CompletionTokensDetails,
}

/// `usage.prompt_tokens_details`, as OpenAI reports it.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub(crate) struct PromptTokensDetails {
    pub cached_tokens: u32,
}

/// `usage.completion_tokens_details`, as OpenAI reports it.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub(crate) struct CompletionTokensDetails {
    pub reasoning_tokens: u32,
}

/// One `chat.completion.chunk` of a stream.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ChatCompletionChunk {
    pub id: String,
    /// Always `chat.completion.chunk`.
    pub object: &'static str,
    pub created: i64,
    pub model: String,
    pub system_fingerprint: Option<String>,
    /// Empty in the final usage chunk.
    pub choices: Vec<ChunkChoice>,
    /// Present only with `stream_options.include_usage`: null on every chunk but the last,
    /// which has no choices and the usage.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<CompletionUsage>)]
    pub usage: Option<Option<CompletionUsage>>,
}

/// A chunk's choice.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ChunkChoice {
    pub index: u32,
    pub delta: Delta,
    #[schema(value_type = Option<Object>)]
    pub logprobs: Option<serde_json::Value>,
    /// Null until the chunk that ends the answer.
    pub finish_reason: Option<String>,
}

/// What a chunk adds: the role first, then pieces of content; empty in the finishing chunk.
#[derive(Debug, Default, Serialize, ToSchema)]
pub(crate) struct Delta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Pieces of tool calls: the first of a call has its id and name, every piece a fragment of
    /// its arguments.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCallChunk>,
}

/// One piece of a streamed tool call, as OpenAI sends it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ToolCallChunk {
    /// Which call of the answer.
    pub index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Always `function`, on the first piece.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    pub function: FunctionChunk,
}

/// The function part of a streamed tool call piece.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct FunctionChunk {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub arguments: String,
}

/// A model object: one specialist.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Model {
    /// The specialist id.
    pub id: String,
    /// Always `model`.
    pub object: &'static str,
    /// Unix time the specialist was created.
    pub created: i64,
    /// Always `commander`.
    pub owned_by: &'static str,
}

/// `GET /v1/models`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ModelList {
    /// Always `list`.
    pub object: &'static str,
    pub data: Vec<Model>,
}

/// An error in OpenAI's shape.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OpenAiError {
    pub error: OpenAiErrorBody,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OpenAiErrorBody {
    pub message: String,
    /// `invalid_request_error` (also for a bad key, as OpenAI does), `permission_error`,
    /// `rate_limit_error` or `api_error`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The request field at fault, if one is.
    pub param: Option<String>,
    /// `model_not_found`, `invalid_api_key`, `rate_limit_exceeded`, or commander's own code.
    pub code: Option<String>,
}
