//! Free lists of request records: the allocations of records that
//! ended, kept for the next requests of the thread.
//!
//! Every request allocates a caller's record and, on this loop, a
//! callee's, each a few hundred bytes: too big for the allocator's fast
//! bins, so with many requests in flight each allocation and free went
//! through glibc's `_int_malloc`/`_int_free` (~340 instructions a pair,
//! about a fifth of a local request+return pair). A record whose last
//! holder lets go is emptied at once (what it held, the user's closures
//! and data among them, is dropped then, as before) and its allocation
//! kept here; the next record of its type reuses it, warm in the cache.
//!
//! Only an allocation nothing else refers to is kept: no other `Rc` and
//! no `Weak` (a `Weak` could otherwise upgrade to the next request's
//! record). Anything else is freed as usual.

use std::cell::RefCell;
use std::rc::Rc;
use std::thread::LocalKey;

/// How many free records of one type a thread keeps: enough for a
/// thousand requests in flight; beyond, records are freed.
const KEPT: usize = 1024;

/// The most room (in elements) a kept record's lists keep: what a burst
/// grew beyond it is freed when the record is emptied.
pub(crate) const KEPT_ROOM: usize = 16;

/// A record kept in a [`Pool`]: made from its parts, emptied when kept,
/// refilled in place when reused (so a reuse writes the parts, not the
/// whole record).
pub(crate) trait Pooled: Sized {
    /// What differs from one record to the next.
    type Parts;
    /// A new record.
    fn make(parts: Self::Parts) -> Self;
    /// Lets go of everything the record holds but its parts' plain
    /// values, leaving every other field as [`Pooled::make`] sets it.
    fn empty(&mut self);
    /// Makes an emptied record what `make(parts)` would be.
    fn refill(&mut self, parts: Self::Parts);
}

/// The free records of one type, on one thread (in a `thread_local!`).
pub(crate) struct Pool<T> {
    free: RefCell<Vec<Rc<T>>>,
}

impl<T> Pool<T> {
    /// An empty pool.
    pub(crate) const fn new() -> Pool<T> {
        Pool {
            free: RefCell::new(Vec::new()),
        }
    }
}

/// A record made of `parts`: a kept allocation of `pool`, refilled, if
/// there is one.
#[inline]
pub(crate) fn take<T: Pooled>(pool: &'static LocalKey<Pool<T>>, parts: T::Parts) -> Rc<T> {
    // During the thread's teardown the pool may be gone: allocate then.
    let kept = pool.try_with(|p| p.free.borrow_mut().pop()).ok().flatten();
    // Only what nothing else refers to is kept, so `get_mut` finds it.
    match kept {
        Some(mut rc) => match Rc::get_mut(&mut rc) {
            Some(slot) => {
                slot.refill(parts);
                rc
            }
            None => Rc::new(T::make(parts)),
        },
        None => Rc::new(T::make(parts)),
    }
}

/// Keeps `rc`'s allocation in `pool`, emptied, if nothing else refers to
/// it; otherwise just drops `rc`.
#[inline]
pub(crate) fn give<T: Pooled>(pool: &'static LocalKey<Pool<T>>, mut rc: Rc<T>) {
    let Some(slot) = Rc::get_mut(&mut rc) else {
        return;
    };
    // No borrow of the pool is held here: emptying may drop user values
    // whose destructors make (and end) requests.
    slot.empty();
    let _ = pool.try_with(move |p| {
        let mut free = p.free.borrow_mut();
        if free.len() < KEPT {
            free.push(rc);
        }
    });
}

/// How many records `pool` keeps; with `clear`, it lets them go first
/// (for tests that count what a sequence of requests gives back).
#[cfg(test)]
pub(crate) fn kept<T>(pool: &'static LocalKey<Pool<T>>, clear: bool) -> usize {
    pool.with(|p| {
        if clear {
            p.free.borrow_mut().clear();
        }
        p.free.borrow().len()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Pooled for String {
        type Parts = &'static str;
        fn make(parts: &'static str) -> String {
            parts.to_string()
        }
        fn empty(&mut self) {
            self.clear();
        }
        fn refill(&mut self, parts: &'static str) {
            self.push_str(parts);
        }
    }

    thread_local! {
        static STRINGS: Pool<String> = const { Pool::new() };
    }

    #[test]
    fn only_allocations_nothing_refers_to_are_reused() {
        let first = take(&STRINGS, "first");
        let at = Rc::as_ptr(&first);
        give(&STRINGS, first);
        let again = take(&STRINGS, "again");
        assert_eq!(Rc::as_ptr(&again), at, "reused");
        assert_eq!(*again, "again");
        let weak = Rc::downgrade(&again);
        give(&STRINGS, again);
        assert!(weak.upgrade().is_none(), "a Weak keeps it out: freed");
        let other = take(&STRINGS, "other");
        let shared = other.clone();
        give(&STRINGS, other);
        assert_eq!(*shared, "other", "still held: untouched");
        assert_eq!(STRINGS.with(|p| p.free.borrow().len()), 0);
    }
}
