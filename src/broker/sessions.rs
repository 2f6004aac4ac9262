//! The session operations through the core: publish, rescind, subscribe,
//! unsubscribe, and the notice to subscribers that a session is gone.
//! Each keeps the registry and the connections' own lists in step.

use super::core::Core;
use super::registry::{check_name, Left, NameLimits};
use super::ConnId;
use crate::error::{Error, ErrorCode};
use crate::id_hash::IdSet;
use crate::wire::{Frame, NameChange, NameMode, Reply};

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
        let result = self.publish(id, session, methods, mode);
        let new = matches!(result, Ok(true));
        self.reply(id, op, result.map(|_| Reply::Done));
        if new {
            self.appeared(session);
        }
    }

    /// Publishes `session` for `id` in `mode`; true when the name is
    /// new (it appeared), false when `id` joined its publishers.
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
        let new = self
            .registry
            .publish_as(session, methods, id, mode, names)?;
        if let Some(p) = self.peers.get_mut(&id) {
            p.published.insert(session.to_string());
        }
        Ok(new)
    }

    pub(super) fn rescind(&mut self, id: ConnId, session: &str) -> Result<(), Error> {
        let left = self.registry.rescind(session, id)?;
        if let Some(p) = self.peers.get_mut(&id) {
            p.published.remove(session);
        }
        let reason = Error::new(
            ErrorCode::NoSuchSession,
            format!("Session '{session}' was rescinded"),
        );
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
                    .map(|s| s.methods.clone())
                    .unwrap_or_default();
                self.name_changed(session, NameChange::OwnerChanged { methods });
            }
            Left::Quietly => {}
        }
    }

    /// `session` was just published: its watchers hear it appeared (with
    /// its methods), and the subscribes waiting for it are answered.
    pub(super) fn appeared(&mut self, session: &str) {
        let Some(methods) = self.registry.get(session).map(|s| s.methods.clone()) else {
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
