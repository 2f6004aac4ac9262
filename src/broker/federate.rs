//! The shell's side of federation: it carries out what
//! [`Federation`](crate::federation::node::Federation) asks through its
//! [`Port`], and shows federation what concerns it: a client's publish
//! before the core sees it (the name is claimed cluster-wide first), the
//! output of stand-in connections (it goes over the links), closes.

use super::core::Core;
use super::peer::CloseReason;
use super::shell::Shell;
use super::ConnId;
use crate::error::Error;
use crate::federation::directory::Intercept;
use crate::federation::node::Port;
use crate::wire::{decode_body, Frame, NameMode};

/// The first byte of the bodies federation looks at: the frame's
/// variant (bincode writes an enum's index first, in one byte below 251).
fn tag(frame: &Frame) -> u8 {
    crate::federation::node::body_of(frame)[0]
}

/// What the shell does with a client's frame body, when federated.
pub(super) enum Seen {
    /// Hand it to the core.
    Core,
    /// Hand it to the core, then let federation check the client's claims
    /// (a rescind).
    CoreThenClaims,
    /// Federation holds it: stop reading the connection.
    Held,
    /// Answered already.
    Answered,
}

/// Looks at `body` from client `id` before the core: a publish of an
/// exclusive name is held until its claim is answered.
pub(super) fn look(shell: &Shell, core: &mut Core, id: ConnId, body: &[u8]) -> Seen {
    let Some(fed) = shell.federation() else {
        return Seen::Core;
    };
    let Some(&first) = body.first() else {
        return Seen::Core;
    };
    thread_local! {
        static TAGS: (u8, u8, u8) = (
            tag(&Frame::Publish { id: 0, session: String::new(), methods: Vec::new() }),
            tag(&Frame::PublishAs { id: 0, session: String::new(), methods: Vec::new(), mode: NameMode::Exclusive }),
            tag(&Frame::Rescind { id: 0, session: String::new() }),
        );
    }
    let (publish, publish_as, rescind) = TAGS.with(|t| *t);
    if first == rescind {
        return Seen::CoreThenClaims;
    }
    if first != publish && first != publish_as {
        return Seen::Core;
    }
    let (op, session, methods, mode) = match decode_body(body) {
        Ok(Frame::Publish {
            id,
            session,
            methods,
        }) => (id, session, methods, NameMode::Exclusive),
        Ok(Frame::PublishAs {
            id,
            session,
            methods,
            mode,
        }) => (id, session, methods, mode),
        // Bad frames are the core's to refuse.
        _ => return Seen::Core,
    };
    // Before the hello, or refused by the core's own checks of a name:
    // the core answers; nothing is claimed.
    let handshaken = core.peers.get(&id).is_some_and(|p| p.handshaken);
    if !core.reads(id) || !handshaken || session.is_empty() {
        return Seen::Core;
    }
    if let Some(local) = core.name_mode(&session) {
        if local != mode {
            let e = crate::federation::directory::mode_conflict(&session, local, mode);
            core.reply_error(id, op, e);
            return Seen::Answered;
        }
    }
    let seen = if mode == NameMode::Exclusive {
        fed.intercept_publish(id, op, &session, &methods, body)
    } else {
        fed.intercept_shared(id, op, &session, &methods, mode, body)
    };
    match seen {
        Intercept::Hold => Seen::Held,
        Intercept::Refuse(e) => {
            core.reply_error(id, op, e);
            Seen::Answered
        }
    }
}

impl Port for Shell {
    fn open_link(&self, peer: &str) -> ConnId {
        self.core_mut().connect_link(peer)
    }

    fn link_input(&self, conn: ConnId, bodies: &[Vec<u8>]) {
        {
            let mut core = self.core_mut();
            for body in bodies {
                core.receive(conn, body);
            }
        }
        self.settle();
    }

    fn link_input_refs(&self, conn: ConnId, bodies: &[&[u8]]) {
        {
            let mut core = self.core_mut();
            for body in bodies {
                core.receive(conn, body);
            }
        }
        self.settle();
    }

    fn close_link(&self, conn: ConnId, reason: Error) {
        self.core_mut().close(conn, CloseReason::Ended(reason));
        self.settle();
    }

    fn end_calls(&self, conn: ConnId, reason: Error) {
        self.core_mut().end_link_calls(conn, &reason);
        self.settle();
    }

    fn link_load(&self, conn: ConnId) -> (usize, usize) {
        self.core_ref().link_load(conn)
    }

    fn fed_limits(&self) -> (usize, usize) {
        let core = self.core_ref();
        let l = core.limits();
        (l.max_pending_per_link, l.max_nats_queued_bytes)
    }

    fn link_busy(&self, conn: ConnId) -> bool {
        self.core_ref().has_calls(conn)
    }

    fn owner(&self, name: &str) -> Option<ConnId> {
        self.core_ref().session_owner(name)
    }

    fn answer(&self, conn: ConnId, op: u64, error: Error) {
        self.core_mut().reply_error(conn, op, error);
        self.settle();
    }

    fn release(&self, conn: ConnId, body: Option<Vec<u8>>) {
        self.unhold(conn);
        if let Some(body) = body {
            self.core_mut().receive(conn, &body);
        }
        self.settle();
        self.read_again(conn);
    }

    fn match_generation(&self) -> u64 {
        self.core_ref().local_match_generation()
    }

    fn local_matches(&self) -> Vec<(String, String)> {
        self.core_ref().local_matches()
    }

    fn clear_link_matches(&self, conn: ConnId) {
        self.core_mut().clear_link_matches(conn);
    }

    fn serves_locally(&self, name: &str) -> bool {
        self.core_ref().serves_locally(name)
    }

    fn is_publisher(&self, name: &str, conn: ConnId) -> bool {
        self.core_ref().is_publisher(name, conn)
    }

    fn order_publishers(&self, name: &str, order: &[ConnId]) {
        self.core_mut().order_publishers(name, order);
        self.settle();
    }

    fn withdraw(&self, conn: ConnId, name: &str, reason: Error) {
        self.core_mut().withdraw(conn, name, reason);
        self.settle();
    }

    fn is_open(&self, conn: ConnId) -> bool {
        self.core_ref().is_open(conn)
    }

    fn deliver_as(&self, conn: ConnId, body: &[u8], caller: crate::wire::CallerInfo) {
        self.core_mut().receive_as(conn, body, caller);
        self.settle();
    }
}
