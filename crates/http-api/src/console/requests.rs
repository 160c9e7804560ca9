//! The requests pages: the latest calls, newest first, fifty a page, narrowed by a GET form of
//! filters whose choices are the values recent calls really have; and one call's detail with
//! its attempts — what `GET /usage/calls` and `GET /usage/calls/{id}` answer, read through the
//! same store functions and the same visibility rule (users see their own calls only, and
//! someone else's id is "not found", so ids cannot be probed).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, Scope, web};
use chrono::{Duration, Utc};
use core_domain::{ErrorCode, RequestId};
use maud::{Markup, html};
use serde::Deserialize;
use usage_store::{
    CallCursor, CallFilter, CallFilterValues, CallListQuery, CallListRow, CallPage, StoredCall,
    StoredUsage,
};

use super::units::{hash_prefix, millis, query_value, usd, utc};
use super::{ConsoleError, Nav, Viewer, blocking, error_page, ok, page, respond};
use crate::AppState;

/// Rows per page.
const PAGE_ROWS: u32 = 50;
/// How far back the filters look for the values they offer.
const FILTER_VALUES_DAYS: i64 = 30;
/// The `user` filter's value for calls without a caller's email.
const ANONYMOUS: &str = "anonymous";

/// Adds this page's routes to the console's scope.
pub(crate) fn routes(scope: Scope) -> Scope {
    scope
        .route("/requests", web::get().to(list))
        .route("/requests/{id}", web::get().to(detail))
}

/// The list's query string as sent: every value text, checked by [`Filters::read`] so a bad
/// one is shown beside its control instead of failing the whole request.
#[derive(Debug, Default, Deserialize)]
struct RawFilters {
    specialist: Option<String>,
    user: Option<String>,
    status: Option<String>,
    error_code: Option<String>,
    door: Option<String>,
    streamed: Option<String>,
    before: Option<String>,
}

impl RawFilters {
    /// The filters' values in [`CallFilter::NAMES`] order.
    fn filter_values(&self) -> [Option<&String>; 6] {
        [
            self.specialist.as_ref(),
            self.user.as_ref(),
            self.status.as_ref(),
            self.error_code.as_ref(),
            self.door.as_ref(),
            self.streamed.as_ref(),
        ]
    }
}

/// The filters as read, with what was wrong with each control's value.
#[derive(Debug, Default)]
struct Filters {
    raw: RawFilters,
    filter: CallFilter,
    before: Option<CallCursor>,
    /// `(control name, message)`, in form order.
    problems: Vec<(&'static str, String)>,
}

/// A filter value: `None` for absent or blank (the "any" choice).
fn given(value: Option<&String>) -> Option<&str> {
    value.map(|v| v.trim()).filter(|v| !v.is_empty())
}

impl Filters {
    fn read(query_string: &str) -> Self {
        let raw = match web::Query::<RawFilters>::from_query(query_string) {
            Ok(query) => query.into_inner(),
            Err(error) => {
                return Self {
                    problems: vec![("form", format!("The filters could not be read: {error}"))],
                    ..Self::default()
                };
            }
        };
        let mut problems = Vec::new();
        let mut filter = CallFilter::default();
        for (name, value) in CallFilter::NAMES.into_iter().zip(raw.filter_values()) {
            if let Some(value) = given(value)
                && let Err(message) = filter.set(name, value)
            {
                problems.push((name, format!("The value {message}.")));
            }
        }
        let before = match given(raw.before.as_ref()).map(CallCursor::parse) {
            None => None,
            Some(Ok(cursor)) => Some(cursor),
            Some(Err(_)) => {
                problems.push((
                    "form",
                    "The page asked for does not exist; start again from the newest calls."
                        .to_owned(),
                ));
                None
            }
        };
        Self {
            raw,
            filter,
            before,
            problems,
        }
    }

    fn problem(&self, control: &str) -> Option<&str> {
        self.problems
            .iter()
            .find(|(name, _)| *name == control)
            .map(|(_, message)| message.as_str())
    }

