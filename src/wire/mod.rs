//! The wire protocol: what travels between clients and the broker.
//!
//! A connection is a byte stream of frames. A frame is a `u32`
//! little-endian body length followed by that many bytes: one [`Frame`]
//! encoded with bincode (standard configuration, varint integers). The
//! first frame on every connection is the client's [`Frame::Hello`];
//! the broker answers [`Frame::Welcome`] or [`Frame::Refused`] and closes.
//!
//! This module is pure: bytes in, frames out ([`FrameDecoder`]) and frames
//! in, bytes out ([`encode_frame`]). It never touches a socket, so it is
//! tested with input split at every offset.
//!
//! Message kinds keep the original ProxySession's names (publish, rescind,
//! listing, subscribe, unsubscribe, deliver, result) and add what requests
//! need (emit, recall, cancel) and the broker's notice that a subscribed
//! session went away.
//!
//! Layout: `codec` frames bytes (the decoder and the encoder); `routed`
//! checks in place the frames the broker forwards; `payload` is the
//! opaque body of calls, results and signals, and `scan` checks one
//! without decoding it; `names` the modes and
//! changes of names; `identity` who is at the other end of a call;
//! `tap` what a monitor is told; `outgoing` the per-call frames a
//! client encodes from borrowed parts; `received` those it reads in
//! place; `bytes` and `text` are serde helpers.

pub(crate) mod bytes;
mod codec;
mod cursor;
mod identity;
mod names;
mod outgoing;
mod payload;
mod received;
mod routed;
mod scan;
mod tap;
pub(crate) mod text;

pub(crate) use codec::READ_CHUNK;
pub use codec::{
    decode_body, encode_frame, FrameDecoder, WireError, DECODE_LIMIT, DEFAULT_MAX_FRAME,
};
pub use identity::CallerInfo;
pub use names::{NameChange, NameMode};
pub(crate) use outgoing::Outgoing;
pub(crate) use payload::decode_checked;
pub use payload::Payload;
pub(crate) use received::{Parsed, Stamp};
pub(crate) use routed::{encode_caller, Inbound, Routed, RoutedKind};
pub use tap::TapEvent;

use crate::error::Error;
use serde::{Deserialize, Serialize};

/// How many times its size a payload may take once decoded (see
/// [`Payload::decode_within`]): enough for any payload of ordinary
/// values (an integer of one byte on the wire takes a slot of
/// `size_of::<Value>()`), far below what tiny elements would take.
pub const DECODE_FACTOR: usize = 80;

/// The most bytes one payload may take once decoded by
/// [`Payload::decode`] (64 MiB).
pub const DEFAULT_MAX_DECODED: usize = 64 << 20;

/// The first four bytes of every `Hello`.
pub const MAGIC: [u8; 4] = *b"STGB";

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 2;

/// A published session as the broker lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The published name.
    pub name: String,
    /// Its methods, in the order the publisher gave them.
    pub methods: Vec<String>,
}

/// What a successful `result` carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    /// Publish, rescind, unsubscribe: nothing more to say.
    Done,
    /// Listing: every published session.
    Sessions(Vec<SessionInfo>),
    /// Subscribe: the session's methods.
    Methods(Vec<String>),
    /// The final response of a deliver: its type and args.
    Return {
        /// The response type chosen by the callee (default `return`).
        #[serde(deserialize_with = "text::deserialize")]
        kind: String,
        /// The encoded args.
        payload: Payload,
    },
    /// Stats: the broker's report of itself.
    Stats(Box<crate::report::StatsReport>),
}

impl Reply {
    /// What the reply is, in words for an error message (never its
    /// `Debug` form, which would put Rust's notation and the payload
    /// in front of a user).
    pub fn describe(&self) -> String {
        match self {
            Reply::Done => "a plain acknowledgement".to_string(),
            Reply::Sessions(s) => format!("a listing of {} sessions", s.len()),
            Reply::Methods(m) => format!("a list of {} methods", m.len()),
            Reply::Return { kind, .. } => format!("a '{kind}' result"),
            Reply::Stats(_) => "a stats report".to_string(),
        }
    }
}

