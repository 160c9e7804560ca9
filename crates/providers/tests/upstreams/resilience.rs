use std::time::{Duration, Instant};

use core_domain::{ProviderKind, StreamEvent};
use fake_upstreams::{Reply, Wire};
use providers::{ProviderError, TimeoutPhase};

use crate::*;

#[tokio::test]
async fn server_errors_are_retried_until_success() {
    let fake = start(Wire::OpenAi).await;
    fake.expect_calls(3);
    fake.push(Reply::status(500, "boom"));
    fake.push(Reply::status(503, "busy"));
    let provider = provider(&config_for(&fake), ProviderKind::OpenAi);
    let answer = provider.complete(&request("gpt-4o")).await.unwrap();
    assert_eq!(answer.content, "Hello from the fake upstream.");
}

#[tokio::test]
async fn retries_stop_at_the_configured_limit_with_the_last_error() {
    let fake = start(Wire::OpenAi).await;
    fake.expect_calls(3); // One attempt and two retries.
    for _ in 0..5 {
        fake.push(Reply::status(502, "bad gateway upstream"));
    }
    let mut config = config_for(&fake);
    config.openai.max_retries = 2;
    let err = provider(&config, ProviderKind::OpenAi)
        .complete(&request("gpt-4o"))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ProviderError::Upstream {
            status: Some(502),
            message: "bad gateway upstream".into()
        }
    );
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let fake = start(Wire::OpenAi).await;
    fake.expect_calls(2);
    fake.push(Reply::status(400, "context_length_exceeded"));
    fake.push(Reply::status(401, "bad key"));
    let provider = provider(&config_for(&fake), ProviderKind::OpenAi);
    let err = provider.complete(&request("gpt-4o")).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::InvalidRequest { status: 400, .. }),
        "{err}"
    );
    let err = provider.complete(&request("gpt-4o")).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::AuthFailed { status: 401, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let fake = start(Wire::Anthropic).await;
    fake.push(Reply::status(429, "slow down").retry_after("1"));
    let (provider, waits) = provider_recording_waits(&config_for(&fake), ProviderKind::Anthropic);
    provider.complete(&request("claude-3-haiku")).await.unwrap();
    assert_eq!(
        waits.waits(),
        [Duration::from_secs(1)],
        "the retry waited exactly the upstream's Retry-After"
    );
    assert_eq!(fake.request_count(), 2);
}

#[tokio::test]
async fn a_retry_after_beyond_our_limit_fails_at_once_with_the_wait() {
    let fake = start(Wire::OpenAi).await;
    fake.expect_calls(1);
    fake.push(Reply::status(429, "quota exhausted").retry_after("3600"));
    let provider = provider(&config_for(&fake), ProviderKind::OpenAi);
    let err = provider.complete(&request("gpt-4o")).await.unwrap_err();
    assert_eq!(
        err,
        ProviderError::RateLimited {
            retry_after: Some(Duration::from_secs(3600)),
            message: "quota exhausted".into()
        }
    );
}

#[tokio::test]
async fn rate_limits_that_persist_end_as_rate_limited() {
    let fake = start(Wire::Google).await;
    fake.expect_calls(3);
    for _ in 0..3 {
        fake.push(Reply::status(429, "RESOURCE_EXHAUSTED").retry_after("0"));
    }
    let provider = provider(&config_for(&fake), ProviderKind::Google);
    let err = provider
        .complete(&request("gemini-2.0-flash"))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::RateLimited { .. }), "{err}");
}

#[tokio::test]
async fn stream_start_is_retried_but_nothing_after_the_first_byte() {
    let fake = start(Wire::OpenAi).await;
    fake.push(Reply::status(503, "warming up"));
    fake.push(
        Reply::text("one two three four five")
            .chunks(5)
            .drop_after(2),
    );
    let provider = provider(&config_for(&fake), ProviderKind::OpenAi);
    let got = collect(provider.as_ref(), &request("gpt-4o")).await;
    assert_eq!(got.events.len(), 2, "{:?}", got.events);
    let err = got
        .error
        .expect("the dropped connection ends the stream with an error");
    assert!(
        matches!(err, ProviderError::Upstream { status: None, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("broke off"), "{err}");
    assert_eq!(
        fake.request_count(),
        2,
        "the 503 was retried; the broken stream was not"
    );
}

#[tokio::test]
async fn a_connection_refused_is_retried_then_reported() {
    let fake = start(Wire::OpenAi).await;
    let mut config = config_for(&fake);
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    config.openai.base_url = format!("http://127.0.0.1:{port}/v1");
    let err = provider(&config, ProviderKind::OpenAi)
        .complete(&request("gpt-4o"))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains("cannot connect"), "{err}");
}

#[tokio::test]
async fn first_byte_timeout() {
    let fake = start(Wire::OpenAi).await;
    fake.push(Reply::text("late").first_byte_delay(Duration::from_secs(3)));
    let mut config = config_for(&fake);
    config.openai.first_byte_timeout_ms = 200;
    let err = provider(&config, ProviderKind::OpenAi)
        .complete(&request("gpt-4o"))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ProviderError::Timeout {
            phase: TimeoutPhase::FirstByte
        }
    );
    assert_eq!(fake.request_count(), 1, "a timeout is not retried");
}

