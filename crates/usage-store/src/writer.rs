//! The request path's handle to the usage log ([`UsageSink`]) and the background task that
//! applies it to the database ([`UsageWriter`]).
//!
//! With `durability = "journal"` (the default) every call is journaled on local disk — a
//! `started` record before the upstream is called, a `finished` record (the row) before the
//! answer completes — and the finished rows also wait in memory, in journal order, for the
//! writer. The writer applies them in batches and checkpoints how far it got; a segment of the
//! journal is deleted once everything in it is applied and no call that started in it is still
//! running. When the memory queue is full, rows are only on disk and the writer reads them
//! back from there; at start, it applies whatever an earlier process left, and turns every call
//! that started but never finished into an `interrupted` row.
//!
//! With `durability = "memory"` rows wait in memory only (write-behind); the journal then
//! takes what the queue cannot hold and what is left at shutdown.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::{Durability, JournalSync};
use crate::journal::{self, CallStart, Entry, Line, Progress, ReadLine};
use crate::{DatabaseConfig, DeadLetters, StoreError, UsageRecord, UsageStore};

/// First wait before retrying a failed batch; doubled up to [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(100);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);
/// A journal segment is closed (and a new one begun) once it is this large, so applied
/// segments can be deleted while the server runs.
const SEGMENT_BYTES: u64 = 8 * 1024 * 1024;
/// How often, at most, the checkpoint is written and applied segments deleted while the server
/// runs (a flush and shutdown do it at once): a stale checkpoint only means rows applied again,
/// harmlessly, at the next start.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
/// How long an answer waits for its group commit (`journal_sync = "machine"`) before going
/// out anyway, with an error logged: a disk that stopped answering must not hang every call.
const SYNC_WAIT_LIMIT: Duration = Duration::from_secs(10);

/// Counters a metrics exporter can read.
#[derive(Debug, Default)]
struct Counters {
    rows_written: AtomicU64,
    batches_written: AtomicU64,
    write_errors: AtomicU64,
    /// Rows the memory queue could not hold, so the writer read them back from the journal.
    spilled: AtomicU64,
    /// Rows applied from the journal on disk (overflow, recovery, an earlier spill file).
    replayed: AtomicU64,
    journal_errors: AtomicU64,
    interrupted: AtomicU64,
    repaired: AtomicU64,
    dead_lettered: AtomicU64,
}

/// A snapshot of the writer's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterStats {
    /// Rows not yet in the database that wait in memory or in the batch being written (rows
    /// that overflowed to the journal are counted by [`UsageHealth::lag`] instead).
    pub queue_depth: usize,
    /// Rows committed by batches since start.
    pub rows_written: u64,
    /// Batches committed since start.
    pub batches_written: u64,
    /// Failed write attempts since start (each is retried).
    pub write_errors: u64,
    /// Rows the memory queue could not hold since start (they waited in the journal).
    pub spilled: u64,
    /// Rows applied from the journal on disk since start.
    pub replayed: u64,
    /// Journal appends that failed since start (the row then waits in memory only).
    pub journal_errors: u64,
    /// Calls found interrupted by an earlier process's end, recorded at this start.
    pub interrupted: u64,
    /// Rows the database refused for their content and took once repaired.
    pub repaired: u64,
    /// Rows the database refused for their content, moved to the dead-letter file.
    pub dead_lettered: u64,
}

/// Whether the usage log is keeping up, for readiness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageHealth {
    /// How long the oldest row not yet in the database has waited (zero when none waits).
    pub lag: Duration,
    /// True when `lag` is past `ready_max_lag_ms`.
    pub lagging: bool,
    /// Why the last write failed, while the database keeps failing.
    pub store_problem: Option<String>,
    /// Why the journal cannot be written, while it keeps failing.
    pub journal_problem: Option<String>,
}

/// A row waiting for the database.
struct Queued {
    /// Its journal line, if it has one (a row kept in memory only has none).
    seq: Option<u64>,
    record: UsageRecord,
    since: Instant,
}

/// The segment being appended to.
struct Active {
    file: Arc<File>,
    first_seq: u64,
    bytes: u64,
}

/// Everything the request path and the writer share, behind one lock: a row's journal line
/// and its place in the memory queue are decided together, so the queue is in journal order.
struct State {
    active: Option<Active>,
    next_seq: u64,
    /// Lines appended and not yet written, in order: whoever writes next writes them all in
    /// one `write` (see [`Shared::write_out`]).
    buffer: Vec<u8>,
    /// A thread is writing the buffer out now (the others leave their lines to it).
    writing: bool,
    /// `journal_sync = "machine"`: segments closed since the sync thread last ran, and whether
    /// the directory gained a segment's name since; the thread syncs them, not the request
    /// that happened to begin a new segment.
    retired: Vec<Arc<File>>,
    directory_changed: bool,
    /// Segments by first sequence number, with how many calls that started in each have not
    /// finished yet (such a segment is kept, for recovery).
    segments: BTreeMap<u64, u64>,
    journal_problem: Option<String>,
    tail: VecDeque<Queued>,
    /// Set when rows exist in the journal that are not in `tail` (overflow, recovery): since
    /// when.
    behind_since: Option<Instant>,
    /// Every `finished` line through this one is in the database.
    applied_through: u64,
    /// Since when the batch being written has waited.
    in_hand: Option<(usize, Instant)>,
    /// Rows without a journal line handed in, and those of them written.
    memory_accepted: u64,
    memory_applied: u64,
    waiters: Vec<Waiter>,
    store_problem: Option<String>,
    /// The writer has stopped: memory-only rows go straight to the journal.
    writer_stopped: bool,
    /// `journal_sync = "machine"`: the sync thread should end.
    sync_stop: bool,
}

/// A flush waiting for everything handed in before it.
struct Waiter {
    through_seq: u64,
    memory: u64,
    ack: oneshot::Sender<()>,
}

/// What the sink and the writer share.
struct Shared {
    dir: PathBuf,
    durability: Durability,
    sync: JournalSync,
    batch_size: usize,
    tail_capacity: usize,
    stream_checkpoint: Duration,
    ready_max_lag: Duration,
    state: Mutex<State>,
    /// Wakes the writer: a batch is waiting, a flush is asked for, or rows are behind.
    wake: Notify,
    /// Wakes the sync thread (`journal_sync = "machine"`).
    sync_wanted: Condvar,
    /// The highest sequence number on stable storage.
    synced: watch::Sender<u64>,
    /// The highest sequence number in the file (`State::written`), for those who wait on it.
    written: Mark,
    counters: Counters,
    /// The journal's lock, held for the life of the sink (`None` when the directory could
    /// not be opened; the journal is then failing anyway).
    _lock: Option<File>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn journaling(&self) -> bool {
        self.durability == Durability::Journal
    }

    /// Appends `line` to the journal's buffer; returns its sequence number and the segment it
    /// goes to. The caller then hands the guard to [`Shared::write_out`], which writes it (or
    /// leaves it to the thread already writing). Fails only when no segment can be opened.
    fn append(&self, state: &mut State, line: &[u8]) -> Result<(u64, u64), std::io::Error> {
        // A new segment begins only between writes, so every line of the old one is in it.
        let rotate = match &state.active {
            None => true,
            Some(active) => {
                active.bytes >= SEGMENT_BYTES && !state.writing && state.buffer.is_empty()
            }
        };
        if rotate {
            let machine = self.sync == JournalSync::Machine;
            if let Some(old) = state.active.take()
                && machine
            {
                state.retired.push(old.file);
            }
            let first_seq = state.next_seq;
            let file = journal::create_segment(&self.dir, first_seq)?;
            state.directory_changed |= machine;
            state.segments.entry(first_seq).or_insert(0);
            state.active = Some(Active {
                file: Arc::new(file),
                first_seq,
                bytes: 0,
            });
        }
        let Some(active) = state.active.as_mut() else {
            return Err(std::io::Error::other("no journal segment is open"));
        };
        active.bytes += line.len() as u64;
        let segment = active.first_seq;
        let seq = state.next_seq;
        state.next_seq += 1;
        state.buffer.extend_from_slice(line);
        Ok((seq, segment))
    }

