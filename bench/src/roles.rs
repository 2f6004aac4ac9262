//! The processes of a brokered case other than the broker: publisher,
//! caller(s) and the loader that fills a broker for the scaling case.

use crate::{fail, now_ns, payload, SLICE};
use stagebus::{
    Address, Args, CallEvent, Client, ClientConfig, Delivery, EventLoop, FdEvents, Inbound,
    RemoteStage, Request, Stage, Value,
};
use std::cell::{Cell, RefCell};
use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

/// Emits a stream sends per loop turn before yielding (and flushing).
const STREAM_CHUNK: u64 = 1000;

fn address(s: Option<&String>) -> Address {
    s.unwrap_or_else(|| fail("missing broker address"))
        .parse()
        .unwrap_or_else(|e| fail(format!("bad address: {e}")))
}

fn arg_u64(args: &[String], i: usize, what: &str) -> u64 {
    args.get(i)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fail(format!("missing or bad {what}")))
}

/// The roles' client settings: pings off when `SBBENCH_NOPING` is set.
pub(crate) fn config() -> ClientConfig {
    let mut config = ClientConfig::default().with_tls(crate::tls::client_tls());
    if std::env::var_os("SBBENCH_NOPING").is_some() {
        config.ping_interval = Duration::ZERO;
    }
    config
}

/// Connects and waits for the handshake.
pub(crate) fn connect(lp: &EventLoop, addr: &Address) -> Client {
    connect_with(lp, addr, config())
}

