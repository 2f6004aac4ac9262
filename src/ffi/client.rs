//! `sb_client`: a connection to a broker, and the callbacks it reports
//! through.

use super::boundary::{fail, status, Fail};
use super::callbacks::{
    c_string, done_closure, register, required, sb_done_fn, sb_free_fn, UserData,
};
use super::convert::{bytes, opt_text, text};
use super::event_loop::sb_loop;
use super::handles::{arg, borrowed, boxed, take, Handle};
use super::status::sb_status;
use super::values::sb_value;
use crate::client::{Client, ClientConfig};
use crate::event_loop::EventLoop;
use crate::transport::Address;
use crate::value::{Args, Value};
use std::ffi::{c_char, c_void};
use std::rc::Rc;

/// A connection to a broker.
#[derive(Debug)]
pub struct sb_client {
    _private: [u8; 0],
}

impl Handle for sb_client {
    type Target = Client;
    fn home(client: &Client) -> Option<&EventLoop> {
        Some(client.event_loop())
    }
}

/// Completion of a connect: the broker's connection id on success.
pub type sb_connect_fn = Option<
    unsafe extern "C" fn(
        user: *mut c_void,
        status: sb_status,
        connection_id: u64,
        message: *const c_char,
    ),
>;

/// A subscribed session went away (rescinded, or its publisher left).
pub type sb_session_gone_fn = Option<
    unsafe extern "C" fn(
        user: *mut c_void,
        session: *const c_char,
        status: sb_status,
        message: *const c_char,
    ),
>;

/// Completion of a listing: on success a list value of maps
/// `{name: string, methods: [string…]}`, borrowed for the call.
pub type sb_listing_fn = Option<
    unsafe extern "C" fn(
        user: *mut c_void,
        status: sb_status,
        sessions: *const sb_value,
        message: *const c_char,
    ),
>;

/// A message of an application-defined kind reached the client (the
/// original's unknown_message_event): its `kind` (NUL-terminated; a NUL
/// inside it arrives as a space), the `id` it carries, and `len` payload
/// bytes at `payload` (do not read it when `len` is 0). Everything is
/// borrowed for the call.
///
/// The broker's answer to `sb_client_send_custom` arrives here too, as
/// kind `"result"` with the id given to that call and the broker's error
/// text as the payload.
pub type sb_unknown_message_fn = Option<
    unsafe extern "C" fn(
        user: *mut c_void,
        kind: *const c_char,
        id: u64,
        payload: *const u8,
        len: usize,
    ),
>;

/// Starts connecting to the broker at `address` with an optional `token`.
/// `on_connect` runs once with the outcome (then `free_user`).
/// Operations may be started at once. Free with `sb_client_free`.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_client_connect(
    lp: *mut sb_loop,
    address: *const c_char,
    token: *const c_char,
    on_connect: sb_connect_fn,
    user: *mut c_void,
    free_user: sb_free_fn,
    out: *mut *mut sb_client,
) -> sb_status {
    let body = |lp: &EventLoop, user: UserData| {
        // SAFETY: NULL or a valid string per the conventions.
        let token = unsafe { opt_text(token, "token") }?;
        let config = ClientConfig {
            token: token.map(str::to_string),
            ..ClientConfig::default()
        };
        // SAFETY: forwarded contract.
        unsafe { connect_with_config(lp, address, config, on_connect, user, out) }
    };
    // SAFETY: NULL or a live sb_loop.
    unsafe { register(lp, "loop", user, free_user, body) }
}

/// Connects a client with `config` (the body of `sb_client_connect` and
/// `sb_client_connect_with`).
///
/// # Safety
/// As for `sb_client_connect`.
pub(super) unsafe fn connect_with_config(
    lp: &EventLoop,
    address: *const c_char,
    config: ClientConfig,
    on_connect: sb_connect_fn,
    user: UserData,
    out: *mut *mut sb_client,
) -> Result<(), Fail> {
    // SAFETY: NULL or a valid string per the conventions.
    let addr = unsafe { text(address, "address") }?;
    let addr = addr.parse::<Address>()?;
    if out.is_null() {
        return Err(fail(sb_status::SB_NULL_ARGUMENT, "out is NULL"));
    }
    let client = Client::connect(lp, &addr, config);
    client.on_connect(move |result| {
        if let Some(f) = on_connect {
            let (code, id, message) = match &result {
                Ok(info) => (sb_status::SB_OK, info.connection_id, c_string("")),
                Err(e) => (e.code.into(), 0, c_string(&e.message)),
            };
            // SAFETY: the C caller's function with its own user pointer.
            unsafe { f(user.get(), code, id, message.as_ptr()) };
        }
        drop(user);
    });
    // SAFETY: checked non-NULL above.
    unsafe { out.write(boxed::<sb_client>(client)) };
    Ok(())
}

