//! The providers against fake upstreams that speak the real wire formats over real sockets.
#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

mod anthropic;
mod bad_bodies;
mod bounds;
mod embeddings;
mod google;
mod keys;
mod native;
mod openai;
mod redaction;
mod resilience;
mod usage_detail;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use core_domain::{ChatMessage, ProviderKind, StreamEvent};
use fake_upstreams::{FakeUpstream, Wire};
use futures_util::StreamExt;
use providers::{
    ChatProvider, ProviderError, ProviderRegistry, ProviderRequest, ProvidersConfig, Sleeper,
};
use secrecy::SecretString;

pub const OPENAI_KEY: &str = "sk-test-openai-0123456789abcdef";
pub const ANTHROPIC_KEY: &str = "sk-ant-test-0123456789abcdef";
pub const GOOGLE_KEY: &str = "AIzaTestGoogleKey0123456789";

/// Config pointing every provider at `fake` (its wire decides which one matters), with keys,
/// short retry delays and deadlines a test can wait out.
pub fn config_for(fake: &FakeUpstream) -> ProvidersConfig {
    let mut config = ProvidersConfig::default();
    for upstream in [
        &mut config.openai,
        &mut config.anthropic,
        &mut config.google,
    ] {
        upstream.base_url = fake.base_url().to_owned();
        upstream.retry_base_delay_ms = 10;
        upstream.retry_max_delay_ms = 2_000;
        upstream.first_byte_timeout_ms = 5_000;
        upstream.idle_timeout_ms = 5_000;
        upstream.total_timeout_ms = 20_000;
    }
    config.openai.api_key = Some(SecretString::from(OPENAI_KEY));
    config.anthropic.api_key = Some(SecretString::from(ANTHROPIC_KEY));
    config.google.api_key = Some(SecretString::from(GOOGLE_KEY));
    config.connect_timeout_ms = 2_000;
    config
}

pub fn provider(config: &ProvidersConfig, kind: ProviderKind) -> Arc<dyn ChatProvider> {
    ProviderRegistry::from_config(config)
        .unwrap()
        .get(kind)
        .unwrap()
}

/// The waits a call chose between its retries, each returned at once: the backoff is checked
/// without spending its time.
#[derive(Debug, Default)]
pub struct RecordedWaits(Mutex<Vec<Duration>>);

impl RecordedWaits {
    pub fn waits(&self) -> Vec<Duration> {
        self.0.lock().unwrap().clone()
    }
}

impl Sleeper for RecordedWaits {
    fn sleep(&self, wait: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        self.0.lock().unwrap().push(wait);
        Box::pin(std::future::ready(()))
    }
}

/// The provider of `kind`, waiting between retries on a [`RecordedWaits`] of its own.
pub fn provider_recording_waits(
    config: &ProvidersConfig,
    kind: ProviderKind,
) -> (Arc<dyn ChatProvider>, &'static RecordedWaits) {
    // A sleeper lives as long as the program; a test leaks one small Vec.
    let waits: &'static RecordedWaits = Box::leak(Box::default());
    let provider = ProviderRegistry::from_config_with_sleeper(config, waits)
        .unwrap()
        .get(kind)
        .unwrap();
    (provider, waits)
}

pub async fn start(wire: Wire) -> FakeUpstream {
    FakeUpstream::start(wire).await
}

pub fn request(model: &str) -> ProviderRequest {
    ProviderRequest {
        model: model.to_owned(),
        system_prompt: "You are terse.".to_owned(),
        messages: vec![
            ChatMessage::user("Hi"),
            ChatMessage::assistant("Hello!"),
            ChatMessage::user("What is 2+2?"),
        ],
        temperature: 0.3,
        max_tokens: 256,
        base_url: None,
        options: Default::default(),
        single_attempt: false,
        deadline: None,
        anthropic: None,
    }
}

/// Everything a stream produced: its text, its events, and the error that ended it, if any.
pub struct Collected {
    pub text: String,
    pub events: Vec<StreamEvent>,
    pub error: Option<ProviderError>,
    /// What the stream's failure said was consumed.
    pub usage_so_far: Option<core_domain::TokenUsage>,
}

pub async fn collect(provider: &dyn ChatProvider, request: &ProviderRequest) -> Collected {
    let mut stream = provider.stream(request).await.expect("stream starts");
    let mut collected = Collected {
        text: String::new(),
        events: Vec::new(),
        error: None,
        usage_so_far: None,
    };
    while let Some(item) = tokio::time::timeout(Duration::from_secs(30), stream.next())
        .await
        .expect("stream makes progress")
    {
        match item {
            Ok(event) => {
                if let StreamEvent::TextDelta(text) = &event {
                    collected.text.push_str(text);
                }
                collected.events.push(event);
            }
            Err(failure) => {
                collected.usage_so_far = Some(failure.usage_so_far);
                collected.error = Some(failure.error);
                let after = tokio::time::timeout(Duration::from_secs(30), stream.next())
                    .await
                    .expect("a failed stream ends at once");
                assert!(after.is_none(), "nothing follows a failure: {after:?}");
                break;
            }
        }
    }
    collected
}

pub fn finished(events: &[StreamEvent]) -> &StreamEvent {
    let last = events.last().expect("at least one event");
    assert!(
        matches!(last, StreamEvent::Finished { .. }),
        "the last event must be Finished: {events:?}"
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, StreamEvent::Finished { .. }))
            .count(),
        1,
        "exactly one Finished"
    );
    last
}
