//! The Stage / Request acceptance scenarios S1–S25 of SEMANTICS.md §3,
//! one test per scenario, each run against a local stage and against the
//! same stage behind a real broker (`<scenario>::local`, `::remote`).
//!
//! Where the port decided differently from POE::Stage, the tests assert
//! the port's documented behaviour (src/request/mod.rs): unhandled
//! responses are counted and reported (S7), `on_my_T` interception of a
//! final response gives the caller `cancelled` (S8), top-level requests
//! may receive responses through closures (S10), responses in flight for
//! a cancelled request are never delivered (S25).
//!
//! No counterpart in this port, so no test:
//! * S18 (Stage.new delivers an implicit `init` request synchronously;
//!   odd argument count): `Stage::new` takes a loop and a name, has no
//!   init request and no argument list.
//! * S19 (self-requesting stage returning on its init request): there is
//!   no init request to return on; a stage that wants to report to its
//!   creator is sent a request by it.
//! * S22 (expose errors for lexical names): names are not bound to
//!   lexicals; data is reached through `Request::data`,
//!   `Response::data`, `ServedRequest::data` and `Stage::data`, whose
//!   keys are plain strings, so there is nothing to reject.

#[macro_use]
mod common_requests;

use common_requests::*;
use stagebus::request::{unhandled_responses, RequestBuilder};
use stagebus::*;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

in_modes!(
    s01_call_return_runs_the_mapped_handler_once,
    s02_default_types_are_emit_and_return,
    s03_emits_arrive_in_order_before_the_return,
    s04_dialogue_emit_recall_return,
    s05_role_maps_to_on_role_type,
    s06_explicit_mapping_beats_role,
    s07_unhandled_responses_are_counted_and_reported,
    s08_on_my_type_intercepts_the_callees_own_response,
    s09_missing_method_is_refused,
    s10_top_level_request_gets_responses_through_closures,
    s11_second_return_fails_without_context,
    s12_cancel_cascades_down_the_call_tree,
    s13_dropping_the_request_cancels_and_frees_its_data,
    s14_caller_and_callee_data_are_separate,
    s15_exposed_data_is_seen_by_every_response_handler,
    s16_req_data_persists_per_transaction,
    s17_ids_are_shared_by_a_transaction_and_never_reused,
    s20_fifo_candygram,
    s21_recall_guards,
    s23_pass_to_redelivers_synchronously,
    s24_on_foo_beats_foo_and_unknown_method_is_an_error,
    s25_responses_in_flight_for_a_cancelled_request_are_dropped,
    s25_responses_in_flight_for_a_dropped_request_are_dropped,
    error_no_such_method_reaches_on_error_and_fallback,
    error_timeout_reaches_on_error_and_fallback,
    error_from_a_handler_is_the_final_response,
);

fn int(ctx: &Ctx<'_>, name: &str) -> i64 {
    ctx.arg(name).and_then(Value::as_int).unwrap_or(-1)
}

fn text(ctx: &Ctx<'_>, name: &str) -> String {
    ctx.arg(name)
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_string()
}

/// S1: `on_return => H`; the callee returns {x: 1}; H runs once, sees a
/// final `return` whose id is the request's.
fn s01_call_return_runs_the_mapped_handler_once(mode: Mode) {
    let fx = Fixture::new(mode);
    let callee = Stage::new(&fx.lp, "Callee");
    callee.on("get", |ctx| ctx.ret("return", &Args::new().with("x", 1)));
    let target = fx.target(&callee);
    let hits = Rc::new(RefCell::new(Vec::new()));
    let h = hits.clone();
    let req = Request::to(target, "get")
        .on("return", move |ctx| {
            let rsp = ctx.rsp().expect("a response handler sees its response");
            h.borrow_mut().push((
                rsp.id(),
                rsp.kind().to_string(),
                rsp.is_final(),
                ctx.arg("x").cloned(),
            ));
            Ok(())
        })
        .send()
        .unwrap();
    run_until(&fx.lp, "the return", || !hits.borrow().is_empty());
    fx.barrier();
    assert_eq!(
        *hits.borrow(),
        vec![(req.id(), "return".to_string(), true, Some(Value::Int(1)))]
    );
    assert!(!req.is_open());
}

/// S2: an empty type is `emit` for emit and `return` for return.
fn s02_default_types_are_emit_and_return(mode: Mode) {
    let fx = Fixture::new(mode);
    let callee = Stage::new(&fx.lp, "Callee");
    callee.on("work", |ctx| {
        ctx.emit("", &Args::new().with("n", 1))?;
        ctx.req().unwrap().emit("", &Args::new().with("n", 2))?;
        ctx.ret("", &Args::new().with("n", 3))
    });
    let target = fx.target(&callee);
    let log = Log::new();
    let (l1, l2, l3) = (log.clone(), log.clone(), log.clone());
    let _req = Request::to(target, "work")
        .on("emit", move |ctx| {
            l1.push(format!("{} {}", ctx.rsp().unwrap().kind(), int(ctx, "n")));
            Ok(())
        })
        .on("on_return", move |ctx| {
            l2.push(format!("{} {}", ctx.rsp().unwrap().kind(), int(ctx, "n")));
            Ok(())
        })
        .fallback(move |ctx| {
            l3.push(format!("fallback {}", ctx.name()));
            Ok(())
        })
        .send()
        .unwrap();
    run_until(&fx.lp, "the return", || log.len() == 3);
    fx.barrier();
    assert_eq!(log.lines(), ["emit 1", "emit 2", "return 3"]);
}

/// S3: several emits, from the handler and later from outside it (a slow
/// method holding its request), arrive in order; none ends the
/// transaction; then the return does.
fn s03_emits_arrive_in_order_before_the_return(mode: Mode) {
    let fx = Fixture::new(mode);
    let callee = Stage::new(&fx.lp, "Callee");
    let held = Rc::new(RefCell::new(None));
    let h = held.clone();
    callee.on("count", move |ctx| {
        let req = ctx.req().unwrap();
        req.emit("tick", &Args::new().with("i", 0))?;
        req.emit("tick", &Args::new().with("i", 1))?;
        *h.borrow_mut() = Some(req.clone());
        Ok(())
    });
    let target = fx.target(&callee);
    let log = Log::new();
    let (l1, l2) = (log.clone(), log.clone());
    let req = Request::to(target, "count")
        .on("tick", move |ctx| {
            let rsp = ctx.rsp().unwrap();
            l1.push(format!("tick {} final={}", int(ctx, "i"), rsp.is_final()));
            Ok(())
        })
        .on("done", move |ctx| {
            let rsp = ctx.rsp().unwrap();
            l2.push(format!("done {} final={}", int(ctx, "n"), rsp.is_final()));
            Ok(())
        })
        .send()
        .unwrap();
    run_until(&fx.lp, "two ticks", || log.len() == 2);
    assert!(req.is_open(), "an emit does not end the transaction");
    let served = held.borrow_mut().take().unwrap();
    assert!(served.is_open());
    for i in 2..5 {
        served.emit("tick", &Args::new().with("i", i)).unwrap();
    }
    served.ret("done", &Args::new().with("n", 5)).unwrap();
    assert!(!served.is_open());
    run_until(&fx.lp, "the return", || log.len() == 6);
    fx.barrier();
    assert!(!req.is_open());
    assert_eq!(
        log.lines(),
        [
            "tick 0 final=false",
            "tick 1 final=false",
            "tick 2 final=false",
            "tick 3 final=false",
            "tick 4 final=false",
            "done 5 final=true"
        ]
    );
}

/// S4: emit → recall → emit → recall → … → return, the callee seeing the
/// same request and its data in every round.
fn s04_dialogue_emit_recall_return(mode: Mode) {
    let fx = Fixture::new(mode);
    let callee = Stage::new(&fx.lp, "Callee");
    let log = Log::new();
    let l = log.clone();
    callee.on("chat", move |ctx| {
        let req = ctx.req().unwrap();
        l.push(format!("chat req={}", req.caller_id()));
        req.data().set("round", 0i64);
        req.data().set("first_id", req.id());
        ctx.emit("ask", &Args::new().with("round", 0))
    });
    let l = log.clone();
    callee.on("answer", move |ctx| {
        let req = ctx.req().unwrap();
        let round = req.data().get::<i64>("round").expect("req data survives") + 1;
        req.data().set("round", round);
        l.push(format!(
            "answer req={} same={} said={} round={round}",
            req.caller_id(),
            req.data().get::<u64>("first_id") == Some(req.id()),
            text(ctx, "said")
        ));
        ctx.emit("ask", &Args::new().with("round", round))
    });
    let l = log.clone();
    callee.on("finish", move |ctx| {
        let req = ctx.req().unwrap();
        let rounds = req.data().get::<i64>("round").unwrap();
        l.push(format!("finish req={} rounds={rounds}", req.caller_id()));
        ctx.ret("done", &Args::new().with("rounds", rounds))
    });
    let target = fx.target(&callee);
    let l = log.clone();
    let l2 = log.clone();
    let req = Request::to(target, "chat")
        .on("ask", move |ctx| {
            let rsp = ctx.rsp().unwrap();
            let round = int(ctx, "round");
            l.push(format!("ask rsp={} round={round}", rsp.id()));
            if round < 2 {
                rsp.recall("answer", &Args::new().with("said", format!("r{round}")))
            } else {
                rsp.recall("on_finish", &Args::new())
            }
        })
        .on("done", move |ctx| {
            l2.push(format!(
                "done rsp={} rounds={}",
                ctx.rsp().unwrap().id(),
                int(ctx, "rounds")
            ));
            Ok(())
        })
        .send()
        .unwrap();
    run_until(&fx.lp, "the end of the dialogue", || !req.is_open());
    fx.barrier();
    let id = req.id();
    assert_eq!(
        log.lines(),
        [
            format!("chat req={id}"),
            format!("ask rsp={id} round=0"),
            format!("answer req={id} same=true said=r0 round=1"),
            format!("ask rsp={id} round=1"),
            format!("answer req={id} same=true said=r1 round=2"),
            format!("ask rsp={id} round=2"),
            format!("finish req={id} rounds=2"),
            format!("done rsp={id} rounds=2"),
        ]
    );
}

