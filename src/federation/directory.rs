//! The directory (design §7): which broker serves which session,
//! cluster-wide, in a JetStream KV bucket.
//!
//! * A publish by a local client claims its name first with a
//!   create-if-absent put (one winner cluster-wide); the client's
//!   connection is held until the claim is answered, then the publish
//!   goes to the core (or the client gets `already_exists`).
//! * A rescind or a publisher's disconnect deletes the claim
//!   (compare-and-set on its revision, with the reason in a header).
//! * Every broker watches the bucket (an ordered push consumer, made
//!   again after a gap, a reconnect, or three idle heartbeats of
//!   silence) and keeps a cache; other brokers' sessions are published
//!   in the core by their stand-in connections, so a listing is local
//!   plus cache, and subscribing, calling and `no_such_method` work as
//!   for local sessions.
//! * A dead broker's entries are deleted by whoever declares it dead; a
//!   broker deletes its own entries of an earlier incarnation.
//!
//! This file holds the directory's state and its requests to the bucket;
//! `claims` the writing side (this broker's clients' names) and `cache`
//! the reading side (the watch, other brokers' names).

mod cache;
mod claims;
mod shared;

pub(crate) use shared::mode_conflict;

use super::config::FederationConfig;
use super::nats::js::{self, Kv, KvOp, Watch, ERR_WRONG_LAST_SEQUENCE, WATCH_IDLE_HEARTBEAT};
use super::nats::Msg;
use super::node::{body_of, ConnId, Federation, SYNTHETIC_OPS};
use crate::error::{Error, ErrorCode};
use crate::wire::Frame;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long a watch may be silent before it is made again: its consumer
/// sends a heartbeat every [`WATCH_IDLE_HEARTBEAT`], so a few missed in a
/// row mean the consumer is gone (its server went down, JetStream lost
/// it, its creation was refused).
const WATCH_SILENCE: Duration = WATCH_IDLE_HEARTBEAT.saturating_mul(3);

/// A directory entry's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Value {
    broker: String,
    inc: u64,
    methods: Vec<String>,
    /// A `queue` or `balance` name: its mode and publishers (`broker`,
    /// `inc` and `methods` are then empty). Absent for `exclusive`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    shared: Option<shared::Shared>,
}

/// A session served by another broker.
#[derive(Debug, Clone)]
struct Remote {
    broker: String,
    methods: Vec<String>,
    revision: u64,
}

/// A name this broker holds in the bucket for one of its clients.
#[derive(Debug, Clone)]
struct Claim {
    conn: ConnId,
    revision: u64,
    methods: Vec<String>,
}

/// A publish waiting for its claim.
#[derive(Debug, Clone)]
struct Pending {
    /// When the client's publish arrived.
    since: Instant,
    conn: ConnId,
    op: u64,
    name: String,
    methods: Vec<String>,
    body: Vec<u8>,
}

#[derive(Debug)]
enum Op {
    Stream {
        replicas: u32,
    },
    Consumer,
    Claim(Pending),
    ClaimGet(Pending),
    Delete,
    /// A name of ours deleted by someone who thought us dead, claimed
    /// again.
    Reclaim {
        name: String,
        conn: ConnId,
    },
    /// A change to a shared name's list.
    SharedPut(shared::SharedOp),
    /// A shared name's entry read again after a conflict.
    SharedGet(shared::SharedOp),
}

/// What the shell does with a client's publish when federated.
#[derive(Debug)]
pub(crate) enum Intercept {
    /// Held: stop reading the connection until federation releases it.
    Hold,
    /// Refused at once with this error.
    Refuse(Error),
}

/// The directory's state.
#[derive(Debug)]
pub(crate) struct Directory {
    kv: Kv,
    cache: HashMap<String, Remote>,
    /// `queue` and `balance` names: their revision and list (this
    /// broker's members included).
    shared: HashMap<String, (u64, shared::Shared)>,
    /// The revision of the delete marker of names deleted last (what a
    /// create over it must expect).
    markers: HashMap<String, u64>,
    /// This broker's clients whose join of a shared name is in flight.
    joining: Vec<(String, ConnId)>,
    /// This broker's members of shared names, as they joined.
    own: HashMap<(String, ConnId), shared::Member>,
    claims: HashMap<String, Claim>,
    ops: HashMap<u64, (Op, Instant)>,
    /// Claims waiting for the bucket to exist.
    waiting: Vec<(Pending, Instant)>,
    ready: bool,
    watch_sid: Option<u64>,
    watch: Watch,
    /// When the watch was last heard from (a message on its deliver
    /// subject, seen at a tick), or made.
    watch_heard: Instant,
    /// Whether a message reached the watch since the last tick: set per
    /// message, so that only the tick reads the clock.
    watch_fresh: bool,
    /// Watches made again since the watch was last heard (logged once:
    /// without a quorum, JetStream refuses them every few seconds).
    watch_remakes: u32,
    next_op: u64,
    /// This broker's id.
    me: String,
}

