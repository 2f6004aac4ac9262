//! Monitors: connections that asked to see every frame the broker
//! receives from the others (`stagebus monitor`, like `busctl monitor`).
//!
//! With no monitor attached the tap costs one check of an empty list
//! per frame. With monitors, each frame received is described once
//! ([`TapEvent`]) and queued to every monitor whose filter it passes; a
//! monitor that does not read is cut off by its output limits, so it can
//! never slow the broker or the others.

use super::core::Core;
use super::ConnId;
use crate::wire::{Frame, Inbound, Payload, RoutedKind, TapEvent};

/// One monitoring connection and what it asked for.
#[derive(Debug)]
pub(super) struct Monitor {
    pub conn: ConnId,
    pub session: Option<String>,
    pub payload: bool,
}

impl Core {
    /// `conn` asks to monitor (again: the new filter replaces the old).
    pub(super) fn start_monitor(&mut self, conn: ConnId, session: Option<String>, payload: bool) {
        self.monitors.retain(|m| m.conn != conn);
        self.monitors.push(Monitor {
            conn,
            session,
            payload,
        });
    }

    /// Forgets `conn` as a monitor (it closed).
    pub(super) fn end_monitor(&mut self, conn: ConnId) {
        if !self.monitors.is_empty() {
            self.monitors.retain(|m| m.conn != conn);
        }
    }

    /// Whether any monitor is attached (the shell then keeps the clock).
    pub fn monitoring(&self) -> bool {
        !self.monitors.is_empty()
    }

    /// The wall clock for taps, set by the shell before it hands over
    /// input while [`Core::monitoring`].
    pub fn set_clock(&mut self, unix_ms: u64) {
        self.clock_ms = unix_ms;
    }

    /// Tells every interested monitor of a frame `from` sent, before it
    /// is handled (so a deliver's publisher and a result's caller are
    /// still known).
    pub(super) fn tap(&mut self, from: ConnId, inbound: &Inbound<'_>, size: usize) {
        if self.monitors.iter().any(|m| m.conn == from) {
            return;
        }
        let Some(mut event) = self.describe(from, inbound, size) else {
            return;
        };
        let payload = event.payload.take();
        let monitors: Vec<(ConnId, bool)> = self
            .monitors
            .iter()
            .filter(|m| m.session.as_deref().map_or(true, |s| s == event.session))
            .map(|m| (m.conn, m.payload))
            .collect();
        for (conn, with_payload) in monitors {
            let mut e = event.clone();
            if with_payload {
                e.payload = payload.clone();
            }
            // A monitor over its limits is closed by `send`.
            let _ = self.send(conn, &Frame::Tap(Box::new(e)));
        }
    }

    fn describe(&self, from: ConnId, inbound: &Inbound<'_>, size: usize) -> Option<TapEvent> {
        let mut event = TapEvent {
            time_ms: self.clock_ms,
            from,
            to: 0,
            kind: String::new(),
            session: String::new(),
            name: String::new(),
            id: 0,
            size: u32::try_from(size).unwrap_or(u32::MAX),
            error: None,
            payload: None,
        };
        match inbound {
            Inbound::Routed(frame) => {
                let (name, payload, error) = frame.details();
                event.kind = frame.kind_name().to_string();
                event.id = frame.id;
                event.name = name.to_string();
                event.error = error;
                event.payload = payload.map(|p| Payload(p.to_vec()));
                match frame.kind {
                    RoutedKind::Deliver { session, .. } | RoutedKind::Post { session, .. } => {
                        event.session = session.to_string();
                        event.to = self.registry.get(session).map_or(0, |s| s.owner());
                    }
                    RoutedKind::Emit | RoutedKind::Result { .. } => {
                        if let Some(r) = self.routes.get(frame.id) {
                            event.session = r.session.to_string();
                            event.to = r.caller;
                        }
                    }
                    RoutedKind::Recall => {
                        if let Some((_, r)) = self.routes.of_call(from, frame.id) {
                            event.session = r.session.to_string();
                            event.to = r.publisher;
                        }
                    }
                }
            }
            Inbound::Signal {
                session, signal, ..
            } => {
                event.kind = "signal".to_string();
                event.session = session.to_string();
                event.name = signal.to_string();
            }
            Inbound::Other(frame) => {
                let (id, session) = match frame {
                    // Liveness and the handshake are no traffic.
                    Frame::Ping | Frame::Pong | Frame::Hello { .. } => return None,
                    Frame::Cancel { id } => {
                        if let Some((_, r)) = self.routes.of_call(from, *id) {
                            event.session = r.session.to_string();
                            event.to = r.publisher;
                        }
                        (*id, None)
                    }
                    Frame::Publish { id, session, .. }
                    | Frame::Rescind { id, session }
                    | Frame::Subscribe { id, session }
                    | Frame::Unsubscribe { id, session }
                    | Frame::SubscribeWait { id, session, .. } => (*id, Some(session.as_str())),
                    Frame::Listing { id } | Frame::Stats { id } | Frame::Monitor { id, .. } => {
                        (*id, None)
                    }
                    Frame::Custom { id, .. } => (*id, None),
                    _ => (0, None),
                };
                event.kind = frame.kind_name().to_string();
                event.id = id;
                if let Some(session) = session {
                    event.session = session.to_string();
                }
            }
        }
        Some(event)
    }
}
