//! The loop's alarm: a timerfd in the loop's epoll set that stands for
//! timers far away, so that the loop sleeps without a timeout.
//!
//! A finite `epoll_wait` timeout makes the kernel arm and cancel a
//! high-resolution timer on every sleep. With heartbeats on, every
//! connection always has a ping timer (minutes away), so every sleep of
//! every process paid that: three hrtimer starts and cancels per brokered
//! round trip, 9-13% of `rtt.unix` (bench/profile/liveness.md). The alarm
//! is set only when the earliest timer moves earlier than what it is set
//! for (once per ping interval, not once per sleep); the loop then sleeps
//! with no timeout and the timerfd wakes it. Timers due soon still use the
//! poll's timeout (no system call to set them).

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use std::cell::Cell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// Timers due within this are waited for with the poll's timeout: the
/// alarm is for timers far away (heartbeats, long deadlines).
pub(super) const NEAR: Duration = Duration::from_millis(20);

/// A timerfd registered in the loop's poll.
pub(super) struct Alarm {
    fd: OwnedFd,
    /// When it is set to go off, if it is set.
    set_for: Cell<Option<Instant>>,
}

impl Alarm {
    /// A new, unset alarm registered under `token`.
    pub fn new(registry: &Registry, token: Token) -> io::Result<Alarm> {
        // SAFETY: timerfd_create takes no pointers; the result is checked.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor just created and owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        registry.register(&mut SourceFd(&fd.as_raw_fd()), token, Interest::READABLE)?;
        Ok(Alarm {
            fd,
            set_for: Cell::new(None),
        })
    }

    /// The timerfd.
    pub fn fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }

    /// Whether the alarm is set to go off at or before `deadline`: until
    /// it rings, no timer due at `deadline` or later is due, and the loop
    /// need not read the clock for them.
    pub fn covers(&self, deadline: Instant) -> bool {
        self.set_for.get().is_some_and(|at| at <= deadline)
    }

    /// Makes sure the alarm goes off no later than `deadline` (`now` is
    /// the clock just read): set only when unset or set for later. Fails
    /// only if the system call does (the caller then waits with a
    /// timeout instead).
    pub fn cover(&self, deadline: Instant, now: Instant) -> io::Result<()> {
        if self.covers(deadline) {
            return Ok(());
        }
        // At least a nanosecond: a zero value would disarm it.
        let after = deadline
            .saturating_duration_since(now)
            .max(Duration::from_nanos(1));
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
        // SAFETY: `spec` is a valid itimerspec; the old value is not asked for.
        let rc =
            unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        self.set_for.set(Some(deadline));
        Ok(())
    }

    /// The alarm went off (its token was ready): its count is read so
    /// that it can go off again, and it is unset. The due timers run in
    /// the same turn; the next timeout sets it again if needed.
    pub fn rang(&self) {
        let mut count = [0u8; 8];
        // SAFETY: reads at most 8 bytes into `count`; the descriptor is
        // non-blocking, so an alarm not gone off yet gives EAGAIN.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), count.as_mut_ptr().cast(), count.len()) };
        if n == 8 {
            self.set_for.set(None);
        }
    }
}

/// The loop's side of the alarm.
impl super::EventLoop {
    /// The timeout of [`Self::run`]'s poll: [`Self::next_timeout`],
    /// except that a timer far away is left to the alarm, and the poll
    /// then has no timeout (see the module doc for why).
    pub(super) fn sleep_timeout(&self) -> Option<Duration> {
        if self.has_work_now() {
            return Some(Duration::ZERO);
        }
        let inner = &self.inner;
        let deadline = inner.timers.borrow_mut().next_deadline()?;
        if inner.alarm.as_ref().is_some_and(|a| a.covers(deadline)) {
            return None;
        }
        let now = Instant::now();
        let left = deadline.saturating_duration_since(now);
        match &inner.alarm {
            Some(alarm) if left > NEAR && alarm.cover(deadline, now).is_ok() => None,
            _ => Some(left),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::NEAR;
    use crate::event_loop::EventLoop;
    use std::cell::Cell;
    use std::rc::Rc;
    use std::time::Instant;

    #[test]
    fn a_far_timer_leaves_the_poll_without_timeout_and_still_fires() {
        let lp = EventLoop::new().unwrap();
        let after = NEAR * 3;
        let start = Instant::now();
        let fired = Rc::new(Cell::new(None));
        let f = fired.clone();
        lp.add_timer(after, move |lp| {
            f.set(Some(Instant::now()));
            lp.stop();
        });
        assert_eq!(lp.sleep_timeout(), None, "left to the alarm");
        // A host is given no timeout either: the alarm is inside the fd.
        assert_eq!(lp.timeout_ms(), None);
        lp.run().unwrap();
        let at = fired.get().expect("fired");
        assert!(at.duration_since(start) >= after, "never early");
    }

    /// Whether `fd` turns readable within `ms` (-1: no limit).
    fn host_poll(fd: i32, ms: i32) -> bool {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, ms) == 1 }
    }

    #[test]
    fn a_host_waiting_on_the_fd_without_timeout_gets_a_far_timer_on_time() {
        let lp = EventLoop::new().unwrap();
        let after = NEAR * 3;
        let start = Instant::now();
        let fired = Rc::new(Cell::new(None));
        let f = fired.clone();
        lp.add_timer(after, move |_| f.set(Some(Instant::now())));
        // A host loop: poll the fd with the loop's timeout, then dispatch.
        let mut sleeps = 0;
        while fired.get().is_none() {
            let timeout = lp.timeout_ms();
            if sleeps == 0 {
                assert_eq!(timeout, None, "the far timer is the alarm's");
            }
            let ms = timeout.map_or(-1, |ms| ms.min(10_000) as i32);
            assert!(host_poll(lp.fd(), ms) || ms >= 0, "woken by the fd");
            lp.dispatch().unwrap();
            sleeps += 1;
            assert!(sleeps < 100, "the host spins");
        }
        let at = fired.get().unwrap();
        assert!(at.duration_since(start) >= after, "never early");
        assert_eq!(lp.timeout_ms(), None, "nothing left");
    }

    #[test]
    fn a_near_timer_uses_the_poll_timeout() {
        let lp = EventLoop::new().unwrap();
        lp.add_timer(NEAR / 2, |lp| lp.stop());
        assert!(lp.sleep_timeout().is_some_and(|t| t <= NEAR / 2));
        lp.run().unwrap();
    }

    #[test]
    fn a_cancelled_far_timer_wakes_the_loop_once_for_nothing() {
        let lp = EventLoop::new().unwrap();
        let early = lp.add_timer(NEAR * 2, |_| panic!("cancelled"));
        assert_eq!(lp.sleep_timeout(), None);
        lp.cancel_timer(early);
        let fired = Rc::new(Cell::new(false));
        let f = fired.clone();
        lp.add_timer(NEAR * 4, move |lp| {
            f.set(true);
            lp.stop();
        });
        lp.run().unwrap();
        assert!(fired.get());
    }
}
