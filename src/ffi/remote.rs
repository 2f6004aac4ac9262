//! `sb_remote`: a session subscribed through a client, used as a request
//! target.

use super::boundary::{fail, status};
use super::callbacks::{c_string, done_closure, sb_done_fn, sb_free_fn, UserData};
use super::client::sb_client;
use super::convert::text;
use super::handles::{arg, boxed, take, Handle};
use super::status::sb_status;
use crate::event_loop::EventLoop;
use crate::request::RemoteStage;
use std::ffi::{c_char, c_void};
use std::time::Duration;

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

/// Subscribes to `session` through `client`; `f` runs once with an owned
/// remote stage or an error (`SB_NO_SUCH_SESSION`).
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_remote_subscribe(
    client: *const sb_client,
    session: *const c_char,
    f: sb_subscribed_fn,
    user: *mut c_void,
    free_user: sb_free_fn,
) -> sb_status {
    // SAFETY: the caller's arguments, as this function's contract asks.
    unsafe { subscribe(client, session, 0, f, user, free_user) }
}

/// Subscribes to `session` through `client`, waiting up to `wait_ms`
/// milliseconds for it to be published if it is not yet (services and
/// callers may start in any order). `f` runs exactly once: with an owned
/// remote stage as soon as the session is published (or at once if it
/// is), or `SB_NO_SUCH_SESSION` when the wait expires (the broker times
/// it). `wait_ms` 0 is `sb_remote_subscribe`.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_remote_subscribe_wait(
    client: *const sb_client,
    session: *const c_char,
    wait_ms: u64,
    f: sb_subscribed_fn,
    user: *mut c_void,
    free_user: sb_free_fn,
) -> sb_status {
    // SAFETY: the caller's arguments, as this function's contract asks.
    unsafe { subscribe(client, session, wait_ms, f, user, free_user) }
}

/// # Safety
/// As `sb_remote_subscribe`.
unsafe fn subscribe(
    client: *const sb_client,
    session: *const c_char,
    wait_ms: u64,
    f: sb_subscribed_fn,
    user: *mut c_void,
    free_user: sb_free_fn,
) -> sb_status {
    let user = UserData::new(user, free_user);
    status(|| {
        // SAFETY: NULL or live / NUL-terminated per the conventions.
        let (client, session) = unsafe { (arg(client, "client")?, text(session, "session")?) };
        let f = f.ok_or_else(|| fail(sb_status::SB_NULL_ARGUMENT, "f is NULL"))?;
        let done = move |result: Result<RemoteStage, crate::Error>| {
            let (code, remote, message) = match result {
                Ok(r) => (sb_status::SB_OK, boxed::<sb_remote>(r), c_string("")),
                Err(e) => (e.code.into(), std::ptr::null_mut(), c_string(&e.message)),
            };
            // SAFETY: the C caller's function with its own user pointer;
            // it takes ownership of `remote`.
            unsafe { f(user.get(), code, remote, message.as_ptr()) };
            drop(user);
        };
        RemoteStage::subscribe_waiting(client, session, Duration::from_millis(wait_ms), done);
        Ok(())
    })
}

/// Ends the subscription; `done` runs once. From this call on, requests
/// through the remote stage (and any other of the same client and
/// session) fail at once in `sb_request_send` with `SB_NOT_SUBSCRIBED`,
/// as they do once the session went away.
#[doc = safety!()]
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

/// Sends a one-way request of `method` with `args` (copied; NULL for
/// none): the callee runs it with `sb_served_expects_answer` false, and
/// nothing comes back, not even an error; the broker keeps no route.
/// Made inside a handler serving a request, it carries that request's
/// deadline. `SB_NOT_SUBSCRIBED` once the subscription ended,
/// `SB_BROKER_GONE` on a closed client.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_remote_post(
    remote: *const sb_remote,
    method: *const c_char,
    args: *const super::args::sb_args,
) -> sb_status {
    status(|| {
        // SAFETY: NULL or live / NUL-terminated per the conventions.
        let (remote, method, args) = unsafe {
            (
                arg(remote, "remote")?,
                text(method, "method")?,
                super::args::args_or_empty(args),
            )
        };
        Ok(remote.post(method, &args)?)
    })
}

/// Frees a remote stage handle (the subscription stays). NULL is a no-op.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_remote_free(remote: *mut sb_remote) {
    // SAFETY: NULL or an owned sb_remote, freed once.
    drop(unsafe { take(remote) });
}
