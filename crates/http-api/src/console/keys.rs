//! The keys page: the configured API keys — name, role and owner's email hash prefix, never the
//! key's digest — each with what was spent with it over the last thirty days (the usage log's
//! `api_key` column, summed exactly as budgets sum it) and the key budgets that cover it.
//! Administrators see every key; anyone else only the keys issued to their own email.

use std::collections::HashSet;

use actix_web::{HttpResponse, Scope, web};
use budgets::BudgetView;
use chrono::{Duration, Utc};
use core_domain::{AccessRole, BudgetScope, Usd};
use maud::html;
use usage_store::SpendFilter;

use super::budgets::budget_table;
use super::units::{hash_prefix, usd};
use super::{ConsoleError, Nav, Viewer, blocking, ok, page};
use crate::AppState;
use crate::auth::KeyListing;

/// How far back a key's spend is summed.
const SPEND_DAYS: i64 = 30;

/// Adds this page's routes to the console's scope.
pub(crate) fn routes(scope: Scope) -> Scope {
    scope.route("/keys", web::get().to(list))
}

/// The keys `viewer` may see: all for administrators, else those issued to their email.
fn visible_keys(viewer: &Viewer, keys: Vec<KeyListing>) -> Vec<KeyListing> {
    if viewer.is_admin() {
        return keys;
    }
    let Some(own) = viewer.identity.email_hash() else {
        return Vec::new();
    };
    keys.into_iter()
        .filter(|key| &key.email_hash == own)
        .collect()
}

/// `GET /console/keys`.
async fn list(state: web::Data<AppState>, viewer: Viewer) -> Result<HttpResponse, ConsoleError> {
    let keys = visible_keys(&viewer, state.auth.key_listings());
    let names: Vec<String> = keys.iter().map(|key| key.name.to_string()).collect();
    let store = state.store.clone();
    let since = Utc::now() - Duration::days(SPEND_DAYS);
    let spent = blocking("summing spend per API key", move || {
        names
            .iter()
            .map(|name| store.spent(SpendFilter::ApiKey(name), Some(since), None))
            .collect::<Result<Vec<Usd>, _>>()
    })
    .await?;
    let shown: HashSet<&str> = keys.iter().map(|key| &*key.name).collect();
    let covering: Vec<BudgetView> = state
        .budgets
        .views(|entry| matches!(entry.budget.scope(), BudgetScope::Key(name) if shown.contains(name.as_str())))
        .await;
    let body = html! {
        @if keys.is_empty() {
            p { "No API key is configured for you." }
        } @else {
            table #keys {
                caption { "API keys (from auth.api_keys), with spend over the last " (SPEND_DAYS) " days" }
                thead {
                    tr {
                        th scope="col" { "Name" }
                        th scope="col" { "Role" }
                        th scope="col" { "Owner (email hash)" }
                        th scope="col" .num { "Spent, last " (SPEND_DAYS) " days" }
                        th scope="col" { "Key budgets" }
                    }
                }
                tbody {
                    @for (key, spent) in keys.iter().zip(&spent) {
                        tr data-key=(key.name) {
                            th scope="row" { (key.name) }
                            td { @match key.role { AccessRole::Admin => "admin", AccessRole::User => "user" } }
                            td { code { (hash_prefix(key.email_hash.as_str())) } }
                            td.num { (usd(spent.as_dollars())) }
                            td {
                                @let ids: Vec<String> = covering.iter()
                                    .filter(|view| matches!(view.entry.budget.scope(), BudgetScope::Key(name) if name.as_str() == &*key.name))
                                    .map(|view| view.entry.budget.id().to_string())
                                    .collect();
                                @if ids.is_empty() { "none" } @else { (ids.join(", ")) }
                            }
                        }
                    }
                }
            }
            @if !covering.is_empty() {
                h2 { "Key budgets" }
                (budget_table("key-budgets", "Budgets on these keys, this period", &covering))
            }
        }
    };
    Ok(ok(page(Some(&viewer), Nav::Keys, "Keys", body)))
}
