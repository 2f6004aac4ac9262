//! The mirror of a shared name's list in this broker's core: other
//! brokers' members published by their stand-ins in the list's order,
//! departed ones withdrawn, stale members (of dead brokers, of an
//! earlier life of this one) removed, and this broker's own members
//! reconciled with its publishers.
//!
//! Separate from the writing side (`shared.rs`): this follows the
//! directory, that changes it.

use super::{Change, Leave, Member, Shared, SharedOp};
use crate::federation::node::{body_of, ConnId, Federation};
use crate::wire::Frame;
use std::time::Instant;

impl Federation {
    /// The list of `name` is now `next` (at revision `rev`; `None`: the
    /// name is gone): the core's publishers follow it.
    /// Brokers no longer in the list withdraw the name with
    /// `publisher_gone` when `gone`, else `no_such_session`.
    pub(in crate::federation::directory) fn apply_shared(
        &self,
        name: &str,
        rev: u64,
        next: Option<Shared>,
        gone: bool,
    ) {
        let Some(port) = self.port.upgrade() else {
            return;
        };
        let me = self.config.broker_id.clone();
        // The watch may have brought a newer revision before the bucket's
        // answer to our own write arrived: the older list must not undo it.
        let held = {
            let st = self.state.borrow();
            st.dir
                .shared
                .get(name)
                .map(|(r, _)| *r)
                .or_else(|| st.dir.markers.get(name).copied())
        };
        if held.is_some_and(|r| r >= rev) {
            return;
        }
        let old = {
            let mut st = self.state.borrow_mut();
            st.dir.markers.remove(name);
            match &next {
                Some(s) => st.dir.shared.insert(name.to_string(), (rev, s.clone())),
                None => {
                    st.dir.markers.insert(name.to_string(), rev);
                    st.dir.shared.remove(name)
                }
            }
        };
        let old_brokers = old
            .as_ref()
            .map(|(_, s)| remote_brokers(s, &me))
            .unwrap_or_default();
        let new_brokers = next
            .as_ref()
            .map(|s| remote_brokers(s, &me))
            .unwrap_or_default();
        // Members of dead brokers, or of an earlier life of ours, leave.
        let mut stale = Vec::new();
        if let Some(s) = &next {
            let st = self.state.borrow();
            for m in &s.members {
                if m.broker == me && m.inc != self.inc() {
                    stale.push(Leave {
                        broker: me.clone(),
                        inc: None,
                        not_inc: Some(self.inc()),
                        conn: None,
                        gone: true,
                    });
                } else if st.dead.contains(&(m.broker.clone(), m.inc)) {
                    stale.push(Leave {
                        broker: m.broker.clone(),
                        inc: Some(m.inc),
                        not_inc: None,
                        conn: None,
                        gone: true,
                    });
                }
            }
        }
        // Brokers that joined publish through their stand-ins.
        if let Some(s) = &next {
            for (broker, methods) in &new_brokers {
                let Some(conn) = self.link_conn(broker) else {
                    continue;
                };
                if port.is_publisher(name, conn) {
                    continue;
                }
                let id = self.state.borrow_mut().dir.synthetic();
                port.link_input(
                    conn,
                    &[body_of(&Frame::PublishAs {
                        id,
                        session: name.to_string(),
                        methods: methods.clone(),
                        mode: s.mode,
                    })],
                );
            }
        }
        // In the list's order, before anyone leaves: a queue's next owner
        // is first when the owner goes.
        self.order_shared(name);
        for (broker, _) in &old_brokers {
            if !new_brokers.iter().any(|(b, _)| b == broker) {
                self.withdraw_remote(broker, name, gone);
            }
        }
        let mut seen = Vec::new();
        for l in stale {
            if !seen.contains(&(l.broker.clone(), l.inc)) {
                seen.push((l.broker.clone(), l.inc));
                self.shared_leave(name, l);
            }
        }
        self.reconcile_own(name, next.as_ref());
    }

