//! The client: one connection from a loop to a broker.
//!
//! It re-creates POEx::ProxySession's client: connect, publish a session
//! with its method list, rescind, list, subscribe (getting the method
//! list), unsubscribe, and deliver calls whose interim and final answers
//! come back. The publisher's side of a call is a [`Delivery`].
//!
//! # Completion guarantee
//!
//! Every operation completes exactly once: its callback runs with success
//! or a clear error, also when the connection drops (`broker_gone`) or the
//! client is closed. Callbacks run only inside the loop's dispatch, never
//! inside the call that started the operation. Arguments that are wrong
//! on their face (an empty name, rescinding a session this client did not
//! publish) are refused at once with an `Err` and no callback.
//!
//! Tags: the original passed an opaque `tag` through every operation.
//! Here every completion is a closure, so whatever it captures is the tag.

// Layout, one concept a module:
// * core: the state machine; frames and orders in, effects out, no I/O;
// * effects: the core's seam (its outbox, the effects and a close's settle);
// * name: the names events carry, shared per connection;
// * config: how to connect (`ClientConfig`);
// * calls: the caller's side, one table of calls under one id each;
// * ops: operations on the broker waiting for their result;
// * serving: the publisher's side (publications, deliveries, `Delivery`);
// * reconnect: the reconnect policy and the core's side of reconnecting;
// * oneway: one-way calls (post), sent and served, answers dropped;
// * signals: emitting signals, matches and their handlers;
// * watches: name watches and their handlers;
// * shell: the connection, the loop and the linger; runs the effects;
// * api_sessions, api_calls: the public API's session operations and
//   calls, each method a call into the shell;
// * this file: the rest of the public API (connection, settings, close).
mod api_calls;
mod api_sessions;
mod calls;
mod config;
mod core;
mod dispatch;
mod effects;
mod name;
mod oneway;
mod ops;
mod received;
mod reconnect;
mod restore;
mod results;
mod serving;
mod shell;
mod signals;
#[cfg(test)]
mod tests;
mod watches;

pub use config::{ClientConfig, DEFAULT_LINGER};
pub use name::Name;
pub(crate) use name::Names;
pub use reconnect::{ConnectionEvent, ReconnectPolicy, WhileReconnecting};
pub use serving::Delivery;
pub(crate) use serving::Publication;
pub use signals::{MatchId, Signal};
pub use watches::{NameEvent, WatchId};

use crate::error::{Error, ErrorCode};
use crate::event_loop::EventLoop;
use crate::transport::Address;
use crate::value::Args;
pub use crate::wire::NameMode;
use shell::Shared;
use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

/// What a successful connect reports (the original's connect completion).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// The broker's number for this connection.
    pub connection_id: u64,
    /// The broker's address.
    pub address: Address,
}

/// Names one outgoing call of this client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u64);

/// What arrives for an outgoing call: any number of emits, then exactly
/// one `Return` or `Error` (unless the caller cancelled first).
#[derive(Debug, Clone, PartialEq)]
pub enum CallEvent {
    /// An interim response.
    Emit {
        /// Its type (default `emit`).
        kind: Name,
        /// Its args.
        args: Args,
    },
    /// The final response.
    Return {
        /// Its type (default `return`).
        kind: Name,
        /// Its args.
        args: Args,
    },
    /// The call failed: `no_such_session`, `no_such_method`,
    /// `publisher_gone`, `broker_gone`, `limit_exceeded`, or the
    /// publisher's own error.
    Error(Error),
}

/// What arrives for a published session.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// A new call of `method`.
    Call {
        /// The method named by the caller.
        method: Name,
        /// Its args.
        args: Args,
    },
    /// The caller's answer to an emit: run `method` within the same call.
    Recall {
        /// The method named by the caller.
        method: Name,
        /// Its args.
        args: Args,
    },
    /// The caller cancelled (or disconnected, or the broker went away):
    /// the delivery has ended and can no longer be answered.
    Cancel,
}

/// A connection to a broker. Cloning gives another handle to the same
/// connection; it closes when [`Client::close`] is called or the last
/// handle is dropped. Either way, what it already accepted for sending
/// is written out first (bounded by [`ClientConfig::linger`]), and what
/// is still pending completes on a later turn of the loop, with
/// `broker_gone`.
#[derive(Clone)]
pub struct Client {
    shared: Rc<Shared>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let core = self.shared.core();
        f.debug_struct("Client")
            .field("address", core.address())
            .field("status", core.status())
            .finish_non_exhaustive()
    }
}

