//! Per-request and per-stage data: POE's req, rsp and self scopes.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;

/// Named values of any type, owned by one side of a transaction (or by a
/// stage). When that side ends, every value is dropped exactly once: a
/// value's `Drop` is its free hook, and [`Scope::on_end`] adds a plain
/// one.
#[derive(Default)]
pub struct Scope {
    /// Created on first use: every request has a scope on each side, and
    /// most never store anything, so an empty scope costs no hash map
    /// (whose creation seeds its hasher). Boxed, so that the empty scope
    /// in every request record is one word, not a map's six.
    values: RefCell<Option<Box<Values>>>,
}

type Values = HashMap<String, Box<dyn Any>>;

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let values = self.values.borrow();
        let mut keys: Vec<_> = values.iter().flat_map(|v| v.keys()).collect();
        keys.sort();
        f.debug_struct("Scope").field("keys", &keys).finish()
    }
}

/// Runs a closure when dropped.
struct OnDrop(Option<Box<dyn FnOnce()>>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

impl Scope {
    /// Stores `value` under `key`, dropping the value it replaces.
    pub fn set<T: Any>(&self, key: &str, value: T) {
        let old = self
            .values
            .borrow_mut()
            .get_or_insert_with(Box::default)
            .insert(key.to_string(), Box::new(value));
        // Dropped here, after the borrow ends: its Drop may use this scope.
        drop(old);
    }

    /// A copy of the value under `key`, if there is one of type `T`.
    pub fn get<T: Any + Clone>(&self, key: &str) -> Option<T> {
        self.values
            .borrow()
            .as_ref()?
            .get(key)
            .and_then(|v| v.downcast_ref::<T>())
            .cloned()
    }

    /// Runs `f` on the value under `key` (of type `T`), in place.
    ///
    /// The value is taken out while `f` runs, so `f` may use this scope.
    pub fn with<T: Any, R>(&self, key: &str, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        let mut value = self.values.borrow_mut().as_mut()?.remove(key)?;
        let result = value.downcast_mut::<T>().map(f);
        let replaced = self
            .values
            .borrow_mut()
            .get_or_insert_with(Box::default)
            .insert(key.to_string(), value);
        drop(replaced);
        result
    }

    /// Whether `key` holds a value.
    pub fn contains(&self, key: &str) -> bool {
        self.values
            .borrow()
            .as_ref()
            .is_some_and(|v| v.contains_key(key))
    }

    /// Removes and drops the value under `key`; returns whether there was one.
    pub fn remove(&self, key: &str) -> bool {
        let old = self
            .values
            .borrow_mut()
            .as_mut()
            .and_then(|v| v.remove(key));
        old.is_some()
    }

    /// How many values are stored.
    pub fn len(&self) -> usize {
        self.values.borrow().as_ref().map_or(0, |v| v.len())
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs `f` once, when this scope's side of the transaction ends (or
    /// when the value is replaced or removed under the same key).
    pub fn on_end(&self, key: &str, f: impl FnOnce() + 'static) {
        self.set(key, OnDrop(Some(Box::new(f))));
    }

    /// Drops every value, outside the borrow so that their `Drop` may
    /// touch this scope.
    ///
    /// Inline, the dropping out of line: every request clears both
    /// sides' scopes when it ends and when its record is emptied, and
    /// most stored nothing.
    #[inline]
    pub(crate) fn clear(&self) {
        let values = self.values.borrow_mut().take();
        if let Some(values) = values {
            drop_values(values);
        }
    }
}

/// Drops what a scope stored (see [`Scope::clear`]).
#[cold]
fn drop_values(values: Box<Values>) {
    drop(values);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[test]
    fn values_are_dropped_once_at_clear() {
        let count = Rc::new(std::cell::Cell::new(0));
        let scope = Scope::default();
        let c = count.clone();
        scope.on_end("hook", move || c.set(c.get() + 1));
        scope.set("n", 1i64);
        assert_eq!(scope.get::<i64>("n"), Some(1));
        assert_eq!(
            scope.with("n", |n: &mut i64| {
                *n += 1;
                *n
            }),
            Some(2)
        );
        scope.clear();
        scope.clear();
        assert_eq!(count.get(), 1);
        assert!(scope.is_empty());
    }
}
