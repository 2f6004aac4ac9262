//! Reconnect (issue 12, item 2): a client with a reconnect policy lives
//! through its broker's restart. Calls in flight end once with
//! `broker_gone`; calls made meanwhile wait (bounded) or fail at once;
//! sessions are published again, subscriptions renewed, and a republish
//! that finds its name still held retries until it wins or reports.
//!
//! In one process: the broker is dropped (it tells its clients it is
//! going away) and a new one listens on the same address. With real
//! processes (`stagebus broker` killed with -9, `stagebus serve`): see
//! the second half. Every wait is bounded; nothing asserts a duration.

#[macro_use]
mod common;
mod support;

use common::*;
use stagebus::*;
use std::cell::RefCell;
use std::collections::HashMap;
use std::process::Command;
use std::rc::Rc;
use std::time::Duration;
use support::Proc;

/// A quick policy for tests: short delays, forever.
fn quick() -> ReconnectPolicy {
    ReconnectPolicy::default().with_delays(Duration::from_millis(20), Duration::from_millis(200))
}

/// A broker on `lp` listening on `addr` (a restart: same address).
fn broker_on(lp: &EventLoop, addr: &Address) -> Broker {
    Broker::new(lp, BrokerConfig::listening(vec![addr.clone()])).expect("the broker listens again")
}

/// Every connection event of `c`, as text.
fn events(c: &Client) -> Rc<RefCell<Vec<String>>> {
    let log: Rc<RefCell<Vec<String>>> = Rc::default();
    let l = log.clone();
    c.on_connection_event(move |e| {
        l.borrow_mut().push(match e {
            ConnectionEvent::Disconnected(e) => format!("disconnected {}", e.code),
            ConnectionEvent::Reconnected(_) => "reconnected".to_string(),
            ConnectionEvent::RepublishFailed { session, error } => {
                format!("republish_failed {session} {}", error.code)
            }
            other => format!("{other:?}"),
        })
    });
    log
}

fn has(log: &Rc<RefCell<Vec<String>>>, line: &str) -> bool {
    log.borrow().iter().any(|l| l == line)
}

over_both!(
    restarted_broker_gets_sessions_back_and_calls_in_flight_end_once,
    calls_while_reconnecting_wait_and_then_succeed,
    calls_while_reconnecting_fail_fast_when_asked,
    held_calls_over_the_buffer_limit_are_limit_exceeded,
    republish_retries_until_the_old_holder_lets_go,
    republish_fails_when_another_client_keeps_the_name,
    without_a_policy_the_client_closes_as_before,
);

fn restarted_broker_gets_sessions_back_and_calls_in_flight_end_once(t: Transport) {
    let h = Harness::new(t);
    let addr = h.addr.clone();
    let publisher = connect_with(
        &h.lp,
        &addr,
        ClientConfig::default().with_reconnect(quick()),
    );
    let (served, handler) = holder();
    publish(&publisher, "Svc", &["m"], handler).expect("publish");
    let caller = connect_with(
        &h.lp,
        &addr,
        ClientConfig::default().with_reconnect(quick()),
    );
    let caller_events = events(&caller);
    subscribe(&caller, "Svc").expect("subscribe");
    let calls: Vec<_> = (0..3)
        .map(|i| start_call(&caller, "Svc", "m", &arg("i", i as i64)).1)
        .collect();
    until(&h.lp, "the publisher has the calls", || {
        served.borrow().len() == 3
    });
    drop(h.broker);
    for done in &calls {
        let out = wait(&h.lp, done);
        let e = call_error(&out.last);
        assert_eq!(e.code, ErrorCode::BrokerGone, "{e}");
        assert!(e.message.contains("may or may not"), "{e}");
    }
    // The publisher heard of every delivery's end.
    until(&h.lp, "the deliveries are cancelled", || {
        served
            .borrow()
            .iter()
            .filter(|(_, i)| matches!(i, Inbound::Cancel))
            .count()
            == 3
    });
    let _broker = broker_on(&h.lp, &addr);
    until(&h.lp, "both are back", || {
        publisher.is_connected() && caller.is_connected() && has(&caller_events, "reconnected")
    });
    until_listed(&caller, &["Svc"]);
    assert!(caller.is_subscribed("Svc"));
    // The old publisher serves again, under its old handler.
    let (_, done) = start_call(&caller, "Svc", "m", &Args::new());
    let calls_seen = || {
        served
            .borrow()
            .iter()
            .filter(|(_, i)| matches!(i, Inbound::Call { .. }))
            .map(|(d, _)| d.clone())
            .collect::<Vec<_>>()
    };
    until(&h.lp, "the new call arrives", || calls_seen().len() == 4);
    let d = calls_seen()[3].clone();
    d.respond("return", &arg("ok", true)).unwrap();
    let out = wait(&h.lp, &done);
    assert!(
        matches!(out.last, CallEvent::Return { .. }),
        "{:?}",
        out.last
    );
    // Nothing arrived twice.
    h.lp.run_until(Duration::from_millis(100), || false)
        .unwrap();
    for done in &calls {
        assert_eq!(done.times(), 1);
    }
    assert_eq!(
        caller_events.borrow()[..2],
        ["disconnected broker_gone".to_string(), "reconnected".into()]
    );
}

