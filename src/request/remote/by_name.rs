//! Calls by session name, without a subscription: [`RemoteStage::named`]
//! as a request target, [`Client::request`] to build such a request, and
//! [`Client::call_sync`] for programs without a loop of their own.
//!
//! The broker routes a call by the session's name whether or not the
//! caller subscribed (a subscription is for learning the methods and
//! being told when the session goes away), so a request to a named
//! session is an ordinary remote request: emits, recalls, timeouts,
//! deadlines and cancels behave as through a subscribed [`RemoteStage`].
//! An unpublished session ends the request with `no_such_session`, an
//! unknown method with `no_such_method`, each when the broker or the
//! publisher answers.

use super::RemoteStage;
use crate::client::Client;
use crate::error::{Error, ErrorCode};
use crate::request::{Request, RequestBuilder};
use crate::value::Args;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

impl RemoteStage {
    /// The session published as `session`, addressed through `client` by
    /// name alone: no subscription is made, and requests are never
    /// refused with `not_subscribed`. Its [`RemoteStage::methods`] is
    /// empty (nothing was asked), and [`RemoteStage::is_subscribed`]
    /// reports the client's subscription, if it has one.
    pub fn named(client: &Client, session: &str) -> RemoteStage {
        RemoteStage {
            client: client.clone(),
            session: Rc::from(session),
            methods: Rc::from(Vec::new()),
            by_name: true,
        }
    }
}

/// The final answer of [`Client::call_sync`]: its response type
/// (`return`, or one of the callee's choosing) and its args.
#[derive(Debug, Clone, PartialEq)]
pub struct CallReply {
    /// The final response's type.
    pub kind: String,
    /// Its args.
    pub args: Args,
}

impl Client {
    /// Starts building a request of `method` to the session published as
    /// `session`, by name, without subscribing
    /// ([`RemoteStage::named`]). Send it with [`RequestBuilder::send`];
    /// [`Request::keep`] lets it run to its end without holding the
    /// handle.
    pub fn request(&self, session: &str, method: &str) -> RequestBuilder {
        Request::to(RemoteStage::named(self, session), method)
    }

    /// Calls `method` of `session` (by name) and runs the client's loop
    /// until the final answer: the final response's type and args, or
    /// the error that ended the call (`timeout` after `timeout`, else
    /// after the client's default timeout if it has one; with neither
    /// it waits as long as the connection lasts). Emits are passed over:
    /// a callee that waits for a recall times out.
    ///
    /// For programs without a loop of their own. Inside a callback of
    /// the client's loop it refuses at once with `invalid_state` (it
    /// would have to run the loop from inside itself); make the call
    /// with [`Client::request`] there. Other work of the loop (timers,
    /// other clients, a broker on it) goes on while it waits.
    pub fn call_sync(
        &self,
        session: &str,
        method: &str,
        args: &Args,
        timeout: Option<Duration>,
    ) -> Result<CallReply, Error> {
        let lp = self.event_loop().clone();
        if lp.is_dispatching() {
            return Err(Error::new(
                ErrorCode::InvalidState,
                format!(
                    "a synchronous call ({session}.{method}) cannot be made inside a callback \
                     of its loop: it would run the loop from inside itself; call asynchronously there"
                ),
            ));
        }
        let outcome: Rc<RefCell<Option<Result<CallReply, Error>>>> = Rc::default();
        let slot = outcome.clone();
        let mut builder = self
            .request(session, method)
            .args(args.clone())
            .detached()
            .fallback(move |ctx| {
                let Some(rsp) = ctx.rsp() else { return Ok(()) };
                if rsp.is_final() {
                    *slot.borrow_mut() = Some(match rsp.error() {
                        Some(e) => Err(e.clone()),
                        None => Ok(CallReply {
                            kind: rsp.kind().to_string(),
                            args: ctx.args().clone(),
                        }),
                    });
                }
                Ok(())
            });
        if let Some(timeout) = timeout {
            builder = builder.timeout(timeout);
        }
        let request = builder.send()?;
        // A `stop` from a timer or another callback meanwhile does not
        // end the wait: only the final answer does.
        while outcome.borrow().is_none() {
            lp.run_until(Duration::from_secs(3600), || outcome.borrow().is_some())
                .map_err(|e| Error::io("the event loop failed", &e))?;
            if lp.is_shut_down() {
                break;
            }
        }
        drop(request);
        let result = outcome.borrow_mut().take();
        result.unwrap_or_else(|| {
            Err(Error::new(
                ErrorCode::InvalidState,
                "the loop was shut down during a synchronous call",
            ))
        })
    }
}
