//! The client core driven frame by frame, without a socket or a loop: the
//! broker's frames go in as values or as bytes, and what comes out (frames
//! sent, callbacks to run) is checked by running it into a log.

use super::core::{Core, Status};
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
        core.on_disconnect(Box::new(move |e| {
            l.borrow_mut().push(format!("disconnected {}", e.code))
        }));
        let l = log.clone();
        core.on_session_gone(Rc::new(RefCell::new(move |s: &str, e: &Error| {
            l.borrow_mut().push(format!("gone {s} {}", e.code))
        })));
        let l = log.clone();
        core.on_unknown(Rc::new(RefCell::new(move |k: &str, id, p: &[u8]| {
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
            Effect::Shut(e) => self.push(format!("shut {}: {}", e.code, e.message)),
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
            .start_call(None, session, method, payload(1), handler, &mut self.out)
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
            | Frame::Custom { id, .. } => *id,
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
    assert_eq!(f.take_log(), ["shut refused: bad token"]);
    // The shell closes with it: the connect handler hears the reason.
    let error = Error::new(ErrorCode::Refused, "bad token");
    let settle = f.core.close(error, Closer::Failure, &mut f.out).unwrap();
    for effect in settle.effects {
        f.run(effect);
    }
    assert_eq!(f.take_log(), ["connect failed refused"]);
}

#[test]
fn operations_complete_with_their_replies() {
    let mut f = Fixture::ready();
    let serve = f.published("S");
    assert!(f.core.is_published("S"));
    drop(serve);

    f.subscribe("T");
    let id = f.sent_id("subscribe");
    f.accept(id, Reply::Methods(vec!["a".into(), "b".into()]));
    assert_eq!(f.take_log(), [r#"subscribe ok ["a", "b"]"#]);
    assert!(f.core.is_subscribed("T"));

    f.listing();
    let id = f.sent_id("listing");
    let list = vec![SessionInfo {
        name: "S".into(),
        methods: vec!["m".into()],
    }];
    f.accept(id, Reply::Sessions(list));
    assert_eq!(
        f.take_log(),
        [r#"listing ok [SessionInfo { name: "S", methods: ["m"] }]"#]
    );

    // A reply of the wrong kind, and an error, reach the callback too.
    f.listing();
    let id = f.sent_id("listing");
    f.accept(id, Reply::Done);
    f.subscribe("U");
    let id = f.sent_id("subscribe");
    f.frame(Frame::Result {
        id,
        outcome: Err(Error::no_such_session("U")),
    });
    assert_eq!(
        f.take_log(),
        [
            "listing protocol: the broker answered listing with a plain acknowledgement",
            "subscribe no_such_session: Session 'U' doesn't exist"
        ]
    );
    assert!(!f.core.is_subscribed("U"));
    // An answered operation is answered once.
    f.accept(id, Reply::Methods(vec![]));
    assert!(f.take_log().is_empty());
}

#[test]
fn a_full_queue_fails_an_operation_and_refuses_a_call() {
    let mut f = Fixture::ready();
    f.out.full = true;
    let op = Op::Listing {
        done: f.done("listing"),
    };
    let failed = f.core.start_op(|id| Frame::Listing { id }, op, &mut f.out);
    failed.expect("a failure to run later").run();
    assert_eq!(f.take_log(), ["listing limit_exceeded: queue full"]);
    let handler = Rc::new(RefCell::new(|_: CallId, _: CallEvent| {}));
    let refused = f
        .core
        .start_call(None, "S", "m", payload(1), handler, &mut f.out);
    assert_eq!(refused.err().unwrap().code, ErrorCode::LimitExceeded);
}

#[test]
fn a_call_gets_its_emits_then_one_final_event() {
    let mut f = Fixture::ready();
    let call = f.call("S", "m");
    let frames = f.out.flush();
    // One id: the caller's, the deliver's, the origin's.
    assert_eq!(
        frames,
        [Frame::Deliver {
            id: call.0,
            origin: call.0,
            session: "S".into(),
            method: "m".into(),
            payload: payload(1),
        }]
    );
    for n in 1..=2 {
        f.frame(Frame::Emit {
            id: call.0,
            kind: "tick".into(),
            payload: payload(n),
        });
    }
    f.frame(Frame::Result {
        id: call.0,
        outcome: Ok(Reply::Return {
            kind: "done".into(),
            payload: payload(3),
        }),
    });
    // Whatever arrives after the final event is dropped.
    f.frame(Frame::Emit {
        id: call.0,
        kind: "late".into(),
        payload: payload(4),
    });
    f.frame(Frame::Result {
        id: call.0,
        outcome: Err(Error::new(ErrorCode::PublisherGone, "gone")),
    });
    let c = call.0;
    assert_eq!(
        f.take_log(),
        [
            format!("call {c} emit tick n=Int(1)"),
            format!("call {c} emit tick n=Int(2)"),
            format!("call {c} return done n=Int(3)"),
        ]
    );
    let recalled = f.core.recall(call, "answer", &Args::new(), &mut f.out);
    assert_eq!(recalled.unwrap_err().code, ErrorCode::InvalidState);
    assert!(f.out.flush().is_empty());
}

#[test]
fn a_call_failed_by_the_broker_ends_with_its_error() {
    let mut f = Fixture::ready();
    let call = f.call("S", "nope");
    f.frame(Frame::Result {
        id: call.0,
        outcome: Err(Error::new(ErrorCode::NoSuchMethod, "no")),
    });
    // A result answering a call with an operation's reply is a protocol
    // error for that call.
    let other = f.call("S", "m");
    f.accept(other.0, Reply::Done);
    assert_eq!(
        f.take_log(),
        [
            format!("call {} error no_such_method", call.0),
            format!("call {} error protocol", other.0),
        ]
    );
}

#[test]
fn an_emit_with_a_malformed_payload_ends_the_call_and_cancels_it() {
    let mut f = Fixture::ready();
    let call = f.call("S", "m");
    f.out.flush();
    f.frame(Frame::Emit {
        id: call.0,
        kind: "tick".into(),
        payload: garbage(),
    });
    assert_eq!(f.take_log(), [format!("call {} error protocol", call.0)]);
    assert_eq!(f.out.flush(), [Frame::Cancel { id: call.0 }]);
    assert!(f.core.cancel(call, &mut f.out).is_none());
}

#[test]
fn a_recall_goes_out_under_the_calls_id() {
    let mut f = Fixture::ready();
    let call = f.call("S", "m");
    f.out.flush();
    f.core
        .recall(call, "answer", &Args::new().with("n", 2), &mut f.out)
        .unwrap();
    assert_eq!(
        f.out.flush(),
        [Frame::Recall {
            id: call.0,
            method: "answer".into(),
            payload: payload(2),
        }]
    );
}

#[test]
fn a_call_cancelled_before_the_flush_is_taken_back() {
    let mut f = Fixture::ready();
    let early = f.call("S", "m");
    assert!(f.core.cancel(early, &mut f.out).is_some());
    assert!(f.out.flush().is_empty(), "the deliver never leaves");
    // Once its deliver left, a cancel goes after it.
    let late = f.call("S", "m");
    assert_eq!(f.out.flush().len(), 1);
    assert!(f.core.cancel(late, &mut f.out).is_some());
    assert_eq!(f.out.flush(), [Frame::Cancel { id: late.0 }]);
    // Twice is harmless, and nothing arrives for a cancelled call.
    assert!(f.core.cancel(late, &mut f.out).is_none());
    assert!(f.out.flush().is_empty());
    f.frame(Frame::Result {
        id: late.0,
        outcome: Err(Error::new(ErrorCode::PublisherGone, "gone")),
    });
    assert!(f.take_log().is_empty());
}

#[test]
fn deliveries_are_served_until_answered_or_cancelled() {
    let mut f = Fixture::ready();
    let _serve = f.published("S");
    f.deliver(40, "S", "m");
    f.frame(Frame::Recall {
        id: 40,
        method: "answer".into(),
        payload: payload(6),
    });
    assert_eq!(
        f.take_log(),
        [
            "serve 40 origin 1040 S call m n=Int(5)",
            "serve 40 origin 1040 S recall answer n=Int(6)",
        ]
    );
    assert!(f.core.is_serving(40));
    let emit = Frame::Emit {
        id: 40,
        kind: "tick".into(),
        payload: payload(7),
    };
    let (sent, ended) = f.core.answer(40, &emit, false, &mut f.out);
    assert!(sent.is_ok() && ended.is_none());
    let answer = Frame::Result {
        id: 40,
        outcome: Err(Error::new(ErrorCode::Io, "x")),
    };
    let (sent, ended) = f.core.answer(40, &answer, true, &mut f.out);
    assert!(sent.is_ok() && ended.is_some(), "the final answer ends it");
    assert_eq!(f.out.flush(), [emit, answer.clone()]);
    assert!(!f.core.is_serving(40));
    let (again, _) = f.core.answer(40, &answer, true, &mut f.out);
    assert_eq!(again.unwrap_err().code, ErrorCode::InvalidState);
    // Nothing more reaches an answered delivery.
    f.frame(Frame::Cancel { id: 40 });
    assert!(f.take_log().is_empty());

    f.deliver(41, "S", "m");
    f.frame(Frame::Cancel { id: 41 });
    f.frame(Frame::Cancel { id: 41 });
    assert_eq!(
        f.take_log(),
        [
            "serve 41 origin 1041 S call m n=Int(5)",
            "serve 41 origin 1041 S cancel"
        ]
    );
    let (late, _) = f.core.answer(41, &answer, true, &mut f.out);
    assert_eq!(late.unwrap_err().code, ErrorCode::InvalidState);
    assert!(f.out.flush().is_empty());
}

#[test]
fn a_malformed_deliver_or_recall_is_answered_with_an_error() {
    let mut f = Fixture::ready();
    let _serve = f.published("S");
    f.frame(Frame::Deliver {
        id: 50,
        origin: 1,
        session: "S".into(),
        method: "m".into(),
        payload: garbage(),
    });
    assert!(f.take_log().is_empty());
    let frames = f.out.flush();
    assert!(
        matches!(&frames[..], [Frame::Result { id: 50, outcome: Err(e) }] if e.code == ErrorCode::Protocol)
    );
    assert!(!f.core.is_serving(50));

    f.deliver(51, "S", "m");
    f.frame(Frame::Recall {
        id: 51,
        method: "answer".into(),
        payload: garbage(),
    });
    assert_eq!(
        f.take_log(),
        ["serve 51 origin 1051 S call m n=Int(5)", "release"]
    );
    let frames = f.out.flush();
    assert!(
        matches!(&frames[..], [Frame::Result { id: 51, outcome: Err(e) }] if e.code == ErrorCode::Protocol)
    );
    assert!(!f.core.is_serving(51));
}

#[test]
fn a_deliver_for_a_session_not_published_here_is_refused() {
    let mut f = Fixture::ready();
    f.deliver(60, "Nobody", "m");
    assert!(f.take_log().is_empty());
    assert_eq!(
        f.out.flush(),
        [Frame::Result {
            id: 60,
            outcome: Err(Error::new(ErrorCode::NoSuchSession, "Unknown recipient")),
        }]
    );
}

#[test]
fn a_rescind_lets_go_of_the_handler_and_deliveries_keep_theirs() {
    let mut f = Fixture::ready();
    let serve = f.published("S");
    f.deliver(70, "S", "m");
    f.take_log();
    let op = Op::Rescind {
        session: "S".into(),
        done: f.done("rescind"),
    };
    let frame = |id| Frame::Rescind {
        id,
        session: "S".into(),
    };
    assert!(f.core.start_op(frame, op, &mut f.out).is_none());
    let id = f.sent_id("rescind");
    f.accept(id, Reply::Done);
    assert_eq!(f.take_log(), ["release", "rescind ok ()"]);
    assert!(!f.core.is_published("S"));
    // The delivery still holds the handler and is still served.
    assert_eq!(Rc::strong_count(&serve), 2);
    f.frame(Frame::Cancel { id: 70 });
    assert_eq!(f.take_log(), ["serve 70 origin 1070 S cancel"]);
}

#[test]
fn a_withdrawn_publish_is_rescinded_once_accepted() {
    let mut f = Fixture::ready();
    let serve = f.serve_fn("serve");
    f.publish("S", serve.clone());
    let id = f.sent_id("publish");
    // The publisher goes away before the broker answers.
    f.core.withdraw("S", &serve, &mut f.out);
    assert!(f.out.flush().is_empty());
    f.accept(id, Reply::Done);
    assert_eq!(f.take_log(), ["publish ok ()"]);
    let rescind = f.sent_id("rescind");
    f.accept(rescind, Reply::Done);
    assert_eq!(f.take_log(), ["release"]);
    assert!(!f.core.is_published("S"));
    // Withdrawing what is published under a new handler changes nothing.
    let _other = f.published("S");
    f.core.withdraw("S", &serve, &mut f.out);
    assert!(f.out.flush().is_empty());
    assert!(f.core.is_published("S"));
}

#[test]
fn session_gone_ends_the_subscription() {
    let mut f = Fixture::ready();
    f.subscribe("T");
    let id = f.sent_id("subscribe");
    f.accept(id, Reply::Methods(vec![]));
    f.take_log();
    f.frame(Frame::SessionGone {
        session: "T".into(),
        reason: Error::new(ErrorCode::PublisherGone, "gone"),
    });
    assert_eq!(f.take_log(), ["gone T publisher_gone"]);
    assert!(!f.core.is_subscribed("T"));
}

#[test]
fn unsubscribing_ends_the_subscription_before_the_broker_answers() {
    let mut f = Fixture::ready();
    f.subscribe("T");
    let id = f.sent_id("subscribe");
    f.accept(id, Reply::Methods(vec![]));
    assert!(f.core.unsubscribe_now("T"));
    assert!(!f.core.is_subscribed("T"));
    assert!(!f.core.unsubscribe_now("T"));
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

/// A core with one of everything pending: an operation, two calls, a
/// delivery, a subscription and a publication.
fn busy() -> (Fixture, CallId, CallId) {
    let mut f = Fixture::ready();
    let _serve = f.published("S");
    f.subscribe("T");
    let id = f.sent_id("subscribe");
    f.accept(id, Reply::Methods(vec![]));
    f.listing();
    f.out.flush();
    let sent = f.call("S", "m");
    f.out.flush();
    let unsent = f.call("S", "m");
    f.deliver(80, "S", "m");
    f.take_log();
    (f, sent, unsent)
}

#[test]
fn a_failure_settles_everything_once() {
    let (mut f, sent, unsent) = busy();
    let error = Error::new(ErrorCode::BrokerGone, "peer closed the connection");
    let settle = f.core.close(error.clone(), Closer::Failure, &mut f.out);
    let settle = settle.unwrap();
    assert_eq!(settle.publications.len(), 1);
    // The connection is dropped: what it held does not matter.
    f.out.flush();
    assert!(f.core.close(error, Closer::Failure, &mut f.out).is_none());
    for effect in settle.effects {
        f.run(effect);
    }
    let gone = "broker_gone: connection to the broker is closed: peer closed the connection";
    assert_eq!(
        f.take_log(),
        [
            "disconnected broker_gone".to_string(),
            format!("listing {gone}"),
            format!("call {} error broker_gone", sent.0),
            format!("call {} error broker_gone", unsent.0),
            "serve 80 origin 1080 S cancel".to_string(),
        ]
    );
    assert!(!f.core.is_subscribed("T") && !f.core.is_published("S"));
    // Nothing more arrives, and whatever starts now fails.
    f.frame(Frame::Result {
        id: sent.0,
        outcome: Err(Error::new(ErrorCode::Io, "x")),
    });
    f.frame(Frame::Cancel { id: 80 });
    assert!(f.take_log().is_empty());
    let late = f.call("S", "m");
    f.listing_after_close();
    assert_eq!(
        f.take_log(),
        [
            format!("call {} error broker_gone", late.0),
            format!("listing {gone}"),
        ]
    );
    assert!(f.out.flush().is_empty());
}

impl Fixture {
    fn listing_after_close(&mut self) {
        let op = Op::Listing {
            done: self.done("listing"),
        };
        let failed = self
            .core
            .start_op(|id| Frame::Listing { id }, op, &mut self.out);
        failed.expect("fails on a closed client").run();
    }
}

#[test]
fn the_owners_close_takes_back_unsent_calls_and_tells_no_disconnect_handler() {
    let (mut f, sent, unsent) = busy();
    let error = Error::new(ErrorCode::BrokerGone, "closed by this client");
    let settle = f.core.close(error, Closer::Owner, &mut f.out).unwrap();
    assert!(
        f.out.flush().is_empty(),
        "the unsent deliver was taken back"
    );
    for effect in settle.effects {
        f.run(effect);
    }
    let log = f.take_log();
    assert_eq!(log.len(), 4, "{log:?}");
    assert!(log[0].starts_with("listing broker_gone"));
    assert_eq!(log[1], format!("call {} error broker_gone", sent.0));
    assert_eq!(log[2], format!("call {} error broker_gone", unsent.0));
    assert_eq!(log[3], "serve 80 origin 1080 S cancel");
}

#[test]
fn a_close_before_the_handshake_reports_the_connect_failure() {
    let mut f = Fixture::new();
    let error = Error::new(ErrorCode::Io, "cannot connect");
    let settle = f.core.close(error, Closer::Failure, &mut f.out).unwrap();
    for effect in settle.effects {
        f.run(effect);
    }
    assert_eq!(f.take_log(), ["connect failed io"]);
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
