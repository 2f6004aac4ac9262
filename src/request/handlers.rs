//! A stage's handler table: handlers by the name they were registered
//! under, plus what each message looks up, kept ready so that a request
//! costs one hash lookup and a response none.

use super::names::{strip_on, with_joined, ON, ON_MY};
use crate::id_hash::PeerIdMap;
use std::cell::RefCell;
use std::rc::Rc;

/// Handler names to handlers. Hashed with the keyed folded multiply of
/// [`PeerIdMap`] rather than SipHash: every request looks its method up
/// here, and SipHash was ~250 instructions of a local request+return
/// pair. Keyed per table, so names another program sends (remote
/// requests and recalls) cannot be chosen to collide; they are only
/// looked up, never added, anyway.
type ByName<H> = PeerIdMap<String, H>;

/// Handlers by name, with the method index derived from them. `H` is a
/// shared handler (a stage's [`HandlerFn`](super::HandlerFn)); the table
/// only stores and finds it.
///
/// Invariant: for every key `m`, `methods[m]` is `by_name["on_" + m]` if
/// that exists, else `by_name[m]`, and there is no entry when neither
/// exists; `intercepts` counts the names that start with `on_my_`.
pub(crate) struct HandlerTable<H> {
    by_name: ByName<H>,
    /// What a request for method `m` runs, under `m` without a leading
    /// `on_` (POE::Stage 0.05's rule: `on_m`, else `m`).
    methods: ByName<H>,
    /// When zero (the usual case) no response can be intercepted by its
    /// own stage, and the `on_my_<type>` lookup is skipped.
    intercepts: usize,
    /// The last shared method name looked up with
    /// [`HandlerTable::method_named`], and what it found: a stage mostly
    /// serves one method many times, and requests share their method's
    /// name, so comparing pointers spares hashing the name. Holding the
    /// name keeps its address from being reused by another one.
    last: RefCell<Option<(Rc<str>, Option<H>)>>,
}

impl<H> Default for HandlerTable<H> {
    fn default() -> Self {
        HandlerTable {
            by_name: ByName::default(),
            methods: ByName::default(),
            intercepts: 0,
            last: RefCell::new(None),
        }
    }
}

impl<H: Clone> HandlerTable<H> {
    /// Registers `handler` under `name`; returns the one it replaces.
    pub(crate) fn insert(&mut self, name: &str, handler: H) -> Option<H> {
        *self.last.get_mut() = None;
        let old = self.by_name.insert(name.to_string(), handler);
        if old.is_none() && name.starts_with(ON_MY) {
            self.intercepts += 1;
        }
        self.reindex(name);
        old
    }

    /// Removes the handler under `name`; returns it.
    pub(crate) fn remove(&mut self, name: &str) -> Option<H> {
        *self.last.get_mut() = None;
        let old = self.by_name.remove(name);
        if old.is_some() {
            if name.starts_with(ON_MY) {
                self.intercepts -= 1;
            }
            self.reindex(name);
        }
        old
    }

