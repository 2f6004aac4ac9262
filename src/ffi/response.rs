//! `sb_response`: a response as its handler on the caller's side sees it.

use super::args::{args_or_empty, sb_args};
use super::boundary::{status, value_or, Fail};
use super::callbacks::{c_string, get_data};
use super::convert::text;
use super::handles::{arg, Handle};
use super::status::sb_status;
use crate::event_loop::EventLoop;
use crate::request::Response;
use std::ffi::{c_char, c_void, CString};

/// A response, borrowed in a response handler (`sb_ctx_rsp`).
#[derive(Debug)]
pub struct sb_response {
    _private: [u8; 0],
}

impl Handle for sb_response {
    type Target = ResponseView;
    fn home(view: &ResponseView) -> Option<&EventLoop> {
        Some(view.response().event_loop())
    }
}

/// A response with the C strings its accessors hand out.
pub(crate) struct ResponseView {
    rsp: *const Response,
    kind: CString,
    message: CString,
}

impl ResponseView {
    /// A view of `r` for one handler call (see `c_handler`).
    pub(crate) fn new(r: &Response) -> ResponseView {
        ResponseView {
            rsp: r,
            kind: c_string(r.kind()),
            message: c_string(r.error().map_or("", |e| e.message.as_str())),
        }
    }

    fn response(&self) -> &Response {
        // SAFETY: a view exists only during the handler call its response
        // is borrowed for (it is built in `c_handler` for that call).
        unsafe { &*self.rsp }
    }
}

/// # Safety
/// `r` NULL or a live sb_response inside its handler call.
unsafe fn response<'a>(r: *const sb_response) -> Result<(&'a ResponseView, &'a Response), Fail> {
    // SAFETY: forwarded contract.
    let c = unsafe { arg(r, "response") }?;
    // SAFETY: set from a live &Response for the handler call.
    Ok((c, unsafe { &*c.rsp }))
}

/// The id of the request this response answers.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_response_id(r: *const sb_response) -> u64 {
    // SAFETY: NULL or a live sb_response.
    value_or(0, || Ok(unsafe { response(r) }?.1.id()))
}

/// The response type (`emit`, `return`, `error`, …), valid during the
/// handler.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_response_kind(r: *const sb_response) -> *const c_char {
    // SAFETY: NULL or a live sb_response.
    value_or(c"".as_ptr(), || Ok(unsafe { response(r) }?.0.kind.as_ptr()))
}

/// Whether the response ends the request.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_response_is_final(r: *const sb_response) -> bool {
    // SAFETY: NULL or a live sb_response.
    value_or(false, || Ok(unsafe { response(r) }?.1.is_final()))
}

/// The error code of an error response, `SB_OK` otherwise; the call's
/// own error (`SB_NULL_ARGUMENT`, `SB_WRONG_THREAD`, …) if it fails.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_response_error(r: *const sb_response) -> sb_status {
    let mut code = sb_status::SB_OK;
    // The call's own failure (NULL, wrong thread) is its value too.
    let call = status(|| {
        // SAFETY: NULL or a live sb_response.
        let (_, r) = unsafe { response(r) }?;
        code = r.error().map_or(sb_status::SB_OK, |e| e.code.into());
        Ok(())
    });
    if call == sb_status::SB_OK {
        code
    } else {
        call
    }
}

/// The error message of an error response ("" otherwise), valid during
/// the handler.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_response_message(r: *const sb_response) -> *const c_char {
    value_or(c"".as_ptr(), || {
        // SAFETY: NULL or a live sb_response.
        Ok(unsafe { response(r) }?.0.message.as_ptr())
    })
}

/// The caller's data slot of the request (`sb_request_set_data`).
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_response_data(r: *const sb_response) -> *mut c_void {
    value_or(std::ptr::null_mut(), || {
        // SAFETY: NULL or a live sb_response.
        Ok(get_data(unsafe { response(r) }?.1.data()))
    })
}

/// Answers an emit by running `method` of the callee within the same
/// request, with `args` (copied; NULL for none).
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_response_recall(
    r: *const sb_response,
    method: *const c_char,
    args: *const sb_args,
) -> sb_status {
    status(|| {
        // SAFETY: NULL or live / NUL-terminated per the conventions.
        let ((_, r), method, args) =
            unsafe { (response(r)?, text(method, "method")?, args_or_empty(args)) };
        Ok(r.recall(method, &args)?)
    })
}

/// Cancels the request from inside one of its response handlers.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_response_cancel(r: *const sb_response) -> bool {
    // SAFETY: NULL or a live sb_response.
    value_or(false, || Ok(unsafe { response(r) }?.1.cancel()))
}
