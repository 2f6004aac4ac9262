//! Shared helpers for the broker and client tests (proxysession, routing,
//! wire_fuzz, embedded).
//!
//! * [`Harness`]: a loop and a broker on a kernel-chosen address, TCP on
//!   127.0.0.1 port 0 or a Unix socket in a fresh temp dir that is removed
//!   afterwards; [`Harness::client`] connects and waits for the handshake.
//! * [`Slot`] and [`wait`]: a callback fills a slot (exactly once, or the
//!   test fails); `wait` drives the loop until it is filled.
//! * Blocking wrappers of the client operations ([`publish`], [`listing`],
//!   [`subscribe`], [`call`], …) for the steps a test is not about.
//! * [`Raw`]: a connection that speaks frames by hand, non-blocking, so
//!   that the loop it talks to can run on the same thread.
//! * [`Relay`]: a frame-aware relay between a client and the broker that
//!   can inject frames toward the client (the original test posted fake
//!   messages straight into its client's input handler).
//!
//! * [`fd_host::FdHost`]: a `poll(2)` host that watches the loop's fds one by one.
//!
//! Nothing here sleeps to let things settle: every wait is a loop run
//! until a condition holds, bounded by [`LIMIT`].
#![allow(dead_code)]

pub mod fd_host;

use stagebus::wire::{
    encode_frame, Frame, FrameDecoder, SessionInfo, DEFAULT_MAX_FRAME, MAGIC, PROTOCOL_VERSION,
};
use stagebus::*;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long any wait may take before the test fails. Every wait ends as
/// soon as its condition holds, so this only matters when one fails.
pub const LIMIT: Duration = Duration::from_secs(10);

/// Which kind of socket a test runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TCP on 127.0.0.1, port 0.
    Tcp,
    /// A Unix stream socket in a fresh temp dir.
    Unix,
}

/// Generates `name::tcp` and `name::unix`, two `#[test]`s running the
/// scenario function `fn name(t: Transport)` over each transport. Use with
/// `#[macro_use] mod common;`.
#[allow(unused_macros)]
macro_rules! over_both {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn tcp() {
                    super::$name(crate::common::Transport::Tcp)
                }
                #[test]
                fn unix() {
                    super::$name(crate::common::Transport::Unix)
                }
            }
        )*
    };
}

/// A directory under `std::env::temp_dir()` with a unique name, removed
/// with everything in it on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `stagebus-<tag>-<pid>-<n>-<nanos>`.
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path =
            std::env::temp_dir().join(format!("stagebus-{tag}-{}-{n}-{nanos}", std::process::id()));
        std::fs::create_dir(&path).expect("create a temp dir");
        TempDir { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The loopback TCP address with a kernel-chosen port.
pub fn tcp_any() -> Address {
    Address::Tcp("127.0.0.1:0".parse().unwrap())
}

/// A loop and a broker listening on one (or both) transports.
pub struct Harness {
    /// The loop everything of this test lives on.
    pub lp: EventLoop,
    /// The broker.
    pub broker: Broker,
    /// Where the broker listens (the first address).
    pub addr: Address,
    /// Every address the broker listens on.
    pub addrs: Vec<Address>,
    /// Holds the Unix socket; declared last so that it outlives the broker.
    dir: TempDir,
}

impl Harness {
    /// A broker with default limits on `t`.
    pub fn new(t: Transport) -> Harness {
        Harness::with(t, |_| {})
    }

    /// A broker on `t` whose config `adjust` may change (limits, token).
    pub fn with(t: Transport, adjust: impl FnOnce(&mut BrokerConfig)) -> Harness {
        Harness::listening(&[t], adjust)
    }

    /// A broker listening on every transport of `ts`, in that order.
    pub fn listening(ts: &[Transport], adjust: impl FnOnce(&mut BrokerConfig)) -> Harness {
        let dir = TempDir::new("broker");
        let listen: Vec<Address> = ts
            .iter()
            .map(|t| match t {
                Transport::Tcp => tcp_any(),
                Transport::Unix => Address::Unix(dir.path().join("broker.sock")),
            })
            .collect();
        let mut config = BrokerConfig::listening(listen);
        adjust(&mut config);
        let lp = EventLoop::new().unwrap();
        let broker = Broker::new(&lp, config).unwrap();
        let addrs = broker.local_addresses();
        for a in &addrs {
            if let Address::Tcp(sa) = a {
                assert!(sa.ip().is_loopback() && sa.port() != 0, "{a}");
            }
        }
        Harness {
            lp,
            addr: addrs[0].clone(),
            addrs,
            broker,
            dir,
        }
    }

    /// The broker's address of transport `t`.
    pub fn address(&self, t: Transport) -> Address {
        self.addrs
            .iter()
            .find(|a| {
                matches!(
                    (a, t),
                    (Address::Tcp(_), Transport::Tcp) | (Address::Unix(_), Transport::Unix)
                )
            })
            .cloned()
            .expect("the broker listens on that transport")
    }

    /// A client connected to the broker, handshake done.
    #[track_caller]
    pub fn client(&self) -> Client {
        self.client_to(&self.addr, ClientConfig::default())
    }

    /// A client with `config`, handshake done.
    #[track_caller]
    pub fn client_with(&self, config: ClientConfig) -> Client {
        self.client_to(&self.addr, config)
    }

    /// A client connected to `addr`, handshake done.
    #[track_caller]
    pub fn client_to(&self, addr: &Address, config: ClientConfig) -> Client {
        let c = Client::connect(&self.lp, addr, config);
        let done = Slot::new();
        c.on_connect(done.setter());
        let info = wait(&self.lp, &done).expect("connect");
        assert!(info.connection_id > 0);
        assert!(c.is_connected());
        c
    }

    /// Runs the loop until `cond` holds; fails the test after [`LIMIT`].
    #[track_caller]
    pub fn until(&self, what: &str, cond: impl FnMut() -> bool) {
        until(&self.lp, what, cond)
    }
}

/// Runs `lp` until `cond` holds; fails the test after [`LIMIT`].
#[track_caller]
pub fn until(lp: &EventLoop, what: &str, cond: impl FnMut() -> bool) {
    assert!(
        lp.run_until(LIMIT, cond).unwrap(),
        "timed out waiting for: {what}"
    );
}

/// A value a callback sets once.
pub struct Slot<T>(Rc<RefCell<Option<T>>>, Rc<RefCell<u32>>);

impl<T> Clone for Slot<T> {
    fn clone(&self) -> Self {
        Slot(self.0.clone(), self.1.clone())
    }
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Slot(Rc::new(RefCell::new(None)), Rc::new(RefCell::new(0)))
    }
}

