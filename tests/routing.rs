//! Routing under load: three callers with 200 calls each in flight at
//! once to one published echo session. The publisher holds every call
//! until all 600 have arrived and answers them in a shuffled order (an
//! emit, then the return), so results cross each other on the way back.
//! Each call's args carry (client, n): every emit and result must come
//! back to the client that made the call, for the right n, exactly once,
//! emit before return. Some calls are cancelled while held: they get
//! nothing, and the publisher sees their cancels.

#[macro_use]
mod common;

use common::*;
use stagebus::*;
use std::collections::HashMap;

const CLIENTS: usize = 3;
const CALLS: i64 = 200;

over_both!(results_reach_their_callers_exactly_once_in_any_order);

/// The publisher and the callers spread over both transports of a broker
/// listening on both.
#[test]
fn results_reach_their_callers_exactly_once_across_transports() {
    let h = Harness::listening(&[Transport::Tcp, Transport::Unix], |_| {});
    let ts = [
        Transport::Unix,
        Transport::Tcp,
        Transport::Unix,
        Transport::Tcp,
    ];
    run(&h, &ts, 0xfeed_f00d);
}

fn results_reach_their_callers_exactly_once_in_any_order(t: Transport) {
    let h = Harness::new(t);
    run(&h, &[t; CLIENTS + 1], 0x5eed_0001);
}

/// Which calls client 2 cancels.
fn cancelled(client: usize, n: i64) -> bool {
    client == 2 && n % 5 == 0
}

/// Runs the scenario; `ts[0]` is the publisher's transport, `ts[1..]`
/// the callers'.
fn run(h: &Harness, ts: &[Transport], seed: u64) {
    let publisher = h.client_to(&h.address(ts[0]), ClientConfig::default());
    let (served, serve) = holder();
    publish(&publisher, "Echo", &["echo"], serve).unwrap();

    type Events = Log<(CallId, CallEvent)>;
    let mut callers: Vec<(Client, HashMap<CallId, i64>, Events)> = Vec::new();
    for (client, t) in ts[1..].iter().enumerate() {
        let c = h.client_to(&h.address(*t), ClientConfig::default());
        let events: Events = log();
        let mut ids = HashMap::new();
        for n in 0..CALLS {
            let e = events.clone();
            let args = Args::new().with("client", client as i64).with("n", n);
            let id = c
                .call("Echo", "echo", &args, move |id, ev| {
                    e.borrow_mut().push((id, ev))
                })
                .unwrap();
            assert!(ids.insert(id, n).is_none());
        }
        callers.push((c, ids, events));
    }
    let total = CLIENTS * CALLS as usize;
    h.until("every call at the publisher", || {
        served.borrow().len() == total
    });
    assert_eq!(h.broker.stats().pending_calls, total);

    // Client 2 cancels some of its calls while the publisher holds them.
    let (c2, ids2, _) = &callers[2];
    let mut n_cancelled = 0;
    for (id, n) in ids2 {
        if cancelled(2, *n) {
            assert!(c2.cancel(*id));
            n_cancelled += 1;
        }
    }
    h.until("the cancels at the publisher", || {
        served.borrow().len() == total + n_cancelled
    });
    let mut deliveries: Vec<(Delivery, Args)> = Vec::new();
    let mut cancels = 0;
    for (d, inbound) in served.borrow().iter() {
        match inbound {
            Inbound::Call { method, args } => {
                assert_eq!(method, "echo");
                deliveries.push((d.clone(), args.clone()));
            }
            Inbound::Cancel => {
                assert!(!d.is_open());
                cancels += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(cancels, n_cancelled);
    // Every (client, n) arrived once, with a route id of its own.
    let mut seen = HashMap::new();
    for (d, args) in &deliveries {
        let key = (
            args.get("client").and_then(Value::as_int).unwrap(),
            args.get("n").and_then(Value::as_int).unwrap(),
        );
        assert!(seen.insert(key, d.id()).is_none(), "{key:?} twice");
    }
    assert_eq!(seen.len(), total);

    // Answer the open ones in a shuffled order.
    let mut rng = XorShift::new(seed);
    rng.shuffle(&mut deliveries);
    for (d, args) in &deliveries {
        let client = args.get("client").and_then(Value::as_int).unwrap() as usize;
        let n = args.get("n").and_then(Value::as_int).unwrap();
        assert_eq!(d.is_open(), !cancelled(client, n));
        if d.is_open() {
            d.emit("progress", args).unwrap();
            d.respond("return", args).unwrap();
        }
    }
    let answered = total - n_cancelled;
    h.until("every answer", || {
        callers
            .iter()
            .map(|(_, _, ev)| ev.borrow().len())
            .sum::<usize>()
            == 2 * answered
    });
    // A few more turns: nothing arrives twice or late.
    for _ in 0..3 {
        h.lp.dispatch().unwrap();
    }

    for (client, (_, ids, events)) in callers.iter().enumerate() {
        let mut per_call: HashMap<CallId, Vec<&CallEvent>> = HashMap::new();
        let events = events.borrow();
        for (id, ev) in events.iter() {
            per_call.entry(*id).or_default().push(ev);
        }
        for (id, n) in ids {
            let got = per_call.remove(id).unwrap_or_default();
            if cancelled(client, *n) {
                assert!(got.is_empty(), "cancelled {client}/{n} got {got:?}");
                continue;
            }
            let want = Args::new().with("client", client as i64).with("n", *n);
            match &got[..] {
                [CallEvent::Emit { kind, args: a }, CallEvent::Return { kind: k2, args: b }] => {
                    assert_eq!((kind.as_str(), k2.as_str()), ("progress", "return"));
                    assert_eq!(a, &want, "emit of {client}/{n}");
                    assert_eq!(b, &want, "result of {client}/{n}");
                }
                other => panic!("{client}/{n}: {other:?}"),
            }
        }
        assert!(
            per_call.is_empty(),
            "events for calls never made: {per_call:?}"
        );
    }
    let stats = h.broker.stats();
    assert_eq!(stats.pending_calls, 0);
    assert_eq!(stats.dropped_stray, 0);
}