    /// Writes the buffer out — unless another thread is writing, which then writes it too, so
    /// concurrent calls share one `write` and none waits for the lock through a system call —
    /// and returns the guard again. A line is in the kernel once `written` reaches it.
    fn write_out<'a>(&'a self, mut state: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        if state.writing || state.buffer.is_empty() {
            return state;
        }
        state.writing = true;
        while !state.buffer.is_empty() {
            let chunk = std::mem::take(&mut state.buffer);
            let through = state.next_seq.saturating_sub(1);
            let file = state.active.as_ref().map(|active| Arc::clone(&active.file));
            drop(state);
            let result = match file {
                Some(file) => (&*file).write_all(&chunk),
                None => Err(std::io::Error::other("no journal segment is open")),
            };
            state = self.lock();
            match result {
                Ok(()) => self.journal_outcome(&mut state, Ok(())),
                Err(error) => self.chunk_lost(&mut state, &chunk, through, &error),
            }
            self.written.set(through);
            if state.buffer.is_empty() {
                // Keep the allocation for the next lines.
                let mut chunk = chunk;
                chunk.clear();
                state.buffer = chunk;
            }
        }
        state.writing = false;
        if self.sync == JournalSync::Machine {
            self.sync_wanted.notify_one();
        }
        state
    }

    /// A chunk of lines could not be written: the segment is left (its torn end is skipped
    /// when read; the next append begins a new one), and every row in the chunk that waits
    /// nowhere else — rows behind on disk are not in the memory queue — is queued in memory.
    fn chunk_lost(&self, state: &mut State, chunk: &[u8], through: u64, error: &std::io::Error) {
        self.journal_outcome(state, Err(error));
        state.active = None;
        let lines = chunk.split(|&b| b == b'\n').filter(|l| !l.is_empty());
        let count = lines.clone().count() as u64;
        let first = (through + 1).saturating_sub(count);
        let queued: std::collections::HashSet<u64> =
            state.tail.iter().filter_map(|q| q.seq).collect();
        for (seq, line) in (first..).zip(lines) {
            if queued.contains(&seq) {
                continue;
            }
            if let ReadLine::Entry(Entry::Finished(record)) = journal::parse(line) {
                state.memory_accepted += 1;
                state.tail.push_back(Queued {
                    seq: None,
                    record: *record,
                    since: Instant::now(),
                });
            }
        }
    }

    /// The rows after `applied` must be read from disk again later.
    fn journal_read_failed(&self, applied: u64) {
        let mut state = self.lock();
        state.applied_through = state.applied_through.max(applied);
        // Rows queued in memory while the read ran come after the stretch not yet read:
        // written first, they would carry `applied_through` (and the checkpoint) past it. They
        // are in the journal, so they are read back with it, in order.
        state.tail.retain(|queued| queued.seq.is_none());
        let since = state
            .in_hand
            .take()
            .map_or_else(Instant::now, |(_, since)| since);
        state.behind_since = Some(state.behind_since.map_or(since, |b| b.min(since)));
    }

    /// Notes a journal failure (logged when it begins) or its end.
    fn journal_outcome(&self, state: &mut State, outcome: Result<(), &std::io::Error>) {
        match outcome {
            Ok(()) => {
                if state.journal_problem.take().is_some() {
                    tracing::info!(dir = %self.dir.display(), "the usage journal is writable again");
                }
            }
            Err(error) => {
                self.counters.journal_errors.fetch_add(1, Ordering::Relaxed);
                if state.journal_problem.is_none() {
                    tracing::error!(%error, dir = %self.dir.display(),
                        "cannot write the usage journal; rows wait in memory until it can be written");
                }
                state.journal_problem = Some(error.to_string());
            }
        }
    }

    /// Puts `record` in the memory queue (or, when the queue is full, leaves it to be read
    /// back from the journal line `seq`).
    fn enqueue(&self, state: &mut State, seq: Option<u64>, record: UsageRecord) {
        if state.writer_stopped && seq.is_some() {
            // No writer will take it; the journal has it for the next start.
            return;
        }
        let room = state.tail.len() < self.tail_capacity;
        match seq {
            // In journal order only: once rows are behind, later ones wait their turn on disk.
            Some(_) if !room || state.behind_since.is_some() => {
                if state.behind_since.is_none() {
                    tracing::warn!("usage queue is full; rows wait in the journal");
                    state.behind_since = Some(Instant::now());
                    self.wake.notify_one();
                }
                self.counters.spilled.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Some(_) => {}
            // A row with no journal line has nowhere else to wait.
            None => state.memory_accepted += 1,
        }
        state.tail.push_back(Queued {
            seq,
            record,
            since: Instant::now(),
        });
        if state.tail.len() >= self.batch_size.min(self.tail_capacity) {
            self.wake.notify_one();
        }
    }
}

/// A sequence number tasks wait for, set far more often than waited on: setting it costs an
/// atomic store (and a wake-up only when someone waits), where a `watch` channel would notify
/// its waiter lists on every line written.
#[derive(Debug, Default)]
struct Mark {
    value: AtomicU64,
    waiting: std::sync::atomic::AtomicUsize,
    changed: Notify,
}

impl Mark {
    fn set(&self, value: u64) {
        self.value.store(value, Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.changed.notify_waiters();
        }
    }

    fn get(&self) -> u64 {
        self.value.load(Ordering::SeqCst)
    }

    /// Returns once the mark is at `target` or past it.
    async fn reached(&self, target: u64) {
        if self.get() >= target {
            return;
        }
        /// Counts the waiter for as long as it waits, however the wait ends.
        struct Waiting<'a>(&'a std::sync::atomic::AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.waiting);
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before the check, so a `set` between the two still wakes it.
            changed.as_mut().enable();
            if self.get() >= target {
                return;
            }
            changed.await;
        }
    }
}

/// The request path's handle to the usage log. Cheap to clone.
#[derive(Clone)]
pub struct UsageSink {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for UsageSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageSink")
            .field("durability", &self.shared.durability)
            .field("journal", &self.shared.dir)
            .finish_non_exhaustive()
    }
}

/// A call whose `started` record is journaled; hand it back with the call's row to
/// [`UsageSink::finish`].
#[derive(Debug)]
pub struct CallTicket {
    request_id: core_domain::RequestId,
    /// The segment holding the `started` line, kept until the call finishes.
    segment: Option<u64>,
    /// The `started` line, for [`Durable`].
    seq: Option<u64>,
}

/// A journaled record, to wait on until it survives what the journal promises: a request path
/// awaits [`Durable::durable`] before its answer's last byte.
pub struct Durable {
    shared: Option<Arc<Shared>>,
    seq: u64,
}

impl Durable {
    /// Returns once the record is on stable storage (`journal_sync = "machine"`); at once
    /// otherwise, the kernel having it already.
    pub async fn durable(self) {
        let Some(shared) = self.shared else {
            return;
        };
        let reached = async {
            match shared.sync {
                JournalSync::Process => shared.written.reached(self.seq).await,
                JournalSync::Machine => {
                    let mut synced = shared.synced.subscribe();
                    let _ = synced.wait_for(|&synced| synced >= self.seq).await;
                }
            }
        };
        if tokio::time::timeout(SYNC_WAIT_LIMIT, reached)
            .await
            .is_err()
        {
            tracing::error!(
                seq = self.seq,
                "the usage journal's write has not finished in 10 s; answering anyway"
            );
        }
    }
}

impl UsageSink {
    /// What to wait on for line `seq`: nothing when it is in the kernel already and that is
    /// all the journal promises.
    fn durable(&self, seq: Option<u64>) -> Durable {
        let shared = &self.shared;
        let wait = match (seq, shared.sync) {
            (None, _) => false,
            (Some(_), _) if !shared.journaling() => false,
            (Some(seq), JournalSync::Process) => seq > shared.written.get(),
            (Some(_), JournalSync::Machine) => true,
        };
        Durable {
            shared: wait.then(|| Arc::clone(shared)),
            seq: seq.unwrap_or(0),
        }
    }

