//! The Chat Completions request, as OpenAI's reference defines it, and how it maps onto a
//! specialist.

use std::collections::{BTreeMap, HashSet};

use core_domain::{
    ChatMessage, ChatOptions, ContentPart, ImageDetail, ImageSource, JsonSchemaFormat,
    ReasoningEffort, ResponseFormat, Role, Specialist, ToolCall, ToolChoice, ToolDefinition,
    ValidationErrors,
};
use providers::ProviderRequest;
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::{ApiError, ChatLimits};

/// `POST /v1/chat/completions`, parsed into the rich chat model: content parts, tools, tool
/// calls and results, response formats and sampling parameters. Each provider honours what it
/// maps and refuses the rest by name. Fields that change nothing for the gateway (`metadata`,
/// `store`, `service_tier`, ...) are accepted and ignored, as OpenAI SDKs send some by default;
/// `n > 1` is refused (one choice only).
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct CompletionRequest {
    /// A specialist id.
    model: String,
    messages: Vec<WireMessage>,
    temperature: Option<f64>,
    max_tokens: Option<i64>,
    max_completion_tokens: Option<i64>,
    #[serde(default)]
    pub(crate) stream: bool,
    stream_options: Option<StreamOptions>,
    n: Option<i64>,
    /// Functions the model may call (`type: function` only).
    tools: Option<Vec<WireTool>>,
    /// `auto`, `none`, `required`, or `{"type": "function", "function": {"name"}}`.
    tool_choice: Option<Value>,
    parallel_tool_calls: Option<bool>,
    /// Deprecated spelling of `tools` (functions only).
    functions: Option<Vec<WireFunction>>,
    /// Deprecated spelling of `tool_choice`: `auto`, `none` or `{"name"}`.
    function_call: Option<Value>,
    /// `{"type": "text" | "json_object" | "json_schema", "json_schema"?: {...}}`.
    response_format: Option<Value>,
    /// One stop sequence, or up to four.
    stop: Option<Value>,
    seed: Option<i64>,
    top_p: Option<f64>,
    presence_penalty: Option<f64>,
    frequency_penalty: Option<f64>,
    /// Token id (as a string) to a bias from -100 to 100.
    logit_bias: Option<BTreeMap<String, i64>>,
    logprobs: Option<bool>,
    top_logprobs: Option<i64>,
    /// `none`, `minimal`, `low`, `medium` or `high`.
    reasoning_effort: Option<String>,
    user: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
struct WireMessage {
    role: String,
    #[serde(default)]
    content: Option<Content>,
    /// An assistant message's tool calls.
    tool_calls: Option<Vec<WireToolCall>>,
    /// A tool message's call.
    tool_call_id: Option<String>,
}

/// A message's content: a string, or an array of parts (text, images).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize, ToSchema)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
    image_url: Option<ImageUrl>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub(super) struct ImageUrl {
    /// `https://...`, or `data:<media type>;base64,<data>`.
    pub(super) url: String,
    /// `auto`, `low` or `high`.
    pub(super) detail: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
struct WireToolCall {
    id: String,
    /// Always `function`.
    #[serde(rename = "type")]
    kind: Option<String>,
    function: WireCalledFunction,
}

#[derive(Debug, Deserialize, ToSchema)]
struct WireCalledFunction {
    name: String,
    /// The arguments as JSON text.
    arguments: String,
}

#[derive(Debug, Deserialize, ToSchema)]
struct WireTool {
    /// Always `function`.
    #[serde(rename = "type")]
    kind: String,
    function: Option<WireFunction>,
}

#[derive(Debug, Deserialize, ToSchema)]
struct WireFunction {
    name: String,
    description: Option<String>,
    /// A JSON Schema object; no parameters when absent.
    parameters: Option<Value>,
    strict: Option<bool>,
}

/// A validated request: which specialist, the conversation, and the caller's own limits.
#[derive(Debug)]
pub(crate) struct Completion {
    /// The model asked for: a specialist id or alias, resolved by the catalogue.
    pub model: String,
    /// System (and developer) messages of the caller, added after the specialist's prompt.
    system: Vec<String>,
    messages: Vec<ChatMessage>,
    temperature: Option<f64>,
    max_tokens: Option<u32>,
    options: ChatOptions,
    pub include_usage: bool,
}

pub(super) use crate::chat::{Problems, effective_limits, provider_request};

/// OpenAI's rule for function (and schema) names, which every upstream accepts.
pub(super) fn is_valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl CompletionRequest {
    /// Checks the request, reporting every problem at once (as `messages[2].content`, ...):
    /// invalid values as a validation failure; when all are valid, what no provider maps as
    /// an unsupported parameter.
    pub(crate) fn validate(self, limits: &ChatLimits) -> Result<Completion, ApiError> {
        let mut problems = Problems::default();
        let errors = &mut problems.invalid;
        if let Some(t) = self.temperature
            && !(0.0..=2.0).contains(&t)
        {
            errors.push("temperature", "must be between 0 and 2");
        }
        let max_tokens = match self.max_completion_tokens.or(self.max_tokens) {
            None => None,
            Some(n) => u32::try_from(n).ok().filter(|n| *n >= 1).or_else(|| {
                errors.push("max_tokens", "must be a positive integer");
                None
            }),
        };
        if self.n.is_some_and(|n| n != 1) {
            errors.push("n", "only one choice (n = 1) is supported");
        }
        if self.messages.is_empty() {
            errors.push("messages", "must contain at least one message");
        }
        if self.messages.len() > limits.max_history_messages + 1 {
            errors.push(
                "messages",
                format!(
                    "must have at most {} messages",
                    limits.max_history_messages + 1
                ),
            );
        }
        let tools = tools(self.tools, self.functions, errors);
        let tool_choice = tool_choice(self.tool_choice, self.function_call, &tools, errors);
        let response_format = self
            .response_format
            .and_then(|format| response_format(format, errors));
        let stop = stop(self.stop, errors);
        if let Some(p) = self.top_p
            && !(0.0..=1.0).contains(&p)
        {
            errors.push("top_p", "must be between 0 and 1");
        }
        for (field, penalty) in [
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ] {
            if penalty.is_some_and(|p| !(-2.0..=2.0).contains(&p)) {
                errors.push(field, "must be between -2 and 2");
            }
        }
        let mut logit_bias = BTreeMap::new();
        for (token, bias) in self.logit_bias.unwrap_or_default() {
            match (token.parse::<u32>(), i32::try_from(bias)) {
                (Ok(token), Ok(bias)) if (-100..=100).contains(&bias) => {
                    logit_bias.insert(token, bias);
                }
                (Err(_), _) => errors.push(
                    format!("logit_bias.{token}"),
                    "keys must be token ids (non-negative integers)",
                ),
                _ => errors.push(
                    format!("logit_bias.{token}"),
                    "must be between -100 and 100",
                ),
            }
        }
        let logprobs = self.logprobs.unwrap_or(false);
        let top_logprobs = match self.top_logprobs {
            None => None,
            Some(n) => match u8::try_from(n).ok().filter(|n| *n <= 20) {
                None => {
                    errors.push("top_logprobs", "must be between 0 and 20");
                    None
                }
                Some(_) if !logprobs => {
                    errors.push("top_logprobs", "needs logprobs: true");
                    None
                }
                some => some,
            },
        };
        let reasoning_effort = match self.reasoning_effort.as_deref() {
            None => None,
            Some("none") => Some(ReasoningEffort::None),
            Some("minimal") => Some(ReasoningEffort::Minimal),
            Some("low") => Some(ReasoningEffort::Low),
            Some("medium") => Some(ReasoningEffort::Medium),
            Some("high") => Some(ReasoningEffort::High),
            Some(_) => {
                errors.push(
                    "reasoning_effort",
                    "must be none, minimal, low, medium or high",
                );
                None
            }
        };
        if logprobs && self.stream {
            // Stream chunks do not carry log probabilities (yet): refused rather than dropped.
            problems.unsupported.push(
                "logprobs",
                "log probabilities are not available on streamed answers",
            );
        }

        let (system, messages) = conversation(self.messages, limits, &mut problems);
        let errors = &mut problems.invalid;
        if errors.is_empty() && !messages.iter().any(|m| m.role == Role::User) {
            errors.push("messages", "must contain a user message");
        }
        if !problems.invalid.is_empty() {
            return Err(ApiError::validation(problems.invalid));
        }
        if !problems.unsupported.is_empty() {
            return Err(ApiError::unsupported(problems.unsupported));
        }
        Ok(Completion {
            model: self.model,
            system,
            messages,
            temperature: self.temperature,
            max_tokens,
            options: ChatOptions {
                tools,
                tool_choice,
                parallel_tool_calls: self.parallel_tool_calls,
                response_format,
                stop,
                top_p: self.top_p,
                seed: self.seed,
                presence_penalty: self.presence_penalty,
                frequency_penalty: self.frequency_penalty,
                logit_bias,
                logprobs,
                top_logprobs,
                reasoning_effort,
                user: self.user,
            },
            include_usage: self.stream_options.is_some_and(|o| o.include_usage),
        })
    }
}

/// The tools on offer, from `tools` or the legacy `functions`.
fn tools(
    tools: Option<Vec<WireTool>>,
    functions: Option<Vec<WireFunction>>,
    errors: &mut ValidationErrors,
) -> Vec<ToolDefinition> {
    let mut offered: Vec<(String, WireFunction)> = Vec::new();
    for (i, tool) in tools.unwrap_or_default().into_iter().enumerate() {
        match (tool.kind.as_str(), tool.function) {
            ("function", Some(function)) => {
                offered.push((format!("tools[{i}].function"), function))
            }
            ("function", None) => errors.push(format!("tools[{i}].function"), "is required"),
            _ => errors.push(format!("tools[{i}].type"), "must be function"),
        }
    }
    for (i, function) in functions.unwrap_or_default().into_iter().enumerate() {
        offered.push((format!("functions[{i}]"), function));
    }
    let mut definitions: Vec<ToolDefinition> = Vec::with_capacity(offered.len());
    // Names seen so far: a body may hold tens of thousands of tools, so a duplicate is found
    // by hashing, not by scanning the tools before it (quadratic: seconds of a worker).
    let mut names: HashSet<String> = HashSet::with_capacity(offered.len());
    for (field, function) in offered {
        if !is_valid_name(&function.name) {
            errors.push(
                format!("{field}.name"),
                "must be 1 to 64 letters, digits, underscores or dashes",
            );
        } else if !names.insert(function.name.clone()) {
            errors.push(
                format!("{field}.name"),
                "names another tool already offered",
            );
        }
        let parameters = match function.parameters {
            None => serde_json::json!({"type": "object", "properties": {}}),
            Some(Value::Object(schema)) => Value::Object(schema),
            Some(_) => {
                errors.push(
                    format!("{field}.parameters"),
                    "must be a JSON Schema object",
                );
                continue;
            }
        };
        definitions.push(ToolDefinition {
            name: function.name,
            description: function.description,
            parameters,
            strict: function.strict,
        });
    }
    definitions
}

/// `tool_choice` (or the legacy `function_call`), which must name an offered tool.
fn tool_choice(
    tool_choice: Option<Value>,
    function_call: Option<Value>,
    tools: &[ToolDefinition],
    errors: &mut ValidationErrors,
) -> Option<ToolChoice> {
    let (field, value) = match (tool_choice, function_call) {
        (Some(value), _) => ("tool_choice", value),
        (None, Some(value)) => ("function_call", value),
        (None, None) => return None,
    };
    let choice = match &value {
        Value::Null => return None,
        Value::String(word) => match word.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" if field == "tool_choice" => ToolChoice::Required,
            _ => {
                errors.push(field, "must be auto, none, required or a named function");
                return None;
            }
        },
        Value::Object(_) => {
            // `{"type": "function", "function": {"name"}}`, or the legacy `{"name"}`.
            let name = if field == "tool_choice" {
                (value.get("type").and_then(Value::as_str) == Some("function"))
                    .then(|| value.pointer("/function/name"))
                    .flatten()
            } else {
                value.get("name")
            };
            match name.and_then(Value::as_str) {
                Some(name) => ToolChoice::Tool(name.to_owned()),
                None => {
                    errors.push(
                        field,
                        "must be {\"type\": \"function\", \"function\": {\"name\": ...}}",
                    );
                    return None;
                }
            }
        }
        _ => {
            errors.push(field, "must be a string or an object");
            return None;
        }
    };
    match &choice {
        ToolChoice::Tool(name) if !tools.iter().any(|t| &t.name == name) => {
            errors.push(
                field,
                format!("names '{name}', which is not an offered tool"),
            );
            None
        }
        ToolChoice::Required | ToolChoice::Tool(_) if tools.is_empty() => {
            errors.push(field, "needs tools to choose from");
            None
        }
        _ => Some(choice),
    }
}

/// `response_format`: text, any JSON object, or JSON matching a named schema.
fn response_format(format: Value, errors: &mut ValidationErrors) -> Option<ResponseFormat> {
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Some(ResponseFormat::Text),
        Some("json_object") => Some(ResponseFormat::JsonObject),
        Some("json_schema") => {
            let Some(spec) = format.get("json_schema").and_then(Value::as_object) else {
                errors.push("response_format.json_schema", "is required");
                return None;
            };
            let name = spec.get("name").and_then(Value::as_str).unwrap_or_default();
            if !is_valid_name(name) {
                errors.push(
                    "response_format.json_schema.name",
                    "must be 1 to 64 letters, digits, underscores or dashes",
                );
            }
            let schema = match spec.get("schema") {
                None => serde_json::json!({}),
                Some(schema @ Value::Object(_)) => schema.clone(),
                Some(_) => {
                    errors.push("response_format.json_schema.schema", "must be an object");
                    return None;
                }
            };
            let description = match spec.get("description") {
                None | Some(Value::Null) => None,
                Some(Value::String(text)) => Some(text.clone()),
                Some(_) => {
                    errors.push(
                        "response_format.json_schema.description",
                        "must be a string",
                    );
                    return None;
                }
            };
            let strict = match spec.get("strict") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(strict)) => *strict,
                Some(_) => {
                    errors.push("response_format.json_schema.strict", "must be a boolean");
                    return None;
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
                "response_format.type",
                "must be text, json_object or json_schema",
            );
            None
        }
    }
}

