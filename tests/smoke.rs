use stagebus::*;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

#[test]
fn publish_subscribe_call_roundtrip() {
    let lp = EventLoop::new().unwrap();
    let broker = Broker::new(
        &lp,
        BrokerConfig {
            listen: vec!["tcp://127.0.0.1:0".parse().unwrap()],
            ..Default::default()
        },
    )
    .unwrap();
    let addr = broker.local_addresses()[0].clone();
    let publisher = Client::connect(&lp, &addr, ClientConfig::default());
    let caller = Client::connect(&lp, &addr, ClientConfig::default());
    let log = Rc::new(RefCell::new(Vec::<String>::new()));
    let l = log.clone();
    publisher.publish(
        "Foo",
        &["echo"],
        move |d, inbound| {
            if let Inbound::Call { method, args } = inbound {
                l.borrow_mut().push(format!("serve {method}"));
                d.emit("emit", &args).unwrap();
                d.respond("return", &args).unwrap();
            }
        },
        |r| r.unwrap(),
    );
    let done = Rc::new(RefCell::new(None));
    let d2 = done.clone();
    let l2 = log.clone();
    let c2 = caller.clone();
    publisher.listing(move |list| {
        assert_eq!(list.unwrap().len(), 1);
        c2.call("Foo", "echo", &Args::new().with("x", 1), move |_, ev| {
            l2.borrow_mut().push(format!("{ev:?}"));
            if !matches!(ev, CallEvent::Emit { .. }) {
                *d2.borrow_mut() = Some(ev);
            }
        })
        .unwrap();
    });
    assert!(lp
        .run_until(Duration::from_secs(5), || done.borrow().is_some())
        .unwrap());
    println!("{:?}", log.borrow());
    assert_eq!(log.borrow().len(), 3);
    assert_eq!(broker.stats().pending_calls, 0);
}