    /// Journals that `call` is about to be sent upstream (with `durability = "memory"`,
    /// nothing). Should the process end before [`UsageSink::finish`], the next start records
    /// it as `interrupted`.
    pub fn start(&self, call: &CallStart) -> (CallTicket, Durable) {
        let mut ticket = CallTicket {
            request_id: call.request_id.clone(),
            segment: None,
            seq: None,
        };
        if !self.shared.journaling() {
            return (ticket, self.durable(None));
        }
        let line = match journal::encode(&Line::Started(call)) {
            Ok(line) => line,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a started record");
                return (ticket, self.durable(None));
            }
        };
        let shared = &self.shared;
        let mut state = shared.lock();
        match shared.append(&mut state, &line) {
            Ok((seq, segment)) => {
                *state.segments.entry(segment).or_insert(0) += 1;
                ticket.segment = Some(segment);
                ticket.seq = Some(seq);
            }
            Err(e) => shared.journal_outcome(&mut state, Err(&e)),
        }
        drop(shared.write_out(state));
        let durable = self.durable(ticket.seq);
        (ticket, durable)
    }

    /// How often a running stream should report what it delivered ([`UsageSink::progress`]).
    pub fn stream_checkpoint_interval(&self) -> Duration {
        self.shared.stream_checkpoint
    }

    /// Journals how much the call of `ticket` has delivered, so a crash bills it.
    pub fn progress(
        &self,
        ticket: &CallTicket,
        delivered_chars: u64,
        first_token: Option<Duration>,
    ) {
        if ticket.segment.is_none() {
            return;
        }
        let entry = Line::Progress {
            request_id: &ticket.request_id,
            progress: Progress {
                delivered_chars,
                first_token_ms: first_token.map(|d| d.as_secs_f64() * 1000.0),
            },
        };
        let Ok(line) = journal::encode(&entry) else {
            return;
        };
        let shared = &self.shared;
        let mut state = shared.lock();
        match shared.append(&mut state, &line) {
            Ok(_) => drop(shared.write_out(state)),
            Err(e) => shared.journal_outcome(&mut state, Err(&e)),
        }
    }

    /// Records the row of the call of `ticket`: journaled (with `durability = "journal"`) and
    /// queued for the database. Await the returned [`Durable`] before the answer's last byte.
    pub fn finish(&self, ticket: CallTicket, record: UsageRecord) -> Durable {
        self.hand_in(ticket.segment, record)
    }

    /// Records a row that had no [`UsageSink::start`] (a call refused before it was made, or
    /// a row from elsewhere).
    pub fn record(&self, record: UsageRecord) -> Durable {
        self.hand_in(None, record)
    }

    fn hand_in(&self, started_in: Option<u64>, record: UsageRecord) -> Durable {
        let shared = &self.shared;
        let line = if shared.journaling() {
            match journal::encode(&Line::Finished(&record)) {
                Ok(line) => Some(line),
                Err(e) => {
                    tracing::error!(error = %e, "cannot encode a usage row for the journal");
                    None
                }
            }
        } else {
            None
        };
        let mut state = shared.lock();
        if let Some(segment) = started_in
            && let Some(open) = state.segments.get_mut(&segment)
        {
            *open = open.saturating_sub(1);
        }
        let mut seq = None;
        if let Some(line) = line {
            match shared.append(&mut state, &line) {
                Ok((journaled, _)) => seq = Some(journaled),
                Err(e) => shared.journal_outcome(&mut state, Err(&e)),
            }
        }
        let memory_only = seq.is_none();
        let full = state.tail.len() >= shared.tail_capacity;
        if memory_only && (full || state.writer_stopped) {
            // Memory-only and no room (or no writer): the journal is where it can wait.
            match journal::encode(&Line::Finished(&record))
                .map_err(std::io::Error::other)
                .and_then(|line| shared.append(&mut state, &line))
            {
                Ok((journaled, _)) => {
                    shared.counters.spilled.fetch_add(1, Ordering::Relaxed);
                    if state.behind_since.is_none() {
                        state.behind_since = Some(Instant::now());
                    }
                    shared.wake.notify_one();
                    drop(shared.write_out(state));
                    return self.durable(Some(journaled));
                }
                Err(e) => {
                    shared.journal_outcome(&mut state, Err(&e));
                    if full && state.tail.len() >= shared.tail_capacity.saturating_mul(2) {
                        drop(state);
                        log_unwritten(&record, &StoreError::Io(e));
                        return self.durable(None);
                    }
                }
            }
        }
        shared.enqueue(&mut state, seq, record);
        drop(shared.write_out(state));
        self.durable(seq)
    }

    /// Waits until every row handed in before this call is in the database.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (ack, done) = oneshot::channel();
        {
            let mut state = self.shared.lock();
            if state.writer_stopped {
                return Err(StoreError::Connect(
                    "the usage writer has stopped".to_owned(),
                ));
            }
            let waiter = Waiter {
                through_seq: state.next_seq.saturating_sub(1),
                memory: state.memory_accepted,
                ack,
            };
            state.waiters.push(waiter);
        }
        self.shared.wake.notify_one();
        done.await
            .map_err(|_| StoreError::Connect("the usage writer has stopped".to_owned()))
    }

    /// The writer's counters now.
    pub fn stats(&self) -> WriterStats {
        let state = self.shared.lock();
        let queue_depth = state.tail.len() + state.in_hand.map_or(0, |(rows, _)| rows);
        drop(state);
        let c = &self.shared.counters;
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        WriterStats {
            queue_depth,
            rows_written: read(&c.rows_written),
            batches_written: read(&c.batches_written),
            write_errors: read(&c.write_errors),
            spilled: read(&c.spilled),
            replayed: read(&c.replayed),
            journal_errors: read(&c.journal_errors),
            interrupted: read(&c.interrupted),
            repaired: read(&c.repaired),
            dead_lettered: read(&c.dead_lettered),
        }
    }

    /// Whether the usage log keeps up: the age of the oldest row not yet in the database, and
    /// what is failing.
    pub fn health(&self) -> UsageHealth {
        let state = self.shared.lock();
        let oldest = [
            state.tail.front().map(|queued| queued.since),
            state.behind_since,
            state.in_hand.map(|(_, since)| since),
        ]
        .into_iter()
        .flatten()
        .min();
        let lag = oldest.map_or(Duration::ZERO, |since| since.elapsed());
        UsageHealth {
            lag,
            lagging: lag > self.shared.ready_max_lag,
            store_problem: state.store_problem.clone(),
            journal_problem: state.journal_problem.clone(),
        }
    }
}

/// The last resort, when even the journal cannot be written: the whole record at error level,
/// so it can be recovered from the logs (it holds no secret: the user is a hash).
fn log_unwritten(record: &UsageRecord, error: &StoreError) {
    let json = serde_json::to_string(record).unwrap_or_else(|e| e.to_string());
    tracing::error!(record = %json, %error, "usage record could not be written or journaled");
}

/// The background task that owns writing. Call [`UsageWriter::shutdown`] at exit.
#[derive(Debug)]
pub struct UsageWriter {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
    sync_thread: Option<std::thread::JoinHandle<()>>,
}

impl UsageWriter {
    /// Stops the writer once what is queued is in the database, or the shutdown timeout has
    /// passed (rows not written by then stay in the journal, for the next start).
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "usage writer task failed");
        }
        if let Some(thread) = self.sync_thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

/// Opens the journal in `config.journal_dir` — recording every call an earlier process left
/// unfinished as `interrupted`, and taking in an earlier version's spill file — and starts the
/// writer on the current Tokio runtime. It applies the journal in batches of up to
/// `batch_size`, each written when full or `flush_interval_ms` after its first row arrived.
///
/// Fails with [`StoreError::JournalInUse`] when another process (or another sink in this one)
/// holds the journal. A directory that cannot be created is not an error: rows then wait in
/// memory, and [`UsageSink::health`] says the journal is failing.
pub fn spawn_writer(
    store: UsageStore,
    config: &DatabaseConfig,
) -> Result<(UsageSink, UsageWriter), StoreError> {
    let dir = PathBuf::from(&config.journal_dir);
    let lock = lock_journal(&dir)?;
    let batch_size = config.batch_size.clamp(1, DatabaseConfig::MAX_BATCH_SIZE);
    let (synced, _) = watch::channel(0);
    let written = Mark::default();
    let shared = Arc::new(Shared {
        dir: dir.clone(),
        durability: config.durability,
        sync: config.journal_sync,
        batch_size,
        tail_capacity: config
            .queue_capacity
            .clamp(1, DatabaseConfig::MAX_QUEUE_CAPACITY),
        stream_checkpoint: Duration::from_millis(
            config
                .journal_stream_checkpoint_ms
                .clamp(10, DatabaseConfig::MAX_WAIT_MS),
        ),
        ready_max_lag: Duration::from_millis(
            config.ready_max_lag_ms.min(DatabaseConfig::MAX_WAIT_MS),
        ),
        state: Mutex::new(State {
            active: None,
            next_seq: 1,
            buffer: Vec::new(),
            writing: false,
            retired: Vec::new(),
            directory_changed: false,
            segments: BTreeMap::new(),
            journal_problem: None,
            tail: VecDeque::new(),
            behind_since: None,
            applied_through: 0,
            in_hand: None,
            memory_accepted: 0,
            memory_applied: 0,
            waiters: Vec::new(),
            store_problem: None,
            writer_stopped: false,
            sync_stop: false,
        }),
        wake: Notify::new(),
        sync_wanted: Condvar::new(),
        synced,
        written,
        counters: Counters::default(),
        _lock: lock,
    });
    recover(&shared, Path::new(&config.spill_path));
    let sync_thread = (config.durability == Durability::Journal
        && config.journal_sync == JournalSync::Machine)
        .then(|| {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("usage-journal-sync".to_owned())
                .spawn(move || group_commit(&shared))
                .map_err(|e| tracing::error!(error = %e, "cannot start the journal's sync thread"))
                .ok()
        })
        .flatten();
    let (stop, stop_rx) = oneshot::channel();
    let worker = Worker {
        shared: Arc::clone(&shared),
        store,
        dead_letters: DeadLetters::new(&config.dead_letter_path),
        flush_interval: Duration::from_millis(
            config.flush_interval_ms.min(DatabaseConfig::MAX_WAIT_MS),
        ),
        shutdown_timeout: Duration::from_millis(
            config.shutdown_timeout_ms.min(DatabaseConfig::MAX_WAIT_MS),
        ),
        stop: stop_rx,
        deadline: None,
        checkpointed: 0,
        last_checkpoint: None,
    };
    let task = tokio::spawn(worker.run());
    Ok((
        UsageSink { shared },
        UsageWriter {
            stop,
            task,
            sync_thread,
        },
    ))
}

