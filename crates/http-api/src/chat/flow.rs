use std::sync::Arc;

use core_domain::{ErrorCode, Specialist};
use providers::{ChatProvider, ProviderRequest};

use crate::chat::{CallRecorder, ChatRequestBody};
use crate::{ApiError, AppState, RequestContext};

/// A chat call ready to go: its specialist (as it is now), provider, request, and the recorder
/// that will write its one usage row.
pub(crate) struct PreparedCall {
    pub specialist: Arc<Specialist>,
    pub provider: Arc<dyn ChatProvider>,
    pub request: ProviderRequest,
    pub recorder: CallRecorder,
}

/// Validates the body, finds the specialist and its provider. Refusals before the specialist is
/// known (400, 422, 404) leave no usage row; from the specialist on, every outcome does.
pub(crate) fn prepare(
    state: &AppState,
    context: &RequestContext,
    body: ChatRequestBody,
    streamed: bool,
) -> Result<PreparedCall, ApiError> {
    let input = body.validate(&state.chat_limits)?;
    let specialist = state.catalogue.get(&input.specialist_id).ok_or_else(|| {
        ApiError::new(
            ErrorCode::SpecialistNotFound,
            format!("no specialist with id '{}'", input.specialist_id),
        )
    })?;
    let request = ProviderRequest::for_specialist(&specialist, input.history, input.message);
    let recorder = CallRecorder::start(
        &state.usage,
        &state.prices,
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
