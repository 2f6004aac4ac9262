//! POE::Stage's t/01_all_call_types.t (SEMANTICS.md 2.9): request, emit,
//! recall and return between two stages, with the 19 checks of the
//! original as asserts, against a local stage and against the same stage
//! behind a broker (TCP and Unix socket).

#[macro_use]
mod common_requests;

use common_requests::*;
use stagebus::*;
use std::cell::RefCell;
use std::rc::Rc;

in_modes!(all: all_call_types);

/// The checks made so far: (number, passed, what).
type Checks = Rc<RefCell<Vec<(u32, bool, String)>>>;

fn check(checks: &Checks, n: u32, ok: bool, what: String) {
    checks.borrow_mut().push((n, ok, what));
}

fn all_call_types(mode: Mode) {
    let fx = Fixture::new(mode);
    let checks: Checks = Rc::default();

    // Stage `Something`: do_emit serves the sub-request, do_return its
    // recall.
    let something = Stage::new(&fx.lp, "Something");
    let ids: Rc<RefCell<(u64, u64)>> = Rc::default(); // (run id, go id)
    let (c, i) = (checks.clone(), ids.clone());
    something.on("do_emit", move |ctx| {
        let go = i.borrow().1;
        let req = ctx.req();
        check(&c, 1, req.is_some(), "do_emit: req is a request".into());
        let req = req.unwrap();
        check(
            &c,
            2,
            req.caller_id() == go,
            format!("do_emit: req id {} == go id {go}", req.caller_id()),
        );
        check(&c, 3, ctx.rsp().is_none(), "do_emit: no rsp".into());
        check(
            &c,
            4,
            req.data().get::<i64>("key").is_none(),
            format!(
                "do_emit: own key undefined, got {:?}",
                req.data().get::<i64>("key")
            ),
        );
        req.data().set("newkey", 8675i64);
        ctx.stage().unwrap().data().set("newkey", 8675i64);
        ctx.emit("", &Args::new())
    });
    let (c, i) = (checks.clone(), ids.clone());
    something.on("do_return", move |ctx| {
        let go = i.borrow().1;
        let req = ctx.req();
        check(&c, 10, req.is_some(), "recall: req is a request".into());
        let req = req.unwrap();
        check(
            &c,
            11,
            req.caller_id() == go,
            format!("recall: req id {} == go id {go}", req.caller_id()),
        );
        check(&c, 12, ctx.rsp().is_none(), "recall: no rsp".into());
        check(
            &c,
            13,
            req.data().get::<i64>("key").is_none(),
            "recall: own key undefined".into(),
        );
        let remembered = ctx.stage().unwrap().data().get::<i64>("newkey");
        let newkey = req.data().get::<i64>("newkey");
        check(
            &c,
            14,
            newkey == Some(8675) && newkey == remembered,
            format!("recall: newkey {newkey:?} == 8675 == self {remembered:?}"),
        );
        ctx.ret("", &Args::new())
    });
    let target = fx.target(&something);

    // Stage `App`: run makes the sub-request `go`; do_recall and
    // do_return handle its emit and return.
    let app = Stage::new(&fx.lp, "App");
    let i = ids.clone();
    app.on("run", move |ctx| {
        let go = Request::to(target.clone(), "do_emit")
            .on_method("emit", "do_recall")
            .on_method("return", "do_return")
            .send()?;
        go.data().set("key", 309i64);
        let run = ctx.req().unwrap();
        *i.borrow_mut() = (run.id(), go.id());
        run.data().set("go", go);
        Ok(())
    });
    let (c, i) = (checks.clone(), ids.clone());
    app.on("do_recall", move |ctx| {
        let (run, go) = *i.borrow();
        check(
            &c,
            5,
            ctx.req().is_some(),
            "do_recall: req is a request".into(),
        );
        let rsp = ctx.rsp().expect("a response");
        check(
            &c,
            6,
            rsp.kind() == "emit" && !rsp.is_final(),
            format!(
                "do_recall: rsp is an emit ({}, final={})",
                rsp.kind(),
                rsp.is_final()
            ),
        );
        let req_id = ctx.req().map(ServedRequest::id);
        check(
            &c,
            7,
            req_id == Some(run),
            format!("do_recall: req id {req_id:?} == run id {run}"),
        );
        check(
            &c,
            8,
            rsp.id() == go,
            format!("do_recall: rsp id {} == go id {go}", rsp.id()),
        );
        let key = rsp.data().get::<i64>("key");
        check(
            &c,
            9,
            key == Some(309),
            format!("do_recall: rsp key {key:?} == 309"),
        );
        rsp.recall("do_return", &Args::new())
    });
    let (c, i) = (checks.clone(), ids.clone());
    app.on("do_return", move |ctx| {
        let (run, go) = *i.borrow();
        check(
            &c,
            15,
            ctx.req().is_some(),
            "do_return: req is a request".into(),
        );
        let rsp = ctx.rsp().expect("a response");
        check(
            &c,
            16,
            rsp.kind() == "return" && rsp.is_final() && rsp.error().is_none(),
            format!(
                "do_return: rsp is a return ({}, final={})",
                rsp.kind(),
                rsp.is_final()
            ),
        );
        let req_id = ctx.req().map(ServedRequest::id);
        check(
            &c,
            17,
            req_id == Some(run),
            format!("do_return: req id {req_id:?} == run id {run}"),
        );
        check(
            &c,
            18,
            rsp.id() == go,
            format!("do_return: rsp id {} == go id {go}", rsp.id()),
        );
        let key = rsp.data().get::<i64>("key");
        check(
            &c,
            19,
            key == Some(309),
            format!("do_return: rsp key {key:?} == 309"),
        );
        ctx.ret("", &Args::new())
    });

    let out = call(&fx.lp, &app, "run", Args::new());
    fx.barrier();
    assert_eq!(out.kind(), Some("return"), "{out:?}");
    assert!(out.emits.is_empty());
    let checks = checks.borrow();
    for (n, ok, what) in checks.iter() {
        assert!(ok, "check {n} failed: {what}");
    }
    let order: Vec<u32> = checks.iter().map(|(n, _, _)| *n).collect();
    assert_eq!(
        order,
        (1..=19).collect::<Vec<_>>(),
        "all 19 checks, in order"
    );
}
