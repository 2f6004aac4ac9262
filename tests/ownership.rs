//! Who keeps what alive: a served request nobody answers or keeps ends
//! with `unanswered` (locally and through a broker), and a published
//! stage whose handlers hold its client (directly or through a remote
//! stage) does not keep the client, and so the session, alive.

#[macro_use]
mod common_requests;

use common_requests::*;
use stagebus::*;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

in_modes!(
    a_request_neither_answered_nor_kept_fails_once_with_unanswered,
    a_kept_request_let_go_unanswered_fails_once_with_unanswered,
    an_emitted_request_stays_open_for_the_callers_recall,
    an_open_sub_request_keeps_its_parent_open,
    a_sub_request_that_ends_without_answering_its_parent_lets_it_go,
);

/// The handler only looks at its request: the caller gets one
/// `unanswered` error, on-cancel never runs, and the request's data is
/// freed.
fn a_request_neither_answered_nor_kept_fails_once_with_unanswered(mode: Mode) {
    let fx = Fixture::new(mode);
    let stage = Stage::new(&fx.lp, "Forgetful");
    let (ran, cancelled, freed) = (Counter::new(), Counter::new(), Counter::new());
    let (r, c, f) = (ran.clone(), cancelled.clone(), freed.clone());
    stage.on("work", move |ctx| {
        r.bump();
        let req = ctx.req().unwrap();
        req.on_cancel(c.hook());
        req.data().on_end("end", f.hook());
        Ok(())
    });
    let target = fx.target(&stage);
    let (req, outcome) = send_recorded(target, "work", Args::new());
    run_until(&fx.lp, "the final response", || {
        outcome.borrow().last.is_some()
    });
    fx.barrier();
    assert!(!req.is_open());
    let o = outcome.borrow();
    assert_eq!(o.code(), Some(ErrorCode::Unanswered), "{o:?}");
    assert!(o.emits.is_empty());
    let (_, args, _) = o.last.as_ref().unwrap();
    assert_eq!(args.get("code"), Some(&Value::from("unanswered")));
    assert_eq!(ran.get(), 1);
    assert_eq!(cancelled.get(), 0, "nobody cancelled it");
    assert_eq!(freed.get(), 1, "the callee's data was freed");
}

/// The handler keeps its request; the program later drops every copy
/// without answering: the caller gets `unanswered` then, once.
fn a_kept_request_let_go_unanswered_fails_once_with_unanswered(mode: Mode) {
    let fx = Fixture::new(mode);
    let stage = Stage::new(&fx.lp, "Keeper");
    let kept: Rc<RefCell<Vec<ServedRequest>>> = Rc::default();
    let k = kept.clone();
    stage.on("work", move |ctx| {
        let req = ctx.req().unwrap();
        k.borrow_mut().push(req.clone());
        k.borrow_mut().push(req.clone());
        Ok(())
    });
    let target = fx.target(&stage);
    let (req, outcome) = send_recorded(target, "work", Args::new());
    run_until(&fx.lp, "the delivery", || !kept.borrow().is_empty());
    fx.barrier();
    assert!(outcome.borrow().last.is_none(), "kept, so still open");
    assert!(req.is_open());
    let first = kept.borrow_mut().pop().unwrap();
    drop(first);
    fx.barrier();
    assert!(outcome.borrow().last.is_none(), "one copy is left");
    kept.borrow_mut().clear();
    run_until(&fx.lp, "the final response", || {
        outcome.borrow().last.is_some()
    });
    fx.barrier();
    assert_eq!(outcome.borrow().code(), Some(ErrorCode::Unanswered));
    assert!(!req.is_open());
}

/// The demo's `ask`: the handler emits a question and keeps nothing; the
/// emit keeps the request open, the caller's recall runs `answer`, which
/// returns.
fn an_emitted_request_stays_open_for_the_callers_recall(mode: Mode) {
    let fx = Fixture::new(mode);
    let stage = Stage::new(&fx.lp, "Asker");
    stage.on("ask", |ctx| ctx.emit("question", &Args::new()));
    stage.on("answer", |ctx| {
        let name = ctx.arg("name").cloned().unwrap_or(Value::Null);
        ctx.ret("return", &Args::new().with("hello", name))
    });
    let target = fx.target(&stage);
    let got = Rc::new(RefCell::new(Outcome::default()));
    let g = got.clone();
    let req = Request::to(target, "ask")
        .fallback(move |ctx| {
            let rsp = ctx.rsp().unwrap();
            if rsp.kind() == "question" {
                rsp.recall("answer", &Args::new().with("name", "Rocco"))?;
                g.borrow_mut()
                    .emits
                    .push((rsp.kind().to_string(), Args::new()));
            } else {
                g.borrow_mut().last = Some((
                    rsp.kind().to_string(),
                    ctx.args().clone(),
                    rsp.error().cloned(),
                ));
            }
            Ok(())
        })
        .send()
        .unwrap();
    run_until(&fx.lp, "the final response", || got.borrow().last.is_some());
    let o = got.borrow();
    assert_eq!(o.code(), None, "{o:?}");
    assert_eq!(o.kind(), Some("return"));
    let (_, args, _) = o.last.as_ref().unwrap();
    assert_eq!(args.get("hello"), Some(&Value::from("Rocco")));
    assert!(!req.is_open());
}

