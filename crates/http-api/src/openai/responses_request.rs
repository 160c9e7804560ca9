//! The Responses request (`POST /v1/responses`), as OpenAI's reference defines it, and how it
//! maps onto the rich chat model.
//!
//! The door is stateless: commander stores no response, so nothing can be continued
//! (`previous_response_id`, `conversation`), kept (`store: true`), run later (`background`) or
//! looked up by id (`file_id` images, `item_reference` items, stored `prompt` templates). Each
//! is refused with a 400 that says so, rather than silently answered without the context the
//! caller meant. The caller sends the whole conversation in `input` instead.

use std::collections::HashSet;

use core_domain::{
    ChatMessage, ChatOptions, ContentPart, JsonSchemaFormat, ReasoningEffort, ResponseFormat, Role,
    Specialist, ToolCall, ToolChoice, ToolDefinition,
};
use providers::ProviderRequest;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use super::request::{
    ImageUrl, Problems, effective_limits, image_part, is_valid_name, provider_request,
};
use crate::{ApiError, ChatLimits};

/// What a refusal of a stateful feature says: the door keeps nothing between calls.
const STATELESS: &str = "commander's Responses door is stateless: it stores no responses or \
    conversations, so send the whole conversation in input (with store absent or false)";

/// `POST /v1/responses`. `input` and `tools` are read item by item so that a problem names
/// its place (`input[2].type`). Fields that change nothing for the gateway (`service_tier`,
/// `truncation`, `prompt_cache_key`, `max_tool_calls`, `stream_options`, ...) are accepted
/// and ignored, as OpenAI SDKs send some by default.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct ResponsesRequest {
    /// A specialist id or alias.
    model: String,
    /// A string (one user message), or a list of items: messages, `function_call` and
    /// `function_call_output` items (`reasoning` items are dropped).
    #[schema(value_type = Object)]
    input: Option<Value>,
    /// Added to the specialist's system prompt, after it.
    instructions: Option<String>,
    /// Function tools (`{"type": "function", "name", "description", "parameters", "strict"}`).
    #[schema(value_type = Option<Vec<Object>>)]
    tools: Option<Vec<Value>>,
    /// `auto`, `none`, `required`, or `{"type": "function", "name"}`.
    #[schema(value_type = Option<Object>)]
    tool_choice: Option<Value>,
    parallel_tool_calls: Option<bool>,
    /// `{"format": {"type": "text" | "json_object" | "json_schema", ...}}`.
    #[schema(value_type = Option<Object>)]
    text: Option<Value>,
    max_output_tokens: Option<i64>,
    /// `{"effort": "none" | "minimal" | "low" | "medium" | "high", "summary": ...}`;
    /// `summary` is accepted and ignored.
    #[schema(value_type = Option<Object>)]
    reasoning: Option<Value>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    /// The caller's end user (deprecated by OpenAI for `safety_identifier`).
    user: Option<String>,
    /// The caller's end user; recorded on the usage row.
    safety_identifier: Option<String>,
    /// Up to 16 string pairs, echoed back.
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
    #[serde(default)]
    pub(crate) stream: bool,
    /// Refused when not null: nothing is stored to continue from.
    #[schema(value_type = Option<String>)]
    previous_response_id: Option<Value>,
    /// Refused when true. OpenAI's own default is true; absent means false here.
    store: Option<bool>,
    /// Refused when true.
    background: Option<bool>,
    /// Refused when not null.
    #[schema(value_type = Option<Object>)]
    conversation: Option<Value>,
    /// Stored prompt templates: refused when not null.
    #[schema(value_type = Option<Object>)]
    prompt: Option<Value>,
    /// `reasoning.encrypted_content` and `message.input_image.image_url` are accepted (and
    /// change nothing); every other value is refused.
    include: Option<Vec<String>>,
}

/// What the Response object echoes of the request: the values the call ran with.
#[derive(Debug, Clone)]
pub(crate) struct Echo {
    /// The caller's `instructions`.
    pub instructions: Option<String>,
    /// The tools offered, in the Responses shape.
    pub tools: Vec<Value>,
    /// `auto` unless the caller chose.
    pub tool_choice: Value,
    /// True unless the caller said false.
    pub parallel_tool_calls: bool,
    /// `{"format": ...}`, `{"format": {"type": "text"}}` by default.
    pub text: Value,
    /// The caller's metadata, `{}` by default.
    pub metadata: Value,
    /// `{"effort", "summary"}`, both null by default.
    pub reasoning: Value,
    /// The temperature the call runs with (the caller's, capped by the specialist's).
    pub temperature: f64,
    /// The caller's `top_p`.
    pub top_p: Option<f64>,
    /// The token limit the call runs with (the caller's, capped by the specialist's).
    pub max_output_tokens: u32,
    /// The caller's `safety_identifier`.
    pub safety_identifier: Option<String>,
    /// The caller's `user`.
    pub user: Option<String>,
}

/// A validated Responses request: which specialist, the conversation and the options.
#[derive(Debug)]
pub(crate) struct ResponsesCall {
    /// The model asked for: a specialist id or alias, resolved by the catalogue.
    pub model: String,
    /// Whether to answer as a stream of events.
    pub stream: bool,
    /// `instructions`, then the input's system and developer messages.
    system: Vec<String>,
    messages: Vec<ChatMessage>,
    temperature: Option<f64>,
    max_tokens: Option<u32>,
    options: ChatOptions,
    echo: Echo,
}

