//! Stages: named tables of handlers on a loop, and the context a handler
//! runs in.

use super::handlers::HandlerTable;
use super::names::strip_on;
use super::scope::Scope;
use super::transaction::{Response, ServedRequest};
use crate::client::Publication;
use crate::error::Error;
use crate::event_loop::EventLoop;
use crate::value::{Args, Value};
use std::cell::RefCell;
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
#[derive(Clone)]
pub struct Stage {
    pub(crate) inner: Rc<StageInner>,
}

pub(crate) struct StageInner {
    name: String,
    lp: EventLoop,
    handlers: RefCell<HandlerTable>,
    data: Scope,
    /// Where the stage is published. A publication holds its stage
    /// weakly; the stage withdraws them when it goes.
    publications: RefCell<Vec<Publication>>,
}

impl Drop for StageInner {
    fn drop(&mut self) {
        for publication in self.publications.get_mut().drain(..) {
            publication.withdraw();
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
    pub fn new(lp: &EventLoop, name: &str) -> Stage {
        Stage {
            inner: Rc::new(StageInner {
                name: name.to_string(),
                lp: lp.clone(),
                handlers: RefCell::new(HandlerTable::default()),
                data: Scope::default(),
                publications: RefCell::new(Vec::new()),
            }),
        }
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

    /// Every handler name with a leading `on_` removed, sorted: what a
    /// publication of this stage offers by default.
    pub fn method_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .inner
            .handlers
            .borrow()
            .names()
            .map(|k| strip_on(k).to_string())
            .collect();
        names.sort();
        names.dedup();
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

    /// The `on_my_<kind>` handler that intercepts this stage's own
    /// responses of type `kind`.
    pub(crate) fn intercept(&self, kind: &str) -> Option<HandlerFn> {
        self.inner.handlers.borrow().intercept(kind).cloned()
    }

    /// The `on_<role>_<kind>` handler for responses to this stage's
    /// requests made with `role`.
    pub(crate) fn role_handler(&self, role: &str, kind: &str) -> Option<HandlerFn> {
        self.inner.handlers.borrow().role(role, kind).cloned()
    }

    /// Records a publication, to be withdrawn when the stage goes.
    pub(crate) fn add_publication(&self, publication: Publication) {
        let mut list = self.inner.publications.borrow_mut();
        list.retain(Publication::is_live);
        list.push(publication);
    }

    pub(crate) fn downgrade(&self) -> Weak<StageInner> {
        Rc::downgrade(&self.inner)
    }

    pub(crate) fn from_weak(weak: &Weak<StageInner>) -> Option<Stage> {
        weak.upgrade().map(|inner| Stage { inner })
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
