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

use super::codec::config;
use super::CallerInfo;
use serde::Deserialize;

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
        caller: Option<CallerRef<'a>>,
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

/// A caller's identity borrowed from a stamped deliver, compared with the
/// last one before anything is allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
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

/// The fields of a deliver or a post, in [`super::Frame::Deliver`]'s order.
#[derive(Deserialize)]
struct CallFields<'a> {
    id: u64,
    origin: u64,
    timeout_ms: u32,
    session: &'a str,
    method: &'a str,
    payload: &'a [u8],
}

/// A stamped deliver's: a deliver's, then the caller.
#[derive(Deserialize)]
struct CallFromFields<'a> {
    #[serde(borrow)]
    call: CallFields<'a>,
    #[serde(borrow)]
    caller: CallerRef<'a>,
}

/// An emit's.
#[derive(Deserialize)]
struct EmitFields<'a> {
    id: u64,
    kind: &'a str,
    payload: &'a [u8],
}

/// A result's, read as a successful return: its two variant numbers
/// are read as the numbers they are encoded as, then checked.
#[derive(Deserialize)]
struct ReturnFields<'a> {
    id: u64,
    ok: u32,
    reply: u32,
    kind: &'a str,
    payload: &'a [u8],
}

/// `T` read from exactly all of `bytes`.
fn exactly<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Option<T> {
    match bincode::serde::borrow_decode_from_slice::<T, _>(bytes, config()) {
        Ok((value, used)) if used == bytes.len() => Some(value),
        _ => None,
    }
}

impl<'a> Parsed<'a> {
    /// Reads one frame body (without its length prefix) in place.
    pub(crate) fn parse(body: &'a [u8]) -> Parsed<'a> {
        let Ok((tag, tag_len)) = bincode::decode_from_slice::<u32, _>(body, config()) else {
            return Parsed::Other;
        };
        let rest = &body[tag_len..];
        let call = |f: CallFields<'a>, post, caller| Parsed::Call {
            post,
            id: f.id,
            origin: f.origin,
            timeout_ms: f.timeout_ms,
            session: f.session,
            method: f.method,
            payload: f.payload,
            caller,
        };
        let parsed = match tag {
            DELIVER | POST => exactly::<CallFields>(rest).map(|f| call(f, tag == POST, None)),
            DELIVER_FROM => {
                exactly::<CallFromFields>(rest).map(|f| call(f.call, false, Some(f.caller)))
            }
            EMIT => exactly::<EmitFields>(rest).map(|f| Parsed::Emit {
                id: f.id,
                kind: f.kind,
                payload: f.payload,
            }),
            RESULT => exactly::<ReturnFields>(rest)
                .filter(|f| f.ok == OK && f.reply == RETURN)
                .map(|f| Parsed::Return {
                    id: f.id,
                    kind: f.kind,
                    payload: f.payload,
                }),
            _ => None,
        };
        parsed.unwrap_or(Parsed::Other)
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
                        caller: c.owned(),
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
                caller: Some(c), ..
            } = parsed
            {
                assert!(c.is(&caller));
                assert!(!c.is(&CallerInfo::default()));
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
        // Text that is not UTF-8 is not read in place either.
        let mut bad = body(&frames[0]);
        let at = bad.iter().position(|&b| b == 0xc3).unwrap();
        bad[at] = 0xff;
        assert_eq!(Parsed::parse(&bad), Parsed::Other);
    }
}
