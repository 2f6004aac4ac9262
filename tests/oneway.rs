//! One-way calls (issue 14 item 4): a call that expects no answer. The
//! callee runs it and can tell no answer is expected; whatever it
//! answers is dropped (and counted) at its client; the broker keeps no
//! route, and drops (and counts) a one-way call it cannot deliver.

#[macro_use]
mod common;

use common::*;
use stagebus::wire::Frame;
use stagebus::*;

over_both!(
    a_one_way_call_runs_and_nothing_comes_back,
    a_one_way_call_nobody_can_take_is_dropped_at_the_broker,
    a_one_way_request_through_a_remote_stage_knows_no_answer_is_expected,
    posts_and_calls_from_one_client_arrive_in_order,
);

fn a_one_way_call_runs_and_nothing_comes_back(t: Transport) {
    let h = Harness::new(t);
    let service = h.client();
    let seen = log();
    let s = seen.clone();
    publish(&service, "Svc", &["work"], move |d: &Delivery, inbound| {
        if let Inbound::Call { method, args } = inbound {
            s.borrow_mut().push((method, args, d.expects_answer()));
            // Both are accepted and dropped: nobody waits.
            d.emit("progress", &arg("p", 1)).unwrap();
            d.respond("return", &arg("r", 2)).unwrap();
        }
    })
    .unwrap();
    // The caller is a raw connection, so that anything the broker sent
    // back would be seen here.
    let mut raw = Raw::handshaken(&h.lp, &h.addr);
    raw.send(
        &h.lp,
        &Frame::Post {
            id: 5,
            origin: 5,
            timeout_ms: 0,
            session: "Svc".into(),
            method: "work".into(),
            payload: wire::Payload::encode(&arg("n", 7)),
        },
    );
    h.until("the callee ran the one-way call", || {
        seen.borrow().len() == 1
    });
    assert_eq!(
        seen.borrow()[0],
        ("work".into(), arg("n", 7), false),
        "the callee sees no answer is expected"
    );
    h.until("the callee's client dropped both answers", || {
        service.dropped_answers() == 2
    });
    let stats = h.broker.stats();
    assert_eq!(stats.pending_calls, 0, "no route is kept");
    assert_eq!(stats.oneway_calls, 1);
    assert_eq!(stats.dropped_stray, 0, "the answers never left the callee");
    // A round trip after it: the only frame back is its answer.
    raw.send(&h.lp, &Frame::Listing { id: 9 });
    match raw.next(&h.lp) {
        Frame::Result { id: 9, .. } => {}
        other => panic!("expected the listing's result, got {other:?}"),
    }
    assert!(raw.received().is_empty());
}

fn a_one_way_call_nobody_can_take_is_dropped_at_the_broker(t: Transport) {
    let h = Harness::new(t);
    let service = h.client();
    publish(&service, "Svc", &["work"], echo()).unwrap();
    let caller = h.client();
    caller.post("Nobody", "work", &Args::new()).unwrap();
    caller.post("Svc", "nothing", &Args::new()).unwrap();
    h.until("both are dropped at the broker", || {
        h.broker.stats().dropped_oneway == 2
    });
    assert_eq!(h.broker.stats().pending_calls, 0);
    assert_eq!(
        caller.post("", "work", &Args::new()).unwrap_err().code,
        ErrorCode::InvalidArgument
    );
    caller.close();
    assert_eq!(
        caller.post("Svc", "work", &Args::new()).unwrap_err().code,
        ErrorCode::BrokerGone
    );
}

fn a_one_way_request_through_a_remote_stage_knows_no_answer_is_expected(t: Transport) {
    let h = Harness::new(t);
    let lp = &h.lp;
    let stage = Stage::new(lp, "Worker");
    let seen = log();
    let s = seen.clone();
    stage.on("work", move |ctx| {
        let req = ctx.req().expect("a request");
        let n = ctx.arg("n").and_then(Value::as_int).unwrap();
        s.borrow_mut().push((n, req.expects_answer()));
        req.emit("progress", &Args::new())?;
        req.ret("return", &Args::new())
    });
    let service = h.client();
    let published = Slot::new();
    stage.publish(&service, "Worker", &[], published.setter());
    wait(lp, &published).unwrap();

    let caller = h.client();
    let remote = Slot::new();
    RemoteStage::subscribe(&caller, "Worker", remote.setter());
    let remote = wait(lp, &remote).unwrap();
    remote.post("work", &arg("n", 1)).unwrap();
    remote.post("work", &arg("n", 2)).unwrap();
    h.until("both ran", || seen.borrow().len() == 2);
    assert_eq!(*seen.borrow(), vec![(1, false), (2, false)]);
    h.until("their answers are dropped", || {
        service.dropped_answers() == 4
    });
    assert_eq!(h.broker.stats().pending_calls, 0);
    // A request of the same method expects one, and gets it.
    let answered = Slot::new();
    let a = answered.clone();
    let _req = Request::to(remote.clone(), "work")
        .arg("n", 3)
        .on("return", move |_| {
            a.set(());
            Ok(())
        })
        .send()
        .unwrap();
    wait(lp, &answered);
    assert_eq!(seen.borrow()[2], (3, true));
    unsubscribe(&caller, "Worker").unwrap();
    assert_eq!(
        remote.post("work", &Args::new()).unwrap_err().code,
        ErrorCode::NotSubscribed
    );
}

fn posts_and_calls_from_one_client_arrive_in_order(t: Transport) {
    let h = Harness::new(t);
    let service = h.client();
    let order = log();
    let o = order.clone();
    publish(&service, "Svc", &["m"], move |d: &Delivery, inbound| {
        if let Inbound::Call { args, .. } = inbound {
            o.borrow_mut()
                .push(args.get("i").and_then(Value::as_int).unwrap());
            d.respond("return", &Args::new()).unwrap();
        }
    })
    .unwrap();
    let caller = h.client();
    let mut last = None;
    for i in 0..50 {
        if i % 3 == 0 {
            last = Some(start_call(&caller, "Svc", "m", &arg("i", i)).1);
        } else {
            caller.post("Svc", "m", &arg("i", i)).unwrap();
        }
    }
    caller.post("Svc", "m", &arg("i", 50)).unwrap();
    wait(&h.lp, &last.unwrap());
    h.until("all 51 arrived", || order.borrow().len() == 51);
    assert_eq!(*order.borrow(), (0..=50).collect::<Vec<i64>>());
    h.until("no route is left", || h.broker.stats().pending_calls == 0);
}
