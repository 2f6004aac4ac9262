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

use super::{EventLoop, Readiness, ALARM, WAKER};
use crate::error::{Error, ErrorCode};
use crate::id_hash::IdMap;
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
    /// Which source each watched fd belongs to (fds are the kernel's
    /// numbers, which no peer chooses: the fast hash).
    tokens: RefCell<IdMap<RawFd, Token>>,
}

impl HostWatch {
    pub(super) fn is_on(&self) -> bool {
        self.on.get()
    }

    /// Ends the watch without telling the host (the loop is shut down:
    /// the host's watches go with it); hands back the watcher, to be
    /// dropped outside the loop's borrows.
    pub(super) fn end_untold(&self) -> Option<Watcher> {
        self.on.set(false);
        self.tokens.borrow_mut().clear();
        self.changes.borrow_mut().clear();
        // Shut down from inside the watcher itself: it goes with the loop.
        self.watcher.try_borrow_mut().ok()?.take()
    }
}

impl EventLoop {
    /// Hands the host every fd the loop waits on, one by one, instead of
    /// the one fd of [`EventLoop::fd`]: `watcher(fd, events)` is called
    /// at once for every fd the loop has, and then whenever the loop adds
    /// an fd, drops one ([`FdEvents::NONE`]) or changes what it waits for.
    /// The host watches each fd as told, level-triggered (as `poll()`
    /// does), and when one is ready calls [`EventLoop::dispatch_fd`]; when
    /// [`EventLoop::timeout_ms`] passes it calls [`EventLoop::dispatch`].
    ///
    /// `watcher` runs on the loop's thread, inside the loop's calls; it
    /// should only change the host's watches. A second call replaces the
    /// watcher: the old one is told to drop every fd first.
    pub fn watch_fds(&self, watcher: impl FnMut(RawFd, FdEvents) + 'static) {
        self.unwatch_fds();
        let watch = &self.inner.watch;
        let mut current = vec![(self.inner.waker.fd(), WAKER, FdEvents::READABLE)];
        if let Some(alarm) = &self.inner.alarm {
            current.push((alarm.fd(), ALARM, FdEvents::READABLE));
        }
        for (i, slot) in self.inner.sources.borrow().iter().enumerate() {
            if let Some(slot) = slot {
                current.push((slot.fd, Token(i), slot.events));
            }
        }
        *watch.watcher.borrow_mut() = Some(Box::new(watcher));
        watch.on.set(true);
        for (fd, token, events) in current {
            watch.tokens.borrow_mut().insert(fd, token);
            self.tell_host(fd, events);
        }
    }

    /// Back to the one fd of [`EventLoop::fd`]: the watcher is told to
    /// drop every fd, then dropped. Nothing happens if no host watches.
    pub fn unwatch_fds(&self) {
        let watch = &self.inner.watch;
        if !watch.on.get() {
            return;
        }
        let fds: Vec<RawFd> = watch.tokens.borrow().keys().copied().collect();
        for fd in fds {
            self.tell_host(fd, FdEvents::NONE);
        }
        watch.on.set(false);
        watch.tokens.borrow_mut().clear();
        // Dropped outside the borrow: what it holds may use the loop.
        let old = watch.watcher.borrow_mut().take();
        drop(old);
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
        let watch = &self.inner.watch;
        if !watch.on.get() {
            return Err(Error::new(
                ErrorCode::InvalidState,
                "dispatch_fd without watch_fds: the loop's fds are not watched one by one",
            ));
        }
        let token = watch.tokens.borrow().get(&fd).copied();
        let mut events = self.inner.ready.take();
        if let Some(token) = token {
            if !ready.is_none() {
                events.push((
                    token,
                    Readiness {
                        readable: ready.readable,
                        writable: ready.writable,
                        // The host watches level-triggered: whatever a
                        // short read leaves is reported again.
                        hangup: false,
                    },
                ));
            }
        }
        self.run_turn(events)
            .map_err(|e| Error::io("the loop's turn failed", &e))
    }

    /// A source's fd was added, changed or dropped (`events` none): the
    /// host, if one watches, is told.
    pub(super) fn watched_fd_changed(&self, fd: RawFd, token: Token, events: FdEvents) {
        let watch = &self.inner.watch;
        if !watch.on.get() {
            return;
        }
        {
            let mut tokens = watch.tokens.borrow_mut();
            if events.is_none() {
                if tokens.get(&fd) == Some(&token) {
                    tokens.remove(&fd);
                }
            } else {
                tokens.insert(fd, token);
            }
        }
        self.tell_host(fd, events);
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
