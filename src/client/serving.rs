//! The publisher's side: sessions published here, the calls delivered to
//! them (each a [`Delivery`] until it is answered finally, cancelled, or
//! the connection closes), and the [`Publication`] handle a stage keeps.

use super::shell::Shared;
use super::Inbound;
use crate::error::Error;
use crate::id_hash::IdMap;
use crate::value::Args;
use crate::wire::{CallerInfo, Frame, Outgoing};
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

/// What a published session runs for each delivery's events.
pub(crate) type ServeCell = RefCell<dyn FnMut(&Delivery, Inbound)>;
/// A published session's handler, shared by the publication and the
/// deliveries that arrived at it.
pub(crate) type ServeFn = Rc<ServeCell>;

/// A call delivered here and not yet ended, as the client keeps it.
#[derive(Clone)]
pub(super) struct Route {
    /// The broker's id of the call (its route).
    pub id: u64,
    /// The caller's own id of the request.
    pub origin: u64,
    /// The session it was delivered to.
    pub session: Rc<str>,
    /// When the caller stops waiting, as this host's clock reads it: the
    /// receipt time plus the time the caller still gave the call.
    pub deadline: Option<Instant>,
    /// False for a one-way call: its answers are dropped here.
    pub expects_answer: bool,
    /// Who calls, when the broker said.
    pub caller: Option<Rc<CallerInfo>>,
}

/// The sessions published here and the deliveries being served.
#[derive(Default)]
pub(super) struct Serving {
    /// Published here: name → (shared name, handler).
    publications: HashMap<String, (Rc<str>, ServeFn)>,
    /// The methods each was published with (to publish it again after a
    /// reconnect).
    methods: HashMap<String, Vec<String>>,
    /// Deliveries being served, by route id. Each keeps the handler it
    /// arrived at, so that it can still be answered or cancelled after a
    /// rescind, and a session published again under the same name never
    /// sees the old one's routes.
    routes: IdMap<u64, (Route, ServeFn)>,
    /// The identity of the last stamped call, shared with the calls that
    /// carry the same one (a caller calls many times): one allocation
    /// per caller, not per call (see [`super::oneway::Incoming::of`]).
    pub last_caller: Option<Rc<CallerInfo>>,
    /// The session name of the last call, shared with the calls to the
    /// same session (see [`Serving::name`]).
    pub last_name: Option<Rc<str>>,
    /// The stamp of the last call read in place, as its bytes, and the
    /// caller identity it holds (see [`Serving::caller`]).
    pub last_stamp: Option<(Vec<u8>, Rc<CallerInfo>)>,
    /// The methods and response types seen before, which received ones
    /// share (see [`super::Names`]).
    pub names: super::Names,
    /// The publication the last call was for: calls come for the same
    /// one, found again without hashing its name. Whatever changes the
    /// publications forgets it.
    last_publication: Option<(Rc<str>, ServeFn)>,
}

impl Serving {
    /// Records a publication the broker accepted.
    pub fn publish(&mut self, session: String, methods: Vec<String>, serve: ServeFn) {
        let name = Rc::from(session.as_str());
        self.last_publication = None;
        self.methods.insert(session.clone(), methods);
        self.publications.insert(session, (name, serve));
    }

    /// The methods `session` was published with.
    pub fn methods(&self, session: &str) -> Vec<String> {
        self.methods.get(session).cloned().unwrap_or_default()
    }

