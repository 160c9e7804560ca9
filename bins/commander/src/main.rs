//! `commander`: the LLM gateway's command line.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use commander::{Application, init_logging, load_settings};
use usage_store::UsageStore;

/// commander: a multi-provider LLM chat gateway built around specialists.
#[derive(Debug, Parser)]
#[command(name = "commander", version, about, long_about = None)]
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
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let env: HashMap<String, String> = std::env::vars().collect();
    let settings = match load_settings(cli.config.as_deref(), &env) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("commander: invalid configuration: {e}");
            return ExitCode::FAILURE;
        }
    };
    init_logging(&settings.log);

    let outcome = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings).await,
        Command::Migrate => migrate(settings).await,
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

async fn migrate(settings: commander::Settings) -> Result<(), String> {
    let database = settings.database;
    // Connecting applies pending migrations.
    tokio::task::spawn_blocking(move || UsageStore::connect(&database))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    println!("migrations applied");
    Ok(())
}