impl ResponsesRequest {
    /// Checks the request, reporting every problem at once: invalid values as a validation
    /// failure; when all are valid, what commander cannot honour (storage, built-in tools) as
    /// an unsupported parameter.
    pub(crate) fn validate(self, limits: &ChatLimits) -> Result<ResponsesCall, ApiError> {
        let mut problems = Problems::default();
        refuse_storage(&self, &mut problems);
        let errors = &mut problems.invalid;
        if let Some(t) = self.temperature
            && !(0.0..=2.0).contains(&t)
        {
            errors.push("temperature", "must be between 0 and 2");
        }
        if let Some(p) = self.top_p
            && !(0.0..=1.0).contains(&p)
        {
            errors.push("top_p", "must be between 0 and 1");
        }
        let max_tokens = match self.max_output_tokens {
            None => None,
            Some(n) => u32::try_from(n).ok().filter(|n| *n >= 1).or_else(|| {
                errors.push("max_output_tokens", "must be a positive integer");
                None
            }),
        };
        let metadata = metadata(self.metadata, errors);
        let (tools, tools_echo) = tools(self.tools, &mut problems);
        let errors = &mut problems.invalid;
        let tool_choice = tool_choice(self.tool_choice.clone(), &tools, errors);
        let (response_format, text_echo) = text_format(self.text, errors);
        let (reasoning_effort, reasoning_echo) = reasoning(self.reasoning, errors);

        let max_chars = limits.max_message_chars;
        if let Some(instructions) = &self.instructions {
            check_length(
                instructions.chars().count(),
                "instructions",
                max_chars,
                errors,
            );
        }
        let mut system: Vec<String> = self.instructions.clone().into_iter().collect();
        let messages = match self.input {
            None | Some(Value::Null) => {
                errors.push("input", "is required");
                Vec::new()
            }
            Some(Value::String(text)) => {
                check_length(text.chars().count(), "input", max_chars, errors);
                vec![ChatMessage::user(text)]
            }
            Some(Value::Array(items)) => input_items(items, max_chars, &mut system, &mut problems),
            Some(_) => {
                errors.push("input", "must be a string or a list of items");
                Vec::new()
            }
        };
        let errors = &mut problems.invalid;
        if messages.len() > limits.max_history_messages + 1 {
            errors.push(
                "input",
                format!(
                    "must have at most {} items",
                    limits.max_history_messages + 1
                ),
            );
        }
        if errors.is_empty()
            && problems.unsupported.is_empty()
            && !messages.iter().any(|m| m.role == Role::User)
        {
            errors.push("input", "must contain a user message");
        }
        if !problems.invalid.is_empty() {
            return Err(ApiError::validation(problems.invalid));
        }
        if !problems.unsupported.is_empty() {
            return Err(ApiError::unsupported(problems.unsupported));
        }
        let user = self.safety_identifier.clone().or_else(|| self.user.clone());
        Ok(ResponsesCall {
            model: self.model,
            stream: self.stream,
            system,
            messages,
            temperature: self.temperature,
            max_tokens,
            echo: Echo {
                instructions: self.instructions,
                tools: tools_echo,
                tool_choice: self.tool_choice.unwrap_or_else(|| json!("auto")),
                parallel_tool_calls: self.parallel_tool_calls.unwrap_or(true),
                text: text_echo,
                metadata,
                reasoning: reasoning_echo,
                temperature: 0.0,
                top_p: self.top_p,
                max_output_tokens: 0,
                safety_identifier: self.safety_identifier,
                user: self.user,
            },
            options: ChatOptions {
                tools,
                tool_choice,
                parallel_tool_calls: self.parallel_tool_calls,
                response_format,
                top_p: self.top_p,
                reasoning_effort,
                user,
                ..ChatOptions::default()
            },
        })
    }
}

/// Refuses what needs responses or conversations stored between calls.
fn refuse_storage(request: &ResponsesRequest, problems: &mut Problems) {
    let refused = &mut problems.unsupported;
    if request
        .previous_response_id
        .as_ref()
        .is_some_and(|id| !id.is_null())
    {
        refused.push("previous_response_id", STATELESS);
    }
    if request.store == Some(true) {
        refused.push("store", STATELESS);
    }
    if request.conversation.as_ref().is_some_and(|c| !c.is_null()) {
        refused.push("conversation", STATELESS);
    }
    if request.background == Some(true) {
        refused.push(
            "background",
            "background responses need storage; commander's Responses door is stateless",
        );
    }
    if request.prompt.as_ref().is_some_and(|p| !p.is_null()) {
        refused.push(
            "prompt",
            "stored prompt templates are not available; send the text in instructions and input",
        );
    }
    for (i, include) in request.include.iter().flatten().enumerate() {
        if !matches!(
            include.as_str(),
            "reasoning.encrypted_content" | "message.input_image.image_url"
        ) {
            refused.push(
                format!("include[{i}]"),
                format!("'{include}' cannot be included: commander does not provide it"),
            );
        }
    }
}

/// `metadata`: an object of at most 16 string values, echoed back (`{}` when absent). As on
/// OpenAI, keys are at most 64 characters and values at most 512: every Response (and two
/// events of a stream) carries it back.
fn metadata(metadata: Option<Value>, errors: &mut core_domain::ValidationErrors) -> Value {
    match metadata {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(Value::Object(pairs)) => {
            if pairs.len() > 16 {
                errors.push("metadata", "must have at most 16 keys");
            } else {
                if pairs.keys().any(|k| k.chars().count() > 64) {
                    errors.push("metadata", "keys must be at most 64 characters");
                }
                if !pairs.values().all(Value::is_string) {
                    errors.push("metadata", "values must be strings");
                } else if pairs
                    .values()
                    .any(|v| v.as_str().is_some_and(|v| v.chars().count() > 512))
                {
                    errors.push("metadata", "values must be at most 512 characters");
                }
            }
            Value::Object(pairs)
        }
        Some(_) => {
            errors.push("metadata", "must be an object of strings");
            Value::Object(Map::new())
        }
    }
}

