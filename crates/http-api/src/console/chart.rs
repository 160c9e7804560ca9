//! Time-series charts drawn on the server as inline SVG: the scales, the stacking and the
//! markup, with a legend and the same numbers as a table for screen readers.
//!
//! Why SVG built here: the console runs no script and its content policy forbids inline
//! styles, so a chart is geometry in presentation attributes (`x=`, `fill=`, `stroke=`). Every
//! value is cleaned before it reaches a coordinate (non-finite or negative values count as 0),
//! so no stored number can put `NaN` into the markup or draw outside the plot.

use maud::{Markup, html};

use super::units;

/// The whole drawing, in SVG user units (it scales to its box).
const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 220.0;
/// Room for the value axis' labels on the left and the time labels below.
const LEFT: f64 = 64.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 28.0;
/// Above this many buckets, stacked values are drawn as areas: one path per series instead
/// of a bar per bucket and series, which keeps a 400-day chart small.
const MAX_BARS: usize = 62;
/// Time labels under the plot, at most.
const MAX_TIME_LABELS: usize = 6;

/// Series colours (distinct for the common kinds of colour blindness) and, for lines, dash
/// patterns, so series differ by more than colour.
const PALETTE: [(&str, &str); 6] = [
    ("#0a58ca", "none"),
    ("#d97706", "6 3"),
    ("#1a7f37", "2 3"),
    ("#9333ea", "8 3 2 3"),
    ("#b42318", "4 4"),
    ("#4a5361", "1 2"),
];

/// How a chart's values read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    /// Calls: integers.
    Count,
    /// Money in USD.
    Usd,
    /// A percentage, 0 to 100.
    Percent,
    /// Milliseconds.
    Millis,
}

impl Unit {
    /// `value` as the console shows it.
    pub(crate) fn format(self, value: f64) -> String {
        let value = clean(value);
        match self {
            Self::Count => format!("{value:.0}"),
            Self::Usd => units::usd(value),
            Self::Percent => format!("{value:.1}%"),
            Self::Millis => units::millis(value),
        }
    }
}

/// An axis label: as short as the value allows (`$2.5`, `0.5%`), since the axis' round values
/// need no fixed decimals.
fn axis_label(unit: Unit, value: f64) -> String {
    let short = |value: f64| {
        let text = format!("{:.9}", clean(value));
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    };
    match unit {
        Unit::Count => short(value),
        Unit::Usd => format!("${}", short(value)),
        Unit::Percent => format!("{}%", short(value)),
        Unit::Millis => format!("{} ms", short(value)),
    }
}

/// How a chart draws its series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Additive values (calls, cost): stacked, so the top is the bucket's total.
    Stacked,
    /// Values that do not add up (rates, percentiles): one line per series, broken where a
    /// bucket has no value.
    Lines,
}

/// One series: a label and a value per bucket (`None`: no value, e.g. no calls).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Series {
    /// Shown in the legend and the table.
    pub label: String,
    /// One per bucket.
    pub values: Vec<Option<f64>>,
}

/// A chart: what it shows, over which buckets.
#[derive(Debug, Clone)]
pub(crate) struct Chart<'a> {
    /// Unique on the page: used for ids.
    pub id: &'a str,
    /// The caption.
    pub title: &'a str,
    /// A sentence under the caption (what is drawn, what is left out).
    pub note: Option<&'a str>,
    /// How values read.
    pub unit: Unit,
    /// Stacked or lines.
    pub kind: Kind,
    /// The buckets' names, in time order.
    pub buckets: &'a [String],
    /// At most [`PALETTE`]'s length series; extra ones are not drawn.
    pub series: &'a [Series],
}

/// A value that can be drawn: finite and not negative (anything else counts as 0).
fn clean(value: f64) -> f64 {
    if value.is_finite() && value > 0.0 {
        value
    } else {
        0.0
    }
}

