//! `sb_loop` and `sb_waker`: the loop and its thread-safe handle.

use super::boundary::{fail, status, value_or, Fail};
use super::callbacks::{sb_free_fn, SendUserData, UserData};
use super::convert::slice;
use super::handles::{arg, borrowed, boxed, take, Handle};
use super::status::sb_status;
use crate::event_loop::{EventLoop, FdEvents, LoopRemote, TimerId};
use std::ffi::c_void;
use std::time::Duration;

/// An event loop (see the conventions for its thread rule).
#[derive(Debug)]
pub struct sb_loop {
    _private: [u8; 0],
}

impl Handle for sb_loop {
    type Target = EventLoop;
    fn home(lp: &EventLoop) -> Option<&EventLoop> {
        Some(lp)
    }
}

/// The thread-safe handle of a loop: wake it or post a function to it
/// from any thread.
#[derive(Debug)]
pub struct sb_waker {
    _private: [u8; 0],
}

impl Handle for sb_waker {
    type Target = LoopRemote;
    /// Thread-safe: usable from any thread.
    fn home(_: &LoopRemote) -> Option<&EventLoop> {
        None
    }
}

/// A function run on the loop thread: by a timer or a post.
pub type sb_loop_fn = Option<unsafe extern "C" fn(user: *mut c_void, lp: *mut sb_loop)>;

/// The loop as a C callback sees it: borrowed for the call.
fn loop_ptr(lp: &EventLoop) -> *mut sb_loop {
    borrowed::<sb_loop>(lp).cast_mut()
}

/// Creates a loop in `*out`. Free with `sb_loop_free`.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_loop_new(out: *mut *mut sb_loop) -> sb_status {
    status(|| {
        let lp = EventLoop::new()
            .map_err(|e| fail(sb_status::SB_IO, format!("cannot create a loop: {e}")))?;
        if out.is_null() {
            return Err(fail(sb_status::SB_NULL_ARGUMENT, "out is NULL"));
        }
        // SAFETY: checked non-NULL; writable per the conventions.
        unsafe { out.write(boxed::<sb_loop>(lp)) };
        Ok(())
    })
}

/// Frees a loop. Pending timers, deferred work and posted functions are
/// dropped without running (their `free_user` runs). Output that closed
/// clients were still flushing (see `sb_client_close`) is dropped, and
/// the `done` of a graceful close that has not run yet never runs (its
/// `free_user` does): to be sure an answer left, run the loop until
/// `sb_client_close_graceful` reports. Objects created on the loop may be
/// freed before or after it, but not used after it.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_loop_free(lp: *mut sb_loop) {
    // SAFETY: NULL or an owned sb_loop from sb_loop_new, freed once.
    if let Some(lp) = unsafe { take(lp) } {
        let _ = status(|| {
            lp.shutdown();
            Ok(())
        });
    }
}

/// The fd a host loop watches for reading; -1 if `lp` is NULL.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_loop_fd(lp: *const sb_loop) -> i32 {
    // SAFETY: NULL or a live sb_loop.
    value_or(-1, || Ok(unsafe { arg(lp, "loop") }?.fd()))
}

/// How long a host may wait before calling `sb_loop_dispatch`: -1 for no
/// deadline (wait for the fd), 0 for now, else whole milliseconds rounded
/// up. Ask again after every dispatch. Timers far away (heartbeats, long
/// deadlines) are inside the fd (a timerfd in it turns it readable when
/// one is due), so they give -1: the host sleeps without a timeout.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_loop_timeout_ms(lp: *const sb_loop) -> i64 {
    value_or(-1, || {
        // SAFETY: NULL or a live sb_loop.
        let lp = unsafe { arg(lp, "loop") }?;
        Ok(lp
            .timeout_ms()
            .map_or(-1, |ms| ms.min(i64::MAX as u64) as i64))
    })
}

/// One non-blocking turn: runs everything ready; callbacks run inside.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_loop_dispatch(lp: *mut sb_loop) -> sb_status {
    status(|| {
        // SAFETY: NULL or a live sb_loop. Driven through a handle of its
        // own: a callback may free the caller's (`sb_loop_free`), and the
        // turn must not go on reading freed memory.
        let lp = unsafe { arg(lp, "loop") }?.clone();
        lp.dispatch()
            .map_err(|e| fail(sb_status::SB_IO, format!("poll failed: {e}")))
    })
}

