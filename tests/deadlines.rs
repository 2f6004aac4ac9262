//! Deadlines travel (issue 12, item 3): a request's timeout goes with it
//! to the callee, local or behind a broker (TCP and Unix socket), which
//! reads the time left; requests made while serving it inherit the
//! earlier deadline; a client's default deadline applies to requests that
//! set none. No timing asserts: only bounds that hold however slow the
//! machine is (the time left never exceeds what the caller gave, and is
//! positive while the caller still waits).

#[macro_use]
mod common_requests;

use common_requests::*;
use stagebus::*;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

/// Milliseconds left of the request being served, -1 without a deadline.
fn left_ms(ctx: &Ctx<'_>) -> i64 {
    ctx.time_left().map_or(-1, |d| d.as_millis() as i64)
}

/// A stage whose `look` returns the time it has left (`left`, -1 for no
/// deadline) and whose `hang` never answers (it keeps the request).
fn looker(lp: &EventLoop) -> Stage {
    let c = Stage::new(lp, "Looker");
    c.on("look", |ctx| {
        let left = left_ms(ctx);
        assert_eq!(
            ctx.req().unwrap().deadline().is_some(),
            left >= 0,
            "deadline and time_left agree"
        );
        ctx.ret("seen", &Args::new().with("left", left))
    });
    c.on("hang", |ctx| {
        let req = ctx.req().unwrap();
        req.data().set("kept", req.clone());
        Ok(())
    });
    c
}

/// A stage whose `run` asks `to` for `method` (with `child_timeout` if
/// given, else inheriting) and returns what came back: the callee's `left`
/// or the error's code, with its own `left` as `mine`.
fn forwarder(lp: &EventLoop, name: &str, to: Target, child_timeout: Option<Duration>) -> Stage {
    let a = Stage::new(lp, name);
    a.on("run", move |ctx| {
        let mine = left_ms(ctx);
        let method = ctx
            .args()
            .get("method")
            .unwrap()
            .as_str()
            .unwrap()
            .to_string();
        let mut b = Request::to(to.clone(), &method).fallback(move |ctx| {
            let rsp = ctx.rsp().unwrap();
            let mut out = Args::new().with("mine", mine);
            match rsp.error() {
                Some(e) => {
                    out.insert("code", e.code.as_str());
                    out.insert("message", e.message.as_str());
                }
                None => {
                    out.insert("left", ctx.args().get("left").unwrap().as_int().unwrap());
                }
            }
            ctx.ret("done", &out)
        });
        if let Some(t) = child_timeout {
            b = b.timeout(t);
        }
        let sub = b.send()?;
        ctx.req().unwrap().data().set("sub", sub);
        Ok(())
    });
    a
}

/// Sends `method` with `args` to `target` (with `timeout` if given) and
/// runs the loop until its final response: (args, error).
#[track_caller]
fn call(
    lp: &EventLoop,
    target: Target,
    method: &str,
    args: Args,
    timeout: Option<Duration>,
) -> (Args, Option<Error>) {
    let out = Rc::new(RefCell::new(None));
    let o = out.clone();
    let mut b = Request::to(target, method).args(args).fallback(move |ctx| {
        let rsp = ctx.rsp().unwrap();
        if rsp.is_final() {
            *o.borrow_mut() = Some((ctx.args().clone(), rsp.error().cloned()));
        }
        Ok(())
    });
    if let Some(t) = timeout {
        b = b.timeout(t);
    }
    let _req = b.send().expect("cannot send");
    run_until(lp, "the final response", || out.borrow().is_some());
    let got = out.borrow_mut().take().unwrap();
    got
}

fn int(args: &Args, name: &str) -> i64 {
    args.get(name)
        .and_then(Value::as_int)
        .unwrap_or_else(|| panic!("no int '{name}' in {args:?}"))
}

fn callee_reads_the_time_left_of_the_callers_timeout(mode: Mode) {
    let fx = Fixture::new(mode);
    let c = fx.target(&looker(&fx.lp));
    let (args, e) = call(
        &fx.lp,
        c,
        "look",
        Args::new(),
        Some(Duration::from_secs(20)),
    );
    assert_eq!(e, None);
    let left = int(&args, "left");
    assert!(left > 0 && left <= 20_000, "time left {left} ms");
}

fn no_deadline_reaches_the_callee_without_a_timeout(mode: Mode) {
    let fx = Fixture::new(mode);
    let c = fx.target(&looker(&fx.lp));
    let (args, e) = call(&fx.lp, c, "look", Args::new(), None);
    assert_eq!(e, None);
    assert_eq!(int(&args, "left"), -1);
}

/// A child without a timeout of its own gets its parent's deadline; one
/// with a longer timeout is capped by it; one with a shorter one keeps it.
fn child_deadline_is_the_earlier_of_its_own_and_its_parents(mode: Mode) {
    let fx = Fixture::new(mode);
    let c = fx.target(&looker(&fx.lp));
    let cases = [
        (None, 20_000),
        (Some(Duration::from_secs(600)), 20_000),
        (Some(Duration::from_secs(3)), 3_000),
    ];
    for (child_timeout, bound) in cases {
        // Published under a name of its own per case.
        let name = format!("Forwarder{bound}{}", child_timeout.is_some());
        let a = fx.target(&forwarder(&fx.lp, &name, c.clone(), child_timeout));
        let args = Args::new().with("method", "look");
        let (out, e) = call(&fx.lp, a, "run", args, Some(Duration::from_secs(20)));
        assert_eq!(e, None, "{child_timeout:?}");
        let (mine, left) = (int(&out, "mine"), int(&out, "left"));
        assert!(mine > 0 && mine <= 20_000, "parent's time left {mine} ms");
        assert!(
            left > 0 && left <= bound && left <= mine + 1,
            "child timeout {child_timeout:?}: time left {left} ms, parent's {mine} ms"
        );
    }
}

