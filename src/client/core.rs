//! The client's core: a state machine without I/O.
//!
//! It takes the broker's frames ([`Core::on_frame`]) and the owner's
//! orders (start an operation or a call, recall, cancel, answer a
//! delivery, close) and keeps every table: the operations waiting for a
//! result, the calls in progress, the sessions published here and the
//! deliveries being served, the subscriptions. What it decides comes out
//! two ways:
//!
//! * frames to send go into an [`Outbox`] handed to each method (the
//!   shell's connection, or a test's list), so that a send refused for a
//!   full queue is an immediate error to whoever asked;
//! * callbacks to run come back as an [`Effect`]: the callback itself,
//!   taken out of the tables, with its arguments. The shell runs it after
//!   its borrow of the core ended, so a callback may call the client
//!   again, close it or drop it.
//!
//! The core never touches a socket, the loop or a timer, and never runs a
//! callback: it is driven in unit tests frame by frame.
//!
//! The broker's frames are taken in `frames`; the close that empties
//! every table is in `closing`.

mod closing;
mod frames;

use super::calls::{CallFn, Calls};
use super::effects::{
    ConnectFn, ConnectionEventFn, DisconnectFn, Effect, Outbox, SessionGoneFn, TapFn, UnknownFn,
};
use super::ops::{Completion, Op, Ops};
use super::reconnect::Reconnect;
use super::serving::{ServeFn, Serving};
use super::signals::Listeners;
use super::watches::Watchers;
use super::{CallEvent, CallId, ConnectionInfo};
use crate::error::{Error, ErrorCode};
use crate::transport::Address;
use crate::value::Args;
use crate::wire::{Frame, Outgoing, Payload};
use std::collections::BTreeSet;

/// What a call tells the publisher besides its session, method and args.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CallMeta {
    /// The caller's id of the request (the call id when `None`).
    pub origin: Option<u64>,
    /// The deliver's `timeout_ms` (0: no deadline).
    pub timeout_ms: u32,
}

/// Where the connection stands.
#[derive(Debug)]
pub(super) enum Status {
    Connecting,
    Ready(ConnectionInfo),
    /// Lost, waiting for the next attempt of a reconnect policy.
    Waiting,
    Closed(Error),
}

/// The client's state machine (see the module docs).
pub(super) struct Core {
    pub(super) address: Address,
    pub(super) status: Status,
    next_id: u64,
    pub(super) ops: Ops,
    pub(super) calls: Calls,
    pub(super) serving: Serving,
    /// Ordered, not hashed: a remote request checks it every time
    /// (`RemoteStage` sends only while subscribed), and a program holds a
    /// few subscriptions, where comparing names costs less than SipHash.
    pub(super) subscriptions: BTreeSet<String>,
    /// Signal matches and their handlers.
    pub(super) listeners: Listeners,
    /// Name watches and their handlers.
    pub(super) watchers: Watchers,
    /// Answers of one-way deliveries, dropped here.
    pub(super) dropped_answers: u64,
    on_connect: Option<ConnectFn>,
    on_disconnect: Option<DisconnectFn>,
    pub(super) on_session_gone: Option<SessionGoneFn>,
    /// Where the broker's taps go once this client monitors.
    pub(super) on_tap: Option<TapFn>,
    pub(super) on_unknown: Option<UnknownFn>,
    pub(super) on_connection_event: Option<ConnectionEventFn>,
    pub(super) liveness: crate::liveness::Liveness,
    /// The reconnect policy and its state, if any.
    pub(super) reconnect: Option<Reconnect>,
}

impl Core {
    pub fn new(address: Address) -> Core {
        Core {
            address,
            status: Status::Connecting,
            next_id: 1,
            ops: Ops::default(),
            calls: Calls::default(),
            serving: Serving::default(),
            subscriptions: BTreeSet::new(),
            listeners: Listeners::default(),
            watchers: Watchers::default(),
            dropped_answers: 0,
            on_connect: None,
            on_disconnect: None,
            on_session_gone: None,
            on_tap: None,
            on_unknown: None,
            on_connection_event: None,
            liveness: crate::liveness::Liveness::default(),
            reconnect: None,
        }
    }

    pub fn address(&self) -> &Address {
        &self.address
    }

    pub fn status(&self) -> &Status {
        &self.status
    }

