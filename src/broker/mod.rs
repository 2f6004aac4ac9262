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
//!
//! # Layout
//!
//! A core without I/O under a shell that owns the I/O (the split of
//! dbus-broker's bus, peers and replies):
//!
//! * `shell`: listeners, sockets, their registration with the loop,
//!   timers; feeds the core and carries out what it asks.
//! * `accept`: what a failed accept means, and the retry back-off.
//! * `core`: the state machine: frame bodies in per connection; output
//!   bytes per connection, handshake deadlines and closes (each with its
//!   reason) out. Never touches a socket, a clock or the loop.
//! * `calls`, `sessions`: the core's operations on calls (deliver, emit,
//!   recall, result, cancel) and on sessions (publish, rescind,
//!   subscribe, unsubscribe, the notices that a session went away).
//! * `handshake`: the hello check.
//! * `peer`: one connection's state and queued output, and why it
//!   closed.
//! * `routes`: calls in flight, each linked to its caller and its
//!   publisher; opened and ended in one place.
//! * `registry`: the published sessions and their subscribers.
//! * `watches`: who watches which names (clients' watches, and the
//!   subscribes of `waiters` waiting for their name), told of every
//!   appearance, change of owner and end.
//! * `signals`: who listens for which signals, and a signal's fan-out
//!   (the same bytes to every listener).

//! * `policy`: who may do what (a policy file's rules); `access`: the
//!   core's checks against it, and its denials.

mod accept;
mod access;
mod budget;
mod calls;
mod core;
#[cfg(test)]
mod core_tests;
mod deadlines;
mod federate;
mod handshake;
mod limit;
mod links;
mod monitor;
mod peer;
pub mod policy;
mod registry;
mod routes;
mod sessions;
mod shell;
mod signals;
mod stats;
mod waiters;
mod watches;

use crate::error::{Error, ErrorCode};
use crate::event_loop::EventLoop;
use crate::transport::{Address, BrokerTls, InheritedListener};
use crate::wire::DEFAULT_MAX_FRAME;
pub use limit::Limit;
pub use policy::Policy;
use shell::Shell;
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

/// The core fed `bytes` as the input of one connection from its first
/// byte, framed as the shell frames it (the hello's small limit first),
/// and its output written; for the fuzz targets (`crate::fuzzing`).
pub(crate) fn fuzz_connection(bytes: &[u8]) {
    let limits = Limits {
        max_frame: 64 * 1024,
        ..Limits::default()
    };
    let mut core = core::Core::new(BrokerConfig::default().with_limits(limits));
    let Some(id) = core.connect() else {
        return;
    };
    let mut decoder = crate::wire::FrameDecoder::new(64 * 1024);
    decoder.limit_first_frame(core.limits().max_hello_frame);
    decoder.push(bytes);
    while core.reads(id) {
        match decoder.next_body() {
            Ok(Some(body)) => core.receive(id, body),
            Ok(None) => break,
            Err(e) => core.input_ended(id, e.into()),
        }
    }
    core.write_output(|_, out| Ok(out.len()));
    let mut effects = Vec::new();
    core.take_effects(&mut effects);
}

/// The broker's number for a connection.
pub(crate) type ConnId = u64;