/// One message. `id` correlates a `Result` with what it answers; on
/// deliveries the broker rewrites it (see [`Frame::Deliver`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Frame {
    /// Client → broker, first frame: magic, protocol version, optional
    /// token.
    Hello {
        /// Always [`MAGIC`].
        magic: [u8; 4],
        /// The client's [`PROTOCOL_VERSION`].
        version: u16,
        /// The shared secret, if the broker requires one.
        token: Option<String>,
    },
    /// Broker → client: handshake accepted.
    Welcome {
        /// The broker's protocol version.
        version: u16,
        /// The broker's number for this connection.
        connection_id: u64,
    },
    /// Broker → client: handshake refused; the broker closes after it.
    Refused {
        /// Why.
        error: Error,
    },
    /// Client → broker: publish a session under `session` with `methods`.
    Publish {
        /// Correlation id.
        id: u64,
        /// The published name (the original's alias).
        session: String,
        /// The methods callers may deliver.
        methods: Vec<String>,
    },
    /// Client → broker: withdraw a session this connection published.
    Rescind {
        /// Correlation id.
        id: u64,
        /// The published name.
        session: String,
    },
    /// Client → broker: list published sessions.
    Listing {
        /// Correlation id.
        id: u64,
    },
    /// Client → broker: subscribe to a session (answered with its methods).
    Subscribe {
        /// Correlation id.
        id: u64,
        /// The published name.
        session: String,
    },
    /// Client → broker: end a subscription.
    Unsubscribe {
        /// Correlation id.
        id: u64,
        /// The published name.
        session: String,
    },
    /// A call. Caller → broker with the caller's own call id; broker →
    /// publisher with a route id the broker assigned, unique on the broker.
    Deliver {
        /// Call id (caller side) or route id (publisher side).
        id: u64,
        /// The caller's own id of the request, passed through unchanged
        /// so that both sides of a transaction name it alike.
        origin: u64,
        /// The time the caller still gives the call, in milliseconds
        /// when it was sent (0: no deadline). Relative, not a point in
        /// time: the hosts' clocks need not agree, so the publisher takes
        /// its deadline as its own receipt time plus this (the time in
        /// transit is not counted, which errs on the callee's side; the
        /// caller's own timer still ends the call on time).
        timeout_ms: u32,
        /// The published name.
        #[serde(deserialize_with = "text::deserialize")]
        session: String,
        /// The method.
        #[serde(deserialize_with = "text::deserialize")]
        method: String,
        /// The encoded args.
        payload: Payload,
    },
    /// An interim response of a call, publisher → broker → caller.
    Emit {
        /// Route id (publisher side) or call id (caller side).
        id: u64,
        /// The response type (default `emit`).
        #[serde(deserialize_with = "text::deserialize")]
        kind: String,
        /// The encoded args.
        payload: Payload,
    },
    /// The caller's answer to an emit, caller → broker → publisher.
    Recall {
        /// Call id (caller side) or route id (publisher side).
        id: u64,
        /// The method of the callee to run.
        #[serde(deserialize_with = "text::deserialize")]
        method: String,
        /// The encoded args.
        payload: Payload,
    },
    /// The caller gave up on a call, caller → broker → publisher; also
    /// sent by the broker when the caller disconnects.
    Cancel {
        /// Call id (caller side) or route id (publisher side).
        id: u64,
    },
    /// The final answer to any operation or call.
    Result {
        /// The id of what it answers.
        id: u64,
        /// Success with a reply, or an error.
        outcome: Result<Reply, Error>,
    },
    /// Broker → subscriber: a subscribed session was rescinded or its
    /// publisher disconnected.
    SessionGone {
        /// The published name.
        session: String,
        /// Why.
        reason: Error,
    },
    /// A message kind of the application's own (the original's custom
    /// types). The broker answers it with an error; a client hands it to
    /// its unknown-message handler.
    Custom {
        /// The application's kind name.
        #[serde(deserialize_with = "text::deserialize")]
        kind: String,
        /// Correlation id.
        id: u64,
        /// Opaque bytes.
        payload: Payload,
    },
    /// Client → broker: subscribe to a session, waiting up to `wait_ms`
    /// milliseconds for it to be published if it is not yet. Answered
    /// exactly once: with its methods as soon as it is published (the
    /// subscription then stands as after [`Frame::Subscribe`]), or with
    /// `no_such_session` when the wait expires. The broker times the
    /// wait, so the answer and the subscription cannot disagree. A
    /// `wait_ms` of 0 is a plain subscribe; a wait over a year is cut to
    /// a year.
    SubscribeWait {
        /// Correlation id.
        id: u64,
        /// The published name.
        session: String,
        /// How long to wait for it, in milliseconds.
        wait_ms: u64,
    },
    /// Either way, on a connection that was silent for a ping interval:
    /// is the peer alive? Answered with [`Frame::Pong`].
    Ping,
    /// The answer to a [`Frame::Ping`].
    Pong,
    /// Broker → client: the broker is closing. Every call the client has
    /// in flight ends with `broker_gone`; the broker closes the
    /// connection after this frame.
    GoingAway {
        /// Why (code `broker_gone`).
        reason: Error,
    },
    /// Client → broker: report yourself. Answered with
    /// [`Reply::Stats`].
    Stats {
        /// Correlation id.
        id: u64,
    },
    /// A one-way call (D-Bus's NO_REPLY_EXPECTED, POE's `post`): caller
    /// → broker with the caller's id (only for diagnostics), broker →
    /// publisher with an id the broker assigned, unique on the broker,
    /// under which it keeps no route. Nothing ever answers it: the
    /// broker drops (and counts) a one-way call it cannot deliver, and
    /// the publisher's client drops (and counts) what its callee answers.
    /// The fields are those of [`Frame::Deliver`], in its order.
    Post {
        /// Caller's id (caller side) or the broker's id (publisher side).
        id: u64,
        /// The caller's own id of the request.
        origin: u64,
        /// The time the caller still gives the call, in milliseconds (0:
        /// no deadline), as in [`Frame::Deliver`].
        timeout_ms: u32,
        /// The published name.
        #[serde(deserialize_with = "text::deserialize")]
        session: String,
        /// The method.
        #[serde(deserialize_with = "text::deserialize")]
        method: String,
        /// The encoded args.
        payload: Payload,
    },
    /// A signal: publisher → broker, then broker → every connection with
    /// a matching [`Frame::AddMatch`], the same bytes forwarded unchanged
    /// (encoded once, never per listener). Only the publisher of
    /// `session` may emit it; a signal from anyone else is dropped and
    /// counted. No reply.
    Signal {
        /// The session it is emitted for.
        #[serde(deserialize_with = "text::deserialize")]
        session: String,
        /// The signal's name.
        #[serde(deserialize_with = "text::deserialize")]
        signal: String,
        /// The encoded args.
        payload: Payload,
    },
    /// Client → broker: receive the signals whose session and signal
    /// names match these patterns (see [`crate::pattern`]; `*` for
    /// every name, `prefix*`, or an exact name); answered
    /// with a `Done` result once in place.
    AddMatch {
        /// Correlation id.
        id: u64,
        /// The session name pattern.
        session: String,
        /// The signal name pattern.
        signal: String,
    },
    /// Client → broker: withdraw one match added with the same patterns;
    /// answered with a `Done` result, or `invalid_argument` if there is
    /// no such match.
    RemoveMatch {
        /// Correlation id.
        id: u64,
        /// The session name pattern.
        session: String,
        /// The signal name pattern.
        signal: String,
    },
    /// Client → broker: watch the names matching `pattern` (an exact
    /// name, `prefix*`, or `*` for all). Answered with the current state
    /// (`Sessions`: every matching published session, sorted), then every
    /// change comes as a [`Frame::NameChanged`] naming this `id` as its
    /// watch, until [`Frame::Unwatch`] or the connection's end.
    Watch {
        /// Correlation id, and the watch's id in its events.
        id: u64,
        /// Which names.
        pattern: String,
    },
    /// Client → broker: end the watch `watch`; answered `Done`, or
    /// `invalid_argument` if there is no such watch.
    Unwatch {
        /// Correlation id.
        id: u64,
        /// The id of the watch's [`Frame::Watch`].
        watch: u64,
    },
    /// Broker → client: a watched name changed.
    NameChanged {
        /// The id of the watch's [`Frame::Watch`].
        watch: u64,
        /// The name.
        name: String,
        /// What happened.
        change: NameChange,
    },
    /// Client → broker: publish a session in a [`NameMode`] (a
    /// [`Frame::Publish`] is this with `exclusive`). The first publisher
    /// of a name fixes its mode; a publish in another mode is refused
    /// with `name_mode_conflict`.
    PublishAs {
        /// Correlation id.
        id: u64,
        /// The published name.
        session: String,
        /// The methods callers may deliver.
        methods: Vec<String>,
        /// How the name takes several publishers.
        mode: NameMode,
    },
    /// Client → broker: from now on, send me a [`Frame::Tap`] for every
    /// frame the broker receives from other connections (calls, their
    /// emits, recalls, results and cancels, and session operations),
    /// only those naming `session` if given, with their payloads if
    /// `payload`. Answered with [`Reply::Done`]. A monitor that falls
    /// behind is cut off by its output limits, like any slow reader.
    Monitor {
        /// Correlation id.
        id: u64,
        /// Only frames of this session.
        session: Option<String>,
        /// Include each frame's payload (its encoded args).
        payload: bool,
    },
    /// Broker → monitor: one frame the broker received.
    Tap(Box<TapEvent>),
    /// Client → broker, first frame: a [`Frame::Hello`] that also names
    /// the client, and says that it reads [`Frame::DeliverFrom`]. Clients
    /// of this version send it instead of `Hello`; a broker takes either
    /// (a `Hello`'s client gets plain [`Frame::Deliver`]s and has no
    /// client name). A broker older than this frame refuses it as
    /// malformed, so a client of this version needs a broker of this
    /// version or later.
    Greeting {
        /// Always [`MAGIC`].
        magic: [u8; 4],
        /// The client's [`PROTOCOL_VERSION`].
        version: u16,
        /// The shared secret, if the broker requires one.
        token: Option<String>,
        /// The name the client chose for itself (shown to the publishers
        /// it calls, and in logs); free text, not checked by anyone.
        client_name: Option<String>,
    },
    /// Broker → publisher: a [`Frame::Deliver`] stamped with who calls,
    /// sent instead of `Deliver` to clients that said
    /// [`Frame::Greeting`]. The fields up to `payload` are those of
    /// `Deliver`; the caller's identity comes last, so that the broker
    /// forwards the caller's bytes unchanged and appends the identity it
    /// encoded once when the caller connected.
    DeliverFrom {
        /// The route id.
        id: u64,
        /// As [`Frame::Deliver`].
        origin: u64,
        /// As [`Frame::Deliver`].
        timeout_ms: u32,
        /// The published name.
        #[serde(deserialize_with = "text::deserialize")]
        session: String,
        /// The method.
        #[serde(deserialize_with = "text::deserialize")]
        method: String,
        /// The encoded args.
        payload: Payload,
        /// Who calls, as the broker knows it.
        caller: CallerInfo,
    },
    /// Broker → peer broker, over a federation link only (never to a
    /// client): a [`Frame::Post`] stamped with who posts, as
    /// [`Frame::DeliverFrom`] stamps a deliver, so that the publisher's
    /// broker judges the one-way call by its policy as that caller's.
    /// The publisher itself receives a plain `Post`.
    PostFrom {
        /// The broker's id of the post.
        id: u64,
        /// As [`Frame::Post`].
        origin: u64,
        /// As [`Frame::Post`].
        timeout_ms: u32,
        /// The published name.
        #[serde(deserialize_with = "text::deserialize")]
        session: String,
        /// The method.
        #[serde(deserialize_with = "text::deserialize")]
        method: String,
        /// The encoded args.
        payload: Payload,
        /// Who posts, as its broker knows it.
        caller: CallerInfo,
    },
}