/// Connects with `config` and waits for the handshake.
pub(crate) fn connect_with(lp: &EventLoop, addr: &Address, config: ClientConfig) -> Client {
    let client = Client::connect(lp, addr, config);
    let ok = Rc::new(Cell::new(false));
    let o = ok.clone();
    client.on_connect(move |r| match r {
        Ok(_) => o.set(true),
        Err(e) => fail(format!("connect: {e}")),
    });
    if !lp.run_until(Duration::from_secs(10), || ok.get()).unwrap() {
        fail("connect timed out");
    }
    client
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn print_list(tag: &str, v: &[u64]) {
    let mut s = String::with_capacity(v.len() * 8 + 16);
    s.push_str(tag);
    for x in v {
        s.push(' ');
        s.push_str(&x.to_string());
    }
    say(&s);
}

// ---------------------------------------------------------------------
// Publisher

/// Publishes session `bench` (echo, stream, hold) through the raw client
/// API and stage `bench_stage` (echo) through the request machinery,
/// prints `ready`, and serves until the broker goes away.
///
/// With `--reconnect` it reconnects (default policy) and publishes again
/// when the broker comes back, as `stagebus serve` does.
pub fn publisher(args: &[String]) -> ExitCode {
    let addr = address(args.first());
    let lp = EventLoop::new().unwrap();
    let mut config = config();
    if args.iter().any(|a| a == "--reconnect") {
        config = config.with_reconnect(stagebus::ReconnectPolicy::default());
    }
    let client = connect_with(&lp, &addr, config);
    client.on_disconnect(|_| std::process::exit(0));
    let published = Rc::new(Cell::new(0));
    let lp2 = lp.clone();
    let p = published.clone();
    client.publish(
        "bench",
        &["echo", "stream", "hold"],
        move |d, inbound| {
            if let Inbound::Call { method, args } = inbound {
                match method.as_str() {
                    "echo" => {
                        let _ = d.respond("return", &args);
                    }
                    "stream" => {
                        let n = args.get("n").and_then(Value::as_int).unwrap_or(0) as u64;
                        stream(&lp2, d.clone(), n, Rc::new(payload()));
                    }
                    // hold: never answered; the broker keeps it pending.
                    _ => {}
                }
            }
        },
        move |r| {
            r.unwrap_or_else(|e| fail(format!("publish bench: {e}")));
            p.set(p.get() + 1);
        },
    );
    let stage = Stage::new(&lp, "bench_stage");
    stage.on("echo", |ctx| ctx.ret("return", ctx.args()));
    let p = published.clone();
    stage.publish(&client, "bench_stage", &["echo"], move |r| {
        r.unwrap_or_else(|e| fail(format!("publish bench_stage: {e}")));
        p.set(p.get() + 1);
    });
    if !lp
        .run_until(Duration::from_secs(10), || published.get() == 2)
        .unwrap()
    {
        fail("publish timed out");
    }
    say("ready");
    let _ = lp.run();
    ExitCode::SUCCESS
}

/// Emits `left` interim responses, STREAM_CHUNK per loop turn, then
/// returns.
fn stream(lp: &EventLoop, d: Delivery, left: u64, data: Rc<Args>) {
    let n = left.min(STREAM_CHUNK);
    for _ in 0..n {
        if let Err(e) = d.emit("emit", &data) {
            fail(format!("emit: {e}"));
        }
    }
    if left > n {
        lp.defer(move |lp| stream(lp, d, left - n, data));
    } else {
        let _ = d.respond("return", &Args::new());
    }
}

// ---------------------------------------------------------------------
// Caller

/// One burst of `total` calls with `inflight` outstanding.
struct Burst {
    lp: EventLoop,
    client: Client,
    args: Args,
    total: u64,
    inflight: u64,
    issued: Cell<u64>,
    done: Cell<u64>,
    /// Per-call round trips (only meaningful with one in flight).
    latency: bool,
    t0: Cell<u64>,
    samples: RefCell<Vec<u64>>,
    checkpoints: RefCell<Vec<u64>>,
    finished: Cell<bool>,
    /// Whether to stop the loop when finished (native driving).
    stop: bool,
    /// The session called (`bench`, or `bench_bal` with `--session`).
    session: String,
}

impl Burst {
    fn start(self: &Rc<Self>) {
        self.checkpoints.borrow_mut().push(now_ns());
        for _ in 0..self.inflight.min(self.total) {
            self.issue();
        }
    }

    fn issue(self: &Rc<Self>) {
        self.issued.set(self.issued.get() + 1);
        if self.latency {
            self.t0.set(now_ns());
        }
        let me = self.clone();
        self.client
            .call(&self.session, "echo", &self.args, move |_, ev| match ev {
                CallEvent::Return { .. } => me.complete(),
                CallEvent::Error(e) => fail(format!("call: {e}")),
                CallEvent::Emit { .. } => {}
            })
            .unwrap_or_else(|e| fail(format!("call: {e}")));
    }

    fn complete(self: &Rc<Self>) {
        let now = now_ns();
        if self.latency {
            self.samples.borrow_mut().push(now - self.t0.get());
        }
        let done = self.done.get() + 1;
        self.done.set(done);
        if done.is_multiple_of(SLICE) {
            self.checkpoints.borrow_mut().push(now);
        }
        if self.issued.get() < self.total {
            self.issue();
        }
        if done == self.total {
            self.finished.set(true);
            if self.stop {
                self.lp.stop();
            }
        }
    }
}

/// Who drives the caller's loop.
#[derive(Clone, Copy, PartialEq)]
enum Host {
    /// The loop's own `run`.
    Native,
    /// A host `poll()` loop on the loop's one fd.
    OneFd,
    /// A host `poll()` loop on each of the loop's fds
    /// (`EventLoop::watch_fds`).
    FdByFd,
}

/// Runs the loop natively or as an embedded host would, until `done`.
fn drive(lp: &EventLoop, host: Host, done: impl Fn() -> bool) {
    match host {
        Host::Native => lp.run().unwrap(),
        Host::OneFd => drive_one_fd(lp, done),
        Host::FdByFd => drive_fd_by_fd(lp, done),
    }
}

/// The host's own loop, fd by fd: `poll()` on every fd the loop told it
/// of, with the loop's timeout; `dispatch_fd` for each ready one, or
/// `dispatch` when none is.
fn drive_fd_by_fd(lp: &EventLoop, done: impl Fn() -> bool) {
    let fds: Rc<RefCell<Vec<libc::pollfd>>> = Rc::default();
    let watched = fds.clone();
    lp.watch_fds(move |fd, events| {
        let mut fds = watched.borrow_mut();
        fds.retain(|p| p.fd != fd);
        if !events.is_none() {
            let mask = if events.readable { libc::POLLIN } else { 0 }
                | if events.writable { libc::POLLOUT } else { 0 };
            fds.push(libc::pollfd {
                fd,
                events: mask,
                revents: 0,
            });
        }
    })
    .unwrap();
    let mut polled: Vec<libc::pollfd> = Vec::new();
    while !done() {
        let timeout = lp
            .timeout_ms()
            .map_or(-1, |ms| ms.min(i32::MAX as u64) as i32);
        polled.clear();
        polled.extend_from_slice(&fds.borrow());
        // SAFETY: `polled` is a valid array of its length.
        let n = unsafe { libc::poll(polled.as_mut_ptr(), polled.len() as libc::nfds_t, timeout) };
        if n <= 0 {
            lp.dispatch().unwrap();
            continue;
        }
        for p in polled.iter().filter(|p| p.revents != 0) {
            let events = FdEvents {
                readable: p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0,
                writable: p.revents & libc::POLLOUT != 0,
            };
            lp.dispatch_fd(p.fd, events).unwrap();
        }
    }
    lp.unwatch_fds().unwrap();
}

/// The host's own loop: poll() on the loop's fd with its timeout, then
/// a non-blocking dispatch.
fn drive_one_fd(lp: &EventLoop, done: impl Fn() -> bool) {
    let fd = lp.fd();
    while !done() {
        let timeout = lp
            .timeout_ms()
            .map_or(-1, |ms| ms.min(i32::MAX as u64) as i32);
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, timeout) };
        lp.dispatch().unwrap();
    }
}

