//! Property test of the request machinery: seeded random sequences of
//! sends, emits, recalls, returns, fails, callee cancels, caller cancels,
//! timeouts, drops, nested requests and disconnects (publisher closed or
//! dropped, subscriber closed, broker closed), locally and through a
//! broker over TCP and a Unix socket.
//!
//! After each episode every transaction must have ended exactly once on
//! each side, and no per-request data may be left alive:
//!
//! * caller: its data's free hook ran once; at most one final response;
//!   exactly one if its caller never cancelled it (a nested request may
//!   instead be cancelled by its parent's end); none after a cancel; emits
//!   in the order sent; the final matches what the callee did;
//! * callee: for every request it started, exactly one of returned,
//!   failed (including its own cancel and a handler error) or on-cancel;
//!   its data's free hook ran once; a recall sees the data;
//! * no `Live` value survives; the broker holds no pending call.
//!
//! Seeds are fixed, so a failure names the seed that reproduces it
//! (`STAGEBUS_PROP_SEED=<seed>` runs just that one;
//! `STAGEBUS_PROP_EPISODES=<n>` changes how many run per mode).

mod common_requests;

use common_requests::*;
use stagebus::*;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// xorshift64*: small, seeded, good enough to pick actions.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

type SharedRng = Rc<RefCell<Rng>>;

fn roll(rng: &SharedRng, n: u64) -> u64 {
    rng.borrow_mut().below(n)
}

/// The caller's side of one transaction.
#[derive(Debug, Default)]
struct CallerTrack {
    id: Cell<u64>,
    top_level: bool,
    /// For nested requests: the request being served when it was made.
    parent: Option<ServedRequest>,
    emits: Cell<u32>,
    finals: Cell<u32>,
    final_kind: RefCell<Option<String>>,
    final_code: Cell<Option<ErrorCode>>,
    last_seq: Cell<i64>,
    ended: Cell<u32>,
    cancelled_by_caller: Cell<bool>,
    parent_open_at_end: Cell<bool>,
}

/// The callee's side of one transaction.
#[derive(Debug, Default)]
struct CalleeTrack {
    returned: Cell<u32>,
    failed: Cell<u32>,
    cancelled: Cell<u32>,
    data_ended: Cell<u32>,
    seq: Cell<i64>,
}

/// A request the callee started, with its track.
type Served = (ServedRequest, Rc<CalleeTrack>);

/// Everything handlers and the driver share.
#[derive(Clone)]
struct Shared {
    rng: SharedRng,
    lp: EventLoop,
    target: Rc<RefCell<Option<Target>>>,
    callers: Rc<RefCell<Vec<Rc<CallerTrack>>>>,
    served: Rc<RefCell<Vec<Served>>>,
    callees: Rc<RefCell<HashMap<u64, Rc<CalleeTrack>>>>,
    /// Nested requests kept by the stage itself (not in request data):
    /// only the implicit parent link ends them.
    kept: Rc<RefCell<Vec<Request>>>,
    live: Rc<Cell<i64>>,
    violations: Rc<RefCell<Vec<String>>>,
    /// Recalls that reached the callee.
    recalls: Rc<Cell<u64>>,
}

impl Shared {
    fn violation(&self, what: String) {
        self.violations.borrow_mut().push(what);
    }
}

fn bump(c: &Cell<u32>) {
    c.set(c.get() + 1);
}

/// Emits on `served` with the next sequence number.
fn emit_next(served: &ServedRequest, track: &CalleeTrack) -> Result<(), Error> {
    let seq = track.seq.get() + 1;
    served.emit("emit", &Args::new().with("seq", seq))?;
    track.seq.set(seq);
    Ok(())
}

fn ret(served: &ServedRequest, track: &CalleeTrack, kind: &str) {
    if served.ret(kind, &Args::new()).is_ok() {
        bump(&track.returned);
    }
}

fn fail(served: &ServedRequest, track: &CalleeTrack, own_cancel: bool) {
    let result = if own_cancel {
        served.cancel()
    } else {
        served.fail(Error::new(ErrorCode::HandlerFailed, "failed by the driver"))
    };
    if result.is_ok() {
        bump(&track.failed);
    }
}

