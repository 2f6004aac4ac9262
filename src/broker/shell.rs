//! The broker's shell: listeners, sockets, their registration with the
//! loop, timers, accepting. It feeds the core (`core.rs`) what the
//! sockets read and carries out what the core asks: writes its output,
//! arms and disarms handshake deadlines, closes connections.
//!
//! Every entry from the loop (a socket ready, a timer, a flush) ends by
//! applying the core's effects, so a connection the core closed loses
//! its socket in the same turn, and by asking for a flush when the core
//! queued output, so a turn's frames to one connection leave in one
//! write.

use super::accept::{accept_failure, AcceptFailure, AcceptRetry};
use super::core::{Core, Effect};
use super::federate::{self, Seen};
use super::peer::CloseReason;
use super::waiters::WaitId;
use super::{BrokerConfig, BrokerStats, ConnId};
use crate::error::{Error, ErrorCode};
use crate::event_loop::{EventLoop, Flush, Readiness, Source, TimerId};
use crate::federation::node::{Federation, Port};
use crate::id_hash::IdMap;
use crate::report::StatsReport;
use crate::transport::{
    linger, load_acceptor, resolve_group, Address, CloseFn, Connection, Listener, ReadOutcome,
    UnixOptions,
};
use crate::DEFAULT_LINGER;
use mio::{Interest, Token};
use std::cell::RefCell;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

/// A running broker's I/O and its core.
pub(super) struct Shell {
    lp: EventLoop,
    core: RefCell<Core>,
    io: RefCell<Io>,
    /// Accepting is paused for lack of descriptors or memory.
    accept_retry: RefCell<AcceptRetry>,
    /// The core's effects being applied (kept for its room).
    effects: RefCell<Vec<Effect>>,
    /// Connections of the closed broker still writing their last output.
    lingering: Rc<std::cell::Cell<usize>>,
    /// TLS handshakes that failed (see [`BrokerStats::tls_handshake_failures`]).
    tls_failures: std::cell::Cell<u64>,
    started: Instant,
    /// The broker's membership in a federation, if it federates.
    fed: RefCell<Option<Rc<Federation>>>,
    /// Client connections not read while federation holds their publish.
    held: RefCell<crate::id_hash::IdSet<ConnId>>,
    me: Weak<Shell>,
}

#[derive(Default)]
struct Io {
    listeners: Vec<(Listener, Token)>,
    sockets: IdMap<ConnId, Socket>,
    /// The timers of subscribes waiting for a name.
    waits: IdMap<WaitId, TimerId>,
}

/// A connection's socket, its deadline (handshake, or a frame in
/// progress), its ping timer and its write deadline (armed while output
/// waits for room in the socket, re-armed on each write that makes
/// progress).
struct Socket {
    conn: Connection,
    /// The peer's address, for reports.
    peer: String,
    deadline: Option<TimerId>,
    tick: Option<TimerId>,
    write_deadline: Option<TimerId>,
}

/// How many frames one read of a connection hands to the core before the
/// loop turns to other sources (it comes back on the next turn): a
/// peer that pipelines many small requests does not hold up the rest.
const BODIES_PER_READ: usize = 256;

struct ListenerSource {
    shell: Weak<Shell>,
    index: usize,
}

struct PeerSource {
    shell: Weak<Shell>,
    id: ConnId,
}