/// The function tools on offer, and their echo. Built-in tools (web search, file search,
/// computer use, code interpreter, MCP, ...) run on OpenAI's side: commander has none.
fn tools(tools: Option<Vec<Value>>, problems: &mut Problems) -> (Vec<ToolDefinition>, Vec<Value>) {
    let mut definitions: Vec<ToolDefinition> = Vec::new();
    // Names seen so far: a body may hold tens of thousands of tools, so a duplicate is found
    // by hashing, not by scanning the tools before it (quadratic: seconds of a worker).
    let mut names: HashSet<String> = HashSet::new();
    let mut echo = Vec::new();
    for (i, tool) in tools.unwrap_or_default().into_iter().enumerate() {
        let field = format!("tools[{i}]");
        if problems.stop_listing(|| field.clone()) {
            break;
        }
        match tool.get("type").and_then(Value::as_str) {
            Some("function") => {}
            Some(other) => {
                problems.unsupported.push(
                    format!("{field}.type"),
                    format!(
                        "'{other}' is a built-in tool, which commander does not offer; only \
                         function tools are"
                    ),
                );
                continue;
            }
            None => {
                problems
                    .invalid
                    .push(format!("{field}.type"), "must be function");
                continue;
            }
        }
        let errors = &mut problems.invalid;
        let name = tool.get("name").and_then(Value::as_str).unwrap_or_default();
        if !is_valid_name(name) {
            errors.push(
                format!("{field}.name"),
                "must be 1 to 64 letters, digits, underscores or dashes",
            );
        } else if !names.insert(name.to_owned()) {
            errors.push(
                format!("{field}.name"),
                "names another tool already offered",
            );
        }
        let description = match tool.get("description") {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => Some(text.clone()),
            Some(_) => {
                errors.push(format!("{field}.description"), "must be a string");
                None
            }
        };
        let parameters = match tool.get("parameters") {
            None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
            Some(schema @ Value::Object(_)) => schema.clone(),
            Some(_) => {
                errors.push(
                    format!("{field}.parameters"),
                    "must be a JSON Schema object",
                );
                continue;
            }
        };
        let strict = match tool.get("strict") {
            None | Some(Value::Null) => None,
            Some(Value::Bool(strict)) => Some(*strict),
            Some(_) => {
                errors.push(format!("{field}.strict"), "must be a boolean");
                None
            }
        };
        echo.push(
            json!({"type": "function", "name": name, "description": description,
                         "parameters": parameters, "strict": strict}),
        );
        definitions.push(ToolDefinition {
            name: name.to_owned(),
            description,
            parameters,
            strict,
        });
    }
    (definitions, echo)
}

/// `tool_choice`, which must name an offered tool.
fn tool_choice(
    value: Option<Value>,
    tools: &[ToolDefinition],
    errors: &mut core_domain::ValidationErrors,
) -> Option<ToolChoice> {
    let choice = match value? {
        Value::Null => return None,
        Value::String(word) => match word.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            _ => {
                errors.push(
                    "tool_choice",
                    "must be auto, none, required or a named function",
                );
                return None;
            }
        },
        value @ Value::Object(_) => {
            let name = (value.get("type").and_then(Value::as_str) == Some("function"))
                .then(|| value.get("name").and_then(Value::as_str))
                .flatten();
            match name {
                Some(name) => ToolChoice::Tool(name.to_owned()),
                None => {
                    errors.push(
                        "tool_choice",
                        "must be auto, none, required or {\"type\": \"function\", \"name\": ...}",
                    );
                    return None;
                }
            }
        }
        _ => {
            errors.push("tool_choice", "must be a string or an object");
            return None;
        }
    };
    match &choice {
        ToolChoice::Tool(name) if !tools.iter().any(|t| &t.name == name) => {
            errors.push(
                "tool_choice",
                format!("names '{name}', which is not an offered tool"),
            );
            None
        }
        ToolChoice::Required | ToolChoice::Tool(_) if tools.is_empty() => {
            errors.push("tool_choice", "needs tools to choose from");
            None
        }
        _ => Some(choice),
    }
}

/// `text.format`: text, any JSON object, or JSON matching a named schema; and its echo.
fn text_format(
    text: Option<Value>,
    errors: &mut core_domain::ValidationErrors,
) -> (Option<ResponseFormat>, Value) {
    let default_echo = json!({"format": {"type": "text"}});
    let Some(text) = text.filter(|t| !t.is_null()) else {
        return (None, default_echo);
    };
    if !text.is_object() {
        errors.push("text", "must be an object");
        return (None, default_echo);
    }
    let Some(format) = text.get("format").filter(|f| !f.is_null()) else {
        return (None, text);
    };
    let parsed = match format.get("type").and_then(Value::as_str) {
        Some("text") => Some(ResponseFormat::Text),
        Some("json_object") => Some(ResponseFormat::JsonObject),
        Some("json_schema") => {
            let name = format
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !is_valid_name(name) {
                errors.push(
                    "text.format.name",
                    "must be 1 to 64 letters, digits, underscores or dashes",
                );
            }
            let schema = match format.get("schema") {
                Some(schema @ Value::Object(_)) => schema.clone(),
                Some(_) => {
                    errors.push("text.format.schema", "must be a JSON Schema object");
                    Value::Null
                }
                None => {
                    errors.push("text.format.schema", "is required");
                    Value::Null
                }
            };
            let description = match format.get("description") {
                None | Some(Value::Null) => None,
                Some(Value::String(text)) => Some(text.clone()),
                Some(_) => {
                    errors.push("text.format.description", "must be a string");
                    None
                }
            };
            let strict = match format.get("strict") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(strict)) => *strict,
                Some(_) => {
                    errors.push("text.format.strict", "must be a boolean");
                    false
                }
            };
            Some(ResponseFormat::JsonSchema(JsonSchemaFormat {
                name: name.to_owned(),
                description,
                schema,
                strict,
            }))
        }
        _ => {
            errors.push(
                "text.format.type",
                "must be text, json_object or json_schema",
            );
            None
        }
    };
    (parsed, text)
}