/// A door that answers a knock with type `kind`.
fn door(fx: &Fixture, kind: &'static str) -> Target {
    let door = Stage::new(&fx.lp, "Door");
    door.on("knock", move |ctx| {
        ctx.ret(kind, &Args::new().with("who", text(ctx, "who")))
    });
    fx.target(&door)
}

/// S5: `role => knock`, the callee returns `hello`: the requesting
/// stage's `on_knock_hello` runs.
fn s05_role_maps_to_on_role_type(mode: Mode) {
    let fx = Fixture::new(mode);
    let target = door(&fx, "hello");
    let app = Stage::new(&fx.lp, "App");
    app.on("run", move |ctx| {
        let sub = Request::to(target.clone(), "knock")
            .role("knock")
            .arg("who", "candygram")
            .send()?;
        ctx.req().unwrap().data().set("sub", sub);
        Ok(())
    });
    let log = Log::new();
    let l = log.clone();
    app.on("on_knock_hello", move |ctx| {
        l.push(format!(
            "on_knock_hello who={} stage={}",
            text(ctx, "who"),
            ctx.stage().unwrap().name()
        ));
        ctx.ret("return", &Args::new())
    });
    let out = call(&fx.lp, &app, "run", Args::new());
    assert_eq!(out.kind(), Some("return"));
    assert_eq!(log.lines(), ["on_knock_hello who=candygram stage=App"]);
}

/// S6 (and lab/handler-names): with `role => make_me_a_sandwich`, an
/// explicit mapping wins over `on_make_me_a_sandwich_<type>` (closure or
/// handler name), and unmapped types go to the role handlers.
fn s06_explicit_mapping_beats_role(mode: Mode) {
    let fx = Fixture::new(mode);
    let chef = Stage::new(&fx.lp, "Chef");
    chef.on("make", |ctx| {
        ctx.emit("hello", &Args::new())?;
        ctx.emit("blort", &Args::new())?;
        ctx.emit("success", &Args::new())?;
        ctx.ret("failure", &Args::new())
    });
    let target = fx.target(&chef);
    let log = Log::new();
    let app = Stage::new(&fx.lp, "App");
    let l = log.clone();
    app.on("run", move |ctx| {
        let l = l.clone();
        let sub = Request::to(target.clone(), "make")
            .role("make_me_a_sandwich")
            .on("hello", move |_| {
                l.push("closure hello");
                Ok(())
            })
            .on_method("blort", "handle_blort")
            .send()?;
        ctx.req().unwrap().data().set("sub", sub);
        Ok(())
    });
    for name in [
        "handle_blort",
        "on_make_me_a_sandwich_hello",
        "on_make_me_a_sandwich_blort",
        "on_make_me_a_sandwich_success",
    ] {
        let l = log.clone();
        app.on(name, move |_| {
            l.push(name);
            Ok(())
        });
    }
    let l = log.clone();
    app.on("on_make_me_a_sandwich_failure", move |ctx| {
        l.push("on_make_me_a_sandwich_failure");
        ctx.ret("return", &Args::new())
    });
    let out = call(&fx.lp, &app, "run", Args::new());
    assert_eq!(out.kind(), Some("return"));
    assert_eq!(
        log.lines(),
        [
            "closure hello",
            "handle_blort",
            "on_make_me_a_sandwich_success",
            "on_make_me_a_sandwich_failure"
        ]
    );
}

/// S7 (port decision): a response with no handler (no mapping, no role,
/// a role without `on_<role>_<type>`, an error nobody maps) is counted by
/// `unhandled_responses()` and logged at warn level; a
/// final one still ends the transaction on both sides.
fn s07_unhandled_responses_are_counted_and_reported(mode: Mode) {
    let fx = Fixture::new(mode);
    let reports = capture_warnings();
    let callee = Stage::new(&fx.lp, "Callee");
    let callee_ended = Counter::new();
    let e = callee_ended.clone();
    callee.on("work", move |ctx| {
        ctx.req().unwrap().data().on_end("end", e.hook());
        ctx.emit("progress", &Args::new())?;
        ctx.ret("done", &Args::new())
    });
    let target = fx.target(&callee);
    let before = unhandled_responses();

    // No mapping at all, at top level.
    let caller_ended = Counter::new();
    let bare = Request::to(target.clone(), "work").send().unwrap();
    bare.data().on_end("end", caller_ended.hook());
    run_until(&fx.lp, "two unhandled responses", || {
        unhandled_responses() == before + 2
    });
    assert!(!bare.is_open(), "an unhandled final still ends the request");
    assert_eq!(caller_ended.get(), 1);
    run_until(&fx.lp, "the callee's side to end", || {
        callee_ended.get() == 1
    });

    // A role whose handlers the requesting stage lacks.
    let app = Stage::new(&fx.lp, "App");
    let t = target.clone();
    app.on("run", move |ctx| {
        let sub = Request::to(t.clone(), "work").role("chore").send()?;
        ctx.req().unwrap().data().set("sub", sub);
        Ok(())
    });
    let (_top, _) = send_recorded(&app, "run", Args::new());
    run_until(&fx.lp, "two more unhandled responses", || {
        unhandled_responses() == before + 4
    });

    // An error nobody maps.
    let _err = Request::to(target, "nope").send().unwrap();
    run_until(&fx.lp, "an unhandled error", || {
        unhandled_responses() == before + 5
    });
    fx.barrier();
    assert_eq!(unhandled_responses(), before + 5);
    let lines = reports.lines();
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert!(lines[0].contains("unhandled 'progress'"), "{lines:?}");
    assert!(lines[1].contains("unhandled 'done'"), "{lines:?}");
    assert!(lines[2].contains("unhandled 'progress'"), "{lines:?}");
    assert!(lines[3].contains("unhandled 'done'"), "{lines:?}");
    assert!(lines[4].contains("unhandled 'error'"), "{lines:?}");
    assert!(lines[4].contains("no_such_method"), "{lines:?}");
    assert_eq!(callee_ended.get(), 2);
}

/// S8 (port decision): a callee stage with `on_my_T` handles its own
/// responses of type T at once, inside the emit; the requester gets
/// nothing for them; an intercepted final response still ends the
/// request and the caller gets a `cancelled` error.
fn s08_on_my_type_intercepts_the_callees_own_response(mode: Mode) {
    let fx = Fixture::new(mode);
    let log = Log::new();
    let callee = Stage::new(&fx.lp, "Callee");
    let l = log.clone();
    callee.on("work", move |ctx| {
        ctx.emit("progress", &Args::new().with("n", 1))?;
        l.push("after emit progress");
        ctx.emit("other", &Args::new().with("n", 2))?;
        ctx.ret("done", &Args::new().with("n", 3))?;
        l.push(format!("after ret open={}", ctx.req().unwrap().is_open()));
        Ok(())
    });
    let l = log.clone();
    callee.on("on_my_progress", move |ctx| {
        l.push(format!(
            "on_my_progress n={} req_open={}",
            int(ctx, "n"),
            ctx.req().unwrap().is_open()
        ));
        Ok(())
    });
    let l = log.clone();
    callee.on("on_my_done", move |ctx| {
        l.push(format!("on_my_done n={}", int(ctx, "n")));
        Ok(())
    });
    let target = fx.target(&callee);
    let out = call(&fx.lp, target, "work", Args::new());
    fx.barrier();
    assert_eq!(
        log.lines(),
        [
            "on_my_progress n=1 req_open=true",
            "after emit progress",
            "on_my_done n=3",
            "after ret open=false"
        ]
    );
    let kinds: Vec<&str> = out.emits.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds, ["other"], "intercepted emits never reach the caller");
    assert_eq!(out.kind(), Some("error"));
    assert_eq!(out.code(), Some(ErrorCode::Cancelled));
}

/// S9: a request without a method is refused at once, naming the
/// parameter. (A request without a stage cannot be written: the target
/// is a required argument of `Request::to`.)
fn s09_missing_method_is_refused(mode: Mode) {
    let fx = Fixture::new(mode);
    let callee = Stage::new(&fx.lp, "Callee");
    callee.on("work", |ctx| ctx.ret("", &Args::new()));
    let target = fx.target(&callee);
    let err = Request::to(target, "").send().unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidArgument);
    assert!(err.message.contains("'method'"), "{err}");
}

/// S10 (port decision): a request made outside every handler receives its
/// responses through closures mapped with `on`; they run with no stage
/// and no request of their own. Role mapping alone needs a requesting
/// stage, so a top-level request with only a role hears nothing.
fn s10_top_level_request_gets_responses_through_closures(mode: Mode) {
    let fx = Fixture::new(mode);
    let callee = Stage::new(&fx.lp, "Callee");
    callee.on("work", |ctx| {
        ctx.emit("emit", &Args::new().with("n", 1))?;
        ctx.ret("return", &Args::new().with("n", 2))
    });
    let target = fx.target(&callee);
    let log = Log::new();
    let (l1, l2) = (log.clone(), log.clone());
    let req = Request::to(target.clone(), "work")
        .on("emit", move |ctx| {
            l1.push(format!(
                "emit n={} stage={} req={}",
                int(ctx, "n"),
                ctx.stage().is_some(),
                ctx.req().is_some()
            ));
            Ok(())
        })
        .on("return", move |ctx| {
            let err = ctx.ret("return", &Args::new()).unwrap_err();
            l2.push(format!(
                "return n={} stage={} req={} ret={}",
                int(ctx, "n"),
                ctx.stage().is_some(),
                ctx.req().is_some(),
                err.code
            ));
            Ok(())
        })
        .send()
        .unwrap();
    run_until(&fx.lp, "the return", || !req.is_open());
    assert_eq!(
        log.lines(),
        [
            "emit n=1 stage=false req=false",
            "return n=2 stage=false req=false ret=invalid_state"
        ]
    );
    let before = unhandled_responses();
    let role_only = Request::to(target, "work").role("knock").send().unwrap();
    run_until(&fx.lp, "the role-only request to end", || {
        !role_only.is_open()
    });
    assert_eq!(unhandled_responses(), before + 2);
}

