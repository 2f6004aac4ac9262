//! One-way calls: a call that expects no answer (D-Bus's
//! NO_REPLY_EXPECTED, POE's `post`).
//!
//! The caller sends a [`Frame::Post`] and keeps nothing: no call id
//! waits, no handler is held. The broker forwards it under an id of its
//! own and keeps no route. The publisher serves it as any delivery,
//! except that [`Delivery::expects_answer`](super::Delivery::expects_answer)
//! is false and whatever it answers (emits, the return, an error) is
//! dropped here, before it is sent, and counted
//! ([`Client::dropped_answers`]). What cannot be delivered (no such
//! session or method) is dropped at the broker and counted in its
//! [`BrokerStats::dropped_oneway`](crate::BrokerStats::dropped_oneway):
//! nobody is told, since nobody waits.

use super::core::Core;
use super::effects::{Effect, Outbox};
use super::serving::Route;
use super::{timeout_ms, Client, Inbound};
use crate::error::{Error, ErrorCode};
use crate::value::Args;
use crate::wire::{CallerInfo, Frame, Payload};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// A call arriving for a session published here (a deliver or a post).
pub(super) struct Incoming {
    pub id: u64,
    pub origin: u64,
    pub timeout_ms: u32,
    /// The published name.
    pub session: Rc<str>,
    pub method: super::Name,
    /// The args, decoded, or why they could not be.
    pub args: Result<Args, Error>,
    /// Who calls, when the broker stamped it.
    pub caller: Option<Rc<CallerInfo>>,
}

impl Incoming {
    /// The call a deliver, a stamped deliver or a one-way post carries,
    /// and whether its caller expects an answer (not for a post); `None`
    /// for any other frame. A stamp equal to `last` (the previous call's)
    /// shares it; a new one becomes `last`.
    pub fn of(frame: Frame, last: &mut Option<Rc<CallerInfo>>) -> Option<(Incoming, bool)> {
        let expects_answer = !matches!(frame, Frame::Post { .. });
        let call = match frame {
            Frame::Deliver {
                id,
                origin,
                timeout_ms,
                session,
                method,
                payload,
            }
            | Frame::Post {
                id,
                origin,
                timeout_ms,
                session,
                method,
                payload,
            } => Incoming {
                id,
                origin,
                timeout_ms,
                session: Rc::from(session),
                method: method.into(),
                args: payload.decode(),
                caller: None,
            },
            Frame::DeliverFrom {
                id,
                origin,
                timeout_ms,
                session,
                method,
                payload,
                caller,
            } => Incoming {
                id,
                origin,
                timeout_ms,
                session: Rc::from(session),
                method: method.into(),
                args: payload.decode(),
                caller: Some(match last {
                    Some(known) if **known == caller => known.clone(),
                    _ => last.insert(Rc::new(caller)).clone(),
                }),
            },
            _ => return None,
        };
        Some((call, expects_answer))
    }
}

impl Core {
    /// A call for a session published here: served, or (unknown session,
    /// bad args) failed at once, silently for a one-way call.
    pub(super) fn on_deliver(
        &mut self,
        call: Incoming,
        expects_answer: bool,
        out: &mut impl Outbox,
    ) -> Option<Effect> {
        let Incoming {
            id,
            origin,
            timeout_ms,
            session,
            method,
            args,
            caller,
        } = call;
        let failure = match (self.serving.publication(&session), args) {
            (Some((session, serve)), Ok(args)) => {
                // Taken on receipt, from this host's clock: the caller's
                // clock may read differently.
                let deadline = (timeout_ms != 0)
                    .then(|| Instant::now() + Duration::from_millis(u64::from(timeout_ms)));
                let route = Route {
                    id,
                    origin,
                    session,
                    deadline,
                    expects_answer,
                    caller,
                };
                self.serving.open(route.clone(), serve.clone());
                return Some(Effect::Serve(serve, route, Inbound::Call { method, args }));
            }
            (None, _) => Error::new(ErrorCode::NoSuchSession, "Unknown recipient"),
            (_, Err(e)) => e,
        };
        if expects_answer {
            let _ = out.send(&Frame::Result {
                id,
                outcome: Err(failure),
            });
        } else {
            self.dropped_answers += 1;
        }
        None
    }

    /// Sends a one-way call.
    pub(super) fn post(
        &mut self,
        origin: Option<u64>,
        timeout_ms: u32,
        session: &str,
        method: &str,
        payload: Payload,
        out: &mut impl Outbox,
    ) -> Result<(), Error> {
        let id = self.next_id();
        let frame = Frame::Post {
            id,
            origin: origin.unwrap_or(id),
            timeout_ms,
            session: session.to_string(),
            method: method.to_string(),
            payload,
        };
        self.send(out, &frame)
    }
}

impl Client {
    /// Sends a one-way call of `method` on `session`: the publisher runs
    /// it, and nothing comes back, not even an error (see the module
    /// docs of one-way calls: the broker keeps no route; a call it
    /// cannot deliver is dropped and counted there). Fails at once for
    /// an empty name, a closed client (`broker_gone`) or a full output
    /// queue (`limit_exceeded`). Calls and posts from one client to one
    /// session arrive in the order they were sent.
    pub fn post(&self, session: &str, method: &str, args: &Args) -> Result<(), Error> {
        self.post_within(None, None, session, method, args)
    }

    /// [`Client::post`] naming the request `origin` (read back as
    /// [`Delivery::origin`](super::Delivery::origin)) and telling the
    /// publisher it has `timeout` left (see [`Client::call_within`]).
    pub fn post_within(
        &self,
        origin: Option<u64>,
        timeout: Option<Duration>,
        session: &str,
        method: &str,
        args: &Args,
    ) -> Result<(), Error> {
        if session.is_empty() || method.is_empty() {
            return Err(Error::new(
                ErrorCode::InvalidArgument,
                "a call needs a session and a method",
            ));
        }
        let payload = Payload::encode(args);
        let ms = timeout_ms(timeout);
        self.shared
            .with(|core, io| core.post(origin, ms, session, method, payload, io))
    }

    /// How many answers of one-way deliveries served here were dropped
    /// (emits, returns and errors of callees of [`Client::post`] calls,
    /// and one-way calls this client could not serve).
    pub fn dropped_answers(&self) -> u64 {
        self.shared.core().dropped_answers
    }
}
