//! `sb_version`: the library's version.

use std::ffi::c_char;

/// The library's version, e.g. "0.1.0". Never NULL.
#[no_mangle]
pub extern "C" fn sb_version() -> *const c_char {
    static VERSION: &std::ffi::CStr = match std::ffi::CStr::from_bytes_with_nul(
        concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes(),
    ) {
        Ok(v) => v,
        Err(_) => c"unknown",
    };
    VERSION.as_ptr()
}
