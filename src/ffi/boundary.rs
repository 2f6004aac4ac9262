//! The panic boundary, status codes, the last-error detail, strings and
//! user data.

use crate::error::{Error, ErrorCode};
use crate::event_loop::EventLoop;
use std::cell::RefCell;
use std::ffi::{c_char, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The outcome of a call. Numbers are stable and never reused; 1–99 are
/// the library's error codes (the same numbers travel on the wire), 100
/// and up are errors of the C call itself.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum sb_status {
    /// Success.
    SB_OK = 0,
    /// No session is published under that name.
    SB_NO_SUCH_SESSION = 1,
    /// The session or stage has no such method.
    SB_NO_SUCH_METHOD = 2,
    /// The publisher disconnected before answering.
    SB_PUBLISHER_GONE = 3,
    /// The connection to the broker is closed.
    SB_BROKER_GONE = 4,
    /// The request timed out.
    SB_TIMEOUT = 5,
    /// A configured limit would be exceeded.
    SB_LIMIT_EXCEEDED = 6,
    /// A peer broke the wire protocol.
    SB_PROTOCOL = 7,
    /// A session of that name is already published.
    SB_ALREADY_EXISTS = 8,
    /// An argument is empty or malformed.
    SB_INVALID_ARGUMENT = 9,
    /// Only the publisher may rescind a session.
    SB_NOT_PUBLISHER = 10,
    /// The session is not subscribed here.
    SB_NOT_SUBSCRIBED = 11,
    /// The broker refused the handshake.
    SB_REFUSED = 12,
    /// An operating-system error.
    SB_IO = 13,
    /// The request was cancelled.
    SB_CANCELLED = 14,
    /// A handler failed.
    SB_HANDLER_FAILED = 16,
    /// Not valid in the object's current state (answered twice, …).
    SB_INVALID_STATE = 17,
    /// The callee let go of the request without a final answer.
    SB_UNANSWERED = 18,
    /// A required pointer argument was NULL.
    SB_NULL_ARGUMENT = 100,
    /// A string argument was not valid UTF-8.
    SB_INVALID_UTF8 = 101,
    /// The library panicked; the operation did not happen.
    SB_PANIC = 102,
    /// A value is not of the type asked for.
    SB_WRONG_TYPE = 103,
    /// No value under that key or index.
    SB_NOT_FOUND = 104,
    /// A loop's object was used from a thread other than the loop's own.
    SB_WRONG_THREAD = 105,
    /// An error code this build does not know.
    SB_UNKNOWN = 65535,
}

impl From<ErrorCode> for sb_status {
    fn from(code: ErrorCode) -> sb_status {
        sb_status::from_u32(code as u16 as u32)
    }
}

impl sb_status {
    /// Converts a number (from the wire or a C callback) with a fallback
    /// arm: never a transmute.
    pub fn from_u32(n: u32) -> sb_status {
        use sb_status::*;
        match n {
            0 => SB_OK,
            1 => SB_NO_SUCH_SESSION,
            2 => SB_NO_SUCH_METHOD,
            3 => SB_PUBLISHER_GONE,
            4 => SB_BROKER_GONE,
            5 => SB_TIMEOUT,
            6 => SB_LIMIT_EXCEEDED,
            7 => SB_PROTOCOL,
            8 => SB_ALREADY_EXISTS,
            9 => SB_INVALID_ARGUMENT,
            10 => SB_NOT_PUBLISHER,
            11 => SB_NOT_SUBSCRIBED,
            12 => SB_REFUSED,
            13 => SB_IO,
            14 => SB_CANCELLED,
            16 => SB_HANDLER_FAILED,
            17 => SB_INVALID_STATE,
            18 => SB_UNANSWERED,
            100 => SB_NULL_ARGUMENT,
            101 => SB_INVALID_UTF8,
            102 => SB_PANIC,
            103 => SB_WRONG_TYPE,
            104 => SB_NOT_FOUND,
            105 => SB_WRONG_THREAD,
            _ => SB_UNKNOWN,
        }
    }

    /// The library error code for a status returned by C code.
    pub(crate) fn to_error_code(self) -> ErrorCode {
        match ErrorCode::from(self as u32 as u16) {
            ErrorCode::Unknown => ErrorCode::HandlerFailed,
            code => code,
        }
    }
}

