//! `POST /chat/stream`: server-sent events, and exactly one usage row however the stream ends.

use std::num::NonZeroU32;
use std::time::Duration;

use core_domain::AccessRole;
use e2e_support::{SseEvent, TestApp, catalogue, error_body, read_sse, specialist};
use fake_upstreams::{FakeUpstream, Reply, Wire};
use futures_util::StreamExt;
use http_api::{ApiKeyConfig, AuthMode};
use secrecy::SecretString;
use serde_json::json;
use sha2::Digest;
use tokio::time::Instant;

/// One specialist per provider; `analyst` and `demo` priced by their own pricing.
fn stream_catalogue() -> String {
    let priced = |input: f64, output: f64| json!({"pricing": {"input_per_1m": input, "output_per_1m": output}});
    catalogue([
        specialist("analyst", "openai", "gpt-4o", "Analyse.", priced(2.5, 10.0)),
        specialist(
            "reviewer",
            "anthropic",
            "claude-3-haiku",
            "Review.",
            json!({}),
        ),
        specialist("gemini", "google", "gemini-1.5-flash", "Help.", json!({})),
        specialist("demo", "mock", "mock-echo", "Echo.", priced(0.0, 0.0)),
    ])
}

/// The app with every provider pointed at `fake` (only the matching wire answers).
async fn app_with(fake: Option<&FakeUpstream>, idle_timeout_ms: u64) -> TestApp {
    let base_url = fake.map(|f| f.base_url().to_owned());
    TestApp::spawn_with(move |settings, dir| {
        std::fs::write(dir.join("specialists.json"), stream_catalogue()).unwrap();
        settings.providers.mock.chunk_count = 6;
        if let Some(base_url) = base_url {
            for upstream in [
                &mut settings.providers.openai,
                &mut settings.providers.anthropic,
                &mut settings.providers.google,
            ] {
                upstream.base_url = base_url.clone();
                upstream.api_key = Some(SecretString::from("test-key"));
                upstream.retry_base_delay_ms = 10;
                upstream.idle_timeout_ms = idle_timeout_ms;
            }
        }
    })
    .await
}

/// The app with a keep-alive comment after one second of silence and the openai provider on
/// `fake`, its settings adjusted by `openai`.
async fn app_with_quick_keep_alive(
    fake: &FakeUpstream,
    openai: impl FnOnce(&mut providers::UpstreamConfig),
) -> TestApp {
    let base_url = fake.base_url().to_owned();
    TestApp::spawn_with(move |settings, dir| {
        std::fs::write(dir.join("specialists.json"), stream_catalogue()).unwrap();
        settings.server.sse_keep_alive_seconds = 1;
        settings.providers.openai.base_url = base_url;
        settings.providers.openai.api_key = Some(SecretString::from("k"));
        openai(&mut settings.providers.openai);
    })
    .await
}

async fn start_stream(app: &TestApp, specialist: &str, request_id: &str) -> reqwest::Response {
    app.client
        .post(app.url("/chat/stream"))
        .header("x-request-id", request_id)
        .json(
            &json!({"specialist_id": specialist, "message": "Stream it, please.",
                      "conversation_history": [{"role": "user", "content": "Hi"},
                                               {"role": "assistant", "content": "Hello."}]}),
        )
        .send()
        .await
        .unwrap()
}

async fn stream(app: &TestApp, specialist: &str, request_id: &str) -> Vec<SseEvent> {
    let sent = Instant::now();
    read_sse(start_stream(app, specialist, request_id).await, sent).await
}

/// Checks the shape of a successful stream and returns (text, final chunk).
fn assert_complete(events: &[SseEvent]) -> (String, serde_json::Value) {
    assert!(events.len() >= 2, "{events:?}");
    let (last, deltas) = events.split_last().unwrap();
    let mut text = String::new();
    for delta in deltas {
        assert_eq!(delta.event, "message", "{delta:?}");
        let chunk = delta.json();
        assert_eq!(chunk["is_final"], false);
        assert_eq!(chunk["input_tokens"], serde_json::Value::Null);
        text.push_str(chunk["content"].as_str().unwrap());
    }
    assert_eq!(last.event, "message");
    let last = last.json();
    assert_eq!(last["is_final"], true);
    assert_eq!(last["content"], "");
    assert!(last["latency_ms"].as_f64().unwrap() >= 0.0);
    assert!(last["estimated_cost_usd"].is_number());
    (text, last)
}

