//! Anthropic Messages.
//!
//! How the rich chat model maps onto the Messages API (anything else is refused by
//! `check_request`, naming the caller's parameter):
//!
//! | Parameter | Honoured as |
//! |---|---|
//! | `tools` | `tools: [{name, description, input_schema}]` |
//! | `tool_choice` | `{type: auto / none / any / tool, name}` |
//! | `parallel_tool_calls: false` | `disable_parallel_tool_use: true` on `tool_choice` |
//! | images | `image` blocks, `source` `base64` (jpeg, png, gif, webp) or `url`; `detail` low/high refused |
//! | assistant tool calls / tool results | `tool_use` blocks / `tool_result` blocks in one user message |
//! | `stop`, `top_p`, `user` | `stop_sequences`, `top_p`, `metadata.user_id` |
//! | `response_format` json_schema / json_object | a forced tool (see [`StructuredOutput`]) |
//! | `reasoning_effort` | `thinking: {type: enabled, budget_tokens}`, no `temperature` |
//! | `seed`, penalties, `logit_bias`, `logprobs`, `top_logprobs` | refused: no such parameter |
//!
//! A request that came in by the Anthropic Messages door ([`ProviderRequest::anthropic`]) is not
//! translated: its body is written from the caller's own JSON text (see
//! [`AnthropicProvider::native_body`]), so thinking blocks and their signatures,
//! `redacted_thinking`, `cache_control` and block types the gateway does not know reach the
//! upstream byte for byte, and a whole answer's `content` comes back as the upstream wrote it
//! ([`Completion::wire_content`]).

use core_domain::{
    ChatMessage, ChatOptions, Completion, ContentPart, FinishReason, ImageDetail, ImageSource,
    ProviderKind, ReasoningEffort, ResponseFormat, Role, StreamEvent, ToolCall, ToolCallDelta,
    ToolChoice,
};
use futures_util::FutureExt;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::config::CallLimits;
use crate::keys::KeyPool;
use crate::registry::required_pool;
use crate::streaming::{Step, Tally, normalise, parse_data};
use crate::token_count::{Reported, count};
use crate::transport::Sleeper;
use crate::transport::{Call, Transport, read_json, secret_header, send, sse_events};
use crate::upstream_error::scrub;
use crate::{
    AnthropicNative, ChatProvider, CompletionFuture, EventStreamFuture, KeyHealth, ProviderError,
    ProviderRequest, ProvidersConfig, TokenCountFuture, Unsupported,
};

/// The API version we speak; Anthropic requires it on every request.
const ANTHROPIC_VERSION: &str = "2023-06-01";
/// Anthropic's temperature range is 0.0 to 1.0 (specialists allow up to 2.0).
const MAX_TEMPERATURE: f64 = 1.0;

/// The `anthropic` provider.
#[derive(Debug)]
pub struct AnthropicProvider {
    transport: Transport,
    /// `{base URL}/v1/messages`, parsed once.
    endpoint: Result<reqwest::Url, String>,
    /// `{base URL}/v1/messages/count_tokens`, parsed once.
    count_endpoint: Result<reqwest::Url, String>,
    keys: KeyPool,
    limits: CallLimits,
}

impl AnthropicProvider {
    pub(crate) fn new(
        config: &ProvidersConfig,
        transport: Transport,
        sleeper: &'static dyn Sleeper,
    ) -> Self {
        let base = config.anthropic.base_url.trim().trim_end_matches('/');
        Self {
            transport,
            endpoint: reqwest::Url::parse(&format!("{base}/v1/messages"))
                .map_err(|e| format!("providers.anthropic.base_url is not a URL: {e}")),
            count_endpoint: reqwest::Url::parse(&format!("{base}/v1/messages/count_tokens"))
                .map_err(|e| format!("providers.anthropic.base_url is not a URL: {e}")),
            keys: KeyPool::new(
                ProviderKind::Anthropic,
                "providers.anthropic",
                base,
                config.anthropic.keys(),
                config.anthropic.pool_policy(),
            ),
            limits: config.anthropic.limits(config, sleeper),
        }
    }

    fn key(&self) -> Result<&KeyPool, ProviderError> {
        required_pool(&self.keys, ProviderKind::Anthropic)
    }

    fn endpoint(&self) -> Result<reqwest::Url, ProviderError> {
        self.endpoint
            .clone()
            .map_err(|message| ProviderError::Setup { message })
    }

    fn count_endpoint(&self) -> Result<reqwest::Url, ProviderError> {
        self.count_endpoint
            .clone()
            .map_err(|message| ProviderError::Setup { message })
    }