fn barrier() {
    say("ready");
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
}

/// `caller ADDR MODE WARM N K [--barrier]`.
///
/// MODE: `seq` (native loop, one in flight, per-call samples), `embedded`
/// (the same driven by a host poll() loop on the loop's fd),
/// `embedded.fds` (the same, the host polling each of the loop's fds),
/// `pipe` (K in flight,
/// checkpoints every SLICE calls), `request` (one in flight through
/// Request/RemoteStage), `stream` (one call answered with N emits,
/// checkpoints every SLICE emits).
pub fn caller(args: &[String]) -> ExitCode {
    let addr = address(args.first());
    let mode = args.get(1).map(String::as_str).unwrap_or("");
    let warm = arg_u64(args, 2, "WARM");
    let n = arg_u64(args, 3, "N");
    let k = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(1u64);
    let with_barrier = args.iter().any(|a| a == "--barrier");
    let session = args
        .iter()
        .position(|a| a == "--session")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| "bench".to_string());
    let lp = EventLoop::new().unwrap();
    let client = connect(&lp, &addr);
    match mode {
        "seq" | "embedded" | "embedded.fds" | "pipe" => {
            let host = match mode {
                "embedded" => Host::OneFd,
                "embedded.fds" => Host::FdByFd,
                _ => Host::Native,
            };
            let latency = mode != "pipe";
            let inflight = if latency { 1 } else { k.max(1) };
            let burst = |total| {
                Rc::new(Burst {
                    lp: lp.clone(),
                    client: client.clone(),
                    args: payload(),
                    total,
                    inflight,
                    issued: Cell::new(0),
                    done: Cell::new(0),
                    latency,
                    t0: Cell::new(0),
                    samples: RefCell::new(Vec::with_capacity(total as usize)),
                    checkpoints: RefCell::new(Vec::new()),
                    finished: Cell::new(false),
                    stop: host == Host::Native,
                    session: session.clone(),
                })
            };
            if warm > 0 {
                let b = burst(warm);
                b.start();
                drive(&lp, host, || b.finished.get());
            }
            if with_barrier {
                barrier();
            }
            let b = burst(n);
            b.start();
            drive(&lp, host, || b.finished.get());
            if latency {
                print_list("SAMPLES", &b.samples.borrow());
            } else {
                print_list("CHECKPOINTS", &b.checkpoints.borrow());
            }
        }
        "request" => {
            let remote = Rc::new(RefCell::new(None));
            let r = remote.clone();
            RemoteStage::subscribe(&client, "bench_stage", move |res| {
                *r.borrow_mut() = Some(res.unwrap_or_else(|e| fail(format!("subscribe: {e}"))));
            });
            lp.run_until(Duration::from_secs(10), || remote.borrow().is_some())
                .unwrap();
            let remote = remote
                .borrow_mut()
                .take()
                .unwrap_or_else(|| fail("subscribe timed out"));
            if warm > 0 {
                run_requests(&lp, &remote, warm);
            }
            let samples = run_requests(&lp, &remote, n);
            print_list("SAMPLES", &samples);
        }
        "stream" => {
            if warm > 0 {
                run_stream(&lp, &client, warm);
            }
            let cps = run_stream(&lp, &client, n);
            print_list("CHECKPOINTS", &cps);
        }
        other => fail(format!("unknown caller mode '{other}'")),
    }
    client.close();
    ExitCode::SUCCESS
}