/// The static name of a status code, e.g. `"no_such_session"`;
/// `"unknown"` for a number that is no `sb_status`. Never NULL.
///
/// Takes any integer (a handler's return value, say): a C enum variable
/// may hold numbers outside its list.
#[no_mangle]
pub extern "C" fn sb_strerror(code: i32) -> *const c_char {
    use sb_status::*;
    // Read as a number and converted: an enum parameter holding a number
    // outside its list would be undefined behaviour on the Rust side.
    let s: &'static CStr = match sb_status::from_u32(code as u32) {
        SB_OK => c"ok",
        SB_NO_SUCH_SESSION => c"no_such_session",
        SB_NO_SUCH_METHOD => c"no_such_method",
        SB_PUBLISHER_GONE => c"publisher_gone",
        SB_BROKER_GONE => c"broker_gone",
        SB_TIMEOUT => c"timeout",
        SB_LIMIT_EXCEEDED => c"limit_exceeded",
        SB_PROTOCOL => c"protocol",
        SB_ALREADY_EXISTS => c"already_exists",
        SB_INVALID_ARGUMENT => c"invalid_argument",
        SB_NOT_PUBLISHER => c"not_publisher",
        SB_NOT_SUBSCRIBED => c"not_subscribed",
        SB_REFUSED => c"refused",
        SB_IO => c"io",
        SB_CANCELLED => c"cancelled",
        SB_HANDLER_FAILED => c"handler_failed",
        SB_INVALID_STATE => c"invalid_state",
        SB_UNANSWERED => c"unanswered",
        SB_NULL_ARGUMENT => c"null_argument",
        SB_INVALID_UTF8 => c"invalid_utf8",
        SB_PANIC => c"panic",
        SB_WRONG_TYPE => c"wrong_type",
        SB_NOT_FOUND => c"not_found",
        SB_WRONG_THREAD => c"wrong_thread",
        SB_UNKNOWN => c"unknown",
    };
    s.as_ptr()
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// The detail of the last failure on this thread ("" if none): a
/// NUL-terminated string valid until the next failing call on this
/// thread. Never NULL.
///
/// Decision: the detail is kept per thread rather than per loop, so that
/// calls without a loop (args, values) have one too; a loop's calls and
/// callbacks all run on its thread.
#[no_mangle]
pub extern "C" fn sb_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

pub(crate) fn set_last_error(message: &str) {
    let c = CString::new(message.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// A failure of a C call: its status and detail.
pub(crate) struct Fail(pub sb_status, pub String);

impl From<Error> for Fail {
    fn from(e: Error) -> Fail {
        Fail(e.code.into(), e.message)
    }
}

pub(crate) fn fail(status: sb_status, message: impl Into<String>) -> Fail {
    Fail(status, message.into())
}

/// Runs an entry point: its error becomes a status and the last-error
/// detail; a panic becomes `SB_PANIC`.
pub(crate) fn status(f: impl FnOnce() -> Result<(), Fail>) -> sb_status {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => sb_status::SB_OK,
        Ok(Err(Fail(code, message))) => {
            set_last_error(&message);
            code
        }
        Err(panic) => {
            set_last_error(&format!("panic inside stagebus: {}", panic_message(&panic)));
            sb_status::SB_PANIC
        }
    }
}

/// Runs an entry point returning a value; `fallback` on error or panic.
pub(crate) fn value_or<T>(fallback: T, f: impl FnOnce() -> Result<T, Fail>) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => v,
        Ok(Err(Fail(_, message))) => {
            set_last_error(&message);
            fallback
        }
        Err(panic) => {
            set_last_error(&format!("panic inside stagebus: {}", panic_message(&panic)));
            fallback
        }
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}

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

/// A required string.
///
/// # Safety
/// `p` must be NULL or a NUL-terminated string alive for the call.
pub(crate) unsafe fn text<'a>(p: *const c_char, name: &str) -> Result<&'a str, Fail> {
    if p.is_null() {
        return Err(fail(sb_status::SB_NULL_ARGUMENT, format!("{name} is NULL")));
    }
    // SAFETY: non-NULL and NUL-terminated per the caller's contract.
    unsafe { CStr::from_ptr(p) }.to_str().map_err(|_| {
        fail(
            sb_status::SB_INVALID_UTF8,
            format!("{name} is not valid UTF-8"),
        )
    })
}

/// A required string given as `len` bytes at `p` (not NUL-terminated;
/// it may hold NUL characters). `p` may be NULL only when `len` is 0.
///
/// # Safety
/// `p` must be NULL or point to `len` readable bytes alive for the call.
pub(crate) unsafe fn text_n<'a>(p: *const c_char, len: usize, name: &str) -> Result<&'a str, Fail> {
    if len == 0 {
        return Ok("");
    }
    if p.is_null() {
        return Err(fail(
            sb_status::SB_NULL_ARGUMENT,
            format!("{name} is NULL (with a length of {len})"),
        ));
    }
    // SAFETY: non-NULL and `len` readable bytes per the caller's contract.
    let bytes = unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len) };
    std::str::from_utf8(bytes).map_err(|e| {
        fail(
            sb_status::SB_INVALID_UTF8,
            format!(
                "{name} is not valid UTF-8 (at byte {} of {len})",
                e.valid_up_to()
            ),
        )
    })
}

/// An optional string (NULL = none).
///
/// # Safety
/// As for [`text`].
pub(crate) unsafe fn opt_text<'a>(p: *const c_char, name: &str) -> Result<Option<&'a str>, Fail> {
    if p.is_null() {
        Ok(None)
    } else {
        // SAFETY: forwarded contract.
        unsafe { text(p, name) }.map(Some)
    }
}

