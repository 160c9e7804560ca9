use std::time::Duration;

use e2e_support::{TestApp, catalogue, specialist};
use serde_json::json;

#[tokio::test]
async fn demo_answers_and_exactly_one_matching_usage_row_is_written() {
    let app = TestApp::spawn().await;
    let response = app
        .post_json(
            "/chat/send",
            &json!({"specialist_id": "demo", "message": "What is 2+2?", "conversation_history": [
                {"role": "user", "content": "Hello"},
                {"role": "assistant", "content": "Hi! How can I help?"}
            ]}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let header_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: serde_json::Value = response.json().await.unwrap();

    assert!(
        body["content"]
            .as_str()
            .unwrap()
            .starts_with("You said: \"What is 2+2?\"."),
        "{body}"
    );
    assert_eq!(body["specialist_id"], "demo");
    assert_eq!(body["specialist_name"], "Demo");
    assert_eq!(body["provider"], "mock");
    assert_eq!(body["model"], "mock-echo");
    assert_eq!(body["request_id"], header_id.as_str());
    assert_eq!(body["finish_reason"], "stop");
    assert_eq!(body["estimated_cost_usd"], 0.0);
    let input_tokens = body["input_tokens"].as_i64().unwrap();
    let output_tokens = body["output_tokens"].as_i64().unwrap();
    assert!(input_tokens > 0 && output_tokens > 0, "{body}");
    assert!(body["latency_ms"].as_f64().unwrap() >= 0.0);

    let rows = app.usage_rows().await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(row.request_id, header_id);
    assert_eq!(row.specialist_id, "demo");
    assert_eq!(row.specialist_name, "Demo");
    assert_eq!(row.provider, "mock");
    assert_eq!(row.model, "mock-echo");
    assert_eq!(row.input_tokens, input_tokens);
    assert_eq!(row.output_tokens, output_tokens);
    assert_eq!(row.estimated_cost_usd, 0.0);
    assert!(row.pricing_known);
    assert!(row.success);
    assert_eq!(row.error_code, None);
    assert!(!row.streamed);
    assert_eq!(row.ttft_ms, None);
    assert_eq!(
        row.user_email_hash, None,
        "auth is disabled: the anonymous caller"
    );
}

#[tokio::test]
async fn cost_follows_the_specialists_pricing() {
    let app = TestApp::spawn_with(|_, dir| {
        std::fs::write(
            dir.join("specialists.json"),
            catalogue([specialist(
                "priced",
                "mock",
                "mock-echo",
                "Be brief.",
                json!({"pricing": {"input_per_1m": 1000.0, "output_per_1m": 2000.0}}),
            )]),
        )
        .unwrap();
    })
    .await;
    let response = app.chat("priced", "price me").await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    let input = body["input_tokens"].as_f64().unwrap();
    let output = body["output_tokens"].as_f64().unwrap();
    let expected = (input * 1000.0 + output * 2000.0) / 1_000_000.0;
    let cost = body["estimated_cost_usd"].as_f64().unwrap();
    assert!((cost - expected).abs() < 1e-9, "{cost} != {expected}");
    let rows = app.usage_rows().await;
    assert!((rows[0].estimated_cost_usd - expected).abs() < 1e-9);
}

/// The response's `X-Request-Id`, which must also be the usage row's key.
fn header_id(response: &reqwest::Response) -> String {
    response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_caller_request_id_is_echoed_and_stored_beside_ours_and_an_unsafe_one_dropped() {
    let app = TestApp::spawn().await;
    let body = json!({"specialist_id": "demo", "message": "hi"});
    let send = |headers: &[(&'static str, &'static str)]| {
        let mut request = app.client.post(app.url("/chat/send")).json(&body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send()
    };

    // A proxy's X-Request-Id is taken as the caller's id; ours is a fresh UUID.
    let proxied = send(&[("x-request-id", "trace-42.abc")]).await.unwrap();
    assert_eq!(proxied.headers()["x-client-request-id"], "trace-42.abc");
    let proxied_id = header_id(&proxied);
    assert_eq!(proxied_id.len(), 36, "a fresh UUID: {proxied_id}");
    let answer: serde_json::Value = proxied.json().await.unwrap();
    assert_eq!(answer["request_id"], proxied_id.as_str());

    // X-Client-Request-Id wins over X-Request-Id.
    let both = send(&[
        ("x-client-request-id", "client-1"),
        ("x-request-id", "proxy-1"),
    ])
    .await
    .unwrap();
    assert_eq!(both.headers()["x-client-request-id"], "client-1");
    let both_id = header_id(&both);

    // An id outside the safe alphabet is dropped, never echoed or stored.
    let unsafe_one = send(&[("x-client-request-id", "<script>alert(1)</script>")])
        .await
        .unwrap();
    assert!(!unsafe_one.headers().contains_key("x-client-request-id"));
    let unsafe_id = header_id(&unsafe_one);

    let rows = app.usage_rows().await;
    let ids: Vec<(&str, Option<&str>)> = rows
        .iter()
        .map(|r| (r.request_id.as_str(), r.client_request_id.as_deref()))
        .collect();
    assert_eq!(
        ids,
        [
            (proxied_id.as_str(), Some("trace-42.abc")),
            (both_id.as_str(), Some("client-1")),
            (unsafe_id.as_str(), None),
        ]
    );
}

#[tokio::test]
async fn a_reused_caller_request_id_still_logs_every_call() {
    let app = TestApp::spawn().await;
    let mut ours = Vec::new();
    for _ in 0..2 {
        let response = app
            .client
            .post(app.url("/chat/send"))
            .header("x-client-request-id", "same-id")
            .json(&json!({"specialist_id": "demo", "message": "hi"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        ours.push(header_id(&response));
    }
    assert_ne!(ours[0], ours[1], "each call has its own id");
    let rows = app.usage_rows().await;
    assert_eq!(rows.len(), 2, "both calls are logged and billed");
    for (row, id) in rows.iter().zip(&ours) {
        assert_eq!(&row.request_id, id);
        assert_eq!(row.client_request_id.as_deref(), Some("same-id"));
    }
}

#[tokio::test]
async fn a_client_that_disconnects_still_gets_its_call_logged() {
    let app = TestApp::spawn_with(|settings, _| settings.providers.mock.latency_ms = 2_000).await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let outcome = impatient
        .post(app.url("/chat/send"))
        .header("x-request-id", "gone-early")
        .json(&json!({"specialist_id": "demo", "message": "too slow"}))
        .send()
        .await;
    assert!(outcome.unwrap_err().is_timeout());

    let rows = app.wait_for_usage_rows(1).await;
    assert_eq!(rows.len(), 1, "the cancelled call must still be logged");
    let row = &rows[0];
    assert_eq!(row.client_request_id.as_deref(), Some("gone-early"));
    assert!(!row.success);
    assert_eq!(row.error_code.as_deref(), Some("client_disconnected"));
    assert!(row.tokens_estimated);
    assert!(row.input_tokens > 0, "the prompt's tokens are estimated");
    assert_eq!(row.output_tokens, 0, "nothing was delivered");
    assert!(
        row.latency_ms < 2_000.0,
        "logged when the client left: {}",
        row.latency_ms
    );
}

#[tokio::test]
async fn health_and_ready_answer() {
    let app = TestApp::spawn().await;
    let health = app.get("/health").await;
    assert_eq!(health.status(), 200);
    assert!(health.headers().contains_key("x-request-id"));
    assert_eq!(
        health.json::<serde_json::Value>().await.unwrap()["status"],
        "ok"
    );
    let ready = app.get("/ready").await;
    assert_eq!(ready.status(), 200);
    let ready = ready.json::<serde_json::Value>().await.unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["catalogue_store"], "file", "{ready}");
}
