//! The call list: the usage log's rows newest first, filtered, a page at a time, with keyset
//! pagination on `(timestamp, request_id)` so a page costs the same however deep it is and
//! rows written meanwhile never shift one page's rows into the next; and the values the
//! filters can take, as seen recently.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use core_domain::{Door, EmailHash, ErrorCode, RequestId, SpecialistId};
use diesel::prelude::*;
use diesel::sql_types::{Text, Timestamp};
use serde::Serialize;

use crate::report::Scope;
use crate::schema::usage_logs;
use crate::store::{Pool, with_connection};
use crate::{StoreError, StoredUsage, UsageStore};

/// The largest page [`UsageStore::list_calls`] returns.
pub const CALL_PAGE_MAX: u32 = 200;

/// How many values of each kind [`UsageStore::call_filter_values`] returns at most.
pub const FILTER_VALUES_MAX: i64 = 200;

/// What a call list keeps; every condition given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallFilter {
    /// The specialist's id.
    pub specialist: Option<String>,
    /// The caller's email hash, or `anonymous` for calls without one.
    pub user: Option<String>,
    /// Succeeded (`true`) or failed (`false`).
    pub success: Option<bool>,
    /// The error code a failed call was logged with.
    pub error_code: Option<String>,
    /// The front door.
    pub door: Option<Door>,
    /// Streamed or not.
    pub streamed: Option<bool>,
}

impl CallFilter {
    /// The filters' names, as the API's query parameters and the console's controls spell
    /// them, in the order forms show them.
    pub const NAMES: [&'static str; 6] = [
        "specialist",
        "user",
        "status",
        "error_code",
        "door",
        "streamed",
    ];

    /// Sets the filter named `name` (one of [`Self::NAMES`]) from its text: `specialist` an id,
    /// `user` an email hash or `anonymous`, `status` `success` or `failure`, `error_code` a
    /// code calls end with, `door` a door's name, `streamed` `true` or `false`. What is wrong
    /// with an unreadable value, as a phrase completing "the value ...".
    pub fn set(&mut self, name: &str, raw: &str) -> Result<(), String> {
        let choice = |yes: &str, no: &str, message: &str| match raw {
            _ if raw == yes => Ok(true),
            _ if raw == no => Ok(false),
            _ => Err(message.to_owned()),
        };
        match name {
            "specialist" => {
                let id = SpecialistId::parse(raw).map_err(|_| "is not a specialist id")?;
                self.specialist = Some(id.as_str().to_owned());
            }
            "user" if raw == ANONYMOUS => self.user = Some(ANONYMOUS.to_owned()),
            "user" => {
                let hash = EmailHash::from_hex(raw)
                    .map_err(|_| "must be an email hash (64 hex digits) or anonymous")?;
                self.user = Some(hash.as_str().to_owned());
            }
            "status" => {
                self.success = Some(choice("success", "failure", "must be success or failure")?)
            }
            "error_code" => {
                let code = ErrorCode::ALL
                    .iter()
                    .find(|code| code.as_str() == raw)
                    .ok_or("is not an error code calls end with")?;
                self.error_code = Some(code.as_str().to_owned());
            }
            "door" => {
                let door = Door::parse(raw).ok_or_else(|| {
                    format!("must be one of {}", Door::ALL.map(Door::as_str).join(", "))
                })?;
                self.door = Some(door);
            }
            "streamed" => self.streamed = Some(choice("true", "false", "must be true or false")?),
            other => return Err(format!("names no filter ({other})")),
        }
        Ok(())
    }
}

/// Where a page starts: the last row of the page before (rows strictly older, in
/// `(timestamp, request_id)` order, follow it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallCursor {
    /// The row's timestamp, as stored.
    pub timestamp: NaiveDateTime,
    /// The row's request id.
    pub request_id: RequestId,
}