    /// The Messages request for `request`, or what of it Anthropic cannot honour. System text
    /// goes in its own field: the specialist's prompt, then any system messages of the
    /// conversation (Anthropic has no system role in `messages`). [`ChatProvider::check_request`]
    /// builds it too, so what is refused there is exactly what cannot be built here.
    fn body(request: &ProviderRequest, stream: bool) -> Result<WireRequest<'_>, Unsupported> {
        let options = &request.options;
        refuse_unmappable(options)?;
        let (system, messages) = conversation(request)?;
        let thinking = thinking(request)?;
        let structured = StructuredOutput::of(options);
        let mut tools: Vec<WireTool<'_>> = options
            .tools
            .iter()
            .map(|t| WireTool {
                name: &t.name,
                description: t.description.as_deref(),
                input_schema: std::borrow::Cow::Borrowed(&t.parameters),
            })
            .collect();
        let mut tool_choice = tool_choice(options, thinking.is_some())?;
        if let Some(output) = &structured {
            if options.offers_tools() {
                return Err(unsupported(
                    "response_format",
                    "response_format together with tools (its structured output is a forced \
                     tool, which would leave the model no choice of the caller's tools)",
                ));
            }
            if thinking.is_some() {
                return Err(unsupported(
                    "reasoning_effort",
                    "reasoning_effort together with response_format (its structured output is \
                     a forced tool, and extended thinking allows no forced tool)",
                ));
            }
            tools = vec![output.tool()];
            tool_choice = Some(WireToolChoice {
                kind: "tool",
                name: Some(output.name),
                disable_parallel_tool_use: None,
            });
        }
        if let (Some(top_p), Some(_)) = (options.top_p, &thinking)
            && top_p < MIN_TOP_P_WHILE_THINKING
        {
            return Err(unsupported(
                "top_p",
                "top_p below 0.95 together with reasoning_effort (extended thinking takes \
                 top_p from 0.95 to 1 only)",
            ));
        }
        Ok(WireRequest {
            model: &request.model,
            max_tokens: request.max_tokens,
            system: (!system.is_empty()).then(|| system.join("\n\n")),
            messages,
            // Extended thinking requires the default temperature: it must not be sent.
            temperature: thinking
                .is_none()
                .then(|| request.temperature.min(MAX_TEMPERATURE)),
            top_p: options.top_p,
            stop_sequences: &options.stop,
            tools,
            tool_choice,
            thinking,
            metadata: options
                .user
                .as_deref()
                .map(|user_id| WireMetadata { user_id }),
            stream,
        })
    }

    /// The body and headers for `purpose`: the caller's own request when it came in by the
    /// Messages door, else the translation. A refusal here means the caller skipped
    /// `check_request`.
    fn wire_body(request: &ProviderRequest, purpose: Purpose) -> Result<WireBody, ProviderError> {
        let refused = |refused: Unsupported| ProviderError::InvalidRequest {
            status: 400,
            message: format!("refused before sending: {refused}"),
        };
        if let Some(native) = &request.anthropic {
            return Self::native_body(request, native, purpose).map_err(refused);
        }
        let body = Self::body(request, purpose == Purpose::Stream).map_err(refused)?;
        let json = match purpose {
            Purpose::Whole | Purpose::Stream => serde_json::to_string(&body),
            Purpose::CountTokens => serde_json::to_string(&WireCountRequest::from(&body)),
        };
        Ok(WireBody {
            json: json.map_err(|e| ProviderError::Setup {
                message: format!("cannot write the request body: {e}"),
            })?,
            beta: None,
        })
    }

    /// The body for a caller's own Messages request, written as text rather than re-serialized
    /// so that everything the gateway does not set is sent as the caller wrote it:
    ///
    /// - `model` and `max_tokens` are the destination's (`max_tokens` is left out of a token
    ///   count, which takes none), `stream` as the call needs;
    /// - `system`: the specialist's prompt as a text block, then the caller's system — a string
    ///   as one text block, an array's elements spliced in byte for byte; without a specialist
    ///   prompt the caller's system exactly as sent;
    /// - every other field the caller sent, in its order, its value byte for byte;
    /// - `temperature`: the specialist's when the caller sent none and thinking is off
    ///   (Anthropic refuses a temperature while thinking);
    /// - for a token count, no sampling or bookkeeping field ([`MESSAGE_ONLY_FIELDS`]).
    ///
    /// Refused (as [`Unsupported`]): only what would make the body itself wrong — a `system`
    /// that is not a string or an array, a value that is not JSON, a beta header that is no
    /// header value. Whatever Anthropic itself would refuse, it refuses, in its own words.
    pub(crate) fn native_body(
        request: &ProviderRequest,
        native: &AnthropicNative,
        purpose: Purpose,
    ) -> Result<WireBody, Unsupported> {
        let beta = native
            .beta
            .as_deref()
            .map(|beta| {
                reqwest::header::HeaderValue::from_str(beta).map_err(|_| {
                    unsupported(
                        "anthropic-beta",
                        "an anthropic-beta header that is not a valid header value",
                    )
                })
            })
            .transpose()?;
        let fields_len: usize = native
            .fields
            .iter()
            .map(|(name, value)| name.len() + value.len() + 4)
            .sum();
        let mut out = String::with_capacity(
            fields_len
                + native.system.as_deref().map_or(0, str::len)
                + request.system_prompt.len()
                + request.model.len()
                + 128,
        );
        out.push_str("{\"model\":");
        out.push_str(&json_string(&request.model));
        if purpose != Purpose::CountTokens {
            out.push_str(",\"max_tokens\":");
            out.push_str(&request.max_tokens.to_string());
        }
        if let Some(system) = native_system(request, native.system.as_deref())? {
            out.push_str(",\"system\":");
            out.push_str(&system);
        }
        let mut sent_temperature = false;
        for (name, value) in &native.fields {
            // The gateway's own fields; the door leaves them out, and a duplicate key would
            // leave the upstream to pick one.
            if matches!(&**name, "model" | "max_tokens" | "stream" | "system") {
                continue;
            }
            if purpose == Purpose::CountTokens && MESSAGE_ONLY_FIELDS.contains(&&**name) {
                continue;
            }
            if serde_json::from_str::<&serde_json::value::RawValue>(value).is_err() {
                return Err(unsupported(
                    "messages",
                    format!("'{name}' whose value is not JSON"),
                ));
            }
            sent_temperature |= &**name == "temperature";
            out.push(',');
            out.push_str(&json_string(name));
            out.push(':');
            out.push_str(value);
        }
        if purpose != Purpose::CountTokens && !sent_temperature && !native_thinks(native) {
            out.push_str(",\"temperature\":");
            out.push_str(&json_number(request.temperature.min(MAX_TEMPERATURE)));
        }
        if purpose == Purpose::Stream {
            out.push_str(",\"stream\":true");
        }
        out.push('}');
        Ok(WireBody { json: out, beta })
    }

    /// POSTs `body` to `url` as [`send`] does (retries, time limits, the key kept out of errors).
    async fn post(
        &self,
        call: &Call,
        url: &reqwest::Url,
        pool: &KeyPool,
        body: &WireBody,
    ) -> Result<reqwest::Response, ProviderError> {
        let build = |key: Option<&SecretString>| {
            let mut builder = self
                .transport
                .client(true)
                .post(url.clone())
                .header("anthropic-version", ANTHROPIC_VERSION)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.json.clone());
            if let Some(beta) = &body.beta {
                builder = builder.header("anthropic-beta", beta.clone());
            }
            match key {
                Some(key) => builder.header("x-api-key", secret_header(key)),
                None => builder,
            }
        };
        let secrets: Vec<&str> = pool.keys().map(ExposeSecret::expose_secret).collect();
        send(call, ProviderKind::Anthropic, pool, &secrets, build).await
    }
}

/// A message call's fields that `count_tokens` does not take (it refuses unknown fields):
/// sampling and bookkeeping, which change no input token. Left out of a native token count, as
/// the translation's count leaves them out.
const MESSAGE_ONLY_FIELDS: [&str; 6] = [
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "metadata",
    "service_tier",
];

/// What a request body is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// A whole answer.
    Whole,
    /// A streamed answer (`stream: true`).
    Stream,
    /// `POST /v1/messages/count_tokens`: no `max_tokens`, `stream` or sampling parameters.
    CountTokens,
}

/// A request body ready to send, and the `anthropic-beta` header that goes with it.
#[derive(Debug)]
pub(crate) struct WireBody {
    pub(crate) json: String,
    beta: Option<reqwest::header::HeaderValue>,
}

/// `text` as a JSON string.
fn json_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// `number` as JSON (`null` if it is not finite, which a validated specialist never has).
fn json_number(number: f64) -> String {
    serde_json::Value::from(number).to_string()
}

/// The `system` to send for a native request: the specialist's prompt as a text block, then
/// the caller's (a string as one text block, an array's elements as sent); without a prompt,
/// the caller's as sent; `None` when there is neither.
fn native_system(
    request: &ProviderRequest,
    caller: Option<&str>,
) -> Result<Option<String>, Unsupported> {
    let not_system = || {
        unsupported(
            "system",
            "a system that is neither a string nor an array of content blocks",
        )
    };
    let caller = match caller.map(str::trim) {
        None | Some("null") => None,
        Some(text) => {
            if serde_json::from_str::<&serde_json::value::RawValue>(text).is_err() {
                return Err(not_system());
            }
            Some(text)
        }
    };
    let prompt = &request.system_prompt;
    if prompt.is_empty() {
        return match caller {
            Some(text) if text.starts_with('"') || text.starts_with('[') => {
                Ok(Some(text.to_owned()))
            }
            Some(_) => Err(not_system()),
            None => Ok(None),
        };
    }
    let mut blocks = vec![serde_json::json!({"type": "text", "text": prompt}).to_string()];
    match caller {
        // An empty text block is refused by Anthropic: an empty string adds nothing.
        None | Some("\"\"") => {}
        Some(text) if text.starts_with('"') => {
            blocks.push(format!("{{\"type\":\"text\",\"text\":{text}}}"));
        }
        Some(text) if text.starts_with('[') => {
            let elements: Vec<&serde_json::value::RawValue> =
                serde_json::from_str(text).map_err(|_| not_system())?;
            blocks.extend(elements.into_iter().map(|e| e.get().to_owned()));
        }
        Some(_) => return Err(not_system()),
    }
    Ok(Some(format!("[{}]", blocks.join(","))))
}

