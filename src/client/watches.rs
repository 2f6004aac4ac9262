//! Name watches: the names matching a pattern, their current state at
//! once, then every appearance, change of owner and end (D-Bus's
//! NameOwnerChanged).
//!
//! The broker answers a watch with the matching sessions published now,
//! handed to the watch's handler as [`NameEvent::Present`] events before
//! its `done` runs; every later change arrives in the order the broker
//! saw it, until [`Client::unwatch`] or the client's close.

use super::core::Core;
use super::effects::Effect;
use super::ops::{Completion, Done, Op};
use super::Client;
use crate::error::{Error, ErrorCode};
use crate::pattern::Pattern;
use crate::wire::{Frame, NameChange, Reply};
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// What a watch reports about one name.
#[derive(Debug, Clone, PartialEq)]
pub enum NameEvent {
    /// Published when the watch started (the current state), with its
    /// methods.
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
    /// `publisher_gone` when its publisher disconnected.
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

/// The watches of a client, by their wire id.
#[derive(Default)]
pub(super) struct Watchers {
    list: Vec<(u64, WatchFn, bool)>,
}

impl Watchers {
    /// Lets go of every handler (the client closed).
    pub fn take_all(&mut self) -> Vec<WatchFn> {
        self.list.drain(..).map(|(_, f, _)| f).collect()
    }

    fn get(&self, id: u64) -> Option<&(u64, WatchFn, bool)> {
        self.list.iter().find(|(i, _, _)| *i == id)
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
        let (_, f, active) = self.watchers.get(watch)?;
        if !active {
            return None;
        }
        let event = match change {
            NameChange::Appeared { methods } => NameEvent::Appeared { name, methods },
            NameChange::OwnerChanged { methods } => NameEvent::OwnerChanged { name, methods },
            NameChange::Gone { reason } => NameEvent::Gone { name, reason },
        };
        Some(Effect::Names(f.clone(), vec![event], None))
    }

    /// The broker's answer to the watch `id`: the current state, then
    /// its completion; or its refusal (the watch is forgotten).
    pub(super) fn watch_result(
        &mut self,
        id: u64,
        done: Done<()>,
        outcome: Result<Reply, Error>,
    ) -> Option<Effect> {
        let outcome = match outcome {
            Ok(Reply::Sessions(list)) => Ok(list),
            Ok(other) => Err(Error::new(
                ErrorCode::Protocol,
                format!("the broker answered watch with {}", other.describe()),
            )),
            Err(e) => Err(e),
        };
        let at = self.watchers.list.iter().position(|(i, _, _)| *i == id);
        match (outcome, at) {
            (Ok(list), Some(at)) => {
                let entry = &mut self.watchers.list[at];
                entry.2 = true;
                let events = list
                    .into_iter()
                    .map(|s| NameEvent::Present {
                        name: s.name,
                        methods: s.methods,
                    })
                    .collect();
                Some(Effect::Names(
                    entry.1.clone(),
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
}

impl Client {
    /// Watches the names matching `pattern` (an exact name, `prefix*`,
    /// or `*` for every name). `on_event` gets the current state first
    /// (a [`NameEvent::Present`] per matching published session, sorted
    /// by name), then `done` runs with `Ok`, then every change in order:
    /// [`NameEvent::Appeared`], [`NameEvent::OwnerChanged`],
    /// [`NameEvent::Gone`] (with its reason), until [`Client::unwatch`]
    /// or the client's close. A bad pattern is refused at once
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
        let id = Cell::new(0);
        let done: Done<()> = Box::new(done);
        let failed = self.shared.with(|core, io| {
            let failed = core.start_op(
                |op| {
                    id.set(op);
                    Frame::Watch {
                        id: op,
                        pattern: pattern.to_string(),
                    }
                },
                Op::Watch { done },
                io,
            );
            if failed.is_none() {
                core.watchers.list.push((id.get(), f, false));
            }
            failed
        });
        if let Some(failed) = failed {
            self.shared.defer(Effect::Completed(failed, None));
        }
        Ok(WatchId(id.get()))
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
            let list = &mut core.watchers.list;
            let at = list.iter().position(|(i, _, _)| *i == id.0)?;
            Some(list.remove(at))
        });
        let Some(entry) = removed else {
            return Err(Error::new(
                ErrorCode::InvalidArgument,
                format!("watch {} is not one of this client's", id.0),
            ));
        };
        // The handler goes outside the client's borrow.
        drop(entry);
        self.shared.start_op(
            |op| Frame::Unwatch {
                id: op,
                watch: id.0,
            },
            Op::RemoveMatch {
                done: Box::new(done),
            },
        );
        Ok(())
    }
}
