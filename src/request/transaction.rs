//! Transactions: the caller's half ([`Request`]), the callee's half
//! ([`ServedRequest`]) and what travels between them ([`Response`]).
//!
//! Both halves are the same whether the callee is a stage on this loop or
//! a session behind a broker; only the link between them differs (a
//! deferred task on the loop, or a call through a [`Client`]).

use super::dispatch::{current, next_id, run_handler, run_method, unhandled};
use super::mappings::{HandlerRef, ResponseHandlers};
use super::names::{type_name, TypeName};
use super::remote::RemoteStage;
use super::scope::Scope;
use super::stage::{Ctx, HandlerFn, Stage, StageInner};
use crate::client::{CallEvent, CallId, Client, Delivery};
use crate::error::{Error, ErrorCode};
use crate::event_loop::{EventLoop, TimerId};
use crate::value::{Args, Value};
use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::{Rc, Weak};
use std::time::Duration;

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
            Target::Remote(r) => r.client().event_loop(),
        }
    }
}

/// The args of an error response: `code` and `message`.
fn error_args(e: &Error) -> Args {
    Args::new()
        .with("code", e.code.as_str())
        .with("message", e.message.as_str())
}

// ---------------------------------------------------------------------
// The caller's half.

enum CallerLink {
    None,
    Local(Served),
    Remote { client: Client, call: CallId },
}

pub(crate) struct CallerRec {
    id: u64,
    method: Rc<str>,
    lp: EventLoop,
    open: Cell<bool>,
    handlers: ResponseHandlers<HandlerFn>,
    requester: Option<Weak<StageInner>>,
    /// The request this one was made on behalf of: a reference to it
    /// while this one is open (its response handlers may answer it), let
    /// go when this one ends.
    parent: RefCell<Option<ServedRequest>>,
    data: Scope,
    link: RefCell<CallerLink>,
    timer: Cell<Option<TimerId>>,
}

impl CallerRec {
    /// Ends the caller's half without a response: the callee is told.
    fn cancel(&self) -> bool {
        if !self.open.replace(false) {
            return false;
        }
        self.stop_timer();
        self.cut_link();
        self.data.clear();
        self.release_parent();
        true
    }

    /// Lets go of the parent request: this one can no longer answer it.
    fn release_parent(&self) {
        let parent = self.parent.borrow_mut().take();
        drop(parent);
    }

    fn stop_timer(&self) {
        if let Some(t) = self.timer.take() {
            self.lp.cancel_timer(t);
        }
    }

    /// Tells the callee the transaction is over on this side.
    fn cut_link(&self) {
        let link = std::mem::replace(&mut *self.link.borrow_mut(), CallerLink::None);
        match link {
            CallerLink::None => {}
            CallerLink::Local(served) => served.cancelled(),
            CallerLink::Remote { client, call } => {
                client.cancel(call);
            }
        }
    }

    /// Ends the transaction with an error of this side's making (timeout):
    /// the callee is cancelled, the caller's error handler runs.
    fn fail_here(self: &Rc<Self>, e: Error) {
        if !self.open.get() {
            return;
        }
        self.timer.take();
        self.cut_link();
        self.receive(Cow::Borrowed("error"), error_args(&e), true, Some(e));
    }

    /// A response arrived. Dropped when this side has ended (responses in
    /// flight for a cancelled request are never delivered).
    fn receive(self: &Rc<Self>, kind: TypeName, args: Args, last: bool, error: Option<Error>) {
        if !self.open.get() {
            return;
        }
        if last {
            self.open.set(false);
            self.stop_timer();
            *self.link.borrow_mut() = CallerLink::None;
        }
        let rsp = Response {
            caller: self.clone(),
            kind,
            last,
            error,
        };
        let requester = self.requester.as_ref().and_then(Stage::from_weak);
        let parent = self.parent.borrow().clone();
        match self.handlers.choose(&rsp.kind, requester.as_ref()) {
            Some(h) => run_handler(
                &h,
                requester.as_ref(),
                &rsp.kind,
                &args,
                parent.as_ref(),
                Some(&rsp),
            ),
            None => {
                let what = match &rsp.error {
                    Some(e) => format!(" ({e})"),
                    None => String::new(),
                };
                unhandled(&format!(
                    "unhandled '{}' response to request {} ({}){what}",
                    rsp.kind, self.id, self.method
                ));
            }
        }
        drop(parent);
        if last {
            self.data.clear();
            self.release_parent();
        }
    }
}