/// `reasoning.effort` (its `summary` is accepted and ignored: no provider here returns
/// reasoning summaries through this door); and its echo.
fn reasoning(
    reasoning: Option<Value>,
    errors: &mut core_domain::ValidationErrors,
) -> (Option<ReasoningEffort>, Value) {
    let default_echo = json!({"effort": null, "summary": null});
    let Some(reasoning) = reasoning.filter(|r| !r.is_null()) else {
        return (None, default_echo);
    };
    if !reasoning.is_object() {
        errors.push("reasoning", "must be an object");
        return (None, default_echo);
    }
    let effort = match reasoning.get("effort") {
        None | Some(Value::Null) => None,
        Some(value) => match value.as_str() {
            Some("none") => Some(ReasoningEffort::None),
            Some("minimal") => Some(ReasoningEffort::Minimal),
            Some("low") => Some(ReasoningEffort::Low),
            Some("medium") => Some(ReasoningEffort::Medium),
            Some("high") => Some(ReasoningEffort::High),
            _ => {
                errors.push(
                    "reasoning.effort",
                    "must be none, minimal, low, medium or high",
                );
                None
            }
        },
    };
    // Accepted and ignored, but echoed back: only OpenAI's words, so the echo is one an SDK
    // can type.
    let summary = match reasoning.get("summary") {
        None | Some(Value::Null) => Value::Null,
        Some(summary @ Value::String(word))
            if matches!(word.as_str(), "auto" | "concise" | "detailed") =>
        {
            summary.clone()
        }
        Some(_) => {
            errors.push("reasoning.summary", "must be auto, concise or detailed");
            Value::Null
        }
    };
    let echo = json!({"effort": effort.map(ReasoningEffort::as_str), "summary": summary});
    (effort, echo)
}

/// The problem with a text of `chars` characters in `field`, when it is longer than `max`.
fn check_length(
    chars: usize,
    field: impl Into<String>,
    max: usize,
    errors: &mut core_domain::ValidationErrors,
) {
    if chars > max {
        errors.push(field, format!("must be at most {max} characters"));
    }
}

/// The conversation of `input`'s items; system and developer messages go to `system`. A
/// message (system ones included) or a function's output longer than `max_chars` is refused
/// naming its own item: items and chat messages do not line up one to one (calls merge into
/// one assistant turn, reasoning items are dropped, system messages move to the prompt).
fn input_items(
    items: Vec<Value>,
    max_chars: usize,
    system: &mut Vec<String>,
    problems: &mut Problems,
) -> Vec<ChatMessage> {
    let mut messages: Vec<ChatMessage> = Vec::with_capacity(items.len());
    // The calls made so far: an output must answer one of them. Every upstream refuses a
    // result without its call, each its own way (Gemini naming `messages`); here it is one
    // 400 naming the item, on every provider.
    let mut called: HashSet<String> = HashSet::new();
    for (i, item) in items.into_iter().enumerate() {
        let field = format!("input[{i}]");
        if problems.stop_listing(|| field.clone()) {
            break;
        }
        if !item.is_object() {
            problems.invalid.push(field, "must be an object");
            continue;
        }
        let kind = match item.get("type") {
            // A message may leave out its type (the easy input message).
            None | Some(Value::Null) => "message",
            Some(Value::String(kind)) => kind.as_str(),
            Some(_) => {
                problems
                    .invalid
                    .push(format!("{field}.type"), "must be a string");
                continue;
            }
        };
        match kind {
            "message" => {
                if let Some((role, content)) = message(&item, &field, problems) {
                    check_length(
                        ContentPart::text_chars(&content),
                        format!("{field}.content"),
                        max_chars,
                        &mut problems.invalid,
                    );
                    if role == Role::System {
                        system.push(
                            ChatMessage {
                                role,
                                content,
                                tool_calls: Vec::new(),
                                tool_call_id: None,
                            }
                            .text()
                            .into_owned(),
                        );
                    } else {
                        messages.push(ChatMessage {
                            role,
                            content,
                            tool_calls: Vec::new(),
                            tool_call_id: None,
                        });
                    }
                }
            }
            "function_call" => {
                let (Some(call_id), Some(name), Some(arguments)) = (
                    string_field(&item, "call_id", &field, problems),
                    string_field(&item, "name", &field, problems),
                    string_field(&item, "arguments", &field, problems),
                ) else {
                    continue;
                };
                called.insert(call_id.clone());
                let call = ToolCall {
                    id: call_id,
                    name,
                    arguments,
                };
                // Calls made in one turn are one assistant message, as the chat model (and
                // every upstream) has them, with any text the model said before them.
                match messages.last_mut() {
                    Some(last) if last.role == Role::Assistant => last.tool_calls.push(call),
                    _ => messages.push(ChatMessage {
                        role: Role::Assistant,
                        content: Vec::new(),
                        tool_calls: vec![call],
                        tool_call_id: None,
                    }),
                }
            }
            "function_call_output" => {
                let Some(call_id) = string_field(&item, "call_id", &field, problems) else {
                    continue;
                };
                if !called.contains(&call_id) {
                    problems.invalid.push(
                        format!("{field}.call_id"),
                        "answers no function_call item before it: the door is stateless, so \
                         send the call (as the response's output gave it) before its output",
                    );
                    continue;
                }
                let output = match item.get("output") {
                    Some(Value::String(text)) => text.clone(),
                    Some(Value::Array(parts)) => {
                        let texts: Option<Vec<&str>> = parts
                            .iter()
                            .map(|p| {
                                (p.get("type").and_then(Value::as_str) == Some("input_text"))
                                    .then(|| p.get("text").and_then(Value::as_str))
                                    .flatten()
                            })
                            .collect();
                        match texts {
                            Some(texts) => texts.concat(),
                            None => {
                                problems.unsupported.push(
                                    format!("{field}.output"),
                                    "only text (a string or input_text parts) can be a \
                                     function's output here",
                                );
                                continue;
                            }
                        }
                    }
                    _ => {
                        problems
                            .invalid
                            .push(format!("{field}.output"), "must be a string");
                        continue;
                    }
                };
                check_length(
                    output.chars().count(),
                    format!("{field}.output"),
                    max_chars,
                    &mut problems.invalid,
                );
                messages.push(ChatMessage::tool_result(call_id, output));
            }
            // Reasoning of an earlier answer: without storage there is nothing to resolve its
            // encrypted content against, so it is left out (the answer it led to is kept).
            "reasoning" => {}
            "item_reference" => problems
                .unsupported
                .push(format!("{field}.type"), STATELESS),
            _ => problems.invalid.push(
                format!("{field}.type"),
                "must be message, function_call, function_call_output or reasoning",
            ),
        }
    }
    messages
}

