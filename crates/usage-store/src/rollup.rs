//! The hourly rollup: the usage log summed per UTC hour and per value of every report
//! dimension, so a report over weeks reads a few rows an hour instead of every call.
//!
//! The log stays the truth. Every batch the store writes counts itself into `usage_hours`
//! (`written`); [`UsageStore::seal_hours`] computes a finished hour's rollup from its rows and
//! records the count it saw (`sealed`). A row written into the hour later (a journal replayed
//! after an outage) moves `written` on, and the hour is read from the log again until it is
//! sealed anew. Reports ([`UsageStore::summary`], [`UsageStore::overview`]) read sealed hours
//! from the rollup and everything else in their range — the part hours at its edges, hours
//! not sealed or stale — from the log, with the same arithmetic ([`Cell::add_call`]), in one
//! snapshot. Hours never registered hold no call (every batch registers its hours) and cost
//! nothing.
//!
//! Counts, tokens and cost are exact either way (cost up to the order doubles are added in).
//! Latency percentiles come from a histogram of 1%-wide bins from a microsecond up: the
//! nearest-rank value's bin, its middle reported (clamped to the group's smallest and largest
//! latency), within 0.5% of the exact value (a microsecond below one). Reports over few calls
//! ([`crate::DatabaseConfig::exact_report_calls`]) skip the rollup and stay exact.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDateTime, TimeDelta, Timelike, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Double, Nullable, Text, Timestamp};
use serde::{Deserialize, Serialize};

use crate::report::{Bucket, GroupBy, SeriesRow, SummaryRow, Totals};
use crate::schema::{usage_hours, usage_rollup};
use crate::store::Pool;
use crate::{StoreError, UsageStore};

/// How wide a latency bin is: each bin's upper edge is 1% above its lower edge.
const GROWTH: f64 = 1.01;

/// Where the bins start, in milliseconds (a microsecond): anything faster shares bin 0, which
/// is reported as 0 (clamped to the group's fastest call). Failures refused before any
/// upstream, and the mock provider, answer in well under a millisecond.
const FIRST_EDGE_MS: f64 = 0.001;

/// The last bin: 1 µs × 1.01^3100 is years; anything slower shares it.
const LAST_BIN: u32 = 3_100;

/// More separate stretches of unsealed time than this in one range (a log sealed in patches)
/// and the report reads the log itself: one statement per stretch would cost more.
const MAX_GAPS: usize = 256;

/// More unsealed calls than this in a range (the sealer is behind, e.g. just after the
/// rollup's migration on a large log) and the report reads the log itself in SQL: folding them
/// here would hold them all in memory at once.
const MAX_GAP_CALLS: i64 = 200_000;

/// Rows per INSERT of rollup cells: 12 columns a row, well inside both backends' bind limits.
const CELLS_PER_STATEMENT: usize = 1_000;

/// Whether a report's latency percentiles are exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Percentiles {
    /// Nearest rank over the calls themselves.
    Exact,
    /// Nearest rank over 1%-wide latency bins (within 0.5%); counts, tokens and cost exact.
    Approximate,
}

impl Percentiles {
    /// The lower-case name used in the API.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Exact => "exact",
            Self::Approximate => "approximate",
        }
    }
}

/// What a rollup row is keyed by besides its hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Dimension {
    /// Every call of the hour, under the key `all`.
    All,
    Specialist,
    Model,
    Provider,
    User,
    Door,
}

impl Dimension {
    const EVERY: [Self; 6] = [
        Self::All,
        Self::Specialist,
        Self::Model,
        Self::Provider,
        Self::User,
        Self::Door,
    ];

    const fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Specialist => "specialist",
            Self::Model => "model",
            Self::Provider => "provider",
            Self::User => "user",
            Self::Door => "door",
        }
    }

    fn parse(raw: &str) -> Option<Self> {
        Self::EVERY.into_iter().find(|d| d.as_str() == raw)
    }

    /// The dimension a grouping reads: days are summed from the hours' `all` rows.
    pub(crate) const fn of(group_by: GroupBy) -> Self {
        match group_by {
            GroupBy::Specialist => Self::Specialist,
            GroupBy::Model => Self::Model,
            GroupBy::Provider => Self::Provider,
            GroupBy::User => Self::User,
            GroupBy::Door => Self::Door,
            GroupBy::Day => Self::All,
        }
    }

    /// The expression of `usage_logs` the dimension's key is (fixed text): a summary's.
    fn sql(self) -> &'static str {
        let group_by = match self {
            Self::All => return "'all'",
            Self::Specialist => GroupBy::Specialist,
            Self::Model => GroupBy::Model,
            Self::Provider => GroupBy::Provider,
            Self::User => GroupBy::User,
            Self::Door => GroupBy::Door,
        };
        // The same on both backends for every grouping but days.
        group_by.key_sql(false)
    }

    fn key_of(self, call: &RawCall) -> &str {
        match self {
            Self::All => "all",
            Self::Specialist => &call.specialist_id,
            Self::Model => &call.model,
            Self::Provider => &call.provider,
            Self::User => &call.user_key,
            Self::Door => &call.door,
        }
    }
}

/// Latencies counted in 1%-wide bins: bin 0 holds everything under 1 µs, bin `b >= 1` holds
/// `[1.01^(b-1), 1.01^b)` µs. Kept sparse, as `(bin, count)` pairs by ascending bin: an hour's
/// cell fills a hundred or so of the 3,101 bins, and a month's report adds up thousands of
/// cells (a map per histogram made that the report's whole cost).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Histogram {
    bins: Vec<(u32, u64)>,
}

impl Histogram {
    fn bin_of(latency_ms: f64) -> u32 {
        // NaN and negatives (a clock that stepped back) count as the fastest bin.
        if latency_ms.is_nan() || latency_ms < FIRST_EDGE_MS {
            return 0;
        }
        let bin = ((latency_ms / FIRST_EDGE_MS).ln() / GROWTH.ln()).floor() + 1.0;
        if bin >= f64::from(LAST_BIN) {
            LAST_BIN
        } else {
            // In 1..LAST_BIN: the float-to-int cast cannot truncate.
            bin as u32
        }
    }

    /// The value reported for a bin: its geometric middle (0 for bin 0).
    fn middle_of(bin: u32) -> f64 {
        if bin == 0 {
            0.0
        } else {
            FIRST_EDGE_MS * GROWTH.powf(f64::from(bin) - 0.5)
        }
    }

    fn record(&mut self, latency_ms: f64) {
        self.add(Self::bin_of(latency_ms), 1);
    }

    fn add(&mut self, bin: u32, count: u64) {
        match self.bins.binary_search_by_key(&bin, |&(b, _)| b) {
            Ok(at) => self.bins[at].1 = self.bins[at].1.saturating_add(count),
            Err(at) => self.bins.insert(at, (bin, count)),
        }
    }

    /// `(bin delta, count)` pairs as LEB128 varints, bins ascending.
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bins.len() * 3);
        let mut previous = 0;
        for &(bin, count) in &self.bins {
            put_varint(&mut out, u64::from(bin - previous));
            put_varint(&mut out, count);
            previous = bin;
        }
        out
    }

    #[cfg(test)]
    fn decode(bytes: &[u8]) -> Result<Self, String> {
        let mut bins = Vec::with_capacity(bytes.len() / 2);
        Self::walk(bytes, |bin, count| bins.push((bin, count)))?;
        Ok(Self { bins })
    }

    /// Calls `each` with every `(bin, count)` of an encoded histogram, by ascending bin; an
    /// error (after the pairs before it) for bytes [`Self::encode`] does not write.
    fn walk(bytes: &[u8], mut each: impl FnMut(u32, u64)) -> Result<(), String> {
        let mut at = 0;
        let mut bin = 0u64;
        let mut first = true;
        while at < bytes.len() {
            let delta = take_varint(bytes, &mut at)?;
            let count = take_varint(bytes, &mut at)?;
            if delta == 0 && !first {
                return Err("a bin given twice".to_owned());
            }
            first = false;
            bin = bin
                .checked_add(delta)
                .filter(|b| *b <= u64::from(LAST_BIN))
                .ok_or("a bin beyond the last")?;
            // Checked against LAST_BIN just above.
            each(bin as u32, count);
        }
        Ok(())
    }
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn take_varint(bytes: &[u8], at: &mut usize) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at).ok_or("a number cut short")?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("a number longer than 64 bits".to_owned())
}

