//! Usage reports, aggregated in SQL on either backend.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Utc};
use core_domain::EmailHash;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Double, Nullable, Text, Timestamp};
use serde::{Deserialize, Serialize};

use crate::rollup::{Dimension, Percentiles};
use crate::store::Pool;
use crate::{StoreError, UsageStore};

/// What a summary's rows are keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    /// The specialist's id.
    Specialist,
    /// The model.
    Model,
    /// The provider.
    Provider,
    /// The caller's email hash (`anonymous` for unauthenticated calls).
    User,
    /// The UTC day, `YYYY-MM-DD`.
    Day,
    /// The front door (`native`, `chat_completions`, `messages`, `responses`, `embeddings`).
    Door,
}

impl GroupBy {
    /// Every grouping, in the order the API documents them.
    pub const ALL: [Self; 6] = [
        Self::Specialist,
        Self::Model,
        Self::Provider,
        Self::User,
        Self::Day,
        Self::Door,
    ];

    /// The lower-case name used in the API and the CLI.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Specialist => "specialist",
            Self::Model => "model",
            Self::Provider => "provider",
            Self::User => "user",
            Self::Day => "day",
            Self::Door => "door",
        }
    }

    /// The SQL expression of the key. Fixed text chosen by the enum: no caller input reaches
    /// the statement except through binds.
    pub(crate) fn key_sql(self, postgres: bool) -> &'static str {
        match (self, postgres) {
            (Self::Specialist, _) => "specialist_id",
            (Self::Model, _) => "model",
            (Self::Provider, _) => "provider",
            (Self::Door, _) => "door",
            (Self::User, _) => "COALESCE(user_email_hash, 'anonymous')",
            (Self::Day, true) => "to_char(timestamp, 'YYYY-MM-DD')",
            // SQLite keeps timestamps as 'YYYY-MM-DD HH:MM:SS.fff' text.
            (Self::Day, false) => "substr(CAST(timestamp AS TEXT), 1, 10)",
        }
    }
}

impl fmt::Display for GroupBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for GroupBy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|g| g.as_str() == s)
            .ok_or_else(|| "must be one of specialist, model, provider, user, day, door".to_owned())
    }
}

/// Whose rows a summary covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every caller's (administrators).
    Everyone,
    /// One caller's: `Some(hash)` for a user, `None` for the anonymous caller.
    Caller(Option<EmailHash>),
}

/// A summary request: rows with `from <= timestamp < to`, grouped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryQuery {
    /// Start (inclusive).
    pub from: DateTime<Utc>,
    /// End (exclusive).
    pub to: DateTime<Utc>,
    /// The grouping.
    pub group_by: GroupBy,
    /// Whose rows.
    pub scope: Scope,
}

/// Which end of a report's time range a bound is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeEnd {
    /// `from`: inclusive.
    Start,
    /// `to`: exclusive.
    End,
}

/// How far back a report reaches when its start is not given.
pub const DEFAULT_RANGE_DAYS: i64 = 30;

/// The earliest instant a report bound may name: 0001-01-01T00:00:00Z.
fn earliest_bound() -> DateTime<Utc> {
    chrono::NaiveDate::from_ymd_opt(1, 1, 1).map_or(DateTime::<Utc>::MIN_UTC, |d| {
        d.and_time(chrono::NaiveTime::MIN).and_utc()
    })
}

/// The latest instant a report bound may name: the last second of 9999-12-31. Four-digit years
/// are what both backends compare correctly (SQLite keeps timestamps as text, where
/// `+10000-01-01` sorts before `2026`) and what chrono can step around without overflowing.
pub(crate) fn latest_bound() -> DateTime<Utc> {
    chrono::NaiveDate::from_ymd_opt(9999, 12, 31)
        .and_then(|d| d.and_hms_opt(23, 59, 59))
        .map_or(DateTime::<Utc>::MAX_UTC, |t| t.and_utc())
}

/// Reads a report bound: an RFC 3339 time (`2026-11-01T00:00:00Z`), or a date
/// (`2026-11-01`). A date as `from` means the start of that day; a date as `to` includes that
/// whole day (so `--from 2026-11-01 --to 2026-11-30` is all of November). Years 1 to 9999 only.
pub fn parse_range_bound(raw: &str, end: RangeEnd) -> Result<DateTime<Utc>, String> {
    const OUT_OF_RANGE: &str = "must be between 0001-01-01 and 9999-12-31";
    let raw = raw.trim();
    let (earliest, latest) = (earliest_bound(), latest_bound());
    if let Ok(time) = DateTime::parse_from_rfc3339(raw) {
        let time = time.with_timezone(&Utc);
        return if (earliest..=latest).contains(&time) {
            Ok(time)
        } else {
            Err(OUT_OF_RANGE.to_owned())
        };
    }
    let shown: String = raw.chars().take(40).collect();
    let date = chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d").map_err(|_| {
        format!(
            "'{}' is not a date (2026-11-01) or an RFC 3339 time (2026-11-01T12:00:00Z)",
            shown.escape_debug()
        )
    })?;
    if !(1..=9999).contains(&date.year()) {
        return Err(OUT_OF_RANGE.to_owned());
    }
    let start = date.and_time(chrono::NaiveTime::MIN).and_utc();
    Ok(match end {
        RangeEnd::Start => start,
        // The day after, or (for 9999-12-31) the last instant a bound may name.
        RangeEnd::End => start
            .checked_add_signed(chrono::TimeDelta::days(1))
            .map_or(latest, |next| next.min(latest)),
    })
}

/// The start of a report that names only its end: [`DEFAULT_RANGE_DAYS`] before `to`, never
/// before 0001-01-01.
pub fn default_range_start(to: DateTime<Utc>) -> DateTime<Utc> {
    let earliest = earliest_bound();
    to.checked_sub_signed(chrono::TimeDelta::days(DEFAULT_RANGE_DAYS))
        .map_or(earliest, |from| from.max(earliest))
}

/// Runs `$sql` with the range and the caller bound as [`calls_filter`] numbers them, loading
/// `$row`s.
macro_rules! run_bound {
    ($conn:expr, $sql:expr, $query:expr, $row:ty) => {{
        let statement = diesel::sql_query($sql)
            .bind::<Timestamp, _>($query.from.naive_utc())
            .bind::<Timestamp, _>($query.to.naive_utc());
        match &$query.scope {
            Scope::Caller(Some(hash)) => statement
                .bind::<Text, _>(hash.as_str())
                .load::<$row>($conn)?,
            _ => statement.load::<$row>($conn)?,
        }
    }};
}