/// A required string field of an item, or the problem with it.
fn string_field(item: &Value, name: &str, field: &str, problems: &mut Problems) -> Option<String> {
    match item.get(name) {
        Some(Value::String(text)) if !text.is_empty() || name == "arguments" => Some(text.clone()),
        _ => {
            problems
                .invalid
                .push(format!("{field}.{name}"), "is required (a string)");
            None
        }
    }
}

/// A message item's role and content.
fn message(item: &Value, field: &str, problems: &mut Problems) -> Option<(Role, Vec<ContentPart>)> {
    let role = match item.get("role").and_then(Value::as_str) {
        // "developer" is OpenAI's newer name for system instructions.
        Some("system" | "developer") => Role::System,
        Some("user") => Role::User,
        Some("assistant") => Role::Assistant,
        _ => {
            problems.invalid.push(
                format!("{field}.role"),
                "must be user, assistant, system or developer",
            );
            return None;
        }
    };
    let content = match item.get("content") {
        Some(Value::String(text)) => vec![ContentPart::Text(text.clone())],
        Some(Value::Array(parts)) => parts
            .iter()
            .enumerate()
            .filter_map(|(j, part)| {
                content_part(part, role, &format!("{field}.content[{j}]"), problems)
            })
            .collect(),
        _ => {
            problems.invalid.push(
                format!("{field}.content"),
                "must be a string or a list of content parts",
            );
            return None;
        }
    };
    Some((role, content))
}

/// One content part: text anywhere, images only from the user.
fn content_part(
    part: &Value,
    role: Role,
    field: &str,
    problems: &mut Problems,
) -> Option<ContentPart> {
    let kind = part.get("type").and_then(Value::as_str).unwrap_or_default();
    match kind {
        "input_text" | "output_text" | "text" => match part.get("text").and_then(Value::as_str) {
            Some(text) => Some(ContentPart::Text(text.to_owned())),
            None => {
                problems
                    .invalid
                    .push(format!("{field}.text"), "is required (a string)");
                None
            }
        },
        // A refusal the model gave earlier: what it said, as text.
        "refusal" => match part.get("refusal").and_then(Value::as_str) {
            Some(text) => Some(ContentPart::Text(text.to_owned())),
            None => {
                problems
                    .invalid
                    .push(format!("{field}.refusal"), "is required (a string)");
                None
            }
        },
        "input_image" if role != Role::User => {
            problems
                .invalid
                .push(field, "only user messages may hold images");
            None
        }
        "input_image" => {
            if part.get("file_id").is_some_and(|id| !id.is_null()) {
                problems.invalid.push(
                    format!("{field}.file_id"),
                    "uploaded files cannot be read: commander's Responses door is stateless; \
                     send the image as image_url (an https URL or a data URL)",
                );
                return None;
            }
            let Some(url) = part.get("image_url").and_then(Value::as_str) else {
                problems
                    .invalid
                    .push(format!("{field}.image_url"), "is required");
                return None;
            };
            let detail = match part.get("detail") {
                None | Some(Value::Null) => None,
                Some(detail) => Some(detail.as_str().unwrap_or("?").to_owned()),
            };
            // Errors name the Responses fields, not Chat's nested `image_url.url`.
            let mut nested = Problems::default();
            let image = image_part(
                ImageUrl {
                    url: url.to_owned(),
                    detail,
                },
                field,
                &mut nested,
            );
            for error in nested.invalid.errors() {
                let renamed = error
                    .field
                    .replace(".image_url.url", ".image_url")
                    .replace(".image_url.detail", ".detail");
                problems.invalid.push(renamed, error.message.clone());
            }
            image
        }
        "input_file" | "input_audio" => {
            problems
                .unsupported
                .push(field, format!("{kind} content parts are not supported"));
            None
        }
        _ => {
            problems.invalid.push(
                format!("{field}.type"),
                "must be input_text, input_image or output_text",
            );
            None
        }
    }
}