/// Limits the broker enforces, most of them per connection, and its
/// liveness settings (how silent a peer may stay, how long a frame may
/// take). Going over a limit is an error to whoever went over (or, for a
/// peer that does not read or answer, a disconnect); never a crash or a
/// silent drop.
///
/// Not exhaustive: start from [`Limits::default`] and set the fields to
/// change, so that a later limit is no breaking change.
#[derive(Debug, Clone)]
#[non_exhaustive]
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
    /// Most subscribes one connection may have waiting for their name to
    /// be published (default 4096); one more is answered
    /// `limit_exceeded`.
    pub max_waiters_per_connection: usize,
    /// How long a connection may stay silent before the broker pings it
    /// (default 2 minutes, as NATS). Zero turns pinging off (TCP
    /// keepalive still runs on TCP connections).
    pub ping_interval: Duration,
    /// How many pings may go unanswered: a connection silent for this
    /// many pings and one more interval is closed as a disconnect (its
    /// sessions leave the listing, calls to it end `publisher_gone`).
    /// Default 2, as NATS.
    pub ping_max: u32,
    /// How long a frame may take to arrive once its first byte did
    /// (default 10 s): a peer that stops in the middle of a frame is
    /// closed.
    pub frame_timeout: Duration,
    /// Largest frame accepted before the hello, in bytes (default 512):
    /// the hello is small, so a connection that announces more is
    /// refused at once instead of being buffered.
    pub max_hello_frame: usize,
    /// Most connections that have not said hello yet (default 1024);
    /// more are closed on accept and counted in
    /// [`BrokerStats::refused_connections`].
    pub max_unauthenticated: usize,
    /// Most registry bytes (session and method names, each with a fixed
    /// cost for its entry) one connection may publish (default 4 MiB); a
    /// publish past it is answered `limit_exceeded`.
    pub max_registry_bytes_per_connection: usize,
    /// Most registry bytes on the broker (default 64 MiB); a publish past
    /// it is answered `limit_exceeded`. Independently, a publish that
    /// would make the listing of every session larger than
    /// [`Limits::max_frame`] is answered `limit_exceeded`, so that a
    /// listing never fails for being large.
    pub max_registry_bytes: usize,
    /// Output queued for a connection past which the broker stops reading
    /// its input until that output is down to half of it (default
    /// 1 MiB): a client that asks faster than it reads is slowed down,
    /// not cut off.
    pub output_high_water: usize,
    /// How long queued output may make no progress before the connection
    /// is closed as a peer that does not read (default 30 s).
    pub write_timeout: Duration,
    /// Most bytes of unfinished input frames over all connections
    /// (default 256 MiB): the connection whose frame in progress goes
    /// past it is refused with `limit_exceeded`.
    pub max_input_bytes: usize,
    /// The broker's memory budget in bytes (default 1 GiB), over input
    /// buffers, output queues, registry, connections and calls in flight:
    /// when it is reached, new work (publish, subscribe, listing,
    /// deliver) is answered `limit_exceeded` while calls in flight go on.
    pub max_memory: usize,
    /// Most signal matches one connection may hold (default 4096); one
    /// more is answered `limit_exceeded`.
    pub max_matches_per_connection: usize,
    /// Most name watches one connection may hold (default 4096); one
    /// more is answered `limit_exceeded`.
    pub max_watches_per_connection: usize,
    /// Federated: most calls from this broker's clients waiting for a
    /// result from one other broker (one link); more are answered
    /// `limit_exceeded` (default 262144).
    pub max_pending_per_link: usize,
    /// Federated: most bytes queued toward NATS before new calls across
    /// brokers, and emits and results toward them, fail with
    /// `limit_exceeded` (default 64 MiB; the NATS connection itself
    /// refuses to queue more than 64 MiB).
    pub max_nats_queued_bytes: usize,
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
            max_waiters_per_connection: 4096,
            ping_interval: crate::liveness::DEFAULT_PING_INTERVAL,
            ping_max: crate::liveness::DEFAULT_PING_MAX,
            frame_timeout: Duration::from_secs(10),
            max_hello_frame: 512,
            max_unauthenticated: 1024,
            max_registry_bytes_per_connection: 4 << 20,
            max_registry_bytes: 64 << 20,
            output_high_water: 1 << 20,
            write_timeout: Duration::from_secs(30),
            max_input_bytes: 256 << 20,
            max_memory: 1 << 30,
            max_matches_per_connection: 4096,
            max_watches_per_connection: 4096,
            max_pending_per_link: 1 << 18,
            max_nats_queued_bytes: 64 << 20,
        }
    }
}

