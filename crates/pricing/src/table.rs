use std::collections::HashMap;

use core_domain::{ModelPricing, TokenUsage, Usd};
use dashmap::DashSet;

/// The models commander knows the price of out of the box: (model, USD per 1M input tokens,
/// USD per 1M output tokens, USD per 1M cache-read input tokens, USD per 1M cache-write input
/// tokens), from the providers' published list prices.
///
/// Cache prices as published: OpenAI bills cache reads at half the input price on the gpt-4o
/// and o-series models and writes at the input price; Anthropic bills reads at 10% and (5-minute)
/// writes at 125% of the input price; Gemini bills cached reads at its context-caching rate (the
/// storage per hour is not per call, so writes are priced as input); xAI publishes grok-3's
/// cached rate. Where a provider publishes no cache price (older models) both are the input
/// price: cached tokens then cost what uncached ones do, never less.
const BUILTIN_PRICES: &[(&str, f64, f64, f64, f64)] = &[
    ("gpt-4o", 2.50, 10.00, 1.25, 2.50),
    ("gpt-4o-mini", 0.15, 0.60, 0.075, 0.15),
    ("gpt-4-turbo", 10.00, 30.00, 10.00, 10.00),
    ("gpt-3.5-turbo", 0.50, 1.50, 0.50, 0.50),
    ("o1", 15.00, 60.00, 7.50, 15.00),
    ("o3-mini", 1.10, 4.40, 0.55, 1.10),
    ("claude-opus-4-6", 15.00, 75.00, 1.50, 18.75),
    ("claude-sonnet-4-5", 3.00, 15.00, 0.30, 3.75),
    ("claude-haiku-4-5", 0.80, 4.00, 0.08, 1.00),
    ("claude-3-opus", 15.00, 75.00, 1.50, 18.75),
    ("claude-3-sonnet", 3.00, 15.00, 0.30, 3.75),
    ("claude-3-haiku", 0.25, 1.25, 0.03, 0.30),
    ("gemini-2.0-flash", 0.10, 0.40, 0.025, 0.10),
    ("gemini-2.0-pro", 1.25, 10.00, 1.25, 1.25),
    ("gemini-1.5-pro", 1.25, 5.00, 0.3125, 1.25),
    ("gemini-1.5-flash", 0.075, 0.30, 0.01875, 0.075),
    ("grok-3", 3.00, 15.00, 0.75, 3.00),
    ("grok-2", 2.00, 10.00, 2.00, 2.00),
    // Embedding models: input only (they write no tokens) and no prompt cache.
    ("text-embedding-3-small", 0.02, 0.00, 0.02, 0.02),
    ("text-embedding-3-large", 0.13, 0.00, 0.13, 0.13),
    ("gemini-embedding-001", 0.15, 0.00, 0.15, 0.15),
];

/// A price in nano-dollars per million tokens, so that cost arithmetic is exact integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price {
    input_per_1m: Usd,
    output_per_1m: Usd,
    cached_input_per_1m: Usd,
    cache_write_per_1m: Usd,
}

impl Price {
    /// A price from USD amounts per million tokens. Cache reads and writes without a price of
    /// their own cost the input price.
    pub fn from_pricing(pricing: &ModelPricing) -> Self {
        let input = pricing.input_per_1m();
        Self::from_dollars(
            input,
            pricing.output_per_1m(),
            pricing.cached_input_per_1m().unwrap_or(input),
            pricing.cache_write_per_1m().unwrap_or(input),
        )
    }

    fn from_dollars(input: f64, output: f64, cached_input: f64, cache_write: f64) -> Self {
        // ModelPricing (and the built-in table) guarantee finite amounts in 0..=10_000, which
        // Usd always accepts.
        let usd = |dollars: f64| Usd::from_dollars(dollars).unwrap_or(Usd::ZERO);
        Self {
            input_per_1m: usd(input),
            output_per_1m: usd(output),
            cached_input_per_1m: usd(cached_input),
            cache_write_per_1m: usd(cache_write),
        }
    }

    /// The price of a million uncached input tokens.
    pub fn input_per_1m(&self) -> Usd {
        self.input_per_1m
    }

    /// The price of a million output tokens.
    pub fn output_per_1m(&self) -> Usd {
        self.output_per_1m
    }

