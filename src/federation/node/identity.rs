//! Who calls across a link: a call from a client of broker A to a
//! session served on broker B reaches B's publisher with the identity A
//! stamped on its client, not as a call from A's stand-in connection.
//!
//! A's core forwards a deliver to B's stand-in as `DeliverFrom` (the
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
use crate::wire::{CallerInfo, Frame};
use std::rc::Rc;

/// A `DeliverFrom` from a peer, as a plain deliver: its body, its
/// session, and who calls.
pub(super) struct Stamped<'a> {
    /// The route id.
    pub id: u64,
    pub deliver: Vec<u8>,
    pub session: &'a str,
    pub caller: CallerInfo,
}

/// A deliver's fields after its variant number, in [`Frame::Deliver`]'s
/// (and [`Frame::DeliverFrom`]'s) order, read in place.
#[derive(serde::Deserialize)]
struct CallFields<'a> {
    id: u64,
    _origin: u64,
    _timeout_ms: u32,
    session: &'a str,
    _method: &'a str,
    _payload: &'a [u8],
}

/// The variant numbers of [`Frame::Deliver`] and [`Frame::DeliverFrom`]
/// (one byte each: bincode writes an index below 251 so).
fn tags() -> (u8, u8) {
    thread_local! {
        static TAGS: (u8, u8) = {
            let session = String::new();
            let method = String::new();
            let payload = crate::wire::Payload::default();
            let deliver = body_of(&Frame::Deliver {
                id: 0,
                origin: 0,
                timeout_ms: 0,
                session: session.clone(),
                method: method.clone(),
                payload: payload.clone(),
            });
            let from = body_of(&Frame::DeliverFrom {
                id: 0,
                origin: 0,
                timeout_ms: 0,
                session,
                method,
                payload,
                caller: CallerInfo::default(),
            });
            (deliver[0], from[0])
        };
    }
    TAGS.with(|t| *t)
}

/// The `DeliverFrom` in `body`, if it is one. Read in place: the deliver
/// is the same bytes under the other variant number, without the caller
/// (no decoding of the call into owned fields and encoding it again).
pub(super) fn stamped(body: &[u8]) -> Option<Stamped<'_>> {
    let (deliver_tag, from_tag) = tags();
    if body.first().copied() != Some(from_tag) {
        return None;
    }
    let config = bincode::config::standard().with_limit::<{ crate::wire::DECODE_LIMIT }>();
    let rest = &body[1..];
    let (call, used) =
        bincode::serde::borrow_decode_from_slice::<CallFields, _>(rest, config).ok()?;
    let (caller, caller_len) =
        bincode::serde::decode_from_slice::<CallerInfo, _>(&rest[used..], config).ok()?;
    if used + caller_len != rest.len() {
        return None;
    }
    let mut deliver = Vec::with_capacity(1 + used);
    deliver.push(deliver_tag);
    deliver.extend_from_slice(&rest[..used]);
    Some(Stamped {
        id: call.id,
        deliver,
        session: call.session,
        caller,
    })
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
    /// A stamped call from `peer` into the core, as its caller's; one for
    /// a session not served here is answered `no_such_session` (added to
    /// `refused`), never forwarded on.
    pub(super) fn deliver_stamped(
        &self,
        port: &Rc<dyn Port>,
        conn: ConnId,
        peer: &str,
        call: Stamped<'_>,
        refused: &mut Vec<Vec<u8>>,
    ) {
        if !port.serves_locally(call.session) {
            refused.push(body_of(&Frame::Result {
                id: call.id,
                outcome: Err(Error::no_such_session(call.session)),
            }));
            return;
        }
        port.deliver_as(conn, &call.deliver, remote_caller(call.caller, peer));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Payload;

    #[test]
    fn a_stamped_call_read_in_place_is_the_deliver_and_its_caller() {
        let caller = CallerInfo {
            connection: 7,
            uid: Some(1000),
            gid: None,
            pid: Some(42),
            identity: Some("CN=alice".into()),
            client_name: Some("tool".into()),
        };
        for caller in [caller, CallerInfo::default()] {
            let from = body_of(&Frame::DeliverFrom {
                id: 300,
                origin: 9,
                timeout_ms: 1500,
                session: "svc".into(),
                method: "ping".into(),
                payload: Payload(vec![1, 2, 3]),
                caller: caller.clone(),
            });
            let call = stamped(&from).expect("a stamped call");
            let deliver = body_of(&Frame::Deliver {
                id: 300,
                origin: 9,
                timeout_ms: 1500,
                session: "svc".into(),
                method: "ping".into(),
                payload: Payload(vec![1, 2, 3]),
            });
            assert_eq!((call.id, call.session), (300, "svc"));
            assert_eq!(call.deliver, deliver);
            assert_eq!(call.caller, caller);
            // Not one: a plain deliver, a cut or a longer body.
            assert!(stamped(&deliver).is_none());
            assert!(stamped(&from[..from.len() - 1]).is_none());
            let mut longer = from.clone();
            longer.push(0);
            assert!(stamped(&longer).is_none());
        }
    }
}
