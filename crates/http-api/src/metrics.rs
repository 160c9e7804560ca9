//! Prometheus metrics: what ops graph and alert on. Exposed at `GET /metrics`.

use core_domain::{ErrorCode, Specialist, TokenUsage};
use pricing::CostEstimate;
use prometheus::core::Collector;
use prometheus::{
    CounterVec, Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use providers::{AttemptReport, AttemptStart, Destination};
use usage_store::{UsageSink, WriterStats};

/// Latency buckets in seconds: sub-millisecond gateway work up to minute-long generations.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0,
];

/// Every metric the server keeps. Label values are bounded: routes are patterns, providers and
/// error codes are closed sets, models and specialists come from the catalogue.
pub struct Metrics {
    registry: Registry,
    pub(crate) http_requests: IntCounterVec,
    pub(crate) http_latency: HistogramVec,
    pub(crate) upstream_latency: HistogramVec,
    pub(crate) upstream_errors: IntCounterVec,
    pub(crate) tokens: IntCounterVec,
    pub(crate) cost: CounterVec,
    pub(crate) rate_limited: IntCounterVec,
    pub(crate) rate_limit_store_errors: IntCounter,
    pub(crate) streams_in_flight: IntGauge,
    pub(crate) attempts: IntCounterVec,
    pub(crate) fallbacks: IntCounterVec,
    pub(crate) continuations: IntCounterVec,
    pub(crate) budget_refusals: IntCounterVec,
    pub(crate) budget_alerts: IntCounterVec,
    pub(crate) budget_store_errors: IntCounter,
    budget_spent: GaugeVec,
    budget_reserved: GaugeVec,
    budget_limit: GaugeVec,
    keys: KeyMetrics,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn register<C: Collector + Clone + 'static>(registry: &Registry, collector: C) -> C {
    // Names are fixed and distinct, so registration cannot collide.
    if let Err(e) = registry.register(Box::new(collector.clone())) {
        tracing::error!(error = %e, "metric not registered");
    }
    collector
}

