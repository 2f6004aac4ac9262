//! Cancel cascades across a three-level chain A → B → C, each stage on
//! its own client of one real broker: first all on one loop, then with B
//! and C in two child processes (this test binary, re-run with
//! `STAGEBUS_TEST_CASCADE_ROLE` set, running only `cascade_child`).
//!
//! C answers `work` with a `tick` emit every millisecond; B forwards
//! every tick to A; so responses are always in flight when A cancels.
//! Cancelling at A (the top-level request A serves, or A's own request
//! to B from inside a response handler) must cancel B's and C's work:
//! each on-cancel runs once, each per-request data free hook runs once,
//! and no response reaches A afterwards. "Afterwards" is made certain
//! without sleeping: a `ping` then travels the same A → B → C path and
//! back (FIFO everywhere), and each child prints `pong` on its stdout
//! after every earlier report.

#[macro_use]
mod common_requests;

use common_requests::*;
use stagebus::*;
use std::cell::Cell;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ROLE: &str = "STAGEBUS_TEST_CASCADE_ROLE";
const BROKER: &str = "STAGEBUS_TEST_CASCADE_BROKER";
const PREFIX: &str = "@@ ";

/// Where a stage reports its hooks: a log in this process, stdout in a
/// child.
type Report = Rc<dyn Fn(&str)>;

/// Emits `tick` on `served` every millisecond until it cannot.
fn tick(lp: &EventLoop, served: ServedRequest, n: i64) {
    if served.emit("tick", &Args::new().with("n", n)).is_err() {
        return;
    }
    let next = lp.clone();
    lp.add_timer(Duration::from_millis(1), move |_| {
        tick(&next, served, n + 1)
    });
}

/// C: `work` ticks until cancelled; `ping` answers `pong`.
fn stage_c(lp: &EventLoop, report: Report) -> Stage {
    let c = Stage::new(lp, "C");
    let r = report.clone();
    c.on("work", move |ctx| {
        let req = ctx.req().unwrap();
        let (r1, r2) = (r.clone(), r.clone());
        req.on_cancel(move || r1("C cancel"));
        req.data().on_end("end", move || r2("C served_end"));
        tick(ctx.stage().unwrap().event_loop(), req.clone(), 0);
        Ok(())
    });
    c.on("ping", move |ctx| {
        report("C pong");
        ctx.ret("pong", &Args::new())
    });
    c
}

/// B: `work` asks C to work and passes C's ticks up; `ping` pings C.
fn stage_b(lp: &EventLoop, to_c: Target, report: Report) -> Stage {
    let b = Stage::new(lp, "B");
    let (r, to) = (report.clone(), to_c.clone());
    b.on("work", move |ctx| {
        let req = ctx.req().unwrap();
        let (r1, r2, r3) = (r.clone(), r.clone(), r.clone());
        req.on_cancel(move || r1("B cancel"));
        req.data().on_end("end", move || r2("B served_end"));
        let sub = Request::to(to.clone(), "work")
            .on("tick", |ctx| {
                // Inside B's response handler `req` is B's own request.
                let _ = ctx.emit("tick", ctx.args());
                Ok(())
            })
            .send()?;
        sub.data().on_end("end", move || r3("B sub_end"));
        // Kept in B's own data, not the request's: only the implicit
        // parent link can cancel it.
        ctx.stage().unwrap().data().set("work", sub);
        Ok(())
    });
    b.on("ping", move |ctx| {
        let r = report.clone();
        let sub = Request::to(to_c.clone(), "ping")
            .on("pong", move |ctx| {
                r("B pong");
                ctx.ret("pong", &Args::new())
            })
            .send()?;
        ctx.req().unwrap().data().set("sub", sub);
        Ok(())
    });
    b
}

/// How A cancels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CancelAt {
    /// The test cancels the top-level request A serves.
    TopLevel,
    /// A cancels its request to B inside its third tick's handler.
    InHandler,
}

/// What A saw of its request to B.
#[derive(Default, Clone)]
struct Heard {
    ticks: Counter,
    finals: Counter,
    after_cancel: Counter,
    cancelled: Rc<Cell<bool>>,
}