/// The top of the value axis for data whose largest value is `max`: 1, 2, 2.5 or 5 times a
/// power of ten, at least `max`, and 1 when there is nothing to show.
pub(crate) fn axis_top(max: f64) -> f64 {
    let max = clean(max);
    if max <= 0.0 {
        return 1.0;
    }
    let power = 10f64.powf(max.log10().floor());
    let top = [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|step| step * power)
        .find(|top| *top >= max)
        .unwrap_or(10.0 * power);
    // Past f64's range the power is infinite; the largest finite top still bounds the data.
    if top.is_finite() { top } else { f64::MAX }
}

/// Where a value sits on the plot: `0` at the bottom, `top` (and anything above) at the top.
fn y_of(value: f64, top: f64) -> f64 {
    let plot = HEIGHT - TOP - BOTTOM;
    let share = if top > 0.0 {
        (clean(value) / top).min(1.0)
    } else {
        0.0
    };
    HEIGHT - BOTTOM - share * plot
}

/// The left edge and width of bucket `index` of `count`.
fn x_of(index: usize, count: usize) -> (f64, f64) {
    let plot = WIDTH - LEFT - RIGHT;
    let step = plot / count.max(1) as f64;
    (LEFT + step * index as f64, step)
}

/// Per bucket, each series' band `(lower, upper)` when stacked in order: each band starts where
/// the one before ended, and the last ends at the bucket's total.
pub(crate) fn stack(series: &[Series], buckets: usize) -> Vec<Vec<(f64, f64)>> {
    let mut base = vec![0.0; buckets];
    series
        .iter()
        .map(|s| {
            (0..buckets)
                .map(|i| {
                    let value = clean(s.values.get(i).copied().flatten().unwrap_or(0.0));
                    let lower = base[i];
                    base[i] = lower + value;
                    (lower, base[i])
                })
                .collect()
        })
        .collect()
}

/// The largest value the chart must show: the tallest stack, or the largest single value.
fn largest(chart: &Chart<'_>, bands: &[Vec<(f64, f64)>]) -> f64 {
    match chart.kind {
        Kind::Stacked => bands.last().map_or(0.0, |top| {
            top.iter().map(|(_, upper)| *upper).fold(0.0, f64::max)
        }),
        Kind::Lines => chart
            .series
            .iter()
            .flat_map(|s| s.values.iter().flatten())
            .map(|v| clean(*v))
            .fold(0.0, f64::max),
    }
}

/// A number for an SVG attribute: one decimal is finer than a pixel.
fn coordinate(value: f64) -> String {
    let rounded = (value * 10.0).round() / 10.0;
    if rounded.fract() == 0.0 {
        format!("{rounded:.0}")
    } else {
        format!("{rounded:.1}")
    }
}

/// The time label of a bucket: `MM-DD HH:00` for hours, `MM-DD` for days (the year is in the
/// range shown above the charts).
fn short_label(bucket: &str) -> String {
    match bucket.split_once('T') {
        Some((day, time)) => format!(
            "{} {}",
            day.get(5..).unwrap_or(day),
            time.get(..5).unwrap_or(time)
        ),
        None => bucket.get(5..).unwrap_or(bucket).to_owned(),
    }
}

/// The indexes of the buckets whose names are printed under the plot: evenly spread, first
/// and last included.
fn labelled_buckets(count: usize) -> Vec<usize> {
    if count <= MAX_TIME_LABELS {
        return (0..count).collect();
    }
    let gaps = MAX_TIME_LABELS - 1;
    (0..MAX_TIME_LABELS)
        .map(|i| i * (count - 1) / gaps)
        .collect()
}

