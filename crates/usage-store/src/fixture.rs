//! One complete [`UsageRecord`] for tests (behind the `fixtures` feature), so a test names only
//! the fields it is about, `UsageRecord { cost: Usd::ZERO, ..usage_record("r1") }`, instead of
//! keeping its own copy of all of them.

use std::time::Duration;

use chrono::{TimeZone, Utc};
use core_domain::{EmailHash, ProviderKind, RequestId, SpecialistId, TokenUsage, Usd};

use crate::UsageRecord;

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
    }
}
