//! What a reconnect restores, in the core: once a reconnecting client
//! is welcomed again, [`Core::restore`] replays what it holds at the
//! broker ([`Standing`]: its publications, subscriptions, signal matches
//! and name watches), one operation each, then sends the frames held
//! meanwhile; and the answers to those operations (a republish that
//! finds its name still held retries, a refusal is reported).

use super::core::{Core, Status};
use super::effects::{Effect, Outbox};
use super::ops::Op;
use super::reconnect::{ConnectionEvent, Held};
use super::serving::ServeFn;
use super::{CallEvent, CallId, ConnectionInfo};
use crate::error::{Error, ErrorCode};
use crate::wire::Frame;
use std::time::{Duration, Instant};

/// What a client holds at the broker, and a reconnect replays: each is
/// registered again by one operation, whose answer comes back through
/// [`Core::on_result`] like any other.
enum Standing {
    /// A session published here: published again (retried while the
    /// broker still holds the name).
    Publication(String, ServeFn),
    /// A subscription: renewed, waiting for its session.
    Subscription(String),
    /// A confirmed signal match: its id and patterns.
    Match(u64, String, String),
    /// A confirmed name watch: its id and pattern.
    Watch(u64, String),
}

impl Core {
    /// Welcomed on a connection of a reconnecting client: publishes the
    /// sessions again, re-subscribes, and sends what was held. Returns
    /// the effects to run (the connection event, failures of held frames
    /// the connection refused).
    pub(super) fn restore(&mut self, info: &ConnectionInfo, out: &mut impl Outbox) -> Vec<Effect> {
        let mut effects = Vec::new();
        let Some(r) = self.reconnect.as_mut() else {
            return effects;
        };
        r.attempts = 0;
        let again = std::mem::replace(&mut r.welcomed, true);
        let held = std::mem::take(&mut r.held);
        let (wait, window) = (r.policy.resubscribe_wait, r.policy.republish_window);
        if again {
            effects.extend(self.connection_event(ConnectionEvent::Reconnected(info.clone())));
            let until = Instant::now() + window;
            let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
            for standing in self.standing() {
                self.replay(standing, until, wait_ms, out);
            }
        }
        for Held { key, frame } in held {
            let sent = match &frame {
                Frame::Deliver { .. } => out.send_retractable(key, &frame),
                _ => out.send(&frame),
            };
            if let Err(e) = sent {
                effects.extend(self.fail_held(key, e));
            }
        }
        effects
    }

    /// Everything the client holds at the broker, in the order a
    /// reconnect replays it: publications, subscriptions, matches,
    /// watches (each sorted, so replays are deterministic).
    fn standing(&self) -> Vec<Standing> {
        let mut subscriptions: Vec<String> = self.subscriptions.iter().cloned().collect();
        subscriptions.sort();
        let publications = self.serving.publications().into_iter();
        publications
            .map(|(session, serve)| Standing::Publication(session, serve))
            .chain(subscriptions.into_iter().map(Standing::Subscription))
            .chain(
                self.listeners
                    .confirmed()
                    .into_iter()
                    .map(|(id, session, signal)| Standing::Match(id, session, signal)),
            )
            .chain(
                self.watchers
                    .confirmed()
                    .into_iter()
                    .map(|(id, pattern)| Standing::Watch(id, pattern)),
            )
            .collect()
    }

    /// Registers `standing` again on the new connection: a republish
    /// retried until `until`, a re-subscribe waiting `wait_ms`, a match
    /// or a watch added again.
    fn replay(&mut self, standing: Standing, until: Instant, wait_ms: u64, out: &mut impl Outbox) {
        match standing {
            Standing::Publication(session, serve) => self.republish(session, serve, until, out),
            Standing::Subscription(session) => {
                let make = |id| Frame::SubscribeWait {
                    id,
                    session: session.clone(),
                    wait_ms,
                };
                let _ = self.start_op(
                    make,
                    Op::Resubscribe {
                        session: session.clone(),
                    },
                    out,
                );
            }
            Standing::Match(listener, session, signal) => {
                let make = |id| Frame::AddMatch {
                    id,
                    session,
                    signal,
                };
                let _ = self.start_op(make, Op::Rematch { listener }, out);
            }
            Standing::Watch(watch, pattern) => {
                let mut wire = None;
                let make = |id| {
                    wire = Some(id);
                    Frame::Watch { id, pattern }
                };
                if self.start_op(make, Op::Rewatch { watch }, out).is_none() {
                    if let Some(wire) = wire {
                        self.watchers.rewire(watch, wire);
                    }
                }
            }
        }
    }

