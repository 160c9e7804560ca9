use core_domain::{
    ChatMessage, ChatOptions, ContentPart, FinishReason, ImageDetail, ImageSource,
    JsonSchemaFormat, ProviderKind, ReasoningEffort, ResponseFormat, Role, StreamEvent, TokenUsage,
    ToolCall, ToolCallDelta, ToolChoice, ToolDefinition,
};
use fake_upstreams::{Finish, RecordedRequest, Reply, Wire};
use providers::ProviderRequest;
use serde_json::json;

use crate::*;

#[tokio::test]
async fn generate_content_request_and_answer() {
    let fake = start(Wire::Google).await;
    fake.push(Reply::text("It is 4.").usage(17, 5).finish(Finish::Length));
    let provider = provider(&config_for(&fake), ProviderKind::Google);

    let answer = provider
        .complete(&request("gemini-2.0-flash"))
        .await
        .unwrap();
    assert_eq!(answer.content, "It is 4.");
    assert_eq!(answer.usage, TokenUsage::reported(17, 5));
    assert_eq!(answer.finish_reason, FinishReason::Length);
    assert_eq!(answer.model, "gemini-2.0-flash");

    let sent = &fake.requests()[0];
    assert_eq!(sent.path, "/v1beta/models/gemini-2.0-flash:generateContent");
    assert_eq!(sent.query, "", "the key never travels in the URL");
    assert_gemini_request(sent);
}

#[tokio::test]
async fn stream_generate_content_over_sse_with_crlf_events() {
    let fake = start(Wire::Google).await;
    let text = "Gemini ends its stream without a marker.";
    fake.push(
        Reply::text(text)
            .usage(12, 8)
            .chunks(4)
            .finish(Finish::Length),
    );
    let provider = provider(&config_for(&fake), ProviderKind::Google);

    let got = collect(provider.as_ref(), &request("gemini-1.5-pro")).await;
    assert!(got.error.is_none(), "{:?}", got.error);
    assert_eq!(got.text, text);
    assert_eq!(
        finished(&got.events),
        &StreamEvent::Finished {
            usage: TokenUsage::reported(12, 8),
            finish_reason: FinishReason::Length,
            model: "gemini-1.5-pro".into(),
        }
    );
    let sent = &fake.requests()[0];
    assert_eq!(
        sent.path,
        "/v1beta/models/gemini-1.5-pro:streamGenerateContent"
    );
    assert_eq!(sent.query, "alt=sse", "and never the key");
    assert_gemini_request(sent);
}

/// The key header and the body for [`request`] (the same whole or streamed).
fn assert_gemini_request(sent: &RecordedRequest) {
    assert_eq!(sent.header("x-goog-api-key"), Some(GOOGLE_KEY));
    assert_eq!(
        sent.body,
        json!({
            "contents": [
                {"role": "user", "parts": [{"text": "Hi"}]},
                {"role": "model", "parts": [{"text": "Hello!"}]},
                {"role": "user", "parts": [{"text": "What is 2+2?"}]}
            ],
            "systemInstruction": {"parts": [{"text": "You are terse."}]},
            "generationConfig": {"temperature": 0.3, "maxOutputTokens": 256}
        })
    );
}

#[tokio::test]
async fn a_gemini_stream_without_usage_is_estimated() {
    let fake = start(Wire::Google).await;
    fake.push(Reply::text("abcdabcd").without_usage().chunks(2));
    let provider = provider(&config_for(&fake), ProviderKind::Google);
    let got = collect(provider.as_ref(), &request("gemini-2.0-flash")).await;
    let StreamEvent::Finished { usage, .. } = finished(&got.events) else {
        unreachable!()
    };
    assert!(usage.is_estimated);
    assert_eq!(usage.output_tokens, 2);
}

/// A tool for the tests: `name` taking a city, described.
fn city_tool(name: &str, strict: Option<bool>) -> ToolDefinition {
    ToolDefinition {
        name: name.to_owned(),
        description: Some(format!("{name} for a city")),
        parameters: json!({"type": "object", "properties": {"city": {"type": "string"}},
                           "required": ["city"], "$defs": {}}),
        strict,
    }
}

fn tool_call(id: &str, name: &str, arguments: &str) -> ToolCall {
    ToolCall {
        id: id.to_owned(),
        name: name.to_owned(),
        arguments: arguments.to_owned(),
    }
}

