use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use core_domain::{
    Door, EmailHash, ErrorCode, ProviderKind, RequestId, SpecialistId, TokenUsage, Usd,
};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use crate::StoreError;
use crate::schema::{usage_attempts, usage_logs};

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
    /// The name of the static API key the caller authenticated with (`auth.api_keys[].name`);
    /// `None` for a JWT or anonymous caller. Stored cut to [`API_KEY_MAX_CHARS`] characters.
    /// Journal lines and dead letters from before this field read as `None`.
    #[serde(default)]
    pub api_key: Option<String>,
    /// The front door the call came in by. Journal lines and dead letters from before doors
    /// were recorded read as [`Door::Native`] (see `door_of_old_lines`).
    #[serde(default = "door_of_old_lines")]
    pub door: Door,
    /// How many upstream attempts the call made: 0 when it never reached an upstream (its
    /// provider was not configured), 1 for the usual call, more when it fell back or a stream
    /// was continued on another target. Journal lines from before this field read as 1.
    #[serde(default = "one_attempt")]
    pub attempts: u16,
    /// Every attempt, in order, when the call made more than one; empty otherwise (the row
    /// itself is then its one attempt's detail, so the usual call writes no child row). When
    /// present, `provider`/`model` above name the target that served the call (or the last
    /// one tried, for a failure) and `usage`/`cost` are the sums over these attempts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempt_details: Vec<AttemptRecord>,
}

/// What journal lines and dead letters written before doors were recorded mean. The two doors
/// of that time cannot be told apart afterwards; `native` is the one every row of the original
/// service came by, and the one the migration gives old rows.
pub(crate) const fn door_of_old_lines() -> Door {
    Door::Native
}

/// What journal lines and dead letters written before attempts were counted mean: one.
const fn one_attempt() -> u16 {
    1
}

/// One upstream attempt of a call that made several (a fallback, or a stream continued on
/// another target): stored in `usage_attempts`, one row each, numbered from 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// The target's provider.
    pub provider: ProviderKind,
    /// The target's model.
    pub model: String,
    /// The target's base URL, when it has its own.
    pub base_url: Option<String>,
    /// `None` when this attempt served the call, else why it failed.
    pub error_code: Option<ErrorCode>,
    /// What this attempt consumed (a failed attempt that streamed tokens was billed for them).
    pub usage: TokenUsage,
    /// This attempt's cost, at its own model's price.
    pub cost: Usd,
    /// False when this attempt's model has no known price (its cost is then 0).
    pub pricing_known: bool,
    /// From this attempt's request to its last byte (or its failure).
    pub latency: Duration,
    /// True when this attempt continued a stream an earlier attempt began (its answer was
    /// prefilled with the text already delivered).
    pub continuation: bool,
}

impl AttemptRecord {
    /// True when this attempt served the call.
    pub fn is_success(&self) -> bool {
        self.error_code.is_none()
    }
}

/// The longest `end_user` stored, in characters (the column is `VARCHAR(256)`); longer ids are
/// cut rather than refused, because a usage row must never be lost to its label.
pub const END_USER_MAX_CHARS: usize = 256;

/// The longest API key name stored, in characters (the column is `VARCHAR(128)`); cut like
/// [`END_USER_MAX_CHARS`], for the same reason.
pub const API_KEY_MAX_CHARS: usize = 128;

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
    attempts: i16,
    api_key: Option<&'a str>,
    door: &'static str,
}

/// The insertable form of one [`AttemptRecord`], its columns named like `usage_logs`'.
#[derive(Insertable)]
#[diesel(table_name = usage_attempts, treat_none_as_default_value = false)]
pub(crate) struct NewAttemptRow<'a> {
    request_id: &'a str,
    attempt: i16,
    provider: &'static str,
    model: &'a str,
    base_url: Option<&'a str>,
    error_code: Option<&'static str>,
    input_tokens: i64,
    output_tokens: i64,
    cached_input_tokens: i64,
    cache_write_tokens: i64,
    reasoning_tokens: i64,
    tokens_estimated: bool,
    estimated_cost_usd: f64,
    pricing_known: bool,
    latency_ms: f64,
    continuation: bool,
}

