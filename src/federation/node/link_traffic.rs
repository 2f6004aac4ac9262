//! What crosses the links: a peer's stand-in connection opened and
//! ended, the core's output to it split into frames and sent as link
//! messages (in order, with their sequence numbers), a link reset, and
//! link messages from a peer handed to the core.
//!
//! Separate from the membership (start, heartbeats, liveness, a peer
//! declared dead) in `node.rs`: this is the data path of a link, the
//! other its control.

use super::{body_of, ConnId, Federation, Peer, SYNTHETIC_OPS};
use crate::error::{Error, ErrorCode};
use crate::federation::link::{Envelope, Verdict};
use crate::federation::nats::NatsClient;
use crate::wire::{Frame, Inbound, RoutedKind};
use std::time::Instant;

/// Splits length-prefixed frames (as the core writes them) into bodies.
fn split_frames(mut bytes: &[u8], out: &mut Vec<Vec<u8>>) {
    while bytes.len() >= 4 {
        let len = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
        let Some(body) = bytes.get(4..4 + len) else {
            return;
        };
        out.push(body.to_vec());
        bytes = &bytes[4 + len..];
    }
}

/// Whether a frame the core wrote to a stand-in connection goes over the
/// link: a call's frames do; the answers to federation's own operations
/// and the handshake's welcome do not.
fn crosses_link(body: &[u8]) -> bool {
    match Inbound::parse(body) {
        Ok(Inbound::Routed(r)) => match r.kind {
            RoutedKind::Result { .. } => r.id < SYNTHETIC_OPS,
            _ => true,
        },
        Ok(Inbound::Other(Frame::Cancel { .. })) => true,
        // A call stamped with its caller's identity.
        Ok(Inbound::Other(Frame::DeliverFrom { .. } | Frame::PostFrom { .. })) => true,
        // A signal for the peer's listeners (it announced a match).
        Ok(Inbound::Signal { .. }) => true,
        _ => false,
    }
}

impl Federation {
    /// The stand-in connection of `peer`, opened (with its sessions
    /// published from the directory cache) if none is.
    pub(crate) fn link_conn(&self, peer: &str) -> Option<ConnId> {
        let port = self.port.upgrade()?;
        if let Some(c) = self.state.borrow().peers.get(peer).and_then(|p| p.conn) {
            return Some(c);
        }
        let conn = port.open_link(peer);
        {
            let mut st = self.state.borrow_mut();
            st.links.insert(conn, peer.to_string());
            st.peers
                .entry(peer.to_string())
                .or_insert_with(Peer::new)
                .conn = Some(conn);
        }
        let publishes = self.state.borrow_mut().dir.publishes_of(peer);
        if !publishes.is_empty() {
            port.link_input(conn, &publishes);
        }
        // Its shared names take their place in the lists again.
        let shared = self.state.borrow().dir.shared_of(peer);
        for name in shared {
            self.order_shared(&name);
        }
        Some(conn)
    }

    /// A stand-in connection was closed by the core (a protocol error of
    /// the peer, say): the link resets.
    pub fn link_closed(&self, conn: ConnId) {
        let peer = self.state.borrow_mut().links.remove(&conn);
        if let Some(peer) = peer {
            let mut st = self.state.borrow_mut();
            if let Some(p) = st.peers.get_mut(&peer) {
                if p.conn == Some(conn) {
                    p.conn = None;
                }
            }
        }
    }

    /// What the core wrote to stand-in connection `conn`: its frames
    /// wait for [`Federation::flush`].
    pub fn link_output(&self, conn: ConnId, bytes: &[u8]) {
        let mut frames = Vec::new();
        split_frames(bytes, &mut frames);
        let mut st = self.state.borrow_mut();
        let Some(peer) = st.links.get(&conn).cloned() else {
            return;
        };
        let p = st.peers.entry(peer).or_insert_with(Peer::new);
        p.out.extend(frames.into_iter().filter(|f| crosses_link(f)));
    }

