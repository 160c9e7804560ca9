use serde::{Deserialize, Serialize};

use crate::ValidationErrors;

/// No real model costs more than this per million tokens; a larger figure is a typo.
const MAX_PRICE_PER_1M: f64 = 10_000.0;

/// A price in USD per million tokens, as entered by people (config files, the admin API).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PricingDraft {
    /// USD per million input tokens.
    pub input_per_1m: f64,
    /// USD per million output tokens.
    pub output_per_1m: f64,
    /// USD per million input tokens read from the upstream's prompt cache; absent means the
    /// input price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input_per_1m: Option<f64>,
    /// USD per million input tokens written to the upstream's prompt cache; absent means the
    /// input price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_per_1m: Option<f64>,
}

/// A validated price in USD per million tokens: finite and not negative.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "PricingDraft")]
pub struct ModelPricing {
    input_per_1m: f64,
    output_per_1m: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    cached_input_per_1m: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_write_per_1m: Option<f64>,
}

impl ModelPricing {
    /// A price, or the errors that make it unusable (reported under `field_prefix`).
    pub fn new(draft: PricingDraft, field_prefix: &str) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        let optional = [
            ("cached_input_per_1m", draft.cached_input_per_1m),
            ("cache_write_per_1m", draft.cache_write_per_1m),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some((name, value?)));
        for (name, value) in [
            ("input_per_1m", draft.input_per_1m),
            ("output_per_1m", draft.output_per_1m),
        ]
        .into_iter()
        .chain(optional)
        {
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
            cached_input_per_1m: draft.cached_input_per_1m,
            cache_write_per_1m: draft.cache_write_per_1m,
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

    /// USD per million cache-read input tokens, when set (else they cost the input price).
    pub fn cached_input_per_1m(&self) -> Option<f64> {
        self.cached_input_per_1m
    }

    /// USD per million cache-write input tokens, when set (else they cost the input price).
    pub fn cache_write_per_1m(&self) -> Option<f64> {
        self.cache_write_per_1m
    }

    /// The price as a draft, to edit and validate again.
    pub fn to_draft(&self) -> PricingDraft {
        PricingDraft {
            input_per_1m: self.input_per_1m,
            output_per_1m: self.output_per_1m,
            cached_input_per_1m: self.cached_input_per_1m,
            cache_write_per_1m: self.cache_write_per_1m,
        }
    }
}

impl TryFrom<PricingDraft> for ModelPricing {
    type Error = ValidationErrors;
    fn try_from(draft: PricingDraft) -> Result<Self, Self::Error> {
        Self::new(draft, "")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_prices_are_optional_and_validated_when_given() {
        let plain: ModelPricing =
            serde_json::from_str(r#"{"input_per_1m": 3.0, "output_per_1m": 15.0}"#).unwrap();
        assert_eq!(plain.cached_input_per_1m(), None);
        assert_eq!(plain.cache_write_per_1m(), None);
        let cached: ModelPricing = serde_json::from_str(
            r#"{"input_per_1m": 3.0, "output_per_1m": 15.0,
                "cached_input_per_1m": 0.3, "cache_write_per_1m": 3.75}"#,
        )
        .unwrap();
        assert_eq!(cached.cached_input_per_1m(), Some(0.3));
        assert_eq!(cached.cache_write_per_1m(), Some(3.75));
        let errors = ModelPricing::new(
            PricingDraft {
                cached_input_per_1m: Some(-1.0),
                cache_write_per_1m: Some(f64::INFINITY),
                ..PricingDraft::default()
            },
            "pricing.",
        )
        .unwrap_err();
        let text = format!("{errors:?}");
        assert!(text.contains("pricing.cached_input_per_1m"), "{text}");
        assert!(text.contains("pricing.cache_write_per_1m"), "{text}");
    }
}