impl Metrics {
    /// The metrics, registered; `usage` is read at every scrape for the writer's counters.
    pub fn new(usage: UsageSink) -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("commander".to_owned()), None)?;
        let metrics = Self {
            http_requests: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "http_requests_total",
                        "HTTP requests answered, by route pattern, method and status",
                    ),
                    &["route", "method", "status"],
                )?,
            ),
            http_latency: register(
                &registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "http_request_duration_seconds",
                        "Time to answer a request (to the response headers)",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                    &["route"],
                )?,
            ),
            upstream_latency: register(
                &registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "upstream_duration_seconds",
                        "Duration of upstream calls, start to last byte",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                    &["provider"],
                )?,
            ),
            upstream_errors: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "upstream_errors_total",
                        "Upstream calls that failed, by provider and error code",
                    ),
                    &["provider", "code"],
                )?,
            ),
            tokens: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "tokens_total",
                        "Tokens consumed, by provider, model, specialist and direction",
                    ),
                    &["provider", "model", "specialist", "direction"],
                )?,
            ),
            cost: register(
                &registry,
                CounterVec::new(
                    Opts::new(
                        "cost_usd_total",
                        "Estimated cost in USD, by provider, model and specialist",
                    ),
                    &["provider", "model", "specialist"],
                )?,
            ),
            rate_limited: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "rate_limited_total",
                        "Requests refused by the rate limiter, by route group",
                    ),
                    &["group"],
                )?,
            ),
            rate_limit_store_errors: register(
                &registry,
                IntCounter::new(
                    "ratelimit_store_errors_total",
                    "Rate-limit checks the Redis store did not answer (the fallback did)",
                )?,
            ),
            streams_in_flight: register(
                &registry,
                IntGauge::new("streams_in_flight", "Streamed answers being relayed now")?,
            ),
            attempts: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "upstream_attempts_total",
                        "Upstream requests made for chat calls, by specialist, destination \
                         (provider, model) and outcome (ok, or the error code)",
                    ),
                    &["specialist", "provider", "model", "outcome"],
                )?,
            ),
            fallbacks: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "fallbacks_total",
                        "Calls moved on to another of their specialist's destinations after a \
                         failure, by specialist and the destination moved to",
                    ),
                    &["specialist", "provider", "model"],
                )?,
            ),
            continuations: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "stream_continuations_total",
                        "Streams broken part way and continued from the text so far, by \
                         specialist and the destination that continued",
                    ),
                    &["specialist", "provider", "model"],
                )?,
            ),
            budget_refusals: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "budget_refusals_total",
                        "Chat calls refused because a budget had too little left, by budget",
                    ),
                    &["budget"],
                )?,
            ),
            budget_alerts: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "budget_alerts_total",
                        "Budgets whose spend reached their alert_usd (once per period), by budget",
                    ),
                    &["budget"],
                )?,
            ),
            budget_store_errors: register(
                &registry,
                IntCounter::new(
                    "budget_store_errors_total",
                    "Budget reservations or settlements the budget store did not answer",
                )?,
            ),
            budget_spent: register(
                &registry,
                GaugeVec::new(
                    Opts::new(
                        "budget_spent_usd",
                        "Spend settled in the budget's current period, in USD, by budget",
                    ),
                    &["budget"],
                )?,
            ),
            budget_reserved: register(
                &registry,
                GaugeVec::new(
                    Opts::new(
                        "budget_reserved_usd",
                        "Held by calls under way in the budget's current period, in USD, by budget",
                    ),
                    &["budget"],
                )?,
            ),
            budget_limit: register(
                &registry,
                GaugeVec::new(
                    Opts::new("budget_limit_usd", "The budget's limit per period, in USD"),
                    &["budget"],
                )?,
            ),
            keys: KeyMetrics::new(&registry)?,
            registry,
        };
        metrics
            .registry
            .register(Box::new(WriterCollector::new(usage)?))?;
        Ok(metrics)
    }

    /// The Prometheus text exposition of every metric, with the key gauges and counters set
    /// from `keys` (the providers' key pools, read now).
    pub(crate) fn render_with_keys(&self, keys: &[providers::KeyHealth]) -> String {
        self.keys.set(keys);
        self.render()
    }

    /// Sets the budget gauges from `views` (every budget, read now); a budget no longer
    /// defined leaves the gauges.
    pub(crate) fn set_budgets(&self, views: &[budgets::BudgetView]) {
        self.budget_spent.reset();
        self.budget_reserved.reset();
        self.budget_limit.reset();
        for view in views {
            let budget = &view.entry.budget;
            let label = [budget.id().as_str()];
            self.budget_limit
                .with_label_values(&label)
                .set(budget.limit().as_dollars());
            if let Ok(standing) = &view.standing {
                self.budget_spent
                    .with_label_values(&label)
                    .set(standing.spent.as_dollars());
                self.budget_reserved
                    .with_label_values(&label)
                    .set(standing.reserved.as_dollars());
            }
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::error!(error = %e, "metrics could not be encoded");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }

    /// Accounts an attempt starting: a move to another destination (or a first attempt past
    /// the specialist's own) counts as a fallback, a continuation as one; `previous` is the
    /// route index of the attempt before, if any.
    pub(crate) fn observe_attempt_start(
        &self,
        specialist: &Specialist,
        start: &AttemptStart,
        previous: Option<usize>,
    ) {
        let labels = [
            specialist.id().as_str(),
            start.destination.provider.as_str(),
            start.destination.model.as_str(),
        ];
        // A first attempt beyond the specialist's own destination is a fallback too: the ones
        // before it were passed over (not configured, keys resting, circuit open).
        let moved = previous.map_or(start.index > 0, |previous| previous != start.index);
        if start.continuation {
            self.continuations.with_label_values(&labels).inc();
        } else if moved {
            self.fallbacks.with_label_values(&labels).inc();
        }
    }

    /// Accounts an attempt that ended: its outcome, and the tokens and cost it consumed, by
    /// its destination's provider and model.
    pub(crate) fn observe_attempt_end(
        &self,
        specialist: &Specialist,
        report: &AttemptReport,
        cost: &CostEstimate,
    ) {
        let provider = report.destination.provider.as_str();
        let model = report.destination.model.as_str();
        let id = specialist.id().as_str();
        let outcome = report.error.map_or("ok", ErrorCode::as_str);
        self.attempts
            .with_label_values(&[id, provider, model, outcome])
            .inc();
        let usage: &TokenUsage = &report.usage;
        for (direction, count) in [
            ("input", usage.input_tokens),
            ("output", usage.output_tokens),
        ] {
            if count > 0 {
                self.tokens
                    .with_label_values(&[provider, model, id, direction])
                    .inc_by(u64::from(count));
            }
        }
        if cost.cost.nanos() > 0 {
            self.cost
                .with_label_values(&[provider, model, id])
                .inc_by(cost.cost.as_dollars());
        }
    }

    /// Accounts a chat call that ended: the upstream's latency (when it was called) and a
    /// failure, by the provider that served it (or was tried last).
    pub(crate) fn observe_call(
        &self,
        served_by: &Destination,
        upstream_latency: Option<std::time::Duration>,
        error_code: Option<ErrorCode>,
    ) {
        let provider = served_by.provider.as_str();
        if let Some(latency) = upstream_latency {
            self.upstream_latency
                .with_label_values(&[provider])
                .observe(latency.as_secs_f64());
        }
        if let Some(code) = error_code.filter(|c| is_upstream_failure(*c)) {
            self.upstream_errors
                .with_label_values(&[provider, code.as_str()])
                .inc();
        }
    }
}

