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

mod state;

use crate::error::{Error, ErrorCode};
use crate::event_loop::{EventLoop, Flush, Readiness, Source};
use crate::transport::{linger, Address, CloseFn, Connection, Stream};
use crate::value::Args;
use crate::wire::{Frame, Payload, SessionInfo, DEFAULT_MAX_FRAME, MAGIC, PROTOCOL_VERSION};
use state::{Op, State, Status};
use std::cell::RefCell;
use std::fmt;
use std::rc::{Rc, Weak};
use std::time::Duration;

/// How to connect.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The broker's shared secret, if it requires one.
    pub token: Option<String>,
    /// Largest frame body sent or accepted (default 16 MiB).
    pub max_frame: usize,
    /// Most bytes queued for the broker before operations fail with
    /// `limit_exceeded` (default 64 MiB).
    pub max_queued_bytes: usize,
    /// How long closing the client (or dropping its last handle) may take
    /// to write out what it already accepted for sending: answers,
    /// emits, calls (default [`DEFAULT_LINGER`]). Zero writes what the
    /// socket takes at once and drops the rest. See [`Client::close`].
    pub linger: Duration,
}

/// The default [`ClientConfig::linger`]: 5 seconds.
pub const DEFAULT_LINGER: Duration = Duration::from_secs(5);

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            token: None,
            max_frame: DEFAULT_MAX_FRAME,
            max_queued_bytes: 64 << 20,
            linger: DEFAULT_LINGER,
        }
    }
}

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
        kind: String,
        /// Its args.
        args: Args,
    },
    /// The final response.
    Return {
        /// Its type (default `return`).
        kind: String,
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
        method: String,
        /// Its args.
        args: Args,
    },
    /// The caller's answer to an emit: run `method` within the same call.
    Recall {
        /// The method named by the caller.
        method: String,
        /// Its args.
        args: Args,
    },
    /// The caller cancelled (or disconnected, or the broker went away):
    /// the delivery has ended and can no longer be answered.
    Cancel,
}

type CallFn = Rc<RefCell<dyn FnMut(CallId, CallEvent)>>;
type ServeCell = RefCell<dyn FnMut(&Delivery, Inbound)>;
type ServeFn = Rc<ServeCell>;

/// Names one publication of a client without keeping the client or the
/// publication's handler alive, so that whoever published (a stage) can
/// withdraw it when it goes away.
pub(crate) struct Publication {
    client: Weak<Shared>,
    session: String,
    serve: Weak<ServeCell>,
}

impl Publication {
    /// Whether the client and the publication's handler still exist.
    pub(crate) fn is_live(&self) -> bool {
        self.client.strong_count() > 0 && self.serve.strong_count() > 0
    }

    /// Rescinds the session on a later turn, if the client is still
    /// there and the session is still this publication (one published
    /// again under the same name is left alone). A publish still on its
    /// way is rescinded as soon as the broker accepts it.
    pub(crate) fn withdraw(self) {
        let Some(shared) = self.client.upgrade() else {
            return;
        };
        // Later: the client may be in the middle of changing its tables.
        shared.lp.clone().defer(move |_| {
            if let (Some(shared), Some(serve)) = (self.client.upgrade(), self.serve.upgrade()) {
                shared.withdraw(&self.session, &serve);
            }
        });
    }
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
        let st = self.shared.state.borrow();
        f.debug_struct("Client")
            .field("address", &st.address)
            .field("status", &st.status)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Shared {
    lp: EventLoop,
    state: RefCell<State>,
    me: Weak<Shared>,
}

/// The publisher's side of one call: answer it with emits and one final
/// response. Clone it to answer later (a slow method); once the call has
/// ended (answered, cancelled, or the connection closed) every answer
/// fails with `invalid_state`.
#[derive(Clone)]
pub struct Delivery {
    client: Weak<Shared>,
    route: u64,
    origin: u64,
    session: Rc<str>,
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("id", &self.route)
            .field("session", &self.session)
            .finish()
    }
}

