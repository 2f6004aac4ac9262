//! `sb_set_log_handler`: where the library's log records go.

use super::boundary::{fail, status};
use super::callbacks::{c_string, sb_free_fn, UserData};
use super::status::sb_status;
use crate::logging::{set_log_handler, LogEntry, LogHandler, LogLevel};
use std::ffi::{c_char, c_void, CString};
use std::sync::Arc;

/// How severe a log record is. A handler set at one level gets that
/// level and every more severe one.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum sb_log_level {
    /// Something failed that the library could not report to a caller.
    SB_LOG_ERROR = 1,
    /// A peer or the program misbehaved: a refusal, a limit breach, a
    /// response nobody handled.
    SB_LOG_WARN = 2,
    /// A connection's life: accepted, closed, reconnected.
    SB_LOG_INFO = 3,
    /// Detail for finding a problem.
    SB_LOG_DEBUG = 4,
    /// Everything.
    SB_LOG_TRACE = 5,
}

impl From<LogLevel> for sb_log_level {
    fn from(level: LogLevel) -> sb_log_level {
        match level {
            LogLevel::Error => sb_log_level::SB_LOG_ERROR,
            LogLevel::Warn => sb_log_level::SB_LOG_WARN,
            LogLevel::Info => sb_log_level::SB_LOG_INFO,
            LogLevel::Debug => sb_log_level::SB_LOG_DEBUG,
            LogLevel::Trace => sb_log_level::SB_LOG_TRACE,
        }
    }
}

/// One key-value field of a log record (`conn` = `3`, `reason` =
/// `slow_consumer`). Both strings are valid during the handler's call.
#[repr(C)]
#[derive(Debug)]
pub struct sb_log_field {
    /// The field's name.
    pub key: *const c_char,
    /// Its value as text.
    pub value: *const c_char,
}

/// Receives one log record. `target` names what logged it
/// (`stagebus::broker`, `stagebus::client`, `stagebus::request`);
/// `message` is the text without the fields; `fields` has `n_fields`
/// entries. Every string is valid during the call only.
pub type sb_log_fn = Option<
    unsafe extern "C" fn(
        user: *mut c_void,
        level: sb_log_level,
        target: *const c_char,
        message: *const c_char,
        fields: *const sb_log_field,
        n_fields: usize,
    ),
>;

/// The C handler and its user data, callable from any thread that runs a
/// loop (the contract of `sb_set_log_handler`).
struct CHandler {
    f: unsafe extern "C" fn(
        *mut c_void,
        sb_log_level,
        *const c_char,
        *const c_char,
        *const sb_log_field,
        usize,
    ),
    user: UserData,
}

// SAFETY: sb_set_log_handler's contract makes the handler and its user
// pointer usable from every thread that drives a loop, and free_user
// from the thread that replaces the handler.
unsafe impl Send for CHandler {}
// SAFETY: as above; the handler is only called, never mutated.
unsafe impl Sync for CHandler {}

impl CHandler {
    fn call(&self, entry: &LogEntry) {
        let target = c_string(&entry.target);
        let message = c_string(&entry.message);
        let texts: Vec<(CString, CString)> = entry
            .fields
            .iter()
            .map(|(k, v)| (c_string(k), c_string(v)))
            .collect();
        let fields: Vec<sb_log_field> = texts
            .iter()
            .map(|(k, v)| sb_log_field {
                key: k.as_ptr(),
                value: v.as_ptr(),
            })
            .collect();
        // SAFETY: the C caller's function with its own user pointer; every
        // pointer lives until the call returns.
        unsafe {
            (self.f)(
                self.user.get(),
                entry.level.into(),
                target.as_ptr(),
                message.as_ptr(),
                fields.as_ptr(),
                fields.len(),
            )
        };
    }
}

/// Sends the library's log records at `max_level` (an `sb_log_level`) or
/// more severe to `handler`, replacing the handler set before, whose
/// `free_user` then runs once; `handler` NULL stops logging. The library
/// never writes to stderr itself: with no handler its records go nowhere.
///
/// The setting is process-wide. The handler runs on the thread that
/// logged, which is a thread driving a loop (a broker's or a client's),
/// so with loops on several threads it must be thread-safe; it may log
/// nothing back and must not call `sb_set_log_handler`.
///
/// Fails with `SB_INVALID_ARGUMENT` for a level out of range and with
/// `SB_INVALID_STATE` when the program's Rust side installed another
/// `log` logger; either way nothing else changes. `free_user` runs
/// exactly once: when the handler is replaced or removed, at once when
/// `handler` is NULL, and at once on failure.
#[no_mangle]
pub extern "C" fn sb_set_log_handler(
    handler: sb_log_fn,
    max_level: i32,
    user: *mut c_void,
    free_user: sb_free_fn,
) -> sb_status {
    status(|| {
        // Made first: free_user runs exactly once, also on failure.
        let user = UserData::new(user, free_user);
        let Some(level) = LogLevel::from_raw(max_level) else {
            return Err(fail(
                sb_status::SB_INVALID_ARGUMENT,
                format!("log level {max_level} is none of SB_LOG_ERROR (1) to SB_LOG_TRACE (5)"),
            ));
        };
        crate::logging::install().map_err(|e| fail(sb_status::SB_INVALID_STATE, e.to_string()))?;
        let forward: Option<LogHandler> = handler.map(|f| {
            let c = CHandler { f, user };
            Arc::new(move |entry: &LogEntry| c.call(entry)) as LogHandler
        });
        set_log_handler(forward, level)
            .map_err(|e| fail(sb_status::SB_INVALID_STATE, e.to_string()))
    })
}
