//! The broker's core: every connection's state and what the broker does
//! with each frame, without I/O.
//!
//! The core never touches a socket, a clock or the loop; the shell
//! (`super::shell`) does, and feeds it:
//!
//! * **In**: a connection accepted ([`Core::connect`]), each frame body it
//!   sent ([`Core::receive`]), the end of its input ([`Core::input_ended`]),
//!   its handshake deadline passing ([`Core::deadline_passed`]), the wait
//!   of a subscribe for its name expiring ([`Core::wait_expired`]), room in
//!   its socket again ([`Core::writable`]), the broker closing
//!   ([`Core::shut_down`]).
//! * **Out**: the bytes to write to each connection
//!   ([`Core::write_output`], asked for by [`Core::take_flush_request`]),
//!   and [`Effect`]s ([`Core::take_effects`]): a handshake deadline to arm
//!   or disarm, a wait's timer to arm or disarm (`waiters.rs`), a
//!   connection closed with its reason.
//!
//! The handshake and every operation live here (calls in `calls.rs`,
//! session operations in `sessions.rs`), so they are unit-tested with
//! frames as bytes. A call's frames keep the fast path: checked in place,
//! forwarded with only the id rewritten, into output buffers and lists
//! that keep their room, with no allocation per frame.
//!
//! The core's own paths live in submodules: `dispatch` (each frame to its
//! operation, and the hello), `output` (frames queued for a connection,
//! answers) and `closing` (refusals, condemnations, a connection's end
//! settled).

mod closing;
mod dispatch;
mod output;

use super::budget::Budget;
use super::monitor::Monitor;
use super::peer::{CloseReason, Peer};
use super::registry::Registry;
use super::routes::Routes;
use super::signals::Matches;
use super::stats::Counters;
use super::waiters::{WaitId, Waiters};
use super::watches::Watches;
use super::{BrokerConfig, BrokerStats, ConnId, Limits};
use crate::error::{Error, ErrorCode};
use crate::id_hash::IdMap;
use crate::transport::PeerCred;
use crate::wire::{Frame, Inbound};
use std::time::Duration;

/// What the core asks of its shell, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Effect {
    /// Call [`Core::deadline_passed`] for `conn` after `after`, unless
    /// disarmed or closed first.
    ArmDeadline { conn: ConnId, after: Duration },
    /// `conn` said hello: its deadline is no longer needed.
    DisarmDeadline { conn: ConnId },
    /// `conn` is closed and forgotten (with its deadline, if armed): its
    /// socket goes. Everything it was part of is settled already.
    Close { conn: ConnId, reason: CloseReason },
    /// Call [`Core::wait_expired`] for `wait` after `after`, unless
    /// disarmed first.
    ArmWait { wait: WaitId, after: Duration },
    /// The wait `wait` was answered or forgotten: its timer is not needed.
    DisarmWait { wait: WaitId },
    /// Call [`Core::tick`] for `conn` after `after` (its ping interval).
    ArmTick { conn: ConnId, after: Duration },
    /// The broker closed: `conn` is forgotten, but its socket still
    /// writes `rest` (ending with the going-away notice) before it
    /// closes: a lingering close.
    Linger { conn: ConnId, rest: Vec<u8> },
    /// `conn` read its output down: read its input again (bodies held
    /// back first), as a source that stopped early.
    Resume { conn: ConnId },
    /// `conn` asked for the broker's report under `op`: answer it with
    /// [`Core::answer_report`] (the shell knows the uptime and addresses).
    Report { conn: ConnId, op: u64 },
}

/// The broker's state machine.
pub(super) struct Core {
    config: BrokerConfig,
    pub(super) peers: IdMap<ConnId, Peer>,
    next_conn: ConnId,
    pub(super) registry: Registry,
    pub(super) routes: Routes,
    /// Subscribes waiting for their name to be published.
    pub(super) waiters: Waiters,
    /// Who listens for which signals.
    pub(super) signals: Matches,
    /// Who watches which names (clients, and subscribes waiting).
    pub(super) watches: Watches,
    /// Connections with output to write.
    dirty: Vec<ConnId>,
    flush_requested: bool,
    /// Connections to close once the current input is handled.
    to_close: Vec<(ConnId, CloseReason)>,
    pub(super) effects: Vec<Effect>,
    pub(super) stats: BrokerStats,
    /// Bytes held, for the memory budget.
    pub(super) budget: Budget,
    /// Connections that have not said hello.
    unauthenticated: usize,
    pub(super) counters: Counters,
    /// Connections monitoring the traffic (`monitor.rs`).
    pub(super) monitors: Vec<Monitor>,
    /// The wall clock for taps, in ms since the Unix epoch (kept by the
    /// shell while anyone monitors).
    pub(super) clock_ms: u64,
}