/// Errors that count against the upstream (not refusals before the call, not departures, not
/// our own failures). Exhaustive, so that a new code has to be placed on one side.
fn is_upstream_failure(code: ErrorCode) -> bool {
    match code {
        ErrorCode::UpstreamError
        | ErrorCode::UpstreamTimeout
        | ErrorCode::UpstreamRateLimited
        | ErrorCode::UpstreamAuthFailed
        | ErrorCode::UpstreamInvalidRequest
        | ErrorCode::UpstreamBadResponse => true,
        // Nothing was sent: every key was resting or its circuit open (the key gauges and
        // counters show why).
        ErrorCode::ProviderNotConfigured
        | ErrorCode::UpstreamUnavailable
        | ErrorCode::BudgetExceeded
        | ErrorCode::BudgetUnavailable
        | ErrorCode::ClientDisconnected
        | ErrorCode::ServerShutdown
        | ErrorCode::Internal
        | ErrorCode::Interrupted => false,
    }
}

/// The upstream keys' state, set from the providers' key pools at each scrape: the pools
/// count, the scrape reads. Labels are bounded by the configured keys and the base URLs
/// specialists name.
struct KeyMetrics {
    cooling: GaugeVec,
    breaker_state: IntGaugeVec,
    cooldowns: IntCounterVec,
    breaker_opened: IntCounterVec,
}

impl KeyMetrics {
    fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        Ok(Self {
            cooling: register(
                registry,
                GaugeVec::new(
                    Opts::new(
                        "upstream_key_cooling_seconds",
                        "How much longer an upstream key rests after a 429 or a refusal (0: not resting)",
                    ),
                    &["provider", "endpoint", "key"],
                )?,
            ),
            breaker_state: register(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "upstream_breaker_state",
                        "Circuit breaker of an upstream key at an endpoint: 0 closed, 1 half-open, 2 open",
                    ),
                    &["provider", "endpoint", "key"],
                )?,
            ),
            cooldowns: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "upstream_key_cooldowns_total",
                        "Times an upstream key was set to rest (429 or 401/403)",
                    ),
                    &["provider", "key"],
                )?,
            ),
            breaker_opened: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "upstream_breaker_opened_total",
                        "Times the circuit of an upstream key opened after consecutive failures",
                    ),
                    &["provider", "key"],
                )?,
            ),
        })
    }

    fn set(&self, keys: &[providers::KeyHealth]) {
        let mut totals: std::collections::BTreeMap<(&str, &str), (u64, u64)> =
            std::collections::BTreeMap::new();
        for health in keys {
            let provider = health.provider.as_str();
            let place = [provider, health.endpoint.as_str(), health.key.as_str()];
            self.cooling
                .with_label_values(&place)
                .set(health.cooling_for.unwrap_or_default().as_secs_f64());
            self.breaker_state
                .with_label_values(&place)
                .set(health.breaker.gauge());
            let total = totals.entry((provider, health.key.as_str())).or_default();
            total.0 += health.cooldowns_total;
            total.1 += health.breaker_opened_total;
        }
        // The pools' counts are cumulative and only go up: catch the counters up to them. A
        // key at several endpoints (an xAI key at two base URLs) sums its endpoints.
        for ((provider, key), (cooldowns, opened)) in totals {
            let counter = self.cooldowns.with_label_values(&[provider, key]);
            counter.inc_by(cooldowns.saturating_sub(counter.get()));
            let counter = self.breaker_opened.with_label_values(&[provider, key]);
            counter.inc_by(opened.saturating_sub(counter.get()));
        }
    }
}

/// A cumulative writer counter and where to read it from.
type WriterCounter = (prometheus::IntCounter, fn(&WriterStats) -> u64);

/// Reads the usage writer's counters at scrape time.
struct WriterCollector {
    usage: UsageSink,
    queue_depth: IntGauge,
    lag_seconds: prometheus::Gauge,
    counters: [WriterCounter; 9],
}

