use std::future::{Ready, ready};
use std::panic::AssertUnwindSafe;
use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::InternalError;
use actix_web::http::ConnectionType;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use core_domain::{AccessRole, ErrorCode, RequestId, UserIdentity};
use futures_util::FutureExt;
use tracing::Instrument;

use crate::{ApiCode, ApiError, panics};

const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");
const CLIENT_REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-client-request-id");

/// What the middleware learned about a request before any handler ran.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The request's id, always the gateway's own (unique): in `X-Request-Id`, error bodies,
    /// logs and as the usage row's key.
    pub request_id: RequestId,
    /// The id the caller sent for its own tracing (`X-Client-Request-Id`, else `X-Request-Id`)
    /// when it is sane: echoed in `X-Client-Request-Id`, logged and stored beside ours. Never
    /// our key: a caller reusing one must not make two calls share one usage row.
    pub client_request_id: Option<RequestId>,
    /// When the request reached us, for latency.
    pub received_at: Instant,
    /// Who is calling.
    pub identity: UserIdentity,
    /// What the caller may do (set by admission; `User` until then).
    pub role: AccessRole,
}

impl RequestContext {
    /// `Ok` for an administrator, else the 403 for `action`.
    pub fn require_admin(&self, action: &str) -> Result<(), ApiError> {
        if self.role == AccessRole::Admin {
            Ok(())
        } else {
            Err(ApiError::new(
                ApiCode::Forbidden,
                format!("only administrators may {action}"),
            ))
        }
    }
}

impl FromRequest for RequestContext {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        ready(req.extensions().get::<Self>().cloned().ok_or_else(|| {
            ApiError::new(
                ErrorCode::Internal,
                "request context missing: the request-id middleware is not installed",
            )
        }))
    }
}

/// A new request id: a UUID v7 whose 74 bits after the millisecond timestamp are all random
/// (no per-millisecond counter, unlike uuid's `now_v7`), so ids say nothing about how many
/// requests came before (a counter would publish the request volume to every caller) — only
/// the millisecond, which the `Date` header tells anyway.
///
/// Why not v4: the id is the usage log's unique key, and fully random keys land on random
/// pages of that index. Under load the SQLite writer then read and rewrote pages all over the
/// file, fell behind and spilled (`/v1` at 64 connections: 26,200 → 20,700 req/s, 49 → 65 ms
/// of CPU per 1,000 calls); time-ordered keys append. The random bits come from a thread-local
/// CSPRNG seeded once from the OS (uuid's `fast-rng`), not a `getrandom` call per request.
fn fresh_request_id() -> RequestId {
    let id = uuid::Uuid::new_v7(uuid::Timestamp::now(uuid::NoContext));
    RequestId::parse(
        id.hyphenated()
            .encode_lower(&mut uuid::Uuid::encode_buffer()),
    )
    .expect("a hyphenated UUID uses only characters a request id allows")
}

