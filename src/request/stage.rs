//! Stages: named tables of handlers on a loop, and the context a handler
//! runs in.

use super::callee::ServedRequest;
use super::caller::Response;
use super::handlers::HandlerTable;
use super::mappings::Requester;
use super::names::{strip_on, ON, ON_MY};
use super::scope::Scope;
use crate::error::Error;
use crate::event_loop::EventLoop;
use crate::value::{Args, Value};
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::rc::{Rc, Weak};

/// A handler: runs with the context of one message. An `Err` ends the
/// request being served with that error (a die in Perl, a failing status
/// in C), so the caller always hears of it.
pub type HandlerFn = Rc<dyn Fn(&Ctx<'_>) -> Result<(), Error>>;

/// A stage: a named table of handlers living on a loop (POE::Stage).
///
/// Handlers are stored under the names given: requests for method `foo`
/// run `on_foo` if present, else `foo` (POE::Stage 0.05's rule); response
/// handlers are looked up verbatim (`on_return`, `on_knock_hello`, or the
/// name a request maps a type to); `on_my_<type>` intercepts the stage's
/// own responses; `on_cancel` hears of cancelled requests. Cloning gives
/// another handle to the same stage.
///
/// # Which handlers other programs may reach
///
/// Every handler has a [`HandlerKind`], kept per method name (the name
/// without a leading `on_`, so `foo` and `on_foo` share one):
///
/// * `cancel`, `return`, `emit`, `error` and every `my_<type>` (that is
///   `on_cancel`, `on_return`, `on_emit`, `on_error`, `on_my_<type>`)
///   are [`HandlerKind::Internal`] unless marked otherwise;
/// * every other name is a [`HandlerKind::Method`] unless marked
///   otherwise with [`Stage::set_kind`]. A name cannot tell a role
///   handler (`on_knock_hello`) or a name mapped with
///   [`RequestBuilder::on_method`](super::RequestBuilder::on_method)
///   from a method, so a stage that publishes without a method list
///   marks those [`HandlerKind::Internal`]; a method reached only by a
///   recall inside a dialogue is marked [`HandlerKind::RecallOnly`].
///
/// A publication exports the method list given to [`Stage::publish`], or
/// without one the stage's [`HandlerKind::Method`] names. Another program
/// reaches only those: a request for anything else is `no_such_method`
/// (refused by the broker), and a recall reaches the exported methods and
/// the [`HandlerKind::RecallOnly`] ones, anything else is
/// `no_such_method` (refused by the publisher, ending the request).
///
/// On the same loop nothing is filtered: a local request or recall may
/// run any handler by name, as in POE::Stage (the program owns both
/// sides; kinds guard the boundary to other programs only).
#[derive(Clone)]
pub struct Stage {
    pub(crate) inner: Rc<StageInner>,
}

pub(crate) struct StageInner {
    name: String,
    lp: EventLoop,
    handlers: RefCell<HandlerTable<HandlerFn>>,
    /// Kinds set with [`Stage::set_kind`], by method name (no `on_`).
    kinds: RefCell<HashMap<String, HandlerKind>>,
    data: Scope,
    /// Where the stage is published. A publication holds its stage
    /// weakly; the stage withdraws them when it goes.
    publications: RefCell<Vec<Box<dyn Withdraw>>>,
}

/// Something to undo when the stage goes: a publication (the remote
/// link's), which the stage knows only as this.
pub(crate) trait Withdraw {
    /// Whether there is still something to withdraw.
    fn is_live(&self) -> bool;
    /// Withdraws it (on a later turn: the stage may be going in the
    /// middle of anything).
    fn withdraw(self: Box<Self>);
}

impl Drop for StageInner {
    fn drop(&mut self) {
        for publication in self.publications.get_mut().drain(..) {
            publication.withdraw();
        }
    }
}

/// What a handler is for, as far as other programs are concerned (see
/// [`Stage`], "Which handlers other programs may reach").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandlerKind {
    /// A request method: exported by a publication without a method
    /// list; reached by requests and recalls.
    Method,
    /// Reached by a recall inside a transaction only (the answer of a
    /// dialogue), never by a request from another program; never in a
    /// default export list.
    RecallOnly,
    /// Not a method (a response handler, `on_cancel`, `on_my_<type>`):
    /// never reached from another program.
    Internal,
}

impl HandlerKind {
    /// The kind a method name has until [`Stage::set_kind`] says
    /// otherwise: `Internal` for the names of the stage's own hooks and
    /// the standard response handlers, `Method` for everything else.
    pub fn default_for(name: &str) -> HandlerKind {
        let bare = strip_on(name);
        let internal = matches!(bare, "cancel" | "return" | "emit" | "error")
            || bare.starts_with(&ON_MY[ON.len()..]);
        if internal {
            HandlerKind::Internal
        } else {
            HandlerKind::Method
        }
    }
}

