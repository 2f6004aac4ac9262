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
use crate::federation::link::{BodyRef, Envelope, EnvelopeRef, FramesRef, Verdict};
use crate::federation::nats::proto::Subject;
use crate::federation::nats::NatsClient;
use crate::wire::{Frame, Inbound, RoutedKind};
use std::time::Instant;

/// Splits length-prefixed frames (as the core writes them) into bodies,
/// keeping those that cross the link.
fn split_frames(mut bytes: &[u8], out: &mut Vec<Vec<u8>>) {
    while bytes.len() >= 4 {
        let len = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
        let Some(body) = bytes.get(4..4 + len) else {
            return;
        };
        if crosses_link(body) {
            out.push(body.to_vec());
        }
        bytes = &bytes[4 + len..];
    }
}

/// The variant numbers (first byte) of the frames federation looks at
/// (here and in `identity`).
pub(super) struct Tags {
    pub(super) deliver: u8,
    pub(super) post: u8,
    pub(super) emit: u8,
    pub(super) recall: u8,
    pub(super) result: u8,
    pub(super) cancel: u8,
    pub(super) deliver_from: u8,
    pub(super) post_from: u8,
    pub(super) signal: u8,
    pub(super) remove_match: u8,
}

/// The frames' variant numbers, from their encoding (bincode writes an
/// enum's index first, in one byte below 251).
pub(super) fn tags() -> &'static Tags {
    use crate::wire::{CallerInfo, Payload};
    static TAGS: std::sync::OnceLock<Tags> = std::sync::OnceLock::new();
    TAGS.get_or_init(|| {
        let tag = |f: Frame| body_of(&f)[0];
        let (s, m, p) = (String::new, String::new, Payload::default);
        Tags {
            deliver: tag(Frame::Deliver {
                id: 0,
                origin: 0,
                timeout_ms: 0,
                session: s(),
                method: m(),
                payload: p(),
            }),
            post: tag(Frame::Post {
                id: 0,
                origin: 0,
                timeout_ms: 0,
                session: s(),
                method: m(),
                payload: p(),
            }),
            emit: tag(Frame::Emit {
                id: 0,
                kind: s(),
                payload: p(),
            }),
            recall: tag(Frame::Recall {
                id: 0,
                method: m(),
                payload: p(),
            }),
            result: tag(Frame::Result {
                id: 0,
                outcome: Ok(crate::wire::Reply::Done),
            }),
            cancel: tag(Frame::Cancel { id: 0 }),
            deliver_from: tag(Frame::DeliverFrom {
                id: 0,
                origin: 0,
                timeout_ms: 0,
                session: s(),
                method: m(),
                payload: p(),
                caller: CallerInfo::default(),
            }),
            post_from: tag(Frame::PostFrom {
                id: 0,
                origin: 0,
                timeout_ms: 0,
                session: s(),
                method: m(),
                payload: p(),
                caller: CallerInfo::default(),
            }),
            signal: tag(Frame::Signal {
                session: s(),
                signal: m(),
                payload: p(),
            }),
            remove_match: tag(Frame::RemoveMatch {
                id: 0,
                session: s(),
                signal: m(),
            }),
        }
    })
}

