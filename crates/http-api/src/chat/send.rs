use actix_web::{HttpResponse, web};
use core_domain::{ErrorCode, ProviderKind, estimate_prompt_tokens};
use providers::ProviderRequest;
use serde::Serialize;

use crate::chat::{CallRecorder, ChatRequestBody, consumed_on_failure};
use crate::{ApiError, AppState, RequestContext};

/// The answer of `POST /chat/send`: the original service's fields, plus `request_id` and
/// `finish_reason`.
#[derive(Debug, Serialize)]
struct ChatResponse<'a> {
    content: String,
    specialist_id: &'a str,
    specialist_name: &'a str,
    provider: ProviderKind,
    model: &'a str,
    input_tokens: u32,
    output_tokens: u32,
    estimated_cost_usd: f64,
    latency_ms: f64,
    request_id: &'a str,
    finish_reason: &'a str,
}

/// `POST /chat/send`: ask a specialist and get the whole answer.
pub(crate) async fn send(
    state: web::Data<AppState>,
    context: RequestContext,
    body: web::Json<ChatRequestBody>,
) -> Result<HttpResponse, ApiError> {
    let input = body.into_inner().validate(&state.chat_limits)?;
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
        &context,
        estimate_prompt_tokens(&request.system_prompt, &request.messages),
        false,
    );

    let provider = match state.providers.provider_for(&specialist) {
        Ok(provider) => provider,
        Err(error) => {
            recorder.failed(error.code(), Default::default());
            return Err(error.into());
        }
    };
    let completion = match provider.complete(&request).await {
        Ok(completion) => completion,
        Err(error) => {
            let consumed = consumed_on_failure(&error, recorder.estimated_input_tokens());
            recorder.failed(error.code(), consumed);
            return Err(error.into());
        }
    };

    let (estimate, latency) = recorder.succeeded(completion.usage, None);
    Ok(HttpResponse::Ok().json(ChatResponse {
        specialist_id: specialist.id().as_str(),
        specialist_name: specialist.name(),
        provider: specialist.provider(),
        model: specialist.model(),
        input_tokens: completion.usage.input_tokens,
        output_tokens: completion.usage.output_tokens,
        estimated_cost_usd: estimate.cost.as_dollars(),
        latency_ms: (latency.as_secs_f64() * 1e6).round() / 1e3,
        request_id: context.request_id.as_str(),
        finish_reason: completion.finish_reason.as_str(),
        content: completion.content,
    }))
}
