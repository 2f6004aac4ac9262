//! Misuse refused, not suffered: empty names are `invalid_argument`
//! everywhere (the Rust API, the client, the broker for frames from the
//! network), error messages carry no Rust debug text, and a request to a
//! freed loop is refused instead of queued for nobody.

#[macro_use]
mod common;

use common::*;
use stagebus::wire::{Frame, Payload, Reply};
use stagebus::*;
use std::panic::{catch_unwind, AssertUnwindSafe};

over_both!(
    empty_session_and_method_names_are_invalid_argument,
    empty_names_in_frames_from_the_network_are_invalid_argument,
);

#[track_caller]
fn invalid_argument<T: std::fmt::Debug>(what: &str, r: Result<T, Error>) {
    match r {
        Err(e) => assert_eq!(e.code, ErrorCode::InvalidArgument, "{what}: {e}"),
        Ok(v) => panic!("{what} was accepted: {v:?}"),
    }
}

#[test]
fn an_empty_stage_name_is_invalid_argument() {
    let lp = EventLoop::new().unwrap();
    invalid_argument("Stage::try_new with an empty name", Stage::try_new(&lp, ""));
    let panicked = catch_unwind(AssertUnwindSafe(|| Stage::new(&lp, ""))).is_err();
    assert!(panicked, "Stage::new accepted an empty name");
    assert_eq!(Stage::try_new(&lp, "S").unwrap().name(), "S");
}

fn empty_session_and_method_names_are_invalid_argument(t: Transport) {
    let h = Harness::new(t);
    let c = h.client();
    publish(&c, "Echo", &["echo"], echo()).unwrap();
    invalid_argument("subscribe ''", subscribe(&c, ""));
    invalid_argument("unsubscribe ''", unsubscribe(&c, ""));
    invalid_argument("rescind ''", rescind(&c, ""));
    invalid_argument("publish ''", publish(&c, "", &["echo"], echo()));
    invalid_argument("publish a method ''", publish(&c, "Other", &[""], echo()));
    invalid_argument(
        "call '' 'echo'",
        c.call("", "echo", &Args::new(), |_, _| {}),
    );
    invalid_argument(
        "call 'Echo' ''",
        c.call("Echo", "", &Args::new(), |_, _| {}),
    );
    let stage = Stage::new(&h.lp, "Local");
    invalid_argument("a request of ''", Request::to(&stage, "").send());
    // Nothing of it reached the registry.
    assert_eq!(names(&c), vec!["Echo".to_string()]);
}

fn empty_names_in_frames_from_the_network_are_invalid_argument(t: Transport) {
    let h = Harness::new(t);
    let c = h.client();
    publish(&c, "Echo", &["echo"], echo()).unwrap();
    let mut raw = Raw::handshaken(&h.lp, &h.addr);
    let frames = [(1, "Echo", ""), (2, "", "echo")];
    for (id, session, method) in frames {
        raw.send(
            &h.lp,
            &Frame::Deliver {
                id,
                origin: id,
                timeout_ms: 0,
                session: session.into(),
                method: method.into(),
                payload: Payload::encode(&Args::new()),
            },
        );
        match raw.next(&h.lp) {
            Frame::Result {
                id: got,
                outcome: Err(e),
            } => {
                assert_eq!(got, id);
                assert_eq!(
                    e.code,
                    ErrorCode::InvalidArgument,
                    "{session:?} {method:?}: {e}"
                );
            }
            other => panic!("a deliver of {session:?} {method:?} was answered with {other:?}"),
        }
    }
    raw.send(
        &h.lp,
        &Frame::Subscribe {
            id: 3,
            session: String::new(),
        },
    );
    match raw.next(&h.lp) {
        Frame::Result {
            id: 3,
            outcome: Err(e),
        } => assert_eq!(e.code, ErrorCode::InvalidArgument, "{e}"),
        other => panic!("a subscribe of '' was answered with {other:?}"),
    }
}

/// Rust's debug notation: what a message must not show.
fn assert_plain(message: &str) {
    for debug in [
        "OtherString",
        "UnexpectedEnd",
        "UnexpectedVariant",
        "Utf8Error",
        "{ ",
        "(\"",
    ] {
        assert!(
            !message.contains(debug),
            "the message shows Rust debug text ({debug}): {message}"
        );
    }
}

#[test]
fn decoding_errors_read_as_plain_words() {
    // Args nested deeper than the decoder allows: a serde error of the
    // library's own words, once shown as OtherString("…").
    let mut deep = Value::Null;
    for _ in 0..200 {
        deep = Value::List(vec![deep]);
    }
    let payload = Payload::encode(&Args::new().with("deep", deep));
    let e = payload.decode().unwrap_err();
    assert_eq!(e.code, ErrorCode::Protocol);
    assert_plain(&e.message);

    // Cut short, an unknown kind, text that is not UTF-8.
    let mut body = Vec::new();
    stagebus::wire::encode_frame(
        &Frame::Subscribe {
            id: 1,
            session: "Echo".into(),
        },
        &mut body,
        1 << 20,
    )
    .unwrap();
    let body = &body[4..];
    let mut bad_utf8 = body.to_vec();
    *bad_utf8.last_mut().unwrap() = 0xff;
    for garbage in [&body[..body.len() - 2], &[200u8, 1, 2][..], &bad_utf8[..]] {
        let e: Error = stagebus::wire::decode_body(garbage).unwrap_err().into();
        assert_plain(&e.message);
    }
    // A reply of the wrong kind is named in words too.
    assert_eq!(Reply::Done.describe(), "a plain acknowledgement");
}

#[test]
fn a_request_to_a_freed_loop_is_invalid_state() {
    let lp = EventLoop::new().unwrap();
    let stage = Stage::new(&lp, "Gone");
    stage.on("work", |_| Ok(()));
    lp.shutdown();
    match Request::to(&stage, "work").send() {
        Err(e) => {
            assert_eq!(e.code, ErrorCode::InvalidState, "{e}");
            assert!(e.message.contains("freed"), "{e}");
        }
        Ok(r) => panic!("a request to a freed loop was sent: {r:?}"),
    }
}
