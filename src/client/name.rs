//! [`Name`]: a response's type or a method's name as the client hands
//! it over in [`super::CallEvent`] and [`super::Inbound`], and
//! [`Names`], the connection's names seen before, which received names
//! share instead of each being a new string.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::rc::Rc;

/// A name from the broker (a response's type such as `return`, a
/// method): shared text, so that the many events of one connection
/// carrying the same name share one string, and a clone is a reference
/// count. Reads as a `&str` (it dereferences to one), compares with
/// strings, and prints (also with `{:?}`) as the string does.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(Rc<str>);

impl Name {
    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Name {
    fn from(s: &str) -> Name {
        Name(Rc::from(s))
    }
}

impl From<String> for Name {
    fn from(s: String) -> Name {
        Name(Rc::from(s))
    }
}

impl From<Name> for String {
    fn from(n: Name) -> String {
        n.0.to_string()
    }
}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<String> for Name {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<Name> for str {
    fn eq(&self, other: &Name) -> bool {
        *self == *other.0
    }
}

impl PartialEq<Name> for &str {
    fn eq(&self, other: &Name) -> bool {
        **self == *other.0
    }
}

impl PartialEq<Name> for String {
    fn eq(&self, other: &Name) -> bool {
        **self == *other.0
    }
}

/// How many names a connection keeps: a client's calls and answers use
/// a handful of methods and response types; past that, the oldest
/// kept goes (a name not kept is only a new string, as before).
const KEPT: usize = 16;

/// The names of one connection seen before.
#[derive(Default)]
pub(crate) struct Names {
    kept: Vec<Name>,
    /// Where the next name not kept goes once `kept` is full.
    next: usize,
}

impl Names {
    /// `name` as a shared name: one seen before, or a new one kept.
    pub(crate) fn get(&mut self, name: &str) -> Name {
        if let Some(known) = self.kept.iter().find(|k| *k.0 == *name) {
            return known.clone();
        }
        let new = Name::from(name);
        if self.kept.len() < KEPT {
            self.kept.push(new.clone());
        } else {
            self.kept[self.next] = new.clone();
            self.next = (self.next + 1) % KEPT;
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_shared_and_read_as_strings() {
        let mut names = Names::default();
        let a = names.get("return");
        let b = names.get("return");
        assert!(Rc::ptr_eq(&a.0, &b.0), "seen before: shared");
        assert_eq!(a, "return");
        assert_eq!("return", a);
        assert_eq!(a, "return".to_string());
        assert_eq!(format!("{a:?} {a}"), r#""return" return"#);
        assert_eq!(a.len(), 6);
        // Past the limit the oldest goes, and every name still reads.
        for i in 0..2 * KEPT {
            assert_eq!(names.get(&format!("m{i}")).as_str(), format!("m{i}"));
        }
        assert_eq!(names.kept.len(), KEPT);
        let c = names.get("return");
        assert_eq!(c, a);
        assert!(!Rc::ptr_eq(&a.0, &c.0), "forgotten: a new string");
    }
}