/// An empty session name is `invalid_argument`, here as at the broker.
fn refuse_empty(session: &str) -> Result<(), Error> {
    if session.is_empty() {
        return Err(Error::new(
            ErrorCode::InvalidArgument,
            "the session name is empty",
        ));
    }
    Ok(())
}

impl Client {
    /// Starts connecting to the broker at `address`.
    ///
    /// Returns at once; the outcome arrives through [`Client::on_connect`].
    /// Operations may be started right away: they are sent after the
    /// handshake, or fail with `broker_gone` if the connect fails.
    pub fn connect(lp: &EventLoop, address: &Address, config: ClientConfig) -> Client {
        Client {
            shared: Shared::connect(lp, address, config),
        }
    }

    /// Sets what runs when the handshake completes or the connect fails
    /// (at most once). Set after the connect completed, it runs on the
    /// next turn with the outcome.
    pub fn on_connect(&self, f: impl FnOnce(Result<ConnectionInfo, Error>) + 'static) {
        let known = self.shared.with(|core, _| core.on_connect(Box::new(f)));
        if let Some(effect) = known {
            self.shared.defer(effect);
        }
    }

    /// Sets what runs when an established connection is lost (the
    /// original's socket_error_event). Not called after [`Client::close`].
    /// With a reconnect policy it runs only when the client gives up
    /// (its attempts ran out); each loss is a
    /// [`ConnectionEvent::Disconnected`] instead.
    pub fn on_disconnect(&self, f: impl FnMut(&Error) + 'static) {
        let replaced = self.shared.with(|core, _| core.on_disconnect(Box::new(f)));
        drop(replaced);
    }

    /// Sets what hears of a reconnecting client's connection: lost,
    /// back, a session that could not be published again (see
    /// [`ReconnectPolicy`]). Runs on the loop, never inside a call of
    /// the client; replaces the previous handler.
    pub fn on_connection_event(&self, f: impl FnMut(&ConnectionEvent) + 'static) {
        let f = Rc::new(RefCell::new(f));
        let replaced = self.shared.with(|core, _| core.on_connection_event(f));
        drop(replaced);
    }

    /// Sets (or with `None` removes) the reconnect policy; it applies
    /// from the next loss, and to a first connect still under way. Set
    /// right after [`Client::connect`], it also covers a connect that
    /// failed at once (that failure is handled on the next turn).
    pub fn set_reconnect(&self, policy: Option<ReconnectPolicy>) {
        self.shared.with(|core, _| core.set_reconnect(policy));
    }

    /// Changes the reconnect policy in place (see
    /// [`Client::set_reconnect`]); `invalid_state` when reconnecting is
    /// off, so that a change never turns it on by accident.
    pub fn update_reconnect(&self, f: impl FnOnce(&mut ReconnectPolicy)) -> Result<(), Error> {
        let mut policy = self.reconnect_policy().ok_or_else(|| {
            Error::new(
                ErrorCode::InvalidState,
                "reconnecting is off for this client: turn it on first",
            )
        })?;
        f(&mut policy);
        self.set_reconnect(Some(policy));
        Ok(())
    }

    /// The reconnect policy, if any.
    pub fn reconnect_policy(&self) -> Option<ReconnectPolicy> {
        self.shared.core().reconnect_policy().cloned()
    }

    /// Sets what runs when a subscribed session is rescinded or its
    /// publisher disconnects. The subscription has ended when it runs.
    pub fn on_session_gone(&self, f: impl FnMut(&str, &Error) + 'static) {
        let f = Rc::new(RefCell::new(f));
        let replaced = self.shared.with(|core, _| core.on_session_gone(f));
        drop(replaced);
    }

    /// Sets what receives messages of application-defined kinds (the
    /// original's unknown_message_event): kind, id and payload bytes.
    /// Without it they are ignored.
    pub fn on_unknown_message(&self, f: impl FnMut(&str, u64, &[u8]) + 'static) {
        let f = Rc::new(RefCell::new(f));
        let replaced = self.shared.with(|core, _| core.on_unknown(f));
        drop(replaced);
    }

    /// The loop this client lives on.
    pub fn event_loop(&self) -> &EventLoop {
        &self.shared.lp
    }

    /// The broker's address (the one in use or being tried, when
    /// reconnecting through a list).
    pub fn address(&self) -> Address {
        self.shared.core().address().clone()
    }

