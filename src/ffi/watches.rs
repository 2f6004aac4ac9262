//! Name watches of `sb_client` and publishing in a name mode
//! (`sb_stage_publish_mode`).

use super::boundary::fail;
use super::callbacks::{
    c_string, done_closure, register, required, sb_done_fn, sb_free_fn, UserData,
};
use super::client::sb_client;
use super::convert::{put, text, text_array};
use super::handles::{arg, borrowed};
use super::stage::sb_stage;
use super::status::sb_status;
use super::values::sb_value;
use crate::client::{Client, NameEvent, NameMode, WatchId};
use crate::request::Stage;
use crate::value::Value;
use std::ffi::{c_char, c_void};
use std::rc::Rc;

/// How a name takes several publishers (`sb_stage_publish_mode`).
/// Passed to C functions as a `uint32_t`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum sb_name_mode {
    /// One publisher; another's publish fails with `SB_ALREADY_EXISTS`.
    SB_NAME_EXCLUSIVE = 0,
    /// Later publishers wait in line; when the owner goes or rescinds,
    /// the next takes over (calls in flight to the old owner end with
    /// `SB_PUBLISHER_GONE`).
    SB_NAME_QUEUE = 1,
    /// Every publisher serves; each new call goes to the one with the
    /// fewest calls in flight, and stays with it (emits, recalls,
    /// cancel).
    SB_NAME_BALANCE = 2,
}

/// What a watch reports about a name (`sb_name_event_fn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum sb_name_event {
    /// Published when the watch started, or when its reconnecting client
    /// came back (the current state).
    SB_NAME_PRESENT = 0,
    /// Published since.
    SB_NAME_APPEARED = 1,
    /// Another publisher took it over (a `queue` name's standby).
    SB_NAME_OWNER_CHANGED = 2,
    /// No longer published; the status says why (`SB_NO_SUCH_SESSION`:
    /// rescinded; `SB_PUBLISHER_GONE`: its publisher disconnected).
    SB_NAME_GONE = 3,
}

/// An event of a watch: the name (valid during the call); for every
/// event but `SB_NAME_GONE` the methods as a list value of strings
/// (borrowed for the call), and `SB_OK` with an empty message; for
/// `SB_NAME_GONE` NULL methods and the reason as a status and message.
pub type sb_name_event_fn = Option<
    unsafe extern "C" fn(
        user: *mut c_void,
        event: sb_name_event,
        name: *const c_char,
        methods: *const sb_value,
        reason: sb_status,
        message: *const c_char,
    ),
>;

/// Publishes the stage as `sb_stage_publish` does, in the name mode
/// `mode` (an `sb_name_mode`): the first publisher of a name fixes its
/// mode; a publish in another mode completes with
/// `SB_NAME_MODE_CONFLICT`. Subscribers see one session however many
/// publish it. `SB_INVALID_ARGUMENT` (nothing published) for an unknown
/// mode.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_stage_publish_mode(
    stage: *const sb_stage,
    client: *const sb_client,
    session: *const c_char,
    methods: *const *const c_char,
    n_methods: usize,
    mode: u32,
    done: sb_done_fn,
    user: *mut c_void,
    free_user: sb_free_fn,
) -> sb_status {
    let body = |stage: &Stage, user: UserData| {
        // SAFETY: NULL or live / valid strings per the conventions.
        let (client, session, methods) = unsafe {
            (
                arg(client, "client")?,
                text(session, "session")?,
                text_array(methods, n_methods, "methods")?,
            )
        };
        let mode = match mode {
            m if m == sb_name_mode::SB_NAME_EXCLUSIVE as u32 => NameMode::Exclusive,
            m if m == sb_name_mode::SB_NAME_QUEUE as u32 => NameMode::Queue,
            m if m == sb_name_mode::SB_NAME_BALANCE as u32 => NameMode::Balance,
            other => {
                return Err(fail(
                    sb_status::SB_INVALID_ARGUMENT,
                    format!("{other} is no sb_name_mode"),
                ))
            }
        };
        stage.publish_as(client, session, &methods, mode, done_closure(done, user));
        Ok(())
    };
    // SAFETY: NULL or a live sb_stage.
    unsafe { register(stage, "stage", user, free_user, body) }
}