    /// The broker's number for this connection, once handshaken.
    pub fn connection_id(&self) -> Option<u64> {
        match &self.status {
            Status::Ready(info) => Some(info.connection_id),
            _ => None,
        }
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.status, Status::Closed(_))
    }

    pub fn is_subscribed(&self, session: &str) -> bool {
        self.subscriptions.contains(session)
    }

    pub fn is_published(&self, session: &str) -> bool {
        self.serving.is_published(session)
    }

    pub fn is_serving(&self, route: u64) -> bool {
        self.serving.is_open(route)
    }

    /// Keeps the connect handler, or (the outcome is known) hands it back
    /// with the outcome, for the shell to run on a later turn.
    pub fn on_connect(&mut self, f: ConnectFn) -> Option<Effect> {
        let outcome = match &self.status {
            Status::Connecting => {
                self.on_connect = Some(f);
                return None;
            }
            Status::Ready(info) => Ok(info.clone()),
            Status::Closed(e) => Err(e.clone()),
            Status::Waiting => {
                self.on_connect = Some(f);
                return None;
            }
        };
        Some(Effect::Connected(f, outcome))
    }

    // The setters hand back the handler they replace, for the shell to
    // drop once it no longer borrows the core.

    pub fn on_disconnect(&mut self, f: DisconnectFn) -> Option<DisconnectFn> {
        self.on_disconnect.replace(f)
    }

    pub fn on_session_gone(&mut self, f: SessionGoneFn) -> Option<SessionGoneFn> {
        self.on_session_gone.replace(f)
    }

    /// Sets where taps go; the one it replaces.
    pub fn on_tap(&mut self, f: TapFn) -> Option<TapFn> {
        self.on_tap.replace(f)
    }

    pub fn on_unknown(&mut self, f: UnknownFn) -> Option<UnknownFn> {
        self.on_unknown.replace(f)
    }

    pub(super) fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Why nothing can be sent any more, once closed.
    pub(super) fn gone(&self) -> Option<Error> {
        match &self.status {
            Status::Closed(e) => Some(Error::broker_gone(&e.message)),
            _ => None,
        }
    }

    pub(super) fn send(&self, out: &mut impl Outbox, frame: &Frame) -> Result<(), Error> {
        match self.gone() {
            Some(e) => Err(e),
            None => out.send(frame),
        }
    }

    /// Sends an operation under a new id and keeps it until its result.
    /// When the client is closed or the send fails, hands back its
    /// failure, for the shell to run on a later turn.
    pub fn start_op(
        &mut self,
        frame: impl FnOnce(u64) -> Frame,
        op: Op,
        out: &mut impl Outbox,
    ) -> Option<Completion> {
        if let Some(e) = self.gone().or_else(|| self.fails_fast()) {
            return op.fail(e);
        }
        let id = self.next_id();
        let sent = match self.holder() {
            Some(r) => r.hold(id, frame(id)),
            _ => out.send(&frame(id)),
        };
        match sent {
            Ok(()) => {
                self.ops.insert(id, op);
                None
            }
            Err(e) => op.fail(e),
        }
    }

    /// Ends a subscription here at once (before the broker answers);
    /// false if there was none.
    pub fn unsubscribe_now(&mut self, session: &str) -> bool {
        self.subscriptions.remove(session)
    }

    /// Sends a call under a new id, the call's only id. On a closed
    /// client the call still gets an id, and its failure comes back for
    /// the shell to run on a later turn; a send that fails is an error
    /// here, and no call is kept.
    pub fn start_call(
        &mut self,
        meta: CallMeta,
        session: &str,
        method: &str,
        args: &Args,
        handler: CallFn,
        out: &mut impl Outbox,
    ) -> Result<(CallId, Option<Effect>), Error> {
        let id = self.next_id();
        if let Some(e) = self.gone().or_else(|| self.fails_fast()) {
            return Ok((
                CallId(id),
                Some(Effect::Call(handler, CallId(id), CallEvent::Error(e))),
            ));
        }
        // Until the output is next written the deliver may be taken back:
        // a call cancelled before the loop turns never reaches the
        // broker, as a local request cancelled at once never runs.
        let deliver = Outgoing::Deliver {
            id,
            origin: meta.origin.unwrap_or(id),
            timeout_ms: meta.timeout_ms,
            session,
            method,
            args,
        };
        match self.holder() {
            Some(r) => r.hold(id, deliver.to_frame())?,
            _ => out.send_retractable_out(id, &deliver)?,
        }
        self.calls.insert(id, handler);
        Ok((CallId(id), None))
    }

    /// Sends a recall of a call in progress.
    pub fn recall(
        &mut self,
        call: CallId,
        method: &str,
        args: &Args,
        out: &mut impl Outbox,
    ) -> Result<(), Error> {
        if !self.calls.contains(call.0) {
            return Err(Error::new(
                ErrorCode::InvalidState,
                format!("call {} has ended", call.0),
            ));
        }
        let frame = Frame::Recall {
            id: call.0,
            method: method.to_string(),
            payload: Payload::encode(args),
        };
        self.send_or_hold(call.0, out, frame)
    }

    /// Whether frames are held now rather than sent (see
    /// [`Core::holding`]), cheaply.
    #[inline]
    fn holding_now(&self) -> bool {
        self.reconnect.is_some() && self.holding()
    }

    /// The reconnect state while frames are held (see [`Core::holding`]).
    fn holder(&mut self) -> Option<&mut Reconnect> {
        let ready = matches!(self.status, Status::Ready(_));
        self.reconnect.as_mut().filter(|_| !ready)
    }

    /// Sends `frame`, or holds it under `key` while not connected.
    fn send_or_hold(&mut self, key: u64, out: &mut impl Outbox, frame: Frame) -> Result<(), Error> {
        match self.holder() {
            Some(r) => r.hold(key, frame),
            _ => self.send(out, &frame),
        }
    }

    /// Ends a call at its caller's request: its deliver is taken back if
    /// it has not left, else the publisher is told. Hands back the
    /// handler (to drop outside any borrow), or `None` if the call had
    /// ended already.
    pub fn cancel(&mut self, call: CallId, out: &mut impl Outbox) -> Option<CallFn> {
        let handler = self.calls.remove(call.0)?;
        let unheld = self.reconnect.as_mut().is_some_and(|r| r.unhold(call.0));
        if !unheld && !self.holding_now() && !self.is_closed() && !out.retract(call.0) {
            let _ = out.send(&Frame::Cancel { id: call.0 });
        }
        Some(handler)
    }

    /// Sends a message of an application-defined kind under a wire id of
    /// the client's, remembering the application's id for its result.
    pub fn send_custom(
        &mut self,
        kind: &str,
        app_id: u64,
        payload: &[u8],
        out: &mut impl Outbox,
    ) -> Result<(), Error> {
        let id = self.next_id();
        let frame = Frame::Custom {
            kind: kind.to_string(),
            id,
            payload: Payload(payload.to_vec()),
        };
        self.send_or_hold(id, out, frame)?;
        self.ops.insert(id, Op::Custom { app_id });
        Ok(())
    }

    /// Sends an answer of a delivery being served; a final one (`last`)
    /// ends it. Hands back the handler of a delivery that ended, for the
    /// shell to let go of, also when the send failed.
    pub fn answer<'f>(
        &mut self,
        route: u64,
        frame: impl Into<Outgoing<'f>>,
        last: bool,
        out: &mut impl Outbox,
    ) -> (Result<(), Error>, Option<ServeFn>) {
        let silent = self.serving.is_open(route) && !self.serving.expects_answer(route);
        let (open, ended) = if last {
            let ended = self.serving.end(route).map(|(_, serve)| serve);
            (ended.is_some(), ended)
        } else {
            (self.serving.is_open(route), None)
        };
        if !open {
            let e = Error::new(
                ErrorCode::InvalidState,
                format!("delivery {route} has ended (answered, cancelled or disconnected)"),
            );
            return (Err(e), None);
        }
        if silent {
            // Nobody waits for it: dropped here, never sent.
            self.dropped_answers += 1;
            return (Ok(()), ended);
        }
        let sent = match self.gone() {
            Some(e) => Err(e),
            None => out.send_out(&frame.into()),
        };
        (sent, ended)
    }

    /// Rescinds `session` if `serve` is what it runs now; marks a publish
    /// of it still waiting for the broker to be rescinded once accepted.
    /// While reconnecting, the publication is simply forgotten (the
    /// broker has none to rescind): its handler is handed back.
    pub fn withdraw(
        &mut self,
        session: &str,
        serve: &ServeFn,
        out: &mut impl Outbox,
    ) -> Option<ServeFn> {
        if self.is_closed() {
            return None;
        }
        self.ops.withdraw_publishes(serve);
        if self.holding_now() && self.serving.is_published_with(session, serve) {
            return self.serving.unpublish(session);
        }
        if self.serving.is_published_with(session, serve) {
            let rescind = Op::Rescind {
                session: session.to_string(),
                done: Box::new(|_| {}),
            };
            // A failure's completion does nothing: it is dropped.
            let make = |id| Frame::Rescind {
                id,
                session: session.to_string(),
            };
            let _ = self.start_op(make, rescind, out);
        }
        None
    }

    /// Input arrived from the broker (once per read, not per frame).
    #[inline]
    pub fn heard(&mut self) {
        self.liveness.heard();
    }

    /// A ping interval passed: a silent broker is pinged; one that left
    /// `max` pings unanswered is dead, and the client closes as on a
    /// disconnect (the effect to run is handed back). Before the
    /// handshake the connect timeout rules instead.
    pub fn tick(&mut self, max: u32, out: &mut impl Outbox) -> Option<Effect> {
        if !matches!(self.status, Status::Ready(_)) {
            return None;
        }
        match self.liveness.tick(max) {
            crate::liveness::Tick::Alive => None,
            crate::liveness::Tick::Ping => {
                let _ = out.send(&Frame::Ping);
                None
            }
            crate::liveness::Tick::Dead => Some(Effect::Shut(Error::new(
                ErrorCode::BrokerGone,
                format!("the broker left {max} pings unanswered"),
            ))),
        }
    }
}
