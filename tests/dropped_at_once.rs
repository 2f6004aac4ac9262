//! A request cancelled (or dropped) in the loop turn it was sent in never
//! reaches its callee, local or remote; once the loop has turned, the
//! callee may have started it, and then it sees the cancel (DESIGN.md
//! guarantee 3, location transparency).
//!
//! Locally the callee's method runs from a task deferred by the send,
//! which finds the request closed. Through a broker the client keeps the
//! deliver in its output until the turn's flush, and a cancel before it
//! takes the deliver back: no frame leaves, the broker keeps no route.
//!
//! "Never ran" is made certain without sleeping: a second request to the
//! same stage travels the same FIFO path after the dropped one and is
//! answered; a request that ran before it would have been counted.

#[macro_use]
mod common_requests;

use common_requests::*;
use stagebus::*;
use std::cell::RefCell;
use std::rc::Rc;

/// A stage whose `work` counts its runs and cancels and holds its
/// request unanswered, and whose `mark` answers at once.
fn callee(lp: &EventLoop, runs: &Counter, cancels: &Counter) -> Stage {
    let stage = Stage::new(lp, "callee");
    let (runs, cancels) = (runs.clone(), cancels.clone());
    stage.on("work", move |ctx| {
        runs.bump();
        let req = ctx.req().unwrap();
        req.on_cancel(cancels.hook());
        // Held, so that the request stays open until its caller cancels.
        ctx.stage()
            .unwrap()
            .data()
            .set(&format!("held{}", runs.get()), req.clone());
        Ok(())
    });
    stage.on("mark", |ctx| ctx.ret("marked", &Args::new()));
    stage
}

/// Sends `mark` to `target` and waits for its answer: every request sent
/// to the same stage before it has run by then, if it ever will.
#[track_caller]
fn mark(fx: &Fixture, target: &Target) {
    let (_req, outcome) = send_recorded(target.clone(), "mark", Args::new());
    run_until(&fx.lp, "the mark", || outcome.borrow().last.is_some());
    assert_eq!(outcome.borrow().kind(), Some("marked"));
}

/// The broker's pending calls and stray frames (zero locally).
fn broker_counts(fx: &Fixture) -> (usize, u64) {
    fx.broker.as_ref().map_or((0, 0), |b| {
        let s = b.stats();
        (s.pending_calls, s.dropped_stray)
    })
}

fn sent_and_dropped_in_the_same_turn_never_reaches_the_callee(mode: Mode) {
    let fx = Fixture::new(mode);
    let (runs, cancels) = (Counter::new(), Counter::new());
    let target = fx.target(&callee(&fx.lp, &runs, &cancels));
    let (_, stray_before) = broker_counts(&fx);

    // Outside the loop: sent, then dropped before the loop runs again.
    drop(Request::to(target.clone(), "work").send().unwrap());
    // Inside a callback of the loop, the usual place: sent and dropped in
    // the same handler, and sent and cancelled with others sent between.
    let t = target.clone();
    let done = Rc::new(RefCell::new(None));
    let d = done.clone();
    fx.lp.defer(move |_| {
        drop(Request::to(t.clone(), "work").send().unwrap());
        let first = Request::to(t.clone(), "work").send().unwrap();
        let kept = Request::to(t.clone(), "work").send().unwrap();
        assert!(first.cancel());
        *d.borrow_mut() = Some(kept);
    });
    run_until(&fx.lp, "the callback", || done.borrow().is_some());
    mark(&fx, &target);

    assert_eq!(runs.get(), 1, "only the request kept may run");
    assert_eq!(cancels.get(), 0, "a request that never ran sees no cancel");
    drop(done.borrow_mut().take());
    run_until(&fx.lp, "the kept request's cancel", || cancels.get() == 1);
    fx.barrier();
    let (pending, stray) = broker_counts(&fx);
    assert_eq!(pending, 0, "the broker keeps no route");
    assert_eq!(stray, stray_before, "nothing stray reached the broker");
}

