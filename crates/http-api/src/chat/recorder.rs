//! Exactly one usage row per call (chat or embedding), however the call ends.
//!
//! Separate jobs meet here: tracking what a call has delivered (`Delivered`), pricing what it
//! consumed (a [`CostEstimate`], returned as a value to the route that shows it), the metrics
//! ([`Metrics::observe_call`]) and the row.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use core_domain::{Door, ErrorCode, Specialist, TokenUsage};
use pricing::{CostEstimate, PriceSource, PriceTable};
use providers::{AttemptEvent, AttemptReport, AttemptStart, Destination, ProviderError, Route};
use usage_store::{AttemptRecord, CallStart, CallTicket, Durable, Rates, UsageRecord, UsageSink};

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
    /// What the call cost, every attempt together.
    pub cost: CostEstimate,
    /// What it consumed, every attempt together.
    pub usage: TokenUsage,
    /// Where the answer came from (for a failure, where the last attempt went).
    pub served_by: Arc<Destination>,
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
    /// The front door the call came in by.
    door: Door,
    /// The call's `started` record in the journal, once the call is made.
    ticket: Option<CallTicket>,
    /// Where the call goes first: the specialist's own destination.
    primary: Arc<Destination>,
    /// The attempts that ended, priced, in order.
    attempts: Vec<PricedAttempt>,
    /// The attempt under way, with how many characters had been delivered when it began, and
    /// when it began.
    current: Option<(AttemptStart, usize, Instant)>,
    /// What the call holds against its budgets, settled at its cost when it ends.
    reservation: Option<(Arc<budgets::Budgets>, budgets::Reservation)>,
}

/// An attempt that ended, with its price.
struct PricedAttempt {
    report: AttemptReport,
    cost: CostEstimate,
}

impl PricedAttempt {
    /// The attempt as the usage log keeps it.
    fn record(&self) -> AttemptRecord {
        let destination = &self.report.destination;
        AttemptRecord {
            provider: destination.provider,
            model: destination.model.clone(),
            base_url: destination.base_url.clone(),
            error_code: self.report.error,
            usage: self.report.usage,
            cost: self.cost.cost,
            pricing_known: self.cost.pricing_known,
            latency: self.report.latency,
            continuation: self.report.continuation,
        }
    }
}

