//! The bounds a hostile or careless client meets: connections not yet
//! authenticated, registry bytes, the memory and input budgets, and the
//! output high-water mark. Each is an error to whoever went over it, and
//! counted.

use super::*;

fn publish(id: u64, session: &str, methods: &[&str]) -> Frame {
    Frame::Publish {
        id,
        session: session.into(),
        methods: methods.iter().map(|m| m.to_string()).collect(),
    }
}

fn code(f: &Frame) -> Option<ErrorCode> {
    match f {
        Frame::Result { outcome, .. } => outcome.as_ref().err().map(|e| e.code),
        other => panic!("expected a result, got {other:?}"),
    }
}

#[test]
fn connections_not_yet_authenticated_are_capped() {
    let mut h = Harness::with(config(
        Limits {
            max_unauthenticated: 2,
            ..Limits::default()
        },
        None,
    ));
    let a = h.connect();
    let _b = h.connect();
    assert_eq!(h.core.connect(), None, "a third waits for no hello");
    assert_eq!(h.core.stats().refused_connections, 1);
    // One says hello: room for another.
    h.send(a, &hello(None));
    let c = h.connect();
    assert_eq!(h.core.connect(), None);
    // One closes without a hello: room again.
    h.core.close(c, CloseReason::HandshakeTimeout);
    assert!(h.core.connect().is_some());
    assert_eq!(h.core.stats().refused_connections, 2);
}

#[test]
fn registry_bytes_are_budgeted_per_connection_and_given_back() {
    let name = "m".repeat(100);
    let cost = super::super::budget::session_cost("S", std::slice::from_ref(&name));
    let mut h = Harness::with(config(
        Limits {
            max_registry_bytes_per_connection: 2 * cost,
            ..Limits::default()
        },
        None,
    ));
    let p = h.client();
    h.send(p, &publish(1, "S", &[&name]));
    h.send(p, &publish(2, "T", &[&name]));
    h.send(p, &publish(3, "U", &[&name]));
    let codes: Vec<_> = h.frames(p).iter().map(code).collect();
    assert_eq!(codes, [None, None, Some(ErrorCode::LimitExceeded)]);
    assert_eq!(h.core.stats().limits_exceeded, 1);
    // Another connection has its own budget.
    let q = h.client();
    h.send(q, &publish(1, "V", &[&name]));
    assert_eq!(h.frames(q), [done(1)]);
    // A rescind gives the bytes back.
    h.send(
        p,
        &Frame::Rescind {
            id: 4,
            session: "S".into(),
        },
    );
    h.send(p, &publish(5, "U", &[&name]));
    let codes: Vec<_> = h.frames(p).iter().map(code).collect();
    assert_eq!(codes, [None, None]);
    // A connection that goes gives back everything it published.
    let before = h.core.memory_used();
    h.core.close(p, CloseReason::BrokerClosed);
    assert!(h.core.memory_used() < before - 2 * cost);
}

#[test]
fn the_registry_stays_under_the_frame_limit_so_a_listing_always_fits() {
    let max_frame = 64 * 1024;
    let mut h = Harness::with(config(
        Limits {
            max_frame,
            max_registry_bytes: usize::MAX,
            ..Limits::default()
        },
        None,
    ));
    let methods: Vec<String> = (0..64).map(|i| format!("{i:0>200}")).collect();
    let methods: Vec<&str> = methods.iter().map(String::as_str).collect();
    let mut refused = 0;
    for i in 0..20 {
        let p = h.client();
        h.send(p, &publish(1, &format!("S{i}"), &methods));
        if h.frames(p).iter().map(code).next() == Some(Some(ErrorCode::LimitExceeded)) {
            refused += 1;
        }
    }
    assert!(refused > 0, "the global budget refused some");
    let c = h.client();
    h.send(c, &Frame::Listing { id: 9 });
    let got = h.frames(c);
    let [Frame::Result {
        id: 9,
        outcome: Ok(Reply::Sessions(list)),
    }] = got.as_slice()
    else {
        panic!("expected a listing, got {got:?}");
    };
    assert_eq!(list.len(), 20 - refused);
}