    /// The cost of `usage` at this price, rounded to the nearest nano-dollar: uncached input at
    /// the input price, cache reads and writes at theirs, output (reasoning included) at the
    /// output price.
    pub fn cost_of(&self, usage: &TokenUsage) -> Usd {
        let term = |tokens: u32, price: Usd| u128::from(tokens) * u128::from(price.nanos());
        let nanos_times_1m = term(usage.uncached_input_tokens(), self.input_per_1m)
            + term(usage.cached_input_tokens, self.cached_input_per_1m)
            + term(usage.cache_write_tokens, self.cache_write_per_1m)
            + term(usage.output_tokens, self.output_per_1m);
        let nanos = (nanos_times_1m + 500_000) / 1_000_000;
        // At most 2 × u32::MAX tokens × 10^13 nano-dollars ÷ 10^6 (input parts never exceed
        // the input): far below u64::MAX.
        Usd::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// Where the price used for a cost came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriceSource {
    /// The specialist's own pricing.
    Specialist,
    /// The price table (a configured override or the built-in price).
    Table,
    /// Nowhere: the model is not priced and the cost is zero.
    Unknown,
}

/// The cost of one call and how sure we are of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CostEstimate {
    /// The cost (zero when unpriced).
    pub cost: Usd,
    /// False when no price was found for the model.
    pub pricing_known: bool,
    /// Where the price came from.
    pub source: PriceSource,
}

/// Prices by model name: the built-in table with configured overrides on top.
#[derive(Debug, Default)]
pub struct PriceTable {
    prices: HashMap<String, Price>,
    // Models we already warned about, so an unpriced model logs once, not once per call.
    warned_unpriced: DashSet<String>,
}

impl PriceTable {
    /// The built-in table alone.
    pub fn builtin() -> Self {
        Self::with_overrides(std::iter::empty())
    }

    /// The built-in table with `overrides` replacing or adding prices by model name.
    pub fn with_overrides(overrides: impl IntoIterator<Item = (String, ModelPricing)>) -> Self {
        let mut prices: HashMap<String, Price> = BUILTIN_PRICES
            .iter()
            .map(|&(model, input, output, cached_input, cache_write)| {
                let price = Price::from_dollars(input, output, cached_input, cache_write);
                (model.to_owned(), price)
            })
            .collect();
        for (model, pricing) in overrides {
            prices.insert(model, Price::from_pricing(&pricing));
        }
        Self {
            prices,
            warned_unpriced: DashSet::new(),
        }
    }

    /// The table's price for `model`: an exact match, else the model with a snapshot suffix
    /// (`-2024-08-06`, `-20241022`, `@20240620`, `-latest`, `-001`) removed.
    pub fn price_for_model(&self, model: &str) -> Option<Price> {
        let mut name = model;
        loop {
            if let Some(price) = self.prices.get(name) {
                return Some(*price);
            }
            name = strip_snapshot_suffix(name)?;
        }
    }

    /// The price a call to `model` is charged at, by the precedence rule: the specialist's own
    /// pricing, else the table; `None` when the model is not priced.
    pub fn price(&self, specialist_pricing: Option<&ModelPricing>, model: &str) -> Option<Price> {
        specialist_pricing
            .map(Price::from_pricing)
            .or_else(|| self.price_for_model(model))
    }

    /// The cost of `usage` for a call to `model`, by the precedence rule: the specialist's own
    /// pricing, else the table, else zero with `pricing_known = false` (and a warning, once per
    /// model).
    pub fn estimate(
        &self,
        specialist_pricing: Option<&ModelPricing>,
        model: &str,
        usage: &TokenUsage,
    ) -> CostEstimate {
        if let Some(pricing) = specialist_pricing {
            return CostEstimate {
                cost: Price::from_pricing(pricing).cost_of(usage),
                pricing_known: true,
                source: PriceSource::Specialist,
            };
        }
        if let Some(price) = self.price_for_model(model) {
            return CostEstimate {
                cost: price.cost_of(usage),
                pricing_known: true,
                source: PriceSource::Table,
            };
        }
        if !self.warned_unpriced.contains(model) && self.warned_unpriced.insert(model.to_owned()) {
            tracing::warn!(
                model,
                "no price known for this model; its calls are logged with cost 0 and pricing_known = false \
                 (add it under [pricing] or give the specialist its own pricing)"
            );
        }
        CostEstimate {
            cost: Usd::ZERO,
            pricing_known: false,
            source: PriceSource::Unknown,
        }
    }
}