/// `stop`: a string, or a list of at most four.
fn stop(stop: Option<Value>, errors: &mut ValidationErrors) -> Vec<String> {
    let sequences = match stop {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::String(one)) => vec![one],
        Some(Value::Array(many)) => {
            let strings: Vec<String> = many
                .iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect();
            if strings.len() != many.len() {
                errors.push("stop", "must be a string or a list of strings");
                return Vec::new();
            }
            strings
        }
        Some(_) => {
            errors.push("stop", "must be a string or a list of strings");
            return Vec::new();
        }
    };
    if sequences.len() > 4 {
        errors.push("stop", "must have at most 4 sequences");
    }
    if sequences.iter().any(String::is_empty) {
        errors.push("stop", "sequences must not be empty");
    }
    sequences
}

/// The caller's system messages, and the conversation in the rich model.
fn conversation(
    wire: Vec<WireMessage>,
    limits: &ChatLimits,
    problems: &mut Problems,
) -> (Vec<String>, Vec<ChatMessage>) {
    let mut system = Vec::new();
    let mut messages = Vec::with_capacity(wire.len());
    for (i, message) in wire.into_iter().enumerate() {
        if problems.stop_listing(|| format!("messages[{i}]")) {
            break;
        }
        let role = match message.role.as_str() {
            // "developer" is OpenAI's newer name for system instructions.
            "system" | "developer" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "tool" => Role::Tool,
            _ => {
                problems.invalid.push(
                    format!("messages[{i}].role"),
                    "must be system, developer, user, assistant or tool",
                );
                continue;
            }
        };
        let tool_calls: Vec<ToolCall> = match message.tool_calls {
            Some(calls) if role != Role::Assistant && !calls.is_empty() => {
                problems.invalid.push(
                    format!("messages[{i}].tool_calls"),
                    "only an assistant message calls tools",
                );
                Vec::new()
            }
            calls => calls
                .unwrap_or_default()
                .into_iter()
                .enumerate()
                .filter_map(|(j, call)| {
                    if call.kind.as_deref().is_some_and(|k| k != "function") {
                        problems.invalid.push(
                            format!("messages[{i}].tool_calls[{j}].type"),
                            "must be function",
                        );
                        return None;
                    }
                    Some(ToolCall {
                        id: call.id,
                        name: call.function.name,
                        arguments: call.function.arguments,
                    })
                })
                .collect(),
        };
        let content = match message.content {
            None if role == Role::Assistant && !tool_calls.is_empty() => Vec::new(),
            None => {
                problems.invalid.push(
                    format!("messages[{i}].content"),
                    "is required (null only for an assistant message that calls tools)",
                );
                Vec::new()
            }
            Some(Content::Text(text)) => vec![ContentPart::Text(text)],
            Some(Content::Parts(parts)) => parts
                .into_iter()
                .enumerate()
                .filter_map(|(j, part)| {
                    content_part(part, role, &format!("messages[{i}].content[{j}]"), problems)
                })
                .collect(),
        };
        let chars = ContentPart::text_chars(&content);
        if chars > limits.max_message_chars {
            problems.invalid.push(
                format!("messages[{i}].content"),
                format!("must be at most {} characters", limits.max_message_chars),
            );
        }
        let tool_call_id = match (role, message.tool_call_id) {
            (Role::Tool, Some(id)) if !id.is_empty() => Some(id),
            (Role::Tool, _) => {
                problems.invalid.push(
                    format!("messages[{i}].tool_call_id"),
                    "is required for a tool message",
                );
                None
            }
            (_, _) => None,
        };
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
            continue;
        }
        messages.push(ChatMessage {
            role,
            content,
            tool_calls,
            tool_call_id,
        });
    }
    (system, messages)
}

