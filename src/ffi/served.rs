//! `sb_served`: the callee's side of a request, answered from a handler
//! or, after `sb_served_ref`, later.

use super::args::{args_or_empty, sb_args};
use super::boundary::{fail, status, value_or, Fail};
use super::callbacks::{get_data, sb_free_fn, set_data, UserData};
use super::convert::{opt_text, put, text};
use super::handles::{arg, boxed, take, Handle};
use super::status::sb_status;
use crate::error::Error;
use crate::event_loop::EventLoop;
use crate::request::ServedRequest;
use std::ffi::{c_char, c_void};

/// The callee's view of a request. Borrowed in a handler
/// (`sb_ctx_req`); owned after `sb_served_ref` (free with
/// `sb_served_free`), which keeps the request open past its handler.
#[derive(Debug)]
pub struct sb_served {
    _private: [u8; 0],
}

impl Handle for sb_served {
    type Target = ServedRequest;
    fn home(s: &ServedRequest) -> Option<&EventLoop> {
        Some(s.event_loop())
    }
}

/// A notification with no arguments (on-cancel).
pub type sb_notify_fn = Option<unsafe extern "C" fn(user: *mut c_void)>;

/// # Safety
/// `s` NULL or a live sb_served.
unsafe fn served<'a>(s: *const sb_served) -> Result<&'a ServedRequest, Fail> {
    // SAFETY: forwarded contract.
    unsafe { arg(s, "served") }
}

/// An owned reference to a served request, to answer it after the
/// handler returned. Free with `sb_served_free`.
///
/// A request its handler neither answered nor kept this way (nor
/// emitted on, nor made a still open request on behalf of) ends when the
/// handler returns: the caller gets `SB_UNANSWERED`. Likewise when the
/// last reference is freed while the request is still open.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_served_ref(s: *const sb_served) -> *mut sb_served {
    value_or(std::ptr::null_mut(), || {
        // SAFETY: NULL or a live sb_served.
        Ok(boxed::<sb_served>(unsafe { served(s) }?.clone()))
    })
}

/// Frees an owned reference from `sb_served_ref`. NULL is a no-op.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_served_free(s: *mut sb_served) {
    // SAFETY: NULL or an owned sb_served, freed once.
    drop(unsafe { take(s) });
}

/// The request's id in this process (shared by its recalls): for a
/// request from this loop the caller's `sb_request_id`, for one from
/// another program a fresh id of this process, so live ids are distinct.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_served_id(s: *const sb_served) -> u64 {
    // SAFETY: NULL or a live sb_served.
    value_or(0, || Ok(unsafe { served(s) }?.id()))
}

/// The caller's id of the request (its `sb_request_id` in the calling
/// process; unique only there). 0 for NULL.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_served_caller_id(s: *const sb_served) -> u64 {
    // SAFETY: NULL or a live sb_served.
    value_or(0, || Ok(unsafe { served(s) }?.caller_id()))
}

/// The milliseconds left before the request's deadline (rounded down;
/// 0 once it passed) in `*out`, or -1 when it has none. The deadline is
/// the caller's timeout (its own, inherited from the request it was made
/// for, or its client's default), sent along with the request; requests
/// made on this one's behalf inherit it. The request is not ended here
/// when it passes: the caller times out and cancels it.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_served_time_left_ms(s: *const sb_served, out: *mut i64) -> sb_status {
    status(|| {
        // SAFETY: NULL or a live sb_served.
        let left = unsafe { served(s) }?.time_left();
        let ms = left.map_or(-1, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        // SAFETY: NULL or writable per the conventions.
        unsafe { put(out, ms, "out") }
    })
}

/// Whether the caller waits for an answer: false for a one-way request
/// (`sb_remote_post`), whose emits, return and errors are accepted and
/// dropped (counted by `sb_client_dropped_answers`). false for NULL.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_served_expects_answer(s: *const sb_served) -> bool {
    // SAFETY: NULL or a live sb_served.
    value_or(false, || Ok(unsafe { served(s) }?.expects_answer()))
}

/// Whether the request can still be answered.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_served_is_open(s: *const sb_served) -> bool {
    // SAFETY: NULL or a live sb_served.
    value_or(false, || Ok(unsafe { served(s) }?.is_open()))
}

/// Sends an interim response of type `kind` (NULL: `emit`) with `args`
/// (copied; NULL for none).
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_served_emit(
    s: *const sb_served,
    kind: *const c_char,
    args: *const sb_args,
) -> sb_status {
    status(|| {
        // SAFETY: NULL or live / NUL-terminated per the conventions.
        let (s, kind, args) = unsafe { (served(s)?, opt_text(kind, "kind")?, args_or_empty(args)) };
        Ok(s.emit(kind.unwrap_or("emit"), &args)?)
    })
}

/// Sends the final response of type `kind` (NULL: `return`); the request
/// ends and requests made on its behalf are cancelled.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_served_return(
    s: *const sb_served,
    kind: *const c_char,
    args: *const sb_args,
) -> sb_status {
    status(|| {
        // SAFETY: NULL or live / NUL-terminated per the conventions.
        let (s, kind, args) = unsafe { (served(s)?, opt_text(kind, "kind")?, args_or_empty(args)) };
        Ok(s.ret(kind.unwrap_or("return"), &args)?)
    })
}

/// Ends the request with an error `code` (an `sb_status`; a number that
/// is no library error code (1–99) becomes `SB_HANDLER_FAILED`) and
/// `message` for the caller.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_served_fail(
    s: *const sb_served,
    code: i32,
    message: *const c_char,
) -> sb_status {
    status(|| {
        // SAFETY: NULL or live / NUL-terminated per the conventions.
        let (s, message) = unsafe { (served(s)?, text(message, "message")?) };
        // A number, converted: C may pass any int here.
        let code = sb_status::from_u32(code as u32).to_error_code();
        Ok(s.fail(Error::new(code, message))?)
    })
}

/// Sets what runs if the caller cancels before the request is answered;
/// `free_user` runs once either way.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_served_on_cancel(
    s: *const sb_served,
    f: sb_notify_fn,
    user: *mut c_void,
    free_user: sb_free_fn,
) -> sb_status {
    let user = UserData::new(user, free_user);
    status(|| {
        // SAFETY: NULL or a live sb_served.
        let s = unsafe { served(s) }?;
        let f = f.ok_or_else(|| fail(sb_status::SB_NULL_ARGUMENT, "f is NULL"))?;
        s.on_cancel(move || {
            // SAFETY: the C caller's function with its own user pointer.
            unsafe { f(user.get()) };
        });
        Ok(())
    })
}

/// Sets the callee's data slot for this request (seen again by recalls);
/// `free` runs once when the callee's side ends.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_served_set_data(
    s: *const sb_served,
    data: *mut c_void,
    free: sb_free_fn,
) -> sb_status {
    let keep = UserData::new(data, free);
    status(|| {
        // SAFETY: NULL or a live sb_served.
        let s = unsafe { served(s) }?;
        set_data(s.data(), keep);
        Ok(())
    })
}

/// The callee's data slot (NULL if unset).
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_served_data(s: *const sb_served) -> *mut c_void {
    value_or(std::ptr::null_mut(), || {
        // SAFETY: NULL or a live sb_served.
        Ok(get_data(unsafe { served(s) }?.data()))
    })
}