/// `events` bit of `sb_loop_watch_fds` and `sb_loop_dispatch_fd`: readable.
pub const SB_FD_READ: u32 = 1;
/// `events` bit of `sb_loop_watch_fds` and `sb_loop_dispatch_fd`: writable.
pub const SB_FD_WRITE: u32 = 2;

/// Told of a change to the fds a host watches: watch `fd` for `events`
/// (`SB_FD_READ`, `SB_FD_WRITE`, or both), level-triggered; 0: stop
/// watching it. Runs on the loop's thread, inside the loop's calls.
pub type sb_watch_fn = Option<unsafe extern "C" fn(user: *mut c_void, fd: i32, events: u32)>;

/// Hands a host that can watch several fds every fd the loop waits on,
/// instead of the one of `sb_loop_fd`: `f(user, fd, events)` runs at
/// once for each fd the loop has, and whenever the loop adds one, drops
/// one (`events` 0) or changes what it waits for. The host watches each
/// as told, level-triggered, and calls `sb_loop_dispatch_fd` when one is
/// ready, and `sb_loop_dispatch` when `sb_loop_timeout_ms` passes. This
/// saves the second wait of every wake-up (the host's on the loop's
/// epoll fd, then the loop's inside it).
///
/// `f` should only change the host's watches; calling
/// `sb_loop_watch_fds` or `sb_loop_unwatch_fds` from it fails with
/// `SB_INVALID_STATE`. A second call replaces the first (whose `f` is
/// told to drop every fd first). A source whose input waits (the peer
/// has too much output queued, say) is not to be watched for reading
/// meanwhile: `f` is told so, and told again when it is. `free_user`
/// runs once when the watch ends: `sb_loop_unwatch_fds`, a later
/// `sb_loop_watch_fds`, `sb_loop_free` (which tells `f` nothing: call
/// `sb_loop_unwatch_fds` first to have the host's watches dropped), or
/// a failure of this call.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_loop_watch_fds(
    lp: *mut sb_loop,
    f: sb_watch_fn,
    user: *mut c_void,
    free_user: sb_free_fn,
) -> sb_status {
    let user = UserData::new(user, free_user);
    status(|| {
        // SAFETY: NULL or a live sb_loop. Through a handle of its own, as
        // in sb_loop_dispatch: the old watch function, told to drop its
        // fds, may free the caller's.
        let lp = unsafe { arg(lp, "loop") }?.clone();
        let f = f.ok_or_else(|| fail(sb_status::SB_NULL_ARGUMENT, "f is NULL"))?;
        Ok(lp.watch_fds(move |fd, events| {
            // SAFETY: the C caller's function with its own user pointer.
            unsafe { f(user.get(), fd, events.bits()) };
        })?)
    })
}

/// Back to the one fd of `sb_loop_fd`: the watch function is told to
/// drop every fd, then its `free_user` runs. Nothing happens if no host
/// watches the fds; `SB_INVALID_STATE` from inside the watch function.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_loop_unwatch_fds(lp: *mut sb_loop) -> sb_status {
    status(|| {
        // SAFETY: NULL or a live sb_loop; through a handle of its own, as
        // in sb_loop_watch_fds.
        let lp = unsafe { arg(lp, "loop") }?.clone();
        Ok(lp.unwatch_fds()?)
    })
}

/// One non-blocking turn for a host that watches the fds one by one
/// (`sb_loop_watch_fds`): `fd` was found ready for `events`
/// (`SB_FD_READ`, `SB_FD_WRITE`; a hang-up or error counts as
/// readable). Runs what that fd has, then due timers and queued work;
/// callbacks run inside. An fd the loop has dropped since the host
/// polled only runs the rest. `SB_INVALID_STATE` without
/// `sb_loop_watch_fds`; `SB_INVALID_ARGUMENT` for a negative fd or an
/// unknown bit.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_loop_dispatch_fd(lp: *mut sb_loop, fd: i32, events: u32) -> sb_status {
    status(|| {
        // SAFETY: NULL or a live sb_loop; driven through a handle of its
        // own, as in sb_loop_dispatch.
        let lp = unsafe { arg(lp, "loop") }?.clone();
        if fd < 0 {
            return Err(fail(
                sb_status::SB_INVALID_ARGUMENT,
                format!("fd {fd} is negative"),
            ));
        }
        let ready = FdEvents::from_bits(events).ok_or_else(|| {
            fail(
                sb_status::SB_INVALID_ARGUMENT,
                format!(
                    "events {events:#x}: only SB_FD_READ ({SB_FD_READ}) and \
                     SB_FD_WRITE ({SB_FD_WRITE}) are known"
                ),
            )
        })?;
        Ok(lp.dispatch_fd(fd, ready)?)
    })
}

