//! The broker: listens, keeps the published sessions, routes calls.
//!
//! It re-creates POEx::ProxySession's server with the port decisions of
//! DESIGN.md: it sees disconnects (a gone publisher's sessions are
//! removed, its pending deliveries answered `publisher_gone` and its
//! subscribers told; a gone caller's deliveries are cancelled at the
//! publisher); routing ids are assigned by the broker, so two callers'
//! ids never collide; only the publisher may rescind; a deliver naming an
//! unknown method fails with `no_such_method`.
//!
//! Every lookup is a hash lookup: sessions by name, routes by route id,
//! a caller's calls by its own id. A disconnect costs what that
//! connection held, never a scan of everything.

mod peer;
mod registry;

use crate::error::{Error, ErrorCode};
use crate::event_loop::{EventLoop, Flush, Readiness, Source, TimerId};
use crate::transport::{Address, Connection, Listener};
use crate::wire::DEFAULT_MAX_FRAME;
use mio::Interest;
use peer::Core;
use std::cell::RefCell;
use std::fmt;
use std::rc::{Rc, Weak};
use std::time::Duration;

/// The broker's number for a connection.
pub(crate) type ConnId = u64;

/// Limits the broker enforces per connection. Going over one is an error
/// to whoever went over (or, for a peer that does not read, a disconnect);
/// never a crash or a silent drop.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest frame body accepted or sent, in bytes (default 16 MiB).
    pub max_frame: usize,
    /// Longest session or method name, in bytes (default 256).
    pub max_name: usize,
    /// Most methods in one published session (default 4096).
    pub max_methods: usize,
    /// Most sessions one connection may publish (default 4096).
    pub max_sessions_per_connection: usize,
    /// Most calls one connection may have waiting for a result
    /// (default 262144).
    pub max_pending_per_connection: usize,
    /// Most bytes queued for one connection before it is disconnected as
    /// a peer that does not read (default 64 MiB).
    pub max_queued_bytes: usize,
    /// Most connections at once; more are closed on accept (default 65536).
    ///
    /// Each connection is a file descriptor, so this should stay below
    /// the process's open-file limit (the CLI derives it from that
    /// limit). If descriptors run out all the same, further connections
    /// wait in the kernel's backlog and are accepted as descriptors come
    /// free.
    pub max_connections: usize,
    /// How long a new connection may take to say hello (default 10 s).
    pub handshake_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame: DEFAULT_MAX_FRAME,
            max_name: 256,
            max_methods: 4096,
            max_sessions_per_connection: 4096,
            max_pending_per_connection: 1 << 18,
            max_queued_bytes: 64 << 20,
            max_connections: 1 << 16,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// How to run a broker.
#[derive(Debug, Clone, Default)]
pub struct BrokerConfig {
    /// Where to listen (TCP and/or Unix). At least one.
    ///
    /// On a Unix path the broker holds an exclusive lock on `PATH.lock`
    /// while it listens, so a second broker on the path fails with an
    /// error naming it; an existing socket is replaced only when a
    /// connect to it is refused (nobody listens: left by a broker that
    /// died); at close the socket file is removed only if it is still
    /// the one this broker bound.
    pub listen: Vec<Address>,
    /// A shared secret clients must present in their hello.
    pub token: Option<String>,
    /// Per-connection limits.
    pub limits: Limits,
}

/// Counters, for tests, benchmarks and operators.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BrokerStats {
    /// Open connections (handshaken or not).
    pub connections: usize,
    /// Published sessions.
    pub sessions: usize,
    /// Deliveries waiting for their result.
    pub pending_calls: usize,
    /// Results, emits and recalls that arrived for no live call (answered
    /// after a cancel, or forged) and were dropped.
    pub dropped_stray: u64,
    /// Connections closed for breaking the protocol.
    pub protocol_errors: u64,
    /// Connections closed for not reading their output.
    pub slow_consumers: u64,
}

/// A running broker. It lives on its loop until [`Broker::close`] or until
/// the last handle is dropped.
pub struct Broker {
    shared: Rc<Shared>,
}

impl fmt::Debug for Broker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Broker")
            .field("addresses", &self.local_addresses())
            .field("stats", &self.stats())
            .finish()
    }
}

pub(crate) struct Shared {
    lp: EventLoop,
    core: RefCell<Core>,
    me: Weak<Shared>,
    /// Accepting is paused for lack of descriptors or memory.
    accept_retry: RefCell<AcceptRetry>,
}