impl Shell {
    /// Binds every address of `config` and starts serving on `lp`.
    /// Fails without side effects if any address cannot be bound.
    pub fn start(lp: &EventLoop, config: BrokerConfig) -> Result<Rc<Shell>, Error> {
        let federation = config.federation.clone();
        if let Some(f) = &federation {
            f.check()?;
        }
        let mut listeners = Vec::new();
        let gid = match &config.socket_group {
            Some(group) => Some(resolve_group(group).map_err(|why| {
                Error::new(ErrorCode::InvalidArgument, format!("socket group: {why}"))
            })?),
            None => None,
        };
        if config.socket_mode > 0o777 {
            return Err(Error::new(
                ErrorCode::InvalidArgument,
                format!(
                    "socket mode {:o} is not a permission mode (at most 0777)",
                    config.socket_mode
                ),
            ));
        }
        let unix = UnixOptions {
            mode: config.socket_mode,
            gid,
        };
        let tls = match &config.tls {
            Some(options) => Some(load_acceptor(options)?),
            None => None,
        };
        for address in &config.listen {
            match Listener::bind_with(address, &unix, tls.as_ref()) {
                Ok(l) => listeners.push(l),
                Err(e) => {
                    listeners.iter_mut().for_each(Listener::unlink);
                    return Err(e);
                }
            }
        }
        for inherited in &config.inherited {
            match Listener::adopt(inherited) {
                Ok(l) => listeners.push(l),
                Err(e) => {
                    listeners.iter_mut().for_each(Listener::unlink);
                    return Err(e);
                }
            }
        }
        let shell = Rc::new_cyclic(|me| Shell {
            lp: lp.clone(),
            core: RefCell::new(Core::new(config)),
            io: RefCell::new(Io::default()),
            accept_retry: RefCell::new(AcceptRetry::default()),
            effects: RefCell::new(Vec::new()),
            lingering: Rc::default(),
            tls_failures: std::cell::Cell::new(0),
            started: Instant::now(),
            fed: RefCell::new(None),
            held: RefCell::default(),
            me: me.clone(),
        });
        for (index, mut listener) in listeners.into_iter().enumerate() {
            let source = Rc::new(ListenerSource {
                shell: Rc::downgrade(&shell),
                index,
            });
            let token = lp
                .register(&mut listener, Interest::READABLE, source)
                .map_err(|e| Error::io("cannot register listener", &e))?;
            shell.io.borrow_mut().listeners.push((listener, token));
        }
        if let Some(f) = federation {
            let port: Weak<dyn Port> = Rc::downgrade(&shell) as Weak<dyn Port>;
            match Federation::start(lp, f, port) {
                Ok(fed) => *shell.fed.borrow_mut() = Some(fed),
                Err(e) => {
                    shell.close();
                    return Err(e);
                }
            }
        }
        Ok(shell)
    }

    pub fn event_loop(&self) -> &EventLoop {
        &self.lp
    }

    pub fn local_addresses(&self) -> Vec<Address> {
        let io = self.io.borrow();
        io.listeners
            .iter()
            .map(|(l, _)| l.local_address())
            .collect()
    }

    pub fn stats(&self) -> BrokerStats {
        let mut stats = BrokerStats {
            tls_handshake_failures: self.tls_failures.get(),
            ..self.core.borrow().stats()
        };
        if let Some(fed) = self.federation() {
            let c = fed.counters();
            stats.remote_sessions = fed.remote_sessions();
            stats.link_resets = c.link_resets;
            stats.peers_declared_dead = c.peers_declared_dead;
            stats.nats_reconnects = c.nats_reconnects;
        }
        stats
    }

    pub fn report(&self) -> StatsReport {
        let io = self.io.borrow();
        let peer = |id| {
            io.sockets
                .get(&id)
                .map_or_else(String::new, |s| s.peer.clone())
        };
        self.core.borrow_mut().report(self.started.elapsed(), peer)
    }

    pub fn set_ping(&self, interval: std::time::Duration, max: u32) {
        self.core.borrow_mut().set_ping(interval, max);
    }

    pub fn set_limit(&self, limit: super::Limit, value: u64) -> Result<(), Error> {
        self.core.borrow_mut().limits_mut().set(limit, value)
    }

    pub fn limit(&self, limit: super::Limit) -> u64 {
        self.core.borrow().limits().get(limit)
    }

    pub fn closing_connections(&self) -> usize {
        self.lingering.get()
    }

    /// Stops listening and closes every connection, telling each client
    /// the broker is going away. Idempotent.
    pub fn close(&self) {
        let fed = self.fed.borrow_mut().take();
        if let Some(fed) = fed {
            fed.close();
        }
        let listeners = std::mem::take(&mut self.io.borrow_mut().listeners);
        if let Some(timer) = self.accept_retry.borrow_mut().timer.take() {
            self.lp.cancel_timer(timer);
        }
        for (mut l, token) in listeners {
            self.lp.deregister(&mut l, token);
            l.unlink();
        }
        self.core
            .borrow_mut()
            .shut_down("the broker is shutting down");
        self.apply_effects();
        let rest: Vec<Socket> = self
            .io
            .borrow_mut()
            .sockets
            .drain()
            .map(|(_, s)| s)
            .collect();
        debug_assert!(rest.is_empty(), "the core knows every socket");
        for socket in rest {
            self.drop_socket(socket);
        }
    }

