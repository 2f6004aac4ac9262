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
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
            let _ = writeln!(out, "# HELP stagebus_{name} {help}");
            let _ = writeln!(out, "# TYPE stagebus_{name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "stagebus_{name}{labels} {value}");
            }
        };
        metric(
            "uptime_seconds",
            "gauge",
            "Seconds since the broker started.",
            &[(String::new(), self.uptime.as_secs_f64())],
        );
        for f in self.totals.figures() {
            let kind = if f.counter { "counter" } else { "gauge" };
            metric(f.metric, kind, f.help, &[(String::new(), f.value as f64)]);
        }
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
        let mut totals = Args::new();
        for f in self.totals.figures() {
            totals.insert(f.name, count(f.value));
        }
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
                .with("totals", Value::Map(totals))
                .with("errors", self.errors.to_value())
                .with("connections", connections)
                .with("sessions", sessions),
        )
    }
}

/// One figure of [`crate::BrokerStats`], as reports render it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Figure {
    /// The field's name: the key in [`StatsReport::to_value`]'s totals.
    pub name: &'static str,
    /// The Prometheus metric's name, without the `stagebus_` prefix.
    pub metric: &'static str,
    /// A count that only grows (a Prometheus counter), or a level
    /// (a gauge).
    pub counter: bool,
    /// What it counts, for people.
    pub help: &'static str,
    /// Its value.
    pub value: u64,
}

impl crate::BrokerStats {
    /// Every figure, in one table: the map value C, Perl and the command
    /// line see and the Prometheus rendering both come from it, so a
    /// figure added to [`crate::BrokerStats`] and here reaches all of
    /// them.
    pub fn figures(&self) -> Vec<Figure> {
        let gauge = |name, metric, help, value: usize| Figure {
            name,
            metric,
            counter: false,
            help,
            value: value as u64,
        };
        let counter = |name, metric, help, value: u64| Figure {
            name,
            metric,
            counter: true,
            help,
            value,
        };
        vec![
            gauge(
                "connections",
                "connections",
                "Open connections.",
                self.connections,
            ),
            gauge("sessions", "sessions", "Published sessions.", self.sessions),
            gauge(
                "pending_calls",
                "calls_in_flight",
                "Calls waiting for their result.",
                self.pending_calls,
            ),
            gauge(
                "waiting_subscribes",
                "waiting_subscribes",
                "Subscribes waiting for their name.",
                self.waiting_subscribes,
            ),
            counter(
                "calls",
                "calls_total",
                "Calls delivered to publishers.",
                self.calls,
            ),
            counter(
                "protocol_errors",
                "protocol_errors_total",
                "Connections closed for breaking the protocol.",
                self.protocol_errors,
            ),
            counter(
                "slow_consumers",
                "slow_consumers_total",
                "Connections closed for not reading their output.",
                self.slow_consumers,
            ),
            counter(
                "refused_connections",
                "refused_connections_total",
                "Connections refused (connection limit, hello refused).",
                self.refused_connections,
            ),
            counter(
                "access_denied",
                "access_denied_total",
                "Operations the policy denied (answered access_denied).",
                self.access_denied,
            ),
            counter(
                "dropped_stray",
                "dropped_stray_total",
                "Answers that arrived for no call in flight and were dropped.",
                self.dropped_stray,
            ),
            counter(
                "limits_exceeded",
                "limits_exceeded_total",
                "Requests answered limit_exceeded and connections closed over a limit.",
                self.limits_exceeded,
            ),
            counter(
                "reads_paused",
                "reads_paused_total",
                "Times a connection's reading paused for its unread output.",
                self.reads_paused,
            ),
            gauge(
                "memory_used",
                "memory_used_bytes",
                "Bytes the memory budget counts now.",
                self.memory_used,
            ),
            counter(
                "oneway_calls",
                "oneway_calls_total",
                "One-way calls forwarded to their publisher.",
                self.oneway_calls,
            ),
            counter(
                "dropped_oneway",
                "dropped_oneway_total",
                "One-way calls that could not be delivered.",
                self.dropped_oneway,
            ),
            counter(
                "signals",
                "signals_total",
                "Signals emitted and fanned out.",
                self.signals,
            ),
            counter(
                "signal_deliveries",
                "signal_deliveries_total",
                "Signal copies queued for listeners.",
                self.signal_deliveries,
            ),
            counter(
                "dropped_signals",
                "dropped_signals_total",
                "Signals dropped (not their sender's session, no proper signal).",
                self.dropped_signals,
            ),
            gauge(
                "signal_matches",
                "signal_matches",
                "Signal matches held by connections.",
                self.signal_matches,
            ),
            gauge(
                "name_watches",
                "name_watches",
                "Name watches held by connections.",
                self.name_watches,
            ),
            counter(
                "tls_handshake_failures",
                "tls_handshake_failures_total",
                "TLS connections closed before their handshake was done.",
                self.tls_handshake_failures,
            ),
            gauge(
                "remote_sessions",
                "federation_remote_sessions",
                "Sessions of other brokers in the directory cache.",
                self.remote_sessions,
            ),
            counter(
                "link_resets",
                "federation_link_resets_total",
                "Links to other brokers reset.",
                self.link_resets,
            ),
            counter(
                "peers_declared_dead",
                "federation_peers_declared_dead_total",
                "Other brokers declared dead.",
                self.peers_declared_dead,
            ),
            counter(
                "peers_swept",
                "federation_peers_swept_total",
                "Brokers known only from the directory declared dead by the start-up sweep.",
                self.peers_swept,
            ),
            counter(
                "nats_reconnects",
                "federation_nats_reconnects_total",
                "Reconnects of the broker's NATS connection.",
                self.nats_reconnects,
            ),
            counter(
                "incarnations",
                "federation_incarnations_total",
                "New incarnations taken after being declared dead.",
                self.incarnations,
            ),
            counter(
                "federation_limits_exceeded",
                "federation_limits_exceeded_total",
                "Calls across brokers failed with limit_exceeded.",
                self.federation_limits_exceeded,
            ),
        ]
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
    fn every_broker_figure_reaches_the_map_and_prometheus() {
        // A field added to BrokerStats but not to `figures` fails here.
        let fields = match serde_json::to_value(crate::BrokerStats::default()).unwrap() {
            serde_json::Value::Object(m) => m.keys().cloned().collect::<Vec<_>>(),
            other => panic!("{other}"),
        };
        let stats = crate::BrokerStats {
            tls_handshake_failures: 7,
            link_resets: 3,
            ..Default::default()
        };
        let mut names: Vec<String> = stats.figures().iter().map(|f| f.name.into()).collect();
        names.sort();
        let mut sorted = fields.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        let report = StatsReport {
            uptime: Duration::from_secs(1),
            totals: stats,
            errors: ErrorCounts::default(),
            connections: vec![],
            sessions: vec![],
        };
        let Value::Map(map) = report.to_value() else {
            panic!()
        };
        let Some(Value::Map(totals)) = map.get("totals") else {
            panic!()
        };
        assert_eq!(totals.len(), fields.len());
        assert_eq!(totals.get("tls_handshake_failures"), Some(&Value::Int(7)));
        let text = report.to_prometheus();
        assert!(
            text.contains("\nstagebus_tls_handshake_failures_total 7\n"),
            "{text}"
        );
        assert!(
            text.contains("\nstagebus_federation_link_resets_total 3\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE stagebus_memory_used_bytes gauge\n"),
            "{text}"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