/// S11: after `return`, another return, an emit, a fail or a pass_to on
/// the same request fails with `Cannot emit message: The requester has no
/// context`; the caller gets exactly the first return.
fn s11_second_return_fails_without_context(mode: Mode) {
    let fx = Fixture::new(mode);
    let callee = Stage::new(&fx.lp, "Callee");
    let results = Rc::new(RefCell::new(Vec::new()));
    let r = results.clone();
    callee.on("work", move |ctx| {
        let req = ctx.req().unwrap();
        let mut r = r.borrow_mut();
        r.push(ctx.ret("return", &Args::new().with("n", 1)));
        r.push(ctx.ret("return", &Args::new().with("n", 2)));
        r.push(ctx.emit("emit", &Args::new()));
        r.push(req.fail(Error::new(ErrorCode::HandlerFailed, "late")));
        r.push(req.pass_to("work", &Args::new()));
        Ok(())
    });
    let target = fx.target(&callee);
    let out = call(&fx.lp, target, "work", Args::new());
    fx.barrier();
    let results = results.borrow();
    assert_eq!(results.len(), 5);
    assert!(results[0].is_ok());
    for later in &results[1..] {
        let e = later.as_ref().unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidState);
        assert_eq!(
            e.message,
            "Cannot emit message: The requester has no context"
        );
    }
    assert!(out.emits.is_empty());
    assert_eq!(out.kind(), Some("return"));
    assert_eq!(out.last.as_ref().unwrap().1.get("n"), Some(&Value::Int(1)));
}

/// Hooks and handles of one link of a call chain, as the tests observe
/// them.
#[derive(Default, Clone)]
struct Link {
    cancelled: Counter,
    served_end: Counter,
    sub_end: Counter,
    served: Rc<RefCell<Option<ServedRequest>>>,
}

/// S12: A serves R1 and asks B (R2); B serving R2 asks C (R3). Cancelling
/// R1 cancels R2 and R3: B's and C's on-cancel run once, every data free
/// hook runs once, B and C can no longer answer, and A hears nothing more.
fn s12_cancel_cascades_down_the_call_tree(mode: Mode) {
    let fx = Fixture::new(mode);
    let (a, b, c) = (Link::default(), Link::default(), Link::default());

    let stage_c = Stage::new(&fx.lp, "C");
    let l = c.clone();
    stage_c.on("work", move |ctx| {
        let req = ctx.req().unwrap();
        req.on_cancel(l.cancelled.hook());
        req.data().on_end("end", l.served_end.hook());
        *l.served.borrow_mut() = Some(req.clone());
        ctx.emit("working", &Args::new().with("at", "C"))
    });
    let to_c = fx.target(&stage_c);

    let stage_b = Stage::new(&fx.lp, "B");
    let l = b.clone();
    stage_b.on("relay", move |ctx| {
        let req = ctx.req().unwrap();
        req.on_cancel(l.cancelled.hook());
        req.data().on_end("end", l.served_end.hook());
        *l.served.borrow_mut() = Some(req.clone());
        let sub = Request::to(to_c.clone(), "work")
            // B's response handler serves B's own request: pass it up.
            .on("working", |ctx| ctx.emit("working", ctx.args()))
            .send()?;
        sub.data().on_end("end", l.sub_end.hook());
        // Kept in B's own data, not R2's: only R3's implicit parent link
        // to R2 can cancel it (A keeps R2 in R1's data).
        ctx.stage().unwrap().data().set("r3", sub);
        Ok(())
    });
    let to_b = fx.target(&stage_b);

    let stage_a = Stage::new(&fx.lp, "A");
    let heard = Log::new();
    let l = a.clone();
    let h = heard.clone();
    stage_a.on("run", move |ctx| {
        let req = ctx.req().unwrap();
        req.data().on_end("end", l.served_end.hook());
        let h = h.clone();
        let sub = Request::to(to_b.clone(), "relay")
            .fallback(move |ctx| {
                h.push(format!("{} from {}", ctx.name(), text(ctx, "at")));
                Ok(())
            })
            .send()?;
        sub.data().on_end("end", l.sub_end.hook());
        req.data().set("sub", sub);
        Ok(())
    });

    let (r1, top) = send_recorded(&stage_a, "run", Args::new());
    run_until(&fx.lp, "C's emit to reach A", || !heard.is_empty());
    assert!(r1.cancel(), "R1 was open");
    // Locally the cascade is synchronous; through the broker it takes
    // the cancel frames' trip.
    run_until(&fx.lp, "B and C to be cancelled", || {
        b.cancelled.get() == 1 && c.cancelled.get() == 1
    });
    fx.barrier();
    for (name, link) in [("B", &b), ("C", &c)] {
        assert_eq!(link.cancelled.get(), 1, "{name}'s on-cancel");
        assert_eq!(link.served_end.get(), 1, "{name}'s request data");
        let served = link.served.borrow().clone().unwrap();
        assert!(!served.is_open(), "{name}'s request is still open");
        for answer in [
            served.emit("late", &Args::new()),
            served.ret("late", &Args::new()),
        ] {
            assert_eq!(answer.unwrap_err().code, ErrorCode::InvalidState);
        }
    }
    assert_eq!(a.served_end.get(), 1, "A's request data");
    assert_eq!(a.sub_end.get(), 1, "A's data on R2");
    assert_eq!(b.sub_end.get(), 1, "B's data on R3");
    assert_eq!(a.cancelled.get(), 0);
    fx.barrier();
    assert_eq!(heard.lines(), ["working from C"]);
    assert!(top.borrow().last.is_none() && top.borrow().emits.is_empty());
    if let Some(broker) = &fx.broker {
        assert_eq!(broker.stats().pending_calls, 0);
    }
}

/// Cancels a timer when dropped, recording whether it had not fired.
struct TimerGuard {
    lp: EventLoop,
    id: TimerId,
    cancelled_in_time: Rc<Cell<Option<bool>>>,
}

impl Drop for TimerGuard {
    fn drop(&mut self) {
        self.cancelled_in_time
            .set(Some(self.lp.cancel_timer(self.id)));
    }
}

/// S13: dropping the caller's `Request` cancels the transaction: the
/// caller's data goes at once, the callee's on-cancel runs, its data
/// (here a pending timer's guard) is freed so the timer never fires.
fn s13_dropping_the_request_cancels_and_frees_its_data(mode: Mode) {
    let fx = Fixture::new(mode);
    let callee = Stage::new(&fx.lp, "Callee");
    let live = Rc::new(Cell::new(0i64));
    let cancelled = Counter::new();
    let served_end = Counter::new();
    let fired = Counter::new();
    let timer_cancelled = Rc::new(Cell::new(None));
    let delivered = Counter::new();
    let (lv, cn, se, fi, tc, dl) = (
        live.clone(),
        cancelled.clone(),
        served_end.clone(),
        fired.clone(),
        timer_cancelled.clone(),
        delivered.clone(),
    );
    callee.on("hold", move |ctx| {
        let req = ctx.req().unwrap();
        let lp = ctx.stage().unwrap().event_loop().clone();
        req.on_cancel(cn.hook());
        req.data().on_end("end", se.hook());
        req.data().set("live", Live::new(&lv));
        req.data().set("kept", req.clone());
        let fi = fi.clone();
        let id = lp.add_timer(Duration::from_secs(30), move |_| fi.bump());
        req.data().set(
            "timer",
            TimerGuard {
                lp,
                id,
                cancelled_in_time: tc.clone(),
            },
        );
        dl.bump();
        Ok(())
    });
    let target = fx.target(&callee);
    let caller_end = Counter::new();
    let (req, outcome) = send_recorded(target, "hold", Args::new());
    req.data().on_end("end", caller_end.hook());
    req.data().set("live", Live::new(&live));
    run_until(&fx.lp, "the delivery", || delivered.get() == 1);
    assert_eq!(live.get(), 2);
    drop(req);
    assert_eq!(caller_end.get(), 1, "the caller's data goes with the drop");
    run_until(&fx.lp, "the callee to hear of it", || cancelled.get() == 1);
    fx.barrier();
    assert_eq!(cancelled.get(), 1);
    assert_eq!(served_end.get(), 1);
    assert_eq!(caller_end.get(), 1);
    assert_eq!(live.get(), 0, "per-request data leaked");
    assert_eq!(timer_cancelled.get(), Some(true), "the timer was pending");
    assert_eq!(fired.get(), 0);
    let o = outcome.borrow();
    assert!(o.last.is_none() && o.emits.is_empty());
}

