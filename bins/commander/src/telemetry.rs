use std::fmt::{self, Write as _};
use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::format::{Writer, debug_fn};

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
        // Values logged here come from outside (paths, upstream error bodies): one line per
        // event only if none of them can break the line.
        LogFormat::Human => builder
            .fmt_fields(debug_fn(write_escaped_field).delimited(" "))
            .try_init(),
        // The request span's fields (request id, route, specialist, provider, status, latency)
        // go with every line logged inside it.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    match installed {
        // A panic's text can carry outside input (a value that failed a check), and the default
        // hook prints it raw to stderr: through the logger it is escaped, and one line.
        Ok(()) => std::panic::set_hook(Box::new(log_panic)),
        Err(e) => eprintln!("logging was already set up: {e}"),
    }
}

/// The panic hook once logging is up: the panic as one ERROR event (text, place, thread and,
/// when `RUST_BACKTRACE` asks for it, the backtrace) in the configured format.
fn log_panic(info: &std::panic::PanicHookInfo<'_>) {
    let payload = info.payload();
    let text = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message");
    let location = info
        .location()
        .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
        .unwrap_or_default();
    let thread = std::thread::current();
    let backtrace = std::backtrace::Backtrace::capture();
    if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
        tracing::error!(panic = text, location, thread = thread.name(), %backtrace, "panicked");
    } else {
        tracing::error!(panic = text, location, thread = thread.name(), "panicked");
    }
}

/// One field of a human-format line: `name=value` (the message bare), with every character
/// that could end the line or disguise it escaped.
fn write_escaped_field(
    writer: &mut Writer<'_>,
    field: &tracing::field::Field,
    value: &dyn fmt::Debug,
) -> fmt::Result {
    let name = field.name();
    // What the `log` bridge adds (target, file, line) is already in the line's prefix.
    if name.starts_with("log.") {
        return Ok(());
    }
    if name != "message" {
        write!(writer, "{}=", name.trim_start_matches("r#"))?;
    }
    write!(EscapeControls(writer), "{value:?}")
}

/// Writes through to `W`, replacing control characters (C0, DEL, C1), Unicode line and
/// paragraph separators and bidirectional controls with Rust-style escapes (`\n`, `\u{202e}`).
struct EscapeControls<W>(W);

/// True for a character that must not reach a log line raw.
fn must_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}'
                | '\u{2029}'
                | '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

impl<W: fmt::Write> fmt::Write for EscapeControls<W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut rest = text;
        while let Some((at, c)) = rest.char_indices().find(|(_, c)| must_escape(*c)) {
            self.0.write_str(&rest[..at])?;
            match c {
                '\n' => self.0.write_str("\\n")?,
                '\r' => self.0.write_str("\\r")?,
                '\t' => self.0.write_str("\\t")?,
                other => write!(self.0, "\\u{{{:x}}}", u32::from(other))?,
            }
            rest = &rest[at + c.len_utf8()..];
        }
        self.0.write_str(rest)
    }
}

#[cfg(test)]
mod tests {
    use log_capture::CapturedLogs;

    use super::*;

    fn escaped(text: &str) -> String {
        let mut out = String::new();
        write!(EscapeControls(&mut out), "{text}").unwrap();
        out
    }

    #[test]
    fn line_breaks_and_disguises_are_escaped_and_the_rest_kept() {
        assert_eq!(
            escaped("a\nb\r\tc\u{1b}[31md\u{85}e\u{2028}f\u{202e}g\u{7f}"),
            "a\\nb\\r\\tc\\u{1b}[31md\\u{85}e\\u{2028}f\\u{202e}g\\u{7f}"
        );
        assert_eq!(escaped("plain Straße 東京 ✓"), "plain Straße 東京 ✓");
    }

    #[test]
    fn a_panic_is_one_escaped_error_line_in_the_log() {
        let logs = CapturedLogs::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_ansi(false)
            .fmt_fields(debug_fn(write_escaped_field).delimited(" "))
            .finish();
        let _installed = tracing::subscriber::set_default(subscriber);
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(log_panic));
        let caught = std::panic::catch_unwind(|| {
            panic!("bad value 'x\n2026-11-30T00:00:00Z  INFO commander: FORGED'");
        });
        std::panic::set_hook(previous);
        assert!(caught.is_err());

        let logs = logs.text();
        assert_eq!(logs.lines().count(), 1, "{logs}");
        assert!(logs.contains("ERROR"), "{logs}");
        assert!(logs.contains("panicked"), "{logs}");
        assert!(
            logs.contains("telemetry.rs"),
            "the location is kept: {logs}"
        );
        assert!(logs.contains("x\\n2026"), "the newline is escaped: {logs}");
    }
}
