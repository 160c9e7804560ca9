//! What a door finds wrong with a request, every problem at once but never unboundedly many.

use core_domain::ValidationErrors;

/// The problems found in a request: invalid values (400 `invalid_request_error`), and valid
/// ones the specialist's provider cannot take (400 `unsupported_parameter`; on the Messages
/// door, what only Anthropic takes).
#[derive(Default)]
pub(crate) struct Problems {
    pub(crate) invalid: ValidationErrors,
    pub(crate) unsupported: ValidationErrors,
}

/// The most problems a request is told about. A list of items is checked no further once
/// this many are found: a 1 MiB body of a hundred thousand bad items gets the first ones, not
/// an answer twenty times its size built in a worker.
const MAX_PROBLEMS: usize = 50;

impl Problems {
    /// Whether enough problems are known that checking a list further would only lengthen
    /// the answer; when so, says where checking stopped (`at`: the next item's field, only
    /// written then).
    pub(crate) fn stop_listing(&mut self, at: impl FnOnce() -> String) -> bool {
        let full = self.invalid.errors().len() + self.unsupported.errors().len() >= MAX_PROBLEMS;
        if full {
            // In the list the answer gives: invalid values win over unsupported ones.
            let answered = if self.invalid.is_empty() {
                &mut self.unsupported
            } else {
                &mut self.invalid
            };
            answered.push(
                at(),
                "not checked (nor anything after it): too many problems before it",
            );
        }
        full
    }
}