impl Frame {
    /// The original's name of the message kind, for diagnostics.
    pub fn kind_name(&self) -> &str {
        match self {
            Frame::Hello { .. } => "hello",
            Frame::Welcome { .. } => "welcome",
            Frame::Refused { .. } => "refused",
            Frame::Publish { .. } => "publish",
            Frame::Rescind { .. } => "rescind",
            Frame::Listing { .. } => "listing",
            Frame::Subscribe { .. } => "subscribe",
            Frame::Unsubscribe { .. } => "unsubscribe",
            Frame::Deliver { .. } => "deliver",
            Frame::Emit { .. } => "emit",
            Frame::Recall { .. } => "recall",
            Frame::Cancel { .. } => "cancel",
            Frame::Result { .. } => "result",
            Frame::SessionGone { .. } => "session_gone",
            Frame::Custom { kind, .. } => kind,
            Frame::SubscribeWait { .. } => "subscribe_wait",
            Frame::Ping => "ping",
            Frame::Pong => "pong",
            Frame::GoingAway { .. } => "going_away",
            Frame::Stats { .. } => "stats",
            Frame::Post { .. } => "post",
            Frame::Signal { .. } => "signal",
            Frame::AddMatch { .. } => "add_match",
            Frame::RemoveMatch { .. } => "remove_match",
            Frame::Watch { .. } => "watch",
            Frame::Unwatch { .. } => "unwatch",
            Frame::NameChanged { .. } => "name_changed",
            Frame::PublishAs { .. } => "publish_as",
            Frame::Monitor { .. } => "monitor",
            Frame::Tap(_) => "tap",
            Frame::Greeting { .. } => "greeting",
            Frame::DeliverFrom { .. } => "deliver_from",
            Frame::PostFrom { .. } => "post_from",
        }
    }
}