impl<T: 'static> Slot<T> {
    /// An empty slot.
    pub fn new() -> Slot<T> {
        Slot::default()
    }

    /// Fills the slot; fails the test if it was ever filled before (a
    /// completion that ran twice).
    pub fn set(&self, v: T) {
        *self.1.borrow_mut() += 1;
        assert_eq!(*self.1.borrow(), 1, "a completion ran more than once");
        *self.0.borrow_mut() = Some(v);
    }

    /// A callback that fills the slot.
    pub fn setter(&self) -> impl FnOnce(T) + 'static {
        let s = self.clone();
        move |v| s.set(v)
    }

    /// Whether the slot was ever filled.
    pub fn is_set(&self) -> bool {
        *self.1.borrow() > 0
    }

    /// How many times it was filled (0 or 1, or the test failed).
    pub fn times(&self) -> u32 {
        *self.1.borrow()
    }

    /// Takes the value out (the slot stays "filled once").
    pub fn take(&self) -> Option<T> {
        self.0.borrow_mut().take()
    }
}

/// Runs the loop until the slot is filled and returns its value.
#[track_caller]
pub fn wait<T: 'static>(lp: &EventLoop, slot: &Slot<T>) -> T {
    until(lp, "a completion", || slot.is_set());
    slot.take().expect("the value was taken already")
}

/// A shared log that callbacks append to.
pub type Log<T> = Rc<RefCell<Vec<T>>>;

/// An empty log.
pub fn log<T>() -> Log<T> {
    Rc::new(RefCell::new(Vec::new()))
}

/// A client connected to `addr` with `config`, the handshake done.
#[track_caller]
pub fn connect_with(lp: &EventLoop, addr: &Address, config: ClientConfig) -> Client {
    let c = Client::connect(lp, addr, config);
    let done = Slot::new();
    c.on_connect(done.setter());
    wait(lp, &done).expect("connect");
    c
}

/// A client connected to `addr` with the default config.
#[track_caller]
pub fn connected(lp: &EventLoop, addr: &Address) -> Client {
    connect_with(lp, addr, ClientConfig::default())
}

/// Publishes and waits for the broker's answer.
#[track_caller]
pub fn publish(
    c: &Client,
    session: &str,
    methods: &[&str],
    serve: impl FnMut(&Delivery, Inbound) + 'static,
) -> Result<(), Error> {
    let done = Slot::new();
    c.publish(session, methods, serve, done.setter());
    wait(c.event_loop(), &done)
}