fn calls_while_reconnecting_wait_and_then_succeed(t: Transport) {
    let h = Harness::new(t);
    let addr = h.addr.clone();
    let slow = quick().with_delays(Duration::from_millis(200), Duration::from_millis(400));
    let publisher = connect_with(
        &h.lp,
        &addr,
        ClientConfig::default().with_reconnect(quick()),
    );
    publish(&publisher, "Svc", &["m"], echo()).expect("publish");
    let caller = connect_with(&h.lp, &addr, ClientConfig::default().with_reconnect(slow));
    let log = events(&caller);
    drop(h.broker);
    until(&h.lp, "the caller lost the broker", || {
        has(&log, "disconnected broker_gone")
    });
    assert!(!caller.is_connected() && !caller.is_closed());
    // Made while reconnecting: held until the broker is back.
    let (_, done) = start_call(&caller, "Svc", "m", &arg("x", 5i64));
    let _broker = broker_on(&h.lp, &addr);
    let out = wait(&h.lp, &done);
    match &out.last {
        // The caller may come back before the publisher does.
        CallEvent::Error(e) => assert_eq!(e.code, ErrorCode::NoSuchSession, "{e}"),
        CallEvent::Return { args, .. } => assert_eq!(args, &arg("x", 5i64)),
        other => panic!("{other:?}"),
    }
    until_listed(&caller, &["Svc"]);
    let out = call(&caller, "Svc", "m", &arg("x", 6i64));
    assert!(
        matches!(out.last, CallEvent::Return { .. }),
        "{:?}",
        out.last
    );
}

fn calls_while_reconnecting_fail_fast_when_asked(t: Transport) {
    let h = Harness::new(t);
    let addr = h.addr.clone();
    let policy = quick()
        .with_delays(Duration::from_millis(200), Duration::from_millis(400))
        .with_buffering(WhileReconnecting::FailFast, 10);
    let caller = connect_with(&h.lp, &addr, ClientConfig::default().with_reconnect(policy));
    let log = events(&caller);
    drop(h.broker);
    until(&h.lp, "the caller lost the broker", || {
        has(&log, "disconnected broker_gone")
    });
    let (_, done) = start_call(&caller, "Svc", "m", &Args::new());
    let out = wait(&h.lp, &done);
    assert_eq!(call_error(&out.last).code, ErrorCode::BrokerGone);
    let listed = Slot::new();
    caller.listing(listed.setter());
    let e = wait(&h.lp, &listed).expect_err("a listing fails fast too");
    assert_eq!(e.code, ErrorCode::BrokerGone);
    // Back, it serves calls again.
    let _broker = broker_on(&h.lp, &addr);
    until(&h.lp, "reconnected", || caller.is_connected());
    assert_eq!(listing(&caller).unwrap().len(), 0);
}

