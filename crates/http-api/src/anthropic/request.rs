//! The Messages request, as Anthropic's reference defines it: kept as the JSON text the caller
//! sent (for an Anthropic upstream, which receives it byte for byte) and translated into the
//! chat model (for the other providers, and for estimates, budgets and fallbacks everywhere).

use std::collections::HashSet;
use std::sync::Arc;

use core_domain::{
    ChatMessage, ChatOptions, ContentPart, ImageSource, ProviderKind, ReasoningEffort, Role,
    Specialist, ToolCall, ToolChoice, ToolDefinition, ValidationErrors,
};
use providers::{AnthropicNative, ProviderRequest};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::chat::{Problems, effective_limits, provider_request};
use crate::{ApiCode, ApiError, ChatLimits};

/// `POST /v1/messages` (and, without `max_tokens`, `POST /v1/messages/count_tokens`). Content
/// blocks, tools and `thinking` are read as JSON and checked block by block, so a block type
/// the gateway does not know still reaches an Anthropic upstream; other top-level fields are
/// passed on to Anthropic as sent and refused (400) for the other providers.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct MessagesRequest {
    /// A specialist id or one of its aliases.
    model: String,
    /// The most tokens the answer may have: required on `/v1/messages`, capped by the
    /// specialist's own limit.
    max_tokens: Option<i64>,
    /// The conversation: `user` and `assistant` messages whose content is a string or blocks
    /// (`text`, `image`, `document`, `tool_use`, `tool_result`, `thinking`,
    /// `redacted_thinking`).
    messages: Vec<WireMessage>,
    /// A string or `text` blocks, placed after the specialist's system prompt.
    #[schema(value_type = Option<Object>)]
    system: Option<Value>,
    stop_sequences: Option<Vec<String>>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    /// Anthropic only.
    top_k: Option<i64>,
    stream: Option<bool>,
    /// Custom tools (`name`, `description`, `input_schema`); Anthropic's server tools reach an
    /// Anthropic upstream only.
    #[schema(value_type = Option<Vec<Object>>)]
    tools: Option<Vec<Value>>,
    /// `{"type": "auto" | "any" | "tool" | "none", "name"?, "disable_parallel_tool_use"?}`.
    #[schema(value_type = Option<Object>)]
    tool_choice: Option<Value>,
    /// `{"type": "enabled", "budget_tokens"}` or `{"type": "disabled"}`.
    #[schema(value_type = Option<Object>)]
    thinking: Option<Value>,
    metadata: Option<Metadata>,
}

/// One message of the conversation.
#[derive(Debug, Deserialize, ToSchema)]
struct WireMessage {
    /// `user` or `assistant`.
    role: String,
    /// A string, or an array of content blocks.
    #[schema(value_type = Object)]
    content: Value,
}

/// `metadata`: who the end user is.
#[derive(Debug, Deserialize, ToSchema)]
struct Metadata {
    /// The caller's id for its end user, recorded on the usage row.
    user_id: Option<String>,
}

/// The top-level fields the translation reads; any other is Anthropic's alone.
const TRANSLATED_FIELDS: [&str; 13] = [
    "model",
    "max_tokens",
    "messages",
    "system",
    "stop_sequences",
    "temperature",
    "top_p",
    "top_k",
    "stream",
    "tools",
    "tool_choice",
    "thinking",
    "metadata",
];

/// Fields another provider can do without: `service_tier` only chooses Anthropic's capacity.
const IGNORED_WHEN_TRANSLATED: [&str; 1] = ["service_tier"];

/// The fields the gateway sets itself on the native request: all the others go as sent.
const SET_BY_THE_GATEWAY: [&str; 4] = ["model", "max_tokens", "stream", "system"];

/// Which route the body came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// `/v1/messages`: `max_tokens` is required.
    Message,
    /// `/v1/messages/count_tokens`: no answer, so no `max_tokens`.
    CountTokens,
}

/// The body's top-level fields in the caller's order, each value the exact JSON text it sent.
/// A map type would lose the order (or, for a `BTreeMap`, reorder it), and Anthropic's cache
/// and signatures care about bytes.
struct RawFields(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for RawFields {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = RawFields;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<RawFields, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(field) = map.next_entry::<String, Box<RawValue>>()? {
                    fields.push(field);
                }
                Ok(RawFields(fields))
            }
        }
        deserializer.deserialize_map(Fields)
    }
}

/// A request that passed validation: the model asked for, the conversation in the chat model,
/// and the caller's request as it sent it.
#[derive(Debug)]
pub(crate) struct Messages {
    /// The model asked for: a specialist id or alias, resolved by the catalogue.
    pub model: String,
    /// Whether the answer is streamed.
    pub stream: bool,
    /// The caller's system text, placed after the specialist's prompt.
    system: Vec<String>,
    messages: Vec<ChatMessage>,
    temperature: Option<f64>,
    max_tokens: Option<u32>,
    /// `thinking.budget_tokens`, when thinking is enabled.
    thinking_budget: Option<u64>,
    options: ChatOptions,
    /// Whether any tool is offered, Anthropic's server tools included (which the chat model
    /// cannot hold, but a specialist without tools must refuse too).
    offers_any_tool: bool,
    /// Whether a PDF, URL or file document is to be read (which Anthropic reads as pages of
    /// images, and the chat model cannot hold).
    reads_documents: bool,
    /// What only Anthropic can take, each named by its field: refused when the specialist is
    /// on another provider.
    untranslatable: ValidationErrors,
    /// The caller's request as sent, for an Anthropic upstream.
    native: AnthropicNative,
}