/// The caller's handle on a transaction (POE::Request). Dropping it
/// cancels the transaction if it is still open.
pub struct Request(Rc<CallerRec>);

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("id", &self.0.id)
            .field("method", &self.0.method)
            .field("open", &self.0.open.get())
            .finish()
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

impl Request {
    /// Starts building a request of `method` to `target`.
    pub fn to(target: impl Into<Target>, method: &str) -> RequestBuilder {
        RequestBuilder {
            target: target.into(),
            method: Rc::from(method),
            args: Args::new(),
            handlers: ResponseHandlers::default(),
            timeout: None,
            parent: None,
        }
    }

    /// The request's id; its responses carry the same id.
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// The loop the request lives on (its target's).
    pub fn event_loop(&self) -> &EventLoop {
        &self.0.lp
    }

    /// Whether the transaction is still open on the caller's side.
    pub fn is_open(&self) -> bool {
        self.0.open.get()
    }

    /// The caller's data for this request (POE's expose): readable as
    /// `rsp.data()` in every response handler; dropped when the caller's
    /// side ends.
    pub fn data(&self) -> &Scope {
        &self.0.data
    }

    /// Cancels the transaction and every request made on its behalf; the
    /// callee's on-cancel runs, and no response arrives afterwards.
    /// Returns whether it was open; cancelling twice is harmless.
    pub fn cancel(&self) -> bool {
        self.0.cancel()
    }
}

/// Builds a [`Request`]; [`RequestBuilder::send`] posts it.
pub struct RequestBuilder {
    target: Target,
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
        if let Target::Remote(remote) = &self.target {
            // A closed client still takes the call and ends it with
            // `broker_gone`, the reason that matters more.
            if !remote.is_subscribed() && !remote.client().is_closed() {
                return Err(Error::new(
                    ErrorCode::NotSubscribed,
                    format!(
                        "not subscribed to session '{}' (unsubscribed, or the session went away)",
                        remote.session()
                    ),
                ));
            }
        }
        let lp = self.target.event_loop().clone();
        let rec = Rc::new(CallerRec {
            id: next_id(),
            method: self.method.clone(),
            lp: lp.clone(),
            open: Cell::new(true),
            handlers: self.handlers,
            requester: stage_now.as_ref().map(Stage::downgrade),
            parent: RefCell::new(None),
            data: Scope::default(),
            link: RefCell::new(CallerLink::None),
            timer: Cell::new(None),
        });
        let link = match &self.target {
            Target::Local(stage) => {
                let served = Served::new(
                    rec.id,
                    rec.id,
                    stage.clone(),
                    self.method.clone(),
                    ServedLink::Local(Rc::downgrade(&rec)),
                );
                let (s, args) = (served.clone(), self.args);
                lp.defer(move |_| {
                    if s.is_open() {
                        run_method(&s, s.method(), &args);
                    }
                });
                CallerLink::Local(served)
            }
            Target::Remote(remote) => {
                let weak = Rc::downgrade(&rec);
                let call = remote.client().call_as(
                    Some(rec.id),
                    remote.session(),
                    &self.method,
                    &self.args,
                    move |_, event| {
                        let Some(rec) = weak.upgrade() else { return };
                        match event {
                            CallEvent::Emit { kind, args } => {
                                rec.receive(Cow::Owned(kind), args, false, None)
                            }
                            CallEvent::Return { kind, args } => {
                                rec.receive(Cow::Owned(kind), args, true, None)
                            }
                            CallEvent::Error(e) => {
                                rec.receive(Cow::Borrowed("error"), error_args(&e), true, Some(e))
                            }
                        }
                    },
                )?;
                CallerLink::Remote {
                    client: remote.client().clone(),
                    call,
                }
            }
        };
        *rec.link.borrow_mut() = link;
        if let Some(p) = &parent {
            p.0.adopt(&rec);
        }
        *rec.parent.borrow_mut() = parent;
        if let Some(after) = self.timeout {
            let weak = Rc::downgrade(&rec);
            let timer = lp.add_timer(after, move |_| {
                if let Some(rec) = weak.upgrade() {
                    let e = Error::new(
                        ErrorCode::Timeout,
                        format!(
                            "request {} ({}) got no final response within {} ms",
                            rec.id,
                            rec.method,
                            after.as_millis()
                        ),
                    );
                    rec.fail_here(e);
                }
            });
            rec.timer.set(Some(timer));
        }
        Ok(Request(rec))
    }
}

