//! The client's side of liveness: pongs for the broker's pings, pings
//! for a silent broker, a dead broker closed as a disconnect, and the
//! broker's going-away notice.

use super::*;

#[test]
fn a_ping_from_the_broker_is_answered_with_a_pong() {
    let mut f = Fixture::ready();
    f.frame(Frame::Ping);
    assert_eq!(f.out.flush(), [Frame::Pong]);
    assert!(f.take_log().is_empty());
}

#[test]
fn a_silent_broker_is_pinged_then_taken_for_gone() {
    let mut f = Fixture::ready();
    f.call("S", "m");
    f.out.flush();
    for _ in 0..2 {
        assert!(f.core.tick(2, &mut f.out).is_none());
        assert_eq!(f.out.flush(), [Frame::Ping]);
    }
    let Some(Effect::Shut(e)) = f.core.tick(2, &mut f.out) else {
        panic!("the broker should be taken for gone");
    };
    assert_eq!(e.code, ErrorCode::BrokerGone);
    assert!(e.message.contains("2 pings unanswered"), "{e}");
}

#[test]
fn a_broker_heard_from_is_not_pinged() {
    let mut f = Fixture::ready();
    for _ in 0..5 {
        f.core.heard();
        assert!(f.core.tick(2, &mut f.out).is_none());
        assert_eq!(f.out.flush(), []);
    }
}

#[test]
fn no_ping_before_the_handshake() {
    let mut f = Fixture::new();
    f.out.flush();
    for _ in 0..5 {
        assert!(f.core.tick(2, &mut f.out).is_none());
    }
    assert_eq!(f.out.flush(), []);
}

#[test]
fn going_away_closes_with_the_brokers_reason() {
    let mut f = Fixture::ready();
    f.frame(Frame::GoingAway {
        reason: Error::new(ErrorCode::BrokerGone, "maintenance"),
    });
    // The shell carries out the shut: every call then ends broker_gone.
    assert_eq!(
        f.take_log(),
        ["shut broker_gone: the broker is going away: maintenance"]
    );
}