/// Runs a report's statement on a SQLite connection with a 16 MiB page cache, then gives the
/// memory back. Each statement reads its range twice (the groups, then the ranking) and sorts
/// in temporary tables that live in the same cache: with SQLite's default 2 MiB the second
/// read and the sorts go back to the file (a million-row log's 24 hours: 8% of the overview's
/// time). Shrunk afterwards so a pooled connection does not keep the pages.
fn with_report_cache<T>(
    conn: &mut SqliteConnection,
    work: impl FnOnce(&mut SqliteConnection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    use diesel::connection::SimpleConnection;
    conn.batch_execute("PRAGMA cache_size = -16384")?;
    let outcome = work(conn);
    let restored = conn.batch_execute("PRAGMA cache_size = -2000; PRAGMA shrink_memory");
    let value = outcome?;
    restored?;
    Ok(value)
}

/// One group of a summary.
#[derive(Debug, Clone, PartialEq, Serialize, QueryableByName)]
pub struct SummaryRow {
    /// The group's key.
    #[diesel(sql_type = Text)]
    pub key: String,
    /// Calls.
    #[diesel(sql_type = BigInt)]
    pub requests: i64,
    /// Calls that succeeded.
    #[diesel(sql_type = BigInt)]
    pub successes: i64,
    /// Calls that failed.
    #[diesel(sql_type = BigInt)]
    pub failures: i64,
    /// Input tokens.
    #[diesel(sql_type = BigInt)]
    pub input_tokens: i64,
    /// Output tokens.
    #[diesel(sql_type = BigInt)]
    pub output_tokens: i64,
    /// Estimated cost in USD.
    #[diesel(sql_type = Double)]
    pub cost_usd: f64,
    /// Mean latency in milliseconds.
    #[diesel(sql_type = Double)]
    pub avg_latency_ms: f64,
    /// Median latency (nearest rank) in milliseconds.
    #[diesel(sql_type = Double)]
    pub p50_latency_ms: f64,
    /// 95th percentile latency (nearest rank) in milliseconds.
    #[diesel(sql_type = Double)]
    pub p95_latency_ms: f64,
}

/// The statement every usage aggregate is: rows matching `filter`, grouped by the `keys`
/// (`(alias, SQL expression, how the group's value is shown)` — the last with `{}` for the
/// value, so a costly format runs once a group instead of once a row; fixed text chosen by an
/// enum, never caller input), with
/// per group calls, outcomes, tokens, cost, mean latency and the nearest-rank median and 95th
/// percentile: the `ceil(p n)`-th smallest latency, computed with window functions both
/// backends have. Ordered by the keys. The same on both backends but for the key expressions
/// and the bind placeholders in `filter`.
fn aggregate_sql(keys: &[(&str, &str, &str)], filter: &str) -> String {
    let aliases: Vec<&str> = keys.iter().map(|(alias, _, _)| *alias).collect();
    let key_columns = keys
        .iter()
        .map(|(alias, expr, _)| format!("{expr} AS {alias}"))
        .collect::<Vec<_>>()
        .join(", ");
    let join = aliases
        .iter()
        .map(|a| format!("t.{a} = p.{a}"))
        .collect::<Vec<_>>()
        .join(" AND ");
    let selected = keys
        .iter()
        .map(|(a, _, shown)| {
            format!(
                "CAST({} AS TEXT) AS {a}",
                shown.replace("{}", &format!("t.{a}"))
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    // The group's size comes from `totals`: a `COUNT(*) OVER` beside the rank would cost a
    // second sort of every row.
    let ranked_group = aliases
        .iter()
        .map(|a| format!("r.{a}"))
        .collect::<Vec<_>>()
        .join(", ");
    let ranked_join = aliases
        .iter()
        .map(|a| format!("r.{a} = t.{a}"))
        .collect::<Vec<_>>()
        .join(" AND ");
    let order = aliases
        .iter()
        .map(|a| format!("t.{a}"))
        .collect::<Vec<_>>()
        .join(", ");
    let partition = keys
        .iter()
        .map(|(_, expr, _)| *expr)
        .collect::<Vec<_>>()
        .join(", ");
    // Both parts read the range from the table (the timestamp index) rather than from one
    // materialised copy, and only the two rows at the percentiles' ranks survive the join
    // before grouping: on SQLite, copying the range and grouping every ranked row took more
    // time than the ranking itself (a million-row log, 24 hours: 79 → 68 ms a statement).
    format!(
        "WITH totals AS (
            SELECT {key_columns},
                   COUNT(*) AS requests,
                   SUM(CASE WHEN success THEN 1 ELSE 0 END) AS successes,
                   SUM(CASE WHEN success THEN 0 ELSE 1 END) AS failures,
                   SUM(input_tokens) AS input_tokens,
                   SUM(output_tokens) AS output_tokens,
                   SUM(estimated_cost_usd) AS cost_usd,
                   AVG(latency_ms) AS avg_latency_ms
            FROM usage_logs
            WHERE {filter}
            GROUP BY {partition}
        ),
        ranked AS (
            SELECT {key_columns}, latency_ms,
                   ROW_NUMBER() OVER (PARTITION BY {partition} ORDER BY latency_ms) AS rank
            FROM usage_logs
            WHERE {filter}
        ),
        percentiles AS (
            SELECT {ranked_group},
                   MIN(CASE WHEN r.rank = (t.requests * 50 + 99) / 100 THEN r.latency_ms END)
                       AS p50_latency_ms,
                   MIN(CASE WHEN r.rank = (t.requests * 95 + 99) / 100 THEN r.latency_ms END)
                       AS p95_latency_ms
            FROM ranked r JOIN totals t ON {ranked_join}
            WHERE r.rank = (t.requests * 50 + 99) / 100
               OR r.rank = (t.requests * 95 + 99) / 100
            GROUP BY {ranked_group}
        )
        SELECT {selected},
               CAST(t.requests AS BIGINT) AS requests,
               CAST(t.successes AS BIGINT) AS successes,
               CAST(t.failures AS BIGINT) AS failures,
               CAST(t.input_tokens AS BIGINT) AS input_tokens,
               CAST(t.output_tokens AS BIGINT) AS output_tokens,
               CAST(t.cost_usd AS DOUBLE PRECISION) AS cost_usd,
               CAST(t.avg_latency_ms AS DOUBLE PRECISION) AS avg_latency_ms,
               CAST(p.p50_latency_ms AS DOUBLE PRECISION) AS p50_latency_ms,
               CAST(p.p95_latency_ms AS DOUBLE PRECISION) AS p95_latency_ms
        FROM totals t JOIN percentiles p ON {join}
        ORDER BY {order}"
    )
}

/// The summary statement: one group per value of the grouping's key.
/// [`aggregate_sql`] over one group, without window functions: with a single group the
/// nearest-rank percentiles are the rows at offsets `ceil(p n) - 1` of the range sorted by
/// latency, which a plain sort finds in half the time SQLite's ranking takes (a million-row
/// log, 24 hours: 57 → 49 ms). No row when the range holds no call.
fn totals_sql(filter: &str) -> String {
    let nearest_rank = |percent: u32| {
        format!(
            "(SELECT latency_ms FROM usage_logs WHERE {filter} ORDER BY latency_ms
              LIMIT 1 OFFSET (SELECT (requests * {percent} + 99) / 100 - 1 FROM totals))"
        )
    };
    format!(
        "WITH totals AS (
            SELECT COUNT(*) AS requests,
                   SUM(CASE WHEN success THEN 1 ELSE 0 END) AS successes,
                   SUM(CASE WHEN success THEN 0 ELSE 1 END) AS failures,
                   SUM(input_tokens) AS input_tokens,
                   SUM(output_tokens) AS output_tokens,
                   SUM(estimated_cost_usd) AS cost_usd,
                   AVG(latency_ms) AS avg_latency_ms
            FROM usage_logs
            WHERE {filter}
        )
        SELECT CAST('all' AS TEXT) AS key,
               CAST(requests AS BIGINT) AS requests,
               CAST(successes AS BIGINT) AS successes,
               CAST(failures AS BIGINT) AS failures,
               CAST(input_tokens AS BIGINT) AS input_tokens,
               CAST(output_tokens AS BIGINT) AS output_tokens,
               CAST(cost_usd AS DOUBLE PRECISION) AS cost_usd,
               CAST(avg_latency_ms AS DOUBLE PRECISION) AS avg_latency_ms,
               CAST({p50} AS DOUBLE PRECISION) AS p50_latency_ms,
               CAST({p95} AS DOUBLE PRECISION) AS p95_latency_ms
        FROM totals
        WHERE requests > 0",
        p50 = nearest_rank(50),
        p95 = nearest_rank(95),
    )
}

fn summary_sql(group_by: GroupBy, scope: &Scope, postgres: bool) -> String {
    aggregate_sql(
        &[("key", group_by.key_sql(postgres), "{}")],
        &calls_filter(scope, postgres),
    )
}

impl UsageStore {
    /// Aggregates the usage log: per group, calls, successes, failures, tokens, cost, mean,
    /// median and 95th-percentile latency, ordered by key (bytewise). Everyone's calls over a range of
    /// more than [`crate::DatabaseConfig::exact_report_calls`] calls are read from the hourly
    /// rollup where it is sealed (the percentiles then approximate, see [`Percentiles`]).
    pub fn summary(&self, query: &SummaryQuery) -> Result<Summary, StoreError> {
        if query.scope == Scope::Everyone
            && let Some(cells) =
                self.rolled_cells(query.from, query.to, &[Dimension::of(query.group_by)])?
        {
            return Ok(Summary {
                rows: cells.summary(query.group_by),
                percentiles: Percentiles::Approximate,
            });
        }
        Ok(Summary {
            rows: self.exact_summary(query.from, query.to, query.group_by, &query.scope)?,
            percentiles: Percentiles::Exact,
        })
    }

    /// [`Self::summary`] from the log itself, in SQL.
    fn exact_summary(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        group_by: GroupBy,
        scope: &Scope,
    ) -> Result<Vec<SummaryRow>, StoreError> {
        let query = TotalsQuery {
            from,
            to,
            scope: scope.clone(),
        };
        let sql = |postgres| summary_sql(group_by, scope, postgres);
        let mut rows = match self.pool() {
            Pool::Sqlite(pool) => with_report_cache(&mut *pool.get()?, |conn| {
                Ok(run_bound!(conn, sql(false), query, SummaryRow))
            })?,
            Pool::Postgres(pool) => run_bound!(&mut pool.get()?, sql(true), query, SummaryRow),
        };
        // By bytes, like the rollup's rows: a PostgreSQL collation would order keys otherwise
        // (and a report's order would change with its size).
        rows.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(rows)
    }

    /// What the console's overview shows for a range: the totals, the summary by the split's
    /// key and the series per bucket and key, their percentiles of one kind. Through the rollup
    /// the three come from one snapshot; over few calls, from three statements run at once. The summary equals [`Self::summary`]'s for the same range,
    /// grouping and scope.
    pub fn overview(&self, query: &OverviewQuery) -> Result<Overview, StoreError> {
        if query.scope == Scope::Everyone
            && let Some(cells) = self.rolled_cells(
                query.from,
                query.to,
                &[Dimension::All, Dimension::of(query.split)],
            )?
        {
            return Ok(Overview {
                totals: cells.totals(),
                summary: cells.summary(query.split),
                series: cells.series(query.bucket, query.split),
                percentiles: Percentiles::Approximate,
            });
        }
        // Each statement sorts the range's latencies for its percentiles: on their own pooled
        // connections at once, they take the time of the slowest instead of the sum.
        let totals_query = TotalsQuery {
            from: query.from,
            to: query.to,
            scope: query.scope.clone(),
        };
        let series_query = SeriesQuery {
            from: query.from,
            to: query.to,
            bucket: query.bucket,
            split: query.split,
            scope: query.scope.clone(),
        };
        let (totals, summary, series) = std::thread::scope(|scope| {
            let totals = scope.spawn(|| self.totals(&totals_query));
            let series = scope.spawn(|| self.series(&series_query));
            let summary = self.exact_summary(query.from, query.to, query.split, &query.scope);
            (joined(totals), summary, joined(series))
        });
        Ok(Overview {
            totals: totals?,
            summary: summary?,
            series: series?,
            percentiles: Percentiles::Exact,
        })
    }

    /// The range's calls as one row: what [`Self::summary`] reports per group, over them all
    /// (its counts, tokens and cost are the sums of any summary's groups). Zeros when the
    /// range holds no call.
    pub fn totals(&self, query: &TotalsQuery) -> Result<Totals, StoreError> {
        let sql = |postgres| totals_sql(&calls_filter(&query.scope, postgres));
        let rows = match self.pool() {
            Pool::Sqlite(pool) => with_report_cache(&mut *pool.get()?, |conn| {
                Ok(run_bound!(conn, sql(false), query, SummaryRow))
            })?,
            Pool::Postgres(pool) => run_bound!(&mut pool.get()?, sql(true), query, SummaryRow),
        };
        Ok(rows
            .into_iter()
            .next()
            .map_or_else(Totals::default, Totals::from))
    }

    /// The range's calls per time bucket and per value of the split's key, ordered by bucket
    /// then key; buckets without calls are absent.
    pub fn series(&self, query: &SeriesQuery) -> Result<Vec<SeriesRow>, StoreError> {
        let sql = |postgres| {
            aggregate_sql(
                &[
                    (
                        "bucket_start",
                        query.bucket.group_sql(postgres),
                        query.bucket.shown_sql(postgres),
                    ),
                    ("key", query.split.key_sql(postgres), "{}"),
                ],
                &calls_filter(&query.scope, postgres),
            )
        };
        let mut rows = match self.pool() {
            Pool::Sqlite(pool) => with_report_cache(&mut *pool.get()?, |conn| {
                Ok(run_bound!(conn, sql(false), query, SeriesRow))
            })?,
            Pool::Postgres(pool) => run_bound!(&mut pool.get()?, sql(true), query, SeriesRow),
        };
        // By bytes, like the rollup's rows: a PostgreSQL collation would order keys otherwise.
        rows.sort_by(|a, b| (&a.bucket_start, &a.group.key).cmp(&(&b.bucket_start, &b.group.key)));
        Ok(rows)
    }
}

/// A scoped report thread's outcome; a panic in it is an error, not the server's.
fn joined<T>(
    handle: std::thread::ScopedJoinHandle<'_, Result<T, StoreError>>,
) -> Result<T, StoreError> {
    handle
        .join()
        .unwrap_or_else(|_| Err(StoreError::Connect("a report thread panicked".to_owned())))
}

/// A summary's rows and whether their percentiles are exact.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// One row per group, ordered by key.
    pub rows: Vec<SummaryRow>,
    /// Exact, or from the rollup's latency bins.
    pub percentiles: Percentiles,
}

