//! Hosts that watch the loop's fds one by one.
//!
//! A host given the one fd of [`EventLoop::fd`] wakes when that epoll fd
//! turns readable, and `dispatch` then asks the epoll which of its fds is
//! ready: two waits per wake-up, one nested in the other. A host that can
//! watch several fds (a `poll()` set, libev's `ev_io`, libevent's events,
//! GLib's `GSource` fds) may instead be handed every fd the loop waits on
//! ([`EventLoop::watch_fds`]) and report the one that is ready
//! ([`EventLoop::dispatch_fd`]): one wait per wake-up, the host's own.
//!
//! The loop keeps its epoll set as it is, so that [`EventLoop::run`],
//! [`EventLoop::dispatch`] and the blocking calls that run the loop
//! themselves work in either mode; only `dispatch_fd` skips asking it.

use super::{EventLoop, Readiness, Slot, ALARM, WAKER};
use crate::error::{Error, ErrorCode};
use mio::{Interest, Token};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::os::fd::RawFd;

/// What a host is to watch an fd for, or what it found the fd ready for.
/// Both false: stop watching it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct FdEvents {
    /// Readable (or hung up, or failed: the loop reads to find out).
    pub readable: bool,
    /// Writable.
    pub writable: bool,
}

// Not part of the C API, which has `SB_FD_READ` and `SB_FD_WRITE`:
/// cbindgen:ignore
impl FdEvents {
    /// Neither: the fd is no longer the loop's (told to the host), or
    /// nothing is ready.
    pub const NONE: FdEvents = FdEvents {
        readable: false,
        writable: false,
    };
    /// Readable only.
    pub const READABLE: FdEvents = FdEvents {
        readable: true,
        writable: false,
    };

    /// Whether neither is set.
    pub fn is_none(self) -> bool {
        !self.readable && !self.writable
    }

    /// As bits: 1 readable, 2 writable (C's `SB_FD_READ`, `SB_FD_WRITE`).
    pub fn bits(self) -> u32 {
        u32::from(self.readable) * READ_BIT + u32::from(self.writable) * WRITE_BIT
    }

    /// From bits as [`FdEvents::bits`] gives them; `None` if another bit
    /// is set.
    pub fn from_bits(bits: u32) -> Option<FdEvents> {
        (bits & !(READ_BIT | WRITE_BIT) == 0).then_some(FdEvents {
            readable: bits & READ_BIT != 0,
            writable: bits & WRITE_BIT != 0,
        })
    }

    pub(super) fn of_interest(interest: Interest) -> FdEvents {
        FdEvents {
            readable: interest.is_readable(),
            writable: interest.is_writable(),
        }
    }
}

const READ_BIT: u32 = 1;
const WRITE_BIT: u32 = 2;

/// The host's function, told of every change to the set of fds to watch.
type Watcher = Box<dyn FnMut(RawFd, FdEvents)>;

/// The loop's side of a host that watches its fds.
#[derive(Default)]
pub(super) struct HostWatch {
    /// Whether a host watches the fds (even while its function is out
    /// being called).
    on: Cell<bool>,
    watcher: RefCell<Option<Watcher>>,
    /// Changes not told yet: a change made while the host's function
    /// runs (it called into the loop) is told when that call returns, in
    /// order.
    changes: RefCell<VecDeque<(RawFd, FdEvents)>>,
}

impl HostWatch {
    pub(super) fn is_on(&self) -> bool {
        self.on.get()
    }
}

impl Slot {
    /// What a host watching the fds is to watch this source for.
    fn wanted(&self) -> FdEvents {
        FdEvents {
            readable: self.events.readable && !self.held,
            writable: self.events.writable,
        }
    }
}

/// Refused while the host's function runs: it would change the watch
/// from inside a report of it.
fn inside_the_watcher(what: &str) -> Error {
    Error::new(
        ErrorCode::InvalidState,
        format!("{what} called from inside the watch function"),
    )
}

impl EventLoop {
    /// Hands the host every fd the loop waits on, one by one, instead of
    /// the one fd of [`EventLoop::fd`]: `watcher(fd, events)` is called
    /// at once for every fd the loop has, and then whenever the loop adds
    /// an fd, drops one ([`FdEvents::NONE`]) or changes what it waits for
    /// (a source whose input waits for room elsewhere is not watched for
    /// reading meanwhile). The host watches each fd as told,
    /// level-triggered (as `poll()` does), and when one is ready calls
    /// [`EventLoop::dispatch_fd`]; when [`EventLoop::timeout_ms`] passes
    /// it calls [`EventLoop::dispatch`].
    ///
    /// `watcher` runs on the loop's thread, inside the loop's calls; it
    /// should only change the host's watches. A second call replaces the
    /// watcher: the old one is told to drop every fd first.
    /// `invalid_state` from inside the watcher.
    pub fn watch_fds(&self, watcher: impl FnMut(RawFd, FdEvents) + 'static) -> Result<(), Error> {
        self.unwatch_fds()?;
        let watch = &self.inner.watch;
        *watch
            .watcher
            .try_borrow_mut()
            .map_err(|_| inside_the_watcher("watch_fds"))? = Some(Box::new(watcher));
        watch.on.set(true);
        for fd in self.own_fds() {
            self.tell_host(fd, FdEvents::READABLE);
        }
        let tokens: Vec<Token> = self.inner.fds.borrow().values().copied().collect();
        for token in tokens {
            self.sync_host(token);
        }
        Ok(())
    }