/// S14: the caller's data on a request and the callee's data for it are
/// separate, under the same key.
fn s14_caller_and_callee_data_are_separate(mode: Mode) {
    let fx = Fixture::new(mode);
    let callee = Stage::new(&fx.lp, "Callee");
    let log = Log::new();
    let l = log.clone();
    callee.on("work", move |ctx| {
        let req = ctx.req().unwrap();
        l.push(format!("callee sees {:?}", req.data().get::<i64>("key")));
        req.data().set("key", 1i64);
        ctx.emit("emit", &Args::new())
    });
    let l = log.clone();
    callee.on("again", move |ctx| {
        let req = ctx.req().unwrap();
        l.push(format!("callee again {:?}", req.data().get::<i64>("key")));
        ctx.ret("return", &Args::new())
    });
    let target = fx.target(&callee);
    let (l1, l2) = (log.clone(), log.clone());
    let req = Request::to(target, "work")
        .on("emit", move |ctx| {
            let rsp = ctx.rsp().unwrap();
            l1.push(format!("caller emit {:?}", rsp.data().get::<i64>("key")));
            rsp.recall("again", &Args::new())
        })
        .on("return", move |ctx| {
            let rsp = ctx.rsp().unwrap();
            l2.push(format!("caller return {:?}", rsp.data().get::<i64>("key")));
            Ok(())
        })
        .send()
        .unwrap();
    req.data().set("key", 309i64);
    run_until(&fx.lp, "the return", || !req.is_open());
    assert_eq!(
        log.lines(),
        [
            "callee sees None",
            "caller emit Some(309)",
            "callee again Some(1)",
            "caller return Some(309)"
        ]
    );
}

/// S15 (examples/01_basics): data attached to a sub-request is the
/// `rsp` data of its emit and return handlers; a change made in the emit
/// handler is seen by the return handler; the requester's own request
/// data is at hand in both.
fn s15_exposed_data_is_seen_by_every_response_handler(mode: Mode) {
    let fx = Fixture::new(mode);
    let helper = Stage::new(&fx.lp, "Helper");
    helper.on("work", |ctx| {
        ctx.emit("emit", &Args::new().with("value", "EmitValue123"))?;
        ctx.ret("return", &Args::new().with("value", "ReturnValueXyz"))
    });
    let target = fx.target(&helper);
    let app = Stage::new(&fx.lp, "App");
    app.on("run", move |ctx| {
        ctx.req()
            .unwrap()
            .data()
            .set("hash", "app data".to_string());
        let sub = Request::to(target.clone(), "work")
            .on_method("emit", "catch_emit")
            .on_method("return", "catch_return")
            .send()?;
        sub.data().set("ctx", "test response context".to_string());
        ctx.req().unwrap().data().set("sub", sub);
        Ok(())
    });
    let log = Log::new();
    let l = log.clone();
    app.on("catch_emit", move |ctx| {
        let rsp = ctx.rsp().unwrap();
        l.push(format!(
            "emit value={} req={:?} rsp={:?}",
            text(ctx, "value"),
            ctx.req().unwrap().data().get::<String>("hash"),
            rsp.data().get::<String>("ctx")
        ));
        rsp.data().set("ctx", "modified in catch_emit".to_string());
        Ok(())
    });
    let l = log.clone();
    app.on("catch_return", move |ctx| {
        l.push(format!(
            "return value={} req={:?} rsp={:?}",
            text(ctx, "value"),
            ctx.req().unwrap().data().get::<String>("hash"),
            ctx.rsp().unwrap().data().get::<String>("ctx")
        ));
        ctx.ret("return", &Args::new())
    });
    let out = call(&fx.lp, &app, "run", Args::new());
    assert_eq!(out.kind(), Some("return"));
    assert_eq!(
        log.lines(),
        [
            "emit value=EmitValue123 req=Some(\"app data\") rsp=Some(\"test response context\")",
            "return value=ReturnValueXyz req=Some(\"app data\") rsp=Some(\"modified in catch_emit\")"
        ]
    );
}

/// S16: request data lasts across the handlers of one transaction and is
/// separate across concurrent transactions, on both sides; the stage's
/// own data is shared by all.
fn s16_req_data_persists_per_transaction(mode: Mode) {
    let fx = Fixture::new(mode);
    let echo = Stage::new(&fx.lp, "Echo");
    // Holds every request until both are open, so the two transactions
    // overlap on both sides whatever the timing.
    echo.on("start", |ctx| {
        let req = ctx.req().unwrap();
        req.data().set("name", text(ctx, "name"));
        let stage = ctx.stage().unwrap();
        if !stage.data().contains("waiting") {
            stage.data().set("waiting", Vec::<ServedRequest>::new());
        }
        let all = stage
            .data()
            .with("waiting", |w: &mut Vec<ServedRequest>| {
                w.push(req.clone());
                if w.len() == 2 {
                    std::mem::take(w)
                } else {
                    Vec::new()
                }
            })
            .unwrap();
        for r in all {
            r.emit("wait", &Args::new())?;
        }
        Ok(())
    });
    echo.on("finish", |ctx| {
        let mine = ctx.req().unwrap().data().get::<String>("name").unwrap();
        ctx.ret("return", &Args::new().with("name", mine))
    });
    let target = fx.target(&echo);
    let app = Stage::new(&fx.lp, "App");
    app.data().set("runs", 0i64);
    app.on("run", move |ctx| {
        let stage = ctx.stage().unwrap();
        stage.data().with("runs", |n: &mut i64| *n += 1);
        let req = ctx.req().unwrap();
        req.data().set("name", text(ctx, "name"));
        let sub = Request::to(target.clone(), "start")
            .arg("name", text(ctx, "name"))
            .on("wait", |ctx| {
                ctx.rsp().unwrap().recall("finish", &Args::new())
            })
            .on_method("return", "got")
            .send()?;
        req.data().set("sub", sub);
        Ok(())
    });
    let log = Log::new();
    let l = log.clone();
    app.on("got", move |ctx| {
        let mine = ctx.req().unwrap().data().get::<String>("name").unwrap();
        l.push(format!("run {mine} got {}", text(ctx, "name")));
        ctx.ret("return", &Args::new().with("name", mine))
    });
    let (_a, out_a) = send_recorded(&app, "run", Args::new().with("name", "a"));
    let (_b, out_b) = send_recorded(&app, "run", Args::new().with("name", "b"));
    run_until(&fx.lp, "both runs to finish", || {
        out_a.borrow().last.is_some() && out_b.borrow().last.is_some()
    });
    assert_eq!(app.data().get::<i64>("runs"), Some(2));
    let mut lines = log.lines();
    lines.sort();
    assert_eq!(lines, ["run a got a", "run b got b"]);
    for (out, name) in [(&out_a, "a"), (&out_b, "b")] {
        let o = out.borrow();
        assert_eq!(
            o.last.as_ref().unwrap().1.get("name"),
            Some(&Value::from(name))
        );
    }
}

/// S17: a transaction's request, responses and recalls share its id;
/// live requests have distinct ids; ids are never reused (a 64-bit
/// counter per thread), which is stricter than POE's "reusable once every
/// holder is gone". On the callee, a request and its recalls share one
/// id, distinct among the callee's live requests: a local request's is
/// the caller's id; one from another program gets the callee's own, and
/// the caller's id is [`ServedRequest::caller_id`].
fn s17_ids_are_shared_by_a_transaction_and_never_reused(mode: Mode) {
    let fx = Fixture::new(mode);
    let callee = Stage::new(&fx.lp, "Callee");
    // (what, id seen, caller's id seen): on the caller both are rsp.id().
    type Seen = Rc<RefCell<Vec<(&'static str, u64, u64)>>>;
    let seen: Seen = Rc::default();
    let s = seen.clone();
    callee.on("work", move |ctx| {
        let req = ctx.req().unwrap();
        s.borrow_mut().push(("served", req.id(), req.caller_id()));
        ctx.emit("emit", &Args::new())
    });
    let s = seen.clone();
    callee.on("again", move |ctx| {
        let req = ctx.req().unwrap();
        s.borrow_mut().push(("recalled", req.id(), req.caller_id()));
        ctx.ret("return", &Args::new())
    });
    let target = fx.target(&callee);
    let mut ids = Vec::new();
    for _round in 0..2 {
        let (s1, s2) = (seen.clone(), seen.clone());
        let send = || {
            let (s1, s2) = (s1.clone(), s2.clone());
            Request::to(target.clone(), "work")
                .on("emit", move |ctx| {
                    let rsp = ctx.rsp().unwrap();
                    s1.borrow_mut().push(("emit", rsp.id(), rsp.id()));
                    rsp.recall("again", &Args::new())
                })
                .on("return", move |ctx| {
                    let id = ctx.rsp().unwrap().id();
                    s2.borrow_mut().push(("return", id, id));
                    Ok(())
                })
                .send()
                .unwrap()
        };
        let (r1, r2) = (send(), send());
        assert_ne!(r1.id(), r2.id(), "live requests have distinct ids");
        run_until(&fx.lp, "both returns", || !r1.is_open() && !r2.is_open());
        let mut served_ids = Vec::new();
        for r in [&r1, &r2] {
            let of_r: Vec<(&str, u64)> = seen
                .borrow()
                .iter()
                .filter(|(_, _, caller)| *caller == r.id())
                .map(|(k, id, _)| (*k, *id))
                .collect();
            let mut kinds: Vec<&str> = of_r.iter().map(|(k, _)| *k).collect();
            kinds.sort();
            assert_eq!(kinds, ["emit", "recalled", "return", "served"]);
            let id_of = |what: &str| of_r.iter().find(|(k, _)| *k == what).unwrap().1;
            assert_eq!(id_of("emit"), r.id());
            assert_eq!(id_of("return"), r.id());
            assert_eq!(
                id_of("recalled"),
                id_of("served"),
                "a recall sees the id of the request it belongs to"
            );
            if mode == Mode::Local {
                assert_eq!(id_of("served"), r.id(), "a local request keeps its id");
            }
            served_ids.push(id_of("served"));
        }
        assert_ne!(served_ids[0], served_ids[1], "the callee's live ids differ");
        ids.extend([r1.id(), r2.id()]);
        seen.borrow_mut().clear();
    }
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, ids, "ids increase and are never reused");
}