impl ResponsesCall {
    /// What `specialist` turned off that this call asks for, as the 400
    /// `unsupported_parameter` the call path gives, but naming this door's fields (`input`
    /// where the chat model says `messages`).
    pub(crate) fn not_allowed_by(&self, specialist: &Specialist) -> Option<ApiError> {
        let not_allowed = specialist.first_not_allowed(&self.options, &self.messages)?;
        let param = match not_allowed.param {
            "messages" => "input",
            other => other,
        };
        let mut details = core_domain::ValidationErrors::new();
        details.push(
            param,
            format!(
                "the specialist '{}' does not allow {}",
                specialist.id(),
                not_allowed.what.replace(" in messages", " in input")
            ),
        );
        Some(ApiError::unsupported(details))
    }

    /// What the Response object echoes, with the temperature and token limit the call runs
    /// with on `specialist`.
    pub(crate) fn echo(&self, specialist: &Specialist) -> Echo {
        let (temperature, max_output_tokens) =
            effective_limits(specialist, self.temperature, self.max_tokens);
        Echo {
            temperature,
            max_output_tokens,
            ..self.echo.clone()
        }
    }

    /// The request to the specialist's upstream: its prompt, then `instructions` and the
    /// input's system messages; the caller's limits may lower the specialist's, never raise
    /// them.
    pub(crate) fn into_request(self, specialist: &Specialist) -> ProviderRequest {
        provider_request(
            specialist,
            &self.system,
            self.messages,
            self.temperature,
            self.max_tokens,
            self.options,
        )
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use core_domain::{ImageSource, SpecialistDraft, SpecialistId};

    use super::*;
    use crate::ApiCode;

    fn parse(json: Value) -> Result<ResponsesCall, (ApiCode, Vec<String>)> {
        serde_json::from_value::<ResponsesRequest>(json)
            .unwrap()
            .validate(&ChatLimits::default())
            .map_err(|e| {
                let fields = e
                    .details()
                    .map(|d| d.errors().iter().map(|e| e.field.clone()).collect())
                    .unwrap_or_default();
                (e.code(), fields)
            })
    }

    /// The fields at fault in `json`, checked against `limits`.
    fn faults(json: Value, limits: &ChatLimits) -> Vec<String> {
        match serde_json::from_value::<ResponsesRequest>(json)
            .unwrap()
            .validate(limits)
        {
            Ok(_) => Vec::new(),
            Err(e) => e
                .details()
                .map(|d| d.errors().iter().map(|e| e.field.clone()).collect())
                .unwrap_or_default(),
        }
    }

    #[test]
    fn a_text_too_long_is_refused_naming_its_own_item() {
        let limits = ChatLimits {
            max_message_chars: 5,
            ..ChatLimits::default()
        };
        let long = "much too long";
        assert_eq!(
            faults(
                json!({"model": "s", "instructions": long, "input": "ok"}),
                &limits
            ),
            ["instructions"]
        );
        assert_eq!(
            faults(json!({"model": "s", "input": long}), &limits),
            ["input"]
        );
        // Items do not line up with chat messages: each problem names its own item.
        let fields = faults(
            json!({"model": "s", "input": [
                {"role": "developer", "content": long},
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {"role": "user", "content": "ok"},
                {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c", "output": long},
                {"role": "user", "content": [{"type": "input_text", "text": "ünï"},
                                             {"type": "input_text", "text": "cöde"}]},
                {"role": "user", "content": [{"type": "input_text", "text": "ünïcö"}]}
            ]}),
            &limits,
        );
        assert_eq!(
            fields,
            ["input[0].content", "input[4].output", "input[5].content"]
        );
    }

    fn specialist() -> Specialist {
        let spec = SpecialistDraft {
            temperature: 0.5,
            max_tokens: 1000,
            ..SpecialistDraft::new("S", "mock", "m", "Be the specialist.")
        }
        .validate()
        .unwrap();
        Specialist::new(SpecialistId::parse("s").unwrap(), spec, Utc::now())
    }

    #[test]
    fn a_string_input_is_one_user_message_after_the_prompt_and_instructions() {
        let call = parse(
            json!({"model": "s", "input": "Hi", "instructions": "Be brief.",
            "max_output_tokens": 5000, "temperature": 0.1}),
        )
        .unwrap();
        let echo = call.echo(&specialist());
        assert_eq!((echo.temperature, echo.max_output_tokens), (0.1, 1000));
        let request = call.into_request(&specialist());
        assert_eq!(request.system_prompt, "Be the specialist.\n\nBe brief.");
        assert_eq!(request.messages, [ChatMessage::user("Hi")]);
        assert_eq!((request.temperature, request.max_tokens), (0.1, 1000));
    }

    #[test]
    fn items_map_onto_the_rich_model() {
        let request = parse(json!({"model": "s", "instructions": "First.", "input": [
            {"role": "developer", "content": "Second."},
            {"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "What is "},
                {"type": "input_image", "image_url": "data:image/png;base64,iVBOR", "detail": "low"}]},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
             "content": [{"type": "output_text", "text": "Let me look.", "annotations": []}]},
            {"type": "function_call", "call_id": "c1", "name": "look", "arguments": "{}"},
            {"type": "function_call", "call_id": "c2", "name": "look", "arguments": "{\"x\":1}"},
            {"type": "function_call_output", "call_id": "c1", "output": "one"},
            {"type": "function_call_output", "call_id": "c2",
             "output": [{"type": "input_text", "text": "two"}]}
        ], "tools": [{"type": "function", "name": "look"}]}))
        .unwrap()
        .into_request(&specialist());
        assert_eq!(
            request.system_prompt,
            "Be the specialist.\n\nFirst.\n\nSecond."
        );
        let m = &request.messages;
        assert_eq!(m.len(), 4);
        assert_eq!(
            m[0].content[1],
            ContentPart::Image {
                source: ImageSource::Base64 {
                    media_type: "image/png".into(),
                    data: "iVBOR".into()
                },
                detail: Some(core_domain::ImageDetail::Low)
            }
        );
        assert_eq!(m[1].role, Role::Assistant);
        assert_eq!(m[1].text(), "Let me look.");
        assert_eq!(m[1].tool_calls.len(), 2);
        assert_eq!(m[1].tool_calls[1].arguments, "{\"x\":1}");
        assert_eq!(m[2], ChatMessage::tool_result("c1", "one"));
        assert_eq!(m[3], ChatMessage::tool_result("c2", "two"));
    }

