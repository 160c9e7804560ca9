use std::convert::Infallible;
use std::time::Duration;

use actix_web::web;
use actix_web_lab::sse::{self, Sse};
use core_domain::{ErrorCode, StreamEvent};
use futures_util::{Stream, StreamExt, stream};
use providers::{EventStream, ProviderError};
use serde::Serialize;
use serde_json::json;

use crate::chat::send::millis;
use crate::chat::{CallRecorder, ChatRequestBody, PreparedCall, prepare};
use crate::{ApiError, AppState, RequestContext};

/// One `event: message` of `POST /chat/stream`: the original service's chunk shape. Token
/// counts, cost and latency are filled on the final chunk only.
#[derive(Debug, Serialize)]
struct StreamChunk<'a> {
    content: &'a str,
    is_final: bool,
    input_tokens: Option<u32>,
    output_tokens: Option<u32>,
    model: &'a str,
    latency_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    estimated_cost_usd: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    finish_reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
}

/// `POST /chat/stream`: the answer as server-sent events, forwarded as the upstream sends it.
///
/// The response is committed only once the upstream's first event is in hand, so anything that
/// fails before then — including an upstream that errors at once — is an ordinary HTTP error.
pub(crate) async fn stream(
    state: web::Data<AppState>,
    context: RequestContext,
    body: web::Json<ChatRequestBody>,
) -> Result<Sse<impl Stream<Item = Result<sse::Event, Infallible>>>, ApiError> {
    let PreparedCall {
        specialist,
        provider,
        request,
        recorder,
    } = prepare(&state, &context, body.into_inner(), true)?;
    let started = provider.stream(&request).await;
    let mut upstream = match started {
        Ok(upstream) => upstream,
        Err(error) => return Err(fail_before_start(recorder, error)),
    };
    let first = match upstream.next().await {
        Some(Ok(event)) => event,
        Some(Err(error)) => return Err(fail_before_start(recorder, error)),
        None => {
            return Err(fail_before_start(
                recorder,
                ProviderError::Upstream {
                    status: None,
                    message: "the upstream ended the stream without an answer".to_owned(),
                },
            ));
        }
    };

    let relay = Relay {
        upstream,
        first: Some(first),
        recorder,
        model: specialist.model().to_owned(),
        request_id: context.request_id.to_string(),
    };
    let events = stream::unfold(Some(relay), |relay| async move {
        let relay = relay?;
        let (event, next) = relay.step().await;
        Some((Ok(event), next))
    });
    Ok(Sse::from_stream(events)
        .with_keep_alive(Duration::from_secs(state.sse_keep_alive_seconds.max(1))))
}

fn fail_before_start(recorder: CallRecorder, error: ProviderError) -> ApiError {
    let consumed = recorder.consumed_on_failure(&error);
    recorder.failed(error.code(), consumed);
    error.into()
}

/// Carries one upstream stream to the client. Dropping it (the client went away) drops the
/// upstream connection and lets the recorder log the disconnect.
struct Relay {
    upstream: EventStream,
    first: Option<StreamEvent>,
    recorder: CallRecorder,
    model: String,
    request_id: String,
}

impl Relay {
    /// The next SSE event, and the relay if more are to come.
    async fn step(mut self) -> (sse::Event, Option<Self>) {
        let next = match self.first.take() {
            Some(event) => Some(Ok(event)),
            None => self.upstream.next().await,
        };
        match next {
            Some(Ok(StreamEvent::TextDelta(text))) => {
                self.recorder.note_delivered(&text);
                let event = chunk_event(&StreamChunk {
                    content: &text,
                    is_final: false,
                    input_tokens: None,
                    output_tokens: None,
                    model: &self.model,
                    latency_ms: None,
                    estimated_cost_usd: None,
                    finish_reason: None,
                    request_id: None,
                });
                (event, Some(self))
            }
            Some(Ok(StreamEvent::Finished {
                usage,
                finish_reason,
                ..
            })) => {
                let Self {
                    recorder,
                    model,
                    request_id,
                    ..
                } = self;
                let (estimate, latency) = recorder.succeeded(usage);
                let event = chunk_event(&StreamChunk {
                    content: "",
                    is_final: true,
                    input_tokens: Some(usage.input_tokens),
                    output_tokens: Some(usage.output_tokens),
                    model: &model,
                    latency_ms: Some(millis(latency)),
                    estimated_cost_usd: Some(estimate.cost.as_dollars()),
                    finish_reason: Some(finish_reason.as_str()),
                    request_id: Some(&request_id),
                });
                (event, None)
            }
            Some(Err(error)) => (self.fail(error.code(), &error.to_string()), None),
            None => (
                self.fail(
                    ErrorCode::UpstreamError,
                    "the upstream ended the stream before the answer was complete",
                ),
                None,
            ),
        }
    }

    fn fail(self, code: ErrorCode, message: &str) -> sse::Event {
        tracing::warn!(request_id = %self.request_id, %code, message, "stream failed after it began");
        let consumed = self.recorder.consumed_so_far();
        self.recorder.failed(code, consumed);
        error_event(code, message)
    }
}

fn chunk_event(chunk: &StreamChunk<'_>) -> sse::Event {
    match sse::Data::new_json(chunk) {
        Ok(data) => data.event("message").into(),
        Err(e) => error_event(ErrorCode::Internal, &format!("cannot encode a chunk: {e}")),
    }
}

fn error_event(code: ErrorCode, message: &str) -> sse::Event {
    sse::Data::new(json!({"code": code, "message": message}).to_string())
        .event("error")
        .into()
}
