//! A federated broker's member of the cluster: its NATS connection, its
//! links to the other brokers, their liveness (heartbeats, no-responders
//! statuses), and the glue to the broker through [`Port`].
//!
//! Each peer broker B is a *stand-in connection* in this broker's core
//! (opened with [`Port::open_link`]): B's sessions are published by it,
//! calls from B's clients are made by it, and what the core writes to it
//! goes to B over the link. A link reset ends every call of that
//! connection exactly once ([`Port::end_calls`]: `publisher_gone` to its
//! callers, a cancel at its publishers) while B's sessions stay; B's
//! death closes it ([`Port::close_link`]), and B's sessions leave with
//! it. A broker that hears it was declared dead (it hung or was cut off
//! past `hb_timeout`) takes a new incarnation ([`Federation::renew`]);
//! a broker whose own loop did not run for a while (SIGSTOP) does not
//! declare its peers dead for the silence it did not hear.
//!
//! This file holds the membership (start, heartbeats, liveness, a peer
//! declared dead); `link_traffic` the data path of each link.

mod identity;
mod limits;
mod link_traffic;
mod signals;

use super::config::FederationConfig;
use super::directory::Directory;
use super::link::LinkState;
use super::nats::proto::Subject;
use super::nats::{NatsClient, NatsEvent, NatsOptions};
use crate::error::{Error, ErrorCode};
use crate::event_loop::{EventLoop, TimerId};
use crate::wire::{encode_frame, Frame};
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
    /// [`Port::link_input`] of bodies borrowed from a link message.
    fn link_input_refs(&self, conn: ConnId, bodies: &[&[u8]]);
    /// Closes stand-in connection `conn` (every call across it ends).
    fn close_link(&self, conn: ConnId, reason: Error);
    /// Ends every call across stand-in connection `conn` once
    /// (`reason` to the callers of the peer's sessions, a cancel to the
    /// publishers of the peer's calls); the peer's sessions stay.
    fn end_calls(&self, conn: ConnId, reason: Error);
    /// Calls stand-in connection `conn` made that are in flight, and
    /// calls it serves (from here to the peer's sessions).
    fn link_load(&self, conn: ConnId) -> (usize, usize);
    /// The broker's `max-pending-per-link` and `max-nats-queued-bytes`
    /// limits.
    fn fed_limits(&self) -> (usize, usize);
    /// Whether `conn` has calls in flight (made or served).
    fn link_busy(&self, conn: ConnId) -> bool;
    /// The connection serving `name` here, if any.
    fn owner(&self, name: &str) -> Option<ConnId>;
    /// Answers operation `op` of client connection `conn` with an error.
    fn answer(&self, conn: ConnId, op: u64, error: Error);
    /// Lets held client connection `conn` go on: `body` (the publish
    /// that was held) is handed to the core first, if given.
    fn release(&self, conn: ConnId, body: Option<Vec<u8>>);
    /// A number that changes whenever the distinct signal matches of
    /// this broker's own clients change.
    fn match_generation(&self) -> u64;
    /// The distinct signal matches of this broker's own clients, as
    /// (session pattern, signal pattern), sorted.
    fn local_matches(&self) -> Vec<(String, String)>;
    /// Forgets every match stand-in connection `conn` holds.
    fn clear_link_matches(&self, conn: ConnId);
    /// Whether a call to `name` from a peer broker is served by one of
    /// this broker's own connections.
    fn serves_locally(&self, name: &str) -> bool;
    /// Whether `conn` publishes `name` here (standbys included).
    fn is_publisher(&self, name: &str, conn: ConnId) -> bool;
    /// Puts the publishers of `name` in this order (the directory's).
    fn order_publishers(&self, name: &str, order: &[ConnId]);
    /// Stand-in `conn` stops publishing `name`, for `reason`.
    fn withdraw(&self, conn: ConnId, name: &str, reason: Error);
    /// Whether connection `conn` is open.
    fn is_open(&self, conn: ConnId) -> bool;
    /// Hands deliver `body` to the core as sent by stand-in `conn` on
    /// behalf of `caller` (a client of that broker, as it stamped it).
    fn deliver_as(&self, conn: ConnId, body: &[u8], caller: crate::wire::CallerInfo);
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
    /// The start-up sweep (see [`Federation::probe_unheard`]): when a
    /// probe of this peer, never heard from, first came back with no
    /// responders.
    pub first_no_responders: Option<Instant>,
    /// The NATS servers said its connection closed (`sys_events`), and
    /// no heartbeat came since: it is probed as the start-up sweep
    /// probes a peer never heard from.
    pub disconnected: bool,
    /// Its inbox and our no-responders subject toward it, made once
    /// (`link_traffic::Federation::send_frames`).
    pub subjects: Option<(Subject, Subject)>,
    /// What this broker last announced to it of its signal matches
    /// (`signals`): kept with the peer, so the check after every turn
    /// looks nothing up.
    pub announced: signals::Announced,
}

