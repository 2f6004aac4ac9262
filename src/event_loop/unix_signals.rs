//! Signals as loop events: the loop waits on a signalfd, so a program
//! handles SIGTERM (or any signal it names) in a function run on the
//! loop's thread, without a signal handler or a thread of its own.
//!
//! Why not a handler: almost nothing is safe inside one (no lock, no
//! allocation), and a host language's handler (Perl's `%SIG`) runs only
//! between its own statements, never while the loop sleeps in a call of
//! ours. Why not a thread: a process with a second thread pays for it on
//! every system call (glibc's cancellation points then switch
//! cancellation on and off around each), and the broker makes several
//! per message.

use super::{EventLoop, Readiness, Source};
use crate::error::{Error, ErrorCode};
use mio::{Interest, Registry, Token};
use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;

/// What runs when a watched signal arrives.
type Handler = Box<dyn FnMut(&EventLoop, i32)>;

/// Signals taken from a signalfd instead of their default action or a
/// handler, and the function they run.
pub(super) struct SignalWatch {
    fd: OwnedFd,
    token: Cell<Option<Token>>,
    /// The signals this watch blocked, unblocked when it ends; those the
    /// thread had blocked before it stay blocked. A watch replacing this
    /// one takes over the signals both list.
    blocked: Cell<libc::sigset_t>,
    /// Taken out while it runs (it may end the watch, or replace it).
    handler: RefCell<Option<Handler>>,
}

impl Drop for SignalWatch {
    /// The mask is as it was: a signal arriving from now on has its
    /// default action (or the program's handler) again.
    fn drop(&mut self) {
        unblock(&self.blocked.get());
    }
}

/// A set without signals.
fn empty_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before
    // any other use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable sigset_t.
    unsafe { libc::sigemptyset(&mut set) };
    set
}

/// Unblocks `set` in the calling thread.
fn unblock(set: &libc::sigset_t) {
    // SAFETY: `set` is an initialised sigset_t; a null old-set pointer is
    // allowed. Unblocking cannot fail for a valid set.
    unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, set, std::ptr::null_mut()) };
}

/// Whether `signal` is in `set`.
fn has(set: &libc::sigset_t, signal: i32) -> bool {
    // SAFETY: `set` is initialised; the number was checked by `signal_set`.
    unsafe { libc::sigismember(set, signal) == 1 }
}

/// Takes `signal` out of `set`.
fn remove(set: &mut libc::sigset_t, signal: i32) {
    // SAFETY: as in `has`.
    unsafe { libc::sigdelset(set, signal) };
}

/// A borrowed fd as mio registers it (mio's `SourceFd` is not `AsRawFd`,
/// which the loop's registration asks for).
struct Fd(RawFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

impl mio::event::Source for Fd {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        mio::unix::SourceFd(&self.0).register(registry, token, interests)
    }
    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        mio::unix::SourceFd(&self.0).reregister(registry, token, interests)
    }
    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        mio::unix::SourceFd(&self.0).deregister(registry)
    }
}

/// The signals a program may take on the loop: not those it cannot
/// catch, nor the faults raised by the instruction that runs (blocked,
/// they kill the process anyway).
fn signal_set(signals: &[i32]) -> Result<libc::sigset_t, Error> {
    if signals.is_empty() {
        return Err(Error::new(
            ErrorCode::InvalidArgument,
            "no signal to watch given",
        ));
    }
    let mut set = empty_set();
    for &signal in signals {
        let refused = [
            libc::SIGKILL,
            libc::SIGSTOP,
            libc::SIGSEGV,
            libc::SIGBUS,
            libc::SIGFPE,
            libc::SIGILL,
        ];
        // SAFETY: `set` is initialised; sigaddset checks the number.
        if refused.contains(&signal) || unsafe { libc::sigaddset(&mut set, signal) } != 0 {
            return Err(Error::new(
                ErrorCode::InvalidArgument,
                format!(
                    "signal {signal} cannot be watched (not a signal, or one a program \
                     cannot catch or must not block: SIGKILL, SIGSTOP, SIGSEGV, SIGBUS, \
                     SIGFPE, SIGILL)"
                ),
            ));
        }
    }
    Ok(set)
}

