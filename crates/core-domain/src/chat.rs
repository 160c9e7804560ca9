//! A conversation and everything a caller may ask of the model besides it: content parts
//! (text, images), tools, structured output and sampling. One model for every door and every
//! provider; each provider maps it onto its wire format or refuses what it cannot honour.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Who said a message in a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions that frame the conversation (a specialist's system prompt).
    System,
    /// The human (or program) asking.
    User,
    /// The model answering.
    Assistant,
    /// The result of a tool the model called.
    Tool,
}

impl Role {
    /// The lower-case spelling used by every upstream API.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::User => "user",
            Self::Assistant => "assistant",
            Self::Tool => "tool",
        }
    }
}

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImageSource {
    /// An `http(s)` URL the upstream fetches itself.
    Url(String),
    /// The image inline, as OpenAI's `data:` URLs carry it.
    Base64 {
        /// Its media type (`image/png`, `image/jpeg`, ...).
        media_type: String,
        /// The bytes, base64-encoded.
        data: String,
    },
}

/// How closely the model should look at an image (OpenAI's `detail`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageDetail {
    /// The upstream decides.
    Auto,
    /// A low-resolution look, cheaper.
    Low,
    /// A high-resolution look.
    High,
}

/// One piece of a message's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContentPart {
    /// Text.
    Text(String),
    /// An image.
    Image {
        /// Where it comes from.
        source: ImageSource,
        /// How closely to look, when the caller said.
        detail: Option<ImageDetail>,
    },
}

impl ContentPart {
    /// The characters of text in `parts` (images count none): what a door's
    /// `max_message_chars` limits.
    pub fn text_chars(parts: &[Self]) -> usize {
        parts
            .iter()
            .map(|part| match part {
                Self::Text(text) => text.chars().count(),
                Self::Image { .. } => 0,
            })
            .sum()
    }
}

/// A tool the model called, as the assistant message (or answer) carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The call's id, which the tool result names.
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// The arguments, as the JSON text the model wrote (it may not parse: models err).
    pub arguments: String,
}

/// One message of a conversation.
///
/// `tool_calls` are only an assistant's, `tool_call_id` only a tool result's; the doors check
/// that before building one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who said it.
    pub role: Role,
    /// What was said, in order. Empty for an assistant message that only calls tools.
    pub content: Vec<ContentPart>,
    /// The tools an assistant message called.
    pub tool_calls: Vec<ToolCall>,
    /// The call a tool message answers.
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    fn text_of(role: Role, content: String) -> Self {
        Self {
            role,
            content: vec![ContentPart::Text(content)],
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }

    /// A message from the user.
    pub fn user(content: impl Into<String>) -> Self {
        Self::text_of(Role::User, content.into())
    }

    /// A message from the assistant.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::text_of(Role::Assistant, content.into())
    }

    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::text_of(Role::System, content.into())
    }

    /// The result of the tool call `tool_call_id`.
    pub fn tool_result(tool_call_id: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            tool_call_id: Some(tool_call_id.into()),
            ..Self::text_of(Role::Tool, content.into())
        }
    }

    /// The message's text: its text parts, joined. Borrowed when the message is one text
    /// part (nearly every message), so building a request copies no text.
    pub fn text(&self) -> Cow<'_, str> {
        match self.content.as_slice() {
            [ContentPart::Text(text)] => Cow::Borrowed(text),
            parts => {
                let mut text = String::new();
                for part in parts {
                    if let ContentPart::Text(t) = part {
                        text.push_str(t);
                    }
                }
                Cow::Owned(text)
            }
        }
    }

    /// True when the message holds an image.
    pub fn has_images(&self) -> bool {
        self.content
            .iter()
            .any(|p| matches!(p, ContentPart::Image { .. }))
    }
}

/// A tool the model may call: a function with JSON Schema parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolDefinition {
    /// Its name (`^[a-zA-Z0-9_-]{1,64}$`, the strictest of the upstreams' rules).
    pub name: String,
    /// What it does, for the model.
    pub description: Option<String>,
    /// Its parameters, a JSON Schema object.
    pub parameters: serde_json::Value,
    /// OpenAI's strict mode: the arguments must match the schema exactly.
    pub strict: Option<bool>,
}