#[tokio::test]
async fn a_stalled_stream_hits_the_idle_timeout() {
    let fake = start(Wire::Anthropic).await;
    fake.push(Reply::text("a b c d").chunks(4).stall_after(1));
    let mut config = config_for(&fake);
    config.anthropic.idle_timeout_ms = 300;
    let got = collect(
        provider(&config, ProviderKind::Anthropic).as_ref(),
        &request("claude-3-haiku"),
    )
    .await;
    assert!(
        matches!(got.events.as_slice(), [StreamEvent::TextDelta(_)]),
        "{:?}",
        got.events
    );
    assert_eq!(
        got.error,
        Some(ProviderError::Timeout {
            phase: TimeoutPhase::IdleGap
        })
    );
    assert!(
        fake.wait_for_streams_closed(1, Duration::from_secs(2))
            .await,
        "giving up on the stream closes the upstream connection"
    );
}

#[tokio::test]
async fn a_slow_stream_hits_the_total_timeout() {
    let fake = start(Wire::OpenAi).await;
    fake.push(
        Reply::text("a b c d e f g h i j")
            .chunks(10)
            .chunk_delay(Duration::from_millis(150)),
    );
    let mut config = config_for(&fake);
    config.openai.idle_timeout_ms = 1_000;
    config.openai.total_timeout_ms = 500;
    let got = collect(
        provider(&config, ProviderKind::OpenAi).as_ref(),
        &request("gpt-4o"),
    )
    .await;
    assert_eq!(
        got.error,
        Some(ProviderError::Timeout {
            phase: TimeoutPhase::Total
        })
    );
    assert!(
        !got.events.is_empty() && got.events.len() < 10,
        "{:?}",
        got.events
    );
}

#[tokio::test]
async fn connect_timeout() {
    // A listener whose accept queue is full: the kernel drops further SYNs, so connecting hangs.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let address = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        if let Ok(Ok(stream)) = tokio::time::timeout(
            Duration::from_millis(100),
            tokio::net::TcpStream::connect(address),
        )
        .await
        {
            fillers.push(stream);
        }
    }
    let fake = start(Wire::OpenAi).await;
    let mut config = config_for(&fake);
    config.openai.base_url = format!("http://{address}/v1");
    config.openai.max_retries = 0;
    config.connect_timeout_ms = 200;
    let started = Instant::now();
    let err = provider(&config, ProviderKind::OpenAi)
        .complete(&request("gpt-4o"))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ProviderError::Timeout {
            phase: TimeoutPhase::Connect
        }
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    drop(listener);
}

#[tokio::test]
async fn malformed_json_is_a_bad_response() {
    let fake = start(Wire::OpenAi).await;
    fake.push(Reply::malformed());
    fake.push(Reply::malformed());
    let provider = provider(&config_for(&fake), ProviderKind::OpenAi);
    let err = provider.complete(&request("gpt-4o")).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::BadResponse { usage: None, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("malformed response"), "{err}");

    let got = collect(provider.as_ref(), &request("gpt-4o")).await;
    let err = got.error.expect("a malformed event ends the stream");
    assert!(err.to_string().contains("malformed stream event"), "{err}");
}

/// Each wire format with its provider and a model it would serve.
const WIRES: [(Wire, ProviderKind, &str); 3] = [
    (Wire::OpenAi, ProviderKind::OpenAi, "gpt-4o"),
    (Wire::Anthropic, ProviderKind::Anthropic, "claude-3-haiku"),
    (Wire::Google, ProviderKind::Google, "gemini-2.0-flash"),
];