    /// Sends every peer's waiting frames, coalesced up to the server's
    /// `max_payload` per message. A frame over a limit fails its own call
    /// with `limit_exceeded` (`limits`); a link whose frames cannot go
    /// (NATS down, the connection's own queue full) resets.
    pub fn flush(&self) {
        self.announce_matches();
        // Called after every turn of the broker's loop: nothing to do is
        // the usual case, and costs one look per peer (a local call on a
        // federated broker pays for nothing else).
        if self.state.borrow().peers.values().all(|p| p.out.is_empty()) {
            return;
        }
        let Some(nats) = self.nats() else { return };
        let max = nats.max_payload();
        let waiting: Vec<(String, Vec<Vec<u8>>)> = {
            let mut st = self.state.borrow_mut();
            st.peers
                .iter_mut()
                .filter(|(_, p)| !p.out.is_empty())
                .map(|(id, p)| (id.clone(), std::mem::take(&mut p.out)))
                .collect()
        };
        let port = self.port.upgrade();
        let (max_pending, max_queued) = port
            .as_ref()
            .map_or((usize::MAX, usize::MAX), |p| p.fed_limits());
        for (peer, frames) in waiting {
            let conn = self.state.borrow().peers.get(&peer).and_then(|p| p.conn);
            let serving = match (&port, conn) {
                (Some(port), Some(c)) => port.link_load(c).1,
                _ => 0,
            };
            let screened = self.screen(
                &peer,
                frames,
                super::limits::FlushLimits {
                    max_payload: max,
                    queued: nats.queued_bytes(),
                    max_queued,
                    excess_pending: serving.saturating_sub(max_pending),
                },
            );
            let mut batch: Vec<Vec<u8>> = Vec::new();
            let mut size = Envelope::frames_size([]);
            let mut failed = None;
            for f in screened.pass {
                if size + f.len() + 4 > max && !batch.is_empty() {
                    if let Err(e) = self.send_frames(&nats, &peer, std::mem::take(&mut batch)) {
                        failed = Some(e);
                        break;
                    }
                    size = Envelope::frames_size([]);
                }
                size += f.len() + 4;
                batch.push(f);
            }
            if failed.is_none() && !batch.is_empty() {
                if let Err(e) = self.send_frames(&nats, &peer, batch) {
                    failed = Some(e);
                }
            }
            if let Some(why) = failed {
                self.reset_link(&peer, &why);
            } else if let (Some(port), Some(conn), false) =
                (&port, conn, screened.inject.is_empty())
            {
                port.link_input(conn, &screened.inject);
            }
        }
    }

    pub(super) fn send_frames(
        &self,
        nats: &NatsClient,
        peer: &str,
        frames: Vec<Vec<u8>>,
    ) -> Result<(), String> {
        log::trace!(peer = peer, frames = frames.len(); "link send");
        let env = {
            let mut st = self.state.borrow_mut();
            let p = st.peers.entry(peer.to_string()).or_insert_with(Peer::new);
            p.link
                .next_frames(&self.config.broker_id, self.inc(), frames)
        };
        self.publish_link(nats, peer, &env, true)
    }

    pub(super) fn publish_link(
        &self,
        nats: &NatsClient,
        peer: &str,
        env: &Envelope,
        reply: bool,
    ) -> Result<(), String> {
        let nr = self.config.no_responders(&self.config.broker_id, peer);
        nats.publish(
            &self.config.inbox(peer),
            reply.then_some(nr.as_str()),
            None,
            &env.encode(),
        )
        .map_err(|e| e.to_string())
    }

    pub(super) fn send_sync(&self, peer: &str, want_reply: bool) {
        let Some(nats) = self.nats() else { return };
        let env = match self.state.borrow().peers.get(peer) {
            Some(p) => p.link.sync(&self.config.broker_id, self.inc(), want_reply),
            None => return,
        };
        // With the no-responders reply subject: a 503 says at once that
        // the peer is gone from NATS.
        let _ = self.publish_link(&nats, peer, &env, true);
    }

    /// Ends the link with `peer` on our side (its calls end once) and
    /// tells the peer.
    pub(crate) fn reset_link(&self, peer: &str, why: &str) {
        log::warn!(broker = self.config.broker_id.as_str(), peer = peer; "link reset: {why}");
        let env = {
            let mut st = self.state.borrow_mut();
            st.counters.link_resets += 1;
            let p = st.peers.entry(peer.to_string()).or_insert_with(Peer::new);
            p.out.clear();
            p.link.reset(&self.config.broker_id, self.inc())
        };
        self.end_link_calls(peer, why);
        if let Some(nats) = self.nats() {
            let _ = self.publish_link(&nats, peer, &env, false);
        }
    }

    /// Ends every call across the link with `peer` once (a reset), while
    /// its stand-in connection, and so the peer's sessions here, stay:
    /// local subscribers are told nothing, since the peer still serves.
    pub(super) fn end_link_calls(&self, peer: &str, why: &str) {
        let conn = self.state.borrow().peers.get(peer).and_then(|p| p.conn);
        if let (Some(conn), Some(port)) = (conn, self.port.upgrade()) {
            port.end_calls(
                conn,
                Error::new(
                    ErrorCode::PublisherGone,
                    format!("the link to broker {peer} was lost: {why}"),
                ),
            );
        }
    }

    /// Closes `peer`'s stand-in connection, if open (the peer is dead):
    /// the core ends every call across it once, and the peer's sessions
    /// leave (subscribers are told `publisher_gone`).
    pub(super) fn end_link_conn(&self, peer: &str, why: &str) {
        let conn = {
            let mut st = self.state.borrow_mut();
            let conn = st.peers.get_mut(peer).and_then(|p| p.conn.take());
            if let Some(c) = conn {
                st.links.remove(&c);
            }
            conn
        };
        if let (Some(conn), Some(port)) = (conn, self.port.upgrade()) {
            port.close_link(
                conn,
                Error::new(
                    ErrorCode::PublisherGone,
                    format!("the link to broker {peer} was lost: {why}"),
                ),
            );
        }
    }

