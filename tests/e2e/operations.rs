//! What ops rely on: metrics that count exactly, the OpenAPI document, CORS.

use std::collections::HashMap;

use e2e_support::TestApp;
use fake_upstreams::{FakeUpstream, Reply, Wire};
use secrecy::SecretString;
use serde_json::json;

/// A series' value; it must be exposed (a renamed or missing metric fails, not reads 0).
fn sample(samples: &HashMap<String, f64>, name: &str) -> f64 {
    *samples
        .get(name)
        .unwrap_or_else(|| panic!("{name} is not exposed"))
}

#[tokio::test]
async fn metrics_move_by_exactly_the_calls_made() {
    let fake = FakeUpstream::start(Wire::OpenAi).await;
    let base_url = fake.base_url().to_owned();
    let app = TestApp::spawn_with(move |settings, _| {
        settings.providers.openai.base_url = base_url;
        settings.providers.openai.api_key = Some(SecretString::from("k"));
        settings.providers.openai.max_retries = 0;
        settings.rate_limit.requests = std::num::NonZeroU32::new(5).unwrap();
    })
    .await;
    let before = app.metrics().await;

    fake.push(Reply::text("fine").usage(1000, 200));
    fake.push(Reply::text("fine").usage(10, 20));
    fake.push(Reply::status(500, "boom"));
    for _ in 0..3 {
        app.chat("general", "hi").await;
    }
    app.chat("nobody", "hi").await;
    let sent = std::time::Instant::now();
    let streamed = app
        .client
        .post(app.url("/chat/stream"))
        .json(&json!({"specialist_id": "demo", "message": "stream"}))
        .send()
        .await
        .unwrap();
    e2e_support::read_sse(streamed, sent.into()).await;
    // The sixth call of this caller is over the limit of five.
    let refused = app.chat("demo", "hi").await;
    assert_eq!(refused.status(), 429);
    app.usage_rows().await;

    let after = app.metrics().await;
    // A labelled series appears with its first sample, so "before" may lack it; "after" not.
    let moved = |name: &str| sample(&after, name) - before.get(name).copied().unwrap_or(0.0);
    let requests = |status: &str| {
        moved(&format!(
            "commander_http_requests_total{{method=\"POST\",route=\"/chat/send\",status=\"{status}\"}}"
        ))
    };
    assert_eq!(requests("200"), 2.0);
    assert_eq!(requests("502"), 1.0);
    assert_eq!(requests("404"), 1.0);
    assert_eq!(requests("429"), 1.0);
    assert_eq!(
        moved(
            "commander_http_requests_total{method=\"POST\",route=\"/chat/stream\",status=\"200\"}"
        ),
        1.0
    );
    assert_eq!(
        moved("commander_http_request_duration_seconds_count{route=\"/chat/send\"}"),
        5.0
    );
    let tokens = |direction: &str| {
        moved(&format!(
            "commander_tokens_total{{direction=\"{direction}\",model=\"gpt-4o\",provider=\"openai\",specialist=\"general\"}}"
        ))
    };
    assert_eq!(tokens("input"), 1010.0);
    assert_eq!(tokens("output"), 220.0);
    // general: $2.50 / $10 per 1M tokens.
    let cost = moved(
        "commander_cost_usd_total{model=\"gpt-4o\",provider=\"openai\",specialist=\"general\"}",
    );
    assert!(
        (cost - (1010.0 * 2.5e-6 + 220.0 * 10e-6)).abs() < 1e-12,
        "{cost}"
    );
    assert_eq!(
        moved("commander_upstream_errors_total{code=\"upstream_error\",provider=\"openai\"}"),
        1.0
    );
    assert_eq!(
        moved("commander_upstream_duration_seconds_count{provider=\"openai\"}"),
        3.0
    );
    assert_eq!(moved("commander_rate_limited_total{group=\"chat\"}"), 1.0);
    assert_eq!(sample(&after, "commander_streams_in_flight"), 0.0);
    // Four calls reached a specialist (three to general, one stream), each with its row; the
    // unknown specialist and the refused call left none.
    assert_eq!(moved("commander_usage_rows_written_total"), 4.0);
    let batches = moved("commander_usage_batches_total");
    assert!((1.0..=4.0).contains(&batches), "{batches}");
    assert_eq!(sample(&after, "commander_usage_queue_depth"), 0.0);
    assert_eq!(sample(&after, "commander_usage_lag_seconds"), 0.0);
    for untouched in [
        "commander_usage_spilled_total",
        "commander_usage_replayed_total",
        "commander_usage_write_errors_total",
        "commander_usage_journal_errors_total",
        "commander_usage_interrupted_total",
        "commander_usage_repaired_total",
        "commander_usage_dead_lettered_total",
    ] {
        assert_eq!(moved(untouched), 0.0, "{untouched}");
    }
}

