use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

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
    responses((status = 200, description = "Ready", body = Ready),
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
    let catalogue = state.catalogue.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        store.check_ready()?;
        Ok::<_, usage_store::StoreError>(catalogue_store_state(catalogue.check_store()))
    })
    .await;
    match outcome {
        Ok(Ok(catalogue_store)) => Ok(HttpResponse::Ok().json(Ready {
            status: "ready",
            database: "ok",
            catalogue_store,
            rate_limit: state.rate_limits.store_state(),
            keys: state
                .providers
                .key_health()
                .into_iter()
                .map(KeyDetail::from)
                .collect(),
        })),
        Ok(Err(e)) => Err(e.into()),
        Err(e) => Err(ApiError::internal(format!(
            "readiness check task failed: {e}"
        ))),
    }
}

/// `Ready::catalogue_store` for the outcome of [`specialists::Catalogue::check_store`].
fn catalogue_store_state(checked: Option<Result<(), specialists::CatalogueError>>) -> &'static str {
    match checked {
        None => "file",
        Some(Ok(())) => "ok",
        Some(Err(error)) => {
            tracing::debug!(%error, "the catalogue's store does not answer");
            "unreachable"
        }
    }
}

/// `GET /ready`'s answer: ready, and how each upstream key is doing (informational: a resting
/// key or an open circuit does not make the server unready).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Ready {
    /// `ready`.
    pub status: &'static str,
    /// The usage database: `ok`.
    pub database: &'static str,
    /// The catalogue's store: `file`, or with `specialists.store = "database"` `ok` or
    /// `unreachable` (informational: the last catalogue read is served meanwhile, and changes
    /// are refused with 503).
    pub catalogue_store: &'static str,
    /// Where rate limits are counted: `local`, `redis`, or `degraded (redis unreachable)`
    /// (informational: the fallback answers meanwhile, and the server stays ready).
    pub rate_limit: &'static str,
    /// Every key of every upstream endpoint configured or called so far.
    pub keys: Vec<KeyDetail>,
}

/// One upstream key at one endpoint, by its label (never the key).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct KeyDetail {
    /// `openai`, `anthropic` or `google`.
    pub provider: &'static str,
    /// The endpoint's base URL.
    pub endpoint: String,
    /// The key's label: its place in the endpoint's key list, e.g. `providers.openai.keys[1]`
    /// (`api_key` first, then `api_keys`), or `none` for a keyless endpoint.
    pub key: String,
    /// Seconds the key still rests after a 429 or a refusal (0: usable).
    pub cooling_seconds: f64,
    /// `closed`, `open` or `half_open`.
    pub breaker: &'static str,
    /// Failures in a row since the last success.
    pub consecutive_failures: u32,
}

impl From<providers::KeyHealth> for KeyDetail {
    fn from(health: providers::KeyHealth) -> Self {
        Self {
            provider: health.provider.as_str(),
            endpoint: health.endpoint,
            key: health.key,
            cooling_seconds: health.cooling_for.unwrap_or_default().as_secs_f64(),
            breaker: health.breaker.as_str(),
            consecutive_failures: health.consecutive_failures,
        }
    }
}

/// `GET /metrics`: Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String),
        Open))]
pub(crate) async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    // Always, so a budget deleted since the last scrape leaves the gauges.
    state
        .metrics
        .set_budgets(&state.budgets.views(|_| true).await);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(
            state
                .metrics
                .render_with_keys(&state.providers.key_health()),
        )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_key_detail_names_the_key_by_label_and_says_how_it_is_doing() {
        let detail = KeyDetail::from(providers::KeyHealth {
            provider: core_domain::ProviderKind::OpenAi,
            endpoint: "https://api.openai.com/v1".into(),
            key: "providers.openai.keys[1]".into(),
            cooling_for: Some(Duration::from_millis(2500)),
            breaker: providers::BreakerState::HalfOpen,
            consecutive_failures: 3,
            cooldowns_total: 1,
            breaker_opened_total: 1,
        });
        assert_eq!(
            serde_json::to_value(&detail).unwrap(),
            serde_json::json!({
                "provider": "openai",
                "endpoint": "https://api.openai.com/v1",
                "key": "providers.openai.keys[1]",
                "cooling_seconds": 2.5,
                "breaker": "half_open",
                "consecutive_failures": 3,
            })
        );
    }
}
