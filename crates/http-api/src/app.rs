use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_cors::Cors;
use actix_web::dev::Server;
use actix_web::http::Method;
use actix_web::http::header;
use actix_web::middleware::{Condition, from_fn};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, Route, web};

use crate::admission::admit;
use crate::error::ErrorShape;
use crate::perimeter::{Perimeter, guard_perimeter};
use crate::request_scope::request_scope;
use crate::{
    ApiCode, ApiError, AppState, RouteGroup, ServerConfig, anthropic, budget_routes, chat, console,
    health, openai, openapi, specialists, usage,
};

/// Registers every route and the body limits on `cfg`.
///
/// Middleware order (outermost first), as [`build_server`] installs it:
/// 1. the request scope (`request_scope.rs`): assigns the request id and context, stamps
///    `X-Request-Id` on every response, renders every error (including those of the layers
///    inside it) in the shape the route table's door for the path declares (native with the
///    id, or OpenAI's under `/v1/`), keeping the headers inner layers set (and a connection
///    close they asked for), and logs and accounts for the request;
/// 2. the perimeter (`perimeter/`), for every route: refuses a connection over its
///    address's cap (429, closed), a `Host` that is not this server's while auth is disabled
///    (421; `/health` and `/ready` exempt), a state-changing request from a foreign web origin
///    (403) or with a form or text body (415); puts the body-read deadline on the payload
///    (408, closed), and closes a connection whose body had not ended by the response;
/// 3. CORS, which answers preflights for the configured origins;
/// 4. per chat and management route (not `/health`, `/ready`, `/metrics`, `/openapi.json`):
///    admission (`admission.rs`), one step: verifies the credentials, counts the request
///    against the route group's bucket (the verified user's, else the client address's, an
///    IPv6 one by its /64, so refused credentials are counted too), then refuses (429 with
///    `Retry-After` once the bucket is spent, else 401 with `WWW-Authenticate` or 403 for a
///    disallowed domain) or records the identity and role in the request context and
///    proceeds; every answer carries the rate-limit headers;
/// 5. the handler, whose JSON body is limited to `max_body_bytes`.
///
/// Every GET route also answers HEAD (the same handler; actix sends the headers without the
/// body), so HEAD is not listed in the route table or the API document.
pub fn configure(cfg: &mut web::ServiceConfig, state: AppState, config: &ServerConfig) {
    let json = web::JsonConfig::default()
        .limit(config.max_body_bytes)
        .error_handler(|error, _req| ApiError::from(error).into());
    let payload = web::PayloadConfig::default().limit(config.max_body_bytes);
    cfg.app_data(web::Data::new(state))
        .app_data(json)
        .app_data(payload);
    // One resource per path, with a route per method; paths keep the table's order.
    let mut paths: Vec<&'static str> = Vec::new();
    for endpoint in endpoints() {
        if !paths.contains(&endpoint.path) {
            paths.push(endpoint.path);
        }
    }
    for path in paths {
        let endpoints: Vec<&Endpoint> = endpoints().filter(|e| e.path == path).collect();
        let resource = endpoints
            .iter()
            .fold(web::resource(path), |resource, e| {
                let resource = resource.route((e.route)().method(e.method.clone()));
                if e.method == Method::GET {
                    resource.route((e.route)().method(Method::HEAD))
                } else {
                    resource
                }
            })
            .default_service(web::to(method_not_allowed));
        match endpoints[0].guard.route_group() {
            None => cfg.service(resource),
            Some(group) => {
                cfg.service(resource.wrap(from_fn(move |req, next| admit(group, req, next))))
            }
        };
    }
    if config.console.enabled {
        match console::SessionKeys::new(
            config.console.session_secret.as_deref(),
            config.console.session_minutes,
        ) {
            Ok(keys) => console::configure(cfg, console::Console { keys }, config.max_body_bytes),
            // `ConsoleConfig::validate` refuses this at start; a library caller that skipped
            // it gets no console rather than one with a key it did not choose.
            Err(problem) => tracing::error!(%problem, "the console is off"),
        }
    }
    cfg.default_service(web::to(route_not_found));
}

/// What stands between a caller and an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Guard {
    /// Nothing: health, readiness, metrics, the API document.
    Open,
    /// Admission against the chat rate limit.
    Chat,
    /// Admission against the management rate limit.
    Management,
}

impl Guard {
    /// The rate limit admission counts against, if the route is admitted at all.
    fn route_group(self) -> Option<RouteGroup> {
        match self {
            Self::Open => None,
            Self::Chat => Some(RouteGroup::Chat),
            Self::Management => Some(RouteGroup::Management),
        }
    }
}