/// Reads `body` (the bytes the caller sent) for `purpose`, with the caller's `anthropic-beta`
/// header: a body that is not a JSON object, or whose fields have the wrong types, is a 400
/// `invalid_request`; invalid values are listed together.
pub(crate) fn parse(
    body: &[u8],
    beta: Option<&str>,
    purpose: Purpose,
    limits: &ChatLimits,
) -> Result<Messages, ApiError> {
    let raw: RawFields = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            ApiCode::InvalidRequest,
            format!("the body must be a JSON object: {e}"),
        )
    })?;
    let request: MessagesRequest = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            ApiCode::InvalidRequest,
            format!("invalid request body: {e}"),
        )
    })?;
    request.validate(raw, beta, purpose, limits)
}

/// Anthropic's rule for tool names.
fn is_valid_tool_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The reasoning effort of a thinking budget, for providers that take an effort instead.
fn effort_of_budget(budget: u64) -> ReasoningEffort {
    match budget {
        0..4_096 => ReasoningEffort::Low,
        4_096..16_384 => ReasoningEffort::Medium,
        _ => ReasoningEffort::High,
    }
}

impl MessagesRequest {
    fn validate(
        self,
        raw: RawFields,
        beta: Option<&str>,
        purpose: Purpose,
        limits: &ChatLimits,
    ) -> Result<Messages, ApiError> {
        let mut problems = Problems::default();
        let errors = &mut problems.invalid;
        let max_tokens = match (self.max_tokens, purpose) {
            (None, Purpose::Message) => {
                errors.push("max_tokens", "is required");
                None
            }
            (_, Purpose::CountTokens) => None,
            (Some(n), Purpose::Message) => {
                u32::try_from(n).ok().filter(|n| *n >= 1).or_else(|| {
                    errors.push("max_tokens", "must be a positive integer");
                    None
                })
            }
        };
        if let Some(t) = self.temperature
            && !(0.0..=1.0).contains(&t)
        {
            errors.push("temperature", "must be between 0 and 1");
        }
        if let Some(p) = self.top_p
            && !(0.0..=1.0).contains(&p)
        {
            errors.push("top_p", "must be between 0 and 1");
        }
        match self.top_k {
            Some(k) if k < 0 => errors.push("top_k", "must be a non-negative integer"),
            Some(_) => problems
                .unsupported
                .push("top_k", "only Anthropic takes top_k"),
            None => {}
        }
        let stop = self.stop_sequences.unwrap_or_default();
        if stop.iter().any(String::is_empty) {
            problems
                .invalid
                .push("stop_sequences", "sequences must not be empty");
        }
        if self.messages.is_empty() {
            problems
                .invalid
                .push("messages", "must contain at least one message");
        }
        if self.messages.len() > limits.max_history_messages + 1 {
            problems.invalid.push(
                "messages",
                format!(
                    "must have at most {} messages",
                    limits.max_history_messages + 1
                ),
            );
        }
        for (field, _) in &raw.0 {
            if !TRANSLATED_FIELDS.contains(&field.as_str())
                && !IGNORED_WHEN_TRANSLATED.contains(&field.as_str())
            {
                problems.unsupported.push(
                    field.as_str(),
                    "is Anthropic's own and cannot be translated for this provider",
                );
            }
        }
        let system = system(self.system, &mut problems);
        let (tools, tool_names) = tools(self.tools.unwrap_or_default(), &mut problems);
        let (tool_choice, parallel_tool_calls) =
            tool_choice(self.tool_choice, &tool_names, &mut problems.invalid);
        let (reasoning_effort, thinking_budget) = thinking(self.thinking, &mut problems);
        let reads_documents = self.messages.iter().any(reads_documents);
        // Asked of the wire: a user message holding only what the translation leaves out (a
        // PDF for Anthropic) is still someone asking.
        let asks = self.messages.iter().any(|m| m.role == "user");
        let messages = conversation(self.messages, limits, &mut problems);
        if problems.invalid.is_empty() && !asks {
            problems
                .invalid
                .push("messages", "must contain a user message");
        }
        if !problems.invalid.is_empty() {
            return Err(ApiError::validation(problems.invalid));
        }
        let mut system_raw = None;
        let fields = raw
            .0
            .into_iter()
            .filter_map(|(name, value)| {
                if name == "system" {
                    // Moved, not copied: the raw value already is the text sent.
                    system_raw = Some(Box::<str>::from(value));
                    return None;
                }
                (!SET_BY_THE_GATEWAY.contains(&name.as_str()))
                    .then(|| (name.into_boxed_str(), Box::<str>::from(value)))
            })
            .collect();
        Ok(Messages {
            model: self.model,
            stream: self.stream.unwrap_or(false),
            system,
            messages,
            temperature: self.temperature,
            max_tokens,
            thinking_budget,
            offers_any_tool: !tool_names.is_empty(),
            reads_documents,
            options: ChatOptions {
                tools,
                tool_choice,
                parallel_tool_calls,
                stop,
                top_p: self.top_p,
                reasoning_effort,
                user: self.metadata.and_then(|m| m.user_id),
                ..ChatOptions::default()
            },
            untranslatable: problems.unsupported,
            native: AnthropicNative {
                system: system_raw,
                fields,
                beta: beta.map(Box::from),
            },
        })
    }
}

