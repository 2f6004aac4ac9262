//! Name watches: who is told when a name appears, changes owner or goes
//! (pure state), and the core's handling of them.
//!
//! A watch covers one name, a prefix (`prefix*`) or every name (`*`).
//! Two kinds of watcher share this one mechanism:
//!
//! * a client's watch ([`Frame::Watch`]): answered with the current
//!   state (every matching published session), then told of every
//!   change as a [`Frame::NameChanged`] until it unwatches or closes;
//! * a subscribe waiting for its name (`waiters.rs`): an exact watch
//!   whose first `Appeared` answers the subscribe and ends it.
//!
//! Watches of a name are kept in the order they were made, so waiters
//! are woken oldest first and every watcher of a change hears of it in
//! a fixed order. Exact watches are found by a hash lookup; prefix and
//! `*` watches are scanned (they are few).

use super::core::Core;
use super::registry::check_name;
use super::waiters::WaitId;
use super::ConnId;
use crate::error::{Error, ErrorCode};
use crate::id_hash::{IdMap, IdSet};
use crate::pattern::Pattern;
use crate::wire::{Frame, NameChange, Reply};
use std::collections::{BTreeMap, HashMap};

/// The broker's number for one watch, in the order they were made.
pub(super) type WatchKey = u64;

/// Who a watch tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Watcher {
    /// A client's watch: `watch` is the id the client gave it.
    Client { conn: ConnId, watch: u64 },
    /// A subscribe waiting for its name.
    Waiter(WaitId),
}

#[derive(Debug)]
struct Entry {
    pattern: Pattern,
    watcher: Watcher,
}

/// Every watch.
#[derive(Debug, Default)]
pub(super) struct Watches {
    entries: IdMap<WatchKey, Entry>,
    /// Exact watches by name, oldest first.
    exact: HashMap<String, Vec<WatchKey>>,
    /// Prefix and `*` watches, oldest first.
    wild: BTreeMap<WatchKey, ()>,
    /// Client watches by (connection, its id for the watch).
    clients: HashMap<(ConnId, u64), WatchKey>,
    /// Client watches of each connection.
    by_conn: IdMap<ConnId, IdSet<WatchKey>>,
    next: WatchKey,
}

impl Watches {
    /// How many client watches there are.
    pub fn clients(&self) -> usize {
        self.clients.len()
    }

    /// Adds a watch; its key.
    pub fn add(&mut self, pattern: Pattern, watcher: Watcher) -> WatchKey {
        self.next += 1;
        let key = self.next;
        match pattern.exact() {
            Some(name) => self.exact.entry(name.to_string()).or_default().push(key),
            None => {
                self.wild.insert(key, ());
            }
        }
        if let Watcher::Client { conn, watch } = watcher {
            self.clients.insert((conn, watch), key);
            self.by_conn.entry(conn).or_default().insert(key);
        }
        self.entries.insert(key, Entry { pattern, watcher });
        key
    }

    /// Removes a watch; who it told.
    pub fn remove(&mut self, key: WatchKey) -> Option<Watcher> {
        let entry = self.entries.remove(&key)?;
        match entry.pattern.exact() {
            Some(name) => {
                if let Some(keys) = self.exact.get_mut(name) {
                    keys.retain(|&k| k != key);
                    if keys.is_empty() {
                        self.exact.remove(name);
                    }
                }
            }
            None => {
                self.wild.remove(&key);
            }
        }
        if let Watcher::Client { conn, watch } = entry.watcher {
            self.clients.remove(&(conn, watch));
            if let Some(keys) = self.by_conn.get_mut(&conn) {
                keys.remove(&key);
                if keys.is_empty() {
                    self.by_conn.remove(&conn);
                }
            }
        }
        Some(entry.watcher)
    }

    /// The key of `conn`'s watch `watch`.
    fn of_client(&self, conn: ConnId, watch: u64) -> Option<WatchKey> {
        self.clients.get(&(conn, watch)).copied()
    }

    /// How many watches `conn` has.
    fn count(&self, conn: ConnId) -> usize {
        self.by_conn.get(&conn).map_or(0, IdSet::len)
    }

    /// Every watch `name` matches, oldest first, with its watcher.
    fn matching(&self, name: &str) -> Vec<(WatchKey, Watcher)> {
        let mut keys: Vec<WatchKey> = self.exact.get(name).cloned().unwrap_or_default();
        keys.extend(
            self.wild
                .keys()
                .filter(|k| self.entries[k].pattern.matches(name)),
        );
        keys.sort_unstable();
        keys.into_iter()
            .map(|k| (k, self.entries[&k].watcher))
            .collect()
    }