#[tokio::test]
async fn every_wire_format_s_failures_are_reported_the_same_way() {
    for (wire, kind, model) in WIRES {
        let fake = start(wire).await;
        let mut config = config_for(&fake);
        for upstream in [
            &mut config.openai,
            &mut config.anthropic,
            &mut config.google,
        ] {
            upstream.idle_timeout_ms = 300;
        }
        let provider = provider(&config, kind);

        // The format's own error event mid-stream: the text before it, then its message.
        fake.push(
            Reply::text("one two three four")
                .chunks(4)
                .error_event_after(2, "model overloaded"),
        );
        let got = collect(provider.as_ref(), &request(model)).await;
        assert_eq!(got.events.len(), 2, "{wire:?}: {:?}", got.events);
        let err = got.error.expect("an error event ends the stream");
        assert!(
            err.to_string().contains("model overloaded"),
            "{wire:?}: {err}"
        );
        // Announced with what was consumed: the prompt as the upstream counted it where it
        // said (Anthropic at the start, Gemini with every chunk), the text so far estimated.
        let so_far = got.usage_so_far.expect("usage so far");
        let req = request(model);
        let expected_input = match wire {
            Wire::OpenAi => core_domain::estimate_prompt_tokens(&req.system_prompt, &req.messages),
            Wire::Anthropic | Wire::Google => 10,
        };
        assert_eq!(
            so_far,
            core_domain::TokenUsage::estimated(
                expected_input,
                core_domain::estimate_text_tokens(&got.text)
            ),
            "{wire:?}"
        );

        // Malformed JSON, whole and streamed (neither is retried: the upstream did answer).
        fake.push(Reply::malformed());
        fake.push(Reply::malformed());
        let err = provider.complete(&request(model)).await.unwrap_err();
        assert!(
            matches!(err, ProviderError::BadResponse { .. }),
            "{wire:?}: {err}"
        );
        let got = collect(provider.as_ref(), &request(model)).await;
        assert!(got.events.is_empty(), "{wire:?}: {:?}", got.events);
        assert!(
            got.error
                .expect("a malformed event ends the stream")
                .to_string()
                .contains("malformed"),
            "{wire:?}"
        );

        assert_eq!(fake.request_count(), 3, "{wire:?}");

        // A dropped connection and a stall, after some text.
        fake.push(Reply::text("a b c d").chunks(4).drop_after(2));
        let got = collect(provider.as_ref(), &request(model)).await;
        assert_eq!(got.events.len(), 2, "{wire:?}: {:?}", got.events);
        assert!(
            matches!(
                got.error,
                Some(ProviderError::Upstream { status: None, .. })
            ),
            "{wire:?}: {:?}",
            got.error
        );
        fake.push(Reply::text("a b c d").chunks(4).stall_after(1));
        let got = collect(provider.as_ref(), &request(model)).await;
        assert_eq!(got.events.len(), 1, "{wire:?}: {:?}", got.events);
        assert_eq!(
            got.error,
            Some(ProviderError::Timeout {
                phase: TimeoutPhase::IdleGap
            }),
            "{wire:?}"
        );
    }
}

#[tokio::test]
async fn connection_refused_is_retried_with_backoff() {
    let fake = start(Wire::OpenAi).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let waits_when_refused = |retries: u32| {
        let mut config = config_for(&fake);
        config.openai.base_url = format!("http://127.0.0.1:{port}/v1");
        config.openai.max_retries = retries;
        config.openai.retry_base_delay_ms = 200;
        let (provider, waits) = provider_recording_waits(&config, ProviderKind::OpenAi);
        async move {
            let err = provider.complete(&request("gpt-4o")).await.unwrap_err();
            assert!(
                matches!(err, ProviderError::Unreachable { .. }),
                "a refused connection: {err}"
            );
            waits.waits()
        }
    };
    assert_eq!(
        waits_when_refused(0).await,
        [] as [Duration; 0],
        "nothing to wait for without retries"
    );
    // Exponential backoff with jitter of up to half: 100-200 ms, then 200-400 ms.
    let waits = waits_when_refused(2).await;
    assert_eq!(waits.len(), 2, "{waits:?}");
    let ms = |from, to| Duration::from_millis(from)..=Duration::from_millis(to);
    assert!(ms(100, 200).contains(&waits[0]), "{waits:?}");
    assert!(ms(200, 400).contains(&waits[1]), "{waits:?}");
}
