//! The client's shell: everything of a client that touches the outside.
//!
//! It owns the connection (registered with the loop, flushed at the end of
//! a turn, handed to a lingering close when the owner closes) and runs
//! what the [`Core`] decides. Every method borrows the core for the time
//! of one core call, through [`Shared::with`], and runs the [`Effect`]
//! that comes back after the borrow ended: a callback may call the client
//! again, close it, or drop its last handle.
//!
//! Opening a connection lives in `connecting`, its end (and what it
//! settles) in `closing`.

mod closing;
mod connecting;

use super::core::{Core, Status};
use super::dispatch::{dispatch, release};
use super::effects::{Effect, Outbox};
use super::ops::Op;
use super::received::Received;
use super::serving::ServeFn;
use super::ClientConfig;
use crate::error::Error;
use crate::event_loop::{EventLoop, Flush, Readiness, Source, TimerId};
use crate::transport::{Address, ClientTls, Connection, ReadOutcome, TlsConnector};
use crate::wire::{Frame, Outgoing};
use std::cell::{Cell, Ref, RefCell};
use std::rc::{Rc, Weak};
use std::time::Duration;

/// One client: the core and the connection, behind every handle.
pub(crate) struct Shared {
    pub(super) lp: EventLoop,
    inner: RefCell<Inner>,
    me: Weak<Shared>,
    /// [`ClientConfig::default_timeout`], changeable later.
    pub(super) default_timeout: Cell<Option<Duration>>,
    /// How every connection (the first and each reconnect) is opened.
    settings: Settings,
}

/// What opening a connection needs, from the [`ClientConfig`].
struct Settings {
    token: Option<String>,
    name: Option<String>,
    max_frame: usize,
    max_queued: usize,
    connect_timeout: Duration,
    tls: ClientTls,
    /// `tls`'s files as read at the first connect to a `tls://` address,
    /// kept for every reconnect.
    connector: RefCell<Option<TlsConnector>>,
}