/// One content part: text anywhere, images only from the user.
fn content_part(
    part: Part,
    role: Role,
    field: &str,
    problems: &mut Problems,
) -> Option<ContentPart> {
    match (part.kind.as_str(), part.text, part.image_url) {
        ("text", Some(text), _) => Some(ContentPart::Text(text)),
        ("text", None, _) => {
            problems
                .invalid
                .push(format!("{field}.text"), "is required");
            None
        }
        ("image_url", _, _) if role != Role::User => {
            problems
                .invalid
                .push(field, "only user messages may hold images");
            None
        }
        ("image_url", _, Some(image)) => image_part(image, field, problems),
        ("image_url", _, None) => {
            problems
                .invalid
                .push(format!("{field}.image_url"), "is required");
            None
        }
        ("input_audio" | "file", _, _) => {
            // Valid OpenAI parts, but no provider here maps audio or files.
            problems.unsupported.push(
                field,
                format!("{} content parts are not supported", part.kind),
            );
            None
        }
        _ => {
            problems.invalid.push(
                format!("{field}.type"),
                "must be text, image_url, input_audio or file",
            );
            None
        }
    }
}

/// An image: a `data:` URL inline, or an `http(s)` URL the upstream fetches.
pub(super) fn image_part(
    image: ImageUrl,
    field: &str,
    problems: &mut Problems,
) -> Option<ContentPart> {
    let detail = match image.detail.as_deref() {
        None => None,
        Some("auto") => Some(ImageDetail::Auto),
        Some("low") => Some(ImageDetail::Low),
        Some("high") => Some(ImageDetail::High),
        Some(_) => {
            problems.invalid.push(
                format!("{field}.image_url.detail"),
                "must be auto, low or high",
            );
            return None;
        }
    };
    let source = if let Some(inline) = image.url.strip_prefix("data:") {
        match inline.split_once(";base64,") {
            Some((media_type, data)) if media_type.starts_with("image/") && !data.is_empty() => {
                ImageSource::Base64 {
                    media_type: media_type.to_owned(),
                    data: data.to_owned(),
                }
            }
            _ => {
                problems.invalid.push(
                    format!("{field}.image_url.url"),
                    "a data URL must be data:image/<type>;base64,<data>",
                );
                return None;
            }
        }
    } else if image.url.starts_with("https://") || image.url.starts_with("http://") {
        ImageSource::Url(image.url)
    } else {
        problems.invalid.push(
            format!("{field}.image_url.url"),
            "must be an http(s) URL or a data:image/...;base64 URL",
        );
        return None;
    };
    Some(ContentPart::Image { source, detail })
}