impl fmt::Debug for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let handlers = self.inner.handlers.borrow();
        let mut names: Vec<&str> = handlers.names().collect();
        names.sort();
        f.debug_struct("Stage")
            .field("name", &self.inner.name)
            .field("handlers", &names)
            .finish()
    }
}

impl Stage {
    /// A stage with no handlers, on `lp`.
    ///
    /// # Panics
    /// If `name` is empty: a stage needs a name (it names it in every
    /// message about it). [`Stage::try_new`] returns the error instead.
    pub fn new(lp: &EventLoop, name: &str) -> Stage {
        match Stage::try_new(lp, name) {
            Ok(stage) => stage,
            Err(e) => panic!("Stage::new: {}", e.message),
        }
    }

    /// A stage with no handlers, on `lp`; `invalid_argument` for an empty
    /// name.
    pub fn try_new(lp: &EventLoop, name: &str) -> Result<Stage, Error> {
        if name.is_empty() {
            return Err(Error::new(
                crate::ErrorCode::InvalidArgument,
                "a stage needs a name (it is empty)",
            ));
        }
        Ok(Stage {
            inner: Rc::new(StageInner {
                name: name.to_string(),
                lp: lp.clone(),
                handlers: RefCell::new(HandlerTable::default()),
                kinds: RefCell::new(HashMap::new()),
                data: Scope::default(),
                publications: RefCell::new(Vec::new()),
            }),
        })
    }

    /// The stage's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The loop the stage lives on.
    pub fn event_loop(&self) -> &EventLoop {
        &self.inner.lp
    }

    /// Registers (or replaces) the handler named `name`, verbatim.
    pub fn on(
        &self,
        name: &str,
        handler: impl Fn(&Ctx<'_>) -> Result<(), Error> + 'static,
    ) -> &Stage {
        self.set_handler(name, Rc::new(handler));
        self
    }

    /// Registers an already shared handler.
    pub fn set_handler(&self, name: &str, handler: HandlerFn) {
        let old = self.inner.handlers.borrow_mut().insert(name, handler);
        // Dropped after the borrow: a closure's captures may use the stage.
        drop(old);
    }

    /// Removes the handler named `name`; returns whether there was one.
    pub fn remove_handler(&self, name: &str) -> bool {
        let old = self.inner.handlers.borrow_mut().remove(name);
        old.is_some()
    }

    /// Whether a handler is registered under exactly `name`.
    pub fn has_handler(&self, name: &str) -> bool {
        self.inner.handlers.borrow().get(name).is_some()
    }

    /// Whether a request for `method` would find a handler.
    pub fn has_method(&self, method: &str) -> bool {
        self.resolve(method).is_some()
    }

    /// The stage's own data, shared by all its requests (POE's self scope).
    pub fn data(&self) -> &Scope {
        &self.inner.data
    }

    /// Marks what the handler(s) of method `name` are for (`foo` and
    /// `on_foo` name the same method). Takes effect for publications made
    /// afterwards (their export list) and for recalls arriving afterwards.
    /// May be set before or after the handler is registered.
    pub fn set_kind(&self, name: &str, kind: HandlerKind) -> &Stage {
        let bare = strip_on(name).to_string();
        self.inner.kinds.borrow_mut().insert(bare, kind);
        self
    }

    /// The kind of method `name`: as set with [`Stage::set_kind`], else
    /// [`HandlerKind::default_for`].
    pub fn kind(&self, name: &str) -> HandlerKind {
        let bare = strip_on(name);
        self.inner
            .kinds
            .borrow()
            .get(bare)
            .copied()
            .unwrap_or_else(|| HandlerKind::default_for(bare))
    }

    /// The stage's request methods ([`HandlerKind::Method`]), without a
    /// leading `on_`, sorted: what a publication of this stage exports
    /// when it is given no method list.
    pub fn method_names(&self) -> Vec<String> {
        self.names_of_kind(HandlerKind::Method)
    }

    /// The registered method names (without `on_`, sorted) of `kind`.
    pub(crate) fn names_of_kind(&self, kind: HandlerKind) -> Vec<String> {
        let mut names: Vec<String> = self
            .inner
            .handlers
            .borrow()
            .names()
            .map(|k| strip_on(k).to_string())
            .collect();
        names.sort();
        names.dedup();
        names.retain(|n| self.kind(n) == kind);
        names
    }

    /// The handler registered under exactly `name`.
    pub(crate) fn handler(&self, name: &str) -> Option<HandlerFn> {
        self.inner.handlers.borrow().get(name).cloned()
    }

    /// The handler for a request of `method`: strip an optional `on_`,
    /// then try `on_<name>`, then `<name>`.
    pub(crate) fn resolve(&self, method: &str) -> Option<HandlerFn> {
        self.inner.handlers.borrow().method(method).cloned()
    }

    /// As [`Stage::resolve`], for a shared method name (a request's):
    /// cheaper when the stage serves the same method again.
    pub(crate) fn resolve_named(&self, method: &Rc<str>) -> Option<HandlerFn> {
        self.inner.handlers.borrow().method_named(method)
    }

    /// The `on_my_<kind>` handler that intercepts this stage's own
    /// responses of type `kind`.
    #[inline]
    pub(crate) fn intercept(&self, kind: &str) -> Option<HandlerFn> {
        self.inner.handlers.borrow().intercept(kind).cloned()
    }

    /// The `on_<role>_<kind>` handler for responses to this stage's
    /// requests made with `role`.
    pub(crate) fn role_handler(&self, role: &str, kind: &str) -> Option<HandlerFn> {
        self.inner.handlers.borrow().role(role, kind).cloned()
    }

    /// Records a publication, to be withdrawn when the stage goes.
    pub(crate) fn add_publication(&self, publication: Box<dyn Withdraw>) {
        let mut list = self.inner.publications.borrow_mut();
        list.retain(|p| p.is_live());
        list.push(publication);
    }

    #[inline]
    pub(crate) fn downgrade(&self) -> Weak<StageInner> {
        Rc::downgrade(&self.inner)
    }

    #[inline]
    pub(crate) fn from_weak(weak: &Weak<StageInner>) -> Option<Stage> {
        weak.upgrade().map(|inner| Stage { inner })
    }
}

/// A stage that sent a request, as the choice of a response's handler
/// sees it.
impl Requester<HandlerFn> for Stage {
    fn handler(&self, name: &str) -> Option<HandlerFn> {
        Stage::handler(self, name)
    }