#[tokio::test]
async fn demo_stream_matches_the_whole_answer_and_logs_one_streamed_row() {
    let app = app_with(None, 5_000).await;
    let whole: serde_json::Value = app
        .post_json(
            "/chat/send",
            &json!({"specialist_id": "demo", "message": "Stream it, please.",
                    "conversation_history": [{"role": "user", "content": "Hi"},
                                             {"role": "assistant", "content": "Hello."}]}),
        )
        .await
        .json()
        .await
        .unwrap();

    let events = stream(&app, "demo", "stream-demo").await;
    assert_eq!(events.len(), 7, "6 chunks and the final one: {events:?}");
    let (text, last) = assert_complete(&events);
    assert_eq!(text, whole["content"].as_str().unwrap());
    assert_eq!(last["input_tokens"], whole["input_tokens"]);
    assert_eq!(last["output_tokens"], whole["output_tokens"]);
    assert_eq!(last["model"], "mock-echo");
    assert_eq!(last["finish_reason"], "stop");

    let rows = app.usage_rows().await;
    assert_eq!(rows.len(), 2);
    let row = rows
        .iter()
        .find(|r| r.client_request_id.as_deref() == Some("stream-demo"))
        .unwrap();
    assert_eq!(
        last["request_id"],
        row.request_id.as_str(),
        "the call's own id"
    );
    assert!(row.streamed && row.success);
    assert_eq!(row.input_tokens, last["input_tokens"].as_i64().unwrap());
    assert_eq!(row.output_tokens, last["output_tokens"].as_i64().unwrap());
    let ttft = row
        .ttft_ms
        .expect("time to first token is recorded for streams");
    assert!(ttft <= row.latency_ms, "{ttft} > {}", row.latency_ms);
}

#[tokio::test]
async fn every_provider_streams_through_the_gateway() {
    for (wire, specialist, cost) in [
        (Wire::OpenAi, "analyst", 40.0 * 2.5e-6 + 12.0 * 10e-6),
        // claude-3-haiku from the table: $0.25 / $1.25 per 1M.
        (Wire::Anthropic, "reviewer", 40.0 * 0.25e-6 + 12.0 * 1.25e-6),
        // gemini-1.5-flash: $0.075 / $0.30 per 1M.
        (Wire::Google, "gemini", 40.0 * 0.075e-6 + 12.0 * 0.30e-6),
    ] {
        let fake = FakeUpstream::start(wire).await;
        let text = format!("{wire:?} says: the quarter closed up 4%, with margins steady.");
        fake.push(
            Reply::text(&text)
                .usage(40, 12)
                .chunks(5)
                .finish(fake_upstreams::Finish::Length),
        );
        let app = app_with(Some(&fake), 5_000).await;
        let events = stream(&app, specialist, "s1").await;
        assert_eq!(events.len(), 6, "{wire:?}: 5 chunks and the final one");
        let (streamed, last) = assert_complete(&events);
        assert_eq!(streamed, text, "{wire:?}");
        assert_eq!(last["input_tokens"], 40, "{wire:?}");
        assert_eq!(last["output_tokens"], 12, "{wire:?}");
        assert_eq!(last["finish_reason"], "length", "{wire:?}");
        // The fake answers as the model it was asked for.
        let model = fake.requests()[0].body["model"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| "gemini-1.5-flash".to_owned());
        assert_eq!(last["model"], model.as_str(), "{wire:?}");
        let charged = last["estimated_cost_usd"].as_f64().unwrap();
        assert!(
            (charged - cost).abs() < 1e-12,
            "{wire:?}: {charged} != {cost}"
        );
        let rows = app.usage_rows().await;
        assert_eq!(rows.len(), 1, "{wire:?}");
        assert!(rows[0].streamed && rows[0].success && !rows[0].tokens_estimated);
        assert_eq!((rows[0].input_tokens, rows[0].output_tokens), (40, 12));
        assert!(
            (rows[0].estimated_cost_usd - cost).abs() < 1e-12,
            "{wire:?}"
        );
        let ttft = rows[0].ttft_ms.expect("time to first token");
        assert!(ttft > 0.0 && ttft <= rows[0].latency_ms, "{wire:?}");
    }
}

