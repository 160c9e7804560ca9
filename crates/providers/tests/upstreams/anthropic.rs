use core_domain::{
    ChatMessage, ChatOptions, ContentPart, FinishReason, ImageDetail, ImageSource,
    JsonSchemaFormat, ProviderKind, ReasoningEffort, ResponseFormat, StreamEvent, TokenUsage,
    ToolCall, ToolCallDelta, ToolChoice, ToolDefinition,
};
use fake_upstreams::{Finish, RecordedRequest, Reply, Wire};
use providers::{ProviderError, ProviderRequest};
use serde_json::json;

use crate::*;

#[tokio::test]
async fn complete_sends_a_messages_request_and_parses_the_answer() {
    let fake = start(Wire::Anthropic).await;
    fake.push(Reply::text("Four.").usage(40, 3).finish(Finish::Length));
    let provider = provider(&config_for(&fake), ProviderKind::Anthropic);
    let mut req = request("claude-sonnet-4-5");
    req.temperature = 1.7;
    req.messages.insert(0, ChatMessage::system("Extra rule."));

    let answer = provider.complete(&req).await.unwrap();
    assert_eq!(answer.content, "Four.");
    assert_eq!(answer.usage, TokenUsage::reported(40, 3));
    assert_eq!(answer.finish_reason, FinishReason::Length);
    assert_eq!(answer.model, "claude-sonnet-4-5");

    let sent = &fake.requests()[0];
    assert_messages_headers(sent);
    assert_eq!(
        sent.body,
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 256,
            "system": "You are terse.\n\nExtra rule.",
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "What is 2+2?"}
            ],
            "temperature": 1.0
        })
    );
}

#[tokio::test]
async fn stream_reads_every_event_type_and_reassembles_the_text() {
    let fake = start(Wire::Anthropic).await;
    let text = "Claude streams in content_block_delta events.";
    fake.push(
        Reply::text(text)
            .usage(55, 9)
            .chunks(5)
            .finish(Finish::Length),
    );
    let provider = provider(&config_for(&fake), ProviderKind::Anthropic);

    let got = collect(provider.as_ref(), &request("claude-haiku-4-5")).await;
    assert!(got.error.is_none(), "{:?}", got.error);
    assert_eq!(got.text, text);
    assert_eq!(got.events.len(), 6);
    assert_eq!(
        finished(&got.events),
        &StreamEvent::Finished {
            usage: TokenUsage::reported(55, 9),
            finish_reason: FinishReason::Length,
            model: "claude-haiku-4-5".into(),
        }
    );
    let sent = &fake.requests()[0];
    assert_messages_headers(sent);
    assert_eq!(
        sent.body,
        json!({
            "model": "claude-haiku-4-5",
            "max_tokens": 256,
            "system": "You are terse.",
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "What is 2+2?"}
            ],
            "temperature": 0.3,
            "stream": true
        })
    );
}

#[tokio::test]
async fn an_anthropic_stream_without_usage_is_estimated() {
    let fake = start(Wire::Anthropic).await;
    fake.push(Reply::text("abcdabcdabcd").without_usage().chunks(3));
    let provider = provider(&config_for(&fake), ProviderKind::Anthropic);
    let got = collect(provider.as_ref(), &request("claude-3-haiku")).await;
    assert!(got.error.is_none(), "{:?}", got.error);
    let StreamEvent::Finished { usage, .. } = finished(&got.events) else {
        unreachable!()
    };
    assert!(usage.is_estimated);
    assert_eq!(usage.output_tokens, 3, "12 characters at 4 a token");
}

#[tokio::test]
async fn an_error_event_mid_stream_ends_it_with_the_upstream_message() {
    let fake = start(Wire::Anthropic).await;
    fake.push(
        Reply::text("one two three four")
            .chunks(4)
            .error_event_after(2, "Overloaded"),
    );
    let provider = provider(&config_for(&fake), ProviderKind::Anthropic);
    let got = collect(provider.as_ref(), &request("claude-3-haiku")).await;
    assert_eq!(got.events.len(), 2, "two deltas reached the caller first");
    let err = got.error.expect("the stream ends with an error");
    assert!(matches!(err, ProviderError::Upstream { status: None, .. }));
    assert!(
        err.to_string().contains("overloaded_error: Overloaded"),
        "{err}"
    );
}

#[tokio::test]
async fn missing_key_names_anthropic_api_key() {
    let fake = start(Wire::Anthropic).await;
    let mut config = config_for(&fake);
    config.anthropic.api_key = None;
    let err = provider(&config, ProviderKind::Anthropic)
        .stream(&request("claude-3-haiku"))
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("ANTHROPIC_API_KEY"), "{err}");
}