impl EventLoop {
    /// Runs `handler(loop, signal)` on the loop's thread whenever one of
    /// `signals` (`libc::SIGTERM`, …) arrives, instead of the signal's
    /// default action or a handler of the program: the signals are
    /// blocked in the calling thread (the loop's) and read from a
    /// signalfd the loop waits on, so the handler may do anything a loop
    /// callback may ([`EventLoop::stop`], a graceful close). Hosts that
    /// embed the loop see it as one more fd.
    ///
    /// Threads the program started before this call must block these
    /// signals themselves (threads started after inherit the mask), or
    /// the kernel may hand a signal to one of them instead; so do child
    /// processes (unblock them in a child that should get them). One
    /// watch per thread: two loops of one thread watching one signal
    /// would unblock it for each other.
    ///
    /// A second call replaces the first without a gap: a signal the
    /// first had not read yet goes to the second if it lists it; a
    /// failed call leaves the first as it was. The handler may call
    /// either function. [`EventLoop::clear_unix_signals`] and
    /// [`EventLoop::shutdown`] end the watch; the thread's mask is then as
    /// it was before: a signal the program did not block has its default
    /// action again, one still pending included (block the signals
    /// yourself first to keep them blocked after the loop).
    ///
    /// `invalid_argument` for an empty list, a number that is no signal,
    /// or one a program cannot catch or must not block (SIGKILL, SIGSTOP,
    /// SIGSEGV, SIGBUS, SIGFPE, SIGILL); `invalid_state` on a loop shut
    /// down; `io` if the system refuses.
    pub fn on_unix_signals(
        &self,
        signals: &[i32],
        handler: impl FnMut(&EventLoop, i32) + 'static,
    ) -> Result<(), Error> {
        let set = signal_set(signals)?;
        if self.inner.shut.get() {
            return Err(Error::new(
                ErrorCode::InvalidState,
                "the loop was shut down: no signal would be watched",
            ));
        }
        // The new set is blocked before a watch it replaces lets go of
        // anything: a signal pending meanwhile waits for the new fd
        // instead of meeting its default action.
        let mut before = empty_set();
        // SAFETY: `set` is initialised and `before` is writable.
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut before) };
        if rc != 0 {
            let e = io::Error::from_raw_os_error(rc);
            return Err(Error::io("cannot block the signals", &e));
        }
        // Ours to unblock at the end: what was not blocked, or what the
        // watch being replaced blocked (the program had not).
        let old = self.inner.signals.borrow().clone();
        let old_blocked = old.as_ref().map(|w| w.blocked.get());
        let mut blocked = set;
        let mut newly = set;
        for &signal in signals {
            if has(&before, signal) {
                remove(&mut newly, signal);
                if !old_blocked.as_ref().is_some_and(|b| has(b, signal)) {
                    remove(&mut blocked, signal);
                }
            }
        }
        let watch = self.watch_signals(set, blocked, Box::new(handler));
        let watch = match watch {
            Ok(watch) => watch,
            Err(e) => {
                // The first watch stays as it was.
                unblock(&newly);
                return Err(e);
            }
        };
        if let Some(old) = &old {
            // Its signals that this watch lists are this watch's now.
            let mut left = old.blocked.get();
            for &signal in signals {
                remove(&mut left, signal);
            }
            old.blocked.set(left);
        }
        let replaced = self.inner.signals.borrow_mut().replace(watch);
        self.end_watch(replaced);
        Ok(())
    }

    /// A watch of `set` through a new signalfd registered with the loop;
    /// `blocked` is what it unblocks when it ends.
    fn watch_signals(
        &self,
        set: libc::sigset_t,
        blocked: libc::sigset_t,
        handler: Handler,
    ) -> Result<Rc<SignalWatch>, Error> {
        // SAFETY: `set` is initialised; -1 asks for a new descriptor.
        let raw = unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) };
        if raw < 0 {
            let e = io::Error::last_os_error();
            return Err(Error::io("cannot create a signalfd", &e));
        }
        // SAFETY: `raw` is a descriptor just created, owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // Nothing blocked is the watch's until it is registered: the
        // caller unblocks what this call blocked if it fails.
        let watch = Rc::new(SignalWatch {
            fd,
            token: Cell::new(None),
            blocked: Cell::new(empty_set()),
            handler: RefCell::new(Some(handler)),
        });
        let token = self
            .register(
                &mut Fd(watch.fd.as_raw_fd()),
                Interest::READABLE,
                watch.clone(),
            )
            .map_err(|e| Error::io("cannot watch the signalfd", &e))?;
        watch.token.set(Some(token));
        watch.blocked.set(blocked);
        Ok(watch)
    }

    /// Deregisters `watch` and drops it with its handler (outside the
    /// loop's borrows: the handler may hold anything).
    fn end_watch(&self, watch: Option<Rc<SignalWatch>>) {
        let Some(watch) = watch else {
            return;
        };
        if let Some(token) = watch.token.take() {
            let raw = watch.fd.as_raw_fd();
            self.deregister(&mut mio::unix::SourceFd(&raw), token);
        }
        let handler = watch.handler.borrow_mut().take();
        drop((handler, watch));
    }

    /// Ends the watch of [`EventLoop::on_unix_signals`]: its handler is dropped
    /// and the thread's mask is as it was before. Nothing happens without
    /// one. May be called from the handler itself.
    pub fn clear_unix_signals(&self) {
        let watch = self.inner.signals.borrow_mut().take();
        self.end_watch(watch);
    }

    /// Whether `watch` is still the loop's.
    fn is_current_watch(&self, watch: &SignalWatch) -> bool {
        self.inner
            .signals
            .borrow()
            .as_ref()
            .is_some_and(|w| std::ptr::eq(&**w, watch))
    }
}

