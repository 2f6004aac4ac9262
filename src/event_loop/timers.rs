//! Timers: a min-heap of deadlines with lazy cancellation.

use crate::id_hash::IdMap;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// Identifies a scheduled timer so that it can be cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerId(u64);

impl TimerId {
    /// The id as a number (for the C API).
    pub fn to_raw(self) -> u64 {
        self.0
    }

    /// An id from [`TimerId::to_raw`].
    pub fn from_raw(raw: u64) -> TimerId {
        TimerId(raw)
    }
}

/// The instant `delay` from now, saturating: a delay too long for the
/// clock (such as `Duration::MAX`, meaning "never" to some callers) gives
/// a deadline about a century away instead of overflowing.
pub(crate) fn instant_after(delay: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(delay)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

pub(crate) struct Timers<T> {
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    live: IdMap<u64, T>,
    next_id: u64,
}

impl<T> Timers<T> {
    pub fn new() -> Self {
        Timers {
            heap: BinaryHeap::new(),
            live: IdMap::default(),
            next_id: 1,
        }
    }

    pub fn insert(&mut self, at: Instant, task: T) -> TimerId {
        let id = self.next_id;
        self.next_id += 1;
        self.heap.push(Reverse((at, id)));
        self.live.insert(id, task);
        TimerId(id)
    }

    /// Cancels a timer; returns whether it was still pending.
    pub fn cancel(&mut self, id: TimerId) -> bool {
        let was = self.live.remove(&id.0).is_some();
        // Cancelled entries stay in the heap until they surface; rebuild
        // when they dominate so the heap stays proportional to live timers.
        if was && self.heap.len() > 64 && self.heap.len() > 2 * self.live.len() {
            let live = &self.live;
            self.heap.retain(|Reverse((_, id))| live.contains_key(id));
        }
        was
    }

    /// The earliest live deadline.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(Reverse((at, id))) = self.heap.peek() {
            if self.live.contains_key(id) {
                return Some(*at);
            }
            self.heap.pop();
        }
        None
    }

    /// Removes and returns one timer due at `now`, earliest first.
    pub fn pop_due(&mut self, now: Instant) -> Option<T> {
        while let Some(Reverse((at, id))) = self.heap.peek().copied() {
            if at > now {
                return None;
            }
            self.heap.pop();
            if let Some(task) = self.live.remove(&id) {
                return Some(task);
            }
        }
        None
    }

    pub fn len(&self) -> usize {
        self.live.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn due_in_deadline_order_and_cancel_skips() {
        let now = Instant::now();
        let mut t = Timers::new();
        let a = t.insert(now + Duration::from_millis(5), 'a');
        t.insert(now + Duration::from_millis(1), 'b');
        t.insert(now + Duration::from_millis(3), 'c');
        assert!(t.cancel(a));
        assert!(!t.cancel(a));
        assert_eq!(t.next_deadline(), Some(now + Duration::from_millis(1)));
        let later = now + Duration::from_millis(10);
        assert_eq!(t.pop_due(later), Some('b'));
        assert_eq!(t.pop_due(later), Some('c'));
        assert_eq!(t.pop_due(later), None);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn heap_is_compacted_when_cancelled_entries_dominate() {
        let now = Instant::now();
        let mut t = Timers::new();
        let ids: Vec<_> = (0..1000).map(|i| t.insert(now, i)).collect();
        for id in &ids[..990] {
            t.cancel(*id);
        }
        assert!(t.heap.len() <= 2 * t.len() + 64);
    }
}
