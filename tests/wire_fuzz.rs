//! The live broker fed garbage over raw sockets: random frame bodies,
//! random bytes, oversize length prefixes, each split at random points
//! with loop turns in between. Fixed seeds and bounded iteration counts
//! keep it deterministic and quick.
//!
//! Each connection must end closed by the broker, after nothing but the
//! answers to frames that happened to be valid and at most one `Refused`
//! (last); each counts once in `protocol_errors`; nothing panics; and a
//! client connected before, and one connected after, are still served.

#[macro_use]
mod common;

use common::*;
use stagebus::wire::Frame;
use stagebus::*;

/// The broker's frame limit here: small, so that most random length
/// prefixes are over it and the rest are short enough to fill.
const MAX_FRAME: usize = 4096;

const ITERATIONS: u64 = 40;

over_both!(
    random_bodies_before_the_handshake,
    random_bytes_before_the_handshake,
    random_frames_after_the_handshake,
    oversize_length_prefixes,
);

/// A broker with a small frame limit and a client served before the
/// garbage arrives.
fn setup(t: Transport) -> (Harness, Client) {
    let h = Harness::with(t, |c| c.limits.max_frame = MAX_FRAME);
    let before = h.client();
    publish(&before, "Echo", &["echo"], echo()).unwrap();
    (h, before)
}

/// `body` behind a length prefix that announces it exactly.
fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

/// How many kinds of frame there are: a body starting with one of
/// these gets past the kind and into the fields' decoders.
const KINDS: usize = 15;

/// `len` random bytes; half the time the first is a valid frame kind.
fn random_body(rng: &mut XorShift, len: usize) -> Vec<u8> {
    let mut body = rng.bytes(len);
    if rng.below(2) == 0 {
        body[0] = rng.below(KINDS) as u8;
    }
    body
}

/// Sends `bytes` in random pieces of 1 to 16 bytes, with a loop turn
/// after each, until done or the broker closed the connection.
fn send_split(h: &Harness, raw: &mut Raw, bytes: &[u8], rng: &mut XorShift) {
    let mut rest = bytes;
    while !rest.is_empty() && !raw.closed {
        let n = 1 + rng.below(rest.len().min(16));
        if !raw.send_bytes(&h.lp, &rest[..n]) {
            return;
        }
        rest = &rest[n..];
        h.lp.dispatch().unwrap();
        raw.pump();
    }
}

/// Waits for the broker to close `raw`, checks what came before the
/// close, and that exactly one more protocol error was counted.
#[track_caller]
fn assert_refused_and_closed(h: &Harness, raw: &mut Raw, errors_before: u64, what: &str) {
    let frames = raw.closed_after(&h.lp);
    if let Some((last, answers)) = frames.split_last() {
        for f in answers {
            assert!(
                matches!(f, Frame::Result { .. }),
                "{what}: {f:?} before the close"
            );
        }
        match last {
            Frame::Result { .. } => {}
            Frame::Refused { error } => assert_eq!(error.code, ErrorCode::Protocol, "{what}"),
            other => panic!("{what}: {other:?}"),
        }
    }
    assert_eq!(
        h.broker.stats().protocol_errors,
        errors_before + 1,
        "{what}"
    );
}

/// The client from before and a new one are both served.
#[track_caller]
fn assert_still_served(h: &Harness, before: &Client) {
    let after = h.client();
    for c in [before, &after] {
        assert!(c.is_connected());
        let out = call(c, "Echo", "echo", &arg("x", 1));
        assert!(matches!(out.last, CallEvent::Return { .. }), "{out:?}");
    }
    assert_eq!(h.broker.stats().connections, 2);
    assert_eq!(h.broker.stats().sessions, 1);
}

/// One random body behind an honest length: the broker must decode it,
/// and whatever it is, it is not a hello.
fn random_bodies_before_the_handshake(t: Transport) {
    let (h, before) = setup(t);
    for seed in 1..=ITERATIONS {
        let mut rng = XorShift::new(seed);
        let len = 1 + rng.below(64);
        let bytes = framed(&random_body(&mut rng, len));
        let errors = h.broker.stats().protocol_errors;
        let mut raw = Raw::connect(&h.addr);
        send_split(&h, &mut raw, &bytes, &mut rng);
        let frames = raw.closed_after(&h.lp);
        assert!(
            matches!(&frames[..], [] | [Frame::Refused { .. }]),
            "seed {seed}: {frames:?}"
        );
        assert_eq!(h.broker.stats().protocol_errors, errors + 1, "seed {seed}");
    }
    assert_still_served(&h, &before);
}

