//! Where the library's log records go.
//!
//! The library logs through the [`log`] facade and never writes to
//! stderr on its own: with no logger installed its records go nowhere. A
//! Rust program installs any `log` logger it likes (env_logger, its own);
//! C, C++ and Perl programs, which cannot, install a handler with
//! [`set_log_handler`], which installs this module's logger once and then
//! swaps the handler it forwards to.
//!
//! Records carry key-value fields (`conn`, `peer`, `reason`, `session`,
//! …) beside the message, so a handler can count or filter without
//! parsing text. Targets start with `stagebus::` (`stagebus::broker`,
//! `stagebus::client`, `stagebus::request`).
//!
//! The library logs only on the threads that drive its loops, but the
//! facade is process-wide: a handler must be safe to call from every
//! thread that runs a loop.

use log::kv::{self, VisitSource};
use log::{Level, LevelFilter, Log, Metadata, Record};
use std::sync::{Arc, Mutex, OnceLock};

/// How severe a record is; the numbers are the C API's.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Something failed that the library could not report to a caller.
    Error = 1,
    /// A peer or the program misbehaved: a refusal, a limit breach, a
    /// response nobody handled.
    Warn = 2,
    /// A connection's life: accepted, closed, reconnected.
    Info = 3,
    /// Detail for finding a problem.
    Debug = 4,
    /// Everything, frame by frame.
    Trace = 5,
}

impl LogLevel {
    /// The level of a C or Perl number, `None` for a number out of range.
    pub fn from_raw(raw: i32) -> Option<LogLevel> {
        Some(match raw {
            1 => LogLevel::Error,
            2 => LogLevel::Warn,
            3 => LogLevel::Info,
            4 => LogLevel::Debug,
            5 => LogLevel::Trace,
            _ => return None,
        })
    }

    /// The level's name in lower case (`"warn"`).
    pub fn name(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }

    fn from_log(level: Level) -> LogLevel {
        match level {
            Level::Error => LogLevel::Error,
            Level::Warn => LogLevel::Warn,
            Level::Info => LogLevel::Info,
            Level::Debug => LogLevel::Debug,
            Level::Trace => LogLevel::Trace,
        }
    }

    fn filter(self) -> LevelFilter {
        match self {
            LogLevel::Error => LevelFilter::Error,
            LogLevel::Warn => LevelFilter::Warn,
            LogLevel::Info => LevelFilter::Info,
            LogLevel::Debug => LevelFilter::Debug,
            LogLevel::Trace => LevelFilter::Trace,
        }
    }
}

impl std::str::FromStr for LogLevel {
    type Err = String;

    fn from_str(s: &str) -> Result<LogLevel, String> {
        [
            LogLevel::Error,
            LogLevel::Warn,
            LogLevel::Info,
            LogLevel::Debug,
            LogLevel::Trace,
        ]
        .into_iter()
        .find(|l| l.name().eq_ignore_ascii_case(s))
        .ok_or_else(|| format!("unknown log level '{s}' (error, warn, info, debug, trace)"))
    }
}

/// One record as a handler sees it: owned text, fields in the order they
/// were logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// How severe it is.
    pub level: LogLevel,
    /// What logged it (`stagebus::broker`, …).
    pub target: String,
    /// The message, without the fields.
    pub message: String,
    /// Key-value fields, values formatted as text.
    pub fields: Vec<(String, String)>,
}

impl LogEntry {
    /// The value of field `key`, if the record has it.
    pub fn field(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The entry of a `log` record.
    pub fn of(record: &Record<'_>) -> LogEntry {
        struct Fields(Vec<(String, String)>);
        impl<'kvs> VisitSource<'kvs> for Fields {
            fn visit_pair(
                &mut self,
                key: kv::Key<'kvs>,
                value: kv::Value<'kvs>,
            ) -> Result<(), kv::Error> {
                self.0.push((key.to_string(), value.to_string()));
                Ok(())
            }
        }
        let mut fields = Fields(Vec::new());
        // A source that fails halfway still leaves what it visited.
        let _ = record.key_values().visit(&mut fields);
        LogEntry {
            level: LogLevel::from_log(record.level()),
            target: record.target().to_owned(),
            message: record.args().to_string(),
            fields: fields.0,
        }
    }
}

/// A log handler: called once per record at or above its level.
pub type LogHandler = Arc<dyn Fn(&LogEntry) + Send + Sync>;

/// Why [`set_log_handler`] could not install its logger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtherLogger;

impl std::fmt::Display for OtherLogger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("another logger is installed in this process (the log facade takes one)")
    }
}

