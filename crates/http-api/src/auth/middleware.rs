use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::AUTHORIZATION;
use actix_web::middleware::Next;
use actix_web::{HttpMessage, web};

use crate::{AppState, RequestContext};

/// Middleware for every chat and management route: admits the caller (or answers 401/403) and
/// records who it is in the request context, for the rate limiter, the handlers and the usage
/// log.
pub(crate) async fn authenticate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(next.call(req).await?.map_into_boxed_body());
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
            Ok(next.call(req).await?.map_into_boxed_body())
        }
        Err(error) => Ok(req.error_response(error)),
    }
}
