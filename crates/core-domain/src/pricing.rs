use serde::{Deserialize, Serialize};

use crate::ValidationErrors;

/// No real model costs more than this per million tokens; a larger figure is a typo.
const MAX_PRICE_PER_1M: f64 = 10_000.0;

/// A price in USD per million tokens, as entered by people (config files, the admin API).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PricingDraft {
    /// USD per million input tokens.
    pub input_per_1m: f64,
    /// USD per million output tokens.
    pub output_per_1m: f64,
}

/// A validated price in USD per million tokens: finite and not negative.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "PricingDraft")]
pub struct ModelPricing {
    input_per_1m: f64,
    output_per_1m: f64,
}

impl ModelPricing {
    /// A price, or the errors that make it unusable (reported under `field_prefix`).
    pub fn new(draft: PricingDraft, field_prefix: &str) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        for (name, value) in [
            ("input_per_1m", draft.input_per_1m),
            ("output_per_1m", draft.output_per_1m),
        ] {
            if !value.is_finite() || !(0.0..=MAX_PRICE_PER_1M).contains(&value) {
                errors.push(
                    format!("{field_prefix}{name}"),
                    format!("must be a number of USD between 0 and {MAX_PRICE_PER_1M}"),
                );
            }
        }
        errors.into_result(Self {
            input_per_1m: draft.input_per_1m,
            output_per_1m: draft.output_per_1m,
        })
    }

    /// USD per million input tokens.
    pub fn input_per_1m(&self) -> f64 {
        self.input_per_1m
    }

    /// USD per million output tokens.
    pub fn output_per_1m(&self) -> f64 {
        self.output_per_1m
    }
}

impl TryFrom<PricingDraft> for ModelPricing {
    type Error = ValidationErrors;
    fn try_from(draft: PricingDraft) -> Result<Self, Self::Error> {
        Self::new(draft, "")
    }
}