/// Middleware: gives every request an id, puts it in `X-Request-Id` on every response, renders
/// every error response as the API's error JSON carrying that id, and accounts for the request:
/// one span (request id, method, route, specialist, provider, status, latency) with one
/// `request completed` log line, and the HTTP metrics.
pub(crate) async fn assign_request_id(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let request_id = fresh_request_id();
    let sane = |name: &HeaderName| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| RequestId::parse(v).ok())
    };
    let client_request_id = sane(&CLIENT_REQUEST_ID_HEADER).or_else(|| sane(&REQUEST_ID_HEADER));
    let received_at = Instant::now();
    req.extensions_mut().insert(RequestContext {
        request_id: request_id.clone(),
        client_request_id: client_request_id.clone(),
        received_at,
        identity: UserIdentity::Anonymous,
        role: AccessRole::User,
    });
    let metrics = req
        .app_data::<actix_web::web::Data<crate::AppState>>()
        .map(|state| std::sync::Arc::clone(&state.metrics));
    let method = req.method().clone();
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        client_request_id = client_request_id.as_ref().map(RequestId::as_str),
        method = %method,
        route = tracing::field::Empty,
        specialist = tracing::field::Empty,
        provider = tracing::field::Empty,
        status = tracing::field::Empty,
        latency_ms = tracing::field::Empty,
    );
    // The OpenAI-compatible routes answer errors in OpenAI's shape.
    let openai_style = req.path().starts_with(crate::openai::PREFIX);
    let render = |error: &ApiError| {
        if openai_style {
            error.to_openai_response()
        } else {
            error.to_response(Some(&request_id))
        }
    };
    // No clone of the request may be held across `next.call`: routing needs sole ownership.
    let mut inner = next.call(req).instrument(span.clone());
    let outcome = match AssertUnwindSafe(&mut inner).catch_unwind().await {
        Ok(outcome) => outcome,
        // A panic is a bug, but the caller still gets an answer with the id to report, and a
        // chat call its row (`internal_error`, from its recorder dropped here).
        Err(payload) => {
            let text = panics::panic_text(payload.as_ref()).to_owned();
            panics::drop_after_panic(inner);
            span.in_scope(|| {
                tracing::error!(request_id = %request_id, panic = %text, "request handler panicked");
            });
            Err(ApiError::internal(format!("the request handler panicked: {text}")).into())
        }
    };
    // Both ids are of a header-safe alphabet (`RequestId::parse`), so these never fail.
    let ids = [
        Some((REQUEST_ID_HEADER, request_id.as_str())),
        client_request_id
            .as_ref()
            .map(|id| (CLIENT_REQUEST_ID_HEADER, id.as_str())),
    ];
    let stamp = |headers: &mut actix_web::http::header::HeaderMap| {
        for (name, id) in ids.iter().flatten() {
            if let Ok(value) = HeaderValue::from_str(id) {
                headers.insert(name.clone(), value);
            }
        }
    };
    match outcome {
        Ok(response) => {
            let mut response = match response.response().error() {
                // An error a handler or an extractor returned: render it with the id.
                Some(error) => {
                    let api_error = error
                        .as_error::<ApiError>()
                        .cloned()
                        .unwrap_or_else(|| ApiError::from_foreign(error));
                    log_failure(&api_error, &request_id);
                    let (request, original) = response.into_parts();
                    let mut rendered = render(&api_error);
                    // Keep headers inner layers added (rate-limit headers, Retry-After).
                    for (name, value) in original.headers() {
                        if name != header::CONTENT_TYPE
                            && name != header::CONTENT_LENGTH
                            && !rendered.headers().contains_key(name)
                        {
                            rendered.headers_mut().append(name.clone(), value.clone());
                        }
                    }
                    // Keep a connection close an inner layer asked for (the perimeter's).
                    if original.head().connection_type() == ConnectionType::Close {
                        rendered
                            .head_mut()
                            .set_connection_type(ConnectionType::Close);
                    }
                    ServiceResponse::new(request, rendered)
                }
                None => response.map_into_boxed_body(),
            };
            stamp(response.headers_mut());
            let route = response.request().match_pattern();
            account(
                &span,
                metrics.as_deref(),
                route.as_deref().unwrap_or("unmatched"),
                &method,
                response.status().as_u16(),
                received_at,
            );
            Ok(response)
        }
        // An inner middleware failed before producing a response; actix renders the response
        // we attach to the error.
        Err(error) => {
            let api_error = error
                .as_error::<ApiError>()
                .cloned()
                .unwrap_or_else(|| ApiError::from_foreign(&error));
            log_failure(&api_error, &request_id);
            let mut response = render(&api_error);
            stamp(response.headers_mut());
            account(
                &span,
                metrics.as_deref(),
                "unknown",
                &method,
                response.status().as_u16(),
                received_at,
            );
            Err(InternalError::from_response(api_error, response).into())
        }
    }
}

/// Closes the request's books: the span's last fields, the one log line, the HTTP metrics.
fn account(
    span: &tracing::Span,
    metrics: Option<&crate::Metrics>,
    route: &str,
    method: &actix_web::http::Method,
    status: u16,
    received_at: Instant,
) {
    let elapsed = received_at.elapsed();
    span.record("route", route);
    span.record("status", status);
    span.record("latency_ms", elapsed.as_secs_f64() * 1000.0);
    span.in_scope(|| tracing::info!("request completed"));
    if let Some(metrics) = metrics {
        metrics
            .http_requests
            .with_label_values(&[route, method.as_str(), itoa(status).as_str()])
            .inc();
        metrics
            .http_latency
            .with_label_values(&[route])
            .observe(elapsed.as_secs_f64());
    }
}

