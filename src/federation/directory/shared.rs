//! `queue` and `balance` names across brokers.
//!
//! # Semantics
//!
//! A shared name has one directory entry (the same key an `exclusive`
//! name would have), whose value lists its mode and its publishers
//! cluster-wide, in the order they joined: `{mode, members: [{broker,
//! inc, conn, methods}]}`. It is changed only by compare-and-set on its
//! revision, so the list is one total order that every broker sees:
//!
//! * The first publisher anywhere fixes the mode cluster-wide: a publish
//!   in another mode is `name_mode_conflict`, as on one broker, and an
//!   `exclusive` publish of a shared name (or the reverse) too.
//! * A client's publish is held until its broker has appended it to the
//!   list (create-if-absent for the first, compare-and-set after; a
//!   conflict reads the entry again and retries, within `op_timeout`).
//! * Every broker mirrors the list in its core, in the list's order: its
//!   own publishers as themselves, each other broker by its stand-in
//!   connection (once, at its first member's place, with that member's
//!   methods).
//! * `queue`: the first member is the owner cluster-wide, and takes every
//!   call, from every broker; the others wait. When it goes (rescind,
//!   disconnect, its broker declared dead) it leaves the list and the
//!   next member, on whichever broker, takes over everywhere; watchers
//!   hear `owner_changed`.
//! * `balance`: every member serves. A broker spreads its clients' calls
//!   over its own publishers and the other brokers' stand-ins (each
//!   broker counts once, however many of its clients publish the name);
//!   a call arriving from another broker goes to one of this broker's
//!   own publishers, never on to a third broker. A dialogue stays with
//!   the publisher that took it.
//! * A call from a peer broker is served only by the receiving broker's
//!   own publishers; when the lists disagree for a moment (an update
//!   still on its way) it gets `no_such_session` rather than bouncing
//!   between brokers.
//! * A member leaves when it rescinds or disconnects, and when its broker
//!   is declared dead (whoever declares it removes its members); a
//!   broker removes members of its own earlier incarnations it finds.
//!   The last one leaving deletes the entry.

mod mirror;

use super::{key_of, unavailable, Intercept, Op, Pending};
use crate::error::{Error, ErrorCode};
use crate::federation::nats::js::{self, Kv, ERR_WRONG_LAST_SEQUENCE};
use crate::federation::nats::Msg;
use crate::federation::node::{ConnId, Federation};
use crate::wire::NameMode;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// One publisher of a shared name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Member {
    pub broker: String,
    pub inc: u64,
    /// Its connection on its broker.
    pub conn: u64,
    pub methods: Vec<String>,
}

/// A shared name's publishers, cluster-wide, in the order they joined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Shared {
    pub mode: NameMode,
    pub members: Vec<Member>,
}

/// Which members to take out of a list.
#[derive(Debug, Clone)]
pub(crate) struct Leave {
    broker: String,
    /// Only of this incarnation.
    inc: Option<u64>,
    /// Only not of this incarnation.
    not_inc: Option<u64>,
    /// Only this connection.
    conn: Option<u64>,
    /// They went with their connection or broker (`publisher_gone` if the
    /// name goes), rather than rescinded it (`no_such_session`).
    gone: bool,
}

impl Leave {
    fn takes(&self, m: &Member) -> bool {
        m.broker == self.broker
            && self.inc.map_or(true, |i| m.inc == i)
            && self.not_inc != Some(m.inc)
            && self.conn.map_or(true, |c| m.conn == c)
    }
}

/// A change to a shared name's list, until the bucket takes it.
#[derive(Debug, Clone)]
pub(crate) enum Change {
    /// A local client's held publish joins.
    Join { pending: Pending, mode: NameMode },
    /// Members leave.
    Leave(Leave),
    /// A member of this broker that a concurrent write lost joins again
    /// (at the end of the list).
    Rejoin(Member),
}

impl SharedOp {
    /// Whether its members leave with their connection or broker.
    fn gone(&self) -> bool {
        matches!(&self.change, Change::Leave(l) if l.gone)
    }
}

/// A change in flight.
#[derive(Debug, Clone)]
pub(crate) struct SharedOp {
    since: Instant,
    name: String,
    change: Change,
    /// The list it writes (kept to apply it when the write is taken).
    next: Option<Shared>,
}

