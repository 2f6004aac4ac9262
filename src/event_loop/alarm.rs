//! The loop's alarm: the wake-up's timerfd (see `wakeup`), set to stand
//! for timers far away, so that the loop sleeps without a timeout.
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

use super::wakeup::Wakeup;
use std::cell::Cell;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Timers due within this are waited for with the poll's timeout: the
/// alarm is for timers far away (heartbeats, long deadlines).
pub(super) const NEAR: Duration = Duration::from_millis(20);

/// The loop's wake-up timerfd, as an alarm.
pub(super) struct Alarm {
    bell: Arc<Wakeup>,
    /// When it is set to go off, if it is set.
    set_for: Cell<Option<Instant>>,
}

impl Alarm {
    /// The alarm of a wake-up that is a timerfd; `None` for an eventfd.
    pub fn new(bell: &Arc<Wakeup>) -> Option<Alarm> {
        bell.is_timer().then(|| Alarm {
            bell: bell.clone(),
            set_for: Cell::new(None),
        })
    }

    /// Whether it is set to go off by `deadline`.
    pub fn covers(&self, deadline: Instant) -> bool {
        self.set_for.get().is_some_and(|at| at <= deadline)
    }

    /// Sets it to go off at `deadline` (`now` is the current time),
    /// unless it already goes off by then. A wake it replaced rings
    /// again (see `wakeup`).
    pub fn cover(&self, deadline: Instant, now: Instant) -> io::Result<()> {
        if self.covers(deadline) {
            return Ok(());
        }
        self.bell
            .set_timer(deadline.saturating_duration_since(now))?;
        self.set_for.set(Some(deadline));
        if self.bell.rung() {
            self.set_for.set(None);
            self.bell.ring()?;
        }
        Ok(())
    }

    /// The timerfd went off, for its deadline or for a wake, or a wake of
    /// this thread replaced its setting: it stands for no deadline now,
    /// and the next timeout sets it again if needed.
    pub fn unset(&self) {
        self.set_for.set(None);
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

    /// Wakes from another thread while the loop re-arms the alarm (the
    /// same timerfd) before every sleep: no wake may be lost to a setting
    /// of the alarm. Each post sets a far timer earlier than the last, so
    /// the next sleep sets the alarm again; a lost wake would leave the
    /// loop asleep until that timer, 5 s away (the poster notes a wait of
    /// more than 2 s as a stall: a loop that is not asleep runs a post
    /// within microseconds).
    #[test]
    fn wakes_from_another_thread_survive_the_alarm_being_set_between_them() {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::Arc;
        use std::time::Duration;
        const POSTS: usize = 20_000;
        let lp = EventLoop::new().unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        let stalled = Arc::new(AtomicBool::new(false));
        let remote = lp.remote();
        let (counter, stall) = (ran.clone(), stalled.clone());
        let poster = std::thread::spawn(move || {
            for k in 0..POSTS {
                let c = counter.clone();
                remote
                    .post(move |lp| {
                        let far = Duration::from_secs(5) - Duration::from_micros(k as u64);
                        lp.add_timer(far, |_| {});
                        if c.fetch_add(1, Ordering::SeqCst) + 1 == POSTS {
                            lp.stop();
                        }
                    })
                    .unwrap();
                // Every other post waits for the last to run, so that
                // posts meet the loop both asleep and busy.
                let since = Instant::now();
                while k % 2 == 0 && counter.load(Ordering::SeqCst) <= k {
                    if since.elapsed() > Duration::from_secs(2) {
                        stall.store(true, Ordering::SeqCst);
                        break;
                    }
                    std::thread::yield_now();
                }
            }
        });
        lp.run().unwrap();
        poster.join().unwrap();
        assert_eq!(ran.load(Ordering::SeqCst), POSTS);
        assert!(!stalled.load(Ordering::SeqCst), "a wake was lost");
        lp.shutdown();
    }
}