/// Whether a frame the core wrote to a stand-in connection goes over the
/// link: a call's frames do; the answers to federation's own operations
/// and the handshake's welcome do not. Decided by the variant number
/// (and a result's id): the core wrote the frame, it needs no checking
/// here, and decoding it whole cost more than the rest of the send.
fn crosses_link(body: &[u8]) -> bool {
    let t = tags();
    let Some(&tag) = body.first() else {
        return false;
    };
    if tag == t.result {
        let config = bincode::config::standard().with_limit::<{ crate::wire::DECODE_LIMIT }>();
        return bincode::decode_from_slice::<u64, _>(&body[1..], config)
            .is_ok_and(|(id, _)| id < SYNTHETIC_OPS);
    }
    [
        t.deliver,
        t.post,
        t.emit,
        t.recall,
        t.cancel,
        // A call or post stamped with its caller's identity.
        t.deliver_from,
        t.post_from,
        // A signal for the peer's listeners (it announced a match).
        t.signal,
    ]
    .contains(&tag)
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
        let mut st = self.state.borrow_mut();
        let st = &mut *st;
        let Some(peer) = st.links.get(&conn) else {
            return;
        };
        // The peer is known (it has a stand-in): no key made per output.
        match st.peers.get_mut(peer.as_str()) {
            Some(p) => split_frames(bytes, &mut p.out),
            None => {
                let p = st.peers.entry(peer.clone()).or_insert_with(Peer::new);
                split_frames(bytes, &mut p.out);
            }
        }
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
        type Waiting = (String, Option<ConnId>, Vec<Vec<u8>>);
        let waiting: Vec<Waiting> = {
            let mut st = self.state.borrow_mut();
            st.peers
                .iter_mut()
                .filter(|(_, p)| !p.out.is_empty())
                .map(|(id, p)| (id.clone(), p.conn, std::mem::take(&mut p.out)))
                .collect()
        };
        let port = self.port.upgrade();
        let (max_pending, max_queued) = port
            .as_ref()
            .map_or((usize::MAX, usize::MAX), |p| p.fed_limits());
        for (peer, conn, frames) in waiting {
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
            if let Err(why) = self.send_batches(&nats, &peer, screened.pass, max) {
                self.reset_link(&peer, &why);
            } else if let (Some(port), Some(conn), false) =
                (&port, conn, screened.inject.is_empty())
            {
                port.link_input(conn, &screened.inject);
            }
        }
    }

    /// Sends `frames` to `peer`, coalesced up to `max` bytes per link
    /// message, with one look-up of the peer; the emptied list goes back
    /// to the peer for its next frames (no new list per flush).
    fn send_batches(
        &self,
        nats: &NatsClient,
        peer: &str,
        frames: Vec<Vec<u8>>,
        max: usize,
    ) -> Result<(), String> {
        let send = |p: &mut Peer| {
            let mut start = 0;
            let mut size = Envelope::frames_size([]);
            for (i, f) in frames.iter().enumerate() {
                if size + f.len() + 4 > max && i > start {
                    self.send_frames_on(nats, p, peer, &frames[start..i])?;
                    start = i;
                    size = Envelope::frames_size([]);
                }
                size += f.len() + 4;
            }
            if start < frames.len() {
                self.send_frames_on(nats, p, peer, &frames[start..])?;
            }
            if p.out.is_empty() {
                let mut list = frames;
                list.clear();
                p.out = list;
            }
            Ok(())
        };
        let mut st = self.state.borrow_mut();
        match st.peers.get_mut(peer) {
            Some(p) => send(p),
            None => send(st.peers.entry(peer.to_string()).or_insert_with(Peer::new)),
        }
    }

    /// Sends `frames` to `peer` (`p`) as one link message, encoded
    /// straight into the NATS output (no envelope nor buffer of its own),
    /// on the peer's subjects made once.
    fn send_frames_on(
        &self,
        nats: &NatsClient,
        p: &mut Peer,
        peer: &str,
        frames: &[Vec<u8>],
    ) -> Result<(), String> {
        let me = self.config.broker_id.as_str();
        let head = p.link.next_frames_head(self.inc());
        if p.subjects.is_none() {
            let inbox = Subject::new(self.config.inbox(peer)).map_err(|e| e.to_string())?;
            let nr =
                Subject::new(self.config.no_responders(me, peer)).map_err(|e| e.to_string())?;
            p.subjects = Some((inbox, nr));
        }
        let (inbox, nr) = p.subjects.as_ref().expect("made above");
        // With the no-responders reply subject: a 503 says at once that
        // the peer is gone from NATS.
        nats.publish_with(inbox, Some(nr), Envelope::frames_len(me, frames), |out| {
            Envelope::encode_frames(me, head, frames, out)
        })
        .map_err(|e| e.to_string())
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

    /// A link message from a peer, read in place: its frames go to the
    /// core as slices of the received payload, uncopied.
    pub(super) fn on_link_message(&self, msg: &crate::federation::nats::Msg) {
        let env = match EnvelopeRef::decode(&msg.payload) {
            Ok(e) => e,
            Err(e) => {
                log::warn!(broker = self.config.broker_id.as_str(); "{e}");
                return;
            }
        };
        let from = env.from;
        if from == self.config.broker_id || from.is_empty() {
            return;
        }
        if env.body == BodyRef::DeclaredDead {
            if env.head.to_inc == self.inc() {
                self.renew(from);
            }
            return;
        }
        let dead = {
            let st = self.state.borrow();
            !st.dead.is_empty() && st.dead.contains(&(from.to_string(), env.head.from_inc))
        };
        if dead {
            // A life declared dead here: it learns so, and comes back new.
            self.tell_dead(from, env.head.from_inc);
            return;
        }
        let (verdict, conn) = {
            let inc = self.inc();
            let mut st = self.state.borrow_mut();
            let judge = |p: &mut Peer| {
                p.last_heard = Instant::now();
                (p.link.receive_ref(inc, &env), p.conn)
            };
            // One lookup for a known peer, no key made.
            match st.peers.get_mut(from) {
                Some(p) => judge(p),
                None => judge(st.peers.entry(from.to_string()).or_insert_with(Peer::new)),
            }
        };
        log::trace!(broker = self.config.broker_id.as_str(), peer = from, seq = env.head.seq, gen = env.head.gen; "link message {}: {}", match env.body {
            BodyRef::Frames(_) => "frames",
            BodyRef::Reset => "reset",
            BodyRef::Sync { .. } => "sync",
            BodyRef::DeclaredDead => "declared dead",
        }, match &verdict { Verdict::Deliver(f) => format!("deliver {}", f.len()), v => format!("{v:?}") });
        match verdict {
            Verdict::Deliver(frames) => self.deliver_frames(from, conn, frames),
            Verdict::Drop => self.state.borrow_mut().counters.dropped_stray += 1,
            Verdict::Stray => {
                let env = {
                    let mut st = self.state.borrow_mut();
                    st.counters.dropped_stray += 1;
                    st.peers
                        .get(from)
                        .map(|p| p.link.reset_again(&self.config.broker_id, self.inc()))
                };
                if let (Some(env), Some(nats)) = (env, self.nats()) {
                    let _ = self.publish_link(&nats, from, &env, false);
                }
            }
            Verdict::AnswerSync => self.send_sync(from, false),
            Verdict::Reset(why) => self.reset_link(from, why),
            Verdict::Stale => self.reset_link(from, "a message for an earlier incarnation"),
            Verdict::PeerReset => {
                self.state.borrow_mut().counters.link_resets += 1;
                self.end_link_calls(from, "the peer reset the link");
            }
        }
    }

    /// Frames from `peer` into the core, through its stand-in connection.
    /// A call for a session not served here (the caller's directory was
    /// stale) is answered `no_such_session` at once, never forwarded on.
    /// `conn`: the peer's stand-in as just looked up, if open.
    pub(super) fn deliver_frames(&self, peer: &str, conn: Option<ConnId>, frames: FramesRef<'_>) {
        let Some(port) = self.port.upgrade() else {
            return;
        };
        let Some(conn) = conn.or_else(|| self.link_conn(peer)) else {
            return;
        };
        let mut pass: Vec<&[u8]> = Vec::with_capacity(frames.len());
        let mut refused = Vec::new();
        for body in frames.iter() {
            if let Some(call) = super::identity::stamped(body) {
                // In order: what came before it goes first.
                if !pass.is_empty() {
                    port.link_input_refs(conn, &pass);
                    pass.clear();
                }
                self.deliver_stamped(&port, conn, peer, call, &mut refused);
                continue;
            }
            // Only these are looked into (results, emits... go as they are:
            // the core checks every frame it receives).
            let tag = body.first().copied();
            let t = tags();
            if ![Some(t.deliver), Some(t.post), Some(t.remove_match)].contains(&tag) {
                pass.push(body);
                continue;
            }
            match Inbound::parse(body) {
                Ok(Inbound::Other(Frame::RemoveMatch {
                    id: super::signals::CLEAR_MATCHES_OP,
                    ..
                })) => {
                    // The marker that empties the peer's matches. In
                    // order: what came before it goes first.
                    if !pass.is_empty() {
                        port.link_input_refs(conn, &pass);
                        pass.clear();
                    }
                    self.clear_matches(conn);
                    continue;
                }
                Ok(Inbound::Routed(r)) => {
                    if let RoutedKind::Deliver { session, .. } | RoutedKind::Post { session, .. } =
                        r.kind
                    {
                        if !port.serves_locally(session) {
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
                _ => {}
            }
            pass.push(body);
        }
        if !pass.is_empty() {
            port.link_input_refs(conn, &pass);
        }
        if !refused.is_empty() {
            if let Some(p) = self.state.borrow_mut().peers.get_mut(peer) {
                p.out.extend(refused);
            }
            self.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{CallerInfo, Payload, Reply};

    /// The decision as a full parse makes it.
    fn crosses_by_parse(body: &[u8]) -> bool {
        match Inbound::parse(body) {
            Ok(Inbound::Routed(r)) => match r.kind {
                RoutedKind::Result { .. } => r.id < SYNTHETIC_OPS,
                _ => true,
            },
            Ok(Inbound::Other(
                Frame::Cancel { .. } | Frame::DeliverFrom { .. } | Frame::PostFrom { .. },
            )) => true,
            Ok(Inbound::Signal { .. }) => true,
            _ => false,
        }
    }

    #[test]
    fn the_variant_number_decides_what_crosses_as_a_parse_would() {
        let p = || Payload(vec![1, 2]);
        let frames = [
            Frame::Deliver {
                id: 1,
                origin: 2,
                timeout_ms: 3,
                session: "s".into(),
                method: "m".into(),
                payload: p(),
            },
            Frame::DeliverFrom {
                id: 1,
                origin: 2,
                timeout_ms: 3,
                session: "s".into(),
                method: "m".into(),
                payload: p(),
                caller: CallerInfo::default(),
            },
            Frame::Post {
                id: 1,
                origin: 2,
                timeout_ms: 3,
                session: "s".into(),
                method: "m".into(),
                payload: p(),
            },
            Frame::PostFrom {
                id: 1,
                origin: 2,
                timeout_ms: 3,
                session: "s".into(),
                method: "m".into(),
                payload: p(),
                caller: CallerInfo::default(),
            },
            Frame::Emit {
                id: 300,
                kind: "k".into(),
                payload: p(),
            },
            Frame::Recall {
                id: 300,
                method: "m".into(),
                payload: p(),
            },
            Frame::Cancel { id: 9 },
            Frame::Result {
                id: 300,
                outcome: Ok(Reply::Done),
            },
            Frame::Result {
                id: SYNTHETIC_OPS + 5,
                outcome: Ok(Reply::Done),
            },
            Frame::Result {
                id: u64::MAX,
                outcome: Err(Error::no_such_session("x")),
            },
            Frame::Signal {
                session: "s".into(),
                signal: "g".into(),
                payload: p(),
            },
            Frame::RemoveMatch {
                id: 4,
                session: "s".into(),
                signal: "g".into(),
            },
            Frame::AddMatch {
                id: 4,
                session: "s".into(),
                signal: "g".into(),
            },
            Frame::Ping,
            Frame::Pong,
        ];
        for f in frames {
            let body = body_of(&f);
            assert_eq!(crosses_link(&body), crosses_by_parse(&body), "{f:?}");
        }
        assert!(!crosses_link(&[]));
    }
}
