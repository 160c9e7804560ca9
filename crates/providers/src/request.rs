use core_domain::{
    ChatMessage, ChatOptions, ProviderKind, Specialist, TokenUsage, estimate_prompt_tokens,
};

/// Everything a provider needs for one call, independent of the wire format.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderRequest {
    /// The upstream model name.
    pub model: String,
    /// Instructions for the model; each provider places them where its API wants them.
    pub system_prompt: String,
    /// The conversation, oldest first, ending with the message to answer.
    pub messages: Vec<ChatMessage>,
    /// Sampling temperature.
    pub temperature: f64,
    /// The most tokens the answer may have.
    pub max_tokens: u32,
    /// An OpenAI-compatible server to call instead of the configured one.
    pub base_url: Option<String>,
    /// Tools, structured output, sampling: what the caller asked besides the conversation.
    pub options: ChatOptions,
    /// Exactly one HTTP request: no retries and no move to another key, whatever happens (a
    /// router that owns retries across endpoints sets it). False by default.
    pub single_attempt: bool,
    /// When the whole routed call must be over: this call's deadline is the sooner of it and
    /// the upstream's `total_timeout_ms` from now. `None`: the upstream's own.
    pub deadline: Option<std::time::Instant>,
    /// The caller's own Anthropic Messages request, when it came in by that door: an
    /// Anthropic destination sends it on as it came (see [`AnthropicNative`]); every other
    /// destination uses the translation in `messages` and `options`.
    pub anthropic: Option<std::sync::Arc<AnthropicNative>>,
}

/// A caller's Anthropic Messages request, kept as the JSON text it sent, so that an Anthropic
/// upstream receives everything the gateway does not change byte for byte: thinking blocks and
/// their signatures, `redacted_thinking`, `cache_control`, block types the gateway does not
/// know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnthropicNative {
    /// The caller's `system` as it sent it (a JSON string or an array of blocks), placed after
    /// the specialist's system prompt.
    pub system: Option<Box<str>>,
    /// Every other top-level field the caller sent, in its order, each value the JSON text it
    /// sent — all but `model`, `max_tokens`, `stream` and `system`, which the gateway sets.
    pub fields: Vec<(Box<str>, Box<str>)>,
    /// The caller's `anthropic-beta` header, forwarded to the upstream.
    pub beta: Option<Box<str>>,
}

impl ProviderRequest {
    /// The request for asking `specialist` to answer `message` after `history`.
    pub fn for_specialist(
        specialist: &Specialist,
        history: Vec<ChatMessage>,
        message: String,
    ) -> Self {
        let mut messages = history;
        messages.push(ChatMessage::user(message));
        Self {
            model: specialist.model().to_owned(),
            system_prompt: specialist.system_prompt().to_owned(),
            messages,
            temperature: specialist.temperature(),
            max_tokens: specialist.max_tokens(),
            base_url: specialist.base_url().map(str::to_owned),
            options: ChatOptions::default(),
            single_attempt: false,
            deadline: None,
            anthropic: None,
        }
    }
}

impl ProviderRequest {
    /// The first thing in this request that only plain chat lacks — a tool, an image, a tool
    /// call or result, a response format, a sampling parameter — named as the caller's
    /// parameter, or `None` for plain chat. A provider refuses what it does not map.
    pub fn first_beyond_plain_chat(&self) -> Option<&'static str> {
        let o = &self.options;
        let checks: [(&'static str, bool); 13] = [
            ("tools", !o.tools.is_empty()),
            ("tool_choice", o.tool_choice.is_some()),
            ("parallel_tool_calls", o.parallel_tool_calls.is_some()),
            ("response_format", o.response_format.is_some()),
            ("stop", !o.stop.is_empty()),
            ("top_p", o.top_p.is_some()),
            ("seed", o.seed.is_some()),
            ("presence_penalty", o.presence_penalty.is_some()),
            ("frequency_penalty", o.frequency_penalty.is_some()),
            ("logit_bias", !o.logit_bias.is_empty()),
            ("logprobs", o.logprobs || o.top_logprobs.is_some()),
            ("reasoning_effort", o.reasoning_effort.is_some()),
            (
                "messages",
                self.messages.iter().any(|m| {
                    m.has_images() || !m.tool_calls.is_empty() || m.tool_call_id.is_some()
                }),
            ),
        ];
        checks
            .into_iter()
            .find_map(|(param, asked)| asked.then_some(param))
    }

    /// [`Unsupported`] for the first thing beyond plain chat in this request: for a provider
    /// that maps nothing more.
    pub fn plain_chat_only(&self, provider: ProviderKind) -> Result<(), Unsupported> {
        match self.first_beyond_plain_chat() {
            None => Ok(()),
            Some("messages") => Err(Unsupported {
                provider,
                param: "messages",
                what: "images, tool calls or tool results in messages".to_owned(),
            }),
            Some(param) => Err(Unsupported {
                provider,
                param,
                what: format!("'{param}'"),
            }),
        }
    }
}

/// A request asks for something its provider cannot honour: refused before the call, never
/// silently dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {provider} provider does not support {what}")]
pub struct Unsupported {
    /// The provider.
    pub provider: ProviderKind,
    /// The caller's parameter, as the OpenAI door spells it.
    pub param: &'static str,
    /// What is not supported, completing "the provider does not support ...".
    pub what: String,
}

impl ProviderRequest {
    /// The prompt's estimated input tokens (system prompt and every message).
    pub fn prompt_estimate(&self) -> u32 {
        estimate_prompt_tokens(&self.system_prompt, &self.messages)
    }

    /// The upstream's reported usage, or, when it reported none, an estimate from the prompt
    /// and what the model `wrote` (its text and every tool call's arguments), flagged as
    /// estimated. The pieces are only read when there is something to estimate.
    pub(crate) fn usage_or_estimate<'a>(
        &self,
        reported: Option<TokenUsage>,
        wrote: impl IntoIterator<Item = &'a str>,
    ) -> TokenUsage {
        match reported {
            Some(usage) => usage,
            None => {
                // The pieces' characters together, four to a token as `estimate_text_tokens`
                // counts them (per piece, the rounding would differ).
                let chars: usize = wrote.into_iter().map(|piece| piece.chars().count()).sum();
                let output = u32::try_from(chars.div_ceil(4)).unwrap_or(u32::MAX);
                TokenUsage::estimated(self.prompt_estimate(), output)
            }
        }
    }
}
