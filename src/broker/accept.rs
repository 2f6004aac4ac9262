//! What to do when accepting a connection fails: go on with the next, or
//! pause and retry with back-off.
//!
//! When accepting failed for lack of resources (EMFILE, ENFILE, ENOBUFS,
//! ENOMEM), the connections stay in the kernel's backlog, and the
//! listener, being edge-triggered, would not report them again until yet
//! another connection arrives. So the shell retries accepting: at once
//! when one of the broker's own connections closes (a descriptor came
//! free), and from a timer with back-off for descriptors freed elsewhere
//! in the process or system.
//!
//! No reserve descriptor is kept to accept-and-close the excess (as
//! libev and nginx may): waiting clients are served, in order, as soon as
//! descriptors come free, instead of being dropped; the kernel bounds the
//! backlog, and the connection limit ([`super::Limits::max_connections`],
//! which the CLI derives from its descriptor limit) closes excess
//! connections before descriptors run out.

use crate::event_loop::TimerId;
use std::time::Duration;

/// The first retry's delay, doubled on each failed retry up to
/// [`ACCEPT_RETRY_MAX`].
const ACCEPT_RETRY_FIRST: Duration = Duration::from_millis(10);
const ACCEPT_RETRY_MAX: Duration = Duration::from_secs(1);

/// The retry timer of a paused accept, and its back-off.
#[derive(Debug, Default)]
pub(super) struct AcceptRetry {
    /// Armed while paused.
    pub timer: Option<TimerId>,
    /// The next timer's delay.
    delay: Duration,
}

impl AcceptRetry {
    /// The delay of the next retry timer: the first, then each time
    /// doubled, up to the most.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.delay.max(ACCEPT_RETRY_FIRST);
        self.delay = (delay * 2).min(ACCEPT_RETRY_MAX);
        delay
    }
}

/// What to do after a failed `accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AcceptFailure {
    /// The failure belonged to that one connection (or to the call):
    /// go on with the next.
    Retry,
    /// Out of descriptors or memory, or an unexpected error: stop, and
    /// try again later.
    Pause,
}

pub(super) fn accept_failure(e: &std::io::Error) -> AcceptFailure {
    // Linux reports a pending connection's network error from accept
    // itself (accept(2), "Error handling"); the connection is gone and
    // the next one may be fine.
    match e.raw_os_error() {
        Some(
            libc::EINTR
            | libc::ECONNABORTED
            | libc::EPROTO
            | libc::EPERM
            | libc::ENETDOWN
            | libc::ENOPROTOOPT
            | libc::EHOSTDOWN
            | libc::EHOSTUNREACH
            | libc::EOPNOTSUPP
            | libc::ENETUNREACH,
        ) => AcceptFailure::Retry,
        #[cfg(any(target_os = "linux", target_os = "android"))]
        Some(libc::ENONET) => AcceptFailure::Retry,
        _ => AcceptFailure::Pause,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retry_delay_doubles_up_to_its_most() {
        let mut retry = AcceptRetry::default();
        let delays: Vec<u128> = (0..10).map(|_| retry.next_delay().as_millis()).collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
    }

    #[test]
    fn running_out_of_descriptors_pauses_a_lost_connection_does_not() {
        let os = std::io::Error::from_raw_os_error;
        assert_eq!(accept_failure(&os(libc::EMFILE)), AcceptFailure::Pause);
        assert_eq!(accept_failure(&os(libc::ENFILE)), AcceptFailure::Pause);
        assert_eq!(accept_failure(&os(libc::ENOBUFS)), AcceptFailure::Pause);
        assert_eq!(
            accept_failure(&os(libc::ECONNABORTED)),
            AcceptFailure::Retry
        );
    }
}
