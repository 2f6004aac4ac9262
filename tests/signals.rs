//! Signals (issue 14 item 1): a session's publisher emits named signals;
//! listeners add matches (exact, `prefix*`, `*`) and receive every
//! matching signal in order, with the session and signal names. A
//! listener that stops reading is cut off while the others get
//! everything.

#[macro_use]
mod common;

use common::*;
use stagebus::wire::Frame;
use stagebus::*;
use std::cell::RefCell;
use std::rc::Rc;

over_both!(
    one_emitter_and_100_listeners_each_get_exactly_their_signals_in_order,
    a_listener_that_stops_reading_is_cut_off_and_the_others_get_everything,
    only_the_publisher_emits_and_bad_patterns_are_refused,
    a_removed_match_gets_nothing_more,
    a_remote_stage_listens_for_its_sessions_signals,
);

type Got = Rc<RefCell<Vec<(String, String, i64)>>>;

/// Adds a match and waits until the broker confirmed it.
#[track_caller]
fn listen(c: &Client, session: &str, signal: &str) -> (MatchId, Got) {
    let got: Got = Rc::default();
    let g = got.clone();
    let done = Slot::new();
    let id = c
        .add_match(
            session,
            signal,
            move |s: &Signal| {
                let n = s.args.get("n").and_then(Value::as_int).unwrap();
                g.borrow_mut()
                    .push((s.session.clone(), s.signal.clone(), n))
            },
            done.setter(),
        )
        .unwrap();
    wait(c.event_loop(), &done).unwrap();
    (id, got)
}

fn one_emitter_and_100_listeners_each_get_exactly_their_signals_in_order(t: Transport) {
    let h = Harness::new(t);
    let emitter = h.client();
    publish(&emitter, "Src", &["m"], echo()).unwrap();
    publish(&emitter, "Other", &["m"], echo()).unwrap();
    let patterns = [
        ("Src", "tick"),
        ("*", "tick"),
        ("Sr*", "*"),
        ("Src", "t*"),
        ("*", "*"),
    ];
    let mut listeners = Vec::new();
    for i in 0..100 {
        let (session, signal) = patterns[i % patterns.len()];
        let c = h.client();
        let (_, got) = listen(&c, session, signal);
        listeners.push((c, session, signal, got));
    }
    let mut emitted = Vec::new();
    for n in 0..60 {
        let (session, signal) = match n % 3 {
            0 => ("Src", "tick"),
            1 => ("Src", "tock"),
            _ => ("Other", "tick"),
        };
        emitter.emit_signal(session, signal, &arg("n", n)).unwrap();
        emitted.push((session.to_string(), signal.to_string(), n));
    }
    let matching = |session: &str, signal: &str| -> Vec<(String, String, i64)> {
        let p_session = pattern::Pattern::parse("s", session).unwrap();
        let p_signal = pattern::Pattern::parse("s", signal).unwrap();
        emitted
            .iter()
            .filter(|(s, g, _)| p_session.matches(s) && p_signal.matches(g))
            .cloned()
            .collect()
    };
    h.until("every listener got its signals", || {
        listeners
            .iter()
            .all(|(_, s, g, got)| got.borrow().len() == matching(s, g).len())
    });
    // A round trip through every listener: nothing more is on its way.
    for (c, session, signal, got) in &listeners {
        listing(c).unwrap();
        assert_eq!(
            *got.borrow(),
            matching(session, signal),
            "{session} {signal}"
        );
    }
    let stats = h.broker.stats();
    assert_eq!(stats.signals, 60);
    let expected: usize = listeners
        .iter()
        .map(|(_, s, g, _)| matching(s, g).len())
        .sum();
    assert_eq!(stats.signal_deliveries, expected as u64);
    assert_eq!(stats.signal_matches, 100);
    assert_eq!(stats.slow_consumers, 0);
}

fn a_listener_that_stops_reading_is_cut_off_and_the_others_get_everything(t: Transport) {
    let h = Harness::with(t, |c| c.limits.max_queued_bytes = 256 * 1024);
    let emitter = h.client();
    publish(&emitter, "Src", &["m"], echo()).unwrap();
    let readers: Vec<(Client, Got)> = (0..3)
        .map(|_| {
            let c = h.client();
            let (_, got) = listen(&c, "Src", "*");
            (c, got)
        })
        .collect();
    // The one that never reads: a raw connection with a match.
    let mut sleeper = Raw::handshaken(&h.lp, &h.addr);
    sleeper.send(
        &h.lp,
        &Frame::AddMatch {
            id: 1,
            session: "*".into(),
            signal: "*".into(),
        },
    );
    match sleeper.next(&h.lp) {
        Frame::Result { id: 1, outcome } => assert!(outcome.is_ok()),
        other => panic!("expected the match's result, got {other:?}"),
    }
    // 64 MiB of signals in rounds the readers keep up with (each round
    // under their queue limit); far more than the sleeper's socket
    // buffers and its queue limit hold.
    let big = Args::new().with("blob", Value::Bytes(vec![7; 16 * 1024]));
    let rounds = 512;
    let per_round = 8;
    for round in 0..rounds {
        for i in 0..per_round {
            let n = (round * per_round + i) as i64;
            emitter
                .emit_signal("Src", "data", &big.clone().with("n", n))
                .unwrap();
        }
        let want = (round + 1) * per_round;
        h.until("the readers caught up", || {
            readers.iter().all(|(_, got)| got.borrow().len() == want)
        });
    }
    h.until("the sleeper is cut off", || {
        h.broker.stats().slow_consumers == 1
    });
    assert!(readers.iter().all(|(c, _)| c.is_connected()));
    for (_, got) in &readers {
        let ns: Vec<i64> = got.borrow().iter().map(|(_, _, n)| *n).collect();
        assert_eq!(ns, (0..(rounds * per_round) as i64).collect::<Vec<_>>());
    }
    assert!(emitter.is_connected(), "the emitter was never held back");
    let stats = h.broker.stats();
    assert_eq!(stats.signals, (rounds * per_round) as u64);
    assert_eq!(stats.signal_matches, 3, "the sleeper's match went with it");
}

