//! OpenAI Chat Completions, and every server that speaks it (xAI, vLLM, Ollama, llama.cpp).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use core_domain::{
    ChatMessage, Completion, ContentPart, FinishReason, ImageSource, ProviderKind, ResponseFormat,
    Role, StreamEvent, TokenUsage, ToolCall, ToolCallDelta, ToolChoice, ToolDefinition,
};
use futures_util::FutureExt;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::config::CallLimits;
use crate::embedding::checked_vectors;
use crate::keys::{KeyPool, PoolPolicy};
use crate::registry::required_pool;
use crate::streaming::{Step, Tally, normalise, parse_data};
use crate::token_count::{Reported, count};
use crate::transport::Sleeper;
use crate::transport::{Call, Transport, read_json, send, sse_events};
use crate::upstream_error::scrub;
use crate::{
    ChatProvider, CompletionFuture, EmbeddingFuture, EmbeddingRequest, Embeddings,
    EventStreamFuture, KeyHealth, ProviderError, ProviderRequest, ProvidersConfig, Unsupported,
};

const XAI_HOST: &str = "api.x.ai";

/// The `openai` provider.
///
/// Which endpoint and key a request uses depends on the specialist's `base_url`: none means the
/// configured OpenAI endpoint and key; a base URL on `api.x.ai` gets the xAI key; any other base
/// URL gets the key listed for it in `providers.openai_compatible`, or none. The OpenAI key is
/// never sent anywhere but the configured endpoint.
#[derive(Debug)]
pub struct OpenAiProvider {
    transport: Transport,
    /// `{configured base URL}/chat/completions`, parsed once (parsing per call is measurable).
    endpoint: Result<reqwest::Url, String>,
    /// `{configured base URL}/embeddings`, parsed once.
    embeddings_endpoint: Result<reqwest::Url, String>,
    /// The configured endpoint's keys.
    configured: Arc<KeyPool>,
    /// The xAI keys, for a pool per `api.x.ai` base URL made on first use.
    xai_keys: Vec<SecretString>,
    /// The pool of every other base URL called so far, by base URL without a trailing `/`:
    /// each `providers.openai_compatible` server from the start, any other (keyless) on first
    /// use, so that its circuit breaker works too.
    pools: RwLock<HashMap<String, Arc<KeyPool>>>,
    /// Every key, kept out of errors whichever endpoint answered.
    secrets: Vec<SecretString>,
    allowed_http: Vec<String>,
    policy: PoolPolicy,
    limits: CallLimits,
}

/// Where one request goes.
struct Endpoint {
    url: reqwest::Url,
    pool: Arc<KeyPool>,
    client: reqwest::Client,
    /// The official OpenAI endpoint (which wants `max_completion_tokens` for reasoning models).
    is_configured: bool,
}

impl OpenAiProvider {
    pub(crate) fn new(
        config: &ProvidersConfig,
        transport: Transport,
        sleeper: &'static dyn Sleeper,
    ) -> Self {
        let trim = |u: &str| u.trim().trim_end_matches('/').to_owned();
        let base = trim(&config.openai.base_url);
        let endpoint = format!("{base}/chat/completions");
        let policy = config.openai.pool_policy();
        let configured = KeyPool::new(
            ProviderKind::OpenAi,
            "providers.openai",
            &base,
            config.openai.keys(),
            policy,
        );
        let mut pools = HashMap::new();
        for (i, server) in config.openai_compatible.iter().enumerate() {
            let url = trim(&server.base_url);
            // The first listing of a base URL wins, as the lookup by URL always did.
            pools.entry(url.clone()).or_insert_with(|| {
                Arc::new(KeyPool::new(
                    ProviderKind::OpenAi,
                    &format!("providers.openai_compatible[{i}]"),
                    &url,
                    server.keys(),
                    policy,
                ))
            });
        }
        let xai_keys = config.xai.keys();
        let secrets = config
            .openai
            .keys()
            .into_iter()
            .chain(xai_keys.iter().cloned())
            .chain(config.openai_compatible.iter().flat_map(|c| c.keys()))
            .collect();
        Self {
            transport,
            endpoint: reqwest::Url::parse(&endpoint)
                .map_err(|e| format!("providers.openai.base_url is not a URL: {e}")),
            embeddings_endpoint: reqwest::Url::parse(&format!("{base}/embeddings"))
                .map_err(|e| format!("providers.openai.base_url is not a URL: {e}")),
            configured: Arc::new(configured),
            xai_keys,
            pools: RwLock::new(pools),
            secrets,
            allowed_http: config
                .allowed_http_base_urls
                .iter()
                .map(|u| trim(u))
                .collect(),
            policy,
            limits: config.openai.limits(config, sleeper),
        }
    }

