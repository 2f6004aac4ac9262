//! One NATS connection on the caller's [`EventLoop`]: no thread, one
//! socket registered with the loop's poll, the loop's timers for pings,
//! deadlines and back-off.
//!
//! The connection's life is visible to its owner, which the exactly-once
//! bookkeeping of federation needs: every connection that completes its
//! handshake gets a new *epoch*, announced by [`NatsEvent::Connected`] and
//! ended by [`NatsEvent::Disconnected`]. Nothing is buffered across a
//! disconnect: a publish while not connected fails with
//! [`NatsError::NotConnected`], and output queued on a connection that
//! dropped is discarded with it (it may or may not have reached the
//! server). Subscriptions are kept and made again on every new
//! connection, before it is announced.

use super::options::{NatsAuth, NatsOptions, ServerUrl};
use super::proto::{self, ConnectInfo, Headers, Msg, Parser, ServerInfo, ServerOp};
use crate::event_loop::{EventLoop, Flush, Readiness, Source, TimerId};
use mio::net::TcpStream;
use mio::{Interest, Token};
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::ToSocketAddrs;
use std::rc::{Rc, Weak};
use std::time::Duration;

/// What the connection tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NatsEvent {
    /// A connection completed its handshake (`CONNECT` answered by
    /// `PONG`), and the subscriptions are in place: publishing works
    /// from now until the matching `Disconnected`.
    Connected {
        /// This connection's number (1 for the first, then one more for
        /// each reconnect).
        epoch: u64,
        /// The server's `host:port`.
        server: String,
        /// The server's INFO.
        info: Box<ServerInfo>,
    },
    /// The connection of `epoch` is gone; whatever was written on it may
    /// be lost. A reconnect follows (unless the client was closed).
    Disconnected {
        /// The epoch that ended.
        epoch: u64,
        /// Why.
        reason: String,
    },
    /// A message on one of the subscriptions.
    Msg(Msg),
    /// An answer to [`NatsClient::request`]: `token` names the request.
    /// A request may get any number of answers until the owner calls
    /// [`NatsClient::end_request`]; a 503 status means nobody listens.
    Reply {
        /// The request's token.
        token: u64,
        /// The answer.
        msg: Msg,
    },
    /// The server entered lame-duck mode: it will close the connection
    /// soon. The owner may [`NatsClient::reconnect`] when it suits it.
    LameDuck,
    /// `-ERR` from the server. Fatal ones are followed by the server
    /// closing the connection (then `Disconnected`).
    ServerError(String),
}

/// Why a request to the connection was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NatsError {
    /// No connection is up now.
    NotConnected,
    /// A subject, queue group or header the protocol cannot carry.
    Invalid(String),
    /// The message is over the server's `max_payload`.
    TooLarge {
        /// Its size (headers included).
        size: usize,
        /// The server's limit.
        max: usize,
    },
    /// The output queue toward the server is full (`max_queued`).
    QueueFull,
    /// The client was closed.
    Closed,
}

impl fmt::Display for NatsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NatsError::NotConnected => write!(f, "not connected to NATS"),
            NatsError::Invalid(why) => write!(f, "invalid NATS request: {why}"),
            NatsError::TooLarge { size, max } => write!(
                f,
                "message of {size} bytes over the NATS server's max_payload of {max}"
            ),
            NatsError::QueueFull => write!(f, "output queue toward NATS is full"),
            NatsError::Closed => write!(f, "NATS connection closed"),
        }
    }
}

impl std::error::Error for NatsError {}

/// The callback that receives a client's events.
type Handler = Box<dyn FnMut(&NatsClient, NatsEvent)>;

/// A NATS client connection driven by an [`EventLoop`]. See the module
/// documentation for the epochs.
pub struct NatsClient {
    lp: EventLoop,
    inner: RefCell<Inner>,
    handler: RefCell<Option<Handler>>,
    me: Weak<NatsClient>,
}