    /// Accepts every pending connection of listener `index`; false if it
    /// had to stop for lack of resources (the rest wait in the backlog).
    fn accept(&self, index: usize) -> bool {
        loop {
            let accepted = match self.io.borrow().listeners.get(index) {
                Some((listener, _)) => listener.accept(),
                None => return true,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                Err(e) => match accept_failure(&e) {
                    AcceptFailure::Retry => continue,
                    AcceptFailure::Pause => {
                        log::warn!(
                            target: "stagebus::broker",
                            error:% = e;
                            "cannot accept connections for now; accepting paused: {e}"
                        );
                        self.pause_accepting();
                        return false;
                    }
                },
            };
            // Over the connection limit, the stream is dropped: closed.
            let cred = stream.peer_cred();
            let Some(id) = self.core.borrow_mut().connect_from(cred) else {
                log::warn!(
                    target: "stagebus::broker",
                    peer = peer.as_str(), reason = "connection_limit";
                    "connection from {peer} refused: the broker is at its connection limit"
                );
                continue;
            };
            log::debug!(target: "stagebus::broker", conn = id, peer = peer.as_str(); "connection {id} from {peer}");
            let source = Rc::new(PeerSource {
                shell: self.me.clone(),
                id,
            });
            let (max_frame, max_queued, max_hello) = {
                let core = self.core.borrow();
                let limits = core.limits();
                (
                    limits.max_frame,
                    limits.max_queued_bytes,
                    limits.max_hello_frame,
                )
            };
            match Connection::open(stream, &self.lp, source, false, max_frame, max_queued) {
                Ok(mut conn) => {
                    // Until the hello, frames are small.
                    conn.limit_first_frame(max_hello);
                    let socket = Socket {
                        conn,
                        peer,
                        deadline: None,
                        tick: None,
                        write_deadline: None,
                    };
                    self.io.borrow_mut().sockets.insert(id, socket);
                }
                Err(e) => {
                    let e = Error::io("cannot register a connection", &e);
                    self.core
                        .borrow_mut()
                        .close(id, CloseReason::Unregistered(e));
                }
            }
            self.apply_effects();
        }
    }

    /// Arms the retry timer unless it is armed already.
    fn pause_accepting(&self) {
        let mut retry = self.accept_retry.borrow_mut();
        if retry.timer.is_some() {
            return;
        }
        let delay = retry.next_delay();
        let weak = self.me.clone();
        retry.timer = Some(self.lp.add_timer(delay, move |_| {
            if let Some(shell) = weak.upgrade() {
                shell.accept_retry.borrow_mut().timer = None;
                shell.retry_accepting();
            }
        }));
    }

    /// Tries every listener again after accepting was paused; the back-off
    /// starts over once every backlog is drained.
    fn retry_accepting(&self) {
        let count = self.io.borrow().listeners.len();
        // Stop at the first that fails: the others would fail alike.
        if (0..count).all(|index| self.accept(index)) {
            *self.accept_retry.borrow_mut() = AcceptRetry::default();
        }
        self.schedule_flush();
    }

    fn deadline_passed(&self, id: ConnId) {
        if let Some(socket) = self.io.borrow_mut().sockets.get_mut(&id) {
            socket.deadline = None;
        }
        self.core.borrow_mut().deadline_passed(id);
        self.apply_effects();
        self.schedule_flush();
    }

    fn wait_expired(&self, wait: WaitId) {
        self.io.borrow_mut().waits.remove(&wait);
        self.core.borrow_mut().wait_expired(wait);
        self.apply_effects();
        self.schedule_flush();
    }

    fn tick(&self, id: ConnId) {
        if let Some(socket) = self.io.borrow_mut().sockets.get_mut(&id) {
            socket.tick = None;
        }
        self.core.borrow_mut().tick(id);
        self.apply_effects();
        self.schedule_flush();
    }

