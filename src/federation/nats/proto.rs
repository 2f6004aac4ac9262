//! The NATS client protocol, pure: an incremental parser of what a server
//! sends (`INFO`, `MSG`, `HMSG`, `PING`, `PONG`, `+OK`, `-ERR`) and an
//! encoder of what a client sends (`CONNECT`, `PUB`, `HPUB`, `SUB`,
//! `UNSUB`, `PING`, `PONG`). No socket, no clock: bytes in, operations
//! out, so every split of the input is testable.
//!
//! The parser never trusts a length it reads: a control line longer than
//! [`MAX_CONTROL_LINE`] or a message over the parser's payload limit is an
//! error, never an allocation.

pub use super::headers::Headers;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The longest control line (`MSG …\r\n`, `INFO {…}\r\n`) accepted.
/// nats-server's own default `max_control_line` is 4 KiB for what clients
/// send; an `INFO` with many `connect_urls` is longer, hence the margin.
pub const MAX_CONTROL_LINE: usize = 64 * 1024;

/// A protocol violation by the server (or garbage on the socket): the
/// connection is unusable and must be dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtoError(pub String);

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NATS protocol error: {}", self.0)
    }
}

impl std::error::Error for ProtoError {}

pub(super) fn err<T>(what: impl Into<String>) -> Result<T, ProtoError> {
    Err(ProtoError(what.into()))
}

/// What the server says about itself in `INFO` (the fields this client
/// uses; the others are ignored).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct ServerInfo {
    /// The server's unique id.
    #[serde(default)]
    pub server_id: String,
    /// The server's configured name.
    #[serde(default)]
    pub server_name: String,
    /// The server's version.
    #[serde(default)]
    pub version: String,
    /// The largest payload (headers included) the server accepts.
    #[serde(default)]
    pub max_payload: u64,
    /// Whether the server understands `HPUB`/`HMSG`.
    #[serde(default)]
    pub headers: bool,
    /// Whether `CONNECT` must carry credentials.
    #[serde(default)]
    pub auth_required: bool,
    /// Other servers of the cluster a client may reconnect to.
    #[serde(default)]
    pub connect_urls: Vec<String>,
    /// Lame-duck mode: the server is about to shut down.
    #[serde(default)]
    pub ldm: bool,
    /// The server's client id for this connection.
    #[serde(default)]
    pub client_id: u64,
    /// The challenge an NKey user signs in `CONNECT`.
    #[serde(default)]
    pub nonce: String,
    /// The server speaks only TLS after this `INFO`.
    #[serde(default)]
    pub tls_required: bool,
    /// The server accepts TLS after this `INFO`, and plain connections.
    #[serde(default)]
    pub tls_available: bool,
}

/// A message delivered to one of this client's subscriptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    /// The subject it was published to.
    pub subject: String,
    /// The subscription it arrived on.
    pub sid: u64,
    /// Where to answer, if the publisher asked for answers.
    pub reply: Option<String>,
    /// Its headers (an `HMSG`), if any.
    pub headers: Option<Headers>,
    /// Its payload.
    pub payload: Vec<u8>,
}

impl Msg {
    /// The status of a server-made message (503 no responders, 100 flow
    /// control or heartbeat, 404/408 from JetStream), if it has one.
    pub fn status(&self) -> Option<u16> {
        self.headers.as_ref().and_then(|h| h.status)
    }
}

/// One operation read from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerOp {
    /// `INFO`: the server's description, first on a connection and again
    /// when the cluster changes or the server enters lame-duck mode.
    Info(Box<ServerInfo>),
    /// `MSG` or `HMSG`.
    Msg(Msg),
    /// `PING`: answer with `PONG`.
    Ping,
    /// `PONG`: the answer to our `PING`.
    Pong,
    /// `+OK` (verbose mode only).
    Ok,
    /// `-ERR`: the server's complaint, quotes removed.
    Err(String),
}

