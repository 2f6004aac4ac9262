//! A lingering close: a connection whose owner let go of it still sends
//! what was already accepted for sending, within a bounded time.
//!
//! The connection is handed to a small object that the loop owns (through
//! the deadline timer): it writes the queued output, ends the stream (a
//! FIN), reports the outcome, and then reads and throws away what the peer
//! still sends until the peer closes too or the deadline passes. The
//! reading matters: closing a socket with unread input resets the
//! connection, and a reset may discard output the peer has not read yet.
//!
//! A stopped loop keeps lingering connections for its next run; a loop
//! shut down ([`EventLoop::shutdown`], `sb_loop_free`) drops them with
//! their output, and their completion without running it.

use super::{Connection, ReadOutcome};
use crate::error::{Error, ErrorCode};
use crate::event_loop::{EventLoop, Readiness, Source, TimerId};
use std::cell::RefCell;
use std::rc::{Rc, Weak};
use std::time::Duration;

/// What runs once a lingering close has settled: `Ok` once every queued
/// byte was written and the stream ended, else why not.
pub(crate) type CloseFn = Box<dyn FnOnce(Result<(), Error>)>;

struct Lingering {
    conn: Connection,
    done: Option<CloseFn>,
    /// The output was written out and the stream ended.
    ended: bool,
    timer: TimerId,
    limit: Duration,
}

struct Linger {
    st: RefCell<Option<Lingering>>,
}

struct LingerSource(Weak<Linger>);

/// Closes `conn` once its queued output was written, or at `limit` at the
/// latest. `done` (if any) runs on a later turn with the outcome; never
/// inside this call.
pub(crate) fn linger(conn: Connection, lp: &EventLoop, limit: Duration, done: Option<CloseFn>) {
    let linger = Rc::new(Linger {
        st: RefCell::new(None),
    });
    let source = Rc::new(LingerSource(Rc::downgrade(&linger)));
    lp.replace_source(conn.token(), source);
    // The timer owns the lingering connection: it ends at the deadline at
    // the latest, and a loop shut down drops it with its timers.
    let owner = linger.clone();
    // A year is forever here, and a deadline that far cannot overflow.
    let limit = limit.min(Duration::from_secs(365 * 24 * 3600));
    let timer = lp.add_timer(limit, move |lp| owner.expire(lp));
    if timer.to_raw() == 0 {
        // The loop was shut down: nothing runs on it any more.
        conn.close(lp);
        return;
    }
    *linger.st.borrow_mut() = Some(Lingering {
        conn,
        done,
        ended: false,
        timer,
        limit,
    });
    linger.progress(lp);
}

impl Linger {
    /// Writes what it can; once all is written ends the stream and
    /// reports success; reads and discards input until the peer closes.
    fn progress(&self, lp: &EventLoop) {
        let mut guard = self.st.borrow_mut();
        let Some(l) = guard.as_mut() else { return };
        if !l.ended {
            let written = l.conn.flush(lp).and_then(|()| {
                if l.conn.all_sent() {
                    l.conn.shutdown_write().map(|()| true)
                } else {
                    Ok(false)
                }
            });
            match written {
                Ok(true) => {
                    l.ended = true;
                    if let Some(done) = l.done.take() {
                        lp.defer(move |_| done(Ok(())));
                    }
                }
                Ok(false) => {}
                Err(e) => {
                    drop(guard);
                    self.finish(lp, Err(e));
                    return;
                }
            }
        }
        match l.conn.discard_input() {
            ReadOutcome::Drained => {}
            ReadOutcome::More => lp.again(l.conn.token()),
            ReadOutcome::Closed(e) => {
                let queued = l.conn.queued();
                drop(guard);
                let e = Error::new(
                    e.code,
                    format!("{} before taking {queued} queued bytes", e.message),
                );
                self.finish(lp, Err(e));
            }
        }
    }

    /// The deadline passed.
    fn expire(&self, lp: &EventLoop) {
        let failure = match self.st.borrow().as_ref() {
            Some(l) if !l.ended => Error::new(
                ErrorCode::Timeout,
                format!(
                    "the peer did not take {} queued bytes within the linger time of {} ms",
                    l.conn.queued(),
                    l.limit.as_millis()
                ),
            ),
            _ => Error::new(ErrorCode::Timeout, "linger time over"),
        };
        self.finish(lp, Err(failure));
    }

    /// Closes the connection and reports `outcome` unless it reported
    /// already.
    fn finish(&self, lp: &EventLoop, outcome: Result<(), Error>) {
        let Some(l) = self.st.borrow_mut().take() else {
            return;
        };
        // Our caller holds a strong handle: dropping the timer's is safe.
        lp.cancel_timer(l.timer);
        l.conn.close(lp);
        if let Some(done) = l.done {
            lp.defer(move |_| done(outcome));
        }
    }
}

impl Source for LingerSource {
    fn ready(&self, lp: &EventLoop, _readiness: Readiness) {
        if let Some(linger) = self.0.upgrade() {
            linger.progress(lp);
        }
    }
}
