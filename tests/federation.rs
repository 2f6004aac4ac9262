//! Brokers federated over a real 3-node NATS cluster (nats-server from
//! the distribution, installed when missing; skipped with a message only
//! when it cannot be): calls, emits in order, recalls and cancels from a
//! client on one broker to a session published on another; listings and
//! subscriptions across brokers; one name published on three brokers at
//! once (exactly one wins). Faults are in `federation_faults.rs`.

#[macro_use]
mod common;
#[path = "nats_support/brokers.rs"]
mod brokers;
mod nats_support;

use brokers::*;
use common::fd_host::FdHost;
use common::*;
use nats_support::cluster;
use stagebus::*;
use std::cell::RefCell;
use std::rc::Rc;

/// A publisher of "Svc": `echo` answers its args, `stream` emits `n`
/// counters then returns, `ask` emits once and returns what the recall
/// brings, `hold` records and never answers.
fn service(log: Rc<RefCell<Vec<String>>>) -> impl FnMut(&Delivery, Inbound) + Clone + 'static {
    move |d: &Delivery, inbound: Inbound| match inbound {
        Inbound::Call { method, args } => {
            log.borrow_mut().push(format!("call {method}"));
            match method.as_str() {
                "echo" => d.respond("return", &args).unwrap(),
                "stream" => {
                    let n = match args.get("n") {
                        Some(Value::Int(n)) => *n,
                        other => panic!("n: {other:?}"),
                    };
                    for i in 0..n {
                        d.emit("emit", &arg("i", i)).unwrap();
                    }
                    d.respond("return", &arg("done", n)).unwrap();
                }
                "ask" => d.emit("question", &arg("q", "more?")).unwrap(),
                _ => {}
            }
        }
        Inbound::Recall { method, args } => {
            log.borrow_mut().push(format!("recall {method}"));
            d.respond("return", &args).unwrap();
        }
        Inbound::Cancel => log.borrow_mut().push("cancel".into()),
    }
}

