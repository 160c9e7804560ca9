use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use core_domain::{EmailHash, ErrorCode, ProviderKind, RequestId, SpecialistId, TokenUsage, Usd};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use crate::schema::usage_logs;

/// What one chat call consumed and how it ended: the input to the usage log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// The call's request id, the gateway's own: the row's unique key, so writing a record
    /// twice stores it once.
    pub request_id: RequestId,
    /// The id the caller sent for its own tracing, if any. Not unique: a caller may reuse one.
    #[serde(default)]
    pub client_request_id: Option<RequestId>,
    /// When the call started (UTC).
    pub timestamp: DateTime<Utc>,
    /// The caller; `None` for the anonymous caller.
    pub user_email_hash: Option<EmailHash>,
    /// The specialist called, as it was at call time.
    pub specialist_id: SpecialistId,
    /// Its name at call time.
    pub specialist_name: String,
    /// Its provider.
    pub provider: ProviderKind,
    /// Its model (the specialist's, not a snapshot name the upstream reported).
    pub model: String,
    /// Tokens consumed (flagged when estimated).
    pub usage: TokenUsage,
    /// The estimated cost.
    pub cost: Usd,
    /// False when the model has no known price (the cost is then 0).
    pub pricing_known: bool,
    /// Time from the request to the last byte of the answer (or the failure).
    pub latency: Duration,
    /// Time to the first streamed token (streams only).
    pub time_to_first_token: Option<Duration>,
    /// `None` on success, else why the call failed.
    pub error_code: Option<ErrorCode>,
    /// True for `/chat/stream` and streamed OpenAI-compatible calls.
    pub streamed: bool,
    /// The caller's own id for its end user (the OpenAI `user` field), if it sent one; stored
    /// cut to [`END_USER_MAX_CHARS`] characters.
    #[serde(default)]
    pub end_user: Option<String>,
}

/// The longest `end_user` stored, in characters (the column is `VARCHAR(256)`); longer ids are
/// cut rather than refused, because a usage row must never be lost to its label.
pub const END_USER_MAX_CHARS: usize = 256;

/// `text` cut to at most `max_chars` characters, on a character boundary.
fn cut_to_chars(text: &str, max_chars: usize) -> &str {
    text.char_indices()
        .nth(max_chars)
        .map_or(text, |(end, _)| &text[..end])
}

impl UsageRecord {
    /// True when the call succeeded.
    pub fn is_success(&self) -> bool {
        self.error_code.is_none()
    }
}

/// The insertable form of a record. `None` is written as NULL rather than `DEFAULT` (no nullable
/// column has a default), which PostgreSQL's binary COPY requires and which lets SQLite bind a
/// whole batch in one statement.
#[derive(Insertable)]
#[diesel(table_name = usage_logs, treat_none_as_default_value = false)]
pub(crate) struct NewUsageRow<'a> {
    timestamp: NaiveDateTime,
    request_id: &'a str,
    user_email_hash: Option<&'a str>,
    specialist_id: &'a str,
    specialist_name: &'a str,
    provider: &'static str,
    model: &'a str,
    input_tokens: i64,
    output_tokens: i64,
    tokens_estimated: bool,
    estimated_cost_usd: f64,
    pricing_known: bool,
    latency_ms: f64,
    ttft_ms: Option<f64>,
    success: bool,
    error_code: Option<&'static str>,
    streamed: bool,
    client_request_id: Option<&'a str>,
    cached_input_tokens: i64,
    cache_write_tokens: i64,
    reasoning_tokens: i64,
    end_user: Option<&'a str>,
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl<'a> From<&'a UsageRecord> for NewUsageRow<'a> {
    fn from(r: &'a UsageRecord) -> Self {
        Self {
            timestamp: r.timestamp.naive_utc(),
            request_id: r.request_id.as_str(),
            user_email_hash: r.user_email_hash.as_ref().map(EmailHash::as_str),
            specialist_id: r.specialist_id.as_str(),
            specialist_name: &r.specialist_name,
            provider: r.provider.as_str(),
            model: &r.model,
            input_tokens: i64::from(r.usage.input_tokens),
            output_tokens: i64::from(r.usage.output_tokens),
            tokens_estimated: r.usage.is_estimated,
            estimated_cost_usd: r.cost.as_dollars(),
            pricing_known: r.pricing_known,
            latency_ms: millis(r.latency),
            ttft_ms: r.time_to_first_token.map(millis),
            success: r.is_success(),
            error_code: r.error_code.map(ErrorCode::as_str),
            streamed: r.streamed,
            client_request_id: r.client_request_id.as_ref().map(RequestId::as_str),
            cached_input_tokens: i64::from(r.usage.cached_input_tokens),
            cache_write_tokens: i64::from(r.usage.cache_write_tokens),
            reasoning_tokens: i64::from(r.usage.reasoning_tokens),
            end_user: r
                .end_user
                .as_deref()
                .map(|user| cut_to_chars(user, END_USER_MAX_CHARS)),
        }
    }
}

/// A row as stored, with the column values ops see.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = usage_logs)]
pub struct StoredUsage {
    /// The row's id.
    pub id: i64,
    /// When the call started (UTC).
    pub timestamp: NaiveDateTime,
    /// The call's request id.
    pub request_id: String,
    /// SHA-256 of the caller's email; `NULL` for the anonymous caller.
    pub user_email_hash: Option<String>,
    /// The specialist's id at call time.
    pub specialist_id: String,
    /// The specialist's name at call time.
    pub specialist_name: String,
    /// The provider.
    pub provider: String,
    /// The model.
    pub model: String,
    /// Input tokens.
    pub input_tokens: i64,
    /// Output tokens.
    pub output_tokens: i64,
    /// True when the token counts are estimates.
    pub tokens_estimated: bool,
    /// The estimated cost in USD.
    pub estimated_cost_usd: f64,
    /// False when the model had no known price.
    pub pricing_known: bool,
    /// Latency in milliseconds.
    pub latency_ms: f64,
    /// Time to first token in milliseconds (streams).
    pub ttft_ms: Option<f64>,
    /// True when the call succeeded.
    pub success: bool,
    /// Why the call failed.
    pub error_code: Option<String>,
    /// True for streamed calls.
    pub streamed: bool,
    /// The caller's own request id, if it sent one.
    pub client_request_id: Option<String>,
    /// Of the input tokens, those read from the upstream's prompt cache.
    pub cached_input_tokens: i64,
    /// Of the input tokens, those written to the upstream's prompt cache.
    pub cache_write_tokens: i64,
    /// Of the output tokens, those spent reasoning.
    pub reasoning_tokens: i64,
    /// The caller's end-user id (its `user` field), cut to [`END_USER_MAX_CHARS`] characters.
    pub end_user: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_users_are_cut_on_character_boundaries() {
        assert_eq!(cut_to_chars("ab", 5), "ab");
        assert_eq!(cut_to_chars("ééé", 2), "éé");
        let long = "ü".repeat(END_USER_MAX_CHARS + 10);
        assert_eq!(
            cut_to_chars(&long, END_USER_MAX_CHARS).chars().count(),
            END_USER_MAX_CHARS
        );
    }
}
