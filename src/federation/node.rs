//! A federated broker's member of the cluster: its NATS connection, its
//! links to the other brokers, their liveness (heartbeats, no-responders
//! statuses), and the glue to the broker through [`Port`].
//!
//! Each peer broker B is a *stand-in connection* in this broker's core
//! (opened with [`Port::open_link`]): B's sessions are published by it,
//! calls from B's clients are made by it, and what the core writes to it
//! goes to B over the link. Ending that connection ([`Port::close_link`])
//! is how a link reset or B's death ends every call across the link
//! exactly once: the core answers `publisher_gone` to its callers and
//! cancels at its publishers, as for any closed connection.

use super::config::FederationConfig;
use super::directory::Directory;
use super::link::{Envelope, LinkState, Verdict};
use super::nats::{NatsClient, NatsEvent, NatsOptions};
use crate::error::{Error, ErrorCode};
use crate::event_loop::{EventLoop, TimerId};
use crate::wire::{encode_frame, Frame, Inbound, RoutedKind};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::time::Instant;

/// The broker's number for a connection.
pub(crate) type ConnId = u64;

/// What federation asks of the broker it is part of. The broker's shell
/// implements it; the core stays ignorant of NATS.
pub(crate) trait Port {
    /// Opens a handshaken stand-in connection for peer broker `peer`.
    fn open_link(&self, peer: &str) -> ConnId;
    /// Hands frame bodies to the core as if `conn` had sent them.
    fn link_input(&self, conn: ConnId, bodies: &[Vec<u8>]);
    /// Closes stand-in connection `conn` (every call across it ends).
    fn close_link(&self, conn: ConnId, reason: Error);
    /// Whether `conn` has calls in flight (made or served).
    fn link_busy(&self, conn: ConnId) -> bool;
    /// The connection serving `name` here, if any.
    fn owner(&self, name: &str) -> Option<ConnId>;
    /// Answers operation `op` of client connection `conn` with an error.
    fn answer(&self, conn: ConnId, op: u64, error: Error);
    /// Lets held client connection `conn` go on: `body` (the publish
    /// that was held) is handed to the core first, if given.
    fn release(&self, conn: ConnId, body: Option<Vec<u8>>);
}

/// Ids at or above this are the operations federation makes on stand-in
/// connections (publishing a remote session): their answers are not
/// sent over the link.
pub(crate) const SYNTHETIC_OPS: u64 = 1 << 62;

/// One peer broker as this broker knows it.
#[derive(Debug)]
pub(crate) struct Peer {
    pub link: LinkState,
    /// Its stand-in connection, while one is open.
    pub conn: Option<ConnId>,
    /// When it was last heard from (heartbeat or link message), or first
    /// learned of.
    pub last_heard: Instant,
    /// Its incarnation from its heartbeats (0: none heard).
    pub hb_inc: u64,
    /// Frames waiting for the next flush.
    pub out: Vec<Vec<u8>>,
}

impl Peer {
    pub(crate) fn new() -> Peer {
        Peer {
            link: LinkState::default(),
            conn: None,
            last_heard: Instant::now(),
            hb_inc: 0,
            out: Vec::new(),
        }
    }
}

/// Counters for the broker's stats.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FedCounters {
    pub link_resets: u64,
    pub peers_declared_dead: u64,
    pub nats_reconnects: u64,
    pub dropped_stray: u64,
}

pub(crate) struct State {
    pub peers: HashMap<String, Peer>,
    pub links: HashMap<ConnId, String>,
    pub dir: Directory,
    pub counters: FedCounters,
    pub dead: std::collections::HashSet<(String, u64)>,
    timer: Option<TimerId>,
    /// Servers in the NATS cluster, as the last INFO announced them.
    pub cluster_size: u32,
    inbox_sid: u64,
    nr_sid: u64,
    hb_sid: u64,
}

/// A broker's membership in the federation.
pub(crate) struct Federation {
    pub lp: EventLoop,
    pub config: FederationConfig,
    /// This broker's incarnation, random at each start.
    pub inc: u64,
    pub nats: RefCell<Option<Rc<NatsClient>>>,
    pub port: Weak<dyn Port>,
    pub state: RefCell<State>,
    pub me: Weak<Federation>,
}

impl std::fmt::Debug for Federation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Federation")
            .field("broker_id", &self.config.broker_id)
            .field("inc", &self.inc)
            .finish_non_exhaustive()
    }
}

fn random_inc() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish().max(1)
}

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

/// The body of `frame` (without its length prefix).
pub(crate) fn body_of(frame: &Frame) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = encode_frame(frame, &mut out, usize::MAX);
    out.split_off(4.min(out.len()))
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
        _ => false,
    }
}