struct ClientSource(Weak<Shared>);

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
        let shared = Rc::new_cyclic(|me: &Weak<Shared>| Shared {
            lp: lp.clone(),
            state: RefCell::new(State::new(address.clone(), config.linger)),
            me: me.clone(),
        });
        let hello = Frame::Hello {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
            token: config.token.clone(),
        };
        let attempt = Stream::connect(address).and_then(|stream| {
            let source = Rc::new(ClientSource(Rc::downgrade(&shared)));
            // A TCP connect completes later; a Unix one at once.
            let connecting = matches!(address, Address::Tcp(_));
            let (max_frame, max_queued) = (config.max_frame, config.max_queued_bytes);
            Connection::open(stream, lp, source, connecting, max_frame, max_queued)
        });
        match attempt {
            Ok(mut conn) => {
                // The hello goes first; operations queue behind it.
                let _ = conn.send(&hello);
                shared.state.borrow_mut().conn = Some(conn);
            }
            Err(e) => {
                // Closed at once, so that operations started before the
                // failure is reported fail with its reason; the callbacks
                // still run on a later turn.
                let error = Error::io(format_args!("cannot connect to {address}"), &e);
                shared.shut(error);
            }
        }
        shared.want_flush();
        Client { shared }
    }

    /// Sets what runs when the handshake completes or the connect fails
    /// (at most once). Set after the connect completed, it runs on the
    /// next turn with the outcome.
    pub fn on_connect(&self, f: impl FnOnce(Result<ConnectionInfo, Error>) + 'static) {
        let outcome = {
            let mut st = self.shared.state.borrow_mut();
            match &st.status {
                Status::Connecting => {
                    st.on_connect = Some(Box::new(f));
                    return;
                }
                Status::Ready(info) => Ok(info.clone()),
                Status::Closed(e) if st.connect_reported => {
                    // The failure was already reported without a handler.
                    Err(e.clone())
                }
                Status::Closed(e) => Err(e.clone()),
            }
        };
        self.shared.lp.defer(move |_| f(outcome));
    }

    /// Sets what runs when an established connection is lost (the
    /// original's socket_error_event). Not called after [`Client::close`].
    pub fn on_disconnect(&self, f: impl FnMut(&Error) + 'static) {
        self.shared.state.borrow_mut().on_disconnect = Some(Box::new(f));
    }

    /// Sets what runs when a subscribed session is rescinded or its
    /// publisher disconnects. The subscription has ended when it runs.
    pub fn on_session_gone(&self, f: impl FnMut(&str, &Error) + 'static) {
        self.shared.state.borrow_mut().on_session_gone = Some(Box::new(f));
    }

    /// Sets what receives messages of application-defined kinds (the
    /// original's unknown_message_event): kind, id and payload bytes.
    /// Without it they are ignored.
    pub fn on_unknown_message(&self, f: impl FnMut(&str, u64, &[u8]) + 'static) {
        self.shared.state.borrow_mut().on_unknown = Some(Box::new(f));
    }

    /// The loop this client lives on.
    pub fn event_loop(&self) -> &EventLoop {
        &self.shared.lp
    }

    /// The broker's address.
    pub fn address(&self) -> Address {
        self.shared.state.borrow().address.clone()
    }

    /// The connection id, once the handshake completed.
    pub fn connection_id(&self) -> Option<u64> {
        match &self.shared.state.borrow().status {
            Status::Ready(info) => Some(info.connection_id),
            _ => None,
        }
    }

    /// Whether the connection is open and handshaken.
    pub fn is_connected(&self) -> bool {
        matches!(self.shared.state.borrow().status, Status::Ready(_))
    }

    /// Whether this client is subscribed to `session`: from a successful
    /// subscribe until [`Client::unsubscribe`] is called, the session goes
    /// away, or the connection closes.
    pub fn is_subscribed(&self, session: &str) -> bool {
        self.shared.state.borrow().subscriptions.contains(session)
    }

    /// Whether the connection has closed (or failed to open).
    pub fn is_closed(&self) -> bool {
        matches!(self.shared.state.borrow().status, Status::Closed(_))
    }

    /// Publishes a session named `session` with `methods`. Calls to it
    /// run `serve`; `done` gets the broker's answer (`already_exists`,
    /// `invalid_argument`, `limit_exceeded`, …).
    pub fn publish(
        &self,
        session: &str,
        methods: &[&str],
        serve: impl FnMut(&Delivery, Inbound) + 'static,
        done: impl FnOnce(Result<(), Error>) + 'static,
    ) {
        self.publish_serving(session, methods, Rc::new(RefCell::new(serve)), done);
    }

    /// [`Client::publish`], naming the publication for its publisher.
    pub(crate) fn publish_serving(
        &self,
        session: &str,
        methods: &[&str],
        serve: ServeFn,
        done: impl FnOnce(Result<(), Error>) + 'static,
    ) -> Publication {
        let frame_methods = methods.iter().map(|m| m.to_string()).collect();
        let publication = Publication {
            client: Rc::downgrade(&self.shared),
            session: session.to_string(),
            serve: Rc::downgrade(&serve),
        };
        self.shared.start_op(
            |id| Frame::Publish {
                id,
                session: session.to_string(),
                methods: frame_methods,
            },
            Op::Publish {
                session: session.to_string(),
                serve,
                withdrawn: false,
                done: Box::new(done),
            },
        );
        publication
    }

    /// Withdraws a session this client published. Fails at once (no
    /// callback) if it is not published here: `Session 'NAME' is not
    /// currently published`.
    pub fn rescind(
        &self,
        session: &str,
        done: impl FnOnce(Result<(), Error>) + 'static,
    ) -> Result<(), Error> {
        refuse_empty(session)?;
        if !self
            .shared
            .state
            .borrow()
            .publications
            .contains_key(session)
        {
            return Err(Error::new(
                ErrorCode::NotPublisher,
                format!("Session '{session}' is not currently published"),
            ));
        }
        self.shared.start_op(
            |id| Frame::Rescind {
                id,
                session: session.to_string(),
            },
            Op::Rescind {
                session: session.to_string(),
                done: Box::new(done),
            },
        );
        Ok(())
    }

    /// Lists the published sessions, sorted by name, with their methods.
    pub fn listing(&self, done: impl FnOnce(Result<Vec<SessionInfo>, Error>) + 'static) {
        self.shared.start_op(
            |id| Frame::Listing { id },
            Op::Listing {
                done: Box::new(done),
            },
        );
    }

    /// Subscribes to `session`; `done` gets its methods, or
    /// `no_such_session` (`Session 'X' doesn't exist`).
    pub fn subscribe(
        &self,
        session: &str,
        done: impl FnOnce(Result<Vec<String>, Error>) + 'static,
    ) {
        self.shared.start_op(
            |id| Frame::Subscribe {
                id,
                session: session.to_string(),
            },
            Op::Subscribe {
                session: session.to_string(),
                done: Box::new(done),
            },
        );
    }

    /// Ends a subscription. Fails at once (no callback) if there is none:
    /// `Unknown session 'X'`. The subscription ends here at once (remote
    /// stages of it refuse requests from now on); `done` reports the
    /// broker's answer.
    pub fn unsubscribe(
        &self,
        session: &str,
        done: impl FnOnce(Result<(), Error>) + 'static,
    ) -> Result<(), Error> {
        refuse_empty(session)?;
        if !self.shared.state.borrow_mut().subscriptions.remove(session) {
            return Err(Error::new(
                ErrorCode::NotSubscribed,
                format!("Unknown session '{session}'"),
            ));
        }
        self.shared.start_op(
            |id| Frame::Unsubscribe {
                id,
                session: session.to_string(),
            },
            Op::Unsubscribe {
                session: session.to_string(),
                done: Box::new(done),
            },
        );
        Ok(())
    }

    /// Delivers a call of `method` on `session`. `on_event` receives its
    /// emits and then exactly one `Return` or `Error`, unless the call is
    /// cancelled first. Empty names are refused at once.
    pub fn call(
        &self,
        session: &str,
        method: &str,
        args: &Args,
        on_event: impl FnMut(CallId, CallEvent) + 'static,
    ) -> Result<CallId, Error> {
        self.call_as(None, session, method, args, on_event)
    }

    /// [`Client::call`] naming the request `origin`, which the publisher
    /// reads back as [`Delivery::origin`] (the call id when `None`).
    pub fn call_as(
        &self,
        origin: Option<u64>,
        session: &str,
        method: &str,
        args: &Args,
        on_event: impl FnMut(CallId, CallEvent) + 'static,
    ) -> Result<CallId, Error> {
        if session.is_empty() || method.is_empty() {
            return Err(Error::new(
                ErrorCode::InvalidArgument,
                "a call needs a session and a method",
            ));
        }
        self.shared.start_call(
            origin,
            session,
            method,
            Payload::encode(args),
            Rc::new(RefCell::new(on_event)),
        )
    }

    /// Answers an emit of a call still in progress by running `method` of
    /// the callee within the same call. Fails with `invalid_state` if the
    /// call has ended.
    pub fn recall(&self, call: CallId, method: &str, args: &Args) -> Result<(), Error> {
        if method.is_empty() {
            return Err(Error::new(
                ErrorCode::InvalidArgument,
                "a recall needs a method",
            ));
        }
        let mut st = self.shared.state.borrow_mut();
        if !st.calls.contains_key(&call.0) {
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
        st.send(&frame)?;
        drop(st);
        self.shared.want_flush();
        Ok(())
    }

    /// Cancels a call: the publisher is told, and nothing more arrives
    /// for it, not even responses already on their way. Returns whether
    /// the call was still in progress; cancelling twice is harmless.
    ///
    /// A call cancelled in the loop turn it was made in (before the loop
    /// flushed this client's output) never leaves this process: the
    /// publisher never sees it and the broker keeps no route for it.
    /// Later, the publisher may have started it and then sees `Cancel`.
    pub fn cancel(&self, call: CallId) -> bool {
        let mut st = self.shared.state.borrow_mut();
        if st.calls.remove(&call.0).is_none() {
            return false;
        }
        if matches!(st.status, Status::Closed(_)) {
            return true;
        }
        if st.conn.as_mut().is_some_and(|c| c.retract(call.0)) {
            return true;
        }
        let _ = st.send(&Frame::Cancel { id: call.0 });
        drop(st);
        self.shared.want_flush();
        true
    }

    /// Sends a message of an application-defined kind. The broker answers
    /// it with a `protocol` error result (`Unknown message type 'KIND'`),
    /// which reaches [`Client::on_unknown_message`] as kind `result`, with
    /// this `id` and the error as text (`protocol: Unknown message type
    /// 'KIND'`). The id is the application's own: on the wire the message
    /// travels under an id of the client's, so that its answer is never
    /// taken for the answer of one of the client's operations.
    pub fn send_custom(&self, kind: &str, id: u64, payload: &[u8]) -> Result<(), Error> {
        let mut st = self.shared.state.borrow_mut();
        let wire_id = st.next_id();
        st.send(&Frame::Custom {
            kind: kind.to_string(),
            id: wire_id,
            payload: Payload(payload.to_vec()),
        })?;
        st.customs.insert(wire_id, id);
        drop(st);
        self.shared.want_flush();
        Ok(())
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
        self.shared.state.borrow_mut().linger = linger;
    }
}