/// A service that calls another: its handler makes a sub-request and
/// keeps only that (in its request's data); the sub-request's return
/// handler answers the parent.
fn an_open_sub_request_keeps_its_parent_open(mode: Mode) {
    let fx = Fixture::new(mode);
    let slow = Stage::new(&fx.lp, "Slow");
    slow.on("work", |ctx| {
        let req = ctx.req().unwrap().clone();
        let lp = ctx.stage().unwrap().event_loop().clone();
        lp.add_timer(Duration::from_millis(5), move |_| {
            let _ = req.ret("return", &Args::new().with("n", 7));
        });
        Ok(())
    });
    let to_slow = fx.target(&slow);
    let front = Stage::new(&fx.lp, "Front");
    front.on("run", move |ctx| {
        let sub = Request::to(to_slow.clone(), "work")
            .on("return", |ctx| {
                let n = ctx.arg("n").cloned().unwrap_or(Value::Null);
                ctx.ret("return", &Args::new().with("n", n))
            })
            .send()?;
        ctx.req().unwrap().data().set("sub", sub);
        Ok(())
    });
    let out = call(&fx.lp, &front, "run", Args::new());
    assert_eq!(out.code(), None, "{out:?}");
    assert_eq!(out.last.as_ref().unwrap().1.get("n"), Some(&Value::Int(7)));
}

/// The sub-request ends and its handler does not answer the parent:
/// nothing can answer the parent any more, so it fails with
/// `unanswered` (it used to wait forever, holding its sub-request).
fn a_sub_request_that_ends_without_answering_its_parent_lets_it_go(mode: Mode) {
    let fx = Fixture::new(mode);
    let callee = Stage::new(&fx.lp, "Callee");
    callee.on("work", |ctx| ctx.ret("return", &Args::new()));
    let to_callee = fx.target(&callee);
    let front = Stage::new(&fx.lp, "Front");
    let heard = Counter::new();
    let h = heard.clone();
    front.on("run", move |ctx| {
        let h = h.clone();
        let sub = Request::to(to_callee.clone(), "work")
            .on("return", move |_| {
                h.bump();
                Ok(())
            })
            .send()?;
        ctx.req().unwrap().data().set("sub", sub);
        Ok(())
    });
    let out = call(&fx.lp, &front, "run", Args::new());
    assert_eq!(heard.get(), 1);
    assert_eq!(out.code(), Some(ErrorCode::Unanswered), "{out:?}");
}

// ---------------------------------------------------------------------
// Publications and cycles.

/// Lists the broker's sessions through `client`.
#[track_caller]
fn listing(lp: &EventLoop, client: &Client) -> Vec<String> {
    let got = Rc::new(RefCell::new(None));
    let g = got.clone();
    client.listing(move |r| *g.borrow_mut() = Some(r));
    run_until(lp, "the listing", || got.borrow().is_some());
    let list = got.borrow_mut().take().unwrap().expect("listing failed");
    list.into_iter().map(|s| s.name).collect()
}

/// Runs the loop until `session` is no longer listed (asked again after
/// each answer).
#[track_caller]
fn wait_until_unlisted(lp: &EventLoop, observer: &Client, session: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        if !listing(lp, observer).iter().any(|s| s == session) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "'{session}' is still published after every handle was dropped"
        );
        lp.run_until(Duration::from_millis(5), || false).unwrap();
    }
}

