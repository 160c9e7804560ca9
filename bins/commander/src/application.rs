use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::dev::{Server, ServerHandle};
use http_api::{
    AppState, AuthSetupError, Authenticator, LiveCalls, Metrics, RateLimits, build_server,
};
use pricing::PriceTable;
use providers::ProviderRegistry;
use specialists::{BaseUrlPolicy, Catalogue, CatalogueError, FileHealth, HealthChange};
use usage_store::{StoreError, UsageSink, UsageStore, UsageWriter, spawn_writer};

use crate::Settings;
use crate::bounds::{self, OutOfRange};

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
    /// The auth configuration is unusable, or unsafe for the bind address.
    #[error(transparent)]
    Auth(#[from] AuthSetupError),
    /// A rate limit is out of range.
    #[error("invalid rate limit: {0}")]
    RateLimit(#[from] ratelimit::QuotaError),
    /// Numeric configuration values outside their allowed range (see [`crate::bounds`]).
    #[error("invalid configuration: {}", list(.0))]
    OutOfRange(Vec<OutOfRange>),
    /// A startup task failed unexpectedly.
    #[error("startup task failed: {0}")]
    Task(String),
}

fn list(problems: &[OutOfRange]) -> String {
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
    live_calls: LiveCalls,
    shutdown_grace: std::time::Duration,
}

/// How long shutdown waits, after the server stopped, for calls cut short to hand in their
/// usage rows (their worker threads drop them within milliseconds).
const CALLS_SETTLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Re-reads the catalogue file every `interval_ms` when someone else changed it, so ops can
/// deploy a new catalogue without a restart. A bad (or missing) file keeps the last good
/// catalogue; it is logged when it breaks (ERROR) and when it is fixed (INFO), and only at
/// debug level on the polls between, so a file left broken does not flood the log.
fn watch_catalogue(
    catalogue: Arc<Catalogue>,
    interval_ms: u64,
) -> Option<tokio::task::JoinHandle<()>> {
    if interval_ms == 0 {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(std::time::Duration::from_millis(interval_ms));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut health = FileHealth::default();
        loop {
            ticks.tick().await;
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
                    specialists = count,
                    "specialist catalogue reloaded from disk"
                ),
                HealthChange::Broke(error) => tracing::error!(
                    %error,
                    "the specialist catalogue file cannot be used; keeping the last good one"
                ),
                HealthChange::StillBroken => tracing::debug!(
                    "the specialist catalogue file is still unusable; keeping the last good one"
                ),
                HealthChange::Recovered => {
                    tracing::info!("the specialist catalogue file is usable again")
                }
            }
        }
    }))
}

impl Application {
    /// Checks every numeric setting is in range, opens the database (applying migrations),
    /// starts the usage writer, loads the catalogue, configures providers and prices, and binds
    /// the listener.
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
        let out_of_range = bounds::out_of_range(&settings);
        if !out_of_range.is_empty() {
            return Err(StartupError::OutOfRange(out_of_range));
        }
        let database = settings.database.clone();
        let store = tokio::task::spawn_blocking(move || UsageStore::connect(&database))
            .await
            .map_err(|e| StartupError::Task(e.to_string()))??;
        let policy = BaseUrlPolicy::new(settings.providers.allowed_http_base_urls.clone());
        let catalogue = Arc::new(
            Catalogue::open(&settings.specialists.path, &policy)?
                .with_max_prompt_history(settings.specialists.max_prompt_history),
        );
        let mut providers = ProviderRegistry::from_config(&settings.providers)?;
        customize(&mut providers);
        let prices = PriceTable::with_overrides(settings.pricing.clone());

        let listener =
            TcpListener::bind(&settings.server.bind).map_err(|source| StartupError::Bind {
                address: settings.server.bind.clone(),
                source,
            })?;
        let address = listener.local_addr().map_err(|source| StartupError::Bind {
            address: settings.server.bind.clone(),
            source,
        })?;

        let auth = Authenticator::from_config(&settings.auth)?;
        auth.check_bind(address)?;

        let (usage, writer) = spawn_writer(store.clone(), &settings.database);
        let live_calls = LiveCalls::new();
        let metrics =
            Arc::new(Metrics::new(usage.clone()).map_err(|e| StartupError::Task(e.to_string()))?);
        let state = AppState {
            catalogue: Arc::clone(&catalogue),
            providers: Arc::new(providers),
            prices: Arc::new(prices),
            usage: usage.clone(),
            store: store.clone(),
            chat_limits: settings.server.chat.clone(),
            sse_keep_alive_seconds: settings.server.sse_keep_alive_seconds,
            live_calls: live_calls.clone(),
            rate_limits: Arc::new(RateLimits::from_config(&settings.rate_limit)?),
            auth: Arc::new(auth),
            metrics,
        };
        let server = build_server(listener, state, &settings.server).map_err(|source| {
            StartupError::Bind {
                address: settings.server.bind.clone(),
                source,
            }
        })?;
        let reloader = watch_catalogue(catalogue, settings.specialists.reload_interval_ms);
        Ok(Self {
            address,
            server,
            writer,
            usage,
            store,
            reloader,
            live_calls,
            shutdown_grace: std::time::Duration::from_secs(settings.server.shutdown_grace_seconds),
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
