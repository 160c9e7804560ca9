//! Prompt-cache and reasoning counts, whole and streamed, on every wire, normalised to one rule:
//! input includes cache reads and writes, output includes reasoning.

use core_domain::{ProviderKind, StreamEvent, TokenUsage};
use fake_upstreams::{Reply, Wire};

use crate::*;

/// A fake answer of 100 prompt tokens (30 cached, `written` written to the cache) and 40 output
/// tokens (25 of them reasoning).
fn detailed_reply(written: u32) -> Reply {
    Reply::text("Cached and thought through.")
        .usage(100, 40)
        .cache_usage(30, written)
        .reasoning_usage(25)
        .chunks(3)
}

async fn whole_and_streamed(
    wire: Wire,
    kind: ProviderKind,
    model: &str,
    written: u32,
) -> [TokenUsage; 2] {
    let fake = start(wire).await;
    fake.push(detailed_reply(written));
    fake.push(detailed_reply(written));
    let provider = provider(&config_for(&fake), kind);
    let whole = provider.complete(&request(model)).await.unwrap().usage;
    let got = collect(provider.as_ref(), &request(model)).await;
    assert!(got.error.is_none(), "{:?}", got.error);
    let StreamEvent::Finished { usage, .. } = finished(&got.events) else {
        panic!("no end: {:?}", got.events);
    };
    [whole, *usage]
}

#[tokio::test]
async fn openai_reports_cached_and_reasoning_tokens_whole_and_streamed() {
    let expected = TokenUsage::reported(100, 40)
        .with_cache(30, 0)
        .with_reasoning(25);
    let got = whole_and_streamed(Wire::OpenAi, ProviderKind::OpenAi, "o3-mini", 0).await;
    assert_eq!(got, [expected, expected]);
}

#[tokio::test]
async fn anthropic_cache_reads_and_writes_are_added_into_the_input() {
    // The wire says input_tokens 50, cache reads 30, writes 20: the prompt was 100 tokens.
    let expected = TokenUsage::reported(100, 40).with_cache(30, 20);
    let got = whole_and_streamed(
        Wire::Anthropic,
        ProviderKind::Anthropic,
        "claude-sonnet-4-5",
        20,
    )
    .await;
    assert_eq!(got, [expected, expected]);
}

#[tokio::test]
async fn gemini_thoughts_count_as_output_and_cached_content_as_cached_input() {
    // The wire says candidatesTokenCount 15 and thoughtsTokenCount 25: 40 billed as output.
    let expected = TokenUsage::reported(100, 40)
        .with_cache(30, 0)
        .with_reasoning(25);
    let got = whole_and_streamed(Wire::Google, ProviderKind::Google, "gemini-2.5-flash", 0).await;
    assert_eq!(got, [expected, expected]);
}
