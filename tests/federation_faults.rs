//! Federated brokers under faults, over real nats-server processes
//! (installed from the distribution when missing; skipped with a message
//! only when it cannot be). In every scenario each call is counted: it
//! ends exactly once (a return, or one of the errors the fault allows),
//! listings converge within a bound, and new calls succeed after
//! recovery.
//!
//! * a link reset (forced): calls across it end once, the other
//!   broker's sessions stay (no `SessionGone` at local subscribers);
//! * a broker stopped (SIGSTOP) shorter than `hb_timeout`, then
//!   continued: nothing is lost;
//! * a broker stopped past `hb_timeout`: declared dead (its calls end,
//!   its names leave), then continued: it learns it was declared dead,
//!   takes a new incarnation, ends its own calls across links once, and
//!   claims its names again;
//! * a broker killed with SIGKILL; a NATS node killed or terminated
//!   (SIGTERM) under load; two NATS nodes of three down, then back; a
//!   publisher process killed with SIGKILL during calls across brokers;
//! * a broker killed while alone: brokers started afterwards sweep its
//!   stale directory entry (no heartbeat, no responders) before their
//!   hb_timeout; with `$SYS` disconnect events (where the account
//!   imports them), a killed broker is declared dead before hb_timeout;
//! * limits: a frame over the NATS server's `max_payload` fails only its
//!   call (`limit_exceeded`), and so do calls past `max-pending-per-link`;
//!   the link stays up.
//!
//! Longer runs (rounds of NATS nodes killed and restarted) need
//! `STAGEBUS_SOAK=N`.

#[macro_use]
mod common;
#[path = "nats_support/brokers.rs"]
mod brokers;
mod nats_support;

use brokers::*;
use common::*;
use nats_support::{cluster, Node, Spec};
use stagebus::*;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// What a publisher saw, as words (`call hold`, `cancel`).
type Seen = Rc<RefCell<Vec<String>>>;

/// A publisher that answers `echo` with its args, `big` with `n` bytes,
/// `emitbig` with an emit of `n` bytes then a small return, and holds
/// `hold`; everything it sees is recorded.
fn recorder() -> (Seen, impl FnMut(&Delivery, Inbound) + Clone + 'static) {
    let seen: Seen = Rc::default();
    let s = seen.clone();
    (seen, move |d: &Delivery, inbound: Inbound| match inbound {
        Inbound::Call { method, args } => {
            s.borrow_mut().push(format!("call {method}"));
            let n = match args.get("n") {
                Some(Value::Int(n)) => *n as usize,
                _ => 0,
            };
            match method.as_str() {
                "echo" => d.respond("return", &args).unwrap(),
                "big" => d.respond("return", &arg("blob", "x".repeat(n))).unwrap(),
                "emitbig" => {
                    d.emit("emit", &arg("blob", "x".repeat(n))).unwrap();
                    let _ = d.respond("return", &arg("small", 1));
                }
                _ => {}
            }
        }
        Inbound::Recall { method, .. } => s.borrow_mut().push(format!("recall {method}")),
        Inbound::Cancel => s.borrow_mut().push("cancel".into()),
    })
}

fn count(seen: &Seen, what: &str) -> usize {
    seen.borrow().iter().filter(|s| *s == what).count()
}

/// Records the `SessionGone` notices a client gets.
fn gone_log(c: &Client) -> Rc<RefCell<Vec<(String, ErrorCode)>>> {
    let gone = Rc::new(RefCell::new(Vec::new()));
    let g = gone.clone();
    c.on_session_gone(move |name, e| g.borrow_mut().push((name.to_string(), e.code)));
    gone
}

#[test]
fn a_link_reset_ends_calls_once_and_keeps_remote_sessions() {
    let bin = need_nats!();
    debug_logs();
    let node = Node::start(&bin, "n1", &js());
    let lp = EventLoop::new().unwrap();
    let b1 = federated(&lp, &node.url(), "b1", "f1");
    let b2 = federated(&lp, &node.url(), "b2", "f1");
    let (c1, c2, sub) = (connect(&lp, &b1), connect(&lp, &b2), connect(&lp, &b1));
    let (seen2, serve2) = recorder();
    let (seen1, serve1) = recorder();
    publish_when_ready(&c2, "Svc", &["echo", "hold"], serve2);
    publish_when_ready(&c1, "Back", &["echo", "hold"], serve1);
    eventually(&lp, "Svc listed at b1", || {
        names(&sub).contains(&"Svc".into())
    });
    eventually(&lp, "Back listed at b2", || {
        names(&c2).contains(&"Back".into())
    });
    subscribe(&sub, "Svc").unwrap();
    let gone = gone_log(&sub);

    // Calls both ways across the link, held by their publishers.
    let (there, back): (Finals, Finals) = (Rc::default(), Rc::default());
    for _ in 0..8 {
        counted_call(&c1, "Svc", "hold", &there);
    }
    for _ in 0..4 {
        counted_call(&c2, "Back", "hold", &back);
    }
    until(&lp, "the calls at their publishers", || {
        count(&seen2, "call hold") == 8 && count(&seen1, "call hold") == 4
    });

    b1.reset_federation_links();
    until(&lp, "every call ended", || {
        there
            .borrow()
            .iter()
            .chain(back.borrow().iter())
            .all(|f| !f.is_empty())
    });
    until(&lp, "the publishers cancelled", || {
        count(&seen2, "cancel") == 8 && count(&seen1, "cancel") == 4
    });
    // Nothing more comes, for any call, for a while.
    run_for(&lp, Duration::from_millis(1000));
    assert_eq!(each_ended_once(&there, &[ErrorCode::PublisherGone]), 8);
    assert_eq!(each_ended_once(&back, &[ErrorCode::PublisherGone]), 4);
    assert_eq!((count(&seen2, "cancel"), count(&seen1, "cancel")), (8, 4));
    // b2 still serves Svc: its subscribers were told nothing, it is still
    // listed, and new calls go through at once.
    assert!(
        gone.borrow().is_empty(),
        "no SessionGone: {:?}",
        gone.borrow()
    );
    assert!(names(&sub).contains(&"Svc".to_string()));
    let out = call(&c1, "Svc", "echo", &arg("after", 1));
    assert!(matches!(out.last, CallEvent::Return { .. }), "{out:?}");
    let out = call(&c2, "Back", "echo", &arg("after", 2));
    assert!(matches!(out.last, CallEvent::Return { .. }), "{out:?}");
    assert!(b1.stats().link_resets >= 1, "{:?}", b1.stats());
    assert!(b2.stats().link_resets >= 1, "{:?}", b2.stats());
    assert_eq!(b1.stats().peers_declared_dead, 0);
}

