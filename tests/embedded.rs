//! Embedding: a host loop that only knows `poll(2)` drives the library
//! through [`EventLoop::fd`], [`EventLoop::timeout_ms`] and
//! [`EventLoop::dispatch`], as libevent, libev, GLib or POE would. The
//! same publish/subscribe/call flow (with an emit, a recall and a timer)
//! driven that way and driven by `run_until` gives the same transcript.
//! And work started outside `dispatch` by an API call makes the fd
//! readable, so the host needs no other hook.
//!
//! A host that watches the loop's fds one by one ([`EventLoop::watch_fds`],
//! [`EventLoop::dispatch_fd`]) gets the same transcript, is woken by the
//! same API calls and timers, and is never woken by an idle loop.

#[macro_use]
mod common;

use common::fd_host::FdHost;
use common::*;
use stagebus::*;
use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

over_both!(
    poll_driven_flow_matches_run_until,
    api_calls_outside_dispatch_make_the_fd_readable,
    connected_and_idle_the_loop_has_no_deadline,
    a_far_timer_reaches_a_host_sleeping_without_timeout,
    fd_by_fd_flow_matches_run_until,
    fd_by_fd_api_calls_outside_dispatch_wake_the_host,
    fd_by_fd_a_far_timer_reaches_the_host,
    fd_by_fd_the_host_watches_what_the_loop_has,
    fd_by_fd_a_peer_held_back_is_not_watched_for_reading,
);

