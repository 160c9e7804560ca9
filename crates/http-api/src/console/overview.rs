//! The overview page (`/console`): a time range's totals, charts of calls, cost, error rate and
//! p95 latency over time split by one dimension, and the per-key table — the numbers of
//! `/usage/summary`, read through the same store functions for the same range and scope.

use std::collections::HashMap;
use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::http::header::HeaderValue;
use actix_web::{HttpRequest, HttpResponse, Scope, web};
use chrono::{DateTime, TimeDelta, Utc};
use maud::{Markup, html};
use serde::Deserialize;
use usage_store::{
    Bucket, GroupBy, OverviewQuery, Percentiles, RangeEnd, SeriesRow, SummaryRow, Totals,
    parse_range_bound,
};

use super::chart::{self, Chart, Kind, Series, Unit};
use super::units::usd;
use super::{ConsoleError, Nav, Viewer, blocking, ok, page, respond};
use crate::AppState;

/// Keys drawn on their own in the charts; the rest are added up as "other".
const CHART_KEYS: usize = 5;
/// Rows of the split table, at most (the busiest keys): keeps the page light with thousands
/// of users.
const MAX_SPLIT_ROWS: usize = 100;
/// Hourly buckets beyond this switch to days.
const MAX_HOUR_BUCKETS: i64 = 90;
/// Points drawn per chart, at most: longer ranges draw each point over several buckets, which
/// keeps a 400-day page light (a bar per day and key would be half a megabyte).
const MAX_POINTS: usize = 62;
/// The longest custom range, in days.
const MAX_RANGE_DAYS: i64 = 400;
/// Ranges up to this long get hourly buckets unless asked otherwise.
const HOURLY_UP_TO: TimeDelta = TimeDelta::days(2);

/// Adds this page's routes to the console's scope.
pub(crate) fn routes(scope: Scope) -> Scope {
    scope
        .route("", web::get().to(show))
        .route("/", web::get().to(show))
}

/// The range form's fields as sent (all optional; checked by [`Selection::read`]).
#[derive(Debug, Default, Deserialize)]
struct RangeParams {
    range: Option<String>,
    from: Option<String>,
    to: Option<String>,
    bucket: Option<String>,
    split: Option<String>,
}

/// The preset ranges and the custom one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RangeChoice {
    Day,
    Week,
    Month,
    Custom,
}

impl RangeChoice {
    const ALL: [(Self, &'static str, &'static str); 4] = [
        (Self::Day, "24h", "Last 24 hours"),
        (Self::Week, "7d", "Last 7 days"),
        (Self::Month, "30d", "Last 30 days"),
        (Self::Custom, "custom", "Custom dates"),
    ];

    fn parse(raw: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|(_, name, _)| *name == raw)
            .map(|(choice, _, _)| choice)
    }
}

/// The dimensions the page splits by (day is a bucket, not a split).
const SPLITS: [(GroupBy, &str); 5] = [
    (GroupBy::Specialist, "Specialist"),
    (GroupBy::Model, "Model"),
    (GroupBy::Provider, "Provider"),
    (GroupBy::User, "User"),
    (GroupBy::Door, "Door"),
];

/// A problem with one of the form's fields, shown beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldError {
    field: &'static str,
    message: String,
}

/// What the page shows: the form's values as read, and the range they mean.
#[derive(Debug, Clone)]
struct Selection {
    range: RangeChoice,
    /// The custom dates as typed (shown back in the form).
    from_text: String,
    to_text: String,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    bucket: Bucket,
    split: GroupBy,
    /// Why the bucket differs from the one asked for, if it does.
    bucket_note: Option<String>,
}