/// An overview request: rows with `from <= timestamp < to`, split by one grouping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverviewQuery {
    /// Start (inclusive).
    pub from: DateTime<Utc>,
    /// End (exclusive).
    pub to: DateTime<Utc>,
    /// The series' buckets.
    pub bucket: Bucket,
    /// What the summary and the series are split by.
    pub split: GroupBy,
    /// Whose rows.
    pub scope: Scope,
}

/// A range's totals, its summary by one key and its series, their percentiles of one kind.
#[derive(Debug, Clone, PartialEq)]
pub struct Overview {
    /// Every call of the range.
    pub totals: Totals,
    /// Per key of the split, as [`UsageStore::summary`] gives it.
    pub summary: Vec<SummaryRow>,
    /// Per bucket and key of the split, as [`UsageStore::series`] gives it.
    pub series: Vec<SeriesRow>,
    /// Exact, or from the rollup's latency bins.
    pub percentiles: Percentiles,
}

/// A totals request: rows with `from <= timestamp < to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotalsQuery {
    /// Start (inclusive).
    pub from: DateTime<Utc>,
    /// End (exclusive).
    pub to: DateTime<Utc>,
    /// Whose rows.
    pub scope: Scope,
}

/// A range's calls, all together: [`SummaryRow`] without a key.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Totals {
    /// Calls.
    pub requests: i64,
    /// Calls that succeeded.
    pub successes: i64,
    /// Calls that failed.
    pub failures: i64,
    /// Input tokens.
    pub input_tokens: i64,
    /// Output tokens.
    pub output_tokens: i64,
    /// Estimated cost in USD.
    pub cost_usd: f64,
    /// Mean latency in milliseconds (0 without calls).
    pub avg_latency_ms: f64,
    /// Median latency (nearest rank) in milliseconds (0 without calls).
    pub p50_latency_ms: f64,
    /// 95th percentile latency (nearest rank) in milliseconds (0 without calls).
    pub p95_latency_ms: f64,
}