// ---------------------------------------------------------------------
// What the caller receives.

/// A response as its handler sees it (POE's Emit / Return, or an error).
pub struct Response {
    caller: Rc<CallerRec>,
    kind: TypeName,
    last: bool,
    error: Option<Error>,
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("id", &self.caller.id)
            .field("kind", &self.kind)
            .field("final", &self.last)
            .field("error", &self.error)
            .finish()
    }
}

impl Response {
    /// The loop the request it answers lives on.
    pub fn event_loop(&self) -> &EventLoop {
        &self.caller.lp
    }

    /// The id of the request this answers.
    pub fn id(&self) -> u64 {
        self.caller.id
    }

    /// The response type (`emit`, `return`, `error`, or the callee's own).
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// Whether it ends the transaction (a return or an error).
    pub fn is_final(&self) -> bool {
        self.last
    }

    /// The error, for error responses.
    pub fn error(&self) -> Option<&Error> {
        self.error.as_ref()
    }

    /// The data the caller attached to the request (POE's rsp scope).
    pub fn data(&self) -> &Scope {
        &self.caller.data
    }

    /// Answers an emit: runs `method` of the callee within the same
    /// transaction, where it sees the same request and its data.
    ///
    /// Fails with `invalid_state` on a final response or an ended
    /// transaction.
    pub fn recall(&self, method: &str, args: &Args) -> Result<(), Error> {
        if self.last {
            return Err(Error::new(
                ErrorCode::InvalidState,
                format!("cannot recall from upward '{}' response", self.kind),
            ));
        }
        if method.is_empty() {
            return Err(Error::new(
                ErrorCode::InvalidArgument,
                "Message must have a 'method' parameter",
            ));
        }
        if !self.caller.open.get() {
            return Err(Error::new(
                ErrorCode::InvalidState,
                "Cannot recall message: The requester has no context",
            ));
        }
        match &*self.caller.link.borrow() {
            CallerLink::Local(served) => {
                let (served, method, args) = (served.clone(), method.to_string(), args.clone());
                self.caller.lp.defer(move |_| {
                    if served.is_open() {
                        run_method(&served, &method, &args);
                    }
                });
                Ok(())
            }
            CallerLink::Remote { client, call } => client.recall(*call, method, args),
            CallerLink::None => Err(Error::new(
                ErrorCode::InvalidState,
                "Cannot recall message: The requester has no context",
            )),
        }
    }

    /// Cancels the transaction from inside a response handler.
    pub fn cancel(&self) -> bool {
        self.caller.cancel()
    }
}

// ---------------------------------------------------------------------
// The callee's half.

pub(crate) enum ServedLink {
    Local(Weak<CallerRec>),
    Remote(Delivery),
}

pub(crate) struct ServedRec {
    id: u64,
    caller_id: u64,
    /// The serving stage's loop, kept apart from the stage (which may be
    /// gone once the request ended).
    lp: EventLoop,
    stage: Weak<StageInner>,
    /// The stage, held while the request is open (a request being served
    /// keeps its stage alive, as a local request keeps its target) and
    /// let go when it ends: a handle the stage's own handlers keep after
    /// the end forms no lasting cycle.
    holds: RefCell<Option<Stage>>,
    method: Rc<str>,
    open: Cell<bool>,
    data: Scope,
    children: RefCell<Vec<Weak<CallerRec>>>,
    link: ServedLink,
    on_cancel: RefCell<Option<Box<dyn FnOnce()>>>,
    /// Whether a method of the stage ran on it (a local request cancelled
    /// before its turn never starts).
    started: Cell<bool>,
    on_end: RefCell<Option<Box<dyn FnOnce()>>>,
    /// How many [`ServedRequest`] handles exist: the callee's references.
    handles: Cell<usize>,
    /// Whether an emit reached the caller. From then on the caller may
    /// recall into the request, so the emit counts as a reference until
    /// the transaction ends (POE's emits hold the request's id).
    emitted: Cell<bool>,
}

