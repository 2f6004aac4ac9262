//! What a reconnect restores besides publications and subscriptions:
//! signal matches and name watches. A real `stagebus broker` is killed
//! with -9 and restarted on the same Unix socket; the listener and the
//! watcher reconnect by themselves, their matches and watches are
//! registered again, a listener hears signals emitted after the restart
//! and a watcher sees the name go and come back. The same through
//! `stagebus listen --reconnect` and `stagebus watch --reconnect`.
//!
//! The publisher runs on a loop of its own, turned only when the test
//! says so: the watcher is back before it, so the name's absence after
//! the restart is certain, not a race. Every wait is bounded; nothing
//! asserts a duration.

#[macro_use]
mod common;
mod support;

use common::*;
use stagebus::*;
use std::process::Command;
use std::time::{Duration, Instant};
use support::Proc;

/// A quick policy for tests: short delays, forever.
fn quick() -> ReconnectPolicy {
    ReconnectPolicy::default().with_delays(Duration::from_millis(20), Duration::from_millis(200))
}

fn broker_proc(listen: &str) -> (Proc, String) {
    let mut broker = Proc::spawn(
        "broker",
        Command::new(env!("CARGO_BIN_EXE_stagebus")).args(["broker", "--listen", listen]),
    );
    let line = broker.wait_line("its address", |l| l.starts_with("listening on "));
    (broker, line["listening on ".len()..].to_string())
}

/// A client of `addr` reconnecting with [`quick`], connected.
fn connect(lp: &EventLoop, addr: &Address) -> Client {
    connect_with(lp, addr, ClientConfig::default().with_reconnect(quick()))
}

/// Turns both loops in turn until `cond` holds; fails after [`LIMIT`].
#[track_caller]
fn until_both(lps: [&EventLoop; 2], what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        for lp in lps {
            lp.run_until(Duration::from_millis(5), &mut cond).unwrap();
        }
    }
}

fn describe(e: &NameEvent) -> String {
    match e {
        NameEvent::Present { name, .. } => format!("present {name}"),
        NameEvent::Appeared { name, .. } => format!("appeared {name}"),
        NameEvent::OwnerChanged { name, .. } => format!("owner_changed {name}"),
        NameEvent::Gone { name, reason } => format!("gone {name} {}", reason.code),
    }
}

/// Adds a match of `c` and waits for its confirmation; each signal goes
/// to `heard` as `SESSION SIGNAL`.
fn add_match(c: &Client, session: &str, signal: &str, heard: &Log<String>) -> MatchId {
    let h = heard.clone();
    let on_signal = move |s: &Signal| h.borrow_mut().push(format!("{} {}", s.session, s.signal));
    let added = Slot::new();
    let id = c.add_match(session, signal, on_signal, added.setter());
    wait(c.event_loop(), &added).expect("the match is confirmed");
    id.unwrap()
}

/// Watches `pattern` on `c` and waits for the current state; each event
/// goes to `heard` (see [`describe`]).
fn watch(c: &Client, pattern: &str, heard: &Log<String>) -> WatchId {
    let h = heard.clone();
    let watched = Slot::new();
    let id = c.watch(
        pattern,
        move |e| h.borrow_mut().push(describe(e)),
        watched.setter(),
    );
    wait(c.event_loop(), &watched).expect("the watch is confirmed");
    id.unwrap()
}

/// Removes the match and ends the watch of `c`, waiting for both.
fn stop(c: &Client, matched: MatchId, watched: WatchId) {
    let (removed, unwatched) = (Slot::new(), Slot::new());
    c.remove_match(matched, removed.setter()).unwrap();
    c.unwatch(watched, unwatched.setter()).unwrap();
    wait(c.event_loop(), &removed).expect("the match is removed");
    wait(c.event_loop(), &unwatched).expect("the watch ends");
}

/// The connection events of `c`, as debug text.
fn events(c: &Client) -> Log<String> {
    let events: Log<String> = log();
    let e = events.clone();
    c.on_connection_event(move |ev| e.borrow_mut().push(format!("{ev:?}")));
    events
}

/// Whether a match or watch failed to be restored.
fn restore_failed(events: &Log<String>) -> bool {
    events
        .borrow()
        .iter()
        .any(|e| e.starts_with("RestoreFailed"))
}

