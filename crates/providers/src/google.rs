//! Google Gemini `generateContent` and `streamGenerateContent`.

use std::borrow::Cow;

use core_domain::{
    ChatMessage, ChatOptions, Completion, ContentPart, FinishReason, ImageDetail, ImageSource,
    JsonSchemaFormat, ProviderKind, ReasoningEffort, ResponseFormat, Role, StreamEvent, TokenUsage,
    ToolCall, ToolCallDelta, ToolChoice, ToolDefinition,
};
use futures_util::FutureExt;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::CallLimits;
use crate::embedding::checked_vectors;
use crate::keys::KeyPool;
use crate::registry::required_pool;
use crate::streaming::{Step, Tally, normalise, parse_data};
use crate::token_count::{Reported, count};
use crate::transport::Sleeper;
use crate::transport::{Call, Transport, read_json, secret_header, send, sse_events};
use crate::upstream_error::scrub;
use crate::{
    ChatProvider, CompletionFuture, EmbeddingFuture, EmbeddingRequest, Embeddings,
    EventStreamFuture, KeyHealth, ProviderError, ProviderRequest, ProvidersConfig, Unsupported,
};

/// The `google` provider. The key travels in the `x-goog-api-key` header, never in the URL
/// (URLs end up in logs).
#[derive(Debug)]
pub struct GoogleProvider {
    transport: Transport,
    base_url: String,
    keys: KeyPool,
    limits: CallLimits,
}

impl GoogleProvider {
    pub(crate) fn new(
        config: &ProvidersConfig,
        transport: Transport,
        sleeper: &'static dyn Sleeper,
    ) -> Self {
        let base_url = config.google.base_url.trim().trim_end_matches('/');
        Self {
            transport,
            base_url: base_url.to_owned(),
            keys: KeyPool::new(
                ProviderKind::Google,
                "providers.google",
                base_url,
                config.google.keys(),
                config.google.pool_policy(),
            ),
            limits: config.google.limits(config, sleeper),
        }
    }

    fn key(&self) -> Result<&KeyPool, ProviderError> {
        required_pool(&self.keys, ProviderKind::Google)
    }

    /// `{base}/v1beta/models/{model}:{method}`, the model percent-encoded so that no name can
    /// change the path (a leading `models/` is accepted, as Google's own tools write it).
    fn url(&self, model: &str, method: &str) -> String {
        let model = model.strip_prefix("models/").unwrap_or(model);
        let encoded: String = model
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        format!("{}/v1beta/models/{encoded}:{method}", self.base_url)
    }

    /// The request body, or what in `request` this provider cannot honour. `check_request`
    /// builds it too, so that a refusal comes before any call.
    fn body(request: &ProviderRequest) -> Result<WireRequest<'_>, Unsupported> {
        let options = &request.options;
        refuse_unmapped_options(options)?;
        let mut system: Vec<WirePart<'_>> = Vec::new();
        if !request.system_prompt.is_empty() {
            system.push(WirePart::text(request.system_prompt.as_str()));
        }
        let mut images = ImageDetails::default();
        let mut contents: Vec<WireContent<'_>> = Vec::with_capacity(request.messages.len());
        for (position, m) in request.messages.iter().enumerate() {
            match m.role {
                Role::System => {
                    if m.has_images() {
                        return Err(refusal(
                            "messages",
                            "images in a system message (Gemini's system instruction is text)",
                        ));
                    }
                    system.push(WirePart::text(m.text()));
                }
                Role::User | Role::Assistant => {
                    let mut parts = Vec::with_capacity(m.content.len() + m.tool_calls.len());
                    // Gemini refuses empty text parts; an assistant message that only calls
                    // tools often carries one.
                    let said = m
                        .content
                        .iter()
                        .filter(|p| !matches!(p, ContentPart::Text(t) if t.is_empty()));
                    for part in said {
                        parts.push(content_part(part, &mut images)?);
                    }
                    for call in &m.tool_calls {
                        parts.push(WirePart::FunctionCall {
                            function_call: WireFunctionCall {
                                name: &call.name,
                                args: call_arguments(call)?,
                            },
                            thought_signature: thought_signature_of(&call.id),
                        });
                    }
                    if parts.is_empty() {
                        // Gemini needs a part in every turn; an empty message is empty text.
                        parts.push(WirePart::text(""));
                    }
                    let role = if m.role == Role::User {
                        "user"
                    } else {
                        "model"
                    };
                    contents.push(WireContent { role, parts });
                }
                Role::Tool => {
                    let part = WirePart::FunctionResponse {
                        function_response: WireFunctionResponse {
                            name: called_tool_name(&request.messages, position)?,
                            response: tool_response(m)?,
                        },
                    };
                    // Gemini wants the answers to one turn's calls together, in one user turn.
                    match contents.last_mut() {
                        Some(last) if last.is_tool_results() => last.parts.push(part),
                        _ => contents.push(WireContent {
                            role: "user",
                            parts: vec![part],
                        }),
                    }
                }
            }
        }
        let (response_mime_type, response_json_schema) = match &options.response_format {
            None | Some(ResponseFormat::Text) => (None, None),
            Some(ResponseFormat::JsonObject) => (Some("application/json"), None),
            Some(ResponseFormat::JsonSchema(format)) => (
                Some("application/json"),
                Some(schema_with_description(format)),
            ),
        };
        Ok(WireRequest {
            contents,
            system_instruction: (!system.is_empty()).then_some(WireSystem { parts: system }),
            tools: function_declarations(&options.tools),
            tool_config: tool_config(options)?,
            generation_config: WireGenerationConfig {
                temperature: request.temperature,
                max_output_tokens: request.max_tokens,
                stop_sequences: &options.stop,
                top_p: options.top_p,
                seed: options.seed.map(seed).transpose()?,
                presence_penalty: options.presence_penalty,
                frequency_penalty: options.frequency_penalty,
                response_mime_type,
                response_json_schema,
                thinking_config: options.reasoning_effort.map(|effort| WireThinkingConfig {
                    thinking_budget: thinking_budget(effort),
                }),
                media_resolution: images.media_resolution()?,
            },
        })
    }

    /// POSTs `body` to `url` as [`send`] does (retries, time limits, the key kept out of errors).
    async fn post(
        &self,
        call: &Call,
        url: &str,
        pool: &KeyPool,
        body: &impl Serialize,
    ) -> Result<reqwest::Response, ProviderError> {
        let build = |key: Option<&SecretString>| {
            let builder = self.transport.client(true).post(url).json(body);
            match key {
                Some(key) => builder.header("x-goog-api-key", secret_header(key)),
                None => builder,
            }
        };
        let secrets: Vec<&str> = pool.keys().map(ExposeSecret::expose_secret).collect();
        send(call, ProviderKind::Google, pool, &secrets, build).await
    }
}