/// Whether the caller turned extended thinking on: a `thinking` field whose `type` is anything
/// but `disabled` (one that does not read counts as on, so no temperature goes with it).
fn native_thinks(native: &AnthropicNative) -> bool {
    #[derive(Deserialize)]
    struct Thinking<'a> {
        #[serde(rename = "type", borrow)]
        kind: Option<std::borrow::Cow<'a, str>>,
    }
    native
        .fields
        .iter()
        .find(|(name, _)| &**name == "thinking")
        .is_some_and(
            |(_, value)| match serde_json::from_str::<Option<Thinking<'_>>>(value) {
                Ok(None) => false,
                Ok(Some(thinking)) => thinking.kind.as_deref() != Some("disabled"),
                Err(_) => true,
            },
        )
}

impl ChatProvider for AnthropicProvider {
    fn retry_policy(&self) -> crate::RetryPolicy {
        self.limits.retry_policy()
    }

    fn kind(&self) -> ProviderKind {
        ProviderKind::Anthropic
    }

    fn check_configured(&self, _base_url: Option<&str>) -> Result<(), ProviderError> {
        self.key().map(drop)
    }

    /// Anthropic continues a final assistant message ("prefill") — except with extended
    /// thinking, which refuses one, and structured output, whose answer is a forced tool call
    /// rather than text; and never a caller's own Messages request, whose body is sent as it
    /// came and so would not carry the prefill.
    fn can_continue(&self, request: &ProviderRequest) -> bool {
        request.anthropic.is_none()
            && request.options.reasoning_effort.is_none()
            && request.options.response_format.is_none()
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

    /// Honours tools, tool choice, images, tool calls and results, stop, top_p, user,
    /// structured output and reasoning effort (the module's table); refuses seed, penalties,
    /// logit bias and logprobs, and any combination Anthropic cannot take.
    ///
    /// A caller's own Messages request is Anthropic's own body: nothing in it is refused for
    /// Anthropic's reasons (a thinking budget, a forced tool while thinking, an image type, a
    /// `tool_use` input) — the upstream judges it, and its 400 reaches the caller in its own
    /// words. Refusing here what the translation refuses would be wrong, too: the translation
    /// lacks what the native body carries (the thinking blocks of a turn that called tools).
    /// Only a body that could not be written at all is refused: a `system` that is neither a
    /// string nor an array, a value that is not JSON, an `anthropic-beta` that is no header
    /// value.
    fn check_request(&self, request: &ProviderRequest) -> Result<(), Unsupported> {
        match &request.anthropic {
            Some(native) => Self::native_body(request, native, Purpose::Whole).map(drop),
            None => Self::body(request, false).map(drop),
        }
    }

    fn complete<'a>(&'a self, request: &'a ProviderRequest) -> CompletionFuture<'a> {
        async move {
            let key = self.key()?;
            let body = Self::wire_body(request, Purpose::Whole)?;
            let structured = StructuredOutput::of(&request.options).map(|s| s.name);
            let call = Call::start(self.limits, request);
            let url = self.endpoint()?;
            let response = self.post(&call, &url, key, &body).await?;
            let answer: WireResponse = read_json(&call, response, WireUsage::in_body).await?;
            let reported = answer.usage.as_ref().and_then(WireUsage::usage);
            // An empty array is an answer (the model may have nothing to add after a tool
            // result); no array at all is not.
            let Some(raw_content) = answer.content else {
                return Err(ProviderError::BadResponse {
                    message: "the upstream's answer has no content".to_owned(),
                    usage: reported,
                });
            };
            let blocks: Vec<WireBlock> = serde_json::from_str(raw_content.get()).map_err(|e| {
                ProviderError::BadResponse {
                    message: scrub(
                        &format!("the upstream's answer has unusable content: {e}"),
                        &[],
                    ),
                    usage: reported,
                }
            })?;
            let mut content = String::new();
            let mut tool_calls = Vec::new();
            for block in blocks {
                match (block.kind.as_str(), structured) {
                    ("text", None) => content.push_str(block.text.as_deref().unwrap_or_default()),
                    // The forced tool's input is the structured answer itself.
                    ("tool_use", Some(name)) if block.name.as_deref() == Some(name) => {
                        content.push_str(&tool_arguments(block.input));
                    }
                    ("tool_use", None) => tool_calls.push(ToolCall {
                        id: block.id.unwrap_or_default(),
                        name: block.name.unwrap_or_default(),
                        arguments: tool_arguments(block.input),
                    }),
                    // Thinking blocks, and text beside a structured answer, are not the answer.
                    _ => {}
                }
            }
            let written = tool_calls.iter().map(|c| c.arguments.as_str());
            let usage = request.usage_or_estimate(reported, written.chain([content.as_str()]));
            Ok(Completion {
                tool_calls,
                logprobs: None,
                content,
                usage,
                finish_reason: answer
                    .stop_reason
                    .as_deref()
                    .map_or(FinishReason::Stop, |r| finish(r, structured.is_some())),
                model: answer.model.unwrap_or_else(|| request.model.clone()),
                // The caller's own door gives the blocks back as the upstream wrote them.
                wire_content: request
                    .anthropic
                    .is_some()
                    .then(|| String::from(Box::<str>::from(raw_content))),
            })
        }
        .boxed()
    }

    fn counts_tokens(&self) -> bool {
        true
    }

    /// `POST /v1/messages/count_tokens` with what a message call would send (the caller's
    /// own body for a native request, else the translation), less `max_tokens`, `stream` and
    /// the sampling parameters; same key pool, deadlines, retries and error handling.
    fn count_tokens<'a>(&'a self, request: &'a ProviderRequest) -> TokenCountFuture<'a> {
        async move {
            let key = self.key()?;
            let body = Self::wire_body(request, Purpose::CountTokens)?;
            let call = Call::start(self.limits, request);
            let url = self.count_endpoint()?;
            let response = self.post(&call, &url, key, &body).await?;
            let counted: WireTokenCount = read_json(&call, response, |_| None).await?;
            count(counted.input_tokens).ok_or_else(|| ProviderError::BadResponse {
                message: "the upstream's token count has no usable input_tokens".to_owned(),
                usage: None,
            })
        }
        .boxed()
    }

    fn stream<'a>(&'a self, request: &'a ProviderRequest) -> EventStreamFuture<'a> {
        async move {
            let key = self.key()?;
            let body = Self::wire_body(request, Purpose::Stream)?;
            let mut blocks = StreamBlocks {
                structured_tool: StructuredOutput::of(&request.options).map(|s| s.name.to_owned()),
                ..StreamBlocks::default()
            };
            let call = Call::start(self.limits, request);
            let url = self.endpoint()?;
            let response = self.post(&call, &url, key, &body).await?;
            let secrets: Vec<String> = key.keys().map(|k| k.expose_secret().to_owned()).collect();
            let tally = Tally::new(&request.model, request.prompt_estimate());
            Ok(normalise(
                sse_events(call, response),
                tally,
                move |event, tally| {
                    let data: WireEvent = parse_data(event)?;
                    match data.kind.as_str() {
                        "message_start" => {
                            if let Some(message) = data.message {
                                if let Some(model) = message.model {
                                    tally.model = model;
                                }
                                if let Some(usage) = message.usage {
                                    tally.input_tokens = usage.input();
                                    (tally.cached_input_tokens, tally.cache_write_tokens) =
                                        usage.cache();
                                }
                            }
                            Ok(Step::Nothing)
                        }
                        "content_block_start" => Ok(data
                            .content_block
                            .map_or(Step::Nothing, |b| blocks.start(data.index, b))),
                        "content_block_delta" => Ok(data
                            .delta
                            .map_or(Step::Nothing, |d| blocks.delta(data.index, d))),
                        "message_delta" => {
                            if let Some(reason) =
                                data.delta.as_ref().and_then(|d| d.stop_reason.as_deref())
                            {
                                tally.finish =
                                    Some(finish(reason, blocks.structured_tool.is_some()));
                            }
                            if let Some(usage) = data.usage {
                                if let Some(output) = count(usage.output_tokens) {
                                    tally.output_tokens = Some(output);
                                }
                                // Newer servers repeat the (cumulative) prompt counts here.
                                if usage.input_tokens.is_some() {
                                    tally.input_tokens = usage.input();
                                    (tally.cached_input_tokens, tally.cache_write_tokens) =
                                        usage.cache();
                                }
                            }
                            Ok(Step::Nothing)
                        }
                        "message_stop" => Ok(Step::Done),
                        "error" => Err(ProviderError::Upstream {
                            status: None,
                            message: scrub(
                                &data
                                    .error
                                    .map(|e| format!("{}: {}", e.kind, e.message))
                                    .unwrap_or_else(|| "error event without details".to_owned()),
                                &secrets.iter().map(String::as_str).collect::<Vec<_>>(),
                            ),
                        }),
                        // ping, content_block_stop, and event types added later.
                        _ => Ok(Step::Nothing),
                    }
                },
            ))
        }
        .boxed()
    }
}

/// A `tool_use` block's input as the JSON text of a tool call's arguments.
fn tool_arguments(input: Option<serde_json::Value>) -> String {
    input.map_or_else(|| "{}".to_owned(), |input| input.to_string())
}

/// What a stream's content blocks are: the answer's tool calls numbered in order from 0, and
/// the forced tool of structured output, whose input is streamed as the answer's text.
#[derive(Debug, Default)]
struct StreamBlocks {
    structured_tool: Option<String>,
    /// Tool call number by block index, for the blocks that are tool calls.
    tool_calls: std::collections::HashMap<u64, u32>,
    structured_block: Option<u64>,
}

impl StreamBlocks {
    /// A block's start: a tool call's first piece, a redacted reasoning block whole, any
    /// reasoning a thinking block starts with.
    fn start(&mut self, index: Option<u64>, block: WireBlock) -> Step {
        match block.kind.as_str() {
            "tool_use" => {}
            // Anthropic starts a thinking block empty; should one start with its text or
            // signature, neither is lost.
            "thinking" => {
                let events: Vec<StreamEvent> = [
                    block.thinking.map(StreamEvent::ReasoningDelta),
                    block.signature.map(StreamEvent::ReasoningSignature),
                ]
                .into_iter()
                .flatten()
                .filter(|event| {
                    !matches!(event, StreamEvent::ReasoningDelta(piece) | StreamEvent::ReasoningSignature(piece) if piece.is_empty())
                })
                .collect();
                return if events.is_empty() {
                    Step::Nothing
                } else {
                    Step::Events(events)
                };
            }
            "redacted_thinking" => {
                return reasoning(block.data, StreamEvent::RedactedReasoning);
            }
            _ => return Step::Nothing,
        }
        let index = index.unwrap_or_default();
        if self.structured_tool.is_some() && block.name == self.structured_tool {
            self.structured_block = Some(index);
            return Step::Nothing;
        }
        let number = u32::try_from(self.tool_calls.len()).unwrap_or(u32::MAX);
        self.tool_calls.insert(index, number);
        Step::ToolCall(ToolCallDelta {
            index: number,
            id: Some(block.id.unwrap_or_default()),
            name: Some(block.name.unwrap_or_default()),
            arguments: String::new(),
        })
    }

