use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::dev::{Server, ServerHandle};
use http_api::{AppState, LiveCalls, Metrics, RateLimitStore, build_server};
use pricing::PriceTable;
use providers::{ProviderRegistry, Router, TokioSleeper};
use specialists::{BaseUrlPolicy, Catalogue, CatalogueError, FileHealth, HealthChange};
use usage_store::{StoreError, UsageSink, UsageStore, UsageWriter, spawn_writer};

use crate::settings::CatalogueStoreKind;
use crate::validate::{Problem, Validated};
use crate::{DatabaseCatalogue, Settings};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The usage database could not be opened or migrated.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The specialist catalogue could not be loaded.
    #[error(transparent)]
    Catalogue(#[from] CatalogueError),
    /// The listen address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The configured address.
        address: String,
        /// Why.
        source: std::io::Error,
    },
    /// The upstream HTTP client could not be set up.
    #[error(transparent)]
    Providers(#[from] providers::ProviderError),
    /// The configuration did not pass [`Settings::validate`].
    #[error("invalid configuration: {}", list(.0))]
    Invalid(Vec<Problem>),
    /// A startup task failed unexpectedly.
    #[error("startup task failed: {0}")]
    Task(String),
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// A built server, bound and ready to run.
pub struct Application {
    address: SocketAddr,
    server: Server,
    writer: UsageWriter,
    usage: UsageSink,
    store: UsageStore,
    reloader: Option<tokio::task::JoinHandle<()>>,
    budget_reloader: Option<tokio::task::JoinHandle<()>>,
    sealer: tokio::task::JoinHandle<()>,
    live_calls: LiveCalls,
    shutdown_grace: std::time::Duration,
}

/// How long shutdown waits, after the server stopped, for calls cut short to hand in their
/// usage rows (their worker threads drop them within milliseconds).
const CALLS_SETTLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// How often the usage rollup's finished hours are sealed.
const SEAL_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// How long after an hour ends it is sealed, at least. A row's time is when its call started,
/// and the call is written when it ends: up to `routing.deadline_ms` later (see
/// [`seal_grace`]). A row that comes later still (a journal replayed after an outage) only
/// makes its hour stale again.
const MIN_SEAL_GRACE: chrono::TimeDelta = chrono::TimeDelta::minutes(2);

/// The wait before sealing an hour: the longest a call may run, plus the writer's flush
/// interval, plus a minute; never below [`MIN_SEAL_GRACE`]. Sealing sooner would seal each hour
/// again for every long call that ends after it.
fn seal_grace(deadline_ms: u64, flush_interval_ms: u64) -> chrono::TimeDelta {
    // The configuration bounds both waits to a day; a week keeps the subtraction from `now`
    // far from chrono's limits whatever they say.
    const LONGEST_MS: u64 = 7 * 24 * 3_600_000;
    let wait_ms = deadline_ms
        .saturating_add(flush_interval_ms)
        .saturating_add(60_000)
        .min(LONGEST_MS);
    chrono::TimeDelta::milliseconds(i64::try_from(wait_ms).unwrap_or(0)).max(MIN_SEAL_GRACE)
}

/// Hours sealed per blocking task: a task's transactions stay short, and a backlog (the
/// rollup's migration on a large log leaves every hour unsealed) goes in rounds.
const SEAL_ROUND: usize = 24;

/// Seals the usage rollup's finished hours (see `usage_store::UsageStore::seal_hours`) every
/// [`SEAL_INTERVAL`], round after round until none is left. Reports read what is not sealed
/// from the log itself, so a failing round costs speed, never a number: it is logged and tried
/// again at the next tick.
fn seal_rollup(store: UsageStore) -> tokio::task::JoinHandle<()> {
    let grace = store.seal_grace();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(SEAL_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            ticks.tick().await;
            loop {
                let store = store.clone();
                let before = chrono::Utc::now() - grace;
                let round =
                    tokio::task::spawn_blocking(move || store.seal_hours(before, SEAL_ROUND)).await;
                match round {
                    Ok(Ok(sealed)) => {
                        if failing {
                            tracing::info!("the usage rollup is being sealed again");
                            failing = false;
                        }
                        if sealed > 0 {
                            tracing::debug!(hours = sealed, "usage rollup hours sealed");
                        }
                        if sealed < SEAL_ROUND {
                            break;
                        }
                    }
                    Ok(Err(error)) => {
                        if !failing {
                            tracing::warn!(
                                %error,
                                "cannot seal the usage rollup's hours; reports read the log \
                                 itself meanwhile"
                            );
                        }
                        failing = true;
                        break;
                    }
                    Err(error) => {
                        tracing::error!(%error, "the usage rollup task failed");
                        break;
                    }
                }
            }
        }
    })
}