    fn peer_ready(&self, id: ConnId, readiness: Readiness) {
        let mut claims = false;
        if readiness.readable {
            claims = self.read(id, readiness.hangup);
        }
        if readiness.writable {
            // What TLS holds below the output (a handshake answer) goes
            // first.
            let sent = match self.io.borrow_mut().sockets.get_mut(&id) {
                Some(socket) => socket.conn.send_pending(&self.lp),
                None => Ok(()),
            };
            match sent {
                Ok(()) => self.core.borrow_mut().writable(id),
                Err(e) => self
                    .core
                    .borrow_mut()
                    .close(id, CloseReason::WriteFailed(e)),
            }
        }
        self.apply_effects();
        self.schedule_flush();
        if claims {
            if let Some(fed) = self.federation() {
                fed.check_claims(id);
            }
        }
    }

    /// The federation, if the broker federates.
    pub(super) fn federation(&self) -> Option<Rc<Federation>> {
        self.fed.borrow().clone()
    }

    pub(super) fn core_mut(&self) -> std::cell::RefMut<'_, Core> {
        self.core.borrow_mut()
    }

    pub(super) fn core_ref(&self) -> std::cell::Ref<'_, Core> {
        self.core.borrow()
    }

    /// Carries out the core's effects and asks for a flush.
    pub(super) fn settle(&self) {
        self.apply_effects();
        self.schedule_flush();
    }

    /// Reads `conn` again from the next turn (federation let it go).
    pub(super) fn unhold(&self, conn: ConnId) {
        self.held.borrow_mut().remove(&conn);
    }

    pub(super) fn read_again(&self, conn: ConnId) {
        if let Some(socket) = self.io.borrow().sockets.get(&conn) {
            self.lp.again(socket.conn.token());
        }
    }

    /// Hands what connection `id` sent to the core, frame by frame, as it
    /// is read; true when federation must check the client's claims (it
    /// rescinded).
    fn read(&self, id: ConnId, hangup: bool) -> bool {
        if self.held.borrow().contains(&id) {
            return false;
        }
        let federated = self.fed.borrow().is_some();
        let mut claims = false;
        let mut held = false;
        let mut io = self.io.borrow_mut();
        let Some(socket) = io.sockets.get_mut(&id) else {
            return false;
        };
        let mut core = self.core.borrow_mut();
        if !core.reads(id) {
            return false;
        }
        // Backpressure: a peer with too much output waiting is not read
        // (its requests stay in its socket) until it reads that output;
        // the core then asks for a resume.
        if core.over_high_water(id) {
            return false;
        }
        if core.monitoring() {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            core.set_clock(u64::try_from(now.as_millis()).unwrap_or(u64::MAX));
        }
        let mut completed = 0;
        let mut paused = false;
        // A TLS client's certificate subject, known once its handshake
        // is done: its identity, given before its hello is read.
        let subject = std::cell::RefCell::new(None);
        let handshaking = socket.conn.handshaking();
        let outcome = socket.conn.read_bodies_noting(
            hangup,
            |s| *subject.borrow_mut() = Some(s),
            |body| {
                if let Some(s) = subject.borrow_mut().take() {
                    core.set_identity(id, s);
                }
                completed += 1;
                let seen = if federated {
                    federate::look(self, &mut core, id, body)
                } else {
                    Seen::Core
                };
                match seen {
                    Seen::Core => core.receive(id, body),
                    Seen::CoreThenClaims => {
                        core.receive(id, body);
                        claims = true;
                    }
                    Seen::Held => held = true,
                    Seen::Answered => {}
                }
                paused = core.over_high_water(id);
                Ok(!paused && !held && completed < BODIES_PER_READ)
            },
        );
        if let Some(s) = subject.into_inner() {
            core.set_identity(id, s);
        }
        if held {
            self.held.borrow_mut().insert(id);
        }
        if let Err(e) = socket.conn.after_read(&self.lp) {
            core.close(id, CloseReason::WriteFailed(e));
            return claims;
        }
        let held_back = !paused && completed >= BODIES_PER_READ;
        // Once per read: the liveness mark, the frame deadline (not for
        // whole frames held back) and the input budget.
        let mid_frame = socket.conn.mid_frame() && !paused && !held_back;
        core.read_done(id, completed > 0, mid_frame);
        core.input_buffered(id, socket.conn.buffered());
        // A connection closed or refused by one of its frames is finished
        // with; what its read ended with no longer matters.
        match outcome {
            _ if held_back && core.reads(id) => self.lp.again(socket.conn.token()),
            ReadOutcome::Drained => {}
            ReadOutcome::More if core.reads(id) => self.lp.again(socket.conn.token()),
            ReadOutcome::More => {}
            ReadOutcome::Closed(e) => {
                if handshaking {
                    self.tls_failures.set(self.tls_failures.get() + 1);
                    log::warn!(
                        target: "stagebus::broker",
                        conn = id, peer = socket.peer.as_str(), reason = "tls_handshake";
                        "connection {id} from {} closed: {}", socket.peer, e.message
                    );
                }
                core.input_ended(id, e)
            }
        }
        claims
    }

    /// Carries out what the core asked since the last call: deadlines
    /// armed and disarmed, sockets of closed connections deregistered and
    /// closed. A closed socket freed a descriptor, so a paused accept is
    /// retried at once.
    fn apply_effects(&self) {
        let mut effects = std::mem::take(&mut *self.effects.borrow_mut());
        self.core.borrow_mut().take_effects(&mut effects);
        let mut freed = false;
        let mut reports = Vec::new();
        let mut closed = Vec::new();
        for effect in effects.drain(..) {
            match effect {
                Effect::Report { conn, op } => reports.push((conn, op)),
                Effect::ArmDeadline { conn, after } => {
                    if let Some(socket) = self.io.borrow_mut().sockets.get_mut(&conn) {
                        let weak = self.me.clone();
                        socket.deadline = Some(self.lp.add_timer(after, move |_| {
                            if let Some(shell) = weak.upgrade() {
                                shell.deadline_passed(conn);
                            }
                        }));
                    }
                }
                Effect::DisarmDeadline { conn } => {
                    let timer = self
                        .io
                        .borrow_mut()
                        .sockets
                        .get_mut(&conn)
                        .and_then(|s| s.deadline.take());
                    if let Some(timer) = timer {
                        // Cancelled, so that an embedding host is not
                        // woken for it.
                        self.lp.cancel_timer(timer);
                    }
                }
                Effect::ArmWait { wait, after } => {
                    let weak = self.me.clone();
                    let timer = self.lp.add_timer(after, move |_| {
                        if let Some(shell) = weak.upgrade() {
                            shell.wait_expired(wait);
                        }
                    });
                    self.io.borrow_mut().waits.insert(wait, timer);
                }
                Effect::DisarmWait { wait } => {
                    let timer = self.io.borrow_mut().waits.remove(&wait);
                    if let Some(timer) = timer {
                        self.lp.cancel_timer(timer);
                    }
                }
                Effect::ArmTick { conn, after } => {
                    if let Some(socket) = self.io.borrow_mut().sockets.get_mut(&conn) {
                        let weak = self.me.clone();
                        socket.tick = Some(self.lp.add_timer(after, move |_| {
                            if let Some(shell) = weak.upgrade() {
                                shell.tick(conn);
                            }
                        }));
                    }
                }
                Effect::Linger { conn, rest } => {
                    let socket = self.io.borrow_mut().sockets.remove(&conn);
                    if let Some(mut socket) = socket {
                        self.cancel_timers(&mut socket);
                        let queued = socket.conn.send_with(|out, _| {
                            out.extend_from_slice(&rest);
                            Ok(())
                        });
                        if queued.is_err() {
                            socket.conn.close(&self.lp);
                        } else {
                            let count = self.lingering.clone();
                            count.set(count.get() + 1);
                            let done: CloseFn = Box::new(move |_| count.set(count.get() - 1));
                            linger(socket.conn, &self.lp, DEFAULT_LINGER, Some(done));
                        }
                        freed = true;
                    }
                }
                Effect::Resume { conn } => {
                    if let Some(socket) = self.io.borrow().sockets.get(&conn) {
                        self.lp.again(socket.conn.token());
                    }
                }
                Effect::Close { conn, reason } => {
                    reason.log(conn);
                    closed.push(conn);
                    let socket = self.io.borrow_mut().sockets.remove(&conn);
                    if let Some(socket) = socket {
                        self.drop_socket(socket);
                        freed = true;
                    }
                }
            }
        }
        *self.effects.borrow_mut() = effects;
        if !closed.is_empty() {
            if let Some(fed) = self.federation() {
                for conn in closed {
                    self.held.borrow_mut().remove(&conn);
                    if fed.is_link(conn) {
                        fed.link_closed(conn);
                    } else {
                        fed.check_claims(conn);
                    }
                }
            }
        }
        if !reports.is_empty() {
            for (conn, op) in reports {
                let report = self.report();
                self.core.borrow_mut().answer_report(conn, op, report);
            }
            // Answering may have closed a connection (its queue full).
            self.apply_effects();
        }
        // Descriptors came free: the backlog need not wait for the timer.
        if freed {
            let paused = self.accept_retry.borrow_mut().timer.take();
            if let Some(timer) = paused {
                self.lp.cancel_timer(timer);
                self.retry_accepting();
            }
        }
    }

    fn drop_socket(&self, mut socket: Socket) {
        self.cancel_timers(&mut socket);
        socket.conn.close(&self.lp);
    }

    fn cancel_timers(&self, socket: &mut Socket) {
        for timer in [
            socket.deadline.take(),
            socket.tick.take(),
            socket.write_deadline.take(),
        ]
        .into_iter()
        .flatten()
        {
            self.lp.cancel_timer(timer);
        }
    }

    fn schedule_flush(&self) {
        if self.core.borrow_mut().take_flush_request() {
            let me: Weak<dyn Flush> = self.me.clone();
            self.lp.want_flush(me);
        }
    }
    /// Output of `id` made no progress within the write timeout: it is
    /// closed as a peer that does not read.
    fn write_stalled(&self, id: ConnId) {
        if let Some(socket) = self.io.borrow_mut().sockets.get_mut(&id) {
            socket.write_deadline = None;
        }
        let timeout = self.core.borrow().limits().write_timeout;
        let e = Error::new(
            ErrorCode::LimitExceeded,
            format!(
                "no output could be written for {} ms: the peer does not read",
                timeout.as_millis()
            ),
        );
        self.core
            .borrow_mut()
            .close(id, CloseReason::SlowConsumer(e));
        self.apply_effects();
        self.schedule_flush();
    }

    /// After a write to `socket` (of `id`) that wrote `n` of `len`
    /// bytes: the write deadline is disarmed when all left, armed when
    /// bytes stay behind, and re-armed when some of them left.
    fn write_deadline(
        &self,
        id: ConnId,
        socket: &mut Socket,
        n: usize,
        len: usize,
        after: Duration,
    ) {
        if n == len || n > 0 {
            if let Some(timer) = socket.write_deadline.take() {
                self.lp.cancel_timer(timer);
            }
        }
        if n < len && socket.write_deadline.is_none() {
            let weak = self.me.clone();
            socket.write_deadline = Some(self.lp.add_timer(after, move |_| {
                if let Some(shell) = weak.upgrade() {
                    shell.write_stalled(id);
                }
            }));
        }
    }
}