impl Selection {
    /// Reads the form at `now`: the selection, or it with every problem found (the selection
    /// then holds defaults where a field was unreadable, to show the form again).
    fn read(params: &RangeParams, now: DateTime<Utc>) -> (Self, Vec<FieldError>) {
        let mut errors = Vec::new();
        let mut problem = |field, message: &str| {
            errors.push(FieldError {
                field,
                message: message.to_owned(),
            });
        };
        let text = |raw: &Option<String>| raw.as_deref().map(str::trim).unwrap_or("").to_owned();
        let range = match params.range.as_deref().map(str::trim) {
            None | Some("") => RangeChoice::Day,
            Some(raw) => RangeChoice::parse(raw).unwrap_or_else(|| {
                problem("range", "choose one of the listed ranges");
                RangeChoice::Day
            }),
        };
        let split = match params.split.as_deref().map(str::trim) {
            None | Some("") => GroupBy::Specialist,
            Some(raw) => SPLITS
                .iter()
                .find(|(split, _)| split.as_str() == raw)
                .map_or_else(
                    || {
                        problem("split", "choose specialist, model, provider, user or door");
                        GroupBy::Specialist
                    },
                    |(split, _)| *split,
                ),
        };
        let asked_bucket = match params.bucket.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(raw) => raw
                .parse::<Bucket>()
                .map_err(|_| problem("bucket", "choose hour or day"))
                .ok(),
        };
        let (from_text, to_text) = (text(&params.from), text(&params.to));
        let (from, to) = match range {
            RangeChoice::Day => {
                let to = floor(now, Bucket::Hour) + TimeDelta::hours(1);
                (to - TimeDelta::hours(24), to)
            }
            RangeChoice::Week | RangeChoice::Month => {
                let days = if range == RangeChoice::Week { 7 } else { 30 };
                let to = floor(now, Bucket::Day) + TimeDelta::days(1);
                (to - TimeDelta::days(days), to)
            }
            RangeChoice::Custom => {
                let mut bound = |field, raw: &str, end| {
                    if raw.is_empty() {
                        problem(field, "enter a date, such as 2026-11-01");
                        return None;
                    }
                    parse_range_bound(raw, end)
                        .map_err(|e| problem(field, &e))
                        .ok()
                };
                let from = bound("from", &from_text, RangeEnd::Start);
                let to = bound("to", &to_text, RangeEnd::End);
                match (from, to) {
                    (Some(from), Some(to)) if from >= to => {
                        problem("from", "must be before the end");
                        (from, to)
                    }
                    (Some(from), Some(to)) if to - from > TimeDelta::days(MAX_RANGE_DAYS) => {
                        problem(
                            "from",
                            &format!("a range may cover at most {MAX_RANGE_DAYS} days"),
                        );
                        (from, to)
                    }
                    (Some(from), Some(to)) => (from, to),
                    _ => (now - TimeDelta::hours(24), now),
                }
            }
        };
        let natural = if to - from <= HOURLY_UP_TO {
            Bucket::Hour
        } else {
            Bucket::Day
        };
        let mut bucket = asked_bucket.unwrap_or(natural);
        let mut bucket_note = None;
        if bucket == Bucket::Hour && (to - from).num_hours() > MAX_HOUR_BUCKETS {
            bucket = Bucket::Day;
            bucket_note = Some(format!(
                "Shown by day: a range this long would need more than {MAX_HOUR_BUCKETS} hourly \
                 buckets."
            ));
        }
        let selection = Self {
            range,
            from_text,
            to_text,
            from,
            to,
            bucket,
            split,
            bucket_note,
        };
        (selection, errors)
    }

    /// The buckets the range covers, named as the store names them, in time order.
    fn buckets(&self) -> Vec<String> {
        bucket_names(self.from, self.to, self.bucket)
    }
}

/// `time`'s bucket start.
fn floor(time: DateTime<Utc>, bucket: Bucket) -> DateTime<Utc> {
    let seconds = match bucket {
        Bucket::Hour => 3_600,
        Bucket::Day => 86_400,
    };
    let start = time.timestamp().div_euclid(seconds) * seconds;
    DateTime::from_timestamp(start, 0).unwrap_or(time)
}

/// The bucket's name as [`usage_store::UsageStore::series`] writes it.
fn bucket_name(start: DateTime<Utc>, bucket: Bucket) -> String {
    match bucket {
        Bucket::Hour => start.format("%Y-%m-%dT%H:00:00Z").to_string(),
        Bucket::Day => start.format("%Y-%m-%d").to_string(),
    }
}