impl Federation {
    /// A client's publish of a `queue` or `balance` name, before the core
    /// sees it (which checked that it is not published here in another
    /// mode).
    pub(crate) fn intercept_shared(
        &self,
        conn: ConnId,
        op: u64,
        name: &str,
        methods: &[String],
        mode: NameMode,
        body: &[u8],
    ) -> Intercept {
        {
            let st = self.state.borrow();
            if st.dir.cache.contains_key(name) {
                return Intercept::Refuse(mode_conflict(name, NameMode::Exclusive, mode));
            }
            if let Some((_, s)) = st.dir.shared.get(name) {
                if s.mode != mode {
                    return Intercept::Refuse(mode_conflict(name, s.mode, mode));
                }
            }
        }
        let pending = Pending {
            since: Instant::now(),
            conn,
            op,
            name: name.to_string(),
            methods: methods.to_vec(),
            body: body.to_vec(),
        };
        if !self.state.borrow().dir.ready {
            return Intercept::Refuse(unavailable("the directory bucket is not ready"));
        }
        self.state
            .borrow_mut()
            .dir
            .joining
            .push((name.to_string(), conn));
        let op = SharedOp {
            since: Instant::now(),
            name: name.to_string(),
            change: Change::Join { pending, mode },
            next: None,
        };
        // From the next turn: the core is busy with this frame now.
        let weak = self.me.clone();
        self.lp.add_timer(std::time::Duration::ZERO, move |_| {
            if let Some(f) = weak.upgrade() {
                f.shared_step(op);
            }
        });
        Intercept::Hold
    }

    /// Writes `op`'s change on the list as this broker knows it.
    fn shared_step(&self, mut op: SharedOp) {
        let (base, exclusive, marker) = {
            let st = self.state.borrow();
            (
                st.dir.shared.get(&op.name).cloned(),
                st.dir.cache.contains_key(&op.name),
                st.dir.markers.get(&op.name).copied().unwrap_or(0),
            )
        };
        let expected = base.as_ref().map_or(marker, |(rev, _)| *rev);
        let next = match &op.change {
            Change::Join { pending, mode } => {
                if exclusive {
                    let e = mode_conflict(&op.name, NameMode::Exclusive, *mode);
                    return self.shared_done(op, Err(e));
                }
                let mut list = match base {
                    Some((_, s)) if s.mode != *mode => {
                        let e = mode_conflict(&op.name, s.mode, *mode);
                        return self.shared_done(op, Err(e));
                    }
                    Some((_, s)) => s,
                    None => Shared {
                        mode: *mode,
                        members: Vec::new(),
                    },
                };
                let me = Member {
                    broker: self.config.broker_id.clone(),
                    inc: self.inc(),
                    conn: pending.conn,
                    methods: pending.methods.clone(),
                };
                if list.members.contains(&me) {
                    return self.shared_done(op, Ok(expected));
                }
                list.members.push(me);
                Some(list)
            }
            Change::Rejoin(me) => {
                let mut list = match base {
                    Some((_, s)) => s,
                    // Gone meanwhile: not created again by a rejoin.
                    None => return,
                };
                if list.members.contains(me) {
                    return;
                }
                list.members.push(me.clone());
                Some(list)
            }
            Change::Leave(leave) => {
                let Some((_, mut list)) = base else {
                    return;
                };
                let before = list.members.len();
                list.members.retain(|m| !leave.takes(m));
                if list.members.len() == before {
                    return;
                }
                (!list.members.is_empty()).then_some(list)
            }
        };
        let Ok(subject) = self.state.borrow().dir.kv.key_subject(&key_of(&op.name)) else {
            return;
        };
        let sent = match &next {
            Some(list) => {
                let value = super::Value {
                    broker: String::new(),
                    inc: 0,
                    methods: Vec::new(),
                    shared: Some(list.clone()),
                };
                let payload = serde_json::to_vec(&value).unwrap_or_default();
                op.next = Some(list.clone());
                let headers = Kv::expect_revision(expected);
                self.dir_request(
                    &subject,
                    Some(&headers),
                    &payload,
                    Op::SharedPut(op.clone()),
                )
            }
            None => {
                op.next = None;
                let reason = if op.gone() {
                    "publisher_gone"
                } else {
                    "rescinded"
                };
                let headers = Kv::delete_headers(Some(expected), &[("Sb-Reason", reason)]);
                self.dir_request(&subject, Some(&headers), b"", Op::SharedPut(op.clone()))
            }
        };
        if !sent {
            self.shared_done(op, Err(unavailable("NATS is not connected")));
        }
    }