fn only_the_publisher_emits_and_bad_patterns_are_refused(t: Transport) {
    let h = Harness::new(t);
    let owner = h.client();
    publish(&owner, "Src", &["m"], echo()).unwrap();
    let other = h.client();
    let e = other.emit_signal("Src", "x", &Args::new()).unwrap_err();
    assert_eq!(e.code, ErrorCode::NotPublisher);
    for bad in ["", "a*b", "*x"] {
        let e = owner.emit_signal("Src", bad, &Args::new()).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument, "{bad:?}");
        let e = other
            .add_match("Src", bad, |_| {}, |_| panic!("no callback"))
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument, "{bad:?}");
    }
    // A forged signal from a raw connection is dropped and counted.
    let (_, got) = listen(&other, "*", "*");
    let mut raw = Raw::handshaken(&h.lp, &h.addr);
    raw.send(
        &h.lp,
        &Frame::Signal {
            session: "Src".into(),
            signal: "x".into(),
            payload: wire::Payload::encode(&arg("n", 1)),
        },
    );
    h.until("the forged signal is dropped", || {
        h.broker.stats().dropped_signals == 1
    });
    owner.emit_signal("Src", "x", &arg("n", 2)).unwrap();
    h.until("the real one arrives", || got.borrow().len() == 1);
    assert_eq!(got.borrow()[0], ("Src".into(), "x".into(), 2));
    // The broker's match limit.
    let h2 = Harness::with(t, |c| c.limits.max_matches_per_connection = 1);
    let c = h2.client();
    listen(&c, "*", "*");
    let done = Slot::new();
    c.add_match("A", "b", |_| {}, done.setter()).unwrap();
    assert_eq!(
        wait(&h2.lp, &done).unwrap_err().code,
        ErrorCode::LimitExceeded
    );
}

fn a_removed_match_gets_nothing_more(t: Transport) {
    let h = Harness::new(t);
    let owner = h.client();
    publish(&owner, "Src", &["m"], echo()).unwrap();
    let l = h.client();
    let (first, got_first) = listen(&l, "Src", "*");
    let (_, got_second) = listen(&l, "Src", "a");
    owner.emit_signal("Src", "a", &arg("n", 1)).unwrap();
    h.until("both matches got it", || {
        got_first.borrow().len() == 1 && got_second.borrow().len() == 1
    });
    let done = Slot::new();
    l.remove_match(first, done.setter()).unwrap();
    wait(&h.lp, &done).unwrap();
    assert_eq!(
        l.remove_match(first, |_| {}).unwrap_err().code,
        ErrorCode::InvalidArgument
    );
    owner.emit_signal("Src", "a", &arg("n", 2)).unwrap();
    owner.emit_signal("Src", "b", &arg("n", 3)).unwrap();
    h.until("the second match got its one", || {
        got_second.borrow().len() == 2
    });
    listing(&l).unwrap();
    assert_eq!(got_first.borrow().len(), 1);
    assert_eq!(h.broker.stats().signal_deliveries, 2, "b went nowhere");
}

fn a_remote_stage_listens_for_its_sessions_signals(t: Transport) {
    let h = Harness::new(t);
    let owner = h.client();
    publish(&owner, "Src", &["m"], echo()).unwrap();
    publish(&owner, "Else", &["m"], echo()).unwrap();
    let l = h.client();
    let remote = Slot::new();
    RemoteStage::subscribe(&l, "Src", remote.setter());
    let remote = wait(&h.lp, &remote).unwrap();
    let got: Got = Rc::default();
    let g = got.clone();
    let done = Slot::new();
    remote
        .on_signal(
            "*",
            move |s| {
                let n = s.args.get("n").and_then(Value::as_int).unwrap();
                g.borrow_mut()
                    .push((s.session.clone(), s.signal.clone(), n));
            },
            done.setter(),
        )
        .unwrap();
    wait(&h.lp, &done).unwrap();
    owner.emit_signal("Else", "x", &arg("n", 1)).unwrap();
    owner.emit_signal("Src", "y", &arg("n", 2)).unwrap();
    h.until("the session's signal arrives", || got.borrow().len() == 1);
    listing(&l).unwrap();
    assert_eq!(*got.borrow(), vec![("Src".into(), "y".into(), 2)]);
}