/// Sets what runs when an established connection is lost (replacing and
/// freeing a previous registration).
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_client_on_disconnect(
    client: *const sb_client,
    f: sb_done_fn,
    user: *mut c_void,
    free_user: sb_free_fn,
) -> sb_status {
    let body = |client: &Client, user: UserData| {
        let f = required(f, "f")?;
        client.on_disconnect(move |e| {
            let message = c_string(&e.message);
            // SAFETY: the C caller's function with its own user pointer.
            unsafe { f(user.get(), e.code.into(), message.as_ptr()) };
        });
        Ok(())
    };
    // SAFETY: NULL or a live sb_client.
    unsafe { register(client, "client", user, free_user, body) }
}

/// Sets what runs when a subscribed session goes away.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_client_on_session_gone(
    client: *const sb_client,
    f: sb_session_gone_fn,
    user: *mut c_void,
    free_user: sb_free_fn,
) -> sb_status {
    let body = |client: &Client, user: UserData| {
        let f = required(f, "f")?;
        client.on_session_gone(move |session, e| {
            let (session, message) = (c_string(session), c_string(&e.message));
            // SAFETY: the C caller's function with its own user pointer.
            unsafe {
                f(
                    user.get(),
                    session.as_ptr(),
                    e.code.into(),
                    message.as_ptr(),
                )
            };
        });
        Ok(())
    };
    // SAFETY: NULL or a live sb_client.
    unsafe { register(client, "client", user, free_user, body) }
}

/// Sets what receives messages of application-defined kinds, replacing
/// (and freeing, with its `free_user`) a previous registration; without
/// one they are ignored. `f` runs for every such message, on the loop's
/// thread; `free_user` runs once, when the registration is replaced or
/// the client is gone, or at once if this call fails (`SB_NULL_ARGUMENT`
/// for a NULL `client` or `f`).
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_client_on_unknown_message(
    client: *const sb_client,
    f: sb_unknown_message_fn,
    user: *mut c_void,
    free_user: sb_free_fn,
) -> sb_status {
    let body = |client: &Client, user: UserData| {
        let f = required(f, "f")?;
        client.on_unknown_message(move |kind, id, payload| {
            let kind = c_string(kind);
            // SAFETY: the C caller's function with its own user pointer;
            // kind and payload live until it returns.
            unsafe {
                f(
                    user.get(),
                    kind.as_ptr(),
                    id,
                    payload.as_ptr(),
                    payload.len(),
                )
            };
        });
        Ok(())
    };
    // SAFETY: NULL or a live sb_client.
    unsafe { register(client, "client", user, free_user, body) }
}

/// Sends a message of the application-defined kind `kind` (NUL-terminated
/// UTF-8) with the application's own correlation `id` and a copy of
/// `len` bytes at `payload` (`payload` may be NULL when `len` is 0). The
/// broker knows no such kind: it answers with a `protocol` error, which
/// reaches the `sb_client_on_unknown_message` handler as kind `"result"`
/// with this `id` (the message travels under an id of the client's own,
/// so the answer is never mistaken for one of the client's operations).
///
/// `SB_NULL_ARGUMENT` for a NULL `client` or `kind`, or a NULL `payload`
/// with a length; `SB_INVALID_UTF8` for a `kind` that is not UTF-8;
/// the client's error (`SB_BROKER_GONE` once the connection is closed,
/// `SB_LIMIT_EXCEEDED` when over a limit) if it cannot be queued.
/// Nothing is sent on failure.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_client_send_custom(
    client: *const sb_client,
    kind: *const c_char,
    id: u64,
    payload: *const u8,
    len: usize,
) -> sb_status {
    status(|| {
        // SAFETY: NULL or a live sb_client / NUL-terminated string.
        let (client, kind) = unsafe { (arg(client, "client")?, text(kind, "kind")?) };
        // SAFETY: NULL (only with len 0) or len readable bytes.
        let payload = unsafe { bytes(payload, len, "payload") }?;
        Ok(client.send_custom(kind, id, payload)?)
    })
}

