//! A specialist whose provider key is missing is refused by the registry before any upstream
//! call starts, the same way at every door: 503 `provider_not_configured` naming the variable,
//! one failed usage row, no request to the upstream and no upstream latency sample.

use e2e_support::TestApp;
use fake_upstreams::{FakeUpstream, Wire};
use serde_json::json;

#[tokio::test]
async fn a_missing_key_is_refused_before_the_upstream_at_every_door() {
    let fake = FakeUpstream::start(Wire::OpenAi).await;
    fake.expect_calls(0); // Nothing is sent without a key.
    let base_url = fake.base_url().to_owned();
    // The OpenAI endpoint points at the fake but no key is set, and no xAI key either.
    let app = TestApp::spawn_with(move |settings, _| {
        settings.providers.openai.base_url = base_url;
    })
    .await;

    let v1 = |model: &str, stream: bool| json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]});
    let native = |specialist: &str| json!({"specialist_id": specialist, "message": "hi"});
    let calls = [
        ("/chat/send", native("financial_analyst"), "OPENAI_API_KEY"),
        (
            "/chat/stream",
            native("financial_analyst"),
            "OPENAI_API_KEY",
        ),
        (
            "/v1/chat/completions",
            v1("financial_analyst", false),
            "OPENAI_API_KEY",
        ),
        (
            "/v1/chat/completions",
            v1("financial_analyst", true),
            "OPENAI_API_KEY",
        ),
        // `grok_analyst` is on the openai provider with base_url api.x.ai: the xAI key.
        ("/chat/send", native("grok_analyst"), "XAI_API_KEY"),
        (
            "/v1/chat/completions",
            v1("grok_analyst", true),
            "XAI_API_KEY",
        ),
    ];
    for (path, body, variable) in &calls {
        let response = app.post_json(path, body).await;
        assert_eq!(response.status(), 503, "{path} {body}");
        // Both error shapes (native and OpenAI's) keep `code` and `message` under `error`.
        let body: serde_json::Value = response.json().await.unwrap();
        let error = &body["error"];
        assert_eq!(error["code"], "provider_not_configured", "{path} {body}");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.contains(variable), "{path} {body}: {error}");
    }

    let rows = app.wait_for_usage_rows(calls.len()).await;
    assert_eq!(rows.len(), calls.len());
    for row in &rows {
        assert!(!row.success);
        assert_eq!(row.provider, "openai");
        assert_eq!(row.error_code.as_deref(), Some("provider_not_configured"));
        assert_eq!((row.input_tokens, row.output_tokens), (0, 0));
    }
    let metrics = app.metrics().await;
    let latency_samples = metrics
        .get("commander_upstream_duration_seconds_count{provider=\"openai\"}")
        .copied()
        .unwrap_or(0.0);
    assert_eq!(
        latency_samples, 0.0,
        "no upstream call, no upstream latency"
    );
}
