//! The caller's side of [`Client`]'s API: starting a call (with a
//! deadline or an identity of its own), recalling into it, and
//! cancelling it.
//!
//! Separate from the session operations because a call is not an
//! operation on the broker: it is routed to a publisher, and its events
//! come back through `calls.rs`.

use super::{timeout_ms, CallEvent, CallId, Client};
use crate::client::calls::CallFn;
use crate::client::core::CallMeta;
use crate::error::{Error, ErrorCode};
use crate::value::Args;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

impl Client {
    /// Delivers a call of `method` on `session`. `on_event` receives its
    /// emits and then exactly one `Return` or `Error`, unless the call is
    /// cancelled first. Empty names are refused at once.
    pub fn call(
        &self,
        session: &str,
        method: &str,
        args: &Args,
        on_event: impl FnMut(CallId, CallEvent) + 'static,
    ) -> Result<CallId, Error> {
        self.call_as(None, session, method, args, on_event)
    }

    /// [`Client::call`] telling the publisher it has `timeout` left
    /// ([`Delivery::time_left`]); `None` tells it of no deadline. The
    /// client does not end the call when the time is up: the caller's own
    /// timer does (a request's timeout does it for requests). The
    /// client's [`ClientConfig::default_timeout`] does not apply here.
    ///
    /// [`Delivery::time_left`]: super::Delivery::time_left
    /// [`ClientConfig::default_timeout`]: super::ClientConfig::default_timeout
    pub fn call_within(
        &self,
        origin: Option<u64>,
        timeout: Option<Duration>,
        session: &str,
        method: &str,
        args: &Args,
        on_event: impl FnMut(CallId, CallEvent) + 'static,
    ) -> Result<CallId, Error> {
        self.start_call(origin, timeout_ms(timeout), session, method, args, on_event)
    }

    /// [`Client::call`] naming the request `origin`, which the publisher
    /// reads back as [`Delivery::origin`] (the call id when `None`).
    ///
    /// [`Delivery::origin`]: super::Delivery::origin
    pub fn call_as(
        &self,
        origin: Option<u64>,
        session: &str,
        method: &str,
        args: &Args,
        on_event: impl FnMut(CallId, CallEvent) + 'static,
    ) -> Result<CallId, Error> {
        self.start_call(origin, 0, session, method, args, on_event)
    }

    pub(crate) fn start_call(
        &self,
        origin: Option<u64>,
        timeout_ms: u32,
        session: &str,
        method: &str,
        args: &Args,
        on_event: impl FnMut(CallId, CallEvent) + 'static,
    ) -> Result<CallId, Error> {
        if session.is_empty() || method.is_empty() {
            return Err(Error::new(
                ErrorCode::InvalidArgument,
                "a call needs a session and a method",
            ));
        }
        let handler: CallFn = Rc::new(RefCell::new(on_event));
        // Held here too, so that a call the send refuses drops its handler
        // after the client's borrow ended.
        let kept = handler.clone();
        let started = self.shared.with(|core, io| {
            core.start_call(
                CallMeta { origin, timeout_ms },
                session,
                method,
                args,
                handler,
                io,
            )
        });
        drop(kept);
        let (id, failed) = started?;
        if let Some(effect) = failed {
            self.shared.defer(effect);
        }
        Ok(id)
    }

    /// Answers an emit of a call still in progress by running `method` of
    /// the callee within the same call. Fails with `invalid_state` if the
    /// call has ended.
    pub fn recall(&self, call: CallId, method: &str, args: &Args) -> Result<(), Error> {
        if method.is_empty() {
            return Err(Error::new(
                ErrorCode::InvalidArgument,
                "a recall needs a method",
            ));
        }
        self.shared
            .with(|core, io| core.recall(call, method, args, io))
    }

    /// Cancels a call: the publisher is told, and nothing more arrives
    /// for it, not even responses already on their way. Returns whether
    /// the call was still in progress; cancelling twice is harmless.
    ///
    /// A call cancelled in the loop turn it was made in (before the loop
    /// flushed this client's output) never leaves this process: the
    /// publisher never sees it and the broker keeps no route for it.
    /// Later, the publisher may have started it and then sees `Cancel`.
    pub fn cancel(&self, call: CallId) -> bool {
        // The handler is dropped here, after the client's borrow ended.
        self.shared.with(|core, io| core.cancel(call, io)).is_some()
    }
}
