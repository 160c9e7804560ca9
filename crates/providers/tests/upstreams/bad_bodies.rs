//! A 200 whose body is no usable answer: it does not parse, or parses without the answer in it.
//! Each is `upstream_bad_response`, billed for what the body still reports or else the prompt
//! estimate (the upstream did the work), and never retried.

use core_domain::{ErrorCode, FinishReason, ProviderKind, TokenUsage};
use fake_upstreams::{Reply, Wire};

use crate::*;

/// The whole-answer error for a 200 carrying `body`, after exactly one request.
async fn bad_answer(wire: Wire, kind: ProviderKind, model: &str, body: Reply) -> ProviderError {
    let fake = start(wire).await;
    fake.push(body);
    let provider = provider(&config_for(&fake), kind);
    let error = provider.complete(&request(model)).await.unwrap_err();
    assert_eq!(fake.request_count(), 1, "a bad answer is not retried");
    error
}

fn ok_json(body: serde_json::Value) -> Reply {
    Reply::status(200, body.to_string())
}

/// A bad answer that reported no usage: the prompt estimate, flagged as estimated.
fn assert_billed_for_the_prompt(error: &ProviderError, what: &str) {
    let estimate = request("m").prompt_estimate();
    assert!(estimate > 0);
    assert_eq!(
        error.code(),
        ErrorCode::UpstreamBadResponse,
        "{what}: {error}"
    );
    assert!(error.may_have_reached_model(), "{what}");
    assert!(!error.is_retryable(), "{what}");
    assert_eq!(
        error.consumed(estimate),
        TokenUsage::estimated(estimate, 0),
        "{what}: {error}"
    );
}

/// A bad answer whose body still carried usage: that usage, as reported.
fn assert_billed_as_reported(error: &ProviderError, usage: TokenUsage, what: &str) {
    assert_eq!(
        error.code(),
        ErrorCode::UpstreamBadResponse,
        "{what}: {error}"
    );
    assert_eq!(error.consumed(7), usage, "{what}: {error}");
}

#[tokio::test]
async fn malformed_json_on_every_wire_is_a_bad_response_billed_for_the_prompt() {
    for (wire, kind, model) in [
        (Wire::OpenAi, ProviderKind::OpenAi, "gpt-4o"),
        (Wire::Anthropic, ProviderKind::Anthropic, "claude-3-haiku"),
        (Wire::Google, ProviderKind::Google, "gemini-2.0-flash"),
    ] {
        let error = bad_answer(wire, kind, model, Reply::malformed()).await;
        assert!(
            error.to_string().contains("malformed response"),
            "{wire:?}: {error}"
        );
        assert_billed_for_the_prompt(&error, &format!("{wire:?}"));
    }
}

#[tokio::test]
async fn openai_empty_or_missing_choices_are_a_bad_response() {
    for body in [
        serde_json::json!({"model": "gpt-4o", "choices": []}),
        serde_json::json!({"model": "gpt-4o"}),
        serde_json::json!({"choices": [{"finish_reason": "stop"}]}),
    ] {
        let error = bad_answer(
            Wire::OpenAi,
            ProviderKind::OpenAi,
            "gpt-4o",
            ok_json(body.clone()),
        )
        .await;
        assert!(error.to_string().contains("no choice"), "{body}: {error}");
        assert_billed_for_the_prompt(&error, &body.to_string());
    }
}

#[tokio::test]
async fn openai_empty_choices_with_usage_is_billed_the_reported_usage() {
    let body = serde_json::json!({"choices": [],
        "usage": {"prompt_tokens": 120, "completion_tokens": 9}});
    let error = bad_answer(Wire::OpenAi, ProviderKind::OpenAi, "gpt-4o", ok_json(body)).await;
    assert_billed_as_reported(&error, TokenUsage::reported(120, 9), "empty choices");
}

