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

fn subscribe_wait(id: u64, session: &str, wait_ms: u64) -> Frame {
    Frame::SubscribeWait {
        id,
        session: session.into(),
        wait_ms,
    }
}

/// The wait timers the core asked for and cancelled, in order.
fn wait_effects(h: &mut Harness) -> Vec<Effect> {
    h.effects()
        .into_iter()
        .filter(|e| matches!(e, Effect::ArmWait { .. } | Effect::DisarmWait { .. }))
        .collect()
}

#[test]
fn a_waiting_subscribe_is_answered_when_the_name_is_published() {
    let mut h = Harness::new();
    let s = h.client();
    h.send(s, &subscribe_wait(2, "S", 5000));
    assert_eq!(h.frames(s), []);
    let armed = wait_effects(&mut h);
    let [Effect::ArmWait { wait, after }] = armed.as_slice() else {
        panic!("expected one armed wait, got {armed:?}");
    };
    assert_eq!(*after, std::time::Duration::from_millis(5000));
    let wait = *wait;
    let p = h.publisher("S", &["foo"]);
    assert_eq!(
        h.frames(s),
        [Frame::Result {
            id: 2,
            outcome: Ok(Reply::Methods(vec!["foo".into()]))
        }]
    );
    assert_eq!(wait_effects(&mut h), [Effect::DisarmWait { wait }]);
    // Subscribed: told when the session goes, and a late timer is a no-op.
    h.core.wait_expired(wait);
    assert_eq!(h.frames(s), []);
    h.send(
        p,
        &Frame::Rescind {
            id: 3,
            session: "S".into(),
        },
    );
    assert_eq!(h.frames(p), [done(3)]);
    assert_eq!(
        h.frames(s),
        [Frame::SessionGone {
            session: "S".into(),
            reason: Error::new(ErrorCode::NoSuchSession, "Session 'S' was rescinded"),
        }]
    );
}

#[test]
fn a_waiting_subscribe_of_a_published_name_or_with_no_wait_is_answered_at_once() {
    let mut h = Harness::new();
    let _p = h.publisher("S", &["foo"]);
    let s = h.client();
    h.send(s, &subscribe_wait(2, "S", 5000));
    h.send(s, &subscribe_wait(3, "T", 0));
    assert_eq!(
        h.frames(s),
        [
            Frame::Result {
                id: 2,
                outcome: Ok(Reply::Methods(vec!["foo".into()]))
            },
            failed(3, ErrorCode::NoSuchSession, "Session 'T' doesn't exist"),
        ]
    );
    assert_eq!(wait_effects(&mut h), []);
}

#[test]
fn an_expired_wait_is_answered_no_such_session_once() {
    let mut h = Harness::new();
    let s = h.client();
    h.send(s, &subscribe_wait(2, "S", 1500));
    let armed = wait_effects(&mut h);
    let [Effect::ArmWait { wait, .. }] = armed.as_slice() else {
        panic!("expected one armed wait, got {armed:?}");
    };
    let wait = *wait;
    h.core.wait_expired(wait);
    h.core.wait_expired(wait);
    assert_eq!(
        h.frames(s),
        [failed(
            2,
            ErrorCode::NoSuchSession,
            "Session 'S' was not published within 1500 ms"
        )]
    );
    // Published later: the expired waiter is neither answered nor
    // subscribed.
    let p = h.publisher("S", &["foo"]);
    h.send(
        p,
        &Frame::Rescind {
            id: 3,
            session: "S".into(),
        },
    );
    assert_eq!(h.frames(p), [done(3)]);
    assert_eq!(h.frames(s), []);
}

#[test]
fn a_waiter_that_disconnects_leaves_nothing_behind() {
    let mut h = Harness::new();
    let s = h.client();
    h.send(s, &subscribe_wait(2, "S", 5000));
    let armed = wait_effects(&mut h);
    let [Effect::ArmWait { wait, .. }] = armed.as_slice() else {
        panic!("expected one armed wait, got {armed:?}");
    };
    let wait = *wait;
    h.core
        .input_ended(s, Error::new(ErrorCode::BrokerGone, "closed"));
    let effects = h.effects();
    assert!(
        effects.contains(&Effect::DisarmWait { wait }),
        "{effects:?}"
    );
    assert_eq!(h.core.waiters.count(s), 0);
    // Publishing the name later answers nobody and sends nothing to the
    // closed connection.
    let _p = h.publisher("S", &["foo"]);
    assert_eq!(h.frames(s), []);
    assert_eq!(wait_effects(&mut h), []);
    assert!(h.core.waiters.is_empty());
    assert!(h.core.watches.is_empty(), "the wait's watch went with it");
}

#[test]
fn waits_count_against_the_per_connection_limit() {
    let limits = Limits {
        max_waiters_per_connection: 1,
        ..Limits::default()
    };
    let mut h = Harness::with(config(limits, None));
    let s = h.client();
    h.send(s, &subscribe_wait(2, "S", 5000));
    h.send(s, &subscribe_wait(3, "T", 5000));
    assert_eq!(
        h.frames(s),
        [failed(
            3,
            ErrorCode::LimitExceeded,
            "this connection already waits for 1 names (limit 1)"
        )]
    );
    // Another connection has its own count.
    let t = h.client();
    h.send(t, &subscribe_wait(2, "T", 5000));
    assert_eq!(h.frames(t), []);
}

#[test]
fn a_wait_of_forever_is_cut_to_a_year() {
    let mut h = Harness::new();
    let s = h.client();
    h.send(s, &subscribe_wait(2, "S", u64::MAX));
    let armed = wait_effects(&mut h);
    let [Effect::ArmWait { after, .. }] = armed.as_slice() else {
        panic!("expected one armed wait, got {armed:?}");
    };
    assert_eq!(*after, std::time::Duration::from_secs(365 * 24 * 3600));
}
