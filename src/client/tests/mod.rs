//! The client core driven frame by frame, without a socket or a loop: the
//! broker's frames go in as values or as bytes, and what comes out (frames
//! sent, callbacks to run) is checked by running it into a log. This
//! file holds the fixture and the connection's own frames; the others
//! hold the caller's side, the publisher's side, and the close.

mod calls;
mod close;
mod liveness;
mod reconnect;
mod serving;

use super::core::{CallMeta, Core, Status};
use super::effects::{Closer, Effect, Outbox};
use super::ops::Op;
use super::serving::{Delivery, ServeFn};
use super::{CallEvent, CallId, Inbound};
use crate::error::{Error, ErrorCode};
use crate::transport::Address;
use crate::value::Args;
use crate::wire::{encode_frame, Frame, FrameDecoder, Payload, Reply, SessionInfo};
use crate::wire::{DEFAULT_MAX_FRAME, MAGIC, PROTOCOL_VERSION};
use std::cell::RefCell;
use std::rc::{Rc, Weak};

/// What the core sent: frames as values, each with the key it may still
/// be taken back under (until [`Sent::flush`]).
#[derive(Default)]
struct Sent {
    frames: Vec<(Option<u64>, Frame)>,
    /// Refuse every send, as a full queue does.
    full: bool,
}

impl Sent {
    fn refuse(&self) -> Result<(), Error> {
        if self.full {
            return Err(Error::new(ErrorCode::LimitExceeded, "queue full"));
        }
        Ok(())
    }

    /// Takes what was sent; nothing of it can be taken back any more.
    fn flush(&mut self) -> Vec<Frame> {
        self.frames.drain(..).map(|(_, f)| f).collect()
    }
}

impl Outbox for Sent {
    fn send(&mut self, frame: &Frame) -> Result<(), Error> {
        self.refuse()?;
        self.frames.push((None, frame.clone()));
        Ok(())
    }

    fn send_retractable(&mut self, key: u64, frame: &Frame) -> Result<(), Error> {
        self.refuse()?;
        self.frames.push((Some(key), frame.clone()));
        Ok(())
    }

    fn retract(&mut self, key: u64) -> bool {
        let before = self.frames.len();
        self.frames.retain(|(k, _)| *k != Some(key));
        self.frames.len() < before
    }
}

type Log = Rc<RefCell<Vec<String>>>;

/// A core, its outbox, and a log that every callback writes to.
struct Fixture {
    core: Core,
    out: Sent,
    log: Log,
}

fn describe(event: &CallEvent) -> String {
    match event {
        CallEvent::Emit { kind, args } => format!("emit {kind} {}", describe_args(args)),
        CallEvent::Return { kind, args } => format!("return {kind} {}", describe_args(args)),
        CallEvent::Error(e) => format!("error {}", e.code),
    }
}

fn describe_args(args: &Args) -> String {
    match args.get("n") {
        Some(v) => format!("n={v:?}"),
        None => "-".into(),
    }
}

fn payload(n: i64) -> Payload {
    Payload::encode(&Args::new().with("n", n))
}

/// A payload that is no encoding of args.
fn garbage() -> Payload {
    Payload(vec![0xff, 0xff, 0xff])
}

impl Fixture {
    fn new() -> Fixture {
        let log: Log = Rc::default();
        let mut core = Core::new(Address::Unix("/nonexistent/core.sock".into()));
        let l = log.clone();
        assert!(core
            .on_connect(Box::new(move |r| l.borrow_mut().push(match r {
                Ok(info) => format!("connected {}", info.connection_id),
                Err(e) => format!("connect failed {}", e.code),
            })))
            .is_none());
        let l = log.clone();
        let _ = core.on_disconnect(Box::new(move |e| {
            l.borrow_mut().push(format!("disconnected {}", e.code))
        }));
        let l = log.clone();
        let _ = core.on_session_gone(Rc::new(RefCell::new(move |s: &str, e: &Error| {
            l.borrow_mut().push(format!("gone {s} {}", e.code))
        })));
        let l = log.clone();
        let _ = core.on_unknown(Rc::new(RefCell::new(move |k: &str, id, p: &[u8]| {
            let text = String::from_utf8_lossy(p);
            l.borrow_mut().push(format!("unknown {k} {id} {text}"))
        })));
        Fixture {
            core,
            out: Sent::default(),
            log,
        }
    }