impl Peer {
    pub(crate) fn new() -> Peer {
        Peer {
            link: LinkState::default(),
            conn: None,
            last_heard: Instant::now(),
            hb_inc: 0,
            out: Vec::new(),
            first_no_responders: None,
            disconnected: false,
            subjects: None,
            announced: signals::Announced::default(),
        }
    }

    /// Whether the sweep's probes judge it: never heard from, or its
    /// connection reported closed since its last heartbeat.
    fn in_doubt(&self) -> bool {
        !self.heard() || self.disconnected
    }

    /// Whether this peer was ever heard from (a heartbeat or a link
    /// message), rather than only known from directory entries.
    pub(crate) fn heard(&self) -> bool {
        self.hb_inc != 0 || self.link.peer_inc != 0
    }
}

/// Counters for the broker's stats.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FedCounters {
    pub link_resets: u64,
    pub peers_declared_dead: u64,
    pub nats_reconnects: u64,
    pub dropped_stray: u64,
    /// New incarnations taken after being declared dead.
    pub incarnations: u64,
    /// Peers declared dead by the start-up sweep (never heard from,
    /// their inbox without responders), counted in `peers_declared_dead`
    /// too.
    pub peers_swept: u64,
    /// Calls failed `limit_exceeded` by federation's limits.
    pub limits_exceeded: u64,
}

pub(crate) struct State {
    pub peers: HashMap<String, Peer>,
    pub links: HashMap<ConnId, String>,
    pub dir: Directory,
    pub counters: FedCounters,
    pub dead: std::collections::HashSet<(String, u64)>,
    timer: Option<TimerId>,
    /// When the last tick ran: a tick much later than `hb_interval`
    /// means this broker itself was not running (stopped, or starved),
    /// so its silence toward peers is its own, not theirs.
    last_tick: Instant,
    /// When each dead incarnation was last told it is dead (at most
    /// once per `hb_interval`).
    told_dead: HashMap<(String, u64), Instant>,
    /// Servers in the NATS cluster, as the last INFO announced them.
    pub cluster_size: u32,
    inbox_sid: u64,
    nr_sid: u64,
    hb_sid: u64,
    /// The subscription to disconnect events (`sys_events`), 0 without.
    sys_sid: u64,
}

/// A broker's membership in the federation.
pub(crate) struct Federation {
    pub lp: EventLoop,
    pub config: FederationConfig,
    /// This broker's incarnation, random at each start and new after
    /// it learns it was declared dead.
    inc: std::cell::Cell<u64>,
    pub nats: RefCell<Option<Rc<NatsClient>>>,
    pub port: Weak<dyn Port>,
    pub state: RefCell<State>,
    pub me: Weak<Federation>,
}

impl std::fmt::Debug for Federation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Federation")
            .field("broker_id", &self.config.broker_id)
            .field("inc", &self.inc())
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

