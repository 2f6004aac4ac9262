//! `sb_request_builder` and `sb_request`: the caller's side of a request,
//! built, sent, and held until it ends.

use super::args::{args_or_empty, sb_args};
use super::boundary::{fail, status, value_or, Fail};
use super::callbacks::{get_data, sb_free_fn, set_data, UserData};
use super::context::{c_handler, sb_handler_fn};
use super::convert::text;
use super::handles::{arg, arg_mut, boxed, take, take_checked, Handle};
use super::remote::sb_remote;
use super::served::sb_served;
use super::stage::sb_stage;
use super::status::sb_status;
use crate::event_loop::EventLoop;
use crate::request::{Request, RequestBuilder, Target};
use std::ffi::{c_char, c_void};
use std::time::Duration;

/// A request being built; `sb_request_send` consumes it.
#[derive(Debug)]
pub struct sb_request_builder {
    _private: [u8; 0],
}

impl Handle for sb_request_builder {
    type Target = Option<RequestBuilder>;
    fn home(b: &Option<RequestBuilder>) -> Option<&EventLoop> {
        b.as_ref().map(RequestBuilder::event_loop)
    }
}

/// The caller's handle on a request; freeing it cancels the request.
#[derive(Debug)]
pub struct sb_request {
    _private: [u8; 0],
}

impl Handle for sb_request {
    type Target = Request;
    fn home(req: &Request) -> Option<&EventLoop> {
        Some(req.event_loop())
    }
}

fn builder(target: Target, method: &str) -> *mut sb_request_builder {
    boxed::<sb_request_builder>(Some(Request::to(target, method)))
}

/// Starts a request of `method` to a stage on the same loop. NULL on a
/// bad argument. Send with `sb_request_send` or free with
/// `sb_request_builder_free`.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_request_to_stage(
    stage: *const sb_stage,
    method: *const c_char,
) -> *mut sb_request_builder {
    value_or(std::ptr::null_mut(), || {
        // SAFETY: NULL or live / NUL-terminated per the conventions.
        let (stage, method) = unsafe { (arg(stage, "stage")?, text(method, "method")?) };
        Ok(builder(Target::Local(stage.clone()), method))
    })
}

/// Starts a request of `method` to a remote stage.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_request_to_remote(
    remote: *const sb_remote,
    method: *const c_char,
) -> *mut sb_request_builder {
    value_or(std::ptr::null_mut(), || {
        // SAFETY: NULL or live / NUL-terminated per the conventions.
        let (remote, method) = unsafe { (arg(remote, "remote")?, text(method, "method")?) };
        Ok(builder(Target::Remote(remote.clone()), method))
    })
}

/// Frees an unsent builder (and its handlers' user data). NULL is a no-op.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_request_builder_free(b: *mut sb_request_builder) {
    // SAFETY: NULL or an owned builder, freed once.
    drop(unsafe { take(b) });
}

/// Changes a builder: `check` reads the C arguments (and may fail), then
/// `apply` changes the builder. A failed call leaves the builder as it
/// was, so the C caller may go on with it.
///
/// # Safety
/// `b` is NULL or a live builder not used elsewhere during the call.
unsafe fn edit<A>(
    b: *mut sb_request_builder,
    check: impl FnOnce() -> Result<A, Fail>,
    apply: impl FnOnce(RequestBuilder, A) -> RequestBuilder,
) -> sb_status {
    status(|| {
        // SAFETY: NULL or a live, unaliased builder.
        let b = unsafe { arg_mut(b, "builder") }?;
        if b.is_none() {
            // Only after a panic inside `apply` below.
            return Err(fail(sb_status::SB_INVALID_STATE, "the builder is unusable"));
        }
        let a = check()?;
        if let Some(inner) = b.take() {
            *b = Some(apply(inner, a));
        }
        Ok(())
    })
}

/// Sets the request's args (copied; NULL for none).
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_request_builder_args(
    b: *mut sb_request_builder,
    args: *const sb_args,
) -> sb_status {
    // SAFETY: NULL or a live sb_args.
    let args = unsafe { args_or_empty(args) };
    // SAFETY: the caller's builder, as this function's contract asks.
    unsafe { edit(b, || Ok(args), |r, args| r.args(args)) }
}

/// Handles responses of type `kind` (`return`, `emit`, `error`, …) with
/// `f`. `free_user` runs once when the request has ended.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_request_builder_on(
    b: *mut sb_request_builder,
    kind: *const c_char,
    f: sb_handler_fn,
    user: *mut c_void,
    free_user: sb_free_fn,
) -> sb_status {
    let user = UserData::new(user, free_user);
    let check = || {
        // SAFETY: NULL or NUL-terminated.
        let kind = unsafe { text(kind, "kind") }?;
        let f = f.ok_or_else(|| fail(sb_status::SB_NULL_ARGUMENT, "f is NULL"))?;
        Ok((kind, c_handler(f, user)))
    };
    // SAFETY: the caller's builder, as this function's contract asks.
    unsafe { edit(b, check, |r, (kind, h)| r.on_handler(kind, h)) }
}

/// Handles responses of type `kind` with the requesting stage's handler
/// named `method`.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_request_builder_on_method(
    b: *mut sb_request_builder,
    kind: *const c_char,
    method: *const c_char,
) -> sb_status {
    // SAFETY: NULL or NUL-terminated.
    let check = || unsafe { Ok((text(kind, "kind")?, text(method, "method")?)) };
    // SAFETY: the caller's builder, as this function's contract asks.
    unsafe { edit(b, check, |r, (kind, method)| r.on_method(kind, method)) }
}

