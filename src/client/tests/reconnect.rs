//! Reconnecting, in the core: what a loss ends and keeps, the back-off,
//! the addresses in turn, what is sent once welcomed again, and the
//! republish race.

use super::*;
use crate::client::reconnect::{Lost, ReconnectPolicy, WhileReconnecting};
use crate::client::signals::{patterns, Signal, SignalFn};
use crate::client::watches::{NameEvent, WatchFn};
use crate::client::ConnectionEvent;
use crate::wire::NameChange;
use std::time::Duration;

fn sessions(names: &[&str]) -> Reply {
    Reply::Sessions(
        names
            .iter()
            .map(|n| SessionInfo {
                name: n.to_string(),
                methods: vec!["m".into()],
            })
            .collect(),
    )
}

fn policy() -> ReconnectPolicy {
    ReconnectPolicy::default()
        .with_delays(Duration::from_millis(100), Duration::from_millis(1000))
        .with_address(Address::Unix("/nonexistent/second.sock".into()))
}

/// A ready fixture with `policy`, logging its connection events.
fn reconnecting(policy: ReconnectPolicy) -> Fixture {
    let mut f = Fixture::new();
    f.core.set_reconnect(Some(policy));
    f.frame(Frame::Welcome {
        version: PROTOCOL_VERSION,
        connection_id: 7,
    });
    let l = f.log.clone();
    let _ = f
        .core
        .on_connection_event(Rc::new(RefCell::new(move |e: &ConnectionEvent| {
            l.borrow_mut().push(match e {
                ConnectionEvent::Disconnected(e) => format!("event disconnected {}", e.code),
                ConnectionEvent::Reconnected(i) => format!("event reconnected {}", i.connection_id),
                ConnectionEvent::RepublishFailed { session, error } => {
                    format!("event republish_failed {session} {}", error.code)
                }
                ConnectionEvent::RestoreFailed { what, error } => {
                    format!("event restore_failed {what} {}", error.code)
                }
            })
        })));
    f.take_log();
    f
}

impl Fixture {
    /// Adds a match of `session` and `signal`, logging its signals as
    /// `signal SESSION SIGNAL`; its id.
    fn add_match(&mut self, session: &str, signal: &str) -> u64 {
        let l = self.log.clone();
        let f: SignalFn = Rc::new(RefCell::new(move |s: &Signal| {
            l.borrow_mut()
                .push(format!("signal {} {}", s.session, s.signal))
        }));
        let parsed = patterns(session, signal).unwrap();
        let texts = (session.to_string(), signal.to_string());
        let done = self.done("add_match");
        let (id, failed) = self.core.add_match(parsed, texts, f, done, &mut self.out);
        assert!(failed.is_none());
        id
    }

    /// Watches `pattern`, logging its events as `name KIND NAME`; its id.
    fn watch(&mut self, pattern: &str) -> u64 {
        let l = self.log.clone();
        let f: WatchFn = Rc::new(RefCell::new(move |e: &NameEvent| {
            l.borrow_mut().push(match e {
                NameEvent::Present { name, .. } => format!("name present {name}"),
                NameEvent::Appeared { name, .. } => format!("name appeared {name}"),
                NameEvent::OwnerChanged { name, .. } => format!("name owner {name}"),
                NameEvent::Gone { name, reason } => format!("name gone {name} {}", reason.code),
            })
        }));
        let done = self.done("watch");
        let (id, failed) = self.core.watch(pattern, f, done, &mut self.out);
        assert!(failed.is_none());
        id
    }

    fn signal(&mut self, session: &str, signal: &str) {
        self.frame(Frame::Signal {
            session: session.into(),
            signal: signal.into(),
            payload: payload(1),
        });
    }

    fn name_changed(&mut self, watch: u64, name: &str, change: NameChange) {
        self.frame(Frame::NameChanged {
            watch,
            name: name.into(),
            change,
        });
    }

    /// Loses the connection; the delay before the next attempt.
    fn lose(&mut self, random: f64) -> Duration {
        let error = Error::broker_gone("connection reset");
        match self.core.lost(error, false, random, &mut self.out) {
            Lost::Retry { effects, delay } => {
                for effect in effects {
                    self.run(effect);
                }
                delay
            }
            Lost::Closed(settle) => {
                for effect in settle.map(|s| s.effects).unwrap_or_default() {
                    self.run(effect);
                }
                Duration::MAX
            }
        }
    }

    /// Loses the connection and is welcomed again as `connection_id`;
    /// the log and the outbox keep what that did.
    fn reconnect(&mut self, connection_id: u64) {
        self.lose(0.0);
        self.core.next_attempt();
        self.welcome(connection_id);
    }

    fn welcome(&mut self, connection_id: u64) {
        self.frame(Frame::Welcome {
            version: PROTOCOL_VERSION,
            connection_id,
        });
    }
}