    /// Every publication, sorted by name.
    pub fn publications(&self) -> Vec<(String, ServeFn)> {
        let mut all: Vec<_> = self
            .publications
            .iter()
            .map(|(name, (_, serve))| (name.clone(), serve.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Ends every delivery (oldest first), keeping the publications.
    pub fn end_all(&mut self) -> Vec<(Route, ServeFn)> {
        let mut routes: Vec<_> = self.routes.drain().map(|(_, entry)| entry).collect();
        routes.sort_by_key(|(route, _)| route.id);
        routes
    }

    pub fn is_published(&self, session: &str) -> bool {
        self.publications.contains_key(session)
    }

    /// Whether `session` is published here with `serve` as its handler.
    pub fn is_published_with(&self, session: &str, serve: &ServeFn) -> bool {
        self.publications
            .get(session)
            .is_some_and(|(_, f)| Rc::ptr_eq(f, serve))
    }

    /// Forgets a publication the broker rescinded, handing back its
    /// handler (deliveries in progress keep their own handle on it).
    pub fn unpublish(&mut self, session: &str) -> Option<ServeFn> {
        self.last_publication = None;
        self.methods.remove(session);
        self.publications.remove(session).map(|(_, serve)| serve)
    }

    /// The shared name and handler of a published session.
    pub fn publication(&mut self, session: &str) -> Option<(Rc<str>, ServeFn)> {
        if let Some((name, serve)) = &self.last_publication {
            if **name == *session {
                return Some((name.clone(), serve.clone()));
            }
        }
        let found = self.publications.get(session).cloned();
        if found.is_some() {
            self.last_publication.clone_from(&found);
        }
        found
    }

    /// Starts serving a delivery.
    pub fn open(&mut self, route: Route, serve: ServeFn) {
        self.routes.insert(route.id, (route, serve));
    }

    pub fn is_open(&self, route: u64) -> bool {
        self.routes.contains_key(&route)
    }

    /// Whether the delivery `route` is open and its caller waits for an
    /// answer (it is no one-way call).
    pub fn expects_answer(&self, route: u64) -> bool {
        self.routes
            .get(&route)
            .is_some_and(|(r, _)| r.expects_answer)
    }

    /// A delivery being served, which stays open.
    pub fn get(&self, route: u64) -> Option<(Route, ServeFn)> {
        self.routes.get(&route).cloned()
    }

    /// Ends a delivery: answered finally or cancelled.
    pub fn end(&mut self, route: u64) -> Option<(Route, ServeFn)> {
        self.routes.remove(&route)
    }

    /// Ends everything: the publications' handlers, and every delivery
    /// (oldest first).
    pub fn take_all(&mut self) -> (Vec<ServeFn>, Vec<(Route, ServeFn)>) {
        self.last_publication = None;
        self.methods.clear();
        let publications = self.publications.drain().map(|(_, (_, f))| f).collect();
        let mut routes: Vec<_> = self.routes.drain().map(|(_, entry)| entry).collect();
        routes.sort_by_key(|(route, _)| route.id);
        (publications, routes)
    }
}

/// Names one publication of a client without keeping the client or the
/// publication's handler alive, so that whoever published (a stage) can
/// withdraw it when it goes away.
pub(crate) struct Publication {
    pub(super) client: Weak<Shared>,
    pub(super) session: String,
    pub(super) serve: Weak<ServeCell>,
}

impl Publication {
    /// Whether the client and the publication's handler still exist.
    pub(crate) fn is_live(&self) -> bool {
        self.client.strong_count() > 0 && self.serve.strong_count() > 0
    }

    /// Rescinds the session on a later turn, if the client is still
    /// there and the session is still this publication (one published
    /// again under the same name is left alone). A publish still on its
    /// way is rescinded as soon as the broker accepts it.
    pub(crate) fn withdraw(self) {
        let Some(shared) = self.client.upgrade() else {
            return;
        };
        // Later: the client may be in the middle of changing its tables.
        shared.lp.clone().defer(move |_| {
            if let (Some(shared), Some(serve)) = (self.client.upgrade(), self.serve.upgrade()) {
                shared.withdraw(&self.session, &serve);
            }
        });
    }
}

/// The publisher's side of one call: answer it with emits and one final
/// response. Clone it to answer later (a slow method); once the call has
/// ended (answered, cancelled, or the connection closed) every answer
/// fails with `invalid_state`.
#[derive(Clone)]
pub struct Delivery {
    client: Weak<Shared>,
    route: u64,
    origin: u64,
    session: Rc<str>,
    deadline: Option<Instant>,
    expects_answer: bool,
    caller: Option<Rc<CallerInfo>>,
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("id", &self.route)
            .field("session", &self.session)
            .finish()
    }
}

impl Delivery {
    pub(super) fn new(client: Weak<Shared>, route: Route) -> Delivery {
        Delivery {
            client,
            route: route.id,
            origin: route.origin,
            session: route.session,
            deadline: route.deadline,
            expects_answer: route.expects_answer,
            caller: route.caller,
        }
    }

    /// Whether the caller waits for an answer: false for a one-way call
    /// ([`Client::post`](super::Client::post)), whose emits and final
    /// answer are accepted and dropped here (counted by
    /// [`Client::dropped_answers`](super::Client::dropped_answers)),
    /// never sent.
    pub fn expects_answer(&self) -> bool {
        self.expects_answer
    }

    /// Who calls, as the broker knows the caller: its connection, its
    /// uid, gid and pid on a Unix socket, the name of its token, and the
    /// name it gave itself. `None` when the broker did not say (a broker
    /// older than caller identities).
    pub fn caller(&self) -> Option<&CallerInfo> {
        self.caller.as_deref()
    }

    /// The broker's id of this call, unique on that broker.
    pub fn id(&self) -> u64 {
        self.route
    }

    /// The caller's own id of the request (see
    /// [`Client::call_as`](super::Client::call_as)).
    pub fn origin(&self) -> u64 {
        self.origin
    }

    /// The session the call was delivered to.
    pub fn session(&self) -> &str {
        &self.session
    }

    /// When the caller stops waiting for this call (its timeout, sent
    /// along with the call as the time left and taken from the moment
    /// the call arrived here), or `None` if the caller set no deadline.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The time left before [`Delivery::deadline`] (zero once it
    /// passed), or `None` without a deadline.
    pub fn time_left(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Whether the call can still be answered.
    pub fn is_open(&self) -> bool {
        self.client
            .upgrade()
            .is_some_and(|c| c.is_serving(self.route))
    }

    /// Sends an interim response of type `kind`.
    pub fn emit(&self, kind: &str, args: &Args) -> Result<(), Error> {
        let id = self.route;
        self.answer(Outgoing::Emit { id, kind, args }, false)
    }

    /// Sends the final response of type `kind`; the delivery ends.
    pub fn respond(&self, kind: &str, args: &Args) -> Result<(), Error> {
        let id = self.route;
        self.answer(Outgoing::Return { id, kind, args }, true)
    }

    /// Ends the delivery with an error for the caller.
    pub fn fail(&self, error: Error) -> Result<(), Error> {
        let frame = Frame::Result {
            id: self.route,
            outcome: Err(error),
        };
        self.answer(Outgoing::Frame(&frame), true)
    }

    fn answer(&self, frame: Outgoing<'_>, last: bool) -> Result<(), Error> {
        let shared = self
            .client
            .upgrade()
            .ok_or_else(|| Error::broker_gone("the client was dropped"))?;
        shared.answer(self.route, frame, last)
    }
}
