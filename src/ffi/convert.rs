//! Plain C arguments in and out: strings, string arrays, byte ranges and
//! out-params, each checked for NULL (and strings for UTF-8).

use super::boundary::{fail, Fail};
use super::status::sb_status;
use std::ffi::{c_char, CStr};

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

/// A required array of `n` strings (`p` may be NULL only when `n` is 0).
///
/// # Safety
/// `p` must be NULL or point to `n` pointers, each NULL or a
/// NUL-terminated string alive for the call.
pub(crate) unsafe fn text_array<'a>(
    p: *const *const c_char,
    n: usize,
    name: &str,
) -> Result<Vec<&'a str>, Fail> {
    if n == 0 {
        return Ok(Vec::new());
    }
    if p.is_null() {
        return Err(fail(sb_status::SB_NULL_ARGUMENT, format!("{name} is NULL")));
    }
    // SAFETY: n readable pointers per the caller's contract.
    let items = unsafe { std::slice::from_raw_parts(p, n) };
    items
        .iter()
        // SAFETY: each is NULL or NUL-terminated.
        .map(|s| unsafe { text(*s, name) })
        .collect()
}

/// A required byte range of `len` bytes at `p` (`p` may be NULL only
/// when `len` is 0).
///
/// # Safety
/// `p` must be NULL or point to `len` readable bytes alive for the call.
pub(crate) unsafe fn bytes<'a>(p: *const u8, len: usize, name: &str) -> Result<&'a [u8], Fail> {
    // SAFETY: the caller's contract, as `slice` asks.
    unsafe { slice(p, len, name) }
}

/// A required array of `len` items at `p` (`p` may be NULL only when
/// `len` is 0).
///
/// # Safety
/// `p` must be NULL or point to `len` readable items alive for the call.
pub(crate) unsafe fn slice<'a, T>(p: *const T, len: usize, name: &str) -> Result<&'a [T], Fail> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(fail(
            sb_status::SB_NULL_ARGUMENT,
            format!("{name} is NULL (with a length of {len})"),
        ));
    }
    // SAFETY: non-NULL and `len` readable items per the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}
