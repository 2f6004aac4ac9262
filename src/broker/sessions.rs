//! The session operations through the core: publish, rescind, subscribe,
//! unsubscribe, and the notice to subscribers that a session is gone.
//! Each keeps the registry and the connections' own lists in step.

use super::budget::{listing_cost, session_cost};
use super::core::Core;
use super::policy::Action;
use super::registry::{check_name, Left, NameLimits};
use super::ConnId;
use crate::error::{Error, ErrorCode};
use crate::id_hash::IdSet;
use crate::wire::{Frame, NameChange, NameMode, Reply};

/// Room kept in a listing frame besides its sessions: the result's id
/// and kinds, the list's length.
const LISTING_MARGIN: usize = 32;

impl Core {
    /// A publish from `id` under its id `op`, answered; a new name then
    /// appears to its watchers (after the publisher's answer: its
    /// waiters may deliver at once, and it learns of its session first).
    pub(super) fn publish_frame(
        &mut self,
        id: ConnId,
        op: u64,
        session: &str,
        methods: Vec<String>,
        mode: NameMode,
    ) {
        let result = self
            .admit("a publish")
            .and_then(|()| self.publish(id, session, methods, mode));
        let new = matches!(result, Ok(true));
        self.reply(id, op, result.map(|_| Reply::Done));
        if new {
            self.appeared(session);
        }
    }

    /// Publishes `session` for `id` in `mode`; true when the name is
    /// new (it appeared), false when `id` joined its publishers. Each
    /// publisher's names count against the registry budgets.
    pub(super) fn publish(
        &mut self,
        id: ConnId,
        session: &str,
        methods: Vec<String>,
        mode: NameMode,
    ) -> Result<bool, Error> {
        let limits = self.limits();
        let max = limits.max_sessions_per_connection;
        let names = NameLimits {
            max_name: limits.max_name,
            max_methods: limits.max_methods,
        };
        if !session.is_empty() {
            self.check_access(id, Action::Own, session, "")?;
        }
        let count = self.peers.get(&id).map_or(0, |p| p.published.len());
        // Over the limit only if this publish would add a publication
        // (the registry refuses the others with their own error).
        let adds = self.registry.get(session).map_or(true, |s| {
            s.mode != NameMode::Exclusive
                && s.mode == mode
                && !s.publishers.iter().any(|p| p.conn == id)
        });
        if count >= max && !session.is_empty() && adds {
            return Err(Error::new(
                ErrorCode::LimitExceeded,
                format!("this connection already publishes {count} sessions (limit {max})"),
            ));
        }
        let cost = session_cost(session, &methods);
        let listed = listing_cost(session, &methods);
        if adds {
            self.check_registry_budget(id, cost, listed)?;
        }
        let new = self
            .registry
            .publish_as(session, methods, id, mode, names)?;
        self.budget.registry += cost;
        self.budget.listing += listed;
        if let Some(p) = self.peers.get_mut(&id) {
            p.published.insert(session.to_string());
            p.registry += cost;
            p.listing += listed;
        }
        Ok(new)
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

    /// The registry bytes and listing bytes `conn`'s publication of
    /// `session` costs (what leaving gives back).
    pub(super) fn publication_cost(&self, session: &str, conn: ConnId) -> (usize, usize) {
        let methods = self
            .registry
            .get(session)
            .map_or(&[][..], |s| s.methods_of(conn));
        (
            session_cost(session, methods),
            listing_cost(session, methods),
        )
    }

    pub(super) fn rescind(&mut self, id: ConnId, session: &str) -> Result<(), Error> {
        let reason = Error::new(
            ErrorCode::NoSuchSession,
            format!("Session '{session}' was rescinded"),
        );
        self.rescind_for(id, session, reason)
    }

    /// [`Core::rescind`], with the `reason` subscribers and watchers are
    /// told (a federated name whose publisher on another broker
    /// disconnected: `publisher_gone`).
    pub(super) fn rescind_for(
        &mut self,
        id: ConnId,
        session: &str,
        reason: Error,
    ) -> Result<(), Error> {
        let (cost, listed) = self.publication_cost(session, id);
        let left = self.registry.rescind(session, id)?;
        self.budget.registry = self.budget.registry.saturating_sub(cost);
        self.budget.listing = self.budget.listing.saturating_sub(listed);
        if let Some(p) = self.peers.get_mut(&id) {
            p.published.remove(session);
            p.registry = p.registry.saturating_sub(cost);
            p.listing = p.listing.saturating_sub(listed);
        }
        self.publisher_left(session, id, left, reason);
        Ok(())
    }

    /// What follows a publisher's leaving `session` (for `reason`): the
    /// session's end, told to subscribers and watchers; or, when the
    /// owner of a `queue` name left, the hand-over: its calls of that
    /// name in flight end with `publisher_gone` (a disconnect ended them
    /// already), the next in line serves from now on, and watchers hear
    /// of the new owner. A standby or one of several balanced publishers
    /// leaves without a word (under `balance`, calls it still serves go
    /// on until it answers or disconnects).
    pub(super) fn publisher_left(
        &mut self,
        session: &str,
        conn: ConnId,
        left: Left,
        reason: Error,
    ) {
        match left {
            Left::Gone(s) => {
                self.tell_subscribers(session, s.subscribers, reason.clone());
                self.name_changed(session, NameChange::Gone { reason });
            }
            Left::OwnerChanged => {
                for (route, r) in self.routes.end_served(conn, session) {
                    let _ = self.send(conn, &Frame::Cancel { id: route });
                    let e = Error::new(
                        ErrorCode::PublisherGone,
                        format!("the publisher of '{session}' gave the name up before answering"),
                    );
                    self.reply(r.caller, r.caller_id, Err(e));
                }
                let methods = self
                    .registry
                    .get(session)
                    .map(|s| s.methods().to_vec())
                    .unwrap_or_default();
                self.name_changed(session, NameChange::OwnerChanged { methods });
            }
            Left::Quietly => {}
        }
    }

    /// `session` was just published: its watchers hear it appeared (with
    /// its methods), and the subscribes waiting for it are answered.
    pub(super) fn appeared(&mut self, session: &str) {
        let Some(methods) = self.registry.get(session).map(|s| s.methods().to_vec()) else {
            return;
        };
        self.name_changed(session, NameChange::Appeared { methods });
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
        self.check_see(id, session)?;
        let s = self
            .registry
            .get_mut(session)
            .ok_or_else(|| Error::no_such_session(session))?;
        s.subscribers.insert(id);
        let methods = s.methods().to_vec();
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