fn held_calls_over_the_buffer_limit_are_limit_exceeded(t: Transport) {
    let h = Harness::new(t);
    let addr = h.addr.clone();
    let policy = quick()
        .with_delays(Duration::from_millis(300), Duration::from_millis(600))
        .with_buffering(WhileReconnecting::Wait, 2);
    let caller = connect_with(&h.lp, &addr, ClientConfig::default().with_reconnect(policy));
    let log = events(&caller);
    drop(h.broker);
    until(&h.lp, "the caller lost the broker", || {
        has(&log, "disconnected broker_gone")
    });
    let (first, _) = start_call(&caller, "Svc", "m", &Args::new());
    let (_, _second) = start_call(&caller, "Svc", "m", &Args::new());
    let e = caller
        .call("Svc", "m", &Args::new(), |_, _| {})
        .expect_err("over the limit");
    assert_eq!(e.code, ErrorCode::LimitExceeded, "{e}");
    // A cancelled held call makes room.
    assert!(caller.cancel(first));
    let (_, third) = start_call(&caller, "Svc", "m", &Args::new());
    let _broker = broker_on(&h.lp, &addr);
    let out = wait(&h.lp, &third);
    assert_eq!(call_error(&out.last).code, ErrorCode::NoSuchSession);
}

fn republish_retries_until_the_old_holder_lets_go(t: Transport) {
    let h = Harness::new(t);
    let addr = h.addr.clone();
    let policy = quick().with_delays(Duration::from_millis(150), Duration::from_millis(300));
    let publisher = connect_with(&h.lp, &addr, ClientConfig::default().with_reconnect(policy));
    let log = events(&publisher);
    publish(&publisher, "Svc", &["m"], echo()).expect("publish");
    drop(h.broker);
    let _broker = broker_on(&h.lp, &addr);
    // Another client takes the name before the publisher is back, as
    // the old connection would while the broker has not noticed it gone.
    let squatter = connect_with(&h.lp, &addr, ClientConfig::default());
    publish(&squatter, "Svc", &["m"], |_: &Delivery, _| {}).expect("the name is free");
    until(&h.lp, "the publisher is back", || has(&log, "reconnected"));
    // Its republish found the name held and retries.
    h.lp.run_until(Duration::from_millis(200), || false)
        .unwrap();
    squatter.close();
    until(&h.lp, "the publisher has its name again", || {
        let probe = connect_with(&h.lp, &addr, ClientConfig::default());
        let ok = matches!(
            call(&probe, "Svc", "m", &arg("v", 1i64)).last,
            CallEvent::Return { .. }
        );
        probe.close();
        ok
    });
    assert!(!log
        .borrow()
        .iter()
        .any(|l| l.starts_with("republish_failed")));
}

fn republish_fails_when_another_client_keeps_the_name(t: Transport) {
    let h = Harness::new(t);
    let addr = h.addr.clone();
    let mut policy = quick().with_delays(Duration::from_millis(150), Duration::from_millis(300));
    policy.republish_window = Duration::from_millis(300);
    let publisher = connect_with(&h.lp, &addr, ClientConfig::default().with_reconnect(policy));
    let log = events(&publisher);
    publish(&publisher, "Svc", &["m"], echo()).expect("publish");
    drop(h.broker);
    let _broker = broker_on(&h.lp, &addr);
    let squatter = connect_with(&h.lp, &addr, ClientConfig::default());
    publish(&squatter, "Svc", &["m"], |_: &Delivery, _| {}).expect("the name is free");
    until(&h.lp, "the republish is reported failed", || {
        has(&log, "republish_failed Svc already_exists")
    });
    // The session is no longer this client's.
    let e = publisher
        .rescind("Svc", |_| {})
        .expect_err("not published here");
    assert_eq!(e.code, ErrorCode::NotPublisher);
}

