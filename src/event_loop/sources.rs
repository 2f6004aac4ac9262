//! Sources on the loop: I/O objects registered with the poll under a
//! token, re-registered, replaced and deregistered; a source asked to be
//! run again next turn; an object's flush asked for before the loop
//! sleeps.
//!
//! Separate from the turn that serves them: this is how the rest of the
//! crate enters the loop.

use super::{EventLoop, FdEvents, Flush, Slot, Source};
use mio::{Interest, Token};
use std::io;
use std::os::fd::AsRawFd;
use std::rc::{Rc, Weak};

impl EventLoop {
    /// Registers `source`'s I/O object for `interest` under a new token.
    pub(crate) fn register<S: mio::event::Source + AsRawFd + ?Sized>(
        &self,
        io: &mut S,
        interest: Interest,
        source: Rc<dyn Source>,
    ) -> io::Result<Token> {
        let fd = io.as_raw_fd();
        // The kernel reuses only a closed fd's number: a slot that still
        // holds `fd` lost it without a deregister, and nothing will reach
        // it again. Its place goes to the new source, with what a host
        // was told of the fd.
        let stale_token = self.inner.fds.borrow().get(&fd).copied();
        let stale = stale_token.and_then(|t| self.take_slot(t));
        let slot = Slot {
            source,
            fd,
            events: FdEvents::of_interest(interest),
            held: false,
            told: stale.as_ref().map_or(FdEvents::NONE, |s| s.told),
        };
        drop(stale);
        let token = {
            let mut sources = self.inner.sources.borrow_mut();
            let token = match self.inner.free_tokens.borrow_mut().pop() {
                Some(i) => {
                    sources[i] = Some(slot);
                    Token(i)
                }
                None => {
                    sources.push(Some(slot));
                    Token(sources.len() - 1)
                }
            };
            self.inner.fds.borrow_mut().insert(fd, token);
            token
        };
        if let Err(e) = self.inner.registry.register(io, token, interest) {
            self.release_token(token);
            return Err(e);
        }
        self.sync_host(token);
        Ok(token)
    }

    /// Changes the interest of an I/O object registered under `token`.
    pub(crate) fn reregister<S: mio::event::Source + AsRawFd + ?Sized>(
        &self,
        io: &mut S,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        self.inner.registry.reregister(io, token, interest)?;
        if let Some(Some(slot)) = self.inner.sources.borrow_mut().get_mut(token.0) {
            slot.events = FdEvents::of_interest(interest);
        }
        self.sync_host(token);
        Ok(())
    }

    /// Hands the events of `token` to `source` from now on (an object that
    /// outlives the one that registered it, such as a lingering close).
    /// A hold on its input ([`EventLoop::hold_input`]) was the old
    /// source's, and ends.
    pub(crate) fn replace_source(&self, token: Token, source: Rc<dyn Source>) {
        let old = match self.inner.sources.borrow_mut().get_mut(token.0) {
            Some(Some(slot)) => Some(std::mem::replace(&mut slot.source, source)),
            _ => None,
        };
        // Dropped outside the borrow: a destructor may use the loop.
        drop(old);
        self.resume_input(token);
    }

    /// Deregisters an I/O object and frees its token.
    pub(crate) fn deregister<S: mio::event::Source + ?Sized>(&self, io: &mut S, token: Token) {
        let _ = self.inner.registry.deregister(io);
        self.release_token(token);
    }

    /// The source under `token` leaves what its fd has unread until it
    /// asks [`EventLoop::again`] or [`EventLoop::resume_input`]
    /// (backpressure, a held connection, accepting paused). The epoll,
    /// edge-triggered, needs nothing; a host that watches the fds
    /// level-triggered stops watching it for reading meanwhile, or it
    /// would be woken on every pass for input nobody reads.
    pub(crate) fn hold_input(&self, token: Token) {
        self.set_held(token, true);
    }

    /// Ends [`EventLoop::hold_input`]: a host watching the fds watches
    /// the source for reading again (and finds what waited).
    pub(crate) fn resume_input(&self, token: Token) {
        self.set_held(token, false);
    }

    fn set_held(&self, token: Token, held: bool) {
        let changed = match self.inner.sources.borrow_mut().get_mut(token.0) {
            Some(Some(slot)) if slot.held != held => {
                slot.held = held;
                true
            }
            _ => false,
        };
        if changed {
            self.sync_host(token);
        }
    }

    fn release_token(&self, token: Token) {
        if let Some(slot) = self.take_slot(token) {
            self.host_lost(&slot);
            // Dropped outside the borrow: a destructor may use the loop.
            drop(slot);
        }
    }

    /// Empties `token`'s slot and frees the token; the slot, to be
    /// dropped outside the borrow.
    fn take_slot(&self, token: Token) -> Option<Slot> {
        let mut sources = self.inner.sources.borrow_mut();
        let slot = sources.get_mut(token.0).and_then(Option::take)?;
        self.inner.free_tokens.borrow_mut().push(token.0);
        let mut fds = self.inner.fds.borrow_mut();
        if fds.get(&slot.fd) == Some(&token) {
            fds.remove(&slot.fd);
        }
        Some(slot)
    }

    /// Asks for another `ready` call on the next turn: the source stopped
    /// before draining (a fairness budget), and an edge-triggered poll
    /// would not report it again. Ends a [`EventLoop::hold_input`].
    pub(crate) fn again(&self, token: Token) {
        self.resume_input(token);
        self.inner.again.borrow_mut().push(token);
        self.poke();
    }

    /// Asks for `f.flush()` before the loop next sleeps.
    pub(crate) fn want_flush(&self, f: Weak<dyn Flush>) {
        self.inner.flush.borrow_mut().push(f);
        self.poke();
    }
}
