//! Opaque handles: how a C pointer becomes the Rust object behind it,
//! with the owner-thread check on every read.

use super::boundary::{fail, Fail};
use super::status::{sb_status, set_last_error};
use crate::event_loop::EventLoop;

/// Binds an opaque C handle type to the Rust type behind it, so that a
/// pointer can only be read as what it really is. Handle types are
/// written `pub struct sb_x { _private: [u8; 0] }` (spelled out, not made
/// by a macro, so that cbindgen sees them) and emitted as incomplete
/// structs.
///
/// Every handle also says which loop its object belongs to, and every
/// way of reading a handle ([`arg`], [`arg_mut`], [`take`]) checks the
/// calling thread against that loop's before it touches the object: the
/// thread rule is enforced here, once, so that no entry point can forget
/// it.
pub(crate) trait Handle {
    /// The Rust type a pointer of this handle points to.
    type Target;

    /// The loop `target` belongs to, whose thread alone may use it; `None`
    /// for plain data (args, values) and thread-safe handles (wakers),
    /// which any thread may use.
    ///
    /// Called from any thread before the check, so it must reach the loop
    /// through fields that never change (no `RefCell`, no reference count
    /// change): reading those from another thread is no data race.
    fn home(target: &Self::Target) -> Option<&EventLoop>;
}

/// The thread rule for one object: `SB_WRONG_THREAD` off its loop's
/// thread.
fn check_thread<H: Handle>(target: &H::Target, name: &str) -> Result<(), Fail> {
    match H::home(target) {
        Some(lp) if !lp.is_own_thread() => Err(fail(
            sb_status::SB_WRONG_THREAD,
            format!(
                "{name} was used from a thread other than its loop's: a loop and \
                 every object created on it may be used only on the thread that \
                 created the loop (only sb_waker_* functions may be called from \
                 other threads)"
            ),
        )),
        _ => Ok(()),
    }
}

/// The rules for using one object: its loop's thread, and a loop not yet
/// freed (`SB_INVALID_STATE`; freeing the object is still allowed).
fn check_usable<H: Handle>(target: &H::Target, name: &str) -> Result<(), Fail> {
    check_thread::<H>(target, name)?;
    match H::home(target) {
        Some(lp) if lp.is_shut_down() => Err(fail(
            sb_status::SB_INVALID_STATE,
            format!("{name} cannot be used: its loop was freed"),
        )),
        _ => Ok(()),
    }
}

/// Moves `value` to the heap and returns it as an owned handle.
pub(crate) fn boxed<H: Handle>(value: H::Target) -> *mut H {
    Box::into_raw(Box::new(value)).cast()
}

/// Boxes `value` as a new owned handle into `*out` (the body of the
/// `sb_*_new` calls without a loop); `SB_NULL_ARGUMENT`, and nothing
/// kept, when `out` is NULL.
///
/// # Safety
/// `out` must be NULL or writable.
pub(crate) unsafe fn new_into<H: Handle>(out: *mut *mut H, value: H::Target) -> sb_status {
    super::boundary::status(|| {
        let handle = boxed::<H>(value);
        // SAFETY: NULL or writable per the contract.
        unsafe { super::convert::put(out, handle, "out") }.inspect_err(|_| {
            // SAFETY: just boxed, not handed out.
            drop(unsafe { take(handle) });
        })
    })
}

/// A borrowed handle for a Rust reference (valid while the reference is).
pub(crate) fn borrowed<H: Handle>(value: &H::Target) -> *const H {
    (value as *const H::Target).cast()
}

/// Takes back an owned handle to free it; `None` for NULL, and `None`
/// with the last error set when called off the object's loop thread:
/// the object is then left alone (leaked), since freeing it would run
/// its destructors on the wrong thread.
///
/// # Safety
/// `p` must be NULL or come from [`boxed`] for the same `H`, not yet
/// taken back.
pub(crate) unsafe fn take<H: Handle>(p: *mut H) -> Option<Box<H::Target>> {
    // SAFETY: forwarded contract.
    match unsafe { take_checked(p, "the object to free") } {
        Ok(b) => b,
        Err(Fail(_, message)) => {
            set_last_error(&format!("{message}; it was not freed"));
            None
        }
    }
}

/// [`take`] with the refusal as an error, for entry points that report
/// a status.
///
/// # Safety
/// As for [`take`].
pub(crate) unsafe fn take_checked<H: Handle>(
    p: *mut H,
    name: &str,
) -> Result<Option<Box<H::Target>>, Fail> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: per the contract, p points to a live Target; only fields
    // that never change are read before the thread check passes.
    check_thread::<H>(unsafe { &*p.cast::<H::Target>() }, name)?;
    // SAFETY: per the contract, p came from Box::into_raw of H::Target.
    Ok(Some(unsafe { Box::from_raw(p.cast::<H::Target>()) }))
}

/// A required reference from a handle, on its loop's thread and with its
/// loop not freed.
///
/// # Safety
/// `p` must be NULL or a live handle of type `H`.
pub(crate) unsafe fn arg<'a, H: Handle>(p: *const H, name: &str) -> Result<&'a H::Target, Fail> {
    // SAFETY: the caller guarantees p is NULL or points to a live Target.
    let target = unsafe { p.cast::<H::Target>().as_ref() }
        .ok_or_else(|| fail(sb_status::SB_NULL_ARGUMENT, format!("{name} is NULL")))?;
    check_usable::<H>(target, name)?;
    Ok(target)
}

/// A required mutable reference from a handle, as [`arg`].
///
/// # Safety
/// `p` must be NULL or a live handle of type `H`, not aliased during the
/// call.
pub(crate) unsafe fn arg_mut<'a, H: Handle>(
    p: *mut H,
    name: &str,
) -> Result<&'a mut H::Target, Fail> {
    // SAFETY: the caller guarantees p is NULL or valid; only shared
    // reads happen until the checks passed.
    unsafe { arg(p.cast_const(), name) }?;
    // SAFETY: the caller guarantees p is valid and unaliased.
    Ok(unsafe { &mut *p.cast::<H::Target>() })
}
