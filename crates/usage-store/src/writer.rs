use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::{DatabaseConfig, StoreError, UsageRecord, UsageStore};

/// First wait before retrying a failed batch; doubled up to [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(100);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);
/// How long shutdown keeps retrying a database that is down before giving up on a batch.
const SHUTDOWN_RETRY_BUDGET: Duration = Duration::from_secs(10);

enum Command {
    Record(Box<UsageRecord>),
    /// Acknowledge once the first `target` records handed to the sink are committed.
    Flush {
        target: u64,
        ack: oneshot::Sender<()>,
    },
}

/// Counters a metrics exporter can read.
#[derive(Debug, Default)]
struct Counters {
    /// Records handed to the sink. Records that overflow the queue may reach the writer after a
    /// later flush request, so a flush waits for this count rather than for its place in line.
    accepted: AtomicU64,
    rows_written: AtomicU64,
    batches_written: AtomicU64,
    write_errors: AtomicU64,
}

/// A snapshot of the writer's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterStats {
    /// Records waiting in the queue.
    pub queue_depth: usize,
    /// Rows committed since start.
    pub rows_written: u64,
    /// Batches committed since start.
    pub batches_written: u64,
    /// Failed write attempts since start (each is retried).
    pub write_errors: u64,
}

/// The request path's handle to the usage log: hands records to the writer without waiting.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct UsageSink {
    tx: mpsc::Sender<Command>,
    counters: Arc<Counters>,
}

impl UsageSink {
    /// Queues `record` for writing and returns at once.
    ///
    /// When the queue is full the record waits in a background task for room rather than being
    /// dropped; it must be called inside a Tokio runtime.
    pub fn record(&self, record: UsageRecord) {
        self.counters.accepted.fetch_add(1, Ordering::SeqCst);
        match self.tx.try_send(Command::Record(Box::new(record))) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(command)) => {
                tracing::warn!("usage queue is full; a record is waiting for room");
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    if let Err(mpsc::error::SendError(command)) = tx.send(command).await {
                        log_unwritten(command);
                    }
                });
            }
            Err(mpsc::error::TrySendError::Closed(command)) => log_unwritten(command),
        }
    }

    /// Waits until every record handed to [`UsageSink::record`] before this call is committed.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (ack, done) = oneshot::channel();
        let target = self.counters.accepted.load(Ordering::SeqCst);
        let stopped = || StoreError::Connect("the usage writer has stopped".to_owned());
        self.tx
            .send(Command::Flush { target, ack })
            .await
            .map_err(|_| stopped())?;
        done.await.map_err(|_| stopped())
    }

    /// The writer's counters now.
    pub fn stats(&self) -> WriterStats {
        WriterStats {
            queue_depth: self.tx.max_capacity() - self.tx.capacity(),
            rows_written: self.counters.rows_written.load(Ordering::Relaxed),
            batches_written: self.counters.batches_written.load(Ordering::Relaxed),
            write_errors: self.counters.write_errors.load(Ordering::Relaxed),
        }
    }
}

/// The last resort for a record that can no longer reach the writer: the whole record at error
/// level, so it can be recovered from the logs. (It holds no secret: the user is a hash.)
fn log_unwritten(command: Command) {
    if let Command::Record(record) = command {
        let json = serde_json::to_string(&record).unwrap_or_else(|e| e.to_string());
        tracing::error!(record = %json, "usage writer has stopped; record not written");
    }
}

/// The background task that owns writing. Call [`UsageWriter::shutdown`] at exit so queued
/// records are committed.
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

/// Starts the writer on the current Tokio runtime: a bounded queue (`queue_capacity`) drained
/// into `store` in batches of up to `batch_size`, each written when full or `flush_interval_ms`
/// after its first record arrived, whichever comes first.
pub fn spawn_writer(store: UsageStore, config: &DatabaseConfig) -> (UsageSink, UsageWriter) {
    let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
    let (stop, stop_rx) = oneshot::channel();
    let counters = Arc::new(Counters::default());
    let worker = Worker {
        store,
        rx,
        counters: Arc::clone(&counters),
        batch_size: config.batch_size.max(1),
        flush_interval: Duration::from_millis(config.flush_interval_ms),
        received: 0,
        committed: 0,
        waiters: Vec::new(),
    };
    let task = tokio::spawn(worker.run(stop_rx));
    (UsageSink { tx, counters }, UsageWriter { stop, task })
}

struct Worker {
    store: UsageStore,
    rx: mpsc::Receiver<Command>,
    counters: Arc<Counters>,
    batch_size: usize,
    flush_interval: Duration,
    /// Records taken off the queue so far.
    received: u64,
    /// Records committed so far (always `received` minus those still pending).
    committed: u64,
    /// Flush requests not yet satisfied: (target, ack).
    waiters: Vec<(u64, oneshot::Sender<()>)>,
}

