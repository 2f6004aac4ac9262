//! Who calls across a link: a call from a client of broker A to a
//! session served on broker B reaches B's publisher with the identity A
//! stamped on its client, not as a call from A's stand-in connection.
//!
//! A's core forwards a deliver to B's stand-in as `DeliverFrom`, and a
//! one-way post as `PostFrom`, likewise judged as its caller's (the
//! stand-in reads it, like a greeted client), carrying the caller's
//! [`CallerInfo`] as A made it: A's connection number, uid, gid and pid
//! (on a Unix socket, on A's host), the TLS subject or token name it
//! authenticated, the name the client gave itself. B hands the deliver
//! to its core as sent by A's stand-in *on behalf of* that caller: B's
//! policy judges the call as that caller's (its `identity`, `uid` and
//! `gid` rules), and the publisher is told that caller, marked as
//! remote: its client name gets ` (via broker A)` (or is `via broker A`
//! when it gave none). The wire's `CallerInfo` is unchanged, so every
//! client reads it as before.
//!
//! # Trust
//!
//! A federated broker is trusted to stamp its own clients, as a broker
//! is trusted by its publishers today: B does not check A's stamp (it
//! cannot: the client's socket and certificate are A's). Anyone who can
//! publish on B's inbox subject in NATS can therefore call as any
//! identity; isolate brokers by NATS accounts and subject permissions
//! (FEDERATION.md §11). The uid, gid and pid are those on A's host:
//! policies that grant by uid or gid should run on brokers whose hosts
//! share their users, or grant by TLS subject or token name instead.
//! Publishing (`own`), listening and watching by a peer's stand-in are
//! judged at the peer broker for its own clients, not again here.

use super::{body_of, ConnId, Federation, Port};
use crate::error::Error;
use crate::wire::{decode_body, CallerInfo, Frame};
use std::rc::Rc;

/// A `DeliverFrom` or `PostFrom` from a peer, as a plain deliver or
/// post: its body, its session, and who calls.
pub(super) struct Stamped {
    /// The route id (a post's: the peer broker's own id of it).
    pub id: u64,
    /// Whether it is a one-way post (nothing answers it, not even a
    /// refusal).
    pub post: bool,
    pub deliver: Vec<u8>,
    pub session: String,
    pub caller: CallerInfo,
}

/// The `DeliverFrom` or `PostFrom` in `body`, if it is one.
pub(super) fn stamped(body: &[u8]) -> Option<Stamped> {
    thread_local! {
        // The variants' tags: other frames are not decoded twice.
        static TAGS: [Option<u8>; 2] = {
            let call = |post: bool| {
                let (id, origin, timeout_ms) = (0, 0, 0);
                let (session, method) = (String::new(), String::new());
                let (payload, caller) = (crate::wire::Payload::default(), CallerInfo::default());
                let frame = if post {
                    Frame::PostFrom { id, origin, timeout_ms, session, method, payload, caller }
                } else {
                    Frame::DeliverFrom { id, origin, timeout_ms, session, method, payload, caller }
                };
                body_of(&frame).first().copied()
            };
            [call(false), call(true)]
        };
    }
    let tag = body.first().copied();
    if !TAGS.with(|t| t.contains(&tag)) {
        return None;
    }
    match decode_body(body) {
        Ok(Frame::DeliverFrom {
            id,
            origin,
            timeout_ms,
            session,
            method,
            payload,
            caller,
        }) => Some(Stamped {
            id,
            post: false,
            deliver: body_of(&Frame::Deliver {
                id,
                origin,
                timeout_ms,
                session: session.clone(),
                method,
                payload,
            }),
            session,
            caller,
        }),
        Ok(Frame::PostFrom {
            id,
            origin,
            timeout_ms,
            session,
            method,
            payload,
            caller,
        }) => Some(Stamped {
            id,
            post: true,
            deliver: body_of(&Frame::Post {
                id,
                origin,
                timeout_ms,
                session: session.clone(),
                method,
                payload,
            }),
            session,
            caller,
        }),
        _ => None,
    }
}

/// `caller`, a client of broker `peer`, marked as remote.
pub(crate) fn remote_caller(mut caller: CallerInfo, peer: &str) -> CallerInfo {
    caller.client_name = Some(match caller.client_name.take() {
        Some(name) => format!("{name} (via broker {peer})"),
        None => format!("via broker {peer}"),
    });
    caller
}

impl Federation {
    /// A stamped call or post from `peer` into the core, as its caller's;
    /// a call for a session not served here is answered `no_such_session`
    /// (added to `refused`), a post dropped; neither is forwarded on.
    pub(super) fn deliver_stamped(
        &self,
        port: &Rc<dyn Port>,
        conn: ConnId,
        peer: &str,
        call: Stamped,
        refused: &mut Vec<Vec<u8>>,
    ) {
        if !port.serves_locally(&call.session) {
            if call.post {
                return;
            }
            refused.push(body_of(&Frame::Result {
                id: call.id,
                outcome: Err(Error::no_such_session(&call.session)),
            }));
            return;
        }
        port.deliver_as(conn, &call.deliver, remote_caller(call.caller, peer));
    }
}