fn without_a_policy_the_client_closes_as_before(t: Transport) {
    let h = Harness::new(t);
    let caller = h.client();
    let lost = Slot::new();
    let l = lost.clone();
    caller.on_disconnect(move |e| l.set(e.clone()));
    drop(h.broker);
    let e = wait(&h.lp, &lost);
    assert_eq!(e.code, ErrorCode::BrokerGone);
    assert!(caller.is_closed());
}

// ---------------------------------------------------------------------
// Addresses.

#[test]
fn first_address_dead_second_works() {
    let h = Harness::new(Transport::Tcp);
    let dir = TempDir::new("dead-first");
    let dead = Address::Unix(dir.path().join("nobody.sock"));
    let policy = quick().with_address(h.addr.clone());
    let c = Client::connect(&h.lp, &dead, ClientConfig::default().with_reconnect(policy));
    // Made before any connection: held.
    let (_, done) = start_call(&c, "Svc", "m", &Args::new());
    let connected = Slot::new();
    c.on_connect(connected.setter());
    let info = wait(&h.lp, &connected).expect("the second address answers");
    assert_eq!(info.address, h.addr);
    assert_eq!(c.address(), h.addr);
    let out = wait(&h.lp, &done);
    assert_eq!(call_error(&out.last).code, ErrorCode::NoSuchSession);
}

#[test]
fn attempts_run_out_and_the_client_closes() {
    let lp = EventLoop::new().unwrap();
    let dir = TempDir::new("dead-all");
    let dead = Address::Unix(dir.path().join("nobody.sock"));
    let policy = quick().with_max_attempts(Some(3));
    let c = Client::connect(&lp, &dead, ClientConfig::default().with_reconnect(policy));
    let (_, done) = start_call(&c, "Svc", "m", &Args::new());
    let connected = Slot::new();
    c.on_connect(connected.setter());
    let e = wait(&lp, &connected).expect_err("nobody listens");
    assert!(c.is_closed());
    assert_eq!(
        call_error(&wait(&lp, &done).last).code,
        ErrorCode::BrokerGone
    );
    assert!(e.message.contains("cannot connect"), "{e}");
}

#[test]
fn a_policy_set_right_after_connect_covers_a_connect_that_failed_at_once() {
    let h = Harness::new(Transport::Unix);
    let dir = TempDir::new("late-policy");
    let dead = Address::Unix(dir.path().join("nobody.sock"));
    let c = Client::connect(&h.lp, &dead, ClientConfig::default());
    c.set_reconnect(Some(quick().with_address(h.addr.clone())));
    let connected = Slot::new();
    c.on_connect(connected.setter());
    wait(&h.lp, &connected).expect("the second address answers");
    assert_eq!(
        c.reconnect_policy().unwrap().addresses,
        vec![h.addr.clone()]
    );
}

// ---------------------------------------------------------------------
// Real processes: `stagebus broker` killed with -9 and restarted on the
// same address; `stagebus serve` comes back by itself.

fn stagebus(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stagebus"));
    cmd.args(args);
    cmd
}

fn broker_proc(listen: &str, ping: bool) -> (Proc, String) {
    let mut args = vec!["broker", "--listen", listen];
    if ping {
        args.extend(["--ping-interval", "0.2", "--ping-max", "2"]);
    }
    let mut broker = Proc::spawn("broker", &mut stagebus(&args));
    let line = broker.wait_line("its address", |l| l.starts_with("listening on "));
    (broker, line["listening on ".len()..].to_string())
}

fn listen_address(t: Transport, dir: &TempDir) -> String {
    match t {
        Transport::Tcp => "tcp://127.0.0.1:0".to_string(),
        Transport::Unix => format!("unix:{}", dir.path().join("b.sock").display()),
    }
}

over_both!(
    broker_killed_and_restarted_serve_and_remote_stage_come_back,
    frozen_publisher_reconnects_after_sigcont,
);

