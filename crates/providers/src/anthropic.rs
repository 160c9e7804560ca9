//! Anthropic Messages.

use core_domain::{Completion, FinishReason, ProviderKind, Role};
use futures_util::FutureExt;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::config::CallLimits;
use crate::registry::required_key;
use crate::streaming::{Step, Tally, normalise, parse_data};
use crate::token_count::{Reported, count};
use crate::transport::Sleeper;
use crate::transport::{Call, Transport, read_json, secret_header, send, sse_events};
use crate::upstream_error::scrub;
use crate::{
    ChatProvider, CompletionFuture, EventStreamFuture, ProviderError, ProviderRequest,
    ProvidersConfig,
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
    api_key: Option<SecretString>,
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
            api_key: config.anthropic.api_key.clone(),
            limits: config.anthropic.limits(config, sleeper),
        }
    }

    fn key(&self) -> Result<&SecretString, ProviderError> {
        required_key(self.api_key.as_ref(), ProviderKind::Anthropic)
    }

    fn endpoint(&self) -> Result<reqwest::Url, ProviderError> {
        self.endpoint
            .clone()
            .map_err(|message| ProviderError::Setup { message })
    }

    /// System text goes in its own field: the specialist's prompt, then any system messages of
    /// the conversation (Anthropic has no system role in `messages`).
    fn body(request: &ProviderRequest, stream: bool) -> WireRequest<'_> {
        let mut system: Vec<String> = Vec::new();
        if !request.system_prompt.is_empty() {
            system.push(request.system_prompt.clone());
        }
        let mut messages = Vec::with_capacity(request.messages.len());
        for m in &request.messages {
            match m.role {
                Role::System => system.push(m.text()),
                // Tool results are refused by `check_request` until they are mapped.
                Role::User | Role::Tool => messages.push(WireMessage {
                    role: Role::User.as_str(),
                    content: m.text().into(),
                }),
                Role::Assistant => messages.push(WireMessage {
                    role: m.role.as_str(),
                    content: m.text().into(),
                }),
            }
        }
        WireRequest {
            model: &request.model,
            max_tokens: request.max_tokens,
            system: (!system.is_empty()).then(|| system.join("\n\n")),
            messages,
            temperature: request.temperature.min(MAX_TEMPERATURE),
            stream,
        }
    }

    /// POSTs `body` to `url` as [`send`] does (retries, time limits, the key kept out of errors).
    async fn post(
        &self,
        call: &Call,
        url: &reqwest::Url,
        key: &SecretString,
        body: &WireRequest<'_>,
    ) -> Result<reqwest::Response, ProviderError> {
        let build = || {
            self.transport
                .client(true)
                .post(url.clone())
                .header("x-api-key", secret_header(key))
                .header("anthropic-version", ANTHROPIC_VERSION)
                .json(body)
        };
        send(call, ProviderKind::Anthropic, &[key.expose_secret()], build).await
    }
}

impl ChatProvider for AnthropicProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Anthropic
    }

    fn check_configured(&self, _base_url: Option<&str>) -> Result<(), ProviderError> {
        self.key().map(drop)
    }

    fn complete<'a>(&'a self, request: &'a ProviderRequest) -> CompletionFuture<'a> {
        async move {
            let key = self.key()?;
            let body = Self::body(request, false);
            let call = Call::start(self.limits);
            let url = self.endpoint()?;
            let response = self.post(&call, &url, key, &body).await?;
            let answer: WireResponse = read_json(&call, response).await?;
            let content: String = answer
                .content
                .iter()
                .filter(|block| block.kind == "text")
                .filter_map(|block| block.text.as_deref())
                .collect();
            let reported = answer
                .usage
                .and_then(|u| Some((count(u.input_tokens)?, count(u.output_tokens)?)));
            let usage = request.usage_or_estimate(reported, &content);
            Ok(Completion {
                tool_calls: Vec::new(),
                logprobs: None,
                content,
                usage,
                finish_reason: answer
                    .stop_reason
                    .as_deref()
                    .map_or(FinishReason::Stop, stop_reason),
                model: answer.model.unwrap_or_else(|| request.model.clone()),
            })
        }
        .boxed()
    }

    fn stream<'a>(&'a self, request: &'a ProviderRequest) -> EventStreamFuture<'a> {
        async move {
            let key = self.key()?;
            let body = Self::body(request, true);
            let call = Call::start(self.limits);
            let url = self.endpoint()?;
            let response = self.post(&call, &url, key, &body).await?;
            let secret = key.expose_secret().to_owned();
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
                                    tally.input_tokens = count(usage.input_tokens);
                                }
                            }
                            Ok(Step::Nothing)
                        }
                        "content_block_delta" => Ok(data
                            .delta
                            .filter(|d| d.kind.as_deref() == Some("text_delta"))
                            .and_then(|d| d.text)
                            .map_or(Step::Nothing, Step::Text)),
                        "message_delta" => {
                            if let Some(reason) =
                                data.delta.as_ref().and_then(|d| d.stop_reason.as_deref())
                            {
                                tally.finish = Some(stop_reason(reason));
                            }
                            if let Some(output) = data.usage.and_then(|u| count(u.output_tokens)) {
                                tally.output_tokens = Some(output);
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
                                &[&secret],
                            ),
                        }),
                        // ping, content_block_start/stop, and event types added later.
                        _ => Ok(Step::Nothing),
                    }
                },
            ))
        }
        .boxed()
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
    temperature: f64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
}

#[derive(Debug, Serialize)]
struct WireMessage<'a> {
    role: &'a str,
    content: std::borrow::Cow<'a, str>,
}

#[derive(Debug, Deserialize)]
struct WireResponse {
    model: Option<String>,
    #[serde(default)]
    content: Vec<WireBlock>,
    stop_reason: Option<String>,
    usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
struct WireBlock {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireUsage {
    input_tokens: Option<Reported>,
    output_tokens: Option<Reported>,
}

#[derive(Debug, Deserialize)]
struct WireEvent {
    #[serde(rename = "type")]
    kind: String,
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
}
