//! `GET /usage/summary`: what calls cost, grouped, for the caller (or everyone, for admins);
//! `GET /usage/targets`: what each upstream target was asked to do, across every attempt;
//! `GET /usage/calls`: the calls themselves, newest first, filtered, a page at a time;
//! `GET /usage/calls/{request_id}`: one call's row and its attempts.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

use core_domain::{AccessRole, RequestId, ValidationErrors};
use serde::{Deserialize, Serialize};
use usage_store::{
    AttemptRecord, CALL_PAGE_MAX, CallCursor, CallFilter, CallListQuery, CallListRow, GroupBy,
    Percentiles, RangeEnd, Scope, StoredCall, SummaryQuery, TargetQuery, TargetRow,
    default_range_start, parse_range_bound,
};
use utoipa::{IntoParams, ToSchema};

use crate::openapi::responses::{Guarded, Unavailable, UsageCallNotFound, ValidationFailed};
use crate::views::SummaryRowView;

use crate::{ApiCode, ApiError, AppState, RequestContext};

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
    /// `exact`: the rows' p50/p95 are nearest-rank over the calls. `approximate`: the range
    /// held more calls than `database.exact_report_calls` and its finished hours were read
    /// from the hourly rollup, whose latency bins put p50/p95 within 0.5% of the exact value;
    /// counts, tokens and cost are exact either way.
    #[schema(value_type = String, example = "exact")]
    latency_percentiles: Percentiles,
    rows: Vec<SummaryRowView>,
    /// Spend against every budget the caller may see, in each budget's current period
    /// (whatever `from` and `to` say).
    budgets: Vec<crate::budget_routes::BudgetStatus>,
}

/// `GET /usage/summary?from=&to=&group_by=specialist|model|provider|user|day|door`.
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
    let (from, to) = bounds(params.from.as_deref(), params.to.as_deref(), &mut errors);
    let group_by = match params.group_by.as_deref() {
        None => Some(GroupBy::Specialist),
        Some(raw) => raw
            .parse::<GroupBy>()
            .map_err(|e| errors.push("group_by", e))
            .ok(),
    };
    check_order(from, to, &mut errors);
    let Some(group_by) = group_by.filter(|_| errors.is_empty()) else {
        return Err(ApiError::validation(errors));
    };
    let scope = scope(&context, params.scope.as_deref())?;
    let query = SummaryQuery {
        from,
        to,
        group_by,
        scope,
    };
    let store = state.store.clone();
    let summary = tokio::task::spawn_blocking(move || store.summary(&query))
        .await
        .map_err(|e| ApiError::internal(format!("report task failed: {e}")))??;
    let budgets = state
        .budgets
        .views(|entry| crate::budget_routes::visible_to(&context, entry))
        .await;
    Ok(HttpResponse::Ok().json(SummaryResponse {
        from,
        to,
        group_by,
        latency_percentiles: summary.percentiles,
        rows: summary.rows.into_iter().map(SummaryRowView::from).collect(),
        budgets: budgets
            .iter()
            .map(crate::budget_routes::BudgetStatus::from)
            .collect(),
    }))
}

/// The report's range from its parameters (see [`SummaryParams`]), the defaults standing in
/// for a bound that is missing or (its problem pushed to `errors`) unreadable.
fn bounds(
    from: Option<&str>,
    to: Option<&str>,
    errors: &mut ValidationErrors,
) -> (DateTime<Utc>, DateTime<Utc>) {
    let mut bound = |field: &str, raw: Option<&str>, end: RangeEnd| {
        raw.map(|raw| parse_range_bound(raw, end))
            .transpose()
            .map_err(|e| errors.push(field, e))
            .ok()
            .flatten()
    };
    let to = bound("to", to, RangeEnd::End);
    let from = bound("from", from, RangeEnd::Start);
    let to = to.unwrap_or_else(Utc::now);
    (from.unwrap_or_else(|| default_range_start(to)), to)
}

/// An empty range is refused, unless the parameters already failed (their bounds are then
/// defaults, and their order means nothing).
fn check_order(from: DateTime<Utc>, to: DateTime<Utc>, errors: &mut ValidationErrors) {
    if from >= to && errors.is_empty() {
        errors.push("from", "must be before to");
    }
}

/// Whose rows a report covers: `own`, `all` (administrators only), or by default everyone's
/// for an administrator and the caller's own for anyone else.
fn scope(context: &RequestContext, raw: Option<&str>) -> Result<Scope, ApiError> {
    let own = || Scope::Caller(context.identity.email_hash().cloned());
    Ok(match raw {
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
    })
}

