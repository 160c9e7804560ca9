//! `commander usage report`: the usage summary (or, with `--targets`, the by-target report) as
//! a table, CSV or Markdown; `commander usage call`: one call and its attempts.

use std::fmt::Write;

use budgets::BudgetView;
use usage_store::{AttemptRecord, StoredCall, SummaryRow, TargetReport, TargetRow};

/// How a report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// Aligned columns for a terminal, with a total line.
    Table,
    /// Comma-separated values with a header line, for spreadsheets.
    Csv,
    /// A Markdown table with a total line, for pasting into documents.
    Markdown,
}

const HEADERS: [&str; 10] = [
    "key",
    "requests",
    "successes",
    "failures",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "avg_latency_ms",
    "p50_latency_ms",
    "p95_latency_ms",
];

fn cells(row: &SummaryRow) -> [String; 10] {
    [
        row.key.clone(),
        row.requests.to_string(),
        row.successes.to_string(),
        row.failures.to_string(),
        row.input_tokens.to_string(),
        row.output_tokens.to_string(),
        format!("{:.6}", row.cost_usd),
        format!("{:.1}", row.avg_latency_ms),
        format!("{:.1}", row.p50_latency_ms),
        format!("{:.1}", row.p95_latency_ms),
    ]
}

/// The sums over all groups (latencies are not summable, so left blank). Saturating: the rows
/// come from a table ops may edit by hand.
fn total(rows: &[SummaryRow]) -> [String; 10] {
    let sum = |f: fn(&SummaryRow) -> i64| {
        rows.iter()
            .map(f)
            .fold(0i64, i64::saturating_add)
            .to_string()
    };
    [
        "TOTAL".to_owned(),
        sum(|r| r.requests),
        sum(|r| r.successes),
        sum(|r| r.failures),
        sum(|r| r.input_tokens),
        sum(|r| r.output_tokens),
        format!("{:.6}", rows.iter().map(|r| r.cost_usd).sum::<f64>()),
        String::new(),
        String::new(),
        String::new(),
    ]
}

/// Renders `rows` in `format`.
pub fn render(rows: &[SummaryRow], format: ReportFormat) -> String {
    let body: Vec<Vec<String>> = rows.iter().map(|row| cells(row).to_vec()).collect();
    layout(&HEADERS, &body, &total(rows), format)
}

const BUDGET_HEADERS: [&str; 10] = [
    "budget",
    "scope",
    "subject",
    "period",
    "limit_usd",
    "spent_usd",
    "remaining_usd",
    "used_pct",
    "resets_at",
    "managed_by",
];

fn budget_cells(view: &BudgetView) -> Vec<String> {
    let budget = &view.entry.budget;
    let limit = budget.limit();
    let (spent, remaining, used) = match &view.standing {
        Ok(standing) => {
            #[allow(clippy::cast_precision_loss)] // a percentage for people
            let used = if limit.nanos() == 0 {
                "-".to_owned()
            } else {
                format!(
                    "{:.1}",
                    standing.spent.nanos() as f64 * 100.0 / limit.nanos() as f64
                )
            };
            (
                format!("{:.6}", standing.spent.as_dollars()),
                format!("{:.6}", standing.left(limit).as_dollars()),
                used,
            )
        }
        Err(_) => ("?".to_owned(), "?".to_owned(), "?".to_owned()),
    };
    vec![
        budget.id().to_string(),
        budget.scope().kind().to_owned(),
        budget.scope().subject().unwrap_or("-").to_owned(),
        budget.period().as_str().to_owned(),
        format!("{:.6}", limit.as_dollars()),
        spent,
        remaining,
        used,
        view.window.resets_at.map_or_else(
            || "never".to_owned(),
            |at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        ),
        view.entry.managed.as_str().to_owned(),
    ]
}

/// Renders every budget with its spend in its current period, in `format` (no total: budgets
/// overlap, so their spends do not add up).
pub fn render_budgets(views: &[BudgetView], format: ReportFormat) -> String {
    let body: Vec<Vec<String>> = views.iter().map(budget_cells).collect();
    layout(&BUDGET_HEADERS, &body, &[], format)
}

