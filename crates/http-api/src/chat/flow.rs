use std::sync::Arc;

use core_domain::{Specialist, SpecialistId};
use providers::{ChatProvider, ProviderRequest};

use crate::chat::{CallRecorder, ChatRequestBody};
use crate::{ApiCode, ApiError, AppState, RequestContext};

/// A chat call ready to go: its specialist (as it is now), provider, request, and the recorder
/// that will write its one usage row.
pub(crate) struct PreparedCall {
    pub specialist: Arc<Specialist>,
    pub provider: Arc<dyn ChatProvider>,
    pub request: ProviderRequest,
    pub recorder: CallRecorder,
}

/// `/chat/*`: validates the body, then [`prepare_for`].
pub(crate) fn prepare(
    state: &AppState,
    context: &RequestContext,
    body: ChatRequestBody,
    streamed: bool,
) -> Result<PreparedCall, ApiError> {
    let input = body.validate(&state.chat_limits)?;
    prepare_for(
        state,
        context,
        &input.specialist_id,
        streamed,
        |specialist| ProviderRequest::for_specialist(specialist, input.history, input.message),
    )
}

/// Finds the specialist and its provider and builds the request with `build`. Refusals before
/// the specialist is known (404) leave no usage row; from the specialist on, every outcome
/// does.
pub(crate) fn prepare_for(
    state: &AppState,
    context: &RequestContext,
    specialist_id: &SpecialistId,
    streamed: bool,
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
    let recorder = CallRecorder::start(
        state,
        &specialist,
        context,
        request.prompt_estimate(),
        streamed,
    );
    match state.providers.provider_for(&specialist) {
        Ok(provider) => Ok(PreparedCall {
            specialist,
            provider,
            request,
            recorder,
        }),
        Err(error) => {
            recorder.failed(error.code(), Default::default());
            Err(error.into())
        }
    }
}
