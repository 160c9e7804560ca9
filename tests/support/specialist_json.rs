//! Specialists written as the catalogue file (and `POST /specialists`) takes them, so a test
//! states the fields it is about instead of repeating a JSON literal of the whole catalogue.

use serde_json::{Value, json};

/// A specialist `id` on `provider`'s `model` with `system_prompt` and the fields of `extra`
/// (an object: `temperature`, `pricing`, ...) on top; its name is its id, capitalised.
pub fn specialist(
    id: &str,
    provider: &str,
    model: &str,
    system_prompt: &str,
    extra: Value,
) -> Value {
    let mut name = id.to_owned();
    if let Some(first) = name.get_mut(..1) {
        first.make_ascii_uppercase();
    }
    let mut specialist = json!({
        "id": id, "name": name, "provider": provider, "model": model,
        "system_prompt": system_prompt,
    });
    let (Some(fields), Some(extra)) = (specialist.as_object_mut(), extra.as_object()) else {
        panic!("extra fields are a JSON object: {extra}");
    };
    fields.extend(extra.clone());
    specialist
}

/// The text of a catalogue file holding `specialists`.
pub fn catalogue(specialists: impl IntoIterator<Item = Value>) -> String {
    json!({"specialists": specialists.into_iter().collect::<Vec<_>>()}).to_string()
}

/// One specialist per real provider, `analyst` (OpenAI), `reviewer` (Anthropic) and `gemini`
/// (Google), each with its own temperature and token limit.
pub fn one_per_provider() -> [Value; 3] {
    [
        specialist(
            "analyst",
            "openai",
            "gpt-4o",
            "Analyse.",
            json!({"temperature": 0.3, "max_tokens": 300}),
        ),
        specialist(
            "reviewer",
            "anthropic",
            "claude-3-sonnet",
            "Review.",
            json!({"temperature": 0.2, "max_tokens": 400}),
        ),
        specialist(
            "gemini",
            "google",
            "gemini-2.0-flash",
            "Help.",
            json!({"temperature": 0.5, "max_tokens": 500}),
        ),
    ]
}