/// A: `run` asks B to work; `ping` pings B.
fn stage_a(lp: &EventLoop, to_b: Target, report: Report, at: CancelAt, heard: Heard) -> Stage {
    let a = Stage::new(lp, "A");
    let (r, to) = (report.clone(), to_b.clone());
    a.on("run", move |ctx| {
        let req = ctx.req().unwrap();
        let (r1, r2) = (r.clone(), r.clone());
        req.data().on_end("end", move || r1("A served_end"));
        // Kept until it ends: once A cancels its request to B inside a
        // handler, nothing else refers to it, and a request let go
        // unanswered fails at once.
        req.data().set("kept", req.clone());
        let h = heard.clone();
        let sub = Request::to(to.clone(), "work")
            .fallback(move |ctx| {
                let rsp = ctx.rsp().unwrap();
                if h.cancelled.get() {
                    h.after_cancel.bump();
                }
                if rsp.is_final() {
                    h.finals.bump();
                } else {
                    h.ticks.bump();
                }
                if at == CancelAt::InHandler && h.ticks.get() == 3 {
                    h.cancelled.set(true);
                    assert!(rsp.cancel(), "A's request to B was open");
                }
                Ok(())
            })
            .send()?;
        sub.data().on_end("end", move || r2("A sub_end"));
        req.data().set("sub", sub);
        Ok(())
    });
    a.on("ping", move |ctx| {
        let sub = Request::to(to_b.clone(), "ping")
            .on("pong", |ctx| ctx.ret("pong", &Args::new()))
            .send()?;
        ctx.req().unwrap().data().set("sub", sub);
        Ok(())
    });
    a
}

/// The hooks every run must see exactly once (A's own `run` request
/// ends too when the top-level request is cancelled).
const ONCE: [&str; 6] = [
    "A sub_end",
    "B cancel",
    "B served_end",
    "B sub_end",
    "C cancel",
    "C served_end",
];

/// Starts A's work, waits for ticks to flow, cancels at A, waits for the
/// cascade, then proves with a ping that nothing more reaches A.
fn cancel_and_check(
    fx: &Fixture,
    a: &Stage,
    at: CancelAt,
    heard: &Heard,
    reports: &dyn Fn() -> Vec<String>,
    settled: &dyn Fn() -> bool,
) {
    let (top, outcome) = send_recorded(a, "run", Args::new());
    run_until(&fx.lp, "ticks to flow from C to A", || {
        heard.ticks.get() >= 3
    });
    if at == CancelAt::TopLevel {
        heard.cancelled.set(true);
        assert!(top.cancel(), "the top-level request was open");
    }
    let count = |line: &str| reports().iter().filter(|l| *l == line).count();
    run_until(&fx.lp, "the cascade to reach B and C", || {
        [
            "B cancel",
            "C cancel",
            "B served_end",
            "C served_end",
            "B sub_end",
        ]
        .iter()
        .all(|l| count(l) >= 1)
    });
    let ticks = heard.ticks.get();
    let pong = call(&fx.lp, a, "ping", Args::new());
    assert_eq!(pong.kind(), Some("pong"), "{pong:?}");
    run_until(&fx.lp, "every report up to the pongs", settled);
    for line in ONCE {
        assert_eq!(count(line), 1, "{line}: {:?}", reports());
    }
    let a_ended = if at == CancelAt::TopLevel { 1 } else { 0 };
    assert_eq!(count("A served_end"), a_ended, "{:?}", reports());
    assert_eq!(
        heard.after_cancel.get(),
        0,
        "a response reached A after the cancel"
    );
    assert_eq!(heard.ticks.get(), ticks);
    assert_eq!(heard.finals.get(), 0);
    {
        let o = outcome.borrow();
        assert!(o.last.is_none() && o.emits.is_empty(), "{o:?}");
    }
    if at == CancelAt::InHandler {
        // A stopped only its request to B; its own request is still open.
        assert!(top.cancel(), "A's run request was open");
        assert_eq!(count("A served_end"), 1, "{:?}", reports());
    }
    let broker = fx.broker.as_ref().unwrap();
    run_until(&fx.lp, "the broker to forget every call", || {
        broker.stats().pending_calls == 0
    });
}

fn three_clients_one_loop(at: CancelAt) {
    let fx = Fixture::new(Mode::Remote);
    let log = Log::new();
    let l = log.clone();
    let report: Report = Rc::new(move |line: &str| l.push(line));
    let (client_a, client_b, client_c) = (fx.client(), fx.client(), fx.client());
    let c = stage_c(&fx.lp, report.clone());
    publish(&fx.lp, &client_c, &c, "C");
    let to_c = Target::Remote(subscribe(&fx.lp, &client_b, "C"));
    let b = stage_b(&fx.lp, to_c, report.clone());
    publish(&fx.lp, &client_b, &b, "B");
    let to_b = Target::Remote(subscribe(&fx.lp, &client_a, "B"));
    let heard = Heard::default();
    let a = stage_a(&fx.lp, to_b, report, at, heard.clone());
    let lines = || log.lines();
    let settled = || log.has("B pong") && log.has("C pong");
    cancel_and_check(&fx, &a, at, &heard, &lines, &settled);
}

