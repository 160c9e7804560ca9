use core_domain::{ChatMessage, FinishReason, ProviderKind, StreamEvent, TokenUsage};
use fake_upstreams::{Finish, RecordedRequest, Reply, Wire};
use providers::{CompatibleServer, ProviderError};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::*;

#[tokio::test]
async fn complete_sends_the_chat_completions_request_and_parses_the_answer() {
    let fake = start(Wire::OpenAi).await;
    fake.push(Reply::text("2+2 is 4.").usage(21, 6).finish(Finish::Length));
    let provider = provider(&config_for(&fake), ProviderKind::OpenAi);

    let answer = provider.complete(&request("gpt-4o")).await.unwrap();
    assert_eq!(answer.content, "2+2 is 4.");
    assert_eq!(answer.usage, TokenUsage::reported(21, 6));
    assert_eq!(answer.finish_reason, FinishReason::Length);
    assert_eq!(answer.model, "gpt-4o");

    assert_chat_completions_request(&fake.requests()[0], "gpt-4o", json!({}));
}

/// The Chat Completions request for [`request`]`(model)`: path, key, JSON, and the body with the
/// system prompt first, plus `extra` fields.
fn assert_chat_completions_request(sent: &RecordedRequest, model: &str, extra: Value) {
    assert_eq!(sent.method, "POST");
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {OPENAI_KEY}").as_str())
    );
    assert_eq!(sent.header("content-type"), Some("application/json"));
    let mut expected = json!({
        "model": model,
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "What is 2+2?"}
        ],
        "temperature": 0.3,
        "max_tokens": 256
    });
    for (key, value) in extra.as_object().expect("extra fields") {
        expected[key] = value.clone();
    }
    assert_eq!(sent.body, expected);
}

#[tokio::test]
async fn a_history_that_starts_with_a_system_message_keeps_it_and_gets_no_second_one() {
    let fake = start(Wire::OpenAi).await;
    let provider = provider(&config_for(&fake), ProviderKind::OpenAi);
    let mut req = request("gpt-4o");
    req.messages
        .insert(0, ChatMessage::system("Caller's own system prompt"));
    provider.complete(&req).await.unwrap();
    let messages = fake.requests()[0].body["messages"].clone();
    assert_eq!(
        messages[0],
        json!({"role": "system", "content": "Caller's own system prompt"})
    );
    assert_eq!(messages.as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn reasoning_models_get_max_completion_tokens_and_no_temperature() {
    let fake = start(Wire::OpenAi).await;
    let provider = provider(&config_for(&fake), ProviderKind::OpenAi);
    provider.complete(&request("o3-mini")).await.unwrap();
    let body = &fake.requests()[0].body;
    assert_eq!(body["max_completion_tokens"], 256);
    assert!(body.get("max_tokens").is_none(), "{body}");
    assert!(body.get("temperature").is_none(), "{body}");
}

#[tokio::test]
async fn stream_asks_for_usage_and_reassembles_the_text_exactly() {
    let fake = start(Wire::OpenAi).await;
    let text = "Streaming, with ünïcödé and emoji 🎉, in seven pieces.";
    fake.push(
        Reply::text(text)
            .usage(30, 14)
            .chunks(7)
            .finish(Finish::Length),
    );
    let provider = provider(&config_for(&fake), ProviderKind::OpenAi);

    let got = collect(provider.as_ref(), &request("gpt-4o-mini")).await;
    assert!(got.error.is_none(), "{:?}", got.error);
    assert_eq!(got.text, text);
    assert_eq!(
        got.events.len(),
        8,
        "7 deltas and the end: {:?}",
        got.events
    );
    assert_eq!(
        finished(&got.events),
        &StreamEvent::Finished {
            usage: TokenUsage::reported(30, 14),
            finish_reason: FinishReason::Length,
            model: "gpt-4o-mini".into(),
        }
    );
    assert_chat_completions_request(
        &fake.requests()[0],
        "gpt-4o-mini",
        json!({"stream": true, "stream_options": {"include_usage": true}}),
    );
}

#[tokio::test]
async fn a_stream_without_usage_ends_with_an_estimate_flagged_as_such() {
    let fake = start(Wire::OpenAi).await;
    fake.push(Reply::text("twelve chars").without_usage().chunks(3));
    let provider = provider(&config_for(&fake), ProviderKind::OpenAi);
    let req = request("llama3.1:8b");
    let got = collect(provider.as_ref(), &req).await;
    let StreamEvent::Finished { usage, .. } = finished(&got.events) else {
        unreachable!()
    };
    assert!(usage.is_estimated);
    assert_eq!(usage.output_tokens, 3, "12 characters at 4 a token");
    assert_eq!(
        usage.input_tokens,
        core_domain::estimate_prompt_tokens(&req.system_prompt, &req.messages)
    );
}

#[tokio::test]
async fn a_whole_answer_without_usage_is_estimated_too() {
    let fake = start(Wire::OpenAi).await;
    fake.push(Reply::text("abcdefgh").without_usage());
    let provider = provider(&config_for(&fake), ProviderKind::OpenAi);
    let answer = provider.complete(&request("gpt-4o")).await.unwrap();
    assert!(answer.usage.is_estimated);
    assert_eq!(answer.usage.output_tokens, 2);
}

#[tokio::test]
async fn missing_key_is_not_configured_naming_the_variable() {
    let fake = start(Wire::OpenAi).await;
    fake.expect_calls(0); // Nothing is sent without a key.
    let mut config = config_for(&fake);
    config.openai.api_key = None;
    let err = provider(&config, ProviderKind::OpenAi)
        .complete(&request("gpt-4o"))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        ProviderError::NotConfigured {
            env_var: "OPENAI_API_KEY",
            ..
        }
    ));
}