    /// Compares this broker's members in the list with its publishers:
    /// a write of another broker made on the same revision as ours may
    /// have undone ours (nats-server before 2.9.21 may accept two
    /// concurrent writes expecting the same revision of a key in a
    /// clustered stream), so a member that no longer publishes here
    /// leaves again, and one that still publishes but is missing joins
    /// again.
    pub(super) fn reconcile_own(&self, name: &str, list: Option<&Shared>) {
        let Some(port) = self.port.upgrade() else {
            return;
        };
        let members: Vec<Member> = list.map(|s| s.members.clone()).unwrap_or_default();
        let (joining, own): (Vec<ConnId>, Vec<(ConnId, Member)>) = {
            let st = self.state.borrow();
            (
                st.dir
                    .joining
                    .iter()
                    .filter(|(n, _)| n == name)
                    .map(|(_, c)| *c)
                    .collect(),
                st.dir
                    .own
                    .iter()
                    .filter(|((n, _), _)| n == name)
                    .map(|((_, c), m)| (*c, m.clone()))
                    .collect(),
            )
        };
        for m in &members {
            if m.broker == self.config.broker_id
                && m.inc == self.inc()
                && !joining.contains(&m.conn)
                && !port.is_publisher(name, m.conn)
            {
                self.state
                    .borrow_mut()
                    .dir
                    .own
                    .remove(&(name.to_string(), m.conn));
                self.shared_leave(
                    name,
                    Leave {
                        broker: m.broker.clone(),
                        inc: Some(m.inc),
                        not_inc: None,
                        conn: Some(m.conn),
                        gone: !port.is_open(m.conn),
                    },
                );
            }
        }
        if list.is_none() {
            return;
        }
        for (conn, m) in own {
            if !port.is_publisher(name, conn) {
                self.state
                    .borrow_mut()
                    .dir
                    .own
                    .remove(&(name.to_string(), conn));
            } else if !members.contains(&m) {
                self.shared_step(SharedOp {
                    since: Instant::now(),
                    name: name.to_string(),
                    change: Change::Rejoin(m),
                    next: None,
                });
            }
        }
    }

    /// Puts the core's publishers of `name` in the list's order.
    pub(crate) fn order_shared(&self, name: &str) {
        let Some(port) = self.port.upgrade() else {
            return;
        };
        let order: Vec<ConnId> = {
            let st = self.state.borrow();
            let Some((_, s)) = st.dir.shared.get(name) else {
                return;
            };
            let mut order = Vec::new();
            for m in &s.members {
                let conn = if m.broker == self.config.broker_id {
                    Some(m.conn)
                } else {
                    st.peers.get(&m.broker).and_then(|p| p.conn)
                };
                if let Some(c) = conn {
                    if !order.contains(&c) {
                        order.push(c);
                    }
                }
            }
            order
        };
        port.order_publishers(name, &order);
    }
}

/// The other brokers among `s`'s members, in the list's order (each
/// once), with the methods of each one's first member.
fn remote_brokers(s: &Shared, me: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for m in &s.members {
        if m.broker != me && !out.iter().any(|(b, _)| *b == m.broker) {
            out.push((m.broker.clone(), m.methods.clone()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::NameMode;

    #[test]
    fn remote_brokers_are_each_once_in_list_order_without_this_one() {
        let m = |b: &str, conn: u64, method: &str| Member {
            broker: b.into(),
            inc: 1,
            conn,
            methods: vec![method.into()],
        };
        let s = Shared {
            mode: NameMode::Balance,
            members: vec![
                m("b3", 1, "x"),
                m("me", 2, "y"),
                m("b2", 3, "z"),
                m("b3", 4, "w"),
            ],
        };
        let got = remote_brokers(&s, "me");
        assert_eq!(
            got,
            vec![
                ("b3".to_string(), vec!["x".to_string()]),
                ("b2".to_string(), vec!["z".to_string()])
            ]
        );
    }
}
