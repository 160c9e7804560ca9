//! The console's requests page(s).

use actix_web::Scope;

/// Adds this page's routes to the console's scope.
pub(crate) fn routes(scope: Scope) -> Scope {
    scope
}
