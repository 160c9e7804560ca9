//! The web console at `/console`: spend and usage at a glance, the latest calls, the
//! specialists with their history, budgets, keys and health — HTML rendered here on the
//! server from the same state the API serves, with every asset embedded in the binary.
//!
//! Why server-rendered HTML and no script: every page is a plain document and every action a
//! plain form, so the console works with the keyboard and a screen reader without extra work,
//! needs no build step and no Node toolchain, loads nothing from anywhere, and a content
//! policy can forbid scripts outright. Charts are SVG drawn on the server.
//!
//! Access: a person signs in with an API key or a JWT (checked by the API's own
//! [`Authenticator`](crate::Authenticator)) and gets a signed, expiring session cookie
//! (`session.rs`); every form carries the session's anti-forgery token and every POST checks
//! it. Users see their own usage and the specialists; administrators see everything and may
//! change things. With auth disabled there is no sign-in: the console answers loopback
//! clients only, as the local operator (an administrator).
//!
//! This module must not reach past the library crates' public APIs: what the API computes
//! (summaries, calls, budgets) the console reads through the same functions, so its numbers
//! are the API's.

mod budgets;
mod chart;
mod config;
mod health;
mod keys;
mod layout;
mod overview;
mod requests;
mod session;
mod sign_in;
mod specialists;
mod units;

use std::future::{Ready, ready};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::{Next, from_fn};
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError, web};

pub use config::ConsoleConfig;
pub use session::SessionKeyError;

pub(crate) use layout::{Nav, csrf_field, error_page, ok, page, respond, see_other};
pub(crate) use session::{SessionKeys, Viewer};

use crate::rate_limit::caller_key;
use crate::{AppState, RouteGroup};

/// True for `/console` and every path under it (the perimeter lets these paths' forms in;
/// sign-in only ever sends a browser on to one of them).
pub(crate) fn is_console_path(path: &str) -> bool {
    path.strip_prefix("/console")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// What the console's handlers share besides the [`AppState`].
#[derive(Debug, Clone)]
pub(crate) struct Console {
    pub keys: SessionKeys,
}

/// Registers `/console` and everything under it on `cfg` (before the API's catch-all).
pub(crate) fn configure(cfg: &mut web::ServiceConfig, console: Console, max_form_bytes: usize) {
    let forms = web::FormConfig::default()
        .limit(max_form_bytes)
        .error_handler(|error, _req| {
            ConsoleError::BadForm(format!("the form could not be read: {error}")).into()
        });
    let scope = web::scope("/console")
        .app_data(web::Data::new(console))
        .app_data(forms)
        .route("/assets/console.css", web::get().to(style))
        .route("/sign-in", web::get().to(sign_in::form))
        .route("/sign-in", web::post().to(sign_in::submit))
        .route("/sign-out", web::post().to(sign_in::sign_out));
    // Each page module adds its own routes (one file per page).
    let scope = overview::routes(scope);
    let scope = requests::routes(scope);
    let scope = specialists::routes(scope);
    let scope = budgets::routes(scope);
    let scope = keys::routes(scope);
    let scope = health::routes(scope);
    cfg.service(
        scope
            .default_service(web::to(not_found))
            .wrap(from_fn(gate)),
    );
}

async fn style() -> HttpResponse {
    let mut response = HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .body(layout::STYLE);
    // The URL carries the sheet's hash, so it may be kept for as long as a browser likes.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    let viewer = Viewer::from_request(&req, &mut Payload::None).await.ok();
    error_page(
        viewer.as_ref(),
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no console page at this address.",
    )
}

/// In front of every console route: with auth disabled, loopback clients only; and every
/// form sent (a sign-in, a change) counts against the caller's management rate limit, so a
/// script guessing keys at the sign-in form is slowed like one guessing at the API. Reading
/// pages is not counted: one page view is several requests (the page, its style sheet, the
/// redirect after a form) and the default limit (60 an hour) would lock a person out of
/// their own console within minutes.
async fn gate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(req.into_response(
            ConsoleError::Internal("the console is not set up".into()).error_response(),
        ));
    };
    if !state.auth.requires_credentials() && !req.peer_addr().is_some_and(|p| p.ip().is_loopback())
    {
        return Ok(req.into_response(ConsoleError::LoopbackOnly.error_response()));
    }
    let identity = req
        .app_data::<web::Data<Console>>()
        .and_then(|console| signed_in(req.request(), &state, console));
    let counted = if req.method() == actix_web::http::Method::POST {
        let caller = caller_key(
            identity.as_ref().map(|v| &v.identity),
            &req,
            state.rate_limits.trusted_proxies(),
        );
        let counted = state
            .rate_limits
            .count(
                RouteGroup::Management,
                &caller,
                &state.metrics.rate_limit_store_errors,
            )
            .await;
        if !counted.is_allowed() {
            state
                .metrics
                .rate_limited
                .with_label_values(&[RouteGroup::Management.name()])
                .inc();
            let mut response = req.into_response(ConsoleError::RateLimited.error_response());
            counted.add_headers(response.headers_mut());
            return Ok(response);
        }
        Some(counted)
    } else {
        None
    };
    if let Some(viewer) = identity {
        req.extensions_mut().insert(viewer);
    }
    let mut response = detached(next.call(req).await?);
    if let Some(counted) = counted {
        counted.add_headers(response.headers_mut());
    }
    Ok(response)
}

