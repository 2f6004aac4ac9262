//! How a client connects: [`ClientConfig`].

use super::ReconnectPolicy;
use crate::transport::ClientTls;
use crate::wire::DEFAULT_MAX_FRAME;
use std::time::Duration;

/// How to connect.
///
/// Not exhaustive: start from [`ClientConfig::default`] and set the
/// fields to change (or use the `with_` methods), so that a later setting
/// is no breaking change.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// The broker's shared secret, if it requires one.
    pub token: Option<String>,
    /// Largest frame body sent or accepted (default 16 MiB).
    pub max_frame: usize,
    /// Most bytes queued for the broker before operations fail with
    /// `limit_exceeded` (default 64 MiB).
    pub max_queued_bytes: usize,
    /// How long closing the client (or dropping its last handle) may take
    /// to write out what it already accepted for sending: answers,
    /// emits, calls (default [`DEFAULT_LINGER`]). Zero writes what the
    /// socket takes at once and drops the rest. See [`Client::close`](super::Client::close).
    pub linger: Duration,
    /// The deadline given to a request sent through this client that has
    /// none of its own (neither its own timeout nor one inherited from the
    /// request it is made for); `None`, the default, gives none. Off by
    /// default because long calls and streams of emits are legitimate:
    /// set it to bound every call, as libdbus's 25 s default does.
    pub default_timeout: Option<Duration>,
    /// How long the broker may stay silent before the client pings it
    /// (default 2 minutes, as NATS clients). Zero turns pinging off.
    pub ping_interval: Duration,
    /// How many pings may go unanswered: a broker silent for this many
    /// pings and one more interval is taken for gone, exactly as a
    /// disconnect (`broker_gone`). Default 2, as NATS clients.
    pub ping_max: u32,
    /// How long connecting and the handshake may take before the connect
    /// fails with `broker_gone` (default 10 s). Zero waits forever.
    pub connect_timeout: Duration,
    /// The name this client gives itself in its hello: the publishers it
    /// calls see it with each call (see
    /// [`Delivery::caller`](super::Delivery::caller)), and the broker
    /// logs it. Free text that proves nothing (default none).
    pub name: Option<String>,
    /// How to reconnect after losing the broker; `None`, the default,
    /// closes the client on the first loss (see [`ReconnectPolicy`]).
    pub reconnect: Option<ReconnectPolicy>,
    /// How to connect to a `tls://` address: the CAs the broker's
    /// certificate must come from (default: the system's store) and a
    /// client certificate to present (mutual TLS). The files are read at
    /// the first connect to a `tls://` address; a missing or invalid one
    /// fails that connect with an error naming it.
    pub tls: ClientTls,
}

/// The default [`ClientConfig::linger`]: 5 seconds.
pub const DEFAULT_LINGER: Duration = Duration::from_secs(5);

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            token: None,
            max_frame: DEFAULT_MAX_FRAME,
            max_queued_bytes: 64 << 20,
            linger: DEFAULT_LINGER,
            default_timeout: None,
            ping_interval: crate::liveness::DEFAULT_PING_INTERVAL,
            ping_max: crate::liveness::DEFAULT_PING_MAX,
            connect_timeout: Duration::from_secs(10),
            name: None,
            reconnect: None,
            tls: ClientTls::default(),
        }
    }
}

impl ClientConfig {
    /// The same, calling itself `name` (see [`ClientConfig::name`]).
    pub fn with_name(mut self, name: impl Into<String>) -> ClientConfig {
        self.name = Some(name.into());
        self
    }

    /// The same, presenting `token` to the broker.
    pub fn with_token(mut self, token: impl Into<String>) -> ClientConfig {
        self.token = Some(token.into());
        self
    }

    /// The same, pinging a broker silent for `interval` and taking it for
    /// gone after `max` unanswered pings (see
    /// [`ClientConfig::ping_interval`]).
    pub fn with_ping(mut self, interval: Duration, max: u32) -> ClientConfig {
        self.ping_interval = interval;
        self.ping_max = max;
        self
    }

    /// The same, with `timeout` for the connect and handshake (see
    /// [`ClientConfig::connect_timeout`]).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> ClientConfig {
        self.connect_timeout = timeout;
        self
    }

    /// The same, reconnecting after a loss as `policy` says (see
    /// [`ClientConfig::reconnect`]).
    pub fn with_reconnect(mut self, policy: ReconnectPolicy) -> ClientConfig {
        self.reconnect = Some(policy);
        self
    }

    /// The same, with the TLS settings `tls` (see [`ClientConfig::tls`]).
    pub fn with_tls(mut self, tls: ClientTls) -> ClientConfig {
        self.tls = tls;
        self
    }

    /// The same, with `linger` as the longest a close may take to write
    /// out what was accepted (see [`ClientConfig::linger`]).
    pub fn with_linger(mut self, linger: Duration) -> ClientConfig {
        self.linger = linger;
        self
    }

    /// The same, with `timeout` as the deadline of requests that set none
    /// (see [`ClientConfig::default_timeout`]).
    pub fn with_default_timeout(mut self, timeout: Duration) -> ClientConfig {
        self.default_timeout = Some(timeout);
        self
    }
}