impl CallCursor {
    /// The cursor as text fit for a URL query: `<RFC 3339 time in UTC>~<request id>`. Neither
    /// part holds `~`, `&`, `#` or a space; the time keeps every fractional digit stored, so
    /// the row it names is found again exactly.
    pub fn to_token(&self) -> String {
        format!(
            "{}~{}",
            self.timestamp
                .and_utc()
                .to_rfc3339_opts(SecondsFormat::AutoSi, true),
            self.request_id
        )
    }

    /// Reads a token [`Self::to_token`] made; anything else is refused with the reason.
    pub fn parse(token: &str) -> Result<Self, String> {
        const SHAPE: &str = "is not a cursor from a previous page";
        let (time, id) = token.split_once('~').ok_or_else(|| SHAPE.to_owned())?;
        let timestamp = DateTime::parse_from_rfc3339(time)
            .map_err(|_| SHAPE.to_owned())?
            .naive_utc();
        let request_id = RequestId::parse(id).map_err(|_| SHAPE.to_owned())?;
        Ok(Self {
            timestamp,
            request_id,
        })
    }
}

/// A call-list request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallListQuery {
    /// Whose rows.
    pub scope: Scope,
    /// Which of them.
    pub filter: CallFilter,
    /// Only rows older than this one (the next page); `None` for the newest.
    pub before: Option<CallCursor>,
    /// Rows per page, 1 to [`CALL_PAGE_MAX`] (other values are brought into that range).
    pub limit: u32,
}

/// One row of the call list: what a table of calls shows. The call's attempts and the rest of
/// its columns are [`UsageStore::call`]'s.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallListRow {
    /// The gateway's request id.
    pub request_id: String,
    /// When the call started.
    pub timestamp: DateTime<Utc>,
    /// The specialist's id at call time.
    pub specialist_id: String,
    /// The specialist's name at call time.
    pub specialist_name: String,
    /// The provider that served the call (or was last tried).
    pub provider: String,
    /// The model.
    pub model: String,
    /// SHA-256 of the caller's email; `None` for the anonymous caller.
    pub user_email_hash: Option<String>,
    /// The name of the API key the caller authenticated with.
    pub api_key: Option<String>,
    /// The front door.
    pub door: String,
    /// True for streamed calls.
    pub streamed: bool,
    /// True when the call succeeded.
    pub success: bool,
    /// Why it failed.
    pub error_code: Option<String>,
    /// Input tokens, over every attempt.
    pub input_tokens: i64,
    /// Output tokens, over every attempt.
    pub output_tokens: i64,
    /// Estimated cost in USD, over every attempt.
    pub cost_usd: f64,
    /// Latency in milliseconds.
    pub latency_ms: f64,
    /// Upstream attempts made.
    pub attempts: i16,
}

impl From<StoredUsage> for CallListRow {
    fn from(row: StoredUsage) -> Self {
        Self {
            request_id: row.request_id,
            timestamp: row.timestamp.and_utc(),
            specialist_id: row.specialist_id,
            specialist_name: row.specialist_name,
            provider: row.provider,
            model: row.model,
            user_email_hash: row.user_email_hash,
            api_key: row.api_key,
            door: row.door,
            streamed: row.streamed,
            success: row.success,
            error_code: row.error_code,
            input_tokens: row.input_tokens,
            output_tokens: row.output_tokens,
            cost_usd: row.estimated_cost_usd,
            latency_ms: row.latency_ms,
            attempts: row.attempts,
        }
    }
}

/// One page of the call list.
#[derive(Debug, Clone, PartialEq)]
pub struct CallPage {
    /// The rows, newest first.
    pub calls: Vec<CallListRow>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<CallCursor>,
}

/// The values the call list's filters can take, each list sorted and at most
/// [`FILTER_VALUES_MAX`] long.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CallFilterValues {
    /// Specialist ids.
    pub specialists: Vec<String>,
    /// Error codes.
    pub error_codes: Vec<String>,
    /// Doors.
    pub doors: Vec<String>,
    /// Callers' email hashes, `anonymous` for calls without one.
    pub users: Vec<String>,
}

