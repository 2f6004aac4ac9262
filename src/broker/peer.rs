//! The broker's state and what it does with each frame.

use super::registry::{check_name, NameLimits, Registry};
use super::{BrokerConfig, BrokerStats, ConnId};
use crate::error::{Error, ErrorCode};
use crate::event_loop::{EventLoop, TimerId};
use crate::id_hash::{IdMap, IdSet};
use crate::transport::{Address, Connection, Listener, ReadOutcome, Stream};
use crate::wire::{
    encode_frame, Frame, Inbound, Reply, Routed, RoutedKind, MAGIC, PROTOCOL_VERSION,
};
use mio::Token;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

/// One connection as the broker sees it.
struct Peer {
    conn: Connection,
    handshaken: bool,
    /// Closes the connection if no hello comes in time.
    handshake_timer: Option<TimerId>,
    /// In the dirty list already.
    dirty: bool,
    /// A final notice is queued; close once it is written.
    closing: bool,
    /// Calls this peer made: its call id → route id. The peer chooses
    /// these ids, so this map keeps the keyed SipHash: colliding ids
    /// would otherwise slow the one-threaded broker for everyone.
    calls: HashMap<u64, u64>,
    /// Routes this peer serves as publisher.
    serving: IdSet<u64>,
    published: HashSet<String>,
    subscribed: HashSet<String>,
}

/// A delivery in flight: who asked, under which id, and who answers.
struct Route {
    caller: ConnId,
    caller_id: u64,
    publisher: ConnId,
    session: Rc<str>,
}

/// What the loop must deregister when the broker closes.
pub(super) type Sockets = (Vec<(Listener, Token)>, Vec<Connection>);

pub(super) struct Core {
    pub config: BrokerConfig,
    listeners: Vec<(Listener, Token)>,
    peers: IdMap<ConnId, Peer>,
    next_conn: ConnId,
    registry: Registry,
    routes: IdMap<u64, Route>,
    next_route: u64,
    dirty: Vec<ConnId>,
    flush_requested: bool,
    /// Peers to close once the current frame is handled.
    to_close: Vec<(ConnId, Option<Error>)>,
    /// Bodies of the frames read in one go, back to back (reused).
    inbox: Vec<u8>,
    /// Where each body in `inbox` ends.
    inbox_ends: Vec<usize>,
    /// Handshake timers no longer needed, for the loop to cancel.
    spent_timers: Vec<TimerId>,
    /// Connections of closed peers, for the loop to deregister.
    closed: Vec<Connection>,
    stats: BrokerStats,
}

impl Core {
    pub fn new(config: BrokerConfig) -> Core {
        Core {
            config,
            listeners: Vec::new(),
            peers: IdMap::default(),
            next_conn: 1,
            registry: Registry::default(),
            routes: IdMap::default(),
            next_route: 1,
            dirty: Vec::new(),
            flush_requested: false,
            to_close: Vec::new(),
            inbox: Vec::new(),
            inbox_ends: Vec::new(),
            spent_timers: Vec::new(),
            closed: Vec::new(),
            stats: BrokerStats::default(),
        }
    }

    pub fn add_listener(&mut self, listener: Listener, token: Token) {
        self.listeners.push((listener, token));
    }

    pub fn local_addresses(&self) -> Vec<Address> {
        self.listeners
            .iter()
            .map(|(l, _)| l.local_address())
            .collect()
    }

    pub fn stats(&self) -> BrokerStats {
        BrokerStats {
            connections: self.peers.len(),
            sessions: self.registry.len(),
            pending_calls: self.routes.len(),
            ..self.stats
        }
    }

