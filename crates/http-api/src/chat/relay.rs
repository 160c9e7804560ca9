//! Carrying an upstream stream to the client as server-sent events, in whichever format the
//! route speaks, with exactly one usage row however it ends.

use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::time::Duration;

use actix_web_lab::sse::{self, Sse};
use std::sync::Arc;

use core_domain::{ErrorCode, FinishReason, StreamEvent, TokenUsage, ToolCallDelta};
use futures_util::{FutureExt, Stream, StreamExt, stream};
use pricing::CostEstimate;
use providers::{
    AttemptEvent, Destination, ProviderError, Route, RoutedEvent, RoutedStream, StreamFailure,
};

use crate::chat::CallRecorder;
use crate::{ApiError, AppState};

/// How a route writes a stream's events. Methods take `&mut self`: a format may keep per-stream
/// state (which content block is open, an event sequence number).
pub(crate) trait StreamFormat: Send + 'static {
    /// The answer comes (from here on) from `destination`: a format that names the model on
    /// its chunks names this one.
    fn served_by(&mut self, destination: &Destination) {
        let _ = destination;
    }
    /// Events before any text.
    fn opening(&mut self) -> Vec<sse::Event>;
    /// One piece of text.
    fn delta(&mut self, text: &str) -> sse::Event;
    /// One piece of text, as every event the format writes for it: by default
    /// [`StreamFormat::delta`]'s one. A format that opens an item before its first piece of
    /// text (the Responses door's message item) overrides it.
    fn text(&mut self, text: &str) -> Vec<sse::Event> {
        vec![self.delta(text)]
    }
    /// One piece of a tool call (only a door that can offer tools receives them).
    fn tool_call(&mut self, delta: &ToolCallDelta) -> Vec<sse::Event>;
    /// A piece of the model's reasoning: a [`StreamEvent::ReasoningDelta`],
    /// [`StreamEvent::ReasoningSignature`] or [`StreamEvent::RedactedReasoning`]. A door whose
    /// wire format has no place for it writes nothing (the default).
    fn reasoning(&mut self, event: &StreamEvent) -> Vec<sse::Event> {
        let _ = event;
        Vec::new()
    }
    /// The end of a successful answer.
    fn finished(
        &mut self,
        usage: &TokenUsage,
        finish_reason: &FinishReason,
        cost: &CostEstimate,
        latency: Duration,
    ) -> Vec<sse::Event>;
    /// The end of an answer that failed after it began.
    fn failed(&mut self, code: ErrorCode, message: &str) -> Vec<sse::Event>;
}

/// Starts the upstream stream and waits briefly for its first event before committing the
/// response, so anything that fails before then — an upstream that refuses the call, cannot be
/// reached, or errors at once — is an ordinary HTTP error (with its usage row).
///
/// The wait is bounded by the keep-alive interval, from the moment the upstream call starts
/// (connecting, retries and the upstream's response headers included): a model that thinks for
/// a minute before its first token, or an upstream being retried, must not leave the client
/// (and every proxy between) without a byte for that long. After one keep-alive interval the
/// response starts and keep-alive comments flow; a failure after that is an `error` event like
/// any other mid-stream failure.
///
/// A stream still running when shutdown's grace period is about to run out ends itself with a
/// `server_shutdown` failure, and one whose code panics with an `internal_error` one, so the
/// client can always tell an answer that was cut from a whole one.
pub(crate) async fn relay<F: StreamFormat>(
    state: &AppState,
    mut upstream: RoutedStream,
    route: Route,
    mut recorder: CallRecorder,
    mut format: F,
) -> Result<
    (
        Sse<impl Stream<Item = Result<sse::Event, Infallible>> + use<F>>,
        Arc<Destination>,
    ),
    ApiError,
> {
    let keep_alive = state.sse_keep_alive;
    let mut served_by = Arc::clone(route.primary());
    let mut must_end: ShutdownCut = Box::pin(state.live_calls.clone().streams_must_end());
    // `next()` is cancel-safe: on a timeout the event, when it comes, is read by the relay.
    // Word of attempts (a fallback before the first text) is taken in on the way.
    let peek = async {
        loop {
            let item = tokio::select! {
                biased;
                () = &mut must_end => return Err(()),
                item = upstream.next() => item,
            };
            match item {
                Some(Ok(RoutedEvent::Attempt(event))) => {
                    if let AttemptEvent::Started(start) = &event {
                        served_by = Arc::clone(&start.destination);
                    }
                    recorder.note_attempt(event);
                }
                Some(Ok(RoutedEvent::Answer(event))) => return Ok(Some(Ok(event))),
                Some(Err(failure)) => return Ok(Some(Err(failure))),
                None => return Ok(None),
            }
        }
    };
    let first = match tokio::time::timeout(keep_alive, peek).await {
        Ok(Ok(Some(Ok(event)))) => Some(event),
        Ok(Ok(Some(Err(failure)))) => {
            recorder.failed(failure.error.code()).durable().await;
            return Err(failure.error.into());
        }
        Ok(Ok(None)) => {
            let error = ProviderError::Upstream {
                status: None,
                message: "the upstream ended the stream without an answer".to_owned(),
            };
            recorder.failed(error.code()).durable().await;
            return Err(error.into());
        }
        Ok(Err(())) => {
            recorder.failed(ErrorCode::ServerShutdown).durable().await;
            return Err(ApiError::new(ErrorCode::ServerShutdown, SHUTDOWN_MESSAGE));
        }
        Err(_still_thinking) => None,
    };
    format.served_by(&served_by);
    let opening = format.opening();
    let relay = Relay {
        upstream,
        first,
        recorder: Some(recorder),
        format,
        must_end,
        span: tracing::Span::current(),
        _in_flight: InFlight::new(state.metrics.streams_in_flight.clone()),
    };
    let events = stream::iter(opening)
        .chain(
            stream::unfold(Some(relay), |relay| async move {
                let (events, next) = relay?.advance().await;
                Some((stream::iter(events), next))
            })
            .flatten(),
        )
        .map(Ok);
    Ok((
        Sse::from_stream(events).with_keep_alive(keep_alive),
        served_by,
    ))
}