    /// Text deltas are the answer; thinking and signature deltas are reasoning, not text.
    fn delta(&self, index: Option<u64>, delta: WireEventDelta) -> Step {
        let index = index.unwrap_or_default();
        match delta.kind.as_deref() {
            Some("thinking_delta") => reasoning(delta.thinking, StreamEvent::ReasoningDelta),
            Some("signature_delta") => reasoning(delta.signature, StreamEvent::ReasoningSignature),
            Some("text_delta") if self.structured_tool.is_none() => {
                delta.text.map_or(Step::Nothing, Step::Text)
            }
            Some("input_json_delta") => {
                let Some(fragment) = delta.partial_json.filter(|f| !f.is_empty()) else {
                    return Step::Nothing;
                };
                if self.structured_block == Some(index) {
                    return Step::Text(fragment);
                }
                self.tool_calls
                    .get(&index)
                    .map_or(Step::Nothing, |&number| {
                        Step::ToolCall(ToolCallDelta {
                            index: number,
                            id: None,
                            name: None,
                            arguments: fragment,
                        })
                    })
            }
            _ => Step::Nothing,
        }
    }
}

/// `piece` of reasoning as `event`, when there is any.
fn reasoning(piece: Option<String>, event: fn(String) -> StreamEvent) -> Step {
    match piece {
        Some(piece) if !piece.is_empty() => Step::Events(vec![event(piece)]),
        _ => Step::Nothing,
    }
}

/// Why the answer ended; with structured output, its forced tool's use is the natural end.
fn finish(reason: &str, structured: bool) -> FinishReason {
    match stop_reason(reason) {
        FinishReason::ToolCalls if structured => FinishReason::Stop,
        other => other,
    }
}

/// The least `top_p` Anthropic takes while thinking.
const MIN_TOP_P_WHILE_THINKING: f64 = 0.95;
/// The least thinking budget Anthropic takes.
const MIN_THINKING_BUDGET: u32 = 1024;
/// The image types Anthropic reads.
const IMAGE_MEDIA_TYPES: [&str; 4] = ["image/jpeg", "image/png", "image/gif", "image/webp"];

fn unsupported(param: &'static str, what: impl Into<String>) -> Unsupported {
    Unsupported {
        provider: ProviderKind::Anthropic,
        param,
        what: what.into(),
    }
}

/// Refuses the sampling parameters the Messages API has no counterpart for.
fn refuse_unmappable(options: &ChatOptions) -> Result<(), Unsupported> {
    let none = "(the Messages API has no such parameter)";
    if options.seed.is_some() {
        return Err(unsupported("seed", format!("'seed' {none}")));
    }
    if options.presence_penalty.is_some() {
        return Err(unsupported(
            "presence_penalty",
            format!("'presence_penalty' {none}"),
        ));
    }
    if options.frequency_penalty.is_some() {
        return Err(unsupported(
            "frequency_penalty",
            format!("'frequency_penalty' {none}"),
        ));
    }
    if !options.logit_bias.is_empty() {
        return Err(unsupported("logit_bias", format!("'logit_bias' {none}")));
    }
    if options.logprobs {
        return Err(unsupported("logprobs", format!("'logprobs' {none}")));
    }
    if options.top_logprobs.is_some() {
        return Err(unsupported(
            "top_logprobs",
            format!("'top_logprobs' {none}"),
        ));
    }
    Ok(())
}

/// How many tokens each reasoning effort may think for, before the request's own limit;
/// `None` asks for no thinking, which is Anthropic's default.
const fn nominal_thinking_budget(effort: ReasoningEffort) -> Option<u32> {
    match effort {
        ReasoningEffort::None => None,
        ReasoningEffort::Minimal => Some(MIN_THINKING_BUDGET),
        ReasoningEffort::Low => Some(2_048),
        ReasoningEffort::Medium => Some(8_192),
        ReasoningEffort::High => Some(16_384),
    }
}

/// Extended thinking for `reasoning_effort`: a budget of at least 1024 tokens and below
/// `max_tokens`, as Anthropic requires; refused when `max_tokens` leaves no such budget.
fn thinking(request: &ProviderRequest) -> Result<Option<WireThinking>, Unsupported> {
    let Some(nominal) = request
        .options
        .reasoning_effort
        .and_then(nominal_thinking_budget)
    else {
        return Ok(None);
    };
    let continues_tool_calls = request
        .messages
        .iter()
        .rev()
        .find(|m| m.role == Role::Assistant)
        .is_some_and(|m| !m.tool_calls.is_empty());
    if continues_tool_calls {
        return Err(unsupported(
            "reasoning_effort",
            "reasoning_effort when answering tool results (extended thinking needs the \
             thinking blocks of the turn that called the tools, which the conversation does not \
             carry)",
        ));
    }
    let budget_tokens = nominal.min(request.max_tokens.saturating_sub(1));
    if budget_tokens < MIN_THINKING_BUDGET {
        return Err(unsupported(
            "reasoning_effort",
            format!(
                "reasoning_effort with max_tokens {} (extended thinking needs a budget of at \
                 least {MIN_THINKING_BUDGET} tokens below max_tokens)",
                request.max_tokens
            ),
        ));
    }
    Ok(Some(WireThinking {
        kind: "enabled",
        budget_tokens,
    }))
}

/// `tool_choice` and `parallel_tool_calls` on Anthropic's wire. Without tools there is nothing
/// to choose: `auto` and `none` then change nothing and are left out; a required tool is
/// refused.
fn tool_choice(
    options: &ChatOptions,
    thinking: bool,
) -> Result<Option<WireToolChoice<'_>>, Unsupported> {
    let no_parallel = (options.parallel_tool_calls == Some(false)).then_some(true);
    if options.tools.is_empty() {
        return match &options.tool_choice {
            Some(ToolChoice::Required | ToolChoice::Tool(_)) => Err(unsupported(
                "tool_choice",
                "a required tool_choice without tools",
            )),
            _ => Ok(None),
        };
    }
    let (kind, name) = match &options.tool_choice {
        None if no_parallel.is_none() => return Ok(None),
        None | Some(ToolChoice::Auto) => ("auto", None),
        // Anthropic's `none` takes no parallelism flag: no tool is called at all.
        Some(ToolChoice::None) => {
            return Ok(Some(WireToolChoice {
                kind: "none",
                name: None,
                disable_parallel_tool_use: None,
            }));
        }
        Some(ToolChoice::Required) => ("any", None),
        Some(ToolChoice::Tool(name)) => ("tool", Some(name.as_str())),
    };
    if thinking && kind != "auto" {
        return Err(unsupported(
            "tool_choice",
            "a forced tool_choice together with reasoning_effort (extended thinking allows only \
             'auto' or 'none')",
        ));
    }
    Ok(Some(WireToolChoice {
        kind,
        name,
        disable_parallel_tool_use: no_parallel,
    }))
}

