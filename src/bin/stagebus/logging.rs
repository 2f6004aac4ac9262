//! The command line's logger: the library's log records, one line each
//! on stderr, as text or JSON, at the level `--log-level` asks for.

use clap::ValueEnum;
use log::{LevelFilter, Log, Metadata, Record};
use stagebus::LogEntry;
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// `--log-level` and `--log-format`, of the commands that run long.
#[derive(clap::Args, Debug)]
pub(crate) struct LogFlags {
    /// log at this level and above on stderr: off, error, warn, info, debug, trace (default info)
    #[arg(long, value_name = "LEVEL", value_parser = level)]
    pub(crate) log_level: Option<LevelFilter>,
    /// one line of text per record, or one JSON object (default text)
    #[arg(long, value_name = "FORMAT", value_enum)]
    pub(crate) log_format: Option<LogFormat>,
}

/// How a record is written.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LogFormat {
    /// `TIME LEVEL TARGET message key=value…`
    Text,
    /// `{"time":…,"level":…,"target":…,"message":…,"fields":{…}}`
    Json,
}

fn level(text: &str) -> Result<LevelFilter, String> {
    text.parse::<LevelFilter>().map_err(|_| {
        format!("--log-level wants off, error, warn, info, debug or trace, not '{text}'")
    })
}

impl LogFlags {
    /// Installs the logger these flags describe over the level and
    /// format a config file gave (the flags win; the defaults are info
    /// and text).
    pub(crate) fn install_over(&self, level: Option<LevelFilter>, format: Option<LogFormat>) {
        let level = self.log_level.or(level).unwrap_or(LevelFilter::Info);
        let format = self.log_format.or(format).unwrap_or(LogFormat::Text);
        let logger: &'static StderrLogger = Box::leak(Box::new(StderrLogger { format }));
        if log::set_logger(logger).is_ok() {
            log::set_max_level(level);
        }
    }
}

struct StderrLogger {
    format: LogFormat,
}

impl Log for StderrLogger {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &Record<'_>) {
        let line = format_entry(self.format, &rfc3339_now(), &LogEntry::of(record));
        // A closed stderr must not stop the broker.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// One record as one line (with its newline).
fn format_entry(format: LogFormat, time: &str, e: &LogEntry) -> String {
    match format {
        LogFormat::Text => {
            let mut line = format!(
                "{time} {} {} {}",
                e.level.name().to_ascii_uppercase(),
                e.target,
                one_line(&e.message)
            );
            for (k, v) in &e.fields {
                line.push_str(&format!(" {k}={}", one_line(v)));
            }
            line.push('\n');
            line
        }
        LogFormat::Json => {
            let fields: serde_json::Map<String, serde_json::Value> = e
                .fields
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            let object = serde_json::json!({
                "time": time,
                "level": e.level.name(),
                "target": e.target,
                "message": e.message,
                "fields": fields,
            });
            format!("{object}\n")
        }
    }
}

/// `text` with its control characters escaped (`\n`), so that a record
/// stays one line and a peer's text cannot forge another; quotes and
/// everything else as they are.
fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The time now in RFC 3339, UTC, with milliseconds.
fn rfc3339_now() -> String {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(since.as_secs(), since.subsec_millis())
}

/// `secs` after the Unix epoch in RFC 3339 (the civil-from-days
/// conversion of the proleptic Gregorian calendar).
fn rfc3339(secs: u64, millis: u32) -> String {
    let days = (secs / 86_400) as i64;
    let rest = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use stagebus::LogLevel;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(rfc3339(1_796_083_199, 999), "2026-11-30T23:59:59.999Z");
    }

    #[test]
    fn records_format_as_text_and_json() {
        let e = LogEntry {
            level: LogLevel::Warn,
            target: "stagebus::broker".into(),
            message: "connection 3 closed (protocol): bad\nframe".into(),
            fields: vec![
                ("conn".into(), "3".into()),
                ("reason".into(), "protocol".into()),
            ],
        };
        assert_eq!(
            format_entry(LogFormat::Text, "T", &e),
            "T WARN stagebus::broker connection 3 closed (protocol): bad\\nframe conn=3 reason=protocol\n"
        );
        let json: serde_json::Value =
            serde_json::from_str(&format_entry(LogFormat::Json, "T", &e)).unwrap();
        assert_eq!(json["level"], "warn");
        assert_eq!(json["fields"]["reason"], "protocol");
        assert_eq!(
            json["message"],
            "connection 3 closed (protocol): bad\nframe"
        );
    }
}
