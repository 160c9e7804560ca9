//! A specialist can turn tools or images off (issue 18): a request that uses them is refused
//! over `/v1` before any upstream call or usage row, both are allowed by default, and the
//! fields go through the specialists API like any other.

use e2e_support::{TestApp, catalogue, specialist};
use fake_upstreams::{FakeUpstream, Reply, Wire};
use secrecy::SecretString;
use serde_json::{Value, json};

/// Three specialists on the openai provider pointed at `fake`: `open` (the defaults),
/// `no-tools` and `no-images`.
async fn app(fake: &FakeUpstream) -> TestApp {
    let base_url = fake.base_url().to_owned();
    TestApp::spawn_with(move |settings, dir| {
        std::fs::write(
            dir.join("specialists.json"),
            catalogue([
                specialist("open", "openai", "gpt-4o", "Help.", json!({})),
                specialist(
                    "no-tools",
                    "openai",
                    "gpt-4o",
                    "Help without tools.",
                    json!({"allow_tools": false}),
                ),
                specialist(
                    "no-images",
                    "openai",
                    "gpt-4o",
                    "Help without images.",
                    json!({"allow_images": false}),
                ),
            ]),
        )
        .unwrap();
        settings.providers.openai.base_url = base_url;
        settings.providers.openai.api_key = Some(SecretString::from("upstream-key"));
    })
    .await
}

fn tools() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])
}

fn hi() -> Value {
    json!({"role": "user", "content": "hi"})
}