/// Structured output (`response_format` json_schema or json_object) as a **forced tool**:
/// one tool whose `input_schema` is the schema, `tool_choice` forcing it, and its `input`
/// returned as the answer's text with finish reason stop.
///
/// Why a forced tool rather than Anthropic's native JSON-schema output: the forced tool works
/// on every Claude model with tool use, on the stable `2023-06-01` API without a beta header,
/// and with any JSON Schema, where the native output is limited to the newest models, a beta
/// header and a subset of JSON Schema — a specialist's model would decide whether
/// `response_format` works at all. The price: it cannot be combined with the caller's own
/// tools or with extended thinking (both refused), and the schema is followed by the model
/// rather than enforced by constrained decoding.
#[derive(Debug, Clone, Copy, PartialEq)]
struct StructuredOutput<'a> {
    /// The forced tool's name: the schema's, or `json_object`.
    name: &'a str,
    description: Option<&'a str>,
    /// `None` for any JSON object.
    schema: Option<&'a serde_json::Value>,
}

impl<'a> StructuredOutput<'a> {
    fn of(options: &'a ChatOptions) -> Option<Self> {
        match options.response_format.as_ref()? {
            ResponseFormat::Text => None,
            ResponseFormat::JsonObject => Some(Self {
                name: "json_object",
                description: None,
                schema: None,
            }),
            ResponseFormat::JsonSchema(format) => Some(Self {
                name: &format.name,
                description: format.description.as_deref(),
                schema: Some(&format.schema),
            }),
        }
    }

    fn tool(&self) -> WireTool<'a> {
        WireTool {
            name: self.name,
            description: Some(
                self.description
                    .unwrap_or("Give the whole answer as this tool's input."),
            ),
            input_schema: self.schema.map_or_else(
                || std::borrow::Cow::Owned(serde_json::json!({"type": "object"})),
                std::borrow::Cow::Borrowed,
            ),
        }
    }
}

/// The system text and the messages, on Anthropic's wire: images as image blocks, an
/// assistant's tool calls as `tool_use` blocks, tool results as `tool_result` blocks in a user
/// message. Consecutive tool results, and a user message right after them, share one user
/// message, as Anthropic's alternation of roles requires.
fn conversation(
    request: &ProviderRequest,
) -> Result<(Vec<String>, Vec<WireMessage<'_>>), Unsupported> {
    let mut system: Vec<String> = Vec::new();
    if !request.system_prompt.is_empty() {
        system.push(request.system_prompt.clone());
    }
    let mut messages: Vec<WireMessage<'_>> = Vec::with_capacity(request.messages.len());
    // Whether the last message holds tool results, so that what follows joins it.
    let mut open_tool_results = false;
    for m in &request.messages {
        match m.role {
            Role::System => {
                if m.has_images() {
                    return Err(unsupported(
                        "messages",
                        "images in system messages (Anthropic's system text is text only)",
                    ));
                }
                system.push(m.text().into_owned());
            }
            Role::User => {
                let content = content(m)?;
                match messages.last_mut() {
                    Some(last) if open_tool_results => last.content.append(content),
                    _ => messages.push(WireMessage {
                        role: Role::User.as_str(),
                        content,
                    }),
                }
                open_tool_results = false;
            }
            Role::Tool => {
                let Some(tool_use_id) = m.tool_call_id.as_deref() else {
                    return Err(unsupported(
                        "messages",
                        "a tool message without tool_call_id",
                    ));
                };
                let block = WireBlockOut::ToolResult {
                    tool_use_id,
                    content: content(m)?,
                };
                match messages.last_mut() {
                    Some(last) if open_tool_results => last.content.push(block),
                    _ => messages.push(WireMessage {
                        role: Role::User.as_str(),
                        content: WireContent::Blocks(vec![block]),
                    }),
                }
                open_tool_results = true;
            }
            Role::Assistant => {
                if m.has_images() {
                    return Err(unsupported(
                        "messages",
                        "images in assistant messages (Anthropic takes images from the user \
                         only)",
                    ));
                }
                let mut content = content(m)?;
                for call in &m.tool_calls {
                    content.push(WireBlockOut::ToolUse {
                        id: &call.id,
                        name: &call.name,
                        input: tool_input(&call.id, &call.arguments)?,
                    });
                }
                messages.push(WireMessage {
                    role: Role::Assistant.as_str(),
                    content,
                });
                open_tool_results = false;
            }
        }
    }
    Ok((system, messages))
}

/// A message's content: plain text as a string, anything else as blocks (empty text parts
/// left out, as Anthropic refuses empty text blocks).
fn content(m: &ChatMessage) -> Result<WireContent<'_>, Unsupported> {
    match m.content.as_slice() {
        [] => return Ok(WireContent::Text("")),
        [ContentPart::Text(text)] => return Ok(WireContent::Text(text)),
        _ => {}
    }
    let mut blocks = Vec::with_capacity(m.content.len());
    for part in &m.content {
        match part {
            ContentPart::Text(text) if text.is_empty() => {}
            ContentPart::Text(text) => blocks.push(WireBlockOut::Text { text }),
            ContentPart::Image { source, detail } => {
                if let Some(detail @ (ImageDetail::Low | ImageDetail::High)) = detail {
                    let word = if *detail == ImageDetail::Low {
                        "low"
                    } else {
                        "high"
                    };
                    return Err(unsupported(
                        "messages",
                        format!("image detail '{word}' (Anthropic sizes images itself)"),
                    ));
                }
                let source = match source {
                    ImageSource::Url(url) => WireImageSource::Url { url },
                    ImageSource::Base64 { media_type, data } => {
                        if !IMAGE_MEDIA_TYPES.contains(&media_type.as_str()) {
                            return Err(unsupported(
                                "messages",
                                format!(
                                    "images of type '{media_type}' (Anthropic reads {})",
                                    IMAGE_MEDIA_TYPES.join(", ")
                                ),
                            ));
                        }
                        WireImageSource::Base64 { media_type, data }
                    }
                };
                blocks.push(WireBlockOut::Image { source });
            }
        }
    }
    Ok(WireContent::Blocks(blocks))
}

