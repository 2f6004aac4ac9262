//! The read path: a connection's frames handed to the core as they are
//! read, with backpressure, a per-read frame budget, the TLS client's
//! identity and federation's look at each frame.
//!
//! Separate because it is the shell's one busy loop over input; the
//! rest of the shell sets it up and cleans up after it.

use super::Shell;
use crate::broker::federate::{self, Seen};
use crate::broker::peer::CloseReason;
use crate::broker::ConnId;
use crate::transport::ReadOutcome;

/// How many frames one read of a connection hands to the core before the
/// loop turns to other sources (it comes back on the next turn): a
/// peer that pipelines many small requests does not hold up the rest.
const BODIES_PER_READ: usize = 256;

impl Shell {
    /// Hands what connection `id` sent to the core, frame by frame, as it
    /// is read; true when federation must check the client's claims (it
    /// rescinded).
    pub(super) fn read(&self, id: ConnId, hangup: bool) -> bool {
        let federated = self.fed.borrow().is_some();
        let mut claims = false;
        let mut held = false;
        let mut io = self.io.borrow_mut();
        let Some(socket) = io.sockets.get_mut(&id) else {
            return false;
        };
        let mut core = self.core.borrow_mut();
        // Not read now: held by federation (read again when it lets go),
        // closing (never read again), or backpressure: a peer with too
        // much output waiting is not read (its requests stay in its
        // socket) until it reads that output; the core then asks for a
        // resume. Meanwhile a host watching the fds level-triggered must
        // not watch it for reading.
        if self.held.borrow().contains(&id) || !core.reads(id) || core.over_high_water(id) {
            self.lp.hold_input(socket.conn.token());
            return false;
        }
        if core.monitoring() {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            core.set_clock(u64::try_from(now.as_millis()).unwrap_or(u64::MAX));
        }
        let mut completed = 0;
        let mut paused = false;
        // A TLS client's certificate subject, known once its handshake
        // is done: its identity, given before its hello is read.
        let subject = std::cell::RefCell::new(None);
        let handshaking = socket.conn.handshaking();
        let outcome = socket.conn.read_bodies_noting(
            hangup,
            |s| *subject.borrow_mut() = Some(s),
            |body| {
                if let Some(s) = subject.borrow_mut().take() {
                    core.set_identity(id, s);
                }
                completed += 1;
                let seen = if federated {
                    federate::look(self, &mut core, id, body)
                } else {
                    Seen::Core
                };
                match seen {
                    Seen::Core => core.receive(id, body),
                    Seen::CoreThenClaims => {
                        core.receive(id, body);
                        claims = true;
                    }
                    Seen::Held => held = true,
                    Seen::Answered => {}
                }
                paused = core.over_high_water(id);
                Ok(!paused && !held && completed < BODIES_PER_READ)
            },
        );
        if let Some(s) = subject.into_inner() {
            core.set_identity(id, s);
        }
        if held {
            self.held.borrow_mut().insert(id);
        }
        if held || paused {
            self.lp.hold_input(socket.conn.token());
        }
        if let Err(e) = socket.conn.after_read(&self.lp) {
            core.close(id, CloseReason::WriteFailed(e));
            return claims;
        }
        let held_back = !paused && completed >= BODIES_PER_READ;
        // Once per read: the liveness mark, the frame deadline (not for
        // whole frames held back) and the input budget.
        let mid_frame = socket.conn.mid_frame() && !paused && !held_back;
        core.read_done(id, completed > 0, mid_frame);
        core.input_buffered(id, socket.conn.buffered());
        // A connection closed or refused by one of its frames is finished
        // with; what its read ended with no longer matters.
        match outcome {
            _ if held_back && core.reads(id) => self.lp.again(socket.conn.token()),
            ReadOutcome::Drained => {}
            ReadOutcome::More if core.reads(id) => self.lp.again(socket.conn.token()),
            ReadOutcome::More => {}
            ReadOutcome::Closed(e) => {
                if handshaking {
                    self.tls_failures.set(self.tls_failures.get() + 1);
                    log::warn!(
                        target: "stagebus::broker",
                        conn = id, peer = socket.peer.as_str(), reason = "tls_handshake";
                        "connection {id} from {} closed: {}", socket.peer, e.message
                    );
                }
                core.input_ended(id, e)
            }
        }
        claims
    }
}
