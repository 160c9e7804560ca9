//! `/chat/send` through each real provider, against fake upstreams on real sockets.

use std::time::Duration;

use e2e_support::{TestApp, catalogue, error_body, one_per_provider};
use fake_upstreams::{FakeUpstream, Reply, Wire};
use secrecy::SecretString;
use serde_json::json;

/// One specialist per provider; `gemini` has no pricing of its own, so the price table
/// prices it.
fn priced_catalogue() -> String {
    let [mut analyst, reviewer, gemini] = one_per_provider();
    analyst["pricing"] = json!({"input_per_1m": 2.5, "output_per_1m": 10.0});
    catalogue([analyst, reviewer, gemini])
}

async fn app_with(fake: &FakeUpstream, wire: Wire) -> TestApp {
    let base_url = fake.base_url().to_owned();
    TestApp::spawn_with(move |settings, dir| {
        std::fs::write(dir.join("specialists.json"), priced_catalogue()).unwrap();
        let upstream = match wire {
            Wire::OpenAi => &mut settings.providers.openai,
            Wire::Anthropic => &mut settings.providers.anthropic,
            Wire::Google => &mut settings.providers.google,
        };
        upstream.base_url = base_url;
        upstream.api_key = Some(SecretString::from("test-key"));
        upstream.retry_base_delay_ms = 10;
        upstream.first_byte_timeout_ms = 500;
    })
    .await
}

async fn ask(app: &TestApp, specialist: &str) -> reqwest::Response {
    app.post_json(
        "/chat/send",
        &json!({"specialist_id": specialist, "message": "How did Q3 go?",
                "conversation_history": [{"role": "user", "content": "Hello"},
                                         {"role": "assistant", "content": "Hi."}]}),
    )
    .await
}

#[tokio::test]
async fn openai_specialist_answers_with_upstream_usage_and_its_own_price() {
    let fake = FakeUpstream::start(Wire::OpenAi).await;
    fake.push(Reply::text("Revenue grew 12%.").usage(1000, 500));
    let app = app_with(&fake, Wire::OpenAi).await;

    let response = ask(&app, "analyst").await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["content"], "Revenue grew 12%.");
    assert_eq!(body["provider"], "openai");
    assert_eq!(body["model"], "gpt-4o");
    assert_eq!(body["input_tokens"], 1000);
    assert_eq!(body["output_tokens"], 500);
    // 1000 × $2.50/1M + 500 × $10/1M
    assert_eq!(body["estimated_cost_usd"], 0.0075);

    let sent = &fake.requests()[0].body;
    assert_eq!(
        sent["messages"][0],
        json!({"role": "system", "content": "Analyse."})
    );
    assert_eq!(
        sent["messages"][3],
        json!({"role": "user", "content": "How did Q3 go?"})
    );
    assert_eq!(sent["temperature"], 0.3);
    assert_eq!(sent["max_tokens"], 300);

    let rows = app.usage_rows().await;
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].input_tokens, rows[0].output_tokens), (1000, 500));
    assert_eq!(rows[0].estimated_cost_usd, 0.0075);
    assert!(rows[0].success && !rows[0].tokens_estimated);
}

#[tokio::test]
async fn anthropic_specialist_is_priced_from_the_table() {
    let fake = FakeUpstream::start(Wire::Anthropic).await;
    fake.push(Reply::text("Looks fine.").usage(2000, 100));
    let app = app_with(&fake, Wire::Anthropic).await;
    let response = ask(&app, "reviewer").await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["content"], "Looks fine.");
    // claude-3-sonnet: $3 / $15 per 1M.
    assert_eq!(body["estimated_cost_usd"], 0.0075);
    assert_eq!(fake.requests()[0].body["system"], "Review.");
    let rows = app.usage_rows().await;
    assert_eq!(rows[0].provider, "anthropic");
    assert!(rows[0].pricing_known);
}