/// A group's calls without their latencies' spread: what a summary row reports but the
/// percentiles, and what a rollup row stores beside its histogram.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = usage_rollup)]
struct Sums {
    requests: i64,
    successes: i64,
    input_tokens: i64,
    output_tokens: i64,
    cost_usd: f64,
    latency_sum_ms: f64,
    latency_min_ms: f64,
    latency_max_ms: f64,
}

impl Default for Sums {
    fn default() -> Self {
        Self {
            requests: 0,
            successes: 0,
            input_tokens: 0,
            output_tokens: 0,
            cost_usd: 0.0,
            latency_sum_ms: 0.0,
            latency_min_ms: f64::INFINITY,
            latency_max_ms: f64::NEG_INFINITY,
        }
    }
}

impl Sums {
    fn add_call(&mut self, call: &RawCall) {
        self.requests = self.requests.saturating_add(1);
        self.successes = self.successes.saturating_add(i64::from(call.success));
        self.input_tokens = self.input_tokens.saturating_add(call.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(call.output_tokens);
        self.cost_usd += call.cost_usd;
        self.latency_sum_ms += call.latency_ms;
        self.latency_min_ms = self.latency_min_ms.min(call.latency_ms);
        self.latency_max_ms = self.latency_max_ms.max(call.latency_ms);
    }

    fn merge(&mut self, other: &Self) {
        self.requests = self.requests.saturating_add(other.requests);
        self.successes = self.successes.saturating_add(other.successes);
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
        self.cost_usd += other.cost_usd;
        self.latency_sum_ms += other.latency_sum_ms;
        self.latency_min_ms = self.latency_min_ms.min(other.latency_min_ms);
        self.latency_max_ms = self.latency_max_ms.max(other.latency_max_ms);
    }

    /// The summary row of these calls with the percentiles given.
    fn row_with(&self, key: String, p50_latency_ms: f64, p95_latency_ms: f64) -> SummaryRow {
        SummaryRow {
            key,
            requests: self.requests,
            successes: self.successes,
            failures: self.requests.saturating_sub(self.successes),
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cost_usd: self.cost_usd,
            avg_latency_ms: if self.requests > 0 {
                self.latency_sum_ms / self.requests as f64
            } else {
                0.0
            },
            p50_latency_ms,
            p95_latency_ms,
        }
    }
}

/// A cell's latencies: counted, for cells folded from the log; as stored, for cells read from
/// the rollup, walked only when a report row is made (a year's cells split by user, decoded,
/// held 450 MB; as stored, about 2 bytes a bin instead of 16, an eighth). A cell may hold both
/// after a merge.
#[derive(Debug, Clone, Default, PartialEq)]
struct Latencies {
    /// Bytes [`Histogram::walk`] accepted when they were read.
    stored: Vec<u8>,
    counted: Histogram,
}

impl Latencies {
    /// Every `(bin, count)`, the stored ones first (bins may come twice, out of order).
    fn for_each(&self, mut each: impl FnMut(u32, u64)) {
        // Checked when read: the walk cannot fail.
        let _ = Histogram::walk(&self.stored, &mut each);
        for &(bin, count) in &self.counted.bins {
            each(bin, count);
        }
    }

    fn merge(&mut self, other: &Self) {
        let counted = &mut self.counted;
        other.for_each(|bin, count| counted.add(bin, count));
    }

    fn encode(&self) -> Vec<u8> {
        if self.counted.bins.is_empty() {
            return self.stored.clone();
        }
        let mut all = self.counted.clone();
        let _ = Histogram::walk(&self.stored, |bin, count| all.add(bin, count));
        all.encode()
    }
}

/// One group's calls: their sums, and their latencies as a histogram so groups can be added
/// up.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Cell {
    sums: Sums,
    latencies: Latencies,
}

impl Cell {
    fn add_call(&mut self, call: &RawCall) {
        self.sums.add_call(call);
        self.latencies.counted.record(call.latency_ms);
    }

    fn merge(&mut self, other: &Self) {
        self.sums.merge(&other.sums);
        self.latencies.merge(&other.latencies);
    }
}

/// Cells added up for one row of a report: their sums at once, their histograms only when the
/// row is made, counted into one dense array shared by every row (adding thousands of sparse
/// histograms into each other took a month's report by user 200 ms).
#[derive(Debug, Default)]
struct Tally<'a> {
    sums: Sums,
    histograms: Vec<&'a Latencies>,
}

impl<'a> Tally<'a> {
    fn add(&mut self, cell: &'a Cell) {
        self.sums.merge(&cell.sums);
        self.histograms.push(&cell.latencies);
    }

    /// The row, its nearest-rank p50 and p95 read from the histograms' bins added up in
    /// `scratch` (all zeros, `LAST_BIN + 1` long; left all zeros).
    fn row(&self, key: String, scratch: &mut [u64]) -> SummaryRow {
        let sums = &self.sums;
        if sums.requests <= 0 {
            return sums.row_with(key, 0.0, 0.0);
        }
        // Only the bins some histogram uses are read: a key's calls fill a narrow band.
        let (mut first, mut last) = (usize::MAX, 0);
        for latencies in &self.histograms {
            latencies.for_each(|bin, count| {
                if let Some(slot) = scratch.get_mut(bin as usize) {
                    *slot = slot.saturating_add(count);
                    first = first.min(bin as usize);
                    last = last.max(bin as usize);
                }
            });
        }
        let rank = |percent: i64| {
            u64::try_from(sums.requests.saturating_mul(percent).saturating_add(99) / 100)
                .unwrap_or(1)
        };
        let ranks = [rank(50), rank(95)];
        let mut found: [Option<usize>; 2] = [None, None];
        let mut seen = 0u64;
        for (bin, slot) in scratch.iter_mut().enumerate().take(last + 1).skip(first) {
            if *slot == 0 {
                continue;
            }
            seen = seen.saturating_add(*slot);
            *slot = 0;
            for (at, rank) in found.iter_mut().zip(ranks) {
                if at.is_none() && seen >= rank {
                    *at = Some(bin);
                }
            }
        }
        let (low, high) = (
            sums.latency_min_ms.min(sums.latency_max_ms),
            sums.latency_max_ms.max(sums.latency_min_ms),
        );
        // A bin index is at most LAST_BIN; a rank beyond the counted calls (a hand-edited
        // rollup) reads as the slowest call.
        let value = |at: Option<usize>| {
            at.map_or(high, |bin| {
                Histogram::middle_of(u32::try_from(bin).unwrap_or(LAST_BIN)).clamp(low, high)
            })
        };
        sums.row_with(key, value(found[0]), value(found[1]))
    }
}

/// The dense array [`Tally::row`] counts in.
fn scratch() -> Vec<u64> {
    vec![0; LAST_BIN as usize + 1]
}

/// The columns of one logged call a rollup needs.
#[derive(Debug, QueryableByName)]
struct RawCall {
    /// The hour the database puts the call's timestamp in (`None`: a timestamp it cannot
    /// read as a time, edited by hand).
    #[diesel(sql_type = Nullable<Timestamp>)]
    hour: Option<NaiveDateTime>,
    #[diesel(sql_type = Text)]
    specialist_id: String,
    #[diesel(sql_type = Text)]
    model: String,
    #[diesel(sql_type = Text)]
    provider: String,
    #[diesel(sql_type = Text)]
    user_key: String,
    #[diesel(sql_type = Text)]
    door: String,
    #[diesel(sql_type = Bool)]
    success: bool,
    #[diesel(sql_type = BigInt)]
    input_tokens: i64,
    #[diesel(sql_type = BigInt)]
    output_tokens: i64,
    #[diesel(sql_type = Double)]
    cost_usd: f64,
    #[diesel(sql_type = Double)]
    latency_ms: f64,
}

/// The calls with `from <= timestamp < to`, in the columns a rollup needs (bind 1 and 2).
fn raw_calls_sql(postgres: bool) -> String {
    // The hour computed by the database, not parsed here: a hand-edited SQLite timestamp
    // (`2026-11-20 00:05:00 UTC`) would fail the whole read, and one in another shape
    // (`2026-11-20T07:30:00`) sorts into another hour than it names.
    let hour = if postgres {
        "date_trunc('hour', timestamp)"
    } else {
        "strftime('%Y-%m-%d %H:00:00', timestamp)"
    };
    placeholders(
        &format!(
            "SELECT {hour} AS hour, specialist_id, model, provider,
                COALESCE(user_email_hash, 'anonymous') AS user_key, door, success,
                input_tokens, output_tokens, estimated_cost_usd AS cost_usd, latency_ms
             FROM usage_logs WHERE timestamp >= {{1}} AND timestamp < {{2}}"
        ),
        postgres,
    )
}