    /// The connection id, once the handshake completed.
    pub fn connection_id(&self) -> Option<u64> {
        self.shared.core().connection_id()
    }

    /// Whether the connection is open and handshaken.
    pub fn is_connected(&self) -> bool {
        self.shared.core().connection_id().is_some()
    }

    /// Whether this client is subscribed to `session`: from a successful
    /// subscribe until [`Client::unsubscribe`] is called, the session goes
    /// away, or the connection closes.
    pub fn is_subscribed(&self, session: &str) -> bool {
        self.shared.core().is_subscribed(session)
    }

    /// Whether the connection has closed (or failed to open).
    pub fn is_closed(&self) -> bool {
        self.shared.core().is_closed()
    }

    /// Sends a message of an application-defined kind. The broker answers
    /// it with a `protocol` error result (`Unknown message type 'KIND'`),
    /// which reaches [`Client::on_unknown_message`] as kind `result`, with
    /// this `id` and the error as text (`protocol: Unknown message type
    /// 'KIND'`). The id is the application's own: on the wire the message
    /// travels under an id of the client's, so that its answer is never
    /// taken for the answer of one of the client's operations.
    pub fn send_custom(&self, kind: &str, id: u64, payload: &[u8]) -> Result<(), Error> {
        self.shared
            .with(|core, io| core.send_custom(kind, id, payload, io))
    }

    /// Closes the connection. What this client already accepted for
    /// sending (answers and emits of deliveries, calls, operations) is
    /// still written out first, for at most the linger time
    /// ([`ClientConfig::linger`]); the connection outlives the client for
    /// that long if it must, owned by the loop. Every pending operation
    /// and call completes with `broker_gone` on a later turn; deliveries
    /// being served see `Cancel`. Idempotent. Dropping the last handle of
    /// a client closes it the same way.
    ///
    /// The flush happens on the loop: a loop that is stopped keeps the
    /// output for its next run; [`EventLoop::shutdown`] (`sb_loop_free`)
    /// drops it. Output the socket takes at once leaves in this call.
    pub fn close(&self) {
        self.shared.close_by_owner("closed by this client", None);
    }

    /// [`Client::close`], then `done` once the output left: `Ok(())` when
    /// everything queued was written and the stream ended; `timeout` when
    /// the linger time passed first (the rest is dropped); `broker_gone`
    /// or `io` when the connection failed first; `invalid_state` when the
    /// client was closed already. `done` runs exactly once, on a later
    /// turn, unless the loop is shut down first (then it is dropped
    /// without running).
    pub fn close_gracefully(&self, done: impl FnOnce(Result<(), Error>) + 'static) {
        self.shared
            .close_by_owner("closed by this client", Some(Box::new(done)));
    }

    /// Changes how long a later close may flush (see
    /// [`ClientConfig::linger`]).
    pub fn set_linger(&self, linger: Duration) {
        self.shared.set_linger(linger);
    }

    /// Changes the deadline of later requests that set none (see
    /// [`ClientConfig::default_timeout`]); `None` turns it off.
    pub fn set_default_timeout(&self, timeout: Option<Duration>) {
        self.shared.default_timeout.set(timeout);
    }

    /// The deadline given to requests that set none, if any (see
    /// [`ClientConfig::default_timeout`]).
    pub fn default_timeout(&self) -> Option<Duration> {
        self.shared.default_timeout.get()
    }

    /// Changes the liveness settings (see [`ClientConfig::ping_interval`]
    /// and [`ClientConfig::ping_max`]); the count of unanswered pings
    /// carries on, and the next ping comes one new interval from now.
    /// Zero turns pinging off.
    pub fn set_ping(&self, interval: Duration, max: u32) {
        self.shared.set_ping(interval, max);
    }
}

/// A deliver's `timeout_ms` for the time left: 0 for none, rounded up so
/// that less than a millisecond left is not taken for no deadline, and at
/// least 1 once the time is up (the caller's timer ends the call then).
pub(crate) fn timeout_ms(left: Option<Duration>) -> u32 {
    match left {
        None => 0,
        Some(d) => {
            let ms = d.as_nanos().div_ceil(1_000_000);
            u32::try_from(ms).unwrap_or(u32::MAX).max(1)
        }
    }
}

/// A wait in whole milliseconds, rounded up so that a wait below one
/// millisecond still waits.
fn wait_millis(wait: Duration) -> u64 {
    let ms = wait.as_nanos().div_ceil(1_000_000);
    u64::try_from(ms).unwrap_or(u64::MAX)
}
