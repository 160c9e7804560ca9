//! Budgets counted in this process alone.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, TimeDelta, Utc};
use core_domain::Usd;
use futures_util::future::{BoxFuture, ready};

use crate::ledger::{Counter, Ledger, LedgerError, ReserveOutcome, SettleOutcome, Standing};

/// The maps of this module: keys are ours (counter names, request ids), so a fast hash is
/// enough, and SipHash cost more than the rest of a reservation.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// How long after its window ends a count is kept (a call that began in the window may still
/// be settling into it).
const KEEP_AFTER_WINDOW: TimeDelta = TimeDelta::days(1);

/// A [`Ledger`] in this process: one lock over every count, held for a few map operations and
/// never across an await, so a reservation over several budgets is atomic and cheap.
#[derive(Debug, Default)]
pub struct LocalLedger {
    counts: Mutex<HashMap<String, Count>>,
}

/// One counter's state.
#[derive(Debug)]
struct Count {
    spent: u64,
    reserved: u64,
    /// Reservation id → what it holds.
    holds: HashMap<String, Hold>,
    /// The holds by lease end (then a number of their own, so two may end together), so
    /// expired ones are found without a scan and a hold is released without an allocation.
    leases: BTreeMap<(DateTime<Utc>, u64), String>,
    /// The number the next hold gets.
    next_hold: u64,
    alerted: bool,
    window_ends: Option<DateTime<Utc>>,
}

/// One reservation held in a count.
#[derive(Debug, Clone, Copy)]
struct Hold {
    amount: u64,
    lease: (DateTime<Utc>, u64),
}

impl Count {
    fn standing(&self) -> Standing {
        Standing {
            spent: Usd::from_nanos(self.spent),
            reserved: Usd::from_nanos(self.reserved),
        }
    }

    /// Drops the holds whose lease ended by `now`.
    fn expire(&mut self, now: DateTime<Utc>) {
        while let Some((&(ends, _), _)) = self.leases.first_key_value() {
            if ends > now {
                break;
            }
            if let Some((_, id)) = self.leases.pop_first()
                && let Some(hold) = self.holds.remove(&id)
            {
                self.reserved = self.reserved.saturating_sub(hold.amount);
            }
        }
    }

    fn release(&mut self, reservation: &str) {
        if let Some(hold) = self.holds.remove(reservation) {
            self.reserved = self.reserved.saturating_sub(hold.amount);
            self.leases.remove(&hold.lease);
        }
    }

    fn hold(&mut self, reservation: &str, amount: u64, lease_until: DateTime<Utc>) {
        self.release(reservation);
        let lease = (lease_until, self.next_hold);
        self.next_hold = self.next_hold.wrapping_add(1);
        self.reserved = self.reserved.saturating_add(amount);
        self.holds
            .insert(reservation.to_owned(), Hold { amount, lease });
        self.leases.insert(lease, reservation.to_owned());
    }
}

impl LocalLedger {
    /// An empty ledger: every counter must be seeded before use.
    pub fn new() -> Self {
        Self::default()
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, HashMap<String, Count>> {
        // A panic while holding the lock leaves the counts as they were between operations
        // (each operation checks before it changes anything), so they are still usable.
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn reserve_now(
        &self,
        reservation: &str,
        counters: &[Counter],
        amount: Usd,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> ReserveOutcome {
        let mut counts = self.locked();
        let unseeded: Vec<usize> = counters
            .iter()
            .enumerate()
            .filter(|(_, c)| !counts.contains_key(&c.key))
            .map(|(i, _)| i)
            .collect();
        if !unseeded.is_empty() {
            return ReserveOutcome::Unseeded(unseeded);
        }
        for (index, counter) in counters.iter().enumerate() {
            let Some(count) = counts.get_mut(&counter.key) else {
                continue;
            };
            count.expire(now);
            let standing = count.standing();
            if standing.refuses(amount, counter.limit) {
                return ReserveOutcome::Refused { index, standing };
            }
        }
        let mut standings = Vec::with_capacity(counters.len());
        for counter in counters {
            if let Some(count) = counts.get_mut(&counter.key) {
                count.hold(reservation, amount.nanos(), lease_until);
                standings.push(count.standing());
            }
        }
        ReserveOutcome::Admitted(standings)
    }

    fn settle_now(
        &self,
        reservation: &str,
        counters: &[Counter],
        actual: Usd,
        now: DateTime<Utc>,
    ) -> SettleOutcome {
        let mut counts = self.locked();
        let mut outcome = SettleOutcome {
            standings: Vec::with_capacity(counters.len()),
            alerted: Vec::new(),
        };
        for (index, counter) in counters.iter().enumerate() {
            let Some(count) = counts.get_mut(&counter.key) else {
                outcome.standings.push(None);
                continue;
            };
            count.release(reservation);
            count.expire(now);
            count.spent = count.spent.saturating_add(actual.nanos());
            if let Some(alert) = counter.alert
                && !count.alerted
                && count.spent >= alert.nanos()
            {
                count.alerted = true;
                outcome.alerted.push(index);
            }
            outcome.standings.push(Some(count.standing()));
        }
        outcome
    }

    fn seed_now(&self, counter: &Counter, spent: Usd, now: DateTime<Utc>) {
        let mut counts = self.locked();
        // Counts are made once per budget and window, so this is where old windows go.
        counts.retain(|_, count| {
            count
                .window_ends
                .is_none_or(|ends| ends + KEEP_AFTER_WINDOW > now || !count.holds.is_empty())
        });
        counts.entry(counter.key.clone()).or_insert_with(|| Count {
            spent: spent.nanos(),
            reserved: 0,
            holds: HashMap::default(),
            leases: BTreeMap::new(),
            next_hold: 0,
            // A count rebuilt already past its alert was told before (or the crossing happened
            // while nobody counted): it is not told again.
            alerted: counter.alert.is_some_and(|alert| spent >= alert),
            window_ends: counter.window_ends,
        });
    }

    fn standings_now(&self, counters: &[Counter], now: DateTime<Utc>) -> Vec<Option<Standing>> {
        let mut counts = self.locked();
        counters
            .iter()
            .map(|counter| {
                counts.get_mut(&counter.key).map(|count| {
                    count.expire(now);
                    count.standing()
                })
            })
            .collect()
    }
}

impl Ledger for LocalLedger {
    fn reserve<'a>(
        &'a self,
        reservation: &'a str,
        counters: &'a [Counter],
        amount: Usd,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<ReserveOutcome, LedgerError>> {
        Box::pin(ready(Ok(self.reserve_now(
            reservation,
            counters,
            amount,
            lease_until,
            now,
        ))))
    }

    fn settle<'a>(
        &'a self,
        reservation: &'a str,
        counters: &'a [Counter],
        actual: Usd,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<SettleOutcome, LedgerError>> {
        Box::pin(ready(Ok(self.settle_now(
            reservation,
            counters,
            actual,
            now,
        ))))
    }

    fn seed<'a>(
        &'a self,
        counter: &'a Counter,
        spent: Usd,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<(), LedgerError>> {
        self.seed_now(counter, spent, now);
        Box::pin(ready(Ok(())))
    }

    fn standings<'a>(
        &'a self,
        counters: &'a [Counter],
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Vec<Option<Standing>>, LedgerError>> {
        Box::pin(ready(Ok(self.standings_now(counters, now))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_local_ledger_keeps_the_contract() {
        crate::conformance::check(&LocalLedger::new(), "local").await;
    }
}