/// A broker child on a Unix socket in a fresh directory: restartable on
/// the same address with [`Restartable::restart`].
struct Restartable {
    _dir: TempDir,
    listen: String,
    broker: Option<Proc>,
    /// The address the broker printed.
    address: String,
    addr: Address,
}

impl Restartable {
    fn start(tag: &str) -> Restartable {
        let dir = TempDir::new(tag);
        let listen = format!("unix:{}", dir.path().join("b.sock").display());
        let (broker, address) = broker_proc(&listen);
        let addr = address.parse().unwrap();
        Restartable {
            _dir: dir,
            listen,
            broker: Some(broker),
            address,
            addr,
        }
    }

    /// Kills the broker with -9 (and reaps it).
    fn kill(&mut self) {
        let broker = self.broker.take().expect("a broker runs");
        broker.signal(libc::SIGKILL);
        drop(broker);
    }

    /// Starts a broker again on the same address.
    fn restart(&mut self) {
        let (broker, again) = broker_proc(&self.listen);
        assert_eq!(again, self.address);
        self.broker = Some(broker);
    }

    /// A reconnecting publisher of `session` on `lp` (an echo).
    fn publisher(&self, lp: &EventLoop, session: &str) -> Client {
        let publisher = connect(lp, &self.addr);
        publish(&publisher, session, &["m"], echo()).expect("publish");
        publisher
    }
}

#[test]
fn matches_and_watches_live_through_a_broker_killed_and_restarted() {
    let mut b = Restartable::start("restore");
    let addr = b.addr.clone();
    // The publisher, on its own loop.
    let plp = EventLoop::new().unwrap();
    let publisher = b.publisher(&plp, "SvcA");

    let lp = EventLoop::new().unwrap();
    let listener = connect(&lp, &addr);
    let signals: Log<String> = log();
    let matched = add_match(&listener, "Svc*", "tick*", &signals);
    let listener_events = events(&listener);
    let watcher = connect(&lp, &addr);
    let names: Log<String> = log();
    let watched = watch(&watcher, "Svc*", &names);
    assert_eq!(*names.borrow(), ["present SvcA"]);

    publisher
        .emit_signal("SvcA", "tick1", &Args::new())
        .unwrap();
    until_both([&lp, &plp], "the first signal", || {
        !signals.borrow().is_empty()
    });
    assert_eq!(*signals.borrow(), ["SvcA tick1"]);

    b.kill();
    until(&lp, "the listener and the watcher lost the broker", || {
        !listener.is_connected() && !watcher.is_connected()
    });
    b.restart();

    // The publisher's loop stands still: SvcA is not published yet, and
    // the renewed watch says it went.
    until(&lp, "the watch reports the name gone", || {
        names.borrow().len() == 2
    });
    assert_eq!(names.borrow()[1], "gone SvcA publisher_gone");
    until(&lp, "the listener is back", || {
        listener_events
            .borrow()
            .iter()
            .any(|e| e.starts_with("Reconnected"))
    });

    // The publisher comes back by itself and publishes again: the
    // watcher sees it appear.
    until_both([&lp, &plp], "the name comes back", || {
        names.borrow().len() == 3
    });
    assert_eq!(names.borrow()[2], "appeared SvcA");

    // A signal emitted after the restart reaches the old handler. The
    // listener's match may be renewed a little after its reconnect:
    // emit until one arrives.
    let mut n = 0;
    until_both([&lp, &plp], "a signal after the restart", || {
        n += 1;
        let _ = publisher.emit_signal("SvcA", &format!("tock{n}"), &Args::new());
        let _ = publisher.emit_signal("SvcA", "tick2", &Args::new());
        signals.borrow().iter().any(|s| s == "SvcA tick2")
    });
    assert!(
        signals.borrow().iter().all(|s| !s.contains("tock")),
        "the match's signal pattern still applies: {:?}",
        signals.borrow()
    );
    assert_eq!(
        signals
            .borrow()
            .iter()
            .filter(|s| *s == "SvcA tick1")
            .count(),
        1
    );
    assert!(!restore_failed(&listener_events));

    // The renewed match and watch end as any other.
    let removed = Slot::new();
    listener.remove_match(matched, removed.setter()).unwrap();
    wait(&lp, &removed).expect("the renewed match is removed");
    let unwatched = Slot::new();
    watcher.unwatch(watched, unwatched.setter()).unwrap();
    wait(&lp, &unwatched).expect("the renewed watch ends");
    rescind(&publisher, "SvcA").expect("rescind");
    lp.run_until(Duration::from_millis(100), || false).unwrap();
    assert_eq!(names.borrow().len(), 3, "{:?}", names.borrow());
}