impl From<SummaryRow> for Totals {
    fn from(row: SummaryRow) -> Self {
        Self {
            requests: row.requests,
            successes: row.successes,
            failures: row.failures,
            input_tokens: row.input_tokens,
            output_tokens: row.output_tokens,
            cost_usd: row.cost_usd,
            avg_latency_ms: row.avg_latency_ms,
            p50_latency_ms: row.p50_latency_ms,
            p95_latency_ms: row.p95_latency_ms,
        }
    }
}

/// How long a time series' buckets are, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bucket {
    /// One hour; the bucket is named `YYYY-MM-DDTHH:00:00Z`.
    Hour,
    /// One day; the bucket is named `YYYY-MM-DD`.
    Day,
}

impl Bucket {
    /// The lower-case name used in the API.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Hour => "hour",
            Self::Day => "day",
        }
    }

    /// The SQL expression rows are grouped into buckets by (cheap: computed for every row).
    /// Fixed text chosen by the enum.
    fn group_sql(self, postgres: bool) -> &'static str {
        match (self, postgres) {
            (Self::Hour, true) => "date_trunc('hour', timestamp)",
            (Self::Day, true) => "date_trunc('day', timestamp)",
            // SQLite keeps timestamps as 'YYYY-MM-DD HH:MM:SS.fff' text: the date and hour, or
            // the date, are its start (substr reads any other storage class as text too).
            (Self::Hour, false) => "substr(timestamp, 1, 13)",
            (Self::Day, false) => "substr(timestamp, 1, 10)",
        }
    }

    /// How a bucket grouped by [`Self::group_sql`] is shown: `YYYY-MM-DDTHH:00:00Z` or
    /// `YYYY-MM-DD`, `{}` standing for the grouped value.
    fn shown_sql(self, postgres: bool) -> &'static str {
        match (self, postgres) {
            (Self::Hour, true) => "to_char({}, 'YYYY-MM-DD\"T\"HH24\":00:00Z\"')",
            (Self::Day, true) => "to_char({}, 'YYYY-MM-DD')",
            (Self::Hour, false) => "substr({}, 1, 10) || 'T' || substr({}, 12, 2) || ':00:00Z'",
            (Self::Day, false) => "{}",
        }
    }
}