impl Source for SignalWatch {
    fn ready(&self, lp: &EventLoop, _: Readiness) {
        const BATCH: usize = 8;
        if self.handler.borrow().is_none() {
            // The handler runs the loop inside itself: the read of the
            // turn that called it goes on when it returns, and takes
            // what arrived meanwhile.
            return;
        }
        // SAFETY: signalfd_siginfo is plain data, all zeroes valid.
        let mut infos: [libc::signalfd_siginfo; BATCH] = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        loop {
            // SAFETY: reads at most the bytes of `infos` into it; the
            // descriptor is non-blocking.
            let n =
                unsafe { libc::read(self.fd.as_raw_fd(), infos.as_mut_ptr().cast(), size * BATCH) };
            if n == 0 {
                return;
            }
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => return,
                    _ => {
                        log::warn!(target: "stagebus::loop", "cannot read the signalfd: {e}");
                        return;
                    }
                }
            }
            for info in &infos[..n as usize / size] {
                if !lp.is_current_watch(self) {
                    // Ended by the handler: the rest has nobody to hear it.
                    return;
                }
                let handler = self.handler.borrow_mut().take();
                let Some(mut handler) = handler else { return };
                handler(lp, info.ssi_signo as i32);
                if lp.is_current_watch(self) {
                    *self.handler.borrow_mut() = Some(handler);
                } else {
                    drop(handler);
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Whether `signal` is blocked in the calling thread.
    fn blocked(signal: i32) -> bool {
        let mut now = empty_set();
        // SAFETY: a null new set only reads the mask into `now`.
        unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut now) };
        // SAFETY: `now` is initialised.
        unsafe { libc::sigismember(&now, signal) == 1 }
    }

    /// Sends `signal` to the calling thread only (the tests' threads run
    /// side by side: a signal to the process could reach another).
    fn raise(signal: i32) {
        // SAFETY: raise sends to the calling thread.
        assert_eq!(unsafe { libc::raise(signal) }, 0);
    }

    #[test]
    fn a_watched_signal_runs_the_handler_on_the_loop_and_the_mask_comes_back() {
        let lp = EventLoop::new().unwrap();
        assert!(!blocked(libc::SIGUSR1));
        let seen = Rc::new(RefCell::new(Vec::new()));
        let s = seen.clone();
        lp.on_unix_signals(&[libc::SIGUSR1, libc::SIGUSR2], move |lp, signal| {
            s.borrow_mut().push(signal);
            if signal == libc::SIGUSR2 {
                lp.stop();
            }
        })
        .unwrap();
        assert!(blocked(libc::SIGUSR1) && blocked(libc::SIGUSR2));
        raise(libc::SIGUSR1);
        raise(libc::SIGUSR2);
        lp.run().unwrap();
        assert_eq!(*seen.borrow(), [libc::SIGUSR1, libc::SIGUSR2]);
        lp.clear_unix_signals();
        assert!(!blocked(libc::SIGUSR1) && !blocked(libc::SIGUSR2));
    }

