//! Record chat calls through the background writer and print a report of them, in a SQLite
//! file in a fresh temporary directory (removed at the end):
//!
//! ```sh
//! cargo run -p usage-store --example record_and_report
//! ```
//!
//! The same code works against PostgreSQL: only `DatabaseConfig::url` changes
//! (`postgres://user@host:port/db`).

use std::io::Write;
use std::time::Duration;

use chrono::{Days, Utc};
use core_domain::{EmailHash, ErrorCode, ProviderKind, RequestId, SpecialistId, TokenUsage, Usd};
use usage_store::{
    DatabaseConfig, GroupBy, Scope, SummaryQuery, UsageRecord, UsageStore, spawn_writer,
};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    run(&mut std::io::stdout().lock()).await
}

async fn run(out: &mut impl Write) -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let config = DatabaseConfig {
        url: format!("sqlite://{}", dir.path().join("usage.db").display()),
        ..DatabaseConfig::default()
    }
    .with_files_in(dir.path());
    // Opens the pool and applies the migrations.
    let store = UsageStore::connect(&config)?;
    // `record` never waits for the database: rows are queued and written in batches.
    let (sink, writer) = spawn_writer(store.clone(), &config)?;

    let calls = [
        ("ada@example.com", "gpt-4o", 1_200, 340, None),
        ("ada@example.com", "gpt-4o", 800, 95, None),
        ("grace@example.com", "claude-sonnet-4-5", 2_000, 610, None),
        (
            "grace@example.com",
            "claude-sonnet-4-5",
            150,
            0,
            Some(ErrorCode::UpstreamTimeout),
        ),
    ];
    for (n, (email, model, input, output, error_code)) in calls.into_iter().enumerate() {
        let provider = if model.starts_with("gpt") {
            ProviderKind::OpenAi
        } else {
            ProviderKind::Anthropic
        };
        sink.record(UsageRecord {
            request_id: RequestId::parse(format!("example-{n}"))?,
            client_request_id: None,
            timestamp: Utc::now(),
            user_email_hash: Some(EmailHash::of_email(email)),
            specialist_id: SpecialistId::parse("financial_analyst")?,
            specialist_name: "Financial Analyst".into(),
            provider,
            model: model.into(),
            usage: TokenUsage::reported(input, output),
            cost: Usd::from_nanos(u64::from(input) * 2_500 + u64::from(output) * 10_000),
            pricing_known: true,
            latency: Duration::from_millis(400 + 100 * n as u64),
            time_to_first_token: None,
            error_code,
            streamed: false,
            end_user: None,
            api_key: None,
            door: core_domain::Door::Native,
            attempts: 1,
            attempt_details: Vec::new(),
        });
    }
    // Waits until everything recorded so far is committed.
    sink.flush().await?;

    let now = Utc::now();
    let rows = store
        .summary(&SummaryQuery {
            from: now - Days::new(1),
            to: now + Days::new(1),
            group_by: GroupBy::Model,
            scope: Scope::Everyone,
        })?
        .rows;
    writeln!(
        out,
        "{:<20} {:>5} {:>5} {:>8} {:>8} {:>10}",
        "model", "calls", "fails", "in", "out", "cost USD"
    )?;
    for row in &rows {
        writeln!(
            out,
            "{:<20} {:>5} {:>5} {:>8} {:>8} {:>10.6}",
            row.key, row.requests, row.failures, row.input_tokens, row.output_tokens, row.cost_usd
        )?;
    }
    let stats = sink.stats();
    writeln!(
        out,
        "\n{} rows in {} batches, {} spilled",
        stats.rows_written, stats.batches_written, stats.spilled
    )?;

    // Commits anything still queued; a service does this at exit.
    writer.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn four_recorded_calls_are_committed_and_summarised_per_model() {
        let mut out = Vec::new();
        super::run(&mut out).await.unwrap();
        let out = String::from_utf8(out).unwrap();
        let lines: Vec<Vec<&str>> = out
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert!(
            lines.contains(&vec![
                "claude-sonnet-4-5",
                "2",
                "1",
                "2150",
                "610",
                "0.011475"
            ]),
            "{out}"
        );
        assert!(
            lines.contains(&vec!["gpt-4o", "2", "0", "2000", "435", "0.009350"]),
            "{out}"
        );
        assert!(out.contains("\n4 rows in "), "{out}");
        assert!(out.contains(", 0 spilled"), "{out}");
    }
}