/// Sends a request of `behaviour` (see `stage`) with `depth` levels of
/// nesting allowed below it, and records it.
fn send(
    sh: &Shared,
    top_level: bool,
    parent: Option<ServedRequest>,
) -> Option<(Request, Rc<CallerTrack>)> {
    let target = sh.target.borrow().clone().unwrap();
    let behaviour = roll(&sh.rng, 5) as i64;
    let depth = if top_level {
        roll(&sh.rng, 3) as i64
    } else {
        0
    };
    let track = Rc::new(CallerTrack {
        top_level,
        parent,
        last_seq: Cell::new(0),
        parent_open_at_end: Cell::new(false),
        ..Default::default()
    });
    let (t, s) = (track.clone(), sh.clone());
    let mut builder = Request::to(target, "op")
        .arg("b", behaviour)
        .arg("depth", depth)
        .fallback(move |ctx| {
            let rsp = ctx.rsp().unwrap();
            let id = t.id.get();
            if t.ended.get() > 0 {
                s.violation(format!(
                    "{id}: '{}' after the caller's side ended",
                    rsp.kind()
                ));
            }
            if t.cancelled_by_caller.get() {
                s.violation(format!("{id}: '{}' after the caller cancelled", rsp.kind()));
            }
            if rsp.is_final() {
                bump(&t.finals);
                *t.final_kind.borrow_mut() = Some(rsp.kind().to_string());
                t.final_code.set(rsp.error().map(|e| e.code));
                return Ok(());
            }
            bump(&t.emits);
            let seq = ctx.arg("seq").and_then(Value::as_int).unwrap_or(-1);
            if seq <= t.last_seq.get() {
                s.violation(format!("{id}: emit {seq} after {}", t.last_seq.get()));
            }
            t.last_seq.set(seq);
            match roll(&s.rng, 10) {
                0..=3 => {
                    let act = roll(&s.rng, 3) as i64;
                    let _ = rsp.recall("again", &Args::new().with("act", act));
                }
                4 if rsp.cancel() => t.cancelled_by_caller.set(true),
                _ => {}
            }
            Ok(())
        });
    if roll(&sh.rng, 5) == 0 {
        builder = builder.timeout(Duration::from_millis(roll(&sh.rng, 4)));
    }
    let req = match builder.send() {
        Ok(req) => req,
        // Once the publisher went away the subscription has ended, and a
        // remote stage refuses requests at once: no transaction starts.
        Err(e) if e.code == ErrorCode::NotSubscribed => return None,
        Err(e) => {
            sh.violation(format!("send failed: {e}"));
            return None;
        }
    };
    track.id.set(req.id());
    let (t, s) = (track.clone(), sh.clone());
    req.data().on_end("end", move || {
        bump(&t.ended);
        if let Some(p) = &t.parent {
            t.parent_open_at_end.set(p.is_open());
        }
        if t.ended.get() > 1 {
            s.violation(format!("{}: caller data freed twice", t.id.get()));
        }
    });
    req.data().set("live", Live::new(&sh.live));
    sh.callers.borrow_mut().push(track.clone());
    Some((req, track))
}

/// The callee stage. `op` behaviours: 0 hold, 1 emit and hold, 2 return
/// at once, 3 fail by returning an error, 4 make a nested request (kept
/// in the request's data or in the stage's) and hold. `again` (recall):
/// 0 nothing, 1 emit, 2 return.
fn stage(sh: &Shared) -> Stage {
    let stage = Stage::new(&sh.lp, "P");
    let s = sh.clone();
    stage.on("op", move |ctx| {
        let req = ctx.req().unwrap();
        let track = Rc::new(CalleeTrack::default());
        if s.callees
            .borrow_mut()
            .insert(req.caller_id(), track.clone())
            .is_some()
        {
            s.violation(format!("{}: delivered twice", req.caller_id()));
        }
        let t = track.clone();
        req.on_cancel(move || bump(&t.cancelled));
        let (t, s2, id) = (track.clone(), s.clone(), req.caller_id());
        req.data().on_end("end", move || {
            bump(&t.data_ended);
            if t.data_ended.get() > 1 {
                s2.violation(format!("{id}: callee data freed twice"));
            }
        });
        req.data().set("live", Live::new(&s.live));
        req.data().set("track", track.clone());
        s.served.borrow_mut().push((req.clone(), track.clone()));
        let depth = ctx.arg("depth").and_then(Value::as_int).unwrap_or(0);
        match ctx.arg("b").and_then(Value::as_int).unwrap_or(0) {
            1 => {
                let _ = emit_next(req, &track);
            }
            2 => ret(req, &track, "return"),
            3 => {
                bump(&track.failed);
                return Err(Error::new(
                    ErrorCode::HandlerFailed,
                    "failed by the handler",
                ));
            }
            4 if depth > 0 => {
                if let Some((child, _)) = send(&s, false, Some(req.clone())) {
                    if roll(&s.rng, 2) == 0 {
                        req.data().set("child", child);
                    } else {
                        s.kept.borrow_mut().push(child);
                    }
                }
            }
            _ => {}
        }
        Ok(())
    });
    let s = sh.clone();
    stage.on("again", move |ctx| {
        let req = ctx.req().unwrap();
        s.recalls.set(s.recalls.get() + 1);
        let Some(track) = req.data().get::<Rc<CalleeTrack>>("track") else {
            s.violation(format!(
                "{}: a recall without the request's data",
                req.caller_id()
            ));
            return Ok(());
        };
        match ctx.arg("act").and_then(Value::as_int).unwrap_or(0) {
            1 => {
                let _ = emit_next(req, &track);
            }
            2 => ret(req, &track, "done"),
            _ => {}
        }
        Ok(())
    });
    stage
}