    fn role_handler(&self, role: &str, kind: &str) -> Option<HandlerFn> {
        Stage::role_handler(self, role, kind)
    }
}

/// What a handler sees: its stage, the message's args, the request it
/// serves (`req`) and, in response handlers, the response (`rsp`).
///
/// In a method handler, `req` is the request delivered to this stage. In
/// a response handler, `req` is the requester's own request that was
/// being served when it made the sub-request (POE's delivery req), so its
/// data is at hand, and `rsp` is the response, whose id is the
/// sub-request's id and whose data is what the requester attached to the
/// sub-request.
pub struct Ctx<'a> {
    pub(crate) stage: Option<&'a Stage>,
    pub(crate) name: &'a str,
    pub(crate) args: &'a Args,
    pub(crate) req: Option<&'a ServedRequest>,
    pub(crate) rsp: Option<&'a Response>,
}

impl fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ctx")
            .field("stage", &self.stage.map(Stage::name))
            .field("name", &self.name)
            .field("args", &self.args)
            .field("req", &self.req.map(ServedRequest::id))
            .field("rsp", &self.rsp.map(Response::id))
            .finish()
    }
}

impl<'a> Ctx<'a> {
    /// The stage the handler belongs to (none for a closure handling a
    /// response to a request made outside every stage).
    pub fn stage(&self) -> Option<&'a Stage> {
        self.stage
    }

    /// The method (downward) or response type (upward) being handled.
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// The message's args.
    pub fn args(&self) -> &'a Args {
        self.args
    }

    /// One arg.
    pub fn arg(&self, name: &str) -> Option<&'a Value> {
        self.args.get(name)
    }

    /// The request being served, if any.
    pub fn req(&self) -> Option<&'a ServedRequest> {
        self.req
    }

    /// The time left before the deadline of the request being served
    /// (see [`ServedRequest::time_left`]); `None` when no request is
    /// served or it has no deadline.
    pub fn time_left(&self) -> Option<std::time::Duration> {
        self.req.and_then(ServedRequest::time_left)
    }

    /// The response being handled, in response handlers.
    pub fn rsp(&self) -> Option<&'a Response> {
        self.rsp
    }

    /// Emits on the request being served.
    pub fn emit(&self, kind: &str, args: &Args) -> Result<(), Error> {
        self.served()?.emit(kind, args)
    }

    /// Returns on the request being served.
    pub fn ret(&self, kind: &str, args: &Args) -> Result<(), Error> {
        self.served()?.ret(kind, args)
    }

    fn served(&self) -> Result<&'a ServedRequest, Error> {
        self.req.ok_or_else(|| {
            Error::new(
                crate::ErrorCode::InvalidState,
                "Can't emit message: no request is being served",
            )
        })
    }
}
