//! A caller's own Anthropic Messages request on an Anthropic destination: sent as it came, its
//! answer given back as the upstream wrote it, reasoning streamed as reasoning, tokens counted.

use std::sync::Arc;

use core_domain::{
    ProviderKind, Specialist, SpecialistDraft, SpecialistId, StreamEvent, TokenUsage, ToolCall,
};
use fake_upstreams::{Reply, Wire};
use providers::{AnthropicNative, ProviderError, ProviderRegistry, ProviderRequest};
use serde_json::json;

use crate::*;

/// What a Claude Code turn sends after a tool call: signed thinking, redacted thinking and a
/// `tool_use` block in the assistant's turn, `cache_control` on the tool result, a block type
/// the gateway does not know, odd spacing and escapes — none of which survives a re-serialization.
const MESSAGES: &str = r#"[
  {"role": "user", "content": "Look it up  \u00e9"},
  {"role":"assistant","content":[
     {"type":"thinking","thinking":"I should call lookup.","signature":"EqQBCkYIBxgCKkB+sig=="},
     {"type":"redacted_thinking","data":"EmwKAhgBEgy3va3pzix/LafPsn4a"},
     {"type":"tool_use","id":"toolu_01","name":"lookup","input":{"q":"x","n":1.50}}]},
  {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_01","content":"42",
     "cache_control":{"type":"ephemeral"}},{"type":"future_block","x":[]}]}
]"#;

const TOOLS: &str = r#"[{"name":"lookup","description":"Looks up.","input_schema":{"type":"object"},"cache_control":{"type":"ephemeral","ttl":"1h"}}]"#;

const BETA: &str = "interleaved-thinking-2025-05-14,prompt-caching-2024-07-31";

fn native_request(system: Option<&str>, fields: &[(&str, &str)]) -> ProviderRequest {
    let mut request = request("claude-sonnet-4-5");
    request.anthropic = Some(Arc::new(AnthropicNative {
        system: system.map(Into::into),
        fields: fields
            .iter()
            .map(|(name, value)| ((*name).into(), (*value).into()))
            .collect(),
        beta: Some(BETA.into()),
    }));
    request
}

