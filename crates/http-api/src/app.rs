use std::net::TcpListener;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use core_domain::ErrorCode;

use crate::auth::authenticate;
use crate::context::assign_request_id;
use crate::rate_limit::{limit_chat, limit_management};
use crate::{ApiError, AppState, ServerConfig, chat, health, openai, specialists, usage};

/// Registers every route and the body limits on `cfg`.
///
/// Middleware order (outermost first), as [`build_server`] installs it:
/// 1. request id: assigns the id, stamps `X-Request-Id` on every response and renders every
///    error (including those of the layers inside it) as the error JSON with that id, keeping
///    the headers inner layers set;
/// 2. per chat and management route (not `/health`, `/ready`): authentication, which admits
///    the caller (401 with `WWW-Authenticate`, or 403 for a disallowed domain) and records the
///    identity and role in the request context;
/// 3. then that route group's rate limiter, keyed by the identity (else the client address):
///    refuses with 429, or adds the rate-limit headers to the response;
/// 4. the handler, whose JSON body is limited to `max_body_bytes`.
pub fn configure(cfg: &mut web::ServiceConfig, state: AppState, config: &ServerConfig) {
    let json = web::JsonConfig::default()
        .limit(config.max_body_bytes)
        .error_handler(|error, _req| ApiError::from(error).into());
    let payload = web::PayloadConfig::default().limit(config.max_body_bytes);
    cfg.app_data(web::Data::new(state))
        .app_data(json)
        .app_data(payload)
        .service(resource("/health", web::get().to(health::health)))
        .service(resource("/ready", web::get().to(health::ready)))
        .service(
            resource("/chat/send", web::post().to(chat::send::send))
                .wrap(from_fn(limit_chat))
                .wrap(from_fn(authenticate)),
        )
        .service(
            resource("/chat/stream", web::post().to(chat::stream::stream))
                .wrap(from_fn(limit_chat))
                .wrap(from_fn(authenticate)),
        )
        .service(
            resource("/v1/chat/completions", web::post().to(openai::completions))
                .wrap(from_fn(limit_chat))
                .wrap(from_fn(authenticate)),
        )
        .service(
            resource("/v1/models", web::get().to(openai::list_models))
                .wrap(from_fn(limit_management))
                .wrap(from_fn(authenticate)),
        )
        .service(
            resource("/v1/models/{id}", web::get().to(openai::get_model))
                .wrap(from_fn(limit_management))
                .wrap(from_fn(authenticate)),
        )
        .service(
            resources(
                "/specialists",
                [
                    web::get().to(specialists::list),
                    web::post().to(specialists::create),
                ],
            )
            .wrap(from_fn(limit_management))
            .wrap(from_fn(authenticate)),
        )
        .service(
            resources(
                "/specialists/{id}",
                [
                    web::get().to(specialists::get),
                    web::put().to(specialists::replace),
                    web::patch().to(specialists::patch),
                    web::delete().to(specialists::delete),
                ],
            )
            .wrap(from_fn(limit_management))
            .wrap(from_fn(authenticate)),
        )
        .service(
            resource(
                "/specialists/{id}/duplicate",
                web::post().to(specialists::duplicate),
            )
            .wrap(from_fn(limit_management))
            .wrap(from_fn(authenticate)),
        )
        .service(
            resource("/usage/summary", web::get().to(usage::summary))
                .wrap(from_fn(limit_management))
                .wrap(from_fn(authenticate)),
        )
        .default_service(web::to(route_not_found));
}

/// A resource with one route, answering other methods with a 405 in the error JSON.
fn resource(path: &str, route: actix_web::Route) -> actix_web::Resource {
    resources(path, [route])
}

/// A resource with several routes (one per method), answering other methods with a 405.
fn resources<const N: usize>(path: &str, routes: [actix_web::Route; N]) -> actix_web::Resource {
    routes
        .into_iter()
        .fold(web::resource(path), actix_web::Resource::route)
        .default_service(web::to(method_not_allowed))
}

async fn route_not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        ErrorCode::NotFound,
        format!("no route for {} {}", req.method(), req.path()),
    ))
}

async fn method_not_allowed(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!("{} is not allowed on {}", req.method(), req.path()),
    ))
}

/// Builds the HTTP server on an already bound `listener` (so tests can bind port 0 and read the
/// port back). The returned server runs when awaited. It installs no signal handlers (the binary
/// decides what a signal means); a graceful stop gives in-flight requests
/// `shutdown_grace_seconds`.
pub fn build_server(
    listener: TcpListener,
    state: AppState,
    config: &ServerConfig,
) -> std::io::Result<Server> {
    let app_config = config.clone();
    let mut server = HttpServer::new(move || {
        let state = state.clone();
        let app_config = app_config.clone();
        App::new()
            .wrap(from_fn(assign_request_id))
            .configure(move |cfg| configure(cfg, state, &app_config))
    })
    .keep_alive(Duration::from_secs(config.keep_alive_seconds))
    .shutdown_timeout(config.shutdown_grace_seconds)
    // A client that closes its connection mid-request is gone: end the connection so the
    // handler is dropped, cancelling the upstream call (and logging it as a disconnect).
    .h1_allow_half_closed(false)
    .disable_signals();
    if config.workers > 0 {
        server = server.workers(config.workers);
    }
    Ok(server.listen(listener)?.run())
}
