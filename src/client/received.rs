//! The broker's frames as the shell reads them: the per-call ones (a
//! delivery, an emit, a return) read in place from the received body
//! (see [`crate::wire::Parsed`]), with their args decoded straight from
//! it and their session name and caller identity shared with the
//! previous call's when equal; every other frame decoded whole.
//!
//! What is read here is only decoded, never acted on: the core takes the
//! frames in order afterwards ([`Core::on_received`]), so reading a
//! batch ahead changes nothing of what they do.

use super::core::Core;
use super::effects::{Effect, Outbox};
use super::oneway::Incoming;
use super::serving::Serving;
use super::{CallEvent, CallId, Name};
use crate::error::Error;
use crate::value::Args;
use crate::wire::{decode_body, Frame, Parsed, Payload, Reply, Stamp, WireError};
use crate::wire::{CallerInfo, DEFAULT_MAX_DECODED};
use std::rc::Rc;

/// One frame from the broker, read.
pub(super) enum Received {
    /// A frame decoded whole: boxed, so that the per-call items (moved
    /// from the reading into the batch and on to the core) are not the
    /// size of the largest frame.
    Frame(Box<Frame>),
    /// A call for a session published here, and whether its caller
    /// waits for an answer.
    Call(Incoming, bool),
    /// An interim response of a call made here.
    Emit {
        id: u64,
        kind: Name,
        args: Result<Args, Error>,
    },
    /// The successful final response of a call (or, unexpectedly, of an
    /// operation) made here.
    Return {
        id: u64,
        kind: Name,
        args: Result<Args, Error>,
    },
}

fn decode(payload: &[u8]) -> Result<Args, Error> {
    Payload::decode_bytes(payload, DEFAULT_MAX_DECODED)
}

impl Received {
    /// Reads one frame body; `serving` keeps the last session name and
    /// caller identity for the next call to share.
    pub fn read(body: &[u8], serving: &mut Serving) -> Result<Received, WireError> {
        let known = serving.last_stamp.as_ref().map_or(&[][..], |(b, _)| b);
        Ok(match Parsed::parse_with(body, known) {
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
                let call = Incoming {
                    id,
                    origin,
                    timeout_ms,
                    session: serving.name(session),
                    method: serving.names.get(method),
                    args: decode(payload),
                    caller: caller.and_then(|c| serving.caller(c)),
                };
                Received::Call(call, !post)
            }
            Parsed::Emit { id, kind, payload } => Received::Emit {
                id,
                kind: serving.names.get(kind),
                args: decode(payload),
            },
            Parsed::Return { id, kind, payload } => Received::Return {
                id,
                kind: serving.names.get(kind),
                args: decode(payload),
            },
            Parsed::Other => Received::Frame(Box::new(decode_body(body)?)),
        })
    }
}

impl Serving {
    /// `name` as a shared string: the last one's when equal (a publisher
    /// serves one session many times), else a new one that becomes last.
    pub fn name(&mut self, name: &str) -> Rc<str> {
        match &self.last_name {
            Some(last) if **last == *name => last.clone(),
            _ => self.last_name.insert(Rc::from(name)).clone(),
        }
    }

    /// The caller identity of a stamp: the last one's when its stamp
    /// is the same bytes (a caller calls many times), else a new one
    /// that becomes last.
    pub fn caller(&mut self, stamp: Stamp<'_>) -> Option<Rc<CallerInfo>> {
        match stamp {
            Stamp::Known => self.last_stamp.as_ref().map(|(_, c)| c.clone()),
            Stamp::New(caller, bytes) => {
                let owned = Rc::new(caller.owned());
                match &mut self.last_stamp {
                    Some((kept, last)) => {
                        kept.clear();
                        kept.extend_from_slice(bytes);
                        *last = owned.clone();
                    }
                    None => self.last_stamp = Some((bytes.to_vec(), owned.clone())),
                }
                Some(owned)
            }
        }
    }
}

impl Core {
    /// Takes one frame from the broker, as read by [`Received::read`].
    pub fn on_received(&mut self, received: Received, out: &mut impl Outbox) -> Option<Effect> {
        if self.is_closed() {
            return None;
        }
        match received {
            Received::Frame(frame) => self.on_frame(*frame, out),
            Received::Call(call, expects_answer) => self.on_deliver(call, expects_answer, out),
            Received::Emit { id, kind, args } => self.on_emit(id, kind, args, out),
            Received::Return { id, kind, args } => match self.calls.remove(id) {
                Some(call) => {
                    let event = match args {
                        Ok(args) => CallEvent::Return { kind, args },
                        Err(e) => CallEvent::Error(e),
                    };
                    Some(Effect::Call(call, CallId(id), event))
                }
                // An operation answered with a return: what it says of
                // it needs only the type.
                None => {
                    let reply = Reply::Return {
                        kind: kind.into(),
                        payload: Payload::default(),
                    };
                    self.on_result(id, Ok(reply), out)
                }
            },
        }
    }

    /// An emit of call `id` (its args decoded, or why not): a call that
    /// cannot read it is cancelled and ends with the error.
    pub(super) fn on_emit(
        &mut self,
        id: u64,
        kind: Name,
        args: Result<Args, Error>,
        out: &mut impl Outbox,
    ) -> Option<Effect> {
        let call = self.calls.get(id)?;
        let event = match args {
            Ok(args) => CallEvent::Emit { kind, args },
            Err(e) => {
                self.calls.remove(id);
                let _ = out.send(&Frame::Cancel { id });
                CallEvent::Error(e)
            }
        };
        Some(Effect::Call(call, CallId(id), event))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_read_frame_is_small() {
        // Each per-call item is moved a few times between its reading
        // and the core; the largest frames are boxed.
        let size = std::mem::size_of::<super::Received>();
        assert!(size <= 112, "{size} bytes");
    }
}