impl Worker {
    async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        let mut pending: Vec<UsageRecord> = Vec::with_capacity(self.batch_size);
        let mut due: Option<Instant> = None;
        loop {
            tokio::select! {
                biased;
                _ = &mut stop => break,
                command = self.rx.recv() => match command {
                    None => break,
                    Some(command) => {
                        if pending.is_empty() {
                            due = Some(Instant::now() + self.flush_interval);
                        }
                        self.accept(command, &mut pending, None).await;
                        if pending.is_empty() {
                            due = None;
                        }
                    }
                },
                () = sleep_until_due(due), if due.is_some() => {
                    self.write(std::mem::take(&mut pending), None).await;
                    due = None;
                }
            }
        }

        // Shutdown: take no new records, commit what is queued.
        self.rx.close();
        let deadline = Some(Instant::now() + SHUTDOWN_RETRY_BUDGET);
        while let Some(command) = self.rx.recv().await {
            self.accept(command, &mut pending, deadline).await;
        }
        self.write(pending, deadline).await;
    }

    /// Takes one command: a record joins the pending batch (written when full); a flush request
    /// waits until its records are committed, writing the pending batch early if that is all it
    /// waits for.
    async fn accept(
        &mut self,
        command: Command,
        pending: &mut Vec<UsageRecord>,
        deadline: Option<Instant>,
    ) {
        match command {
            Command::Record(record) => {
                self.received += 1;
                pending.push(*record);
                if pending.len() >= self.batch_size {
                    self.write(std::mem::take(pending), deadline).await;
                }
            }
            Command::Flush { target, ack } => self.waiters.push((target, ack)),
        }
        if self
            .waiters
            .iter()
            .any(|(target, _)| *target <= self.received)
        {
            self.write(std::mem::take(pending), deadline).await;
            self.acknowledge_flushes();
        }
    }

    /// Answers every flush request whose records are all committed.
    fn acknowledge_flushes(&mut self) {
        let committed = self.committed;
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiters)
            .into_iter()
            .partition(|(target, _)| *target <= committed);
        self.waiters = waiting;
        for (_, ack) in done {
            let _ = ack.send(());
        }
    }

    /// Commits `batch`, retrying with backoff while the database fails. Without a deadline it
    /// retries until it succeeds; past the deadline the records are logged as unwritten.
    async fn write(&mut self, batch: Vec<UsageRecord>, deadline: Option<Instant>) {
        if batch.is_empty() {
            return;
        }
        let batch = Arc::new(batch);
        // Whatever happens below, these records are settled: committed, or logged as unwritten.
        self.committed += batch.len() as u64;
        let mut delay = FIRST_RETRY_DELAY;
        loop {
            let store = self.store.clone();
            let rows = Arc::clone(&batch);
            let outcome = tokio::task::spawn_blocking(move || store.insert_batch(&rows)).await;
            let error = match outcome {
                Ok(Ok(_)) => {
                    self.counters
                        .rows_written
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    self.counters
                        .batches_written
                        .fetch_add(1, Ordering::Relaxed);
                    self.acknowledge_flushes();
                    return;
                }
                Ok(Err(e)) => e.to_string(),
                Err(e) => format!("write task failed: {e}"),
            };
            self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
            if deadline.is_some_and(|d| Instant::now() + delay > d) {
                tracing::error!(%error, rows = batch.len(), "usage batch not written before shutdown");
                for record in batch.iter() {
                    log_unwritten(Command::Record(Box::new(record.clone())));
                }
                return;
            }
            tracing::warn!(%error, rows = batch.len(), retry_in_ms = delay.as_millis() as u64,
                "usage batch not written; will retry");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_RETRY_DELAY);
        }
    }
}

async fn sleep_until_due(due: Option<Instant>) {
    match due {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::Utc;
    use core_domain::{ProviderKind, RequestId, SpecialistId, TokenUsage, Usd};

    use super::*;

    fn store(dir: &tempfile::TempDir) -> (UsageStore, DatabaseConfig) {
        let config = DatabaseConfig {
            url: format!("sqlite://{}", dir.path().join("usage.db").display()),
            batch_size: 10,
            flush_interval_ms: 50,
            queue_capacity: 4,
            ..DatabaseConfig::default()
        };
        (UsageStore::connect(&config).unwrap(), config)
    }

    fn record(i: usize) -> UsageRecord {
        UsageRecord {
            request_id: RequestId::parse(format!("req-{i}")).unwrap(),
            timestamp: Utc::now(),
            user_email_hash: None,
            specialist_id: SpecialistId::parse("demo").unwrap(),
            specialist_name: "Demo".into(),
            provider: ProviderKind::Mock,
            model: "mock-echo".into(),
            usage: TokenUsage::reported(10, 20),
            cost: Usd::ZERO,
            pricing_known: true,
            latency: Duration::from_millis(3),
            time_to_first_token: None,
            error_code: None,
            streamed: false,
        }
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
        assert_eq!(stats.rows_written, 25);
        assert_eq!(stats.write_errors, 0);
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
        while store.count_rows().unwrap() == 0 {
            assert!(
                Instant::now() < deadline,
                "record not written after the flush interval"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(sink.stats().batches_written, 1);
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