    /// Back to the one fd of [`EventLoop::fd`]: the watcher is told to
    /// drop every fd, then dropped. Nothing happens if no host watches;
    /// `invalid_state` from inside the watcher.
    pub fn unwatch_fds(&self) -> Result<(), Error> {
        let watch = &self.inner.watch;
        if !watch.on.get() {
            return Ok(());
        }
        if watch.watcher.try_borrow_mut().is_err() {
            return Err(inside_the_watcher("unwatch_fds"));
        }
        let watched: Vec<RawFd> = self
            .inner
            .sources
            .borrow_mut()
            .iter_mut()
            .flatten()
            .filter(|slot| !slot.told.is_none())
            .map(|slot| {
                slot.told = FdEvents::NONE;
                slot.fd
            })
            .collect();
        for fd in self.own_fds().into_iter().chain(watched) {
            self.tell_host(fd, FdEvents::NONE);
        }
        watch.on.set(false);
        // Dropped outside the borrow: what it holds may use the loop.
        let old = watch.watcher.borrow_mut().take();
        drop(old);
        Ok(())
    }

    /// Whether a host watches the loop's fds one by one
    /// ([`EventLoop::watch_fds`]).
    pub fn is_watched_by_fd(&self) -> bool {
        self.inner.watch.is_on()
    }

    /// One non-blocking turn for a host that watches the fds: `fd` was
    /// found ready for `ready`. Runs what that fd has, then due timers and
    /// queued work, as [`EventLoop::dispatch`] does. An fd the loop no
    /// longer has (dropped since the host polled) runs the rest of the
    /// turn alone.
    ///
    /// `invalid_state` when no host watches the fds: the loop would not
    /// know to drain its wake-up.
    pub fn dispatch_fd(&self, fd: RawFd, ready: FdEvents) -> Result<(), Error> {
        if !self.inner.watch.on.get() {
            return Err(Error::new(
                ErrorCode::InvalidState,
                "dispatch_fd without watch_fds: the loop's fds are not watched one by one",
            ));
        }
        let token = if fd == self.inner.waker.fd() {
            Some(WAKER)
        } else if self.inner.alarm.as_ref().is_some_and(|a| a.fd() == fd) {
            Some(ALARM)
        } else {
            self.inner.fds.borrow().get(&fd).copied()
        };
        let mut events = self.inner.ready.take();
        if let Some(token) = token.filter(|_| !ready.is_none()) {
            events.push((
                token,
                Readiness {
                    readable: ready.readable,
                    writable: ready.writable,
                    // The host watches level-triggered: whatever a short
                    // read leaves is reported again.
                    hangup: false,
                },
            ));
        }
        self.run_turn(events)
            .map_err(|e| Error::io("the loop's turn failed", &e))
    }

    /// The loop's own fds: its wake-up, and its alarm if it has one.
    fn own_fds(&self) -> Vec<RawFd> {
        let alarm = self.inner.alarm.as_ref().map(|a| a.fd());
        std::iter::once(self.inner.waker.fd())
            .chain(alarm)
            .collect()
    }

    /// Tells the host watching the fds what `token`'s source now wants,
    /// if that changed.
    pub(super) fn sync_host(&self, token: Token) {
        if !self.inner.watch.on.get() {
            return;
        }
        let change = match self.inner.sources.borrow_mut().get_mut(token.0) {
            Some(Some(slot)) if slot.wanted() != slot.told => {
                slot.told = slot.wanted();
                Some((slot.fd, slot.told))
            }
            _ => None,
        };
        if let Some((fd, events)) = change {
            self.tell_host(fd, events);
        }
    }

    /// A source is gone: the host stops watching its fd, if it did.
    pub(super) fn host_lost(&self, slot: &Slot) {
        if self.inner.watch.on.get() && !slot.told.is_none() {
            self.tell_host(slot.fd, FdEvents::NONE);
        }
    }

    /// Ends the watch without telling the host (the loop is shut down:
    /// the host's watches go with it); hands back the watcher, to be
    /// dropped outside the loop's borrows.
    pub(super) fn end_watch_untold(&self) -> Option<Watcher> {
        let watch = &self.inner.watch;
        watch.on.set(false);
        watch.changes.borrow_mut().clear();
        for slot in self.inner.sources.borrow_mut().iter_mut().flatten() {
            slot.told = FdEvents::NONE;
        }
        // Shut down from inside the watcher itself: it goes with the loop.
        watch.watcher.try_borrow_mut().ok()?.take()
    }

