//! The chat protocol through the OpenAI door to specialists on Anthropic and Gemini (issue
//! 18): a tool-calling round trip whole and streamed, translated both ways, and what each
//! provider refuses — before any upstream call and without a usage row.

use e2e_support::{TestApp, catalogue, read_sse, specialist};
use fake_upstreams::{FakeUpstream, Reply, Wire};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::time::Instant;

/// `claude` on the anthropic provider, or `gemini` on the google one, pointed at `fake`.
async fn app(fake: &FakeUpstream, wire: Wire) -> (TestApp, &'static str) {
    let base_url = fake.base_url().to_owned();
    let (id, provider, model) = match wire {
        Wire::Anthropic => ("claude", "anthropic", "claude-sonnet-4-5"),
        Wire::Google => ("gemini", "google", "gemini-2.5-flash"),
        Wire::OpenAi => unreachable!("the OpenAI door's own tests cover openai"),
    };
    let app = TestApp::spawn_with(move |settings, dir| {
        std::fs::write(
            dir.join("specialists.json"),
            catalogue([specialist(id, provider, model, "You help.", json!({}))]),
        )
        .unwrap();
        let upstream = match wire {
            Wire::Anthropic => &mut settings.providers.anthropic,
            _ => &mut settings.providers.google,
        };
        upstream.base_url = base_url;
        upstream.api_key = Some(SecretString::from("upstream-key"));
    })
    .await;
    (app, id)
}

fn tools() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]}}}])
}

async fn complete(app: &TestApp, body: Value) -> reqwest::Response {
    app.post_json("/v1/chat/completions", &body).await
}

/// The id the answer gives the call: Anthropic's own, Gemini's made up by commander.
fn call_id(wire: Wire) -> &'static str {
    match wire {
        Wire::Google => "call_0",
        _ => "toolu_1",
    }
}