impl fmt::Debug for NatsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.inner.borrow();
        f.debug_struct("NatsClient")
            .field("epoch", &inner.epoch)
            .field("phase", &inner.phase())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// TCP connect in progress, or waiting for the first INFO.
    AwaitInfo,
    /// CONNECT, SUBs and PING sent; waiting for the PONG.
    AwaitPong,
    /// Handshake complete.
    Ready,
}

struct Socket {
    stream: TcpStream,
    token: Token,
    phase: Phase,
    server: String,
    out: Vec<u8>,
    written: usize,
    pings_out: u32,
}

struct Sub {
    subject: String,
    queue: Option<String>,
}

struct Inner {
    options: NatsOptions,
    servers: Vec<ServerUrl>,
    next_server: usize,
    /// Attempts failed in the current round of the server list.
    failed_attempts: u32,
    /// Whole rounds failed since the last connection (the back-off).
    failed_rounds: u32,
    socket: Option<Socket>,
    parser: Parser,
    info: ServerInfo,
    /// Number of the current (or last) connection.
    epoch: u64,
    /// A socket is open: the epoch it will have once ready.
    attempt: u64,
    subs: BTreeMap<u64, Sub>,
    next_sid: u64,
    inbox_prefix: String,
    inbox_sid: u64,
    next_request: u64,
    events: VecDeque<NatsEvent>,
    timer: Option<TimerId>,
    ping_timer: Option<TimerId>,
    flush_wanted: bool,
    closed: bool,
    random: u64,
}

impl Inner {
    fn phase(&self) -> Option<Phase> {
        self.socket.as_ref().map(|s| s.phase)
    }
}

struct ConnSource {
    client: Weak<NatsClient>,
    attempt: u64,
}

impl Source for ConnSource {
    fn ready(&self, _lp: &EventLoop, readiness: Readiness) {
        if let Some(c) = self.client.upgrade() {
            c.socket_ready(self.attempt, readiness);
        }
    }
}

impl Flush for NatsClient {
    fn flush(&self, _lp: &EventLoop) {
        self.inner.borrow_mut().flush_wanted = false;
        self.write_out();
        self.deliver();
    }
}

/// Payload accepted before the server's INFO names its own limit, and the
/// margin over `max_payload` for what the server sends (headers).
const DEFAULT_MAX_PAYLOAD: usize = 1 << 20;
const READ_CHUNK: usize = 64 * 1024;
/// Bytes read per readiness event before other sources get a turn.
const READ_BUDGET: usize = 4 << 20;

fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish() | 1
}

fn next_random(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

/// A random string of `len` letters and digits (inbox names).
pub(crate) fn random_token(state: &mut u64, len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| ALPHABET[(next_random(state) % ALPHABET.len() as u64) as usize] as char)
        .collect()
}

impl NatsClient {
    /// Starts connecting to the first server of `options`, on `lp`;
    /// `handler` gets every event, on the loop's thread, never from
    /// inside a call to the client. Fails only when the options name no
    /// server.
    pub fn start(
        lp: &EventLoop,
        options: NatsOptions,
        handler: impl FnMut(&NatsClient, NatsEvent) + 'static,
    ) -> Result<Rc<NatsClient>, NatsError> {
        if options.servers.is_empty() {
            return Err(NatsError::Invalid("no NATS server given".into()));
        }
        let mut random = seed();
        let inbox_prefix = format!("_INBOX.{}", random_token(&mut random, 22));
        let mut subs = BTreeMap::new();
        subs.insert(
            1,
            Sub {
                subject: format!("{inbox_prefix}.*"),
                queue: None,
            },
        );
        let client = Rc::new_cyclic(|me| NatsClient {
            lp: lp.clone(),
            inner: RefCell::new(Inner {
                servers: options.servers.clone(),
                options,
                next_server: 0,
                failed_attempts: 0,
                failed_rounds: 0,
                socket: None,
                parser: Parser::new(DEFAULT_MAX_PAYLOAD * 2),
                info: ServerInfo::default(),
                epoch: 0,
                attempt: 0,
                subs,
                next_sid: 2,
                inbox_prefix,
                inbox_sid: 1,
                next_request: 1,
                events: VecDeque::new(),
                timer: None,
                ping_timer: None,
                flush_wanted: false,
                closed: false,
                random,
            }),
            handler: RefCell::new(Some(Box::new(handler))),
            me: me.clone(),
        });
        client.connect_next();
        client.deliver();
        Ok(client)
    }

