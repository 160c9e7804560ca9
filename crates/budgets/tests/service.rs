//! The budgets of a server, end to end over the in-process ledger: which budgets cover a call,
//! exact admission under concurrency, settlement, rebuilding from the usage log, period
//! roll-over on an injected clock, leases, and a ledger that fails.
#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use budgets::{
    Budgets, BudgetsConfig, CallScope, Counter, Ledger, LedgerError, LocalLedger, ManualClock,
    OnStoreError, Refusal, ReserveOutcome, SettleOutcome, SpendSource, Standing,
};
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use core_domain::{Budget, BudgetDraft, BudgetScope, EmailHash, SpecialistId, Usd};
use futures_util::future::BoxFuture;

/// One call in the fake usage log: the specialist called, when, and what it cost.
type Row = (String, Option<String>, DateTime<Utc>, Usd);

/// A usage log in memory; counts its queries.
#[derive(Debug, Default)]
struct FakeLog {
    rows: Mutex<Vec<Row>>,
    queries: AtomicUsize,
}

impl FakeLog {
    fn add(&self, specialist: &str, at: DateTime<Utc>, cost: u64) {
        self.rows.lock().unwrap().push((
            "specialist".into(),
            Some(specialist.into()),
            at,
            Usd::from_nanos(cost),
        ));
    }
}

impl SpendSource for FakeLog {
    fn spent(
        &self,
        scope: &BudgetScope,
        from: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
    ) -> BoxFuture<'static, Result<Usd, LedgerError>> {
        self.queries.fetch_add(1, Ordering::SeqCst);
        let rows = self.rows.lock().unwrap();
        let total = rows
            .iter()
            .filter(|(_, subject, at, _)| {
                let in_scope = match scope {
                    BudgetScope::Global => true,
                    BudgetScope::Specialist(id) => subject.as_deref() == Some(id.as_str()),
                    _ => false,
                };
                in_scope && from.is_none_or(|f| *at >= f) && until.is_none_or(|u| *at < u)
            })
            .fold(0, |sum, (_, _, _, cost)| sum + cost.nanos());
        Box::pin(async move { Ok(Usd::from_nanos(total)) })
    }
}

fn budget(id: &str, scope: &str, subject: Option<&str>, period: &str, limit_nanos: u64) -> Budget {
    BudgetDraft {
        id: id.into(),
        scope: scope.into(),
        subject: subject.map(str::to_owned),
        period: period.into(),
        limit_usd: limit_nanos as f64 / 1e9,
        alert_usd: None,
    }
    .validate()
    .unwrap()
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn config() -> BudgetsConfig {
    BudgetsConfig {
        lease: Duration::from_secs(60),
        on_store_error: OnStoreError::Deny,
    }
}

struct Setup {
    budgets: Arc<Budgets>,
    clock: ManualClock,
    log: Arc<FakeLog>,
}

fn setup(defined: Vec<Budget>, now: &str) -> Setup {
    let clock = ManualClock::new(at(now));
    let log = Arc::new(FakeLog::default());
    let budgets = Arc::new(Budgets::new(
        defined,
        Arc::new(LocalLedger::new()),
        log.clone(),
        Arc::new(clock.clone()),
        config(),
    ));
    Setup {
        budgets,
        clock,
        log,
    }
}

fn call<'a>(
    specialist: &'a SpecialistId,
    user: Option<&'a EmailHash>,
    key: Option<&'a str>,
) -> CallScope<'a> {
    CallScope {
        specialist,
        user,
        api_key: key,
    }
}

