use std::fmt;
use std::time::Duration;

use core_domain::{ErrorCode, ProviderKind, TokenUsage};

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
    /// No connection to the upstream could be made, so the request never left: safe to retry.
    /// (A connection that timed out is [`ProviderError::Timeout`] in the `Connect` phase.)
    #[error("the upstream failed: {message}")]
    Unreachable {
        /// What went wrong.
        message: String,
    },
    /// The upstream answered with success but its body is no usable answer: it does not parse,
    /// or it parses without the answer in it (OpenAI without choices, Anthropic without content,
    /// Gemini without candidates or a block reason). The model probably did the work, so the
    /// call is billed as far as it can be counted.
    #[error("the upstream's answer was unusable: {message}")]
    BadResponse {
        /// What was wrong with the body (bounded; never the whole body).
        message: String,
        /// The usage the body reported, when that part of it could still be read.
        usage: Option<TokenUsage>,
    },
    /// No key of the endpoint can take a request now: each is resting after a 429 or a
    /// refusal, or its circuit is open after consecutive failures. Nothing was sent.
    #[error("the {provider} upstream is unavailable for now: {reason}")]
    Unavailable {
        /// The provider.
        provider: ProviderKind,
        /// When the first key is expected to be usable again.
        retry_after: Duration,
        /// Why, naming the endpoint's config section (never a key).
        reason: String,
    },
    /// The upstream failed: a 5xx, a broken connection or an error event in a stream.
    #[error("the upstream failed{}: {message}", status.map(|s| format!(" ({s})")).unwrap_or_default())]
    Upstream {
        /// The upstream's HTTP status, when there was a response.
        status: Option<u16>,
        /// What went wrong.
        message: String,
    },
}

impl ProviderError {
    /// True when the failed attempt may be sent again: the transport's retry policy. Only
    /// failures that prove the model did no work qualify — no connection was made, or the
    /// upstream answered 429 or 5xx. A failure once the request may have reached the model
    /// (a connection broken before or during the answer, a first-byte or total timeout) is
    /// never retried, as it could be billed twice.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::RateLimited { .. } | Self::Unreachable { .. } => true,
            Self::Timeout { phase } => *phase == TimeoutPhase::Connect,
            // 429 arrives here (rather than as `RateLimited`) when its body was too large.
            Self::Upstream { status, .. } => {
                status.is_some_and(|s| s == 429 || (500..600).contains(&s))
            }
            // The upstream answered: a retry would be billed again.
            // Unavailable: nothing was sent, and the keys rest longer than a retry would
            // wait; a router moves on to another endpoint instead.
            Self::NotConfigured { .. }
            | Self::AuthFailed { .. }
            | Self::InvalidRequest { .. }
            | Self::BadResponse { .. }
            | Self::Setup { .. }
            | Self::Unavailable { .. } => false,
        }
    }

    /// True when the request may have reached the model before this failure, so the model may
    /// have read (and been paid for) the prompt: a connection broken after the request left, a
    /// malformed answer, a timeout once connected. A failure that proves the model did no work
    /// — no connection was made, the upstream refused the call or answered 429/5xx, our own
    /// setup failed — is false.
    pub fn may_have_reached_model(&self) -> bool {
        match self {
            Self::Timeout { phase } => *phase != TimeoutPhase::Connect,
            Self::BadResponse { .. } => true,
            Self::Upstream { status, .. } => status.is_none(),
            Self::NotConfigured { .. }
            | Self::RateLimited { .. }
            | Self::AuthFailed { .. }
            | Self::InvalidRequest { .. }
            | Self::Setup { .. }
            | Self::Unreachable { .. }
            | Self::Unavailable { .. } => false,
        }
    }

    /// What a call that failed this way before any of its answer arrived consumed: the usage
    /// an unusable answer still reported, else the prompt (`prompt_estimate` tokens, flagged as
    /// estimated) when the request may have reached the model, else nothing. A stream that
    /// fails later says what it consumed in its [`StreamFailure`].
    pub fn consumed(&self, prompt_estimate: u32) -> TokenUsage {
        if let Self::BadResponse {
            usage: Some(usage), ..
        } = self
        {
            *usage
        } else if self.may_have_reached_model() {
            TokenUsage::estimated(prompt_estimate, 0)
        } else {
            TokenUsage::default()
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
            Self::BadResponse { .. } => ErrorCode::UpstreamBadResponse,
            Self::Unreachable { .. } | Self::Upstream { .. } => ErrorCode::UpstreamError,
            Self::Setup { .. } => ErrorCode::Internal,
            Self::Unavailable { .. } => ErrorCode::UpstreamUnavailable,
        }
    }
}

/// How a stream ended when it failed: the error, and what the call had consumed by then.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct StreamFailure {
    /// Why the stream failed.
    pub error: ProviderError,
    /// What the call consumed before it failed: the upstream's own counts where it had sent
    /// them (Anthropic reports the prompt's tokens at the start, Gemini a running count),
    /// estimates for the rest (the prompt from its text, the answer from the text streamed),
    /// flagged as estimated.
    pub usage_so_far: TokenUsage,
}

