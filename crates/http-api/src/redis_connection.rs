//! The connection to the `[redis]` server, shared in code by every Redis user in this crate
//! (the rate-limit store, `shared_limits.rs`, and the budget ledger, `shared_budgets.rs`): made
//! in the background, kept by a reconnecting connection manager per server worker, and every
//! call bounded by `redis.timeout_ms`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::Notify;

use crate::{RateLimitSetupError, RedisConfig};

/// The Redis connection, made in the background (a Redis that is down at start is a degraded
/// state for its user to handle, not a start failure) and then kept by the connection manager,
/// which reconnects.
pub(crate) struct Connector {
    /// Which of a thread's connections are this connector's.
    id: usize,
    client: redis::Client,
    manager: OnceLock<ConnectionManager>,
    /// Woken when `manager` is set, for a caller that would rather wait for it (within its
    /// timeout) than fail at once.
    connected: Notify,
    connecting: AtomicBool,
    last_attempt: Mutex<Option<Instant>>,
    timeout: Duration,
}

/// The next connector's id. Not its address: a connector dropped and another made at the same
/// address (a test's second ledger) would find the first one's connections on every worker.
static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

/// How long after a failed first connection the next one is tried.
const CONNECT_RETRY: Duration = Duration::from_millis(500);

/// A server worker's own connection to one store's Redis.
struct WorkerConnection {
    connector: usize,
    manager: Option<ConnectionManager>,
    last_attempt: Instant,
}

thread_local! {
    /// Each server worker thread's own connections, by connector: a check made on a worker
    /// then stays on that worker's single-threaded runtime, with no hop to another thread's
    /// connection task and back (two thread wake-ups fewer per check).
    static WORKER_CONNECTIONS: std::cell::RefCell<Vec<WorkerConnection>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

impl Connector {
    /// A connector to `config.url`; opens nothing yet.
    pub(crate) fn new(config: &RedisConfig) -> Result<Arc<Self>, RateLimitSetupError> {
        let url = config
            .url
            .as_deref()
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .ok_or(RateLimitSetupError::MissingRedisUrl)?;
        let client = redis::Client::open(url)
            .map_err(|e| RateLimitSetupError::BadRedisUrl(e.to_string()))?;
        Ok(Arc::new(Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            client,
            manager: OnceLock::new(),
            connected: Notify::new(),
            connecting: AtomicBool::new(false),
            last_attempt: Mutex::new(None),
            timeout: Duration::from_millis(config.timeout_ms.get()),
        }))
    }

    /// The longest one call may take (`redis.timeout_ms`).
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// True once the first (shared) connection has been made.
    pub(crate) fn is_connected(&self) -> bool {
        self.manager.get().is_some()
    }

    /// Like [`Connector::connection`], but with no connection at all yet, waits (at most
    /// `wait`) for the one being made instead of failing at once: for a caller that fails
    /// closed, the first calls after a start must not be refused only because the connection
    /// is a few milliseconds from ready.
    pub(crate) async fn connection_within(
        self: &Arc<Self>,
        wait: Duration,
    ) -> Option<ConnectionManager> {
        if let Some(connection) = self.connection() {
            return Some(connection);
        }
        // Registered before the second look, so a connection made in between still wakes it.
        let connected = self.connected.notified();
        if let Some(manager) = self.manager.get() {
            return Some(manager.clone());
        }
        let _ = tokio::time::timeout(wait, connected).await;
        self.manager.get().cloned()
    }

    /// The connection for a check on this thread: the worker's own once it has one, else the
    /// shared one (while the worker's is being made), else none (and one is being made).
    pub(crate) fn connection(self: &Arc<Self>) -> Option<ConnectionManager> {
        if let Some(own) = self.worker_connection() {
            return Some(own);
        }
        if let Some(manager) = self.manager.get() {
            return Some(manager.clone());
        }
        self.connect_in_background();
        None
    }

    /// The worker's own connection; starts making it on a single-threaded runtime (a server
    /// worker) that has none, at most every [`CONNECT_RETRY`].
    fn worker_connection(self: &Arc<Self>) -> Option<ConnectionManager> {
        let id = self.id;
        let found = WORKER_CONNECTIONS.with_borrow_mut(|connections| {
            if let Some(own) = connections.iter_mut().find(|c| c.connector == id) {
                if own.manager.is_some() || own.last_attempt.elapsed() < CONNECT_RETRY {
                    return Some(own.manager.clone());
                }
                own.last_attempt = Instant::now();
            } else {
                connections.push(WorkerConnection {
                    connector: id,
                    manager: None,
                    last_attempt: Instant::now(),
                });
            }
            None
        });
        if let Some(own) = found {
            return own;
        }
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        // On a multi-threaded runtime the task could finish on any thread: only a worker's
        // own single thread gets a connection of its own.
        if runtime.runtime_flavor() != tokio::runtime::RuntimeFlavor::CurrentThread {
            return None;
        }
        let this = Arc::clone(self);
        runtime.spawn(async move {
            if let Ok(manager) = this.open().await {
                // Single-threaded runtime: this runs on the worker thread that asked.
                WORKER_CONNECTIONS.with_borrow_mut(|connections| {
                    if let Some(own) = connections.iter_mut().find(|c| c.connector == id) {
                        own.manager = Some(manager);
                    }
                });
            }
        });
        None
    }

    async fn open(&self) -> redis::RedisResult<ConnectionManager> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(self.timeout.max(Duration::from_secs(1)))
            .set_response_timeout(self.timeout)
            .set_number_of_retries(2)
            .set_max_delay(500);
        ConnectionManager::new_with_config(self.client.clone(), config).await
    }

    /// Starts making the shared connection (needs a Tokio runtime), unless it exists, is being
    /// made, or an attempt failed less than [`CONNECT_RETRY`] ago.
    pub(crate) fn connect_in_background(self: &Arc<Self>) {
        if self.manager.get().is_some() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        {
            let mut last = self
                .last_attempt
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if last.is_some_and(|at| at.elapsed() < CONNECT_RETRY) {
                return;
            }
            if self.connecting.swap(true, Ordering::AcqRel) {
                return;
            }
            *last = Some(Instant::now());
        }
        let this = Arc::clone(self);
        runtime.spawn(async move {
            if let Ok(manager) = this.open().await {
                let _ = this.manager.set(manager);
                this.connected.notify_waiters();
            }
            this.connecting.store(false, Ordering::Release);
        });
    }
}
