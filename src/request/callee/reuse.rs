//! The reuse of a callee's record: the free list of ended records'
//! allocations (see [`pool`](super::super::pool)), and how a record is
//! made, emptied and refilled.

use super::super::children::Children;
use super::super::link::Up;
use super::super::pool::{Pool, Pooled};
use super::super::scope::Scope;
use super::super::stage::Stage;
use super::ServedRec;
use std::cell::Cell;
use std::rc::{Rc, Weak};
use std::time::Instant;

thread_local! {
    /// The allocations of callee's records that ended (see
    /// [`pool`](super::super::pool)).
    pub(super) static FREE: Pool<ServedRec> = const { Pool::new() };
}

/// How many callee's records this thread keeps for reuse; with `clear`,
/// none first (see [`kept`](super::super::pool::kept)).
#[cfg(test)]
pub(crate) fn kept_records(clear: bool) -> usize {
    super::super::pool::kept(&FREE, clear)
}

/// The parts of a callee's record: id, caller's id, stage, method, link
/// up, deadline.
type ServedParts = (u64, u64, Stage, Rc<str>, Up, Option<Instant>);

impl Pooled for ServedRec {
    type Parts = ServedParts;

    fn make((id, caller_id, stage, method, link, deadline): ServedParts) -> ServedRec {
        ServedRec {
            id,
            caller_id,
            lp: Some(stage.event_loop().clone()),
            stage: stage.downgrade(),
            holds: Cell::new(Some(stage)),
            method,
            open: Cell::new(true),
            data: Scope::default(),
            children: Children::default(),
            link: Some(link),
            on_cancel: Cell::new(None),
            started: Cell::new(false),
            on_end: Cell::new(None),
            deadline,
            handles: Cell::new(0),
            emitted: Cell::new(false),
            args: Cell::new(None),
        }
    }

    fn empty(&mut self) {
        self.lp = None;
        self.stage = Weak::new();
        *self.holds.get_mut() = None;
        self.data.clear();
        self.children.clear();
        self.link = None;
        *self.on_cancel.get_mut() = None;
        *self.on_end.get_mut() = None;
        *self.args.get_mut() = None;
    }

    fn refill(&mut self, (id, caller_id, stage, method, link, deadline): ServedParts) {
        self.id = id;
        self.caller_id = caller_id;
        self.lp = Some(stage.event_loop().clone());
        self.stage = stage.downgrade();
        *self.holds.get_mut() = Some(stage);
        self.method = method;
        self.open.set(true);
        self.link = Some(link);
        self.started.set(false);
        self.deadline = deadline;
        self.handles.set(0);
        self.emitted.set(false);
    }
}
