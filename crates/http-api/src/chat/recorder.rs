use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use core_domain::{ErrorCode, Specialist, TokenUsage};
use pricing::{CostEstimate, PriceTable};
use providers::ProviderError;
use usage_store::{UsageRecord, UsageSink};

use crate::live_calls::LiveCall;
use crate::{AppState, Metrics, RequestContext};

/// Records exactly one usage row for a chat call, however the call ends.
///
/// Made when the call has a specialist; consumed by [`CallRecorder::succeeded`] or
/// [`CallRecorder::failed`]. Dropped unconsumed, it means the handler (or the response stream)
/// was dropped because the client went away, shutdown cut it, or it panicked: the row then
/// says `client_disconnected`, `server_shutdown` or `internal_error` and records what was
/// consumed — the prompt's estimated input tokens and the text delivered so far, counted as
/// output.
pub(crate) struct CallRecorder {
    pending: Option<Pending>,
    delivered_chars: usize,
    first_token: Option<Duration>,
    /// What a failing stream said it had consumed.
    usage_so_far: Option<TokenUsage>,
}

struct Pending {
    /// Counts the call as live until its row is handed to the sink (or the call is dropped).
    live: LiveCall,
    sink: UsageSink,
    prices: Arc<PriceTable>,
    metrics: Arc<Metrics>,
    /// When the upstream call began, for the upstream latency metric.
    upstream_started: Option<Instant>,
    specialist: Arc<Specialist>,
    context: RequestContext,
    timestamp: chrono::DateTime<Utc>,
    estimated_input_tokens: u32,
    streamed: bool,
}

impl CallRecorder {
    pub(crate) fn start(
        state: &AppState,
        specialist: &Arc<Specialist>,
        context: &RequestContext,
        estimated_input_tokens: u32,
        streamed: bool,
    ) -> Self {
        Self {
            pending: Some(Pending {
                live: state.live_calls.enter(),
                sink: state.usage.clone(),
                prices: Arc::clone(&state.prices),
                metrics: Arc::clone(&state.metrics),
                upstream_started: None,
                specialist: Arc::clone(specialist),
                context: context.clone(),
                timestamp: Utc::now(),
                estimated_input_tokens,
                streamed,
            }),
            delivered_chars: 0,
            first_token: None,
            usage_so_far: None,
        }
    }

    /// Notes that the upstream call starts now.
    pub(crate) fn upstream_started(&mut self) {
        if let Some(pending) = &mut self.pending {
            pending.upstream_started = Some(Instant::now());
        }
    }

    /// Notes text handed to the client; the first call fixes the time to first token.
    pub(crate) fn note_delivered(&mut self, text: &str) {
        if self.first_token.is_none()
            && let Some(pending) = &self.pending
        {
            self.first_token = Some(pending.context.received_at.elapsed());
        }
        self.delivered_chars += text.chars().count();
    }

    /// Keeps what a failing stream said it consumed (the upstream's counts where it sent
    /// them), to be charged instead of our own estimate.
    pub(crate) fn note_usage_so_far(&mut self, usage: TokenUsage) {
        self.usage_so_far = Some(usage);
    }

    /// What the call has consumed if it ends now, before the upstream reported its final
    /// usage: what the stream said it consumed, else the prompt (estimated) and the text
    /// delivered (estimated from its length).
    pub(crate) fn consumed_so_far(&self) -> TokenUsage {
        if let Some(usage) = self.usage_so_far {
            return usage;
        }
        let input = self
            .pending
            .as_ref()
            .map_or(0, |p| p.estimated_input_tokens);
        let output = u32::try_from(self.delivered_chars.div_ceil(4)).unwrap_or(u32::MAX);
        TokenUsage::estimated(input, output)
    }

    /// What a call that failed with `error` consumed. One that may have reached the model
    /// (timed out, or its connection broke) is charged what it consumed so far; one refused up
    /// front consumed nothing.
    pub(crate) fn consumed_on_failure(&self, error: &ProviderError) -> TokenUsage {
        match error {
            ProviderError::Timeout { .. }
            | ProviderError::Unreachable { .. }
            | ProviderError::Upstream { status: None, .. } => self.consumed_so_far(),
            _ if self.delivered_chars > 0 || self.usage_so_far.is_some() => self.consumed_so_far(),
            _ => TokenUsage::default(),
        }
    }

