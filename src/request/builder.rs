//! How a request is made: its target ([`Target`]), its builder
//! ([`RequestBuilder`]), and [`RequestBuilder::send`], which checks it,
//! records the caller's half, links it to its callee (a local or a remote
//! link) and to the request it is made on behalf of.

use super::callee::{Served, ServedRequest};
use super::caller::{CallerRec, Request};
use super::dispatch::{current, next_id};
use super::ends::CallerEnd;
use super::link::{Down, Up};
use super::mappings::{HandlerRef, ResponseHandlers};
use super::names::method_name;
use super::remote::RemoteStage;
use super::stage::{Ctx, HandlerFn, Stage};
use crate::error::{Error, ErrorCode};
use crate::event_loop::EventLoop;
use crate::value::{Args, Value};
use std::fmt;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

/// Where a request goes: a stage on this loop, or a remote stage.
#[derive(Debug, Clone)]
pub enum Target {
    /// A stage on the same loop.
    Local(Stage),
    /// A session subscribed through a broker.
    Remote(RemoteStage),
}

impl From<&Stage> for Target {
    fn from(stage: &Stage) -> Target {
        Target::Local(stage.clone())
    }
}

impl From<&RemoteStage> for Target {
    fn from(stage: &RemoteStage) -> Target {
        Target::Remote(stage.clone())
    }
}

impl From<Stage> for Target {
    fn from(stage: Stage) -> Target {
        Target::Local(stage)
    }
}

impl From<RemoteStage> for Target {
    fn from(stage: RemoteStage) -> Target {
        Target::Remote(stage)
    }
}

impl Target {
    /// The loop the target lives on (a remote stage's: its client's).
    pub fn event_loop(&self) -> &EventLoop {
        match self {
            Target::Local(s) => s.event_loop(),
            Target::Remote(r) => r.event_loop(),
        }
    }
}

/// A builder's target. A remote stage is boxed: the builder is moved by
/// every call of its chain, and a remote stage inline made a local
/// request's builder too big to move without a call to `memcpy`.
enum To {
    Local(Stage),
    Remote(Box<RemoteStage>),
}

impl From<Target> for To {
    #[inline]
    fn from(target: Target) -> To {
        match target {
            Target::Local(stage) => To::Local(stage),
            Target::Remote(remote) => To::Remote(Box::new(remote)),
        }
    }
}

impl fmt::Debug for To {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            To::Local(stage) => f.debug_tuple("Local").field(stage).finish(),
            To::Remote(remote) => f.debug_tuple("Remote").field(remote).finish(),
        }
    }
}

impl To {
    fn event_loop(&self) -> &EventLoop {
        match self {
            To::Local(s) => s.event_loop(),
            To::Remote(r) => r.event_loop(),
        }
    }
}

impl Request {
    /// Starts building a request of `method` to `target`.
    #[inline]
    pub fn to(target: impl Into<Target>, method: &str) -> RequestBuilder {
        RequestBuilder {
            target: To::from(target.into()),
            method: method_name(method),
            args: Args::new(),
            handlers: ResponseHandlers::default(),
            timeout: None,
            parent: None,
        }
    }
}

/// Builds a [`Request`]; [`RequestBuilder::send`] posts it.
pub struct RequestBuilder {
    target: To,
    method: Rc<str>,
    args: Args,
    handlers: ResponseHandlers<HandlerFn>,
    timeout: Option<Duration>,
    parent: Option<Option<ServedRequest>>,
}

impl fmt::Debug for RequestBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestBuilder")
            .field("target", &self.target)
            .field("method", &self.method)
            .field("args", &self.args)
            .field("handlers", &self.handlers)
            .finish_non_exhaustive()
    }
}

impl RequestBuilder {
    /// The loop the request will live on (its target's).
    pub fn event_loop(&self) -> &EventLoop {
        self.target.event_loop()
    }

    /// Sets the args.
    #[inline]
    pub fn args(mut self, args: Args) -> Self {
        self.args = args;
        self
    }

    /// Sets one arg.
    pub fn arg(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.args.insert(name, value);
        self
    }

