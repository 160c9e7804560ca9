//! `GET /usage/summary`: what calls cost, grouped, for the caller (or everyone, for admins).

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Duration, Utc};
use core_domain::{AccessRole, ErrorCode, ValidationErrors};
use serde::{Deserialize, Serialize};
use usage_store::{GroupBy, RangeEnd, Scope, SummaryQuery, SummaryRow, parse_range_bound};

use crate::{ApiError, AppState, RequestContext};

/// How far back a summary reaches when `from` is not given.
const DEFAULT_RANGE_DAYS: i64 = 30;

#[derive(Debug, Deserialize)]
pub(crate) struct SummaryParams {
    from: Option<String>,
    to: Option<String>,
    group_by: Option<String>,
    scope: Option<String>,
}

#[derive(Debug, Serialize)]
struct SummaryResponse {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    group_by: GroupBy,
    rows: Vec<SummaryRow>,
}

/// `GET /usage/summary?from=&to=&group_by=specialist|model|provider|user|day`.
///
/// `to` defaults to now and `from` to 30 days before `to`. `scope=own` covers the caller's
/// calls and `scope=all` everyone's (administrators only); the default is `all` for an
/// administrator and `own` for anyone else.
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
    let from = from.unwrap_or(to - Duration::days(DEFAULT_RANGE_DAYS));
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
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("report task failed: {e}")))?
        .map_err(|e| {
            ApiError::new(
                ErrorCode::ServiceUnavailable,
                format!("the usage database did not answer: {e}"),
            )
        })?;
    Ok(HttpResponse::Ok().json(SummaryResponse {
        from,
        to,
        group_by,
        rows,
    }))
}
