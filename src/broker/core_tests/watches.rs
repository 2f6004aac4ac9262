//! Name watches through the core: the current state first, then every
//! appearance and end (with its reason), in order; one-way calls and
//! signals as the core routes them.

use super::*;
use crate::wire::NameChange;

fn watch(id: u64, pattern: &str) -> Frame {
    Frame::Watch {
        id,
        pattern: pattern.into(),
    }
}

fn changed(watch: u64, name: &str, change: NameChange) -> Frame {
    Frame::NameChanged {
        watch,
        name: name.into(),
        change,
    }
}

fn appeared(methods: &[&str]) -> NameChange {
    NameChange::Appeared {
        methods: methods.iter().map(|m| m.to_string()).collect(),
    }
}

#[test]
fn a_watch_gets_the_current_state_then_every_change() {
    let mut h = Harness::new();
    let p = h.publisher("A", &["foo"]);
    let w = h.client();
    h.send(w, &watch(7, "*"));
    assert_eq!(
        h.frames(w),
        [Frame::Result {
            id: 7,
            outcome: Ok(Reply::Sessions(vec![SessionInfo {
                name: "A".into(),
                methods: vec!["foo".into()],
            }])),
        }]
    );
    h.send(
        p,
        &Frame::Publish {
            id: 2,
            session: "B".into(),
            methods: vec!["bar".into()],
        },
    );
    h.send(
        p,
        &Frame::Rescind {
            id: 3,
            session: "A".into(),
        },
    );
    h.core
        .input_ended(p, Error::new(ErrorCode::BrokerGone, "x"));
    let frames = h.frames(w);
    assert_eq!(frames[0], changed(7, "B", appeared(&["bar"])));
    let [_, Frame::NameChanged {
        name: a,
        change: NameChange::Gone { reason: ra },
        ..
    }, Frame::NameChanged {
        name: b,
        change: NameChange::Gone { reason: rb },
        ..
    }] = frames.as_slice()
    else {
        panic!("{frames:?}");
    };
    assert_eq!((a.as_str(), ra.code), ("A", ErrorCode::NoSuchSession));
    assert_eq!((b.as_str(), rb.code), ("B", ErrorCode::PublisherGone));
}

#[test]
fn exact_and_prefix_watches_see_only_their_names_and_unwatch_ends_them() {
    let mut h = Harness::new();
    let w = h.client();
    h.send(w, &watch(1, "Svc"));
    h.send(w, &watch(2, "Sv*"));
    assert_eq!(h.frames(w).len(), 2);
    let _p = h.publisher("Svc", &["m"]);
    let _q = h.publisher("Other", &["m"]);
    assert_eq!(
        h.frames(w),
        [
            changed(1, "Svc", appeared(&["m"])),
            changed(2, "Svc", appeared(&["m"]))
        ]
    );
    h.send(w, &Frame::Unwatch { id: 3, watch: 1 });
    h.send(w, &Frame::Unwatch { id: 4, watch: 1 });
    let frames = h.frames(w);
    assert_eq!(frames[0], done(3));
    assert_eq!(
        frames[1],
        failed(
            4,
            ErrorCode::InvalidArgument,
            "this connection has no watch 1"
        )
    );
    assert_eq!(h.core.stats().name_watches, 1);
    h.core
        .input_ended(w, Error::new(ErrorCode::BrokerGone, "x"));
    assert!(h.core.watches.is_empty());
}

#[test]
fn watches_count_against_their_limit_and_bad_patterns_are_refused() {
    let limits = Limits {
        max_watches_per_connection: 1,
        ..Limits::default()
    };
    let mut h = Harness::with(config(limits, None));
    let w = h.client();
    h.send(w, &watch(1, "a*b"));
    h.send(w, &watch(2, "*"));
    h.send(w, &watch(3, "x"));
    let frames = h.frames(w);
    assert!(
        matches!(&frames[0], Frame::Result { id: 1, outcome: Err(e) } if e.code == ErrorCode::InvalidArgument)
    );
    assert!(matches!(
        &frames[1],
        Frame::Result {
            id: 2,
            outcome: Ok(_)
        }
    ));
    assert!(
        matches!(&frames[2], Frame::Result { id: 3, outcome: Err(e) } if e.code == ErrorCode::LimitExceeded)
    );
}

#[test]
fn a_one_way_call_is_forwarded_without_a_route_and_its_answer_is_stray() {
    let mut h = Harness::new();
    let p = h.publisher("S", &["foo"]);
    let c = h.client();
    let post = Frame::Post {
        id: 5,
        origin: 9,
        timeout_ms: 0,
        session: "S".into(),
        method: "foo".into(),
        payload: payload(1),
    };
    h.send(c, &post);
    let frames = h.frames(p);
    let [Frame::Post { id, origin: 9, .. }] = frames.as_slice() else {
        panic!("{frames:?}");
    };
    assert!(h.core.routes.is_empty());
    h.send(p, &done(*id));
    assert_eq!(h.frames(c), []);
    let stats = h.core.stats();
    assert_eq!((stats.oneway_calls, stats.dropped_stray), (1, 1));
    h.send(
        c,
        &Frame::Post {
            id: 6,
            origin: 6,
            timeout_ms: 0,
            session: "Nope".into(),
            method: "foo".into(),
            payload: payload(1),
        },
    );
    assert_eq!(h.frames(c), []);
    assert_eq!(h.core.stats().dropped_oneway, 1);
}

#[test]
fn a_signal_reaches_each_matching_connection_once_as_the_same_bytes() {
    let mut h = Harness::new();
    let p = h.publisher("S", &["foo"]);
    let l = h.client();
    let m = h.client();
    for (id, s, g) in [(1, "S", "x"), (2, "*", "*")] {
        h.send(
            l,
            &Frame::AddMatch {
                id,
                session: s.into(),
                signal: g.into(),
            },
        );
    }
    h.send(
        m,
        &Frame::AddMatch {
            id: 1,
            session: "S".into(),
            signal: "y".into(),
        },
    );
    assert_eq!(h.frames(l), [done(1), done(2)]);
    assert_eq!(h.frames(m), [done(1)]);
    let signal = Frame::Signal {
        session: "S".into(),
        signal: "x".into(),
        payload: payload(3),
    };
    h.send(p, &signal);
    assert_eq!(
        h.frames(l),
        std::slice::from_ref(&signal),
        "once, though two matches hold"
    );
    assert_eq!(h.frames(m), []);
    // Only the publisher of S may emit for it.
    h.send(m, &signal);
    assert_eq!(h.frames(l), []);
    assert_eq!(h.core.stats().dropped_signals, 1);
}
