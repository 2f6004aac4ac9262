//! The caller's side of remote calls: one table, keyed by the call's id.
//!
//! A call has a single id in this client: the [`CallId`] its caller
//! holds, the id of its deliver, emits, recalls and result on the wire,
//! and the key under which its deliver may be taken back before it
//! leaves ([`Connection::retract`](crate::transport::Connection)). The
//! table holds nothing else for it than the handler of its events.

use super::{CallEvent, CallId};
use crate::error::{Error, ErrorCode};
use crate::id_hash::IdMap;
use crate::wire::Reply;
use std::cell::RefCell;
use std::rc::Rc;

/// What receives a call's events.
pub(super) type CallFn = Rc<RefCell<dyn FnMut(CallId, CallEvent)>>;

/// The calls in progress: sent, and neither answered finally, cancelled,
/// nor settled by a close.
#[derive(Default)]
pub(super) struct Calls(IdMap<u64, CallFn>);

impl Calls {
    pub fn insert(&mut self, id: u64, handler: CallFn) {
        self.0.insert(id, handler);
    }

    pub fn contains(&self, id: u64) -> bool {
        self.0.contains_key(&id)
    }

    /// The handler of a call that stays in progress (an emit arrived).
    pub fn get(&self, id: u64) -> Option<CallFn> {
        self.0.get(&id).cloned()
    }

    /// Ends a call: it was answered finally, failed or cancelled.
    pub fn remove(&mut self, id: u64) -> Option<CallFn> {
        self.0.remove(&id)
    }

    /// The ids of every call in progress, in no particular order.
    pub fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.0.keys().copied()
    }

    /// Ends every call but those of `kept` ids (held, never sent),
    /// oldest first.
    pub fn drain_except(&mut self, kept: &[u64]) -> Vec<(u64, CallFn)> {
        let mut ids: Vec<u64> = self
            .0
            .keys()
            .copied()
            .filter(|id| !kept.contains(id))
            .collect();
        ids.sort_unstable();
        ids.into_iter()
            .filter_map(|id| self.0.remove(&id).map(|f| (id, f)))
            .collect()
    }

    /// Ends every call, oldest first.
    pub fn drain_in_order(&mut self) -> Vec<(u64, CallFn)> {
        let mut calls: Vec<_> = self.0.drain().collect();
        calls.sort_by_key(|(id, _)| *id);
        calls
    }
}

/// The event a call's final result makes.
pub(super) fn final_event(outcome: Result<Reply, Error>) -> CallEvent {
    match outcome {
        Ok(Reply::Return { kind, payload }) => match payload.decode() {
            Ok(args) => CallEvent::Return {
                kind: kind.into(),
                args,
            },
            Err(e) => CallEvent::Error(e),
        },
        Ok(other) => CallEvent::Error(Error::new(
            ErrorCode::Protocol,
            format!("a call was answered with {}", other.describe()),
        )),
        Err(e) => CallEvent::Error(e),
    }
}