/// The machinery's hold on a served request: the caller's link, a
/// publication's table of calls and queued tasks keep one. It is not a
/// reference of the callee's (see [`ServedRequest`]): holding it never
/// keeps an unanswered request open.
#[derive(Clone)]
pub(crate) struct Served(Rc<ServedRec>);

impl Served {
    /// Ends the request with an error for the caller.
    pub(crate) fn fail(&self, error: Error) -> Result<(), Error> {
        self.0.fail(error)
    }

    pub(crate) fn new(
        id: u64,
        caller_id: u64,
        stage: Stage,
        method: Rc<str>,
        link: ServedLink,
    ) -> Served {
        Served(Rc::new(ServedRec {
            id,
            caller_id,
            lp: stage.event_loop().clone(),
            stage: stage.downgrade(),
            holds: RefCell::new(Some(stage)),
            method,
            open: Cell::new(true),
            data: Scope::default(),
            children: RefCell::new(Vec::new()),
            link,
            on_cancel: RefCell::new(None),
            started: Cell::new(false),
            on_end: RefCell::new(None),
            handles: Cell::new(0),
            emitted: Cell::new(false),
        }))
    }

    /// A new reference of the callee's, for a handler.
    pub(crate) fn handle(&self) -> ServedRequest {
        ServedRequest::hold(&self.0)
    }

    pub(crate) fn method(&self) -> &str {
        &self.0.method
    }

    /// The serving stage: always there while the request is open.
    pub(crate) fn stage(&self) -> Option<Stage> {
        self.0.stage()
    }

    /// Records that a method of the stage ran on the request: from now
    /// on a cancel runs the stage's `on_cancel`.
    pub(crate) fn mark_started(&self) {
        self.0.started.set(true);
    }

    pub(crate) fn is_open(&self) -> bool {
        self.0.open.get()
    }

    /// The caller cancelled: cascade, tell the callee, drop its data.
    pub(crate) fn cancelled(&self) {
        if !self.0.open.replace(false) {
            return;
        }
        self.0.cancel_children();
        let hook = self.0.on_cancel.borrow_mut().take();
        match hook {
            Some(f) => f(),
            None if self.0.started.get() => {
                let stage = self.0.stage();
                let handler = stage.as_ref().and_then(|s| s.handler("on_cancel"));
                if let Some(h) = handler {
                    let handle = self.handle();
                    run_handler(
                        &h,
                        stage.as_ref(),
                        "cancel",
                        &Args::new(),
                        Some(&handle),
                        None,
                    );
                }
            }
            None => {}
        }
        self.0.data.clear();
        self.0.run_on_end();
    }

    /// Internal hook run once when the callee's side ends, either way.
    pub(crate) fn set_on_end(&self, f: impl FnOnce() + 'static) {
        *self.0.on_end.borrow_mut() = Some(Box::new(f));
    }
}

impl ServedRec {
    /// The serving stage: always there while the request is open.
    fn stage(&self) -> Option<Stage> {
        Stage::from_weak(&self.stage)
    }

    fn check_open(&self) -> Result<(), Error> {
        if self.open.get() {
            Ok(())
        } else {
            Err(Error::new(
                ErrorCode::InvalidState,
                "Cannot emit message: The requester has no context",
            ))
        }
    }

