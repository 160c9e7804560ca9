//! The Anthropic Messages door (issue 23): `POST /v1/messages` and `/v1/messages/count_tokens`
//! against specialists on each provider's fake — Anthropic's shapes, statuses and event
//! sequence; translation for OpenAI and Gemini and its refusals; `x-api-key`.

use std::collections::BTreeSet;

use core_domain::{AccessRole, BudgetDraft};
use e2e_support::{TestApp, catalogue, read_sse, specialist};
use fake_upstreams::{FakeUpstream, Reply, Wire};
use http_api::{ApiKeyConfig, AuthMode};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::time::Instant;

const KEY: &str = "cmdr_messages_test_key_00000000000000000000000000000000000000000";
const WIRES: [Wire; 3] = [Wire::OpenAi, Wire::Anthropic, Wire::Google];

/// The specialist on `wire`'s provider, and its upstream model.
fn on(wire: Wire) -> (&'static str, &'static str, &'static str) {
    match wire {
        Wire::OpenAi => ("analyst", "openai", "gpt-4o-mini"),
        Wire::Anthropic => ("claude", "anthropic", "claude-sonnet-4-5-20250929"),
        Wire::Google => ("gemini", "google", "gemini-2.5-flash"),
    }
}

/// The app with one specialist on `wire`'s provider pointed at `fake` (temperature 0.5, at
/// most 1000 tokens, aliased `claude-sonnet-4-5` on Anthropic), then `customize`.
async fn app_with(
    fake: &FakeUpstream,
    wire: Wire,
    customize: impl FnOnce(&mut commander::Settings) + Send + 'static,
) -> TestApp {
    let base_url = fake.base_url().to_owned();
    let (id, provider, model) = on(wire);
    let aliases = match wire {
        Wire::Anthropic => json!(["claude-sonnet-4-5"]),
        _ => json!([]),
    };
    TestApp::spawn_with(move |settings, dir| {
        std::fs::write(
            dir.join("specialists.json"),
            catalogue([specialist(
                id,
                provider,
                model,
                "You help.",
                json!({"temperature": 0.5, "max_tokens": 1000, "aliases": aliases}),
            )]),
        )
        .unwrap();
        let upstream = match wire {
            Wire::OpenAi => &mut settings.providers.openai,
            Wire::Anthropic => &mut settings.providers.anthropic,
            Wire::Google => &mut settings.providers.google,
        };
        upstream.base_url = base_url;
        upstream.api_key = Some(SecretString::from("upstream-key"));
        customize(settings);
    })
    .await
}

async fn app(fake: &FakeUpstream, wire: Wire) -> TestApp {
    app_with(fake, wire, |_| {}).await
}

/// Auth required, with [`KEY`] a user's key.
fn require_key(settings: &mut commander::Settings) {
    use sha2::Digest;
    settings.auth.mode = AuthMode::Required;
    settings.auth.api_keys = vec![ApiKeyConfig {
        name: "sdk".into(),
        email: "sdk@example.com".into(),
        role: AccessRole::User,
        sha256: hex::encode(sha2::Sha256::digest(KEY.as_bytes())),
    }];
}

async fn post(app: &TestApp, path: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .header("anthropic-version", "2023-06-01")
        .json(body)
        .send()
        .await
        .unwrap()
}

fn keys(value: &Value) -> BTreeSet<&str> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("an object: {value}"))
        .keys()
        .map(String::as_str)
        .collect()
}