impl Delivery {
    /// The broker's id of this call, unique on that broker.
    pub fn id(&self) -> u64 {
        self.route
    }

    /// The caller's own id of the request (see [`Client::call_as`]).
    pub fn origin(&self) -> u64 {
        self.origin
    }

    /// The session the call was delivered to.
    pub fn session(&self) -> &str {
        &self.session
    }

    /// Whether the call can still be answered.
    pub fn is_open(&self) -> bool {
        self.client
            .upgrade()
            .is_some_and(|c| c.state.borrow().serving.contains_key(&self.route))
    }

    /// Sends an interim response of type `kind`.
    pub fn emit(&self, kind: &str, args: &Args) -> Result<(), Error> {
        self.answer(
            Frame::Emit {
                id: self.route,
                kind: kind.to_string(),
                payload: Payload::encode(args),
            },
            false,
        )
    }

    /// Sends the final response of type `kind`; the delivery ends.
    pub fn respond(&self, kind: &str, args: &Args) -> Result<(), Error> {
        self.answer(
            Frame::Result {
                id: self.route,
                outcome: Ok(crate::wire::Reply::Return {
                    kind: kind.to_string(),
                    payload: Payload::encode(args),
                }),
            },
            true,
        )
    }

    /// Ends the delivery with an error for the caller.
    pub fn fail(&self, error: Error) -> Result<(), Error> {
        self.answer(
            Frame::Result {
                id: self.route,
                outcome: Err(error),
            },
            true,
        )
    }