/// Every bucket from the one holding `from` to the last starting before `to`: the time axis,
/// with no gap where there were no calls. Bounded: a range is at most [`MAX_RANGE_DAYS`] days.
fn bucket_names(from: DateTime<Utc>, to: DateTime<Utc>, bucket: Bucket) -> Vec<String> {
    let step = match bucket {
        Bucket::Hour => TimeDelta::hours(1),
        Bucket::Day => TimeDelta::days(1),
    };
    let most = usize::try_from(MAX_RANGE_DAYS * 24 + 1).unwrap_or(usize::MAX);
    std::iter::successors(Some(floor(from, bucket)), |start| {
        start.checked_add_signed(step)
    })
    .take_while(|start| *start < to)
    .take(most)
    .map(|start| bucket_name(start, bucket))
    .collect()
}

/// What the store answered for the page.
struct Figures {
    totals: Totals,
    rows: Vec<SummaryRow>,
    series: Vec<SeriesRow>,
    percentiles: Percentiles,
}

/// `GET /console`: the overview.
async fn show(
    req: HttpRequest,
    state: web::Data<AppState>,
    viewer: Viewer,
) -> Result<HttpResponse, ConsoleError> {
    let params = match web::Query::<RangeParams>::from_query(req.query_string()) {
        Ok(params) => params.into_inner(),
        Err(error) => {
            let (selection, _) = Selection::read(&RangeParams::default(), Utc::now());
            let problem = FieldError {
                field: "range",
                message: format!("the address could not be read: {error}"),
            };
            return Ok(refused(&viewer, &selection, &[problem]));
        }
    };
    let (selection, errors) = Selection::read(&params, Utc::now());
    if !errors.is_empty() {
        return Ok(refused(&viewer, &selection, &errors));
    }

    let started = Instant::now();
    let scope = viewer.scope();
    let (from, to, bucket, split) = (
        selection.from,
        selection.to,
        selection.bucket,
        selection.split,
    );
    // One store call: the totals, the table and the series agree (the table is what
    // `/usage/summary` gives) and their percentiles are of one kind; long ranges read the
    // hourly rollup (see docs/PERFORMANCE.md).
    let store = state.store.clone();
    let overview = blocking("reading the range", move || {
        store.overview(&OverviewQuery {
            from,
            to,
            bucket,
            split,
            scope,
        })
    })
    .await?;
    let figures = Figures {
        totals: overview.totals,
        rows: overview.summary,
        series: overview.series,
        percentiles: overview.percentiles,
    };
    let database = started.elapsed();

    let rendering = Instant::now();
    let markup = page(
        Some(&viewer),
        Nav::Overview,
        "Overview",
        html! {
            (scope_note(&viewer))
            (range_form(&selection, &[]))
            (overview_body(&selection, &figures))
        },
    );
    let mut response = ok(markup);
    let timing = format!(
        "db;dur={:.1}, render;dur={:.1}",
        database.as_secs_f64() * 1000.0,
        rendering.elapsed().as_secs_f64() * 1000.0
    );
    if let Ok(value) = HeaderValue::from_str(&timing) {
        response.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static("server-timing"),
            value,
        );
    }
    Ok(response)
}

/// The page with the form and its problems, and no figures: 400.
fn refused(viewer: &Viewer, selection: &Selection, errors: &[FieldError]) -> HttpResponse {
    respond(
        StatusCode::BAD_REQUEST,
        page(
            Some(viewer),
            Nav::Overview,
            "Overview",
            html! {
                div #form-errors role="alert" {
                    p.error { "The range could not be shown:" }
                    ul {
                        @for error in errors {
                            li { a href={ "#" (control_of(error.field)) } { (label_of(error.field)) } ": " (error.message) }
                        }
                    }
                }
                (scope_note(viewer))
                (range_form(selection, errors))
            },
        ),
    )
}

/// The id of the control a field's value comes from.
fn control_of(field: &str) -> &'static str {
    match field {
        "from" => "from",
        "to" => "to",
        "bucket" => "bucket",
        "split" => "split-choice",
        _ => "range-choice",
    }
}

fn label_of(field: &str) -> &'static str {
    match field {
        "from" => "From",
        "to" => "To",
        "bucket" => "Bucket",
        "split" => "Split by",
        _ => "Range",
    }
}

fn scope_note(viewer: &Viewer) -> Markup {
    html! {
        p.scope-note {
            @if viewer.is_admin() {
                "Everyone's usage (you are an administrator)."
            } @else {
                "Your own usage only."
            }
        }
    }
}

