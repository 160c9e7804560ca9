use std::sync::Arc;

use pricing::PriceTable;
use providers::{ProviderRegistry, Router};
use specialists::Catalogue;
use usage_store::{UsageSink, UsageStore};

use crate::{Authenticator, ChatLimits, LiveCalls, Metrics, RateLimits};

/// Everything the handlers share, built once by the binary.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The specialists.
    pub catalogue: Arc<Catalogue>,
    /// The configured providers.
    pub providers: Arc<ProviderRegistry>,
    /// How a call moves over its specialist's destinations (fallbacks, retries, continued
    /// streams).
    pub router: Router,
    /// Prices for cost estimates.
    pub prices: Arc<PriceTable>,
    /// Where usage records go (never waits).
    pub usage: UsageSink,
    /// The usage database, for readiness and reports.
    pub store: UsageStore,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Checks credentials.
    pub auth: Arc<Authenticator>,
    /// Per-caller rate limits.
    pub rate_limits: Arc<RateLimits>,
    /// Limits on chat requests.
    pub chat_limits: ChatLimits,
    /// Silence after which a stream gets a keep-alive comment (validated non-zero by the
    /// caller: zero would send nothing but comments).
    pub sse_keep_alive: std::time::Duration,
    /// Chat calls whose usage row is not yet with the sink (shutdown waits for them).
    pub live_calls: LiveCalls,
    /// Spend limits: every chat call reserves its worst case against the budgets covering it.
    pub budgets: Arc<budgets::Budgets>,
}
