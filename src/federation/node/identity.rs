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
use crate::wire::{CallerInfo, Frame};
use std::rc::Rc;

/// A `DeliverFrom` or `PostFrom` from a peer, as a plain deliver or
/// post: its body, its session, and who calls.
pub(super) struct Stamped<'a> {
    /// The route id (a post's: the peer broker's own id of it).
    pub id: u64,
    /// Whether it is a one-way post (nothing answers it, not even a
    /// refusal).
    pub post: bool,
    pub deliver: Vec<u8>,
    pub session: &'a str,
    pub caller: CallerInfo,
}

/// A deliver's (or post's) fields after its variant number, in
/// [`Frame::Deliver`]'s order (which [`Frame::DeliverFrom`],
/// [`Frame::Post`] and [`Frame::PostFrom`] share), read in place.
#[derive(serde::Deserialize)]
struct CallFields<'a> {
    id: u64,
    _origin: u64,
    _timeout_ms: u32,
    session: &'a str,
    _method: &'a str,
    _payload: &'a [u8],
}

/// The `DeliverFrom` or `PostFrom` in `body`, if it is one. Read in
/// place: the plain deliver or post is the same bytes under the other
/// variant number, without the caller (no decoding of the call into
/// owned fields and encoding it again).
pub(super) fn stamped(body: &[u8]) -> Option<Stamped<'_>> {
    let t = super::link_traffic::tags();
    let (plain_tag, post) = match body.first().copied() {
        Some(tag) if tag == t.deliver_from => (t.deliver, false),
        Some(tag) if tag == t.post_from => (t.post, true),
        _ => return None,
    };
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
    deliver.push(plain_tag);
    deliver.extend_from_slice(&rest[..used]);
    Some(Stamped {
        id: call.id,
        post,
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
    /// A stamped call or post from `peer` into the core, as its caller's;
    /// a call for a session not served here is answered `no_such_session`
    /// (added to `refused`), a post dropped; neither is forwarded on.
    pub(super) fn deliver_stamped(
        &self,
        port: &Rc<dyn Port>,
        conn: ConnId,
        peer: &str,
        call: Stamped<'_>,
        refused: &mut Vec<Vec<u8>>,
    ) {
        if !port.serves_locally(call.session) {
            if call.post {
                return;
            }
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
            assert_eq!((call.id, call.session, call.post), (300, "svc", false));
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

    #[test]
    fn a_stamped_post_read_in_place_is_the_post_and_its_caller() {
        let caller = CallerInfo {
            identity: Some("CN=bob".into()),
            ..CallerInfo::default()
        };
        let from = body_of(&Frame::PostFrom {
            id: 5,
            origin: 1,
            timeout_ms: 0,
            session: "svc".into(),
            method: "note".into(),
            payload: Payload(vec![9]),
            caller: caller.clone(),
        });
        let post = body_of(&Frame::Post {
            id: 5,
            origin: 1,
            timeout_ms: 0,
            session: "svc".into(),
            method: "note".into(),
            payload: Payload(vec![9]),
        });
        let call = stamped(&from).expect("a stamped post");
        assert_eq!((call.id, call.session, call.post), (5, "svc", true));
        assert_eq!(call.deliver, post);
        assert_eq!(call.caller, caller);
        assert!(stamped(&post).is_none());
    }
}
