//! The frames the broker forwards, checked in place and forwarded with
//! only their id rewritten.
//!
//! A call's deliver, emits, recalls and result pass through the broker,
//! which needs of them only the id (and a deliver's session and method).
//! Decoding them into owned [`Frame`]s and encoding them again spent most
//! of the broker's time in allocation and copying; a [`Routed`] borrows
//! the received body instead. The whole body is still checked against the
//! frame's layout, so a malformed frame is refused at the broker and never
//! reaches the other side.

use super::codec::{config, decode_body, decode_error_text, put_varint, seal_frame};
use super::cursor::Cursor;
use super::{Frame, WireError, DECODE_LIMIT};
use crate::error::{Error, ErrorCode};
use serde::Deserialize;

/// Variant numbers of [`Frame`] in its serde encoding (declaration order).
const DELIVER: u32 = 8;
const EMIT: u32 = 9;
const RECALL: u32 = 10;
const RESULT: u32 = 12;
const POST: u32 = 20;
const SIGNAL: u32 = 21;
/// `Result`'s variant numbers, and [`super::Reply::Return`]'s.
const OK: u32 = 0;
const ERR: u32 = 1;
const RETURN: u32 = 3;
/// [`Frame::DeliverFrom`]'s variant number, in its encoding (a varint
/// below 251 is that one byte).
const DELIVER_FROM_TAG: [u8; 1] = [31];
/// [`Frame::PostFrom`]'s variant number, in its encoding.
const POST_FROM_TAG: [u8; 1] = [32];

/// What kind of routed frame, with what the broker needs to route it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RoutedKind<'a> {
    /// [`Frame::Deliver`] with its session and method.
    Deliver {
        /// The published name.
        session: &'a str,
        /// The method.
        method: &'a str,
    },
    /// [`Frame::Emit`].
    Emit,
    /// [`Frame::Recall`].
    Recall,
    /// [`Frame::Result`], with its error's code when it is an error.
    Result {
        /// The code of an error result; `None` for a success.
        error: Option<ErrorCode>,
    },
    /// [`Frame::Post`] with its session and method.
    Post {
        /// The published name.
        session: &'a str,
        /// The method.
        method: &'a str,
    },
}

/// A checked frame the broker forwards, borrowed from its body.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Routed<'a> {
    /// The kind, with its routing fields.
    pub kind: RoutedKind<'a>,
    /// The id as received.
    pub id: u64,
    /// The variant number's bytes, which precede the id.
    tag: &'a [u8],
    /// Every byte after the id, forwarded unchanged.
    tail: &'a [u8],
}

/// A received frame body as the broker reads it.
#[derive(Debug)]
pub(crate) enum Inbound<'a> {
    /// A frame to forward.
    Routed(Routed<'a>),
    /// A [`Frame::Signal`], forwarded to its listeners as received.
    Signal {
        /// The session it is emitted for.
        session: &'a str,
        /// The signal's name.
        signal: &'a str,
        /// The whole body, which each listener receives unchanged.
        body: &'a [u8],
    },
    /// Any other frame, decoded.
    Other(Frame),
}