#[tokio::test]
async fn an_upstream_that_drops_mid_stream_ends_with_an_error_event_and_a_failed_row() {
    let fake = FakeUpstream::start(Wire::OpenAi).await;
    fake.push(
        Reply::text("one two three four five six")
            .chunks(6)
            .drop_after(3),
    );
    let app = app_with(Some(&fake), 5_000).await;
    let events = stream(&app, "analyst", "dropped").await;

    let (last, deltas) = events.split_last().unwrap();
    assert_eq!(deltas.len(), 3, "{events:?}");
    assert!(deltas.iter().all(|e| e.event == "message"));
    assert_eq!(last.event, "error");
    assert_eq!(last.json()["code"], "upstream_error");
    assert!(
        last.json()["message"]
            .as_str()
            .unwrap()
            .contains("broke off"),
        "{last:?}"
    );

    let rows = app.usage_rows().await;
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert!(!row.success && row.streamed);
    assert_eq!(row.error_code.as_deref(), Some("upstream_error"));
    assert!(row.tokens_estimated);
    assert!(row.input_tokens > 0);
    assert!(row.output_tokens > 0, "the text delivered is counted");
    assert!(row.ttft_ms.is_some());
}

#[tokio::test]
async fn a_failed_stream_is_charged_the_prompt_tokens_the_upstream_reported() {
    // Anthropic counts the prompt in message_start, before any text.
    let fake = FakeUpstream::start(Wire::Anthropic).await;
    fake.push(
        Reply::text("one two three four")
            .usage(1_234, 50)
            .chunks(4)
            .error_event_after(2, "overloaded"),
    );
    fake.push(
        Reply::text("never")
            .usage(777, 1)
            .error_event_after(0, "overloaded at once"),
    );
    let app = app_with(Some(&fake), 5_000).await;

    let events = stream(&app, "reviewer", "mid-stream").await;
    assert_eq!(events.last().unwrap().event, "error");
    let text: String = events
        .iter()
        .filter(|e| e.event == "message")
        .map(|e| e.json()["content"].as_str().unwrap().to_owned())
        .collect();

    // Before any text: an ordinary error response, but the prompt was still consumed.
    let response = start_stream(&app, "reviewer", "at-once").await;
    assert_eq!(response.status(), 502);

    let rows = app.wait_for_usage_rows(2).await;
    let row = |id: &str| {
        rows.iter()
            .find(|r| r.client_request_id.as_deref() == Some(id))
            .unwrap()
    };
    let mid = row("mid-stream");
    assert!(!mid.success && mid.tokens_estimated);
    assert_eq!(
        mid.input_tokens, 1_234,
        "the upstream's count, not our estimate"
    );
    assert_eq!(
        mid.output_tokens,
        i64::from(core_domain::estimate_text_tokens(&text))
    );
    let at_once = row("at-once");
    assert!(!at_once.success);
    assert_eq!(at_once.input_tokens, 777);
    assert_eq!(at_once.output_tokens, 0);
}

#[tokio::test]
async fn a_stalled_upstream_hits_the_idle_timeout_with_an_error_event_and_a_row() {
    let fake = FakeUpstream::start(Wire::Anthropic).await;
    fake.push(Reply::text("first then silence").chunks(3).stall_after(1));
    let app = app_with(Some(&fake), 1_500).await;
    let events = stream(&app, "reviewer", "stalled").await;

    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0].event, "message");
    assert_eq!(events[1].event, "error");
    assert_eq!(events[1].json()["code"], "upstream_timeout");
    // Forwarded as it arrived, not held until the stream ended.
    assert!(
        events[1].at - events[0].at >= Duration::from_millis(1_000),
        "the first chunk came {:?} before the error",
        events[1].at - events[0].at
    );
    let rows = app.usage_rows().await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].error_code.as_deref(), Some("upstream_timeout"));
    assert!(rows[0].streamed && !rows[0].success);
    assert!(rows[0].ttft_ms.is_some(), "the first chunk did arrive");
    assert!(rows[0].output_tokens > 0);
    assert!(
        fake.wait_for_streams_closed(1, Duration::from_secs(2))
            .await,
        "the stalled upstream connection is closed"
    );
}

