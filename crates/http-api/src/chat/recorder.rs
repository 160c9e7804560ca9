//! Exactly one usage row per chat call, however the call ends.
//!
//! Separate jobs meet here: tracking what a call has delivered (`Delivered`), pricing what it
//! consumed (a [`CostEstimate`], returned as a value to the route that shows it), the metrics
//! ([`Metrics::observe_call`]) and the row.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use core_domain::{ErrorCode, Specialist, TokenUsage};
use pricing::{CostEstimate, PriceTable};
use providers::{ChatProvider, ProviderError, ProviderRequest};
use usage_store::{CallStart, CallTicket, Durable, Rates, UsageRecord, UsageSink};

use crate::live_calls::LiveCall;
use crate::{ApiError, AppState, Metrics, RequestContext};

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
    delivered: Delivered,
}

/// What a call has handed to its client so far.
#[derive(Debug, Default)]
struct Delivered {
    chars: usize,
    /// From the request's arrival to the first text handed over.
    first_token: Option<Duration>,
    /// When what was delivered was last journaled (a stream's progress checkpoint).
    journaled_at: Option<Instant>,
}

/// How a call ended and what it consumed, priced.
pub(crate) struct Settled {
    /// What the call cost.
    pub cost: CostEstimate,
    /// From the request's arrival to its end.
    pub latency: Duration,
    /// The row's journal record: awaited before the answer's last byte goes out.
    pub journaled: Durable,
}

/// Everything needed to write the row, held until the call ends.
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
    /// The caller's own id for its end user (the request's `user`), for the row.
    end_user: Option<String>,
    streamed: bool,
    /// The call's `started` record in the journal, once the call is made.
    ticket: Option<CallTicket>,
}

impl CallRecorder {
    pub(crate) fn start(
        state: &AppState,
        specialist: &Arc<Specialist>,
        context: &RequestContext,
        request: &ProviderRequest,
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
                estimated_input_tokens: request.prompt_estimate(),
                end_user: request.options.user.clone(),
                streamed: false,
                ticket: None,
            }),
            delivered: Delivered::default(),
        }
    }

    /// The call is made now, whole or `streamed`, with `provider`: its `started` record is
    /// journaled first, so a crash from here on still leaves its row. When there is no usable
    /// provider, the call ends here with its row and the error to answer with.
    pub(crate) async fn begin(
        mut self,
        provider: Result<Arc<dyn ChatProvider>, ProviderError>,
        streamed: bool,
    ) -> Result<(Self, Arc<dyn ChatProvider>), ApiError> {
        if let Some(pending) = &mut self.pending {
            pending.streamed = streamed;
        }
        match provider {
            Ok(provider) => {
                if let Some(pending) = &mut self.pending {
                    let (ticket, journaled) = pending.sink.start(&pending.call_start());
                    pending.ticket = Some(ticket);
                    journaled.durable().await;
                    pending.upstream_started = Some(Instant::now());
                }
                Ok((self, provider))
            }
            Err(error) => {
                self.failed(error.code(), TokenUsage::default())
                    .durable()
                    .await;
                Err(error.into())
            }
        }
    }

    /// The prompt's estimated token count.
    pub(crate) fn prompt_estimate(&self) -> u32 {
        self.pending
            .as_ref()
            .map_or(0, |p| p.estimated_input_tokens)
    }

    /// Notes text handed to the client; the first call fixes the time to first token. At most
    /// once per checkpoint interval the total is journaled, so a crash mid-stream still bills
    /// what the client received.
    pub(crate) fn note_delivered(&mut self, text: &str) {
        let Some(pending) = &self.pending else {
            return;
        };
        let delivered = &mut self.delivered;
        if delivered.first_token.is_none() {
            delivered.first_token = Some(pending.context.received_at.elapsed());
        }
        delivered.chars += text.chars().count();
        if let Some(ticket) = &pending.ticket {
            let now = Instant::now();
            let last = delivered
                .journaled_at
                .unwrap_or(pending.context.received_at);
            if now.duration_since(last) >= pending.sink.stream_checkpoint_interval() {
                delivered.journaled_at = Some(now);
                pending
                    .sink
                    .progress(ticket, delivered.chars as u64, delivered.first_token);
            }
        }
    }

    /// What the call has consumed if it ends now, without the upstream's word on it: the
    /// prompt (estimated) and the text delivered (estimated from its length).
    pub(crate) fn consumed_so_far(&self) -> TokenUsage {
        let output = u32::try_from(self.delivered.chars.div_ceil(4)).unwrap_or(u32::MAX);
        TokenUsage::estimated(self.prompt_estimate(), output)
    }

    /// The call answered, consuming `usage`; returns its cost and latency for the response.
    pub(crate) fn succeeded(mut self, usage: TokenUsage) -> Settled {
        let first_token = self.delivered.first_token;
        self.pending
            .take()
            .expect("only the consuming methods and Drop take `pending`, so it is here")
            .settle(usage, None, first_token)
    }

    /// The call failed with `code` after consuming `usage`. Await the returned record before
    /// the error's last byte goes out.
    pub(crate) fn failed(mut self, code: ErrorCode, usage: TokenUsage) -> Durable {
        let first_token = self.delivered.first_token;
        let pending = self
            .pending
            .take()
            .expect("only the consuming methods and Drop take `pending`, so it is here");
        pending.settle(usage, Some(code), first_token).journaled
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
            // The client is gone (or the process is going): nobody waits for this answer,
            // so nothing waits for its record either.
            let _unawaited = pending.settle(consumed, Some(code), self.delivered.first_token);
        }
    }
}