/// What a client whose stream shutdown cut reads.
const SHUTDOWN_MESSAGE: &str = "the server is shutting down; the answer was cut short";

/// Resolves when shutdown requires the stream to end.
type ShutdownCut = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Dropping it (the client went away) drops the upstream connection and lets the recorder log
/// the disconnect.
struct Relay<F> {
    upstream: RoutedStream,
    first: Option<StreamEvent>,
    /// Taken when the call's row is written (the answer ended, one way or another).
    recorder: Option<CallRecorder>,
    format: F,
    must_end: ShutdownCut,
    /// The request's span: the stream is polled after the handler returned, outside it, and
    /// its failures must still be logged with the request id.
    span: tracing::Span,
    _in_flight: InFlight,
}

/// Counts a stream in the in-flight gauge for as long as it lives.
struct InFlight(prometheus::IntGauge);

impl InFlight {
    fn new(gauge: prometheus::IntGauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl<F: StreamFormat> Relay<F> {
    /// The next events, and the relay if more are to come. A panic while reading the upstream
    /// or writing an event ends the stream with an `internal_error` event (and row) instead of
    /// a dropped connection.
    async fn advance(mut self) -> (Vec<sse::Event>, Option<Self>) {
        match AssertUnwindSafe(self.step()).catch_unwind().await {
            Ok(Step::More(events)) => (events, Some(self)),
            Ok(Step::Done(events)) => (events, None),
            Err(payload) => {
                let text = crate::panics::panic_text(payload.as_ref());
                self.span
                    .in_scope(|| tracing::error!(panic = %text, "stream relay panicked"));
                let events = self
                    .fail(
                        ErrorCode::Internal,
                        "internal error; the request id identifies it in the server logs",
                    )
                    .await;
                crate::panics::drop_after_panic(self);
                (events, None)
            }
        }
    }

    async fn step(&mut self) -> Step {
        loop {
            let next = match self.first.take() {
                Some(event) => Some(Ok(RoutedEvent::Answer(event))),
                None => tokio::select! {
                    biased;
                    () = &mut self.must_end => {
                        return Step::Done(self.fail(ErrorCode::ServerShutdown, SHUTDOWN_MESSAGE).await);
                    }
                    next = self.upstream.next() => next,
                },
            };
            return match next {
                Some(Ok(RoutedEvent::Attempt(event))) => {
                    if let AttemptEvent::Started(start) = &event {
                        self.format.served_by(&start.destination);
                    }
                    if let Some(recorder) = &mut self.recorder {
                        recorder.note_attempt(event);
                    }
                    continue;
                }
                Some(Ok(RoutedEvent::Answer(StreamEvent::TextDelta(text)))) => {
                    if let Some(recorder) = &mut self.recorder {
                        recorder.note_delivered(&text);
                    }
                    Step::More(self.format.text(&text))
                }
                Some(Ok(RoutedEvent::Answer(StreamEvent::ToolCallDelta(delta)))) => {
                    if let Some(recorder) = &mut self.recorder {
                        recorder.note_delivered(delta.name.as_deref().unwrap_or(""));
                        recorder.note_delivered(&delta.arguments);
                    }
                    Step::More(self.format.tool_call(&delta))
                }
                Some(Ok(RoutedEvent::Answer(
                    event @ (StreamEvent::ReasoningDelta(_)
                    | StreamEvent::ReasoningSignature(_)
                    | StreamEvent::RedactedReasoning(_)),
                ))) => {
                    // Thinking is output the model produced (and the upstream bills), whether
                    // or not this door shows it: counted like text should the stream break.
                    if let (Some(recorder), StreamEvent::ReasoningDelta(text)) =
                        (&mut self.recorder, &event)
                    {
                        recorder.note_delivered(text);
                    }
                    Step::More(self.format.reasoning(&event))
                }
                Some(Ok(RoutedEvent::Answer(StreamEvent::Finished { finish_reason, .. }))) => {
                    match self.recorder.take() {
                        Some(recorder) => {
                            let settled = recorder.succeeded();
                            // The row is journaled before the final event: a client that saw
                            // the end of its answer has a row, whatever happens to the
                            // process next.
                            settled.journaled.durable().await;
                            Step::Done(self.format.finished(
                                &settled.usage,
                                &finish_reason,
                                &settled.cost,
                                settled.latency,
                            ))
                        }
                        None => Step::Done(Vec::new()),
                    }
                }
                Some(Err(StreamFailure { error, .. })) => {
                    Step::Done(self.fail(error.code(), &error.to_string()).await)
                }
                None => Step::Done(
                    self.fail(
                        ErrorCode::UpstreamError,
                        "the upstream ended the stream before the answer was complete",
                    )
                    .await,
                ),
            };
        }
    }

    /// Ends the call as failed with `code` (its row, once, journaled before the events that
    /// say so) and gives those events.
    async fn fail(&mut self, code: ErrorCode, message: &str) -> Vec<sse::Event> {
        self.span.in_scope(|| {
            tracing::warn!(%code, error_message = message, "stream failed after it began");
        });
        if let Some(recorder) = self.recorder.take() {
            recorder.failed(code).durable().await;
        }
        self.format.failed(code, message)
    }
}

/// What one step of the relay produced.
enum Step {
    /// Events to send, with more to come.
    More(Vec<sse::Event>),
    /// The last events.
    Done(Vec<sse::Event>),
}
