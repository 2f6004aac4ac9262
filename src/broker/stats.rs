//! The broker's side of its report: the counters it keeps on the call
//! path, and the report of a moment (the figures are
//! [`crate::report`]'s).
//!
//! Counting costs the call path one increment per call: the count is
//! shared with the session's registry entry, which the call looks up
//! anyway (one lookup by name per published session's first call); a
//! failed call one more lookup per error.

use super::ConnId;
use crate::error::ErrorCode;
use crate::report::{ConnectionReport, ErrorCounts, SessionReport, StatsReport};
use crate::wire::Reply;
use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

/// Cumulative figures of one published name.
#[derive(Debug, Clone, Default)]
pub(super) struct SessionCounters {
    /// Shared with the registry's entry of the name while it is
    /// published ([`super::registry::Session::calls`]).
    pub calls: Rc<Cell<u64>>,
    pub errors: ErrorCounts,
}

/// The counters the core keeps beside [`super::BrokerStats`].
#[derive(Debug, Default)]
pub(super) struct Counters {
    /// Errors sent to clients, made by the broker or by publishers.
    pub errors: ErrorCounts,
    /// Per published name, while it is published (pruned at report time).
    pub sessions: HashMap<String, SessionCounters>,
}

impl Counters {
    /// The count of calls delivered to `session`, to be increased by
    /// the caller; the registry's entry of the name keeps it, so that
    /// later calls need no lookup.
    pub fn call_counter(&mut self, session: &str) -> Rc<Cell<u64>> {
        match self.sessions.get(session) {
            Some(c) => c.calls.clone(),
            None => self
                .sessions
                .entry(session.to_owned())
                .or_default()
                .calls
                .clone(),
        }
    }

    /// A call to `session` ended with `code` from its publisher.
    pub fn session_error(&mut self, session: &str, code: ErrorCode) {
        if let Some(c) = self.sessions.get_mut(session) {
            c.errors.add(code);
        }
    }
}

impl super::core::Core {
    /// Answers the report asked for by `conn` under `op`.
    pub fn answer_report(&mut self, conn: ConnId, op: u64, report: StatsReport) {
        if self.peers.contains_key(&conn) {
            self.reply(conn, op, Ok(Reply::Stats(Box::new(report))));
        }
    }

    /// The report of this moment; the shell adds what only it knows (the
    /// uptime, each peer's address).
    pub fn report(&mut self, uptime: Duration, peer: impl Fn(ConnId) -> String) -> StatsReport {
        let registry = &self.registry;
        self.counters
            .sessions
            .retain(|name, _| registry.get(name).is_some());
        let in_flight = self.routes.in_flight_by_session();
        let mut sessions: Vec<SessionReport> = self
            .registry
            .sessions()
            .map(|s| {
                let counters = self.counters.sessions.get(&*s.name);
                SessionReport {
                    name: s.name.to_string(),
                    publisher: s.owner(),
                    calls: counters.map_or(0, |c| c.calls.get()),
                    errors: counters.map(|c| c.errors.clone()).unwrap_or_default(),
                    in_flight: in_flight.get(&*s.name).copied().unwrap_or(0),
                }
            })
            .collect();
        sessions.sort_by(|a, b| a.name.cmp(&b.name));
        let mut connections: Vec<ConnectionReport> = self
            .peers
            .iter()
            .map(|(&id, p)| {
                let (calls_in_flight, serving) = self.routes.counts(id);
                ConnectionReport {
                    id,
                    peer: peer(id),
                    handshaken: p.handshaken,
                    sessions: p.published.len(),
                    calls_in_flight,
                    serving,
                    bytes_queued: p.outbox.queued(),
                }
            })
            .collect();
        connections.sort_by_key(|c| c.id);
        StatsReport {
            uptime,
            totals: self.stats(),
            errors: self.counters.errors.clone(),
            connections,
            sessions,
        }
    }
}