/// `response` without the error a handler or extractor attached to it. A console error has
/// already been answered with its own page (or redirect); left attached, the request scope
/// outside would replace that page with the API's JSON error body (and a redirect to sign in
/// with a 500).
fn detached(response: ServiceResponse<impl MessageBody + 'static>) -> ServiceResponse<BoxBody> {
    if response.response().error().is_none() {
        return response.map_into_boxed_body();
    }
    let (request, answered) = response.into_parts();
    let status = answered.status();
    let headers = answered.headers().clone();
    let mut page = HttpResponse::with_body(status, answered.into_body()).map_into_boxed_body();
    *page.headers_mut() = headers;
    ServiceResponse::new(request, page)
}

/// Runs blocking store work off the async workers; a failure is logged and becomes the
/// console's "something failed on our side" page.
pub(crate) async fn blocking<T: Send + 'static>(
    what: &'static str,
    work: impl FnOnce() -> Result<T, usage_store::StoreError> + Send + 'static,
) -> Result<T, ConsoleError> {
    match web::block(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => {
            tracing::error!(%error, "console: {what} failed");
            Err(ConsoleError::Internal(format!(
                "The usage database did not answer ({what}). Try again shortly."
            )))
        }
        Err(error) => {
            tracing::error!(%error, "console: {what} task failed");
            Err(ConsoleError::Internal(format!("{what} could not run")))
        }
    }
}

/// The person `req`'s session cookie names, if it holds a valid one (or the local operator
/// while auth is disabled: no sign-in, but the session still carries the forms' token).
fn signed_in(req: &HttpRequest, state: &AppState, console: &Console) -> Option<Viewer> {
    let cookie = session::read_cookie(req, session::SESSION_COOKIE)?;
    let session = console.keys.open(&cookie)?;
    session::viewer_of(&session, &state.auth)
}

impl FromRequest for Viewer {
    type Error = ConsoleError;
    type Future = Ready<Result<Self, ConsoleError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            req.extensions()
                .get::<Viewer>()
                .cloned()
                .ok_or_else(|| ConsoleError::SignInNeeded(req.uri().to_string())),
        )
    }
}

/// A signed-in administrator: the extractor for pages and actions that change things.
#[derive(Debug, Clone)]
pub(crate) struct Admin(pub Viewer);

impl FromRequest for Admin {
    type Error = ConsoleError;
    type Future = Ready<Result<Self, ConsoleError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(match req.extensions().get::<Viewer>() {
            None => Err(ConsoleError::SignInNeeded(req.uri().to_string())),
            Some(viewer) if viewer.is_admin() => Ok(Self(viewer.clone())),
            Some(viewer) => Err(ConsoleError::AdminOnly(viewer.clone())),
        })
    }
}

/// Checks a submitted form's anti-forgery token against the session's.
pub(crate) fn check_csrf(viewer: &Viewer, submitted: &str) -> Result<(), ConsoleError> {
    if session::tokens_match(&viewer.csrf, submitted) {
        Ok(())
    } else {
        Err(ConsoleError::Forged(viewer.clone()))
    }
}

/// Why a console request was not served, as a page.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConsoleError {
    /// No valid session: to the sign-in page, then back to the page asked for.
    #[error("sign in to see this page")]
    SignInNeeded(String),
    /// A user asked for an administrator's page or action.
    #[error("only administrators may do this")]
    AdminOnly(Viewer),
    /// A form without this session's anti-forgery token.
    #[error("the form was not sent from this session's page")]
    Forged(Viewer),
    /// The form's body could not be read.
    #[error("{0}")]
    BadForm(String),
    /// Auth is disabled and the client is not on this machine.
    #[error("the console answers only this machine while auth is disabled")]
    LoopbackOnly,
    /// The caller's management rate limit is spent.
    #[error("too many requests; wait a little and retry")]
    RateLimited,
    /// Something failed on our side (a database, say); the message says what.
    #[error("{0}")]
    Internal(String),
}

impl ResponseError for ConsoleError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::SignInNeeded(_) => StatusCode::SEE_OTHER,
            Self::AdminOnly(_) | Self::Forged(_) | Self::LoopbackOnly => StatusCode::FORBIDDEN,
            Self::BadForm(_) => StatusCode::BAD_REQUEST,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse<BoxBody> {
        match self {
            Self::SignInNeeded(wanted) => see_other(&format!(
                "/console/sign-in?next={}",
                units::query_value(wanted)
            )),
            Self::AdminOnly(viewer) => error_page(
                Some(viewer),
                self.status_code(),
                "Administrators only",
                "Only administrators may see this page or make this change. Ask one to do it.",
            ),
            Self::Forged(viewer) => error_page(
                Some(viewer),
                self.status_code(),
                "Form expired",
                "This form was not sent from a page of your current session. Open the page \
                 again and resend it.",
            ),
            Self::LoopbackOnly | Self::RateLimited | Self::BadForm(_) | Self::Internal(_) => {
                error_page(None, self.status_code(), "Not served", &self.to_string())
            }
        }
    }
}
