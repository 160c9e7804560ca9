//! The OpenAI-compatible front door, checked field by field against OpenAI's API reference
//! for Chat Completions (the `chat.completion` object, the `chat.completion.chunk` stream with
//! `stream_options.include_usage`, the error object, and the model list).

use std::collections::BTreeSet;

use core_domain::AccessRole;
use e2e_support::{TestApp, catalogue, read_sse, specialist};
use fake_upstreams::{FakeUpstream, Reply, Wire};
use http_api::{ApiKeyConfig, AuthMode};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::time::Instant;

const KEY: &str = "cmdr_openai_sdk_test_key_0000000000000000000000000000000000000000";
const UPSTREAM_TEXT: &str = "The quarter closed up 4%: revenue 12.3M, margin steady at 31%.";

fn keys(value: &Value) -> BTreeSet<&str> {
    value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect()
}

fn set<'a>(items: &[&'a str]) -> BTreeSet<&'a str> {
    items.iter().copied().collect()
}

/// `analyst` on OpenAI's `gpt-4o-mini`, with `extra` fields.
fn analyst(extra: Value) -> Value {
    specialist(
        "analyst",
        "openai",
        "gpt-4o-mini",
        "You analyse numbers.",
        extra,
    )
}

/// The app with `analyst` on the openai provider pointed at `fake`, and `demo` on the mock.
async fn app(fake: &FakeUpstream, auth: bool) -> TestApp {
    let base_url = fake.base_url().to_owned();
    TestApp::spawn_with(move |settings, dir| {
        std::fs::write(
            dir.join("specialists.json"),
            catalogue([
                analyst(json!({"temperature": 0.4, "max_tokens": 500})),
                specialist("demo", "mock", "mock-echo", "Echo.", json!({})),
            ]),
        )
        .unwrap();
        settings.providers.openai.base_url = base_url;
        settings.providers.openai.api_key = Some(SecretString::from("upstream-key"));
        if auth {
            use sha2::Digest;
            settings.auth.mode = AuthMode::Required;
            settings.auth.api_keys = vec![ApiKeyConfig {
                name: "sdk".into(),
                email: "sdk@example.com".into(),
                role: AccessRole::User,
                sha256: hex::encode(sha2::Sha256::digest(KEY.as_bytes())),
            }];
        }
    })
    .await
}

async fn complete(app: &TestApp, body: Value) -> reqwest::Response {
    app.post_json_as("/v1/chat/completions", KEY, &body).await
}

#[tokio::test]
async fn chat_completion_object_matches_the_reference() {
    let fake = FakeUpstream::start(Wire::OpenAi).await;
    fake.push(Reply::text(UPSTREAM_TEXT).usage(42, 17));
    let app = app(&fake, false).await;
    let started = chrono::Utc::now().timestamp();
    let response = complete(
        &app,
        json!({"model": "analyst", "messages": [
            {"role": "system", "content": "Use bullet points."},
            {"role": "user", "content": "How did Q3 go?"}
        ], "temperature": 0.2, "max_tokens": 5000, "user": "ignored", "top_p": 1}),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let body: Value = response.json().await.unwrap();

    assert_eq!(
        keys(&body),
        set(&[
            "id",
            "object",
            "created",
            "model",
            "choices",
            "usage",
            "system_fingerprint"
        ])
    );
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(body["object"], "chat.completion");
    let created = body["created"].as_i64().unwrap();
    assert!(
        (started..=started + 5).contains(&created),
        "created is a Unix time in seconds"
    );
    // What answered, as OpenAI names the model that served a request (the specialist's model).
    assert_eq!(body["model"], "gpt-4o-mini");
    let choices = body["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 1);
    assert_eq!(
        keys(&choices[0]),
        set(&["index", "message", "logprobs", "finish_reason"])
    );
    assert_eq!(choices[0]["index"], 0);
    assert_eq!(choices[0]["logprobs"], Value::Null);
    assert_eq!(choices[0]["finish_reason"], "stop");
    assert_eq!(
        keys(&choices[0]["message"]),
        set(&["role", "content", "refusal"])
    );
    assert_eq!(choices[0]["message"]["role"], "assistant");
    assert_eq!(choices[0]["message"]["content"], UPSTREAM_TEXT);
    assert_eq!(choices[0]["message"]["refusal"], Value::Null);
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 42, "completion_tokens": 17, "total_tokens": 59,
               "prompt_tokens_details": {"cached_tokens": 0},
               "completion_tokens_details": {"reasoning_tokens": 0}})
    );

    // The specialist's prompt and limits applied: the caller lowered temperature, could not
    // raise max_tokens, and its system message came after the specialist's.
    let sent = &fake.requests()[0].body;
    assert_eq!(sent["model"], "gpt-4o-mini");
    assert_eq!(sent["temperature"], 0.2);
    assert_eq!(sent["max_tokens"], 500);
    assert_eq!(
        sent["messages"][0]["content"],
        "You analyse numbers.\n\nUse bullet points."
    );

    let rows = app.usage_rows().await;
    assert_eq!(rows.len(), 1);
    assert!(rows[0].success && !rows[0].streamed);
    assert_eq!((rows[0].input_tokens, rows[0].output_tokens), (42, 17));
    assert_eq!(rows[0].specialist_id, "analyst");
    assert_eq!(
        format!("chatcmpl-{}", rows[0].request_id),
        body["id"].as_str().unwrap()
    );
}