#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct TargetParams {
    /// Start: a date (from its start) or an RFC 3339 time. Default: 30 days before `to`.
    from: Option<String>,
    /// End: a date (included whole) or an RFC 3339 time (excluded). Default: now.
    to: Option<String>,
    /// `own` or `all` (administrators only). Default: `all` for administrators, else `own`.
    scope: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TargetResponse {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    /// Calls in the range, those that never reached an upstream included.
    calls: i64,
    /// Calls that made more than one attempt (fell back, or had a stream continued).
    fallback_calls: i64,
    /// One row per provider and model, ordered by provider then model.
    targets: Vec<TargetRowView>,
}

/// One target's attempts: a call of one attempt counts once for the target its row names, a
/// call of several counts each attempt for that attempt's target.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TargetRowView {
    provider: String,
    model: String,
    attempts: i64,
    /// Attempts that served their call.
    successes: i64,
    failures: i64,
    /// The failures by error code.
    failures_by_code: BTreeMap<String, i64>,
    /// Attempts that continued a stream another attempt began.
    continuations: i64,
    input_tokens: i64,
    /// A failed attempt's streamed tokens included: its provider billed them.
    output_tokens: i64,
    cost_usd: f64,
}

impl From<TargetRow> for TargetRowView {
    fn from(r: TargetRow) -> Self {
        Self {
            provider: r.provider,
            model: r.model,
            attempts: r.attempts,
            successes: r.successes,
            failures: r.failures,
            failures_by_code: r.failures_by_code,
            continuations: r.continuations,
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
            cost_usd: r.cost_usd,
        }
    }
}

/// `GET /usage/targets?from=&to=&scope=`: attempts, outcomes, tokens and cost per upstream
/// target (provider and model) across every attempt, and how many calls needed more than one.
#[utoipa::path(get, path = "/usage/targets", tag = "usage",
    params(TargetParams),
    responses((status = 200, description = "Attempts, outcomes, tokens and cost per target", body = TargetResponse),
        (status = 422, response = ValidationFailed),
        (status = 503, response = Unavailable),
        Guarded),
    security((), ("bearer" = []))
)]
pub(crate) async fn targets(
    state: web::Data<AppState>,
    context: RequestContext,
    params: web::Query<TargetParams>,
) -> Result<HttpResponse, ApiError> {
    let params = params.into_inner();
    let mut errors = ValidationErrors::new();
    let (from, to) = bounds(params.from.as_deref(), params.to.as_deref(), &mut errors);
    check_order(from, to, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let scope = scope(&context, params.scope.as_deref())?;
    let query = TargetQuery { from, to, scope };
    let store = state.store.clone();
    let report = tokio::task::spawn_blocking(move || store.targets(&query))
        .await
        .map_err(|e| ApiError::internal(format!("report task failed: {e}")))??;
    Ok(HttpResponse::Ok().json(TargetResponse {
        from,
        to,
        calls: report.calls,
        fallback_calls: report.fallback_calls,
        targets: report
            .targets
            .into_iter()
            .map(TargetRowView::from)
            .collect(),
    }))
}

/// One call's usage row and, when it made several attempts, each of them.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CallView {
    request_id: String,
    client_request_id: Option<String>,
    /// When the call started (UTC).
    timestamp: DateTime<Utc>,
    /// SHA-256 of the caller's email; absent for the anonymous caller.
    user_email_hash: Option<String>,
    specialist_id: String,
    specialist_name: String,
    /// The target that served the call (or the last one tried, for a failure).
    provider: String,
    model: String,
    /// Summed over every attempt.
    input_tokens: i64,
    output_tokens: i64,
    cached_input_tokens: i64,
    cache_write_tokens: i64,
    reasoning_tokens: i64,
    tokens_estimated: bool,
    /// Summed over every attempt.
    cost_usd: f64,
    pricing_known: bool,
    latency_ms: f64,
    ttft_ms: Option<f64>,
    success: bool,
    error_code: Option<String>,
    streamed: bool,
    end_user: Option<String>,
    /// The name of the API key the caller authenticated with (`auth.api_keys[].name`); absent
    /// for a JWT or anonymous caller.
    api_key: Option<String>,
    /// The front door the call came in by: `native`, `chat_completions`, `messages`,
    /// `responses` or `embeddings`.
    door: String,
    /// Upstream attempts made: 0 when the call never reached an upstream.
    attempts: i16,
    /// Each attempt, in order, when there were several; empty for a call of one attempt.
    attempt_details: Vec<AttemptView>,
}

/// One upstream attempt of a call.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AttemptView {
    /// 1 for the first.
    attempt: usize,
    provider: String,
    model: String,
    base_url: Option<String>,
    /// True when this attempt served the call.
    success: bool,
    error_code: Option<String>,
    input_tokens: u32,
    output_tokens: u32,
    cached_input_tokens: u32,
    cache_write_tokens: u32,
    reasoning_tokens: u32,
    tokens_estimated: bool,
    cost_usd: f64,
    pricing_known: bool,
    latency_ms: f64,
    /// True when it continued a stream an earlier attempt began.
    continuation: bool,
}