/// Pure noise, length prefix included. A prefix under the limit leaves
/// the broker waiting for the rest, so the noise is long enough to fill
/// any frame it announces.
fn random_bytes_before_the_handshake(t: Transport) {
    let (h, before) = setup(t);
    for seed in 1..=ITERATIONS {
        let mut rng = XorShift::new(seed * 7919);
        let extra = rng.below(64);
        let bytes = rng.bytes(4 + MAX_FRAME + extra);
        let errors = h.broker.stats().protocol_errors;
        let mut raw = Raw::connect(&h.addr);
        send_split_fast(&h, &mut raw, &bytes, &mut rng);
        let frames = raw.closed_after(&h.lp);
        assert!(
            matches!(&frames[..], [] | [Frame::Refused { .. }]),
            "seed {seed}: {frames:?}"
        );
        assert_eq!(h.broker.stats().protocol_errors, errors + 1, "seed {seed}");
    }
    assert_still_served(&h, &before);
}

/// Like [`send_split`] with bigger pieces (up to 1 KiB), for long noise.
fn send_split_fast(h: &Harness, raw: &mut Raw, bytes: &[u8], rng: &mut XorShift) {
    let mut rest = bytes;
    while !rest.is_empty() && !raw.closed {
        let n = 1 + rng.below(rest.len().min(1024));
        if !raw.send_bytes(&h.lp, &rest[..n]) {
            return;
        }
        rest = &rest[n..];
        h.lp.dispatch().unwrap();
        raw.pump();
    }
}

/// After a proper hello: a run of random frames (some may happen to be
/// valid and get answered), then a frame of `u32::MAX` bytes, which ends
/// it for sure.
fn random_frames_after_the_handshake(t: Transport) {
    let (h, before) = setup(t);
    for seed in 1..=ITERATIONS {
        let mut rng = XorShift::new(seed.wrapping_mul(0x9e37_79b9));
        let mut bytes = Vec::new();
        for _ in 0..1 + rng.below(8) {
            let len = 1 + rng.below(48);
            bytes.extend(framed(&random_body(&mut rng, len)));
        }
        bytes.extend(u32::MAX.to_le_bytes());
        let errors = h.broker.stats().protocol_errors;
        let mut raw = Raw::handshaken(&h.lp, &h.addr);
        send_split(&h, &mut raw, &bytes, &mut rng);
        assert_refused_and_closed(&h, &mut raw, errors, &format!("seed {seed}"));
    }
    assert_still_served(&h, &before);
}

/// Length prefixes over the limit, before and after the handshake: the
/// broker refuses without waiting for (or allocating) the body.
fn oversize_length_prefixes(t: Transport) {
    let (h, before) = setup(t);
    let mut rng = XorShift::new(42);
    for len in [u32::MAX, MAX_FRAME as u32 + 1, 1 << 31] {
        for handshake in [false, true] {
            let what = format!("prefix {len}, handshake {handshake}");
            let errors = h.broker.stats().protocol_errors;
            let mut raw = if handshake {
                Raw::handshaken(&h.lp, &h.addr)
            } else {
                Raw::connect(&h.addr)
            };
            send_split(&h, &mut raw, &len.to_le_bytes(), &mut rng);
            let frames = raw.closed_after(&h.lp);
            match &frames[..] {
                [] => {}
                [Frame::Refused { error }] => {
                    assert_eq!(error.code, ErrorCode::Protocol, "{what}");
                    // Before the hello, the hello's own small limit.
                    let max = if handshake {
                        MAX_FRAME
                    } else {
                        Limits::default().max_hello_frame
                    };
                    assert!(
                        error
                            .message
                            .contains(&format!("exceeds the maximum of {max}")),
                        "{what}: {error}"
                    );
                }
                other => panic!("{what}: {other:?}"),
            }
            assert_eq!(h.broker.stats().protocol_errors, errors + 1, "{what}");
        }
    }
    // The default limit (16 MiB) refuses u32::MAX as well.
    let h2 = Harness::new(t);
    let mut raw = Raw::handshaken(&h2.lp, &h2.addr);
    raw.send_bytes(&h2.lp, &u32::MAX.to_le_bytes());
    assert!(matches!(
        &raw.closed_after(&h2.lp)[..],
        [] | [Frame::Refused { .. }]
    ));
    assert_eq!(h2.broker.stats().protocol_errors, 1);
    assert_still_served(&h, &before);
}