#[test]
fn calls_listings_and_names_across_three_brokers() {
    let bin = need_nats!();
    debug_logs();
    let nodes = cluster(&bin, 3, &js());
    let lp = EventLoop::new().unwrap();
    let brokers: Vec<Broker> = (0..3)
        .map(|k| federated(&lp, &urls_for(&nodes, k), &format!("b{}", k + 1), "t1"))
        .collect();
    let clients: Vec<Client> = brokers.iter().map(|b| connect(&lp, b)).collect();

    // A session published on b2, seen in the listing of every broker.
    let served = Rc::new(RefCell::new(Vec::new()));
    publish_when_ready(
        &clients[1],
        "Svc",
        &["echo", "stream", "ask", "hold"],
        service(served.clone()),
    );
    for c in &clients {
        eventually(&lp, "Svc listed everywhere", || {
            names(c).contains(&"Svc".to_string())
        });
    }
    let listed = listing(&clients[0]).unwrap();
    let svc = listed.iter().find(|s| s.name == "Svc").unwrap();
    assert_eq!(svc.methods, ["echo", "stream", "ask", "hold"]);

    // A call from b1 to b2.
    let out = call(&clients[0], "Svc", "echo", &arg("x", "hello"));
    assert_eq!(
        out.last,
        CallEvent::Return {
            kind: "return".into(),
            args: arg("x", "hello")
        }
    );
    // Emits arrive in order, all of them, then the return.
    let n = 10_000;
    let out = call(&clients[0], "Svc", "stream", &arg("n", n));
    assert_eq!(out.emits.len(), n as usize);
    for (i, e) in out.emits.iter().enumerate() {
        assert_eq!(
            e,
            &CallEvent::Emit {
                kind: "emit".into(),
                args: arg("i", i as i64)
            },
            "emit {i} in order"
        );
    }
    assert!(matches!(out.last, CallEvent::Return { .. }));
    // A recall across brokers.
    let (id, done) = start_call(&clients[2], "Svc", "ask", &Args::new());
    until(&lp, "the question", || {
        served.borrow().iter().any(|s| s == "call ask")
    });
    let question = Rc::new(RefCell::new(false));
    let _ = id;
    // The emit reaches the caller; it answers with a recall.
    let c3 = clients[2].clone();
    let asked = question.clone();
    let id2 = clients[2]
        .call("Svc", "ask", &Args::new(), move |call, ev| {
            if let CallEvent::Emit { kind, .. } = &ev {
                assert_eq!(kind, "question");
                *asked.borrow_mut() = true;
                c3.recall(call, "answer", &arg("a", 42)).unwrap();
            }
        })
        .unwrap();
    until(&lp, "the recall", || {
        served.borrow().iter().any(|s| s == "recall answer")
    });
    assert!(*question.borrow());
    clients[2].cancel(id2);
    drop(done);

    // No such method: answered by the caller's broker, no hop needed.
    let out = call(&clients[0], "Svc", "nope", &Args::new());
    assert_eq!(call_error(&out.last).code, ErrorCode::NoSuchMethod);
    let out = call(&clients[0], "Nobody", "x", &Args::new());
    assert_eq!(call_error(&out.last).code, ErrorCode::NoSuchSession);

    // A cancel reaches the publisher on the other broker.
    let before = served.borrow().iter().filter(|s| *s == "cancel").count();
    let (id, done) = start_call(&clients[0], "Svc", "hold", &Args::new());
    until(&lp, "the held call", || {
        served.borrow().iter().any(|s| s == "call hold")
    });
    assert!(clients[0].cancel(id));
    until(&lp, "the cancel at the publisher", || {
        served.borrow().iter().filter(|s| *s == "cancel").count() > before
    });
    assert!(!done.is_set());

    // Subscribing to a remote session; its rescind is told across.
    assert_eq!(
        subscribe(&clients[0], "Svc").unwrap(),
        ["echo", "stream", "ask", "hold"]
    );
    let gone = Rc::new(RefCell::new(Vec::new()));
    let g = gone.clone();
    clients[0].on_session_gone(move |name, e| g.borrow_mut().push((name.to_string(), e.code)));
    rescind(&clients[1], "Svc").unwrap();
    until(&lp, "SessionGone at b1", || !gone.borrow().is_empty());
    assert_eq!(gone.borrow()[0].0, "Svc");
    for c in &clients {
        eventually(&lp, "Svc gone everywhere", || {
            !names(c).contains(&"Svc".to_string())
        });
    }

    // One name published on three brokers at once: exactly one wins.
    let outcomes: Vec<Slot<Result<(), Error>>> = clients
        .iter()
        .map(|c| {
            let s = Slot::new();
            c.publish("Unique", &["m"], echo(), s.setter());
            s
        })
        .collect();
    let results: Vec<Result<(), Error>> = outcomes.iter().map(|s| wait(&lp, s)).collect();
    let wins = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "{results:?}");
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(r.code, ErrorCode::AlreadyExists, "{r}");
    }
    let winner = results.iter().position(|r| r.is_ok()).unwrap();
    // Every broker can call the winner.
    for c in &clients {
        eventually(&lp, "Unique listed", || {
            names(c).contains(&"Unique".to_string())
        });
        let out = call(c, "Unique", "m", &arg("k", 1));
        assert!(matches!(out.last, CallEvent::Return { .. }), "{out:?}");
    }
    // After the winner rescinds, another broker may take the name.
    rescind(&clients[winner], "Unique").unwrap();
    let other = (winner + 1) % 3;
    eventually(&lp, "Unique gone", || {
        !names(&clients[other]).contains(&"Unique".to_string())
    });
    publish(&clients[other], "Unique", &["m"], echo()).expect("the name is free again");

    for b in &brokers {
        let s = b.stats();
        assert_eq!(s.link_resets, 0, "no link reset without a fault: {s:?}");
    }
    drop(clients);
    for b in &brokers {
        b.close();
    }
}

/// A federated broker on a loop whose host watches its fds one by one
/// (`EventLoop::watch_fds`): once connected and idle, every fd it was
/// told of is quiet, the NATS socket included (watched for reading
/// only: a level-triggered host is not woken by its writability).
#[test]
fn an_idle_federated_broker_leaves_a_host_watching_its_fds_quiet() {
    let bin = need_nats!();
    let nodes = cluster(&bin, 3, &js());
    let lp = EventLoop::new().unwrap();
    let host = FdHost::new(&lp);
    let broker = federated(&lp, &urls_for(&nodes, 0), "b1", "watched");
    let client = connect(&lp, &broker);
    publish_when_ready(&client, "Svc", &["echo"], echo_clone());
    eventually(&lp, "Svc listed", || names(&client).contains(&"Svc".into()));
    host.settle();
    for _ in 0..20 {
        assert_eq!(host.ready(0), Vec::new(), "{:?}", host.watched.borrow());
    }
    // The loop's own two, the broker's listener, both ends of the
    // client's connection and the NATS socket, all for reading.
    let watched = host.watched.borrow();
    assert!(watched.len() >= 6, "{watched:?}");
    assert!(
        watched.values().all(|e| *e == FdEvents::READABLE),
        "{watched:?}"
    );
}
