//! Session operations and frames of no operation.

use super::*;

#[test]
fn publish_subscribe_listing_unsubscribe_and_rescind() {
    let mut h = Harness::new();
    let p = h.publisher("S", &["foo", "on_bar"]);
    let s = h.client();
    h.send(
        s,
        &Frame::Subscribe {
            id: 2,
            session: "S".into(),
        },
    );
    h.send(s, &Frame::Listing { id: 3 });
    h.send(
        s,
        &Frame::Unsubscribe {
            id: 4,
            session: "S".into(),
        },
    );
    h.send(
        s,
        &Frame::Unsubscribe {
            id: 5,
            session: "S".into(),
        },
    );
    let methods = vec!["foo".to_string(), "on_bar".to_string()];
    assert_eq!(
        h.frames(s),
        [
            Frame::Result {
                id: 2,
                outcome: Ok(Reply::Methods(methods.clone()))
            },
            Frame::Result {
                id: 3,
                outcome: Ok(Reply::Sessions(vec![SessionInfo {
                    name: "S".into(),
                    methods
                }]))
            },
            done(4),
            failed(5, ErrorCode::NotSubscribed, "Unknown session 'S'"),
        ]
    );
    // Subscribed again; only the publisher may rescind.
    h.send(
        s,
        &Frame::Subscribe {
            id: 6,
            session: "S".into(),
        },
    );
    h.send(
        s,
        &Frame::Rescind {
            id: 7,
            session: "S".into(),
        },
    );
    let got = h.frames(s);
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[1],
        failed(
            7,
            ErrorCode::NotPublisher,
            "Session 'S' was published by another connection"
        )
    );
    h.send(
        p,
        &Frame::Rescind {
            id: 8,
            session: "S".into(),
        },
    );
    assert_eq!(h.frames(p), [done(8)]);
    assert_eq!(
        h.frames(s),
        [Frame::SessionGone {
            session: "S".into(),
            reason: Error::new(ErrorCode::NoSuchSession, "Session 'S' was rescinded"),
        }]
    );
    assert_eq!(h.core.stats().sessions, 0);
}

#[test]
fn a_custom_frame_is_answered_unknown() {
    let mut h = Harness::new();
    let c = h.client();
    h.send(
        c,
        &Frame::Custom {
            kind: "ping".into(),
            id: 4,
            payload: Payload::default(),
        },
    );
    assert_eq!(
        h.frames(c),
        [failed(
            4,
            ErrorCode::Protocol,
            "Unknown message type 'ping'"
        )]
    );
    assert!(h.core.reads(c), "and the connection stays");
}
