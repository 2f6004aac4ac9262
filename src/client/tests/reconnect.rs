//! Reconnecting, in the core: what a loss ends and keeps, the back-off,
//! the addresses in turn, what is sent once welcomed again, and the
//! republish race.

use super::*;
use crate::client::reconnect::{Lost, ReconnectPolicy, WhileReconnecting};
use crate::client::ConnectionEvent;
use std::time::Duration;

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
            })
        })));
    f.take_log();
    f
}

impl Fixture {
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
    f.lose(0.0);
    f.core.next_attempt();
    f.welcome(8);
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
    f.lose(0.0);
    f.core.next_attempt();
    f.welcome(8);
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