#[tokio::test]
async fn xai_base_url_needs_the_xai_key() {
    let fake = start(Wire::OpenAi).await;
    let provider = provider(&config_for(&fake), ProviderKind::OpenAi);
    let mut req = request("grok-2");
    req.base_url = Some("https://api.x.ai/v1".into());
    let err = provider.complete(&req).await.unwrap_err();
    assert!(
        matches!(
            err,
            ProviderError::NotConfigured {
                env_var: "XAI_API_KEY",
                config_key: "providers.xai.api_key",
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_compatible_server_gets_its_own_key_and_never_the_openai_key() {
    let fake = start(Wire::OpenAi).await;
    let other = start(Wire::OpenAi).await;
    let mut config = config_for(&fake);
    config.allowed_http_base_urls = vec![other.base_url().to_owned()];
    let provider_without = provider(&config, ProviderKind::OpenAi);
    let mut req = request("llama3.1:8b");
    req.base_url = Some(other.base_url().to_owned());

    provider_without.complete(&req).await.unwrap();
    assert_eq!(other.requests()[0].header("authorization"), None);

    config.openai_compatible = vec![CompatibleServer::with_key(
        format!("{}/", other.base_url()),
        SecretString::from("vllm-key"),
    )];
    provider(&config, ProviderKind::OpenAi)
        .complete(&req)
        .await
        .unwrap();
    assert_eq!(
        other.requests()[1].header("authorization"),
        Some("Bearer vllm-key")
    );
    assert_eq!(
        fake.request_count(),
        0,
        "the configured endpoint was not called"
    );
    assert_eq!(other.requests()[1].path, "/v1/chat/completions");
}

#[tokio::test]
async fn a_specialist_base_url_resolving_to_loopback_is_refused_unless_allowed() {
    let fake = start(Wire::OpenAi).await;
    // The same server, named so that the resolver (not the URL text) has to decide.
    let by_name = fake.base_url().replace("127.0.0.1", "localhost");
    let mut req = request("llama3.1:8b");
    req.base_url = Some(by_name.clone());

    let err = provider(&config_for(&fake), ProviderKind::OpenAi)
        .complete(&req)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("resolves only to internal addresses"),
        "{err}"
    );
    assert_eq!(fake.request_count(), 0);

    let mut config = config_for(&fake);
    config.allowed_http_base_urls = vec![by_name];
    provider(&config, ProviderKind::OpenAi)
        .complete(&req)
        .await
        .unwrap();
    assert_eq!(fake.request_count(), 1);
}

/// A request asking for everything the chat model holds: every option, an image (by URL and
/// inline), a tool call and its result.
fn rich_request(model: &str) -> providers::ProviderRequest {
    use core_domain::{
        ChatOptions, ContentPart, ImageDetail, ImageSource, JsonSchemaFormat, ReasoningEffort,
        ResponseFormat, ToolCall, ToolChoice, ToolDefinition,
    };
    let mut req = request(model);
    let mut look = ChatMessage::user("What is this?");
    look.content.push(ContentPart::Image {
        source: ImageSource::Url("https://example.com/a.png".into()),
        detail: Some(ImageDetail::High),
    });
    look.content.push(ContentPart::Image {
        source: ImageSource::Base64 {
            media_type: "image/png".into(),
            data: "iVBOR".into(),
        },
        detail: None,
    });
    let mut call = ChatMessage::assistant("");
    call.content.clear();
    call.tool_calls.push(ToolCall {
        id: "call_1".into(),
        name: "lookup".into(),
        arguments: r#"{"q":"a.png"}"#.into(),
    });
    req.messages = vec![look, call, ChatMessage::tool_result("call_1", "a cat")];
    req.options = ChatOptions {
        tools: vec![ToolDefinition {
            name: "lookup".into(),
            description: Some("Looks things up".into()),
            parameters: json!({"type": "object", "properties": {"q": {"type": "string"}}}),
            strict: Some(true),
        }],
        tool_choice: Some(ToolChoice::Tool("lookup".into())),
        parallel_tool_calls: Some(false),
        response_format: Some(ResponseFormat::JsonSchema(JsonSchemaFormat {
            name: "answer".into(),
            description: Some("The answer".into()),
            schema: json!({"type": "object"}),
            strict: true,
        })),
        stop: vec!["END".into(), "STOP".into()],
        top_p: Some(0.9),
        seed: Some(7),
        presence_penalty: Some(0.5),
        frequency_penalty: Some(-0.5),
        logit_bias: [(50256, -100)].into(),
        logprobs: true,
        top_logprobs: Some(2),
        reasoning_effort: Some(ReasoningEffort::Low),
        user: Some("u-1".into()),
    };
    req
}

#[tokio::test]
async fn every_option_part_tool_call_and_tool_result_is_forwarded() {
    let fake = start(Wire::OpenAi).await;
    let provider = provider(&config_for(&fake), ProviderKind::OpenAi);
    let req = rich_request("gpt-4o");
    provider
        .check_request(&req)
        .expect("OpenAI honours everything");
    provider.complete(&req).await.unwrap();
    let body = &fake.requests()[0].body;
    assert_eq!(
        body["messages"],
        json!([
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "high"}},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}}
            ]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "lookup", "arguments": "{\"q\":\"a.png\"}"}}
            ]},
            {"role": "tool", "content": "a cat", "tool_call_id": "call_1"}
        ])
    );
    assert_eq!(
        body["tools"],
        json!([{"type": "function", "function": {"name": "lookup", "description": "Looks things up",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}, "strict": true}}])
    );
    assert_eq!(
        body["tool_choice"],
        json!({"type": "function", "function": {"name": "lookup"}})
    );
    assert_eq!(body["parallel_tool_calls"], false);
    assert_eq!(
        body["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "answer", "description": "The answer",
            "schema": {"type": "object"}, "strict": true}})
    );
    assert_eq!(body["stop"], json!(["END", "STOP"]));
    assert_eq!(body["top_p"], 0.9);
    assert_eq!(body["seed"], 7);
    assert_eq!(body["presence_penalty"], 0.5);
    assert_eq!(body["frequency_penalty"], -0.5);
    assert_eq!(body["logit_bias"], json!({"50256": -100}));
    assert_eq!(body["logprobs"], true);
    assert_eq!(body["top_logprobs"], 2);
    assert_eq!(body["reasoning_effort"], "low");
    assert_eq!(body["user"], "u-1");
}

