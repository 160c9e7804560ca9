//! The whole chat protocol over the OpenAI door (issue 18): tool calling round trips whole and
//! streamed, options forwarded to an OpenAI upstream, and the refusals — invalid requests, what
//! a specialist's provider cannot honour, and upstream failures a retry cannot help.

use e2e_support::{TestApp, catalogue, read_sse, specialist};
use fake_upstreams::{FakeUpstream, Reply, Wire};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::time::Instant;

const TOOLS: &str = r#"[{"type": "function", "function": {"name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}]"#;

/// `analyst` on the openai provider pointed at `fake`, and `demo` on the mock (plain chat).
async fn app(fake: &FakeUpstream) -> TestApp {
    let base_url = fake.base_url().to_owned();
    TestApp::spawn_with(move |settings, dir| {
        std::fs::write(
            dir.join("specialists.json"),
            catalogue([
                specialist(
                    "analyst",
                    "openai",
                    "gpt-4o-mini",
                    "You analyse.",
                    json!({}),
                ),
                specialist("demo", "mock", "mock-echo", "Echo.", json!({})),
            ]),
        )
        .unwrap();
        settings.providers.openai.base_url = base_url;
        settings.providers.openai.api_key = Some(SecretString::from("upstream-key"));
    })
    .await
}

fn tools() -> Value {
    serde_json::from_str(TOOLS).unwrap()
}

async fn complete(app: &TestApp, body: Value) -> reqwest::Response {
    app.post_json("/v1/chat/completions", &body).await
}

