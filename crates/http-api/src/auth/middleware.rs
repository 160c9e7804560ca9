use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::AUTHORIZATION;
use actix_web::middleware::Next;
use actix_web::{HttpMessage, web};

use core_domain::ErrorCode;

use crate::{ApiError, AppState, RequestContext};

/// Middleware for every chat and management route: admits the caller and records who it is in
/// the request context, for the rate limiter, the handlers and the usage log.
///
/// A caller it refuses (401/403) is not answered here: the refusal is left for the rate
/// limiter inside, which first spends a token from the client address's bucket, so a client
/// that keeps sending bad credentials gets 429 once that bucket is spent. Credentials are
/// still verified first (a valid one gets its own bucket): limiting by address before
/// verifying would let one client behind a shared NAT lock out everyone behind it.
pub(crate) async fn authenticate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        // Fail closed: a route wired without the state must not run unauthenticated.
        return Ok(req.error_response(ApiError::new(
            ErrorCode::Internal,
            "the server is not set up to authenticate this route",
        )));
    };
    let admitted = state
        .auth
        .admit(req.headers().get(AUTHORIZATION).map(|v| v.as_bytes()));
    match admitted {
        Ok(admitted) => {
            if let Some(context) = req.extensions_mut().get_mut::<RequestContext>() {
                context.identity = admitted.identity;
                context.role = admitted.role;
            }
        }
        Err(error) => {
            req.extensions_mut().insert(Refused(error));
        }
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

/// A caller authentication refused, to be answered by the rate limiter once it has counted
/// the attempt against the client's address.
#[derive(Debug)]
pub(crate) struct Refused(pub(crate) ApiError);
