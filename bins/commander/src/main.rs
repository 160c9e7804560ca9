//! `commander`: the LLM gateway's command line.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use commander::{
    Application, ReportFormat, budget_report, export_specialists, import_specialists, init_logging,
    load_settings, render_budgets, render_call, render_report, render_targets,
};
use core_domain::RequestId;
use usage_store::{
    GroupBy, Percentiles, RangeEnd, Scope, SummaryQuery, TargetQuery, UsageStore,
    default_range_start, parse_range_bound,
};

/// commander: a multi-provider LLM chat gateway built around specialists.
#[derive(Debug, Parser)]
#[command(name = "commander", version)]
struct Cli {
    /// Configuration file (TOML). Without it, ./commander.toml is read if present.
    #[arg(long, global = true, value_name = "PATH", env = "COMMANDER_CONFIG")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Check the configuration (file, environment, catalogue) without starting; print it with
    /// secrets masked. Exits 1 listing every problem.
    CheckConfig,
    /// Usage log tools.
    Usage {
        #[command(subcommand)]
        command: UsageCommand,
    },
    /// Specialist catalogue tools: move a catalogue between the file and the database.
    Specialists {
        #[command(subcommand)]
        command: SpecialistsCommand,
    },
    /// API key tools.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Budget tools.
    Budgets {
        #[command(subcommand)]
        command: BudgetsCommand,
    },
}

#[derive(Debug, Subcommand)]
enum BudgetsCommand {
    /// Print every budget (config and API-managed) with its spend this period, summed from the
    /// usage log.
    List {
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: ReportFormat,
    },
}

#[derive(Debug, Subcommand)]
enum SpecialistsCommand {
    /// Add the specialists of a catalogue file to the configured store (specialists.store), by
    /// id: new ones as they are, changed ones as their next version. All or nothing.
    Import {
        /// A catalogue file ({"specialists": [...]}).
        file: PathBuf,
    },
    /// Print the configured store's catalogue in the file format, or write it to FILE.
    Export {
        /// Where to write it (default: standard output).
        file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Make a new random API key: prints the key (once; only its hash is kept) and the line to
    /// add under [auth] api_keys.
    New {
        /// A label for the key (shown in logs instead of the key).
        #[arg(long)]
        name: String,
        /// The owner's email.
        #[arg(long)]
        email: String,
        /// What the key may do.
        #[arg(long, value_enum, default_value = "user")]
        role: KeyRole,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum KeyRole {
    /// Chat, read specialists, read own usage.
    User,
    /// Everything, including specialist management and everyone's usage.
    Admin,
}

#[derive(Debug, Subcommand)]
enum UsageCommand {
    /// Print a usage summary: calls, outcomes, tokens, cost and latency per group.
    Report {
        /// Start: a date (2026-11-01, from its start) or an RFC 3339 time. Default: 30 days
        /// before --to.
        #[arg(long)]
        from: Option<String>,
        /// End: a date (included whole) or an RFC 3339 time (excluded). Default: now.
        #[arg(long)]
        to: Option<String>,
        /// What to group by.
        #[arg(long, default_value = "specialist", value_parser = parse_group_by)]
        group_by: GroupBy,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: ReportFormat,
        /// Instead of the summary: per upstream target (provider and model), the attempts
        /// made across every call, their outcomes, tokens and cost, and how many calls needed
        /// more than one attempt.
        #[arg(long, conflicts_with = "group_by")]
        targets: bool,
    },
    /// Print one call's usage row and, if it made several attempts, each of them.
    Call {
        /// The call's request id (its X-Request-Id).
        request_id: String,
    },
}

fn parse_group_by(raw: &str) -> Result<GroupBy, String> {
    raw.parse()
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Making a key needs no configuration at all.
    if let Some(Command::Keys {
        command: KeysCommand::New { name, email, role },
    }) = &cli.command
    {
        return match new_key(name, email, *role) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("commander: {message}");
                ExitCode::FAILURE
            }
        };
    }
    let env: HashMap<String, String> = std::env::vars().collect();
    let settings = match load_settings(cli.config.as_deref(), &env) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("commander: invalid configuration: {e}");
            return ExitCode::FAILURE;
        }
    };
    if matches!(cli.command, Some(Command::CheckConfig)) {
        return check_config(&settings);
    }
    // The catalogue tools print their outcome themselves, and `export` prints the catalogue on
    // stdout, where log lines would corrupt it.
    if !matches!(cli.command, Some(Command::Specialists { .. })) {
        init_logging(&settings.log);
    }

    let outcome = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings).await,
        Command::Migrate => migrate(settings).await,
        Command::Usage {
            command:
                UsageCommand::Report {
                    from,
                    to,
                    group_by,
                    format,
                    targets,
                },
        } => {
            let what = if targets {
                Report::Targets
            } else {
                Report::Summary(group_by)
            };
            report(settings, from, to, what, format).await
        }
        Command::Usage {
            command: UsageCommand::Call { request_id },
        } => call(settings, &request_id).await,
        Command::Specialists { command } => specialists_command(settings, command).await,
        Command::Budgets {
            command: BudgetsCommand::List { format },
        } => budget_report(&settings)
            .await
            .map(|views| print!("{}", render_budgets(&views, format))),
        Command::Keys { .. } | Command::CheckConfig => Ok(()),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            eprintln!("commander: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: commander::Settings) -> Result<(), String> {
    let app = Application::build(settings)
        .await
        .map_err(|e| e.to_string())?;
    app.run_until_signalled().await.map_err(|e| e.to_string())
}

