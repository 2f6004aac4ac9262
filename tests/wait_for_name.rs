//! Waiting for a name (issue 12 item 5): a subscribe that waits until a
//! session of that name is published, so services and their callers
//! start in any order. The broker times each wait and answers it once.

#[macro_use]
mod common;

use common::*;
use stagebus::*;
use std::time::Duration;

over_both!(
    a_caller_started_before_its_service_waits_and_then_succeeds,
    a_wait_that_expires_is_no_such_session_once,
    a_waiter_that_disconnects_leaves_nothing_behind,
);

fn a_caller_started_before_its_service_waits_and_then_succeeds(t: Transport) {
    let h = Harness::new(t);
    let caller = h.client();
    let subscribed = Slot::new();
    let remote = Slot::new();
    caller.subscribe_waiting("Svc", Duration::from_secs(30), subscribed.setter());
    RemoteStage::subscribe_waiting(&caller, "Svc", Duration::from_secs(30), remote.setter());
    h.until("the broker holds both waits", || {
        h.broker.stats().waiting_subscribes == 2
    });
    assert!(!subscribed.is_set() && !remote.is_set());

    let service = h.client();
    publish(&service, "Svc", &["echo"], echo()).unwrap();
    assert_eq!(wait(&h.lp, &subscribed).unwrap(), ["echo"]);
    let remote = wait(&h.lp, &remote).unwrap();
    assert_eq!(remote.methods(), ["echo"]);
    assert!(remote.is_subscribed());
    assert_eq!(h.broker.stats().waiting_subscribes, 0);

    let out = call(&caller, "Svc", "echo", &arg("n", 7));
    assert_eq!(
        out.last,
        CallEvent::Return {
            kind: "return".into(),
            args: arg("n", 7)
        }
    );
    // Subscribed as by a plain subscribe: told when the session goes.
    rescind(&service, "Svc").unwrap();
    h.until("the subscription ends", || !caller.is_subscribed("Svc"));
}

fn a_wait_that_expires_is_no_such_session_once(t: Transport) {
    let h = Harness::new(t);
    let caller = h.client();
    let done = Slot::new();
    caller.subscribe_waiting("Later", Duration::from_millis(50), done.setter());
    let e = wait(&h.lp, &done).unwrap_err();
    assert_eq!(e.code, ErrorCode::NoSuchSession);
    assert_eq!(e.message, "Session 'Later' was not published within 50 ms");
    // Published after the wait expired: nothing more arrives (a second
    // answer would fail the slot) and the caller is not subscribed.
    let service = h.client();
    publish(&service, "Later", &["echo"], echo()).unwrap();
    listing(&caller).unwrap();
    assert_eq!(done.times(), 1);
    assert!(!caller.is_subscribed("Later"));
    assert_eq!(h.broker.stats().waiting_subscribes, 0);
}

fn a_waiter_that_disconnects_leaves_nothing_behind(t: Transport) {
    let h = Harness::new(t);
    let caller = h.client();
    let done = Slot::new();
    caller.subscribe_waiting("Svc", Duration::from_secs(30), done.setter());
    h.until("the broker holds the wait", || {
        h.broker.stats().waiting_subscribes == 1
    });
    caller.close();
    assert_eq!(wait(&h.lp, &done).unwrap_err().code, ErrorCode::BrokerGone);
    h.until("the broker forgets the waiter", || {
        h.broker.stats().connections == 0
    });
    assert_eq!(h.broker.stats().waiting_subscribes, 0);
    let service = h.client();
    publish(&service, "Svc", &["echo"], echo()).unwrap();
    assert_eq!(names(&service), ["Svc"]);
    assert_eq!(done.times(), 1);
}