const TARGET_HEADERS: [&str; 10] = [
    "provider",
    "model",
    "attempts",
    "successes",
    "failures",
    "failures_by_code",
    "continuations",
    "input_tokens",
    "output_tokens",
    "cost_usd",
];

fn target_cells(row: &TargetRow) -> Vec<String> {
    let by_code: Vec<String> = row
        .failures_by_code
        .iter()
        .map(|(code, n)| format!("{code}={n}"))
        .collect();
    vec![
        row.provider.clone(),
        row.model.clone(),
        row.attempts.to_string(),
        row.successes.to_string(),
        row.failures.to_string(),
        by_code.join(" "),
        row.continuations.to_string(),
        row.input_tokens.to_string(),
        row.output_tokens.to_string(),
        format!("{:.6}", row.cost_usd),
    ]
}

/// Renders the by-target report in `format`: a line with the calls and those that needed more
/// than one attempt (not in CSV, which holds one table only), then one row per target and, in
/// the table and Markdown formats, a total.
pub fn render_targets(report: &TargetReport, format: ReportFormat) -> String {
    let rows = &report.targets;
    let sum = |f: fn(&TargetRow) -> i64| {
        rows.iter()
            .map(f)
            .fold(0i64, i64::saturating_add)
            .to_string()
    };
    let total = vec![
        "TOTAL".to_owned(),
        String::new(),
        sum(|r| r.attempts),
        sum(|r| r.successes),
        sum(|r| r.failures),
        String::new(),
        sum(|r| r.continuations),
        sum(|r| r.input_tokens),
        sum(|r| r.output_tokens),
        format!("{:.6}", rows.iter().map(|r| r.cost_usd).sum::<f64>()),
    ];
    let body: Vec<Vec<String>> = rows.iter().map(target_cells).collect();
    let table = layout(&TARGET_HEADERS, &body, &total, format);
    match format {
        ReportFormat::Csv => table,
        ReportFormat::Table | ReportFormat::Markdown => format!(
            "calls: {}, of which needed more than one attempt: {}\n\n{table}",
            report.calls, report.fallback_calls
        ),
    }
}

