//! Carrying an upstream stream to the client as server-sent events, in whichever format the
//! route speaks, with exactly one usage row however it ends.

use std::convert::Infallible;
use std::time::Duration;

use actix_web_lab::sse::{self, Sse};
use core_domain::{ErrorCode, FinishReason, StreamEvent, TokenUsage};
use futures_util::{Stream, StreamExt, stream};
use pricing::CostEstimate;
use providers::{EventStream, ProviderError};

use crate::ApiError;
use crate::chat::{CallRecorder, PreparedCall};

/// How a route writes a stream's events.
pub(crate) trait StreamFormat: Send + 'static {
    /// Events before any text.
    fn opening(&self) -> Vec<sse::Event>;
    /// One piece of text.
    fn delta(&self, text: &str) -> sse::Event;
    /// The end of a successful answer.
    fn finished(
        &self,
        usage: &TokenUsage,
        finish_reason: &FinishReason,
        cost: &CostEstimate,
        latency: Duration,
    ) -> Vec<sse::Event>;
    /// The end of an answer that failed after it began.
    fn failed(&self, code: ErrorCode, message: &str) -> Vec<sse::Event>;
}

/// Starts the upstream stream and waits briefly for its first event before committing the
/// response, so anything that fails before then — an upstream that refuses the call, cannot be
/// reached, or errors at once — is an ordinary HTTP error (with its usage row).
///
/// The wait is bounded by `keep_alive`, from the moment the upstream call starts (connecting,
/// retries and the upstream's response headers included): a model that thinks for a minute
/// before its first token, or an upstream being retried, must not leave the client (and every
/// proxy between) without a byte for that long. After one keep-alive interval the response
/// starts and keep-alive comments flow; a failure after that is an `error` event like any other
/// mid-stream failure.
pub(crate) async fn relay(
    in_flight: prometheus::IntGauge,
    call: PreparedCall,
    format: impl StreamFormat,
    keep_alive: Duration,
) -> Result<Sse<impl Stream<Item = Result<sse::Event, Infallible>>>, ApiError> {
    let PreparedCall {
        provider,
        request,
        mut recorder,
        ..
    } = call;
    recorder.upstream_started();
    // Starting the stream is its first step, so the keep-alive bound covers it too; a failure
    // to start is the stream's first (and only) item.
    let mut upstream: EventStream = Box::pin(
        stream::once(async move { provider.stream(&request).await }).flat_map(|started| {
            match started {
                Ok(events) => events,
                Err(error) => Box::pin(stream::iter([Err(error)])),
            }
        }),
    );
    // `next()` is cancel-safe: on a timeout the event, when it comes, is read by the relay.
    let peek = async {
        loop {
            match upstream.next().await {
                Some(Ok(StreamEvent::UsageSoFar(usage))) => recorder.note_usage_so_far(usage),
                other => return other,
            }
        }
    };
    let first = match tokio::time::timeout(keep_alive, peek).await {
        Ok(Some(Ok(event))) => Some(event),
        Ok(Some(Err(error))) => return Err(fail_before_start(recorder, error)),
        Ok(None) => {
            return Err(fail_before_start(
                recorder,
                ProviderError::Upstream {
                    status: None,
                    message: "the upstream ended the stream without an answer".to_owned(),
                },
            ));
        }
        Err(_still_thinking) => None,
    };
    let opening = format.opening();
    let relay = Relay {
        upstream,
        first,
        recorder,
        format,
        _in_flight: InFlight::new(in_flight),
    };
    let events = stream::iter(opening)
        .chain(
            stream::unfold(Some(relay), |relay| async move {
                let (events, next) = relay?.step().await;
                Some((stream::iter(events), next))
            })
            .flatten(),
        )
        .map(Ok);
    Ok(Sse::from_stream(events).with_keep_alive(keep_alive))
}

fn fail_before_start(recorder: CallRecorder, error: ProviderError) -> ApiError {
    let consumed = recorder.consumed_on_failure(&error);
    recorder.failed(error.code(), consumed);
    error.into()
}

/// Dropping it (the client went away) drops the upstream connection and lets the recorder log
/// the disconnect.
struct Relay<F> {
    upstream: EventStream,
    first: Option<StreamEvent>,
    recorder: CallRecorder,
    format: F,
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
    /// The next events, and the relay if more are to come.
    async fn step(mut self) -> (Vec<sse::Event>, Option<Self>) {
        let next = match self.first.take() {
            Some(event) => Some(Ok(event)),
            None => self.upstream.next().await,
        };
        match next {
            Some(Ok(StreamEvent::UsageSoFar(usage))) => {
                // The error follows; nothing to send yet.
                self.recorder.note_usage_so_far(usage);
                (Vec::new(), Some(self))
            }
            Some(Ok(StreamEvent::TextDelta(text))) => {
                self.recorder.note_delivered(&text);
                let event = self.format.delta(&text);
                (vec![event], Some(self))
            }
            Some(Ok(StreamEvent::Finished {
                usage,
                finish_reason,
                ..
            })) => {
                let (cost, latency) = self.recorder.succeeded(usage);
                (
                    self.format.finished(&usage, &finish_reason, &cost, latency),
                    None,
                )
            }
            Some(Err(error)) => {
                let consumed = self.recorder.consumed_on_failure(&error);
                (self.fail(error.code(), &error.to_string(), consumed), None)
            }
            None => {
                let consumed = self.recorder.consumed_so_far();
                (
                    self.fail(
                        ErrorCode::UpstreamError,
                        "the upstream ended the stream before the answer was complete",
                        consumed,
                    ),
                    None,
                )
            }
        }
    }

    fn fail(self, code: ErrorCode, message: &str, consumed: TokenUsage) -> Vec<sse::Event> {
        tracing::warn!(%code, message, "stream failed after it began");
        self.recorder.failed(code, consumed);
        self.format.failed(code, message)
    }
}