impl Core {
    pub fn new(config: BrokerConfig) -> Core {
        Core {
            config,
            peers: IdMap::default(),
            next_conn: 1,
            registry: Registry::default(),
            routes: Routes::default(),
            waiters: Waiters::default(),
            signals: Matches::default(),
            watches: Watches::default(),
            dirty: Vec::new(),
            flush_requested: false,
            to_close: Vec::new(),
            effects: Vec::new(),
            stats: BrokerStats::default(),
            budget: Budget::default(),
            unauthenticated: 0,
            counters: Counters::default(),
            monitors: Vec::new(),
            clock_ms: 0,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.config.limits
    }

    pub fn limits_mut(&mut self) -> &mut Limits {
        &mut self.config.limits
    }

    /// The broker's policy, if it has one.
    pub(super) fn policy(&self) -> Option<&super::Policy> {
        self.config.policy.as_ref()
    }

    /// New liveness settings, taken by each connection at its next tick.
    pub fn set_ping(&mut self, interval: Duration, max: u32) {
        self.config.limits.ping_interval = interval;
        self.config.limits.ping_max = max;
    }

    pub fn stats(&self) -> BrokerStats {
        BrokerStats {
            connections: self.peers.len(),
            sessions: self.registry.len(),
            pending_calls: self.routes.len(),
            waiting_subscribes: self.waiters.len(),
            memory_used: self.memory_used(),
            signal_matches: self.signals.len(),
            name_watches: self.watches.clients(),
            ..self.stats
        }
    }

    /// A new connection: its number, and a deadline for its hello. None
    /// when over the connection limit: the shell closes it at once.
    pub fn connect(&mut self) -> Option<ConnId> {
        self.connect_from(None)
    }

    /// [`Core::connect`] for a peer whose credentials the socket told
    /// (a Unix socket's `SO_PEERCRED`).
    pub fn connect_from(&mut self, cred: Option<PeerCred>) -> Option<ConnId> {
        let id = self.next_conn_id();
        let limits = &self.config.limits;
        if self.peers.len() >= limits.max_connections
            || self.unauthenticated >= limits.max_unauthenticated
        {
            self.stats.refused_connections += 1;
            return None;
        }
        self.unauthenticated += 1;
        let mut peer = Peer::default();
        peer.caller.connection = id;
        if let Some(cred) = cred {
            peer.caller.uid = Some(cred.uid);
            peer.caller.gid = Some(cred.gid);
            peer.caller.pid = Some(cred.pid);
            peer.groups = cred.groups;
        }
        self.peers.insert(id, peer);
        self.effects.push(Effect::ArmDeadline {
            conn: id,
            after: self.config.limits.handshake_timeout,
        });
        Some(id)
    }

    /// Names connection `id` by what its transport proved before its
    /// hello (a TLS client certificate's subject): its identity, before
    /// any named token's.
    pub fn set_identity(&mut self, id: ConnId, name: String) {
        if let Some(p) = self.peers.get_mut(&id) {
            if !p.handshaken {
                p.caller.identity = Some(name);
            }
        }
    }

    /// A new connection number.
    pub(super) fn next_conn_id(&mut self) -> ConnId {
        let id = self.next_conn;
        self.next_conn += 1;
        id
    }

    /// Whether input from `id` is still wanted (it is open and was not
    /// refused).
    pub fn reads(&self, id: ConnId) -> bool {
        self.peers.get(&id).is_some_and(Peer::reads)
    }

    /// Handles one frame body (without its length prefix) from `id`.
    pub fn receive(&mut self, id: ConnId, body: &[u8]) {
        if !self.reads(id) {
            return;
        }
        match Inbound::parse(body) {
            Ok(inbound) => {
                if !self.monitors.is_empty() {
                    self.tap(id, &inbound, body.len());
                }
                match inbound {
                    Inbound::Routed(frame) => self.handle_routed(id, frame),
                    Inbound::Signal {
                        session,
                        signal,
                        body,
                    } => self.handle_signal(id, session, signal, body),
                    Inbound::Other(frame) => self.handle(id, frame),
                }
            }
            Err(e) => self.refuse(id, CloseReason::Protocol(e.into())),
        }
        self.process_closes();
    }

    /// The input of `id` ended: the peer closed, reading failed, or (an
    /// error of code `protocol`) its framing broke.
    pub fn input_ended(&mut self, id: ConnId, error: Error) {
        if !self.reads(id) {
            return;
        }
        if error.code == ErrorCode::Protocol {
            self.refuse(id, CloseReason::Protocol(error));
        } else {
            self.condemn(id, CloseReason::Ended(error));
        }
        self.process_closes();
    }

    /// The socket of `id` has room again: its output is to be written.
    pub fn writable(&mut self, id: ConnId) {
        self.mark_dirty(id);
    }

    /// Closes `id` for a reason the shell found.
    pub fn close(&mut self, id: ConnId, reason: CloseReason) {
        self.condemn(id, reason);
        self.process_closes();
    }

    /// The broker closes: every handshaken connection is told it is
    /// going away, after what was queued for it already; each is then
    /// forgotten, its socket left to write that out (a lingering close),
    /// and every state forgotten. The notice settles each client's calls
    /// (`broker_gone`), so no per-call answer is sent.
    pub fn shut_down(&mut self, reason: &str) {
        let notice = Frame::GoingAway {
            reason: Error::new(ErrorCode::BrokerGone, reason),
        };
        let ids: Vec<ConnId> = self.peers.keys().copied().collect();
        for conn in ids {
            if self
                .peers
                .get(&conn)
                .is_some_and(|p| p.handshaken && p.reads())
            {
                let _ = self.send(conn, &notice);
            }
        }
        for (conn, mut peer) in self.peers.drain() {
            let rest = peer.outbox.pending().to_vec();
            if peer.condemned || rest.is_empty() {
                self.effects.push(Effect::Close {
                    conn,
                    reason: CloseReason::BrokerClosed,
                });
            } else {
                peer.outbox.consume(rest.len());
                self.effects.push(Effect::Linger { conn, rest });
            }
        }
        self.routes.clear();
        self.drop_all_waiters();
        self.drop_all_matches();
        self.registry = Registry::default();
        self.budget = Budget::default();
        self.unauthenticated = 0;
        self.dirty.clear();
        self.to_close.clear();
        self.flush_requested = false;
    }

    /// Whether output was queued since the last call: the shell is to
    /// call [`Core::write_output`] before the loop sleeps.
    pub fn take_flush_request(&mut self) -> bool {
        std::mem::replace(&mut self.flush_requested, false)
    }

    /// Hands every connection's queued output to `write`, which returns
    /// how many bytes it wrote (fewer when the socket is full; the shell
    /// then reports [`Core::writable`] later) or fails (the connection is
    /// closed). A refused connection closes once its output is written.
    pub fn write_output(&mut self, mut write: impl FnMut(ConnId, &[u8]) -> Result<usize, Error>) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for id in dirty.drain(..) {
            let Some(peer) = self.peers.get_mut(&id) else {
                continue;
            };
            peer.dirty = false;
            if peer.condemned {
                continue;
            }
            let n = match write(id, peer.outbox.pending()) {
                Ok(n) => n,
                Err(e) => {
                    self.condemn(id, CloseReason::WriteFailed(e));
                    continue;
                }
            };
            peer.outbox.consume(n);
            self.budget.output = self.budget.output.saturating_sub(n);
            if peer.read_paused && peer.outbox.queued() <= self.config.limits.output_high_water / 2
            {
                peer.read_paused = false;
                self.effects.push(Effect::Resume { conn: id });
            }
            if peer.outbox.queued() == 0 {
                if let Some(reason) = peer.closing.take() {
                    peer.condemned = true;
                    self.to_close.push((id, reason));
                }
            }
        }
        // Writing marks nothing dirty: the list keeps its room.
        self.dirty = dirty;
        self.process_closes();
        self.trim_after_burst();
    }

    /// Whether the core asked for effects not taken yet.
    pub fn has_effects(&self) -> bool {
        !self.effects.is_empty()
    }

    /// Moves the effects produced so far to the end of `into`.
    pub fn take_effects(&mut self, into: &mut Vec<Effect>) {
        into.append(&mut self.effects);
    }
}