/// The GET form choosing range, bucket and split, with each field's problem beside it.
fn range_form(selection: &Selection, errors: &[FieldError]) -> Markup {
    let error_of = |field: &str| errors.iter().find(|e| e.field == field);
    let invalid = |field: &str| error_of(field).map(|_| "true");
    let described = |field: &str| error_of(field).map(|_| format!("error-{field}"));
    let field_error = |field: &str| {
        html! {
            @if let Some(error) = error_of(field) {
                span.field-error id={ "error-" (field) } { (error.message) }
            }
        }
    };
    html! {
        form #range .range method="get" action="/console" {
            div.control {
                label for="range-choice" {
                    "Range"
                    select #range-choice name="range" aria-invalid=[invalid("range")]
                        aria-describedby=[described("range")] {
                        @for (choice, name, text) in RangeChoice::ALL {
                            option value=(name) selected[choice == selection.range] { (text) }
                        }
                    }
                }
                (field_error("range"))
            }
            div.control {
                label for="from" {
                    "From (custom)"
                    input #from type="date" name="from" value=(selection.from_text)
                        aria-invalid=[invalid("from")] aria-describedby=[described("from")];
                }
                (field_error("from"))
            }
            div.control {
                label for="to" {
                    "To (custom, included)"
                    input #to type="date" name="to" value=(selection.to_text)
                        aria-invalid=[invalid("to")] aria-describedby=[described("to")];
                }
                (field_error("to"))
            }
            div.control {
                label for="bucket" {
                    "Bucket"
                    select #bucket name="bucket" aria-invalid=[invalid("bucket")]
                        aria-describedby=[described("bucket")] {
                        @for (bucket, text) in [(Bucket::Hour, "Hour"), (Bucket::Day, "Day")] {
                            option value=(bucket.as_str()) selected[bucket == selection.bucket] { (text) }
                        }
                    }
                }
                (field_error("bucket"))
            }
            div.control {
                label for="split-choice" {
                    "Split by"
                    select #split-choice name="split" aria-invalid=[invalid("split")]
                        aria-describedby=[described("split")] {
                        @for (split, text) in SPLITS {
                            option value=(split.as_str()) selected[split == selection.split] { (text) }
                        }
                    }
                }
                (field_error("split"))
            }
            button type="submit" { "Show" }
        }
    }
}

