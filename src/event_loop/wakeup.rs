//! The loop's wake-up: one fd in the loop's epoll set that any thread may
//! make readable. A timerfd, which is the loop's alarm too (see `alarm`):
//! a wake-up sets it to expire at once. Where the system gives no
//! timerfd, an eventfd (and the loop has no alarm).
//!
//! One fd for both because a host that watches the loop's fds one by one
//! ([`EventLoop::watch_fds`](super::EventLoop::watch_fds)) pays for every
//! fd on every wait: `poll()` adds and removes a wait-queue entry per fd
//! each time (bench/profile/xeon-vm.md: about 0.5 us per fd on one VM).
//! Ours rather than mio's `Waker` because such a host must be given its
//! fd, and, watching it level-triggered, needs it read back to
//! unreadable after every wake-up.
//!
//! Sharing the timerfd has one hazard: the loop re-arms the alarm for a
//! far timer with `timerfd_settime`, which replaces an expiry another
//! thread has just set, and resets the count of one that has just
//! passed. So every wake first sets `rung`, and the alarm, after setting
//! the timer, rings again if it finds `rung` set ([`Wakeup::rung`]): the
//! kernel's lock on the timerfd orders the two settings, so either the
//! wake's setting came last, or the alarm sees its flag.

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A timerfd (or an eventfd) registered (readable, edge-triggered) in the
/// loop's poll.
#[derive(Debug)]
pub(super) struct Wakeup {
    fd: OwnedFd,
    /// A timerfd (the alarm's too); else an eventfd.
    timer: bool,
    /// Set by every wake before it makes the fd readable; taken by the
    /// loop when the fd is (see the module doc).
    rung: AtomicBool,
}

impl Wakeup {
    /// A new wake-up registered under `token`: a timerfd, or an eventfd
    /// where the system has none.
    pub fn new(registry: &Registry, token: Token) -> io::Result<Wakeup> {
        // SAFETY: timerfd_create takes no pointers; the result is checked.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        let (raw, timer) = if raw >= 0 {
            (raw, true)
        } else {
            // SAFETY: eventfd takes no pointers; the result is checked.
            let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
            if raw < 0 {
                return Err(io::Error::last_os_error());
            }
            (raw, false)
        };
        // SAFETY: `raw` is a descriptor just created and owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        registry.register(&mut SourceFd(&fd.as_raw_fd()), token, Interest::READABLE)?;
        Ok(Wakeup {
            fd,
            timer,
            rung: AtomicBool::new(false),
        })
    }

    /// Whether the fd is a timerfd, which the alarm may use.
    pub fn is_timer(&self) -> bool {
        self.timer
    }

    /// Makes the fd readable. Thread-safe: the flag is atomic, and each
    /// setting of the fd one system call.
    pub fn wake(&self) -> io::Result<()> {
        self.rung.store(true, Ordering::SeqCst);
        if self.timer {
            return self.ring();
        }
        let one = 1u64.to_ne_bytes();
        loop {
            // SAFETY: writes the 8 bytes of `one` from a live buffer.
            let n = unsafe { libc::write(self.fd.as_raw_fd(), one.as_ptr().cast(), one.len()) };
            if n == 8 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => {}
                // The count is at its maximum (nobody drains it in the
                // edge-triggered case): reading resets it, and the fd is
                // readable either way.
                io::ErrorKind::WouldBlock => {
                    self.drain();
                }
                _ => return Err(e),
            }
        }
    }

    /// Sets the timerfd to expire at once (a wake, or a wake the alarm's
    /// setting replaced).
    pub fn ring(&self) -> io::Result<()> {
        self.set_timer(Duration::from_nanos(1))
    }

    /// Sets the timerfd to expire once after `after` (at least 1 ns: zero
    /// would disarm it), replacing what it was set to.
    pub fn set_timer(&self, after: Duration) -> io::Result<()> {
        let after = after.max(Duration::from_nanos(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: after.as_secs().min(i64::MAX as u64) as libc::time_t,
                tv_nsec: after.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: `spec` is a valid itimerspec; a null old-value pointer
        // is allowed.
        let rc =
            unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Whether a wake happened that the loop has not taken yet.
    pub fn rung(&self) -> bool {
        self.rung.load(Ordering::SeqCst)
    }

    /// Takes the flag of the wakes so far (the loop, when the fd was
    /// readable, before it runs what they posted). A read-modify-write:
    /// reading a wake's flag orders what it posted before this.
    pub fn take_rung(&self) -> bool {
        self.rung.swap(false, Ordering::SeqCst)
    }

    /// Reads the fd back to unreadable, so that a level-triggered
    /// watcher sees it unreadable until the next wake-up or expiry.
    pub fn drain(&self) {
        let mut count = [0u8; 8];
        // SAFETY: reads at most 8 bytes into `count`; the descriptor is
        // non-blocking, so an fd not woken gives EAGAIN.
        let _ = unsafe { libc::read(self.fd.as_raw_fd(), count.as_mut_ptr().cast(), count.len()) };
    }

    /// The fd.
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
