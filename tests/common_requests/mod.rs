//! Shared helpers for the request tests (stage_scenarios, all_call_types,
//! cancel_cascade, request_properties).
//!
//! * [`Fixture`] turns a [`Stage`] into a [`Target`] for a [`Mode`]: the
//!   stage itself (`Local`), or, through a real broker on the same loop, a
//!   [`RemoteStage`] subscribed by one client while another client
//!   publishes the stage (`Remote` over TCP on 127.0.0.1 port 0,
//!   `RemoteUnix` over a Unix socket in a unique temp dir).
//! * [`run_until`] and friends drive the loop until a condition holds,
//!   with a bounded timeout, and report the caller's line on failure.
//! * [`Fixture::barrier`] proves that everything sent before it has been
//!   delivered, instead of sleeping: a request travels the same path as
//!   the calls under test (same loop queue, or same publisher and
//!   subscriber connections), and both paths are FIFO.
#![allow(dead_code)]

use stagebus::*;
use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long any wait may take before the test fails. Generous: every wait
/// ends as soon as its condition holds.
pub const LIMIT: Duration = Duration::from_secs(5);

/// Where the callee lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A stage on the same loop.
    Local,
    /// A session behind a broker listening on TCP 127.0.0.1, port 0.
    Remote,
    /// A session behind a broker listening on a Unix socket.
    RemoteUnix,
}

impl Mode {
    /// Whether requests travel through a broker.
    pub fn is_remote(self) -> bool {
        !matches!(self, Mode::Local)
    }
}

/// Generates one `#[test]` per mode for a scenario function
/// `fn name(mode: Mode)`: `name::local` and `name::remote` (and
/// `name::remote_unix` with `all:`). Use with `#[macro_use] mod
/// common_requests;`.
#[allow(unused_macros)]
macro_rules! in_modes {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn local() {
                    super::$name(crate::common_requests::Mode::Local)
                }
                #[test]
                fn remote() {
                    super::$name(crate::common_requests::Mode::Remote)
                }
            }
        )*
    };
    (all: $($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn local() {
                    super::$name(crate::common_requests::Mode::Local)
                }
                #[test]
                fn remote() {
                    super::$name(crate::common_requests::Mode::Remote)
                }
                #[test]
                fn remote_unix() {
                    super::$name(crate::common_requests::Mode::RemoteUnix)
                }
            }
        )*
    };
}

/// Drives `lp` until `cond` holds; fails the test (at the caller's line)
/// after [`LIMIT`].
#[track_caller]
pub fn run_until(lp: &EventLoop, what: &str, cond: impl FnMut() -> bool) {
    run_until_within(lp, LIMIT, what, cond)
}

/// [`run_until`] with an explicit bound.
#[track_caller]
pub fn run_until_within(lp: &EventLoop, limit: Duration, what: &str, cond: impl FnMut() -> bool) {
    let reached = lp.run_until(limit, cond).expect("the loop failed");
    assert!(reached, "timed out after {limit:?} waiting for {what}");
}

