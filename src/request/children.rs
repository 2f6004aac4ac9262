//! The requests made on a served request's behalf (its children): the
//! list the callee's record keeps, cancelled when the request ends.
//!
//! Most requests make none, so the list is a box made at the first
//! child: one word in every callee's record in flight (a `Vec` inline
//! was 16 bytes more, and moved out and back at every end). The box is
//! kept with a record that the pool reuses, its room bounded.

use super::ends::CallerEnd;
use super::pool::KEPT_ROOM;
use std::cell::Cell;
use std::rc::Weak;

/// A served request's children, as weak handles on their callers' ends.
#[derive(Default)]
pub(crate) struct Children(Cell<Option<Box<List>>>);

/// The list itself (a newtype, so that it can be boxed).
#[derive(Default)]
struct List(Vec<Weak<dyn CallerEnd>>);

impl Children {
    /// Records a child. A long list first forgets its ended children.
    pub(crate) fn adopt(&self, child: Weak<dyn CallerEnd>) {
        let mut list = self.0.take().unwrap_or_default();
        let v = &mut list.0;
        if v.len() >= 32 && v.len().is_power_of_two() {
            v.retain(|c| c.upgrade().is_some_and(|c| c.is_open()));
        }
        v.push(child);
        self.0.set(Some(list));
    }

    /// Cancels every child still there.
    #[inline]
    pub(crate) fn cancel(&self) {
        match self.0.take() {
            // Most requests make none.
            None => {}
            Some(list) if list.0.is_empty() => self.0.set(Some(list)),
            Some(list) => self.cancel_all(list),
        }
    }

    /// Out of line: most requests make none. Children adopted meanwhile
    /// (by a cancelled child's hooks) stay listed; the box is kept.
    #[cold]
    fn cancel_all(&self, mut list: Box<List>) {
        for child in std::mem::take(&mut list.0) {
            if let Some(child) = child.upgrade() {
                child.cancel();
            }
        }
        let adopted = self.0.take();
        self.0.set(adopted.or(Some(list)));
    }

    /// Forgets every child, for a record kept for reuse: the list's room
    /// is kept unless a burst of children grew it (a kept record must
    /// not hold that).
    #[inline]
    pub(crate) fn clear(&mut self) {
        if let Some(list) = self.0.get_mut() {
            list.0.clear();
            list.0.shrink_to(KEPT_ROOM);
        }
    }
}