/// Writes an out-param (only on success, by the conventions).
///
/// # Safety
/// `out` must be NULL or writable.
pub(crate) unsafe fn put<T>(out: *mut T, value: T, name: &str) -> Result<(), Fail> {
    if out.is_null() {
        return Err(fail(sb_status::SB_NULL_ARGUMENT, format!("{name} is NULL")));
    }
    // SAFETY: non-NULL and writable per the caller's contract.
    unsafe { out.write(value) };
    Ok(())
}

/// Frees the user data of a registration.
pub type sb_free_fn = Option<unsafe extern "C" fn(user: *mut c_void)>;

/// A C user pointer with its optional free function, called exactly once
/// when this is dropped (the registration has ended).
///
/// The pointer is read through [`UserData::get`], never as a field: a
/// `move` closure that named the field would capture only the raw
/// pointer (edition 2021 captures disjoint fields) and drop the
/// `UserData`, running `free_user` at registration time.
pub(crate) struct UserData {
    user: *mut c_void,
    free: sb_free_fn,
}

impl UserData {
    pub fn new(user: *mut c_void, free: sb_free_fn) -> UserData {
        UserData { user, free }
    }

    /// The user pointer. Using it in a closure captures the whole
    /// `UserData`, so `free_user` runs when the closure is dropped.
    pub fn get(&self) -> *mut c_void {
        self.user
    }
}

impl Drop for UserData {
    fn drop(&mut self) {
        if let Some(free) = self.free.take() {
            // SAFETY: the C caller registered this function for this
            // pointer and asked for exactly one call.
            unsafe { free(self.user) };
        }
    }
}

/// A user pointer that may cross threads: the C caller promised so by
/// handing it to a thread-safe function.
pub(crate) struct SendUserData(pub UserData);

// SAFETY: only used by sb_remote_post, whose contract requires `user` to
// be usable from the loop's thread.
unsafe impl Send for SendUserData {}

/// A NUL-terminated copy of `s` for a callback (interior NULs replaced).
pub(crate) fn c_string(s: &str) -> CString {
    CString::new(s.replace('\0', " ")).unwrap_or_default()
}

/// Forces a panic inside an entry point, so that tests can prove it comes
/// back as `SB_PANIC`. Compiled only with the `testing` feature.
#[cfg(feature = "testing")]
#[no_mangle]
pub extern "C" fn sb_debug_panic() -> sb_status {
    status(|| panic!("forced by sb_debug_panic"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Every status number and name, as `sb_strerror` gives them.
    fn statuses() -> BTreeMap<String, u32> {
        (0..=0xffffu32)
            .filter(|&n| n == 0 || sb_status::from_u32(n) != sb_status::SB_UNKNOWN || n == 0xffff)
            .map(|n| {
                // SAFETY: sb_strerror returns a static NUL-terminated string.
                let name = unsafe { CStr::from_ptr(sb_strerror(n as i32)) };
                (name.to_str().unwrap().to_string(), n)
            })
            .collect()
    }

    /// `name => number` pairs of a text, read with a pattern per line.
    fn pairs(text: &str, parse: impl Fn(&str) -> Option<(String, u32)>) -> BTreeMap<String, u32> {
        text.lines().filter_map(parse).collect()
    }

    #[test]
    fn every_error_code_is_a_status_of_the_same_number_and_name() {
        for &code in ErrorCode::ALL {
            let status = sb_status::from(code);
            assert_eq!(status as u32, code as u32, "{code}");
            assert_eq!(status.to_error_code(), code);
            // SAFETY: sb_strerror returns a static NUL-terminated string.
            let name = unsafe { CStr::from_ptr(sb_strerror(code as i32)) };
            assert_eq!(name.to_str().unwrap(), code.as_str());
        }
    }

    #[test]
    fn the_header_and_the_perl_table_list_the_same_statuses() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let want = statuses();
        let header = std::fs::read_to_string(root.join("include/stagebus.h")).unwrap();
        let start = header.find("typedef enum sb_status {").unwrap();
        let end = start + header[start..].find("} sb_status;").unwrap();
        let in_header = pairs(&header[start..end], |line| {
            let (name, n) = line.trim().strip_prefix("SB_")?.split_once(" = ")?;
            let n = n.trim_end_matches(',').parse().ok()?;
            Some((name.to_ascii_lowercase(), n))
        });
        assert_eq!(in_header, want, "include/stagebus.h against sb_strerror");
        let perl =
            std::fs::read_to_string(root.join("bindings/perl/lib/StageBus/Error.pm")).unwrap();
        let in_perl = pairs(&perl, |line| {
            let (name, n) = line.trim().split_once("=>")?;
            let n = n.trim().trim_end_matches(',').parse().ok()?;
            Some((name.trim().to_string(), n))
        });
        assert_eq!(
            in_perl, want,
            "StageBus::Error's %CODE_OF against sb_strerror"
        );
    }
}
