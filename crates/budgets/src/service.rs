//! The budgets of one server: their definitions, which of them cover a call, and admission and
//! settlement against the ledger.

use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use core_domain::{Budget, BudgetId, BudgetScope, EmailHash, PeriodWindow, SpecialistId, Usd};

use crate::clock::Clock;

/// The book's maps: looked up on every call, so a fast hash (their keys are ids, email hashes
/// and key names from config and the database, not chosen by callers).
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
use crate::ledger::{Counter, Ledger, LedgerError, ReserveOutcome, SpendSource, Standing};

/// What to do with a call a budget covers when the ledger cannot be asked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnStoreError {
    /// Refuse it: no spend goes uncounted (the default; unlike rate limits, a budget is money).
    #[default]
    Deny,
    /// Let it through unreserved; its spend still reaches the usage log, and so the count when
    /// it is rebuilt.
    Allow,
}

/// How budgets behave.
#[derive(Debug, Clone, Copy)]
pub struct BudgetsConfig {
    /// How long a reservation holds if its call never settles (its process died): longer than
    /// any call may last.
    pub lease: Duration,
    /// What a call gets when the ledger cannot be asked.
    pub on_store_error: OnStoreError,
}

/// Where a budget's definition comes from, which says who may change it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Managed {
    /// The config file: changed by editing it and restarting.
    Config,
    /// The API (`/budgets`), kept in the database.
    Api,
}

impl Managed {
    /// `config` or `api`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Api => "api",
        }
    }
}

/// A budget and where it was defined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetEntry {
    /// The budget.
    pub budget: Budget,
    /// Where it was defined.
    pub managed: Managed,
}

/// Who a call is for: what budgets are matched against.
#[derive(Debug, Clone, Copy)]
pub struct CallScope<'a> {
    /// The specialist called.
    pub specialist: &'a SpecialistId,
    /// The caller's email hash (none for the anonymous caller).
    pub user: Option<&'a EmailHash>,
    /// The name of the API key the caller used, if it used one.
    pub api_key: Option<&'a str>,
}

/// Every budget, indexed by what a call is matched on.
#[derive(Debug, Default)]
struct Book {
    entries: Vec<Arc<BudgetEntry>>,
    global: Vec<Arc<BudgetEntry>>,
    by_specialist: HashMap<SpecialistId, Vec<Arc<BudgetEntry>>>,
    by_user: HashMap<EmailHash, Vec<Arc<BudgetEntry>>>,
    by_key: HashMap<String, Vec<Arc<BudgetEntry>>>,
}

impl Book {
    fn new(entries: Vec<BudgetEntry>) -> Self {
        let mut book = Self::default();
        for entry in entries {
            let entry = Arc::new(entry);
            let list = match entry.budget.scope() {
                BudgetScope::Global => &mut book.global,
                BudgetScope::Specialist(id) => book.by_specialist.entry(id.clone()).or_default(),
                BudgetScope::User { email_hash, .. } => {
                    book.by_user.entry(email_hash.clone()).or_default()
                }
                BudgetScope::Key(name) => book.by_key.entry(name.clone()).or_default(),
            };
            list.push(Arc::clone(&entry));
            book.entries.push(entry);
        }
        book
    }

    fn covering(&self, call: CallScope<'_>) -> Vec<Arc<BudgetEntry>> {
        let mut covering = self.global.clone();
        for list in [
            self.by_specialist.get(call.specialist),
            call.user.and_then(|user| self.by_user.get(user)),
            call.api_key.and_then(|key| self.by_key.get(key)),
        ]
        .into_iter()
        .flatten()
        {
            covering.extend(list.iter().cloned());
        }
        covering
    }
}

/// A budget that refused a call, and how it stood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeded {
    /// The budget.
    pub budget: Arc<BudgetEntry>,
    /// Its count before the call.
    pub standing: Standing,
    /// What the call would have reserved.
    pub asked: Usd,
    /// When the budget resets (`None`: a `total` budget never does).
    pub resets_at: Option<DateTime<Utc>>,
}

impl Exceeded {
    /// What is left for new calls.
    pub fn left(&self) -> Usd {
        self.standing.left(self.budget.budget.limit())
    }
}