    fn answer(&self, frame: Frame, last: bool) -> Result<(), Error> {
        let shared = self
            .client
            .upgrade()
            .ok_or_else(|| Error::broker_gone("the client was dropped"))?;
        let ended = {
            let mut st = shared.state.borrow_mut();
            let (open, ended) = if last {
                let ended = st.serving.remove(&self.route);
                (ended.is_some(), ended)
            } else {
                (st.serving.contains_key(&self.route), None)
            };
            if !open {
                return Err(Error::new(
                    ErrorCode::InvalidState,
                    format!(
                        "delivery {} has ended (answered, cancelled or disconnected)",
                        self.route
                    ),
                ));
            }
            st.send(&frame)?;
            ended
        };
        shared.want_flush();
        if let Some((_, _, serve)) = ended {
            shared.release(serve);
        }
        Ok(())
    }
}

impl Shared {
    /// Rescinds `session` if `serve` is what it runs now; marks a publish
    /// of it still waiting for the broker to be rescinded once accepted.
    fn withdraw(&self, session: &str, serve: &ServeFn) {
        let published = {
            let mut st = self.state.borrow_mut();
            if matches!(st.status, Status::Closed(_)) {
                return;
            }
            let published = st
                .publications
                .get(session)
                .is_some_and(|(_, f)| Rc::ptr_eq(f, serve));
            for op in st.ops.values_mut() {
                if let Op::Publish {
                    serve: f,
                    withdrawn,
                    ..
                } = op
                {
                    if Rc::ptr_eq(f, serve) {
                        *withdrawn = true;
                    }
                }
            }
            published
        };
        if published {
            self.start_op(
                |id| Frame::Rescind {
                    id,
                    session: session.to_string(),
                },
                Op::Rescind {
                    session: session.to_string(),
                    done: Box::new(|_| {}),
                },
            );
        }
    }

