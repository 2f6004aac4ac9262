//! Stages, requests, the callee's view of a request, responses, and
//! remote stages.

use super::boundary::*;
use super::callbacks::*;
use super::client::sb_client;
use super::convert::*;
use super::event_loop::sb_loop;
use super::handles::*;
use super::status::*;
use super::values::{args_or_empty, sb_args};
use crate::error::Error;
use crate::event_loop::EventLoop;
use crate::request::{
    Ctx, HandlerKind, RemoteStage, Request, RequestBuilder, Response, ServedRequest, Stage, Target,
};
use std::ffi::{c_char, c_void, CString};
use std::time::Duration;

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

/// A session subscribed through a client, used as a request target.
#[derive(Debug)]
pub struct sb_remote {
    _private: [u8; 0],
}

impl Handle for sb_remote {
    type Target = RemoteStage;
    fn home(remote: &RemoteStage) -> Option<&EventLoop> {
        Some(remote.client().event_loop())
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

/// What a handler sees, borrowed for the call.
#[derive(Debug)]
pub struct sb_ctx {
    _private: [u8; 0],
}

impl Handle for sb_ctx {
    type Target = CtxView;
    fn home(view: &CtxView) -> Option<&EventLoop> {
        view.ctx().event_loop()
    }
}

/// A response with the C strings its accessors hand out.
pub(crate) struct ResponseView {
    rsp: *const Response,
    kind: CString,
    message: CString,
}

/// A handler context with the C strings its accessors hand out.
pub(crate) struct CtxView {
    ctx: *const Ctx<'static>,
    name: CString,
    rsp: Option<ResponseView>,
}

impl ResponseView {
    fn response(&self) -> &Response {
        // SAFETY: a view exists only during the handler call its response
        // is borrowed for (it is built in `c_handler` for that call).
        unsafe { &*self.rsp }
    }
}

impl CtxView {
    fn ctx(&self) -> &Ctx<'_> {
        // SAFETY: as for `ResponseView::response`.
        unsafe { &*self.ctx }
    }
}

impl Ctx<'_> {
    /// The loop the handler runs on: its stage's, else its request's.
    fn event_loop(&self) -> Option<&EventLoop> {
        self.stage()
            .map(Stage::event_loop)
            .or_else(|| self.req().map(ServedRequest::event_loop))
            .or_else(|| self.rsp().map(Response::event_loop))
    }
}

/// A handler: return `SB_OK` (0) to carry on; any other status ends the
/// request being served with that error (`sb_last_error()` is not read:
/// call `sb_served_fail` first for a message of your own).
pub type sb_handler_fn = Option<unsafe extern "C" fn(user: *mut c_void, ctx: *const sb_ctx) -> i32>;

/// A notification with no arguments (on-cancel).
pub type sb_notify_fn = Option<unsafe extern "C" fn(user: *mut c_void)>;

/// Completion of a subscribe: an owned remote stage on success (free with
/// `sb_remote_free`), NULL and an error otherwise.
pub type sb_subscribed_fn = Option<
    unsafe extern "C" fn(
        user: *mut c_void,
        status: sb_status,
        remote: *mut sb_remote,
        message: *const c_char,
    ),
>;