/// How to run a broker.
///
/// Not exhaustive: build it with [`BrokerConfig::listening`] and the
/// `with_` methods, or set fields of a default one.
#[derive(Debug, Clone)]
#[non_exhaustive]
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
    /// Listening sockets the process was handed (systemd's socket
    /// activation), served after the addresses of `listen`, in this
    /// order. See [`InheritedListener`].
    pub inherited: Vec<InheritedListener>,
    /// A shared secret clients must present in their hello. Compared in
    /// constant time. A peer that presents it has no identity name.
    pub token: Option<String>,
    /// Named tokens, `(name, secret)`: a peer that presents `secret` is
    /// known by `name` (its identity, for the [`policy`](Self::policy)
    /// and for the publishers it calls). With any token here or in
    /// [`token`](Self::token), a peer must present one of them.
    pub named_tokens: Vec<(String, String)>,
    /// Per-connection limits.
    pub limits: Limits,
    /// The permission bits of Unix socket files the broker creates
    /// (default `0o660`: the owner and the group may connect, others may
    /// not). A socket file's mode is its access control: anyone who may
    /// write to it may connect, and without a token, use the broker.
    /// 0660 rather than the umask's usual 0777/0755 because a broker
    /// should be opened to a group on purpose (see
    /// [`socket_group`](Self::socket_group)), not to every local user by
    /// accident. The mode is set between `bind` and `listen`, so the
    /// socket never accepts a connection with wider permissions.
    pub socket_mode: u32,
    /// The group of Unix socket files the broker creates (a group name
    /// or number), or `None` to keep the creating process's group.
    pub socket_group: Option<String>,
    /// Who may do what; `None` (the default) lets anyone who may connect
    /// do everything. See [`Policy`].
    pub policy: Option<Policy>,
    /// The certificate and key of `tls://` listeners, and the CAs of the
    /// client certificates they ask for (mutual TLS), read when the
    /// broker starts. A `tls://` address without them fails to start.
    /// A TLS client's certificate subject becomes its identity (before
    /// a named token's name).
    pub tls: Option<BrokerTls>,
    /// Join a federation of brokers over NATS (see
    /// [`FederationConfig`](crate::FederationConfig)); `None` (the
    /// default): a broker on its own.
    pub federation: Option<crate::FederationConfig>,
}

/// The default [`BrokerConfig::socket_mode`].
pub const DEFAULT_SOCKET_MODE: u32 = 0o660;

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            listen: Vec::new(),
            token: None,
            named_tokens: Vec::new(),
            limits: Limits::default(),
            socket_mode: DEFAULT_SOCKET_MODE,
            socket_group: None,
            policy: None,
            inherited: Vec::new(),
            tls: None,
            federation: None,
        }
    }
}

impl BrokerConfig {
    /// A broker listening on `addresses`, with default limits and no
    /// token.
    pub fn listening(addresses: impl IntoIterator<Item = Address>) -> BrokerConfig {
        BrokerConfig {
            listen: addresses.into_iter().collect(),
            ..BrokerConfig::default()
        }
    }

    /// The same, also serving a listening socket the process was handed
    /// (see [`InheritedListener`]).
    pub fn with_inherited(mut self, listener: impl Into<InheritedListener>) -> BrokerConfig {
        self.inherited.push(listener.into());
        self
    }

    /// The same, joining the federation `federation` describes.
    pub fn with_federation(mut self, federation: crate::FederationConfig) -> BrokerConfig {
        self.federation = Some(federation);
        self
    }

    /// The same, requiring `token` from every client.
    pub fn with_token(mut self, token: impl Into<String>) -> BrokerConfig {
        self.token = Some(token.into());
        self
    }

    /// The same, also taking the token `secret` and knowing whoever
    /// presents it as `name` (see [`BrokerConfig::named_tokens`]).
    pub fn with_named_token(
        mut self,
        name: impl Into<String>,
        secret: impl Into<String>,
    ) -> BrokerConfig {
        self.named_tokens.push((name.into(), secret.into()));
        self
    }

    /// The same, creating Unix socket files with the permission bits
    /// `mode` (see [`BrokerConfig::socket_mode`]).
    pub fn with_socket_mode(mut self, mode: u32) -> BrokerConfig {
        self.socket_mode = mode;
        self
    }

    /// The same, giving Unix socket files the group `group` (a name or
    /// a number).
    pub fn with_socket_group(mut self, group: impl Into<String>) -> BrokerConfig {
        self.socket_group = Some(group.into());
        self
    }

