//! Carrying out the core's effects: timers armed and disarmed, sockets
//! of closed connections lingered or dropped, federation told of closed
//! connections, reports answered, and a paused accept retried when a
//! descriptor came free.
//!
//! Separate because it is the one place the core's decisions turn into
//! I/O; every entry from the loop ends here.

use super::{Shell, Socket};
use crate::broker::core::Effect;
use crate::transport::{linger, CloseFn};
use crate::DEFAULT_LINGER;

impl Shell {
    /// Carries out what the core asked since the last call: deadlines
    /// armed and disarmed, sockets of closed connections deregistered and
    /// closed. A closed socket freed a descriptor, so a paused accept is
    /// retried at once. Returns at once when the core asked for nothing
    /// (the usual case: every entry from the loop ends here).
    pub(super) fn apply_effects(&self) {
        if !self.core.borrow().has_effects() {
            return;
        }
        let mut effects = std::mem::take(&mut *self.effects.borrow_mut());
        self.core.borrow_mut().take_effects(&mut effects);
        let mut freed = false;
        let mut reports = Vec::new();
        let mut closed = Vec::new();
        for effect in effects.drain(..) {
            match effect {
                Effect::Report { conn, op } => reports.push((conn, op)),
                Effect::ArmDeadline { conn, after } => {
                    if let Some(socket) = self.io.borrow_mut().sockets.get_mut(&conn) {
                        let weak = self.me.clone();
                        socket.deadline = Some(self.lp.add_timer(after, move |_| {
                            if let Some(shell) = weak.upgrade() {
                                shell.deadline_passed(conn);
                            }
                        }));
                    }
                }
                Effect::DisarmDeadline { conn } => {
                    let timer = self
                        .io
                        .borrow_mut()
                        .sockets
                        .get_mut(&conn)
                        .and_then(|s| s.deadline.take());
                    if let Some(timer) = timer {
                        // Cancelled, so that an embedding host is not
                        // woken for it.
                        self.lp.cancel_timer(timer);
                    }
                }
                Effect::ArmWait { wait, after } => {
                    let weak = self.me.clone();
                    let timer = self.lp.add_timer(after, move |_| {
                        if let Some(shell) = weak.upgrade() {
                            shell.wait_expired(wait);
                        }
                    });
                    self.io.borrow_mut().waits.insert(wait, timer);
                }
                Effect::DisarmWait { wait } => {
                    let timer = self.io.borrow_mut().waits.remove(&wait);
                    if let Some(timer) = timer {
                        self.lp.cancel_timer(timer);
                    }
                }
                Effect::ArmTick { conn, after } => {
                    if let Some(socket) = self.io.borrow_mut().sockets.get_mut(&conn) {
                        let weak = self.me.clone();
                        socket.tick = Some(self.lp.add_timer(after, move |_| {
                            if let Some(shell) = weak.upgrade() {
                                shell.tick(conn);
                            }
                        }));
                    }
                }
                Effect::Linger { conn, rest } => {
                    let socket = self.io.borrow_mut().sockets.remove(&conn);
                    if let Some(mut socket) = socket {
                        self.cancel_timers(&mut socket);
                        let queued = socket.conn.send_with(|out, _| {
                            out.extend_from_slice(&rest);
                            Ok(())
                        });
                        if queued.is_err() {
                            socket.conn.close(&self.lp);
                        } else {
                            let count = self.lingering.clone();
                            count.set(count.get() + 1);
                            let done: CloseFn = Box::new(move |_| count.set(count.get() - 1));
                            linger(socket.conn, &self.lp, DEFAULT_LINGER, Some(done));
                        }
                        freed = true;
                    }
                }
                Effect::Resume { conn } => {
                    if let Some(socket) = self.io.borrow().sockets.get(&conn) {
                        self.lp.again(socket.conn.token());
                    }
                }
                Effect::Close { conn, reason } => {
                    reason.log(conn);
                    closed.push(conn);
                    let socket = self.io.borrow_mut().sockets.remove(&conn);
                    if let Some(socket) = socket {
                        self.drop_socket(socket);
                        freed = true;
                    }
                }
            }
        }
        *self.effects.borrow_mut() = effects;
        if !closed.is_empty() {
            if let Some(fed) = self.federation() {
                for conn in closed {
                    self.held.borrow_mut().remove(&conn);
                    if fed.is_link(conn) {
                        fed.link_closed(conn);
                    } else {
                        fed.claims_closed(conn);
                    }
                }
            }
        }
        if !reports.is_empty() {
            for (conn, op) in reports {
                let report = self.report();
                self.core.borrow_mut().answer_report(conn, op, report);
            }
            // Answering may have closed a connection (its queue full).
            self.apply_effects();
        }
        // Descriptors came free: the backlog need not wait for the timer.
        if freed {
            let paused = self.accept_retry.borrow_mut().timer.take();
            if let Some(timer) = paused {
                self.lp.cancel_timer(timer);
                self.retry_accepting();
            }
        }
    }

    pub(super) fn drop_socket(&self, mut socket: Socket) {
        self.cancel_timers(&mut socket);
        socket.conn.close(&self.lp);
    }

    pub(super) fn cancel_timers(&self, socket: &mut Socket) {
        for timer in [
            socket.deadline.take(),
            socket.tick.take(),
            socket.write_deadline.take(),
        ]
        .into_iter()
        .flatten()
        {
            self.lp.cancel_timer(timer);
        }
    }
}