/// Gemini reports no usage for embeddings: a bad body is billed by the estimate.
fn no_usage(_body: &[u8]) -> Option<TokenUsage> {
    None
}

/// `:embedContent`'s body, and one request of `:batchEmbedContents`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct WireEmbedContent<'a> {
    model: String,
    content: WireEmbedText<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_dimensionality: Option<u32>,
}

#[derive(Debug, Serialize)]
struct WireEmbedText<'a> {
    parts: [WireEmbedPart<'a>; 1],
}

#[derive(Debug, Serialize)]
struct WireEmbedPart<'a> {
    text: &'a str,
}

#[derive(Debug, Serialize)]
struct WireBatchEmbed<'a> {
    requests: Vec<WireEmbedContent<'a>>,
}

#[derive(Debug, Deserialize)]
struct WireEmbedded {
    embedding: WireValues,
}

#[derive(Debug, Deserialize)]
struct WireBatchEmbedded {
    embeddings: Vec<WireValues>,
}

#[derive(Debug, Deserialize)]
struct WireValues {
    /// A number too large for an `f32` parses to infinity, which the check refuses.
    values: Vec<f32>,
}

/// An [`Unsupported`] from this provider.
fn refusal(param: &'static str, what: impl Into<String>) -> Unsupported {
    Unsupported {
        provider: ProviderKind::Google,
        param,
        what: what.into(),
    }
}

/// Refuses the options Gemini has no way to honour.
fn refuse_unmapped_options(options: &ChatOptions) -> Result<(), Unsupported> {
    if !options.logit_bias.is_empty() {
        return Err(refusal(
            "logit_bias",
            "'logit_bias' (Gemini has no token biases)",
        ));
    }
    if options.logprobs || options.top_logprobs.is_some() {
        // Gemini's `responseLogprobs` exists, but its answer is not yet turned into OpenAI's
        // shape here (and few Gemini models give them): refused rather than answered `null`.
        return Err(refusal("logprobs", "'logprobs' or 'top_logprobs'"));
    }
    if options.parallel_tool_calls == Some(false) {
        // Gemini may always call several functions in one turn and has no switch to stop it.
        return Err(refusal(
            "parallel_tool_calls",
            "'parallel_tool_calls: false' (Gemini cannot be kept to one call per turn)",
        ));
    }
    Ok(())
}

/// Gemini's `seed` is a 32-bit integer.
fn seed(seed: i64) -> Result<i32, Unsupported> {
    i32::try_from(seed).map_err(|_| {
        refusal(
            "seed",
            format!("a seed of {seed} (Gemini's seed is a 32-bit integer)"),
        )
    })
}

/// The thinking budget, in tokens, for an OpenAI reasoning effort: the numbers Google's own
/// OpenAI-compatible endpoint uses (none 0, low 1,024, medium 8,192, high 24,576), with
/// `minimal` as `low` (a budget has no smaller useful step on every model).
fn thinking_budget(effort: ReasoningEffort) -> u32 {
    match effort {
        ReasoningEffort::None => 0,
        ReasoningEffort::Minimal | ReasoningEffort::Low => 1_024,
        ReasoningEffort::Medium => 8_192,
        ReasoningEffort::High => 24_576,
    }
}

/// One content part of a user or assistant message.
fn content_part<'a>(
    part: &'a ContentPart,
    images: &mut ImageDetails,
) -> Result<WirePart<'a>, Unsupported> {
    match part {
        ContentPart::Text(text) => Ok(WirePart::text(text.as_str())),
        ContentPart::Image {
            source: ImageSource::Base64 { media_type, data },
            detail,
        } => {
            images.note(*detail);
            Ok(WirePart::InlineData {
                inline_data: WireBlob {
                    mime_type: media_type,
                    data,
                },
            })
        }
        ContentPart::Image {
            source: ImageSource::Url(_),
            ..
        } => Err(refusal(
            "messages",
            "images by URL (Gemini fetches only its own uploaded files; send the image \
             inline as a base64 data: URL)",
        )),
    }
}

