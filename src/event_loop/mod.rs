//! The loop: one mio `Poll`, its timers, and every object created on it.
//!
//! An [`EventLoop`] is single-threaded: it and everything created on it
//! (brokers, clients, stages, requests) belong to the thread that created
//! it, and every user callback runs on that thread, inside [`EventLoop::run`]
//! or [`EventLoop::dispatch`]. The only thread-safe piece is
//! [`LoopRemote`], which other threads use to wake the loop or post a
//! closure to it.
//!
//! # Driving the loop
//!
//! * **Run**: [`EventLoop::run`] blocks until [`EventLoop::stop`].
//! * **Embedded** in a host loop (libevent, libev, GLib, POE, AnyEvent):
//!   the host watches [`EventLoop::fd`] for reading (it is level-readable
//!   for the host while work is waiting, and when a far timer is due) and
//!   arms a timer of [`EventLoop::timeout_ms`] (none when it is `None`);
//!   when either fires it calls
//!   [`EventLoop::dispatch`], which never blocks, and then asks for the
//!   timeout again. `dispatch` drains every edge-triggered source; when it
//!   stops early (work queued by callbacks during the turn) the timeout it
//!   leaves is zero. Work queued by API calls made outside `dispatch` makes
//!   the fd readable, so the host needs no other hook.
//! * **Embedded, fd by fd**: a host that can watch several fds is handed
//!   each of them instead ([`EventLoop::watch_fds`]) and reports the one
//!   ready ([`EventLoop::dispatch_fd`]), which saves the nested wait on the
//!   epoll fd per wake-up (see `watch`).
//! * **From other threads**: [`LoopRemote::wake`] and [`LoopRemote::post`].
//!
//! Layout: `sources` registers I/O objects with the poll; `turn` is one
//! turn (the timeout, the poll, the dispatch); `timers` the deadline
//! heap; `alarm` the timerfd that stands for far timers, so a sleeping
//! loop arms no kernel timer per wait; `remote` what other threads may
//! do; `wakeup` the eventfd they wake it with; `watch` the host that
//! watches the loop's fds one by one; `unix_signals` the signalfd that
//! turns signals into loop events.

mod alarm;
mod remote;
mod sources;
mod timers;
mod turn;
mod unix_signals;
mod wakeup;
mod watch;

pub use remote::LoopRemote;
pub use timers::TimerId;
pub use watch::FdEvents;

use crate::id_hash;
use mio::{Events, Poll, Registry, Token};
use remote::{thread_token, RemoteQueue, RemoteTask};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::os::unix::io::{AsRawFd, RawFd};
use std::rc::{Rc, Weak};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use timers::Timers;
use wakeup::Wakeup;

const WAKER: Token = Token(0);
/// The token of the loop's [`alarm::Alarm`].
const ALARM: Token = Token(1);

/// A closure run on the loop thread.
type Task = Box<dyn FnOnce(&EventLoop)>;

/// Work deferred without a closure: an object already shared (an `Rc`)
/// that knows what to do when its turn comes, and keeps what it needs
/// for it. Deferring it costs no allocation, where a closure costs a box
/// per task: the local request link sends every message this way.
pub(crate) trait Deferred {
    /// Its turn came (once per [`EventLoop::defer_shared`] or
    /// [`EventLoop::defer_weak`] of it).
    fn run_deferred(self: Rc<Self>, lp: &EventLoop);
}

/// One entry of the deferred queue, run in the order deferred whatever
/// its form.
enum Queued {
    Task(Task),
    /// Held strongly until its turn.
    Shared(Rc<dyn Deferred>),
    /// Run only if something else still holds it at its turn.
    Weak(Weak<dyn Deferred>),
}

impl Queued {
    fn run(self, lp: &EventLoop) {
        match self {
            Queued::Task(task) => task(lp),
            Queued::Shared(target) => target.run_deferred(lp),
            Queued::Weak(target) => {
                // The queue's reference goes before the turn, in which
                // the target may end: its last holder may then keep its
                // allocation (a request's record: request/pool.rs).
                let strong = target.upgrade();
                drop(target);
                if let Some(target) = strong {
                    target.run_deferred(lp);
                }
            }
        }
    }
}
/// What a readiness event says about a source.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Readiness {
    pub readable: bool,
    pub writable: bool,
    /// The peer closed its side or the socket failed: a reader must read
    /// to the end, since no later edge will tell it again.
    pub hangup: bool,
}

