use core_domain::{ChatMessage, Role, SpecialistId, ValidationErrors};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::ChatLimits;

/// The body of `POST /chat/send` and `POST /chat/stream`, as the original service defined it.
///
/// Roles are read as text so that a wrong one is a field error in the 422 list, not a parse
/// failure.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct ChatRequestBody {
    specialist_id: String,
    message: String,
    #[serde(default)]
    conversation_history: Option<Vec<HistoryMessage>>,
}

/// One earlier message: `role` is `user` or `assistant`.
#[derive(Debug, Deserialize, ToSchema)]
struct HistoryMessage {
    role: String,
    content: String,
}

/// A chat request that passed validation.
#[derive(Debug)]
pub(crate) struct ChatInput {
    pub specialist_id: SpecialistId,
    pub message: String,
    pub history: Vec<ChatMessage>,
}

impl ChatRequestBody {
    /// Checks every rule and reports all broken ones at once.
    pub(crate) fn validate(self, limits: &ChatLimits) -> Result<ChatInput, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        let specialist_id = SpecialistId::parse(self.specialist_id)
            .map_err(|e| errors.push("specialist_id", e.to_string()))
            .ok();

        if self.message.trim().is_empty() {
            errors.push("message", "must not be empty");
        } else if self.message.chars().count() > limits.max_message_chars {
            errors.push(
                "message",
                format!("must be at most {} characters", limits.max_message_chars),
            );
        }

        let raw_history = self.conversation_history.unwrap_or_default();
        if raw_history.len() > limits.max_history_messages {
            errors.push(
                "conversation_history",
                format!("must have at most {} messages", limits.max_history_messages),
            );
        }
        let mut history = Vec::with_capacity(raw_history.len());
        for (i, entry) in raw_history.into_iter().enumerate() {
            let role = match entry.role.as_str() {
                "user" => Some(Role::User),
                "assistant" => Some(Role::Assistant),
                _ => {
                    errors.push(
                        format!("conversation_history[{i}].role"),
                        "must be \"user\" or \"assistant\" (the specialist supplies the system prompt)",
                    );
                    None
                }
            };
            if entry.content.chars().count() > limits.max_message_chars {
                errors.push(
                    format!("conversation_history[{i}].content"),
                    format!("must be at most {} characters", limits.max_message_chars),
                );
            }
            if let Some(role) = role {
                history.push(match role {
                    Role::Assistant => ChatMessage::assistant(entry.content),
                    _ => ChatMessage::user(entry.content),
                });
            }
        }

        match specialist_id {
            Some(specialist_id) if errors.is_empty() => Ok(ChatInput {
                specialist_id,
                message: self.message,
                history,
            }),
            _ => Err(errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<ChatInput, Vec<String>> {
        let body: ChatRequestBody = serde_json::from_str(json).unwrap();
        body.validate(&ChatLimits {
            max_message_chars: 10,
            max_history_messages: 2,
        })
        .map_err(|e| e.errors().iter().map(|e| e.field.clone()).collect())
    }

    #[test]
    fn history_defaults_to_empty_and_null_is_empty() {
        let input = parse(r#"{"specialist_id": "demo", "message": "hi"}"#).unwrap();
        assert!(input.history.is_empty());
        let input =
            parse(r#"{"specialist_id": "demo", "message": "hi", "conversation_history": null}"#)
                .unwrap();
        assert!(input.history.is_empty());
    }

    #[test]
    fn all_problems_reported_together() {
        let fields = parse(
            r#"{"specialist_id": "no spaces", "message": "  ",
                "conversation_history": [
                    {"role": "system", "content": "x"},
                    {"role": "assistant", "content": "this is too long"},
                    {"role": "user", "content": "ok"}
                ]}"#,
        )
        .unwrap_err();
        assert_eq!(
            fields,
            [
                "specialist_id",
                "message",
                "conversation_history",
                "conversation_history[0].role",
                "conversation_history[1].content",
            ]
        );
    }

    #[test]
    fn history_keeps_order_and_roles() {
        let input = parse(
            r#"{"specialist_id": "demo", "message": "and now?",
                "conversation_history": [{"role": "user", "content": "a"},
                                         {"role": "assistant", "content": "b"}]}"#,
        )
        .unwrap();
        assert_eq!(
            input.history,
            [ChatMessage::user("a"), ChatMessage::assistant("b")]
        );
    }
}