#[tokio::test]
async fn tool_calls_are_parsed_from_whole_answers_and_streams() {
    let fake = start(Wire::OpenAi).await;
    let calls = [
        ("call_a", "lookup", r#"{"q":"cats"}"#),
        ("call_b", "now", "{}"),
    ];
    fake.push(Reply::text("").tool_calls(&calls).usage(20, 9));
    fake.push(Reply::text("Let me look.").tool_calls(&calls).usage(20, 12));
    let provider = provider(&config_for(&fake), ProviderKind::OpenAi);
    let req = rich_request("gpt-4o");

    let whole = provider.complete(&req).await.unwrap();
    assert_eq!(whole.content, "");
    assert_eq!(whole.finish_reason, FinishReason::ToolCalls);
    let parsed: Vec<_> = whole
        .tool_calls
        .iter()
        .map(|c| (c.id.as_str(), c.name.as_str(), c.arguments.as_str()))
        .collect();
    assert_eq!(parsed, calls);

    let mut stream_req = req.clone();
    stream_req.options.logprobs = false;
    stream_req.options.top_logprobs = None;
    let got = collect(provider.as_ref(), &stream_req).await;
    assert!(got.error.is_none(), "{:?}", got.error);
    assert_eq!(got.text, "Let me look.");
    let deltas: Vec<_> = got
        .events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::ToolCallDelta(d) => Some(d.clone()),
            _ => None,
        })
        .collect();
    // Per call: the id and name with "" arguments, then the arguments in pieces, in order.
    for (index, (id, name, arguments)) in calls.iter().enumerate() {
        let of_call: Vec<_> = deltas
            .iter()
            .filter(|d| d.index as usize == index)
            .collect();
        assert_eq!(of_call[0].id.as_deref(), Some(*id));
        assert_eq!(of_call[0].name.as_deref(), Some(*name));
        assert!(
            of_call[1..]
                .iter()
                .all(|d| d.id.is_none() && d.name.is_none())
        );
        let joined: String = of_call.iter().map(|d| d.arguments.as_str()).collect();
        assert_eq!(joined, *arguments);
    }
    assert!(
        deltas.windows(2).all(|w| w[0].index <= w[1].index),
        "calls stream in order: {deltas:?}"
    );
    match finished(&got.events) {
        StreamEvent::Finished { finish_reason, .. } => {
            assert_eq!(*finish_reason, FinishReason::ToolCalls);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn logprobs_of_a_whole_answer_are_passed_on() {
    let fake = start(Wire::OpenAi).await;
    let logprobs =
        json!({"content": [{"token": "4", "logprob": -0.01, "bytes": [52], "top_logprobs": []}]});
    let mut body = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "4"},
                     "logprobs": logprobs, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}
    });
    fake.push(Reply::status(200, body.take().to_string()));
    let provider = provider(&config_for(&fake), ProviderKind::OpenAi);
    let answer = provider.complete(&rich_request("gpt-4o")).await.unwrap();
    assert_eq!(answer.content, "4");
    assert_eq!(answer.logprobs, Some(logprobs));
}