/// A directory under the system temp dir, unique to this process and
/// call, removed when dropped.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates a fresh directory.
    pub fn new(tag: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path =
            std::env::temp_dir().join(format!("sb-{tag}-{}-{n}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).expect("cannot create a temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One loop, and for the remote modes a broker with a publishing and a
/// subscribing client on it.
pub struct Fixture {
    /// The loop everything here lives on.
    pub lp: EventLoop,
    /// The mode.
    pub mode: Mode,
    /// The broker (remote modes).
    pub broker: Option<Broker>,
    /// The broker's address (remote modes).
    pub address: Option<Address>,
    /// The client that publishes stages given to [`Fixture::target`].
    pub publisher: Option<Client>,
    /// The client that subscribes to them.
    pub subscriber: Option<Client>,
    barrier: Option<Target>,
    /// Every stage [`Fixture::target`] published, kept as a program keeps
    /// the stages it serves: a publication does not keep its stage.
    published: RefCell<Vec<Stage>>,
    _dir: Option<TempDir>,
}

impl std::fmt::Debug for Fixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fixture")
            .field("mode", &self.mode)
            .field("address", &self.address)
            .finish()
    }
}

impl Fixture {
    /// A fixture for `mode`, connected and ready.
    #[track_caller]
    pub fn new(mode: Mode) -> Fixture {
        let lp = EventLoop::new().expect("cannot create a loop");
        let mut fx = Fixture {
            lp,
            mode,
            broker: None,
            address: None,
            publisher: None,
            subscriber: None,
            barrier: None,
            published: RefCell::default(),
            _dir: None,
        };
        let listen: Option<Address> = match mode {
            Mode::Local => None,
            Mode::Remote => Some("tcp://127.0.0.1:0".parse().unwrap()),
            Mode::RemoteUnix => {
                let dir = TempDir::new("req");
                let path = dir.0.join("broker.sock");
                fx._dir = Some(dir);
                Some(Address::Unix(path))
            }
        };
        if let Some(listen) = listen {
            let broker = Broker::new(&fx.lp, BrokerConfig::listening([listen]))
                .expect("cannot start a broker");
            let address = broker.local_addresses()[0].clone();
            fx.broker = Some(broker);
            fx.address = Some(address);
            fx.publisher = Some(fx.client());
            fx.subscriber = Some(fx.client());
        }
        let barrier = Stage::new(&fx.lp, "__barrier");
        barrier.on("ping", |ctx| ctx.ret("pong", &Args::new()));
        fx.barrier = Some(fx.target(&barrier));
        fx
    }

    /// A new client of the broker, connected (remote modes only).
    #[track_caller]
    pub fn client(&self) -> Client {
        let address = self.address.as_ref().expect("a remote fixture");
        let client = Client::connect(&self.lp, address, ClientConfig::default());
        let done = Rc::new(RefCell::new(None));
        let d = done.clone();
        client.on_connect(move |r| *d.borrow_mut() = Some(r));
        run_until(&self.lp, "the connect", || done.borrow().is_some());
        let outcome = done.borrow_mut().take().unwrap();
        outcome.expect("the connect failed");
        client
    }

    /// `stage` as a target in this fixture's mode. Remote: published on
    /// the publisher client under the stage's name (offering every
    /// handler registered so far) and subscribed through the subscriber;
    /// the fixture keeps the stage so that it stays served.
    #[track_caller]
    pub fn target(&self, stage: &Stage) -> Target {
        match self.mode {
            Mode::Local => Target::Local(stage.clone()),
            Mode::Remote | Mode::RemoteUnix => {
                let publisher = self.publisher.as_ref().unwrap();
                let subscriber = self.subscriber.as_ref().unwrap();
                publish(&self.lp, publisher, stage, stage.name());
                self.published.borrow_mut().push(stage.clone());
                Target::Remote(subscribe(&self.lp, subscriber, stage.name()))
            }
        }
    }

    /// Proves that everything sent before this call along the fixture's
    /// path (loop queue, or publisher and subscriber connections) has
    /// been delivered: a request to the barrier stage travels the same
    /// FIFO path, after them.
    #[track_caller]
    pub fn barrier(&self) {
        let done = Rc::new(Cell::new(false));
        let d = done.clone();
        let target = self.barrier.clone().unwrap();
        let _req = Request::to(target, "ping")
            .detached()
            .on("pong", move |_| {
                d.set(true);
                Ok(())
            })
            .send()
            .expect("cannot send the barrier request");
        run_until(&self.lp, "the barrier", || done.get());
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Pending tasks and timers hold loop objects; drop them now.
        self.lp.shutdown();
    }
}

/// Publishes `stage` as `session` through `client` and waits for the
/// broker's answer.
#[track_caller]
pub fn publish(lp: &EventLoop, client: &Client, stage: &Stage, session: &str) {
    let done = Rc::new(RefCell::new(None));
    let d = done.clone();
    stage.publish(client, session, &[], move |r| *d.borrow_mut() = Some(r));
    run_until(lp, "the publish", || done.borrow().is_some());
    let outcome = done.borrow_mut().take().unwrap();
    outcome.expect("the publish failed");
}

/// Subscribes to `session` through `client` and waits for it.
#[track_caller]
pub fn subscribe(lp: &EventLoop, client: &Client, session: &str) -> RemoteStage {
    let done = Rc::new(RefCell::new(None));
    let d = done.clone();
    RemoteStage::subscribe(client, session, move |r| *d.borrow_mut() = Some(r));
    run_until(lp, "the subscribe", || done.borrow().is_some());
    let outcome = done.borrow_mut().take().unwrap();
    outcome.expect("the subscribe failed")
}

/// A shared counter.
#[derive(Debug, Clone, Default)]
pub struct Counter(Rc<Cell<u32>>);

impl Counter {
    /// A counter at zero.
    pub fn new() -> Counter {
        Counter::default()
    }

    /// Adds one.
    pub fn bump(&self) {
        self.0.set(self.0.get() + 1);
    }

    /// The count.
    pub fn get(&self) -> u32 {
        self.0.get()
    }

    /// A closure that adds one (for [`Scope::on_end`] and on-cancel hooks).
    pub fn hook(&self) -> impl FnOnce() + 'static {
        let c = self.clone();
        move || c.bump()
    }
}

