use core_domain::{ChatMessage, FinishReason, ProviderKind, StreamEvent, TokenUsage};
use fake_upstreams::{Finish, RecordedRequest, Reply, Wire};
use providers::ProviderError;
use serde_json::json;

use crate::*;

#[tokio::test]
async fn complete_sends_a_messages_request_and_parses_the_answer() {
    let fake = start(Wire::Anthropic).await;
    fake.push(Reply::text("Four.").usage(40, 3).finish(Finish::Length));
    let provider = provider(&config_for(&fake), ProviderKind::Anthropic);
    let mut req = request("claude-sonnet-4-5");
    req.temperature = 1.7;
    req.messages.insert(0, ChatMessage::system("Extra rule."));

    let answer = provider.complete(&req).await.unwrap();
    assert_eq!(answer.content, "Four.");
    assert_eq!(answer.usage, TokenUsage::reported(40, 3));
    assert_eq!(answer.finish_reason, FinishReason::Length);
    assert_eq!(answer.model, "claude-sonnet-4-5");

    let sent = &fake.requests()[0];
    assert_messages_headers(sent);
    assert_eq!(
        sent.body,
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 256,
            "system": "You are terse.\n\nExtra rule.",
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "What is 2+2?"}
            ],
            "temperature": 1.0
        })
    );
}

#[tokio::test]
async fn stream_reads_every_event_type_and_reassembles_the_text() {
    let fake = start(Wire::Anthropic).await;
    let text = "Claude streams in content_block_delta events.";
    fake.push(
        Reply::text(text)
            .usage(55, 9)
            .chunks(5)
            .finish(Finish::Length),
    );
    let provider = provider(&config_for(&fake), ProviderKind::Anthropic);

    let got = collect(provider.as_ref(), &request("claude-haiku-4-5")).await;
    assert!(got.error.is_none(), "{:?}", got.error);
    assert_eq!(got.text, text);
    assert_eq!(got.events.len(), 6);
    assert_eq!(
        finished(&got.events),
        &StreamEvent::Finished {
            usage: TokenUsage::reported(55, 9),
            finish_reason: FinishReason::Length,
            model: "claude-haiku-4-5".into(),
        }
    );
    let sent = &fake.requests()[0];
    assert_messages_headers(sent);
    assert_eq!(
        sent.body,
        json!({
            "model": "claude-haiku-4-5",
            "max_tokens": 256,
            "system": "You are terse.",
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "What is 2+2?"}
            ],
            "temperature": 0.3,
            "stream": true
        })
    );
}

#[tokio::test]
async fn an_anthropic_stream_without_usage_is_estimated() {
    let fake = start(Wire::Anthropic).await;
    fake.push(Reply::text("abcdabcdabcd").without_usage().chunks(3));
    let provider = provider(&config_for(&fake), ProviderKind::Anthropic);
    let got = collect(provider.as_ref(), &request("claude-3-haiku")).await;
    assert!(got.error.is_none(), "{:?}", got.error);
    let StreamEvent::Finished { usage, .. } = finished(&got.events) else {
        unreachable!()
    };
    assert!(usage.is_estimated);
    assert_eq!(usage.output_tokens, 3, "12 characters at 4 a token");
}

#[tokio::test]
async fn an_error_event_mid_stream_ends_it_with_the_upstream_message() {
    let fake = start(Wire::Anthropic).await;
    fake.push(
        Reply::text("one two three four")
            .chunks(4)
            .error_event_after(2, "Overloaded"),
    );
    let provider = provider(&config_for(&fake), ProviderKind::Anthropic);
    let got = collect(provider.as_ref(), &request("claude-3-haiku")).await;
    assert_eq!(got.events.len(), 2, "two deltas reached the caller first");
    let err = got.error.expect("the stream ends with an error");
    assert!(matches!(err, ProviderError::Upstream { status: None, .. }));
    assert!(
        err.to_string().contains("overloaded_error: Overloaded"),
        "{err}"
    );
}

#[tokio::test]
async fn missing_key_names_anthropic_api_key() {
    let fake = start(Wire::Anthropic).await;
    let mut config = config_for(&fake);
    config.anthropic.api_key = None;
    let err = provider(&config, ProviderKind::Anthropic)
        .stream(&request("claude-3-haiku"))
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("ANTHROPIC_API_KEY"), "{err}");
}

#[tokio::test]
async fn a_redirect_is_not_followed_so_the_key_and_prompt_stay_put() {
    let fake = start(Wire::Anthropic).await;
    let elsewhere = start(Wire::Anthropic).await;
    let target = format!("{}/v1/messages", elsewhere.base_url());
    for status in [302, 307, 308] {
        fake.push(Reply::status(status, "").header("location", target.as_str()));
    }
    let provider = provider(&config_for(&fake), ProviderKind::Anthropic);

    for status in [302, 307, 308] {
        let err = provider
            .complete(&request("claude-haiku-4-5"))
            .await
            .unwrap_err();
        match &err {
            ProviderError::Upstream {
                status: Some(got),
                message,
            } => {
                assert_eq!(*got, status);
                assert!(message.contains(&target), "{message}");
                assert!(message.contains("not followed"), "{message}");
            }
            other => panic!("expected an upstream error, got {other:?}"),
        }
    }
    assert_eq!(fake.request_count(), 3, "one attempt each, no retries");
    assert_eq!(
        elsewhere.request_count(),
        0,
        "the redirect target never saw the x-api-key or the prompt"
    );
}

/// The Messages API's path and headers: its own key header, the version, no bearer token.
fn assert_messages_headers(sent: &RecordedRequest) {
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.header("x-api-key"), Some(ANTHROPIC_KEY));
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(sent.header("authorization"), None);
}
