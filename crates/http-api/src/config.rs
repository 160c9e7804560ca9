use std::num::{NonZeroU32, NonZeroU64};

use serde::{Deserialize, Serialize};

use crate::AllowedHost;

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
    /// Origins allowed to call from a browser (CORS). Empty: none. A state-changing request
    /// (POST, PUT, PATCH, DELETE) whose `Origin` is neither listed here nor the server's own
    /// is refused with 403, so a web page cannot make a browser act for it.
    pub cors_allowed_origins: Vec<String>,
    /// Host names (with or without a port; any port is accepted) a request may be addressed
    /// to while `auth.mode = "disabled"`, besides the loopback names (`localhost`,
    /// `127.0.0.0/8`, `[::1]`) and the bind address. Anything else gets 421: without
    /// credentials to check, the `Host` is what stops a web page that rebinds its own name
    /// to 127.0.0.1 (DNS rebinding). Not checked when auth is required.
    pub allowed_hosts: Vec<AllowedHost>,
    /// How long a client may take to send a request body, from the moment its headers
    /// arrived, in milliseconds; slower: 408 and the connection is closed.
    pub client_body_timeout_ms: NonZeroU64,
    /// The most connections one client (an IPv4 address, an IPv6 /64) may hold open at
    /// once; a request on a connection beyond it gets 429 and the connection is closed.
    /// Peers in `rate_limit.trusted_proxies` are exempt (a proxy carries many clients).
    pub max_connections_per_client: NonZeroU32,
    /// Seconds of silence after which a stream gets a keep-alive comment (so proxies keep
    /// the connection open while the model thinks).
    pub sse_keep_alive_seconds: u64,
    /// Limits on what one chat request may contain.
    pub chat: ChatLimits,
    /// `[server.console]`: the web console.
    pub console: crate::ConsoleConfig,
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
            allowed_hosts: Vec::new(),
            client_body_timeout_ms: NonZeroU64::new(30_000).unwrap_or(NonZeroU64::MIN),
            max_connections_per_client: NonZeroU32::new(64).unwrap_or(NonZeroU32::MIN),
            sse_keep_alive_seconds: 15,
            chat: ChatLimits::default(),
            console: crate::ConsoleConfig::default(),
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