impl fmt::Display for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Bucket {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Hour, Self::Day]
            .into_iter()
            .find(|b| b.as_str() == s)
            .ok_or_else(|| "must be hour or day".to_owned())
    }
}

/// A time-series request: rows with `from <= timestamp < to`, per bucket and per value of the
/// split's key (splitting by [`GroupBy::Day`] is allowed, if pointless).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesQuery {
    /// Start (inclusive).
    pub from: DateTime<Utc>,
    /// End (exclusive).
    pub to: DateTime<Utc>,
    /// The buckets' length.
    pub bucket: Bucket,
    /// What each bucket is split by.
    pub split: GroupBy,
    /// Whose rows.
    pub scope: Scope,
}

/// One (bucket, key) point of a time series.
/// One time bucket of one split key: the bucket, and what a summary of the bucket's calls
/// with that key reports.
#[derive(Debug, Clone, PartialEq, Serialize, QueryableByName)]
pub struct SeriesRow {
    /// The bucket's start in UTC: `YYYY-MM-DDTHH:00:00Z` for hours, `YYYY-MM-DD` for days.
    #[diesel(sql_type = Text)]
    pub bucket_start: String,
    /// The split's key and the figures, as a summary row.
    #[diesel(embed)]
    #[serde(flatten)]
    pub group: SummaryRow,
}

/// A by-target report request: the attempts of calls with `from <= timestamp < to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetQuery {
    /// Start (inclusive), of the calls' timestamps.
    pub from: DateTime<Utc>,
    /// End (exclusive).
    pub to: DateTime<Utc>,
    /// Whose calls.
    pub scope: Scope,
}

/// What every upstream target (provider and model) was asked to do, across all attempts: a
/// call of one attempt counts once for the target its row names, a call of several counts each
/// of its `usage_attempts` rows for that attempt's target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetReport {
    /// Calls in the range (those that never reached an upstream included).
    pub calls: i64,
    /// Of those, the calls that made more than one attempt: fell back to another target, or
    /// had a stream continued on one.
    pub fallback_calls: i64,
    /// One row per target, ordered by provider then model.
    pub targets: Vec<TargetRow>,
}

/// One target's share of a [`TargetReport`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetRow {
    /// The provider.
    pub provider: String,
    /// The model.
    pub model: String,
    /// Attempts made on this target.
    pub attempts: i64,
    /// Attempts that served their call.
    pub successes: i64,
    /// Attempts that failed.
    pub failures: i64,
    /// The failures by error code, ordered by code.
    pub failures_by_code: BTreeMap<String, i64>,
    /// Attempts that continued a stream another attempt began.
    pub continuations: i64,
    /// Input tokens the attempts consumed.
    pub input_tokens: i64,
    /// Output tokens the attempts consumed (a failed attempt's streamed tokens included).
    pub output_tokens: i64,
    /// Estimated cost of the attempts in USD.
    pub cost_usd: f64,
}

/// One (target, outcome) group as the statement returns it.
#[derive(Debug, QueryableByName)]
struct TargetOutcome {
    #[diesel(sql_type = Text)]
    provider: String,
    #[diesel(sql_type = Text)]
    model: String,
    #[diesel(sql_type = Nullable<Text>)]
    error_code: Option<String>,
    #[diesel(sql_type = BigInt)]
    attempts: i64,
    #[diesel(sql_type = BigInt)]
    continuations: i64,
    #[diesel(sql_type = BigInt)]
    input_tokens: i64,
    #[diesel(sql_type = BigInt)]
    output_tokens: i64,
    #[diesel(sql_type = Double)]
    cost_usd: f64,
}

/// The range's call counts as the statement returns them.
#[derive(Debug, QueryableByName)]
struct CallCounts {
    #[diesel(sql_type = BigInt)]
    calls: i64,
    #[diesel(sql_type = BigInt)]
    fallback_calls: i64,
}

/// The filter every report statement shares: the range and the caller, as binds (`$1`, `$2`
/// and, for one user, `$3`).
fn calls_filter(scope: &Scope, postgres: bool) -> String {
    // Numbered on both backends, so a statement may name the range twice.
    let param = |n: usize| {
        if postgres {
            format!("${n}")
        } else {
            format!("?{n}")
        }
    };
    let caller = match scope {
        Scope::Everyone => String::new(),
        Scope::Caller(Some(_)) => format!("AND user_email_hash = {}", param(3)),
        Scope::Caller(None) => "AND user_email_hash IS NULL".to_owned(),
    };
    format!(
        "timestamp >= {} AND timestamp < {} {caller}",
        param(1),
        param(2)
    )
}

/// Per (target, outcome): a row without attempt rows is its own single attempt (a row that
/// never reached an upstream, `attempts = 0`, is none), a row with them is those attempts.
/// The same statement on both backends but for the bind placeholders.
fn targets_sql(scope: &Scope, postgres: bool) -> String {
    format!(
        "WITH calls AS (
            SELECT request_id, provider, model, error_code, input_tokens, output_tokens,
                   estimated_cost_usd, attempts
            FROM usage_logs WHERE {filter}
        ),
        tried AS (
            SELECT c.provider, c.model, c.error_code, c.input_tokens, c.output_tokens,
                   c.estimated_cost_usd, 0 AS continued
            FROM calls c
            WHERE c.attempts >= 1
              AND NOT EXISTS (SELECT 1 FROM usage_attempts a WHERE a.request_id = c.request_id)
            UNION ALL
            SELECT a.provider, a.model, a.error_code, a.input_tokens, a.output_tokens,
                   a.estimated_cost_usd, CASE WHEN a.continuation THEN 1 ELSE 0 END AS continued
            FROM calls c JOIN usage_attempts a ON a.request_id = c.request_id
        )
        SELECT CAST(provider AS TEXT) AS provider,
               CAST(model AS TEXT) AS model,
               CAST(error_code AS TEXT) AS error_code,
               CAST(COUNT(*) AS BIGINT) AS attempts,
               CAST(SUM(continued) AS BIGINT) AS continuations,
               CAST(SUM(input_tokens) AS BIGINT) AS input_tokens,
               CAST(SUM(output_tokens) AS BIGINT) AS output_tokens,
               CAST(SUM(estimated_cost_usd) AS DOUBLE PRECISION) AS cost_usd
        FROM tried GROUP BY provider, model, error_code",
        filter = calls_filter(scope, postgres),
    )
}

