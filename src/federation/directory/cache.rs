//! The cache: the bucket's watch applied to what this broker knows of
//! other brokers' sessions (published in the core by their stand-ins),
//! a lost claim reclaimed, and a dead broker's entries deleted.
//!
//! Separate from the claims: it is the reading side of the directory,
//! driven by the cluster rather than by this broker's clients.

use super::{key_of, name_of, Op, Remote, Value};
use crate::error::{Error, ErrorCode};
use crate::federation::nats::js::{self, Kv, KvOp, WatchStep};
use crate::federation::nats::Msg;
use crate::federation::node::{body_of, Federation};
use crate::wire::Frame;

impl Federation {
    /// A message on the watch's deliver subject.
    pub(crate) fn dir_msg(&self, msg: &Msg) {
        let step = {
            let mut st = self.state.borrow_mut();
            if st.dir.watch_sid != Some(msg.sid) {
                return;
            }
            st.dir.watch_fresh = true;
            let kv = st.dir.kv.clone();
            st.dir.watch.on_msg(&kv, msg)
        };
        match step {
            WatchStep::Entry { entry, .. } => self.dir_entry(entry),
            WatchStep::Answer(subject) => {
                if let Some(n) = self.nats() {
                    let _ = n.publish(&subject, None, None, b"");
                }
            }
            WatchStep::Gap { .. } => self.start_watch(),
            WatchStep::Heartbeat | WatchStep::Ignore => {}
        }
    }

    pub(super) fn dir_entry(&self, entry: js::KvEntry) {
        let Some(name) = name_of(&entry.key) else {
            return;
        };
        let gone = entry
            .headers
            .as_ref()
            .and_then(|h| h.get("Sb-Reason"))
            .is_some_and(|r| r == "publisher_gone");
        if entry.op != KvOp::Put {
            if self.state.borrow().dir.shared.contains_key(&name) {
                return self.apply_shared(&name, entry.revision, None, gone);
            }
            self.state
                .borrow_mut()
                .dir
                .markers
                .insert(name.clone(), entry.revision);
            let old = self.state.borrow_mut().dir.cache.remove(&name);
            if let Some(old) = old {
                self.withdraw_remote(&old.broker, &name, gone);
            }
            self.reclaim(&name, entry.revision);
            return;
        }
        let Ok(value) = serde_json::from_slice::<Value>(&entry.value) else {
            return;
        };
        if let Some(list) = value.shared {
            // Newer than what this broker wrote itself? (Its own write was
            // applied when the bucket took it.)
            let known = self.state.borrow().dir.shared.get(&name).map(|(r, _)| *r);
            if known.is_some_and(|r| r >= entry.revision) {
                return;
            }
            return self.apply_shared(&name, entry.revision, Some(list), false);
        }
        if self.state.borrow().dir.shared.contains_key(&name) {
            // Became exclusive (the shared name went, its delete missed).
            self.apply_shared(&name, entry.revision, None, false);
        }
        if value.broker == self.config.broker_id {
            if value.inc != self.inc() {
                // Left by an earlier life of this broker.
                self.delete_entry(&name, entry.revision, "publisher_gone");
            } else if !self.state.borrow().dir.claim_known(&name) {
                // A claim of ours that timed out here, landed later.
                self.delete_entry(&name, entry.revision, "rescinded");
            }
            return;
        }
        if self
            .state
            .borrow()
            .dead
            .contains(&(value.broker.clone(), value.inc))
        {
            self.delete_entry(&name, entry.revision, "publisher_gone");
            return;
        }
        let (old, had_conn) = {
            let mut st = self.state.borrow_mut();
            let old = st.dir.cache.insert(
                name.clone(),
                Remote {
                    broker: value.broker.clone(),
                    methods: value.methods.clone(),
                    revision: entry.revision,
                },
            );
            let peer = st
                .peers
                .entry(value.broker.clone())
                .or_insert_with(crate::federation::node::Peer::new);
            (old, peer.conn.is_some())
        };
        if let Some(old) = old {
            if old.broker == value.broker && old.methods == value.methods {
                // Read again (a restarted watch): nothing changed.
                return;
            }
            self.rescind_remote(&old.broker, &name);
        }
        let Some(conn) = self.link_conn(&value.broker) else {
            return;
        };
        if had_conn {
            let id = self.state.borrow_mut().dir.synthetic();
            let body = body_of(&Frame::Publish {
                id,
                session: name,
                methods: value.methods,
            });
            if let Some(port) = self.port.upgrade() {
                port.link_input(conn, &[body]);
            }
        }
    }

    /// A name this broker still serves was deleted (by a broker that
    /// declared us dead): claim it again, after the marker.
    pub(super) fn reclaim(&self, name: &str, marker: u64) {
        let claim = self.state.borrow().dir.claims.get(name).cloned();
        let Some(claim) = claim else { return };
        let serves = self
            .port
            .upgrade()
            .is_some_and(|p| p.owner(name) == Some(claim.conn));
        if !serves {
            return;
        }
        let methods = self
            .state
            .borrow()
            .dir
            .claims_methods(name)
            .unwrap_or_default();
        let value = Value {
            broker: self.config.broker_id.clone(),
            inc: self.inc(),
            methods,
            shared: None,
        };
        let Ok(subject) = self.state.borrow().dir.kv.key_subject(&key_of(name)) else {
            return;
        };
        let payload = serde_json::to_vec(&value).unwrap_or_default();
        self.dir_request(
            &subject,
            Some(&Kv::expect_revision(marker)),
            &payload,
            Op::Reclaim {
                name: name.to_string(),
                conn: claim.conn,
            },
        );
    }

    pub(super) fn rescind_remote(&self, broker: &str, name: &str) {
        self.withdraw_remote(broker, name, false);
    }

    /// `broker`'s stand-in stops publishing `name`: subscribers and
    /// watchers hear `publisher_gone` when `gone` (its publisher
    /// disconnected or its broker died), else `no_such_session` (it was
    /// rescinded).
    pub(super) fn withdraw_remote(&self, broker: &str, name: &str, gone: bool) {
        let conn = self.state.borrow().peers.get(broker).and_then(|p| p.conn);
        let (Some(conn), Some(port)) = (conn, self.port.upgrade()) else {
            return;
        };
        let reason = if gone {
            Error::new(
                ErrorCode::PublisherGone,
                format!("the publisher of '{name}' (on broker {broker}) disconnected"),
            )
        } else {
            Error::new(
                ErrorCode::NoSuchSession,
                format!("Session '{name}' was rescinded"),
            )
        };
        port.withdraw(conn, name, reason);
    }

    /// `peer` was declared dead: its entries leave the cache and the
    /// bucket.
    pub(crate) fn dir_peer_dead(&self, peer: &str, _inc: u64) {
        let gone: Vec<(String, u64)> = {
            let mut st = self.state.borrow_mut();
            let names: Vec<String> = st
                .dir
                .cache
                .iter()
                .filter(|(_, r)| r.broker == peer)
                .map(|(n, _)| n.clone())
                .collect();
            names
                .into_iter()
                .filter_map(|n| st.dir.cache.remove(&n).map(|r| (n, r.revision)))
                .collect()
        };
        for (name, revision) in gone {
            self.delete_entry(&name, revision, "publisher_gone");
        }
        self.shared_peer_dead(peer);
    }
}
