//! Name watches: the names matching a pattern, their current state at
//! once, then every appearance, change of owner and end (D-Bus's
//! NameOwnerChanged).
//!
//! The broker answers a watch with the matching sessions published now,
//! handed to the watch's handler as [`NameEvent::Present`] events before
//! its `done` runs; every later change arrives in the order the broker
//! saw it, until [`Client::unwatch`] or the client's close.
//!
//! A watch lives through a reconnect (see [`super::ReconnectPolicy`]):
//! once connected again the client watches again, and the handler gets
//! the state afresh: a [`NameEvent::Gone`] (`publisher_gone`) for each
//! name it last knew published that is not published any more, then a
//! [`NameEvent::Present`] per name published now, as when the watch
//! started. Changes during the outage itself are not reported one by one.

use super::core::Core;
use super::effects::{Effect, Outbox};
use super::ops::{Completion, Done, Op};
use super::Client;
use crate::error::{Error, ErrorCode};
use crate::pattern::Pattern;
use crate::wire::{Frame, NameChange, Reply, SessionInfo};
use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::rc::Rc;

/// What a watch reports about one name.
#[derive(Debug, Clone, PartialEq)]
pub enum NameEvent {
    /// Published when the watch started, or when its client reconnected
    /// (the current state), with its methods.
    Present {
        /// The name.
        name: String,
        /// Its methods.
        methods: Vec<String>,
    },
    /// Published since, with its methods.
    Appeared {
        /// The name.
        name: String,
        /// Its methods.
        methods: Vec<String>,
    },
    /// Another publisher took it over (a standby of a `queue` name), with
    /// the methods it offers.
    OwnerChanged {
        /// The name.
        name: String,
        /// Its methods.
        methods: Vec<String>,
    },
    /// No longer published: `no_such_session` when rescinded,
    /// `publisher_gone` when its publisher disconnected (or it was not
    /// published any more when the watching client reconnected).
    Gone {
        /// The name.
        name: String,
        /// Why.
        reason: Error,
    },
}

impl NameEvent {
    /// The name it is about.
    pub fn name(&self) -> &str {
        match self {
            NameEvent::Present { name, .. }
            | NameEvent::Appeared { name, .. }
            | NameEvent::OwnerChanged { name, .. }
            | NameEvent::Gone { name, .. } => name,
        }
    }
}

/// Names one watch of a client (see [`Client::watch`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WatchId(pub u64);

/// A watch's handler.
pub(super) type WatchFn = Rc<RefCell<dyn FnMut(&NameEvent)>>;

/// One watch of a client.
struct Watcher {
    /// Its [`WatchId`]: the wire id of its first `Watch` frame.
    id: u64,
    /// The wire id the broker knows it by on this connection (a
    /// reconnect watches again under a new one).
    wire: u64,
    /// The pattern as given, for the broker.
    pattern: String,
    f: WatchFn,
    /// The broker confirmed it once: it is restored after a reconnect.
    active: bool,
    /// The names published as last reported to the handler, so that a
    /// reconnect can report those that went meanwhile.
    names: BTreeSet<String>,
}

/// The watches of a client.
#[derive(Default)]
pub(super) struct Watchers {
    list: Vec<Watcher>,
}

impl Watchers {
    /// Lets go of every handler (the client closed).
    pub fn take_all(&mut self) -> Vec<WatchFn> {
        self.list.drain(..).map(|w| w.f).collect()
    }

    /// The confirmed watches, to restore after a reconnect: id and
    /// pattern.
    pub(super) fn confirmed(&self) -> Vec<(u64, String)> {
        self.list
            .iter()
            .filter(|w| w.active)
            .map(|w| (w.id, w.pattern.clone()))
            .collect()
    }

    /// The watch `id` is known to the broker as `wire` from now on.
    pub(super) fn rewire(&mut self, id: u64, wire: u64) {
        if let Some(w) = self.list.iter_mut().find(|w| w.id == id) {
            w.wire = wire;
        }
    }