/// Lists and waits.
#[track_caller]
pub fn listing(c: &Client) -> Result<Vec<SessionInfo>, Error> {
    let done = Slot::new();
    c.listing(done.setter());
    wait(c.event_loop(), &done)
}

/// The published names, in the broker's order.
#[track_caller]
pub fn names(c: &Client) -> Vec<String> {
    listing(c)
        .expect("listing")
        .into_iter()
        .map(|s| s.name)
        .collect()
}

/// Turns `c`'s loop until its listing names exactly `expected`, in the
/// broker's order; fails the test after [`LIMIT`]. Each try is a listing
/// of its own between short turns of the loop: a listing run inside
/// another run's condition would take the events that run waits for,
/// and leave it waiting out its whole limit.
#[track_caller]
pub fn until_listed(c: &Client, expected: &[&str]) {
    let deadline = Instant::now() + LIMIT;
    let mut last = Vec::new();
    while !(c.is_connected() && {
        last = names(c);
        last == expected
    }) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for the listing {expected:?} (last {last:?})"
        );
        c.event_loop()
            .run_until(Duration::from_millis(20), || false)
            .unwrap();
    }
}

/// Subscribes and waits.
#[track_caller]
pub fn subscribe(c: &Client, session: &str) -> Result<Vec<String>, Error> {
    let done = Slot::new();
    c.subscribe(session, done.setter());
    wait(c.event_loop(), &done)
}

/// Unsubscribes and waits (a refusal at once is returned as is).
#[track_caller]
pub fn unsubscribe(c: &Client, session: &str) -> Result<(), Error> {
    let done = Slot::new();
    c.unsubscribe(session, done.setter())?;
    wait(c.event_loop(), &done)
}

/// Rescinds and waits (a refusal at once is returned as is).
#[track_caller]
pub fn rescind(c: &Client, session: &str) -> Result<(), Error> {
    let done = Slot::new();
    c.rescind(session, done.setter())?;
    wait(c.event_loop(), &done)
}

/// Everything a call received: its emits, then its final event.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The emits, in arrival order.
    pub emits: Vec<CallEvent>,
    /// The `Return` or `Error`.
    pub last: CallEvent,
}

/// Starts a call whose events go to the returned slot once final.
pub fn start_call(c: &Client, session: &str, method: &str, args: &Args) -> (CallId, Slot<Outcome>) {
    let done = Slot::new();
    let d = done.clone();
    let mut emits = Vec::new();
    let id = c
        .call(session, method, args, move |_, ev| match ev {
            CallEvent::Emit { .. } => emits.push(ev),
            last => d.set(Outcome {
                emits: std::mem::take(&mut emits),
                last,
            }),
        })
        .expect("the call is refused at once");
    (id, done)
}

/// Calls and waits for the final event.
#[track_caller]
pub fn call(c: &Client, session: &str, method: &str, args: &Args) -> Outcome {
    let (_, done) = start_call(c, session, method, args);
    wait(c.event_loop(), &done)
}

/// The error code a call ended with, `None` for a return.
pub fn error_code(outcome: &Outcome) -> Option<ErrorCode> {
    match &outcome.last {
        CallEvent::Error(e) => Some(e.code),
        _ => None,
    }
}

