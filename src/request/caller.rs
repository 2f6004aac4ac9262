//! The caller's half of a transaction: its record ([`CallerRec`]), the
//! caller's handle ([`Request`]) and what its response handlers see
//! ([`Response`]). Cancels and recalls go down through the request's
//! [`Down`] link, whatever is at its other end.

use super::callee::ServedRequest;
use super::dispatch::{run_handler, unhandled, Frame};
use super::ends::{Answer, CallerEnd, Inbox};
use super::link::Down;
use super::mappings::ResponseHandlers;
use super::names::TypeName;
use super::pool::{self, Pool, Pooled};
use super::scope::Scope;
use super::stage::{HandlerFn, Stage, StageInner};
use crate::error::{Error, ErrorCode};
use crate::event_loop::{Deferred, EventLoop, TimerId};
use crate::value::Args;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::{Rc, Weak};

thread_local! {
    /// The allocations of caller's records that ended (see [`pool`]).
    static FREE: Pool<CallerRec> = const { Pool::new() };
}

/// How many caller's records this thread keeps for reuse; with `clear`,
/// none first (see [`pool::kept`]).
#[cfg(test)]
pub(crate) fn kept_records(clear: bool) -> usize {
    pool::kept(&FREE, clear)
}

/// The caller's record of a request.
pub(crate) struct CallerRec {
    id: u64,
    method: Rc<str>,
    /// `None` only while the record is kept free (see [`pool`](super::pool)).
    lp: Option<EventLoop>,
    open: Cell<bool>,
    handlers: ResponseHandlers<HandlerFn>,
    /// The stage whose handler sent the request: its handlers may take
    /// the responses (by role, or by a name mapped with `on_method`).
    requester: Option<Weak<StageInner>>,
    /// The request this one was made on behalf of: a reference to it
    /// while this one is open (its response handlers may answer it), let
    /// go when this one ends.
    parent: Cell<Option<ServedRequest>>,
    data: Scope,
    link: RefCell<Down>,
    /// The timeout's timer (its raw id), 0 without one (the loop's timer
    /// ids start at 1): a word, where an `Option<TimerId>` took two.
    timer: Cell<u64>,
    /// While its caller let go of the handle with [`Request::keep`]: the
    /// key under which the loop holds the record until the request ends
    /// (or the loop shuts down); 0 when it does not (the loop's keys
    /// start at 1).
    kept: Cell<u64>,
    /// Answers from a callee on this loop, until their turn.
    inbox: Inbox,
}

impl CallerRec {
    /// An open request of `method` on `lp`, not linked yet.
    #[inline]
    pub(crate) fn new(
        id: u64,
        method: Rc<str>,
        lp: EventLoop,
        handlers: ResponseHandlers<HandlerFn>,
        requester: Option<&Stage>,
    ) -> Rc<CallerRec> {
        let requester = requester.map(Stage::downgrade);
        pool::take(&FREE, (id, method, lp, handlers, requester))
    }

    /// The loop of the request.
    #[inline]
    fn lp(&self) -> &EventLoop {
        self.lp
            .as_ref()
            .expect("a record in use has its loop (only free ones have none)")
    }

    #[inline]
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    #[inline]
    pub(crate) fn method(&self) -> &str {
        &self.method
    }

    /// Links the request to its callee, and to the request it was made
    /// on behalf of.
    #[inline]
    pub(crate) fn link(&self, link: Down, parent: Option<ServedRequest>) {
        *self.link.borrow_mut() = link;
        let old = self.parent.replace(parent);
        drop(old);
    }

    /// Ends the transaction with `timeout` when `timer` fires first.
    #[inline]
    pub(crate) fn set_timer(&self, timer: TimerId) {
        self.timer.set(timer.to_raw());
    }

    /// Ends the caller's half without a response: the callee is told.
    fn cancel(&self) -> bool {
        if !self.open.replace(false) {
            return false;
        }
        self.stop_timer();
        self.cut_link();
        self.data.clear();
        self.release_parent();
        self.release_kept();
        true
    }