impl WriterCollector {
    fn new(usage: UsageSink) -> Result<Self, prometheus::Error> {
        let counter = |name: &str, help: &str| prometheus::IntCounter::new(name, help);
        Ok(Self {
            usage,
            queue_depth: IntGauge::new(
                "usage_queue_depth",
                "Usage rows waiting in memory for the database (queued or in the batch being written)",
            )?,
            lag_seconds: prometheus::Gauge::new(
                "usage_lag_seconds",
                "How long the oldest usage row not yet in the database has waited",
            )?,
            counters: [
                (
                    counter(
                        "usage_rows_written_total",
                        "Usage rows committed in batches",
                    )?,
                    |s| s.rows_written,
                ),
                (
                    counter("usage_batches_total", "Usage batches committed")?,
                    |s| s.batches_written,
                ),
                (
                    counter(
                        "usage_write_errors_total",
                        "Failed usage write attempts (each is retried)",
                    )?,
                    |s| s.write_errors,
                ),
                (
                    counter(
                        "usage_spilled_total",
                        "Usage rows the memory queue could not hold (they waited in the journal)",
                    )?,
                    |s| s.spilled,
                ),
                (
                    counter(
                        "usage_replayed_total",
                        "Usage rows applied from the journal on disk",
                    )?,
                    |s| s.replayed,
                ),
                (
                    counter(
                        "usage_journal_errors_total",
                        "Failed journal writes (the row then waits in memory only)",
                    )?,
                    |s| s.journal_errors,
                ),
                (
                    counter(
                        "usage_interrupted_total",
                        "Calls found unfinished after the previous process ended, recorded as interrupted",
                    )?,
                    |s| s.interrupted,
                ),
                (
                    counter(
                        "usage_repaired_total",
                        "Usage rows refused for their content and stored with it escaped",
                    )?,
                    |s| s.repaired,
                ),
                (
                    counter(
                        "usage_dead_lettered_total",
                        "Usage rows refused for their content and moved to the dead-letter file",
                    )?,
                    |s| s.dead_lettered,
                ),
            ],
        })
    }
}

impl Collector for WriterCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        let mut descs = self.queue_depth.desc();
        descs.extend(self.lag_seconds.desc());
        for (counter, _) in &self.counters {
            descs.extend(counter.desc());
        }
        descs
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let stats = self.usage.stats();
        self.queue_depth
            .set(i64::try_from(stats.queue_depth).unwrap_or(i64::MAX));
        let mut families = self.queue_depth.collect();
        self.lag_seconds.set(self.usage.health().lag.as_secs_f64());
        families.extend(self.lag_seconds.collect());
        for (counter, read) in &self.counters {
            // Counters only go up; the writer's are cumulative, so catch up to them.
            let behind = read(&stats).saturating_sub(counter.get());
            counter.inc_by(behind);
            families.extend(counter.collect());
        }
        families
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unusable_answer_counts_against_the_upstream_and_a_lost_process_does_not() {
        assert!(is_upstream_failure(ErrorCode::UpstreamBadResponse));
        assert!(is_upstream_failure(ErrorCode::UpstreamError));
        assert!(!is_upstream_failure(ErrorCode::Interrupted));
        assert!(!is_upstream_failure(ErrorCode::ClientDisconnected));
        assert!(!is_upstream_failure(ErrorCode::UpstreamUnavailable));
    }

    #[test]
    fn key_health_is_exposed_as_gauges_and_counters() {
        let registry = Registry::new_custom(Some("commander".to_owned()), None).unwrap();
        let metrics = KeyMetrics::new(&registry).unwrap();
        let render = |keys: &[providers::KeyHealth]| {
            metrics.set(keys);
            let mut buffer = Vec::new();
            TextEncoder::new()
                .encode(&registry.gather(), &mut buffer)
                .unwrap();
            String::from_utf8(buffer).unwrap()
        };
        let mut health = providers::KeyHealth {
            provider: core_domain::ProviderKind::Anthropic,
            endpoint: "https://api.anthropic.com".into(),
            key: "providers.anthropic.keys[1]".into(),
            cooling_for: Some(std::time::Duration::from_millis(1500)),
            breaker: providers::BreakerState::Open,
            consecutive_failures: 5,
            cooldowns_total: 3,
            breaker_opened_total: 1,
        };
        let text = render(std::slice::from_ref(&health));
        let labels = r#"endpoint="https://api.anthropic.com",key="providers.anthropic.keys[1]",provider="anthropic""#;
        assert!(
            text.contains(&format!(
                "commander_upstream_key_cooling_seconds{{{labels}}} 1.5"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!("commander_upstream_breaker_state{{{labels}}} 2")),
            "{text}"
        );
        let counter_labels = r#"key="providers.anthropic.keys[1]",provider="anthropic""#;
        assert!(
            text.contains(&format!(
                "commander_upstream_key_cooldowns_total{{{counter_labels}}} 3"
            )),
            "{text}"
        );
        health.cooldowns_total = 4;
        health.breaker = providers::BreakerState::HalfOpen;
        let text = render(&[health]);
        assert!(
            text.contains(&format!(
                "commander_upstream_key_cooldowns_total{{{counter_labels}}} 4"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "commander_upstream_breaker_opened_total{{{counter_labels}}} 1"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!("commander_upstream_breaker_state{{{labels}}} 1")),
            "{text}"
        );
    }
}
