use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::{LogFormat, LogSettings};

/// Installs the global logger: human-readable lines or JSON, filtered by `RUST_LOG` when set,
/// else by `settings.level`.
pub fn init_logging(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour codes only for a person at a terminal: redirected to a file or a log collector
    // they are noise in every line.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal());
    let installed = match settings.format {
        LogFormat::Human => builder.try_init(),
        // The request span's fields (request id, route, specialist, provider, status, latency)
        // go with every line logged inside it.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    if let Err(e) = installed {
        eprintln!("logging was already set up: {e}");
    }
}
