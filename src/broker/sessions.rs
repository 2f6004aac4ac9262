//! The session operations through the core: publish, rescind, subscribe,
//! unsubscribe, and the notice to subscribers that a session is gone.
//! Each keeps the registry and the connections' own lists in step.

use super::budget::{listing_cost, session_cost};
use super::core::Core;
use super::registry::{check_name, NameLimits};
use super::ConnId;
use crate::error::{Error, ErrorCode};
use crate::id_hash::IdSet;
use crate::wire::Frame;

/// Room kept in a listing frame besides its sessions: the result's id
/// and kinds, the list's length.
const LISTING_MARGIN: usize = 32;

impl Core {
    pub(super) fn publish(
        &mut self,
        id: ConnId,
        session: &str,
        methods: Vec<String>,
    ) -> Result<(), Error> {
        let limits = self.limits();
        let max = limits.max_sessions_per_connection;
        let names = NameLimits {
            max_name: limits.max_name,
            max_methods: limits.max_methods,
        };
        let count = self.peers.get(&id).map_or(0, |p| p.published.len());
        if count >= max && !session.is_empty() && self.registry.get(session).is_none() {
            return Err(Error::new(
                ErrorCode::LimitExceeded,
                format!("this connection already publishes {count} sessions (limit {max})"),
            ));
        }
        let cost = session_cost(session, &methods);
        let listed = listing_cost(session, &methods);
        if self.registry.get(session).is_none() {
            self.check_registry_budget(id, cost, listed)?;
        }
        self.registry.publish(session, methods, id, names)?;
        self.budget.registry += cost;
        self.budget.listing += listed;
        if let Some(p) = self.peers.get_mut(&id) {
            p.published.insert(session.to_string());
            p.registry += cost;
            p.listing += listed;
        }
        Ok(())
    }

    /// Whether `id` may add `cost` registry bytes and `listed` bytes of
    /// listing: within its own budget and the broker's, and with the
    /// listing of everything still within one frame.
    fn check_registry_budget(&self, id: ConnId, cost: usize, listed: usize) -> Result<(), Error> {
        let limits = self.limits();
        let own = self.peers.get(&id).map_or(0, |p| p.registry);
        let max_own = limits.max_registry_bytes_per_connection;
        if own + cost > max_own {
            return Err(Error::new(
                ErrorCode::LimitExceeded,
                format!(
                    "this session's names cost {cost} registry bytes; this connection holds {own} of its {max_own}"
                ),
            ));
        }
        let max_listing = limits.max_frame.saturating_sub(LISTING_MARGIN);
        let listing = self.budget.listing;
        if listing + listed > max_listing {
            return Err(Error::new(
                ErrorCode::LimitExceeded,
                format!(
                    "a listing would exceed the maximum frame of {} bytes with this session ({listed} bytes listed) besides the {listing} listed",
                    limits.max_frame
                ),
            ));
        }
        let max = limits.max_registry_bytes;
        let all = self.budget.registry;
        if all + cost > max {
            return Err(Error::new(
                ErrorCode::LimitExceeded,
                format!(
                    "this session's names cost {cost} registry bytes; the broker holds {all} of its {max}"
                ),
            ));
        }
        Ok(())
    }

    pub(super) fn rescind(&mut self, id: ConnId, session: &str) -> Result<(), Error> {
        let removed = self.registry.rescind(session, id)?;
        let cost = session_cost(session, &removed.methods);
        let listed = listing_cost(session, &removed.methods);
        self.budget.registry = self.budget.registry.saturating_sub(cost);
        self.budget.listing = self.budget.listing.saturating_sub(listed);
        if let Some(p) = self.peers.get_mut(&id) {
            p.published.remove(session);
            p.registry = p.registry.saturating_sub(cost);
            p.listing = p.listing.saturating_sub(listed);
        }
        let reason = Error::new(
            ErrorCode::NoSuchSession,
            format!("Session '{session}' was rescinded"),
        );
        self.tell_subscribers(session, removed.subscribers, reason);
        Ok(())
    }

    /// Tells every subscriber of a session that went away, and why.
    pub(super) fn tell_subscribers(
        &mut self,
        session: &str,
        subscribers: IdSet<ConnId>,
        reason: Error,
    ) {
        for sub in subscribers {
            if let Some(p) = self.peers.get_mut(&sub) {
                p.subscribed.remove(session);
            }
            let _ = self.send(
                sub,
                &Frame::SessionGone {
                    session: session.to_string(),
                    reason: reason.clone(),
                },
            );
        }
    }

    pub(super) fn subscribe(&mut self, id: ConnId, session: &str) -> Result<Vec<String>, Error> {
        check_name("session name", session, self.limits().max_name)?;
        let s = self
            .registry
            .get_mut(session)
            .ok_or_else(|| Error::no_such_session(session))?;
        s.subscribers.insert(id);
        let methods = s.methods.clone();
        if let Some(p) = self.peers.get_mut(&id) {
            p.subscribed.insert(session.to_string());
        }
        Ok(methods)
    }

    pub(super) fn unsubscribe(&mut self, id: ConnId, session: &str) -> Result<(), Error> {
        if session.is_empty() {
            return Err(Error::new(
                ErrorCode::InvalidArgument,
                "the session name is empty",
            ));
        }
        let was = self
            .peers
            .get_mut(&id)
            .is_some_and(|p| p.subscribed.remove(session));
        if !was {
            return Err(Error::new(
                ErrorCode::NotSubscribed,
                format!("Unknown session '{session}'"),
            ));
        }
        if let Some(s) = self.registry.get_mut(session) {
            s.subscribers.remove(&id);
        }
        Ok(())
    }
}