impl<'a> Inbound<'a> {
    /// Parses one frame body (without its length prefix), which must be
    /// one well-formed frame.
    pub fn parse(body: &'a [u8]) -> Result<Inbound<'a>, WireError> {
        // Bodies this long could meet the decoder's limit on bytes
        // claimed, which the in-place reader does not count.
        if body.len() <= DECODE_LIMIT / 16 {
            if let Some(inbound) = Inbound::read_in_place(body) {
                return Ok(inbound);
            }
        }
        Inbound::decode(body)
    }

    /// Reads the frames of a call, every one the broker forwards, by
    /// hand: serde's machinery per field cost the broker more than its
    /// routing. `None` for any other frame and any body not read exactly
    /// as the decoder reads it (tested against [`Inbound::decode`]
    /// below): [`Inbound::decode`] then decides, and gives the error.
    fn read_in_place(body: &'a [u8]) -> Option<Inbound<'a>> {
        let mut c = Cursor(body);
        let tag = c.u32()?;
        if tag == SIGNAL {
            let (session, signal) = (c.str()?, c.str()?);
            c.bytes()?;
            return c.rest().is_empty().then_some(Inbound::Signal {
                session,
                signal,
                body,
            });
        }
        let tag_len = body.len() - c.rest().len();
        let id = c.u64()?;
        let tail = c.rest();
        let kind = match tag {
            DELIVER | POST => {
                c.u64()?; // origin
                c.u32()?; // timeout_ms
                let (session, method) = (c.str()?, c.str()?);
                c.bytes()?;
                if tag == POST {
                    RoutedKind::Post { session, method }
                } else {
                    RoutedKind::Deliver { session, method }
                }
            }
            EMIT | RECALL => {
                c.str()?;
                c.bytes()?;
                if tag == EMIT {
                    RoutedKind::Emit
                } else {
                    RoutedKind::Recall
                }
            }
            RESULT => match c.u32()? {
                OK if c.u32()? == RETURN => {
                    c.str()?;
                    c.bytes()?;
                    RoutedKind::Result { error: None }
                }
                ERR => {
                    let code = c.u16()?;
                    c.str()?;
                    RoutedKind::Result {
                        error: Some(ErrorCode::from(code)),
                    }
                }
                _ => return None,
            },
            _ => return None,
        };
        c.rest().is_empty().then_some(Inbound::Routed(Routed {
            kind,
            id,
            tag: &body[..tag_len],
            tail,
        }))
    }

    /// [`Inbound::parse`] through the decoder: every frame, and the error
    /// of a malformed one.
    fn decode(body: &'a [u8]) -> Result<Inbound<'a>, WireError> {
        let malformed =
            |e: bincode::error::DecodeError| WireError::Malformed(decode_error_text(&e));
        let (tag, tag_len): (u32, usize) =
            bincode::decode_from_slice(body, config()).map_err(malformed)?;
        if tag == SIGNAL {
            let fields: mirror::SignalFields<'a> = decode_exactly(&body[tag_len..])?;
            return Ok(Inbound::Signal {
                session: fields.session,
                signal: fields.signal,
                body,
            });
        }
        if !matches!(tag, DELIVER | EMIT | RECALL | RESULT | POST) {
            return decode_body(body).map(Inbound::Other);
        }
        let (id, id_len): (u64, usize) =
            bincode::decode_from_slice(&body[tag_len..], config()).map_err(malformed)?;
        let tail = &body[tag_len + id_len..];
        let kind = match tag {
            DELIVER | POST => {
                let fields: mirror::DeliverRest<'a> = decode_exactly(tail)?;
                if tag == POST {
                    RoutedKind::Post {
                        session: fields.session,
                        method: fields.method,
                    }
                } else {
                    RoutedKind::Deliver {
                        session: fields.session,
                        method: fields.method,
                    }
                }
            }
            EMIT | RECALL => {
                decode_exactly::<mirror::NamedPayload<'a>>(tail)?;
                if tag == EMIT {
                    RoutedKind::Emit
                } else {
                    RoutedKind::Recall
                }
            }
            _ => {
                let outcome: mirror::Outcome<'a> = decode_exactly(tail)?;
                RoutedKind::Result {
                    error: outcome.0.err().map(|e| ErrorCode::from(e.code)),
                }
            }
        };
        Ok(Inbound::Routed(Routed {
            kind,
            id,
            tag: &body[..tag_len],
            tail,
        }))
    }
}

impl<'a> Routed<'a> {
    /// What a monitor shows of the frame, decoded again from the checked
    /// body (only monitoring asks): the name (deliver, recall: the
    /// method; emit, a return: its type), the payload, and an error
    /// result's error.
    pub fn details(&self) -> (&'a str, Option<&'a [u8]>, Option<Error>) {
        match self.kind {
            RoutedKind::Deliver { method, .. } | RoutedKind::Post { method, .. } => {
                let rest = decode_exactly::<mirror::DeliverRest<'a>>(self.tail).ok();
                (method, rest.map(|f| f.payload), None)
            }
            RoutedKind::Emit | RoutedKind::Recall => {
                match decode_exactly::<mirror::NamedPayload<'a>>(self.tail) {
                    Ok(f) => (f.name, Some(f.payload), None),
                    Err(_) => ("", None, None),
                }
            }
            RoutedKind::Result { .. } => match decode_exactly::<mirror::Outcome<'a>>(self.tail) {
                Ok(mirror::Outcome(Ok(mirror::Reply::Return { kind, payload }))) => {
                    (kind, Some(payload), None)
                }
                Ok(mirror::Outcome(Err(e))) => {
                    let error = Error::new(ErrorCode::from(e.code), e.message);
                    ("", None, Some(error))
                }
                _ => ("", None, None),
            },
        }
    }
}

impl Routed<'_> {
    /// The original's name of the message kind, for diagnostics.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            RoutedKind::Deliver { .. } => "deliver",
            RoutedKind::Emit => "emit",
            RoutedKind::Recall => "recall",
            RoutedKind::Result { .. } => "result",
            RoutedKind::Post { .. } => "post",
        }
    }

    /// Appends the frame with its id replaced by `id` (length prefix and
    /// body) to `out`. Fails with `limit_exceeded`, leaving `out` as it
    /// was, when the body would exceed `max_frame`.
    pub fn encode_with_id(
        &self,
        id: u64,
        out: &mut Vec<u8>,
        max_frame: usize,
    ) -> Result<(), Error> {
        self.encode(self.tag, id, &[], out, max_frame)
    }

    /// Appends a deliver as a [`Frame::DeliverFrom`] with id `id` and the
    /// encoded [`super::CallerInfo`] `caller` (see [`encode_caller`]); as
    /// [`Routed::encode_with_id`] otherwise. Only for a deliver.
    pub fn encode_deliver_from(
        &self,
        id: u64,
        caller: &[u8],
        out: &mut Vec<u8>,
        max_frame: usize,
    ) -> Result<(), Error> {
        debug_assert!(matches!(self.kind, RoutedKind::Deliver { .. }));
        self.encode(&DELIVER_FROM_TAG, id, caller, out, max_frame)
    }

    /// Appends a one-way post as a [`Frame::PostFrom`] with id `id` and
    /// the encoded caller `caller`, for a peer broker; as
    /// [`Routed::encode_deliver_from`] otherwise. Only for a post.
    pub fn encode_post_from(
        &self,
        id: u64,
        caller: &[u8],
        out: &mut Vec<u8>,
        max_frame: usize,
    ) -> Result<(), Error> {
        debug_assert!(matches!(self.kind, RoutedKind::Post { .. }));
        self.encode(&POST_FROM_TAG, id, caller, out, max_frame)
    }

    fn encode(
        &self,
        tag: &[u8],
        id: u64,
        extra: &[u8],
        out: &mut Vec<u8>,
        max_frame: usize,
    ) -> Result<(), Error> {
        let start = out.len();
        out.reserve(4 + tag.len() + 9 + self.tail.len() + extra.len());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(tag);
        put_varint(out, id);
        out.extend_from_slice(self.tail);
        out.extend_from_slice(extra);
        seal_frame(out, start, max_frame)
    }
}