    /// A fixture past the handshake, its log and outbox empty.
    fn ready() -> Fixture {
        let mut f = Fixture::new();
        f.frame(Frame::Welcome {
            version: PROTOCOL_VERSION,
            connection_id: 7,
        });
        f.take_log();
        f
    }

    fn take_log(&self) -> Vec<String> {
        std::mem::take(&mut *self.log.borrow_mut())
    }

    fn push(&self, line: String) {
        self.log.borrow_mut().push(line);
    }

    /// Runs an effect as the shell does, into the log.
    fn run(&self, effect: Effect) {
        match effect {
            Effect::Connected(f, outcome) => f(outcome),
            Effect::Disconnected(mut f, e) => f(&e),
            Effect::Call(f, id, event) => (f.borrow_mut())(id, event),
            Effect::Completed(completion, released) => {
                if released.is_some() {
                    self.push("release".into());
                }
                completion.run();
            }
            Effect::Serve(f, route, inbound) => {
                (f.borrow_mut())(&Delivery::new(Weak::new(), route), inbound)
            }
            Effect::Release(_) => self.push("release".into()),
            Effect::SessionGone(f, s, e) => (f.borrow_mut())(&s, &e),
            Effect::Unknown(f, k, id, p) => (f.borrow_mut())(&k, id, &p),
            Effect::Tap(f, event) => (f.borrow_mut())(&event),
            Effect::Shut(e) => self.push(format!("shut {}: {}", e.code, e.message)),
            Effect::Refused(e) => self.push(format!("refused {}: {}", e.code, e.message)),
            Effect::Connection(f, event) => (f.borrow_mut())(&event),
            Effect::RetryRepublish(session, _, _, _) => self.push(format!("retry {session}")),
            Effect::Many(effects) => {
                for effect in effects {
                    self.run(effect);
                }
            }
            Effect::Signal(fs, s) => {
                for f in fs {
                    (f.borrow_mut())(&s);
                }
            }
            Effect::Names(f, events, completion) => {
                for e in &events {
                    (f.borrow_mut())(e);
                }
                if let Some(c) = completion {
                    c.run();
                }
            }
        }
    }

    /// Hands the core one frame from the broker and runs what comes out.
    fn frame(&mut self, frame: Frame) {
        if let Some(effect) = self.core.on_frame(frame, &mut self.out) {
            self.run(effect);
        }
    }

