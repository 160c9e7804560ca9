use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use core_domain::RequestId;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, CustomizeConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::config::Location;
use crate::record::{NewAttemptRow, NewUsageRow, StoredAttemptRow};
use crate::rollup::mark_hours_written;
use crate::schema::{usage_attempts, usage_logs};
use crate::{DatabaseConfig, StoreError, StoredCall, StoredUsage, UsageRecord};

/// What diesel's migration harness fails with.
type MigrationError = Box<dyn std::error::Error + Send + Sync>;

pub(crate) const SQLITE_MIGRATIONS: EmbeddedMigrations =
    embed_migrations!("../../migrations/sqlite");
pub(crate) const POSTGRES_MIGRATIONS: EmbeddedMigrations =
    embed_migrations!("../../migrations/postgres");

/// Rows per INSERT statement: at 24 columns a row (16 for `usage_attempts`), 12,000 binds, below
/// both SQLite's 32,766 and PostgreSQL's 65,535 limits.
const ROWS_PER_STATEMENT: usize = 500;

/// The PostgreSQL advisory lock key migrations are applied under (any fixed number; this one
/// spells "cmdr" in ASCII).
const MIGRATION_LOCK: i64 = 0x636d_6472;

/// Which database the store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

#[derive(Clone)]
pub(crate) enum Pool {
    Sqlite(r2d2::Pool<ConnectionManager<SqliteConnection>>),
    Postgres(r2d2::Pool<ConnectionManager<PgConnection>>),
}

/// Runs `$body` with `$conn` bound to a pooled connection of whichever backend the store uses.
/// The body is compiled once per backend, so diesel checks each query against each dialect.
macro_rules! with_connection {
    ($store:expr, |$conn:ident| $body:expr) => {
        match $store.pool() {
            $crate::store::Pool::Sqlite(pool) => {
                let mut pooled = pool.get()?;
                let $conn: &mut diesel::SqliteConnection = &mut pooled;
                $body
            }
            $crate::store::Pool::Postgres(pool) => {
                let mut pooled = pool.get()?;
                let $conn: &mut diesel::PgConnection = &mut pooled;
                $body
            }
        }
    };
}
pub(crate) use with_connection;

/// SQLite settings every pooled connection needs: write-ahead logging so readers never block
/// the writer, a busy timeout instead of instant `database is locked` errors, and full sync so
/// a committed batch survives a power cut.
#[derive(Debug)]
struct SqlitePragmas {
    busy_timeout_ms: u64,
}

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        conn.batch_execute(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = {};",
            self.busy_timeout_ms
        ))
        .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// The usage log's database: a bounded connection pool with migrations applied.
///
/// Every method blocks; call them from a blocking thread (`spawn_blocking`), never from an
/// async task.
#[derive(Clone)]
pub struct UsageStore {
    pool: Pool,
    /// SQLite only: the file the pool opened, to notice when it is deleted or replaced under a
    /// running store (open connections keep writing to the unlinked file, so nothing else
    /// would fail).
    file: Option<OpenedFile>,
    /// PostgreSQL only: the URL, for connections kept outside the pool (the catalogue's
    /// `LISTEN`, which must stay on one connection).
    postgres_url: Option<String>,
    /// See [`DatabaseConfig::exact_report_calls`].
    exact_report_calls: u64,
    /// How long after an hour ends its rollup is due (see [`Self::with_seal_grace`]).
    seal_grace: chrono::TimeDelta,
}

/// A file as it was when the store opened it: its path and the device and inode behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OpenedFile {
    path: PathBuf,
    device: u64,
    inode: u64,
}

impl OpenedFile {
    fn at(path: &Path) -> Result<Self, std::io::Error> {
        let metadata = std::fs::metadata(path)?;
        Ok(Self {
            path: path.to_owned(),
            device: metadata.dev(),
            inode: metadata.ino(),
        })
    }

