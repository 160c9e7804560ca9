use serde::{Deserialize, Serialize};

use crate::{Backend, StoreError};

/// The `[database]` section: where the usage log lives and how it is written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://path/to/file.db` (relative to the working directory; `sqlite:///abs/path.db`
    /// for an absolute path) or `postgres://user@host:port/db`.
    pub url: String,
    /// The most connections the pool opens.
    pub pool_size: u32,
    /// The most rows written in one transaction.
    pub batch_size: usize,
    /// How long a row may wait for its batch to fill before it is written anyway.
    pub flush_interval_ms: u64,
    /// How many rows may wait in memory for the writer.
    pub queue_capacity: usize,
    /// The spill file of earlier versions (JSON lines): replayed once at start if it holds
    /// records, then removed. The journal took over its job.
    pub spill_path: String,
    /// How a call's row is kept until the database has it: `journal` (default) or `memory`.
    pub durability: Durability,
    /// With `durability = "journal"`: what the journal survives (`process` or `machine`).
    pub journal_sync: JournalSync,
    /// The journal's directory (segments and checkpoint). With `durability = "memory"` it
    /// still takes rows the queue cannot hold and those left at shutdown.
    pub journal_dir: String,
    /// During a long stream, how often what it has delivered is journaled, at most, so a crash
    /// mid-stream still bills what the client received.
    pub journal_stream_checkpoint_ms: u64,
    /// Where a row the database refuses for its content (and that cannot be repaired) is moved
    /// (JSON lines), so it never blocks the rows behind it.
    pub dead_letter_path: String,
    /// `/ready` answers 503 when the oldest row not yet in the database is older than this.
    pub ready_max_lag_ms: u64,
    /// How long to wait for a connection (from the pool, or a new one), in milliseconds.
    pub connect_timeout_ms: u64,
    /// At shutdown, how long to keep retrying a failing database before spilling what is left,
    /// in milliseconds.
    pub shutdown_timeout_ms: u64,
    /// SQLite only: how long a write waits for another writer's lock, in milliseconds.
    pub sqlite_busy_timeout_ms: u64,
    /// Reports (`/usage/summary`, the console's overview) over a range of at most this many
    /// calls read the log itself and give exact nearest-rank latency percentiles. Larger
    /// ranges read the hourly rollup for the hours it has sealed — counts, tokens and cost
    /// still exact, p50/p95 then from 1%-wide latency bins (within 0.5%) and marked
    /// `approximate`. `0` uses the rollup whenever it can.
    pub exact_report_calls: u64,
}

impl DatabaseConfig {
    /// The most connections a pool opens, whatever `pool_size` says: r2d2 allocates a slot
    /// per connection up front, so `u32::MAX` would exhaust memory before the first query.
    pub const MAX_POOL_SIZE: u32 = 1_000;
    /// The largest batch written, whatever `batch_size` says: a batch's buffer is allocated up
    /// front.
    pub const MAX_BATCH_SIZE: usize = 100_000;
    /// The largest queue, whatever `queue_capacity` says: Tokio's channel panics beyond
    /// `usize::MAX >> 3`, and ten million waiting rows is already gigabytes.
    pub const MAX_QUEUE_CAPACITY: usize = 10_000_000;
    /// The longest of the waits above (`flush_interval_ms`, `connect_timeout_ms`,
    /// `shutdown_timeout_ms`, `sqlite_busy_timeout_ms`), in milliseconds: a day. Longer values
    /// are treated as a day, so no deadline computed from them can overflow.
    pub const MAX_WAIT_MS: u64 = 86_400_000;

    /// This configuration with its local files — the journal, the dead-letter file, an old
    /// spill file — in `dir` (the URL is left as it is): for tests and embedded use, so that
    /// two stores never share a journal.
    pub fn with_files_in(self, dir: &std::path::Path) -> Self {
        let path = |name: &str| dir.join(name).display().to_string();
        Self {
            spill_path: path("usage-spill.jsonl"),
            journal_dir: path("journal"),
            dead_letter_path: path("usage-dead-letter.jsonl"),
            ..self
        }
    }

    /// The backend `url` names, or why it names none: the one rule for which URLs the store
    /// opens, so a configuration check and the connection itself cannot disagree.
    pub fn backend(&self) -> Result<Backend, StoreError> {
        self.location().map(|location| match location {
            Location::Sqlite(_) => Backend::Sqlite,
            Location::Postgres(_) => Backend::Postgres,
        })
    }

    /// What `url` tells each driver to open (the rule [`Self::backend`] states).
    pub(crate) fn location(&self) -> Result<Location<'_>, StoreError> {
        let url = self.url.trim();
        match url.strip_prefix("sqlite://") {
            // An in-memory database would lose every row with its last pooled connection.
            Some(path) if !path.is_empty() && !path.starts_with(":memory:") => {
                Ok(Location::Sqlite(path))
            }
            Some(_) => Err(StoreError::UnsupportedUrl(url.to_owned())),
            None if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(Location::Postgres(url))
            }
            None => Err(StoreError::UnsupportedUrl(url.to_owned())),
        }
    }
}

/// How a call's row is kept until the database has it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// Journaled on local disk before the answer completes (`started` before the upstream is
    /// called, `finished` before the answer's last byte): a crash loses no row.
    #[default]
    Journal,
    /// Held in memory until written (write-behind): a crash loses the rows not yet written,
    /// at most `flush_interval_ms` of calls, or the whole queue while the database is down.
    Memory,
}

/// What a journal record survives once written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JournalSync {
    /// Plain `write`s: the kernel holds the data, so a killed or crashed process loses nothing.
    #[default]
    Process,
    /// `fsync` too, one per batch of concurrent records (group commit), before the answer
    /// completes: survives a power cut or a kernel crash.
    Machine,
}

/// Where a database URL points, in the form its driver takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Location<'a> {
    /// The SQLite file at this path: the URL without its `sqlite://`.
    Sqlite(&'a str),
    /// The PostgreSQL server of this URL, which the driver takes whole.
    Postgres(&'a str),
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://data/commander.db".to_owned(),
            pool_size: 8,
            batch_size: 256,
            flush_interval_ms: 200,
            queue_capacity: 10_000,
            spill_path: "data/usage-spill.jsonl".to_owned(),
            durability: Durability::Journal,
            journal_sync: JournalSync::Process,
            journal_dir: "data/journal".to_owned(),
            journal_stream_checkpoint_ms: 1_000,
            dead_letter_path: "data/usage-dead-letter.jsonl".to_owned(),
            ready_max_lag_ms: 30_000,
            connect_timeout_ms: 5_000,
            shutdown_timeout_ms: 5_000,
            sqlite_busy_timeout_ms: 5_000,
            exact_report_calls: 20_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sqlite_url_opens_its_path_and_a_postgres_url_is_passed_whole() {
        for (url, expected) in [
            ("sqlite://data/u.db", Location::Sqlite("data/u.db")),
            (
                " sqlite:///var/lib/u.db ",
                Location::Sqlite("/var/lib/u.db"),
            ),
            (
                " postgres://u@h:5432/db ",
                Location::Postgres("postgres://u@h:5432/db"),
            ),
        ] {
            let config = DatabaseConfig {
                url: url.into(),
                ..DatabaseConfig::default()
            };
            assert_eq!(config.location().ok(), Some(expected), "{url}");
        }
    }
}
