//! The loop's wake-up: an eventfd in the loop's epoll set that any thread
//! may make readable.
//!
//! Ours rather than mio's `Waker` (also an eventfd on Linux) because a
//! host that watches the loop's fds one by one
//! ([`EventLoop::watch_fds`](super::EventLoop::watch_fds)) must be given
//! its fd, and, watching it level-triggered, needs it read back to
//! unreadable after every wake-up; mio's waker shows neither.

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// An eventfd registered (readable, edge-triggered) in the loop's poll.
#[derive(Debug)]
pub(super) struct Wakeup {
    fd: OwnedFd,
}

impl Wakeup {
    /// A new wake-up registered under `token`.
    pub fn new(registry: &Registry, token: Token) -> io::Result<Wakeup> {
        // SAFETY: eventfd takes no pointers; the result is checked.
        let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor just created and owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        registry.register(&mut SourceFd(&fd.as_raw_fd()), token, Interest::READABLE)?;
        Ok(Wakeup { fd })
    }

    /// Makes the fd readable. Thread-safe: a write to an eventfd is one
    /// atomic addition in the kernel.
    pub fn wake(&self) -> io::Result<()> {
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

    /// Reads the count back to zero, so that a level-triggered watcher
    /// sees the fd unreadable until the next wake-up.
    pub fn drain(&self) {
        let mut count = [0u8; 8];
        // SAFETY: reads at most 8 bytes into `count`; the descriptor is
        // non-blocking, so an fd not woken gives EAGAIN.
        let _ = unsafe { libc::read(self.fd.as_raw_fd(), count.as_mut_ptr().cast(), count.len()) };
    }

    /// The eventfd.
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