    /// Whether a connection is up (between `Connected` and
    /// `Disconnected`).
    pub fn is_connected(&self) -> bool {
        self.inner.borrow().phase() == Some(Phase::Ready)
    }

    /// The current connection's epoch (0 before the first).
    pub fn epoch(&self) -> u64 {
        self.inner.borrow().epoch
    }

    /// The largest message the server takes (headers included), from
    /// its INFO (1 MiB until one arrived).
    pub fn max_payload(&self) -> usize {
        let inner = self.inner.borrow();
        match inner.info.max_payload {
            0 => DEFAULT_MAX_PAYLOAD,
            n => usize::try_from(n).unwrap_or(usize::MAX),
        }
    }

    /// Bytes written by the owner that wait for the socket.
    pub fn queued_bytes(&self) -> usize {
        let inner = self.inner.borrow();
        inner.socket.as_ref().map_or(0, |s| s.out.len() - s.written)
    }

    /// A fresh subject nobody else uses (under this client's inbox
    /// prefix's sibling, so it needs its own subscription).
    pub fn new_inbox(&self) -> String {
        let mut inner = self.inner.borrow_mut();
        let t = random_token(&mut inner.random, 22);
        format!("_INBOX.{t}")
    }

    /// Subscribes to `subject` (wildcards allowed), in queue group
    /// `queue` if given. Kept across reconnects. Returns the sid that
    /// its messages carry.
    pub fn subscribe(&self, subject: &str, queue: Option<&str>) -> Result<u64, NatsError> {
        let mut check = Vec::new();
        proto::encode_subscribe(subject, queue, 0, &mut check)
            .map_err(|e| NatsError::Invalid(e.0))?;
        let mut inner = self.inner.borrow_mut();
        if inner.closed {
            return Err(NatsError::Closed);
        }
        let sid = inner.next_sid;
        inner.next_sid += 1;
        inner.subs.insert(
            sid,
            Sub {
                subject: subject.to_string(),
                queue: queue.map(str::to_string),
            },
        );
        if let Some(s) = inner.socket.as_mut() {
            if s.phase == Phase::Ready {
                let _ = proto::encode_subscribe(subject, queue, sid, &mut s.out);
            }
        }
        drop(inner);
        self.want_flush();
        Ok(sid)
    }

    /// Ends subscription `sid` (now, and on later connections).
    pub fn unsubscribe(&self, sid: u64) {
        let mut inner = self.inner.borrow_mut();
        if inner.subs.remove(&sid).is_none() || sid == inner.inbox_sid {
            return;
        }
        if let Some(s) = inner.socket.as_mut() {
            if s.phase == Phase::Ready {
                proto::encode_unsubscribe(sid, None, &mut s.out);
            }
        }
        drop(inner);
        self.want_flush();
    }

    /// Publishes one message on the current connection. Refused (and
    /// nothing written) when not connected, over `max_payload`, when the
    /// output queue is full, or for a bad subject or header.
    pub fn publish(
        &self,
        subject: &str,
        reply: Option<&str>,
        headers: Option<&Headers>,
        payload: &[u8],
    ) -> Result<(), NatsError> {
        let max = self.max_payload();
        let mut inner = self.inner.borrow_mut();
        if inner.closed {
            return Err(NatsError::Closed);
        }
        let max_queued = inner.options.max_queued;
        let Some(s) = inner.socket.as_mut().filter(|s| s.phase == Phase::Ready) else {
            return Err(NatsError::NotConnected);
        };
        let size = proto::payload_size(headers, payload);
        if size > max {
            return Err(NatsError::TooLarge { size, max });
        }
        if s.out.len() - s.written + size + subject.len() + 64 > max_queued {
            return Err(NatsError::QueueFull);
        }
        let before = s.out.len();
        if let Err(e) = proto::encode_publish(subject, reply, headers, payload, &mut s.out) {
            s.out.truncate(before);
            return Err(NatsError::Invalid(e.0));
        }
        drop(inner);
        self.want_flush();
        Ok(())
    }