/// The caller's system text: a string, or `text` blocks (whose `cache_control` only Anthropic
/// reads).
fn system(system: Option<Value>, problems: &mut Problems) -> Vec<String> {
    match system {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(text)) => vec![text],
        Some(Value::Array(blocks)) => {
            let mut texts = Vec::with_capacity(blocks.len());
            for (i, block) in blocks.iter().enumerate() {
                if problems.stop_listing(|| format!("system[{i}]")) {
                    break;
                }
                match (
                    block.get("type").and_then(Value::as_str),
                    block.get("text").and_then(Value::as_str),
                ) {
                    (Some("text"), Some(text)) => texts.push(text.to_owned()),
                    _ => problems
                        .invalid
                        .push(format!("system[{i}]"), "must be a text block"),
                }
            }
            texts
        }
        Some(_) => {
            problems
                .invalid
                .push("system", "must be a string or an array of text blocks");
            Vec::new()
        }
    }
}

/// The custom tools, in the chat model, and the name of every tool offered (server tools too).
fn tools(tools: Vec<Value>, problems: &mut Problems) -> (Vec<ToolDefinition>, HashSet<String>) {
    let mut definitions = Vec::with_capacity(tools.len());
    // A set: a body of 70,000 tools checked against a list is billions of comparisons.
    let mut names: HashSet<String> = HashSet::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        if problems.stop_listing(|| format!("tools[{i}]")) {
            break;
        }
        let field = format!("tools[{i}]");
        let Some(name) = tool.get("name").and_then(Value::as_str) else {
            problems
                .invalid
                .push(format!("{field}.name"), "is required");
            continue;
        };
        if !names.insert(name.to_owned()) {
            problems.invalid.push(
                format!("{field}.name"),
                "names another tool already offered",
            );
        }
        match tool.get("type").and_then(Value::as_str) {
            None | Some("custom") => {}
            Some(server) => {
                // Anthropic's own tools (web search, bash, the text editor...): it runs them.
                problems.unsupported.push(
                    field,
                    format!("'{server}' is a tool only Anthropic provides"),
                );
                continue;
            }
        }
        if !is_valid_tool_name(name) {
            problems.invalid.push(
                format!("{field}.name"),
                "must be 1 to 128 letters, digits, underscores or dashes",
            );
        }
        let Some(schema) = tool.get("input_schema").filter(|s| s.is_object()) else {
            problems.invalid.push(
                format!("{field}.input_schema"),
                "is required: a JSON Schema object",
            );
            continue;
        };
        let description = match tool.get("description") {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => Some(text.clone()),
            Some(_) => {
                problems
                    .invalid
                    .push(format!("{field}.description"), "must be a string");
                None
            }
        };
        definitions.push(ToolDefinition {
            name: name.to_owned(),
            description,
            parameters: schema.clone(),
            strict: None,
        });
    }
    (definitions, names)
}

/// `tool_choice`, which must name an offered tool, and whether parallel calls are allowed.
fn tool_choice(
    choice: Option<Value>,
    names: &HashSet<String>,
    errors: &mut ValidationErrors,
) -> (Option<ToolChoice>, Option<bool>) {
    let Some(choice) = choice.filter(|c| !c.is_null()) else {
        return (None, None);
    };
    let parallel = match choice.get("disable_parallel_tool_use") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(disable)) => disable.then_some(false),
        Some(_) => {
            errors.push("tool_choice.disable_parallel_tool_use", "must be a boolean");
            None
        }
    };
    let picked = match choice.get("type").and_then(Value::as_str) {
        Some("auto") => ToolChoice::Auto,
        Some("none") => ToolChoice::None,
        Some("any") => ToolChoice::Required,
        Some("tool") => match choice.get("name").and_then(Value::as_str) {
            Some(name) if names.contains(name) => ToolChoice::Tool(name.to_owned()),
            Some(name) => {
                errors.push(
                    "tool_choice.name",
                    format!("names '{name}', which is not an offered tool"),
                );
                return (None, None);
            }
            None => {
                errors.push("tool_choice.name", "is required with type tool");
                return (None, None);
            }
        },
        _ => {
            errors.push("tool_choice.type", "must be auto, any, tool or none");
            return (None, None);
        }
    };
    if matches!(picked, ToolChoice::Required | ToolChoice::Tool(_)) && names.is_empty() {
        errors.push("tool_choice", "needs tools to choose from");
    }
    (Some(picked), parallel)
}

/// `thinking`, as the reasoning effort other providers take, and its budget when enabled.
fn thinking(
    thinking: Option<Value>,
    problems: &mut Problems,
) -> (Option<ReasoningEffort>, Option<u64>) {
    let Some(thinking) = thinking.filter(|t| !t.is_null()) else {
        return (None, None);
    };
    match thinking.get("type").and_then(Value::as_str) {
        Some("enabled") => match thinking.get("budget_tokens").and_then(Value::as_u64) {
            Some(budget) if budget >= 1024 => (Some(effort_of_budget(budget)), Some(budget)),
            _ => {
                problems.invalid.push(
                    "thinking.budget_tokens",
                    "must be an integer of at least 1024",
                );
                (None, None)
            }
        },
        Some("disabled") => (None, None),
        Some(other) => {
            problems.unsupported.push(
                "thinking.type",
                format!("'{other}' thinking is Anthropic's own"),
            );
            (None, None)
        }
        None => {
            problems
                .invalid
                .push("thinking.type", "must be enabled or disabled");
            (None, None)
        }
    }
}

/// Whether `message` holds a document that is not text (a PDF, a URL, a file), itself or in a
/// tool result.
fn reads_documents(message: &WireMessage) -> bool {
    fn visual(block: &Value) -> bool {
        block.get("type").and_then(Value::as_str) == Some("document")
            && !matches!(
                block.pointer("/source/type").and_then(Value::as_str),
                Some("text" | "content")
            )
    }
    message.content.as_array().is_some_and(|blocks| {
        blocks.iter().any(|block| {
            visual(block)
                || block
                    .get("content")
                    .and_then(Value::as_array)
                    .is_some_and(|parts| parts.iter().any(visual))
        })
    })
}

