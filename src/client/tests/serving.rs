//! The publisher's side: publications and deliveries.

use super::*;

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
        timeout_ms: 0,
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