    /// The handler registered under exactly `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&H> {
        self.by_name.get(name)
    }

    /// Every registered name.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// The handler for a request of `method`: strip an optional `on_`,
    /// then `on_<name>`, else `<name>`.
    pub(crate) fn method(&self, method: &str) -> Option<&H> {
        self.methods.get(strip_on(method))
    }

    /// As [`HandlerTable::method`], for a shared name: found again
    /// without hashing when it is the last one looked up.
    pub(crate) fn method_named(&self, method: &Rc<str>) -> Option<H> {
        if let Some((name, found)) = &*self.last.borrow() {
            if Rc::ptr_eq(name, method) {
                return found.clone();
            }
        }
        let found = self.method(method).cloned();
        *self.last.borrow_mut() = Some((method.clone(), found.clone()));
        found
    }

    /// The stage's `on_my_<kind>` handler, which intercepts its own
    /// responses of type `kind`.
    #[inline]
    pub(crate) fn intercept(&self, kind: &str) -> Option<&H> {
        if self.intercepts == 0 {
            return None;
        }
        with_joined(&[ON_MY, kind], |key| self.by_name.get(key))
    }

    /// The stage's `on_<role>_<kind>` handler, for responses to its
    /// requests with a role.
    pub(crate) fn role(&self, role: &str, kind: &str) -> Option<&H> {
        with_joined(&[ON, role, "_", kind], |key| self.by_name.get(key))
    }

    /// Restores the invariant after `name` changed: it is the `on_` form
    /// of the method it names without `on_`, and the bare form of the
    /// method named exactly `name`.
    fn reindex(&mut self, name: &str) {
        if let Some(bare) = name.strip_prefix(ON) {
            self.reindex_method(bare);
        }
        self.reindex_method(name);
    }

    fn reindex_method(&mut self, bare: &str) {
        let found = with_joined(&[ON, bare], |key| self.by_name.get(key))
            .or_else(|| self.by_name.get(bare))
            .cloned();
        match found {
            Some(h) => {
                self.methods.insert(bare.to_string(), h);
            }
            None => {
                self.methods.remove(bare);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    /// A handler stand-in: the table compares them by identity only.
    type HandlerFn = Rc<u8>;

    fn handler() -> HandlerFn {
        Rc::new(0)
    }

    fn same(a: Option<&HandlerFn>, b: &HandlerFn) -> bool {
        a.is_some_and(|a| Rc::ptr_eq(a, b))
    }

    #[test]
    fn on_form_wins_and_removal_falls_back() {
        let mut t = HandlerTable::<HandlerFn>::default();
        let (bare, on) = (handler(), handler());
        t.insert("foo", bare.clone());
        assert!(same(t.method("foo"), &bare));
        assert!(same(t.method("on_foo"), &bare));
        t.insert("on_foo", on.clone());
        assert!(same(t.method("foo"), &on));
        t.remove("on_foo");
        assert!(same(t.method("foo"), &bare));
        t.remove("foo");
        assert!(t.method("foo").is_none());
        assert!(t.methods.is_empty());
    }

    #[test]
    fn shared_names_find_what_the_table_holds_now() {
        let mut t = HandlerTable::<HandlerFn>::default();
        let (first, second) = (handler(), handler());
        let name: Rc<str> = Rc::from("foo");
        assert!(t.method_named(&name).is_none());
        t.insert("foo", first.clone());
        assert!(same(t.method_named(&name).as_ref(), &first));
        assert!(same(t.method_named(&name).as_ref(), &first));
        t.insert("on_foo", second.clone());
        assert!(same(t.method_named(&name).as_ref(), &second));
        let other: Rc<str> = Rc::from("on_foo");
        assert!(same(t.method_named(&other).as_ref(), &second));
        t.remove("on_foo");
        assert!(same(t.method_named(&name).as_ref(), &first));
        t.remove("foo");
        assert!(t.method_named(&name).is_none());
    }

    #[test]
    fn only_one_on_is_stripped() {
        let mut t = HandlerTable::<HandlerFn>::default();
        let (x, onx, ononx) = (handler(), handler(), handler());
        t.insert("on_x", onx.clone());
        assert!(same(t.method("x"), &onx));
        assert!(same(t.method("on_on_x"), &onx));
        t.insert("on_on_x", ononx.clone());
        assert!(same(t.method("on_on_x"), &ononx));
        assert!(same(t.method("on_x"), &onx));
        t.insert("x", x);
        assert!(same(t.method("x"), &onx));
    }

    #[test]
    fn intercepts_are_counted() {
        let mut t = HandlerTable::<HandlerFn>::default();
        let my = handler();
        assert!(t.intercept("return").is_none());
        t.insert("on_my_return", my.clone());
        t.insert("on_my_return", my.clone());
        assert!(same(t.intercept("return"), &my));
        assert_eq!(t.intercepts, 1);
        t.remove("on_my_return");
        t.remove("on_my_return");
        assert_eq!(t.intercepts, 0);
        let role = handler();
        t.insert("on_knock_hello", role.clone());
        assert!(same(t.role("knock", "hello"), &role));
    }
}
