use serde::{Deserialize, Serialize};

/// The `[server]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on.
    pub bind: String,
    /// Largest request body accepted, in bytes (larger: 413).
    pub max_body_bytes: usize,
    /// Worker threads; 0 means one per CPU core.
    pub workers: usize,
    /// How long in-flight requests get to finish at shutdown.
    pub shutdown_grace_seconds: u64,
    /// How long an idle keep-alive connection is kept open.
    pub keep_alive_seconds: u64,
    /// Origins allowed to call from a browser (CORS). Empty: none.
    pub cors_allowed_origins: Vec<String>,
    /// Seconds of silence after which a stream gets a keep-alive comment (so proxies keep
    /// the connection open while the model thinks).
    pub sse_keep_alive_seconds: u64,
    /// Limits on what one chat request may contain.
    pub chat: ChatLimits,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8000".to_owned(),
            max_body_bytes: 1024 * 1024,
            workers: 0,
            shutdown_grace_seconds: 30,
            keep_alive_seconds: 75,
            cors_allowed_origins: Vec::new(),
            sse_keep_alive_seconds: 15,
            chat: ChatLimits::default(),
        }
    }
}

/// Limits on one chat request, beyond the body size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChatLimits {
    /// Longest new message, in characters.
    pub max_message_chars: usize,
    /// Most messages in `conversation_history`.
    pub max_history_messages: usize,
}

impl Default for ChatLimits {
    fn default() -> Self {
        Self {
            max_message_chars: 32_000,
            max_history_messages: 200,
        }
    }
}