    /// `Ok` while `path` still names the file that was opened.
    fn check(&self) -> Result<(), StoreError> {
        let path = self.path.display();
        match Self::at(&self.path) {
            Ok(now) if now == *self => Ok(()),
            Ok(_) => Err(StoreError::DatabaseReplaced(format!(
                "{path} was replaced by another file since the store opened it; rows written \
                 since then went to the old file"
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(StoreError::DatabaseReplaced(format!(
                    "{path} was deleted since the store opened it; rows written since then are \
                     lost with the deleted file"
                )))
            }
            Err(e) => Err(StoreError::DatabaseReplaced(format!(
                "{path} can no longer be examined ({e}); it may have been deleted or replaced"
            ))),
        }
    }
}

impl std::fmt::Debug for UsageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageStore")
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

impl UsageStore {
    /// Opens the pool for `config.url` (creating a SQLite file and its directory if needed) and
    /// applies any pending migrations.
    pub fn connect(config: &DatabaseConfig) -> Result<Self, StoreError> {
        let store = Self::connect_without_migrating(config)?;
        store.migrate()?;
        Ok(store)
    }

    /// Opens the pool for `config.url` and leaves the schema as it is (see [`Self::migrate`]).
    pub fn connect_without_migrating(config: &DatabaseConfig) -> Result<Self, StoreError> {
        let pool_size = config.pool_size.clamp(1, DatabaseConfig::MAX_POOL_SIZE);
        let connect_timeout = Duration::from_millis(
            config
                .connect_timeout_ms
                .clamp(1, DatabaseConfig::MAX_WAIT_MS),
        );
        let mut postgres_url = None;
        let (pool, file) = match config.location()? {
            Location::Sqlite(path) => {
                if let Some(dir) = Path::new(path).parent()
                    && !dir.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(dir)?;
                }
                let pool = r2d2::Pool::builder()
                    .max_size(pool_size)
                    .min_idle(Some(1))
                    .connection_timeout(connect_timeout)
                    .connection_customizer(Box::new(SqlitePragmas {
                        busy_timeout_ms: config
                            .sqlite_busy_timeout_ms
                            .min(DatabaseConfig::MAX_WAIT_MS),
                    }))
                    .build(ConnectionManager::<SqliteConnection>::new(path))?;
                // SQLite creates the file lazily with the first connection: take one before
                // recording which file this store writes to.
                drop(pool.get()?);
                (Pool::Sqlite(pool), Some(OpenedFile::at(Path::new(path))?))
            }
            Location::Postgres(url) => {
                let pool = r2d2::Pool::builder()
                    .max_size(pool_size)
                    .min_idle(Some(1))
                    .connection_timeout(connect_timeout)
                    .build(ConnectionManager::<PgConnection>::new(url))?;
                postgres_url = Some(url.to_owned());
                (Pool::Postgres(pool), None)
            }
        };
        Ok(Self {
            pool,
            file,
            postgres_url,
            exact_report_calls: config.exact_report_calls,
            seal_grace: chrono::TimeDelta::minutes(2),
        })
    }

    pub(crate) fn postgres_url(&self) -> Option<&str> {
        self.postgres_url.as_deref()
    }

    /// This store with another [`DatabaseConfig::exact_report_calls`]: reports over more calls
    /// than `calls` read the hourly rollup where it is sealed.
    #[must_use]
    pub fn with_exact_report_calls(mut self, calls: u64) -> Self {
        self.exact_report_calls = calls;
        self
    }

    /// This store with another wait between an hour's end and its rollup being due (default
    /// two minutes): the server sets the longest a call may run, since a row's time is when its
    /// call started and it is written when the call ends. [`Self::rollup_backlog`] counts from
    /// it; [`Self::seal_hours`] is told its bound by the caller.
    #[must_use]
    pub fn with_seal_grace(mut self, grace: chrono::TimeDelta) -> Self {
        self.seal_grace = grace;
        self
    }

    /// How long after an hour ends its rollup is due.
    pub fn seal_grace(&self) -> chrono::TimeDelta {
        self.seal_grace
    }

    /// Reports over more calls than this read the hourly rollup (see
    /// [`DatabaseConfig::exact_report_calls`]).
    pub(crate) fn exact_report_calls(&self) -> u64 {
        self.exact_report_calls
    }

    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Which backend this store uses.
    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// Applies pending migrations; returns how many were applied.
    pub fn migrate(&self) -> Result<usize, StoreError> {
        let applied = match &self.pool {
            // Servers sharing a file start together too: the whole run is one IMMEDIATE
            // transaction (each migration a savepoint in it), so a second server waits on the
            // write lock and then finds nothing pending, instead of applying what the first
            // has just applied ("duplicate column name").
            Pool::Sqlite(pool) => {
                pool.get()?
                    .immediate_transaction::<_, MigrationError, _>(|conn| {
                        conn.run_pending_migrations(SQLITE_MIGRATIONS)
                            .map(|v| v.len())
                    })
            }
            Pool::Postgres(pool) => {
                // Servers sharing a database start together: without a lock, each sees the
                // same migration pending and all but the first fail applying it again. The
                // lock is the session's, released below or when the connection closes.
                let mut conn = pool.get()?;
                conn.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))?;
                let applied = conn
                    .run_pending_migrations(POSTGRES_MIGRATIONS)
                    .map(|v| v.len());
                conn.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"))?;
                applied
            }
        };
        applied.map_err(|e| StoreError::Migration(e.to_string()))
    }

    /// `Ok` when the database answers, no migration is pending and (SQLite) the file is still
    /// the one the store opened.
    pub fn check_ready(&self) -> Result<(), StoreError> {
        self.check_sound()?;
        let pending = match &self.pool {
            Pool::Sqlite(pool) => pool.get()?.has_pending_migration(SQLITE_MIGRATIONS),
            Pool::Postgres(pool) => pool.get()?.has_pending_migration(POSTGRES_MIGRATIONS),
        };
        match pending {
            Ok(false) => Ok(()),
            Ok(true) => Err(StoreError::Migration("migrations are pending".to_owned())),
            Err(e) => Err(StoreError::Connect(e.to_string())),
        }
    }

    /// SQLite: `Ok` while the configured path still names the file the store opened (same
    /// device and inode), else [`StoreError::DatabaseReplaced`] saying whether it was deleted or
    /// replaced. A deleted file keeps accepting writes through the open connections and loses
    /// them all at the next restart, so run this before every batch; it costs one `stat`.
    /// PostgreSQL: always `Ok` (there is no file to lose).
    pub fn check_sound(&self) -> Result<(), StoreError> {
        self.file.as_ref().map_or(Ok(()), OpenedFile::check)
    }

    /// `Ok` when the usage table can be queried right now: the database is reachable, the
    /// table exists, and (SQLite) the file is still the one the store opened. Cheap: it reads
    /// no row. Used to tell a batch refused for its data from a database that is away.
    pub fn probe(&self) -> Result<(), StoreError> {
        self.check_sound()?;
        // No row has id -1: the query only proves that the table answers.
        let _: bool = with_connection!(self, |conn| {
            diesel::select(diesel::dsl::exists(
                usage_logs::table.filter(usage_logs::id.eq(-1)),
            ))
            .get_result(conn)?
        });
        Ok(())
    }

    /// Writes `records` in one transaction, each with its attempt rows (only calls of several
    /// attempts have any). A record whose request id is already stored is skipped, and so are
    /// its attempts, so writing a batch again after an unclear failure never duplicates rows.
    /// Returns how many `usage_logs` rows were new.
    pub fn insert_batch(&self, records: &[UsageRecord]) -> Result<usize, StoreError> {
        if records.is_empty() {
            return Ok(0);
        }
        let rows: Vec<NewUsageRow<'_>> = records.iter().map(NewUsageRow::from).collect();
        // The hours the batch writes into, whose rollups it makes stale. Counted even when
        // every row is a replayed duplicate: that costs a needless re-seal, never a lost row.
        let hours: std::collections::BTreeSet<chrono::NaiveDateTime> = records
            .iter()
            .map(|r| crate::rollup::hour_of(r.timestamp.naive_utc()))
            .collect();
        // Most calls make one attempt: this stays empty and costs the batch nothing more.
        let attempts: Vec<NewAttemptRow<'_>> = records.iter().flat_map(NewAttemptRow::of).collect();
        match &self.pool {
            // SQLite: multi-row INSERT OR IGNORE statements (fewer statements to prepare and
            // step than one per row), within SQLite's bind limit.
            Pool::Sqlite(pool) => pool.get()?.transaction(|conn| {
                let inserted = rows
                    .chunks(ROWS_PER_STATEMENT)
                    .try_fold(0, |inserted, chunk| {
                        diesel::insert_or_ignore_into(usage_logs::table)
                            .values(chunk)
                            .execute(conn)
                            .map(|n| inserted + n)
                    })?;
                for chunk in attempts.chunks(ROWS_PER_STATEMENT) {
                    diesel::insert_or_ignore_into(usage_attempts::table)
                        .values(chunk)
                        .execute(conn)?;
                }
                mark_hours_written!(conn, &hours, false);
                Ok(inserted)
            }),
            Pool::Postgres(pool) => {
                let mut conn = pool.get()?;
                // Attempt rows are rare: plain INSERTs that skip stored keys, in the same
                // transaction as their rows, whichever way those go in.
                let insert_attempts = |conn: &mut PgConnection| {
                    for chunk in attempts.chunks(ROWS_PER_STATEMENT) {
                        diesel::insert_into(usage_attempts::table)
                            .values(chunk)
                            .on_conflict((usage_attempts::request_id, usage_attempts::attempt))
                            .do_nothing()
                            .execute(conn)?;
                    }
                    // Last in the transaction: the hours' row locks, which a server sealing
                    // the hour waits on, are held only for the commit.
                    mark_hours_written!(conn, &hours, true);
                    Ok::<_, diesel::result::Error>(())
                };
                // Binary COPY first: it costs the server a fraction of what parsing and planning
                // a multi-row INSERT does. COPY has no ON CONFLICT, so a batch holding an id that
                // is already stored (a replay after an unclear failure) fails whole and is
                // written again with the statements that skip stored ids.
                match conn.transaction(|conn| {
                    let copied = diesel::copy_from(usage_logs::table)
                        .from_insertable(&rows)
                        .execute(conn)?;
                    insert_attempts(conn)?;
                    Ok(copied)
                }) {
                    Err(diesel::result::Error::DatabaseError(
                        diesel::result::DatabaseErrorKind::UniqueViolation,
                        _,
                    )) => conn.transaction(|conn| {
                        let inserted =
                            rows.chunks(ROWS_PER_STATEMENT)
                                .try_fold(0, |inserted, chunk| {
                                    diesel::insert_into(usage_logs::table)
                                        .values(chunk)
                                        .on_conflict(usage_logs::request_id)
                                        .do_nothing()
                                        .execute(conn)
                                        .map(|n| inserted + n)
                                })?;
                        insert_attempts(conn)?;
                        Ok(inserted)
                    }),
                    copied => copied,
                }
            }
        }
        .map_err(StoreError::from)
    }

    /// How many rows the table holds.
    pub fn count_rows(&self) -> Result<u64, StoreError> {
        let count: i64 =
            with_connection!(self, |conn| usage_logs::table.count().get_result(conn)?);
        u64::try_from(count).map_err(|_| StoreError::Corrupt(format!("negative count {count}")))
    }

    /// The row for one request, if it was logged.
    pub fn find_by_request_id(&self, request_id: &str) -> Result<Option<StoredUsage>, StoreError> {
        Ok(with_connection!(self, |conn| {
            usage_logs::table
                .filter(usage_logs::request_id.eq(request_id))
                .select(StoredUsage::as_select())
                .first(conn)
                .optional()?
        }))
    }

    /// One call with its attempts: its row and, when it made several attempts, each of them in
    /// the order made. `None` when no row has that request id.
    pub fn call(&self, request_id: &RequestId) -> Result<Option<StoredCall>, StoreError> {
        let id = request_id.as_str();
        let found: Option<(StoredUsage, Vec<StoredAttemptRow>)> = with_connection!(self, |conn| {
            match usage_logs::table
                .filter(usage_logs::request_id.eq(id))
                .select(StoredUsage::as_select())
                .first(conn)
                .optional()?
            {
                None => None,
                Some(row) => {
                    let attempts = usage_attempts::table
                        .filter(usage_attempts::request_id.eq(id))
                        .order(usage_attempts::attempt)
                        .select(StoredAttemptRow::as_select())
                        .load(conn)?;
                    Some((row, attempts))
                }
            }
        });
        let Some((row, attempts)) = found else {
            return Ok(None);
        };
        debug_assert!(attempts.windows(2).all(|w| w[0].number() < w[1].number()));
        let attempts = attempts
            .into_iter()
            .map(|attempt| attempt.into_record(id))
            .collect::<Result<_, _>>()?;
        Ok(Some(StoredCall { row, attempts }))
    }

    /// Every row, oldest first (for tests and small exports).
    pub fn all_rows(&self) -> Result<Vec<StoredUsage>, StoreError> {
        Ok(with_connection!(self, |conn| {
            usage_logs::table
                .order(usage_logs::id)
                .select(StoredUsage::as_select())
                .load(conn)?
        }))
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use core_domain::{ErrorCode, RequestId, TokenUsage};

    use super::*;

    pub(crate) fn sqlite_store(dir: &tempfile::TempDir) -> UsageStore {
        UsageStore::connect(&DatabaseConfig {
            url: format!("sqlite://{}", dir.path().join("db/usage.db").display()),
            ..DatabaseConfig::default()
        })
        .unwrap()
    }

    /// The fixture with every nullable column filled and an estimated, failed call.
    fn record(request_id: &str) -> UsageRecord {
        UsageRecord {
            client_request_id: Some(RequestId::parse("trace-7").unwrap()),
            usage: TokenUsage::estimated(1200, 345)
                .with_cache(200, 50)
                .with_reasoning(100),
            end_user: Some("end-user-42".into()),
            api_key: Some("ci-runner".into()),
            error_code: Some(ErrorCode::UpstreamTimeout),
            ..crate::fixture::usage_record(request_id)
        }
    }

    #[test]
    fn every_column_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(&dir);
        assert_eq!(store.insert_batch(&[record("req-1")]).unwrap(), 1);
        let row = store.find_by_request_id("req-1").unwrap().unwrap();
        assert_eq!(
            row,
            StoredUsage {
                id: row.id,
                timestamp: Utc
                    .with_ymd_and_hms(2026, 11, 27, 12, 30, 45)
                    .unwrap()
                    .naive_utc(),
                request_id: "req-1".into(),
                user_email_hash: Some(
                    "b5fc85e55755f9e0d030a10ab4429b6b2944855f9a0d60077fe832becbc41d72".into()
                ),
                specialist_id: "financial_analyst".into(),
                specialist_name: "Financial Analyst".into(),
                provider: "openai".into(),
                model: "gpt-4o".into(),
                input_tokens: 1200,
                output_tokens: 345,
                tokens_estimated: true,
                estimated_cost_usd: 0.00645,
                pricing_known: true,
                latency_ms: 1234.5,
                ttft_ms: Some(250.0),
                success: false,
                error_code: Some("upstream_timeout".into()),
                streamed: true,
                client_request_id: Some("trace-7".into()),
                cached_input_tokens: 200,
                cache_write_tokens: 50,
                reasoning_tokens: 100,
                end_user: Some("end-user-42".into()),
                attempts: 1,
                api_key: Some("ci-runner".into()),
                door: "chat_completions".into(),
            }
        );
    }

    #[test]
    fn a_call_of_several_attempts_round_trips_with_each_attempt() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(&dir);
        let fallback = crate::fixture::fallback_record("fb-1");
        assert_eq!(
            store
                .insert_batch(&[record("single"), fallback.clone()])
                .unwrap(),
            2
        );
        let call = store
            .call(&RequestId::parse("fb-1").unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(call.row.attempts, 3);
        assert_eq!(call.row.provider, "anthropic");
        assert_eq!(call.row.input_tokens, 2440);
        assert_eq!(call.attempts, fallback.attempt_details);

        let single = store
            .call(&RequestId::parse("single").unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(single.row.attempts, 1);
        assert!(
            single.attempts.is_empty(),
            "one attempt writes no child row"
        );
        assert_eq!(
            store.call(&RequestId::parse("nobody").unwrap()).unwrap(),
            None
        );
    }

    #[test]
    fn a_replayed_call_stores_its_attempts_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(&dir);
        let batch = [crate::fixture::fallback_record("fb-1"), record("r1")];
        assert_eq!(store.insert_batch(&batch).unwrap(), 2);
        assert_eq!(store.insert_batch(&batch).unwrap(), 0);
        let Pool::Sqlite(pool) = &store.pool else {
            unreachable!("a sqlite:// URL")
        };
        let children: i64 = usage_attempts::table
            .count()
            .get_result(&mut pool.get().unwrap())
            .unwrap();
        assert_eq!(children, 3);
    }

    #[test]
    fn a_hand_edited_attempt_is_reported_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(&dir);
        store
            .insert_batch(&[crate::fixture::fallback_record("fb-1")])
            .unwrap();
        let Pool::Sqlite(pool) = &store.pool else {
            unreachable!("a sqlite:// URL")
        };
        pool.get()
            .unwrap()
            .batch_execute("UPDATE usage_attempts SET error_code = 'gremlins' WHERE attempt = 2")
            .unwrap();
        let err = store.call(&RequestId::parse("fb-1").unwrap()).unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt(m) if m.contains("gremlins") && m.contains("#2")),
            "{err}"
        );
    }

    #[test]
    fn batch_is_written_and_replays_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(&dir);
        let batch: Vec<UsageRecord> = (0..1200).map(|i| record(&format!("r{i}"))).collect();
        assert_eq!(store.insert_batch(&batch).unwrap(), 1200);
        // The same batch again, plus one new record: only the new one is stored.
        let mut again = batch.clone();
        again.push(record("new"));
        assert_eq!(store.insert_batch(&again).unwrap(), 1);
        assert_eq!(store.count_rows().unwrap(), 1201);
    }

    #[test]
    fn anonymous_caller_is_stored_as_null() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(&dir);
        let mut anonymous = record("anon");
        anonymous.user_email_hash = None;
        anonymous.error_code = None;
        store.insert_batch(&[anonymous]).unwrap();
        let row = store.find_by_request_id("anon").unwrap().unwrap();
        assert_eq!(row.user_email_hash, None);
        assert!(row.success);
        assert_eq!(row.error_code, None);
    }

    #[test]
    fn reopening_applies_no_migration_twice_and_is_ready() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(&dir);
        store.insert_batch(&[record("keep")]).unwrap();
        drop(store);
        let store = sqlite_store(&dir);
        assert_eq!(store.migrate().unwrap(), 0);
        store.check_ready().unwrap();
        assert_eq!(store.count_rows().unwrap(), 1);
        assert_eq!(store.backend(), Backend::Sqlite);
    }

    #[test]
    fn an_untouched_file_is_sound() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(&dir);
        store.check_sound().unwrap();
        store.insert_batch(&[record("r1")]).unwrap();
        store.check_sound().unwrap();
        store.probe().unwrap();
        store.check_ready().unwrap();
    }

    #[test]
    fn a_deleted_file_is_noticed_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(&dir);
        store.insert_batch(&[record("r1")]).unwrap();
        let path = dir.path().join("db/usage.db");
        // What `rm data/commander.db*` does.
        for suffix in ["", "-wal", "-shm"] {
            let mut name = path.clone().into_os_string();
            name.push(suffix);
            let _ = std::fs::remove_file(name);
        }
        // The open connection still writes happily into the unlinked file.
        store.insert_batch(&[record("r2")]).unwrap();

        let err = store.check_sound().unwrap_err();
        let StoreError::DatabaseReplaced(message) = &err else {
            panic!("{err:?}")
        };
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("deleted"), "{message}");
        assert!(matches!(
            store.probe(),
            Err(StoreError::DatabaseReplaced(_))
        ));
        assert!(matches!(
            store.check_ready(),
            Err(StoreError::DatabaseReplaced(_))
        ));
    }

    #[test]
    fn a_file_replaced_by_another_is_noticed_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(&dir);
        let other_dir = tempfile::tempdir().unwrap();
        drop(sqlite_store(&other_dir));
        let path = dir.path().join("db/usage.db");
        // A backup restored over the live file.
        std::fs::rename(other_dir.path().join("db/usage.db"), &path).unwrap();

        let err = store.check_sound().unwrap_err();
        let StoreError::DatabaseReplaced(message) = &err else {
            panic!("{err:?}")
        };
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("replaced"), "{message}");
        assert!(matches!(
            store.probe(),
            Err(StoreError::DatabaseReplaced(_))
        ));
    }

    #[test]
    fn reconnecting_after_a_replacement_is_sound_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(&dir);
        std::fs::remove_file(dir.path().join("db/usage.db")).unwrap();
        assert!(store.check_sound().is_err());
        let reopened = sqlite_store(&dir);
        reopened.check_sound().unwrap();
        reopened.insert_batch(&[record("r1")]).unwrap();
        assert_eq!(reopened.count_rows().unwrap(), 1);
    }

    #[test]
    fn unknown_url_scheme_is_refused() {
        for url in [
            "mysql://localhost/db",
            "sqlite://",
            "sqlite://:memory:",
            "data.db",
        ] {
            let err = UsageStore::connect(&DatabaseConfig {
                url: url.into(),
                ..DatabaseConfig::default()
            })
            .unwrap_err();
            assert!(matches!(err, StoreError::UnsupportedUrl(_)), "{url}: {err}");
        }
    }

    #[test]
    fn the_configuration_check_and_the_connection_share_one_url_rule() {
        for (url, expected) in [
            ("sqlite://data/u.db", Some(Backend::Sqlite)),
            (" postgresql://u@h/db ", Some(Backend::Postgres)),
            ("postgres://u:p@h:5432/db", Some(Backend::Postgres)),
            ("sqlite://", None),
            ("sqlite://:memory:", None),
            ("mysql://localhost/db", None),
            ("data.db", None),
        ] {
            let config = DatabaseConfig {
                url: url.into(),
                ..DatabaseConfig::default()
            };
            assert_eq!(config.backend().ok(), expected, "{url}");
        }
    }
}
