//! The roles of the issue-14 cases: a balanced publisher (`balance.pipe64`)
//! and a signal emitter and its listeners (`signal.fanout`).

use crate::{fail, now_ns, payload, SLICE};
use stagebus::{Address, Client, ClientConfig, EventLoop, Inbound, NameMode};
use std::cell::Cell;
use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

fn address(s: Option<&String>) -> Address {
    s.unwrap_or_else(|| fail("missing broker address"))
        .parse()
        .unwrap_or_else(|e| fail(format!("bad address: {e}")))
}

fn count(args: &[String]) -> u64 {
    args.get(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fail("missing or bad N"))
}

fn connect(lp: &EventLoop, addr: &Address) -> Client {
    let client = Client::connect(lp, addr, ClientConfig::default());
    let ok = Rc::new(Cell::new(false));
    let o = ok.clone();
    client.on_connect(move |r| match r {
        Ok(_) => o.set(true),
        Err(e) => fail(format!("connect: {e}")),
    });
    if !lp.run_until(Duration::from_secs(10), || ok.get()).unwrap() {
        fail("connect timed out");
    }
    client
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn wait_done(lp: &EventLoop, what: &str, done: &Rc<Cell<bool>>) {
    if !lp
        .run_until(Duration::from_secs(10), || done.get())
        .unwrap()
    {
        fail(format!("{what} timed out"));
    }
}

/// Publishes `bench_bal` (echo) in `balance` mode, prints `ready`, and
/// serves until the broker goes away.
pub fn balanced(args: &[String]) -> ExitCode {
    let addr = address(args.first());
    let lp = EventLoop::new().unwrap();
    let client = connect(&lp, &addr);
    client.on_disconnect(|_| std::process::exit(0));
    let done = Rc::new(Cell::new(false));
    let d = done.clone();
    client.publish_as(
        NameMode::Balance,
        "bench_bal",
        &["echo"],
        |d, inbound| {
            if let Inbound::Call { args, .. } = inbound {
                let _ = d.respond("return", &args);
            }
        },
        move |r| {
            r.unwrap_or_else(|e| fail(format!("publish bench_bal: {e}")));
            d.set(true);
        },
    );
    wait_done(&lp, "publish", &done);
    say("ready");
    let _ = lp.run();
    ExitCode::SUCCESS
}

/// Publishes `sig_src`, prints `ready`, waits for `go` on stdin, emits N
/// signals `tick` with the 64-byte payload (1000 per loop turn), waits
/// until they left, and exits.
pub fn emitter(args: &[String]) -> ExitCode {
    let addr = address(args.first());
    let n = count(args);
    let lp = EventLoop::new().unwrap();
    let client = connect(&lp, &addr);
    let done = Rc::new(Cell::new(false));
    let d = done.clone();
    client.publish(
        "sig_src",
        &["none"],
        |_, _| {},
        move |r| {
            r.unwrap_or_else(|e| fail(format!("publish sig_src: {e}")));
            d.set(true);
        },
    );
    wait_done(&lp, "publish", &done);
    say("ready");
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    let data = payload();
    let mut sent = 0;
    while sent < n {
        match client.emit_signal("sig_src", "tick", &data) {
            Ok(()) => sent += 1,
            // The output queue is full: let it drain.
            Err(_) => {
                let _ = lp.run_until(Duration::from_millis(1), || false);
                continue;
            }
        }
        if sent % 1000 == 0 {
            let _ = lp.run_until(Duration::ZERO, || false);
        }
    }
    let flushed = Rc::new(Cell::new(false));
    let f = flushed.clone();
    client.close_gracefully(move |r| {
        r.unwrap_or_else(|e| fail(format!("flush: {e}")));
        f.set(true);
    });
    if !lp
        .run_until(Duration::from_secs(60), || flushed.get())
        .unwrap()
    {
        fail("the signals did not leave");
    }
    ExitCode::SUCCESS
}

/// Adds a match for `sig_src` / `*`, prints `ready`, then takes N
/// signals and prints `CHECKPOINTS` (the first signal's time, then one
/// every SLICE signals).
pub fn listener(args: &[String]) -> ExitCode {
    let addr = address(args.first());
    let n = count(args);
    let lp = EventLoop::new().unwrap();
    let client = connect(&lp, &addr);
    let got = Rc::new(Cell::new(0u64));
    let checkpoints = Rc::new(std::cell::RefCell::new(Vec::new()));
    let (g, c) = (got.clone(), checkpoints.clone());
    let done = Rc::new(Cell::new(false));
    let d = done.clone();
    client
        .add_match(
            "sig_src",
            "*",
            move |_| {
                let k = g.get() + 1;
                g.set(k);
                // The first signal starts the clock; every SLICE after it
                // closes a slice.
                if (k - 1) % SLICE == 0 {
                    c.borrow_mut().push(now_ns());
                }
            },
            move |r| {
                r.unwrap_or_else(|e| fail(format!("add_match: {e}")));
                d.set(true);
            },
        )
        .unwrap_or_else(|e| fail(format!("add_match: {e}")));
    wait_done(&lp, "add_match", &done);
    say("ready");
    if !lp
        .run_until(Duration::from_secs(100), || got.get() >= n)
        .unwrap()
    {
        fail(format!("only {} of {n} signals arrived", got.get()));
    }
    let mut s = String::from("CHECKPOINTS");
    for x in checkpoints.borrow().iter() {
        s.push(' ');
        s.push_str(&x.to_string());
    }
    say(&s);
    client.close();
    ExitCode::SUCCESS
}