    /// Hands the core the frames in `bytes`, in pieces of `piece` bytes.
    fn bytes(&mut self, bytes: &[u8], piece: usize) {
        let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME);
        for chunk in bytes.chunks(piece) {
            decoder.push(chunk);
            while let Some(frame) = decoder.next_frame().unwrap() {
                self.frame(frame);
            }
        }
        assert_eq!(decoder.buffered(), 0);
    }

    fn call(&mut self, session: &str, method: &str) -> CallId {
        let l = self.log.clone();
        let handler = Rc::new(RefCell::new(move |id: CallId, event: CallEvent| {
            l.borrow_mut()
                .push(format!("call {} {}", id.0, describe(&event)))
        }));
        let (id, failed) = self
            .core
            .start_call(
                CallMeta::default(),
                session,
                method,
                &Args::new().with("n", 1),
                handler,
                &mut self.out,
            )
            .unwrap();
        if let Some(effect) = failed {
            self.run(effect);
        }
        id
    }

    fn serve_fn(&self, name: &'static str) -> ServeFn {
        let l = self.log.clone();
        Rc::new(RefCell::new(move |d: &Delivery, inbound: Inbound| {
            let what = match inbound {
                Inbound::Call { method, args } => format!("call {method} {}", describe_args(&args)),
                Inbound::Recall { method, args } => {
                    format!("recall {method} {}", describe_args(&args))
                }
                Inbound::Cancel => "cancel".into(),
            };
            let (route, origin, session) = (d.id(), d.origin(), d.session());
            l.borrow_mut()
                .push(format!("{name} {route} origin {origin} {session} {what}"))
        }))
    }

    fn done<T: std::fmt::Debug>(&self, what: &'static str) -> Box<dyn FnOnce(Result<T, Error>)> {
        let l = self.log.clone();
        Box::new(move |r: Result<T, Error>| {
            let line = match r {
                Ok(v) => format!("{what} ok {v:?}"),
                Err(e) => format!("{what} {}: {}", e.code, e.message),
            };
            l.borrow_mut().push(line)
        })
    }

    /// Starts a publish of `session` served by `serve`.
    fn publish(&mut self, session: &str, serve: ServeFn) {
        let op = Op::Publish {
            session: session.into(),
            methods: vec!["m".into()],
            serve,
            withdrawn: false,
            done: self.done("publish"),
        };
        let frame = |id| Frame::Publish {
            id,
            session: session.into(),
            methods: vec!["m".into()],
        };
        assert!(self.core.start_op(frame, op, &mut self.out).is_none());
    }

    fn subscribe(&mut self, session: &str) {
        let op = Op::Subscribe {
            session: session.into(),
            done: self.done("subscribe"),
        };
        let frame = |id| Frame::Subscribe {
            id,
            session: session.into(),
        };
        assert!(self.core.start_op(frame, op, &mut self.out).is_none());
    }

    fn listing(&mut self) {
        let op = Op::Listing {
            done: self.done("listing"),
        };
        assert!(self
            .core
            .start_op(|id| Frame::Listing { id }, op, &mut self.out)
            .is_none());
    }

    /// The id of the one frame sent, which must be `kind`.
    fn sent_id(&mut self, kind: &str) -> u64 {
        let frames = self.out.flush();
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert_eq!(frames[0].kind_name(), kind);
        match &frames[0] {
            Frame::Publish { id, .. }
            | Frame::Rescind { id, .. }
            | Frame::Listing { id }
            | Frame::Subscribe { id, .. }
            | Frame::Unsubscribe { id, .. }
            | Frame::Deliver { id, .. }
            | Frame::Cancel { id }
            | Frame::Result { id, .. }
            | Frame::Custom { id, .. }
            | Frame::AddMatch { id, .. }
            | Frame::Watch { id, .. } => *id,
            other => panic!("no id: {other:?}"),
        }
    }

    fn accept(&mut self, id: u64, reply: Reply) {
        self.frame(Frame::Result {
            id,
            outcome: Ok(reply),
        });
    }

    /// Publishes `session` and has the broker accept it.
    fn published(&mut self, session: &str) -> ServeFn {
        let serve = self.serve_fn("serve");
        self.publish(session, serve.clone());
        let id = self.sent_id("publish");
        self.accept(id, Reply::Done);
        assert_eq!(self.take_log(), ["publish ok ()"]);
        serve
    }

    fn deliver(&mut self, route: u64, session: &str, method: &str) {
        self.frame(Frame::Deliver {
            id: route,
            origin: route + 1000,
            timeout_ms: 0,
            session: session.into(),
            method: method.into(),
            payload: payload(5),
        });
    }
}

fn encode(frames: &[Frame]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in frames {
        encode_frame(f, &mut out, DEFAULT_MAX_FRAME).unwrap();
    }
    out
}

