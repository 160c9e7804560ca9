//! OpenAI's Responses door (`POST /v1/responses`, issue 23): the Response object and the
//! typed event stream on specialists of every provider, the function-call round trip,
//! structured output, where `instructions` land, and what the stateless door refuses.

use std::collections::BTreeSet;

use e2e_support::{TestApp, catalogue, read_sse, specialist};
use fake_upstreams::{FakeUpstream, Finish, Reply, Wire};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::time::Instant;

const TEXT: &str = "The quarter closed up 4%: revenue 12.3M, margin steady at 31%.";
const WIRES: [Wire; 3] = [Wire::OpenAi, Wire::Anthropic, Wire::Google];

/// The specialist on `wire`'s provider (its id, and the model the fake reports).
fn on(wire: Wire) -> (&'static str, &'static str, &'static str) {
    match wire {
        Wire::OpenAi => ("analyst", "openai", "gpt-4o-mini"),
        Wire::Anthropic => ("claude", "anthropic", "claude-sonnet-4-5"),
        Wire::Google => ("gemini", "google", "gemini-2.5-flash"),
    }
}

/// The app with a specialist on `wire`'s provider pointed at `fake` (prompt `You analyse.`,
/// at most 500 tokens, temperature 0.4), and `demo` on the mock.
async fn app(fake: &FakeUpstream, wire: Wire) -> (TestApp, &'static str) {
    let base_url = fake.base_url().to_owned();
    let (id, provider, model) = on(wire);
    let app = TestApp::spawn_with(move |settings, dir| {
        std::fs::write(
            dir.join("specialists.json"),
            catalogue([
                specialist(
                    id,
                    provider,
                    model,
                    "You analyse.",
                    json!({"temperature": 0.4, "max_tokens": 500, "aliases": ["gpt-5"]}),
                ),
                specialist("demo", "mock", "mock-echo", "Echo.", json!({})),
            ]),
        )
        .unwrap();
        let upstream = match wire {
            Wire::OpenAi => &mut settings.providers.openai,
            Wire::Anthropic => &mut settings.providers.anthropic,
            Wire::Google => &mut settings.providers.google,
        };
        upstream.base_url = base_url;
        upstream.api_key = Some(SecretString::from("upstream-key"));
    })
    .await;
    (app, id)
}

async fn create(app: &TestApp, body: Value) -> reqwest::Response {
    app.post_json("/v1/responses", &body).await
}

fn keys(value: &Value) -> BTreeSet<&str> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("an object: {value}"))
        .keys()
        .map(String::as_str)
        .collect()
}