/// A random open served request.
fn pick_open(sh: &Shared) -> Option<(ServedRequest, Rc<CalleeTrack>)> {
    let open: Vec<_> = sh
        .served
        .borrow()
        .iter()
        .filter(|(s, _)| s.is_open())
        .cloned()
        .collect();
    if open.is_empty() {
        return None;
    }
    let i = roll(&sh.rng, open.len() as u64) as usize;
    Some(open[i].clone())
}

fn episode(mode: Mode, seed: u64, tally: &mut Tally) -> Vec<String> {
    let mut fx = Fixture::new(mode);
    let sh = Shared {
        rng: Rc::new(RefCell::new(Rng::new(seed))),
        lp: fx.lp.clone(),
        target: Rc::default(),
        callers: Rc::default(),
        served: Rc::default(),
        callees: Rc::default(),
        kept: Rc::default(),
        live: Rc::default(),
        violations: Rc::default(),
        recalls: Rc::default(),
    };
    let p = stage(&sh);
    *sh.target.borrow_mut() = Some(fx.target(&p));
    let mut handles: Vec<(Request, Rc<CallerTrack>)> = Vec::new();
    let mut disconnected = false;
    let mut steps = Vec::new();
    for _ in 0..60 {
        let action = roll(&sh.rng, 100);
        match action {
            0..=24 => {
                if let Some(h) = send(&sh, true, None) {
                    steps.push(format!("send {}", h.0.id()));
                    handles.push(h);
                }
            }
            25..=39 => {
                if let Some((s, t)) = pick_open(&sh) {
                    steps.push(format!("emit {}", s.caller_id()));
                    let _ = emit_next(&s, &t);
                }
            }
            40..=49 => {
                if let Some((s, t)) = pick_open(&sh) {
                    steps.push(format!("return {}", s.caller_id()));
                    ret(&s, &t, "return");
                }
            }
            50..=57 => {
                if let Some((s, t)) = pick_open(&sh) {
                    steps.push(format!(
                        "fail {} own_cancel={}",
                        s.caller_id(),
                        action >= 55
                    ));
                    fail(&s, &t, action >= 55);
                }
            }
            58..=65 => {
                if !handles.is_empty() {
                    let i = roll(&sh.rng, handles.len() as u64) as usize;
                    let (req, track) = &handles[i];
                    steps.push(format!("cancel {}", req.id()));
                    if req.cancel() {
                        track.cancelled_by_caller.set(true);
                    }
                }
            }
            66..=71 => {
                if !handles.is_empty() {
                    let i = roll(&sh.rng, handles.len() as u64) as usize;
                    let (req, track) = handles.swap_remove(i);
                    steps.push(format!("drop {}", req.id()));
                    if req.is_open() {
                        track.cancelled_by_caller.set(true);
                    }
                    drop(req);
                }
            }
            72 if mode.is_remote() && !disconnected => {
                disconnected = true;
                match roll(&sh.rng, 4) {
                    0 => {
                        steps.push("close the publisher".into());
                        fx.publisher.as_ref().unwrap().close();
                    }
                    1 => {
                        steps.push("drop the publisher".into());
                        drop(fx.publisher.take());
                    }
                    2 => {
                        steps.push("close the subscriber".into());
                        fx.subscriber.as_ref().unwrap().close();
                    }
                    _ => {
                        steps.push("close the broker".into());
                        fx.broker.as_ref().unwrap().close();
                    }
                }
            }
            _ => {
                steps.push("turn".into());
                fx.lp.dispatch().unwrap();
            }
        }
        for _ in 0..roll(&sh.rng, 3) {
            fx.lp.dispatch().unwrap();
        }
    }

    // First, without answering anything: every request the callee still
    // serves although its caller's side has ended (cancelled, dropped,
    // timed out, ended by its parent, or failed by a disconnect) must be
    // closed for the callee on its own: the callee is told.
    let caller_ended = |id: u64| {
        sh.callers
            .borrow()
            .iter()
            .any(|t| t.id.get() == id && t.ended.get() > 0)
    };
    let orphans = || -> Vec<u64> {
        sh.served
            .borrow()
            .iter()
            .filter(|(s, _)| s.is_open() && caller_ended(s.caller_id()))
            .map(|(s, _)| s.caller_id())
            .collect()
    };
    let told = fx
        .lp
        .run_until(Duration::from_secs(2), || orphans().is_empty())
        .unwrap();
    if !told {
        sh.violation(format!(
            "the callee was never told that these callers ended: {:?}",
            orphans()
        ));
    }

    // Then the callee answers whatever it still holds, until every
    // transaction has ended on both sides.
    let broker_open = !steps.iter().any(|s| s == "close the broker");
    let settled = fx
        .lp
        .run_until(Duration::from_secs(5), || {
            // (One whose connection is gone stays open until its cancel
            // arrives.)
            let open: Vec<_> = sh
                .served
                .borrow()
                .iter()
                .filter(|(s, _)| s.is_open())
                .cloned()
                .collect();
            for (s, t) in open {
                if roll(&sh.rng, 2) == 0 {
                    ret(&s, &t, "return");
                } else {
                    fail(&s, &t, false);
                }
            }
            let callers_done = sh.callers.borrow().iter().all(|t| t.ended.get() >= 1);
            let callees_done = sh.callees.borrow().values().all(|t| {
                t.returned.get() + t.failed.get() + t.cancelled.get() >= 1
                    && t.data_ended.get() >= 1
            });
            let broker_done = !broker_open
                || fx
                    .broker
                    .as_ref()
                    .map_or(true, |b| b.stats().pending_calls == 0);
            callers_done && callees_done && broker_done && sh.live.get() == 0
        })
        .unwrap();
    drop(handles);
    sh.kept.borrow_mut().clear();
    let mut v = sh.violations.borrow().clone();
    if !settled {
        v.push("the episode did not settle within 5 s".into());
    }
    for step in &steps {
        if step.starts_with("close") || step.starts_with("drop the") {
            tally.add(step.as_str());
        } else {
            tally.add(step.split(' ').next().unwrap_or_default());
        }
    }
    for _ in 0..sh.recalls.get() {
        tally.add("recall");
    }
    check(&sh, &mut v, tally);
    if !v.is_empty() {
        v.push(format!("steps: {}", steps.join(", ")));
    }
    // Break the cycles between the stage's handlers and these tables.
    sh.served.borrow_mut().clear();
    sh.callers.borrow_mut().clear();
    sh.callees.borrow_mut().clear();
    *sh.target.borrow_mut() = None;
    v
}