/// Whether the loop's fd is readable now (a zero-timeout poll).
fn fd_readable(lp: &EventLoop) -> bool {
    let mut pfd = libc::pollfd {
        fd: lp.fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    assert!(n >= 0, "poll: {}", std::io::Error::last_os_error());
    n == 1
}

/// What a host loop does: wait for the fd or the timeout, then dispatch.
/// Nothing else drives the library. Returns how many times it dispatched.
#[track_caller]
fn host_loop(lp: &EventLoop, done: impl Fn() -> bool) -> u32 {
    let deadline = Instant::now() + LIMIT;
    let mut dispatches = 0;
    while !done() {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "the host loop timed out");
        // No deadline from the library: wait for the fd alone (bounded
        // here only so that a broken test ends).
        let wait_ms = lp
            .timeout_ms()
            .unwrap_or(u64::MAX)
            .min(left.as_millis() as u64 + 1);
        let mut pfd = libc::pollfd {
            fd: lp.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd; the timeout fits an i32.
        let n = unsafe { libc::poll(&mut pfd, 1, wait_ms.min(i32::MAX as u64) as i32) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            assert_eq!(e.kind(), std::io::ErrorKind::Interrupted, "poll: {e}");
            continue;
        }
        // Readable or timed out: either way the library gets its turn.
        lp.dispatch().unwrap();
        dispatches += 1;
    }
    dispatches
}

/// Sets up the whole flow as a chain of completions on `lp`; the
/// transcript fills as it runs, `done` is set at the end. Everything
/// the flow needs is kept alive by the returned objects.
fn start_flow(lp: &EventLoop, addr: &Address) -> (Log<String>, Rc<Cell<bool>>, Vec<Client>) {
    let say: Log<String> = log();
    let done = Rc::new(Cell::new(false));
    let publisher = Client::connect(lp, addr, ClientConfig::default());
    let caller = Client::connect(lp, addr, ClientConfig::default());

    let s = say.clone();
    let serve = move |d: &Delivery, inbound: Inbound| {
        s.borrow_mut().push(format!(
            "publisher: {inbound:?} (route {}, origin {})",
            d.id(),
            d.origin()
        ));
        match inbound {
            Inbound::Call { args, .. } => {
                let a = args.get("a").and_then(Value::as_int).unwrap();
                let b = args.get("b").and_then(Value::as_int).unwrap();
                d.emit("need_more", &arg("sum", a + b)).unwrap();
            }
            Inbound::Recall { args, .. } => {
                let c = args.get("c").and_then(Value::as_int).unwrap();
                d.respond("return", &arg("total", 5 + c)).unwrap();
            }
            Inbound::Cancel => {}
        }
    };

    let (s, d) = (say.clone(), done.clone());
    caller.on_session_gone(move |name, e| {
        s.borrow_mut().push(format!("caller: {name} gone: {e}"));
        d.set(true);
    });

    let (s, p, c, lp2) = (say.clone(), publisher.clone(), caller.clone(), lp.clone());
    publisher.on_connect(move |r| {
        s.borrow_mut()
            .push(format!("publisher connected: {}", r.unwrap().connection_id));
        let (s, p2) = (s.clone(), p.clone());
        p.publish("Calc", &["add", "more"], serve, move |r| {
            s.borrow_mut().push(format!("published: {r:?}"));
            let (s2, c1) = (s.clone(), c.clone());
            c1.on_connect(move |r| {
                s2.borrow_mut()
                    .push(format!("caller connected: {}", r.unwrap().connection_id));
                let (s3, c3) = (s2.clone(), c.clone());
                c.subscribe("Calc", move |r| {
                    s3.borrow_mut().push(format!("subscribed: {r:?}"));
                    let (s4, c4) = (s3.clone(), c3.clone());
                    c3.listing(move |r| {
                        s4.borrow_mut().push(format!("listing: {r:?}"));
                        let (s5, c5) = (s4.clone(), c4.clone());
                        let args = Args::new().with("a", 2).with("b", 3);
                        c4.call("Calc", "add", &args, move |id, ev| {
                            s5.borrow_mut().push(format!("caller: {id:?} {ev:?}"));
                            match ev {
                                CallEvent::Emit { .. } => {
                                    c5.recall(id, "more", &arg("c", 4)).unwrap();
                                }
                                CallEvent::Return { .. } => {
                                    // A timer between steps: the host must
                                    // honour timeout_ms, not only the fd.
                                    let (s6, p6) = (s5.clone(), p2.clone());
                                    let armed = Instant::now();
                                    lp2.add_timer(Duration::from_millis(5), move |_| {
                                        assert!(armed.elapsed() >= Duration::from_millis(5));
                                        s6.borrow_mut().push("timer fired".into());
                                        p6.rescind("Calc", |r| r.unwrap()).unwrap();
                                    });
                                }
                                CallEvent::Error(e) => panic!("{e}"),
                            }
                        })
                        .unwrap();
                    });
                });
            });
        });
    });
    (say, done, vec![publisher, caller])
}

fn poll_driven_flow_matches_run_until(t: Transport) {
    // Driven by run_until.
    let h = Harness::new(t);
    let (expected, done, _keep) = start_flow(&h.lp, &h.addr);
    h.until("the flow to finish", || done.get());
    let expected = expected.borrow().clone();
    assert_eq!(expected.len(), 11, "{expected:#?}");

    // Driven by poll(2) + timeout_ms + dispatch only, on a fresh loop and
    // broker (the same ids: connection and route numbers start afresh).
    let h2 = Harness::new(t);
    let (got, done2, _keep2) = start_flow(&h2.lp, &h2.addr);
    let dispatches = host_loop(&h2.lp, || done2.get());
    assert!(dispatches > 0);
    assert_eq!(*got.borrow(), expected);
    assert_eq!(h2.broker.stats().pending_calls, 0);
}

/// Dispatches until the loop has nothing to do now: the fd is quiet and
/// the timeout is not zero.
#[track_caller]
fn settle(lp: &EventLoop) {
    for _ in 0..100 {
        if !fd_readable(lp) && lp.timeout_ms() != Some(0) {
            return;
        }
        lp.dispatch().unwrap();
    }
    panic!("the loop never went quiet");
}

/// Once every connection said hello, nothing is due but the pings of
/// idle connections: a host does not wake for the broker's handshake
/// deadlines or the clients' connect timeouts, and with pinging off it
/// sleeps on the fd alone.
fn connected_and_idle_the_loop_has_no_deadline(t: Transport) {
    let h = Harness::with(t, |c| c.limits.ping_interval = Duration::ZERO);
    let quiet = ClientConfig::default().with_ping(Duration::ZERO, 2);
    let clients = [h.client_with(quiet.clone()), h.client_with(quiet)];
    settle(&h.lp);
    assert!(clients.iter().all(Client::is_connected));
    assert_eq!(h.lp.timeout_ms(), None);
    // With the default pings, the next wake-up is a ping tick, far beyond
    // the handshake and connect deadlines (10 s): the loop's alarm inside
    // the fd stands for it, so the host has no timeout either.
    let h = Harness::new(t);
    let clients = [h.client(), h.client()];
    settle(&h.lp);
    assert!(clients.iter().all(Client::is_connected));
    assert_eq!(h.lp.timeout_ms(), None, "the ping tick is in the fd");
}

/// A timer far away (here 300 ms, a ping tick in real use) gives the host
/// no timeout: the loop's alarm turns the fd readable when it is due, and
/// a host that only waits for the fd runs it on time, never early.
fn a_far_timer_reaches_a_host_sleeping_without_timeout(t: Transport) {
    let h = Harness::with(t, |c| c.limits.ping_interval = Duration::ZERO);
    let quiet = ClientConfig::default().with_ping(Duration::ZERO, 2);
    let client = h.client_with(quiet);
    settle(&h.lp);
    assert!(client.is_connected());
    let after = Duration::from_millis(300);
    let start = Instant::now();
    let fired = Rc::new(Cell::new(None));
    let f = fired.clone();
    h.lp.add_timer(after, move |_| f.set(Some(Instant::now())));
    assert_eq!(h.lp.timeout_ms(), None, "the timer is in the fd");
    host_loop(&h.lp, || fired.get().is_some());
    let at = fired.get().unwrap();
    assert!(at.duration_since(start) >= after, "never early");
}

/// Starts one kind of API call; the flag is set when it completed.
type Start = Box<dyn Fn(Rc<Cell<bool>>)>;

/// Each kind of API call a host may make while idle: publish, listing,
/// subscribe, call, timer, defer, a post from another thread, close.
fn api_calls(lp: &EventLoop, publisher: &Client, caller: &Client) -> Vec<(&'static str, Start)> {
    let (p, c) = (publisher.clone(), caller.clone());
    vec![
        (
            "publish",
            Box::new(move |f| p.publish("A", &["echo"], echo(), move |r| f.set(r.is_ok()))),
        ),
        ("listing", {
            let c = c.clone();
            Box::new(move |f| c.listing(move |r| f.set(r.unwrap().len() == 1)))
        }),
        ("subscribe", {
            let c = c.clone();
            Box::new(move |f| c.subscribe("A", move |r| f.set(r.is_ok())))
        }),
        ("call", {
            let c = c.clone();
            Box::new(move |f| {
                c.call("A", "echo", &arg("x", 1), move |_, ev| {
                    f.set(matches!(ev, CallEvent::Return { .. }))
                })
                .unwrap();
            })
        }),
        ("timer", {
            let lp = lp.clone();
            Box::new(move |f| {
                lp.add_timer(Duration::from_millis(1), move |_| f.set(true));
            })
        }),
        ("defer", {
            let lp = lp.clone();
            Box::new(move |f| lp.defer(move |_| f.set(true)))
        }),
        ("post from another thread", {
            let remote = lp.remote();
            Box::new(move |f| {
                // The flag is not Send: the other thread posts a plain
                // wake-up and the check happens here, in the closure
                // that the loop runs.
                let r = remote.clone();
                std::thread::spawn(move || r.post(|_| {}).unwrap())
                    .join()
                    .unwrap();
                f.set(true);
            })
        }),
        ("close", {
            let c = c.clone();
            Box::new(move |f| {
                c.listing(move |r| f.set(r.is_err()));
                c.close();
            })
        }),
    ]
}

fn api_calls_outside_dispatch_make_the_fd_readable(t: Transport) {
    let h = Harness::new(t);
    let publisher = h.client();
    let caller = h.client();

    // Each kind of API call, made while the host is idle, wakes the host;
    // the host's loop then completes it with nothing but poll + dispatch.
    let steps = api_calls(&h.lp, &publisher, &caller);
    for (what, start) in steps {
        settle(&h.lp);
        assert!(!fd_readable(&h.lp), "{what}: idle before");
        let flag = Rc::new(Cell::new(false));
        start(flag.clone());
        assert!(fd_readable(&h.lp), "{what}: the fd is readable at once");
        host_loop(&h.lp, || flag.get());
    }
}

fn fd_by_fd_flow_matches_run_until(t: Transport) {
    let h = Harness::new(t);
    let (expected, done, _keep) = start_flow(&h.lp, &h.addr);
    h.until("the flow to finish", || done.get());
    let expected = expected.borrow().clone();

    let h2 = Harness::new(t);
    let host = FdHost::new(&h2.lp);
    let (got, done2, _keep2) = start_flow(&h2.lp, &h2.addr);
    assert!(host.run(|| done2.get()) > 0);
    assert_eq!(*got.borrow(), expected);
    assert_eq!(h2.broker.stats().pending_calls, 0);
}

/// The same API calls as above, each made while the host is idle, make
/// one of the watched fds ready (the loop's wake-up), and the host
/// completes them with nothing but its poll, `dispatch_fd` and
/// `dispatch`.
fn fd_by_fd_api_calls_outside_dispatch_wake_the_host(t: Transport) {
    let h = Harness::new(t);
    let host = FdHost::new(&h.lp);
    let publisher = h.client();
    let caller = h.client();
    for (what, start) in api_calls(&h.lp, &publisher, &caller) {
        host.settle();
        let flag = Rc::new(Cell::new(false));
        start(flag.clone());
        assert!(
            !host.ready(0).is_empty(),
            "{what}: a watched fd (the wake-up) is ready at once"
        );
        host.run(|| flag.get());
    }
    // Level-triggered, the wake-up was read back: an idle loop wakes
    // nobody.
    host.settle();
    assert!(host.ready(0).is_empty());
}

/// A far timer is in the alarm's fd, which the host watches: no
/// timeout, and the timer runs on time.
fn fd_by_fd_a_far_timer_reaches_the_host(t: Transport) {
    let h = Harness::with(t, |c| c.limits.ping_interval = Duration::ZERO);
    let host = FdHost::new(&h.lp);
    let quiet = ClientConfig::default().with_ping(Duration::ZERO, 2);
    let client = h.client_with(quiet);
    host.run(|| client.is_connected());
    host.settle();
    let after = Duration::from_millis(300);
    let start = Instant::now();
    let fired = Rc::new(Cell::new(None));
    let f = fired.clone();
    h.lp.add_timer(after, move |_| f.set(Some(Instant::now())));
    assert_eq!(h.lp.timeout_ms(), None, "the timer is in the alarm's fd");
    host.run(|| fired.get().is_some());
    assert!(
        fired.get().unwrap().duration_since(start) >= after,
        "never early"
    );
}

/// The host is told of every fd the loop waits on as it comes and goes:
/// the loop's own two, the broker's listener, each connection; dropped
/// when closed, all of them when the host stops watching, after which
/// `dispatch_fd` is refused.
fn fd_by_fd_the_host_watches_what_the_loop_has(t: Transport) {
    let h = Harness::new(t);
    let host = FdHost::new(&h.lp);
    // The wake-up, the alarm and the broker's listener.
    assert_eq!(host.watched.borrow().len(), 3, "{:?}", host.watched);
    let client = h.client();
    host.run(|| client.is_connected());
    host.settle();
    // The client's socket and the broker's end of it.
    assert_eq!(host.watched.borrow().len(), 5, "{:?}", host.watched);
    assert!(host
        .watched
        .borrow()
        .values()
        .all(|e| *e == FdEvents::READABLE));
    client.close();
    host.settle();
    assert_eq!(host.watched.borrow().len(), 3, "{:?}", host.watched);
    // Dropped without a close, the same.
    let dropped = h.client();
    host.run(|| dropped.is_connected());
    assert_eq!(host.watched.borrow().len(), 5, "{:?}", host.watched);
    drop(dropped);
    host.settle();
    assert_eq!(host.watched.borrow().len(), 3, "{:?}", host.watched);
    h.lp.unwatch_fds().unwrap();
    assert!(host.watched.borrow().is_empty());
    assert!(!h.lp.is_watched_by_fd());
    let refused = h.lp.dispatch_fd(0, FdEvents::READABLE).unwrap_err();
    assert_eq!(refused.code, ErrorCode::InvalidState);
    // Back to the one fd: run_until drives it as before.
    let again = h.client();
    h.until("a client to connect", || again.is_connected());
}

/// A peer the broker stops reading (its answers pile up unread:
/// backpressure) is not watched for reading meanwhile, or a
/// level-triggered host would be woken on every pass for requests nobody
/// reads; once the peer reads its answers the broker reads on, and every
/// request is answered.
fn fd_by_fd_a_peer_held_back_is_not_watched_for_reading(t: Transport) {
    let h = Harness::with(t, |c| c.limits.output_high_water = 1024);
    let host = FdHost::new(&h.lp);
    // More requests than the broker reads at once (160 KB), and more
    // answers (listings of twenty sessions, 20 MB) than the sockets
    // between broker and peer hold, TCP's included.
    let publisher = h.client();
    for i in 0..20 {
        let name = format!("a_session_with_a_rather_long_name_{i:02}");
        publish(&publisher, &name, &["method"], echo()).unwrap();
    }
    let mut raw = Raw::handshaken(&h.lp, &h.addr);
    let sent = 20_000u64;
    let mut unsent: Vec<u8> = (1..=sent)
        .flat_map(|id| frame_bytes(&stagebus::wire::Frame::Listing { id }))
        .collect();
    // One pass of the host: the requests that fit written, then whatever
    // is ready dispatched (the timeout, if nothing is). Whether it found
    // nothing to do.
    let pass = |unsent: &mut Vec<u8>, raw: &mut Raw| {
        match std::io::Write::write(&mut raw.stream, unsent) {
            Ok(n) => drop(unsent.drain(..n)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("write: {e}"),
        }
        let ready = host.ready(0);
        let idle = ready.is_empty() && h.lp.timeout_ms() != Some(0);
        if ready.is_empty() {
            h.lp.dispatch().unwrap();
        }
        for (fd, events) in ready {
            h.lp.dispatch_fd(fd, events).unwrap();
        }
        idle
    };
    // The peer reads nothing: the broker answers until the sockets are
    // full, then stops reading it, and the host goes idle although the
    // peer's requests wait unread.
    let deadline = Instant::now() + LIMIT;
    while !pass(&mut unsent, &mut raw) {
        assert!(Instant::now() < deadline, "the host never went idle");
    }
    assert!(h.broker.stats().reads_paused > 0);
    let mut answered = raw.received().len() as u64;
    assert!(answered < sent, "all answered before a pause");
    // The peer reads; the broker reads on and answers everything.
    let deadline = Instant::now() + LIMIT;
    while answered < sent {
        assert!(Instant::now() < deadline, "{answered} of {sent} answered");
        answered += raw.received().len() as u64;
        pass(&mut unsent, &mut raw);
    }
    assert_eq!(answered, sent);
}