    fn is_xai(base: &str) -> bool {
        let host = url::Url::parse(base)
            .ok()
            .and_then(|u| u.host_str().map(str::to_ascii_lowercase));
        host.as_deref() == Some(XAI_HOST)
    }

    fn xai_not_configured() -> ProviderError {
        ProviderError::NotConfigured {
            provider: ProviderKind::OpenAi,
            env_var: "XAI_API_KEY",
            config_key: "providers.xai.api_key",
        }
    }

    /// [`ProviderError::NotConfigured`] when a call to `base_url` would lack the key it needs
    /// (see the type's doc for the routing).
    fn check_key(&self, base_url: Option<&str>) -> Result<(), ProviderError> {
        match base_url.map(|u| u.trim_end_matches('/')) {
            None => required_pool(&self.configured, ProviderKind::OpenAi).map(drop),
            Some(base) if Self::is_xai(base) && self.xai_keys.is_empty() => {
                Err(Self::xai_not_configured())
            }
            Some(_) => Ok(()),
        }
    }

    /// The key pool of a call to `base_url`, made on first use for a base URL not seen yet.
    fn pool_for(&self, base_url: Option<&str>) -> Result<Arc<KeyPool>, ProviderError> {
        self.check_key(base_url)?;
        let Some(base) = base_url.map(|u| u.trim_end_matches('/')) else {
            return Ok(Arc::clone(&self.configured));
        };
        // The map is only ever inserted into whole: a poisoned lock still holds valid pools.
        if let Some(pool) = self
            .pools
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(base)
        {
            return Ok(Arc::clone(pool));
        }
        let (name, keys) = if Self::is_xai(base) {
            ("providers.xai".to_owned(), self.xai_keys.clone())
        } else {
            (base.to_owned(), Vec::new())
        };
        let mut pools = self.pools.write().unwrap_or_else(|p| p.into_inner());
        let pool = pools.entry(base.to_owned()).or_insert_with(|| {
            Arc::new(KeyPool::new(
                ProviderKind::OpenAi,
                &name,
                base,
                keys,
                self.policy,
            ))
        });
        Ok(Arc::clone(pool))
    }

    fn endpoint(&self, request: &ProviderRequest) -> Result<Endpoint, ProviderError> {
        self.endpoint_at(
            request.base_url.as_deref(),
            &self.endpoint,
            "chat/completions",
        )
    }

    /// Where a request to `path` under `base_url` goes (`configured`: that path under the
    /// configured endpoint, parsed once).
    fn endpoint_at(
        &self,
        base_url: Option<&str>,
        configured: &Result<reqwest::Url, String>,
        path: &str,
    ) -> Result<Endpoint, ProviderError> {
        let pool = self.pool_for(base_url)?;
        let Some(base) = base_url.map(|u| u.trim_end_matches('/')) else {
            let url = configured
                .clone()
                .map_err(|message| ProviderError::Setup { message })?;
            return Ok(Endpoint {
                url,
                pool,
                client: self.transport.client(true),
                is_configured: true,
            });
        };
        let url = reqwest::Url::parse(&format!("{base}/{path}")).map_err(|e| {
            ProviderError::InvalidRequest {
                status: 0,
                message: format!("the specialist's base_url is not a URL: {e}"),
            }
        })?;
        Ok(Endpoint {
            url,
            pool,
            client: self
                .transport
                .client(self.allowed_http.iter().any(|u| u == base)),
            is_configured: false,
        })
    }

