//! Several publishers per name (issue 14 item 3), with real `stagebus
//! serve --mode …` processes behind a `stagebus broker` process:
//!
//! * `queue`: the owner killed with -9 in the middle of traffic: each
//!   call in flight to it ends once with `publisher_gone`, watchers hear
//!   of the new owner, and the standby serves the next call;
//! * `balance` over 3 publishers: each serves a share (`whoami`); a
//!   dialogue's recall reaches the publisher that took it; one killed
//!   with -9 takes only its own calls with it;
//! * the first publisher fixes the mode: another is `name_mode_conflict`.

#[macro_use]
mod common;
mod support;

use common::*;
use stagebus::*;
use std::collections::{HashMap, HashSet};
use std::process::Command;
use support::Proc;

over_both!(
    queue_owner_killed_mid_traffic_hands_over_to_the_standby,
    balance_spreads_calls_keeps_dialogues_and_loses_only_the_killed_ones,
);

fn stagebus(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stagebus"));
    cmd.args(args);
    cmd
}

/// A `stagebus broker` on transport `t`, and its address.
fn broker_proc(t: Transport, dir: &TempDir) -> (Proc, Address) {
    let listen = match t {
        Transport::Tcp => "tcp://127.0.0.1:0".to_string(),
        Transport::Unix => format!("unix:{}", dir.path().join("b.sock").display()),
    };
    let mut broker = Proc::spawn("broker", &mut stagebus(&["broker", "--listen", &listen]));
    let line = broker.wait_line("its address", |l| l.starts_with("listening on "));
    let address = line["listening on ".len()..].parse().unwrap();
    (broker, address)
}

/// `stagebus serve --mode MODE` publishing the demo stage as `name`.
fn serve_proc(address: &Address, name: &str, mode: &str) -> Proc {
    let addr = address.to_string();
    let mut p = Proc::spawn(
        &format!("serve {mode}"),
        &mut stagebus(&["serve", "--broker", &addr, "--name", name, "--mode", mode]),
    );
    p.wait_line("that it serves", |l| l.starts_with("serving "));
    p
}

fn connect(lp: &EventLoop, address: &Address) -> Client {
    let c = Client::connect(lp, address, ClientConfig::default());
    let done = Slot::new();
    c.on_connect(done.setter());
    wait(lp, &done).expect("connect");
    c
}

fn pid_of(out: &Outcome) -> i64 {
    match &out.last {
        CallEvent::Return { args, .. } => args.get("pid").and_then(Value::as_int).unwrap(),
        other => panic!("whoami failed: {other:?}"),
    }
}

fn queue_owner_killed_mid_traffic_hands_over_to_the_standby(t: Transport) {
    let dir = TempDir::new("queue");
    let (_broker, address) = broker_proc(t, &dir);
    let lp = EventLoop::new().unwrap();
    let caller = connect(&lp, &address);
    let owner = serve_proc(&address, "Q", "queue");
    let standby = serve_proc(&address, "Q", "queue");

    let events = log::<String>();
    let e = events.clone();
    let watched = Slot::new();
    caller
        .watch(
            "Q",
            move |ev| {
                e.borrow_mut().push(match ev {
                    NameEvent::Present { .. } => "present".into(),
                    NameEvent::Appeared { .. } => "appeared".into(),
                    NameEvent::OwnerChanged { .. } => "owner_changed".into(),
                    NameEvent::Gone { reason, .. } => format!("gone {}", reason.code),
                })
            },
            watched.setter(),
        )
        .unwrap();
    wait(&lp, &watched).unwrap();
    assert_eq!(*events.borrow(), ["present"]);

    let owner_pid = pid_of(&call(&caller, "Q", "whoami", &Args::new()));
    assert_eq!(owner_pid, i64::from(owner.child.id()));
    // Traffic in flight at the owner: slow calls, and whoami calls the
    // owner answers at once.
    let slow: Vec<_> = (0..5)
        .map(|_| start_call(&caller, "Q", "slow", &arg("ms", 60_000)))
        .collect();
    for _ in 0..3 {
        assert_eq!(
            pid_of(&call(&caller, "Q", "whoami", &Args::new())),
            owner_pid
        );
    }
    owner.signal(libc::SIGKILL);
    for (_, done) in &slow {
        let out = wait(&lp, done);
        assert_eq!(call_error(&out.last).code, ErrorCode::PublisherGone);
    }
    until(&lp, "the watch hears of the new owner", || {
        events.borrow().len() == 2
    });
    assert_eq!(*events.borrow(), ["present", "owner_changed"]);
    let next = pid_of(&call(&caller, "Q", "whoami", &Args::new()));
    assert_eq!(next, i64::from(standby.child.id()), "the standby serves");
    // Each ended once: a round trip more, and no slot was set twice.
    listing(&caller).unwrap();
    assert!(slow.iter().all(|(_, d)| d.times() == 1));

    // The first publisher fixed the mode.
    let other = connect(&lp, &address);
    let refused = Slot::new();
    other.publish_as(NameMode::Balance, "Q", &["m"], |_, _| {}, refused.setter());
    let e = wait(&lp, &refused).unwrap_err();
    assert_eq!(e.code, ErrorCode::NameModeConflict);
    assert_eq!(
        e.message,
        "Session 'Q' is published in mode 'queue', not 'balance'"
    );
    // And the name stays one session with the standby's methods.
    assert_eq!(names(&other), ["Q"]);
    drop(standby);
    until(&lp, "the name goes with its last publisher", || {
        events.borrow().len() == 3
    });
    assert_eq!(events.borrow()[2], "gone publisher_gone");
}