    fn want_flush(&self) {
        let mut st = self.state.borrow_mut();
        if !st.flush_pending && st.conn.is_some() {
            st.flush_pending = true;
            drop(st);
            let me: Weak<dyn Flush> = self.me.clone();
            self.lp.want_flush(me);
        }
    }

    /// Sends an operation, or completes it with `broker_gone` on the next
    /// turn when the connection is closed or the send fails.
    fn start_op(&self, frame: impl FnOnce(u64) -> Frame, op: Op) {
        let sent = {
            let mut st = self.state.borrow_mut();
            match &st.status {
                Status::Closed(e) => Err(Error::broker_gone(&e.message)),
                _ => {
                    let id = st.next_id();
                    st.send(&frame(id)).map(|()| id)
                }
            }
        };
        match sent {
            Ok(id) => {
                self.state.borrow_mut().ops.insert(id, op);
                self.want_flush();
            }
            Err(e) => self.lp.defer(move |_| op.fail(e)),
        }
    }

    fn start_call(
        &self,
        origin: Option<u64>,
        session: &str,
        method: &str,
        payload: Payload,
        handler: CallFn,
    ) -> Result<CallId, Error> {
        let mut st = self.state.borrow_mut();
        let id = st.next_id();
        if let Status::Closed(e) = &st.status {
            let e = Error::broker_gone(&e.message);
            drop(st);
            self.lp
                .defer(move |_| (handler.borrow_mut())(CallId(id), CallEvent::Error(e)));
            return Ok(CallId(id));
        }
        // Until the end of this turn's flush the deliver may be taken
        // back: a call cancelled before the loop turns never reaches the
        // broker, as a local request cancelled at once never runs.
        st.send_call(
            id,
            &Frame::Deliver {
                id,
                origin: origin.unwrap_or(id),
                session: session.to_string(),
                method: method.to_string(),
                payload,
            },
        )?;
        st.calls.insert(id, handler);
        drop(st);
        self.want_flush();
        Ok(CallId(id))
    }

