//! Calls in flight: each route links a caller's call to its publisher.
//!
//! A route is known three ways: by its own id (the id the publisher sees),
//! from its caller (the caller's call id, which the caller chose), and from
//! its publisher (the routes it owes an answer). [`Routes`] keeps all three
//! and is the only place that changes them: [`Routes::open`] makes all
//! three links, [`Routes::close`] and [`Routes::end_connection`] remove all
//! three, so no link outlives its route.

use super::ConnId;
use crate::error::{Error, ErrorCode};
use crate::id_hash::{IdMap, IdSet, PeerIdMap};
use std::collections::HashMap;
use std::rc::Rc;

/// The room a table keeps however empty it gets: a usual load never
/// reallocates.
const KEEP_ROOM: usize = 1024;

/// Gives back the room of a table that a burst grew and that is now
/// mostly empty: past [`KEEP_ROOM`] and under a quarter full, it shrinks
/// to twice its length. Each shrink halves the room at least, so its cost
/// is paid for by the removals before it.
fn give_back<T: Shrink>(table: &mut T) {
    let (len, room) = (table.len(), table.room());
    if room > KEEP_ROOM && len * 4 < room {
        table.shrink_to((len * 2).max(KEEP_ROOM / 2));
        if room >= TRIM_ROOM {
            super::budget::trim_heap();
        }
    }
}

/// The room of a shrunk table past which the heap is trimmed too.
const TRIM_ROOM: usize = 1 << 16;

/// The tables [`give_back`] shrinks.
trait Shrink {
    fn len(&self) -> usize;
    fn room(&self) -> usize;
    fn shrink_to(&mut self, n: usize);
}

impl<K: std::hash::Hash + Eq, V, S: std::hash::BuildHasher> Shrink for HashMap<K, V, S> {
    fn len(&self) -> usize {
        HashMap::len(self)
    }
    fn room(&self) -> usize {
        self.capacity()
    }
    fn shrink_to(&mut self, n: usize) {
        HashMap::shrink_to(self, n);
    }
}

impl<K: std::hash::Hash + Eq, S: std::hash::BuildHasher> Shrink
    for std::collections::HashSet<K, S>
{
    fn len(&self) -> usize {
        std::collections::HashSet::len(self)
    }
    fn room(&self) -> usize {
        self.capacity()
    }
    fn shrink_to(&mut self, n: usize) {
        std::collections::HashSet::shrink_to(self, n);
    }
}

/// The broker's number for a call in flight, unique on the broker: what
/// the publisher knows the call by.
pub(super) type RouteId = u64;

/// A call in flight: who asked, under which id, and who answers.
#[derive(Debug)]
pub(super) struct Route {
    pub caller: ConnId,
    /// The caller's own id of the call.
    pub caller_id: u64,
    pub publisher: ConnId,
    /// The session called, for the message when its publisher goes.
    pub session: Rc<str>,
}

/// One connection's links to routes.
#[derive(Debug, Default)]
struct Links {
    /// Calls the connection made: its call id → route. The peer chooses
    /// these ids, so this map is keyed with secret keys of its own (see
    /// [`crate::id_hash`]): colliding ids would otherwise slow the
    /// one-threaded broker for everyone.
    calls: PeerIdMap<u64, RouteId>,
    /// Routes the connection owes an answer, as publisher.
    serving: IdSet<RouteId>,
}

/// The routes a closed connection was part of, already unlinked.
#[derive(Debug, Default)]
pub(super) struct Ended {
    /// Calls it owed an answer: their callers are to be told.
    pub served: Vec<Route>,
    /// Calls it made: their publishers are to be told.
    pub called: Vec<(RouteId, Route)>,
}

/// Every call in flight, with its three links.
#[derive(Debug)]
pub(super) struct Routes {
    table: IdMap<RouteId, Route>,
    /// Per connection that made or serves a call; kept until the
    /// connection ends, so that its maps keep their room between calls.
    links: IdMap<ConnId, Links>,
    next: RouteId,
}

impl Default for Routes {
    fn default() -> Self {
        Routes {
            table: IdMap::default(),
            links: IdMap::default(),
            next: 1,
        }
    }
}

impl Routes {
    /// Whether `conn` made or serves a call in flight.
    pub fn involves(&self, conn: ConnId) -> bool {
        self.links
            .get(&conn)
            .is_some_and(|l| !l.calls.is_empty() || !l.serving.is_empty())
    }

