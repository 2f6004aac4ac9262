//! Federation features beyond calls (issue 19), over a real 3-node NATS
//! cluster and three brokers (nats-server from the distribution,
//! installed when missing; skipped with a message only when it cannot
//! be): signals across brokers; `queue` and `balance` names with
//! publishers on several brokers; nested calls (a handler on one broker
//! calling a session on a third while it serves a call) with their
//! cancels; name watches and waits seeing names of other brokers; the
//! publisher seeing (and its broker's policy judging) the remote caller,
//! for calls and for one-way posts;
//! a queue's owner lost with its broker (kill -9 of a broker process):
//! the standby on another broker takes over everywhere.

#[macro_use]
mod common;
#[path = "nats_support/brokers.rs"]
mod brokers;
mod nats_support;

use brokers::*;
use common::*;
use nats_support::{cluster, Node};
use stagebus::broker::Policy;
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

/// Publishes `session` in `mode`, answering every call with `who`;
/// retries while the directory is not ready (`timeout`).
#[track_caller]
fn publish_mode(c: &Client, mode: NameMode, session: &str, who: &str) -> Result<(), Error> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let done = Slot::new();
        let me = who.to_string();
        c.publish_as(
            mode,
            session,
            &["whoami"],
            move |d: &Delivery, inbound: Inbound| {
                if let Inbound::Call { .. } = inbound {
                    d.respond("return", &arg("who", me.as_str())).unwrap();
                }
            },
            done.setter(),
        );
        match wait(c.event_loop(), &done) {
            Err(e) if e.code == ErrorCode::Timeout && std::time::Instant::now() < deadline => {
                c.event_loop()
                    .run_until(Duration::from_millis(100), || false)
                    .unwrap();
            }
            other => return other,
        }
    }
}