fn broker_killed_and_restarted_serve_and_remote_stage_come_back(t: Transport) {
    let dir = TempDir::new("kill9");
    let (broker, address) = broker_proc(&listen_address(t, &dir), false);
    let mut service = Proc::spawn(
        "serve",
        &mut stagebus(&["serve", "--broker", &address, "--name", "Demo"]),
    );
    service.wait_line("that it serves", |l| l.starts_with("serving Demo"));
    let lp = EventLoop::new().unwrap();
    let addr: Address = address.parse().unwrap();
    let caller = connect_with(&lp, &addr, ClientConfig::default().with_reconnect(quick()));
    let remote = Slot::new();
    RemoteStage::subscribe(&caller, "Demo", remote.setter());
    let remote = wait(&lp, &remote).expect("subscribed");
    // Calls across the restart, each counted by its id.
    let ends: Rc<RefCell<HashMap<u64, Vec<String>>>> = Rc::default();
    let start = |n: u64, method: &str, args: Args| {
        let (e1, e2) = (ends.clone(), ends.clone());
        Request::to(remote.clone(), method)
            .args(args)
            .on("return", move |_| {
                e1.borrow_mut().entry(n).or_default().push("return".into());
                Ok(())
            })
            .on("error", move |ctx| {
                let rsp = ctx.rsp().expect("a response");
                let code = rsp.error().map(|e| e.code.to_string()).unwrap_or_default();
                e2.borrow_mut().entry(n).or_default().push(code);
                Ok(())
            })
            .send()
            .expect("sent")
    };
    let mut kept = Vec::new();
    for n in 0..5 {
        kept.push(start(n, "echo", arg("n", n as i64)));
    }
    until(&lp, "the first calls end", || ends.borrow().len() == 5);
    for n in 5..10 {
        kept.push(start(n, "slow", arg("ms", 60_000i64)));
    }
    // In flight: at the service, or on their way.
    lp.run_until(Duration::from_millis(200), || false).unwrap();
    broker.signal(libc::SIGKILL);
    drop(broker);
    until(&lp, "the calls in flight end", || ends.borrow().len() == 10);
    let (_broker, again) = broker_proc(&address_to_listen(&address), false);
    assert_eq!(again, address);
    until_listed(&caller, &["Demo"]);
    // The old RemoteStage works again.
    for n in 10..15 {
        kept.push(start(n, "echo", arg("n", n as i64)));
    }
    until(&lp, "the calls after the restart end", || {
        ends.borrow().len() == 15
    });
    lp.run_until(Duration::from_millis(100), || false).unwrap();
    let ends = ends.borrow();
    for n in 0..15 {
        assert_eq!(ends[&n].len(), 1, "call {n}: {:?}", ends[&n]);
    }
    for n in (0..5).chain(10..15) {
        assert_eq!(ends[&n], ["return"], "call {n}");
    }
    for n in 5..10 {
        assert_eq!(ends[&n], ["broker_gone"], "call {n}");
    }
    // The service never stopped.
    service.signal(0);
}

/// The listen form of an address a broker printed (the same text).
fn address_to_listen(address: &str) -> String {
    address.to_string()
}

fn frozen_publisher_reconnects_after_sigcont(t: Transport) {
    let dir = TempDir::new("frozen-reconnect");
    let (_broker, address) = broker_proc(&listen_address(t, &dir), true);
    let mut service = Proc::spawn(
        "serve",
        &mut stagebus(&["serve", "--broker", &address, "--name", "Demo"]),
    );
    service.wait_line("that it serves", |l| l.starts_with("serving Demo"));
    let lp = EventLoop::new().unwrap();
    let caller = connect_with(&lp, &address.parse().unwrap(), ClientConfig::default());
    service.signal(libc::SIGSTOP);
    until_listed(&caller, &[]);
    service.signal(libc::SIGCONT);
    until_listed(&caller, &["Demo"]);
    let out = call(&caller, "Demo", "echo", &arg("x", 1i64));
    assert!(
        matches!(out.last, CallEvent::Return { .. }),
        "{:?}",
        out.last
    );
}