#[test]
fn limits_fail_one_call_and_keep_the_link() {
    let bin = need_nats!();
    debug_logs();
    let spec = Spec {
        jetstream: true,
        extra: "max_payload: 65536".into(),
    };
    let node = Node::start(&bin, "n1", &spec);
    let lp = EventLoop::new().unwrap();
    let mut limits = Limits::default();
    limits.set(Limit::MaxPendingPerLink, 4).unwrap();
    let b1 = federated_with(&lp, &node.url(), "b1", "f2", |c| c.with_limits(limits));
    assert_eq!(b1.limit(Limit::MaxPendingPerLink), 4);
    let b2 = federated(&lp, &node.url(), "b2", "f2");
    let (c1, c2) = (connect(&lp, &b1), connect(&lp, &b2));
    let (seen, serve) = recorder();
    publish_when_ready(&c2, "Svc", &["echo", "big", "emitbig", "hold"], serve);
    eventually(&lp, "Svc listed at b1", || {
        names(&c1).contains(&"Svc".into())
    });
    let big = 100_000;

    // A call whose arguments are over max_payload: that call fails.
    let out = call(&c1, "Svc", "echo", &arg("blob", "y".repeat(big)));
    let e = call_error(&out.last);
    assert_eq!(e.code, ErrorCode::LimitExceeded, "{e}");
    assert!(e.message.contains("max_payload"), "{e}");
    // A result over max_payload: the caller is told.
    let out = call(&c1, "Svc", "big", &arg("n", big as i64));
    assert_eq!(call_error(&out.last).code, ErrorCode::LimitExceeded);
    // An emit over max_payload: the caller is told once, the publisher
    // is cancelled (its later return is dropped).
    let finals: Finals = Rc::default();
    let before = count(&seen, "cancel");
    c1.call("Svc", "emitbig", &arg("n", big as i64), {
        let f = finals.clone();
        f.borrow_mut().push(Vec::new());
        move |_, ev| f.borrow_mut()[0].push(ev)
    })
    .unwrap();
    until(&lp, "the emitbig call ended", || {
        !finals.borrow()[0].is_empty()
    });
    run_for(&lp, Duration::from_millis(500));
    assert_eq!(
        each_ended_once(&finals, &[ErrorCode::LimitExceeded]),
        1,
        "{:?}",
        finals.borrow()
    );
    let _ = before;
    // Calls pending toward b2 past max-pending-per-link (4): the newest
    // fail at once, the others are held by the publisher.
    let held: Finals = Rc::default();
    let ids: Vec<CallId> = (0..6)
        .map(|i| {
            let h = held.clone();
            h.borrow_mut().push(Vec::new());
            c1.call("Svc", "hold", &arg("i", i), move |_, ev| {
                h.borrow_mut()[i as usize].push(ev)
            })
            .unwrap()
        })
        .collect();
    until(&lp, "two refused", || {
        held.borrow().iter().filter(|f| !f.is_empty()).count() == 2
    });
    until(&lp, "four held", || count(&seen, "call hold") == 4);
    run_for(&lp, Duration::from_millis(300));
    for f in held.borrow().iter().filter(|f| !f.is_empty()) {
        assert_eq!(f.len(), 1);
        assert_eq!(call_error(&f[0]).code, ErrorCode::LimitExceeded);
    }
    for id in ids {
        c1.cancel(id);
    }
    until(&lp, "the held calls cancelled", || {
        count(&seen, "cancel") >= 4
    });
    // Bytes queued toward NATS over max-nats-queued-bytes (1 byte, set
    // while running): a new call fails at once; back to the default, it
    // goes through.
    b1.set_limit(Limit::MaxNatsQueuedBytes, 1).unwrap();
    let out = call(&c1, "Svc", "echo", &arg("small", 1));
    let e = call_error(&out.last);
    assert_eq!(e.code, ErrorCode::LimitExceeded, "{e}");
    assert!(e.message.contains("max-nats-queued-bytes"), "{e}");
    b1.set_limit(Limit::MaxNatsQueuedBytes, 64 << 20).unwrap();
    // The link never reset; other calls go on.
    let out = call(&c1, "Svc", "echo", &arg("small", 1));
    assert!(matches!(out.last, CallEvent::Return { .. }), "{out:?}");
    for b in [&b1, &b2] {
        assert_eq!(b.stats().link_resets, 0, "{:?}", b.stats());
    }
    let refused = b1.stats().federation_limits_exceeded + b2.stats().federation_limits_exceeded;
    assert!(refused >= 6, "{refused}");
}

