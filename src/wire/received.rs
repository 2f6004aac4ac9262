//! The per-call frames a client receives, read in place: a deliver (or
//! a stamped deliver, or a one-way post), an emit, and a successful
//! return, borrowed from the received body. The client takes from them
//! only what it keeps (the method's name, the response's type, the args
//! decoded straight from the body), instead of an owned [`Frame`] with
//! its session, names and payload copied first.
//!
//! Anything else, and any body these mirrors do not read exactly, is
//! [`Parsed::Other`]: the caller decodes it with
//! [`decode_body`](super::decode_body), which gives every other frame,
//! and the error of a malformed one, as before.

use super::cursor::Cursor;
use super::{CallerInfo, DECODE_LIMIT};

/// [`super::Frame`]'s variant numbers (declaration order).
const DELIVER: u32 = 8;
const EMIT: u32 = 9;
const RESULT: u32 = 12;
const POST: u32 = 20;
const DELIVER_FROM: u32 = 31;
/// `Result::Ok`'s and [`super::Reply::Return`]'s variant numbers.
const OK: u32 = 0;
const RETURN: u32 = 3;

/// A received frame body, as far as the client reads it in place.
#[derive(Debug, PartialEq)]
pub(crate) enum Parsed<'a> {
    /// [`super::Frame::Deliver`], [`super::Frame::DeliverFrom`] or
    /// [`super::Frame::Post`].
    Call {
        /// Whether it is a one-way post.
        post: bool,
        /// The route id.
        id: u64,
        /// The caller's own id of the request.
        origin: u64,
        /// The time the caller still gives it (0: none).
        timeout_ms: u32,
        /// The published name.
        session: &'a str,
        /// The method.
        method: &'a str,
        /// The encoded args.
        payload: &'a [u8],
        /// Who calls, when the broker stamped it.
        caller: Option<Stamp<'a>>,
    },
    /// [`super::Frame::Emit`].
    Emit {
        /// The call id.
        id: u64,
        /// The response type.
        kind: &'a str,
        /// The encoded args.
        payload: &'a [u8],
    },
    /// [`super::Frame::Result`] with a successful
    /// [`super::Reply::Return`].
    Return {
        /// The call id.
        id: u64,
        /// The response type.
        kind: &'a str,
        /// The encoded args.
        payload: &'a [u8],
    },
    /// Any other frame, or a body to decode the ordinary way.
    Other,
}

/// The caller's stamp of a stamped deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stamp<'a> {
    /// The same bytes as the stamp known from before (given to
    /// [`Parsed::parse_with`]): the same caller, not read again.
    Known,
    /// A stamp read, and its bytes.
    New(CallerRef<'a>, &'a [u8]),
}

/// A caller's identity borrowed from a stamped deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CallerRef<'a> {
    connection: u64,
    uid: Option<u32>,
    gid: Option<u32>,
    pid: Option<u32>,
    identity: Option<&'a str>,
    client_name: Option<&'a str>,
}

impl CallerRef<'_> {
    /// Whether `owned` is the same identity.
    #[cfg(test)]
    pub(crate) fn is(&self, owned: &CallerInfo) -> bool {
        self.connection == owned.connection
            && self.uid == owned.uid
            && self.gid == owned.gid
            && self.pid == owned.pid
            && self.identity == owned.identity.as_deref()
            && self.client_name == owned.client_name.as_deref()
    }

    /// The owned identity.
    pub(crate) fn owned(self) -> CallerInfo {
        CallerInfo {
            connection: self.connection,
            uid: self.uid,
            gid: self.gid,
            pid: self.pid,
            identity: self.identity.map(str::to_string),
            client_name: self.client_name.map(str::to_string),
        }
    }
}

/// A reader of per-call frame bodies: every per-call frame passes here,
/// and serde's machinery per field cost more than the reading. Anything
/// it does not read exactly as the decoder would is `None`, and the body
/// then goes to the decoder (tested against it below).
struct Reader<'a>(Cursor<'a>);

impl<'a> Reader<'a> {
    fn u64(&mut self) -> Option<u64> {
        self.0.u64()
    }

    fn u32(&mut self) -> Option<u32> {
        self.0.u32()
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        self.0.bytes()
    }

