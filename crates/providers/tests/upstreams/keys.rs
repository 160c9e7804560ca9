//! Several keys per endpoint: moving on from a refused or rate-limited key, resting keys,
//! the circuit breaker, and the request-level knobs a router sets.

use std::time::{Duration, Instant};

use core_domain::ProviderKind;
use fake_upstreams::{FakeUpstream, Reply, Wire};
use futures_util::future::join_all;
use providers::{BreakerState, CompatibleServer, ProviderError, ProviderRegistry, TimeoutPhase};
use secrecy::SecretString;

use crate::*;

const FIRST: &str = "sk-first-key-0123456789";
const SECOND: &str = "sk-second-key-0123456789";

fn keys(list: &[&str]) -> Vec<SecretString> {
    list.iter().map(|k| SecretString::from(*k)).collect()
}

/// The key each request the fake received carried, in order.
fn keys_seen(fake: &FakeUpstream, header: &str) -> Vec<String> {
    fake.requests()
        .iter()
        .map(|r| {
            r.header(header)
                .unwrap_or_default()
                .trim_start_matches("Bearer ")
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn a_refused_key_gives_way_to_the_next_at_once_and_rests() {
    let fake = start(Wire::Anthropic).await;
    fake.expect_calls(3);
    fake.push(Reply::status(401, "invalid x-api-key"));
    let mut config = config_for(&fake);
    config.anthropic.api_key = Some(SecretString::from(FIRST));
    config.anthropic.api_keys = keys(&[SECOND, FIRST]);
    let (registry, waits) = registry_recording_waits(&config);
    let provider = registry.get(ProviderKind::Anthropic).unwrap();
    let answer = provider
        .complete(&request("claude-sonnet-4-5"))
        .await
        .unwrap();
    assert_eq!(answer.content, "Hello from the fake upstream.");
    assert!(waits.waits().is_empty(), "no backoff before the next key");
    // The refused key rests: the next call goes straight to the second.
    provider
        .complete(&request("claude-sonnet-4-5"))
        .await
        .unwrap();
    assert_eq!(keys_seen(&fake, "x-api-key"), [FIRST, SECOND, SECOND]);

    let health = registry.key_health();
    let anthropic: Vec<_> = health
        .iter()
        .filter(|h| h.provider == ProviderKind::Anthropic)
        .collect();
    assert_eq!(
        anthropic.len(),
        2,
        "the duplicate is dropped: {anthropic:?}"
    );
    assert_eq!(anthropic[0].key, "providers.anthropic.keys[0]");
    assert!(anthropic[0].cooling_for.is_some());
    assert_eq!(anthropic[0].consecutive_failures, 1);
    assert_eq!(anthropic[0].cooldowns_total, 1);
    assert_eq!(anthropic[1].cooling_for, None);
    assert!(!format!("{health:?}").contains("sk-"), "{health:?}");
}

#[tokio::test]
async fn a_rate_limited_key_rests_for_its_retry_after_then_comes_back() {
    let fake = start(Wire::OpenAi).await;
    fake.push(Reply::status(429, "slow down").retry_after("1"));
    let mut config = config_for(&fake);
    config.openai.api_key = Some(SecretString::from(FIRST));
    config.openai.api_keys = keys(&[SECOND]);
    let provider = provider(&config, ProviderKind::OpenAi);
    let started = Instant::now();
    provider.complete(&request("gpt-4o")).await.unwrap();
    for _ in 0..2 {
        provider.complete(&request("gpt-4o")).await.unwrap();
    }
    assert_eq!(
        keys_seen(&fake, "authorization"),
        [FIRST, SECOND, SECOND, SECOND]
    );
    assert!(started.elapsed() < Duration::from_secs(1), "no waiting");
    // The rest began when the 429 arrived, before this point.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for _ in 0..2 {
        provider.complete(&request("gpt-4o")).await.unwrap();
    }
    let seen = keys_seen(&fake, "authorization");
    assert!(seen[4..].contains(&FIRST.to_owned()), "{seen:?}");
}

#[tokio::test]
async fn every_key_resting_is_unavailable_without_a_request() {
    let fake = start(Wire::OpenAi).await;
    fake.expect_calls(2);
    let mut config = config_for(&fake);
    config.allowed_http_base_urls = vec![fake.base_url().to_owned()];
    config.openai_compatible = vec![CompatibleServer {
        base_url: fake.base_url().to_owned(),
        api_key: None,
        api_keys: keys(&[FIRST, SECOND]),
    }];
    for _ in 0..2 {
        fake.push(Reply::status(429, "quota").retry_after("30"));
    }
    let provider = provider(&config, ProviderKind::OpenAi);
    let mut request = request("llama3.1:8b");
    request.base_url = Some(fake.base_url().to_owned());
    let err = provider.complete(&request).await.unwrap_err();
    assert!(matches!(err, ProviderError::RateLimited { .. }), "{err}");
    assert_eq!(keys_seen(&fake, "authorization"), [FIRST, SECOND]);

    let base_url = request.base_url.as_deref();
    let checked = provider.check_available(base_url).unwrap_err();
    let err = provider.complete(&request).await.unwrap_err();
    for err in [checked, err] {
        let ProviderError::Unavailable {
            provider: ProviderKind::OpenAi,
            retry_after,
            reason,
        } = &err
        else {
            panic!("{err:?}");
        };
        assert!(
            *retry_after > Duration::from_secs(28) && *retry_after <= Duration::from_secs(30),
            "{retry_after:?}"
        );
        assert!(
            reason.contains("providers.openai_compatible[0]"),
            "{reason}"
        );
        assert!(!reason.contains("sk-"), "{reason}");
        assert!(!err.is_retryable());
        assert_eq!(err.consumed(100), core_domain::TokenUsage::default());
        assert_eq!(err.code().as_str(), "upstream_unavailable");
    }
    assert_eq!(
        provider.check_available(None),
        Ok(()),
        "other endpoints are fine"
    );
    assert_eq!(fake.request_count(), 2, "nothing was sent");
}

#[tokio::test]
async fn the_breaker_opens_after_n_failures_and_half_open_lets_one_probe_through() {
    let fake = start(Wire::Google).await;
    let mut config = config_for(&fake);
    config.google.max_retries = 0;
    config.google.breaker_failures = 2;
    config.google.breaker_open_ms = 300;
    fake.push(Reply::status(500, "boom"));
    fake.push(Reply::status(503, "busy"));
    let registry = ProviderRegistry::from_config(&config).unwrap();
    let provider = registry.get(ProviderKind::Google).unwrap();
    for _ in 0..2 {
        let err = provider
            .complete(&request("gemini-2.0-flash"))
            .await
            .unwrap_err();
        assert!(matches!(err, ProviderError::Upstream { .. }), "{err}");
    }
    let google = |registry: &ProviderRegistry| {
        registry
            .key_health()
            .into_iter()
            .find(|h| h.provider == ProviderKind::Google)
            .unwrap()
    };
    assert_eq!(google(&registry).breaker, BreakerState::Open);
    assert_eq!(google(&registry).breaker_opened_total, 1);
    let err = provider
        .complete(&request("gemini-2.0-flash"))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Unavailable { .. }), "{err}");
    assert_eq!(fake.request_count(), 2, "an open circuit sends nothing");

    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(google(&registry).breaker, BreakerState::HalfOpen);
    assert_eq!(provider.check_available(None), Ok(()));
    fake.push(Reply::text("probe answered").first_byte_delay(Duration::from_millis(200)));
    let request = request("gemini-2.0-flash");
    let calls = (0..5).map(|_| provider.complete(&request));
    let outcomes = join_all(calls).await;
    assert_eq!(
        fake.request_count(),
        3,
        "exactly one probe reached the upstream"
    );
    let answered = outcomes.iter().filter(|o| o.is_ok()).count();
    let refused = outcomes
        .iter()
        .filter(|o| matches!(o, Err(ProviderError::Unavailable { .. })))
        .count();
    assert_eq!((answered, refused), (1, 4), "{outcomes:?}");

    assert_eq!(google(&registry).breaker, BreakerState::Closed);
    assert_eq!(google(&registry).consecutive_failures, 0);
    provider.complete(&request).await.unwrap();
    assert_eq!(fake.request_count(), 4);
}

