use actix_web::{HttpResponse, web};
use core_domain::ErrorCode;
use serde_json::json;

use crate::{ApiError, AppState};

/// `GET /health`: the process is up and serving.
pub(crate) async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// `GET /ready`: the usage database answers and its migrations are applied.
pub(crate) async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let store = state.store.clone();
    let outcome = tokio::task::spawn_blocking(move || store.check_ready()).await;
    match outcome {
        Ok(Ok(())) => Ok(HttpResponse::Ok().json(json!({"status": "ready", "database": "ok"}))),
        Ok(Err(e)) => Err(ApiError::new(
            ErrorCode::ServiceUnavailable,
            format!("not ready: {e}"),
        )),
        Err(e) => Err(ApiError::new(
            ErrorCode::Internal,
            format!("readiness check failed: {e}"),
        )),
    }
}
