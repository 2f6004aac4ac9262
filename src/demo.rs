//! The built-in demo stage and the in-process demo that `stagebus serve`
//! and `stagebus demo` run.
//!
//! The stage `Demo` offers:
//! * `echo`: returns its args unchanged;
//! * `count`: emits `tick` {i} `n` times (default 3), then returns
//!   {count: n};
//! * `ask`: emits `question` {text}, and returns {greeting} once the
//!   caller recalls `answer` {name} (a recall-only method: a request for
//!   `answer` from another program is `no_such_method`);
//! * `slow`: returns {slept_ms} after `ms` milliseconds (default 10000)
//!   unless cancelled first, in which case it stops its timer;
//! * `whoami`: returns {pid} of the serving process (so that a caller can
//!   see which of several publishers of a name served it).
//!
//! Published by `stagebus serve` ([`served_stage`]) it also offers
//! `announce`: emits the signal `announced` {text} for its session, then
//! returns {text}.

use crate::broker::{Broker, BrokerConfig};
use crate::client::{Client, ClientConfig};
use crate::error::{Error, ErrorCode};
use crate::event_loop::EventLoop;
use crate::request::{Ctx, RemoteStage, Request, Stage};
use crate::value::{Args, Value};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

/// The methods the demo stage publishes (`answer` is reached by recall
/// only, see [`stage`]).
pub const METHODS: [&str; 5] = ["echo", "count", "ask", "slow", "whoami"];

/// The methods `stagebus serve` publishes: [`METHODS`] and `announce`.
pub const SERVED_METHODS: [&str; 6] = ["echo", "count", "ask", "slow", "whoami", "announce"];

fn int_arg(ctx: &Ctx<'_>, name: &str, default: i64) -> Result<i64, Error> {
    match ctx.arg(name) {
        None => Ok(default),
        Some(Value::Int(n)) => Ok(*n),
        Some(other) => Err(Error::new(
            ErrorCode::InvalidArgument,
            format!("'{name}' must be an integer, not {other}"),
        )),
    }
}

/// Makes the demo stage on `lp`. `log` hears what the service does that a
/// caller cannot see (a cancelled slow call).
pub fn stage(lp: &EventLoop, log: impl Fn(&str) + 'static) -> Stage {
    let log = Rc::new(log);
    let stage = Stage::new(lp, "Demo");
    stage.on("echo", |ctx| ctx.ret("return", ctx.args()));
    stage.on("count", |ctx| {
        let n = int_arg(ctx, "n", 3)?;
        if !(0..=1_000_000).contains(&n) {
            return Err(Error::new(
                ErrorCode::InvalidArgument,
                "'n' must be between 0 and 1000000",
            ));
        }
        for i in 1..=n {
            ctx.emit("tick", &Args::new().with("i", i))?;
        }
        ctx.ret("return", &Args::new().with("count", n))
    });
    stage.on("ask", |ctx| {
        ctx.emit("question", &Args::new().with("text", "What is your name?"))
    });
    // Only the second half of `ask`'s dialogue: never a request of its own.
    stage.set_kind("answer", crate::request::HandlerKind::RecallOnly);
    stage.on("answer", |ctx| {
        let name = ctx
            .arg("name")
            .and_then(Value::as_str)
            .unwrap_or("stranger");
        ctx.ret(
            "return",
            &Args::new().with("greeting", format!("Hello, {name}!")),
        )
    });
    stage.on("whoami", |ctx| {
        ctx.ret(
            "return",
            &Args::new().with("pid", i64::from(std::process::id())),
        )
    });
    stage.on("slow", move |ctx| {
        let ms = int_arg(ctx, "ms", 10_000)?.max(0) as u64;
        let req = ctx.req().expect("methods serve a request").clone();
        let lp = ctx
            .stage()
            .expect("methods run on a stage")
            .event_loop()
            .clone();
        let answer = req.clone();
        let timer = lp.add_timer(Duration::from_millis(ms), move |_| {
            let _ = answer.ret("return", &Args::new().with("slept_ms", ms as i64));
        });
        let log = log.clone();
        req.on_cancel(move || {
            lp.cancel_timer(timer);
            log("slow: cancelled by the caller, timer stopped");
        });
        Ok(())
    });
    stage
}

/// The demo stage as `stagebus serve` publishes it as `session` through
/// `client`: [`stage`] with `announce` {text}, which emits the signal
/// `announced` {text} for `session` and returns {text}.
pub fn served_stage(
    lp: &EventLoop,
    client: &Client,
    session: &str,
    log: impl Fn(&str) + 'static,
) -> Stage {
    let stage = stage(lp, log);
    let client = client.clone();
    let session = session.to_string();
    stage.on("announce", move |ctx| {
        let text = ctx.arg("text").cloned().unwrap_or(Value::Null);
        let args = Args::new().with("text", text);
        client.emit_signal(&session, "announced", &args)?;
        ctx.ret("return", &args)
    });
    stage
}