impl Flush for Shell {
    fn flush(&self, lp: &EventLoop) {
        let fed = self.federation();
        {
            let timeout = self.core.borrow().limits().write_timeout;
            let mut io = self.io.borrow_mut();
            self.core
                .borrow_mut()
                .write_output(|id, bytes| match io.sockets.get_mut(&id) {
                    Some(socket) => {
                        let n = socket.conn.write_from(lp, bytes)?;
                        self.write_deadline(id, socket, n, bytes.len(), timeout);
                        Ok(n)
                    }
                    None => match &fed {
                        Some(f) if f.is_link(id) => {
                            f.link_output(id, bytes);
                            Ok(bytes.len())
                        }
                        _ => Err(Error::new(
                            ErrorCode::BrokerGone,
                            "the connection has no socket",
                        )),
                    },
                });
        }
        if let Some(f) = fed {
            f.flush();
        }
        self.apply_effects();
        self.schedule_flush();
    }
}

impl Source for ListenerSource {
    fn ready(&self, _lp: &EventLoop, _readiness: Readiness) {
        if let Some(shell) = self.shell.upgrade() {
            shell.accept(self.index);
        }
    }
}

impl Source for PeerSource {
    fn ready(&self, _lp: &EventLoop, readiness: Readiness) {
        if let Some(shell) = self.shell.upgrade() {
            shell.peer_ready(self.id, readiness);
        }
    }
}