/// A tool call's arguments as Anthropic's `input` object: no arguments are `{}`; text that is
/// not a JSON object is refused rather than sent as something the model never wrote.
fn tool_input(id: &str, arguments: &str) -> Result<serde_json::Value, Unsupported> {
    if arguments.trim().is_empty() {
        return Ok(serde_json::Value::Object(serde_json::Map::new()));
    }
    match serde_json::from_str::<serde_json::Value>(arguments) {
        Ok(input @ serde_json::Value::Object(_)) => Ok(input),
        _ => Err(unsupported(
            "messages",
            format!(
                "the arguments of tool call '{id}', which are not a JSON object (Anthropic \
                 takes a tool's input as an object)"
            ),
        )),
    }
}

fn stop_reason(reason: &str) -> FinishReason {
    match reason {
        "end_turn" | "stop_sequence" => FinishReason::Stop,
        "max_tokens" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCalls,
        "refusal" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_owned()),
    }
}

#[derive(Debug, Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<String>,
    messages: Vec<WireMessage<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop_sequences: &'a [String],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<WireTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<WireToolChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking: Option<WireThinking>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<WireMetadata<'a>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
}

#[derive(Debug, Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    content: WireContent<'a>,
}

/// A message's (or tool result's) content: a string, or blocks.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum WireContent<'a> {
    Text(&'a str),
    Blocks(Vec<WireBlockOut<'a>>),
}

impl<'a> WireContent<'a> {
    /// The content as blocks, a string becoming one text block (none when empty).
    fn into_blocks(self) -> Vec<WireBlockOut<'a>> {
        match self {
            Self::Text("") => Vec::new(),
            Self::Text(text) => vec![WireBlockOut::Text { text }],
            Self::Blocks(blocks) => blocks,
        }
    }

    fn push(&mut self, block: WireBlockOut<'a>) {
        let mut blocks = std::mem::replace(self, Self::Blocks(Vec::new())).into_blocks();
        blocks.push(block);
        *self = Self::Blocks(blocks);
    }

    fn append(&mut self, more: Self) {
        for block in more.into_blocks() {
            self.push(block);
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireBlockOut<'a> {
    Text {
        text: &'a str,
    },
    Image {
        source: WireImageSource<'a>,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: serde_json::Value,
    },
    ToolResult {
        tool_use_id: &'a str,
        content: WireContent<'a>,
    },
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireImageSource<'a> {
    Base64 { media_type: &'a str, data: &'a str },
    Url { url: &'a str },
}

#[derive(Debug, Serialize)]
struct WireTool<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    input_schema: std::borrow::Cow<'a, serde_json::Value>,
}

#[derive(Debug, Serialize)]
struct WireToolChoice<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    disable_parallel_tool_use: Option<bool>,
}

#[derive(Debug, Serialize)]
struct WireThinking {
    #[serde(rename = "type")]
    kind: &'static str,
    budget_tokens: u32,
}

#[derive(Debug, Serialize)]
struct WireMetadata<'a> {
    user_id: &'a str,
}

/// A token count's body: what a message call would send, without `max_tokens`, `stream` and
/// the sampling parameters, which `count_tokens` does not take.
#[derive(Debug, Serialize)]
struct WireCountRequest<'r, 'a> {
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<&'r str>,
    messages: &'r [WireMessage<'a>],
    #[serde(skip_serializing_if = "<[WireTool<'a>]>::is_empty")]
    tools: &'r [WireTool<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<&'r WireToolChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking: Option<&'r WireThinking>,
}

impl<'r, 'a> From<&'r WireRequest<'a>> for WireCountRequest<'r, 'a> {
    fn from(body: &'r WireRequest<'a>) -> Self {
        Self {
            model: body.model,
            system: body.system.as_deref(),
            messages: &body.messages,
            tools: &body.tools,
            tool_choice: body.tool_choice.as_ref(),
            thinking: body.thinking.as_ref(),
        }
    }
}

/// The answer to a token count.
#[derive(Debug, Deserialize)]
struct WireTokenCount {
    input_tokens: Option<Reported>,
}

#[derive(Debug, Deserialize)]
struct WireResponse {
    model: Option<String>,
    /// Kept as the upstream's text: a native request's door gives it back as it came.
    content: Option<Box<serde_json::value::RawValue>>,
    stop_reason: Option<String>,
    usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
struct WireBlock {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
    id: Option<String>,
    name: Option<String>,
    input: Option<serde_json::Value>,
    /// A `thinking` block's reasoning.
    thinking: Option<String>,
    /// A `thinking` block's signature.
    signature: Option<String>,
    /// A `redacted_thinking` block's opaque data.
    data: Option<String>,
}

/// Only the usage of a response, read from a body that is otherwise unusable.
#[derive(Debug, Deserialize)]
struct WireUsageOnly {
    usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
struct WireUsage {
    /// The prompt tokens neither read from nor written to the cache.
    input_tokens: Option<Reported>,
    output_tokens: Option<Reported>,
    cache_read_input_tokens: Option<Reported>,
    cache_creation_input_tokens: Option<Reported>,
}

impl WireUsage {
    /// A cache count: absent is 0, unusable is unknown.
    fn cache_part(reported: Option<Reported>) -> Option<u32> {
        reported.map_or(Some(0), Reported::count)
    }

    /// The whole prompt, by our rule that input includes cache reads and writes (Anthropic's
    /// `input_tokens` excludes both). A sum that overflows is as unusable as its parts.
    fn input(&self) -> Option<u32> {
        count(self.input_tokens)?
            .checked_add(Self::cache_part(self.cache_read_input_tokens)?)?
            .checked_add(Self::cache_part(self.cache_creation_input_tokens)?)
    }

    /// (cache reads, cache writes); an unusable count is 0, so the tokens are priced as input.
    fn cache(&self) -> (u32, u32) {
        (
            Self::cache_part(self.cache_read_input_tokens).unwrap_or(0),
            Self::cache_part(self.cache_creation_input_tokens).unwrap_or(0),
        )
    }

    /// The usage `body` reports, if that part of it reads as usage.
    fn in_body(body: &[u8]) -> Option<core_domain::TokenUsage> {
        serde_json::from_slice::<WireUsageOnly>(body)
            .ok()?
            .usage?
            .usage()
    }