/// Watches the names matching `pattern` (a name, `prefix*`, or `*` for
/// every name; `SB_INVALID_ARGUMENT` otherwise, and nothing is
/// registered): `f` gets the current state first (an `SB_NAME_PRESENT`
/// per matching published session), then `done` (optional) runs with
/// `SB_OK`, then `f` gets every change in order, until
/// `sb_client_unwatch` or the client's close. `done` gets the broker's
/// refusal instead (`SB_LIMIT_EXCEEDED` over its watch limit). A
/// reconnecting client (`sb_client_set_reconnect`) watches again once
/// back, and `f` gets the state afresh: `SB_NAME_GONE`
/// (`SB_PUBLISHER_GONE`) for each name it last knew published that is
/// gone, then an `SB_NAME_PRESENT` per name published now; a refusal
/// then ends the watch (`SB_CONNECTION_RESTORE_FAILED`). The
/// watch's number goes to `*out_watch`. `free_user` runs once, when the
/// watch has ended and `done` has run; at once if this call fails.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_client_watch(
    client: *const sb_client,
    pattern: *const c_char,
    f: sb_name_event_fn,
    done: sb_done_fn,
    user: *mut c_void,
    free_user: sb_free_fn,
    out_watch: *mut u64,
) -> sb_status {
    let body = |client: &Client, user: UserData| {
        // SAFETY: NULL or NUL-terminated per the conventions.
        let pattern = unsafe { text(pattern, "pattern") }?;
        let f = required(f, "f")?;
        if out_watch.is_null() {
            return Err(fail(sb_status::SB_NULL_ARGUMENT, "out_watch is NULL"));
        }
        let user = Rc::new(user);
        let on_user = user.clone();
        let on_event = move |e: &NameEvent| {
            let name = c_string(e.name());
            let (event, methods, reason, message) = match e {
                NameEvent::Present { methods, .. } => (
                    sb_name_event::SB_NAME_PRESENT,
                    Some(methods),
                    sb_status::SB_OK,
                    c_string(""),
                ),
                NameEvent::Appeared { methods, .. } => (
                    sb_name_event::SB_NAME_APPEARED,
                    Some(methods),
                    sb_status::SB_OK,
                    c_string(""),
                ),
                NameEvent::OwnerChanged { methods, .. } => (
                    sb_name_event::SB_NAME_OWNER_CHANGED,
                    Some(methods),
                    sb_status::SB_OK,
                    c_string(""),
                ),
                NameEvent::Gone { reason, .. } => (
                    sb_name_event::SB_NAME_GONE,
                    None,
                    reason.code.into(),
                    c_string(&reason.message),
                ),
            };
            let list =
                methods.map(|m| Value::List(m.iter().map(|s| Value::Str(s.clone())).collect()));
            let methods = list.as_ref().map_or(std::ptr::null(), borrowed::<sb_value>);
            // SAFETY: the C caller's function with its own user pointer;
            // the strings and the list live through the call.
            unsafe {
                f(
                    on_user.get(),
                    event,
                    name.as_ptr(),
                    methods,
                    reason,
                    message.as_ptr(),
                )
            };
        };
        let id = client.watch(pattern, on_event, done_closure(done, user))?;
        // SAFETY: checked non-NULL above; writable per the conventions.
        unsafe { put(out_watch, id.0, "out_watch") }
    };
    // SAFETY: NULL or a live sb_client.
    unsafe { register(client, "client", user, free_user, body) }
}

/// Ends a watch of this client: its `f` runs no more from this call on;
/// `done` (optional) runs once with the broker's answer, and the watch's
/// `free_user` runs once nothing of it is left. `SB_INVALID_ARGUMENT`
/// (no callback) when `watch_id` is not one of this client's watches.
/// `free_user` of this call runs once, after `done` (at once if this
/// call fails).
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_client_unwatch(
    client: *const sb_client,
    watch_id: u64,
    done: sb_done_fn,
    user: *mut c_void,
    free_user: sb_free_fn,
) -> sb_status {
    let body = |client: &Client, user: UserData| {
        Ok(client.unwatch(WatchId(watch_id), done_closure(done, user))?)
    };
    // SAFETY: NULL or a live sb_client.
    unsafe { register(client, "client", user, free_user, body) }
}