/// Totals, charts and the split table.
fn overview_body(selection: &Selection, figures: &Figures) -> Markup {
    let names = selection.buckets();
    let span = names.len().div_ceil(MAX_POINTS).max(1);
    let buckets: Vec<String> = names.chunks(span).map(|group| group[0].clone()).collect();
    let ranked = ranked(&figures.rows);
    let charted: Vec<&str> = ranked
        .iter()
        .take(CHART_KEYS)
        .map(|row| row.key.as_str())
        .collect();
    let has_other = ranked.len() > CHART_KEYS;
    let grid = BucketGrid::fill(&names, span, &charted, has_other, &figures.series);
    let labels: Vec<String> = charted
        .iter()
        .map(|key| display_key(selection.split, key))
        .chain(has_other.then(|| "other".to_owned()))
        .collect();
    let per_slot = |value: &dyn Fn(&Cell) -> Option<f64>, slots: usize| -> Vec<Series> {
        (0..slots)
            .map(|slot| Series {
                label: labels[slot].clone(),
                values: grid.cells.iter().map(|row| value(&row[slot])).collect(),
            })
            .collect()
    };
    let all_slots = labels.len();
    let requests = per_slot(&|c: &Cell| Some(c.requests as f64), all_slots);
    let cost = per_slot(&|c: &Cell| Some(c.cost_usd), all_slots);
    let error_rate = per_slot(&|c: &Cell| c.error_rate(), all_slots);
    let p95 = per_slot(&|c: &Cell| c.p95_latency_ms, charted.len());
    let split_name = selection.split.as_str();
    let (unit, per_unit) = match selection.bucket {
        Bucket::Hour => ("hour", "hourly"),
        Bucket::Day => ("day", "daily"),
    };
    let p95_note = match (has_other, span > 1) {
        (false, false) => None,
        (true, false) => Some(
            "The five busiest keys only: a percentile of the other keys together cannot be \
             built from their own."
                .to_owned(),
        ),
        (other, true) => Some(format!(
            "{}Each point shows the highest {per_unit} p95 among the {span} {unit}s it spans.",
            if other {
                "The five busiest keys only. "
            } else {
                ""
            }
        )),
    };
    let chart = |id, title, unit, kind, series: &[Series], note| {
        chart::render(&Chart {
            id,
            title,
            note,
            unit,
            kind,
            buckets: &buckets,
            series,
        })
    };
    html! {
        p.range-shown {
            "From " time datetime=(selection.from.to_rfc3339()) { (selection.from.format("%Y-%m-%d %H:%M")) }
            " up to " time datetime=(selection.to.to_rfc3339()) { (selection.to.format("%Y-%m-%d %H:%M")) }
            " UTC, by " (selection.bucket.as_str()) ", split by " (split_name) "."
            @if let Some(note) = &selection.bucket_note { " " (note) }
            @if span > 1 { " Each point of the charts spans " (span) " " (unit) "s, named by its first." }
        }
        (totals(&figures.totals))
        @if figures.percentiles == Percentiles::Approximate {
            p.approximate #percentiles-note {
                "Latency percentiles on this page are approximate: over this many calls they are "
                "read from the hourly rollup's 1%-wide latency bins (within 0.5%). Counts, tokens "
                "and cost are exact."
            }
        }
        h2 { "Over time" }
        div.charts {
            (chart("chart-requests", "Requests", Unit::Count, Kind::Stacked, &requests, None))
            (chart("chart-cost", "Cost", Unit::Usd, Kind::Stacked, &cost, None))
            (chart("chart-error-rate", "Error rate", Unit::Percent, Kind::Lines, &error_rate, None))
            (chart("chart-p95", "p95 latency", Unit::Millis, Kind::Lines, &p95, p95_note.as_deref()))
        }
        h2 { "By " (split_name) }
        (split_table(selection.split, &ranked))
    }
}

/// The headline numbers.
fn totals(totals: &Totals) -> Markup {
    let error_rate = if totals.requests > 0 {
        totals.failures as f64 * 100.0 / totals.requests as f64
    } else {
        0.0
    };
    html! {
        dl.totals #totals {
            div data-metric="requests" { dt { "Requests" } dd { (totals.requests) } }
            div data-metric="cost" { dt { "Cost" } dd { (usd(totals.cost_usd)) } }
            div data-metric="tokens" {
                dt { "Tokens" }
                dd {
                    (totals.input_tokens.saturating_add(totals.output_tokens))
                    span.sub { (totals.input_tokens) " in, " (totals.output_tokens) " out" }
                }
            }
            div data-metric="error_rate" {
                dt { "Error rate" }
                dd {
                    (Unit::Percent.format(error_rate))
                    span.sub { (totals.failures) " failed" }
                }
            }
            div data-metric="p50" { dt { "p50 latency" } dd { (Unit::Millis.format(totals.p50_latency_ms)) } }
            div data-metric="p95" { dt { "p95 latency" } dd { (Unit::Millis.format(totals.p95_latency_ms)) } }
        }
    }
}

/// The summary's rows, busiest first (then dearest, then by key, so the order is stable).
fn ranked(rows: &[SummaryRow]) -> Vec<&SummaryRow> {
    let mut ranked: Vec<&SummaryRow> = rows.iter().collect();
    ranked.sort_by(|a, b| {
        b.requests
            .cmp(&a.requests)
            .then(b.cost_usd.total_cmp(&a.cost_usd))
            .then(a.key.cmp(&b.key))
    });
    ranked
}

/// A key as shown: user keys are email hashes, cut to a readable prefix.
fn display_key(split: GroupBy, key: &str) -> String {
    if split == GroupBy::User && key.len() > 12 {
        format!("{}…", key.chars().take(12).collect::<String>())
    } else {
        key.to_owned()
    }
}