/// The conversation in the chat model: a user message's `tool_result` blocks become tool
/// messages (before its other content, as Anthropic requires them first), an assistant's
/// `tool_use` blocks its tool calls. Thinking blocks are dropped: they are the model's earlier
/// reasoning, which Anthropic itself leaves out of earlier turns, and no other provider can
/// take them.
fn conversation(
    wire: Vec<WireMessage>,
    limits: &ChatLimits,
    problems: &mut Problems,
) -> Vec<ChatMessage> {
    let mut messages = Vec::with_capacity(wire.len());
    let last = wire.len().saturating_sub(1);
    for (i, message) in wire.into_iter().enumerate() {
        if problems.stop_listing(|| format!("messages[{i}]")) {
            break;
        }
        let field = format!("messages[{i}]");
        let role = match message.role.as_str() {
            "user" => Role::User,
            "assistant" => Role::Assistant,
            _ => {
                problems
                    .invalid
                    .push(format!("{field}.role"), "must be user or assistant");
                continue;
            }
        };
        let blocks = match message.content {
            Value::String(text) => vec![serde_json::json!({"type": "text", "text": text})],
            Value::Array(blocks) => blocks,
            _ => {
                problems.invalid.push(
                    format!("{field}.content"),
                    "must be a string or an array of content blocks",
                );
                continue;
            }
        };
        // Anthropic's rule: only a final assistant message (a prefill) may be empty.
        let is_empty = match blocks.as_slice() {
            [] => true,
            [only] => {
                only.get("type").and_then(Value::as_str) == Some("text") && only["text"] == ""
            }
            _ => false,
        };
        if is_empty && !(i == last && role == Role::Assistant) {
            problems
                .invalid
                .push(format!("{field}.content"), "must not be empty");
            continue;
        }
        let mut turn = Turn::default();
        for (j, block) in blocks.iter().enumerate() {
            if problems.stop_listing(|| format!("{field}.content[{j}]")) {
                break;
            }
            turn.read(block, role, &format!("{field}.content[{j}]"), problems);
        }
        if turn.chars > limits.max_message_chars {
            problems.invalid.push(
                format!("{field}.content"),
                format!("must be at most {} characters", limits.max_message_chars),
            );
        }
        messages.extend(turn.results);
        if !turn.content.is_empty() || !turn.tool_calls.is_empty() {
            messages.push(ChatMessage {
                role,
                content: turn.content,
                tool_calls: turn.tool_calls,
                tool_call_id: None,
            });
        }
    }
    messages
}

/// One message's blocks, read into the chat model.
#[derive(Default)]
struct Turn {
    content: Vec<ContentPart>,
    tool_calls: Vec<ToolCall>,
    results: Vec<ChatMessage>,
    chars: usize,
}

impl Turn {
    fn read(&mut self, block: &Value, role: Role, field: &str, problems: &mut Problems) {
        let Some(kind) = block.get("type").and_then(Value::as_str) else {
            problems
                .invalid
                .push(format!("{field}.type"), "is required");
            return;
        };
        match (kind, role) {
            ("text", _) => {
                if let Some(text) = text_of(block, field, problems) {
                    self.chars += text.chars().count();
                    self.content.push(ContentPart::Text(text));
                }
            }
            ("image", Role::User) => {
                if let Some(image) = image(block, field, problems) {
                    self.content.push(image);
                }
            }
            ("document", Role::User) => {
                if let Some(text) = document(block, field, problems) {
                    self.chars += text.chars().count();
                    self.content.push(ContentPart::Text(text));
                }
            }
            ("tool_result", Role::User) => {
                if let Some(result) = self.tool_result(block, field, problems) {
                    self.results.push(result);
                }
            }
            ("tool_use", Role::Assistant) => {
                let id = block
                    .get("id")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty());
                let name = block.get("name").and_then(Value::as_str);
                match (id, name, block.get("input")) {
                    (Some(id), Some(name), Some(input @ Value::Object(_))) => {
                        let arguments = input.to_string();
                        self.chars += arguments.chars().count();
                        self.tool_calls.push(ToolCall {
                            id: id.to_owned(),
                            name: name.to_owned(),
                            arguments,
                        });
                    }
                    _ => problems.invalid.push(
                        field,
                        "a tool_use block needs an id, a name and an input object",
                    ),
                }
            }
            // The model's earlier reasoning: dropped in translation (see `conversation`).
            ("thinking" | "redacted_thinking", Role::Assistant) => {}
            ("image" | "document" | "tool_result", _) => {
                problems
                    .invalid
                    .push(field, format!("only a user message holds {kind} blocks"));
            }
            ("tool_use" | "thinking" | "redacted_thinking", _) => {
                problems.invalid.push(
                    field,
                    format!("only an assistant message holds {kind} blocks"),
                );
            }
            (other, _) => problems.unsupported.push(
                field,
                format!("'{other}' blocks are Anthropic's own and cannot be translated"),
            ),
        }
    }

    /// A `tool_result` as a tool message. `is_error` has no place in the chat model: the
    /// result's text says so instead, which every model reads.
    fn tool_result(
        &mut self,
        block: &Value,
        field: &str,
        problems: &mut Problems,
    ) -> Option<ChatMessage> {
        let Some(id) = block
            .get("tool_use_id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        else {
            problems
                .invalid
                .push(format!("{field}.tool_use_id"), "is required");
            return None;
        };
        let is_error = match block.get("is_error") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(is_error)) => *is_error,
            Some(_) => {
                problems
                    .invalid
                    .push(format!("{field}.is_error"), "must be a boolean");
                false
            }
        };
        let mut content = Vec::new();
        match block.get("content") {
            None | Some(Value::Null) => {}
            Some(Value::String(text)) => content.push(ContentPart::Text(text.clone())),
            Some(Value::Array(parts)) => {
                for (k, part) in parts.iter().enumerate() {
                    let part_field = format!("{field}.content[{k}]");
                    match part.get("type").and_then(Value::as_str) {
                        Some("text") => {
                            if let Some(text) = text_of(part, &part_field, problems) {
                                content.push(ContentPart::Text(text));
                            }
                        }
                        Some("image") => {
                            if let Some(image) = image(part, &part_field, problems) {
                                content.push(image);
                            }
                        }
                        Some("document") => {
                            if let Some(text) = document(part, &part_field, problems) {
                                content.push(ContentPart::Text(text));
                            }
                        }
                        Some(other) => problems.unsupported.push(
                            part_field,
                            format!("'{other}' blocks in a tool result cannot be translated"),
                        ),
                        None => problems
                            .invalid
                            .push(format!("{part_field}.type"), "is required"),
                    }
                }
            }
            Some(_) => problems.invalid.push(
                format!("{field}.content"),
                "must be a string or an array of blocks",
            ),
        }
        if is_error {
            content.insert(0, ContentPart::Text("Error: ".to_owned()));
        }
        self.chars += ContentPart::text_chars(&content);
        Some(ChatMessage {
            role: Role::Tool,
            content,
            tool_calls: Vec::new(),
            tool_call_id: Some(id.to_owned()),
        })
    }
}