fn call_counts_sql(scope: &Scope, postgres: bool) -> String {
    format!(
        "SELECT CAST(COUNT(*) AS BIGINT) AS calls,
                CAST(COALESCE(SUM(CASE WHEN attempts > 1 THEN 1 ELSE 0 END), 0) AS BIGINT)
                    AS fallback_calls
         FROM usage_logs WHERE {}",
        calls_filter(scope, postgres)
    )
}

/// The (target, outcome) groups folded into one row per target. Saturating: the counts come
/// from a table ops may edit by hand.
fn fold_targets(outcomes: Vec<TargetOutcome>) -> Vec<TargetRow> {
    let mut targets: BTreeMap<(String, String), TargetRow> = BTreeMap::new();
    for outcome in outcomes {
        let row = targets
            .entry((outcome.provider.clone(), outcome.model.clone()))
            .or_insert_with(|| TargetRow {
                provider: outcome.provider,
                model: outcome.model,
                attempts: 0,
                successes: 0,
                failures: 0,
                failures_by_code: BTreeMap::new(),
                continuations: 0,
                input_tokens: 0,
                output_tokens: 0,
                cost_usd: 0.0,
            });
        row.attempts = row.attempts.saturating_add(outcome.attempts);
        match outcome.error_code {
            None => row.successes = row.successes.saturating_add(outcome.attempts),
            Some(code) => {
                row.failures = row.failures.saturating_add(outcome.attempts);
                let count = row.failures_by_code.entry(code).or_insert(0);
                *count = count.saturating_add(outcome.attempts);
            }
        }
        row.continuations = row.continuations.saturating_add(outcome.continuations);
        row.input_tokens = row.input_tokens.saturating_add(outcome.input_tokens);
        row.output_tokens = row.output_tokens.saturating_add(outcome.output_tokens);
        row.cost_usd += outcome.cost_usd;
    }
    targets.into_values().collect()
}

impl UsageStore {
    /// What each target (provider, model) was asked to do in the range, across every attempt
    /// (see [`TargetReport`]), and how many calls needed more than one attempt.
    pub fn targets(&self, query: &TargetQuery) -> Result<TargetReport, StoreError> {
        let (counts, outcomes) = match self.pool() {
            Pool::Sqlite(pool) => {
                let conn = &mut pool.get()?;
                (
                    run_bound!(
                        conn,
                        call_counts_sql(&query.scope, false),
                        query,
                        CallCounts
                    ),
                    run_bound!(conn, targets_sql(&query.scope, false), query, TargetOutcome),
                )
            }
            Pool::Postgres(pool) => {
                let conn = &mut pool.get()?;
                (
                    run_bound!(conn, call_counts_sql(&query.scope, true), query, CallCounts),
                    run_bound!(conn, targets_sql(&query.scope, true), query, TargetOutcome),
                )
            }
        };
        let (calls, fallback_calls) = counts
            .first()
            .map_or((0, 0), |c| (c.calls, c.fallback_calls));
        Ok(TargetReport {
            calls,
            fallback_calls,
            targets: fold_targets(outcomes),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_by_parses_its_own_names_only() {
        for g in GroupBy::ALL {
            assert_eq!(g.as_str().parse::<GroupBy>(), Ok(g));
        }
        assert!(
            "specialist; DROP TABLE usage_logs"
                .parse::<GroupBy>()
                .is_err()
        );
    }

    #[test]
    fn range_bounds_accept_dates_and_times() {
        use chrono::TimeZone;
        let start = parse_range_bound("2026-11-01", RangeEnd::Start).unwrap();
        assert_eq!(start, Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap());
        let end = parse_range_bound("2026-11-30", RangeEnd::End).unwrap();
        assert_eq!(end, Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap());
        let exact = parse_range_bound("2026-11-05T10:30:00+01:00", RangeEnd::End).unwrap();
        assert_eq!(exact, Utc.with_ymd_and_hms(2026, 11, 5, 9, 30, 0).unwrap());
        assert!(parse_range_bound("yesterday", RangeEnd::Start).is_err());
    }

    #[test]
    fn range_bounds_stay_within_years_1_to_9999() {
        use chrono::TimeZone;
        for raw in [
            "-262143-01-01",
            "+262142-12-31",
            "0000-12-31",
            "10000-01-01",
            "0000-12-31T23:59:59Z",
        ] {
            for end in [RangeEnd::Start, RangeEnd::End] {
                assert!(parse_range_bound(raw, end).is_err(), "{raw} {end:?}");
            }
        }
        assert_eq!(
            parse_range_bound("0001-01-01", RangeEnd::Start).unwrap(),
            Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0).unwrap()
        );
        assert_eq!(
            parse_range_bound("9999-12-31", RangeEnd::End).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
            "the whole last day, up to the last instant a bound may name"
        );
        assert_eq!(
            default_range_start(Utc.with_ymd_and_hms(1, 1, 2, 0, 0, 0).unwrap()),
            Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0).unwrap()
        );
        assert_eq!(
            default_range_start(DateTime::<Utc>::MIN_UTC),
            Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0).unwrap(),
            "no overflow at chrono's own limit"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(2000))]

        /// Whatever a query string or the command line holds: a bound in range, or an error.
        #[test]
        fn any_text_is_a_bound_in_range_or_an_error(raw in "(?s).{0,40}") {
            for end in [RangeEnd::Start, RangeEnd::End] {
                if let Ok(bound) = parse_range_bound(&raw, end) {
                    proptest::prop_assert!((earliest_bound()..=latest_bound()).contains(&bound));
                }
            }
        }

