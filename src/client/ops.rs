//! The client's operations on the broker (publish, rescind, listing,
//! subscribe, unsubscribe, and application-defined messages): each sent
//! under an id of the client's and kept in one table until its result
//! arrives or the connection closes.

use super::serving::ServeFn;
use crate::error::{Error, ErrorCode};
use crate::id_hash::IdMap;
use crate::report::StatsReport;
use crate::wire::{Reply, SessionInfo};

/// What gets an operation's outcome.
pub(super) type Done<T> = Box<dyn FnOnce(Result<T, Error>)>;

/// A broker operation waiting for its result.
pub(super) enum Op {
    Publish {
        session: String,
        methods: Vec<String>,
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
    Stats {
        done: Done<StatsReport>,
    },
    Monitor {
        done: Done<()>,
    },
    Subscribe {
        session: String,
        done: Done<Vec<String>>,
    },
    Unsubscribe {
        session: String,
        done: Done<()>,
    },
    /// A message of an application-defined kind, sent under a wire id of
    /// the client's; its result goes to the unknown-message handler under
    /// the application's own id. A close settles it with nothing.
    Custom {
        app_id: u64,
    },
    /// A session published again after a reconnect; retried while the
    /// broker still holds the name, until `until`. Reported through the
    /// connection events, never to a callback of its own.
    Republish {
        session: String,
        serve: ServeFn,
        until: std::time::Instant,
        withdrawn: bool,
    },
    /// A subscription renewed after a reconnect; a failure ends it.
    Resubscribe {
        session: String,
    },
    /// A signal match added again after a reconnect; a failure ends it.
    Rematch {
        listener: u64,
    },
    /// A name watch renewed after a reconnect (by its [`WatchId`]), answered
    /// with the current state; a failure ends it.
    ///
    /// [`WatchId`]: super::WatchId
    Rewatch {
        watch: u64,
    },
    /// A signal match, whose listener becomes active when confirmed.
    AddMatch {
        listener: u64,
        done: Done<()>,
    },
    /// Also an unwatch: a plain acknowledgement.
    RemoveMatch {
        done: Done<()>,
    },
    /// A name watch, answered with the current state.
    Watch {
        done: Done<()>,
    },
}

impl Op {
    /// The completion of the operation with an error (none for an
    /// application-defined message, which has no callback of its own).
    pub fn fail(self, e: Error) -> Option<Completion> {
        Some(match self {
            Op::Publish { done, .. }
            | Op::Rescind { done, .. }
            | Op::Unsubscribe { done, .. }
            | Op::Monitor { done }
            | Op::AddMatch { done, .. }
            | Op::RemoveMatch { done }
            | Op::Watch { done } => Completion::Unit(done, Err(e)),
            Op::Listing { done } => Completion::Sessions(done, Err(e)),
            Op::Stats { done } => Completion::Stats(done, Err(e)),
            Op::Subscribe { done, .. } => Completion::Methods(done, Err(e)),
            Op::Custom { .. }
            | Op::Republish { .. }
            | Op::Resubscribe { .. }
            | Op::Rematch { .. }
            | Op::Rewatch { .. } => return None,
        })
    }
}

/// An operation's callback with its outcome, to run outside the client.
pub(super) enum Completion {
    Unit(Done<()>, Result<(), Error>),
    Sessions(Done<Vec<SessionInfo>>, Result<Vec<SessionInfo>, Error>),
    Methods(Done<Vec<String>>, Result<Vec<String>, Error>),
    /// Boxed: a report is large beside the other outcomes.
    Stats(Done<StatsReport>, Result<Box<StatsReport>, Error>),
}

impl Completion {
    pub fn run(self) {
        match self {
            Completion::Unit(done, outcome) => done(outcome),
            Completion::Sessions(done, outcome) => done(outcome),
            Completion::Methods(done, outcome) => done(outcome),
            Completion::Stats(done, outcome) => done(outcome.map(|report| *report)),
        }
    }
}

/// The operations waiting for their result, by wire id.
#[derive(Default)]
pub(super) struct Ops(IdMap<u64, Op>);

impl Ops {
    pub fn insert(&mut self, id: u64, op: Op) {
        self.0.insert(id, op);
    }

    pub fn remove(&mut self, id: u64) -> Option<Op> {
        self.0.remove(&id)
    }

    /// Marks every publish of `serve` still waiting for the broker to be
    /// rescinded once accepted.
    pub fn withdraw_publishes(&mut self, serve: &ServeFn) {
        for op in self.0.values_mut() {
            if let Op::Publish {
                serve: f,
                withdrawn,
                ..
            }
            | Op::Republish {
                serve: f,
                withdrawn,
                ..
            } = op
            {
                if std::rc::Rc::ptr_eq(f, serve) {
                    *withdrawn = true;
                }
            }
        }
    }

    /// Ends every operation but those of `kept` ids (held, never sent),
    /// oldest first.
    pub fn drain_except(&mut self, kept: &[u64]) -> Vec<Op> {
        let mut ids: Vec<u64> = self
            .0
            .keys()
            .copied()
            .filter(|id| !kept.contains(id))
            .collect();
        ids.sort_unstable();
        ids.into_iter()
            .filter_map(|id| self.0.remove(&id))
            .collect()
    }

    /// Ends every operation, oldest first.
    pub fn drain_in_order(&mut self) -> Vec<Op> {
        let mut ops: Vec<_> = self.0.drain().collect();
        ops.sort_by_key(|(id, _)| *id);
        ops.into_iter().map(|(_, op)| op).collect()
    }
}

fn unexpected(what: &str, got: &Reply) -> Error {
    Error::new(
        ErrorCode::Protocol,
        format!("the broker answered {what} with {}", got.describe()),
    )
}

/// The outcome of an operation answered with a plain acknowledgement.
pub(super) fn expect_done(what: &str, outcome: Result<Reply, Error>) -> Result<(), Error> {
    match outcome? {
        Reply::Done => Ok(()),
        other => Err(unexpected(what, &other)),
    }
}

/// The outcome of a listing.
pub(super) fn expect_sessions(outcome: Result<Reply, Error>) -> Result<Vec<SessionInfo>, Error> {
    match outcome? {
        Reply::Sessions(list) => Ok(list),
        other => Err(unexpected("listing", &other)),
    }
}

/// The outcome of a stats request.
pub(super) fn expect_stats(outcome: Result<Reply, Error>) -> Result<Box<StatsReport>, Error> {
    match outcome? {
        Reply::Stats(report) => Ok(report),
        other => Err(unexpected("stats", &other)),
    }
}

/// The outcome of a subscribe.
pub(super) fn expect_methods(outcome: Result<Reply, Error>) -> Result<Vec<String>, Error> {
    match outcome? {
        Reply::Methods(methods) => Ok(methods),
        other => Err(unexpected("subscribe", &other)),
    }
}