    fn ready(&self, readiness: Readiness) {
        let mut frames = Vec::new();
        let outcome = {
            let mut st = self.state.borrow_mut();
            let Some(conn) = st.conn.as_mut() else {
                return;
            };
            if readiness.writable {
                if let Err(e) = conn.finish_connect() {
                    let address = st.address.clone();
                    drop(st);
                    self.shut(Error::io(format_args!("cannot connect to {address}"), &e));
                    return;
                }
            }
            let outcome = if readiness.readable {
                Some(conn.read_frames(&mut frames, readiness.hangup))
            } else {
                None
            };
            if readiness.writable {
                if let Err(e) = conn.flush(&self.lp) {
                    drop(st);
                    self.shut(e);
                    return;
                }
            }
            outcome
        };
        for frame in frames {
            if matches!(self.state.borrow().status, Status::Closed(_)) {
                return;
            }
            self.handle(frame);
        }
        match outcome {
            Some(crate::transport::ReadOutcome::More) => {
                let token = self.state.borrow().conn.as_ref().map(Connection::token);
                if let Some(token) = token {
                    self.lp.again(token);
                }
            }
            Some(crate::transport::ReadOutcome::Closed(e)) => {
                let connecting = self
                    .state
                    .borrow()
                    .conn
                    .as_ref()
                    .is_some_and(|c| c.connecting());
                let e = if connecting {
                    let address = self.state.borrow().address.clone();
                    Error::new(
                        e.code,
                        format!("cannot connect to {address}: {}", e.message),
                    )
                } else {
                    e
                };
                self.shut(e);
            }
            _ => {}
        }
    }

    fn handle(&self, frame: Frame) {
        match frame {
            Frame::Welcome { connection_id, .. } => {
                let (f, info) = {
                    let mut st = self.state.borrow_mut();
                    let info = ConnectionInfo {
                        connection_id,
                        address: st.address.clone(),
                    };
                    st.status = Status::Ready(info.clone());
                    st.connect_reported = true;
                    (st.on_connect.take(), info)
                };
                if let Some(f) = f {
                    f(Ok(info));
                }
            }
            Frame::Refused { error } => self.shut(error),
            Frame::Result { id, outcome } => {
                let op = self.state.borrow_mut().ops.remove(&id);
                if let Some(op) = op {
                    self.complete(op, outcome);
                    return;
                }
                let call = self.state.borrow_mut().calls.remove(&id);
                if let Some(call) = call {
                    let event = match outcome {
                        Ok(crate::wire::Reply::Return { kind, payload }) => {
                            match payload.decode() {
                                Ok(args) => CallEvent::Return { kind, args },
                                Err(e) => CallEvent::Error(e),
                            }
                        }
                        Ok(other) => CallEvent::Error(Error::new(
                            ErrorCode::Protocol,
                            format!("a call was answered with {}", other.describe()),
                        )),
                        Err(e) => CallEvent::Error(e),
                    };
                    (call.borrow_mut())(CallId(id), event);
                    return;
                }
                let custom = self.state.borrow_mut().customs.remove(&id);
                if let Some(app_id) = custom {
                    let text = outcome.err().map(|e| e.to_string()).unwrap_or_default();
                    self.unknown_message("result", app_id, text.as_bytes());
                }
                // Otherwise the call was cancelled: its result is dropped.
            }
            Frame::Emit { id, kind, payload } => {
                let call = self.state.borrow().calls.get(&id).cloned();
                let Some(call) = call else { return };
                match payload.decode() {
                    Ok(args) => (call.borrow_mut())(CallId(id), CallEvent::Emit { kind, args }),
                    Err(e) => {
                        self.state.borrow_mut().calls.remove(&id);
                        let _ = self.state.borrow_mut().send(&Frame::Cancel { id });
                        self.want_flush();
                        (call.borrow_mut())(CallId(id), CallEvent::Error(e));
                    }
                }
            }
            Frame::Deliver {
                id,
                origin,
                session,
                method,
                payload,
            } => {
                let serve = self.state.borrow().publications.get(&session).cloned();
                let Some((name, serve)) = serve else {
                    let e = Error::new(ErrorCode::NoSuchSession, "Unknown recipient");
                    let _ = self.state.borrow_mut().send(&Frame::Result {
                        id,
                        outcome: Err(e),
                    });
                    self.want_flush();
                    return;
                };
                let delivery = Delivery {
                    client: self.me.clone(),
                    route: id,
                    origin,
                    session: name.clone(),
                };
                match payload.decode() {
                    Ok(args) => {
                        let entry = (name, origin, serve.clone());
                        self.state.borrow_mut().serving.insert(id, entry);
                        (serve.borrow_mut())(&delivery, Inbound::Call { method, args });
                    }
                    Err(e) => {
                        let _ = self.state.borrow_mut().send(&Frame::Result {
                            id,
                            outcome: Err(e),
                        });
                        self.want_flush();
                    }
                }
            }
            Frame::Recall {
                id,
                method,
                payload,
            } => {
                let Some((delivery, serve)) = self.serving(id) else {
                    return;
                };
                match payload.decode() {
                    Ok(args) => (serve.borrow_mut())(&delivery, Inbound::Recall { method, args }),
                    Err(e) => {
                        let _ = delivery.fail(e);
                    }
                }
            }
            Frame::Cancel { id } => {
                let Some((delivery, serve)) = self.serving(id) else {
                    return;
                };
                self.state.borrow_mut().serving.remove(&id);
                (serve.borrow_mut())(&delivery, Inbound::Cancel);
            }
            Frame::SessionGone { session, reason } => {
                let f = {
                    let mut st = self.state.borrow_mut();
                    st.subscriptions.remove(&session);
                    st.on_session_gone.take()
                };
                if let Some(mut f) = f {
                    f(&session, &reason);
                    let mut st = self.state.borrow_mut();
                    if st.on_session_gone.is_none() {
                        st.on_session_gone = Some(f);
                    }
                }
            }
            Frame::Custom { kind, id, payload } => self.unknown_message(&kind, id, &payload.0),
            other => {
                let e = Error::new(
                    ErrorCode::Protocol,
                    format!(
                        "the broker sent '{}', which a client never expects",
                        other.kind_name()
                    ),
                );
                self.shut(e);
            }
        }
    }

