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
//! This is the seed of name watches: waiters are kept per name, and the
//! publish of a name looks them up there.

use super::core::{Core, Effect};
use super::registry::check_name;
use super::ConnId;
use crate::error::{Error, ErrorCode};
use crate::id_hash::{IdMap, IdSet};
use crate::wire::Reply;
use std::collections::HashMap;
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
}

/// Every wait, by its number, by name and by connection.
#[derive(Debug, Default)]
pub(super) struct Waiters {
    waits: IdMap<WaitId, Waiter>,
    /// The waits for each name, oldest first.
    by_name: HashMap<String, Vec<WaitId>>,
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
        self.waits.is_empty() && self.by_name.is_empty() && self.by_conn.is_empty()
    }

    /// How many waits `conn` has.
    pub fn count(&self, conn: ConnId) -> usize {
        self.by_conn.get(&conn).map_or(0, IdSet::len)
    }

    fn add(&mut self, waiter: Waiter) -> WaitId {
        self.next += 1;
        let id = self.next;
        self.by_name
            .entry(waiter.session.clone())
            .or_default()
            .push(id);
        self.by_conn.entry(waiter.conn).or_default().insert(id);
        self.waits.insert(id, waiter);
        id
    }

    /// Forgets one wait and returns it.
    fn remove(&mut self, id: WaitId) -> Option<Waiter> {
        let w = self.waits.remove(&id)?;
        if let Some(ids) = self.by_name.get_mut(&w.session) {
            ids.retain(|&i| i != id);
            if ids.is_empty() {
                self.by_name.remove(&w.session);
            }
        }
        if let Some(ids) = self.by_conn.get_mut(&w.conn) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_conn.remove(&w.conn);
            }
        }
        Some(w)
    }

    /// Takes every wait for `name`, oldest first.
    fn take_name(&mut self, name: &str) -> Vec<(WaitId, Waiter)> {
        let ids = self.by_name.remove(name).unwrap_or_default();
        ids.into_iter()
            .filter_map(|id| self.remove(id).map(|w| (id, w)))
            .collect()
    }

    /// Takes every wait of `conn`.
    fn take_conn(&mut self, conn: ConnId) -> Vec<WaitId> {
        let ids: Vec<WaitId> = self
            .by_conn
            .remove(&conn)
            .map(|s| s.into_iter().collect())
            .unwrap_or_default();
        for &id in &ids {
            self.remove(id);
        }
        ids
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
        if let Err(e) = check_name("session name", session, self.limits().max_name) {
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
        let wait_id = self.waiters.add(Waiter {
            conn: id,
            op,
            session: session.to_string(),
            wait,
        });
        self.effects.push(Effect::ArmWait {
            wait: wait_id,
            after: wait,
        });
    }

    /// `session` was just published: every wait for it is answered with
    /// its methods, and its waiters are subscribed.
    pub(super) fn wake_waiters(&mut self, session: &str) {
        for (wait_id, w) in self.waiters.take_name(session) {
            self.effects.push(Effect::DisarmWait { wait: wait_id });
            let result = self.subscribe(w.conn, session);
            self.reply(w.conn, w.op, result.map(Reply::Methods));
        }
    }

    /// The timer of a wait fired: unless answered already, it is
    /// answered `no_such_session`.
    pub fn wait_expired(&mut self, wait: WaitId) {
        let Some(w) = self.waiters.remove(wait) else {
            return;
        };
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
        for wait in self.waiters.take_conn(conn) {
            self.effects.push(Effect::DisarmWait { wait });
        }
    }

    /// The broker closes: every wait is forgotten, unanswered.
    pub(super) fn drop_all_waiters(&mut self) {
        for wait in self.waiters.take_all() {
            self.effects.push(Effect::DisarmWait { wait });
        }
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
