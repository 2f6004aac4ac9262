//! The broker's frames taken by the core: the welcome or refusal of the
//! handshake, results of operations and calls, deliveries, signals, name
//! changes, taps and the broker's notices, each turned into table
//! changes and the [`Effect`] the shell runs.
//!
//! Separate from the owner's orders in `core.rs`: this is the core's one
//! input from the network.

use super::{Core, Status};
use crate::client::effects::{Effect, Outbox};
use crate::client::oneway::Incoming;
use crate::client::{ConnectionInfo, Inbound};
use crate::error::{Error, ErrorCode};
use crate::wire::Frame;

impl Core {
    /// Takes one frame from the broker.
    pub fn on_frame(&mut self, frame: Frame, out: &mut impl Outbox) -> Option<Effect> {
        if self.is_closed() {
            return None;
        }
        match frame {
            Frame::Welcome { connection_id, .. } => {
                let info = ConnectionInfo {
                    connection_id,
                    address: self.address.clone(),
                };
                self.status = Status::Ready(info.clone());
                let mut effects = self.restore(&info, out);
                if let Some(f) = self.on_connect.take() {
                    effects.insert(0, Effect::Connected(f, Ok(info)));
                }
                Effect::many(effects)
            }
            Frame::Refused { error } => Some(Effect::Refused(error)),
            Frame::Result { id, outcome } => self.on_result(id, outcome, out),
            Frame::Emit { id, kind, payload } => {
                self.on_emit(id, kind.into(), payload.decode(), out)
            }
            frame @ (Frame::Deliver { .. } | Frame::DeliverFrom { .. } | Frame::Post { .. }) => {
                let (call, expects_answer) = Incoming::of(frame, &mut self.serving.last_caller)?;
                self.on_deliver(call, expects_answer, out)
            }
            Frame::Signal {
                session,
                signal,
                payload,
            } => self.on_signal(session, signal, payload),
            Frame::NameChanged {
                watch,
                name,
                change,
            } => self.on_name_changed(watch, name, change),
            Frame::Recall {
                id,
                method,
                payload,
            } => {
                let (route, serve) = self.serving.get(id)?;
                match payload.decode() {
                    Ok(args) => Some(Effect::Serve(
                        serve,
                        route,
                        Inbound::Recall {
                            method: method.into(),
                            args,
                        },
                    )),
                    Err(e) => {
                        drop(serve);
                        let failure = Frame::Result {
                            id,
                            outcome: Err(e),
                        };
                        let (_, ended) = self.answer(id, &failure, true, out);
                        ended.map(Effect::Release)
                    }
                }
            }
            Frame::Cancel { id } => {
                let (route, serve) = self.serving.end(id)?;
                Some(Effect::Serve(serve, route, Inbound::Cancel))
            }
            Frame::SessionGone { session, reason } => {
                self.subscriptions.remove(&session);
                let f = self.on_session_gone.clone()?;
                Some(Effect::SessionGone(f, session, reason))
            }
            Frame::Custom { kind, id, payload } => {
                let f = self.on_unknown.clone()?;
                Some(Effect::Unknown(f, kind, id, payload.0))
            }
            Frame::Tap(event) => {
                let f = self.on_tap.clone()?;
                Some(Effect::Tap(f, event))
            }
            Frame::Ping => {
                let _ = out.send(&Frame::Pong);
                None
            }
            // Being heard from is all a pong says; the read noted it.
            Frame::Pong => None,
            // The broker closes: everything settles now, with its reason
            // (the shell wraps it as `broker_gone`).
            Frame::GoingAway { reason } => Some(Effect::Shut(Error::new(
                ErrorCode::BrokerGone,
                format!("the broker is going away: {}", reason.message),
            ))),
            other => Some(Effect::Shut(Error::new(
                ErrorCode::Protocol,
                format!(
                    "the broker sent '{}', which a client never expects",
                    other.kind_name()
                ),
            ))),
        }
    }
}
