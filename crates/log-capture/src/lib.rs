//! Log output captured in memory, for tests that assert what was, or was not, logged.
//!
//! A dev-dependency only: the unit tests of `http-api` and `commander` and the provider tests
//! share this one writer instead of each keeping a copy.
//!
//! ```
//! use log_capture::CapturedLogs;
//!
//! let logs = CapturedLogs::default();
//! let subscriber = tracing_subscriber::fmt()
//!     .with_writer(logs.clone())
//!     .with_ansi(false)
//!     .finish();
//! tracing::subscriber::with_default(subscriber, || tracing::warn!("disk almost full"));
//! assert!(logs.text().contains("WARN"));
//! ```

use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use tracing_subscriber::fmt::MakeWriter;

/// A log sink shared by a `tracing_subscriber::fmt` subscriber (pass a clone as its writer)
/// and the test that reads back what it wrote.
#[derive(Debug, Clone, Default)]
pub struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl CapturedLogs {
    /// Everything written so far.
    pub fn text(&self) -> String {
        // The fmt subscriber writes only `str`s, so nothing is lost to the lossy conversion.
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }

    fn bytes(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        // A test that panicked while logging has failed already; what it wrote still reads.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl io::Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.bytes().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for CapturedLogs {
    type Writer = Self;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
