//! A request's response handlers, and which one a response of a given
//! type runs (steps 2 to 4 of the handler choice in the module docs;
//! step 1, interception by the callee, happens on the callee's side).

use super::names::{strip_on, type_name, TypeName};
use std::fmt;

/// The requesting stage as the choice sees it: its handlers by exact
/// name and by role. (A [`Stage`](super::Stage) of handlers `H`.)
pub(crate) trait Requester<H> {
    /// The handler registered under exactly `name`.
    fn handler(&self, name: &str) -> Option<H>;
    /// The `on_<role>_<kind>` handler.
    fn role_handler(&self, role: &str, kind: &str) -> Option<H>;
}

/// A response handler of a request: a closure, or the name of a handler
/// of the requesting stage.
#[derive(Clone)]
pub(crate) enum HandlerRef<H> {
    /// Runs as it is.
    Closure(H),
    /// The requesting stage's handler of this exact name, looked up when
    /// the response arrives.
    Method(Box<str>),
}

/// One request's `on(T)` mappings, role and fallback.
///
/// A request maps one to three types, most often only `return`: the
/// mappings are a list searched linearly, and the first one is kept
/// inline, so the usual request allocates nothing here (a hash map per
/// request was 6% of a local request+return pair). What few requests
/// use (further mappings, a fallback, a role) is boxed apart: the
/// handlers are in every caller's record and move with every builder,
/// and their drop runs twice per request (when the record is emptied
/// and when it is refilled), so the usual case is kept to one mapping
/// and a null pointer.
///
/// The mapping kept inline is a closure's (a mapping to a method of
/// the requesting stage, rarer, is kept with the others): without a
/// [`HandlerRef`]'s tag it is a word smaller. Each type has one mapping,
/// inline or in the list, so where it is does not change the choice.
pub(crate) struct ResponseHandlers<H> {
    first: Option<(TypeName, H)>,
    more: Option<Box<More<H>>>,
}

/// The parts of [`ResponseHandlers`] few requests use.
struct More<H> {
    /// The second mapping: a request mapping `return` and `error` (the
    /// usual pair) allocates the box, and no list besides.
    second: Option<(TypeName, HandlerRef<H>)>,
    /// The third mapping on.
    rest: Vec<(TypeName, HandlerRef<H>)>,
    fallback: Option<H>,
    role: Option<Box<str>>,
}

impl<H> Default for ResponseHandlers<H> {
    fn default() -> Self {
        ResponseHandlers {
            first: None,
            more: None,
        }
    }
}

impl<H> ResponseHandlers<H> {
    /// The mappings after the inline one, in the order made.
    fn rest(&self) -> impl Iterator<Item = &(TypeName, HandlerRef<H>)> {
        let more = self.more.as_deref();
        let second = more.and_then(|m| m.second.as_ref());
        let rest = more.map_or(&[][..], |m| &m.rest[..]);
        second.into_iter().chain(rest)
    }

    /// The mapped types, inline first.
    fn types(&self) -> impl Iterator<Item = &TypeName> {
        let first = self.first.iter().map(|(t, _)| t);
        first.chain(self.rest().map(|(t, _)| t))
    }

    fn more(&mut self) -> &mut More<H> {
        self.more.get_or_insert_with(|| {
            Box::new(More {
                second: None,
                rest: Vec::new(),
                fallback: None,
                role: None,
            })
        })
    }

    fn fallback(&self) -> Option<&H> {
        self.more.as_deref().and_then(|m| m.fallback.as_ref())
    }

    fn role(&self) -> Option<&str> {
        self.more.as_deref().and_then(|m| m.role.as_deref())
    }
}

impl<H> fmt::Debug for ResponseHandlers<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let types: Vec<&str> = self.types().map(|t| &**t).collect();
        f.debug_struct("ResponseHandlers")
            .field("types", &types)
            .field("role", &self.role())
            .field("fallback", &self.fallback().is_some())
            .finish()
    }
}

impl<H: Clone> ResponseHandlers<H> {
    /// Maps responses of type `kind` (a leading `on_` is ignored) to
    /// `handler`, replacing an earlier mapping of the same type.
    pub(crate) fn map(&mut self, kind: &str, handler: HandlerRef<H>) {
        let kind = strip_on(kind);
        match (&mut self.first, handler) {
            (None, HandlerRef::Closure(h)) if self.more.is_none() => {
                // The usual request maps one type: nothing to replace
                // (written in place, without the drop of the `None`).
                self.first.get_or_insert((type_name(kind), h));
            }
            (Some((t, old)), HandlerRef::Closure(h)) if t == kind => {
                *old = h;
            }
            (first, handler) => {
                // The list holds the rest: a second type, any method
                // mapping. A method mapping the inline type displaces it
                // (each type has one mapping, here or inline).
                if first.as_ref().is_some_and(|(t, _)| t == kind) {
                    *first = None;
                }
                let more = self.more();
                let mut mapped = more.second.iter_mut().chain(more.rest.iter_mut());
                if let Some((_, h)) = mapped.find(|(t, _)| t == kind) {
                    *h = handler;
                } else if more.second.is_none() {
                    more.second = Some((type_name(kind), handler));
                } else {
                    more.rest.push((type_name(kind), handler));
                }
            }
        }
    }

