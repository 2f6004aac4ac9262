//! The broker's core driven with frames as bytes: no socket, no loop, no
//! clock. Each test plays the clients' side with the wire encoders and
//! reads what the core wrote for each connection.

mod calls;
mod connections;
mod liveness;
mod sessions;

use super::core::{Core, Effect};
use super::peer::CloseReason;
use super::{BrokerConfig, BrokerStats, ConnId, Limits};
use crate::error::{Error, ErrorCode};
use crate::wire::{
    encode_frame, Frame, FrameDecoder, Payload, Reply, SessionInfo, DEFAULT_MAX_FRAME, MAGIC,
    PROTOCOL_VERSION,
};
use crate::Args;
use std::collections::HashMap;

/// A core and what it produced, per connection.
struct Harness {
    core: Core,
    /// What the core wrote to each connection, not yet looked at.
    written: HashMap<ConnId, FrameDecoder>,
    effects: Vec<Effect>,
    /// How many bytes one write takes; `None`: all.
    room: Option<usize>,
    /// Connections whose writes take nothing (peers that do not read).
    stalled: Vec<ConnId>,
    /// Connections whose writes fail.
    broken: Vec<ConnId>,
}

fn config(limits: Limits, token: Option<&str>) -> BrokerConfig {
    BrokerConfig {
        listen: Vec::new(),
        token: token.map(str::to_string),
        limits,
        ..BrokerConfig::default()
    }
}

/// One frame's body, as a client sends it (without the length prefix).
fn body(frame: &Frame) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(frame, &mut out, DEFAULT_MAX_FRAME).unwrap();
    out.split_off(4)
}

fn hello(token: Option<&str>) -> Frame {
    Frame::Hello {
        magic: MAGIC,
        version: PROTOCOL_VERSION,
        token: token.map(str::to_string),
    }
}

fn payload(n: i64) -> Payload {
    Payload::encode(&Args::new().with("n", n))
}

fn deliver(id: u64, session: &str, method: &str) -> Frame {
    Frame::Deliver {
        id,
        origin: id + 1000,
        timeout_ms: 0,
        session: session.into(),
        method: method.into(),
        payload: payload(id as i64),
    }
}

fn done(id: u64) -> Frame {
    Frame::Result {
        id,
        outcome: Ok(Reply::Done),
    }
}

fn failed(id: u64, code: ErrorCode, message: &str) -> Frame {
    Frame::Result {
        id,
        outcome: Err(Error::new(code, message)),
    }
}

impl Harness {
    fn new() -> Harness {
        Harness::with(config(Limits::default(), None))
    }

    fn with(config: BrokerConfig) -> Harness {
        Harness {
            core: Core::new(config),
            written: HashMap::new(),
            effects: Vec::new(),
            room: None,
            stalled: Vec::new(),
            broken: Vec::new(),
        }
    }

    /// A new connection, not yet greeted.
    fn connect(&mut self) -> ConnId {
        let id = self.core.connect().expect("under the connection limit");
        self.written.insert(id, FrameDecoder::new(usize::MAX));
        id
    }

    /// A new connection that said hello and was welcomed.
    fn client(&mut self) -> ConnId {
        let id = self.connect();
        self.send(id, &hello(None));
        assert_eq!(
            self.frames(id),
            [Frame::Welcome {
                version: PROTOCOL_VERSION,
                connection_id: id
            }]
        );
        id
    }

    fn send(&mut self, id: ConnId, frame: &Frame) {
        self.core.receive(id, &body(frame));
    }

    /// Lets the core write, as the shell does before the loop sleeps.
    fn flush(&mut self) {
        if self.core.take_flush_request() {
            let (written, room) = (&mut self.written, self.room);
            let (stalled, broken) = (&self.stalled, &self.broken);
            self.core.write_output(|id, bytes| {
                if broken.contains(&id) {
                    return Err(Error::new(ErrorCode::BrokerGone, "write failed"));
                }
                let room = if stalled.contains(&id) { Some(0) } else { room };
                let n = room.map_or(bytes.len(), |room| room.min(bytes.len()));
                written.get_mut(&id).unwrap().push(&bytes[..n]);
                Ok(n)
            });
        }
        self.core.take_effects(&mut self.effects);
    }

    /// Every frame written to `id` since the last look.
    fn frames(&mut self, id: ConnId) -> Vec<Frame> {
        self.flush();
        let decoder = self.written.get_mut(&id).unwrap();
        let mut frames = Vec::new();
        while let Some(f) = decoder.next_frame().unwrap() {
            frames.push(f);
        }
        frames
    }

    /// Takes the effects produced so far.
    fn effects(&mut self) -> Vec<Effect> {
        self.flush();
        std::mem::take(&mut self.effects)
    }

    /// Takes the closes produced so far.
    fn closes(&mut self) -> Vec<(ConnId, CloseReason)> {
        self.effects()
            .into_iter()
            .filter_map(|e| match e {
                Effect::Close { conn, reason } => Some((conn, reason)),
                _ => None,
            })
            .collect()
    }

    /// A client publishing `session` with `methods`.
    fn publisher(&mut self, session: &str, methods: &[&str]) -> ConnId {
        let id = self.client();
        let methods = methods.iter().map(|m| m.to_string()).collect();
        self.send(
            id,
            &Frame::Publish {
                id: 1,
                session: session.into(),
                methods,
            },
        );
        assert_eq!(self.frames(id), [done(1)]);
        id
    }

    /// The route id under which `publisher` got a deliver, checked
    /// against what the caller sent.
    fn delivered(&mut self, publisher: ConnId, sent: &Frame) -> u64 {
        let got = self.frames(publisher);
        let [Frame::Deliver { id: route, .. }] = got.as_slice() else {
            panic!("expected one deliver, got {got:?}");
        };
        let mut expected = sent.clone();
        if let Frame::Deliver { id, .. } = &mut expected {
            *id = *route;
        }
        assert_eq!(got[0], expected, "only the id is rewritten");
        *route
    }
}
