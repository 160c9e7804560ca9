//! The admission step in front of every chat and management route: verify the caller's
//! credentials, count the request against the right bucket, then refuse or proceed. One step,
//! so no route can be wrapped with authentication but not the limit, or the other way round.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::AUTHORIZATION;
use actix_web::middleware::Next;
use actix_web::{HttpMessage, web};
use core_domain::ErrorCode;

use crate::rate_limit::caller_key;

/// The header Anthropic's SDKs and Claude Code send their key in.
const X_API_KEY: &str = "x-api-key";
use crate::{ApiError, AppState, RequestContext, RouteGroup};

/// Middleware for the routes of `group` (wired from the route table): admits the caller and
/// records who it is in the request context, for the handlers and the usage log; every answer,
/// refusals included, carries the rate-limit headers.
///
/// Credentials are verified first, so a valid one counts against its user's bucket: limiting
/// by address before verifying would let one client behind a shared NAT lock out everyone
/// behind it. A refused credential (401/403) still spends a token, from the client address's
/// bucket, so a client that keeps guessing gets 429 once that bucket is spent.
pub(crate) async fn admit(
    group: RouteGroup,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        // Fail closed: a route wired without the state must not run unadmitted.
        return Ok(req.error_response(ApiError::new(
            ErrorCode::Internal,
            "the server is not set up to admit callers to this route",
        )));
    };
    let verified = state.auth.verify_request(
        req.headers().get(AUTHORIZATION).map(|v| v.as_bytes()),
        req.headers().get(X_API_KEY).map(|v| v.as_bytes()),
    );
    let caller = caller_key(
        verified.as_ref().ok().map(|v| &v.identity),
        &req,
        state.rate_limits.trusted_proxies(),
    );
    let counted = state
        .rate_limits
        .count(group, &caller, &state.metrics.rate_limit_store_errors)
        .await;
    let mut response = if !counted.is_allowed() {
        state
            .metrics
            .rate_limited
            .with_label_values(&[group.name()])
            .inc();
        req.error_response(counted.refusal())
    } else {
        match verified {
            Err(refusal) => req.error_response(refusal),
            Ok(verified) => {
                if let Some(context) = req.extensions_mut().get_mut::<RequestContext>() {
                    context.identity = verified.identity;
                    context.role = verified.role;
                    context.api_key = verified.api_key;
                }
                next.call(req).await?.map_into_boxed_body()
            }
        }
    };
    counted.add_headers(response.headers_mut());
    Ok(response)
}