/// When accepting failed for lack of resources (EMFILE, ENFILE, ENOBUFS,
/// ENOMEM), the connections stay in the kernel's backlog, and the
/// listener, being edge-triggered, would not report them again until yet
/// another connection arrives. So accepting is retried: at once when one
/// of the broker's own connections closes (a descriptor came free), and
/// from a timer with back-off for descriptors freed elsewhere in the
/// process or system.
///
/// No reserve descriptor is kept to accept-and-close the excess (as
/// libev and nginx may): waiting clients are served, in order, as soon as
/// descriptors come free, instead of being dropped; the kernel bounds the
/// backlog, and the connection limit ([`Limits::max_connections`], which
/// the CLI derives from its descriptor limit) closes excess connections
/// before descriptors run out.
#[derive(Default)]
struct AcceptRetry {
    /// Armed while paused.
    timer: Option<TimerId>,
    /// The next timer's delay.
    delay: Duration,
}

/// The first retry's delay, doubled on each failed retry up to
/// [`ACCEPT_RETRY_MAX`].
const ACCEPT_RETRY_FIRST: Duration = Duration::from_millis(10);
const ACCEPT_RETRY_MAX: Duration = Duration::from_secs(1);

struct ListenerSource {
    shared: Weak<Shared>,
    index: usize,
}

struct PeerSource {
    shared: Weak<Shared>,
    id: ConnId,
}

impl Broker {
    /// Binds every address of `config` and starts serving on `lp`.
    ///
    /// Fails without side effects if any address cannot be bound.
    pub fn new(lp: &EventLoop, config: BrokerConfig) -> Result<Broker, Error> {
        if config.listen.is_empty() {
            return Err(Error::new(
                ErrorCode::InvalidArgument,
                "a broker needs at least one address to listen on",
            ));
        }
        let mut listeners = Vec::new();
        for address in &config.listen {
            match Listener::bind(address) {
                Ok(l) => listeners.push(l),
                Err(e) => {
                    listeners.iter_mut().for_each(Listener::unlink);
                    return Err(e);
                }
            }
        }
        let shared = Rc::new_cyclic(|me| Shared {
            lp: lp.clone(),
            core: RefCell::new(Core::new(config)),
            me: me.clone(),
            accept_retry: RefCell::new(AcceptRetry::default()),
        });
        for (index, mut listener) in listeners.into_iter().enumerate() {
            let source = Rc::new(ListenerSource {
                shared: Rc::downgrade(&shared),
                index,
            });
            let token = lp
                .register(&mut listener, Interest::READABLE, source)
                .map_err(|e| Error::io("cannot register listener", &e))?;
            shared.core.borrow_mut().add_listener(listener, token);
        }
        Ok(Broker { shared })
    }

    /// The loop the broker serves on.
    pub fn event_loop(&self) -> &EventLoop {
        &self.shared.lp
    }

    /// The addresses listened on, with kernel-chosen ports filled in.
    pub fn local_addresses(&self) -> Vec<Address> {
        self.shared.core.borrow().local_addresses()
    }

    /// Current counters.
    pub fn stats(&self) -> BrokerStats {
        self.shared.core.borrow().stats()
    }

    /// Stops listening and closes every connection (publishers' callers
    /// see `broker_gone`). Idempotent.
    pub fn close(&self) {
        let (listeners, peers) = self.shared.core.borrow_mut().take_all();
        if let Some(timer) = self.shared.accept_retry.borrow_mut().timer.take() {
            self.shared.lp.cancel_timer(timer);
        }
        for (mut l, token) in listeners {
            self.shared.lp.deregister(&mut l, token);
            l.unlink();
        }
        for conn in peers {
            conn.close(&self.shared.lp);
        }
        self.shared.finish_closes();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.close();
    }
}

impl Shared {
    /// Accepts every pending connection of listener `index`; false if it
    /// had to stop for lack of resources (the rest wait in the backlog).
    fn accept(&self, index: usize) -> bool {
        loop {
            let accepted = self.core.borrow().accept(index);
            let stream = match accepted {
                None => return true,
                Some(Ok(s)) => s,
                Some(Err(e)) => match accept_failure(&e) {
                    AcceptFailure::Retry => continue,
                    AcceptFailure::Pause => {
                        self.pause_accepting();
                        return false;
                    }
                },
            };
            let id = self.core.borrow_mut().next_conn_id();
            let source = Rc::new(PeerSource {
                shared: self.me.clone(),
                id,
            });
            let (max_frame, max_queued) = {
                let limits = &self.core.borrow().config.limits;
                (limits.max_frame, limits.max_queued_bytes)
            };
            let Ok(conn) = Connection::open(stream, &self.lp, source, false, max_frame, max_queued)
            else {
                continue;
            };
            if !self.core.borrow_mut().add_peer(id, conn) {
                // Over the connection limit: closed at once.
                if let Some(conn) = self.core.borrow_mut().remove_peer_io(id) {
                    conn.close(&self.lp);
                }
                continue;
            }
            let timeout = self.core.borrow().config.limits.handshake_timeout;
            let weak = self.me.clone();
            let timer = self.lp.add_timer(timeout, move |_| {
                if let Some(shared) = weak.upgrade() {
                    shared.handshake_expired(id);
                }
            });
            self.core.borrow_mut().set_handshake_timer(id, timer);
        }
    }