/// The `detail` the images asked for, which Gemini takes once for the whole request
/// (`generationConfig.mediaResolution`).
#[derive(Debug, Default)]
struct ImageDetails {
    low: bool,
    high: bool,
}

impl ImageDetails {
    fn note(&mut self, detail: Option<ImageDetail>) {
        match detail {
            Some(ImageDetail::Low) => self.low = true,
            Some(ImageDetail::High) => self.high = true,
            Some(ImageDetail::Auto) | None => {}
        }
    }

    fn media_resolution(&self) -> Result<Option<&'static str>, Unsupported> {
        match (self.low, self.high) {
            (false, false) => Ok(None),
            (true, false) => Ok(Some("MEDIA_RESOLUTION_LOW")),
            (false, true) => Ok(Some("MEDIA_RESOLUTION_HIGH")),
            (true, true) => Err(refusal(
                "messages",
                "images with different 'detail's in one request (Gemini sets one media \
                 resolution for all)",
            )),
        }
    }
}

/// An assistant tool call's arguments as the JSON object Gemini's `args` is. Empty arguments
/// (a call without parameters, as some clients write it) are the empty object.
fn call_arguments(call: &ToolCall) -> Result<Value, Unsupported> {
    if call.arguments.trim().is_empty() {
        return Ok(Value::Object(serde_json::Map::new()));
    }
    match serde_json::from_str::<Value>(&call.arguments) {
        Ok(args @ Value::Object(_)) => Ok(args),
        _ => Err(refusal(
            "messages",
            format!(
                "tool call '{}' whose arguments are not a JSON object (Gemini takes only objects)",
                call.id
            ),
        )),
    }
}

/// The name of the tool the result at `position` answers: Gemini matches results to calls by
/// name, so it is the name of the nearest earlier assistant call with that id (ids may repeat
/// across turns, since Gemini's answers have none and ours are numbered per answer).
fn called_tool_name(messages: &[ChatMessage], position: usize) -> Result<&str, Unsupported> {
    let result = &messages[..=position];
    let id = result
        .last()
        .and_then(|m| m.tool_call_id.as_deref())
        .unwrap_or_default();
    result
        .iter()
        .rev()
        .filter(|m| m.role == Role::Assistant)
        .flat_map(|m| m.tool_calls.iter())
        .find(|call| call.id == id)
        .map(|call| call.name.as_str())
        .ok_or_else(|| {
            refusal(
                "messages",
                format!(
                    "a tool result for call '{id}', which no earlier assistant message made \
                     (Gemini needs the called tool's name)"
                ),
            )
        })
}

/// A tool result as Gemini's `response` object: the tool's text as it is when it is a JSON
/// object, otherwise wrapped as `{"content": text}`.
fn tool_response(message: &ChatMessage) -> Result<Value, Unsupported> {
    if message.has_images() {
        return Err(refusal(
            "messages",
            "images in a tool result (Gemini's function responses are JSON)",
        ));
    }
    let text = message.text();
    match serde_json::from_str::<Value>(&text) {
        Ok(object @ Value::Object(_)) => Ok(object),
        _ => Ok(serde_json::json!({ "content": text.as_ref() })),
    }
}

/// The tools as one `functionDeclarations` tool, or none.
///
/// Parameters go in `parametersJsonSchema`, not `parameters`: callers write full JSON Schema
/// (Pydantic's `$defs`, `anyOf`, `additionalProperties`...), which `parameters` (an OpenAPI
/// subset) refuses or misreads, while `parametersJsonSchema` takes it as it is.
fn function_declarations(tools: &[ToolDefinition]) -> Vec<WireTool<'_>> {
    if tools.is_empty() {
        return Vec::new();
    }
    vec![WireTool {
        function_declarations: tools
            .iter()
            .map(|tool| WireFunctionDeclaration {
                name: &tool.name,
                description: tool.description.as_deref(),
                parameters_json_schema: &tool.parameters,
            })
            .collect(),
    }]
}

/// `toolConfig.functionCallingConfig` for the tool choice. A strict tool on a free choice asks
/// for `VALIDATED` (calls are checked against their schema); `ANY` already constrains calls to
/// it.
fn tool_config(options: &ChatOptions) -> Result<Option<WireToolConfig<'_>>, Unsupported> {
    let strict = options.tools.iter().any(|tool| tool.strict == Some(true));
    let config = |mode, allowed_function_names| {
        Ok(Some(WireToolConfig {
            function_calling_config: WireFunctionCallingConfig {
                mode,
                allowed_function_names,
            },
        }))
    };
    if options.tools.is_empty() {
        return match &options.tool_choice {
            None | Some(ToolChoice::Auto | ToolChoice::None) => Ok(None),
            Some(ToolChoice::Required | ToolChoice::Tool(_)) => Err(refusal(
                "tool_choice",
                "a tool choice that requires a call without any tools",
            )),
        };
    }
    match &options.tool_choice {
        None if strict => config("VALIDATED", None),
        None => Ok(None),
        Some(ToolChoice::Auto) => config(if strict { "VALIDATED" } else { "AUTO" }, None),
        Some(ToolChoice::None) => config("NONE", None),
        Some(ToolChoice::Required) => config("ANY", None),
        Some(ToolChoice::Tool(name)) => {
            if !options.tools.iter().any(|tool| &tool.name == name) {
                return Err(refusal(
                    "tool_choice",
                    format!("a tool choice of '{name}', which is not among the tools"),
                ));
            }
            config("ANY", Some(vec![name.as_str()]))
        }
    }
}