/// A caller's identity encoded as [`Frame::DeliverFrom`] carries it, to
/// be appended by [`Routed::encode_deliver_from`].
pub(crate) fn encode_caller(caller: &super::CallerInfo) -> Vec<u8> {
    // Encoding into a Vec cannot fail for this type.
    bincode::serde::encode_to_vec(caller, config()).unwrap_or_default()
}

fn decode_exactly<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, WireError> {
    match bincode::serde::borrow_decode_from_slice::<T, _>(bytes, config()) {
        Ok((value, used)) if used == bytes.len() => Ok(value),
        Ok((_, used)) => Err(WireError::Malformed(format!(
            "{} trailing bytes after a {} byte frame",
            bytes.len() - used,
            used
        ))),
        Err(e) => Err(WireError::Malformed(decode_error_text(&e))),
    }
}

/// Borrowed mirrors of the fields after the id, in the order and with the
/// types [`Frame`] declares them (`tests::mirrors_match_the_frames` keeps
/// them in step). Decoding them is the check; their fields are never read
/// but for a deliver's session and method.
#[allow(dead_code)]
mod mirror {
    use serde::Deserialize;

    #[derive(Deserialize)]
    pub(super) struct DeliverRest<'a> {
        pub origin: u64,
        pub timeout_ms: u32,
        pub session: &'a str,
        pub method: &'a str,
        pub payload: &'a [u8],
    }

    /// A signal's fields (it has no id).
    #[derive(Deserialize)]
    pub(super) struct SignalFields<'a> {
        pub session: &'a str,
        pub signal: &'a str,
        pub payload: &'a [u8],
    }

    /// The rest of an emit (kind, payload) or a recall (method, payload).
    #[derive(Deserialize)]
    pub(super) struct NamedPayload<'a> {
        pub name: &'a str,
        pub payload: &'a [u8],
    }

    #[derive(Deserialize)]
    pub(super) struct Outcome<'a>(#[serde(borrow)] pub Result<Reply<'a>, Error<'a>>);

    #[derive(Deserialize)]
    pub(super) enum Reply<'a> {
        Done,
        Sessions(#[serde(borrow)] Vec<SessionInfo<'a>>),
        Methods(#[serde(borrow)] Vec<&'a str>),
        Return {
            kind: &'a str,
            payload: &'a [u8],
        },
        /// Never an answer to a call, but a well-formed result all the
        /// same: checked like the full decoder checks it (found by the
        /// routed_checker fuzz target).
        #[allow(dead_code)]
        Stats(Box<crate::report::StatsReport>),
    }

    #[derive(Deserialize)]
    pub(super) struct SessionInfo<'a> {
        pub name: &'a str,
        #[serde(borrow)]
        pub methods: Vec<&'a str>,
    }

    #[derive(Deserialize)]
    pub(super) struct Error<'a> {
        pub code: u16,
        pub message: &'a str,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{encode_frame, Payload, Reply, SessionInfo, DEFAULT_MAX_FRAME};
    use crate::Args;

    fn body(frame: &Frame) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(frame, &mut out, DEFAULT_MAX_FRAME).unwrap();
        out.split_off(4)
    }

    fn with_id(frame: &Frame, new: u64) -> Frame {
        let mut f = frame.clone();
        match &mut f {
            Frame::Deliver { id, .. }
            | Frame::Post { id, .. }
            | Frame::Emit { id, .. }
            | Frame::Recall { id, .. }
            | Frame::Result { id, .. } => *id = new,
            _ => unreachable!(),
        }
        f
    }

    fn frame_id(frame: &Frame) -> u64 {
        match frame {
            Frame::Deliver { id, .. }
            | Frame::Post { id, .. }
            | Frame::Emit { id, .. }
            | Frame::Recall { id, .. }
            | Frame::Result { id, .. } => *id,
            _ => unreachable!(),
        }
    }

    fn routed_frames() -> Vec<Frame> {
        let payload = Payload::encode(&Args::new().with("x", 1).with("name", "ü"));
        let mut frames = Vec::new();
        for id in [
            0,
            1,
            250,
            251,
            65_535,
            65_536,
            u32::MAX as u64 + 1,
            u64::MAX,
        ] {
            frames.push(Frame::Deliver {
                id,
                origin: id ^ 7,
                timeout_ms: (id as u32) ^ 0x55,
                session: "FooSession".into(),
                method: "on_foo".into(),
                payload: payload.clone(),
            });
            frames.push(Frame::Post {
                id,
                origin: id ^ 3,
                timeout_ms: 9,
                session: "S".into(),
                method: "m".into(),
                payload: payload.clone(),
            });
            frames.push(Frame::Emit {
                id,
                kind: "emit".into(),
                payload: payload.clone(),
            });
            frames.push(Frame::Recall {
                id,
                method: "answer".into(),
                payload: Payload::default(),
            });
            for outcome in [
                Ok(Reply::Done),
                Ok(Reply::Return {
                    kind: "return".into(),
                    payload: payload.clone(),
                }),
                Ok(Reply::Methods(vec!["a".into(), "b".into()])),
                Ok(Reply::Sessions(vec![SessionInfo {
                    name: "s".into(),
                    methods: vec!["m".into()],
                }])),
                Err(Error::new(ErrorCode::PublisherGone, "gone")),
            ] {
                frames.push(Frame::Result { id, outcome });
            }
        }
        frames
    }

    #[test]
    fn mirrors_match_the_frames() {
        for frame in routed_frames() {
            let bytes = body(&frame);
            let Ok(Inbound::Routed(r)) = Inbound::parse(&bytes) else {
                panic!("not routed: {frame:?}");
            };
            assert_eq!(r.kind_name(), frame.kind_name());
            assert_eq!(r.id, frame_id(&frame));
            for new in [0, 3, 251, 70_000, u64::MAX] {
                let mut out = Vec::new();
                r.encode_with_id(new, &mut out, DEFAULT_MAX_FRAME).unwrap();
                let mut expected = Vec::new();
                encode_frame(&with_id(&frame, new), &mut expected, DEFAULT_MAX_FRAME).unwrap();
                assert_eq!(out, expected, "{frame:?} with id {new}");
            }
        }
    }

    /// What a parse says, comparable across both readers.
    fn seen(parsed: &Result<Inbound<'_>, WireError>) -> String {
        match parsed {
            Ok(Inbound::Routed(r)) => format!("{:?} {} {:?} {:?}", r.kind, r.id, r.tag, r.tail),
            Ok(Inbound::Signal {
                session,
                signal,
                body,
            }) => format!("signal {session} {signal} {body:?}"),
            Ok(Inbound::Other(f)) => format!("{f:?}"),
            Err(_) => "refused".into(),
        }
    }

    #[test]
    fn read_in_place_exactly_as_decoded() {
        let mut frames = routed_frames();
        frames.push(Frame::Signal {
            session: "S".into(),
            signal: "changed".into(),
            payload: Payload::encode(&Args::new().with("x", 1)),
        });
        frames.push(Frame::Result {
            id: 7,
            outcome: Err(Error::new(ErrorCode::from(300), "no such code")),
        });
        let mut in_place = 0;
        for frame in &frames {
            let bytes = body(frame);
            let fast = Inbound::read_in_place(&bytes);
            in_place += usize::from(fast.is_some());
            let decoded = Inbound::decode(&bytes);
            assert!(decoded.is_ok(), "{frame:?}");
            if let Some(fast) = fast {
                assert_eq!(seen(&Ok(fast)), seen(&decoded), "{frame:?}");
            }
        }
        // Everything but the results the broker never reads (done,
        // sessions, methods) is read in place.
        assert_eq!(in_place, frames.len() - 3 * 8);
        // Changed bytes: read in place only as the decoder reads them.
        for (k, frame) in frames.iter().enumerate() {
            for m in crate::wire::cursor::mutations(&body(frame), 500, k as u64) {
                if let Some(fast) = Inbound::read_in_place(&m) {
                    assert_eq!(seen(&Ok(fast)), seen(&Inbound::decode(&m)), "{m:?}");
                }
                assert_eq!(seen(&Inbound::parse(&m)), seen(&Inbound::decode(&m)));
            }
        }
    }

    #[test]
    fn a_deliver_is_forwarded_as_deliver_from_with_its_caller() {
        let caller = crate::wire::CallerInfo {
            connection: 77,
            uid: Some(1000),
            gid: None,
            pid: Some(4242),
            identity: Some("ops".into()),
            client_name: Some("cli ü".into()),
        };
        let encoded = encode_caller(&caller);
        for frame in routed_frames() {
            let Frame::Deliver {
                origin,
                timeout_ms,
                session,
                method,
                payload,
                ..
            } = frame.clone()
            else {
                continue;
            };
            let bytes = body(&frame);
            let Ok(Inbound::Routed(r)) = Inbound::parse(&bytes) else {
                panic!("not routed");
            };
            let mut out = Vec::new();
            r.encode_deliver_from(12, &encoded, &mut out, DEFAULT_MAX_FRAME)
                .unwrap();
            let mut expected = Vec::new();
            let from = Frame::DeliverFrom {
                id: 12,
                origin,
                timeout_ms,
                session,
                method,
                payload,
                caller: caller.clone(),
            };
            encode_frame(&from, &mut expected, DEFAULT_MAX_FRAME).unwrap();
            assert_eq!(out, expected);
            assert_eq!(decode_body(&out[4..]).unwrap(), from);
        }
    }

    #[test]
    fn a_post_is_forwarded_to_a_peer_broker_as_post_from_with_its_caller() {
        let caller = crate::wire::CallerInfo {
            connection: 5,
            identity: Some("ops".into()),
            ..Default::default()
        };
        let encoded = encode_caller(&caller);
        let mut posts = 0;
        for frame in routed_frames() {
            let Frame::Post {
                origin,
                timeout_ms,
                session,
                method,
                payload,
                ..
            } = frame.clone()
            else {
                continue;
            };
            posts += 1;
            let bytes = body(&frame);
            let Ok(Inbound::Routed(r)) = Inbound::parse(&bytes) else {
                panic!("not routed");
            };
            let mut out = Vec::new();
            r.encode_post_from(300, &encoded, &mut out, DEFAULT_MAX_FRAME)
                .unwrap();
            let from = Frame::PostFrom {
                id: 300,
                origin,
                timeout_ms,
                session,
                method,
                payload,
                caller: caller.clone(),
            };
            let mut expected = Vec::new();
            encode_frame(&from, &mut expected, DEFAULT_MAX_FRAME).unwrap();
            assert_eq!(out, expected);
            assert_eq!(decode_body(&out[4..]).unwrap(), from);
        }
        assert!(posts > 0);
    }

    #[test]
    fn deliver_exposes_its_routing_fields() {
        let frame = Frame::Deliver {
            id: 9,
            origin: 4,
            timeout_ms: 1500,
            session: "S".into(),
            method: "m".into(),
            payload: Payload::default(),
        };
        let bytes = body(&frame);
        let Ok(Inbound::Routed(r)) = Inbound::parse(&bytes) else {
            panic!("not routed");
        };
        assert_eq!(r.id, 9);
        assert_eq!(
            r.kind,
            RoutedKind::Deliver {
                session: "S",
                method: "m"
            }
        );
    }

    #[test]
    fn a_signal_is_read_in_place_and_forwarded_whole() {
        let frame = Frame::Signal {
            session: "S".into(),
            signal: "changed".into(),
            payload: Payload::encode(&Args::new().with("x", 1)),
        };
        let bytes = body(&frame);
        let Ok(Inbound::Signal {
            session,
            signal,
            body: whole,
        }) = Inbound::parse(&bytes)
        else {
            panic!("not a signal");
        };
        assert_eq!((session, signal), ("S", "changed"));
        assert_eq!(whole, &bytes[..]);
        for cut in 0..bytes.len() {
            assert!(Inbound::parse(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Inbound::parse(&longer).is_err());
    }

    #[test]
    fn other_frames_are_decoded() {
        let frame = Frame::Cancel { id: 3 };
        assert!(matches!(Inbound::parse(&body(&frame)), Ok(Inbound::Other(f)) if f == frame));
    }

    #[test]
    fn every_truncation_and_extension_is_refused() {
        for frame in routed_frames() {
            let bytes = body(&frame);
            for cut in 0..bytes.len() {
                assert!(
                    Inbound::parse(&bytes[..cut]).is_err(),
                    "{frame:?} cut at {cut}"
                );
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(Inbound::parse(&longer).is_err(), "{frame:?} extended");
        }
    }

    #[test]
    fn bad_utf8_in_a_routed_frame_is_refused() {
        let frame = Frame::Emit {
            id: 1,
            kind: "ab".into(),
            payload: Payload::default(),
        };
        let mut bytes = body(&frame);
        let at = bytes.iter().position(|&b| b == b'a').unwrap();
        bytes[at] = 0xff;
        assert!(Inbound::parse(&bytes).is_err());
    }
}
