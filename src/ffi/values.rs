//! `sb_value` and `sb_value_type`: one typed value, built and read
//! through typed functions.

use super::args::sb_args;
use super::boundary::{fail, status, value_or};
use super::convert::{bytes, put, text, text_n};
use super::handles::{arg, arg_mut, borrowed, boxed, take, Handle};
use super::status::sb_status;
use crate::event_loop::EventLoop;
use crate::value::{Value, MAX_DEPTH};
use std::ffi::c_char;

/// How deep lists and maps may nest in a value received from another
/// program: deeper payloads are refused (`SB_PROTOCOL`) rather than
/// decoded.
pub const SB_MAX_VALUE_DEPTH: u32 = 128;
const _: () = assert!(SB_MAX_VALUE_DEPTH as usize == MAX_DEPTH);

/// One typed value. Owned when made by `sb_value_new_*`; borrowed when
/// read from args or a list.
#[derive(Debug)]
pub struct sb_value {
    _private: [u8; 0],
}

impl Handle for sb_value {
    type Target = Value;
    /// Plain data: usable from any thread.
    fn home(_: &Value) -> Option<&EventLoop> {
        None
    }
}

/// The type of a value.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum sb_value_type {
    /// No value.
    SB_VALUE_NULL = 0,
    /// `bool`.
    SB_VALUE_BOOL = 1,
    /// `int64_t`.
    SB_VALUE_INT = 2,
    /// `double`.
    SB_VALUE_FLOAT = 3,
    /// UTF-8 text.
    SB_VALUE_STRING = 4,
    /// Bytes.
    SB_VALUE_BYTES = 5,
    /// A list of values.
    SB_VALUE_LIST = 6,
    /// A map (an `sb_args`).
    SB_VALUE_MAP = 7,
}

fn new_value(v: Value) -> *mut sb_value {
    boxed::<sb_value>(v)
}

/// A new null value. Owned: free with `sb_value_free` or hand it over.
#[no_mangle]
pub extern "C" fn sb_value_new_null() -> *mut sb_value {
    new_value(Value::Null)
}

/// A new bool value.
#[no_mangle]
pub extern "C" fn sb_value_new_bool(b: bool) -> *mut sb_value {
    new_value(Value::Bool(b))
}

/// A new integer value.
#[no_mangle]
pub extern "C" fn sb_value_new_int(n: i64) -> *mut sb_value {
    new_value(Value::Int(n))
}

/// A new float value.
#[no_mangle]
pub extern "C" fn sb_value_new_float(x: f64) -> *mut sb_value {
    new_value(Value::Float(x))
}

/// A new string value copied from a NUL-terminated UTF-8 string; NULL on
/// a bad argument (`sb_value_new_string_n` takes text holding NULs).
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_value_new_string(s: *const c_char) -> *mut sb_value {
    value_or(std::ptr::null_mut(), || {
        // SAFETY: NULL or NUL-terminated.
        Ok(new_value(Value::Str(unsafe { text(s, "s") }?.to_string())))
    })
}

/// A new string value copied from `len` bytes of UTF-8 at `s` (not
/// NUL-terminated; NUL characters are kept). `s` may be NULL when `len`
/// is 0 (an empty string). NULL on a bad argument (`s` NULL with a
/// length: `SB_NULL_ARGUMENT`; not UTF-8: `SB_INVALID_UTF8`), with
/// `sb_last_error` saying why. Owned: free with `sb_value_free` or hand
/// it over.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_value_new_string_n(s: *const c_char, len: usize) -> *mut sb_value {
    value_or(std::ptr::null_mut(), || {
        // SAFETY: NULL (only with len 0) or len readable bytes.
        Ok(new_value(Value::Str(
            unsafe { text_n(s, len, "s") }?.to_string(),
        )))
    })
}

/// A new bytes value copied from `len` bytes at `data`.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_value_new_bytes(data: *const u8, len: usize) -> *mut sb_value {
    value_or(std::ptr::null_mut(), || {
        // SAFETY: len readable bytes at data.
        Ok(new_value(Value::Bytes(
            unsafe { bytes(data, len, "data") }?.to_vec(),
        )))
    })
}

/// A new empty list value; add items with `sb_value_list_push`.
#[no_mangle]
pub extern "C" fn sb_value_new_list() -> *mut sb_value {
    new_value(Value::List(Vec::new()))
}

/// A new map value, taking ownership of `args`.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_value_new_map(args: *mut sb_args) -> *mut sb_value {
    value_or(std::ptr::null_mut(), || {
        // SAFETY: NULL or an owned sb_args.
        let args = unsafe { take(args) }
            .ok_or_else(|| fail(sb_status::SB_NULL_ARGUMENT, "args is NULL"))?;
        Ok(new_value(Value::Map(*args)))
    })
}