/// The schema of a `json_schema` response format, with its description (for the model) as the
/// schema's own when it has none. `responseJsonSchema`, not `responseSchema`: the latter is an
/// OpenAPI subset that refuses much of what callers' JSON Schemas hold. Gemini always holds its
/// answer to the schema, so `strict` is honoured either way.
fn schema_with_description(format: &JsonSchemaFormat) -> Value {
    let mut schema = format.schema.clone();
    if let (Some(description), Value::Object(object)) = (&format.description, &mut schema) {
        object
            .entry("description")
            .or_insert_with(|| Value::String(description.clone()));
    }
    schema
}

/// One function call of an answer: its name, arguments (JSON text) and the model's thought
/// signature, if it gave one.
type AnsweredCall = (String, String, Option<String>);

/// What one candidate said: its text (without the model's thoughts) and its function calls, in
/// order.
fn candidate_output(candidate: &WireCandidate) -> (String, Vec<AnsweredCall>) {
    let mut text = String::new();
    let mut calls = Vec::new();
    let parts = candidate.content.as_ref().map_or(&[][..], |c| &c.parts[..]);
    for part in parts.iter().filter(|p| !p.thought.unwrap_or(false)) {
        if let Some(piece) = &part.text {
            text.push_str(piece);
        }
        if let Some(call) = &part.function_call {
            let arguments = call
                .args
                .as_ref()
                .map_or_else(|| "{}".to_owned(), Value::to_string);
            calls.push((call.name.clone(), arguments, part.thought_signature.clone()));
        }
    }
    (text, calls)
}

/// The id of an answer's `index`th call (from 0): Gemini gives none, and OpenAI's clients need
/// one to send the result back.
///
/// Gemini 3 signs each function call with a `thoughtSignature` and refuses a conversation that
/// sends the call back without it. Clients keep nothing of a tool call but its id, name and
/// arguments, so the signature travels in the id — `call_<index>_<signature>`, the signature
/// base64url without padding, so the id stays within `[A-Za-z0-9_-]` (what every upstream's
/// id rules allow) — and [`thought_signature_of`] takes it back out.
fn call_id(index: usize, thought_signature: Option<&str>) -> String {
    match thought_signature.filter(|s| !s.is_empty()) {
        None => format!("call_{index}"),
        Some(signature) => {
            let url_safe: String = signature
                .chars()
                .filter(|c| *c != '=')
                .map(|c| match c {
                    '+' => '-',
                    '/' => '_',
                    other => other,
                })
                .collect();
            format!("call_{index}_{url_safe}")
        }
    }
}

/// The thought signature a [`call_id`] carries, as Gemini wrote it (standard base64, padded).
fn thought_signature_of(id: &str) -> Option<String> {
    let (index, url_safe) = id.strip_prefix("call_")?.split_once('_')?;
    if url_safe.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !url_safe
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return None;
    }
    let mut signature: String = url_safe
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            other => other,
        })
        .collect();
    while !signature.len().is_multiple_of(4) {
        signature.push('=');
    }
    Some(signature)
}

/// Gemini says `STOP` when its answer called functions; OpenAI's callers expect `tool_calls`.
fn with_tool_calls(finish: FinishReason, called: bool) -> FinishReason {
    match finish {
        FinishReason::Stop if called => FinishReason::ToolCalls,
        other => other,
    }
}

impl ChatProvider for GoogleProvider {
    fn retry_policy(&self) -> crate::RetryPolicy {
        self.limits.retry_policy()
    }

    fn kind(&self) -> ProviderKind {
        ProviderKind::Google
    }

    fn check_configured(&self, _base_url: Option<&str>) -> Result<(), ProviderError> {
        self.key().map(drop)
    }

    fn key_count(&self, _base_url: Option<&str>) -> usize {
        self.keys.len()
    }

    fn check_available(&self, _base_url: Option<&str>) -> Result<(), ProviderError> {
        self.keys.check_available()
    }

    fn key_health(&self) -> Vec<KeyHealth> {
        self.keys.health(std::time::Instant::now())
    }

    /// Everything `GoogleProvider::body` maps is allowed; what it cannot map is refused
    /// naming the parameter. `user` is accepted and not sent: it does not change the answer.
    fn check_request(&self, request: &ProviderRequest) -> Result<(), Unsupported> {
        Self::body(request).map(drop)
    }

