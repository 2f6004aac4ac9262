//! Name watches (issue 14 item 2): the current state at once, then
//! appeared (with methods), owner changed and gone (with the reason),
//! for one name, a prefix or every name. The wait for a name
//! (`subscribe_waiting`) rides on the same watches.

#[macro_use]
mod common;
mod support;

use common::*;
use stagebus::*;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

over_both!(
    a_watch_started_before_and_after_a_publish,
    one_name_a_prefix_and_all_see_only_theirs,
    unwatch_and_close_end_a_watch,
    waiting_subscribes_and_watches_share_one_mechanism,
);

type Events = Rc<RefCell<Vec<String>>>;

/// One line per event: `present A [m]`, `gone A publisher_gone`.
fn line(e: &NameEvent) -> String {
    match e {
        NameEvent::Present { name, methods } => format!("present {name} {methods:?}"),
        NameEvent::Appeared { name, methods } => format!("appeared {name} {methods:?}"),
        NameEvent::OwnerChanged { name, methods } => format!("owner {name} {methods:?}"),
        NameEvent::Gone { name, reason } => format!("gone {name} {}", reason.code),
    }
}

/// Starts a watch and waits until its current state was reported.
#[track_caller]
fn watch(c: &Client, pattern: &str) -> (WatchId, Events) {
    let events: Events = Rc::default();
    let e = events.clone();
    let done = Slot::new();
    let d = done.clone();
    let ev = events.clone();
    let id = c
        .watch(
            pattern,
            move |event| e.borrow_mut().push(line(event)),
            move |r| {
                ev.borrow_mut().push("done".into());
                d.set(r)
            },
        )
        .unwrap();
    wait(c.event_loop(), &done).unwrap();
    (id, events)
}

