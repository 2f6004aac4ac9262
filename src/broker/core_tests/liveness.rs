//! Liveness: pings on idle connections, a silent peer closed like a
//! disconnect, the deadline of a frame in progress.

use super::*;
use std::time::Duration;

fn pinging() -> Harness {
    let limits = Limits {
        ping_interval: Duration::from_millis(100),
        ping_max: 2,
        frame_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    Harness::with(config(limits, None))
}

#[test]
fn an_idle_connection_is_pinged_and_a_busy_one_is_not() {
    let mut h = pinging();
    let c = h.client();
    h.effects();
    // Heard from since the handshake: no ping, the tick is re-armed.
    h.core.read_done(c, true, false);
    h.core.tick(c);
    assert_eq!(h.frames(c), []);
    let tick = Effect::ArmTick {
        conn: c,
        after: Duration::from_millis(100),
    };
    assert_eq!(h.effects(), std::slice::from_ref(&tick));
    // Silent for an interval: pinged.
    h.core.tick(c);
    assert_eq!(h.frames(c), [Frame::Ping]);
    assert_eq!(h.effects(), [tick]);
}

#[test]
fn a_peer_that_answers_its_pings_stays() {
    let mut h = pinging();
    let c = h.client();
    for _ in 0..10 {
        h.core.tick(c);
        assert_eq!(h.frames(c), [Frame::Ping]);
        h.send(c, &Frame::Pong);
        h.core.read_done(c, true, false);
        h.core.tick(c);
        assert_eq!(h.frames(c), []);
    }
    assert!(h.closes().is_empty());
}

#[test]
fn a_silent_publisher_is_closed_like_a_disconnect() {
    let mut h = pinging();
    let p = h.publisher("S", &["m"]);
    let c = h.client();
    h.send(c, &deliver(7, "S", "m"));
    h.frames(p);
    h.effects();
    for _ in 0..2 {
        h.core.tick(p);
        assert_eq!(h.frames(p), [Frame::Ping]);
    }
    h.core.tick(p);
    assert_eq!(h.closes(), [(p, CloseReason::Unresponsive)]);
    let got = h.frames(c);
    let [Frame::Result {
        id: 7,
        outcome: Err(e),
    }] = got.as_slice()
    else {
        panic!("expected the call to fail, got {got:?}");
    };
    assert_eq!(e.code, ErrorCode::PublisherGone);
    assert_eq!(h.core.stats().sessions, 0);
    // A tick of the gone connection does nothing.
    h.core.tick(p);
    assert!(h.effects().is_empty());
}

#[test]
fn a_ping_is_answered_with_a_pong() {
    let mut h = pinging();
    let c = h.client();
    h.send(c, &Frame::Ping);
    assert_eq!(h.frames(c), [Frame::Pong]);
}

#[test]
fn a_client_may_not_send_going_away() {
    let mut h = pinging();
    let c = h.client();
    h.send(
        c,
        &Frame::GoingAway {
            reason: Error::new(ErrorCode::BrokerGone, "x"),
        },
    );
    assert!(matches!(h.frames(c).as_slice(), [Frame::Refused { .. }]));
}

#[test]
fn a_frame_in_progress_has_a_deadline() {
    let mut h = pinging();
    let c = h.client();
    h.effects();
    h.core.read_done(c, false, true);
    let arm = Effect::ArmDeadline {
        conn: c,
        after: Duration::from_millis(300),
    };
    assert_eq!(h.effects(), std::slice::from_ref(&arm));
    // Still in a frame: armed once only.
    h.core.read_done(c, false, true);
    assert!(h.effects().is_empty());
    // The frame completed: disarmed.
    h.core.read_done(c, true, false);
    assert_eq!(h.effects(), [Effect::DisarmDeadline { conn: c }]);
    h.core.read_done(c, false, true);
    assert_eq!(h.effects(), [arm]);
    h.core.deadline_passed(c);
    assert_eq!(h.closes(), [(c, CloseReason::FrameTimeout)]);
}

#[test]
fn a_busy_stream_whose_reads_end_inside_frames_is_not_closed() {
    let mut h = pinging();
    let c = h.client();
    h.effects();
    h.core.read_done(c, true, true);
    let arm = Effect::ArmDeadline {
        conn: c,
        after: Duration::from_millis(300),
    };
    assert_eq!(h.effects(), std::slice::from_ref(&arm));
    // Frames completed meanwhile: the deadline is renewed, not fatal.
    h.core.read_done(c, true, true);
    h.core.deadline_passed(c);
    assert_eq!(h.effects(), std::slice::from_ref(&arm));
    // Then nothing more completes: closed at the renewed deadline.
    h.core.read_done(c, false, true);
    h.core.deadline_passed(c);
    assert_eq!(h.closes(), [(c, CloseReason::FrameTimeout)]);
}