impl Federation {
    /// Joins the federation: connects to NATS (in the background, on
    /// `lp`) and starts the heartbeat. `port` is the broker.
    pub fn start(
        lp: &EventLoop,
        config: FederationConfig,
        port: Weak<dyn Port>,
    ) -> Result<Rc<Federation>, Error> {
        config.check()?;
        let dir = Directory::new(&config)?;
        let fed = Rc::new_cyclic(|me| Federation {
            lp: lp.clone(),
            inc: random_inc(),
            nats: RefCell::new(None),
            port,
            state: RefCell::new(State {
                peers: HashMap::new(),
                links: HashMap::new(),
                dir,
                counters: FedCounters::default(),
                dead: Default::default(),
                timer: None,
                cluster_size: 1,
                inbox_sid: 0,
                nr_sid: 0,
                hb_sid: 0,
            }),
            config,
            me: me.clone(),
        });
        let mut options = NatsOptions::new(fed.config.servers.clone());
        options.name = format!("sb.{}.{}", fed.config.namespace, fed.config.broker_id);
        options.auth = fed.config.auth.clone();
        let weak = fed.me.clone();
        let nats = NatsClient::start(lp, options, move |_, event| {
            if let Some(f) = weak.upgrade() {
                f.on_event(event);
            }
        })
        .map_err(|e| Error::new(ErrorCode::InvalidArgument, e.to_string()))?;
        let id = &fed.config.broker_id;
        let subscribe = |s: String| {
            nats.subscribe(&s, None)
                .map_err(|e| Error::new(ErrorCode::InvalidArgument, e.to_string()))
        };
        let inbox_sid = subscribe(fed.config.inbox(id))?;
        let nr_sid = subscribe(format!("sb.{}.nr.{id}.*", fed.config.namespace))?;
        let hb_sid = subscribe(format!("sb.{}.hb.*", fed.config.namespace))?;
        {
            let mut st = fed.state.borrow_mut();
            st.inbox_sid = inbox_sid;
            st.nr_sid = nr_sid;
            st.hb_sid = hb_sid;
        }
        *fed.nats.borrow_mut() = Some(nats);
        fed.arm_tick();
        Ok(fed)
    }

    pub(crate) fn nats(&self) -> Option<Rc<NatsClient>> {
        self.nats.borrow().clone()
    }

    /// Leaves the federation: the directory entries this broker holds
    /// are deleted (best effort) and the connection closes.
    pub fn close(&self) {
        self.dir_release_all();
        if let Some(t) = self.state.borrow_mut().timer.take() {
            self.lp.cancel_timer(t);
        }
        if let Some(n) = self.nats.borrow_mut().take() {
            n.close();
        }
    }

    /// Counters for the stats.
    pub fn counters(&self) -> FedCounters {
        self.state.borrow().counters
    }

    /// Sessions served by other brokers, as listed here.
    pub fn remote_sessions(&self) -> usize {
        self.state.borrow().dir.remote_count()
    }

    /// Whether `conn` is a stand-in connection.
    pub fn is_link(&self, conn: ConnId) -> bool {
        self.state.borrow().links.contains_key(&conn)
    }

    fn arm_tick(&self) {
        let weak = self.me.clone();
        let t = self.lp.add_timer(self.config.hb_interval, move |_| {
            if let Some(f) = weak.upgrade() {
                f.tick();
            }
        });
        self.state.borrow_mut().timer = Some(t);
    }

    /// Every `hb_interval`: our heartbeat, syncs on busy links, peers
    /// silent too long declared dead, directory operations timed out.
    fn tick(&self) {
        self.arm_tick();
        let Some(nats) = self.nats() else { return };
        if !nats.is_connected() {
            // We hear nobody while away: nobody is declared dead for it.
            return;
        }
        let _ = nats.publish(
            &self.config.heartbeat(&self.config.broker_id),
            None,
            None,
            self.inc.to_string().as_bytes(),
        );
        let Some(port) = self.port.upgrade() else {
            return;
        };
        let now = Instant::now();
        let (busy, dead): (Vec<String>, Vec<String>) = {
            let st = self.state.borrow();
            let busy = st
                .peers
                .iter()
                .filter(|(_, p)| p.conn.is_some_and(|c| port.link_busy(c)))
                .map(|(id, _)| id.clone())
                .collect();
            let dead = st
                .peers
                .iter()
                .filter(|(_, p)| now.duration_since(p.last_heard) > self.config.hb_timeout)
                .map(|(id, _)| id.clone())
                .collect();
            (busy, dead)
        };
        for peer in busy {
            self.send_sync(&peer, true);
        }
        for peer in dead {
            self.declare_dead(&peer);
        }
        self.dir_tick(now);
    }