    fn body<'a>(
        request: &'a ProviderRequest,
        endpoint: &Endpoint,
        stream: bool,
    ) -> WireRequest<'a> {
        let mut messages = Vec::with_capacity(request.messages.len() + 1);
        let starts_with_system = request
            .messages
            .first()
            .is_some_and(|m| m.role == Role::System);
        if !starts_with_system && !request.system_prompt.is_empty() {
            messages.push(WireMessage {
                role: Role::System.as_str(),
                content: WireContent::Text(request.system_prompt.as_str().into()),
                tool_calls: Vec::new(),
                tool_call_id: None,
            });
        }
        messages.extend(request.messages.iter().map(wire_message));
        let options = &request.options;
        // OpenAI's reasoning models refuse `max_tokens` and any temperature but the default;
        // every other server (and every other OpenAI model) takes `max_tokens`.
        let reasoning = endpoint.is_configured && is_reasoning_model(&request.model);
        WireRequest {
            model: &request.model,
            messages,
            temperature: (!reasoning).then_some(request.temperature),
            max_tokens: (!reasoning).then_some(request.max_tokens),
            max_completion_tokens: reasoning.then_some(request.max_tokens),
            stream,
            stream_options: stream.then_some(StreamOptions {
                include_usage: true,
            }),
            tools: options.tools.iter().map(wire_tool).collect(),
            tool_choice: options.tool_choice.as_ref().map(wire_tool_choice),
            parallel_tool_calls: options.parallel_tool_calls,
            response_format: options.response_format.as_ref().map(wire_response_format),
            stop: &options.stop,
            top_p: options.top_p,
            seed: options.seed,
            presence_penalty: options.presence_penalty,
            frequency_penalty: options.frequency_penalty,
            logit_bias: &options.logit_bias,
            logprobs: options.logprobs,
            top_logprobs: options.top_logprobs,
            reasoning_effort: options.reasoning_effort.map(|e| e.as_str()),
            user: options.user.as_deref(),
        }
    }

    /// POSTs `body` to `endpoint` as [`send`] does (retries, time limits, keys taken in turn
    /// from the endpoint's pool, `secrets` kept out of errors).
    async fn post(
        call: &Call,
        endpoint: &Endpoint,
        body: &impl Serialize,
        secrets: &[&str],
    ) -> Result<reqwest::Response, ProviderError> {
        let build = |key: Option<&SecretString>| {
            let builder = endpoint.client.post(endpoint.url.clone()).json(body);
            match key {
                Some(key) => builder.bearer_auth(key.expose_secret()),
                None => builder,
            }
        };
        send(call, ProviderKind::OpenAi, &endpoint.pool, secrets, build).await
    }

    fn secrets(&self) -> Vec<&str> {
        self.secrets
            .iter()
            .map(ExposeSecret::expose_secret)
            .collect()
    }
}