    /// A match or a watch could not be restored: the connection event
    /// saying so, if anyone listens.
    pub(super) fn restore_failed(&self, what: String, error: Error) -> Option<Effect> {
        self.connection_event(ConnectionEvent::RestoreFailed { what, error })
    }

    /// A held frame the new connection refused: its call or operation
    /// fails with the refusal.
    fn fail_held(&mut self, key: u64, e: Error) -> Option<Effect> {
        if let Some(call) = self.calls.remove(key) {
            return Some(Effect::Call(call, CallId(key), CallEvent::Error(e)));
        }
        let op = self.ops.remove(key)?;
        op.fail(e).map(|c| Effect::Completed(c, None))
    }

    /// Sends a publish of `session` again, retried while the broker
    /// still holds the name until `until`.
    pub(super) fn republish(
        &mut self,
        session: String,
        serve: ServeFn,
        until: Instant,
        out: &mut impl Outbox,
    ) {
        let methods = self.serving.methods(&session);
        let s = session.clone();
        let make = |id| Frame::Publish {
            id,
            session: s,
            methods,
        };
        let op = Op::Republish {
            session,
            serve,
            until,
            withdrawn: false,
        };
        let _ = self.start_op(make, op, out);
    }

    /// The broker's answer to a republish: kept, retried (the name is
    /// still held and the window is open: the shell times the retry), or
    /// reported as failed.
    pub(super) fn republished(
        &mut self,
        session: String,
        serve: ServeFn,
        until: Instant,
        withdrawn: bool,
        outcome: Result<(), Error>,
        out: &mut impl Outbox,
    ) -> Option<Effect> {
        if !self.serving.is_published_with(&session, &serve) {
            // Withdrawn meanwhile: what the broker accepted goes too.
            if outcome.is_ok() {
                self.rescind_quietly(&session, out);
            }
            return None;
        }
        match outcome {
            Ok(()) if withdrawn => {
                self.rescind_quietly(&session, out);
                None
            }
            Ok(()) => None,
            Err(e) if e.code == ErrorCode::AlreadyExists && Instant::now() < until => {
                let delay = self
                    .reconnect
                    .as_ref()
                    .map_or(Duration::from_millis(100), |r| {
                        r.policy.initial_delay.max(Duration::from_millis(10))
                    });
                Some(Effect::RetryRepublish(session, serve, until, delay))
            }
            Err(error) => {
                let released = self.serving.unpublish(&session);
                let event = ConnectionEvent::RepublishFailed { session, error };
                let event = self.connection_event(event);
                Some(Effect::Many(
                    released
                        .map(Effect::Release)
                        .into_iter()
                        .chain(event)
                        .collect(),
                ))
            }
        }
    }

    /// The retry of a republish is due (the shell's timer ran).
    pub(super) fn retry_republish(
        &mut self,
        session: String,
        serve: ServeFn,
        until: Instant,
        out: &mut impl Outbox,
    ) {
        if matches!(self.status, Status::Ready(_))
            && self.serving.is_published_with(&session, &serve)
        {
            self.republish(session, serve, until, out);
        }
    }

    fn rescind_quietly(&mut self, session: &str, out: &mut impl Outbox) {
        let op = Op::Rescind {
            session: session.to_string(),
            done: Box::new(|_| {}),
        };
        let make = |id| Frame::Rescind {
            id,
            session: session.to_string(),
        };
        let _ = self.start_op(make, op, out);
    }

    /// A re-subscribe was answered: a failure ends the subscription as a
    /// session gone.
    pub(super) fn resubscribed(
        &mut self,
        session: String,
        outcome: Result<(), Error>,
    ) -> Option<Effect> {
        let error = outcome.err()?;
        if !self.subscriptions.remove(&session) {
            return None;
        }
        let f = self.on_session_gone.clone()?;
        Some(Effect::SessionGone(f, session, error))
    }
}