#[test]
fn back_off_doubles_up_to_the_maximum_with_jitter_taken_off() {
    let p =
        ReconnectPolicy::default().with_delays(Duration::from_millis(100), Duration::from_secs(1));
    assert_eq!(p.delay(1, 0.0), Duration::from_millis(100));
    assert_eq!(p.delay(2, 0.0), Duration::from_millis(200));
    assert_eq!(p.delay(4, 0.0), Duration::from_millis(800));
    assert_eq!(p.delay(5, 0.0), Duration::from_secs(1));
    assert_eq!(p.delay(u32::MAX, 0.0), Duration::from_secs(1));
    // The default jitter takes up to a fifth off.
    let d = p.delay(1, 0.999);
    assert!(
        d > Duration::from_millis(80) && d < Duration::from_millis(100),
        "{d:?}"
    );
}

#[test]
fn a_loss_ends_calls_in_flight_once_and_keeps_publications_and_subscriptions() {
    let mut f = reconnecting(policy());
    let _serve = f.published("Svc");
    f.subscribe("Other");
    let id = f.sent_id("subscribe");
    f.accept(id, Reply::Methods(vec!["m".into()]));
    f.take_log();
    let call = f.call("Other", "m");
    f.deliver(50, "Svc", "m");
    f.out.flush();
    f.take_log();
    assert_eq!(f.lose(0.0), Duration::from_millis(100));
    assert_eq!(
        f.take_log(),
        [
            "event disconnected broker_gone".to_string(),
            format!("call {} error broker_gone", call.0),
            "serve 50 origin 1050 Svc cancel".into(),
        ]
    );
    assert!(!f.core.is_closed() && f.core.connection_id().is_none());
    assert!(f.core.is_published("Svc") && f.core.is_subscribed("Other"));
    // The next attempt goes to the next address.
    assert_eq!(
        f.core.next_attempt(),
        Some(Address::Unix("/nonexistent/second.sock".into()))
    );
}

#[test]
fn calls_made_while_reconnecting_are_held_and_sent_after_the_restore() {
    let mut f = reconnecting(policy());
    let _serve = f.published("Svc");
    f.subscribe("Other");
    let id = f.sent_id("subscribe");
    f.accept(id, Reply::Methods(vec!["m".into()]));
    f.lose(0.5);
    let held = f.call("Other", "m");
    f.listing();
    assert!(
        f.out.flush().is_empty(),
        "nothing leaves while not connected"
    );
    f.core.next_attempt();
    f.take_log();
    f.welcome(8);
    assert_eq!(f.take_log(), ["event reconnected 8"]);
    let kinds: Vec<&str> = f.out.frames.iter().map(|(_, fr)| fr.kind_name()).collect();
    assert_eq!(kinds, ["publish", "subscribe_wait", "deliver", "listing"]);
    match &f.out.frames[2].1 {
        Frame::Deliver { id, .. } => assert_eq!(*id, held.0),
        other => panic!("{other:?}"),
    }
    // The held call is an ordinary call now: cancelled, it is taken back.
    assert!(f.core.cancel(held, &mut f.out).is_some());
    assert_eq!(f.out.frames.len(), 3);
}

#[test]
fn fail_fast_fails_calls_and_operations_at_once_while_reconnecting() {
    let mut f = reconnecting(policy().with_buffering(WhileReconnecting::FailFast, 10));
    f.lose(0.0);
    f.take_log();
    let call = f.call("Svc", "m");
    assert_eq!(f.take_log(), [format!("call {} error broker_gone", call.0)]);
    let failed = f.core.start_op(
        |id| Frame::Listing { id },
        Op::Listing {
            done: f.done("listing"),
        },
        &mut f.out,
    );
    failed.expect("fails at once").run();
    assert!(f.take_log()[0].starts_with("listing broker_gone"));
}

#[test]
fn a_republish_finding_its_name_held_retries_then_reports() {
    let mut policy = policy();
    policy.republish_window = Duration::from_secs(60);
    let mut f = reconnecting(policy);
    let _serve = f.published("Svc");
    f.reconnect(8);
    f.take_log();
    let id = f.sent_id("publish");
    let held = Error::new(ErrorCode::AlreadyExists, "Session 'Svc' already exists");
    f.frame(Frame::Result {
        id,
        outcome: Err(held.clone()),
    });
    assert_eq!(f.take_log(), ["retry Svc"]);
    assert!(f.core.is_published("Svc"));

    // With the window closed, the failure is reported and the session
    // is no longer this client's.
    let mut policy = self::policy();
    policy.republish_window = Duration::ZERO;
    let mut f = reconnecting(policy);
    let _serve = f.published("Svc");
    f.reconnect(8);
    f.take_log();
    let id = f.sent_id("publish");
    f.frame(Frame::Result {
        id,
        outcome: Err(held),
    });
    assert_eq!(
        f.take_log(),
        ["release", "event republish_failed Svc already_exists"]
    );
    assert!(!f.core.is_published("Svc"));
}

#[test]
fn attempts_run_out_and_the_client_closes_with_its_disconnect_handler() {
    let mut f = reconnecting(policy().with_max_attempts(Some(1)));
    f.lose(0.0);
    f.core.next_attempt();
    f.take_log();
    assert_eq!(f.lose(0.0), Duration::MAX);
    assert_eq!(f.take_log(), ["disconnected broker_gone"]);
    assert!(f.core.is_closed());
}