/// Runs until `sb_loop_stop` (from a callback, or posted by a waker).
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_loop_run(lp: *mut sb_loop) -> sb_status {
    status(|| {
        // SAFETY: NULL or a live sb_loop; driven through a handle of its
        // own, as in sb_loop_dispatch.
        let lp = unsafe { arg(lp, "loop") }?.clone();
        lp.run()
            .map_err(|e| fail(sb_status::SB_IO, format!("poll failed: {e}")))
    })
}

/// Runs until `sb_loop_stop` or until `ms` milliseconds have passed.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_loop_run_for(lp: *mut sb_loop, ms: u64) -> sb_status {
    status(|| {
        // SAFETY: NULL or a live sb_loop; driven through a handle of its
        // own, as in sb_loop_dispatch.
        let lp = unsafe { arg(lp, "loop") }?.clone();
        lp.run_until(Duration::from_millis(ms), || false)
            .map(|_| ())
            .map_err(|e| fail(sb_status::SB_IO, format!("poll failed: {e}")))
    })
}

/// Makes `sb_loop_run` return after the current turn. Nothing is
/// dropped: output closed clients are still flushing waits for the next
/// run or dispatch.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_loop_stop(lp: *mut sb_loop) -> sb_status {
    status(|| {
        // SAFETY: NULL or a live sb_loop.
        unsafe { arg(lp, "loop") }?.stop();
        Ok(())
    })
}

/// Run on the loop's thread when a watched Unix signal arrives
/// (`sb_loop_on_unix_signals`).
pub type sb_unix_signal_fn =
    Option<unsafe extern "C" fn(user: *mut c_void, lp: *mut sb_loop, signal: i32)>;

/// Takes the `count` Unix signals at `signals` (SIGTERM, SIGINT, …) on
/// the loop instead of their default action or a signal handler:
/// `f(user, loop, signal)` runs on the loop's thread when one arrives, so
/// it may call anything a loop callback may (`sb_loop_stop`, say). The
/// signals are blocked in the calling thread, which must be the loop's,
/// and read from a signalfd the loop waits on (a host watching the fds
/// is told of it). Threads started before this call must block them
/// too, and child processes inherit the mask. A second call replaces the
/// first without a gap (a failed one leaves it). `SB_INVALID_ARGUMENT`
/// for no signal, a number that is no signal, or SIGKILL, SIGSTOP,
/// SIGSEGV, SIGBUS, SIGFPE, SIGILL. `free_user` runs once when the watch
/// ends (`sb_loop_clear_unix_signals`, a later call, `sb_loop_free`, or
/// a failure of this call); the thread's signal mask is then as before,
/// so a signal the program did not block itself has its default action
/// again, even one still pending (a second SIGTERM during the exit).
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_loop_on_unix_signals(
    lp: *mut sb_loop,
    signals: *const i32,
    count: usize,
    f: sb_unix_signal_fn,
    user: *mut c_void,
    free_user: sb_free_fn,
) -> sb_status {
    let user = UserData::new(user, free_user);
    status(|| {
        // SAFETY: NULL or a live sb_loop. Through a handle of its own, as
        // in sb_loop_dispatch: the replaced watch's free_user may free
        // the caller's.
        let lp = unsafe { arg(lp, "loop") }?.clone();
        let f = f.ok_or_else(|| fail(sb_status::SB_NULL_ARGUMENT, "f is NULL"))?;
        // SAFETY: NULL (with no count) or `count` readable ints.
        let list = unsafe { slice(signals, count, "signals") }?;
        Ok(lp.on_unix_signals(list, move |lp, signal| {
            // SAFETY: the C caller's function with its own user pointer;
            // the loop pointer is valid for the call.
            unsafe { f(user.get(), loop_ptr(lp), signal) };
        })?)
    })
}

/// Ends the watch of `sb_loop_on_unix_signals`: its `free_user` runs and
/// the thread's signal mask is as before. Nothing happens without one.
/// May be called from the signal function itself.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_loop_clear_unix_signals(lp: *mut sb_loop) -> sb_status {
    status(|| {
        // SAFETY: NULL or a live sb_loop; through a handle of its own, as
        // in sb_loop_on_unix_signals.
        let lp = unsafe { arg(lp, "loop") }?.clone();
        lp.clear_unix_signals();
        Ok(())
    })
}