/// A service that holds its own client in a handler (to list, to call
/// others) and one that calls others through a remote stage subscribed
/// on that client: the program drops every handle, the loop runs on,
/// and both sessions leave the broker.
#[test]
fn a_published_stage_whose_handlers_hold_its_client_is_unpublished_when_dropped() {
    let fx = Fixture::new(Mode::Remote);
    let observer = fx.client();

    let client = fx.client();
    let direct = Stage::new(&fx.lp, "HoldsClient");
    let c = client.clone();
    direct.on("who", move |ctx| {
        ctx.ret(
            "return",
            &Args::new().with("id", c.connection_id().unwrap_or(0) as i64),
        )
    });
    publish(&fx.lp, &client, &direct, "HoldsClient");

    let other = Stage::new(&fx.lp, "Other");
    other.on("ping", |ctx| ctx.ret("pong", &Args::new()));
    publish(&fx.lp, &client, &other, "Other");
    let remote = subscribe(&fx.lp, &client, "Other");
    let via = Stage::new(&fx.lp, "HoldsRemote");
    via.on("relay", move |ctx| {
        let sub = Request::to(&remote, "ping")
            .on("pong", |ctx| ctx.ret("return", &Args::new()))
            .send()?;
        ctx.req().unwrap().data().set("sub", sub);
        Ok(())
    });
    publish(&fx.lp, &client, &via, "HoldsRemote");

    // Both work.
    let to_direct = subscribe(&fx.lp, &observer, "HoldsClient");
    assert_eq!(call(&fx.lp, &to_direct, "who", Args::new()).code(), None);
    let to_via = subscribe(&fx.lp, &observer, "HoldsRemote");
    assert_eq!(call(&fx.lp, &to_via, "relay", Args::new()).code(), None);

    drop((client, direct, other, via));
    wait_until_unlisted(&fx.lp, &observer, "HoldsClient");
    wait_until_unlisted(&fx.lp, &observer, "HoldsRemote");
    wait_until_unlisted(&fx.lp, &observer, "Other");
}

/// The program keeps its client and drops the stage it published: the
/// session is rescinded; the client itself stays connected and may
/// publish that name again.
#[test]
fn dropping_a_published_stage_rescinds_its_session() {
    let fx = Fixture::new(Mode::Remote);
    let observer = fx.client();
    let client = fx.client();
    let stage = Stage::new(&fx.lp, "Dropped");
    stage.on("ping", |ctx| ctx.ret("pong", &Args::new()));
    publish(&fx.lp, &client, &stage, "Dropped");
    assert!(listing(&fx.lp, &observer).contains(&"Dropped".to_string()));
    drop(stage);
    wait_until_unlisted(&fx.lp, &observer, "Dropped");
    assert!(client.is_connected());
    let again = Stage::new(&fx.lp, "Again");
    again.on("ping", |ctx| ctx.ret("pong", &Args::new()));
    publish(&fx.lp, &client, &again, "Dropped");
    let remote = subscribe(&fx.lp, &observer, "Dropped");
    assert_eq!(
        call(&fx.lp, &remote, "ping", Args::new()).kind(),
        Some("pong")
    );
}

/// Replacing an on_cancel hook whose drop sets another hook on the same
/// request (a C free_user calling sb_served_on_cancel, say): the hook the
/// replacing call sets is the one that runs, once.
#[test]
fn a_replaced_on_cancel_whose_drop_sets_a_hook_leaves_the_replacing_one() {
    use std::cell::Cell;
    struct SetsOnDrop(Option<ServedRequest>, Rc<Cell<u32>>);
    impl Drop for SetsOnDrop {
        fn drop(&mut self) {
            if let Some(r) = self.0.take() {
                let ran = self.1.clone();
                r.on_cancel(move || ran.set(ran.get() + 10));
            }
        }
    }
    let lp = EventLoop::new().unwrap();
    let stage = Stage::new(&lp, "s");
    let ran = Rc::new(Cell::new(0));
    let kept: Rc<RefCell<Option<ServedRequest>>> = Rc::default();
    let (r, k) = (ran.clone(), kept.clone());
    stage.on("wait", move |ctx| {
        let req = ctx.req().unwrap();
        *k.borrow_mut() = Some(req.clone());
        let guard = SetsOnDrop(Some(req.clone()), r.clone());
        req.on_cancel(move || drop(guard));
        let r = r.clone();
        req.on_cancel(move || r.set(r.get() + 1));
        Ok(())
    });
    let req = Request::to(&stage, "wait").send().unwrap();
    assert!(lp
        .run_until(Duration::from_secs(2), || kept.borrow().is_some())
        .unwrap());
    req.cancel();
    assert_eq!(ran.get(), 1, "the replacing hook ran, once, and no other");
}