/// The system text the upstream received, however its wire carries it.
fn system_sent(wire: Wire, sent: &Value) -> String {
    match wire {
        Wire::OpenAi => {
            assert_eq!(sent["messages"][0]["role"], "system", "{sent}");
            sent["messages"][0]["content"].as_str().unwrap().to_owned()
        }
        Wire::Anthropic => sent["system"].as_str().unwrap().to_owned(),
        Wire::Google => sent["systemInstruction"]["parts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["text"].as_str().unwrap())
            .collect::<Vec<_>>()
            .join("\n\n"),
    }
}

fn tools() -> Value {
    json!([{"type": "function", "name": "get_weather", "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                           "required": ["city"]},
            "strict": null}])
}

#[tokio::test]
async fn a_whole_response_matches_the_reference_on_every_provider() {
    for wire in WIRES {
        let fake = FakeUpstream::start(wire).await;
        fake.push(Reply::text(TEXT).usage(42, 17));
        let (app, model) = app(&fake, wire).await;
        let started = chrono::Utc::now().timestamp();
        let response = create(
            &app,
            json!({"model": model, "input": "How did the quarter go?",
                   "instructions": "Answer in one line.", "metadata": {"team": "finance"},
                   "max_output_tokens": 100000, "temperature": 0.2, "store": false,
                   "safety_identifier": "end-user-9"}),
        )
        .await;
        assert_eq!(response.status(), 200, "{wire:?}");
        let request_id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let body: Value = response.json().await.unwrap();
        for key in [
            "id",
            "object",
            "created_at",
            "status",
            "error",
            "incomplete_details",
            "instructions",
            "max_output_tokens",
            "model",
            "output",
            "parallel_tool_calls",
            "previous_response_id",
            "reasoning",
            "store",
            "temperature",
            "text",
            "tool_choice",
            "tools",
            "top_p",
            "usage",
            "metadata",
        ] {
            assert!(keys(&body).contains(key), "{wire:?}: {key} in {body}");
        }
        assert_eq!(body["id"], format!("resp_{request_id}"));
        assert_eq!(body["object"], "response");
        assert!(body["created_at"].as_i64().unwrap() >= started);
        assert_eq!(body["status"], "completed", "{wire:?}");
        assert!(body["error"].is_null() && body["incomplete_details"].is_null());
        assert_eq!(body["model"], on(wire).2, "{wire:?}");
        assert_eq!(body["instructions"], "Answer in one line.");
        assert_eq!(body["metadata"], json!({"team": "finance"}));
        // What the call ran with: the caller's values, capped by the specialist's.
        assert_eq!(body["max_output_tokens"], 500);
        assert_eq!(body["temperature"], 0.2);
        assert_eq!(body["store"], false);
        assert!(body["previous_response_id"].is_null());
        assert_eq!(body["tool_choice"], "auto");
        assert_eq!(body["tools"], json!([]));
        assert_eq!(body["text"], json!({"format": {"type": "text"}}));
        assert_eq!(body["parallel_tool_calls"], true);
        let output = body["output"].as_array().unwrap();
        assert_eq!(output.len(), 1, "{wire:?}: {body}");
        let message = &output[0];
        assert_eq!(message["type"], "message");
        assert_eq!(message["id"], format!("msg_{request_id}"));
        assert_eq!(message["status"], "completed");
        assert_eq!(message["role"], "assistant");
        assert_eq!(
            message["content"],
            json!([{"type": "output_text", "text": TEXT, "annotations": [], "logprobs": []}])
        );
        let usage = &body["usage"];
        assert_eq!(usage["input_tokens"], 42, "{wire:?}: {usage}");
        assert_eq!(usage["output_tokens"], 17);
        assert_eq!(usage["total_tokens"], 59);
        assert_eq!(usage["input_tokens_details"]["cached_tokens"], 0);
        assert_eq!(usage["output_tokens_details"]["reasoning_tokens"], 0);

        // The instructions follow the specialist's prompt, as a caller's system message does.
        let sent = &fake.requests()[0].body;
        assert_eq!(
            system_sent(wire, sent),
            "You analyse.\n\nAnswer in one line.",
            "{wire:?}"
        );

        // The row names the door and the end user.
        let rows = app.wait_for_usage_rows(1).await;
        assert_eq!(rows[0].end_user.as_deref(), Some("end-user-9"));
        let view = app.get(&format!("/usage/calls/{request_id}")).await;
        assert_eq!(view.status(), 200);
        let view: Value = view.json().await.unwrap();
        assert_eq!(view["door"], "responses", "{view}");
    }
}

#[tokio::test]
async fn the_mock_answers_by_alias_and_a_length_cut_is_incomplete() {
    let fake = FakeUpstream::start(Wire::OpenAi).await;
    fake.push(Reply::text(TEXT).finish(Finish::Length));
    let (app, _) = app(&fake, Wire::OpenAi).await;
    let response = create(&app, json!({"model": "demo", "input": "Hello"})).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "completed");
    assert_eq!(body["model"], "mock-echo");
    let text = body["output"][0]["content"][0]["text"].as_str().unwrap();
    assert!(text.starts_with("You said: \"Hello\""), "{text}");

    let cut = create(
        &app,
        json!({"model": "demo", "input": "Hello", "max_output_tokens": 2}),
    )
    .await;
    let body: Value = cut.json().await.unwrap();
    assert_eq!(body["status"], "incomplete", "{body}");
    assert_eq!(
        body["incomplete_details"],
        json!({"reason": "max_output_tokens"})
    );
    assert_eq!(body["output"][0]["status"], "incomplete");

    // An upstream's own length cut, by the specialist's alias.
    let cut = create(&app, json!({"model": "gpt-5", "input": "Hello"})).await;
    let body: Value = cut.json().await.unwrap();
    assert_eq!(body["status"], "incomplete", "{body}");
    assert_eq!(body["output"][0]["content"][0]["text"], TEXT);

    // Streamed, the cut ends in response.incomplete.
    let events = read_sse(
        create(
            &app,
            json!({"model": "demo", "input": "Hello", "max_output_tokens": 2, "stream": true}),
        )
        .await,
        Instant::now(),
    )
    .await;
    let last = events.last().unwrap();
    assert_eq!(last.event, "response.incomplete");
    assert_eq!(
        last.json()["response"]["incomplete_details"]["reason"],
        "max_output_tokens"
    );
}