fn dropped_on_a_later_turn_runs_and_sees_its_cancel(mode: Mode) {
    let fx = Fixture::new(mode);
    let (runs, cancels) = (Counter::new(), Counter::new());
    let target = fx.target(&callee(&fx.lp, &runs, &cancels));

    let req = Request::to(target.clone(), "work").send().unwrap();
    run_until(&fx.lp, "the callee to start", || runs.get() == 1);
    if let Some((pending, _)) = fx.broker.as_ref().map(|_| broker_counts(&fx)) {
        assert_eq!(pending, 1, "the broker routes the started call");
    }
    assert_eq!(cancels.get(), 0);
    drop(req);
    run_until(&fx.lp, "the callee's on-cancel", || cancels.get() == 1);
    mark(&fx, &target);
    assert_eq!((runs.get(), cancels.get()), (1, 1));
    assert_eq!(broker_counts(&fx).0, 0, "the broker keeps no route");
}

in_modes!(all:
    sent_and_dropped_in_the_same_turn_never_reaches_the_callee,
    dropped_on_a_later_turn_runs_and_sees_its_cancel,
);

/// What a raw publisher saw: the `n` of each call, in order.
type Seen = Rc<RefCell<Vec<i64>>>;

/// Publishes `echo` on `client`: each call is logged and answered with
/// its own args.
fn publish_echo(fx: &Fixture, client: &Client) -> Seen {
    let seen: Seen = Rc::default();
    let s = seen.clone();
    let done = Rc::new(RefCell::new(None));
    let d = done.clone();
    client.publish(
        "echo",
        &["echo"],
        move |delivery, inbound| {
            if let Inbound::Call { args, .. } = inbound {
                s.borrow_mut()
                    .push(args.get("n").and_then(Value::as_int).unwrap_or(-1));
                delivery.respond("return", &args).unwrap();
            }
        },
        move |r| *d.borrow_mut() = Some(r),
    );
    run_until(&fx.lp, "the publish", || done.borrow().is_some());
    done.borrow_mut()
        .take()
        .unwrap()
        .expect("the publish failed");
    seen
}

/// Starts a call of `echo` with `n`; its events go to `log` as
/// `n:return` or `n:CODE`.
fn echo_call(client: &Client, n: i64, log: &Log) -> Result<CallId, Error> {
    let log = log.clone();
    client.call(
        "echo",
        "echo",
        &Args::new().with("n", n),
        move |_, ev| match ev {
            CallEvent::Return { .. } => log.push(format!("{n}:return")),
            CallEvent::Error(e) => log.push(format!("{n}:{}", e.code.as_str())),
            CallEvent::Emit { .. } => log.push(format!("{n}:emit")),
        },
    )
}

/// Through the client alone: of calls made in one turn, those cancelled
/// before the flush are taken out of the output, wherever they sit among
/// other frames (the newest, one in the middle, the first), and the rest
/// arrive intact and in order.
fn calls_cancelled_before_the_flush_leave_nothing(mode: Mode) {
    let fx = Fixture::new(mode);
    let publisher = fx.client();
    let caller = fx.client();
    let seen = publish_echo(&fx, &publisher);
    let log = Log::new();
    let stray_before = broker_counts(&fx).1;

    let ids: Vec<CallId> = (1..=6)
        .map(|n| echo_call(&caller, n, &log).unwrap())
        .collect();
    // A frame that cannot be taken back, among the calls.
    let listed = Rc::new(RefCell::new(None));
    let l = listed.clone();
    caller.listing(move |r| *l.borrow_mut() = Some(r.map(|s| s.len())));
    let last = echo_call(&caller, 7, &log).unwrap();
    assert!(caller.cancel(last), "the newest");
    assert!(caller.cancel(ids[3]), "one in the middle");
    assert!(caller.cancel(ids[0]), "the first");
    assert!(caller.cancel(ids[4]), "the one after a hole");
    assert!(!caller.cancel(ids[4]), "cancelling twice");
    run_until(&fx.lp, "the answers", || log.len() == 3);
    run_until(&fx.lp, "the listing", || listed.borrow().is_some());

    assert_eq!(*seen.borrow(), vec![2, 3, 6]);
    assert_eq!(log.lines(), vec!["2:return", "3:return", "6:return"]);
    assert_eq!(*listed.borrow(), Some(Ok(2)), "echo and the barrier");
    let (pending, stray) = broker_counts(&fx);
    assert_eq!((pending, stray), (0, stray_before));
}

