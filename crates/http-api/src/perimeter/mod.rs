//! The perimeter: what every request passes before it is routed — a cap on connections per
//! client (an IPv4 address, an IPv6 /64), the `Host` check that keeps web pages out while auth is disabled, the
//! cross-site request forgery check on state-changing methods, and the body-read deadline.

mod body_deadline;
mod connections;
mod hosts;
mod origins;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::HttpMessage;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Extensions, Payload, ServiceRequest, ServiceResponse};
use actix_web::http::ConnectionType;
use actix_web::http::header;
use actix_web::middleware::Next;

pub use hosts::AllowedHost;

use self::body_deadline::{AbandonedBody, BodyOutcome, BodyWatch, deadline_after};
use self::connections::{ConnectionSlot, ConnectionTable};
use self::hosts::HostPolicy;
use self::origins::OriginPolicy;
use crate::client_ip::Cidr;
use crate::{ApiCode, ApiError, ServerConfig};

/// Routes a load balancer or orchestrator probes by address, whatever `Host` it sends; they
/// tell only whether the server is up and change nothing, so rebinding gains nothing there.
const HOST_EXEMPT_PATHS: [&str; 2] = ["/health", "/ready"];

/// The perimeter's settings, shared by every worker.
#[derive(Debug)]
pub(crate) struct Perimeter {
    /// `None` while auth is required: credentials, not the `Host`, decide then.
    hosts: Option<HostPolicy>,
    origins: OriginPolicy,
    body_timeout: Duration,
    connections: Arc<ConnectionTable>,
}

impl Perimeter {
    /// From the server config; `host_checked` when auth is disabled; `bind` is the address
    /// listened on (admitted as a host name when it is a specific one).
    pub(crate) fn new(
        config: &ServerConfig,
        host_checked: bool,
        bind: Option<IpAddr>,
        trusted_proxies: Vec<Cidr>,
    ) -> Self {
        Self {
            hosts: host_checked.then(|| HostPolicy::new(&config.allowed_hosts, bind)),
            origins: OriginPolicy::new(&config.cors_allowed_origins),
            body_timeout: Duration::from_millis(config.client_body_timeout_ms.get()),
            connections: Arc::new(ConnectionTable::new(
                config.max_connections_per_client.get(),
                trusted_proxies,
            )),
        }
    }

    /// For `HttpServer::on_connect`: puts in the connection's extensions, where they stay until
    /// it closes, its place in the per-address count and a holder for a body abandoned at
    /// the deadline.
    pub(crate) fn on_connect(
        &self,
    ) -> impl Fn(&dyn std::any::Any, &mut Extensions) + Send + Sync + 'static {
        let connections = Arc::clone(&self.connections);
        move |connection, extensions| {
            let peer = connection
                .downcast_ref::<actix_web::rt::net::TcpStream>()
                .and_then(|stream| stream.peer_addr().ok());
            if let Some(slot) = peer.and_then(|peer| connections.open(peer.ip())) {
                extensions.insert(slot);
            }
            extensions.insert(AbandonedBody::default());
        }
    }

    /// Why `req` must not come in, if it must not.
    fn refusal(&self, req: &ServiceRequest) -> Option<Refusal> {
        if req
            .conn_data::<ConnectionSlot>()
            .is_some_and(ConnectionSlot::is_over_limit)
        {
            return Some(Refusal::closing(ApiError::new(
                ApiCode::TooManyConnections,
                "too many open connections from your address; close some and retry",
            )));
        }
        if let Some(hosts) = &self.hosts
            && !HOST_EXEMPT_PATHS.contains(&req.path())
            && !names_this_server(req, hosts)
        {
            return Some(Refusal::keeping(ApiError::new(
                ApiCode::HostNotAllowed,
                "this server does not answer for that host name without credentials; \
                 use localhost or list the name in server.allowed_hosts",
            )));
        }
        let console_form = crate::console::is_console_path(req.path());
        self.origins
            .refusal(req.method(), req.headers(), console_form)
            .map(Refusal::keeping)
    }
}