    /// Hands a message of an application-defined kind to its handler.
    fn unknown_message(&self, kind: &str, id: u64, payload: &[u8]) {
        let f = self.state.borrow_mut().on_unknown.take();
        if let Some(mut f) = f {
            f(kind, id, payload);
            let mut st = self.state.borrow_mut();
            if st.on_unknown.is_none() {
                st.on_unknown = Some(f);
            }
        }
    }

    /// The delivery and handler of a call being served.
    fn serving(&self, route: u64) -> Option<(Delivery, ServeFn)> {
        let st = self.state.borrow();
        let (session, origin, serve) = st.serving.get(&route)?.clone();
        Some((
            Delivery {
                client: self.me.clone(),
                route,
                origin,
                session,
            },
            serve,
        ))
    }

    /// Lets go of a finished delivery's handler. When the delivery was
    /// the last owner (its session was rescinded), the handler is dropped
    /// on a later turn: whoever answered is still inside its own call,
    /// which must finish before what the handler owns goes away.
    fn release(&self, serve: ServeFn) {
        if Rc::strong_count(&serve) == 1 {
            self.lp.defer(move |_| drop(serve));
        }
    }

    fn complete(&self, op: Op, outcome: Result<crate::wire::Reply, Error>) {
        use crate::wire::Reply;
        let unexpected = |what: &str, got: &Reply| {
            Error::new(
                ErrorCode::Protocol,
                format!("the broker answered {what} with {}", got.describe()),
            )
        };
        match op {
            Op::Publish {
                session,
                serve,
                withdrawn,
                done,
            } => match outcome {
                Ok(Reply::Done) => {
                    self.state
                        .borrow_mut()
                        .publications
                        .insert(session.clone(), (Rc::from(session.as_str()), serve.clone()));
                    if withdrawn {
                        self.withdraw(&session, &serve);
                    }
                    done(Ok(()))
                }
                Ok(other) => done(Err(unexpected("publish", &other))),
                Err(e) => done(Err(e)),
            },
            Op::Rescind { session, done } => match outcome {
                Ok(Reply::Done) => {
                    // Deliveries in progress keep their own handle on
                    // the handler; this one may be the last.
                    let serve = self.state.borrow_mut().publications.remove(&session);
                    if let Some((_, serve)) = serve {
                        self.release(serve);
                    }
                    done(Ok(()))
                }
                Ok(other) => done(Err(unexpected("rescind", &other))),
                Err(e) => done(Err(e)),
            },
            Op::Listing { done } => match outcome {
                Ok(Reply::Sessions(list)) => done(Ok(list)),
                Ok(other) => done(Err(unexpected("listing", &other))),
                Err(e) => done(Err(e)),
            },
            Op::Subscribe { session, done } => match outcome {
                Ok(Reply::Methods(methods)) => {
                    self.state.borrow_mut().subscriptions.insert(session);
                    done(Ok(methods))
                }
                Ok(other) => done(Err(unexpected("subscribe", &other))),
                Err(e) => done(Err(e)),
            },
            Op::Unsubscribe { session, done } => match outcome {
                Ok(Reply::Done) => {
                    self.state.borrow_mut().subscriptions.remove(&session);
                    done(Ok(()))
                }
                Ok(other) => done(Err(unexpected("unsubscribe", &other))),
                Err(e) => done(Err(e)),
            },
        }
    }