/// Reads a `/v1` stream: every data line is a chunk, except the final `[DONE]`.
async fn stream(app: &TestApp, include_usage: Option<bool>) -> Vec<Value> {
    let mut body = json!({"model": "analyst", "stream": true,
                          "messages": [{"role": "user", "content": [{"type": "text", "text": "Q3?"}]}]});
    if let Some(include) = include_usage {
        body["stream_options"] = json!({"include_usage": include});
    }
    let sent = Instant::now();
    let events = read_sse(complete(app, body).await, sent).await;
    assert!(
        events.iter().all(|e| e.event == "message"),
        "no named events in OpenAI's format"
    );
    let (done, chunks) = events.split_last().unwrap();
    assert_eq!(done.data, "[DONE]");
    chunks.iter().map(|e| e.json()).collect()
}

fn check_chunk_envelope(chunks: &[Value]) {
    let first = &chunks[0];
    assert!(first["id"].as_str().unwrap().starts_with("chatcmpl-"));
    // With include_usage every chunk carries `usage` (null but the last); without, none does.
    let with_usage = first.get("usage").is_some();
    let mut envelope = vec![
        "id",
        "object",
        "created",
        "model",
        "system_fingerprint",
        "choices",
    ];
    if with_usage {
        envelope.push("usage");
    }
    for chunk in chunks {
        assert_eq!(keys(chunk), set(&envelope), "{chunk}");
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["id"], first["id"], "one id for the whole stream");
        assert_eq!(chunk["created"], first["created"]);
        assert_eq!(chunk["model"], "gpt-4o-mini", "the model that answered");
        assert_eq!(chunk["system_fingerprint"], Value::Null);
    }
}

/// The text of the content deltas, checking each choice's shape on the way.
fn reassemble(chunks: &[Value]) -> String {
    let mut text = String::new();
    for chunk in chunks {
        for choice in chunk["choices"].as_array().unwrap() {
            assert_eq!(
                keys(choice),
                set(&["index", "delta", "logprobs", "finish_reason"])
            );
            if let Some(content) = choice["delta"]["content"].as_str() {
                text.push_str(content);
            }
        }
    }
    text
}

#[tokio::test]
async fn stream_without_include_usage_matches_the_reference() {
    let fake = FakeUpstream::start(Wire::OpenAi).await;
    fake.push(Reply::text(UPSTREAM_TEXT).usage(30, 20).chunks(6));
    let app = app(&fake, false).await;
    let chunks = stream(&app, None).await;
    check_chunk_envelope(&chunks);
    assert!(
        chunks.iter().all(|c| c.get("usage").is_none()),
        "no usage field when not asked"
    );

    // Role first, then content, then the finish reason with an empty delta.
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    assert_eq!(chunks[0]["choices"][0]["finish_reason"], Value::Null);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["delta"], json!({}));
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    for middle in &chunks[1..chunks.len() - 1] {
        assert_eq!(keys(&middle["choices"][0]["delta"]), set(&["content"]));
        assert_eq!(middle["choices"][0]["finish_reason"], Value::Null);
    }
    assert_eq!(reassemble(&chunks), UPSTREAM_TEXT);

    let rows = app.usage_rows().await;
    assert!(rows[0].streamed && rows[0].success);
    assert_eq!((rows[0].input_tokens, rows[0].output_tokens), (30, 20));
}

