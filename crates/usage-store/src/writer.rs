use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::spill::Spill;
use crate::{DatabaseConfig, StoreError, UsageRecord, UsageStore};

/// First wait before retrying a failed batch; doubled up to [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(100);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);
/// How often a non-empty spill file is offered to the database again.
const SPILL_RETRY_INTERVAL: Duration = Duration::from_secs(5);

enum Command {
    Record(Box<UsageRecord>),
    /// Acknowledge once the first `target` records handed to the sink are in the database.
    Flush {
        target: u64,
        ack: oneshot::Sender<()>,
    },
}

/// Counters a metrics exporter can read.
#[derive(Debug, Default)]
struct Counters {
    /// Records handed to the sink.
    accepted: AtomicU64,
    /// Records the request path spilled because the queue was full (durably appended).
    spilled_on_overflow: AtomicU64,
    /// Records spilled for any reason.
    spilled: AtomicU64,
    /// Records replayed from the spill file into the database.
    replayed: AtomicU64,
    rows_written: AtomicU64,
    batches_written: AtomicU64,
    write_errors: AtomicU64,
    /// Records the writer has taken off the queue and not yet committed or spilled (its
    /// pending batch, or a batch retrying through an outage).
    in_hand: AtomicU64,
}

/// Takes a batch's records off the in-hand count when dropped.
struct Settled(Arc<Counters>, u64);

impl Drop for Settled {
    fn drop(&mut self) {
        self.0.in_hand.fetch_sub(self.1, Ordering::Relaxed);
    }
}

/// A snapshot of the writer's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterStats {
    /// Records not yet in the database: waiting in the queue, or in the batch being written
    /// (which, during an outage, is retried while the queue fills behind it).
    pub queue_depth: usize,
    /// Rows committed by batches since start.
    pub rows_written: u64,
    /// Batches committed since start.
    pub batches_written: u64,
    /// Failed write attempts since start (each is retried, or its records spilled).
    pub write_errors: u64,
    /// Records appended to the spill file since start.
    pub spilled: u64,
    /// Spilled records newly stored by replaying the spill file since start.
    pub replayed: u64,
}

/// The request path's handle to the usage log: hands records to the writer without waiting.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct UsageSink {
    tx: mpsc::Sender<Command>,
    counters: Arc<Counters>,
    spill: Spill,
    /// Wakes the writer: a batch is waiting, a flush is asked for, or a record was spilled.
    wake: Arc<Notify>,
    batch_size: usize,
}

impl UsageSink {
    /// Queues `record` for writing and returns at once.
    ///
    /// When the queue is full (the database is slow or down) the record is appended to the
    /// spill file on a blocking thread instead; when the writer has already stopped, it is
    /// appended right here. Either way it is replayed into the database when it answers again
    /// (or at the next start).
    pub fn record(&self, record: UsageRecord) {
        self.counters.accepted.fetch_add(1, Ordering::SeqCst);
        let command = match self.tx.try_send(Command::Record(Box::new(record))) {
            Ok(()) => {
                // Wake the writer once a batch is waiting; until then it wakes on its own
                // interval, so a busy server does not wake it per record.
                if self.tx.max_capacity() - self.tx.capacity() >= self.batch_size {
                    self.wake.notify_one();
                }
                return;
            }
            Err(mpsc::error::TrySendError::Full(command)) => (command, false),
            Err(mpsc::error::TrySendError::Closed(command)) => (command, true),
        };
        let (command, writer_gone) = command;
        let Command::Record(record) = command else {
            return;
        };
        let spill = self.spill.clone();
        let counters = Arc::clone(&self.counters);
        let notice = Arc::clone(&self.wake);
        let append = move || match spill.append(std::slice::from_ref(&*record)) {
            Ok(()) => {
                counters.spilled.fetch_add(1, Ordering::SeqCst);
                counters.spilled_on_overflow.fetch_add(1, Ordering::SeqCst);
                notice.notify_one();
            }
            Err(e) => log_unwritten(&record, &e),
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) if !writer_gone => {
                tracing::warn!("usage queue is full; spilling a record to disk");
                runtime.spawn_blocking(append);
            }
            // The writer has stopped: this is shutdown, perhaps on a runtime being torn down
            // that would never run a blocking task. Write it now.
            _ => {
                tracing::warn!("usage writer has stopped; spilling a record to disk");
                append();
            }
        }
    }

    /// Waits until every record handed to [`UsageSink::record`] before this call is in the
    /// database (replaying spilled ones first).
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (ack, done) = oneshot::channel();
        let target = self.counters.accepted.load(Ordering::SeqCst);
        let stopped = || StoreError::Connect("the usage writer has stopped".to_owned());
        self.tx
            .send(Command::Flush { target, ack })
            .await
            .map_err(|_| stopped())?;
        self.wake.notify_one();
        done.await.map_err(|_| stopped())
    }

    /// The writer's counters now.
    pub fn stats(&self) -> WriterStats {
        let c = &self.counters;
        WriterStats {
            queue_depth: (self.tx.max_capacity() - self.tx.capacity()).saturating_add(
                usize::try_from(c.in_hand.load(Ordering::Relaxed)).unwrap_or(usize::MAX),
            ),
            rows_written: c.rows_written.load(Ordering::Relaxed),
            batches_written: c.batches_written.load(Ordering::Relaxed),
            write_errors: c.write_errors.load(Ordering::Relaxed),
            spilled: c.spilled.load(Ordering::Relaxed),
            replayed: c.replayed.load(Ordering::Relaxed),
        }
    }
}

