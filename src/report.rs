//! What a broker reports about itself: totals, errors by code, and a
//! report per connection and per session, as figures and in the
//! Prometheus text exposition format. A broker makes them
//! ([`crate::Broker::report`]); a client can ask for them
//! ([`crate::Client::stats`]).

use crate::error::ErrorCode;
use crate::value::{Args, Value};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// How many errors of each code. Kept by number, so that a report
/// from a newer broker, which may know more codes, still reads right.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorCounts(BTreeMap<u16, u64>);

impl ErrorCounts {
    /// Counts one error of `code`.
    pub fn add(&mut self, code: ErrorCode) {
        *self.0.entry(code.into()).or_insert(0) += 1;
    }

    /// The count of `code`.
    pub fn get(&self, code: ErrorCode) -> u64 {
        self.0.get(&code.into()).copied().unwrap_or(0)
    }

    /// Every code with a count, in number order, with its name
    /// (`unknown` for a code this build does not know).
    pub fn nonzero(&self) -> Vec<(u16, &'static str, u64)> {
        self.0
            .iter()
            .map(|(&n, &count)| (n, ErrorCode::from(n).as_str(), count))
            .collect()
    }

    /// All errors counted.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }
}

/// One connection as a report shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionReport {
    /// The broker's number for the connection.
    pub id: u64,
    /// The peer's address (`127.0.0.1:40312`, `unix:`).
    pub peer: String,
    /// Whether its hello was accepted.
    pub handshaken: bool,
    /// Sessions it publishes.
    pub sessions: usize,
    /// Calls it made that are in flight.
    pub calls_in_flight: usize,
    /// Calls it owes an answer, as publisher.
    pub serving: usize,
    /// Bytes queued for it and not yet written.
    pub bytes_queued: usize,
}

/// One published session as a report shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionReport {
    /// The published name.
    pub name: String,
    /// The connection that publishes it.
    pub publisher: u64,
    /// Calls delivered to it since it was published.
    pub calls: u64,
    /// Calls it answered with an error, by code.
    pub errors: ErrorCounts,
    /// Calls to it in flight now.
    pub in_flight: usize,
}

/// Everything a broker reports about itself at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsReport {
    /// How long the broker has run.
    pub uptime: Duration,
    /// The totals.
    pub totals: crate::broker::BrokerStats,
    /// Errors sent to clients (by the broker or forwarded from
    /// publishers), by code.
    pub errors: ErrorCounts,
    /// Every open connection, by id.
    pub connections: Vec<ConnectionReport>,
    /// Every published session, by name.
    pub sessions: Vec<SessionReport>,
}

impl StatsReport {
    /// The report in the Prometheus text exposition format (version
    /// 0.0.4), every metric prefixed `stagebus_`: what node_exporter's
    /// textfile collector or a scrape job reads.
    pub fn to_prometheus(&self) -> String {
        let mut out = String::new();
        let t = &self.totals;
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
            let _ = writeln!(out, "# HELP stagebus_{name} {help}");
            let _ = writeln!(out, "# TYPE stagebus_{name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "stagebus_{name}{labels} {value}");
            }
        };
        let plain = |v: f64| vec![(String::new(), v)];
        metric(
            "uptime_seconds",
            "gauge",
            "Seconds since the broker started.",
            &plain(self.uptime.as_secs_f64()),
        );
        metric(
            "connections",
            "gauge",
            "Open connections.",
            &plain(t.connections as f64),
        );
        metric(
            "sessions",
            "gauge",
            "Published sessions.",
            &plain(t.sessions as f64),
        );
        metric(
            "calls_in_flight",
            "gauge",
            "Calls waiting for their result.",
            &plain(t.pending_calls as f64),
        );
        metric(
            "waiting_subscribes",
            "gauge",
            "Subscribes waiting for their name.",
            &plain(t.waiting_subscribes as f64),
        );
        metric(
            "calls_total",
            "counter",
            "Calls delivered to publishers.",
            &plain(t.calls as f64),
        );
        metric(
            "protocol_errors_total",
            "counter",
            "Connections closed for breaking the protocol.",
            &plain(t.protocol_errors as f64),
        );
        metric(
            "slow_consumers_total",
            "counter",
            "Connections closed for not reading their output.",
            &plain(t.slow_consumers as f64),
        );
        metric(
            "refused_connections_total",
            "counter",
            "Connections refused (connection limit, hello refused).",
            &plain(t.refused_connections as f64),
        );
        metric(
            "access_denied_total",
            "counter",
            "Operations the policy denied (answered access_denied).",
            &plain(t.access_denied as f64),
        );
        metric(
            "dropped_stray_total",
            "counter",
            "Answers that arrived for no call in flight and were dropped.",
            &plain(t.dropped_stray as f64),
        );
        let errors: Vec<_> = self
            .errors
            .nonzero()
            .into_iter()
            .map(|(_, code, n)| (format!("{{code=\"{code}\"}}"), n as f64))
            .collect();
        metric(
            "errors_total",
            "counter",
            "Errors sent to clients, by code.",
            &errors,
        );
        let per_session = |f: &dyn Fn(&SessionReport) -> f64| -> Vec<(String, f64)> {
            self.sessions
                .iter()
                .map(|s| (format!("{{session=\"{}\"}}", label(&s.name)), f(s)))
                .collect()
        };
        metric(
            "session_calls_total",
            "counter",
            "Calls delivered to a session since it was published.",
            &per_session(&|s| s.calls as f64),
        );
        metric(
            "session_calls_in_flight",
            "gauge",
            "Calls to a session waiting for their result.",
            &per_session(&|s| s.in_flight as f64),
        );
        let session_errors: Vec<_> = self
            .sessions
            .iter()
            .flat_map(|s| {
                s.errors.nonzero().into_iter().map(move |(_, code, n)| {
                    (
                        format!("{{session=\"{}\",code=\"{code}\"}}", label(&s.name)),
                        n as f64,
                    )
                })
            })
            .collect();
        metric(
            "session_errors_total",
            "counter",
            "Calls a session's publisher answered with an error, by code.",
            &session_errors,
        );
        let per_conn = |f: &dyn Fn(&ConnectionReport) -> f64| -> Vec<(String, f64)> {
            self.connections
                .iter()
                .map(|c| {
                    (
                        format!("{{conn=\"{}\",peer=\"{}\"}}", c.id, label(&c.peer)),
                        f(c),
                    )
                })
                .collect()
        };
        metric(
            "connection_bytes_queued",
            "gauge",
            "Bytes queued for a connection and not yet written.",
            &per_conn(&|c| c.bytes_queued as f64),
        );
        metric(
            "connection_calls_in_flight",
            "gauge",
            "Calls a connection made that wait for their result.",
            &per_conn(&|c| c.calls_in_flight as f64),
        );
        out
    }
}