/// A stored rollup row.
#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = usage_rollup)]
struct RollupRow {
    dimension: String,
    hour: NaiveDateTime,
    key: String,
    #[diesel(embed)]
    sums: Sums,
    latency_histogram: Vec<u8>,
}

impl RollupRow {
    fn of(dimension: Dimension, hour: NaiveDateTime, key: String, cell: &Cell) -> Self {
        Self {
            dimension: dimension.as_str().to_owned(),
            hour,
            key,
            sums: cell.sums.clone(),
            latency_histogram: cell.latencies.encode(),
        }
    }

    fn into_cell(self) -> Result<(Dimension, NaiveDateTime, String, Cell), StoreError> {
        let dimension = Dimension::parse(&self.dimension).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "rollup dimension '{}'",
                self.dimension.escape_debug()
            ))
        })?;
        Histogram::walk(&self.latency_histogram, |_, _| {}).map_err(|e| {
            StoreError::Corrupt(format!("rollup histogram of hour {}: {e}", self.hour))
        })?;
        let cell = Cell {
            sums: self.sums,
            latencies: Latencies {
                stored: self.latency_histogram,
                counted: Histogram::default(),
            },
        };
        Ok((dimension, self.hour, self.key, cell))
    }
}

/// The start of the UTC hour `time` falls in.
pub(crate) fn hour_of(time: NaiveDateTime) -> NaiveDateTime {
    time.with_nanosecond(0)
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_minute(0))
        .unwrap_or(time)
}

/// The end of the hour starting at `hour`; chrono's last instant for a time that close to it
/// (a hand-edited row, never a real call): adding would panic.
fn hour_after(hour: NaiveDateTime) -> NaiveDateTime {
    hour.checked_add_signed(TimeDelta::hours(1))
        .unwrap_or(NaiveDateTime::MAX)
}

/// The first hour starting at or after `time`.
fn hour_at_or_after(time: NaiveDateTime) -> NaiveDateTime {
    let floor = hour_of(time);
    if floor == time {
        floor
    } else {
        floor
            .checked_add_signed(TimeDelta::hours(1))
            .unwrap_or(floor)
    }
}

/// Cells per (dimension, hour, key), in that order: the order reports add them up in, so a
/// report's sums come out the same however often it is run.
#[derive(Debug, Default)]
pub(crate) struct Cells {
    cells: BTreeMap<(Dimension, NaiveDateTime, String), Cell>,
}

impl Cells {
    /// Folds `calls` read from `[start, end)` in: each under the hour the database put it in
    /// when that lies in the stretch, else under the stretch's first hour (sealing passes the
    /// hour's own bounds, so everything read for an hour is filed under it).
    fn add_calls(
        &mut self,
        calls: &[RawCall],
        dimensions: &[Dimension],
        (start, end): (NaiveDateTime, NaiveDateTime),
    ) {
        let first = hour_of(start);
        for call in calls {
            let hour = call
                .hour
                .filter(|hour| (first..end).contains(hour))
                .unwrap_or(first);
            for &dimension in dimensions {
                self.cells
                    .entry((dimension, hour, dimension.key_of(call).to_owned()))
                    .or_default()
                    .add_call(call);
            }
        }
    }

    /// Adds a cell read from the rollup: moved in as it is (its histogram still stored), or
    /// merged into one already there (which the primary key rules out).
    fn insert(&mut self, dimension: Dimension, hour: NaiveDateTime, key: String, cell: Cell) {
        match self.cells.entry((dimension, hour, key)) {
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(cell);
            }
            std::collections::btree_map::Entry::Occupied(mut slot) => slot.get_mut().merge(&cell),
        }
    }

    fn of(&self, dimension: Dimension) -> impl Iterator<Item = (NaiveDateTime, &str, &Cell)> {
        self.cells
            .iter()
            .filter(move |((d, _, _), _)| *d == dimension)
            .map(|((_, hour, key), cell)| (*hour, key.as_str(), cell))
    }

    /// Every call: what [`UsageStore::totals`] reports.
    pub(crate) fn totals(&self) -> Totals {
        let mut all = Tally::default();
        for (_, _, cell) in self.of(Dimension::All) {
            all.add(cell);
        }
        if all.sums.requests == 0 {
            return Totals::default();
        }
        all.row(String::new(), &mut scratch()).into()
    }

    /// One row per key of the grouping, ordered by key.
    pub(crate) fn summary(&self, group_by: GroupBy) -> Vec<SummaryRow> {
        let mut groups: BTreeMap<Cow<'_, str>, Tally<'_>> = BTreeMap::new();
        let mut days = DayNames::default();
        for (hour, key, cell) in self.of(Dimension::of(group_by)) {
            let key = match group_by {
                GroupBy::Day => Cow::Owned(days.name(hour).to_owned()),
                _ => Cow::Borrowed(key),
            };
            groups.entry(key).or_default().add(cell);
        }
        let mut scratch = scratch();
        groups
            .into_iter()
            .map(|(key, tally)| tally.row(key.into_owned(), &mut scratch))
            .collect()
    }

    /// One row per bucket and key of the split, ordered by bucket then key.
    pub(crate) fn series(&self, bucket: Bucket, split: GroupBy) -> Vec<SeriesRow> {
        // Buckets by index into `names`: cells come in hour order, so each bucket is named
        // once, not once a cell.
        let mut names: Vec<String> = Vec::new();
        let mut last_hour = None;
        let mut days = DayNames::default();
        let mut groups: BTreeMap<(usize, Cow<'_, str>), Tally<'_>> = BTreeMap::new();
        for (hour, key, cell) in self.of(Dimension::of(split)) {
            if last_hour != Some(hour) {
                let name = match bucket {
                    Bucket::Hour => hour.format("%Y-%m-%dT%H:00:00Z").to_string(),
                    Bucket::Day => days.name(hour).to_owned(),
                };
                if names.last() != Some(&name) {
                    names.push(name);
                }
                last_hour = Some(hour);
            }
            let key = match split {
                GroupBy::Day => Cow::Owned(days.name(hour).to_owned()),
                _ => Cow::Borrowed(key),
            };
            groups.entry((names.len() - 1, key)).or_default().add(cell);
        }
        let mut scratch = scratch();
        groups
            .into_iter()
            .map(|((bucket, key), tally)| SeriesRow {
                bucket_start: names[bucket].clone(),
                group: tally.row(key.into_owned(), &mut scratch),
            })
            .collect()
    }
}

/// `YYYY-MM-DD` of the hours met in order, each day formatted once.
#[derive(Debug, Default)]
struct DayNames {
    day: Option<chrono::NaiveDate>,
    name: String,
}

impl DayNames {
    fn name(&mut self, hour: NaiveDateTime) -> &str {
        let day = hour.date();
        if self.day != Some(day) {
            self.day = Some(day);
            self.name = day.format("%Y-%m-%d").to_string();
        }
        &self.name
    }
}

/// An hour inside a report's range that has had rows written, and its rollup's state.
#[derive(Debug, QueryableByName)]
struct HourRow {
    #[diesel(sql_type = Timestamp)]
    hour: NaiveDateTime,
    #[diesel(sql_type = BigInt)]
    written: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    sealed: Option<i64>,
    /// The sealed rollup's calls (0 for an hour never sealed).
    #[diesel(sql_type = BigInt)]
    requests: i64,
}

impl HourRow {
    /// Its rollup counts every row written into it.
    fn is_current(&self) -> bool {
        self.sealed == Some(self.written)
    }
}

#[derive(Debug, QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

#[derive(Debug, QueryableByName)]
struct HourState {
    #[diesel(sql_type = BigInt)]
    written: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    sealed: Option<i64>,
}

#[derive(Debug, QueryableByName)]
struct StaleHour {
    #[diesel(sql_type = Timestamp)]
    hour: NaiveDateTime,
}

/// The statements of this module in a backend's placeholders: `{1}`, `{2}` become `$1`,
/// `$2` or `?1`, `?2`; `{earliest}` the earliest hour.
pub(crate) fn placeholders(sql: &str, postgres: bool) -> String {
    let mark = if postgres { "$" } else { "?" };
    // `{earliest}`: the first hour a report may name. PostgreSQL also stores `-infinity`,
    // which no report reaches and chrono cannot read.
    let earliest = if postgres {
        "TIMESTAMP '0001-01-01 00:00:00'"
    } else {
        "'0001-01-01 00:00:00'"
    };
    sql.replace("{1}", &format!("{mark}1"))
        .replace("{2}", &format!("{mark}2"))
        .replace("{earliest}", earliest)
}