/// The chart as a `<figure>`: caption, SVG, legend, and the numbers in a table. SVG elements
/// are written with end tags (`<rect ...></rect>`): in an HTML page an SVG start tag without
/// one is not closed, and the next shapes would become its (undrawn) children.
pub(crate) fn render(chart: &Chart<'_>) -> Markup {
    let count = chart.buckets.len();
    let series = &chart.series[..chart.series.len().min(PALETTE.len())];
    let bands = stack(series, count);
    let top = axis_top(largest(chart, &bands));
    let caption_id = format!("{}-caption", chart.id);
    let description = format!(
        "{}: {} series over {} buckets from {} to {}; the numbers are in the table below.",
        chart.title,
        series.len(),
        count,
        chart.buckets.first().map_or("", String::as_str),
        chart.buckets.last().map_or("", String::as_str),
    );
    html! {
        figure #(chart.id) aria-labelledby=(caption_id) {
            figcaption #(caption_id) { (chart.title) }
            @if let Some(note) = chart.note { p.chart-note { (note) } }
            svg viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img" aria-label=(description)
                xmlns="http://www.w3.org/2000/svg" {
                title { (description) }
                (axes(chart, top))
                @if count > 0 {
                    @match chart.kind {
                        Kind::Stacked if count <= MAX_BARS => (bars(&bands, count, top)),
                        Kind::Stacked => (areas(&bands, count, top)),
                        Kind::Lines => (lines(series, count, top)),
                    }
                }
            }
            ul.legend {
                @for (index, s) in series.iter().enumerate() {
                    li { (swatch(index, chart.kind)) (s.label) }
                }
            }
            details {
                summary { "Numbers" }
                (data_table(chart, series))
            }
        }
    }
}

/// The value axis (0, half, top with grid lines) and the time labels.
fn axes(chart: &Chart<'_>, top: f64) -> Markup {
    let count = chart.buckets.len();
    let ticks = [0.0, top / 2.0, top];
    html! {
        g fill="none" stroke="#d0d7de" {
            @for tick in ticks {
                line x1=(coordinate(LEFT)) x2=(coordinate(WIDTH - RIGHT))
                    y1=(coordinate(y_of(tick, top))) y2=(coordinate(y_of(tick, top))) {}
            }
        }
        g fill="#4a5361" text-anchor="end" {
            @for tick in ticks {
                text x=(coordinate(LEFT - 4.0)) y=(coordinate(y_of(tick, top) + 4.0)) {
                    (axis_label(chart.unit, tick))
                }
            }
        }
        g fill="#4a5361" {
            @for index in labelled_buckets(count) {
                @let (left, step) = x_of(index, count);
                // The first and last labels lean inwards, so neither runs off the drawing.
                @let (x, anchor) = match index {
                    0 => (left, "start"),
                    i if i + 1 == count => (left + step, "end"),
                    _ => (left + step / 2.0, "middle"),
                };
                text x=(coordinate(x)) y=(coordinate(HEIGHT - 8.0)) text-anchor=(anchor) {
                    (short_label(&chart.buckets[index]))
                }
            }
        }
    }
}

fn bars(bands: &[Vec<(f64, f64)>], count: usize, top: f64) -> Markup {
    html! {
        @for (index, series) in bands.iter().enumerate() {
            g fill=(PALETTE[index].0) {
                @for (bucket, (lower, upper)) in series.iter().enumerate() {
                    @if upper > lower {
                        @let (left, step) = x_of(bucket, count);
                        @let (y_top, y_bottom) = (y_of(*upper, top), y_of(*lower, top));
                        // A gap between bars, unless they are too thin to spare one.
                        @let gap = if step > 4.0 { step * 0.15 } else { 0.0 };
                        rect x=(coordinate(left + gap / 2.0)) y=(coordinate(y_top))
                            width=(coordinate(step - gap)) height=(coordinate(y_bottom - y_top)) {}
                    }
                }
            }
        }
    }
}

/// Stacked areas: each series' band as one closed path along the bucket centres.
fn areas(bands: &[Vec<(f64, f64)>], count: usize, top: f64) -> Markup {
    html! {
        @for (index, series) in bands.iter().enumerate() {
            @if series.iter().any(|(lower, upper)| upper > lower) {
                path fill=(PALETTE[index].0) d=(area_path(series, count, top)) {}
            }
        }
    }
}