impl ServerOp {
    /// Encodes the operation as a server would send it (for tests and
    /// fuzzing: the parser must read back what this writes).
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), ProtoError> {
        match self {
            ServerOp::Info(info) => {
                out.extend_from_slice(b"INFO ");
                out.extend_from_slice(
                    &serde_json::to_vec(info).map_err(|e| ProtoError(e.to_string()))?,
                );
                out.extend_from_slice(b"\r\n");
            }
            ServerOp::Msg(m) => {
                check_subject(&m.subject, true)?;
                let reply = match &m.reply {
                    Some(r) => {
                        check_subject(r, false)?;
                        format!(" {r}")
                    }
                    None => String::new(),
                };
                match &m.headers {
                    None => {
                        out.extend_from_slice(
                            format!(
                                "MSG {} {}{} {}\r\n",
                                m.subject,
                                m.sid,
                                reply,
                                m.payload.len()
                            )
                            .as_bytes(),
                        );
                    }
                    Some(h) => {
                        let mut block = Vec::new();
                        h.encode(&mut block)?;
                        out.extend_from_slice(
                            format!(
                                "HMSG {} {}{} {} {}\r\n",
                                m.subject,
                                m.sid,
                                reply,
                                block.len(),
                                block.len() + m.payload.len()
                            )
                            .as_bytes(),
                        );
                        out.extend_from_slice(&block);
                    }
                }
                out.extend_from_slice(&m.payload);
                out.extend_from_slice(b"\r\n");
            }
            ServerOp::Ping => out.extend_from_slice(b"PING\r\n"),
            ServerOp::Pong => out.extend_from_slice(b"PONG\r\n"),
            ServerOp::Ok => out.extend_from_slice(b"+OK\r\n"),
            ServerOp::Err(e) => {
                if e.contains(['\r', '\n', '\'']) {
                    return err("bad -ERR text");
                }
                out.extend_from_slice(format!("-ERR '{e}'\r\n").as_bytes());
            }
        }
        Ok(())
    }
}

/// The incremental parser: push bytes as they arrive, take operations
/// out with [`Parser::next_op`].
#[derive(Debug)]
pub struct Parser {
    buf: Vec<u8>,
    pos: usize,
    max_payload: usize,
}

impl Parser {
    /// A parser refusing messages whose payload (headers included) is
    /// over `max_payload` bytes.
    pub fn new(max_payload: usize) -> Parser {
        Parser {
            buf: Vec::new(),
            pos: 0,
            max_payload,
        }
    }

    /// Changes the payload limit (the server's `max_payload` from INFO,
    /// with a margin: a server never sends more than it accepts).
    pub fn set_max_payload(&mut self, max_payload: usize) {
        self.max_payload = max_payload;
    }

