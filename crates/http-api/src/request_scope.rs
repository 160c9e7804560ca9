//! The request scope, the outermost layer: every request gets its context (id, arrival time)
//! and its span, every response `X-Request-Id`, every error the body shape its route's door
//! declares, and every request one log line and its HTTP metrics.

use std::panic::AssertUnwindSafe;
use std::time::Instant;

use actix_web::HttpMessage;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::InternalError;
use actix_web::http::ConnectionType;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use core_domain::RequestId;
use futures_util::FutureExt;
use tracing::Instrument;

use crate::request_context::{CLIENT_REQUEST_ID_HEADER, REQUEST_ID_HEADER};
use crate::{ApiError, RequestContext, app, panics};

/// Middleware: gives every request its context and id, puts the id in `X-Request-Id` on every
/// response, renders every error response in the shape the route table declares for the path
/// (the native one carrying the id), and accounts for the request: one span (request id,
/// method, route, specialist, provider, status, latency) with one `request completed` log
/// line, and the HTTP metrics.
pub(crate) async fn request_scope(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let context = RequestContext::arriving(req.headers());
    let request_id = context.request_id.clone();
    let client_request_id = context.client_request_id.clone();
    let received_at = context.received_at;
    req.extensions_mut().insert(context);
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
    // Chosen before routing: the perimeter's refusals come before any route is matched.
    let shape = app::error_shape(req.path());
    let render = |error: &ApiError| shape.render(error, &request_id);
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
                response.status(),
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
                response.status(),
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
    status: actix_web::http::StatusCode,
    received_at: Instant,
) {
    let elapsed = received_at.elapsed();
    span.record("route", route);
    span.record("status", status.as_u16());
    span.record("latency_ms", elapsed.as_secs_f64() * 1000.0);
    span.in_scope(|| tracing::info!("request completed"));
    if let Some(metrics) = metrics {
        metrics
            .http_requests
            .with_label_values(&[route, method.as_str(), status.as_str()])
            .inc();
        metrics
            .http_latency
            .with_label_values(&[route])
            .observe(elapsed.as_secs_f64());
    }
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
                .wrap(actix_web::middleware::from_fn(request_scope))
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