/// Appends `item` to the list value `list`, taking ownership of `item`
/// (also on failure).
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_value_list_push(list: *mut sb_value, item: *mut sb_value) -> sb_status {
    // SAFETY: NULL or an owned sb_value.
    let item = unsafe { take(item) }.map(|b| *b);
    status(|| {
        // SAFETY: NULL or a live, unaliased sb_value.
        let list = unsafe { arg_mut(list, "list") }?;
        let item = item.ok_or_else(|| fail(sb_status::SB_NULL_ARGUMENT, "item is NULL"))?;
        match list {
            Value::List(items) => {
                items.push(item);
                Ok(())
            }
            _ => Err(fail(sb_status::SB_WRONG_TYPE, "list is not a list value")),
        }
    })
}

/// Frees an owned value. NULL is a no-op.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_value_free(value: *mut sb_value) {
    // SAFETY: NULL or an owned sb_value, freed once.
    drop(unsafe { take(value) });
}

/// The type of a value (`SB_VALUE_NULL` for NULL).
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_value_type_of(value: *const sb_value) -> sb_value_type {
    use sb_value_type::*;
    value_or(SB_VALUE_NULL, || {
        // SAFETY: NULL or a live sb_value.
        Ok(match unsafe { arg(value, "value") }? {
            Value::Null => SB_VALUE_NULL,
            Value::Bool(_) => SB_VALUE_BOOL,
            Value::Int(_) => SB_VALUE_INT,
            Value::Float(_) => SB_VALUE_FLOAT,
            Value::Str(_) => SB_VALUE_STRING,
            Value::Bytes(_) => SB_VALUE_BYTES,
            Value::List(_) => SB_VALUE_LIST,
            Value::Map(_) => SB_VALUE_MAP,
        })
    })
}

/// Reads `value` through `f` into `out`.
///
/// # Safety
/// `value` is NULL or a live sb_value; `out` is NULL or writable.
unsafe fn read<T>(
    value: *const sb_value,
    out: *mut T,
    f: impl FnOnce(&Value) -> Option<T>,
) -> sb_status {
    status(|| {
        // SAFETY: NULL or a live sb_value.
        let v = unsafe { arg(value, "value") }?;
        let x = f(v).ok_or_else(|| fail(sb_status::SB_WRONG_TYPE, "value is of another type"))?;
        // SAFETY: NULL or writable.
        unsafe { put(out, x, "out") }
    })
}

/// Reads a bool value.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_value_bool(value: *const sb_value, out: *mut bool) -> sb_status {
    // SAFETY: the caller's pointers, as this function's contract asks.
    unsafe { read(value, out, Value::as_bool) }
}

/// Reads an integer value.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_value_int(value: *const sb_value, out: *mut i64) -> sb_status {
    // SAFETY: the caller's pointers, as this function's contract asks.
    unsafe { read(value, out, Value::as_int) }
}

/// Reads a float value (an integer is converted).
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_value_float(value: *const sb_value, out: *mut f64) -> sb_status {
    // SAFETY: the caller's pointers, as this function's contract asks.
    unsafe { read(value, out, Value::as_float) }
}

/// Reads a string or bytes value: a pointer borrowed from the value and
/// its length (not NUL-terminated).
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_value_bytes(
    value: *const sb_value,
    ptr: *mut *const u8,
    len: *mut usize,
) -> sb_status {
    status(|| {
        // SAFETY: NULL or a live sb_value.
        let v = unsafe { arg(value, "value") }?;
        let bytes = v
            .as_bytes()
            .ok_or_else(|| fail(sb_status::SB_WRONG_TYPE, "value is not a string or bytes"))?;
        if len.is_null() {
            return Err(fail(sb_status::SB_NULL_ARGUMENT, "len is NULL"));
        }
        // SAFETY: ptr checked by put, len checked above.
        unsafe {
            put(ptr, bytes.as_ptr(), "ptr")?;
            len.write(bytes.len());
        }
        Ok(())
    })
}

/// The number of items of a list value (0 for other types).
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_value_list_len(value: *const sb_value) -> usize {
    value_or(0, || {
        // SAFETY: NULL or a live sb_value.
        Ok(match unsafe { arg(value, "value") }? {
            Value::List(items) => items.len(),
            _ => 0,
        })
    })
}

/// Item `index` of a list value, borrowed; NULL if out of range.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_value_list_get(
    value: *const sb_value,
    index: usize,
) -> *const sb_value {
    value_or(std::ptr::null(), || {
        // SAFETY: NULL or a live sb_value.
        match unsafe { arg(value, "value") }? {
            Value::List(items) => items
                .get(index)
                .map(borrowed::<sb_value>)
                .ok_or_else(|| fail(sb_status::SB_NOT_FOUND, format!("no item at index {index}"))),
            _ => Err(fail(sb_status::SB_WRONG_TYPE, "value is not a list")),
        }
    })
}

/// The args inside a map value, borrowed; NULL for other types.
#[doc = safety!()]
#[no_mangle]
pub unsafe extern "C" fn sb_value_map(value: *const sb_value) -> *const sb_args {
    value_or(std::ptr::null(), || {
        // SAFETY: NULL or a live sb_value.
        match unsafe { arg(value, "value") }? {
            Value::Map(args) => Ok(borrowed::<sb_args>(args)),
            _ => Err(fail(sb_status::SB_WRONG_TYPE, "value is not a map")),
        }
    })
}