    /// Ends the request with an error for the caller.
    fn fail(&self, error: Error) -> Result<(), Error> {
        self.check_open()?;
        match &self.link {
            ServedLink::Local(weak) => {
                // A caller already gone has nobody to tell.
                if let Some(caller) = weak.upgrade() {
                    let weak = weak.clone();
                    caller.lp.defer(move |_| {
                        if let Some(c) = weak.upgrade() {
                            c.receive(
                                Cow::Borrowed("error"),
                                error_args(&error),
                                true,
                                Some(error),
                            );
                        }
                    });
                }
            }
            ServedLink::Remote(d) => {
                let _ = d.fail(error);
            }
        }
        self.end();
        Ok(())
    }

    /// Records a request made on this one's behalf.
    fn adopt(&self, child: &Rc<CallerRec>) {
        let mut children = self.children.borrow_mut();
        if children.len() >= 32 && children.len().is_power_of_two() {
            children.retain(|c| c.upgrade().is_some_and(|c| c.open.get()));
        }
        children.push(Rc::downgrade(child));
    }

    /// The callee's side ends: children cancelled, data dropped.
    fn end(&self) {
        self.open.set(false);
        self.cancel_children();
        // Dropped outside the borrow: it may hold a reference to this
        // request (a C on-cancel's user data, say).
        let on_cancel = self.on_cancel.borrow_mut().take();
        drop(on_cancel);
        self.data.clear();
        self.run_on_end();
    }

    /// The last step of either end: the internal hook, then the stage is
    /// let go.
    fn run_on_end(&self) {
        let on_end = self.on_end.borrow_mut().take();
        if let Some(f) = on_end {
            f();
        }
        let stage = self.holds.borrow_mut().take();
        drop(stage);
    }

    fn cancel_children(&self) {
        let children = std::mem::take(&mut *self.children.borrow_mut());
        for child in children {
            if let Some(child) = child.upgrade() {
                child.cancel();
            }
        }
    }

    /// The callee's last reference went away: an open request that no
    /// emit keeps open can never be answered now.
    fn unreferenced(&self) {
        if !self.open.get() || self.emitted.get() {
            return;
        }
        let e = Error::new(
            ErrorCode::Unanswered,
            format!(
                "request {} ('{}' of stage '{}') was let go without an answer",
                self.id,
                self.method,
                self.stage().as_ref().map_or("", Stage::name)
            ),
        );
        let _ = self.fail(e);
    }
}

/// The callee's view of a request it serves: a counted reference.
///
/// A handler gets one for the request it serves ([`Ctx::req`]); clone it
/// to answer later (a slow method): the request stays answerable until
/// it returns, fails or is cancelled. When the last reference goes away
/// while the request is still open, the caller gets an `unanswered`
/// error (once), and the requests made on its behalf are cancelled: a
/// handler that neither answers nor keeps its request does not leave its
/// caller waiting.
///
/// References besides clones of this handle: an open request made on
/// its behalf (its response handlers may answer it), and an emit that
/// reached the caller, which may recall into the request until the
/// transaction ends (the caller's cancel or the callee's answer ends
/// it).
pub struct ServedRequest(Rc<ServedRec>);

impl Clone for ServedRequest {
    fn clone(&self) -> Self {
        ServedRequest::hold(&self.0)
    }
}

impl Drop for ServedRequest {
    fn drop(&mut self) {
        let left = self.0.handles.get() - 1;
        self.0.handles.set(left);
        if left == 0 {
            self.0.unreferenced();
        }
    }
}

impl fmt::Debug for ServedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServedRequest")
            .field("id", &self.0.id)
            .field("caller_id", &self.0.caller_id)
            .field("stage", &self.0.stage().as_ref().map(Stage::name))
            .field("method", &self.0.method)
            .field("open", &self.0.open.get())
            .finish()
    }
}

impl ServedRequest {
    fn hold(rec: &Rc<ServedRec>) -> ServedRequest {
        rec.handles.set(rec.handles.get() + 1);
        ServedRequest(rec.clone())
    }

    /// The request's id in this process, shared by its recalls: for a
    /// request from this loop the caller's [`Request::id`]; for one from
    /// another program a fresh id from this process's counter, so that
    /// live ids seen here are distinct even when several programs call.
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// The caller's id of the request: its [`Request::id`] in the calling
    /// process (equal to [`ServedRequest::id`] for a request from this
    /// loop). Unique only within the caller's process; useful to match
    /// logs of both sides.
    pub fn caller_id(&self) -> u64 {
        self.0.caller_id
    }