/// The hours within `[{1}, {2})` that have had rows written, with their rollup's calls.
const HOURS_SQL: &str = "SELECT h.hour AS hour, h.written AS written, h.sealed AS sealed,
        COALESCE(r.requests, 0) AS requests
    FROM usage_hours h
    LEFT JOIN usage_rollup r ON r.dimension = 'all' AND r.hour = h.hour AND r.key = 'all'
    WHERE h.hour >= {1} AND h.hour < {2}
    ORDER BY h.hour";

const COUNT_SQL: &str =
    "SELECT COUNT(*) AS count FROM usage_logs WHERE timestamp >= {1} AND timestamp < {2}";

/// A range split by what is read where: its whole hours (`first..last`) that have had rows
/// written, and the stretches the log must be read for ([`gaps`]).
struct RangePlan {
    first: NaiveDateTime,
    last: NaiveDateTime,
    hours: Vec<HourRow>,
    gaps: Vec<(NaiveDateTime, NaiveDateTime)>,
}

/// The [`RangePlan`] of `[$from, $to)`, read on `$conn`.
macro_rules! plan_range {
    ($conn:expr, $postgres:expr, $from:expr, $to:expr) => {{
        let (from, to): (NaiveDateTime, NaiveDateTime) = ($from, $to);
        let (first, last) = (hour_at_or_after(from), hour_of(to));
        // No whole hour in the range: nothing to look up (and on SQLite an hour past 9999
        // would compare as text before every four-digit year).
        let hours: Vec<HourRow> = if first < last {
            diesel::sql_query(placeholders(HOURS_SQL, $postgres))
                .bind::<Timestamp, _>(first)
                .bind::<Timestamp, _>(last)
                .load($conn)?
        } else {
            Vec::new()
        };
        let stale: Vec<NaiveDateTime> = hours
            .iter()
            .filter(|h| !h.is_current())
            .map(|h| h.hour)
            .collect();
        let gaps = gaps(from, to, &stale);
        RangePlan {
            first,
            last,
            hours,
            gaps,
        }
    }};
}

/// The distinct keys of each of `$dimensions` among the calls of `[$from, $to)`: the sealed
/// hours' from the rollup, the rest from the log, in one snapshot; `None` when the range is
/// unsealed in more than [`MAX_GAPS`] stretches. Exact either way, unlike percentiles.
macro_rules! read_keys {
    ($conn:expr, $postgres:expr, $from:expr, $to:expr, $dimensions:expr) => {{
        let RangePlan {
            first, last, gaps, ..
        } = plan_range!($conn, $postgres, $from, $to);
        if gaps.len() > MAX_GAPS {
            None
        } else {
            let mut sets: Vec<BTreeSet<String>> = Vec::new();
            for &dimension in $dimensions {
                let dimension: Dimension = dimension;
                let mut keys: BTreeSet<String> = usage_rollup::table
                    .inner_join(
                        usage_hours::table.on(usage_hours::hour
                            .eq(usage_rollup::hour)
                            .and(usage_hours::sealed.eq(usage_hours::written.nullable()))),
                    )
                    .filter(usage_rollup::dimension.eq(dimension.as_str()))
                    .filter(usage_rollup::hour.ge(first))
                    .filter(usage_rollup::hour.lt(last))
                    .select(usage_rollup::key)
                    .distinct()
                    .load::<String>($conn)?
                    .into_iter()
                    .collect();
                let raw = placeholders(
                    &format!(
                        "SELECT DISTINCT {} AS value FROM usage_logs
                         WHERE timestamp >= {{1}} AND timestamp < {{2}}",
                        dimension.sql()
                    ),
                    $postgres,
                );
                for &(start, end) in &gaps {
                    let seen: Vec<crate::call_list::Seen> = diesel::sql_query(&raw)
                        .bind::<Timestamp, _>(start)
                        .bind::<Timestamp, _>(end)
                        .load($conn)?;
                    keys.extend(seen.into_iter().map(|seen| seen.value));
                }
                sets.push(keys);
            }
            Some(sets)
        }
    }};
}

/// What a report over a range reads: the rollup's cells for the sealed hours and the log's
/// calls for the rest, folded into cells alike; `None` when it should read the log itself in
/// SQL (few calls, or too much of the range unsealed).
macro_rules! read_cells {
    ($conn:expr, $postgres:expr, $from:expr, $to:expr, $dimensions:expr, $exact_up_to:expr) => {{
        let (from, to): (NaiveDateTime, NaiveDateTime) = ($from, $to);
        let sql = |text: &str| placeholders(text, $postgres);
        let RangePlan {
            first,
            last,
            hours,
            gaps,
        } = plan_range!($conn, $postgres, from, to);
        let sealed_calls = hours
            .iter()
            .filter(|h| h.is_current())
            .fold(0i64, |sum, hour| sum.saturating_add(hour.requests));
        let mut gap_calls = 0i64;
        if gaps.len() <= MAX_GAPS {
            for (start, end) in &gaps {
                let counted: Count = diesel::sql_query(sql(COUNT_SQL))
                    .bind::<Timestamp, _>(*start)
                    .bind::<Timestamp, _>(*end)
                    .get_result($conn)?;
                gap_calls = gap_calls.saturating_add(counted.count);
            }
        }
        let calls = u64::try_from(sealed_calls.saturating_add(gap_calls)).unwrap_or(0);
        if gaps.len() > MAX_GAPS || gap_calls > MAX_GAP_CALLS || calls <= $exact_up_to {
            None
        } else {
            let mut cells = Cells::default();
            let names: Vec<&str> = $dimensions.iter().map(|d: &Dimension| d.as_str()).collect();
            // Built by diesel, not written as text: rows come back by position, which reads a
            // month of cells split by user (30,000 rows) faster than by column name.
            let rows: Vec<RollupRow> = usage_rollup::table
                .inner_join(
                    usage_hours::table.on(usage_hours::hour
                        .eq(usage_rollup::hour)
                        .and(usage_hours::sealed.eq(usage_hours::written.nullable()))),
                )
                .filter(usage_rollup::dimension.eq_any(&names))
                .filter(usage_rollup::hour.ge(first))
                .filter(usage_rollup::hour.lt(last))
                .select(RollupRow::as_select())
                .load($conn)?;
            for row in rows {
                let (dimension, hour, key, cell) = row.into_cell()?;
                cells.insert(dimension, hour, key, cell);
            }
            for &(start, end) in &gaps {
                let calls: Vec<RawCall> = diesel::sql_query(raw_calls_sql($postgres))
                    .bind::<Timestamp, _>(start)
                    .bind::<Timestamp, _>(end)
                    .load($conn)?;
                cells.add_calls(&calls, $dimensions, (start, end));
            }
            Some(cells)
        }
    }};
}

/// What of `[from, to)` the log must be read for: the part hours before the first whole one
/// and after the last, and the whole hours whose rollup is `stale` (ascending), adjacent ones
/// joined. Whole hours not named are sealed and current, or have never had a row written
/// (every batch registers its hours, and the rollup's migration the hours already logged), so
/// an idle night costs no statement.
fn gaps(
    from: NaiveDateTime,
    to: NaiveDateTime,
    stale: &[NaiveDateTime],
) -> Vec<(NaiveDateTime, NaiveDateTime)> {
    let (first, last) = (hour_at_or_after(from), hour_of(to));
    if first >= last {
        return if from < to {
            vec![(from, to)]
        } else {
            Vec::new()
        };
    }
    let mut gaps: Vec<(NaiveDateTime, NaiveDateTime)> = Vec::new();
    let mut push = |start: NaiveDateTime, end: NaiveDateTime| match gaps.last_mut() {
        Some(previous) if previous.1 == start => previous.1 = end,
        _ => gaps.push((start, end)),
    };
    if from < first {
        push(from, first);
    }
    for &hour in stale {
        push(hour, hour_after(hour));
    }
    if last < to {
        push(last, to);
    }
    gaps
}

impl UsageStore {
    /// The cells of `[from, to)` for `dimensions`, from the rollup where it is sealed and the
    /// log elsewhere, in one snapshot; `None` when the report should read the log in SQL: at
    /// most `exact_report_calls` calls, or too much of the range unsealed to fold here.
    pub(crate) fn rolled_cells(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        dimensions: &[Dimension],
    ) -> Result<Option<Cells>, StoreError> {
        let (from, to) = (from.naive_utc(), to.naive_utc());
        let exact_up_to = self.exact_report_calls();
        // Each call is counted once per dimension: a dimension named twice would count it twice.
        let mut dimensions = dimensions.to_vec();
        dimensions.sort_unstable();
        dimensions.dedup();
        let dimensions = dimensions.as_slice();
        Ok(match self.pool() {
            // A read transaction: the sealed hours, their cells and the log's rows come from
            // one snapshot, so an hour unsealed meanwhile is neither missed nor counted twice.
            Pool::Sqlite(pool) => pool.get()?.transaction(|conn| {
                Ok::<_, StoreError>(read_cells!(conn, false, from, to, dimensions, exact_up_to))
            })?,
            Pool::Postgres(pool) => pool
                .get()?
                .build_transaction()
                .repeatable_read()
                .read_only()
                .run(|conn| {
                    Ok::<_, StoreError>(read_cells!(conn, true, from, to, dimensions, exact_up_to))
                })?,
        })
    }

