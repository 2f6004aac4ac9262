//! Monitoring the broker (issue 17, item 1): a monitor sees a call's
//! frames in order (deliver, emits, result) with who sent them to whom,
//! and a cancel; a session filter keeps only that session's frames;
//! payloads come only when asked for; a monitor that stops reading is cut
//! off while the traffic it watched goes on.

mod common;

use common::{connected, until};
use stagebus::*;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

/// Publishes `session`: `tick` emits a step and returns, `hang` never
/// answers.
fn publish(client: &Client, session: &str) {
    common::publish(client, session, &["tick", "hang"], |delivery, inbound| {
        if let Inbound::Call { method, .. } = inbound {
            if method == "tick" {
                delivery.emit("step", &Args::new().with("i", 1)).unwrap();
                delivery.respond("done", &Args::new().with("n", 2)).unwrap();
            }
        }
    })
    .expect("publish");
}

type Taps = Rc<RefCell<Vec<TapEvent>>>;

fn monitor(lp: &EventLoop, client: &Client, session: Option<&str>, payload: bool) -> Taps {
    let taps: Taps = Rc::default();
    let t = taps.clone();
    let ok = Rc::new(Cell::new(false));
    let o = ok.clone();
    client.monitor(
        session,
        payload,
        move |e| t.borrow_mut().push(e.clone()),
        move |r| {
            r.unwrap();
            o.set(true)
        },
    );
    until(lp, "the monitor is taken on", || ok.get());
    taps
}

/// Calls and waits for the final event.
fn call(client: &Client, session: &str, method: &str, args: &Args) {
    common::call(client, session, method, args);
}

fn kinds(taps: &Taps) -> Vec<String> {
    taps.borrow()
        .iter()
        .filter(|e| ["deliver", "emit", "recall", "result", "cancel"].contains(&e.kind.as_str()))
        .map(|e| format!("{} {} {}", e.kind, e.session, e.name))
        .collect()
}

#[test]
fn a_monitor_sees_a_calls_frames_in_order_and_a_cancel() {
    let lp = EventLoop::new().unwrap();
    let broker = Broker::new(
        &lp,
        BrokerConfig::listening(["tcp://127.0.0.1:0".parse().unwrap()]),
    )
    .unwrap();
    let address = broker.local_addresses()[0].clone();
    let service = connected(&lp, &address);
    publish(&service, "Clock");
    publish(&service, "Other");
    let watcher = connected(&lp, &address);
    let all = monitor(&lp, &watcher, None, true);
    let picky_client = connected(&lp, &address);
    let picky = monitor(&lp, &picky_client, Some("Other"), false);
    let caller = connected(&lp, &address);

    call(&caller, "Clock", "tick", &Args::new().with("x", "y"));
    let hang = caller
        .call("Clock", "hang", &Args::new(), |_, _| {})
        .unwrap();
    lp.run_until(Duration::from_millis(50), || false).unwrap();
    assert!(caller.cancel(hang));
    call(&caller, "Other", "tick", &Args::new());
    until(&lp, "the monitors' frames", || {
        kinds(&all).len() == 8 && kinds(&picky).len() == 3
    });

    assert_eq!(
        kinds(&all),
        [
            "deliver Clock tick",
            "emit Clock step",
            "result Clock done",
            "deliver Clock hang",
            "cancel Clock ",
            "deliver Other tick",
            "emit Other step",
            "result Other done",
        ]
    );
    let taps = all.borrow();
    let svc = service.connection_id().unwrap();
    let cal = caller.connection_id().unwrap();
    let deliver = &taps.iter().find(|e| e.kind == "deliver").unwrap();
    assert_eq!((deliver.from, deliver.to), (cal, svc));
    assert_eq!(
        deliver.args().unwrap().unwrap().get("x").unwrap().as_str(),
        Some("y")
    );
    assert!(deliver.size > 0 && deliver.time_ms > 0);
    let emit = taps.iter().find(|e| e.kind == "emit").unwrap();
    assert_eq!((emit.from, emit.to), (svc, cal));
    let cancel = taps.iter().find(|e| e.kind == "cancel").unwrap();
    assert_eq!((cancel.from, cancel.to), (cal, svc));
    assert!(
        taps.iter()
            .all(|e| e.from != watcher.connection_id().unwrap()),
        "a monitor's own frames are not tapped"
    );
    drop(taps);
    assert_eq!(
        kinds(&picky),
        ["deliver Other tick", "emit Other step", "result Other done"]
    );
    assert!(
        picky.borrow().iter().all(|e| e.payload.is_none()),
        "no payloads unless asked"
    );
}

#[test]
fn a_monitor_that_stops_reading_is_cut_off_and_traffic_goes_on() {
    let lp = EventLoop::new().unwrap();
    let mut limits = Limits::default();
    limits.max_queued_bytes = 64 * 1024;
    let broker = Broker::new(
        &lp,
        BrokerConfig::listening(["tcp://127.0.0.1:0".parse().unwrap()]).with_limits(limits),
    )
    .unwrap();
    let address = broker.local_addresses()[0].clone();
    let service = connected(&lp, &address);
    publish(&service, "Clock");

    // A monitor on its own loop, which this test runs (with the
    // broker's) only until the broker took it on: then it reads nothing.
    let stuck_lp = EventLoop::new().unwrap();
    let stuck = Client::connect(&stuck_lp, &address, ClientConfig::default());
    let ok = Rc::new(Cell::new(false));
    let o = ok.clone();
    stuck.monitor(None, true, |_| {}, move |r| o.set(r.is_ok()));
    let started = std::time::Instant::now();
    while !ok.get() {
        assert!(
            started.elapsed() < common::LIMIT,
            "the monitor was not taken on"
        );
        lp.run_until(Duration::from_millis(5), || false).unwrap();
        stuck_lp
            .run_until(Duration::from_millis(5), || ok.get())
            .unwrap();
    }

    let caller = connected(&lp, &address);
    // More than the kernel's socket buffers hold, so the broker's own
    // queue for the monitor fills.
    let big = Args::new().with("blob", vec![7u8; 512 * 1024]);
    for _ in 0..80 {
        call(&caller, "Clock", "tick", &big);
        if broker.stats().slow_consumers == 1 {
            break;
        }
    }
    until(&lp, "the stuck monitor is cut off", || {
        broker.stats().slow_consumers == 1
    });
    assert_eq!(broker.stats().connections, 2, "service and caller remain");
    call(&caller, "Clock", "tick", &Args::new());
}
