//! The provider request a door's validated call becomes for its specialist.

use core_domain::{ChatMessage, ChatOptions, Specialist};
use providers::ProviderRequest;

/// The request to `specialist`'s upstream for a conversation a door translated (the OpenAI
/// doors; the Messages door for a specialist not on Anthropic):
/// the specialist's prompt first, then the caller's `system` texts; the caller's temperature
/// and token limit may lower the specialist's, never raise them (see [`effective_limits`]).
pub(crate) fn provider_request(
    specialist: &Specialist,
    system: &[String],
    messages: Vec<ChatMessage>,
    temperature: Option<f64>,
    max_tokens: Option<u32>,
    options: ChatOptions,
) -> ProviderRequest {
    let mut system_prompt = specialist.system_prompt().to_owned();
    for extra in system.iter().filter(|s| !s.trim().is_empty()) {
        system_prompt.push_str("\n\n");
        system_prompt.push_str(extra);
    }
    let (temperature, max_tokens) = effective_limits(specialist, temperature, max_tokens);
    ProviderRequest {
        model: specialist.model().to_owned(),
        system_prompt,
        messages,
        temperature,
        max_tokens,
        base_url: specialist.base_url().map(str::to_owned),
        options,
        single_attempt: false,
        deadline: None,
        anthropic: None,
    }
}

/// The temperature and token limit a call to `specialist` runs with: the smaller of the
/// caller's and the specialist's, the specialist's when the caller said nothing.
pub(crate) fn effective_limits(
    specialist: &Specialist,
    temperature: Option<f64>,
    max_tokens: Option<u32>,
) -> (f64, u32) {
    (
        temperature.map_or(specialist.temperature(), |t| {
            t.min(specialist.temperature())
        }),
        max_tokens.map_or(specialist.max_tokens(), |n| n.min(specialist.max_tokens())),
    )
}