fn claude_code_request() -> ProviderRequest {
    native_request(
        Some(
            r#"[{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}]"#,
        ),
        &[
            ("messages", MESSAGES),
            ("tools", TOOLS),
            ("thinking", r#"{"type": "enabled", "budget_tokens": 1024}"#),
            ("metadata", r#"{"user_id": "user_abc"}"#),
        ],
    )
}

#[tokio::test]
async fn a_native_request_reaches_the_upstream_byte_for_byte() {
    let fake = start(Wire::Anthropic).await;
    let provider = provider(&config_for(&fake), ProviderKind::Anthropic);
    provider.complete(&claude_code_request()).await.unwrap();

    let sent = &fake.requests()[0];
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.header("anthropic-beta"), Some(BETA));
    assert_eq!(sent.header("x-api-key"), Some(ANTHROPIC_KEY));
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(sent.header("content-type"), Some("application/json"));
    let raw = sent.raw_text();
    assert_eq!(
        raw,
        format!(
            concat!(
                r#"{{"model":"claude-sonnet-4-5","max_tokens":256,"system":["#,
                r#"{{"text":"You are terse.","type":"text"}},"#,
                r#"{{"type": "text", "text": "You are Claude Code.", "cache_control": {{"type": "ephemeral"}}}}],"#,
                r#""messages":{MESSAGES},"tools":{TOOLS},"#,
                r#""thinking":{{"type": "enabled", "budget_tokens": 1024}},"metadata":{{"user_id": "user_abc"}}}}"#
            ),
            MESSAGES = MESSAGES,
            TOOLS = TOOLS
        )
    );
    // Valid JSON, and with thinking on no temperature of the specialist's.
    assert!(sent.body.is_object());
    assert!(sent.body.get("temperature").is_none());
}

#[tokio::test]
async fn a_native_stream_asks_for_one_and_a_string_system_follows_the_prompt() {
    let fake = start(Wire::Anthropic).await;
    let provider = provider(&config_for(&fake), ProviderKind::Anthropic);
    let request = native_request(Some(r#""Answer in French.""#), &[("messages", MESSAGES)]);
    let got = collect(provider.as_ref(), &request).await;
    assert!(got.error.is_none(), "{:?}", got.error);

    let sent = &fake.requests()[0];
    let raw = sent.raw_text();
    assert!(raw.contains(&format!(r#""messages":{MESSAGES}"#)), "{raw}");
    assert_eq!(
        sent.body["system"],
        json!([
            {"type": "text", "text": "You are terse."},
            {"type": "text", "text": "Answer in French."}
        ])
    );
    assert!(
        raw.ends_with(r#","temperature":0.3,"stream":true}"#),
        "{raw}"
    );
}

#[tokio::test]
async fn a_whole_answer_gives_back_the_upstreams_content_text_exactly() {
    let fake = start(Wire::Anthropic).await;
    let content = r#"[ {"type":"thinking","thinking":"Two and two.","signature":"c2ln"} ,
        {"type": "redacted_thinking", "data": "ZGF0YQ=="},
        {"type":"text","text":"Four \u2014 surely.","citations":null},
        {"type":"tool_use","id":"toolu_9","name":"lookup","input":{"q": "4"}} ]"#;
    fake.push(Reply::raw(format!(
        r#"{{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929",
            "content": {content},
            "stop_reason":"tool_use","usage":{{"input_tokens":20,"cache_read_input_tokens":100,
            "cache_creation_input_tokens":5,"output_tokens":70}}}}"#
    )));
    let provider = provider(&config_for(&fake), ProviderKind::Anthropic);

    let answer = provider.complete(&claude_code_request()).await.unwrap();
    assert_eq!(answer.wire_content.as_deref(), Some(content));
    // What every other consumer reads is filled as for any answer; thinking is not text.
    assert_eq!(answer.content, "Four \u{2014} surely.");
    assert_eq!(
        answer.tool_calls,
        [ToolCall {
            id: "toolu_9".into(),
            name: "lookup".into(),
            arguments: r#"{"q":"4"}"#.into(),
        }]
    );
    // Thinking tokens are in Anthropic's output count; cache reads and writes join the input.
    assert_eq!(
        answer.usage,
        TokenUsage::reported(125, 70).with_cache(100, 5)
    );
}

#[tokio::test]
async fn a_translated_request_has_no_wire_content() {
    let fake = start(Wire::Anthropic).await;
    fake.push(Reply::text("Four.").thinking("Two and two.", "c2ln"));
    let provider = provider(&config_for(&fake), ProviderKind::Anthropic);
    let answer = provider
        .complete(&request("claude-sonnet-4-5"))
        .await
        .unwrap();
    assert_eq!(answer.content, "Four.");
    assert_eq!(answer.wire_content, None);
    assert!(fake.requests()[0].header("anthropic-beta").is_none());
}

#[tokio::test]
async fn thinking_signature_and_redacted_blocks_stream_as_reasoning_in_order() {
    let fake = start(Wire::Anthropic).await;
    fake.push(
        Reply::text("It is 42.")
            .thinking("Let me think about it.", "sig-1")
            .redacted_thinking("EmwKAhgB")
            .tool_calls(&[("toolu_1", "lookup", r#"{"q":"x"}"#)])
            .usage(300, 120)
            .cache_usage(200, 50)
            .chunks(2),
    );
    let provider = provider(&config_for(&fake), ProviderKind::Anthropic);
    let got = collect(provider.as_ref(), &claude_code_request()).await;
    assert!(got.error.is_none(), "{:?}", got.error);

    let reasoning: Vec<&StreamEvent> = got
        .events
        .iter()
        .filter(|e| {
            matches!(
                e,
                StreamEvent::ReasoningDelta(_)
                    | StreamEvent::ReasoningSignature(_)
                    | StreamEvent::RedactedReasoning(_)
            )
        })
        .collect();
    let thought: String = reasoning
        .iter()
        .filter_map(|e| match e {
            StreamEvent::ReasoningDelta(text) => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(thought, "Let me think about it.");
    assert_eq!(
        reasoning[reasoning.len() - 2..],
        [
            &StreamEvent::ReasoningSignature("sig-1".into()),
            &StreamEvent::RedactedReasoning("EmwKAhgB".into())
        ]
    );
    // Reasoning first, then the text, then the tool call, then the end.
    let position = |pred: fn(&StreamEvent) -> bool| got.events.iter().position(pred).unwrap();
    let last_reasoning = got
        .events
        .iter()
        .rposition(|e| matches!(e, StreamEvent::RedactedReasoning(_)))
        .unwrap();
    assert!(last_reasoning < position(|e| matches!(e, StreamEvent::TextDelta(_))));
    assert!(
        position(|e| matches!(e, StreamEvent::TextDelta(_)))
            < position(|e| matches!(e, StreamEvent::ToolCallDelta(_)))
    );
    assert_eq!(got.text, "It is 42.");
    let StreamEvent::Finished { usage, .. } = finished(&got.events) else {
        unreachable!()
    };
    assert_eq!(*usage, TokenUsage::reported(300, 120).with_cache(200, 50));
}

#[tokio::test]
async fn reasoning_streamed_before_a_break_counts_towards_the_estimated_output() {
    let fake = start(Wire::Anthropic).await;
    // 40 characters of thinking, 8 of text, then the connection drops: no output count came.
    fake.push(
        Reply::text("abcdefgh")
            .thinking("t".repeat(40), "sig")
            .chunks(1)
            .drop_after(1),
    );
    let provider = provider(&config_for(&fake), ProviderKind::Anthropic);
    let got = collect(provider.as_ref(), &claude_code_request()).await;
    assert!(got.error.is_some());
    let usage = got.usage_so_far.unwrap();
    assert!(usage.is_estimated);
    assert_eq!(
        usage.output_tokens, 12,
        "(40 + 8) characters at four to a token"
    );
}

#[tokio::test]
async fn a_huge_thinking_block_streams_whole_and_never_panics() {
    let fake = start(Wire::Anthropic).await;
    let thinking = "why ".repeat(100_000);
    fake.push(Reply::text("Done.").thinking(thinking.clone(), "sig"));
    let provider = provider(&config_for(&fake), ProviderKind::Anthropic);
    let got = collect(provider.as_ref(), &claude_code_request()).await;
    assert!(got.error.is_none(), "{:?}", got.error);
    let thought: usize = got
        .events
        .iter()
        .map(|e| match e {
            StreamEvent::ReasoningDelta(text) => text.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(thought, thinking.len());
    assert_eq!(got.text, "Done.");

    // One thinking event larger than providers.max_event_bytes ends the stream with an error.
    fake.push(Reply::text("Done.").thinking("x".repeat(3 * 1024 * 1024), "sig"));
    let got = collect(provider.as_ref(), &claude_code_request()).await;
    assert!(
        matches!(got.error, Some(ProviderError::Upstream { .. })),
        "{:?}",
        got.error
    );
}

#[tokio::test]
async fn hostile_content_is_a_bad_response_never_a_panic() {
    let fake = start(Wire::Anthropic).await;
    let provider = provider(&config_for(&fake), ProviderKind::Anthropic);
    let usage = r#""usage":{"input_tokens":7,"output_tokens":3}"#;
    for content in [
        r#""not an array""#,
        r#"{"type":"text","text":"an object"}"#,
        r#"[{"type": 5}]"#,
        r#"[{"type":"thinking","thinking":{"deep":true}}]"#,
        r#"[{"type":"redacted_thinking","data":42}]"#,
        "42",
    ] {
        fake.push(Reply::raw(format!(r#"{{"content":{content},{usage}}}"#)));
        let error = provider
            .complete(&claude_code_request())
            .await
            .expect_err(content);
        let ProviderError::BadResponse { usage, .. } = error else {
            panic!("{content}: {error:?}");
        };
        // The answer came: its usage is still billed.
        assert_eq!(usage, Some(TokenUsage::reported(7, 3)), "{content}");
    }
    // A null content is no content.
    fake.push(Reply::raw(format!(r#"{{"content":null,{usage}}}"#)));
    assert!(matches!(
        provider.complete(&claude_code_request()).await,
        Err(ProviderError::BadResponse { .. })
    ));
}

#[tokio::test]
async fn hostile_reasoning_events_are_a_bad_response_never_a_panic() {
    let fake = start(Wire::Anthropic).await;
    let provider = provider(&config_for(&fake), ProviderKind::Anthropic);
    for delta in [
        r#"{"type":"thinking_delta","thinking":7}"#,
        r#"{"type":"signature_delta","signature":["a"]}"#,
    ] {
        fake.push(Reply::raw(format!(
            "event: message_start\ndata: {{\"type\":\"message_start\",\"message\":{{\"usage\":{{\"input_tokens\":5,\"output_tokens\":1}}}}}}\n\n\
             event: content_block_start\ndata: {{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{{\"type\":\"thinking\",\"thinking\":\"\"}}}}\n\n\
             event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{delta}}}\n\n"
        )));
        let got = collect(provider.as_ref(), &claude_code_request()).await;
        assert!(
            matches!(got.error, Some(ProviderError::BadResponse { .. })),
            "{delta}: {:?}",
            got.error
        );
        assert_eq!(got.usage_so_far.unwrap().input_tokens, 5);
    }
}

#[tokio::test]
async fn an_upstream_refusal_of_a_native_request_reaches_the_caller_in_its_words() {
    let fake = start(Wire::Anthropic).await;
    fake.push(Reply::status(
        400,
        r#"{"type":"error","error":{"type":"invalid_request_error","message":"messages.1.content.0: Invalid `signature` in `thinking` block"}}"#,
    ));
    let provider = provider(&config_for(&fake), ProviderKind::Anthropic);
    let request = claude_code_request();
    assert_eq!(provider.check_request(&request), Ok(()));
    let error = provider.complete(&request).await.unwrap_err();
    let ProviderError::InvalidRequest { status, message } = error else {
        panic!("{error:?}");
    };
    assert_eq!(status, 400);
    assert!(message.contains("Invalid `signature`"), "{message}");
    fake.expect_calls(1);
}

fn specialist(provider: &str) -> Specialist {
    let draft = SpecialistDraft {
        temperature: 0.3,
        max_tokens: 256,
        ..SpecialistDraft::new("Counter", provider, "claude-sonnet-4-5", "You are terse.")
    }
    .validate()
    .unwrap();
    Specialist::new(
        SpecialistId::parse("counter").unwrap(),
        draft,
        chrono::Utc::now(),
    )
}

#[tokio::test]
async fn count_tokens_sends_the_native_body_without_max_tokens_or_stream() {
    let fake = start(Wire::Anthropic).await;
    fake.push(Reply::token_count(1_234));
    let registry = ProviderRegistry::from_config(&config_for(&fake)).unwrap();
    let counted = registry
        .count_tokens(&specialist("anthropic"), &claude_code_request())
        .await
        .unwrap();
    assert_eq!(counted, 1_234);

    let sent = &fake.requests()[0];
    assert_eq!(sent.path, "/v1/messages/count_tokens");
    assert_eq!(sent.header("x-api-key"), Some(ANTHROPIC_KEY));
    assert_eq!(sent.header("anthropic-beta"), Some(BETA));
    let raw = sent.raw_text();
    assert!(raw.contains(&format!(r#""messages":{MESSAGES}"#)), "{raw}");
    for absent in ["max_tokens", "stream", "temperature"] {
        assert!(sent.body.get(absent).is_none(), "{absent}: {raw}");
    }
}

#[tokio::test]
async fn count_tokens_of_a_translated_request_sends_what_a_call_would_less_sampling() {
    let fake = start(Wire::Anthropic).await;
    let provider = provider(&config_for(&fake), ProviderKind::Anthropic);
    assert!(provider.counts_tokens());
    let mut request = request("claude-sonnet-4-5");
    request.options.stop = vec!["END".into()];
    // Nothing scripted: the fake counts a quarter token per byte of system, messages, tools.
    let counted = provider.count_tokens(&request).await.unwrap();

    let sent = &fake.requests()[0];
    assert_eq!(
        sent.body,
        json!({
            "model": "claude-sonnet-4-5",
            "system": "You are terse.",
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "What is 2+2?"}
            ]
        })
    );
    let bytes = sent.body["system"].to_string().len() + sent.body["messages"].to_string().len();
    assert_eq!(counted as usize, bytes.div_ceil(4));
}

#[tokio::test]
async fn count_tokens_failures_are_classified_like_a_calls() {
    let fake = start(Wire::Anthropic).await;
    let mut config = config_for(&fake);
    config.anthropic.max_retries = 0;
    let provider = provider(&config, ProviderKind::Anthropic);
    let request = claude_code_request();

    fake.push(Reply::status(401, "invalid x-api-key"));
    assert!(matches!(
        provider.count_tokens(&request).await,
        Err(ProviderError::AuthFailed { status: 401, .. })
    ));
    fake.push(Reply::status(500, "boom"));
    assert!(matches!(
        provider.count_tokens(&request).await,
        Err(ProviderError::Upstream {
            status: Some(500),
            ..
        })
    ));
    fake.push(Reply::status(400, "messages: field required"));
    assert!(matches!(
        provider.count_tokens(&request).await,
        Err(ProviderError::InvalidRequest { status: 400, .. })
    ));
    for bad in [
        Reply::malformed(),
        Reply::raw(r#"{"input_tokens": -3}"#),
        Reply::raw(r#"{"input_tokens": "many"}"#),
        Reply::raw(r#"{"tokens": 3}"#),
        Reply::raw("[]"),
    ] {
        fake.push(bad);
        let counted = provider.count_tokens(&request).await;
        assert!(
            matches!(counted, Err(ProviderError::BadResponse { usage: None, .. })),
            "an unusable count is a bad response: {counted:?}"
        );
    }
}

#[tokio::test]
async fn a_provider_without_a_token_count_refuses_without_sending() {
    let fake = start(Wire::OpenAi).await;
    fake.expect_calls(0);
    let provider = provider(&config_for(&fake), ProviderKind::OpenAi);
    assert!(!provider.counts_tokens());
    let error = provider.count_tokens(&request("gpt-4o")).await.unwrap_err();
    assert!(
        matches!(&error, ProviderError::InvalidRequest { status: 400, message } if message.contains("cannot count tokens")),
        "{error:?}"
    );
    // Through the registry, a provider without credentials is refused first.
    let mut config = config_for(&fake);
    config.anthropic.api_key = None;
    let registry = ProviderRegistry::from_config(&config).unwrap();
    assert!(matches!(
        registry
            .count_tokens(&specialist("anthropic"), &claude_code_request())
            .await,
        Err(ProviderError::NotConfigured { .. })
    ));
}

#[tokio::test]
async fn a_retried_native_request_sends_the_same_bytes_and_beta_header_again() {
    let fake = start(Wire::Anthropic).await;
    fake.push(Reply::status(529, "Overloaded"));
    fake.push(Reply::text("Back."));
    fake.expect_calls(2);
    let provider = provider(&config_for(&fake), ProviderKind::Anthropic);
    let answer = provider.complete(&claude_code_request()).await.unwrap();
    assert_eq!(answer.content, "Back.");
    let [first, second] = &fake.requests()[..] else {
        panic!("two requests");
    };
    assert_eq!(first.raw_body, second.raw_body);
    assert!(first.raw_text().contains(MESSAGES));
    assert_eq!(second.header("anthropic-beta"), Some(BETA));
}

#[tokio::test]
async fn without_a_beta_header_none_is_sent_and_a_thinking_caller_keeps_its_temperature() {
    let fake = start(Wire::Anthropic).await;
    let provider = provider(&config_for(&fake), ProviderKind::Anthropic);
    let mut request = native_request(
        None,
        &[
            ("temperature", "1"),
            ("messages", MESSAGES),
            ("thinking", r#"{"type":"adaptive"}"#),
        ],
    );
    request.system_prompt = String::new();
    request.anthropic = request.anthropic.map(|native| {
        Arc::new(AnthropicNative {
            beta: None,
            ..(*native).clone()
        })
    });
    provider.complete(&request).await.unwrap();
    let sent = &fake.requests()[0];
    assert!(sent.header("anthropic-beta").is_none());
    assert_eq!(
        sent.raw_text(),
        format!(
            r#"{{"model":"claude-sonnet-4-5","max_tokens":256,"temperature":1,"messages":{MESSAGES},"thinking":{{"type":"adaptive"}}}}"#
        )
    );
}

#[tokio::test]
async fn a_whole_answer_with_a_thinking_block_past_the_size_bound_is_refused_not_held() {
    let fake = start(Wire::Anthropic).await;
    let mut config = config_for(&fake);
    config.max_response_bytes = std::num::NonZeroUsize::new(64 * 1024).unwrap();
    let provider = provider(&config, ProviderKind::Anthropic);

    // Under the bound, a large thinking block comes back whole in wire_content, not as text.
    let thinking = "z".repeat(32 * 1024);
    fake.push(Reply::text("Short.").thinking(thinking.clone(), "sig"));
    let answer = provider.complete(&claude_code_request()).await.unwrap();
    assert_eq!(answer.content, "Short.");
    assert!(answer.wire_content.unwrap().contains(&thinking));

    fake.push(Reply::text("Short.").thinking("z".repeat(200 * 1024), "sig"));
    let error = provider.complete(&claude_code_request()).await.unwrap_err();
    assert!(
        matches!(&error, ProviderError::Upstream { message, .. } if message.contains("too large")),
        "{error:?}"
    );
}
