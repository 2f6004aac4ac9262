//! One turn of the loop: the timeout to wait for, the poll, and what
//! the turn then runs in order (ready sources, timers, deferred tasks,
//! closures posted from other threads), ending with every flush asked
//! for.
//!
//! Separate from the loop's API (run, dispatch, timers, defer): this is
//! the engine under all of them.

use super::{EventLoop, Readiness, ALARM, WAKER};
use mio::Token;
use std::io;
use std::time::{Duration, Instant};

impl EventLoop {
    pub(super) fn next_timeout(&self) -> Option<Duration> {
        if self.has_work_now() {
            return Some(Duration::ZERO);
        }
        let deadline = self.inner.timers.borrow_mut().next_deadline()?;
        Some(deadline.saturating_duration_since(Instant::now()))
    }

    /// Whether the next turn has work before any poll: deferred tasks,
    /// sources to run again, output to flush.
    pub(super) fn has_work_now(&self) -> bool {
        let inner = &self.inner;
        !inner.deferred.borrow().is_empty()
            || !inner.again.borrow().is_empty()
            || !inner.flush.borrow().is_empty()
    }

    pub(super) fn turn(&self, timeout: Option<Duration>) -> io::Result<()> {
        let inner = &self.inner;
        let mut ready = inner.ready.take();
        {
            let mut events = inner.events.borrow_mut();
            match inner.poll.borrow_mut().poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            for ev in events.iter() {
                ready.push((
                    ev.token(),
                    Readiness {
                        readable: ev.is_readable() || ev.is_read_closed() || ev.is_error(),
                        writable: ev.is_writable() || ev.is_write_closed(),
                        hangup: ev.is_read_closed() || ev.is_error(),
                    },
                ));
            }
        }
        self.run_turn(ready)
    }

    /// The turn after the poll: `ready` holds the events found (the
    /// loop's own list, handed back when done).
    pub(super) fn run_turn(&self, mut ready: Vec<(Token, Readiness)>) -> io::Result<()> {
        let inner = &self.inner;
        inner.dispatch_depth.set(inner.dispatch_depth.get() + 1);
        let result = self.handle(&mut ready);
        inner.dispatch_depth.set(inner.dispatch_depth.get() - 1);
        ready.clear();
        inner.ready.set(ready);
        result
    }

    fn handle(&self, ready: &mut Vec<(Token, Readiness)>) -> io::Result<()> {
        let inner = &self.inner;
        // Sources that asked to be run again go first, in the order asked.
        if !inner.again.borrow().is_empty() {
            let again = std::mem::take(&mut *inner.again.borrow_mut());
            let again_events = again.into_iter().map(|t| {
                (
                    t,
                    Readiness {
                        readable: true,
                        writable: true,
                        hangup: true,
                    },
                )
            });
            ready.splice(0..0, again_events);
        }
        for (token, readiness) in ready.drain(..) {
            if token == WAKER {
                self.woken();
                inner.wake_pending.set(false);
                self.run_remote();
                continue;
            }
            if token == ALARM {
                if let Some(alarm) = &inner.alarm {
                    alarm.rang();
                }
                continue;
            }
            // Snapshot the source: a callback may close anything, including
            // this source, while it runs.
            let source = inner
                .sources
                .borrow()
                .get(token.0)
                .and_then(|s| s.as_ref().map(|s| s.source.clone()));
            if let Some(source) = source {
                source.ready(self, readiness);
            }
        }
        // No clock read when no timer is set, nor when the alarm, not
        // rung yet, is set for the earliest one (then none is due yet).
        let earliest = inner.timers.borrow_mut().next_deadline();
        let covered = |d| inner.alarm.as_ref().is_some_and(|a| a.covers(d));
        if earliest.is_some_and(|d| !covered(d)) {
            let now = Instant::now();
            loop {
                let task = inner.timers.borrow_mut().pop_due(now);
                match task {
                    Some(task) => task(self),
                    None => break,
                }
            }
        }
        // Only the tasks present now: tasks they defer wait for the next
        // turn, so a task that re-defers itself cannot starve the poll.
        let count = inner.deferred.borrow().len();
        for _ in 0..count {
            let entry = inner.deferred.borrow_mut().pop_front();
            match entry {
                Some(entry) => entry.run(self),
                None => break,
            }
        }
        self.flush_all();
        Ok(())
    }

    fn run_remote(&self) {
        let tasks = std::mem::take(
            &mut self
                .inner
                .remote
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .tasks,
        );
        for task in tasks {
            task(self);
        }
    }

    fn flush_all(&self) {
        loop {
            let mut pending = std::mem::take(&mut *self.inner.flush.borrow_mut());
            if pending.is_empty() {
                *self.inner.flush.borrow_mut() = pending;
                return;
            }
            for f in pending.drain(..) {
                if let Some(f) = f.upgrade() {
                    f.flush(self);
                }
            }
            // The emptied list keeps its room for the next turn, unless
            // flushing asked for more flushes (then it is taken next).
            let mut slot = self.inner.flush.borrow_mut();
            if slot.is_empty() {
                *slot = pending;
            }
        }
    }
}
