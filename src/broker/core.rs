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

use super::budget::Budget;
use super::handshake::{check_hello, expected_hello, Tokens};
use super::monitor::Monitor;
use super::peer::{CloseReason, Full, Peer};
use super::policy::Action;
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
use crate::wire::{
    encode_caller, encode_frame, Frame, Inbound, NameMode, Reply, Routed, PROTOCOL_VERSION,
};
use std::rc::Rc;
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

    /// Moves the effects produced so far to the end of `into`.
    pub fn take_effects(&mut self, into: &mut Vec<Effect>) {
        into.append(&mut self.effects);
    }

    fn handle(&mut self, id: ConnId, frame: Frame) {
        let handshaken = self.peers.get(&id).is_some_and(|p| p.handshaken);
        if !handshaken {
            return self.handshake(id, frame);
        }
        match frame {
            Frame::Publish {
                id: op,
                session,
                methods,
            } => self.publish_frame(id, op, &session, methods, NameMode::Exclusive),
            Frame::PublishAs {
                id: op,
                session,
                methods,
                mode,
            } => self.publish_frame(id, op, &session, methods, mode),
            Frame::Rescind { id: op, session } => {
                let result = self.rescind(id, &session);
                self.reply(id, op, result.map(|()| Reply::Done));
            }
            Frame::Listing { id: op } => {
                // Only the sessions the policy lets this peer see.
                let result = self.admit("a listing").map(|()| {
                    let mut list = self.registry.listing();
                    list.retain(|s| self.may_see(id, &s.name));
                    Reply::Sessions(list)
                });
                self.reply(id, op, result);
            }
            Frame::Stats { id: op } => match self.check_access(id, Action::Stats, "", "") {
                Ok(()) => self.effects.push(Effect::Report { conn: id, op }),
                Err(e) => self.reply(id, op, Err(e)),
            },
            Frame::Monitor {
                id: op,
                session,
                payload,
            } => {
                let name = session.as_deref().unwrap_or("*");
                let result = self.check_access(id, Action::Monitor, name, "");
                if result.is_ok() {
                    self.start_monitor(id, session, payload);
                }
                self.reply(id, op, result.map(|()| Reply::Done));
            }
            Frame::Subscribe { id: op, session } => {
                let result = self
                    .admit("a subscribe")
                    .and_then(|()| self.subscribe(id, &session));
                self.reply(id, op, result.map(Reply::Methods));
            }
            Frame::SubscribeWait {
                id: op,
                session,
                wait_ms,
            } => match self.admit("a subscribe") {
                Ok(()) => self.subscribe_waiting(id, op, &session, Duration::from_millis(wait_ms)),
                Err(e) => self.reply(id, op, Err(e)),
            },
            Frame::Unsubscribe { id: op, session } => {
                let result = self.unsubscribe(id, &session);
                self.reply(id, op, result.map(|()| Reply::Done));
            }
            Frame::AddMatch {
                id: op,
                session,
                signal,
            } => {
                let result = self
                    .check_access(id, Action::Listen, &session, &signal)
                    .and_then(|()| self.add_match(id, &session, &signal));
                self.reply(id, op, result.map(|()| Reply::Done));
            }
            Frame::RemoveMatch {
                id: op,
                session,
                signal,
            } => {
                let result = self.remove_match(id, &session, &signal);
                self.reply(id, op, result.map(|()| Reply::Done));
            }
            Frame::Watch { id: op, pattern } => {
                match self.check_access(id, Action::Watch, &pattern, "") {
                    Ok(()) => self.watch(id, op, &pattern),
                    Err(e) => self.reply(id, op, Err(e)),
                }
            }
            Frame::Unwatch { id: op, watch } => {
                let result = self.unwatch(id, watch);
                self.reply(id, op, result.map(|()| Reply::Done));
            }
            Frame::Deliver { .. }
            | Frame::Post { .. }
            | Frame::Signal { .. }
            | Frame::Emit { .. }
            | Frame::Recall { .. }
            | Frame::Result { .. } => {
                unreachable!("Inbound::parse hands these kinds over as routed frames")
            }
            Frame::Cancel { id: call } => self.cancel(id, call),
            Frame::Ping => {
                let _ = self.send(id, &Frame::Pong);
            }
            // Being heard from is all a pong says; the read noted it.
            Frame::Pong => {}
            Frame::Custom { kind, id: op, .. } => {
                let e = Error::new(
                    ErrorCode::Protocol,
                    format!("Unknown message type '{kind}'"),
                );
                self.reply(id, op, Err(e));
            }
            other @ (Frame::Hello { .. }
            | Frame::Greeting { .. }
            | Frame::DeliverFrom { .. }
            | Frame::Welcome { .. }
            | Frame::Refused { .. }
            | Frame::SessionGone { .. }
            | Frame::NameChanged { .. }
            | Frame::GoingAway { .. }
            | Frame::Tap(_)) => {
                let e = Error::new(
                    ErrorCode::Protocol,
                    format!("a client may not send '{}' here", other.kind_name()),
                );
                self.refuse(id, CloseReason::Protocol(e));
            }
        }
    }

    fn handshake(&mut self, id: ConnId, frame: Frame) {
        let tokens = Tokens {
            shared: self.config.token.as_deref(),
            named: &self.config.named_tokens,
        };
        let hello = match check_hello(&frame, tokens) {
            Ok(hello) => hello,
            Err(reason) => return self.refuse(id, reason),
        };
        let max_name = self.config.limits.max_name;
        if hello
            .client_name
            .as_ref()
            .is_some_and(|n| n.len() > max_name)
        {
            let e = Error::new(
                ErrorCode::LimitExceeded,
                format!("the client name is longer than {max_name} bytes"),
            );
            return self.refuse(id, CloseReason::HelloRefused(e));
        }
        if let Some(p) = self.peers.get_mut(&id) {
            // A TLS certificate's subject, given before, comes first.
            p.caller.identity = p.caller.identity.take().or(hello.identity);
            p.caller.client_name = hello.client_name;
            p.caller_bytes = Rc::from(encode_caller(&p.caller));
            p.greeted = hello.greeted;
            p.handshaken = true;
            self.unauthenticated = self.unauthenticated.saturating_sub(1);
            self.effects.push(Effect::DisarmDeadline { conn: id });
            let interval = self.config.limits.ping_interval;
            if !interval.is_zero() {
                self.effects.push(Effect::ArmTick {
                    conn: id,
                    after: interval,
                });
            }
        }
        let _ = self.send(
            id,
            &Frame::Welcome {
                version: PROTOCOL_VERSION,
                connection_id: id,
            },
        );
    }

    /// Whether `id` said hello; if not, it is refused for sending `kind`.
    pub(super) fn check_handshaken(&mut self, id: ConnId, kind: &str) -> bool {
        if self.peers.get(&id).is_some_and(|p| p.handshaken) {
            return true;
        }
        self.refuse(id, CloseReason::Protocol(expected_hello(kind)));
        false
    }

    /// Counts a close decided for `reason`, once per connection.
    fn count(&mut self, reason: &CloseReason) {
        match reason {
            CloseReason::Protocol(_) => self.stats.protocol_errors += 1,
            CloseReason::SlowConsumer(_) => {
                self.stats.slow_consumers += 1;
                self.stats.limits_exceeded += 1;
            }
            CloseReason::HelloRefused(_) => self.stats.refused_connections += 1,
            _ => {}
        }
    }

    /// Tells `id` why it is refused, then closes it once that is written;
    /// its input is no longer read.
    pub(super) fn refuse(&mut self, id: ConnId, reason: CloseReason) {
        self.count(&reason);
        if let Some(error) = reason.refusal() {
            let _ = self.send(
                id,
                &Frame::Refused {
                    error: error.clone(),
                },
            );
        }
        if let Some(peer) = self.peers.get_mut(&id) {
            peer.closing = Some(reason);
        }
        self.mark_dirty(id);
    }

    /// Closes `id` once the current input is handled, without a word.
    pub(super) fn condemn(&mut self, id: ConnId, reason: CloseReason) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        if peer.condemned {
            return;
        }
        peer.condemned = true;
        self.count(&reason);
        self.to_close.push((id, reason));
    }

    pub(super) fn process_closes(&mut self) {
        while let Some((id, reason)) = self.to_close.pop() {
            self.close_one(id, reason);
        }
    }

    /// Forgets a connection and settles everything it was part of: its
    /// sessions' subscribers are told, its callers answered
    /// `publisher_gone`, its calls cancelled at their publishers.
    fn close_one(&mut self, id: ConnId, reason: CloseReason) {
        let Some(peer) = self.peers.remove(&id) else {
            return;
        };
        self.end_monitor(id);
        if !peer.handshaken {
            self.unauthenticated = self.unauthenticated.saturating_sub(1);
        }
        Budget::adjust(&mut self.budget.input, peer.input, 0);
        Budget::adjust(&mut self.budget.output, peer.outbox.queued(), 0);
        Budget::adjust(&mut self.budget.registry, peer.registry, 0);
        Budget::adjust(&mut self.budget.listing, peer.listing, 0);
        // Its calls end first, so that a queue's hand-over finds none.
        let ended = self.routes.end_connection(id);
        for name in peer.published {
            if let Some(left) = self.registry.leave(&name, id) {
                let reason = Error::new(
                    ErrorCode::PublisherGone,
                    format!("the publisher of '{name}' disconnected"),
                );
                self.publisher_left(&name, id, left, reason);
            }
        }
        for r in ended.served {
            let e = Error::new(
                ErrorCode::PublisherGone,
                format!(
                    "the publisher of '{}' disconnected before answering",
                    r.session
                ),
            );
            self.reply(r.caller, r.caller_id, Err(e));
        }
        for (route, r) in ended.called {
            let _ = self.send(r.publisher, &Frame::Cancel { id: route });
        }
        for name in peer.subscribed {
            if let Some(s) = self.registry.get_mut(&name) {
                s.subscribers.remove(&id);
            }
        }
        self.drop_waiters(id);
        self.drop_matches(id);
        self.drop_watches(id);
        self.effects.push(Effect::Close { conn: id, reason });
    }

    fn mark_dirty(&mut self, id: ConnId) {
        if let Some(peer) = self.peers.get_mut(&id) {
            if !peer.dirty {
                peer.dirty = true;
                self.dirty.push(id);
                self.flush_requested = true;
            }
        }
    }

    /// Queues a frame for `to`. A peer whose queue is over its limit does
    /// not read: it is cut off. A frame too large to send (a listing over
    /// `max_frame`, or a forwarded frame that grew with the broker's own
    /// ids) is returned as an error, for the caller to report to whoever
    /// asked for it: the receiver did nothing wrong.
    pub(super) fn send(&mut self, to: ConnId, frame: &Frame) -> Result<(), Error> {
        self.send_with(to, |out, max_frame| encode_frame(frame, out, max_frame))
    }

    /// Forwards a routed frame to `to` under the id `to` knows it by, with
    /// the errors of [`Core::send`].
    pub(super) fn forward(&mut self, to: ConnId, frame: &Routed<'_>, id: u64) -> Result<(), Error> {
        self.send_with(to, |out, max_frame| {
            frame.encode_with_id(id, out, max_frame)
        })
    }

    /// Queues bytes framed already (a signal's, the same for every
    /// listener) for `to`; whether they were queued (not when `to` is
    /// gone, condemned, or cut off now for not reading).
    pub(super) fn send_bytes(&mut self, to: ConnId, framed: &[u8]) -> bool {
        let live = self.peers.get(&to).is_some_and(|p| !p.condemned);
        let sent = self.send_with(to, |out, _| {
            out.extend_from_slice(framed);
            Ok(())
        });
        live && sent.is_ok() && self.peers.get(&to).is_some_and(|p| !p.condemned)
    }

    /// Forwards the deliver `frame` of `caller` to the publisher `to` as
    /// route `id`: stamped with the caller's identity if the publisher
    /// reads it, as a plain deliver if not.
    pub(super) fn forward_deliver(
        &mut self,
        caller: ConnId,
        to: ConnId,
        frame: &Routed<'_>,
        id: u64,
    ) -> Result<(), Error> {
        if !self.peers.get(&to).is_some_and(|p| p.greeted) {
            return self.forward(to, frame, id);
        }
        let stamp = self.peers.get(&caller).map(|p| p.caller_bytes.clone());
        let Some(stamp) = stamp else {
            return self.forward(to, frame, id);
        };
        self.send_with(to, |out, max_frame| {
            frame.encode_deliver_from(id, &stamp, out, max_frame)
        })
    }

    fn send_with(
        &mut self,
        to: ConnId,
        encode: impl FnOnce(&mut Vec<u8>, usize) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let Some(peer) = self.peers.get_mut(&to) else {
            return Ok(());
        };
        if peer.condemned {
            return Ok(());
        }
        let limits = &self.config.limits;
        let before = peer.outbox.queued();
        match peer
            .outbox
            .append(limits.max_frame, limits.max_queued_bytes, encode)
        {
            Ok(()) => {
                Budget::adjust(&mut self.budget.output, before, peer.outbox.queued());
                if !peer.dirty {
                    peer.dirty = true;
                    self.dirty.push(to);
                    self.flush_requested = true;
                }
                Ok(())
            }
            Err(Full::Queue(e)) => {
                self.condemn(to, CloseReason::SlowConsumer(e));
                Ok(())
            }
            Err(Full::Frame(e)) => Err(e),
        }
    }

    /// Answers `id` on `to`; an answer too large to send becomes that
    /// error.
    pub(super) fn reply(&mut self, to: ConnId, id: u64, outcome: Result<Reply, Error>) {
        if let Err(e) = &outcome {
            self.counters.errors.add(e.code);
            if e.code == ErrorCode::LimitExceeded {
                self.stats.limits_exceeded += 1;
            }
        }
        if let Err(e) = self.send(to, &Frame::Result { id, outcome }) {
            let _ = self.send(
                to,
                &Frame::Result {
                    id,
                    outcome: Err(e),
                },
            );
        }
    }
}