    /// The query string of these filters (without the page cursor), for the "Older" link.
    fn query_string(&self) -> String {
        CallFilter::NAMES
            .into_iter()
            .zip(self.raw.filter_values())
            .filter_map(|(name, value)| given(value).map(|v| format!("{name}={}", query_value(v))))
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// `GET /console/requests`.
async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    viewer: Viewer,
) -> Result<HttpResponse, ConsoleError> {
    let filters = Filters::read(req.query_string());
    let scope = viewer.scope();
    let since = Utc::now() - Duration::days(FILTER_VALUES_DAYS);
    let store = state.store.clone();
    let values_scope = scope.clone();
    let values = blocking("reading the filters' values", move || {
        store.call_filter_values(&values_scope, since)
    })
    .await?;
    if !filters.problems.is_empty() {
        return Ok(respond(
            StatusCode::BAD_REQUEST,
            list_page(&viewer, &filters, &values, None),
        ));
    }
    let query = CallListQuery {
        scope,
        filter: filters.filter.clone(),
        before: filters.before.clone(),
        limit: PAGE_ROWS,
    };
    let store = state.store.clone();
    let calls = blocking("listing calls", move || store.list_calls(&query)).await?;
    Ok(ok(list_page(&viewer, &filters, &values, Some(&calls))))
}

fn list_page(
    viewer: &Viewer,
    filters: &Filters,
    values: &CallFilterValues,
    calls: Option<&CallPage>,
) -> Markup {
    let body = html! {
        @if !filters.problems.is_empty() {
            div #form-errors role="alert" {
                p.error { "Some filters are not valid:" }
                ul {
                    @for (control, message) in &filters.problems {
                        li {
                            @if *control == "form" {
                                (message)
                            } @else {
                                a href={ "#filter-" (control) } { (control) } ": " (message)
                            }
                        }
                    }
                }
            }
        }
        (filter_form(filters, values))
        @if let Some(calls) = calls {
            (call_table(calls))
            nav.pager aria-label="Pages" {
                @if filters.before.is_some() {
                    a href={ "/console/requests?" (filters.query_string()) } { "Newest" }
                }
                @if let Some(next) = &calls.next {
                    @let query = filters.query_string();
                    @let separator = if query.is_empty() { "" } else { "&" };
                    a #older href={ "/console/requests?" (query) (separator) "before=" (query_value(&next.to_token())) } {
                        "Older"
                    }
                }
            }
        }
    };
    page(Some(viewer), Nav::Requests, "Requests", body)
}

/// One `<select>` of the filter form: "any" first, then `choices` as `(value, label)`; the
/// current value is kept (and offered) even when recent calls no longer have it.
fn select(
    filters: &Filters,
    name: &'static str,
    label: &str,
    current: Option<&String>,
    choices: Vec<(String, String)>,
) -> Markup {
    let current = given(current);
    let problem = filters.problem(name);
    let mut choices = choices;
    if let Some(current) = current
        && problem.is_none()
        && !choices.iter().any(|(value, _)| value == current)
    {
        choices.push((current.to_owned(), current.to_owned()));
    }
    let id = format!("filter-{name}");
    let error_id = format!("filter-error-{name}");
    html! {
        label for=(id) {
            (label)
            select #(id) name=(name)
                aria-invalid=[problem.map(|_| "true")]
                aria-describedby=[problem.map(|_| error_id.as_str())] {
                option value="" { "any" }
                @for (value, text) in &choices {
                    option value=(value) selected[current == Some(value.as_str())] { (text) }
                }
            }
            @if let Some(problem) = problem {
                span.field-error #(error_id) { (problem) }
            }
        }
    }
}

fn filter_form(filters: &Filters, values: &CallFilterValues) -> Markup {
    let same = |list: &[String]| -> Vec<(String, String)> {
        list.iter().map(|v| (v.clone(), v.clone())).collect()
    };
    let users: Vec<(String, String)> = values
        .users
        .iter()
        .map(|user| {
            let label = if user == ANONYMOUS {
                user.clone()
            } else {
                hash_prefix(user)
            };
            (user.clone(), label)
        })
        .collect();
    let fixed = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(v, l)| ((*v).to_owned(), (*l).to_owned()))
            .collect()
    };
    let raw = &filters.raw;
    html! {
        form.filters #call-filters method="get" action="/console/requests" {
            (select(filters, "specialist", "Specialist", raw.specialist.as_ref(), same(&values.specialists)))
            (select(filters, "user", "User", raw.user.as_ref(), users))
            (select(filters, "status", "Status", raw.status.as_ref(),
                fixed(&[("success", "success"), ("failure", "failure")])))
            (select(filters, "error_code", "Error code", raw.error_code.as_ref(), same(&values.error_codes)))
            (select(filters, "door", "Door", raw.door.as_ref(), same(&values.doors)))
            (select(filters, "streamed", "Streamed", raw.streamed.as_ref(),
                fixed(&[("true", "streamed"), ("false", "not streamed")])))
            button type="submit" { "Filter" }
            a.button.secondary href="/console/requests" { "Clear" }
        }
    }
}

/// Who made a call, for a table cell: the API key's name, else the email hash's prefix.
fn caller(api_key: Option<&str>, email_hash: Option<&str>) -> String {
    match (api_key, email_hash) {
        (Some(key), _) => format!("key {key}"),
        (None, Some(hash)) => hash_prefix(hash),
        (None, None) => ANONYMOUS.to_owned(),
    }
}