#[tokio::test]
async fn a_redirect_is_not_followed_so_the_key_and_prompt_stay_put() {
    let fake = start(Wire::Anthropic).await;
    let elsewhere = start(Wire::Anthropic).await;
    let target = format!("{}/v1/messages", elsewhere.base_url());
    for status in [302, 307, 308] {
        fake.push(Reply::status(status, "").header("location", target.as_str()));
    }
    let provider = provider(&config_for(&fake), ProviderKind::Anthropic);

    for status in [302, 307, 308] {
        let err = provider
            .complete(&request("claude-haiku-4-5"))
            .await
            .unwrap_err();
        match &err {
            ProviderError::Upstream {
                status: Some(got),
                message,
            } => {
                assert_eq!(*got, status);
                assert!(message.contains(&target), "{message}");
                assert!(message.contains("not followed"), "{message}");
            }
            other => panic!("expected an upstream error, got {other:?}"),
        }
    }
    assert_eq!(fake.request_count(), 3, "one attempt each, no retries");
    assert_eq!(
        elsewhere.request_count(),
        0,
        "the redirect target never saw the x-api-key or the prompt"
    );
}

/// The Messages API's path and headers: its own key header, the version, no bearer token.
fn assert_messages_headers(sent: &RecordedRequest) {
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.header("x-api-key"), Some(ANTHROPIC_KEY));
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(sent.header("authorization"), None);
}

fn lookup_tool() -> ToolDefinition {
    ToolDefinition {
        name: "lookup".into(),
        description: Some("Looks a word up.".into()),
        parameters: json!({"type": "object", "properties": {"word": {"type": "string"}}}),
        strict: None,
    }
}

#[tokio::test]
async fn tools_stop_top_p_and_user_are_sent_and_tool_calls_come_back_whole() {
    let fake = start(Wire::Anthropic).await;
    fake.push(Reply::text("Looking up.").usage(30, 12).tool_calls(&[
        ("toolu_1", "lookup", r#"{"word":"apple"}"#),
        ("toolu_2", "lookup", r#"{"word":"pear"}"#),
    ]));
    let provider = provider(&config_for(&fake), ProviderKind::Anthropic);
    let mut req = request("claude-sonnet-4-5");
    req.options = ChatOptions {
        tools: vec![lookup_tool()],
        tool_choice: Some(ToolChoice::Tool("lookup".into())),
        parallel_tool_calls: Some(false),
        stop: vec!["END".into(), "STOP".into()],
        top_p: Some(0.9),
        user: Some("user-42".into()),
        ..ChatOptions::default()
    };
    provider.check_request(&req).unwrap();

    let answer = provider.complete(&req).await.unwrap();
    assert_eq!(answer.content, "Looking up.");
    assert_eq!(
        answer.tool_calls,
        vec![
            ToolCall {
                id: "toolu_1".into(),
                name: "lookup".into(),
                arguments: r#"{"word":"apple"}"#.into(),
            },
            ToolCall {
                id: "toolu_2".into(),
                name: "lookup".into(),
                arguments: r#"{"word":"pear"}"#.into(),
            },
        ]
    );
    assert_eq!(answer.finish_reason, FinishReason::ToolCalls);
    assert_eq!(answer.usage, TokenUsage::reported(30, 12));

    let sent = &fake.requests()[0];
    assert_messages_headers(sent);
    assert_eq!(
        sent.body,
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 256,
            "system": "You are terse.",
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "What is 2+2?"}
            ],
            "temperature": 0.3,
            "top_p": 0.9,
            "stop_sequences": ["END", "STOP"],
            "tools": [{
                "name": "lookup",
                "description": "Looks a word up.",
                "input_schema": {"type": "object", "properties": {"word": {"type": "string"}}}
            }],
            "tool_choice": {"type": "tool", "name": "lookup", "disable_parallel_tool_use": true},
            "metadata": {"user_id": "user-42"}
        })
    );
}