/// `text` with its control characters escaped (`\n`, `\u{1b}`), so a stored value cannot break
/// the layout or drive the terminal; quotes are left as they are (a key named `ada's laptop`
/// prints as such).
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_debug().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Renders one call: its row's fields, one a line, then its attempts (if it made several) as a
/// table.
pub fn render_call(call: &StoredCall) -> String {
    let r = &call.row;
    let optional = |value: Option<&str>| value.unwrap_or("-").to_owned();
    let fields: [(&str, String); 24] = [
        ("request_id", r.request_id.clone()),
        (
            "client_request_id",
            optional(r.client_request_id.as_deref()),
        ),
        (
            "timestamp",
            format!("{}Z", r.timestamp.format("%Y-%m-%dT%H:%M:%S%.3f")),
        ),
        ("user_email_hash", optional(r.user_email_hash.as_deref())),
        ("api_key", optional(r.api_key.as_deref())),
        ("door", r.door.clone()),
        (
            "specialist",
            format!("{} ({})", r.specialist_id, r.specialist_name),
        ),
        ("provider", r.provider.clone()),
        ("model", r.model.clone()),
        (
            "outcome",
            optional(r.error_code.as_deref().or(r.success.then_some("success"))),
        ),
        ("attempts", r.attempts.to_string()),
        ("streamed", r.streamed.to_string()),
        ("input_tokens", r.input_tokens.to_string()),
        ("output_tokens", r.output_tokens.to_string()),
        ("cached_input_tokens", r.cached_input_tokens.to_string()),
        ("cache_write_tokens", r.cache_write_tokens.to_string()),
        ("reasoning_tokens", r.reasoning_tokens.to_string()),
        ("tokens_estimated", r.tokens_estimated.to_string()),
        ("cost_usd", format!("{:.6}", r.estimated_cost_usd)),
        ("pricing_known", r.pricing_known.to_string()),
        ("latency_ms", format!("{:.1}", r.latency_ms)),
        (
            "ttft_ms",
            r.ttft_ms
                .map_or_else(|| "-".to_owned(), |t| format!("{t:.1}")),
        ),
        ("end_user", optional(r.end_user.as_deref())),
        ("success", r.success.to_string()),
    ];
    let width = fields.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (name, value) in &fields {
        let _ = writeln!(out, "{name:<width$}  {}", printable(value));
    }
    if call.attempts.is_empty() {
        return out;
    }
    let headers = [
        "attempt",
        "provider",
        "model",
        "base_url",
        "outcome",
        "continuation",
        "input_tokens",
        "output_tokens",
        "cost_usd",
        "latency_ms",
    ];
    let rows: Vec<Vec<String>> = call
        .attempts
        .iter()
        .zip(1..)
        .map(|(a, n): (&AttemptRecord, u32)| {
            vec![
                n.to_string(),
                a.provider.as_str().to_owned(),
                printable(&a.model),
                a.base_url
                    .as_deref()
                    .map_or_else(|| "-".to_owned(), printable),
                a.error_code.map_or("success", |c| c.as_str()).to_owned(),
                a.continuation.to_string(),
                a.usage.input_tokens.to_string(),
                a.usage.output_tokens.to_string(),
                format!("{:.6}", a.cost.as_dollars()),
                format!("{:.1}", a.latency.as_secs_f64() * 1000.0),
            ]
        })
        .collect();
    out.push('\n');
    out.push_str(&layout(&headers, &rows, &[], ReportFormat::Table));
    out
}

