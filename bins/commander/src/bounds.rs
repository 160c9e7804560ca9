//! The allowed range of every numeric configuration key: the numeric part of
//! [`Settings::validate`], so checked by `commander check-config` and by
//! [`crate::Application::build`] before anything is started.
//!
//! The crates below take these values as given, and some of what they hand them to panics or
//! aborts on extremes: an `Instant` plus `u64::MAX` seconds overflows, a Tokio channel refuses
//! a capacity of 0 or above `usize::MAX >> 3`, actix refuses more than 512 workers, r2d2 and the
//! rate limiter allocate a slot per connection or caller up front, and JWT validation subtracts
//! the leeway from the current time. The ranges are wide enough for any real deployment and
//! narrow enough that nothing downstream overflows; docs/OPERATIONS.md lists them.

use std::fmt;

use usage_store::DatabaseConfig;

use crate::Settings;

/// A configuration key whose value is outside its allowed range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutOfRange {
    /// The key as written in `commander.toml`, e.g. `server.shutdown_grace_seconds`.
    pub key: String,
    /// The value found.
    pub value: u128,
    /// What the key allows.
    pub allowed: AllowedRange,
}

impl OutOfRange {
    /// What is wrong, without the key.
    pub fn describe(&self) -> String {
        format!("{} is out of range (allowed: {})", self.value, self.allowed)
    }
}

impl fmt::Display for OutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.describe())
    }
}

/// An inclusive range of allowed values and their unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllowedRange {
    min: u128,
    max: u128,
    unit: &'static str,
}

impl AllowedRange {
    const fn new(min: u128, max: u128, unit: &'static str) -> Self {
        Self { min, max, unit }
    }

    fn contains(&self, value: u128) -> bool {
        (self.min..=self.max).contains(&value)
    }
}

impl fmt::Display for AllowedRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} to {} {}", self.min, self.max, self.unit)
    }
}

const DAY_SECONDS: u128 = 86_400;
const DAY_MS: u128 = DAY_SECONDS * 1_000;
const GIB: u128 = 1024 * 1024 * 1024;

/// A deadline: zero would fail every call at once.
const TIMEOUT_MS: AllowedRange = AllowedRange::new(1, DAY_MS, "milliseconds");
/// A wait or delay, where zero means "do not wait" (or "never", where documented).
const WAIT_MS: AllowedRange = AllowedRange::new(0, DAY_MS, "milliseconds");
/// A span in seconds (a wait, a grace, a clock skew), where zero means none (or "off", where
/// documented).
const SECONDS: AllowedRange = AllowedRange::new(0, DAY_SECONDS, "seconds");
/// An interval that must tick.
const INTERVAL_SECONDS: AllowedRange = AllowedRange::new(1, DAY_SECONDS, "seconds");
/// A byte size of something held in memory whole (a request body).
const BYTES: AllowedRange = AllowedRange::new(1, 4 * GIB, "bytes");
/// A count of things held in memory at once; `min` is 0 where zero means "none".
const fn count(min: u128, unit: &'static str) -> AllowedRange {
    AllowedRange::new(min, 10_000_000, unit)
}
/// actix-server panics above 512 workers; 0 means one per core.
const WORKERS: AllowedRange = AllowedRange::new(0, 512, "threads (0: one per core)");
/// Retries beyond this are a misconfiguration (the total deadline bounds them anyway).
const RETRIES: AllowedRange = AllowedRange::new(0, 100, "retries");
/// At least the one attempt; more than this many upstream requests for one call is a
/// misconfiguration (the deadline bounds them anyway).
const ATTEMPTS: AllowedRange = AllowedRange::new(1, 100, "attempts");
/// Consecutive failures that open a circuit; 0 never opens it.
const BREAKER_FAILURES: AllowedRange = AllowedRange::new(0, 1_000, "failures (0: never open)");
/// Instances sharing one rate limit: beyond this the local share is 1 for any sane limit.
const INSTANCES: AllowedRange = AllowedRange::new(1, 10_000, "instances");
/// One call to the shared rate-limit store is on every request's path: a minute is already
/// far past anything useful.
const STORE_TIMEOUT_MS: AllowedRange = AllowedRange::new(1, 60_000, "milliseconds");
/// Longer windows than a year make the refill rate meaningless.
const WINDOW_SECONDS: AllowedRange = AllowedRange::new(1, 365 * DAY_SECONDS, "seconds");
/// The usage store's own caps (it clamps to them too).
const POOL_SIZE: AllowedRange =
    AllowedRange::new(1, DatabaseConfig::MAX_POOL_SIZE as u128, "connections");
const BATCH_SIZE: AllowedRange =
    AllowedRange::new(1, DatabaseConfig::MAX_BATCH_SIZE as u128, "rows");