impl StatsReport {
    /// The report as a map value, the shape C, Perl and the command
    /// line's JSON see: `uptime_ms`, `totals` (a map of every
    /// [`crate::BrokerStats`] figure), `errors` (code name → count),
    /// `connections` and `sessions` (lists of maps, keys as the fields
    /// of [`ConnectionReport`] and [`SessionReport`]).
    pub fn to_value(&self) -> Value {
        let t = &self.totals;
        let totals = Args::new()
            .with("connections", count(t.connections))
            .with("sessions", count(t.sessions))
            .with("pending_calls", count(t.pending_calls))
            .with("waiting_subscribes", count(t.waiting_subscribes))
            .with("calls", count(t.calls))
            .with("dropped_stray", count(t.dropped_stray))
            .with("protocol_errors", count(t.protocol_errors))
            .with("slow_consumers", count(t.slow_consumers))
            .with("refused_connections", count(t.refused_connections))
            .with("access_denied", count(t.access_denied));
        let connections = self
            .connections
            .iter()
            .map(|c| {
                Value::Map(
                    Args::new()
                        .with("id", count(c.id))
                        .with("peer", c.peer.as_str())
                        .with("handshaken", c.handshaken)
                        .with("sessions", count(c.sessions))
                        .with("calls_in_flight", count(c.calls_in_flight))
                        .with("serving", count(c.serving))
                        .with("bytes_queued", count(c.bytes_queued)),
                )
            })
            .collect::<Vec<_>>();
        let sessions = self
            .sessions
            .iter()
            .map(|s| {
                Value::Map(
                    Args::new()
                        .with("name", s.name.as_str())
                        .with("publisher", count(s.publisher))
                        .with("calls", count(s.calls))
                        .with("errors", s.errors.to_value())
                        .with("in_flight", count(s.in_flight)),
                )
            })
            .collect::<Vec<_>>();
        Value::Map(
            Args::new()
                .with("uptime_ms", count(self.uptime.as_millis()))
                .with("totals", totals)
                .with("errors", self.errors.to_value())
                .with("connections", connections)
                .with("sessions", sessions),
        )
    }
}

impl ErrorCounts {
    /// Code name → count, as a map value (`code_N` for a code this
    /// build does not know).
    pub fn to_value(&self) -> Value {
        let mut map = Args::new();
        for (number, name, n) in self.nonzero() {
            match ErrorCode::from(number) {
                ErrorCode::Unknown => map.insert(format!("code_{number}"), count(n)),
                _ => map.insert(name, count(n)),
            };
        }
        Value::Map(map)
    }
}

/// A count as an int value, saturating (no count comes near 2^63).
fn count(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

/// A label value escaped as the exposition format asks (backslash,
/// double quote, newline).
fn label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_counts_keep_each_code_apart() {
        let mut e = ErrorCounts::default();
        e.add(ErrorCode::Timeout);
        e.add(ErrorCode::Timeout);
        e.add(ErrorCode::NoSuchSession);
        assert_eq!(e.get(ErrorCode::Timeout), 2);
        assert_eq!(e.get(ErrorCode::Io), 0);
        assert_eq!(e.total(), 3);
        assert_eq!(
            e.nonzero(),
            vec![(1, "no_such_session", 1), (5, "timeout", 2)]
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
