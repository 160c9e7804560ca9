//! The budgets page: every budget the signed-in person may see — the same set and the same
//! figures as `GET /budgets` (one visibility rule, one standing per budget from the budgets
//! service) — with spend against the limit drawn as a bar, and the period and reset time.
//! The bars and their standing are shared with the keys page.

use actix_web::{HttpResponse, Scope, web};
use budgets::BudgetView;
use maud::{Markup, html};

use super::units::{usd, utc};
use super::{ConsoleError, Nav, Viewer, ok, page};
use crate::AppState;
use crate::budget_routes::visible_to_caller;

/// Adds this page's routes to the console's scope.
pub(crate) fn routes(scope: Scope) -> Scope {
    scope.route("/budgets", web::get().to(list))
}

/// `GET /console/budgets`.
async fn list(state: web::Data<AppState>, viewer: Viewer) -> Result<HttpResponse, ConsoleError> {
    let views = state
        .budgets
        .views(|entry| {
            visible_to_caller(
                viewer.role,
                &viewer.identity,
                viewer.api_key.as_deref(),
                entry,
            )
        })
        .await;
    let body = html! {
        @if views.is_empty() {
            p { "No budget covers your calls." }
        } @else {
            (budget_table("budgets", "Budgets and their spend this period", &views))
        }
    };
    Ok(ok(page(Some(&viewer), Nav::Budgets, "Budgets", body)))
}

/// A table of budgets with their standing: `table#{id}`, one row per budget
/// (`tr data-budget="ID"`).
pub(crate) fn budget_table(id: &str, caption: &str, views: &[BudgetView]) -> Markup {
    html! {
        table #(id) {
            caption { (caption) }
            thead {
                tr {
                    th scope="col" { "Budget" }
                    th scope="col" { "Covers" }
                    th scope="col" { "Period" }
                    th scope="col" { "Spend against limit" }
                    th scope="col" .num { "Spent" }
                    th scope="col" .num { "Reserved" }
                    th scope="col" .num { "Remaining" }
                    th scope="col" .num { "Limit" }
                    th scope="col" { "Resets" }
                }
            }
            tbody {
                @for view in views {
                    (budget_row(view))
                }
            }
        }
    }
}

fn budget_row(view: &BudgetView) -> Markup {
    let budget = &view.entry.budget;
    let limit = budget.limit();
    html! {
        tr data-budget=(budget.id()) {
            td { (budget.id()) " " span.muted { "(" (view.entry.managed.as_str()) ")" } }
            td {
                (budget.scope().kind())
                @if let Some(subject) = budget.scope().subject() { " " (subject) }
            }
            td { (budget.period().as_str()) }
            @match &view.standing {
                Ok(standing) => {
                    td { (spend_bar(standing.spent.as_dollars() + standing.reserved.as_dollars(), limit.as_dollars())) }
                    td.num { (usd(standing.spent.as_dollars())) }
                    td.num { (usd(standing.reserved.as_dollars())) }
                    td.num { (usd(standing.left(limit).as_dollars())) }
                }
                Err(_) => {
                    td colspan="4" { span.status-bad { "unknown" } ": the budget store did not answer" }
                }
            }
            td.num { (usd(limit.as_dollars())) }
            td {
                @match view.window.resets_at {
                    Some(at) => time datetime=(at.to_rfc3339()) { (utc(at)) },
                    None => "never (all time)",
                }
            }
        }
    }
}

/// Width of a spend bar in SVG user units.
const BAR_WIDTH: f64 = 160.0;

/// `used` of `limit` as a bar (an SVG, since the content policy forbids inline styles), with
/// the share as text for everyone and as the image's label for screen readers; past 100 % the
/// bar is full and marked over the limit in words as well as in colour.
pub(crate) fn spend_bar(used: f64, limit: f64) -> Markup {
    let share = if limit > 0.0 {
        used / limit
    } else if used > 0.0 {
        f64::INFINITY
    } else {
        0.0
    };
    let percent = if share.is_finite() {
        format!("{:.0}%", share * 100.0)
    } else {
        "over".to_owned()
    };
    let over = share >= 1.0;
    let filled = format!("{:.1}", BAR_WIDTH * share.clamp(0.0, 1.0));
    let label = if over {
        format!("{percent} of the limit used: at or over the limit")
    } else {
        format!("{percent} of the limit used")
    };
    html! {
        span.spend {
            svg.spend-bar width=(BAR_WIDTH) height="12" viewBox="0 0 160 12" role="img" aria-label=(label) {
                rect x="0" y="0" width=(BAR_WIDTH) height="12" fill="#f4f6f8" stroke="#d0d7de" {}
                rect x="0" y="0" width=(filled) height="12" fill=(if over { "#b42318" } else { "#0a58ca" }) {}
            }
            " "
            @if over { span.status-bad { (percent) " (limit reached)" } } @else { span { (percent) } }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bar_says_its_share_in_words() {
        let half = spend_bar(5.0, 10.0).into_string();
        assert!(
            half.contains("aria-label=\"50% of the limit used\""),
            "{half}"
        );
        assert!(half.contains("width=\"80.0\""), "{half}");
        let over = spend_bar(12.0, 10.0).into_string();
        assert!(over.contains("limit reached"), "{over}");
        assert!(over.contains("width=\"160.0\""), "{over}");
        let zero_limit = spend_bar(0.5, 0.0).into_string();
        assert!(zero_limit.contains("over"), "{zero_limit}");
        let nothing = spend_bar(0.0, 0.0).into_string();
        assert!(nothing.contains("0% of the limit used"), "{nothing}");
    }
}