const QUEUE_CAPACITY: AllowedRange =
    AllowedRange::new(1, DatabaseConfig::MAX_QUEUE_CAPACITY as u128, "rows");
/// Every value a `NonZeroU32` can hold is fine.
const REQUESTS: AllowedRange = AllowedRange::new(1, u32::MAX as u128, "requests");

/// Every numeric key of `settings` that is outside its range (empty when all are fine).
// A table, one key a line, kept readable by hand: a new numeric key gets its line here (and
// its range in docs/OPERATIONS.md).
#[rustfmt::skip]
pub fn out_of_range(settings: &Settings) -> Vec<OutOfRange> {
    let Settings { server, database, providers, routing, auth, rate_limit, redis, specialists, budgets, .. } = settings;
    let mut keys = Keys::default();

    keys.check("server.max_body_bytes", server.max_body_bytes, BYTES);
    keys.check("server.workers", server.workers, WORKERS);
    keys.check("server.shutdown_grace_seconds", server.shutdown_grace_seconds, SECONDS);
    keys.check("server.keep_alive_seconds", server.keep_alive_seconds, SECONDS);
    keys.check("server.sse_keep_alive_seconds", server.sse_keep_alive_seconds, INTERVAL_SECONDS);
    keys.check("server.chat.max_message_chars", server.chat.max_message_chars, count(1, "characters"));
    keys.check("server.chat.max_history_messages", server.chat.max_history_messages, count(0, "messages"));
    keys.check("server.client_body_timeout_ms", server.client_body_timeout_ms.get(), TIMEOUT_MS);
    keys.check("server.max_connections_per_client", server.max_connections_per_client.get(), count(1, "connections"));
    keys.check("server.console.session_minutes", server.console.session_minutes, AllowedRange::new(1, 30 * 24 * 60, "minutes"));

    keys.check("database.pool_size", database.pool_size, POOL_SIZE);
    keys.check("database.batch_size", database.batch_size, BATCH_SIZE);
    keys.check("database.queue_capacity", database.queue_capacity, QUEUE_CAPACITY);
    keys.check("database.flush_interval_ms", database.flush_interval_ms, WAIT_MS);
    keys.check("database.connect_timeout_ms", database.connect_timeout_ms, TIMEOUT_MS);
    keys.check("database.shutdown_timeout_ms", database.shutdown_timeout_ms, WAIT_MS);
    keys.check("database.sqlite_busy_timeout_ms", database.sqlite_busy_timeout_ms, WAIT_MS);
    keys.check("database.journal_stream_checkpoint_ms", database.journal_stream_checkpoint_ms, TIMEOUT_MS);
    keys.check("database.ready_max_lag_ms", database.ready_max_lag_ms, TIMEOUT_MS);
    keys.check("database.exact_report_calls", database.exact_report_calls, AllowedRange::new(0, u64::MAX as u128, "calls (0: the rollup whenever it can)"));

    keys.check("providers.connect_timeout_ms", providers.connect_timeout_ms, TIMEOUT_MS);
    keys.check("providers.max_event_bytes", providers.max_event_bytes.get(), BYTES);
    keys.check("providers.max_response_bytes", providers.max_response_bytes.get(), BYTES);
    for (name, upstream) in [
        ("openai", &providers.openai),
        ("anthropic", &providers.anthropic),
        ("google", &providers.google),
    ] {
        let key = |field: &str| format!("providers.{name}.{field}");
        keys.check(&key("first_byte_timeout_ms"), upstream.first_byte_timeout_ms, TIMEOUT_MS);
        keys.check(&key("idle_timeout_ms"), upstream.idle_timeout_ms, TIMEOUT_MS);
        keys.check(&key("total_timeout_ms"), upstream.total_timeout_ms, TIMEOUT_MS);
        keys.check(&key("max_retries"), upstream.max_retries, RETRIES);
        keys.check(&key("retry_base_delay_ms"), upstream.retry_base_delay_ms, WAIT_MS);
        keys.check(&key("retry_max_delay_ms"), upstream.retry_max_delay_ms, WAIT_MS);
        keys.check(&key("cooldown_ms"), upstream.cooldown_ms, WAIT_MS);
        keys.check(&key("breaker_failures"), upstream.breaker_failures, BREAKER_FAILURES);
        keys.check(&key("breaker_open_ms"), upstream.breaker_open_ms, TIMEOUT_MS);
    }
    keys.check("providers.mock.latency_ms", providers.mock.latency_ms, WAIT_MS);
    keys.check("providers.mock.chunk_count", providers.mock.chunk_count, count(1, "chunks"));
    keys.check("providers.mock.chunk_delay_ms", providers.mock.chunk_delay_ms, WAIT_MS);

    keys.check("routing.max_attempts", routing.max_attempts, ATTEMPTS);
    keys.check("routing.deadline_ms", routing.deadline_ms, TIMEOUT_MS);

    if let Some(jwt) = &auth.jwt {
        keys.check("auth.jwt.leeway_seconds", jwt.leeway_seconds, SECONDS);
    }

    keys.check("rate_limit.requests", rate_limit.requests.get(), REQUESTS);
    keys.check("rate_limit.window_seconds", rate_limit.window_seconds.get(), WINDOW_SECONDS);
    keys.check("rate_limit.max_buckets", rate_limit.max_buckets, count(1, "callers"));
    keys.check("rate_limit.instances", rate_limit.instances.get(), INSTANCES);
    keys.check("redis.timeout_ms", redis.timeout_ms.get(), STORE_TIMEOUT_MS);
    for (name, group) in [("chat", &rate_limit.chat), ("management", &rate_limit.management)] {
        if let Some(group) = group {
            let key = |field: &str| format!("rate_limit.{name}.{field}");
            keys.check(&key("requests"), group.requests.get(), REQUESTS);
            keys.check(&key("window_seconds"), group.window_seconds.get(), WINDOW_SECONDS);
        }
    }

    keys.check("specialists.reload_interval_ms", specialists.reload_interval_ms, WAIT_MS);
    if let Some(lease_ms) = budgets.lease_ms {
        keys.check("budgets.lease_ms", lease_ms.get(), TIMEOUT_MS);
    }
    keys.check("budgets.reload_interval_ms", budgets.reload_interval_ms, WAIT_MS);
    keys.check("budgets.store_timeout_ms", budgets.store_timeout_ms.get(), STORE_TIMEOUT_MS);
    keys.check("specialists.max_prompt_history", specialists.max_prompt_history, count(0, "prompts"));
    keys.found
}