    /// Arms the retry timer unless it is armed already.
    fn pause_accepting(&self) {
        let mut retry = self.accept_retry.borrow_mut();
        if retry.timer.is_some() {
            return;
        }
        let delay = retry.delay.max(ACCEPT_RETRY_FIRST);
        retry.delay = (delay * 2).min(ACCEPT_RETRY_MAX);
        let weak = self.me.clone();
        retry.timer = Some(self.lp.add_timer(delay, move |_| {
            if let Some(shared) = weak.upgrade() {
                shared.accept_retry.borrow_mut().timer = None;
                shared.retry_accepting();
            }
        }));
    }

    /// Tries every listener again after accepting was paused; the back-off
    /// starts over once every backlog is drained.
    fn retry_accepting(&self) {
        let count = self.core.borrow().listener_count();
        // Stop at the first that fails: the others would fail alike.
        if (0..count).all(|index| self.accept(index)) {
            *self.accept_retry.borrow_mut() = AcceptRetry::default();
        }
        self.schedule_flush();
    }

    fn handshake_expired(&self, id: ConnId) {
        let expired = self.core.borrow().is_unhandshaken(id);
        if expired {
            self.core.borrow_mut().close_peer(id, None);
            self.finish_closes();
        }
    }

    fn peer_ready(&self, id: ConnId, readiness: Readiness) {
        let more = {
            let mut core = self.core.borrow_mut();
            let more = if readiness.readable {
                core.read_peer(id, readiness.hangup)
            } else {
                false
            };
            if readiness.writable {
                core.mark_dirty(id);
            }
            more
        };
        if more {
            if let Some(token) = self.core.borrow().token_of(id) {
                self.lp.again(token);
            }
        }
        self.finish_closes();
        self.schedule_flush();
    }

    /// Deregisters the sockets of connections closed during this turn,
    /// and cancels handshake timers that are no longer needed (so that an
    /// embedding host is not woken for them).
    fn finish_closes(&self) {
        let closed = self.core.borrow_mut().take_closed();
        let freed = !closed.is_empty();
        for conn in closed {
            conn.close(&self.lp);
        }
        let spent = self.core.borrow_mut().take_spent_timers();
        for timer in spent {
            self.lp.cancel_timer(timer);
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

    fn schedule_flush(&self) {
        if self.core.borrow_mut().take_flush_request() {
            let me: Weak<dyn Flush> = self.me.clone();
            self.lp.want_flush(me);
        }
    }
}

/// What to do after a failed `accept`.
enum AcceptFailure {
    /// The failure belonged to that one connection (or to the call):
    /// go on with the next.
    Retry,
    /// Out of descriptors or memory, or an unexpected error: stop, and
    /// try again later.
    Pause,
}

fn accept_failure(e: &std::io::Error) -> AcceptFailure {
    // Linux reports a pending connection's network error from accept
    // itself (accept(2), "Error handling"); the connection is gone and
    // the next one may be fine.
    match e.raw_os_error() {
        Some(
            libc::EINTR
            | libc::ECONNABORTED
            | libc::EPROTO
            | libc::EPERM
            | libc::ENETDOWN
            | libc::ENOPROTOOPT
            | libc::EHOSTDOWN
            | libc::EHOSTUNREACH
            | libc::EOPNOTSUPP
            | libc::ENETUNREACH,
        ) => AcceptFailure::Retry,
        #[cfg(any(target_os = "linux", target_os = "android"))]
        Some(libc::ENONET) => AcceptFailure::Retry,
        _ => AcceptFailure::Pause,
    }
}

impl Flush for Shared {
    fn flush(&self, lp: &EventLoop) {
        self.core.borrow_mut().flush_dirty(lp);
        self.finish_closes();
        self.schedule_flush();
    }
}

impl Source for ListenerSource {
    fn ready(&self, _lp: &EventLoop, _readiness: Readiness) {
        if let Some(shared) = self.shared.upgrade() {
            shared.accept(self.index);
        }
    }
}

impl Source for PeerSource {
    fn ready(&self, _lp: &EventLoop, readiness: Readiness) {
        if let Some(shared) = self.shared.upgrade() {
            shared.peer_ready(self.id, readiness);
        }
    }
}
