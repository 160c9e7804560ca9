//! Budgets on the call path: the `[budgets]` section, a call's worst-case cost, admission
//! against the budgets that cover it, the refusal in the API's terms, and settlement (with its
//! alert and metrics). The counting itself is the `budgets` crate's.

use std::num::NonZeroU64;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use budgets::{BudgetEntry, Budgets, Exceeded, Refusal, Reservation};
use core_domain::{BudgetDraft, BudgetPeriod, ErrorCode, Specialist, TokenUsage, Usd};
use pricing::PriceTable;
use providers::Route;
use serde::{Deserialize, Serialize};

use crate::{ApiError, Metrics};

/// The `[budgets]` section: how budgets behave, and the ones defined in config
/// (`[[budgets.limits]]`; more are managed over `/budgets`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BudgetSettings {
    /// What a call a budget covers gets while the budget store (Redis) does not answer.
    pub on_store_error: OnStoreErrorSetting,
    /// How long a reservation holds when its call never settles (its process died), in
    /// milliseconds; must be longer than any call may last (`routing.deadline_ms`). Default:
    /// `routing.deadline_ms` plus a minute.
    pub lease_ms: Option<NonZeroU64>,
    /// The longest one reservation or settlement waits for the budget store (Redis) before it
    /// counts as unreachable, in milliseconds. Longer than the rate limits' `redis.timeout_ms`:
    /// a slow Redis should delay a budgeted call, not refuse it.
    pub store_timeout_ms: NonZeroU64,
    /// How often the budgets managed over the API are re-read from the database (changes made
    /// by another instance), in milliseconds (0: never; this instance's own changes apply at
    /// once).
    pub reload_interval_ms: u64,
    /// Budgets defined here: read-only over the API.
    pub limits: Vec<BudgetDraft>,
}

impl Default for BudgetSettings {
    fn default() -> Self {
        Self {
            on_store_error: OnStoreErrorSetting::Deny,
            lease_ms: None,
            store_timeout_ms: NonZeroU64::new(1_000).unwrap_or(NonZeroU64::MIN),
            reload_interval_ms: 2_000,
            limits: Vec::new(),
        }
    }
}

/// `budgets.on_store_error`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnStoreErrorSetting {
    /// Refuse the call (503 `budget_unavailable`): a budget is money, so it fails closed.
    #[default]
    Deny,
    /// Let it through unreserved (its spend still reaches the usage log).
    Allow,
}

impl From<OnStoreErrorSetting> for budgets::OnStoreError {
    fn from(setting: OnStoreErrorSetting) -> Self {
        match setting {
            OnStoreErrorSetting::Deny => Self::Deny,
            OnStoreErrorSetting::Allow => Self::Allow,
        }
    }
}

/// The most a call on `route` may cost: at every destination it may be served by, the prompt
/// (`prompt_estimate` tokens) at the input price and the whole `max_tokens` at the output price.
pub(crate) fn worst_case(
    prices: &PriceTable,
    specialist: &Specialist,
    route: &Route,
    prompt_estimate: u32,
    max_tokens: u32,
) -> Usd {
    let usage = TokenUsage::estimated(prompt_estimate, max_tokens);
    route
        .callable()
        .map(|(index, destination)| {
            let own = (index == 0).then(|| specialist.pricing()).flatten();
            prices.estimate(own, &destination.model, &usage).cost
        })
        .fold(Usd::ZERO, |sum, cost| sum + cost)
}

/// Admits the call whose request id is `reservation_id`, reserving `amount` in every budget of
/// `covering` (those that cover it); `Ok(None)` when the store failed and the policy let it
/// through. The refusal is the error to answer with.
pub(crate) async fn admit(
    budgets: &Budgets,
    metrics: &Metrics,
    reservation_id: &str,
    covering: Vec<Arc<BudgetEntry>>,
    amount: Usd,
) -> Result<Option<Reservation>, ApiError> {
    match budgets
        .admit_covered(covering, amount, reservation_id)
        .await
    {
        Ok(admission) => {
            if let Some(error) = admission.store_failed {
                metrics.budget_store_errors.inc();
                tracing::warn!(%error, "budget store unreachable: call admitted unreserved (budgets.on_store_error = \"allow\")");
            }
            Ok(admission.reservation)
        }
        Err(Refusal::Exceeded(exceeded)) => {
            metrics
                .budget_refusals
                .with_label_values(&[exceeded.budget.budget.id().as_str()])
                .inc();
            Err(exceeded_error(&exceeded))
        }
        Err(Refusal::StoreUnavailable(error)) => {
            metrics.budget_store_errors.inc();
            Err(ApiError::new(
                ErrorCode::BudgetUnavailable,
                "the store that counts budgets did not answer, and calls covered by a budget \
                 are refused until it does",
            )
            .with_internal_detail(error.to_string())
            .with_retry_after(Duration::from_secs(1)))
        }
    }
}

