//! The broker command's logger: warnings and errors of the library (a
//! refused connection, a policy denial with the peer's identity) as
//! lines on stderr, `stagebus broker: warn: MESSAGE`.

use std::io::Write;

struct Stderr;

impl log::Log for Stderr {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Warn
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let level = record.level().as_str().to_ascii_lowercase();
            // A reader that went away must not stop the broker.
            let _ = writeln!(
                std::io::stderr().lock(),
                "stagebus broker: {level}: {}",
                record.args()
            );
        }
    }

    fn flush(&self) {}
}

/// Installs the logger (once; a second call does nothing).
pub(crate) fn install() {
    static LOGGER: Stderr = Stderr;
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Warn);
    }
}