/// Takes the journal directory's lock file, so two processes never append to one journal.
fn lock_journal(dir: &Path) -> Result<Option<File>, StoreError> {
    let opened = std::fs::create_dir_all(dir).and_then(|()| {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("LOCK"))
    });
    let file = match opened {
        Ok(file) => file,
        Err(error) => {
            // Reported by the first append, which fails the same way.
            tracing::debug!(%error, dir = %dir.display(), "cannot open the journal's lock file");
            return Ok(None);
        }
    };
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(StoreError::JournalInUse(dir.display().to_string()))
        }
        Err(std::fs::TryLockError::Error(error)) => {
            tracing::warn!(%error, dir = %dir.display(),
                "cannot lock the usage journal (the filesystem may not support locks); two processes must not share it");
            Ok(Some(file))
        }
    }
}

/// Reads what an earlier process left in the journal: where numbering goes on, which rows
/// the database may not have, and which calls never finished (each journaled now as an
/// `interrupted` row). An earlier version's spill file is journaled too, then removed.
fn recover(shared: &Shared, spill: &Path) {
    let checkpoint = journal::read_checkpoint(&shared.dir);
    let scan = match journal::scan(&shared.dir, checkpoint) {
        Ok(scan) => scan,
        Err(error) => {
            tracing::error!(%error, dir = %shared.dir.display(),
                "cannot read the usage journal; what it holds is applied at a later start");
            let mut state = shared.lock();
            state.journal_problem = Some(error.to_string());
            // Never reuse numbers that may be on disk: start past anything plausible.
            state.next_seq = checkpoint + 1;
            return;
        }
    };
    let mut state = shared.lock();
    state.next_seq = scan.next_seq;
    shared.written.set(scan.next_seq.saturating_sub(1));
    state.applied_through = checkpoint.min(scan.next_seq.saturating_sub(1));
    state.segments = scan.segments.iter().map(|&first| (first, 0)).collect();
    let mut behind = scan.unapplied > 0;
    if !scan.unfinished.is_empty() {
        tracing::warn!(
            calls = scan.unfinished.len(),
            "calls were in flight when the last process ended; recording them as interrupted"
        );
    }
    for (call, progress) in &scan.unfinished {
        let row = call.interrupted(*progress);
        match journal::encode(&Line::Finished(&row))
            .map_err(std::io::Error::other)
            .and_then(|line| shared.append(&mut state, &line))
        {
            Ok(_) => {
                behind = true;
                shared.counters.interrupted.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                shared.journal_outcome(&mut state, Err(&e));
                state.memory_accepted += 1;
                state.tail.push_back(Queued {
                    seq: None,
                    record: row,
                    since: Instant::now(),
                });
                shared.counters.interrupted.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    state = shared.write_out(state);
    let (mut state, taken) = take_in_spill_file(shared, state, spill);
    match taken {
        Ok(0) => {}
        Ok(taken) => {
            tracing::info!(rows = taken, path = %spill.display(),
                "journaled the rows of an earlier version's spill file");
            behind = true;
        }
        Err(error) => tracing::error!(%error, path = %spill.display(),
            "cannot take in the old spill file; it is left where it is"),
    }
    if behind {
        state.behind_since = Some(Instant::now());
    }
}

/// Journals every record of an earlier version's spill file, then removes it (only once they
/// are written and synced). Unreadable lines are moved to `<spill>.corrupt`.
fn take_in_spill_file<'a>(
    shared: &'a Shared,
    state: MutexGuard<'a, State>,
    spill: &Path,
) -> (MutexGuard<'a, State>, Result<u64, StoreError>) {
    let file = match File::open(spill) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (state, Ok(0)),
        Err(e) => return (state, Err(e.into())),
    };
    let (state, taken) = journal_spilled_lines(shared, state, file, spill);
    let taken = taken.and_then(|taken| {
        if let Some(problem) = &state.journal_problem {
            return Err(StoreError::Io(std::io::Error::other(problem.clone())));
        }
        if let Some(active) = &state.active {
            active.file.sync_data()?;
        }
        std::fs::remove_file(spill)?;
        Ok(taken)
    });
    (state, taken)
}

/// Appends the records of an old spill file to the journal, a line at a time and written out
/// every thousand (such a file may be far larger than memory should hold); unreadable lines
/// are moved aside.
fn journal_spilled_lines<'a>(
    shared: &'a Shared,
    mut state: MutexGuard<'a, State>,
    file: File,
    spill: &Path,
) -> (MutexGuard<'a, State>, Result<u64, StoreError>) {
    let mut aside = spill.as_os_str().to_owned();
    aside.push(".corrupt");
    let mut taken = 0;
    for line in std::io::BufRead::lines(std::io::BufReader::new(file)) {
        let line = match line {
            Ok(line) => line,
            Err(e) => return (shared.write_out(state), Err(e.into())),
        };
        if line.trim().is_empty() {
            continue;
        }
        let journaled = match serde_json::from_str::<UsageRecord>(&line) {
            Ok(record) => journal::encode(&Line::Finished(&record)).and_then(|entry| {
                shared.append(&mut state, &entry)?;
                taken += 1;
                Ok(())
            }),
            Err(e) => {
                tracing::error!(error = %e, "unreadable line in the old spill file; moved aside");
                journal::append_aside(Path::new(&aside), &format!("{line}\n")).map_err(Into::into)
            }
        };
        if let Err(e) = journaled {
            return (shared.write_out(state), Err(e));
        }
        if taken % 1_000 == 0 {
            state = shared.write_out(state);
        }
    }
    (shared.write_out(state), Ok(taken))
}