fn area_path(series: &[(f64, f64)], count: usize, top: f64) -> String {
    let centre = |bucket: usize| {
        let (left, step) = x_of(bucket, count);
        coordinate(left + step / 2.0)
    };
    let mut d = String::with_capacity(series.len() * 20);
    for (bucket, (_, upper)) in series.iter().enumerate() {
        let command = if bucket == 0 { 'M' } else { 'L' };
        d.push_str(&format!(
            "{command}{} {}",
            centre(bucket),
            coordinate(y_of(*upper, top))
        ));
    }
    for (bucket, (lower, _)) in series.iter().enumerate().rev() {
        d.push_str(&format!(
            "L{} {}",
            centre(bucket),
            coordinate(y_of(*lower, top))
        ));
    }
    d.push('Z');
    d
}

/// One line per series, broken where a bucket has no value; a lone value is a dot.
fn lines(series: &[Series], count: usize, top: f64) -> Markup {
    html! {
        @for (index, s) in series.iter().enumerate() {
            @let (colour, dashes) = PALETTE[index];
            g stroke=(colour) fill=(colour) {
                @for run in runs(&s.values, count, top) {
                    @if run.len() == 1 {
                        circle cx=(run[0].0) cy=(run[0].1) r="2.5" stroke="none" {}
                    } @else {
                        polyline fill="none" stroke-width="2" stroke-dasharray=(dashes)
                            points=(run.iter().map(|(x, y)| format!("{x},{y}")).collect::<Vec<_>>().join(" ")) {}
                    }
                }
            }
        }
    }
}

/// The points of each unbroken run of values, as SVG coordinates.
fn runs(values: &[Option<f64>], count: usize, top: f64) -> Vec<Vec<(String, String)>> {
    let mut all = Vec::new();
    let mut current = Vec::new();
    for bucket in 0..count {
        match values.get(bucket).copied().flatten() {
            Some(value) => {
                let (left, step) = x_of(bucket, count);
                current.push((coordinate(left + step / 2.0), coordinate(y_of(value, top))));
            }
            None if !current.is_empty() => all.push(std::mem::take(&mut current)),
            None => {}
        }
    }
    if !current.is_empty() {
        all.push(current);
    }
    all
}

/// A legend key: a filled square for stacked series, a dashed stroke for lines.
fn swatch(index: usize, kind: Kind) -> Markup {
    let (colour, dashes) = PALETTE[index];
    html! {
        svg.swatch width="14" height="14" viewBox="0 0 14 14" aria-hidden="true" {
            @match kind {
                Kind::Stacked => rect width="14" height="14" fill=(colour) {},
                Kind::Lines => line x1="0" y1="7" x2="14" y2="7" stroke=(colour) stroke-width="3"
                    stroke-dasharray=(dashes) {},
            }
        }
    }
}