/// Wraps a C handler as a Rust handler. `free_user` runs when the
/// handler is dropped (replaced, or its stage or request is gone).
fn c_handler(
    f: unsafe extern "C" fn(*mut c_void, *const sb_ctx) -> i32,
    user: UserData,
) -> crate::request::HandlerFn {
    std::rc::Rc::new(move |ctx: &Ctx<'_>| {
        let rsp = ctx.rsp().map(|r| ResponseView {
            rsp: r,
            kind: c_string(r.kind()),
            message: c_string(r.error().map_or("", |e| e.message.as_str())),
        });
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

// --- stages ------------------------------------------------------------

/// Creates a stage named `name` on `lp`. Free with `sb_stage_free`.
/// `SB_INVALID_ARGUMENT` for an empty name.
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
#[no_mangle]
pub unsafe extern "C" fn sb_stage_free(stage: *mut sb_stage) {
    // SAFETY: NULL or an owned sb_stage, freed once.
    drop(unsafe { take(stage) });
}

/// Registers (or replaces) the handler `name`: a method (`foo` or
/// `on_foo`), a response handler (`on_return`, `on_<role>_<type>`),
/// `on_my_<type>` or `on_cancel`. `free_user` runs once when the handler
/// is replaced or the stage is gone.
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
#[no_mangle]
pub unsafe extern "C" fn sb_stage_data(stage: *const sb_stage) -> *mut c_void {
    // SAFETY: NULL or a live sb_stage.
    value_or(std::ptr::null_mut(), || {
        Ok(get_data(unsafe { arg(stage, "stage") }?.data()))
    })
}

/// The stage's name (as given to `sb_stage_new`): `*ptr` points to its
/// `*len` bytes of UTF-8, not NUL-terminated, borrowed from the stage and
/// valid while the stage lives (for a stage from `sb_ctx_stage`: during
/// the handler). Never free it. `SB_NULL_ARGUMENT` if any argument is
/// NULL; the out-params are written only on success.
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

// --- remote stages -------------------------------------------------------

/// Subscribes to `session` through `client`; `f` runs once with an owned
/// remote stage or an error (`SB_NO_SUCH_SESSION`).
#[no_mangle]
pub unsafe extern "C" fn sb_remote_subscribe(
    client: *const sb_client,
    session: *const c_char,
    f: sb_subscribed_fn,
    user: *mut c_void,
    free_user: sb_free_fn,
) -> sb_status {
    let user = UserData::new(user, free_user);
    status(|| {
        // SAFETY: NULL or live / NUL-terminated per the conventions.
        let (client, session) = unsafe { (arg(client, "client")?, text(session, "session")?) };
        let f = f.ok_or_else(|| fail(sb_status::SB_NULL_ARGUMENT, "f is NULL"))?;
        RemoteStage::subscribe(client, session, move |result| {
            let (code, remote, message) = match result {
                Ok(r) => (sb_status::SB_OK, boxed::<sb_remote>(r), c_string("")),
                Err(e) => (e.code.into(), std::ptr::null_mut(), c_string(&e.message)),
            };
            // SAFETY: the C caller's function with its own user pointer;
            // it takes ownership of `remote`.
            unsafe { f(user.get(), code, remote, message.as_ptr()) };
            drop(user);
        });
        Ok(())
    })
}

/// Ends the subscription; `done` runs once. From this call on, requests
/// through the remote stage (and any other of the same client and
/// session) fail at once in `sb_request_send` with `SB_NOT_SUBSCRIBED`,
/// as they do once the session went away.
#[no_mangle]
pub unsafe extern "C" fn sb_remote_unsubscribe(
    remote: *const sb_remote,
    done: sb_done_fn,
    user: *mut c_void,
    free_user: sb_free_fn,
) -> sb_status {
    let user = UserData::new(user, free_user);
    status(|| {
        // SAFETY: NULL or a live sb_remote.
        let remote = unsafe { arg(remote, "remote") }?;
        Ok(remote.unsubscribe(done_closure(done, user))?)
    })
}

/// Frees a remote stage handle (the subscription stays). NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn sb_remote_free(remote: *mut sb_remote) {
    // SAFETY: NULL or an owned sb_remote, freed once.
    drop(unsafe { take(remote) });
}

// --- building and sending requests ----------------------------------------

fn builder(target: Target, method: &str) -> *mut sb_request_builder {
    boxed::<sb_request_builder>(Some(Request::to(target, method)))
}

/// Starts a request of `method` to a stage on the same loop. NULL on a
/// bad argument. Send with `sb_request_send` or free with
/// `sb_request_builder_free`.
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
#[no_mangle]
pub unsafe extern "C" fn sb_request_builder_free(b: *mut sb_request_builder) {
    // SAFETY: NULL or an owned builder, freed once.
    drop(unsafe { take(b) });
}

/// Changes a builder: `check` reads the C arguments (and may fail), then
/// `apply` changes the builder. A failed call leaves the builder as it
/// was, so the C caller may go on with it.
/// Applies one setting to a builder.
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
/// `ms` milliseconds.
#[no_mangle]
pub unsafe extern "C" fn sb_request_builder_timeout_ms(
    b: *mut sb_request_builder,
    ms: u64,
) -> sb_status {
    // SAFETY: the caller's builder, as this function's contract asks.
    unsafe { edit(b, || Ok(()), |r, ()| r.timeout(Duration::from_millis(ms))) }
}

/// Makes the request a child of `parent` (a request being served).
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
#[no_mangle]
pub unsafe extern "C" fn sb_request_cancel(req: *const sb_request) -> bool {
    // SAFETY: NULL or a live sb_request.
    value_or(false, || Ok(unsafe { arg(req, "request") }?.cancel()))
}

/// The request's id (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn sb_request_id(req: *const sb_request) -> u64 {
    // SAFETY: NULL or a live sb_request.
    value_or(0, || Ok(unsafe { arg(req, "request") }?.id()))
}