/// The last resort, when even the spill file cannot be written: the whole record at error
/// level, so it can be recovered from the logs (it holds no secret: the user is a hash).
fn log_unwritten(record: &UsageRecord, error: &StoreError) {
    let json = serde_json::to_string(record).unwrap_or_else(|e| e.to_string());
    tracing::error!(record = %json, %error, "usage record could not be written or spilled");
}

/// The background task that owns writing. Call [`UsageWriter::shutdown`] at exit so queued
/// records are committed (or spilled, if the database is down).
#[derive(Debug)]
pub struct UsageWriter {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl UsageWriter {
    /// Stops accepting records, commits everything queued, and returns when done.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "usage writer task failed");
        }
    }
}

/// Starts the writer on the current Tokio runtime: first it replays any spill file left by an
/// earlier run, then drains a bounded queue (`queue_capacity`) into `store` in batches of up to
/// `batch_size`, each written when full or `flush_interval_ms` after its first record arrived.
pub fn spawn_writer(store: UsageStore, config: &DatabaseConfig) -> (UsageSink, UsageWriter) {
    let (tx, rx) = mpsc::channel(
        config
            .queue_capacity
            .clamp(1, DatabaseConfig::MAX_QUEUE_CAPACITY),
    );
    let (stop, stop_rx) = oneshot::channel();
    let counters = Arc::new(Counters::default());
    let spill = Spill::new(&config.spill_path);
    let wake = Arc::new(Notify::new());
    let batch_size = config.batch_size.clamp(1, DatabaseConfig::MAX_BATCH_SIZE);
    let worker = Worker {
        spill_dirty: spill.has_records(),
        store,
        rx,
        counters: Arc::clone(&counters),
        spill: spill.clone(),
        wake: Arc::clone(&wake),
        batch_size,
        flush_interval: Duration::from_millis(
            config.flush_interval_ms.min(DatabaseConfig::MAX_WAIT_MS),
        ),
        shutdown_timeout: Duration::from_millis(
            config.shutdown_timeout_ms.min(DatabaseConfig::MAX_WAIT_MS),
        ),
        committed: 0,
        overflow_settled: 0,
        waiters: Vec::new(),
        stop: stop_rx,
        deadline: None,
    };
    let task = tokio::spawn(worker.run());
    (
        UsageSink {
            tx,
            counters,
            spill,
            wake,
            batch_size,
        },
        UsageWriter { stop, task },
    )
}

