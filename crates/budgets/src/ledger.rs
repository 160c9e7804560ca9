//! Where budgets' counts are kept: the contract every ledger (in this process, or shared by
//! several through a store such as Redis) fulfils, and the tests that hold each to it.

use chrono::{DateTime, Utc};
use core_domain::{BudgetScope, Usd};
use futures_util::future::BoxFuture;

/// One budget's count in one period, as a ledger operation addresses it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Counter {
    /// Where the count is kept: the budget's id, a digest of its scope and period, and the
    /// period's window (`team:3f2a…:2026-12`). Unique per budget, scope and window.
    pub key: String,
    /// The most the count may reach.
    pub limit: Usd,
    /// The spend at which the first settlement to reach it is told (once per window).
    pub alert: Option<Usd>,
    /// When the window is over, so a ledger may forget the count a while after (`None`: never).
    pub window_ends: Option<DateTime<Utc>>,
}

/// A count as it stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Standing {
    /// Settled spend in the window.
    pub spent: Usd,
    /// Held by calls under way (unexpired reservations).
    pub reserved: Usd,
}

impl Standing {
    /// What a new call may still reserve under `limit`.
    pub fn left(self, limit: Usd) -> Usd {
        Usd::from_nanos(
            limit
                .nanos()
                .saturating_sub(self.spent.nanos())
                .saturating_sub(self.reserved.nanos()),
        )
    }

    /// True when reserving `amount` more would pass `limit`, or the limit is spent already
    /// (so a budget of 0 refuses even calls that cost nothing).
    pub fn refuses(self, amount: Usd, limit: Usd) -> bool {
        let wanted = u128::from(self.spent.nanos())
            + u128::from(self.reserved.nanos())
            + u128::from(amount.nanos());
        wanted > u128::from(limit.nanos()) || self.spent >= limit
    }
}

/// What [`Ledger::reserve`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveOutcome {
    /// Held in every counter; their standings after the reservation, in order.
    Admitted(Vec<Standing>),
    /// Nothing held: the counter at `index` (the first that would pass its limit) stands so.
    Refused {
        /// Which counter refused.
        index: usize,
        /// How it stands (before this reservation).
        standing: Standing,
    },
    /// Nothing held: these counters are not known yet (their spend must be rebuilt from the
    /// usage log and [`Ledger::seed`]ed first).
    Unseeded(Vec<usize>),
}

/// What [`Ledger::settle`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettleOutcome {
    /// Each counter's standing after the settlement, in order; `None` for a counter the ledger
    /// no longer (or never) knew — its spend reaches it through the usage log when it is seeded.
    pub standings: Vec<Option<Standing>>,
    /// The counters whose spend reached their alert with this settlement: each is told once
    /// per window, across every instance sharing the ledger.
    pub alerted: Vec<usize>,
}

/// A ledger could not be reached or answered nonsense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("budget store: {0}")]
pub struct LedgerError(pub String);

/// Keeps budgets' counts. Every operation is atomic over all the counters it names: a
/// reservation is held in all of them or in none.
///
/// Times come from the caller (one clock for the period and the leases, injectable in tests).
pub trait Ledger: Send + Sync + std::fmt::Debug {
    /// Holds `amount` for `reservation` in every counter until `lease_until`, unless one of them
    /// would pass its limit (see [`Standing::refuses`]) or is not known yet. Reservations whose
    /// lease ended by `now` are dropped first.
    fn reserve<'a>(
        &'a self,
        reservation: &'a str,
        counters: &'a [Counter],
        amount: Usd,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<ReserveOutcome, LedgerError>>;

    /// Replaces `reservation` in every counter by `actual` spend. A reservation that already
    /// expired is simply gone; the spend is added all the same.
    fn settle<'a>(
        &'a self,
        reservation: &'a str,
        counters: &'a [Counter],
        actual: Usd,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<SettleOutcome, LedgerError>>;

    /// Makes `counter` known with `spent`, unless it is known already (then nothing changes:
    /// another caller, or another instance, seeded it first).
    fn seed<'a>(
        &'a self,
        counter: &'a Counter,
        spent: Usd,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<(), LedgerError>>;

    /// How each counter stands (`None`: not known yet), after dropping expired reservations.
    fn standings<'a>(
        &'a self,
        counters: &'a [Counter],
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Vec<Option<Standing>>, LedgerError>>;
}

/// What was spent in a scope over a window, from the usage log: how a count is rebuilt.
pub trait SpendSource: Send + Sync + std::fmt::Debug {
    /// The exact sum of the cost of every call in `scope` that started at or after `from` (all
    /// time when `None`) and before `until` (no end when `None`).
    fn spent(
        &self,
        scope: &BudgetScope,
        from: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
    ) -> BoxFuture<'static, Result<Usd, LedgerError>>;
}

/// The behaviour every [`Ledger`] must show, as one async check a ledger's own tests call
/// (`conformance::check(&ledger, "unique-prefix").await`). Panics on the first difference.
// A check for tests: a panic is its failure report.
#[allow(clippy::unwrap_used, clippy::missing_panics_doc)]
pub mod conformance {
    use chrono::{TimeDelta, TimeZone, Utc};
    use core_domain::Usd;

    use super::{Counter, Ledger, ReserveOutcome, Standing};

    fn usd(nanos: u64) -> Usd {
        Usd::from_nanos(nanos)
    }

    fn counter(prefix: &str, name: &str, limit: u64, alert: Option<u64>) -> Counter {
        Counter {
            key: format!("{prefix}:{name}"),
            limit: usd(limit),
            alert: alert.map(usd),
            window_ends: Some(Utc.with_ymd_and_hms(2100, 1, 1, 0, 0, 0).unwrap()),
        }
    }

