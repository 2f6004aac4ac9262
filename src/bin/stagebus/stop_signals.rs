//! SIGINT and SIGTERM as a request to stop the loop: blocked in every
//! thread and taken by `sigwait` in a thread of their own, which posts the
//! stop to the loop.

use crate::Failure;
use stagebus::EventLoop;
use std::io;

/// The set {SIGINT, SIGTERM}, blocked in the calling thread. Call it
/// before any thread exists, so every thread inherits the mask and the
/// signals can only be taken by sigwait in the thread of [`stop_loop_on`].
pub(crate) fn block() -> Result<libc::sigset_t, Failure> {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before
    // any other use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable sigset_t and the signal numbers
    // are valid; these calls only write into `set`.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
    }
    // SAFETY: `set` is initialised; a null old-set pointer is allowed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(Failure::Failed(format!(
            "cannot block SIGINT/SIGTERM: {}",
            io::Error::from_raw_os_error(rc)
        )));
    }
    Ok(set)
}

/// Starts the thread that waits for a signal of `set` (blocked by
/// [`block`]) and then stops `lp`.
pub(crate) fn stop_loop_on(lp: &EventLoop, set: libc::sigset_t) -> Result<(), Failure> {
    let remote = lp.remote();
    std::thread::Builder::new()
        .name("stagebus-signals".into())
        .spawn(move || {
            if wait_for_signal(&set).is_some() {
                // A failed post means the loop is gone, so it has stopped.
                let _ = remote.post(|lp| lp.stop());
            }
        })
        .map(|_| ())
        .map_err(|e| Failure::Failed(format!("cannot start the signal thread: {e}")))
}

/// Blocks until a signal of `set` arrives; `None` if sigwait fails.
fn wait_for_signal(set: &libc::sigset_t) -> Option<libc::c_int> {
    loop {
        let mut signal: libc::c_int = 0;
        // SAFETY: `set` is an initialised sigset_t and `signal` a valid
        // place for the result.
        let rc = unsafe { libc::sigwait(set, &mut signal) };
        match rc {
            0 => return Some(signal),
            libc::EINTR => continue,
            _ => return None,
        }
    }
}