fn status_cell(success: bool, error_code: Option<&str>) -> Markup {
    html! {
        @if success {
            span.status-ok { "succeeded" }
        } @else {
            span.status-bad { "failed" }
            @if let Some(code) = error_code { " " code { (code) } }
        }
    }
}

fn call_table(calls: &CallPage) -> Markup {
    html! {
        table #calls {
            caption { "Calls, newest first" }
            thead {
                tr {
                    th scope="col" { "Time (UTC)" }
                    th scope="col" { "Specialist" }
                    th scope="col" { "Model / provider" }
                    th scope="col" { "User" }
                    th scope="col" { "Door" }
                    th scope="col" { "Streamed" }
                    th scope="col" { "Status" }
                    th scope="col" .num { "Tokens in" }
                    th scope="col" .num { "Tokens out" }
                    th scope="col" .num { "Cost" }
                    th scope="col" .num { "Latency" }
                }
            }
            tbody {
                @for call in &calls.calls {
                    (call_row(call))
                }
                @if calls.calls.is_empty() {
                    tr { td colspan="11" { "No calls match." } }
                }
            }
        }
    }
}

fn call_row(call: &CallListRow) -> Markup {
    html! {
        tr data-request-id=(call.request_id) {
            td {
                a href={ "/console/requests/" (call.request_id) } {
                    time datetime=(call.timestamp.to_rfc3339()) {
                        (call.timestamp.format("%Y-%m-%d %H:%M:%S"))
                    }
                }
            }
            td { (call.specialist_name) " " span.muted { "(" (call.specialist_id) ")" } }
            td { (call.model) " / " (call.provider) }
            td { (caller(call.api_key.as_deref(), call.user_email_hash.as_deref())) }
            td { (call.door) }
            td { @if call.streamed { "yes" } @else { "no" } }
            td { (status_cell(call.success, call.error_code.as_deref())) }
            td.num { (call.input_tokens) }
            td.num { (call.output_tokens) }
            td.num { (usd(call.cost_usd)) }
            td.num { (millis(call.latency_ms)) }
        }
    }
}

/// `GET /console/requests/{id}`.
async fn detail(
    state: web::Data<AppState>,
    viewer: Viewer,
    id: web::Path<String>,
) -> Result<HttpResponse, ConsoleError> {
    let not_found = |viewer: &Viewer| {
        error_page(
            Some(viewer),
            StatusCode::NOT_FOUND,
            "Call not found",
            "No call you may see has this request id.",
        )
    };
    // An id the gateway could not have made has no row.
    let Ok(request_id) = RequestId::parse(id.into_inner()) else {
        return Ok(not_found(&viewer));
    };
    let store = state.store.clone();
    let found = blocking("reading a call", move || store.call(&request_id)).await?;
    let visible = |call: &StoredCall| {
        viewer.is_admin()
            || call.row.user_email_hash.as_deref()
                == viewer.identity.email_hash().map(|h| h.as_str())
    };
    match found {
        Some(call) if visible(&call) => Ok(ok(page(
            Some(&viewer),
            Nav::Requests,
            &format!("Call {}", call.row.request_id),
            detail_body(&call),
        ))),
        _ => Ok(not_found(&viewer)),
    }
}

fn detail_body(call: &StoredCall) -> Markup {
    let row = &call.row;
    html! {
        p { a href="/console/requests" { "All calls" } }
        dl #call-detail {
            (term("Request id", html! { code { (row.request_id) } }))
            @if let Some(client_id) = &row.client_request_id {
                (term("Client's request id", html! { code { (client_id) } }))
            }
            (term("Time", html! { (utc(row.timestamp.and_utc())) }))
            (term("Specialist", html! { (row.specialist_name) " (" (row.specialist_id) ")" }))
            (term("Provider", html! { (row.provider) }))
            (term("Model", html! { (row.model) }))
            (term("Door", html! { (row.door) }))
            (term("Streamed", html! { @if row.streamed { "yes" } @else { "no" } }))
            (term("Status", status_cell(row.success, row.error_code.as_deref())))
            (term("Error code", html! { (row.error_code.as_deref().unwrap_or("none")) }))
            (term("User", html! { (row.user_email_hash.as_deref().unwrap_or(ANONYMOUS)) }))
            (term("End user", html! { (row.end_user.as_deref().unwrap_or("none")) }))
            (term("API key", html! { (row.api_key.as_deref().unwrap_or("none")) }))
            (term("Input tokens", html! { (row.input_tokens) }))
            (term("Output tokens", html! { (row.output_tokens) }))
            (term("Cached input tokens", html! { (row.cached_input_tokens) }))
            (term("Cache write tokens", html! { (row.cache_write_tokens) }))
            (term("Reasoning tokens", html! { (row.reasoning_tokens) }))
            (term("Token counts", html! { @if row.tokens_estimated { "estimated" } @else { "reported" } }))
            (term("Cost", html! {
                (usd(row.estimated_cost_usd))
                @if !row.pricing_known { " (model price unknown)" }
            }))
            (term("Latency", html! { (millis(row.latency_ms)) }))
            (term("Time to first token", html! {
                @match row.ttft_ms { Some(ms) => (millis(ms)), None => "none" }
            }))
            (term("Attempts", html! { (row.attempts) }))
        }
        h2 { "Attempts" }
        (attempt_table(call))
    }
}

