//! Every broker limit by name: one table that Rust ([`Limits::set`],
//! [`super::Broker::set_limit`]), C (`sb_broker_set_limit`), C++, Perl
//! and the command line (`--limit NAME=VALUE`) share, so that a limit
//! added here reaches them all under the same name.
//!
//! Sizes and counts are plain numbers; durations are milliseconds (the
//! names end in `-ms`).

use super::Limits;
use crate::error::{Error, ErrorCode};
use std::time::Duration;

/// One of the broker's limits (see [`Limits`] for what each bounds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Limit {
    /// [`Limits::max_frame`].
    MaxFrame,
    /// [`Limits::max_name`].
    MaxName,
    /// [`Limits::max_methods`].
    MaxMethods,
    /// [`Limits::max_sessions_per_connection`].
    MaxSessionsPerConnection,
    /// [`Limits::max_pending_per_connection`].
    MaxPendingPerConnection,
    /// [`Limits::max_queued_bytes`].
    MaxQueuedBytes,
    /// [`Limits::max_connections`].
    MaxConnections,
    /// [`Limits::handshake_timeout`], in milliseconds.
    HandshakeTimeoutMs,
    /// [`Limits::max_waiters_per_connection`].
    MaxWaitersPerConnection,
    /// [`Limits::ping_interval`], in milliseconds (0: no pings).
    PingIntervalMs,
    /// [`Limits::ping_max`].
    PingMax,
    /// [`Limits::frame_timeout`], in milliseconds.
    FrameTimeoutMs,
    /// [`Limits::max_hello_frame`].
    MaxHelloFrame,
    /// [`Limits::max_unauthenticated`].
    MaxUnauthenticated,
    /// [`Limits::max_registry_bytes_per_connection`].
    MaxRegistryBytesPerConnection,
    /// [`Limits::max_registry_bytes`].
    MaxRegistryBytes,
    /// [`Limits::output_high_water`].
    OutputHighWater,
    /// [`Limits::write_timeout`], in milliseconds.
    WriteTimeoutMs,
    /// [`Limits::max_input_bytes`].
    MaxInputBytes,
    /// [`Limits::max_memory`].
    MaxMemory,
    /// [`Limits::max_matches_per_connection`].
    MaxMatchesPerConnection,
    /// [`Limits::max_watches_per_connection`].
    MaxWatchesPerConnection,
    /// [`Limits::max_pending_per_link`].
    MaxPendingPerLink,
    /// [`Limits::max_nats_queued_bytes`].
    MaxNatsQueuedBytes,
}

