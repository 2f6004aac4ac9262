//! Signals through the core: matches (who listens for what, pure state)
//! and the fan-out of an emitted signal to every matching connection.
//!
//! A signal is encoded once, by its publisher. The broker reads its
//! session and signal names in place, frames the received body once, and
//! appends those same bytes to the output of each matching connection:
//! nothing is decoded or encoded per listener. Each listener's output is
//! bounded as always ([`super::Limits::max_queued_bytes`]): one that does
//! not read is cut off as a slow consumer (counted), and neither the
//! emitter nor the other listeners wait for it.
//!
//! Matches are indexed by exact session name, so a signal costs the
//! listeners of its session plus those whose session pattern is a prefix
//! or `*`, never a scan of every connection.

use super::core::Core;
use super::registry::check_name;
use super::ConnId;
use crate::error::{Error, ErrorCode};
use crate::id_hash::IdMap;
use crate::pattern::{check_matchable, Pattern};
use std::collections::HashMap;

/// One match of a connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Rule {
    session: Pattern,
    signal: Pattern,
}

/// Every connection's matches.
#[derive(Debug, Default)]
pub(super) struct Matches {
    /// Matches whose session pattern is exact: session → connection →
    /// its signal patterns for that session (one per match, repeats
    /// kept: each is removed once).
    exact: HashMap<String, IdMap<ConnId, Vec<Pattern>>>,
    /// Matches whose session pattern is a prefix or `*`.
    wild: IdMap<ConnId, Vec<Rule>>,
    /// Every match of each connection, to forget them when it closes.
    by_conn: IdMap<ConnId, Vec<Rule>>,
    /// How many matches in all.
    count: usize,
    /// The connections a signal goes to, kept between signals.
    scratch: Vec<ConnId>,
    /// The distinct matches of local connections (clients, not
    /// federation stand-ins), each with how many connections hold it:
    /// what this broker announces to its peer brokers.
    local: HashMap<Rule, usize>,
    /// Bumped whenever `local` gains or loses a distinct match.
    local_gen: u64,
}

impl Matches {
    /// How many matches there are.
    pub fn len(&self) -> usize {
        self.count
    }

    /// How many matches `conn` has.
    fn count_of(&self, conn: ConnId) -> usize {
        self.by_conn.get(&conn).map_or(0, Vec::len)
    }

    /// Counts `rule` of a local connection in (`up`) or out of the
    /// distinct local matches.
    fn count_local(&mut self, rule: &Rule, up: bool) {
        if up {
            let n = self.local.entry(rule.clone()).or_insert(0);
            *n += 1;
            if *n == 1 {
                self.local_gen += 1;
            }
        } else if let Some(n) = self.local.get_mut(rule) {
            *n -= 1;
            if *n == 0 {
                self.local.remove(rule);
                self.local_gen += 1;
            }
        }
    }

    fn add(&mut self, conn: ConnId, rule: Rule, local: bool) {
        if local {
            self.count_local(&rule, true);
        }
        match rule.session.exact() {
            Some(name) => self
                .exact
                .entry(name.to_string())
                .or_default()
                .entry(conn)
                .or_default()
                .push(rule.signal.clone()),
            None => self.wild.entry(conn).or_default().push(rule.clone()),
        }
        self.by_conn.entry(conn).or_default().push(rule);
        self.count += 1;
    }

    /// Removes one match of `conn` equal to `rule`; whether there was one.
    fn remove(&mut self, conn: ConnId, rule: &Rule, local: bool) -> bool {
        let Some(rules) = self.by_conn.get_mut(&conn) else {
            return false;
        };
        let Some(at) = rules.iter().position(|r| r == rule) else {
            return false;
        };
        rules.remove(at);
        if rules.is_empty() {
            self.by_conn.remove(&conn);
        }
        if local {
            self.count_local(rule, false);
        }
        self.count -= 1;
        match rule.session.exact() {
            Some(name) => {
                if let Some(conns) = self.exact.get_mut(name) {
                    if let Some(sigs) = conns.get_mut(&conn) {
                        if let Some(i) = sigs.iter().position(|s| *s == rule.signal) {
                            sigs.remove(i);
                        }
                        if sigs.is_empty() {
                            conns.remove(&conn);
                        }
                    }
                    if conns.is_empty() {
                        self.exact.remove(name);
                    }
                }
            }
            None => {
                if let Some(rules) = self.wild.get_mut(&conn) {
                    if let Some(i) = rules.iter().position(|r| r == rule) {
                        rules.remove(i);
                    }
                    if rules.is_empty() {
                        self.wild.remove(&conn);
                    }
                }
            }
        }
        true
    }

