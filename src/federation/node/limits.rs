//! Federation's limits on what goes toward NATS (design §10): a frame
//! over the server's `max_payload`, calls pending per link
//! (`max-pending-per-link`), bytes queued toward NATS
//! (`max-nats-queued-bytes`). Each fails the one call concerned with
//! `limit_exceeded`, never the link:
//!
//! * a call (deliver) from here: its caller is answered at once, and
//!   nothing crosses;
//! * a recall from here: its caller is answered, and the call is
//!   cancelled at the other broker;
//! * an emit or a result toward the other broker's caller: that caller
//!   is answered `limit_exceeded` instead (a small result crosses), and
//!   for an emit the publisher here is cancelled;
//! * a one-way post is dropped, with a warning.
//!
//! Separate from the data path (`link_traffic`): this is only the
//! decision of what may cross, and what to say instead.

use super::{body_of, Federation};
use crate::error::{Error, ErrorCode};
use crate::federation::link::Envelope;
use crate::wire::{Frame, Inbound, RoutedKind};

/// What [`Federation::screen`] decided for a peer's waiting frames.
#[derive(Debug, Default)]
pub(super) struct Screened {
    /// Frames to send over the link, in order.
    pub pass: Vec<Vec<u8>>,
    /// Frames to hand to the core as if the peer's stand-in connection
    /// had sent them (answers and cancels for refused frames), once the
    /// link's frames are sent.
    pub inject: Vec<Vec<u8>>,
}

/// The limits in force for one flush.
#[derive(Debug, Clone, Copy)]
pub(super) struct FlushLimits {
    /// The NATS server's `max_payload`.
    pub max_payload: usize,
    /// Bytes already queued toward NATS.
    pub queued: usize,
    /// `max-nats-queued-bytes`.
    pub max_queued: usize,
    /// Calls from here the peer serves now, beyond
    /// `max-pending-per-link` (the newest delivers are refused).
    pub excess_pending: usize,
}

/// What screening needs to know of a frame toward a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A call: a plain deliver, or one stamped with its caller
    /// (`DeliverFrom`, how calls cross links).
    Deliver,
    Emit,
    Recall,
    Result,
    Post,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Deliver => "deliver",
            Kind::Emit => "emit",
            Kind::Recall => "recall",
            Kind::Result => "result",
            Kind::Post => "post",
        }
    }
}

/// The call id and kind of a frame that belongs to a call; None for any
/// other frame (they always cross).
fn call_frame(body: &[u8]) -> Option<(u64, Kind)> {
    match Inbound::parse(body).ok()? {
        Inbound::Routed(r) => {
            let kind = match r.kind {
                RoutedKind::Deliver { .. } => Kind::Deliver,
                RoutedKind::Emit => Kind::Emit,
                RoutedKind::Recall => Kind::Recall,
                RoutedKind::Result { .. } => Kind::Result,
                RoutedKind::Post { .. } => Kind::Post,
            };
            Some((r.id, kind))
        }
        Inbound::Other(Frame::DeliverFrom { id, .. }) => Some((id, Kind::Deliver)),
        Inbound::Other(Frame::PostFrom { id, .. }) => Some((id, Kind::Post)),
        _ => None,
    }
}

impl Federation {
    /// Splits `frames` waiting for `peer` into those that may cross and
    /// the answers that replace the others.
    pub(super) fn screen(&self, peer: &str, frames: Vec<Vec<u8>>, l: FlushLimits) -> Screened {
        // The usual case, decided without reading a frame: all of them
        // fit, the queue has room, no call is over the pending limit.
        let total: usize = frames.iter().map(Vec::len).sum();
        if l.excess_pending == 0
            && l.queued + total <= l.max_queued
            && frames
                .iter()
                .all(|f| Envelope::frames_size([f.len()]) <= l.max_payload)
        {
            return Screened {
                pass: frames,
                inject: Vec::new(),
            };
        }
        let mut out = Screened::default();
        let mut queued = l.queued;
        // The newest delivers are the ones over the pending limit (the
        // count is only needed when some are).
        let first_refused = if l.excess_pending == 0 {
            usize::MAX
        } else {
            let delivers = frames
                .iter()
                .filter(|f| matches!(call_frame(f), Some((_, Kind::Deliver))))
                .count();
            delivers.saturating_sub(l.excess_pending)
        };
        let mut deliver_index = 0;
        for f in frames {
            let Some((id, kind)) = call_frame(&f) else {
                queued += f.len();
                out.pass.push(f);
                continue;
            };
            let is_deliver = kind == Kind::Deliver;
            let too_large = Envelope::frames_size([f.len()]) > l.max_payload;
            // Results may take the queue past its limit (they end calls);
            // what starts or feeds a call may not.
            let data = kind != Kind::Result;
            let queue_full = data && queued + f.len() > l.max_queued;
            let over_pending = is_deliver && deliver_index >= first_refused;
            if is_deliver {
                deliver_index += 1;
            }
            let why = if too_large {
                format!(
                    "a {} of {} bytes is over the NATS server's max_payload of {} (toward broker {peer})",
                    kind.name(),
                    f.len(),
                    l.max_payload
                )
            } else if queue_full {
                format!(
                    "{} bytes are queued toward NATS (max-nats-queued-bytes is {}): the {} toward broker {peer} is refused",
                    queued, l.max_queued, kind.name()
                )
            } else if over_pending {
                format!("too many calls are waiting for broker {peer} (max-pending-per-link)")
            } else {
                queued += f.len();
                out.pass.push(f);
                continue;
            };
            log::warn!(broker = self.config.broker_id.as_str(), peer = peer; "{why}");
            self.state.borrow_mut().counters.limits_exceeded += 1;
            let error = Error::new(ErrorCode::LimitExceeded, why);
            let result = |id| {
                body_of(&Frame::Result {
                    id,
                    outcome: Err(error.clone()),
                })
            };
            match kind {
                Kind::Deliver => out.inject.push(result(id)),
                Kind::Recall => {
                    out.inject.push(result(id));
                    out.pass.push(body_of(&Frame::Cancel { id }));
                }
                Kind::Emit => {
                    out.inject.push(body_of(&Frame::Cancel { id }));
                    out.pass.push(result(id));
                }
                Kind::Result => out.pass.push(result(id)),
                Kind::Post => {}
            }
        }
        out
    }
}