/// Something registered with the loop's poll that wants its events.
pub(crate) trait Source {
    /// Called once per readiness event, and again on the next turn when
    /// the source asked for it with [`EventLoop::again`].
    fn ready(&self, lp: &EventLoop, readiness: Readiness);
}

/// Something with buffered output to write before the loop sleeps.
pub(crate) trait Flush {
    /// Writes what can be written now.
    fn flush(&self, lp: &EventLoop);
}

/// A registered source, with its fd and what a host watching the fds one
/// by one is to watch it for.
struct Slot {
    source: Rc<dyn Source>,
    fd: RawFd,
    /// What it is registered for.
    events: FdEvents,
    /// Its input is left unread for now ([`EventLoop::hold_input`]).
    held: bool,
    /// What the host watching the fds was last told of it (none when no
    /// host watches).
    told: FdEvents,
}

struct Inner {
    poll: RefCell<Poll>,
    registry: Registry,
    events: RefCell<Events>,
    waker: Arc<Wakeup>,
    remote: Arc<Mutex<RemoteQueue>>,
    /// The [`thread_token`] of the thread that created the loop; never
    /// changes, so reading it from another thread is no data race.
    owner: u64,
    sources: RefCell<Vec<Option<Slot>>>,
    /// The token of each registered fd (the kernel's numbers, which no
    /// peer chooses: the fast hash).
    fds: RefCell<id_hash::IdMap<RawFd, Token>>,
    free_tokens: RefCell<Vec<usize>>,
    timers: RefCell<Timers<Task>>,
    /// Wakes the loop for timers far away, so that it sleeps without a
    /// timeout (`None` if the system gave no timerfd: timeouts then).
    alarm: Option<alarm::Alarm>,
    deferred: RefCell<VecDeque<Queued>>,
    again: RefCell<Vec<Token>>,
    flush: RefCell<Vec<Weak<dyn Flush>>>,
    /// The events of a turn, kept between turns for their room.
    ready: Cell<Vec<(Token, Readiness)>>,
    dispatch_depth: Cell<u32>,
    watch: watch::HostWatch,
    /// What the loop keeps alive for objects nobody holds (a request let
    /// go with `Request::keep`) until they release it or the loop shuts
    /// down, by key.
    kept: RefCell<std::collections::HashMap<u64, Rc<dyn std::any::Any>>>,
    next_kept: Cell<u64>,
    wake_pending: Cell<bool>,
    stopped: Cell<bool>,
    shut: Cell<bool>,
    /// The Unix signals taken on the loop ([`EventLoop::on_unix_signals`]).
    signals: RefCell<Option<Rc<unix_signals::SignalWatch>>>,
}

impl Inner {
    /// Refuses every later post and hands back the tasks already posted,
    /// to be dropped by the caller outside the lock.
    fn close_remote(&self) -> Vec<RemoteTask> {
        let mut queue = self
            .remote
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        queue.closed = true;
        std::mem::take(&mut queue.tasks)
    }
}

impl Drop for Inner {
    /// A loop dropped without a shutdown refuses posts too: the wakers
    /// outlive it, and would otherwise keep what is posted to it for as
    /// long as they live. Runs on the loop's thread (the loop is not
    /// `Send`), where the tasks' destructors belong.
    fn drop(&mut self) {
        drop(self.close_remote());
    }
}

/// The event loop. Cloning gives another handle to the same loop.
///
/// Not `Send` nor `Sync`: a loop and everything created on it stay on the
/// thread that created it.
#[derive(Clone)]
pub struct EventLoop {
    inner: Rc<Inner>,
}

impl fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventLoop")
            .field("fd", &self.fd())
            .field("timers", &self.inner.timers.borrow().len())
            .finish_non_exhaustive()
    }
}

impl EventLoop {
    /// Creates a loop (an epoll instance and a waker).
    pub fn new() -> io::Result<EventLoop> {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let waker = Arc::new(Wakeup::new(poll.registry(), WAKER)?);
        let alarm = alarm::Alarm::new(poll.registry(), ALARM).ok();
        Ok(EventLoop {
            inner: Rc::new(Inner {
                poll: RefCell::new(poll),
                registry,
                events: RefCell::new(Events::with_capacity(256)),
                waker,
                remote: Arc::new(Mutex::new(RemoteQueue::default())),
                owner: thread_token(),
                // Slot 0 is the waker's token, slot 1 the alarm's.
                sources: RefCell::new(vec![None, None]),
                fds: RefCell::default(),
                free_tokens: RefCell::new(Vec::new()),
                timers: RefCell::new(Timers::new()),
                alarm,
                deferred: RefCell::new(VecDeque::new()),
                again: RefCell::new(Vec::new()),
                flush: RefCell::new(Vec::new()),
                ready: Cell::new(Vec::new()),
                dispatch_depth: Cell::new(0),
                watch: watch::HostWatch::default(),
                kept: RefCell::default(),
                next_kept: Cell::new(1),
                wake_pending: Cell::new(false),
                stopped: Cell::new(false),
                shut: Cell::new(false),
                signals: RefCell::new(None),
            }),
        })
    }

