//! The broker's report of itself (issue 17, item 2): after a scripted
//! run of calls, its counters equal the script exactly (calls, errors by
//! code, per session, per connection), the same report reaches a client
//! that asks for it over the wire, and its Prometheus text parses.

mod common;

use common::{connected, error_code, until};
use stagebus::*;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// Calls `method` and waits for its final event: the error code, or
/// `None` for a return.
fn call(client: &Client, session: &str, method: &str) -> Option<ErrorCode> {
    error_code(&common::call(client, session, method, &Args::new()))
}

/// Parses the Prometheus text exposition format strictly enough to catch
/// a malformed line: every sample is `name{labels} value` or `name
/// value`, its metric was declared by `# TYPE` before, and the value is a
/// number. Samples by their full name with labels.
fn parse_prometheus(text: &str) -> HashMap<String, f64> {
    let mut declared = Vec::new();
    let mut samples = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().unwrap();
            let kind = parts.next().unwrap();
            assert!(["counter", "gauge"].contains(&kind), "{line}");
            declared.push(name.to_string());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "stray line {line:?}"
        );
        let (series, value) = line.rsplit_once(' ').expect("name and value");
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line}"
        );
        assert!(declared.iter().any(|d| d == name), "undeclared {name}");
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
                for pair in labels[1..labels.len() - 1].split("\",") {
                    let (k, v) = pair.split_once("=\"").expect("label=\"value\"");
                    assert!(!k.is_empty() && !v.contains('\n'), "{line}");
                }
            }
        }
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("number in {line}"));
        samples.insert(series.to_string(), value);
    }
    samples
}

#[test]
fn the_report_counts_a_scripted_run_exactly() {
    let lp = EventLoop::new().unwrap();
    let broker = Broker::new(
        &lp,
        BrokerConfig::listening(["tcp://127.0.0.1:0".parse().unwrap()]),
    )
    .unwrap();
    let address = broker.local_addresses()[0].clone();
    let service = connected(&lp, &address);
    common::publish(
        &service,
        "Clock",
        &["time", "broken", "slow"],
        |delivery, inbound| {
            if let Inbound::Call { method, .. } = inbound {
                match method.as_str() {
                    "time" => delivery.respond("return", &Args::new()).unwrap(),
                    "broken" => delivery
                        .fail(Error::new(ErrorCode::HandlerFailed, "broken on purpose"))
                        .unwrap(),
                    _ => {} // slow: never answered while the report is taken
                }
            }
        },
    )
    .expect("publish");
    let caller = connected(&lp, &address);

    for _ in 0..5 {
        assert_eq!(call(&caller, "Clock", "time"), None);
    }
    for _ in 0..3 {
        assert_eq!(
            call(&caller, "Clock", "broken"),
            Some(ErrorCode::HandlerFailed)
        );
    }
    assert_eq!(
        call(&caller, "Clock", "nope"),
        Some(ErrorCode::NoSuchMethod)
    );
    assert_eq!(
        call(&caller, "Nowhere", "time"),
        Some(ErrorCode::NoSuchSession)
    );
    let _pending = caller
        .call("Clock", "slow", &Args::new(), |_, _| {})
        .unwrap();

    let remote: Rc<RefCell<Option<StatsReport>>> = Rc::default();
    let r = remote.clone();
    caller.stats(move |report| *r.borrow_mut() = Some(report.unwrap()));
    until(&lp, "the report", || remote.borrow().is_some());
    let remote = remote.borrow_mut().take().unwrap();
    let local = broker.report();

    for report in [&remote, &local] {
        let t = report.totals;
        assert_eq!(t.calls, 9, "5 time + 3 broken + 1 slow delivered");
        assert_eq!(t.connections, 2);
        assert_eq!(t.sessions, 1);
        assert_eq!(t.pending_calls, 1);
        assert_eq!(t.protocol_errors, 0);
        assert_eq!(report.errors.get(ErrorCode::HandlerFailed), 3);
        assert_eq!(report.errors.get(ErrorCode::NoSuchMethod), 1);
        assert_eq!(report.errors.get(ErrorCode::NoSuchSession), 1);
        assert_eq!(report.errors.total(), 5);
        assert_eq!(report.sessions.len(), 1);
        let clock = &report.sessions[0];
        assert_eq!(clock.name, "Clock");
        assert_eq!(clock.calls, 9);
        assert_eq!(clock.in_flight, 1);
        assert_eq!(clock.errors.get(ErrorCode::HandlerFailed), 3);
        assert_eq!(
            clock.errors.total(),
            3,
            "the broker's own refusals are not the session's"
        );
        assert_eq!(report.connections.len(), 2);
        let svc = &report.connections[0];
        let cal = &report.connections[1];
        assert_eq!(svc.id, service.connection_id().unwrap());
        assert_eq!(cal.id, caller.connection_id().unwrap());
        assert_eq!(clock.publisher, svc.id);
        assert!(svc.handshaken && cal.handshaken);
        assert_eq!((svc.sessions, svc.serving, svc.calls_in_flight), (1, 1, 0));
        assert_eq!((cal.sessions, cal.serving, cal.calls_in_flight), (0, 0, 1));
        assert!(svc.peer.starts_with("127.0.0.1:"), "{}", svc.peer);
    }
    assert!(remote.uptime <= local.uptime);

    let samples = parse_prometheus(&local.to_prometheus());
    assert_eq!(samples["stagebus_calls_total"], 9.0);
    assert_eq!(samples["stagebus_connections"], 2.0);
    assert_eq!(
        samples["stagebus_errors_total{code=\"handler_failed\"}"],
        3.0
    );
    assert_eq!(
        samples["stagebus_errors_total{code=\"no_such_session\"}"],
        1.0
    );
    assert_eq!(
        samples["stagebus_session_errors_total{session=\"Clock\",code=\"handler_failed\"}"],
        3.0
    );
    assert_eq!(
        samples["stagebus_session_calls_in_flight{session=\"Clock\"}"],
        1.0
    );
    assert!(samples["stagebus_uptime_seconds"] >= 0.0);
}

#[test]
fn a_session_rescinded_leaves_the_report() {
    let lp = EventLoop::new().unwrap();
    let broker = Broker::new(
        &lp,
        BrokerConfig::listening(["tcp://127.0.0.1:0".parse().unwrap()]),
    )
    .unwrap();
    let address = broker.local_addresses()[0].clone();
    let service = connected(&lp, &address);
    let answer = |delivery: &Delivery, _| delivery.respond("return", &Args::new()).unwrap();
    common::publish(&service, "Gone", &["x"], answer).expect("publish");
    assert_eq!(call(&service, "Gone", "x"), None);
    assert_eq!(broker.report().sessions[0].calls, 1);
    common::rescind(&service, "Gone").expect("rescind");
    assert!(broker.report().sessions.is_empty());
    // Published again, it starts from zero.
    common::publish(&service, "Gone", &["x"], answer).expect("publish");
    assert_eq!(broker.report().sessions[0].calls, 0);
    assert_eq!(broker.report().totals.calls, 1);
}
