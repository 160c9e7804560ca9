//! The one call path: a chat call prepared once, then made whole or streamed.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use actix_web_lab::sse::{self, Sse};
use core_domain::{Completion, NotAllowed, Specialist, SpecialistId, ValidationErrors};
use futures_util::Stream;
use pricing::CostEstimate;
use providers::{ChatProvider, ProviderError, ProviderRequest};

use crate::chat::relay::{self, StreamFormat};
use crate::chat::{CallRecorder, ChatRequestBody};
use crate::{ApiCode, ApiError, AppState, RequestContext};

/// A chat call ready to go: its specialist (as it is now), provider, request, and the recorder
/// that will write its one usage row. [`PreparedCall::complete`] or [`PreparedCall::stream`]
/// makes the call and does all of its recording (price, metrics, usage row, the live-call
/// guard), so a route only maps its wire format.
pub(crate) struct PreparedCall {
    specialist: Arc<Specialist>,
    /// The specialist's provider, or why it cannot be called (not configured): the refusal is
    /// recorded, as streamed or not, when the call is made.
    provider: Result<Arc<dyn ChatProvider>, ProviderError>,
    request: ProviderRequest,
    recorder: CallRecorder,
}

/// A whole answer, priced.
pub(crate) struct Answer {
    /// The specialist that answered, as it was when the call was prepared.
    pub specialist: Arc<Specialist>,
    /// The upstream's answer.
    pub completion: Completion,
    /// What it cost.
    pub cost: CostEstimate,
    /// From the request's arrival to the answer.
    pub latency: Duration,
}

/// `/chat/*`: validates the body, then [`prepare_for`].
pub(crate) fn prepare(
    state: &AppState,
    context: &RequestContext,
    body: ChatRequestBody,
) -> Result<PreparedCall, ApiError> {
    let input = body.validate(&state.chat_limits)?;
    prepare_for(state, context, &input.specialist_id, |specialist| {
        ProviderRequest::for_specialist(specialist, input.history, input.message)
    })
}

/// Finds the specialist and its provider and builds the request with `build`. Refusals before
/// the call (404, a parameter the provider cannot honour) leave no usage row; from then on,
/// every outcome does.
pub(crate) fn prepare_for(
    state: &AppState,
    context: &RequestContext,
    specialist_id: &SpecialistId,
    build: impl FnOnce(&Specialist) -> ProviderRequest,
) -> Result<PreparedCall, ApiError> {
    let specialist = state.catalogue.get(specialist_id).ok_or_else(|| {
        ApiError::new(
            ApiCode::SpecialistNotFound,
            format!("no specialist with id '{specialist_id}'"),
        )
    })?;
    tracing::Span::current()
        .record("specialist", specialist.id().as_str())
        .record("provider", specialist.provider().as_str());
    let request = build(&specialist);
    // What the specialist turned off is refused first, whatever its provider could do.
    if let Some(not_allowed) = specialist.first_not_allowed(&request.options, &request.messages) {
        return Err(not_allowed_by(&specialist, not_allowed));
    }
    let provider = state.providers.provider_for(&specialist);
    // What the provider cannot honour is refused before anything is called or recorded, like
    // any invalid request.
    if let Ok(provider) = &provider {
        provider.check_request(&request)?;
    }
    let recorder = CallRecorder::start(state, &specialist, context, &request);
    Ok(PreparedCall {
        specialist,
        provider,
        request,
        recorder,
    })
}

/// The 400 `unsupported_parameter` for a request asking `specialist` for what it turned off,
/// naming the parameter.
fn not_allowed_by(specialist: &Specialist, not_allowed: NotAllowed) -> ApiError {
    let mut details = ValidationErrors::new();
    details.push(
        not_allowed.param,
        format!(
            "the specialist '{}' does not allow {}",
            specialist.id(),
            not_allowed.what
        ),
    );
    ApiError::unsupported(details)
}

impl PreparedCall {
    /// The specialist called, as it was when the call was prepared.
    pub(crate) fn specialist(&self) -> &Arc<Specialist> {
        &self.specialist
    }

    /// Asks for the whole answer. A failure is recorded with what it consumed and returned as
    /// the error to answer with.
    pub(crate) async fn complete(self) -> Result<Answer, ApiError> {
        let Self {
            specialist,
            provider,
            request,
            recorder,
        } = self;
        let (recorder, provider) = recorder.begin(provider, false).await?;
        match provider.complete(&request).await {
            Ok(completion) => {
                let settled = recorder.succeeded(completion.usage);
                settled.journaled.durable().await;
                Ok(Answer {
                    specialist,
                    completion,
                    cost: settled.cost,
                    latency: settled.latency,
                })
            }
            Err(error) => {
                let consumed = error.consumed(recorder.prompt_estimate());
                recorder.failed(error.code(), consumed).durable().await;
                Err(error.into())
            }
        }
    }

    /// Asks for the answer as a stream, written by `format` (see [`relay::relay`]).
    pub(crate) async fn stream<F: StreamFormat>(
        self,
        state: &AppState,
        format: F,
    ) -> Result<Sse<impl Stream<Item = Result<sse::Event, Infallible>> + use<F>>, ApiError> {
        let Self {
            provider,
            request,
            recorder,
            ..
        } = self;
        let (recorder, provider) = recorder.begin(provider, true).await?;
        relay::relay(state, provider, request, recorder, format).await
    }
}
