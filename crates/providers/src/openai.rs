//! OpenAI Chat Completions, and every server that speaks it (xAI, vLLM, Ollama, llama.cpp).

use core_domain::{Completion, FinishReason, ProviderKind, Role};
use futures_util::FutureExt;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::config::CallLimits;
use crate::registry::required_key;
use crate::streaming::{Step, Tally, normalise, parse_data};
use crate::token_count::{Reported, count};
use crate::transport::Sleeper;
use crate::transport::{Call, Transport, read_json, send, sse_events};
use crate::upstream_error::scrub;
use crate::{
    ChatProvider, CompletionFuture, EventStreamFuture, ProviderError, ProviderRequest,
    ProvidersConfig,
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
    api_key: Option<SecretString>,
    xai_key: Option<SecretString>,
    compatible: Vec<(String, SecretString)>,
    allowed_http: Vec<String>,
    limits: CallLimits,
}

/// Where one request goes.
struct Endpoint<'a> {
    url: reqwest::Url,
    key: Option<&'a SecretString>,
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
        let endpoint = format!("{}/chat/completions", trim(&config.openai.base_url));
        Self {
            transport,
            endpoint: reqwest::Url::parse(&endpoint)
                .map_err(|e| format!("providers.openai.base_url is not a URL: {e}")),
            api_key: config.openai.api_key.clone(),
            xai_key: config.xai.api_key.clone(),
            compatible: config
                .openai_compatible
                .iter()
                .map(|c| (trim(&c.base_url), c.api_key.clone()))
                .collect(),
            allowed_http: config
                .allowed_http_base_urls
                .iter()
                .map(|u| trim(u))
                .collect(),
            limits: config.openai.limits(config, sleeper),
        }
    }

    /// The key a call to `base_url` sends (see the type's doc for the routing), or
    /// [`ProviderError::NotConfigured`] when the key it needs is missing.
    fn key_for(&self, base_url: Option<&str>) -> Result<Option<&SecretString>, ProviderError> {
        let Some(base) = base_url.map(|u| u.trim_end_matches('/')) else {
            return required_key(self.api_key.as_ref(), ProviderKind::OpenAi).map(Some);
        };
        let host = url::Url::parse(base)
            .ok()
            .and_then(|u| u.host_str().map(str::to_ascii_lowercase));
        if host.as_deref() == Some(XAI_HOST) {
            return self
                .xai_key
                .as_ref()
                .map(Some)
                .ok_or(ProviderError::NotConfigured {
                    provider: ProviderKind::OpenAi,
                    env_var: "XAI_API_KEY",
                    config_key: "providers.xai.api_key",
                });
        }
        Ok(self
            .compatible
            .iter()
            .find(|(url, _)| url == base)
            .map(|(_, key)| key))
    }

    fn endpoint(&self, request: &ProviderRequest) -> Result<Endpoint<'_>, ProviderError> {
        let key = self.key_for(request.base_url.as_deref())?;
        let Some(base) = request.base_url.as_deref().map(|u| u.trim_end_matches('/')) else {
            let url = self
                .endpoint
                .clone()
                .map_err(|message| ProviderError::Setup { message })?;
            return Ok(Endpoint {
                url,
                key,
                client: self.transport.client(true),
                is_configured: true,
            });
        };
        let url = reqwest::Url::parse(&format!("{base}/chat/completions")).map_err(|e| {
            ProviderError::InvalidRequest {
                status: 0,
                message: format!("the specialist's base_url is not a URL: {e}"),
            }
        })?;
        Ok(Endpoint {
            url,
            key,
            client: self
                .transport
                .client(self.allowed_http.iter().any(|u| u == base)),
            is_configured: false,
        })
    }

    fn body<'a>(
        request: &'a ProviderRequest,
        endpoint: &Endpoint<'_>,
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
                content: request.system_prompt.as_str().into(),
            });
        }
        messages.extend(request.messages.iter().map(|m| WireMessage {
            role: m.role.as_str(),
            content: m.text().into(),
        }));
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
        }
    }

    /// POSTs `body` to `endpoint` as [`send`] does (retries, time limits, `secrets` kept out
    /// of errors).
    async fn post(
        call: &Call,
        endpoint: &Endpoint<'_>,
        body: &WireRequest<'_>,
        secrets: &[&str],
    ) -> Result<reqwest::Response, ProviderError> {
        let build = || {
            let builder = endpoint.client.post(endpoint.url.clone()).json(body);
            match endpoint.key {
                Some(key) => builder.bearer_auth(key.expose_secret()),
                None => builder,
            }
        };
        send(call, ProviderKind::OpenAi, secrets, build).await
    }

    fn secrets(&self) -> Vec<&str> {
        [&self.api_key, &self.xai_key]
            .into_iter()
            .flatten()
            .chain(self.compatible.iter().map(|(_, k)| k))
            .map(ExposeSecret::expose_secret)
            .collect()
    }
}

fn is_reasoning_model(model: &str) -> bool {
    ["o1", "o3", "o4", "gpt-5"]
        .iter()
        .any(|prefix| model == *prefix || model.starts_with(&format!("{prefix}-")))
}

impl ChatProvider for OpenAiProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::OpenAi
    }

    fn check_configured(&self, base_url: Option<&str>) -> Result<(), ProviderError> {
        self.key_for(base_url).map(drop)
    }

    fn complete<'a>(&'a self, request: &'a ProviderRequest) -> CompletionFuture<'a> {
        async move {
            let endpoint = self.endpoint(request)?;
            let body = Self::body(request, &endpoint, false);
            let call = Call::start(self.limits);
            let response = Self::post(&call, &endpoint, &body, &self.secrets()).await?;
            let answer: WireResponse = read_json(&call, response).await?;
            let choice = answer.choices.into_iter().next();
            let finish_reason = choice
                .as_ref()
                .and_then(|c| c.finish_reason.as_deref())
                .map_or(FinishReason::Stop, finish_reason);
            let content = choice
                .and_then(|c| c.message)
                .and_then(|m| m.content)
                .unwrap_or_default();
            let reported = answer.usage.as_ref().and_then(WireUsage::counts);
            let usage = request.usage_or_estimate(reported, &content);
            Ok(Completion {
                tool_calls: Vec::new(),
                logprobs: None,
                content,
                usage,
                finish_reason,
                model: answer.model.unwrap_or_else(|| request.model.clone()),
            })
        }
        .boxed()
    }

    fn stream<'a>(&'a self, request: &'a ProviderRequest) -> EventStreamFuture<'a> {
        async move {
            let endpoint = self.endpoint(request)?;
            let body = Self::body(request, &endpoint, true);
            let call = Call::start(self.limits);
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
                    }
                    let Some(choice) = chunk.choices.into_iter().next() else {
                        return Ok(Step::Nothing);
                    };
                    if let Some(reason) = choice.finish_reason.as_deref() {
                        tally.finish = Some(finish_reason(reason));
                    }
                    Ok(choice
                        .delta
                        .and_then(|d| d.content)
                        .map_or(Step::Nothing, Step::Text))
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
}

#[derive(Debug, Serialize)]
struct WireMessage<'a> {
    role: &'a str,
    content: std::borrow::Cow<'a, str>,
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
}

#[derive(Debug, Deserialize)]
struct WireAnswer {
    content: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireUsage {
    prompt_tokens: Option<Reported>,
    completion_tokens: Option<Reported>,
}

impl WireUsage {
    fn counts(&self) -> Option<(u32, u32)> {
        Some((count(self.prompt_tokens)?, count(self.completion_tokens)?))
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