/// A message on OpenAI's wire: text alone as a string (what every compatible server takes),
/// parts as an array once there is an image, null for an assistant message that only calls
/// tools.
fn wire_message(message: &ChatMessage) -> WireMessage<'_> {
    let content = if message.has_images() {
        WireContent::Parts(message.content.iter().map(wire_part).collect())
    } else if message.content.is_empty() && !message.tool_calls.is_empty() {
        WireContent::Null
    } else {
        WireContent::Text(message.text())
    };
    WireMessage {
        role: message.role.as_str(),
        content,
        tool_calls: message
            .tool_calls
            .iter()
            .map(|call| {
                json!({"id": call.id, "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments}})
            })
            .collect(),
        tool_call_id: message.tool_call_id.as_deref(),
    }
}

fn wire_part(part: &ContentPart) -> Value {
    match part {
        ContentPart::Text(text) => json!({"type": "text", "text": text}),
        ContentPart::Image { source, detail } => {
            let url = match source {
                ImageSource::Url(url) => url.clone(),
                ImageSource::Base64 { media_type, data } => {
                    format!("data:{media_type};base64,{data}")
                }
            };
            let mut image_url = json!({"url": url});
            if let Some(detail) = detail {
                image_url["detail"] = json!(detail);
            }
            json!({"type": "image_url", "image_url": image_url})
        }
    }
}

fn wire_tool(tool: &ToolDefinition) -> Value {
    let mut function = json!({"name": tool.name, "parameters": tool.parameters});
    if let Some(description) = &tool.description {
        function["description"] = json!(description);
    }
    if let Some(strict) = tool.strict {
        function["strict"] = json!(strict);
    }
    json!({"type": "function", "function": function})
}

fn wire_tool_choice(choice: &ToolChoice) -> Value {
    match choice {
        ToolChoice::Auto => json!("auto"),
        ToolChoice::None => json!("none"),
        ToolChoice::Required => json!("required"),
        ToolChoice::Tool(name) => json!({"type": "function", "function": {"name": name}}),
    }
}

fn wire_response_format(format: &ResponseFormat) -> Value {
    match format {
        ResponseFormat::Text => json!({"type": "text"}),
        ResponseFormat::JsonObject => json!({"type": "json_object"}),
        ResponseFormat::JsonSchema(spec) => {
            let mut schema =
                json!({"name": spec.name, "schema": spec.schema, "strict": spec.strict});
            if let Some(description) = &spec.description {
                schema["description"] = json!(description);
            }
            json!({"type": "json_schema", "json_schema": schema})
        }
    }
}

fn is_reasoning_model(model: &str) -> bool {
    ["o1", "o3", "o4", "gpt-5"]
        .iter()
        .any(|prefix| model == *prefix || model.starts_with(&format!("{prefix}-")))
}

impl ChatProvider for OpenAiProvider {
    fn retry_policy(&self) -> crate::RetryPolicy {
        self.limits.retry_policy()
    }

    fn kind(&self) -> ProviderKind {
        ProviderKind::OpenAi
    }

    fn check_configured(&self, base_url: Option<&str>) -> Result<(), ProviderError> {
        self.check_key(base_url)
    }

    fn key_count(&self, base_url: Option<&str>) -> usize {
        self.pool_for(base_url).map_or(1, |pool| pool.len())
    }

    fn check_available(&self, base_url: Option<&str>) -> Result<(), ProviderError> {
        self.pool_for(base_url)?.check_available()
    }

    fn key_health(&self) -> Vec<KeyHealth> {
        let now = std::time::Instant::now();
        let mut health = self.configured.health(now);
        let pools = self.pools.read().unwrap_or_else(|p| p.into_inner());
        let mut others: Vec<&Arc<KeyPool>> = pools.values().collect();
        others.sort_by(|a, b| a.endpoint().cmp(b.endpoint()));
        health.extend(others.into_iter().flat_map(|pool| pool.health(now)));
        health
    }

    /// Everything the chat model holds is OpenAI's own vocabulary, passed through as is; a
    /// compatible server that lacks something refuses it itself (an upstream 400).
    fn check_request(&self, _request: &ProviderRequest) -> Result<(), Unsupported> {
        Ok(())
    }

    fn complete<'a>(&'a self, request: &'a ProviderRequest) -> CompletionFuture<'a> {
        async move {
            let endpoint = self.endpoint(request)?;
            let body = Self::body(request, &endpoint, false);
            let call = Call::start(self.limits, request);
            let response = Self::post(&call, &endpoint, &body, &self.secrets()).await?;
            let answer: WireResponse = read_json(&call, response, WireUsage::in_body).await?;
            let reported = answer.usage.as_ref().and_then(WireUsage::usage);
            let Some((choice, message)) = answer
                .choices
                .into_iter()
                .next()
                .and_then(|mut c| c.message.take().map(|m| (c, m)))
            else {
                return Err(ProviderError::BadResponse {
                    message: "the upstream's answer has no choice with a message".to_owned(),
                    usage: reported,
                });
            };
            let finish_reason = choice
                .finish_reason
                .as_deref()
                .map_or(FinishReason::Stop, finish_reason);
            let calls = message.tool_calls.unwrap_or_default().into_iter();
            let tool_calls: Vec<ToolCall> = calls
                .map(|c| ToolCall {
                    id: c.id,
                    name: c.function.name,
                    arguments: c.function.arguments,
                })
                .collect();
            let content = message.content.unwrap_or_default();
            let logprobs = choice.logprobs;
            // Without counts, the arguments the model wrote are output too.
            let written = tool_calls.iter().map(|c| c.arguments.as_str());
            let usage = request.usage_or_estimate(reported, written.chain([content.as_str()]));
            Ok(Completion {
                tool_calls,
                logprobs: logprobs.filter(|l| !l.is_null()),
                content,
                usage,
                finish_reason,
                model: answer.model.unwrap_or_else(|| request.model.clone()),
                wire_content: None,
            })
        }
        .boxed()
    }

    /// `POST {base}/embeddings`, always asking for floats (the door encodes base64 itself, so
    /// what it checks is what it sends on).
    fn embed<'a>(&'a self, request: &'a EmbeddingRequest) -> EmbeddingFuture<'a> {
        async move {
            let endpoint = self.endpoint_at(
                request.base_url.as_deref(),
                &self.embeddings_endpoint,
                "embeddings",
            )?;
            let body = WireEmbeddingRequest {
                model: &request.model,
                input: &request.inputs,
                encoding_format: "float",
                dimensions: request.dimensions,
            };
            let call = Call::embedding(self.limits, request);
            let response = Self::post(&call, &endpoint, &body, &self.secrets()).await?;
            let answer: WireEmbeddings =
                read_json(&call, response, WireEmbeddingUsage::in_body).await?;
            let usage = answer
                .usage
                .as_ref()
                .and_then(|u| count(u.prompt_tokens))
                .map_or_else(
                    || TokenUsage::estimated(request.input_estimate(), 0),
                    |input| TokenUsage::reported(input, 0),
                );
            let vectors = answer
                .data
                .into_iter()
                .map(|item| (Some(item.index), item.embedding))
                .collect();
            Ok(Embeddings {
                vectors: checked_vectors(vectors, request, usage)?,
                usage,
                model: answer.model.unwrap_or_else(|| request.model.clone()),
            })
        }
        .boxed()
    }

    fn stream<'a>(&'a self, request: &'a ProviderRequest) -> EventStreamFuture<'a> {
        async move {
            let endpoint = self.endpoint(request)?;
            let body = Self::body(request, &endpoint, true);
            let call = Call::start(self.limits, request);
            let secrets = self.secrets();
            let response = Self::post(&call, &endpoint, &body, &secrets).await?;
            let secrets: Vec<String> = secrets.into_iter().map(str::to_owned).collect();
            let tally = Tally::new(&request.model, request.prompt_estimate());
            Ok(normalise(
                sse_events(call, response),
                tally,
                move |event, tally| {
                    if event.data.trim() == "[DONE]" {
                        return Ok(Step::Done);
                    }
                    let chunk: WireChunk = parse_data(event)?;
                    if let Some(error) = chunk.error {
                        let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
                        return Err(ProviderError::Upstream {
                            status: None,
                            message: scrub(&error.message, &refs),
                        });
                    }
                    if let Some(model) = chunk.model {
                        tally.model = model;
                    }
                    if let Some(usage) = chunk.usage {
                        tally.input_tokens = count(usage.prompt_tokens);
                        tally.output_tokens = count(usage.completion_tokens);
                        tally.cached_input_tokens = usage.cached_input_tokens();
                        tally.reasoning_tokens = usage.reasoning_tokens();
                    }
                    let Some(choice) = chunk.choices.into_iter().next() else {
                        return Ok(Step::Nothing);
                    };
                    if let Some(reason) = choice.finish_reason.as_deref() {
                        tally.finish = Some(finish_reason(reason));
                    }
                    let Some(delta) = choice.delta else {
                        return Ok(Step::Nothing);
                    };
                    let calls = delta.tool_calls.unwrap_or_default();
                    if calls.is_empty() {
                        return Ok(delta.content.map_or(Step::Nothing, Step::Text));
                    }
                    // A compatible server may send text and whole calls in one chunk.
                    let text = delta.content.into_iter().map(StreamEvent::TextDelta);
                    let calls = calls.into_iter().map(|call| {
                        let function = call.function.unwrap_or_default();
                        StreamEvent::ToolCallDelta(ToolCallDelta {
                            index: call.index,
                            id: call.id,
                            name: function.name,
                            arguments: function.arguments.unwrap_or_default(),
                        })
                    });
                    Ok(Step::Events(text.chain(calls).collect()))
                },
            ))
        }
        .boxed()
    }
}

fn finish_reason(reason: &str) -> FinishReason {
    match reason {
        "stop" => FinishReason::Stop,
        "length" => FinishReason::Length,
        "content_filter" => FinishReason::ContentFilter,
        "tool_calls" | "function_call" => FinishReason::ToolCalls,
        other => FinishReason::Other(other.to_owned()),
    }
}

#[derive(Debug, Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    messages: Vec<WireMessage<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u32>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parallel_tool_calls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<Value>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<f64>,
    /// Token ids as keys (JSON makes them strings, as OpenAI expects).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    logit_bias: &'a BTreeMap<u32, i32>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    logprobs: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_logprobs: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_effort: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct WireMessage<'a> {
    role: &'a str,
    content: WireContent<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<&'a str>,
}