    /// Has the loop let go of the record ([`Request::keep`]); the caller
    /// of this method holds another reference.
    #[inline]
    fn release_kept(&self) {
        let key = self.kept.take();
        if key != 0 {
            let held = self.lp().release(key);
            drop(held);
        }
    }

    /// Lets go of the parent request: this one can no longer answer it.
    #[inline]
    fn release_parent(&self) {
        let parent = self.parent.take();
        drop(parent);
    }

    fn stop_timer(&self) {
        let t = self.timer.take();
        if t != 0 {
            self.lp().cancel_timer(TimerId::from_raw(t));
        }
    }

    /// Tells the callee the transaction is over on this side.
    fn cut_link(&self) {
        let link = std::mem::replace(&mut *self.link.borrow_mut(), Down::None);
        link.cancel();
    }

    /// Ends the transaction with an error of this side's making (timeout):
    /// the callee is cancelled, the caller's error handler runs.
    pub(crate) fn fail_here(self: Rc<Self>, e: Error) {
        if !self.open.get() {
            return;
        }
        self.timer.take();
        self.cut_link();
        self.receive(Answer::error(e));
    }
}

/// The parts of a caller's record: id, method, loop, response handlers,
/// requesting stage.
type CallerParts = (
    u64,
    Rc<str>,
    EventLoop,
    ResponseHandlers<HandlerFn>,
    Option<Weak<StageInner>>,
);

impl Pooled for CallerRec {
    type Parts = CallerParts;

    fn make((id, method, lp, handlers, requester): CallerParts) -> CallerRec {
        CallerRec {
            id,
            method,
            lp: Some(lp),
            open: Cell::new(true),
            handlers,
            requester,
            parent: Cell::new(None),
            data: Scope::default(),
            link: RefCell::new(Down::None),
            timer: Cell::new(0),
            kept: Cell::new(0),
            inbox: Inbox::default(),
        }
    }

    fn empty(&mut self) {
        self.lp = None;
        self.handlers = ResponseHandlers::default();
        self.requester = None;
        *self.parent.get_mut() = None;
        self.data.clear();
        *self.link.get_mut() = Down::None;
        self.timer.set(0);
        self.kept.set(0);
        self.inbox.clear();
    }

    fn refill(&mut self, (id, method, lp, handlers, requester): CallerParts) {
        self.id = id;
        self.method = method;
        self.lp = Some(lp);
        self.open.set(true);
        self.handlers = handlers;
        self.requester = requester;
    }
}

impl CallerEnd for CallerRec {
    fn receive(self: Rc<Self>, answer: Answer) {
        if !self.open.get() {
            return;
        }
        let Answer {
            kind,
            args,
            last,
            error,
        } = answer;
        if last {
            self.open.set(false);
            self.stop_timer();
            *self.link.borrow_mut() = Down::None;
        }
        let rsp = Response {
            caller: self,
            kind,
            last,
            error,
        };
        let rec = &rsp.caller;
        // The handler's frame: the requester, and a copy of the parent
        // (the record keeps its own).
        let parent = rec.parent.take();
        let held = parent.clone();
        rec.parent.set(held);
        let frame = Frame {
            req: parent,
            stage: rec.requester.as_ref().and_then(Stage::from_weak),
        };
        match rec.handlers.choose(&rsp.kind, frame.stage.as_ref()) {
            Some(h) => run_handler(&h, &frame, &rsp.kind, &args, Some(&rsp)),
            None => unhandled(rec.id, &rec.method, &rsp.kind, rsp.error.as_deref()),
        }
        let Frame { req: parent, stage } = frame;
        drop(parent);
        if last {
            rec.data.clear();
            rec.release_parent();
            rec.release_kept();
        }
        drop(stage);
    }

