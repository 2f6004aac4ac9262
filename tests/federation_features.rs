//! Federation features beyond calls (issue 19), over a real 3-node NATS
//! cluster and three brokers (nats-server from the distribution,
//! installed when missing; skipped with a message only when it cannot
//! be): signals across brokers.

#[macro_use]
mod common;
mod fed_support;
mod nats_support;

use common::*;
use fed_support::*;
use nats_support::{cluster, Node};
use stagebus::*;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

/// (session, signal, n) of every signal a listener got, in order.
type Got = Rc<RefCell<Vec<(String, String, i64)>>>;

/// Adds a match and waits until its broker confirmed it.
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

/// Three brokers `b1`..`b3` on their own nodes of a 3-node cluster, and
/// a client of each.
fn three(nodes: &[Node], lp: &EventLoop, ns: &str) -> (Vec<Broker>, Vec<Client>) {
    let brokers: Vec<Broker> = (0..3)
        .map(|k| federated(lp, &urls_for(nodes, k), &format!("b{}", k + 1), ns))
        .collect();
    let clients = brokers.iter().map(|b| connect(lp, b)).collect();
    (brokers, clients)
}

#[test]
fn signals_reach_listeners_on_other_brokers_once_each_in_order() {
    let bin = need_nats!();
    debug_logs();
    let nodes = cluster(&bin, 3, &js());
    let lp = EventLoop::new().unwrap();
    let (brokers, emitters) = three(&nodes, &lp, "sig");
    // Emitters: "Src" and "Other" on b1, "Far" on b3.
    publish_when_ready(&emitters[0], "Src", &["m"], echo_clone());
    publish_when_ready(&emitters[0], "Other", &["m"], echo_clone());
    publish_when_ready(&emitters[2], "Far", &["m"], echo_clone());
    for c in &emitters {
        eventually(&lp, "every session listed everywhere", || {
            let n = names(c);
            ["Src", "Other", "Far"]
                .iter()
                .all(|s| n.contains(&s.to_string()))
        });
    }
    // Listeners: two on b2 (so b2 gets each signal once and fans it out
    // twice), one on b1 (local, as before), one on b3 for "Other" only.
    let l_b2_tick = connect(&lp, &brokers[1]);
    let l_b2_all = connect(&lp, &brokers[1]);
    let l_b1 = connect(&lp, &brokers[0]);
    let l_b3 = connect(&lp, &brokers[2]);
    let (tick_id, got_b2_tick) = listen(&l_b2_tick, "Src", "tick");
    let (_, got_b2_all) = listen(&l_b2_all, "*", "*");
    let (_, got_b1) = listen(&l_b1, "Sr*", "t*");
    let (_, got_b3) = listen(&l_b3, "Other", "*");

    // A match takes effect on the other brokers when its announcement
    // arrives: warm up until every listener hears its emitters.
    let mut warm = 0;
    eventually(&lp, "matches announced", || {
        warm += 1;
        emitters[0]
            .emit_signal("Src", "tick", &arg("n", -warm))
            .unwrap();
        emitters[0]
            .emit_signal("Other", "warm", &arg("n", -warm))
            .unwrap();
        emitters[2]
            .emit_signal("Far", "warm", &arg("n", -warm))
            .unwrap();
        let far = got_b2_all.borrow().iter().any(|g| g.0 == "Far");
        let src = got_b2_all.borrow().iter().any(|g| g.0 == "Src");
        !got_b2_tick.borrow().is_empty() && far && src && !got_b3.borrow().is_empty()
    });
    // Quiet, then start counting.
    lp.run_until(Duration::from_millis(300), || false).unwrap();
    for g in [&got_b2_tick, &got_b2_all, &got_b1, &got_b3] {
        g.borrow_mut().clear();
    }
    let before: Vec<BrokerStats> = brokers.iter().map(|b| b.stats()).collect();

    // Interleaved signals of three sessions from two emitters on two
    // brokers.
    let mut emitted: Vec<(String, String, i64)> = Vec::new();
    for n in 0..300i64 {
        let (c, session, signal) = match n % 4 {
            0 => (&emitters[0], "Src", "tick"),
            1 => (&emitters[0], "Src", "tock"),
            2 => (&emitters[0], "Other", "tick"),
            _ => (&emitters[2], "Far", "tick"),
        };
        c.emit_signal(session, signal, &arg("n", n)).unwrap();
        emitted.push((session.into(), signal.into(), n));
    }
    let want = |f: &dyn Fn(&str, &str) -> bool| -> Vec<(String, String, i64)> {
        emitted
            .iter()
            .filter(|(s, g, _)| f(s, g))
            .cloned()
            .collect()
    };
    let want_b2_tick = want(&|s, g| s == "Src" && g == "tick");
    let want_b1 = want(&|s, g| s.starts_with("Sr") && g.starts_with('t'));
    let want_b3 = want(&|s, _| s == "Other");
    eventually(&lp, "every signal at every listener", || {
        got_b2_all.borrow().len() >= emitted.len()
            && got_b2_tick.borrow().len() >= want_b2_tick.len()
            && got_b1.borrow().len() >= want_b1.len()
            && got_b3.borrow().len() >= want_b3.len()
    });
    lp.run_until(Duration::from_millis(300), || false).unwrap();
    // Exactly the matching signals, once each; one emitter's in the
    // order emitted (the two emitters' interleave freely).
    assert_eq!(*got_b2_tick.borrow(), want_b2_tick);
    assert_eq!(*got_b1.borrow(), want_b1);
    assert_eq!(*got_b3.borrow(), want_b3);
    let all = got_b2_all.borrow().clone();
    assert_eq!(all.len(), emitted.len(), "each signal once");
    let of = |v: &[(String, String, i64)], far: bool| -> Vec<(String, String, i64)> {
        v.iter()
            .filter(|g| (g.0 == "Far") == far)
            .cloned()
            .collect()
    };
    assert_eq!(
        of(&all, false),
        of(&emitted, false),
        "b1's emitter in order"
    );
    assert_eq!(of(&all, true), of(&emitted, true), "b3's emitter in order");

    // Bounded cost: a broker handles a remote signal once however many
    // of its clients listen, and only signals one of them listens for.
    let after: Vec<BrokerStats> = brokers.iter().map(|b| b.stats()).collect();
    let handled = |k: usize| after[k].signals - before[k].signals;
    // b2 listens for everything: every signal once (b1's and b3's).
    assert_eq!(handled(1), 300);
    // b3: its own emitter's, plus b1's "Other" signals, nothing else.
    assert_eq!(handled(2), 75 + 75);
    // b1: its own emitter's; of b3's ("Far"), none (b1 listens for "Sr*").
    assert_eq!(handled(0), 225);
    // b2 delivered each of b1's "Src tick" twice (two listeners).
    assert_eq!(
        after[1].signal_deliveries - before[1].signal_deliveries,
        300 + 75
    );

    // A removed match: b2's "Src tick" listener hears nothing more, the
    // other listener on b2 still everything.
    let done = Slot::new();
    l_b2_tick.remove_match(tick_id, done.setter()).unwrap();
    wait(&lp, &done).unwrap();
    let n_all = got_b2_all.borrow().len();
    let n_tick = got_b2_tick.borrow().len();
    for n in 1000..1010 {
        emitters[0]
            .emit_signal("Src", "tick", &arg("n", n))
            .unwrap();
    }
    eventually(&lp, "the later signals at b2", || {
        got_b2_all.borrow().len() >= n_all + 10
    });
    assert_eq!(got_b2_tick.borrow().len(), n_tick);

    // A listener that goes away: its broker stops being sent signals it
    // alone wanted. b3's only listener closes; b1's "Other" signals then
    // no longer reach b3.
    drop(l_b3);
    let b3_before = brokers[2].stats().signals;
    lp.run_until(Duration::from_millis(500), || false).unwrap();
    let n_all = got_b2_all.borrow().len();
    for n in 2000..2010 {
        emitters[0]
            .emit_signal("Other", "tick", &arg("n", n))
            .unwrap();
    }
    eventually(&lp, "the Other signals at b2", || {
        got_b2_all.borrow().len() >= n_all + 10
    });
    lp.run_until(Duration::from_millis(300), || false).unwrap();
    assert_eq!(brokers[2].stats().signals, b3_before, "no listener on b3");

    for b in &brokers {
        let s = b.stats();
        assert_eq!(s.link_resets, 0, "no link reset without a fault: {s:?}");
        assert_eq!(s.dropped_signals, 0, "{s:?}");
    }
    drop(emitters);
    for b in &brokers {
        b.close();
    }
}
