//! Closing: everything pending settled exactly once.

use super::*;

/// A core with one of everything pending: an operation, two calls, a
/// delivery, a subscription and a publication.
fn busy() -> (Fixture, CallId, CallId) {
    let mut f = Fixture::ready();
    let _serve = f.published("S");
    f.subscribe("T");
    let id = f.sent_id("subscribe");
    f.accept(id, Reply::Methods(vec![]));
    f.listing();
    f.out.flush();
    let sent = f.call("S", "m");
    f.out.flush();
    let unsent = f.call("S", "m");
    f.deliver(80, "S", "m");
    f.take_log();
    (f, sent, unsent)
}

#[test]
fn a_failure_settles_everything_once() {
    let (mut f, sent, unsent) = busy();
    let error = Error::new(ErrorCode::BrokerGone, "peer closed the connection");
    let settle = f.core.close(error.clone(), Closer::Failure, &mut f.out);
    let settle = settle.unwrap();
    assert_eq!(settle.publications.len(), 1);
    // The connection is dropped: what it held does not matter.
    f.out.flush();
    assert!(f.core.close(error, Closer::Failure, &mut f.out).is_none());
    for effect in settle.effects {
        f.run(effect);
    }
    let gone = "broker_gone: connection to the broker is closed: peer closed the connection";
    assert_eq!(
        f.take_log(),
        [
            "disconnected broker_gone".to_string(),
            format!("listing {gone}"),
            format!("call {} error broker_gone", sent.0),
            format!("call {} error broker_gone", unsent.0),
            "serve 80 origin 1080 S cancel".to_string(),
        ]
    );
    assert!(!f.core.is_subscribed("T") && !f.core.is_published("S"));
    // Nothing more arrives, and whatever starts now fails.
    f.frame(Frame::Result {
        id: sent.0,
        outcome: Err(Error::new(ErrorCode::Io, "x")),
    });
    f.frame(Frame::Cancel { id: 80 });
    assert!(f.take_log().is_empty());
    let late = f.call("S", "m");
    f.listing_after_close();
    assert_eq!(
        f.take_log(),
        [
            format!("call {} error broker_gone", late.0),
            format!("listing {gone}"),
        ]
    );
    assert!(f.out.flush().is_empty());
}

impl Fixture {
    fn listing_after_close(&mut self) {
        let op = Op::Listing {
            done: self.done("listing"),
        };
        let failed = self
            .core
            .start_op(|id| Frame::Listing { id }, op, &mut self.out);
        failed.expect("fails on a closed client").run();
    }
}

#[test]
fn the_owners_close_takes_back_unsent_calls_and_tells_no_disconnect_handler() {
    let (mut f, sent, unsent) = busy();
    let error = Error::new(ErrorCode::BrokerGone, "closed by this client");
    let settle = f.core.close(error, Closer::Owner, &mut f.out).unwrap();
    assert!(
        f.out.flush().is_empty(),
        "the unsent deliver was taken back"
    );
    for effect in settle.effects {
        f.run(effect);
    }
    let log = f.take_log();
    assert_eq!(log.len(), 4, "{log:?}");
    assert!(log[0].starts_with("listing broker_gone"));
    assert_eq!(log[1], format!("call {} error broker_gone", sent.0));
    assert_eq!(log[2], format!("call {} error broker_gone", unsent.0));
    assert_eq!(log[3], "serve 80 origin 1080 S cancel");
}

#[test]
fn a_close_before_the_handshake_reports_the_connect_failure() {
    let mut f = Fixture::new();
    let error = Error::new(ErrorCode::Io, "cannot connect");
    let settle = f.core.close(error, Closer::Failure, &mut f.out).unwrap();
    for effect in settle.effects {
        f.run(effect);
    }
    assert_eq!(f.take_log(), ["connect failed io"]);
}
