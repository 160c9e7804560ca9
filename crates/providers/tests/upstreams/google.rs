use core_domain::{FinishReason, ProviderKind, StreamEvent, TokenUsage};
use fake_upstreams::{Finish, RecordedRequest, Reply, Wire};
use serde_json::json;

use crate::*;

#[tokio::test]
async fn generate_content_request_and_answer() {
    let fake = start(Wire::Google).await;
    fake.push(Reply::text("It is 4.").usage(17, 5).finish(Finish::Length));
    let provider = provider(&config_for(&fake), ProviderKind::Google);

    let answer = provider
        .complete(&request("gemini-2.0-flash"))
        .await
        .unwrap();
    assert_eq!(answer.content, "It is 4.");
    assert_eq!(answer.usage, TokenUsage::reported(17, 5));
    assert_eq!(answer.finish_reason, FinishReason::Length);
    assert_eq!(answer.model, "gemini-2.0-flash");

    let sent = &fake.requests()[0];
    assert_eq!(sent.path, "/v1beta/models/gemini-2.0-flash:generateContent");
    assert_eq!(sent.query, "", "the key never travels in the URL");
    assert_gemini_request(sent);
}

#[tokio::test]
async fn stream_generate_content_over_sse_with_crlf_events() {
    let fake = start(Wire::Google).await;
    let text = "Gemini ends its stream without a marker.";
    fake.push(
        Reply::text(text)
            .usage(12, 8)
            .chunks(4)
            .finish(Finish::Length),
    );
    let provider = provider(&config_for(&fake), ProviderKind::Google);

    let got = collect(provider.as_ref(), &request("gemini-1.5-pro")).await;
    assert!(got.error.is_none(), "{:?}", got.error);
    assert_eq!(got.text, text);
    assert_eq!(
        finished(&got.events),
        &StreamEvent::Finished {
            usage: TokenUsage::reported(12, 8),
            finish_reason: FinishReason::Length,
            model: "gemini-1.5-pro".into(),
        }
    );
    let sent = &fake.requests()[0];
    assert_eq!(
        sent.path,
        "/v1beta/models/gemini-1.5-pro:streamGenerateContent"
    );
    assert_eq!(sent.query, "alt=sse", "and never the key");
    assert_gemini_request(sent);
}

/// The key header and the body for [`request`] (the same whole or streamed).
fn assert_gemini_request(sent: &RecordedRequest) {
    assert_eq!(sent.header("x-goog-api-key"), Some(GOOGLE_KEY));
    assert_eq!(
        sent.body,
        json!({
            "contents": [
                {"role": "user", "parts": [{"text": "Hi"}]},
                {"role": "model", "parts": [{"text": "Hello!"}]},
                {"role": "user", "parts": [{"text": "What is 2+2?"}]}
            ],
            "systemInstruction": {"parts": [{"text": "You are terse."}]},
            "generationConfig": {"temperature": 0.3, "maxOutputTokens": 256}
        })
    );
}

#[tokio::test]
async fn a_gemini_stream_without_usage_is_estimated() {
    let fake = start(Wire::Google).await;
    fake.push(Reply::text("abcdabcd").without_usage().chunks(2));
    let provider = provider(&config_for(&fake), ProviderKind::Google);
    let got = collect(provider.as_ref(), &request("gemini-2.0-flash")).await;
    let StreamEvent::Finished { usage, .. } = finished(&got.events) else {
        unreachable!()
    };
    assert!(usage.is_estimated);
    assert_eq!(usage.output_tokens, 2);
}
