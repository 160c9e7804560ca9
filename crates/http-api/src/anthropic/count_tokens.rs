use actix_web::{HttpRequest, HttpResponse, web};
use core_domain::{Door, ProviderKind, estimate_text_tokens};
use providers::ProviderRequest;

use super::messages::beta;
use super::request::{self, MessagesRequest, Purpose};
use super::wire::TokenCount;
use crate::openapi::responses::AnthropicCount;
use crate::{ApiError, AppState};

/// `POST /v1/messages/count_tokens`: how many input tokens the request would take, the
/// specialist's prompt included — for a specialist on Anthropic, its upstream's own count
/// (Anthropic's `count_tokens`, exact); otherwise commander's estimate (four characters to a
/// token, the tools' definitions included). Costs nothing, so it leaves no usage row; it is
/// authenticated and rate limited as any chat request.
#[utoipa::path(post, path = "/v1/messages/count_tokens", tag = "anthropic", request_body = MessagesRequest,
    responses(
        (status = 200, description = "The prompt's input tokens", body = TokenCount),
        AnthropicCount),
    security((), ("bearer" = []), ("x-api-key" = [])))]
pub(crate) async fn count_tokens(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let parsed = request::parse(&body, beta(&req), Purpose::CountTokens, &state.chat_limits)?;
    let specialist = crate::chat::resolve_model(&state, &parsed.model)?;
    crate::chat::chat_only(&specialist, Door::Messages)?;
    parsed.check_for(&specialist)?;
    let request = parsed.into_request(&specialist);
    let input_tokens = if specialist.provider() == ProviderKind::Anthropic {
        state.providers.count_tokens(&specialist, &request).await?
    } else {
        estimate(&request)
    };
    Ok(HttpResponse::Ok().json(TokenCount { input_tokens }))
}

/// Commander's estimate of `request`'s input tokens: its prompt's, and its tools'.
fn estimate(request: &ProviderRequest) -> u32 {
    let tools: u32 = request
        .options
        .tools
        .iter()
        .map(|tool| {
            estimate_text_tokens(&tool.name)
                .saturating_add(estimate_text_tokens(
                    tool.description.as_deref().unwrap_or(""),
                ))
                .saturating_add(estimate_text_tokens(&tool.parameters.to_string()))
        })
        .fold(0, u32::saturating_add);
    request.prompt_estimate().saturating_add(tools)
}
