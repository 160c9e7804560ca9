//! `providers.max_response_bytes` and `providers.max_event_bytes` against a fake that sends
//! more than either.

use std::num::NonZeroUsize;

use core_domain::ProviderKind;
use fake_upstreams::{Reply, Wire};
use providers::ProviderError;

use crate::*;

fn limited(fake: &fake_upstreams::FakeUpstream, bytes: usize) -> ProvidersConfig {
    let mut config = config_for(fake);
    config.max_response_bytes = NonZeroUsize::new(bytes).unwrap();
    config.max_event_bytes = NonZeroUsize::new(bytes).unwrap();
    config.openai.max_retries = 0;
    config
}

fn is_too_large(error: &ProviderError, what: &str) -> bool {
    matches!(error, ProviderError::Upstream { message, .. } if message.contains(what))
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_whether_announced_or_not() {
    let fake = start(Wire::OpenAi).await;
    let provider = provider(&limited(&fake, 64 * 1024), ProviderKind::OpenAi);
    // With a Content-Length: refused before reading.
    fake.push(Reply::text("word ".repeat(20_000)));
    // Chunked, with no length: read until it passes the limit.
    fake.push(Reply::oversized(200, 10 * 1024 * 1024));
    // An error body is bounded the same way.
    fake.push(Reply::oversized(503, 10 * 1024 * 1024));
    for (case, after_a_success) in [
        ("announced", true),
        ("chunked", true),
        ("error body", false),
    ] {
        let error = provider.complete(&request("gpt-4o")).await.unwrap_err();
        assert!(
            is_too_large(&error, "response too large"),
            "{case}: {error}"
        );
        // After a 200 the model did the work: the call is billed for its prompt.
        assert_eq!(error.may_have_reached_model(), after_a_success, "{case}");
    }
    assert!(fake.padding_bytes_sent() < 2 * 5 * 1024 * 1024);
    // Under the limit, all is well.
    fake.push(Reply::text("word ".repeat(1_000)));
    let answer = provider.complete(&request("gpt-4o")).await.unwrap();
    assert_eq!(answer.content.len(), 5_000);
}

#[tokio::test]
async fn a_stream_event_over_the_limit_ends_the_stream_with_an_error() {
    for wire in [Wire::OpenAi, Wire::Anthropic, Wire::Google] {
        let fake = start(wire).await;
        let kind = match wire {
            Wire::OpenAi => ProviderKind::OpenAi,
            Wire::Anthropic => ProviderKind::Anthropic,
            Wire::Google => ProviderKind::Google,
        };
        let provider = provider(&limited(&fake, 16 * 1024), kind);
        // Text in events under the limit is fine...
        fake.push(Reply::text("a ".repeat(4_000)).chunks(2));
        let collected = collect(&*provider, &request("m")).await;
        assert!(collected.error.is_none(), "{wire:?}");
        assert_eq!(collected.text.len(), 8_000);
        // ...one event over it is not.
        fake.push(Reply::oversized(200, 1024 * 1024));
        let error = collect(&*provider, &request("m")).await.error.unwrap();
        assert!(is_too_large(&error, "event too large"), "{wire:?}: {error}");
    }
}