fn term(name: &str, value: Markup) -> Markup {
    html! { div { dt { (name) } dd { (value) } } }
}

fn attempt_table(call: &StoredCall) -> Markup {
    html! {
        table #attempts {
            caption { "Each upstream attempt, in order" }
            thead {
                tr {
                    th scope="col" .num { "#" }
                    th scope="col" { "Target" }
                    th scope="col" { "Outcome" }
                    th scope="col" .num { "Tokens in" }
                    th scope="col" .num { "Tokens out" }
                    th scope="col" .num { "Cost" }
                    th scope="col" .num { "Latency" }
                }
            }
            tbody {
                @for (number, attempt) in (1..).zip(&call.attempts) {
                    tr {
                        td.num { (number) }
                        td {
                            (attempt.provider.as_str()) " " (attempt.model)
                            @if let Some(base_url) = &attempt.base_url { " at " (base_url) }
                        }
                        td {
                            (status_cell(attempt.is_success(), attempt.error_code.map(ErrorCode::as_str)))
                            @if attempt.continuation { " (continued the stream)" }
                        }
                        td.num { (attempt.usage.input_tokens) }
                        td.num { (attempt.usage.output_tokens) }
                        td.num {
                            (usd(attempt.cost.as_dollars()))
                            @if !attempt.pricing_known { " (price unknown)" }
                        }
                        td.num { (millis(attempt.latency.as_secs_f64() * 1000.0)) }
                    }
                }
                @if call.attempts.is_empty() {
                    (single_attempt(&call.row))
                }
            }
        }
    }
}

/// A call of one attempt keeps no attempt rows: its row is that attempt.
fn single_attempt(row: &StoredUsage) -> Markup {
    html! {
        @if row.attempts == 0 {
            tr { td colspan="7" { "No upstream was called." } }
        } @else {
            tr {
                td.num { "1" }
                td { (row.provider) " " (row.model) }
                td { (status_cell(row.success, row.error_code.as_deref())) }
                td.num { (row.input_tokens) }
                td.num { (row.output_tokens) }
                td.num { (usd(row.estimated_cost_usd)) }
                td.num { (millis(row.latency_ms)) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use core_domain::Door;

    use super::*;

    #[test]
    fn good_filters_are_read_and_kept_for_the_next_page() {
        let hash = "ab".repeat(32);
        let filters = Filters::read(&format!(
            "specialist=demo&user={hash}&status=failure&error_code=upstream_timeout&door=messages&streamed=true&before="
        ));
        assert!(filters.problems.is_empty(), "{:?}", filters.problems);
        assert_eq!(
            filters.filter,
            CallFilter {
                specialist: Some("demo".into()),
                user: Some(hash.clone()),
                success: Some(false),
                error_code: Some("upstream_timeout".into()),
                door: Some(Door::Messages),
                streamed: Some(true),
            }
        );
        assert_eq!(
            filters.query_string(),
            format!(
                "specialist=demo&user={hash}&status=failure&error_code=upstream_timeout&door=messages&streamed=true"
            )
        );
    }

    #[test]
    fn blank_values_mean_any() {
        let filters = Filters::read("specialist=&user=&status=&door=+");
        assert!(filters.problems.is_empty());
        assert_eq!(filters.filter, CallFilter::default());
        assert_eq!(filters.query_string(), "");
    }

    #[test]
    fn each_bad_value_is_named_by_its_control() {
        let filters = Filters::read(
            "specialist=%3Cscript%3E&user=bob&status=maybe&error_code=nope&door=side&streamed=yes&before=junk",
        );
        let named: Vec<&str> = filters.problems.iter().map(|(name, _)| *name).collect();
        assert_eq!(
            named,
            [
                "specialist",
                "user",
                "status",
                "error_code",
                "door",
                "streamed",
                "form"
            ]
        );
        assert_eq!(filters.filter, CallFilter::default());
    }

    #[test]
    fn the_callers_key_name_is_preferred_to_their_hash() {
        let hash = "cd".repeat(32);
        assert_eq!(caller(Some("ops"), Some(&hash)), "key ops");
        assert_eq!(caller(None, Some(&hash)), "cdcdcdcdcdcd…");
        assert_eq!(caller(None, None), "anonymous");
    }
}