impl Pending {
    /// What the journal needs to record this call as interrupted, should the process end
    /// before it does.
    fn call_start(&self) -> CallStart {
        let rates = self
            .prices
            .price(self.specialist.pricing(), self.specialist.model())
            .map(|price| Rates {
                input_per_1m: price.input_per_1m(),
                output_per_1m: price.output_per_1m(),
            });
        CallStart {
            request_id: self.context.request_id.clone(),
            client_request_id: self.context.client_request_id.clone(),
            timestamp: self.timestamp,
            user_email_hash: self.context.identity.email_hash().cloned(),
            specialist_id: self.specialist.id().clone(),
            specialist_name: self.specialist.name().to_owned(),
            provider: self.specialist.provider(),
            model: self.specialist.model().to_owned(),
            streamed: self.streamed,
            end_user: self.end_user.clone(),
            prompt_tokens: self.estimated_input_tokens,
            rates,
        }
    }

    /// Prices the call, accounts it in the metrics and hands its row to the sink.
    fn settle(
        self,
        usage: TokenUsage,
        error_code: Option<ErrorCode>,
        time_to_first_token: Option<Duration>,
    ) -> Settled {
        let Pending {
            // Held until the row is with the sink, so shutdown waits for it.
            live: _live,
            sink,
            prices,
            metrics,
            upstream_started,
            specialist,
            context,
            timestamp,
            estimated_input_tokens: _,
            end_user,
            streamed,
            ticket,
        } = self;
        let latency = context.received_at.elapsed();
        let cost = prices.estimate(specialist.pricing(), specialist.model(), &usage);
        metrics.observe_call(
            &specialist,
            &usage,
            &cost,
            upstream_started.map(|started| started.elapsed()),
            error_code,
        );
        let record = UsageRecord {
            request_id: context.request_id,
            client_request_id: context.client_request_id,
            timestamp,
            user_email_hash: context.identity.email_hash().cloned(),
            specialist_id: specialist.id().clone(),
            specialist_name: specialist.name().to_owned(),
            provider: specialist.provider(),
            model: specialist.model().to_owned(),
            usage,
            cost: cost.cost,
            pricing_known: cost.pricing_known,
            latency,
            time_to_first_token,
            error_code,
            streamed,
            end_user,
            // One target per call until the router tries several (issue 20); a call that never
            // reached its upstream (provider not configured) made none.
            attempts: u16::from(upstream_started.is_some()),
            attempt_details: Vec::new(),
        };
        let journaled = match ticket {
            Some(ticket) => sink.finish(ticket, record),
            None => sink.record(record),
        };
        Settled {
            cost,
            latency,
            journaled,
        }
    }
}