async fn specialists_command(
    settings: commander::Settings,
    command: SpecialistsCommand,
) -> Result<(), String> {
    tokio::task::spawn_blocking(move || match command {
        SpecialistsCommand::Import { file } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            let counts = import_specialists(&settings, &text)?;
            println!(
                "imported {}: {} created, {} updated, {} unchanged",
                file.display(),
                counts.created,
                counts.updated,
                counts.unchanged
            );
            Ok(())
        }
        SpecialistsCommand::Export { file: None } => {
            print!("{}", export_specialists(&settings)?);
            Ok(())
        }
        SpecialistsCommand::Export { file: Some(file) } => {
            let text = export_specialists(&settings)?;
            std::fs::write(&file, text).map_err(|e| format!("cannot write {}: {e}", file.display()))
        }
    })
    .await
    .map_err(|e| e.to_string())?
}

async fn migrate(settings: commander::Settings) -> Result<(), String> {
    let database = settings.database;
    let applied = tokio::task::spawn_blocking(move || {
        UsageStore::connect_without_migrating(&database)?.migrate()
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    println!("{applied} migration(s) applied; the database schema is up to date");
    Ok(())
}

/// Which report `usage report` prints.
enum Report {
    /// The summary, grouped.
    Summary(GroupBy),
    /// The by-target report.
    Targets,
}

async fn report(
    settings: commander::Settings,
    from: Option<String>,
    to: Option<String>,
    what: Report,
    format: ReportFormat,
) -> Result<(), String> {
    let to = match to {
        Some(raw) => parse_range_bound(&raw, RangeEnd::End).map_err(|e| format!("--to: {e}"))?,
        None => chrono::Utc::now(),
    };
    let from = match from {
        Some(raw) => {
            parse_range_bound(&raw, RangeEnd::Start).map_err(|e| format!("--from: {e}"))?
        }
        None => default_range_start(to),
    };
    if from >= to {
        return Err("--from must be before --to".to_owned());
    }
    let settings_for_budgets = settings.clone();
    let database = settings.database;
    let scope = Scope::Everyone;
    let printed = tokio::task::spawn_blocking(move || {
        let store = UsageStore::connect(&database)?;
        Ok::<_, usage_store::StoreError>(match what {
            Report::Summary(group_by) => {
                let summary = store.summary(&SummaryQuery {
                    from,
                    to,
                    group_by,
                    scope,
                })?;
                // On standard error: the CSV or JSON on standard output stays one document.
                if summary.percentiles == Percentiles::Approximate {
                    eprintln!(
                        "note: p50/p95 are approximate (within 0.5%), read from the hourly \
                         rollup's latency bins; counts, tokens and cost are exact"
                    );
                }
                render_report(&summary.rows, format)
            }
            Report::Targets => {
                render_targets(&store.targets(&TargetQuery { from, to, scope })?, format)
            }
        })
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    print!("{printed}");
    // Spend against each budget beside the summary (CSV holds one table only).
    if format != ReportFormat::Csv {
        let views = budget_report(&settings_for_budgets).await?;
        if !views.is_empty() {
            println!();
            println!("Budgets (current periods):");
            print!("{}", render_budgets(&views, format));
        }
    }
    Ok(())
}

async fn call(settings: commander::Settings, raw: &str) -> Result<(), String> {
    let missing = || format!("no usage row for request id '{}'", raw.escape_debug());
    // An id the gateway could not have made has no row.
    let request_id = RequestId::parse(raw).map_err(|_| missing())?;
    let database = settings.database;
    let found = tokio::task::spawn_blocking(move || {
        UsageStore::connect(&database).and_then(|store| store.call(&request_id))
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    print!("{}", render_call(&found.ok_or_else(missing)?));
    Ok(())
}

fn new_key(name: &str, email: &str, role: KeyRole) -> Result<(), String> {
    if name.trim().is_empty() || name.contains('"') {
        return Err("--name must be non-empty and contain no quotes".to_owned());
    }
    let email = email.trim();
    if !email.contains('@') || email.contains('"') {
        return Err("--email must be an email address".to_owned());
    }
    let (key, sha256) = http_api::new_api_key().map_err(|e| format!("no randomness: {e}"))?;
    let role = match role {
        KeyRole::User => "user",
        KeyRole::Admin => "admin",
    };
    println!("API key (shown once; give it to {email} and do not store it):");
    println!();
    println!("    {key}");
    println!();
    println!("Add this to the api_keys list under [auth] in commander.toml:");
    println!();
    println!(
        "    {{ name = \"{name}\", email = \"{email}\", role = \"{role}\", sha256 = \"{sha256}\" }}"
    );
    Ok(())
}

fn check_config(settings: &commander::Settings) -> ExitCode {
    let problems = commander::check::problems(settings);
    match settings.redacted_toml() {
        Ok(text) => print!("{text}"),
        Err(e) => eprintln!("commander: cannot print the configuration: {e}"),
    }
    if problems.is_empty() {
        eprintln!("commander: configuration OK");
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "commander: the configuration has {} problem(s):",
            problems.len()
        );
        for problem in &problems {
            eprintln!("  - {problem}");
        }
        ExitCode::FAILURE
    }
}