    /// Forgets every match of `conn`.
    fn drop_conn(&mut self, conn: ConnId, local: bool) {
        let Some(rules) = self.by_conn.remove(&conn) else {
            return;
        };
        self.count -= rules.len();
        self.wild.remove(&conn);
        for rule in rules {
            if local {
                self.count_local(&rule, false);
            }
            if let Some(name) = rule.session.exact() {
                if let Some(conns) = self.exact.get_mut(name) {
                    conns.remove(&conn);
                    if conns.is_empty() {
                        self.exact.remove(name);
                    }
                }
            }
        }
    }

    /// Fills `scratch` with every connection a signal `signal` of
    /// `session` goes to, each once.
    fn targets(&mut self, session: &str, signal: &str) -> Vec<ConnId> {
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        if let Some(conns) = self.exact.get(session) {
            for (&conn, sigs) in conns {
                if sigs.iter().any(|s| s.matches(signal)) {
                    out.push(conn);
                }
            }
        }
        for (&conn, rules) in &self.wild {
            if rules
                .iter()
                .any(|r| r.session.matches(session) && r.signal.matches(signal))
            {
                out.push(conn);
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

impl Core {
    /// Checks two patterns of a match.
    fn rule(&self, session: &str, signal: &str) -> Result<Rule, Error> {
        let max = self.limits().max_name;
        check_name("session pattern", session, max)?;
        check_name("signal pattern", signal, max)?;
        Ok(Rule {
            session: Pattern::parse("session pattern", session)?,
            signal: Pattern::parse("signal pattern", signal)?,
        })
    }

    /// `id` adds a match.
    pub(super) fn add_match(
        &mut self,
        id: ConnId,
        session: &str,
        signal: &str,
    ) -> Result<(), Error> {
        let rule = self.rule(session, signal)?;
        let max = self.limits().max_matches_per_connection;
        let count = self.signals.count_of(id);
        let link = self.is_link(id);
        // A stand-in holds its whole broker's matches: the limit is each
        // client's, checked at its own broker.
        if count >= max && !link {
            return Err(Error::new(
                ErrorCode::LimitExceeded,
                format!("this connection already has {count} signal matches (limit {max})"),
            ));
        }
        self.signals.add(id, rule, !link);
        Ok(())
    }

    /// `id` removes a match it added.
    pub(super) fn remove_match(
        &mut self,
        id: ConnId,
        session: &str,
        signal: &str,
    ) -> Result<(), Error> {
        let rule = self.rule(session, signal)?;
        let local = !self.is_link(id);
        if self.signals.remove(id, &rule, local) {
            Ok(())
        } else {
            Err(Error::new(
                ErrorCode::InvalidArgument,
                format!("this connection has no match for session '{session}', signal '{signal}'"),
            ))
        }
    }

    /// A signal from `id`, whose whole frame body is `body`: forwarded as
    /// it is to every matching connection, if `id` publishes `session`;
    /// otherwise dropped and counted (a signal crossing its session's
    /// rescind, or forged).
    pub(super) fn handle_signal(&mut self, id: ConnId, session: &str, signal: &str, body: &[u8]) {
        if !self.check_handshaken(id, "signal") {
            return;
        }
        // The owner (or any balanced publisher), never a standby.
        let publishes = self.registry.get(session).is_some_and(|s| s.serves(id));
        if !publishes || check_matchable("signal name", signal).is_err() {
            self.stats.dropped_signals += 1;
            return;
        }
        self.stats.signals += 1;
        let mut targets = self.signals.targets(session, signal);
        if self.is_link(id) {
            // From a peer broker, which sent it to every broker with a
            // listener: it goes to this broker's own listeners only,
            // never on to a third broker.
            targets.retain(|to| !self.is_link(*to));
        }
        if !targets.is_empty() {
            // Framed once; every listener gets a copy of these bytes.
            let mut framed = Vec::with_capacity(body.len() + 4);
            framed.extend_from_slice(&(body.len() as u32).to_le_bytes());
            framed.extend_from_slice(body);
            for &to in &targets {
                if self.send_bytes(to, &framed) {
                    self.stats.signal_deliveries += 1;
                }
            }
        }
        self.signals.scratch = targets;
    }

    /// `conn` closed (a stand-in connection when `link`): its matches
    /// are forgotten.
    pub(super) fn drop_matches(&mut self, conn: ConnId, link: bool) {
        self.signals.drop_conn(conn, !link);
    }

    /// Forgets every match of stand-in connection `conn` (its broker
    /// announces its matches again after a link reset).
    pub(super) fn clear_link_matches(&mut self, conn: ConnId) {
        if self.is_link(conn) {
            self.signals.drop_conn(conn, false);
        }
    }

    /// Whether `conn` is a federation stand-in connection.
    pub(super) fn is_link(&self, conn: ConnId) -> bool {
        self.peers.get(&conn).is_some_and(|p| p.link)
    }

    /// A number that changes whenever the distinct matches of local
    /// connections change (see [`Core::local_matches`]).
    pub(super) fn local_match_generation(&self) -> u64 {
        self.signals.local_gen
    }

    /// The distinct matches of local connections, as (session pattern,
    /// signal pattern) texts, sorted: what a federated broker announces
    /// to its peers so that they forward it the signals its clients
    /// listen for.
    pub(super) fn local_matches(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .signals
            .local
            .keys()
            .map(|r| (r.session.text(), r.signal.text()))
            .collect();
        out.sort_unstable();
        out
    }

    /// The broker closes: every match is forgotten.
    pub(super) fn drop_all_matches(&mut self) {
        self.signals = Matches::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(s: &str, g: &str) -> Rule {
        Rule {
            session: Pattern::parse("s", s).unwrap(),
            signal: Pattern::parse("g", g).unwrap(),
        }
    }

    #[test]
    fn targets_are_each_matching_connection_once() {
        let mut m = Matches::default();
        m.add(1, rule("A", "x"), true);
        m.add(1, rule("*", "*"), true);
        m.add(2, rule("A", "y"), true);
        m.add(3, rule("A*", "x"), true);
        m.add(4, rule("B", "*"), true);
        assert_eq!(m.targets("A", "x"), vec![1, 3]);
        assert_eq!(m.targets("A", "y"), vec![1, 2]);
        assert_eq!(m.targets("AB", "x"), vec![1, 3]);
        assert_eq!(m.targets("B", "z"), vec![1, 4]);
        assert_eq!(m.len(), 5);
        assert!(m.remove(1, &rule("*", "*"), true));
        assert!(!m.remove(1, &rule("*", "*"), true));
        assert_eq!(m.targets("B", "z"), vec![4]);
        m.drop_conn(4, true);
        m.drop_conn(3, true);
        assert!(m.targets("B", "z").is_empty());
        assert!(m.remove(2, &rule("A", "y"), true));
        assert!(m.remove(1, &rule("A", "x"), true));
        assert_eq!(m.len(), 0);
        assert!(m.exact.is_empty() && m.wild.is_empty() && m.by_conn.is_empty());
        assert!(m.local.is_empty());
    }

    #[test]
    fn local_matches_are_counted_once_each_and_stand_ins_are_not() {
        let mut m = Matches::default();
        let g0 = m.local_gen;
        m.add(1, rule("A", "x"), true);
        m.add(2, rule("A", "x"), true);
        m.add(3, rule("B*", "*"), false);
        assert_eq!(m.local.len(), 1);
        let g1 = m.local_gen;
        assert!(g1 > g0);
        assert!(m.remove(1, &rule("A", "x"), true));
        assert_eq!(m.local_gen, g1, "still held by connection 2");
        m.drop_conn(2, true);
        assert!(m.local.is_empty());
        assert!(m.local_gen > g1);
        m.drop_conn(3, false);
        assert_eq!(m.len(), 0);
    }
}