#[tokio::test]
async fn stream_with_include_usage_ends_with_a_usage_chunk() {
    let fake = FakeUpstream::start(Wire::OpenAi).await;
    fake.push(Reply::text(UPSTREAM_TEXT).usage(30, 20).chunks(4));
    let app = app(&fake, false).await;
    let chunks = stream(&app, Some(true)).await;
    check_chunk_envelope(&chunks);
    let (usage_chunk, rest) = chunks.split_last().unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(
        usage_chunk["usage"],
        json!({"prompt_tokens": 30, "completion_tokens": 20, "total_tokens": 50,
               "prompt_tokens_details": {"cached_tokens": 0},
               "completion_tokens_details": {"reasoning_tokens": 0}})
    );
    assert!(
        rest.iter()
            .all(|c| c["usage"] == Value::Null && c.get("usage").is_some())
    );
    assert_eq!(rest.last().unwrap()["choices"][0]["finish_reason"], "stop");
    assert_eq!(reassemble(&chunks), UPSTREAM_TEXT);

    // include_usage: false is the same as leaving it out.
    fake.push(Reply::text(UPSTREAM_TEXT).chunks(4));
    let chunks = stream(&app, Some(false)).await;
    assert!(chunks.iter().all(|c| c.get("usage").is_none()));
    assert_eq!(app.usage_rows().await.len(), 2, "a usage row per call");
}

#[tokio::test]
async fn a_failure_mid_stream_is_an_openai_error_object_and_a_failed_row() {
    let fake = FakeUpstream::start(Wire::OpenAi).await;
    fake.push(Reply::text("one two three four").chunks(4).drop_after(2));
    let app = app(&fake, false).await;
    let body = json!({"model": "analyst", "stream": true,
                      "messages": [{"role": "user", "content": "go"}]});
    let events = read_sse(complete(&app, body).await, Instant::now()).await;
    let last = events.last().unwrap().json();
    assert_eq!(keys(&last), set(&["error"]));
    assert_eq!(
        keys(&last["error"]),
        set(&["message", "type", "param", "code"])
    );
    assert_eq!(last["error"]["code"], "upstream_error");
    assert!(
        events.iter().all(|e| e.data != "[DONE]"),
        "no [DONE] after a failure"
    );
    let rows = app.usage_rows().await;
    assert!(!rows[0].success && rows[0].output_tokens > 0);
}