    fn let_go(self: Rc<Self>) {
        pool::give(&FREE, self);
    }

    fn is_open(&self) -> bool {
        self.open.get()
    }

    fn cancel(&self) -> bool {
        CallerRec::cancel(self)
    }

    fn inbox(&self) -> &Inbox {
        &self.inbox
    }
}

/// The turn of an answer from a callee on this loop (see [`CallerEnd`]).
impl Deferred for CallerRec {
    fn run_deferred(self: Rc<Self>, _: &EventLoop) {
        if let Some(answer) = self.inbox.pop() {
            self.receive(answer);
        }
    }
}

/// The caller's handle on a transaction (POE::Request). Dropping it
/// cancels the transaction if it is still open.
pub struct Request {
    /// `None` only inside `drop`, which hands the record to the pool.
    rec: Option<Rc<CallerRec>>,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("id", &self.rec().id)
            .field("method", &self.rec().method)
            .field("open", &self.rec().open.get())
            .finish()
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        let Some(rec) = self.rec.take() else {
            return;
        };
        // An ended request (the usual drop, after its return) has
        // nothing to cancel: no call.
        if rec.kept.get() == 0 && rec.open.get() {
            rec.cancel();
        }
        pool::give(&FREE, rec);
    }
}

impl Request {
    /// The caller's handle on a request just linked.
    #[inline]
    pub(crate) fn from_rec(rec: Rc<CallerRec>) -> Request {
        Request { rec: Some(rec) }
    }

    #[inline]
    fn rec(&self) -> &Rc<CallerRec> {
        self.rec
            .as_ref()
            .expect("a request has its record until it is dropped")
    }

    /// The request's id; its responses carry the same id.
    pub fn id(&self) -> u64 {
        self.rec().id
    }

    /// The loop the request lives on (its target's).
    pub fn event_loop(&self) -> &EventLoop {
        self.rec().lp()
    }

    /// Whether the transaction is still open on the caller's side.
    pub fn is_open(&self) -> bool {
        self.rec().open.get()
    }

    /// The caller's data for this request (POE's expose): readable as
    /// `rsp.data()` in every response handler; dropped when the caller's
    /// side ends.
    pub fn data(&self) -> &Scope {
        &self.rec().data
    }

    /// Cancels the transaction and every request made on its behalf; the
    /// callee's on-cancel runs, and no response arrives afterwards.
    /// Returns whether it was open; cancelling twice is harmless.
    pub fn cancel(&self) -> bool {
        self.rec().cancel()
    }

    /// Lets go of the handle without cancelling: the request runs to its
    /// end (its final response, its timeout, a cancel from one of its
    /// handlers through [`Response::cancel`], the end of the request it
    /// was made for, or its client closing), and its handlers run as
    /// before. Fire and forget, for callers with nowhere to keep the
    /// handle (`sb_client_call`).
    ///
    /// The loop holds the request until it ends, and with it what it
    /// uses, its client among them: give it a timeout (or its client a
    /// default timeout) if its callee might never answer.
    /// [`EventLoop::shutdown`] (`sb_loop_free`) drops a request still
    /// open then, with its handlers, without a response. An ended
    /// request is simply dropped.
    pub fn keep(self) {
        if self.rec().open.get() {
            let key = self.rec().lp().keep(self.rec().clone());
            self.rec().kept.set(key);
        }
    }
}

/// A response as its handler sees it (POE's Emit / Return, or an error).
pub struct Response {
    caller: Rc<CallerRec>,
    kind: TypeName,
    last: bool,
    error: Option<Box<Error>>,
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
        self.caller.lp()
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
        self.error.as_deref()
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
                format!("cannot recall from upward '{}' response", &*self.kind),
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
        self.caller
            .link
            .borrow()
            .recall(self.caller.lp(), method, args)
    }

    /// Cancels the transaction from inside a response handler.
    pub fn cancel(&self) -> bool {
        self.caller.cancel()
    }
}
