//! Closing the core: every table emptied into the [`Settle`] the shell
//! still has to run (operations and calls answered, deliveries
//! cancelled, handlers told).
//!
//! Separate because it is the one exit of the state machine, reached by
//! every way a connection ends.

use super::{Core, Status};
use crate::client::effects::{Closer, Effect, Outbox, Settle};
use crate::client::{CallEvent, CallId, Inbound};
use crate::error::Error;

impl Core {
    /// Closes because of `error` and empties every table into what the
    /// shell still has to run; `None` if closed already. The owner's close
    /// takes back the delivers of the calls it settles that have not
    /// left: no publisher starts a call its caller was told failed.
    pub fn close(&mut self, error: Error, by: Closer, out: &mut impl Outbox) -> Option<Settle> {
        let was_ready = matches!(self.status, Status::Ready(_))
            || self.reconnect.as_ref().is_some_and(|r| r.welcomed);
        self.close_as(error, by, was_ready, out)
    }

    /// [`Core::close`], telling the disconnect handler if `was_ready`.
    pub(in crate::client) fn close_as(
        &mut self,
        error: Error,
        by: Closer,
        was_ready: bool,
        out: &mut impl Outbox,
    ) -> Option<Settle> {
        if self.is_closed() {
            return None;
        }
        self.status = Status::Closed(error.clone());
        if let Some(r) = self.reconnect.as_mut() {
            r.held.clear();
        }
        if by == Closer::Owner {
            for id in self.calls.ids() {
                out.retract(id);
            }
        }
        let gone = Error::broker_gone(&error.message);
        let mut effects = Vec::new();
        if let Some(f) = self.on_connect.take() {
            effects.push(Effect::Connected(f, Err(error.clone())));
        }
        if was_ready && by == Closer::Failure {
            if let Some(f) = self.on_disconnect.take() {
                effects.push(Effect::Disconnected(f, error));
            }
        }
        for op in self.ops.drain_in_order() {
            effects.extend(op.fail(gone.clone()).map(|c| Effect::Completed(c, None)));
        }
        for (id, call) in self.calls.drain_in_order() {
            effects.push(Effect::Call(
                call,
                CallId(id),
                CallEvent::Error(gone.clone()),
            ));
        }
        let (publications, routes) = self.serving.take_all();
        for (route, serve) in routes {
            effects.push(Effect::Serve(serve, route, Inbound::Cancel));
        }
        self.subscriptions.clear();
        Some(Settle {
            effects,
            publications,
            listeners: self.listeners.take_all(),
            watchers: self.watchers.take_all(),
        })
    }
}