/// Runs `f(user, loop)` once after `ms` milliseconds; `*out_id` names the
/// timer for `sb_loop_cancel_timer`. `free_user` runs once after `f` ran
/// or the timer was cancelled.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_loop_add_timer(
    lp: *mut sb_loop,
    ms: u64,
    f: sb_loop_fn,
    user: *mut c_void,
    free_user: sb_free_fn,
    out_id: *mut u64,
) -> sb_status {
    let user = UserData::new(user, free_user);
    status(|| {
        // SAFETY: NULL or a live sb_loop.
        let lp = unsafe { arg(lp, "loop") }?;
        let f = f.ok_or_else(|| fail(sb_status::SB_NULL_ARGUMENT, "f is NULL"))?;
        if out_id.is_null() {
            return Err(fail(sb_status::SB_NULL_ARGUMENT, "out_id is NULL"));
        }
        let id = lp.add_timer(Duration::from_millis(ms), move |lp| {
            // SAFETY: the C caller's function with its own user pointer;
            // the loop pointer is valid for the call.
            unsafe { f(user.get(), loop_ptr(lp)) };
        });
        // SAFETY: checked non-NULL above.
        unsafe { out_id.write(id.to_raw()) };
        Ok(())
    })
}

/// Cancels a timer; `SB_NOT_FOUND` if it already ran or was cancelled.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_loop_cancel_timer(lp: *mut sb_loop, id: u64) -> sb_status {
    status(|| {
        // SAFETY: NULL or a live sb_loop.
        let lp = unsafe { arg(lp, "loop") }?;
        if lp.cancel_timer(TimerId::from_raw(id)) {
            Ok(())
        } else {
            Err(fail(
                sb_status::SB_NOT_FOUND,
                format!("timer {id} is not pending"),
            ))
        }
    })
}

/// The loop's thread-safe handle. Free with `sb_waker_free` (from any
/// thread).
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_loop_waker(lp: *const sb_loop) -> *mut sb_waker {
    value_or(std::ptr::null_mut(), || {
        // SAFETY: NULL or a live sb_loop.
        let lp = unsafe { arg(lp, "loop") }?;
        Ok(boxed::<sb_waker>(lp.remote()))
    })
}

/// Frees a waker. NULL is a no-op. Thread-safe. It holds nothing posted:
/// posts not yet run belong to the loop, and freeing the loop drops them
/// (running their `free_user` on the loop's thread).
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_waker_free(waker: *mut sb_waker) {
    // SAFETY: NULL or an owned sb_waker, freed once.
    drop(unsafe { take(waker) });
}

/// Makes the loop's fd readable (wakes `sb_loop_run`). Thread-safe.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_waker_wake(waker: *const sb_waker) -> sb_status {
    status(|| {
        // SAFETY: NULL or a live sb_waker.
        let waker = unsafe { arg(waker, "waker") }?;
        waker
            .wake()
            .map_err(|e| fail(sb_status::SB_IO, format!("wake failed: {e}")))
    })
}

/// Runs `f(user, loop)` on the loop thread during its next turn.
/// Thread-safe; `user` must be usable on the loop thread. `free_user`
/// runs once, on the loop thread, after `f` (or, without `f`, when the
/// loop is freed before its next turn).
///
/// After the loop was freed nothing would run `f`: the post fails with
/// `SB_INVALID_STATE`, keeps nothing, and runs `free_user` at once, on
/// the calling thread (as on every failure of this call).
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_waker_post(
    waker: *const sb_waker,
    f: sb_loop_fn,
    user: *mut c_void,
    free_user: sb_free_fn,
) -> sb_status {
    let user = SendUserData(UserData::new(user, free_user));
    status(|| {
        // SAFETY: NULL or a live sb_waker.
        let waker = unsafe { arg(waker, "waker") }?;
        let f = f.ok_or_else(|| fail(sb_status::SB_NULL_ARGUMENT, "f is NULL"))?;
        waker
            .post(move |lp| {
                let user = user;
                // SAFETY: the C caller's function with its own user
                // pointer; the loop pointer is valid for the call.
                unsafe { f(user.0.get(), loop_ptr(lp)) };
            })
            .map_err(Fail::from)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fd_bits_are_the_loops() {
        let both = FdEvents {
            readable: true,
            writable: true,
        };
        assert_eq!(SB_FD_READ, FdEvents::READABLE.bits());
        assert_eq!(SB_FD_READ | SB_FD_WRITE, both.bits());
        assert_eq!(
            FdEvents::from_bits(SB_FD_WRITE).map(|e| e.writable),
            Some(true)
        );
        assert_eq!(FdEvents::from_bits(4), None);
    }
}