/// One row per key (the busiest [`MAX_SPLIT_ROWS`]), with the summary's own numbers.
fn split_table(split: GroupBy, ranked: &[&SummaryRow]) -> Markup {
    html! {
        @if ranked.is_empty() {
            p { "No calls in this range." }
        }
        @if ranked.len() > MAX_SPLIT_ROWS {
            p { "The " (MAX_SPLIT_ROWS) " busiest of " (ranked.len()) " keys; "
                a href="/usage/summary" { "/usage/summary" } " lists them all." }
        }
        table #split {
            caption.sr-only { "Usage by " (split.as_str()) }
            thead {
                tr {
                    th scope="col" { "Key" }
                    th.num scope="col" { "Requests" }
                    th.num scope="col" { "Failures" }
                    th.num scope="col" { "Input tokens" }
                    th.num scope="col" { "Output tokens" }
                    th.num scope="col" { "Cost" }
                    th.num scope="col" { "Avg latency" }
                    th.num scope="col" { "p50 latency" }
                    th.num scope="col" { "p95 latency" }
                }
            }
            tbody {
                @for row in ranked.iter().take(MAX_SPLIT_ROWS) {
                    tr data-key=(row.key) {
                        th scope="row" title=(row.key) { (display_key(split, &row.key)) }
                        td.num data-col="requests" { (row.requests) }
                        td.num data-col="failures" { (row.failures) }
                        td.num data-col="input_tokens" { (row.input_tokens) }
                        td.num data-col="output_tokens" { (row.output_tokens) }
                        td.num data-col="cost_usd" { (usd(row.cost_usd)) }
                        td.num data-col="avg_latency_ms" { (Unit::Millis.format(row.avg_latency_ms)) }
                        td.num data-col="p50_latency_ms" { (Unit::Millis.format(row.p50_latency_ms)) }
                        td.num data-col="p95_latency_ms" { (Unit::Millis.format(row.p95_latency_ms)) }
                    }
                }
            }
        }
    }
}

/// One key's (or "other"'s) numbers in one bucket.
#[derive(Debug, Clone, Default, PartialEq)]
struct Cell {
    requests: i64,
    failures: i64,
    cost_usd: f64,
    /// The key's p95 in the bucket; `None` for "other" (percentiles do not add up) and for
    /// buckets without calls.
    p95_latency_ms: Option<f64>,
}

impl Cell {
    fn error_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.failures as f64 * 100.0 / self.requests as f64)
    }
}

/// The series rows laid on the full time axis: a row per point (zeros where there were no
/// calls), each point `span` consecutive buckets, a cell per charted key, and one for "other"
/// when there are more keys. Counts and cost add up exactly; a point's p95 is the highest of
/// its buckets' (percentiles do not add up).
#[derive(Debug)]
struct BucketGrid {
    cells: Vec<Vec<Cell>>,
}

