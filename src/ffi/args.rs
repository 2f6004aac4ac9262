//! `sb_args`: a map of named values, built and read through typed
//! functions.

use super::boundary::{fail, status, value_or, Fail};
use super::convert::{bytes, put, text, text_n};
use super::handles::{arg, arg_mut, borrowed, boxed, take, Handle};
use super::status::sb_status;
use super::values::sb_value;
use crate::event_loop::EventLoop;
use crate::value::{Args, Value};
use std::ffi::c_char;

/// A map of named values (a request's or response's args). Owned when
/// made by `sb_args_new`/`sb_args_clone`; borrowed when read from a
/// context or a value.
#[derive(Debug)]
pub struct sb_args {
    _private: [u8; 0],
}

impl Handle for sb_args {
    type Target = Args;
    /// Plain data: usable from any thread.
    fn home(_: &Args) -> Option<&EventLoop> {
        None
    }
}

/// Optional args: NULL means none.
///
/// # Safety
/// `p` must be NULL or a live `sb_args`.
pub(crate) unsafe fn args_or_empty(p: *const sb_args) -> Args {
    // SAFETY: forwarded contract.
    unsafe { p.cast::<Args>().as_ref() }
        .cloned()
        .unwrap_or_default()
}

/// Makes empty args. Free with `sb_args_free` (or hand to a function
/// that takes ownership). Never NULL except on allocation panic. Args
/// keep their keys sorted: setting keys in sorted order appends each,
/// while random order moves the later ones (for many thousands of keys,
/// set them sorted).
#[no_mangle]
pub extern "C" fn sb_args_new() -> *mut sb_args {
    value_or(std::ptr::null_mut(), || Ok(boxed::<sb_args>(Args::new())))
}

/// Copies args (for example ones borrowed in a callback).
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_args_clone(args: *const sb_args) -> *mut sb_args {
    value_or(std::ptr::null_mut(), || {
        // SAFETY: NULL or a live sb_args, per the conventions.
        let args = unsafe { arg(args, "args") }?;
        Ok(boxed::<sb_args>(args.clone()))
    })
}

/// Frees args made by `sb_args_new` or `sb_args_clone`. NULL is a no-op.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_args_free(args: *mut sb_args) {
    // SAFETY: NULL or an owned sb_args, freed once.
    drop(unsafe { take(args) });
}

/// Sets `key` of `args` to what `value` makes.
///
/// # Safety
/// `args` is NULL or a live sb_args not used elsewhere during the call;
/// `key` is NULL or a NUL-terminated string.
unsafe fn set(
    args: *mut sb_args,
    key: *const c_char,
    value: impl FnOnce() -> Result<Value, Fail>,
) -> sb_status {
    status(|| {
        // SAFETY: NULL or a live, unaliased sb_args.
        let args = unsafe { arg_mut(args, "args") }?;
        // SAFETY: NULL or a NUL-terminated string.
        let key = unsafe { text(key, "key") }?;
        args.insert(key, value()?);
        Ok(())
    })
}

/// Sets `key` to null.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_args_set_null(args: *mut sb_args, key: *const c_char) -> sb_status {
    // SAFETY: the caller's pointers, as this function's contract asks.
    unsafe { set(args, key, || Ok(Value::Null)) }
}

/// Sets `key` to a bool.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_args_set_bool(
    args: *mut sb_args,
    key: *const c_char,
    value: bool,
) -> sb_status {
    // SAFETY: the caller's pointers, as this function's contract asks.
    unsafe { set(args, key, || Ok(Value::Bool(value))) }
}

/// Sets `key` to an integer.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_args_set_int(
    args: *mut sb_args,
    key: *const c_char,
    value: i64,
) -> sb_status {
    // SAFETY: the caller's pointers, as this function's contract asks.
    unsafe { set(args, key, || Ok(Value::Int(value))) }
}

/// Sets `key` to a float.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_args_set_float(
    args: *mut sb_args,
    key: *const c_char,
    value: f64,
) -> sb_status {
    // SAFETY: the caller's pointers, as this function's contract asks.
    unsafe { set(args, key, || Ok(Value::Float(value))) }
}

/// Sets `key` to a copy of the NUL-terminated UTF-8 string `value`
/// (`sb_args_set_string_n` takes text holding NUL characters).
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_args_set_string(
    args: *mut sb_args,
    key: *const c_char,
    value: *const c_char,
) -> sb_status {
    // SAFETY: NULL or a NUL-terminated string.
    let value = || Ok(Value::Str(unsafe { text(value, "value") }?.to_string()));
    // SAFETY: the caller's pointers, as this function's contract asks.
    unsafe { set(args, key, value) }
}

/// Sets `key` to a string copied from `len` bytes of UTF-8 at `value`
/// (not NUL-terminated; the text may hold NUL characters, which
/// `sb_args_set_string` cannot take). `value` may be NULL when `len` is
/// 0 (an empty string). `SB_NULL_ARGUMENT` for a NULL `args`, `key`, or
/// `value` with a length; `SB_INVALID_UTF8` when the bytes or the key are
/// not UTF-8; `args` is unchanged on failure. Read it back, NULs
/// included, with `sb_args_get_string` or `sb_value_bytes`, which give
/// the length.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_args_set_string_n(
    args: *mut sb_args,
    key: *const c_char,
    value: *const c_char,
    len: usize,
) -> sb_status {
    let value = || {
        // SAFETY: NULL (only with len 0) or len readable bytes, per the
        // contract above.
        let text = unsafe { text_n(value, len, "value") }?;
        Ok(Value::Str(text.to_string()))
    };
    // SAFETY: the caller's pointers, as this function's contract asks.
    unsafe { set(args, key, value) }
}

