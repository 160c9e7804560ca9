use std::pin::Pin;

use core_domain::{Completion, ProviderKind, StreamEvent};
use futures_util::Stream;
use futures_util::future::BoxFuture;

use crate::{
    EmbeddingFuture, EmbeddingRequest, KeyHealth, ProviderError, ProviderRequest, StreamFailure,
    Unsupported,
};

/// How a destination is retried when there is nowhere else to go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// The first wait, doubled per retry, with jitter.
    pub base_delay: std::time::Duration,
    /// The longest wait, and the longest `Retry-After` honoured.
    pub max_delay: std::time::Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 0,
            base_delay: std::time::Duration::from_millis(250),
            max_delay: std::time::Duration::from_secs(10),
        }
    }
}

/// A streamed answer: text deltas, then one `Finished` — or, when it fails part way, one
/// [`StreamFailure`] saying what the call consumed, after which it ends. Dropping it cancels
/// the upstream request.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, StreamFailure>> + Send>>;

/// The future of a whole answer.
pub type CompletionFuture<'a> = BoxFuture<'a, Result<Completion, ProviderError>>;

/// The future of a stream: it resolves once the upstream has accepted the request, so a failure
/// before the first byte is an ordinary error rather than a broken stream.
pub type EventStreamFuture<'a> = BoxFuture<'a, Result<EventStream, ProviderError>>;

/// The future of a token count: the prompt's input tokens, as the upstream counts them.
pub type TokenCountFuture<'a> = BoxFuture<'a, Result<u32, ProviderError>>;

/// One upstream API family. Object safe: the registry hands out `Arc<dyn ChatProvider>`.
/// `Debug` must never print a credential.
pub trait ChatProvider: Send + Sync + std::fmt::Debug {
    /// Which family this is.
    fn kind(&self) -> ProviderKind;

    /// [`ProviderError::NotConfigured`] when a call to `base_url` (a specialist's, or `None`
    /// for the provider's own endpoint) would lack the credentials it needs. The registry asks
    /// before a call starts, so a missing key is refused without touching the upstream. A
    /// provider that needs no credentials keeps this default.
    fn check_configured(&self, base_url: Option<&str>) -> Result<(), ProviderError> {
        let _ = base_url;
        Ok(())
    }

    /// [`ProviderError::Unavailable`] when no key of the endpoint a call to `base_url` would
    /// use can take a request right now (each resting, or its circuit open), so a router can
    /// move on without sending anything. Takes no key and no half-open probe. Providers without
    /// key pools keep this default.
    fn check_available(&self, base_url: Option<&str>) -> Result<(), ProviderError> {
        let _ = base_url;
        Ok(())
    }

    /// How often, and after how long, a router may send a request here again after a failure
    /// that proves the model did no work (connect error, 429, 5xx), when there is nowhere else
    /// to go: the provider's `max_retries` and retry delays. The default: never.
    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy::default()
    }

    /// How many keys a call to `base_url` can choose from (1 for an endpoint with one key or
    /// none). With more than one, a router tries again at once after a key is refused or rate
    /// limited: the provider picks another.
    fn key_count(&self, base_url: Option<&str>) -> usize {
        let _ = base_url;
        1
    }

    /// True when this provider continues an answer whose beginning is `request`'s last,
    /// assistant, message (prefill), rather than answering it as a new turn: only then can a
    /// stream that broke part way be finished here. The default is false.
    fn can_continue(&self, request: &ProviderRequest) -> bool {
        let _ = request;
        false
    }

    /// How each key of each endpoint this provider has called or was configured with is doing
    /// (never the keys themselves). Providers without key pools keep this default.
    fn key_health(&self) -> Vec<KeyHealth> {
        Vec::new()
    }

    /// [`Unsupported`] for the first thing in `request` this provider cannot honour (a tool,
    /// an image, a sampling parameter...): refused before the call, never dropped. The default
    /// honours plain chat only; a provider overrides it with what it maps.
    fn check_request(&self, request: &ProviderRequest) -> Result<(), Unsupported> {
        request.plain_chat_only(self.kind())
    }

    /// True when [`ChatProvider::count_tokens`] asks the upstream (Anthropic's
    /// `count_tokens`); a door whose destination does not offers its own estimate instead.
    fn counts_tokens(&self) -> bool {
        false
    }

    /// How many input tokens `request` would take (system, messages, tools), counted by the
    /// upstream without asking the model. The default: not offered — nothing is sent and the
    /// call is refused as an invalid request (400), as a request the provider cannot honour
    /// is.
    fn count_tokens<'a>(&'a self, request: &'a ProviderRequest) -> TokenCountFuture<'a> {
        let _ = request;
        let refused = ProviderError::InvalidRequest {
            status: 400,
            message: format!(
                "the {} provider cannot count tokens (only Anthropic's Messages API has \
                 count_tokens)",
                self.kind()
            ),
        };
        Box::pin(std::future::ready(Err(refused)))
    }

    /// Asks for a whole answer.
    fn complete<'a>(&'a self, request: &'a ProviderRequest) -> CompletionFuture<'a>;

    /// Asks for an answer as a stream of text deltas ending with usage. The stream owns what it
    /// needs and may outlive `request`.
    fn stream<'a>(&'a self, request: &'a ProviderRequest) -> EventStreamFuture<'a>;

    /// Turns `request`'s inputs into vectors, one per input in order. The default: this
    /// provider offers no embeddings (Anthropic), refused before anything is sent; the
    /// catalogue never puts an embedding specialist on such a provider.
    fn embed<'a>(&'a self, request: &'a EmbeddingRequest) -> EmbeddingFuture<'a> {
        let _ = request;
        let kind = self.kind();
        Box::pin(async move {
            Err(ProviderError::InvalidRequest {
                status: 0,
                message: format!("the {kind} provider offers no embeddings"),
            })
        })
    }
}
