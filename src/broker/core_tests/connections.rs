//! Connections: the handshake, broken input, limits, output, closes.

use super::*;

#[test]
fn a_good_hello_is_welcomed_and_its_deadline_disarmed() {
    let mut h = Harness::new();
    let id = h.connect();
    assert_eq!(
        h.effects(),
        [Effect::ArmDeadline {
            conn: id,
            after: Limits::default().handshake_timeout
        }]
    );
    h.send(id, &hello(None));
    assert_eq!(
        h.frames(id),
        [Frame::Welcome {
            version: PROTOCOL_VERSION,
            connection_id: id
        }]
    );
    assert_eq!(
        h.effects(),
        [
            Effect::DisarmDeadline { conn: id },
            Effect::ArmTick {
                conn: id,
                after: Limits::default().ping_interval
            }
        ]
    );
    // A deadline that fires all the same closes nothing.
    h.core.deadline_passed(id);
    assert!(h.effects().is_empty());
    assert_eq!(h.core.stats().connections, 1);
}

#[test]
fn a_refused_hello_is_told_why_then_closed_with_that_reason() {
    let cases = [
        (hello(Some("wrong")), ErrorCode::Refused, false),
        (hello(None), ErrorCode::Refused, false),
        (
            Frame::Hello {
                magic: MAGIC,
                version: PROTOCOL_VERSION + 1,
                token: Some("secret".into()),
            },
            ErrorCode::Refused,
            false,
        ),
        (
            Frame::Hello {
                magic: *b"XXXX",
                version: PROTOCOL_VERSION,
                token: Some("secret".into()),
            },
            ErrorCode::Protocol,
            true,
        ),
        (Frame::Listing { id: 1 }, ErrorCode::Protocol, true),
        (deliver(1, "S", "m"), ErrorCode::Protocol, true),
    ];
    for (frame, code, protocol) in cases {
        let mut h = Harness::with(config(Limits::default(), Some("secret")));
        let id = h.connect();
        h.effects();
        h.send(id, &frame);
        let got = h.frames(id);
        let [Frame::Refused { error }] = got.as_slice() else {
            panic!("{frame:?}: expected a refusal, got {got:?}");
        };
        assert_eq!(error.code, code, "{frame:?}");
        let reason = if protocol {
            CloseReason::Protocol(error.clone())
        } else {
            CloseReason::HelloRefused(error.clone())
        };
        assert_eq!(h.closes(), [(id, reason)], "{frame:?}");
        assert_eq!(h.core.stats().protocol_errors, u64::from(protocol));
        assert_eq!(h.core.stats().connections, 0);
    }
    let mut h = Harness::with(config(Limits::default(), Some("secret")));
    let id = h.connect();
    h.send(id, &hello(Some("secret")));
    assert!(matches!(h.frames(id).as_slice(), [Frame::Welcome { .. }]));
}

#[test]
fn a_refused_connection_is_not_read_and_closes_once_its_refusal_is_written() {
    let mut h = Harness::new();
    let id = h.connect();
    h.room = Some(3);
    h.send(id, &Frame::Listing { id: 1 });
    assert!(!h.core.reads(id));
    // Ignored: the connection is finished with.
    h.send(id, &hello(None));
    h.flush();
    assert!(h.closes().is_empty(), "the refusal is not written yet");
    h.room = None;
    h.core.writable(id);
    assert!(matches!(h.frames(id).as_slice(), [Frame::Refused { .. }]));
    assert!(matches!(
        h.closes().as_slice(),
        [(c, CloseReason::Protocol(_))] if *c == id
    ));
}

#[test]
fn no_hello_in_time_closes_the_connection() {
    let mut h = Harness::new();
    let id = h.connect();
    h.effects();
    h.core.deadline_passed(id);
    assert_eq!(h.closes(), [(id, CloseReason::HandshakeTimeout)]);
    assert!(h.frames(id).is_empty(), "closed without a word");
    assert_eq!(h.core.stats().protocol_errors, 0);
}

#[test]
fn broken_framing_is_a_protocol_error_and_a_malformed_frame_too() {
    let mut h = Harness::new();
    let a = h.client();
    let framing = Error::new(ErrorCode::Protocol, "frame of 99 bytes exceeds the maximum");
    h.core.input_ended(a, framing.clone());
    assert_eq!(h.frames(a), [Frame::Refused { error: framing }]);
    let b = h.client();
    let mut bytes = body(&done(1));
    bytes.push(0);
    h.core.receive(b, &bytes);
    let got = h.frames(b);
    assert!(
        matches!(got.as_slice(), [Frame::Refused { error }] if error.code == ErrorCode::Protocol),
        "{got:?}"
    );
    // A client may not send the broker's own frames.
    let c = h.client();
    h.send(c, &hello(None));
    assert!(matches!(h.frames(c).as_slice(), [Frame::Refused { .. }]));
    // Nor a post stamped with a caller (only brokers send those, over
    // federation links): a client cannot pose as another.
    let d = h.client();
    h.send(
        d,
        &Frame::PostFrom {
            id: 1,
            origin: 1,
            timeout_ms: 0,
            session: "S".into(),
            method: "m".into(),
            payload: crate::wire::Payload::default(),
            caller: crate::wire::CallerInfo::default(),
        },
    );
    assert!(matches!(h.frames(d).as_slice(), [Frame::Refused { .. }]));
    assert_eq!(h.core.stats().protocol_errors, 4);
    assert_eq!(h.closes().len(), 4);
}