fn a_watch_started_before_and_after_a_publish(t: Transport) {
    let h = Harness::new(t);
    let w = h.client();
    let (_, before) = watch(&w, "Svc");
    assert_eq!(*before.borrow(), ["done"], "nothing is published yet");
    let p = h.client();
    publish(&p, "Svc", &["a", "b"], echo()).unwrap();
    let (_, after) = watch(&w, "Svc");
    assert_eq!(
        *after.borrow(),
        [r#"present Svc ["a", "b"]"#, "done"],
        "the current state first"
    );
    rescind(&p, "Svc").unwrap();
    publish(&p, "Svc", &["c"], echo()).unwrap();
    p.close();
    h.until("both watches saw it all", || {
        before.borrow().len() == 5 && after.borrow().len() == 5
    });
    let changes = [
        r#"appeared Svc ["a", "b"]"#,
        "gone Svc no_such_session",
        r#"appeared Svc ["c"]"#,
        "gone Svc publisher_gone",
    ];
    assert_eq!(before.borrow()[1..], changes);
    assert_eq!(after.borrow()[2..], changes[1..]);
}

fn one_name_a_prefix_and_all_see_only_theirs(t: Transport) {
    let h = Harness::new(t);
    let p = h.client();
    publish(&p, "app.one", &["m"], echo()).unwrap();
    publish(&p, "other", &["m"], echo()).unwrap();
    let w = h.client();
    let (_, one) = watch(&w, "app.one");
    let (_, prefix) = watch(&w, "app.*");
    let (_, all) = watch(&w, "*");
    assert_eq!(*one.borrow(), [r#"present app.one ["m"]"#, "done"]);
    assert_eq!(*prefix.borrow(), [r#"present app.one ["m"]"#, "done"]);
    assert_eq!(
        *all.borrow(),
        [r#"present app.one ["m"]"#, r#"present other ["m"]"#, "done"]
    );
    publish(&p, "app.two", &["m"], echo()).unwrap();
    publish(&p, "zzz", &["m"], echo()).unwrap();
    listing(&w).unwrap();
    assert_eq!(one.borrow().len(), 2);
    assert_eq!(prefix.borrow()[2..], [r#"appeared app.two ["m"]"#]);
    assert_eq!(
        all.borrow()[3..],
        [r#"appeared app.two ["m"]"#, r#"appeared zzz ["m"]"#]
    );
    assert_eq!(h.broker.stats().name_watches, 3);
    for bad in ["", "a*b", "**"] {
        let e = w.watch(bad, |_| {}, |_| panic!("no callback")).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument, "{bad:?}");
    }
}

fn unwatch_and_close_end_a_watch(t: Transport) {
    let h = Harness::new(t);
    let w = h.client();
    let (id, events) = watch(&w, "*");
    let done = Slot::new();
    w.unwatch(id, done.setter()).unwrap();
    wait(&h.lp, &done).unwrap();
    assert_eq!(
        w.unwatch(id, |_| {}).unwrap_err().code,
        ErrorCode::InvalidArgument
    );
    let p = h.client();
    publish(&p, "Svc", &["m"], echo()).unwrap();
    listing(&w).unwrap();
    assert_eq!(*events.borrow(), ["done"]);
    assert_eq!(h.broker.stats().name_watches, 0);
    let _kept = watch(&w, "*");
    assert_eq!(h.broker.stats().name_watches, 1);
    w.close();
    h.until("the broker forgets the closed client's watch", || {
        h.broker.stats().name_watches == 0
    });
    let closed = Slot::new();
    w.watch("*", |_| {}, closed.setter()).unwrap();
    assert_eq!(
        wait(&h.lp, &closed).unwrap_err().code,
        ErrorCode::BrokerGone
    );
}

fn waiting_subscribes_and_watches_share_one_mechanism(t: Transport) {
    let h = Harness::new(t);
    let w = h.client();
    let (_, events) = watch(&w, "Svc");
    let waited = Slot::new();
    w.subscribe_waiting("Svc", Duration::from_secs(30), waited.setter());
    h.until("the broker holds the wait", || {
        h.broker.stats().waiting_subscribes == 1
    });
    // Counted apart: the wait is no client watch.
    assert_eq!(h.broker.stats().name_watches, 1);
    let p = h.client();
    publish(&p, "Svc", &["m"], echo()).unwrap();
    assert_eq!(wait(&h.lp, &waited).unwrap(), ["m"]);
    h.until("the watch saw the same publish", || {
        events.borrow().len() == 2
    });
    assert_eq!(h.broker.stats().waiting_subscribes, 0);
    assert!(w.is_subscribed("Svc"));
}

/// The command line: `stagebus watch` and `stagebus listen` print one
/// JSON line per change and per signal; the served demo stage's
/// `announce` emits `announced`, also when called one-way
/// (`stagebus call --oneway`); a `serve` killed with -9 is gone with
/// `publisher_gone`.
#[test]
fn watch_and_listen_on_the_command_line() {
    use std::process::Command;
    use support::Proc;
    let cli = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stagebus"));
        cmd.args(args);
        cmd
    };
    let mut broker = Proc::spawn(
        "broker",
        &mut cli(&["broker", "--listen", "tcp://127.0.0.1:0"]),
    );
    let line = broker.wait_line("its address", |l| l.starts_with("listening on "));
    let addr = line["listening on ".len()..].to_string();
    let mut watch = Proc::spawn("watch", &mut cli(&["watch", "--broker", &addr, "Demo*"]));
    let mut listen = Proc::spawn(
        "listen",
        &mut cli(&["listen", "--broker", &addr, "Demo", "announced"]),
    );
    // Each says on stderr when the broker confirmed it.
    for p in [&watch, &listen] {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !p.stderr.lock().unwrap().contains("in place on") {
            assert!(std::time::Instant::now() < deadline, "{}", p.transcript());
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
    let mut serve = Proc::spawn(
        "serve",
        &mut cli(&["serve", "--broker", &addr, "--name", "Demo"]),
    );
    serve.wait_line("that it serves", |l| l.starts_with("serving Demo"));
    let methods = r#"["echo","count","ask","slow","whoami","announce"]"#;
    watch.wait_line("the appearance", |l| {
        l == format!(r#"{{"event":"appeared","name":"Demo","methods":{methods}}}"#)
    });
    let mut call = Proc::spawn(
        "call",
        &mut cli(&["call", "--broker", &addr, "Demo", "announce", "text=hi"]),
    );
    call.wait_line("the return", |l| {
        l == r#"{"type":"return","args":{"text":"hi"}}"#
    });
    assert!(call.wait_exit().success(), "{}", call.transcript());
    listen.wait_line("the signal", |l| {
        l == r#"{"session":"Demo","signal":"announced","args":{"text":"hi"}}"#
    });
    let mut post = Proc::spawn(
        "call --oneway",
        &mut cli(&[
            "call", "--broker", &addr, "--oneway", "Demo", "announce", "text=ow",
        ]),
    );
    assert!(post.wait_exit().success(), "{}", post.transcript());
    assert_eq!(post.output(), "", "nothing comes back");
    listen.wait_line("the one-way call's signal", |l| {
        l == r#"{"session":"Demo","signal":"announced","args":{"text":"ow"}}"#
    });
    // A watch started now gets the current state first.
    let mut late = Proc::spawn("late watch", &mut cli(&["watch", "--broker", &addr]));
    late.wait_line("the current state", |l| {
        l == format!(r#"{{"event":"present","name":"Demo","methods":{methods}}}"#)
    });
    serve.signal(libc::SIGKILL);
    for w in [&mut watch, &mut late] {
        w.wait_line("the end", |l| {
            l.starts_with(r#"{"event":"gone","name":"Demo","reason":{"code":"publisher_gone""#)
        });
    }
    // Stopped by SIGTERM, they exit 0.
    for p in [&mut watch, &mut listen, &mut late] {
        p.terminate();
        assert!(p.wait_exit().success(), "{}", p.transcript());
    }
}