impl Completion {
    /// The request to the specialist's upstream.
    ///
    /// The specialist's system prompt always applies; the caller's system messages follow it.
    /// The caller's `temperature` and `max_tokens` may lower the specialist's, never raise
    /// them: the effective value is the smaller of the two.
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
    use core_domain::{SpecialistDraft, SpecialistId};
    use serde_json::json;

    use super::*;
    use crate::ApiCode;

    fn parse(json: Value) -> Result<Completion, Vec<String>> {
        parse_coded(json).map_err(|(_, fields)| fields)
    }

    fn parse_coded(json: Value) -> Result<Completion, (ApiCode, Vec<String>)> {
        serde_json::from_value::<CompletionRequest>(json)
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

    fn specialist(temperature: f64, max_tokens: i64) -> Specialist {
        let spec = SpecialistDraft {
            temperature,
            max_tokens,
            ..SpecialistDraft::new("S", "mock", "m", "Be the specialist.")
        }
        .validate()
        .unwrap();
        Specialist::new(SpecialistId::parse("s").unwrap(), spec, Utc::now())
    }

    #[test]
    fn caller_limits_lower_but_never_raise_the_specialist_s() {
        let s = specialist(0.5, 1000);
        let lower = parse(json!({"model": "s", "temperature": 0.1, "max_tokens": 10,
            "messages": [{"role": "user", "content": "hi"}]}))
        .unwrap()
        .into_request(&s);
        assert_eq!((lower.temperature, lower.max_tokens), (0.1, 10));
        let higher = parse(json!({"model": "s", "temperature": 1.9,
            "max_completion_tokens": 100000, "messages": [{"role": "user", "content": "hi"}]}))
        .unwrap()
        .into_request(&s);
        assert_eq!((higher.temperature, higher.max_tokens), (0.5, 1000));
        let unset = parse(json!({"model": "s",
            "messages": [{"role": "user", "content": "hi"}]}))
        .unwrap()
        .into_request(&s);
        assert_eq!((unset.temperature, unset.max_tokens), (0.5, 1000));
    }

    #[test]
    fn system_messages_follow_the_specialist_s_prompt_and_parts_stay_parts() {
        let request = parse(json!({"model": "s", "messages": [
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": [{"type": "text", "text": "Bon"}, {"type": "text", "text": "jour"}]},
            {"role": "assistant", "content": "Salut"},
            {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
            {"role": "user", "content": "Encore ?"}
        ]}))
        .unwrap()
        .into_request(&specialist(0.5, 100));
        assert_eq!(
            request.system_prompt,
            "Be the specialist.\n\nAnswer in French.\n\nBe brief."
        );
        let mut bonjour = ChatMessage::user("Bon");
        bonjour.content.push(ContentPart::Text("jour".into()));
        assert_eq!(
            request.messages,
            [
                bonjour,
                ChatMessage::assistant("Salut"),
                ChatMessage::user("Encore ?")
            ]
        );
    }

    #[test]
    fn images_tool_calls_and_tool_results_map_onto_the_rich_model() {
        let request = parse(json!({"model": "s", "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}}
            ]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\":1}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "42"},
            {"role": "assistant", "content": "The answer is"}
        ]}))
        .unwrap()
        .into_request(&specialist(0.5, 100));
        let m = &request.messages;
        assert_eq!(
            m[0].content[1],
            ContentPart::Image {
                source: ImageSource::Url("https://example.com/a.png".into()),
                detail: Some(ImageDetail::Low)
            }
        );
        assert_eq!(
            m[0].content[2],
            ContentPart::Image {
                source: ImageSource::Base64 {
                    media_type: "image/png".into(),
                    data: "iVBOR".into()
                },
                detail: None
            }
        );
        assert!(m[1].content.is_empty());
        assert_eq!(
            m[1].tool_calls,
            [ToolCall {
                id: "call_1".into(),
                name: "lookup".into(),
                arguments: "{\"q\":1}".into()
            }]
        );
        assert_eq!(m[2], ChatMessage::tool_result("call_1", "42"));
        // A prefill: the answer continues the last assistant message.
        assert_eq!(m[3], ChatMessage::assistant("The answer is"));
    }