/// A seed for the jitter of reconnect delays: the clock, the process
/// and the address, so that clients started together spread apart.
fn seed(address: &Address) -> u64 {
    use std::hash::{BuildHasher, Hash, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    address.to_string().hash(&mut h);
    std::process::id().hash(&mut h);
    std::time::SystemTime::now().hash(&mut h);
    h.finish() | 1
}

struct Inner {
    core: Core,
    io: Io,
}

/// The connection and its bookkeeping; the core's [`Outbox`].
pub(super) struct Io {
    /// Open from the connect until the close (`None` iff the core is
    /// closed, once the connect returned).
    conn: Option<Connection>,
    /// A frame was queued since the last flush request.
    queued: bool,
    /// The loop will flush this client at the end of the turn.
    flush_pending: bool,
    /// How long a close may take to flush what was accepted for sending.
    linger: Duration,
    /// Room for the frames of one batch read (see [`FRAMES_PER_BATCH`]),
    /// kept from batch to batch.
    frames: Vec<Received>,
    /// The ping timer and the connect timer, while armed.
    tick: Option<TimerId>,
    connect_timer: Option<TimerId>,
    /// The reconnect policy's back-off timer, while armed.
    retry_timer: Option<TimerId>,
    ping_interval: Duration,
    ping_max: u32,
    /// Xorshift state for the jitter of reconnect delays.
    random: u64,
    /// Why the first connect could not start, until its failure is
    /// handled on the next turn: what sends fail with meanwhile.
    open_error: Option<Error>,
}

impl Io {
    fn cancel_timers(&mut self, lp: &EventLoop) {
        for timer in [
            self.tick.take(),
            self.connect_timer.take(),
            self.retry_timer.take(),
        ]
        .into_iter()
        .flatten()
        {
            lp.cancel_timer(timer);
        }
    }
}

impl Io {
    /// A uniform pick in `[0, 1)` (xorshift64; jitter needs no more).
    fn next_random(&mut self) -> f64 {
        let mut x = self.random;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.random = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Outbox for Io {
    fn send(&mut self, frame: &Frame) -> Result<(), Error> {
        let down = &self.open_error;
        let conn = self.conn.as_mut().ok_or_else(|| not_connected(down))?;
        conn.send(frame)?;
        self.queued = true;
        Ok(())
    }

    fn send_retractable(&mut self, key: u64, frame: &Frame) -> Result<(), Error> {
        let down = &self.open_error;
        let conn = self.conn.as_mut().ok_or_else(|| not_connected(down))?;
        conn.send_retractable(key, frame)?;
        self.queued = true;
        Ok(())
    }

    fn retract(&mut self, key: u64) -> bool {
        self.conn.as_mut().is_some_and(|c| c.retract(key))
    }

    fn send_out(&mut self, frame: &Outgoing<'_>) -> Result<(), Error> {
        let down = &self.open_error;
        let conn = self.conn.as_mut().ok_or_else(|| not_connected(down))?;
        conn.send_with(|out, max| frame.encode(out, max))?;
        self.queued = true;
        Ok(())
    }

    fn send_retractable_out(&mut self, key: u64, frame: &Outgoing<'_>) -> Result<(), Error> {
        let down = &self.open_error;
        let conn = self.conn.as_mut().ok_or_else(|| not_connected(down))?;
        conn.send_retractable_with(key, |out, max| frame.encode(out, max))?;
        self.queued = true;
        Ok(())
    }
}

/// Why a frame cannot be sent without a connection: the first
/// connect's failure while it waits to be handled, else "not connected".
fn not_connected(open_error: &Option<Error>) -> Error {
    match open_error {
        Some(e) => Error::broker_gone(&e.message),
        None => Error::broker_gone("not connected"),
    }
}

/// How many frames the shell reads before it acts on them, and reads the
/// next ones: what decoding a frame allocates (its args, its names) is
/// freed before the allocator's per-thread cache (7 blocks a size) runs
/// out, where a whole burst read ahead went through its slow paths.
const FRAMES_PER_BATCH: usize = 3;

/// The loop's handle on a client's socket, which does not keep it alive.
struct ClientSource(Weak<Shared>);

impl Shared {
    /// Starts connecting. A failure to start is handled on the next turn
    /// (closing the client, or with a reconnect policy set by then, trying
    /// again); its callbacks run on a later turn anyway.
    pub fn connect(lp: &EventLoop, address: &Address, config: ClientConfig) -> Rc<Shared> {
        let mut core = Core::new(address.clone());
        core.set_reconnect(config.reconnect.clone());
        let shared = Rc::new_cyclic(|me: &Weak<Shared>| Shared {
            lp: lp.clone(),
            inner: RefCell::new(Inner {
                core,
                io: Io {
                    conn: None,
                    queued: false,
                    flush_pending: false,
                    linger: config.linger,
                    frames: Vec::new(),
                    tick: None,
                    connect_timer: None,
                    retry_timer: None,
                    ping_interval: config.ping_interval,
                    ping_max: config.ping_max,
                    random: seed(address),
                    open_error: None,
                },
            }),
            me: me.clone(),
            default_timeout: Cell::new(config.default_timeout),
            settings: Settings {
                token: config.token,
                name: config.name,
                max_frame: config.max_frame,
                max_queued: config.max_queued_bytes,
                connect_timeout: config.connect_timeout,
                tls: config.tls,
                connector: RefCell::new(None),
            },
        });
        if let Err(error) = shared.open(address) {
            shared.inner.borrow_mut().io.open_error = Some(error.clone());
            let me = Rc::downgrade(&shared);
            lp.defer(move |_| {
                if let Some(shared) = me.upgrade() {
                    shared.shut(error);
                }
            });
        }
        shared
    }

    /// Runs `f` on the core and the connection, then asks the loop for a
    /// flush if `f` queued output. Never call it from inside `f`.
    pub(super) fn with<R>(&self, f: impl FnOnce(&mut Core, &mut Io) -> R) -> R {
        let (result, flush) = {
            let mut inner = self.inner.borrow_mut();
            let Inner { core, io } = &mut *inner;
            let result = f(core, io);
            let flush = io.queued && !io.flush_pending && io.conn.is_some();
            io.queued = false;
            io.flush_pending |= flush;
            (result, flush)
        };
        if flush {
            let me: Weak<dyn Flush> = self.me.clone();
            self.lp.want_flush(me);
        }
        result
    }

    /// The core, to read.
    pub(super) fn core(&self) -> Ref<'_, Core> {
        Ref::map(self.inner.borrow(), |inner| &inner.core)
    }

    /// Runs an effect now.
    pub(super) fn run(&self, effect: Effect) {
        dispatch(&self.lp, &self.me, effect);
    }

    /// Runs an effect on a later turn.
    pub(super) fn defer(&self, effect: Effect) {
        let me = self.me.clone();
        self.lp.defer(move |lp| dispatch(lp, &me, effect));
    }

    /// Sends an operation; its failure, if any, completes on a later turn.
    pub(super) fn start_op(&self, frame: impl FnOnce(u64) -> Frame, op: Op) {
        if let Some(failed) = self.with(|core, io| core.start_op(frame, op, io)) {
            self.lp.defer(move |_| failed.run());
        }
    }

    pub(super) fn set_linger(&self, linger: Duration) {
        self.inner.borrow_mut().io.linger = linger;
    }

    pub(super) fn set_ping(&self, interval: Duration, max: u32) {
        let (old, closed) = {
            let mut inner = self.inner.borrow_mut();
            inner.io.ping_interval = interval;
            inner.io.ping_max = max;
            (inner.io.tick.take(), inner.core.is_closed())
        };
        if let Some(timer) = old {
            self.lp.cancel_timer(timer);
        }
        if !closed && !interval.is_zero() {
            self.arm_tick(interval);
        }
    }

    /// Whether the delivery of `route` is still being served.
    pub(super) fn is_serving(&self, route: u64) -> bool {
        self.core().is_serving(route)
    }

    /// Sends an answer of a delivery (see [`Core::answer`]).
    pub(super) fn answer(&self, route: u64, frame: Outgoing<'_>, last: bool) -> Result<(), Error> {
        let (result, ended) = self.with(|core, io| core.answer(route, frame, last, io));
        if let Some(serve) = ended {
            release(&self.lp, serve);
        }
        result
    }

    /// See [`Core::withdraw`].
    pub(super) fn withdraw(&self, session: &str, serve: &ServeFn) {
        if let Some(released) = self.with(|core, io| core.withdraw(session, serve, io)) {
            release(&self.lp, released);
        }
    }

    fn ready(&self, readiness: Readiness) {
        let mut first = true;
        let mut frames = Vec::new();
        let outcome = loop {
            let (outcome, stopped) = {
                let mut inner = self.inner.borrow_mut();
                let Inner { core, io } = &mut *inner;
                // A frame acted on may have closed the client.
                let Some(conn) = io.conn.as_mut() else {
                    return;
                };
                if first && readiness.writable {
                    if let Err(e) = conn.finish_connect() {
                        let address = core.address().clone();
                        drop(inner);
                        self.shut(Error::io(format_args!("cannot connect to {address}"), &e));
                        return;
                    }
                }
                if first {
                    frames = std::mem::take(&mut io.frames);
                }
                let (outcome, stopped) = if readiness.readable {
                    if first {
                        core.heard();
                    }
                    let serving = &mut core.serving;
                    let (outcome, stopped) =
                        conn.read_bodies(readiness.hangup, FRAMES_PER_BATCH, |body| {
                            frames.push(Received::read(body, serving)?);
                            Ok(())
                        });
                    match conn.after_read(&self.lp) {
                        Ok(()) => (Some(outcome), stopped),
                        Err(e) => (Some(ReadOutcome::Closed(e)), false),
                    }
                } else {
                    (None, false)
                };
                if first && readiness.writable {
                    if let Err(e) = conn.flush(&self.lp) {
                        drop(inner);
                        self.shut(e);
                        return;
                    }
                }
                (outcome, stopped)
            };
            first = false;
            for frame in frames.drain(..) {
                // A closed core takes no more frames: they are dropped.
                if let Some(effect) = self.with(|core, io| core.on_received(frame, io)) {
                    self.run(effect);
                }
            }
            // The read budget spent (`More`): the loop runs timers,
            // deferred work and other sources before the next batch.
            if !stopped || matches!(outcome, Some(ReadOutcome::More)) {
                break outcome;
            }
        };
        let outcome = {
            let mut inner = self.inner.borrow_mut();
            if inner.io.frames.capacity() == 0 {
                inner.io.frames = frames;
            }
            // Welcomed: the connect timer is cancelled, so that an
            // embedding host is not woken for it.
            if inner.io.connect_timer.is_some() && matches!(inner.core.status(), Status::Ready(_)) {
                if let Some(timer) = inner.io.connect_timer.take() {
                    self.lp.cancel_timer(timer);
                }
            }
            match outcome {
                Some(ReadOutcome::More) => match inner.io.conn.as_ref() {
                    Some(conn) => {
                        self.lp.again(conn.token());
                        return;
                    }
                    None => return,
                },
                Some(ReadOutcome::Closed(e)) => {
                    // Before the welcome (a TCP connect, a TLS handshake,
                    // the hello), the error is the connect's.
                    let connecting = inner.io.conn.as_ref().is_some_and(|c| c.connecting())
                        || (matches!(inner.core.status(), Status::Connecting)
                            && e.message.starts_with("TLS "));
                    if connecting {
                        let address = inner.core.address();
                        Error::new(
                            e.code,
                            format!("cannot connect to {address}: {}", e.message),
                        )
                    } else {
                        e
                    }
                }
                _ => return,
            }
        };
        self.shut(outcome);
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // As close(): every operation completes exactly once, also when
        // the application let go of the client without closing it, and
        // what it accepted for sending still leaves.
        self.close_by_owner("the client was dropped", None);
    }
}

impl Flush for Shared {
    fn flush(&self, _lp: &EventLoop) {
        let result = {
            let mut inner = self.inner.borrow_mut();
            inner.io.flush_pending = false;
            match inner.io.conn.as_mut() {
                Some(conn) => conn.flush(&self.lp),
                None => Ok(()),
            }
        };
        if let Err(e) = result {
            self.shut(e);
        }
    }
}

impl Source for ClientSource {
    fn ready(&self, _lp: &EventLoop, readiness: Readiness) {
        if let Some(shared) = self.0.upgrade() {
            shared.ready(readiness);
        }
    }
}
