//! Queuing output: frames encoded (or forwarded with their id rewritten)
//! into a connection's outbox, the outbox's limit enforced, and answers
//! to a client's operations.
//!
//! Separate because every operation ends here, and it is the fast path
//! of a call's frames: no allocation per frame.

use super::Core;
use crate::broker::budget::Budget;
use crate::broker::peer::{CloseReason, Full};
use crate::broker::ConnId;
use crate::error::{Error, ErrorCode};
use crate::wire::{encode_frame, Frame, Reply, Routed};

impl Core {
    pub(super) fn mark_dirty(&mut self, id: ConnId) {
        if let Some(peer) = self.peers.get_mut(&id) {
            if !peer.dirty {
                peer.dirty = true;
                self.dirty.push(id);
                self.flush_requested = true;
            }
        }
    }

    /// Queues a frame for `to`. A peer whose queue is over its limit does
    /// not read: it is cut off. A frame too large to send (a listing over
    /// `max_frame`, or a forwarded frame that grew with the broker's own
    /// ids) is returned as an error, for the caller to report to whoever
    /// asked for it: the receiver did nothing wrong.
    pub(in crate::broker) fn send(&mut self, to: ConnId, frame: &Frame) -> Result<(), Error> {
        self.send_with(to, |out, max_frame| encode_frame(frame, out, max_frame))
    }

    /// Forwards a routed frame to `to` under the id `to` knows it by, with
    /// the errors of [`Core::send`].
    pub(in crate::broker) fn forward(
        &mut self,
        to: ConnId,
        frame: &Routed<'_>,
        id: u64,
    ) -> Result<(), Error> {
        self.send_with(to, |out, max_frame| {
            frame.encode_with_id(id, out, max_frame)
        })
    }

    /// Queues bytes framed already (a signal's, the same for every
    /// listener) for `to`; whether they were queued (not when `to` is
    /// gone, condemned, or cut off now for not reading).
    pub(in crate::broker) fn send_bytes(&mut self, to: ConnId, framed: &[u8]) -> bool {
        let live = self.peers.get(&to).is_some_and(|p| !p.condemned);
        let sent = self.send_with(to, |out, _| {
            out.extend_from_slice(framed);
            Ok(())
        });
        live && sent.is_ok() && self.peers.get(&to).is_some_and(|p| !p.condemned)
    }

    /// Forwards the deliver `frame` of `caller` to the publisher `to` as
    /// route `id`: stamped with the caller's identity if the publisher
    /// reads it, as a plain deliver if not.
    pub(in crate::broker) fn forward_deliver(
        &mut self,
        caller: ConnId,
        to: ConnId,
        frame: &Routed<'_>,
        id: u64,
    ) -> Result<(), Error> {
        if !self.peers.get(&to).is_some_and(|p| p.greeted) {
            return self.forward(to, frame, id);
        }
        let stamp = self.peers.get(&caller).map(|p| p.caller_bytes.clone());
        let Some(stamp) = stamp else {
            return self.forward(to, frame, id);
        };
        self.send_with(to, |out, max_frame| {
            frame.encode_deliver_from(id, &stamp, out, max_frame)
        })
    }

    pub(in crate::broker) fn send_with(
        &mut self,
        to: ConnId,
        encode: impl FnOnce(&mut Vec<u8>, usize) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let Some(peer) = self.peers.get_mut(&to) else {
            return Ok(());
        };
        if peer.condemned {
            return Ok(());
        }
        let limits = &self.config.limits;
        let before = peer.outbox.queued();
        match peer
            .outbox
            .append(limits.max_frame, limits.max_queued_bytes, encode)
        {
            Ok(()) => {
                Budget::adjust(&mut self.budget.output, before, peer.outbox.queued());
                if !peer.dirty {
                    peer.dirty = true;
                    self.dirty.push(to);
                    self.flush_requested = true;
                }
                Ok(())
            }
            Err(Full::Queue(e)) => {
                self.condemn(to, CloseReason::SlowConsumer(e));
                Ok(())
            }
            Err(Full::Frame(e)) => Err(e),
        }
    }

    /// Answers `id` on `to`; an answer too large to send becomes that
    /// error.
    pub(in crate::broker) fn reply(&mut self, to: ConnId, id: u64, outcome: Result<Reply, Error>) {
        if let Err(e) = &outcome {
            self.counters.errors.add(e.code);
            if e.code == ErrorCode::LimitExceeded {
                self.stats.limits_exceeded += 1;
            }
        }
        if let Err(e) = self.send(to, &Frame::Result { id, outcome }) {
            let _ = self.send(
                to,
                &Frame::Result {
                    id,
                    outcome: Err(e),
                },
            );
        }
    }
}