    /// Removes every client watch of `conn`.
    fn drop_conn(&mut self, conn: ConnId) {
        let keys: Vec<WatchKey> = self
            .by_conn
            .get(&conn)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        for key in keys {
            self.remove(key);
        }
    }

    /// Whether nothing is watched; for tests of teardown.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
            && self.exact.is_empty()
            && self.wild.is_empty()
            && self.clients.is_empty()
            && self.by_conn.is_empty()
    }
}

impl Core {
    /// `id` starts watching `pattern` under its id `op`: answered with
    /// the current state.
    pub(super) fn watch(&mut self, id: ConnId, op: u64, pattern: &str) {
        let result = self.add_watch(id, op, pattern);
        self.reply(id, op, result.map(Reply::Sessions));
    }

    fn add_watch(
        &mut self,
        id: ConnId,
        op: u64,
        pattern: &str,
    ) -> Result<Vec<crate::wire::SessionInfo>, Error> {
        check_name("name pattern", pattern, self.limits().max_name)?;
        let pattern = Pattern::parse("name pattern", pattern)?;
        let max = self.limits().max_watches_per_connection;
        let count = self.watches.count(id);
        if count >= max {
            return Err(Error::new(
                ErrorCode::LimitExceeded,
                format!("this connection already has {count} name watches (limit {max})"),
            ));
        }
        if self.watches.of_client(id, op).is_some() {
            return Err(Error::new(
                ErrorCode::InvalidArgument,
                format!("watch id {op} is already in use on this connection"),
            ));
        }
        let mut current = self.registry.listing();
        current.retain(|s| pattern.matches(&s.name));
        self.watches.add(
            pattern,
            Watcher::Client {
                conn: id,
                watch: op,
            },
        );
        Ok(current)
    }

    /// `id` ends its watch `watch`.
    pub(super) fn unwatch(&mut self, id: ConnId, watch: u64) -> Result<(), Error> {
        let key = self.watches.of_client(id, watch).ok_or_else(|| {
            Error::new(
                ErrorCode::InvalidArgument,
                format!("this connection has no watch {watch}"),
            )
        })?;
        self.watches.remove(key);
        Ok(())
    }

    /// `name` changed: every watcher of it hears, oldest first. A waiter
    /// is woken by the name's appearing (or a new owner) and then ends.
    pub(super) fn name_changed(&mut self, name: &str, change: NameChange) {
        for (key, watcher) in self.watches.matching(name) {
            match watcher {
                Watcher::Client { conn, watch } => {
                    let _ = self.send(
                        conn,
                        &Frame::NameChanged {
                            watch,
                            name: name.to_string(),
                            change: change.clone(),
                        },
                    );
                }
                Watcher::Waiter(wait) => {
                    if !matches!(change, NameChange::Gone { .. }) {
                        self.watches.remove(key);
                        self.wake_waiter(wait, name);
                    }
                }
            }
        }
    }

    /// `conn` closed: its watches are forgotten.
    pub(super) fn drop_watches(&mut self, conn: ConnId) {
        self.watches.drop_conn(conn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Pattern {
        Pattern::parse("p", s).unwrap()
    }

    #[test]
    fn matching_is_oldest_first_across_exact_and_wild() {
        let mut w = Watches::default();
        let a = w.add(p("*"), Watcher::Client { conn: 1, watch: 1 });
        let b = w.add(p("Svc"), Watcher::Waiter(7));
        let c = w.add(p("Sv*"), Watcher::Client { conn: 2, watch: 1 });
        let d = w.add(p("Other"), Watcher::Client { conn: 2, watch: 2 });
        let keys = |w: &Watches, name| {
            w.matching(name)
                .into_iter()
                .map(|(k, _)| k)
                .collect::<Vec<_>>()
        };
        assert_eq!(keys(&w, "Svc"), vec![a, b, c]);
        assert_eq!(keys(&w, "Other"), vec![a, d]);
        assert_eq!(w.count(2), 2);
        w.drop_conn(2);
        assert_eq!(keys(&w, "Svc"), vec![a, b]);
        assert_eq!(w.remove(b), Some(Watcher::Waiter(7)));
        assert_eq!(w.remove(a), Some(Watcher::Client { conn: 1, watch: 1 }));
        assert!(w.is_empty());
    }
}