#[tokio::test]
async fn tool_choice_auto_none_and_required_map_to_anthropic_words() {
    let fake = start(Wire::Anthropic).await;
    let provider = provider(&config_for(&fake), ProviderKind::Anthropic);
    let cases = [
        (Some(ToolChoice::Auto), None, json!({"type": "auto"})),
        (Some(ToolChoice::None), Some(false), json!({"type": "none"})),
        (Some(ToolChoice::Required), None, json!({"type": "any"})),
        (
            None,
            Some(false),
            json!({"type": "auto", "disable_parallel_tool_use": true}),
        ),
    ];
    for (choice, parallel, expected) in cases {
        fake.push(Reply::text("ok"));
        let mut req = request("claude-haiku-4-5");
        req.options.tools = vec![lookup_tool()];
        req.options.tool_choice = choice;
        req.options.parallel_tool_calls = parallel;
        provider.complete(&req).await.unwrap();
        let sent = fake.requests().pop().unwrap();
        assert_eq!(sent.body["tool_choice"], expected);
    }
}

#[tokio::test]
async fn streamed_tool_calls_become_tool_call_deltas_after_the_text() {
    let fake = start(Wire::Anthropic).await;
    let first = r#"{"word":"apple","lang":"en"}"#;
    let second = r#"{"word":"pear"}"#;
    fake.push(
        Reply::text("Let me look.")
            .usage(20, 15)
            .chunks(2)
            .tool_calls(&[("toolu_a", "lookup", first), ("toolu_b", "lookup", second)]),
    );
    let provider = provider(&config_for(&fake), ProviderKind::Anthropic);
    let mut req = request("claude-sonnet-4-5");
    req.options.tools = vec![lookup_tool()];

    let got = collect(provider.as_ref(), &req).await;
    assert!(got.error.is_none(), "{:?}", got.error);
    assert_eq!(got.text, "Let me look.");
    let deltas: Vec<&ToolCallDelta> = got
        .events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::ToolCallDelta(d) => Some(d),
            _ => None,
        })
        .collect();
    for (index, id, arguments) in [(0, "toolu_a", first), (1, "toolu_b", second)] {
        let pieces: Vec<&&ToolCallDelta> = deltas.iter().filter(|d| d.index == index).collect();
        assert_eq!(pieces[0].id.as_deref(), Some(id));
        assert_eq!(pieces[0].name.as_deref(), Some("lookup"));
        assert_eq!(pieces[0].arguments, "");
        assert!(
            pieces[1..]
                .iter()
                .all(|d| d.id.is_none() && d.name.is_none())
        );
        let joined: String = pieces.iter().map(|d| d.arguments.as_str()).collect();
        assert_eq!(joined, arguments);
    }
    assert_eq!(
        finished(&got.events),
        &StreamEvent::Finished {
            usage: TokenUsage::reported(20, 15),
            finish_reason: FinishReason::ToolCalls,
            model: "claude-sonnet-4-5".into(),
        }
    );
}

#[tokio::test]
async fn a_stream_that_only_calls_a_tool_has_no_text() {
    let fake = start(Wire::Anthropic).await;
    fake.push(Reply::text("").tool_calls(&[("toolu_1", "lookup", "{}")]));
    let provider = provider(&config_for(&fake), ProviderKind::Anthropic);
    let mut req = request("claude-sonnet-4-5");
    req.options.tools = vec![lookup_tool()];
    let got = collect(provider.as_ref(), &req).await;
    assert!(got.error.is_none(), "{:?}", got.error);
    assert_eq!(got.text, "");
    let arguments: String = got
        .events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::ToolCallDelta(d) => Some(d.arguments.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(arguments, "{}");
    let whole = {
        fake.push(Reply::text("").tool_calls(&[("toolu_1", "lookup", "{}")]));
        provider.complete(&req).await.unwrap()
    };
    assert_eq!(whole.content, "");
    assert_eq!(whole.tool_calls[0].arguments, "{}");
    assert_eq!(whole.finish_reason, FinishReason::ToolCalls);
}

#[tokio::test]
async fn images_tool_calls_and_merged_tool_results_are_sent_as_blocks() {
    let fake = start(Wire::Anthropic).await;
    fake.push(Reply::text("Both fruit exist."));
    let provider = provider(&config_for(&fake), ProviderKind::Anthropic);
    let mut req = request("claude-sonnet-4-5");
    let mut asking = ChatMessage::user("What are these?");
    asking.content.push(ContentPart::Image {
        source: ImageSource::Url("https://example.com/a.png".into()),
        detail: None,
    });
    asking.content.push(ContentPart::Image {
        source: ImageSource::Base64 {
            media_type: "image/png".into(),
            data: "iVBORw0KGgo=".into(),
        },
        detail: Some(ImageDetail::Auto),
    });
    let mut calling = ChatMessage::assistant("");
    calling.tool_calls = vec![
        ToolCall {
            id: "toolu_1".into(),
            name: "lookup".into(),
            arguments: r#"{"word":"apple"}"#.into(),
        },
        ToolCall {
            id: "toolu_2".into(),
            name: "lookup".into(),
            arguments: String::new(),
        },
    ];
    req.messages = vec![
        asking,
        calling,
        ChatMessage::tool_result("toolu_1", "a fruit"),
        ChatMessage::tool_result("toolu_2", "also a fruit"),
        ChatMessage::user("So?"),
    ];
    req.options.tools = vec![lookup_tool()];
    provider.check_request(&req).unwrap();
    provider.complete(&req).await.unwrap();

    let sent = &fake.requests()[0];
    assert_eq!(
        sent.body["messages"],
        json!([
            {"role": "user", "content": [
                {"type": "text", "text": "What are these?"},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                             "data": "iVBORw0KGgo="}}
            ]},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "lookup",
                 "input": {"word": "apple"}},
                {"type": "tool_use", "id": "toolu_2", "name": "lookup", "input": {}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "a fruit"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "also a fruit"},
                {"type": "text", "text": "So?"}
            ]}
        ])
    );
}