impl CallRecorder {
    /// The recorder of a call to `specialist` along `route` that came in by `door`, whose
    /// prompt (a chat's messages, an embedding's inputs) is estimated at `prompt_estimate`
    /// tokens, for the caller's `end_user` if it named one.
    pub(crate) fn start(
        state: &AppState,
        specialist: &Arc<Specialist>,
        context: &RequestContext,
        door: Door,
        (prompt_estimate, end_user): (u32, Option<String>),
        route: &Route,
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
                estimated_input_tokens: prompt_estimate,
                end_user,
                streamed: false,
                door,
                ticket: None,
                primary: Arc::clone(route.primary()),
                attempts: Vec::new(),
                current: None,
                reservation: None,
            }),
            delivered: Delivered::default(),
        }
    }

    /// The call is made now, whole or `streamed`, with `provider`: its `started` record is
    /// journaled first, so a crash from here on still leaves its row. When there is no usable
    /// provider, the call ends here with its row and the error to answer with.
    pub(crate) async fn begin(mut self, streamed: bool) -> Self {
        if let Some(pending) = &mut self.pending {
            pending.streamed = streamed;
            let (ticket, journaled) = pending.sink.start(&pending.call_start());
            pending.ticket = Some(ticket);
            journaled.durable().await;
            pending.upstream_started = Some(Instant::now());
        }
        self
    }

    /// The call could not be made at all: no destination of its route could be called (not
    /// configured). It ends here with its row, and the error to answer with.
    pub(crate) async fn refused(mut self, error: ProviderError, streamed: bool) -> ApiError {
        if let Some(pending) = &mut self.pending {
            pending.streamed = streamed;
        }
        self.failed(error.code()).durable().await;
        error.into()
    }

    /// Holds `reservation` (the call's worst case, reserved in its budgets) until the call
    /// ends, when it is settled at the call's cost — however it ends.
    pub(crate) fn holding(
        mut self,
        reservation: Option<(Arc<budgets::Budgets>, budgets::Reservation)>,
    ) -> Self {
        if let Some(pending) = &mut self.pending {
            pending.reservation = reservation;
        }
        self
    }

    /// The call was refused before anything was sent (a budget): it ends here with its row,
    /// costing nothing, and `refusal` is the error to answer with.
    pub(crate) async fn refused_before_call(
        mut self,
        refusal: ApiError,
        streamed: bool,
    ) -> ApiError {
        if let Some(pending) = &mut self.pending {
            pending.streamed = streamed;
        }
        let code = match refusal.code() {
            crate::ApiCode::Call(code) => code,
            _ => ErrorCode::Internal,
        };
        self.failed(code).durable().await;
        refusal
    }

    /// Notes an attempt starting or ending: an ended one is priced by its own model (the
    /// specialist's own pricing applies to its own destination) and counted in the metrics.
    pub(crate) fn note_attempt(&mut self, event: AttemptEvent) {
        let Some(pending) = &mut self.pending else {
            return;
        };
        match event {
            AttemptEvent::Started(start) => {
                pending.metrics.observe_attempt_start(
                    &pending.specialist,
                    &start,
                    pending.attempts.last().map(|a| a.report.index),
                );
                pending.current = Some((start, self.delivered.chars, Instant::now()));
            }
            AttemptEvent::Ended(report) => {
                pending.current = None;
                let cost = pending.price(&report.destination, report.index, &report.usage);
                pending
                    .metrics
                    .observe_attempt_end(&pending.specialist, &report, &cost);
                pending.attempts.push(PricedAttempt { report, cost });
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

    /// What the attempt under way has consumed if it ends now, without the upstream's word on
    /// it: its prompt (estimated) and the text it delivered (estimated from its length).
    fn unfinished_attempt(&self) -> Option<TokenUsage> {
        let (start, delivered_before, _) = self.pending.as_ref()?.current.as_ref()?;
        let chars = self.delivered.chars.saturating_sub(*delivered_before);
        let output = u32::try_from(chars.div_ceil(4)).unwrap_or(u32::MAX);
        Some(TokenUsage::estimated(start.prompt_estimate, output))
    }

    /// The call answered; returns its cost, usage and latency for the response.
    pub(crate) fn succeeded(self) -> Settled {
        self.settle(None)
    }

    /// The call failed with `code`. Await the returned record before the error's last byte
    /// goes out.
    pub(crate) fn failed(self, code: ErrorCode) -> Durable {
        self.settle(Some(code)).journaled
    }

    /// Ends the call: an attempt still under way is closed with what it consumed so far and
    /// `code`, and the row is handed on.
    fn settle(mut self, code: Option<ErrorCode>) -> Settled {
        let unfinished = self.unfinished_attempt();
        let first_token = self.delivered.first_token;
        let mut pending = self
            .pending
            .take()
            .expect("only settle and Drop take `pending`, and settle consumes the recorder");
        if let (Some(usage), Some((start, _, began))) = (unfinished, pending.current.take()) {
            let report = AttemptReport {
                index: start.index,
                destination: start.destination,
                error: Some(code.unwrap_or(ErrorCode::Internal)),
                usage,
                latency: began.elapsed(),
                continuation: start.continuation,
            };
            let cost = pending.price(&report.destination, report.index, &report.usage);
            pending
                .metrics
                .observe_attempt_end(&pending.specialist, &report, &cost);
            pending.attempts.push(PricedAttempt { report, cost });
        }
        pending.settle(code, first_token)
    }
}

impl Drop for CallRecorder {
    fn drop(&mut self) {
        if let Some(pending) = &self.pending {
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
            let recorder = Self {
                pending: self.pending.take(),
                delivered: std::mem::take(&mut self.delivered),
            };
            let _unawaited = recorder.settle(Some(code));
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
            api_key: self.context.api_key.as_deref().map(str::to_owned),
            door: self.door,
            prompt_tokens: self.estimated_input_tokens,
            rates,
        }
    }

    /// The price of `usage` at `destination`, the route's `index`-th: the specialist's own
    /// pricing is for its own destination; any other is priced by its model.
    fn price(&self, destination: &Destination, index: usize, usage: &TokenUsage) -> CostEstimate {
        let own = (index == 0).then(|| self.specialist.pricing()).flatten();
        self.prices.estimate(own, &destination.model, usage)
    }

    /// Sums the attempts, accounts the call in the metrics and hands its row to the sink.
    fn settle(
        self,
        error_code: Option<ErrorCode>,
        time_to_first_token: Option<Duration>,
    ) -> Settled {
        // A call that never reached an upstream consumed nothing, at its own destination's
        // price (which says whether that model is priced at all).
        let unattempted = self
            .attempts
            .is_empty()
            .then(|| self.price(&self.primary, 0, &TokenUsage::default()));
        let Pending {
            // Held until the row is with the sink, so shutdown waits for it.
            live: _live,
            sink,
            prices: _,
            metrics,
            upstream_started,
            specialist,
            context,
            timestamp,
            estimated_input_tokens: _,
            end_user,
            streamed,
            door,
            ticket,
            primary,
            attempts,
            current: _,
            reservation,
        } = self;
        let latency = context.received_at.elapsed();
        let mut usage = TokenUsage::default();
        let mut cost = CostEstimate {
            cost: core_domain::Usd::ZERO,
            pricing_known: true,
            source: PriceSource::Table,
        };
        for (n, attempt) in attempts.iter().enumerate() {
            usage = providers::plus(usage, attempt.report.usage);
            cost.cost = cost.cost + attempt.cost.cost;
            // An attempt that consumed nothing costs nothing, priced or not.
            let consumed =
                attempt.report.usage.input_tokens > 0 || attempt.report.usage.output_tokens > 0;
            if consumed || n + 1 == attempts.len() {
                cost.pricing_known &= attempt.cost.pricing_known;
            }
            if attempt.report.index == 0 {
                cost.source = attempt.cost.source;
            }
        }
        if let Some(unattempted) = unattempted {
            cost = unattempted;
        }
        let served_by = attempts
            .last()
            .map_or(primary, |attempt| Arc::clone(&attempt.report.destination));
        if let Some((budgets, reservation)) = reservation {
            crate::spend::settle(budgets, Arc::clone(&metrics), reservation, cost.cost);
        }
        metrics.observe_call(
            &served_by,
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
            provider: served_by.provider,
            model: served_by.model.clone(),
            usage,
            cost: cost.cost,
            pricing_known: cost.pricing_known,
            latency,
            time_to_first_token,
            error_code,
            streamed,
            end_user,
            api_key: context.api_key.as_deref().map(str::to_owned),
            door,
            attempts: u16::try_from(attempts.len()).unwrap_or(u16::MAX),
            // The usual call's one attempt is the row itself: no child row to write.
            attempt_details: if attempts.len() > 1 {
                attempts.iter().map(PricedAttempt::record).collect()
            } else {
                Vec::new()
            },
        };
        let journaled = match ticket {
            Some(ticket) => sink.finish(ticket, record),
            None => sink.record(record),
        };
        Settled {
            cost,
            usage,
            served_by,
            latency,
            journaled,
        }
    }
}