    /// Calls in flight.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// How many calls `conn` made that are in flight, and how many it
    /// owes an answer.
    pub fn counts(&self, conn: ConnId) -> (usize, usize) {
        self.links
            .get(&conn)
            .map_or((0, 0), |l| (l.calls.len(), l.serving.len()))
    }

    /// Calls in flight per session called.
    pub fn in_flight_by_session(&self) -> HashMap<&str, usize> {
        let mut counts = HashMap::new();
        for route in self.table.values() {
            *counts.entry(&*route.session).or_insert(0) += 1;
        }
        counts
    }

    /// Whether `caller` may start a call under `caller_id`: the id is not
    /// in flight already, and `caller` has fewer than `max_pending` calls
    /// in flight.
    pub fn admit(&self, caller: ConnId, caller_id: u64, max_pending: usize) -> Result<(), Error> {
        let Some(links) = self.links.get(&caller) else {
            return Ok(());
        };
        if links.calls.contains_key(&caller_id) {
            return Err(Error::new(
                ErrorCode::InvalidArgument,
                format!("call id {caller_id} is already in flight on this connection"),
            ));
        }
        if links.calls.len() >= max_pending {
            return Err(Error::new(
                ErrorCode::LimitExceeded,
                format!("{max_pending} calls are already waiting for results on this connection"),
            ));
        }
        Ok(())
    }

    /// Opens a route for a call [`Routes::admit`] let through, linked to
    /// its caller and its publisher; returns the route's id.
    pub fn open(&mut self, route: Route) -> RouteId {
        let id = self.next;
        self.next += 1;
        let replaced = self
            .links
            .entry(route.caller)
            .or_default()
            .calls
            .insert(route.caller_id, id);
        debug_assert!(replaced.is_none(), "admit checks the call id");
        self.links
            .entry(route.publisher)
            .or_default()
            .serving
            .insert(id);
        self.table.insert(id, route);
        id
    }

    /// A fresh id from the routes' counter for a one-way call, which
    /// opens no route: an answer sent under it finds none.
    pub fn unrouted_id(&mut self) -> RouteId {
        let id = self.next;
        self.next += 1;
        id
    }

    /// How many calls `conn` serves now (its load, to balance calls).
    pub fn serving_count(&self, conn: ConnId) -> usize {
        self.links.get(&conn).map_or(0, |l| l.serving.len())
    }

    /// Ends every route `conn` serves for `session` (it gave the name
    /// up), oldest first.
    pub fn end_served(&mut self, conn: ConnId, session: &str) -> Vec<(RouteId, Route)> {
        let Some(links) = self.links.get(&conn) else {
            return Vec::new();
        };
        let mut ids: Vec<RouteId> = links
            .serving
            .iter()
            .copied()
            .filter(|id| self.table.get(id).is_some_and(|r| &*r.session == session))
            .collect();
        ids.sort_unstable();
        ids.into_iter()
            .filter_map(|id| self.close(id).map(|r| (id, r)))
            .collect()
    }

    /// The route `id`, if it is in flight.
    pub fn get(&self, id: RouteId) -> Option<&Route> {
        self.table.get(&id)
    }

    /// The route of `caller`'s call `caller_id`, if it is in flight.
    pub fn of_call(&self, caller: ConnId, caller_id: u64) -> Option<(RouteId, &Route)> {
        let id = *self.links.get(&caller)?.calls.get(&caller_id)?;
        self.table.get(&id).map(|r| (id, r))
    }

    /// Ends the route `id` (answered, cancelled or aborted): removes it
    /// and both its links. None if it was not in flight.
    pub fn close(&mut self, id: RouteId) -> Option<Route> {
        let route = self.table.remove(&id)?;
        if let Some(links) = self.links.get_mut(&route.caller) {
            links.calls.remove(&route.caller_id);
            give_back(&mut links.calls);
        }
        if let Some(links) = self.links.get_mut(&route.publisher) {
            links.serving.remove(&id);
            give_back(&mut links.serving);
        }
        give_back(&mut self.table);
        Some(route)
    }

    /// Ends every route `conn` is part of, as caller or as publisher, and
    /// forgets `conn`. A call a connection made to itself is counted as
    /// served (its caller is gone too, so it only needs removing).
    pub fn end_connection(&mut self, conn: ConnId) -> Ended {
        let mut ended = Ended::default();
        let Some(links) = self.links.remove(&conn) else {
            return ended;
        };
        for id in links.serving {
            if let Some(route) = self.table.remove(&id) {
                if let Some(caller) = self.links.get_mut(&route.caller) {
                    caller.calls.remove(&route.caller_id);
                }
                ended.served.push(route);
            }
        }
        for (_, id) in links.calls {
            if let Some(route) = self.table.remove(&id) {
                if let Some(publisher) = self.links.get_mut(&route.publisher) {
                    publisher.serving.remove(&id);
                }
                ended.called.push((id, route));
            }
        }
        ended
    }