#[tokio::test]
async fn a_client_that_disconnects_cancels_the_upstream_and_its_row_is_written() {
    let fake = FakeUpstream::start(Wire::OpenAi).await;
    fake.push(
        Reply::text("a b c d e f g h i j k l m n o p q r s t")
            .chunks(20)
            .chunk_delay(Duration::from_millis(200)),
    );
    let app = app_with(Some(&fake), 5_000).await;
    let response = start_stream(&app, "analyst", "walked-away").await;
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("event: message"));
    drop(body);
    let left_at = Instant::now();

    assert!(
        fake.wait_for_streams_closed(1, Duration::from_secs(1))
            .await,
        "the upstream connection must close within a second of the client leaving"
    );
    assert!(left_at.elapsed() < Duration::from_secs(1));

    let rows = app.wait_for_usage_rows(1).await;
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.client_request_id.as_deref(), Some("walked-away"));
    assert_eq!(row.error_code.as_deref(), Some("client_disconnected"));
    assert!(!row.success && row.streamed && row.tokens_estimated);
    assert!(row.input_tokens > 0);
    assert!(
        row.output_tokens > 0,
        "what was delivered before the client left"
    );
    assert!(row.ttft_ms.is_some());
    assert!(fake.request_count() == 1);
}

#[tokio::test]
async fn a_client_that_leaves_before_the_first_token_cancels_the_upstream_too() {
    let fake = FakeUpstream::start(Wire::OpenAi).await;
    fake.push(
        Reply::text("too late")
            .chunks(2)
            .first_chunk_delay(Duration::from_secs(5)),
    );
    let app = app_with(Some(&fake), 10_000).await;
    // Gives up while the gateway is still waiting for the model's first token.
    let gave_up = tokio::time::timeout(
        Duration::from_millis(300),
        start_stream(&app, "analyst", "impatient"),
    )
    .await;
    assert!(gave_up.is_err(), "no response within 300 ms");
    assert!(
        fake.wait_for_streams_closed(1, Duration::from_secs(1))
            .await,
        "the upstream connection must close within a second of the client leaving"
    );
    let rows = app.wait_for_usage_rows(1).await;
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.client_request_id.as_deref(), Some("impatient"));
    assert_eq!(row.error_code.as_deref(), Some("client_disconnected"));
    assert!(!row.success && row.streamed);
    assert_eq!(row.output_tokens, 0);
    assert_eq!(row.ttft_ms, None);
}

#[tokio::test]
async fn errors_before_the_first_byte_are_plain_http_errors() {
    let fake = FakeUpstream::start(Wire::OpenAi).await;
    let app = app_with(Some(&fake), 5_000).await;

    let response = start_stream(&app, "nobody", "r1").await;
    assert_eq!(response.status(), 404);
    assert_eq!(error_body(response).await["code"], "specialist_not_found");

    for _ in 0..3 {
        fake.push(Reply::status(500, "down"));
    }
    let response = start_stream(&app, "analyst", "r2").await;
    assert_eq!(response.status(), 502);
    assert_eq!(error_body(response).await["code"], "upstream_error");

    // An upstream whose very first event is an error: still an ordinary error response.
    fake.push(Reply::text("x").error_event_after(0, "model overloaded"));
    let response = start_stream(&app, "analyst", "r3").await;
    assert_eq!(response.status(), 502);
    let error = error_body(response).await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("model overloaded"),
        "{error}"
    );

    let rows = app.usage_rows().await;
    let codes: Vec<(&str, Option<&str>, bool)> = rows
        .iter()
        .map(|r| {
            (
                r.client_request_id.as_deref().unwrap(),
                r.error_code.as_deref(),
                r.streamed,
            )
        })
        .collect();
    assert_eq!(
        codes,
        [
            ("r2", Some("upstream_error"), true),
            ("r3", Some("upstream_error"), true)
        ]
    );
}