    /// Whether the calling thread is the loop's own, the thread that
    /// created it: the only one on which the loop and its objects may be
    /// used. Cheap (a thread-local read and a compare), and safe to call
    /// from any thread through a shared reference: it reads nothing that
    /// ever changes.
    pub fn is_own_thread(&self) -> bool {
        self.inner.owner == thread_token()
    }

    /// Whether [`EventLoop::shutdown`] has run: the loop accepts no new
    /// work, and its objects are done with.
    pub fn is_shut_down(&self) -> bool {
        self.inner.shut.get()
    }

    /// Keeps `value` alive until [`EventLoop::release`] with the key
    /// returned, or until [`EventLoop::shutdown`] drops it. After the
    /// shutdown it is dropped at once (key 0).
    pub(crate) fn keep(&self, value: Rc<dyn std::any::Any>) -> u64 {
        if self.inner.shut.get() {
            drop(value);
            return 0;
        }
        let key = self.inner.next_kept.get();
        self.inner.next_kept.set(key + 1);
        self.inner.kept.borrow_mut().insert(key, value);
        key
    }

    /// Hands back what [`EventLoop::keep`] kept under `key` (to be
    /// dropped by the caller, outside the loop's borrow).
    pub(crate) fn release(&self, key: u64) -> Option<Rc<dyn std::any::Any>> {
        self.inner.kept.borrow_mut().remove(&key)
    }

    /// Whether one of the loop's callbacks is running now (the loop is
    /// inside a turn of `run`, `run_until` or `dispatch`): blocking calls
    /// that would have to run the loop themselves refuse to run then.
    pub fn is_dispatching(&self) -> bool {
        self.inner.dispatch_depth.get() > 0
    }

    /// The fd a host loop watches for reading (unless it watches the
    /// loop's fds one by one: [`EventLoop::watch_fds`]).
    pub fn fd(&self) -> RawFd {
        self.inner.poll.borrow().as_raw_fd()
    }

    /// The thread-safe handle for other threads.
    pub fn remote(&self) -> LoopRemote {
        LoopRemote::new(self.inner.waker.clone(), self.inner.remote.clone())
    }

    /// How long a host may wait before calling [`EventLoop::dispatch`]:
    /// `None` for no deadline (wait for the fd), `Some(0)` for "now";
    /// otherwise whole milliseconds, rounded up so that a host never wakes
    /// a little early and spins.
    ///
    /// Timers far away (heartbeats, long deadlines) are left to the loop's
    /// alarm, a timerfd inside the fd: the fd turns readable when one is
    /// due, and the answer is `None`, so that the host sleeps without a
    /// timeout, as [`EventLoop::run`] does (a finite timeout makes the
    /// kernel arm and cancel a timer on every sleep). Only timers due
    /// within a few milliseconds, or a system without timerfd, give a
    /// finite timeout.
    pub fn timeout_ms(&self) -> Option<u64> {
        self.sleep_timeout().map(|d| {
            let ms = d.as_nanos().div_ceil(1_000_000);
            u64::try_from(ms).unwrap_or(u64::MAX)
        })
    }

    /// One non-blocking turn: handles every ready source, due timer,
    /// deferred task and posted closure, then writes buffered output.
    /// (A host that watches the fds one by one calls it when
    /// [`EventLoop::timeout_ms`] passes: the sources it reported through
    /// [`EventLoop::dispatch_fd`] may be found ready again, which costs
    /// them a read that finds nothing.)
    pub fn dispatch(&self) -> io::Result<()> {
        self.turn(Some(Duration::ZERO))
    }

    /// Runs until [`EventLoop::stop`] is called (from a callback or
    /// posted from another thread).
    pub fn run(&self) -> io::Result<()> {
        self.inner.stopped.set(false);
        while !self.inner.stopped.get() {
            self.turn(self.sleep_timeout())?;
        }
        Ok(())
    }

