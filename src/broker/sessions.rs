//! The session operations through the core: publish, rescind, subscribe,
//! unsubscribe, and the notice to subscribers that a session is gone.
//! Each keeps the registry and the connections' own lists in step.

use super::core::Core;
use super::policy::Action;
use super::registry::{check_name, NameLimits};
use super::ConnId;
use crate::error::{Error, ErrorCode};
use crate::id_hash::IdSet;
use crate::wire::Frame;

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
        if !session.is_empty() {
            self.check_access(id, Action::Own, session, "")?;
        }
        let count = self.peers.get(&id).map_or(0, |p| p.published.len());
        if count >= max && !session.is_empty() && self.registry.get(session).is_none() {
            return Err(Error::new(
                ErrorCode::LimitExceeded,
                format!("this connection already publishes {count} sessions (limit {max})"),
            ));
        }
        self.registry.publish(session, methods, id, names)?;
        if let Some(p) = self.peers.get_mut(&id) {
            p.published.insert(session.to_string());
        }
        Ok(())
    }

    pub(super) fn rescind(&mut self, id: ConnId, session: &str) -> Result<(), Error> {
        let removed = self.registry.rescind(session, id)?;
        if let Some(p) = self.peers.get_mut(&id) {
            p.published.remove(session);
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