/// A block's `text`, which must be a string.
fn text_of(block: &Value, field: &str, problems: &mut Problems) -> Option<String> {
    match block.get("text").and_then(Value::as_str) {
        Some(text) => Some(text.to_owned()),
        None => {
            problems
                .invalid
                .push(format!("{field}.text"), "must be a string");
            None
        }
    }
}

/// An `image` block: `base64` data or an `http(s)` URL (a Files API id is Anthropic's own).
fn image(block: &Value, field: &str, problems: &mut Problems) -> Option<ContentPart> {
    let source = block.get("source");
    let string = |name: &str| {
        source
            .and_then(|s| s.get(name))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let source = match source.and_then(|s| s.get("type")).and_then(Value::as_str) {
        Some("base64") => match (string("media_type"), string("data")) {
            (Some(media_type), Some(data)) if media_type.starts_with("image/") => {
                ImageSource::Base64 {
                    media_type: media_type.to_owned(),
                    data: data.to_owned(),
                }
            }
            _ => {
                problems.invalid.push(
                    format!("{field}.source"),
                    "a base64 image needs an image/* media_type and data",
                );
                return None;
            }
        },
        Some("url") => match string("url") {
            Some(url) if url.starts_with("https://") || url.starts_with("http://") => {
                ImageSource::Url(url.to_owned())
            }
            _ => {
                problems
                    .invalid
                    .push(format!("{field}.source.url"), "must be an http(s) URL");
                return None;
            }
        },
        Some(other) => {
            problems.unsupported.push(
                format!("{field}.source"),
                format!("'{other}' image sources are Anthropic's own"),
            );
            return None;
        }
        None => {
            problems
                .invalid
                .push(format!("{field}.source.type"), "must be base64 or url");
            return None;
        }
    };
    Some(ContentPart::Image {
        source,
        detail: None,
    })
}

/// A `document` block as text, when it is text (`text` or `content` sources); a PDF, a URL or a
/// file is Anthropic's alone.
fn document(block: &Value, field: &str, problems: &mut Problems) -> Option<String> {
    let source = block.get("source");
    match source.and_then(|s| s.get("type")).and_then(Value::as_str) {
        Some("text") => match source.and_then(|s| s.get("data")).and_then(Value::as_str) {
            Some(data) => Some(data.to_owned()),
            None => {
                problems
                    .invalid
                    .push(format!("{field}.source.data"), "must be a string");
                None
            }
        },
        Some("content") => {
            let parts = source
                .and_then(|s| s.get("content"))
                .and_then(Value::as_array);
            let texts: Option<Vec<&str>> = parts.map(|parts| {
                parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect()
            });
            match (parts, texts) {
                (Some(parts), Some(texts)) if parts.len() == texts.len() => Some(texts.concat()),
                _ => {
                    problems.unsupported.push(
                        format!("{field}.source.content"),
                        "only text content documents can be translated",
                    );
                    None
                }
            }
        }
        Some(other) => {
            problems.unsupported.push(
                field,
                format!("{other} documents (PDFs, URLs, files) can only be read by Anthropic"),
            );
            None
        }
        None => {
            problems.invalid.push(
                format!("{field}.source.type"),
                "must be base64, url, text, content or file",
            );
            None
        }
    }
}

impl Messages {
    /// Refuses what the specialist's provider cannot take (400, naming every field), and tools
    /// of any kind on a specialist that allows none.
    pub(crate) fn check_for(&self, specialist: &Specialist) -> Result<(), ApiError> {
        if self.offers_any_tool && !specialist.allow_tools() {
            let mut details = ValidationErrors::new();
            details.push(
                "tools",
                format!("the specialist '{}' does not allow tools", specialist.id()),
            );
            return Err(ApiError::unsupported(details));
        }
        if self.reads_documents && !specialist.allow_images() {
            let mut details = ValidationErrors::new();
            details.push(
                "messages",
                format!(
                    "the specialist '{}' does not allow images, nor documents read as images \
                     (PDFs)",
                    specialist.id()
                ),
            );
            return Err(ApiError::unsupported(details));
        }
        if specialist.provider() != ProviderKind::Anthropic && !self.untranslatable.is_empty() {
            return Err(ApiError::unsupported(self.untranslatable.clone()));
        }
        Ok(())
    }

    /// The request to the specialist's upstream.
    ///
    /// The specialist's system prompt always applies and the caller's follows it; the caller's
    /// `temperature` and `max_tokens` may lower the specialist's, never raise them. A
    /// specialist on Anthropic gets the caller's request as sent (with those two capped); its
    /// system prompt is the specialist's alone, the caller's being in the native request — and
    /// in `messages`, as a system message after the first (so that a fallback to another
    /// provider keeps it, and the OpenAI provider, which takes a leading system message as the
    /// whole system prompt, keeps the specialist's).
    pub(crate) fn into_request(self, specialist: &Specialist) -> ProviderRequest {
        if specialist.provider() != ProviderKind::Anthropic {
            return provider_request(
                specialist,
                &self.system,
                self.messages,
                self.temperature,
                self.max_tokens,
                self.options,
            );
        }
        let (temperature, max_tokens) =
            effective_limits(specialist, self.temperature, self.max_tokens);
        let caller_system = self
            .system
            .iter()
            .filter(|s| !s.trim().is_empty())
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\n\n");
        let mut messages = self.messages;
        if !caller_system.is_empty() {
            messages.insert(messages.len().min(1), ChatMessage::system(caller_system));
        }
        let mut native = self.native;
        if let Some(budget) = self.thinking_budget {
            // Anthropic takes no temperature but 1 while thinking: the specialist's cannot
            // apply, and the caller's may only be the one allowed.
            native.fields.retain(|(name, _)| &**name != "temperature");
            // A budget must stay below max_tokens, which the specialist may have lowered.
            if budget >= u64::from(max_tokens) && max_tokens > 1024 {
                fit_thinking_budget(&mut native, max_tokens - 1);
            }
        } else if self
            .temperature
            .is_some_and(|t| t > specialist.temperature())
        {
            cap_temperature(&mut native, specialist.temperature());
        }
        ProviderRequest {
            model: specialist.model().to_owned(),
            system_prompt: specialist.system_prompt().to_owned(),
            messages,
            temperature,
            max_tokens,
            base_url: specialist.base_url().map(str::to_owned),
            options: self.options,
            single_attempt: false,
            deadline: None,
            anthropic: Some(Arc::new(native)),
        }
    }
}

/// Lowers the native request's `temperature` to the specialist's: the one field of the
/// caller's the gateway rewrites (besides those it sets), as it may never be raised.
fn cap_temperature(native: &mut AnthropicNative, cap: f64) {
    if let Ok(text) = serde_json::to_string(&cap) {
        for (name, value) in &mut native.fields {
            if &**name == "temperature" {
                *value = text.clone().into_boxed_str();
            }
        }
    }
}

/// Lowers the native request's `thinking.budget_tokens` to `budget`.
fn fit_thinking_budget(native: &mut AnthropicNative, budget: u32) {
    for (name, value) in &mut native.fields {
        if &**name != "thinking" {
            continue;
        }
        if let Ok(mut thinking) = serde_json::from_str::<Value>(value)
            && let Some(fields) = thinking.as_object_mut()
        {
            fields.insert("budget_tokens".to_owned(), Value::from(budget));
            *value = thinking.to_string().into_boxed_str();
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use core_domain::{SpecialistDraft, SpecialistId};
    use serde_json::json;

    use super::*;

    fn parse_for(body: &str, purpose: Purpose) -> Result<Messages, (ApiCode, Vec<String>)> {
        parse(
            body.as_bytes(),
            Some("beta-1"),
            purpose,
            &ChatLimits::default(),
        )
        .map_err(|e| {
            let fields = e
                .details()
                .map(|d| d.errors().iter().map(|e| e.field.clone()).collect())
                .unwrap_or_default();
            (e.code(), fields)
        })
    }

    #[test]
    fn a_flood_of_bad_items_is_answered_with_the_first_fifty_problems() {
        let tools: Vec<Value> = (0..20_000)
            .map(|_| json!({"name": "same", "input_schema": {"type": "object"}}))
            .collect();
        let messages: Vec<Value> = (0..20_000)
            .map(|_| json!({"role": "robot", "content": "x"}))
            .collect();
        let system: Vec<Value> = (0..20_000).map(|_| json!({"type": "image"})).collect();
        for body in [
            json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}], "tools": tools}),
            json!({"model": "m", "max_tokens": 10, "messages": messages}),
            json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}], "system": system}),
            json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": vec![json!({"type": "text"}); 20_000]}]}),
        ] {
            let (_, fields) = parse_for(&body.to_string(), Purpose::Message).unwrap_err();
            assert!(
                (50..=52).contains(&fields.len()),
                "{} problems",
                fields.len()
            );
            assert!(
                fields.last().is_some_and(|f| f.ends_with(']')),
                "the last names where checking stopped: {fields:?}"
            );
        }
    }

    fn parse_ok(body: Value) -> Messages {
        parse_for(&body.to_string(), Purpose::Message).unwrap()
    }

    fn specialist(provider: &str) -> Specialist {
        let spec = SpecialistDraft {
            temperature: 0.5,
            max_tokens: 1000,
            ..SpecialistDraft::new("S", provider, "m", "Be the specialist.")
        }
        .validate()
        .unwrap();
        Specialist::new(SpecialistId::parse("s").unwrap(), spec, Utc::now())
    }

    #[test]
    fn the_native_request_keeps_every_field_as_sent_in_order() {
        let body = r#"{"model":"s","metadata":{"user_id":"u-1"},  "max_tokens":50,
            "system":[{"type":"text","text":"Sys","cache_control":{"type":"ephemeral"}}],
            "messages":[{"role":"user","content":[{"type":"text","text":"hi","cache_control":{"type": "ephemeral"}}]}],
            "top_k":  5,"stream":true,"future_field":{"a":[1,2]}}"#;
        let parsed = parse_for(body, Purpose::Message).unwrap();
        assert!(parsed.stream);
        let request = parsed.into_request(&specialist("anthropic"));
        let native = request.anthropic.as_deref().unwrap();
        assert_eq!(
            native.system.as_deref(),
            Some(r#"[{"type":"text","text":"Sys","cache_control":{"type":"ephemeral"}}]"#)
        );
        let fields: Vec<(&str, &str)> = native.fields.iter().map(|(n, v)| (&**n, &**v)).collect();
        assert_eq!(
            fields,
            [
                ("metadata", r#"{"user_id":"u-1"}"#),
                (
                    "messages",
                    r#"[{"role":"user","content":[{"type":"text","text":"hi","cache_control":{"type": "ephemeral"}}]}]"#
                ),
                ("top_k", "5"),
                ("future_field", r#"{"a":[1,2]}"#),
            ]
        );
        assert_eq!(native.beta.as_deref(), Some("beta-1"));
        // The specialist's prompt alone; the caller's system follows the first message.
        assert_eq!(request.system_prompt, "Be the specialist.");
        assert_eq!(
            request.messages,
            [ChatMessage::user("hi"), ChatMessage::system("Sys")]
        );
        assert_eq!(request.max_tokens, 50);
        assert_eq!(request.options.user.as_deref(), Some("u-1"));
    }

    #[test]
    fn a_temperature_above_the_specialist_s_is_capped_even_natively() {
        let request = parse_ok(json!({"model": "s", "max_tokens": 5000, "temperature": 0.9,
            "messages": [{"role": "user", "content": "x"}]}))
        .into_request(&specialist("anthropic"));
        assert_eq!((request.temperature, request.max_tokens), (0.5, 1000));
        let temperature = |native: &AnthropicNative| {
            native
                .fields
                .iter()
                .find(|(name, _)| &**name == "temperature")
                .map(|(_, value)| value.to_string())
        };
        assert_eq!(
            temperature(&request.anthropic.unwrap()).as_deref(),
            Some("0.5")
        );
        let lower = parse_ok(json!({"model": "s", "max_tokens": 5, "temperature": 0.1,
            "messages": [{"role": "user", "content": "x"}]}))
        .into_request(&specialist("anthropic"));
        assert_eq!(
            temperature(&lower.anthropic.unwrap()).as_deref(),
            Some("0.1")
        );
    }

    #[test]
    fn thinking_drops_temperature_and_fits_its_budget_below_the_capped_max_tokens() {
        let field = |native: &AnthropicNative, wanted: &str| {
            native
                .fields
                .iter()
                .find(|(name, _)| &**name == wanted)
                .map(|(_, value)| value.to_string())
        };
        let request = parse_ok(json!({"model": "s", "max_tokens": 32000, "temperature": 1,
            "thinking": {"type": "enabled", "budget_tokens": 31999},
            "messages": [{"role": "user", "content": "x"}]}))
        .into_request(&specialist("anthropic"));
        assert_eq!(request.max_tokens, 1000);
        let native = request.anthropic.unwrap();
        assert_eq!(field(&native, "temperature"), None);
        // The specialist allows 1000 tokens: too few for any budget (at least 1024), so the
        // caller's stands and Anthropic will say why.
        assert_eq!(
            field(&native, "thinking").as_deref(),
            Some(r#"{"budget_tokens":31999,"type":"enabled"}"#)
        );
        let mut draft = specialist("anthropic").to_draft();
        draft.max_tokens = 8192;
        let roomy = Specialist::new(
            SpecialistId::parse("s").unwrap(),
            draft.validate().unwrap(),
            Utc::now(),
        );
        let request = parse_ok(json!({"model": "s", "max_tokens": 32000,
            "thinking": {"type": "enabled", "budget_tokens": 31999},
            "messages": [{"role": "user", "content": "x"}]}))
        .into_request(&roomy);
        assert_eq!(
            field(&request.anthropic.unwrap(), "thinking").as_deref(),
            Some(r#"{"budget_tokens":8191,"type":"enabled"}"#)
        );
    }

    #[test]
    fn translation_maps_blocks_tools_and_choices_onto_the_chat_model() {
        let request = parse_ok(json!({"model": "s", "max_tokens": 100,
            "system": "Be brief.",
            "tools": [{"name": "lookup", "description": "Find", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
            "thinking": {"type": "enabled", "budget_tokens": 8000},
            "stop_sequences": ["END"], "top_p": 0.9, "metadata": {"user_id": "u"},
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}},
                    {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "A memo."}}
                ]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                    {"type": "text", "text": "Let me look."},
                    {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": 1}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "42"}]},
                    {"type": "tool_result", "tool_use_id": "toolu_2", "content": "boom", "is_error": true},
                    {"type": "text", "text": "So?"}
                ]}
            ]}))
        .into_request(&specialist("openai"));
        assert!(request.anthropic.is_none());
        assert_eq!(request.system_prompt, "Be the specialist.\n\nBe brief.");
        let m = &request.messages;
        assert_eq!(m.len(), 5);
        assert_eq!(m[0].content.len(), 4);
        assert_eq!(m[0].content[3], ContentPart::Text("A memo.".into()));
        assert_eq!(
            m[1],
            ChatMessage {
                role: Role::Assistant,
                content: vec![ContentPart::Text("Let me look.".into())],
                tool_calls: vec![ToolCall {
                    id: "toolu_1".into(),
                    name: "lookup".into(),
                    arguments: r#"{"q":1}"#.into()
                }],
                tool_call_id: None,
            }
        );
        assert_eq!(m[2], ChatMessage::tool_result("toolu_1", "42"));
        assert_eq!(m[3].text(), "Error: boom");
        assert_eq!(m[4], ChatMessage::user("So?"));
        let o = &request.options;
        assert_eq!(o.tools[0].name, "lookup");
        assert_eq!(o.tool_choice, Some(ToolChoice::Required));
        assert_eq!(o.parallel_tool_calls, Some(false));
        assert_eq!(o.reasoning_effort, Some(ReasoningEffort::Medium));
        assert_eq!(o.stop, ["END"]);
        assert_eq!((o.top_p, o.user.as_deref()), (Some(0.9), Some("u")));
    }

    #[test]
    fn what_only_anthropic_takes_is_refused_for_other_providers_by_field() {
        let parsed = parse_ok(json!({"model": "s", "max_tokens": 10, "top_k": 3,
        "container": "c", "service_tier": "auto",
        "tools": [{"type": "web_search_20250305", "name": "web_search"}],
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "x"},
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBER"}},
            {"type": "search_result", "source": "s", "title": "t", "content": []}
        ]}]}));
        let fields: Vec<String> = parsed
            .untranslatable
            .errors()
            .iter()
            .map(|e| e.field.clone())
            .collect();
        assert_eq!(
            fields,
            [
                "top_k",
                "container",
                "tools[0]",
                "messages[0].content[1]",
                "messages[0].content[2]"
            ]
        );
        let refused = parsed.check_for(&specialist("google")).unwrap_err();
        assert_eq!(refused.code(), ApiCode::UnsupportedParameter);
        assert!(parsed.check_for(&specialist("anthropic")).is_ok());
    }

    #[test]
    fn bad_values_are_listed_together() {
        let (code, fields) = parse_for(
            &json!({"model": "s", "temperature": 1.5, "top_p": 2, "top_k": -1,
                "stop_sequences": [""],
                "system": [{"type": "image"}],
                "tools": [{"name": "a b", "input_schema": {}}, {"name": "t"}],
                "tool_choice": {"type": "tool", "name": "missing"},
                "thinking": {"type": "enabled", "budget_tokens": 10},
                "messages": [
                    {"role": "system", "content": "x"},
                    {"role": "assistant", "content": [{"type": "image", "source": {"type": "url", "url": "https://x"}}]},
                    {"role": "user", "content": [{"type": "tool_use", "id": "1", "name": "t", "input": {}},
                                                  {"type": "tool_result"}, {"text": "no type"}]},
                    {"role": "user", "content": 5},
                    {"role": "user", "content": []},
                    {"role": "assistant", "content": ""}
                ]})
            .to_string(),
            Purpose::Message,
        )
        .unwrap_err();
        assert_eq!(code, ApiCode::ValidationFailed);
        assert_eq!(
            fields,
            [
                "max_tokens",
                "temperature",
                "top_p",
                "top_k",
                "stop_sequences",
                "system[0]",
                "tools[0].name",
                "tools[1].input_schema",
                "tool_choice.name",
                "thinking.budget_tokens",
                "messages[0].role",
                "messages[1].content[0]",
                "messages[2].content[0]",
                "messages[2].content[1].tool_use_id",
                "messages[2].content[2].type",
                "messages[3].content",
                "messages[4].content",
            ]
        );
        // Not JSON, or the wrong types: a 400 invalid_request.
        for body in ["not json", "[1]", r#"{"model": 5, "messages": []}"#] {
            let (code, _) = parse_for(body, Purpose::Message).unwrap_err();
            assert_eq!(code, ApiCode::InvalidRequest, "{body}");
        }
        // Counting needs no max_tokens.
        assert!(
            parse_for(
                r#"{"model": "s", "messages": [{"role": "user", "content": "x"}]}"#,
                Purpose::CountTokens
            )
            .is_ok()
        );
    }

    #[test]
    fn what_a_specialist_turned_off_is_refused_even_when_only_anthropic_carries_it() {
        let parsed = parse_ok(json!({"model": "s", "max_tokens": 10,
            "tools": [{"type": "web_search_20250305", "name": "web_search"}],
            "messages": [{"role": "user", "content": "x"}]}));
        let pdf = parse_ok(json!({"model": "s", "max_tokens": 10,
            "messages": [{"role": "user", "content": [{"type": "document",
                "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBER"}}]}]}));
        let text = parse_ok(json!({"model": "s", "max_tokens": 10,
            "messages": [{"role": "user", "content": [{"type": "document",
                "source": {"type": "text", "media_type": "text/plain", "data": "memo"}}]}]}));
        let mut draft = specialist("anthropic").to_draft();
        draft.allow_images = false;
        let no_images = Specialist::new(
            SpecialistId::parse("s").unwrap(),
            draft.validate().unwrap(),
            Utc::now(),
        );
        assert_eq!(
            pdf.check_for(&no_images).unwrap_err().code(),
            ApiCode::UnsupportedParameter
        );
        assert!(text.check_for(&no_images).is_ok());
        assert!(pdf.check_for(&specialist("anthropic")).is_ok());
        let mut draft = specialist("anthropic").to_draft();
        draft.allow_tools = false;
        let no_tools = Specialist::new(
            SpecialistId::parse("s").unwrap(),
            draft.validate().unwrap(),
            Utc::now(),
        );
        assert_eq!(
            parsed.check_for(&no_tools).unwrap_err().code(),
            ApiCode::UnsupportedParameter
        );
    }
}