impl Limit {
    /// Every limit, in the order of the table.
    pub const ALL: &'static [Limit] = &[
        Limit::MaxFrame,
        Limit::MaxName,
        Limit::MaxMethods,
        Limit::MaxSessionsPerConnection,
        Limit::MaxPendingPerConnection,
        Limit::MaxQueuedBytes,
        Limit::MaxConnections,
        Limit::HandshakeTimeoutMs,
        Limit::MaxWaitersPerConnection,
        Limit::PingIntervalMs,
        Limit::PingMax,
        Limit::FrameTimeoutMs,
        Limit::MaxHelloFrame,
        Limit::MaxUnauthenticated,
        Limit::MaxRegistryBytesPerConnection,
        Limit::MaxRegistryBytes,
        Limit::OutputHighWater,
        Limit::WriteTimeoutMs,
        Limit::MaxInputBytes,
        Limit::MaxMemory,
        Limit::MaxMatchesPerConnection,
        Limit::MaxWatchesPerConnection,
        Limit::MaxPendingPerLink,
        Limit::MaxNatsQueuedBytes,
    ];

    /// Its name, as the C API, the bindings and the command line take it
    /// (`max-frame`, `write-timeout-ms`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Limit::MaxFrame => "max-frame",
            Limit::MaxName => "max-name",
            Limit::MaxMethods => "max-methods",
            Limit::MaxSessionsPerConnection => "max-sessions-per-connection",
            Limit::MaxPendingPerConnection => "max-pending-per-connection",
            Limit::MaxQueuedBytes => "max-queued-bytes",
            Limit::MaxConnections => "max-connections",
            Limit::HandshakeTimeoutMs => "handshake-timeout-ms",
            Limit::MaxWaitersPerConnection => "max-waiters-per-connection",
            Limit::PingIntervalMs => "ping-interval-ms",
            Limit::PingMax => "ping-max",
            Limit::FrameTimeoutMs => "frame-timeout-ms",
            Limit::MaxHelloFrame => "max-hello-frame",
            Limit::MaxUnauthenticated => "max-unauthenticated",
            Limit::MaxRegistryBytesPerConnection => "max-registry-bytes-per-connection",
            Limit::MaxRegistryBytes => "max-registry-bytes",
            Limit::OutputHighWater => "output-high-water",
            Limit::WriteTimeoutMs => "write-timeout-ms",
            Limit::MaxInputBytes => "max-input-bytes",
            Limit::MaxMemory => "max-memory",
            Limit::MaxMatchesPerConnection => "max-matches-per-connection",
            Limit::MaxWatchesPerConnection => "max-watches-per-connection",
            Limit::MaxPendingPerLink => "max-pending-per-link",
            Limit::MaxNatsQueuedBytes => "max-nats-queued-bytes",
        }
    }

    /// The limit named `name`; `invalid_argument` naming every limit if
    /// there is none.
    pub fn from_name(name: &str) -> Result<Limit, Error> {
        Limit::ALL
            .iter()
            .copied()
            .find(|l| l.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Limit::ALL.iter().map(|l| l.name()).collect();
                Error::new(
                    ErrorCode::InvalidArgument,
                    format!(
                        "no broker limit is named '{name}' (the limits: {})",
                        names.join(", ")
                    ),
                )
            })
    }

    /// Whether 0 is a valid value (it turns pinging off); for every
    /// other limit 0 would refuse everything and is an error.
    fn zero_allowed(self) -> bool {
        self == Limit::PingIntervalMs
    }
}