/// Re-reads the catalogue file (or database) every `interval` when someone else changed it, so
/// ops can deploy a new catalogue without a restart and servers sharing a database serve each
/// other's changes. A bad (or missing) file, or an unreachable database, keeps the last good
/// catalogue; it is logged when it breaks (ERROR) and when it is fixed (INFO), and only at
/// debug level on the polls between, so a file left broken does not flood the log.
///
/// With `specialists.store = "database"` on PostgreSQL, a listener (`LISTEN`) wakes the reload
/// as soon as another server's change commits; the poll stays as the fallback for the
/// notifications missed while the listener reconnects.
fn watch_catalogue(
    catalogue: Arc<Catalogue>,
    interval: Option<std::time::Duration>,
    listen_on: Option<&UsageStore>,
) -> Option<tokio::task::JoinHandle<()>> {
    let interval = interval?;
    // Named on every line, so an operator (or a test) can tell which file a line is about.
    let path = catalogue.source();
    let changed = Arc::new(tokio::sync::Notify::new());
    let listener = listen_on.and_then(|store| {
        let changed = Arc::clone(&changed);
        // notify_one keeps a permit when the task is busy reloading, so no change is lost.
        store.listen_catalogue(move || changed.notify_one())
    });
    Some(tokio::spawn(async move {
        // Owned by the task: aborting it at shutdown drops the listener, which stops its thread.
        let _listener = listener;
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut health = FileHealth::default();
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = changed.notified() => {}
            }
            let catalogue = Arc::clone(&catalogue);
            let outcome =
                match tokio::task::spawn_blocking(move || catalogue.reload_if_changed()).await {
                    Ok(outcome) => outcome,
                    Err(e) => {
                        tracing::error!(error = %e, "catalogue reload task failed");
                        continue;
                    }
                };
            match health.observe(&outcome) {
                HealthChange::Steady => {}
                HealthChange::Reloaded(count) => tracing::info!(
                    %path,
                    specialists = count,
                    "specialist catalogue reloaded (changed elsewhere)"
                ),
                HealthChange::Broke(error) => tracing::error!(
                    %path,
                    %error,
                    "the specialist catalogue cannot be used; keeping the last good one"
                ),
                HealthChange::StillBroken => tracing::debug!(
                    %path,
                    "the specialist catalogue is still unusable; keeping the last good one"
                ),
                HealthChange::Recovered => {
                    tracing::info!(%path, "the specialist catalogue is usable again")
                }
            }
        }
    }))
}

/// The catalogue where `specialists.store` says it is kept.
pub(crate) async fn open_catalogue(
    settings: &Settings,
    store: &UsageStore,
    policy: &BaseUrlPolicy,
) -> Result<Catalogue, StartupError> {
    match settings.specialists.store {
        CatalogueStoreKind::File => Ok(Catalogue::open(&settings.specialists.path, policy)?),
        CatalogueStoreKind::Database => {
            let (store, policy) = (store.clone(), policy.clone());
            let opened = tokio::task::spawn_blocking(move || {
                Catalogue::open_store(Arc::new(DatabaseCatalogue::new(store)), &policy)
            })
            .await
            .map_err(|e| StartupError::Task(e.to_string()))??;
            Ok(opened)
        }
    }
}

