//! Calls: routed both ways, refused, cancelled, ended by a close.

use super::*;

/// A call's frames forwarded both ways, each with only its id rewritten.
#[test]
fn a_call_goes_to_its_publisher_and_its_answers_back_under_the_callers_id() {
    let mut h = Harness::new();
    let p = h.publisher("S", &["on_foo"]);
    let c = h.client();
    let call = deliver(7, "S", "foo");
    h.send(c, &call);
    let route = h.delivered(p, &call);
    assert_eq!(h.core.stats().pending_calls, 1);
    let emit = |id| Frame::Emit {
        id,
        kind: "progress".into(),
        payload: payload(1),
    };
    let recall = |id| Frame::Recall {
        id,
        method: "more".into(),
        payload: payload(2),
    };
    let result = |id| Frame::Result {
        id,
        outcome: Ok(Reply::Return {
            kind: "return".into(),
            payload: payload(3),
        }),
    };
    h.send(p, &emit(route));
    assert_eq!(h.frames(c), [emit(7)]);
    h.send(c, &recall(7));
    assert_eq!(h.frames(p), [recall(route)]);
    h.send(p, &result(route));
    assert_eq!(h.frames(c), [result(7)]);
    assert_eq!(h.core.stats().pending_calls, 0);
    // The call is over: its frames are strays now.
    h.send(p, &emit(route));
    h.send(p, &result(route));
    h.send(c, &recall(7));
    assert!(h.frames(c).is_empty() && h.frames(p).is_empty());
    assert_eq!(h.core.stats().dropped_stray, 3);
    assert!(h.core.routes.is_empty());
}

#[test]
fn only_the_publisher_of_a_call_may_answer_it() {
    let mut h = Harness::new();
    let p = h.publisher("S", &["m"]);
    let c = h.client();
    let other = h.client();
    h.send(c, &deliver(1, "S", "m"));
    let route = h.delivered(p, &deliver(1, "S", "m"));
    h.send(other, &done(route));
    h.send(c, &done(route));
    assert!(h.frames(c).is_empty());
    assert_eq!(h.core.stats().dropped_stray, 2);
    assert_eq!(h.core.stats().pending_calls, 1);
}

#[test]
fn a_deliver_that_cannot_be_routed_is_answered_with_why() {
    let mut h = Harness::with(config(
        Limits {
            max_pending_per_connection: 2,
            ..Limits::default()
        },
        None,
    ));
    let p = h.publisher("S", &["m"]);
    let c = h.client();
    h.send(c, &deliver(1, "T", "m"));
    h.send(c, &deliver(2, "S", "x"));
    h.send(c, &deliver(3, "S", ""));
    h.send(c, &deliver(4, "S", "on_m"));
    h.send(c, &deliver(4, "S", "m"));
    h.send(c, &deliver(5, "S", "m"));
    h.send(c, &deliver(6, "S", "m"));
    let got = h.frames(c);
    let codes: Vec<(u64, ErrorCode)> = got
        .iter()
        .map(|f| match f {
            Frame::Result {
                id,
                outcome: Err(e),
            } => (*id, e.code),
            other => panic!("expected a failed result, got {other:?}"),
        })
        .collect();
    assert_eq!(
        codes,
        [
            (1, ErrorCode::NoSuchSession),
            (2, ErrorCode::NoSuchMethod),
            (3, ErrorCode::InvalidArgument),
            (4, ErrorCode::InvalidArgument),
            (6, ErrorCode::LimitExceeded),
        ]
    );
    assert_eq!(h.frames(p).len(), 2, "calls 4 and 5 went through");
}

#[test]
fn a_cancel_reaches_the_publisher_and_ends_the_call() {
    let mut h = Harness::new();
    let p = h.publisher("S", &["m"]);
    let c = h.client();
    h.send(c, &deliver(9, "S", "m"));
    let route = h.delivered(p, &deliver(9, "S", "m"));
    h.send(c, &Frame::Cancel { id: 9 });
    assert_eq!(h.frames(p), [Frame::Cancel { id: route }]);
    assert_eq!(h.core.stats().pending_calls, 0);
    // Its id is free again; a late answer is a stray.
    h.send(p, &done(route));
    assert!(h.frames(c).is_empty());
    assert_eq!(h.core.stats().dropped_stray, 1);
    h.send(c, &Frame::Cancel { id: 9 });
    assert!(h.frames(p).is_empty(), "a second cancel goes nowhere");
    assert!(h.core.routes.is_empty());
}

#[test]
fn a_publisher_that_goes_fails_its_calls_and_tells_its_subscribers() {
    let mut h = Harness::new();
    let p = h.publisher("S", &["m"]);
    let c = h.client();
    let s = h.client();
    h.send(
        s,
        &Frame::Subscribe {
            id: 1,
            session: "S".into(),
        },
    );
    h.frames(s);
    h.send(c, &deliver(3, "S", "m"));
    h.delivered(p, &deliver(3, "S", "m"));
    h.effects();
    let gone = Error::new(ErrorCode::BrokerGone, "peer closed the connection");
    h.core.input_ended(p, gone.clone());
    assert_eq!(h.closes(), [(p, CloseReason::Ended(gone))]);
    assert_eq!(
        h.frames(c),
        [failed(
            3,
            ErrorCode::PublisherGone,
            "the publisher of 'S' disconnected before answering"
        )]
    );
    assert_eq!(
        h.frames(s),
        [Frame::SessionGone {
            session: "S".into(),
            reason: Error::new(
                ErrorCode::PublisherGone,
                "the publisher of 'S' disconnected"
            ),
        }]
    );
    let stats = h.core.stats();
    assert_eq!((stats.sessions, stats.pending_calls), (0, 0));
    assert!(h.core.routes.is_empty());
    // Its subscriber may subscribe to nothing now.
    h.send(
        s,
        &Frame::Unsubscribe {
            id: 2,
            session: "S".into(),
        },
    );
    assert_eq!(
        h.frames(s),
        [failed(2, ErrorCode::NotSubscribed, "Unknown session 'S'")]
    );
}