/// The key of a session name: its bytes in hex (any name fits the key
/// alphabet, and two names never share a key).
fn key_of(name: &str) -> String {
    name.bytes().map(|b| format!("{b:02x}")).collect()
}

fn name_of(key: &str) -> Option<String> {
    if key.len() % 2 != 0 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..key.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(key.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

impl Directory {
    pub fn new(config: &FederationConfig) -> Result<Directory, Error> {
        let kv =
            Kv::new(&config.bucket()).map_err(|e| Error::new(ErrorCode::InvalidArgument, e))?;
        Ok(Directory {
            kv,
            cache: HashMap::new(),
            shared: HashMap::new(),
            markers: HashMap::new(),
            joining: Vec::new(),
            own: HashMap::new(),
            claims: HashMap::new(),
            ops: HashMap::new(),
            waiting: Vec::new(),
            ready: false,
            watch_sid: None,
            watch: Watch::new(0),
            watch_heard: Instant::now(),
            watch_fresh: false,
            watch_remakes: 0,
            next_op: SYNTHETIC_OPS,
            me: config.broker_id.clone(),
        })
    }

    /// Sessions of other brokers in the cache.
    pub fn remote_count(&self) -> usize {
        self.cache.len()
            + self
                .shared
                .values()
                .filter(|(_, s)| s.members.iter().any(|m| m.broker != self.me))
                .count()
    }

    fn claims_methods(&self, name: &str) -> Option<Vec<String>> {
        self.claims.get(name).map(|c| c.methods.clone())
    }

    /// Whether this broker holds, or is making, a claim of `name`.
    fn claim_known(&self, name: &str) -> bool {
        self.claims.contains_key(name)
            || self.waiting.iter().any(|(p, _)| p.name == name)
            || self.ops.values().any(|(op, _)| {
                matches!(op, Op::Claim(p) | Op::ClaimGet(p) if p.name == name)
                    || matches!(op, Op::Reclaim { name: n, .. } if n == name)
            })
    }

    /// Whether the cache holds a session of `peer`.
    #[allow(dead_code)]
    pub fn serves_any(&self, peer: &str) -> bool {
        self.cache.values().any(|r| r.broker == peer)
            || self
                .shared
                .values()
                .any(|(_, s)| s.members.iter().any(|m| m.broker == peer))
    }

    /// The shared names `peer` publishes.
    pub fn shared_of(&self, peer: &str) -> Vec<String> {
        self.shared
            .iter()
            .filter(|(_, (_, s))| s.members.iter().any(|m| m.broker == peer))
            .map(|(n, _)| n.clone())
            .collect()
    }

    fn synthetic(&mut self) -> u64 {
        self.next_op += 1;
        self.next_op
    }

    /// Publish frames for every cached session of `peer` (for its new
    /// stand-in connection).
    pub fn publishes_of(&mut self, peer: &str) -> Vec<Vec<u8>> {
        let mine: Vec<(String, Vec<String>)> = self
            .cache
            .iter()
            .filter(|(_, r)| r.broker == peer)
            .map(|(n, r)| (n.clone(), r.methods.clone()))
            .collect();
        let shared: Vec<(String, Vec<String>, crate::wire::NameMode)> = self
            .shared
            .iter()
            .filter_map(|(n, (_, s))| {
                let m = s.members.iter().find(|m| m.broker == peer)?;
                Some((n.clone(), m.methods.clone(), s.mode))
            })
            .collect();
        let mut out: Vec<Vec<u8>> = mine
            .into_iter()
            .map(|(session, methods)| {
                let id = self.synthetic();
                body_of(&Frame::Publish {
                    id,
                    session,
                    methods,
                })
            })
            .collect();
        for (session, methods, mode) in shared {
            let id = self.synthetic();
            out.push(body_of(&Frame::PublishAs {
                id,
                session,
                methods,
                mode,
            }));
        }
        out
    }
}

impl Federation {
    fn dir_request(
        &self,
        subject: &str,
        headers: Option<&super::nats::Headers>,
        payload: &[u8],
        op: Op,
    ) -> bool {
        let Some(nats) = self.nats() else {
            return false;
        };
        match nats.request(subject, headers, payload) {
            Ok(token) => {
                self.state
                    .borrow_mut()
                    .dir
                    .ops
                    .insert(token, (op, Instant::now()));
                true
            }
            Err(e) => {
                log::warn!(broker = self.config.broker_id.as_str(); "directory request failed: {e}");
                false
            }
        }
    }

    /// Connected to NATS: the bucket is made (first time) or the watch
    /// restarted where it was (after a reconnect).
    pub(crate) fn dir_connected(&self) {
        let ready = self.state.borrow().dir.ready;
        if ready {
            // After a reconnect the whole bucket is read again: entries
            // missed meanwhile (or dropped with peers declared dead)
            // come back, unchanged ones change nothing.
            self.state.borrow_mut().dir.watch = Watch::new(0);
            self.start_watch();
        } else {
            self.create_stream(self.replicas());
        }
    }

    /// The directory's copies: `kv_replicas`, at most one per server of
    /// the cluster.
    fn replicas(&self) -> u32 {
        let servers = self.state.borrow().cluster_size.max(1);
        self.config.kv_replicas.clamp(1, servers)
    }

    fn create_stream(&self, replicas: u32) {
        let (subject, body) = self.state.borrow().dir.kv.create_request(replicas);
        self.dir_request(&subject, None, &body, Op::Stream { replicas });
    }

    fn start_watch(&self) {
        let Some(nats) = self.nats() else { return };
        let old = self.state.borrow_mut().dir.watch_sid.take();
        if let Some(sid) = old {
            nats.unsubscribe(sid);
        }
        let inbox = nats.new_inbox();
        let Ok(sid) = nats.subscribe(&inbox, None) else {
            return;
        };
        let (subject, body) = {
            let mut st = self.state.borrow_mut();
            st.dir.watch_sid = Some(sid);
            st.dir.watch_heard = Instant::now();
            let last = st.dir.watch.last_stream_seq();
            st.dir.watch = Watch::new(last);
            let from = (last > 0).then_some(last + 1);
            st.dir.kv.watch_request(&inbox, from)
        };
        self.dir_request(&subject, None, &body, Op::Consumer);
    }

    pub(crate) fn dir_reply(&self, token: u64, msg: &Msg) {
        let op = self.state.borrow_mut().dir.ops.remove(&token);
        let Some((op, _)) = op else { return };
        match op {
            Op::Stream { replicas } => match js::parse_response(msg) {
                Ok(_) => {
                    let waiting = {
                        let mut st = self.state.borrow_mut();
                        st.dir.ready = true;
                        std::mem::take(&mut st.dir.waiting)
                    };
                    self.start_watch();
                    for (p, _) in waiting {
                        let (conn, op) = (p.conn, p.op);
                        if !self.claim(p, 0) {
                            if let Some(port) = self.port.upgrade() {
                                port.answer(conn, op, unavailable("NATS is not connected"));
                                port.release(conn, None);
                            }
                        }
                    }
                }
                // Not enough servers for the copies asked for (no
                // suitable peers, insufficient resources); other errors
                // (JetStream not ready yet) are retried at the next tick.
                Err(e) if replicas > 1 && matches!(e.err_code, 10005 | 10023) => {
                    // A cluster smaller than the replicas asked for.
                    log::info!(broker = self.config.broker_id.as_str(); "directory with {replicas} replicas refused ({e}); trying 1");
                    self.create_stream(1);
                }
                Err(e) => {
                    log::warn!(broker = self.config.broker_id.as_str(); "directory bucket: {e}");
                }
            },
            Op::Consumer => {
                // Refused (JetStream without a quorum, the stream
                // offline): the watch stays silent, and the tick makes
                // it again (see `watch_lost`).
                if let Err(e) = js::parse_response(msg) {
                    log::warn!(broker = self.config.broker_id.as_str(); "directory watch: {e}");
                }
            }
            Op::Claim(p) => match js::parse_pub_ack(msg) {
                Ok(rev) => self.finish_claim(p, Ok(rev)),
                Err(e) if e.err_code == ERR_WRONG_LAST_SEQUENCE => {
                    // The key has an entry: a live owner's, a delete
                    // marker, or our own earlier life's.
                    let subject = self.state.borrow().dir.kv.get_request(&key_of(&p.name));
                    match subject {
                        Ok(s) => {
                            if !self.dir_request(&s, None, b"", Op::ClaimGet(p.clone())) {
                                self.finish_claim(p, Err(unavailable("NATS is not connected")));
                            }
                        }
                        Err(e) => {
                            self.finish_claim(p, Err(Error::new(ErrorCode::InvalidArgument, e)))
                        }
                    }
                }
                // No stream listens yet (just created, or its leader is
                // being elected): try again shortly, within the limit.
                Err(e) if e.code == 503 && p.since.elapsed() < self.config.op_timeout => {
                    let weak = self.me.clone();
                    self.lp
                        .add_timer(std::time::Duration::from_millis(100), move |_| {
                            if let Some(f) = weak.upgrade() {
                                let (conn, op) = (p.conn, p.op);
                                if !f.claim(p, 0) {
                                    if let Some(port) = f.port.upgrade() {
                                        port.answer(conn, op, unavailable("NATS is not connected"));
                                        port.release(conn, None);
                                    }
                                }
                            }
                        });
                }
                Err(e) => self.finish_claim(p, Err(unavailable(&e.to_string()))),
            },
            Op::ClaimGet(p) => {
                let kv = self.state.borrow().dir.kv.clone();
                match kv.parse_get_any(msg) {
                    Ok(Some(entry)) => {
                        let owner: Option<Value> = serde_json::from_slice(&entry.value).ok();
                        if entry.op == KvOp::Put {
                            if let Some(s) = owner.as_ref().and_then(|v| v.shared.as_ref()) {
                                let e = Error::new(
                                    ErrorCode::NameModeConflict,
                                    format!(
                                        "Session '{}' is published in mode '{}', not 'exclusive'",
                                        p.name,
                                        s.mode.as_str()
                                    ),
                                );
                                return self.finish_claim(p, Err(e));
                            }
                        }
                        let free = entry.op != KvOp::Put
                            || owner.as_ref().is_some_and(|v| {
                                // Ours from an earlier life, or ours from a
                                // claim that timed out here (its create
                                // landed after the quorum came back).
                                (v.broker == self.config.broker_id
                                    && (v.inc != self.inc()
                                        || !self.state.borrow().dir.claims.contains_key(&p.name)))
                                    || self
                                        .state
                                        .borrow()
                                        .dead
                                        .contains(&(v.broker.clone(), v.inc))
                            });
                        if free {
                            let (conn, op) = (p.conn, p.op);
                            if !self.claim(p, entry.revision) {
                                if let Some(port) = self.port.upgrade() {
                                    port.answer(conn, op, unavailable("NATS is not connected"));
                                    port.release(conn, None);
                                }
                            }
                        } else {
                            let e = Error::new(
                                ErrorCode::AlreadyExists,
                                format!("Session '{}' already exists", p.name),
                            );
                            self.finish_claim(p, Err(e));
                        }
                    }
                    // Gone between the put and the get: try again.
                    Ok(None) => {
                        let (conn, op) = (p.conn, p.op);
                        if !self.claim(p, 0) {
                            if let Some(port) = self.port.upgrade() {
                                port.answer(conn, op, unavailable("NATS is not connected"));
                                port.release(conn, None);
                            }
                        }
                    }
                    Err(e) => self.finish_claim(p, Err(unavailable(&e.to_string()))),
                }
            }
            Op::Delete => {
                if let Err(e) = js::parse_pub_ack(msg) {
                    log::debug!(broker = self.config.broker_id.as_str(); "directory delete: {e}");
                }
            }
            Op::SharedPut(op) => self.shared_put_reply(op, msg),
            Op::SharedGet(op) => self.shared_get_reply(op, msg),
            Op::Reclaim { name, conn } => match js::parse_pub_ack(msg) {
                Ok(revision) => {
                    if let Some(c) = self.state.borrow_mut().dir.claims.get_mut(&name) {
                        if c.conn == conn {
                            c.revision = revision;
                        }
                    }
                }
                Err(e) => {
                    // Taken meanwhile: served here only, by local callers.
                    log::warn!(broker = self.config.broker_id.as_str(), session = name.as_str(); "name lost to another broker while this one was cut off: {e}");
                    self.state.borrow_mut().dir.claims.remove(&name);
                }
            },
        }
    }

    /// Directory operations past `op_timeout` fail: a held publish gets
    /// `timeout`.
    pub(crate) fn dir_tick(&self, now: Instant) {
        let limit = self.config.op_timeout;
        // The bucket and the watch are asked for again sooner, so that a
        // publish waiting for them is served within its own limit.
        let setup_limit = limit.min(std::time::Duration::from_secs(1));
        let (expired, waiting): (Vec<Op>, Vec<Pending>) = {
            let mut st = self.state.borrow_mut();
            let tokens: Vec<u64> = st
                .dir
                .ops
                .iter()
                .filter(|(_, (op, at))| {
                    let l = match op {
                        Op::Stream { .. } | Op::Consumer => setup_limit,
                        _ => limit,
                    };
                    now.duration_since(*at) > l
                })
                .map(|(t, _)| *t)
                .collect();
            let expired = tokens
                .into_iter()
                .filter_map(|t| st.dir.ops.remove(&t).map(|(op, _)| op))
                .collect();
            let (old, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut st.dir.waiting)
                .into_iter()
                .partition(|(_, at)| now.duration_since(*at) > limit);
            st.dir.waiting = keep;
            (expired, old.into_iter().map(|(p, _)| p).collect())
        };
        for op in expired {
            match op {
                Op::Claim(p) | Op::ClaimGet(p) => {
                    self.finish_claim(p, Err(unavailable("no answer from JetStream")))
                }
                Op::Stream { replicas } => self.create_stream(replicas),
                Op::Consumer => self.start_watch(),
                Op::Delete | Op::Reclaim { .. } => {}
                Op::SharedPut(op) | Op::SharedGet(op) => {
                    self.shared_expired(op);
                }
            }
        }
        for p in waiting {
            self.finish_claim(p, Err(unavailable("the directory bucket is not ready")));
        }
        if self.watch_lost(now) {
            let first = {
                let mut st = self.state.borrow_mut();
                st.dir.watch_remakes += 1;
                st.dir.watch_remakes == 1
            };
            if first {
                log::info!(broker = self.config.broker_id.as_str(); "directory watch silent for {WATCH_SILENCE:?}: made again (until it is heard)");
            }
            self.start_watch();
        }
        // A bucket request that could not even be sent is tried again.
        let retry = {
            let st = self.state.borrow();
            !st.dir.ready
                && !st
                    .dir
                    .ops
                    .values()
                    .any(|(op, _)| matches!(op, Op::Stream { .. }))
        };
        if retry && self.nats().is_some_and(|n| n.is_connected()) {
            self.create_stream(self.replicas());
        }
    }

    /// Whether the watch has heard nothing for [`WATCH_SILENCE`] while no
    /// request to make it is pending. Without this check a lost consumer
    /// would leave the cache as it was until the next reconnect: names
    /// published on other brokers meanwhile never listed here.
    fn watch_lost(&self, now: Instant) -> bool {
        let mut st = self.state.borrow_mut();
        let dir = &mut st.dir;
        if std::mem::take(&mut dir.watch_fresh) {
            dir.watch_heard = now;
            dir.watch_remakes = 0;
        }
        dir.watch_sid.is_some()
            && now.duration_since(dir.watch_heard) > WATCH_SILENCE
            && !dir.ops.values().any(|(op, _)| matches!(op, Op::Consumer))
    }
}

fn unavailable(why: &str) -> Error {
    Error::new(
        ErrorCode::Timeout,
        format!("the federation directory is unavailable: {why}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_any_name() {
        for name in ["Greeter", "a.b c/*>", "ünï", ""] {
            assert_eq!(name_of(&key_of(name)).as_deref(), Some(name));
        }
        assert!(js::valid_key(&key_of("a.b c/*>")));
        assert_eq!(name_of("zz"), None);
        assert_eq!(name_of("abc"), None);
    }
}
