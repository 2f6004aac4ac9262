//! A call's frames through the core: a deliver opens a route, emits and
//! recalls pass along it, a result or a cancel ends it. Each frame is
//! checked against its route and forwarded with only its id rewritten:
//! the caller's call id towards the publisher becomes the route id, and
//! back. A one-way call (post) is checked the same way and forwarded
//! under an id of the broker's, but opens no route: nothing answers it.

use super::core::Core;
use super::policy::Action;
use super::routes::{Route, RouteId};
use super::ConnId;
use crate::error::{Error, ErrorCode};
use crate::wire::{Frame, NameMode, Routed, RoutedKind};
use std::cell::Cell;
use std::rc::Rc;

/// Who serves a call, the session's shared name, its shared count of
/// calls (once a call shared it), and whether the next call of the same
/// method may be routed to the same publisher without looking again (one
/// publisher serves the name, and the caller is no peer broker).
type Target = (ConnId, Rc<str>, Option<Rc<Cell<u64>>>, bool);

impl Core {
    /// A deliver, emit, recall or result from `id`.
    pub(super) fn handle_routed(&mut self, id: ConnId, frame: Routed<'_>) {
        if !self.check_handshaken(id, frame.kind_name()) {
            return;
        }
        match frame.kind {
            RoutedKind::Deliver { session, method } => {
                match self.open_route(id, frame.id, session, method) {
                    Ok((publisher, route)) => {
                        self.stats.calls += 1;
                        if let Err(e) = self.forward_deliver(id, publisher, &frame, route) {
                            self.abort_route(route, e, false);
                        }
                    }
                    Err(e) => self.reply(id, frame.id, Err(e)),
                }
            }
            RoutedKind::Emit => match self.routes.get(frame.id) {
                Some(r) if r.publisher == id => {
                    let (caller, call) = (r.caller, r.caller_id);
                    if let Err(e) = self.forward(caller, &frame, call) {
                        self.abort_route(frame.id, e, true);
                    }
                }
                _ => self.stats.dropped_stray += 1,
            },
            RoutedKind::Result { error } => match self.routes.get(frame.id) {
                Some(r) if r.publisher == id => {
                    let r = self.routes.close(frame.id).expect("checked above");
                    if let Some(code) = error {
                        self.counters.errors.add(code);
                        self.counters.session_error(&r.session, code);
                    }
                    if let Err(e) = self.forward(r.caller, &frame, r.caller_id) {
                        self.reply(r.caller, r.caller_id, Err(e));
                    }
                }
                _ => self.stats.dropped_stray += 1,
            },
            RoutedKind::Recall => match self.routes.of_call(id, frame.id) {
                Some((route, r)) => {
                    let publisher = r.publisher;
                    if let Err(e) = self.forward(publisher, &frame, route) {
                        self.abort_route(route, e, true);
                    }
                }
                None => self.stats.dropped_stray += 1,
            },
            RoutedKind::Post { session, method } => {
                // No route: nothing will be waited for. The id the
                // publisher sees is the broker's own, unique, so an
                // answer sent all the same is dropped as stray.
                let target = self
                    .check_access(id, Action::Call, session, method)
                    .and_then(|()| self.target(id, session, method));
                match target {
                    Ok((publisher, ..)) => {
                        let post = self.routes.unrouted_id();
                        if self.forward_post(id, publisher, &frame, post).is_ok() {
                            self.stats.oneway_calls += 1;
                        } else {
                            self.stats.dropped_oneway += 1;
                        }
                    }
                    Err(_) => self.stats.dropped_oneway += 1,
                }
            }
        }
    }

    /// `id` gives up its call `call`: the publisher is told, if the call
    /// is still in flight.
    pub(super) fn cancel(&mut self, id: ConnId, call: u64) {
        let Some((route, _)) = self.routes.of_call(id, call) else {
            return;
        };
        if let Some(r) = self.routes.close(route) {
            let _ = self.send(r.publisher, &Frame::Cancel { id: route });
        }
    }