    /// The distinct keys of each of `dimensions` (in that order) among everyone's calls since
    /// `from`, sorted: sealed hours read from the rollup, a few rows an hour, the rest from
    /// the log; `None` when the range is unsealed in too many stretches to read that way.
    pub(crate) fn rolled_keys(
        &self,
        from: DateTime<Utc>,
        dimensions: &[Dimension],
    ) -> Result<Option<Vec<BTreeSet<String>>>, StoreError> {
        // Calls stamped in the future (a clock ahead) count as `timestamp >= from` does.
        let (from, to) = (from.naive_utc(), crate::report::latest_bound().naive_utc());
        Ok(match self.pool() {
            Pool::Sqlite(pool) => pool.get()?.transaction(|conn| {
                Ok::<_, StoreError>(read_keys!(conn, false, from, to, dimensions))
            })?,
            Pool::Postgres(pool) => pool
                .get()?
                .build_transaction()
                .repeatable_read()
                .read_only()
                .run(|conn| Ok::<_, StoreError>(read_keys!(conn, true, from, to, dimensions)))?,
        })
    }

    /// Seals up to `limit` hours that ended at or before `before` and whose rollup is missing
    /// or stale, oldest first: computes each one's cells from the log and records the write
    /// count it saw. Returns how many hours were sealed, or the first error met (after trying
    /// the other hours). Safe to run from several servers at
    /// once (PostgreSQL: each hour is sealed under its `usage_hours` row's lock, which the
    /// writer also takes after writing into the hour).
    pub fn seal_hours(&self, before: DateTime<Utc>, limit: usize) -> Result<usize, StoreError> {
        let before = hour_of(before.naive_utc());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let stale = |postgres| {
            placeholders(
                "SELECT hour FROM usage_hours
                 WHERE (sealed IS NULL OR sealed <> written) AND hour < {1} AND hour >= {earliest}
                 ORDER BY hour LIMIT {2}",
                postgres,
            )
        };
        let hours: Vec<StaleHour> = match self.pool() {
            Pool::Sqlite(pool) => diesel::sql_query(stale(false))
                .bind::<Timestamp, _>(before)
                .bind::<BigInt, _>(limit)
                .load(&mut *pool.get()?)?,
            Pool::Postgres(pool) => diesel::sql_query(stale(true))
                .bind::<Timestamp, _>(before)
                .bind::<BigInt, _>(limit)
                .load(&mut *pool.get()?)?,
        };
        // An hour that cannot be sealed (its rows unreadable) is reported, and the hours after
        // it are sealed anyway: one bad hour must not keep every later one on the slow path.
        let mut sealed = 0;
        let mut failed = None;
        for StaleHour { hour } in hours {
            match self.seal_hour(hour) {
                Ok(true) => sealed += 1,
                Ok(false) => {}
                Err(error) => {
                    failed.get_or_insert(error);
                }
            }
        }
        failed.map_or(Ok(sealed), Err)
    }

    /// How many hours that ended at or before `before` still wait to be sealed (their rollup
    /// missing or stale): reports read them from the log until then. The health page shows it.
    pub fn rollup_backlog(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let before = hour_of(before.naive_utc());
        let sql = |postgres| {
            placeholders(
                "SELECT COUNT(*) AS count FROM usage_hours
                 WHERE (sealed IS NULL OR sealed <> written) AND hour < {1} AND hour >= {earliest}",
                postgres,
            )
        };
        let counted: Count = match self.pool() {
            Pool::Sqlite(pool) => diesel::sql_query(sql(false))
                .bind::<Timestamp, _>(before)
                .get_result(&mut *pool.get()?)?,
            Pool::Postgres(pool) => diesel::sql_query(sql(true))
                .bind::<Timestamp, _>(before)
                .get_result(&mut *pool.get()?)?,
        };
        Ok(u64::try_from(counted.count).unwrap_or(0))
    }

    /// Computes `hour`'s rollup from the log unless it is current; true when it did.
    fn seal_hour(&self, hour: NaiveDateTime) -> Result<bool, StoreError> {
        macro_rules! seal {
            ($conn:expr, $postgres:expr, $lock:expr) => {{
                let sql = |text: &str| placeholders(text, $postgres);
                let state: Option<HourState> = diesel::sql_query(sql(&format!(
                    "SELECT written, sealed FROM usage_hours WHERE hour = {{1}}{}",
                    $lock
                )))
                .bind::<Timestamp, _>(hour)
                .get_result($conn)
                .optional()?;
                let Some(state) = state.filter(|s| s.sealed != Some(s.written)) else {
                    return Ok(false);
                };
                let end = hour_after(hour);
                let calls: Vec<RawCall> = diesel::sql_query(raw_calls_sql($postgres))
                    .bind::<Timestamp, _>(hour)
                    .bind::<Timestamp, _>(end)
                    .load($conn)?;
                let mut cells = Cells::default();
                cells.add_calls(&calls, &Dimension::EVERY, (hour, end));
                let rows: Vec<RollupRow> = cells
                    .cells
                    .iter()
                    .map(|((dimension, hour, key), cell)| {
                        RollupRow::of(*dimension, *hour, key.clone(), cell)
                    })
                    .collect();
                diesel::delete(
                    usage_rollup::table
                        .filter(
                            usage_rollup::dimension.eq_any(Dimension::EVERY.map(|d| d.as_str())),
                        )
                        .filter(usage_rollup::hour.eq(hour)),
                )
                .execute($conn)?;
                for chunk in rows.chunks(CELLS_PER_STATEMENT) {
                    diesel::insert_into(usage_rollup::table)
                        .values(chunk)
                        .execute($conn)?;
                }
                diesel::sql_query(sql("UPDATE usage_hours SET sealed = {2} WHERE hour = {1}"))
                    .bind::<Timestamp, _>(hour)
                    .bind::<BigInt, _>(state.written)
                    .execute($conn)?;
                Ok(true)
            }};
        }
        match self.pool() {
            // IMMEDIATE: the write lock from the start, so no batch lands in the hour between
            // reading its rows and recording the count they were read at.
            Pool::Sqlite(pool) => pool
                .get()?
                .immediate_transaction(|conn| seal!(conn, false, "")),
            // The row lock waits for a batch writing into the hour to commit (it bumps
            // `written` in its transaction) and holds back the next one until this commits:
            // rows read here are exactly those counted in `written`.
            Pool::Postgres(pool) => pool
                .get()?
                .transaction(|conn| seal!(conn, true, " FOR UPDATE")),
        }
    }
}