/// The keys found out of range so far.
#[derive(Default)]
struct Keys {
    found: Vec<OutOfRange>,
}

impl Keys {
    fn check(&mut self, key: &str, value: impl TryInto<u128>, allowed: AllowedRange) {
        // Only a `usize` wider than 128 bits could fail to convert; it is out of any range.
        let value = value.try_into().unwrap_or(u128::MAX);
        if !allowed.contains(value) {
            self.found.push(OutOfRange {
                key: key.to_owned(),
                value,
                allowed,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::panic::{AssertUnwindSafe, catch_unwind};

    use super::*;
    use crate::check::problems;
    use crate::load_settings;

    /// Keys whose type's largest value is fine.
    const MAX_IS_FINE: &[&str] = &[
        "database.exact_report_calls",
        "rate_limit.requests",
        "rate_limit.chat.requests",
        "rate_limit.management.requests",
    ];

    /// Keys for which zero is fine: it means none, off, one per core, or do not wait.
    const ZERO_IS_FINE: &[&str] = &[
        "database.exact_report_calls",
        "server.workers",
        "server.shutdown_grace_seconds",
        "server.keep_alive_seconds",
        "server.chat.max_history_messages",
        "budgets.reload_interval_ms",
        "database.flush_interval_ms",
        "database.shutdown_timeout_ms",
        "database.sqlite_busy_timeout_ms",
        "providers.openai.max_retries",
        "providers.openai.retry_base_delay_ms",
        "providers.openai.retry_max_delay_ms",
        "providers.openai.cooldown_ms",
        "providers.openai.breaker_failures",
        "providers.anthropic.max_retries",
        "providers.anthropic.retry_base_delay_ms",
        "providers.anthropic.retry_max_delay_ms",
        "providers.anthropic.cooldown_ms",
        "providers.anthropic.breaker_failures",
        "providers.google.max_retries",
        "providers.google.retry_base_delay_ms",
        "providers.google.retry_max_delay_ms",
        "providers.google.cooldown_ms",
        "providers.google.breaker_failures",
        "providers.mock.latency_ms",
        "providers.mock.chunk_delay_ms",
        "auth.jwt.leeway_seconds",
        "specialists.reload_interval_ms",
        "specialists.max_prompt_history",
    ];

    /// Every numeric key, found by printing the configuration with its optional sections
    /// present: a key added later is tested without anyone listing it here.
    fn numeric_keys() -> Vec<String> {
        let mut settings = Settings::default();
        settings.auth.jwt = Some(http_api::JwtConfig::default());
        let group = http_api::GroupLimit {
            requests: settings.rate_limit.requests,
            window_seconds: settings.rate_limit.window_seconds,
        };
        settings.rate_limit.chat = Some(group);
        settings.rate_limit.management = Some(group);
        let mut keys = Vec::new();
        collect_numbers(&serde_json::to_value(&settings).unwrap(), "", &mut keys);
        keys
    }

    fn collect_numbers(value: &serde_json::Value, path: &str, keys: &mut Vec<String>) {
        match value {
            serde_json::Value::Number(_) => keys.push(path.to_owned()),
            serde_json::Value::Object(fields) => {
                for (name, field) in fields {
                    let path = if path.is_empty() {
                        name.clone()
                    } else {
                        format!("{path}.{name}")
                    };
                    collect_numbers(field, &path, keys);
                }
            }
            _ => {}
        }
    }

    fn env_name(key: &str) -> String {
        format!("COMMANDER__{}", key.replace('.', "__").to_uppercase())
    }

    /// What `commander check-config` finds with `key` set to `value` through its environment
    /// variable, on a configuration that is otherwise fine: the loading error, or the
    /// problems. Panics are caught and named.
    fn check_with(key: &str, value: &str, catalogue: &str) -> Result<Vec<String>, String> {
        let mut env: HashMap<String, String> = [
            ("COMMANDER__SPECIALISTS__PATH", catalogue),
            // The optional sections, present so their keys can be set one at a time.
            ("COMMANDER__RATE_LIMIT__CHAT__REQUESTS", "60"),
            ("COMMANDER__RATE_LIMIT__CHAT__WINDOW_SECONDS", "3600"),
            ("COMMANDER__RATE_LIMIT__MANAGEMENT__REQUESTS", "60"),
            ("COMMANDER__RATE_LIMIT__MANAGEMENT__WINDOW_SECONDS", "3600"),
            ("COMMANDER__AUTH__JWT__ALGORITHM", "HS256"),
            (
                "COMMANDER__AUTH__JWT__SECRET",
                "a-shared-secret-of-at-least-32-characters",
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        env.insert(env_name(key), value.to_owned());
        catch_unwind(AssertUnwindSafe(|| {
            load_settings(None, &env)
                .map(|settings| {
                    problems(&settings)
                        .iter()
                        .map(ToString::to_string)
                        .collect()
                })
                .map_err(|e| e.to_string())
        }))
        .unwrap_or_else(|_| panic!("{key} = {value} panicked"))
    }

    fn names(found: &Result<Vec<String>, String>, key: &str) -> bool {
        match found {
            Ok(problems) => problems.iter().any(|p| p.starts_with(&format!("{key}: "))),
            Err(error) => error.contains(key),
        }
    }

    #[test]
    fn every_numeric_key_at_zero_and_at_its_type_s_max_is_named_or_accepted_never_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let catalogue = dir.path().join("specialists.json");
        let catalogue = catalogue.to_str().unwrap();
        let keys = numeric_keys();
        assert!(keys.len() >= 40, "found only {keys:?}");
        for key in &keys {
            // The type's largest value: u64/usize first, else u32.
            let at_max = [u64::MAX.to_string(), u32::MAX.to_string()]
                .into_iter()
                .map(|max| (check_with(key, &max, catalogue), max))
                .find(|(found, _)| found.is_ok())
                .unwrap_or_else(|| panic!("{key}: no integer maximum loads"));
            let (found, max) = at_max;
            if MAX_IS_FINE.contains(&key.as_str()) {
                assert_eq!(found, Ok(vec![]), "{key} = {max}");
            } else {
                assert!(names(&found, key), "{key} = {max} not refused: {found:?}");
                let problem = found
                    .unwrap()
                    .into_iter()
                    .find(|p| p.starts_with(key.as_str()));
                assert!(
                    problem.is_some_and(|p| p.contains("allowed: ")),
                    "{key}: the allowed range is named"
                );
            }
            let found = check_with(key, "0", catalogue);
            if ZERO_IS_FINE.contains(&key.as_str()) {
                assert_eq!(found, Ok(vec![]), "{key} = 0");
            } else {
                assert!(names(&found, key), "{key} = 0 not refused: {found:?}");
            }
        }
    }

    #[test]
    fn defaults_are_in_range_and_a_problem_names_key_value_and_range() {
        assert_eq!(out_of_range(&Settings::default()), []);
        let mut settings = Settings::default();
        settings.server.shutdown_grace_seconds = u64::MAX;
        settings.database.queue_capacity = 0;
        let found: Vec<String> = out_of_range(&settings)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            found,
            [
                "server.shutdown_grace_seconds: 18446744073709551615 is out of range \
                 (allowed: 0 to 86400 seconds)",
                "database.queue_capacity: 0 is out of range (allowed: 1 to 10000000 rows)",
            ]
        );
    }
}