    fn tell_host(&self, fd: RawFd, events: FdEvents) {
        let watch = &self.inner.watch;
        watch.changes.borrow_mut().push_back((fd, events));
        // Taken by a call further up the stack: it tells this one too.
        let Ok(mut watcher) = watch.watcher.try_borrow_mut() else {
            return;
        };
        let Some(watcher) = watcher.as_mut() else {
            watch.changes.borrow_mut().clear();
            return;
        };
        loop {
            let next = watch.changes.borrow_mut().pop_front();
            match next {
                Some((fd, events)) => watcher(fd, events),
                None => break,
            }
        }
    }

    /// Drains the wake-up when a host watches it level-triggered.
    pub(super) fn woken(&self) {
        if self.inner.watch.is_on() {
            self.inner.waker.drain();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Source;
    use super::*;
    use mio::net::UnixStream;
    use mio::Interest;
    use std::collections::BTreeMap;
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::rc::Rc;

    /// Counts its readiness reports.
    struct Counted(Cell<u32>);

    impl Source for Counted {
        fn ready(&self, _: &EventLoop, _: Readiness) {
            self.0.set(self.0.get() + 1);
        }
    }

    type Watched = Rc<RefCell<BTreeMap<RawFd, FdEvents>>>;

    fn watched_by_a_host(lp: &EventLoop) -> Watched {
        let watched: Watched = Rc::default();
        let w = watched.clone();
        lp.watch_fds(move |fd, events| {
            if events.is_none() {
                w.borrow_mut().remove(&fd);
            } else {
                w.borrow_mut().insert(fd, events);
            }
        })
        .unwrap();
        watched
    }

    #[test]
    fn a_source_whose_fd_closed_unregistered_gives_its_place_to_the_next_one() {
        let lp = EventLoop::new().unwrap();
        let watched = watched_by_a_host(&lp);
        let (mut a, _peer_a) = UnixStream::pair().unwrap();
        let old = Rc::new(Counted(Cell::new(0)));
        lp.register(&mut a, Interest::READABLE, old.clone())
            .unwrap();
        let fd = a.as_raw_fd();
        // Closed without a deregister, its number taken by another
        // socket: `dup2` does both in one step, so that no other thread
        // of the test process can take the number in between.
        let (fresh, _peer_b) = UnixStream::pair().unwrap();
        // SAFETY: both descriptors are open and this test's.
        assert_eq!(unsafe { libc::dup2(fresh.as_raw_fd(), fd) }, fd);
        // Its number now names the fresh socket, which `b` owns.
        std::mem::forget(a);
        // SAFETY: `fd` is open (the dup) and owned by nothing else now.
        let mut b = unsafe { UnixStream::from_raw_fd(fd) };
        drop(fresh);
        let new = Rc::new(Counted(Cell::new(0)));
        lp.register(&mut b, Interest::READABLE, new.clone())
            .unwrap();
        assert_eq!(watched.borrow().get(&fd), Some(&FdEvents::READABLE));
        lp.dispatch_fd(fd, FdEvents::READABLE).unwrap();
        assert_eq!((old.0.get(), new.0.get()), (0, 1));
        // Watched afresh, the fd still leads to the new source.
        lp.unwatch_fds().unwrap();
        let watched = watched_by_a_host(&lp);
        assert_eq!(watched.borrow().get(&fd), Some(&FdEvents::READABLE));
        lp.dispatch_fd(fd, FdEvents::READABLE).unwrap();
        assert_eq!((old.0.get(), new.0.get()), (0, 2));
    }

    #[test]
    fn held_input_is_not_watched_for_reading_until_asked_again() {
        let lp = EventLoop::new().unwrap();
        let watched = watched_by_a_host(&lp);
        let (mut a, _peer) = UnixStream::pair().unwrap();
        let src = Rc::new(Counted(Cell::new(0)));
        let token = lp.register(&mut a, Interest::READABLE, src).unwrap();
        let fd = a.as_raw_fd();
        lp.hold_input(token);
        assert_eq!(watched.borrow().get(&fd), None);
        lp.reregister(&mut a, token, Interest::READABLE | Interest::WRITABLE)
            .unwrap();
        let write_only = FdEvents {
            readable: false,
            writable: true,
        };
        assert_eq!(watched.borrow().get(&fd), Some(&write_only));
        lp.again(token);
        let both = FdEvents {
            readable: true,
            writable: true,
        };
        assert_eq!(watched.borrow().get(&fd), Some(&both));
        lp.deregister(&mut a, token);
        assert_eq!(watched.borrow().get(&fd), None);
    }

    #[test]
    fn the_watch_cannot_be_changed_from_inside_its_function() {
        let lp = EventLoop::new().unwrap();
        let inner = lp.clone();
        let refused = Rc::new(RefCell::new(Vec::new()));
        let r = refused.clone();
        lp.watch_fds(move |_, _| {
            let e = inner.unwatch_fds().unwrap_err();
            r.borrow_mut().push(e.code);
        })
        .unwrap();
        assert_eq!(*refused.borrow(), vec![ErrorCode::InvalidState; 2]);
        assert!(lp.is_watched_by_fd());
        // The closure holds the loop: shutting down breaks the cycle.
        lp.shutdown();
    }
}