in_modes!(all:
    callee_reads_the_time_left_of_the_callers_timeout,
    no_deadline_reaches_the_callee_without_a_timeout,
    child_deadline_is_the_earlier_of_its_own_and_its_parents,
);

/// A remote caller that tells its deadline but does not enforce it (a raw
/// client call): the child of the request it made inherits the deadline
/// and, when it passes, fails with `timeout` as its own would, whether
/// the child goes to a local stage or through the broker.
fn child_times_out_at_the_inherited_deadline(mode: Mode) {
    for child_remote in [false, true] {
        let fx = Fixture::new(mode);
        let looker = looker(&fx.lp);
        let c = if child_remote {
            fx.target(&looker)
        } else {
            Target::Local(looker.clone())
        };
        let _a = fx.target(&forwarder(&fx.lp, "Forwarder", c, None));
        let got = Rc::new(RefCell::new(None));
        let g = got.clone();
        let args = Args::new().with("method", "hang");
        fx.subscriber
            .as_ref()
            .unwrap()
            .call_within(
                None,
                Some(Duration::from_millis(300)),
                "Forwarder",
                "run",
                &args,
                move |_, event| {
                    *g.borrow_mut() = Some(event);
                },
            )
            .unwrap();
        run_until(&fx.lp, "the forwarder's answer", || got.borrow().is_some());
        let Some(CallEvent::Return { args, .. }) = got.borrow_mut().take() else {
            panic!("no return");
        };
        assert_eq!(
            args.get("code").and_then(Value::as_str),
            Some("timeout"),
            "child remote: {child_remote}: {args:?}"
        );
        let message = args.get("message").and_then(Value::as_str).unwrap();
        assert!(
            message.contains("the deadline of the request it was made for"),
            "{message}"
        );
        let mine = int(&args, "mine");
        assert!(mine > 0 && mine <= 300, "forwarder's time left {mine} ms");
    }
}

/// A client's default deadline applies to a request that sets none (the
/// callee sees it, and the request times out with it), not to one with
/// its own timeout; without the setting there is none.
fn client_default_deadline_applies_when_the_request_sets_none(mode: Mode) {
    assert_eq!(ClientConfig::default().default_timeout, None);
    let fx = Fixture::new(mode);
    let subscriber = fx.subscriber.clone().unwrap();
    assert_eq!(subscriber.default_timeout(), None);
    let c = fx.target(&looker(&fx.lp));
    subscriber.set_default_timeout(Some(Duration::from_secs(10)));
    let (args, e) = call(&fx.lp, c.clone(), "look", Args::new(), None);
    assert_eq!(e, None);
    let left = int(&args, "left");
    assert!(left > 0 && left <= 10_000, "time left {left} ms");
    let (args, e) = call(
        &fx.lp,
        c.clone(),
        "look",
        Args::new(),
        Some(Duration::from_secs(60)),
    );
    assert_eq!(e, None);
    assert!(
        int(&args, "left") > 10_000,
        "its own timeout wins: {args:?}"
    );
    subscriber.set_default_timeout(Some(Duration::from_millis(200)));
    let (_, e) = call(&fx.lp, c, "hang", Args::new(), None);
    assert_eq!(e.map(|e| e.code), Some(ErrorCode::Timeout));
}

/// The same, set in the client's config.
#[test]
fn client_config_default_deadline_reaches_the_callee() {
    let fx = Fixture::new(Mode::RemoteUnix);
    let c = looker(&fx.lp);
    publish(&fx.lp, fx.publisher.as_ref().unwrap(), &c, "Looker");
    let config = ClientConfig::default().with_default_timeout(Duration::from_secs(10));
    let address = fx.address.clone().unwrap();
    let client = Client::connect(&fx.lp, &address, config);
    assert_eq!(client.default_timeout(), Some(Duration::from_secs(10)));
    let remote = subscribe(&fx.lp, &client, "Looker");
    let (args, e) = call(&fx.lp, remote.into(), "look", Args::new(), None);
    assert_eq!(e, None);
    let left = int(&args, "left");
    assert!(left > 0 && left <= 10_000, "time left {left} ms");
}

mod remote_only {
    use super::*;

    #[test]
    fn child_times_out_at_the_inherited_deadline_tcp() {
        child_times_out_at_the_inherited_deadline(Mode::Remote)
    }

    #[test]
    fn child_times_out_at_the_inherited_deadline_unix() {
        child_times_out_at_the_inherited_deadline(Mode::RemoteUnix)
    }

    #[test]
    fn client_default_deadline_applies_when_the_request_sets_none_tcp() {
        client_default_deadline_applies_when_the_request_sets_none(Mode::Remote)
    }

    #[test]
    fn client_default_deadline_applies_when_the_request_sets_none_unix() {
        client_default_deadline_applies_when_the_request_sets_none(Mode::RemoteUnix)
    }
}