    fn complete<'a>(&'a self, request: &'a ProviderRequest) -> CompletionFuture<'a> {
        async move {
            let key = self.key()?;
            let body = Self::body(request).map_err(refused)?;
            let url = self.url(&request.model, "generateContent");
            let call = Call::start(self.limits, request);
            let response = self.post(&call, &url, key, &body).await?;
            let answer: WireResponse = read_json(&call, response, WireUsage::in_body).await?;
            let reported = answer.usage_metadata.as_ref().and_then(WireUsage::usage);
            let candidate = answer.candidates.first();
            // No candidate at all is an answer only when Gemini says it blocked the prompt.
            let prompt_blocked = answer
                .prompt_feedback
                .as_ref()
                .is_some_and(|f| f.block_reason.is_some());
            if candidate.is_none() && !prompt_blocked {
                return Err(ProviderError::BadResponse {
                    message: "the upstream's answer has no candidates and no block reason"
                        .to_owned(),
                    usage: reported,
                });
            }
            let (content, calls) = candidate.map(candidate_output).unwrap_or_default();
            let finish_reason = match candidate.and_then(|c| c.finish_reason.as_deref()) {
                Some(reason) => finish_reason(reason),
                // No candidate at all: the prompt itself was blocked (checked above).
                None if candidate.is_none() => FinishReason::ContentFilter,
                None => FinishReason::Stop,
            };
            let finish_reason = with_tool_calls(finish_reason, !calls.is_empty());
            // Without reported usage, the calls' arguments are output too.
            let said = calls.iter().map(|(_, arguments, _)| arguments.as_str());
            let usage = request.usage_or_estimate(reported, said.chain([content.as_str()]));
            let tool_calls = calls
                .into_iter()
                .enumerate()
                .map(|(index, (name, arguments, signature))| ToolCall {
                    id: call_id(index, signature.as_deref()),
                    name,
                    arguments,
                })
                .collect();
            Ok(Completion {
                tool_calls,
                logprobs: None,
                content,
                usage,
                finish_reason,
                model: answer
                    .model_version
                    .unwrap_or_else(|| request.model.clone()),
                wire_content: None,
            })
        }
        .boxed()
    }

    /// `:embedContent` for one input, `:batchEmbedContents` for several (Gemini's batch
    /// takes at most 100; beyond that the upstream's refusal is the caller's 400). Gemini
    /// reports no tokens: the usage is the inputs' estimate, flagged.
    fn embed<'a>(&'a self, request: &'a EmbeddingRequest) -> EmbeddingFuture<'a> {
        async move {
            let key = self.key()?;
            let model = format!(
                "models/{}",
                request
                    .model
                    .strip_prefix("models/")
                    .unwrap_or(&request.model)
            );
            let one = |text: &'a str| WireEmbedContent {
                model: model.clone(),
                content: WireEmbedText {
                    parts: [WireEmbedPart { text }],
                },
                output_dimensionality: request.dimensions,
            };
            let call = Call::embedding(self.limits, request);
            let usage = TokenUsage::estimated(request.input_estimate(), 0);
            let vectors: Vec<(Option<usize>, Vec<f32>)> = match request.inputs.as_slice() {
                [text] => {
                    let url = self.url(&request.model, "embedContent");
                    let response = self.post(&call, &url, key, &one(text)).await?;
                    let answer: WireEmbedded = read_json(&call, response, no_usage).await?;
                    vec![(None, answer.embedding.values)]
                }
                inputs => {
                    let url = self.url(&request.model, "batchEmbedContents");
                    let body = WireBatchEmbed {
                        requests: inputs.iter().map(|text| one(text)).collect(),
                    };
                    let response = self.post(&call, &url, key, &body).await?;
                    let answer: WireBatchEmbedded = read_json(&call, response, no_usage).await?;
                    answer
                        .embeddings
                        .into_iter()
                        .map(|e| (None, e.values))
                        .collect()
                }
            };
            Ok(Embeddings {
                vectors: checked_vectors(vectors, request, usage)?,
                usage,
                model: request.model.clone(),
            })
        }
        .boxed()
    }

    fn stream<'a>(&'a self, request: &'a ProviderRequest) -> EventStreamFuture<'a> {
        async move {
            let key = self.key()?;
            let body = Self::body(request).map_err(refused)?;
            let url = format!(
                "{}?alt=sse",
                self.url(&request.model, "streamGenerateContent")
            );
            let call = Call::start(self.limits, request);
            let response = self.post(&call, &url, key, &body).await?;
            let secrets: Vec<String> = key.keys().map(|k| k.expose_secret().to_owned()).collect();
            let tally = Tally::new(&request.model, request.prompt_estimate());
            // Calls so far: each arrives whole, numbered across the answer's chunks.
            let mut calls_made = 0_usize;
            Ok(normalise(
                sse_events(call, response),
                tally,
                move |event, tally| {
                    let chunk: WireResponse = parse_data(event)?;
                    if let Some(error) = chunk.error {
                        return Err(ProviderError::Upstream {
                            status: None,
                            message: scrub(
                                &error.message,
                                &secrets.iter().map(String::as_str).collect::<Vec<_>>(),
                            ),
                        });
                    }
                    if let Some(model) = chunk.model_version {
                        tally.model = model;
                    }
                    if let Some(usage) = &chunk.usage_metadata {
                        tally.input_tokens = count(usage.prompt_token_count).or(tally.input_tokens);
                        if usage.cached_content_token_count.is_some() {
                            tally.cached_input_tokens = usage.cached_input_tokens();
                        }
                        if usage.thoughts_token_count.is_some() {
                            tally.reasoning_tokens = usage.reasoning_tokens();
                        }
                        if usage.candidates_token_count.is_some() {
                            tally.output_tokens = usage.counts().map(|(_, output)| output);
                        }
                    }
                    let Some(candidate) = chunk.candidates.first() else {
                        return Ok(Step::Nothing);
                    };
                    Ok(Step::Events(stream_pieces(
                        candidate,
                        &mut calls_made,
                        tally,
                    )))
                },
            ))
        }
        .boxed()
    }
}