        /// Date-shaped text with any year, month, day and time, far outside chrono's range too.
        #[test]
        fn any_date_shaped_text_is_a_bound_in_range_or_an_error(
            year in proptest::prelude::any::<i64>(),
            month in 0u32..14,
            day in 0u32..33,
            rest in proptest::sample::select(vec!["", "T00:00:00Z", "T23:59:60+14:00", "T12:00:00-23:59"]),
        ) {
            let raw = format!("{year:04}-{month:02}-{day:02}{rest}");
            for end in [RangeEnd::Start, RangeEnd::End] {
                if let Ok(bound) = parse_range_bound(&raw, end) {
                    proptest::prop_assert!((earliest_bound()..=latest_bound()).contains(&bound));
                    proptest::prop_assert!(default_range_start(bound) <= bound);
                }
            }
        }

        /// Any instant chrono can hold has a default start, never after it.
        #[test]
        fn the_default_start_never_overflows(seconds in proptest::prelude::any::<i64>()) {
            let to = DateTime::<Utc>::from_timestamp(seconds, 0).unwrap_or(DateTime::<Utc>::MAX_UTC);
            proptest::prop_assert!(default_range_start(to) <= to.max(earliest_bound()));
        }
    }

    /// Rows on both backends for the aggregate tests.
    mod on_rows {
        use std::time::Duration;

        use chrono::{TimeZone, Utc};
        use core_domain::{EmailHash, ErrorCode, SpecialistId, TokenUsage, Usd};

        use super::super::*;
        use crate::UsageRecord;
        use crate::test_database::on_both_backends;

        fn at(day: u32, hour: u32, minute: u32, second: u32, millis: u32) -> DateTime<Utc> {
            Utc.with_ymd_and_hms(2026, 11, day, hour, minute, second)
                .unwrap()
                .checked_add_signed(chrono::TimeDelta::milliseconds(i64::from(millis)))
                .unwrap()
        }

        fn call(id: &str, specialist: &str, latency_ms: u64, when: DateTime<Utc>) -> UsageRecord {
            UsageRecord {
                specialist_id: SpecialistId::parse(specialist).unwrap(),
                latency: Duration::from_millis(latency_ms),
                timestamp: when,
                ..crate::fixture::usage_record(id)
            }
        }

        /// The `ceil(p n)`-th smallest, computed the plain way.
        fn nearest_rank(mut values: Vec<f64>, percent: usize) -> f64 {
            values.sort_by(f64::total_cmp);
            let rank = (values.len() * percent).div_ceil(100);
            values[rank - 1]
        }

        #[test]
        fn the_median_and_95th_percentile_are_nearest_rank() {
            on_both_backends(|store| {
                let mut records = Vec::new();
                // Latencies given out of order, so the rank comes from sorting.
                for i in (1..=20u64).rev() {
                    records.push(call(&format!("a{i}"), "analyst", i, at(20, 12, 0, 0, 0)));
                }
                for i in 1..=7u64 {
                    records.push(call(
                        &format!("b{i}"),
                        "reviewer",
                        i * 3,
                        at(20, 12, 0, 0, 0),
                    ));
                }
                records.push(call("c1", "coder", 5, at(20, 12, 0, 0, 0)));
                store.insert_batch(&records).unwrap();
                let (from, to) = (at(20, 0, 0, 0, 0), at(21, 0, 0, 0, 0));
                let rows = store
                    .summary(&SummaryQuery {
                        from,
                        to,
                        group_by: GroupBy::Specialist,
                        scope: Scope::Everyone,
                    })
                    .unwrap()
                    .rows;
                let percentiles: Vec<(&str, f64, f64)> = rows
                    .iter()
                    .map(|r| (r.key.as_str(), r.p50_latency_ms, r.p95_latency_ms))
                    .collect();
                // analyst: n = 20, the 10th and the 19th; reviewer: n = 7, the 4th and the
                // 7th; coder: its one call.
                assert_eq!(
                    percentiles,
                    [
                        ("analyst", 10.0, 19.0),
                        ("coder", 5.0, 5.0),
                        ("reviewer", 12.0, 21.0)
                    ],
                    "{:?}",
                    store.backend()
                );
                let totals = store
                    .totals(&TotalsQuery {
                        from,
                        to,
                        scope: Scope::Everyone,
                    })
                    .unwrap();
                let all: Vec<f64> = records
                    .iter()
                    .map(|r| r.latency.as_secs_f64() * 1000.0)
                    .collect();
                assert_eq!(totals.p50_latency_ms, nearest_rank(all.clone(), 50));
                assert_eq!(totals.p95_latency_ms, nearest_rank(all.clone(), 95));
                // 1..=20, 3, 6, ..., 21 and 5 sorted: 1 2 3 3 4 5 5 6 6 7 8 9 9 10 ...
                assert_eq!(totals.p50_latency_ms, 10.0, "the 14th of 28");
                assert!((totals.avg_latency_ms - all.iter().sum::<f64>() / 28.0).abs() < 1e-9);
            });
        }

        #[test]
        fn totals_are_the_sums_of_every_summary_s_groups() {
            on_both_backends(|store| {
                let ada = EmailHash::of_email("ada@example.com");
                let mut records = Vec::new();
                for i in 0..40u32 {
                    let specialist = ["analyst", "reviewer", "coder"][i as usize % 3];
                    let mut r = call(
                        &format!("r{i}"),
                        specialist,
                        u64::from(i * 37 % 101),
                        at(20 + i % 3, i % 24, i % 60, 0, 0),
                    );
                    r.usage = TokenUsage::reported(i * 10, i * 3);
                    r.cost = Usd::from_nanos(u64::from(i) * 1_000_003);
                    r.user_email_hash = match i % 3 {
                        0 => Some(ada.clone()),
                        1 => Some(EmailHash::of_email("grace@example.com")),
                        _ => None,
                    };
                    r.door = core_domain::Door::ALL[i as usize % 5];
                    if i % 6 == 0 {
                        r.error_code = Some(ErrorCode::UpstreamTimeout);
                    }
                    records.push(r);
                }
                store.insert_batch(&records).unwrap();
                for scope in [
                    Scope::Everyone,
                    Scope::Caller(Some(ada.clone())),
                    Scope::Caller(None),
                ] {
                    let (from, to) = (at(20, 6, 0, 0, 0), at(22, 12, 0, 0, 0));
                    let totals = store
                        .totals(&TotalsQuery {
                            from,
                            to,
                            scope: scope.clone(),
                        })
                        .unwrap();
                    assert!(totals.requests > 0, "{scope:?}");
                    for group_by in GroupBy::ALL {
                        let rows = store
                            .summary(&SummaryQuery {
                                from,
                                to,
                                group_by,
                                scope: scope.clone(),
                            })
                            .unwrap()
                            .rows;
                        let sum = |f: fn(&SummaryRow) -> i64| rows.iter().map(f).sum::<i64>();
                        assert_eq!(
                            (
                                sum(|r| r.requests),
                                sum(|r| r.successes),
                                sum(|r| r.failures),
                                sum(|r| r.input_tokens),
                                sum(|r| r.output_tokens),
                            ),
                            (
                                totals.requests,
                                totals.successes,
                                totals.failures,
                                totals.input_tokens,
                                totals.output_tokens,
                            ),
                            "{group_by} {scope:?} {:?}",
                            store.backend()
                        );
                        let cost: f64 = rows.iter().map(|r| r.cost_usd).sum();
                        assert!((cost - totals.cost_usd).abs() < 1e-9, "{group_by}");
                    }
                }
                let nothing = store
                    .totals(&TotalsQuery {
                        from: at(1, 0, 0, 0, 0),
                        to: at(2, 0, 0, 0, 0),
                        scope: Scope::Everyone,
                    })
                    .unwrap();
                assert_eq!(nothing, Totals::default());
            });
        }

        #[test]
        fn series_buckets_hold_the_rows_on_their_edges() {
            on_both_backends(|store| {
                let rows = [
                    ("before", "analyst", at(20, 9, 59, 59, 999)),
                    ("start", "analyst", at(20, 10, 0, 0, 0)),
                    ("hour-end", "analyst", at(20, 10, 59, 59, 999)),
                    ("next-hour", "analyst", at(20, 11, 0, 0, 0)),
                    ("next-hour-b", "reviewer", at(20, 11, 30, 0, 0)),
                    ("day-end", "reviewer", at(20, 23, 59, 59, 999)),
                    ("next-day", "analyst", at(21, 0, 0, 0, 0)),
                    ("at-to", "analyst", at(21, 1, 0, 0, 0)),
                ];
                let records: Vec<UsageRecord> = rows
                    .iter()
                    .map(|(id, specialist, when)| call(id, specialist, 10, *when))
                    .collect();
                store.insert_batch(&records).unwrap();
                let series = |bucket| {
                    store
                        .series(&SeriesQuery {
                            from: at(20, 10, 0, 0, 0),
                            to: at(21, 1, 0, 0, 0),
                            bucket,
                            split: GroupBy::Specialist,
                            scope: Scope::Everyone,
                        })
                        .unwrap()
                        .into_iter()
                        .map(|r| (r.bucket_start, r.group.key, r.group.requests))
                        .collect::<Vec<_>>()
                };
                let point = |b: &str, k: &str, n| (b.to_owned(), k.to_owned(), n);
                assert_eq!(
                    series(Bucket::Hour),
                    [
                        point("2026-11-20T10:00:00Z", "analyst", 2),
                        point("2026-11-20T11:00:00Z", "analyst", 1),
                        point("2026-11-20T11:00:00Z", "reviewer", 1),
                        point("2026-11-20T23:00:00Z", "reviewer", 1),
                        point("2026-11-21T00:00:00Z", "analyst", 1),
                    ],
                    "{:?}",
                    store.backend()
                );
                assert_eq!(
                    series(Bucket::Day),
                    [
                        point("2026-11-20", "analyst", 3),
                        point("2026-11-20", "reviewer", 2),
                        point("2026-11-21", "analyst", 1),
                    ],
                    "{:?}",
                    store.backend()
                );
                let by_door = store
                    .series(&SeriesQuery {
                        from: at(20, 0, 0, 0, 0),
                        to: at(22, 0, 0, 0, 0),
                        bucket: Bucket::Day,
                        split: GroupBy::Door,
                        scope: Scope::Caller(None),
                    })
                    .unwrap();
                assert!(by_door.is_empty(), "every row is ada's: {by_door:?}");
            });
        }

        #[test]
        fn a_series_point_reports_what_a_summary_of_its_bucket_does() {
            on_both_backends(|store| {
                let mut records = Vec::new();
                for i in 0..30u64 {
                    let mut r = call(&format!("r{i}"), "analyst", i * 7 % 23, at(20, 10, 0, 0, 0));
                    if i % 5 == 0 {
                        r.error_code = Some(ErrorCode::UpstreamError);
                    }
                    records.push(r);
                }
                store.insert_batch(&records).unwrap();
                let (from, to) = (at(20, 10, 0, 0, 0), at(20, 11, 0, 0, 0));
                let series = store
                    .series(&SeriesQuery {
                        from,
                        to,
                        bucket: Bucket::Hour,
                        split: GroupBy::Model,
                        scope: Scope::Everyone,
                    })
                    .unwrap();
                let summary = store
                    .summary(&SummaryQuery {
                        from,
                        to,
                        group_by: GroupBy::Model,
                        scope: Scope::Everyone,
                    })
                    .unwrap()
                    .rows;
                assert_eq!(series.len(), 1);
                assert_eq!(series[0].group, summary[0]);
                assert_eq!((summary[0].requests, summary[0].failures), (30, 6));
            });
        }
    }

    #[test]
    fn buckets_parse_their_own_names_only() {
        assert_eq!("hour".parse::<Bucket>(), Ok(Bucket::Hour));
        assert_eq!("day".parse::<Bucket>(), Ok(Bucket::Day));
        assert!("week".parse::<Bucket>().is_err());
        assert!("Hour".parse::<Bucket>().is_err());
    }

    #[test]
    fn placeholders_follow_the_backend() {
        let sql = summary_sql(
            GroupBy::Day,
            &Scope::Caller(Some(EmailHash::of_email("a@b.c"))),
            true,
        );
        assert!(sql.contains("$1") && sql.contains("$3") && sql.contains("to_char"));
        let sql = summary_sql(GroupBy::Day, &Scope::Caller(None), false);
        assert!(!sql.contains('$') && sql.contains("IS NULL") && sql.contains("substr"));
    }
}
