//! The core's narrow interface to federation (`crate::federation`): a
//! peer broker is a *stand-in connection* here, handshaken at once, that
//! publishes the peer's sessions and makes the calls of the peer's
//! clients; what the core writes to it goes over the link. The core
//! knows nothing else of NATS: closing the stand-in ends every call
//! across the link exactly as any disconnect does.

use super::core::Core;
use super::ConnId;
use crate::wire::encode_caller;
use std::rc::Rc;

impl Core {
    /// Opens the stand-in connection of peer broker `peer`: handshaken,
    /// known to the publishers it calls by the client name
    /// `broker <peer>`, never pinged nor timed out (federation watches
    /// the peer's liveness).
    pub(super) fn connect_link(&mut self, peer: &str) -> ConnId {
        let id = self.next_conn_id();
        let mut p = super::peer::Peer::default();
        p.caller.connection = id;
        p.caller.client_name = Some(format!("broker {peer}"));
        p.caller_bytes = Rc::from(encode_caller(&p.caller));
        p.handshaken = true;
        self.peers.insert(id, p);
        id
    }

    /// Whether `conn` has calls in flight, made or served.
    pub(super) fn has_calls(&self, conn: ConnId) -> bool {
        self.routes.involves(conn)
    }

    /// The connection that serves calls to `name` here, if it is
    /// published.
    pub(super) fn session_owner(&self, name: &str) -> Option<ConnId> {
        self.registry.get(name).map(|s| s.owner())
    }

    /// Ends every call across stand-in connection `conn` exactly once,
    /// as its close would, while the sessions it publishes stay: the
    /// callers of its sessions get `reason`, the publishers of the calls
    /// it made are cancelled, and its pending waits are forgotten (their
    /// callers across the link had them ended on their side). A link
    /// reset does this: the peer's sessions are still served, only the
    /// calls in flight across the link may have lost frames.
    pub(super) fn end_link_calls(&mut self, conn: ConnId, reason: &crate::error::Error) {
        let ended = self.routes.end_connection(conn);
        for r in ended.served {
            self.reply(r.caller, r.caller_id, Err(reason.clone()));
        }
        for (route, r) in ended.called {
            let _ = self.send(r.publisher, &crate::wire::Frame::Cancel { id: route });
        }
        self.drop_waiters(conn);
    }

    /// The peer behind stand-in connection `conn` no longer serves
    /// `session`, for `reason` (its publisher disconnected, or it was
    /// rescinded): as a rescind, but subscribers and watchers are told
    /// `reason`, the same as at the owner's broker.
    pub(super) fn withdraw_remote(
        &mut self,
        conn: ConnId,
        session: &str,
        reason: crate::error::Error,
    ) {
        let (cost, listed) = self.publication_cost(session, conn);
        let Ok(left) = self.registry.rescind(session, conn) else {
            return;
        };
        self.budget.registry = self.budget.registry.saturating_sub(cost);
        self.budget.listing = self.budget.listing.saturating_sub(listed);
        if let Some(p) = self.peers.get_mut(&conn) {
            p.published.remove(session);
            p.registry = p.registry.saturating_sub(cost);
            p.listing = p.listing.saturating_sub(listed);
        }
        self.publisher_left(session, conn, left, reason);
    }

    /// How many calls stand-in connection `conn` made that are in flight,
    /// and how many it serves (calls from here to the peer's sessions).
    pub(super) fn link_load(&self, conn: ConnId) -> (usize, usize) {
        self.routes.counts(conn)
    }

    /// Answers operation `op` of `conn` with `error`.
    pub(super) fn reply_error(&mut self, conn: ConnId, op: u64, error: crate::error::Error) {
        self.reply(conn, op, Err(error));
    }
}
