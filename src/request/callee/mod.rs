//! The callee's half of a transaction: the request a stage serves.
//!
//! [`ServedRequest`] is the callee's counted handle; [`Served`] is the
//! machinery's hold, which does not count (the caller's link, a
//! publication's table of calls and queued tasks keep one). Answers go up
//! through the request's [`Up`] link, whatever is at its other end.

mod reuse;

#[cfg(test)]
pub(crate) use reuse::kept_records;

use super::children::Children;
use super::dispatch::{run_handler, run_method, Frame};
use super::ends::{CalleeEnd, CallerEnd};
use super::link::Up;
use super::pool;
use super::scope::Scope;
use super::stage::{Stage, StageInner};
use crate::error::{Error, ErrorCode};
use crate::event_loop::{Deferred, EventLoop};
use crate::value::Args;
use reuse::FREE;
use std::cell::Cell;
use std::fmt;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

/// The callee's record of a request.
pub(crate) struct ServedRec {
    id: u64,
    caller_id: u64,
    /// The serving stage's loop, kept apart from the stage (which may be
    /// gone once the request ended). `None` only while the record is
    /// kept free (see [`pool`]), as `link`.
    lp: Option<EventLoop>,
    stage: Weak<StageInner>,
    /// The stage, held while the request is open (a request being served
    /// keeps its stage alive, as a local request keeps its target) and
    /// let go when it ends: a handle the stage's own handlers keep after
    /// the end forms no lasting cycle.
    holds: Cell<Option<Stage>>,
    method: Rc<str>,
    open: Cell<bool>,
    data: Scope,
    /// The requests made on this one's behalf, cancelled when it ends.
    children: Children,
    link: Option<Up>,
    on_cancel: Cell<Option<Box<dyn FnOnce()>>>,
    /// Whether a method of the stage ran on it (a local request cancelled
    /// before its turn never starts).
    started: Cell<bool>,
    on_end: Cell<Option<Box<dyn FnOnce()>>>,
    /// When the caller stops waiting (its timeout, on this host's clock),
    /// inherited by the requests made on this one's behalf.
    deadline: Option<Instant>,
    /// How many [`ServedRequest`] handles exist: the callee's references.
    /// A `u32` (each handle is 8 bytes: more than 4 billion cannot
    /// exist), which packs with the flags: a word less in every record.
    handles: Cell<u32>,
    /// Whether an emit reached the caller. From then on the caller may
    /// recall into the request, so the emit counts as a reference until
    /// the transaction ends (POE's emits hold the request's id).
    emitted: Cell<bool>,
    /// The args of a request from this loop until its method's turn.
    args: Cell<Option<Args>>,
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

    /// An open request of `method` served by `stage`, answered through
    /// `link`: `id` is its id in this process, `caller_id` its caller's,
    /// `deadline` when its caller stops waiting.
    #[inline]
    pub(crate) fn new(
        id: u64,
        caller_id: u64,
        stage: Stage,
        method: Rc<str>,
        link: Up,
        deadline: Option<Instant>,
    ) -> Served {
        let parts = (id, caller_id, stage, method, link, deadline);
        Served(pool::take(&FREE, parts))
    }

    /// Lets go of this hold. The last holder of an ended request keeps
    /// its record's allocation for the next request (see [`pool`]), as
    /// [`CalleeEnd::let_go`] does for the local link.
    #[inline]
    pub(crate) fn let_go(self) {
        pool::give(&FREE, self.0);
    }

