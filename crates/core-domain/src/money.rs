use std::fmt;
use std::ops::Add;

use serde::{Deserialize, Serialize};

/// An amount of US dollars, held as whole nano-dollars (10⁻⁹ USD) so that sums are exact.
///
/// The cheapest listed model costs 7.5 × 10⁻⁸ USD per token, so nano-dollars keep every price
/// exact to the token; a `u64` of them holds 18 billion dollars. Convert to a decimal only at the
/// edge ([`Usd::as_dollars`]), where JSON and the usage table want a number.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Usd(u64);

impl Usd {
    /// Nothing.
    pub const ZERO: Self = Self(0);

    /// An amount of nano-dollars.
    pub const fn from_nanos(nanos: u64) -> Self {
        Self(nanos)
    }

    /// The amount in nano-dollars.
    pub const fn nanos(self) -> u64 {
        self.0
    }

    /// Converts a decimal dollar amount, rounding to the nearest nano-dollar. Returns `None` for
    /// negative, non-finite or absurdly large amounts.
    pub fn from_dollars(dollars: f64) -> Option<Self> {
        const MAX_DOLLARS: f64 = 1.0e9;
        if !dollars.is_finite() || !(0.0..=MAX_DOLLARS).contains(&dollars) {
            return None;
        }
        // Bounded above, so the product fits in u64 and the cast cannot saturate.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let nanos = (dollars * 1e9).round() as u64;
        Some(Self(nanos))
    }

    /// The amount as decimal dollars, for JSON and the usage table.
    #[allow(clippy::cast_precision_loss)]
    pub fn as_dollars(self) -> f64 {
        self.0 as f64 / 1e9
    }
}

impl Add for Usd {
    type Output = Self;
    fn add(self, rhs: Self) -> Self {
        Self(self.0.saturating_add(rhs.0))
    }
}

impl fmt::Display for Usd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "${}.{:09}",
            self.0 / 1_000_000_000,
            self.0 % 1_000_000_000
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollars_round_trip_through_nanos() {
        let price = Usd::from_dollars(0.075).unwrap();
        assert_eq!(price.nanos(), 75_000_000);
        assert!((price.as_dollars() - 0.075).abs() < 1e-15);
        assert_eq!(price.to_string(), "$0.075000000");
    }

    #[test]
    fn refuses_negative_and_non_finite() {
        assert_eq!(Usd::from_dollars(-0.01), None);
        assert_eq!(Usd::from_dollars(f64::NAN), None);
        assert_eq!(Usd::from_dollars(f64::INFINITY), None);
    }
}