#[tokio::test]
async fn google_specialist_answers() {
    let fake = FakeUpstream::start(Wire::Google).await;
    fake.push(Reply::text("Q3 was strong.").usage(100_000, 10_000));
    let app = app_with(&fake, Wire::Google).await;
    let response = ask(&app, "gemini").await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["content"], "Q3 was strong.");
    // gemini-2.0-flash: $0.10 / $0.40 per 1M.
    assert_eq!(body["estimated_cost_usd"], 0.014);
    assert_eq!(
        fake.requests()[0].path,
        "/v1beta/models/gemini-2.0-flash:generateContent"
    );
}

#[tokio::test]
async fn upstream_failures_map_to_gateway_statuses_and_are_logged() {
    let fake = FakeUpstream::start(Wire::OpenAi).await;
    let app = app_with(&fake, Wire::OpenAi).await;

    for _ in 0..3 {
        fake.push(Reply::status(500, "upstream exploded"));
    }
    let response = ask(&app, "analyst").await;
    assert_eq!(response.status(), 502);
    let error = error_body(response).await;
    assert_eq!(error["code"], "upstream_error");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("upstream exploded"),
        "{error}"
    );

    fake.push(Reply::text("slow").first_byte_delay(Duration::from_secs(2)));
    let response = ask(&app, "analyst").await;
    assert_eq!(response.status(), 504);
    assert_eq!(error_body(response).await["code"], "upstream_timeout");

    fake.push(Reply::status(429, "quota").retry_after("120"));
    let response = ask(&app, "analyst").await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "120");
    assert_eq!(error_body(response).await["code"], "upstream_rate_limited");

    fake.push(Reply::status(401, "invalid x-api-key"));
    let response = ask(&app, "analyst").await;
    assert_eq!(response.status(), 502);
    assert_eq!(error_body(response).await["code"], "upstream_auth_failed");

    let rows = app.usage_rows().await;
    let codes: Vec<Option<&str>> = rows.iter().map(|r| r.error_code.as_deref()).collect();
    assert_eq!(
        codes,
        [
            Some("upstream_error"),
            Some("upstream_timeout"),
            Some("upstream_rate_limited"),
            Some("upstream_auth_failed")
        ]
    );
    assert!(rows.iter().all(|r| !r.success));
    // A timed-out call may have reached the model: its prompt is charged, estimated.
    assert!(rows[1].tokens_estimated && rows[1].input_tokens > 0);
    assert_eq!((rows[0].input_tokens, rows[2].input_tokens), (0, 0));
}

/// A connection that cannot be made proves the request never reached the model: the row says
/// so with zero tokens, whole or streamed (a call that timed out once connected is charged its
/// prompt, above).
#[tokio::test]
async fn an_unreachable_upstream_is_a_502_whose_row_bills_nothing() {
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let app = TestApp::spawn_with(move |settings, dir| {
        std::fs::write(dir.join("specialists.json"), priced_catalogue()).unwrap();
        let openai = &mut settings.providers.openai;
        openai.base_url = format!("http://127.0.0.1:{closed_port}/v1");
        openai.api_key = Some(SecretString::from("test-key"));
        openai.retry_base_delay_ms = 1;
    })
    .await;

    for route in ["/chat/send", "/chat/stream"] {
        let response = app
            .post_json(
                route,
                &json!({"specialist_id": "analyst", "message": "Hello?"}),
            )
            .await;
        assert_eq!(response.status(), 502, "{route}");
        assert_eq!(error_body(response).await["code"], "upstream_error");
    }
    let rows = app.wait_for_usage_rows(2).await;
    for row in &rows {
        assert_eq!(row.error_code.as_deref(), Some("upstream_error"));
        assert_eq!((row.input_tokens, row.output_tokens), (0, 0), "{row:?}");
    }
    assert_eq!(
        rows.iter().map(|r| r.streamed).collect::<Vec<_>>(),
        [false, true]
    );
}