/// Checks `response` is Anthropic's error with `status` and `kind`, and gives its message.
async fn anthropic_error(response: reqwest::Response, status: u16, kind: &str) -> String {
    assert_eq!(response.status(), status);
    assert!(response.headers().contains_key("x-request-id"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(keys(&body), BTreeSet::from(["type", "error"]), "{body}");
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(
        keys(&body["error"]),
        BTreeSet::from(["type", "message"]),
        "{body}"
    );
    assert_eq!(body["error"]["type"], kind, "{body}");
    body["error"]["message"].as_str().unwrap().to_owned()
}

/// The system text the upstream received, whatever its wire's place for it.
fn sent_system(wire: Wire, sent: &Value) -> String {
    match wire {
        Wire::OpenAi => sent["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["role"] == "system")
            .map(|m| m["content"].to_string())
            .collect(),
        Wire::Anthropic => sent["system"].to_string(),
        Wire::Google => sent["systemInstruction"].to_string(),
    }
}

#[tokio::test]
async fn a_whole_message_takes_anthropic_s_shape_from_every_provider() {
    for wire in WIRES {
        let fake = FakeUpstream::start(wire).await;
        fake.push(Reply::text("Revenue grew 4%.").usage(42, 17));
        let app = app(&fake, wire).await;
        let (id, _, model) = on(wire);
        let response = post(
            &app,
            "/v1/messages",
            &json!({"model": id, "max_tokens": 5000, "temperature": 0.9,
                "system": "Be brief.", "metadata": {"user_id": "user-7"},
                "messages": [{"role": "user", "content": "How did Q3 go?"}]}),
        )
        .await;
        assert_eq!(response.status(), 200, "{wire:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            keys(&body),
            BTreeSet::from([
                "id",
                "type",
                "role",
                "model",
                "content",
                "stop_reason",
                "stop_sequence",
                "usage"
            ]),
            "{wire:?}"
        );
        assert!(body["id"].as_str().unwrap().starts_with("msg_"));
        assert_eq!(body["type"], "message");
        assert_eq!(body["role"], "assistant");
        assert_eq!(body["model"], model, "{wire:?}");
        assert_eq!(
            body["content"],
            json!([{"type": "text", "text": "Revenue grew 4%."}]),
            "{wire:?}"
        );
        assert_eq!(body["stop_reason"], "end_turn");
        assert_eq!(body["stop_sequence"], Value::Null);
        assert_eq!(
            body["usage"],
            json!({"input_tokens": 42, "output_tokens": 17,
                   "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}),
            "{wire:?}"
        );

        // The specialist's prompt first, the caller's system after it; temperature and
        // max_tokens never above the specialist's.
        let sent = &fake.requests()[0].body;
        let system = sent_system(wire, sent);
        let (ours, theirs) = (
            system.find("You help.").expect("the specialist's prompt"),
            system.find("Be brief.").expect("the caller's system"),
        );
        assert!(ours < theirs, "{wire:?}: {system}");
        match wire {
            Wire::Google => {
                assert_eq!(sent["generationConfig"]["maxOutputTokens"], 1000);
                assert_eq!(sent["generationConfig"]["temperature"], 0.5);
            }
            _ => {
                assert_eq!(sent["max_tokens"], 1000, "{wire:?}");
                assert_eq!(sent["temperature"], 0.5, "{wire:?}");
            }
        }

        // One usage row, recorded as this door's, with the end user.
        let rows = app.usage_rows().await;
        assert_eq!(rows.len(), 1);
        let row = &rows[0];
        assert_eq!(row.door, "messages");
        assert_eq!(row.end_user.as_deref(), Some("user-7"), "{wire:?}");
        assert_eq!(
            format!("msg_{}", row.request_id),
            body["id"].as_str().unwrap()
        );
        let call = app
            .get_json(&format!("/usage/calls/{}", row.request_id))
            .await;
        assert_eq!(call["door"], "messages", "{call}");
    }
}

/// Reads an Anthropic stream: each event's name and data, the name checked against the data's
/// `type`.
async fn events(response: reqwest::Response) -> Vec<(String, Value)> {
    let events = read_sse(response, Instant::now()).await;
    events
        .into_iter()
        .map(|e| {
            let data = e.json();
            assert_eq!(data["type"], e.event.as_str(), "{data}");
            (e.event, data)
        })
        .collect()
}

/// Checks Anthropic's ordering rules: `message_start` first, one `ping`, each block started
/// before its deltas and stopped before the next starts, indices from 0 in order, then
/// `message_delta` and `message_stop`.
fn check_sequence(events: &[(String, Value)]) {
    assert_eq!(events[0].0, "message_start");
    let message = &events[0].1["message"];
    assert_eq!(message["type"], "message");
    assert_eq!(message["role"], "assistant");
    assert_eq!(message["content"], json!([]));
    assert!(message["usage"]["input_tokens"].is_u64());
    let mut open: Option<u64> = None;
    let mut next = 0;
    for (name, data) in &events[1..events.len() - 2] {
        match name.as_str() {
            "content_block_start" => {
                assert_eq!(open, None, "a block started before the last stopped");
                assert_eq!(data["index"], next);
                open = Some(next);
                next += 1;
            }
            "content_block_delta" => assert_eq!(data["index"].as_u64(), open, "{data}"),
            "content_block_stop" => {
                assert_eq!(data["index"].as_u64(), open, "{data}");
                open = None;
            }
            "ping" => {}
            other => panic!("unexpected {other} inside the message"),
        }
    }
    assert_eq!(open, None, "every block stopped");
    assert_eq!(
        events.iter().filter(|(n, _)| n == "ping").count(),
        1,
        "one ping"
    );
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[names.len() - 2..], ["message_delta", "message_stop"]);
}

/// The text of every `text_delta`, and the JSON of every `input_json_delta`, in order.
fn streamed(events: &[(String, Value)], delta: &str, field: &str) -> String {
    events
        .iter()
        .filter(|(_, d)| d["delta"]["type"] == delta)
        .map(|(_, d)| d["delta"][field].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_streamed_message_follows_anthropic_s_event_sequence_from_every_provider() {
    for wire in WIRES {
        let fake = FakeUpstream::start(wire).await;
        fake.push(
            Reply::text("Revenue grew four percent.")
                .usage(30, 9)
                .chunks(3),
        );
        let app = app(&fake, wire).await;
        let response = post(
            &app,
            "/v1/messages",
            &json!({"model": on(wire).0, "max_tokens": 100, "stream": true,
                "messages": [{"role": "user", "content": [{"type": "text", "text": "Q3?"}]}]}),
        )
        .await;
        let events = events(response).await;
        check_sequence(&events);
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names[..3],
            ["message_start", "content_block_start", "ping"],
            "{wire:?}"
        );
        assert_eq!(
            events[1].1["content_block"],
            json!({"type": "text", "text": ""})
        );
        assert_eq!(
            streamed(&events, "text_delta", "text"),
            "Revenue grew four percent.",
            "{wire:?}"
        );
        let delta = &events[events.len() - 2].1;
        assert_eq!(delta["delta"]["stop_reason"], "end_turn");
        assert_eq!(delta["usage"]["output_tokens"], 9, "{wire:?}");
        assert_eq!(delta["usage"]["input_tokens"], 30, "{wire:?}");
        let rows = app.usage_rows().await;
        assert_eq!(rows.len(), 1);
        assert!(rows[0].streamed && rows[0].success);
        assert_eq!(rows[0].door, "messages");
    }
}

fn weather_tool() -> Value {
    json!([{"name": "get_weather", "description": "The weather in a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                         "required": ["city"]}}])
}

#[tokio::test]
async fn a_tool_round_trip_works_whole_and_streamed_on_every_provider() {
    for wire in WIRES {
        let fake = FakeUpstream::start(wire).await;
        let call = Reply::text("")
            .tool_calls(&[("toolu_1", "get_weather", r#"{"city":"Paris"}"#)])
            .usage(30, 12);
        fake.push(call.clone());
        fake.push(Reply::text("Sunny in Paris.").usage(50, 8));
        fake.push(call);
        let app = app(&fake, wire).await;
        let model = on(wire).0;
        let asked = json!({"role": "user", "content": "Weather in Paris?"});
        let response = post(
            &app,
            "/v1/messages",
            &json!({"model": model, "max_tokens": 100, "tools": weather_tool(),
                    "tool_choice": {"type": "auto"}, "messages": [asked]}),
        )
        .await;
        assert_eq!(response.status(), 200, "{wire:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["stop_reason"], "tool_use", "{wire:?}");
        let tool_use = body["content"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["type"] == "tool_use")
            .unwrap_or_else(|| panic!("{wire:?}: {body}"))
            .clone();
        assert_eq!(tool_use["name"], "get_weather");
        assert_eq!(tool_use["input"], json!({"city": "Paris"}), "{wire:?}");
        let id = tool_use["id"].as_str().unwrap().to_owned();

        // The caller runs the tool and answers in Anthropic's shape.
        let response = post(
            &app,
            "/v1/messages",
            &json!({"model": model, "max_tokens": 100, "tools": weather_tool(), "messages": [
                asked,
                {"role": "assistant", "content": body["content"]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": id, "content": "sunny, 24°C"}]}
            ]}),
        )
        .await;
        assert_eq!(response.status(), 200, "{wire:?}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["content"][0]["text"], "Sunny in Paris.");
        let sent = fake.requests()[1].body.to_string();
        assert!(sent.contains("sunny, 24"), "{wire:?}: {sent}");
        assert!(sent.contains("get_weather"), "{wire:?}: {sent}");

        // Streamed: a tool_use block whose input arrives as input_json_delta pieces.
        let response = post(
            &app,
            "/v1/messages",
            &json!({"model": model, "max_tokens": 100, "tools": weather_tool(),
                    "stream": true, "messages": [asked]}),
        )
        .await;
        let events = events(response).await;
        check_sequence(&events);
        let start = events
            .iter()
            .find(|(_, d)| d["content_block"]["type"] == "tool_use")
            .unwrap_or_else(|| panic!("{wire:?}: no tool_use block"));
        assert_eq!(start.1["content_block"]["name"], "get_weather");
        assert_eq!(start.1["content_block"]["input"], json!({}));
        let input: Value =
            serde_json::from_str(&streamed(&events, "input_json_delta", "partial_json")).unwrap();
        assert_eq!(input, json!({"city": "Paris"}), "{wire:?}");
        assert_eq!(
            events[events.len() - 2].1["delta"]["stop_reason"],
            "tool_use"
        );
    }
}

#[tokio::test]
async fn what_only_anthropic_takes_is_a_400_naming_the_field_for_other_providers() {
    for wire in [Wire::OpenAi, Wire::Google] {
        let fake = FakeUpstream::start(wire).await;
        let app = app(&fake, wire).await;
        let model = on(wire).0;
        let cases = [
            (json!({"top_k": 5}), "top_k"),
            (
                json!({"messages": [{"role": "user", "content": [
                    {"type": "text", "text": "Read this"},
                    {"type": "document", "source": {"type": "base64",
                        "media_type": "application/pdf", "data": "JVBERi0x"}}]}]}),
                "messages[0].content[1]",
            ),
            (
                json!({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
                "tools[0]",
            ),
            (json!({"container": "container_1"}), "container"),
        ];
        for (extra, field) in cases {
            let mut body = json!({"model": model, "max_tokens": 10,
                "messages": [{"role": "user", "content": "x"}]});
            for (name, value) in extra.as_object().unwrap() {
                body[name] = value.clone();
            }
            let message = anthropic_error(
                post(&app, "/v1/messages", &body).await,
                400,
                "invalid_request_error",
            )
            .await;
            assert!(message.contains(field), "{wire:?} {field}: {message}");
        }
        // Thinking blocks of earlier turns are dropped and cache_control ignored: accepted.
        fake.push(Reply::text("ok"));
        let response = post(
            &app,
            "/v1/messages",
            &json!({"model": model, "max_tokens": 10,
                "system": [{"type": "text", "text": "Sys", "cache_control": {"type": "ephemeral"}}],
                "messages": [
                    {"role": "user", "content": "a"},
                    {"role": "assistant", "content": [
                        {"type": "thinking", "thinking": "hmm", "signature": "c2ln"},
                        {"type": "redacted_thinking", "data": "b3BhcXVl"},
                        {"type": "text", "text": "b"}]},
                    {"role": "user", "content": [{"type": "text", "text": "c",
                        "cache_control": {"type": "ephemeral"}}]}]}),
        )
        .await;
        assert_eq!(response.status(), 200, "{wire:?}");
        let sent = fake.requests()[0].body.to_string();
        assert!(
            !sent.contains("hmm") && !sent.contains("b3BhcXVl"),
            "{sent}"
        );
        assert!(!sent.contains("cache_control"), "{sent}");
        assert_eq!(fake.request_count(), 1, "refusals call nothing");
        assert_eq!(app.usage_rows().await.len(), 1, "refusals leave no row");
    }
}

#[tokio::test]
async fn every_error_takes_anthropic_s_shape_and_status() {
    let fake = FakeUpstream::start(Wire::OpenAi).await;
    let app = app_with(&fake, Wire::OpenAi, |settings| {
        settings.budgets.limits = vec![BudgetDraft {
            id: "nothing".into(),
            scope: "specialist".into(),
            subject: Some("analyst".into()),
            period: "day".into(),
            limit_usd: 0.0,
            alert_usd: None,
        }];
    })
    .await;
    let user = json!([{"role": "user", "content": "x"}]);

    let message = anthropic_error(
        post(
            &app,
            "/v1/messages",
            &json!({"model": "nobody", "max_tokens": 5, "messages": user}),
        )
        .await,
        404,
        "not_found_error",
    )
    .await;
    assert!(message.contains("nobody"), "{message}");
    let not_json = app
        .post_raw("/v1/messages", "application/json", "{not json")
        .await;
    anthropic_error(not_json, 400, "invalid_request_error").await;
    let message = anthropic_error(
        post(
            &app,
            "/v1/messages",
            &json!({"model": "analyst", "messages": user}),
        )
        .await,
        400,
        "invalid_request_error",
    )
    .await;
    assert!(message.contains("max_tokens"), "{message}");
    let message = anthropic_error(
        post(
            &app,
            "/v1/messages",
            &json!({"model": "analyst", "max_tokens": 5,
            "messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]}),
        )
        .await,
        400,
        "invalid_request_error",
    )
    .await;
    assert!(
        message.contains("messages[0].content[0].source.type"),
        "{message}"
    );
    anthropic_error(
        post(&app, "/v1/messages/nowhere", &json!({})).await,
        404,
        "not_found_error",
    )
    .await;

    // The specialist's budget is spent: Anthropic's billing error, not to be retried.
    let refused = post(
        &app,
        "/v1/messages",
        &json!({"model": "analyst", "max_tokens": 5, "messages": user}),
    )
    .await;
    assert_eq!(refused.headers()["x-should-retry"], "false");
    anthropic_error(refused, 402, "billing_error").await;
    assert_eq!(fake.request_count(), 0);
}

#[tokio::test]
async fn upstream_failures_and_rate_limits_take_anthropic_s_shape() {
    let fake = FakeUpstream::start(Wire::OpenAi).await;
    let app = app_with(&fake, Wire::OpenAi, |settings| {
        settings.rate_limit.requests = std::num::NonZeroU32::new(3).unwrap();
        settings.rate_limit.window_seconds = std::num::NonZeroU64::new(3600).unwrap();
    })
    .await;
    let body = json!({"model": "analyst", "max_tokens": 5,
        "messages": [{"role": "user", "content": "x"}]});
    fake.set_default(Reply::status(500, r#"{"error": {"message": "boom"}}"#));
    anthropic_error(post(&app, "/v1/messages", &body).await, 502, "api_error").await;
    fake.set_default(Reply::status(400, r#"{"error": {"message": "bad"}}"#));
    anthropic_error(
        post(&app, "/v1/messages", &body).await,
        400,
        "invalid_request_error",
    )
    .await;

    // A failure after the stream began: an error event in Anthropic's shape.
    fake.set_default(
        Reply::text("one two three four")
            .chunks(4)
            .error_event_after(2, "melted"),
    );
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let events = events(post(&app, "/v1/messages", &streamed).await).await;
    let (name, error) = events.last().unwrap();
    assert_eq!(name, "error");
    assert_eq!(error["error"]["type"], "api_error", "{error}");
    assert!(events.iter().all(|(n, _)| n != "message_stop"));

    // Three requests spent the bucket: the fourth is a 429 with Retry-After.
    let limited = post(&app, "/v1/messages", &body).await;
    assert!(limited.headers().contains_key("retry-after"));
    anthropic_error(limited, 429, "rate_limit_error").await;
}

#[tokio::test]
async fn a_commander_key_works_in_x_api_key_or_bearer_but_not_two_that_disagree() {
    let fake = FakeUpstream::start(Wire::OpenAi).await;
    fake.set_default(Reply::text("ok"));
    let app = app_with(&fake, Wire::OpenAi, require_key).await;
    let body = json!({"model": "analyst", "max_tokens": 5,
        "messages": [{"role": "user", "content": "x"}]});
    let send = |headers: Vec<(&'static str, String)>| {
        let mut request = app.client.post(app.url("/v1/messages")).json(&body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send()
    };
    let ok = send(vec![("x-api-key", KEY.to_owned())]).await.unwrap();
    assert_eq!(ok.status(), 200);
    let ok = send(vec![("authorization", format!("Bearer {KEY}"))])
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let ok = send(vec![
        ("x-api-key", KEY.to_owned()),
        ("authorization", format!("Bearer {KEY}")),
    ])
    .await
    .unwrap();
    assert_eq!(ok.status(), 200);

    let wrong = send(vec![("x-api-key", "cmdr_wrong".to_owned())])
        .await
        .unwrap();
    anthropic_error(wrong, 401, "authentication_error").await;
    let none = send(vec![]).await.unwrap();
    anthropic_error(none, 401, "authentication_error").await;
    let disagree = send(vec![
        ("x-api-key", "cmdr_other".to_owned()),
        ("authorization", format!("Bearer {KEY}")),
    ])
    .await
    .unwrap();
    let message = anthropic_error(disagree, 401, "authentication_error").await;
    assert!(message.contains("x-api-key"), "{message}");
    // The key works on every route, counting tokens included.
    let counted = app
        .client
        .post(app.url("/v1/messages/count_tokens"))
        .header("x-api-key", KEY)
        .json(&json!({"model": "analyst", "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(counted.status(), 200);
    assert_eq!(fake.request_count(), 3);
}

#[tokio::test]
async fn count_tokens_estimates_for_other_providers_without_a_call_or_a_row() {
    for wire in [Wire::OpenAi, Wire::Google] {
        let fake = FakeUpstream::start(wire).await;
        let app = app(&fake, wire).await;
        let model = on(wire).0;
        let count = |text: &str, tools: bool| {
            let mut body = json!({"model": model,
                "messages": [{"role": "user", "content": text}]});
            if tools {
                body["tools"] = weather_tool();
            }
            body
        };
        let short: Value = post(&app, "/v1/messages/count_tokens", &count("hi", false))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(keys(&short), BTreeSet::from(["input_tokens"]));
        let short = short["input_tokens"].as_u64().unwrap();
        assert!(short > 0);
        let long: Value = post(
            &app,
            "/v1/messages/count_tokens",
            &count(&"word ".repeat(400), false),
        )
        .await
        .json()
        .await
        .unwrap();
        assert!(
            long["input_tokens"].as_u64().unwrap() >= short + 400,
            "{long}"
        );
        let with_tools: Value = post(&app, "/v1/messages/count_tokens", &count("hi", true))
            .await
            .json()
            .await
            .unwrap();
        assert!(with_tools["input_tokens"].as_u64().unwrap() > short);
        anthropic_error(
            post(
                &app,
                "/v1/messages/count_tokens",
                &json!({"model": "nobody",
                "messages": [{"role": "user", "content": "x"}]}),
            )
            .await,
            404,
            "not_found_error",
        )
        .await;
        assert_eq!(fake.request_count(), 0, "{wire:?}");
        assert!(app.usage_rows().await.is_empty(), "counting costs nothing");
    }
}

/// The JSON text of `body`'s top-level field `name`, exactly as written.
fn raw_field(body: &str, name: &str) -> String {
    let fields: std::collections::BTreeMap<String, Box<serde_json::value::RawValue>> =
        serde_json::from_str(body).unwrap();
    fields[name].get().to_owned()
}

/// A request whose every byte matters: odd spacing, a thinking block and its signature,
/// redacted thinking, `cache_control` everywhere, a block type commander does not know.
const HAND_WRITTEN: &str = r#"{ "model" : "claude-sonnet-4-5", "max_tokens": 300,
  "system": [ {"type": "text", "text": "Be terse.", "cache_control": {"type":"ephemeral"}} ],
  "messages" : [
    {"role":"user","content":[{"type":"text","text":"Weather?","cache_control":{"type":"ephemeral","ttl":"1h"}}]},
    {"role": "assistant", "content": [
        {"type": "thinking", "thinking": "Use the tool.", "signature": "c2lnbmF0dXJl+/=="},
        {"type": "redacted_thinking", "data": "b3BhcXVl"},
        {"type":"tool_use","id":"toolu_9","name":"get_weather","input":{"city":  "Paris"}}]},
    {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_9","content":[{"type":"text","text":"sunny"}],"is_error":false},
        {"type": "search_result", "source": "https://example.com", "title": "t", "content": [{"type": "text", "text": "x"}]}]}
  ],
  "tools": [{"name":"get_weather","input_schema":{"type":"object"},"cache_control":{"type":"ephemeral"}}],
  "top_k": 7, "metadata": {"user_id": "u-42"},
  "thinking": {"type": "enabled", "budget_tokens": 1024},
  "future_field": {"kept": [1, 2.50]} }"#;

async fn post_raw_anthropic(
    app: &TestApp,
    path: &str,
    body: &str,
    beta: &str,
) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .header("content-type", "application/json")
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", beta)
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_anthropic_specialist_receives_the_caller_s_request_byte_for_byte() {
    let fake = FakeUpstream::start(Wire::Anthropic).await;
    fake.push(Reply::text("Sunny.").usage(20, 5));
    let app = app(&fake, Wire::Anthropic).await;
    let response = post_raw_anthropic(
        &app,
        "/v1/messages",
        HAND_WRITTEN,
        "interleaved-thinking-2025-05-14",
    )
    .await;
    assert_eq!(response.status(), 200);

    let sent = &fake.requests()[0];
    let raw = sent.raw_text();
    for field in [
        "messages",
        "tools",
        "top_k",
        "metadata",
        "thinking",
        "future_field",
    ] {
        let text = raw_field(HAND_WRITTEN, field);
        assert!(
            raw.contains(&text),
            "{field} not sent as written: {text}\nin {raw}"
        );
    }
    assert_eq!(
        sent.header("anthropic-beta"),
        Some("interleaved-thinking-2025-05-14")
    );
    assert_eq!(sent.header("x-api-key"), Some("upstream-key"));
    // The gateway's own fields: the destination's model, the specialist's cap, the specialist's
    // prompt before the caller's system blocks (sent as written).
    assert_eq!(sent.body["model"], "claude-sonnet-4-5-20250929");
    assert_eq!(sent.body["max_tokens"], 300);
    assert_eq!(sent.body["system"][0]["text"], "You help.");
    assert_eq!(
        sent.body["system"][1],
        json!({"type": "text", "text": "Be terse.", "cache_control": {"type": "ephemeral"}})
    );
    assert!(
        raw.contains(
            r#"{"type": "text", "text": "Be terse.", "cache_control": {"type":"ephemeral"}}"#
        ),
        "{raw}"
    );
    // Thinking is on: no temperature goes.
    assert!(sent.body.get("temperature").is_none(), "{raw}");
    let rows = app.usage_rows().await;
    assert_eq!(rows[0].end_user.as_deref(), Some("u-42"));
}

#[tokio::test]
async fn thinking_comes_back_from_anthropic_as_it_was_sent_whole_and_streamed() {
    let fake = FakeUpstream::start(Wire::Anthropic).await;
    // Whole: the upstream's content array, its spacing included, given back byte for byte.
    let content = r#"[ {"type":"thinking","thinking":"Let me think.","signature":"U2lnbmVk+/=="},
        {"type": "redacted_thinking", "data": "T3BhcXVl"}, {"type":"text","text":"Sunny.","citations":null} ]"#;
    fake.push(Reply::raw(format!(
        r#"{{"id":"msg_up","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929",
            "content":{content},"stop_reason":"end_turn","stop_sequence":null,
            "usage":{{"input_tokens":20,"output_tokens":9,"cache_read_input_tokens":4,"cache_creation_input_tokens":2}}}}"#
    )));
    fake.push(
        Reply::text("Sunny in Paris.")
            .thinking("Let me think about Paris.", "U2lnbmVk+/==")
            .redacted_thinking("T3BhcXVl")
            .usage(20, 9)
            .chunks(2),
    );
    let app = app(&fake, Wire::Anthropic).await;
    let body = json!({"model": "claude", "max_tokens": 2000,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [{"role": "user", "content": "Weather?"}]});
    let response = post(&app, "/v1/messages", &body).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(text.contains(&format!(r#""content":{content}"#)), "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        answer["usage"],
        json!({"input_tokens": 20, "output_tokens": 9,
               "cache_creation_input_tokens": 2, "cache_read_input_tokens": 4})
    );

    let mut stream_body = body.clone();
    stream_body["stream"] = json!(true);
    let events = events(post(&app, "/v1/messages", &stream_body).await).await;
    check_sequence(&events);
    let starts: Vec<&Value> = events
        .iter()
        .filter(|(n, _)| n == "content_block_start")
        .map(|(_, d)| &d["content_block"])
        .collect();
    assert_eq!(
        starts,
        [
            &json!({"type": "thinking", "thinking": ""}),
            &json!({"type": "redacted_thinking", "data": "T3BhcXVl"}),
            &json!({"type": "text", "text": ""}),
        ]
    );
    assert_eq!(
        streamed(&events, "thinking_delta", "thinking"),
        "Let me think about Paris."
    );
    assert_eq!(
        streamed(&events, "signature_delta", "signature"),
        "U2lnbmVk+/=="
    );
    assert_eq!(streamed(&events, "text_delta", "text"), "Sunny in Paris.");
    // The signature closes the thinking block: it comes before that block stops.
    let signature = events
        .iter()
        .position(|(_, d)| d["delta"]["type"] == "signature_delta")
        .unwrap();
    let first_stop = events
        .iter()
        .position(|(n, _)| n == "content_block_stop")
        .unwrap();
    assert!(signature < first_stop);
}

#[tokio::test]
async fn count_tokens_asks_anthropic_for_its_exact_count() {
    let fake = FakeUpstream::start(Wire::Anthropic).await;
    fake.push(Reply::token_count(1234));
    let app = app(&fake, Wire::Anthropic).await;
    let body = r#"{"model":"claude-sonnet-4-5","system":"Sys","messages":[{"role":"user","content":[{"type":"text","text":"hi","cache_control":{"type":"ephemeral"}}]}],"top_k":3}"#;
    let response = post_raw_anthropic(
        &app,
        "/v1/messages/count_tokens",
        body,
        "token-counting-2024-11-01",
    )
    .await;
    assert_eq!(response.status(), 200);
    let counted: Value = response.json().await.unwrap();
    assert_eq!(counted, json!({"input_tokens": 1234}));
    let sent = &fake.requests()[0];
    assert_eq!(sent.path, "/v1/messages/count_tokens");
    assert!(sent.raw_text().contains(&raw_field(body, "messages")));
    assert!(sent.body.get("max_tokens").is_none());
    assert_eq!(
        sent.body["system"][0]["text"], "You help.",
        "the specialist's prompt counts"
    );

    // An upstream that keeps failing (commander's retries spent): Anthropic's error shape.
    fake.set_default(Reply::status(
        500,
        r#"{"type":"error","error":{"type":"api_error","message":"down"}}"#,
    ));
    let failed = post_raw_anthropic(&app, "/v1/messages/count_tokens", body, "x").await;
    assert!(failed.status().is_server_error());
    let error: Value = failed.json().await.unwrap();
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "api_error");
    assert!(app.usage_rows().await.is_empty(), "counting costs nothing");
}

#[tokio::test]
async fn a_claude_code_request_replays_through_an_alias_to_anthropic() {
    let fixture = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/claude_code_request.json"),
    )
    .unwrap();
    let fake = FakeUpstream::start(Wire::Anthropic).await;
    fake.push(
        Reply::text("It prints Hello, world!")
            .thinking("A one-line main.", "Q2xhdWRlQ29kZQ==")
            .usage(5200, 40)
            .cache_usage(5000, 120)
            .chunks(3),
    );
    let base_url = fake.base_url().to_owned();
    let app = TestApp::spawn_with(move |settings, dir| {
        std::fs::write(
            dir.join("specialists.json"),
            catalogue([specialist(
                "coder",
                "anthropic",
                "claude-sonnet-4-5-20250929",
                "You work for ACME; never reveal customer names.",
                json!({"max_tokens": 64000, "temperature": 0.7,
                       "aliases": ["claude-sonnet-4-5-20250929", "claude-sonnet-4-5"]}),
            )]),
        )
        .unwrap();
        settings.providers.anthropic.base_url = base_url;
        settings.providers.anthropic.api_key = Some(SecretString::from("upstream-key"));
        require_key(settings);
    })
    .await;
    let beta = "claude-code-20250219,interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14";
    let response = app
        .client
        .post(app.url("/v1/messages?beta=true"))
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", beta)
        .header("anthropic-dangerous-direct-browser-access", "true")
        .header("x-api-key", KEY)
        .header("user-agent", "claude-cli/2.0.14 (external, cli)")
        .header("x-app", "cli")
        .header("x-stainless-lang", "js")
        .header("x-stainless-retry-count", "0")
        .body(fixture.clone())
        .send()
        .await
        .unwrap();

    // What the upstream got: the caller's request, byte for byte where the gateway changes
    // nothing; the specialist's prompt first; our key, not the caller's.
    let events = events(response).await;
    let sent = &fake.requests()[0];
    let raw = sent.raw_text();
    for field in ["messages", "tools", "metadata", "thinking"] {
        assert!(
            raw.contains(&raw_field(&fixture, field)),
            "{field} changed on the way"
        );
    }
    assert_eq!(sent.header("anthropic-beta"), Some(beta));
    assert_eq!(sent.header("x-api-key"), Some("upstream-key"));
    assert_eq!(sent.body["model"], "claude-sonnet-4-5-20250929");
    assert_eq!(sent.body["max_tokens"], 32000);
    assert_eq!(sent.body["stream"], true);
    assert!(
        sent.body.get("temperature").is_none(),
        "thinking takes no temperature"
    );
    let system = sent.body["system"].as_array().unwrap();
    assert_eq!(
        system[0]["text"],
        "You work for ACME; never reveal customer names."
    );
    let fixture_json: Value = serde_json::from_str(&fixture).unwrap();
    assert_eq!(system[1..], fixture_json["system"].as_array().unwrap()[..]);
    assert_eq!(sent.body["tools"].as_array().unwrap().len(), 8);

    // What the client got: Anthropic's stream, thinking and text.
    check_sequence(&events);
    assert_eq!(
        events[0].1["message"]["model"],
        "claude-sonnet-4-5-20250929"
    );
    assert_eq!(
        streamed(&events, "thinking_delta", "thinking"),
        "A one-line main."
    );
    assert_eq!(
        streamed(&events, "signature_delta", "signature"),
        "Q2xhdWRlQ29kZQ=="
    );
    assert_eq!(
        streamed(&events, "text_delta", "text"),
        "It prints Hello, world!"
    );
    let usage = &events[events.len() - 2].1["usage"];
    assert_eq!(usage["output_tokens"], 40);
    assert_eq!(usage["cache_read_input_tokens"], 5000);
    assert_eq!(usage["cache_creation_input_tokens"], 120);

    let rows = app.usage_rows().await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].door, "messages");
    assert_eq!(rows[0].specialist_id, "coder");
    assert_eq!(
        rows[0].end_user.as_deref(),
        fixture_json["metadata"]["user_id"].as_str()
    );
    assert_eq!(rows[0].cached_input_tokens, 5000);
}