    /// Forgets the watches never confirmed, but for those whose frame
    /// is still `held` (the connection was lost before the broker
    /// answered; their `done` got the loss).
    pub(super) fn forget_unconfirmed(&mut self, held: &[u64]) {
        self.list.retain(|w| w.active || held.contains(&w.wire));
    }
}

impl Core {
    /// A change of a watched name.
    pub(super) fn on_name_changed(
        &mut self,
        watch: u64,
        name: String,
        change: NameChange,
    ) -> Option<Effect> {
        let w = self
            .watchers
            .list
            .iter_mut()
            .find(|w| w.wire == watch && w.active)?;
        let event = match change {
            NameChange::Appeared { methods } => NameEvent::Appeared { name, methods },
            NameChange::OwnerChanged { methods } => NameEvent::OwnerChanged { name, methods },
            NameChange::Gone { reason } => NameEvent::Gone { name, reason },
        };
        match &event {
            NameEvent::Gone { name, .. } => w.names.remove(name),
            other => w.names.insert(other.name().to_string()),
        };
        Some(Effect::Names(w.f.clone(), vec![event], None))
    }

    /// The broker's answer to the watch `id`: the current state, then
    /// its completion; or its refusal (the watch is forgotten).
    pub(super) fn watch_result(
        &mut self,
        id: u64,
        done: Done<()>,
        outcome: Result<Reply, Error>,
    ) -> Option<Effect> {
        let at = self.watchers.list.iter().position(|w| w.wire == id);
        match (expect_listing(outcome), at) {
            (Ok(list), Some(at)) => {
                let (f, events) = self.watchers.list[at].report(list, false);
                Some(Effect::Names(
                    f,
                    events,
                    Some(Completion::Unit(done, Ok(()))),
                ))
            }
            // Unwatched before the broker answered: it only completes.
            (Ok(_), None) => Some(Effect::Completed(Completion::Unit(done, Ok(())), None)),
            (Err(e), at) => {
                if let Some(at) = at {
                    self.watchers.list.remove(at);
                }
                Some(Effect::Completed(Completion::Unit(done, Err(e)), None))
            }
        }
    }

    /// The broker's answer to the watch `id` renewed after a reconnect:
    /// the names gone meanwhile, then the current state; or its refusal
    /// (the watch is forgotten, a connection event says so).
    pub(super) fn rewatch_result(
        &mut self,
        id: u64,
        outcome: Result<Reply, Error>,
    ) -> Option<Effect> {
        let at = self.watchers.list.iter().position(|w| w.id == id)?;
        match expect_listing(outcome) {
            Ok(list) => {
                let (f, events) = self.watchers.list[at].report(list, true);
                Some(Effect::Names(f, events, None))
            }
            Err(error) => {
                let w = self.watchers.list.remove(at);
                self.restore_failed(format!("watch '{}'", w.pattern), error)
            }
        }
    }
}

impl Core {
    /// Sends a watch of `pattern` (checked) and keeps its handler: its
    /// id, and its failure if it could not be sent (nothing is kept
    /// then).
    pub(super) fn watch(
        &mut self,
        pattern: &str,
        f: WatchFn,
        done: Done<()>,
        out: &mut impl Outbox,
    ) -> (u64, Option<Completion>) {
        let id = Cell::new(0);
        let make = |op| {
            id.set(op);
            Frame::Watch {
                id: op,
                pattern: pattern.to_string(),
            }
        };
        let failed = self.start_op(make, Op::Watch { done }, out);
        if failed.is_none() {
            self.watchers.list.push(Watcher {
                id: id.get(),
                wire: id.get(),
                pattern: pattern.to_string(),
                f,
                active: false,
                names: BTreeSet::new(),
            });
        }
        (id.get(), failed)
    }
}

