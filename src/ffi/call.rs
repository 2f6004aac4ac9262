//! `sb_client_call` and `sb_client_call_sync`: calls of a session by
//! name, without a subscribe, over `Client::request` + `Request::keep`
//! and `Client::call_sync`.

use super::args::{args_or_empty, sb_args};
use super::boundary::status;
use super::callbacks::{sb_free_fn, UserData};
use super::client::sb_client;
use super::context::{c_handler, sb_handler_fn};
use super::convert::text;
use super::handles::{arg, boxed};
use super::status::sb_status;
use std::ffi::{c_char, c_void};
use std::time::Duration;

/// Calls `method` of the session published as `session`, by name: no
/// subscribe first (`SB_NO_SUCH_SESSION` reaches `on_response` if
/// nobody publishes it when the call arrives). `args` is copied (NULL
/// for none).
///
/// `on_response` runs for every response, as a request's fallback
/// handler does: each emit, then exactly one final response (the
/// return, or an error: `sb_response_error(sb_ctx_rsp(ctx))` is its
/// status, `sb_response_message` its text). NULL ignores the responses.
/// `free_user` runs once after the last of them (also when this
/// function fails). From a handler, `sb_response_recall` answers an emit
/// and `sb_response_cancel` ends the call.
///
/// The call runs to its end without a handle to hold: its final
/// response, the client's default timeout
/// (`sb_client_set_default_timeout_ms`; none by default), a cancel from
/// `on_response`, the end of the request being served when it was made
/// (inside a method handler it is that request's child), or the client
/// closing (`SB_BROKER_GONE`). Until then it keeps the client alive; a
/// call still pending at `sb_loop_free` is dropped without a response
/// (`free_user` still runs). For a handle (to cancel or time it), use
/// `sb_request_to_remote` after `sb_remote_subscribe`.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_client_call(
    client: *const sb_client,
    session: *const c_char,
    method: *const c_char,
    args: *const sb_args,
    on_response: sb_handler_fn,
    user: *mut c_void,
    free_user: sb_free_fn,
) -> sb_status {
    let user = UserData::new(user, free_user);
    status(|| {
        // SAFETY: NULL or live / NUL-terminated per the conventions.
        let (client, session, method) = unsafe {
            (
                arg(client, "client")?,
                text(session, "session")?,
                text(method, "method")?,
            )
        };
        // SAFETY: NULL or a live sb_args.
        let args = unsafe { args_or_empty(args) };
        let builder = client.request(session, method).args(args);
        let builder = match on_response {
            Some(f) => {
                let h = c_handler(f, user);
                builder.fallback(move |ctx| h(ctx))
            }
            None => {
                // Held until the request ends, so `free_user` runs then.
                builder.fallback(move |_| {
                    let _ = &user;
                    Ok(())
                })
            }
        };
        builder.send()?.keep();
        Ok(())
    })
}

/// Calls `method` of `session` by name (as `sb_client_call`) and runs
/// the client's loop until the final answer, for programs without a
/// loop of their own. On a return `SB_OK`, and `*reply` (if `reply` is
/// not NULL) is the return's args, owned: free them with
/// `sb_args_free`. Otherwise the error that ended the call
/// (`SB_NO_SUCH_SESSION`, `SB_NO_SUCH_METHOD`, the service's error,
/// `SB_TIMEOUT`, `SB_BROKER_GONE`, …), with `sb_last_error()` saying
/// why, and `*reply` untouched.
///
/// `timeout_ms` bounds the wait (the call is cancelled at the service
/// when it passes); 0 takes the client's default timeout, and with none
/// waits as long as the connection lasts. Emits are passed over, so a
/// service that waits for a recall times out.
///
/// Inside a callback of the client's loop (a handler, a completion, a
/// timer) it does nothing and returns `SB_INVALID_STATE`: it would have
/// to run the loop from inside itself. Use `sb_client_call` there.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_client_call_sync(
    client: *const sb_client,
    session: *const c_char,
    method: *const c_char,
    args: *const sb_args,
    timeout_ms: u64,
    reply: *mut *mut sb_args,
) -> sb_status {
    status(|| {
        // SAFETY: NULL or live / NUL-terminated per the conventions.
        let (client, session, method) = unsafe {
            (
                arg(client, "client")?,
                text(session, "session")?,
                text(method, "method")?,
            )
        };
        // SAFETY: NULL or a live sb_args.
        let args = unsafe { args_or_empty(args) };
        let timeout = (timeout_ms > 0).then(|| Duration::from_millis(timeout_ms));
        let answer = client.call_sync(session, method, &args, timeout)?;
        if !reply.is_null() {
            // SAFETY: non-NULL, a writable out-param per the conventions.
            unsafe { reply.write(boxed::<sb_args>(answer.args)) };
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_arguments_are_refused() {
        // SAFETY: NULL handles are refused before anything is read.
        let st = unsafe {
            sb_client_call_sync(
                std::ptr::null(),
                c"S".as_ptr(),
                c"m".as_ptr(),
                std::ptr::null(),
                0,
                std::ptr::null_mut(),
            )
        };
        assert_eq!(st, sb_status::SB_NULL_ARGUMENT);
        // SAFETY: as above.
        let st = unsafe {
            sb_client_call(
                std::ptr::null(),
                c"S".as_ptr(),
                c"m".as_ptr(),
                std::ptr::null(),
                None,
                std::ptr::null_mut(),
                None,
            )
        };
        assert_eq!(st, sb_status::SB_NULL_ARGUMENT);
    }
}
