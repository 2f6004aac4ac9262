//! `sb_ctx`: what a handler sees, and how a C handler becomes a Rust one.

use super::args::sb_args;
use super::boundary::{value_or, Fail};
use super::callbacks::{c_string, UserData};
use super::handles::{arg, borrowed, Handle};
use super::response::{sb_response, ResponseView};
use super::served::sb_served;
use super::stage::sb_stage;
use super::status::sb_status;
use crate::error::Error;
use crate::event_loop::EventLoop;
use crate::request::{Ctx, Response, ServedRequest, Stage};
use std::ffi::{c_char, c_void, CString};

/// What a handler sees, borrowed for the call.
#[derive(Debug)]
pub struct sb_ctx {
    _private: [u8; 0],
}

impl Handle for sb_ctx {
    type Target = CtxView;
    fn home(view: &CtxView) -> Option<&EventLoop> {
        home_loop(view.ctx())
    }
}

/// A handler context with the C strings its accessors hand out.
pub(crate) struct CtxView {
    ctx: *const Ctx<'static>,
    name: CString,
    rsp: Option<ResponseView>,
}

impl CtxView {
    fn ctx(&self) -> &Ctx<'_> {
        // SAFETY: a view exists only during the handler call its context
        // is borrowed for (it is built in `c_handler` for that call).
        unsafe { &*self.ctx }
    }
}

/// The loop a handler runs on: its stage's, else its request's, else its
/// response's.
fn home_loop<'a>(ctx: &'a Ctx<'_>) -> Option<&'a EventLoop> {
    ctx.stage()
        .map(Stage::event_loop)
        .or_else(|| ctx.req().map(ServedRequest::event_loop))
        .or_else(|| ctx.rsp().map(Response::event_loop))
}

/// A handler: return `SB_OK` (0) to carry on; any other status ends the
/// request being served with that error (`sb_last_error()` is not read:
/// call `sb_served_fail` first for a message of your own).
pub type sb_handler_fn = Option<unsafe extern "C" fn(user: *mut c_void, ctx: *const sb_ctx) -> i32>;

/// Wraps a C handler as a Rust handler. `free_user` runs when the
/// handler is dropped (replaced, or its stage or request is gone).
pub(crate) fn c_handler(
    f: unsafe extern "C" fn(*mut c_void, *const sb_ctx) -> i32,
    user: UserData,
) -> crate::request::HandlerFn {
    std::rc::Rc::new(move |ctx: &Ctx<'_>| {
        let rsp = ctx.rsp().map(ResponseView::new);
        let c = CtxView {
            // Lifetime erased: the pointer is only used during this call.
            ctx: (ctx as *const Ctx<'_>).cast(),
            name: c_string(ctx.name()),
            rsp,
        };
        // SAFETY: the C caller's handler with its own user pointer; the
        // context lives until it returns.
        let rc = unsafe { f(user.get(), borrowed::<sb_ctx>(&c)) };
        if rc == 0 {
            Ok(())
        } else {
            let st = sb_status::from_u32(rc as u32);
            Err(Error::new(
                st.to_error_code(),
                format!("handler '{}' returned status {rc}", ctx.name()),
            ))
        }
    })
}

/// # Safety
/// `ctx` NULL or a live context inside its handler call.
unsafe fn ctx_ref<'a>(ctx: *const sb_ctx) -> Result<(&'a CtxView, &'a Ctx<'a>), Fail> {
    // SAFETY: forwarded contract.
    let c = unsafe { arg(ctx, "ctx") }?;
    // SAFETY: set from a live &Ctx for the duration of the handler call.
    Ok((c, unsafe { &*c.ctx.cast::<Ctx<'a>>() }))
}

/// The method (downward) or response type (upward) being handled; valid
/// during the handler.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_ctx_name(ctx: *const sb_ctx) -> *const c_char {
    value_or(c"".as_ptr(), || {
        // SAFETY: NULL or a live sb_ctx.
        Ok(unsafe { arg(ctx, "ctx") }?.name.as_ptr())
    })
}

/// The message's args, borrowed for the handler.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_ctx_args(ctx: *const sb_ctx) -> *const sb_args {
    value_or(std::ptr::null(), || {
        // SAFETY: NULL or a live sb_ctx.
        let (_, ctx) = unsafe { ctx_ref(ctx) }?;
        Ok(borrowed::<sb_args>(ctx.args()))
    })
}

/// The request being served (borrowed), or NULL.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_ctx_req(ctx: *const sb_ctx) -> *const sb_served {
    value_or(std::ptr::null(), || {
        // SAFETY: NULL or a live sb_ctx.
        let (_, ctx) = unsafe { ctx_ref(ctx) }?;
        Ok(ctx.req().map_or(std::ptr::null(), borrowed::<sb_served>))
    })
}

/// The response being handled (borrowed), or NULL in method handlers.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_ctx_rsp(ctx: *const sb_ctx) -> *const sb_response {
    value_or(std::ptr::null(), || {
        // SAFETY: NULL or a live sb_ctx.
        let (c, _) = unsafe { ctx_ref(ctx) }?;
        Ok(c.rsp
            .as_ref()
            .map_or(std::ptr::null(), borrowed::<sb_response>))
    })
}

/// The stage whose handler runs (borrowed), or NULL.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_ctx_stage(ctx: *const sb_ctx) -> *const sb_stage {
    value_or(std::ptr::null(), || {
        // SAFETY: NULL or a live sb_ctx.
        let (_, ctx) = unsafe { ctx_ref(ctx) }?;
        Ok(ctx.stage().map_or(std::ptr::null(), borrowed::<sb_stage>))
    })
}