    /// Checks a deliver and opens its route: the publisher and the route
    /// id to forward it under.
    fn open_route(
        &mut self,
        id: ConnId,
        call: u64,
        session: &str,
        method: &str,
    ) -> Result<(ConnId, RouteId), Error> {
        // A hostile or broken peer may send what a client refuses to.
        if session.is_empty() || method.is_empty() {
            return Err(Error::new(
                ErrorCode::InvalidArgument,
                "a call needs a session and a method (a name is empty)",
            ));
        }
        self.admit("a call")?;
        let max = self.limits().max_pending_per_connection;
        self.routes.admit(id, call, max)?;
        self.check_access(id, Action::Call, session, method)?;
        let (publisher, name, calls) = match self.remembered_target(id, session, method) {
            Some(known) => known,
            None => {
                let (publisher, name, shared, stable) = self.target(id, session, method)?;
                let calls = self.call_counter(&name, shared);
                if stable {
                    self.registry.remember(&name, method, publisher, &calls);
                }
                (publisher, name, calls)
            }
        };
        calls.set(calls.get() + 1);
        let route = self.routes.open(Route {
            caller: id,
            caller_id: call,
            publisher,
            session: name,
        });
        Ok((publisher, route))
    }

    /// The target of the last call resolved, when this one calls the
    /// same method on the same name (see [`Registry::resolved`]): what
    /// [`Core::target`] and [`Core::call_counter`] would give, without
    /// their lookups. Never for a peer broker's stand-in, whose calls
    /// choose among local publishers only.
    ///
    /// [`Registry::resolved`]: super::registry::Registry::resolved
    fn remembered_target(
        &self,
        caller: ConnId,
        session: &str,
        method: &str,
    ) -> Option<(ConnId, Rc<str>, Rc<Cell<u64>>)> {
        let known = self.registry.resolved(session, method)?;
        (!self.is_link(caller)).then_some(known)
    }

    /// The count of calls to the published `name`: the count its
    /// registry entry shares (`shared`, from [`Core::target`]'s lookup),
    /// looked up by name only the first time.
    fn call_counter(&mut self, name: &str, shared: Option<Rc<Cell<u64>>>) -> Rc<Cell<u64>> {
        match shared {
            Some(calls) => calls,
            None => {
                let calls = self.counters.call_counter(name);
                if let Some(s) = self.registry.get(name) {
                    let _ = s.calls.set(calls.clone());
                }
                calls
            }
        }
    }

    /// Who serves a call of `method` on `session` from `caller`, the
    /// session's shared name, and its count of calls once shared (see
    /// [`Core::call_counter`]). A call from a peer broker's stand-in goes
    /// to this broker's own publishers only, never on to another broker.
    fn target(&self, caller: ConnId, session: &str, method: &str) -> Result<Target, Error> {
        if session.is_empty() || method.is_empty() {
            return Err(Error::new(
                ErrorCode::InvalidArgument,
                "a call needs a session and a method (a name is empty)",
            ));
        }
        let s = self
            .registry
            .get(session)
            .ok_or_else(|| Error::no_such_session(session))?;
        let routes = &self.routes;
        if self.is_link(caller) {
            let local = |c: ConnId| !self.is_link(c);
            return match s.choose_among(method, |c| routes.serving_count(c), local) {
                Some(publisher) => Ok((publisher, s.name.clone(), s.calls.get().cloned(), false)),
                None => Err(Error::no_such_session(session)),
            };
        }
        let publisher = s
            .choose(method, |conn| routes.serving_count(conn))
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::NoSuchMethod,
                    format!("Session '{session}' has no method '{method}'"),
                )
            })?;
        let stable = s.mode != NameMode::Balance;
        Ok((publisher, s.name.clone(), s.calls.get().cloned(), stable))
    }

    /// Ends a call that cannot go on because one of its frames is too
    /// large to forward: the caller gets `error`, and the publisher, if
    /// it already has the call, a cancel.
    fn abort_route(&mut self, route: RouteId, error: Error, tell_publisher: bool) {
        let Some(r) = self.routes.close(route) else {
            return;
        };
        if tell_publisher {
            let _ = self.send(r.publisher, &Frame::Cancel { id: route });
        }
        self.reply(r.caller, r.caller_id, Err(error));
    }
}