/// Lists the published sessions; `f` runs once with the listing.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_client_listing(
    client: *const sb_client,
    f: sb_listing_fn,
    user: *mut c_void,
    free_user: sb_free_fn,
) -> sb_status {
    let body = |client: &Client, user: UserData| {
        let f = required(f, "f")?;
        client.listing(move |result| {
            let (code, list, message) = match result {
                Ok(sessions) => {
                    let list = sessions
                        .into_iter()
                        .map(|s| {
                            let methods = s.methods.into_iter().map(Value::Str).collect::<Vec<_>>();
                            Value::Map(Args::new().with("name", s.name).with("methods", methods))
                        })
                        .collect::<Vec<_>>();
                    (sb_status::SB_OK, Value::List(list), c_string(""))
                }
                Err(e) => (e.code.into(), Value::Null, c_string(&e.message)),
            };
            let list_ptr = if code == sb_status::SB_OK {
                borrowed::<sb_value>(&list)
            } else {
                std::ptr::null()
            };
            // SAFETY: the C caller's function with its own user pointer;
            // the list lives until the call returns.
            unsafe { f(user.get(), code, list_ptr, message.as_ptr()) };
            drop(user);
        });
        Ok(())
    };
    // SAFETY: NULL or a live sb_client.
    unsafe { register(client, "client", user, free_user, body) }
}

/// Receives the broker's report of itself: `SB_OK` with the report (the
/// map value `sb_broker_report` describes; borrowed, valid during the
/// call) and an empty message, or an error status, NULL and its message.
pub type sb_stats_fn = Option<
    unsafe extern "C" fn(
        user: *mut c_void,
        status: sb_status,
        report: *const sb_value,
        message: *const c_char,
    ),
>;

/// Asks the broker for its report of itself; `f` runs once with it.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_client_stats(
    client: *const sb_client,
    f: sb_stats_fn,
    user: *mut c_void,
    free_user: sb_free_fn,
) -> sb_status {
    let body = |client: &Client, user: UserData| {
        let f = required(f, "f")?;
        client.stats(move |result| {
            let (code, report, message) = match result {
                Ok(report) => (sb_status::SB_OK, report.to_value(), c_string("")),
                Err(e) => (e.code.into(), Value::Null, c_string(&e.message)),
            };
            let report_ptr = if code == sb_status::SB_OK {
                borrowed::<sb_value>(&report)
            } else {
                std::ptr::null()
            };
            // SAFETY: the C caller's function with its own user pointer;
            // the report lives until the call returns.
            unsafe { f(user.get(), code, report_ptr, message.as_ptr()) };
            drop(user);
        });
        Ok(())
    };
    // SAFETY: NULL or a live sb_client.
    unsafe { register(client, "client", user, free_user, body) }
}

/// Receives one frame the broker saw (see `sb_client_monitor`): a map
/// value (`time_ms`, `from`, `to`, `kind`, `session`, `name`, `id`,
/// `size`; `error` {code, message} for an error result; `args` when
/// payloads were asked for), borrowed during the call.
pub type sb_tap_fn = Option<unsafe extern "C" fn(user: *mut c_void, event: *const sb_value)>;

/// Monitors the broker's traffic: `on_tap` gets every frame the broker
/// receives from other connections (only those of `session`, unless it
/// is NULL; with their args if `payload`), from the broker's answer
/// until the client closes; `done` (optional) gets that answer once.
/// Both get `user`; `free_user` runs once when neither can run again
/// (the client closed, or a later `sb_client_monitor` replaced
/// `on_tap`). A monitor that cannot keep up is disconnected by the
/// broker, never slowing it.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_client_monitor(
    client: *const sb_client,
    session: *const c_char,
    payload: bool,
    on_tap: sb_tap_fn,
    done: sb_done_fn,
    user: *mut c_void,
    free_user: sb_free_fn,
) -> sb_status {
    let body = |client: &Client, user: UserData| {
        let user = Rc::new(user);
        // SAFETY: NULL or a valid string per the conventions.
        let session = unsafe { opt_text(session, "session") }?;
        let on_tap = required(on_tap, "on_tap")?;
        let tap_user = user.clone();
        client.monitor(
            session,
            payload,
            move |event| {
                let value = event.to_value();
                // SAFETY: the C caller's function with its own user
                // pointer; the value lives until it returns.
                unsafe { on_tap(tap_user.get(), borrowed::<sb_value>(&value)) };
            },
            done_closure(done, user),
        );
        Ok(())
    };
    // SAFETY: NULL or a live sb_client.
    unsafe { register(client, "client", user, free_user, body) }
}

