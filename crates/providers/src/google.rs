//! Google Gemini `generateContent` and `streamGenerateContent`.

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

/// The `google` provider. The key travels in the `x-goog-api-key` header, never in the URL
/// (URLs end up in logs).
#[derive(Debug)]
pub struct GoogleProvider {
    transport: Transport,
    base_url: String,
    api_key: Option<SecretString>,
    limits: CallLimits,
}

impl GoogleProvider {
    pub(crate) fn new(
        config: &ProvidersConfig,
        transport: Transport,
        sleeper: &'static dyn Sleeper,
    ) -> Self {
        Self {
            transport,
            base_url: config
                .google
                .base_url
                .trim()
                .trim_end_matches('/')
                .to_owned(),
            api_key: config.google.api_key.clone(),
            limits: config.google.limits(config, sleeper),
        }
    }

    fn key(&self) -> Result<&SecretString, ProviderError> {
        required_key(self.api_key.as_ref(), ProviderKind::Google)
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

    fn body(request: &ProviderRequest) -> WireRequest<'_> {
        let mut system: Vec<WirePart<'_>> = Vec::new();
        if !request.system_prompt.is_empty() {
            system.push(WirePart {
                text: request.system_prompt.as_str().into(),
            });
        }
        let mut contents = Vec::with_capacity(request.messages.len());
        for m in &request.messages {
            let role = match m.role {
                Role::System => {
                    system.push(WirePart {
                        text: m.text().into(),
                    });
                    continue;
                }
                // Tool results are refused by `check_request` until they are mapped.
                Role::User | Role::Tool => "user",
                Role::Assistant => "model",
            };
            contents.push(WireContent {
                role,
                parts: vec![WirePart {
                    text: m.text().into(),
                }],
            });
        }
        WireRequest {
            contents,
            system_instruction: (!system.is_empty()).then_some(WireSystem { parts: system }),
            generation_config: WireGenerationConfig {
                temperature: request.temperature,
                max_output_tokens: request.max_tokens,
            },
        }
    }

    /// POSTs `body` to `url` as [`send`] does (retries, time limits, the key kept out of errors).
    async fn post(
        &self,
        call: &Call,
        url: &str,
        key: &SecretString,
        body: &WireRequest<'_>,
    ) -> Result<reqwest::Response, ProviderError> {
        let build = || {
            self.transport
                .client(true)
                .post(url)
                .header("x-goog-api-key", secret_header(key))
                .json(body)
        };
        send(call, ProviderKind::Google, &[key.expose_secret()], build).await
    }
}

/// Text of a candidate's parts, leaving out the model's thoughts.
fn candidate_text(candidate: &WireCandidate) -> String {
    candidate
        .content
        .as_ref()
        .map(|c| {
            c.parts
                .iter()
                .filter(|p| !p.thought.unwrap_or(false))
                .filter_map(|p| p.text.as_deref())
                .collect()
        })
        .unwrap_or_default()
}

impl ChatProvider for GoogleProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Google
    }

    fn check_configured(&self, _base_url: Option<&str>) -> Result<(), ProviderError> {
        self.key().map(drop)
    }

    fn complete<'a>(&'a self, request: &'a ProviderRequest) -> CompletionFuture<'a> {
        async move {
            let key = self.key()?;
            let body = Self::body(request);
            let url = self.url(&request.model, "generateContent");
            let call = Call::start(self.limits);
            let response = self.post(&call, &url, key, &body).await?;
            let answer: WireResponse = read_json(&call, response).await?;
            let candidate = answer.candidates.first();
            let content = candidate.map(candidate_text).unwrap_or_default();
            let finish_reason = match candidate.and_then(|c| c.finish_reason.as_deref()) {
                Some(reason) => finish_reason(reason),
                // No candidate at all: the prompt itself was blocked.
                None if candidate.is_none() => FinishReason::ContentFilter,
                None => FinishReason::Stop,
            };
            let reported = answer.usage_metadata.as_ref().and_then(WireUsage::counts);
            let usage = request.usage_or_estimate(reported, &content);
            Ok(Completion {
                tool_calls: Vec::new(),
                logprobs: None,
                content,
                usage,
                finish_reason,
                model: answer
                    .model_version
                    .unwrap_or_else(|| request.model.clone()),
            })
        }
        .boxed()
    }

    fn stream<'a>(&'a self, request: &'a ProviderRequest) -> EventStreamFuture<'a> {
        async move {
            let key = self.key()?;
            let body = Self::body(request);
            let url = format!(
                "{}?alt=sse",
                self.url(&request.model, "streamGenerateContent")
            );
            let call = Call::start(self.limits);
            let response = self.post(&call, &url, key, &body).await?;
            let secret = key.expose_secret().to_owned();
            let tally = Tally::new(&request.model, request.prompt_estimate());
            Ok(normalise(
                sse_events(call, response),
                tally,
                move |event, tally| {
                    let chunk: WireResponse = parse_data(event)?;
                    if let Some(error) = chunk.error {
                        return Err(ProviderError::Upstream {
                            status: None,
                            message: scrub(&error.message, &[&secret]),
                        });
                    }
                    if let Some(model) = chunk.model_version {
                        tally.model = model;
                    }
                    if let Some(usage) = &chunk.usage_metadata {
                        tally.input_tokens = count(usage.prompt_token_count).or(tally.input_tokens);
                        if usage.candidates_token_count.is_some() {
                            tally.output_tokens = usage.counts().map(|(_, output)| output);
                        }
                    }
                    let Some(candidate) = chunk.candidates.first() else {
                        return Ok(Step::Nothing);
                    };
                    if let Some(reason) = candidate.finish_reason.as_deref() {
                        tally.finish = Some(finish_reason(reason));
                    }
                    Ok(Step::Text(candidate_text(candidate)))
                },
            ))
        }
        .boxed()
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
    generation_config: WireGenerationConfig,
}

#[derive(Debug, Serialize)]
struct WireContent<'a> {
    role: &'a str,
    parts: Vec<WirePart<'a>>,
}

#[derive(Debug, Serialize)]
struct WireSystem<'a> {
    parts: Vec<WirePart<'a>>,
}

#[derive(Debug, Serialize)]
struct WirePart<'a> {
    text: std::borrow::Cow<'a, str>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct WireGenerationConfig {
    temperature: f64,
    max_output_tokens: u32,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireResponse {
    #[serde(default)]
    candidates: Vec<WireCandidate>,
    usage_metadata: Option<WireUsage>,
    model_version: Option<String>,
    error: Option<WireError>,
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
struct WireAnswerPart {
    text: Option<String>,
    thought: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireUsage {
    prompt_token_count: Option<Reported>,
    candidates_token_count: Option<Reported>,
    thoughts_token_count: Option<Reported>,
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