/// An in-process broker b1 with a caller and a subscriber, and a
/// `stagebus broker` process b2 whose client publishes Svc (echo, hold):
/// b2 is the one stopped.
struct Pair {
    lp: EventLoop,
    _node: Node,
    b1: Broker,
    b2: BrokerProcess,
    c1: Client,
    c2: Client,
    sub: Client,
    seen2: Seen,
    seen1: Seen,
}

fn pair(bin: &std::path::Path, ns: &str) -> Pair {
    let node = Node::start(bin, "n1", &js());
    let lp = EventLoop::new().unwrap();
    let b1 = federated(&lp, &node.url(), "b1", ns);
    let b2 = BrokerProcess::start(&node.url(), "b2", ns);
    let c1 = connect(&lp, &b1);
    let sub = connect(&lp, &b1);
    let c2 = connect_to(&lp, &b2.addr);
    let (seen2, serve2) = recorder();
    let (seen1, serve1) = recorder();
    publish_when_ready(&c2, "Svc", &["echo", "hold"], serve2);
    publish_when_ready(&c1, "Back", &["echo", "hold"], serve1);
    eventually(&lp, "Svc listed at b1", || {
        names(&sub).contains(&"Svc".into())
    });
    eventually(&lp, "Back listed at b2", || {
        names(&c2).contains(&"Back".into())
    });
    subscribe(&sub, "Svc").unwrap();
    Pair {
        lp,
        _node: node,
        b1,
        b2,
        c1,
        c2,
        sub,
        seen2,
        seen1,
    }
}

/// Keeps 8 `echo` calls in flight from `c` to `session` while `go`
/// holds; each call's events go to `finals`.
fn keep_calling(
    c: &Client,
    session: &'static str,
    finals: &Finals,
    go: &Rc<std::cell::Cell<bool>>,
) {
    fn start(c: &Client, session: &'static str, finals: &Finals, go: &Rc<std::cell::Cell<bool>>) {
        let index = {
            let mut f = finals.borrow_mut();
            f.push(Vec::new());
            f.len() - 1
        };
        let (c2, f2, go2) = (c.clone(), finals.clone(), go.clone());
        c.call(session, "echo", &arg("i", index as i64), move |_, ev| {
            f2.borrow_mut()[index].push(ev);
            if go2.get() && f2.borrow()[index].len() == 1 {
                start(&c2, session, &f2, &go2);
            }
        })
        .unwrap();
    }
    for _ in 0..8 {
        start(c, session, finals, go);
    }
}

#[test]
fn a_broker_stopped_shorter_than_hb_timeout_loses_nothing() {
    let bin = need_nats!();
    debug_logs();
    let p = pair(&bin, "f3");
    let gone = gone_log(&p.sub);
    let finals: Finals = Rc::default();
    let go = Rc::new(std::cell::Cell::new(true));
    keep_calling(&p.c1, "Svc", &finals, &go);
    run_for(&p.lp, Duration::from_millis(500));
    // Stopped for 1 s: under hb_timeout (2 s at b2, 3 s at b1).
    p.b2.signal(libc::SIGSTOP);
    run_for(&p.lp, Duration::from_millis(1000));
    p.b2.signal(libc::SIGCONT);
    run_for(&p.lp, Duration::from_millis(1500));
    go.set(false);
    until(&p.lp, "every call ended", || {
        finals.borrow().iter().all(|f| !f.is_empty())
    });
    run_for(&p.lp, Duration::from_millis(500));
    let failed = each_ended_once(&finals, &[ErrorCode::PublisherGone]);
    eprintln!(
        "{} calls, {failed} publisher_gone; b1 {:?}",
        finals.borrow().len(),
        p.b1.stats()
    );
    assert!(
        gone.borrow().is_empty(),
        "no SessionGone: {:?}",
        gone.borrow()
    );
    assert_eq!(p.b1.stats().peers_declared_dead, 0, "{:?}", p.b1.stats());
    let out = call(&p.c1, "Svc", "echo", &arg("after", 1));
    assert!(matches!(out.last, CallEvent::Return { .. }), "{out:?}");
}