/// The body of `frame` (without its length prefix).
pub(crate) fn body_of(frame: &Frame) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = encode_frame(frame, &mut out, usize::MAX);
    // In place: no second buffer for the body.
    out.drain(..4.min(out.len()));
    out
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
            inc: std::cell::Cell::new(random_inc()),
            nats: RefCell::new(None),
            port,
            state: RefCell::new(State {
                peers: HashMap::new(),
                links: HashMap::new(),
                dir,
                counters: FedCounters::default(),
                dead: Default::default(),
                timer: None,
                last_tick: Instant::now(),
                told_dead: HashMap::new(),
                cluster_size: 1,
                inbox_sid: 0,
                nr_sid: 0,
                hb_sid: 0,
                sys_sid: 0,
            }),
            config,
            me: me.clone(),
        });
        let mut options = NatsOptions::new(fed.config.servers.clone());
        options.name = fed.config.connection_name(&fed.config.broker_id);
        options.auth = fed.config.auth.clone();
        options.tls = fed.config.tls.clone();
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
        let sys_sid = if fed.config.sys_events {
            subscribe(fed.config.disconnect_events().to_string())?
        } else {
            0
        };
        {
            let mut st = fed.state.borrow_mut();
            st.sys_sid = sys_sid;
            st.inbox_sid = inbox_sid;
            st.nr_sid = nr_sid;
            st.hb_sid = hb_sid;
        }
        *fed.nats.borrow_mut() = Some(nats);
        fed.arm_tick();
        Ok(fed)
    }

    /// This broker's incarnation now.
    pub(crate) fn inc(&self) -> u64 {
        self.inc.get()
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
        let now = Instant::now();
        let stalled = {
            let mut st = self.state.borrow_mut();
            let gap = now.duration_since(st.last_tick);
            st.last_tick = now;
            let stalled = gap > (self.config.hb_interval * 4).max(self.config.hb_timeout / 2);
            if stalled {
                // This broker did not run (SIGSTOP, a starved machine):
                // what it did not hear meanwhile says nothing of its
                // peers. They get a full hb_timeout from now.
                log::warn!(broker = self.config.broker_id.as_str(); "this broker did not run for {gap:?}");
                for p in st.peers.values_mut() {
                    p.last_heard = now;
                    p.first_no_responders = None;
                }
            }
            st.told_dead
                .retain(|_, at| now.duration_since(*at) < self.config.hb_timeout * 4);
            stalled
        };
        let Some(nats) = self.nats() else { return };
        if !nats.is_connected() || stalled {
            // We hear nobody while away: nobody is declared dead for it.
            return;
        }
        let _ = nats.publish(
            &self.config.heartbeat(&self.config.broker_id),
            None,
            None,
            self.inc().to_string().as_bytes(),
        );
        let Some(port) = self.port.upgrade() else {
            return;
        };
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
        self.probe_unheard();
        self.dir_tick(now);
        // Peers heard of since the last flush learn our signal matches.
        self.flush();
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
                            p.first_no_responders = None;
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
                let (inbox, nr, hb, sys) = {
                    let st = self.state.borrow();
                    (st.inbox_sid, st.nr_sid, st.hb_sid, st.sys_sid)
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
                } else if sys != 0 && msg.sid == sys {
                    self.on_disconnect_event(&msg.payload);
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
        if self.state.borrow().dead.contains(&(peer.to_string(), inc)) {
            // Declared dead, yet alive (it hung, or we were cut off): it
            // is told, and comes back as a new incarnation.
            self.tell_dead(peer, inc);
            return;
        }
        let mut st = self.state.borrow_mut();
        let p = st.peers.entry(peer.to_string()).or_insert_with(Peer::new);
        p.last_heard = Instant::now();
        p.hb_inc = inc;
        // Alive: what the probes found so far says nothing more.
        p.disconnected = false;
        p.first_no_responders = None;
    }

    /// A NATS server says a client connection closed (`sys_events`): if
    /// it was a peer broker's, the peer is in doubt until its next
    /// heartbeat, and probed at once (it may only be moving to another
    /// server, so one no-responders answer is not enough).
    fn on_disconnect_event(&self, payload: &[u8]) {
        #[derive(serde::Deserialize)]
        struct Event {
            client: Client,
        }
        #[derive(serde::Deserialize)]
        struct Client {
            #[serde(default)]
            name: String,
        }
        let Ok(event) = serde_json::from_slice::<Event>(payload) else {
            return;
        };
        let prefix = self.config.connection_name("");
        let Some(peer) = event.client.name.strip_prefix(&prefix) else {
            return;
        };
        if peer == self.config.broker_id {
            return;
        }
        {
            let mut st = self.state.borrow_mut();
            let Some(p) = st.peers.get_mut(peer) else {
                return;
            };
            p.disconnected = true;
        }
        log::info!(broker = self.config.broker_id.as_str(), peer = peer; "a peer broker's NATS connection closed: probing it");
        self.send_sync(peer, false);
    }

    /// Tells incarnation `inc` of `peer` that it was declared dead here
    /// (at most once per `hb_interval`).
    pub(crate) fn tell_dead(&self, peer: &str, inc: u64) {
        let now = Instant::now();
        {
            let mut st = self.state.borrow_mut();
            let key = (peer.to_string(), inc);
            if st
                .told_dead
                .get(&key)
                .is_some_and(|at| now.duration_since(*at) < self.config.hb_interval)
            {
                return;
            }
            st.told_dead.insert(key, now);
        }
        log::info!(broker = self.config.broker_id.as_str(), peer = peer; "telling a broker declared dead that it was");
        if let Some(nats) = self.nats() {
            let env = LinkState::declared_dead(&self.config.broker_id, self.inc(), inc);
            let _ = self.publish_link(&nats, peer, &env, false);
        }
    }

    /// This broker learned (from `peer`) that it was declared dead: it
    /// hung or was cut off past `hb_timeout`, and its peers ended its
    /// calls and deleted its names. It starts a new incarnation, ends
    /// every call across its links once (`publisher_gone` to its callers
    /// of remote sessions, a cancel to its publishers of remote calls),
    /// starts every link afresh, and claims its names again as the
    /// deletions reach its watch (a name taken meanwhile stays local,
    /// with a warning).
    pub(crate) fn renew(&self, peer: &str) {
        let old = self.inc();
        let mut new = random_inc();
        while new == old {
            new = random_inc();
        }
        self.inc.set(new);
        log::warn!(broker = self.config.broker_id.as_str(), peer = peer; "declared dead by broker {peer}: new incarnation {new} (was {old})");
        let peers: Vec<String> = {
            let mut st = self.state.borrow_mut();
            st.counters.incarnations += 1;
            let now = Instant::now();
            for p in st.peers.values_mut() {
                p.link = LinkState::default();
                p.out.clear();
                p.last_heard = now;
            }
            st.peers.keys().cloned().collect()
        };
        for p in &peers {
            self.end_link_calls(p, "this broker was declared dead and starts anew");
        }
        if let Some(nats) = self.nats() {
            let _ = nats.publish(
                &self.config.heartbeat(&self.config.broker_id),
                None,
                None,
                self.inc().to_string().as_bytes(),
            );
        }
        // The names: peers that declared this broker dead deleted its
        // entries; each deletion reaching the watch claims the name
        // again, now with the new incarnation (and an entry of the old
        // one is deleted as an earlier life's, then claimed again).
    }

    /// Ends every link with calls in flight, as a lost frame would (a
    /// test's way to force link resets).
    pub fn reset_all_links(&self, why: &str) {
        let peers: Vec<String> = self
            .state
            .borrow()
            .peers
            .iter()
            .filter(|(_, p)| p.conn.is_some())
            .map(|(id, _)| id.clone())
            .collect();
        for p in peers {
            self.reset_link(&p, why);
        }
    }

    /// The start-up sweep, each tick: peers known only from directory
    /// entries (never heard from: a broker killed while nobody was there
    /// to declare it dead leaves its entries behind) are probed with a
    /// sync, which comes back 503 when nobody reads their inbox. Two such
    /// answers at least `hb_interval` apart, with no heartbeat between
    /// (a live broker sends one every `hb_interval`), declare the peer
    /// dead at once instead of after `hb_timeout`
    /// ([`Federation::no_responders`]). Peers whose connection the NATS
    /// servers reported closed (`sys_events`) are probed the same way
    /// until their next heartbeat.
    fn probe_unheard(&self) {
        let unheard: Vec<String> = self
            .state
            .borrow()
            .peers
            .iter()
            .filter(|(_, p)| p.in_doubt())
            .map(|(id, _)| id.clone())
            .collect();
        for peer in unheard {
            self.send_sync(&peer, false);
        }
    }

    /// A link message to `peer` came back 503: nobody reads its inbox (it
    /// died, or is between two NATS connections). What was in flight is
    /// lost: a link with calls resets; death is the heartbeat's call,
    /// but for a peer never heard from, whose second 503 at least
    /// `hb_interval` after the first declares it dead (the start-up
    /// sweep, [`Federation::probe_unheard`]).
    fn no_responders(&self, peer: &str) {
        let swept = {
            let now = Instant::now();
            let mut st = self.state.borrow_mut();
            match st.peers.get_mut(peer).filter(|p| p.in_doubt()) {
                Some(p) => match p.first_no_responders {
                    Some(first) => now.duration_since(first) >= self.config.hb_interval,
                    None => {
                        p.first_no_responders = Some(now);
                        false
                    }
                },
                None => false,
            }
        };
        if swept {
            let unheard = self
                .state
                .borrow()
                .peers
                .get(peer)
                .is_some_and(|p| !p.heard());
            if unheard {
                log::info!(broker = self.config.broker_id.as_str(), peer = peer; "start-up sweep: a broker known only from the directory has no responders");
                self.state.borrow_mut().counters.peers_swept += 1;
            } else {
                log::warn!(broker = self.config.broker_id.as_str(), peer = peer; "a peer broker's connection closed and it has no responders");
            }
            self.declare_dead(peer);
            return;
        }
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