/// Who answered a `whoami` call to `session` from `c` (or the error).
fn whoami(c: &Client, session: &str) -> Result<String, ErrorCode> {
    match call(c, session, "whoami", &Args::new()).last {
        CallEvent::Return { args, .. } => match args.get("who") {
            Some(Value::Str(s)) => Ok(s.clone()),
            other => panic!("who: {other:?}"),
        },
        CallEvent::Error(e) => Err(e.code),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_queue_name_on_three_brokers_hands_over_cluster_wide() {
    let bin = need_nats!();
    debug_logs();
    let nodes = cluster(&bin, 3, &js());
    let lp = EventLoop::new().unwrap();
    let (brokers, callers) = three(&nodes, &lp, "queue");
    // Publishers: the first on b2, then b3, then b1.
    let p2 = connect(&lp, &brokers[1]);
    let p3 = connect(&lp, &brokers[2]);
    let p1 = connect(&lp, &brokers[0]);
    publish_mode(&p2, NameMode::Queue, "Q", "p2").unwrap();
    for c in &callers {
        eventually(&lp, "Q listed", || names(c).contains(&"Q".to_string()));
    }
    publish_mode(&p3, NameMode::Queue, "Q", "p3").unwrap();
    publish_mode(&p1, NameMode::Queue, "Q", "p1").unwrap();
    // The mode is the cluster's: another mode anywhere is refused.
    let other = connect(&lp, &brokers[0]);
    assert_eq!(
        publish_mode(&other, NameMode::Balance, "Q", "x")
            .unwrap_err()
            .code,
        ErrorCode::NameModeConflict
    );
    assert_eq!(
        publish(&other, "Q", &["whoami"], echo()).unwrap_err().code,
        ErrorCode::NameModeConflict
    );
    // The owner takes every call, from every broker (b1's own standby
    // included).
    for c in &callers {
        for _ in 0..3 {
            assert_eq!(whoami(c, "Q"), Ok("p2".into()));
        }
    }
    // Watchers everywhere hear of the hand-over.
    let changes: Vec<Rc<RefCell<Vec<NameEvent>>>> = callers
        .iter()
        .map(|c| {
            let got: Rc<RefCell<Vec<NameEvent>>> = Rc::default();
            let g = got.clone();
            let done = Slot::new();
            c.watch(
                "Q",
                move |e: &NameEvent| g.borrow_mut().push(e.clone()),
                done.setter(),
            )
            .unwrap();
            wait(&lp, &done).unwrap();
            got
        })
        .collect();
    // The owner goes: the next in line, on another broker, takes over
    // everywhere.
    rescind(&p2, "Q").unwrap();
    for c in &callers {
        eventually(&lp, "p3 owns Q", || whoami(c, "Q") == Ok("p3".into()));
    }
    for got in &changes {
        eventually(&lp, "owner_changed at every watcher", || {
            got.borrow()
                .iter()
                .any(|e| matches!(e, NameEvent::OwnerChanged { .. }))
        });
    }
    // Then p3's client disconnects: p1 (on b1) takes over.
    drop(p3);
    for c in &callers {
        eventually(&lp, "p1 owns Q", || whoami(c, "Q") == Ok("p1".into()));
    }
    // The last one goes: the name is gone everywhere, as rescinded.
    rescind(&p1, "Q").unwrap();
    for c in &callers {
        eventually(&lp, "Q gone", || !names(c).contains(&"Q".to_string()));
    }
    for got in &changes {
        eventually(&lp, "gone (rescinded) at every watcher", || {
            got.borrow().iter().any(
                |e| matches!(e, NameEvent::Gone { reason, .. } if reason.code == ErrorCode::NoSuchSession),
            )
        });
    }
    // And free for any mode again.
    publish_when_ready(&other, "Q", &["whoami"], echo_clone());
    for b in &brokers {
        let s = b.stats();
        assert_eq!(s.link_resets, 0, "no link reset without a fault: {s:?}");
    }
    drop((p1, p2, other, callers));
    for b in &brokers {
        b.close();
    }
}

#[test]
fn a_balance_name_on_three_brokers_shares_the_calls() {
    let bin = need_nats!();
    debug_logs();
    let nodes = cluster(&bin, 3, &js());
    let lp = EventLoop::new().unwrap();
    let (brokers, callers) = three(&nodes, &lp, "balance");
    let publishers: Vec<Client> = brokers.iter().map(|b| connect(&lp, b)).collect();
    for (k, p) in publishers.iter().enumerate() {
        publish_mode(p, NameMode::Balance, "B", &format!("p{}", k + 1)).unwrap();
    }
    // Calls from each broker reach publishers on every broker.
    for (k, c) in callers.iter().enumerate() {
        let mut seen = std::collections::HashMap::new();
        eventually(&lp, "every publisher serves", || {
            for _ in 0..12 {
                *seen.entry(whoami(c, "B").unwrap()).or_insert(0) += 1;
            }
            seen.len() == 3
        });
        // Its own broker's publisher takes a share, not all.
        let own = seen[&format!("p{}", k + 1)];
        let total: i32 = seen.values().sum();
        assert!(own < total, "b{}: {seen:?}", k + 1);
    }
    // Three publishers joining one name at once, on three brokers: all
    // of them serve, from everywhere (a join a concurrent write undid is
    // made again).
    let slots: Vec<Slot<Result<(), Error>>> = publishers
        .iter()
        .enumerate()
        .map(|(k, p)| {
            let slot = Slot::new();
            let me = format!("p{}", k + 1);
            p.publish_as(
                NameMode::Balance,
                "C",
                &["whoami"],
                move |d: &Delivery, inbound: Inbound| {
                    if let Inbound::Call { .. } = inbound {
                        d.respond("return", &arg("who", me.as_str())).unwrap();
                    }
                },
                slot.setter(),
            );
            slot
        })
        .collect();
    for slot in &slots {
        wait(&lp, slot).expect("a concurrent join");
    }
    for c in &callers {
        let mut seen = std::collections::HashSet::new();
        eventually(&lp, "all three serve C", || {
            for _ in 0..9 {
                if let Ok(w) = whoami(c, "C") {
                    seen.insert(w);
                }
            }
            seen.len() == 3
        });
    }
    // Another mode is refused.
    assert_eq!(
        publish_mode(&callers[2], NameMode::Queue, "B", "x")
            .unwrap_err()
            .code,
        ErrorCode::NameModeConflict
    );
    // One publisher goes: the others share everything, from everywhere.
    let mut publishers = publishers;
    drop(publishers.remove(1));
    for c in &callers {
        eventually(&lp, "p2 no longer listed as serving", || {
            (0..9).all(|_| whoami(c, "B").is_ok_and(|w| w != "p2"))
        });
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20 {
            seen.insert(whoami(c, "B").unwrap());
        }
        assert_eq!(
            seen,
            ["p1".to_string(), "p3".to_string()].into_iter().collect()
        );
    }
    // The last publishers disconnect: a watcher on b2 hears the name
    // went with its publisher.
    let events: Rc<RefCell<Vec<NameEvent>>> = Rc::default();
    let e = events.clone();
    let done = Slot::new();
    callers[1]
        .watch(
            "B",
            move |ev: &NameEvent| e.borrow_mut().push(ev.clone()),
            done.setter(),
        )
        .unwrap();
    wait(&lp, &done).unwrap();
    drop(publishers);
    eventually(&lp, "B gone, its publishers gone", || {
        events.borrow().iter().any(
            |e| matches!(e, NameEvent::Gone { reason, .. } if reason.code == ErrorCode::PublisherGone),
        )
    });
    for c in &callers {
        eventually(&lp, "B unlisted", || !names(c).contains(&"B".to_string()));
    }
    for b in &brokers {
        let s = b.stats();
        assert_eq!(s.link_resets, 0, "no link reset without a fault: {s:?}");
    }
    drop(callers);
    for b in &brokers {
        b.close();
    }
}

/// The nested tier: "Mid" on b2 serves b1's calls by calling "Leaf" on
/// b3 from inside its handler; a cancel at b1 reaches b2, whose handler
/// cancels its own call to b3.
#[test]
fn nested_calls_across_three_brokers_and_their_cancels() {
    let bin = need_nats!();
    debug_logs();
    let nodes = cluster(&bin, 3, &js());
    let lp = EventLoop::new().unwrap();
    let (brokers, clients) = three(&nodes, &lp, "nested");
    let leaf_log: Rc<RefCell<Vec<String>>> = Rc::default();
    let l = leaf_log.clone();
    publish_when_ready(
        &clients[2],
        "Leaf",
        &["echo", "hold"],
        move |d: &Delivery, inbound: Inbound| match inbound {
            Inbound::Call { method, args } => {
                l.borrow_mut().push(format!("call {method}"));
                if method == "echo" {
                    let mut args = args;
                    args.insert("at", "b3");
                    d.respond("return", &args).unwrap();
                }
            }
            Inbound::Cancel => l.borrow_mut().push("cancel".into()),
            Inbound::Recall { .. } => {}
        },
    );
    let mid_log: Rc<RefCell<Vec<String>>> = Rc::default();
    let m = mid_log.clone();
    let mid = clients[1].clone();
    // The nested call each held delivery made, to cancel with it.
    let nested: Rc<RefCell<Option<CallId>>> = Rc::default();
    publish_when_ready(
        &clients[1],
        "Mid",
        &["relay", "hold"],
        move |d: &Delivery, inbound: Inbound| match inbound {
            Inbound::Call { method, args } => {
                m.borrow_mut().push(format!("call {method}"));
                let answer = d.clone();
                let id = mid
                    .call(
                        "Leaf",
                        if method == "relay" { "echo" } else { "hold" },
                        &args,
                        move |_, ev| match ev {
                            CallEvent::Return { args, .. } => {
                                let _ = answer.respond("return", &args);
                            }
                            CallEvent::Error(e) => {
                                let _ = answer.respond("failed", &arg("code", e.code.as_str()));
                            }
                            _ => {}
                        },
                    )
                    .unwrap();
                *nested.borrow_mut() = Some(id);
            }
            Inbound::Cancel => {
                m.borrow_mut().push("cancel".into());
                if let Some(id) = nested.borrow_mut().take() {
                    mid.cancel(id);
                }
            }
            Inbound::Recall { .. } => {}
        },
    );
    eventually(&lp, "Mid and Leaf listed on b1", || {
        let n = names(&clients[0]);
        n.contains(&"Mid".to_string()) && n.contains(&"Leaf".to_string())
    });
    // b1 → b2 → b3 and back, many at once, each answered once.
    let outcomes: Vec<(CallId, Slot<Outcome>)> = (0..40)
        .map(|k| start_call(&clients[0], "Mid", "relay", &arg("k", k)))
        .collect();
    for (k, (_, slot)) in outcomes.iter().enumerate() {
        let out = wait(&lp, slot);
        match &out.last {
            CallEvent::Return { args, .. } => {
                assert_eq!(args.get("k"), Some(&Value::Int(k as i64)));
                assert_eq!(args.get("at"), Some(&Value::from("b3")));
            }
            other => panic!("relay {k}: {other:?}"),
        }
        assert_eq!(slot.times(), 1, "answered once");
    }
    // A cancel at b1 ends b2's delivery and, through its handler, b3's.
    let (id, done) = start_call(&clients[0], "Mid", "hold", &Args::new());
    until(&lp, "the held call at b3", || {
        leaf_log.borrow().iter().any(|s| s == "call hold")
    });
    assert!(clients[0].cancel(id));
    until(&lp, "the cancel at b2", || {
        mid_log.borrow().iter().any(|s| s == "cancel")
    });
    until(&lp, "the cancel at b3", || {
        leaf_log.borrow().iter().any(|s| s == "cancel")
    });
    lp.run_until(Duration::from_millis(200), || false).unwrap();
    assert!(!done.is_set(), "nothing after a cancel");
    for b in &brokers {
        let s = b.stats();
        assert_eq!(s.link_resets, 0, "no link reset without a fault: {s:?}");
    }
    drop(clients);
    for b in &brokers {
        b.close();
    }
}

#[test]
fn watches_and_waits_see_names_of_other_brokers_come_and_go() {
    let bin = need_nats!();
    debug_logs();
    let nodes = cluster(&bin, 3, &js());
    let lp = EventLoop::new().unwrap();
    let (brokers, clients) = three(&nodes, &lp, "watch");
    // A watch on b1 of every name starting with "W".
    let events: Rc<RefCell<Vec<NameEvent>>> = Rc::default();
    let e = events.clone();
    let done = Slot::new();
    clients[0]
        .watch(
            "W*",
            move |ev: &NameEvent| e.borrow_mut().push(ev.clone()),
            done.setter(),
        )
        .unwrap();
    wait(&lp, &done).unwrap();
    // A wait on b3 for a name nobody publishes yet.
    let waited = Slot::new();
    clients[2].subscribe_waiting("Wlater", Duration::from_secs(30), waited.setter());
    lp.run_until(Duration::from_millis(200), || false).unwrap();
    assert!(!waited.is_set());

    // Published on b2: appears at b1's watch.
    publish_when_ready(&clients[1], "Wone", &["m"], echo_clone());
    until(&lp, "Wone appeared at b1", || {
        events
            .borrow()
            .iter()
            .any(|e| matches!(e, NameEvent::Appeared { name, methods } if name == "Wone" && methods == &["m"]))
    });
    // Rescinded on b2: gone, as rescinded.
    rescind(&clients[1], "Wone").unwrap();
    until(&lp, "Wone gone at b1", || {
        events.borrow().iter().any(
            |e| matches!(e, NameEvent::Gone { name, reason } if name == "Wone" && reason.code == ErrorCode::NoSuchSession),
        )
    });
    // Published on b3 by a client that then disconnects: gone, as its
    // publisher went.
    let p3 = connect(&lp, &brokers[2]);
    publish_when_ready(&p3, "Wtwo", &["m"], echo_clone());
    until(&lp, "Wtwo appeared at b1", || {
        events
            .borrow()
            .iter()
            .any(|e| matches!(e, NameEvent::Appeared { name, .. } if name == "Wtwo"))
    });
    drop(p3);
    until(&lp, "Wtwo gone at b1", || {
        events.borrow().iter().any(
            |e| matches!(e, NameEvent::Gone { name, reason } if name == "Wtwo" && reason.code == ErrorCode::PublisherGone),
        )
    });
    // The wait on b3 ends when b1 publishes the name.
    publish_when_ready(&clients[0], "Wlater", &["m", "n"], echo_clone());
    let methods = wait(&lp, &waited).expect("the waited name");
    assert_eq!(methods, ["m", "n"]);
    assert_eq!(waited.times(), 1);
    // Each change seen once at b1, in order.
    let seen: Vec<String> = events
        .borrow()
        .iter()
        .map(|e| match e {
            NameEvent::Present { name, .. } => format!("present {name}"),
            NameEvent::Appeared { name, .. } => format!("appeared {name}"),
            NameEvent::OwnerChanged { name, .. } => format!("owner {name}"),
            NameEvent::Gone { name, .. } => format!("gone {name}"),
        })
        .collect();
    assert_eq!(
        seen[..4],
        ["appeared Wone", "gone Wone", "appeared Wtwo", "gone Wtwo"]
    );
    drop(clients);
    for b in &brokers {
        b.close();
    }
}

/// The publisher's broker applies its policy to the caller on the other
/// broker, as that broker stamped it (its token name), and the publisher
/// sees that caller, marked as remote. One-way posts are judged the same
/// way: the right caller's go through, the others' are dropped.
#[test]
fn a_remote_caller_is_seen_and_judged_as_itself() {
    let bin = need_nats!();
    debug_logs();
    let nodes = cluster(&bin, 3, &js());
    let lp = EventLoop::new().unwrap();
    let b1 = federated_with(&lp, &urls_for(&nodes, 0), "b1", "who", |c| {
        c.with_named_token("ops", "o").with_named_token("app", "a")
    });
    let policy = Policy::parse(
        "
        allow anyone own *
        allow anyone see *
        allow token=ops call Secure
        allow anyone call Open
        ",
    )
    .unwrap();
    let b2 = federated_with(&lp, &urls_for(&nodes, 1), "b2", "who", |c| {
        c.with_policy(policy)
    });
    let publisher = connect(&lp, &b2);
    let posted: Rc<RefCell<Vec<Value>>> = Rc::default();
    let p2 = posted.clone();
    let tell = move |d: &Delivery, inbound: Inbound| {
        if let Inbound::Call { method, args } = inbound {
            if method == "note" {
                assert!(!d.expects_answer());
                p2.borrow_mut().push(args.get("from").cloned().unwrap());
                return;
            }
            let c = d.caller().cloned().unwrap_or_default();
            let args = Args::new()
                .with("identity", c.identity.unwrap_or_default())
                .with("name", c.client_name.unwrap_or_default());
            d.respond("return", &args).unwrap();
        }
    };
    publish_when_ready(&publisher, "Secure", &["who", "note"], tell.clone());
    publish_when_ready(&publisher, "Open", &["who"], tell);
    let ops = connect_with(
        &lp,
        &b1.local_addresses()[0],
        ClientConfig::default().with_token("o").with_name("alice"),
    );
    let app = connect_with(
        &lp,
        &b1.local_addresses()[0],
        ClientConfig::default().with_token("a"),
    );
    eventually(&lp, "Secure listed at b1", || {
        names(&ops).contains(&"Secure".to_string())
    });
    let who = |c: &Client, session: &str| match call(c, session, "who", &Args::new()).last {
        CallEvent::Return { args, .. } => Ok((
            args.get("identity").cloned().unwrap(),
            args.get("name").cloned().unwrap(),
        )),
        CallEvent::Error(e) => Err(e.code),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        who(&ops, "Secure"),
        Ok((Value::from("ops"), Value::from("alice (via broker b1)")))
    );
    assert_eq!(who(&app, "Secure"), Err(ErrorCode::AccessDenied));
    assert_eq!(
        who(&app, "Open"),
        Ok((Value::from("app"), Value::from("via broker b1")))
    );
    // Posts: each caller's post, then its call of Open, whose answer
    // comes after the post crossed the same link and was judged at b2.
    for (c, from) in [(&app, "app"), (&ops, "ops"), (&app, "app")] {
        c.post("Secure", "note", &arg("from", from)).unwrap();
        assert!(who(c, "Open").is_ok());
    }
    assert_eq!(*posted.borrow(), vec![Value::from("ops")]);
    let stats = b2.stats();
    assert_eq!(
        (stats.oneway_calls, stats.dropped_oneway),
        (1, 2),
        "{stats:?}"
    );
    // A local caller without a token: judged as itself too.
    let local = connect(&lp, &b2);
    assert_eq!(who(&local, "Secure"), Err(ErrorCode::AccessDenied));
    assert_eq!(who(&local, "Open"), Ok((Value::from(""), Value::from(""))));
    drop((publisher, ops, app, local));
    b1.close();
    b2.close();
}

#[test]
fn a_queue_owner_whose_broker_is_killed_hands_over_to_a_standby_elsewhere() {
    let bin = need_nats!();
    let nodes = cluster(&bin, 3, &js());
    let mut brokers: Vec<BrokerProcess> = (0..3)
        .map(|k| BrokerProcess::start(&urls_for(&nodes, k), &format!("b{}", k + 1), "qkill"))
        .collect();
    let lp = EventLoop::new().unwrap();
    let owner = connect_to(&lp, &brokers[0].addr);
    let standby = connect_to(&lp, &brokers[1].addr);
    let caller = connect_to(&lp, &brokers[2].addr);
    publish_mode(&owner, NameMode::Queue, "Q", "p1").unwrap();
    eventually(&lp, "Q listed at b2", || {
        names(&standby).contains(&"Q".to_string())
    });
    publish_mode(&standby, NameMode::Queue, "Q", "p2").unwrap();
    eventually(&lp, "p1 serves b3's calls", || {
        whoami(&caller, "Q") == Ok("p1".into())
    });
    // kill -9 of the owner's broker: once it is declared dead, its member
    // leaves the list and the standby on b2 serves, from b3 and from b2.
    brokers[0].kill();
    eventually(&lp, "p2 serves b3's calls", || {
        whoami(&caller, "Q") == Ok("p2".into())
    });
    let local = connect_to(&lp, &brokers[1].addr);
    assert_eq!(whoami(&local, "Q"), Ok("p2".into()));
    drop((owner, standby, caller, local));
}