/// Why a call was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A budget covering the call has too little left.
    #[error("budget '{}' has too little left", .0.budget.budget.id())]
    Exceeded(Box<Exceeded>),
    /// The ledger could not be asked and `on_store_error` is `deny`.
    #[error(transparent)]
    StoreUnavailable(#[from] LedgerError),
}

/// A call admitted by its budgets.
#[derive(Debug, Default)]
pub struct Admission {
    /// What it holds, to be settled when it ends (`None`: no budget covers it, or the ledger
    /// could not be asked and `on_store_error` let it through).
    pub reservation: Option<Reservation>,
    /// The ledger could not be asked, and the call went through unreserved.
    pub store_failed: Option<LedgerError>,
}

/// What an admitted call holds against its budgets until it settles.
#[derive(Debug)]
pub struct Reservation {
    id: String,
    budgets: Vec<Arc<BudgetEntry>>,
    counters: Vec<Counter>,
    amount: Usd,
}

impl Reservation {
    /// What the call reserved in each budget.
    pub fn amount(&self) -> Usd {
        self.amount
    }

    /// The budgets it holds.
    pub fn budgets(&self) -> impl Iterator<Item = &Budget> {
        self.budgets.iter().map(|entry| &entry.budget)
    }
}

/// A budget after a call settled into it.
#[derive(Debug, Clone)]
pub struct SettledBudget {
    /// The budget.
    pub budget: Arc<BudgetEntry>,
    /// Its count now (`None`: the ledger no longer knows it, e.g. it lost its data).
    pub standing: Option<Standing>,
    /// This settlement took its spend to its alert (told once per window).
    pub alerted: bool,
}

/// A budget with its count in the current window, for people.
#[derive(Debug, Clone)]
pub struct BudgetView {
    /// The budget.
    pub entry: Arc<BudgetEntry>,
    /// The current window.
    pub window: PeriodWindow,
    /// How it stands (`Err`: the ledger could not be asked).
    pub standing: Result<Standing, LedgerError>,
}

/// The budgets of one server. Cheap when none is defined: a call no budget covers costs one
/// read of the book.
#[derive(Debug)]
pub struct Budgets {
    book: RwLock<Arc<Book>>,
    config_entries: Vec<BudgetEntry>,
    ledger: Arc<dyn Ledger>,
    spend: Arc<dyn SpendSource>,
    clock: Arc<dyn Clock>,
    config: BudgetsConfig,
    /// One rebuild at a time per counter, so a burst of calls at a window's start asks the
    /// usage log once.
    seeding: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// How many times admission rebuilds unknown counts before giving up (a store that keeps
/// losing them is failing).
const SEED_ROUNDS: usize = 3;

impl Budgets {
    /// Budgets from config (`config_budgets`, read-only), counted in `ledger`, rebuilt from
    /// `spend`, timed by `clock`. API-managed budgets arrive through [`Budgets::replace_api`].
    pub fn new(
        config_budgets: Vec<Budget>,
        ledger: Arc<dyn Ledger>,
        spend: Arc<dyn SpendSource>,
        clock: Arc<dyn Clock>,
        config: BudgetsConfig,
    ) -> Self {
        let config_entries: Vec<BudgetEntry> = config_budgets
            .into_iter()
            .map(|budget| BudgetEntry {
                budget,
                managed: Managed::Config,
            })
            .collect();
        Self {
            book: RwLock::new(Arc::new(Book::new(config_entries.clone()))),
            config_entries,
            ledger,
            spend,
            clock,
            config,
            seeding: Mutex::new(HashMap::default()),
        }
    }

    /// No budget at all (for a service that does not limit spend): every call is admitted
    /// without a look at a ledger. Budgets given later through [`Budgets::replace_api`] would
    /// have no usage log to be rebuilt from, so they refuse what they cover.
    pub fn none() -> Self {
        Self::new(
            Vec::new(),
            Arc::new(crate::LocalLedger::new()),
            Arc::new(NoUsageLog),
            Arc::new(crate::SystemClock),
            BudgetsConfig {
                lease: Duration::from_secs(60),
                on_store_error: OnStoreError::Deny,
            },
        )
    }