/// Lays `rows` out under `headers` in `format`, with `total` last (an empty `total` means no
/// total line; CSV never has one).
fn layout(
    headers: &[&str],
    rows: &[Vec<String>],
    total: &[String],
    format: ReportFormat,
) -> String {
    let mut out = String::new();
    match format {
        ReportFormat::Csv => {
            out.push_str(&headers.join(","));
            out.push('\n');
            for row in rows {
                let line: Vec<String> = row.iter().map(|c| csv_field(c)).collect();
                out.push_str(&line.join(","));
                out.push('\n');
            }
        }
        ReportFormat::Markdown => {
            let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
            let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
            out.push_str(&line(&header));
            out.push_str("|---|");
            out.push_str(&"---:|".repeat(headers.len() - 1));
            out.push('\n');
            for row in rows {
                out.push_str(&line(row));
            }
            if !total.is_empty() {
                let bold: Vec<String> = total
                    .iter()
                    .map(|c| format!("**{c}**").replace("****", ""))
                    .collect();
                out.push_str(&line(&bold));
            }
        }
        ReportFormat::Table => {
            let mut table: Vec<Vec<String>> =
                vec![headers.iter().map(|h| (*h).to_owned()).collect()];
            table.extend(rows.iter().cloned());
            let has_total = !total.is_empty();
            if has_total {
                table.push(total.to_vec());
            }
            let widths: Vec<usize> = (0..headers.len())
                .map(|i| {
                    table
                        .iter()
                        .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            for (n, row) in table.iter().enumerate() {
                if has_total && n == table.len() - 1 {
                    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
                    let _ = writeln!(out, "{}", rule.join("  "));
                }
                let mut line = String::new();
                for (i, cell) in row.iter().enumerate() {
                    let width = widths.get(i).copied().unwrap_or(0);
                    if i == 0 {
                        let _ = write!(line, "{cell:<width$}");
                    } else {
                        let _ = write!(line, "  {cell:>width$}");
                    }
                }
                let _ = writeln!(out, "{}", line.trim_end());
            }
        }
    }
    out
}

fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<SummaryRow> {
        vec![
            SummaryRow {
                key: "demo".into(),
                requests: 3,
                successes: 2,
                failures: 1,
                input_tokens: 30,
                output_tokens: 60,
                cost_usd: 0.0,
                avg_latency_ms: 1.25,
                p50_latency_ms: 1.0,
                p95_latency_ms: 2.0,
            },
            SummaryRow {
                key: "gpt,4o \"x\"".into(),
                requests: 1,
                successes: 1,
                failures: 0,
                input_tokens: 1000,
                output_tokens: 500,
                cost_usd: 0.0075,
                avg_latency_ms: 812.0,
                p50_latency_ms: 812.0,
                p95_latency_ms: 812.0,
            },
        ]
    }

    #[test]
    fn csv_has_a_header_and_quotes_when_needed() {
        let csv = render(&rows(), ReportFormat::Csv);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], HEADERS.join(","));
        assert_eq!(lines[1], "demo,3,2,1,30,60,0.000000,1.2,1.0,2.0");
        assert_eq!(
            lines[2],
            "\"gpt,4o \"\"x\"\"\",1,1,0,1000,500,0.007500,812.0,812.0,812.0"
        );
        assert_eq!(lines.len(), 3);
    }

    #[test]
    fn table_is_aligned_with_a_total() {
        let table = render(&rows(), ReportFormat::Table);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 5, "{table}");
        assert!(lines[0].starts_with("key"));
        assert!(lines[4].starts_with("TOTAL"));
        assert!(lines[4].contains("0.007500"));
        assert!(lines[4].contains(" 4 "), "{}", lines[4]);
        assert!(lines[3].chars().all(|c| c == '-' || c == ' '));
    }

    #[test]
    fn totals_of_huge_stored_counts_saturate_instead_of_panicking() {
        let mut rows = rows();
        rows[0].input_tokens = i64::MAX;
        rows[1].input_tokens = i64::MAX;
        let table = render(&rows, ReportFormat::Table);
        assert!(table.contains(&i64::MAX.to_string()), "{table}");
    }

    #[test]
    fn markdown_is_a_table_with_a_total_row() {
        let md = render(&rows(), ReportFormat::Markdown);
        let lines: Vec<&str> = md.lines().collect();
        assert!(lines[0].starts_with("| key | requests"));
        assert!(lines[1].starts_with("|---|---:|"));
        assert!(
            lines[4].starts_with("| **TOTAL** | **4** |"),
            "{}",
            lines[4]
        );
    }

    fn target_report() -> TargetReport {
        let target = |provider: &str, model: &str, attempts: i64, codes: &[(&str, i64)]| {
            let failures: i64 = codes.iter().map(|(_, n)| n).sum();
            TargetRow {
                provider: provider.into(),
                model: model.into(),
                attempts,
                successes: attempts - failures,
                failures,
                failures_by_code: codes.iter().map(|(c, n)| ((*c).to_owned(), *n)).collect(),
                continuations: 1,
                input_tokens: 100 * attempts,
                output_tokens: 10 * attempts,
                cost_usd: 0.001 * attempts as f64,
            }
        };
        TargetReport {
            calls: 5,
            fallback_calls: 2,
            targets: vec![
                target("anthropic", "claude-sonnet-4", 2, &[]),
                target(
                    "openai",
                    "gpt-4o",
                    4,
                    &[("upstream_rate_limited", 2), ("upstream_timeout", 1)],
                ),
            ],
        }
    }

    #[test]
    fn the_by_target_table_names_the_fallbacks_and_each_failure_code() {
        let table = render_targets(&target_report(), ReportFormat::Table);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            "calls: 5, of which needed more than one attempt: 2"
        );
        assert!(lines[2].starts_with("provider"), "{table}");
        assert!(
            lines[4].contains("upstream_rate_limited=2 upstream_timeout=1"),
            "{table}"
        );
        assert!(lines[6].starts_with("TOTAL"), "{table}");
        assert!(lines[6].contains("0.006000"), "{table}");

        let csv = render_targets(&target_report(), ReportFormat::Csv);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], TARGET_HEADERS.join(","));
        assert_eq!(
            lines[2],
            "openai,gpt-4o,4,1,3,upstream_rate_limited=2 upstream_timeout=1,1,400,40,0.004000"
        );
        assert_eq!(lines.len(), 3, "one table, no total: {csv}");
    }

    #[test]
    fn a_call_prints_its_row_and_each_attempt() {
        let call = StoredCall {
            row: usage_store::StoredUsage {
                id: 1,
                timestamp: chrono::NaiveDate::from_ymd_opt(2026, 11, 30)
                    .unwrap()
                    .and_hms_opt(12, 0, 0)
                    .unwrap(),
                request_id: "fb-1".into(),
                user_email_hash: None,
                specialist_id: "demo".into(),
                specialist_name: "Demo\nline".into(),
                provider: "anthropic".into(),
                model: "claude-sonnet-4".into(),
                input_tokens: 2440,
                output_tokens: 340,
                tokens_estimated: true,
                estimated_cost_usd: 0.00822,
                pricing_known: false,
                latency_ms: 3520.0,
                ttft_ms: None,
                success: true,
                error_code: None,
                streamed: true,
                client_request_id: None,
                cached_input_tokens: 0,
                cache_write_tokens: 0,
                reasoning_tokens: 0,
                end_user: None,
                attempts: 3,
                api_key: None,
                door: "native".into(),
            },
            attempts: usage_store::fixture::fallback_record("fb-1").attempt_details,
        };
        let text = render_call(&call);
        assert!(text.contains("attempts             3"), "{text}");
        assert!(
            text.contains("Demo\\nline"),
            "control characters shown escaped: {text}"
        );
        let attempt_lines: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("attempt "))
            .collect();
        assert_eq!(attempt_lines.len(), 4, "{text}");
        assert!(attempt_lines[1].contains("upstream_rate_limited"), "{text}");
        assert!(
            attempt_lines[2].contains("http://127.0.0.1:8081/v1"),
            "{text}"
        );
        assert!(attempt_lines[3].contains("success") && attempt_lines[3].contains("true"));

        let single = StoredCall {
            attempts: Vec::new(),
            ..call
        };
        assert!(!render_call(&single).contains("base_url"));
    }

    #[test]
    fn a_call_prints_the_name_of_the_api_key_it_was_made_with() {
        let mut call = StoredCall {
            row: usage_store::StoredUsage {
                id: 1,
                timestamp: chrono::NaiveDate::from_ymd_opt(2026, 11, 30)
                    .unwrap()
                    .and_hms_opt(12, 0, 0)
                    .unwrap(),
                request_id: "key-1".into(),
                user_email_hash: None,
                specialist_id: "demo".into(),
                specialist_name: "Demo".into(),
                provider: "mock".into(),
                model: "mock-echo".into(),
                input_tokens: 10,
                output_tokens: 20,
                tokens_estimated: false,
                estimated_cost_usd: 0.0,
                pricing_known: true,
                latency_ms: 1.0,
                ttft_ms: None,
                success: true,
                error_code: None,
                streamed: false,
                client_request_id: None,
                cached_input_tokens: 0,
                cache_write_tokens: 0,
                reasoning_tokens: 0,
                end_user: None,
                attempts: 1,
                api_key: Some("ada's laptop\u{1b}[31m".into()),
                door: "messages".into(),
            },
            attempts: Vec::new(),
        };
        let line = |text: &str| {
            text.lines()
                .find(|l| l.starts_with("api_key "))
                .map(str::to_owned)
        };
        let text = render_call(&call);
        assert_eq!(
            line(&text).as_deref(),
            Some("api_key              ada's laptop\\u{1b}[31m"),
            "{text}"
        );
        call.row.api_key = None;
        let text = render_call(&call);
        assert_eq!(
            line(&text).as_deref(),
            Some("api_key              -"),
            "{text}"
        );
    }
}
