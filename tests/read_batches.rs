//! A client acts on what one read brings a few frames at a time (so that
//! what decoding allocates is freed before the next few are decoded):
//! every frame of a burst still arrives once and in order, a callback
//! that closes the client mid-burst ends what is left exactly once, and
//! many calls answered in one burst each get their one final answer.

#[macro_use]
mod common;

use common::*;
use stagebus::*;

over_both!(
    a_burst_of_emits_arrives_whole_and_in_order,
    closing_in_the_middle_of_a_burst_ends_the_call_once,
    a_burst_of_final_answers_reaches_every_call_once,
);

/// Answers `burst` with `n` emits numbered from 1, then its return, all
/// within one turn (one write, read as one burst at the caller).
fn burster() -> impl FnMut(&Delivery, Inbound) + 'static {
    |d: &Delivery, inbound: Inbound| {
        if let Inbound::Call { args, .. } = inbound {
            let n = args.get("n").and_then(Value::as_int).unwrap_or(0);
            for i in 1..=n {
                d.emit("emit", &Args::new().with("i", i)).unwrap();
            }
            d.respond("return", &Args::new().with("n", n)).unwrap();
        }
    }
}

fn a_burst_of_emits_arrives_whole_and_in_order(t: Transport) {
    let h = Harness::new(t);
    let service = h.client();
    publish(&service, "Burst", &["burst"], burster()).unwrap();
    let caller = h.client();
    let seen: Log<String> = log();
    let s = seen.clone();
    caller
        .call(
            "Burst",
            "burst",
            &Args::new().with("n", 40),
            move |_, ev| {
                s.borrow_mut().push(match ev {
                    CallEvent::Emit { args, .. } => {
                        format!("emit {:?}", args.get("i").and_then(Value::as_int))
                    }
                    CallEvent::Return { args, .. } => {
                        format!("return {:?}", args.get("n").and_then(Value::as_int))
                    }
                    CallEvent::Error(e) => format!("error {e}"),
                });
            },
        )
        .unwrap();
    h.until("the return arrived", || {
        seen.borrow()
            .last()
            .is_some_and(|l| l.starts_with("return"))
    });
    let mut expected: Vec<String> = (1..=40i64).map(|i| format!("emit {:?}", Some(i))).collect();
    expected.push(format!("return {:?}", Some(40i64)));
    assert_eq!(*seen.borrow(), expected);
}

fn closing_in_the_middle_of_a_burst_ends_the_call_once(t: Transport) {
    let h = Harness::new(t);
    let service = h.client();
    publish(&service, "Burst", &["burst"], burster()).unwrap();
    let caller = h.client();
    let seen: Log<String> = log();
    let s = seen.clone();
    let me = caller.clone();
    caller
        .call(
            "Burst",
            "burst",
            &Args::new().with("n", 40),
            move |_, ev| {
                let line = match ev {
                    CallEvent::Emit { .. } => "emit".to_string(),
                    CallEvent::Return { .. } => "return".to_string(),
                    CallEvent::Error(e) => format!("error {:?}", e.code),
                };
                s.borrow_mut().push(line);
                if s.borrow().len() == 5 {
                    me.close();
                }
            },
        )
        .unwrap();
    h.until("the call ended", || {
        seen.borrow().last().is_some_and(|l| l.starts_with("error"))
    });
    // A few more turns: nothing else may arrive for the call.
    h.lp.run_until(std::time::Duration::from_millis(50), || false)
        .unwrap();
    let mut expected = vec!["emit".to_string(); 5];
    expected.push(format!("error {:?}", ErrorCode::BrokerGone));
    assert_eq!(*seen.borrow(), expected);
}

fn a_burst_of_final_answers_reaches_every_call_once(t: Transport) {
    let h = Harness::new(t);
    let service = h.client();
    publish(&service, "Echo", &["echo"], echo()).unwrap();
    let caller = h.client();
    let seen: Log<i64> = log();
    for i in 0..100i64 {
        let s = seen.clone();
        caller
            .call(
                "Echo",
                "echo",
                &Args::new().with("i", i),
                move |_, ev| match ev {
                    CallEvent::Return { args, .. } => s
                        .borrow_mut()
                        .push(args.get("i").and_then(Value::as_int).unwrap()),
                    other => panic!("unexpected {other:?}"),
                },
            )
            .unwrap();
    }
    h.until("every call was answered", || seen.borrow().len() >= 100);
    h.lp.run_until(std::time::Duration::from_millis(50), || false)
        .unwrap();
    assert_eq!(*seen.borrow(), (0..100).collect::<Vec<_>>());
}