/// Whether and which tool the model must call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToolChoice {
    /// The model decides.
    Auto,
    /// No tool may be called.
    None,
    /// Some tool must be called.
    Required,
    /// This tool must be called.
    Tool(String),
}

/// The shape the answer must take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ResponseFormat {
    /// Free text (the default).
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON matching a schema.
    JsonSchema(JsonSchemaFormat),
}

/// A named JSON Schema the answer must match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonSchemaFormat {
    /// The schema's name.
    pub name: String,
    /// What the output is, for the model.
    pub description: Option<String>,
    /// The schema.
    pub schema: serde_json::Value,
    /// Whether the answer must match it exactly.
    pub strict: bool,
}

/// How hard a reasoning model should think (OpenAI's `reasoning_effort`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReasoningEffort {
    /// No reasoning where the model allows it.
    None,
    /// The least reasoning.
    Minimal,
    /// Little.
    Low,
    /// The default of most models.
    Medium,
    /// The most.
    High,
}

impl ReasoningEffort {
    /// OpenAI's spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Minimal => "minimal",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }
}

/// Everything a caller may ask of the model besides the conversation, temperature and the
/// answer's length (which a specialist caps). The default asks nothing: plain chat.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatOptions {
    /// Tools the model may call.
    pub tools: Vec<ToolDefinition>,
    /// Whether and which tool it must call.
    pub tool_choice: Option<ToolChoice>,
    /// Whether it may call several tools in one turn.
    pub parallel_tool_calls: Option<bool>,
    /// The shape of the answer.
    pub response_format: Option<ResponseFormat>,
    /// Sequences that end the answer where they would appear (not included).
    pub stop: Vec<String>,
    /// Nucleus sampling.
    pub top_p: Option<f64>,
    /// A seed for repeatable sampling, where the upstream offers it.
    pub seed: Option<i64>,
    /// Penalty on tokens already present (-2 to 2).
    pub presence_penalty: Option<f64>,
    /// Penalty on tokens by their frequency so far (-2 to 2).
    pub frequency_penalty: Option<f64>,
    /// Bias per token id (-100 to 100).
    pub logit_bias: BTreeMap<u32, i32>,
    /// Whether to return the answer's token log probabilities.
    pub logprobs: bool,
    /// How many alternatives per token to return with them (0 to 20).
    pub top_logprobs: Option<u8>,
    /// How hard a reasoning model should think.
    pub reasoning_effort: Option<ReasoningEffort>,
    /// The caller's own name for its end user (recorded, and passed on where the upstream
    /// takes it).
    pub user: Option<String>,
}

impl ChatOptions {
    /// True when a tool is on offer (tool choice `none` offers nothing).
    pub fn offers_tools(&self) -> bool {
        !self.tools.is_empty() && self.tool_choice != Some(ToolChoice::None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_joins_the_text_parts_and_skips_images() {
        let message = ChatMessage {
            role: Role::User,
            content: vec![
                ContentPart::Text("What is ".into()),
                ContentPart::Image {
                    source: ImageSource::Url("https://example.com/a.png".into()),
                    detail: None,
                },
                ContentPart::Text("this?".into()),
            ],
            tool_calls: Vec::new(),
            tool_call_id: None,
        };
        assert_eq!(message.text(), "What is this?");
        assert!(message.has_images());
        assert!(!ChatMessage::user("hi").has_images());
    }

    #[test]
    fn a_tool_result_names_its_call() {
        let result = ChatMessage::tool_result("call_1", "42");
        assert_eq!(result.role, Role::Tool);
        assert_eq!(result.tool_call_id.as_deref(), Some("call_1"));
        assert_eq!(result.text(), "42");
        assert_eq!(Role::Tool.as_str(), "tool");
    }

    #[test]
    fn tool_choice_none_offers_no_tools() {
        let tool = ToolDefinition {
            name: "lookup".into(),
            description: None,
            parameters: serde_json::json!({"type": "object"}),
            strict: None,
        };
        let mut options = ChatOptions {
            tools: vec![tool],
            ..ChatOptions::default()
        };
        assert!(options.offers_tools());
        options.tool_choice = Some(ToolChoice::None);
        assert!(!options.offers_tools());
        assert!(!ChatOptions::default().offers_tools());
    }
}
