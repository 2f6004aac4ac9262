//! The panic boundary: every entry point runs inside [`status`] or
//! [`value_or`], which turn a [`Fail`] into a status (or a fallback value)
//! and the last-error detail, and a panic into `SB_PANIC`.

use super::status::{sb_status, set_last_error};
use crate::error::Error;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// A failure of a C call: its status and detail.
pub(crate) struct Fail(pub sb_status, pub String);

impl From<Error> for Fail {
    fn from(e: Error) -> Fail {
        Fail(e.code.into(), e.message)
    }
}

pub(crate) fn fail(status: sb_status, message: impl Into<String>) -> Fail {
    Fail(status, message.into())
}

/// Runs an entry point: its error becomes a status and the last-error
/// detail; a panic becomes `SB_PANIC`.
pub(crate) fn status(f: impl FnOnce() -> Result<(), Fail>) -> sb_status {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => sb_status::SB_OK,
        Ok(Err(Fail(code, message))) => {
            set_last_error(&message);
            code
        }
        Err(panic) => {
            set_last_error(&format!("panic inside stagebus: {}", panic_message(&panic)));
            sb_status::SB_PANIC
        }
    }
}

/// Runs an entry point returning a value; `fallback` on error or panic.
pub(crate) fn value_or<T>(fallback: T, f: impl FnOnce() -> Result<T, Fail>) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => v,
        Ok(Err(Fail(_, message))) => {
            set_last_error(&message);
            fallback
        }
        Err(panic) => {
            set_last_error(&format!("panic inside stagebus: {}", panic_message(&panic)));
            fallback
        }
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}

/// Forces a panic inside an entry point, so that tests can prove it comes
/// back as `SB_PANIC`. Compiled only with the `testing` feature.
#[cfg(feature = "testing")]
#[no_mangle]
pub extern "C" fn sb_debug_panic() -> sb_status {
    status(|| panic!("forced by sb_debug_panic"))
}