fn image_message() -> Value {
    json!({"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    ]})
}

/// A conversation that sends a tool's result back.
fn tool_result_messages() -> Vec<Value> {
    vec![
        json!({"role": "user", "content": "Weather in Paris?"}),
        json!({"role": "assistant", "content": null, "tool_calls": [{"id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}),
        json!({"role": "tool", "tool_call_id": "call_1", "content": "sunny"}),
    ]
}

async fn complete(app: &TestApp, body: Value) -> reqwest::Response {
    app.post_json("/v1/chat/completions", &body).await
}

/// Asserts `response` is a 400 `unsupported_parameter` naming `param` and saying `saying`.
async fn assert_refused(response: reqwest::Response, param: &str, saying: &str) {
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    assert_eq!(body["error"]["code"], "unsupported_parameter", "{body}");
    assert_eq!(body["error"]["param"], param, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(saying), "{message}");
}

#[tokio::test]
async fn a_specialist_without_tools_refuses_tools_and_tool_results_before_any_call() {
    let fake = FakeUpstream::start(Wire::OpenAi).await;
    let app = app(&fake).await;
    let refusals = [
        (
            json!({"model": "no-tools", "messages": [hi()], "tools": tools()}),
            "tools",
        ),
        (
            json!({"model": "no-tools", "messages": [hi()], "tools": tools(), "stream": true}),
            "tools",
        ),
        (
            json!({"model": "no-tools", "messages": [hi()], "tool_choice": "none"}),
            "tools",
        ),
        (
            json!({"model": "no-tools", "messages": tool_result_messages()}),
            "messages",
        ),
    ];
    for (body, param) in refusals {
        assert_refused(
            complete(&app, body).await,
            param,
            "the specialist 'no-tools' does not allow tool",
        )
        .await;
    }
    assert!(fake.requests().is_empty(), "nothing reached the upstream");

    // Images are still allowed, and so is plain chat; only those two calls are recorded.
    fake.push(Reply::text("A cat.").usage(20, 3));
    fake.push(Reply::text("Hello.").usage(5, 2));
    let image = complete(
        &app,
        json!({"model": "no-tools", "messages": [image_message()]}),
    )
    .await;
    assert_eq!(image.status(), 200);
    let plain = complete(&app, json!({"model": "no-tools", "messages": [hi()]})).await;
    assert_eq!(plain.status(), 200);
    let sent = &fake.requests()[0].body;
    assert_eq!(
        sent["messages"][0]["role"], "system",
        "the specialist's prompt first"
    );
    assert_eq!(sent["messages"][0]["content"], "Help without tools.");
    assert_eq!(app.wait_for_usage_rows(2).await.len(), 2);
    assert_eq!(app.usage_rows().await.len(), 2);
}

#[tokio::test]
async fn a_specialist_without_images_refuses_an_image_and_takes_tools() {
    let fake = FakeUpstream::start(Wire::OpenAi).await;
    let app = app(&fake).await;
    assert_refused(
        complete(
            &app,
            json!({"model": "no-images", "messages": [image_message()]}),
        )
        .await,
        "messages",
        "the specialist 'no-images' does not allow images",
    )
    .await;
    assert!(fake.requests().is_empty());

    fake.push(
        Reply::text("")
            .tool_calls(&[("call_1", "get_weather", r#"{"city":"Paris"}"#)])
            .usage(30, 12),
    );
    let response = complete(
        &app,
        json!({"model": "no-images", "messages": [hi()], "tools": tools()}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(app.wait_for_usage_rows(1).await.len(), 1);
    assert_eq!(app.usage_rows().await.len(), 1);
}

#[tokio::test]
async fn tools_and_images_are_allowed_by_default() {
    let fake = FakeUpstream::start(Wire::OpenAi).await;
    fake.push(Reply::text("Sunny.").usage(40, 2));
    fake.push(Reply::text("A cat.").usage(20, 3));
    let app = app(&fake).await;
    let tool_round = complete(
        &app,
        json!({"model": "open", "messages": tool_result_messages(), "tools": tools()}),
    )
    .await;
    assert_eq!(tool_round.status(), 200);
    let image = complete(
        &app,
        json!({"model": "open", "messages": [image_message()]}),
    )
    .await;
    assert_eq!(image.status(), 200);
    let requests = fake.requests();
    assert_eq!(requests[0].body["tools"], tools());
    assert_eq!(requests[0].body["messages"][3]["role"], "tool");
    assert_eq!(
        requests[1].body["messages"][1]["content"][1]["image_url"]["url"],
        "https://example.com/cat.png"
    );
}

#[tokio::test]
async fn the_fields_go_through_create_patch_duplicate_and_put() {
    let fake = FakeUpstream::start(Wire::OpenAi).await;
    let app = app(&fake).await;
    let created = app
        .post_json(
            "/specialists",
            &specialist("helper", "mock", "mock-echo", "Help.", json!({})),
        )
        .await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    assert_eq!(
        (&created["allow_tools"], &created["allow_images"]),
        (&json!(true), &json!(true)),
        "allowed when not sent"
    );

    let patch = |body: Value| {
        let request = app.client.patch(app.url("/specialists/helper")).json(&body);
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()
        }
    };
    let patched = patch(json!({"allow_tools": false})).await;
    assert_eq!(patched["version"], 2, "a change makes a version");
    assert_eq!(patched["allow_tools"], false);
    assert_eq!(patched["allow_images"], true, "the other field is kept");
    let got = app.get_json("/specialists/helper").await;
    assert_eq!(got, patched);
    let same = patch(json!({"allow_tools": false})).await;
    assert_eq!(same["version"], 2, "no change, no version");

    // The change holds for calls at once.
    assert_refused(
        complete(
            &app,
            json!({"model": "helper", "messages": [hi()], "tools": tools()}),
        )
        .await,
        "tools",
        "does not allow tools",
    )
    .await;

    let copy = app
        .post_json("/specialists/helper/duplicate", &json!({}))
        .await;
    assert_eq!(copy.status(), 201);
    let copy: Value = copy.json().await.unwrap();
    assert_eq!(copy["allow_tools"], false, "a copy keeps it");

    // A PUT is a whole new set of fields: what it does not send takes its default.
    let mut replacement = got.clone();
    replacement
        .as_object_mut()
        .unwrap()
        .remove("allow_tools")
        .unwrap();
    replacement["allow_images"] = json!(false);
    let put = app.put_json("/specialists/helper", &replacement).await;
    assert_eq!(put.status(), 200);
    let put: Value = put.json().await.unwrap();
    assert_eq!(put["version"], 3);
    assert_eq!(
        (&put["allow_tools"], &put["allow_images"]),
        (&json!(true), &json!(false))
    );
    // The catalogue file keeps them too.
    let file = std::fs::read_to_string(app.dir().join("specialists.json")).unwrap();
    let file: Value = serde_json::from_str(&file).unwrap();
    let kept = file["specialists"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "helper")
        .unwrap();
    assert_eq!(kept["allow_images"], false);
}
