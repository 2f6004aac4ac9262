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
//!
//! The shell's paths live in submodules: `accepting` (new connections,
//! paused and retried), `read` (input to the core), `effects` (the core's
//! decisions carried out) and `write` (output and its deadline).

mod accepting;
mod effects;
mod read;
mod write;

use super::accept::AcceptRetry;
use super::core::{Core, Effect};
use super::peer::CloseReason;
use super::waiters::WaitId;
use super::{BrokerConfig, BrokerStats, ConnId};
use crate::error::{Error, ErrorCode};
use crate::event_loop::{EventLoop, Flush, Readiness, Source, TimerId};
use crate::federation::node::{Federation, Port};
use crate::id_hash::IdMap;
use crate::report::StatsReport;
use crate::transport::{load_acceptor, resolve_group, Address, Connection, Listener, UnixOptions};
use mio::{Interest, Token};
use std::cell::RefCell;
use std::rc::{Rc, Weak};
use std::time::Instant;

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
        let core = self.core.borrow().stats();
        self.with_shell_counters(core)
    }

    /// `stats` with what the shell counts and the core cannot know (TLS
    /// handshakes, federation): one place, so every report has them.
    fn with_shell_counters(&self, mut stats: BrokerStats) -> BrokerStats {
        stats.tls_handshake_failures = self.tls_failures.get();
        if let Some(fed) = self.federation() {
            let c = fed.counters();
            stats.remote_sessions = fed.remote_sessions();
            stats.link_resets = c.link_resets;
            stats.peers_declared_dead = c.peers_declared_dead;
            stats.peers_swept = c.peers_swept;
            stats.nats_reconnects = c.nats_reconnects;
            stats.incarnations = c.incarnations;
            stats.federation_limits_exceeded = c.limits_exceeded;
        }
        stats
    }

    pub fn report(&self) -> StatsReport {
        let mut report = {
            let io = self.io.borrow();
            let peer = |id| {
                io.sockets
                    .get(&id)
                    .map_or_else(String::new, |s| s.peer.clone())
            };
            self.core.borrow_mut().report(self.started.elapsed(), peer)
        };
        report.totals = self.with_shell_counters(report.totals);
        report
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

    fn schedule_flush(&self) {
        if self.core.borrow_mut().take_flush_request() {
            let me: Weak<dyn Flush> = self.me.clone();
            self.lp.want_flush(me);
        }
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
