//! The caller's side: operations, subscriptions, calls.

use super::*;

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
    let refused = f.core.start_call(
        CallMeta::default(),
        "S",
        "m",
        &Args::new().with("n", 1),
        handler,
        &mut f.out,
    );
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
            timeout_ms: 0,
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
