//! The budgets of a running server: counted in this process or in Redis (with the rate limits'
//! store), rebuilt from the usage log, and the API-managed ones kept in step with the database.

use std::sync::Arc;
use std::time::Duration;

use budgets::{Budgets, BudgetsConfig, Ledger, LedgerError, LocalLedger, SpendSource, SystemClock};
use chrono::{DateTime, Utc};
use core_domain::{BudgetScope, Usd};
use futures_util::future::BoxFuture;
use usage_store::{SpendFilter, UsageSink, UsageStore};

/// How long start-up waits for the usage log to take in what the journal recovered before the
/// budgets are rebuilt from it.
const RECOVERY_WAIT: Duration = Duration::from_secs(10);

/// What budgets have spent, summed from the usage log.
#[derive(Debug, Clone)]
pub struct StoreSpend {
    store: UsageStore,
}

impl StoreSpend {
    /// Sums over `store`'s usage log.
    pub fn new(store: UsageStore) -> Self {
        Self { store }
    }
}

impl SpendSource for StoreSpend {
    fn spent(
        &self,
        scope: &BudgetScope,
        from: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
    ) -> BoxFuture<'static, Result<Usd, LedgerError>> {
        let store = self.store.clone();
        let scope = scope.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let filter = match &scope {
                    BudgetScope::Global => SpendFilter::All,
                    BudgetScope::Specialist(id) => SpendFilter::Specialist(id),
                    BudgetScope::User { email_hash, .. } => SpendFilter::User(email_hash),
                    BudgetScope::Key(name) => SpendFilter::ApiKey(name),
                };
                store.spent(filter, from, until)
            })
            .await
            .map_err(|e| LedgerError(format!("usage log task failed: {e}")))?
            .map_err(|e| LedgerError(format!("cannot rebuild a budget from the usage log: {e}")))
        })
    }
}

/// The server's budgets: `config_budgets` and those the API manages, counted in `ledger`.
pub(crate) async fn open_budgets(
    config_budgets: Vec<core_domain::Budget>,
    ledger: Arc<dyn Ledger>,
    store: &UsageStore,
    usage: &UsageSink,
    config: BudgetsConfig,
) -> Result<Arc<Budgets>, crate::StartupError> {
    let budgets = Arc::new(Budgets::new(
        config_budgets,
        ledger,
        Arc::new(StoreSpend::new(store.clone())),
        Arc::new(SystemClock),
        config,
    ));
    http_api::reload_api_budgets(store, &budgets)
        .await
        .map_err(|e| {
            crate::StartupError::Task(format!("cannot load the budgets: {}", e.message()))
        })?;
    if budgets.is_empty() {
        return Ok(budgets);
    }
    // The journal's recovery handed the writer every call of the last run it had not applied
    // yet: counts are rebuilt once those are in the database, or they would miss them.
    if tokio::time::timeout(RECOVERY_WAIT, usage.flush())
        .await
        .is_err()
    {
        tracing::warn!(
            "the usage log did not catch up with the journal within {RECOVERY_WAIT:?}; budgets \
             rebuilt now may miss calls of the last run"
        );
    }
    // Rebuilt now so the first calls do not wait on the usage log; a store that does not
    // answer yet is not fatal (calls then fail closed or open as configured).
    if let Err(error) = budgets.warm().await {
        tracing::warn!(%error, "budgets could not be rebuilt at start; they will be on first use");
    }
    Ok(budgets)
}

/// The in-process ledger.
pub(crate) fn local_ledger() -> Arc<dyn Ledger> {
    Arc::new(LocalLedger::new())
}

/// Re-reads the API-managed budgets every `interval` when the database says they changed
/// (another instance's change; this one's own apply at once). On PostgreSQL a listener
/// (`LISTEN commander_budgets`) wakes it as soon as such a change commits; the poll stays for
/// the notifications missed while the listener reconnects.
pub(crate) fn watch_budgets(
    store: UsageStore,
    budgets: Arc<Budgets>,
    interval: Option<Duration>,
) -> Option<tokio::task::JoinHandle<()>> {
    let interval = interval?;
    let changed = Arc::new(tokio::sync::Notify::new());
    let listener = {
        let changed = Arc::clone(&changed);
        store.listen_budgets(move || changed.notify_one())
    };
    Some(tokio::spawn(async move {
        // Owned by the task: aborting it at shutdown drops the listener, which stops its thread.
        let _listener = listener;
        let mut seen: Option<i64> = None;
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = changed.notified() => {}
            }
            let probe = store.clone();
            let revision = match tokio::task::spawn_blocking(move || probe.budget_revision()).await
            {
                Ok(Ok(revision)) => revision,
                Ok(Err(error)) => {
                    tracing::debug!(%error, "budget revision not readable; trying again later");
                    continue;
                }
                Err(error) => {
                    tracing::error!(%error, "budget revision task failed");
                    continue;
                }
            };
            if seen == Some(revision) {
                continue;
            }
            match http_api::reload_api_budgets(&store, &budgets).await {
                Ok(()) => {
                    if seen.is_some() {
                        tracing::info!(revision, "budgets reloaded (changed elsewhere)");
                    }
                    seen = Some(revision);
                }
                Err(error) => tracing::warn!(error = %error.message(), "budgets not reloaded"),
            }
        }
    }))
}

/// Every budget (config and API-managed) with its spend in its current period, summed from the
/// usage log alone: what `commander budgets list` and `commander usage report` print. What calls
/// under way hold is only known to the running servers (`GET /budgets`).
pub async fn budget_report(settings: &crate::Settings) -> Result<Vec<budgets::BudgetView>, String> {
    let mut problems = Vec::new();
    let config_budgets = settings.validate_budgets(&mut problems);
    if !problems.is_empty() {
        let listed: Vec<String> = problems.iter().map(ToString::to_string).collect();
        return Err(format!("invalid budgets: {}", listed.join("; ")));
    }
    let database = settings.database.clone();
    let store = tokio::task::spawn_blocking(move || UsageStore::connect(&database))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let budgets = Arc::new(Budgets::new(
        config_budgets,
        local_ledger(),
        Arc::new(StoreSpend::new(store.clone())),
        Arc::new(SystemClock),
        BudgetsConfig {
            lease: Duration::from_secs(1),
            on_store_error: budgets::OnStoreError::Deny,
        },
    ));
    http_api::reload_api_budgets(&store, &budgets)
        .await
        .map_err(|e| e.message().to_owned())?;
    Ok(budgets.views(|_| true).await)
}
