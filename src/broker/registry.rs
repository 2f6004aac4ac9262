//! The published sessions and who subscribes to them (pure state).

use super::ConnId;
use crate::error::{Error, ErrorCode};
use crate::id_hash::IdSet;
use crate::wire::SessionInfo;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

#[derive(Debug)]
pub(super) struct Session {
    /// The published name, shared with the routes of calls to it.
    pub name: Rc<str>,
    pub methods: Vec<String>,
    /// The names a deliver may give: every method, and every method
    /// published as `on_foo` once more as `foo` (see
    /// [`Session::has_method`]).
    accepted: HashSet<String>,
    pub publisher: ConnId,
    pub subscribers: IdSet<ConnId>,
}

impl Session {
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
        self.accepted.contains(method)
            || method
                .strip_prefix("on_")
                .is_some_and(|m| self.accepted.contains(m))
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
}

impl Registry {
    pub fn get(&self, name: &str) -> Option<&Session> {
        self.sessions.get(name)
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut Session> {
        self.sessions.get_mut(name)
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Every published session, in no order.
    pub fn sessions(&self) -> impl Iterator<Item = &Session> {
        self.sessions.values()
    }

    /// Publishes `name`, with the original's checks in its order.
    pub fn publish(
        &mut self,
        name: &str,
        methods: Vec<String>,
        publisher: ConnId,
        limits: NameLimits,
    ) -> Result<(), Error> {
        if name.is_empty() {
            return Err(Error::new(
                ErrorCode::InvalidArgument,
                "Session alias must be defined",
            ));
        }
        check_name("session name", name, limits.max_name)?;
        if self.sessions.contains_key(name) {
            return Err(Error::new(
                ErrorCode::AlreadyExists,
                format!("Session '{name}' already exists"),
            ));
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
        let mut accepted = HashSet::with_capacity(methods.len());
        for m in &methods {
            if m.is_empty() {
                return Err(Error::new(
                    ErrorCode::InvalidArgument,
                    "method names must not be empty",
                ));
            }
            check_name("method name", m, limits.max_name)?;
            accepted.insert(m.clone());
            if let Some(bare) = m.strip_prefix("on_") {
                accepted.insert(bare.to_string());
            }
        }
        self.sessions.insert(
            name.to_string(),
            Session {
                name: Rc::from(name),
                methods,
                accepted,
                publisher,
                subscribers: IdSet::default(),
            },
        );
        Ok(())
    }

    /// Checks a rescind by `by`; on success removes and returns the session.
    pub fn rescind(&mut self, name: &str, by: ConnId) -> Result<Session, Error> {
        if name.is_empty() {
            return Err(Error::new(
                ErrorCode::InvalidArgument,
                "Session alias is required",
            ));
        }
        match self.sessions.get(name) {
            None => Err(Error::no_such_session(name)),
            Some(s) if s.publisher != by => Err(Error::new(
                ErrorCode::NotPublisher,
                format!("Session '{name}' was published by another connection"),
            )),
            Some(_) => Ok(self.sessions.remove(name).expect("checked above")),
        }
    }

    /// Removes a session without checks (its publisher is gone).
    pub fn remove(&mut self, name: &str) -> Option<Session> {
        self.sessions.remove(name)
    }

    /// Every session, sorted by name.
    pub fn listing(&self) -> Vec<SessionInfo> {
        let mut list: Vec<SessionInfo> = self
            .sessions
            .iter()
            .map(|(name, s)| SessionInfo {
                name: name.clone(),
                methods: s.methods.clone(),
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
