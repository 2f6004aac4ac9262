//! The link between the two halves of a transaction: cancel and recall
//! go down from the caller's half, emit, return and fail go up from the
//! callee's half. Each direction is a local link (both halves on this
//! loop: deferred tasks) or a remote link (a call through a client).
//!
//! An enum, not a trait object: a link is set up for every request, and
//! the enum costs no allocation. The link knows the halves only as the
//! traits of [`ends`](super::ends).

use super::ends::{CalleeEnd, CallerEnd};
use super::local;
use super::remote::{Call, RemoteStage, Reply};
use crate::error::{Error, ErrorCode};
use crate::event_loop::EventLoop;
use crate::value::Args;
use std::rc::{Rc, Weak};
use std::time::Duration;

/// The caller's half's way to its callee.
pub(crate) enum Down {
    /// Not linked yet, or the transaction has ended on the caller's side.
    None,
    /// A stage on this loop.
    Local(local::Down),
    /// A session behind a broker.
    Remote(Call),
}

impl Down {
    /// Posts a request to a callee on `lp` (see [`local::Down::start`]).
    #[inline]
    pub(crate) fn local(lp: &EventLoop, callee: Rc<dyn CalleeEnd>, args: Args) -> Down {
        Down::Local(local::Down::start(lp, callee, args))
    }

    /// Sends a request to `stage`'s session as request `origin`; its
    /// answers reach `caller`.
    pub(crate) fn remote(
        stage: &RemoteStage,
        origin: u64,
        left: Option<Duration>,
        method: &str,
        args: &Args,
        caller: Weak<dyn CallerEnd>,
    ) -> Result<Down, Error> {
        Ok(Down::Remote(
            stage.call(origin, left, method, args, caller)?,
        ))
    }

    /// Tells the callee the transaction is over on the caller's side.
    #[inline]
    pub(crate) fn cancel(self) {
        match self {
            Down::None => {}
            Down::Local(down) => down.cancel(),
            Down::Remote(call) => call.cancel(),
        }
    }

    /// Runs `method` of the callee within the transaction (the caller's
    /// loop is `lp`).
    #[inline]
    pub(crate) fn recall(&self, lp: &EventLoop, method: &str, args: &Args) -> Result<(), Error> {
        match self {
            Down::Local(down) => {
                down.recall(lp, method, args);
                Ok(())
            }
            Down::Remote(call) => call.recall(method, args),
            Down::None => Err(Error::new(
                ErrorCode::InvalidState,
                "Cannot recall message: The requester has no context",
            )),
        }
    }
}

/// The callee's half's way to its caller.
pub(crate) enum Up {
    /// A caller on this loop.
    Local(local::Up),
    /// A caller in another program, through a delivery.
    Remote(Reply),
}

impl Up {
    /// Who calls, for a caller in another program whose broker said.
    pub(crate) fn caller(&self) -> Option<&crate::wire::CallerInfo> {
        match self {
            Up::Local(_) => None,
            Up::Remote(reply) => reply.caller(),
        }
    }

    /// The way up to a caller on this loop.
    #[inline]
    pub(crate) fn local(caller: Weak<dyn CallerEnd>) -> Up {
        Up::Local(local::Up::new(caller))
    }

    /// Sends an emit (`last` false) or the return of type `kind` (the
    /// callee's loop is `lp`).
    #[inline]
    pub(crate) fn respond(
        &self,
        lp: &EventLoop,
        kind: &str,
        args: &Args,
        last: bool,
    ) -> Result<(), Error> {
        match self {
            Up::Local(up) => {
                up.respond(lp, kind, args, last);
                Ok(())
            }
            Up::Remote(reply) => reply.respond(kind, args, last),
        }
    }

    /// Whether the caller waits for an answer (not for a one-way call).
    #[inline]
    pub(crate) fn expects_answer(&self) -> bool {
        match self {
            Up::Local(_) => true,
            Up::Remote(reply) => reply.expects_answer(),
        }
    }

    /// Ends the transaction with `error` for the caller.
    #[inline]
    pub(crate) fn fail(&self, lp: &EventLoop, error: Error) {
        match self {
            Up::Local(up) => up.fail(lp, error),
            Up::Remote(reply) => reply.fail(error),
        }
    }
}