/// The caller's email hash [`CallFilter::user`] names calls without one by.
const ANONYMOUS: &str = "anonymous";

/// A `usage_logs` query narrowed to the scope's rows: the same rule as the reports'.
macro_rules! scoped {
    ($query:expr, $scope:expr) => {
        match $scope {
            Scope::Everyone => $query,
            Scope::Caller(Some(hash)) => {
                $query.filter(usage_logs::user_email_hash.eq(hash.as_str()))
            }
            Scope::Caller(None) => $query.filter(usage_logs::user_email_hash.is_null()),
        }
    };
}

/// Newest-first rows matching the query, one more than the page so the caller learns whether
/// another page follows. Every value is a bind. The conditions on booleans are written as
/// the column itself (not `= ?`) so a planner can match them against partial indexes.
macro_rules! load_page {
    ($conn:expr, $q:expr, $fetch:expr) => {{
        let mut rows = scoped!(usage_logs::table.into_boxed(), &$q.scope);
        let filter = &$q.filter;
        if let Some(specialist) = &filter.specialist {
            rows = rows.filter(usage_logs::specialist_id.eq(specialist.as_str()));
        }
        match filter.user.as_deref() {
            None => {}
            Some(ANONYMOUS) => rows = rows.filter(usage_logs::user_email_hash.is_null()),
            Some(hash) => rows = rows.filter(usage_logs::user_email_hash.eq(hash)),
        }
        match filter.success {
            None => {}
            Some(true) => rows = rows.filter(usage_logs::success),
            Some(false) => rows = rows.filter(diesel::dsl::not(usage_logs::success)),
        }
        if let Some(code) = &filter.error_code {
            rows = rows.filter(usage_logs::error_code.eq(code.as_str()));
        }
        if let Some(door) = filter.door {
            rows = rows.filter(usage_logs::door.eq(door.as_str()));
        }
        match filter.streamed {
            None => {}
            Some(true) => rows = rows.filter(usage_logs::streamed),
            Some(false) => rows = rows.filter(diesel::dsl::not(usage_logs::streamed)),
        }
        if let Some(cursor) = &$q.before {
            // `timestamp <= t` alone bounds the index range; the OR then drops the rows of
            // the cursor's own instant that the previous page already showed.
            rows = rows
                .filter(usage_logs::timestamp.le(cursor.timestamp))
                .filter(
                    usage_logs::timestamp
                        .lt(cursor.timestamp)
                        .or(usage_logs::request_id.lt(cursor.request_id.as_str())),
                );
        }
        rows.order((usage_logs::timestamp.desc(), usage_logs::request_id.desc()))
            .limit($fetch)
            .select(StoredUsage::as_select())
            .load::<StoredUsage>($conn)?
    }};
}

/// One value a filter can take, as [`seen_sql`] returns it.
#[derive(QueryableByName)]
pub(crate) struct Seen {
    #[diesel(sql_type = Text)]
    pub(crate) value: String,
}

/// The distinct values of `expression` (fixed text, never caller input) in the scope's rows
/// since `$1`, sorted, at most [`FILTER_VALUES_MAX`]. The value is the expression with `|| ''`
/// on purpose: the planner then has no index that yields it in order, and reads the range's
/// rows through the timestamp index instead of walking a whole `(column, timestamp)` index,
/// so the cost follows the range, not the table.
fn seen_sql(expression: &str, scope: &Scope, postgres: bool) -> String {
    let caller = match scope {
        Scope::Everyone => "",
        Scope::Caller(Some(_)) if postgres => "AND user_email_hash = $2",
        Scope::Caller(Some(_)) => "AND user_email_hash = ?",
        Scope::Caller(None) => "AND user_email_hash IS NULL",
    };
    let since = if postgres { "$1" } else { "?" };
    format!(
        "SELECT DISTINCT CAST({expression} AS TEXT) || '' AS value FROM usage_logs
         WHERE timestamp >= {since} {caller} AND {expression} IS NOT NULL
         ORDER BY value LIMIT {FILTER_VALUES_MAX}"
    )
}