#[tokio::test]
async fn streams_in_flight_counts_open_streams_on_both_routes() {
    let fake = FakeUpstream::start(Wire::OpenAi).await;
    let slow = || {
        Reply::text("one two three four")
            .chunks(4)
            .chunk_delay(std::time::Duration::from_secs(1))
    };
    fake.push(slow());
    fake.push(slow());
    let base_url = fake.base_url().to_owned();
    let app = TestApp::spawn_with(move |settings, _| {
        settings.providers.openai.base_url = base_url;
        settings.providers.openai.api_key = Some(SecretString::from("k"));
    })
    .await;
    let open =
        |path: &str, body: serde_json::Value| app.client.post(app.url(path)).json(&body).send();
    let chat = open(
        "/chat/stream",
        json!({"specialist_id": "general", "message": "slowly"}),
    )
    .await
    .unwrap();
    let v1 = open(
        "/v1/chat/completions",
        json!({"model": "general", "stream": true,
               "messages": [{"role": "user", "content": "slowly"}]}),
    )
    .await
    .unwrap();
    assert_eq!((chat.status().as_u16(), v1.status().as_u16()), (200, 200));
    let during = app.metrics().await;
    assert_eq!(sample(&during, "commander_streams_in_flight"), 2.0);
    chat.text().await.unwrap();
    v1.text().await.unwrap();
    let after = app.metrics().await;
    assert_eq!(sample(&after, "commander_streams_in_flight"), 0.0);
    assert_eq!(
        sample(
            &after,
            "commander_http_requests_total{method=\"POST\",route=\"/v1/chat/completions\",status=\"200\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn the_openapi_document_is_served_and_names_every_route() {
    let app = TestApp::spawn().await;
    let doc: serde_json::Value = app.get_json("/openapi.json").await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in http_api::routes() {
        assert!(
            paths[path][method.as_str().to_lowercase()].is_object(),
            "{method} {path} missing from /openapi.json"
        );
    }
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for schema in [
        "ChatRequestBody",
        "ChatResponse",
        "ErrorEnvelope",
        "SpecialistView",
        "ChatCompletion",
    ] {
        assert!(schemas.contains_key(schema), "{schema} missing");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

#[tokio::test]
async fn cors_preflight_is_answered_for_listed_origins_only() {
    let app = TestApp::spawn_with(|settings, _| {
        settings.server.cors_allowed_origins = vec!["https://portal.example.com".into()];
    })
    .await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/chat/send"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type, authorization",
            )
            .send()
    };
    let allowed = preflight("https://portal.example.com").await.unwrap();
    assert!(allowed.status().is_success(), "{}", allowed.status());
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://portal.example.com"
    );
    let methods = allowed.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(methods.contains("POST"), "{methods}");

    let refused = preflight("https://evil.example.net").await.unwrap();
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    assert!(!refused.status().is_success());

    // A real cross-origin call gets the header, and the exposed headers a front end reads.
    let call = app
        .client
        .post(app.url("/chat/send"))
        .header("origin", "https://portal.example.com")
        .json(&json!({"specialist_id": "demo", "message": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        call.headers()["access-control-allow-origin"],
        "https://portal.example.com"
    );
    let exposed = call.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(exposed.contains("x-request-id"), "{exposed}");

    // Without configured origins there is no CORS at all.
    let plain = TestApp::spawn().await;
    let response = plain
        .client
        .request(reqwest::Method::OPTIONS, plain.url("/chat/send"))
        .header("origin", "https://portal.example.com")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_configured_time() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let app = TestApp::spawn_with(|settings, _| settings.server.keep_alive_seconds = 1).await;
    let address = app.url("").trim_start_matches("http://").to_owned();
    let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
    socket
        .write_all(b"GET /health HTTP/1.1\r\nHost: commander\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = vec![0u8; 4096];
    let read = socket.read(&mut buffer).await.unwrap();
    assert!(
        String::from_utf8_lossy(&buffer[..read]).starts_with("HTTP/1.1 200"),
        "kept alive after one answer"
    );
    // Idle: the server closes it after about a second (allow generous slack), not never.
    let started = std::time::Instant::now();
    let closed = tokio::time::timeout(std::time::Duration::from_secs(10), socket.read(&mut buffer))
        .await
        .expect("the idle connection was closed within 10 s");
    assert_eq!(closed.unwrap_or(0), 0, "closed, not answered");
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(500),
        "closed by the keep-alive timeout, not at once: {:?}",
        started.elapsed()
    );
}