/// What the episodes exercised, to prove the property test still
/// covers what it claims.
#[derive(Debug, Default)]
struct Tally(std::collections::BTreeMap<String, u64>);

impl Tally {
    fn add(&mut self, what: impl Into<String>) {
        *self.0.entry(what.into()).or_default() += 1;
    }

    fn get(&self, what: &str) -> u64 {
        self.0.get(what).copied().unwrap_or(0)
    }
}

/// The end-of-episode invariants.
fn check(sh: &Shared, v: &mut Vec<String>, tally: &mut Tally) {
    let callees = sh.callees.borrow();
    for t in sh.callers.borrow().iter() {
        tally.add(if t.top_level { "top-level" } else { "nested" });
        if t.emits.get() > 0 {
            tally.add("emitted to");
        }
        if t.cancelled_by_caller.get() {
            tally.add("cancelled by the caller");
        } else if t.finals.get() == 0 {
            tally.add("ended by the parent");
        }
        match (t.final_kind.borrow().as_deref(), t.final_code.get()) {
            (Some(kind), None) => tally.add(kind),
            (Some(_), Some(code)) => tally.add(code.as_str()),
            _ => {}
        }
        let id = t.id.get();
        let (finals, ended) = (t.finals.get(), t.ended.get());
        if ended != 1 {
            v.push(format!("{id}: caller data freed {ended} times"));
        }
        if finals > 1 {
            v.push(format!("{id}: {finals} final responses"));
        }
        if t.cancelled_by_caller.get() {
            if finals != 0 {
                v.push(format!("{id}: a final response after the caller cancelled"));
            }
        } else if t.top_level {
            if finals != 1 {
                v.push(format!(
                    "{id}: top-level request ended with {finals} finals"
                ));
            }
        } else if finals == 0 && t.parent_open_at_end.get() {
            v.push(format!(
                "{id}: nested request ended silently while its parent was open"
            ));
        }
        let callee = callees.get(&id);
        let kind = t.final_kind.borrow().clone();
        match (kind.as_deref(), t.final_code.get()) {
            (Some("return" | "done"), None) => {
                if callee.map_or(true, |c| c.returned.get() != 1) {
                    v.push(format!("{id}: a return the callee did not make"));
                }
            }
            (Some("error"), Some(ErrorCode::HandlerFailed | ErrorCode::Cancelled)) => {
                if callee.map_or(true, |c| c.failed.get() != 1) {
                    v.push(format!("{id}: a failure the callee did not make"));
                }
            }
            (
                Some("error"),
                Some(
                    ErrorCode::Timeout
                    | ErrorCode::PublisherGone
                    | ErrorCode::BrokerGone
                    | ErrorCode::NoSuchSession,
                ),
            ) => {}
            (None, None) => {}
            other => v.push(format!("{id}: unexpected final {other:?}")),
        }
    }
    for (id, t) in callees.iter() {
        if t.cancelled.get() > 0 {
            tally.add("callee on-cancel");
        }
        let ends = t.returned.get() + t.failed.get() + t.cancelled.get();
        if ends != 1 {
            v.push(format!(
                "{id}: callee ended {ends} times (returned {}, failed {}, cancelled {})",
                t.returned.get(),
                t.failed.get(),
                t.cancelled.get()
            ));
        }
        if t.data_ended.get() != 1 {
            v.push(format!(
                "{id}: callee data freed {} times",
                t.data_ended.get()
            ));
        }
    }
    if sh.live.get() != 0 {
        v.push(format!("{} per-request values still alive", sh.live.get()));
    }
}