/// `model` without one trailing snapshot marker, or `None` if it has none.
fn strip_snapshot_suffix(model: &str) -> Option<&str> {
    if let Some(base) = model.strip_suffix("-latest") {
        return Some(base);
    }
    let (base, tail) = model.rsplit_once(['-', '@'])?;
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    // YYYYMMDD (Anthropic, Vertex) or a three-digit revision (Gemini's -001, -002).
    if digits(tail, 8) || digits(tail, 3) {
        return Some(base);
    }
    // YYYY-MM-DD (OpenAI): the tail is DD, and the two parts before it are YYYY and MM.
    if digits(tail, 2) {
        let (rest, month) = base.rsplit_once('-')?;
        let (rest, year) = rest.rsplit_once('-')?;
        if digits(month, 2) && digits(year, 4) {
            return Some(rest);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use core_domain::PricingDraft;
    use proptest::prelude::*;

    use super::*;

    fn pricing(input: f64, output: f64) -> ModelPricing {
        ModelPricing::new(
            PricingDraft {
                input_per_1m: input,
                output_per_1m: output,
                ..PricingDraft::default()
            },
            "",
        )
        .unwrap()
    }

    #[test]
    fn every_original_model_has_its_listed_price() {
        // The original service's list, written out here rather than read from our table.
        let listed: [(&str, f64, f64); 21] = [
            ("gpt-4o", 2.50, 10.00),
            ("gpt-4o-mini", 0.15, 0.60),
            ("gpt-4-turbo", 10.0, 30.0),
            ("gpt-3.5-turbo", 0.50, 1.50),
            ("o1", 15.0, 60.0),
            ("o3-mini", 1.10, 4.40),
            ("claude-opus-4-6", 15.0, 75.0),
            ("claude-sonnet-4-5", 3.0, 15.0),
            ("claude-haiku-4-5", 0.80, 4.0),
            ("claude-3-opus", 15.0, 75.0),
            ("claude-3-sonnet", 3.0, 15.0),
            ("claude-3-haiku", 0.25, 1.25),
            ("gemini-2.0-flash", 0.10, 0.40),
            ("gemini-2.0-pro", 1.25, 10.0),
            ("gemini-1.5-pro", 1.25, 5.0),
            ("gemini-1.5-flash", 0.075, 0.30),
            ("grok-3", 3.0, 15.0),
            ("grok-2", 2.0, 10.0),
            ("text-embedding-3-small", 0.02, 0.0),
            ("text-embedding-3-large", 0.13, 0.0),
            ("gemini-embedding-001", 0.15, 0.0),
        ];
        let table = PriceTable::builtin();
        for (model, input, output) in listed {
            let only_input = table.estimate(None, model, &TokenUsage::reported(1_000_000, 0));
            let only_output = table.estimate(None, model, &TokenUsage::reported(0, 1_000_000));
            assert!(only_input.pricing_known, "{model} is priced");
            assert!(
                (only_input.cost.as_dollars() - input).abs() < 1e-9,
                "{model} input: {}",
                only_input.cost
            );
            assert!(
                (only_output.cost.as_dollars() - output).abs() < 1e-9,
                "{model} output: {}",
                only_output.cost
            );
        }
    }

    #[test]
    fn cost_arithmetic_is_exact_for_small_calls() {
        let table = PriceTable::builtin();
        // gemini-1.5-flash: 7.5e-8 USD per input token, 3e-7 per output token.
        let cost = table
            .estimate(None, "gemini-1.5-flash", &TokenUsage::reported(3, 7))
            .cost;
        assert_eq!(cost.nanos(), 3 * 75 + 7 * 300);
        // gpt-4o: 1234 in, 567 out = 1234 * 2500 + 567 * 10000 nano-dollars.
        let cost = table
            .estimate(None, "gpt-4o", &TokenUsage::reported(1234, 567))
            .cost;
        assert_eq!(cost.nanos(), 1234 * 2500 + 567 * 10_000);
    }

    #[test]
    fn cached_tokens_are_priced_at_the_published_cache_prices() {
        let table = PriceTable::builtin();
        let cost =
            |model: &str, usage: TokenUsage| table.estimate(None, model, &usage).cost.nanos();
        // gpt-4o: 1000 prompt tokens of which 400 cached, 100 output (30 of them reasoning).
        let usage = TokenUsage::reported(1000, 100)
            .with_cache(400, 0)
            .with_reasoning(30);
        assert_eq!(
            cost("gpt-4o", usage),
            600 * 2500 + 400 * 1250 + 100 * 10_000
        );
        // claude-sonnet-4-5: reads at 10%, writes at 125% of $3.
        let usage = TokenUsage::reported(1000, 10).with_cache(500, 200);
        assert_eq!(
            cost("claude-sonnet-4-5", usage),
            300 * 3000 + 500 * 300 + 200 * 3750 + 10 * 15_000
        );
        // gemini-2.0-flash: cached at $0.025.
        let usage = TokenUsage::reported(1000, 0).with_cache(1000, 0);
        assert_eq!(cost("gemini-2.0-flash", usage), 1000 * 25);
        // No published cache price: cached tokens cost the input price.
        let usage = TokenUsage::reported(1000, 0).with_cache(1000, 0);
        assert_eq!(
            cost("gpt-3.5-turbo", usage),
            cost("gpt-3.5-turbo", TokenUsage::reported(1000, 0))
        );
    }

    #[test]
    fn specialist_and_override_cache_prices_default_to_the_input_price() {
        let usage = TokenUsage::reported(1_000_000, 0).with_cache(400_000, 100_000);
        let plain = pricing(1.0, 0.0);
        assert_eq!(
            Price::from_pricing(&plain).cost_of(&usage).as_dollars(),
            1.0
        );
        let with_cache = ModelPricing::new(
            PricingDraft {
                input_per_1m: 1.0,
                output_per_1m: 0.0,
                cached_input_per_1m: Some(0.5),
                cache_write_per_1m: Some(2.0),
            },
            "",
        )
        .unwrap();
        let table = PriceTable::with_overrides([("m".to_owned(), with_cache)]);
        // 0.5M uncached × $1 + 0.4M × $0.5 + 0.1M × $2.
        assert_eq!(table.estimate(None, "m", &usage).cost.as_dollars(), 0.9);
        assert_eq!(
            table
                .estimate(Some(&with_cache), "other", &usage)
                .cost
                .as_dollars(),
            0.9
        );
    }

    #[test]
    fn fractions_of_a_nano_dollar_round_to_nearest() {
        let price = Price::from_pricing(&pricing(0.0001, 0.0)); // 0.1 nano-dollar per token
        assert_eq!(price.cost_of(&TokenUsage::reported(4, 0)).nanos(), 0);
        assert_eq!(price.cost_of(&TokenUsage::reported(5, 0)).nanos(), 1);
        assert_eq!(price.cost_of(&TokenUsage::reported(15, 0)).nanos(), 2);
    }

    #[test]
    fn specialist_pricing_beats_override_beats_builtin() {
        let usage = TokenUsage::reported(1_000_000, 0);
        let table = PriceTable::with_overrides([("gpt-4o".to_owned(), pricing(1.0, 1.0))]);
        let from_override = table.estimate(None, "gpt-4o", &usage);
        assert_eq!(from_override.cost.as_dollars(), 1.0);
        assert_eq!(from_override.source, PriceSource::Table);

        let own = pricing(0.5, 0.5);
        let from_specialist = table.estimate(Some(&own), "gpt-4o", &usage);
        assert_eq!(from_specialist.cost.as_dollars(), 0.5);
        assert_eq!(from_specialist.source, PriceSource::Specialist);

        assert_eq!(
            PriceTable::builtin()
                .estimate(None, "gpt-4o", &usage)
                .cost
                .as_dollars(),
            2.5
        );
    }

    #[test]
    fn overrides_can_add_models() {
        let table = PriceTable::with_overrides([("llama3.1:8b".to_owned(), pricing(0.1, 0.2))]);
        let estimate = table.estimate(None, "llama3.1:8b", &TokenUsage::reported(1_000_000, 0));
        assert!(estimate.pricing_known);
        assert_eq!(estimate.cost.as_dollars(), 0.1);
    }

    #[test]
    fn unknown_model_costs_zero_and_is_unpriced() {
        let table = PriceTable::builtin();
        for _ in 0..2 {
            let estimate = table.estimate(None, "mystery-1", &TokenUsage::reported(500, 500));
            assert_eq!(estimate.cost, Usd::ZERO);
            assert!(!estimate.pricing_known);
            assert_eq!(estimate.source, PriceSource::Unknown);
        }
        assert_eq!(table.warned_unpriced.len(), 1);
    }

    #[test]
    fn snapshots_match_their_model_but_siblings_do_not() {
        let table = PriceTable::builtin();
        let price = |m: &str| table.price_for_model(m);
        assert_eq!(price("gpt-4o-2024-08-06"), price("gpt-4o"));
        assert_eq!(price("gpt-4o-mini-2024-07-18"), price("gpt-4o-mini"));
        assert_eq!(price("claude-3-haiku-20240307"), price("claude-3-haiku"));
        assert_eq!(
            price("claude-sonnet-4-5@20250929"),
            price("claude-sonnet-4-5")
        );
        assert_eq!(price("gemini-1.5-pro-002"), price("gemini-1.5-pro"));
        assert_eq!(price("gpt-4o-latest"), price("gpt-4o"));
        // Different models that merely share a prefix are not priced as each other.
        assert_eq!(price("o1-mini"), None);
        assert_eq!(price("gpt-4o-audio-preview"), None);
        assert_eq!(price("gemini-2.0-flash-lite"), None);
    }

    /// Dollars per million tokens across ModelPricing's whole accepted range, in steps of a
    /// thousandth of a cent so both tiny and large prices come up.
    fn any_dollars_per_1m() -> impl Strategy<Value = f64> {
        (0u32..=1_000_000_000)
            .prop_map(|thousandths_of_cent| f64::from(thousandths_of_cent) / 100_000.0)
    }

    fn any_pricing() -> impl Strategy<Value = ModelPricing> {
        (any_dollars_per_1m(), any_dollars_per_1m())
            .prop_map(|(input, output)| pricing(input, output))
    }

    /// A model the built-in table prices, one priced through a snapshot suffix, or one it
    /// does not know.
    fn any_model() -> impl Strategy<Value = String> {
        prop_oneof![
            proptest::sample::select(BUILTIN_PRICES).prop_map(|(model, ..)| model.to_owned()),
            proptest::sample::select(BUILTIN_PRICES)
                .prop_map(|(model, ..)| format!("{model}-2024-08-06")),
            "[a-z]{1,12}-[0-9]{1,3}".prop_map(|model| format!("unpriced-{model}")),
        ]
    }

    proptest! {
        #[test]
        fn cost_is_monotonic_in_tokens(
            price in any_pricing(),
            input in any::<u32>(),
            output in any::<u32>(),
            more_input in any::<u32>(),
            more_output in any::<u32>(),
        ) {
            let price = Price::from_pricing(&price);
            let less = price.cost_of(&TokenUsage::reported(input, output));
            let more = price.cost_of(&TokenUsage::reported(
                input.saturating_add(more_input),
                output.saturating_add(more_output),
            ));
            prop_assert!(more >= less, "{more} < {less}");
        }

        #[test]
        fn zero_tokens_cost_nothing_whatever_the_price(
            own in proptest::option::of(any_pricing()),
            model in any_model(),
        ) {
            let estimate = PriceTable::builtin().estimate(own.as_ref(), &model, &TokenUsage::reported(0, 0));
            prop_assert_eq!(estimate.cost, Usd::ZERO);
        }

        #[test]
        fn specialist_pricing_overrides_the_table_for_every_model(
            own in any_pricing(),
            table_price in any_pricing(),
            model in any_model(),
            input in any::<u32>(),
            output in any::<u32>(),
        ) {
            let table = PriceTable::with_overrides([(model.clone(), table_price)]);
            let usage = TokenUsage::reported(input, output);
            let estimate = table.estimate(Some(&own), &model, &usage);
            prop_assert_eq!(estimate.source, PriceSource::Specialist);
            prop_assert!(estimate.pricing_known);
            prop_assert_eq!(estimate.cost, Price::from_pricing(&own).cost_of(&usage));
        }

        /// With whole micro-dollars per million tokens (a thousandth of a nano-dollar per
        /// token) the cost is the exact integer result, rounded half up: no float drift.
        #[test]
        fn cost_is_exact_integer_arithmetic(
            input_micros_per_1m in 0u64..=10_000_000_000,
            output_micros_per_1m in 0u64..=10_000_000_000,
            input in any::<u32>(),
            output in any::<u32>(),
        ) {
            let as_dollars = |micros: u64| micros as f64 / 1e6;
            let price = Price::from_pricing(&pricing(
                as_dollars(input_micros_per_1m),
                as_dollars(output_micros_per_1m),
            ));
            let thousandths_of_a_nano = u128::from(input) * u128::from(input_micros_per_1m)
                + u128::from(output) * u128::from(output_micros_per_1m);
            let exact = u64::try_from((thousandths_of_a_nano + 500) / 1000).unwrap();
            prop_assert_eq!(price.cost_of(&TokenUsage::reported(input, output)).nanos(), exact);
        }

        /// Every part at its own price, summed exactly before the one rounding.
        #[test]
        fn cost_with_cache_parts_is_exact_integer_arithmetic(
            micros_per_1m in proptest::array::uniform4(0u64..=10_000_000_000),
            input in any::<u32>(),
            cached_share in 0u32..=1000,
            write_share in 0u32..=1000,
            output in any::<u32>(),
            reasoning_share in 0u32..=1000,
        ) {
            let [input_price, output_price, cached_price, write_price] = micros_per_1m;
            let as_dollars = |micros: u64| micros as f64 / 1e6;
            let price = Price::from_pricing(&ModelPricing::new(
                PricingDraft {
                    input_per_1m: as_dollars(input_price),
                    output_per_1m: as_dollars(output_price),
                    cached_input_per_1m: Some(as_dollars(cached_price)),
                    cache_write_per_1m: Some(as_dollars(write_price)),
                },
                "",
            ).unwrap());
            let part = |whole: u32, share: u32| u32::try_from(u64::from(whole) * u64::from(share) / 1000).unwrap();
            let cached = part(input, cached_share);
            let written = part(input - cached, write_share);
            let usage = TokenUsage::reported(input, output)
                .with_cache(cached, written)
                .with_reasoning(part(output, reasoning_share));
            let thousandths_of_a_nano = u128::from(input - cached - written) * u128::from(input_price)
                + u128::from(cached) * u128::from(cached_price)
                + u128::from(written) * u128::from(write_price)
                + u128::from(output) * u128::from(output_price);
            let exact = u64::try_from((thousandths_of_a_nano + 500) / 1000).unwrap();
            prop_assert_eq!(price.cost_of(&usage).nanos(), exact);
        }

        /// Cheaper cache reads never make a call cost more than it would uncached.
        #[test]
        fn cache_reads_never_cost_more_than_uncached_input_in_the_builtin_table(
            model in any_model(),
            input in any::<u32>(),
            cached_share in 0u32..=1000,
            output in any::<u32>(),
        ) {
            let table = PriceTable::builtin();
            let cached = u32::try_from(u64::from(input) * u64::from(cached_share) / 1000).unwrap();
            let plain = table.estimate(None, &model, &TokenUsage::reported(input, output)).cost;
            let with_cache = table
                .estimate(None, &model, &TokenUsage::reported(input, output).with_cache(cached, 0))
                .cost;
            prop_assert!(with_cache <= plain, "{with_cache} > {plain}");
        }

        /// With whole nano-dollars per token nothing is rounded, so two calls cost exactly what
        /// one call with their summed tokens does.
        #[test]
        fn costs_of_whole_nano_prices_add_up_exactly(
            input_nanos_per_token in 0u64..=10_000,
            output_nanos_per_token in 0u64..=10_000,
            first in (0..=u32::MAX / 2, 0..=u32::MAX / 2),
            second in (0..=u32::MAX / 2, 0..=u32::MAX / 2),
        ) {
            // n nano-dollars per token is n thousandths of a dollar per million tokens.
            let price = Price::from_pricing(&pricing(
                input_nanos_per_token as f64 / 1000.0,
                output_nanos_per_token as f64 / 1000.0,
            ));
            let cost = |(input, output): (u32, u32)| {
                price.cost_of(&TokenUsage::reported(input, output)).nanos()
            };
            prop_assert_eq!(
                cost(first) + cost(second),
                cost((first.0 + second.0, first.1 + second.1))
            );
            prop_assert_eq!(
                cost(first),
                u64::from(first.0) * input_nanos_per_token + u64::from(first.1) * output_nanos_per_token
            );
        }
    }
}