#[test]
fn cascade_three_clients_one_loop_cancel_top_level() {
    three_clients_one_loop(CancelAt::TopLevel);
}

#[test]
fn cascade_three_clients_one_loop_cancel_in_handler() {
    three_clients_one_loop(CancelAt::InHandler);
}

// ---------------------------------------------------------------------
// B and C in child processes.

/// The child side: runs only when the parent set the role; otherwise a
/// no-op test.
#[test]
fn cascade_child() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let address: Address = std::env::var(BROKER).unwrap().parse().unwrap();
    let lp = EventLoop::new().unwrap();
    let report: Report = Rc::new(|line: &str| {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{PREFIX}{line}").unwrap();
        out.flush().unwrap();
    });
    let client = Client::connect(&lp, &address, ClientConfig::default());
    let gone = Rc::new(Cell::new(false));
    let g = gone.clone();
    client.on_disconnect(move |_| g.set(true));
    let _stage = match role.as_str() {
        "C" => {
            let c = stage_c(&lp, report.clone());
            publish(&lp, &client, &c, "C");
            c
        }
        "B" => {
            let to_c = Target::Remote(subscribe(&lp, &client, "C"));
            let b = stage_b(&lp, to_c, report.clone());
            publish(&lp, &client, &b, "B");
            b
        }
        other => panic!("unknown role {other}"),
    };
    report("ready");
    // Lives until the parent's broker closes the connection.
    run_until_within(&lp, Duration::from_secs(60), "the broker to close", || {
        gone.get()
    });
    lp.shutdown();
}

/// The child processes this test started; killed if the test fails.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

/// Lines the children printed, each prefixed with its role, plus
/// `<role> eof` when its stdout closed.
type Lines = Arc<Mutex<Vec<String>>>;

fn spawn_child(role: &str, address: &Address, lines: &Lines, lp: &EventLoop) -> Child {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "cascade_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE, role)
        .env(BROKER, address.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("cannot start a child process");
    let stdout = child.stdout.take().unwrap();
    let (lines, remote, role) = (lines.clone(), lp.remote(), role.to_string());
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // libtest may have printed "test cascade_child ... " first.
            if let Some((_, report)) = line.split_once(PREFIX) {
                lines.lock().unwrap().push(format!("{role}: {report}"));
                let _ = remote.wake();
            }
        }
        lines.lock().unwrap().push(format!("{role} eof"));
        let _ = remote.wake();
    });
    child
}

fn has(lines: &Lines, line: &str) -> bool {
    lines.lock().unwrap().iter().any(|l| l == line)
}

fn b_and_c_in_child_processes(at: CancelAt) {
    let fx = Fixture::new(Mode::Remote);
    let address = fx.address.clone().unwrap();
    let lines: Lines = Arc::default();
    let mut children = Children(Vec::new());
    children.0.push(spawn_child("C", &address, &lines, &fx.lp));
    run_until(&fx.lp, "C to be ready", || has(&lines, "C: ready"));
    children.0.push(spawn_child("B", &address, &lines, &fx.lp));
    run_until(&fx.lp, "B to be ready", || has(&lines, "B: ready"));

    let log = Log::new();
    let l = log.clone();
    let report: Report = Rc::new(move |line: &str| l.push(line));
    let client_a = fx.client();
    let to_b = Target::Remote(subscribe(&fx.lp, &client_a, "B"));
    let heard = Heard::default();
    let a = stage_a(&fx.lp, to_b, report, at, heard.clone());
    // Every report, from A (this process) and from the children, as
    // "B cancel" etc.; the role prefix is the first word already.
    let all = || {
        let mut v = log.lines();
        v.extend(
            lines
                .lock()
                .unwrap()
                .iter()
                .filter_map(|l| l.split_once(": ").map(|(_, r)| r.to_string())),
        );
        v
    };
    let settled = || has(&lines, "B: B pong") && has(&lines, "C: C pong");
    cancel_and_check(&fx, &a, at, &heard, &all, &settled);

    // The children exit when their connection closes.
    fx.broker.as_ref().unwrap().close();
    run_until(&fx.lp, "both children to exit", || {
        has(&lines, "B eof") && has(&lines, "C eof")
    });
    for mut child in std::mem::take(&mut children.0) {
        let status = child.wait().unwrap();
        assert!(status.success(), "a child failed: {status}");
    }
}

#[test]
fn cascade_b_and_c_in_child_processes_cancel_top_level() {
    b_and_c_in_child_processes(CancelAt::TopLevel);
}

#[test]
fn cascade_b_and_c_in_child_processes_cancel_in_handler() {
    b_and_c_in_child_processes(CancelAt::InHandler);
}
