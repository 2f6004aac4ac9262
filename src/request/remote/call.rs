//! Both ends of the remote link on the wire: a request travels as a call
//! of a [`Client`] ([`Call`]: calls, recalls, cancels), and its callee
//! answers through the publisher's [`Delivery`] ([`Reply`]: emits,
//! returns, failures).

use crate::client::{timeout_ms, CallEvent, CallId, Client, Delivery};
use crate::error::Error;
use crate::request::ends::{Answer, CallerEnd};
use crate::value::Args;
use std::rc::Weak;
use std::time::Duration;

/// The caller's way down to a session behind a broker: one call of its
/// client.
pub(crate) struct Call {
    client: Client,
    id: CallId,
}

impl Call {
    /// Delivers a call of `method` on `session`, naming the request
    /// `origin` (its id in this process). Its events reach `caller` as
    /// answers, unless the caller has gone.
    pub(crate) fn start(
        client: &Client,
        session: &str,
        origin: u64,
        left: Option<Duration>,
        method: &str,
        args: &Args,
        caller: Weak<dyn CallerEnd>,
    ) -> Result<Call, Error> {
        let mut caller = Some(caller);
        let on_event = move |_, event| {
            // A final event lets go of the weak reference first, so that
            // the half may keep its allocation when the link lets go of
            // it ([`CallerEnd::let_go`]).
            let last = !matches!(event, CallEvent::Emit { .. });
            let weak = if last { caller.take() } else { caller.clone() };
            let Some(caller) = weak.and_then(|w| w.upgrade()) else {
                return;
            };
            caller.clone().receive(match event {
                CallEvent::Emit { kind, args } => Answer::received(&kind, args, false),
                CallEvent::Return { kind, args } => Answer::received(&kind, args, true),
                CallEvent::Error(e) => Answer::error(e),
            });
            if last {
                caller.let_go();
            }
        };
        let id = client.start_call(
            Some(origin),
            timeout_ms(left),
            session,
            method,
            args,
            on_event,
        )?;
        Ok(Call {
            client: client.clone(),
            id,
        })
    }

    /// Tells the publisher the caller ended the transaction. A call
    /// cancelled before the client flushed it never leaves the process.
    pub(crate) fn cancel(self) {
        self.client.cancel(self.id);
    }

    /// Runs `method` of the callee within the call.
    pub(crate) fn recall(&self, method: &str, args: &Args) -> Result<(), Error> {
        self.client.recall(self.id, method, args)
    }
}

/// The callee's way up to a caller in another program: the delivery of
/// its call. Boxed: the way up sits in every callee's record, local
/// requests' included, where a delivery inline tripled its size (a
/// local request+return pair's working set is its records).
pub(crate) struct Reply(Box<Delivery>);

impl Reply {
    pub(crate) fn new(delivery: Delivery) -> Reply {
        Reply(Box::new(delivery))
    }

    /// Who calls, as the broker said.
    pub(crate) fn caller(&self) -> Option<&crate::wire::CallerInfo> {
        self.0.caller()
    }

    /// Sends an emit (`last` false) or the return of type `kind`.
    pub(crate) fn respond(&self, kind: &str, args: &Args, last: bool) -> Result<(), Error> {
        if last {
            self.0.respond(kind, args)
        } else {
            self.0.emit(kind, args)
        }
    }

    /// Whether the caller waits for an answer (not for a one-way call).
    pub(crate) fn expects_answer(&self) -> bool {
        self.0.expects_answer()
    }

    /// Ends the call with `error` for the caller. A delivery already
    /// ended (the connection closed) has nobody to tell.
    pub(crate) fn fail(&self, error: Error) {
        let _ = self.0.fail(error);
    }
}
