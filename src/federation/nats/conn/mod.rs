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

mod socket;

use super::options::{NatsOptions, ServerUrl};
use super::proto::{self, Headers, Msg, Parser, ServerInfo};
use crate::event_loop::{EventLoop, Flush, Readiness, Source, TimerId};
use crate::transport::{Stream, TlsConnector};
use mio::Token;
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::io::Write;
use std::rc::{Rc, Weak};

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
    /// A request may get any number of answers; a 503 status means
    /// nobody listens.
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

/// A client dropped without [`NatsClient::close`] (a federation whose
/// start failed after the connect began, say) takes its socket out of
/// the loop, so that the loop keeps no source for a closed fd, and
/// cancels its timers.
impl Drop for NatsClient {
    fn drop(&mut self) {
        let inner = self.inner.get_mut();
        for t in [inner.timer.take(), inner.ping_timer.take()]
            .into_iter()
            .flatten()
        {
            self.lp.cancel_timer(t);
        }
        if let Some(mut s) = inner.socket.take() {
            self.lp.deregister(&mut s.stream, s.token);
        }
    }
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
    /// Plain TCP until the server's `INFO`, then TLS when it is wanted.
    stream: Stream,
    token: Token,
    phase: Phase,
    /// `host:port`.
    server: String,
    /// The host its certificate must name.
    host: String,
    /// Its URL was `tls://`.
    tls_demanded: bool,
    out: Vec<u8>,
    written: usize,
    pings_out: u32,
    /// The connect completed: the socket was reported ready once.
    connected: bool,
    /// Registered for writability too (while connecting, and while
    /// output waits), so that a host watching the fd level-triggered
    /// is not woken by an idle socket's writability.
    write_interest: bool,
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
    /// The TLS settings, loaded when the first connection needs them.
    tls: Option<TlsConnector>,
    /// The buffer reads go through, kept between reads: zeroing a fresh
    /// 64 KiB buffer on every readable event cost about two thirds of a
    /// broker's instructions per federated call
    /// (`bench/profile/fed-rtt.md`).
    read_buf: Vec<u8>,
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
        // Files named in the options are read now, so a bad one is an
        // error at start rather than a connection that never comes.
        let tls = if options.tls.is_set() {
            let connector = crate::transport::load_connector(&options.tls)
                .map_err(|e| NatsError::Invalid(format!("NATS TLS: {}", e.message)))?;
            Some(connector)
        } else {
            None
        };
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
                tls,
                read_buf: Vec::new(),
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
        let size = proto::payload_size(headers, payload);
        self.append_message(subject.len(), size, |out| {
            proto::encode_publish(subject, reply, headers, payload, out)
                .map_err(|e| NatsError::Invalid(e.0))
        })
    }

    /// Publishes one message of `len` bytes that `write` appends straight
    /// to the output buffer (a link message is encoded there, not into a
    /// buffer of its own first). Refused, and `write` not called, as
    /// [`NatsClient::publish`] refuses; a `write` that appends other than
    /// `len` bytes is a bug: the message is taken back and refused.
    pub fn publish_with(
        &self,
        subject: &proto::Subject,
        reply: Option<&proto::Subject>,
        len: usize,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> Result<(), NatsError> {
        let subject = subject.as_str();
        self.append_message(subject.len(), len, |out| {
            proto::push_pub_line(subject, reply.map(proto::Subject::as_str), len, out);
            let start = out.len();
            write(out);
            let written = out.len() - start;
            if written != len {
                return Err(NatsError::Invalid(format!(
                    "a payload announced as {len} bytes was {written}"
                )));
            }
            out.extend_from_slice(b"\r\n");
            Ok(())
        })
    }

    /// Appends one message (`encode` writes it) to the current
    /// connection's output, after the checks every publish makes: not
    /// closed, connected, a payload of `size` within `max_payload`, room
    /// in the output queue. What a failed `encode` appended is taken
    /// back.
    fn append_message(
        &self,
        subject_len: usize,
        size: usize,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<(), NatsError>,
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
        if size > max {
            return Err(NatsError::TooLarge { size, max });
        }
        if s.out.len() - s.written + size + subject_len + 64 > max_queued {
            return Err(NatsError::QueueFull);
        }
        let before = s.out.len();
        if let Err(e) = encode(&mut s.out) {
            s.out.truncate(before);
            return Err(e);
        }
        let flush_wanted = inner.flush_wanted;
        drop(inner);
        if !flush_wanted {
            self.want_flush();
        }
        Ok(())
    }

    /// Publishes a request whose answers come back as
    /// [`NatsEvent::Reply`] with the returned token. The client keeps no
    /// state per request: answers come for as long as responders send
    /// them, and the owner ignores those it no longer waits for.
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

    /// Writes what is queued now, as far as the socket takes it (before
    /// a close, say), instead of at the end of the loop's turn.
    pub fn flush_now(&self) {
        self.write_out();
    }

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