in_modes!(s17_live_ids_are_distinct_at_a_callee_of_two_caller_programs);

/// S17 across programs: two callers whose request ids come from
/// independent counters (each its own thread with its own loop, as two
/// processes would be: the counter is per thread) both call one
/// publisher and wait. Their requests carry the same caller id (each is
/// its program's first), yet the two live requests the publisher serves
/// have distinct ids, and each keeps its caller's id as `caller_id`.
fn s17_live_ids_are_distinct_at_a_callee_of_two_caller_programs(mode: Mode) {
    if !mode.is_remote() {
        return; // one loop has one counter: covered by the test above
    }
    let fx = Fixture::new(mode);
    let stage = Stage::new(&fx.lp, "Held");
    let held: Rc<RefCell<Vec<ServedRequest>>> = Rc::default();
    let h = held.clone();
    stage.on("hold", move |ctx| {
        h.borrow_mut().push(ctx.req().unwrap().clone());
        Ok(())
    });
    publish(&fx.lp, fx.publisher.as_ref().unwrap(), &stage, "Held");
    let address = fx.address.clone().unwrap();
    let callers: Vec<_> = (0..2)
        .map(|_| {
            let address = address.clone();
            std::thread::spawn(move || -> (u64, bool) {
                let lp = EventLoop::new().unwrap();
                let client = Client::connect(&lp, &address, ClientConfig::default());
                let remote = subscribe(&lp, &client, "Held");
                let answered = Rc::new(Cell::new(false));
                let a = answered.clone();
                let req = Request::to(remote, "hold")
                    .on("return", move |_| {
                        a.set(true);
                        Ok(())
                    })
                    .send()
                    .unwrap();
                let reached = lp.run_until(LIMIT * 2, || answered.get()).unwrap();
                let id = req.id();
                drop(req);
                client.close();
                lp.shutdown();
                (id, reached)
            })
        })
        .collect();
    run_until(&fx.lp, "both callers' requests", || {
        held.borrow().len() == 2
    });
    let (a, b) = (held.borrow()[0].clone(), held.borrow()[1].clone());
    assert!(a.is_open() && b.is_open());
    assert_eq!(
        a.caller_id(),
        b.caller_id(),
        "each caller's first request has the same id in its own program"
    );
    assert_ne!(
        a.id(),
        b.id(),
        "live requests served here have distinct ids"
    );
    for r in [&a, &b] {
        r.ret("return", &Args::new()).unwrap();
    }
    let mut caller_ids = Vec::new();
    let finished = Rc::new(Cell::new(0));
    for t in callers {
        while !t.is_finished() {
            fx.lp
                .run_until(Duration::from_millis(20), || false)
                .unwrap();
        }
        let (id, reached) = t.join().unwrap();
        assert!(reached, "the caller got its return");
        caller_ids.push(id);
        finished.set(finished.get() + 1);
    }
    caller_ids.sort();
    let mut served = vec![a.caller_id(), b.caller_id()];
    served.sort();
    assert_eq!(caller_ids, served, "caller_id is the caller's own id");
}

/// S20 (examples/candygram): two knocks with role `knock` are handled and
/// answered in the order they were sent; the door answers `go_away` and
/// `hello`, which run `on_knock_go_away` and `on_knock_hello`. Locally
/// the whole output is POE's; through a broker the door's lines and the
/// app's lines each keep that order, but may interleave differently.
fn s20_fifo_candygram(mode: Mode) {
    let fx = Fixture::new(mode);
    let log = Log::new();
    let door = Stage::new(&fx.lp, "Door");
    let l = log.clone();
    door.on("knock", move |ctx| {
        let who = text(ctx, "who");
        l.push(format!("knock {who}"));
        if who == "landshark" {
            l.push("close door");
            ctx.ret("go_away", &Args::new().with("who", who))
        } else {
            l.push("open door");
            ctx.ret("hello", &Args::new().with("who", who))
        }
    });
    let target = fx.target(&door);
    let app = Stage::new(&fx.lp, "App");
    app.on("run", move |ctx| {
        let req = ctx.req().unwrap();
        req.data().set("answers", 0i64);
        for who in ["landshark", "candygram"] {
            let sub = Request::to(target.clone(), "knock")
                .role("knock")
                .arg("who", who)
                .send()?;
            req.data().set(who, sub);
        }
        Ok(())
    });
    fn answered(ctx: &Ctx<'_>) -> Result<(), Error> {
        let req = ctx.req().unwrap();
        let n = req.data().with("answers", |n: &mut i64| {
            *n += 1;
            *n
        });
        if n == Some(2) {
            ctx.ret("return", &Args::new())?;
        }
        Ok(())
    }
    let l = log.clone();
    app.on("on_knock_go_away", move |ctx| {
        l.push(format!("{} goes away", text(ctx, "who")));
        answered(ctx)
    });
    let l = log.clone();
    app.on("on_knock_hello", move |ctx| {
        let who = text(ctx, "who");
        l.push(format!("{who} delivers {who}."));
        answered(ctx)
    });
    let out = call(&fx.lp, &app, "run", Args::new());
    assert_eq!(out.kind(), Some("return"));
    let lines = log.lines();
    let door_lines: Vec<&str> = lines
        .iter()
        .map(String::as_str)
        .filter(|l| l.starts_with("knock") || l.ends_with("door"))
        .collect();
    let app_lines: Vec<&str> = lines
        .iter()
        .map(String::as_str)
        .filter(|l| l.contains(" goes away") || l.contains(" delivers "))
        .collect();
    assert_eq!(
        door_lines,
        [
            "knock landshark",
            "close door",
            "knock candygram",
            "open door"
        ]
    );
    assert_eq!(
        app_lines,
        ["landshark goes away", "candygram delivers candygram."]
    );
    let at = |line: &str| lines.iter().position(|l| l == line).unwrap();
    assert!(at("close door") < at("landshark goes away"));
    assert!(at("open door") < at("candygram delivers candygram."));
    if mode == Mode::Local {
        assert_eq!(
            lines,
            [
                "knock landshark",
                "close door",
                "knock candygram",
                "open door",
                "landshark goes away",
                "candygram delivers candygram."
            ]
        );
    }
}

/// S21: a final response cannot be recalled (`cannot recall from
/// upward`) nor cancelled; an emit whose request was cancelled cannot be
/// recalled; a recall needs a method; a top-level response handler has
/// no request to answer. (Responses have no emit/return at all, and a
/// recall is served as the original request, so the other guards of the
/// original are compile-time facts here.)
fn s21_recall_guards(mode: Mode) {
    let fx = Fixture::new(mode);
    let callee = Stage::new(&fx.lp, "Callee");
    callee.on("work", |ctx| {
        ctx.emit("emit", &Args::new())?;
        if ctx.arg("cancel").is_none() {
            ctx.ret("return", &Args::new())?;
        }
        Ok(())
    });
    let target = fx.target(&callee);
    let errors = Rc::new(RefCell::new(Vec::new()));
    let (e1, e2) = (errors.clone(), errors.clone());
    let req = Request::to(target.clone(), "work")
        .on("emit", move |ctx| {
            let e = ctx.rsp().unwrap().recall("", &Args::new()).unwrap_err();
            e1.borrow_mut().push(format!("emit recall '': {}", e.code));
            Ok(())
        })
        .on("return", move |ctx| {
            let rsp = ctx.rsp().unwrap();
            let e = rsp.recall("work", &Args::new()).unwrap_err();
            e2.borrow_mut().push(format!("return recall: {e}"));
            e2.borrow_mut()
                .push(format!("return cancel: {}", rsp.cancel()));
            let e = ctx.ret("return", &Args::new()).unwrap_err();
            e2.borrow_mut().push(format!("return ret: {}", e.code));
            Ok(())
        })
        .send()
        .unwrap();
    run_until(&fx.lp, "the return", || !req.is_open());
    let e3 = errors.clone();
    let cancelled = Request::to(target, "work")
        .arg("cancel", true)
        .on("emit", move |ctx| {
            let rsp = ctx.rsp().unwrap();
            e3.borrow_mut()
                .push(format!("emit cancel: {}", rsp.cancel()));
            let e = rsp.recall("work", &Args::new()).unwrap_err();
            e3.borrow_mut()
                .push(format!("emit recall after cancel: {e}"));
            Ok(())
        })
        .send()
        .unwrap();
    run_until(&fx.lp, "the cancel", || !cancelled.is_open());
    fx.barrier();
    assert_eq!(
        *errors.borrow(),
        [
            "emit recall '': invalid_argument",
            "return recall: invalid_state: cannot recall from upward 'return' response",
            "return cancel: false",
            "return ret: invalid_state",
            "emit cancel: true",
            "emit recall after cancel: invalid_state: Cannot recall message: The requester has no context",
        ]
    );
}