#[tokio::test]
async fn an_upstream_slow_to_answer_at_all_still_gets_the_client_headers_and_keep_alives() {
    let fake = FakeUpstream::start(Wire::OpenAi).await;
    // Response headers withheld for 2.5 s (a server that sends nothing until its first token).
    fake.push(
        Reply::text("late but whole")
            .chunks(2)
            .first_byte_delay(Duration::from_millis(2_500)),
    );
    // Then one that keeps failing: retried with backoff past the keep-alive interval.
    for _ in 0..3 {
        fake.push(Reply::status(503, "warming up"));
    }
    let app = app_with_quick_keep_alive(&fake, |openai| {
        openai.max_retries = 2;
        openai.retry_base_delay_ms = 1_000;
    })
    .await;

    let sent = Instant::now();
    let response = start_stream(&app, "analyst", "slow-headers").await;
    assert_eq!(response.status(), 200);
    assert!(
        sent.elapsed() < Duration::from_millis(2_000),
        "began {:?} after the request",
        sent.elapsed()
    );
    let body = response.text().await.unwrap();
    assert!(body.starts_with(": keep-alive"), "{body}");
    assert!(body.contains("\"is_final\":true"), "{body}");

    // Retries past the interval: the stream has begun, so the failure is an error event.
    let events = stream(&app, "analyst", "retried-out").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].event, "error");
    assert_eq!(events[0].json()["code"], "upstream_error");
    assert_eq!(fake.request_count(), 4);

    let rows = app.wait_for_usage_rows(2).await;
    let row = |id: &str| {
        rows.iter()
            .find(|r| r.client_request_id.as_deref() == Some(id))
            .unwrap()
            .clone()
    };
    assert!(row("slow-headers").success);
    let failed = row("retried-out");
    assert!(!failed.success && failed.streamed);
    assert_eq!(failed.error_code.as_deref(), Some("upstream_error"));
    assert_eq!(
        (failed.input_tokens, failed.output_tokens),
        (0, 0),
        "refused by the upstream: nothing consumed"
    );
}

#[tokio::test]
async fn refusals_known_before_streaming_are_plain_http_errors_auth_validation_and_rate_limit() {
    const KEY: &str = "cmdr_stream_test_key_000000000000000000000000000000000000000000";
    let app = TestApp::spawn_with(|settings, dir| {
        std::fs::write(dir.join("specialists.json"), stream_catalogue()).unwrap();
        settings.auth.mode = AuthMode::Required;
        settings.auth.api_keys = vec![ApiKeyConfig {
            name: "streamer".into(),
            email: "streamer@example.com".into(),
            role: AccessRole::User,
            sha256: hex::encode(sha2::Sha256::digest(KEY.as_bytes())),
        }];
        settings.rate_limit.requests = NonZeroU32::new(2).unwrap();
    })
    .await;
    let post = |body: serde_json::Value, key: Option<&'static str>| {
        let mut request = app.client.post(app.url("/chat/stream")).json(&body);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.send()
    };
    let ask = json!({"specialist_id": "demo", "message": "hi"});

    let response = post(ask.clone(), None).await.unwrap();
    assert_eq!(response.status(), 401);
    assert!(response.headers().contains_key("www-authenticate"));
    assert_eq!(error_body(response).await["code"], "unauthorized");

    let response = post(json!({"specialist_id": "demo", "message": "  "}), Some(KEY))
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "not an event stream"
    );
    assert_eq!(error_body(response).await["code"], "validation_failed");

    let response = post(ask.clone(), Some(KEY)).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("\"is_final\":true"));

    let response = post(ask, Some(KEY)).await.unwrap();
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(error_body(response).await["code"], "rate_limited");

    // Refused before reaching a specialist (as on /chat/send): only the answered call is a row.
    let rows = app.wait_for_usage_rows(1).await;
    let outcomes: Vec<(bool, bool)> = rows.iter().map(|r| (r.success, r.streamed)).collect();
    assert_eq!(outcomes, [(true, true)]);
}

#[tokio::test]
async fn a_provider_without_a_key_is_503_before_streaming_and_logged() {
    let app = app_with(None, 5_000).await;
    let response = start_stream(&app, "analyst", "no-key").await;
    assert_eq!(response.status(), 503);
    assert_eq!(
        error_body(response).await["code"],
        "provider_not_configured"
    );
    let rows = app.usage_rows().await;
    assert_eq!(rows.len(), 1);
    assert!(rows[0].streamed && !rows[0].success);
}

