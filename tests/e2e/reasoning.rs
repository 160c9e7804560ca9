//! An Anthropic specialist that thinks, through the OpenAI door: its reasoning is never
//! delivered as answer text, and it is billed as the output it is.

use std::time::Duration;

use e2e_support::{TestApp, catalogue, read_sse, specialist};
use fake_upstreams::{FakeUpstream, Reply, Wire};
use futures_util::StreamExt;
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::time::Instant;

/// `claude` on the anthropic provider, pointed at `fake`.
async fn app(fake: &FakeUpstream) -> TestApp {
    let base_url = fake.base_url().to_owned();
    TestApp::spawn_with(move |settings, dir| {
        std::fs::write(
            dir.join("specialists.json"),
            catalogue([specialist(
                "claude",
                "anthropic",
                "claude-sonnet-4-5",
                "You help.",
                json!({}),
            )]),
        )
        .unwrap();
        settings.providers.anthropic.base_url = base_url;
        settings.providers.anthropic.api_key = Some(SecretString::from("upstream-key"));
    })
    .await
}

fn thinking_reply() -> Reply {
    Reply::text("Four.")
        .thinking("SECRET-THOUGHT about sums", "SIGNATURE-1")
        .redacted_thinking("REDACTED-DATA")
        .usage(20, 90)
}

#[tokio::test]
async fn reasoning_is_never_answer_text_on_the_openai_door_whole_or_streamed() {
    let fake = FakeUpstream::start(Wire::Anthropic).await;
    fake.push(thinking_reply());
    fake.push(thinking_reply());
    let app = app(&fake).await;
    let ask = json!({"role": "user", "content": "2+2?"});

    let response = app
        .post_json(
            "/v1/chat/completions",
            &json!({"model": "claude", "messages": [ask]}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "Four.");
    assert_eq!(body["usage"]["completion_tokens"], 90);
    for hidden in ["SECRET-THOUGHT", "SIGNATURE-1", "REDACTED-DATA"] {
        assert!(!text.contains(hidden), "{hidden} leaked: {text}");
    }

    let sent = Instant::now();
    let response = app
        .post_json(
            "/v1/chat/completions",
            &json!({"model": "claude", "messages": [ask], "stream": true,
                    "stream_options": {"include_usage": true}}),
        )
        .await;
    let events = read_sse(response, sent).await;
    let mut streamed = String::new();
    for event in &events {
        for hidden in ["SECRET-THOUGHT", "SIGNATURE-1", "REDACTED-DATA"] {
            assert!(
                !event.data.contains(hidden),
                "{hidden} leaked: {}",
                event.data
            );
        }
        if event.data != "[DONE]"
            && let Some(piece) = event.json()["choices"][0]["delta"]["content"].as_str()
        {
            streamed.push_str(piece);
        }
    }
    assert_eq!(streamed, "Four.");
    let rows = app.wait_for_usage_rows(2).await;
    assert!(rows.iter().all(|r| r.success && r.output_tokens == 90));
}

#[tokio::test]
async fn a_client_leaving_after_reasoning_is_billed_for_the_reasoning() {
    let fake = FakeUpstream::start(Wire::Anthropic).await;
    // 400 characters of thinking come at once; the text then trickles.
    fake.push(
        Reply::text("a b c d e f g h")
            .thinking("t".repeat(400), "sig")
            .chunks(8)
            .chunk_delay(Duration::from_millis(300)),
    );
    let app = app(&fake).await;
    let response = app
        .post_json(
            "/v1/chat/completions",
            &json!({"model": "claude", "stream": true, "user": "leaver",
                    "messages": [{"role": "user", "content": "Letters?"}]}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("\"content\":\"a") {
        let chunk = body.next().await.unwrap().unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(
        !seen.contains("tttt"),
        "reasoning is not answer text: {seen}"
    );
    drop(body);

    assert!(
        fake.wait_for_streams_closed(1, Duration::from_secs(2))
            .await,
        "the upstream connection closes when the client leaves"
    );
    let rows = app.wait_for_usage_rows(1).await;
    let row = &rows[0];
    assert_eq!(row.error_code.as_deref(), Some("client_disconnected"));
    assert!(row.tokens_estimated);
    // The 400 characters of thinking (100 tokens at four characters to a token) and what of
    // the text was out: without the reasoning the estimate would be a token or two.
    assert!(
        (100..=104).contains(&row.output_tokens),
        "{}",
        row.output_tokens
    );
}