/// S23: `pass_to` runs another method of the same stage on the same
/// request at once, with new args, seeing the same request and data; a
/// `pass_to` to a method the stage lacks ends the request with
/// `no_such_method`; after the return it fails.
fn s23_pass_to_redelivers_synchronously(mode: Mode) {
    let fx = Fixture::new(mode);
    let log = Log::new();
    let stage = Stage::new(&fx.lp, "Callee");
    let l = log.clone();
    stage.on("start", move |ctx| {
        let req = ctx.req().unwrap();
        req.data().set("seen", "start".to_string());
        l.push(format!("start req={} x={}", req.caller_id(), int(ctx, "x")));
        let to = text(ctx, "to");
        req.pass_to(&to, &Args::new().with("x", 2))?;
        l.push(format!("after pass_to open={}", req.is_open()));
        let again = req.pass_to("finish", &Args::new());
        if let Err(e) = again {
            l.push(format!("pass_to after end: {}", e.code));
        }
        Ok(())
    });
    let l = log.clone();
    stage.on("finish", move |ctx| {
        let req = ctx.req().unwrap();
        l.push(format!(
            "finish req={} x={} seen={:?}",
            req.caller_id(),
            int(ctx, "x"),
            req.data().get::<String>("seen")
        ));
        ctx.ret("done", &Args::new().with("x", int(ctx, "x")))
    });
    let target = fx.target(&stage);
    let (req, out) = send_recorded(
        target.clone(),
        "start",
        Args::new().with("x", 1).with("to", "finish"),
    );
    run_until(&fx.lp, "the return", || out.borrow().last.is_some());
    let id = req.id();
    assert_eq!(
        log.lines(),
        [
            format!("start req={id} x=1"),
            format!("finish req={id} x=2 seen=Some(\"start\")"),
            "after pass_to open=false".to_string(),
            "pass_to after end: invalid_state".to_string(),
        ]
    );
    assert_eq!(out.borrow().kind(), Some("done"));
    assert_eq!(
        out.borrow().last.as_ref().unwrap().1.get("x"),
        Some(&Value::Int(2))
    );
    let out = call(
        &fx.lp,
        target,
        "start",
        Args::new().with("x", 1).with("to", "nowhere"),
    );
    assert_eq!(out.code(), Some(ErrorCode::NoSuchMethod));
}

/// S24: a request for `foo` (or `on_foo`) runs `on_foo` when the stage
/// has both `on_foo` and `foo`; `bar` / `on_bar` run a bare `bar`; a
/// method the stage lacks gives a `no_such_method` error response, to
/// `on("error")` or to the fallback.
fn s24_on_foo_beats_foo_and_unknown_method_is_an_error(mode: Mode) {
    let fx = Fixture::new(mode);
    let stage = Stage::new(&fx.lp, "Callee");
    for name in ["on_foo", "foo", "bar"] {
        stage.on(name, move |ctx| {
            ctx.ret("return", &Args::new().with("ran", name))
        });
    }
    let target = fx.target(&stage);
    for (method, ran) in [
        ("foo", "on_foo"),
        ("on_foo", "on_foo"),
        ("bar", "bar"),
        ("on_bar", "bar"),
    ] {
        let out = call(&fx.lp, target.clone(), method, Args::new());
        assert_eq!(out.kind(), Some("return"), "{method}");
        assert_eq!(
            out.last.as_ref().unwrap().1.get("ran"),
            Some(&Value::from(ran)),
            "{method}"
        );
    }
    let got = Rc::new(RefCell::new(None));
    let g = got.clone();
    let req = Request::to(target.clone(), "nope")
        .on("error", move |ctx| {
            let rsp = ctx.rsp().unwrap();
            *g.borrow_mut() = Some((
                rsp.kind().to_string(),
                rsp.is_final(),
                rsp.error().map(|e| e.code),
                text(ctx, "code"),
            ));
            Ok(())
        })
        .send()
        .unwrap();
    run_until(&fx.lp, "the error", || got.borrow().is_some());
    assert!(!req.is_open());
    assert_eq!(
        got.borrow_mut().take().unwrap(),
        (
            "error".to_string(),
            true,
            Some(ErrorCode::NoSuchMethod),
            "no_such_method".to_string()
        )
    );
    let out = call(&fx.lp, target, "nope", Args::new());
    assert_eq!(out.code(), Some(ErrorCode::NoSuchMethod));
}

/// A callee that answers `burst` with three emits and a return in one
/// go, and counts how often its handler ran.
fn burst_stage(fx: &Fixture) -> (Target, Counter) {
    let ran = Counter::new();
    let stage = Stage::new(&fx.lp, "Burst");
    let r = ran.clone();
    stage.on("burst", move |ctx| {
        r.bump();
        for i in 0..3 {
            ctx.emit("emit", &Args::new().with("i", i))?;
        }
        ctx.ret("return", &Args::new())
    });
    (fx.target(&stage), ran)
}

/// S25 (port decision): once the caller cancels, responses already on
/// their way are dropped: cancelled in the first emit's handler, the
/// other emits and the return never run a handler; cancelled after the
/// callee answered but before anything arrived, nothing runs at all.
fn s25_responses_in_flight_for_a_cancelled_request_are_dropped(mode: Mode) {
    let fx = Fixture::new(mode);
    let (target, ran) = burst_stage(&fx);
    let log = Log::new();
    let l = log.clone();
    let req = Request::to(target.clone(), "burst")
        .fallback(move |ctx| {
            let rsp = ctx.rsp().unwrap();
            l.push(format!("{} {}", rsp.kind(), int(ctx, "i")));
            if rsp.kind() == "emit" {
                assert!(rsp.cancel());
            }
            Ok(())
        })
        .send()
        .unwrap();
    run_until(&fx.lp, "the first emit", || !log.is_empty());
    assert!(!req.is_open());
    fx.barrier();
    assert_eq!(log.lines(), ["emit 0"]);

    let (late, out) = send_recorded(target, "burst", Args::new());
    run_until(&fx.lp, "the callee to answer", || ran.get() == 2);
    assert!(late.cancel(), "nothing had arrived yet");
    fx.barrier();
    let o = out.borrow();
    assert!(o.emits.is_empty() && o.last.is_none(), "{o:?}");
}

/// S25 with a drop instead of a cancel.
fn s25_responses_in_flight_for_a_dropped_request_are_dropped(mode: Mode) {
    let fx = Fixture::new(mode);
    let (target, ran) = burst_stage(&fx);
    let (req, out) = send_recorded(target, "burst", Args::new());
    run_until(&fx.lp, "the callee to answer", || ran.get() == 1);
    drop(req);
    fx.barrier();
    let o = out.borrow();
    assert!(o.emits.is_empty() && o.last.is_none(), "{o:?}");
}

/// Sends `method` twice: once with `on("error")`, once with only a
/// fallback; both record what their handler saw.
#[allow(clippy::type_complexity)]
fn send_both_ways(
    target: &Target,
    method: &str,
    configure: impl Fn(RequestBuilder) -> RequestBuilder,
) -> (Vec<Request>, Rc<RefCell<Vec<(String, ErrorCode)>>>) {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let s = seen.clone();
    let on_error = configure(Request::to(target.clone(), method))
        .on("error", move |ctx| {
            let rsp = ctx.rsp().unwrap();
            assert!(rsp.is_final());
            s.borrow_mut()
                .push(("on_error".to_string(), rsp.error().unwrap().code));
            Ok(())
        })
        .send()
        .unwrap();
    let s = seen.clone();
    let fallback = configure(Request::to(target.clone(), method))
        .fallback(move |ctx| {
            let rsp = ctx.rsp().unwrap();
            assert_eq!(rsp.kind(), "error");
            s.borrow_mut()
                .push(("fallback".to_string(), rsp.error().unwrap().code));
            Ok(())
        })
        .send()
        .unwrap();
    (vec![on_error, fallback], seen)
}

#[track_caller]
fn expect_both(seen: &Rc<RefCell<Vec<(String, ErrorCode)>>>, code: ErrorCode) {
    let mut got = seen.borrow().clone();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        [
            ("fallback".to_string(), code),
            ("on_error".to_string(), code)
        ]
    );
}

/// Errors as final responses: `no_such_method`.
fn error_no_such_method_reaches_on_error_and_fallback(mode: Mode) {
    let fx = Fixture::new(mode);
    let stage = Stage::new(&fx.lp, "Callee");
    stage.on("work", |ctx| ctx.ret("", &Args::new()));
    let target = fx.target(&stage);
    let (reqs, seen) = send_both_ways(&target, "missing", |b| b);
    run_until(&fx.lp, "both errors", || seen.borrow().len() == 2);
    assert!(reqs.iter().all(|r| !r.is_open()));
    fx.barrier();
    expect_both(&seen, ErrorCode::NoSuchMethod);
}

/// A stage whose `hold` never answers, counting deliveries and cancels.
fn holding_stage(lp: &EventLoop, name: &str) -> (Stage, Counter, Counter) {
    let delivered = Counter::new();
    let cancelled = Counter::new();
    let stage = Stage::new(lp, name);
    let (d, c) = (delivered.clone(), cancelled.clone());
    stage.on("hold", move |ctx| {
        d.bump();
        let req = ctx.req().unwrap();
        req.on_cancel(c.hook());
        // Kept until it ends: a request let go unanswered fails at once.
        req.data().set("kept", req.clone());
        Ok(())
    });
    (stage, delivered, cancelled)
}

/// Errors as final responses: `timeout`, set with `.timeout(...)`; the
/// callee is cancelled.
fn error_timeout_reaches_on_error_and_fallback(mode: Mode) {
    let fx = Fixture::new(mode);
    let (stage, delivered, cancelled) = holding_stage(&fx.lp, "Slow");
    let target = fx.target(&stage);
    let (reqs, seen) = send_both_ways(&target, "hold", |b| b.timeout(Duration::from_millis(30)));
    run_until(&fx.lp, "both timeouts", || seen.borrow().len() == 2);
    assert!(reqs.iter().all(|r| !r.is_open()));
    run_until(&fx.lp, "the callee to be cancelled", || {
        cancelled.get() == 2
    });
    fx.barrier();
    assert_eq!(delivered.get(), 2);
    assert_eq!(cancelled.get(), 2);
    expect_both(&seen, ErrorCode::Timeout);
}