/// The queue limit still refuses a call at once, and counts no bytes of
/// calls taken back.
fn the_queue_limit_holds_for_calls_and_forgets_those_taken_back(mode: Mode) {
    let fx = Fixture::new(mode);
    let publisher = fx.client();
    let seen = publish_echo(&fx, &publisher);
    let mut config = ClientConfig::default();
    config.max_queued_bytes = 1000;
    let caller = Client::connect(&fx.lp, fx.address.as_ref().unwrap(), config);
    let ok = Rc::new(RefCell::new(None));
    let o = ok.clone();
    caller.on_connect(move |r| *o.borrow_mut() = Some(r.is_ok()));
    run_until(&fx.lp, "the connect", || ok.borrow().is_some());
    let log = Log::new();
    let blob = |n: i64| Args::new().with("n", n).with("blob", vec![1u8; 2000]);
    let call = |n: i64| {
        let log = log.clone();
        caller.call("echo", "echo", &blob(n), move |_, ev| {
            if let CallEvent::Return { .. } = ev {
                log.push(format!("{n}:return"));
            }
        })
    };

    let first = call(1).unwrap();
    let e = call(2).unwrap_err();
    assert_eq!(e.code, ErrorCode::LimitExceeded, "{e}");
    assert!(caller.cancel(first));
    let third = call(3).unwrap();
    let e = call(4).unwrap_err();
    assert_eq!(e.code, ErrorCode::LimitExceeded, "{e}");
    let _ = third;
    run_until(&fx.lp, "3's answer", || log.len() == 1);
    assert_eq!(log.lines(), vec!["3:return"]);
    assert_eq!(*seen.borrow(), vec![3]);
}

/// A client closed in the turn it made calls settles them with
/// `broker_gone` and sends none of them: no publisher starts a call whose
/// caller was told it failed. Frames that are no calls still leave.
fn calls_made_in_the_turn_of_a_close_never_leave(mode: Mode) {
    let fx = Fixture::new(mode);
    let publisher = fx.client();
    let seen = publish_echo(&fx, &publisher);
    let caller = fx.client();
    let log = Log::new();
    // One call answered first: the caller is connected and handshaken,
    // so the close lingers rather than dropping its output.
    echo_call(&caller, 1, &log).unwrap();
    run_until(&fx.lp, "the first answer", || log.len() == 1);
    let connections = fx.broker.as_ref().unwrap().stats().connections;

    for n in 2..=4 {
        echo_call(&caller, n, &log).unwrap();
    }
    caller.close();
    run_until(&fx.lp, "the settled calls", || log.len() == 4);
    assert_eq!(
        log.lines(),
        vec![
            "1:return",
            "2:broker_gone",
            "3:broker_gone",
            "4:broker_gone"
        ]
    );
    // A round trip of the publisher's own proves the broker has seen the
    // caller's close and everything it sent before.
    let listed = Rc::new(RefCell::new(None));
    let l = listed.clone();
    publisher.listing(move |r| *l.borrow_mut() = Some(r.is_ok()));
    run_until(&fx.lp, "the listing", || listed.borrow().is_some());
    run_until(&fx.lp, "the caller's close at the broker", || {
        fx.broker.as_ref().unwrap().stats().connections == connections - 1
    });
    assert_eq!(*seen.borrow(), vec![1], "no call of a closed caller ran");
    assert_eq!(broker_counts(&fx).0, 0, "no route left at the broker");
}

mod through_the_client {
    use super::*;

    #[test]
    fn calls_made_in_the_turn_of_a_close_never_leave_tcp() {
        calls_made_in_the_turn_of_a_close_never_leave(Mode::Remote);
    }

    #[test]
    fn calls_made_in_the_turn_of_a_close_never_leave_unix() {
        calls_made_in_the_turn_of_a_close_never_leave(Mode::RemoteUnix);
    }

    #[test]
    fn calls_cancelled_before_the_flush_leave_nothing_tcp() {
        calls_cancelled_before_the_flush_leave_nothing(Mode::Remote);
    }

    #[test]
    fn calls_cancelled_before_the_flush_leave_nothing_unix() {
        calls_cancelled_before_the_flush_leave_nothing(Mode::RemoteUnix);
    }

    #[test]
    fn the_queue_limit_holds_for_calls_and_forgets_those_taken_back() {
        super::the_queue_limit_holds_for_calls_and_forgets_those_taken_back(Mode::RemoteUnix);
    }
}