#[test]
fn a_broker_stopped_past_hb_timeout_comes_back_as_a_new_incarnation() {
    let bin = need_nats!();
    debug_logs();
    let p = pair(&bin, "f4");
    let gone = gone_log(&p.sub);
    let (there, back): (Finals, Finals) = (Rc::default(), Rc::default());
    for _ in 0..8 {
        counted_call(&p.c1, "Svc", "hold", &there);
    }
    for _ in 0..4 {
        counted_call(&p.c2, "Back", "hold", &back);
    }
    until(&p.lp, "the calls at their publishers", || {
        count(&p.seen2, "call hold") == 8 && count(&p.seen1, "call hold") == 4
    });

    // Stopped past b1's hb_timeout (3 s): b1 declares b2 dead.
    p.b2.signal(libc::SIGSTOP);
    let stopped = Instant::now();
    until(&p.lp, "b1's calls to b2 ended", || {
        there.borrow().iter().all(|f| !f.is_empty())
    });
    until(&p.lp, "b2's calls cancelled at b1", || {
        count(&p.seen1, "cancel") == 4
    });
    eventually(&p.lp, "Svc gone from b1", || {
        !names(&p.c1).contains(&"Svc".into())
    });
    eprintln!("declared dead {:?} after SIGSTOP", stopped.elapsed());
    assert_eq!(each_ended_once(&there, &[ErrorCode::PublisherGone]), 8);
    assert!(gone
        .borrow()
        .iter()
        .any(|(n, c)| n == "Svc" && *c == ErrorCode::PublisherGone));
    assert!(p.b1.stats().peers_declared_dead >= 1);
    run_for(&p.lp, Duration::from_millis(1000));

    // Continued: b2 learns it was declared dead, ends its own calls
    // across the link once, and claims Svc again.
    p.b2.signal(libc::SIGCONT);
    let continued = Instant::now();
    until(&p.lp, "b2's calls to b1 ended", || {
        back.borrow().iter().all(|f| !f.is_empty())
    });
    eventually_within(&p.lp, "Svc back at b1", Duration::from_secs(15), || {
        names(&p.c1).contains(&"Svc".into())
    });
    eprintln!("Svc listed again {:?} after SIGCONT", continued.elapsed());
    run_for(&p.lp, Duration::from_millis(1000));
    assert_eq!(each_ended_once(&back, &[ErrorCode::PublisherGone]), 4);
    assert_eq!(each_ended_once(&there, &[ErrorCode::PublisherGone]), 8);
    // The publisher at b2 was told its calls from b1 ended.
    assert_eq!(count(&p.seen2, "cancel"), 8, "{:?}", p.seen2.borrow());
    // New calls both ways.
    let out = call(&p.c1, "Svc", "echo", &arg("after", 1));
    assert!(matches!(out.last, CallEvent::Return { .. }), "{out:?}");
    let out = call(&p.c2, "Back", "echo", &arg("after", 2));
    assert!(matches!(out.last, CallEvent::Return { .. }), "{out:?}");
}

