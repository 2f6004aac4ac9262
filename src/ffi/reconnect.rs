//! A client's reconnect policy and connection events from C.

use super::boundary::{fail, status};
use super::callbacks::{c_string, register, required, sb_free_fn, UserData};
use super::client::sb_client;
use super::convert::text;
use super::handles::arg;
use super::status::sb_status;
use crate::client::{Client, ConnectionEvent, WhileReconnecting};
use crate::transport::Address;
use std::ffi::{c_char, c_void};
use std::time::Duration;

/// What an `sb_connection_event_fn` reports. Passed as a `uint32_t`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum sb_connection_event {
    /// The connection was lost; the client reconnects. Every call that
    /// was in flight has ended with `SB_BROKER_GONE` (the publisher may
    /// or may not have run it). `status` and `message` say why.
    SB_CONNECTION_DISCONNECTED = 1,
    /// Connected again; sessions are being published again and
    /// subscriptions renewed. `status` is `SB_OK`.
    SB_CONNECTION_RECONNECTED = 2,
    /// Publishing `session` again failed (another client holds the name,
    /// or the broker refused it): it is no longer published by this
    /// client. `status` and `message` say why.
    SB_CONNECTION_REPUBLISH_FAILED = 3,
    /// Adding a signal match or a name watch again after reconnecting
    /// failed (the broker refused it): it is ended, its handler runs no
    /// more. `session` says which (`signal match 'SESSION' 'SIGNAL'` or
    /// `watch 'PATTERN'`); `status` and `message` say why.
    SB_CONNECTION_RESTORE_FAILED = 4,
}

/// A reconnecting client's connection changed: `event` is an
/// `sb_connection_event`; `session` is the session's name for
/// `SB_CONNECTION_REPUBLISH_FAILED`, the match or watch for
/// `SB_CONNECTION_RESTORE_FAILED`, else NULL. Strings are borrowed for
/// the call.
pub type sb_connection_event_fn = Option<
    unsafe extern "C" fn(
        user: *mut c_void,
        event: u32,
        session: *const c_char,
        status: sb_status,
        message: *const c_char,
    ),
>;

/// Turns reconnecting on (or changes its delays): after a loss the client
/// waits `initial_delay_ms` (doubling per failed attempt up to
/// `max_delay_ms`, each with up to 20% taken off at random), then
/// connects to the next address (the connect address, then those of
/// `sb_client_add_address`, round and round). `max_attempts` after one
/// loss before the client gives up and closes (its disconnect handler
/// runs); 0 tries forever. On every loss each call in flight ends once
/// with `SB_BROKER_GONE`; once connected, sessions are published again,
/// subscriptions renewed, signal matches added again and name watches
/// renewed (each watch reports the names' state afresh: `SB_NAME_GONE`
/// for a name gone meanwhile, then `SB_NAME_PRESENT` per name published
/// now). Off by default. Set right after
/// `sb_client_connect`, it covers that connect too.
/// `SB_INVALID_ARGUMENT` when `initial_delay_ms` exceeds `max_delay_ms`.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_client_set_reconnect(
    client: *const sb_client,
    initial_delay_ms: u64,
    max_delay_ms: u64,
    max_attempts: u32,
) -> sb_status {
    status(|| {
        // SAFETY: NULL or a live sb_client.
        let client = unsafe { arg(client, "client") }?;
        if initial_delay_ms > max_delay_ms {
            return Err(fail(
                sb_status::SB_INVALID_ARGUMENT,
                format!(
                    "the initial delay {initial_delay_ms} ms exceeds the maximum {max_delay_ms} ms"
                ),
            ));
        }
        let policy = client.reconnect_policy().unwrap_or_default().with_delays(
            Duration::from_millis(initial_delay_ms),
            Duration::from_millis(max_delay_ms),
        );
        let attempts = (max_attempts != 0).then_some(max_attempts);
        client.set_reconnect(Some(policy.with_max_attempts(attempts)));
        Ok(())
    })
}

/// Turns reconnecting off: the next loss closes the client.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_client_disable_reconnect(client: *const sb_client) -> sb_status {
    status(|| {
        // SAFETY: NULL or a live sb_client.
        let client = unsafe { arg(client, "client") }?;
        client.set_reconnect(None);
        Ok(())
    })
}