    /// Runs every check against `ledger`; `prefix` keeps its counters apart from any other
    /// run's (a shared store outlives a test).
    pub async fn check(ledger: &dyn Ledger, prefix: &str) {
        let now = Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap();
        let lease = now + TimeDelta::minutes(10);
        let a = counter(prefix, "a", 100, Some(60));
        let b = counter(prefix, "b", 1_000, None);
        let both = [a.clone(), b.clone()];

        // Unknown counters are reported, and nothing is held.
        let outcome = ledger
            .reserve("r0", &both, usd(10), lease, now)
            .await
            .unwrap();
        assert_eq!(outcome, ReserveOutcome::Unseeded(vec![0, 1]));
        assert_eq!(
            ledger.standings(&both, now).await.unwrap(),
            vec![None, None]
        );

        // Seeding twice keeps the first.
        ledger.seed(&a, usd(20), now).await.unwrap();
        ledger.seed(&a, usd(99), now).await.unwrap();
        let outcome = ledger
            .reserve("r0", &both, usd(10), lease, now)
            .await
            .unwrap();
        assert_eq!(outcome, ReserveOutcome::Unseeded(vec![1]));
        ledger.seed(&b, usd(0), now).await.unwrap();

        // Held in both, atomically.
        let outcome = ledger
            .reserve("r1", &both, usd(30), lease, now)
            .await
            .unwrap();
        assert_eq!(
            outcome,
            ReserveOutcome::Admitted(vec![
                Standing {
                    spent: usd(20),
                    reserved: usd(30)
                },
                Standing {
                    spent: usd(0),
                    reserved: usd(30)
                },
            ])
        );
        // 20 + 30 + 50 = 100: exactly the limit is allowed.
        let outcome = ledger
            .reserve("r2", &both, usd(50), lease, now)
            .await
            .unwrap();
        assert!(
            matches!(outcome, ReserveOutcome::Admitted(_)),
            "{outcome:?}"
        );
        // One more nano-dollar is refused by `a`, and `b` holds nothing of it.
        let outcome = ledger
            .reserve("r3", &both, usd(1), lease, now)
            .await
            .unwrap();
        assert_eq!(
            outcome,
            ReserveOutcome::Refused {
                index: 0,
                standing: Standing {
                    spent: usd(20),
                    reserved: usd(80)
                },
            }
        );
        let standings = ledger.standings(&both, now).await.unwrap();
        assert_eq!(
            standings[1],
            Some(Standing {
                spent: usd(0),
                reserved: usd(80)
            })
        );

        // Settling replaces the reservation by the actual cost; the alert is told once.
        let settled = ledger.settle("r1", &both, usd(45), now).await.unwrap();
        assert_eq!(
            settled.standings,
            vec![
                Some(Standing {
                    spent: usd(65),
                    reserved: usd(50)
                }),
                Some(Standing {
                    spent: usd(45),
                    reserved: usd(50)
                }),
            ]
        );
        assert_eq!(settled.alerted, vec![0]);
        // Settling the same reservation again adds the spend but frees nothing more.
        let settled = ledger.settle("r2", &both, usd(0), now).await.unwrap();
        assert_eq!(
            settled.standings[0],
            Some(Standing {
                spent: usd(65),
                reserved: usd(0)
            })
        );
        assert!(
            settled.alerted.is_empty(),
            "an alert is told once per window"
        );

        // A lease that ends frees its reservation without a settlement.
        let short = now + TimeDelta::seconds(5);
        let outcome = ledger
            .reserve("r4", &both, usd(35), short, now)
            .await
            .unwrap();
        assert!(
            matches!(outcome, ReserveOutcome::Admitted(_)),
            "{outcome:?}"
        );
        let outcome = ledger
            .reserve("r5", &both, usd(1), lease, now)
            .await
            .unwrap();
        assert!(matches!(outcome, ReserveOutcome::Refused { index: 0, .. }));
        let later = now + TimeDelta::seconds(6);
        let outcome = ledger
            .reserve("r5", &both, usd(1), lease, later)
            .await
            .unwrap();
        assert_eq!(
            outcome,
            ReserveOutcome::Admitted(vec![
                Standing {
                    spent: usd(65),
                    reserved: usd(1)
                },
                Standing {
                    spent: usd(45),
                    reserved: usd(1)
                },
            ])
        );
        // Settling an expired reservation adds its spend, and may pass the limit: the spend
        // happened, and the count must say so.
        let settled = ledger.settle("r4", &both, usd(40), later).await.unwrap();
        assert_eq!(
            settled.standings[0],
            Some(Standing {
                spent: usd(105),
                reserved: usd(1)
            })
        );
        // A spent budget refuses even a call that costs nothing.
        let outcome = ledger
            .reserve("r6", &both, usd(0), lease, later)
            .await
            .unwrap();
        assert!(matches!(outcome, ReserveOutcome::Refused { index: 0, .. }));

        // A budget of 0 refuses everything.
        let zero = counter(prefix, "zero", 0, None);
        ledger.seed(&zero, usd(0), now).await.unwrap();
        let outcome = ledger
            .reserve("r7", std::slice::from_ref(&zero), usd(0), lease, now)
            .await
            .unwrap();
        assert!(matches!(outcome, ReserveOutcome::Refused { index: 0, .. }));

        // Settling against a counter the ledger does not know changes nothing there.
        let unknown = counter(prefix, "unknown", 10, None);
        let settled = ledger
            .settle("r8", std::slice::from_ref(&unknown), usd(3), now)
            .await
            .unwrap();
        assert_eq!(settled.standings, vec![None]);
        assert_eq!(
            ledger
                .standings(std::slice::from_ref(&unknown), now)
                .await
                .unwrap(),
            vec![None]
        );
    }
}