    #[test]
    fn options_map_onto_chat_options() {
        let call = parse(json!({"model": "s", "input": "x",
            "tools": [{"type": "function", "name": "f", "description": "F",
                       "parameters": {"type": "object"}, "strict": true}],
            "tool_choice": {"type": "function", "name": "f"}, "parallel_tool_calls": false,
            "text": {"format": {"type": "json_schema", "name": "out",
                                "schema": {"type": "object"}, "strict": true}},
            "reasoning": {"effort": "low", "summary": "auto"}, "top_p": 0.5,
            "user": "u", "safety_identifier": "s-1", "metadata": {"k": "v"}, "store": false,
            "previous_response_id": null, "include": ["reasoning.encrypted_content"]}))
        .unwrap();
        assert_eq!(call.echo.metadata, json!({"k": "v"}));
        assert_eq!(
            call.echo.reasoning,
            json!({"effort": "low", "summary": "auto"})
        );
        let o = call.into_request(&specialist()).options;
        assert_eq!(o.tools[0].strict, Some(true));
        assert_eq!(o.tool_choice, Some(ToolChoice::Tool("f".into())));
        assert_eq!(o.parallel_tool_calls, Some(false));
        assert_eq!(
            o.response_format,
            Some(ResponseFormat::JsonSchema(JsonSchemaFormat {
                name: "out".into(),
                description: None,
                schema: json!({"type": "object"}),
                strict: true
            }))
        );
        assert_eq!(o.reasoning_effort, Some(ReasoningEffort::Low));
        assert_eq!((o.top_p, o.user.as_deref()), (Some(0.5), Some("s-1")));
    }

    #[test]
    fn bad_values_are_listed_and_invalid_wins_over_unsupported() {
        let (code, fields) = parse(json!({"model": "s", "temperature": 3, "top_p": 2,
            "max_output_tokens": 0, "metadata": {"k": 1},
            "tools": [{"type": "function", "name": "a b"}], "tool_choice": "sometimes",
            "text": {"format": {"type": "xml"}}, "reasoning": {"effort": "max"},
            "store": true,
            "input": [{"type": "computer_call_output"}, {"role": "robot", "content": "x"},
                      {"type": "function_call", "name": "f"},
                      {"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}]}))
        .unwrap_err();
        assert_eq!(code, ApiCode::ValidationFailed);
        assert_eq!(
            fields,
            [
                "temperature",
                "top_p",
                "max_output_tokens",
                "metadata",
                "tools[0].name",
                "tool_choice",
                "text.format.type",
                "reasoning.effort",
                "input[0].type",
                "input[1].role",
                "input[2].call_id",
                "input[2].arguments",
                "input[3].content[0].file_id",
            ]
        );
    }

    #[test]
    fn stateful_features_and_built_in_tools_are_unsupported() {
        let (code, fields) = parse(json!({"model": "s", "input": "x",
            "previous_response_id": "resp_1", "store": true, "background": true,
            "conversation": "conv_1", "prompt": {"id": "p"},
            "include": ["file_search_call.results"],
            "tools": [{"type": "web_search"}]}))
        .unwrap_err();
        assert_eq!(code, ApiCode::UnsupportedParameter);
        assert_eq!(
            fields,
            [
                "previous_response_id",
                "store",
                "conversation",
                "background",
                "prompt",
                "include[0]",
                "tools[0].type"
            ]
        );
        let (_, fields) =
            parse(json!({"model": "s", "input": [{"type": "item_reference", "id": "msg_1"}]}))
                .unwrap_err();
        assert_eq!(fields, ["input[0].type"]);
    }

    #[test]
    fn what_a_specialist_turned_off_is_refused_naming_input() {
        let mut draft = SpecialistDraft {
            allow_images: false,
            temperature: 0.5,
            max_tokens: 1000,
            ..SpecialistDraft::new("S", "mock", "m", "P")
        };
        let no_images = Specialist::new(
            SpecialistId::parse("s").unwrap(),
            draft.clone().validate().unwrap(),
            Utc::now(),
        );
        let call = parse(json!({"model": "s", "input": [{"role": "user", "content": [
            {"type": "input_image", "image_url": "https://example.com/a.png"}]}]}))
        .unwrap();
        let error = call.not_allowed_by(&no_images).unwrap();
        assert_eq!(error.code(), ApiCode::UnsupportedParameter);
        assert_eq!(error.first_field(), Some("input"));
        assert!(error.message_with_details().contains("images in input"));
        assert!(call.not_allowed_by(&specialist()).is_none());

        draft.allow_images = true;
        draft.allow_tools = false;
        let no_tools = Specialist::new(
            SpecialistId::parse("s").unwrap(),
            draft.validate().unwrap(),
            Utc::now(),
        );
        let call = parse(json!({"model": "s", "input": "x",
            "tools": [{"type": "function", "name": "f"}]}))
        .unwrap();
        let error = call.not_allowed_by(&no_tools).unwrap();
        assert_eq!(error.first_field(), Some("tools"));
    }

    #[test]
    fn a_refusal_part_without_its_text_is_refused_not_dropped() {
        let (code, fields) = parse(json!({"model": "s", "input": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": [{"type": "refusal"}]},
            {"role": "assistant", "content": [{"type": "refusal", "refusal": 7}]}]}))
        .unwrap_err();
        assert_eq!(code, ApiCode::ValidationFailed);
        assert_eq!(
            fields,
            ["input[1].content[0].refusal", "input[2].content[0].refusal"]
        );
        let request = parse(json!({"model": "s", "input": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "I can't."}]},
            {"role": "user", "content": "y"}]}))
        .unwrap()
        .into_request(&specialist());
        assert_eq!(request.messages[1], ChatMessage::assistant("I can't."));
    }