fn itoa(status: u16) -> String {
    status.to_string()
}

/// Logs an error answer: server errors at WARN (with the detail the client was not shown),
/// refusals at DEBUG. The client's text goes in `error_message`: `message` is the event's own
/// key in JSON logs, and a second one would hide it from every JSON parser.
fn log_failure(error: &ApiError, request_id: &RequestId) {
    let status = error.status();
    if status.is_server_error() {
        tracing::warn!(
            request_id = %request_id,
            code = %error.code(),
            status = status.as_u16(),
            error_message = error.message(),
            detail = error.internal_detail(),
            "request failed"
        );
    } else {
        tracing::debug!(
            request_id = %request_id,
            code = %error.code(),
            status = status.as_u16(),
            error_message = error.message(),
            "request refused"
        );
    }
}

#[cfg(test)]
mod panic_tests {
    use log_capture::CapturedLogs;

    use super::*;

    #[actix_web::test]
    async fn a_handler_panic_is_a_500_with_the_request_id_and_an_error_log_line() {
        use actix_web::{App, test, web};
        let logs = CapturedLogs::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_ansi(false)
            .finish();
        let _installed = tracing::subscriber::set_default(subscriber);
        let app = test::init_service(
            App::new()
                .wrap(actix_web::middleware::from_fn(assign_request_id))
                .route(
                    "/boom",
                    web::get().to(|| async {
                        if true {
                            panic!("the handler's secret state");
                        }
                        "unreachable"
                    }),
                )
                .route("/fine", web::get().to(|| async { "fine" })),
        )
        .await;

        // Like an inner middleware's failure, it comes back as an error carrying the response
        // actix sends.
        let error =
            test::try_call_service(&app, test::TestRequest::get().uri("/boom").to_request())
                .await
                .expect_err("the panic is answered as an error");
        let response = error.error_response();
        assert_eq!(response.status(), 500);
        let request_id = response
            .headers()
            .get("x-request-id")
            .expect("every response has an id")
            .to_str()
            .unwrap()
            .to_owned();
        let body: serde_json::Value = serde_json::from_slice(
            &actix_web::body::to_bytes(response.into_body())
                .await
                .expect("a whole body"),
        )
        .unwrap();
        assert_eq!(body["error"]["code"], "internal_error");
        assert_eq!(body["error"]["request_id"], request_id.as_str());
        assert!(!body.to_string().contains("secret state"), "{body}");

        let logs = logs.text();
        let line = logs
            .lines()
            .find(|l| l.contains("request handler panicked"))
            .unwrap_or_else(|| panic!("no panic line in {logs}"));
        assert!(line.contains("ERROR"), "{line}");
        assert!(line.contains(&request_id), "{line}");
        assert!(line.contains("the handler's secret state"), "{line}");

        let fine =
            test::call_service(&app, test::TestRequest::get().uri("/fine").to_request()).await;
        assert_eq!(fine.status(), 200, "the service goes on");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_ids_are_time_ordered_v7_uuids_with_random_tails() {
        let ids: Vec<uuid::Uuid> = (0..1000)
            .map(|_| uuid::Uuid::parse_str(fresh_request_id().as_str()).unwrap())
            .collect();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        for id in &ids {
            assert_eq!(id.get_version(), Some(uuid::Version::SortRand), "{id}");
            let (secs, nanos) = id.get_timestamp().unwrap().to_unix();
            let ms = secs * 1000 + u64::from(nanos) / 1_000_000;
            assert!(now_ms.abs_diff(ms) < 60_000, "{id} carries the time of day");
        }
        // After the timestamp nothing repeats or counts: a per-millisecond counter (uuid's
        // `now_v7`) would put consecutive values in rand_a, a process prefix would repeat.
        let tails: std::collections::HashSet<u64> =
            ids.iter().map(|id| id.as_u64_pair().1).collect();
        assert_eq!(tails.len(), ids.len());
        let rand_a = |id: &uuid::Uuid| id.as_u64_pair().0 & 0x0fff;
        let counting = ids
            .windows(2)
            .filter(|pair| rand_a(&pair[1]) == rand_a(&pair[0]) + 1)
            .count();
        assert!(
            counting < 10,
            "{counting} of 999 consecutive ids count up in rand_a"
        );
    }
}