    /// Publishes a request whose answers come back as
    /// [`NatsEvent::Reply`] with the returned token, until
    /// [`end_request`](NatsClient::end_request) (the client keeps no
    /// state per request; ending only documents intent and is free).
    pub fn request(
        &self,
        subject: &str,
        headers: Option<&Headers>,
        payload: &[u8],
    ) -> Result<u64, NatsError> {
        let (token, reply) = {
            let mut inner = self.inner.borrow_mut();
            let token = inner.next_request;
            inner.next_request += 1;
            (token, format!("{}.{token}", inner.inbox_prefix))
        };
        self.publish(subject, Some(&reply), headers, payload)?;
        Ok(token)
    }

    /// Says the owner takes no more answers to request `token`; answers
    /// that still arrive are delivered and must be ignored by the owner.
    pub fn end_request(&self, _token: u64) {}

    /// Drops the current connection (if any) and connects again, to the
    /// next server of the list.
    pub fn reconnect(&self) {
        self.drop_socket("reconnect asked for".into());
        self.connect_next();
        self.deliver();
    }

    /// Closes the connection for good: no event after this returns.
    pub fn close(&self) {
        let (socket, timer, ping) = {
            let mut inner = self.inner.borrow_mut();
            inner.closed = true;
            inner.events.clear();
            (
                inner.socket.take(),
                inner.timer.take(),
                inner.ping_timer.take(),
            )
        };
        for t in [timer, ping].into_iter().flatten() {
            self.lp.cancel_timer(t);
        }
        if let Some(mut s) = socket {
            // Best effort: what is queued may still go out.
            let _ = s.stream.write(&s.out[s.written..]);
            self.lp.deregister(&mut s.stream, s.token);
        }
        self.handler.borrow_mut().take();
    }

    fn want_flush(&self) {
        let mut inner = self.inner.borrow_mut();
        if inner.flush_wanted || inner.socket.is_none() {
            return;
        }
        inner.flush_wanted = true;
        drop(inner);
        let me: Weak<dyn Flush> = self.me.clone();
        self.lp.want_flush(me);
    }

    /// Opens a socket to the next server, or arms the back-off timer
    /// when a whole round of the list failed.
    fn connect_next(&self) {
        let mut inner = self.inner.borrow_mut();
        if inner.closed || inner.socket.is_some() || inner.timer.is_some() {
            return;
        }
        let count = inner.servers.len();
        if inner.failed_attempts as usize >= count {
            // A whole round of the list failed: back off, doubling per
            // round up to the maximum, with up to a quarter of jitter.
            inner.failed_attempts = 0;
            let rounds = inner.failed_rounds.min(16);
            inner.failed_rounds += 1;
            let base = inner.options.reconnect_wait.as_millis() as u64;
            let max = inner.options.reconnect_wait_max.as_millis() as u64;
            let wait = base.saturating_mul(1 << rounds).min(max).max(1);
            let jitter = next_random(&mut inner.random) % (wait / 4 + 1);
            let me = self.me.clone();
            inner.timer = Some(self.lp.add_timer(
                Duration::from_millis(wait - jitter),
                move |_| {
                    if let Some(c) = me.upgrade() {
                        c.inner.borrow_mut().timer = None;
                        c.connect_next();
                        c.deliver();
                    }
                },
            ));
            return;
        }
        let server = inner.servers[inner.next_server % count].clone();
        inner.next_server = (inner.next_server + 1) % count;
        inner.attempt += 1;
        let attempt = inner.attempt;
        drop(inner);
        match self.open(&server, attempt) {
            Ok(()) => {
                let me = self.me.clone();
                let timeout = self.inner.borrow().options.connect_timeout;
                let t = self.lp.add_timer(timeout, move |_| {
                    if let Some(c) = me.upgrade() {
                        c.connect_timed_out(attempt);
                    }
                });
                self.inner.borrow_mut().timer = Some(t);
            }
            Err(e) => {
                log::debug!(server = server.host_port().as_str(); "NATS connect failed: {e}");
                self.inner.borrow_mut().failed_attempts += 1;
                // Try the next server (or back off) on the next turn, not
                // recursively.
                let me = self.me.clone();
                let t = self.lp.add_timer(Duration::ZERO, move |_| {
                    if let Some(c) = me.upgrade() {
                        c.inner.borrow_mut().timer = None;
                        c.connect_next();
                        c.deliver();
                    }
                });
                self.inner.borrow_mut().timer = Some(t);
            }
        }
    }