/// Runs a broker, the demo service and a caller in one process on
/// loopback and reports each step to `out`, one line each: emit, recall,
/// return, cancel and an error. Fails if any step did not happen as
/// expected.
pub fn transcript(out: impl FnMut(&str) + 'static) -> Result<(), Error> {
    let lp = EventLoop::new().map_err(|e| Error::io("cannot create a loop", &e))?;
    let out = RefCell::new(out);
    let say: Say = Rc::new(move |line: &str| (out.borrow_mut())(line));
    let broker = Broker::new(&lp, BrokerConfig::listening(["tcp://127.0.0.1:0".parse()?]))?;
    let address = broker.local_addresses()[0].clone();
    say(&format!("broker listening on {address}"));
    let service = Client::connect(&lp, &address, ClientConfig::default());
    let caller = Client::connect(&lp, &address, ClientConfig::default());
    let log = say.clone();
    let demo = stage(&lp, move |line| log(&format!("service: {line}")));
    let step: Step = Rc::default();
    let wait = |what: &str| -> Result<(), Error> {
        let done = lp
            .run_until(Duration::from_secs(10), || step.borrow().is_some())
            .map_err(|e| Error::io("the loop failed", &e))?;
        if !done {
            return Err(Error::new(
                ErrorCode::Timeout,
                format!("{what} did not finish"),
            ));
        }
        step.borrow_mut().take().expect("checked above")
    };
    let s = step.clone();
    demo.publish(&service, "Demo", &METHODS, move |r| finish(&s, r));
    wait("publish")?;
    say("service: published Demo (echo, count, ask/answer, slow)");

    let remote: Rc<RefCell<Option<RemoteStage>>> = Rc::default();
    let (s, r2) = (step.clone(), remote.clone());
    RemoteStage::subscribe(&caller, "Demo", move |r| {
        let r = r.map(|stage| *r2.borrow_mut() = Some(stage));
        finish(&s, r)
    });
    wait("subscribe")?;
    let remote = remote.borrow_mut().take().expect("subscribed");
    say("caller: subscribed to Demo");

    say("caller: -> echo {\"text\":\"hi\"}");
    let _echo = Request::to(&remote, "echo")
        .arg("text", "hi")
        .fallback(reporter(&step, &say))
        .send()?;
    wait("echo")?;

    say("caller: -> count {\"n\":3}");
    let _count = Request::to(&remote, "count")
        .arg("n", 3)
        .fallback(reporter(&step, &say))
        .send()?;
    wait("count")?;

    say("caller: -> ask {}");
    let report = reporter(&step, &say);
    let say2 = say.clone();
    let _ask = Request::to(&remote, "ask")
        .on("question", move |ctx| {
            report(ctx)?;
            say2("caller: recall answer {\"name\":\"POE\"}");
            ctx.rsp()
                .expect("a response")
                .recall("answer", &Args::new().with("name", "POE"))
        })
        .fallback(reporter(&step, &say))
        .send()?;
    wait("ask")?;

    say("caller: -> slow {\"ms\":60000}, cancelled after 50 ms");
    let slow = Request::to(&remote, "slow")
        .arg("ms", 60_000)
        .fallback(reporter(&step, &say))
        .send()?;
    let s = step.clone();
    lp.add_timer(Duration::from_millis(50), move |_| {
        slow.cancel();
        finish(&s, Ok(()));
    });
    wait("cancel")?;
    // One round trip so that the service's cancel line comes before the
    // next step.
    let s = step.clone();
    caller.listing(move |r| finish(&s, r.map(|_| ())));
    wait("listing")?;

    say("caller: -> nope {}");
    let _nope = Request::to(&remote, "nope")
        .fallback(reporter(&step, &say))
        .send()?;
    wait("nope")?;

    say("done");
    drop(broker);
    Ok(())
}

/// Where transcript lines go.
type Say = Rc<dyn Fn(&str)>;
/// The outcome of the step being waited for.
type Step = Rc<RefCell<Option<Result<(), Error>>>>;

fn finish(step: &Step, outcome: Result<(), Error>) {
    *step.borrow_mut() = Some(outcome);
}

/// A response handler that writes each response to the transcript and
/// settles the step on the final one.
fn reporter(step: &Step, say: &Say) -> impl Fn(&Ctx<'_>) -> Result<(), Error> + 'static {
    let (step, say) = (step.clone(), say.clone());
    move |ctx| {
        let rsp = ctx.rsp().expect("a response handler has a response");
        match rsp.error() {
            Some(e) => say(&format!("caller: <- error {e}")),
            None => say(&format!(
                "caller: <- {} {}",
                rsp.kind(),
                ctx.args().to_json()
            )),
        }
        if rsp.is_final() {
            finish(&step, Ok(()));
        }
        Ok(())
    }
}