/// The refusal naming the budget, what is left, and when it resets.
fn exceeded_error(exceeded: &Exceeded) -> ApiError {
    let budget = &exceeded.budget.budget;
    let scope = match budget.scope().subject() {
        Some(subject) => format!("{} '{subject}'", budget.scope().kind()),
        None => "every call".to_owned(),
    };
    let resets = match exceeded.resets_at {
        Some(at) => format!(
            "it resets at {}",
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        None => "it never resets (a total budget)".to_owned(),
    };
    let standing = if exceeded.standing.spent >= budget.limit() {
        format!(
            "is spent: {} of its {} limit",
            dollars(exceeded.standing.spent),
            dollars(budget.limit())
        )
    } else {
        format!(
            "has {} left of its {} limit, and this call may cost up to {}",
            dollars(exceeded.left()),
            dollars(budget.limit()),
            dollars(exceeded.asked),
        )
    };
    ApiError::new(
        ErrorCode::BudgetExceeded,
        format!(
            "budget '{}' ({scope}, {}) {standing}; {resets}",
            budget.id(),
            match budget.period() {
                BudgetPeriod::Day => "per day",
                BudgetPeriod::Month => "per month",
                BudgetPeriod::Total => "in total",
            },
        ),
    )
}

/// `$1.50`, `$0.0123`: dollars to the nano-dollar, without trailing zeros past the cents.
pub(crate) fn dollars(amount: Usd) -> String {
    let nanos = amount.nanos();
    let fraction = format!("{:09}", nanos % 1_000_000_000);
    let trimmed = fraction.trim_end_matches('0');
    let shown = if trimmed.len() < 2 {
        &fraction[..2]
    } else {
        trimmed
    };
    format!("${}.{shown}", nanos / 1_000_000_000)
}

/// Replaces `reservation` by what the call cost. A ledger in this process settles here and now
/// (so the next call sees it); a shared one is asked in the background (the caller's answer
/// does not wait on Redis; until it lands, the reservation keeps the budget on the safe side).
pub(crate) fn settle(
    budgets: Arc<Budgets>,
    metrics: Arc<Metrics>,
    reservation: Reservation,
    actual: Usd,
) {
    let mut settling = Box::pin(async move {
        let outcome = budgets.settle(reservation, actual).await;
        match outcome {
            Ok(settled) => {
                for budget in settled.iter().filter(|b| b.alerted) {
                    let definition = &budget.budget.budget;
                    metrics
                        .budget_alerts
                        .with_label_values(&[definition.id().as_str()])
                        .inc();
                    tracing::warn!(
                        budget = %definition.id(),
                        spent = %dollars(budget.standing.map(|s| s.spent).unwrap_or_default()),
                        alert = %dollars(definition.alert().unwrap_or_default()),
                        limit = %dollars(definition.limit()),
                        period = definition.period().as_str(),
                        "budget reached its alert threshold"
                    );
                }
            }
            Err(error) => {
                metrics.budget_store_errors.inc();
                tracing::warn!(%error, "a call's budget reservation could not be settled; it expires with its lease");
            }
        }
    });
    if let Poll::Ready(()) = settling
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        return;
    }
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(settling);
        }
        Err(_) => tracing::warn!(
            "no runtime to settle a budget reservation on; it expires with its lease"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollars_show_cents_at_least_and_every_nano_that_matters() {
        assert_eq!(dollars(Usd::ZERO), "$0.00");
        assert_eq!(dollars(Usd::from_nanos(1_500_000_000)), "$1.50");
        assert_eq!(dollars(Usd::from_nanos(12_300_000)), "$0.0123");
        assert_eq!(dollars(Usd::from_nanos(1)), "$0.000000001");
        assert_eq!(dollars(Usd::from_nanos(5_000_000_000)), "$5.00");
    }
}
