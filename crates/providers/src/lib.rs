//! A uniform async chat client over every upstream commander talks to.
//!
//! This crate owns the [`ChatProvider`] trait (a whole answer, or a stream of
//! [`StreamEvent`](core_domain::StreamEvent)s: text deltas in order, then one `Finished` with
//! usage; object safe, so providers are chosen at run time), the request every provider accepts
//! ([`ProviderRequest`]), the classified [`ProviderError`], the [`ProviderRegistry`] that builds
//! them all over one pooled HTTP client, and the implementations: [`OpenAiProvider`] (OpenAI and
//! every OpenAI-compatible server), [`AnthropicProvider`], [`GoogleProvider`] (Gemini) and the
//! deterministic [`MockProvider`].
//!
//! Every call has deadlines (connect, first byte, idle gap between stream chunks, total) and
//! retries connect errors, 429s and 5xx with backoff and jitter, honouring `Retry-After`, but
//! never once any of the answer has been handed over. Keys never appear in errors, logs or
//! `Debug` output.
//!
//! It is the only crate that knows upstream wire formats and HTTP clients. It must not depend on
//! actix-web, the database, pricing or the catalogue.
//!
//! # Using it alone
//!
//! Build a [`ProviderRegistry`] from a [`ProvidersConfig`] (or construct one provider
//! directly), then call [`ChatProvider::complete`] or [`ChatProvider::stream`] with a
//! [`ProviderRequest`]; a Tokio runtime is required. Two runnable examples:
//! `cargo run -p providers --example stream_mock` streams from the mock with no key or network,
//! and `cargo run -p providers --example ask -- openai gpt-4o-mini "Why is the sky blue?"` asks a
//! real provider (its key from the environment). The workspace's crates are not published: depend on this one by path (or git), e.g.
//! `providers = { path = "../commander/crates/providers" }`.
//!
//! Calling a real provider from your own program (not run as a test: it needs a key and the
//! network):
//!
//! ```no_run
//! use core_domain::{ChatMessage, ProviderKind};
//! use providers::{ProviderRegistry, ProviderRequest, ProvidersConfig};
//!
//! # async fn run() -> Result<(), providers::ProviderError> {
//! // Keys from OPENAI_API_KEY, ANTHROPIC_API_KEY, GOOGLE_API_KEY, XAI_API_KEY.
//! let config = ProvidersConfig::default().with_env_keys(|name| std::env::var(name).ok());
//! let registry = ProviderRegistry::from_config(&config)?;
//! let openai = registry.get(ProviderKind::OpenAi).expect("always registered");
//! let answer = openai
//!     .complete(&ProviderRequest {
//!         model: "gpt-4o-mini".into(),
//!         system_prompt: "Answer in one sentence.".into(),
//!         messages: vec![ChatMessage::user("Why is the sky blue?")],
//!         temperature: 0.2,
//!         max_tokens: 100,
//!         base_url: None,
//!         options: Default::default(),
//!         single_attempt: false,
//!         deadline: None,
//!         anthropic: None,
//!     })
//!     .await?;
//! println!("{} ({} tokens in, {} out)", answer.content, answer.usage.input_tokens,
//!     answer.usage.output_tokens);
//! # Ok(())
//! # }
//! ```
//!
//! Streaming, here from the mock (which needs no network or key):
//!
//! ```
//! use core_domain::{ChatMessage, StreamEvent};
//! use futures_util::StreamExt;
//! use providers::{ChatProvider, MockConfig, MockProvider, ProviderRequest};
//!
//! # tokio_test_runtime(async {
//! let provider = MockProvider::new(MockConfig::default());
//! let request = ProviderRequest {
//!     model: "mock-echo".into(),
//!     system_prompt: "Be brief.".into(),
//!     messages: vec![ChatMessage::user("What is 2+2?")],
//!     temperature: 0.0,
//!     max_tokens: 256,
//!     base_url: None,
//!     options: Default::default(),
//!     single_attempt: false,
//!     deadline: None,
//!     anthropic: None,
//! };
//! let whole = provider.complete(&request).await.unwrap();
//!
//! let mut streamed = String::new();
//! let mut events = provider.stream(&request).await.unwrap();
//! while let Some(event) = events.next().await {
//!     match event.unwrap() {
//!         StreamEvent::TextDelta(text) => streamed.push_str(&text),
//!         StreamEvent::Finished { usage, .. } => assert_eq!(usage, whole.usage),
//!         StreamEvent::ToolCallDelta(_) => unreachable!("no tools were offered"),
//!         // A reasoning model's thinking is not its answer (the mock does not think).
//!         StreamEvent::ReasoningDelta(_)
//!         | StreamEvent::ReasoningSignature(_)
//!         | StreamEvent::RedactedReasoning(_) => {}
//!     }
//! }
//! assert_eq!(streamed, whole.content);
//! # });
//! # fn tokio_test_runtime(f: impl std::future::Future<Output = ()>) {
//! #     tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(f)
//! # }
//! ```
#![warn(missing_docs)]

mod anthropic;
mod config;
mod embedding;
mod error;
mod google;
mod keys;
mod mock;
mod openai;
mod provider;
mod registry;
mod request;
mod routing;
pub mod sse;
mod streaming;
mod token_count;
mod transport;
mod upstream_error;

pub use anthropic::AnthropicProvider;
pub use config::{CompatibleServer, KeyConfig, MASKED, ProvidersConfig, UpstreamConfig};
pub use embedding::{EmbeddingFuture, EmbeddingRequest, Embeddings};
pub use error::{ProviderError, StreamFailure, TimeoutPhase};
pub use google::GoogleProvider;
pub use keys::{BreakerState, KeyHealth};
pub use mock::{MOCK_EMBEDDING_DIMENSIONS, MockConfig, MockProvider};
pub use openai::OpenAiProvider;
pub use provider::{
    ChatProvider, CompletionFuture, EventStream, EventStreamFuture, RetryPolicy, TokenCountFuture,
};
pub use registry::{ProviderRegistry, api_key_env};
pub use request::{AnthropicNative, ProviderRequest, Unsupported};
pub use routing::{
    AttemptEvent, AttemptReport, AttemptStart, Destination, Route, RoutedEvent, RoutedStream,
    Router, RoutingConfig, falls_back, plus,
};
pub use transport::{Sleeper, TokioSleeper};