#[tokio::test]
async fn a_failed_probe_opens_the_circuit_again() {
    let fake = start(Wire::OpenAi).await;
    let mut config = config_for(&fake);
    config.openai.max_retries = 0;
    config.openai.breaker_failures = 1;
    config.openai.breaker_open_ms = 200;
    fake.set_default(Reply::status(502, "down"));
    let provider = provider(&config, ProviderKind::OpenAi);
    provider.complete(&request("gpt-4o")).await.unwrap_err();
    tokio::time::sleep(Duration::from_millis(250)).await;
    let err = provider.complete(&request("gpt-4o")).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::Upstream { .. }),
        "the probe: {err}"
    );
    let err = provider.complete(&request("gpt-4o")).await.unwrap_err();
    assert!(matches!(err, ProviderError::Unavailable { .. }), "{err}");
    assert_eq!(fake.request_count(), 2);
}

#[tokio::test]
async fn a_single_attempt_sends_exactly_one_request() {
    let fake = start(Wire::OpenAi).await;
    fake.expect_calls(2);
    fake.push(Reply::status(500, "boom"));
    fake.push(Reply::status(401, "bad key"));
    let mut config = config_for(&fake);
    config.openai.max_retries = 3;
    config.openai.api_keys = keys(&[FIRST]);
    let provider = provider(&config, ProviderKind::OpenAi);
    let mut request = request("gpt-4o");
    request.single_attempt = true;
    let err = provider.complete(&request).await.unwrap_err();
    assert!(
        matches!(
            err,
            ProviderError::Upstream {
                status: Some(500),
                ..
            }
        ),
        "{err}"
    );
    // Not even to the other key.
    let err = provider.stream(&request).await.err().unwrap();
    assert!(
        matches!(err, ProviderError::AuthFailed { status: 401, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn the_request_deadline_bounds_the_call() {
    let fake = start(Wire::Anthropic).await;
    fake.push(Reply::text("late").first_byte_delay(Duration::from_secs(3)));
    let registry = ProviderRegistry::from_config(&config_for(&fake)).unwrap();
    let provider = registry.get(ProviderKind::Anthropic).unwrap();
    let mut request = request("claude-sonnet-4-5");
    request.deadline = Some(Instant::now() + Duration::from_millis(300));
    let started = Instant::now();
    let err = provider.complete(&request).await.unwrap_err();
    assert_eq!(
        err,
        ProviderError::Timeout {
            phase: TimeoutPhase::Total
        }
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // The deadline was the caller's: it counts against no key.
    let anthropic = registry
        .key_health()
        .into_iter()
        .find(|h| h.provider == ProviderKind::Anthropic)
        .unwrap();
    assert_eq!(anthropic.consecutive_failures, 0);
}

#[tokio::test]
async fn one_key_keeps_answering_429s_as_before() {
    let fake = start(Wire::OpenAi).await;
    fake.expect_calls(2);
    let mut config = config_for(&fake);
    config.openai.max_retries = 0;
    for _ in 0..2 {
        fake.push(Reply::status(429, "quota").retry_after("120"));
    }
    let provider = provider(&config, ProviderKind::OpenAi);
    for _ in 0..2 {
        let err = provider.complete(&request("gpt-4o")).await.unwrap_err();
        assert!(
            matches!(
                err,
                ProviderError::RateLimited {
                    retry_after: Some(wait),
                    ..
                } if wait == Duration::from_secs(120)
            ),
            "{err}"
        );
    }
}

/// A registry whose calls wait between retries on a [`RecordedWaits`] of its own.
fn registry_recording_waits(
    config: &ProvidersConfig,
) -> (ProviderRegistry, &'static RecordedWaits) {
    let waits: &'static RecordedWaits = Box::leak(Box::default());
    (
        ProviderRegistry::from_config_with_sleeper(config, waits).unwrap(),
        waits,
    )
}