    /// Appends bytes read from the socket.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 64 * 1024 && self.pos * 2 > self.buf.len() {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held that form no complete operation yet.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Forgets everything buffered (a new connection starts clean).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.pos = 0;
    }

    /// The next complete operation, `Ok(None)` when more bytes are
    /// needed, or the violation that makes the stream unreadable (the
    /// parser must then be [`reset`](Parser::reset) with the connection).
    pub fn next_op(&mut self) -> Result<Option<ServerOp>, ProtoError> {
        let data = &self.buf[self.pos..];
        let Some(eol) = find_crlf(data) else {
            if data.len() > MAX_CONTROL_LINE {
                return err("control line too long");
            }
            return Ok(None);
        };
        if eol > MAX_CONTROL_LINE {
            return err("control line too long");
        }
        let line = match std::str::from_utf8(&data[..eol]) {
            Ok(l) => l,
            Err(_) => return err("control line is not UTF-8"),
        };
        let (verb, args) = match line.find([' ', '\t']) {
            Some(i) => (&line[..i], line[i + 1..].trim()),
            None => (line, ""),
        };
        let consumed_line = eol + 2;
        // Compared in place: no upper-cased copy of the verb per message.
        let is = |name: &str| verb.eq_ignore_ascii_case(name);
        let op = match () {
            _ if is("MSG") || is("HMSG") => {
                let with_headers = is("HMSG");
                let head = parse_msg_args(args, with_headers, self.max_payload)?;
                let total = consumed_line + head.total + 2;
                if data.len() < total {
                    return Ok(None);
                }
                let body = &data[consumed_line..consumed_line + head.total];
                if &data[consumed_line + head.total..total] != b"\r\n" {
                    return err("message payload not followed by CRLF");
                }
                let headers = match head.header_len {
                    Some(n) => Some(Headers::parse(&body[..n])?),
                    None => None,
                };
                let payload = body[head.header_len.unwrap_or(0)..].to_vec();
                let msg = Msg {
                    subject: head.subject,
                    sid: head.sid,
                    reply: head.reply,
                    headers,
                    payload,
                };
                self.pos += total;
                return Ok(Some(ServerOp::Msg(msg)));
            }
            _ if is("PING") => ServerOp::Ping,
            _ if is("PONG") => ServerOp::Pong,
            _ if is("+OK") => ServerOp::Ok,
            _ if is("-ERR") => ServerOp::Err(args.trim_matches('\'').to_string()),
            _ if is("INFO") => match serde_json::from_str::<ServerInfo>(args) {
                Ok(info) => ServerOp::Info(Box::new(info)),
                Err(e) => return err(format!("bad INFO: {e}")),
            },
            _ => return err(format!("unknown operation {:?}", truncate(verb))),
        };
        self.pos += consumed_line;
        Ok(Some(op))
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(32) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

struct MsgHead {
    subject: String,
    sid: u64,
    reply: Option<String>,
    header_len: Option<usize>,
    total: usize,
}

fn parse_msg_args(args: &str, with_headers: bool, max: usize) -> Result<MsgHead, ProtoError> {
    // At most five arguments (HMSG with a reply subject): no Vec per
    // message.
    let mut parts = [""; 5];
    let mut count = 0;
    for part in args.split_ascii_whitespace() {
        if count == parts.len() {
            return err(format!("bad message arguments {:?}", truncate(args)));
        }
        parts[count] = part;
        count += 1;
    }
    let parts = &parts[..count];
    let lens = if with_headers { 2 } else { 1 };
    let reply = match parts.len().checked_sub(lens) {
        Some(2) => None,
        Some(3) => Some(parts[2].to_string()),
        _ => return err(format!("bad message arguments {:?}", truncate(args))),
    };
    let number = |s: &str| -> Result<usize, ProtoError> {
        match s.parse::<usize>() {
            Ok(n) if s.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
            _ => err(format!("bad size {:?}", truncate(s))),
        }
    };
    let sid = match parts[1].parse::<u64>() {
        Ok(s) => s,
        Err(_) => return err(format!("bad sid {:?}", truncate(parts[1]))),
    };
    let total = number(parts[parts.len() - 1])?;
    let header_len = if with_headers {
        let h = number(parts[parts.len() - 2])?;
        if h > total {
            return err("header size over total size");
        }
        Some(h)
    } else {
        None
    };
    if total > max {
        return err(format!("message of {total} bytes over the limit of {max}"));
    }
    Ok(MsgHead {
        subject: parts[0].to_string(),
        sid,
        reply,
        header_len,
        total,
    })
}

fn find_crlf(data: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = data[from..].iter().position(|&b| b == b'\r') {
        let at = from + i;
        match data.get(at + 1) {
            Some(b'\n') => return Some(at),
            Some(_) => from = at + 1,
            None => return None,
        }
    }
    None
}

/// Checks a subject: non-empty dot-separated tokens of printable
/// characters without white space; wildcards (`*` as a token, `>` as the
/// last token) only where `wildcards` allows (subscribing).
pub fn check_subject(subject: &str, wildcards: bool) -> Result<(), ProtoError> {
    if subject.is_empty() {
        return err("empty subject");
    }
    if subject.len() > 4096 {
        return err("subject over 4096 bytes");
    }
    // No allocation: this runs for every message published.
    let count = subject.split('.').count();
    for (i, token) in subject.split('.').enumerate() {
        if token.is_empty() {
            return err(format!("subject {subject:?} has an empty token"));
        }
        if token
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return err(format!("subject {subject:?} has white space"));
        }
        if token == ">" && i + 1 != count {
            return err(format!("subject {subject:?}: '>' is only allowed last"));
        }
        if (token == "*" || token == ">") && !wildcards {
            return err(format!("subject {subject:?} has a wildcard"));
        }
    }
    Ok(())
}

/// A subject checked once for publishing (no wildcards), to publish on
/// many times without checking it again (a link's inbox and reply
/// subjects).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject(String);

impl Subject {
    /// `subject`, if [`check_subject`] accepts it for publishing.
    pub fn new(subject: String) -> Result<Subject, ProtoError> {
        check_subject(&subject, false)?;
        Ok(Subject(subject))
    }