thread_local! {
    static CAPTURED: RefCell<Option<Log>> = const { RefCell::new(None) };
}

/// Collects the library's log messages of this thread at warn level and
/// above from now on. The log handler is process-wide and the tests of
/// a binary run on many threads at once, so the handler installed here
/// sends each record to the log of the thread that logged it.
pub fn capture_warnings() -> Log {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let handler: LogHandler = std::sync::Arc::new(|entry: &LogEntry| {
            CAPTURED.with(|c| {
                if let Some(log) = &*c.borrow() {
                    log.push(entry.message.clone());
                }
            })
        });
        set_log_handler(Some(handler), LogLevel::Warn).unwrap();
    });
    let log = Log::new();
    CAPTURED.with(|c| *c.borrow_mut() = Some(log.clone()));
    log
}

/// A shared, ordered log of events.
#[derive(Debug, Clone, Default)]
pub struct Log(Rc<RefCell<Vec<String>>>);

impl Log {
    /// An empty log.
    pub fn new() -> Log {
        Log::default()
    }

    /// Appends a line.
    pub fn push(&self, line: impl Into<String>) {
        self.0.borrow_mut().push(line.into());
    }

    /// A copy of every line so far.
    pub fn lines(&self) -> Vec<String> {
        self.0.borrow().clone()
    }

    /// How many lines so far.
    pub fn len(&self) -> usize {
        self.0.borrow().len()
    }

    /// Whether nothing was logged.
    pub fn is_empty(&self) -> bool {
        self.0.borrow().is_empty()
    }

    /// Whether a line equals `line`.
    pub fn has(&self, line: &str) -> bool {
        self.0.borrow().iter().any(|l| l == line)
    }

    /// How many lines equal `line`.
    pub fn count(&self, line: &str) -> usize {
        self.0.borrow().iter().filter(|l| *l == line).count()
    }
}

/// Everything a top-level request received.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Interim responses: (type, args), in order.
    pub emits: Vec<(String, Args)>,
    /// The final response: (type, args, error), once it came.
    pub last: Option<(String, Args, Option<Error>)>,
}

impl Outcome {
    /// The final response's error code, if it was an error.
    pub fn code(&self) -> Option<ErrorCode> {
        self.last
            .as_ref()
            .and_then(|(_, _, e)| e.as_ref().map(|e| e.code))
    }

    /// The final response's type.
    pub fn kind(&self) -> Option<&str> {
        self.last.as_ref().map(|(k, _, _)| k.as_str())
    }
}

/// Sends a top-level request whose fallback records every response, and
/// returns the handle with the shared outcome.
pub fn send_recorded(
    target: impl Into<Target>,
    method: &str,
    args: Args,
) -> (Request, Rc<RefCell<Outcome>>) {
    let outcome = Rc::new(RefCell::new(Outcome::default()));
    let o = outcome.clone();
    let req = Request::to(target, method)
        .args(args)
        .fallback(move |ctx| {
            let rsp = ctx.rsp().expect("a response");
            let mut o = o.borrow_mut();
            assert!(o.last.is_none(), "a response after the final one");
            if rsp.is_final() {
                o.last = Some((
                    rsp.kind().to_string(),
                    ctx.args().clone(),
                    rsp.error().cloned(),
                ));
            } else {
                o.emits.push((rsp.kind().to_string(), ctx.args().clone()));
            }
            Ok(())
        })
        .send()
        .expect("cannot send");
    (req, outcome)
}

/// Sends a top-level request and runs the loop until its final response.
#[track_caller]
pub fn call(lp: &EventLoop, target: impl Into<Target>, method: &str, args: Args) -> Outcome {
    let (req, outcome) = send_recorded(target, method, args);
    run_until(lp, "the final response", || outcome.borrow().last.is_some());
    assert!(!req.is_open(), "the request is still open after its final");
    let o = outcome.borrow().clone();
    o
}

/// A value that counts how many of its kind are alive: per-request data
/// that must be dropped exactly once.
#[derive(Debug)]
pub struct Live(Rc<Cell<i64>>);

impl Live {
    /// A new live value counted in `count`.
    pub fn new(count: &Rc<Cell<i64>>) -> Live {
        count.set(count.get() + 1);
        Live(count.clone())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}