    fn on_event(&self, event: NatsEvent) {
        match event {
            NatsEvent::Connected { epoch, info, .. } => {
                // The servers the cluster announces (itself included):
                // no more directory copies than servers.
                let servers = info.connect_urls.len().max(1) as u32;
                self.state.borrow_mut().cluster_size = servers;
                if epoch > 1 {
                    {
                        let mut st = self.state.borrow_mut();
                        st.counters.nats_reconnects += 1;
                        // Peers get a full hb_timeout from now to be heard.
                        let now = Instant::now();
                        for p in st.peers.values_mut() {
                            p.last_heard = now;
                        }
                    }
                    // Frames may have been lost both ways while we were
                    // away: every link checks itself with a sync.
                    let peers: Vec<String> = self.state.borrow().peers.keys().cloned().collect();
                    for p in peers {
                        self.send_sync(&p, true);
                    }
                }
                self.dir_connected();
            }
            NatsEvent::Disconnected { .. } => {}
            NatsEvent::Msg(msg) => {
                let (inbox, nr, hb) = {
                    let st = self.state.borrow();
                    (st.inbox_sid, st.nr_sid, st.hb_sid)
                };
                if msg.sid == inbox {
                    self.on_link_message(&msg);
                } else if msg.sid == nr {
                    if msg.status() == Some(503) {
                        if let Some(peer) = msg.subject.rsplit('.').next() {
                            self.no_responders(peer);
                        }
                    }
                } else if msg.sid == hb {
                    self.on_heartbeat(&msg.subject, &msg.payload);
                } else {
                    self.dir_msg(&msg);
                }
            }
            NatsEvent::Reply { token, msg } => self.dir_reply(token, &msg),
            NatsEvent::LameDuck => {
                // The server goes away soon: move now, while the rest of
                // the cluster is up (the links check themselves after).
                if let Some(n) = self.nats() {
                    n.reconnect();
                }
            }
            NatsEvent::ServerError(e) => {
                log::warn!(broker = self.config.broker_id.as_str(); "NATS: {e}");
            }
        }
    }

