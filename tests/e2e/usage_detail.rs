//! What modern models bill apart (issue 18 item 5): cached prompt tokens are priced at the cached
//! price on `/v1` whole and streamed, and the row carries the cache and reasoning counts and the
//! caller's `user`.

use e2e_support::{TestApp, catalogue, read_sse, specialist};
use fake_upstreams::{FakeUpstream, Reply, Wire};
use secrecy::SecretString;
use serde_json::json;
use tokio::time::Instant;

/// `analyst` on the openai provider (gpt-4o: $2.50 input, $1.25 cached, $10 output per 1M).
async fn app(fake: &FakeUpstream) -> TestApp {
    let base_url = fake.base_url().to_owned();
    TestApp::spawn_with(move |settings, dir| {
        std::fs::write(
            dir.join("specialists.json"),
            catalogue([specialist(
                "analyst",
                "openai",
                "gpt-4o",
                "You analyse.",
                json!({}),
            )]),
        )
        .unwrap();
        settings.providers.openai.base_url = base_url;
        settings.providers.openai.api_key = Some(SecretString::from("upstream-key"));
    })
    .await
}

/// 1000 prompt tokens of which 400 cached, 100 output of which 30 reasoning.
fn cached_reply() -> Reply {
    Reply::text("From the cache.")
        .usage(1000, 100)
        .cache_usage(400, 0)
        .reasoning_usage(30)
}

/// 600 uncached × 2500 + 400 cached × 1250 + 100 output × 10 000 nano-dollars (uncached it
/// would be 3 500 000).
const CACHED_COST_NANOS: f64 = 3_000_000.0;

#[tokio::test]
async fn cached_tokens_are_priced_at_the_cached_price_whole_and_streamed() {
    let fake = FakeUpstream::start(Wire::OpenAi).await;
    fake.push(cached_reply());
    fake.push(cached_reply());
    let app = app(&fake).await;
    let messages = json!([{"role": "user", "content": "Again?"}]);

    let response = app
        .post_json(
            "/v1/chat/completions",
            &json!({"model": "analyst", "messages": messages, "user": "end-user-7"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    // The caller sees the detail as OpenAI reports it.
    let details = |usage: &serde_json::Value| {
        (
            usage["prompt_tokens_details"]["cached_tokens"].clone(),
            usage["completion_tokens_details"]["reasoning_tokens"].clone(),
        )
    };
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(details(&body["usage"]), (json!(400), json!(30)), "{body}");

    let sent_at = Instant::now();
    let response = app
        .post_json(
            "/v1/chat/completions",
            &json!({"model": "analyst", "messages": messages, "stream": true,
                    "stream_options": {"include_usage": true}}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let events = read_sse(response, sent_at).await;
    assert_eq!(events.last().map(|e| e.data.as_str()), Some("[DONE]"));
    let usage_chunk = events[events.len() - 2].json();
    assert_eq!(
        details(&usage_chunk["usage"]),
        (json!(400), json!(30)),
        "{usage_chunk}"
    );

    let mut rows = app.wait_for_usage_rows(2).await;
    rows.sort_by_key(|row| row.streamed);
    for row in &rows {
        assert_eq!(
            (row.input_tokens, row.output_tokens),
            (1000, 100),
            "{row:?}"
        );
        assert_eq!(
            (
                row.cached_input_tokens,
                row.cache_write_tokens,
                row.reasoning_tokens
            ),
            (400, 0, 30),
            "{row:?}"
        );
        assert!(!row.tokens_estimated, "{row:?}");
        assert!(
            (row.estimated_cost_usd * 1e9 - CACHED_COST_NANOS).abs() < 0.5,
            "{row:?}"
        );
    }
    assert!(!rows[0].streamed && rows[1].streamed);
    assert_eq!(rows[0].end_user.as_deref(), Some("end-user-7"));
    assert_eq!(rows[1].end_user, None);
}

/// Each row names the door its call came in by (issue 23): the native door and Chat Completions,
/// whole and streamed; `GET /usage/calls/{id}` and `group_by=door` show it.
#[tokio::test]
async fn every_row_names_the_door_its_call_came_in_by() {
    let app = TestApp::spawn().await;
    assert_eq!(app.chat("demo", "native, whole").await.status(), 200);
    let streamed = app
        .post_json(
            "/chat/stream",
            &json!({"specialist_id": "demo", "message": "native, streamed"}),
        )
        .await;
    assert_eq!(streamed.status(), 200);
    read_sse(streamed, Instant::now()).await;
    for stream in [false, true] {
        let response = app
            .post_json(
                "/v1/chat/completions",
                &json!({"model": "demo", "stream": stream,
                        "messages": [{"role": "user", "content": "openai"}]}),
            )
            .await;
        assert_eq!(response.status(), 200);
        if stream {
            read_sse(response, Instant::now()).await;
        } else {
            response.bytes().await.unwrap();
        }
    }

    let mut rows = app.wait_for_usage_rows(4).await;
    rows.sort_by_key(|row| (row.door.clone(), row.streamed));
    let doors: Vec<(&str, bool)> = rows.iter().map(|r| (r.door.as_str(), r.streamed)).collect();
    assert_eq!(
        doors,
        [
            ("chat_completions", false),
            ("chat_completions", true),
            ("native", false),
            ("native", true)
        ]
    );
    for row in &rows {
        let call = app
            .get_json(&format!("/usage/calls/{}", row.request_id))
            .await;
        assert_eq!(call["door"], row.door.as_str(), "{call}");
    }
    let by_door: serde_json::Value = app
        .usage_summary("?group_by=door")
        .await
        .json()
        .await
        .unwrap();
    let keyed: Vec<(String, i64)> = by_door["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["key"].as_str().unwrap().to_owned(),
                r["requests"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        keyed,
        [("chat_completions".to_owned(), 2), ("native".to_owned(), 2)],
        "{by_door}"
    );
}
