use stagebus::*;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

#[test]
fn all_call_types_local() {
    all_call_types(false)
}

#[test]
fn all_call_types_remote() {
    all_call_types(true)
}

fn all_call_types(remote: bool) {
    let lp = EventLoop::new().unwrap();
    let log = Rc::new(RefCell::new(Vec::<String>::new()));
    let something = Stage::new(&lp, "Something");
    let l = log.clone();
    something.on("do_emit", move |ctx| {
        let req = ctx.req().unwrap();
        l.borrow_mut().push(format!(
            "do_emit req={} key={:?}",
            req.id(),
            req.data().get::<i64>("key")
        ));
        req.data().set("newkey", 8675i64);
        ctx.emit("emit", &Args::new())
    });
    let l = log.clone();
    something.on("do_return", move |ctx| {
        let req = ctx.req().unwrap();
        l.borrow_mut().push(format!(
            "do_return req={} newkey={:?}",
            req.id(),
            req.data().get::<i64>("newkey")
        ));
        ctx.ret("return", &Args::new())
    });
    let app = Stage::new(&lp, "App");
    let l = log.clone();
    let target: Target = if remote {
        let broker = Broker::new(
            &lp,
            BrokerConfig {
                listen: vec!["tcp://127.0.0.1:0".parse().unwrap()],
                ..Default::default()
            },
        )
        .unwrap();
        let addr = broker.local_addresses()[0].clone();
        std::mem::forget(broker);
        let pubc = Client::connect(&lp, &addr, ClientConfig::default());
        let subc = Client::connect(&lp, &addr, ClientConfig::default());
        let published = Rc::new(RefCell::new(false));
        let p = published.clone();
        something.publish(&pubc, "Something", &[], move |r| {
            r.unwrap();
            *p.borrow_mut() = true;
        });
        assert!(lp
            .run_until(Duration::from_secs(5), || *published.borrow())
            .unwrap());
        let rs = Rc::new(RefCell::new(None));
        let r2 = rs.clone();
        RemoteStage::subscribe(&subc, "Something", move |r| {
            *r2.borrow_mut() = Some(r.unwrap())
        });
        assert!(lp
            .run_until(Duration::from_secs(5), || rs.borrow().is_some())
            .unwrap());
        std::mem::forget(pubc);
        let x = Target::Remote(rs.borrow_mut().take().unwrap());
        x
    } else {
        Target::Local(something.clone())
    };
    app.on("run", move |ctx| {
        let go = Request::to(target.clone(), "do_emit")
            .on_method("emit", "do_recall")
            .on_method("return", "do_return")
            .send()?;
        go.data().set("key", 309i64);
        l.borrow_mut().push(format!(
            "run req={} go={}",
            ctx.req().unwrap().id(),
            go.id()
        ));
        ctx.req().unwrap().data().set("go", Rc::new(go));
        Ok(())
    });
    let l = log.clone();
    app.on("do_recall", move |ctx| {
        let rsp = ctx.rsp().unwrap();
        l.borrow_mut().push(format!(
            "do_recall req={} rsp={} key={:?}",
            ctx.req().unwrap().id(),
            rsp.id(),
            rsp.data().get::<i64>("key")
        ));
        rsp.recall("do_return", &Args::new())
    });
    let l = log.clone();
    app.on("do_return", move |ctx| {
        let rsp = ctx.rsp().unwrap();
        l.borrow_mut().push(format!(
            "app do_return req={} rsp={} key={:?}",
            ctx.req().unwrap().id(),
            rsp.id(),
            rsp.data().get::<i64>("key")
        ));
        ctx.ret("return", &Args::new())
    });
    let done = Rc::new(RefCell::new(false));
    let d = done.clone();
    let _top = Request::to(&app, "run")
        .on("return", move |_| {
            *d.borrow_mut() = true;
            Ok(())
        })
        .send()
        .unwrap();
    assert!(lp
        .run_until(Duration::from_secs(5), || *done.borrow())
        .unwrap());
    for line in log.borrow().iter() {
        println!("{line}");
    }
    assert_eq!(log.borrow().len(), 5);
}