#[test]
fn a_publisher_killed_during_calls_across_brokers() {
    let bin = need_nats!();
    debug_logs();
    let node = Node::start(&bin, "n1", &js());
    let lp = EventLoop::new().unwrap();
    let b1 = federated(&lp, &node.url(), "b1", "f5");
    let b2 = federated(&lp, &node.url(), "b2", "f5");
    let (c1, c2, sub) = (connect(&lp, &b1), connect(&lp, &b2), connect(&lp, &b1));
    // The publisher is a process: `stagebus serve` on b2.
    let addr = b2.local_addresses()[0].to_string();
    let mut serve = std::process::Command::new(env!("CARGO_BIN_EXE_stagebus"))
        .args([
            "serve",
            "--broker",
            &addr,
            "--name",
            "Pub",
            "--no-reconnect",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start stagebus serve");
    eventually(&lp, "Pub listed at b1", || {
        names(&sub).contains(&"Pub".into())
    });
    subscribe(&sub, "Pub").unwrap();
    let gone = gone_log(&sub);
    let finals: Finals = Rc::default();
    for i in 0..8 {
        let f = finals.clone();
        f.borrow_mut().push(Vec::new());
        c1.call("Pub", "slow", &arg("ms", 60_000), move |_, ev| {
            if !matches!(ev, CallEvent::Emit { .. }) {
                f.borrow_mut()[i].push(ev)
            }
        })
        .unwrap();
    }
    run_for(&lp, Duration::from_millis(700));
    let _ = serve.kill();
    let _ = serve.wait();
    until(&lp, "every call ended", || {
        finals.borrow().iter().all(|f| !f.is_empty())
    });
    eventually(&lp, "Pub gone from b1", || {
        !names(&sub).contains(&"Pub".into())
    });
    run_for(&lp, Duration::from_millis(500));
    assert_eq!(each_ended_once(&finals, &[ErrorCode::PublisherGone]), 8);
    assert_eq!(
        gone.borrow().as_slice(),
        &[("Pub".to_string(), ErrorCode::PublisherGone)]
    );
    // The name is free again; calls reach its new publisher.
    let (_seen, serve2) = recorder();
    publish_when_ready(&c2, "Pub", &["echo"], serve2);
    eventually(&lp, "Pub listed again", || {
        names(&c1).contains(&"Pub".into())
    });
    let out = call(&c1, "Pub", "echo", &arg("again", 1));
    assert!(matches!(out.last, CallEvent::Return { .. }), "{out:?}");
    assert_eq!(b1.stats().link_resets, 0, "{:?}", b1.stats());
}

#[test]
fn two_nats_nodes_of_three_down_then_back() {
    let bin = need_nats!();
    debug_logs();
    let mut nodes = cluster(&bin, 3, &js());
    let lp = EventLoop::new().unwrap();
    let b1 = federated(&lp, &urls_for(&nodes, 0), "b1", "f6");
    let b3 = federated(&lp, &urls_for(&nodes, 2), "b3", "f6");
    let (c1, c3) = (connect(&lp, &b1), connect(&lp, &b3));
    let (_seen, serve) = recorder();
    publish_when_ready(&c3, "Svc", &["echo"], serve);
    eventually(&lp, "Svc listed at b1", || {
        names(&c1).contains(&"Svc".into())
    });
    let finals: Finals = Rc::default();
    let go = Rc::new(std::cell::Cell::new(true));
    keep_calling(&c1, "Svc", &finals, &go);
    run_for(&lp, Duration::from_millis(500));

    // n2 and n3 down: b3 moves to n1; calls between b1 and b3 go on.
    nodes[1].kill();
    nodes[2].kill();
    run_for(&lp, Duration::from_millis(2000));
    let during = finals.borrow().len();
    run_for(&lp, Duration::from_millis(1000));
    assert!(
        finals.borrow().len() > during,
        "calls go on with one node of three: {during} then {}",
        finals.borrow().len()
    );
    // The directory has no quorum: a publish fails with a clear error.
    let (_s, serve_new) = recorder();
    let e = publish(&c1, "New", &["echo"], serve_new.clone()).unwrap_err();
    assert_eq!(e.code, ErrorCode::Timeout, "{e}");

    // Back: the directory takes writes again, calls still flow.
    nodes[1].restart();
    nodes[2].restart();
    publish_when_ready(&c1, "New", &["echo"], serve_new);
    eventually(&lp, "New listed at b3", || {
        names(&c3).contains(&"New".into())
    });
    go.set(false);
    until(&lp, "every call ended", || {
        finals.borrow().iter().all(|f| !f.is_empty())
    });
    run_for(&lp, Duration::from_millis(500));
    let failed = each_ended_once(
        &finals,
        &[ErrorCode::PublisherGone, ErrorCode::NoSuchSession],
    );
    eprintln!(
        "{} calls, {failed} failed; b1 {:?}",
        finals.borrow().len(),
        b1.stats()
    );
    let out = call(&c3, "New", "echo", &arg("after", 1));
    assert!(matches!(out.last, CallEvent::Return { .. }), "{out:?}");
    let out = call(&c1, "Svc", "echo", &arg("after", 2));
    assert!(matches!(out.last, CallEvent::Return { .. }), "{out:?}");
}

/// A directory watch whose consumer is lost is made again without a
/// reconnect: here every consumer of the bucket's stream is deleted
/// behind the brokers' backs (a JetStream node going down, or a consumer
/// refused while the cluster has no quorum, leaves a watch as silent),
/// and a name published afterwards at one broker is still listed at the
/// other.
#[test]
fn a_lost_directory_watch_is_made_again() {
    let bin = need_nats!();
    debug_logs();
    let node = Node::start(&bin, "n1", &js());
    let lp = EventLoop::new().unwrap();
    let b1 = federated(&lp, &node.url(), "b1", "f9");
    let b2 = federated(&lp, &node.url(), "b2", "f9");
    let (c1, c2) = (connect(&lp, &b1), connect(&lp, &b2));
    let (_seen, serve) = recorder();
    publish_when_ready(&c1, "Before", &["echo"], serve.clone());
    eventually(&lp, "Before listed at b2", || {
        names(&c2).contains(&"Before".into())
    });

    let deleted = delete_kv_consumers(&lp, &node.url());
    assert!(deleted >= 2, "the two brokers' watches: {deleted} deleted");
    publish(&c1, "After", &["echo"], serve).unwrap();
    eventually(&lp, "After listed at b2", || {
        names(&c2).contains(&"After".into())
    });
    let out = call(&c2, "After", "echo", &arg("after", 1));
    assert!(matches!(out.last, CallEvent::Return { .. }), "{out:?}");
}

/// Deletes every consumer of every KV stream on the server at `url`
/// through the JetStream API; returns how many.
fn delete_kv_consumers(lp: &EventLoop, url: &str) -> usize {
    use stagebus::federation::nats::{parse_servers, NatsClient, NatsEvent, NatsOptions};
    /// Answers by request token, as they arrive.
    type Replies = Rc<RefCell<Vec<(u64, Vec<u8>)>>>;
    let replies: Replies = Rc::default();
    let connected = Rc::new(std::cell::Cell::new(false));
    let (log, up) = (replies.clone(), connected.clone());
    let nats = NatsClient::start(
        lp,
        NatsOptions::new(parse_servers(url).unwrap()),
        move |_, e| match e {
            NatsEvent::Connected { .. } => up.set(true),
            NatsEvent::Reply { token, msg } => log.borrow_mut().push((token, msg.payload)),
            _ => {}
        },
    )
    .unwrap();
    until(lp, "the test's NATS connection", || connected.get());
    let ask = |subject: &str| -> serde_json::Value {
        let token = nats.request(subject, None, b"").unwrap();
        let mut answer = None;
        until(lp, subject, || {
            let mut r = replies.borrow_mut();
            if let Some(i) = r.iter().position(|(t, _)| *t == token) {
                answer = Some(r.remove(i).1);
            }
            answer.is_some()
        });
        serde_json::from_slice(&answer.unwrap()).unwrap()
    };
    let list = |v: &serde_json::Value, key: &str| -> Vec<String> {
        v[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut deleted = 0;
    let streams = ask("$JS.API.STREAM.NAMES");
    for stream in list(&streams, "streams")
        .iter()
        .filter(|s| s.starts_with("KV_"))
    {
        let consumers = ask(&format!("$JS.API.CONSUMER.NAMES.{stream}"));
        for consumer in list(&consumers, "consumers") {
            let done = ask(&format!("$JS.API.CONSUMER.DELETE.{stream}.{consumer}"));
            assert_eq!(done["success"], true, "{done}");
            deleted += 1;
        }
    }
    nats.close();
    deleted
}

#[test]
fn a_killed_broker_ends_each_call_once_and_leaves_the_listings() {
    let bin = need_nats!();
    let nodes = cluster(&bin, 3, &js());
    let mut brokers: Vec<BrokerProcess> = (0..3)
        .map(|k| BrokerProcess::start(&urls_for(&nodes, k), &format!("b{}", k + 1), "t2"))
        .collect();
    let lp = EventLoop::new().unwrap();
    let caller = connect_to(&lp, &brokers[0].addr);
    let watcher = connect_to(&lp, &brokers[2].addr);
    let publisher = connect_to(&lp, &brokers[1].addr);
    let (served, hold) = holder();
    let hold = Rc::new(RefCell::new(hold));
    let h = hold.clone();
    publish_when_ready(&publisher, "Victim", &["hold", "echo"], move |d, i| {
        if let Inbound::Call { method, args } = &i {
            if method == "echo" {
                d.respond("return", args).unwrap();
                return;
            }
        }
        (h.borrow_mut())(d, i)
    });
    for c in [&caller, &watcher] {
        eventually(&lp, "Victim listed", || {
            names(c).contains(&"Victim".to_string())
        });
    }
    assert!(matches!(
        call(&caller, "Victim", "echo", &arg("a", 1)).last,
        CallEvent::Return { .. }
    ));

    // 16 calls in flight from b1 to b2's publisher; each counts its final
    // events.
    let finals: Vec<Rc<RefCell<Vec<CallEvent>>>> = (0..16)
        .map(|i| {
            let events = Rc::new(RefCell::new(Vec::new()));
            let e = events.clone();
            caller
                .call("Victim", "hold", &arg("i", i), move |_, ev| {
                    if !matches!(ev, CallEvent::Emit { .. }) {
                        e.borrow_mut().push(ev);
                    }
                })
                .unwrap();
            events
        })
        .collect();
    until(&lp, "16 calls at the publisher", || {
        served.borrow().len() == 16
    });

    // kill -9 of the publisher's broker.
    brokers[1].kill();
    let killed = Instant::now();
    until(&lp, "every call ended", || {
        finals.iter().all(|f| !f.borrow().is_empty())
    });
    eprintln!("calls ended {:?} after the kill", killed.elapsed());
    // Nothing more comes, for any call, for a while.
    lp.run_until(Duration::from_millis(1500), || false).unwrap();
    for (i, f) in finals.iter().enumerate() {
        let f = f.borrow();
        assert_eq!(f.len(), 1, "call {i} ended exactly once: {f:?}");
        assert_eq!(call_error(&f[0]).code, ErrorCode::PublisherGone, "call {i}");
    }
    // The name leaves the listings of the other brokers within a bound.
    for c in [&caller, &watcher] {
        eventually(&lp, "Victim gone from the listing", || {
            !names(c).contains(&"Victim".to_string())
        });
        eprintln!("listing converged {:?} after the kill", killed.elapsed());
    }
    // hb_timeout (2 s) and a few heartbeats of slack on a busy machine.
    assert!(
        killed.elapsed() < Duration::from_secs(8),
        "listings converged in {:?}",
        killed.elapsed()
    );
    // The name is free again (the dead broker's entry was deleted), and
    // calls work on the survivors.
    let echoing = |d: &Delivery, i: Inbound| {
        if let Inbound::Call { args, .. } = i {
            d.respond("return", &args).unwrap();
        }
    };
    publish_when_ready(&watcher, "Victim", &["echo"], echoing);
    eventually(&lp, "the new Victim listed at b1", || {
        names(&caller).contains(&"Victim".to_string())
    });
    let out = call(&caller, "Victim", "echo", &arg("again", true));
    assert!(matches!(out.last, CallEvent::Return { .. }), "{out:?}");
}

/// The start-up sweep: a broker killed (kill -9) while no other broker
/// ran leaves its directory entry behind, with nobody to declare it
/// dead. Brokers started afterwards (the cluster restarted) probe the
/// broker they never heard from, find no responders on its inbox, and
/// delete its entry long before their hb_timeout (60 s here, beyond the
/// wait); a live broker is never swept, and the stale name is free again.
#[test]
fn a_broker_killed_alone_is_swept_when_the_cluster_restarts() {
    let bin = need_nats!();
    let nodes = cluster(&bin, 3, &js());
    let lp = EventLoop::new().unwrap();
    let mut lone = BrokerProcess::start(&urls_for(&nodes, 0), "lone", "sweep");
    let publisher = connect_to(&lp, &lone.addr);
    publish_when_ready(&publisher, "Stale", &["echo"], echo_clone());
    lone.kill();
    drop(publisher);

    let patient = |mut c: BrokerConfig| {
        c.federation.as_mut().unwrap().hb_timeout = Duration::from_secs(60);
        c
    };
    let b1 = federated_with(&lp, &urls_for(&nodes, 1), "b1", "sweep", patient);
    let c1 = connect(&lp, &b1);
    publish_when_ready(&c1, "Live", &["echo"], echo_clone());
    let b2 = federated_with(&lp, &urls_for(&nodes, 2), "b2", "sweep", patient);
    let c2 = connect(&lp, &b2);
    eventually(&lp, "Live listed and Stale swept at b2", || {
        let n = names(&c2);
        n.contains(&"Live".to_string()) && !n.contains(&"Stale".to_string())
    });
    eventually(&lp, "Stale swept at b1", || {
        !names(&c1).contains(&"Stale".to_string())
    });
    // A survivor read the stale entry when it started and swept it
    // (usually b1, the first up; on a loaded machine b2's sweep may
    // delete the entry before b1's second probe); nobody declared a live
    // broker dead.
    let (s1, s2) = (b1.stats(), b2.stats());
    assert!(
        (1..=2).contains(&(s1.peers_swept + s2.peers_swept)),
        "{s1:?} {s2:?}"
    );
    assert_eq!(s1.peers_declared_dead, s1.peers_swept, "{s1:?}");
    assert_eq!(s2.peers_declared_dead, s2.peers_swept, "{s2:?}");
    assert_eq!(s1.link_resets + s2.link_resets, 0, "{s1:?} {s2:?}");
    // The name is free again, and calls across the survivors work.
    publish_when_ready(&c2, "Stale", &["echo"], echo_clone());
    eventually(&lp, "the new Stale listed at b1", || {
        names(&c1).contains(&"Stale".to_string())
    });
    for (c, session) in [(&c1, "Stale"), (&c2, "Live")] {
        let out = call(c, session, "echo", &arg("a", 1));
        assert!(matches!(out.last, CallEvent::Return { .. }), "{out:?}");
    }
    drop((c1, c2));
    b1.close();
    b2.close();
}

/// NATS accounts where brokers (user `app`) receive the servers' client
/// disconnect events: the system account exports them, `APP` imports
/// them.
const SYS_EVENTS_ACCOUNTS: &str = r#"
accounts {
  SYS: { users: [{user: sys, password: sys}], exports: [{stream: "$SYS.ACCOUNT.*.DISCONNECT"}] }
  APP: {
    jetstream: enabled
    users: [{user: app, password: app}]
    imports: [{stream: {account: SYS, subject: "$SYS.ACCOUNT.*.DISCONNECT"}}]
  }
}
system_account: SYS
"#;

/// `$SYS` disconnect events (`sys_events`, where the account imports
/// them): a broker killed (kill -9) while its link is idle is declared
/// dead by a peer that heard of its connection closing and probed it,
/// long before that peer's hb_timeout (60 s here, beyond the wait).
#[test]
fn a_killed_broker_is_declared_dead_on_its_disconnect_event() {
    let bin = need_nats!();
    debug_logs();
    let spec = Spec {
        jetstream: true,
        extra: SYS_EVENTS_ACCOUNTS.into(),
    };
    let nodes = cluster(&bin, 3, &spec);
    let urls = |k| urls_for(&nodes, k).replace("nats://", "nats://app:app@");
    let lp = EventLoop::new().unwrap();
    let b1 = federated_with(&lp, &urls(0), "b1", "sys", |mut c| {
        let f = c.federation.as_mut().unwrap();
        f.hb_timeout = Duration::from_secs(60);
        f.sys_events = true;
        c
    });
    let c1 = connect(&lp, &b1);
    let mut b2 = BrokerProcess::start(&urls(1), "b2", "sys");
    let publisher = connect_to(&lp, &b2.addr);
    publish_when_ready(&publisher, "Doomed", &["echo"], echo_clone());
    eventually(&lp, "Doomed listed at b1", || {
        names(&c1).contains(&"Doomed".to_string())
    });
    // A call across: b1 has heard b2, so what follows is no start-up
    // sweep.
    let out = call(&c1, "Doomed", "echo", &arg("a", 1));
    assert!(matches!(out.last, CallEvent::Return { .. }), "{out:?}");
    b2.kill();
    eventually(&lp, "Doomed gone from b1's listing", || {
        !names(&c1).contains(&"Doomed".to_string())
    });
    let s = b1.stats();
    assert_eq!((s.peers_declared_dead, s.peers_swept), (1, 0), "{s:?}");
    drop((c1, publisher));
    b1.close();
}

/// With `sys_events` on, a NATS node put in lame-duck mode under a broker
/// reports the broker's connection closed as it moves to another node:
/// the broker is probed but keeps answering, and nobody declares it dead;
/// calls across work afterwards.
#[test]
fn disconnect_events_of_a_broker_moving_off_a_lame_duck_node_declare_nobody_dead() {
    let bin = need_nats!();
    debug_logs();
    let spec = Spec {
        jetstream: true,
        extra: SYS_EVENTS_ACCOUNTS.into(),
    };
    let mut nodes = cluster(&bin, 3, &spec);
    let urls = |nodes: &[Node], k| urls_for(nodes, k).replace("nats://", "nats://app:app@");
    let lp = EventLoop::new().unwrap();
    let watchful = |mut c: BrokerConfig| {
        let f = c.federation.as_mut().unwrap();
        f.hb_timeout = Duration::from_secs(60);
        f.sys_events = true;
        c
    };
    let b1 = federated_with(&lp, &urls(&nodes, 0), "b1", "sysmove", watchful);
    let b2 = federated_with(&lp, &urls(&nodes, 1), "b2", "sysmove", watchful);
    let (c1, c2) = (connect(&lp, &b1), connect(&lp, &b2));
    publish_when_ready(&c2, "Mover", &["echo"], echo_clone());
    eventually(&lp, "Mover listed at b1", || {
        names(&c1).contains(&"Mover".to_string())
    });
    let echo_ok = |c: &Client| {
        let out = call(c, "Mover", "echo", &arg("a", 1));
        assert!(matches!(out.last, CallEvent::Return { .. }), "{out:?}");
    };
    echo_ok(&c1);
    // Lame-duck mode (SIGUSR2): the server tells its clients to move,
    // b2 leaves it for another node, and the server, still up, reports
    // b2's connection closed.
    nodes[1].signal(libc::SIGUSR2);
    run_for(&lp, Duration::from_millis(2500));
    nodes[1].kill();
    eventually(&lp, "a call across after b2 moved", || {
        matches!(
            call(&c1, "Mover", "echo", &arg("a", 2)).last,
            CallEvent::Return { .. }
        )
    });
    assert!(names(&c1).contains(&"Mover".to_string()));
    for b in [&b1, &b2] {
        let s = b.stats();
        assert_eq!((s.peers_declared_dead, s.incarnations), (0, 0), "{s:?}");
    }
    drop((c1, c2));
    b1.close();
    b2.close();
}

#[test]
fn a_nats_node_killed_under_load_ends_each_call_once() {
    load_with_faults(1, libc::SIGKILL);
}

#[test]
fn a_nats_node_terminated_under_load_ends_each_call_once() {
    load_with_faults(1, libc::SIGTERM);
}

/// With STAGEBUS_SOAK=N: N rounds of a random NATS node killed and
/// restarted under the same load, each call counted.
#[test]
fn soak_nats_nodes_killed_and_restarted() {
    let Some(rounds) = std::env::var("STAGEBUS_SOAK")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    else {
        eprintln!("SKIP: set STAGEBUS_SOAK=N for N rounds of faults");
        return;
    };
    load_with_faults(rounds.max(1), libc::SIGKILL);
}

/// 16 calls always in flight from b1 to b3 while NATS nodes get
/// `signal` (the one under b3 first), each call counted.
fn load_with_faults(rounds: usize, signal: i32) {
    let bin = need_nats!();
    debug_logs();
    let mut nodes = cluster(&bin, 3, &js());
    let lp = EventLoop::new().unwrap();
    let b1 = federated(&lp, &urls_for(&nodes, 0), "b1", "t3");
    let b3 = federated(&lp, &urls_for(&nodes, 2), "b3", "t3");
    let caller = connect(&lp, &b1);
    let publisher = connect(&lp, &b3);
    let echoing = |d: &Delivery, i: Inbound| {
        if let Inbound::Call { args, .. } = i {
            d.respond("return", &args).unwrap();
        }
    };
    publish_when_ready(&publisher, "Load", &["echo"], echoing);
    eventually(&lp, "Load listed at b1", || {
        names(&caller).contains(&"Load".to_string())
    });

    // 16 calls always in flight from b1 to b3; each counts its finals.
    type Finals = Rc<RefCell<Vec<Vec<CallEvent>>>>;
    let finals: Finals = Rc::default();
    fn start(c: &Client, finals: &Finals, go: &Rc<std::cell::Cell<bool>>) {
        let index = {
            let mut f = finals.borrow_mut();
            f.push(Vec::new());
            f.len() - 1
        };
        let (c2, f2, go2) = (c.clone(), finals.clone(), go.clone());
        c.call("Load", "echo", &arg("i", index as i64), move |_, ev| {
            f2.borrow_mut()[index].push(ev);
            if go2.get() && f2.borrow()[index].len() == 1 {
                start(&c2, &f2, &go2);
            }
        })
        .unwrap();
    }
    let go = Rc::new(std::cell::Cell::new(true));
    for _ in 0..16 {
        start(&caller, &finals, &go);
    }
    lp.run_until(Duration::from_millis(700), || false).unwrap();
    let before = finals.borrow().len();
    // kill -9 of the node under the publisher's broker first; then (soak)
    // of the nodes in turn, each restarted after a while.
    for round in 0..rounds {
        let k = (2 + round) % 3;
        nodes[k].signal(signal);
        lp.run_until(Duration::from_millis(1500), || false).unwrap();
        nodes[k].kill();
        if rounds > 1 {
            nodes[k].restart();
            lp.run_until(Duration::from_millis(1500), || false).unwrap();
        }
    }
    go.set(false);
    until(&lp, "every call ended", || {
        finals.borrow().iter().all(|f| !f.is_empty())
    });
    lp.run_until(Duration::from_millis(1000), || false).unwrap();
    let finals = finals.borrow();
    let mut gone = 0;
    for (i, f) in finals.iter().enumerate() {
        assert_eq!(f.len(), 1, "call {i} ended exactly once: {f:?}");
        match &f[0] {
            CallEvent::Return { args, .. } => assert_eq!(args, &arg("i", i as i64)),
            // The fault errors the design allows: the link lost, or (a
            // peer cut off long enough to be declared dead) the name
            // gone for a moment.
            CallEvent::Error(e) => {
                assert!(
                    matches!(e.code, ErrorCode::PublisherGone | ErrorCode::NoSuchSession),
                    "call {i}: {e}"
                );
                gone += 1;
            }
            other => panic!("call {i}: {other:?}"),
        }
    }
    eprintln!(
        "{} calls, {before} before the kill, {gone} ended publisher_gone; b1 {:?}",
        finals.len(),
        b1.stats()
    );
    assert!(finals.len() > before, "calls went on after the kill");
    // After recovery, new calls succeed.
    eventually(&lp, "Load listed at b1 again", || {
        names(&caller).contains(&"Load".to_string())
    });
    let out = call(&caller, "Load", "echo", &arg("after", 1));
    assert!(matches!(out.last, CallEvent::Return { .. }), "{out:?}");
    assert!(b3.stats().nats_reconnects >= 1, "{:?}", b3.stats());
}