/// A handler's error ends the request with that error, code and message
/// kept across the broker.
fn error_from_a_handler_is_the_final_response(mode: Mode) {
    let fx = Fixture::new(mode);
    let stage = Stage::new(&fx.lp, "Callee");
    stage.on("work", |_| {
        Err(Error::new(ErrorCode::HandlerFailed, "boom"))
    });
    let target = fx.target(&stage);
    let out = call(&fx.lp, target, "work", Args::new());
    let (kind, args, error) = out.last.unwrap();
    assert_eq!(kind, "error");
    assert_eq!(error, Some(Error::new(ErrorCode::HandlerFailed, "boom")));
    assert_eq!(args.get("code"), Some(&Value::from("handler_failed")));
    assert_eq!(args.get("message"), Some(&Value::from("boom")));
}

// ---------------------------------------------------------------------
// Errors that only a broker can cause.

/// The session was rescinded after the subscribe: once the subscriber
/// heard of it, requests through its remote stage fail at once.
#[test]
fn error_not_subscribed_once_the_session_is_gone() {
    let fx = Fixture::new(Mode::Remote);
    let stage = Stage::new(&fx.lp, "Gone");
    stage.on("work", |ctx| ctx.ret("", &Args::new()));
    let Target::Remote(remote) = fx.target(&stage) else {
        unreachable!()
    };
    let done = Rc::new(Cell::new(false));
    let d = done.clone();
    fx.publisher
        .as_ref()
        .unwrap()
        .rescind("Gone", move |r| {
            r.unwrap();
            d.set(true)
        })
        .unwrap();
    run_until(&fx.lp, "the rescind", || done.get());
    run_until(&fx.lp, "the session-gone notice", || {
        !remote.is_subscribed()
    });
    let e = Request::to(&remote, "work").send().unwrap_err();
    assert_eq!(e.code, ErrorCode::NotSubscribed);
    assert!(e.message.contains("'Gone'"), "{}", e.message);
}

/// Item 6 of issue 10: after `unsubscribe` a remote stage refuses
/// requests at once (`not_subscribed`, naming the session) instead of
/// still delivering them; the publisher never sees them.
#[test]
fn requests_through_an_unsubscribed_remote_stage_fail_at_once() {
    let fx = Fixture::new(Mode::Remote);
    let stage = Stage::new(&fx.lp, "Unsub");
    let ran = Counter::new();
    let r = ran.clone();
    stage.on("work", move |ctx| {
        r.bump();
        ctx.ret("", &Args::new())
    });
    let Target::Remote(remote) = fx.target(&stage) else {
        unreachable!()
    };
    let other = remote.clone();
    let done = Rc::new(RefCell::new(None));
    let d = done.clone();
    remote
        .unsubscribe(move |r| *d.borrow_mut() = Some(r))
        .unwrap();
    for through in [&remote, &other] {
        let e = Request::to(through, "work").send().unwrap_err();
        assert_eq!(e.code, ErrorCode::NotSubscribed);
        assert!(e.message.contains("'Unsub'"), "{}", e.message);
    }
    run_until(&fx.lp, "the unsubscribe", || done.borrow().is_some());
    assert_eq!(done.borrow_mut().take().unwrap(), Ok(()));
    let e = Request::to(&remote, "work").send().unwrap_err();
    assert_eq!(e.code, ErrorCode::NotSubscribed);
    fx.barrier();
    assert_eq!(ran.get(), 0, "nothing was delivered");
}

/// `publisher_gone`: the publishing client closes mid-call; the callee
/// is cancelled.
#[test]
fn error_publisher_gone_when_the_publisher_closes_mid_call() {
    let fx = Fixture::new(Mode::Remote);
    let (stage, delivered, cancelled) = holding_stage(&fx.lp, "Slow");
    let own = fx.client();
    publish(&fx.lp, &own, &stage, "Slow");
    let target = Target::Remote(subscribe(&fx.lp, fx.subscriber.as_ref().unwrap(), "Slow"));
    let (reqs, seen) = send_both_ways(&target, "hold", |b| b);
    run_until(&fx.lp, "both deliveries", || delivered.get() == 2);
    own.close();
    run_until(&fx.lp, "both errors", || seen.borrow().len() == 2);
    assert!(reqs.iter().all(|r| !r.is_open()));
    run_until(&fx.lp, "the callee to be cancelled", || {
        cancelled.get() == 2
    });
    expect_both(&seen, ErrorCode::PublisherGone);
}

/// `broker_gone`: the broker closes mid-call; the callee is cancelled.
#[test]
fn error_broker_gone_when_the_broker_closes_mid_call() {
    let fx = Fixture::new(Mode::Remote);
    let (stage, delivered, cancelled) = holding_stage(&fx.lp, "Slow");
    let target = fx.target(&stage);
    let (reqs, seen) = send_both_ways(&target, "hold", |b| b);
    run_until(&fx.lp, "both deliveries", || delivered.get() == 2);
    fx.broker.as_ref().unwrap().close();
    run_until(&fx.lp, "both errors", || seen.borrow().len() == 2);
    assert!(reqs.iter().all(|r| !r.is_open()));
    run_until(&fx.lp, "the callee to be cancelled", || {
        cancelled.get() == 2
    });
    expect_both(&seen, ErrorCode::BrokerGone);
}

/// `broker_gone` for a request sent through a client that is already
/// closed.
#[test]
fn error_broker_gone_when_the_client_is_closed() {
    let fx = Fixture::new(Mode::Remote);
    let (stage, _, _) = holding_stage(&fx.lp, "Slow");
    let target = fx.target(&stage);
    fx.subscriber.as_ref().unwrap().close();
    let (_reqs, seen) = send_both_ways(&target, "hold", |b| b);
    run_until(&fx.lp, "both errors", || seen.borrow().len() == 2);
    expect_both(&seen, ErrorCode::BrokerGone);
}

/// The publishing client's last handle is dropped mid-call (not
/// closed): the caller gets `publisher_gone` from the broker, and the
/// callee still hears of it: its on-cancel runs once and the request can
/// no longer be answered.
#[test]
fn error_publisher_gone_when_the_publisher_is_dropped_mid_call() {
    let fx = Fixture::new(Mode::Remote);
    let (stage, delivered, cancelled) = holding_stage(&fx.lp, "Slow");
    let own = fx.client();
    publish(&fx.lp, &own, &stage, "Slow");
    let target = Target::Remote(subscribe(&fx.lp, fx.subscriber.as_ref().unwrap(), "Slow"));
    let (reqs, seen) = send_both_ways(&target, "hold", |b| b);
    run_until(&fx.lp, "both deliveries", || delivered.get() == 2);
    drop(own);
    run_until(&fx.lp, "both errors", || seen.borrow().len() == 2);
    assert!(reqs.iter().all(|r| !r.is_open()));
    run_until(&fx.lp, "the callee to be cancelled", || {
        cancelled.get() == 2
    });
    fx.barrier();
    assert_eq!(cancelled.get(), 2);
    expect_both(&seen, ErrorCode::PublisherGone);
}

in_modes!(cancel_before_delivery_runs_neither_method_nor_on_cancel_or_both);

/// A request cancelled right after it was sent, before the callee ran:
/// whether the callee's method still runs depends on where it lives (a
/// local stage skips it; through a broker the call is already on its
/// way), but the stage's `on_cancel` pairs with it: it runs once for a
/// request whose method ran and never for one the stage never saw.
fn cancel_before_delivery_runs_neither_method_nor_on_cancel_or_both(mode: Mode) {
    let fx = Fixture::new(mode);
    let stage = Stage::new(&fx.lp, "Callee");
    let log = Log::new();
    let l = log.clone();
    stage.on("hold", move |ctx| {
        let req = ctx.req().unwrap();
        l.push(format!("hold {}", req.caller_id()));
        req.data().set("kept", req.clone());
        Ok(())
    });
    let l = log.clone();
    stage.on("on_cancel", move |ctx| {
        l.push(format!("cancel {}", ctx.req().unwrap().caller_id()));
        Ok(())
    });
    let target = fx.target(&stage);
    let req = Request::to(target, "hold").send().unwrap();
    let id = req.id();
    assert!(req.cancel());
    fx.barrier();
    let lines = log.lines();
    let started = lines.iter().filter(|l| l.starts_with("hold")).count();
    if mode == Mode::Local {
        assert_eq!(started, 0, "{lines:?}");
    }
    let expected: Vec<String> = if started == 1 {
        vec![format!("hold {id}"), format!("cancel {id}")]
    } else {
        Vec::new()
    };
    assert_eq!(lines, expected);
}

in_modes!(
    explicit_parent_and_detached_requests,
    recall_of_a_missing_method_ends_the_request_with_no_such_method,
    response_handler_error_fails_the_requesters_own_request,
);

/// A request made with `.parent(p)` outside every handler is cancelled
/// when `p` ends; one made with `.detached()` inside a handler is not;
/// a request under an ended parent is refused with `cancelled`.
fn explicit_parent_and_detached_requests(mode: Mode) {
    let fx = Fixture::new(mode);
    let (worker, delivered, cancelled) = holding_stage(&fx.lp, "Worker");
    let to_worker = fx.target(&worker);
    let parent_stage = Stage::new(&fx.lp, "Parent");
    let held = Rc::new(RefCell::new(None));
    let kept = Rc::new(RefCell::new(Vec::new()));
    let (h, k, t) = (held.clone(), kept.clone(), to_worker.clone());
    parent_stage.on("run", move |ctx| {
        *h.borrow_mut() = Some(ctx.req().unwrap().clone());
        // Kept outside the request's data: only links could cancel them.
        k.borrow_mut()
            .push(Request::to(t.clone(), "hold").detached().send()?);
        Ok(())
    });
    let to_parent = fx.target(&parent_stage);
    let (top, _) = send_recorded(to_parent, "run", Args::new());
    run_until(&fx.lp, "the parent to run", || held.borrow().is_some());
    let parent = held.borrow().clone().unwrap();
    let adopted = Request::to(to_worker.clone(), "hold")
        .parent(&parent)
        .send()
        .unwrap();
    run_until(&fx.lp, "both deliveries", || delivered.get() == 2);
    assert!(top.cancel());
    run_until(&fx.lp, "the adopted request to be cancelled", || {
        cancelled.get() == 1
    });
    fx.barrier();
    assert!(!adopted.is_open());
    assert_eq!(cancelled.get(), 1, "the detached request was cancelled");
    assert!(kept.borrow()[0].is_open());
    let refused = Request::to(to_worker, "hold")
        .parent(&parent)
        .send()
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::Cancelled);
}