/// Runs [`seen_sql`] for each expression on one connection.
macro_rules! load_seen {
    ($conn:expr, $expressions:expr, $scope:expr, $from:expr, $postgres:expr) => {{
        let mut lists: Vec<Vec<String>> = Vec::new();
        for expression in $expressions {
            let statement = diesel::sql_query(seen_sql(expression, $scope, $postgres))
                .bind::<Timestamp, _>($from);
            let rows: Vec<Seen> = match $scope {
                Scope::Caller(Some(hash)) => statement
                    .bind::<Text, _>(hash.as_str())
                    .load::<Seen>($conn)?,
                _ => statement.load::<Seen>($conn)?,
            };
            // Sorted here too: PostgreSQL's collation may order `_` or digits unlike bytes.
            let mut values: Vec<String> = rows.into_iter().map(|seen| seen.value).collect();
            values.sort_unstable();
            lists.push(values);
        }
        lists
    }};
}

impl UsageStore {
    /// One page of the scope's calls matching the filter, newest first (ties in time broken by
    /// request id, descending), and the cursor of the next page when there is one.
    pub fn list_calls(&self, query: &CallListQuery) -> Result<CallPage, StoreError> {
        let limit = query.limit.clamp(1, CALL_PAGE_MAX);
        let fetch = i64::from(limit) + 1;
        let mut rows: Vec<StoredUsage> =
            with_connection!(self, |conn| load_page!(conn, query, fetch));
        let page_size = usize::try_from(limit).unwrap_or(usize::MAX);
        let more = rows.len() > page_size;
        rows.truncate(page_size);
        let next = match rows.last() {
            Some(last) if more => Some(CallCursor {
                timestamp: last.timestamp,
                request_id: RequestId::parse(last.request_id.as_str()).map_err(|_| {
                    StoreError::Corrupt(format!(
                        "request id '{}' is not one the gateway makes",
                        last.request_id.escape_debug()
                    ))
                })?,
            }),
            _ => None,
        };
        Ok(CallPage {
            calls: rows.into_iter().map(CallListRow::from).collect(),
            next,
        })
    }