    /// Sets the handler of every type that nothing else handles.
    pub(crate) fn set_fallback(&mut self, handler: H) {
        self.more().fallback = Some(handler);
    }

    /// Sets the role: a response of type T then runs the requesting
    /// stage's `on_<role>_<T>` unless `on(T)` maps it.
    pub(crate) fn set_role(&mut self, role: &str) {
        self.more().role = Some(role.into());
    }

    /// The handler of a response of type `kind`: its `on(T)` mapping (the
    /// fallback when that names a handler the requester lacks), else the
    /// requester's `on_<role>_<kind>`, else the fallback.
    pub(crate) fn choose(
        &self,
        kind: &TypeName,
        requester: Option<&impl Requester<H>>,
    ) -> Option<H> {
        if let Some((_, h)) = self.first.as_ref().filter(|(t, _)| t == kind) {
            return Some(h.clone());
        }
        if let Some((_, h)) = self.rest().find(|(t, _)| t == kind) {
            let found = match h {
                HandlerRef::Closure(f) => Some(f.clone()),
                HandlerRef::Method(name) => requester.and_then(|s| s.handler(name)),
            };
            return found.or_else(|| self.fallback().cloned());
        }
        if let (Some(role), Some(stage)) = (self.role(), requester) {
            if let Some(h) = stage.role_handler(role, kind) {
                return Some(h);
            }
        }
        self.fallback().cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    /// A handler stand-in: compared by identity only.
    type HandlerFn = Rc<u8>;

    /// A requester without handlers.
    struct Nobody;

    impl Requester<HandlerFn> for Nobody {
        fn handler(&self, _: &str) -> Option<HandlerFn> {
            None
        }
        fn role_handler(&self, _: &str, _: &str) -> Option<HandlerFn> {
            None
        }
    }

    fn closure() -> HandlerFn {
        Rc::new(0)
    }

    fn chosen(h: &ResponseHandlers<HandlerFn>, kind: &str, want: &HandlerFn) -> bool {
        h.choose(&type_name(kind), None::<&Nobody>)
            .is_some_and(|got| Rc::ptr_eq(&got, want))
    }

    #[test]
    fn two_mappings_need_no_list() {
        let mut h = ResponseHandlers::default();
        let (ret, err) = (closure(), closure());
        h.map("return", HandlerRef::Closure(ret.clone()));
        h.map("error", HandlerRef::Closure(err.clone()));
        assert!(chosen(&h, "return", &ret) && chosen(&h, "error", &err));
        let more = h.more.as_deref().expect("the second mapping's box");
        assert_eq!(more.rest.capacity(), 0, "no list allocated");
        h.map("error", HandlerRef::Closure(ret.clone()));
        assert!(chosen(&h, "error", &ret), "replaced in place");
        assert_eq!(h.types().count(), 2);
    }

    #[test]
    fn mappings_replace_and_fall_back() {
        let mut h = ResponseHandlers::default();
        let (a, b, c, fb) = (closure(), closure(), closure(), closure());
        h.map("on_return", HandlerRef::Closure(a.clone()));
        h.map("emit", HandlerRef::Closure(b.clone()));
        h.map("knock", HandlerRef::Closure(a.clone()));
        h.map("return", HandlerRef::Closure(c.clone()));
        assert!(chosen(&h, "return", &c));
        assert!(chosen(&h, "emit", &b));
        assert!(chosen(&h, "knock", &a));
        assert!(h.choose(&type_name("error"), None::<&Nobody>).is_none());
        h.set_fallback(fb.clone());
        assert!(chosen(&h, "error", &fb));
        // A method mapping without a requesting stage falls back.
        h.map("emit", HandlerRef::Method("on_x".into()));
        assert!(chosen(&h, "emit", &fb));
        assert_eq!(h.types().count(), 3);
        // A method mapping of the inline type replaces it, and a closure
        // mapping of it again goes where the type's mapping is.
        h.map("return", HandlerRef::Method("on_y".into()));
        assert!(chosen(&h, "return", &fb));
        assert_eq!(h.types().count(), 3);
        h.map("return", HandlerRef::Closure(a.clone()));
        assert!(chosen(&h, "return", &a));
        assert_eq!(h.types().count(), 3);
    }
}