fn seeds() -> Vec<u64> {
    if let Ok(seed) = std::env::var("STAGEBUS_PROP_SEED") {
        return vec![seed.parse().expect("STAGEBUS_PROP_SEED is a number")];
    }
    let n = std::env::var("STAGEBUS_PROP_EPISODES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(300u64);
    (1..=n).collect()
}

fn run(mode: Mode) {
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut tally = Tally::default();
    let seeds = seeds();
    for &seed in &seeds {
        let v = episode(mode, seed, &mut tally);
        if !v.is_empty() {
            failures.push(format!("seed {seed} ({mode:?}):\n  {}", v.join("\n  ")));
            if failures.len() >= 3 {
                break;
            }
        }
    }
    println!(
        "{mode:?}: {} episodes in {:?}",
        seeds.len(),
        started.elapsed()
    );
    println!("{mode:?}: {:?}", tally.0);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    if seeds.len() >= 50 {
        let mut expected = vec![
            "top-level",
            "nested",
            "emitted to",
            "cancelled by the caller",
            "ended by the parent",
            "return",
            "done",
            "handler_failed",
            "cancelled",
            "timeout",
            "callee on-cancel",
            "recall",
        ];
        if mode.is_remote() {
            expected.extend([
                "close the publisher",
                "drop the publisher",
                "close the subscriber",
                "close the broker",
                "publisher_gone",
                "broker_gone",
            ]);
        }
        for what in expected {
            assert!(tally.get(what) > 0, "no episode exercised '{what}'");
        }
    }
}

#[test]
fn every_transaction_ends_once_on_each_side_local() {
    run(Mode::Local);
}

#[test]
fn every_transaction_ends_once_on_each_side_remote_tcp() {
    run(Mode::Remote);
}

#[test]
fn every_transaction_ends_once_on_each_side_remote_unix() {
    run(Mode::RemoteUnix);
}