    pub fn accept(&self, index: usize) -> Option<std::io::Result<Stream>> {
        let (listener, _) = self.listeners.get(index)?;
        match listener.accept() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
            other => Some(other),
        }
    }

    pub fn listener_count(&self) -> usize {
        self.listeners.len()
    }

    pub fn next_conn_id(&mut self) -> ConnId {
        let id = self.next_conn;
        self.next_conn += 1;
        id
    }

    /// Adds an accepted connection; false (and kept only for removal) when
    /// over the connection limit.
    pub fn add_peer(&mut self, id: ConnId, conn: Connection) -> bool {
        let over = self.peers.len() >= self.config.limits.max_connections;
        self.peers.insert(
            id,
            Peer {
                conn,
                handshaken: false,
                handshake_timer: None,
                dirty: false,
                closing: false,
                calls: HashMap::new(),
                serving: IdSet::default(),
                published: HashSet::new(),
                subscribed: HashSet::new(),
            },
        );
        !over
    }

    pub fn remove_peer_io(&mut self, id: ConnId) -> Option<Connection> {
        self.peers.remove(&id).map(|p| p.conn)
    }

    pub fn token_of(&self, id: ConnId) -> Option<Token> {
        self.peers.get(&id).map(|p| p.conn.token())
    }

    pub fn is_unhandshaken(&self, id: ConnId) -> bool {
        self.peers.get(&id).is_some_and(|p| !p.handshaken)
    }

    pub fn take_closed(&mut self) -> Vec<Connection> {
        std::mem::take(&mut self.closed)
    }

    /// Remembers the timer that closes `id` if it sends no hello in time.
    pub fn set_handshake_timer(&mut self, id: ConnId, timer: TimerId) {
        if let Some(p) = self.peers.get_mut(&id) {
            p.handshake_timer = Some(timer);
        }
    }

    /// Handshake timers whose connection said hello or closed.
    pub fn take_spent_timers(&mut self) -> Vec<TimerId> {
        std::mem::take(&mut self.spent_timers)
    }

    pub fn take_flush_request(&mut self) -> bool {
        std::mem::replace(&mut self.flush_requested, false)
    }

    /// Everything the loop must deregister when the broker closes.
    pub fn take_all(&mut self) -> Sockets {
        let listeners = std::mem::take(&mut self.listeners);
        let mut socks = std::mem::take(&mut self.closed);
        for (_, p) in self.peers.drain() {
            self.spent_timers.extend(p.handshake_timer);
            socks.push(p.conn);
        }
        self.routes.clear();
        self.registry = Registry::default();
        self.dirty.clear();
        (listeners, socks)
    }

    pub fn mark_dirty(&mut self, id: ConnId) {
        if let Some(peer) = self.peers.get_mut(&id) {
            if !peer.dirty {
                peer.dirty = true;
                self.dirty.push(id);
                self.flush_requested = true;
            }
        }
    }

    /// Reads and handles what a peer sent. Returns true when the read
    /// budget ran out with more to read.
    pub fn read_peer(&mut self, id: ConnId, hangup: bool) -> bool {
        // The bodies are copied out of the connection so that handling
        // them may touch every peer, this one included.
        let mut inbox = std::mem::take(&mut self.inbox);
        let mut ends = std::mem::take(&mut self.inbox_ends);
        let outcome = match self.peers.get_mut(&id) {
            Some(peer) if !peer.closing => peer.conn.read_bodies(hangup, |body| {
                inbox.extend_from_slice(body);
                ends.push(inbox.len());
                Ok(())
            }),
            _ => ReadOutcome::Drained,
        };
        let mut start = 0;
        for &end in &ends {
            if !self.peers.get(&id).is_some_and(|p| !p.closing) {
                break;
            }
            self.handle_body(id, &inbox[start..end]);
            self.process_closes();
            start = end;
        }
        inbox.clear();
        ends.clear();
        // Keep the room a usual turn needs, not what one large frame did.
        if inbox.capacity() > 1 << 20 {
            inbox = Vec::new();
        }
        self.inbox = inbox;
        self.inbox_ends = ends;
        // A peer closed or refused by one of these frames is finished
        // with; what its read ended with no longer matters.
        if !self.peers.get(&id).is_some_and(|p| !p.closing) {
            self.process_closes();
            return false;
        }
        let more = match outcome {
            ReadOutcome::Drained => false,
            ReadOutcome::More => true,
            ReadOutcome::Closed(e) if e.code == ErrorCode::Protocol => {
                self.stats.protocol_errors += 1;
                self.refuse(id, e);
                false
            }
            ReadOutcome::Closed(_) => {
                self.close_peer(id, None);
                false
            }
        };
        self.process_closes();
        more
    }

    pub fn flush_dirty(&mut self, lp: &EventLoop) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for id in dirty.drain(..) {
            let Some(peer) = self.peers.get_mut(&id) else {
                continue;
            };
            peer.dirty = false;
            match peer.conn.flush(lp) {
                Err(e) => self.to_close.push((id, Some(e))),
                Ok(()) if peer.closing && peer.conn.queued() == 0 => self.to_close.push((id, None)),
                Ok(()) => {}
            }
        }
        // Flushing marks nothing dirty: the list keeps its room.
        self.dirty = dirty;
        self.process_closes();
    }

    pub fn close_peer(&mut self, id: ConnId, reason: Option<Error>) {
        self.to_close.push((id, reason));
        self.process_closes();
    }

    fn process_closes(&mut self) {
        while let Some((id, _reason)) = self.to_close.pop() {
            self.close_one(id);
        }
    }

    /// Sends a last notice, then closes once it is written.
    fn refuse(&mut self, id: ConnId, error: Error) {
        let _ = self.send(id, &Frame::Refused { error });
        if let Some(peer) = self.peers.get_mut(&id) {
            peer.closing = true;
        }
        self.mark_dirty(id);
    }

    /// Queues a frame for `to`. A peer whose queue is over its limit does
    /// not read: it is cut off. A frame too large to send (a listing over
    /// `max_frame`, or a forwarded frame that grew with the broker's own
    /// ids) is returned as an error, for the caller to report to whoever
    /// asked for it: the receiver did nothing wrong.
    fn send(&mut self, to: ConnId, frame: &Frame) -> Result<(), Error> {
        self.send_with(to, |out, max_frame| encode_frame(frame, out, max_frame))
    }

    /// Forwards a routed frame to `to` under the id `to` knows it by, with
    /// the errors of [`Core::send`].
    fn forward(&mut self, to: ConnId, frame: &Routed<'_>, id: u64) -> Result<(), Error> {
        self.send_with(to, |out, max_frame| {
            frame.encode_with_id(id, out, max_frame)
        })
    }

    fn send_with(
        &mut self,
        to: ConnId,
        encode: impl FnOnce(&mut Vec<u8>, usize) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let Some(peer) = self.peers.get_mut(&to) else {
            return Ok(());
        };
        match peer.conn.send_with(encode) {
            Ok(()) => {
                self.mark_dirty(to);
                Ok(())
            }
            Err(e) if peer.conn.queued() > self.config.limits.max_queued_bytes => {
                self.stats.slow_consumers += 1;
                self.to_close.push((to, Some(e)));
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Answers `id` on `to`; an answer too large to send becomes that
    /// error.
    fn reply(&mut self, to: ConnId, id: u64, outcome: Result<Reply, Error>) {
        if let Err(e) = self.send(to, &Frame::Result { id, outcome }) {
            let _ = self.send(
                to,
                &Frame::Result {
                    id,
                    outcome: Err(e),
                },
            );
        }
    }

    /// Ends a call that cannot go on because one of its frames is too
    /// large to forward: the caller gets `error`, and the publisher, if
    /// it already has the call, a cancel.
    fn abort_route(&mut self, route: u64, error: Error, tell_publisher: bool) {
        let Some(r) = self.routes.remove(&route) else {
            return;
        };
        if let Some(c) = self.peers.get_mut(&r.caller) {
            c.calls.remove(&r.caller_id);
        }
        if let Some(p) = self.peers.get_mut(&r.publisher) {
            p.serving.remove(&route);
        }
        if tell_publisher {
            let _ = self.send(r.publisher, &Frame::Cancel { id: route });
        }
        self.reply(r.caller, r.caller_id, Err(error));
    }

    fn handle_body(&mut self, id: ConnId, body: &[u8]) {
        match Inbound::parse(body) {
            Ok(Inbound::Routed(frame)) => self.handle_routed(id, frame),
            Ok(Inbound::Other(frame)) => self.handle(id, frame),
            Err(e) => {
                self.stats.protocol_errors += 1;
                self.refuse(id, e.into());
            }
        }
    }

    /// A call's frames: checked against the route, then forwarded with
    /// only the id rewritten.
    fn handle_routed(&mut self, id: ConnId, frame: Routed<'_>) {
        if !self.peers.get(&id).is_some_and(|p| p.handshaken) {
            self.stats.protocol_errors += 1;
            return self.refuse(id, expected_hello(frame.kind_name()));
        }
        match frame.kind {
            RoutedKind::Deliver { session, method } => {
                match self.route(id, frame.id, session, method) {
                    Ok((publisher, route)) => {
                        if let Err(e) = self.forward(publisher, &frame, route) {
                            self.abort_route(route, e, false);
                        }
                    }
                    Err(e) => self.reply(id, frame.id, Err(e)),
                }
            }
            RoutedKind::Emit => match self.routes.get(&frame.id) {
                Some(r) if r.publisher == id => {
                    let (caller, call) = (r.caller, r.caller_id);
                    if let Err(e) = self.forward(caller, &frame, call) {
                        self.abort_route(frame.id, e, true);
                    }
                }
                _ => self.stats.dropped_stray += 1,
            },
            RoutedKind::Result => match self.routes.get(&frame.id) {
                Some(r) if r.publisher == id => {
                    let route = frame.id;
                    let r = self.routes.remove(&route).expect("checked above");
                    if let Some(p) = self.peers.get_mut(&id) {
                        p.serving.remove(&route);
                    }
                    if let Some(c) = self.peers.get_mut(&r.caller) {
                        c.calls.remove(&r.caller_id);
                    }
                    if let Err(e) = self.forward(r.caller, &frame, r.caller_id) {
                        self.reply(r.caller, r.caller_id, Err(e));
                    }
                }
                _ => self.stats.dropped_stray += 1,
            },
            RoutedKind::Recall => {
                let route = self
                    .peers
                    .get(&id)
                    .and_then(|p| p.calls.get(&frame.id))
                    .copied();
                match route.and_then(|r| self.routes.get(&r).map(|x| (r, x.publisher))) {
                    Some((route, publisher)) => {
                        if let Err(e) = self.forward(publisher, &frame, route) {
                            self.abort_route(route, e, true);
                        }
                    }
                    None => self.stats.dropped_stray += 1,
                }
            }
        }
    }

    fn handle(&mut self, id: ConnId, frame: Frame) {
        let handshaken = self.peers.get(&id).is_some_and(|p| p.handshaken);
        if !handshaken {
            return self.handshake(id, frame);
        }
        match frame {
            Frame::Publish {
                id: op,
                session,
                methods,
            } => {
                let result = self.publish(id, &session, methods);
                self.reply(id, op, result.map(|()| Reply::Done));
            }
            Frame::Rescind { id: op, session } => {
                let result = self.rescind(id, &session);
                self.reply(id, op, result.map(|()| Reply::Done));
            }
            Frame::Listing { id: op } => {
                let list = self.registry.listing();
                self.reply(id, op, Ok(Reply::Sessions(list)));
            }
            Frame::Subscribe { id: op, session } => {
                let result = self.subscribe(id, &session);
                self.reply(id, op, result.map(Reply::Methods));
            }
            Frame::Unsubscribe { id: op, session } => {
                let result = self.unsubscribe(id, &session);
                self.reply(id, op, result.map(|()| Reply::Done));
            }
            Frame::Deliver { .. }
            | Frame::Emit { .. }
            | Frame::Recall { .. }
            | Frame::Result { .. } => {
                unreachable!("Inbound::parse hands these kinds over as routed frames")
            }
            Frame::Cancel { id: call } => {
                let route = self.peers.get_mut(&id).and_then(|p| p.calls.remove(&call));
                if let Some(r) =
                    route.and_then(|route| self.routes.remove(&route).map(|r| (route, r)))
                {
                    let (route, r) = r;
                    if let Some(p) = self.peers.get_mut(&r.publisher) {
                        p.serving.remove(&route);
                    }
                    let _ = self.send(r.publisher, &Frame::Cancel { id: route });
                }
            }
            Frame::Custom { kind, id: op, .. } => {
                let e = Error::new(
                    ErrorCode::Protocol,
                    format!("Unknown message type '{kind}'"),
                );
                self.reply(id, op, Err(e));
            }
            other @ (Frame::Hello { .. }
            | Frame::Welcome { .. }
            | Frame::Refused { .. }
            | Frame::SessionGone { .. }) => {
                self.stats.protocol_errors += 1;
                let e = Error::new(
                    ErrorCode::Protocol,
                    format!("a client may not send '{}' here", other.kind_name()),
                );
                self.refuse(id, e);
            }
        }
    }

    fn handshake(&mut self, id: ConnId, frame: Frame) {
        let refusal = match frame {
            Frame::Hello {
                magic,
                version,
                token,
            } => {
                if magic != MAGIC {
                    Some(Error::new(ErrorCode::Protocol, "bad magic in hello"))
                } else if version != PROTOCOL_VERSION {
                    Some(Error::new(
                        ErrorCode::Refused,
                        format!(
                            "protocol version {version} is not supported (this broker speaks {PROTOCOL_VERSION})"
                        ),
                    ))
                } else if self.config.token.is_some() && token != self.config.token {
                    Some(Error::new(ErrorCode::Refused, "wrong or missing token"))
                } else {
                    None
                }
            }
            other => Some(expected_hello(other.kind_name())),
        };
        match refusal {
            Some(e) => {
                if e.code == ErrorCode::Protocol {
                    self.stats.protocol_errors += 1;
                }
                self.refuse(id, e);
            }
            None => {
                if let Some(p) = self.peers.get_mut(&id) {
                    p.handshaken = true;
                    self.spent_timers.extend(p.handshake_timer.take());
                }
                let _ = self.send(
                    id,
                    &Frame::Welcome {
                        version: PROTOCOL_VERSION,
                        connection_id: id,
                    },
                );
            }
        }
    }

    fn name_limits(&self) -> NameLimits {
        NameLimits {
            max_name: self.config.limits.max_name,
            max_methods: self.config.limits.max_methods,
        }
    }

    fn publish(&mut self, id: ConnId, session: &str, methods: Vec<String>) -> Result<(), Error> {
        let max = self.config.limits.max_sessions_per_connection;
        let count = self.peers.get(&id).map_or(0, |p| p.published.len());
        if count >= max && !session.is_empty() && self.registry.get(session).is_none() {
            return Err(Error::new(
                ErrorCode::LimitExceeded,
                format!("this connection already publishes {count} sessions (limit {max})"),
            ));
        }
        let limits = self.name_limits();
        self.registry.publish(session, methods, id, limits)?;
        if let Some(p) = self.peers.get_mut(&id) {
            p.published.insert(session.to_string());
        }
        Ok(())
    }

    fn rescind(&mut self, id: ConnId, session: &str) -> Result<(), Error> {
        let removed = self.registry.rescind(session, id)?;
        if let Some(p) = self.peers.get_mut(&id) {
            p.published.remove(session);
        }
        let reason = Error::new(
            ErrorCode::NoSuchSession,
            format!("Session '{session}' was rescinded"),
        );
        self.tell_subscribers(session, removed.subscribers, reason);
        Ok(())
    }

    fn tell_subscribers(&mut self, session: &str, subscribers: IdSet<ConnId>, reason: Error) {
        for sub in subscribers {
            if let Some(p) = self.peers.get_mut(&sub) {
                p.subscribed.remove(session);
            }
            let _ = self.send(
                sub,
                &Frame::SessionGone {
                    session: session.to_string(),
                    reason: reason.clone(),
                },
            );
        }
    }

    fn subscribe(&mut self, id: ConnId, session: &str) -> Result<Vec<String>, Error> {
        check_name("session name", session, self.config.limits.max_name)?;
        let s = self
            .registry
            .get_mut(session)
            .ok_or_else(|| Error::no_such_session(session))?;
        s.subscribers.insert(id);
        let methods = s.methods.clone();
        if let Some(p) = self.peers.get_mut(&id) {
            p.subscribed.insert(session.to_string());
        }
        Ok(methods)
    }

    fn unsubscribe(&mut self, id: ConnId, session: &str) -> Result<(), Error> {
        if session.is_empty() {
            return Err(Error::new(
                ErrorCode::InvalidArgument,
                "the session name is empty",
            ));
        }
        let was = self
            .peers
            .get_mut(&id)
            .is_some_and(|p| p.subscribed.remove(session));
        if !was {
            return Err(Error::new(
                ErrorCode::NotSubscribed,
                format!("Unknown session '{session}'"),
            ));
        }
        if let Some(s) = self.registry.get_mut(session) {
            s.subscribers.remove(&id);
        }
        Ok(())
    }

    /// Checks a deliver and records its route.
    fn route(
        &mut self,
        id: ConnId,
        call: u64,
        session: &str,
        method: &str,
    ) -> Result<(ConnId, u64), Error> {
        // A hostile or broken peer may send what a client refuses to.
        if session.is_empty() || method.is_empty() {
            return Err(Error::new(
                ErrorCode::InvalidArgument,
                "a call needs a session and a method (a name is empty)",
            ));
        }
        let max = self.config.limits.max_pending_per_connection;
        let caller = self.peers.get(&id).expect("handled peers exist");
        if caller.calls.contains_key(&call) {
            return Err(Error::new(
                ErrorCode::InvalidArgument,
                format!("call id {call} is already in flight on this connection"),
            ));
        }
        if caller.calls.len() >= max {
            return Err(Error::new(
                ErrorCode::LimitExceeded,
                format!("{max} calls are already waiting for results on this connection"),
            ));
        }
        let s = self
            .registry
            .get(session)
            .ok_or_else(|| Error::no_such_session(session))?;
        if !s.has_method(method) {
            return Err(Error::new(
                ErrorCode::NoSuchMethod,
                format!("Session '{session}' has no method '{method}'"),
            ));
        }
        let (publisher, session) = (s.publisher, s.name.clone());
        let route = self.next_route;
        self.next_route += 1;
        self.routes.insert(
            route,
            Route {
                caller: id,
                caller_id: call,
                publisher,
                session,
            },
        );
        if let Some(p) = self.peers.get_mut(&id) {
            p.calls.insert(call, route);
        }
        if let Some(p) = self.peers.get_mut(&publisher) {
            p.serving.insert(route);
        }
        Ok((publisher, route))
    }

    /// Forgets a connection and settles everything it was part of.
    fn close_one(&mut self, id: ConnId) {
        let Some(peer) = self.peers.remove(&id) else {
            return;
        };
        self.spent_timers.extend(peer.handshake_timer);
        for name in peer.published {
            if let Some(s) = self.registry.remove(&name) {
                let reason = Error::new(
                    ErrorCode::PublisherGone,
                    format!("the publisher of '{name}' disconnected"),
                );
                self.tell_subscribers(&name, s.subscribers, reason);
            }
        }
        for route in peer.serving {
            if let Some(r) = self.routes.remove(&route) {
                if let Some(c) = self.peers.get_mut(&r.caller) {
                    c.calls.remove(&r.caller_id);
                }
                let e = Error::new(
                    ErrorCode::PublisherGone,
                    format!(
                        "the publisher of '{}' disconnected before answering",
                        r.session
                    ),
                );
                self.reply(r.caller, r.caller_id, Err(e));
            }
        }
        for (_, route) in peer.calls {
            if let Some(r) = self.routes.remove(&route) {
                if let Some(p) = self.peers.get_mut(&r.publisher) {
                    p.serving.remove(&route);
                }
                let _ = self.send(r.publisher, &Frame::Cancel { id: route });
            }
        }
        for name in peer.subscribed {
            if let Some(s) = self.registry.get_mut(&name) {
                s.subscribers.remove(&id);
            }
        }
        self.closed.push(peer.conn);
    }
}

/// Why a connection that sent `kind` before its hello is refused.
fn expected_hello(kind: &str) -> Error {
    Error::new(ErrorCode::Protocol, format!("expected hello, got '{kind}'"))
}