/// Adds a broker address tried in turn after the ones given so far.
/// `SB_INVALID_STATE` while reconnecting is off (`sb_client_set_reconnect`
/// first); `SB_INVALID_ARGUMENT` for an address that does not parse.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_client_add_address(
    client: *const sb_client,
    address: *const c_char,
) -> sb_status {
    status(|| {
        // SAFETY: NULL or live / NUL-terminated per the conventions.
        let (client, address) = unsafe { (arg(client, "client")?, text(address, "address")?) };
        let address = address.parse::<Address>()?;
        client.update_reconnect(|p| p.addresses.push(address))?;
        Ok(())
    })
}

/// What calls and operations made while reconnecting do: with
/// `fail_fast` false they are held (at most `buffer_limit`; over it they
/// fail with `SB_LIMIT_EXCEEDED`) and sent once connected, bounded by
/// their own timeout; with `fail_fast` true they fail at once with
/// `SB_BROKER_GONE`. Default: held, 1024. `SB_INVALID_STATE` while
/// reconnecting is off.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_client_set_reconnect_buffer(
    client: *const sb_client,
    fail_fast: bool,
    buffer_limit: usize,
) -> sb_status {
    status(|| {
        // SAFETY: NULL or a live sb_client.
        let client = unsafe { arg(client, "client") }?;
        let mode = if fail_fast {
            WhileReconnecting::FailFast
        } else {
            WhileReconnecting::Wait
        };
        client.update_reconnect(|p| {
            p.while_reconnecting = mode;
            p.buffer_limit = buffer_limit;
        })?;
        Ok(())
    })
}

/// How long, once reconnected, publishing a session again retries while
/// the broker still holds its name (`republish_window_ms`, default
/// 10000; after it: `SB_CONNECTION_REPUBLISH_FAILED`), and how long a
/// renewed subscription waits for its session to be published again
/// (`resubscribe_wait_ms`, default 60000; after it the session-gone
/// handler runs). `SB_INVALID_STATE` while reconnecting is off.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_client_set_reconnect_restore(
    client: *const sb_client,
    republish_window_ms: u64,
    resubscribe_wait_ms: u64,
) -> sb_status {
    status(|| {
        // SAFETY: NULL or a live sb_client.
        let client = unsafe { arg(client, "client") }?;
        client.update_reconnect(|p| {
            p.republish_window = Duration::from_millis(republish_window_ms);
            p.resubscribe_wait = Duration::from_millis(resubscribe_wait_ms);
        })?;
        Ok(())
    })
}

/// Sets what hears of a reconnecting client's connection (replacing and
/// freeing a previous registration): see `sb_connection_event`.
/// `free_user` runs exactly once, when the registration is replaced or
/// the client is freed.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_client_on_connection_event(
    client: *const sb_client,
    f: sb_connection_event_fn,
    user: *mut c_void,
    free_user: sb_free_fn,
) -> sb_status {
    let body = |client: &Client, user: UserData| {
        let f = required(f, "f")?;
        client.on_connection_event(move |event| {
            let (kind, session, code, message) = match event {
                ConnectionEvent::Disconnected(e) => (
                    sb_connection_event::SB_CONNECTION_DISCONNECTED,
                    None,
                    e.code.into(),
                    c_string(&e.message),
                ),
                ConnectionEvent::Reconnected(_) => (
                    sb_connection_event::SB_CONNECTION_RECONNECTED,
                    None,
                    sb_status::SB_OK,
                    c_string(""),
                ),
                ConnectionEvent::RepublishFailed { session, error } => (
                    sb_connection_event::SB_CONNECTION_REPUBLISH_FAILED,
                    Some(c_string(session)),
                    error.code.into(),
                    c_string(&error.message),
                ),
                ConnectionEvent::RestoreFailed { what, error } => (
                    sb_connection_event::SB_CONNECTION_RESTORE_FAILED,
                    Some(c_string(what)),
                    error.code.into(),
                    c_string(&error.message),
                ),
            };
            let session_ptr = session.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
            // SAFETY: the C caller's function with its own user pointer.
            unsafe { f(user.get(), kind as u32, session_ptr, code, message.as_ptr()) };
        });
        Ok(())
    };
    // SAFETY: NULL or a live sb_client.
    unsafe { register(client, "client", user, free_user, body) }
}
