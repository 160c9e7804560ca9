//! What the usage log says was spent over a window, exactly: the sum budgets rebuild their
//! spend from at start. This module knows rows and windows only; what a budget is, and which
//! window its period means, is the `budgets` crate's business.

use chrono::{DateTime, Utc};
use core_domain::{EmailHash, SpecialistId, Usd};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::BigInt;

use crate::schema::usage_logs;
use crate::store::with_connection;
use crate::{StoreError, UsageStore};

/// Whose calls a spend sum counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpendFilter<'a> {
    /// Every call.
    All,
    /// The calls of one specialist.
    Specialist(&'a SpecialistId),
    /// The calls of one user.
    User(&'a EmailHash),
    /// The calls made with one API key, by its name (as stored: cut to
    /// [`crate::API_KEY_MAX_CHARS`] characters).
    ApiKey(&'a str),
}

/// The cost column summed in nano-dollars, exactly. `estimated_cost_usd` is a DOUBLE of dollars
/// written from integer nanos, so each row's nanos are recovered by rounding before they are
/// added; summing the doubles would drift (a thousand rows of $0.000000123 are not
/// $0.000123 in binary floating point). SQLite's ROUND returns a REAL, hence the inner CAST;
/// PostgreSQL's SUM of BIGINT is a NUMERIC, hence the outer one.
const COST_NANOS_SUM: &str =
    "CAST(COALESCE(SUM(CAST(ROUND(estimated_cost_usd * 1e9) AS BIGINT)), 0) AS BIGINT)";

impl UsageStore {
    /// The cost of every row matching `filter` with `from <= timestamp < until` (either bound
    /// left open when `None`), exact to the nano-dollar. Each filter is served by an index
    /// (`(specialist_id, timestamp)`, `(user_email_hash, timestamp)`, `(api_key, timestamp)`,
    /// `(timestamp)`), so the sum reads only the window's rows.
    pub fn spent(
        &self,
        filter: SpendFilter<'_>,
        from: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
    ) -> Result<Usd, StoreError> {
        // Timestamps are stored as naive UTC; the bounds are compared in the same form.
        let (from, until) = (from.map(|t| t.naive_utc()), until.map(|t| t.naive_utc()));
        let nanos: i64 = with_connection!(self, |conn| {
            let mut query = usage_logs::table
                .select(sql::<BigInt>(COST_NANOS_SUM))
                .into_boxed();
            query = match filter {
                SpendFilter::All => query,
                SpendFilter::Specialist(id) => {
                    query.filter(usage_logs::specialist_id.eq(id.as_str()))
                }
                SpendFilter::User(hash) => {
                    query.filter(usage_logs::user_email_hash.eq(hash.as_str()))
                }
                SpendFilter::ApiKey(name) => query.filter(usage_logs::api_key.eq(name)),
            };
            if let Some(from) = from {
                query = query.filter(usage_logs::timestamp.ge(from));
            }
            if let Some(until) = until {
                query = query.filter(usage_logs::timestamp.lt(until));
            }
            query.first::<i64>(conn)?
        });
        u64::try_from(nanos)
            .map(Usd::from_nanos)
            .map_err(|_| StoreError::Corrupt(format!("negative spend of {nanos} nano-dollars")))
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};
    use diesel::connection::SimpleConnection;

    use super::*;
    use crate::fixture::usage_record;
    use crate::{DatabaseConfig, UsageRecord};

    fn at(hour: u32, minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, hour, minute, 0)
            .single()
            .unwrap()
    }

    fn row(id: &str, when: DateTime<Utc>, nanos: u64) -> UsageRecord {
        UsageRecord {
            timestamp: when,
            cost: Usd::from_nanos(nanos),
            ..usage_record(id)
        }
    }

    /// Rows by two specialists, two users (one anonymous), two keys (one JWT caller), inside
    /// and at the edges of the 10:00..11:00 window.
    fn rows() -> Vec<UsageRecord> {
        let other_specialist = SpecialistId::parse("tax_helper").unwrap();
        let bea = EmailHash::of_email("bea@example.com");
        vec![
            // Exactly at `from`: counted.
            UsageRecord {
                api_key: Some("ci".into()),
                ..row("a", at(10, 0), 1_000)
            },
            UsageRecord {
                api_key: Some("ci".into()),
                specialist_id: other_specialist.clone(),
                ..row("b", at(10, 30), 20_000)
            },
            UsageRecord {
                user_email_hash: Some(bea.clone()),
                api_key: Some("batch".into()),
                ..row("c", at(10, 59), 300_000)
            },
            UsageRecord {
                user_email_hash: None,
                specialist_id: other_specialist,
                ..row("d", at(10, 45), 4_000_000)
            },
            // Exactly at `until`: not counted.
            UsageRecord {
                api_key: Some("ci".into()),
                ..row("e", at(11, 0), 50_000_000)
            },
            // A key name longer than the column, at no cost: stored cut, not lost.
            UsageRecord {
                api_key: Some("k".repeat(crate::API_KEY_MAX_CHARS + 72)),
                ..row("g", at(10, 10), 0)
            },
            // A nanosecond before `from`: not counted.
            UsageRecord {
                user_email_hash: Some(bea),
                ..row("f", at(10, 0) - Duration::nanoseconds(1), 600_000_000)
            },
        ]
    }

    /// Every filter and window over [`rows`], on whichever backend `store` is.
    fn sums_per_filter_and_window(store: &UsageStore) {
        store.insert_batch(&rows()).unwrap();
        // The key's name is written and read back (by COPY on PostgreSQL), cut to the column.
        let stored_key = |id: &str| store.find_by_request_id(id).unwrap().unwrap().api_key;
        assert_eq!(stored_key("a").as_deref(), Some("ci"));
        assert_eq!(stored_key("d"), None);
        assert_eq!(stored_key("g"), Some("k".repeat(crate::API_KEY_MAX_CHARS)));
        let (from, until) = (Some(at(10, 0)), Some(at(11, 0)));
        let ada = EmailHash::of_email("ada@example.com");
        let bea = EmailHash::of_email("bea@example.com");
        let analyst = SpecialistId::parse("financial_analyst").unwrap();
        let helper = SpecialistId::parse("tax_helper").unwrap();
        let spent = |filter, from, until| store.spent(filter, from, until).unwrap().nanos();

        assert_eq!(spent(SpendFilter::All, from, until), 4_321_000);
        assert_eq!(
            spent(SpendFilter::Specialist(&analyst), from, until),
            301_000
        );
        assert_eq!(
            spent(SpendFilter::Specialist(&helper), from, until),
            4_020_000
        );
        assert_eq!(spent(SpendFilter::User(&ada), from, until), 21_000);
        assert_eq!(spent(SpendFilter::User(&bea), from, until), 300_000);
        assert_eq!(spent(SpendFilter::ApiKey("ci"), from, until), 21_000);
        assert_eq!(spent(SpendFilter::ApiKey("batch"), from, until), 300_000);
        assert_eq!(spent(SpendFilter::ApiKey("nobody"), from, until), 0);
        // Open bounds.
        assert_eq!(spent(SpendFilter::All, None, None), 654_321_000);
        assert_eq!(spent(SpendFilter::All, from, None), 54_321_000);
        assert_eq!(spent(SpendFilter::All, None, until), 604_321_000);
        assert_eq!(spent(SpendFilter::ApiKey("ci"), None, None), 50_021_000);
        // An empty window.
        assert_eq!(spent(SpendFilter::All, until, until), 0);
    }

    /// A thousand rows of $0.000000123 after one of $4,000,000 sum to exactly their nanos,
    /// where adding the stored doubles in that order is 66 nano-dollars short (each tiny
    /// addition to the large sum rounds); and nothing stored sums to zero.
    fn awkward_costs_sum_exactly(store: &UsageStore) {
        assert_eq!(
            store.spent(SpendFilter::All, None, None).unwrap(),
            Usd::ZERO,
            "nothing stored"
        );
        let large = 4_000_000_000_000_000;
        let mut batch = vec![row("large", at(8, 0), large)];
        batch.extend((0..1000).map(|i| row(&format!("tiny-{i}"), at(9, 0), 123)));
        let doubles: f64 = batch.iter().map(|r| r.cost.as_dollars()).sum();
        assert_ne!(
            (doubles * 1e9).round(),
            (large + 123_000) as f64,
            "the premise: summing the doubles drifts"
        );
        store.insert_batch(&batch).unwrap();
        assert_eq!(
            store.spent(SpendFilter::All, None, None).unwrap().nanos(),
            large + 123_000
        );
        assert_eq!(
            store
                .spent(SpendFilter::All, Some(at(9, 0)), None)
                .unwrap()
                .nanos(),
            123_000
        );
    }

    fn sqlite_store(dir: &tempfile::TempDir) -> UsageStore {
        UsageStore::connect(&DatabaseConfig {
            url: format!("sqlite://{}", dir.path().join("spend.db").display()),
            ..DatabaseConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn sums_per_filter_and_window_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        sums_per_filter_and_window(&sqlite_store(&dir));
    }

    #[test]
    fn awkward_costs_sum_exactly_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        awkward_costs_sum_exactly(&sqlite_store(&dir));
    }

    #[test]
    fn each_filter_reads_through_its_index_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(&dir);
        let crate::store::Pool::Sqlite(pool) = store.pool() else {
            unreachable!("a sqlite:// URL")
        };
        let mut conn = pool.get().unwrap();
        conn.batch_execute("ANALYZE").unwrap();
        for (filter, index) in [
            ("", "usage_logs_timestamp_idx"),
            (
                "specialist_id = 'a' AND",
                "usage_logs_specialist_timestamp_idx",
            ),
            ("user_email_hash = 'a' AND", "usage_logs_user_timestamp_idx"),
            ("api_key = 'a' AND", "usage_logs_api_key_timestamp_idx"),
        ] {
            let plan: Vec<PlanRow> = diesel::sql_query(format!(
                "EXPLAIN QUERY PLAN SELECT {COST_NANOS_SUM} FROM usage_logs \
                 WHERE {filter} timestamp >= '2026-12-01' AND timestamp < '2026-12-02'"
            ))
            .load(&mut conn)
            .unwrap();
            let details: Vec<&str> = plan.iter().map(|row| row.detail.as_str()).collect();
            assert!(
                details
                    .iter()
                    .any(|d| d.starts_with("SEARCH") && d.contains(index)),
                "{filter}: {details:?}"
            );
        }
    }

    /// PostgreSQL at `COMMANDER_TEST_POSTGRES_URL` (default the local server, trust auth).
    mod postgres {
        use crate::test_database::TestDatabase;

        #[test]
        fn sums_per_filter_and_window_on_postgres() {
            let database = TestDatabase::create();
            super::sums_per_filter_and_window(&database.store());
        }

        #[test]
        fn awkward_costs_sum_exactly_on_postgres() {
            let database = TestDatabase::create();
            super::awkward_costs_sum_exactly(&database.store());
        }
    }

    #[derive(QueryableByName)]
    struct PlanRow {
        #[diesel(sql_type = diesel::sql_types::Text)]
        detail: String,
    }
}
