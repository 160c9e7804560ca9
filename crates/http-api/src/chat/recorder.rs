use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use core_domain::{ErrorCode, Specialist, TokenUsage};
use pricing::{CostEstimate, PriceTable};
use usage_store::{UsageRecord, UsageSink};

use crate::RequestContext;

/// Records exactly one usage row for a chat call, however the call ends.
///
/// Made when the call has a specialist; consumed by [`CallRecorder::succeeded`] or
/// [`CallRecorder::failed`]. If it is dropped unconsumed, the handler was cancelled because the
/// client went away, and the row says so (`client_disconnected`) with the prompt's estimated
/// input tokens.
pub(crate) struct CallRecorder {
    pending: Option<Pending>,
}

struct Pending {
    sink: UsageSink,
    prices: Arc<PriceTable>,
    specialist: Arc<Specialist>,
    context: RequestContext,
    timestamp: chrono::DateTime<Utc>,
    estimated_input_tokens: u32,
    streamed: bool,
}

impl CallRecorder {
    pub(crate) fn start(
        sink: &UsageSink,
        prices: &Arc<PriceTable>,
        specialist: &Arc<Specialist>,
        context: &RequestContext,
        estimated_input_tokens: u32,
        streamed: bool,
    ) -> Self {
        Self {
            pending: Some(Pending {
                sink: sink.clone(),
                prices: Arc::clone(prices),
                specialist: Arc::clone(specialist),
                context: context.clone(),
                timestamp: Utc::now(),
                estimated_input_tokens,
                streamed,
            }),
        }
    }

    /// The prompt's estimated input tokens, for calls cut short before the upstream reported.
    pub(crate) fn estimated_input_tokens(&self) -> u32 {
        self.pending
            .as_ref()
            .map_or(0, |p| p.estimated_input_tokens)
    }

    /// The call answered; returns its cost and latency for the response.
    pub(crate) fn succeeded(
        mut self,
        usage: TokenUsage,
        time_to_first_token: Option<Duration>,
    ) -> (CostEstimate, Duration) {
        self.pending
            .take()
            .expect("only the consuming methods and Drop take `pending`, so it is here")
            .record(usage, None, time_to_first_token)
    }

    /// The call failed with `code` after consuming `usage`.
    pub(crate) fn failed(mut self, code: ErrorCode, usage: TokenUsage) {
        if let Some(pending) = self.pending.take() {
            pending.record(usage, Some(code), None);
        }
    }
}

impl Drop for CallRecorder {
    fn drop(&mut self) {
        if let Some(pending) = self.pending.take() {
            let input = pending.estimated_input_tokens;
            tracing::info!(
                request_id = %pending.context.request_id,
                specialist = %pending.specialist.id(),
                "client disconnected before the answer was sent"
            );
            pending.record(
                TokenUsage::estimated(input, 0),
                Some(ErrorCode::ClientDisconnected),
                None,
            );
        }
    }
}

impl Pending {
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
        self.sink.record(UsageRecord {
            request_id: self.context.request_id,
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

/// What a failed non-streamed call consumed. A call that may have reached the model (timed out,
/// or the connection broke after sending) is charged its prompt, estimated; one refused up
/// front consumed nothing.
pub(crate) fn consumed_on_failure(
    error: &providers::ProviderError,
    estimated_input_tokens: u32,
) -> TokenUsage {
    use providers::ProviderError as E;
    match error {
        E::Timeout { .. } | E::Upstream { status: None, .. } => {
            TokenUsage::estimated(estimated_input_tokens, 0)
        }
        _ => TokenUsage::default(),
    }
}