/// Records that a batch wrote into `hours`, so their rollups are computed again: one upsert
/// per distinct hour, ascending (two servers writing the same hours lock them in one order).
macro_rules! mark_hours_written {
    ($conn:expr, $hours:expr, $postgres:expr) => {{
        let sql = $crate::rollup::placeholders(
            "INSERT INTO usage_hours (hour, written) VALUES ({1}, 1)
             ON CONFLICT (hour) DO UPDATE SET written = usage_hours.written + 1",
            $postgres,
        );
        for hour in $hours {
            diesel::sql_query(&sql)
                .bind::<diesel::sql_types::Timestamp, _>(*hour)
                .execute($conn)?;
        }
    }};
}
pub(crate) use mark_hours_written;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_are_one_percent_wide_and_their_middles_within_half_a_percent() {
        assert_eq!(Histogram::bin_of(0.0), 0);
        assert_eq!(Histogram::bin_of(-5.0), 0);
        assert_eq!(Histogram::bin_of(f64::NAN), 0);
        assert_eq!(Histogram::bin_of(0.000_999), 0);
        assert_eq!(Histogram::bin_of(0.001), 1);
        assert_eq!(Histogram::bin_of(f64::INFINITY), LAST_BIN);
        assert_eq!(Histogram::bin_of(1e300), LAST_BIN);
        assert!(
            Histogram::bin_of(1e10) < LAST_BIN,
            "four months still have bins"
        );
        // From a microsecond to four months.
        let mut value = 0.001;
        while value < 1e10 {
            let middle = Histogram::middle_of(Histogram::bin_of(value));
            assert!(
                (middle - value).abs() / value <= 0.005 + 1e-9,
                "{value} ms reported as {middle}"
            );
            value *= 1.003_7;
        }
    }

    #[test]
    fn histograms_survive_encoding_and_junk_is_refused_not_panicked_on() {
        let mut histogram = Histogram::default();
        for latency in [0.2, 1.0, 37.0, 37.1, 800.0, 1e12, f64::NAN] {
            histogram.record(latency);
        }
        for _ in 0..300 {
            histogram.record(420.0);
        }
        // Adding up two histograms counts what recording every latency into one does.
        let (mut left, mut right, mut both) = (
            Histogram::default(),
            Histogram::default(),
            Histogram::default(),
        );
        for (i, latency) in [5.0, 900.0, 5.01, 0.1, 3e4, 900.0, 7.0, 7.0, 2.0]
            .iter()
            .enumerate()
        {
            if i % 3 == 0 { &mut left } else { &mut right }.record(*latency);
            both.record(*latency);
        }
        for &(bin, count) in &right.bins {
            left.add(bin, count);
        }
        assert_eq!(left, both);
        let bytes = histogram.encode();
        assert_eq!(Histogram::decode(&bytes), Ok(histogram));
        assert_eq!(Histogram::decode(&[]), Ok(Histogram::default()));
        for junk in [
            &[0x80][..],
            &[0x05][..],
            &[0xff; 11][..],
            &[0x9d, 0x18, 0x01][..],       // bin 3101
            &[0x05, 0x01, 0x00, 0x01][..], // bin 5 twice
        ] {
            assert!(Histogram::decode(junk).is_err(), "{junk:?}");
        }
    }

    #[test]
    fn binned_percentiles_stay_within_half_a_percent_of_the_nearest_rank() {
        // splitmix64: a fixed spread of latencies from 3 ms to about 30 s.
        let mut state = 0x5eed_u64;
        let mut next = || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        for calls in [1usize, 2, 3, 19, 20, 21, 1_000, 10_007] {
            let mut latencies: Vec<f64> = (0..calls)
                .map(|_| 3.0 * 10f64.powf((next() % 4_000) as f64 / 1_000.0))
                .collect();
            let mut cell = Cell::default();
            for &latency_ms in &latencies {
                cell.add_call(&call_at(latency_ms));
            }
            latencies.sort_by(f64::total_cmp);
            for percent in [50, 95] {
                let rank = (calls * percent as usize).div_ceil(100);
                let exact = latencies[rank - 1];
                let row = row_of(&cell);
                let binned = if percent == 50 {
                    row.p50_latency_ms
                } else {
                    row.p95_latency_ms
                };
                assert!(
                    (binned - exact).abs() / exact <= 0.005 + 1e-9,
                    "p{percent} of {calls}: {binned} for {exact}"
                );
            }
        }
        // One call, or calls of one latency: the percentile is that latency exactly.
        let mut cell = Cell::default();
        cell.add_call(&call_at(1234.5));
        cell.add_call(&call_at(1234.5));
        assert_eq!(row_of(&cell).p95_latency_ms, 1234.5);
        assert_eq!(row_of(&Cell::default()).p50_latency_ms, 0.0);
        // Bins added up across cells: the same as one cell holding every call.
        let (mut first, mut second, mut both) = (Cell::default(), Cell::default(), Cell::default());
        for (i, latency_ms) in [10.0, 4000.0, 11.0, 900.0, 905.0, 60.0, 61.0]
            .into_iter()
            .enumerate()
        {
            if i % 2 == 0 { &mut first } else { &mut second }.add_call(&call_at(latency_ms));
            both.add_call(&call_at(latency_ms));
        }
        let mut tally = Tally::default();
        tally.add(&first);
        tally.add(&second);
        let mut scratch = scratch();
        assert_eq!(tally.row("k".into(), &mut scratch), row_of(&both));
        assert!(
            scratch.iter().all(|&count| count == 0),
            "the scratch is left clean"
        );
    }

    #[test]
    fn sub_millisecond_latencies_stay_within_a_microsecond_or_half_a_percent() {
        for latencies in [
            vec![0.1, 0.2, 0.9],
            vec![0.0, 0.0, 0.0],
            vec![0.0004, 0.0009, 0.0005],
            vec![0.012, 0.5, 0.75, 0.0, 3.0],
        ] {
            let mut cell = Cell::default();
            for &latency_ms in &latencies {
                cell.add_call(&call_at(latency_ms));
            }
            let mut sorted = latencies.clone();
            sorted.sort_by(f64::total_cmp);
            let row = row_of(&cell);
            for (percent, binned) in [(50, row.p50_latency_ms), (95, row.p95_latency_ms)] {
                let exact = sorted[(sorted.len() * percent).div_ceil(100) - 1];
                assert!(
                    (binned - exact).abs() <= (exact * 0.005).max(0.001),
                    "p{percent} of {latencies:?}: {binned} for {exact}"
                );
            }
        }
    }

    #[test]
    fn gaps_are_the_range_edges_and_its_stale_hours_joined() {
        let at = |h: u32, m: u32| {
            chrono::NaiveDate::from_ymd_opt(2026, 11, 1)
                .and_then(|d| d.and_hms_opt(h, m, 0))
                .unwrap()
        };
        // Edges inside hours, stale hours 3 and 4 joined, hour 2 current or empty.
        assert_eq!(
            gaps(at(1, 30), at(5, 10), &[at(3, 0), at(4, 0)]),
            vec![(at(1, 30), at(2, 0)), (at(3, 0), at(5, 10))]
        );
        assert_eq!(gaps(at(2, 0), at(4, 0), &[]), vec![]);
        assert_eq!(
            gaps(at(1, 0), at(6, 0), &[at(1, 0), at(4, 0)]),
            vec![(at(1, 0), at(2, 0)), (at(4, 0), at(5, 0))]
        );
        // No whole hour: the range itself; an empty range: nothing.
        assert_eq!(
            gaps(at(1, 10), at(1, 50), &[]),
            vec![(at(1, 10), at(1, 50))]
        );
        assert_eq!(
            gaps(at(1, 10), at(2, 20), &[]),
            vec![(at(1, 10), at(2, 20))]
        );
        assert_eq!(gaps(at(1, 10), at(1, 10), &[]), vec![]);
        assert_eq!(hour_at_or_after(at(1, 30)), at(2, 0));
        assert_eq!(
            hour_after(NaiveDateTime::MAX),
            NaiveDateTime::MAX,
            "no panic at the end"
        );
        assert_eq!(hour_at_or_after(at(2, 0)), at(2, 0));
    }

    fn row_of(cell: &Cell) -> SummaryRow {
        let mut tally = Tally::default();
        tally.add(cell);
        tally.row("k".into(), &mut scratch())
    }

    fn call_at(latency_ms: f64) -> RawCall {
        RawCall {
            hour: None,
            specialist_id: "s".into(),
            model: "m".into(),
            provider: "p".into(),
            user_key: "anonymous".into(),
            door: "native".into(),
            success: true,
            input_tokens: 1,
            output_tokens: 1,
            cost_usd: 0.0,
            latency_ms,
        }
    }

    mod on_rows {
        use std::time::Duration;

        use diesel::sql_types::Binary;

        use chrono::{TimeDelta, TimeZone, Utc};
        use core_domain::{Door, EmailHash, ErrorCode, ProviderKind, SpecialistId, Usd};

        use super::super::*;
        use crate::store::with_connection;
        use crate::test_database::on_both_backends;
        use crate::{OverviewQuery, Scope, SeriesQuery, SummaryQuery, TotalsQuery, UsageRecord};

        fn at(day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
            Utc.with_ymd_and_hms(2026, 11, day, hour, minute, 0)
                .unwrap()
        }

        /// `n` calls spread over the given days' hours, every dimension varied.
        fn calls(prefix: &str, days: &[u32], per_hour: u32) -> Vec<UsageRecord> {
            let specialists = ["analyst", "reviewer", "coder"];
            let models = [
                ("gpt-4o", ProviderKind::OpenAi),
                ("claude-3-haiku", ProviderKind::Anthropic),
                ("gemini-1.5-pro", ProviderKind::Google),
            ];
            let mut records = Vec::new();
            let mut n = 0u64;
            for &day in days {
                for hour in [0, 7, 13, 23] {
                    for i in 0..per_hour {
                        n += 1;
                        let (model, provider) = models[(n % 3) as usize];
                        records.push(UsageRecord {
                            specialist_id: SpecialistId::parse(specialists[(n % 3) as usize])
                                .unwrap(),
                            model: model.into(),
                            provider,
                            user_email_hash: match n % 4 {
                                0 => None,
                                k => Some(EmailHash::of_email(&format!("u{k}@example.com"))),
                            },
                            door: Door::ALL[(n % 5) as usize],
                            error_code: n.is_multiple_of(7).then_some(ErrorCode::UpstreamTimeout),
                            cost: Usd::from_nanos(n * 1_001),
                            latency: Duration::from_micros(50_000 + (n * 7_919) % 3_000_000),
                            timestamp: at(day, hour, (i * 59 / per_hour.max(1)) % 60),
                            ..crate::fixture::usage_record(&format!("{prefix}{n}"))
                        });
                    }
                }
            }
            records
        }

        /// Runs `sql` (with `{1}` bound to `bytes` when given) on the store's database.
        fn execute(store: &UsageStore, sql: &str, bytes: Option<Vec<u8>>) {
            let sql = placeholders(sql, store.backend() == crate::Backend::Postgres);
            let run = || -> Result<usize, StoreError> {
                Ok(with_connection!(store, |conn| match &bytes {
                    Some(bytes) => diesel::sql_query(&sql)
                        .bind::<Binary, _>(bytes)
                        .execute(conn)?,
                    None => diesel::sql_query(&sql).execute(conn)?,
                }))
            };
            run().unwrap();
        }

        /// Counts, tokens and cost equal; percentiles within half a percent.
        fn assert_close(exact: &[SummaryRow], rolled: &[SummaryRow], what: &str) {
            assert_eq!(exact.len(), rolled.len(), "{what}: {exact:?} / {rolled:?}");
            for (e, r) in exact.iter().zip(rolled) {
                assert_eq!(
                    (&e.key, e.requests, e.successes, e.failures),
                    (&r.key, r.requests, r.successes, r.failures),
                    "{what}"
                );
                assert_eq!(
                    (e.input_tokens, e.output_tokens),
                    (r.input_tokens, r.output_tokens),
                    "{what}"
                );
                assert!(
                    (e.cost_usd - r.cost_usd).abs() < 1e-9,
                    "{what}: cost {e:?} {r:?}"
                );
                assert!(
                    (e.avg_latency_ms - r.avg_latency_ms).abs() < 1e-6,
                    "{what}: {e:?} {r:?}"
                );
                for (exact, rolled) in [
                    (e.p50_latency_ms, r.p50_latency_ms),
                    (e.p95_latency_ms, r.p95_latency_ms),
                ] {
                    assert!(
                        (exact - rolled).abs() <= exact * 0.005 + 1e-9,
                        "{what}: percentile {exact} read as {rolled}"
                    );
                }
            }
        }

        /// Every report over `[from, to)` read through the rollup agrees with the log.
        fn assert_reports_agree(store: &UsageStore, from: DateTime<Utc>, to: DateTime<Utc>) {
            let rolled = store.clone().with_exact_report_calls(0);
            let exact = store.clone().with_exact_report_calls(u64::MAX);
            for group_by in GroupBy::ALL {
                let query = SummaryQuery {
                    from,
                    to,
                    group_by,
                    scope: Scope::Everyone,
                };
                let (e, r) = (
                    exact.summary(&query).unwrap(),
                    rolled.summary(&query).unwrap(),
                );
                assert_eq!(e.percentiles, Percentiles::Exact);
                assert_eq!(r.percentiles, Percentiles::Approximate);
                assert_close(
                    &e.rows,
                    &r.rows,
                    &format!("{group_by} {:?}", store.backend()),
                );
                for bucket in [Bucket::Hour, Bucket::Day] {
                    let overview = rolled
                        .overview(&OverviewQuery {
                            from,
                            to,
                            bucket,
                            split: group_by,
                            scope: Scope::Everyone,
                        })
                        .unwrap();
                    assert_eq!(overview.percentiles, Percentiles::Approximate);
                    assert_eq!(
                        overview.summary, r.rows,
                        "the overview's table is the summary"
                    );
                    let series = exact
                        .series(&SeriesQuery {
                            from,
                            to,
                            bucket,
                            split: group_by,
                            scope: Scope::Everyone,
                        })
                        .unwrap();
                    assert_eq!(series.len(), overview.series.len(), "{group_by} {bucket}");
                    for (e, r) in series.iter().zip(&overview.series) {
                        assert_eq!(e.bucket_start, r.bucket_start);
                        assert_close(
                            std::slice::from_ref(&e.group),
                            std::slice::from_ref(&r.group),
                            &format!("series {group_by} {bucket}"),
                        );
                    }
                    let totals = exact
                        .totals(&TotalsQuery {
                            from,
                            to,
                            scope: Scope::Everyone,
                        })
                        .unwrap();
                    let as_row = |t: &Totals| SummaryRow {
                        key: String::new(),
                        requests: t.requests,
                        successes: t.successes,
                        failures: t.failures,
                        input_tokens: t.input_tokens,
                        output_tokens: t.output_tokens,
                        cost_usd: t.cost_usd,
                        avg_latency_ms: t.avg_latency_ms,
                        p50_latency_ms: t.p50_latency_ms,
                        p95_latency_ms: t.p95_latency_ms,
                    };
                    assert_close(&[as_row(&totals)], &[as_row(&overview.totals)], "totals");
                }
            }
        }

        #[test]
        fn reports_through_the_rollup_agree_with_the_log_before_and_after_sealing() {
            on_both_backends(|store| {
                store.insert_batch(&calls("r", &[20, 21, 22], 40)).unwrap();
                // Edges inside hours, and whole days.
                // Edges inside empty hours and inside hours with calls (sealed later), and
                // whole days.
                let ranges = [
                    (at(20, 6, 30), at(22, 13, 20)),
                    (at(20, 7, 30), at(22, 7, 10)),
                    (at(20, 0, 0), at(23, 0, 0)),
                ];
                for (from, to) in ranges {
                    assert_reports_agree(store, from, to);
                }
                // Hour 13 of the 22nd is not over before 13:20: it stays unsealed.
                assert_eq!(store.rollup_backlog(at(22, 13, 20)).unwrap(), 10);
                assert_eq!(store.seal_hours(at(22, 13, 20), 100).unwrap(), 10);
                assert_eq!(store.rollup_backlog(at(22, 13, 20)).unwrap(), 0);
                assert_eq!(store.rollup_backlog(at(30, 0, 0)).unwrap(), 2);
                assert_eq!(
                    store.seal_hours(at(22, 13, 20), 100).unwrap(),
                    0,
                    "all current"
                );
                assert_eq!(store.seal_hours(at(30, 0, 0), 100).unwrap(), 2);
                for (from, to) in ranges {
                    assert_reports_agree(store, from, to);
                }
            });
        }

        #[test]
        fn sealed_hours_are_read_from_the_rollup_and_a_late_row_unseals_its_hour() {
            on_both_backends(|store| {
                let rolled = store.clone().with_exact_report_calls(0);
                let records = calls("s", &[20], 10);
                store.insert_batch(&records).unwrap();
                assert_eq!(store.seal_hours(at(21, 0, 0), 100).unwrap(), 4);
                let query = SummaryQuery {
                    from: at(20, 0, 0),
                    to: at(21, 0, 0),
                    group_by: GroupBy::Day,
                    scope: Scope::Everyone,
                };
                let requests = |store: &UsageStore| store.summary(&query).unwrap().rows[0].requests;
                assert_eq!(requests(&rolled), 40);
                // Rows deleted behind the rollup's back still count: the sealed hours are read
                // from the rollup, not the log.
                execute(
                    store,
                    "DELETE FROM usage_logs WHERE request_id IN ('s1', 's2', 's3')",
                    None,
                );
                assert_eq!(requests(&rolled), 40);
                assert_eq!(requests(store), 37, "the exact report reads the log");

                // A replayed batch changes nothing; a late call in a sealed hour counts at
                // once (its hour is read from the log again) and after sealing anew.
                store.insert_batch(&records[20..30]).unwrap();
                let late = UsageRecord {
                    timestamp: at(20, 7, 59),
                    ..crate::fixture::usage_record("late-1")
                };
                store.insert_batch(&[late]).unwrap();
                // Hour 0 still from the rollup (10 calls, 7 left in the log), hours 7 and 13
                // from the log (11 and 10), hour 23 from the rollup (10).
                assert_eq!(requests(&rolled), 41, "the late call counted at once");
                assert_eq!(requests(store), 38);
                assert_eq!(store.seal_hours(at(21, 0, 0), 100).unwrap(), 2);
                assert_eq!(requests(&rolled), 41);
                assert_eq!(store.seal_hours(at(21, 0, 0), 100).unwrap(), 0);
            });
        }

        #[test]
        fn the_upgrade_registers_the_hours_already_in_the_log_for_sealing() {
            use diesel_migrations::MigrationHarness;
            on_both_backends(|store| {
                store.insert_batch(&calls("m", &[20], 5)).unwrap();
                // Back to before the rollup with the rows kept, then forward, as an upgrade
                // from the previous version does.
                match store.pool() {
                    Pool::Sqlite(pool) => {
                        let mut conn = pool.get().unwrap();
                        conn.revert_last_migration(crate::store::SQLITE_MIGRATIONS)
                            .unwrap();
                    }
                    Pool::Postgres(pool) => {
                        let mut conn = pool.get().unwrap();
                        conn.revert_last_migration(crate::store::POSTGRES_MIGRATIONS)
                            .unwrap();
                    }
                }
                assert_eq!(store.migrate().unwrap(), 1);
                assert_eq!(store.rollup_backlog(at(21, 0, 0)).unwrap(), 4);
                assert_eq!(store.seal_hours(at(21, 0, 0), 100).unwrap(), 4);
                let summary = store
                    .clone()
                    .with_exact_report_calls(0)
                    .summary(&SummaryQuery {
                        from: at(20, 0, 0),
                        to: at(21, 0, 0),
                        group_by: GroupBy::Day,
                        scope: Scope::Everyone,
                    })
                    .unwrap();
                assert_eq!(summary.rows[0].requests, 20, "{:?}", store.backend());
            });
        }

        #[test]
        fn a_range_at_the_year_9999_bound_holds_nothing_from_earlier_years() {
            on_both_backends(|store| {
                store.insert_batch(&calls("y", &[20], 5)).unwrap();
                store.seal_hours(at(21, 0, 0), 100).unwrap();
                let end = Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap();
                for from in [end - TimeDelta::minutes(29), end - TimeDelta::hours(3)] {
                    let summary = store
                        .clone()
                        .with_exact_report_calls(0)
                        .summary(&SummaryQuery {
                            from,
                            to: end,
                            group_by: GroupBy::Specialist,
                            scope: Scope::Everyone,
                        })
                        .unwrap();
                    assert_eq!(summary.rows, [], "{from} {:?}", store.backend());
                }
            });
        }

        #[test]
        fn hours_without_calls_cost_a_long_range_no_statement() {
            on_both_backends(|store| {
                // One call every other hour for 25 days: 300 sealed hours with 300 empty ones
                // between them, more stretches than a report reads from the log one by one.
                let records: Vec<UsageRecord> = (0..300)
                    .map(|i| UsageRecord {
                        timestamp: at(1, 0, 0) + TimeDelta::hours(2 * i),
                        latency: Duration::from_millis(100 + 3 * i as u64),
                        ..crate::fixture::usage_record(&format!("sparse{i}"))
                    })
                    .collect();
                store.insert_batch(&records).unwrap();
                store.seal_hours(at(28, 0, 0), 1_000).unwrap();
                let query = SummaryQuery {
                    from: at(1, 0, 0),
                    to: at(27, 0, 0),
                    group_by: GroupBy::Door,
                    scope: Scope::Everyone,
                };
                let rolled = store
                    .clone()
                    .with_exact_report_calls(0)
                    .summary(&query)
                    .unwrap();
                assert_eq!(rolled.percentiles, Percentiles::Approximate);
                assert_eq!(rolled.rows[0].requests, 300);
                let exact = store
                    .clone()
                    .with_exact_report_calls(u64::MAX)
                    .summary(&query);
                assert_close(&exact.unwrap().rows, &rolled.rows, "sparse hours");
            });
        }

        #[test]
        fn hand_edited_sqlite_timestamps_neither_stop_sealing_nor_change_the_counts() {
            let dir = tempfile::tempdir().unwrap();
            let store = UsageStore::connect(&crate::DatabaseConfig {
                url: format!("sqlite://{}", dir.path().join("usage.db").display()),
                ..crate::DatabaseConfig::default()
            })
            .unwrap();
            store.insert_batch(&calls("h", &[20], 6)).unwrap();
            // One no date function reads, one in another shape: it sorts as text after the
            // day's other rows, into hour 23's range.
            execute(
                &store,
                "UPDATE usage_logs SET timestamp = '2026-11-20 00:05:00 UTC' \
                 WHERE request_id = 'h1'",
                None,
            );
            execute(
                &store,
                "UPDATE usage_logs SET timestamp = '2026-11-20T07:30:00' WHERE request_id = 'h2'",
                None,
            );
            assert_eq!(store.seal_hours(at(21, 0, 0), 100).unwrap(), 4);
            assert_eq!(store.rollup_backlog(at(21, 0, 0)).unwrap(), 0);
            for (from, to) in [(at(20, 0, 0), at(21, 0, 0)), (at(20, 0, 0), at(20, 23, 0))] {
                let query = SummaryQuery {
                    from,
                    to,
                    group_by: GroupBy::Specialist,
                    scope: Scope::Everyone,
                };
                let exact = store
                    .clone()
                    .with_exact_report_calls(u64::MAX)
                    .summary(&query);
                let rolled = store.clone().with_exact_report_calls(0).summary(&query);
                assert_close(&exact.unwrap().rows, &rolled.unwrap().rows, "edited");
            }
        }

        #[test]
        fn a_corrupt_rollup_row_is_an_error_not_a_panic() {
            on_both_backends(|store| {
                store.insert_batch(&calls("c", &[20], 5)).unwrap();
                store.seal_hours(at(21, 0, 0), 100).unwrap();
                // A number cut short: what a truncated write or a hand edit leaves.
                execute(
                    store,
                    "UPDATE usage_rollup SET latency_histogram = {1}",
                    Some(vec![0xff]),
                );
                let outcome = store
                    .clone()
                    .with_exact_report_calls(0)
                    .overview(&OverviewQuery {
                        from: at(20, 0, 0),
                        to: at(21, 0, 0),
                        bucket: Bucket::Hour,
                        split: GroupBy::Specialist,
                        scope: Scope::Everyone,
                    });
                assert!(
                    matches!(outcome, Err(StoreError::Corrupt(_))),
                    "{outcome:?}"
                );
            });
        }

        #[test]
        fn hours_sealed_while_batches_land_in_them_end_up_counting_every_row() {
            on_both_backends(|store| {
                let before = at(21, 0, 0);
                let day = SummaryQuery {
                    from: at(20, 0, 0),
                    to: before,
                    group_by: GroupBy::Day,
                    scope: Scope::Everyone,
                };
                let calls_in = |store: &UsageStore| {
                    store
                        .summary(&day)
                        .unwrap()
                        .rows
                        .first()
                        .map_or(0, |row| row.requests)
                };
                let (exact, rolled) = (
                    store.clone().with_exact_report_calls(u64::MAX),
                    store.clone().with_exact_report_calls(0),
                );
                std::thread::scope(|scope| {
                    let writer = scope.spawn(|| {
                        for round in 0..20 {
                            store
                                .insert_batch(&calls(&format!("w{round}-"), &[20], 3))
                                .unwrap();
                        }
                    });
                    let sealer = scope.spawn(|| {
                        for _ in 0..20 {
                            store.seal_hours(before, 100).unwrap();
                        }
                    });
                    // Meanwhile a report through the rollup never counts fewer calls than the
                    // log held just before it, nor more than just after.
                    let reader = scope.spawn(|| {
                        for _ in 0..20 {
                            let low = calls_in(&exact);
                            let seen = calls_in(&rolled);
                            let high = calls_in(&exact);
                            assert!(low <= seen && seen <= high, "{low} <= {seen} <= {high}");
                        }
                    });
                    writer.join().unwrap();
                    sealer.join().unwrap();
                    reader.join().unwrap();
                });
                store.seal_hours(before, 100).unwrap();
                let rolled = store.clone().with_exact_report_calls(0);
                let summary = rolled
                    .summary(&SummaryQuery {
                        from: at(20, 0, 0),
                        to: before,
                        group_by: GroupBy::Day,
                        scope: Scope::Everyone,
                    })
                    .unwrap();
                assert_eq!(summary.rows[0].requests, 20 * 12, "{:?}", store.backend());
                // Every hour was read from the rollup: no stale hour is left.
                assert_eq!(store.seal_hours(before, 100).unwrap(), 0);
            });
        }
    }
}
