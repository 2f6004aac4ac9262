//! Closing: the connection lost (or refused) and everything in flight
//! settled, a reconnect timed when the policy allows one, and the
//! owner's close with its lingering flush.
//!
//! Separate because every way a connection ends comes through here, and
//! what it settles spans the whole client.

use super::Shared;
use crate::client::core::Status;
use crate::client::dispatch::dispatch;
use crate::client::effects::{Closer, Settle};
use crate::client::reconnect::Lost;
use crate::error::{Error, ErrorCode};
use crate::transport::{linger, CloseFn};

impl Shared {
    /// Closes the connection because of `error` and settles everything:
    /// the connect or disconnect handler, pending operations and calls
    /// (`broker_gone`), deliveries being served (`Cancel`).
    ///
    /// With a reconnect policy that allows another attempt, the client
    /// stays open: what was in flight is settled, and the next attempt is
    /// timed.
    pub(in crate::client) fn shut(&self, error: Error) {
        self.lose(error, false);
    }

    /// [`Shared::shut`]; a `refused` handshake is never retried.
    pub(in crate::client) fn lose(&self, error: Error, refused: bool) {
        let lost = self.with(|core, io| {
            let random = io.next_random();
            let lost = core.lost(error, refused, random, io);
            io.cancel_timers(&self.lp);
            (lost, io.conn.take())
        });
        let (lost, conn) = lost;
        if let Some(conn) = conn {
            conn.close(&self.lp);
        }
        match lost {
            Lost::Closed(Some(settle)) => self.settle(settle),
            Lost::Closed(None) => {}
            Lost::Retry { effects, delay } => {
                let me = self.me.clone();
                let timer = self.lp.add_timer(delay, move |_| {
                    if let Some(shared) = me.upgrade() {
                        shared.next_attempt();
                    }
                });
                self.inner.borrow_mut().io.retry_timer = Some(timer);
                // Matches and watches stay with the client, as its
                // publications do.
                self.settle(Settle {
                    effects,
                    publications: Vec::new(),
                    listeners: Vec::new(),
                    watchers: Vec::new(),
                });
            }
        }
    }

    /// Closes at the owner's request ([`Client::close`](super::Client::close),
    /// the last handle dropped): settles everything as [`Shared::shut`]
    /// does, without the disconnect handler, but hands an established
    /// connection to a lingering close, so that what was accepted for
    /// sending still leaves. Before the handshake nothing accepted can be
    /// an answer, and operations fail anyway: the connection closes at
    /// once.
    pub(in crate::client) fn close_by_owner(&self, reason: &str, done: Option<CloseFn>) {
        // Not `Error::broker_gone`: settling wraps the reason in it.
        let error = Error::new(ErrorCode::BrokerGone, reason);
        let closed = self.with(|core, io| {
            let was_ready = matches!(core.status(), Status::Ready(_));
            let settle = core.close(error, Closer::Owner, io)?;
            io.cancel_timers(&self.lp);
            Some((settle, io.conn.take(), was_ready, io.linger))
        });
        let Some((settle, conn, was_ready, limit)) = closed else {
            if let Some(done) = done {
                let e = Error::new(ErrorCode::InvalidState, "the client is already closed");
                self.lp.defer(move |_| done(Err(e)));
            }
            return;
        };
        match conn {
            Some(conn) if was_ready => linger(conn, &self.lp, limit, done),
            other => {
                if let Some(conn) = other {
                    conn.close(&self.lp);
                }
                if let Some(done) = done {
                    self.lp.defer(move |_| done(Ok(())));
                }
            }
        }
        self.settle(settle);
    }

    /// Lets go of the publications' handlers now, outside any borrow, and
    /// runs what the close still owes on the next turn, never inside the
    /// caller.
    pub(super) fn settle(&self, settle: Settle) {
        drop(settle.publications);
        drop(settle.listeners);
        drop(settle.watchers);
        let me = self.me.clone();
        let effects = settle.effects;
        self.lp.defer(move |lp| {
            for effect in effects {
                dispatch(lp, &me, effect);
            }
        });
    }
}
