//! The Chat Completions request, as OpenAI's reference defines it, and how it maps onto a
//! specialist.

use core_domain::{ChatMessage, Role, Specialist, SpecialistId, ValidationErrors};
use providers::ProviderRequest;
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::ChatLimits;

/// `POST /v1/chat/completions`. Fields the gateway does not use (`top_p`, `user`, `seed`,
/// ...) are accepted and ignored, as OpenAI SDKs send some by default; fields that would
/// change the answer's shape in ways a specialist cannot honour (`n > 1`, tools) are refused.
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
    tools: Option<Value>,
    functions: Option<Value>,
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
}

/// A message's content: a string, or an array of parts of which only text is supported.
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
}

/// A validated request: which specialist, the conversation, and the caller's own limits.
#[derive(Debug)]
pub(crate) struct Completion {
    /// The model asked for; `None` when it cannot be a specialist id (then no such model).
    pub specialist_id: Option<SpecialistId>,
    pub model: String,
    /// System (and developer) messages of the caller, added after the specialist's prompt.
    system: Vec<String>,
    messages: Vec<ChatMessage>,
    temperature: Option<f64>,
    max_tokens: Option<u32>,
    pub include_usage: bool,
}

impl CompletionRequest {
    /// Checks the request, reporting every problem at once (as `messages[2].content`, ...).
    pub(crate) fn validate(self, limits: &ChatLimits) -> Result<Completion, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        let specialist_id = SpecialistId::parse(self.model.clone()).ok();
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
        // Null or an empty list means no tools (some SDKs always send `tools: []`).
        let asks_for_tools = |v: &Option<serde_json::Value>| {
            v.as_ref()
                .is_some_and(|v| !v.is_null() && v.as_array().is_none_or(|a| !a.is_empty()))
        };
        if asks_for_tools(&self.tools) || asks_for_tools(&self.functions) {
            errors.push("tools", "tool and function calling are not supported");
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

        let mut system = Vec::new();
        let mut messages = Vec::with_capacity(self.messages.len());
        for (i, message) in self.messages.into_iter().enumerate() {
            let text = match message.content {
                None => String::new(),
                Some(Content::Text(text)) => text,
                Some(Content::Parts(parts)) => {
                    let mut text = String::new();
                    for (j, part) in parts.into_iter().enumerate() {
                        match (part.kind.as_str(), part.text) {
                            ("text", Some(t)) => text.push_str(&t),
                            _ => errors.push(
                                format!("messages[{i}].content[{j}]"),
                                "only text content parts are supported",
                            ),
                        }
                    }
                    text
                }
            };
            if text.chars().count() > limits.max_message_chars {
                errors.push(
                    format!("messages[{i}].content"),
                    format!("must be at most {} characters", limits.max_message_chars),
                );
            }
            match message.role.as_str() {
                // "developer" is OpenAI's newer name for system instructions.
                "system" | "developer" => system.push(text),
                "user" => messages.push(ChatMessage::user(text)),
                "assistant" => messages.push(ChatMessage::assistant(text)),
                _ => errors.push(
                    format!("messages[{i}].role"),
                    "must be system, developer, user or assistant",
                ),
            }
        }
        if errors.is_empty() && messages.last().is_none_or(|m| m.role != Role::User) {
            errors.push("messages", "must end with a user message");
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Completion {
            specialist_id,
            model: self.model,
            system,
            messages,
            temperature: self.temperature,
            max_tokens,
            include_usage: self.stream_options.is_some_and(|o| o.include_usage),
        })
    }
}

