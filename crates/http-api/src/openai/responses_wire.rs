//! OpenAI's Response object and its output items, field for field as its API reference (and
//! the official SDK's `Response` model) defines them.

use core_domain::{ErrorCode, FinishReason, TokenUsage};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::responses_request::Echo;

/// A `response` object.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ResponseObject {
    /// `resp_` and the request id.
    pub id: String,
    /// Always `response`.
    pub object: &'static str,
    /// Unix time in seconds.
    pub created_at: i64,
    /// `in_progress` (stream events before the end), `completed`, `incomplete` or `failed`.
    pub status: ResponseStatus,
    /// Why a stream failed after it began; null otherwise.
    pub error: Option<ResponseError>,
    /// Why the answer is incomplete; null unless it is.
    pub incomplete_details: Option<IncompleteDetails>,
    /// The caller's `instructions`.
    pub instructions: Option<String>,
    /// The token limit the call ran with (the caller's, capped by the specialist's).
    pub max_output_tokens: u32,
    /// The model that answered.
    pub model: String,
    /// The answer: a message with its text, and a function call per tool called.
    pub output: Vec<OutputItem>,
    pub parallel_tool_calls: bool,
    /// Always null: nothing is stored to continue from.
    pub previous_response_id: Option<String>,
    /// `{"effort", "summary"}` as asked.
    #[schema(value_type = Object)]
    pub reasoning: Value,
    /// Always false: the door stores nothing.
    pub store: bool,
    /// Always false.
    pub background: bool,
    /// The temperature the call ran with (the caller's, capped by the specialist's).
    pub temperature: f64,
    /// `{"format": ...}` as asked.
    #[schema(value_type = Object)]
    pub text: Value,
    #[schema(value_type = Object)]
    pub tool_choice: Value,
    /// The function tools offered.
    #[schema(value_type = Vec<Object>)]
    pub tools: Vec<Value>,
    pub top_p: Option<f64>,
    /// Always `disabled`.
    pub truncation: &'static str,
    /// Tokens used; null until the answer ends.
    pub usage: Option<ResponseUsage>,
    pub user: Option<String>,
    pub safety_identifier: Option<String>,
    /// The caller's metadata.
    #[schema(value_type = Object)]
    pub metadata: Value,
}

impl ResponseObject {
    /// A response to a request echoing `echo`, still `in_progress` and without output.
    pub fn new(id: String, created_at: i64, model: String, echo: Echo) -> Self {
        Self {
            id,
            object: "response",
            created_at,
            status: ResponseStatus::InProgress,
            error: None,
            incomplete_details: None,
            instructions: echo.instructions,
            max_output_tokens: echo.max_output_tokens,
            model,
            output: Vec::new(),
            parallel_tool_calls: echo.parallel_tool_calls,
            previous_response_id: None,
            reasoning: echo.reasoning,
            store: false,
            background: false,
            temperature: echo.temperature,
            text: echo.text,
            tool_choice: echo.tool_choice,
            tools: echo.tools,
            top_p: echo.top_p,
            truncation: "disabled",
            usage: None,
            user: echo.user,
            safety_identifier: echo.safety_identifier,
            metadata: echo.metadata,
        }
    }

    /// Ends the response: its status and incomplete details follow `finish_reason`.
    pub fn finish(&mut self, finish_reason: &FinishReason, usage: &TokenUsage) {
        self.usage = Some(ResponseUsage::from(usage));
        let reason = match finish_reason {
            FinishReason::Length => Some("max_output_tokens"),
            FinishReason::ContentFilter => Some("content_filter"),
            _ => None,
        };
        self.status = match reason {
            Some(_) => ResponseStatus::Incomplete,
            None => ResponseStatus::Completed,
        };
        self.incomplete_details = reason.map(|reason| IncompleteDetails { reason });
    }