#[tokio::test]
async fn every_option_reaches_gemini_in_its_own_words() {
    let fake = start(Wire::Google).await;
    fake.push(Reply::text("{\"city\": \"Paris\"}"));
    let provider = provider(&config_for(&fake), ProviderKind::Google);
    let mut request = request("gemini-2.5-flash");
    request.options = ChatOptions {
        tools: vec![
            city_tool("get_weather", None),
            ToolDefinition {
                description: None,
                ..city_tool("get_time", None)
            },
        ],
        tool_choice: Some(ToolChoice::Tool("get_weather".into())),
        parallel_tool_calls: Some(true),
        response_format: Some(ResponseFormat::JsonSchema(JsonSchemaFormat {
            name: "place".into(),
            description: Some("A place".into()),
            schema: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
            strict: true,
        })),
        stop: vec!["grew".into(), "END".into()],
        top_p: Some(0.9),
        seed: Some(42),
        presence_penalty: Some(0.5),
        frequency_penalty: Some(-0.25),
        reasoning_effort: Some(ReasoningEffort::Medium),
        user: Some("end-user-7".into()),
        ..ChatOptions::default()
    };
    provider.check_request(&request).unwrap();
    provider.complete(&request).await.unwrap();

    let sent = &fake.requests()[0].body;
    let parameters = json!({"type": "object", "properties": {"city": {"type": "string"}},
                            "required": ["city"], "$defs": {}});
    assert_eq!(
        sent["tools"],
        json!([{"functionDeclarations": [
            {"name": "get_weather", "description": "get_weather for a city",
             "parametersJsonSchema": parameters},
            {"name": "get_time", "parametersJsonSchema": parameters},
        ]}])
    );
    assert_eq!(
        sent["toolConfig"],
        json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}})
    );
    assert_eq!(
        sent["generationConfig"],
        json!({
            "temperature": 0.3,
            "maxOutputTokens": 256,
            "stopSequences": ["grew", "END"],
            "topP": 0.9,
            "seed": 42,
            "presencePenalty": 0.5,
            "frequencyPenalty": -0.25,
            "responseMimeType": "application/json",
            "responseJsonSchema": {"type": "object", "description": "A place",
                                   "properties": {"city": {"type": "string"}}},
            "thinkingConfig": {"thinkingBudget": 8192},
        })
    );
    assert!(
        !sent.to_string().contains("end-user-7"),
        "user is accepted, not sent"
    );
}

#[tokio::test]
async fn json_object_no_thinking_and_tool_choice_modes() {
    let fake = start(Wire::Google).await;
    let provider = provider(&config_for(&fake), ProviderKind::Google);
    let cases: [(Option<ToolChoice>, Option<bool>, serde_json::Value); 5] = [
        (None, None, serde_json::Value::Null),
        (Some(ToolChoice::Auto), None, json!("AUTO")),
        (None, Some(true), json!("VALIDATED")),
        (Some(ToolChoice::None), None, json!("NONE")),
        (Some(ToolChoice::Required), None, json!("ANY")),
    ];
    for (choice, strict, mode) in cases {
        fake.push(Reply::text("{}"));
        let mut request = request("gemini-2.5-flash");
        request.options = ChatOptions {
            tools: vec![city_tool("get_weather", strict)],
            tool_choice: choice.clone(),
            response_format: Some(ResponseFormat::JsonObject),
            reasoning_effort: Some(ReasoningEffort::None),
            ..ChatOptions::default()
        };
        provider.complete(&request).await.unwrap();
        let sent = fake.requests().last().unwrap().body.clone();
        assert_eq!(
            sent["toolConfig"]["functionCallingConfig"]["mode"], mode,
            "{choice:?} {strict:?}"
        );
        assert!(sent["toolConfig"]["functionCallingConfig"]["allowedFunctionNames"].is_null());
        assert_eq!(
            sent["generationConfig"]["responseMimeType"],
            "application/json"
        );
        assert!(sent["generationConfig"]["responseJsonSchema"].is_null());
        assert_eq!(
            sent["generationConfig"]["thinkingConfig"],
            json!({"thinkingBudget": 0})
        );
    }
}

