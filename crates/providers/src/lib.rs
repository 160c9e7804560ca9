//! A uniform async chat client over every upstream commander talks to.
//!
//! This crate owns the [`ChatProvider`] trait (a whole answer or a stream of
//! [`StreamEvent`](core_domain::StreamEvent)s, object safe so providers can be chosen at run
//! time), the request every provider accepts ([`ProviderRequest`]), the classified
//! [`ProviderError`], the [`ProviderRegistry`] that hands out the provider for a specialist, and
//! the implementations: the deterministic [`MockProvider`] (no network, no key) and, later in
//! this crate, the real wire formats.
//!
//! It is the only crate that knows upstream wire formats and HTTP clients. It must not depend on
//! actix-web, the database, pricing or the catalogue.
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
//! };
//! let whole = provider.complete(&request).await.unwrap();
//!
//! let mut streamed = String::new();
//! let mut events = provider.stream(&request).await.unwrap();
//! while let Some(event) = events.next().await {
//!     match event.unwrap() {
//!         StreamEvent::TextDelta(text) => streamed.push_str(&text),
//!         StreamEvent::Finished { usage, .. } => assert_eq!(usage, whole.usage),
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
mod error;
mod google;
mod mock;
mod openai;
mod provider;
mod registry;
mod request;
mod streaming;
mod transport;
mod upstream_error;

pub use anthropic::AnthropicProvider;
pub use config::{CompatibleServer, KeyConfig, ProvidersConfig, UpstreamConfig};
pub use google::GoogleProvider;
pub use error::{ProviderError, TimeoutPhase};
pub use mock::{MockConfig, MockProvider};
pub use openai::OpenAiProvider;
pub use provider::{ChatProvider, CompletionFuture, EventStream, EventStreamFuture};
pub use registry::{ProviderRegistry, api_key_env};
pub use request::ProviderRequest;
