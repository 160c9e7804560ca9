//! The OpenAPI document, generated from the handlers' annotations and the body types, with the
//! error responses they share declared once ([`responses`]).

pub(crate) mod responses;

use actix_web::HttpResponse;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use self::responses::SharedResponses;
use crate::anthropic::wire::AnthropicError;
use crate::openai::wire::OpenAiError;
use crate::views::ErrorEnvelope;
use crate::{anthropic, budget_routes, chat, health, openai, specialists, usage};

/// The API as OpenAPI 3.1.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "commander",
        description = "A multi-provider LLM chat gateway built around specialists. Errors outside \
                       /v1 are {\"error\": {\"code\", \"message\", \"request_id\", \"details\"?}}; \
                       under /v1 they take OpenAI's shape, and under /v1/messages Anthropic's \
                       ({\"type\": \"error\", \"error\": {\"type\", \"message\"}}). Every response carries X-Request-Id (the gateway's \
                       id for the call) and, when the caller sent its own id as X-Client-Request-Id \
                       or X-Request-Id, X-Client-Request-Id; \
                       rate-limited routes carry X-RateLimit-* and RateLimit headers."
    ),
    paths(
        health::health,
        health::ready,
        health::metrics,
        openapi_json,
        chat::send::send,
        chat::stream::stream,
        specialists::list,
        specialists::get,
        specialists::create,
        specialists::replace,
        specialists::patch,
        specialists::delete,
        specialists::duplicate,
        usage::summary,
        usage::targets,
        usage::list_calls,
        usage::call,
        budget_routes::list,
        budget_routes::get,
        budget_routes::create,
        budget_routes::replace,
        budget_routes::delete,
        openai::completions::completions,
        openai::responses::responses,
        openai::embeddings::embeddings,
        openai::models::list_models,
        openai::models::get_model,
        anthropic::messages::messages,
        anthropic::count_tokens::count_tokens,
    ),
    // The error shapes are named here because the shared responses refer to them by name.
    components(schemas(ErrorEnvelope, OpenAiError, AnthropicError)),
    modifiers(&BearerAuth, &SharedResponses),
    tags(
        (name = "chat", description = "Ask a specialist"),
        (name = "openai", description = "OpenAI-compatible: model = specialist id"),
        (name = "anthropic", description = "Anthropic Messages: model = specialist id or alias; key in x-api-key or Authorization: Bearer"),
        (name = "specialists", description = "The catalogue (changes: administrators)"),
        (name = "usage", description = "What calls cost"),
        (name = "budgets", description = "Spend limits per period (changes: administrators)"),
        (name = "operations", description = "Health, readiness, metrics, this document"),
    )
)]
pub struct ApiDoc;

/// Declares the `bearer` scheme the paths refer to: an API key or a JWT.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A commander API key or a JWT from the configured issuer; not needed when auth is disabled",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "x-api-key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "x-api-key",
                "A commander API key, as Anthropic's SDKs and Claude Code send it",
            ))),
        );
    }
}

/// `GET /openapi.json`: this document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object),
        responses::Open))]
pub(crate) async fn openapi_json() -> HttpResponse {
    match ApiDoc::openapi().to_json() {
        Ok(json) => HttpResponse::Ok()
            .content_type("application/json")
            .body(json),
        Err(e) => HttpResponse::InternalServerError().body(e.to_string()),
    }
}