    /// The specialists, error codes, doors and callers of the scope's calls since `from`, for
    /// the call list's filters to offer: at most [`FILTER_VALUES_MAX`] of each, sorted.
    pub fn call_filter_values(
        &self,
        scope: &Scope,
        from: DateTime<Utc>,
    ) -> Result<CallFilterValues, StoreError> {
        if *scope == Scope::Everyone
            && let Some(sets) = self.rolled_keys(
                from,
                &[
                    crate::rollup::Dimension::Specialist,
                    crate::rollup::Dimension::Door,
                    crate::rollup::Dimension::User,
                ],
            )?
        {
            // Specialists, doors and callers from the hourly rollup where it is sealed (a
            // month of a million calls: 2 s scanning the log, 25 ms this way); error codes
            // from the failed calls' own index.
            let most = usize::try_from(FILTER_VALUES_MAX).unwrap_or(usize::MAX);
            let mut sets = sets
                .into_iter()
                .map(|set| set.into_iter().take(most).collect::<Vec<_>>());
            let mut next = || sets.next().unwrap_or_default();
            let (specialists, doors, users) = (next(), next(), next());
            let sql = crate::rollup::placeholders(
                &format!(
                    "SELECT DISTINCT error_code AS value FROM usage_logs
                     WHERE error_code IS NOT NULL AND timestamp >= {{1}}
                     ORDER BY value LIMIT {FILTER_VALUES_MAX}"
                ),
                self.backend() == crate::Backend::Postgres,
            );
            let error_codes = with_connection!(self, |conn| {
                diesel::sql_query(&sql)
                    .bind::<Timestamp, _>(from.naive_utc())
                    .load::<Seen>(conn)?
            });
            let mut error_codes: Vec<String> = error_codes.into_iter().map(|s| s.value).collect();
            error_codes.sort_unstable();
            return Ok(CallFilterValues {
                specialists,
                error_codes,
                doors,
                users,
            });
        }
        let from = from.naive_utc();
        let expressions = [
            "specialist_id",
            "error_code",
            "door",
            "COALESCE(user_email_hash, 'anonymous')",
        ];
        let lists = match self.pool() {
            Pool::Sqlite(pool) => load_seen!(&mut pool.get()?, expressions, scope, from, false),
            Pool::Postgres(pool) => load_seen!(&mut pool.get()?, expressions, scope, from, true),
        };
        let mut lists = lists.into_iter();
        let mut next = || lists.next().unwrap_or_default();
        Ok(CallFilterValues {
            specialists: next(),
            error_codes: next(),
            doors: next(),
            users: next(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_filter_reads_its_own_values_and_names_what_is_wrong() {
        let hash = "ab".repeat(32);
        let mut filter = CallFilter::default();
        for (name, raw) in [
            ("specialist", "analyst"),
            ("user", hash.as_str()),
            ("status", "failure"),
            ("error_code", "upstream_error"),
            ("door", "messages"),
            ("streamed", "true"),
        ] {
            assert_eq!(filter.set(name, raw), Ok(()), "{name}={raw}");
        }
        assert_eq!(
            filter,
            CallFilter {
                specialist: Some("analyst".into()),
                user: Some("ab".repeat(32)),
                success: Some(false),
                error_code: Some("upstream_error".into()),
                door: Some(Door::Messages),
                streamed: Some(true),
            }
        );
        assert_eq!(filter.set("user", "anonymous"), Ok(()));
        assert_eq!(filter.user.as_deref(), Some("anonymous"));
        for (name, raw) in [
            ("specialist", "<script>"),
            ("user", "bob"),
            ("status", "maybe"),
            ("error_code", "nope"),
            ("door", "side"),
            ("streamed", "yes"),
            ("colour", "red"),
        ] {
            let mut untouched = CallFilter::default();
            assert!(untouched.set(name, raw).is_err(), "{name}={raw}");
            assert_eq!(untouched, CallFilter::default(), "{name}={raw}");
        }
    }

    #[test]
    fn a_cursor_round_trips_through_its_token() {
        let timestamp = chrono::NaiveDate::from_ymd_opt(2026, 11, 20)
            .and_then(|d| d.and_hms_nano_opt(12, 0, 0, 123_456_789))
            .unwrap();
        let cursor = CallCursor {
            timestamp,
            request_id: RequestId::parse("req-1.a:b_c").unwrap(),
        };
        let token = cursor.to_token();
        assert_eq!(token, "2026-11-20T12:00:00.123456789Z~req-1.a:b_c");
        assert_eq!(CallCursor::parse(&token), Ok(cursor));
    }

    #[test]
    fn junk_cursors_are_refused() {
        for junk in [
            "",
            "~",
            "2026-11-20T12:00:00Z",
            "2026-11-20T12:00:00Z~",
            "yesterday~req-1",
            "2026-11-20T12:00:00Z~req 1",
            "2026-11-20T12:00:00Z~a~b",
            "2026-13-20T12:00:00Z~req-1",
        ] {
            assert!(CallCursor::parse(junk).is_err(), "{junk:?}");
        }
    }

    /// Calls on both backends for the list's tests.
    mod on_rows {
        use std::time::Duration;

        use chrono::{TimeZone, Utc};
        use core_domain::{EmailHash, ErrorCode, SpecialistId};

        use super::super::*;
        use crate::UsageRecord;
        use crate::test_database::on_both_backends;

        fn ada() -> EmailHash {
            EmailHash::of_email("ada@example.com")
        }

        /// 60 calls, three to a second (so time alone never orders them), spread over
        /// specialists, callers, doors, outcomes and streaming.
        fn calls() -> Vec<UsageRecord> {
            (0..60u32)
                .map(|i| {
                    let index = i as usize;
                    UsageRecord {
                        timestamp: Utc.with_ymd_and_hms(2026, 11, 20, 12, 0, 0).unwrap()
                            + chrono::TimeDelta::seconds(i64::from(i / 3)),
                        specialist_id: SpecialistId::parse(
                            ["analyst", "reviewer", "coder"][index % 3],
                        )
                        .unwrap(),
                        user_email_hash: match i % 4 {
                            0 | 1 => Some(ada()),
                            2 => Some(EmailHash::of_email("grace@example.com")),
                            _ => None,
                        },
                        door: core_domain::Door::ALL[index % 5],
                        streamed: i % 2 == 0,
                        error_code: match i % 7 {
                            0 => Some(ErrorCode::UpstreamTimeout),
                            3 => Some(ErrorCode::UpstreamError),
                            _ => None,
                        },
                        latency: Duration::from_millis(u64::from(i) + 1),
                        ..crate::fixture::usage_record(&format!("call-{:02}", (i * 37) % 60))
                    }
                })
                .collect()
        }

        /// What the list should hold: the stored rows the predicate keeps, newest first.
        fn expected(store: &UsageStore, keep: impl Fn(&StoredUsage) -> bool) -> Vec<String> {
            let mut rows: Vec<StoredUsage> =
                store.all_rows().unwrap().into_iter().filter(keep).collect();
            rows.sort_by(|a, b| (b.timestamp, &b.request_id).cmp(&(a.timestamp, &a.request_id)));
            rows.into_iter().map(|r| r.request_id).collect()
        }

        /// Every page of the query, followed to the end: the ids in order.
        fn every_page(store: &UsageStore, mut query: CallListQuery) -> Vec<String> {
            let mut ids = Vec::new();
            for _ in 0..100 {
                let page = store.list_calls(&query).unwrap();
                assert!(page.calls.len() <= query.limit as usize);
                ids.extend(page.calls.into_iter().map(|c| c.request_id));
                match page.next {
                    Some(next) => query.before = Some(next),
                    None => return ids,
                }
            }
            panic!("more than 100 pages")
        }

        fn query(scope: Scope, filter: CallFilter, limit: u32) -> CallListQuery {
            CallListQuery {
                scope,
                filter,
                before: None,
                limit,
            }
        }

        #[test]
        fn each_filter_alone_and_together_keeps_exactly_its_rows() {
            on_both_backends(|store| {
                store.insert_batch(&calls()).unwrap();
                let ada_hash = ada().as_str().to_owned();
                type Keep = Box<dyn Fn(&StoredUsage) -> bool>;
                let cases: Vec<(CallFilter, Keep)> = vec![
                    (CallFilter::default(), Box::new(|_| true)),
                    (
                        CallFilter {
                            specialist: Some("reviewer".into()),
                            ..CallFilter::default()
                        },
                        Box::new(|r| r.specialist_id == "reviewer"),
                    ),
                    (
                        CallFilter {
                            user: Some(ada_hash.clone()),
                            ..CallFilter::default()
                        },
                        Box::new({
                            let ada_hash = ada_hash.clone();
                            move |r| r.user_email_hash.as_deref() == Some(ada_hash.as_str())
                        }),
                    ),
                    (
                        CallFilter {
                            user: Some("anonymous".into()),
                            ..CallFilter::default()
                        },
                        Box::new(|r| r.user_email_hash.is_none()),
                    ),
                    (
                        CallFilter {
                            success: Some(false),
                            ..CallFilter::default()
                        },
                        Box::new(|r| !r.success),
                    ),
                    (
                        CallFilter {
                            success: Some(true),
                            ..CallFilter::default()
                        },
                        Box::new(|r| r.success),
                    ),
                    (
                        CallFilter {
                            error_code: Some("upstream_timeout".into()),
                            ..CallFilter::default()
                        },
                        Box::new(|r| r.error_code.as_deref() == Some("upstream_timeout")),
                    ),
                    (
                        CallFilter {
                            door: Some(core_domain::Door::Messages),
                            ..CallFilter::default()
                        },
                        Box::new(|r| r.door == "messages"),
                    ),
                    (
                        CallFilter {
                            streamed: Some(false),
                            ..CallFilter::default()
                        },
                        Box::new(|r| !r.streamed),
                    ),
                    (
                        CallFilter {
                            specialist: Some("analyst".into()),
                            user: Some(ada_hash.clone()),
                            success: Some(true),
                            door: Some(core_domain::Door::Native),
                            streamed: Some(true),
                            error_code: None,
                        },
                        Box::new({
                            let ada_hash = ada_hash.clone();
                            move |r| {
                                r.specialist_id == "analyst"
                                    && r.user_email_hash.as_deref() == Some(ada_hash.as_str())
                                    && r.success
                                    && r.door == "native"
                                    && r.streamed
                            }
                        }),
                    ),
                    (
                        CallFilter {
                            success: Some(true),
                            error_code: Some("upstream_error".into()),
                            ..CallFilter::default()
                        },
                        Box::new(|_| false),
                    ),
                ];
                for (filter, keep) in cases {
                    let want = expected(store, keep);
                    let got = every_page(store, query(Scope::Everyone, filter.clone(), 200));
                    assert_eq!(got, want, "{filter:?} on {:?}", store.backend());
                    let paged = every_page(store, query(Scope::Everyone, filter.clone(), 4));
                    assert_eq!(paged, want, "paged {filter:?} on {:?}", store.backend());
                }
            });
        }

        #[test]
        fn a_caller_sees_only_their_own_calls() {
            on_both_backends(|store| {
                store.insert_batch(&calls()).unwrap();
                let ada_hash = ada().as_str().to_owned();
                let own = every_page(
                    store,
                    query(Scope::Caller(Some(ada())), CallFilter::default(), 7),
                );
                assert_eq!(
                    own,
                    expected(store, |r| r.user_email_hash.as_deref() == Some(&ada_hash))
                );
                assert_eq!(own.len(), 30);
                let anonymous =
                    every_page(store, query(Scope::Caller(None), CallFilter::default(), 50));
                assert_eq!(anonymous, expected(store, |r| r.user_email_hash.is_none()));
                // Asking for another caller's calls within one's own scope finds none.
                let other = CallFilter {
                    user: Some(EmailHash::of_email("grace@example.com").as_str().to_owned()),
                    ..CallFilter::default()
                };
                assert!(every_page(store, query(Scope::Caller(Some(ada())), other, 50)).is_empty());

                let values = store
                    .call_filter_values(
                        &Scope::Caller(Some(ada())),
                        Utc::now() - chrono::TimeDelta::days(3650),
                    )
                    .unwrap();
                assert_eq!(values.users, std::slice::from_ref(&ada_hash));
                let everyone = store
                    .call_filter_values(
                        &Scope::Everyone,
                        Utc::now() - chrono::TimeDelta::days(3650),
                    )
                    .unwrap();
                let mut users = vec![
                    ada_hash.clone(),
                    EmailHash::of_email("grace@example.com").as_str().to_owned(),
                    "anonymous".to_owned(),
                ];
                users.sort_unstable();
                assert_eq!(everyone.users, users);
                assert_eq!(everyone.specialists, ["analyst", "coder", "reviewer"]);
                assert_eq!(everyone.error_codes, ["upstream_error", "upstream_timeout"]);
                let mut doors: Vec<&str> =
                    core_domain::Door::ALL.iter().map(|d| d.as_str()).collect();
                doors.sort_unstable();
                assert_eq!(everyone.doors, doors);
                let later = store
                    .call_filter_values(
                        &Scope::Everyone,
                        Utc.with_ymd_and_hms(2026, 11, 21, 0, 0, 0).unwrap(),
                    )
                    .unwrap();
                assert_eq!(later, CallFilterValues::default(), "no call since");

                // Sealed, the same values come from the rollup: still listed when the log's
                // rows of a sealed hour are gone behind its back; a caller's own still read
                // the log.
                assert!(store.seal_hours(Utc::now(), 1_000).unwrap() > 0);
                let since = Utc::now() - chrono::TimeDelta::days(3650);
                assert_eq!(
                    store.call_filter_values(&Scope::Everyone, since).unwrap(),
                    everyone
                );
                let delete = || -> Result<usize, StoreError> {
                    Ok(crate::store::with_connection!(store, |conn| {
                        diesel::sql_query("DELETE FROM usage_logs WHERE specialist_id = 'coder'")
                            .execute(conn)?
                    }))
                };
                assert!(delete().unwrap() > 0);
                let rolled = store.call_filter_values(&Scope::Everyone, since).unwrap();
                assert_eq!(rolled.specialists, everyone.specialists);
                let own = store
                    .call_filter_values(&Scope::Caller(Some(ada())), since)
                    .unwrap();
                assert!(!own.specialists.contains(&"coder".to_owned()), "{own:?}");
            });
        }

        #[test]
        fn pages_across_equal_timestamps_never_repeat_or_skip_a_row() {
            on_both_backends(|store| {
                // 25 calls in one instant, between others.
                let instant = Utc.with_ymd_and_hms(2026, 11, 20, 12, 0, 0).unwrap();
                let mut records = Vec::new();
                for i in 0..25 {
                    records.push(UsageRecord {
                        timestamp: instant,
                        ..crate::fixture::usage_record(&format!("same-{i:02}"))
                    });
                }
                for (i, offset) in [-1i64, 1, 2].into_iter().enumerate() {
                    records.push(UsageRecord {
                        timestamp: instant + chrono::TimeDelta::milliseconds(offset),
                        ..crate::fixture::usage_record(&format!("other-{i}"))
                    });
                }
                store.insert_batch(&records).unwrap();
                let want = expected(store, |_| true);
                assert_eq!(want.len(), 28);
                for limit in [1, 2, 3, 7, 25, 28, 200] {
                    let got =
                        every_page(store, query(Scope::Everyone, CallFilter::default(), limit));
                    assert_eq!(got, want, "limit {limit} on {:?}", store.backend());
                }
                // The last page says there is no next one; a full page of exactly what is left
                // says so too.
                let page = store
                    .list_calls(&query(Scope::Everyone, CallFilter::default(), 28))
                    .unwrap();
                assert_eq!((page.calls.len(), page.next), (28, None));
                // A cursor travels as text and comes back to the same place.
                let first = store
                    .list_calls(&query(Scope::Everyone, CallFilter::default(), 5))
                    .unwrap();
                let token = first.next.clone().unwrap().to_token();
                let resumed = store
                    .list_calls(&CallListQuery {
                        before: Some(CallCursor::parse(&token).unwrap()),
                        ..query(Scope::Everyone, CallFilter::default(), 5)
                    })
                    .unwrap();
                assert_eq!(
                    resumed
                        .calls
                        .iter()
                        .map(|c| c.request_id.as_str())
                        .collect::<Vec<_>>(),
                    want[5..10].iter().map(String::as_str).collect::<Vec<_>>()
                );
                assert_eq!(
                    first.calls[0].timestamp,
                    instant + chrono::TimeDelta::milliseconds(2)
                );
            });
        }

        #[test]
        fn limits_outside_the_range_are_brought_into_it() {
            on_both_backends(|store| {
                store.insert_batch(&calls()).unwrap();
                let page = store
                    .list_calls(&query(Scope::Everyone, CallFilter::default(), 0))
                    .unwrap();
                assert_eq!(page.calls.len(), 1);
                let page = store
                    .list_calls(&query(Scope::Everyone, CallFilter::default(), 10_000))
                    .unwrap();
                assert_eq!((page.calls.len(), page.next), (60, None));
            });
        }
    }

    proptest::proptest! {
        /// Whatever a URL holds: a cursor or a refusal, never a panic.
        #[test]
        fn any_text_is_a_cursor_or_an_error(raw in "(?s).{0,80}") {
            let _ = CallCursor::parse(&raw);
        }
    }
}