fn weather_format() -> ResponseFormat {
    ResponseFormat::JsonSchema(JsonSchemaFormat {
        name: "weather".into(),
        description: None,
        schema: json!({"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"], "additionalProperties": false}),
        strict: true,
    })
}

#[tokio::test]
async fn structured_output_is_a_forced_tool_whose_input_is_the_answer() {
    let fake = start(Wire::Anthropic).await;
    let json_text = r#"{"city":"Paris"}"#;
    fake.push(Reply::text("").tool_calls(&[("toolu_s", "weather", json_text)]));
    let provider = provider(&config_for(&fake), ProviderKind::Anthropic);
    let mut req = request("claude-sonnet-4-5");
    req.options.response_format = Some(weather_format());

    let answer = provider.complete(&req).await.unwrap();
    assert_eq!(answer.content, json_text);
    assert!(answer.tool_calls.is_empty());
    assert_eq!(answer.finish_reason, FinishReason::Stop);
    let body = &fake.requests()[0].body;
    assert_eq!(
        body["tools"],
        json!([{
            "name": "weather",
            "description": "Give the whole answer as this tool's input.",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                             "required": ["city"], "additionalProperties": false}
        }])
    );
    assert_eq!(
        body["tool_choice"],
        json!({"type": "tool", "name": "weather"})
    );

    fake.push(Reply::text("").tool_calls(&[("toolu_s", "weather", json_text)]));
    let got = collect(provider.as_ref(), &req).await;
    assert!(got.error.is_none(), "{:?}", got.error);
    assert_eq!(got.text, json_text);
    assert!(
        !got.events
            .iter()
            .any(|e| matches!(e, StreamEvent::ToolCallDelta(_)))
    );
    let StreamEvent::Finished { finish_reason, .. } = finished(&got.events) else {
        unreachable!()
    };
    assert_eq!(finish_reason, &FinishReason::Stop);

    fake.push(Reply::text("").tool_calls(&[("toolu_s", "json_object", "{}")]));
    req.options.response_format = Some(ResponseFormat::JsonObject);
    assert_eq!(provider.complete(&req).await.unwrap().content, "{}");
    let body = &fake.requests()[2].body;
    assert_eq!(body["tools"][0]["input_schema"], json!({"type": "object"}));
    assert_eq!(
        body["tool_choice"],
        json!({"type": "tool", "name": "json_object"})
    );
}

#[tokio::test]
async fn reasoning_effort_asks_for_thinking_with_a_budget_below_max_tokens_and_no_temperature() {
    let fake = start(Wire::Anthropic).await;
    fake.push(Reply::text("Deep answer."));
    let provider = provider(&config_for(&fake), ProviderKind::Anthropic);
    let mut req = request("claude-sonnet-4-5");
    req.max_tokens = 4_096;
    req.options.reasoning_effort = Some(ReasoningEffort::Medium);
    req.options.top_p = Some(0.95);
    provider.check_request(&req).unwrap();
    assert_eq!(
        provider.complete(&req).await.unwrap().content,
        "Deep answer."
    );
    let body = &fake.requests()[0].body;
    assert_eq!(
        body["thinking"],
        json!({"type": "enabled", "budget_tokens": 4_095})
    );
    assert!(body.get("temperature").is_none(), "{body}");

    req.max_tokens = 32_000;
    req.options.reasoning_effort = Some(ReasoningEffort::High);
    fake.push(Reply::text("ok"));
    provider.complete(&req).await.unwrap();
    assert_eq!(fake.requests()[1].body["thinking"]["budget_tokens"], 16_384);

    req.options.reasoning_effort = Some(ReasoningEffort::None);
    fake.push(Reply::text("ok"));
    provider.complete(&req).await.unwrap();
    let body = &fake.requests()[2].body;
    assert!(body.get("thinking").is_none(), "{body}");
    assert_eq!(body["temperature"], 0.3);
}