    #[test]
    fn every_option_maps_onto_chat_options() {
        let request = parse(json!({"model": "s", "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "function", "function": {"name": "lookup", "description": "Find",
                "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}, "strict": true}},
                {"type": "function", "function": {"name": "now"}}],
            "tool_choice": {"type": "function", "function": {"name": "now"}},
            "parallel_tool_calls": false,
            "response_format": {"type": "json_schema", "json_schema": {"name": "answer",
                "schema": {"type": "object"}, "strict": true}},
            "stop": "END", "seed": 7, "top_p": 0.9, "presence_penalty": 0.5,
            "frequency_penalty": -0.5, "logit_bias": {"50256": -100}, "logprobs": true,
            "top_logprobs": 3, "reasoning_effort": "low", "user": "u-1",
            "metadata": {"a": "b"}, "store": false, "service_tier": "auto"}))
        .unwrap()
        .into_request(&specialist(0.5, 100));
        let o = request.options;
        assert_eq!(o.tools.len(), 2);
        assert_eq!(o.tools[0].strict, Some(true));
        assert_eq!(
            o.tools[1].parameters,
            json!({"type": "object", "properties": {}})
        );
        assert_eq!(o.tool_choice, Some(ToolChoice::Tool("now".into())));
        assert_eq!(o.parallel_tool_calls, Some(false));
        assert_eq!(
            o.response_format,
            Some(ResponseFormat::JsonSchema(JsonSchemaFormat {
                name: "answer".into(),
                description: None,
                schema: json!({"type": "object"}),
                strict: true
            }))
        );
        assert_eq!(o.stop, ["END"]);
        assert_eq!((o.seed, o.top_p), (Some(7), Some(0.9)));
        assert_eq!(
            (o.presence_penalty, o.frequency_penalty),
            (Some(0.5), Some(-0.5))
        );
        assert_eq!(o.logit_bias, BTreeMap::from([(50256, -100)]));
        assert!(o.logprobs);
        assert_eq!(o.top_logprobs, Some(3));
        assert_eq!(o.reasoning_effort, Some(ReasoningEffort::Low));
        assert_eq!(o.user.as_deref(), Some("u-1"));

