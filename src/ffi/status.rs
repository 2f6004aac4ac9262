//! `sb_status`, `sb_strerror` and `sb_last_error`: what a call reports.

use crate::error::ErrorCode;
use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};

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
    /// A publish named another mode than the name's first publisher.
    SB_NAME_MODE_CONFLICT = 19,
    /// The broker's policy does not allow it.
    SB_ACCESS_DENIED = 20,
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
            19 => SB_NAME_MODE_CONFLICT,
            20 => SB_ACCESS_DENIED,
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
        SB_NAME_MODE_CONFLICT => c"name_mode_conflict",
        SB_ACCESS_DENIED => c"access_denied",
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