#[test]
fn the_welcome_reports_the_connection_once() {
    let mut f = Fixture::new();
    assert!(matches!(f.core.status(), Status::Connecting));
    f.bytes(
        &encode(&[Frame::Welcome {
            version: PROTOCOL_VERSION,
            connection_id: 7,
        }]),
        1,
    );
    assert_eq!(f.take_log(), ["connected 7"]);
    assert_eq!(f.core.connection_id(), Some(7));
    // A handler set later gets the known outcome back, to run later.
    let l = f.log.clone();
    let late = f.core.on_connect(Box::new(move |r| {
        l.borrow_mut()
            .push(format!("late {}", r.unwrap().connection_id))
    }));
    f.run(late.expect("the outcome is known"));
    assert_eq!(f.take_log(), ["late 7"]);
}

#[test]
fn a_refusal_closes_with_the_brokers_reason() {
    let mut f = Fixture::new();
    f.frame(Frame::Refused {
        error: Error::new(ErrorCode::Refused, "bad token"),
    });
    assert_eq!(f.take_log(), ["refused refused: bad token"]);
    // The shell closes with it: the connect handler hears the reason.
    let error = Error::new(ErrorCode::Refused, "bad token");
    let settle = f.core.close(error, Closer::Failure, &mut f.out).unwrap();
    for effect in settle.effects {
        f.run(effect);
    }
    assert_eq!(f.take_log(), ["connect failed refused"]);
}

#[test]
fn unknown_messages_and_custom_results_reach_the_unknown_handler() {
    let mut f = Fixture::ready();
    f.frame(Frame::Custom {
        kind: "hello_app".into(),
        id: 5,
        payload: Payload(b"hi".to_vec()),
    });
    f.core.send_custom("ping", 77, b"x", &mut f.out).unwrap();
    let wire = f.sent_id("ping");
    assert_ne!(wire, 77, "the message travels under the client's id");
    f.frame(Frame::Result {
        id: wire,
        outcome: Err(Error::new(
            ErrorCode::Protocol,
            "Unknown message type 'ping'",
        )),
    });
    assert_eq!(
        f.take_log(),
        [
            "unknown hello_app 5 hi",
            "unknown result 77 protocol: Unknown message type 'ping'"
        ]
    );
}

#[test]
fn a_frame_a_client_never_expects_closes_with_protocol() {
    let mut f = Fixture::ready();
    f.frame(Frame::Hello {
        magic: MAGIC,
        version: PROTOCOL_VERSION,
        token: None,
    });
    assert_eq!(
        f.take_log(),
        ["shut protocol: the broker sent 'hello', which a client never expects"]
    );
}

#[test]
fn frames_split_at_every_byte_give_the_same_effects() {
    let conversation = |call: u64| {
        encode(&[
            Frame::Welcome {
                version: PROTOCOL_VERSION,
                connection_id: 3,
            },
            Frame::Result {
                id: 1,
                outcome: Ok(Reply::Done),
            },
            Frame::Emit {
                id: call,
                kind: "tick".into(),
                payload: payload(1),
            },
            Frame::Deliver {
                id: 90,
                origin: 4,
                timeout_ms: 0,
                session: "S".into(),
                method: "m".into(),
                payload: payload(2),
            },
            Frame::Result {
                id: call,
                outcome: Ok(Reply::Return {
                    kind: "return".into(),
                    payload: payload(3),
                }),
            },
            Frame::Cancel { id: 90 },
            Frame::SessionGone {
                session: "T".into(),
                reason: Error::new(ErrorCode::PublisherGone, "gone"),
            },
        ])
    };
    let mut expected = None;
    for piece in [usize::MAX, 1, 2, 3, 5, 7, 11, 64] {
        let mut f = Fixture::new();
        let serve = f.serve_fn("serve");
        f.publish("S", serve);
        let call = f.call("S", "m");
        f.bytes(&conversation(call.0), piece);
        let log = f.take_log();
        match &expected {
            None => {
                assert_eq!(log.len(), 7, "{log:?}");
                expected = Some(log);
            }
            Some(first) => assert_eq!(&log, first, "in pieces of {piece}"),
        }
    }
}