/// A door of the API: the paths starting with `prefix`, the shape of error their callers
/// expect, and the endpoints behind it.
struct Door {
    prefix: &'static str,
    errors: ErrorShape,
    endpoints: &'static [Endpoint],
}

/// The API's doors, most specific first. A path belongs to the first door whose prefix it
/// starts with, so a path no endpoint serves (404, 405) still gets its errors in the shape of
/// the door it was meant for: an OpenAI SDK reads an unknown `/v1/...` route's 404 too.
const DOORS: &[Door] = &[
    Door {
        prefix: "/v1/messages",
        errors: ErrorShape::Anthropic,
        endpoints: ANTHROPIC_ENDPOINTS,
    },
    Door {
        prefix: "/v1/",
        errors: ErrorShape::OpenAi,
        endpoints: OPENAI_ENDPOINTS,
    },
    Door {
        prefix: "/",
        errors: ErrorShape::Native,
        endpoints: NATIVE_ENDPOINTS,
    },
];

/// The shape errors on `path` are rendered in: its door's.
pub(crate) fn error_shape(path: &str) -> ErrorShape {
    DOORS
        .iter()
        .find(|door| path.starts_with(door.prefix))
        .map_or(ErrorShape::Native, |door| door.errors)
}

/// Every endpoint, door by door.
fn endpoints() -> impl Iterator<Item = &'static Endpoint> {
    DOORS.iter().flat_map(|door| door.endpoints.iter())
}

/// One route: path, method, handler, guard. Every path's endpoints share one guard.
struct Endpoint {
    path: &'static str,
    method: Method,
    route: fn() -> Route,
    guard: Guard,
}

/// The OpenAI-compatible routes, for OpenAI's SDKs.
const OPENAI_ENDPOINTS: &[Endpoint] = &[
    Endpoint {
        path: "/v1/chat/completions",
        method: Method::POST,
        route: || web::route().to(openai::completions),
        guard: Guard::Chat,
    },
    Endpoint {
        path: "/v1/responses",
        method: Method::POST,
        route: || web::route().to(openai::responses),
        guard: Guard::Chat,
    },
    Endpoint {
        path: "/v1/embeddings",
        method: Method::POST,
        route: || web::route().to(openai::embeddings),
        guard: Guard::Chat,
    },
    Endpoint {
        path: "/v1/models",
        method: Method::GET,
        route: || web::route().to(openai::list_models),
        guard: Guard::Management,
    },
    Endpoint {
        path: "/v1/models/{id}",
        method: Method::GET,
        route: || web::route().to(openai::get_model),
        guard: Guard::Management,
    },
];

/// The Anthropic Messages routes, for Anthropic's SDKs and Claude Code.
const ANTHROPIC_ENDPOINTS: &[Endpoint] = &[
    Endpoint {
        path: "/v1/messages",
        method: Method::POST,
        route: || web::route().to(anthropic::messages),
        guard: Guard::Chat,
    },
    Endpoint {
        path: "/v1/messages/count_tokens",
        method: Method::POST,
        route: || web::route().to(anthropic::count_tokens),
        guard: Guard::Chat,
    },
];

