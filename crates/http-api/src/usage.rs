//! `GET /usage/summary`: what calls cost, grouped, for the caller (or everyone, for admins).

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use core_domain::{AccessRole, ValidationErrors};
use serde::{Deserialize, Serialize};
use usage_store::{GroupBy, RangeEnd, Scope, SummaryQuery, default_range_start, parse_range_bound};
use utoipa::{IntoParams, ToSchema};

use crate::openapi::responses::{Guarded, Unavailable, ValidationFailed};
use crate::views::SummaryRowView;

use crate::{ApiError, AppState, RequestContext};

#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct SummaryParams {
    /// Start: a date (from its start) or an RFC 3339 time. Default: 30 days before `to`.
    from: Option<String>,
    /// End: a date (included whole) or an RFC 3339 time (excluded). Default: now.
    to: Option<String>,
    /// `specialist` (default), `model`, `provider`, `user` or `day`.
    group_by: Option<String>,
    /// `own` or `all` (administrators only). Default: `all` for administrators, else `own`.
    scope: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SummaryResponse {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    #[schema(value_type = String)]
    group_by: GroupBy,
    rows: Vec<SummaryRowView>,
}

/// `GET /usage/summary?from=&to=&group_by=specialist|model|provider|user|day`.
///
/// `to` defaults to now and `from` to 30 days before `to`. `scope=own` covers the caller's
/// calls and `scope=all` everyone's (administrators only); the default is `all` for an
/// administrator and `own` for anyone else.
#[utoipa::path(get, path = "/usage/summary", tag = "usage",
    params(SummaryParams),
    responses((status = 200, description = "Calls, outcomes, tokens, cost and latency per group", body = SummaryResponse),
        (status = 422, response = ValidationFailed),
        (status = 503, response = Unavailable),
        Guarded),
    security((), ("bearer" = []))
)]
pub(crate) async fn summary(
    state: web::Data<AppState>,
    context: RequestContext,
    params: web::Query<SummaryParams>,
) -> Result<HttpResponse, ApiError> {
    let params = params.into_inner();
    let mut errors = ValidationErrors::new();
    let mut bound = |field: &str, raw: Option<&str>, end: RangeEnd| {
        raw.map(|raw| parse_range_bound(raw, end))
            .transpose()
            .map_err(|e| errors.push(field, e))
            .ok()
            .flatten()
    };
    let to = bound("to", params.to.as_deref(), RangeEnd::End);
    let from = bound("from", params.from.as_deref(), RangeEnd::Start);
    let group_by = match params.group_by.as_deref() {
        None => Some(GroupBy::Specialist),
        Some(raw) => raw
            .parse::<GroupBy>()
            .map_err(|e| errors.push("group_by", e))
            .ok(),
    };
    let to = to.unwrap_or_else(Utc::now);
    let from = from.unwrap_or_else(|| default_range_start(to));
    if from >= to && errors.is_empty() {
        errors.push("from", "must be before to");
    }
    let Some(group_by) = group_by.filter(|_| errors.is_empty()) else {
        return Err(ApiError::validation(errors));
    };

    let own = || Scope::Caller(context.identity.email_hash().cloned());
    let scope = match params.scope.as_deref() {
        Some("own") => own(),
        Some("all") => {
            context.require_admin("see everyone's usage")?;
            Scope::Everyone
        }
        Some(_) => {
            let mut details = ValidationErrors::new();
            details.push("scope", "must be own or all");
            return Err(ApiError::validation(details));
        }
        None if context.role == AccessRole::Admin => Scope::Everyone,
        None => own(),
    };
    let query = SummaryQuery {
        from,
        to,
        group_by,
        scope,
    };
    let store = state.store.clone();
    let rows = tokio::task::spawn_blocking(move || store.summary(&query))
        .await
        .map_err(|e| ApiError::internal(format!("report task failed: {e}")))??;
    Ok(HttpResponse::Ok().json(SummaryResponse {
        from,
        to,
        group_by,
        rows: rows.into_iter().map(SummaryRowView::from).collect(),
    }))
}
