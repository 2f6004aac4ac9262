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
        let events = FdEvents::of_interest(interest);
        let slot = Slot { source, fd, events };
        let token = {
            let mut sources = self.inner.sources.borrow_mut();
            match self.inner.free_tokens.borrow_mut().pop() {
                Some(i) => {
                    sources[i] = Some(slot);
                    Token(i)
                }
                None => {
                    sources.push(Some(slot));
                    Token(sources.len() - 1)
                }
            }
        };
        if let Err(e) = self.inner.registry.register(io, token, interest) {
            // Never told to the host: released without telling it.
            let slot = self.take_slot(token);
            drop(slot);
            return Err(e);
        }
        self.watched_fd_changed(fd, token, events);
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
        let events = FdEvents::of_interest(interest);
        let fd = {
            let mut sources = self.inner.sources.borrow_mut();
            let Some(Some(slot)) = sources.get_mut(token.0) else {
                return Ok(());
            };
            slot.events = events;
            slot.fd
        };
        self.watched_fd_changed(fd, token, events);
        Ok(())
    }

    /// Hands the events of `token` to `source` from now on (an object that
    /// outlives the one that registered it, such as a lingering close).
    pub(crate) fn replace_source(&self, token: Token, source: Rc<dyn Source>) {
        let old = match self.inner.sources.borrow_mut().get_mut(token.0) {
            Some(Some(slot)) => Some(std::mem::replace(&mut slot.source, source)),
            _ => None,
        };
        // Dropped outside the borrow: a destructor may use the loop.
        drop(old);
    }

    /// Deregisters an I/O object and frees its token.
    pub(crate) fn deregister<S: mio::event::Source + ?Sized>(&self, io: &mut S, token: Token) {
        let _ = self.inner.registry.deregister(io);
        self.release_token(token);
    }

    fn release_token(&self, token: Token) {
        if let Some(slot) = self.take_slot(token) {
            self.watched_fd_changed(slot.fd, token, FdEvents::NONE);
            // Dropped outside the borrow: a destructor may use the loop.
            drop(slot);
        }
    }

    /// Empties `token`'s slot and frees the token; the slot, to be
    /// dropped outside the borrow.
    fn take_slot(&self, token: Token) -> Option<Slot> {
        let mut sources = self.inner.sources.borrow_mut();
        let slot = sources.get_mut(token.0).and_then(Option::take);
        if slot.is_some() {
            self.inner.free_tokens.borrow_mut().push(token.0);
        }
        slot
    }

    /// Asks for another `ready` call on the next turn: the source stopped
    /// before draining (a fairness budget), and an edge-triggered poll
    /// would not report it again.
    pub(crate) fn again(&self, token: Token) {
        self.inner.again.borrow_mut().push(token);
        self.poke();
    }

    /// Asks for `f.flush()` before the loop next sleeps.
    pub(crate) fn want_flush(&self, f: Weak<dyn Flush>) {
        self.inner.flush.borrow_mut().push(f);
        self.poke();
    }
}