    #[test]
    fn a_handler_may_end_its_own_watch_and_a_signal_blocked_before_stays_blocked() {
        let lp = EventLoop::new().unwrap();
        let mut set = empty_set();
        // SAFETY: `set` is initialised; SIGUSR2 is a signal.
        unsafe {
            libc::sigaddset(&mut set, libc::SIGUSR2);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        }
        let runs = Rc::new(Cell::new(0));
        let r = runs.clone();
        lp.on_unix_signals(&[libc::SIGUSR2, libc::SIGHUP], move |lp, _| {
            r.set(r.get() + 1);
            lp.clear_unix_signals();
        })
        .unwrap();
        raise(libc::SIGHUP);
        let ran = lp
            .run_until(Duration::from_secs(5), || runs.get() > 0)
            .unwrap();
        assert!(ran && runs.get() == 1);
        assert!(!blocked(libc::SIGHUP), "blocked by the watch: unblocked");
        assert!(blocked(libc::SIGUSR2), "blocked before: still blocked");
        // SAFETY: as above.
        unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) };
    }

    #[test]
    fn a_watch_replaced_keeps_its_signals_blocked_and_hands_over_a_pending_one() {
        let lp = EventLoop::new().unwrap();
        let seen = Rc::new(RefCell::new(Vec::new()));
        let s = seen.clone();
        lp.on_unix_signals(&[libc::SIGURG], move |_, signal| {
            s.borrow_mut().push(("first", signal))
        })
        .unwrap();
        // Pending, not read yet: the replacing watch takes it.
        raise(libc::SIGURG);
        let s = seen.clone();
        lp.on_unix_signals(&[libc::SIGURG, libc::SIGWINCH], move |lp, signal| {
            s.borrow_mut().push(("second", signal));
            // Replaced from inside its own handler: the signals stay
            // blocked throughout, and the third watch hears them.
            let s = s.clone();
            lp.on_unix_signals(&[libc::SIGWINCH], move |_, signal| {
                s.borrow_mut().push(("third", signal))
            })
            .unwrap();
        })
        .unwrap();
        let count = |n: usize| {
            let seen = seen.clone();
            move || seen.borrow().len() >= n
        };
        assert!(lp.run_until(Duration::from_secs(5), count(1)).unwrap());
        assert!(
            blocked(libc::SIGWINCH),
            "still blocked after the handler replaced its watch"
        );
        assert!(!blocked(libc::SIGURG), "no longer watched: unblocked");
        raise(libc::SIGWINCH);
        assert!(lp.run_until(Duration::from_secs(5), count(2)).unwrap());
        assert_eq!(
            *seen.borrow(),
            [("second", libc::SIGURG), ("third", libc::SIGWINCH)]
        );
        lp.clear_unix_signals();
        assert!(!blocked(libc::SIGWINCH));
    }

    #[test]
    fn a_handler_running_the_loop_inside_itself_loses_no_signal() {
        let lp = EventLoop::new().unwrap();
        let seen = Rc::new(RefCell::new(Vec::new()));
        let s = seen.clone();
        lp.on_unix_signals(&[libc::SIGUSR1, libc::SIGUSR2], move |lp, signal| {
            s.borrow_mut().push(signal);
            if signal == libc::SIGUSR1 {
                raise(libc::SIGUSR2);
                let _ = lp.run_until(Duration::from_millis(30), || false);
            }
        })
        .unwrap();
        raise(libc::SIGUSR1);
        let all = lp
            .run_until(Duration::from_secs(5), || seen.borrow().len() == 2)
            .unwrap();
        assert!(all, "{:?}", seen.borrow());
        assert_eq!(*seen.borrow(), [libc::SIGUSR1, libc::SIGUSR2]);
        lp.clear_unix_signals();
    }

    #[test]
    fn bad_signal_lists_are_refused_and_a_shutdown_ends_the_watch() {
        let lp = EventLoop::new().unwrap();
        for bad in [
            &[][..],
            &[0],
            &[100_000],
            &[libc::SIGKILL],
            &[libc::SIGSEGV],
        ] {
            let e = lp.on_unix_signals(bad, |_, _| {}).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidArgument, "{bad:?}: {e}");
        }
        lp.on_unix_signals(&[libc::SIGUSR1], |_, _| {}).unwrap();
        assert!(blocked(libc::SIGUSR1));
        lp.shutdown();
        assert!(!blocked(libc::SIGUSR1));
        let e = lp.on_unix_signals(&[libc::SIGUSR1], |_, _| {}).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidState);
    }
}