/// The error of a final event, or a test failure.
#[track_caller]
pub fn call_error(ev: &CallEvent) -> &Error {
    match ev {
        CallEvent::Error(e) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

/// A serve handler answering every call with its own args.
pub fn echo() -> impl FnMut(&Delivery, Inbound) + 'static {
    |d: &Delivery, inbound: Inbound| {
        if let Inbound::Call { args, .. } = inbound {
            d.respond("return", &args).unwrap();
        }
    }
}

/// Every delivery and inbound message a publisher saw.
pub type Served = Log<(Delivery, Inbound)>;

/// A serve handler that records everything and answers nothing.
pub fn holder() -> (Served, impl FnMut(&Delivery, Inbound) + 'static) {
    let served: Served = log();
    let s = served.clone();
    (served, move |d: &Delivery, inbound: Inbound| {
        s.borrow_mut().push((d.clone(), inbound))
    })
}

/// Args with one value, for short call sites.
pub fn arg(name: &str, v: impl Into<Value>) -> Args {
    Args::new().with(name, v)
}

/// A small deterministic PRNG (xorshift64*), for shuffles and fuzzing.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// Seeded; a zero seed is replaced (xorshift must not start at 0).
    pub fn new(seed: u64) -> XorShift {
        XorShift(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Shuffles in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

// ---------------------------------------------------------------------
// Raw connections: frames by hand.

/// A plain std socket of either kind.
#[derive(Debug)]
pub enum RawStream {
    /// TCP.
    Tcp(std::net::TcpStream),
    /// Unix.
    Unix(std::os::unix::net::UnixStream),
}

impl RawStream {
    /// A blocking connect to `addr` (the broker's listen backlog accepts
    /// it even while its loop is not running), without Nagle's delay.
    pub fn connect(addr: &Address) -> RawStream {
        match addr {
            Address::Tcp(sa) => {
                let s = std::net::TcpStream::connect(sa).unwrap();
                // Small pieces leave at once, as the test splits them.
                s.set_nodelay(true).unwrap();
                RawStream::Tcp(s)
            }
            Address::Unix(p) => {
                RawStream::Unix(std::os::unix::net::UnixStream::connect(p).unwrap())
            }
            Address::Tls { .. } => panic!("a raw stream speaks no TLS: {addr}"),
        }
    }

    /// Another handle to the same socket.
    pub fn try_clone(&self) -> io::Result<RawStream> {
        Ok(match self {
            RawStream::Tcp(s) => RawStream::Tcp(s.try_clone()?),
            RawStream::Unix(s) => RawStream::Unix(s.try_clone()?),
        })
    }

    /// Shuts down one or both directions.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            RawStream::Tcp(s) => s.shutdown(how),
            RawStream::Unix(s) => s.shutdown(how),
        }
    }

    /// Switches non-blocking mode.
    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            RawStream::Tcp(s) => s.set_nonblocking(on),
            RawStream::Unix(s) => s.set_nonblocking(on),
        }
    }
}

impl Read for RawStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            RawStream::Tcp(s) => s.read(buf),
            RawStream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for RawStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            RawStream::Tcp(s) => s.write(buf),
            RawStream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The bytes of one frame.
pub fn frame_bytes(frame: &Frame) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(frame, &mut out, DEFAULT_MAX_FRAME).unwrap();
    out
}

/// A hello with an optional token.
pub fn hello(token: Option<&str>) -> Frame {
    Frame::Hello {
        magic: MAGIC,
        version: PROTOCOL_VERSION,
        token: token.map(str::to_string),
    }
}

/// A non-blocking hand-driven connection to a broker on the same loop.
pub struct Raw {
    /// The socket.
    pub stream: RawStream,
    decoder: FrameDecoder,
    frames: VecDeque<Frame>,
    /// The peer closed the connection (EOF or reset).
    pub closed: bool,
}

impl Raw {
    /// Connects (no hello yet).
    pub fn connect(addr: &Address) -> Raw {
        let stream = RawStream::connect(addr);
        stream.set_nonblocking(true).unwrap();
        Raw {
            stream,
            decoder: FrameDecoder::new(DEFAULT_MAX_FRAME),
            frames: VecDeque::new(),
            closed: false,
        }
    }

    /// Connects and completes the handshake; returns the connection id.
    #[track_caller]
    pub fn handshaken(lp: &EventLoop, addr: &Address) -> Raw {
        let mut raw = Raw::connect(addr);
        raw.send(lp, &hello(None));
        match raw.next(lp) {
            Frame::Welcome { connection_id, .. } => assert!(connection_id > 0),
            other => panic!("expected welcome, got {other:?}"),
        }
        raw
    }

    /// Sends a frame.
    #[track_caller]
    pub fn send(&mut self, lp: &EventLoop, frame: &Frame) {
        self.send_bytes(lp, &frame_bytes(frame));
    }