/// Whether the request is still open on the caller's side.
#[no_mangle]
pub unsafe extern "C" fn sb_request_is_open(req: *const sb_request) -> bool {
    // SAFETY: NULL or a live sb_request.
    value_or(false, || Ok(unsafe { arg(req, "request") }?.is_open()))
}

/// Attaches the caller's data to the request (readable in response
/// handlers through `sb_response_data`); `free` runs once when the
/// caller's side ends.
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
#[no_mangle]
pub unsafe extern "C" fn sb_request_data(req: *const sb_request) -> *mut c_void {
    // SAFETY: NULL or a live sb_request.
    value_or(std::ptr::null_mut(), || {
        Ok(get_data(unsafe { arg(req, "request") }?.data()))
    })
}

// --- contexts ------------------------------------------------------------

/// The method (downward) or response type (upward) being handled; valid
/// during the handler.
#[no_mangle]
pub unsafe extern "C" fn sb_ctx_name(ctx: *const sb_ctx) -> *const c_char {
    // SAFETY: NULL or a live sb_ctx.
    value_or(c"".as_ptr(), || {
        Ok(unsafe { arg(ctx, "ctx") }?.name.as_ptr())
    })
}

/// The message's args, borrowed for the handler.
#[no_mangle]
pub unsafe extern "C" fn sb_ctx_args(ctx: *const sb_ctx) -> *const sb_args {
    value_or(std::ptr::null(), || {
        // SAFETY: NULL or a live sb_ctx.
        let (_, ctx) = unsafe { ctx_ref(ctx) }?;
        Ok(borrowed::<sb_args>(ctx.args()))
    })
}

/// The request being served (borrowed), or NULL.
#[no_mangle]
pub unsafe extern "C" fn sb_ctx_req(ctx: *const sb_ctx) -> *const sb_served {
    value_or(std::ptr::null(), || {
        // SAFETY: NULL or a live sb_ctx.
        let (_, ctx) = unsafe { ctx_ref(ctx) }?;
        Ok(ctx.req().map_or(std::ptr::null(), borrowed::<sb_served>))
    })
}

/// The response being handled (borrowed), or NULL in method handlers.
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
#[no_mangle]
pub unsafe extern "C" fn sb_ctx_stage(ctx: *const sb_ctx) -> *const sb_stage {
    value_or(std::ptr::null(), || {
        // SAFETY: NULL or a live sb_ctx.
        let (_, ctx) = unsafe { ctx_ref(ctx) }?;
        Ok(ctx.stage().map_or(std::ptr::null(), borrowed::<sb_stage>))
    })
}

// --- the callee's view -------------------------------------------------------

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
#[no_mangle]
pub unsafe extern "C" fn sb_served_ref(s: *const sb_served) -> *mut sb_served {
    value_or(std::ptr::null_mut(), || {
        // SAFETY: NULL or a live sb_served.
        Ok(boxed::<sb_served>(unsafe { served(s) }?.clone()))
    })
}

/// Frees an owned reference from `sb_served_ref`. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn sb_served_free(s: *mut sb_served) {
    // SAFETY: NULL or an owned sb_served, freed once.
    drop(unsafe { take(s) });
}

/// The request's id in this process (shared by its recalls): for a
/// request from this loop the caller's `sb_request_id`, for one from
/// another program a fresh id of this process, so live ids are distinct.
#[no_mangle]
pub unsafe extern "C" fn sb_served_id(s: *const sb_served) -> u64 {
    // SAFETY: NULL or a live sb_served.
    value_or(0, || Ok(unsafe { served(s) }?.id()))
}