/// Sets `key` to a copy of `len` bytes at `data` (`data` may be NULL when
/// `len` is 0).
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_args_set_bytes(
    args: *mut sb_args,
    key: *const c_char,
    data: *const u8,
    len: usize,
) -> sb_status {
    // SAFETY: data points to len readable bytes per the contract.
    let value = || Ok(Value::Bytes(unsafe { bytes(data, len, "data") }?.to_vec()));
    // SAFETY: the caller's pointers, as this function's contract asks.
    unsafe { set(args, key, value) }
}

/// Sets `key` to `value`, taking ownership of it (also on failure).
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_args_set_value(
    args: *mut sb_args,
    key: *const c_char,
    value: *mut sb_value,
) -> sb_status {
    // Take ownership first, so that the value is freed whatever happens.
    // SAFETY: NULL or an owned sb_value.
    let owned = unsafe { take(value) }.map(|b| *b);
    // SAFETY: the caller's pointers, as this function's contract asks.
    unsafe {
        set(args, key, || {
            owned.ok_or_else(|| fail(sb_status::SB_NULL_ARGUMENT, "value is NULL"))
        })
    }
}

/// How many values the args hold.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_args_len(args: *const sb_args) -> usize {
    // SAFETY: NULL or a live sb_args.
    value_or(0, || Ok(unsafe { arg(args, "args") }?.len()))
}

/// The value under `key`, borrowed from `args`; NULL if there is none
/// (`sb_last_error` says why).
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_args_get(args: *const sb_args, key: *const c_char) -> *const sb_value {
    value_or(std::ptr::null(), || {
        // SAFETY: NULL or a live sb_args / NUL-terminated key.
        let (args, key) = unsafe { (arg(args, "args")?, text(key, "key")?) };
        let v = args
            .get(key)
            .ok_or_else(|| fail(sb_status::SB_NOT_FOUND, format!("no value named '{key}'")))?;
        Ok(borrowed::<sb_value>(v))
    })
}

/// The entry at `index` (in name order): its name (not NUL-terminated,
/// `key_len` bytes) and value, both borrowed from `args`.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_args_entry(
    args: *const sb_args,
    index: usize,
    key: *mut *const c_char,
    key_len: *mut usize,
    value: *mut *const sb_value,
) -> sb_status {
    status(|| {
        // SAFETY: NULL or a live sb_args.
        let args = unsafe { arg(args, "args") }?;
        if key.is_null() || key_len.is_null() || value.is_null() {
            return Err(fail(sb_status::SB_NULL_ARGUMENT, "an out-param is NULL"));
        }
        let (k, v) = args.iter().nth(index).ok_or_else(|| {
            fail(
                sb_status::SB_NOT_FOUND,
                format!("no entry at index {index}"),
            )
        })?;
        // SAFETY: all three out-params were checked non-NULL above.
        unsafe {
            key.write(k.as_ptr().cast());
            key_len.write(k.len());
            value.write(borrowed::<sb_value>(v));
        }
        Ok(())
    })
}

/// Reads the integer under `key`.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_args_get_int(
    args: *const sb_args,
    key: *const c_char,
    out: *mut i64,
) -> sb_status {
    // SAFETY: forwarded contracts.
    status(|| unsafe { put(out, typed(args, key, |v| v.as_int())?, "out") })
}

/// Reads the float under `key` (an integer is converted).
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_args_get_float(
    args: *const sb_args,
    key: *const c_char,
    out: *mut f64,
) -> sb_status {
    // SAFETY: forwarded contracts.
    status(|| unsafe { put(out, typed(args, key, Value::as_float)?, "out") })
}

/// Reads the bool under `key`.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_args_get_bool(
    args: *const sb_args,
    key: *const c_char,
    out: *mut bool,
) -> sb_status {
    // SAFETY: forwarded contracts.
    status(|| unsafe { put(out, typed(args, key, |v| v.as_bool())?, "out") })
}

/// Reads the string under `key`: a pointer borrowed from `args` and its
/// length in bytes (the text is not NUL-terminated).
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_args_get_string(
    args: *const sb_args,
    key: *const c_char,
    ptr: *mut *const c_char,
    len: *mut usize,
) -> sb_status {
    status(|| {
        // SAFETY: forwarded contracts.
        let (p, n) = unsafe { typed(args, key, |v| v.as_str().map(|s| (s.as_ptr(), s.len()))) }?;
        if len.is_null() {
            return Err(fail(sb_status::SB_NULL_ARGUMENT, "len is NULL"));
        }
        // SAFETY: ptr checked by put; len checked above.
        unsafe {
            put(ptr, p.cast(), "ptr")?;
            len.write(n);
        }
        Ok(())
    })
}

/// # Safety
/// `args` NULL or live; `key` NULL or NUL-terminated.
unsafe fn typed<T>(
    args: *const sb_args,
    key: *const c_char,
    f: impl FnOnce(&Value) -> Option<T>,
) -> Result<T, Fail> {
    // SAFETY: forwarded contracts.
    let (args, key) = unsafe { (arg(args, "args")?, text(key, "key")?) };
    let v = args
        .get(key)
        .ok_or_else(|| fail(sb_status::SB_NOT_FOUND, format!("no value named '{key}'")))?;
    f(v).ok_or_else(|| {
        fail(
            sb_status::SB_WRONG_TYPE,
            format!("'{key}' holds {}, not the type asked for", v.to_json()),
        )
    })
}