/// Handles every response type no other mapping handles.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_request_builder_fallback(
    b: *mut sb_request_builder,
    f: sb_handler_fn,
    user: *mut c_void,
    free_user: sb_free_fn,
) -> sb_status {
    let user = UserData::new(user, free_user);
    // SAFETY: the caller's builder, as this function's contract asks.
    unsafe {
        edit(
            b,
            || {
                let f = f.ok_or_else(|| fail(sb_status::SB_NULL_ARGUMENT, "f is NULL"))?;
                Ok(c_handler(f, user))
            },
            |r, h| r.fallback(move |ctx| h(ctx)),
        )
    }
}

/// Sets the role: responses of type T run the requester's `on_<role>_T`.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_request_builder_role(
    b: *mut sb_request_builder,
    role: *const c_char,
) -> sb_status {
    // SAFETY: NULL or NUL-terminated.
    let check = || unsafe { text(role, "role") };
    // SAFETY: the caller's builder, as this function's contract asks.
    unsafe { edit(b, check, |r, role| r.role(role)) }
}

/// Ends the request with `SB_TIMEOUT` if no final response came within
/// `ms` milliseconds. The deadline travels with the request
/// (`sb_served_time_left_ms`); a request made while serving one inherits
/// that one's deadline, and its own applies only when it is earlier.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_request_builder_timeout_ms(
    b: *mut sb_request_builder,
    ms: u64,
) -> sb_status {
    // SAFETY: the caller's builder, as this function's contract asks.
    unsafe { edit(b, || Ok(()), |r, ()| r.timeout(Duration::from_millis(ms))) }
}

/// Makes the request a child of `parent` (a request being served).
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_request_builder_parent(
    b: *mut sb_request_builder,
    parent: *const sb_served,
) -> sb_status {
    // SAFETY: NULL or a live sb_served.
    let check = || unsafe { arg(parent, "parent") };
    // SAFETY: the caller's builder, as this function's contract asks.
    unsafe { edit(b, check, |r, parent| r.parent(parent)) }
}

/// Sends the request, consuming the builder (also on failure, except
/// `SB_WRONG_THREAD`, which leaves everything alone). On
/// success `*out` is the request; free it (which cancels it if still
/// open) with `sb_request_free`.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_request_send(
    b: *mut sb_request_builder,
    out: *mut *mut sb_request,
) -> sb_status {
    status(|| {
        // SAFETY: NULL or an owned builder, consumed here (unless it is
        // refused for the calling thread).
        let b = unsafe { take_checked(b, "builder") }?;
        let b = b.ok_or_else(|| fail(sb_status::SB_NULL_ARGUMENT, "builder is NULL"))?;
        if out.is_null() {
            return Err(fail(sb_status::SB_NULL_ARGUMENT, "out is NULL"));
        }
        let builder =
            b.ok_or_else(|| fail(sb_status::SB_INVALID_STATE, "the builder was already sent"))?;
        let request = builder.send()?;
        // SAFETY: checked non-NULL above.
        unsafe { out.write(boxed::<sb_request>(request)) };
        Ok(())
    })
}

/// Frees a request, cancelling it (and everything made on its behalf) if
/// it is still open. NULL is a no-op. A request freed before the loop
/// runs again after `sb_request_send` (in the same callback) never
/// reaches its callee, local or remote; later, the callee may have
/// started it and then sees the cancel.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_request_free(req: *mut sb_request) {
    // SAFETY: NULL or an owned sb_request, freed once.
    if let Some(req) = unsafe { take(req) } {
        let _ = status(|| {
            drop(req);
            Ok(())
        });
    }
}

/// Cancels a request; returns whether it was open. Cancelling twice is
/// harmless.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_request_cancel(req: *const sb_request) -> bool {
    // SAFETY: NULL or a live sb_request.
    value_or(false, || Ok(unsafe { arg(req, "request") }?.cancel()))
}

/// The request's id (0 for NULL).
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_request_id(req: *const sb_request) -> u64 {
    // SAFETY: NULL or a live sb_request.
    value_or(0, || Ok(unsafe { arg(req, "request") }?.id()))
}

/// Whether the request is still open on the caller's side.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_request_is_open(req: *const sb_request) -> bool {
    // SAFETY: NULL or a live sb_request.
    value_or(false, || Ok(unsafe { arg(req, "request") }?.is_open()))
}

/// Attaches the caller's data to the request (readable in response
/// handlers through `sb_response_data`); `free` runs once when the
/// caller's side ends.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_request_set_data(
    req: *const sb_request,
    data: *mut c_void,
    free: sb_free_fn,
) -> sb_status {
    let keep = UserData::new(data, free);
    status(|| {
        // SAFETY: NULL or a live sb_request.
        let req = unsafe { arg(req, "request") }?;
        set_data(req.data(), keep);
        Ok(())
    })
}

/// The caller's data slot of the request, as set by
/// `sb_request_set_data` (the same pointer `sb_response_data` gives in
/// its response handlers); NULL if unset, after the caller's side ended
/// (the slot was freed then), or for a NULL `req` (`sb_last_error` says
/// so). The library keeps owning it: do not free it.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_request_data(req: *const sb_request) -> *mut c_void {
    value_or(std::ptr::null_mut(), || {
        // SAFETY: NULL or a live sb_request.
        Ok(get_data(unsafe { arg(req, "request") }?.data()))
    })
}
