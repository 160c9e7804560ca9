//! Whether the catalogue file can be used, as the reload poll sees it, so that a broken file is
//! reported once when it breaks and once when it is fixed, not on every poll.

use crate::{CatalogueError, Reload};

/// What one poll changed about the file's health: what deserves a log line.
#[derive(Debug)]
pub enum HealthChange<'a> {
    /// Nothing new: the file is as it was, good.
    Steady,
    /// The file changed and was loaded (this many specialists); if it was broken, it is fixed.
    Reloaded(usize),
    /// The file became unusable, or unusable for another reason than before: worth an error.
    Broke(&'a CatalogueError),
    /// Still unusable for the reason already reported.
    StillBroken,
    /// Usable again without a reload: the file that went missing is back as it was.
    Recovered,
}

/// The catalogue file's health across reload polls.
///
/// ```
/// use specialists::{FileHealth, HealthChange, Reload};
///
/// let mut health = FileHealth::default();
/// assert!(matches!(health.observe(&Ok(Reload::Unchanged)), HealthChange::Steady));
/// assert!(matches!(health.observe(&Ok(Reload::StillInvalid)), HealthChange::StillBroken));
/// assert!(matches!(health.observe(&Ok(Reload::Unchanged)), HealthChange::Recovered));
/// ```
#[derive(Debug, Default)]
pub struct FileHealth {
    /// The problem last reported, while the file is unusable.
    problem: Option<String>,
    /// True while the file is unusable, even if the problem was reported elsewhere (a change
    /// that found the file broken logs it itself; the poll then only sees `StillInvalid`).
    broken: bool,
}

impl FileHealth {
    /// Takes in one poll's outcome and says what changed.
    pub fn observe<'a>(&mut self, outcome: &'a Result<Reload, CatalogueError>) -> HealthChange<'a> {
        match outcome {
            Ok(Reload::Unchanged) => {
                let was_broken = self.broken;
                self.problem = None;
                self.broken = false;
                if was_broken {
                    HealthChange::Recovered
                } else {
                    HealthChange::Steady
                }
            }
            Ok(Reload::Reloaded(count)) => {
                self.problem = None;
                self.broken = false;
                HealthChange::Reloaded(*count)
            }
            Ok(Reload::StillInvalid) => {
                self.broken = true;
                HealthChange::StillBroken
            }
            Err(error) => {
                self.broken = true;
                let problem = error.to_string();
                if self.problem.as_deref() == Some(problem.as_str()) {
                    HealthChange::StillBroken
                } else {
                    self.problem = Some(problem);
                    HealthChange::Broke(error)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn missing() -> Result<Reload, CatalogueError> {
        Err(CatalogueError::Io {
            action: "read",
            path: PathBuf::from("specialists.json"),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "the file is gone"),
        })
    }

    fn malformed() -> Result<Reload, CatalogueError> {
        Err(CatalogueError::Malformed(
            serde_json::from_str::<u8>("{").unwrap_err(),
        ))
    }

    fn kind(change: HealthChange<'_>) -> &'static str {
        match change {
            HealthChange::Steady => "steady",
            HealthChange::Reloaded(_) => "reloaded",
            HealthChange::Broke(_) => "broke",
            HealthChange::StillBroken => "still broken",
            HealthChange::Recovered => "recovered",
        }
    }

    #[test]
    fn a_missing_file_is_reported_once_then_its_return_once() {
        let mut health = FileHealth::default();
        let polls = [
            Ok(Reload::Unchanged),
            missing(),
            missing(),
            missing(),
            Ok(Reload::Unchanged),
            Ok(Reload::Unchanged),
        ];
        let seen: Vec<&str> = polls.iter().map(|p| kind(health.observe(p))).collect();
        assert_eq!(
            seen,
            [
                "steady",
                "broke",
                "still broken",
                "still broken",
                "recovered",
                "steady"
            ]
        );
    }

    #[test]
    fn a_new_problem_is_reported_and_a_reload_ends_the_trouble() {
        let mut health = FileHealth::default();
        let polls = [
            missing(),
            malformed(),
            Ok(Reload::StillInvalid),
            Ok(Reload::StillInvalid),
            Ok(Reload::Reloaded(3)),
            Ok(Reload::Unchanged),
            missing(),
        ];
        let seen: Vec<&str> = polls.iter().map(|p| kind(health.observe(p))).collect();
        assert_eq!(
            seen,
            [
                "broke",
                "broke",
                "still broken",
                "still broken",
                "reloaded",
                "steady",
                "broke"
            ]
        );
    }

    #[test]
    fn a_file_a_change_found_broken_recovers_when_restored() {
        // A change reported the bad file itself; the poll only ever sees it as known.
        let mut health = FileHealth::default();
        assert_eq!(
            kind(health.observe(&Ok(Reload::StillInvalid))),
            "still broken"
        );
        assert_eq!(kind(health.observe(&Ok(Reload::Reloaded(1)))), "reloaded");
    }
}