#[tokio::test]
async fn a_wrongly_shaped_body_keeps_the_usage_it_reported_and_a_bounded_message() {
    let huge = "x".repeat(100_000);
    let cases = [
        (
            Wire::OpenAi,
            ProviderKind::OpenAi,
            serde_json::json!({"choices": huge,
                "usage": {"prompt_tokens": 30, "completion_tokens": 4}}),
            TokenUsage::reported(30, 4),
        ),
        (
            Wire::Anthropic,
            ProviderKind::Anthropic,
            serde_json::json!({"content": huge,
                "usage": {"input_tokens": 30, "output_tokens": 4}}),
            TokenUsage::reported(30, 4),
        ),
        (
            Wire::Google,
            ProviderKind::Google,
            serde_json::json!({"candidates": huge,
                "usageMetadata": {"promptTokenCount": 30, "candidatesTokenCount": 4}}),
            TokenUsage::reported(30, 4),
        ),
    ];
    for (wire, kind, body, usage) in cases {
        let error = bad_answer(wire, kind, "m", ok_json(body)).await;
        assert_billed_as_reported(&error, usage, &format!("{wire:?}"));
        assert!(
            error.to_string().len() < 1_000,
            "{wire:?}: the message quotes the body: {} chars",
            error.to_string().len()
        );
    }
}

#[tokio::test]
async fn a_wrongly_shaped_body_without_readable_usage_is_billed_for_the_prompt() {
    let body = serde_json::json!({"choices": {"message": "hi"}, "usage": "lots"});
    let error = bad_answer(Wire::OpenAi, ProviderKind::OpenAi, "gpt-4o", ok_json(body)).await;
    assert_billed_for_the_prompt(&error, "wrong shape");
}

#[tokio::test]
async fn anthropic_without_content_is_a_bad_response_but_empty_content_is_an_answer() {
    let error = bad_answer(
        Wire::Anthropic,
        ProviderKind::Anthropic,
        "claude-3-haiku",
        ok_json(serde_json::json!({"type": "message", "stop_reason": "end_turn"})),
    )
    .await;
    assert!(error.to_string().contains("no content"), "{error}");
    assert_billed_for_the_prompt(&error, "no content");

    // The model may have nothing to add (after a tool result, say): that is an answer.
    let fake = start(Wire::Anthropic).await;
    fake.push(ok_json(
        serde_json::json!({"type": "message", "content": [],
        "stop_reason": "end_turn", "usage": {"input_tokens": 12, "output_tokens": 1}}),
    ));
    let provider = provider(&config_for(&fake), ProviderKind::Anthropic);
    let answer = provider.complete(&request("claude-3-haiku")).await.unwrap();
    assert_eq!(answer.content, "");
    assert_eq!(answer.usage, TokenUsage::reported(12, 1));
}

#[tokio::test]
async fn gemini_without_candidates_is_a_bad_response_unless_the_prompt_was_blocked() {
    let error = bad_answer(
        Wire::Google,
        ProviderKind::Google,
        "gemini-2.0-flash",
        ok_json(serde_json::json!({"modelVersion": "gemini-2.0-flash"})),
    )
    .await;
    assert!(error.to_string().contains("no candidates"), "{error}");
    assert_billed_for_the_prompt(&error, "no candidates");

    // Gemini's refusal of the prompt itself: an answer, filtered, billed as reported.
    let fake = start(Wire::Google).await;
    fake.push(ok_json(serde_json::json!({
        "promptFeedback": {"blockReason": "SAFETY"},
        "usageMetadata": {"promptTokenCount": 15, "totalTokenCount": 15}})));
    let provider = provider(&config_for(&fake), ProviderKind::Google);
    let answer = provider
        .complete(&request("gemini-2.0-flash"))
        .await
        .unwrap();
    assert_eq!(answer.content, "");
    assert_eq!(answer.finish_reason, FinishReason::ContentFilter);
    assert_eq!(answer.usage, TokenUsage::reported(15, 0));
}

#[tokio::test]
async fn a_malformed_stream_event_ends_the_stream_as_a_bad_response_billed_for_the_prompt() {
    for (wire, kind, model) in [
        (Wire::OpenAi, ProviderKind::OpenAi, "gpt-4o"),
        (Wire::Anthropic, ProviderKind::Anthropic, "claude-3-haiku"),
        (Wire::Google, ProviderKind::Google, "gemini-2.0-flash"),
    ] {
        let fake = start(wire).await;
        fake.push(Reply::malformed());
        let provider = provider(&config_for(&fake), kind);
        let request = request(model);
        let got = collect(provider.as_ref(), &request).await;
        let error = got.error.expect("a malformed event ends the stream");
        assert_eq!(error.code(), ErrorCode::UpstreamBadResponse, "{wire:?}");
        assert_eq!(
            got.usage_so_far,
            Some(TokenUsage::estimated(request.prompt_estimate(), 0)),
            "{wire:?}"
        );
    }
}
