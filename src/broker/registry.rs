//! The published sessions and who subscribes to them (pure state).
//!
//! A name may have several publishers, as its mode says (the first
//! publisher fixes it; see [`NameMode`]): `exclusive` has one; `queue`
//! keeps later publishers in line behind the owner, the first taking
//! over when the owner goes; `balance` lets every publisher serve. The
//! session as listed and subscribed is one, with its owner's methods
//! (the first publisher's, under `balance`).

use super::ConnId;
use crate::error::{Error, ErrorCode};
use crate::id_hash::IdSet;
use crate::wire::{NameMode, SessionInfo};
use std::cell::{Cell, OnceCell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

/// One publisher of a name, with the methods it offers.
#[derive(Debug)]
pub(super) struct Publisher {
    pub conn: ConnId,
    pub methods: Vec<String>,
    /// The names a deliver may give, as an index into `methods` sorted by
    /// name: every method, and every method published as `on_foo` once
    /// more as `foo` (see [`Publisher::has_method`]). The names are
    /// stored once, in `methods`; the index holds 8 bytes per name.
    accepted: Vec<Accepted>,
}

/// One entry of a publisher's index of accepted names: a method, whole
/// or without its `on_`.
#[derive(Debug, Clone, Copy)]
struct Accepted {
    method: u32,
    stripped: bool,
}

impl Accepted {
    fn name(self, methods: &[String]) -> &str {
        let m = &methods[self.method as usize];
        if self.stripped {
            &m[3..]
        } else {
            m
        }
    }
}

#[derive(Debug)]
pub(super) struct Session {
    /// The published name, shared with the routes of calls to it.
    pub name: Rc<str>,
    pub mode: NameMode,
    /// The owner first, then (`queue`) the standbys in line, or
    /// (`balance`) the other publishers.
    pub publishers: Vec<Publisher>,
    pub subscribers: IdSet<ConnId>,
    /// Where `balance` starts looking next: of equally loaded
    /// publishers, the calls go round.
    cursor: Cell<usize>,
    /// The count of calls to this name in the broker's counters, shared
    /// once the first call looked it up: later calls count without a
    /// lookup by name (see [`super::stats::Counters::call_counter`]).
    pub calls: OnceCell<Rc<Cell<u64>>>,
}

/// What a publisher's leaving did to a name.
#[derive(Debug)]
pub(super) enum Left {
    /// It was the last publisher: the session is gone.
    Gone(Session),
    /// It owned a `queue` name: the next in line took over.
    OwnerChanged,
    /// It was a standby or one of several balanced publishers: nothing
    /// changes for subscribers.
    Quietly,
}

impl Session {
    /// The owner's methods (as listed and subscribed).
    pub fn methods(&self) -> &[String] {
        &self.publishers[0].methods
    }

    /// The methods `conn` published under this name (none if it is no
    /// publisher of it).
    pub fn methods_of(&self, conn: ConnId) -> &[String] {
        self.publishers
            .iter()
            .find(|p| p.conn == conn)
            .map_or(&[][..], |p| &p.methods)
    }

    /// The publisher whose calls it takes (`exclusive`, `queue`), or the
    /// first of the balanced ones.
    pub fn owner(&self) -> ConnId {
        self.publishers[0].conn
    }

    /// Whether `conn` serves calls to this name now (the owner, or any
    /// balanced publisher; never a standby).
    pub fn serves(&self, conn: ConnId) -> bool {
        match self.mode {
            NameMode::Balance => self.publishers.iter().any(|p| p.conn == conn),
            _ => self.owner() == conn,
        }
    }

    /// Whether a deliver naming `method` may go through: the owner has
    /// it (under `balance`, any publisher has it).
    #[cfg(test)]
    pub fn has_method(&self, method: &str) -> bool {
        match self.mode {
            NameMode::Balance => self.publishers.iter().any(|p| p.has_method(method)),
            _ => self.publishers[0].has_method(method),
        }
    }

    /// Who takes a call of `method`: the owner, or under `balance` the
    /// publisher offering it with the fewest calls in flight (`load`);
    /// of equally loaded ones, the next in turn after the last chosen.
    pub fn choose(&self, method: &str, load: impl Fn(ConnId) -> usize) -> Option<ConnId> {
        self.choose_among(method, load, |_| true)
    }

    /// [`Session::choose`] among the publishers `allowed` (a call from a
    /// peer broker goes to this broker's own publishers only): under
    /// `exclusive` and `queue`, none when the owner is not allowed.
    pub fn choose_among(
        &self,
        method: &str,
        load: impl Fn(ConnId) -> usize,
        allowed: impl Fn(ConnId) -> bool,
    ) -> Option<ConnId> {
        match self.mode {
            NameMode::Balance => {
                let n = self.publishers.len();
                let start = self.cursor.get() % n;
                let best = (0..n)
                    .map(|k| (start + k) % n)
                    .filter(|&i| allowed(self.publishers[i].conn))
                    .filter(|&i| self.publishers[i].has_method(method))
                    .min_by_key(|&i| load(self.publishers[i].conn))?;
                self.cursor.set(best + 1);
                Some(self.publishers[best].conn)
            }
            _ => (allowed(self.owner()) && self.publishers[0].has_method(method))
                .then(|| self.owner()),
        }
    }

    /// Whether `conn` is one of the publishers (standbys included).
    pub fn has_publisher(&self, conn: ConnId) -> bool {
        self.publishers.iter().any(|p| p.conn == conn)
    }

    /// Puts the publishers in `order` first, in that order (those not
    /// among the publishers are skipped); the others follow, in their
    /// order. Whether the owner changed.
    pub fn reorder(&mut self, order: &[ConnId]) -> bool {
        let before = self.owner();
        let rank = |c: ConnId| order.iter().position(|&o| o == c).unwrap_or(usize::MAX);
        // A stable sort: equal ranks (the unlisted) keep their order.
        self.publishers.sort_by_key(|p| rank(p.conn));
        self.owner() != before
    }

    /// Takes `conn` out of the publishers.
    fn leave(mut self, conn: ConnId) -> (Option<Session>, Left) {
        let Some(at) = self.publishers.iter().position(|p| p.conn == conn) else {
            return (Some(self), Left::Quietly);
        };
        self.publishers.remove(at);
        if self.publishers.is_empty() {
            return (None, Left::Gone(self));
        }
        if at == 0 && self.mode == NameMode::Queue {
            return (Some(self), Left::OwnerChanged);
        }
        (Some(self), Left::Quietly)
    }
}

impl Publisher {
    /// Whether a deliver naming `method` may go through. Like the stage's
    /// own lookup, `on_foo` and `foo` name the same method: `method`
    /// passes if it is published, if it is `on_` and a published name,
    /// or if `on_` and it is published. The last test, which would build
    /// the name `on_{method}` on every deliver, is a lookup of `method`
    /// itself among the published names stripped of their `on_`, which
    /// `accepted` holds beside the names themselves; the second test may
    /// look in `accepted` too, since a stripped name `x` found there
    /// means that `on_x`, the method asked for, is published.
    pub fn has_method(&self, method: &str) -> bool {
        self.accepts(method) || method.strip_prefix("on_").is_some_and(|m| self.accepts(m))
    }

    /// Whether `name` is in the index.
    fn accepts(&self, name: &str) -> bool {
        self.accepted
            .binary_search_by(|a| a.name(&self.methods).cmp(name))
            .is_ok()
    }
}

/// Limits the registry enforces on what a publisher sends.
#[derive(Debug, Clone, Copy)]
pub(super) struct NameLimits {
    pub max_name: usize,
    pub max_methods: usize,
}

#[derive(Debug, Default)]
pub(super) struct Registry {
    sessions: HashMap<String, Session>,
    /// The last call's target, when its name has one publisher serving
    /// it (not `balance`, whose choice depends on the load): the next
    /// call of the same method on the same name, the usual case, is
    /// routed without the lookups. Every `&mut self` method forgets it,
    /// so nothing that changes the registry can leave it stale.
    last: RefCell<Option<Resolved>>,
}

/// A call's target as [`Registry::resolved`] gives it back.
#[derive(Debug)]
pub(super) struct Resolved {
    /// The session's shared name.
    pub session: Rc<str>,
    /// The method called.
    method: Box<str>,
    /// Who serves it.
    pub publisher: ConnId,
    /// The session's shared count of calls.
    pub calls: Rc<Cell<u64>>,
}

impl Registry {
    pub fn get(&self, name: &str) -> Option<&Session> {
        self.sessions.get(name)
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut Session> {
        self.forget_resolved();
        self.sessions.get_mut(name)
    }

    /// The target remembered for a call of `method` on `session` (see
    /// [`Registry::remember`]), if the last call resolved was that one.
    pub fn resolved(
        &self,
        session: &str,
        method: &str,
    ) -> Option<(ConnId, Rc<str>, Rc<Cell<u64>>)> {
        let last = self.last.borrow();
        let r = last.as_ref()?;
        (*r.session == *session && *r.method == *method)
            .then(|| (r.publisher, r.session.clone(), r.calls.clone()))
    }

    /// Remembers that a call of `method` on the session `session` goes
    /// to `publisher`, counted in `calls`; only for a name served by its
    /// owner alone (a `balance` name chooses per call).
    pub fn remember(
        &self,
        session: &Rc<str>,
        method: &str,
        publisher: ConnId,
        calls: &Rc<Cell<u64>>,
    ) {
        *self.last.borrow_mut() = Some(Resolved {
            session: session.clone(),
            method: method.into(),
            publisher,
            calls: calls.clone(),
        });
    }

    fn forget_resolved(&mut self) {
        *self.last.get_mut() = None;
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Every published session, in no order.
    pub fn sessions(&self) -> impl Iterator<Item = &Session> {
        self.sessions.values()
    }

    /// Publishes `name`, with the original's checks in its order.
    #[cfg(test)]
    pub fn publish(
        &mut self,
        name: &str,
        methods: Vec<String>,
        publisher: ConnId,
        limits: NameLimits,
    ) -> Result<(), Error> {
        self.publish_as(name, methods, publisher, NameMode::Exclusive, limits)
            .map(|_| ())
    }

    /// Publishes `name` in `mode`: as its first publisher (true), or
    /// as one more publisher of a `queue` or `balance` name of the same
    /// mode (false). Checks in the original's order, then the mode.
    pub fn publish_as(
        &mut self,
        name: &str,
        methods: Vec<String>,
        publisher: ConnId,
        mode: NameMode,
        limits: NameLimits,
    ) -> Result<bool, Error> {
        self.forget_resolved();
        if name.is_empty() {
            return Err(Error::new(
                ErrorCode::InvalidArgument,
                "Session alias must be defined",
            ));
        }
        check_name("session name", name, limits.max_name)?;
        if let Some(s) = self.sessions.get(name) {
            if s.mode != mode {
                return Err(Error::new(
                    ErrorCode::NameModeConflict,
                    format!(
                        "Session '{name}' is published in mode '{}', not '{}'",
                        s.mode.as_str(),
                        mode.as_str()
                    ),
                ));
            }
            if mode == NameMode::Exclusive || s.publishers.iter().any(|p| p.conn == publisher) {
                return Err(Error::new(
                    ErrorCode::AlreadyExists,
                    format!("Session '{name}' already exists"),
                ));
            }
        }
        if methods.len() > limits.max_methods {
            return Err(Error::new(
                ErrorCode::LimitExceeded,
                format!(
                    "{} methods exceed the limit of {}",
                    methods.len(),
                    limits.max_methods
                ),
            ));
        }
        let mut accepted = Vec::with_capacity(methods.len());
        for (i, m) in methods.iter().enumerate() {
            if m.is_empty() {
                return Err(Error::new(
                    ErrorCode::InvalidArgument,
                    "method names must not be empty",
                ));
            }
            check_name("method name", m, limits.max_name)?;
            // Fits: the methods are at most `max_methods`, checked above
            // against a count far below u32::MAX in any sane setting.
            let method = u32::try_from(i).map_err(|_| {
                Error::new(ErrorCode::LimitExceeded, "too many methods in one session")
            })?;
            accepted.push(Accepted {
                method,
                stripped: false,
            });
            if m.starts_with("on_") {
                accepted.push(Accepted {
                    method,
                    stripped: true,
                });
            }
        }
        accepted.sort_unstable_by(|a, b| a.name(&methods).cmp(b.name(&methods)));
        let p = Publisher {
            conn: publisher,
            methods,
            accepted,
        };
        if let Some(s) = self.sessions.get_mut(name) {
            s.publishers.push(p);
            return Ok(false);
        }
        self.sessions.insert(
            name.to_string(),
            Session {
                name: Rc::from(name),
                mode,
                publishers: vec![p],
                subscribers: IdSet::default(),
                cursor: Cell::new(0),
                calls: OnceCell::new(),
            },
        );
        Ok(true)
    }

    /// Checks a rescind by `by`; on success takes `by` out of the name's
    /// publishers and says what that did.
    pub fn rescind(&mut self, name: &str, by: ConnId) -> Result<Left, Error> {
        self.forget_resolved();
        if name.is_empty() {
            return Err(Error::new(
                ErrorCode::InvalidArgument,
                "Session alias is required",
            ));
        }
        match self.sessions.get(name) {
            None => Err(Error::no_such_session(name)),
            Some(s) if !s.publishers.iter().any(|p| p.conn == by) => Err(Error::new(
                ErrorCode::NotPublisher,
                format!("Session '{name}' was published by another connection"),
            )),
            Some(_) => Ok(self.leave(name, by).expect("checked above")),
        }
    }

    /// Takes `conn` out of the publishers of `name` without checks (it
    /// disconnected); None if it was none of them.
    pub fn leave(&mut self, name: &str, conn: ConnId) -> Option<Left> {
        self.forget_resolved();
        let s = self.sessions.remove(name)?;
        let (kept, left) = s.leave(conn);
        if let Some(kept) = kept {
            self.sessions.insert(name.to_string(), kept);
        }
        Some(left)
    }

    /// Every session, sorted by name.
    pub fn listing(&self) -> Vec<SessionInfo> {
        let mut list: Vec<SessionInfo> = self
            .sessions
            .iter()
            .map(|(name, s)| SessionInfo {
                name: name.clone(),
                methods: s.methods().to_vec(),
            })
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }
}

/// Rejects names over the limit.
pub(super) fn check_name(what: &str, name: &str, max: usize) -> Result<(), Error> {
    if name.is_empty() {
        return Err(Error::new(
            ErrorCode::InvalidArgument,
            format!("the {what} is empty"),
        ));
    }
    if name.len() > max {
        return Err(Error::new(
            ErrorCode::LimitExceeded,
            format!("{what} of {} bytes exceeds the limit of {max}", name.len()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn the_first_publisher_fixes_the_mode_and_a_queue_hands_over() {
        let mut r = Registry::default();
        let m = || methods(&["foo"]);
        assert!(r.publish_as("Q", m(), 1, NameMode::Queue, LIMITS).unwrap());
        assert!(!r
            .publish_as("Q", methods(&["bar"]), 2, NameMode::Queue, LIMITS)
            .unwrap());
        let e = r
            .publish_as("Q", m(), 3, NameMode::Balance, LIMITS)
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::NameModeConflict);
        assert_eq!(
            e.message,
            "Session 'Q' is published in mode 'queue', not 'balance'"
        );
        let e = r
            .publish_as("Q", m(), 1, NameMode::Queue, LIMITS)
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::AlreadyExists);
        let q = r.get("Q").unwrap();
        assert!(q.serves(1) && !q.serves(2));
        assert_eq!(q.choose("foo", |_| 0), Some(1));
        assert!(matches!(r.leave("Q", 1), Some(Left::OwnerChanged)));
        let q = r.get("Q").unwrap();
        assert_eq!((q.owner(), q.methods().to_vec()), (2, methods(&["bar"])));
        assert!(matches!(r.leave("Q", 2), Some(Left::Gone(_))));
        assert!(r.get("Q").is_none());
    }

    #[test]
    fn balance_chooses_the_least_loaded_publisher_of_the_method() {
        let mut r = Registry::default();
        for (conn, ms) in [(1, &["a"][..]), (2, &["a", "b"][..]), (3, &["a"][..])] {
            r.publish_as("B", methods(ms), conn, NameMode::Balance, LIMITS)
                .unwrap();
        }
        let b = r.get("B").unwrap();
        let load = |c: ConnId| [0, 5, 2, 2][c as usize];
        assert_eq!(b.choose("a", load), Some(2));
        assert_eq!(b.choose("a", load), Some(3), "equal loads take turns");
        assert_eq!(b.choose("a", load), Some(2));
        assert_eq!(b.choose("b", load), Some(2));
        assert_eq!(b.choose("c", load), None);
        let even = |_| 0;
        let turns: Vec<_> = (0..6).map(|_| b.choose("a", even).unwrap()).collect();
        assert_eq!(turns, [3, 1, 2, 3, 1, 2]);
        assert!(b.serves(3) && b.has_method("b"));
        assert!(matches!(r.leave("B", 2), Some(Left::Quietly)));
        assert!(!r.get("B").unwrap().has_method("b"));
    }

    #[test]
    fn reorder_follows_the_given_order_and_choose_among_filters() {
        let mut r = Registry::default();
        for conn in [1, 2, 3] {
            r.publish_as("Q", methods(&["a"]), conn, NameMode::Queue, LIMITS)
                .unwrap();
        }
        let q = r.get_mut("Q").unwrap();
        assert!(!q.reorder(&[1, 9, 3]), "the owner stays");
        assert!(q.reorder(&[3, 1]), "3 owns, then 1, then the unlisted 2");
        assert_eq!(q.owner(), 3);
        assert!(matches!(r.leave("Q", 3), Some(Left::OwnerChanged)));
        let q = r.get("Q").unwrap();
        assert_eq!(q.owner(), 1);
        assert_eq!(q.choose_among("a", |_| 0, |c| c != 1), None);
        assert_eq!(q.choose_among("a", |_| 0, |c| c == 1), Some(1));
        for conn in [1, 2, 3] {
            r.publish_as("B", methods(&["a"]), conn, NameMode::Balance, LIMITS)
                .unwrap();
        }
        let b = r.get("B").unwrap();
        let turns: Vec<_> = (0..4)
            .map(|_| b.choose_among("a", |_| 0, |c| c != 2).unwrap())
            .collect();
        assert!(turns.contains(&1) && turns.contains(&3) && !turns.contains(&2));
        assert!(b.has_publisher(2) && !b.has_publisher(4));
    }

    const LIMITS: NameLimits = NameLimits {
        max_name: 16,
        max_methods: 2,
    };

    fn methods(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn publish_checks_in_the_originals_order() {
        let mut r = Registry::default();
        let e = r.publish("", methods(&[]), 1, LIMITS).unwrap_err();
        assert_eq!(e.message, "Session alias must be defined");
        r.publish("A", methods(&["foo"]), 1, LIMITS).unwrap();
        let e = r.publish("A", methods(&["foo"]), 1, LIMITS).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (ErrorCode::AlreadyExists, "Session 'A' already exists")
        );
        let e = r
            .publish("B", methods(&["a", "b", "c"]), 1, LIMITS)
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::LimitExceeded);
        let e = r
            .publish(&"x".repeat(17), methods(&[]), 1, LIMITS)
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::LimitExceeded);
    }

    #[test]
    fn only_the_publisher_rescinds() {
        let mut r = Registry::default();
        r.publish("A", methods(&["foo"]), 1, LIMITS).unwrap();
        assert_eq!(r.rescind("A", 2).unwrap_err().code, ErrorCode::NotPublisher);
        assert!(matches!(r.rescind("A", 1), Ok(Left::Gone(_))));
        r.publish("A", methods(&["foo"]), 1, LIMITS).unwrap();
        assert_eq!(
            r.rescind("", 1).unwrap_err().message,
            "Session alias is required"
        );
        r.rescind("A", 1).unwrap();
        assert_eq!(
            r.rescind("A", 1).unwrap_err().message,
            "Session 'A' doesn't exist"
        );
    }

    #[test]
    fn on_prefix_names_the_same_method() {
        let mut r = Registry::default();
        r.publish("A", methods(&["foo", "on_bar"]), 1, LIMITS)
            .unwrap();
        let s = r.get("A").unwrap();
        assert_eq!(s.owner(), 1);
        assert!(s.has_method("foo") && s.has_method("on_foo"));
        assert!(s.has_method("bar") && s.has_method("on_bar"));
        assert!(!s.has_method("baz"));
    }

    /// The rule as first written, building `on_{method}` on every call.
    fn has_method_by_formatting(published: &[&str], method: &str) -> bool {
        let set: HashSet<String> = published.iter().map(|s| s.to_string()).collect();
        set.contains(method)
            || method.strip_prefix("on_").is_some_and(|m| set.contains(m))
            || set.contains(&format!("on_{method}"))
    }

    #[test]
    fn the_name_rule_without_allocation_agrees_with_the_formatted_one() {
        let names = [
            "x", "on_x", "on_on_x", "on_", "on_on_", "o", "on", "y", "on_y",
        ];
        let limits = NameLimits {
            max_name: 16,
            max_methods: 16,
        };
        // Every subset of the names published, every name asked for.
        for mask in 0u32..(1 << names.len()) {
            let published: Vec<&str> = (0..names.len())
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| names[i])
                .collect();
            let mut r = Registry::default();
            r.publish("S", methods(&published), 1, limits).unwrap();
            let s = r.get("S").unwrap();
            for asked in names.iter().chain(&["z", "on_z", "on_on_on_x"]) {
                assert_eq!(
                    s.has_method(asked),
                    has_method_by_formatting(&published, asked),
                    "{asked} against {published:?}"
                );
            }
        }
    }
}