    /// The same, enforcing `policy`.
    pub fn with_policy(mut self, policy: Policy) -> BrokerConfig {
        self.policy = Some(policy);
        self
    }

    /// The same, with the TLS settings of its `tls://` listeners (see
    /// [`BrokerConfig::tls`]).
    pub fn with_tls(mut self, tls: BrokerTls) -> BrokerConfig {
        self.tls = Some(tls);
        self
    }

    /// The same, pinging connections silent for `interval` and closing
    /// those that leave `max` pings unanswered (see
    /// [`Limits::ping_interval`]).
    pub fn with_ping(mut self, interval: Duration, max: u32) -> BrokerConfig {
        self.limits.ping_interval = interval;
        self.limits.ping_max = max;
        self
    }

    /// The same, with `limits`.
    pub fn with_limits(mut self, limits: Limits) -> BrokerConfig {
        self.limits = limits;
        self
    }
}

/// Counters, for tests, benchmarks and operators.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BrokerStats {
    /// Open connections (handshaken or not).
    pub connections: usize,
    /// Published sessions.
    pub sessions: usize,
    /// Deliveries waiting for their result.
    pub pending_calls: usize,
    /// Subscribes waiting for their session to be published.
    pub waiting_subscribes: usize,
    /// Results, emits and recalls that arrived for no live call (answered
    /// after a cancel, or forged) and were dropped.
    pub dropped_stray: u64,
    /// Connections closed for breaking the protocol.
    pub protocol_errors: u64,
    /// Connections closed for not reading their output.
    pub slow_consumers: u64,
    /// Calls delivered to publishers.
    pub calls: u64,
    /// Connections refused: over the connection limit, or their hello
    /// refused (token, protocol version).
    pub refused_connections: u64,
    /// Requests answered `limit_exceeded` and connections closed for
    /// going over a limit (queues, budgets).
    pub limits_exceeded: u64,
    /// Times the broker stopped reading a connection whose output was
    /// over [`Limits::output_high_water`].
    pub reads_paused: u64,
    /// Bytes the broker's memory budget counts now (input buffers,
    /// output queues, registry, connections, calls in flight).
    pub memory_used: usize,
    /// One-way calls forwarded to their publisher (no route kept).
    pub oneway_calls: u64,
    /// One-way calls that could not be delivered (no such session or
    /// method, a bad name, a frame too large) and were dropped: nobody
    /// waits for their answer.
    pub dropped_oneway: u64,
    /// Signals emitted by their session's publisher and fanned out.
    pub signals: u64,
    /// Signal copies queued for listeners (one per listener a signal
    /// matched).
    pub signal_deliveries: u64,
    /// Signals dropped because their sender did not publish their
    /// session (a signal crossing its rescind, or forged) or named no
    /// proper signal.
    pub dropped_signals: u64,
    /// Signal matches held by connections.
    pub signal_matches: usize,
    /// Name watches held by connections (waiting subscribes not
    /// counted: see `waiting_subscribes`).
    pub name_watches: usize,
    /// Operations the policy denied (each answered `access_denied`).
    pub access_denied: u64,
    /// TLS connections closed before their handshake was done (a bad or
    /// missing client certificate, a client that speaks no TLS, one that
    /// left).
    pub tls_handshake_failures: u64,
    /// Federated: sessions of other brokers in the directory cache.
    #[serde(default)]
    pub remote_sessions: usize,
    /// Federated: links to other brokers reset (either side started it).
    #[serde(default)]
    pub link_resets: u64,
    /// Federated: other brokers declared dead (no heartbeat in time).
    #[serde(default)]
    pub peers_declared_dead: u64,
    /// Federated: of those, brokers known only from the directory (left
    /// there by a broker that died unseen) found without responders and
    /// declared dead by the start-up sweep, before `hb_timeout`.
    #[serde(default)]
    pub peers_swept: u64,
    /// Federated: reconnects of the broker's NATS connection.
    #[serde(default)]
    pub nats_reconnects: u64,
    /// Federated: new incarnations this broker took after learning its
    /// peers had declared it dead (it hung or was cut off past
    /// `hb_timeout`).
    #[serde(default)]
    pub incarnations: u64,
    /// Federated: calls failed with `limit_exceeded` by federation's own
    /// limits (a frame over the NATS server's `max_payload`, calls
    /// pending per link, bytes queued toward NATS).
    #[serde(default)]
    pub federation_limits_exceeded: u64,
}