impl Completion {
    /// The request to the specialist's upstream.
    ///
    /// The specialist's system prompt always applies; the caller's system messages follow it.
    /// The caller's `temperature` and `max_tokens` may lower the specialist's, never raise
    /// them: the effective value is the smaller of the two.
    pub(crate) fn into_request(self, specialist: &Specialist) -> ProviderRequest {
        let mut system_prompt = specialist.system_prompt().to_owned();
        for extra in self.system.iter().filter(|s| !s.trim().is_empty()) {
            system_prompt.push_str("\n\n");
            system_prompt.push_str(extra);
        }
        ProviderRequest {
            model: specialist.model().to_owned(),
            system_prompt,
            messages: self.messages,
            temperature: self.temperature.map_or(specialist.temperature(), |t| {
                t.min(specialist.temperature())
            }),
            max_tokens: self
                .max_tokens
                .map_or(specialist.max_tokens(), |n| n.min(specialist.max_tokens())),
            base_url: specialist.base_url().map(str::to_owned),
            options: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use core_domain::SpecialistDraft;

    use super::*;

    fn parse(json: Value) -> Result<Completion, Vec<String>> {
        serde_json::from_value::<CompletionRequest>(json)
            .unwrap()
            .validate(&ChatLimits::default())
            .map_err(|e| e.errors().iter().map(|e| e.field.clone()).collect())
    }

    fn specialist(temperature: f64, max_tokens: i64) -> Specialist {
        let spec = SpecialistDraft {
            name: "S".into(),
            description: String::new(),
            provider: "mock".into(),
            model: "m".into(),
            base_url: None,
            system_prompt: "Be the specialist.".into(),
            temperature,
            max_tokens,
            pricing: None,
        }
        .validate()
        .unwrap();
        Specialist::new(SpecialistId::parse("s").unwrap(), spec, Utc::now())
    }

    #[test]
    fn caller_limits_lower_but_never_raise_the_specialist_s() {
        let s = specialist(0.5, 1000);
        let lower = parse(
            serde_json::json!({"model": "s", "temperature": 0.1, "max_tokens": 10,
            "messages": [{"role": "user", "content": "hi"}]}),
        )
        .unwrap()
        .into_request(&s);
        assert_eq!((lower.temperature, lower.max_tokens), (0.1, 10));
        let higher = parse(serde_json::json!({"model": "s", "temperature": 1.9,
            "max_completion_tokens": 100000, "messages": [{"role": "user", "content": "hi"}]}))
        .unwrap()
        .into_request(&s);
        assert_eq!((higher.temperature, higher.max_tokens), (0.5, 1000));
        let unset = parse(serde_json::json!({"model": "s",
            "messages": [{"role": "user", "content": "hi"}]}))
        .unwrap()
        .into_request(&s);
        assert_eq!((unset.temperature, unset.max_tokens), (0.5, 1000));
    }

    #[test]
    fn system_messages_follow_the_specialist_s_prompt_and_parts_join() {
        let request = parse(serde_json::json!({"model": "s", "messages": [
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": [{"type": "text", "text": "Bon"}, {"type": "text", "text": "jour"}]},
            {"role": "assistant", "content": "Salut"},
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": "Encore ?"}
        ]}))
        .unwrap()
        .into_request(&specialist(0.5, 100));
        assert_eq!(
            request.system_prompt,
            "Be the specialist.\n\nAnswer in French.\n\nBe brief."
        );
        assert_eq!(
            request.messages,
            [
                ChatMessage::user("Bonjour"),
                ChatMessage::assistant("Salut"),
                ChatMessage::user("Encore ?")
            ]
        );
    }

    #[test]
    fn unsupported_features_and_bad_values_are_listed() {
        let fields = parse(serde_json::json!({"model": "bad model", "temperature": 3, "n": 2,
            "max_tokens": 0, "tools": [{"type": "function"}],
            "messages": [{"role": "tool", "content": "x"},
                         {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}))
        .unwrap_err();
        assert_eq!(
            fields,
            [
                "temperature",
                "max_tokens",
                "n",
                "tools",
                "messages[0].role",
                "messages[1].content[0]"
            ]
        );
        assert_eq!(
            parse(serde_json::json!({"model": "s", "messages": []})).unwrap_err(),
            ["messages"]
        );
        // No tools, however an SDK spells it, is fine.
        for none in [serde_json::json!(null), serde_json::json!([])] {
            assert!(
                parse(
                    serde_json::json!({"model": "s", "tools": none, "functions": none,
                    "messages": [{"role": "user", "content": "x"}]})
                )
                .is_ok()
            );
        }
        assert_eq!(
            parse(
                serde_json::json!({"model": "s", "functions": [{"name": "f"}],
                "messages": [{"role": "user", "content": "x"}]})
            )
            .unwrap_err(),
            ["tools"]
        );
        assert_eq!(
            parse(serde_json::json!({"model": "s", "messages": [{"role": "assistant", "content": "x"}]}))
                .unwrap_err(),
            ["messages"]
        );
    }
}
