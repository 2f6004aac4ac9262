//! Signals and one-way answers of `sb_client`: emitting a signal for a
//! session published here, listening with matches, and the count of
//! dropped one-way answers.

use super::args::{args_or_empty, sb_args};
use super::boundary::{fail, status, value_or};
use super::callbacks::{
    c_string, done_closure, register, required, sb_done_fn, sb_free_fn, UserData,
};
use super::client::sb_client;
use super::convert::{put, text};
use super::handles::{arg, borrowed};
use super::status::sb_status;
use crate::client::{Client, MatchId};
use std::ffi::{c_char, c_void};
use std::rc::Rc;

/// A signal for a match: its session and signal names (valid during the
/// call) and its args (borrowed for the call; copy with `sb_args_clone`
/// to keep them).
pub type sb_signal_fn = Option<
    unsafe extern "C" fn(
        user: *mut c_void,
        session: *const c_char,
        signal: *const c_char,
        args: *const sb_args,
    ),
>;

/// Emits `signal` with `args` (copied; NULL for none) for `session`,
/// which this client must publish: every connection with a matching
/// match receives it, in the order this client emitted its signals.
/// Nothing answers. `SB_NOT_PUBLISHER` when `session` is not published
/// by this client; `SB_INVALID_ARGUMENT` for an empty signal name or one
/// holding `*`.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_client_emit_signal(
    client: *const sb_client,
    session: *const c_char,
    signal: *const c_char,
    args: *const sb_args,
) -> sb_status {
    status(|| {
        // SAFETY: NULL or live / NUL-terminated per the conventions.
        let (client, session, signal, args) = unsafe {
            (
                arg(client, "client")?,
                text(session, "session")?,
                text(signal, "signal")?,
                args_or_empty(args),
            )
        };
        Ok(client.emit_signal(session, signal, &args)?)
    })
}

/// Listens for signals whose session matches `session` and whose name
/// matches `signal`, each a pattern: an exact name, `prefix*`, or `*`
/// for every name (`SB_INVALID_ARGUMENT` otherwise, and nothing is
/// registered). `f` runs for every matching signal, in the order they
/// were emitted, once the broker confirmed the match: `done` (optional)
/// runs once with that confirmation or the broker's refusal
/// (`SB_LIMIT_EXCEEDED` over its match limit). A reconnecting client
/// (`sb_client_set_reconnect`) adds the match again once back: `f` hears
/// the signals emitted from then on (those of the outage are lost); a
/// refusal then ends the match (`SB_CONNECTION_RESTORE_FAILED`). The
/// match's number goes to `*out_match` (for `sb_client_remove_match`).
/// `free_user` runs once, when the match has ended (removed, refused,
/// refused again after a reconnect, or the client closed)
/// and `done` has run; at once if this call fails.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_client_add_match(
    client: *const sb_client,
    session: *const c_char,
    signal: *const c_char,
    f: sb_signal_fn,
    done: sb_done_fn,
    user: *mut c_void,
    free_user: sb_free_fn,
    out_match: *mut u64,
) -> sb_status {
    let body = |client: &Client, user: UserData| {
        // SAFETY: NULL or NUL-terminated per the conventions.
        let (session, signal) = unsafe { (text(session, "session")?, text(signal, "signal")?) };
        let f = required(f, "f")?;
        if out_match.is_null() {
            return Err(fail(sb_status::SB_NULL_ARGUMENT, "out_match is NULL"));
        }
        let user = Rc::new(user);
        let on_user = user.clone();
        let on_signal = move |s: &crate::client::Signal| {
            let (session, signal) = (c_string(&s.session), c_string(&s.signal));
            let args = borrowed::<sb_args>(&s.args);
            // SAFETY: the C caller's function with its own user pointer;
            // the strings and args live through the call.
            unsafe { f(on_user.get(), session.as_ptr(), signal.as_ptr(), args) };
        };
        let id = client.add_match(session, signal, on_signal, done_closure(done, user))?;
        // SAFETY: checked non-NULL above; writable per the conventions.
        unsafe { put(out_match, id.0, "out_match") }
    };
    // SAFETY: NULL or a live sb_client.
    unsafe { register(client, "client", user, free_user, body) }
}

/// Ends a match of this client: its `f` runs no more from this call on;
/// `done` (optional) runs once with the broker's answer, and the match's
/// `free_user` runs once nothing of it is left. `SB_INVALID_ARGUMENT`
/// (no callback) when `match_id` is not one of this client's matches.
/// `free_user` of this call runs once, after `done` (at once if this
/// call fails).
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_client_remove_match(
    client: *const sb_client,
    match_id: u64,
    done: sb_done_fn,
    user: *mut c_void,
    free_user: sb_free_fn,
) -> sb_status {
    let body = |client: &Client, user: UserData| {
        Ok(client.remove_match(
            MatchId(match_id),
            super::callbacks::done_closure(done, user),
        )?)
    };
    // SAFETY: NULL or a live sb_client.
    unsafe { register(client, "client", user, free_user, body) }
}

/// How many answers of one-way requests served through this client were
/// dropped (their callees' emits, returns and errors, which nobody
/// waits for). 0 for NULL.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_client_dropped_answers(client: *const sb_client) -> u64 {
    // SAFETY: NULL or a live sb_client.
    value_or(
        0,
        || Ok(unsafe { arg(client, "client") }?.dropped_answers()),
    )
}