#[tokio::test]
async fn a_tool_calling_round_trip_is_translated_both_ways() {
    for wire in [Wire::Anthropic, Wire::Google] {
        let fake = FakeUpstream::start(wire).await;
        fake.push(
            Reply::text("")
                .tool_calls(&[("toolu_1", "get_weather", r#"{"city":"Paris"}"#)])
                .usage(30, 12),
        );
        fake.push(Reply::text("It is sunny in Paris.").usage(50, 8));
        let (app, model) = app(&fake, wire).await;

        let asked = json!({"role": "user", "content": "Weather in Paris?"});
        let response = complete(
            &app,
            json!({"model": model, "messages": [asked], "tools": tools()}),
        )
        .await;
        assert_eq!(response.status(), 200, "{wire:?}");
        let body: Value = response.json().await.unwrap();
        let choice = &body["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls", "{wire:?}");
        let call = &choice["message"]["tool_calls"][0];
        assert_eq!(call["id"], call_id(wire), "{wire:?}");
        assert_eq!(call["function"]["name"], "get_weather");
        let arguments: Value =
            serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(arguments, json!({"city": "Paris"}), "{wire:?}");

        let sent = &fake.requests()[0].body;
        match wire {
            Wire::Anthropic => {
                assert_eq!(sent["tools"][0]["name"], "get_weather");
                assert_eq!(
                    sent["tools"][0]["input_schema"]["required"],
                    json!(["city"])
                );
            }
            _ => {
                let declaration = &sent["tools"][0]["functionDeclarations"][0];
                assert_eq!(declaration["name"], "get_weather");
            }
        }

        // The caller runs the tool and sends the result back in OpenAI's shape.
        let response = complete(
            &app,
            json!({"model": model, "tools": tools(), "messages": [
                asked,
                choice["message"].clone(),
                {"role": "tool", "tool_call_id": call_id(wire), "content": "sunny, 24°C"}
            ]}),
        )
        .await;
        assert_eq!(response.status(), 200, "{wire:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body["choices"][0]["message"]["content"],
            "It is sunny in Paris."
        );
        let sent = &fake.requests()[1].body;
        match wire {
            Wire::Anthropic => {
                let messages = &sent["messages"];
                assert_eq!(messages[1]["role"], "assistant");
                assert_eq!(
                    messages[1]["content"][0],
                    json!({"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                           "input": {"city": "Paris"}})
                );
                assert_eq!(messages[2]["role"], "user");
                let result = &messages[2]["content"][0];
                assert_eq!(result["type"], "tool_result");
                assert_eq!(result["tool_use_id"], "toolu_1");
            }
            _ => {
                let contents = &sent["contents"];
                assert_eq!(contents[1]["role"], "model");
                assert_eq!(
                    contents[1]["parts"][0]["functionCall"],
                    json!({"name": "get_weather", "args": {"city": "Paris"}})
                );
                assert_eq!(contents[2]["role"], "user");
                let response = &contents[2]["parts"][0]["functionResponse"];
                assert_eq!(response["name"], "get_weather");
                assert_eq!(response["response"], json!({"content": "sunny, 24°C"}));
            }
        }
        assert_eq!(app.wait_for_usage_rows(2).await.len(), 2);
    }
}

#[tokio::test]
async fn streamed_tool_calls_arrive_as_openai_deltas() {
    for wire in [Wire::Anthropic, Wire::Google] {
        let fake = FakeUpstream::start(wire).await;
        fake.push(
            Reply::text("Checking.")
                .tool_calls(&[
                    ("toolu_1", "get_weather", r#"{"city":"Paris"}"#),
                    ("toolu_2", "get_weather", r#"{"city":"Rome"}"#),
                ])
                .usage(30, 20),
        );
        let (app, model) = app(&fake, wire).await;
        let sent_at = Instant::now();
        let response = complete(
            &app,
            json!({"model": model, "stream": true, "tools": tools(),
                   "messages": [{"role": "user", "content": "Paris and Rome?"}]}),
        )
        .await;
        assert_eq!(response.status(), 200, "{wire:?}");
        let events = read_sse(response, sent_at).await;
        let (done, chunks) = events.split_last().unwrap();
        assert_eq!(done.data, "[DONE]");
        let chunks: Vec<Value> = chunks.iter().map(|e| e.json()).collect();
        let text: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, "Checking.", "{wire:?}");
        let pieces: Vec<&Value> = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array())
            .flatten()
            .collect();
        for (index, city) in ["Paris", "Rome"].into_iter().enumerate() {
            let of_call: Vec<&&Value> = pieces.iter().filter(|p| p["index"] == index).collect();
            assert!(!of_call.is_empty(), "{wire:?}: call {index}");
            assert!(of_call[0]["id"].is_string(), "{wire:?}");
            assert_eq!(of_call[0]["function"]["name"], "get_weather");
            let joined: String = of_call
                .iter()
                .map(|p| p["function"]["arguments"].as_str().unwrap())
                .collect();
            let arguments: Value = serde_json::from_str(&joined).unwrap();
            assert_eq!(arguments, json!({"city": city}), "{wire:?}");
        }
        let finish: Vec<&Value> = chunks
            .iter()
            .map(|c| &c["choices"][0]["finish_reason"])
            .filter(|f| !f.is_null())
            .collect();
        assert_eq!(finish, [&json!("tool_calls")], "{wire:?}");
        assert_eq!(app.wait_for_usage_rows(1).await.len(), 1);
    }
}

#[tokio::test]
async fn what_a_provider_cannot_honour_is_400_naming_it_and_never_reaches_the_upstream() {
    let cases = [
        (Wire::Anthropic, json!({"seed": 7}), "seed"),
        (
            Wire::Anthropic,
            json!({"logit_bias": {"50256": -100}}),
            "logit_bias",
        ),
        (
            Wire::Google,
            json!({"logit_bias": {"50256": -100}}),
            "logit_bias",
        ),
        (
            Wire::Google,
            json!({"parallel_tool_calls": false, "tools": tools()}),
            "parallel_tool_calls",
        ),
    ];
    for (wire, extra, param) in cases {
        let fake = FakeUpstream::start(wire).await;
        fake.expect_calls(0);
        let (app, model) = app(&fake, wire).await;
        let mut body = json!({"model": model,
                              "messages": [{"role": "user", "content": "Hello"}]});
        for (key, value) in extra.as_object().unwrap() {
            body[key] = value.clone();
        }
        let response = complete(&app, body).await;
        assert_eq!(response.status(), 400, "{wire:?} {param}");
        assert_eq!(
            response
                .headers()
                .get("x-should-retry")
                .map(|v| v.as_bytes()),
            Some(&b"false"[..]),
            "{wire:?} {param}"
        );
        let body: Value = response.json().await.unwrap();
        let error = &body["error"];
        assert_eq!(error["code"], "unsupported_parameter", "{wire:?} {error}");
        assert_eq!(error["param"], param, "{wire:?} {error}");
        assert_eq!(error["type"], "invalid_request_error", "{wire:?} {error}");
        assert!(
            app.usage_rows().await.is_empty(),
            "{wire:?} {param}: no row"
        );
    }
}

/// A tiny PNG, base64, as a `data:` URL (the bytes do not matter to the fakes).
const PNG: &str = "data:image/png;base64,iVBORw0KGgo=";

#[tokio::test]
async fn an_image_and_a_json_schema_answer_are_translated_both_ways() {
    let schema = json!({"type": "object", "properties": {"city": {"type": "string"}},
                        "required": ["city"], "additionalProperties": false});
    for wire in [Wire::Anthropic, Wire::Google] {
        let fake = FakeUpstream::start(wire).await;
        let json_text = r#"{"city":"Paris"}"#;
        match wire {
            // Anthropic answers structured output through the forced tool.
            Wire::Anthropic => {
                fake.push(Reply::text("").tool_calls(&[("toolu_s", "weather", json_text)]))
            }
            _ => fake.push(Reply::text(json_text)),
        }
        let (app, model) = app(&fake, wire).await;
        let response = complete(
            &app,
            json!({"model": model,
                   "response_format": {"type": "json_schema",
                       "json_schema": {"name": "weather", "schema": schema, "strict": true}},
                   "messages": [{"role": "user", "content": [
                       {"type": "text", "text": "Which city is this?"},
                       {"type": "image_url", "image_url": {"url": PNG}}]}]}),
        )
        .await;
        assert_eq!(response.status(), 200, "{wire:?}");
        let body: Value = response.json().await.unwrap();
        let choice = &body["choices"][0];
        assert_eq!(choice["message"]["content"], json_text, "{wire:?}");
        assert_eq!(choice["finish_reason"], "stop", "{wire:?}");
        assert!(choice["message"].get("tool_calls").is_none(), "{wire:?}");

        let sent = &fake.requests()[0].body;
        match wire {
            Wire::Anthropic => {
                let content = &sent["messages"][0]["content"];
                assert_eq!(
                    content[0],
                    json!({"type": "text", "text": "Which city is this?"})
                );
                assert_eq!(
                    content[1],
                    json!({"type": "image", "source": {"type": "base64",
                           "media_type": "image/png", "data": "iVBORw0KGgo="}})
                );
                assert_eq!(sent["tools"][0]["input_schema"], schema);
                assert_eq!(
                    sent["tool_choice"],
                    json!({"type": "tool", "name": "weather"})
                );
            }
            _ => {
                let parts = &sent["contents"][0]["parts"];
                assert_eq!(parts[0], json!({"text": "Which city is this?"}));
                assert_eq!(
                    parts[1],
                    json!({"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}})
                );
                let config = &sent["generationConfig"];
                assert_eq!(config["responseMimeType"], "application/json");
                assert_eq!(config["responseJsonSchema"], schema);
            }
        }
    }
}
