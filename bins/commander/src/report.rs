//! `commander usage report`: the usage summary as a table, CSV or Markdown.

use std::fmt::Write;

use usage_store::SummaryRow;

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

const HEADERS: [&str; 9] = [
    "key",
    "requests",
    "successes",
    "failures",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "avg_latency_ms",
    "p95_latency_ms",
];

fn cells(row: &SummaryRow) -> [String; 9] {
    [
        row.key.clone(),
        row.requests.to_string(),
        row.successes.to_string(),
        row.failures.to_string(),
        row.input_tokens.to_string(),
        row.output_tokens.to_string(),
        format!("{:.6}", row.cost_usd),
        format!("{:.1}", row.avg_latency_ms),
        format!("{:.1}", row.p95_latency_ms),
    ]
}

/// The sums over all groups (latencies are not summable, so left blank). Saturating: the rows
/// come from a table ops may edit by hand.
fn total(rows: &[SummaryRow]) -> [String; 9] {
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
    ]
}

/// Renders `rows` in `format`.
pub fn render(rows: &[SummaryRow], format: ReportFormat) -> String {
    let mut out = String::new();
    match format {
        ReportFormat::Csv => {
            out.push_str(&HEADERS.join(","));
            out.push('\n');
            for row in rows {
                let line: Vec<String> = cells(row).iter().map(|c| csv_field(c)).collect();
                out.push_str(&line.join(","));
                out.push('\n');
            }
        }
        ReportFormat::Markdown => {
            let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
            out.push_str(&line(&HEADERS.map(str::to_owned)));
            out.push_str("|---|");
            out.push_str(&"---:|".repeat(HEADERS.len() - 1));
            out.push('\n');
            for row in rows {
                out.push_str(&line(&cells(row)));
            }
            out.push_str(&line(
                &total(rows).map(|c| format!("**{c}**").replace("****", "")),
            ));
        }
        ReportFormat::Table => {
            let mut table: Vec<[String; 9]> = vec![HEADERS.map(str::to_owned)];
            table.extend(rows.iter().map(cells));
            table.push(total(rows));
            let widths: Vec<usize> = (0..HEADERS.len())
                .map(|i| {
                    table
                        .iter()
                        .map(|r| r[i].chars().count())
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            for (n, row) in table.iter().enumerate() {
                if n == table.len() - 1 {
                    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
                    let _ = writeln!(out, "{}", rule.join("  "));
                }
                let mut line = String::new();
                for (i, cell) in row.iter().enumerate() {
                    if i == 0 {
                        let _ = write!(line, "{cell:<width$}", width = widths[i]);
                    } else {
                        let _ = write!(line, "  {cell:>width$}", width = widths[i]);
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
                p95_latency_ms: 812.0,
            },
        ]
    }

    #[test]
    fn csv_has_a_header_and_quotes_when_needed() {
        let csv = render(&rows(), ReportFormat::Csv);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], HEADERS.join(","));
        assert_eq!(lines[1], "demo,3,2,1,30,60,0.000000,1.2,2.0");
        assert_eq!(
            lines[2],
            "\"gpt,4o \"\"x\"\"\",1,1,0,1000,500,0.007500,812.0,812.0"
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
}