/// The caller's id of the request (its `sb_request_id` in the calling
/// process; unique only there). 0 for NULL.
#[no_mangle]
pub unsafe extern "C" fn sb_served_caller_id(s: *const sb_served) -> u64 {
    // SAFETY: NULL or a live sb_served.
    value_or(0, || Ok(unsafe { served(s) }?.caller_id()))
}

/// Whether the request can still be answered.
#[no_mangle]
pub unsafe extern "C" fn sb_served_is_open(s: *const sb_served) -> bool {
    // SAFETY: NULL or a live sb_served.
    value_or(false, || Ok(unsafe { served(s) }?.is_open()))
}

/// Sends an interim response of type `kind` (NULL: `emit`) with `args`
/// (copied; NULL for none).
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
#[no_mangle]
pub unsafe extern "C" fn sb_served_data(s: *const sb_served) -> *mut c_void {
    // SAFETY: NULL or a live sb_served.
    value_or(std::ptr::null_mut(), || {
        Ok(get_data(unsafe { served(s) }?.data()))
    })
}

// --- responses ---------------------------------------------------------------

/// # Safety
/// `r` NULL or a live sb_response inside its handler call.
unsafe fn response<'a>(r: *const sb_response) -> Result<(&'a ResponseView, &'a Response), Fail> {
    // SAFETY: forwarded contract.
    let c = unsafe { arg(r, "response") }?;
    // SAFETY: set from a live &Response for the handler call.
    Ok((c, unsafe { &*c.rsp }))
}

/// The id of the request this response answers.
#[no_mangle]
pub unsafe extern "C" fn sb_response_id(r: *const sb_response) -> u64 {
    // SAFETY: NULL or a live sb_response.
    value_or(0, || Ok(unsafe { response(r) }?.1.id()))
}

/// The response type (`emit`, `return`, `error`, …), valid during the
/// handler.
#[no_mangle]
pub unsafe extern "C" fn sb_response_kind(r: *const sb_response) -> *const c_char {
    // SAFETY: NULL or a live sb_response.
    value_or(c"".as_ptr(), || Ok(unsafe { response(r) }?.0.kind.as_ptr()))
}

/// Whether the response ends the request.
#[no_mangle]
pub unsafe extern "C" fn sb_response_is_final(r: *const sb_response) -> bool {
    // SAFETY: NULL or a live sb_response.
    value_or(false, || Ok(unsafe { response(r) }?.1.is_final()))
}

/// The error code of an error response, `SB_OK` otherwise; the call's
/// own error (`SB_NULL_ARGUMENT`, `SB_WRONG_THREAD`, …) if it fails.
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
#[no_mangle]
pub unsafe extern "C" fn sb_response_message(r: *const sb_response) -> *const c_char {
    // SAFETY: NULL or a live sb_response.
    value_or(c"".as_ptr(), || {
        Ok(unsafe { response(r) }?.0.message.as_ptr())
    })
}

/// The caller's data slot of the request (`sb_request_set_data`).
#[no_mangle]
pub unsafe extern "C" fn sb_response_data(r: *const sb_response) -> *mut c_void {
    // SAFETY: NULL or a live sb_response.
    value_or(std::ptr::null_mut(), || {
        Ok(get_data(unsafe { response(r) }?.1.data()))
    })
}

/// Answers an emit by running `method` of the callee within the same
/// request, with `args` (copied; NULL for none).
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
#[no_mangle]
pub unsafe extern "C" fn sb_response_cancel(r: *const sb_response) -> bool {
    // SAFETY: NULL or a live sb_response.
    value_or(false, || Ok(unsafe { response(r) }?.1.cancel()))
}

/// The library's version, e.g. "0.1.0". Never NULL.
#[no_mangle]
pub extern "C" fn sb_version() -> *const c_char {
    static VERSION: &std::ffi::CStr = match std::ffi::CStr::from_bytes_with_nul(
        concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes(),
    ) {
        Ok(v) => v,
        Err(_) => c"unknown",
    };
    VERSION.as_ptr()
}
