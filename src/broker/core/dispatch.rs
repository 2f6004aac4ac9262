//! Frame dispatch: each frame of a handshaken connection handed to its
//! operation, and the hello that must come before any of them.
//!
//! Separate from the rest of the core because it is the one table of
//! what a client may send; the operations themselves live in `calls.rs`,
//! `sessions.rs` and their siblings.

use super::{Core, Effect};
use crate::broker::handshake::{check_hello, expected_hello, Tokens};
use crate::broker::peer::CloseReason;
use crate::broker::policy::Action;
use crate::broker::ConnId;
use crate::error::{Error, ErrorCode};
use crate::wire::{encode_caller, Frame, NameMode, Reply, PROTOCOL_VERSION};
use std::rc::Rc;
use std::time::Duration;

impl Core {
    pub(super) fn handle(&mut self, id: ConnId, frame: Frame) {
        let handshaken = self.peers.get(&id).is_some_and(|p| p.handshaken);
        if !handshaken {
            return self.handshake(id, frame);
        }
        match frame {
            Frame::Publish {
                id: op,
                session,
                methods,
            } => self.publish_frame(id, op, &session, methods, NameMode::Exclusive),
            Frame::PublishAs {
                id: op,
                session,
                methods,
                mode,
            } => self.publish_frame(id, op, &session, methods, mode),
            Frame::Rescind { id: op, session } => {
                let result = self.rescind(id, &session);
                self.reply(id, op, result.map(|()| Reply::Done));
            }
            Frame::Listing { id: op } => {
                // Only the sessions the policy lets this peer see.
                let result = self.admit("a listing").map(|()| {
                    let mut list = self.registry.listing();
                    list.retain(|s| self.may_see(id, &s.name));
                    Reply::Sessions(list)
                });
                self.reply(id, op, result);
            }
            Frame::Stats { id: op } => match self.check_access(id, Action::Stats, "", "") {
                Ok(()) => self.effects.push(Effect::Report { conn: id, op }),
                Err(e) => self.reply(id, op, Err(e)),
            },
            Frame::Monitor {
                id: op,
                session,
                payload,
            } => {
                let name = session.as_deref().unwrap_or("*");
                let result = self.check_access(id, Action::Monitor, name, "");
                if result.is_ok() {
                    self.start_monitor(id, session, payload);
                }
                self.reply(id, op, result.map(|()| Reply::Done));
            }
            Frame::Subscribe { id: op, session } => {
                let result = self
                    .admit("a subscribe")
                    .and_then(|()| self.subscribe(id, &session));
                self.reply(id, op, result.map(Reply::Methods));
            }
            Frame::SubscribeWait {
                id: op,
                session,
                wait_ms,
            } => match self.admit("a subscribe") {
                Ok(()) => self.subscribe_waiting(id, op, &session, Duration::from_millis(wait_ms)),
                Err(e) => self.reply(id, op, Err(e)),
            },
            Frame::Unsubscribe { id: op, session } => {
                let result = self.unsubscribe(id, &session);
                self.reply(id, op, result.map(|()| Reply::Done));
            }
            Frame::AddMatch {
                id: op,
                session,
                signal,
            } => {
                // A stand-in's matches are its broker's clients', each
                // checked there against that broker's policy.
                let result = if self.is_link(id) {
                    Ok(())
                } else {
                    self.check_access(id, Action::Listen, &session, &signal)
                }
                .and_then(|()| self.add_match(id, &session, &signal));
                self.reply(id, op, result.map(|()| Reply::Done));
            }
            Frame::RemoveMatch {
                id: op,
                session,
                signal,
            } => {
                let result = self.remove_match(id, &session, &signal);
                self.reply(id, op, result.map(|()| Reply::Done));
            }
            Frame::Watch { id: op, pattern } => {
                match self.check_access(id, Action::Watch, &pattern, "") {
                    Ok(()) => self.watch(id, op, &pattern),
                    Err(e) => self.reply(id, op, Err(e)),
                }
            }
            Frame::Unwatch { id: op, watch } => {
                let result = self.unwatch(id, watch);
                self.reply(id, op, result.map(|()| Reply::Done));
            }
            Frame::Deliver { .. }
            | Frame::Post { .. }
            | Frame::Signal { .. }
            | Frame::Emit { .. }
            | Frame::Recall { .. }
            | Frame::Result { .. } => {
                unreachable!("Inbound::parse hands these kinds over as routed frames")
            }
            Frame::Cancel { id: call } => self.cancel(id, call),
            Frame::Ping => {
                let _ = self.send(id, &Frame::Pong);
            }
            // Being heard from is all a pong says; the read noted it.
            Frame::Pong => {}
            Frame::Custom { kind, id: op, .. } => {
                let e = Error::new(
                    ErrorCode::Protocol,
                    format!("Unknown message type '{kind}'"),
                );
                self.reply(id, op, Err(e));
            }
            other @ (Frame::Hello { .. }
            | Frame::Greeting { .. }
            | Frame::DeliverFrom { .. }
            | Frame::PostFrom { .. }
            | Frame::Welcome { .. }
            | Frame::Refused { .. }
            | Frame::SessionGone { .. }
            | Frame::NameChanged { .. }
            | Frame::GoingAway { .. }
            | Frame::Tap(_)) => {
                let e = Error::new(
                    ErrorCode::Protocol,
                    format!("a client may not send '{}' here", other.kind_name()),
                );
                self.refuse(id, CloseReason::Protocol(e));
            }
        }
    }

    pub(super) fn handshake(&mut self, id: ConnId, frame: Frame) {
        let tokens = Tokens {
            shared: self.config.token.as_deref(),
            named: &self.config.named_tokens,
        };
        let hello = match check_hello(&frame, tokens) {
            Ok(hello) => hello,
            Err(reason) => return self.refuse(id, reason),
        };
        let max_name = self.config.limits.max_name;
        if hello
            .client_name
            .as_ref()
            .is_some_and(|n| n.len() > max_name)
        {
            let e = Error::new(
                ErrorCode::LimitExceeded,
                format!("the client name is longer than {max_name} bytes"),
            );
            return self.refuse(id, CloseReason::HelloRefused(e));
        }
        if let Some(p) = self.peers.get_mut(&id) {
            // A TLS certificate's subject, given before, comes first.
            p.caller.identity = p.caller.identity.take().or(hello.identity);
            p.caller.client_name = hello.client_name;
            p.caller_bytes = Rc::from(encode_caller(&p.caller));
            p.greeted = hello.greeted;
            p.handshaken = true;
            self.unauthenticated = self.unauthenticated.saturating_sub(1);
            self.effects.push(Effect::DisarmDeadline { conn: id });
            let interval = self.config.limits.ping_interval;
            if !interval.is_zero() {
                self.effects.push(Effect::ArmTick {
                    conn: id,
                    after: interval,
                });
            }
        }
        let _ = self.send(
            id,
            &Frame::Welcome {
                version: PROTOCOL_VERSION,
                connection_id: id,
            },
        );
    }

    /// Whether `id` said hello; if not, it is refused for sending `kind`.
    pub(in crate::broker) fn check_handshaken(&mut self, id: ConnId, kind: &str) -> bool {
        if self.peers.get(&id).is_some_and(|p| p.handshaken) {
            return true;
        }
        self.refuse(id, CloseReason::Protocol(expected_hello(kind)));
        false
    }
}
