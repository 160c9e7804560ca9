//! The health page (administrators only: it names internal endpoints, the catalogue's file and
//! store errors): the usage database (pinged as `/ready` pings it), the usage writer's lag and
//! journal, where rate limits are counted, whether the budget store answers, the catalogue's
//! source, and every upstream key's cooldown and circuit breaker. Each state is a word first;
//! colour only repeats it.

use actix_web::{HttpResponse, Scope, web};
use maud::{Markup, html};

use super::units::millis;
use super::{Admin, ConsoleError, Nav, ok, page};
use crate::AppState;

/// Adds this page's routes to the console's scope.
pub(crate) fn routes(scope: Scope) -> Scope {
    scope.route("/health", web::get().to(show))
}

/// How one part is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Condition {
    /// Working.
    Good,
    /// Working, with something to look at (a fallback in use, a resting key).
    Degraded,
    /// Not working.
    Failing,
}

impl Condition {
    fn word(self) -> &'static str {
        match self {
            Self::Good => "ok",
            Self::Degraded => "degraded",
            Self::Failing => "failing",
        }
    }

    fn class(self) -> &'static str {
        match self {
            Self::Good => "status-ok",
            Self::Degraded => "status-warn",
            Self::Failing => "status-bad",
        }
    }
}

/// One row of the overview table: a part, its condition, and what it says.
struct Part {
    name: &'static str,
    condition: Condition,
    detail: String,
}

fn condition_cell(condition: Condition) -> Markup {
    html! { span class=(condition.class()) { (condition.word()) } }
}

/// `GET /console/health`.
async fn show(state: web::Data<AppState>, admin: Admin) -> Result<HttpResponse, ConsoleError> {
    let viewer = admin.0;
    let store = state.store.clone();
    let catalogue = state.catalogue.clone();
    // Hours due for ten minutes: the server seals a due hour within a minute.
    let sealed_by = chrono::Utc::now() - store.seal_grace() - chrono::TimeDelta::minutes(10);
    let checked = web::block(move || {
        (
            store.check_ready(),
            catalogue.check_store(),
            store.rollup_backlog(sealed_by),
        )
    })
    .await;
    let (database, catalogue_store, backlog) = match checked {
        Ok(outcome) => outcome,
        Err(error) => {
            tracing::error!(%error, "console: the health check task failed");
            return Err(ConsoleError::Internal(
                "the health check could not run".into(),
            ));
        }
    };
    let mut parts = Vec::new();
    parts.push(match database {
        Ok(()) => Part {
            name: "Usage database",
            condition: Condition::Good,
            detail: "answers, with its migrations applied".into(),
        },
        Err(error) => Part {
            name: "Usage database",
            condition: Condition::Failing,
            detail: error.to_string(),
        },
    });
    let usage = state.usage.health();
    let lag = millis(usage.lag.as_secs_f64() * 1000.0);
    parts.push(Part {
        name: "Usage writer",
        condition: if usage.lagging {
            Condition::Failing
        } else if usage.store_problem.is_some() {
            Condition::Degraded
        } else {
            Condition::Good
        },
        detail: match &usage.store_problem {
            Some(problem) => {
                format!("oldest unwritten row waited {lag}; last write failed: {problem}")
            }
            None => format!("oldest unwritten row waited {lag}"),
        },
    });
    parts.push(match usage.journal_problem {
        None => Part {
            name: "Usage journal",
            condition: Condition::Good,
            detail: "written".into(),
        },
        Some(problem) => Part {
            name: "Usage journal",
            condition: Condition::Failing,
            detail: format!("cannot be written, so a crash would lose rows: {problem}"),
        },
    });
    parts.push(Part {
        name: "Usage rollup",
        condition: match backlog {
            Ok(0) => Condition::Good,
            _ => Condition::Degraded,
        },
        detail: match backlog {
            Ok(0) => "every finished hour is sealed".into(),
            Ok(hours) => format!(
                "{hours} finished hours not sealed yet: reports read them from the log \
                 meanwhile (the same numbers, more slowly)"
            ),
            Err(error) => format!("cannot be read: {error}"),
        },
    });
    let rate_limit = state.rate_limits.store_state();
    parts.push(Part {
        name: "Rate-limit store",
        condition: match rate_limit {
            "local" | "redis" => Condition::Good,
            _ => Condition::Degraded,
        },
        detail: match rate_limit {
            "local" => "counted in this process".into(),
            "redis" => "counted in Redis, which answers".into(),
            other => format!("{other}: counted in this process meanwhile"),
        },
    });
    let budgets = state.budgets.views(|_| true).await;
    let unanswered = budgets.iter().filter(|view| view.standing.is_err()).count();
    parts.push(Part {
        name: "Budget store",
        condition: if unanswered == 0 {
            Condition::Good
        } else {
            Condition::Failing
        },
        detail: match (budgets.len(), unanswered) {
            (0, _) => "no budget is defined".into(),
            (total, 0) => format!("answers for all {total} budgets"),
            (total, missing) => format!("did not answer for {missing} of {total} budgets"),
        },
    });
    parts.push(match catalogue_store {
        None => Part {
            name: "Catalogue",
            condition: Condition::Good,
            detail: format!("file {}", state.catalogue.source()),
        },
        Some(Ok(())) => Part {
            name: "Catalogue",
            condition: Condition::Good,
            detail: format!("store {}, which answers", state.catalogue.source()),
        },
        Some(Err(error)) => Part {
            name: "Catalogue",
            condition: Condition::Degraded,
            detail: format!(
                "store {} does not answer ({error}); the last catalogue read is served and changes are refused",
                state.catalogue.source()
            ),
        },
    });
    let keys = state.providers.key_health();
    let body = html! {
        table #health {
            caption { "Parts of this server" }
            thead {
                tr {
                    th scope="col" { "Part" }
                    th scope="col" { "State" }
                    th scope="col" { "Detail" }
                }
            }
            tbody {
                @for part in &parts {
                    tr data-part=(part.name) {
                        th scope="row" { (part.name) }
                        td { (condition_cell(part.condition)) }
                        td { (part.detail) }
                    }
                }
            }
        }
        h2 { "Upstream keys" }
        @if keys.is_empty() {
            p { "No upstream endpoint is configured or has been called yet." }
        } @else {
            table #provider-keys {
                caption { "Every key of every upstream endpoint, by its label (never the key)" }
                thead {
                    tr {
                        th scope="col" { "Provider" }
                        th scope="col" { "Endpoint" }
                        th scope="col" { "Key" }
                        th scope="col" { "State" }
                        th scope="col" { "Circuit breaker" }
                        th scope="col" .num { "Resting for" }
                        th scope="col" .num { "Failures in a row" }
                    }
                }
                tbody {
                    @for key in &keys {
                        @let resting = key.cooling_for.filter(|rest| !rest.is_zero());
                        @let condition = match (key.breaker.as_str(), resting) {
                            ("closed", None) => Condition::Good,
                            ("open", _) => Condition::Failing,
                            _ => Condition::Degraded,
                        };
                        tr {
                            td { (key.provider.as_str()) }
                            td { (key.endpoint) }
                            td { code { (key.key) } }
                            td { (condition_cell(condition)) }
                            td { (key.breaker.as_str()) }
                            td.num {
                                @match resting {
                                    Some(rest) => (format!("{:.1} s", rest.as_secs_f64())),
                                    None => "not resting",
                                }
                            }
                            td.num { (key.consecutive_failures) }
                        }
                    }
                }
            }
        }
    };
    Ok(ok(page(Some(&viewer), Nav::Health, "Health", body)))
}