/// A message's content: a string (borrowed from the request), an array of parts, or null.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum WireContent<'a> {
    Text(std::borrow::Cow<'a, str>),
    Parts(Vec<Value>),
    Null,
}

#[derive(Debug, Serialize)]
struct StreamOptions {
    include_usage: bool,
}

#[derive(Debug, Deserialize)]
struct WireResponse {
    model: Option<String>,
    #[serde(default)]
    choices: Vec<WireChoice>,
    usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
struct WireChoice {
    message: Option<WireAnswer>,
    finish_reason: Option<String>,
    /// Present when asked for: `{"content": [...]}`, passed on as is.
    logprobs: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct WireAnswer {
    content: Option<String>,
    tool_calls: Option<Vec<WireToolCall>>,
}

#[derive(Debug, Deserialize)]
struct WireToolCall {
    id: String,
    function: WireFunctionCall,
}

#[derive(Debug, Deserialize)]
struct WireFunctionCall {
    name: String,
    /// JSON text, as the model wrote it.
    #[serde(default)]
    arguments: String,
}

/// Only the usage of a response, read from a body that is otherwise unusable.
#[derive(Debug, Deserialize)]
struct WireUsageOnly {
    usage: Option<WireUsage>,
}

/// `POST /embeddings`.
#[derive(Debug, Serialize)]
struct WireEmbeddingRequest<'a> {
    model: &'a str,
    input: &'a [String],
    encoding_format: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<u32>,
}

/// Its answer. A wrongly typed value anywhere (a string for a number, a missing index) fails
/// the parse: the call is then a bad response, billed by the usage still readable.
#[derive(Debug, Deserialize)]
struct WireEmbeddings {
    data: Vec<WireEmbedding>,
    model: Option<String>,
    usage: Option<WireEmbeddingUsage>,
}

#[derive(Debug, Deserialize)]
struct WireEmbedding {
    index: usize,
    /// A number too large for an `f32` parses to infinity, which the check refuses.
    embedding: Vec<f32>,
}

#[derive(Debug, Deserialize)]
struct WireEmbeddingUsage {
    prompt_tokens: Option<Reported>,
}

#[derive(Deserialize)]
struct WireEmbeddingUsageOnly {
    usage: Option<WireEmbeddingUsage>,
}

impl WireEmbeddingUsage {
    /// The usage `body` reports, if that part of it reads as usage.
    fn in_body(body: &[u8]) -> Option<TokenUsage> {
        let usage = serde_json::from_slice::<WireEmbeddingUsageOnly>(body)
            .ok()?
            .usage?;
        Some(TokenUsage::reported(count(usage.prompt_tokens)?, 0))
    }
}

#[derive(Debug, Deserialize)]
struct WireUsage {
    /// The whole prompt, cached tokens included.
    prompt_tokens: Option<Reported>,
    /// The whole answer, reasoning tokens included.
    completion_tokens: Option<Reported>,
    prompt_tokens_details: Option<WirePromptDetails>,
    completion_tokens_details: Option<WireCompletionDetails>,
}

#[derive(Debug, Deserialize)]
struct WirePromptDetails {
    cached_tokens: Option<Reported>,
}

#[derive(Debug, Deserialize)]
struct WireCompletionDetails {
    reasoning_tokens: Option<Reported>,
}

impl WireUsage {
    fn counts(&self) -> Option<(u32, u32)> {
        Some((count(self.prompt_tokens)?, count(self.completion_tokens)?))
    }