fn size(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Limits {
    /// Sets `limit` to `value` (milliseconds for the `-ms` limits).
    /// `invalid_argument`, with nothing changed, for 0 where 0 would
    /// refuse everything, and for a `ping-max` over `u32::MAX`.
    pub fn set(&mut self, limit: Limit, value: u64) -> Result<(), Error> {
        if value == 0 && !limit.zero_allowed() {
            return Err(Error::new(
                ErrorCode::InvalidArgument,
                format!("the limit '{}' must be above 0", limit.name()),
            ));
        }
        let ms = Duration::from_millis(value);
        match limit {
            Limit::MaxFrame => self.max_frame = size(value).min(u32::MAX as usize),
            Limit::MaxName => self.max_name = size(value),
            Limit::MaxMethods => self.max_methods = size(value),
            Limit::MaxSessionsPerConnection => self.max_sessions_per_connection = size(value),
            Limit::MaxPendingPerConnection => self.max_pending_per_connection = size(value),
            Limit::MaxQueuedBytes => self.max_queued_bytes = size(value),
            Limit::MaxConnections => self.max_connections = size(value),
            Limit::HandshakeTimeoutMs => self.handshake_timeout = ms,
            Limit::MaxWaitersPerConnection => self.max_waiters_per_connection = size(value),
            Limit::PingIntervalMs => self.ping_interval = ms,
            Limit::PingMax => {
                self.ping_max = u32::try_from(value).map_err(|_| {
                    Error::new(
                        ErrorCode::InvalidArgument,
                        format!("the limit 'ping-max' must be at most {}", u32::MAX),
                    )
                })?
            }
            Limit::FrameTimeoutMs => self.frame_timeout = ms,
            Limit::MaxHelloFrame => self.max_hello_frame = size(value),
            Limit::MaxUnauthenticated => self.max_unauthenticated = size(value),
            Limit::MaxRegistryBytesPerConnection => {
                self.max_registry_bytes_per_connection = size(value)
            }
            Limit::MaxRegistryBytes => self.max_registry_bytes = size(value),
            Limit::OutputHighWater => self.output_high_water = size(value),
            Limit::WriteTimeoutMs => self.write_timeout = ms,
            Limit::MaxInputBytes => self.max_input_bytes = size(value),
            Limit::MaxMemory => self.max_memory = size(value),
            Limit::MaxMatchesPerConnection => self.max_matches_per_connection = size(value),
            Limit::MaxWatchesPerConnection => self.max_watches_per_connection = size(value),
            Limit::MaxPendingPerLink => self.max_pending_per_link = size(value),
            Limit::MaxNatsQueuedBytes => self.max_nats_queued_bytes = size(value),
        }
        Ok(())
    }

    /// The value of `limit` (milliseconds for the `-ms` limits).
    pub fn get(&self, limit: Limit) -> u64 {
        let n = |v: usize| v as u64;
        match limit {
            Limit::MaxFrame => n(self.max_frame),
            Limit::MaxName => n(self.max_name),
            Limit::MaxMethods => n(self.max_methods),
            Limit::MaxSessionsPerConnection => n(self.max_sessions_per_connection),
            Limit::MaxPendingPerConnection => n(self.max_pending_per_connection),
            Limit::MaxQueuedBytes => n(self.max_queued_bytes),
            Limit::MaxConnections => n(self.max_connections),
            Limit::HandshakeTimeoutMs => millis(self.handshake_timeout),
            Limit::MaxWaitersPerConnection => n(self.max_waiters_per_connection),
            Limit::PingIntervalMs => millis(self.ping_interval),
            Limit::PingMax => u64::from(self.ping_max),
            Limit::FrameTimeoutMs => millis(self.frame_timeout),
            Limit::MaxHelloFrame => n(self.max_hello_frame),
            Limit::MaxUnauthenticated => n(self.max_unauthenticated),
            Limit::MaxRegistryBytesPerConnection => n(self.max_registry_bytes_per_connection),
            Limit::MaxRegistryBytes => n(self.max_registry_bytes),
            Limit::OutputHighWater => n(self.output_high_water),
            Limit::WriteTimeoutMs => millis(self.write_timeout),
            Limit::MaxInputBytes => n(self.max_input_bytes),
            Limit::MaxMemory => n(self.max_memory),
            Limit::MaxMatchesPerConnection => n(self.max_matches_per_connection),
            Limit::MaxWatchesPerConnection => n(self.max_watches_per_connection),
            Limit::MaxPendingPerLink => n(self.max_pending_per_link),
            Limit::MaxNatsQueuedBytes => n(self.max_nats_queued_bytes),
        }
    }

    /// [`Limits::set`] by name (`"max-hello-frame"`), as the C API and
    /// the command line give it.
    pub fn set_named(&mut self, name: &str, value: u64) -> Result<(), Error> {
        self.set(Limit::from_name(name)?, value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_limit_round_trips_by_name() {
        let mut limits = Limits::default();
        for (i, &limit) in Limit::ALL.iter().enumerate() {
            assert_eq!(Limit::from_name(limit.name()).unwrap(), limit);
            let value = 1000 + i as u64;
            limits.set_named(limit.name(), value).unwrap();
            assert_eq!(limits.get(limit), value, "{}", limit.name());
        }
        let names: std::collections::HashSet<_> = Limit::ALL.iter().map(|l| l.name()).collect();
        assert_eq!(names.len(), Limit::ALL.len(), "names are unique");
    }

    #[test]
    fn bad_names_and_values_are_clear_errors() {
        let mut limits = Limits::default();
        let e = limits.set_named("max-frames", 1).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        assert!(e.message.contains("'max-frames'") && e.message.contains("max-frame,"));
        let e = limits.set(Limit::MaxMemory, 0).unwrap_err();
        assert!(
            e.message.contains("'max-memory' must be above 0"),
            "{}",
            e.message
        );
        assert!(limits.set(Limit::PingMax, u64::from(u32::MAX) + 1).is_err());
        assert_eq!(limits.max_memory, Limits::default().max_memory);
        limits.set(Limit::PingIntervalMs, 0).unwrap();
        assert!(limits.ping_interval.is_zero());
    }
}