    pub(super) fn on_link_message(&self, msg: &crate::federation::nats::Msg) {
        let mut env = match Envelope::decode(&msg.payload) {
            Ok(e) => e,
            Err(e) => {
                log::warn!(broker = self.config.broker_id.as_str(); "{e}");
                return;
            }
        };
        let from = std::mem::take(&mut env.from);
        if from == self.config.broker_id || from.is_empty() {
            return;
        }
        if env.body == crate::federation::link::Body::DeclaredDead {
            if env.to_inc == self.inc() {
                self.renew(&from);
            }
            return;
        }
        let dead = {
            let st = self.state.borrow();
            !st.dead.is_empty() && st.dead.contains(&(from.clone(), env.from_inc))
        };
        if dead {
            // A life declared dead here: it learns so, and comes back new.
            self.tell_dead(&from, env.from_inc);
            return;
        }
        let (seq, gen) = (env.seq, env.gen);
        let kind = match env.body {
            crate::federation::link::Body::Frames(_) => "frames",
            crate::federation::link::Body::Reset => "reset",
            crate::federation::link::Body::Sync { .. } => "sync",
            crate::federation::link::Body::DeclaredDead => "declared dead",
        };
        let verdict = {
            let inc = self.inc();
            let mut st = self.state.borrow_mut();
            // No allocation per message once the peer is known.
            if !st.peers.contains_key(&from) {
                st.peers.insert(from.clone(), Peer::new());
            }
            let p = st.peers.get_mut(&from).expect("inserted above");
            p.last_heard = Instant::now();
            // The frames move to the core's input, uncopied.
            p.link.receive_owned(inc, env)
        };
        log::trace!(broker = self.config.broker_id.as_str(), peer = from.as_str(), seq = seq, gen = gen; "link message {kind}: {}", match &verdict { Verdict::Deliver(f) => format!("deliver {}", f.len()), v => format!("{v:?}") });
        match verdict {
            Verdict::Deliver(frames) => self.deliver_frames(&from, frames),
            Verdict::Drop => self.state.borrow_mut().counters.dropped_stray += 1,
            Verdict::Stray => {
                let env = {
                    let mut st = self.state.borrow_mut();
                    st.counters.dropped_stray += 1;
                    st.peers
                        .get(&from)
                        .map(|p| p.link.reset_again(&self.config.broker_id, self.inc()))
                };
                if let (Some(env), Some(nats)) = (env, self.nats()) {
                    let _ = self.publish_link(&nats, &from, &env, false);
                }
            }
            Verdict::AnswerSync => self.send_sync(&from, false),
            Verdict::Reset(why) => self.reset_link(&from, why),
            Verdict::Stale => self.reset_link(&from, "a message for an earlier incarnation"),
            Verdict::PeerReset => {
                self.state.borrow_mut().counters.link_resets += 1;
                self.end_link_calls(&from, "the peer reset the link");
            }
        }
    }

    /// Frames from `peer` into the core, through its stand-in connection.
    /// A call for a session not served here (the caller's directory was
    /// stale) is answered `no_such_session` at once, never forwarded on.
    pub(super) fn deliver_frames(&self, peer: &str, frames: Vec<Vec<u8>>) {
        let Some(port) = self.port.upgrade() else {
            return;
        };
        let Some(conn) = self.link_conn(peer) else {
            return;
        };
        let mut pass = Vec::with_capacity(frames.len());
        let mut refused = Vec::new();
        for body in frames {
            if let Some(call) = super::identity::stamped(&body) {
                // In order: what came before it goes first.
                if !pass.is_empty() {
                    port.link_input(conn, &std::mem::take(&mut pass));
                }
                self.deliver_stamped(&port, conn, peer, call, &mut refused);
                continue;
            }
            if super::signals::is_clear_marker(&body) {
                // In order: what came before it goes first.
                if !pass.is_empty() {
                    port.link_input(conn, &std::mem::take(&mut pass));
                }
                self.clear_matches(conn);
                continue;
            }
            if let Ok(Inbound::Routed(r)) = Inbound::parse(&body) {
                if let RoutedKind::Deliver { session, .. } | RoutedKind::Post { session, .. } =
                    r.kind
                {
                    let local = port.serves_locally(session);
                    if !local {
                        if matches!(r.kind, RoutedKind::Deliver { .. }) {
                            refused.push(body_of(&Frame::Result {
                                id: r.id,
                                outcome: Err(Error::no_such_session(session)),
                            }));
                        }
                        continue;
                    }
                }
            }
            pass.push(body);
        }
        if !pass.is_empty() {
            port.link_input(conn, &pass);
        }
        if !refused.is_empty() {
            if let Some(p) = self.state.borrow_mut().peers.get_mut(peer) {
                p.out.extend(refused);
            }
            self.flush();
        }
    }
}
