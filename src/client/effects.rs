//! The client core's seam: what it sends through ([`Outbox`]) and what it
//! hands back to the shell to carry out ([`Effect`], [`Settle`]).
//!
//! An effect owns the callback it names, taken out of (or cloned from)
//! the core's tables, so that running it needs no access to the core.

use super::calls::CallFn;
use super::ops::Completion;
use super::serving::{Route, ServeFn};
use super::signals::{Signal, SignalFn};
use super::watches::{NameEvent, WatchFn};
use super::{CallEvent, CallId, ConnectionEvent, ConnectionInfo, Inbound};
use crate::error::Error;
use crate::wire::{Frame, Outgoing, TapEvent};
use std::cell::RefCell;
use std::rc::Rc;

/// Where the core's frames go: the connection to the broker.
pub(super) trait Outbox {
    /// Queues a frame; fails (nothing queued) when it is too large or the
    /// queue is full.
    fn send(&mut self, frame: &Frame) -> Result<(), Error>;
    /// Queues a call's deliver so that [`Outbox::retract`] can take it
    /// back under `key` until the output is next written.
    fn send_retractable(&mut self, key: u64, frame: &Frame) -> Result<(), Error>;
    /// Takes back the frame queued under `key` if none of it has left.
    fn retract(&mut self, key: u64) -> bool;
    /// [`Outbox::send`] for a frame from borrowed parts; by default its
    /// owned form is sent.
    fn send_out(&mut self, frame: &Outgoing<'_>) -> Result<(), Error> {
        match frame {
            Outgoing::Frame(f) => self.send(f),
            other => self.send(&other.to_frame()),
        }
    }
    /// [`Outbox::send_retractable`] for a frame from borrowed parts.
    fn send_retractable_out(&mut self, key: u64, frame: &Outgoing<'_>) -> Result<(), Error> {
        match frame {
            Outgoing::Frame(f) => self.send_retractable(key, f),
            other => self.send_retractable(key, &other.to_frame()),
        }
    }
}

pub(super) type ConnectFn = Box<dyn FnOnce(Result<ConnectionInfo, Error>)>;
pub(super) type DisconnectFn = Box<dyn FnMut(&Error)>;
pub(super) type SessionGoneFn = Rc<RefCell<dyn FnMut(&str, &Error)>>;
pub(super) type UnknownFn = Rc<RefCell<dyn FnMut(&str, u64, &[u8])>>;
pub(super) type TapFn = Rc<RefCell<dyn FnMut(&TapEvent)>>;
pub(super) type ConnectionEventFn = Rc<RefCell<dyn FnMut(&ConnectionEvent)>>;

/// A callback to run, with its arguments, or a close to carry out.
pub(super) enum Effect {
    /// The connect's outcome.
    Connected(ConnectFn, Result<ConnectionInfo, Error>),
    /// An established connection was lost.
    Disconnected(DisconnectFn, Error),
    /// An event of a call.
    Call(CallFn, CallId, CallEvent),
    /// An operation completed; a rescind hands back the handler of the
    /// session it withdrew, for the shell to let go of.
    Completed(Completion, Option<ServeFn>),
    /// An event of a delivery.
    Serve(ServeFn, Route, Inbound),
    /// A delivery ended here; the shell lets go of its handler.
    Release(ServeFn),
    /// A subscribed session went away.
    SessionGone(SessionGoneFn, String, Error),
    /// A message of an application-defined kind (or the result of one
    /// sent, as kind `result`): kind, id, payload.
    Unknown(UnknownFn, String, u64, Vec<u8>),
    /// A frame the broker saw, for this monitoring client.
    Tap(TapFn, Box<TapEvent>),
    /// The broker broke the protocol or went away: the connection is
    /// lost with this error (a reconnect policy tries again).
    Shut(Error),
    /// A signal, for the handlers of the matches it satisfies.
    Signal(Vec<SignalFn>, Rc<Signal>),
    /// Events of a name watch, then (the watch's current state was
    /// reported) its completion.
    Names(WatchFn, Vec<NameEvent>, Option<Completion>),
    /// The broker refused the handshake: close for good, never retried.
    Refused(Error),
    /// A reconnecting client's connection changed.
    Connection(ConnectionEventFn, ConnectionEvent),
    /// Publish a session again after this delay, unless it is
    /// withdrawn meanwhile or the window (the instant) closes.
    RetryRepublish(String, ServeFn, std::time::Instant, std::time::Duration),
    /// Several effects, in order.
    Many(Vec<Effect>),
}

impl Effect {
    /// One effect for `effects`: none, the one, or [`Effect::Many`].
    pub fn many(mut effects: Vec<Effect>) -> Option<Effect> {
        match effects.len() {
            0 => None,
            1 => effects.pop(),
            _ => Some(Effect::Many(effects)),
        }
    }
}

/// What a close leaves to do.
pub(super) struct Settle {
    /// Everything the client still owes its callbacks, in order: the
    /// connect or disconnect handler, operations and calls (oldest
    /// first, `broker_gone`), deliveries being served (`Cancel`). Run on
    /// a later turn, never inside the close.
    pub effects: Vec<Effect>,
    /// The handlers of the sessions published here, to drop once the
    /// shell no longer borrows the core.
    pub publications: Vec<ServeFn>,
    /// The handlers of the signal matches, likewise.
    pub listeners: Vec<SignalFn>,
    /// The handlers of the name watches, likewise.
    pub watchers: Vec<WatchFn>,
}

/// Who closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Closer {
    /// The connection failed or the broker broke it: the disconnect
    /// handler hears of it.
    Failure,
    /// The owner closed or dropped the client: calls whose deliver has
    /// not left are taken back, and no disconnect handler runs.
    Owner,
}
