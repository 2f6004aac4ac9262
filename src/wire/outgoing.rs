//! Frames a client sends on every call, encoded from borrowed parts: a
//! deliver from the caller's session and method names, an emit or a
//! return from the answer's type and its [`Args`], written straight
//! into the output buffer without building an owned [`Frame`] (two
//! strings and a payload allocated, moved and freed per call).
//!
//! The bytes are exactly those of the owned frame (tested below): they
//! are written by hand in bincode's form, naming the same enum variants
//! by the same indices.

use super::codec::{put_bytes, put_varint};
use super::{codec, Frame, Payload, Reply};
use crate::value::Args;
use std::cell::RefCell;

/// [`Frame`]'s variant indices, in its declaration order.
const DELIVER: u32 = 8;
const EMIT: u32 = 9;
const RESULT: u32 = 12;
/// [`Reply::Return`]'s index.
const RETURN: u32 = 3;

/// A frame to send: an owned one, or one of the per-call frames from
/// borrowed parts.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Outgoing<'a> {
    /// Any frame, as it is.
    Frame(&'a Frame),
    /// [`Frame::Deliver`] of `args`.
    Deliver {
        /// See [`Frame::Deliver`].
        id: u64,
        /// See [`Frame::Deliver`].
        origin: u64,
        /// See [`Frame::Deliver`].
        timeout_ms: u32,
        /// The published name.
        session: &'a str,
        /// The method.
        method: &'a str,
        /// Its args, encoded as the frame is.
        args: &'a Args,
    },
    /// [`Frame::Emit`] of `args`.
    Emit {
        /// The route id.
        id: u64,
        /// The response type.
        kind: &'a str,
        /// Its args, encoded as the frame is.
        args: &'a Args,
    },
    /// [`Frame::Result`] with a successful [`Reply::Return`] of `args`.
    Return {
        /// The route id.
        id: u64,
        /// The response type.
        kind: &'a str,
        /// Its args, encoded as the frame is.
        args: &'a Args,
    },
}

impl<'a> From<&'a Frame> for Outgoing<'a> {
    fn from(frame: &'a Frame) -> Outgoing<'a> {
        Outgoing::Frame(frame)
    }
}

impl Outgoing<'_> {
    /// The owned frame of the same bytes (for a frame held while the
    /// client reconnects, and the core's tests).
    pub(crate) fn to_frame(self) -> Frame {
        match self {
            Outgoing::Frame(f) => f.clone(),
            Outgoing::Deliver {
                id,
                origin,
                timeout_ms,
                session,
                method,
                args,
            } => Frame::Deliver {
                id,
                origin,
                timeout_ms,
                session: session.to_string(),
                method: method.to_string(),
                payload: Payload::encode(args),
            },
            Outgoing::Emit { id, kind, args } => Frame::Emit {
                id,
                kind: kind.to_string(),
                payload: Payload::encode(args),
            },
            Outgoing::Return { id, kind, args } => Frame::Result {
                id,
                outcome: Ok(Reply::Return {
                    kind: kind.to_string(),
                    payload: Payload::encode(args),
                }),
            },
        }
    }

    /// Appends the frame (length prefix and body) to `out`, as
    /// [`codec::encode_frame`] does for the owned frame.
    pub(crate) fn encode(&self, out: &mut Vec<u8>, max_frame: usize) -> Result<(), crate::Error> {
        match *self {
            Outgoing::Frame(f) => codec::encode_frame(f, out, max_frame),
            Outgoing::Deliver { args, .. }
            | Outgoing::Emit { args, .. }
            | Outgoing::Return { args, .. } => with_encoded(args, |payload| {
                let start = out.len();
                out.extend_from_slice(&[0; 4]);
                self.put_body(payload, out);
                codec::seal_frame(out, start, max_frame)
            }),
        }
    }

    /// Appends the body of a deliver, an emit or a return whose args are
    /// `payload`, written by hand in bincode's form of the owned frame
    /// (without serde's machinery per field: this is every call's
    /// frame).
    fn put_body(&self, payload: &[u8], out: &mut Vec<u8>) {
        match *self {
            Outgoing::Deliver {
                id,
                origin,
                timeout_ms,
                session,
                method,
                ..
            } => {
                put_varint(out, DELIVER.into());
                put_varint(out, id);
                put_varint(out, origin);
                put_varint(out, timeout_ms.into());
                put_bytes(out, session.as_bytes());
                put_bytes(out, method.as_bytes());
            }
            Outgoing::Emit { id, kind, .. } => {
                put_varint(out, EMIT.into());
                put_varint(out, id);
                put_bytes(out, kind.as_bytes());
            }
            Outgoing::Return { id, kind, .. } => {
                put_varint(out, RESULT.into());
                put_varint(out, id);
                // Ok (variant 0 of Result), Reply::Return.
                put_varint(out, 0);
                put_varint(out, RETURN.into());
                put_bytes(out, kind.as_bytes());
            }
            Outgoing::Frame(_) => unreachable!("owned frames go through serde"),
        }
        put_bytes(out, payload);
    }
}

thread_local! {
    /// Room for the args of an answer being encoded, kept between calls.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with `args` encoded as a payload's bytes, in a buffer kept
/// per thread (no allocation once it has grown to the usual size).
fn with_encoded<R>(args: &Args, f: impl FnOnce(&[u8]) -> R) -> R {
    // Taken out while in use, so that a nested use gets a buffer of its
    // own instead of a borrow error.
    let mut buf = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
    buf.clear();
    Payload::encode_into(args, &mut buf);
    let out = f(&buf);
    if buf.capacity() <= 64 << 10 {
        SCRATCH.with(|s| *s.borrow_mut() = buf);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Value;

    fn bytes(frame: &Outgoing<'_>, max: usize) -> Result<Vec<u8>, crate::Error> {
        let mut out = vec![7];
        frame.encode(&mut out, max)?;
        Ok(out)
    }

    fn owned(frame: &Frame, max: usize) -> Result<Vec<u8>, crate::Error> {
        let mut out = vec![7];
        codec::encode_frame(frame, &mut out, max)?;
        Ok(out)
    }

    #[test]
    fn borrowed_frames_encode_as_the_owned_ones() {
        let big = Args::new()
            .with("x", Value::Bytes(vec![1; 300]))
            .with("s", "é");
        let args = [Args::new(), Args::new().with("n", 1), big];
        let ids = [
            0,
            1,
            250,
            251,
            65_535,
            65_536,
            u32::MAX as u64 + 1,
            u64::MAX,
        ];
        for id in ids {
            for a in &args {
                for kind in ["", "return", &"k".repeat(300)] {
                    let frames = [
                        Outgoing::Emit { id, kind, args: a },
                        Outgoing::Return { id, kind, args: a },
                        Outgoing::Deliver {
                            id,
                            origin: id / 3,
                            timeout_ms: (id % 100_000) as u32,
                            session: kind,
                            method: "m",
                            args: a,
                        },
                    ];
                    for f in frames {
                        let frame = f.to_frame();
                        let encoded = bytes(&f, 1 << 20);
                        assert_eq!(encoded, owned(&frame, 1 << 20), "{frame:?}");
                        // After the test's marker byte and the length.
                        let plain = encoded.unwrap().split_off(5);
                        assert_eq!(crate::wire::decode_body(&plain), Ok(frame.clone()));
                        // Over the maximum: refused alike, nothing left.
                        let small = plain.len() - 1;
                        assert_eq!(
                            bytes(&f, small).unwrap_err().code,
                            owned(&frame, small).unwrap_err().code
                        );
                    }
                }
            }
        }
    }
}