/// One streamed candidate chunk as deltas: its text, then each function call whole, numbered
/// after the `calls_made` in earlier chunks. Records the finish, `tool_calls` once any call was
/// made.
fn stream_pieces(
    candidate: &WireCandidate,
    calls_made: &mut usize,
    tally: &mut Tally,
) -> Vec<StreamEvent> {
    let (text, calls) = candidate_output(candidate);
    let mut events = vec![StreamEvent::TextDelta(text)];
    for (name, arguments, signature) in calls {
        events.push(StreamEvent::ToolCallDelta(ToolCallDelta {
            index: u32::try_from(*calls_made).unwrap_or(u32::MAX),
            id: Some(call_id(*calls_made, signature.as_deref())),
            name: Some(name),
            arguments,
        }));
        *calls_made += 1;
    }
    if let Some(reason) = candidate.finish_reason.as_deref() {
        tally.finish = Some(with_tool_calls(finish_reason(reason), *calls_made > 0));
    }
    events
}

/// A request `check_request` would have refused, should it reach a call unchecked: refused
/// before sending, as the upstream would refuse it.
fn refused(unsupported: Unsupported) -> ProviderError {
    ProviderError::InvalidRequest {
        status: 400,
        message: unsupported.to_string(),
    }
}

fn finish_reason(reason: &str) -> FinishReason {
    match reason {
        "STOP" => FinishReason::Stop,
        "MAX_TOKENS" => FinishReason::Length,
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" => {
            FinishReason::ContentFilter
        }
        other => FinishReason::Other(other.to_ascii_lowercase()),
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct WireRequest<'a> {
    contents: Vec<WireContent<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_instruction: Option<WireSystem<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<WireTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_config: Option<WireToolConfig<'a>>,
    generation_config: WireGenerationConfig<'a>,
}

#[derive(Debug, Serialize)]
struct WireContent<'a> {
    role: &'a str,
    parts: Vec<WirePart<'a>>,
}

impl WireContent<'_> {
    /// A user turn of function responses, which the next tool result joins.
    fn is_tool_results(&self) -> bool {
        self.role == "user"
            && self
                .parts
                .iter()
                .all(|p| matches!(p, WirePart::FunctionResponse { .. }))
    }
}

#[derive(Debug, Serialize)]
struct WireSystem<'a> {
    parts: Vec<WirePart<'a>>,
}

/// One part of a turn: an object with one key (`{"text": ...}`, `{"inlineData": ...}`), except
/// that a function call carries the model's `thoughtSignature` beside it when it had one.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum WirePart<'a> {
    Text {
        text: Cow<'a, str>,
    },
    InlineData {
        #[serde(rename = "inlineData")]
        inline_data: WireBlob<'a>,
    },
    FunctionCall {
        #[serde(rename = "functionCall")]
        function_call: WireFunctionCall<'a>,
        #[serde(rename = "thoughtSignature", skip_serializing_if = "Option::is_none")]
        thought_signature: Option<String>,
    },
    FunctionResponse {
        #[serde(rename = "functionResponse")]
        function_response: WireFunctionResponse<'a>,
    },
}

impl<'a> WirePart<'a> {
    fn text(text: impl Into<Cow<'a, str>>) -> Self {
        Self::Text { text: text.into() }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct WireBlob<'a> {
    mime_type: &'a str,
    data: &'a str,
}

#[derive(Debug, Serialize)]
struct WireFunctionCall<'a> {
    name: &'a str,
    args: Value,
}

