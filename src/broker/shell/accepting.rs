//! Accepting connections: each listener's backlog drained into new
//! sockets handed to the core, and accepting paused and retried with a
//! back-off when descriptors or memory run out.
//!
//! Separate from the rest of the shell because it is the only place a
//! connection is born, with its own failure handling (see `accept.rs`).

use super::{PeerSource, Shell, Socket};
use crate::broker::accept::{accept_failure, AcceptFailure, AcceptRetry};
use crate::broker::peer::CloseReason;
use crate::error::Error;
use crate::transport::Connection;
use std::rc::Rc;

impl Shell {
    /// Accepts every pending connection of listener `index`; false if it
    /// had to stop for lack of resources (the rest wait in the backlog).
    pub(super) fn accept(&self, index: usize) -> bool {
        loop {
            let (accepted, token) = match self.io.borrow().listeners.get(index) {
                Some((listener, token)) => (listener.accept(), *token),
                None => return true,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                Err(e) => match accept_failure(&e) {
                    AcceptFailure::Retry => continue,
                    AcceptFailure::Pause => {
                        log::warn!(
                            target: "stagebus::broker",
                            error:% = e;
                            "cannot accept connections for now; accepting paused: {e}"
                        );
                        self.pause_accepting();
                        // Its backlog waits for the retry: a host watching
                        // the fds level-triggered must not watch it
                        // meanwhile.
                        self.lp.hold_input(token);
                        return false;
                    }
                },
            };
            // Over the connection limit, the stream is dropped: closed.
            let cred = stream.peer_cred();
            let Some(id) = self.core.borrow_mut().connect_from(cred) else {
                log::warn!(
                    target: "stagebus::broker",
                    peer = peer.as_str(), reason = "connection_limit";
                    "connection from {peer} refused: the broker is at its connection limit"
                );
                continue;
            };
            log::debug!(target: "stagebus::broker", conn = id, peer = peer.as_str(); "connection {id} from {peer}");
            let source = Rc::new(PeerSource {
                shell: self.me.clone(),
                id,
            });
            let (max_frame, max_queued, max_hello) = {
                let core = self.core.borrow();
                let limits = core.limits();
                (
                    limits.max_frame,
                    limits.max_queued_bytes,
                    limits.max_hello_frame,
                )
            };
            match Connection::open(stream, &self.lp, source, false, max_frame, max_queued) {
                Ok(mut conn) => {
                    // Until the hello, frames are small.
                    conn.limit_first_frame(max_hello);
                    let socket = Socket {
                        conn,
                        peer,
                        deadline: None,
                        tick: None,
                        write_deadline: None,
                    };
                    self.io.borrow_mut().sockets.insert(id, socket);
                }
                Err(e) => {
                    let e = Error::io("cannot register a connection", &e);
                    self.core
                        .borrow_mut()
                        .close(id, CloseReason::Unregistered(e));
                }
            }
            self.apply_effects();
        }
    }

    /// Arms the retry timer unless it is armed already.
    pub(super) fn pause_accepting(&self) {
        let mut retry = self.accept_retry.borrow_mut();
        if retry.timer.is_some() {
            return;
        }
        let delay = retry.next_delay();
        let weak = self.me.clone();
        retry.timer = Some(self.lp.add_timer(delay, move |_| {
            if let Some(shell) = weak.upgrade() {
                shell.accept_retry.borrow_mut().timer = None;
                shell.retry_accepting();
            }
        }));
    }

    /// Tries every listener again after accepting was paused; the back-off
    /// starts over once every backlog is drained.
    pub(super) fn retry_accepting(&self) {
        let tokens: Vec<_> = self.io.borrow().listeners.iter().map(|(_, t)| *t).collect();
        for token in &tokens {
            self.lp.resume_input(*token);
        }
        let count = tokens.len();
        // Stop at the first that fails: the others would fail alike.
        if (0..count).all(|index| self.accept(index)) {
            *self.accept_retry.borrow_mut() = AcceptRetry::default();
        }
        self.schedule_flush();
    }
}