#[tokio::test]
async fn errors_have_openai_s_shape_and_the_api_s_status_codes() {
    let fake = FakeUpstream::start(Wire::OpenAi).await;
    fake.expect_calls(0); // Every request here is refused before the upstream.
    let app = app(&fake, true).await;

    let missing_model = complete(
        &app,
        json!({"model": "gpt-7", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(missing_model.status(), 404);
    let error: Value = missing_model.json().await.unwrap();
    assert_eq!(keys(&error), set(&["error"]));
    assert_eq!(
        keys(&error["error"]),
        set(&["message", "type", "param", "code"])
    );
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert_eq!(error["error"]["code"], "model_not_found");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("gpt-7")
    );

    let malformed = app
        .client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body("{\"model\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    let error: Value = malformed.json().await.unwrap();
    assert_eq!(error["error"]["code"], "invalid_request");
    assert_eq!(error["error"]["param"], Value::Null);

    let invalid = complete(
        &app,
        json!({"model": "analyst", "temperature": 5,
        "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    // OpenAI answers invalid parameters 400, as its SDKs expect; a retry cannot help.
    assert_eq!(invalid.status(), 400);
    assert_eq!(invalid.headers()["x-should-retry"], "false");
    let error: Value = invalid.json().await.unwrap();
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert_eq!(error["error"]["param"], "temperature");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("temperature: must be between 0 and 2")
    );

    let unauthenticated = app
        .client
        .post(app.url("/v1/chat/completions"))
        .json(&json!({"model": "analyst", "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
    assert!(unauthenticated.headers().contains_key("www-authenticate"));
    let error: Value = unauthenticated.json().await.unwrap();
    // OpenAI's own answer to a bad key: an invalid_request_error with code invalid_api_key.
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert_eq!(error["error"]["code"], "invalid_api_key");

    let wrong_key = "cmdr_not_a_key_we_issued_000000000000000000000000000000000000000000";
    let wrong = app
        .post_json_as(
            "/v1/chat/completions",
            wrong_key,
            &json!({"model": "analyst", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(wrong.status(), 401);
    let raw = wrong.text().await.unwrap();
    assert!(!raw.contains(wrong_key), "the key is never echoed: {raw}");
    let error: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        keys(&error["error"]),
        set(&["message", "type", "param", "code"])
    );
    assert_eq!(error["error"]["code"], "invalid_api_key");

    let unknown_route = app.get_as("/v1/audio/speech", KEY).await;
    assert_eq!(unknown_route.status(), 404);
    let error: Value = unknown_route.json().await.unwrap();
    assert_eq!(
        keys(&error["error"]),
        set(&["message", "type", "param", "code"])
    );
}

#[tokio::test]
async fn models_list_the_specialists() {
    let fake = FakeUpstream::start(Wire::OpenAi).await;
    let app = app(&fake, true).await;
    let list: Value = app.get_as("/v1/models", KEY).await.json().await.unwrap();
    assert_eq!(keys(&list), set(&["object", "data"]));
    assert_eq!(list["object"], "list");
    let data = list["data"].as_array().unwrap();
    let ids: Vec<&str> = data.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["analyst", "demo"]);
    for model in data {
        assert_eq!(keys(model), set(&["id", "object", "created", "owned_by"]));
        assert_eq!(model["object"], "model");
        assert!(model["created"].is_i64());
    }
    let one: Value = app
        .get_as("/v1/models/demo", KEY)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(one, data[1]);
    let missing = app.get_as("/v1/models/nope", KEY).await;
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.json::<Value>().await.unwrap()["error"]["code"],
        "model_not_found"
    );
    let unauthenticated = app.get("/v1/models").await;
    assert_eq!(unauthenticated.status(), 401);
}

#[tokio::test]
async fn rate_limits_and_pricing_apply_as_on_the_chat_routes() {
    let fake = FakeUpstream::start(Wire::OpenAi).await;
    fake.set_default(Reply::text(UPSTREAM_TEXT).usage(1_000, 500));
    let base_url = fake.base_url().to_owned();
    let app = TestApp::spawn_with(move |settings, dir| {
        std::fs::write(
            dir.join("specialists.json"),
            catalogue([analyst(json!({}))]),
        )
        .unwrap();
        settings.providers.openai.base_url = base_url;
        settings.providers.openai.api_key = Some(SecretString::from("upstream-key"));
        settings.rate_limit.requests = std::num::NonZeroU32::new(2).unwrap();
    })
    .await;
    let ask = |stream: bool| {
        app.client
            .post(app.url("/v1/chat/completions"))
            .json(&json!({"model": "analyst", "stream": stream,
                          "messages": [{"role": "user", "content": "x"}]}))
            .send()
    };
    let answered = ask(false).await.unwrap();
    assert_eq!(answered.status(), 200);
    assert_eq!(answered.headers()["x-ratelimit-limit"], "2");
    assert_eq!(answered.headers()["x-ratelimit-remaining"], "1");
    let streamed = ask(true).await.unwrap();
    assert_eq!(streamed.status(), 200);
    assert!(streamed.text().await.unwrap().ends_with("data: [DONE]\n\n"));

    let refused = ask(false).await.unwrap();
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after > 0);
    let error: Value = refused.json().await.unwrap();
    assert_eq!(
        keys(&error["error"]),
        set(&["message", "type", "param", "code"])
    );
    assert_eq!(error["error"]["type"], "rate_limit_error");
    assert_eq!(error["error"]["code"], "rate_limit_exceeded");
    assert_eq!(
        fake.request_count(),
        2,
        "the refused call never reached the upstream"
    );

    // gpt-4o-mini: $0.15 in / $0.60 out per million tokens, from the built-in table.
    let rows = app.wait_for_usage_rows(2).await;
    let expected = (1_000.0 * 0.15 + 500.0 * 0.60) / 1e6;
    for row in &rows {
        assert!(row.success && row.pricing_known, "{row:?}");
        assert!((row.estimated_cost_usd - expected).abs() < 1e-12, "{row:?}");
    }
    assert_eq!(rows.iter().filter(|r| r.streamed).count(), 1);
}

#[tokio::test]
async fn body_and_conversation_limits_apply_in_openai_s_shape() {
    let app = TestApp::spawn_with(|settings, _| {
        settings.server.max_body_bytes = 2048;
        settings.server.chat.max_history_messages = 3;
        settings.server.chat.max_message_chars = 100;
    })
    .await;
    let post = |body: Value| {
        app.client
            .post(app.url("/v1/chat/completions"))
            .json(&body)
            .send()
    };
    let too_big = post(json!({"model": "demo",
        "messages": [{"role": "user", "content": "x".repeat(4096)}]}))
    .await
    .unwrap();
    assert_eq!(too_big.status(), 413);
    let error: Value = too_big.json().await.unwrap();
    assert_eq!(
        keys(&error["error"]),
        set(&["message", "type", "param", "code"])
    );
    assert_eq!(error["error"]["code"], "payload_too_large");

    // Three messages of history plus the new one is the most; five is one too many.
    let conversation = |n: usize| {
        (0..n)
            .map(|i| {
                let role = if i % 2 == 1 && i + 1 < n {
                    "assistant"
                } else {
                    "user"
                };
                json!({"role": role, "content": format!("turn {i}")})
            })
            .collect::<Vec<_>>()
    };
    let allowed = post(json!({"model": "demo", "messages": conversation(4)}))
        .await
        .unwrap();
    assert_eq!(allowed.status(), 200);
    let too_long = post(json!({"model": "demo", "messages": conversation(5)}))
        .await
        .unwrap();
    assert_eq!(too_long.status(), 400);
    let error: Value = too_long.json().await.unwrap();
    assert_eq!(error["error"]["param"], "messages");
    assert_eq!(error["error"]["code"], "validation_failed");

    let long_message = post(json!({"model": "demo",
        "messages": [{"role": "user", "content": "y".repeat(101)}]}))
    .await
    .unwrap();
    assert_eq!(long_message.status(), 400);
    assert_eq!(
        app.usage_rows().await.len(),
        1,
        "only the allowed call reached a specialist"
    );
}

#[tokio::test]
async fn a_model_may_be_a_specialist_s_alias_until_it_is_cleared() {
    let fake = FakeUpstream::start(Wire::OpenAi).await;
    fake.push(Reply::text(UPSTREAM_TEXT).usage(10, 5));
    let app = app(&fake, false).await;
    let sonnet = json!({"id": "sonnet", "name": "Sonnet", "provider": "openai",
        "model": "gpt-4o-mini", "system_prompt": "Be brief.",
        "aliases": ["claude-sonnet-4-5"]});
    let created = app.post_json("/specialists", &sonnet).await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    assert_eq!(created["aliases"], json!(["claude-sonnet-4-5"]));

    let response = complete(
        &app,
        json!({"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "Hi"}]}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], UPSTREAM_TEXT);
    assert_eq!(body["model"], "gpt-4o-mini", "the served model, as before");
    assert_eq!(
        fake.requests()[0].body["messages"][0]["content"],
        "Be brief.",
        "the alias's specialist answered"
    );
    let rows = app.usage_rows().await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].specialist_id, "sonnet");

    let model = app.get("/v1/models/CLAUDE-SONNET-4-5").await;
    assert_eq!(model.status(), 200, "aliases are case-insensitive");
    assert_eq!(model.json::<Value>().await.unwrap()["id"], "sonnet");

    // An alias names one specialist: another's alias or id is refused as a taken name is.
    let mut clash = sonnet.clone();
    clash["id"] = json!("other");
    clash["name"] = json!("Other");
    clash["aliases"] = json!(["Claude-Sonnet-4-5", "analyst"]);
    let refused = app.post_json("/specialists", &clash).await;
    assert_eq!(refused.status(), 422);
    let details = e2e_support::error_body(refused).await["details"].clone();
    let fields: Vec<&str> = e2e_support::field_of_each(&details, "field");
    assert_eq!(fields, ["aliases[0]", "aliases[1]"]);

    let cleared = app
        .client
        .patch(app.url("/specialists/sonnet"))
        .json(&json!({"aliases": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status(), 200);
    assert_eq!(cleared.json::<Value>().await.unwrap()["aliases"], json!([]));
    let gone = complete(
        &app,
        json!({"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "Hi"}]}),
    )
    .await;
    assert_eq!(gone.status(), 404);
    assert_eq!(app.usage_rows().await.len(), 1, "no call, no row");
}