#[test]
fn at_the_memory_budget_new_work_is_refused_and_work_in_flight_goes_on() {
    let mut h = Harness::with(config(
        Limits {
            max_memory: 1 << 20,
            ..Limits::default()
        },
        None,
    ));
    let p = h.publisher("S", &["m"]);
    let c = h.client();
    let call = deliver(1, "S", "m");
    h.send(c, &call);
    let route = h.delivered(p, &call);
    // Something holds the rest of the budget: a frame in progress.
    let idle = h.connect();
    h.core.input_buffered(idle, 1 << 20);
    assert!(h.core.memory_used() >= 1 << 20);
    h.send(c, &deliver(2, "S", "m"));
    h.send(c, &publish(3, "T", &["m"]));
    h.send(c, &Frame::Listing { id: 4 });
    let codes: Vec<_> = h.frames(c).iter().map(code).collect();
    assert_eq!(codes, [Some(ErrorCode::LimitExceeded); 3]);
    assert_eq!(h.core.stats().limits_exceeded, 3);
    assert!(h.frames(p).is_empty(), "the refused call never reached it");
    // The call in flight is answered.
    h.send(
        p,
        &Frame::Result {
            id: route,
            outcome: Ok(Reply::Done),
        },
    );
    assert_eq!(h.frames(c), [done(1)]);
}

#[test]
fn the_connection_whose_frame_spends_the_input_budget_is_refused() {
    let mut h = Harness::with(config(
        Limits {
            max_input_bytes: 1000,
            ..Limits::default()
        },
        None,
    ));
    let a = h.client();
    let b = h.client();
    h.core.input_buffered(a, 600);
    assert!(h.frames(a).is_empty());
    h.core.input_buffered(b, 600);
    let got = h.frames(b);
    let [Frame::Refused { error }] = got.as_slice() else {
        panic!("expected a refusal, got {got:?}");
    };
    assert_eq!(error.code, ErrorCode::LimitExceeded);
    assert!(h.core.reads(a) && !h.core.reads(b));
    let closes = h.closes();
    assert!(matches!(closes.as_slice(), [(id, CloseReason::OverLimit(_))] if *id == b));
    // What b held is given back: a may go on.
    h.core.input_buffered(a, 900);
    assert!(h.core.reads(a));
}

#[test]
fn a_peer_over_the_high_water_mark_is_paused_and_resumed_once_it_reads() {
    let mut h = Harness::with(config(
        Limits {
            output_high_water: 4096,
            ..Limits::default()
        },
        None,
    ));
    let big: Vec<String> = (0..64).map(|i| format!("{i:0>100}")).collect();
    let big: Vec<&str> = big.iter().map(String::as_str).collect();
    let _p = h.publisher("S", &big);
    let c = h.client();
    h.stalled.push(c);
    assert!(!h.core.over_high_water(c));
    for i in 0..2 {
        h.send(
            c,
            &Frame::Subscribe {
                id: i,
                session: "S".into(),
            },
        );
    }
    h.flush();
    assert!(h.core.over_high_water(c));
    assert_eq!(h.core.stats().reads_paused, 1);
    assert!(h.core.over_high_water(c), "counted once per pause");
    assert_eq!(h.core.stats().reads_paused, 1);
    // It reads: the core asks for its input again.
    h.stalled.clear();
    h.core.writable(c);
    let effects = h.effects();
    assert!(effects.contains(&Effect::Resume { conn: c }), "{effects:?}");
    assert!(!h.core.over_high_water(c));
    assert_eq!(h.frames(c).len(), 2, "both answers, none dropped");
    assert_eq!(h.core.stats().slow_consumers, 0);
}
