//! The client's bookkeeping: pending operations, calls, publications.

use super::{CallEvent, CallFn, CallId, ConnectionInfo, Delivery, Inbound, ServeFn, Shared};
use crate::error::Error;
use crate::event_loop::EventLoop;
use crate::id_hash::IdMap;
use crate::transport::{Address, Connection};
use crate::wire::{Frame, SessionInfo};
use std::collections::{HashMap, HashSet};
use std::rc::{Rc, Weak};
use std::time::Duration;

#[derive(Debug)]
pub(super) enum Status {
    Connecting,
    Ready(ConnectionInfo),
    Closed(Error),
}

type Done<T> = Box<dyn FnOnce(Result<T, Error>)>;
type ConnectFn = Box<dyn FnOnce(Result<ConnectionInfo, Error>)>;
type DisconnectFn = Box<dyn FnMut(&Error)>;
type SessionGoneFn = Box<dyn FnMut(&str, &Error)>;
type UnknownFn = Box<dyn FnMut(&str, u64, &[u8])>;

/// A broker operation waiting for its result.
pub(super) enum Op {
    Publish {
        session: String,
        serve: ServeFn,
        /// Its publisher went away before the broker answered: rescind
        /// it once accepted.
        withdrawn: bool,
        done: Done<()>,
    },
    Rescind {
        session: String,
        done: Done<()>,
    },
    Listing {
        done: Done<Vec<SessionInfo>>,
    },
    Subscribe {
        session: String,
        done: Done<Vec<String>>,
    },
    Unsubscribe {
        session: String,
        done: Done<()>,
    },
}

impl Op {
    /// Completes the operation with an error.
    pub fn fail(self, e: Error) {
        match self {
            Op::Publish { done, .. } | Op::Rescind { done, .. } | Op::Unsubscribe { done, .. } => {
                done(Err(e))
            }
            Op::Listing { done } => done(Err(e)),
            Op::Subscribe { done, .. } => done(Err(e)),
        }
    }
}

pub(super) struct State {
    pub address: Address,
    pub status: Status,
    /// How long a close may take to flush what was accepted for sending.
    pub linger: Duration,
    pub conn: Option<Connection>,
    pub flush_pending: bool,
    /// Whether the connect outcome was already handed to a handler.
    pub connect_reported: bool,
    next_id: u64,
    pub ops: IdMap<u64, Op>,
    pub calls: IdMap<u64, CallFn>,
    /// Application-defined messages sent: wire id → the application's id.
    pub customs: IdMap<u64, u64>,
    /// Published here: name → (shared name, handler).
    pub publications: HashMap<String, (Rc<str>, ServeFn)>,
    /// Deliveries being served: route id → (session, origin, handler).
    /// Each keeps the handler it arrived at, so that it can still be
    /// answered or cancelled after a rescind, and a session published
    /// again under the same name never sees the old one's routes.
    pub serving: IdMap<u64, (Rc<str>, u64, ServeFn)>,
    pub subscriptions: HashSet<String>,
    pub on_connect: Option<ConnectFn>,
    pub on_disconnect: Option<DisconnectFn>,
    pub on_session_gone: Option<SessionGoneFn>,
    pub on_unknown: Option<UnknownFn>,
}

impl State {
    pub fn new(address: Address, linger: Duration) -> State {
        State {
            address,
            linger,
            status: Status::Connecting,
            conn: None,
            flush_pending: false,
            connect_reported: false,
            next_id: 1,
            ops: IdMap::default(),
            calls: IdMap::default(),
            customs: IdMap::default(),
            publications: HashMap::new(),
            serving: IdMap::default(),
            subscriptions: HashSet::new(),
            on_connect: None,
            on_disconnect: None,
            on_session_gone: None,
            on_unknown: None,
        }
    }

    pub fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Queues a frame for the broker.
    pub fn send(&mut self, frame: &Frame) -> Result<(), Error> {
        match self.conn.as_mut() {
            Some(conn) => conn.send(frame),
            None => Err(match &self.status {
                Status::Closed(e) => Error::broker_gone(&e.message),
                _ => Error::broker_gone("not connected"),
            }),
        }
    }

    /// Queues a call's deliver so that [`Connection::retract`] can take
    /// it back under the call's id until the next flush.
    pub fn send_call(&mut self, id: u64, deliver: &Frame) -> Result<(), Error> {
        match self.conn.as_mut() {
            Some(conn) => conn.send_retractable(id, deliver),
            None => self.send(deliver),
        }
    }

    /// Empties every table, for [`Settle::run`] to complete.
    pub fn take_all(&mut self, was_ready: bool, notify: bool) -> Settle {
        let serving = self
            .serving
            .drain()
            .map(|(route, (session, origin, serve))| (route, session, origin, serve))
            .collect::<Vec<_>>();
        self.publications.clear();
        self.subscriptions.clear();
        Settle {
            on_connect: self.on_connect.take(),
            on_disconnect: if was_ready && notify {
                self.on_disconnect.take()
            } else {
                None
            },
            ops: self.ops.drain().map(|(_, op)| op).collect(),
            calls: self.calls.drain().collect(),
            serving,
        }
    }
}

/// Everything a closing client still owes its callbacks.
pub(super) struct Settle {
    on_connect: Option<ConnectFn>,
    on_disconnect: Option<DisconnectFn>,
    ops: Vec<Op>,
    calls: Vec<(u64, CallFn)>,
    serving: Vec<(u64, Rc<str>, u64, ServeFn)>,
}

impl Settle {
    /// Runs the callbacks on the next turn, never inside the caller.
    pub fn run(self, lp: &EventLoop, error: &Error, client: &Weak<Shared>) {
        let error = error.clone();
        let client = client.clone();
        lp.defer(move |_| {
            let gone = Error::broker_gone(&error.message);
            if let Some(f) = self.on_connect {
                f(Err(error.clone()));
            }
            if let Some(mut f) = self.on_disconnect {
                f(&error);
            }
            for op in self.ops {
                op.fail(gone.clone());
            }
            let mut calls = self.calls;
            calls.sort_by_key(|(id, _)| *id);
            for (id, call) in calls {
                (call.borrow_mut())(CallId(id), CallEvent::Error(gone.clone()));
            }
            for (route, session, origin, serve) in self.serving {
                let delivery = Delivery {
                    client: client.clone(),
                    route,
                    origin,
                    session,
                };
                (serve.borrow_mut())(&delivery, Inbound::Cancel);
            }
        });
    }
}