    /// Runs until `done` returns true (checked after every turn) or
    /// `limit` passes; returns whether `done` became true. Meant for
    /// tests and command-line tools that wait for one outcome.
    pub fn run_until(&self, limit: Duration, mut done: impl FnMut() -> bool) -> io::Result<bool> {
        let deadline = timers::instant_after(limit);
        self.inner.stopped.set(false);
        loop {
            if done() {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline || self.inner.stopped.get() {
                return Ok(done());
            }
            let wait = deadline - now;
            let timeout = self.next_timeout().map_or(wait, |t| t.min(wait));
            self.turn(Some(timeout))?;
        }
    }

    /// Makes [`EventLoop::run`] return after the current turn. Nothing is
    /// dropped: output that closed clients are still flushing (see
    /// [`Client::close`](crate::Client::close)) waits for the next run or
    /// dispatch.
    pub fn stop(&self) {
        self.inner.stopped.set(true);
        self.poke();
    }

    /// Drops every pending timer, deferred task and posted closure without
    /// running them, the host's watch function ([`EventLoop::watch_fds`])
    /// without telling it anything, and the signal handler
    /// ([`EventLoop::on_unix_signals`], the signals' mask restored). Closures
    /// often hold objects that hold the loop, so this breaks those cycles
    /// when the owner is done with the loop (`sb_loop_free` calls it).
    ///
    /// Output that closed clients were still flushing (see
    /// [`Client::close`](crate::Client::close)) is dropped with their
    /// connections, and the completion of a graceful close that has not
    /// run yet is dropped without running.
    ///
    /// Afterwards the loop accepts no new work: `defer` and `add_timer`
    /// drop their task at once, and [`LoopRemote::post`] fails.
    pub fn shutdown(&self) {
        self.inner.shut.set(true);
        let timers = std::mem::replace(&mut *self.inner.timers.borrow_mut(), Timers::new());
        let deferred = std::mem::take(&mut *self.inner.deferred.borrow_mut());
        let remote = self.inner.close_remote();
        let kept = std::mem::take(&mut *self.inner.kept.borrow_mut());
        self.inner.flush.borrow_mut().clear();
        self.inner.again.borrow_mut().clear();
        let watcher = self.end_watch_untold();
        self.clear_unix_signals();
        // Dropped outside every borrow: their destructors may use the loop.
        drop((timers, deferred, remote, kept, watcher));
        self.inner.stopped.set(true);
    }

    /// Runs `task` once, after `delay`, on this loop.
    pub fn add_timer(&self, delay: Duration, task: impl FnOnce(&EventLoop) + 'static) -> TimerId {
        if self.inner.shut.get() {
            // Nothing runs after shutdown; holding the task would only keep
            // what it captures alive.
            drop(task);
            return TimerId::from_raw(0);
        }
        let id = self
            .inner
            .timers
            .borrow_mut()
            .insert(timers::instant_after(delay), Box::new(task));
        self.poke();
        id
    }

    /// Cancels a timer; returns whether it had not fired yet.
    pub fn cancel_timer(&self, id: TimerId) -> bool {
        self.inner.timers.borrow_mut().cancel(id)
    }

    /// Runs `task` on this loop in the current or next turn, after what is
    /// already deferred (FIFO). Never runs it before returning.
    pub fn defer(&self, task: impl FnOnce(&EventLoop) + 'static) {
        if self.inner.shut.get() {
            drop(task);
            return;
        }
        self.push_deferred(Queued::Task(Box::new(task)));
    }

    /// Runs `target`'s [`Deferred::run_deferred`] on this loop as
    /// [`EventLoop::defer`] runs a closure (same queue, same order),
    /// holding `target` until then. Returns false, dropping `target`,
    /// after the shutdown (nothing runs then).
    pub(crate) fn defer_shared(&self, target: Rc<dyn Deferred>) -> bool {
        if self.inner.shut.get() {
            drop(target);
            return false;
        }
        self.push_deferred(Queued::Shared(target));
        true
    }

    /// As [`EventLoop::defer_shared`], without holding `target`: at its
    /// turn it runs only if it is still alive.
    pub(crate) fn defer_weak(&self, target: Weak<dyn Deferred>) -> bool {
        if self.inner.shut.get() {
            return false;
        }
        self.push_deferred(Queued::Weak(target));
        true
    }

    fn push_deferred(&self, entry: Queued) {
        self.inner.deferred.borrow_mut().push_back(entry);
        self.poke();
    }

    /// Outside dispatch, new work must make the fd readable so that an
    /// embedding host calls `dispatch`; inside, the turn handles it.
    fn poke(&self) {
        if self.inner.dispatch_depth.get() == 0 && !self.inner.wake_pending.get() {
            self.wake_host();
        }
    }

    // Cold and out of line: inside a turn (every deferral of a local
    // request) nothing is woken, and `poke` stays small enough to inline.
    #[cold]
    #[inline(never)]
    fn wake_host(&self) {
        self.inner.wake_pending.set(true);
        let _ = self.inner.waker.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deferred_tasks_run_in_order_and_never_inline() {
        let lp = EventLoop::new().unwrap();
        let log = Rc::new(RefCell::new(Vec::new()));
        for i in 0..3 {
            let log = log.clone();
            lp.defer(move |_| log.borrow_mut().push(i));
        }
        assert!(log.borrow().is_empty());
        assert_eq!(lp.timeout_ms(), Some(0));
        lp.dispatch().unwrap();
        assert_eq!(*log.borrow(), vec![0, 1, 2]);
        assert_eq!(lp.timeout_ms(), None);
    }

    /// Logs its name at its turn.
    struct Named(&'static str, Rc<RefCell<Vec<&'static str>>>);

    impl Deferred for Named {
        fn run_deferred(self: Rc<Self>, _: &EventLoop) {
            self.1.borrow_mut().push(self.0);
        }
    }

    #[test]
    fn shared_and_weak_entries_keep_the_order_of_closures() {
        let lp = EventLoop::new().unwrap();
        let log = Rc::new(RefCell::new(Vec::new()));
        let named = |name| Rc::new(Named(name, log.clone()));
        let kept = named("weak, kept");
        let gone = named("weak, gone");
        let first = log.clone();
        lp.defer(move |_| first.borrow_mut().push("closure"));
        assert!(lp.defer_shared(named("shared")));
        assert!(lp.defer_weak(Rc::<Named>::downgrade(&gone)));
        assert!(lp.defer_weak(Rc::<Named>::downgrade(&kept)));
        let last = log.clone();
        lp.defer(move |_| last.borrow_mut().push("closure again"));
        drop(gone);
        assert!(log.borrow().is_empty(), "nothing runs inline");
        lp.dispatch().unwrap();
        assert_eq!(
            *log.borrow(),
            ["closure", "shared", "weak, kept", "closure again"]
        );
        lp.shutdown();
        let after = named("after the shutdown");
        assert!(!lp.defer_shared(after.clone()));
        assert!(!lp.defer_weak(Rc::<Named>::downgrade(&after)));
        assert_eq!(Rc::strong_count(&after), 1, "dropped, not kept");
    }

    #[test]
    fn timeout_rounds_up_to_whole_milliseconds() {
        let lp = EventLoop::new().unwrap();
        lp.add_timer(Duration::from_micros(1500), |_| {});
        let ms = lp.timeout_ms().unwrap();
        assert!((1..=2).contains(&ms), "{ms}");
    }

    #[test]
    fn a_timer_too_far_away_for_the_clock_waits_instead_of_panicking() {
        let lp = EventLoop::new().unwrap();
        let fired = Rc::new(Cell::new(false));
        let flag = fired.clone();
        lp.add_timer(Duration::MAX, move |_| flag.set(true));
        // Left to the alarm (no timeout), or a timeout as far as it goes.
        assert!(lp.timeout_ms().is_none_or(|ms| ms > 1_000_000_000));
        lp.dispatch().unwrap();
        assert!(!fired.get());
        assert!(lp.run_until(Duration::MAX, || true).unwrap());
    }

    #[test]
    fn work_queued_outside_dispatch_makes_the_fd_readable() {
        let lp = EventLoop::new().unwrap();
        lp.dispatch().unwrap();
        let mut pfd = libc::pollfd {
            fd: lp.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout.
        assert_eq!(unsafe { libc::poll(&mut pfd, 1, 0) }, 0);
        lp.defer(|_| {});
        // SAFETY: as above.
        assert_eq!(unsafe { libc::poll(&mut pfd, 1, 0) }, 1);
        lp.dispatch().unwrap();
        // SAFETY: as above.
        assert_eq!(unsafe { libc::poll(&mut pfd, 1, 0) }, 0);
    }
}