    /// Closes the connection because of `error` and settles everything:
    /// the connect or disconnect handler, pending operations and calls
    /// (`broker_gone`), deliveries being served (`Cancel`).
    fn shut(&self, error: Error) {
        self.shut_with(error, true);
    }

    fn shut_with(&self, error: Error, notify: bool) {
        let settled = {
            let mut st = self.state.borrow_mut();
            if matches!(st.status, Status::Closed(_)) {
                return;
            }
            let was_ready = matches!(st.status, Status::Ready(_));
            st.status = Status::Closed(error.clone());
            if let Some(conn) = st.conn.take() {
                conn.close(&self.lp);
            }
            st.take_all(was_ready, notify)
        };
        settled.run(&self.lp, &error, &self.me);
    }

    /// Closes at the owner's request ([`Client::close`], the last handle
    /// dropped): settles everything as [`Shared::shut`] does, without the
    /// disconnect handler, but hands an established connection to a
    /// lingering close, so that what was accepted for sending still
    /// leaves. Before the handshake nothing accepted can be an answer, and
    /// operations fail anyway: the connection closes at once.
    fn close_by_owner(&self, reason: &str, done: Option<CloseFn>) {
        // Not `Error::broker_gone`: settling wraps the reason in it.
        let error = Error::new(ErrorCode::BrokerGone, reason);
        let (settled, conn, limit) = {
            let mut st = self.state.borrow_mut();
            if matches!(st.status, Status::Closed(_)) {
                drop(st);
                if let Some(done) = done {
                    let e = Error::new(ErrorCode::InvalidState, "the client is already closed");
                    self.lp.defer(move |_| done(Err(e)));
                }
                return;
            }
            let was_ready = matches!(st.status, Status::Ready(_));
            st.status = Status::Closed(error.clone());
            let mut conn = st.conn.take().map(|conn| (conn, was_ready));
            if let Some((conn, _)) = conn.as_mut() {
                // Calls settled here with `broker_gone` whose delivers
                // have not left yet never will: no publisher starts them.
                for &id in st.calls.keys() {
                    conn.retract(id);
                }
            }
            (st.take_all(was_ready, false), conn, st.linger)
        };
        match conn {
            Some((conn, true)) => linger(conn, &self.lp, limit, done),
            other => {
                if let Some((conn, _)) = other {
                    conn.close(&self.lp);
                }
                if let Some(done) = done {
                    self.lp.defer(move |_| done(Ok(())));
                }
            }
        }
        settled.run(&self.lp, &error, &self.me);
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // As close(): every operation completes exactly once, also when
        // the application let go of the client without closing it, and
        // what it accepted for sending still leaves.
        self.close_by_owner("the client was dropped", None);
    }
}

impl Flush for Shared {
    fn flush(&self, _lp: &EventLoop) {
        let result = {
            let mut st = self.state.borrow_mut();
            st.flush_pending = false;
            match st.conn.as_mut() {
                Some(conn) => conn.flush(&self.lp),
                None => Ok(()),
            }
        };
        if let Err(e) = result {
            self.shut(e);
        }
    }
}

impl Source for ClientSource {
    fn ready(&self, _lp: &EventLoop, readiness: Readiness) {
        if let Some(shared) = self.0.upgrade() {
            shared.ready(readiness);
        }
    }
}