#[test]
fn a_match_or_watch_removed_during_the_outage_is_not_restored() {
    let mut b = Restartable::start("restore-removed");
    let addr = b.addr.clone();
    let lp = EventLoop::new().unwrap();
    let publisher = b.publisher(&lp, "Svc");
    let client = connect(&lp, &addr);
    let events = events(&client);
    let heard: Log<String> = log();
    let matched = add_match(&client, "Svc", "*", &heard);
    let watched = watch(&client, "Svc", &heard);
    assert_eq!(*heard.borrow(), ["present Svc"]);

    b.kill();
    until(&lp, "the client lost the broker", || !client.is_connected());
    // Removed while no broker holds them: done at once, nothing to send.
    stop(&client, matched, watched);

    b.restart();
    until_listed(&client, &["Svc"]);
    let _ = publisher.emit_signal("Svc", "tick", &Args::new());
    // A listing by the emitter after its signal, then one by the
    // client: had the match been renewed, the broker would have
    // forwarded the signal before either answer.
    names(&publisher);
    names(&client);
    assert_eq!(*heard.borrow(), ["present Svc"]);
    assert!(!restore_failed(&events), "{:?}", events.borrow());
}

#[test]
fn cli_listen_and_watch_with_reconnect_live_through_a_broker_killed_and_restarted() {
    let mut b = Restartable::start("restore-cli");
    let address = b.address.clone();
    let lp = EventLoop::new().unwrap();
    let publisher = b.publisher(&lp, "Svc");
    let cli = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stagebus"));
        cmd.args(args).args(["--broker", &address, "--reconnect"]);
        Proc::spawn(args[0], &mut cmd)
    };
    let mut watch = cli(&["watch", "Svc"]);
    let mut listener = cli(&["listen", "Svc", "tick"]);
    watch.wait_line("the current state", |l| {
        l.contains(r#""event":"present","name":"Svc""#)
    });
    listener.wait_stderr("match in place");
    // Turns this loop (the publisher's) until `p` printed a line that
    // `wanted` accepts, emitting a tick of `phase` each turn; the line.
    let until_printed = |p: &mut Proc, phase: i64, wanted: &dyn Fn(&str) -> bool| {
        let deadline = Instant::now() + LIMIT;
        loop {
            let _ = publisher.emit_signal("Svc", "tick", &arg("phase", phase));
            lp.run_until(Duration::from_millis(20), || false).unwrap();
            while let Some(line) = p.try_line() {
                if wanted(&line) {
                    return line;
                }
            }
            assert!(Instant::now() < deadline, "{}", p.transcript());
        }
    };
    until_printed(&mut listener, 1, &|l| l.contains(r#""phase":1"#));

    b.kill();
    b.restart();
    // This loop stands still: the publisher is not back yet.
    watch.wait_line("the name gone meanwhile", |l| {
        l.contains(r#""event":"gone","name":"Svc""#) && l.contains("publisher_gone")
    });
    listener.wait_stderr("reconnected to");
    // Ticks emitted after the restart reach the renewed match (those of
    // before it may still be in the listener's output: phase 1).
    let line = until_printed(&mut listener, 2, &|l| l.contains(r#""phase":2"#));
    assert!(
        line.contains(r#""session":"Svc","signal":"tick""#),
        "{line}"
    );
    until_printed(&mut watch, 2, &|l| {
        l.contains(r#""event":"appeared","name":"Svc""#)
    });
    for p in [&mut watch, &mut listener] {
        p.signal(libc::SIGTERM);
        let (status, stderr) = p.wait();
        assert!(status.success(), "{stderr}");
        assert!(stderr.contains("lost the broker"), "{stderr}");
    }
}