    /// The bucket's answer to a change.
    pub(super) fn shared_put_reply(&self, op: SharedOp, msg: &Msg) {
        match js::parse_pub_ack(msg) {
            Ok(rev) => {
                // Ours is the newest the bucket has: applied at once (the
                // watch brings it again, changing nothing).
                self.apply_shared(&op.name, rev, op.next.clone(), op.gone());
                self.shared_done(op, Ok(rev));
            }
            Err(e) if e.err_code == ERR_WRONG_LAST_SEQUENCE => {
                // Our copy is behind: read the entry, then try again.
                let subject = self.state.borrow().dir.kv.get_request(&key_of(&op.name));
                let sent = subject
                    .is_ok_and(|s| self.dir_request(&s, None, b"", Op::SharedGet(op.clone())));
                if !sent {
                    self.shared_done(op, Err(unavailable("NATS is not connected")));
                }
            }
            Err(e) => self.shared_retry(op, &e.to_string()),
        }
    }

    /// The entry read again after a conflict: applied, then the change
    /// is tried again.
    pub(super) fn shared_get_reply(&self, op: SharedOp, msg: &Msg) {
        let kv = self.state.borrow().dir.kv.clone();
        match kv.parse_get_any(msg) {
            Ok(Some(entry)) => {
                self.dir_entry(entry);
                self.shared_retry(op, "the entry changed");
            }
            Ok(None) => self.shared_retry(op, "the entry is gone"),
            Err(e) => self.shared_retry(op, &e.to_string()),
        }
    }

    /// Tries `op` again shortly, within `op_timeout` of its start.
    fn shared_retry(&self, op: SharedOp, why: &str) {
        if op.since.elapsed() >= self.config.op_timeout {
            return self.shared_done(op, Err(unavailable(why)));
        }
        let weak = self.me.clone();
        self.lp
            .add_timer(std::time::Duration::from_millis(20), move |_| {
                if let Some(f) = weak.upgrade() {
                    f.shared_step(op);
                }
            });
    }

    /// A change is over: a join's held publish goes to the core (or is
    /// refused); a leave that failed is logged (the members go when
    /// their broker is declared dead).
    fn shared_done(&self, op: SharedOp, outcome: Result<u64, Error>) {
        let Some(port) = self.port.upgrade() else {
            return;
        };
        if let Change::Join { pending, .. } = &op.change {
            let key = (op.name.clone(), pending.conn);
            self.state.borrow_mut().dir.joining.retain(|j| *j != key);
        }
        match (op.change, outcome) {
            (Change::Join { pending, .. }, Ok(_)) => {
                let conn = pending.conn;
                let member = Member {
                    broker: self.config.broker_id.clone(),
                    inc: self.inc(),
                    conn,
                    methods: pending.methods.clone(),
                };
                self.state
                    .borrow_mut()
                    .dir
                    .own
                    .insert((op.name.clone(), conn), member);
                port.release(conn, Some(pending.body));
                self.order_shared(&op.name);
                // A newer list may have come meanwhile without this member
                // (a concurrent write on the same revision): it joins again.
                let list = self
                    .state
                    .borrow()
                    .dir
                    .shared
                    .get(&op.name)
                    .map(|(_, s)| s.clone());
                self.reconcile_own(&op.name, list.as_ref());
                // Refused by the core after all (a limit, a policy): it
                // leaves the list again.
                self.check_claims(conn);
            }
            (Change::Join { pending, .. }, Err(e)) => {
                port.answer(pending.conn, pending.op, e);
                port.release(pending.conn, None);
            }
            (Change::Leave(_) | Change::Rejoin(_), Ok(_)) => {}
            (Change::Leave(l), Err(e)) => {
                log::warn!(broker = self.config.broker_id.as_str(), session = op.name.as_str(); "could not leave a shared name ({l:?}): {e}");
            }
            (Change::Rejoin(m), Err(e)) => {
                log::warn!(broker = self.config.broker_id.as_str(), session = op.name.as_str(); "could not join a shared name again ({m:?}): {e}");
            }
        }
    }

    /// A change got no answer within `op_timeout`: it fails.
    pub(super) fn shared_expired(&self, op: SharedOp) {
        self.shared_done(op, Err(unavailable("no answer from JetStream")));
    }

    /// Members of `name` matching `leave` leave its list.
    pub(super) fn shared_leave(&self, name: &str, leave: Leave) {
        self.shared_step(SharedOp {
            since: Instant::now(),
            name: name.to_string(),
            change: Change::Leave(leave),
            next: None,
        });
    }