/// Every host the request names — its `Host` header (exactly one) and, when the request
/// target is in absolute form or the request is HTTP/2, the URI's authority — is admitted.
fn names_this_server(req: &ServiceRequest, hosts: &HostPolicy) -> bool {
    let mut host_headers = req.headers().get_all(header::HOST);
    let header = host_headers.next();
    if host_headers.next().is_some() {
        return false;
    }
    let header = match header.map(|v| v.to_str()) {
        Some(Ok(value)) => Some(value),
        Some(Err(_)) => return false,
        None => None,
    };
    let authority = req.uri().authority().map(|a| a.as_str());
    if header.is_none() && authority.is_none() {
        return false;
    }
    header
        .into_iter()
        .chain(authority)
        .all(|host| hosts.admits(host))
}

struct Refusal {
    error: ApiError,
    close: bool,
}

impl Refusal {
    fn closing(error: ApiError) -> Self {
        Self { error, close: true }
    }

    fn keeping(error: ApiError) -> Self {
        Self {
            error,
            close: false,
        }
    }
}

/// Middleware (inside the request scope, which renders its errors): puts the body
/// behind its deadline, refuses what [`Perimeter::refusal`] refuses, and closes any connection
/// whose body had not ended by the time its response was ready. `door` comes from the closure
/// `build_server` installs, so a server without a perimeter cannot be built.
pub(crate) async fn guard_perimeter(
    door: Arc<Perimeter>,
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    // Before any refusal: a refused request's body must not be drained either.
    let watch = match req.take_payload() {
        Payload::None => None,
        payload => {
            let keeper = req.conn_data::<AbandonedBody>().cloned();
            let deadline = deadline_after(tokio::time::Instant::now(), door.body_timeout);
            let (watch, payload) = BodyWatch::new(payload, deadline, keeper);
            req.set_payload(Payload::Stream {
                payload: Box::pin(payload),
            });
            Some(watch)
        }
    };
    let outcome = |watch: &Option<BodyWatch>| {
        watch
            .as_ref()
            .map_or(BodyOutcome::Complete, BodyWatch::outcome)
    };
    if let Some(Refusal { error, close }) = door.refusal(&req) {
        let mut response = req.error_response(error);
        if close || outcome(&watch) != BodyOutcome::Complete {
            close_after(&mut response);
        }
        return Ok(response);
    }
    let response = next.call(req).await?.map_into_boxed_body();
    match outcome(&watch) {
        BodyOutcome::Complete => Ok(response),
        BodyOutcome::Unfinished => {
            let mut response = response;
            close_after(&mut response);
            Ok(response)
        }
        BodyOutcome::Expired => {
            let mut response = response.error_response(ApiError::new(
                ApiCode::RequestTimeout,
                format!(
                    "the request body did not arrive within {} ms",
                    door.body_timeout.as_millis()
                ),
            ));
            close_after(&mut response);
            Ok(response)
        }
    }
}

/// Closes the connection once `response` is sent.
fn close_after(response: &mut ServiceResponse<BoxBody>) {
    response
        .response_mut()
        .head_mut()
        .set_connection_type(ConnectionType::Close);
}

#[cfg(test)]
mod tests {
    use actix_web::middleware::from_fn;
    use actix_web::{App, HttpResponse, test, web};

    use super::*;

    #[actix_web::test]
    async fn a_body_timeout_beyond_any_instant_is_no_deadline_not_a_panic() {
        let mut door = Perimeter::new(&ServerConfig::default(), false, None, Vec::new());
        // A library caller of `build_server` may set any timeout; only the binary bounds it.
        door.body_timeout = Duration::MAX;
        let door = Arc::new(door);
        let app = test::init_service(
            App::new()
                .wrap(from_fn(move |req, next| {
                    guard_perimeter(Arc::clone(&door), req, next)
                }))
                .route(
                    "/echo",
                    web::post().to(|body: web::Bytes| async move { HttpResponse::Ok().body(body) }),
                ),
        )
        .await;
        let request = test::TestRequest::post()
            .uri("/echo")
            .set_payload("hello")
            .to_request();
        let response = test::call_service(&app, request).await;
        assert_eq!(response.status(), 200);
        assert_eq!(test::read_body(response).await, "hello");
    }
}