#[test]
fn a_caller_that_goes_has_its_calls_cancelled_at_their_publishers() {
    let mut h = Harness::new();
    let p = h.publisher("S", &["m"]);
    let q = h.publisher("T", &["m"]);
    let c = h.client();
    h.send(c, &deliver(1, "S", "m"));
    h.send(c, &deliver(2, "T", "m"));
    let r1 = h.delivered(p, &deliver(1, "S", "m"));
    let r2 = h.delivered(q, &deliver(2, "T", "m"));
    h.core
        .input_ended(c, Error::new(ErrorCode::BrokerGone, "read failed"));
    assert_eq!(h.frames(p), [Frame::Cancel { id: r1 }]);
    assert_eq!(h.frames(q), [Frame::Cancel { id: r2 }]);
    assert_eq!(h.core.stats().pending_calls, 0);
    assert!(h.core.routes.is_empty());
}

#[test]
fn a_call_to_its_own_session_ends_with_the_connection() {
    let mut h = Harness::new();
    let p = h.publisher("S", &["m"]);
    h.send(p, &deliver(1, "S", "m"));
    h.delivered(p, &deliver(1, "S", "m"));
    h.core
        .input_ended(p, Error::new(ErrorCode::BrokerGone, "peer closed"));
    assert_eq!(h.closes().len(), 1);
    assert_eq!(h.core.stats().pending_calls, 0);
    assert!(h.core.routes.is_empty());
}

/// A forwarded frame that would exceed the maximum frame size once its id
/// is rewritten fails the call instead of reaching the other side.
#[test]
fn a_frame_too_large_to_forward_fails_the_call() {
    let result = |id| Frame::Result {
        id,
        outcome: Ok(Reply::Return {
            kind: "return".into(),
            payload: Payload(vec![0; 200]),
        }),
    };
    // The result with route id 1 fits exactly; under the caller's id
    // u64::MAX (eight bytes longer in varint) it does not. (The error
    // that answers it instead fits.)
    let max_frame = body(&result(1)).len();
    let mut h = Harness::with(config(
        Limits {
            max_frame,
            ..Limits::default()
        },
        None,
    ));
    let p = h.publisher("S", &["m"]);
    let c = h.client();
    let call = Frame::Deliver {
        id: u64::MAX,
        origin: 0,
        timeout_ms: u32::MAX,
        session: "S".into(),
        method: "m".into(),
        payload: Payload::default(),
    };
    h.send(c, &call);
    let route = h.delivered(p, &call);
    assert_eq!(route, 1);
    h.send(p, &result(route));
    let got = h.frames(c);
    assert!(
        matches!(got.as_slice(), [Frame::Result { id: u64::MAX, outcome: Err(e) }] if e.code == ErrorCode::LimitExceeded),
        "{got:?}"
    );
    assert_eq!(h.core.stats().pending_calls, 0);
}

/// The next call of the same method on the same name skips the lookups
/// (`Registry::resolved`): whatever changes the name in between, the
/// call goes where a lookup would send it.
#[test]
fn a_repeated_call_follows_every_change_of_its_name() {
    let mut h = Harness::new();
    let c = h.client();
    let p1 = h.publisher("S", &["m", "n"]);
    reaches(&mut h, c, p1, 1, "m");
    reaches(&mut h, c, p1, 2, "m");
    // Another method of the same name, then the first again.
    reaches(&mut h, c, p1, 3, "n");
    reaches(&mut h, c, p1, 4, "m");
    // The name rescinded: the next call finds no session.
    h.send(
        p1,
        &Frame::Rescind {
            id: 9,
            session: "S".into(),
        },
    );
    h.frames(p1);
    h.send(c, &deliver(5, "S", "m"));
    let got = h.frames(c);
    assert!(
        matches!(got.as_slice(), [Frame::Result { id: 5, outcome: Err(e) }] if e.code == ErrorCode::NoSuchSession),
        "{got:?}"
    );
    // Published again by another publisher, without `m`: refused; then
    // by a third, which serves it.
    let p2 = h.publisher("S", &["n"]);
    reaches(&mut h, c, p2, 6, "n");
    h.send(c, &deliver(7, "S", "m"));
    let got = h.frames(c);
    assert!(
        matches!(got.as_slice(), [Frame::Result { id: 7, outcome: Err(e) }] if e.code == ErrorCode::NoSuchMethod),
        "{got:?}"
    );
    h.core
        .input_ended(p2, Error::new(ErrorCode::BrokerGone, "closed"));
    h.effects();
    let p3 = h.publisher("S", &["m"]);
    reaches(&mut h, c, p3, 8, "m");
    reaches(&mut h, c, p3, 9, "m");
    assert!(h.frames(p1).is_empty());
    // Every call was counted, through the lookups or without them.
    assert_eq!(h.core.stats().calls, 7);
}

/// `c`'s call `id` of `method` on "S" reaches the publisher `p`.
fn reaches(h: &mut Harness, c: ConnId, p: ConnId, id: u64, method: &str) {
    h.send(c, &deliver(id, "S", method));
    h.delivered(p, &deliver(id, "S", method));
}