impl std::error::Error for OtherLogger {}

struct Forwarder {
    handler: Mutex<Option<LogHandler>>,
}

impl Log for Forwarder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &Record<'_>) {
        // Cloned out so that a handler that logs or swaps handlers does
        // not deadlock on the lock.
        let handler = self.handler.lock().map(|h| h.clone()).unwrap_or(None);
        if let Some(handler) = handler {
            handler(&LogEntry::of(record));
        }
    }

    fn flush(&self) {}
}

static FORWARDER: OnceLock<Result<&'static Forwarder, OtherLogger>> = OnceLock::new();

/// Installs this module's logger if it is not yet, so that a caller can
/// learn whether [`set_log_handler`] will work before handing it
/// anything.
pub(crate) fn install() -> Result<(), OtherLogger> {
    forwarder().map(|_| ())
}

fn forwarder() -> Result<&'static Forwarder, OtherLogger> {
    FORWARDER
        .get_or_init(|| {
            let forwarder: &'static Forwarder = Box::leak(Box::new(Forwarder {
                handler: Mutex::new(None),
            }));
            log::set_logger(forwarder)
                .map(|()| forwarder)
                .map_err(|_| OtherLogger)
        })
        .clone()
}

/// Sends every record at `level` or more severe to `handler`, replacing
/// the handler set before (which is dropped once no record is being
/// handled by it); `None` stops logging. Fails, changing nothing, when
/// the program installed another `log` logger: a Rust program keeps its
/// own and configures it instead.
pub fn set_log_handler(handler: Option<LogHandler>, level: LogLevel) -> Result<(), OtherLogger> {
    let forwarder = forwarder()?;
    let filter = if handler.is_some() {
        level.filter()
    } else {
        LevelFilter::Off
    };
    let old = {
        let mut slot = forwarder.handler.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::replace(&mut *slot, handler)
    };
    log::set_max_level(filter);
    drop(old);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_round_trip_through_numbers_and_names() {
        for raw in 1..=5 {
            let level = LogLevel::from_raw(raw).unwrap();
            assert_eq!(level as i32, raw);
            assert_eq!(level.name().parse::<LogLevel>().unwrap(), level);
        }
        assert_eq!(LogLevel::from_raw(0), None);
        assert_eq!(LogLevel::from_raw(6), None);
        assert!("loud".parse::<LogLevel>().unwrap_err().contains("loud"));
    }

    #[test]
    fn a_handler_gets_message_and_fields_at_its_level_only() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        set_log_handler(
            Some(Arc::new(move |e: &LogEntry| {
                sink.lock().unwrap().push(e.clone())
            })),
            LogLevel::Info,
        )
        .unwrap();
        log::info!(target: "stagebus::test", conn = 7, reason = "eof"; "closed");
        log::debug!(target: "stagebus::test", "too fine");
        set_log_handler(None, LogLevel::Info).unwrap();
        log::warn!(target: "stagebus::test", "after removal");
        let seen = seen.lock().unwrap();
        let mine: Vec<_> = seen
            .iter()
            .filter(|e| e.target == "stagebus::test")
            .collect();
        assert_eq!(mine.len(), 1, "{mine:?}");
        assert_eq!(mine[0].message, "closed");
        assert_eq!(mine[0].level, LogLevel::Info);
        assert_eq!(mine[0].field("conn"), Some("7"));
        assert_eq!(mine[0].field("reason"), Some("eof"));
    }
}