struct Worker {
    store: UsageStore,
    rx: mpsc::Receiver<Command>,
    counters: Arc<Counters>,
    spill: Spill,
    wake: Arc<Notify>,
    batch_size: usize,
    flush_interval: Duration,
    shutdown_timeout: Duration,
    /// Records taken off the queue and settled: committed (or, at shutdown, spilled).
    committed: u64,
    /// Overflow-spilled records known to be in the database (replayed).
    overflow_settled: u64,
    /// True when the spill file may hold records the worker put there.
    spill_dirty: bool,
    /// Flush requests not yet satisfied: (target, ack).
    waiters: Vec<(u64, oneshot::Sender<()>)>,
    /// Fires when shutdown is asked for (or the [`UsageWriter`] is dropped).
    stop: oneshot::Receiver<()>,
    /// Set once shutdown is asked for: past it, a failing batch is spilled, not retried.
    deadline: Option<Instant>,
}

impl Worker {
    /// Wakes when a batch is full, a flush is asked for, a record was spilled, or the flush
    /// interval passes — not for every record: under load one wake-up drains a whole batch.
    async fn run(mut self) {
        if self.spill_dirty {
            self.replay_spill().await;
        }
        let mut pending: Vec<UsageRecord> = Vec::with_capacity(self.batch_size);
        let mut last_spill_attempt = Instant::now();
        // Leaves when shutdown is asked for, here or while a write was retrying.
        while self.deadline.is_none() {
            tokio::select! {
                biased;
                _ = &mut self.stop => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.flush_interval) => {}
            }
            let closed = loop {
                match self.rx.try_recv() {
                    Ok(command) => self.accept(command, &mut pending).await,
                    Err(mpsc::error::TryRecvError::Empty) => break false,
                    Err(mpsc::error::TryRecvError::Disconnected) => break true,
                }
            };
            self.write(std::mem::take(&mut pending)).await;
            let retry_spill = self.spill_pending()
                && (!self.waiters.is_empty()
                    || last_spill_attempt.elapsed() >= SPILL_RETRY_INTERVAL);
            if retry_spill {
                last_spill_attempt = Instant::now();
                self.replay_spill().await;
            }
            self.acknowledge_flushes();
            if closed {
                break;
            }
        }

