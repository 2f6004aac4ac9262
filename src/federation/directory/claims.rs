//! Claims: a local client's publish held until its name is claimed in
//! the bucket (create-if-absent, one winner cluster-wide), and the claim
//! deleted when the name is rescinded or its publisher disconnects.
//!
//! Separate from the bucket's requests and the watch's cache: it is the
//! writing side of the directory, driven by this broker's own clients.

use super::{key_of, unavailable, Claim, Intercept, Op, Pending, Value};
use crate::error::{Error, ErrorCode};
use crate::federation::nats::js::Kv;
use crate::federation::node::{ConnId, Federation};
use std::time::Instant;

impl Federation {
    /// A client's publish, before the core sees it.
    pub(crate) fn intercept_publish(
        &self,
        conn: ConnId,
        op: u64,
        name: &str,
        methods: &[String],
        body: &[u8],
    ) -> Intercept {
        let mut st = self.state.borrow_mut();
        if st.dir.cache.contains_key(name) {
            return Intercept::Refuse(Error::new(
                ErrorCode::AlreadyExists,
                format!("Session '{name}' already exists"),
            ));
        }
        if let Some((_, s)) = st.dir.shared.get(name) {
            return Intercept::Refuse(Error::new(
                ErrorCode::NameModeConflict,
                format!(
                    "Session '{name}' is published in mode '{}', not 'exclusive'",
                    s.mode.as_str()
                ),
            ));
        }
        let pending = Pending {
            since: Instant::now(),
            conn,
            op,
            name: name.to_string(),
            methods: methods.to_vec(),
            body: body.to_vec(),
        };
        if !st.dir.ready {
            st.dir.waiting.push((pending, Instant::now()));
            return Intercept::Hold;
        }
        drop(st);
        if self.claim(pending.clone(), 0) {
            Intercept::Hold
        } else {
            Intercept::Refuse(unavailable("NATS is not connected"))
        }
    }

    pub(super) fn claim(&self, pending: Pending, expected: u64) -> bool {
        let value = Value {
            broker: self.config.broker_id.clone(),
            inc: self.inc(),
            methods: pending.methods.clone(),
            shared: None,
        };
        let subject = match self
            .state
            .borrow()
            .dir
            .kv
            .key_subject(&key_of(&pending.name))
        {
            Ok(s) => s,
            Err(_) => return false,
        };
        let payload = serde_json::to_vec(&value).unwrap_or_default();
        self.dir_request(
            &subject,
            Some(&Kv::expect_revision(expected)),
            &payload,
            Op::Claim(pending),
        )
    }

    /// The held client's publish ends: refused with `error`, or handed
    /// to the core (and its claim deleted again if the core refused it).
    pub(super) fn finish_claim(&self, pending: Pending, outcome: Result<u64, Error>) {
        let Some(port) = self.port.upgrade() else {
            return;
        };
        match outcome {
            Ok(revision) => {
                self.state.borrow_mut().dir.claims.insert(
                    pending.name.clone(),
                    Claim {
                        conn: pending.conn,
                        revision,
                        methods: pending.methods.clone(),
                    },
                );
                port.release(pending.conn, Some(pending.body));
                self.check_claims(pending.conn);
            }
            Err(e) => {
                port.answer(pending.conn, pending.op, e);
                port.release(pending.conn, None);
            }
        }
    }

    /// Drops the claims of `conn` on names it no longer serves here (a
    /// rescind, a refused publish).
    pub(crate) fn check_claims(&self, conn: ConnId) {
        self.drop_claims(conn, "rescinded");
    }

    /// Drops every claim of `conn`, which disconnected: other brokers'
    /// subscribers are told `publisher_gone`, as local ones are.
    pub(crate) fn claims_closed(&self, conn: ConnId) {
        self.drop_claims(conn, "publisher_gone");
    }

    fn drop_claims(&self, conn: ConnId, reason: &str) {
        let Some(port) = self.port.upgrade() else {
            return;
        };
        let names: Vec<String> = self
            .state
            .borrow()
            .dir
            .claims
            .iter()
            .filter(|(_, c)| c.conn == conn)
            .map(|(n, _)| n.clone())
            .collect();
        for name in names {
            if port.owner(&name) != Some(conn) {
                let claim = self.state.borrow_mut().dir.claims.remove(&name);
                if let Some(c) = claim {
                    self.delete_entry(&name, c.revision, reason);
                }
            }
        }
        self.check_shared(conn);
    }

    pub(super) fn delete_entry(&self, name: &str, revision: u64, reason: &str) {
        let subject = match self.state.borrow().dir.kv.key_subject(&key_of(name)) {
            Ok(s) => s,
            Err(_) => return,
        };
        let headers = Kv::delete_headers(Some(revision), &[("Sb-Reason", reason)]);
        self.dir_request(&subject, Some(&headers), b"", Op::Delete);
    }

    /// The broker closes: its claims are deleted (best effort).
    pub(crate) fn dir_release_all(&self) {
        self.shared_release_all();
        let claims: Vec<(String, Claim)> = self.state.borrow_mut().dir.claims.drain().collect();
        for (name, c) in claims {
            self.delete_entry(&name, c.revision, "publisher_gone");
        }
        if let Some(n) = self.nats() {
            // Written before the socket closes.
            n.flush_now();
        }
    }
}