#[tokio::test]
async fn every_refusal_names_its_param_and_nothing_is_sent() {
    let fake = start(Wire::Anthropic).await;
    let provider = provider(&config_for(&fake), ProviderKind::Anthropic);
    let with = |change: &dyn Fn(&mut ProviderRequest)| {
        let mut req = request("claude-sonnet-4-5");
        change(&mut req);
        req
    };
    let mut bad_arguments = ChatMessage::assistant("");
    bad_arguments.tool_calls = vec![ToolCall {
        id: "toolu_1".into(),
        name: "lookup".into(),
        arguments: "{not json".into(),
    }];
    let mut low_detail = ChatMessage::user("look");
    low_detail.content.push(ContentPart::Image {
        source: ImageSource::Url("https://example.com/a.png".into()),
        detail: Some(ImageDetail::Low),
    });
    let mut tiff = ChatMessage::user("look");
    tiff.content.push(ContentPart::Image {
        source: ImageSource::Base64 {
            media_type: "image/tiff".into(),
            data: "AAAA".into(),
        },
        detail: None,
    });
    let cases: Vec<(&str, ProviderRequest)> = vec![
        ("seed", with(&|r| r.options.seed = Some(7))),
        (
            "presence_penalty",
            with(&|r| r.options.presence_penalty = Some(0.5)),
        ),
        (
            "frequency_penalty",
            with(&|r| r.options.frequency_penalty = Some(0.5)),
        ),
        (
            "logit_bias",
            with(&|r| {
                r.options.logit_bias.insert(50256, -100);
            }),
        ),
        ("logprobs", with(&|r| r.options.logprobs = true)),
        ("top_logprobs", with(&|r| r.options.top_logprobs = Some(3))),
        (
            "messages",
            with(&|r| r.messages.push(bad_arguments.clone())),
        ),
        ("messages", with(&|r| r.messages.push(low_detail.clone()))),
        ("messages", with(&|r| r.messages.push(tiff.clone()))),
        (
            "messages",
            with(&|r| {
                let mut orphan = ChatMessage::tool_result("x", "y");
                orphan.tool_call_id = None;
                r.messages.push(orphan);
            }),
        ),
        (
            "response_format",
            with(&|r| {
                r.options.response_format = Some(weather_format());
                r.options.tools = vec![lookup_tool()];
            }),
        ),
        (
            "reasoning_effort",
            with(&|r| {
                r.max_tokens = 8_000;
                r.options.response_format = Some(ResponseFormat::JsonObject);
                r.options.reasoning_effort = Some(ReasoningEffort::Low);
            }),
        ),
        (
            "reasoning_effort",
            with(&|r| {
                r.max_tokens = 1_024;
                r.options.reasoning_effort = Some(ReasoningEffort::Minimal);
            }),
        ),
        (
            "top_p",
            with(&|r| {
                r.max_tokens = 8_000;
                r.options.top_p = Some(0.5);
                r.options.reasoning_effort = Some(ReasoningEffort::Low);
            }),
        ),
        (
            "tool_choice",
            with(&|r| {
                r.max_tokens = 8_000;
                r.options.tools = vec![lookup_tool()];
                r.options.tool_choice = Some(ToolChoice::Required);
                r.options.reasoning_effort = Some(ReasoningEffort::Low);
            }),
        ),
        (
            "tool_choice",
            with(&|r| r.options.tool_choice = Some(ToolChoice::Required)),
        ),
    ];
    for (param, req) in cases {
        let refused = provider.check_request(&req).unwrap_err();
        assert_eq!(refused.param, param, "{refused}");
        assert_eq!(refused.provider, ProviderKind::Anthropic);
        assert!(refused.to_string().contains("anthropic"), "{refused}");
        let err = provider.complete(&req).await.unwrap_err();
        assert!(err.to_string().contains(&refused.what), "{err}");
        assert!(provider.stream(&req).await.is_err());
    }
    assert_eq!(fake.request_count(), 0, "a refused request never leaves");
}
