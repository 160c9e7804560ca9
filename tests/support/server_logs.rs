//! What the servers of this test process log, for tests that assert on a log line or wait for
//! one (an event only the log shows, such as the catalogue poll rejecting a file).

use std::sync::OnceLock;

use log_capture::CapturedLogs;

/// Everything logged in this process from the first call to this on, at debug level and
/// above: one process-wide logger, since a server's workers log on their own threads. Servers
/// of tests running in parallel log here too, so a test looks for lines that name something of
/// its own (its catalogue file, its key).
pub fn server_logs() -> &'static CapturedLogs {
    static LOGS: OnceLock<CapturedLogs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = CapturedLogs::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(logs.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other code in the test process installs a global logger");
        logs
    })
}
