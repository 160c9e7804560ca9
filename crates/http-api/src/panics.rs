//! Containing a panic in a handler or a response stream: the caller gets an error, the call its
//! usage row, and the worker goes on serving.
//!
//! A panic in a future's `poll` leaves the future's state (a chat call's recorder among it)
//! alive until the future is dropped, which happens after the unwind is over, when
//! `std::thread::panicking()` no longer tells why. Whoever catches the panic drops that state
//! through [`drop_after_panic`], which lets the dropped parts ask
//! [`cleaning_up_after_panic`].

use std::any::Any;
use std::cell::Cell;

thread_local! {
    static CLEANING_UP_AFTER_PANIC: Cell<bool> = const { Cell::new(false) };
}

/// True while a value is dropped because the code using it panicked (during the unwind itself
/// or in [`drop_after_panic`]).
pub(crate) fn cleaning_up_after_panic() -> bool {
    std::thread::panicking() || CLEANING_UP_AFTER_PANIC.with(Cell::get)
}

/// Drops `value`, the state of code that panicked, so its parts know why they end.
pub(crate) fn drop_after_panic<T>(value: T) {
    /// Clears the flag even if a drop panics too.
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            CLEANING_UP_AFTER_PANIC.with(|flag| flag.set(self.0));
        }
    }
    let _reset = Reset(CLEANING_UP_AFTER_PANIC.with(|flag| flag.replace(true)));
    drop(value);
}

/// The text a panic carried (`panic!("...")` gives a `&str` or a `String`).
pub(crate) fn panic_text(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message")
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Witness<'a>(&'a Cell<Option<bool>>);
    impl Drop for Witness<'_> {
        fn drop(&mut self) {
            self.0.set(Some(cleaning_up_after_panic()));
        }
    }

    #[test]
    fn values_dropped_after_a_panic_know_it_and_others_do_not() {
        let seen = Cell::new(None);
        drop(Witness(&seen));
        assert_eq!(seen.get(), Some(false));
        drop_after_panic(Witness(&seen));
        assert_eq!(seen.get(), Some(true));
        assert!(!cleaning_up_after_panic(), "the flag is cleared afterwards");
    }

    #[test]
    fn panic_text_reads_both_payload_kinds() {
        let literal = std::panic::catch_unwind(|| panic!("static text")).unwrap_err();
        assert_eq!(panic_text(literal.as_ref()), "static text");
        let formatted = std::panic::catch_unwind(|| panic!("{} text", "formatted")).unwrap_err();
        assert_eq!(panic_text(formatted.as_ref()), "formatted text");
    }
}
