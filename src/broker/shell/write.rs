//! The write path: the core's output written to each socket (or handed
//! to a federation link) on a flush, and the write deadline that closes a
//! peer which does not read.
//!
//! Separate from the read path and the effects: it runs once per turn
//! from the loop's flush, after every source was read.

use super::{Shell, Socket};
use crate::broker::peer::CloseReason;
use crate::broker::ConnId;
use crate::error::{Error, ErrorCode};
use crate::event_loop::{EventLoop, Flush};
use std::time::Duration;

impl Shell {
    /// Output of `id` made no progress within the write timeout: it is
    /// closed as a peer that does not read.
    pub(super) fn write_stalled(&self, id: ConnId) {
        if let Some(socket) = self.io.borrow_mut().sockets.get_mut(&id) {
            socket.write_deadline = None;
        }
        let timeout = self.core.borrow().limits().write_timeout;
        let e = Error::new(
            ErrorCode::LimitExceeded,
            format!(
                "no output could be written for {} ms: the peer does not read",
                timeout.as_millis()
            ),
        );
        self.core
            .borrow_mut()
            .close(id, CloseReason::SlowConsumer(e));
        self.apply_effects();
        self.schedule_flush();
    }

    /// After a write to `socket` (of `id`) that wrote `n` of `len`
    /// bytes: the write deadline is disarmed when all left, armed when
    /// bytes stay behind, and re-armed when some of them left.
    pub(super) fn write_deadline(
        &self,
        id: ConnId,
        socket: &mut Socket,
        n: usize,
        len: usize,
        after: Duration,
    ) {
        if n == len || n > 0 {
            if let Some(timer) = socket.write_deadline.take() {
                self.lp.cancel_timer(timer);
            }
        }
        if n < len && socket.write_deadline.is_none() {
            let weak = self.me.clone();
            socket.write_deadline = Some(self.lp.add_timer(after, move |_| {
                if let Some(shell) = weak.upgrade() {
                    shell.write_stalled(id);
                }
            }));
        }
    }
}

impl Flush for Shell {
    fn flush(&self, lp: &EventLoop) {
        let fed = self.federation();
        {
            let timeout = self.core.borrow().limits().write_timeout;
            let mut io = self.io.borrow_mut();
            self.core
                .borrow_mut()
                .write_output(|id, bytes| match io.sockets.get_mut(&id) {
                    Some(socket) => {
                        let n = socket.conn.write_from(lp, bytes)?;
                        self.write_deadline(id, socket, n, bytes.len(), timeout);
                        Ok(n)
                    }
                    None => match &fed {
                        Some(f) if f.is_link(id) => {
                            f.link_output(id, bytes);
                            Ok(bytes.len())
                        }
                        _ => Err(Error::new(
                            ErrorCode::BrokerGone,
                            "the connection has no socket",
                        )),
                    },
                });
        }
        if let Some(f) = fed {
            f.flush();
        }
        self.apply_effects();
        self.schedule_flush();
    }
}