fn balance_spreads_calls_keeps_dialogues_and_loses_only_the_killed_ones(t: Transport) {
    let dir = TempDir::new("balance");
    let (_broker, address) = broker_proc(t, &dir);
    let lp = EventLoop::new().unwrap();
    let caller = connect(&lp, &address);
    let publishers: Vec<Proc> = (0..3)
        .map(|_| serve_proc(&address, "B", "balance"))
        .collect();
    let pids: HashSet<i64> = publishers.iter().map(|p| i64::from(p.child.id())).collect();
    assert_eq!(names(&caller), ["B"], "subscribers see one session");

    // Each serves a share.
    let mut shares: HashMap<i64, usize> = HashMap::new();
    for _ in 0..30 {
        *shares
            .entry(pid_of(&call(&caller, "B", "whoami", &Args::new())))
            .or_default() += 1;
    }
    assert_eq!(shares.keys().copied().collect::<HashSet<_>>(), pids);
    assert!(shares.values().all(|&n| n >= 5), "{shares:?}");

    // Dialogues in flight on every publisher at once: each recall must
    // reach the publisher holding its call, or that call never returns.
    let greetings = log::<String>();
    let mut dialogues = Vec::new();
    for i in 0..9 {
        let g = greetings.clone();
        let c = caller.clone();
        let id = caller
            .call("B", "ask", &Args::new(), move |id, ev| match ev {
                CallEvent::Emit { .. } => {
                    c.recall(id, "answer", &arg("name", format!("n{i}")))
                        .unwrap();
                }
                CallEvent::Return { args, .. } => g.borrow_mut().push(
                    args.get("greeting")
                        .and_then(Value::as_str)
                        .unwrap()
                        .to_string(),
                ),
                CallEvent::Error(e) => panic!("dialogue failed: {e}"),
            })
            .unwrap();
        dialogues.push(id);
    }
    until(&lp, "every dialogue returns", || {
        greetings.borrow().len() == 9
    });
    let mut got = greetings.borrow().clone();
    got.sort();
    let mut want: Vec<String> = (0..9).map(|i| format!("Hello, n{i}!")).collect();
    want.sort();
    assert_eq!(got, want);

    // 9 slow calls: 3 at each publisher (fewest in flight first).
    let slow: Vec<_> = (0..9)
        .map(|_| start_call(&caller, "B", "slow", &arg("ms", 60_000)))
        .collect();
    listing(&caller).unwrap();
    publishers[1].signal(libc::SIGKILL);
    until(&lp, "the killed publisher's calls end", || {
        slow.iter().filter(|(_, d)| d.is_set()).count() == 3
    });
    // A round trip through the broker: nothing else ended.
    let left = pid_of(&call(&caller, "B", "whoami", &Args::new()));
    assert_ne!(left, i64::from(publishers[1].child.id()));
    listing(&caller).unwrap();
    let ended: Vec<_> = slow.iter().filter(|(_, d)| d.is_set()).collect();
    assert_eq!(ended.len(), 3, "only the killed publisher's calls end");
    for (_, d) in ended {
        let out = d.take().unwrap();
        assert_eq!(call_error(&out.last).code, ErrorCode::PublisherGone);
    }
    for (id, _) in &slow {
        caller.cancel(*id);
    }
    // The survivors share what comes next.
    let mut after = HashSet::new();
    for _ in 0..10 {
        after.insert(pid_of(&call(&caller, "B", "whoami", &Args::new())));
    }
    let survivors: HashSet<i64> = [0, 2]
        .iter()
        .map(|&i| i64::from(publishers[i].child.id()))
        .collect();
    assert_eq!(after, survivors);
}
