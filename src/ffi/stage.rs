//! `sb_stage`: a named table of handlers, and `sb_handler_kind`.

use super::boundary::{fail, status, value_or};
use super::callbacks::{done_closure, get_data, sb_done_fn, sb_free_fn, set_data, UserData};
use super::client::sb_client;
use super::context::{c_handler, sb_handler_fn};
use super::convert::{text, text_array};
use super::event_loop::sb_loop;
use super::handles::{arg, boxed, take, Handle};
use super::status::sb_status;
use crate::event_loop::EventLoop;
use crate::request::{HandlerKind, Stage};
use std::ffi::{c_char, c_void};

/// A stage: a named table of handlers.
#[derive(Debug)]
pub struct sb_stage {
    _private: [u8; 0],
}

impl Handle for sb_stage {
    type Target = Stage;
    fn home(stage: &Stage) -> Option<&EventLoop> {
        Some(stage.event_loop())
    }
}

/// Creates a stage named `name` on `lp`. Free with `sb_stage_free`.
/// `SB_INVALID_ARGUMENT` for an empty name.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_stage_new(
    lp: *mut sb_loop,
    name: *const c_char,
    out: *mut *mut sb_stage,
) -> sb_status {
    status(|| {
        // SAFETY: NULL or live / NUL-terminated per the conventions.
        let (lp, name) = unsafe { (arg(lp, "loop")?, text(name, "name")?) };
        if out.is_null() {
            return Err(fail(sb_status::SB_NULL_ARGUMENT, "out is NULL"));
        }
        let stage = Stage::try_new(lp, name)?;
        // SAFETY: checked non-NULL above.
        unsafe { out.write(boxed::<sb_stage>(stage)) };
        Ok(())
    })
}

/// Frees a stage handle. The stage lives on while other handles or
/// open requests to it need it; a publication does not keep it: when
/// the stage goes, its sessions are rescinded. Keep the stage for as
/// long as it should be served. NULL is a no-op.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_stage_free(stage: *mut sb_stage) {
    // SAFETY: NULL or an owned sb_stage, freed once.
    drop(unsafe { take(stage) });
}

/// Registers (or replaces) the handler `name`: a method (`foo` or
/// `on_foo`), a response handler (`on_return`, `on_<role>_<type>`),
/// `on_my_<type>` or `on_cancel`. `free_user` runs once when the handler
/// is replaced or the stage is gone.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_stage_on(
    stage: *const sb_stage,
    name: *const c_char,
    f: sb_handler_fn,
    user: *mut c_void,
    free_user: sb_free_fn,
) -> sb_status {
    let user = UserData::new(user, free_user);
    status(|| {
        // SAFETY: NULL or live / NUL-terminated per the conventions.
        let (stage, name) = unsafe { (arg(stage, "stage")?, text(name, "name")?) };
        let f = f.ok_or_else(|| fail(sb_status::SB_NULL_ARGUMENT, "f is NULL"))?;
        stage.set_handler(name, c_handler(f, user));
        Ok(())
    })
}

/// What a stage's handler is for, as far as other programs are concerned
/// (`sb_stage_set_kind`). Passed to C functions as a `uint32_t`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum sb_handler_kind {
    /// A request method: exported by `sb_stage_publish` without a method
    /// list; reached by requests and recalls. The default for every name
    /// but the ones below.
    SB_HANDLER_METHOD = 0,
    /// Reached by a recall inside a transaction only (the answer of a
    /// dialogue), never by a request from another program.
    SB_HANDLER_RECALL_ONLY = 1,
    /// Not a method (a response handler such as `on_<role>_<type>`,
    /// `on_cancel`, `on_my_<type>`): never reached from another program.
    /// The default for `cancel`, `return`, `emit`, `error` and `my_*`.
    SB_HANDLER_INTERNAL = 2,
}

