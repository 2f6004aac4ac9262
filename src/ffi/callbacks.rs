//! C callbacks and the user pointers they carry: `free_user` runs exactly
//! once, strings handed to a callback are NUL-terminated copies, and a
//! scope's data slot holds the C caller's pointer.

use super::boundary::{fail, status, Fail};
use super::handles::{arg, Handle};
use super::status::sb_status;
use crate::error::Error;
use crate::request::Scope;
use std::borrow::Borrow;
use std::ffi::{c_char, c_void, CString};

/// Frees the user data of a registration.
pub type sb_free_fn = Option<unsafe extern "C" fn(user: *mut c_void)>;

/// A C user pointer with its optional free function, called exactly once
/// when this is dropped (the registration has ended).
///
/// The pointer is read through [`UserData::get`], never as a field: a
/// `move` closure that named the field would capture only the raw
/// pointer (edition 2021 captures disjoint fields) and drop the
/// `UserData`, running `free_user` at registration time.
pub(crate) struct UserData {
    user: *mut c_void,
    free: sb_free_fn,
}

impl UserData {
    pub fn new(user: *mut c_void, free: sb_free_fn) -> UserData {
        UserData { user, free }
    }

    /// The user pointer. Using it in a closure captures the whole
    /// `UserData`, so `free_user` runs when the closure is dropped.
    pub fn get(&self) -> *mut c_void {
        self.user
    }
}

impl Drop for UserData {
    fn drop(&mut self) {
        if let Some(free) = self.free.take() {
            // SAFETY: the C caller registered this function for this
            // pointer and asked for exactly one call.
            unsafe { free(self.user) };
        }
    }
}

/// A user pointer that may cross threads: the C caller promised so by
/// handing it to a thread-safe function.
pub(crate) struct SendUserData(pub UserData);

// SAFETY: only used by sb_waker_post, whose contract requires `user` to
// be usable from the loop's thread.
unsafe impl Send for SendUserData {}

/// A NUL-terminated copy of `s` for a callback (interior NULs replaced).
pub(crate) fn c_string(s: &str) -> CString {
    CString::new(s.replace('\0', " ")).unwrap_or_default()
}

/// Completion of an operation: `SB_OK` with an empty message, or an error
/// status with its message (valid during the call).
pub type sb_done_fn =
    Option<unsafe extern "C" fn(user: *mut c_void, status: sb_status, message: *const c_char)>;

/// Wraps a C completion as a Rust closure; `free_user` runs after it
/// (once every other holder of a shared `user` let go too).
pub(crate) fn done_closure(
    f: sb_done_fn,
    user: impl Borrow<UserData>,
) -> impl FnOnce(Result<(), Error>) {
    move |result| {
        if let Some(f) = f {
            let (code, message) = match &result {
                Ok(()) => (sb_status::SB_OK, c_string("")),
                Err(e) => (e.code.into(), c_string(&e.message)),
            };
            // SAFETY: the C caller's function with its own user pointer.
            unsafe { f(user.borrow().get(), code, message.as_ptr()) };
        }
        drop(user);
    }
}

/// What every C call that registers callbacks on a handle does around
/// its own work: `user` and `free_user` become one [`UserData`] before
/// anything can fail, so `free_user` runs exactly once, at once when the
/// call fails (a NULL or foreign handle, a NULL callback, bad input);
/// the handle is checked (named `name` in errors), and `register` gets
/// its target and the user data, to move into the closures it
/// registers. Its error is the call's status.
///
/// # Safety
/// `handle` must be NULL or a live handle of its type.
pub(crate) unsafe fn register<H: Handle>(
    handle: *const H,
    name: &str,
    user: *mut std::ffi::c_void,
    free_user: sb_free_fn,
    register: impl FnOnce(&H::Target, UserData) -> Result<(), Fail>,
) -> sb_status {
    let user = UserData::new(user, free_user);
    status(|| {
        // SAFETY: forwarded contract.
        let target = unsafe { arg(handle, name) }?;
        register(target, user)
    })
}

/// A callback the C caller must give: `SB_NULL_ARGUMENT` naming it when
/// it is NULL.
pub(crate) fn required<F>(f: Option<F>, name: &str) -> Result<F, Fail> {
    f.ok_or_else(|| fail(sb_status::SB_NULL_ARGUMENT, format!("{name} is NULL")))
}

/// The key under which the C caller's data slot lives in a scope (of a
/// stage, a request or a served request).
const C_DATA: &str = "stagebus.c.data";

/// Puts the C caller's pointer into `scope`'s data slot; the one it
/// replaces is freed (its `free` runs), and so is this one when the scope
/// ends.
pub(crate) fn set_data(scope: &Scope, data: UserData) {
    scope.set(C_DATA, data);
}

/// The C caller's pointer in `scope`'s data slot; NULL if unset.
pub(crate) fn get_data(scope: &Scope) -> *mut c_void {
    scope
        .with(C_DATA, |u: &mut UserData| u.get())
        .unwrap_or(std::ptr::null_mut())
}