    /// Ends the response as failed with `code`.
    pub fn fail(&mut self, code: ErrorCode, message: &str) {
        self.status = ResponseStatus::Failed;
        self.error = Some(ResponseError {
            // OpenAI's codes for a response are a closed set its SDKs type; commander's own
            // code leads the message.
            code: match code {
                ErrorCode::UpstreamRateLimited => "rate_limit_exceeded",
                _ => "server_error",
            },
            message: format!("{code}: {message}"),
        });
    }
}

/// Where a response stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ResponseStatus {
    InProgress,
    Completed,
    Incomplete,
    Failed,
}

impl ResponseStatus {
    /// An output item's status when the response ends with this one.
    pub fn of_item(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::InProgress => "in_progress",
            Self::Incomplete | Self::Failed => "incomplete",
        }
    }
}

/// Why a stream failed after it began.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ResponseError {
    /// `server_error`, or `rate_limit_exceeded` when the upstream limited the call.
    pub code: &'static str,
    /// commander's error code, then what happened.
    pub message: String,
}

/// Why an answer is incomplete.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct IncompleteDetails {
    /// `max_output_tokens` or `content_filter`.
    pub reason: &'static str,
}

/// One item of a response's output.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum OutputItem {
    /// The model's text.
    Message {
        /// `msg_` and the request id (and the item's place after the first).
        id: String,
        /// `in_progress`, `completed` or `incomplete`.
        status: &'static str,
        /// Always `assistant`.
        role: &'static str,
        content: Vec<OutputText>,
    },
    /// A function the model called.
    FunctionCall {
        /// `fc_` and the request id and the call's place.
        id: String,
        /// The id the caller's `function_call_output` names.
        call_id: String,
        name: String,
        /// The arguments as JSON text, as the model wrote them (they may not parse).
        arguments: String,
        /// `in_progress`, `completed` or `incomplete`.
        status: &'static str,
    },
}

impl OutputItem {
    /// Sets the item's status.
    pub fn set_status(&mut self, to: &'static str) {
        match self {
            Self::Message { status, .. } | Self::FunctionCall { status, .. } => *status = to,
        }
    }
}

/// A message's text.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct OutputText {
    /// Always `output_text`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub text: String,
    /// Always empty: no citations.
    #[schema(value_type = Vec<Object>)]
    pub annotations: Vec<Value>,
    /// Always empty.
    #[schema(value_type = Vec<Object>)]
    pub logprobs: Vec<Value>,
}

impl OutputText {
    /// `text` as an output part.
    pub fn new(text: String) -> Self {
        Self {
            kind: "output_text",
            text,
            annotations: Vec::new(),
            logprobs: Vec::new(),
        }
    }
}

/// Tokens used, as the Responses API reports them.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub(crate) struct ResponseUsage {
    pub input_tokens: u32,
    pub input_tokens_details: InputTokensDetails,
    pub output_tokens: u32,
    pub output_tokens_details: OutputTokensDetails,
    pub total_tokens: u64,
}

/// `usage.input_tokens_details`.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub(crate) struct InputTokensDetails {
    /// Read from the upstream's prompt cache.
    pub cached_tokens: u32,
    /// Written to the upstream's prompt cache.
    pub cache_write_tokens: u32,
}

/// `usage.output_tokens_details`.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub(crate) struct OutputTokensDetails {
    /// Spent reasoning.
    pub reasoning_tokens: u32,
}

impl From<&TokenUsage> for ResponseUsage {
    fn from(usage: &TokenUsage) -> Self {
        Self {
            input_tokens: usage.input_tokens,
            input_tokens_details: InputTokensDetails {
                cached_tokens: usage.cached_input_tokens,
                cache_write_tokens: usage.cache_write_tokens,
            },
            output_tokens: usage.output_tokens,
            output_tokens_details: OutputTokensDetails {
                reasoning_tokens: usage.reasoning_tokens,
            },
            total_tokens: u64::from(usage.input_tokens) + u64::from(usage.output_tokens),
        }
    }
}