        // Shutdown: take no new records, commit what is queued (spilling what the database
        // will not take in time).
        self.rx.close();
        self.deadline
            .get_or_insert_with(|| Instant::now() + self.shutdown_timeout);
        while let Some(command) = self.rx.recv().await {
            self.accept(command, &mut pending).await;
        }
        self.write(pending).await;
        if self.spill_pending() {
            self.replay_spill().await;
        }
        self.acknowledge_flushes();
    }

    fn spill_pending(&self) -> bool {
        self.spill_dirty
            || self.counters.spilled_on_overflow.load(Ordering::SeqCst) > self.overflow_settled
    }

    /// Takes one command: a record joins the pending batch (written when full, or at once
    /// while someone waits for a flush); a flush request writes the pending batch and the
    /// spill file now and is answered once its records are all in.
    async fn accept(&mut self, command: Command, pending: &mut Vec<UsageRecord>) {
        match command {
            Command::Record(record) => {
                self.counters.in_hand.fetch_add(1, Ordering::Relaxed);
                pending.push(*record);
                if pending.len() >= self.batch_size || !self.waiters.is_empty() {
                    self.write(std::mem::take(pending)).await;
                }
            }
            Command::Flush { target, ack } => {
                self.waiters.push((target, ack));
                self.write(std::mem::take(pending)).await;
                if self.spill_pending() {
                    self.replay_spill().await;
                }
            }
        }
        self.acknowledge_flushes();
    }

    /// Answers every flush request whose records are all in the database.
    fn acknowledge_flushes(&mut self) {
        let done = self.committed + self.overflow_settled;
        let (answered, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiters)
            .into_iter()
            .partition(|(target, _)| *target <= done);
        self.waiters = waiting;
        for (_, ack) in answered {
            let _ = ack.send(());
        }
    }

    /// Commits `batch`, retrying with backoff while the database fails. Until shutdown is asked
    /// for it retries until it succeeds (meanwhile the queue fills and the request path
    /// spills); once the shutdown deadline would pass, the batch is spilled.
    async fn write(&mut self, batch: Vec<UsageRecord>) {
        if batch.is_empty() {
            return;
        }
        // However this ends (committed or spilled), the batch is no longer in hand.
        let _settled = Settled(Arc::clone(&self.counters), batch.len() as u64);
        let batch = Arc::new(batch);
        let mut delay = FIRST_RETRY_DELAY;
        let mut failed = false;
        loop {
            let store = self.store.clone();
            let rows = Arc::clone(&batch);
            let outcome = tokio::task::spawn_blocking(move || store.insert_batch(&rows)).await;
            let error = match outcome {
                Ok(Ok(_)) => {
                    self.committed += batch.len() as u64;
                    self.counters
                        .rows_written
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    self.counters
                        .batches_written
                        .fetch_add(1, Ordering::Relaxed);
                    if failed || self.spill_pending() {
                        // The database is answering again: bring back what was spilled.
                        self.replay_spill().await;
                    }
                    return;
                }
                Ok(Err(e)) => e.to_string(),
                Err(e) => format!("write task failed: {e}"),
            };
            failed = true;
            self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
            if self.deadline.is_some_and(|d| Instant::now() + delay > d) {
                tracing::error!(%error, rows = batch.len(), "database still failing at shutdown; spilling the batch");
                self.spill_batch(&batch).await;
                return;
            }
            tracing::warn!(%error, rows = batch.len(), retry_in_ms = delay.as_millis() as u64,
                "usage batch not written; will retry");
            self.wait_before_retry(delay).await;
            delay = (delay * 2).min(MAX_RETRY_DELAY);
        }
    }

    /// Sleeps `delay`, but notices a shutdown request meanwhile: a write retrying through a
    /// database outage must not hold shutdown up for longer than the shutdown timeout.
    async fn wait_before_retry(&mut self, delay: Duration) {
        if self.deadline.is_some() {
            tokio::time::sleep(delay).await;
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = &mut self.stop => {
                self.deadline = Some(Instant::now() + self.shutdown_timeout);
            }
        }
    }

    async fn spill_batch(&mut self, batch: &Arc<Vec<UsageRecord>>) {
        let spill = self.spill.clone();
        let records = Arc::clone(batch);
        let appended = tokio::task::spawn_blocking(move || spill.append(&records)).await;
        match appended {
            Ok(Ok(())) => {
                self.counters
                    .spilled
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                self.spill_dirty = true;
            }
            Ok(Err(e)) => batch.iter().for_each(|r| log_unwritten(r, &e)),
            Err(e) => {
                let e = StoreError::Connect(format!("spill task failed: {e}"));
                batch.iter().for_each(|r| log_unwritten(r, &e));
            }
        }
        // Settled either way: written to the spill file, or to the log as a last resort.
        self.committed += batch.len() as u64;
    }

    /// Offers the spill file to the database; on success it is empty afterwards.
    async fn replay_spill(&mut self) {
        let overflow_before = self.counters.spilled_on_overflow.load(Ordering::SeqCst);
        let spill = self.spill.clone();
        let store = self.store.clone();
        let batch_size = self.batch_size;
        let outcome = tokio::task::spawn_blocking(move || spill.replay(&store, batch_size)).await;
        match outcome {
            Ok(Ok(replayed)) => {
                if replayed > 0 {
                    tracing::info!(replayed, "replayed spilled usage records into the database");
                }
                self.counters
                    .replayed
                    .fetch_add(replayed, Ordering::Relaxed);
                self.overflow_settled = overflow_before;
                self.spill_dirty = false;
            }
            Ok(Err(e)) => {
                self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, path = %self.spill.path().display(),
                    "spilled usage records not replayed yet; will retry");
            }
            Err(e) => tracing::error!(error = %e, "spill replay task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &tempfile::TempDir) -> (UsageStore, DatabaseConfig) {
        let config = DatabaseConfig {
            url: format!("sqlite://{}", dir.path().join("usage.db").display()),
            batch_size: 10,
            flush_interval_ms: 50,
            queue_capacity: 4,
            spill_path: dir.path().join("spill.jsonl").display().to_string(),
            ..DatabaseConfig::default()
        };
        (UsageStore::connect(&config).unwrap(), config)
    }

    fn record(i: usize) -> UsageRecord {
        crate::fixture::usage_record(&format!("req-{i}"))
    }

    #[tokio::test]
    async fn flush_commits_everything_queued_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let (store, config) = store(&dir);
        let (sink, writer) = spawn_writer(store.clone(), &config);
        // More records than the queue holds: the overflow waits, nothing is dropped.
        for i in 0..25 {
            sink.record(record(i));
        }
        sink.flush().await.unwrap();
        assert_eq!(store.count_rows().unwrap(), 25);
        let stats = sink.stats();
        assert_eq!(stats.rows_written + stats.replayed, 25);
        assert_eq!(stats.spilled, stats.replayed, "every overflow was replayed");
        assert!(stats.spilled > 0, "a queue of 4 overflowed");
        assert_eq!(stats.write_errors, 0);
        writer.shutdown().await;
    }

    #[tokio::test]
    async fn a_record_arriving_after_shutdown_is_spilled_at_once_and_replayed_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let (store, config) = store(&dir);
        let (sink, writer) = spawn_writer(store.clone(), &config);
        writer.shutdown().await;
        // A call cut short at shutdown hands in its row late, from a runtime being torn down.
        sink.record(record(1));
        let spilled = std::fs::read_to_string(&config.spill_path).unwrap();
        assert!(
            spilled.contains("req-1"),
            "on disk before record() returned"
        );
        assert_eq!(store.count_rows().unwrap(), 0);

        let (sink, writer) = spawn_writer(store.clone(), &config);
        sink.flush().await.unwrap();
        assert_eq!(store.count_rows().unwrap(), 1);
        writer.shutdown().await;
    }

    #[tokio::test]
    async fn flush_with_nothing_queued_returns_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (store, config) = store(&dir);
        let (sink, writer) = spawn_writer(store, &config);
        tokio::time::timeout(Duration::from_secs(5), sink.flush())
            .await
            .expect("flush of an empty queue hung")
            .unwrap();
        writer.shutdown().await;
    }

    #[tokio::test]
    async fn a_lone_record_is_written_after_the_flush_interval() {
        let dir = tempfile::tempdir().unwrap();
        let (store, config) = store(&dir);
        let (sink, writer) = spawn_writer(store.clone(), &config);
        sink.record(record(1));
        // Poll, bounded: the interval is 50 ms, so 5 s means it never came.
        let deadline = Instant::now() + Duration::from_secs(5);
        // The counter moves after the commit, so waiting on it sees the row too (waiting on
        // the row could look at the counter before it moved).
        while sink.stats().batches_written == 0 {
            assert!(
                Instant::now() < deadline,
                "record not written after the flush interval"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(sink.stats().batches_written, 1);
        assert_eq!(store.count_rows().unwrap(), 1);
        writer.shutdown().await;
    }

    #[tokio::test]
    async fn extreme_sizes_and_waits_are_bounded_instead_of_panicking() {
        let dir = tempfile::tempdir().unwrap();
        let (store, config) = store(&dir);
        // What a library user who skipped the binary's range check could pass.
        let config = DatabaseConfig {
            queue_capacity: usize::MAX,
            batch_size: usize::MAX,
            flush_interval_ms: u64::MAX,
            shutdown_timeout_ms: u64::MAX,
            ..config
        };
        let (sink, writer) = spawn_writer(store.clone(), &config);
        for i in 0..3 {
            sink.record(record(i));
        }
        sink.flush().await.unwrap();
        assert_eq!(store.count_rows().unwrap(), 3);
        writer.shutdown().await;
    }

    #[tokio::test]
    async fn shutdown_drains_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let (store, config) = store(&dir);
        let config = DatabaseConfig {
            flush_interval_ms: 60_000,
            batch_size: 1000,
            queue_capacity: 100,
            ..config
        };
        let (sink, writer) = spawn_writer(store.clone(), &config);
        for i in 0..57 {
            sink.record(record(i));
        }
        writer.shutdown().await;
        assert_eq!(store.count_rows().unwrap(), 57);
        // After shutdown the sink refuses politely instead of panicking.
        assert!(sink.flush().await.is_err());
    }
}