/// A recall naming a method the callee lacks ends the request with
/// `no_such_method` (the broker does not check recalls; the callee
/// does).
fn recall_of_a_missing_method_ends_the_request_with_no_such_method(mode: Mode) {
    let fx = Fixture::new(mode);
    let cancelled = Counter::new();
    let stage = Stage::new(&fx.lp, "Callee");
    let c = cancelled.clone();
    stage.on("work", move |ctx| {
        ctx.req().unwrap().on_cancel(c.hook());
        ctx.emit("emit", &Args::new())
    });
    let target = fx.target(&stage);
    let got = Log::new();
    let g = got.clone();
    let req = Request::to(target, "work")
        .on("emit", |ctx| {
            ctx.rsp().unwrap().recall("nowhere", &Args::new())
        })
        .on("error", move |ctx| {
            g.push(ctx.rsp().unwrap().error().unwrap().code.as_str());
            Ok(())
        })
        .send()
        .unwrap();
    run_until(&fx.lp, "the error", || !got.is_empty());
    fx.barrier();
    assert!(!req.is_open());
    assert_eq!(got.lines(), ["no_such_method"]);
    assert_eq!(cancelled.get(), 0, "the callee ended it, nobody cancelled");
}

/// An error returned by a response handler ends the requester's own
/// request (the one it serves) with that error, like a failing method.
fn response_handler_error_fails_the_requesters_own_request(mode: Mode) {
    let fx = Fixture::new(mode);
    let callee = Stage::new(&fx.lp, "Callee");
    callee.on("work", |ctx| ctx.ret("return", &Args::new()));
    let target = fx.target(&callee);
    let app = Stage::new(&fx.lp, "App");
    app.on("run", move |ctx| {
        let sub = Request::to(target.clone(), "work")
            .on("return", |_| {
                Err(Error::new(ErrorCode::HandlerFailed, "bad answer"))
            })
            .send()?;
        ctx.req().unwrap().data().set("sub", sub);
        Ok(())
    });
    let out = call(&fx.lp, &app, "run", Args::new());
    let (_, _, error) = out.last.unwrap();
    assert_eq!(
        error,
        Some(Error::new(ErrorCode::HandlerFailed, "bad answer"))
    );
}

/// The loop is shut down first (as `sb_loop_free` does), then the
/// publishing client's last handle goes: the callee's requests are still
/// cancelled and their data freed, nothing is left queued on the dead
/// loop holding them.
#[test]
fn publisher_dropped_after_loop_shutdown_frees_served_data() {
    let fx = Fixture::new(Mode::Remote);
    let live = Rc::new(Cell::new(0i64));
    let stage = Stage::new(&fx.lp, "Slow");
    let l = live.clone();
    stage.on("keep", move |ctx| {
        let req = ctx.req().unwrap();
        req.data().set("live", Live::new(&l));
        req.data().set("kept", req.clone());
        Ok(())
    });
    let own = fx.client();
    publish(&fx.lp, &own, &stage, "Slow");
    let target = Target::Remote(subscribe(&fx.lp, fx.subscriber.as_ref().unwrap(), "Slow"));
    let (_req, _) = send_recorded(target.clone(), "keep", Args::new());
    run_until(&fx.lp, "the delivery", || live.get() == 1);
    fx.lp.shutdown();
    drop(own);
    assert_eq!(
        live.get(),
        0,
        "the served request's data outlived its client"
    );
}

/// A published stage's session is rescinded while it serves a request;
/// the stage answers later, from a timer. The caller gets that answer,
/// and the request hears no cancel: the client lets go of the handler
/// only after the answer is through.
fn a_request_served_across_a_rescind_returns_without_a_cancel(mode: Mode) {
    let fx = Fixture::new(mode);
    let stage = Stage::new(&fx.lp, "Rescinded");
    let held: Rc<RefCell<Option<ServedRequest>>> = Rc::default();
    let cancelled = Counter::new();
    let (h, c) = (held.clone(), cancelled.clone());
    stage.on("slow", move |ctx| {
        let req = ctx.req().unwrap();
        req.on_cancel(c.hook());
        *h.borrow_mut() = Some(req.clone());
        Ok(())
    });
    let target = fx.target(&stage);
    drop(stage);
    let (_req, outcome) = send_recorded(target, "slow", Args::new());
    run_until(&fx.lp, "the delivery", || held.borrow().is_some());

    let publisher = fx.publisher.as_ref().unwrap();
    let rescinded = Rc::new(Cell::new(false));
    let r = rescinded.clone();
    publisher
        .rescind("Rescinded", move |res| r.set(res.is_ok()))
        .unwrap();
    run_until(&fx.lp, "the rescind", || rescinded.get());

    let h = held.clone();
    fx.lp.add_timer(Duration::from_millis(1), move |_| {
        let served = h.borrow_mut().take().unwrap();
        served
            .ret("return", &Args::new().with("late", true))
            .unwrap();
    });
    run_until(&fx.lp, "the late answer", || {
        outcome.borrow().last.is_some()
    });
    fx.barrier();
    assert_eq!(outcome.borrow().kind(), Some("return"));
    assert_eq!(outcome.borrow().code(), None);
    assert_eq!(
        cancelled.get(),
        0,
        "on_cancel ran for a request that returned"
    );
}

#[test]
fn a_request_served_across_a_rescind_returns_without_a_cancel_tcp() {
    a_request_served_across_a_rescind_returns_without_a_cancel(Mode::Remote);
}

#[test]
fn a_request_served_across_a_rescind_returns_without_a_cancel_unix() {
    a_request_served_across_a_rescind_returns_without_a_cancel(Mode::RemoteUnix);
}

/// Item 2 of issue 10: a recall from another program reaches only what
/// the publication exports and what the stage marks recall-only. A
/// recall of an unexported handler (`secret_admin`) ends the request with
/// `no_such_method` and never runs it; the recall-only `answer` works
/// after `ask` emits, but a request for it is `no_such_method`. On the
/// same loop nothing is filtered (documented in src/request/mod.rs).
#[test]
fn recall_reaches_only_exported_and_recall_only_methods() {
    for mode in [Mode::Remote, Mode::Local] {
        let fx = Fixture::new(mode);
        let stage = Stage::new(&fx.lp, "Dialogue");
        let log = Log::new();
        stage.on("ask", |ctx| ctx.emit("question", &Args::new()));
        let l = log.clone();
        stage.on("answer", move |ctx| {
            l.push("answer");
            ctx.ret("greeting", &Args::new().with("name", text(ctx, "name")))
        });
        stage.set_kind("answer", HandlerKind::RecallOnly);
        let l = log.clone();
        stage.on("secret_admin", move |ctx| {
            l.push("secret_admin");
            ctx.ret("secret", &Args::new())
        });
        let target = match mode {
            Mode::Local => Target::Local(stage.clone()),
            _ => {
                let done = Rc::new(RefCell::new(None));
                let d = done.clone();
                let publisher = fx.publisher.as_ref().unwrap();
                stage.publish(publisher, "Dialogue", &["ask"], move |r| {
                    *d.borrow_mut() = Some(r)
                });
                run_until(&fx.lp, "the publish", || done.borrow().is_some());
                assert_eq!(done.borrow_mut().take().unwrap(), Ok(()));
                let sub = fx.subscriber.as_ref().unwrap();
                Target::Remote(subscribe(&fx.lp, sub, "Dialogue"))
            }
        };
        let dialogue = |recall: &'static str| {
            let out = Rc::new(RefCell::new(None));
            let (o1, o2) = (out.clone(), out.clone());
            let req = Request::to(target.clone(), "ask")
                .on("question", move |ctx| {
                    let name = Args::new().with("name", "Ann");
                    ctx.rsp().unwrap().recall(recall, &name)
                })
                .on("error", move |ctx| {
                    *o1.borrow_mut() = Some(Err(ctx.rsp().unwrap().error().unwrap().clone()));
                    Ok(())
                })
                .fallback(move |ctx| {
                    *o2.borrow_mut() = Some(Ok(ctx.rsp().unwrap().kind().to_string()));
                    Ok(())
                })
                .send()
                .unwrap();
            run_until(&fx.lp, "the end of the dialogue", || !req.is_open());
            let outcome = out.borrow_mut().take().unwrap();
            outcome
        };
        let secret = dialogue("secret_admin");
        let answer = dialogue("answer");
        assert_eq!(answer, Ok("greeting".to_string()), "{mode:?}");
        match mode {
            Mode::Local => {
                assert_eq!(secret, Ok("secret".to_string()));
                assert_eq!(log.lines(), ["secret_admin", "answer"]);
            }
            _ => {
                let e = secret.unwrap_err();
                assert_eq!(e.code, ErrorCode::NoSuchMethod);
                assert!(e.message.contains("secret_admin"), "{}", e.message);
                assert_eq!(log.lines(), ["answer"], "secret_admin never ran");
                let direct = call(&fx.lp, target.clone(), "answer", Args::new());
                assert_eq!(direct.code(), Some(ErrorCode::NoSuchMethod));
                assert_eq!(log.lines(), ["answer"]);
            }
        }
    }
}