    #[test]
    fn a_duplicate_among_many_tools_is_found_where_it_is() {
        // A 1 MiB body holds some 30,000 tools; the duplicate at the end is found (by hashing,
        // not by scanning every earlier tool) and named.
        let mut tools: Vec<Value> = (0..16_000)
            .map(|i| json!({"type": "function", "name": format!("tool_{i}")}))
            .collect();
        tools.push(json!({"type": "function", "name": "tool_7"}));
        let (_, fields) = parse(json!({"model": "s", "input": "x", "tools": tools})).unwrap_err();
        assert_eq!(fields, ["tools[16000].name"]);
    }

    #[test]
    fn a_flood_of_bad_items_is_answered_with_the_first_problems() {
        for flood in [
            json!({"model": "s", "input": vec![json!(1); 100_000]}),
            json!({"model": "s", "input": "x", "tools": vec![json!({}); 100_000]}),
            json!({"model": "s", "input": "x", "tools": vec![json!({"type": "web_search"}); 100_000]}),
        ] {
            let (_, fields) = parse(flood).unwrap_err();
            assert_eq!(fields.len(), 51, "{:?}", &fields[..60.min(fields.len())]);
            assert!(
                fields[50] == "input[50]" || fields[50] == "tools[50]",
                "{}",
                fields[50]
            );
        }
    }

    #[test]
    fn a_function_output_must_answer_a_call_sent_before_it() {
        let call = json!({"type": "function_call", "call_id": "c1", "name": "f",
                          "arguments": "{}"});
        let output = json!({"type": "function_call_output", "call_id": "c1", "output": "1"});
        let ask = json!({"role": "user", "content": "x"});
        assert!(parse(json!({"model": "s", "input": [ask, call, output]})).is_ok());
        for input in [json!([ask, output]), json!([ask, output, call])] {
            let (code, fields) = parse(json!({"model": "s", "input": input})).unwrap_err();
            assert_eq!(code, ApiCode::ValidationFailed);
            assert_eq!(fields, ["input[1].call_id"]);
        }
    }

    #[test]
    fn metadata_keys_and_values_are_bounded_as_on_openai() {
        let fits = json!({"k".repeat(64): "v".repeat(512), "ü": "ñ"});
        assert!(parse(json!({"model": "s", "input": "x", "metadata": fits})).is_ok());
        for too_long in [
            json!({"k".repeat(65): "v"}),
            json!({"k": "v".repeat(513)}),
            json!({"k": 1}),
        ] {
            let (_, fields) =
                parse(json!({"model": "s", "input": "x", "metadata": too_long})).unwrap_err();
            assert_eq!(fields, ["metadata"]);
        }
    }

    #[test]
    fn a_reasoning_summary_is_one_of_openai_s_words() {
        for summary in ["auto", "concise", "detailed"] {
            let call = parse(json!({"model": "s", "input": "x",
                "reasoning": {"summary": summary}}))
            .unwrap();
            assert_eq!(call.echo.reasoning["summary"], summary);
        }
        for summary in [json!("everything"), json!(7), json!({"a": [1]})] {
            let (_, fields) = parse(json!({"model": "s", "input": "x",
                "reasoning": {"summary": summary}}))
            .unwrap_err();
            assert_eq!(fields, ["reasoning.summary"]);
        }
    }

    #[test]
    fn input_is_required_and_needs_a_user() {
        assert_eq!(parse(json!({"model": "s"})).unwrap_err().1, ["input"]);
        assert_eq!(
            parse(json!({"model": "s", "input": [{"role": "assistant", "content": "x"}]}))
                .unwrap_err()
                .1,
            ["input"]
        );
        assert_eq!(
            parse(json!({"model": "s", "input": 7})).unwrap_err().1,
            ["input"]
        );
    }
}