/// Marks what the handler(s) of method `name` (`foo` or `on_foo`) are
/// for: `kind` is an `sb_handler_kind`. Other programs reach a published
/// stage's exported methods (the list given to `sb_stage_publish`, or
/// without one its `SB_HANDLER_METHOD` names) by request and recall, and
/// its `SB_HANDLER_RECALL_ONLY` methods by recall; anything else is
/// `SB_NO_SUCH_METHOD`. Requests on the same loop are not filtered.
/// `SB_INVALID_ARGUMENT` for an unknown kind or an empty name.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_stage_set_kind(
    stage: *const sb_stage,
    name: *const c_char,
    kind: u32,
) -> sb_status {
    status(|| {
        // SAFETY: NULL or live / NUL-terminated per the conventions.
        let (stage, name) = unsafe { (arg(stage, "stage")?, text(name, "name")?) };
        let kind = match kind {
            n if n == sb_handler_kind::SB_HANDLER_METHOD as u32 => HandlerKind::Method,
            n if n == sb_handler_kind::SB_HANDLER_RECALL_ONLY as u32 => HandlerKind::RecallOnly,
            n if n == sb_handler_kind::SB_HANDLER_INTERNAL as u32 => HandlerKind::Internal,
            other => {
                return Err(fail(
                    sb_status::SB_INVALID_ARGUMENT,
                    format!("{other} is not an sb_handler_kind"),
                ))
            }
        };
        if name.is_empty() {
            return Err(fail(sb_status::SB_INVALID_ARGUMENT, "the name is empty"));
        }
        stage.set_kind(name, kind);
        Ok(())
    })
}

/// Publishes the stage on a broker through `client` as `session`,
/// exporting `n_methods` methods, or when 0 the stage's request methods
/// (its `SB_HANDLER_METHOD` handler names, without `on_`; never
/// `on_cancel`, `on_my_<type>` or a handler marked otherwise with
/// `sb_stage_set_kind`). `done` runs once with the broker's answer.
/// The publication does not keep the stage: freeing the stage's last
/// handle rescinds the session (so handlers may use the client without
/// keeping it open forever).
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_stage_publish(
    stage: *const sb_stage,
    client: *const sb_client,
    session: *const c_char,
    methods: *const *const c_char,
    n_methods: usize,
    done: sb_done_fn,
    user: *mut c_void,
    free_user: sb_free_fn,
) -> sb_status {
    let user = UserData::new(user, free_user);
    status(|| {
        // SAFETY: NULL or live / valid strings per the conventions.
        let (stage, client, session, methods) = unsafe {
            (
                arg(stage, "stage")?,
                arg(client, "client")?,
                text(session, "session")?,
                text_array(methods, n_methods, "methods")?,
            )
        };
        stage.publish(client, session, &methods, done_closure(done, user));
        Ok(())
    })
}

/// Sets the stage's own data slot (freed with `free` when replaced or
/// when the stage is gone).
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_stage_set_data(
    stage: *const sb_stage,
    data: *mut c_void,
    free: sb_free_fn,
) -> sb_status {
    let keep = UserData::new(data, free);
    status(|| {
        // SAFETY: NULL or a live sb_stage.
        let stage = unsafe { arg(stage, "stage") }?;
        set_data(stage.data(), keep);
        Ok(())
    })
}

/// The stage's data slot (NULL if unset).
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_stage_data(stage: *const sb_stage) -> *mut c_void {
    value_or(std::ptr::null_mut(), || {
        // SAFETY: NULL or a live sb_stage.
        Ok(get_data(unsafe { arg(stage, "stage") }?.data()))
    })
}

/// The stage's name (as given to `sb_stage_new`): `*ptr` points to its
/// `*len` bytes of UTF-8, not NUL-terminated, borrowed from the stage and
/// valid while the stage lives (for a stage from `sb_ctx_stage`: during
/// the handler). Never free it. `SB_NULL_ARGUMENT` if any argument is
/// NULL; the out-params are written only on success.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_stage_name(
    stage: *const sb_stage,
    ptr: *mut *const c_char,
    len: *mut usize,
) -> sb_status {
    status(|| {
        // SAFETY: NULL or a live sb_stage.
        let stage = unsafe { arg(stage, "stage") }?;
        if ptr.is_null() || len.is_null() {
            return Err(fail(sb_status::SB_NULL_ARGUMENT, "an out-param is NULL"));
        }
        let name = stage.name();
        // SAFETY: both out-params were checked non-NULL above; the name
        // lives as long as the stage, which the handle keeps alive.
        unsafe {
            ptr.write(name.as_ptr().cast());
            len.write(name.len());
        }
        Ok(())
    })
}