/// A running broker. It lives on its loop until [`Broker::close`] or until
/// the last handle is dropped.
pub struct Broker {
    shell: Rc<Shell>,
}

impl fmt::Debug for Broker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Broker")
            .field("addresses", &self.local_addresses())
            .field("stats", &self.stats())
            .finish()
    }
}

impl Broker {
    /// Binds every address of `config`, takes over its inherited
    /// sockets, and starts serving on `lp`.
    ///
    /// Fails without side effects if any address cannot be bound or any
    /// inherited socket cannot be served.
    pub fn new(lp: &EventLoop, config: BrokerConfig) -> Result<Broker, Error> {
        if config.listen.is_empty() && config.inherited.is_empty() {
            return Err(Error::new(
                ErrorCode::InvalidArgument,
                "a broker needs at least one address to listen on",
            ));
        }
        Ok(Broker {
            shell: Shell::start(lp, config)?,
        })
    }

    /// The loop the broker serves on.
    pub fn event_loop(&self) -> &EventLoop {
        self.shell.event_loop()
    }

    /// The addresses listened on, with kernel-chosen ports filled in.
    pub fn local_addresses(&self) -> Vec<Address> {
        self.shell.local_addresses()
    }

    /// Current counters.
    pub fn stats(&self) -> BrokerStats {
        self.shell.stats()
    }

    /// Everything the broker reports about itself now: totals, errors by
    /// code, each connection and each session
    /// ([`crate::report::StatsReport::to_prometheus`] renders it for a
    /// scrape).
    pub fn report(&self) -> crate::report::StatsReport {
        self.shell.report()
    }

    /// Stops listening and closes every connection: each client is told
    /// the broker is going away (a `going_away` notice; its calls end
    /// with `broker_gone`), and the notice and what was queued before it
    /// are still written on later turns of the loop (a lingering close,
    /// bounded by [`crate::DEFAULT_LINGER`]); see
    /// [`Broker::closing_connections`]. Idempotent.
    pub fn close(&self) {
        self.shell.close();
    }

    /// Changes the liveness settings (see [`Limits::ping_interval`] and
    /// [`Limits::ping_max`]): connections take them at their next tick,
    /// and those that say hello later from the start. A connection that
    /// said hello while pinging was off is not pinged.
    pub fn set_ping(&self, interval: Duration, max: u32) {
        self.shell.set_ping(interval, max);
    }

    /// Sets one of the broker's limits while it runs (see [`Limit`] and
    /// [`Limits::set`]; durations in milliseconds). Budgets, caps and
    /// timeouts apply from the next check; the frame size limits
    /// (`max-frame`, `max-queued-bytes`, `max-hello-frame`) apply to
    /// connections accepted afterwards.
    pub fn set_limit(&self, limit: Limit, value: u64) -> Result<(), Error> {
        self.shell.set_limit(limit, value)
    }

    /// The current value of one of the broker's limits.
    pub fn limit(&self, limit: Limit) -> u64 {
        self.shell.limit(limit)
    }

    /// Federated: ends every call across the links to other brokers as a
    /// lost link frame would (each call once: `publisher_gone` to its
    /// caller, a cancel to its publisher), while the other brokers'
    /// sessions stay listed. For fault tests; a no-op when not
    /// federated.
    #[doc(hidden)]
    pub fn reset_federation_links(&self) {
        if let Some(fed) = self.shell.federation() {
            fed.reset_all_links("reset on request");
        }
    }

    /// Connections of a closed broker still writing their last output;
    /// a program that stops its loop after [`Broker::close`] runs it
    /// until this is zero (or for a bounded time) so that the notices
    /// leave.
    pub fn closing_connections(&self) -> usize {
        self.shell.closing_connections()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.close();
    }
}