/// `journal_sync = "machine"`: one `fsync` for every record appended while the previous one
/// ran, so concurrent calls share the wait.
fn group_commit(shared: &Shared) {
    let mut synced = 0;
    loop {
        let mut state = shared.lock();
        // `written` is set under the state lock, so a change cannot slip past this wait.
        while shared.written.get() <= synced && !state.sync_stop {
            state = shared
                .sync_wanted
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        let target = shared.written.get();
        // Every line through `target` is in a retired segment or the active one: rotation
        // happens only between writes.
        let mut files = std::mem::take(&mut state.retired);
        files.extend(state.active.as_ref().map(|active| Arc::clone(&active.file)));
        let directory = std::mem::take(&mut state.directory_changed);
        let stopping = state.sync_stop;
        drop(state);
        if target > synced {
            let directory = directory
                .then(|| File::open(&shared.dir).and_then(|dir| dir.sync_all()))
                .into_iter();
            let synced_files = files.iter().map(|file| file.sync_data());
            for error in directory.chain(synced_files).filter_map(Result::err) {
                shared
                    .counters
                    .journal_errors
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(%error, "cannot fsync the usage journal");
            }
            synced = target;
            shared.synced.send_replace(synced);
        }
        if stopping {
            return;
        }
    }
}

/// What the writer does next.
enum Work {
    /// Rows from the memory queue.
    Batch(Vec<Queued>),
    /// Rows in the journal between these sequence numbers (exclusive), not in memory.
    Disk { after: u64, before: u64 },
}

struct Worker {
    shared: Arc<Shared>,
    store: UsageStore,
    dead_letters: DeadLetters,
    flush_interval: Duration,
    shutdown_timeout: Duration,
    stop: oneshot::Receiver<()>,
    /// Set once shutdown is asked for: past it, a failing batch is left in the journal.
    deadline: Option<Instant>,
    /// The sequence number the checkpoint file holds.
    checkpointed: u64,
    /// When the checkpoint was last written.
    last_checkpoint: Option<Instant>,
}

impl Worker {
    async fn run(mut self) {
        loop {
            if self.deadline.is_none() {
                tokio::select! {
                    biased;
                    _ = &mut self.stop => self.begin_shutdown(),
                    () = self.shared.wake.notified() => {}
                    () = tokio::time::sleep(self.flush_interval) => {}
                }
            }
            // Once shutdown is asked for, one pass is all: it takes everything, and it stops
            // early only because the deadline would pass (a second pass would find the rows
            // it left in the journal and must not count them as written).
            let _all_written = self.drain().await;
            if self.deadline.is_some() {
                break;
            }
        }
        self.stop_writing();
    }

    fn begin_shutdown(&mut self) {
        self.deadline
            .get_or_insert_with(|| Instant::now() + self.shutdown_timeout);
    }

    fn past_deadline(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Applies what is due: at a wake-up everything waiting, then only full batches (rows that
    /// arrive while a batch is written wait for theirs to fill, or for the next wake-up, so a
    /// busy server writes few large batches rather than many small ones). Then checkpoints and
    /// answers the flushes that are satisfied. True when nothing due is left.
    async fn drain(&mut self) -> bool {
        let mut take_any = true;
        loop {
            let Some(work) = self.next_work(take_any || self.deadline.is_some()) else {
                let asked = self.deadline.is_some() || !self.shared.lock().waiters.is_empty();
                let due = self
                    .last_checkpoint
                    .is_none_or(|last| last.elapsed() >= CHECKPOINT_INTERVAL);
                if asked || due {
                    self.last_checkpoint = Some(Instant::now());
                    self.checkpoint().await;
                }
                answer_flushes(&mut self.shared.lock());
                return true;
            };
            take_any = false;
            let done = match work {
                Work::Batch(batch) => self.write_batch(batch).await,
                Work::Disk { after, before } => self.apply_from_disk(after, before).await,
            };
            if !done {
                return false;
            }
        }
    }

    /// Takes the next batch off the memory queue — any rows when `take_any`, else only a full
    /// batch (or any, when rows are behind on disk or a flush waits) — or the next stretch of
    /// the journal to read back; `None` when nothing is due.
    fn next_work(&self, take_any: bool) -> Option<Work> {
        let shared = &self.shared;
        let mut state = shared.lock();
        if !state.tail.is_empty() {
            let due = take_any
                || state.tail.len() >= shared.batch_size.min(shared.tail_capacity)
                || state.behind_since.is_some()
                || !state.waiters.is_empty();
            if !due {
                return None;
            }
            let take = state.tail.len().min(shared.batch_size);
            let batch: Vec<Queued> = state.tail.drain(..take).collect();
            let oldest = batch
                .iter()
                .map(|q| q.since)
                .min()
                .unwrap_or_else(Instant::now);
            state.in_hand = Some((batch.len(), oldest));
            return Some(Work::Batch(batch));
        }
        if let Some(since) = state.behind_since.take() {
            // Later rows queue in memory again; these are read back from disk.
            state.in_hand = Some((0, since));
            return Some(Work::Disk {
                after: state.applied_through,
                before: state.next_seq,
            });
        }
        // Nothing waits: every finished line so far is in the database.
        state.applied_through = state.applied_through.max(state.next_seq.saturating_sub(1));
        None
    }

    /// Writes a batch from memory, retrying while the database fails. False when shutdown's
    /// deadline passed first (the rows are then put in the journal, if not there already).
    async fn write_batch(&mut self, batch: Vec<Queued>) -> bool {
        let through = batch.iter().filter_map(|q| q.seq).max();
        let memory = batch.iter().filter(|q| q.seq.is_none()).count() as u64;
        let (places, records): (Vec<(Option<u64>, Instant)>, Vec<UsageRecord>) = batch
            .into_iter()
            .map(|q| ((q.seq, q.since), q.record))
            .unzip();
        let records = Arc::new(records);
        if !self.apply_retrying(&records).await {
            let records = Arc::try_unwrap(records).unwrap_or_else(|shared| (*shared).clone());
            let batch = places
                .into_iter()
                .zip(records)
                .map(|((seq, since), record)| Queued { seq, record, since })
                .collect();
            self.leave_in_journal(batch);
            // The journaled rows of the batch are not in the database: nothing may count them
            // as applied (and checkpoint past them) before they are read back.
            let mut state = self.shared.lock();
            let since = Instant::now();
            state.behind_since.get_or_insert(since);
            return false;
        }
        self.counters_after_commit(records.len());
        {
            let mut state = self.shared.lock();
            state.in_hand = None;
            if let Some(through) = through {
                state.applied_through = state.applied_through.max(through);
            }
            state.memory_applied += memory;
        }
        true
    }

    /// Reads the journal's `finished` lines after `after` and before `before` and applies
    /// them in batches. False when shutdown's deadline passed first.
    async fn apply_from_disk(&mut self, after: u64, before: u64) -> bool {
        // Lines still in the buffer are not in the file yet: wait for the thread writing them.
        let in_file = self.shared.written.reached(before.saturating_sub(1));
        if tokio::time::timeout(SYNC_WAIT_LIMIT, in_file)
            .await
            .is_err()
        {
            tracing::error!("journal lines to read back were not written within 10 s; will retry");
            self.shared.journal_read_failed(after);
            return self.wait_or_give_up().await;
        }
        let mut from = after;
        while from + 1 < before {
            let dir = self.shared.dir.clone();
            let batch_size = self.shared.batch_size;
            let read =
                tokio::task::spawn_blocking(move || read_finished(&dir, from, before, batch_size))
                    .await;
            let (records, through) = match read {
                Ok(Ok(read)) => read,
                Ok(Err(error)) => {
                    tracing::error!(%error, "cannot read the usage journal back; will retry");
                    self.shared.journal_read_failed(after);
                    return self.wait_or_give_up().await;
                }
                Err(error) => {
                    tracing::error!(%error, "journal read task failed");
                    self.shared.journal_read_failed(after);
                    return self.wait_or_give_up().await;
                }
            };
            let records = Arc::new(records);
            if !records.is_empty() {
                if !self.apply_retrying(&records).await {
                    self.shared.journal_read_failed(from);
                    return false;
                }
                self.counters_after_commit(records.len());
                self.shared
                    .counters
                    .replayed
                    .fetch_add(records.len() as u64, Ordering::Relaxed);
            }
            from = through;
            {
                let mut state = self.shared.lock();
                state.applied_through = state.applied_through.max(through);
            }
        }
        self.shared.lock().in_hand = None;
        true
    }

    async fn wait_or_give_up(&mut self) -> bool {
        if self.past_deadline() {
            return false;
        }
        self.wait_before_retry(MAX_RETRY_DELAY).await;
        true
    }

    fn counters_after_commit(&self, rows: usize) {
        let c = &self.shared.counters;
        c.rows_written.fetch_add(rows as u64, Ordering::Relaxed);
        c.batches_written.fetch_add(1, Ordering::Relaxed);
    }

    /// Applies `records`, retrying with backoff while the database fails; false once
    /// shutdown's deadline would pass.
    async fn apply_retrying(&mut self, records: &Arc<Vec<UsageRecord>>) -> bool {
        let mut delay = FIRST_RETRY_DELAY;
        loop {
            let store = self.store.clone();
            let rows = Arc::clone(records);
            let dead_letters = self.dead_letters.clone();
            let outcome =
                tokio::task::spawn_blocking(move || apply(&store, &rows, &dead_letters)).await;
            let error = match outcome {
                Ok(Ok(applied)) => {
                    let c = &self.shared.counters;
                    c.repaired.fetch_add(applied.repaired, Ordering::Relaxed);
                    c.dead_lettered
                        .fetch_add(applied.dead_lettered, Ordering::Relaxed);
                    if self.shared.lock().store_problem.take().is_some() {
                        tracing::info!("the usage database takes rows again");
                    }
                    return true;
                }
                Ok(Err(e)) => e.to_string(),
                Err(e) => format!("write task failed: {e}"),
            };
            self.shared
                .counters
                .write_errors
                .fetch_add(1, Ordering::Relaxed);
            let first = {
                let mut state = self.shared.lock();
                state.store_problem.replace(error.clone()).is_none()
            };
            if self.deadline.is_some_and(|d| Instant::now() + delay > d) {
                tracing::error!(%error, rows = records.len(),
                    "database still failing at shutdown; the rows stay in the journal for the next start");
                return false;
            }
            if first {
                tracing::error!(%error, rows = records.len(), "usage rows not written; retrying until the database takes them");
            } else {
                tracing::warn!(%error, rows = records.len(), retry_in_ms = delay.as_millis() as u64,
                    "usage batch not written; will retry");
            }
            self.wait_before_retry(delay).await;
            delay = (delay * 2).min(MAX_RETRY_DELAY);
        }
    }

    /// Sleeps `delay`, noticing a shutdown request meanwhile.
    async fn wait_before_retry(&mut self, delay: Duration) {
        if self.deadline.is_some() {
            tokio::time::sleep(delay).await;
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = &mut self.stop => self.begin_shutdown(),
        }
    }

    /// Rows of a batch not written by shutdown's deadline: journaled ones are there already;
    /// memory-only ones are journaled now.
    fn leave_in_journal(&self, batch: Vec<Queued>) {
        let shared = &self.shared;
        let mut state = shared.lock();
        state.in_hand = None;
        for queued in batch.into_iter().filter(|q| q.seq.is_none()) {
            let journaled = journal::encode(&Line::Finished(&queued.record))
                .map_err(std::io::Error::other)
                .and_then(|line| shared.append(&mut state, &line));
            match journaled {
                Ok(_) => {
                    shared.counters.spilled.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => log_unwritten(&queued.record, &StoreError::Io(e)),
            }
        }
        drop(shared.write_out(state));
    }

    /// Records how far the journal is applied and deletes the segments no longer needed (when
    /// that moved since the last time).
    async fn checkpoint(&mut self) {
        if self.shared.durability == Durability::Memory && self.shared.lock().segments.is_empty() {
            return;
        }
        let deletable = {
            let mut state = self.shared.lock();
            let active = state.active.as_ref().map(|a| a.first_seq);
            let applied = state.applied_through;
            let firsts: Vec<u64> = state.segments.keys().copied().collect();
            let mut deletable = Vec::new();
            for (i, &first) in firsts.iter().enumerate() {
                let end = firsts.get(i + 1).copied().unwrap_or(state.next_seq);
                let open = state.segments.get(&first).copied().unwrap_or(0);
                if Some(first) != active && open == 0 && end.saturating_sub(1) <= applied {
                    deletable.push(first);
                }
            }
            for first in &deletable {
                state.segments.remove(first);
            }
            (applied, deletable)
        };
        let (applied, deletable) = deletable;
        if applied == self.checkpointed && deletable.is_empty() {
            return;
        }
        self.checkpointed = applied;
        let dir = self.shared.dir.clone();
        let outcome = tokio::task::spawn_blocking(move || -> std::io::Result<bool> {
            if std::fs::metadata(&dir).is_err() {
                return Ok(false);
            }
            journal::write_checkpoint(&dir, applied)?;
            for first in deletable {
                match std::fs::remove_file(journal::segment_path(&dir, first)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(true)
        })
        .await;
        match outcome {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => {
                // Someone removed the directory: appends still land in the open, unlinked
                // segment, where no restart would find them. Begin a new segment (and the
                // directory) at the next append; the rows in memory still reach the database.
                let mut state = self.shared.lock();
                if state.active.take().is_some() || state.journal_problem.is_none() {
                    tracing::error!(dir = %self.shared.dir.display(),
                        "the usage journal's directory was removed; starting a new one");
                }
                state.journal_problem = Some("the journal directory was removed".to_owned());
            }
            Ok(Err(error)) => tracing::warn!(%error,
                "cannot checkpoint the usage journal; rows may be applied again (harmless) at the next start"),
            Err(error) => tracing::warn!(%error, "journal checkpoint task failed"),
        }
    }

    /// Shutdown is done: rows still in memory and not journaled are journaled, and later ones
    /// go straight there.
    fn stop_writing(&mut self) {
        let shared = &self.shared;
        let mut state = shared.lock();
        state.writer_stopped = true;
        state.sync_stop = true;
        shared.sync_wanted.notify_all();
        let left: Vec<Queued> = state.tail.drain(..).collect();
        let behind = state.behind_since.is_some();
        drop(state);
        let journaled_left = left.iter().filter(|q| q.seq.is_some()).count();
        if journaled_left > 0 || behind {
            tracing::warn!(
                rows = journaled_left,
                "usage rows not yet in the database at shutdown stay in the journal; the next start applies them"
            );
        }
        self.leave_in_journal(left);
        // Flushes still waiting will not be answered now: dropping them says so.
        self.shared.lock().waiters.clear();
    }
}

/// Answers every flush whose rows are all in the database.
fn answer_flushes(state: &mut State) {
    let applied = state.applied_through;
    let memory = state.memory_applied;
    let (answered, waiting): (Vec<Waiter>, Vec<Waiter>) = std::mem::take(&mut state.waiters)
        .into_iter()
        .partition(|w| w.through_seq <= applied && w.memory <= memory);
    state.waiters = waiting;
    for waiter in answered {
        let _ = waiter.ack.send(());
    }
}

/// Reads up to `limit` `finished` records after `after` and before `before`; returns them and
/// the sequence number read through.
fn read_finished(
    dir: &Path,
    after: u64,
    before: u64,
    limit: usize,
) -> std::io::Result<(Vec<UsageRecord>, u64)> {
    let mut records = Vec::new();
    let mut through = after;
    let segments = journal::list_segments(dir)?;
    for (i, &first) in segments.iter().enumerate() {
        let end = segments.get(i + 1).copied().unwrap_or(u64::MAX);
        if end <= after + 1 || first >= before {
            continue;
        }
        let mut full = false;
        journal::read_segment(dir, first, |seq, line| {
            if seq <= after {
                return true;
            }
            if seq >= before {
                return false;
            }
            match journal::parse(line) {
                ReadLine::Entry(Entry::Finished(record)) => records.push(*record),
                ReadLine::Entry(_) => {}
                // Copied aside by the scan at start; a line written by this process always
                // parses.
                ReadLine::Unreadable(error) => {
                    tracing::error!(seq, %error, "unreadable journal line skipped");
                }
            }
            through = seq;
            full = records.len() >= limit;
            !full
        })?;
        if full {
            return Ok((records, through));
        }
    }
    // Everything before `before` was read (lines past a torn end do not exist).
    Ok((records, before.saturating_sub(1).max(through)))
}

/// What applying a batch did beyond inserting.
#[derive(Debug, Default)]
struct Applied {
    repaired: u64,
    dead_lettered: u64,
}

/// Inserts `records`. A record the database refuses for its content is stored repaired, or
/// moved to the dead-letter file, so it never holds up the records around it; a database that
/// is failing (or a file deleted under it) is an error, and the whole batch is retried.
fn apply(
    store: &UsageStore,
    records: &[UsageRecord],
    dead_letters: &DeadLetters,
) -> Result<Applied, StoreError> {
    let isolated = store.insert_isolating(records)?;
    for request_id in &isolated.repaired {
        tracing::warn!(%request_id, "usage row refused for its content; stored with control characters escaped");
    }
    // Logged at error level, record by record, by the dead-letter file itself.
    dead_letters.append(&isolated.rejected)?;
    Ok(Applied {
        repaired: isolated.repaired.len() as u64,
        dead_lettered: isolated.rejected.len() as u64,
    })
}

#[cfg(test)]
mod tests {
    use core_domain::Usd;
    use diesel::connection::SimpleConnection;
    use diesel::{Connection, SqliteConnection};

    use super::*;
    use crate::Rates;

    fn config(dir: &tempfile::TempDir) -> DatabaseConfig {
        DatabaseConfig {
            url: format!("sqlite://{}", dir.path().join("usage.db").display()),
            batch_size: 10,
            flush_interval_ms: 50,
            queue_capacity: 4,
            shutdown_timeout_ms: 300,
            ..DatabaseConfig::default()
        }
        .with_files_in(dir.path())
    }

    fn record(i: usize) -> UsageRecord {
        crate::fixture::usage_record(&format!("req-{i}"))
    }

    fn start_of(record: &UsageRecord) -> CallStart {
        CallStart {
            request_id: record.request_id.clone(),
            client_request_id: None,
            timestamp: record.timestamp,
            user_email_hash: record.user_email_hash.clone(),
            specialist_id: record.specialist_id.clone(),
            specialist_name: record.specialist_name.clone(),
            provider: record.provider,
            model: record.model.clone(),
            streamed: record.streamed,
            end_user: None,
            api_key: record.api_key.clone(),
            door: record.door,
            prompt_tokens: 800,
            rates: Some(Rates {
                input_per_1m: Usd::from_nanos(2_500_000_000),
                output_per_1m: Usd::from_nanos(10_000_000_000),
            }),
        }
    }

    fn segments(dir: &tempfile::TempDir) -> Vec<u64> {
        journal::list_segments(&dir.path().join("journal")).unwrap()
    }

    /// Ends a writer the way a killed process does: nothing after this point runs (and, as
    /// at a process's end, the journal's lock is let go).
    async fn crash(sink: UsageSink, writer: UsageWriter) {
        writer.task.abort();
        let _ = writer.task.await;
        drop(sink);
    }

    #[tokio::test]
    async fn flush_commits_everything_handed_in_before_it_in_both_modes() {
        for durability in [Durability::Journal, Durability::Memory] {
            let dir = tempfile::tempdir().unwrap();
            let config = DatabaseConfig {
                durability,
                ..config(&dir)
            };
            let store = UsageStore::connect(&config).unwrap();
            let (sink, writer) = spawn_writer(store.clone(), &config).unwrap();
            // More rows than the queue holds: the overflow waits in the journal.
            for i in 0..25 {
                sink.record(record(i)).durable().await;
            }
            sink.flush().await.unwrap();
            assert_eq!(store.count_rows().unwrap(), 25, "{durability:?}");
            let stats = sink.stats();
            assert!(stats.spilled > 0, "{durability:?}: a queue of 4 overflowed");
            assert_eq!(stats.spilled, stats.replayed, "{durability:?}: {stats:?}");
            assert_eq!(stats.write_errors, 0);
            assert_eq!(sink.health().lag, Duration::ZERO);
            writer.shutdown().await;
        }
    }

    #[tokio::test]
    async fn a_crash_loses_no_finished_row_and_records_unfinished_calls_as_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let config = DatabaseConfig {
            // Long enough that nothing is written before the crash.
            flush_interval_ms: 60_000,
            batch_size: 1_000,
            queue_capacity: 1_000,
            ..config(&dir)
        };
        let store = UsageStore::connect(&config).unwrap();
        let (sink, writer) = spawn_writer(store.clone(), &config).unwrap();
        // A call that fell back twice: its attempts live only in the journal until the restart.
        let answered = crate::fixture::fallback_record("req-1");
        let (ticket, started) = sink.start(&start_of(&answered));
        started.durable().await;
        sink.finish(ticket, answered.clone()).durable().await;
        let cut = record(2);
        let (ticket, _) = sink.start(&start_of(&cut));
        sink.progress(&ticket, 400, Some(Duration::from_millis(90)));
        let never = record(3);
        let (_ticket, _) = sink.start(&start_of(&never));
        crash(sink, writer).await;
        assert_eq!(
            store.count_rows().unwrap(),
            0,
            "nothing reached the database"
        );

        // Two restarts: each row arrives once.
        for _ in 0..2 {
            let (sink, writer) = spawn_writer(store.clone(), &config).unwrap();
            sink.flush().await.unwrap();
            writer.shutdown().await;
        }
        let rows = store.all_rows().unwrap();
        assert_eq!(rows.len(), 3);
        let row = |id: &str| store.find_by_request_id(id).unwrap().unwrap();
        assert_eq!(row("req-1").error_code, None);
        let call = |id: &str| {
            store
                .call(&core_domain::RequestId::parse(id).unwrap())
                .unwrap()
                .unwrap()
        };
        let fell_back = call("req-1");
        assert_eq!(fell_back.row.attempts, 3);
        assert_eq!(fell_back.attempts, answered.attempt_details);
        for interrupted in ["req-2", "req-3"] {
            let interrupted = call(interrupted);
            assert_eq!(interrupted.row.attempts, 1);
            assert!(interrupted.attempts.is_empty());
        }
        let cut = row("req-2");
        assert_eq!(cut.error_code.as_deref(), Some("interrupted"));
        assert_eq!((cut.input_tokens, cut.output_tokens), (800, 100));
        assert!(cut.tokens_estimated);
        // 800 × $2.50/M + 100 × $10/M.
        assert!((cut.estimated_cost_usd - 0.003).abs() < 1e-12, "{cut:?}");
        assert_eq!(cut.ttft_ms, Some(90.0));
        let never = row("req-3");
        assert_eq!(never.error_code.as_deref(), Some("interrupted"));
        assert_eq!((never.input_tokens, never.output_tokens), (800, 0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_calls_share_writes_and_every_line_keeps_its_place() {
        let dir = tempfile::tempdir().unwrap();
        let config = DatabaseConfig {
            flush_interval_ms: 60_000,
            batch_size: 100_000,
            queue_capacity: 100_000,
            ..config(&dir)
        };
        let store = UsageStore::connect(&config).unwrap();
        let (sink, writer) = spawn_writer(store.clone(), &config).unwrap();
        let tasks: Vec<_> = (0..8)
            .map(|task| {
                let sink = sink.clone();
                tokio::spawn(async move {
                    for i in 0..200 {
                        let row = record(task * 1_000 + i);
                        let (ticket, started) = sink.start(&start_of(&row));
                        started.durable().await;
                        sink.progress(&ticket, 10, None);
                        sink.finish(ticket, row).durable().await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        // Every line reached the file, in the order of its number: the scan counts 3 lines a
        // call and finds no call unfinished.
        {
            let state = sink.shared.lock();
            assert_eq!(sink.shared.written.get(), state.next_seq - 1);
            assert!(state.buffer.is_empty() && !state.writing);
        }
        crash(sink, writer).await;
        let scan = journal::scan(&dir.path().join("journal"), 0).unwrap();
        assert_eq!(scan.next_seq, 1 + 3 * 1_600);
        assert!(scan.unfinished.is_empty());
        assert_eq!(scan.unapplied, 1_600);
        let (sink, writer) = spawn_writer(store.clone(), &config).unwrap();
        sink.flush().await.unwrap();
        assert_eq!(sink.stats().interrupted, 0);
        writer.shutdown().await;
        assert_eq!(store.count_rows().unwrap(), 1_600);
    }

    #[tokio::test]
    async fn a_call_finished_after_a_restart_is_not_interrupted_twice() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(&dir);
        let store = UsageStore::connect(&config).unwrap();
        let (sink, writer) = spawn_writer(store.clone(), &config).unwrap();
        let (_ticket, _) = sink.start(&start_of(&record(7)));
        crash(sink, writer).await;
        let (sink, writer) = spawn_writer(store.clone(), &config).unwrap();
        assert_eq!(sink.stats().interrupted, 1);
        sink.flush().await.unwrap();
        writer.shutdown().await;
        drop(sink);
        let (sink, writer) = spawn_writer(store.clone(), &config).unwrap();
        assert_eq!(sink.stats().interrupted, 0, "the first restart finished it");
        sink.flush().await.unwrap();
        writer.shutdown().await;
        assert_eq!(store.count_rows().unwrap(), 1);
    }

    #[tokio::test]
    async fn applied_segments_are_deleted_but_one_holding_a_running_call_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let config = DatabaseConfig {
            queue_capacity: 10_000,
            ..config(&dir)
        };
        let store = UsageStore::connect(&config).unwrap();
        let (sink, writer) = spawn_writer(store.clone(), &config).unwrap();
        let running = record(0);
        let (running_ticket, _) = sink.start(&start_of(&running));
        // Start a new segment after the running call's, as a full one would.
        sink.shared.lock().active.as_mut().unwrap().bytes = SEGMENT_BYTES;
        for i in 1..=5 {
            sink.record(record(i));
        }
        sink.shared.lock().active.as_mut().unwrap().bytes = SEGMENT_BYTES;
        sink.record(record(6));
        sink.flush().await.unwrap();
        // The running call's segment stays; the middle one, all applied, is gone; the active
        // one stays.
        let kept = segments(&dir);
        assert_eq!(kept.len(), 2, "{kept:?}");
        assert_eq!(kept[0], 1, "the running call's segment");
        sink.finish(running_ticket, running);
        sink.flush().await.unwrap();
        assert_eq!(segments(&dir).len(), 1, "only the active segment is left");
        assert_eq!(store.count_rows().unwrap(), 7);
        writer.shutdown().await;
    }

    #[tokio::test]
    async fn an_old_spill_file_is_taken_in_once_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(&dir);
        let store = UsageStore::connect(&config).unwrap();
        let lines: String = (0..3)
            .map(|i| serde_json::to_string(&record(i)).unwrap() + "\n")
            .collect();
        std::fs::write(&config.spill_path, format!("{lines}{{\"half a line\n")).unwrap();
        let (sink, writer) = spawn_writer(store.clone(), &config).unwrap();
        sink.flush().await.unwrap();
        writer.shutdown().await;
        assert_eq!(store.count_rows().unwrap(), 3);
        assert!(!Path::new(&config.spill_path).exists());
        let aside = std::fs::read_to_string(format!("{}.corrupt", config.spill_path)).unwrap();
        assert!(aside.contains("half a line"));
    }

    #[tokio::test]
    async fn a_row_handed_in_after_shutdown_waits_in_the_journal_for_the_next_start() {
        for durability in [Durability::Journal, Durability::Memory] {
            let dir = tempfile::tempdir().unwrap();
            let config = DatabaseConfig {
                durability,
                ..config(&dir)
            };
            let store = UsageStore::connect(&config).unwrap();
            let (sink, writer) = spawn_writer(store.clone(), &config).unwrap();
            writer.shutdown().await;
            // A call cut short at shutdown hands in its row late.
            sink.record(record(1));
            assert!(sink.flush().await.is_err(), "the writer has stopped");
            assert_eq!(store.count_rows().unwrap(), 0);
            // The process ends.
            drop(sink);
            let (sink, writer) = spawn_writer(store.clone(), &config).unwrap();
            sink.flush().await.unwrap();
            assert_eq!(store.count_rows().unwrap(), 1, "{durability:?}");
            writer.shutdown().await;
        }
    }

    #[tokio::test]
    async fn machine_sync_answers_once_the_record_is_synced() {
        let dir = tempfile::tempdir().unwrap();
        let config = DatabaseConfig {
            journal_sync: JournalSync::Machine,
            ..config(&dir)
        };
        let store = UsageStore::connect(&config).unwrap();
        let (sink, writer) = spawn_writer(store.clone(), &config).unwrap();
        let mut waits = Vec::new();
        for i in 0..20 {
            waits.push(sink.record(record(i)));
        }
        let last = waits.last().map(|d| d.seq).unwrap();
        for wait in waits {
            tokio::time::timeout(Duration::from_secs(10), wait.durable())
                .await
                .unwrap();
        }
        assert!(*sink.shared.synced.borrow() >= last);
        sink.flush().await.unwrap();
        assert_eq!(store.count_rows().unwrap(), 20);
        writer.shutdown().await;
    }

    /// A read-back of the journal that fails (too many open files, an I/O error) is retried;
    /// rows queued in memory meanwhile come after the stretch not yet read, so writing them
    /// first must not mark that stretch applied.
    #[tokio::test]
    async fn rows_queued_while_a_journal_read_back_fails_leave_the_unread_rows_to_be_read() {
        let dir = tempfile::tempdir().unwrap();
        let config = DatabaseConfig {
            // The writer moves only when a flush asks it to.
            flush_interval_ms: DatabaseConfig::MAX_WAIT_MS,
            queue_capacity: 100,
            ..config(&dir)
        };
        let store = UsageStore::connect(&config).unwrap();
        let (sink, writer) = spawn_writer(store.clone(), &config).unwrap();
        // The first row is on disk only, and the writer has just taken the stretch holding it
        // to read back (what `next_work` does after an overflow).
        sink.record(record(1));
        {
            let mut state = sink.shared.lock();
            state.tail.clear();
            state.in_hand = Some((0, Instant::now()));
        }
        // While it reads, the second row queues in memory; then the read fails.
        sink.record(record(2));
        sink.shared.journal_read_failed(0);

        tokio::time::timeout(Duration::from_secs(20), sink.flush())
            .await
            .unwrap()
            .unwrap();
        let mut ids: Vec<String> = store
            .all_rows()
            .unwrap()
            .into_iter()
            .map(|row| row.request_id)
            .collect();
        ids.sort();
        assert_eq!(ids, ["req-1", "req-2"]);
        writer.shutdown().await;
    }

    #[tokio::test]
    async fn machine_sync_covers_a_segment_closed_before_it_ran() {
        let dir = tempfile::tempdir().unwrap();
        let config = DatabaseConfig {
            journal_sync: JournalSync::Machine,
            ..config(&dir)
        };
        let store = UsageStore::connect(&config).unwrap();
        let (sink, writer) = spawn_writer(store.clone(), &config).unwrap();
        let before = sink.record(record(1));
        // The next line begins a new segment; the old one is left to the sync thread.
        sink.shared.lock().active.as_mut().unwrap().bytes = SEGMENT_BYTES;
        let after = sink.record(record(2));
        assert_eq!(segments(&dir).len(), 2);
        for wait in [before, after] {
            tokio::time::timeout(Duration::from_secs(10), wait.durable())
                .await
                .unwrap();
        }
        let let_go = {
            let state = sink.shared.lock();
            state.retired.is_empty() && !state.directory_changed
        };
        assert!(let_go, "synced and let go");
        sink.flush().await.unwrap();
        assert_eq!(store.count_rows().unwrap(), 2);
        writer.shutdown().await;
    }

    #[tokio::test]
    async fn lag_and_the_problem_show_while_the_database_refuses_and_clear_after() {
        let dir = tempfile::tempdir().unwrap();
        let config = DatabaseConfig {
            shutdown_timeout_ms: 100,
            ready_max_lag_ms: 20,
            ..config(&dir)
        };
        let store = UsageStore::connect(&config).unwrap();
        let path = dir.path().join("usage.db");
        let mut other = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
        other
            .batch_execute("ALTER TABLE usage_logs RENAME TO hidden")
            .unwrap();
        let (sink, writer) = spawn_writer(store.clone(), &config).unwrap();
        sink.record(record(1));
        let deadline = Instant::now() + Duration::from_secs(10);
        while sink.health().store_problem.is_none() {
            assert!(Instant::now() < deadline, "the failure never showed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let before = sink.health().lag;
        tokio::time::sleep(Duration::from_millis(30)).await;
        let health = sink.health();
        assert!(health.lag > before, "the lag grows while rows wait");
        assert!(health.lagging, "past ready_max_lag_ms: {health:?}");
        other
            .batch_execute("ALTER TABLE hidden RENAME TO usage_logs")
            .unwrap();
        tokio::time::timeout(Duration::from_secs(20), sink.flush())
            .await
            .unwrap()
            .unwrap();
        let health = sink.health();
        assert_eq!(
            (health.lag, health.lagging, health.store_problem),
            (Duration::ZERO, false, None)
        );
        assert_eq!(store.count_rows().unwrap(), 1);
        writer.shutdown().await;
    }

    #[tokio::test]
    async fn rows_a_failing_database_left_at_shutdown_are_not_checkpointed_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let config = DatabaseConfig {
            // Long enough for the give-up to come with time to spare before the deadline,
            // when a second pass over the (now empty) queue used to count the rows as written.
            shutdown_timeout_ms: 1_000,
            ..config(&dir)
        };
        let store = UsageStore::connect(&config).unwrap();
        let path = dir.path().join("usage.db");
        let mut other = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
        other
            .batch_execute("ALTER TABLE usage_logs RENAME TO hidden")
            .unwrap();
        let (sink, writer) = spawn_writer(store.clone(), &config).unwrap();
        for i in 0..3 {
            sink.record(record(i));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while sink.stats().write_errors == 0 {
            assert!(
                Instant::now() < deadline,
                "the writer never met the failure"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        writer.shutdown().await;
        drop(sink);
        let journal = dir.path().join("journal");
        assert_eq!(journal::read_checkpoint(&journal), 0, "nothing was written");
        other
            .batch_execute("ALTER TABLE hidden RENAME TO usage_logs")
            .unwrap();
        let (sink, writer) = spawn_writer(store.clone(), &config).unwrap();
        sink.flush().await.unwrap();
        writer.shutdown().await;
        assert_eq!(store.count_rows().unwrap(), 3);
    }

    #[tokio::test]
    async fn an_unwritable_journal_keeps_rows_in_memory_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let config = DatabaseConfig {
            queue_capacity: 100,
            ..config(&dir)
        };
        // A file where the journal's directory should be: nothing can be created in it.
        std::fs::write(&config.journal_dir, "not a directory").unwrap();
        let store = UsageStore::connect(&config).unwrap();
        let (sink, writer) = spawn_writer(store.clone(), &config).unwrap();
        let (ticket, _) = sink.start(&start_of(&record(1)));
        sink.finish(ticket, record(1));
        assert!(sink.health().journal_problem.is_some());
        assert!(sink.stats().journal_errors >= 2);
        sink.flush().await.unwrap();
        assert_eq!(store.count_rows().unwrap(), 1, "the row still arrived");
        writer.shutdown().await;
    }

    #[tokio::test]
    async fn a_removed_journal_directory_is_noticed_and_begun_again() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(&dir);
        let store = UsageStore::connect(&config).unwrap();
        let (sink, writer) = spawn_writer(store.clone(), &config).unwrap();
        sink.record(record(1));
        sink.flush().await.unwrap();
        std::fs::remove_dir_all(&config.journal_dir).unwrap();
        sink.record(record(2));
        sink.flush().await.unwrap();
        assert!(sink.health().journal_problem.is_some(), "said so");
        // The next row begins a new segment in a new directory, and all is well again.
        sink.record(record(3));
        assert_eq!(segments(&dir).len(), 1);
        assert_eq!(sink.health().journal_problem, None);
        sink.flush().await.unwrap();
        assert_eq!(store.count_rows().unwrap(), 3);
        writer.shutdown().await;
    }

    #[tokio::test]
    async fn a_journal_held_by_another_sink_is_refused_until_it_is_let_go() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(&dir);
        let store = UsageStore::connect(&config).unwrap();
        let (sink, writer) = spawn_writer(store.clone(), &config).unwrap();
        let error = spawn_writer(store.clone(), &config).unwrap_err();
        assert!(error.is_journal_in_use(), "{error}");
        assert!(error.to_string().contains("journal_dir"), "{error}");
        writer.shutdown().await;
        drop(sink);
        let (_sink, writer) = spawn_writer(store, &config).expect("free again");
        writer.shutdown().await;
    }

    #[tokio::test]
    async fn extreme_sizes_and_waits_are_bounded_instead_of_panicking() {
        let dir = tempfile::tempdir().unwrap();
        let config = DatabaseConfig {
            queue_capacity: usize::MAX,
            batch_size: usize::MAX,
            flush_interval_ms: u64::MAX,
            shutdown_timeout_ms: u64::MAX,
            journal_stream_checkpoint_ms: u64::MAX,
            ..config(&dir)
        };
        let store = UsageStore::connect(&config).unwrap();
        let (sink, writer) = spawn_writer(store.clone(), &config).unwrap();
        for i in 0..3 {
            sink.record(record(i));
        }
        sink.flush().await.unwrap();
        assert_eq!(store.count_rows().unwrap(), 3);
        writer.shutdown().await;
    }

    #[test]
    fn rates_price_to_the_nearest_nano_dollar_as_the_pricing_crate_does() {
        let rates = Rates {
            input_per_1m: Usd::from_nanos(150_000_000),
            output_per_1m: Usd::from_nanos(600_000_000),
        };
        // 1234 × $0.15/M + 567 × $0.60/M = $0.0005253.
        assert_eq!(rates.cost_of(1234, 567), Usd::from_nanos(525_300));
        let half = |nanos_per_1m| Rates {
            input_per_1m: Usd::from_nanos(nanos_per_1m),
            output_per_1m: Usd::ZERO,
        };
        assert_eq!(half(1_499_999).cost_of(1, 0), Usd::from_nanos(1));
        assert_eq!(half(1_500_000).cost_of(1, 0), Usd::from_nanos(2));
        assert_eq!(
            half(u64::MAX).cost_of(u32::MAX, u32::MAX),
            Usd::from_nanos(u64::MAX),
            "saturates instead of overflowing"
        );
    }
}