    /// Forgets every route (the broker closed).
    pub fn clear(&mut self) {
        self.table.clear();
        self.links.clear();
    }

    /// Whether no route and no link is left; for tests of teardown.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
            && self
                .links
                .values()
                .all(|l| l.calls.is_empty() && l.serving.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(caller: ConnId, caller_id: u64, publisher: ConnId) -> Route {
        Route {
            caller,
            caller_id,
            publisher,
            session: Rc::from("S"),
        }
    }

    #[test]
    fn close_removes_all_three_links() {
        let mut r = Routes::default();
        let id = r.open(route(1, 7, 2));
        assert_eq!(r.of_call(1, 7).map(|(i, _)| i), Some(id));
        assert!(r.admit(1, 7, 10).is_err());
        assert_eq!(r.close(id).map(|x| x.caller_id), Some(7));
        assert!(r.of_call(1, 7).is_none() && r.get(id).is_none());
        assert!(r.close(id).is_none());
        assert!(r.admit(1, 7, 10).is_ok());
        assert!(r.is_empty());
    }

    #[test]
    fn a_burst_of_calls_gives_its_room_back_once_ended() {
        let mut r = Routes::default();
        let ids: Vec<RouteId> = (0..100_000).map(|i| r.open(route(1, i, 2))).collect();
        assert!(r.table.capacity() >= 100_000);
        for id in ids {
            r.close(id);
        }
        assert!(r.is_empty());
        assert!(
            r.table.capacity() <= KEEP_ROOM * 2,
            "{}",
            r.table.capacity()
        );
        let links = &r.links[&1];
        assert!(links.calls.capacity() <= KEEP_ROOM * 2);
        assert!(r.links[&2].serving.capacity() <= KEEP_ROOM * 2);
    }

    #[test]
    fn admit_checks_the_id_then_the_limit() {
        let mut r = Routes::default();
        r.open(route(1, 1, 2));
        r.open(route(1, 2, 2));
        let e = r.admit(1, 2, 2).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        let e = r.admit(1, 3, 2).unwrap_err();
        assert_eq!(e.code, ErrorCode::LimitExceeded);
        assert!(r.admit(2, 1, 2).is_ok());
    }

    #[test]
    fn a_connection_that_ends_takes_its_routes_on_both_sides() {
        let mut r = Routes::default();
        let served = r.open(route(1, 10, 2));
        let called = r.open(route(2, 20, 3));
        let own = r.open(route(2, 21, 2));
        let other = r.open(route(1, 11, 3));
        let ended = r.end_connection(2);
        assert_eq!(ended.served.len(), 2, "the call to 2 and its own call");
        assert_eq!(
            ended.called.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            vec![called]
        );
        for id in [served, called, own] {
            assert!(r.get(id).is_none());
        }
        assert!(r.of_call(1, 10).is_none());
        assert_eq!(r.len(), 1);
        r.close(other);
        assert!(r.is_empty());
    }

    #[test]
    fn a_caller_choosing_ids_that_collide_still_gets_every_call_routed() {
        // Ids that share their low bits, and strides of a power of two:
        // what a peer would send against a weak hash.
        let mut r = Routes::default();
        let ids: Vec<u64> = (0..20_000u64)
            .map(|i| {
                if i % 2 == 0 {
                    i << 32
                } else {
                    (i << 12) | 0xfff
                }
            })
            .collect();
        let routes: Vec<RouteId> = ids
            .iter()
            .map(|&caller_id| {
                assert!(r.admit(1, caller_id, usize::MAX).is_ok());
                r.open(route(1, caller_id, 2))
            })
            .collect();
        assert_eq!(r.counts(1), (ids.len(), 0));
        for (&caller_id, &id) in ids.iter().zip(&routes) {
            assert_eq!(r.of_call(1, caller_id).map(|(i, _)| i), Some(id));
            assert!(r.admit(1, caller_id, usize::MAX).is_err(), "in flight");
        }
        for id in routes {
            assert!(r.close(id).is_some());
        }
        assert!(r.is_empty());
    }
}