/// Withdraws a session this client published; `done` runs once.
/// `SB_NOT_PUBLISHER` at once (no callback) if it is not published here.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_client_rescind(
    client: *const sb_client,
    session: *const c_char,
    done: sb_done_fn,
    user: *mut c_void,
    free_user: sb_free_fn,
) -> sb_status {
    let body = |client: &Client, user: UserData| {
        // SAFETY: NULL or a NUL-terminated string per the conventions.
        let session = unsafe { text(session, "session") }?;
        Ok(client.rescind(session, done_closure(done, user))?)
    };
    // SAFETY: NULL or a live sb_client.
    unsafe { register(client, "client", user, free_user, body) }
}

/// Closes the connection; pending operations complete with
/// `SB_BROKER_GONE`, deliveries being served see a cancel. What the
/// client already accepted for sending (answers given with
/// `sb_served_return` and the like, emits, calls) is still written out
/// first, on the loop, for at most the linger time (`sb_client_set_linger`,
/// default 5 s): the connection outlives the close (and `sb_client_free`)
/// until then. A stopped loop keeps that output for its next run;
/// `sb_loop_free` drops it. Idempotent. The handle stays valid until
/// `sb_client_free`.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_client_close(client: *const sb_client) -> sb_status {
    status(|| {
        // SAFETY: NULL or a live sb_client.
        unsafe { arg(client, "client") }?.close();
        Ok(())
    })
}

/// `sb_client_close`, then `done` once the output left: `SB_OK` when
/// everything queued was written and the stream ended, `SB_TIMEOUT` when
/// the linger time passed first (the rest is dropped), `SB_BROKER_GONE` or
/// `SB_IO` when the connection failed first, `SB_INVALID_STATE` when the
/// client was closed already. `done` (may be NULL) runs at most once, on
/// the loop, never inside this call; it does not run if the loop is freed
/// first. `free_user` runs exactly once either way. The usual way to
/// answer, then exit: close gracefully and stop the loop from `done`.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_client_close_graceful(
    client: *const sb_client,
    done: sb_done_fn,
    user: *mut c_void,
    free_user: sb_free_fn,
) -> sb_status {
    let body = |client: &Client, user: UserData| {
        client.close_gracefully(done_closure(done, user));
        Ok(())
    };
    // SAFETY: NULL or a live sb_client.
    unsafe { register(client, "client", user, free_user, body) }
}

/// Sets how long a later close (`sb_client_close`, `sb_client_free`,
/// `sb_client_close_graceful`) may take to write out what was accepted
/// for sending, in milliseconds (default 5000). 0 writes what the socket
/// takes at once and drops the rest.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_client_set_linger(client: *const sb_client, ms: u64) -> sb_status {
    status(|| {
        // SAFETY: NULL or a live sb_client.
        let client = unsafe { arg(client, "client") }?;
        client.set_linger(std::time::Duration::from_millis(ms));
        Ok(())
    })
}

/// Sets the deadline, in milliseconds, of later requests through this
/// client that set none (neither their own timeout nor one inherited
/// from the request they are made for); 0 turns it off, the default:
/// long calls and streams of emits are legitimate.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_client_set_default_timeout_ms(
    client: *const sb_client,
    ms: u64,
) -> sb_status {
    status(|| {
        // SAFETY: NULL or a live sb_client.
        let client = unsafe { arg(client, "client") }?;
        let timeout = (ms != 0).then(|| std::time::Duration::from_millis(ms));
        client.set_default_timeout(timeout);
        Ok(())
    })
}

/// Sets the client's liveness: a broker silent for `interval_ms` is
/// pinged, and one that leaves `max` pings unanswered (and one more
/// interval) is taken for gone exactly as a disconnect: every call ends
/// with `SB_BROKER_GONE`. Defaults 120000 ms and 2 (as NATS clients); 0 ms
/// turns pinging off. The next ping comes one new interval from now.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_client_set_ping(
    client: *const sb_client,
    interval_ms: u64,
    max: u32,
) -> sb_status {
    status(|| {
        // SAFETY: NULL or a live sb_client.
        let client = unsafe { arg(client, "client") }?;
        client.set_ping(std::time::Duration::from_millis(interval_ms), max);
        Ok(())
    })
}

/// Closes (as `sb_client_close`, flushing what was accepted for sending)
/// and frees a client. NULL is a no-op.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_client_free(client: *mut sb_client) {
    // SAFETY: NULL or an owned sb_client, freed once.
    if let Some(client) = unsafe { take(client) } {
        let _ = status(|| {
            client.close();
            drop(client);
            Ok(())
        });
    }
}