    /// Handles responses of type `kind` (`return`, `emit`, `error`, or a
    /// type of the callee's choosing; a leading `on_` is ignored) with a
    /// closure.
    pub fn on(
        mut self,
        kind: &str,
        handler: impl Fn(&Ctx<'_>) -> Result<(), Error> + 'static,
    ) -> Self {
        self.handlers
            .map(kind, HandlerRef::Closure(Rc::new(handler)));
        self
    }

    /// Handles responses of type `kind` with an already shared closure.
    pub fn on_handler(mut self, kind: &str, handler: HandlerFn) -> Self {
        self.handlers.map(kind, HandlerRef::Closure(handler));
        self
    }

    /// Handles responses of type `kind` with the requesting stage's
    /// handler named `method` (used verbatim).
    pub fn on_method(mut self, kind: &str, method: &str) -> Self {
        self.handlers.map(kind, HandlerRef::Method(method.into()));
        self
    }

    /// Handles every response type that no other mapping handles.
    pub fn fallback(mut self, handler: impl Fn(&Ctx<'_>) -> Result<(), Error> + 'static) -> Self {
        self.handlers.set_fallback(Rc::new(handler));
        self
    }

    /// Names the request's purpose: a response of type T then runs the
    /// requesting stage's `on_<role>_<T>` unless `on(T)` maps it.
    pub fn role(mut self, role: &str) -> Self {
        self.handlers.set_role(role);
        self
    }

    /// Ends the transaction with a `timeout` error if no final response
    /// came within `after`; the callee is cancelled.
    ///
    /// The deadline travels with the request: its callee reads the time
    /// left ([`ServedRequest::time_left`], [`Ctx::time_left`]), in
    /// another program too. A request made while serving one (its child)
    /// inherits the parent's deadline; a timeout of its own applies only
    /// when it ends sooner (as in gRPC, the earlier deadline wins), and a
    /// child whose inherited deadline passes fails with `timeout` like
    /// the parent. A request with neither gets its client's
    /// [`ClientConfig::default_timeout`](crate::ClientConfig::default_timeout)
    /// if it goes to a remote stage (off by default).
    pub fn timeout(mut self, after: Duration) -> Self {
        self.timeout = Some(after);
        self
    }

    /// Makes the request a child of `parent` instead of the request being
    /// served now, so cancelling `parent` cancels it.
    pub fn parent(mut self, parent: &ServedRequest) -> Self {
        self.parent = Some(Some(parent.clone()));
        self
    }

    /// Makes the request a child of nothing, even inside a handler.
    pub fn detached(mut self) -> Self {
        self.parent = Some(None);
        self
    }

    /// Posts the request. The callee runs it on a later turn, after the
    /// requests posted to it before (FIFO). Cancelled or dropped before
    /// the sender returns to the loop, it never reaches the callee, local
    /// or remote (see the module's guarantees).
    ///
    /// Fails at once with `invalid_argument` for an empty method, with
    /// `cancelled` when the parent has already ended, and with
    /// `not_subscribed` for a remote stage whose subscription has ended
    /// (see [`RemoteStage::is_subscribed`]), and with `invalid_state` when
    /// the loop was shut down (freed): nothing would ever deliver it.
    pub fn send(self) -> Result<Request, Error> {
        if self.method.is_empty() {
            return Err(Error::new(
                ErrorCode::InvalidArgument,
                "Request is missing the 'method' parameter",
            ));
        }
        if self.event_loop().is_shut_down() {
            return Err(Error::new(
                ErrorCode::InvalidState,
                format!(
                    "cannot send '{}': the target's loop was freed (shut down)",
                    self.method
                ),
            ));
        }
        let (stage_now, req_now) = current();
        let parent = match self.parent {
            Some(explicit) => explicit,
            None => req_now,
        };
        if let Some(p) = &parent {
            if !p.is_open() {
                return Err(Error::new(
                    ErrorCode::Cancelled,
                    format!("the parent request {} has ended", p.id()),
                ));
            }
        }
        if let To::Remote(remote) = &self.target {
            remote.check_sendable()?;
        }
        // The earlier of its own deadline and its parent's; with neither,
        // its client's default. No clock is read without a deadline.
        let inherited = parent.as_ref().and_then(ServedRequest::deadline);
        let own = self.timeout.or_else(|| match &self.target {
            To::Remote(r) if inherited.is_none() => r.default_timeout(),
            _ => None,
        });
        let now = (own.is_some() || inherited.is_some()).then(Instant::now);
        let deadline = match (now.zip(own).map(|(n, t)| n + t), inherited) {
            (Some(mine), Some(theirs)) => Some(mine.min(theirs)),
            (mine, theirs) => mine.or(theirs),
        };
        let lp = self.target.event_loop().clone();
        let rec = CallerRec::new(
            next_id(),
            self.method.clone(),
            lp.clone(),
            self.handlers,
            stage_now.as_ref(),
        );
        // The builder's stage, name and weak handle move into the link
        // (no clone and drop of each per request).
        let caller: Weak<dyn CallerEnd> = Rc::<CallerRec>::downgrade(&rec);
        let child = parent.as_ref().map(|_| caller.clone());
        let link = match self.target {
            To::Local(stage) => {
                // A request from this loop keeps its caller's id.
                let served = Served::new(
                    rec.id(),
                    rec.id(),
                    stage,
                    self.method,
                    Up::local(caller),
                    deadline,
                );
                Down::local(&lp, served.into_callee_end(), self.args)
            }
            To::Remote(remote) => {
                let left = now
                    .zip(deadline)
                    .map(|(n, d)| d.saturating_duration_since(n));
                Down::remote(&remote, rec.id(), left, &self.method, &self.args, caller)?
            }
        };
        if let (Some(p), Some(child)) = (&parent, child) {
            p.adopt(child);
        }
        rec.link(link, parent);
        if let Some((now, deadline)) = now.zip(deadline) {
            let after = deadline.saturating_duration_since(now);
            let whose = if own.is_some_and(|t| now + t <= deadline) {
                ""
            } else {
                " (the deadline of the request it was made for)"
            };
            let weak = Rc::downgrade(&rec);
            let timer = lp.add_timer(after, move |_| {
                if let Some(rec) = weak.upgrade() {
                    let e = Error::new(
                        ErrorCode::Timeout,
                        format!(
                            "request {} ({}) got no final response within {} ms{whose}",
                            rec.id(),
                            rec.method(),
                            after.as_millis()
                        ),
                    );
                    rec.fail_here(e);
                }
            });
            rec.set_timer(timer);
        }
        Ok(Request::from_rec(rec))
    }
}