#[tokio::test]
async fn images_tool_calls_and_tool_results_become_gemini_parts() {
    let fake = start(Wire::Google).await;
    fake.push(Reply::text("Sunny in Paris, and it is noon."));
    let provider = provider(&config_for(&fake), ProviderKind::Google);
    let mut request = request("gemini-2.5-flash");
    request.system_prompt = String::new();
    request.messages = vec![
        ChatMessage {
            role: Role::User,
            content: vec![
                ContentPart::Text("Where is this? Weather and time there?".into()),
                ContentPart::Image {
                    source: ImageSource::Base64 {
                        media_type: "image/png".into(),
                        data: "iVBORw0KGgo=".into(),
                    },
                    detail: Some(ImageDetail::High),
                },
            ],
            tool_calls: Vec::new(),
            tool_call_id: None,
        },
        ChatMessage {
            role: Role::Assistant,
            content: Vec::new(),
            tool_calls: vec![
                tool_call("call_0", "get_weather", r#"{"city":"Paris"}"#),
                tool_call("call_1", "get_time", ""),
            ],
            tool_call_id: None,
        },
        ChatMessage::tool_result("call_1", "noon"),
        ChatMessage::tool_result("call_0", r#"{"sky": "sunny"}"#),
        ChatMessage::user("Thanks!"),
    ];
    request.options.tools = vec![city_tool("get_weather", None), city_tool("get_time", None)];
    provider.check_request(&request).unwrap();
    provider.complete(&request).await.unwrap();

    let sent = &fake.requests()[0].body;
    assert_eq!(
        sent["contents"],
        json!([
            {"role": "user", "parts": [
                {"text": "Where is this? Weather and time there?"},
                {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
            ]},
            {"role": "model", "parts": [
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                {"functionCall": {"name": "get_time", "args": {}}},
            ]},
            {"role": "user", "parts": [
                {"functionResponse": {"name": "get_time", "response": {"content": "noon"}}},
                {"functionResponse": {"name": "get_weather", "response": {"sky": "sunny"}}},
            ]},
            {"role": "user", "parts": [{"text": "Thanks!"}]},
        ])
    );
    assert!(sent.get("systemInstruction").is_none());
    assert_eq!(
        sent["generationConfig"]["mediaResolution"],
        "MEDIA_RESOLUTION_HIGH"
    );
}

#[tokio::test]
async fn a_tool_result_is_named_after_the_nearest_call_with_its_id() {
    // Gemini's answers have no ids, so ours restart at call_0 with each answer.
    let fake = start(Wire::Google).await;
    fake.push(Reply::text("Done."));
    let provider = provider(&config_for(&fake), ProviderKind::Google);
    let mut request = request("gemini-2.5-flash");
    request.messages = vec![
        ChatMessage::user("Weather, then time."),
        ChatMessage {
            tool_calls: vec![tool_call("call_0", "get_weather", "{}")],
            ..ChatMessage::assistant("")
        },
        ChatMessage::tool_result("call_0", "sunny"),
        ChatMessage {
            tool_calls: vec![tool_call("call_0", "get_time", "{}")],
            ..ChatMessage::assistant("")
        },
        ChatMessage::tool_result("call_0", "noon"),
    ];
    provider.complete(&request).await.unwrap();
    let sent = &fake.requests()[0].body;
    let names: Vec<&str> = sent["contents"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["parts"][0]["functionResponse"]["name"].as_str())
        .collect();
    assert_eq!(names, ["get_weather", "get_time"]);
    assert_eq!(
        sent["contents"][1]["parts"],
        json!([{"functionCall": {"name": "get_weather", "args": {}}}]),
        "no empty text part beside the call"
    );
}

#[tokio::test]
async fn function_calls_in_a_whole_answer_are_tool_calls() {
    let fake = start(Wire::Google).await;
    fake.push(Reply::text("").usage(30, 12).tool_calls(&[
        ("ignored", "get_weather", r#"{"city":"Paris"}"#),
        ("ignored", "get_time", "{}"),
    ]));
    let provider = provider(&config_for(&fake), ProviderKind::Google);
    let answer = provider
        .complete(&request("gemini-2.5-flash"))
        .await
        .unwrap();
    assert_eq!(answer.content, "");
    assert_eq!(
        answer.tool_calls,
        [
            tool_call("call_0", "get_weather", r#"{"city":"Paris"}"#),
            tool_call("call_1", "get_time", "{}"),
        ]
    );
    assert_eq!(answer.finish_reason, FinishReason::ToolCalls);
    assert_eq!(answer.usage, TokenUsage::reported(30, 12));
}

#[tokio::test]
async fn streamed_function_calls_arrive_whole_as_tool_call_deltas() {
    let fake = start(Wire::Google).await;
    fake.push(
        Reply::text("Let me check.")
            .chunks(2)
            .usage(30, 12)
            .tool_calls(&[
                ("ignored", "get_weather", r#"{"city":"Paris"}"#),
                ("ignored", "get_time", "{}"),
            ]),
    );
    let provider = provider(&config_for(&fake), ProviderKind::Google);
    let got = collect(provider.as_ref(), &request("gemini-2.5-flash")).await;
    assert!(got.error.is_none(), "{:?}", got.error);
    assert_eq!(got.text, "Let me check.");
    let deltas: Vec<&ToolCallDelta> = got
        .events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::ToolCallDelta(delta) => Some(delta),
            _ => None,
        })
        .collect();
    assert_eq!(
        deltas,
        [
            &ToolCallDelta {
                index: 0,
                id: Some("call_0".into()),
                name: Some("get_weather".into()),
                arguments: r#"{"city":"Paris"}"#.into(),
            },
            &ToolCallDelta {
                index: 1,
                id: Some("call_1".into()),
                name: Some("get_time".into()),
                arguments: "{}".into(),
            },
        ]
    );
    assert_eq!(
        finished(&got.events),
        &StreamEvent::Finished {
            usage: TokenUsage::reported(30, 12),
            finish_reason: FinishReason::ToolCalls,
            model: "gemini-2.5-flash".into(),
        }
    );
}

#[tokio::test]
async fn what_gemini_cannot_honour_is_refused_by_name_before_any_call() {
    let fake = start(Wire::Google).await;
    let provider = provider(&config_for(&fake), ProviderKind::Google);
    let image = |source, detail| ChatMessage {
        role: Role::User,
        content: vec![ContentPart::Image { source, detail }],
        tool_calls: Vec::new(),
        tool_call_id: None,
    };
    let png = || ImageSource::Base64 {
        media_type: "image/png".into(),
        data: "iVBORw0KGgo=".into(),
    };
    type Change = Box<dyn Fn(&mut ProviderRequest)>;
    let cases: Vec<(&str, Change)> = vec![
        (
            "logit_bias",
            Box::new(|r| {
                r.options.logit_bias.insert(50256, -100);
            }),
        ),
        ("logprobs", Box::new(|r| r.options.logprobs = true)),
        ("logprobs", Box::new(|r| r.options.top_logprobs = Some(3))),
        (
            "parallel_tool_calls",
            Box::new(|r| {
                r.options.tools = vec![city_tool("get_weather", None)];
                r.options.parallel_tool_calls = Some(false);
            }),
        ),
        ("seed", Box::new(|r| r.options.seed = Some(1 << 40))),
        (
            "tool_choice",
            Box::new(|r| r.options.tool_choice = Some(ToolChoice::Required)),
        ),
        (
            "tool_choice",
            Box::new(|r| {
                r.options.tools = vec![city_tool("get_weather", None)];
                r.options.tool_choice = Some(ToolChoice::Tool("get_time".into()));
            }),
        ),
        (
            "messages",
            Box::new(move |r| {
                r.messages.push(image(
                    ImageSource::Url("https://example.com/cat.png".into()),
                    None,
                ));
            }),
        ),
        (
            "messages",
            Box::new(move |r| {
                r.messages.push(image(png(), Some(ImageDetail::Low)));
                r.messages.push(image(png(), Some(ImageDetail::High)));
            }),
        ),
        (
            "messages",
            Box::new(|r| r.messages.push(ChatMessage::tool_result("call_9", "42"))),
        ),
        (
            "messages",
            Box::new(|r| {
                r.messages.push(ChatMessage {
                    tool_calls: vec![tool_call("call_0", "get_weather", "[1, 2]")],
                    ..ChatMessage::assistant("")
                });
            }),
        ),
    ];
    for (param, change) in cases {
        let mut request = request("gemini-2.5-flash");
        change(&mut request);
        let refused = provider.check_request(&request).unwrap_err();
        assert_eq!(refused.param, param, "{refused}");
        assert_eq!(refused.provider, ProviderKind::Google);
        assert!(
            provider.complete(&request).await.is_err(),
            "refused unchecked too"
        );
    }
    assert!(fake.requests().is_empty(), "nothing refused reaches Gemini");
}
