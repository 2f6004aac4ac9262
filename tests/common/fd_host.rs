//! A host loop that watches the loop's fds one by one
//! ([`EventLoop::watch_fds`]), as a `poll(2)` host would: the embedding
//! tests drive flows through it, the federation tests check that an idle
//! broker leaves it quiet.

use super::LIMIT;
use stagebus::{EventLoop, FdEvents};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::Instant;

/// A host that watches the loop's fds one by one with `poll(2)`,
/// level-triggered, as it was told to by [`EventLoop::watch_fds`].
pub struct FdHost {
    lp: EventLoop,
    /// What the host was told to watch, and for what.
    pub watched: Rc<RefCell<BTreeMap<RawFd, FdEvents>>>,
}

impl FdHost {
    pub fn new(lp: &EventLoop) -> FdHost {
        let watched: Rc<RefCell<BTreeMap<RawFd, FdEvents>>> = Rc::default();
        let w = watched.clone();
        lp.watch_fds(move |fd, events| {
            let mut w = w.borrow_mut();
            if events.is_none() {
                assert!(w.remove(&fd).is_some(), "fd {fd} dropped but never watched");
            } else {
                w.insert(fd, events);
            }
        })
        .unwrap();
        FdHost {
            lp: lp.clone(),
            watched,
        }
    }

    /// The watched fds ready within `wait_ms`, and what for.
    pub fn ready(&self, wait_ms: u64) -> Vec<(RawFd, FdEvents)> {
        let mut pfds: Vec<libc::pollfd> = self
            .watched
            .borrow()
            .iter()
            .map(|(&fd, e)| libc::pollfd {
                fd,
                events: if e.readable { libc::POLLIN } else { 0 }
                    | if e.writable { libc::POLLOUT } else { 0 },
                revents: 0,
            })
            .collect();
        // SAFETY: `pfds` is a valid array of its length; the timeout fits.
        let n = unsafe {
            libc::poll(
                pfds.as_mut_ptr(),
                pfds.len() as libc::nfds_t,
                wait_ms.min(i32::MAX as u64) as i32,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            assert_eq!(e.kind(), std::io::ErrorKind::Interrupted, "poll: {e}");
            return Vec::new();
        }
        pfds.iter()
            .filter(|p| p.revents != 0)
            .map(|p| {
                let events = FdEvents {
                    readable: p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0,
                    writable: p.revents & libc::POLLOUT != 0,
                };
                (p.fd, events)
            })
            .collect()
    }

    /// Waits for any watched fd or the
    /// timeout, then dispatches each ready fd, or the timeout. Returns how
    /// many times it dispatched.
    #[track_caller]
    pub fn run(&self, done: impl Fn() -> bool) -> u32 {
        let deadline = Instant::now() + LIMIT;
        let mut dispatches = 0;
        while !done() {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "the host loop timed out");
            let wait_ms = self
                .lp
                .timeout_ms()
                .unwrap_or(u64::MAX)
                .min(left.as_millis() as u64 + 1);
            let ready = self.ready(wait_ms);
            if ready.is_empty() {
                self.lp.dispatch().unwrap();
                dispatches += 1;
            }
            for (fd, events) in ready {
                self.lp.dispatch_fd(fd, events).unwrap();
                dispatches += 1;
            }
        }
        dispatches
    }

    /// Dispatches until nothing is ready and the timeout is not zero.
    #[track_caller]
    pub fn settle(&self) {
        for _ in 0..100 {
            let ready = self.ready(0);
            if ready.is_empty() && self.lp.timeout_ms() != Some(0) {
                return;
            }
            self.lp.dispatch().unwrap();
            for (fd, events) in ready {
                self.lp.dispatch_fd(fd, events).unwrap();
            }
        }
        panic!("the loop never went quiet: {:?}", self.ready(0));
    }
}
