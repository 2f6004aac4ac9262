//! Entry points for the fuzz targets in `fuzz/` (not part of the API:
//! hidden, and free to change). Each takes arbitrary bytes, must never
//! panic on them, and panics only when two parts of the library that must
//! agree do not.

use crate::value::Args;
use crate::wire::DECODE_FACTOR;
use crate::wire::{decode_body, encode_frame, Frame, FrameDecoder, Inbound, Payload, RoutedKind};

/// The frame decoder fed `bytes` in pieces of the sizes the bytes
/// themselves choose: each body it hands over is decoded in full, and a
/// frame that decodes is encoded again and must decode to itself.
pub fn frame_decoder(bytes: &[u8]) {
    let Some((&first, rest)) = bytes.split_first() else {
        return;
    };
    let mut decoder = FrameDecoder::new(64 * 1024);
    if first & 1 == 1 {
        decoder.limit_first_frame(512);
    }
    let step = usize::from(first >> 1).max(1);
    for piece in rest.chunks(step) {
        decoder.push(piece);
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => round_trip(&frame),
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
}

fn round_trip(frame: &Frame) {
    let mut out = Vec::new();
    if encode_frame(frame, &mut out, usize::MAX).is_ok() {
        let again = decode_body(&out[4..]).expect("an encoded frame decodes");
        assert_eq!(&again, frame, "a frame survives encoding");
    }
}

/// The broker's routed-frame checker against the full decoder: both
/// accept or both refuse `body`, a routed frame names what the full
/// decoding holds, and forwarding it under another id changes only the
/// id.
pub fn routed_checker(body: &[u8]) {
    let full = decode_body(body);
    let inbound = Inbound::parse(body);
    match (inbound, full) {
        (Err(_), Err(_)) => {}
        (Ok(Inbound::Other(frame)), Ok(full)) => assert_eq!(frame, full),
        (Ok(Inbound::Routed(routed)), Ok(full)) => {
            let (id, names) = match &full {
                Frame::Deliver {
                    id,
                    session,
                    method,
                    ..
                } => (*id, Some((session.as_str(), method.as_str()))),
                Frame::Emit { id, .. } | Frame::Recall { id, .. } | Frame::Result { id, .. } => {
                    (*id, None)
                }
                other => panic!("the checker routed a {other:?}"),
            };
            assert_eq!(routed.id, id);
            if let RoutedKind::Deliver { session, method } = routed.kind {
                assert_eq!(Some((session, method)), names);
            }
            let new_id = id.wrapping_mul(31).wrapping_add(7);
            let mut out = Vec::new();
            if routed.encode_with_id(new_id, &mut out, usize::MAX).is_ok() {
                let mut expected = full.clone();
                match &mut expected {
                    Frame::Deliver { id, .. }
                    | Frame::Emit { id, .. }
                    | Frame::Recall { id, .. }
                    | Frame::Result { id, .. } => *id = new_id,
                    _ => unreachable!(),
                }
                assert_eq!(decode_body(&out[4..]), Ok(expected), "only the id changed");
            }
        }
        (inbound, full) => panic!(
            "the checker and the decoder disagree: {:?} vs {:?}",
            inbound.map(|_| ()),
            full.map(|_| ())
        ),
    }
}

/// Args decoding of a payload under a small limit: an error or args,
/// which encode and decode to themselves; accepted or refused as the
/// eager decoder does, with its error, and read as its args.
pub fn args_decoding(payload: &[u8]) {
    let decoded = Payload(payload.to_vec()).decode_within(1 << 20);
    let budget = payload
        .len()
        .saturating_mul(DECODE_FACTOR)
        .saturating_add(4096)
        .min(1 << 20);
    let eager = Payload::decode_eagerly(payload, budget);
    match (&decoded, &eager) {
        (Ok(args), Ok(eager)) => {
            // Floats may be NaN, which is not equal to itself: compare
            // what they print.
            assert_eq!(format!("{args:?}"), format!("{eager:?}"));
            let rebuilt: Args = args.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            let again = Payload::encode(&rebuilt)
                .decode()
                .expect("encoded args decode");
            assert_eq!(Payload::encode(&again), Payload::encode(&rebuilt));
        }
        (Err(e), Err(eager)) => assert_eq!(e, eager),
        _ => panic!("the scan and the decoder disagree: {decoded:?} vs {eager:?}"),
    }
}

/// The broker's core fed `bytes` as one connection's input from its
/// first byte (the handshake, then whatever follows), with the small
/// first-frame limit: it must refuse or serve, never panic.
pub fn handshake(bytes: &[u8]) {
    crate::broker::fuzz_connection(bytes);
}