    /// The whole usage, or `None` when the counts are missing or unusable.
    fn usage(&self) -> Option<core_domain::TokenUsage> {
        let (reads, writes) = self.cache();
        Some(
            core_domain::TokenUsage::reported(self.input()?, count(self.output_tokens)?)
                .with_cache(reads, writes),
        )
    }
}

#[derive(Debug, Deserialize)]
struct WireEvent {
    #[serde(rename = "type")]
    kind: String,
    index: Option<u64>,
    content_block: Option<WireBlock>,
    message: Option<WireStartMessage>,
    delta: Option<WireEventDelta>,
    usage: Option<WireUsage>,
    error: Option<WireErrorBody>,
}

#[derive(Debug, Deserialize)]
struct WireStartMessage {
    model: Option<String>,
    usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
struct WireEventDelta {
    #[serde(rename = "type")]
    kind: Option<String>,
    text: Option<String>,
    partial_json: Option<String>,
    thinking: Option<String>,
    signature: Option<String>,
    stop_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireErrorBody {
    #[serde(rename = "type")]
    kind: String,
    message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plain(messages: Vec<ChatMessage>) -> ProviderRequest {
        ProviderRequest {
            model: "claude".into(),
            system_prompt: String::new(),
            messages,
            temperature: 0.5,
            max_tokens: 100,
            base_url: None,
            options: ChatOptions::default(),
            single_attempt: false,
            deadline: None,
            anthropic: None,
        }
    }

    fn sent(request: &ProviderRequest) -> serde_json::Value {
        serde_json::to_value(AnthropicProvider::body(request, false).unwrap()).unwrap()
    }

    fn calling(arguments: &str) -> ChatMessage {
        let mut message = ChatMessage::assistant("Checking.");
        message.tool_calls = vec![ToolCall {
            id: "toolu_1".into(),
            name: "lookup".into(),
            arguments: arguments.into(),
        }];
        message
    }

    #[test]
    fn a_lone_tool_result_opens_a_user_message_and_a_later_assistant_closes_it() {
        let request = plain(vec![
            ChatMessage::user("Go"),
            calling(" "),
            ChatMessage::tool_result("toolu_1", "done"),
            ChatMessage::assistant("Done."),
            ChatMessage::tool_result("toolu_9", "late"),
        ]);
        assert_eq!(
            sent(&request)["messages"],
            json!([
                {"role": "user", "content": "Go"},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "done"}
                ]},
                {"role": "assistant", "content": "Done."},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_9", "content": "late"}
                ]}
            ])
        );
    }

    #[test]
    fn tool_arguments_must_be_a_json_object() {
        for bad in ["[1, 2]", "\"text\"", "{\"open\": ", "42"] {
            let refused = AnthropicProvider::body(&plain(vec![calling(bad)]), false).unwrap_err();
            assert_eq!(refused.param, "messages");
            assert!(refused.what.contains("toolu_1"), "{}", refused.what);
        }
        let request = plain(vec![calling(r#"{"nested": {"a": [1]}}"#)]);
        assert_eq!(
            sent(&request)["messages"][0]["content"][1]["input"],
            json!({"nested": {"a": [1]}})
        );
    }

    #[test]
    fn a_user_message_of_one_text_part_stays_a_string_and_empty_parts_are_left_out() {
        let mut message = ChatMessage::user("");
        message.content.push(ContentPart::Text("Hi".into()));
        let request = plain(vec![ChatMessage::user("plain"), message]);
        assert_eq!(
            sent(&request)["messages"],
            json!([
                {"role": "user", "content": "plain"},
                {"role": "user", "content": [{"type": "text", "text": "Hi"}]}
            ])
        );
    }

    #[test]
    fn thinking_needs_a_budget_of_1024_below_max_tokens() {
        let mut request = plain(vec![ChatMessage::user("Think")]);
        request.options.reasoning_effort = Some(ReasoningEffort::High);
        request.max_tokens = 1_025;
        assert_eq!(
            sent(&request)["thinking"],
            json!({"type": "enabled", "budget_tokens": 1_024})
        );
        request.max_tokens = 1_024;
        let refused = AnthropicProvider::body(&request, false).unwrap_err();
        assert_eq!(refused.param, "reasoning_effort");
        assert!(refused.what.contains("max_tokens 1024"), "{}", refused.what);
        // Auto stays allowed while thinking.
        request.max_tokens = 2_000;
        request.options.tool_choice = Some(ToolChoice::Auto);
        request.options.tools = vec![core_domain::ToolDefinition {
            name: "lookup".into(),
            description: None,
            parameters: json!({"type": "object"}),
            strict: None,
        }];
        assert_eq!(sent(&request)["tool_choice"], json!({"type": "auto"}));
    }

    #[test]
    fn thinking_cannot_continue_a_turn_that_called_tools() {
        let mut request = plain(vec![
            ChatMessage::user("Go"),
            calling("{}"),
            ChatMessage::tool_result("toolu_1", "done"),
        ]);
        request.max_tokens = 4_000;
        request.options.reasoning_effort = Some(ReasoningEffort::Low);
        let refused = AnthropicProvider::body(&request, false).unwrap_err();
        assert_eq!(refused.param, "reasoning_effort");
        // Once the model has answered in text, a new question may think again.
        request.messages.push(ChatMessage::assistant("Done."));
        request.messages.push(ChatMessage::user("And now?"));
        assert_eq!(sent(&request)["thinking"]["budget_tokens"], 2_048);
    }

    #[test]
    fn without_tools_a_harmless_tool_choice_is_left_out() {
        let mut request = plain(vec![ChatMessage::user("Hi")]);
        request.options.tool_choice = Some(ToolChoice::None);
        request.options.parallel_tool_calls = Some(false);
        let body = sent(&request);
        assert!(body.get("tool_choice").is_none(), "{body}");
        assert!(body.get("tools").is_none(), "{body}");
        request.options.tool_choice = Some(ToolChoice::Tool("lookup".into()));
        let refused = AnthropicProvider::body(&request, false).unwrap_err();
        assert_eq!(refused.param, "tool_choice");
    }

    #[test]
    fn response_format_text_changes_nothing() {
        let mut request = plain(vec![ChatMessage::user("Hi")]);
        let before = sent(&request);
        request.options.response_format = Some(ResponseFormat::Text);
        assert_eq!(sent(&request), before);
    }

    fn events(step: Step) -> Vec<StreamEvent> {
        match step {
            Step::Events(events) => events,
            Step::Nothing => Vec::new(),
            _ => panic!("reasoning is events, never text or a tool call"),
        }
    }

    #[test]
    fn thinking_and_signature_deltas_are_reasoning_and_tool_calls_number_from_zero() {
        let mut blocks = StreamBlocks::default();
        let block =
            |json: serde_json::Value| -> WireBlock { serde_json::from_value(json).unwrap() };
        let delta =
            |json: serde_json::Value| -> WireEventDelta { serde_json::from_value(json).unwrap() };
        assert!(
            events(blocks.start(Some(0), block(json!({"type": "thinking", "thinking": ""}))))
                .is_empty()
        );
        assert_eq!(
            events(blocks.delta(
                Some(0),
                delta(json!({"type": "thinking_delta", "thinking": "hmm"}))
            )),
            [StreamEvent::ReasoningDelta("hmm".into())]
        );
        assert_eq!(
            events(blocks.delta(
                Some(0),
                delta(json!({"type": "signature_delta", "signature": "abc"}))
            )),
            [StreamEvent::ReasoningSignature("abc".into())]
        );
        assert!(
            events(blocks.delta(
                Some(0),
                delta(json!({"type": "thinking_delta", "thinking": ""}))
            ))
            .is_empty()
        );
        assert_eq!(
            events(blocks.start(
                Some(1),
                block(json!({"type": "redacted_thinking", "data": "EuYB"}))
            )),
            [StreamEvent::RedactedReasoning("EuYB".into())]
        );
        let Step::ToolCall(first) = blocks.start(
            Some(2),
            block(json!({"type": "tool_use", "id": "toolu_x", "name": "lookup", "input": {}})),
        ) else {
            panic!("a tool_use block starts a tool call")
        };
        assert_eq!(first.index, 0);
        assert_eq!(first.id.as_deref(), Some("toolu_x"));
        let Step::ToolCall(piece) = blocks.delta(
            Some(2),
            delta(json!({"type": "input_json_delta", "partial_json": "{\"a\""})),
        ) else {
            panic!("input_json_delta is a fragment of the arguments")
        };
        assert_eq!((piece.index, piece.arguments.as_str()), (0, "{\"a\""));
        assert!(piece.id.is_none());
        assert!(matches!(
            blocks.delta(
                Some(2),
                delta(json!({"type": "input_json_delta", "partial_json": ""}))
            ),
            Step::Nothing
        ));
    }

    #[test]
    fn a_structured_answer_ending_in_tool_use_finishes_naturally() {
        assert_eq!(finish("tool_use", true), FinishReason::Stop);
        assert_eq!(finish("tool_use", false), FinishReason::ToolCalls);
        assert_eq!(finish("max_tokens", true), FinishReason::Length);
    }

    #[test]
    fn absurd_usage_counts_are_unreported_not_a_failure() {
        let event: WireEvent = serde_json::from_str(
            r#"{"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                "usage": {"output_tokens": 1e300}}"#,
        )
        .unwrap();
        assert_eq!(event.usage.unwrap().output_tokens, Some(Reported::Unusable));
        let answer: WireResponse = serde_json::from_str(
            r#"{"content": [], "usage": {"input_tokens": -1, "output_tokens": 5}}"#,
        )
        .unwrap();
        assert_eq!(answer.usage.unwrap().input_tokens, Some(Reported::Unusable));
    }
    fn native(system: Option<&str>, fields: &[(&str, &str)]) -> ProviderRequest {
        let mut request = plain(vec![ChatMessage::user("ignored: the native body is sent")]);
        request.anthropic = Some(std::sync::Arc::new(AnthropicNative {
            system: system.map(Into::into),
            fields: fields
                .iter()
                .map(|(name, value)| ((*name).into(), (*value).into()))
                .collect(),
            beta: None,
        }));
        request
    }

    fn native_json(request: &ProviderRequest, purpose: Purpose) -> String {
        let native = request.anthropic.as_deref().unwrap();
        AnthropicProvider::native_body(request, native, purpose)
            .unwrap()
            .json
    }

    #[test]
    fn a_native_body_is_the_callers_text_with_the_gateways_fields() {
        let messages = r#"[ {"role": "user", "content": [{"type":"text","text":"Hi","cache_control":{"type":"ephemeral"}}]} ]"#;
        let mut request = native(
            Some(r#"[{"type": "text", "text": "Caller rules."}]"#),
            &[
                ("messages", messages),
                ("top_k", "5"),
                ("model", "\"spoofed\""),
            ],
        );
        request.system_prompt = "Specialist \"rules\".".into();
        let body = native_json(&request, Purpose::Stream);
        assert_eq!(
            body,
            format!(
                r#"{{"model":"claude","max_tokens":100,"system":[{{"text":"Specialist \"rules\".","type":"text"}},{{"type": "text", "text": "Caller rules."}}],"messages":{messages},"top_k":5,"temperature":0.5,"stream":true}}"#
            )
        );
        serde_json::from_str::<serde_json::Value>(&body).unwrap();
    }

    #[test]
    fn a_native_system_string_follows_the_prompt_as_a_text_block_or_goes_as_sent() {
        let mut request = native(Some(r#""Be kind.""#), &[("messages", "[]")]);
        let alone = native_json(&request, Purpose::Whole);
        assert!(alone.contains(r#""system":"Be kind.","#), "{alone}");
        request.system_prompt = "Rules.".into();
        let after = native_json(&request, Purpose::Whole);
        assert!(
            after.contains(
                r#""system":[{"text":"Rules.","type":"text"},{"type":"text","text":"Be kind."}]"#
            ),
            "{after}"
        );
        let mut empty = native(Some(r#""""#), &[("messages", "[]")]);
        empty.system_prompt = "Rules.".into();
        let body = native_json(&empty, Purpose::Whole);
        assert!(
            body.contains(r#""system":[{"text":"Rules.","type":"text"}]"#),
            "{body}"
        );
        let none = native(None, &[("messages", "[]")]);
        assert!(!native_json(&none, Purpose::Whole).contains("system"));
    }

    #[test]
    fn the_specialists_temperature_goes_only_when_the_caller_sent_none_and_does_not_think() {
        let sent = native(None, &[("messages", "[]"), ("temperature", "0.25")]);
        let body = native_json(&sent, Purpose::Whole);
        assert_eq!(body.matches("temperature").count(), 1, "{body}");
        assert!(body.contains(r#""temperature":0.25"#));
        let thinking = native(
            None,
            &[
                ("messages", "[]"),
                ("thinking", r#"{"type": "enabled", "budget_tokens": 2000}"#),
            ],
        );
        assert!(!native_json(&thinking, Purpose::Whole).contains("temperature"));
        let disabled = native(
            None,
            &[("messages", "[]"), ("thinking", r#"{"type":"disabled"}"#)],
        );
        assert!(native_json(&disabled, Purpose::Whole).contains(r#""temperature":0.5"#));
        let mut hot = native(None, &[("messages", "[]")]);
        hot.temperature = 1.8;
        assert!(native_json(&hot, Purpose::Whole).contains(r#""temperature":1.0"#));
    }

    #[test]
    fn a_native_token_count_has_no_max_tokens_stream_or_added_temperature() {
        let request = native(
            Some(r#""S""#),
            &[
                ("messages", "[]"),
                ("temperature", "0.2"),
                ("tools", "[]"),
                ("metadata", r#"{"user_id":"u"}"#),
                ("top_k", "3"),
            ],
        );
        assert_eq!(
            native_json(&request, Purpose::CountTokens),
            r#"{"model":"claude","system":"S","messages":[],"tools":[]}"#
        );
    }

    #[test]
    fn a_native_request_is_refused_only_when_its_body_cannot_be_written() {
        let provider_refuses = |request: &ProviderRequest| {
            let native = request.anthropic.as_deref().unwrap();
            AnthropicProvider::native_body(request, native, Purpose::Whole).unwrap_err()
        };
        assert_eq!(provider_refuses(&native(Some("42"), &[])).param, "system");
        assert_eq!(
            provider_refuses(&native(Some("{\"a\":1}"), &[])).param,
            "system"
        );
        assert_eq!(
            provider_refuses(&native(Some("[oops"), &[])).param,
            "system"
        );
        let bad = native(None, &[("messages", "[{]")]);
        assert!(provider_refuses(&bad).what.contains("'messages'"));
        let mut beta = native(None, &[("messages", "[]")]);
        beta.anthropic = Some(std::sync::Arc::new(AnthropicNative {
            system: None,
            fields: vec![("messages".into(), "[]".into())],
            beta: Some("bad\nheader".into()),
        }));
        assert_eq!(provider_refuses(&beta).param, "anthropic-beta");
        // What the translation refuses for Anthropic's reasons is the upstream's to judge here.
        let mut reasoning = native(None, &[("messages", "[]")]);
        reasoning.options.reasoning_effort = Some(ReasoningEffort::High);
        reasoning.max_tokens = 10;
        reasoning.options.seed = Some(1);
        let native = reasoning.anthropic.as_deref().unwrap();
        assert!(AnthropicProvider::native_body(&reasoning, native, Purpose::Whole).is_ok());
    }

    #[test]
    fn a_native_request_is_never_continued_by_prefill() {
        let provider = AnthropicProvider::new(
            &crate::ProvidersConfig::default(),
            crate::transport::Transport::new(std::time::Duration::from_secs(1)).unwrap(),
            &crate::TokioSleeper,
        );
        let plain = plain(vec![ChatMessage::user("Hi")]);
        assert!(provider.can_continue(&plain));
        assert!(!provider.can_continue(&native(None, &[("messages", "[]")])));
    }
}
