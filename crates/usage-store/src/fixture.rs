//! One complete [`UsageRecord`] for tests (behind the `fixtures` feature), so a test names only
//! the fields it is about, `UsageRecord { cost: Usd::ZERO, ..usage_record("r1") }`, instead of
//! keeping its own copy of all of them.

use std::time::Duration;

use chrono::{TimeZone, Utc};
use core_domain::{EmailHash, ErrorCode, ProviderKind, RequestId, SpecialistId, TokenUsage, Usd};

use crate::{AttemptRecord, UsageRecord};

/// A successful streamed call to `gpt-4o` by the `financial_analyst` specialist, with every
/// optional field set so a round trip shows each column; `request_id` must be a valid id.
pub fn usage_record(request_id: &str) -> UsageRecord {
    UsageRecord {
        request_id: RequestId::parse(request_id)
            .unwrap_or_else(|e| panic!("a fixture is given a valid request id: {e}")),
        client_request_id: None,
        timestamp: Utc
            .with_ymd_and_hms(2026, 11, 27, 12, 30, 45)
            .single()
            .unwrap_or_else(|| panic!("a fixed, valid UTC time")),
        user_email_hash: Some(EmailHash::of_email("ada@example.com")),
        specialist_id: SpecialistId::parse("financial_analyst")
            .unwrap_or_else(|e| panic!("a valid id: {e}")),
        specialist_name: "Financial Analyst".into(),
        provider: ProviderKind::OpenAi,
        model: "gpt-4o".into(),
        usage: TokenUsage::reported(1200, 345),
        cost: Usd::from_nanos(6_450_000),
        pricing_known: true,
        latency: Duration::from_micros(1_234_500),
        time_to_first_token: Some(Duration::from_millis(250)),
        error_code: None,
        streamed: true,
        end_user: None,
        api_key: None,
        door: core_domain::Door::ChatCompletions,
        attempts: 1,
        attempt_details: Vec::new(),
    }
}

/// A streamed call that took three attempts: `gpt-4o` refused with a 429 before answering, a
/// local OpenAI-compatible server streamed 40 tokens and died, and Anthropic continued the
/// stream and served it. The row names the last target and holds the sums; `request_id` must
/// be a valid id.
pub fn fallback_record(request_id: &str) -> UsageRecord {
    let attempts = vec![
        AttemptRecord {
            provider: ProviderKind::OpenAi,
            model: "gpt-4o".into(),
            base_url: None,
            error_code: Some(ErrorCode::UpstreamRateLimited),
            usage: TokenUsage::reported(0, 0),
            cost: Usd::ZERO,
            pricing_known: true,
            latency: Duration::from_millis(120),
            continuation: false,
        },
        AttemptRecord {
            provider: ProviderKind::OpenAi,
            model: "llama-3.1-70b".into(),
            base_url: Some("http://127.0.0.1:8081/v1".into()),
            error_code: Some(ErrorCode::UpstreamError),
            usage: TokenUsage::estimated(1200, 40),
            cost: Usd::ZERO,
            pricing_known: false,
            latency: Duration::from_millis(900),
            continuation: false,
        },
        AttemptRecord {
            provider: ProviderKind::Anthropic,
            model: "claude-sonnet-4".into(),
            base_url: None,
            error_code: None,
            usage: TokenUsage::reported(1240, 300),
            cost: Usd::from_nanos(8_220_000),
            pricing_known: true,
            latency: Duration::from_millis(2_500),
            continuation: true,
        },
    ];
    let usage = attempts
        .iter()
        .fold(TokenUsage::reported(0, 0), |sum, a| TokenUsage {
            input_tokens: sum.input_tokens + a.usage.input_tokens,
            output_tokens: sum.output_tokens + a.usage.output_tokens,
            is_estimated: sum.is_estimated || a.usage.is_estimated,
            ..sum
        });
    UsageRecord {
        provider: ProviderKind::Anthropic,
        model: "claude-sonnet-4".into(),
        usage,
        cost: Usd::from_nanos(8_220_000),
        pricing_known: false,
        latency: Duration::from_millis(3_520),
        attempts: 3,
        attempt_details: attempts,
        ..usage_record(request_id)
    }
}