    /// The method the caller asked for.
    pub fn method(&self) -> &str {
        &self.0.method
    }

    /// The serving stage. A request holds its stage while it is open;
    /// afterwards this is `None` once the stage is gone.
    pub fn stage(&self) -> Option<Stage> {
        self.0.stage()
    }

    /// The loop the request is served on.
    pub(crate) fn event_loop(&self) -> &EventLoop {
        &self.0.lp
    }

    /// Whether it can still be answered.
    pub fn is_open(&self) -> bool {
        self.0.open.get()
    }

    /// The callee's data for this request (POE's req scope): seen again by
    /// recalls; dropped when the callee's side ends.
    pub fn data(&self) -> &Scope {
        &self.0.data
    }

    /// Sets what runs if the caller cancels (or times out, or goes away)
    /// before the request is answered. Without it the stage's `on_cancel`
    /// handler runs, if it has one and one of its methods ran on the
    /// request: a stage never hears of the cancel of a request it never
    /// saw (a local request cancelled before its turn).
    pub fn on_cancel(&self, f: impl FnOnce() + 'static) {
        *self.0.on_cancel.borrow_mut() = Some(Box::new(f));
    }

    /// Sends an interim response of type `kind` (default name: `emit`).
    /// Once one reached the caller, the request stays open without a
    /// reference of the callee's (the caller may recall into it).
    pub fn emit(&self, kind: &str, args: &Args) -> Result<(), Error> {
        self.respond(kind, args, false)
    }

    /// Sends the final response of type `kind` (default name: `return`);
    /// the request ends and every request made on its behalf is
    /// cancelled.
    pub fn ret(&self, kind: &str, args: &Args) -> Result<(), Error> {
        self.respond(kind, args, true)
    }

    /// Ends the request with an error for the caller.
    pub fn fail(&self, error: Error) -> Result<(), Error> {
        self.0.fail(error)
    }

    /// Gives up serving: the caller gets a `cancelled` error.
    pub fn cancel(&self) -> Result<(), Error> {
        self.fail(Error::new(
            ErrorCode::Cancelled,
            format!("request {} was cancelled by its callee", self.0.id),
        ))
    }

    /// Runs another method of the same stage on this request now, with
    /// new args (POE's pass_to).
    pub fn pass_to(&self, method: &str, args: &Args) -> Result<(), Error> {
        self.0.check_open()?;
        run_method(&Served(self.0.clone()), method, args);
        Ok(())
    }

    fn respond(&self, kind: &str, args: &Args, last: bool) -> Result<(), Error> {
        self.0.check_open()?;
        let kind = if kind.is_empty() {
            if last {
                "return"
            } else {
                "emit"
            }
        } else {
            kind
        };
        // Open, so its stage is held.
        let Some(stage) = self.0.stage() else {
            return Err(Error::new(ErrorCode::InvalidState, "the stage is gone"));
        };
        if let Some(h) = stage.intercept(kind) {
            // Self-interception: nothing reaches the caller. A final one
            // still ends the request, and the caller must hear that.
            run_handler(&h, Some(&stage), kind, args, Some(self), None);
            if last && self.is_open() {
                self.fail(Error::new(
                    ErrorCode::Cancelled,
                    format!("the callee intercepted its own '{kind}' response"),
                ))?;
            }
            return Ok(());
        }
        match &self.0.link {
            ServedLink::Local(weak) => {
                let (weak, kind, args) = (weak.clone(), type_name(kind), args.clone());
                stage.event_loop().defer(move |_| {
                    if let Some(c) = weak.upgrade() {
                        c.receive(kind, args, last, None);
                    }
                });
            }
            ServedLink::Remote(d) => {
                if last {
                    d.respond(kind, args)?;
                } else {
                    d.emit(kind, args)?;
                }
            }
        }
        if last {
            self.0.end();
        } else {
            self.0.emitted.set(true);
        }
        Ok(())
    }
}
