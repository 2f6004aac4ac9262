//! Calls by session name without a subscription ([`Client::request`],
//! [`RemoteStage::named`], [`Request::keep`]) and the blocking
//! [`Client::call_sync`]: answers, emits, errors, timeouts, and the
//! refusal inside a callback. A broker, the demo service and the caller
//! share one loop over loopback TCP.

mod common;

use common::{Harness, Transport, LIMIT};
use stagebus::{Args, Client, ErrorCode, RemoteStage, Stage, Value};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

/// What a test holds: the service's client and stage (the publication
/// lasts while they live).
type Service = (Client, Stage);

/// A broker, the demo stage published as `Demo`, and a caller client
/// that never subscribed; the demo's log lines.
fn setup() -> (Harness, Client, Rc<RefCell<Vec<String>>>, Service) {
    let h = Harness::new(Transport::Tcp);
    let service = h.client();
    let log = Rc::new(RefCell::new(Vec::new()));
    let l = log.clone();
    let stage = stagebus::demo::stage(&h.lp, move |line| l.borrow_mut().push(line.to_string()));
    let published = Rc::new(RefCell::new(None));
    let p = published.clone();
    stage.publish(&service, "Demo", &stagebus::demo::METHODS, move |r| {
        *p.borrow_mut() = Some(r)
    });
    h.until("published", || published.borrow().is_some());
    published.borrow_mut().take().unwrap().expect("published");
    let caller = h.client();
    (h, caller, log, (service, stage))
}

#[test]
fn call_sync_returns_the_final_answer_without_a_subscription() {
    let (_h, caller, _log, _service) = setup();
    let args = Args::new()
        .with("text", "hi")
        .with("xs", vec![Value::Int(1), Value::Int(2)]);
    let reply = caller
        .call_sync("Demo", "echo", &args, Some(LIMIT))
        .expect("echo answers");
    assert_eq!(reply.kind, "return");
    assert_eq!(reply.args, args);
    assert!(!caller.is_subscribed("Demo"), "no subscription was made");

    // Emits are passed over; the final answer is returned.
    let reply = caller
        .call_sync("Demo", "count", &Args::new().with("n", 3), None)
        .expect("count answers");
    assert_eq!(reply.args.get("count"), Some(&Value::Int(3)));
}

#[test]
fn call_sync_reports_error_codes_and_timeouts() {
    let (h, caller, log, _service) = setup();
    let e = caller
        .call_sync("Nobody", "echo", &Args::new(), Some(LIMIT))
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NoSuchSession, "{e}");
    let e = caller
        .call_sync("Demo", "nope", &Args::new(), Some(LIMIT))
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NoSuchMethod, "{e}");
    let e = caller
        .call_sync("Demo", "count", &Args::new().with("n", -1), Some(LIMIT))
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidArgument, "{e}");
    let e = caller
        .call_sync("", "echo", &Args::new(), Some(LIMIT))
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidArgument, "{e}");

    // A timeout cancels the call at the service.
    let e = caller
        .call_sync(
            "Demo",
            "slow",
            &Args::new().with("ms", 60_000),
            Some(Duration::from_millis(100)),
        )
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Timeout, "{e}");
    h.until("the service saw the cancel", || {
        log.borrow()
            .iter()
            .any(|l| l.contains("cancelled by the caller"))
    });

    // With no timeout of its own the client's default applies.
    caller.set_default_timeout(Some(Duration::from_millis(100)));
    let e = caller
        .call_sync("Demo", "slow", &Args::new().with("ms", 60_000), None)
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Timeout, "{e}");
}

#[test]
fn call_sync_is_refused_inside_a_callback_of_its_loop() {
    let (h, caller, _log, _service) = setup();
    let seen = Rc::new(RefCell::new(None));
    let s = seen.clone();
    let c = caller.clone();
    h.lp.add_timer(Duration::ZERO, move |_| {
        *s.borrow_mut() = Some(c.call_sync("Demo", "echo", &Args::new(), Some(LIMIT)));
    });
    h.until("the timer ran", || seen.borrow().is_some());
    let e = seen.borrow_mut().take().unwrap().unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidState, "{e}");
    assert!(e.message.contains("inside a callback"), "{e}");
    // Outside the callback the same call works.
    assert!(caller
        .call_sync("Demo", "echo", &Args::new(), Some(LIMIT))
        .is_ok());
}

#[test]
fn a_kept_request_by_name_runs_to_its_end_and_is_then_dropped() {
    let (h, caller, _log, _service) = setup();
    let events = Rc::new(RefCell::new(Vec::new()));
    let e = events.clone();
    let request = caller
        .request("Demo", "count")
        .arg("n", 2)
        .fallback(move |ctx| {
            let rsp = ctx.rsp().unwrap();
            e.borrow_mut()
                .push((rsp.kind().to_string(), rsp.is_final()));
            Ok(())
        })
        .send()
        .expect("sent without a subscription");
    // Held only by itself from here on: the handle's drop does not cancel.
    let dropped = Rc::new(());
    request.data().set("witness", dropped.clone());
    request.keep();
    h.until("the final answer", || events.borrow().len() == 3);
    assert_eq!(
        *events.borrow(),
        [
            ("tick".to_string(), false),
            ("tick".to_string(), false),
            ("return".to_string(), true)
        ]
    );
    assert_eq!(
        Rc::strong_count(&dropped),
        1,
        "the request's data was dropped"
    );

    // A kept request can still be cancelled from its handler.
    let got = Rc::new(RefCell::new(0));
    let g = got.clone();
    caller
        .request("Demo", "count")
        .arg("n", 1000)
        .fallback(move |ctx| {
            *g.borrow_mut() += 1;
            ctx.rsp().unwrap().cancel();
            Ok(())
        })
        .send()
        .unwrap()
        .keep();
    h.until("the first tick", || *got.borrow() > 0);
    let _ = h.lp.run_until(Duration::from_millis(200), || false);
    assert_eq!(*got.borrow(), 1, "nothing arrives after the cancel");

    // A kept request still open when the loop shuts down is dropped then,
    // handlers and all.
    let witness = Rc::new(());
    let w = witness.clone();
    caller
        .request("Demo", "slow")
        .arg("ms", 60_000)
        .fallback(move |_| {
            let _ = &w;
            Ok(())
        })
        .send()
        .unwrap()
        .keep();
    let _ = h.lp.run_until(Duration::from_millis(100), || false);
    assert_eq!(Rc::strong_count(&witness), 2, "held while open");
    h.lp.shutdown();
    assert_eq!(Rc::strong_count(&witness), 1, "dropped at shutdown");

    // A named remote stage is a request target like a subscribed one.
    let remote = RemoteStage::named(&caller, "Demo");
    assert!(remote.methods().is_empty());
    assert!(!remote.is_subscribed());
}