/// The chart's numbers: a row per bucket, a column per series ("–" where there is no value).
fn data_table(chart: &Chart<'_>, series: &[Series]) -> Markup {
    html! {
        table.chart-data {
            caption { (chart.title) " per bucket" }
            thead {
                tr {
                    th scope="col" { "Bucket (UTC)" }
                    @for s in series { th.num scope="col" { (s.label) } }
                }
            }
            tbody {
                @for (index, bucket) in chart.buckets.iter().enumerate() {
                    tr {
                        th scope="row" { (bucket) }
                        @for s in series {
                            td.num {
                                @match s.values.get(index).copied().flatten() {
                                    Some(value) => (chart.unit.format(value)),
                                    None => "–",
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(label: &str, values: &[f64]) -> Series {
        Series {
            label: label.to_owned(),
            values: values.iter().map(|v| Some(*v)).collect(),
        }
    }

    fn buckets(count: usize) -> Vec<String> {
        (0..count)
            .map(|i| format!("2026-01-{:02}", i % 28 + 1))
            .collect()
    }

    /// `data` drawn over `count` buckets as a chart of `unit` and `kind`.
    fn drawn(unit: Unit, kind: Kind, count: usize, data: &[Series]) -> String {
        let labels = buckets(count);
        let chart = Chart {
            id: "c",
            title: "Chart",
            note: None,
            unit,
            kind,
            buckets: &labels,
            series: data,
        };
        render(&chart).into_string()
    }

    fn numbers_in(markup: &str, attribute: &str) -> Vec<f64> {
        let needle = format!(" {attribute}=\"");
        markup
            .match_indices(&needle)
            .filter_map(|(at, _)| {
                let rest = &markup[at + needle.len()..];
                rest[..rest.find('"')?].parse().ok()
            })
            .collect()
    }

    /// `(y, height)` of every bar (the legend's swatches have no `y`).
    fn bars_in(markup: &str) -> Vec<(f64, f64)> {
        markup
            .split("<rect")
            .skip(1)
            .filter_map(|tag| {
                let tag = &tag[..tag.find('>')?];
                let y = numbers_in(tag, "y").first().copied()?;
                Some((y, numbers_in(tag, "height").first().copied()?))
            })
            .collect()
    }

    #[test]
    fn axis_top_is_a_round_number_at_or_above_the_largest_value() {
        assert_eq!(axis_top(0.0), 1.0);
        assert_eq!(axis_top(7.0), 10.0);
        assert_eq!(axis_top(10.0), 10.0);
        assert_eq!(axis_top(11.0), 20.0);
        assert_eq!(axis_top(0.0031), 0.005);
        assert_eq!(axis_top(230.0), 250.0);
        assert_eq!(axis_top(f64::NAN), 1.0);
        assert_eq!(axis_top(-5.0), 1.0);
        assert_eq!(axis_top(f64::INFINITY), 1.0);
        assert!(axis_top(f64::MAX) >= f64::MAX);
    }

    #[test]
    fn stacked_bands_follow_each_other_and_end_at_the_total() {
        let data = [
            series("a", &[1.0, 0.0, 3.0]),
            series("b", &[2.0, 5.0, f64::NAN]),
        ];
        let bands = stack(&data, 3);
        assert_eq!(bands[0], [(0.0, 1.0), (0.0, 0.0), (0.0, 3.0)]);
        assert_eq!(bands[1], [(1.0, 3.0), (0.0, 5.0), (3.0, 3.0)]);
    }

    #[test]
    fn stacked_totals_never_exceed_the_axis() {
        let data = [
            series("a", &[1e15, 3.0, 0.5]),
            series("b", &[1e15, 7.0, 0.25]),
            series("c", &[f64::MAX, 1.0, 0.0]),
        ];
        let markup = drawn(Unit::Count, Kind::Stacked, 3, &data);
        for y in numbers_in(&markup, "y") {
            assert!((0.0..=HEIGHT).contains(&y), "y {y} outside the drawing");
        }
        let bars = bars_in(&markup);
        assert_eq!(bars.len(), 8, "{markup}");
        for (y, height) in bars {
            assert!(
                y >= TOP - 0.05 && y + height <= HEIGHT - BOTTOM + 0.05,
                "{y} + {height}"
            );
        }
        assert!(
            !markup.contains("NaN") && !markup.contains("inf"),
            "{markup}"
        );
    }

    #[test]
    fn every_svg_shape_is_closed() {
        let data = [series("a", &[1.0, 2.0]), series("b", &[3.0, 0.0])];
        for kind in [Kind::Stacked, Kind::Lines] {
            let markup = drawn(Unit::Count, kind, 2, &data);
            for shape in ["rect", "line", "polyline", "path", "circle"] {
                assert_eq!(
                    markup.matches(&format!("<{shape} ")).count(),
                    markup.matches(&format!("</{shape}>")).count(),
                    "{shape} in {markup}"
                );
            }
        }
    }

    #[test]
    fn a_bar_is_as_tall_as_its_share_of_the_axis() {
        let data = [series("a", &[5.0, 10.0])];
        let markup = drawn(Unit::Count, Kind::Stacked, 2, &data);
        let plot = HEIGHT - TOP - BOTTOM;
        let heights: Vec<f64> = bars_in(&markup).into_iter().map(|(_, h)| h).collect();
        assert_eq!(heights.len(), 2, "{markup}");
        assert!((heights[0] - plot / 2.0).abs() < 0.1, "{heights:?}");
        assert!((heights[1] - plot).abs() < 0.1, "{heights:?}");
    }

    #[test]
    fn empty_data_draws_axes_only() {
        let markup = drawn(Unit::Usd, Kind::Stacked, 0, &[]);
        assert!(markup.contains("<svg"));
        assert!(!markup.contains("<rect") && !markup.contains("<path"));
        assert!(
            markup.contains(">$1</text>"),
            "the axis still has a top: {markup}"
        );
        assert!(!markup.contains("NaN"));
    }

    #[test]
    fn one_bucket_spans_the_plot() {
        let data = [series("a", &[4.0])];
        let (left, step) = x_of(0, 1);
        assert_eq!((left, step), (LEFT, WIDTH - LEFT - RIGHT));
        let markup = drawn(Unit::Millis, Kind::Lines, 1, &data);
        // A single value is a dot, not a one-point line.
        assert!(
            markup.contains("<circle") && !markup.contains("<polyline"),
            "{markup}"
        );
    }

    #[test]
    fn lines_break_where_a_bucket_has_no_value() {
        let values = [Some(1.0), Some(2.0), None, Some(3.0), Some(f64::NAN)];
        let runs = runs(&values, values.len(), 4.0);
        assert_eq!(runs.len(), 2);
        assert_eq!((runs[0].len(), runs[1].len()), (2, 2));
        assert!(
            runs.iter()
                .flatten()
                .all(|(x, y)| !x.contains("NaN") && !y.contains("NaN"))
        );
    }

    #[test]
    fn many_buckets_are_drawn_as_areas_not_bars() {
        let data = [series("a", &vec![3.0; 400]), series("b", &vec![1.0; 400])];
        let markup = drawn(Unit::Count, Kind::Stacked, 400, &data);
        assert_eq!(markup.matches("<path").count(), 2);
        assert_eq!(
            markup.matches("<rect").count(),
            2,
            "only the legend's swatches"
        );
        assert_eq!(
            markup.matches("<tr>").count(),
            401,
            "a row per bucket and the header"
        );
    }

    #[test]
    fn time_labels_are_spread_and_include_both_ends() {
        assert_eq!(labelled_buckets(3), [0, 1, 2]);
        assert_eq!(labelled_buckets(24), [0, 4, 9, 13, 18, 23]);
        assert_eq!(short_label("2026-03-04T05:00:00Z"), "03-04 05:00");
        assert_eq!(short_label("2026-03-04"), "03-04");
    }

    #[test]
    fn axis_labels_are_short() {
        assert_eq!(axis_label(Unit::Usd, 2.5), "$2.5");
        assert_eq!(axis_label(Unit::Usd, 0.0), "$0");
        assert_eq!(axis_label(Unit::Usd, 0.005), "$0.005");
        assert_eq!(axis_label(Unit::Percent, 50.0), "50%");
        assert_eq!(axis_label(Unit::Count, 1000.0), "1000");
        assert_eq!(axis_label(Unit::Millis, f64::NAN), "0 ms");
    }

    #[test]
    fn values_are_formatted_for_their_unit() {
        assert_eq!(Unit::Count.format(12.0), "12");
        assert_eq!(Unit::Usd.format(0.0012346), "$0.001235");
        assert_eq!(Unit::Percent.format(12.345), "12.3%");
        assert_eq!(Unit::Millis.format(f64::NAN), "0 ms");
    }
}