struct ReqBurst {
    lp: EventLoop,
    remote: RemoteStage,
    args: Args,
    total: u64,
    t0: Cell<u64>,
    samples: RefCell<Vec<u64>>,
    current: RefCell<Option<Request>>,
}

impl ReqBurst {
    fn issue(self: &Rc<Self>) {
        self.t0.set(now_ns());
        let me = self.clone();
        let req = Request::to(&self.remote, "echo")
            .args(self.args.clone())
            .on("return", move |_| {
                me.complete();
                Ok(())
            })
            .on("error", |ctx| {
                fail(format!("request failed: {:?}", ctx.args()))
            })
            .send()
            .unwrap_or_else(|e| fail(format!("send: {e}")));
        // Replaces the finished request (dropping a finished one is a
        // no-op).
        let old = self.current.borrow_mut().replace(req);
        drop(old);
    }

    fn complete(self: &Rc<Self>) {
        let now = now_ns();
        let mut s = self.samples.borrow_mut();
        s.push(now - self.t0.get());
        let more = (s.len() as u64) < self.total;
        drop(s);
        if more {
            self.issue();
        } else {
            self.lp.stop();
        }
    }
}

/// Sequential requests through the request machinery to a remote stage.
fn run_requests(lp: &EventLoop, remote: &RemoteStage, total: u64) -> Vec<u64> {
    let b = Rc::new(ReqBurst {
        lp: lp.clone(),
        remote: remote.clone(),
        args: payload(),
        total,
        t0: Cell::new(0),
        samples: RefCell::new(Vec::with_capacity(total as usize)),
        current: RefCell::new(None),
    });
    b.issue();
    lp.run().unwrap();
    b.current.borrow_mut().take();
    let v = b.samples.borrow().clone();
    v
}

/// One call answered with `n` emits; checkpoints every SLICE emits.
fn run_stream(lp: &EventLoop, client: &Client, n: u64) -> Vec<u64> {
    let cps = Rc::new(RefCell::new(vec![now_ns()]));
    let count = Rc::new(Cell::new(0u64));
    let (c, k, l) = (cps.clone(), count.clone(), lp.clone());
    client
        .call(
            "bench",
            "stream",
            &Args::new().with("n", n as i64),
            move |_, ev| match ev {
                CallEvent::Emit { .. } => {
                    let done = k.get() + 1;
                    k.set(done);
                    if done.is_multiple_of(SLICE) {
                        c.borrow_mut().push(now_ns());
                    }
                }
                CallEvent::Return { .. } => l.stop(),
                CallEvent::Error(e) => fail(format!("stream: {e}")),
            },
        )
        .unwrap_or_else(|e| fail(format!("call: {e}")));
    lp.run().unwrap();
    if count.get() != n {
        fail(format!("stream: {} emits, expected {n}", count.get()));
    }
    let v = cps.borrow().clone();
    v
}

// ---------------------------------------------------------------------
// Loader

/// Sessions per publishing connection (the broker's default limit is
/// 4096 per connection).
const SESSIONS_PER_CONN: u64 = 4000;
/// Connections opened at once (under the listen backlog).
const CONNECT_BATCH: u64 = 100;