    fn open(&self, server: &ServerUrl, attempt: u64) -> io::Result<()> {
        let addr = server
            .host_port()
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))?;
        let mut stream = TcpStream::connect(addr)?;
        let _ = stream.set_nodelay(true);
        let source = Rc::new(ConnSource {
            client: self.me.clone(),
            attempt,
        });
        let token =
            self.lp
                .register(&mut stream, Interest::READABLE | Interest::WRITABLE, source)?;
        let mut inner = self.inner.borrow_mut();
        inner.parser.reset();
        inner.parser.set_max_payload(DEFAULT_MAX_PAYLOAD * 2);
        inner.socket = Some(Socket {
            stream,
            token,
            phase: Phase::AwaitInfo,
            server: server.host_port(),
            out: Vec::new(),
            written: 0,
            pings_out: 0,
        });
        Ok(())
    }

    fn connect_timed_out(&self, attempt: u64) {
        let mut inner = self.inner.borrow_mut();
        inner.timer = None;
        if inner.attempt != attempt || inner.phase() == Some(Phase::Ready) {
            return;
        }
        drop(inner);
        self.fail_attempt("connect timed out".into());
    }

    /// A socket that never became ready goes; the next server is tried.
    fn fail_attempt(&self, reason: String) {
        let socket = {
            let mut inner = self.inner.borrow_mut();
            inner.failed_attempts += 1;
            if let Some(t) = inner.timer.take() {
                self.lp.cancel_timer(t);
            }
            inner.socket.take()
        };
        if let Some(mut s) = socket {
            log::debug!(server = s.server.as_str(); "NATS connect failed: {reason}");
            self.lp.deregister(&mut s.stream, s.token);
        }
        self.connect_next();
        self.deliver();
    }

    /// Drops the socket; a ready one ends its epoch with `Disconnected`.
    fn drop_socket(&self, reason: String) {
        let (socket, was_ready, epoch, ping) = {
            let mut inner = self.inner.borrow_mut();
            let ready = inner.phase() == Some(Phase::Ready);
            if let Some(t) = inner.timer.take() {
                self.lp.cancel_timer(t);
            }
            let ping = inner.ping_timer.take();
            (inner.socket.take(), ready, inner.epoch, ping)
        };
        if let Some(t) = ping {
            self.lp.cancel_timer(t);
        }
        let Some(mut s) = socket else { return };
        self.lp.deregister(&mut s.stream, s.token);
        let mut inner = self.inner.borrow_mut();
        if was_ready {
            log::info!(server = s.server.as_str(), epoch = epoch; "NATS connection lost: {reason}");
            inner
                .events
                .push_back(NatsEvent::Disconnected { epoch, reason });
        } else {
            inner.failed_attempts += 1;
        }
    }

    fn socket_ready(&self, attempt: u64, readiness: Readiness) {
        if self.inner.borrow().attempt != attempt || self.inner.borrow().socket.is_none() {
            return;
        }
        if readiness.writable {
            self.write_out();
        }
        if readiness.readable || readiness.hangup {
            self.read_in(attempt);
        }
        self.deliver();
    }

    /// Writes queued output; a write error drops the connection.
    fn write_out(&self) {
        let mut inner = self.inner.borrow_mut();
        let Some(s) = inner.socket.as_mut() else {
            return;
        };
        let mut failure = None;
        while s.written < s.out.len() {
            match s.stream.write(&s.out[s.written..]) {
                Ok(0) => {
                    failure = Some("socket closed".to_string());
                    break;
                }
                Ok(n) => s.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::NotConnected => break,
                Err(e) => {
                    failure = Some(e.to_string());
                    break;
                }
            }
        }
        if s.written == s.out.len() {
            s.out.clear();
            s.written = 0;
        } else if s.written > 1 << 20 {
            s.out.drain(..s.written);
            s.written = 0;
        }
        drop(inner);
        if let Some(reason) = failure {
            self.lost(reason);
        }
    }

    /// Ends the current socket, whatever its phase, and moves on.
    fn lost(&self, reason: String) {
        let ready = self.inner.borrow().phase() == Some(Phase::Ready);
        if ready {
            self.drop_socket(reason);
            self.connect_next();
        } else {
            self.fail_attempt(reason);
        }
    }

    fn read_in(&self, attempt: u64) {
        let mut buf = vec![0u8; READ_CHUNK];
        let mut total = 0;
        loop {
            let result = {
                let mut inner = self.inner.borrow_mut();
                if inner.attempt != attempt {
                    return;
                }
                let Some(s) = inner.socket.as_mut() else {
                    return;
                };
                s.stream.read(&mut buf)
            };
            match result {
                Ok(0) => {
                    self.handle_ops();
                    self.lost("server closed the connection".into());
                    return;
                }
                Ok(n) => {
                    total += n;
                    self.inner.borrow_mut().parser.push(&buf[..n]);
                    if !self.handle_ops() {
                        return;
                    }
                    if total >= READ_BUDGET {
                        if let Some(s) = self.inner.borrow().socket.as_ref() {
                            self.lp.again(s.token);
                        }
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.lost(e.to_string());
                    return;
                }
            }
        }
    }

    /// Handles every complete operation buffered; false when the
    /// connection was dropped.
    fn handle_ops(&self) -> bool {
        loop {
            let op = self.inner.borrow_mut().parser.next_op();
            match op {
                Ok(None) => return true,
                Ok(Some(op)) => {
                    if !self.handle_op(op) {
                        return false;
                    }
                }
                Err(e) => {
                    self.lost(e.to_string());
                    return false;
                }
            }
        }
    }

    fn handle_op(&self, op: ServerOp) -> bool {
        let mut guard = self.inner.borrow_mut();
        let inner = &mut *guard;
        let Some(s) = inner.socket.as_mut() else {
            return false;
        };
        match op {
            ServerOp::Ping => {
                proto::encode_pong(&mut s.out);
            }
            ServerOp::Pong => match s.phase {
                Phase::AwaitPong => {
                    s.phase = Phase::Ready;
                    s.pings_out = 0;
                    inner.epoch += 1;
                    inner.failed_attempts = 0;
                    inner.failed_rounds = 0;
                    let server = s.server.clone();
                    if let Some(t) = inner.timer.take() {
                        self.lp.cancel_timer(t);
                    }
                    log::info!(server = server.as_str(), epoch = inner.epoch; "NATS connected");
                    inner.events.push_back(NatsEvent::Connected {
                        epoch: inner.epoch,
                        server,
                        info: Box::new(inner.info.clone()),
                    });
                    let interval = inner.options.ping_interval;
                    inner.ping_timer = Some(self.arm_ping(interval));
                }
                _ => s.pings_out = 0,
            },
            ServerOp::Ok => {}
            ServerOp::Err(e) => {
                log::warn!(server = s.server.as_str(); "NATS server error: {e}");
                inner.events.push_back(NatsEvent::ServerError(e));
            }
            ServerOp::Info(info) => {
                for url in &info.connect_urls {
                    if let Ok(mut u) = ServerUrl::parse(url) {
                        if !inner
                            .servers
                            .iter()
                            .any(|k| k.host == u.host && k.port == u.port)
                        {
                            // Announced servers take the credentials of the
                            // configured ones.
                            u.auth = inner.servers[0].auth.clone();
                            inner.servers.push(u);
                        }
                    }
                }
                if info.max_payload > 0 {
                    let max = usize::try_from(info.max_payload).unwrap_or(usize::MAX / 2);
                    inner.parser.set_max_payload(max.saturating_mul(2));
                }
                if s.phase == Phase::AwaitInfo {
                    let server_index = inner
                        .servers
                        .iter()
                        .position(|k| k.host_port() == s.server)
                        .unwrap_or(0);
                    let auth = match &inner.options.auth {
                        NatsAuth::None => inner.servers[server_index].auth.clone(),
                        a => a.clone(),
                    };
                    let mut connect = ConnectInfo {
                        name: inner.options.name.clone(),
                        lang: "rust-stagebus".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        protocol: 1,
                        echo: true,
                        headers: true,
                        no_responders: true,
                        ..ConnectInfo::default()
                    };
                    match auth {
                        NatsAuth::None => {}
                        NatsAuth::UserPassword { user, password } => {
                            connect.user = Some(user);
                            connect.pass = Some(password);
                        }
                        NatsAuth::Token(t) => connect.auth_token = Some(t),
                    }
                    proto::encode_connect(&connect, &mut s.out);
                    for (sid, sub) in &inner.subs {
                        let _ = proto::encode_subscribe(
                            &sub.subject,
                            sub.queue.as_deref(),
                            *sid,
                            &mut s.out,
                        );
                    }
                    proto::encode_ping(&mut s.out);
                    s.phase = Phase::AwaitPong;
                } else if info.ldm {
                    inner.events.push_back(NatsEvent::LameDuck);
                }
                inner.info = *info;
            }
            ServerOp::Msg(msg) => {
                if msg.sid == inner.inbox_sid {
                    let token = msg
                        .subject
                        .rsplit_once('.')
                        .and_then(|(_, t)| t.parse::<u64>().ok());
                    if let Some(token) = token {
                        inner.events.push_back(NatsEvent::Reply { token, msg });
                    }
                } else {
                    inner.events.push_back(NatsEvent::Msg(msg));
                }
            }
        }
        drop(guard);
        self.want_flush();
        true
    }

    fn arm_ping(&self, interval: Duration) -> TimerId {
        let me = self.me.clone();
        self.lp.add_timer(interval, move |_| {
            if let Some(c) = me.upgrade() {
                c.ping_due();
            }
        })
    }

    fn ping_due(&self) {
        let mut inner = self.inner.borrow_mut();
        inner.ping_timer = None;
        let max = inner.options.max_pings_out;
        let interval = inner.options.ping_interval;
        let Some(s) = inner.socket.as_mut().filter(|s| s.phase == Phase::Ready) else {
            return;
        };
        if s.pings_out >= max {
            drop(inner);
            self.lost("stale connection: no PONG".into());
            self.deliver();
            return;
        }
        s.pings_out += 1;
        proto::encode_ping(&mut s.out);
        drop(inner);
        let t = self.arm_ping(interval);
        self.inner.borrow_mut().ping_timer = Some(t);
        self.want_flush();
    }

    /// Hands queued events to the handler, outside every borrow. A
    /// handler that calls back into the client and causes events gets
    /// them after it returns, in order.
    fn deliver(&self) {
        loop {
            let Some(mut handler) = self.handler.borrow_mut().take() else {
                // Closed, or already delivering further up the stack.
                return;
            };
            let event = self.inner.borrow_mut().events.pop_front();
            let Some(event) = event else {
                *self.handler.borrow_mut() = Some(handler);
                return;
            };
            handler(self, event);
            let mut slot = self.handler.borrow_mut();
            if slot.is_none() && !self.inner.borrow().closed {
                *slot = Some(handler);
            }
        }
    }
}
