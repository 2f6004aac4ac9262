//! Closing connections: a refusal told to the peer, a silent
//! condemnation carried out once the current input is handled, and the
//! settling of everything a closed connection was part of.
//!
//! Separate because closing is the one path every kind of failure
//! ends in, and what it settles (sessions, calls, waits, matches,
//! watches) spans the whole core.

use super::{Core, Effect};
use crate::broker::budget::Budget;
use crate::broker::peer::CloseReason;
use crate::broker::ConnId;
use crate::error::{Error, ErrorCode};
use crate::wire::Frame;

impl Core {
    /// Counts a close decided for `reason`, once per connection.
    pub(super) fn count(&mut self, reason: &CloseReason) {
        match reason {
            CloseReason::Protocol(_) => self.stats.protocol_errors += 1,
            CloseReason::SlowConsumer(_) => {
                self.stats.slow_consumers += 1;
                self.stats.limits_exceeded += 1;
            }
            CloseReason::HelloRefused(_) => self.stats.refused_connections += 1,
            _ => {}
        }
    }

    /// Tells `id` why it is refused, then closes it once that is written;
    /// its input is no longer read.
    pub(in crate::broker) fn refuse(&mut self, id: ConnId, reason: CloseReason) {
        self.count(&reason);
        if let Some(error) = reason.refusal() {
            let _ = self.send(
                id,
                &Frame::Refused {
                    error: error.clone(),
                },
            );
        }
        if let Some(peer) = self.peers.get_mut(&id) {
            peer.closing = Some(reason);
        }
        self.mark_dirty(id);
    }

    /// Closes `id` once the current input is handled, without a word.
    pub(in crate::broker) fn condemn(&mut self, id: ConnId, reason: CloseReason) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        if peer.condemned {
            return;
        }
        peer.condemned = true;
        self.count(&reason);
        self.to_close.push((id, reason));
    }

    pub(in crate::broker) fn process_closes(&mut self) {
        while let Some((id, reason)) = self.to_close.pop() {
            self.close_one(id, reason);
        }
    }

    /// Forgets a connection and settles everything it was part of: its
    /// sessions' subscribers are told, its callers answered
    /// `publisher_gone`, its calls cancelled at their publishers.
    pub(super) fn close_one(&mut self, id: ConnId, reason: CloseReason) {
        let Some(peer) = self.peers.remove(&id) else {
            return;
        };
        self.end_monitor(id);
        if !peer.handshaken {
            self.unauthenticated = self.unauthenticated.saturating_sub(1);
        }
        Budget::adjust(&mut self.budget.input, peer.input, 0);
        Budget::adjust(&mut self.budget.output, peer.outbox.queued(), 0);
        Budget::adjust(&mut self.budget.registry, peer.registry, 0);
        Budget::adjust(&mut self.budget.listing, peer.listing, 0);
        // Its calls end first, so that a queue's hand-over finds none.
        let ended = self.routes.end_connection(id);
        for name in peer.published {
            if let Some(left) = self.registry.leave(&name, id) {
                let reason = Error::new(
                    ErrorCode::PublisherGone,
                    format!("the publisher of '{name}' disconnected"),
                );
                self.publisher_left(&name, id, left, reason);
            }
        }
        for r in ended.served {
            let e = Error::new(
                ErrorCode::PublisherGone,
                format!(
                    "the publisher of '{}' disconnected before answering",
                    r.session
                ),
            );
            self.reply(r.caller, r.caller_id, Err(e));
        }
        for (route, r) in ended.called {
            let _ = self.send(r.publisher, &Frame::Cancel { id: route });
        }
        for name in peer.subscribed {
            if let Some(s) = self.registry.get_mut(&name) {
                s.subscribers.remove(&id);
            }
        }
        self.drop_waiters(id);
        self.drop_matches(id, peer.link);
        self.drop_watches(id);
        self.effects.push(Effect::Close { conn: id, reason });
    }
}