impl Application {
    /// Validates `settings` ([`Settings::validate`]), then builds from them as
    /// [`Application::build_validated`] does.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        Self::build_with_providers(settings, |_| {}).await
    }

    /// Like [`Application::build`], letting `customize` register providers of its own over the
    /// configured ones (for a Rust service embedding commander with its own `ChatProvider`).
    pub async fn build_with_providers(
        settings: Settings,
        customize: impl FnOnce(&mut ProviderRegistry),
    ) -> Result<Self, StartupError> {
        // First: what follows hands these values to code that panics on extremes.
        let mut validated = settings.validate().map_err(StartupError::Invalid)?;
        customize(validated.providers_mut());
        Self::build_validated(validated).await
    }

    /// Opens the database (applying migrations), starts the usage writer, loads the catalogue,
    /// sets up prices, and binds the listener.
    pub async fn build_validated(validated: Validated) -> Result<Self, StartupError> {
        let Validated {
            settings,
            bind,
            auth,
            rate_limits,
            providers,
            shutdown_grace,
            sse_keep_alive,
            catalogue_reload,
            budgets,
            budget_lease,
        } = validated;
        let database = settings.database.clone();
        let store = tokio::task::spawn_blocking(move || UsageStore::connect(&database))
            .await
            .map_err(|e| StartupError::Task(e.to_string()))??
            .with_seal_grace(seal_grace(
                settings.routing.deadline_ms,
                settings.database.flush_interval_ms,
            ));
        let policy = BaseUrlPolicy::new(settings.providers.allowed_http_base_urls.clone());
        let catalogue = Arc::new(
            open_catalogue(&settings, &store, &policy)
                .await?
                .with_max_prompt_history(settings.specialists.max_prompt_history),
        );
        let prices = PriceTable::with_overrides(settings.pricing.clone());

        // Auth was checked against `bind`: the address bound differs at most in its port.
        let listener = TcpListener::bind(bind).map_err(|source| StartupError::Bind {
            address: settings.server.bind.clone(),
            source,
        })?;
        let address = listener.local_addr().map_err(|source| StartupError::Bind {
            address: settings.server.bind.clone(),
            source,
        })?;

        let (usage, writer) = spawn_writer(store.clone(), &settings.database)?;
        // After the writer's recovery: the usage log then holds every call of earlier runs,
        // which is what budgets are rebuilt from.
        let ledger: Arc<dyn budgets::Ledger> = match settings.rate_limit.store {
            RateLimitStore::Local => crate::budget_store::local_ledger(),
            // Budgets are shared where the rate limits are: the same Redis.
            RateLimitStore::Redis => {
                let redis = http_api::RedisConfig {
                    timeout_ms: settings.budgets.store_timeout_ms,
                    ..settings.redis.clone()
                };
                let ledger = http_api::RedisLedger::new(&redis)
                    .map_err(|e| StartupError::Invalid(vec![Problem::new(e.key(), e)]))?;
                ledger.connect();
                Arc::new(ledger)
            }
        };
        let budgets = crate::budget_store::open_budgets(
            budgets,
            ledger,
            &store,
            &usage,
            budgets::BudgetsConfig {
                lease: budget_lease,
                on_store_error: settings.budgets.on_store_error.into(),
            },
        )
        .await?;
        let live_calls = LiveCalls::new();
        let metrics =
            Arc::new(Metrics::new(usage.clone()).map_err(|e| StartupError::Task(e.to_string()))?);
        let state = AppState {
            catalogue: Arc::clone(&catalogue),
            providers: Arc::new(providers),
            router: Router::new(&settings.routing, &TokioSleeper),
            prices: Arc::new(prices),
            usage: usage.clone(),
            store: store.clone(),
            chat_limits: settings.server.chat.clone(),
            sse_keep_alive,
            live_calls: live_calls.clone(),
            rate_limits: Arc::new({
                rate_limits.connect();
                rate_limits
            }),
            auth: Arc::new(auth),
            metrics,
            budgets: Arc::clone(&budgets),
        };
        let server = build_server(listener, state, &settings.server).map_err(|source| {
            StartupError::Bind {
                address: settings.server.bind.clone(),
                source,
            }
        })?;
        let listen_on =
            (settings.specialists.store == CatalogueStoreKind::Database).then_some(&store);
        let reloader = watch_catalogue(catalogue, catalogue_reload, listen_on);
        let budget_reload = settings.budgets.reload_interval_ms;
        let budget_reloader = crate::budget_store::watch_budgets(
            store.clone(),
            budgets,
            (budget_reload > 0).then(|| std::time::Duration::from_millis(budget_reload)),
        );
        let sealer = seal_rollup(store.clone());
        Ok(Self {
            address,
            server,
            writer,
            usage,
            store,
            reloader,
            budget_reloader,
            sealer,
            live_calls,
            shutdown_grace,
        })
    }

    /// The address the server listens on (with the real port when port 0 was asked for).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// A handle to stop the server from elsewhere.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// The usage sink (to flush pending records, e.g. in tests).
    pub fn usage(&self) -> UsageSink {
        self.usage.clone()
    }

    /// The usage database.
    pub fn store(&self) -> UsageStore {
        self.store.clone()
    }

    /// Serves until [`ServerHandle::stop`], lets in-flight requests finish within the grace
    /// period, then commits every queued usage record before returning.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        tracing::info!(address = %self.address, "commander is listening");
        let served = self.server.await;
        if let Some(reloader) = self.reloader {
            reloader.abort();
        }
        if let Some(reloader) = self.budget_reloader {
            reloader.abort();
        }
        self.sealer.abort();
        // Streams the grace period cut short are dropped as their worker threads tear down,
        // possibly after the server future returned; their rows come from that drop.
        if !self.live_calls.wait_idle(CALLS_SETTLE_TIMEOUT).await {
            tracing::warn!(
                calls = self.live_calls.count(),
                "calls still unsettled at shutdown; their usage rows may be missing"
            );
        }
        tracing::info!("server stopped; writing pending usage records");
        self.writer.shutdown().await;
        tracing::info!("usage records written; bye");
        served
    }

    /// Like [`Application::run_until_stopped`], and also stops gracefully on SIGINT or SIGTERM
    /// (both graceful: an operator's Ctrl-C must not lose usage records either).
    pub async fn run_until_signalled(self) -> std::io::Result<()> {
        // Register before announcing that we listen, so no early signal finds the default
        // disposition (which would kill the process without draining).
        let shutdown_signal = ShutdownSignal::register()?;
        let handle = self.handle();
        let (live_calls, grace) = (self.live_calls.clone(), self.shutdown_grace);
        let signals = tokio::spawn(async move {
            shutdown_signal.received().await;
            tracing::info!("shutdown signal received; finishing in-flight requests");
            // Before stopping, so every call the server cuts at the end of the grace period
            // is logged as cut by shutdown (and one whose client left before, as that).
            live_calls.shutting_down(grace);
            handle.stop(true).await;
        });
        let served = self.run_until_stopped().await;
        signals.abort();
        served
    }
}

/// SIGINT and SIGTERM, listened for from the moment this is made.
struct ShutdownSignal {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignal {
    fn register() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {})
        }
    }

    async fn received(mut self) {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => {}
                _ = self.terminate.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_hour_is_sealed_after_its_longest_calls_are_written() {
        let minutes = |m| chrono::TimeDelta::minutes(m);
        // The default deadline (10 minutes) and flush (200 ms): 11 minutes and a bit.
        assert_eq!(
            seal_grace(600_000, 200),
            minutes(11) + chrono::TimeDelta::milliseconds(200)
        );
        assert_eq!(seal_grace(0, 0), MIN_SEAL_GRACE);
        assert_eq!(seal_grace(u64::MAX, u64::MAX), minutes(7 * 24 * 60));
    }
}