    fn on_heartbeat(&self, subject: &str, payload: &[u8]) {
        let Some(peer) = subject.rsplit('.').next() else {
            return;
        };
        if peer == self.config.broker_id {
            return;
        }
        let inc = std::str::from_utf8(payload)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
        let mut st = self.state.borrow_mut();
        if st.dead.remove(&(peer.to_string(), inc)) {
            // Declared dead, yet alive (it hung, or we were cut off): it
            // is a peer again; its calls here ended already, and it claims
            // its names again when it sees them deleted.
            log::info!(broker = self.config.broker_id.as_str(), peer = peer; "peer broker back after being declared dead");
        }
        let p = st.peers.entry(peer.to_string()).or_insert_with(Peer::new);
        p.last_heard = Instant::now();
        p.hb_inc = inc;
    }

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
    /// `max_payload` per message. A link whose frames cannot go (NATS
    /// down, output full, a frame too large) resets.
    pub fn flush(&self) {
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
        for (peer, frames) in waiting {
            let mut batch: Vec<Vec<u8>> = Vec::new();
            let mut size = Envelope::frames_size([]);
            let mut failed = None;
            for f in frames {
                if Envelope::frames_size([f.len()]) > max {
                    failed = Some(format!(
                        "a frame of {} bytes is over the NATS server's max_payload of {max}",
                        f.len()
                    ));
                    break;
                }
                if size + f.len() + 4 > max {
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
            }
        }
    }

    fn send_frames(
        &self,
        nats: &NatsClient,
        peer: &str,
        frames: Vec<Vec<u8>>,
    ) -> Result<(), String> {
        log::trace!(peer = peer, frames = frames.len(); "link send");
        let env = {
            let mut st = self.state.borrow_mut();
            let p = st.peers.entry(peer.to_string()).or_insert_with(Peer::new);
            p.link.next_frames(&self.config.broker_id, self.inc, frames)
        };
        self.publish_link(nats, peer, &env, true)
    }

    fn publish_link(
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

    fn send_sync(&self, peer: &str, want_reply: bool) {
        let Some(nats) = self.nats() else { return };
        let env = match self.state.borrow().peers.get(peer) {
            Some(p) => p.link.sync(&self.config.broker_id, self.inc, want_reply),
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
            p.link.reset(&self.config.broker_id, self.inc)
        };
        self.end_link_conn(peer, why);
        if let Some(nats) = self.nats() {
            let _ = self.publish_link(&nats, peer, &env, false);
        }
        self.reopen(peer);
    }

    /// After a reset, the peer's sessions (still in the directory) are
    /// published again by a new stand-in connection.
    fn reopen(&self, peer: &str) {
        if self.state.borrow().dir.serves_any(peer) {
            self.link_conn(peer);
        }
    }

    /// Closes `peer`'s stand-in connection, if open: the core ends every
    /// call across it once. The peer's sessions come back with the next
    /// connection (from the directory cache).
    fn end_link_conn(&self, peer: &str, why: &str) {
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

    fn on_link_message(&self, msg: &super::nats::Msg) {
        let env = match Envelope::decode(&msg.payload) {
            Ok(e) => e,
            Err(e) => {
                log::warn!(broker = self.config.broker_id.as_str(); "{e}");
                return;
            }
        };
        let from = env.from.clone();
        if from == self.config.broker_id || from.is_empty() {
            return;
        }
        if self
            .state
            .borrow()
            .dead
            .contains(&(from.clone(), env.from_inc))
        {
            return;
        }
        let verdict = {
            let mut st = self.state.borrow_mut();
            let p = st.peers.entry(from.clone()).or_insert_with(Peer::new);
            p.last_heard = Instant::now();
            p.link.receive(self.inc, &env)
        };
        log::trace!(broker = self.config.broker_id.as_str(), peer = from.as_str(), seq = env.seq, gen = env.gen; "link message {}: {}", match env.body { super::link::Body::Frames(_) => "frames", super::link::Body::Reset => "reset", super::link::Body::Sync { .. } => "sync" }, match &verdict { Verdict::Deliver(f) => format!("deliver {}", f.len()), v => format!("{v:?}") });
        match verdict {
            Verdict::Deliver(frames) => self.deliver_frames(&from, frames),
            Verdict::Drop => self.state.borrow_mut().counters.dropped_stray += 1,
            Verdict::Stray => {
                let env = {
                    let mut st = self.state.borrow_mut();
                    st.counters.dropped_stray += 1;
                    st.peers
                        .get(&from)
                        .map(|p| p.link.reset_again(&self.config.broker_id, self.inc))
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
                self.end_link_conn(&from, "the peer reset the link");
                self.reopen(&from);
            }
        }
    }

    /// Frames from `peer` into the core, through its stand-in connection.
    /// A call for a session not served here (the caller's directory was
    /// stale) is answered `no_such_session` at once, never forwarded on.
    fn deliver_frames(&self, peer: &str, frames: Vec<Vec<u8>>) {
        let Some(port) = self.port.upgrade() else {
            return;
        };
        let Some(conn) = self.link_conn(peer) else {
            return;
        };
        let mut pass = Vec::with_capacity(frames.len());
        let mut refused = Vec::new();
        for body in frames {
            if let Ok(Inbound::Routed(r)) = Inbound::parse(&body) {
                if let RoutedKind::Deliver { session, .. } | RoutedKind::Post { session, .. } =
                    r.kind
                {
                    let local = port.owner(session).is_some_and(|c| !self.is_link(c));
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

    /// A link message to `peer` came back 503: nobody reads its inbox (it
    /// died, or is between two NATS connections). What was in flight is
    /// lost: a link with calls resets; death is the heartbeat's call.
    fn no_responders(&self, peer: &str) {
        let Some(port) = self.port.upgrade() else {
            return;
        };
        let busy = self
            .state
            .borrow()
            .peers
            .get(peer)
            .and_then(|p| p.conn)
            .is_some_and(|c| port.link_busy(c));
        if busy {
            self.reset_link(peer, "no responders on its inbox");
        }
    }

    /// `peer` stayed silent past `hb_timeout`: its calls end, its
    /// sessions leave the listing, its directory entries are deleted,
    /// and its incarnation is remembered as dead.
    fn declare_dead(&self, peer: &str) {
        log::warn!(broker = self.config.broker_id.as_str(), peer = peer; "peer broker declared dead");
        let inc = {
            let mut st = self.state.borrow_mut();
            st.counters.peers_declared_dead += 1;
            let p = st.peers.get(peer);
            let inc = p.map_or(0, |p| p.link.peer_inc.max(p.hb_inc));
            if inc != 0 {
                st.dead.insert((peer.to_string(), inc));
            }
            inc
        };
        self.end_link_conn(peer, "the broker is gone (no heartbeat)");
        self.state.borrow_mut().peers.remove(peer);
        self.dir_peer_dead(peer, inc);
    }
}
