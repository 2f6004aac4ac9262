//! The core's narrow interface to federation (`crate::federation`): a
//! peer broker is a *stand-in connection* here, handshaken at once, that
//! publishes the peer's sessions and makes the calls of the peer's
//! clients; what the core writes to it goes over the link. The core
//! knows nothing else of NATS: closing the stand-in ends every call
//! across the link exactly as any disconnect does.

use super::core::Core;
use super::ConnId;
use crate::wire::{encode_caller, CallerInfo, NameChange, NameMode};
use std::rc::Rc;

impl Core {
    /// Opens the stand-in connection of peer broker `peer`: handshaken,
    /// known to the publishers it calls by the client name
    /// `broker <peer>` (unless a call carries its caller's identity, see
    /// [`Core::receive_as`]), never pinged nor timed out (federation
    /// watches the peer's liveness). Calls to it are stamped with their
    /// caller's identity (`DeliverFrom`), which goes over the link.
    pub(super) fn connect_link(&mut self, peer: &str) -> ConnId {
        let id = self.next_conn_id();
        let mut p = super::peer::Peer::default();
        p.caller.connection = id;
        p.caller.client_name = Some(format!("broker {peer}"));
        p.caller_bytes = Rc::from(encode_caller(&p.caller));
        p.handshaken = true;
        p.link = true;
        // It reads DeliverFrom: its peer learns who calls (see
        // `Core::receive_as`).
        p.greeted = true;
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

    /// How many calls stand-in connection `conn` made that are in flight,
    /// and how many it serves (calls from here to the peer's sessions).
    pub(super) fn link_load(&self, conn: ConnId) -> (usize, usize) {
        self.routes.counts(conn)
    }

    /// Answers operation `op` of `conn` with `error`.
    pub(super) fn reply_error(&mut self, conn: ConnId, op: u64, error: crate::error::Error) {
        self.reply(conn, op, Err(error));
    }

    /// Whether a call to `name` from a peer broker is served here: one of
    /// this broker's own connections serves it (the owner, or under
    /// `balance` any publisher).
    pub(super) fn serves_locally(&self, name: &str) -> bool {
        self.registry.get(name).is_some_and(|s| match s.mode {
            NameMode::Balance => s.publishers.iter().any(|p| !self.is_link(p.conn)),
            _ => !self.is_link(s.owner()),
        })
    }

    /// Whether `conn` publishes `name` (as owner, standby or balanced
    /// publisher).
    pub(super) fn is_publisher(&self, name: &str, conn: ConnId) -> bool {
        self.registry
            .get(name)
            .is_some_and(|s| s.has_publisher(conn))
    }

    /// The mode `name` is published in here, if it is.
    pub(super) fn name_mode(&self, name: &str) -> Option<NameMode> {
        self.registry.get(name).map(|s| s.mode)
    }

    /// Puts the publishers of `name` in the federation's order (the
    /// directory's, cluster-wide); watchers hear of a new owner.
    pub(super) fn order_publishers(&mut self, name: &str, order: &[ConnId]) {
        let Some(s) = self.registry.get_mut(name) else {
            return;
        };
        if s.reorder(order) && s.mode == NameMode::Queue {
            let methods = s.methods().to_vec();
            self.name_changed(name, NameChange::OwnerChanged { methods });
        }
    }

    /// Stand-in `conn` stops publishing `name`, for `reason` (told to
    /// subscribers and watchers if the name goes).
    pub(super) fn withdraw(&mut self, conn: ConnId, name: &str, reason: crate::error::Error) {
        let _ = self.rescind_for(conn, name, reason);
    }

    /// Whether connection `conn` is open.
    pub(super) fn is_open(&self, conn: ConnId) -> bool {
        self.peers.contains_key(&conn)
    }

    /// Forwards the one-way post `frame` of `caller` to `to` under the
    /// broker's id `id`: to a peer broker's stand-in stamped with the
    /// caller's identity (`PostFrom`), so that the publisher's broker
    /// judges it as the caller's; to a client as a plain post.
    pub(super) fn forward_post(
        &mut self,
        caller: ConnId,
        to: ConnId,
        frame: &crate::wire::Routed<'_>,
        id: u64,
    ) -> Result<(), crate::error::Error> {
        // A local publisher (the usual case) costs one lookup more.
        if !self.is_link(to) {
            return self.forward(to, frame, id);
        }
        match self.peers.get(&caller).map(|p| p.caller_bytes.clone()) {
            Some(stamp) => self.send_with(to, |out, max_frame| {
                frame.encode_post_from(id, &stamp, out, max_frame)
            }),
            None => self.forward(to, frame, id),
        }
    }

    /// Stand-in `conn` sends `body` (a deliver or a post) on behalf of `caller`, a
    /// client of its broker as that broker stamped it: the policy judges
    /// the call as `caller`'s, and the publisher sees `caller` as who
    /// calls. The stand-in's own identity is back afterwards.
    pub(super) fn receive_as(&mut self, conn: ConnId, body: &[u8], caller: CallerInfo) {
        let Some(p) = self.peers.get_mut(&conn).filter(|p| p.link) else {
            return;
        };
        let bytes: Rc<[u8]> = Rc::from(encode_caller(&caller));
        let own = (
            std::mem::replace(&mut p.caller, caller),
            std::mem::replace(&mut p.caller_bytes, bytes),
        );
        self.receive(conn, body);
        if let Some(p) = self.peers.get_mut(&conn) {
            (p.caller, p.caller_bytes) = own;
        }
    }
}