#[tokio::test]
async fn silences_get_keep_alive_comments() {
    let fake = FakeUpstream::start(Wire::OpenAi).await;
    fake.push(
        Reply::text("before after")
            .chunks(2)
            .chunk_delay(Duration::from_millis(2_500)),
    );
    let app = app_with_quick_keep_alive(&fake, |_| {}).await;
    let body = start_stream(&app, "analyst", "quiet")
        .await
        .text()
        .await
        .unwrap();
    assert!(body.contains(": keep-alive"), "{body}");
    assert!(body.contains("\"is_final\":true"), "{body}");
}

#[tokio::test]
async fn two_hundred_concurrent_streams_all_complete_with_two_hundred_rows() {
    // Through a real upstream connection each (the fake OpenAI server), so the client pool
    // and the SSE parsing are under the same load as the relay.
    let fake = FakeUpstream::start(Wire::OpenAi).await;
    let answer = "Two hundred at once, each one whole.";
    fake.set_default(
        Reply::text(answer)
            .chunks(5)
            .chunk_delay(Duration::from_millis(20)),
    );
    let app = app_with(Some(&fake), 5_000).await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let url = app.url("/chat/stream");
    let calls = (0..200).map(|i| {
        let client = client.clone();
        let url = url.clone();
        async move {
            let sent = Instant::now();
            let response = client
                .post(&url)
                .json(&json!({"specialist_id": "analyst", "message": format!("question {i}")}))
                .send()
                .await
                .unwrap();
            let events = read_sse(response, sent).await;
            let (text, _) = assert_complete(&events);
            assert_eq!(text, answer);
        }
    });
    futures_util::future::join_all(calls).await;
    let rows = app.wait_for_usage_rows(200).await;
    assert_eq!(rows.len(), 200);
    assert!(
        rows.iter()
            .all(|r| r.streamed && r.success && !r.tokens_estimated)
    );
    let mut asked: Vec<String> = fake
        .requests()
        .iter()
        .map(|r| {
            r.body["messages"][1]["content"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    asked.sort();
    asked.dedup();
    assert_eq!(asked.len(), 200, "every question reached the upstream once");
}

#[tokio::test]
async fn a_model_thinking_before_its_first_token_gets_headers_and_keep_alives_meanwhile() {
    let fake = FakeUpstream::start(Wire::OpenAi).await;
    fake.push(
        Reply::text("considered answer")
            .chunks(2)
            .first_chunk_delay(Duration::from_millis(2_500)),
    );
    // Then one that thinks past the idle timeout and never answers.
    fake.push(Reply::text("never").stall_after(0));
    let app = app_with_quick_keep_alive(&fake, |openai| openai.idle_timeout_ms = 3_500).await;

    let sent = Instant::now();
    let response = start_stream(&app, "analyst", "thinker").await;
    assert_eq!(response.status(), 200);
    assert!(
        sent.elapsed() < Duration::from_millis(2_000),
        "the response began {:?} after the request, not after the first token",
        sent.elapsed()
    );
    let body = response.text().await.unwrap();
    let keep_alive = body.find(": keep-alive").expect("a keep-alive comment");
    let first_message = body.find("event: message").expect("a message");
    assert!(keep_alive < first_message, "{body}");
    assert!(body.contains("\"is_final\":true"), "{body}");

    // Committed to the stream, a failure afterwards is an error event, and still one row.
    let events = stream(&app, "analyst", "silent").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].event, "error");
    assert_eq!(events[0].json()["code"], "upstream_timeout");

    let rows = app.wait_for_usage_rows(2).await;
    let by_id = |id: &str| {
        rows.iter()
            .find(|r| r.client_request_id.as_deref() == Some(id))
            .unwrap()
            .clone()
    };
    let thinker = by_id("thinker");
    assert!(thinker.success && thinker.streamed);
    assert!(thinker.ttft_ms.unwrap() >= 2_400.0, "{thinker:?}");
    let silent = by_id("silent");
    assert!(!silent.success && silent.streamed);
    assert_eq!(silent.error_code.as_deref(), Some("upstream_timeout"));
    assert_eq!(silent.ttft_ms, None);
}