    /// The subject's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What `CONNECT` tells the server.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ConnectInfo {
    /// `+OK` after every operation (always false here).
    pub verbose: bool,
    /// Strict subject checking by the server.
    pub pedantic: bool,
    /// Whether the client speaks TLS on this connection.
    pub tls_required: bool,
    /// The client's name, seen in the server's monitoring.
    pub name: String,
    /// Client library language.
    pub lang: String,
    /// Client library version.
    pub version: String,
    /// Protocol level 1: asynchronous INFO updates.
    pub protocol: u8,
    /// Receive our own publications (true).
    pub echo: bool,
    /// Headers supported.
    pub headers: bool,
    /// 503 statuses on requests nobody listens to.
    pub no_responders: bool,
    /// User name, for user/password authentication.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Password, for user/password authentication.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pass: Option<String>,
    /// Token, for token authentication.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_token: Option<String>,
    /// The user's public NKey, for NKey authentication.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nkey: Option<String>,
    /// The signature of the server's nonce with that NKey (base64url).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sig: Option<String>,
    /// The user's JWT (servers in operator mode; from a `.creds` file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt: Option<String>,
}

/// Appends `CONNECT {json}\r\n`.
pub fn encode_connect(info: &ConnectInfo, out: &mut Vec<u8>) {
    out.extend_from_slice(b"CONNECT ");
    // Serializing a struct of strings and booleans cannot fail.
    out.extend_from_slice(&serde_json::to_vec(info).unwrap_or_else(|_| b"{}".to_vec()));
    out.extend_from_slice(b"\r\n");
}

/// Appends `PUB` (no headers) or `HPUB` for one message. Checks the
/// subjects and headers first, and writes nothing if they are bad.
pub fn encode_publish(
    subject: &str,
    reply: Option<&str>,
    headers: Option<&Headers>,
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), ProtoError> {
    check_subject(subject, false)?;
    if let Some(r) = reply {
        check_subject(r, false)?;
    }
    match headers {
        None => push_pub_line(subject, reply, payload.len(), out),
        Some(h) => {
            let reply = reply.map(|r| format!(" {r}")).unwrap_or_default();
            let mut block = Vec::new();
            h.encode(&mut block)?;
            out.extend_from_slice(
                format!(
                    "HPUB {subject}{reply} {} {}\r\n",
                    block.len(),
                    block.len() + payload.len()
                )
                .as_bytes(),
            );
            out.extend_from_slice(&block);
        }
    }
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// Appends `PUB subject [reply] len\r\n`, subjects unchecked (the
/// caller checked them): written in place, no formatting machinery, as
/// it runs for every message a broker sends.
pub fn push_pub_line(subject: &str, reply: Option<&str>, len: usize, out: &mut Vec<u8>) {
    out.extend_from_slice(b"PUB ");
    out.extend_from_slice(subject.as_bytes());
    if let Some(r) = reply {
        out.push(b' ');
        out.extend_from_slice(r.as_bytes());
    }
    out.push(b' ');
    push_decimal(len, out);
    out.extend_from_slice(b"\r\n");
}

/// Appends `n` in decimal.
fn push_decimal(mut n: usize, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// The size `encode_publish` gives the payload part (headers included),
/// which the server compares with its `max_payload`.
pub fn payload_size(headers: Option<&Headers>, payload: &[u8]) -> usize {
    let mut block = Vec::new();
    match headers {
        Some(h) if h.encode(&mut block).is_ok() => block.len() + payload.len(),
        _ => payload.len(),
    }
}

/// Appends `SUB subject [queue] sid`.
pub fn encode_subscribe(
    subject: &str,
    queue: Option<&str>,
    sid: u64,
    out: &mut Vec<u8>,
) -> Result<(), ProtoError> {
    check_subject(subject, true)?;
    match queue {
        Some(q) => {
            if q.is_empty()
                || q.bytes()
                    .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
            {
                return err(format!("bad queue group {q:?}"));
            }
            out.extend_from_slice(format!("SUB {subject} {q} {sid}\r\n").as_bytes());
        }
        None => out.extend_from_slice(format!("SUB {subject} {sid}\r\n").as_bytes()),
    }
    Ok(())
}

/// Appends `UNSUB sid [max]`: at once, or after `max` more messages.
pub fn encode_unsubscribe(sid: u64, max: Option<u64>, out: &mut Vec<u8>) {
    match max {
        Some(m) => out.extend_from_slice(format!("UNSUB {sid} {m}\r\n").as_bytes()),
        None => out.extend_from_slice(format!("UNSUB {sid}\r\n").as_bytes()),
    }
}

/// Appends `PING`.
pub fn encode_ping(out: &mut Vec<u8>) {
    out.extend_from_slice(b"PING\r\n");
}

/// Appends `PONG`.
pub fn encode_pong(out: &mut Vec<u8>) {
    out.extend_from_slice(b"PONG\r\n");
}
