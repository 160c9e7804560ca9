use actix_web::{HttpResponse, web};

use crate::openapi::responses::{Open, Probe, Unavailable};
use crate::views::Status;
use crate::{ApiCode, ApiError, AppState};

/// `GET /health`: the process is up and serving.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "Alive", body = Status), Probe))]
pub(crate) async fn health() -> HttpResponse {
    HttpResponse::Ok().json(Status {
        status: "ok",
        database: None,
    })
}

/// `GET /ready`: the usage log keeps up — the database answers with its migrations applied
/// (and, on SQLite, is still the file it opened), no usage row has waited longer than
/// `database.ready_max_lag_ms`, and the journal can be written.
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses((status = 200, description = "Ready", body = Status),
        (status = 503, response = Unavailable), Probe))]
pub(crate) async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let usage = state.usage.health();
    if usage.lagging {
        return Err(ApiError::new(
            ApiCode::ServiceUnavailable,
            format!(
                "usage: lagging — the oldest usage row not yet in the database has waited {} s",
                usage.lag.as_secs()
            ),
        )
        .with_internal_detail(usage.store_problem.unwrap_or_default()));
    }
    if let Some(problem) = usage.journal_problem {
        return Err(ApiError::new(
            ApiCode::ServiceUnavailable,
            "journal: failing — usage rows cannot be journaled, so a crash would lose them; see the server log",
        )
        .with_internal_detail(problem));
    }
    let store = state.store.clone();
    let outcome = tokio::task::spawn_blocking(move || store.check_ready()).await;
    match outcome {
        Ok(Ok(())) => Ok(HttpResponse::Ok().json(Status {
            status: "ready",
            database: Some("ok"),
        })),
        Ok(Err(e)) => Err(e.into()),
        Err(e) => Err(ApiError::internal(format!(
            "readiness check task failed: {e}"
        ))),
    }
}

/// `GET /metrics`: Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String),
        Open))]
pub(crate) async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}