    /// Whether both are holds on the same request.
    #[inline]
    pub(crate) fn is(&self, other: &Served) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }

    /// A new reference of the callee's, for a handler.
    #[inline]
    pub(crate) fn handle(&self) -> ServedRequest {
        ServedRequest::hold(&self.0)
    }

    /// The method the caller asked for.
    #[inline]
    pub(crate) fn method(&self) -> &str {
        &self.0.method
    }

    /// Whether the request can still be answered.
    #[inline]
    pub(crate) fn is_open(&self) -> bool {
        self.0.open.get()
    }

    /// The method the caller asked for, as the request shares it.
    #[inline]
    pub(crate) fn method_name(&self) -> &Rc<str> {
        &self.0.method
    }

    /// The serving stage: always there while the request is open.
    #[inline]
    pub(crate) fn stage(&self) -> Option<Stage> {
        self.0.stage()
    }

    /// Records that a method of the stage ran on the request: from now
    /// on a cancel runs the stage's `on_cancel`.
    #[inline]
    pub(crate) fn mark_started(&self) {
        self.0.started.set(true);
    }

    /// The callee's half as the link sees it (the link keeps this hold).
    #[inline]
    pub(crate) fn into_callee_end(self) -> Rc<dyn CalleeEnd> {
        self.0
    }

    /// The caller cancelled: cascade, tell the callee, drop its data.
    pub(crate) fn cancelled(&self) {
        if !self.0.open.replace(false) {
            return;
        }
        self.0.children.cancel();
        let hook = self.0.on_cancel.take();
        match hook {
            Some(f) => f(),
            None if self.0.started.get() => {
                let stage = self.0.stage();
                let handler = stage.as_ref().and_then(|s| s.handler("on_cancel"));
                if let Some(h) = handler {
                    let frame = Frame {
                        req: Some(self.handle()),
                        stage,
                    };
                    run_handler(&h, &frame, "cancel", &Args::new(), None);
                }
            }
            None => {}
        }
        self.0.data.clear();
        self.0.run_on_end();
    }

    /// Internal hook run once when the callee's side ends, either way.
    pub(crate) fn set_on_end(&self, f: impl FnOnce() + 'static) {
        let old = self.0.on_end.replace(Some(Box::new(f)));
        drop(old);
    }
}

impl ServedRec {
    #[inline]
    fn lp(&self) -> &EventLoop {
        self.lp
            .as_ref()
            .expect("a record in use has its loop (only free ones have none)")
    }

    #[inline]
    fn link(&self) -> &Up {
        self.link
            .as_ref()
            .expect("a record in use has its link (only free ones have none)")
    }

    /// The serving stage: always there while the request is open.
    #[inline]
    fn stage(&self) -> Option<Stage> {
        Stage::from_weak(&self.stage)
    }