impl AttemptView {
    fn new(number: usize, a: AttemptRecord) -> Self {
        Self {
            attempt: number,
            provider: a.provider.as_str().to_owned(),
            success: a.is_success(),
            error_code: a.error_code.map(|c| c.as_str().to_owned()),
            model: a.model,
            base_url: a.base_url,
            input_tokens: a.usage.input_tokens,
            output_tokens: a.usage.output_tokens,
            cached_input_tokens: a.usage.cached_input_tokens,
            cache_write_tokens: a.usage.cache_write_tokens,
            reasoning_tokens: a.usage.reasoning_tokens,
            tokens_estimated: a.usage.is_estimated,
            cost_usd: a.cost.as_dollars(),
            pricing_known: a.pricing_known,
            latency_ms: a.latency.as_secs_f64() * 1000.0,
            continuation: a.continuation,
        }
    }
}

impl From<StoredCall> for CallView {
    fn from(call: StoredCall) -> Self {
        let r = call.row;
        Self {
            request_id: r.request_id,
            client_request_id: r.client_request_id,
            timestamp: r.timestamp.and_utc(),
            user_email_hash: r.user_email_hash,
            specialist_id: r.specialist_id,
            specialist_name: r.specialist_name,
            provider: r.provider,
            model: r.model,
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
            cached_input_tokens: r.cached_input_tokens,
            cache_write_tokens: r.cache_write_tokens,
            reasoning_tokens: r.reasoning_tokens,
            tokens_estimated: r.tokens_estimated,
            cost_usd: r.estimated_cost_usd,
            pricing_known: r.pricing_known,
            latency_ms: r.latency_ms,
            ttft_ms: r.ttft_ms,
            success: r.success,
            error_code: r.error_code,
            streamed: r.streamed,
            end_user: r.end_user,
            api_key: r.api_key,
            door: r.door,
            attempts: r.attempts,
            attempt_details: call
                .attempts
                .into_iter()
                .zip(1..)
                .map(|(attempt, number)| AttemptView::new(number, attempt))
                .collect(),
        }
    }
}

/// `GET /usage/calls/{request_id}`: one call's usage row (by the gateway's `X-Request-Id`) and
/// its attempts. Administrators see any call; anyone else only their own, and another's
/// answers 404 like a missing one, so ids cannot be probed.
#[utoipa::path(get, path = "/usage/calls/{request_id}", tag = "usage",
    params(("request_id" = String, Path, description = "The call's X-Request-Id")),
    responses((status = 200, description = "The call's row and its attempts", body = CallView),
        (status = 404, response = UsageCallNotFound),
        (status = 503, response = Unavailable),
        Guarded),
    security((), ("bearer" = []))
)]
pub(crate) async fn call(
    state: web::Data<AppState>,
    context: RequestContext,
    request_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let raw = request_id.into_inner();
    let not_found = || {
        ApiError::new(
            ApiCode::NotFound,
            format!(
                "no usage row for request id '{}'",
                raw.chars().take(128).collect::<String>().escape_debug()
            ),
        )
    };
    // An id the gateway could not have made has no row.
    let request_id = RequestId::parse(raw.as_str()).map_err(|_| not_found())?;
    let store = state.store.clone();
    let found = tokio::task::spawn_blocking(move || store.call(&request_id))
        .await
        .map_err(|e| ApiError::internal(format!("usage lookup task failed: {e}")))??;
    let visible = |call: &StoredCall| {
        context.role == AccessRole::Admin
            || call.row.user_email_hash.as_deref()
                == context.identity.email_hash().map(|h| h.as_str())
    };
    match found {
        Some(call) if visible(&call) => Ok(HttpResponse::Ok().json(CallView::from(call))),
        _ => Err(not_found()),
    }
}

/// Rows per page of `GET /usage/calls` when `limit` is not given.
const DEFAULT_CALL_PAGE: u32 = 50;

#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct CallListParams {
    /// Only this specialist's calls (its id).
    specialist: Option<String>,
    /// Only this caller's calls: an email hash (64 hex digits), or `anonymous`.
    user: Option<String>,
    /// `success` or `failure`.
    status: Option<String>,
    /// Only calls that failed with this error code.
    error_code: Option<String>,
    /// Only calls that came in by this door: `native`, `chat_completions`, `messages`,
    /// `responses` or `embeddings`.
    door: Option<String>,
    /// `true` or `false`.
    streamed: Option<String>,
    /// The `next` of the previous page.
    before: Option<String>,
    /// Rows per page, 1 to 200. Default: 50.
    limit: Option<String>,
    /// `own` or `all` (administrators only). Default: `all` for administrators, else `own`.
    scope: Option<String>,
}