impl StreamFailure {
    /// A stream that failed before it began: it consumed what [`ProviderError::consumed`] says.
    pub fn before_start(error: ProviderError, prompt_estimate: u32) -> Self {
        let usage_so_far = error.consumed(prompt_estimate);
        Self {
            error,
            usage_so_far,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad_response(usage: Option<TokenUsage>) -> ProviderError {
        ProviderError::BadResponse {
            message: "m".into(),
            usage,
        }
    }

    fn upstream(status: Option<u16>) -> ProviderError {
        ProviderError::Upstream {
            status,
            message: "m".into(),
        }
    }

    /// The transport retries exactly what this says; anything that may have reached the model
    /// is never sent twice.
    #[test]
    fn retryable_only_when_the_model_did_no_work() {
        let timeout = |phase| ProviderError::Timeout { phase };
        let cases = [
            (
                ProviderError::Unreachable {
                    message: "cannot connect".into(),
                },
                true,
            ),
            (timeout(TimeoutPhase::Connect), true),
            (timeout(TimeoutPhase::FirstByte), false),
            (timeout(TimeoutPhase::IdleGap), false),
            (timeout(TimeoutPhase::Total), false),
            (
                ProviderError::RateLimited {
                    retry_after: None,
                    message: "slow down".into(),
                },
                true,
            ),
            // A 429 or 5xx whose body was too large to read is still that status.
            (upstream(Some(429)), true),
            (upstream(Some(500)), true),
            (upstream(Some(503)), true),
            (upstream(Some(599)), true),
            (upstream(Some(600)), false),
            (upstream(Some(302)), false),
            (upstream(Some(200)), false),
            // A connection that broke after the request left, a malformed answer, an error
            // event mid-stream.
            (upstream(None), false),
            // The upstream answered, unusably: a retry would be billed again.
            (bad_response(None), false),
            (
                ProviderError::AuthFailed {
                    provider: ProviderKind::OpenAi,
                    status: 401,
                    message: "m".into(),
                },
                false,
            ),
            (
                ProviderError::InvalidRequest {
                    status: 400,
                    message: "m".into(),
                },
                false,
            ),
            (
                ProviderError::NotConfigured {
                    provider: ProviderKind::Google,
                    env_var: "GOOGLE_API_KEY",
                    config_key: "providers.google.api_key",
                },
                false,
            ),
            (
                ProviderError::Setup {
                    message: "m".into(),
                },
                false,
            ),
        ];
        for (error, retryable) in cases {
            assert_eq!(error.is_retryable(), retryable, "{error:?}");
        }
    }

    #[test]
    fn an_unreachable_upstream_reads_and_counts_as_an_upstream_failure() {
        let error = ProviderError::Unreachable {
            message: "cannot connect: refused".into(),
        };
        assert_eq!(
            error.to_string(),
            "the upstream failed: cannot connect: refused"
        );
        assert_eq!(error.code(), ErrorCode::UpstreamError);
    }

    /// A call is billed its prompt only when the request may have reached the model; what
    /// proves the model did no work bills nothing.
    #[test]
    fn a_failure_consumed_the_prompt_only_if_the_request_may_have_reached_the_model() {
        let timeout = |phase| ProviderError::Timeout { phase };
        let cases = [
            (timeout(TimeoutPhase::Connect), false),
            (timeout(TimeoutPhase::FirstByte), true),
            (timeout(TimeoutPhase::IdleGap), true),
            (timeout(TimeoutPhase::Total), true),
            (upstream(None), true),
            (bad_response(None), true),
            (upstream(Some(500)), false),
            (upstream(Some(429)), false),
            (
                ProviderError::Unreachable {
                    message: "refused".into(),
                },
                false,
            ),
            (
                ProviderError::RateLimited {
                    retry_after: None,
                    message: "m".into(),
                },
                false,
            ),
            (
                ProviderError::InvalidRequest {
                    status: 400,
                    message: "m".into(),
                },
                false,
            ),
            (
                ProviderError::NotConfigured {
                    provider: ProviderKind::OpenAi,
                    env_var: "OPENAI_API_KEY",
                    config_key: "providers.openai.api_key",
                },
                false,
            ),
        ];
        for (error, reached) in cases {
            assert_eq!(error.may_have_reached_model(), reached, "{error:?}");
            let expected = if reached {
                TokenUsage::estimated(42, 0)
            } else {
                TokenUsage::default()
            };
            assert_eq!(error.consumed(42), expected, "{error:?}");
            let failure = StreamFailure::before_start(error.clone(), 42);
            assert_eq!(failure.usage_so_far, expected, "{error:?}");
            assert_eq!(failure.to_string(), error.to_string());
        }
    }

    /// An unusable answer after a 200 is its own code, billed for the usage the body still
    /// reported, else for the prompt.
    #[test]
    fn a_bad_response_is_billed_its_reported_usage_or_the_prompt() {
        let bare = bad_response(None);
        assert_eq!(bare.code(), ErrorCode::UpstreamBadResponse);
        assert_eq!(bare.consumed(42), TokenUsage::estimated(42, 0));
        assert_eq!(bare.to_string(), "the upstream's answer was unusable: m");

        let reported = TokenUsage::reported(120, 9).with_cache(20, 0);
        let with_usage = bad_response(Some(reported));
        assert_eq!(with_usage.code(), ErrorCode::UpstreamBadResponse);
        assert_eq!(with_usage.consumed(42), reported);
        assert_eq!(
            StreamFailure::before_start(with_usage, 42).usage_so_far,
            reported
        );
    }
}