    fn str(&mut self) -> Option<&'a str> {
        self.0.str()
    }

    /// What is left unread.
    fn rest(&self) -> &'a [u8] {
        self.0.rest()
    }

    /// Leaves nothing unread.
    fn skip_rest(&mut self) {
        self.0 .0 = &[];
    }

    /// An `Option`: its tag byte (0 none, 1 some), then the value.
    fn option<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        match self.0.byte()? {
            0 => Some(None),
            1 => read(self).map(Some),
            _ => None,
        }
    }

    /// A stamped caller, in [`CallerInfo`]'s field order.
    fn caller(&mut self) -> Option<CallerRef<'a>> {
        Some(CallerRef {
            connection: self.u64()?,
            uid: self.option(Self::u32)?,
            gid: self.option(Self::u32)?,
            pid: self.option(Self::u32)?,
            identity: self.option(Self::str)?,
            client_name: self.option(Self::str)?,
        })
    }
}

impl<'a> Parsed<'a> {
    /// Reads one frame body (without its length prefix) in place.
    #[cfg(test)]
    pub(crate) fn parse(body: &'a [u8]) -> Parsed<'a> {
        Parsed::parse_with(body, &[])
    }

    /// Reads one frame body in place; a stamped deliver whose stamp is
    /// `known` (the bytes of the last stamp read, checked then) has
    /// [`Stamp::Known`]: a caller calls many times, and its stamp is
    /// then compared, not read again.
    pub(crate) fn parse_with(body: &'a [u8], known: &[u8]) -> Parsed<'a> {
        // Bodies this long could meet the decoder's limit on bytes
        // claimed, which this reader does not count: the decoder's.
        if body.len() > DECODE_LIMIT / 16 {
            return Parsed::Other;
        }
        let mut r = Reader(Cursor(body));
        Parsed::read(&mut r, known)
            .filter(|_| r.rest().is_empty())
            .unwrap_or(Parsed::Other)
    }

    fn read(r: &mut Reader<'a>, known: &[u8]) -> Option<Parsed<'a>> {
        let tag = r.u32()?;
        Some(match tag {
            DELIVER | POST | DELIVER_FROM => Parsed::Call {
                post: tag == POST,
                id: r.u64()?,
                origin: r.u64()?,
                timeout_ms: r.u32()?,
                session: r.str()?,
                method: r.str()?,
                payload: r.bytes()?,
                caller: match tag {
                    // The stamp is the body's last field.
                    DELIVER_FROM if !known.is_empty() && r.rest() == known => {
                        r.skip_rest();
                        Some(Stamp::Known)
                    }
                    DELIVER_FROM => {
                        let start = r.rest();
                        let caller = r.caller()?;
                        Some(Stamp::New(caller, &start[..start.len() - r.rest().len()]))
                    }
                    _ => None,
                },
            },
            EMIT => Parsed::Emit {
                id: r.u64()?,
                kind: r.str()?,
                payload: r.bytes()?,
            },
            RESULT => {
                let id = r.u64()?;
                if r.u32()? != OK || r.u32()? != RETURN {
                    return None;
                }
                Parsed::Return {
                    id,
                    kind: r.str()?,
                    payload: r.bytes()?,
                }
            }
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Error, ErrorCode};
    use crate::wire::{encode_frame, Frame, Payload, Reply};

    fn body(frame: &Frame) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(frame, &mut out, 1 << 20).unwrap();
        out.split_off(4)
    }

    /// The owned frame a parse stands for.
    fn owned(p: &Parsed<'_>) -> Option<Frame> {
        Some(match *p {
            Parsed::Call {
                post,
                id,
                origin,
                timeout_ms,
                session,
                method,
                payload,
                caller,
            } => {
                let (session, method) = (session.to_string(), method.to_string());
                let payload = Payload(payload.to_vec());
                match (post, caller) {
                    (true, _) => Frame::Post {
                        id,
                        origin,
                        timeout_ms,
                        session,
                        method,
                        payload,
                    },
                    (false, None) => Frame::Deliver {
                        id,
                        origin,
                        timeout_ms,
                        session,
                        method,
                        payload,
                    },
                    (false, Some(c)) => Frame::DeliverFrom {
                        id,
                        origin,
                        timeout_ms,
                        session,
                        method,
                        payload,
                        caller: match c {
                            Stamp::New(c, _) => c.owned(),
                            Stamp::Known => return None,
                        },
                    },
                }
            }
            Parsed::Emit { id, kind, payload } => Frame::Emit {
                id,
                kind: kind.to_string(),
                payload: Payload(payload.to_vec()),
            },
            Parsed::Return { id, kind, payload } => Frame::Result {
                id,
                outcome: Ok(Reply::Return {
                    kind: kind.to_string(),
                    payload: Payload(payload.to_vec()),
                }),
            },
            Parsed::Other => return None,
        })
    }

    /// A decoded frame of the kinds read in place (a successful return
    /// among results).
    fn owned_kind(f: Option<&Frame>) -> Option<()> {
        match f? {
            Frame::Deliver { .. }
            | Frame::Post { .. }
            | Frame::DeliverFrom { .. }
            | Frame::Emit { .. }
            | Frame::Result {
                outcome: Ok(Reply::Return { .. }),
                ..
            } => Some(()),
            _ => None,
        }
    }

    #[test]
    fn per_call_frames_read_in_place_as_they_decode() {
        let payload = Payload(vec![1, 1, b'x', 3, 2]);
        let caller = CallerInfo {
            connection: 300,
            uid: Some(1000),
            gid: None,
            pid: Some(70_000),
            identity: Some("CN=a".into()),
            client_name: None,
        };
        let frames = [
            Frame::Deliver {
                id: 1,
                origin: 70_000,
                timeout_ms: 5,
                session: "s".into(),
                method: "é".into(),
                payload: payload.clone(),
            },
            Frame::Post {
                id: u64::MAX,
                origin: 0,
                timeout_ms: 0,
                session: "".into(),
                method: "m".into(),
                payload: Payload::default(),
            },
            Frame::DeliverFrom {
                id: 251,
                origin: 2,
                timeout_ms: u32::MAX,
                session: "s".into(),
                method: "m".into(),
                payload: payload.clone(),
                caller: caller.clone(),
            },
            Frame::Emit {
                id: 9,
                kind: "emit".into(),
                payload: payload.clone(),
            },
            Frame::Result {
                id: 65_536,
                outcome: Ok(Reply::Return {
                    kind: "return".into(),
                    payload,
                }),
            },
        ];
        for frame in &frames {
            let bytes = body(frame);
            let parsed = Parsed::parse(&bytes);
            assert_eq!(owned(&parsed).as_ref(), Some(frame), "{frame:?}");
            if let Parsed::Call {
                caller: Some(Stamp::New(c, stamp)),
                ..
            } = parsed
            {
                assert!(c.is(&caller));
                assert!(!c.is(&CallerInfo::default()));
                // Given as known: not read again, the rest the same.
                let again = Parsed::parse_with(&bytes, stamp);
                let Parsed::Call { caller: known, .. } = again else {
                    panic!("{again:?}");
                };
                assert_eq!(known, Some(Stamp::Known));
                assert_eq!(
                    format!("{:?}", Parsed::parse_with(&bytes, &stamp[1..])),
                    format!("{parsed:?}"),
                    "another stamp known: this one read"
                );
            }
            // Cut short or extended: not read in place (the ordinary
            // decoding then gives its error).
            for cut in 0..bytes.len() {
                assert_eq!(
                    Parsed::parse(&bytes[..cut]),
                    Parsed::Other,
                    "{frame:?} at {cut}"
                );
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert_eq!(Parsed::parse(&longer), Parsed::Other);
        }
        // Other frames, and other results, are not read in place.
        let others = [
            Frame::Ping,
            Frame::Cancel { id: 3 },
            Frame::Result {
                id: 3,
                outcome: Ok(Reply::Done),
            },
            Frame::Result {
                id: 3,
                outcome: Err(Error::new(ErrorCode::Timeout, "late")),
            },
            Frame::Recall {
                id: 3,
                method: "m".into(),
                payload: Payload::default(),
            },
        ];
        for frame in &others {
            assert_eq!(Parsed::parse(&body(frame)), Parsed::Other, "{frame:?}");
        }
        // Changed bytes: read in place exactly when the decoder reads
        // the frame, and as the same frame.
        for (k, frame) in frames.iter().enumerate() {
            for m in crate::wire::cursor::mutations(&body(frame), 3000, k as u64) {
                let parsed = Parsed::parse(&m);
                let decoded = crate::wire::decode_body(&m).ok();
                match owned(&parsed) {
                    Some(f) => assert_eq!(Some(f), decoded, "{m:?}"),
                    None => assert!(
                        owned_kind(decoded.as_ref()).is_none(),
                        "not read in place, yet decoded: {m:?} {decoded:?}"
                    ),
                }
            }
        }
        // Text that is not UTF-8 is not read in place either.
        let mut bad = body(&frames[0]);
        let at = bad.iter().position(|&b| b == 0xc3).unwrap();
        bad[at] = 0xff;
        assert_eq!(Parsed::parse(&bad), Parsed::Other);
    }
}
