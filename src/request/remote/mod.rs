//! The remote link: requests between programs, through a [`Client`].
//!
//! The only part of the request machinery that knows the client:
//!
//! * this file: [`RemoteStage`], a subscribed session used as a request
//!   target;
//! * `call.rs`: the link's two ends on the wire, a client's call for the
//!   caller's half and a delivery for the callee's half;
//! * `publish.rs`: [`Stage::publish`](super::Stage::publish), which turns
//!   a publication's deliveries into requests its stage serves.

mod by_name;
mod call;
mod publish;

pub use by_name::CallReply;

pub(crate) use call::{Call, Reply};

use super::ends::CallerEnd;
use crate::client::Client;
use crate::error::{Error, ErrorCode};
use crate::event_loop::EventLoop;
use crate::value::Args;
use std::fmt;
use std::rc::{Rc, Weak};
use std::time::Duration;

/// A session subscribed through a client: requests to it travel through
/// the broker and behave exactly like requests to a local stage.
#[derive(Clone)]
pub struct RemoteStage {
    client: Client,
    session: Rc<str>,
    methods: Rc<[String]>,
    /// Addressed by name without a subscription
    /// ([`RemoteStage::named`]): requests are never refused here.
    by_name: bool,
}

impl fmt::Debug for RemoteStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteStage")
            .field("session", &self.session)
            .field("methods", &self.methods)
            .field("by_name", &self.by_name)
            .finish()
    }
}

impl RemoteStage {
    /// Subscribes to `session`; `done` gets the remote stage, or
    /// `no_such_session`.
    pub fn subscribe(
        client: &Client,
        session: &str,
        done: impl FnOnce(Result<RemoteStage, Error>) + 'static,
    ) {
        let c = client.clone();
        let name: Rc<str> = Rc::from(session);
        client.subscribe(session, move |result| {
            done(result.map(|methods| RemoteStage {
                client: c,
                session: name,
                methods: methods.into(),
                by_name: false,
            }))
        });
    }

    /// Subscribes to `session` through `client` like
    /// [`RemoteStage::subscribe`], waiting up to `wait` for the session
    /// to be published if it is not yet (see
    /// [`Client::subscribe_waiting`]): `done` runs exactly once, with the
    /// remote stage or `no_such_session` when the wait expired.
    pub fn subscribe_waiting(
        client: &Client,
        session: &str,
        wait: Duration,
        done: impl FnOnce(Result<RemoteStage, Error>) + 'static,
    ) {
        let c = client.clone();
        let name: Rc<str> = Rc::from(session);
        client.subscribe_waiting(session, wait, move |result| {
            done(result.map(|methods| RemoteStage {
                client: c,
                session: name,
                methods: methods.into(),
                by_name: false,
            }))
        });
    }

    /// The session's name.
    pub fn session(&self) -> &str {
        &self.session
    }

    /// The methods the publisher offers.
    pub fn methods(&self) -> &[String] {
        &self.methods
    }

    /// The client requests travel through.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Whether requests may go through this remote stage: its client is
    /// subscribed to the session. After [`RemoteStage::unsubscribe`], or
    /// once the session went away (rescinded, its publisher gone, the
    /// client closed), requests through it fail at once.
    pub fn is_subscribed(&self) -> bool {
        self.client.is_subscribed(&self.session)
    }

    /// Ends the subscription (see [`Client::unsubscribe`]); from this
    /// call on, requests through this remote stage (and every other of
    /// the same client and session: the subscription is the client's)
    /// fail at once with `not_subscribed`.
    pub fn unsubscribe(&self, done: impl FnOnce(Result<(), Error>) + 'static) -> Result<(), Error> {
        self.client.unsubscribe(&self.session, done)
    }

    /// The loop requests through it live on: its client's.
    pub(crate) fn event_loop(&self) -> &EventLoop {
        self.client.event_loop()
    }

    /// Refuses a request while the client is not subscribed to the
    /// session (`not_subscribed`). A closed client still takes the call
    /// and ends it with `broker_gone`, the reason that matters more.
    pub(crate) fn check_sendable(&self) -> Result<(), Error> {
        if !self.by_name && !self.is_subscribed() && !self.client.is_closed() {
            return Err(Error::new(
                ErrorCode::NotSubscribed,
                format!(
                    "not subscribed to session '{}' (unsubscribed, or the session went away)",
                    self.session
                ),
            ));
        }
        Ok(())
    }

    /// Sends a request of `method` to the session as request `origin`,
    /// telling the publisher it has `left` (if it has a deadline); its
    /// answers reach `caller`.
    pub(crate) fn call(
        &self,
        origin: u64,
        left: Option<Duration>,
        method: &str,
        args: &Args,
        caller: Weak<dyn CallerEnd>,
    ) -> Result<Call, Error> {
        Call::start(
            &self.client,
            &self.session,
            origin,
            left,
            method,
            args,
            caller,
        )
    }

    /// Sends a one-way request of `method` with `args` (POE's `post`,
    /// D-Bus's NO_REPLY_EXPECTED): the callee's method runs with
    /// [`ServedRequest::expects_answer`](super::ServedRequest::expects_answer)
    /// false, and nothing comes back, not even an error (see
    /// [`Client::post`]); no route is kept at the broker. Made while a
    /// handler serves a request, it carries that request's deadline (or
    /// the client's default timeout) as a call would, but it is nobody's
    /// child: there is nothing to cancel. Fails at once with
    /// `not_subscribed` (as a request would), `invalid_argument` for an
    /// empty method, `broker_gone` on a closed client.
    pub fn post(&self, method: &str, args: &Args) -> Result<(), Error> {
        if self.client.is_closed() {
            return Err(Error::broker_gone("the client is closed"));
        }
        self.check_sendable()?;
        let (_, parent) = super::dispatch::current();
        let left = parent
            .as_ref()
            .and_then(super::ServedRequest::deadline)
            .map(|d| d.saturating_duration_since(std::time::Instant::now()))
            .or_else(|| self.default_timeout());
        self.client.post_within(
            Some(super::dispatch::next_id()),
            left,
            &self.session,
            method,
            args,
        )
    }

    /// Listens for the signals of this session whose name matches
    /// `signal` (exact, `prefix*` or `*`): see [`Client::add_match`],
    /// of which this is the session's shorthand. The match is the
    /// client's and outlives this handle; end it with
    /// [`Client::remove_match`].
    pub fn on_signal(
        &self,
        signal: &str,
        on_signal: impl FnMut(&crate::client::Signal) + 'static,
        done: impl FnOnce(Result<(), Error>) + 'static,
    ) -> Result<crate::client::MatchId, Error> {
        self.client
            .add_match(&self.session, signal, on_signal, done)
    }

    /// The deadline its client gives requests that set none.
    #[inline]
    pub(crate) fn default_timeout(&self) -> Option<Duration> {
        self.client.default_timeout()
    }
}
