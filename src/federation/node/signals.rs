//! Signals across brokers: each broker announces to every peer the
//! distinct matches of its own clients, and the peer's core holds them
//! on this broker's stand-in connection there.
//!
//! # How a signal crosses
//!
//! A signal emitted on broker A goes, in A's core, to every connection
//! with a matching match. A peer broker B is one such connection (its
//! stand-in at A) exactly when one of B's clients listens for it: the
//! signal crosses the link to B **once**, however many of B's clients
//! listen, and never to a broker where nobody does. At B it arrives from
//! A's stand-in, which publishes the emitting session there, and goes to
//! B's own listeners only (a signal from a stand-in is never forwarded to
//! a third broker: A sent it to every broker that wanted it). The link
//! keeps one emitter's signals in order, and the core forwards them in
//! the order received, so every listener sees one emitter's signals in
//! the order they were emitted, once each.
//!
//! # Announcing matches
//!
//! The announcement is a diff: `AddMatch`/`RemoveMatch` frames with
//! federation's own operation ids ([`MATCH_OP`], whose answers stay on
//! the receiving broker), sent when the distinct set changes (a second
//! client listening for the same patterns changes nothing). Whenever the
//! link may have lost frames or the peer may have dropped its stand-in
//! (the link reset, either side; the peer's incarnation changed), the
//! whole set is sent again after a [`CLEAR_MATCHES_OP`] marker that
//! empties the stand-in's matches first, so a peer never holds a match
//! twice nor one that was removed.
//!
//! Cost: one message per change of the distinct set per peer; a signal
//! costs one link frame per broker with a listener.
//!
//! A match takes effect at the other brokers when its announcement
//! arrives (a NATS hop, a few ms): a signal emitted on another broker
//! between the listener's confirmed `add_match` and then is not seen, as
//! a signal emitted before the match was added.

use super::{body_of, ConnId, Federation, SYNTHETIC_OPS};
use crate::wire::Frame;
use std::collections::BTreeSet;

/// The operation id of a match announcement (its answer is not sent
/// over the link).
pub(crate) const MATCH_OP: u64 = SYNTHETIC_OPS;

/// The operation id of the marker that empties a stand-in's matches: a
/// `RemoveMatch` with this id is handled by federation, never by the
/// core.
pub(crate) const CLEAR_MATCHES_OP: u64 = u64::MAX;

/// What this broker last announced to one peer.
#[derive(Debug, Default)]
pub(crate) struct Announced {
    /// The link's state it was announced in: (the peer's incarnation
    /// from its heartbeats, resets of the link, either side's). Any
    /// change means the peer may have lost it (a new incarnation of a
    /// peer already heard on the link counts as a reset).
    key: (u64, u64),
    /// The broker's match generation it reflects.
    gen: u64,
    /// The matches the peer holds for us.
    set: BTreeSet<(String, String)>,
}

impl Federation {
    /// Queues, for every peer, what it must learn of this broker's
    /// matches: nothing when it knows them already, the difference when
    /// they changed, all of them (after a clear) when the link may have
    /// lost some. Only while connected to NATS (a send failing would
    /// reset the link, and the announcement would start again).
    pub(super) fn announce_matches(&self) {
        let Some(port) = self.port.upgrade() else {
            return;
        };
        if !self.nats().is_some_and(|n| n.is_connected()) {
            return;
        }
        let gen = port.match_generation();
        let mut current: Option<BTreeSet<(String, String)>> = None;
        let mut st = self.state.borrow_mut();
        for p in st.peers.values_mut() {
            let key = (p.hb_inc, p.link.resets);
            let a = &mut p.announced;
            let fresh = a.key != key;
            if !fresh && a.gen == gen {
                continue;
            }
            let now = current
                .get_or_insert_with(|| port.local_matches().into_iter().collect::<BTreeSet<_>>());
            let mut frames = Vec::new();
            if fresh {
                if !a.set.is_empty() {
                    frames.push(body_of(&Frame::RemoveMatch {
                        id: CLEAR_MATCHES_OP,
                        session: "*".into(),
                        signal: "*".into(),
                    }));
                }
                a.set.clear();
            }
            for (session, signal) in a.set.difference(now) {
                frames.push(body_of(&Frame::RemoveMatch {
                    id: MATCH_OP,
                    session: session.clone(),
                    signal: signal.clone(),
                }));
            }
            for (session, signal) in now.difference(&a.set) {
                frames.push(body_of(&Frame::AddMatch {
                    id: MATCH_OP,
                    session: session.clone(),
                    signal: signal.clone(),
                }));
            }
            a.key = key;
            a.gen = gen;
            a.set = now.clone();
            p.out.extend(frames);
        }
    }

    /// The marker from a peer: the matches its stand-in `conn` holds
    /// here are forgotten (the peer announces them all again next).
    pub(super) fn clear_matches(&self, conn: ConnId) {
        if let Some(port) = self.port.upgrade() {
            port.clear_link_matches(conn);
        }
    }
}
