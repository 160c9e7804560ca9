//! Which front door a call came in by: the wire format the caller spoke.

use serde::{Deserialize, Serialize};

/// The front door a call came in by. Every door is a wire format over the one specialist call;
/// the usage row records which one, so spend and failures can be split by client kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Door {
    /// commander's own `/chat/send` and `/chat/stream`.
    Native,
    /// OpenAI's Chat Completions, `/v1/chat/completions`.
    ChatCompletions,
    /// Anthropic's Messages, `/v1/messages`.
    Messages,
    /// OpenAI's Responses, `/v1/responses`.
    Responses,
    /// OpenAI's embeddings, `/v1/embeddings`.
    Embeddings,
}

impl Door {
    /// Every door, in the order above.
    pub const ALL: [Self; 5] = [
        Self::Native,
        Self::ChatCompletions,
        Self::Messages,
        Self::Responses,
        Self::Embeddings,
    ];

    /// The stored and reported spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::ChatCompletions => "chat_completions",
            Self::Messages => "messages",
            Self::Responses => "responses",
            Self::Embeddings => "embeddings",
        }
    }

    /// The door spelled `text`, or `None`.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|door| door.as_str() == text)
    }
}

impl std::fmt::Display for Door {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_door_reads_back_from_its_spelling_and_serde_agrees() {
        for door in Door::ALL {
            assert_eq!(Door::parse(door.as_str()), Some(door));
            assert_eq!(
                serde_json::to_value(door).unwrap(),
                serde_json::Value::String(door.as_str().to_owned())
            );
        }
        assert_eq!(Door::parse("Native"), None);
        assert_eq!(Door::parse(""), None);
    }
}