    /// Cache reads (OpenAI has no separately billed cache writes); absent or unusable is 0.
    fn cached_input_tokens(&self) -> u32 {
        self.prompt_tokens_details
            .as_ref()
            .and_then(|d| count(d.cached_tokens))
            .unwrap_or(0)
    }

    /// Reasoning tokens, a subset of `completion_tokens`; absent or unusable is 0.
    fn reasoning_tokens(&self) -> u32 {
        self.completion_tokens_details
            .as_ref()
            .and_then(|d| count(d.reasoning_tokens))
            .unwrap_or(0)
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
        let (input, output) = self.counts()?;
        Some(
            core_domain::TokenUsage::reported(input, output)
                .with_cache(self.cached_input_tokens(), 0)
                .with_reasoning(self.reasoning_tokens()),
        )
    }
}

#[derive(Debug, Deserialize)]
struct WireChunk {
    model: Option<String>,
    #[serde(default)]
    choices: Vec<WireChunkChoice>,
    usage: Option<WireUsage>,
    error: Option<WireError>,
}

#[derive(Debug, Deserialize)]
struct WireChunkChoice {
    delta: Option<WireDelta>,
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireDelta {
    content: Option<String>,
    tool_calls: Option<Vec<WireToolCallChunk>>,
}

/// A piece of a streamed tool call: the first has the id and name, each a fragment of the
/// arguments.
#[derive(Debug, Deserialize)]
struct WireToolCallChunk {
    index: u32,
    id: Option<String>,
    function: Option<WireFunctionChunk>,
}

#[derive(Debug, Default, Deserialize)]
struct WireFunctionChunk {
    name: Option<String>,
    arguments: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireError {
    message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasoning_models_are_recognised_by_family() {
        for m in ["o1", "o1-mini", "o3-mini", "o4-mini", "gpt-5", "gpt-5-mini"] {
            assert!(is_reasoning_model(m), "{m}");
        }
        for m in ["gpt-4o", "gpt-4o-mini", "o10x", "grok-2", "gpt-50"] {
            assert!(!is_reasoning_model(m), "{m}");
        }
    }

    #[test]
    fn chunk_with_only_usage_parses() {
        let chunk: WireChunk = serde_json::from_str(
            r#"{"id":"x","object":"chat.completion.chunk","created":1,"model":"gpt-4o",
                "choices":[],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21}}"#,
        )
        .unwrap();
        assert!(chunk.choices.is_empty());
        assert_eq!(chunk.usage.unwrap().counts(), Some((9, 12)));
    }

    #[test]
    fn absurd_usage_counts_are_unreported_not_a_failure() {
        for usage in [
            r#"{"prompt_tokens": 9, "completion_tokens": 99999999999}"#,
            r#"{"prompt_tokens": -9, "completion_tokens": 12}"#,
            r#"{"prompt_tokens": 9.5, "completion_tokens": 12}"#,
        ] {
            let answer: WireResponse = serde_json::from_str(&format!(
                r#"{{"choices": [{{"message": {{"content": "hi"}}}}], "usage": {usage}}}"#
            ))
            .unwrap();
            assert_eq!(answer.usage.unwrap().counts(), None, "{usage}");
        }
    }
}