/// commander's own routes. With [`OPENAI_ENDPOINTS`], every route the server serves: registered
/// from these tables, and checked against the OpenAPI document by a test, so neither can leave
/// a route out.
const NATIVE_ENDPOINTS: &[Endpoint] = &[
    Endpoint {
        path: "/health",
        method: Method::GET,
        route: || web::route().to(health::health),
        guard: Guard::Open,
    },
    Endpoint {
        path: "/ready",
        method: Method::GET,
        route: || web::route().to(health::ready),
        guard: Guard::Open,
    },
    Endpoint {
        path: "/metrics",
        method: Method::GET,
        route: || web::route().to(health::metrics),
        guard: Guard::Open,
    },
    Endpoint {
        path: "/openapi.json",
        method: Method::GET,
        route: || web::route().to(openapi::openapi_json),
        guard: Guard::Open,
    },
    Endpoint {
        path: "/chat/send",
        method: Method::POST,
        route: || web::route().to(chat::send::send),
        guard: Guard::Chat,
    },
    Endpoint {
        path: "/chat/stream",
        method: Method::POST,
        route: || web::route().to(chat::stream::stream),
        guard: Guard::Chat,
    },
    Endpoint {
        path: "/specialists",
        method: Method::GET,
        route: || web::route().to(specialists::list),
        guard: Guard::Management,
    },
    Endpoint {
        path: "/specialists",
        method: Method::POST,
        route: || web::route().to(specialists::create),
        guard: Guard::Management,
    },
    Endpoint {
        path: "/specialists/{id}",
        method: Method::GET,
        route: || web::route().to(specialists::get),
        guard: Guard::Management,
    },
    Endpoint {
        path: "/specialists/{id}",
        method: Method::PUT,
        route: || web::route().to(specialists::replace),
        guard: Guard::Management,
    },
    Endpoint {
        path: "/specialists/{id}",
        method: Method::PATCH,
        route: || web::route().to(specialists::patch),
        guard: Guard::Management,
    },
    Endpoint {
        path: "/specialists/{id}",
        method: Method::DELETE,
        route: || web::route().to(specialists::delete),
        guard: Guard::Management,
    },
    Endpoint {
        path: "/specialists/{id}/duplicate",
        method: Method::POST,
        route: || web::route().to(specialists::duplicate),
        guard: Guard::Management,
    },
    Endpoint {
        path: "/usage/summary",
        method: Method::GET,
        route: || web::route().to(usage::summary),
        guard: Guard::Management,
    },
    Endpoint {
        path: "/usage/targets",
        method: Method::GET,
        route: || web::route().to(usage::targets),
        guard: Guard::Management,
    },
    Endpoint {
        path: "/usage/calls",
        method: Method::GET,
        route: || web::route().to(usage::list_calls),
        guard: Guard::Management,
    },
    Endpoint {
        path: "/usage/calls/{request_id}",
        method: Method::GET,
        route: || web::route().to(usage::call),
        guard: Guard::Management,
    },
    Endpoint {
        path: "/budgets",
        method: Method::GET,
        route: || web::route().to(budget_routes::list),
        guard: Guard::Management,
    },
    Endpoint {
        path: "/budgets",
        method: Method::POST,
        route: || web::route().to(budget_routes::create),
        guard: Guard::Management,
    },
    Endpoint {
        path: "/budgets/{id}",
        method: Method::GET,
        route: || web::route().to(budget_routes::get),
        guard: Guard::Management,
    },
    Endpoint {
        path: "/budgets/{id}",
        method: Method::PUT,
        route: || web::route().to(budget_routes::replace),
        guard: Guard::Management,
    },
    Endpoint {
        path: "/budgets/{id}",
        method: Method::DELETE,
        route: || web::route().to(budget_routes::delete),
        guard: Guard::Management,
    },
];

/// Every (path, method) the server serves.
pub fn routes() -> impl Iterator<Item = (&'static str, &'static Method)> {
    endpoints().map(|e| (e.path, &e.method))
}

async fn route_not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        ApiCode::NotFound,
        format!("no route for {} {}", req.method(), req.path()),
    ))
}

async fn method_not_allowed(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        ApiCode::MethodNotAllowed,
        format!("{} is not allowed on {}", req.method(), req.path()),
    ))
}

/// Cross-origin access for the listed browser origins: preflights answered (before auth and
/// rate limits, which a preflight never carries credentials for), and the headers a front end
/// needs exposed. With no origins listed the middleware is off and browsers keep to the same
/// origin.
fn cors(origins: &[String]) -> Cors {
    let cors = origins.iter().fold(Cors::default(), |cors, origin| {
        cors.allowed_origin(origin.trim_end_matches('/'))
    });
    cors.allowed_methods(["GET", "POST", "PUT", "PATCH", "DELETE"])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_MATCH,
            header::HeaderName::from_static("x-request-id"),
            header::HeaderName::from_static("x-client-request-id"),
            // What Anthropic's SDKs send from a browser.
            header::HeaderName::from_static("x-api-key"),
            header::HeaderName::from_static("anthropic-version"),
            header::HeaderName::from_static("anthropic-beta"),
        ])
        .expose_headers([
            header::HeaderName::from_static("x-request-id"),
            header::HeaderName::from_static("x-client-request-id"),
            header::HeaderName::from_static("x-ratelimit-limit"),
            header::HeaderName::from_static("x-ratelimit-remaining"),
            header::HeaderName::from_static("x-ratelimit-reset"),
            header::RETRY_AFTER,
            header::ETAG,
            header::LOCATION,
        ])
        .max_age(3600)
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
    // The Host is checked only while no credentials are: with auth required, routing and auth
    // ignore it (a proxy may call us by any name).
    let perimeter = Arc::new(Perimeter::new(
        config,
        !state.auth.requires_credentials(),
        listener.local_addr().ok().map(|address| address.ip()),
        state.rate_limits.trusted_proxies().to_vec(),
    ));
    let count_connection = perimeter.on_connect();
    let mut server = HttpServer::new(move || {
        let state = state.clone();
        let app_config = app_config.clone();
        let cors_enabled = !app_config.cors_allowed_origins.is_empty();
        let perimeter = Arc::clone(&perimeter);
        App::new()
            .wrap(Condition::new(
                cors_enabled,
                cors(&app_config.cors_allowed_origins),
            ))
            .wrap(from_fn(move |req, next| {
                guard_perimeter(Arc::clone(&perimeter), req, next)
            }))
            .wrap(from_fn(request_scope))
            .configure(move |cfg| configure(cfg, state, &app_config))
    })
    .on_connect(count_connection)
    .keep_alive(Duration::from_secs(config.keep_alive_seconds))
    .shutdown_timeout(config.shutdown_grace_seconds)
    // Streams are many small writes: without TCP_NODELAY each waits for the client's delayed
    // ACK (40 ms) under Nagle's algorithm.
    .tcp_nodelay(true)
    // A client that closes its connection mid-request is gone: end the connection so the
    // handler is dropped, cancelling the upstream call (and logging it as a disconnect).
    .h1_allow_half_closed(false)
    .disable_signals();
    if config.workers > 0 {
        server = server.workers(config.workers);
    }
    Ok(server.listen(listener)?.run())
}