#[test]
fn a_refused_handshake_is_never_retried() {
    let mut f = reconnecting(policy());
    let e = Error::new(ErrorCode::Refused, "bad token");
    assert!(matches!(
        f.core.lost(e, true, 0.0, &mut f.out),
        Lost::Closed(Some(_))
    ));
    assert!(f.core.is_closed());
}

#[test]
fn a_reconnect_adds_matches_again_and_their_handlers_hear_new_signals() {
    let mut f = reconnecting(policy());
    f.add_match("Svc", "tick*");
    let id = f.sent_id("add_match");
    f.accept(id, Reply::Done);
    f.signal("Svc", "tick1");
    assert_eq!(f.take_log(), ["add_match ok ()", "signal Svc tick1"]);
    f.reconnect(8);
    f.take_log();
    let frames = f.out.flush();
    let again = match frames.as_slice() {
        [Frame::AddMatch {
            id,
            session,
            signal,
        }] => {
            assert_eq!((session.as_str(), signal.as_str()), ("Svc", "tick*"));
            *id
        }
        other => panic!("{other:?}"),
    };
    f.accept(again, Reply::Done);
    assert!(f.take_log().is_empty(), "a renewed match reports nothing");
    f.signal("Svc", "tick2");
    f.signal("Svc", "other");
    assert_eq!(f.take_log(), ["signal Svc tick2"]);
}

#[test]
fn a_match_the_broker_refuses_again_ends_with_a_connection_event() {
    let mut f = reconnecting(policy());
    f.add_match("*", "*");
    let id = f.sent_id("add_match");
    f.accept(id, Reply::Done);
    f.reconnect(8);
    f.take_log();
    let again = f.sent_id("add_match");
    f.frame(Frame::Result {
        id: again,
        outcome: Err(Error::new(ErrorCode::LimitExceeded, "too many matches")),
    });
    assert_eq!(
        f.take_log(),
        ["event restore_failed signal match '*' '*' limit_exceeded"]
    );
    f.signal("Svc", "tick");
    assert!(f.take_log().is_empty());
    // Not restored on the next reconnect either.
    f.reconnect(9);
    assert!(f.out.flush().is_empty());
}

#[test]
fn a_match_or_watch_unconfirmed_at_the_loss_ends_with_it_and_is_not_restored() {
    let mut f = reconnecting(policy());
    f.add_match("Svc", "tick");
    f.watch("Svc");
    f.out.flush();
    f.lose(0.0);
    let log = f.take_log();
    for op in ["add_match", "watch"] {
        let failed = format!("{op} broker_gone");
        assert!(log.iter().any(|l| l.starts_with(&failed)), "{log:?}");
    }
    f.core.next_attempt();
    f.welcome(8);
    assert!(f.out.flush().is_empty());
}

#[test]
fn a_reconnect_renews_watches_reporting_names_gone_meanwhile_then_the_current_state() {
    let mut f = reconnecting(policy());
    let watch = f.watch("Svc*");
    let id = f.sent_id("watch");
    assert_eq!(id, watch);
    f.accept(id, sessions(&["SvcA", "SvcB"]));
    f.name_changed(watch, "SvcC", NameChange::Appeared { methods: vec![] });
    assert_eq!(
        f.take_log(),
        [
            "name present SvcA",
            "name present SvcB",
            "watch ok ()",
            "name appeared SvcC"
        ]
    );
    f.reconnect(8);
    f.take_log();
    let again = f.sent_id("watch");
    assert_ne!(again, watch, "watched again under a new wire id");
    f.accept(again, sessions(&["SvcB", "SvcD"]));
    assert_eq!(
        f.take_log(),
        [
            "name gone SvcA publisher_gone",
            "name gone SvcC publisher_gone",
            "name present SvcB",
            "name present SvcD"
        ]
    );
    // Changes come under the new wire id; the old one is nobody's.
    f.name_changed(watch, "SvcE", NameChange::Appeared { methods: vec![] });
    f.name_changed(again, "SvcA", NameChange::Appeared { methods: vec![] });
    assert_eq!(f.take_log(), ["name appeared SvcA"]);
    // The program still names the watch by its first id.
    assert_eq!(f.core.watchers.confirmed(), [(watch, "Svc*".to_string())]);
}

#[test]
fn everything_standing_is_replayed_in_one_pass_then_what_was_held() {
    let mut f = reconnecting(policy());
    let _serve = f.published("Svc");
    f.subscribe("Other");
    let id = f.sent_id("subscribe");
    f.accept(id, Reply::Methods(vec!["m".into()]));
    f.add_match("Other", "*");
    let id = f.sent_id("add_match");
    f.accept(id, Reply::Done);
    f.watch("*");
    let id = f.sent_id("watch");
    f.accept(id, sessions(&[]));
    f.lose(0.0);
    f.listing();
    f.core.next_attempt();
    f.welcome(8);
    let kinds: Vec<&str> = f.out.frames.iter().map(|(_, fr)| fr.kind_name()).collect();
    assert_eq!(
        kinds,
        ["publish", "subscribe_wait", "add_match", "watch", "listing"]
    );
}