    /// Writes all of `bytes`, running the loop while the socket is full.
    /// Returns false if the peer closed the connection first.
    #[track_caller]
    pub fn send_bytes(&mut self, lp: &EventLoop, mut bytes: &[u8]) -> bool {
        let deadline = Instant::now() + LIMIT;
        while !bytes.is_empty() {
            match self.stream.write(bytes) {
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "the peer never read");
                    lp.dispatch().unwrap();
                    self.pump();
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.closed = true;
                    return false;
                }
            }
        }
        true
    }

    /// Reads whatever has arrived; notes a close.
    pub fn pump(&mut self) {
        let mut buf = [0u8; 16 * 1024];
        while !self.closed {
            match self.stream.read(&mut buf) {
                Ok(0) => self.closed = true,
                Ok(n) => {
                    self.decoder.push(&buf[..n]);
                    while let Some(f) = self.decoder.next_frame().expect("the broker sent garbage")
                    {
                        self.frames.push_back(f);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Reset: the broker closed with our input unread.
                Err(_) => self.closed = true,
            }
        }
    }

    /// Runs the loop until a frame arrives and returns it.
    #[track_caller]
    pub fn next(&mut self, lp: &EventLoop) -> Frame {
        until(lp, "a frame from the broker", || {
            self.pump();
            !self.frames.is_empty() || self.closed
        });
        self.frames
            .pop_front()
            .expect("the broker closed the connection instead of answering")
    }

    /// Runs the loop until the broker closes the connection; returns the
    /// frames that arrived before the close.
    #[track_caller]
    pub fn closed_after(&mut self, lp: &EventLoop) -> Vec<Frame> {
        until(lp, "the broker to close the connection", || {
            self.pump();
            self.closed
        });
        self.frames.drain(..).collect()
    }

    /// Frames received and not yet taken.
    pub fn received(&mut self) -> Vec<Frame> {
        self.pump();
        self.frames.drain(..).collect()
    }
}

// ---------------------------------------------------------------------
// A relay that can inject frames toward the client.

/// Relays one client connection to the broker, frame by frame toward the
/// client, and lets the test inject frames into that direction.
pub struct Relay {
    /// Where the client connects.
    pub addr: Address,
    to_client: Arc<Mutex<Option<RawStream>>>,
    from_client: Arc<Mutex<Vec<Frame>>>,
    sockets: Arc<Mutex<Vec<RawStream>>>,
    _dir: TempDir,
}

impl Relay {
    /// A relay listening on `t` toward `upstream`, for one client.
    pub fn new(t: Transport, upstream: &Address) -> Relay {
        let dir = TempDir::new("relay");
        let (addr, listener): (Address, Box<dyn FnOnce() -> RawStream + Send>) = match t {
            Transport::Tcp => {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                let addr = Address::Tcp(l.local_addr().unwrap());
                (
                    addr,
                    Box::new(move || RawStream::Tcp(l.accept().unwrap().0)),
                )
            }
            Transport::Unix => {
                let path = dir.path().join("relay.sock");
                let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
                (
                    Address::Unix(path),
                    Box::new(move || RawStream::Unix(l.accept().unwrap().0)),
                )
            }
        };
        let to_client = Arc::new(Mutex::new(None));
        let from_client = Arc::new(Mutex::new(Vec::new()));
        let sockets = Arc::new(Mutex::new(Vec::new()));
        let upstream = upstream.clone();
        let (tc, fc, socks) = (to_client.clone(), from_client.clone(), sockets.clone());
        std::thread::spawn(move || {
            let client = listener();
            let broker = RawStream::connect(&upstream);
            {
                let mut socks = socks.lock().unwrap();
                socks.push(client.try_clone().unwrap());
                socks.push(broker.try_clone().unwrap());
            }
            *tc.lock().unwrap() = Some(client.try_clone().unwrap());
            // Client → broker: bytes as they come, noting the frames
            // (before forwarding them, so that a test waiting for the
            // broker to react finds them noted).
            let (mut from_client, mut to_broker) = (client, broker.try_clone().unwrap());
            std::thread::spawn(move || {
                let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME);
                let mut buf = [0u8; 16 * 1024];
                while let Ok(n) = from_client.read(&mut buf) {
                    decoder.push(&buf[..n]);
                    while let Ok(Some(frame)) = decoder.next_frame() {
                        fc.lock().unwrap().push(frame);
                    }
                    if n == 0 || to_broker.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = to_broker.shutdown(Shutdown::Write);
            });
            // Broker → client: whole frames, so injections land between.
            let mut from_broker = broker;
            let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME);
            let mut buf = [0u8; 16 * 1024];
            'pump: while let Ok(n) = from_broker.read(&mut buf) {
                if n == 0 {
                    break;
                }
                decoder.push(&buf[..n]);
                while let Ok(Some(frame)) = decoder.next_frame() {
                    let mut guard = tc.lock().unwrap();
                    let Some(w) = guard.as_mut() else { break 'pump };
                    if w.write_all(&frame_bytes(&frame)).is_err() {
                        break 'pump;
                    }
                }
            }
            if let Some(w) = tc.lock().unwrap().as_ref() {
                let _ = w.shutdown(Shutdown::Write);
            }
        });
        Relay {
            addr,
            to_client,
            from_client,
            sockets,
            _dir: dir,
        }
    }

    /// Every frame the client has sent so far.
    pub fn sent_by_client(&self) -> Vec<Frame> {
        self.from_client.lock().unwrap().clone()
    }

    /// Sends `frame` to the client as if the broker had sent it.
    pub fn inject(&self, frame: &Frame) {
        let mut guard = self.to_client.lock().unwrap();
        let w = guard.as_mut().expect("the client has not connected yet");
        w.write_all(&frame_bytes(frame)).unwrap();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        for s in self.sockets.lock().unwrap().iter() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}