/// One page of calls.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CallListResponse {
    /// Newest first.
    calls: Vec<CallListRowView>,
    /// Pass as `before` for the next page; `null` on the last page.
    next: Option<String>,
}

/// One call, as a table of calls shows it; `GET /usage/calls/{request_id}` has the rest.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CallListRowView {
    request_id: String,
    /// When the call started (UTC).
    timestamp: DateTime<Utc>,
    specialist_id: String,
    specialist_name: String,
    /// The target that served the call (or the last one tried, for a failure).
    provider: String,
    model: String,
    /// SHA-256 of the caller's email; absent for the anonymous caller.
    user_email_hash: Option<String>,
    /// The name of the API key the caller authenticated with.
    api_key: Option<String>,
    /// `native`, `chat_completions`, `messages`, `responses` or `embeddings`.
    door: String,
    streamed: bool,
    success: bool,
    error_code: Option<String>,
    /// Summed over every attempt.
    input_tokens: i64,
    output_tokens: i64,
    /// Summed over every attempt.
    cost_usd: f64,
    latency_ms: f64,
    /// Upstream attempts made: 0 when the call never reached an upstream.
    attempts: i16,
}

impl From<CallListRow> for CallListRowView {
    fn from(r: CallListRow) -> Self {
        Self {
            request_id: r.request_id,
            timestamp: r.timestamp,
            specialist_id: r.specialist_id,
            specialist_name: r.specialist_name,
            provider: r.provider,
            model: r.model,
            user_email_hash: r.user_email_hash,
            api_key: r.api_key,
            door: r.door,
            streamed: r.streamed,
            success: r.success,
            error_code: r.error_code,
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
            cost_usd: r.cost_usd,
            latency_ms: r.latency_ms,
            attempts: r.attempts,
        }
    }
}

/// The filter and page the parameters ask for; each unreadable one is pushed to `errors` under
/// its own name.
fn call_list_request(
    params: &CallListParams,
    errors: &mut ValidationErrors,
) -> (CallFilter, Option<CallCursor>, u32) {
    let mut filter = CallFilter::default();
    let given = [
        &params.specialist,
        &params.user,
        &params.status,
        &params.error_code,
        &params.door,
        &params.streamed,
    ];
    for (name, raw) in CallFilter::NAMES.into_iter().zip(given) {
        if let Some(raw) = raw.as_deref()
            && let Err(message) = filter.set(name, raw)
        {
            errors.push(name, message);
        }
    }
    let before = params.before.as_deref().map(CallCursor::parse);
    let limit = params.limit.as_deref().map(|raw| {
        raw.parse::<u32>()
            .ok()
            .filter(|n| (1..=CALL_PAGE_MAX).contains(n))
    });
    if let Some(Err(message)) = &before {
        errors.push("before", message.clone());
    }
    if let Some(None) = limit {
        errors.push(
            "limit",
            format!("must be a whole number from 1 to {CALL_PAGE_MAX}"),
        );
    }
    (
        filter,
        before.and_then(Result::ok),
        limit.flatten().unwrap_or(DEFAULT_CALL_PAGE),
    )
}

/// `GET /usage/calls?specialist=&user=&status=&error_code=&door=&streamed=&before=&limit=`:
/// the calls, newest first, a page at a time; `next` is the `before` of the following page.
/// Administrators see everyone's calls (or, with `scope=own`, their own); anyone else only
/// their own.
#[utoipa::path(get, path = "/usage/calls", tag = "usage",
    params(CallListParams),
    responses((status = 200, description = "One page of calls, newest first", body = CallListResponse),
        (status = 422, response = ValidationFailed),
        (status = 503, response = Unavailable),
        Guarded),
    security((), ("bearer" = []))
)]
pub(crate) async fn list_calls(
    state: web::Data<AppState>,
    context: RequestContext,
    params: web::Query<CallListParams>,
) -> Result<HttpResponse, ApiError> {
    let params = params.into_inner();
    let mut errors = ValidationErrors::new();
    let (filter, before, limit) = call_list_request(&params, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let scope = scope(&context, params.scope.as_deref())?;
    let query = CallListQuery {
        scope,
        filter,
        before,
        limit,
    };
    let store = state.store.clone();
    let page = tokio::task::spawn_blocking(move || store.list_calls(&query))
        .await
        .map_err(|e| ApiError::internal(format!("call list task failed: {e}")))??;
    Ok(HttpResponse::Ok().json(CallListResponse {
        calls: page.calls.into_iter().map(CallListRowView::from).collect(),
        next: page.next.map(|cursor| cursor.to_token()),
    }))
}
