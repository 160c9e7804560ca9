//! Hearing of catalogue changes as they commit (PostgreSQL `LISTEN`), so servers sharing the
//! database reload at once instead of at their next poll. The poll stays the fallback: a
//! notification missed while the listener reconnects only delays a change.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;

use crate::BUDGETS_CHANNEL;
use crate::UsageStore;
use crate::catalogue::CATALOGUE_CHANNEL;

/// How often the listening connection is checked for notifications: libpq offers no blocking
/// wait through diesel, and a tenth of a second keeps a change well within a second.
const CHECK_EVERY: Duration = Duration::from_millis(100);
/// A connection silent this long is asked a trivial query, so one cut without a word (a dead
/// proxy, a dropped route) is noticed.
const PROBE_AFTER: Duration = Duration::from_secs(2);
/// Reconnection waits start here and double up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The thread listening for catalogue changes; it stops (within a tenth of a second, or after a
/// connection attempt under way) when this is dropped or [`Self::stop`]ped.
#[derive(Debug)]
pub struct CatalogueListener {
    stop: Arc<AtomicBool>,
}

impl CatalogueListener {
    /// Asks the thread to end; it does not wait for it.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Drop for CatalogueListener {
    fn drop(&mut self) {
        self.stop();
    }
}

impl UsageStore {
    /// On PostgreSQL: starts a thread that keeps one connection of its own (outside the pool)
    /// listening for catalogue changes and calls `on_change` after each committed one, and
    /// once after every reconnection (changes may have been missed meanwhile). It reconnects
    /// by itself with backoff. `None` on SQLite, which has no notifications.
    pub fn listen_catalogue(
        &self,
        on_change: impl Fn() + Send + 'static,
    ) -> Option<CatalogueListener> {
        self.listen_on(CATALOGUE_CHANNEL, "catalogue", on_change)
    }

    /// [`UsageStore::listen_catalogue`] for the budgets managed over the API (changes to the
    /// `budgets` table, announced on [`BUDGETS_CHANNEL`]).
    pub fn listen_budgets(
        &self,
        on_change: impl Fn() + Send + 'static,
    ) -> Option<CatalogueListener> {
        self.listen_on(BUDGETS_CHANNEL, "budget", on_change)
    }

    fn listen_on(
        &self,
        channel: &'static str,
        what: &'static str,
        on_change: impl Fn() + Send + 'static,
    ) -> Option<CatalogueListener> {
        let url = self.postgres_url()?.to_owned();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let heard = Heard { channel, what };
        let spawned = std::thread::Builder::new()
            .name(format!("{what}-listen"))
            .spawn(move || listen(&url, heard, &stopped, &on_change));
        if let Err(error) = spawned {
            tracing::error!(%error, what, "cannot start a change listener; relying on the poll");
            return None;
        }
        Some(CatalogueListener { stop })
    }
}

/// Sleeps `duration` in short steps; false when asked to stop meanwhile.
fn pause(duration: Duration, stop: &AtomicBool) -> bool {
    let until = Instant::now() + duration;
    loop {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(CHECK_EVERY));
    }
}

/// What a listener listens for: its channel, and what its changes are of (for the log).
#[derive(Debug, Clone, Copy)]
struct Heard {
    channel: &'static str,
    what: &'static str,
}

fn connect(url: &str, channel: &str) -> Result<PgConnection, String> {
    let mut conn = PgConnection::establish(url).map_err(|e| e.to_string())?;
    conn.batch_execute(&format!("LISTEN {channel}"))
        .map_err(|e| e.to_string())?;
    Ok(conn)
}

fn listen(url: &str, heard: Heard, stop: &AtomicBool, on_change: &dyn Fn()) {
    let what = heard.what;
    let mut backoff = FIRST_BACKOFF;
    let mut lost = false;
    let mut first = true;
    while !stop.load(Ordering::Relaxed) {
        let mut conn = match connect(url, heard.channel) {
            Ok(conn) => conn,
            Err(error) => {
                if !lost {
                    tracing::warn!(%error, what, "cannot listen for changes; retrying, the poll still applies them");
                    lost = true;
                }
                if !pause(backoff, stop) {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = FIRST_BACKOFF;
        if lost {
            tracing::info!(what, "listening for changes again");
        }
        if !first {
            on_change();
        }
        first = false;
        let Some(error) = hear(&mut conn, stop, on_change) else {
            return;
        };
        tracing::warn!(%error, what, "lost a change listener's connection; reconnecting, the poll still applies changes");
        lost = true;
    }
}

/// Waits for notifications on `conn` until it fails (the error) or the listener stops (`None`).
fn hear(conn: &mut PgConnection, stop: &AtomicBool, on_change: &dyn Fn()) -> Option<String> {
    let mut quiet_since = Instant::now();
    loop {
        if stop.load(Ordering::Relaxed) {
            return None;
        }
        let mut heard = false;
        for notification in conn.notifications_iter() {
            match notification {
                Ok(_) => heard = true,
                Err(error) => return Some(error.to_string()),
            }
        }
        if heard {
            // One reload covers every change heard at once.
            on_change();
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() >= PROBE_AFTER {
            if let Err(error) = conn.batch_execute("SELECT 1") {
                return Some(error.to_string());
            }
            quiet_since = Instant::now();
        }
        if !pause(CHECK_EVERY, stop) {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DatabaseConfig;

    #[test]
    fn sqlite_has_no_listener_and_never_calls_back() {
        let dir = tempfile::tempdir().unwrap();
        let config = DatabaseConfig {
            url: format!("sqlite://{}", dir.path().join("c.db").display()),
            ..DatabaseConfig::default()
        }
        .with_files_in(dir.path());
        let store = UsageStore::connect(&config).unwrap();
        let called = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&called);
        assert!(
            store
                .listen_catalogue(move || flag.store(true, Ordering::Relaxed))
                .is_none()
        );
        assert!(!called.load(Ordering::Relaxed));
    }

    #[test]
    fn a_pause_ends_early_when_asked_to_stop() {
        let stop = AtomicBool::new(true);
        let started = Instant::now();
        assert!(!pause(Duration::from_secs(10), &stop));
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(pause(Duration::from_millis(10), &AtomicBool::new(false)));
    }
}