/// Fills a broker on command, one command per stdin line, answering `ok`:
/// `sessions N` (N published sessions over N/4000 connections),
/// `pending N` (a `sink` session whose publisher never answers, and N
/// calls to it from another connection, all delivered), `conns N` (N
/// idle, handshaken connections), `raw N` (N connections that never say
/// hello), `unraw` (closes those), `quit`.
pub fn loader(args: &[String]) -> ExitCode {
    let addr = address(args.first());
    let lp = EventLoop::new().unwrap();
    let mut keep: Vec<Client> = Vec::new();
    let mut raw: Vec<Box<dyn std::any::Any>> = Vec::new();
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let mut it = line.split_whitespace();
        let cmd = it.next().unwrap_or("");
        let n: u64 = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        match cmd {
            "sessions" => {
                let left = Rc::new(Cell::new(n));
                let conns = n.div_ceil(SESSIONS_PER_CONN);
                for c in 0..conns {
                    let client = connect(&lp, &addr);
                    let from = c * SESSIONS_PER_CONN;
                    for i in from..(from + SESSIONS_PER_CONN).min(n) {
                        let l = left.clone();
                        client.publish(
                            &format!("load.{i}"),
                            &["m"],
                            |_, _| {},
                            move |r| {
                                r.unwrap_or_else(|e| fail(format!("publish: {e}")));
                                l.set(l.get() - 1);
                            },
                        );
                    }
                    keep.push(client);
                }
                if !lp
                    .run_until(Duration::from_secs(60), || left.get() == 0)
                    .unwrap()
                {
                    fail("publishing timed out");
                }
            }
            "pending" => {
                let publisher = connect(&lp, &addr);
                let got = Rc::new(Cell::new(0u64));
                let ready = Rc::new(Cell::new(false));
                let (g, r) = (got.clone(), ready.clone());
                publisher.publish(
                    "sink",
                    &["hold"],
                    move |_, inbound| {
                        if let Inbound::Call { .. } = inbound {
                            g.set(g.get() + 1);
                        }
                    },
                    move |res| {
                        res.unwrap_or_else(|e| fail(format!("publish sink: {e}")));
                        r.set(true);
                    },
                );
                lp.run_until(Duration::from_secs(10), || ready.get())
                    .unwrap();
                let caller = connect(&lp, &addr);
                let data = payload();
                for _ in 0..n {
                    caller
                        .call("sink", "hold", &data, |_, ev| {
                            if let CallEvent::Error(e) = ev {
                                fail(format!("pending call: {e}"));
                            }
                        })
                        .unwrap_or_else(|e| fail(format!("call: {e}")));
                }
                if !lp
                    .run_until(Duration::from_secs(60), || got.get() == n)
                    .unwrap()
                {
                    fail(format!("only {} of {n} calls delivered", got.get()));
                }
                keep.push(publisher);
                keep.push(caller);
            }
            "conns" => {
                let mut left = n;
                while left > 0 {
                    let batch = left.min(CONNECT_BATCH);
                    let ok = Rc::new(Cell::new(0u64));
                    for _ in 0..batch {
                        let client = Client::connect(&lp, &addr, config());
                        let o = ok.clone();
                        client.on_connect(move |r| {
                            r.unwrap_or_else(|e| fail(format!("connect: {e}")));
                            o.set(o.get() + 1);
                        });
                        keep.push(client);
                    }
                    if !lp
                        .run_until(Duration::from_secs(30), || ok.get() == batch)
                        .unwrap()
                    {
                        fail("connecting timed out");
                    }
                    left -= batch;
                }
            }
            "raw" => {
                // Connections that never say hello, held open (the
                // broker caps them at its max-unauthenticated, 1024 by
                // default).
                for _ in 0..n {
                    let stream: Box<dyn std::any::Any> = match &addr {
                        Address::Tcp(a) => Box::new(
                            std::net::TcpStream::connect(a)
                                .unwrap_or_else(|e| fail(format!("raw connect: {e}"))),
                        ),
                        Address::Unix(p) => Box::new(
                            std::os::unix::net::UnixStream::connect(p)
                                .unwrap_or_else(|e| fail(format!("raw connect: {e}"))),
                        ),
                        Address::Tls { .. } => fail("raw connections are plain"),
                    };
                    raw.push(stream);
                }
            }
            "unraw" => raw.clear(),
            "quit" => break,
            other => fail(format!("loader: unknown command '{other}'")),
        }
        say("ok");
    }
    // Exit without closing each client: the broker sees the process go.
    std::process::exit(0)
}