impl Watcher {
    /// Takes the broker's listing of the names published now: the
    /// events to report (after a reconnect, first a `Gone` for each name
    /// reported before and missing now), and the handler.
    fn report(&mut self, list: Vec<SessionInfo>, again: bool) -> (WatchFn, Vec<NameEvent>) {
        self.active = true;
        let now: BTreeSet<String> = list.iter().map(|s| s.name.clone()).collect();
        let mut events = Vec::new();
        if again {
            for name in self.names.difference(&now) {
                events.push(NameEvent::Gone {
                    name: name.clone(),
                    reason: Error::new(
                        ErrorCode::PublisherGone,
                        format!("'{name}' was no longer published when the client reconnected"),
                    ),
                });
            }
        }
        events.extend(list.into_iter().map(|s| NameEvent::Present {
            name: s.name,
            methods: s.methods,
        }));
        self.names = now;
        (self.f.clone(), events)
    }
}

/// The outcome of a watch: the names published now.
fn expect_listing(outcome: Result<Reply, Error>) -> Result<Vec<SessionInfo>, Error> {
    match outcome? {
        Reply::Sessions(list) => Ok(list),
        other => Err(Error::new(
            ErrorCode::Protocol,
            format!("the broker answered watch with {}", other.describe()),
        )),
    }
}

impl Client {
    /// Watches the names matching `pattern` (an exact name, `prefix*`,
    /// or `*` for every name). `on_event` gets the current state first
    /// (a [`NameEvent::Present`] per matching published session, sorted
    /// by name), then `done` runs with `Ok`, then every change in order:
    /// [`NameEvent::Appeared`], [`NameEvent::OwnerChanged`],
    /// [`NameEvent::Gone`] (with its reason), until [`Client::unwatch`]
    /// or the client's close. A reconnecting client watches again once
    /// reconnected and reports the state afresh (see the module docs);
    /// a broker refusing it then ends the watch with a
    /// [`ConnectionEvent::RestoreFailed`](super::ConnectionEvent::RestoreFailed). A bad pattern is refused at once
    /// (`invalid_argument`, no callback); the broker refuses watches
    /// over its `max_watches_per_connection` (`done` gets
    /// `limit_exceeded`); a closed client completes `done` with
    /// `broker_gone`.
    pub fn watch(
        &self,
        pattern: &str,
        on_event: impl FnMut(&NameEvent) + 'static,
        done: impl FnOnce(Result<(), Error>) + 'static,
    ) -> Result<WatchId, Error> {
        Pattern::parse("name pattern", pattern)?;
        let f: WatchFn = Rc::new(RefCell::new(on_event));
        let done: Done<()> = Box::new(done);
        let (id, failed) = self
            .shared
            .with(|core, io| core.watch(pattern, f, done, io));
        if let Some(failed) = failed {
            self.shared.defer(Effect::Completed(failed, None));
        }
        Ok(WatchId(id))
    }

    /// Ends a watch: its handler runs no more from this call on and is
    /// dropped; `done` reports the broker's answer. Fails at once
    /// (`invalid_argument`, no callback) if the watch is not (or no
    /// longer) one of this client's.
    pub fn unwatch(
        &self,
        id: WatchId,
        done: impl FnOnce(Result<(), Error>) + 'static,
    ) -> Result<(), Error> {
        let removed = self.shared.with(|core, _| {
            let holding = core.holding();
            let list = &mut core.watchers.list;
            let at = list.iter().position(|w| w.id == id.0)?;
            Some((list.remove(at), holding))
        });
        let Some((entry, holding)) = removed else {
            return Err(Error::new(
                ErrorCode::InvalidArgument,
                format!("watch {} is not one of this client's", id.0),
            ));
        };
        let wire = entry.wire;
        let done: Done<()> = Box::new(done);
        let local = holding && entry.active;
        // The handler goes outside the client's borrow.
        drop(entry);
        if local {
            // Reconnecting: no broker holds it until the restore, which
            // no longer replays it.
            let done = Completion::Unit(done, Ok(()));
            self.shared.defer(Effect::Completed(done, None));
            return Ok(());
        }
        self.shared.start_op(
            |op| Frame::Unwatch {
                id: op,
                watch: wire,
            },
            Op::RemoveMatch { done },
        );
        Ok(())
    }
}