        let legacy = parse(
            json!({"model": "s", "messages": [{"role": "user", "content": "x"}],
            "functions": [{"name": "f"}], "function_call": {"name": "f"}}),
        )
        .unwrap();
        assert_eq!(legacy.options.tools[0].name, "f");
        assert_eq!(
            legacy.options.tool_choice,
            Some(ToolChoice::Tool("f".into()))
        );
    }

    #[test]
    fn bad_values_are_listed() {
        let fields = parse(json!({"model": "bad model", "temperature": 3, "n": 2,
            "max_tokens": 0, "tools": [{"type": "function"}, {"type": "function", "function": {"name": "a b"}}],
            "tool_choice": {"type": "function", "function": {"name": "missing"}},
            "response_format": {"type": "xml"}, "stop": ["a", "b", "c", "d", "e"],
            "top_p": 1.5, "presence_penalty": 3, "logit_bias": {"1": 101},
            "top_logprobs": 2, "reasoning_effort": "max",
            "messages": [{"role": "tool", "content": "x"},
                         {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
                         {"role": "user", "content": null},
                         {"role": "function", "content": "x"}]}))
        .unwrap_err();
        assert_eq!(
            fields,
            [
                "temperature",
                "max_tokens",
                "n",
                "tools[0].function",
                "tools[1].function.name",
                "tool_choice",
                "response_format.type",
                "stop",
                "top_p",
                "presence_penalty",
                "logit_bias.1",
                "top_logprobs",
                "reasoning_effort",
                "messages[0].tool_call_id",
                "messages[1].content[0].image_url.url",
                "messages[2].content",
                "messages[3].role",
            ]
        );
        assert_eq!(
            parse(json!({"model": "s", "messages": []})).unwrap_err(),
            ["messages"]
        );
        // No tools, however an SDK spells it, is fine.
        for none in [json!(null), json!([])] {
            assert!(
                parse(json!({"model": "s", "tools": none, "functions": none,
                    "messages": [{"role": "user", "content": "x"}]}))
                .is_ok()
            );
        }
        // A conversation needs someone asking.
        assert_eq!(
            parse(json!({"model": "s", "messages": [{"role": "assistant", "content": "x"}]}))
                .unwrap_err(),
            ["messages"]
        );
    }

    #[test]
    fn a_duplicate_among_many_tools_is_found_where_it_is() {
        // Tens of thousands of tools fit in a body; the duplicate at the end is found (by
        // hashing: the cost per tool is measured by benchmarks, not here) and named.
        let mut tools: Vec<Value> = (0..16_000)
            .map(|i| json!({"type": "function", "function": {"name": format!("tool_{i}")}}))
            .collect();
        tools.push(json!({"type": "function", "function": {"name": "tool_7"}}));
        let fields = parse(json!({"model": "s", "tools": tools,
            "messages": [{"role": "user", "content": "x"}]}))
        .unwrap_err();
        assert_eq!(fields, ["tools[16000].function.name"]);
    }

    #[test]
    fn a_flood_of_bad_messages_is_answered_with_the_first_problems() {
        let flood = vec![json!({"role": "robot", "content": "x"}); 100_000];
        let fields = parse(json!({"model": "s", "messages": flood})).unwrap_err();
        // The count over the limit and 49 messages' problems, then where checking stopped.
        assert_eq!(fields.len(), 51, "{:?}", &fields[..60.min(fields.len())]);
        assert_eq!(fields[0], "messages");
        assert_eq!(fields[50], "messages[49]");
    }

    #[test]
    fn audio_files_and_streamed_logprobs_are_unsupported_not_invalid() {
        let (code, fields) = parse_coded(
            json!({"model": "s", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "listen"},
            {"type": "input_audio", "input_audio": {"data": "AAA", "format": "wav"}}]}]}),
        )
        .unwrap_err();
        assert_eq!(code, ApiCode::UnsupportedParameter);
        assert_eq!(fields, ["messages[0].content[1]"]);
        let (code, fields) = parse_coded(json!({"model": "s", "stream": true, "logprobs": true,
            "messages": [{"role": "user", "content": "x"}]}))
        .unwrap_err();
        assert_eq!(
            (code, fields),
            (ApiCode::UnsupportedParameter, vec!["logprobs".to_owned()])
        );
        // An invalid value wins: fix that first.
        let (code, _) = parse_coded(
            json!({"model": "s", "top_p": 9, "messages": [{"role": "user", "content": [
            {"type": "file", "file": {"file_id": "f"}}]}]}),
        )
        .unwrap_err();
        assert_eq!(code, ApiCode::ValidationFailed);
    }
}