#[derive(Debug, Serialize)]
struct WireFunctionResponse<'a> {
    name: &'a str,
    response: Value,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct WireTool<'a> {
    function_declarations: Vec<WireFunctionDeclaration<'a>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct WireFunctionDeclaration<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    parameters_json_schema: &'a Value,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct WireToolConfig<'a> {
    function_calling_config: WireFunctionCallingConfig<'a>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct WireFunctionCallingConfig<'a> {
    mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    allowed_function_names: Option<Vec<&'a str>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct WireGenerationConfig<'a> {
    temperature: f64,
    max_output_tokens: u32,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop_sequences: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_mime_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_json_schema: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking_config: Option<WireThinkingConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    media_resolution: Option<&'static str>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct WireThinkingConfig {
    thinking_budget: u32,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireResponse {
    #[serde(default)]
    candidates: Vec<WireCandidate>,
    usage_metadata: Option<WireUsage>,
    model_version: Option<String>,
    error: Option<WireError>,
    prompt_feedback: Option<WirePromptFeedback>,
}

/// Why Gemini refused the prompt itself (it then sends no candidates).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WirePromptFeedback {
    block_reason: Option<String>,
}

/// Only the usage of a response, read from a body that is otherwise unusable.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireUsageOnly {
    usage_metadata: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireCandidate {
    content: Option<WireCandidateContent>,
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireCandidateContent {
    #[serde(default)]
    parts: Vec<WireAnswerPart>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireAnswerPart {
    text: Option<String>,
    thought: Option<bool>,
    function_call: Option<WireAnswerFunctionCall>,
    /// Gemini 3's signature of the reasoning behind a function call, to be sent back with it.
    thought_signature: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireAnswerFunctionCall {
    name: String,
    args: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireUsage {
    prompt_token_count: Option<Reported>,
    candidates_token_count: Option<Reported>,
    thoughts_token_count: Option<Reported>,
    /// Of the prompt, tokens served from a cached content (included in `promptTokenCount`).
    cached_content_token_count: Option<Reported>,
}

impl WireUsage {
    /// (input, output): thinking tokens are billed as output. A sum that overflows is as
    /// unusable as the counts it came from.
    fn counts(&self) -> Option<(u32, u32)> {
        // Absent parts are 0 (no candidates: the prompt was blocked); unusable ones are unknown.
        let part = |reported: Option<Reported>| reported.map_or(Some(0), Reported::count);
        let input = count(self.prompt_token_count)?;
        let output =
            part(self.candidates_token_count)?.checked_add(part(self.thoughts_token_count)?)?;
        Some((input, output))
    }

    /// Cached prompt tokens; absent or unusable is 0 (Gemini bills no cache writes per call).
    fn cached_input_tokens(&self) -> u32 {
        count(self.cached_content_token_count).unwrap_or(0)
    }

    /// Thinking tokens, counted in the output by [`WireUsage::counts`]; absent or unusable is 0.
    fn reasoning_tokens(&self) -> u32 {
        count(self.thoughts_token_count).unwrap_or(0)
    }

    /// The usage `body` reports, if that part of it reads as usage.
    fn in_body(body: &[u8]) -> Option<core_domain::TokenUsage> {
        serde_json::from_slice::<WireUsageOnly>(body)
            .ok()?
            .usage_metadata?
            .usage()
    }

    /// The whole usage, or `None` when the counts are missing or unusable.
    fn usage(&self) -> Option<core_domain::TokenUsage> {
        let (input, output) = self.counts()?;
        Some(
            core_domain::TokenUsage::reported(input, output)
                .with_cache(self.cached_input_tokens(), 0)
                .with_reasoning(self.reasoning_tokens()),
        )
    }
}

#[derive(Debug, Deserialize)]
struct WireError {
    message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_cannot_change_the_path() {
        let config = ProvidersConfig::default();
        let provider = GoogleProvider::new(
            &config,
            Transport::new(std::time::Duration::from_secs(1)).unwrap(),
            &crate::TokioSleeper,
        );
        assert_eq!(
            provider.url("models/gemini-2.0-flash", "generateContent"),
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:generateContent"
        );
        assert!(
            provider
                .url("../../v1/files", "generateContent")
                .contains("models/..%2F..%2Fv1%2Ffiles:generateContent")
        );
    }

    fn candidate(json: serde_json::Value) -> WireCandidate {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn streamed_calls_are_numbered_across_chunks_and_finish_as_tool_calls() {
        let mut tally = Tally::new("gemini-2.5-flash", 0);
        let mut calls_made = 0;
        let first = candidate(serde_json::json!({"content": {"parts": [
            {"text": "Checking."},
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
        ]}}));
        let second = candidate(serde_json::json!({"content": {"parts": [
            {"text": "hidden", "thought": true},
            {"functionCall": {"name": "get_time"}},
        ]}, "finishReason": "STOP"}));
        let first = stream_pieces(&first, &mut calls_made, &mut tally);
        assert_eq!(tally.finish, None);
        let second = stream_pieces(&second, &mut calls_made, &mut tally);
        assert_eq!(first[0], StreamEvent::TextDelta("Checking.".into()));
        assert_eq!(
            second,
            [
                StreamEvent::TextDelta(String::new()),
                StreamEvent::ToolCallDelta(ToolCallDelta {
                    index: 1,
                    id: Some("call_1".into()),
                    name: Some("get_time".into()),
                    arguments: "{}".into(),
                }),
            ]
        );
        assert_eq!(tally.finish, Some(FinishReason::ToolCalls));
    }

    /// Gemini 3 refuses a function call sent back without its thought signature; clients keep
    /// only the call's id, so the id carries it, within the characters every upstream allows.
    #[test]
    fn a_thought_signature_travels_in_the_call_id_and_goes_back_with_the_call() {
        let signature = "Cv8BAY+/Pz8/P3o=";
        let id = call_id(2, Some(signature));
        assert_eq!(id, "call_2_Cv8BAY-_Pz8_P3o");
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        );
        assert_eq!(thought_signature_of(&id).as_deref(), Some(signature));
        for unsigned in [
            "call_0",
            "call_12",
            "toolu_1",
            "call_x_abc",
            "call_1_a+b",
            "",
        ] {
            assert_eq!(thought_signature_of(unsigned), None, "{unsigned}");
        }
        assert_eq!(call_id(0, None), "call_0");
        assert_eq!(call_id(0, Some("")), "call_0");

        // Read from an answer, whole or streamed…
        let mut tally = Tally::new("gemini-3-pro-preview", 0);
        let mut calls_made = 0;
        let signed = candidate(serde_json::json!({"content": {"parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
             "thoughtSignature": signature},
        ]}, "finishReason": "STOP"}));
        let events = stream_pieces(&signed, &mut calls_made, &mut tally);
        let StreamEvent::ToolCallDelta(delta) = &events[1] else {
            panic!("a call: {events:?}")
        };
        assert_eq!(delta.id.as_deref(), Some("call_0_Cv8BAY-_Pz8_P3o"));

        // …and sent back beside the call.
        let mut request = ProviderRequest {
            model: "gemini-3-pro-preview".into(),
            system_prompt: String::new(),
            messages: vec![
                ChatMessage::user("Weather in Paris?"),
                ChatMessage {
                    tool_calls: vec![ToolCall {
                        id: delta.id.clone().unwrap_or_default(),
                        name: "get_weather".into(),
                        arguments: r#"{"city":"Paris"}"#.into(),
                    }],
                    content: Vec::new(),
                    ..ChatMessage::assistant("")
                },
            ],
            temperature: 0.2,
            max_tokens: 100,
            base_url: None,
            options: Default::default(),
            single_attempt: false,
            deadline: None,
            anthropic: None,
        };
        let body = serde_json::to_value(GoogleProvider::body(&request).unwrap()).unwrap();
        assert_eq!(
            body["contents"][1]["parts"][0],
            serde_json::json!({"functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                               "thoughtSignature": signature})
        );
        request.messages[1].tool_calls[0].id = "call_0".into();
        let body = serde_json::to_value(GoogleProvider::body(&request).unwrap()).unwrap();
        assert!(
            body["contents"][1]["parts"][0]
                .get("thoughtSignature")
                .is_none()
        );
    }

    #[test]
    fn an_answer_cut_short_stays_cut_short_even_with_calls() {
        assert_eq!(
            with_tool_calls(FinishReason::Length, true),
            FinishReason::Length
        );
        assert_eq!(
            with_tool_calls(FinishReason::Stop, false),
            FinishReason::Stop
        );
    }

    #[test]
    fn thinking_budgets_per_effort() {
        let budgets = [
            ReasoningEffort::None,
            ReasoningEffort::Minimal,
            ReasoningEffort::Low,
            ReasoningEffort::Medium,
            ReasoningEffort::High,
        ]
        .map(thinking_budget);
        assert_eq!(budgets, [0, 1_024, 1_024, 8_192, 24_576]);
    }

    #[test]
    fn call_arguments_must_be_an_object_or_nothing() {
        let call = |arguments: &str| ToolCall {
            id: "call_0".into(),
            name: "f".into(),
            arguments: arguments.into(),
        };
        assert_eq!(call_arguments(&call("")).unwrap(), serde_json::json!({}));
        assert_eq!(
            call_arguments(&call("  \n")).unwrap(),
            serde_json::json!({})
        );
        assert_eq!(
            call_arguments(&call(r#"{"a": 1}"#)).unwrap(),
            serde_json::json!({"a": 1})
        );
        for bad in ["[1]", "\"text\"", "{not json"] {
            let refused = call_arguments(&call(bad)).unwrap_err();
            assert_eq!(refused.param, "messages");
            assert!(refused.what.contains("call_0"), "{refused}");
        }
    }

    #[test]
    fn tool_results_are_objects_as_they_are_or_wrapped() {
        let response = |text: &str| tool_response(&ChatMessage::tool_result("call_0", text));
        assert_eq!(
            response(r#"{"temp": 21}"#).unwrap(),
            serde_json::json!({"temp": 21})
        );
        assert_eq!(
            response("[1, 2]").unwrap(),
            serde_json::json!({"content": "[1, 2]"})
        );
        assert_eq!(
            response("sunny").unwrap(),
            serde_json::json!({"content": "sunny"})
        );
    }

    #[test]
    fn a_schema_keeps_its_own_description() {
        let format = JsonSchemaFormat {
            name: "x".into(),
            description: Some("outer".into()),
            schema: serde_json::json!({"type": "object", "description": "inner"}),
            strict: false,
        };
        assert_eq!(schema_with_description(&format)["description"], "inner");
    }

    #[test]
    fn an_empty_message_stays_one_empty_text_part() {
        let request = ProviderRequest {
            model: "gemini-2.5-flash".into(),
            system_prompt: String::new(),
            messages: vec![ChatMessage::user("")],
            temperature: 0.0,
            max_tokens: 10,
            base_url: None,
            options: ChatOptions::default(),
            single_attempt: false,
            deadline: None,
            anthropic: None,
        };
        let body = serde_json::to_value(GoogleProvider::body(&request).unwrap()).unwrap();
        assert_eq!(
            body["contents"],
            serde_json::json!([{"role": "user", "parts": [{"text": ""}]}])
        );
    }

    #[test]
    fn thinking_tokens_count_as_output() {
        let usage: WireUsage = serde_json::from_str(
            r#"{"promptTokenCount": 10, "candidatesTokenCount": 5, "thoughtsTokenCount": 7}"#,
        )
        .unwrap();
        assert_eq!(usage.counts(), Some((10, 12)));
    }

    #[test]
    fn absurd_usage_counts_are_unreported_not_a_failure() {
        for usage in [
            r#"{"promptTokenCount": 10, "candidatesTokenCount": 4294967295, "thoughtsTokenCount": 1}"#,
            r#"{"promptTokenCount": -10, "candidatesTokenCount": 5}"#,
            r#"{"promptTokenCount": 10, "candidatesTokenCount": 5e20}"#,
        ] {
            let usage: WireUsage = serde_json::from_str(usage).unwrap();
            assert_eq!(usage.counts(), None, "{usage:?}");
        }
    }
}
