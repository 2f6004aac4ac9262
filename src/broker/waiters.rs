//! Connections waiting for a name to be published (pure state), and the
//! core's handling of them: a waiting subscribe is answered when the name
//! is published, when its wait expires, or never (its connection closed
//! first, and it is forgotten).
//!
//! The broker, not the client, times each wait: one place decides
//! between "published" and "expired", so the answer is sent exactly once
//! and a subscription exists exactly when the answer says so. A client
//! that timed the wait itself could give up while the broker's answer
//! with the methods was on its way, leaving a subscription that nobody
//! knows of. The core does no I/O: it asks its shell for a timer per
//! wait ([`Effect::ArmWait`]) and cancels it when the wait ends otherwise
//! ([`Effect::DisarmWait`]).
//!
//! A waiting subscribe is a name watch (`watches.rs`): an exact watch of
//! its name whose first appearance wakes it; the watch ends with it.
//! Waits are kept here by number and by connection (with their timers);
//! which waits a name wakes, and in what order (oldest first), the
//! watches decide.

use super::core::{Core, Effect};
use super::registry::check_name;
use super::watches::{WatchKey, Watcher};
use super::ConnId;
use crate::error::{Error, ErrorCode};
use crate::id_hash::{IdMap, IdSet};
use crate::pattern::Pattern;
use crate::wire::Reply;
use std::time::Duration;

/// The longest wait timed: a longer one (a client's "forever") is cut
/// to it, so that no deadline overflows the clock.
const MAX_WAIT: Duration = Duration::from_secs(365 * 24 * 3600);

/// The broker's number for one wait, unique while the broker runs.
pub(super) type WaitId = u64;

/// One waiting subscribe.
#[derive(Debug)]
struct Waiter {
    conn: ConnId,
    /// The correlation id of its subscribe, answered once.
    op: u64,
    session: String,
    wait: Duration,
    /// Its watch of the name.
    watch: WatchKey,
}

/// Every wait, by its number and by connection (by name: its watch).
#[derive(Debug, Default)]
pub(super) struct Waiters {
    waits: IdMap<WaitId, Waiter>,
    by_conn: IdMap<ConnId, IdSet<WaitId>>,
    next: WaitId,
}

impl Waiters {
    /// How many waits there are in all.
    pub fn len(&self) -> usize {
        self.waits.len()
    }

    /// Whether nobody waits.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.waits.is_empty() && self.by_conn.is_empty()
    }

    /// How many waits `conn` has.
    pub fn count(&self, conn: ConnId) -> usize {
        self.by_conn.get(&conn).map_or(0, IdSet::len)
    }

    /// The number the next wait gets.
    fn next_id(&mut self) -> WaitId {
        self.next += 1;
        self.next
    }

    fn add(&mut self, id: WaitId, waiter: Waiter) {
        self.by_conn.entry(waiter.conn).or_default().insert(id);
        self.waits.insert(id, waiter);
    }

    /// Forgets one wait and returns it.
    fn remove(&mut self, id: WaitId) -> Option<Waiter> {
        let w = self.waits.remove(&id)?;
        if let Some(ids) = self.by_conn.get_mut(&w.conn) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_conn.remove(&w.conn);
            }
        }
        Some(w)
    }

    /// Takes every wait of `conn`, with its watch.
    fn take_conn(&mut self, conn: ConnId) -> Vec<(WaitId, WatchKey)> {
        let ids: Vec<WaitId> = self
            .by_conn
            .remove(&conn)
            .map(|s| s.into_iter().collect())
            .unwrap_or_default();
        ids.into_iter()
            .filter_map(|id| self.remove(id).map(|w| (id, w.watch)))
            .collect()
    }

    /// Takes every wait there is.
    fn take_all(&mut self) -> Vec<WaitId> {
        let ids = self.waits.keys().copied().collect();
        *self = Waiters {
            next: self.next,
            ..Waiters::default()
        };
        ids
    }
}

impl Core {
    /// A subscribe that may wait: answered now if `session` is published
    /// (or the request is bad), else when it is published or `wait`
    /// expires.
    pub(super) fn subscribe_waiting(&mut self, id: ConnId, op: u64, session: &str, wait: Duration) {
        if wait.is_zero() || self.registry.get(session).is_some() {
            let result = self.subscribe(id, session);
            return self.reply(id, op, result.map(Reply::Methods));
        }
        if let Err(e) = check_name("session name", session, self.limits().max_name)
            .and_then(|()| self.check_see(id, session))
        {
            return self.reply(id, op, Err(e));
        }
        let max = self.limits().max_waiters_per_connection;
        let count = self.waiters.count(id);
        if count >= max {
            let e = Error::new(
                ErrorCode::LimitExceeded,
                format!("this connection already waits for {count} names (limit {max})"),
            );
            return self.reply(id, op, Err(e));
        }
        let wait = wait.min(MAX_WAIT);
        let wait_id = self.waiters.next_id();
        let watch = self.watches.add(
            Pattern::Exact(session.to_string()),
            Watcher::Waiter(wait_id),
        );
        self.waiters.add(
            wait_id,
            Waiter {
                conn: id,
                op,
                session: session.to_string(),
                wait,
                watch,
            },
        );
        self.effects.push(Effect::ArmWait {
            wait: wait_id,
            after: wait,
        });
    }

    /// The name of the wait `wait_id` was just published (its watch,
    /// removed already, saw it appear): the wait is answered with its
    /// methods, and its waiter subscribed.
    pub(super) fn wake_waiter(&mut self, wait_id: WaitId, session: &str) {
        let Some(w) = self.waiters.remove(wait_id) else {
            return;
        };
        self.effects.push(Effect::DisarmWait { wait: wait_id });
        let result = self.subscribe(w.conn, session);
        self.reply(w.conn, w.op, result.map(Reply::Methods));
    }

    /// The timer of a wait fired: unless answered already, it is
    /// answered `no_such_session`.
    pub fn wait_expired(&mut self, wait: WaitId) {
        let Some(w) = self.waiters.remove(wait) else {
            return;
        };
        self.watches.remove(w.watch);
        let e = Error::new(
            ErrorCode::NoSuchSession,
            format!(
                "Session '{}' was not published within {}",
                w.session,
                describe(w.wait)
            ),
        );
        self.reply(w.conn, w.op, Err(e));
        self.process_closes();
    }

    /// `conn` closed: its waits are forgotten, their timers cancelled.
    pub(super) fn drop_waiters(&mut self, conn: ConnId) {
        for (wait, watch) in self.waiters.take_conn(conn) {
            self.watches.remove(watch);
            self.effects.push(Effect::DisarmWait { wait });
        }
    }

    /// The broker closes: every wait (and every watch) is forgotten,
    /// unanswered.
    pub(super) fn drop_all_waiters(&mut self) {
        for wait in self.waiters.take_all() {
            self.effects.push(Effect::DisarmWait { wait });
        }
        self.watches = Default::default();
    }
}

/// A wait in words: whole seconds as `5 s`, else milliseconds.
fn describe(wait: Duration) -> String {
    let ms = wait.as_millis();
    if ms % 1000 == 0 {
        format!("{} s", ms / 1000)
    } else {
        format!("{ms} ms")
    }
}