#[test]
fn limits_on_connections_sessions_names_and_methods() {
    let mut h = Harness::with(config(
        Limits {
            max_connections: 2,
            max_sessions_per_connection: 1,
            max_name: 4,
            max_methods: 1,
            ..Limits::default()
        },
        None,
    ));
    let p = h.client();
    let publish = |id, session: &str, methods: &[&str]| Frame::Publish {
        id,
        session: session.into(),
        methods: methods.iter().map(|m| m.to_string()).collect(),
    };
    h.send(p, &publish(1, "S", &["m"]));
    h.send(p, &publish(2, "T", &["m"]));
    h.send(p, &publish(3, "S", &["m"]));
    let c = h.client();
    h.send(c, &publish(4, "toolong", &["m"]));
    h.send(c, &publish(5, "U", &["a", "b"]));
    h.send(c, &publish(6, "U", &["mmmmm"]));
    let code = |f: &Frame| match f {
        Frame::Result { outcome, .. } => outcome.as_ref().err().map(|e| e.code),
        other => panic!("expected a result, got {other:?}"),
    };
    let codes: Vec<_> = h.frames(p).iter().map(code).collect();
    assert_eq!(
        codes,
        [
            None,
            Some(ErrorCode::LimitExceeded),
            Some(ErrorCode::AlreadyExists)
        ]
    );
    let codes: Vec<_> = h.frames(c).iter().map(code).collect();
    assert_eq!(codes, [Some(ErrorCode::LimitExceeded); 3]);
    assert!(h.core.connect().is_none(), "over the connection limit");
    assert_eq!(h.core.stats().connections, 2);
}

/// A peer that does not read is cut off once its queue is over the
/// limit, and counted once, however many frames found it full.
#[test]
fn a_slow_consumer_is_closed_and_counted_once() {
    let mut h = Harness::with(config(
        Limits {
            max_queued_bytes: 100,
            ..Limits::default()
        },
        None,
    ));
    let p = h.publisher("S", &["m"]);
    let c = h.client();
    h.stalled.push(c);
    let mut delivered = 0;
    for id in 0..20 {
        h.send(c, &deliver(id, "S", "m"));
        delivered += h.frames(p).len();
    }
    assert_eq!(delivered, 20);
    // The caller reads nothing; answers queue up to the limit.
    let mut route = 1;
    while h.core.peers[&c].outbox.queued() <= 100 {
        h.send(p, &done(route));
        route += 1;
        h.flush();
    }
    assert!(
        h.core.reads(c),
        "not over the limit until a frame finds it so"
    );
    assert!(h.closes().is_empty());
    // The publisher goes: every call it still owes fails at once, each a
    // frame for the caller, whose queue is full.
    let gone = Error::new(ErrorCode::BrokerGone, "peer closed the connection");
    h.core.input_ended(p, gone.clone());
    let closes = h.closes();
    assert_eq!(closes.len(), 2, "{closes:?}");
    assert_eq!(closes[0], (p, CloseReason::Ended(gone)));
    assert!(
        matches!(&closes[1], (id, CloseReason::SlowConsumer(e)) if *id == c && e.code == ErrorCode::LimitExceeded),
        "{closes:?}"
    );
    let stats = h.core.stats();
    assert_eq!((stats.slow_consumers, stats.pending_calls), (1, 0));
    assert!(route < 20, "calls were still owed");
    assert!(h.core.routes.is_empty());
}

#[test]
fn output_written_in_pieces_arrives_whole_and_a_failed_write_closes() {
    let mut h = Harness::new();
    let p = h.publisher("S", &["m"]);
    let c = h.client();
    h.room = Some(5);
    for id in 0..4 {
        h.send(c, &deliver(id, "S", "m"));
    }
    let mut got = Vec::new();
    while got.len() < 4 {
        h.core.writable(p);
        got.extend(h.frames(p));
    }
    h.room = None;
    assert!(got.iter().all(|f| matches!(f, Frame::Deliver { .. })));
    h.broken.push(p);
    h.send(c, &deliver(9, "S", "m"));
    let closes = h.closes();
    assert!(
        matches!(closes.as_slice(), [(id, CloseReason::WriteFailed(_))] if *id == p),
        "{closes:?}"
    );
    let failed_calls = h.frames(c);
    assert_eq!(failed_calls.len(), 5, "every call fails publisher_gone");
}

#[test]
fn shutting_down_tells_every_client_it_is_going_away_and_forgets_everything() {
    let mut h = Harness::new();
    let p = h.publisher("S", &["m"]);
    let c = h.client();
    let waiting = h.connect();
    // The publisher does not read: its deliver stays queued.
    h.stalled.push(p);
    h.send(c, &deliver(1, "S", "m"));
    h.effects();
    h.core.shut_down("closing");
    let mut lingering = Vec::new();
    for effect in h.effects() {
        match effect {
            // Not handshaken: nothing to tell.
            Effect::Close { conn, reason } => {
                assert_eq!((conn, reason), (waiting, CloseReason::BrokerClosed));
            }
            Effect::Linger { conn, rest } => {
                let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME);
                decoder.push(&rest);
                let mut frames = Vec::new();
                while let Some(f) = decoder.next_frame().unwrap() {
                    frames.push(f);
                }
                // The notice comes last, after what was queued already
                // (the publisher's deliver is still written).
                let Some(Frame::GoingAway { reason }) = frames.last() else {
                    panic!("no notice last: {frames:?}");
                };
                assert_eq!(reason.code, ErrorCode::BrokerGone);
                assert_eq!(reason.message, "closing");
                lingering.push((conn, frames.len()));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    lingering.sort_unstable();
    assert_eq!(lingering, [(p, 2), (c, 1)]);
    assert_eq!(
        h.core.stats(),
        BrokerStats {
            calls: 1,
            ..BrokerStats::default()
        },
        "nothing left, nothing counted but the call delivered"
    );
    assert!(h.core.routes.is_empty());
    assert!(!h.core.take_flush_request());
}