    /// Local connection `conn` no longer publishes these shared names
    /// here: it leaves their lists.
    pub(super) fn check_shared(&self, conn: ConnId) {
        let Some(port) = self.port.upgrade() else {
            return;
        };
        let names: Vec<String> = {
            let st = self.state.borrow();
            st.dir
                .shared
                .iter()
                .filter(|(_, (_, s))| {
                    s.members.iter().any(|m| {
                        m.broker == self.config.broker_id && m.inc == self.inc() && m.conn == conn
                    })
                })
                .map(|(n, _)| n.clone())
                .collect()
        };
        for name in names {
            if !port.is_publisher(&name, conn) {
                self.state
                    .borrow_mut()
                    .dir
                    .own
                    .remove(&(name.clone(), conn));
                self.shared_leave(
                    &name,
                    Leave {
                        broker: self.config.broker_id.clone(),
                        inc: Some(self.inc()),
                        not_inc: None,
                        conn: Some(conn),
                        gone: !port.is_open(conn),
                    },
                );
            }
        }
    }

    /// `peer` was declared dead: its members leave every list.
    pub(super) fn shared_peer_dead(&self, peer: &str) {
        let names: Vec<String> = self
            .state
            .borrow()
            .dir
            .shared
            .iter()
            .filter(|(_, (_, s))| s.members.iter().any(|m| m.broker == peer))
            .map(|(n, _)| n.clone())
            .collect();
        for name in names {
            self.shared_leave(
                &name,
                Leave {
                    broker: peer.to_string(),
                    inc: None,
                    not_inc: None,
                    conn: None,
                    gone: true,
                },
            );
        }
    }

    /// The broker closes: its members leave (best effort).
    pub(super) fn shared_release_all(&self) {
        let names: Vec<String> = self
            .state
            .borrow()
            .dir
            .shared
            .iter()
            .filter(|(_, (_, s))| s.members.iter().any(|m| m.broker == self.config.broker_id))
            .map(|(n, _)| n.clone())
            .collect();
        for name in names {
            self.shared_leave(
                &name,
                Leave {
                    broker: self.config.broker_id.clone(),
                    inc: None,
                    not_inc: None,
                    conn: None,
                    gone: true,
                },
            );
        }
    }
}

pub(crate) fn mode_conflict(name: &str, is: NameMode, asked: NameMode) -> Error {
    Error::new(
        ErrorCode::NameModeConflict,
        format!(
            "Session '{name}' is published in mode '{}', not '{}'",
            is.as_str(),
            asked.as_str()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(broker: &str, inc: u64, conn: u64) -> Member {
        Member {
            broker: broker.into(),
            inc,
            conn,
            methods: vec!["m".into()],
        }
    }

    #[test]
    fn a_leave_takes_exactly_the_members_it_names() {
        let of = |broker: &str, inc, not_inc, conn| Leave {
            broker: broker.into(),
            inc,
            not_inc,
            conn,
            gone: false,
        };
        let a1 = member("a", 1, 7);
        let a2 = member("a", 2, 7);
        let b1 = member("b", 1, 7);
        assert!(of("a", None, None, None).takes(&a1) && of("a", None, None, None).takes(&a2));
        assert!(!of("a", None, None, None).takes(&b1));
        assert!(of("a", Some(1), None, Some(7)).takes(&a1));
        assert!(!of("a", Some(1), None, Some(8)).takes(&a1));
        assert!(!of("a", Some(1), None, None).takes(&a2));
        assert!(of("a", None, Some(2), None).takes(&a1));
        assert!(!of("a", None, Some(2), None).takes(&a2));
    }

    #[test]
    fn lists_round_trip_in_the_directory_value_and_old_values_still_read() {
        let list = Shared {
            mode: NameMode::Queue,
            members: vec![member("a", 1, 2), member("b", 3, 4)],
        };
        let v = super::super::Value {
            broker: String::new(),
            inc: 0,
            methods: Vec::new(),
            shared: Some(list.clone()),
        };
        let bytes = serde_json::to_vec(&v).unwrap();
        let back: super::super::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back.shared, Some(list));
        // An exclusive entry as earlier brokers wrote it.
        let old: super::super::Value =
            serde_json::from_slice(br#"{"broker":"b1","inc":5,"methods":["m"]}"#).unwrap();
        assert_eq!(old.shared, None);
        assert!(!String::from_utf8(serde_json::to_vec(&old).unwrap())
            .unwrap()
            .contains("shared"));
    }
}