    fn book(&self) -> Arc<Book> {
        Arc::clone(&self.book.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Replaces the API-managed budgets (config ones stay; an API budget with a config
    /// budget's id is ignored, as the store refuses to make one).
    pub fn replace_api(&self, api_budgets: Vec<Budget>) {
        let mut entries = self.config_entries.clone();
        for budget in api_budgets {
            if entries.iter().any(|e| e.budget.id() == budget.id()) {
                continue;
            }
            entries.push(BudgetEntry {
                budget,
                managed: Managed::Api,
            });
        }
        *self.book.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(Book::new(entries));
    }

    /// Every budget, in definition order (config first).
    pub fn entries(&self) -> Vec<Arc<BudgetEntry>> {
        self.book().entries.clone()
    }

    /// The budget with `id`.
    pub fn get(&self, id: &BudgetId) -> Option<Arc<BudgetEntry>> {
        self.book()
            .entries
            .iter()
            .find(|entry| entry.budget.id() == id)
            .cloned()
    }

    /// True when no budget is defined.
    pub fn is_empty(&self) -> bool {
        self.book().entries.is_empty()
    }

    /// The budgets that cover `call`.
    pub fn covering(&self, call: CallScope<'_>) -> Vec<Arc<BudgetEntry>> {
        self.book().covering(call)
    }

    /// When reservations made now expire.
    fn lease_until(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let lease =
            chrono::TimeDelta::from_std(self.config.lease).unwrap_or(chrono::TimeDelta::MAX);
        now.checked_add_signed(lease)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// Admits `call`, reserving `amount` (its worst-case cost) as `reservation_id` in every
    /// budget that covers it, or refuses it.
    pub async fn admit(
        &self,
        call: CallScope<'_>,
        amount: Usd,
        reservation_id: &str,
    ) -> Result<Admission, Refusal> {
        self.admit_covered(self.covering(call), amount, reservation_id)
            .await
    }

    /// [`Budgets::admit`] against `covering`, the budgets [`Budgets::covering`] found for the
    /// call (by a caller that needed them already).
    pub async fn admit_covered(
        &self,
        covering: Vec<Arc<BudgetEntry>>,
        amount: Usd,
        reservation_id: &str,
    ) -> Result<Admission, Refusal> {
        if covering.is_empty() {
            return Ok(Admission::default());
        }
        let now = self.clock.now();
        let windows: Vec<PeriodWindow> = covering
            .iter()
            .map(|entry| entry.budget.period().window(now))
            .collect();
        let counters: Vec<Counter> = covering
            .iter()
            .zip(&windows)
            .map(|(entry, window)| counter(&entry.budget, window))
            .collect();
        let lease_until = self.lease_until(now);
        let outcome = async {
            for _ in 0..SEED_ROUNDS {
                let unseeded = match self
                    .ledger
                    .reserve(reservation_id, &counters, amount, lease_until, now)
                    .await?
                {
                    ReserveOutcome::Admitted(_) => return Ok(None),
                    ReserveOutcome::Refused { index, standing } => {
                        return Ok(Some((index, standing)));
                    }
                    ReserveOutcome::Unseeded(unseeded) => unseeded,
                };
                for index in unseeded {
                    self.rebuild(
                        &covering[index].budget,
                        &counters[index],
                        &windows[index],
                        now,
                    )
                    .await?;
                }
            }
            Err(LedgerError(
                "the budget store keeps losing the counts it was just given".to_owned(),
            ))
        }
        .await;
        match outcome {
            Ok(None) => Ok(Admission {
                reservation: Some(Reservation {
                    id: reservation_id.to_owned(),
                    budgets: covering,
                    counters,
                    amount,
                }),
                store_failed: None,
            }),
            Ok(Some((index, standing))) => Err(Refusal::Exceeded(Box::new(Exceeded {
                budget: Arc::clone(&covering[index]),
                standing,
                asked: amount,
                resets_at: windows[index].resets_at,
            }))),
            Err(error) => match self.config.on_store_error {
                OnStoreError::Deny => Err(Refusal::StoreUnavailable(error)),
                OnStoreError::Allow => Ok(Admission {
                    reservation: None,
                    store_failed: Some(error),
                }),
            },
        }
    }

    /// Rebuilds `counter` (the count of `budget` in `window`) from the usage log, once at a time.
    async fn rebuild(
        &self,
        budget: &Budget,
        counter: &Counter,
        window: &PeriodWindow,
        now: DateTime<Utc>,
    ) -> Result<(), LedgerError> {
        let gate = Arc::clone(
            self.seeding
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(counter.key.clone())
                .or_default(),
        );
        let one_at_a_time = gate.lock().await;
        let rebuilt = self.rebuild_now(budget, counter, window, now).await;
        drop(one_at_a_time);
        self.seeding
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&counter.key);
        rebuilt
    }

    /// Seeds `counter` from the usage log unless the ledger knows it by now (another caller
    /// rebuilt it while this one waited).
    async fn rebuild_now(
        &self,
        budget: &Budget,
        counter: &Counter,
        window: &PeriodWindow,
        now: DateTime<Utc>,
    ) -> Result<(), LedgerError> {
        let known = self
            .ledger
            .standings(std::slice::from_ref(counter), now)
            .await?;
        if known.first().is_some_and(Option::is_some) {
            return Ok(());
        }
        let spent = self
            .spend
            .spent(budget.scope(), window.start, window.resets_at)
            .await?;
        self.ledger.seed(counter, spent, now).await
    }

    /// Replaces `reservation` by what the call actually cost.
    pub async fn settle(
        &self,
        reservation: Reservation,
        actual: Usd,
    ) -> Result<Vec<SettledBudget>, LedgerError> {
        let now = self.clock.now();
        let outcome = self
            .ledger
            .settle(&reservation.id, &reservation.counters, actual, now)
            .await?;
        Ok(reservation
            .budgets
            .into_iter()
            .zip(outcome.standings)
            .enumerate()
            .map(|(index, (budget, standing))| SettledBudget {
                budget,
                standing,
                alerted: outcome.alerted.contains(&index),
            })
            .collect())
    }

    /// Every budget `filter` keeps, with its count in the current window (rebuilt from the
    /// usage log when the ledger does not hold it yet).
    pub async fn views(&self, filter: impl Fn(&BudgetEntry) -> bool) -> Vec<BudgetView> {
        let now = self.clock.now();
        let entries: Vec<Arc<BudgetEntry>> = self
            .book()
            .entries
            .iter()
            .filter(|entry| filter(entry))
            .cloned()
            .collect();
        let mut views = Vec::with_capacity(entries.len());
        for entry in entries {
            let window = entry.budget.period().window(now);
            let counter = counter(&entry.budget, &window);
            let standing = self.standing(&entry.budget, &counter, &window, now).await;
            views.push(BudgetView {
                entry,
                window,
                standing,
            });
        }
        views
    }

    async fn standing(
        &self,
        budget: &Budget,
        counter: &Counter,
        window: &PeriodWindow,
        now: DateTime<Utc>,
    ) -> Result<Standing, LedgerError> {
        for _ in 0..SEED_ROUNDS {
            let known = self
                .ledger
                .standings(std::slice::from_ref(counter), now)
                .await?;
            if let Some(Some(standing)) = known.first() {
                return Ok(*standing);
            }
            self.rebuild(budget, counter, window, now).await?;
        }
        Err(LedgerError(
            "the budget store keeps losing the counts it was just given".to_owned(),
        ))
    }

    /// Rebuilds every budget's current count that the ledger does not hold yet (at start, so
    /// the first calls do not wait for it). Returns the first failure.
    pub async fn warm(&self) -> Result<(), LedgerError> {
        for view in self.views(|_| true).await {
            view.standing?;
        }
        Ok(())
    }
}

/// The spend source of [`Budgets::none`]: there is no usage log to rebuild from.
#[derive(Debug)]
struct NoUsageLog;

impl SpendSource for NoUsageLog {
    fn spent(
        &self,
        _: &BudgetScope,
        _: Option<DateTime<Utc>>,
        _: Option<DateTime<Utc>>,
    ) -> futures_util::future::BoxFuture<'static, Result<Usd, LedgerError>> {
        Box::pin(futures_util::future::ready(Err(LedgerError(
            "no usage log to rebuild a budget from".to_owned(),
        ))))
    }
}

/// The counter of `budget` in `window`.
fn counter(budget: &Budget, window: &PeriodWindow) -> Counter {
    Counter {
        key: format!("{}:{}", budget.counter_name(), window.key),
        limit: budget.limit(),
        alert: budget.alert(),
        window_ends: window.resets_at,
    }
}