#[tokio::test]
async fn only_the_budgets_that_cover_a_call_are_checked() {
    let s = setup(
        vec![
            budget("all", "global", None, "month", 1_000),
            budget("analyst", "specialist", Some("analyst"), "day", 1_000),
            budget("ada", "user", Some("ada@example.com"), "day", 1_000),
            budget("ci", "key", Some("ci"), "total", 1_000),
        ],
        "2026-12-01T10:00:00Z",
    );
    let analyst = SpecialistId::parse("analyst").unwrap();
    let other = SpecialistId::parse("other").unwrap();
    let ada = EmailHash::of_email("ADA@example.com");
    let ids = |scope: CallScope<'_>| -> Vec<String> {
        s.budgets
            .covering(scope)
            .iter()
            .map(|e| e.budget.id().to_string())
            .collect()
    };
    assert_eq!(ids(call(&other, None, None)), ["all"]);
    assert_eq!(
        ids(call(&analyst, Some(&ada), Some("ci"))),
        ["all", "analyst", "ada", "ci"]
    );
    assert_eq!(ids(call(&other, None, Some("ci"))), ["all", "ci"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_calls_never_reserve_past_the_limit_and_settle_exactly() {
    // A budget that fits exactly 50 calls of 7 nano-dollars each, worst case.
    let s = setup(
        vec![budget("team", "global", None, "day", 350)],
        "2026-12-01T10:00:00Z",
    );
    let specialist = SpecialistId::parse("analyst").unwrap();
    let mut tasks = Vec::new();
    for n in 0..200 {
        let budgets = Arc::clone(&s.budgets);
        let specialist = specialist.clone();
        tasks.push(tokio::spawn(async move {
            budgets
                .admit(
                    call(&specialist, None, None),
                    Usd::from_nanos(7),
                    &format!("r{n}"),
                )
                .await
        }));
    }
    let mut admitted = Vec::new();
    let mut refused = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(admission) => admitted.push(admission.reservation.unwrap()),
            Err(Refusal::Exceeded(exceeded)) => {
                refused += 1;
                assert_eq!(exceeded.budget.budget.id().as_str(), "team");
                assert_eq!(exceeded.asked, Usd::from_nanos(7));
                assert_eq!(exceeded.resets_at, Some(at("2026-12-02T00:00:00Z")));
            }
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!((admitted.len(), refused), (50, 150));
    // Each call cost less than its worst case: the freed headroom admits more.
    for reservation in admitted {
        s.budgets
            .settle(reservation, Usd::from_nanos(5))
            .await
            .unwrap();
    }
    let views = s.budgets.views(|_| true).await;
    let standing = views[0].standing.clone().unwrap();
    assert_eq!(
        standing,
        Standing {
            spent: Usd::from_nanos(250),
            reserved: Usd::ZERO
        }
    );
    let more = s
        .budgets
        .admit(call(&specialist, None, None), Usd::from_nanos(100), "after")
        .await
        .unwrap();
    assert!(more.reservation.is_some());
    assert!(
        s.budgets
            .admit(
                call(&specialist, None, None),
                Usd::from_nanos(1),
                "one-more"
            )
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_count_is_rebuilt_from_the_usage_log_once_and_rolls_over_at_utc_midnight() {
    let s = setup(
        vec![budget(
            "analyst-daily",
            "specialist",
            Some("analyst"),
            "day",
            100,
        )],
        "2026-12-01T23:59:00Z",
    );
    // Spend of earlier runs, in the log: today's counts, yesterday's and another's do not.
    s.log.add("analyst", at("2026-12-01T08:00:00Z"), 60);
    s.log.add("analyst", at("2026-11-30T23:59:59Z"), 1_000);
    s.log.add("other", at("2026-12-01T09:00:00Z"), 1_000);
    let analyst = SpecialistId::parse("analyst").unwrap();
    let refused = s
        .budgets
        .admit(call(&analyst, None, None), Usd::from_nanos(41), "a")
        .await
        .unwrap_err();
    let Refusal::Exceeded(exceeded) = refused else {
        panic!()
    };
    assert_eq!(exceeded.standing.spent, Usd::from_nanos(60));
    assert_eq!(exceeded.left(), Usd::from_nanos(40));
    let admitted = s
        .budgets
        .admit(call(&analyst, None, None), Usd::from_nanos(40), "b")
        .await
        .unwrap();
    assert_eq!(s.log.queries.load(Ordering::SeqCst), 1, "rebuilt once");
    // The clock passes midnight: a new count, empty, and the call still running settles into
    // the day it started in.
    s.clock.set(at("2026-12-02T00:00:00Z"));
    let next_day = s
        .budgets
        .admit(call(&analyst, None, None), Usd::from_nanos(100), "c")
        .await
        .unwrap();
    assert!(next_day.reservation.is_some());
    s.budgets
        .settle(admitted.reservation.unwrap(), Usd::from_nanos(40))
        .await
        .unwrap();
    let views = s.budgets.views(|_| true).await;
    assert_eq!(views[0].window.key, "2026-12-02");
    assert_eq!(
        views[0].standing.clone().unwrap(),
        Standing {
            spent: Usd::ZERO,
            reserved: Usd::from_nanos(100)
        }
    );
}

#[tokio::test]
async fn a_monthly_budget_rolls_over_on_the_first_of_the_month() {
    let s = setup(
        vec![budget("m", "global", None, "month", 10)],
        "2026-12-31T23:59:59Z",
    );
    let x = SpecialistId::parse("x").unwrap();
    let first = s
        .budgets
        .admit(call(&x, None, None), Usd::from_nanos(10), "1")
        .await
        .unwrap();
    s.budgets
        .settle(first.reservation.unwrap(), Usd::from_nanos(10))
        .await
        .unwrap();
    assert!(
        s.budgets
            .admit(call(&x, None, None), Usd::ZERO, "2")
            .await
            .is_err()
    );
    s.clock.set(at("2027-01-01T00:00:00Z"));
    let january = s
        .budgets
        .admit(call(&x, None, None), Usd::from_nanos(10), "3")
        .await
        .unwrap();
    assert!(january.reservation.is_some());
    let views = s.budgets.views(|_| true).await;
    assert_eq!(views[0].window.key, "2027-01");
    assert_eq!(
        views[0].window.resets_at,
        Some(Utc.with_ymd_and_hms(2027, 2, 1, 0, 0, 0).unwrap())
    );
}

#[tokio::test]
async fn a_reservation_never_settled_expires_with_its_lease() {
    let s = setup(
        vec![budget("b", "global", None, "total", 10)],
        "2026-12-01T10:00:00Z",
    );
    let x = SpecialistId::parse("x").unwrap();
    // Held by a call whose process "died": never settled.
    let held = s
        .budgets
        .admit(call(&x, None, None), Usd::from_nanos(10), "dead")
        .await
        .unwrap();
    std::mem::forget(held);
    assert!(
        s.budgets
            .admit(call(&x, None, None), Usd::from_nanos(1), "a")
            .await
            .is_err()
    );
    s.clock.advance(TimeDelta::seconds(59));
    assert!(
        s.budgets
            .admit(call(&x, None, None), Usd::from_nanos(1), "b")
            .await
            .is_err()
    );
    s.clock.advance(TimeDelta::seconds(1));
    assert!(
        s.budgets
            .admit(call(&x, None, None), Usd::from_nanos(10), "c")
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn changing_a_budgets_limit_keeps_its_count_and_changing_its_scope_starts_anew() {
    let s = setup(vec![], "2026-12-01T10:00:00Z");
    s.budgets
        .replace_api(vec![budget("b", "global", None, "day", 10)]);
    let x = SpecialistId::parse("x").unwrap();
    let r = s
        .budgets
        .admit(call(&x, None, None), Usd::from_nanos(8), "1")
        .await
        .unwrap();
    s.budgets
        .settle(r.reservation.unwrap(), Usd::from_nanos(8))
        .await
        .unwrap();
    s.budgets
        .replace_api(vec![budget("b", "global", None, "day", 20)]);
    let views = s.budgets.views(|_| true).await;
    assert_eq!(views[0].standing.clone().unwrap().spent, Usd::from_nanos(8));
    s.budgets
        .replace_api(vec![budget("b", "specialist", Some("y"), "day", 20)]);
    let views = s.budgets.views(|_| true).await;
    assert_eq!(
        views[0].standing.clone().unwrap().spent,
        Usd::ZERO,
        "rebuilt for the new scope"
    );
}

/// A ledger that is down.
#[derive(Debug)]
struct Down;

impl Ledger for Down {
    fn reserve<'a>(
        &'a self,
        _: &'a str,
        _: &'a [Counter],
        _: Usd,
        _: DateTime<Utc>,
        _: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<ReserveOutcome, LedgerError>> {
        Box::pin(async { Err(LedgerError("connection refused".into())) })
    }
    fn settle<'a>(
        &'a self,
        _: &'a str,
        _: &'a [Counter],
        _: Usd,
        _: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<SettleOutcome, LedgerError>> {
        Box::pin(async { Err(LedgerError("connection refused".into())) })
    }
    fn seed<'a>(
        &'a self,
        _: &'a Counter,
        _: Usd,
        _: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<(), LedgerError>> {
        Box::pin(async { Err(LedgerError("connection refused".into())) })
    }
    fn standings<'a>(
        &'a self,
        _: &'a [Counter],
        _: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Vec<Option<Standing>>, LedgerError>> {
        Box::pin(async { Err(LedgerError("connection refused".into())) })
    }
}

#[tokio::test]
async fn a_ledger_that_is_down_refuses_covered_calls_unless_told_to_allow_them() {
    let x = SpecialistId::parse("x").unwrap();
    for (policy, allowed) in [(OnStoreError::Deny, false), (OnStoreError::Allow, true)] {
        let budgets = Budgets::new(
            vec![budget("b", "specialist", Some("x"), "day", 10)],
            Arc::new(Down),
            Arc::new(FakeLog::default()),
            Arc::new(ManualClock::new(at("2026-12-01T10:00:00Z"))),
            BudgetsConfig {
                on_store_error: policy,
                ..config()
            },
        );
        let outcome = budgets
            .admit(call(&x, None, None), Usd::from_nanos(1), "r")
            .await;
        match (outcome, allowed) {
            (Err(Refusal::StoreUnavailable(_)), false) => {}
            (Ok(admission), true) => {
                assert!(admission.reservation.is_none());
                assert!(admission.store_failed.is_some());
            }
            (other, _) => panic!("{policy:?}: {other:?}"),
        }
        // A call no budget covers never asks the ledger.
        let y = SpecialistId::parse("y").unwrap();
        assert!(
            budgets
                .admit(call(&y, None, None), Usd::from_nanos(1), "r")
                .await
                .is_ok()
        );
    }
}

#[tokio::test]
async fn no_budgets_admit_everything_and_budgets_with_no_log_to_rebuild_from_refuse() {
    let budgets = Budgets::none();
    let x = SpecialistId::parse("x").unwrap();
    let admitted = budgets
        .admit(call(&x, None, None), Usd::from_nanos(u64::MAX), "r")
        .await
        .unwrap();
    assert!(admitted.reservation.is_none());
    budgets.replace_api(vec![budget("b", "global", None, "day", 10)]);
    assert!(matches!(
        budgets.admit(call(&x, None, None), Usd::ZERO, "r").await,
        Err(Refusal::StoreUnavailable(_))
    ));
}