    /// The call answered; returns its cost and latency for the response.
    pub(crate) fn succeeded(mut self, usage: TokenUsage) -> (CostEstimate, Duration) {
        let first_token = self.first_token;
        self.pending
            .take()
            .expect("only the consuming methods and Drop take `pending`, so it is here")
            .record(usage, None, first_token)
    }

    /// The call failed with `code` after consuming `usage`.
    pub(crate) fn failed(mut self, code: ErrorCode, usage: TokenUsage) {
        let first_token = self.first_token;
        if let Some(pending) = self.pending.take() {
            pending.record(usage, Some(code), first_token);
        }
    }
}

impl Drop for CallRecorder {
    fn drop(&mut self) {
        let consumed = self.consumed_so_far();
        if let Some(pending) = self.pending.take() {
            // Dropped unfinished: the code serving the call panicked, the client went away, or
            // shutdown's grace period ran out.
            let code = if crate::panics::cleaning_up_after_panic() {
                tracing::warn!(
                    request_id = %pending.context.request_id,
                    specialist = %pending.specialist.id(),
                    "chat call ended by a panic"
                );
                ErrorCode::Internal
            } else if pending.live.cut_by_shutdown() {
                tracing::warn!(
                    request_id = %pending.context.request_id,
                    specialist = %pending.specialist.id(),
                    "shutdown grace period ran out before the answer was complete"
                );
                ErrorCode::ServerShutdown
            } else {
                tracing::info!(
                    request_id = %pending.context.request_id,
                    specialist = %pending.specialist.id(),
                    "client disconnected before the answer was complete"
                );
                ErrorCode::ClientDisconnected
            };
            pending.record(consumed, Some(code), self.first_token);
        }
    }
}

impl Pending {
    /// The call's metrics: tokens and cost by provider/model/specialist, and the upstream's
    /// latency and errors by provider.
    fn account(&self, usage: &TokenUsage, estimate: &CostEstimate, error_code: Option<ErrorCode>) {
        let provider = self.specialist.provider().as_str();
        let model = self.specialist.model();
        let specialist = self.specialist.id().as_str();
        let m = &self.metrics;
        for (direction, count) in [
            ("input", usage.input_tokens),
            ("output", usage.output_tokens),
        ] {
            if count > 0 {
                m.tokens
                    .with_label_values(&[provider, model, specialist, direction])
                    .inc_by(u64::from(count));
            }
        }
        if estimate.cost.nanos() > 0 {
            m.cost
                .with_label_values(&[provider, model, specialist])
                .inc_by(estimate.cost.as_dollars());
        }
        if let Some(started) = self.upstream_started {
            m.upstream_latency
                .with_label_values(&[provider])
                .observe(started.elapsed().as_secs_f64());
        }
        if let Some(code) = error_code.filter(|c| is_upstream_failure(*c)) {
            m.upstream_errors
                .with_label_values(&[provider, code.as_str()])
                .inc();
        }
    }

    fn record(
        self,
        usage: TokenUsage,
        error_code: Option<ErrorCode>,
        time_to_first_token: Option<Duration>,
    ) -> (CostEstimate, Duration) {
        let latency = self.context.received_at.elapsed();
        let estimate =
            self.prices
                .estimate(self.specialist.pricing(), self.specialist.model(), &usage);
        self.account(&usage, &estimate, error_code);
        self.sink.record(UsageRecord {
            request_id: self.context.request_id,
            client_request_id: self.context.client_request_id,
            timestamp: self.timestamp,
            user_email_hash: self.context.identity.email_hash().cloned(),
            specialist_id: self.specialist.id().clone(),
            specialist_name: self.specialist.name().to_owned(),
            provider: self.specialist.provider(),
            model: self.specialist.model().to_owned(),
            usage,
            cost: estimate.cost,
            pricing_known: estimate.pricing_known,
            latency,
            time_to_first_token,
            error_code,
            streamed: self.streamed,
        });
        (estimate, latency)
    }
}

/// Errors that count against the upstream (not refusals before the call, not departures).
fn is_upstream_failure(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::UpstreamError
            | ErrorCode::UpstreamTimeout
            | ErrorCode::UpstreamRateLimited
            | ErrorCode::UpstreamAuthFailed
            | ErrorCode::UpstreamInvalidRequest
    )
}
