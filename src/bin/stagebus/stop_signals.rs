//! SIGINT and SIGTERM as a request to stop the loop: blocked from the
//! command's start, then read by the loop itself
//! ([`EventLoop::on_unix_signals`]), which stops. No thread: the process
//! stays single-threaded, so glibc's system calls skip the cancellation
//! bookkeeping a second thread would add to each of them.

use crate::Failure;
use stagebus::EventLoop;
use std::io;

/// Proof that the stop signals are blocked since [`block`]: until the
/// loop reads them one arriving waits, instead of killing the command
/// half set up.
pub(crate) struct Blocked(());

const STOP_SIGNALS: [libc::c_int; 2] = [libc::SIGINT, libc::SIGTERM];

/// Blocks SIGINT and SIGTERM in the calling thread (the loop's), before
/// anything else runs.
pub(crate) fn block() -> Result<Blocked, Failure> {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before
    // any other use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable sigset_t and the signal numbers
    // are valid; these calls only write into `set`.
    unsafe {
        libc::sigemptyset(&mut set);
        for signal in STOP_SIGNALS {
            libc::sigaddset(&mut set, signal);
        }
    }
    // SAFETY: `set` is initialised; a null old-set pointer is allowed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(Failure::Failed(format!(
            "cannot block SIGINT/SIGTERM: {}",
            io::Error::from_raw_os_error(rc)
        )));
    }
    Ok(Blocked(()))
}

/// Stops `lp` when SIGINT or SIGTERM arrives (one that arrived since
/// [`block`] stops it at its first turn). Still watched while the
/// command closes gracefully: a second signal then cuts the linger
/// short, as a second Ctrl-C is meant to. The signals stay blocked
/// after the watch ends (they were blocked before it).
pub(crate) fn stop_loop_on(lp: &EventLoop, _: Blocked) -> Result<(), Failure> {
    lp.on_unix_signals(&STOP_SIGNALS, |lp, _| lp.stop())
        .map_err(|e| Failure::Failed(format!("cannot watch SIGINT/SIGTERM: {e}")))
}