#[cfg(test)]
mod tests {
    use utoipa::OpenApi;

    use super::*;

    #[test]
    fn every_route_is_in_the_openapi_document() {
        let doc = crate::ApiDoc::openapi();
        let json = serde_json::to_value(&doc).unwrap();
        let paths = json["paths"].as_object().unwrap();
        let mut served = 0;
        for (path, method) in routes() {
            let operation = &paths
                .get(path)
                .unwrap_or_else(|| panic!("{path} is served but not documented"))
                [method.as_str().to_lowercase()];
            assert!(
                operation.is_object(),
                "{method} {path} is served but not documented"
            );
            assert!(
                operation["responses"]
                    .as_object()
                    .is_some_and(|r| !r.is_empty()),
                "{method} {path} documents no responses"
            );
            served += 1;
        }
        // And nothing documented that is not served.
        let documented: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
        assert_eq!(
            documented, served,
            "the document describes routes the server lacks"
        );
    }

    #[test]
    fn every_schema_reference_resolves_and_both_stream_formats_are_described() {
        fn refs<'a>(value: &'a serde_json::Value, out: &mut Vec<&'a str>) {
            match value {
                serde_json::Value::Object(map) => {
                    if let Some(serde_json::Value::String(r)) = map.get("$ref") {
                        out.push(r);
                    }
                    map.values().for_each(|v| refs(v, out));
                }
                serde_json::Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        let json = serde_json::to_value(crate::ApiDoc::openapi()).unwrap();
        let mut found = Vec::new();
        refs(&json, &mut found);
        assert!(!found.is_empty());
        for reference in found {
            let (kind, name) = reference
                .strip_prefix("#/components/")
                .and_then(|rest| rest.split_once('/'))
                .filter(|(kind, _)| ["schemas", "responses"].contains(kind))
                .unwrap_or_else(|| panic!("unexpected reference {reference}"));
            assert!(
                json["components"][kind][name].is_object(),
                "{reference} does not resolve"
            );
        }
        let streamed = |path: &str| {
            json["paths"][path]["post"]["responses"]["200"]["content"]["text/event-stream"]
                ["schema"]["$ref"]
                .clone()
        };
        assert_eq!(
            streamed("/v1/chat/completions"),
            "#/components/schemas/ChatCompletionChunk"
        );
        assert_eq!(streamed("/chat/stream"), "#/components/schemas/StreamChunk");
    }

    #[test]
    fn every_path_has_one_guard() {
        for e in endpoints() {
            let first = endpoints().find(|f| f.path == e.path).unwrap();
            assert_eq!(first.guard, e.guard, "{} mixes guards", e.path);
        }
    }

    #[test]
    fn every_endpoint_s_errors_take_the_shape_its_door_declares() {
        for door in DOORS {
            for e in door.endpoints {
                assert_eq!(
                    error_shape(e.path),
                    door.errors,
                    "{} is registered behind {} but its errors would take another door's shape",
                    e.path,
                    door.prefix
                );
            }
        }
        assert_eq!(error_shape("/v1/chat/completions"), ErrorShape::OpenAi);
        assert_eq!(error_shape("/v1/models/demo"), ErrorShape::OpenAi);
        assert_eq!(error_shape("/v1/messages"), ErrorShape::Anthropic);
        assert_eq!(
            error_shape("/v1/messages/count_tokens"),
            ErrorShape::Anthropic
        );
        assert_eq!(error_shape("/chat/send"), ErrorShape::Native);
        assert_eq!(error_shape("/specialists/demo"), ErrorShape::Native);
        // Paths no endpoint serves take the shape of the door they were meant for.
        assert_eq!(error_shape("/v1/audio/speech"), ErrorShape::OpenAi);
        assert_eq!(error_shape("/nowhere"), ErrorShape::Native);
        assert_eq!(
            error_shape("/v1"),
            ErrorShape::Native,
            "as before: /v1/ is the door"
        );
    }
}
