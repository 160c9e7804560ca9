use std::fmt;
use std::time::Duration;

use core_domain::{ErrorCode, ProviderKind};

/// Which deadline an upstream call missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutPhase {
    /// Establishing the connection.
    Connect,
    /// Waiting for the response to begin.
    FirstByte,
    /// Waiting for the next chunk of a stream.
    IdleGap,
    /// The whole call.
    Total,
}

impl fmt::Display for TimeoutPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Connect => "connecting",
            Self::FirstByte => "waiting for the first byte",
            Self::IdleGap => "waiting for the next stream chunk",
            Self::Total => "for the whole call",
        })
    }
}

/// Why a provider call failed, classified so callers can act on it.
///
/// Messages keep the upstream's own words (they help the person who has to fix the call) but
/// never a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The provider has no credentials; `env_var` and `config_key` name what to set.
    #[error("the {provider} provider is not configured: set {env_var} or {config_key}")]
    NotConfigured {
        /// The provider.
        provider: ProviderKind,
        /// The environment variable that would configure it.
        env_var: &'static str,
        /// The configuration key that would configure it.
        config_key: &'static str,
    },
    /// The upstream did not answer in time.
    #[error("the upstream timed out {phase}")]
    Timeout {
        /// Which deadline was missed.
        phase: TimeoutPhase,
    },
    /// The upstream kept answering 429.
    #[error("the upstream is rate limiting us: {message}")]
    RateLimited {
        /// How long the upstream asked us to wait, if it said.
        retry_after: Option<Duration>,
        /// The upstream's message.
        message: String,
    },
    /// The upstream refused our credentials (401/403).
    ///
    /// Its words are kept in `message` for the server log but left out of the error's text,
    /// which callers show to clients: an upstream answering "invalid key" tends to quote the
    /// key, and a client has no business learning anything about ours.
    #[error(
        "the upstream refused the configured credentials for {provider} (HTTP {status}); \
         the server log has the upstream's message"
    )]
    AuthFailed {
        /// The provider whose credentials were refused.
        provider: ProviderKind,
        /// The upstream's HTTP status.
        status: u16,
        /// The upstream's message, with every key redacted; for the log only.
        message: String,
    },
    /// The upstream refused the request as invalid (400, 404, 422...).
    #[error("the upstream refused the request ({status}): {message}")]
    InvalidRequest {
        /// The upstream's HTTP status.
        status: u16,
        /// The upstream's message.
        message: String,
    },
    /// The providers could not be set up: the HTTP client (TLS backend, system resolver) or
    /// an unusable configured key.
    #[error("cannot set up the upstream providers: {message}")]
    Setup {
        /// What failed.
        message: String,
    },
    /// The upstream failed: a 5xx, a broken connection, a malformed answer or an error event in
    /// a stream.
    #[error("the upstream failed{}: {message}", status.map(|s| format!(" ({s})")).unwrap_or_default())]
    Upstream {
        /// The upstream's HTTP status, when there was a response.
        status: Option<u16>,
        /// What went wrong.
        message: String,
    },
}

impl ProviderError {
    /// True when trying again may succeed: connection failures, upstream 429s and 5xx.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::RateLimited { .. } => true,
            Self::Upstream { status, .. } => status.is_none_or(|s| s >= 500),
            Self::Timeout { phase } => *phase == TimeoutPhase::Connect,
            Self::NotConfigured { .. }
            | Self::AuthFailed { .. }
            | Self::InvalidRequest { .. }
            | Self::Setup { .. } => false,
        }
    }

    /// The error code recorded in usage rows and API errors.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NotConfigured { .. } => ErrorCode::ProviderNotConfigured,
            Self::Timeout { .. } => ErrorCode::UpstreamTimeout,
            Self::RateLimited { .. } => ErrorCode::UpstreamRateLimited,
            Self::AuthFailed { .. } => ErrorCode::UpstreamAuthFailed,
            Self::InvalidRequest { .. } => ErrorCode::UpstreamInvalidRequest,
            Self::Upstream { .. } => ErrorCode::UpstreamError,
            Self::Setup { .. } => ErrorCode::Internal,
        }
    }
}
