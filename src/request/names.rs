//! Handler and message names: the `on_` prefix rule, lookup keys built
//! without allocating, and cheap owned names for response types.
//!
//! Every local request and response looks a handler up by a name derived
//! from the message (`on_<method>`, `on_my_<type>`, `on_<role>_<type>`).
//! Building those keys with `format!` cost an allocation per lookup, about
//! a tenth of a local request+return pair, so keys are built on the stack.

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;

/// The prefix of handler names (`on_foo` handles `foo`).
pub(crate) const ON: &str = "on_";

/// The prefix of a stage's handlers for its own responses (`on_my_T`).
pub(crate) const ON_MY: &str = "on_my_";

/// Keys up to this many bytes are built on the stack; longer ones (rare:
/// names are identifiers) in a `String`.
const STACK_KEY: usize = 128;

/// `name` without one leading `on_`.
#[inline]
pub(crate) fn strip_on(name: &str) -> &str {
    name.strip_prefix(ON).unwrap_or(name)
}

/// Runs `f` on the concatenation of `parts`, without allocating when it is
/// at most [`STACK_KEY`] bytes long.
pub(crate) fn with_joined<R>(parts: &[&str], f: impl FnOnce(&str) -> R) -> R {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    if len > STACK_KEY {
        return f(&parts.concat());
    }
    let mut buf = [0u8; STACK_KEY];
    let mut at = 0;
    for part in parts {
        buf[at..at + part.len()].copy_from_slice(part.as_bytes());
        at += part.len();
    }
    // Whole strings laid end to end are valid UTF-8; the check only keeps
    // this module free of `unsafe`.
    match std::str::from_utf8(&buf[..len]) {
        Ok(key) => f(key),
        Err(_) => f(&parts.concat()),
    }
}

/// A response type (`return`, `emit`, `error`, or one of the callee's
/// choosing) as the caller's side keeps it: the usual types are a tag,
/// so the common response allocates no name, and two usual types
/// compare without reading a string. Two words: it is in every caller's
/// record twice (its first mapping, its first answer waiting), and a
/// name of the callee's own, the rare case, is boxed twice to keep it so.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum TypeName {
    Return,
    Emit,
    Error,
    Other(Box<Box<str>>),
}

impl std::ops::Deref for TypeName {
    type Target = str;

    #[inline]
    fn deref(&self) -> &str {
        match self {
            TypeName::Return => "return",
            TypeName::Emit => "emit",
            TypeName::Error => "error",
            TypeName::Other(name) => name,
        }
    }
}

impl PartialEq<str> for TypeName {
    #[inline]
    fn eq(&self, other: &str) -> bool {
        **self == *other
    }
}

impl fmt::Debug for TypeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// The tag of a usual type name.
#[inline]
fn type_name_of_usual(kind: &str) -> Option<TypeName> {
    // By length first: each arm then compares a few bytes of known
    // length, inline, where a string match called memcmp per candidate.
    match (kind.len(), kind) {
        (6, "return") => Some(TypeName::Return),
        (4, "emit") => Some(TypeName::Emit),
        (5, "error") => Some(TypeName::Error),
        _ => None,
    }
}

/// The [`TypeName`] for `kind`. Inline, with the copy of a type of the
/// callee's own out of line: every answer and every mapping names one.
#[inline]
pub(crate) fn type_name(kind: &str) -> TypeName {
    match type_name_of_usual(kind) {
        Some(usual) => usual,
        None => owned_type_name(kind),
    }
}

#[cold]
fn owned_type_name(kind: &str) -> TypeName {
    TypeName::Other(Box::new(kind.into()))
}

thread_local! {
    /// The method name of the last request made on this thread.
    static LAST: RefCell<Option<Rc<str>>> = const { RefCell::new(None) };
}

/// `method` as a shared name: the one of the last request made on this
/// thread when it is the same (a program sends one method many times),
/// else a new one that becomes the last. One allocation per change of
/// method rather than per request.
///
/// Inline, with the change of name out of line: small enough that the
/// thread-local is reached directly (out of line, through `LocalKey`'s
/// accessor pointer and a `bcmp` call, the usual case cost ~70
/// instructions).
#[inline]
pub(crate) fn method_name(method: &str) -> Rc<str> {
    let same = LAST.with(|last| match &*last.borrow() {
        Some(name) if same_bytes(name.as_bytes(), method.as_bytes()) => Some(name.clone()),
        _ => None,
    });
    match same {
        Some(name) => name,
        None => new_method_name(method),
    }
}

/// Whether `a` and `b` are equal; method names are short, so a loop
/// beats a call to `bcmp`.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

#[cold]
fn new_method_name(method: &str) -> Rc<str> {
    let name: Rc<str> = Rc::from(method);
    let old = LAST.with(|last| last.replace(Some(name.clone())));
    drop(old);
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joined_keys_match_concat_at_every_length() {
        for n in [0, 1, STACK_KEY - 4, STACK_KEY - 3, STACK_KEY + 10] {
            let tail = "x".repeat(n);
            let parts = ["on_", tail.as_str()];
            with_joined(&parts, |k| assert_eq!(k, parts.concat()));
        }
        with_joined(&["on_", "rôle", "_", "ret"], |k| {
            assert_eq!(k, "on_rôle_ret")
        });
    }

    #[test]
    fn usual_type_names_are_static() {
        assert!(matches!(type_name("return"), TypeName::Return));
        assert!(matches!(type_name("emit"), TypeName::Emit));
        assert!(matches!(type_name("error"), TypeName::Error));
        assert!(matches!(type_name("knock"), TypeName::Other(_)));
        assert_eq!(*type_name("knock"), *"knock");
        assert!(type_name("knock") != type_name("return"));
        assert_eq!(std::mem::size_of::<TypeName>(), 16);
        assert_eq!(strip_on("on_on_x"), "on_x");
        assert_eq!(strip_on("x"), "x");
    }
}