    #[inline]
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
        self.link().fail(self.lp(), error);
        self.end();
        Ok(())
    }

    /// Records a request made on this one's behalf.
    fn adopt(&self, child: Weak<dyn CallerEnd>) {
        self.children.adopt(child);
    }

    /// The callee's side ends: children cancelled, data dropped.
    #[inline]
    fn end(&self) {
        self.open.set(false);
        self.children.cancel();
        // Taken out of the record before it is dropped: it may hold a
        // reference to this request (a C on-cancel's user data, say).
        let on_cancel = self.on_cancel.take();
        drop(on_cancel);
        self.data.clear();
        self.run_on_end();
    }

    /// The last step of either end: the internal hook, then the stage is
    /// let go.
    #[inline]
    fn run_on_end(&self) {
        let on_end = self.on_end.take();
        if let Some(f) = on_end {
            f();
        }
        let stage = self.holds.take();
        drop(stage);
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
/// A handler gets one for the request it serves ([`Ctx::req`](super::Ctx::req)); clone it
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
    /// request from this loop the caller's [`Request::id`](super::Request::id); for one from
    /// another program a fresh id from this process's counter, so that
    /// live ids seen here are distinct even when several programs call.
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// Makes `child` (a request sent on this one's behalf) end with it:
    /// cancelling this request, or its end, cancels the child.
    #[inline]
    pub(crate) fn adopt(&self, child: Weak<dyn CallerEnd>) {
        self.0.adopt(child);
    }

    /// The caller's id of the request: its [`Request::id`](super::Request::id) in the calling
    /// process (equal to [`ServedRequest::id`] for a request from this
    /// loop). Unique only within the caller's process; useful to match
    /// logs of both sides.
    pub fn caller_id(&self) -> u64 {
        self.0.caller_id
    }

    /// Who calls, for a request that came through a broker: the
    /// caller's connection id, its uid, gid and pid where the broker
    /// knows them (a Unix socket), the name of the token it presented,
    /// and the name it gave itself. `None` for a request from this
    /// process (its caller is this process), or from a broker that did
    /// not say.
    pub fn caller(&self) -> Option<&crate::wire::CallerInfo> {
        self.0.link().caller()
    }

    /// The method the caller asked for.
    pub fn method(&self) -> &str {
        &self.0.method
    }

    /// When the caller stops waiting for this request, or `None` if it
    /// has no deadline. It is the caller's timeout (its own, inherited,
    /// or its client's default), travelling with the request; for a
    /// request from another program, the time it had left when sent,
    /// counted from its arrival here. The request is not ended here when
    /// it passes: the caller's side times out and cancels it. Requests
    /// made on this one's behalf inherit it (see
    /// [`RequestBuilder::timeout`](super::RequestBuilder::timeout)).
    pub fn deadline(&self) -> Option<Instant> {
        self.0.deadline
    }

    /// The time left before [`ServedRequest::deadline`] (zero once it
    /// passed), or `None` without a deadline.
    pub fn time_left(&self) -> Option<Duration> {
        self.0
            .deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// The serving stage. A request holds its stage while it is open;
    /// afterwards this is `None` once the stage is gone.
    pub fn stage(&self) -> Option<Stage> {
        self.0.stage()
    }

    /// The loop the request is served on.
    pub(crate) fn event_loop(&self) -> &EventLoop {
        self.0.lp()
    }

    /// Whether its caller waits for an answer: false for a one-way
    /// request ([`RemoteStage::post`](super::RemoteStage::post), D-Bus's
    /// NO_REPLY_EXPECTED), whose emits, return and errors are accepted
    /// and dropped (nobody receives them; the client counts them in
    /// [`Client::dropped_answers`](crate::Client::dropped_answers)). A
    /// callee may skip building an answer then.
    pub fn expects_answer(&self) -> bool {
        self.0.link().expects_answer()
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
        // The hook it replaces is dropped before the new one goes in:
        // its drop (it may hold this request) may set a hook itself, and
        // the one set last by this call is the one that stays.
        drop(self.0.on_cancel.take());
        let displaced = self.0.on_cancel.replace(Some(Box::new(f)));
        drop(displaced);
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
            let frame = Frame {
                req: Some(self.clone()),
                stage: Some(stage),
            };
            run_handler(&h, &frame, kind, args, None);
            if last && self.is_open() {
                self.fail(Error::new(
                    ErrorCode::Cancelled,
                    format!("the callee intercepted its own '{kind}' response"),
                ))?;
            }
            // The frame (and with it the stage) lives to here.
            drop(frame);
            return Ok(());
        }
        self.0.link().respond(self.0.lp(), kind, args, last)?;
        if last {
            self.0.end();
        } else if self.0.link().expects_answer() {
            // A one-way request's emits are dropped: no recall can
            // follow them, so they keep nothing open.
            self.0.emitted.set(true);
        }
        Ok(())
    }
}

impl CalleeEnd for ServedRec {
    fn run(self: Rc<Self>, method: Option<&str>, args: &Args) {
        if !self.open.get() {
            return;
        }
        let served = Served(self);
        let method = method.unwrap_or(&served.0.method);
        run_method(&served, method, args);
    }

    fn cancelled(self: Rc<Self>) {
        Served(self).cancelled();
    }

    fn keep_args(&self, args: Args) {
        self.args.set(Some(args));
    }

    fn let_go(self: Rc<Self>) {
        pool::give(&FREE, self);
    }
}

/// The turn of a request from this loop (see [`CalleeEnd`]).
impl Deferred for ServedRec {
    fn run_deferred(self: Rc<Self>, _: &EventLoop) {
        if let Some(args) = self.args.take() {
            self.run(None, &args);
        }
    }
}