impl<'a> NewAttemptRow<'a> {
    /// The child rows of `record`, numbered from 1 (none for a single-attempt call).
    pub(crate) fn of(record: &'a UsageRecord) -> impl Iterator<Item = Self> + 'a {
        // Numbered within the SMALLINT column; a router makes a handful of attempts, and a
        // journal line that somehow lists more than 32,767 must not panic the writer.
        record
            .attempt_details
            .iter()
            .zip(1..=i16::MAX)
            .map(|(attempt, number)| Self {
                request_id: record.request_id.as_str(),
                attempt: number,
                provider: attempt.provider.as_str(),
                model: &attempt.model,
                base_url: attempt.base_url.as_deref(),
                error_code: attempt.error_code.map(ErrorCode::as_str),
                input_tokens: i64::from(attempt.usage.input_tokens),
                output_tokens: i64::from(attempt.usage.output_tokens),
                cached_input_tokens: i64::from(attempt.usage.cached_input_tokens),
                cache_write_tokens: i64::from(attempt.usage.cache_write_tokens),
                reasoning_tokens: i64::from(attempt.usage.reasoning_tokens),
                tokens_estimated: attempt.usage.is_estimated,
                estimated_cost_usd: attempt.cost.as_dollars(),
                pricing_known: attempt.pricing_known,
                latency_ms: millis(attempt.latency),
                continuation: attempt.continuation,
            })
    }
}

/// A `usage_attempts` row as stored.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = usage_attempts)]
pub(crate) struct StoredAttemptRow {
    attempt: i16,
    provider: String,
    model: String,
    base_url: Option<String>,
    error_code: Option<String>,
    input_tokens: i64,
    output_tokens: i64,
    cached_input_tokens: i64,
    cache_write_tokens: i64,
    reasoning_tokens: i64,
    tokens_estimated: bool,
    estimated_cost_usd: f64,
    pricing_known: bool,
    latency_ms: f64,
    continuation: bool,
}

impl StoredAttemptRow {
    /// The attempt's number (1-based), for ordering.
    pub(crate) fn number(&self) -> i16 {
        self.attempt
    }

    /// The record back, or [`StoreError::Corrupt`] naming the value that no longer parses
    /// (the table was edited by hand).
    pub(crate) fn into_record(self, request_id: &str) -> Result<AttemptRecord, StoreError> {
        let corrupt = |what: String| {
            StoreError::Corrupt(format!(
                "usage_attempts row {request_id} #{}: {what}",
                self.attempt
            ))
        };
        let provider = self
            .provider
            .parse::<ProviderKind>()
            .map_err(|_| corrupt(format!("unknown provider '{}'", self.provider)))?;
        let error_code = self
            .error_code
            .as_deref()
            .map(|code| {
                ErrorCode::ALL
                    .iter()
                    .copied()
                    .find(|known| known.as_str() == code)
                    .ok_or_else(|| corrupt(format!("unknown error code '{code}'")))
            })
            .transpose()?;
        let count = |name: &str, value: i64| {
            u32::try_from(value).map_err(|_| corrupt(format!("{name} {value} out of range")))
        };
        let usage = TokenUsage {
            input_tokens: count("input_tokens", self.input_tokens)?,
            output_tokens: count("output_tokens", self.output_tokens)?,
            cached_input_tokens: count("cached_input_tokens", self.cached_input_tokens)?,
            cache_write_tokens: count("cache_write_tokens", self.cache_write_tokens)?,
            reasoning_tokens: count("reasoning_tokens", self.reasoning_tokens)?,
            is_estimated: self.tokens_estimated,
        };
        let cost = Usd::from_dollars(self.estimated_cost_usd)
            .ok_or_else(|| corrupt(format!("cost {} out of range", self.estimated_cost_usd)))?;
        let latency = Duration::try_from_secs_f64(self.latency_ms / 1000.0)
            .map_err(|_| corrupt(format!("latency {} ms out of range", self.latency_ms)))?;
        Ok(AttemptRecord {
            provider,
            model: self.model,
            base_url: self.base_url,
            error_code,
            usage,
            cost,
            pricing_known: self.pricing_known,
            latency,
            continuation: self.continuation,
        })
    }
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
            // The column is a SMALLINT; no router makes 32,767 attempts, and a row must never
            // be lost to its count.
            attempts: i16::try_from(r.attempts).unwrap_or(i16::MAX),
            api_key: r
                .api_key
                .as_deref()
                .map(|name| cut_to_chars(name, API_KEY_MAX_CHARS)),
            door: r.door.as_str(),
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
    /// Upstream attempts the call made (see [`UsageRecord::attempts`]).
    pub attempts: i16,
    /// The name of the API key the caller authenticated with, cut to [`API_KEY_MAX_CHARS`]
    /// characters; `NULL` for a JWT or anonymous caller.
    pub api_key: Option<String>,
    /// The front door the call came in by (see [`core_domain::Door`]).
    pub door: String,
}

/// One call as stored: its row and, when it made several attempts, each of them in order.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredCall {
    /// The `usage_logs` row.
    pub row: StoredUsage,
    /// The `usage_attempts` rows, oldest first; empty for a call of one attempt (or none).
    pub attempts: Vec<AttemptRecord>,
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