#[tokio::test]
async fn a_tool_calling_round_trip_whole() {
    let fake = FakeUpstream::start(Wire::OpenAi).await;
    fake.push(
        Reply::text("")
            .tool_calls(&[("call_1", "get_weather", r#"{"city":"Paris"}"#)])
            .usage(30, 12),
    );
    fake.push(Reply::text("It is sunny in Paris.").usage(50, 8));
    let app = app(&fake).await;

    let asked = json!({"role": "user", "content": "Weather in Paris?"});
    let response = complete(
        &app,
        json!({"model": "analyst", "messages": [asked], "tools": tools(), "tool_choice": "auto"}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], Value::Null);
    assert_eq!(
        choice["message"]["tool_calls"],
        json!([{"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}])
    );
    let sent = &fake.requests()[0].body;
    assert_eq!(sent["tools"], tools());
    assert_eq!(sent["tool_choice"], "auto");

    // The caller runs the tool and sends its result back.
    let response = complete(
        &app,
        json!({"model": "analyst", "tools": tools(), "messages": [
            asked,
            choice["message"].clone(),
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 24°C"}
        ]}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "It is sunny in Paris."
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert!(body["choices"][0]["message"].get("tool_calls").is_none());
    let messages = &fake.requests()[1].body["messages"];
    assert_eq!(
        messages[2],
        json!({"role": "assistant", "content": null, "tool_calls": [{"id": "call_1",
            "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]})
    );
    assert_eq!(
        messages[3],
        json!({"role": "tool", "tool_call_id": "call_1", "content": "sunny, 24°C"})
    );
    assert_eq!(app.wait_for_usage_rows(2).await.len(), 2);
}

#[tokio::test]
async fn a_tool_calling_round_trip_streamed() {
    let fake = FakeUpstream::start(Wire::OpenAi).await;
    fake.push(
        Reply::text("")
            .tool_calls(&[
                ("call_1", "get_weather", r#"{"city":"Paris"}"#),
                ("call_2", "get_weather", r#"{"city":"Rome"}"#),
            ])
            .usage(30, 20),
    );
    let app = app(&fake).await;
    let sent_at = Instant::now();
    let response = complete(
        &app,
        json!({"model": "analyst", "stream": true, "tools": tools(),
               "messages": [{"role": "user", "content": "Paris and Rome?"}]}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let events = read_sse(response, sent_at).await;
    let (done, chunks) = events.split_last().unwrap();
    assert_eq!(done.data, "[DONE]");
    let chunks: Vec<Value> = chunks.iter().map(|e| e.json()).collect();
    let pieces: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array())
        .flatten()
        .collect();
    for (index, (id, arguments)) in [
        ("call_1", r#"{"city":"Paris"}"#),
        ("call_2", r#"{"city":"Rome"}"#),
    ]
    .into_iter()
    .enumerate()
    {
        let of_call: Vec<&&Value> = pieces.iter().filter(|p| p["index"] == index).collect();
        assert_eq!(of_call[0]["id"], id);
        assert_eq!(of_call[0]["type"], "function");
        assert_eq!(of_call[0]["function"]["name"], "get_weather");
        assert!(of_call[1..].iter().all(|p| p.get("id").is_none()));
        let joined: String = of_call
            .iter()
            .map(|p| p["function"]["arguments"].as_str().unwrap())
            .collect();
        assert_eq!(joined, arguments);
    }
    let finish: Vec<&Value> = chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, [&json!("tool_calls")]);
    let rows = app.wait_for_usage_rows(1).await;
    assert_eq!(rows.len(), 1);
}

#[tokio::test]
async fn response_format_stop_seed_and_top_p_reach_the_upstream() {
    let fake = FakeUpstream::start(Wire::OpenAi).await;
    fake.push(Reply::text(r#"{"total": 4}"#).usage(10, 5));
    let app = app(&fake).await;
    let schema = json!({"type": "object", "properties": {"total": {"type": "integer"}},
                        "required": ["total"], "additionalProperties": false});
    let response = complete(
        &app,
        json!({"model": "analyst", "messages": [{"role": "user", "content": "2+2 as JSON"}],
               "response_format": {"type": "json_schema",
                   "json_schema": {"name": "sum", "schema": schema, "strict": true}},
               "stop": ["\n\n"], "seed": 42, "top_p": 0.5,
               "metadata": {"ignored": "yes"}, "store": false, "service_tier": "auto"}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let sent = &fake.requests()[0].body;
    assert_eq!(
        sent["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "sum", "schema": schema, "strict": true}})
    );
    assert_eq!(sent["stop"], json!(["\n\n"]));
    assert_eq!(sent["seed"], 42);
    assert_eq!(sent["top_p"], 0.5);
    for ignored in ["metadata", "store", "service_tier"] {
        assert!(sent.get(ignored).is_none(), "{ignored} is not forwarded");
    }
}

#[tokio::test]
async fn a_validation_failure_is_400_invalid_request_error_with_param() {
    let fake = FakeUpstream::start(Wire::OpenAi).await;
    let app = app(&fake).await;
    let response = complete(
        &app,
        json!({"model": "analyst", "top_p": 3,
               "messages": [{"role": "user", "content": null}]}),
    )
    .await;
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["x-should-retry"], "false");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(body["error"]["code"], "validation_failed");
    assert_eq!(body["error"]["param"], "top_p");
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn a_plain_chat_specialist_refuses_tools_before_any_call() {
    let fake = FakeUpstream::start(Wire::OpenAi).await;
    let app = app(&fake).await;
    let response = complete(
        &app,
        json!({"model": "demo", "tools": tools(),
               "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["x-should-retry"], "false");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unsupported_parameter");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(body["error"]["param"], "tools");
    // Nothing was called, so nothing is recorded: a plain call afterwards is the only row.
    let plain = complete(
        &app,
        json!({"model": "demo", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(plain.status(), 200);
    assert_eq!(app.wait_for_usage_rows(1).await.len(), 1);
    assert_eq!(app.usage_rows().await.len(), 1);
}

#[tokio::test]
async fn an_upstream_auth_failure_says_a_retry_cannot_help() {
    let fake = FakeUpstream::start(Wire::OpenAi).await;
    fake.push(Reply::status(401, "Incorrect API key provided"));
    let app = app(&fake).await;
    let response = complete(
        &app,
        json!({"model": "analyst", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(response.status(), 502);
    assert_eq!(response.headers()["x-should-retry"], "false");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_auth_failed");
}

/// The SDKs retry a 502 twice by themselves; after commander's own retries that would be nine
/// upstream hits for one call. The answer says a retry cannot help, once ours are spent.
#[tokio::test]
async fn an_upstream_5xx_after_our_retries_says_a_retry_cannot_help() {
    let fake = FakeUpstream::start(Wire::OpenAi).await;
    fake.set_default(Reply::status(500, "upstream exploded"));
    let app = TestApp::spawn_with({
        let base_url = fake.base_url().to_owned();
        move |settings, dir| {
            std::fs::write(
                dir.join("specialists.json"),
                catalogue([specialist(
                    "analyst",
                    "openai",
                    "gpt-4o-mini",
                    "You analyse.",
                    json!({}),
                )]),
            )
            .unwrap();
            settings.providers.openai.base_url = base_url;
            settings.providers.openai.api_key = Some(SecretString::from("upstream-key"));
            settings.providers.openai.max_retries = 2;
            settings.providers.openai.retry_base_delay_ms = 1;
        }
    })
    .await;
    let response = complete(
        &app,
        json!({"model": "analyst", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(response.status(), 502);
    assert_eq!(response.headers()["x-should-retry"], "false");
    assert_eq!(fake.request_count(), 3, "one call and our two retries");
}