/// The events of a streamed response, checked for what every stream must hold: each event's
/// name is its `type`, and `sequence_number` counts from 0.
fn typed(events: &[e2e_support::SseEvent]) -> Vec<Value> {
    events
        .iter()
        .enumerate()
        .map(|(i, event)| {
            let data = event.json();
            assert_eq!(data["type"], event.event.as_str(), "{data}");
            assert_eq!(data["sequence_number"], i, "{data}");
            data
        })
        .collect()
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn a_streamed_response_has_the_typed_events_on_every_provider() {
    for wire in WIRES.into_iter().map(Some).chain([None]) {
        let fake = FakeUpstream::start(wire.unwrap_or(Wire::OpenAi)).await;
        fake.push(Reply::text(TEXT).chunks(4).usage(42, 17));
        let (app, model) = app(&fake, wire.unwrap_or(Wire::OpenAi)).await;
        let model = if wire.is_some() { model } else { "demo" };
        let response = create(
            &app,
            json!({"model": model, "input": "How did it go?", "stream": true,
                   "metadata": {"k": "v"}}),
        )
        .await;
        let events = typed(&read_sse(response, Instant::now()).await);
        let kinds = types(&events);
        let deltas = kinds
            .iter()
            .filter(|k| **k == "response.output_text.delta")
            .count();
        assert!(deltas >= 1, "{wire:?}: {kinds:?}");
        let mut expected = vec![
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
        ];
        expected.extend(std::iter::repeat_n("response.output_text.delta", deltas));
        expected.extend([
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]);
        assert_eq!(kinds, expected, "{wire:?}");
        assert_eq!(events[0]["response"]["status"], "in_progress");
        assert_eq!(events[0]["response"]["output"], json!([]));
        assert_eq!(events[0]["response"]["metadata"], json!({"k": "v"}));
        let item_id = events[2]["item"]["id"].as_str().unwrap();
        assert_eq!(events[2]["item"]["status"], "in_progress");
        let text: String = events
            .iter()
            .filter(|e| e["type"] == "response.output_text.delta")
            .map(|e| {
                assert_eq!(e["item_id"], item_id);
                assert_eq!(
                    (e["output_index"].as_u64(), e["content_index"].as_u64()),
                    (Some(0), Some(0))
                );
                e["delta"].as_str().unwrap()
            })
            .collect();
        let done = &events[events.len() - 4];
        assert_eq!(done["text"], text.as_str());
        let completed = &events[events.len() - 1]["response"];
        assert_eq!(completed["status"], "completed");
        assert_eq!(completed["output"][0]["status"], "completed");
        assert_eq!(completed["output"][0]["content"][0]["text"], text.as_str());
        if wire.is_some() {
            assert_eq!(text, TEXT, "{wire:?}");
            assert_eq!(completed["usage"]["input_tokens"], 42, "{wire:?}");
            assert_eq!(completed["usage"]["output_tokens"], 17);
            assert_eq!(completed["usage"]["total_tokens"], 59);
        } else {
            assert!(text.starts_with("You said"), "{text}");
        }
        let rows = app.wait_for_usage_rows(1).await;
        assert!(rows[0].success, "{wire:?}");
    }
}

#[tokio::test]
async fn a_function_call_round_trip_works_on_every_provider() {
    for wire in WIRES {
        let fake = FakeUpstream::start(wire).await;
        fake.push(
            Reply::text("")
                .tool_calls(&[("call_w", "get_weather", r#"{"city":"Paris"}"#)])
                .usage(30, 12),
        );
        fake.push(Reply::text("It is sunny in Paris.").usage(50, 8));
        let (app, model) = app(&fake, wire).await;
        let asked = json!({"role": "user", "content": "Weather in Paris?"});
        let response = create(
            &app,
            json!({"model": model, "input": [asked], "tools": tools(),
                   "tool_choice": "auto"}),
        )
        .await;
        assert_eq!(response.status(), 200, "{wire:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["status"], "completed", "{wire:?}: {body}");
        assert_eq!(body["tools"][0]["name"], "get_weather");
        let output = body["output"].as_array().unwrap();
        assert_eq!(output.len(), 1, "no empty message beside the call: {body}");
        let call = &output[0];
        assert_eq!(call["type"], "function_call");
        assert!(call["id"].as_str().unwrap().starts_with("fc_"));
        assert_eq!(call["name"], "get_weather");
        assert_eq!(call["status"], "completed");
        let call_id = call["call_id"].as_str().unwrap().to_owned();
        let arguments: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(arguments, json!({"city": "Paris"}), "{wire:?}");

        // The caller runs the tool and sends the whole conversation back: no stored state.
        let response = create(
            &app,
            json!({"model": model, "tools": tools(), "input": [
                asked,
                call,
                {"type": "function_call_output", "call_id": call_id, "output": "sunny, 24°C"}
            ]}),
        )
        .await;
        assert_eq!(response.status(), 200, "{wire:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body["output"][0]["content"][0]["text"], "It is sunny in Paris.",
            "{wire:?}"
        );
        let sent = &fake.requests()[1].body;
        match wire {
            Wire::OpenAi => {
                let messages = &sent["messages"];
                assert_eq!(messages[2]["tool_calls"][0]["id"], call_id.as_str());
                assert_eq!(
                    messages[2]["tool_calls"][0]["function"]["name"],
                    "get_weather"
                );
                assert_eq!(
                    messages[3],
                    json!({"role": "tool", "tool_call_id": call_id, "content": "sunny, 24°C"})
                );
            }
            Wire::Anthropic => {
                let messages = &sent["messages"];
                assert_eq!(messages[1]["content"][0]["type"], "tool_use");
                assert_eq!(messages[1]["content"][0]["id"], call_id.as_str());
                assert_eq!(messages[2]["content"][0]["type"], "tool_result");
                assert_eq!(messages[2]["content"][0]["tool_use_id"], call_id.as_str());
            }
            Wire::Google => {
                let contents = &sent["contents"];
                assert_eq!(
                    contents[1]["parts"][0]["functionCall"],
                    json!({"name": "get_weather", "args": {"city": "Paris"}})
                );
                assert_eq!(
                    contents[2]["parts"][0]["functionResponse"]["response"],
                    json!({"content": "sunny, 24°C"})
                );
            }
        }
    }
}

#[tokio::test]
async fn streamed_function_calls_are_items_with_argument_deltas() {
    for wire in WIRES {
        let fake = FakeUpstream::start(wire).await;
        fake.push(
            Reply::text("Checking.")
                .tool_calls(&[
                    ("call_1", "get_weather", r#"{"city":"Paris"}"#),
                    ("call_2", "get_weather", r#"{"city":"Rome"}"#),
                ])
                .usage(30, 20),
        );
        let (app, model) = app(&fake, wire).await;
        let response = create(
            &app,
            json!({"model": model, "stream": true, "tools": tools(),
                   "input": "Paris and Rome?"}),
        )
        .await;
        let events = typed(&read_sse(response, Instant::now()).await);
        let last = events.last().unwrap();
        assert_eq!(last["type"], "response.completed", "{wire:?}");
        let output = last["response"]["output"].as_array().unwrap();
        assert_eq!(output.len(), 3, "{wire:?}: {output:?}");
        assert_eq!(output[0]["type"], "message");
        assert_eq!(output[0]["content"][0]["text"], "Checking.");
        for (index, city) in [(1, "Paris"), (2, "Rome")] {
            let item = &output[index];
            assert_eq!(item["type"], "function_call", "{wire:?}");
            assert_eq!(item["name"], "get_weather");
            assert_eq!(item["status"], "completed");
            let added: Vec<&Value> = events
                .iter()
                .filter(|e| e["type"] == "response.output_item.added" && e["output_index"] == index)
                .collect();
            assert_eq!(added.len(), 1, "{wire:?}");
            assert_eq!(added[0]["item"]["arguments"], "");
            let joined: String = events
                .iter()
                .filter(|e| {
                    e["type"] == "response.function_call_arguments.delta"
                        && e["output_index"] == index
                })
                .map(|e| {
                    assert_eq!(e["item_id"], item["id"]);
                    e["delta"].as_str().unwrap()
                })
                .collect();
            assert_eq!(
                serde_json::from_str::<Value>(&joined).unwrap(),
                json!({"city": city}),
                "{wire:?}"
            );
            let done: Vec<&Value> = events
                .iter()
                .filter(|e| {
                    e["type"] == "response.function_call_arguments.done"
                        && e["output_index"] == index
                })
                .collect();
            assert_eq!(done.len(), 1);
            assert_eq!(done[0]["arguments"], joined.as_str());
            assert_eq!(done[0]["name"], "get_weather");
        }
        // The message is done before the first call is added.
        let kinds = types(&events);
        let message_done = kinds
            .iter()
            .position(|k| *k == "response.output_text.done")
            .unwrap();
        let call_added = events
            .iter()
            .position(|e| e["type"] == "response.output_item.added" && e["output_index"] == 1)
            .unwrap();
        assert!(message_done < call_added, "{kinds:?}");
    }
}

#[tokio::test]
async fn structured_output_reaches_the_upstream_as_a_json_schema() {
    let schema = json!({"type": "object", "properties": {"city": {"type": "string"}},
                        "required": ["city"], "additionalProperties": false});
    let fake = FakeUpstream::start(Wire::OpenAi).await;
    fake.push(Reply::text(r#"{"city":"Paris"}"#));
    let (app, model) = app(&fake, Wire::OpenAi).await;
    let format = json!({"type": "json_schema", "name": "weather", "schema": schema,
                        "strict": true});
    let response = create(
        &app,
        json!({"model": model, "input": "Which city?", "text": {"format": format},
               "reasoning": {"effort": "low", "summary": "auto"}}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["text"]["format"], format);
    assert_eq!(
        body["output"][0]["content"][0]["text"],
        r#"{"city":"Paris"}"#
    );
    let sent = &fake.requests()[0].body;
    assert_eq!(
        sent["response_format"],
        json!({"type": "json_schema",
               "json_schema": {"name": "weather", "schema": schema, "strict": true}})
    );
    assert_eq!(sent["reasoning_effort"], "low");
}

/// A request refused before any upstream call: its status, `param` and message.
async fn refused(app: &TestApp, body: Value) -> (u16, Value) {
    let response = create(app, body).await;
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    assert_eq!(keys(&body), BTreeSet::from(["error"]), "{body}");
    assert_eq!(
        keys(&body["error"]),
        BTreeSet::from(["message", "type", "param", "code"]),
        "{body}"
    );
    (status, body["error"].clone())
}

#[tokio::test]
async fn what_the_stateless_door_cannot_do_is_400_naming_the_field() {
    let fake = FakeUpstream::start(Wire::OpenAi).await;
    fake.expect_calls(0);
    let (app, model) = app(&fake, Wire::OpenAi).await;
    let stateless = [
        (
            json!({"previous_response_id": "resp_123"}),
            "previous_response_id",
        ),
        (json!({"store": true}), "store"),
        (json!({"conversation": "conv_1"}), "conversation"),
        (json!({"background": true}), "background"),
    ];
    for (extra, param) in stateless {
        let mut body = json!({"model": model, "input": "Hello"});
        for (key, value) in extra.as_object().unwrap() {
            body[key] = value.clone();
        }
        let (status, error) = refused(&app, body).await;
        assert_eq!(status, 400, "{param}");
        assert_eq!(error["param"], param);
        assert_eq!(error["type"], "invalid_request_error");
        assert!(
            error["message"].as_str().unwrap().contains("stateless"),
            "{error}"
        );
    }
    let cases = [
        (
            json!({"tools": [{"type": "web_search"}]}),
            "tools[0].type",
            "built-in",
        ),
        (
            json!({"tools": [tools()[0].clone(), {"type": "code_interpreter", "container": {"type": "auto"}}]}),
            "tools[1].type",
            "built-in",
        ),
        (
            json!({"input": [{"role": "user", "content": "x"}, {"type": "web_search_call", "id": "ws"}]}),
            "input[1].type",
            "must be message",
        ),
        (
            json!({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file-abc"}]}]}),
            "input[0].content[0].file_id",
            "stateless",
        ),
        (
            json!({"input": [{"type": "item_reference", "id": "msg_1"}]}),
            "input[0].type",
            "stateless",
        ),
        (json!({"prompt": {"id": "pmpt_1"}}), "prompt", "template"),
        (
            json!({"include": ["file_search_call.results"]}),
            "include[0]",
            "cannot be included",
        ),
        (json!({"temperature": 5}), "temperature", "between 0 and 2"),
        (json!({"input": 12}), "input", "string or a list"),
        (
            json!({"tool_choice": {"type": "function", "name": "nope"}, "tools": tools()}),
            "tool_choice",
            "not an offered tool",
        ),
    ];
    for (extra, param, says) in cases {
        let mut body = json!({"model": model, "input": "Hello"});
        for (key, value) in extra.as_object().unwrap() {
            body[key] = value.clone();
        }
        let (status, error) = refused(&app, body).await;
        assert_eq!(status, 400, "{param}: {error}");
        assert_eq!(error["param"], param, "{error}");
        assert!(
            error["message"].as_str().unwrap().contains(says),
            "{param}: {error}"
        );
    }
    // `store` absent or false, and a null previous_response_id, are fine (on the mock).
    let response = create(
        &app,
        json!({"model": "demo", "input": "Hi", "store": false, "previous_response_id": null}),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        app.wait_for_usage_rows(1).await.len(),
        1,
        "only the mock call"
    );
}

#[tokio::test]
async fn unknown_models_bad_json_and_wrong_types_are_openai_errors() {
    let fake = FakeUpstream::start(Wire::OpenAi).await;
    fake.expect_calls(0);
    let (app, _) = app(&fake, Wire::OpenAi).await;
    let (status, error) = refused(&app, json!({"model": "gpt-7", "input": "x"})).await;
    assert_eq!(status, 404);
    assert_eq!(error["code"], "model_not_found");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("gpt-7") && message.contains("aliases"),
        "{message}"
    );

    let response = app
        .post_raw("/v1/responses", "application/json", "{not json")
        .await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    assert!(body["error"]["message"].is_string());

    let (status, _) = refused(
        &app,
        json!({"model": "analyst", "input": "x", "temperature": "hot"}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(app.usage_rows().await.is_empty());
}

#[tokio::test]
async fn a_failure_mid_stream_is_response_failed_and_a_failed_row() {
    // OpenAI's wire: a stream it broke is never continued (see PROTOCOL.md), so it fails.
    let wire = Wire::OpenAi;
    let fake = FakeUpstream::start(wire).await;
    fake.push(Reply::text("one two three four").chunks(4).drop_after(2));
    let (app, model) = app(&fake, wire).await;
    let response = create(&app, json!({"model": model, "input": "go", "stream": true})).await;
    let events = typed(&read_sse(response, Instant::now()).await);
    let kinds = types(&events);
    assert_eq!(
        kinds[..3],
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added"
        ],
        "{wire:?}"
    );
    let last = events.last().unwrap();
    assert_eq!(last["type"], "response.failed", "{wire:?}: {kinds:?}");
    let failed = &last["response"];
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error"]["code"], "server_error");
    assert!(
        failed["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("upstream_error"),
        "{failed}"
    );
    assert_eq!(failed["output"][0]["status"], "incomplete");
    assert!(!kinds.contains(&"response.completed"));
    let rows = app.wait_for_usage_rows(1).await;
    assert!(!rows[0].success, "{wire:?}");
    assert_eq!(rows[0].door, "responses");
}

#[tokio::test]
async fn keys_and_budgets_guard_the_door_as_they_guard_chat_completions() {
    use sha2::Digest;
    const KEY: &str = "cmdr_responses_test_key_000000000000000000000000000000000000000000";
    let fake = FakeUpstream::start(Wire::OpenAi).await;
    fake.expect_calls(0);
    let base_url = fake.base_url().to_owned();
    let app = TestApp::spawn_with(move |settings, dir| {
        std::fs::write(
            dir.join("specialists.json"),
            catalogue([
                specialist(
                    "analyst",
                    "openai",
                    "gpt-4o-mini",
                    "You analyse.",
                    json!({"pricing": {"input_per_1m": 1000.0, "output_per_1m": 1000.0}}),
                ),
                specialist(
                    "blind",
                    "openai",
                    "gpt-4o-mini",
                    "You read.",
                    json!({"allow_images": false}),
                ),
            ]),
        )
        .unwrap();
        settings.providers.openai.base_url = base_url;
        settings.providers.openai.api_key = Some(SecretString::from("upstream-key"));
        settings.auth.mode = http_api::AuthMode::Required;
        settings.auth.api_keys = vec![http_api::ApiKeyConfig {
            name: "sdk".into(),
            email: "sdk@example.com".into(),
            role: core_domain::AccessRole::User,
            sha256: hex::encode(sha2::Sha256::digest(KEY.as_bytes())),
        }];
        settings.budgets.limits = vec![core_domain::BudgetDraft {
            id: "nothing".into(),
            scope: "global".into(),
            subject: None,
            period: "day".into(),
            limit_usd: 0.0,
            alert_usd: None,
        }];
    })
    .await;
    let body = json!({"model": "analyst", "input": "Hello"});

    let (status, error) = refused(&app, body.clone()).await;
    assert_eq!(status, 401);
    assert_eq!(error["code"], "invalid_api_key", "{error}");

    for stream in [false, true] {
        let mut body = body.clone();
        body["stream"] = json!(stream);
        let response = app.post_json_as("/v1/responses", KEY, &body).await;
        assert_eq!(response.status(), 429, "stream {stream}");
        assert_eq!(response.headers()["x-should-retry"], "false");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["type"], "insufficient_quota", "{body}");
        assert_eq!(body["error"]["code"], "budget_exceeded", "{body}");
    }

    // What a specialist turned off is refused first, naming this door's field.
    let response = app
        .post_json_as(
            "/v1/responses",
            KEY,
            &json!({"model": "blind", "input": [{"role": "user", "content": [
                {"type": "input_image", "image_url": "https://example.com/a.png"}]}]}),
        )
        .await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unsupported_parameter", "{body}");
    assert_eq!(body["error"]["param"], "input", "{body}");

    let rows = app.wait_for_usage_rows(2).await;
    assert_eq!(rows.len(), 2, "a refused request leaves no row");
    for row in &rows {
        assert_eq!(row.door, "responses");
        assert_eq!(row.error_code.as_deref(), Some("budget_exceeded"));
        assert_eq!(row.api_key.as_deref(), Some("sdk"));
    }
}