impl BucketGrid {
    fn fill(
        buckets: &[String],
        span: usize,
        keys: &[&str],
        has_other: bool,
        rows: &[SeriesRow],
    ) -> Self {
        let span = span.max(1);
        let slots = keys.len() + usize::from(has_other);
        let mut cells = vec![vec![Cell::default(); slots]; buckets.len().div_ceil(span)];
        let bucket_index: HashMap<&str, usize> = buckets
            .iter()
            .enumerate()
            .map(|(i, name)| (name.as_str(), i / span))
            .collect();
        let key_slot: HashMap<&str, usize> =
            keys.iter().enumerate().map(|(i, key)| (*key, i)).collect();
        for row in rows {
            // A row outside the axis cannot happen (same range); it is skipped, not a panic.
            let Some(&bucket) = bucket_index.get(row.bucket_start.as_str()) else {
                continue;
            };
            let row = &row.group;
            let (slot, own_key) = match key_slot.get(row.key.as_str()) {
                Some(&slot) => (slot, true),
                None if has_other => (keys.len(), false),
                None => continue,
            };
            let cell = &mut cells[bucket][slot];
            cell.requests = cell.requests.saturating_add(row.requests);
            cell.failures = cell.failures.saturating_add(row.failures);
            cell.cost_usd += row.cost_usd;
            if own_key && row.requests > 0 {
                let highest = cell
                    .p95_latency_ms
                    .map_or(row.p95_latency_ms, |p95| p95.max(row.p95_latency_ms));
                cell.p95_latency_ms = Some(highest);
            }
        }
        Self { cells }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0).single().unwrap()
    }

    fn params(pairs: &[(&str, &str)]) -> RangeParams {
        let mut params = RangeParams::default();
        for (name, value) in pairs {
            let value = Some((*value).to_owned());
            match *name {
                "range" => params.range = value,
                "from" => params.from = value,
                "to" => params.to = value,
                "bucket" => params.bucket = value,
                "split" => params.split = value,
                _ => unreachable!(),
            }
        }
        params
    }

    fn row(bucket: &str, key: &str, requests: i64, failures: i64, cost: f64) -> SeriesRow {
        SeriesRow {
            bucket_start: bucket.to_owned(),
            group: SummaryRow {
                key: key.to_owned(),
                requests,
                successes: requests - failures,
                failures,
                input_tokens: 0,
                output_tokens: 0,
                cost_usd: cost,
                avg_latency_ms: 10.0,
                p50_latency_ms: 10.0,
                p95_latency_ms: 20.0,
            },
        }
    }

    #[test]
    fn the_default_is_the_last_24_hours_by_hour_and_specialist() {
        let now = at(2026, 3, 4, 10, 17);
        let (selection, errors) = Selection::read(&RangeParams::default(), now);
        assert!(errors.is_empty());
        assert_eq!(selection.from, at(2026, 3, 3, 11, 0));
        assert_eq!(selection.to, at(2026, 3, 4, 11, 0));
        assert_eq!(
            (selection.bucket, selection.split),
            (Bucket::Hour, GroupBy::Specialist)
        );
        let buckets = selection.buckets();
        assert_eq!(buckets.len(), 24);
        assert_eq!(buckets[0], "2026-03-03T11:00:00Z");
        assert_eq!(buckets[23], "2026-03-04T10:00:00Z");
    }

    #[test]
    fn thirty_days_are_thirty_daily_buckets_ending_today() {
        let now = at(2026, 3, 4, 10, 17);
        let (selection, errors) = Selection::read(&params(&[("range", "30d")]), now);
        assert!(errors.is_empty());
        assert_eq!(selection.bucket, Bucket::Day);
        let buckets = selection.buckets();
        assert_eq!(buckets.len(), 30);
        assert_eq!(buckets.last().map(String::as_str), Some("2026-03-04"));
    }

    #[test]
    fn long_hourly_ranges_switch_to_days() {
        let now = at(2026, 3, 4, 10, 17);
        let (selection, errors) =
            Selection::read(&params(&[("range", "7d"), ("bucket", "hour")]), now);
        assert!(errors.is_empty());
        assert_eq!(selection.bucket, Bucket::Day);
        assert!(selection.bucket_note.is_some());

        let (short, _) = Selection::read(
            &params(&[
                ("range", "custom"),
                ("from", "2026-03-01"),
                ("to", "2026-03-02"),
            ]),
            now,
        );
        assert_eq!(short.bucket, Bucket::Hour, "two whole days are 48 hours");
        assert_eq!(short.buckets().len(), 48);
    }

    #[test]
    fn custom_dates_include_the_end_day() {
        let now = at(2026, 3, 4, 10, 17);
        let (selection, errors) = Selection::read(
            &params(&[
                ("range", "custom"),
                ("from", "2026-01-01"),
                ("to", "2026-01-31"),
            ]),
            now,
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            (selection.from, selection.to),
            (at(2026, 1, 1, 0, 0), at(2026, 2, 1, 0, 0))
        );
        assert_eq!(selection.buckets().len(), 31);
    }

    #[test]
    fn bad_values_are_reported_beside_their_field() {
        let now = at(2026, 3, 4, 10, 17);
        let fields = |pairs: &[(&str, &str)]| {
            let (_, errors) = Selection::read(&params(pairs), now);
            errors.into_iter().map(|e| e.field).collect::<Vec<_>>()
        };
        assert_eq!(fields(&[("range", "forever")]), ["range"]);
        assert_eq!(fields(&[("split", "colour")]), ["split"]);
        assert_eq!(fields(&[("bucket", "minute")]), ["bucket"]);
        assert_eq!(fields(&[("range", "custom")]), ["from", "to"]);
        assert_eq!(
            fields(&[
                ("range", "custom"),
                ("from", "yesterday"),
                ("to", "2026-13-01")
            ]),
            ["from", "to"]
        );
        assert_eq!(
            fields(&[
                ("range", "custom"),
                ("from", "2026-02-01"),
                ("to", "2026-01-01")
            ]),
            ["from"]
        );
        assert_eq!(
            fields(&[
                ("range", "custom"),
                ("from", "2020-01-01"),
                ("to", "2026-01-01")
            ]),
            ["from"],
            "more than 400 days"
        );
        assert!(
            fields(&[
                ("range", "custom"),
                ("from", "2025-01-01"),
                ("to", "2026-01-01")
            ])
            .is_empty()
        );
    }

    #[test]
    fn bucket_names_match_the_store_and_have_no_gaps() {
        let hours = bucket_names(at(2026, 1, 31, 22, 30), at(2026, 2, 1, 1, 0), Bucket::Hour);
        assert_eq!(
            hours,
            [
                "2026-01-31T22:00:00Z",
                "2026-01-31T23:00:00Z",
                "2026-02-01T00:00:00Z"
            ]
        );
        let days = bucket_names(at(2024, 2, 28, 0, 0), at(2024, 3, 2, 0, 0), Bucket::Day);
        assert_eq!(days, ["2024-02-28", "2024-02-29", "2024-03-01"]);
        assert!(bucket_names(at(2026, 1, 1, 0, 0), at(2026, 1, 1, 0, 0), Bucket::Day).is_empty());
    }

    #[test]
    fn the_grid_fills_empty_buckets_with_zeros_and_adds_up_other_keys() {
        let buckets = bucket_names(at(2026, 1, 1, 0, 0), at(2026, 1, 4, 0, 0), Bucket::Day);
        let rows = [
            row("2026-01-01", "a", 4, 1, 0.5),
            row("2026-01-01", "c", 2, 0, 0.25),
            row("2026-01-01", "d", 3, 3, 0.25),
            row("2026-01-03", "b", 1, 0, 1.0),
            row("1999-01-01", "a", 9, 9, 9.0),
        ];
        let grid = BucketGrid::fill(&buckets, 1, &["a", "b"], true, &rows);
        assert_eq!(grid.cells.len(), 3);
        assert_eq!(grid.cells[0][0].requests, 4);
        assert_eq!(grid.cells[0][0].p95_latency_ms, Some(20.0));
        assert_eq!(grid.cells[0][2].requests, 5, "c and d are other");
        assert_eq!(grid.cells[0][2].failures, 3);
        assert_eq!(grid.cells[0][2].p95_latency_ms, None);
        assert_eq!(
            grid.cells[1],
            vec![Cell::default(); 3],
            "an empty day is zeros"
        );
        assert_eq!(grid.cells[1][0].error_rate(), None);
        assert_eq!(grid.cells[2][1].requests, 1);
        let total: i64 = grid.cells.iter().flatten().map(|c| c.requests).sum();
        assert_eq!(total, 10, "the row outside the axis is left out");
    }

    #[test]
    fn a_long_range_is_drawn_in_points_of_several_buckets() {
        let buckets = bucket_names(at(2026, 1, 1, 0, 0), at(2026, 1, 6, 0, 0), Bucket::Day);
        let mut slow = row("2026-01-02", "a", 1, 0, 0.5);
        slow.group.p95_latency_ms = 90.0;
        let rows = [
            row("2026-01-01", "a", 4, 1, 0.5),
            slow,
            row("2026-01-05", "a", 2, 2, 1.0),
        ];
        let grid = BucketGrid::fill(&buckets, 2, &["a"], false, &rows);
        assert_eq!(
            grid.cells.len(),
            3,
            "five days in points of two: the last holds one"
        );
        assert_eq!(grid.cells[0][0].requests, 5);
        assert_eq!(grid.cells[0][0].failures, 1);
        assert_eq!(grid.cells[0][0].cost_usd, 1.0);
        assert_eq!(
            grid.cells[0][0].p95_latency_ms,
            Some(90.0),
            "the higher day's p95"
        );
        assert_eq!(grid.cells[1][0], Cell::default());
        assert_eq!(grid.cells[2][0].error_rate(), Some(100.0));
    }
}
