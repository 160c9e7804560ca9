use core_domain::{
    ChatMessage, Specialist, TokenUsage, estimate_prompt_tokens, estimate_text_tokens,
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
        }
    }
}

impl ProviderRequest {
    /// The prompt's estimated input tokens (system prompt and every message).
    pub fn prompt_estimate(&self) -> u32 {
        estimate_prompt_tokens(&self.system_prompt, &self.messages)
    }

    /// The upstream's `(input, output)` counts, or, when it reported none, an estimate from the
    /// prompt and `answer`, flagged as estimated.
    pub(crate) fn usage_or_estimate(
        &self,
        reported: Option<(u32, u32)>,
        answer: &str,
    ) -> TokenUsage {
        match reported {
            Some((input, output)) => TokenUsage::reported(input, output),
            None => TokenUsage::estimated(self.prompt_estimate(), estimate_text_tokens(answer)),
        }
    }
}
